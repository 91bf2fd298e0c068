/* Network input: Matterport's "square" resize (scale up so the short side reaches
 * IMAGE_MIN_DIM, down so the long side fits IMAGE_MAX_DIM), centred zero padding, and mean
 * subtraction; the window and scale are kept so outputs map back to input pixels. */
#ifndef MR_MOLD_H
#define MR_MOLD_H

#include <stdint.h>

#include "../core/status.h"
#include "detect.h"

typedef struct {
    double scale; /* molded pixels per original pixel */
    int64_t resized_h, resized_w;
    int64_t top, left;     /* padding before the image */
    mr_image_geometry geo; /* original and molded sizes, window */
} mr_mold_info;

/* The scale and placement alone (resize_image's arithmetic, Python round-half-even sizes). */
void mr_mold_plan(int64_t h, int64_t w, int min_dim, int max_dim, mr_mold_info *info);
/* pixels (h, w, channels) 8-bit -> out (max_dim, max_dim, channels) float: bilinear resize as
 * skimage (truncated back to 8-bit as Matterport's astype), zero padding, minus mean_pixel,
 * then divided by pixel_std when it is not NULL (IMAGE_NORMALIZATION "mean_std"). */
mr_status mr_mold_image(float *out, const uint8_t *pixels, int64_t h, int64_t w, int channels,
                        int min_dim, int max_dim, const float *mean_pixel, const float *pixel_std,
                        mr_mold_info *info);

#endif

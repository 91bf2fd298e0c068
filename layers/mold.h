/* Network input: Matterport's "square" resize (scale up so the short side reaches
 * IMAGE_MIN_DIM, down so the long side fits IMAGE_MAX_DIM), centred zero padding, and mean
 * subtraction; the window and scale are kept so outputs map back to input pixels. The resize
 * reads the 8-bit image in place, a row at a time (mr_resize_u8). */
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

/* mr_resize_bilinear (layers/targets.h: skimage's bilinear resize, computed in double) of
 * channel `c` of interleaved 8-bit pixels (h, w, channels) to (rh, rw), read in place one
 * output row at a time: the same floats bit for bit, without a float copy of the channel. */
typedef struct {
    const uint8_t *pixels;
    int64_t h, w;
    int channels, c;
    int64_t rh, rw;
    double lo, hi; /* the channel's range, which the result is clipped to */
} mr_resize_u8;

/* Scans the channel once for its range. */
void mr_resize_u8_init(mr_resize_u8 *r, const uint8_t *pixels, int64_t h, int64_t w, int channels,
                       int c, int64_t rh, int64_t rw);
/* Resized row y (0 <= y < rh) into out[rw]. */
void mr_resize_u8_row(const mr_resize_u8 *r, int64_t y, float *out);

/* The scale and placement alone (resize_image's arithmetic, Python round-half-even sizes). */
void mr_mold_plan(int64_t h, int64_t w, int min_dim, int max_dim, mr_mold_info *info);
/* pixels (h, w, channels) 8-bit -> out (max_dim, max_dim, channels) float: bilinear resize as
 * skimage (truncated back to 8-bit as Matterport's astype), zero padding, minus mean_pixel,
 * then divided by pixel_std when it is not NULL (IMAGE_NORMALIZATION "mean_std"). The resize
 * reads the 8-bit pixels in place (the values of mr_resize_bilinear bit for bit), so no memory
 * is needed beyond `pixels` and `out`. */
mr_status mr_mold_image(float *out, const uint8_t *pixels, int64_t h, int64_t w, int channels,
                        int min_dim, int max_dim, const float *mean_pixel, const float *pixel_std,
                        mr_mold_info *info);

#endif

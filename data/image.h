/* Image files: decode PNG (8/16-bit), JPEG and BMP through stb_image, read sizes from headers,
 * write PNG. Pixels are 8-bit, interleaved, row-major (H, W, C). */
#ifndef MR_IMAGE_H
#define MR_IMAGE_H

#include <stdint.h>

#include "../core/status.h"

typedef struct {
    int width, height, channels; /* channels 1 (gray) or 3 (RGB) after loading */
    uint8_t *pixels;             /* (height, width, channels) */
} mr_image;

/* Decodes `path` into `channels` (1 or 3) channels: gray and gray+alpha are replicated to
 * RGB, RGB and RGBA are averaged to gray (alpha dropped); 16-bit samples keep their top 8 bits. */
mr_status mr_image_load(const char *path, int channels, mr_image *out);
/* Width and height from the file header alone, without decoding the pixels. */
mr_status mr_image_size(const char *path, int *width, int *height);
mr_status mr_image_write_png(const char *path, const mr_image *img);
mr_status mr_image_alloc(mr_image *img, int width, int height, int channels);
void mr_image_free(mr_image *img);

#endif

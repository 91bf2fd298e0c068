/* Image files: decode PNG (libpng), JPEG (libjpeg-turbo, EXIF orientation applied) and
 * uncompressed BMP (a small reader in image.c), read sizes from headers, describe files, write
 * PNG (libpng). Only regular files are read, and a pixel limit is checked against the header
 * before any pixel memory is allocated. Pixels are 8-bit, interleaved, row-major (H, W, C). */
#ifndef MR_IMAGE_H
#define MR_IMAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"

/* The formats read, as every message names them. */
#define MR_IMAGE_FORMATS "PNG, JPEG or BMP (uncompressed 8, 24 or 32-bit)"

/* Decoded pixels (width x height) allowed when no limit is given; the config key
 * MAX_IMAGE_PIXELS defaults to the same value. 50 megapixels is above full-field mammograms
 * (about 5000 x 6000) and far above ultrasound frames, and 150 MB decoded as RGB; a file
 * declaring more is refused before its pixels are allocated (a decompression bomb). */
#define MR_IMAGE_MAX_PIXELS_DEFAULT 50000000

typedef struct {
    int width, height; /* as shown: after the EXIF orientation */
    int channels;      /* 1 (gray) or 3 (RGB); with channels 0 at load, the file's own 1-4 */
    uint8_t *pixels;   /* (height, width, channels) */
} mr_image;

typedef enum { MR_IMAGE_PNG = 1, MR_IMAGE_JPEG, MR_IMAGE_BMP } mr_image_format;

/* What a file holds, for people checking a data set (mr_image_probe). */
typedef struct {
    mr_image_format format;
    int width, height; /* as shown: after the EXIF orientation */
    int bit_depth;     /* bits per sample in the file: PNG 1, 2, 4, 8 or 16; JPEG and BMP 8 */
    int channels;      /* what the file decodes to at 8 bits: 1 gray, 2 gray+alpha, 3 RGB,
                          4 RGBA (a palette gives 3, or 4 with transparency) */
    bool palette;      /* samples are indices into a palette (PNG palette, 8-bit BMP) */
    bool gray_as_rgb;  /* 3 or 4 channels, but every pixel has R == G == B */
    int orientation;   /* EXIF orientation 1-8 applied (JPEG only); 1: none */
    char kind[96];     /* the above in words, no sizes, e.g. "PNG 16-bit RGB (gray stored as
                          RGB)": equal for files of one kind, so it can be printed once each */
} mr_image_info;

/* Decodes `path` into `channels` channels:
 *  - 1: gray; gray+alpha drops alpha; RGB and RGBA are averaged, (R + G + B + 1) / 3, so a
 *    gray image stored as RGB (R = G = B) gives its exact gray values;
 *  - 3: RGB; gray and gray+alpha are replicated, RGBA drops alpha;
 *  - 0: the file's own channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), for masks whose
 *    alpha matters.
 * Every format comes out 8-bit: 16-bit PNG samples keep their top 8 bits (as stb_image did and
 * the Python twin does), 1/2/4-bit gray is scaled to 0-255, palettes are expanded (tRNS
 * becomes alpha). Gamma and colour profiles are ignored: pixels are the stored values.
 * A JPEG's EXIF orientation is applied, so pixels, width and height are those a browser (and
 * so VIA, where the regions were drawn) shows. Images over MR_IMAGE_MAX_PIXELS_DEFAULT pixels
 * are refused; mr_image_load_limited takes the limit (MAX_IMAGE_PIXELS). */
mr_status mr_image_load(const char *path, int channels, mr_image *out);
mr_status mr_image_load_limited(const char *path, int channels, int64_t max_pixels, mr_image *out);
/* Width and height from the file header alone, after the EXIF orientation, without decoding
 * the pixels (no pixel limit: a header costs nothing). */
mr_status mr_image_size(const char *path, int *width, int *height);
/* Fills `info` for `path`. Decodes the whole image, without keeping its pixels (one row at a
 * time except for interlaced PNG), to learn whether colour samples are really gray; so a
 * truncated or corrupt file, or one over `max_pixels`, fails here as it would at load. */
mr_status mr_image_probe(const char *path, int64_t max_pixels, mr_image_info *info);
/* Writes 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels as an 8-bit PNG, atomically
 * (mr_write_file_atomic): on failure the message names the file and the OS reason, and no
 * partial or temp file is left. */
mr_status mr_image_write_png(const char *path, const mr_image *img);
mr_status mr_image_alloc(mr_image *img, int width, int height, int channels);
void mr_image_free(mr_image *img);

#endif

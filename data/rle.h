/* COCO run-length encoding of binary masks, as pycocotools writes it in "counts" strings: runs
 * taken column by column (Fortran order), starting with a run of zeros (possibly empty), each run
 * length written as a little-endian sequence of 5-bit chunks in the characters '0'..'o' (48 +
 * 0..63; 0x20 = another chunk follows, 0x10 of the last chunk = negative), and from the fourth
 * run on as the difference to the run two before. mrcnn masks are row-major in memory; these
 * functions take them as they are. */
#ifndef MR_RLE_H
#define MR_RLE_H

#include <stdint.h>

#include "../core/status.h"

/* The "counts" string of `mask` (height rows of width bytes, non-zero = set) into *counts, a
 * NUL-terminated string the caller frees. height and width must be positive. */
mr_status mr_rle_encode(const uint8_t *mask, int height, int width, char **counts);

/* Decodes a "counts" string into `mask` (height * width bytes of 0 or 1, row-major). The string
 * may come from anywhere: characters outside '0'..'o', a number longer than 7 chunks, a string
 * ending inside a number, a negative run, or runs that do not add up to height * width fail with
 * MR_ERR_FORMAT and a message saying which, and nothing outside `mask` is ever touched (its
 * contents are unspecified on failure). */
mr_status mr_rle_decode(const char *counts, int height, int width, uint8_t *mask);

#endif

/* COCO compressed RLE ("counts" strings): the encoder walks the mask column by column as
 * pycocotools' rleEncode does and writes the numbers as its rleToString does; the decoder reads
 * them back with every bound checked, since predictions and annotations arrive as untrusted JSON.
 * Both are written from the format's description (data/rle.h), not from pycocotools' code. */
#include "rle.h"

#include <stdbool.h>
#include <stdlib.h>

#include "../core/text.h"

/* pycocotools keeps run lengths in 32-bit unsigned integers. */
#define MAX_PIXELS 4294967295LL
/* Seven 5-bit chunks carry 35 bits with the sign: any run up to MAX_PIXELS, and any difference
 * of two such runs. */
#define MAX_CHUNKS 7

/* One number, least significant chunk first; the last chunk's 0x10 bit is the sign. */
static void put_number(mr_text *t, int64_t x) {
    char digits[13]; /* any int64_t: 64 bits in 5-bit chunks */
    int n = 0;
    bool more = true;
    while (more) {
        int chunk = (int)(x & 0x1f); /* int64_t is two's complement: the low five bits */
        x = (x - chunk) / 32;        /* exact, so this is the arithmetic shift x >> 5 */
        more = (chunk & 0x10) ? x != -1 : x != 0;
        if (more) chunk |= 0x20;
        digits[n++] = (char)(48 + chunk);
    }
    mr_text_printf(t, "%.*s", n, digits);
}

static bool size_ok(int height, int width) {
    return height > 0 && width > 0 && (int64_t)height * width <= MAX_PIXELS;
}

mr_status mr_rle_encode(const uint8_t *mask, int height, int width, char **counts) {
    *counts = NULL;
    if (!size_ok(height, width))
        return mr_fail(MR_ERR_ARG,
                       "RLE encode: mask size %dx%d, expected positive sides and at "
                       "most 2^32 - 1 pixels",
                       height, width);
    mr_text t = {0};
    /* Runs alternate 0, 1, 0, ...; from the fourth on, each is written as the difference to the
     * run two before it (runs[0] and runs[1] hold the two previous ones). */
    int64_t runs[2] = {0, 0}, index = 0, run = 0;
    uint8_t value = 0;
    for (int c = 0; c < width && !t.failed; c++)
        for (int r = 0; r < height && !t.failed; r++) {
            uint8_t v = mask[(size_t)r * (size_t)width + (size_t)c] != 0;
            if (v == value) {
                run++;
                continue;
            }
            put_number(&t, index > 2 ? run - runs[0] : run);
            runs[0] = runs[1], runs[1] = run, index++;
            run = 1;
            value = v;
        }
    put_number(&t, index > 2 ? run - runs[0] : run);
    if (t.failed) {
        mr_text_free(&t);
        return mr_fail(MR_ERR_NOMEM, "RLE encode: out of memory for a %dx%d mask", height, width);
    }
    *counts = t.s;
    return MR_OK;
}

mr_status mr_rle_decode(const char *counts, int height, int width, uint8_t *mask) {
    if (!counts) return mr_fail(MR_ERR_ARG, "RLE decode: no counts string");
    if (!size_ok(height, width))
        return mr_fail(MR_ERR_FORMAT,
                       "RLE decode: mask size %dx%d, expected positive sides and "
                       "at most 2^32 - 1 pixels",
                       height, width);
    const int64_t total = (int64_t)height * width;
    int64_t runs[2] = {0, 0}, index = 0, filled = 0;
    int r = 0, c = 0; /* next pixel, column by column */
    uint8_t value = 0;
    size_t p = 0;
    while (counts[p]) {
        size_t start = p;
        int64_t x = 0;
        int k = 0, chunk = 0;
        bool more = true;
        while (more) {
            unsigned char ch = (unsigned char)counts[p];
            if (ch == '\0')
                return mr_fail(MR_ERR_FORMAT,
                               "RLE decode: the string ends inside run %lld "
                               "(offset %zu); its last character has 0x20 set",
                               (long long)index, start);
            if (ch < 48 || ch > 111)
                return mr_fail(MR_ERR_FORMAT,
                               "RLE decode: character code %d at offset %zu, "
                               "expected one of '0'..'o'",
                               ch, p);
            if (k == MAX_CHUNKS)
                return mr_fail(MR_ERR_FORMAT,
                               "RLE decode: run %lld at offset %zu is longer "
                               "than %d characters",
                               (long long)index, start, MAX_CHUNKS);
            chunk = ch - 48;
            x |= (int64_t)(chunk & 0x1f) << (5 * k);
            more = chunk & 0x20;
            p++;
            k++;
        }
        if (chunk & 0x10) x -= (int64_t)1 << (5 * k); /* negative: the top chunk's 0x10 */
        if (index > 2) x += runs[0];
        if (x < 0)
            return mr_fail(MR_ERR_FORMAT,
                           "RLE decode: run %lld (offset %zu) is %lld, expected "
                           ">= 0",
                           (long long)index, start, (long long)x);
        if (x > total - filled)
            return mr_fail(MR_ERR_FORMAT,
                           "RLE decode: runs add up to more than %dx%d = %lld "
                           "pixels at run %lld (offset %zu)",
                           height, width, (long long)total, (long long)index, start);
        for (int64_t i = 0; i < x; i++) {
            mask[(size_t)r * (size_t)width + (size_t)c] = value;
            if (++r == height) r = 0, c++;
        }
        filled += x;
        value ^= 1;
        runs[0] = runs[1], runs[1] = x, index++;
    }
    if (filled != total)
        return mr_fail(MR_ERR_FORMAT,
                       "RLE decode: runs add up to %lld pixels, expected %dx%d = "
                       "%lld",
                       (long long)filled, height, width, (long long)total);
    return MR_OK;
}

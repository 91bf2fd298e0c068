/* Tests for data/rle.c: COCO compressed RLE. Known pycocotools encodings, the independent
 * reference cases of tests/ref/rle_ref.json (tests/ref/make_rle_refs.py), round trips on random
 * masks from 1x1 to 300x400 including empty and full ones, malformed strings rejected with a
 * message, and random strings that must never crash or write outside the mask (run under ASan by
 * `make test-asan`). */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../data/rle.h"
#include "testutil.h"

#define REF_FILE "tests/ref/rle_ref.json" /* tests run from the repository root */

static char *encode(const uint8_t *m, int h, int w) {
    char *s = NULL;
    cr_assert_eq(mr_rle_encode(m, h, w, &s), MR_OK, "%s", mr_last_error());
    cr_assert_not_null(s);
    return s;
}

/* Encoded, then decoded into a buffer with guard bytes on both sides: the same mask back, 0/1,
 * and nothing written outside it. */
static void round_trip(const uint8_t *m, int h, int w) {
    size_t n = (size_t)h * w;
    char *s = encode(m, h, w);
    uint8_t *buf = malloc(n + 32);
    memset(buf, 0xAB, n + 32);
    cr_assert_eq(mr_rle_decode(s, h, w, buf + 16), MR_OK, "%dx%d: %s", h, w, mr_last_error());
    for (size_t i = 0; i < 16; i++)
        cr_assert(buf[i] == 0xAB && buf[16 + n + i] == 0xAB, "%dx%d: wrote outside the mask", h, w);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(buf[16 + i], m[i] != 0, "%dx%d: pixel %zu differs", h, w, i);
    free(buf);
    free(s);
}

/* The square [lo, hi) x [lo, hi) of a 25x25 mask. */
static void square(uint8_t *m, int lo, int hi) {
    memset(m, 0, 25 * 25);
    for (int y = lo; y < hi; y++)
        for (int x = lo; x < hi; x++) m[y * 25 + x] = 1;
}

Test(rle, known_pycocotools_encodings) {
    /* pycocotools.mask.encode outputs for 25x25 masks with a square set, as the test suites of
     * pytorchcocotools and similar ports pin them. */
    static const struct {
        int lo, hi;
        const char *counts;
    } known[] = {
        {0, 5, "05d00000000d?"},
        {5, 10, "R45d00000000b;"},
        {20, 25, "X`05d00000000"},
        {0, 25, "0ac0"},
    };
    uint8_t m[25 * 25];
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++) {
        square(m, known[k].lo, known[k].hi);
        char *s = encode(m, 25, 25);
        cr_assert_str_eq(s, known[k].counts, "square %d..%d", known[k].lo, known[k].hi);
        free(s);
        uint8_t back[25 * 25];
        cr_assert_eq(mr_rle_decode(known[k].counts, 25, 25, back), MR_OK, "%s", mr_last_error());
        cr_assert_arr_eq(back, m, sizeof m);
    }
    /* A real 427x640 pycocotools string (it holds '\\', multi-chunk and negative numbers): it
     * decodes, and encodes back to itself, so the encoder writes the canonical form. */
    const char *real = "\\`_3;j<6M3E_OjCd0T<:O1O2O001O00001O00001O001O0000O1K6J5J6A^C0g<N=O001O0"
                       "O2Omk^4";
    uint8_t *big = malloc(427 * 640);
    cr_assert_eq(mr_rle_decode(real, 427, 640, big), MR_OK, "%s", mr_last_error());
    int64_t area = 0;
    for (int i = 0; i < 427 * 640; i++) area += big[i];
    cr_assert(area > 100 && area < 427 * 640 / 2, "area %lld", (long long)area);
    char *again = encode(big, 427, 640);
    cr_assert_str_eq(again, real);
    free(again);
    free(big);
}

Test(rle, independent_reference_cases) {
    FILE *f = fopen(REF_FILE, "rb");
    cr_assert_not_null(f, "%s missing (tests/ref/make_rle_refs.py writes it)", REF_FILE);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)len + 1);
    cr_assert_eq(fread(text, 1, (size_t)len, f), (size_t)len);
    text[len] = '\0';
    fclose(f);
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root, "%s does not parse", REF_FILE);
    const cJSON *c;
    int n = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(root, "cases")) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(c, "name"));
        int h = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(c, "height"));
        int w = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(c, "width"));
        const char *bits = cJSON_GetStringValue(cJSON_GetObjectItem(c, "mask"));
        const char *counts = cJSON_GetStringValue(cJSON_GetObjectItem(c, "counts"));
        cr_assert(name && bits && counts && h > 0 && w > 0 && strlen(bits) == (size_t)h * w);
        uint8_t *m = malloc((size_t)h * w), *back = malloc((size_t)h * w);
        for (int i = 0; i < h * w; i++) m[i] = bits[i] == '1';
        char *s = encode(m, h, w);
        cr_assert_str_eq(s, counts, "%s: encoded differently", name);
        cr_assert_eq(mr_rle_decode(counts, h, w, back), MR_OK, "%s: %s", name, mr_last_error());
        cr_assert_arr_eq(back, m, (size_t)h * w, "%s: decoded differently", name);
        free(s);
        free(m);
        free(back);
        n++;
    }
    cr_assert_geq(n, 10, "%s holds %d cases", REF_FILE, n);
    cJSON_Delete(root);
    free(text);
}

Test(rle, round_trips) {
    mr_rng rng;
    mr_rng_seed(&rng, 7);
    static const int sizes[][2] = {{1, 1},   {1, 7},   {9, 1},    {2, 2},    {5, 3},
                                   {25, 25}, {64, 48}, {127, 33}, {300, 400}};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int h = sizes[k][0], w = sizes[k][1];
        size_t n = (size_t)h * w;
        uint8_t *m = malloc(n);
        memset(m, 0, n);
        round_trip(m, h, w); /* empty */
        memset(m, 1, n);
        round_trip(m, h, w); /* full */
        for (int t = 0; t < 6; t++) {
            double p = (t + 0.5) / 6.0;
            for (size_t i = 0; i < n; i++)
                m[i] = mr_rng_uniform_double(&rng) < p ? (uint8_t)(1 + t) : 0;
            round_trip(m, h, w); /* scattered, non-zero values other than 1 */
        }
        /* A blob: long runs, several chunks per number, large negative differences. */
        memset(m, 0, n);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                double dx = (x - 0.6 * w) / (0.3 * w + 1), dy = (y - 0.4 * h) / (0.35 * h + 1);
                m[y * w + x] = dx * dx + dy * dy < 1.0;
            }
        m[0] = 1;
        m[n - 1] = 1;
        round_trip(m, h, w);
        free(m);
    }
}

Test(rle, encode_rejects_bad_sizes) {
    uint8_t m[4] = {0};
    char *s = (char *)1;
    cr_assert_eq(mr_rle_encode(m, 0, 4, &s), MR_ERR_ARG);
    cr_assert_null(s);
    cr_assert(strstr(mr_last_error(), "0x4"), "%s", mr_last_error());
    cr_assert_eq(mr_rle_encode(m, 2, -1, &s), MR_ERR_ARG);
    cr_assert_eq(mr_rle_encode(m, 70000, 70000, &s), MR_ERR_ARG, "over 2^32 pixels");
}

/* Fails with MR_ERR_FORMAT, a message holding `needle`, and the guard bytes untouched. */
static void expect_rejected(const char *counts, int h, int w, const char *needle) {
    size_t n = (size_t)h * w;
    uint8_t *buf = malloc(n + 32);
    memset(buf, 0xAB, n + 32);
    cr_assert_eq(mr_rle_decode(counts, h, w, buf + 16), MR_ERR_FORMAT, "'%s' %dx%d accepted",
                 counts, h, w);
    cr_assert(strstr(mr_last_error(), needle), "'%s': expected '%s' in: %s", counts, needle,
              mr_last_error());
    cr_assert(strchr(mr_last_error(), '\n') == NULL, "one line: %s", mr_last_error());
    for (size_t i = 0; i < 16; i++) cr_assert(buf[i] == 0xAB && buf[16 + n + i] == 0xAB);
    free(buf);
}

Test(rle, malformed_strings_are_rejected) {
    /* 3x4 = 12 pixels. "<" is 12 zeros, "0<" 12 ones. */
    uint8_t m[12];
    cr_assert_eq(mr_rle_decode("<", 3, 4, m), MR_OK);
    cr_assert_eq(mr_rle_decode("0<", 3, 4, m), MR_OK);
    expect_rejected("", 3, 4, "add up to 0 pixels, expected 3x4 = 12");
    expect_rejected(";", 3, 4, "add up to 11 pixels");
    expect_rejected("=", 3, 4, "more than 3x4 = 12 pixels");
    expect_rejected("0<1", 3, 4, "more than");
    expect_rejected("1 2", 3, 4, "character code 32 at offset 1");
    expect_rejected("1p", 3, 4, "character code 112");
    expect_rejected("/", 3, 4, "character code 47");
    expect_rejected("\xff", 3, 4, "character code 255");
    expect_rejected("P", 3, 4, "ends inside run 0"); /* 'P' = 48 + 0x20: more to come */
    expect_rejected("PPPPPPPP", 3, 4, "longer than 7 characters");
    expect_rejected("`", 3, 4, "ends inside run 0");
    expect_rejected("O", 3, 4, "is -1, expected >= 0"); /* 'O' = 48 + 31: -1 */
    /* Differences against the run two before: 2, 2, 2, then -3 + 2 = -1. */
    expect_rejected("222M", 3, 4, "run 3 (offset 3) is -1");
    expect_rejected("1", 0, 4, "mask size 0x4");
    cr_assert_eq(mr_rle_decode(NULL, 3, 4, m), MR_ERR_ARG);
}

Test(rle, random_strings_never_crash) {
    /* Random strings of '0'..'o' (and a few others) decode or fail cleanly; never a write
     * outside the mask, never a crash (ASan checks the reads). */
    mr_rng rng;
    mr_rng_seed(&rng, 99);
    char s[64];
    uint8_t buf[16 + 12 * 10 + 16];
    int ok = 0;
    for (int t = 0; t < 20000; t++) {
        int len = (int)(mr_rng_uniform(&rng) * 20.0f);
        for (int i = 0; i < len; i++) {
            float u = mr_rng_uniform(&rng);
            s[i] = u < 0.97f ? (char)(48 + (int)(mr_rng_uniform(&rng) * 64.0f))
                             : (char)(1 + (int)(mr_rng_uniform(&rng) * 254.0f));
        }
        s[len] = '\0';
        int h = 1 + (int)(mr_rng_uniform(&rng) * 12.0f),
            w = 1 + (int)(mr_rng_uniform(&rng) * 10.0f);
        memset(buf, 0xAB, sizeof buf);
        mr_status st = mr_rle_decode(s, h, w, buf + 16);
        cr_assert(st == MR_OK || st == MR_ERR_FORMAT, "'%s': status %d", s, st);
        for (size_t i = 0; i < 16; i++) cr_assert_eq(buf[i], 0xAB);
        for (size_t i = 16 + (size_t)h * w; i < sizeof buf; i++) cr_assert_eq(buf[i], 0xAB);
        if (st == MR_OK) {
            ok++;
            for (int i = 0; i < h * w; i++) cr_assert(buf[16 + i] <= 1);
            char *again = encode(buf + 16, h, w);
            uint8_t back[12 * 10];
            cr_assert_eq(mr_rle_decode(again, h, w, back), MR_OK);
            cr_assert_arr_eq(back, buf + 16, (size_t)h * w);
            free(again);
        }
    }
    cr_assert_gt(ok, 0, "some random strings must be valid, to test what is accepted");
}

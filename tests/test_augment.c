/* Augmentation on small synthetic molded samples: flips mirror boxes, masks stay on the bright
 * lesion through scale and shift, padding stays padding, same seed same bytes, and a lesion
 * pushed out of the frame leaves an empty mask. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../data/augment.h"
#include "testutil.h"

#define SIDE 64

static const float mean1[1] = {100.0f};
static const float mean3[3] = {120.0f, 110.0f, 100.0f};

/* A molded (SIDE, SIDE, C) image: background 50, lesion 200 on rows [y1, y2) and columns
 * [x1, x2), padding (intensity 0) outside the window; the lesion's mask in `mask`. */
static void make_sample(float *img, uint8_t *mask, int C, const float *mean, const int64_t win[4],
                        int y1, int x1, int y2, int x2) {
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            bool content = y >= win[0] && y < win[2] && x >= win[1] && x < win[3];
            bool lesion = content && y >= y1 && y < y2 && x >= x1 && x < x2;
            for (int c = 0; c < C; c++)
                img[(y * SIDE + x) * C + c] =
                    (content ? (lesion ? 200.0f : 50.0f) : 0.0f) - mean[c];
            if (mask) mask[y * SIDE + x] = lesion;
        }
}

/* (y1, x1, y2, x2) of a mask, y2/x2 exclusive; false when empty. */
static bool box_of(const uint8_t *m, int64_t b[4]) {
    b[0] = b[1] = SIDE, b[2] = b[3] = -1;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++)
            if (m[y * SIDE + x]) {
                if (y < b[0]) b[0] = y;
                if (x < b[1]) b[1] = x;
                if (y + 1 > b[2]) b[2] = y + 1;
                if (x + 1 > b[3]) b[3] = x + 1;
            }
    return b[2] > 0;
}

static mr_augment_params geometry_only(void) {
    mr_augment_params p = mr_augment_none();
    p.flip_prob = 0.5f;
    p.scale_min = 0.8f;
    p.scale_max = 1.25f;
    p.translate = 0.15f;
    return p;
}

Test(augment, flip_mirrors_box_and_image) {
    static float img[SIDE * SIDE], ref[SIDE * SIDE];
    static uint8_t mask[SIDE * SIDE];
    const int64_t win[4] = {0, 0, SIDE, SIDE};
    make_sample(img, mask, 1, mean1, win, 10, 5, 20, 17);
    memcpy(ref, img, sizeof img);
    mr_augment_params p = mr_augment_none();
    p.flip_prob = 1.0f;
    mr_augment_draw d;
    cr_assert_eq(mr_augment(img, SIDE, 1, mean1, NULL, win, mask, 1, &p, 99, &d), MR_OK, "%s",
                 mr_last_error());
    cr_assert(d.flipped);
    int64_t b[4];
    cr_assert(box_of(mask, b));
    cr_assert_eq(b[0], 10);
    cr_assert_eq(b[2], 20);
    cr_assert_eq(b[1], SIDE - 17, "x1 %lld", (long long)b[1]);
    cr_assert_eq(b[3], SIDE - 5, "x2 %lld", (long long)b[3]);
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++)
            cr_assert_float_eq(img[y * SIDE + x], ref[y * SIDE + SIDE - 1 - x], 1e-4);
}

Test(augment, masks_follow_the_lesion_under_scale_and_shift) {
    static float img[SIDE * SIDE];
    static uint8_t mask[SIDE * SIDE];
    const int64_t win[4] = {8, 0, 56, SIDE}; /* a landscape image: padding above and below */
    mr_augment_params p = geometry_only();
    int moved = 0;
    for (uint64_t seed = 1; seed <= 40; seed++) {
        make_sample(img, mask, 1, mean1, win, 20, 24, 34, 44);
        mr_augment_draw d;
        cr_assert_eq(mr_augment(img, SIDE, 1, mean1, NULL, win, mask, 1, &p, seed, &d), MR_OK);
        moved += fabsf(d.shift_x) > 1.0f || fabsf(d.scale - 1.0f) > 0.02f;
        int64_t area = 0;
        for (int i = 0; i < SIDE * SIDE; i++) {
            float v = img[i] + mean1[0];
            /* The mask's pixel takes its source's nearest pixel, so at least a quarter of the
             * bilinear weight is lesion (200 vs 50); off the mask at most a half. */
            if (mask[i])
                cr_assert_gt(v, 85.0f, "seed %llu pixel %d: %g", (unsigned long long)seed, i,
                             (double)v);
            else
                cr_assert_lt(v, 130.0f, "seed %llu pixel %d: %g", (unsigned long long)seed, i,
                             (double)v);
            area += mask[i];
        }
        double want = 14.0 * 20.0 * (double)d.scale * (double)d.scale;
        cr_assert(fabs((double)area - want) < 0.25 * want, "area %lld vs %g", (long long)area,
                  want);
        /* The box moved with the draw: its centre is the old centre mapped forward. */
        int64_t b[4];
        cr_assert(box_of(mask, b));
        double c = (SIDE - 1) * 0.5, cx = 33.5, cy = 26.5;
        if (d.flipped) cx = SIDE - 1 - cx;
        double sc = (double)d.scale;
        double ex = c + sc * (cx - c) + (double)d.shift_x;
        double ey = c + sc * (cy - c) + (double)d.shift_y;
        cr_assert(fabs((b[1] + b[3] - 1) * 0.5 - ex) <= 1.0, "x centre %g vs %g",
                  (b[1] + b[3] - 1) * 0.5, ex);
        cr_assert(fabs((b[0] + b[2] - 1) * 0.5 - ey) <= 1.0, "y centre %g vs %g",
                  (b[0] + b[2] - 1) * 0.5, ey);
    }
    cr_assert_gt(moved, 30, "the draws hardly moved anything");
}

Test(augment, padding_stays_padding_and_content_is_jittered) {
    static float img[SIDE * SIDE * 3], ref[SIDE * SIDE * 3];
    const int64_t win[4] = {0, 10, SIDE, 54}; /* portrait: padding left and right */
    make_sample(img, NULL, 3, mean3, win, 20, 20, 30, 30);
    memcpy(ref, img, sizeof img);
    mr_augment_params p = mr_augment_defaults();
    p.flip_prob = 0.0f;
    p.scale_min = p.scale_max = 1.0f;
    p.translate = 0.0f;
    mr_augment_draw d;
    cr_assert_eq(mr_augment(img, SIDE, 3, mean3, NULL, win, NULL, 0, &p, 12345, &d), MR_OK);
    int64_t changed = 0;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++)
            for (int c = 0; c < 3; c++) {
                int i = (y * SIDE + x) * 3 + c;
                if (x < 10 || x >= 54)
                    cr_assert_eq(img[i], -mean3[c], "padding (%d, %d) moved", y, x);
                else {
                    changed += img[i] != ref[i];
                    cr_assert(img[i] + mean3[c] >= 0.0f && img[i] + mean3[c] <= 255.0f);
                }
            }
    cr_assert_gt(changed, SIDE * 44 * 3 / 2);
    /* Speckle is one factor per pixel: grey content keeps equal channels. */
    for (int i = 0; i < SIDE * SIDE; i++)
        cr_assert_float_eq(img[3 * i] + mean3[0], img[3 * i + 2] + mean3[2], 1e-3);
}

Test(augment, brightness_alone_adds_its_draw) {
    static float img[SIDE * SIDE], ref[SIDE * SIDE];
    const int64_t win[4] = {0, 0, SIDE, SIDE};
    make_sample(img, NULL, 1, mean1, win, 20, 20, 30, 30);
    memcpy(ref, img, sizeof img);
    mr_augment_params p = mr_augment_none();
    p.brightness = 0.1f;
    mr_augment_draw d;
    cr_assert_eq(mr_augment(img, SIDE, 1, mean1, NULL, win, NULL, 0, &p, 7, &d), MR_OK);
    cr_assert(fabsf(d.brightness) <= 25.5f && d.brightness != 0.0f);
    for (int i = 0; i < SIDE * SIDE; i++) cr_assert_float_eq(img[i], ref[i] + d.brightness, 1e-3);
}

Test(augment, none_leaves_everything_untouched) {
    static float img[SIDE * SIDE], ref[SIDE * SIDE];
    static uint8_t mask[SIDE * SIDE], mref[SIDE * SIDE];
    const int64_t win[4] = {3, 0, 61, SIDE};
    make_sample(img, mask, 1, mean1, win, 20, 20, 30, 30);
    memcpy(ref, img, sizeof img);
    memcpy(mref, mask, sizeof mask);
    mr_augment_params p = mr_augment_none();
    cr_assert_eq(mr_augment(img, SIDE, 1, mean1, NULL, win, mask, 1, &p, 5, NULL), MR_OK);
    cr_assert_eq(memcmp(img, ref, sizeof img), 0);
    cr_assert_eq(memcmp(mask, mref, sizeof mask), 0);
}

Test(augment, same_seed_same_bytes_other_seed_other_bytes) {
    static float a[SIDE * SIDE * 3], b[SIDE * SIDE * 3];
    static uint8_t ma[2 * SIDE * SIDE], mb[2 * SIDE * SIDE];
    const int64_t win[4] = {0, 0, SIDE, SIDE};
    mr_augment_params p = mr_augment_defaults();
    make_sample(a, ma, 3, mean3, win, 10, 10, 30, 25);
    make_sample(a, ma + SIDE * SIDE, 3, mean3, win, 40, 30, 50, 60);
    memcpy(b, a, sizeof a);
    memcpy(mb, ma, sizeof ma);
    cr_assert_eq(mr_augment(a, SIDE, 3, mean3, NULL, win, ma, 2, &p, 0xabcdef, NULL), MR_OK);
    cr_assert_eq(mr_augment(b, SIDE, 3, mean3, NULL, win, mb, 2, &p, 0xabcdef, NULL), MR_OK);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    cr_assert_eq(memcmp(ma, mb, sizeof ma), 0);

    make_sample(b, mb, 3, mean3, win, 10, 10, 30, 25);
    make_sample(b, mb + SIDE * SIDE, 3, mean3, win, 40, 30, 50, 60);
    cr_assert_eq(mr_augment(b, SIDE, 3, mean3, NULL, win, mb, 2, &p, 0xabcdee, NULL), MR_OK);
    cr_assert_neq(memcmp(a, b, sizeof a), 0);
}

Test(augment, lesion_pushed_out_of_the_frame_leaves_an_empty_mask) {
    static float img[SIDE * SIDE];
    static uint8_t mask[SIDE * SIDE];
    const int64_t win[4] = {0, 0, SIDE, SIDE};
    mr_augment_params p = mr_augment_none();
    p.translate = 0.5f;
    int gone = 0, kept = 0;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        make_sample(img, mask, 1, mean1, win, 30, 0, 36, 4); /* columns 0..3 */
        mr_augment_draw d;
        cr_assert_eq(mr_augment(img, SIDE, 1, mean1, NULL, win, mask, 1, &p, seed, &d), MR_OK);
        int64_t b[4];
        bool any = box_of(mask, b);
        /* The lesion's last column (3) lands at 3 + shift_x, and the mask follows the image. */
        if (d.shift_x < -4.5f) {
            cr_assert(!any, "shift %g", (double)d.shift_x);
            gone++;
        }
        if (d.shift_x > -2.5f) {
            cr_assert(any, "shift %g", (double)d.shift_x);
            kept++;
        }
    }
    cr_assert_gt(gone, 0);
    cr_assert_gt(kept, 0);
}

Test(augment, bad_parameters_are_errors) {
    static float img[SIDE * SIDE];
    mr_augment_params p = mr_augment_defaults();
    p.scale_min = 0.0f;
    cr_assert_eq(mr_augment(img, SIDE, 1, mean1, NULL, NULL, NULL, 0, &p, 1, NULL), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "scale_min"));
}

/* Tests for layers/anchors.c: counts for the Matterport defaults and the 5 sizes x 3 ratios
 * form, placement and order on small cases computed by hand, config checking. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../layers/anchors.h"
#include "testutil.h"

static void expect_box(const float *a, int64_t index, double y1, double x1, double y2, double x2) {
    const float *b = a + 4 * index;
    const double want[4] = {y1, x1, y2, x2};
    for (int k = 0; k < 4; k++)
        cr_assert_float_eq((double)b[k], want[k], 1e-4, "anchor %lld coord %d: %g, want %g",
                           (long long)index, k, (double)b[k], want[k]);
}

Test(anchors, matterport_defaults_give_261888) {
    mr_anchor_config cfg = mr_anchor_config_matterport();
    cr_assert_eq(mr_anchors_per_location(&cfg), 3);
    cr_assert_eq(mr_anchor_count(&cfg, 1024, 1024), 261888);
    float *a;
    int64_t n;
    cr_assert_eq(mr_generate_anchors(&cfg, 1024, 1024, &a, &n), MR_OK, "%s", mr_last_error());
    cr_assert_eq(n, 261888);
    /* First anchor: P2 centre (0, 0), scale 32, ratio 0.5 (taller than wide). */
    double h = 32 / sqrt(0.5), w = 32 * sqrt(0.5);
    expect_box(a, 0, -h / 2, -w / 2, h / 2, w / 2);
    /* Last anchor: P6 (16x16 cells of 64 px), cell (15, 15), scale 512, ratio 2. */
    h = 512 / sqrt(2.0), w = 512 * sqrt(2.0);
    expect_box(a, n - 1, 960 - h / 2, 960 - w / 2, 960 + h / 2, 960 + w / 2);
    /* First P6 anchor comes after all P2..P5 anchors. */
    int64_t p6 = 3 * (256 * 256 + 128 * 128 + 64 * 64 + 32 * 32);
    expect_box(a, p6 + 1, -256, -256, 256, 256);
    free(a);
}

Test(anchors, five_sizes_three_ratios_give_15_per_location) {
    static const int strides[5] = {4, 8, 16, 32, 64};
    static const float sizes[5] = {4, 7, 8, 10, 12};
    static const float ratios[3] = {1.5f, 2.5f, 3.6f};
    mr_anchor_config cfg = {.n_levels = 5,
                            .strides = strides,
                            .n_scales = 5,
                            .scales = sizes,
                            .scales_per_level = false,
                            .n_ratios = 3,
                            .ratios = ratios,
                            .anchor_stride = 1};
    cr_assert_eq(mr_anchors_per_location(&cfg), 15);
    cr_assert_eq(mr_anchor_count(&cfg, 1024, 1024),
                 15 * (256 * 256 + 128 * 128 + 64 * 64 + 32 * 32 + 16 * 16));
    float *a;
    int64_t n;
    cr_assert_eq(mr_generate_anchors(&cfg, 1024, 1024, &a, &n), MR_OK, "%s", mr_last_error());
    cr_assert_eq(n, 1309440);
    /* Location (0, 0) of P2: index = size * 3 + ratio; sizes are pixels, not scaled by level. */
    for (int s = 0; s < 5; s++)
        for (int r = 0; r < 3; r++) {
            double s_ = (double)sizes[s], r_ = sqrt((double)ratios[r]);
            double h = s_ / r_, w = s_ * r_;
            expect_box(a, s * 3 + r, -h / 2, -w / 2, h / 2, w / 2);
        }
    /* P3 (stride 8), cell (2, 5), size 10, ratio 2.5: the same pixel size as on P2. */
    int64_t idx = 15 * (256 * 256) + 15 * (2 * 128 + 5) + 3 * 3 + 1;
    double h = 10 / sqrt(2.5), w = 10 * sqrt(2.5);
    expect_box(a, idx, 16 - h / 2, 40 - w / 2, 16 + h / 2, 40 + w / 2);
    free(a);
}

Test(anchors, small_case_by_hand) {
    /* 16x16 image, strides 4 and 8, scale 8 then 16, ratios 0.5, 1, 2. */
    static const int strides[2] = {4, 8};
    static const float scales[2] = {8, 16};
    static const float ratios[3] = {0.5f, 1, 2};
    mr_anchor_config cfg = {2, strides, 2, scales, true, 3, ratios, 1};
    float *a;
    int64_t n;
    cr_assert_eq(mr_generate_anchors(&cfg, 16, 16, &a, &n), MR_OK, "%s", mr_last_error());
    cr_assert_eq(n, 3 * (4 * 4 + 2 * 2));
    const double r2 = sqrt(2.0);
    /* Level 0, cell (0, 0): ratio 0.5 gives h = 8 / sqrt(0.5), w = 8 * sqrt(0.5). */
    expect_box(a, 0, -4 * r2, -2 * r2, 4 * r2, 2 * r2);
    expect_box(a, 1, -4, -4, 4, 4);
    expect_box(a, 2, -2 * r2, -4 * r2, 2 * r2, 4 * r2);
    /* Level 0, cell (y 1, x 2): centre (4, 8); x varies faster than y. */
    expect_box(a, (1 * 4 + 2) * 3 + 1, 0, 4, 8, 12);
    expect_box(a, (0 * 4 + 1) * 3 + 1, -4, 0, 4, 8);
    /* Level 1 starts after 48 anchors: cell (1, 1) centre (8, 8), scale 16, ratio 1. */
    expect_box(a, 48 + (1 * 2 + 1) * 3 + 1, 0, 0, 16, 16);
    free(a);

    /* anchor_stride 2 keeps feature positions 0, 2: centres 0 and 8 on level 0. */
    cfg.anchor_stride = 2;
    cr_assert_eq(mr_generate_anchors(&cfg, 16, 16, &a, &n), MR_OK);
    cr_assert_eq(n, 3 * (2 * 2 + 1 * 1));
    expect_box(a, (0 * 2 + 1) * 3 + 1, -4, 4, 4, 12);
    free(a);
}

Test(anchors, feature_shapes_round_up) {
    static const int strides[3] = {4, 32, 64};
    static const float scales[3] = {8, 16, 32};
    static const float ratios[1] = {1};
    mr_anchor_config cfg = {3, strides, 3, scales, true, 1, ratios, 1};
    int64_t fh, fw;
    mr_anchor_level_shape(&cfg, 0, 100, 70, &fh, &fw);
    cr_assert_eq(fh, 25);
    cr_assert_eq(fw, 18);
    mr_anchor_level_shape(&cfg, 2, 100, 70, &fh, &fw);
    cr_assert_eq(fh, 2);
    cr_assert_eq(fw, 2);
    cr_assert_eq(mr_anchor_count(&cfg, 100, 70), 25 * 18 + 4 * 3 + 2 * 2);
}

Test(anchors, bad_configs_are_config_errors) {
    static const int strides[2] = {4, 8};
    static const float scales[3] = {8, 16, 32};
    static const float ratios[2] = {1, -2};
    mr_anchor_config cfg = {2, strides, 3, scales, true, 1, ratios, 1};
    float *a;
    int64_t n;
    cr_assert_eq(mr_generate_anchors(&cfg, 64, 64, &a, &n), MR_ERR_CONFIG);
    cr_assert_not_null(strstr(mr_last_error(), "3 scales for 2 levels"), "%s", mr_last_error());
    cr_assert_null(a);
    cfg.scales_per_level = false;
    cfg.n_ratios = 2;
    cr_assert_eq(mr_generate_anchors(&cfg, 64, 64, &a, &n), MR_ERR_CONFIG);
    cr_assert_not_null(strstr(mr_last_error(), "RPN_ANCHOR_RATIOS[1]"), "%s", mr_last_error());
    cfg.n_ratios = 1;
    cfg.anchor_stride = 0;
    cr_assert_eq(mr_anchor_config_check(&cfg), MR_ERR_CONFIG);
    cfg.anchor_stride = 1;
    cr_assert_eq(mr_anchor_config_check(&cfg), MR_OK);
}

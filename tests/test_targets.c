/* Tests for layers/targets.c: crop_and_resize and the skimage-style resize against PyTorch
 * references (tests/ref/boxes_ref.h5), mini masks, RPN targets (labels, caps, deltas, no GT)
 * and detection targets (counts, ratio, classes, deltas, mask targets, no GT). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/h5.h"
#include "../core/rng.h"
#include "../layers/anchors.h"
#include "../layers/boxes.h"
#include "../layers/resample.h"
#include "../layers/targets.h"
#include "testutil.h"

#define REF_FILE "tests/ref/boxes_ref.h5" /* tests run from the repository root */

static mr_h5 open_ref(void) {
    mr_h5 f;
    cr_assert_eq(mr_h5_open(REF_FILE, false, &f), MR_OK,
                 "%s (regenerate with tests/ref/make_box_refs.py)", mr_last_error());
    return f;
}

static float *read_f(mr_h5 *f, const char *name, int *nd, int64_t *shape) {
    float *d;
    cr_assert_eq(mr_h5_read(f, name, &d, nd, shape), MR_OK, "%s", mr_last_error());
    return d;
}

/* ---- samplers ---- */

Test(targets, crop_and_resize_matches_grid_sample) {
    mr_h5 f = open_ref();
    int nd;
    int64_t is[8], bs[8], os[8];
    float *img = read_f(&f, "crop_and_resize/image", &nd, is);
    float *boxes = read_f(&f, "crop_and_resize/boxes", &nd, bs);
    float *want = read_f(&f, "crop_and_resize/out", &nd, os);
    int64_t oh = os[1], ow = os[2];
    float *got = malloc((size_t)(oh * ow) * sizeof *got);
    for (int64_t b = 0; b < bs[0]; b++) {
        mr_crop_and_resize(got, oh, ow, img, is[0], is[1], boxes + 4 * b, -9.0f);
        for (int64_t i = 0; i < oh * ow; i++)
            cr_assert_float_eq(got[i], want[b * oh * ow + i], 2e-5f,
                               "box %lld sample %lld: %g vs torch %g", (long long)b, (long long)i,
                               (double)got[i], (double)want[b * oh * ow + i]);
    }
    free(img), free(boxes), free(want), free(got);
    mr_h5_close(&f);
}

Test(targets, crop_and_resize_extrapolates_and_centres) {
    const float img[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t img8[9] = {0, 255, 0, 0, 7, 0, 0, 1, 0};
    /* Rows sample at y = -1, 0, 1, 2: the first is outside and takes the extrapolation value. */
    const float box[4] = {-0.5f, 0.0f, 1.0f, 1.0f};
    float out[12];
    mr_crop_and_resize(out, 4, 3, img, 3, 3, box, -7.0f);
    const float want[12] = {-7, -7, -7, 0, 1, 2, 3, 4, 5, 6, 7, 8};
    for (int i = 0; i < 12; i++) cr_assert_float_eq(out[i], want[i], 1e-6f, "sample %d", i);
    /* One output sample takes the box centre. */
    const float unit[4] = {0, 0, 1, 1};
    mr_crop_and_resize(out, 1, 1, img, 3, 3, unit, 0.0f);
    cr_assert_float_eq(out[0], 4.0f, 1e-6f);
    /* Byte masks read as bool; half way between rows 0 and 1 of column 1: (1 + 1) / 2. */
    const float half[4] = {0.25f, 0.5f, 0.25f, 0.5f};
    mr_crop_and_resize_u8(out, 1, 1, img8, 3, 3, half, 0.0f);
    cr_assert_float_eq(out[0], 1.0f, 1e-6f);
    /* TF's float32 arithmetic: the last sample of box (0, 0, 1, 1) on a 56-pixel side at 28
     * outputs lands at 27 * float(55 / 27) = 55.0000038 > 55 and extrapolates. */
    float ones[56 * 56], crop[28 * 28];
    for (int i = 0; i < 56 * 56; i++) ones[i] = 1.0f;
    mr_crop_and_resize(crop, 28, 28, ones, 56, 56, unit, 0.0f);
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++)
            cr_assert_eq(crop[y * 28 + x], (y < 27 && x < 27) ? 1.0f : 0.0f, "(%d, %d)", y, x);
    const float mid[4] = {0.25f, 0.25f, 0.25f, 0.25f};
    mr_crop_and_resize_u8(out, 1, 1, img8, 3, 3, mid, 0.0f);
    cr_assert_float_eq(out[0], 0.5f, 1e-6f, "(0 + 1 + 0 + 1) / 4 with 255 and 7 read as 1");
}

Test(targets, resize_matches_skimage_reference) {
    mr_h5 f = open_ref();
    int nd;
    int64_t ms[8], os[8];
    float *mask = read_f(&f, "resize/mask", &nd, ms);
    for (int k = 0; k < 5; k++) {
        char name[32];
        snprintf(name, sizeof name, "resize/out%d", k);
        float *want = read_f(&f, name, &nd, os);
        int64_t n = os[0] * os[1];
        float *got = malloc((size_t)n * sizeof *got);
        uint8_t *on = malloc((size_t)n);
        cr_assert_eq(mr_resize_bilinear(got, os[0], os[1], mask, ms[0], ms[1]), MR_OK);
        cr_assert_eq(mr_resize_threshold(on, os[0], os[1], mask, ms[0], ms[1], 0.5), MR_OK);
        for (int64_t i = 0; i < n; i++) {
            cr_assert_float_eq(got[i], want[i], 1e-6f, "%s[%lld]: %g vs %g", name, (long long)i,
                               (double)got[i], (double)want[i]);
            if (fabsf(want[i] - 0.5f) > 1e-6f)
                cr_assert_eq(on[i], want[i] >= 0.5f, "%s[%lld] threshold", name, (long long)i);
        }
        free(want), free(got), free(on);
    }
    free(mask);
    mr_h5_close(&f);
}

Test(targets, resize_keeps_a_constant_mask_constant) {
    /* Upscaled edges blend with the zero outside, then clip=True lifts them back to the
     * input's minimum: a constant mask stays constant. */
    float in[4] = {0.9f, 0.9f, 0.9f, 0.9f}, out[7 * 5];
    cr_assert_eq(mr_resize_bilinear(out, 7, 5, in, 2, 2), MR_OK);
    for (int i = 0; i < 35; i++) cr_assert_float_eq(out[i], 0.9f, 1e-7f, "pixel %d", i);
}

Test(targets, mini_mask_round_trip) {
    enum { H = 40, W = 50, M = 56 };
    uint8_t mask[H * W] = {0}, mini[M * M], back[H * W];
    for (int y = 5; y < 25; y++)
        for (int x = 10; x < 40; x++) mask[y * W + x] = 1;
    const int64_t box[4] = {5, 10, 25, 40};
    cr_assert_eq(mr_minimize_mask(mini, M, M, mask, H, W, box), MR_OK, "%s", mr_last_error());
    for (int i = 0; i < M * M; i++) cr_assert_eq(mini[i], 1, "a full box gives a full mini mask");
    cr_assert_eq(mr_expand_mask(back, H, W, mini, M, M, box), MR_OK);
    cr_assert_eq(memcmp(back, mask, sizeof mask), 0);

    /* An ellipse survives the trip up to its rim. */
    memset(mask, 0, sizeof mask);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double dy = (y - 19.5) / 15.0, dx = (x - 24.5) / 20.0;
            mask[y * W + x] = dy * dy + dx * dx <= 1.0;
        }
    const int64_t ebox[4] = {5, 5, 35, 45};
    cr_assert_eq(mr_minimize_mask(mini, M, M, mask, H, W, ebox), MR_OK);
    cr_assert_eq(mr_expand_mask(back, H, W, mini, M, M, ebox), MR_OK);
    int diff = 0, on = 0;
    for (int i = 0; i < H * W; i++) diff += back[i] != mask[i], on += mask[i];
    cr_assert_lt(diff, on / 20, "%d of %d pixels differ", diff, on);

    const int64_t empty[4] = {5, 10, 5, 40}, outside[4] = {5, 10, 25, 60};
    cr_assert_eq(mr_minimize_mask(mini, M, M, mask, H, W, empty), MR_ERR_ARG);
    cr_assert_eq(mr_minimize_mask(mini, M, M, mask, H, W, outside), MR_ERR_ARG);
}

/* ---- RPN targets ---- */

static float *small_anchors(int64_t *n) {
    static const int strides[4] = {4, 8, 16, 32};
    static const float scales[4] = {8, 16, 32, 64};
    static const float ratios[3] = {0.5f, 1, 2};
    mr_anchor_config cfg = {4, strides, 4, scales, true, 3, ratios, 1};
    float *a;
    cr_assert_eq(mr_generate_anchors(&cfg, 128, 128, &a, n), MR_OK);
    cr_assert_eq(*n, 3 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4));
    return a;
}

/* Checks every labelling rule of build_rpn_targets on the result. */
static void check_rpn(const int8_t *match, const float *bbox, const float *anchors, int64_t na,
                      const float *gt, int64_t ng, const mr_rpn_target_config *cfg, bool capped) {
    float *best = malloc((size_t)na * sizeof *best);
    int64_t *arg = malloc((size_t)na * sizeof *arg);
    float *gbest = calloc((size_t)(ng > 0 ? ng : 1), sizeof *gbest);
    for (int64_t i = 0; i < na; i++) {
        best[i] = ng ? -1.0f : 0.0f;
        arg[i] = 0;
        for (int64_t j = 0; j < ng; j++) {
            float iou = mr_box_iou(anchors + 4 * i, gt + 4 * j);
            if (iou > best[i]) best[i] = iou, arg[i] = j;
            if (iou > gbest[j]) gbest[j] = iou;
        }
    }
    int64_t pos = 0, neg = 0, neg_candidates = 0;
    for (int64_t i = 0; i < na; i++) {
        bool is_best = false;
        for (int64_t j = 0; j < ng; j++)
            is_best |= gbest[j] > 0 && mr_box_iou(anchors + 4 * i, gt + 4 * j) == gbest[j];
        bool want_pos = is_best || best[i] >= 0.7f;
        if (match[i] == 1) {
            cr_assert(want_pos, "anchor %lld positive with IoU %g", (long long)i, (double)best[i]);
            pos++;
        } else if (!capped) {
            cr_assert(!want_pos, "anchor %lld (IoU %g) should be positive", (long long)i,
                      (double)best[i]);
        }
        if (match[i] == -1) {
            cr_assert_lt(best[i], 0.3f, "negative anchor %lld has IoU %g", (long long)i,
                         (double)best[i]);
            cr_assert(!want_pos);
            neg++;
        }
        neg_candidates += !want_pos && best[i] < 0.3f;
    }
    cr_assert_leq(pos, cfg->anchors_per_image / 2);
    int64_t want_neg = cfg->anchors_per_image - pos;
    cr_assert_eq(neg, neg_candidates < want_neg ? neg_candidates : want_neg);
    /* Deltas of the positives in anchor order, to their best GT, over the std. */
    int64_t row = 0;
    for (int64_t i = 0; i < na; i++) {
        if (match[i] != 1) continue;
        float d[4];
        mr_box_encode(d, anchors + 4 * i, gt + 4 * arg[i], 1, NULL);
        for (int k = 0; k < 4; k++)
            cr_assert_float_eq(bbox[4 * row + k], d[k] / cfg->bbox_std[k], 1e-5f,
                               "bbox row %lld coord %d", (long long)row, k);
        row++;
    }
    for (int64_t r = row * 4; r < cfg->anchors_per_image * 4; r++)
        cr_assert_eq(bbox[r], 0.0f, "padding row");
    free(best);
    free(arg);
    free(gbest);
}

/* The ground truth as mr_instances carries it (layers/boxes.h): doubles. */
static double *gt_f64(const float *gt, int n) {
    static double out[4 * 1024];
    cr_assert_leq(n, 1024);
    for (int i = 0; i < 4 * n; i++) out[i] = gt[i];
    return out;
}

Test(targets, rpn_labels_follow_matterport) {
    int64_t na;
    float *anchors = small_anchors(&na);
    mr_rpn_target_config cfg = mr_rpn_target_config_matterport();
    /* GT 0 equals anchor 1000 exactly; the others are off-grid. */
    float gt[12] = {0, 0, 0, 0, 30, 40, 70, 75, 100, 2, 126, 20};
    memcpy(gt, anchors + 4 * 1000, 4 * sizeof(float));
    int8_t *match = malloc((size_t)na);
    float bbox[256 * 4];
    mr_rng rng;
    mr_rng_seed(&rng, 1);
    cr_assert_eq(mr_build_rpn_targets(match, bbox, anchors, na, gt_f64(gt, 3), 3, &cfg, &rng),
                 MR_OK);
    cr_assert_eq(match[1000], 1, "an anchor equal to a GT is positive");
    check_rpn(match, bbox, anchors, na, gt, 3, &cfg, false);
    /* Anchor 1000 is the first positive only if nothing before it matched; find its row. */
    int64_t row = 0;
    for (int64_t i = 0; i < 1000; i++) row += match[i] == 1;
    for (int k = 0; k < 4; k++) cr_assert_float_eq(bbox[4 * row + k], 0.0f, 1e-6f);
    free(match);
    free(anchors);
}

Test(targets, rpn_caps_positives_at_half_and_total_at_256) {
    int64_t na;
    float *anchors = small_anchors(&na);
    mr_rpn_target_config cfg = mr_rpn_target_config_matterport();
    /* 150 GT boxes equal to level-0 anchors (8 px, ratio 1) on a grid: 150 positives before
     * the cap of 128. */
    enum { NG = 150 };
    float gt[NG * 4];
    for (int k = 0; k < NG; k++) {
        int64_t y = 2 * (k / 12) + 1, x = 2 * (k % 12) + 1;
        memcpy(gt + 4 * k, anchors + 4 * ((y * 32 + x) * 3 + 1), 4 * sizeof(float));
    }
    int8_t *match = malloc((size_t)na);
    float bbox[256 * 4];
    mr_rng rng;
    mr_rng_seed(&rng, 2);
    cr_assert_eq(mr_build_rpn_targets(match, bbox, anchors, na, gt_f64(gt, NG), NG, &cfg, &rng),
                 MR_OK);
    int64_t pos = 0, neg = 0;
    for (int64_t i = 0; i < na; i++) pos += match[i] == 1, neg += match[i] == -1;
    cr_assert_eq(pos, 128);
    cr_assert_eq(neg, 128);
    check_rpn(match, bbox, anchors, na, gt, NG, &cfg, true);

    /* A smaller budget caps the same way: 8 positives, 8 negatives. */
    cfg.anchors_per_image = 16;
    cr_assert_eq(mr_build_rpn_targets(match, bbox, anchors, na, gt_f64(gt, NG), NG, &cfg, &rng),
                 MR_OK);
    pos = neg = 0;
    for (int64_t i = 0; i < na; i++) pos += match[i] == 1, neg += match[i] == -1;
    cr_assert_eq(pos, 8);
    cr_assert_eq(neg, 8);
    free(match);
    free(anchors);
}

Test(targets, rpn_every_gt_gets_its_best_anchor) {
    int64_t na;
    float *anchors = small_anchors(&na);
    mr_rpn_target_config cfg = mr_rpn_target_config_matterport();
    /* Thin and odd-shaped boxes: no anchor reaches 0.7, yet each GT gets a positive. */
    const float gt[8] = {10, 10, 13, 60, 50, 100, 120, 104};
    int8_t *match = malloc((size_t)na);
    float bbox[256 * 4];
    mr_rng rng;
    mr_rng_seed(&rng, 3);
    cr_assert_eq(mr_build_rpn_targets(match, bbox, anchors, na, gt_f64(gt, 2), 2, &cfg, &rng),
                 MR_OK);
    check_rpn(match, bbox, anchors, na, gt, 2, &cfg, false);
    for (int j = 0; j < 2; j++) {
        float b = 0;
        int64_t arg = -1;
        for (int64_t i = 0; i < na; i++) {
            float iou = mr_box_iou(anchors + 4 * i, gt + 4 * j);
            if (iou > b) b = iou, arg = i;
        }
        cr_assert_lt(b, 0.7f);
        cr_assert_eq(match[arg], 1, "GT %d's best anchor %lld (IoU %g)", j, (long long)arg,
                     (double)b);
    }
    free(match);
    free(anchors);
}

Test(targets, rpn_without_gt_samples_only_negatives) {
    int64_t na;
    float *anchors = small_anchors(&na);
    mr_rpn_target_config cfg = mr_rpn_target_config_matterport();
    int8_t *match = malloc((size_t)na);
    float bbox[256 * 4];
    mr_rng rng;
    mr_rng_seed(&rng, 4);
    cr_assert_eq(mr_build_rpn_targets(match, bbox, anchors, na, NULL, 0, &cfg, &rng), MR_OK);
    int64_t neg = 0;
    for (int64_t i = 0; i < na; i++) {
        cr_assert_neq(match[i], 1);
        neg += match[i] == -1;
    }
    cr_assert_eq(neg, 256);
    for (int i = 0; i < 256 * 4; i++) cr_assert_eq(bbox[i], 0.0f);
    free(match);
    free(anchors);
}

/* ---- detection targets ---- */

enum { IMG = 128, MINI = 56 };

typedef struct {
    double boxes[8];
    int64_t class_ids[2];
    uint8_t mini[2 * MINI * MINI];
    uint8_t full[2 * IMG * IMG];
} two_gts;

/* GT 0: rows 10..49, cols 10..59, class 1, mask fills its box. GT 1: rows 70..119, cols
 * 60..109, class 2, mask = top half of its box. */
static mr_instances make_gts(two_gts *g, bool mini) {
    const double boxes[8] = {10, 10, 50, 60, 70, 60, 120, 110};
    memcpy(g->boxes, boxes, sizeof boxes);
    g->class_ids[0] = 1, g->class_ids[1] = 2;
    memset(g->full, 0, sizeof g->full);
    for (int y = 10; y < 50; y++)
        for (int x = 10; x < 60; x++) g->full[y * IMG + x] = 1;
    for (int y = 70; y < 95; y++)
        for (int x = 60; x < 110; x++) g->full[IMG * IMG + y * IMG + x] = 1;
    for (int k = 0; k < 2; k++) {
        const int64_t box[4] = {(int64_t)boxes[4 * k], (int64_t)boxes[4 * k + 1],
                                (int64_t)boxes[4 * k + 2], (int64_t)boxes[4 * k + 3]};
        cr_assert_eq(mr_minimize_mask(g->mini + k * MINI * MINI, MINI, MINI,
                                      g->full + k * IMG * IMG, IMG, IMG, box),
                     MR_OK);
    }
    return (mr_instances){.n = 2,
                          .boxes = g->boxes,
                          .class_ids = g->class_ids,
                          .masks = mini ? g->mini : g->full,
                          .mask_h = mini ? MINI : IMG,
                          .mask_w = mini ? MINI : IMG,
                          .image_h = IMG,
                          .image_w = IMG};
}

static float urand(mr_rng *rng, float lo, float hi) {
    return lo + (hi - lo) * mr_rng_uniform(rng);
}

/* n_pos proposals jittered around the GTs, n_neg in the empty corner region, and zero rows
 * (padding) sprinkled in between. */
static int64_t make_proposals(float *p, const mr_instances *gt, int n_pos, int n_neg, mr_rng *rng) {
    float gn[8];
    mr_boxes_to_f32(gn, gt->boxes, 2);
    mr_norm_boxes(gn, gn, 2, IMG, IMG);
    int64_t n = 0;
    for (int k = 0; k < n_pos + n_neg; k++) {
        float *b = p + 4 * n++;
        if (k < n_pos) {
            const float *g = gn + 4 * (k % 2);
            for (int c = 0; c < 4; c++) b[c] = g[c] + urand(rng, -0.02f, 0.02f);
        } else {
            b[0] = urand(rng, 0.0f, 0.3f), b[1] = urand(rng, 0.55f, 0.8f);
            b[2] = b[0] + urand(rng, 0.05f, 0.2f), b[3] = b[1] + urand(rng, 0.05f, 0.2f);
        }
        if (k % 7 == 3) memset(p + 4 * n++, 0, 4 * sizeof(float));
    }
    return n;
}

Test(targets, detection_targets_counts_ratio_classes_and_deltas) {
    two_gts g;
    mr_instances gt = make_gts(&g, true);
    mr_roi_target_config cfg = mr_roi_target_config_matterport();
    mr_rng rng;
    mr_rng_seed(&rng, 5);
    float props[600 * 4];
    int64_t np = make_proposals(props, &gt, 100, 300, &rng);
    mr_roi_targets t;
    cr_assert_eq(mr_roi_targets_alloc(&t, &cfg), MR_OK);
    cr_assert_eq(mr_detection_targets(&t, props, np, &gt, &cfg, &rng), MR_OK, "%s",
                 mr_last_error());
    cr_assert_eq(t.n_positive, 66, "int(200 * 0.33)");
    cr_assert_eq(t.n_negative, 134, "int(66 / 0.33) - 66");
    float gn[8];
    mr_boxes_to_f32(gn, gt.boxes, 2);
    mr_norm_boxes(gn, gn, 2, IMG, IMG);
    for (int64_t r = 0; r < 200; r++) {
        const float *roi = t.rois + 4 * r;
        float iou0 = mr_box_iou(roi, gn), iou1 = mr_box_iou(roi, gn + 4);
        if (r < 66) {
            int64_t j = iou1 > iou0 ? 1 : 0;
            cr_assert_geq(j ? iou1 : iou0, 0.5f, "positive roi %lld", (long long)r);
            cr_assert_eq(t.class_ids[r], g.class_ids[j], "roi %lld class", (long long)r);
            float d[4];
            mr_box_encode(d, roi, gn + 4 * j, 1, cfg.bbox_std);
            for (int k = 0; k < 4; k++) cr_assert_float_eq(t.deltas[4 * r + k], d[k], 1e-5f);
            for (int64_t i = 0; i < 28 * 28; i++) {
                float m = t.masks[r * 28 * 28 + i];
                cr_assert(m == 0.0f || m == 1.0f, "mask targets are rounded to 0/1");
            }
        } else {
            cr_assert_lt(iou0 > iou1 ? iou0 : iou1, 0.5f, "negative roi %lld", (long long)r);
            cr_assert_eq(t.class_ids[r], 0);
            cr_assert(roi[0] != 0 || roi[1] != 0 || roi[2] != 0 || roi[3] != 0,
                      "padding proposals are never sampled");
            for (int k = 0; k < 4; k++) cr_assert_eq(t.deltas[4 * r + k], 0.0f);
            for (int64_t i = 0; i < 28 * 28; i++) cr_assert_eq(t.masks[r * 28 * 28 + i], 0.0f);
        }
    }
    mr_roi_targets_free(&t);
}

Test(targets, detection_targets_negative_count_matches_tf) {
    mr_h5 f = open_ref();
    int64_t *want, nw;
    cr_assert_eq(mr_h5_read_i64(&f, "negative_count", &want, &nw), MR_OK, "%s", mr_last_error());
    mr_h5_close(&f);
    two_gts g;
    mr_instances gt = make_gts(&g, true);
    mr_roi_target_config cfg = mr_roi_target_config_matterport();
    mr_roi_targets t;
    cr_assert_eq(mr_roi_targets_alloc(&t, &cfg), MR_OK);
    mr_rng rng;
    mr_rng_seed(&rng, 6);
    float props[600 * 4];
    for (int p = 0; p < nw; p++) {
        int64_t np = make_proposals(props, &gt, p, 300, &rng);
        cr_assert_eq(mr_detection_targets(&t, props, np, &gt, &cfg, &rng), MR_OK);
        cr_assert_eq(t.n_positive, p);
        cr_assert_eq(t.n_negative, want[p], "P = %d: %lld negatives, TF %lld", p,
                     (long long)t.n_negative, (long long)want[p]);
    }
    free(want);
    mr_roi_targets_free(&t);
}

static void check_mask_targets(bool mini) {
    two_gts g;
    mr_instances gt = make_gts(&g, mini);
    mr_roi_target_config cfg = mr_roi_target_config_matterport();
    cfg.use_mini_mask = mini;
    mr_roi_targets t;
    cr_assert_eq(mr_roi_targets_alloc(&t, &cfg), MR_OK);
    mr_rng rng;
    mr_rng_seed(&rng, 7);
    /* One proposal: GT 0 (a hair inside, see mr_crop_and_resize on TF's float32 edge),
     * whose mask fills its box -> all ones. */
    float props[8];
    mr_boxes_to_f32(props, gt.boxes, 1);
    mr_norm_boxes(props, props, 1, IMG, IMG);
    props[0] += 1e-5f, props[1] += 1e-5f, props[2] -= 1e-5f, props[3] -= 1e-5f;
    cr_assert_eq(mr_detection_targets(&t, props, 1, &gt, &cfg, &rng), MR_OK);
    cr_assert_eq(t.n_positive, 1);
    cr_assert_eq(t.n_negative, 0, "no negative candidates");
    cr_assert_eq(t.class_ids[0], 1);
    for (int i = 0; i < 28 * 28; i++) cr_assert_eq(t.masks[i], 1.0f, "mask pixel %d", i);
    for (int i = 4; i < 200 * 4; i++) cr_assert_eq(t.rois[i], 0.0f, "padding");

    /* 1.4 times GT 0's height, same top: rows sampled below the GT box are 0. In the mini
     * frame sample row i sits at i * 1.4 * 55 / 27, inside for i <= 19. */
    float gn[4];
    mr_boxes_to_f32(gn, gt.boxes, 1);
    mr_norm_boxes(gn, gn, 1, IMG, IMG);
    props[0] = gn[0], props[1] = gn[1] + 1e-5f, props[3] = gn[3] - 1e-5f;
    props[2] = gn[0] + 1.4f * (gn[2] - gn[0]);
    cr_assert_eq(mr_detection_targets(&t, props, 1, &gt, &cfg, &rng), MR_OK);
    cr_assert_eq(t.n_positive, 1);
    int ones_rows = 0;
    for (int y = 0; y < 28; y++) {
        float v = t.masks[y * 28];
        for (int x = 0; x < 28; x++) cr_assert_eq(t.masks[y * 28 + x], v, "row %d uniform", y);
        ones_rows += v == 1.0f;
        if (y > 0) cr_assert_leq(v, t.masks[(y - 1) * 28], "ones on top, zeros below");
    }
    cr_assert_eq(ones_rows, 20, "%d rows of ones", ones_rows);

    /* GT 1: top half of its box. */
    mr_boxes_to_f32(props, gt.boxes + 4, 1);
    mr_norm_boxes(props, props, 1, IMG, IMG);
    cr_assert_eq(mr_detection_targets(&t, props, 1, &gt, &cfg, &rng), MR_OK);
    cr_assert_eq(t.class_ids[0], 2);
    cr_assert_eq(t.masks[0], 1.0f);
    cr_assert_eq(t.masks[27 * 28 + 27], 0.0f);
    mr_roi_targets_free(&t);
}

Test(targets, detection_mask_targets_mini_masks) {
    check_mask_targets(true);
}

Test(targets, detection_mask_targets_full_masks) {
    check_mask_targets(false);
}

Test(targets, detection_targets_without_gt_are_all_padding) {
    mr_instances gt = {.n = 0, .mask_h = MINI, .mask_w = MINI, .image_h = IMG, .image_w = IMG};
    mr_roi_target_config cfg = mr_roi_target_config_matterport();
    mr_roi_targets t;
    cr_assert_eq(mr_roi_targets_alloc(&t, &cfg), MR_OK);
    mr_rng rng;
    mr_rng_seed(&rng, 8);
    float props[40 * 4];
    for (int i = 0; i < 40 * 4; i += 4) {
        props[i] = urand(&rng, 0, 0.5f), props[i + 1] = urand(&rng, 0, 0.5f);
        props[i + 2] = props[i] + 0.3f, props[i + 3] = props[i + 1] + 0.3f;
    }
    t.rois[0] = 5; /* stale data must be cleared */
    cr_assert_eq(mr_detection_targets(&t, props, 40, &gt, &cfg, &rng), MR_OK);
    cr_assert_eq(t.n_positive, 0);
    cr_assert_eq(t.n_negative, 0, "Matterport: no positives means no negatives either");
    for (int i = 0; i < 200 * 4; i++) cr_assert_eq(t.rois[i], 0.0f);
    for (int i = 0; i < 200; i++) cr_assert_eq(t.class_ids[i], 0);
    mr_roi_targets_free(&t);
}

Test(targets, fill_sampling_tops_up_with_negatives) {
    two_gts g;
    mr_instances gt = make_gts(&g, true);
    mr_roi_target_config cfg = mr_roi_target_config_matterport();
    cfg.fill_negatives = true;
    mr_roi_targets t;
    cr_assert_eq(mr_roi_targets_alloc(&t, &cfg), MR_OK);
    mr_rng rng;
    mr_rng_seed(&rng, 9);
    float props[600 * 4];
    /* P positives, then TRAIN_ROIS_PER_IMAGE - P negatives while there are enough. */
    const int positives[4] = {0, 3, 40, 100};
    for (int k = 0; k < 4; k++) {
        int64_t np = make_proposals(props, &gt, positives[k], 300, &rng);
        cr_assert_eq(mr_detection_targets(&t, props, np, &gt, &cfg, &rng), MR_OK);
        int64_t p = positives[k] < 66 ? positives[k] : 66;
        cr_assert_eq(t.n_positive, p);
        cr_assert_eq(t.n_negative, 200 - p, "P = %lld: %lld negatives", (long long)p,
                     (long long)t.n_negative);
    }
    /* An image without lesions still trains the heads on background. */
    mr_instances none = {.n = 0, .mask_h = MINI, .mask_w = MINI, .image_h = IMG, .image_w = IMG};
    int64_t np = make_proposals(props, &gt, 0, 50, &rng);
    cr_assert_eq(mr_detection_targets(&t, props, np, &none, &cfg, &rng), MR_OK);
    cr_assert_eq(t.n_positive, 0);
    cr_assert_eq(t.n_negative, 50, "every real proposal, fewer than 200");
    mr_roi_targets_free(&t);
}

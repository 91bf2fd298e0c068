/* Tests for layers/boxes.c, layers/proposals.c and layers/detect.c: IoU and NMS against
 * torchvision (tests/ref/boxes_ref.h5 from tests/ref/make_box_refs.py), delta coding, clipping,
 * Matterport's norm/denorm rounding, the proposal layer, refine_detections and unmolding. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/h5.h"
#include "../core/rng.h"
#include "../layers/boxes.h"
#include "../layers/detect.h"
#include "../layers/proposals.h"
#include "testutil.h"

#define REF_FILE "tests/ref/boxes_ref.h5" /* tests run from the repository root */

static mr_h5 open_ref(void) {
    mr_h5 f;
    cr_assert_eq(mr_h5_open(REF_FILE, false, &f), MR_OK,
                 "%s (regenerate with tests/ref/make_box_refs.py)", mr_last_error());
    return f;
}

static float *read_f(mr_h5 *f, const char *name, int64_t *count) {
    float *d;
    int nd;
    int64_t shape[MR_H5_MAX_DIMS];
    cr_assert_eq(mr_h5_read(f, name, &d, &nd, shape), MR_OK, "%s", mr_last_error());
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    if (count) *count = n;
    return d;
}

static int64_t *read_i(mr_h5 *f, const char *name, int64_t *count) {
    int64_t *d;
    cr_assert_eq(mr_h5_read_i64(f, name, &d, count), MR_OK, "%s", mr_last_error());
    return d;
}

/* ---- boxes ---- */

Test(boxes, iou_matrix_matches_torchvision) {
    mr_h5 f = open_ref();
    int64_t na, nb, ni;
    float *a = read_f(&f, "iou/a", &na), *b = read_f(&f, "iou/b", &nb);
    float *want = read_f(&f, "iou/iou", &ni);
    na /= 4, nb /= 4;
    cr_assert_eq(ni, na * nb);
    float *got = malloc((size_t)ni * sizeof *got);
    mr_box_iou_matrix(got, a, b, na, nb);
    for (int64_t i = 0; i < ni; i++)
        cr_assert_float_eq(got[i], want[i], 1e-6f, "iou[%lld]: %g vs torchvision %g", (long long)i,
                           (double)got[i], (double)want[i]);
    cr_assert_eq(got[0], 1.0f, "identical boxes give exactly 1");
    cr_assert_float_eq(got[5 * nb + 5], 0.04f, 1e-7f, "a 10x10 box inside a 50x50 one");
    free(a), free(b), free(want), free(got);
    mr_h5_close(&f);
}

Test(boxes, iou_of_empty_boxes_is_zero) {
    const float z[4] = {3, 3, 3, 3}, a[4] = {0, 0, 10, 10}, b[4] = {20, 20, 30, 30};
    cr_assert_eq(mr_box_iou(z, z), 0.0f);
    cr_assert_eq(mr_box_iou(a, z), 0.0f);
    cr_assert_eq(mr_box_iou(a, b), 0.0f);
}

static void check_nms_case(const char *group) {
    mr_h5 f = open_ref();
    char name[64];
    int64_t nb, ns, nk, nt;
    snprintf(name, sizeof name, "%s/boxes", group);
    float *boxes = read_f(&f, name, &nb);
    snprintf(name, sizeof name, "%s/scores", group);
    float *scores = read_f(&f, name, &ns);
    snprintf(name, sizeof name, "%s/threshold", group);
    float *thr = read_f(&f, name, &nt);
    snprintf(name, sizeof name, "%s/keep", group);
    int64_t *want = read_i(&f, name, &nk);
    cr_assert_eq(nb, 4 * ns);
    int64_t *keep = malloc((size_t)ns * sizeof *keep), n_keep;
    cr_assert_eq(mr_nms(keep, &n_keep, boxes, scores, ns, thr[0], ns), MR_OK);
    cr_assert_eq(n_keep, nk, "%s: kept %lld, torchvision %lld", group, (long long)n_keep,
                 (long long)nk);
    for (int64_t i = 0; i < nk; i++)
        cr_assert_eq(keep[i], want[i], "%s: keep[%lld] = %lld, torchvision %lld", group,
                     (long long)i, (long long)keep[i], (long long)want[i]);
    /* max_out stops the greedy pass early: the result is a prefix. */
    int64_t cap = nk / 2;
    cr_assert_eq(mr_nms(keep, &n_keep, boxes, scores, ns, thr[0], cap), MR_OK);
    cr_assert_eq(n_keep, cap);
    for (int64_t i = 0; i < cap; i++) cr_assert_eq(keep[i], want[i]);
    free(boxes), free(scores), free(thr), free(want), free(keep);
    mr_h5_close(&f);
}

Test(boxes, nms_matches_torchvision_at_0_7) {
    check_nms_case("nms");
}

Test(boxes, nms_matches_torchvision_at_0_5) {
    check_nms_case("nms05");
}

Test(boxes, nms_ties_go_to_the_lower_index) {
    const float boxes[12] = {0, 0, 10, 10, 0, 0, 10, 10, 0, 0, 10, 10};
    const float scores[3] = {0.5f, 0.9f, 0.9f};
    int64_t keep[3], n;
    cr_assert_eq(mr_nms(keep, &n, boxes, scores, 3, 0.7f, 3), MR_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(keep[0], 1);
}

Test(boxes, nms_suppresses_only_above_the_threshold) {
    /* IoU exactly 0.5: inter 50, union 100. */
    const float boxes[8] = {0, 0, 10, 10, 0, 0, 10, 5};
    const float scores[2] = {0.9f, 0.8f};
    int64_t keep[2], n;
    cr_assert_eq(mr_nms(keep, &n, boxes, scores, 2, 0.5f, 2), MR_OK);
    cr_assert_eq(n, 2, "IoU == threshold is not suppressed");
    cr_assert_eq(mr_nms(keep, &n, boxes, scores, 2, 0.49f, 2), MR_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(mr_nms(keep, &n, boxes, scores, 0, 0.5f, 2), MR_OK);
    cr_assert_eq(n, 0, "no boxes, no output");
}

/* TF's greedy NMS, one pair at a time, with its IoU in float (corners in either order, an empty
 * box overlapping nothing): the decisions mr_nms must reproduce exactly. */
static float tf_iou(const float *a, const float *b) {
    float ay1 = fminf(a[0], a[2]), ax1 = fminf(a[1], a[3]), ay2 = fmaxf(a[0], a[2]),
          ax2 = fmaxf(a[1], a[3]);
    float by1 = fminf(b[0], b[2]), bx1 = fminf(b[1], b[3]), by2 = fmaxf(b[0], b[2]),
          bx2 = fmaxf(b[1], b[3]);
    float area_a = (ay2 - ay1) * (ax2 - ax1), area_b = (by2 - by1) * (bx2 - bx1);
    if (area_a <= 0 || area_b <= 0) return 0.0f;
    float ih = fminf(ay2, by2) - fmaxf(ay1, by1), iw = fminf(ax2, bx2) - fmaxf(ax1, bx1);
    float inter = (ih > 0 ? ih : 0.0f) * (iw > 0 ? iw : 0.0f);
    return inter / (area_a + area_b - inter);
}

static int64_t tf_nms(int64_t *keep, const float *boxes, const float *scores, int64_t n, float thr,
                      int64_t max_out) {
    int64_t *order = malloc(sizeof(int64_t) * (size_t)n), kept = 0;
    cr_assert(order);
    for (int64_t i = 0; i < n; i++) order[i] = i;
    for (int64_t i = 1; i < n; i++) /* by score, down; ties by index, up; NaN last */
        for (int64_t j = i; j > 0; j--) {
            float a = scores[order[j - 1]], b = scores[order[j]];
            bool swap = (isnan(a) && !isnan(b)) || (!isnan(a) && !isnan(b) && b > a);
            if (!swap) break;
            int64_t t = order[j - 1];
            order[j - 1] = order[j], order[j] = t;
        }
    for (int64_t o = 0; o < n && kept < max_out; o++) {
        int64_t i = order[o];
        if (isnan(scores[i])) continue;
        bool suppressed = false;
        for (int64_t k = 0; k < kept && !suppressed; k++)
            suppressed = tf_iou(boxes + 4 * i, boxes + 4 * keep[k]) > thr;
        if (!suppressed) keep[kept++] = i;
    }
    free(order);
    return kept;
}

/* layers/boxes.c compares each candidate with the kept boxes in vectorised blocks: over 3000
 * boxes, crowded enough that hundreds are kept (many blocks, partial ones) and many suppressed,
 * with corners given in reverse, empty boxes, tied and NaN scores, at thresholds from below 0 to
 * 1 and an output limit that stops it early, it must keep exactly the boxes TF's pass keeps. */
Test(boxes, nms_keeps_what_tf_keeps_over_crowded_and_odd_boxes) {
    const int64_t n = 3000;
    float *boxes = malloc(sizeof(float) * 4 * n), *scores = malloc(sizeof(float) * n);
    int64_t *got = malloc(sizeof(int64_t) * n), *want = malloc(sizeof(int64_t) * n);
    cr_assert(boxes && scores && got && want);
    mr_rng rng;
    mr_rng_seed(&rng, 17);
    for (int64_t i = 0; i < n; i++) {
        float cy = 100 * mr_rng_uniform(&rng), cx = 100 * mr_rng_uniform(&rng);
        float h = 1 + 20 * mr_rng_uniform(&rng), w = 1 + 20 * mr_rng_uniform(&rng);
        float *b = boxes + 4 * i;
        b[0] = cy - h / 2, b[1] = cx - w / 2, b[2] = cy + h / 2, b[3] = cx + w / 2;
        if (i % 7 == 0) b[0] = cy + h / 2, b[2] = cy - h / 2;  /* corners reversed */
        if (i % 31 == 0) b[3] = b[1];                          /* empty */
        scores[i] = i % 13 == 0 ? 0.5f : mr_rng_uniform(&rng); /* ties */
        if (i % 97 == 0) scores[i] = NAN;
    }
    const float thresholds[] = {-0.1f, 0.0f, 0.3f, 0.5f, 0.7f, 1.0f};
    const int64_t limits[] = {n, 150};
    int64_t most = 0;
    for (size_t t = 0; t < sizeof thresholds / sizeof thresholds[0]; t++)
        for (size_t l = 0; l < 2; l++) {
            int64_t n_got = -1, n_want = tf_nms(want, boxes, scores, n, thresholds[t], limits[l]);
            cr_assert_eq(mr_nms(got, &n_got, boxes, scores, n, thresholds[t], limits[l]), MR_OK);
            cr_assert_eq(n_got, n_want, "threshold %g, limit %lld: %lld kept, TF keeps %lld",
                         (double)thresholds[t], (long long)limits[l], (long long)n_got,
                         (long long)n_want);
            for (int64_t k = 0; k < n_got; k++)
                cr_assert_eq(got[k], want[k], "threshold %g: kept box %lld is %lld, TF's %lld",
                             (double)thresholds[t], (long long)k, (long long)got[k],
                             (long long)want[k]);
            if (limits[l] == n && thresholds[t] < 1.0f && n_got > most) most = n_got;
        }
    cr_assert_gt(most, 200, "too few kept to cross many blocks");
    free(boxes), free(scores), free(got), free(want);
}

Test(boxes, nms_per_class_keeps_overlaps_of_other_classes) {
    const float boxes[16] = {0, 0, 10, 10, 0, 0, 10, 10, 1, 1, 10, 10, 50, 50, 60, 60};
    const float scores[4] = {0.9f, 0.8f, 0.95f, 0.7f};
    const int64_t cls[4] = {1, 2, 1, 1};
    int64_t keep[4], n;
    cr_assert_eq(mr_nms_per_class(keep, &n, boxes, scores, cls, 4, 0.3f, 10), MR_OK);
    /* class 1: box 2 (0.95) suppresses box 0; box 3 is apart. class 2: box 1 alone. */
    cr_assert_eq(n, 3);
    cr_assert_eq(keep[0], 1);
    cr_assert_eq(keep[1], 2);
    cr_assert_eq(keep[2], 3);
    cr_assert_eq(mr_nms_per_class(keep, &n, boxes, scores, cls, 4, 0.3f, 1), MR_OK);
    cr_assert_eq(n, 2, "max per class applies to each class separately");
    cr_assert_eq(keep[0], 1);
    cr_assert_eq(keep[1], 2);
}

Test(boxes, argsort_is_stable_and_puts_nan_last) {
    const float s[6] = {0.5f, NAN, 0.9f, 0.5f, 0.9f, -1.0f};
    int64_t order[6];
    cr_assert_eq(mr_argsort_desc(order, s, 6), MR_OK);
    const int64_t want[6] = {2, 4, 0, 3, 5, 1};
    for (int i = 0; i < 6; i++) cr_assert_eq(order[i], want[i], "order[%d]", i);
}

Test(boxes, encode_by_hand) {
    const float box[4] = {0, 0, 10, 10}, gt[4] = {5, 5, 25, 15};
    const float std[4] = {0.1f, 0.1f, 0.2f, 0.2f};
    float d[4];
    mr_box_encode(d, box, gt, 1, NULL);
    cr_assert_float_eq(d[0], 1.0f, 1e-6f);
    cr_assert_float_eq(d[1], 0.5f, 1e-6f);
    cr_assert_float_eq(d[2], logf(2.0f), 1e-6f);
    cr_assert_float_eq(d[3], 0.0f, 1e-6f);
    mr_box_encode(d, box, gt, 1, std);
    cr_assert_float_eq(d[0], 10.0f, 1e-5f);
    cr_assert_float_eq(d[1], 5.0f, 1e-5f);
    cr_assert_float_eq(d[2], logf(2.0f) / 0.2f, 1e-5f);
}

Test(boxes, encode_decode_round_trip) {
    const float std[4] = {0.1f, 0.1f, 0.2f, 0.2f};
    srand(7);
    for (int i = 0; i < 200; i++) {
        float b[4], g[4], d[4], back[4];
        for (int k = 0; k < 2; k++) {
            b[k] = (float)(rand() % 1000) / 10.0f;
            g[k] = (float)(rand() % 1000) / 10.0f;
            b[k + 2] = b[k] + 1.0f + (float)(rand() % 500) / 10.0f;
            g[k + 2] = g[k] + 1.0f + (float)(rand() % 500) / 10.0f;
        }
        mr_box_encode(d, b, g, 1, std);
        mr_box_decode(back, b, d, 1, std);
        for (int k = 0; k < 4; k++)
            cr_assert_float_eq(back[k], g[k], 1e-3f, "case %d coord %d: %g vs %g", i, k,
                               (double)back[k], (double)g[k]);
    }
    /* Decoding in place is allowed. */
    float b[4] = {0, 0, 10, 10};
    const float d[4] = {0.1f, -0.2f, 0, logf(3.0f)};
    mr_box_decode(b, b, d, 1, NULL);
    cr_assert_float_eq(b[0], 1.0f, 1e-6f);
    cr_assert_float_eq(b[1], -12.0f, 1e-5f, "cx 5 - 0.2 * 10 = 3, w 30");
    cr_assert_float_eq(b[2], 11.0f, 1e-6f);
    cr_assert_float_eq(b[3], 18.0f, 1e-5f);
}

Test(boxes, clip_to_window) {
    float b[8] = {-0.2f, 0.5f, 1.3f, 0.7f, 0.3f, -1, 0.4f, 2};
    const float win[4] = {0.1f, 0.0f, 0.9f, 1.0f};
    mr_box_clip(b, 2, win);
    const float want[8] = {0.1f, 0.5f, 0.9f, 0.7f, 0.3f, 0.0f, 0.4f, 1.0f};
    for (int i = 0; i < 8; i++) cr_assert_eq(b[i], want[i], "coord %d", i);
}

Test(boxes, norm_and_denorm_conventions) {
    const float px[4] = {0, 0, 11, 11};
    float n[4];
    mr_norm_boxes(n, px, 1, 11, 11);
    cr_assert_eq(n[0], 0.0f);
    cr_assert_eq(n[2], 1.0f, "y2 is exclusive: (11 - 1) / 10");
    cr_assert_eq(n[3], 1.0f);
    int64_t back[4];
    mr_denorm_boxes(back, n, 1, 11, 11);
    for (int i = 0; i < 4; i++) cr_assert_eq(back[i], (int64_t)px[i]);
    const float px2[4] = {10, 20, 500, 700};
    mr_norm_boxes(n, px2, 1, 1024, 1024);
    cr_assert_float_eq(n[1], 20.0f / 1023.0f, 1e-7f);
    cr_assert_float_eq(n[2], 499.0f / 1023.0f, 1e-7f);
    mr_denorm_boxes(back, n, 1, 1024, 1024);
    for (int i = 0; i < 4; i++) cr_assert_eq(back[i], (int64_t)px2[i]);
}

Test(boxes, denorm_rounds_halves_to_even) {
    /* h = w = 2: scale 1, so the coordinates themselves are the values rounded. */
    const float b[8] = {0.5f, 1.5f, 0.5f, 1.5f, 2.5f, -0.5f, 2.5f, 3.5f};
    int64_t o[8];
    mr_denorm_boxes(o, b, 2, 2, 2);
    /* y1, x1: around(0.5) = 0, around(1.5) = 2; y2, x2 add 1 first: around(1.5) = 2,
     * around(2.5) = 2. */
    const int64_t want[8] = {0, 2, 2, 2, 2, 0, 4, 4};
    for (int i = 0; i < 8; i++) cr_assert_eq(o[i], want[i], "coord %d: %lld", i, (long long)o[i]);
}

/* ---- proposals ---- */

Test(proposals, top_scores_decode_clip_nms_and_pad) {
    /* 5 normalised anchors: 0 and 1 overlap heavily, 3 hangs over the edge, 4 scores lowest. */
    const float anchors[20] = {0.1f, 0.1f, 0.3f, 0.3f, 0.1f, 0.1f, 0.3f, 0.31f, 0.5f, 0.5f,
                               0.7f, 0.7f, 0.9f, 0.9f, 1.2f, 1.1f, 0.0f, 0.6f,  0.2f, 0.8f};
    const float probs[10] = {0.2f, 0.8f, 0.1f, 0.9f, 0.5f, 0.5f, 0.3f, 0.7f, 0.9f, 0.1f};
    float deltas[20] = {0};
    deltas[8] = 1.0f; /* anchor 2: dy = 1 * std 0.1 * h 0.2 = +0.02 */
    mr_proposal_config cfg = mr_proposal_config_matterport(true);
    cfg.proposal_count = 6;
    float out[24];
    int64_t n;
    cr_assert_eq(mr_proposals(out, &n, probs, deltas, anchors, 5, &cfg), MR_OK);
    /* Score order 1 (0.9), 0 (0.8), 3 (0.7), 2 (0.5), 4 (0.1); 0 is suppressed by 1. */
    cr_assert_eq(n, 4);
    cr_assert_float_eq(out[3], 0.31f, 1e-6f, "first row is anchor 1");
    cr_assert_float_eq(out[4], 0.9f, 1e-6f, "anchor 3 clipped");
    cr_assert_eq(out[6], 1.0f);
    cr_assert_eq(out[7], 1.0f);
    cr_assert_float_eq(out[8], 0.52f, 1e-6f, "anchor 2 moved by dy * std * h");
    cr_assert_float_eq(out[10], 0.72f, 1e-6f);
    cr_assert_float_eq(out[12], 0.0f, 1e-6f, "anchor 4");
    for (int i = 16; i < 24; i++) cr_assert_eq(out[i], 0.0f, "zero padding");

    cfg.pre_nms_limit = 2; /* only anchors 1 and 0 compete */
    cr_assert_eq(mr_proposals(out, &n, probs, deltas, anchors, 5, &cfg), MR_OK);
    cr_assert_eq(n, 1);
    cfg.pre_nms_limit = 6000;
    cfg.proposal_count = 2;
    cr_assert_eq(mr_proposals(out, &n, probs, deltas, anchors, 5, &cfg), MR_OK);
    cr_assert_eq(n, 2);
    cr_assert_float_eq(out[4], 0.9f, 1e-6f);
}

Test(proposals, per_level_top_k_and_nms) {
    /* Level 0: anchors 0-3, level 1: anchors 4-5. Anchor 4 repeats anchor 0's box on level 1. */
    const float anchors[24] = {0.1f, 0.1f, 0.3f, 0.3f, 0.5f, 0.5f, 0.7f, 0.7f,
                               0.0f, 0.6f, 0.2f, 0.8f, 0.6f, 0.0f, 0.8f, 0.2f,
                               0.1f, 0.1f, 0.3f, 0.3f, 0.4f, 0.1f, 0.6f, 0.3f};
    /* Foreground scores 0.9, 0.8, 0.7, 0.6 on level 0; 0.3, 0.2 on level 1. */
    const float probs[12] = {0.1f, 0.9f, 0.2f, 0.8f, 0.3f, 0.7f,
                             0.4f, 0.6f, 0.7f, 0.3f, 0.8f, 0.2f};
    const float deltas[24] = {0};
    const int64_t levels[2] = {4, 2};
    mr_proposal_config cfg = mr_proposal_config_matterport(true);
    cfg.proposal_count = 10;
    cfg.pre_nms_limit = 2;
    float out[40];
    int64_t n;
    /* Over all anchors: the two best, both of level 0. */
    cr_assert_eq(mr_proposals(out, &n, probs, deltas, anchors, 6, &cfg), MR_OK);
    cr_assert_eq(n, 2);
    cr_assert_float_eq(out[4], 0.5f, 1e-6f);
    /* Per level: two of each; anchor 4 survives beside anchor 0, its twin on the other level;
     * the survivors come by score. */
    cfg.n_levels = 2;
    cfg.level_counts = levels;
    cr_assert_eq(mr_proposals(out, &n, probs, deltas, anchors, 6, &cfg), MR_OK);
    cr_assert_eq(n, 4);
    const float first_y1[4] = {0.1f, 0.5f, 0.1f, 0.4f};
    for (int r = 0; r < 4; r++) cr_assert_float_eq(out[4 * r], first_y1[r], 1e-6f, "row %d", r);
    cfg.proposal_count = 3; /* the best three survivors */
    cr_assert_eq(mr_proposals(out, &n, probs, deltas, anchors, 6, &cfg), MR_OK);
    cr_assert_eq(n, 3);
    const int64_t wrong[2] = {4, 3};
    cfg.level_counts = wrong;
    cr_assert_eq(mr_proposals(out, &n, probs, deltas, anchors, 6, &cfg), MR_ERR_ARG);
}

/* ---- detect ---- */

Test(detect, refine_keeps_top_class_threshold_and_per_class_nms) {
    enum { N = 6, C = 3 };
    const float rois[N * 4] = {0.1f, 0.1f, 0.4f, 0.4f,  0.1f, 0.1f, 0.4f, 0.4f,
                               0.1f, 0.1f, 0.4f, 0.41f, 0.6f, 0.6f, 0.8f, 0.8f,
                               0.5f, 0.1f, 0.7f, 0.3f,  0.5f, 0.5f, 0.9f, 0.9f};
    const float probs[N * C] = {
        0.05f, 0.9f,  0.05f, /* 0: class 1 0.9 */
        0.1f,  0.1f,  0.8f,  /* 1: class 2 0.8, same box as 0 */
        0.05f, 0.75f, 0.2f,  /* 2: class 1 0.75, overlaps 0: suppressed */
        0.6f,  0.3f,  0.1f,  /* 3: background wins */
        0.2f,  0.6f,  0.2f,  /* 4: class 1 below 0.7 */
        0.1f,  0.1f,  0.8f,  /* 5: class 2 0.8, ties with 1: lower index first */
    };
    float deltas[N * C * 4] = {0};
    deltas[(0 * C + 1) * 4 + 0] = 1.0f;  /* roi 0 class 1: dy 1 * 0.1 * 0.3 = +0.03 */
    deltas[(0 * C + 2) * 4 + 0] = 50.0f; /* another class's delta: ignored */
    deltas[(5 * C + 2) * 4 + 3] = 5.0f;  /* roi 5 class 2: w *= e^(5 * 0.2): past the window */
    const float window[4] = {0.0f, 0.0f, 1.0f, 0.95f};
    mr_detection_config cfg = mr_detection_config_matterport(C);
    float out[100 * 6];
    int64_t n;
    cr_assert_eq(mr_refine_detections(out, NULL, &n, rois, probs, deltas, N, window, &cfg), MR_OK);
    cr_assert_eq(n, 3);
    /* row 0: roi 0, class 1, refined */
    cr_assert_float_eq(out[0], 0.13f, 1e-6f);
    cr_assert_float_eq(out[2], 0.43f, 1e-6f);
    cr_assert_eq(out[4], 1.0f);
    cr_assert_float_eq(out[5], 0.9f, 1e-7f);
    /* rows 1, 2: rois 1 and 5 of class 2, both 0.8, in ROI order; roi 5 clipped to 0.95 */
    cr_assert_float_eq(out[6 + 0], 0.1f, 1e-7f);
    cr_assert_eq(out[6 + 4], 2.0f);
    cr_assert_float_eq(out[12 + 0], 0.5f, 1e-7f);
    cr_assert_eq(out[12 + 3], 0.95f);
    cr_assert_eq(out[12 + 4], 2.0f);
    for (int i = 18; i < 600; i++) cr_assert_eq(out[i], 0.0f, "padding");

    cfg.min_confidence = 0.0f; /* disabled: roi 4 comes back; roi 2 stays suppressed */
    cr_assert_eq(mr_refine_detections(out, NULL, &n, rois, probs, deltas, N, window, &cfg), MR_OK);
    cr_assert_eq(n, 4);
    cr_assert_float_eq(out[3 * 6 + 5], 0.6f, 1e-7f);

    cfg.max_instances = 2; /* only the best two survive */
    cr_assert_eq(mr_refine_detections(out, NULL, &n, rois, probs, deltas, N, window, &cfg), MR_OK);
    cr_assert_eq(n, 2);
    cr_assert_float_eq(out[5], 0.9f, 1e-7f);
    cr_assert_float_eq(out[6 + 5], 0.8f, 1e-7f);
}

Test(detect, every_class_candidates_and_class_agnostic_nms) {
    enum { N = 3, C = 3 };
    const float rois[N * 4] = {0.1f, 0.1f,  0.4f, 0.4f, 0.11f, 0.1f,
                               0.4f, 0.41f, 0.6f, 0.6f, 0.9f,  0.9f};
    const float probs[N * C] = {
        0.1f, 0.6f, 0.3f, /* 0: benign 0.6, malignant 0.3 */
        0.1f, 0.2f, 0.7f, /* 1: the same lesion, malignant 0.7 */
        0.5f, 0.3f, 0.2f, /* 2: background wins */
    };
    float deltas[N * C * 4] = {0};
    deltas[(0 * C + 2) * 4 + 0] = 1.0f; /* roi 0 refined as malignant: dy 1 * 0.1 * 0.3 */
    const float window[4] = {0.0f, 0.0f, 1.0f, 1.0f};
    mr_detection_config cfg = mr_detection_config_matterport(C);
    cfg.min_confidence = 0.0f;
    float out[100 * 6];
    int64_t n;
    /* Matterport: each ROI's top class; roi 2's is background, so it gives nothing. */
    cr_assert_eq(mr_refine_detections(out, NULL, &n, rois, probs, deltas, N, window, &cfg), MR_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[4], 2.0f);
    cr_assert_eq(out[6 + 4], 1.0f);
    /* Every class: six candidates; per-class NMS at 0.3 merges rois 0 and 1 within each class. */
    cfg.every_class = true;
    cr_assert_eq(mr_refine_detections(out, NULL, &n, rois, probs, deltas, N, window, &cfg), MR_OK);
    cr_assert_eq(n, 4);
    const float want[4][2] = {{2, 0.7f}, {1, 0.6f}, {1, 0.3f}, {2, 0.2f}};
    for (int r = 0; r < 4; r++) {
        cr_assert_eq(out[6 * r + 4], want[r][0], "row %d class", r);
        cr_assert_float_eq(out[6 * r + 5], want[r][1], 1e-7f, "row %d score", r);
    }
    cr_assert_float_eq(out[6 * 2 + 0], 0.6f, 1e-7f, "roi 2 offers benign at 0.3");
    /* Class-agnostic: the lesion keeps its best class only; roi 2 stands apart. */
    cfg.class_agnostic = true;
    cr_assert_eq(mr_refine_detections(out, NULL, &n, rois, probs, deltas, N, window, &cfg), MR_OK);
    cr_assert_eq(n, 2);
    cr_assert_eq(out[4], 2.0f);
    cr_assert_float_eq(out[5], 0.7f, 1e-7f);
    cr_assert_float_eq(out[6 + 0], 0.6f, 1e-7f);
    /* Class-agnostic with top classes: rois 0 (benign) and 1 (malignant) overlap; one stays. */
    cfg.every_class = false;
    cr_assert_eq(mr_refine_detections(out, NULL, &n, rois, probs, deltas, N, window, &cfg), MR_OK);
    cr_assert_eq(n, 1);
    cr_assert_eq(out[4], 2.0f);
}

Test(detect, unmold_mask_by_hand) {
    /* 2x2 mask, left column on, resized to 5x6 by skimage's rule (source = (dst + 0.5) * in/out
     * - 0.5, zero outside): columns 2/3, 1, 2/3, 1/3, 0, 0 times rows 0.7, 1, 1, 1, 0.7;
     * 0.7 * 2/3 < 0.5 drops the corners. */
    const float m[4] = {1, 0, 1, 0};
    const int64_t box[4] = {2, 3, 7, 9};
    uint8_t full[10 * 12];
    cr_assert_eq(mr_unmold_mask(full, 10, 12, m, 2, 2, box), MR_OK);
    const char *pic[10] = {"............", "............", "....#.......", "...###......",
                           "...###......", "...###......", "....#.......", "............",
                           "............", "............"};
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 12; x++)
            cr_assert_eq(full[y * 12 + x], pic[y][x] == '#', "pixel (%d, %d)", y, x);
}

Test(detect, unmold_detections_maps_window_to_original) {
    /* Molded 20x20 with the 10x20 original pasted at rows 5..14 (scale 1). */
    mr_image_geometry geo = {.original_h = 10,
                             .original_w = 20,
                             .molded_h = 20,
                             .molded_w = 20,
                             .window = {5, 0, 15, 20}};
    enum { R = 4, MH = 2, MW = 2, C = 3 };
    float det[R * 6] = {0};
    const float px[4] = {7, 3, 12, 9}; /* molded pixels -> original (2, 3, 7, 9) */
    mr_norm_boxes(det, px, 1, 20, 20);
    det[4] = 2, det[5] = 0.95f;
    const float flat[4] = {9, 9, 9, 15}; /* zero height: dropped */
    mr_norm_boxes(det + 6, flat, 1, 20, 20);
    det[6 + 4] = 1, det[6 + 5] = 0.9f;
    /* row 2 has class 0: everything from there on is padding */
    det[3 * 6 + 0] = 0.5f, det[3 * 6 + 2] = 0.9f, det[3 * 6 + 3] = 0.9f, det[3 * 6 + 4] = 1;
    float masks[R * MH * MW * C];
    for (int i = 0; i < R * MH * MW * C; i++) masks[i] = 0.0f;
    for (int p = 0; p < MH * MW; p++) masks[(0 * MH * MW + p) * C + 2] = 0.9f; /* class 2 on */
    mr_instances d;
    cr_assert_eq(mr_unmold_detections(&d, det, NULL, R, masks, MH, MW, C, &geo), MR_OK);
    cr_assert_eq(d.n, 1);
    cr_assert_eq(d.image_h, 10);
    const int64_t want[4] = {2, 3, 7, 9};
    for (int k = 0; k < 4; k++) cr_assert_eq(d.boxes[k], want[k], "coord %d", k);
    cr_assert_eq(d.class_ids[0], 2);
    cr_assert_float_eq(d.scores[0], 0.95f, 1e-7f);
    int64_t on = 0;
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 20; x++) {
            bool inside = y >= 2 && y < 7 && x >= 3 && x < 9;
            cr_assert_eq(d.masks[y * 20 + x], inside, "pixel (%d, %d)", y, x);
            on += d.masks[y * 20 + x];
        }
    cr_assert_eq(on, 30);
    mr_instances_free(&d);

    /* All rows padding: an empty result, not an error. */
    float none[6] = {0};
    cr_assert_eq(mr_unmold_detections(&d, none, NULL, 1, masks, MH, MW, C, &geo), MR_OK);
    cr_assert_eq(d.n, 0);
    mr_instances_free(&d);
}

/* Boxes out of non-finite weights: denormalising NaN or huge values gives defined, bounded
 * integers (a cast of NaN to int64 is undefined behaviour, which the sanitizer build traps). */
Test(boxes, denorm_of_non_finite_boxes_is_defined) {
    const float boxes[8] = {NAN, INFINITY, -INFINITY, 1e30f, 0.25f, 0.5f, 0.75f, 1.0f};
    int64_t out[8];
    mr_denorm_boxes(out, boxes, 2, 101, 201);
    cr_assert_eq(out[0], 0);
    cr_assert(out[1] > 0 && out[1] <= (int64_t)1e15 && out[2] < 0 && out[3] <= (int64_t)1e15);
    cr_assert_eq(out[4], 25);
    cr_assert_eq(out[5], 100);
    cr_assert_eq(out[6], 76);
    cr_assert_eq(out[7], 201);
}

/* The selection behind the proposal layer's top-k gives exactly the first k of the full sort,
 * in its order, on scores with many ties (saturated foreground scores), NaNs, sorted and
 * reversed inputs, and every k from 0 to past n. */
Test(boxes, topk_is_the_head_of_the_full_sort) {
    mr_rng rng;
    mr_rng_seed(&rng, 17);
    const int64_t sizes[] = {1, 2, 17, 100, 1000, 20000};
    int64_t checked = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        int64_t n = sizes[si];
        float *s = malloc((size_t)n * sizeof *s);
        int64_t *full = malloc((size_t)n * sizeof *full), *top = malloc((size_t)n * sizeof *top);
        for (int kind = 0; kind < 5; kind++) {
            for (int64_t i = 0; i < n; i++) {
                float u = mr_rng_uniform(&rng);
                s[i] = kind == 0   ? u
                       : kind == 1 ? (float)(int)(u * 4) / 4.0f /* four values: ties */
                       : kind == 2 ? (u < 0.05f  ? NAN
                                      : u > 0.9f ? 1.0f
                                                 : u)
                       : kind == 3 ? (float)i /* ascending: the worst order for a naive pivot */
                                   : 1.0f;    /* all equal: ties decided by index alone */
            }
            cr_assert_eq(mr_argsort_desc(full, s, n), MR_OK);
            const int64_t ks[] = {0, 1, 2, n / 3, n / 2, n - 1, n, n + 5};
            for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
                int64_t k = ks[ki] < 0 ? 0 : ks[ki], kk = k < n ? k : n;
                cr_assert_eq(mr_topk_desc(top, s, n, k), MR_OK);
                for (int64_t j = 0; j < kk; j++)
                    cr_assert_eq(top[j], full[j], "n %lld kind %d k %lld: rank %lld", (long long)n,
                                 kind, (long long)k, (long long)j);
                checked += kk;
            }
        }
        free(s);
        free(full);
        free(top);
    }
    cr_assert_gt(checked, 100000);
}

/* Evaluation metrics on hand-made cases whose values are worked out in the comments: overlaps and
 * Dice, Matterport's per-image AP (perfect, empty, no GT, wrong class, duplicates, ties, the
 * re-match bug), COCO-style AP, the lesion-level confusion matrix, and `mrcnn evaluate` run end
 * to end on a tiny random-weight model over synthetic data. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/rng.h"
#include "../data/synth.h"
#include "../layers/model.h"
#include "../train/config.h"
#include "../train/kmeans.h"
#include "../train/metrics.h"
#include "../train/weights.h"
#include "testutil.h"

#define EPS 1e-9

/* ---- overlaps ------------------------------------------------------------------------------- */

Test(metrics, box_iou_by_hand) {
    /* (0,0,10,10) and (5,5,15,15): intersection 5x5 = 25, union 100 + 100 - 25 = 175. */
    const double a[4] = {0, 0, 10, 10}, b[8] = {5, 5, 15, 15, 20, 20, 30, 30};
    double iou[2];
    mr_box_iou_matrix_f64(iou, a, 1, b, 2);
    cr_assert_float_eq(iou[0], 25.0 / 175.0, EPS);
    cr_assert_float_eq(iou[1], 0.0, EPS); /* disjoint */
}

Test(metrics, dice_and_iou_of_masks_by_hand) {
    /* 4x4 masks. A: the top-left 2x2 (4 px). B: rows 0-1, columns 0-2 (6 px).
     * |A n B| = 4, |A u B| = 6: IoU 4/6 = 0.667, Dice 2*4/(4+6) = 0.8 = 2J/(1+J). */
    uint8_t a[16] = {1, 1, 0, 0, 1, 1, 0, 0}, b[16] = {1, 1, 1, 0, 1, 1, 1, 0};
    double dice, iou;
    mr_mask_dice_iou(a, b, 16, &dice, &iou);
    cr_assert_float_eq(dice, 0.8, EPS);
    cr_assert_float_eq(iou, 4.0 / 6.0, EPS);
    cr_assert_float_eq(mr_dice_from_iou(iou), 0.8, EPS);
    uint8_t both[32];
    memcpy(both, a, 16), memcpy(both + 16, b, 16);
    double m[4];
    cr_assert_eq(mr_mask_iou_matrix(m, both, 2, both, 2, 16), MR_OK);
    cr_assert_float_eq(m[0], 1.0, EPS);
    cr_assert_float_eq(m[1], 4.0 / 6.0, EPS);
    cr_assert_float_eq(m[2], 4.0 / 6.0, EPS);
    /* Two empty masks are identical; an empty one against a full one overlaps nothing. */
    uint8_t z[16] = {0};
    mr_mask_dice_iou(z, z, 16, &dice, &iou);
    cr_assert(dice == 1.0 && iou == 1.0);
    cr_assert_eq(mr_mask_iou_matrix(m, z, 1, a, 1, 16), MR_OK);
    cr_assert_float_eq(m[0], 0.0, EPS);
}

Test(metrics, boxes_of_masks_are_exclusive_extents) {
    /* Pixels in rows 1-2, columns 0-2 of a 4x4 mask: (y1, x1, y2, x2) = (1, 0, 3, 3). */
    uint8_t m[32] = {0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0};
    double b[8];
    mr_masks_to_boxes(b, m, 2, 4, 4);
    cr_assert(b[0] == 1 && b[1] == 0 && b[2] == 3 && b[3] == 3);
    cr_assert(b[4] == 0 && b[5] == 0 && b[6] == 0 && b[7] == 0, "empty mask: zero box");
}

/* ---- Matterport's per-image AP --------------------------------------------------------------- */

Test(metrics, perfect_prediction_has_ap_1) {
    /* Two GT masks on a 4x4 image (classes 1 and 2) predicted exactly with the right classes:
     * every prediction is a TP, precision 1 at recall 0.5 and 1 -> AP 1 at every threshold. */
    uint8_t masks[32] = {1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                         0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 1};
    int64_t cls[2] = {1, 2};
    float scores[2] = {0.9f, 0.8f};
    mr_instances gt = {.n = 2, .class_ids = cls, .masks = masks};
    mr_instances pred = {.n = 2, .class_ids = cls, .scores = scores, .masks = masks};
    double ap, ap_range;
    cr_assert_eq(mr_image_ap_masks(&ap, &ap_range, &gt, &pred, 16, 0.5), MR_OK);
    cr_assert_float_eq(ap, 1.0, EPS);
    cr_assert_float_eq(ap_range, 1.0, EPS);
}

Test(metrics, empty_predictions_have_ap_0) {
    /* No prediction: padded precision [0, 0], recall [0, 1] -> AP = (1 - 0) * 0 = 0. */
    const int64_t gt_cls[2] = {1, 1};
    double ap;
    cr_assert_eq(mr_compute_ap(&ap, NULL, gt_cls, 2, NULL, NULL, 0, 0.5, false), MR_OK);
    cr_assert_float_eq(ap, 0.0, EPS);
}

Test(metrics, no_gt_and_no_predictions_is_undefined) {
    /* Nothing to find and nothing found: AP is undefined (0/0 recall), reported as
     * MR_AP_UNDEFINED and left out of the mean rather than counted as 0 or 1. */
    double ap, ap_range;
    cr_assert_eq(mr_compute_ap(&ap, NULL, NULL, 0, NULL, NULL, 0, 0.5, false), MR_OK);
    cr_assert_eq(ap, MR_AP_UNDEFINED);
    cr_assert_eq(mr_compute_ap_range(&ap_range, NULL, NULL, 0, NULL, NULL, 0, false), MR_OK);
    cr_assert_eq(ap_range, MR_AP_UNDEFINED);
    /* The lesion counters stay finite too. */
    mr_lesion_stats s;
    cr_assert_eq(mr_lesion_stats_init(&s, 3), MR_OK);
    cr_assert_eq(mr_lesion_stats_add(&s, NULL, NULL, 0, NULL, NULL, 0, 0.5), MR_OK);
    cr_assert(s.n_images == 1 && s.n_images_without_gt == 1);
    cr_assert_float_eq(mr_lesion_sensitivity(&s), 0.0, EPS);
    cr_assert_float_eq(mr_lesion_fp_per_image(&s), 0.0, EPS);
    mr_lesion_stats_free(&s);
}

Test(metrics, all_wrong_class_has_ap_0) {
    /* A perfect mask (IoU 1) with the wrong class: the only candidate has another class, so no
     * match; precision [0], recall [0] -> AP 0. */
    const double iou[1] = {1.0};
    const int64_t gt_cls[1] = {1}, pred_cls[1] = {2};
    const float scores[1] = {0.99f};
    double ap;
    cr_assert_eq(mr_compute_ap(&ap, iou, gt_cls, 1, pred_cls, scores, 1, 0.5, false), MR_OK);
    cr_assert_float_eq(ap, 0.0, EPS);
}

Test(metrics, duplicate_is_a_false_positive) {
    /* 2 GT (class 1), 3 predictions by score: p0 (0.9) on GT0 (IoU 0.9), p1 (0.8) a duplicate of
     * GT0 (IoU 0.85, GT1 0), p2 (0.7) on GT1 (IoU 0.75). Matches: [GT0, -, GT1].
     * precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]; padded p [0, 1, .5, .667, 0],
     * r [0, .5, .5, 1, 1]; envelope p [1, 1, .667, .667, 0];
     * AP = (.5 - 0) * 1 + (1 - .5) * 2/3 = 5/6. */
    const double iou[6] = {0.9, 0.0, 0.85, 0.0, 0.0, 0.75}; /* (pred, gt) */
    const int64_t gt_cls[2] = {1, 1}, pred_cls[3] = {1, 1, 1};
    const float scores[3] = {0.9f, 0.8f, 0.7f};
    int64_t gt_match[2], pred_match[3], order[3];
    cr_assert_eq(mr_compute_matches(gt_match, pred_match, order, iou, gt_cls, 2, pred_cls, scores,
                                    3, 0.5, false),
                 MR_OK);
    cr_assert(pred_match[0] == 0 && pred_match[1] == -1 && pred_match[2] == 1);
    cr_assert(gt_match[0] == 0 && gt_match[1] == 2);
    double ap;
    cr_assert_eq(mr_compute_ap(&ap, iou, gt_cls, 2, pred_cls, scores, 3, 0.5, false), MR_OK);
    cr_assert_float_eq(ap, 5.0 / 6.0, EPS);
}

Test(metrics, ties_in_score_go_to_the_lower_index) {
    /* 2 GT, 2 predictions both scoring 0.5: p0 hits nothing, p1 is on GT0 (IoU 0.9). Ties are
     * visited lower index first (pycocotools' stable order), so [p0, p1]: matches [-, GT0],
     * precision [0, 1/2], recall [0, 1/2]; envelope [.5, .5, .5, 0]; AP = .5 * .5 = 0.25.
     * (Matterport's argsort()[::-1] visits p1 first and would give .5 * 1 = 0.5.) */
    const double iou[4] = {0.0, 0.0, 0.9, 0.0};
    const int64_t gt_cls[2] = {1, 1}, pred_cls[2] = {1, 1};
    const float scores[2] = {0.5f, 0.5f};
    int64_t gt_match[2], pred_match[2], order[2];
    cr_assert_eq(mr_compute_matches(gt_match, pred_match, order, iou, gt_cls, 2, pred_cls, scores,
                                    2, 0.5, false),
                 MR_OK);
    cr_assert(order[0] == 0 && order[1] == 1);
    double ap;
    cr_assert_eq(mr_compute_ap(&ap, iou, gt_cls, 2, pred_cls, scores, 2, 0.5, false), MR_OK);
    cr_assert_float_eq(ap, 0.25, EPS);
}

Test(metrics, iou_exactly_at_the_threshold_matches) {
    /* compute_matches stops only below the threshold: IoU 0.5 at threshold 0.5 is a TP. */
    const double iou[1] = {0.5};
    const int64_t cls[1] = {1};
    const float scores[1] = {0.9f};
    double ap;
    cr_assert_eq(mr_compute_ap(&ap, iou, cls, 1, cls, scores, 1, 0.5, false), MR_OK);
    cr_assert_float_eq(ap, 1.0, EPS);
}

Test(metrics, rematch_bug_is_fixed) {
    /* 1 GT, 2 predictions of its class on it (IoU 0.9, 0.8). p0 takes GT0 and gt_match[0] = 0.
     * Matterport master tests `gt_match[0] > 0`, which is false for position 0, so p1 takes GT0
     * a second time: pred_match [0, 0], recall [1, 2], precision [1, 1]; padded r [0, 1, 2, 1],
     * p [0, 1, 1, 0] -> AP = 1 * 1 + (2 - 1) * 1 + (1 - 2) * 0 = 2, an "AP" above 1.
     * With `> -1`: pred_match [0, -1], recall [1, 1], precision [1, .5] -> AP 1. */
    const double iou[2] = {0.9, 0.8};
    const int64_t gt_cls[1] = {1}, pred_cls[2] = {1, 1};
    const float scores[2] = {0.9f, 0.8f};
    int64_t gt_match[1], pred_match[2], order[2];
    cr_assert_eq(mr_compute_matches(gt_match, pred_match, order, iou, gt_cls, 1, pred_cls, scores,
                                    2, 0.5, true),
                 MR_OK);
    cr_assert(pred_match[0] == 0 && pred_match[1] == 0, "Matterport's bug matches GT0 twice");
    double buggy, fixed;
    cr_assert_eq(mr_compute_ap(&buggy, iou, gt_cls, 1, pred_cls, scores, 2, 0.5, true), MR_OK);
    cr_assert_float_eq(buggy, 2.0, EPS);
    cr_assert_eq(mr_compute_matches(gt_match, pred_match, order, iou, gt_cls, 1, pred_cls, scores,
                                    2, 0.5, false),
                 MR_OK);
    cr_assert(pred_match[0] == 0 && pred_match[1] == -1 && gt_match[0] == 0);
    cr_assert_eq(mr_compute_ap(&fixed, iou, gt_cls, 1, pred_cls, scores, 2, 0.5, false), MR_OK);
    cr_assert_float_eq(fixed, 1.0, EPS);
}

Test(metrics, wrong_class_candidate_is_passed_over) {
    /* The best-overlapping GT has another class; compute_matches tries the next candidate
     * (still above the threshold) and matches the GT of the prediction's class. */
    const double iou[2] = {0.9, 0.7};
    const int64_t gt_cls[2] = {2, 1}, pred_cls[1] = {1};
    const float scores[1] = {0.9f};
    int64_t gt_match[2], pred_match[1], order[1];
    cr_assert_eq(mr_compute_matches(gt_match, pred_match, order, iou, gt_cls, 2, pred_cls, scores,
                                    1, 0.5, false),
                 MR_OK);
    cr_assert(pred_match[0] == 1 && gt_match[1] == 0 && gt_match[0] == -1);
}

Test(metrics, ap_range_averages_ten_thresholds) {
    /* One GT, one prediction with IoU 0.72: a TP at 0.50 .. 0.70 (5 thresholds), not at 0.75 ..
     * 0.95 (5): AP range = 5/10 = 0.5. */
    const double iou[1] = {0.72};
    const int64_t cls[1] = {1};
    const float scores[1] = {0.9f};
    double ap;
    cr_assert_eq(mr_compute_ap_range(&ap, iou, cls, 1, cls, scores, 1, false), MR_OK);
    cr_assert_float_eq(ap, 0.5, EPS);
}

/* ---- COCO ------------------------------------------------------------------------------------ */

Test(metrics, coco_ap_by_hand) {
    /* One image, class 1: 2 GT, 3 predictions by score: p0 (0.9) IoU 0.82 with GT0, p1 (0.8)
     * IoU 0.62 with GT1, p2 (0.7) IoU 0.3 with GT1 (never a match).
     *  t = .50, .55, .60 (3 thresholds): TP TP FP -> recall [.5, 1, 1], precision [1, 1, .67];
     *     every recall point 0..1 reads precision 1 -> AP_t = 1.
     *  t = .65, .70, .75, .80 (4): TP FP FP -> recall [.5, .5, .5]; the 51 points 0..0.50 read
     *     1, the 50 points 0.51..1 are past the last recall -> 0: AP_t = 51/101.
     *  t = .85, .90, .95 (3): no TP -> AP_t = 0.
     * AP = (3 + 4 * 51/101) / 10 = 507/1010; AP50 = 1; AP75 = 51/101.
     * Class 2 has predictions but no GT: undefined, left out of the mean. */
    const double iou[8] = {0.82, 0.0, 0.0, 0.62, 0.0, 0.3, 0.9, 0.9}; /* (pred, gt) */
    const int64_t gt_cls[2] = {1, 1}, pred_cls[4] = {1, 1, 1, 2};
    const float scores[4] = {0.9f, 0.8f, 0.7f, 0.95f};
    mr_coco_eval e;
    cr_assert_eq(mr_coco_init(&e, 3), MR_OK);
    cr_assert_eq(mr_coco_add_image(&e, iou, gt_cls, 2, pred_cls, scores, 4), MR_OK);
    mr_coco_result r;
    cr_assert_eq(mr_coco_summarize(&e, &r), MR_OK);
    cr_assert_float_eq(r.ap[1], 507.0 / 1010.0, EPS);
    cr_assert_float_eq(r.ap50[1], 1.0, EPS);
    cr_assert_float_eq(r.ap75[1], 51.0 / 101.0, EPS);
    cr_assert_float_eq(r.recall[1 * MR_COCO_N_IOU + 0], 1.0, EPS);
    cr_assert_float_eq(r.recall[1 * MR_COCO_N_IOU + 9], 0.0, EPS);
    cr_assert_eq(r.ap[2], MR_AP_UNDEFINED);
    cr_assert_float_eq(r.mean_ap, 507.0 / 1010.0, EPS);
    cr_assert_eq(r.n_gt[1], 2);
    cr_assert_eq(r.n_dets[2], 1);
    mr_coco_result_free(&r);
    mr_coco_free(&e);
}

Test(metrics, coco_merges_images_by_score) {
    /* Two images of one class, 1 GT each. Image A: a FP scoring 0.9. Image B: a TP scoring 0.8
     * (IoU 0.92). Merged by score: FP, TP -> recall [0, .5], precision [0, .5]; envelope
     * [.5, .5]; points 0..0.50 (51) read .5, the rest 0 -> AP_t = 25.5/101 at every threshold
     * up to 0.90 (9 of them), 0 at 0.95: AP = 9 * 25.5 / 1010. */
    mr_coco_eval e;
    cr_assert_eq(mr_coco_init(&e, 2), MR_OK);
    const int64_t one[1] = {1};
    const double miss[1] = {0.1}, hit[1] = {0.92};
    const float s_a[1] = {0.9f}, s_b[1] = {0.8f};
    cr_assert_eq(mr_coco_add_image(&e, miss, one, 1, one, s_a, 1), MR_OK);
    cr_assert_eq(mr_coco_add_image(&e, hit, one, 1, one, s_b, 1), MR_OK);
    mr_coco_result r;
    cr_assert_eq(mr_coco_summarize(&e, &r), MR_OK);
    cr_assert_float_eq(r.ap50[1], 25.5 / 101.0, EPS);
    cr_assert_float_eq(r.ap[1], 9.0 * 25.5 / 1010.0, EPS);
    mr_coco_result_free(&r);
    mr_coco_free(&e);
}

Test(metrics, coco_perfect_and_empty) {
    /* Perfect: AP 1 at every threshold. No predictions at all: AP 0. No GT: undefined. */
    mr_coco_eval e;
    const int64_t one[1] = {1};
    const double full[1] = {1.0};
    const float s[1] = {0.5f};
    cr_assert_eq(mr_coco_init(&e, 2), MR_OK);
    cr_assert_eq(mr_coco_add_image(&e, full, one, 1, one, s, 1), MR_OK);
    mr_coco_result r;
    cr_assert_eq(mr_coco_summarize(&e, &r), MR_OK);
    cr_assert_float_eq(r.mean_ap, 1.0, EPS);
    mr_coco_result_free(&r);
    mr_coco_free(&e);

    cr_assert_eq(mr_coco_init(&e, 2), MR_OK);
    cr_assert_eq(mr_coco_add_image(&e, NULL, one, 1, NULL, NULL, 0), MR_OK);
    cr_assert_eq(mr_coco_summarize(&e, &r), MR_OK);
    cr_assert_float_eq(r.mean_ap, 0.0, EPS);
    mr_coco_result_free(&r);
    mr_coco_free(&e);

    cr_assert_eq(mr_coco_init(&e, 2), MR_OK);
    cr_assert_eq(mr_coco_add_image(&e, NULL, NULL, 0, one, s, 1), MR_OK);
    cr_assert_eq(mr_coco_summarize(&e, &r), MR_OK);
    cr_assert_eq(r.mean_ap, MR_AP_UNDEFINED);
    mr_coco_result_free(&r);
    mr_coco_free(&e);
}

/* ---- lesion level ---------------------------------------------------------------------------- */

Test(metrics, confusion_matrix_and_accuracy) {
    /* Image 1: GT [benign(1), malignant(2), benign(1)]; predictions
     *   p0 benign    0.9  IoU 0.9 with GT0          -> matched, benign as benign
     *   p1 benign    0.8  IoU 0.7 with GT1          -> matched, malignant called benign
     *   p2 malignant 0.7  IoU 0.3 with GT2          -> below 0.5: a false positive; GT2 missed
     * Image 2: no GT, one malignant prediction      -> a false positive.
     * Matched 2 of 3 GT (sensitivity 2/3); accuracy 1/2; FP per image (4 - 2) / 2 = 1;
     * Dice of the pairs 2*.9/1.9 and 2*.7/1.7, mean (0.947368 + 0.823529) / 2; IoU mean 0.8.
     * Confusion [gt][pred]: [1][1] = 1, [2][1] = 1, missed [1][0] = 1, FP [0][2] = 2. */
    const double iou[9] = {0.9, 0.0, 0.0, 0.0, 0.7, 0.0, 0.0, 0.0, 0.3};
    const int64_t gt_cls[3] = {1, 2, 1}, pred_cls[3] = {1, 1, 2}, mal[1] = {2};
    const float scores[3] = {0.9f, 0.8f, 0.7f}, s1[1] = {0.6f};
    mr_lesion_stats s;
    cr_assert_eq(mr_lesion_stats_init(&s, 3), MR_OK);
    cr_assert_eq(mr_lesion_stats_add(&s, iou, gt_cls, 3, pred_cls, scores, 3, 0.5), MR_OK);
    cr_assert_eq(mr_lesion_stats_add(&s, NULL, NULL, 0, mal, s1, 1, 0.5), MR_OK);
    cr_assert_eq(s.n_matched, 2);
    cr_assert_float_eq(mr_lesion_sensitivity(&s), 2.0 / 3.0, EPS);
    cr_assert_float_eq(mr_lesion_accuracy(&s), 0.5, EPS);
    cr_assert_float_eq(mr_lesion_fp_per_image(&s), 1.0, EPS);
    cr_assert_float_eq(mr_lesion_mean_dice(&s), (1.8 / 1.9 + 1.4 / 1.7) / 2.0, EPS);
    cr_assert_float_eq(mr_lesion_mean_iou(&s), 0.8, EPS);
    const int64_t *c = s.confusion;
    cr_assert(c[1 * 3 + 1] == 1 && c[2 * 3 + 1] == 1 && c[1 * 3 + 2] == 0 && c[2 * 3 + 2] == 0);
    cr_assert(c[1 * 3 + 0] == 1 && c[2 * 3 + 0] == 0, "missed: the second benign");
    cr_assert(c[0 * 3 + 2] == 2 && c[0 * 3 + 1] == 0, "false positives: two malignant");
    cr_assert_eq(s.n_fp_without_gt, 1);
    mr_lesion_stats_free(&s);
}

Test(metrics, class_agnostic_match_takes_the_best_overlap) {
    /* One prediction over two GT (IoU 0.6 and 0.8) takes the 0.8 one; a second, lower-scored
     * prediction then gets the 0.6 one. */
    const double iou[4] = {0.6, 0.8, 0.6, 0.0};
    const float scores[2] = {0.9f, 0.5f};
    int64_t g2p[2];
    cr_assert_eq(mr_match_class_agnostic(g2p, iou, 2, scores, 2, 0.5), MR_OK);
    cr_assert(g2p[1] == 0 && g2p[0] == 1);
}

/* ---- `mrcnn evaluate` end to end --------------------------------------------------------------
 */

static int run_cli(const char *args, char *out, size_t n) {
    return run_mrcnn(args, out, n);
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *t = malloc((size_t)n + 1);
    size_t got = t ? fread(t, 1, (size_t)n, f) : 0;
    fclose(f);
    if (t) t[got] = '\0';
    return t;
}

static void put_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* Every number under `node` must be a share in [0, 1] (or null = undefined). */
static void assert_unit(const cJSON *node, const char *where) {
    for (const cJSON *it = node->child; it; it = it->next) {
        if (cJSON_IsNumber(it)) {
            const char *k = it->string ? it->string : "";
            if (!strcmp(k, "ground_truth") || !strcmp(k, "detections") ||
                !strcmp(k, "images_averaged"))
                continue;
            cr_assert(it->valuedouble >= 0.0 && it->valuedouble <= 1.0, "%s.%s = %g", where, k,
                      it->valuedouble);
        } else if (cJSON_IsObject(it)) {
            assert_unit(it, it->string ? it->string : where);
        }
    }
}

Test(metrics, evaluate_runs_on_a_tiny_random_model, .timeout = 600) {
    char *tiny = slurp("configs/tiny.json");
    if (!tiny) cr_skip_test("configs/tiny.json not found (run from the repo root)");
    const char *dir = temp_dir("evaluate");
    char data[512], cfg_path[512], weights[512], out[512], args[4096];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/tiny.json", dir);
    snprintf(weights, sizeof weights, "%s/random.h5", dir);
    snprintf(out, sizeof out, "%s/report", dir);

    mr_synth_options so;
    mr_synth_defaults(&so);
    so.out_dir = data;
    so.n_images = 8;
    so.seed = 5;
    so.size = 128;
    so.val_fraction = 0.5;
    cr_assert_eq(mr_synth_write(&so), MR_OK, "%s", mr_last_error());

    /* configs/tiny.json with DETECTION_MIN_CONFIDENCE 0 and the temp data. */
    char *a = NULL, *b = NULL, dataset[1200];
    snprintf(dataset, sizeof dataset, "{\"TRAIN\": \"%s/train\", \"VAL\": \"%s/val\"}", data, data);
    cr_assert_eq(mr_json_set_member(tiny, "tiny.json", "DETECTION_MIN_CONFIDENCE", "0", &a), MR_OK);
    cr_assert_eq(mr_json_set_member(a, "tiny.json", "DATASET", dataset, &b), MR_OK);
    put_file(cfg_path, b);
    free(tiny), free(a), free(b);

    /* A tiny model with random weights, saved as an mrcnn export. */
    mr_config *cfg = malloc(sizeof *cfg);
    mr_config_defaults(cfg);
    cr_assert_eq(mr_config_load(cfg_path, cfg), MR_OK, "%s", mr_last_error());
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &cfg->net), MR_OK, "%s", mr_last_error());
    mr_rng rng;
    mr_rng_seed(&rng, 11);
    for (int i = 0; i < m.params.count; i++) {
        mr_param *q = &m.params.items[i];
        const char *w = strrchr(q->name, '/') + 1;
        bool ones = !strcmp(w, "gamma") || !strcmp(w, "moving_variance");
        for (int64_t k = 0; k < q->t.numel; k++)
            q->t.data[k] = ones ? 1.0f : !strcmp(w, "kernel") ? 0.05f * mr_rng_normal(&rng) : 0.0f;
    }
    cr_assert_eq(mr_weights_save(weights, &m.params, NULL, false), MR_OK, "%s", mr_last_error());
    mr_model_free(&m);
    free(cfg);

    static char output[1 << 16];
    snprintf(args, sizeof args,
             "evaluate --weights '%s' --config '%s' --out '%s' --quiet --verbose --compare-paper",
             weights, cfg_path, out);
    int code = run_cli(args, output, sizeof output);
    cr_assert_eq(code, 0, "mrcnn evaluate failed:\n%s", output);
    cr_assert_not_null(strstr(output, "gt_match[j] > -1"), "the re-match fix is named:\n%s",
                       output);
    cr_assert_not_null(strstr(output, "DETECTION_MIN_CONFIDENCE 0"), "%s", output);
    cr_assert_not_null(strstr(output, "Seed paper"), "the seed paper's numbers:\n%s", output);
    cr_assert_not_null(strstr(output, "0.75"), "%s", output);

    char path[1024];
    snprintf(path, sizeof path, "%s/evaluation.json", out);
    char *json = slurp(path);
    cr_assert_not_null(json, "%s not written", path);
    cJSON *doc = cJSON_Parse(json);
    cr_assert_not_null(doc, "evaluation.json is not JSON:\n%s", json);
    assert_unit(cJSON_GetObjectItem(doc, "matterport"), "matterport");
    assert_unit(cJSON_GetObjectItem(doc, "coco"), "coco");
    const cJSON *les = cJSON_GetObjectItem(doc, "lesions");
    cr_assert_not_null(les);
    for (const char *const *k =
             (const char *const[]){"sensitivity", "mean_dice", "mean_iou", "accuracy", NULL};
         *k; k++) {
        const cJSON *v = cJSON_GetObjectItem(les, *k);
        cr_assert(v && (cJSON_IsNull(v) ||
                        (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1)),
                  "lesions.%s", *k);
    }
    cr_assert(cJSON_GetObjectItem(les, "fp_per_image")->valuedouble >= 0);
    cr_assert_eq(cJSON_GetObjectItem(doc, "detection_min_confidence")->valuedouble, 0.0);
    cr_assert_eq(cJSON_GetObjectItem(doc, "images")->valueint, so.n_images / 2);
    cJSON_Delete(doc);
    free(json);

    for (const char *const *cls = (const char *const[]){"benign", "malignant", NULL}; *cls; cls++) {
        snprintf(path, sizeof path, "%s/pr_%s.svg", out, *cls);
        char *svg = slurp(path);
        cr_assert_not_null(svg, "%s not written", path);
        cr_assert(strstr(svg, "<svg") && strstr(svg, "</svg>") && strstr(svg, ">Recall<") &&
                      strstr(svg, ">Precision<"),
                  "%s lacks axes or labels", path);
        free(svg);
    }
}

Test(metrics, evaluate_needs_weights_and_config) {
    static char output[4096];
    cr_assert_eq(run_cli("evaluate --config configs/tiny.json", output, sizeof output), 2);
    cr_assert_not_null(strstr(output, "--weights"), "%s", output);
}

/* Evaluation metrics as plain functions over arrays, with no model in sight: box and mask IoU,
 * Dice, Matterport's per-image AP (compute_matches / compute_ap / compute_ap_range, re-match bug
 * fixed), COCO-style AP (pycocotools' matching and 101-point interpolation) and the
 * class-agnostic lesion matching behind the confusion matrix, sensitivity and FP per image. */
#ifndef MR_METRICS_H
#define MR_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"
#include "../layers/boxes.h"

/* AP of an image or a class without ground truth: undefined, left out of every mean (as
 * pycocotools marks a category without GT with -1). */
#define MR_AP_UNDEFINED (-1.0)

/* ---- overlaps ---------------------------------------------------------------------------------
 */

/* iou[i * nb + j] = IoU of boxes a[i] and b[j] with plain areas (no +1), as Matterport's
 * compute_iou and pycocotools; a zero union gives 0. */
void mr_box_iou_matrix_f64(double *iou, const double *a, int64_t na, const double *b, int64_t nb);
/* iou[i * nb + j] = IoU of masks a[i] and b[j], each `npix` bytes (h * w); a zero union gives 0
 * (Matterport's compute_overlaps_masks would give NaN). Only the rows both masks reach are
 * visited. Fails only when out of memory. */
mr_status mr_mask_iou_matrix(double *iou, const uint8_t *a, int64_t na, const uint8_t *b,
                             int64_t nb, int64_t npix);
/* Dice = 2|A n B| / (|A| + |B|) and IoU of two masks; two empty masks count as identical (1, 1). */
void mr_mask_dice_iou(const uint8_t *a, const uint8_t *b, int64_t npix, double *dice, double *iou);
/* Dice from IoU J of the same pair: 2J / (1 + J). */
double mr_dice_from_iou(double iou);

/* ---- Matterport: compute_matches, compute_ap, compute_ap_range ------------------------------ */

/* compute_matches on a precomputed overlap matrix iou (n_pred, n_gt) in the predictions' own
 * order (Matterport passes mask IoU). Predictions are visited by score, highest first; ties go
 * to the lower index (pycocotools' stable order; Matterport's np.argsort(...)[::-1] puts the
 * higher index first, issue #1422). For each prediction the GT are tried by IoU, highest first
 * (ties: lower index): a GT already matched is skipped, the search stops at the first IoU below
 * iou_threshold, and the first GT of the same class is matched; a GT of another class is
 * passed over. Writes order (n_pred) = prediction indices in visiting order, pred_match (n_pred)
 * = GT index matched by the prediction at visiting position k (or -1), gt_match (n_gt) =
 * visiting position of the prediction that took the GT (or -1), as Matterport's arrays.
 *
 * `matterport_bug` reproduces master's `if gt_match[j] > 0: continue`, which lets a GT taken by
 * the first prediction (position 0) be taken again (issue #1692); false is the fix
 * `gt_match[j] > -1`. Fails only when out of memory. */
mr_status mr_compute_matches(int64_t *gt_match, int64_t *pred_match, int64_t *order,
                             const double *iou, const int64_t *gt_class_ids, int64_t n_gt,
                             const int64_t *pred_class_ids, const float *pred_scores,
                             int64_t n_pred, double iou_threshold, bool matterport_bug);

/* compute_ap for one image: matches at iou_threshold, then the VOC all-point area under
 * precision-recall. */
mr_status mr_compute_ap(double *ap, const double *iou, const int64_t *gt_class_ids, int64_t n_gt,
                        const int64_t *pred_class_ids, const float *pred_scores, int64_t n_pred,
                        double iou_threshold, bool matterport_bug);
/* compute_ap_range: mean AP over IoU thresholds 0.50, 0.55, ..., 0.95 (np.arange(0.5, 1.0,
 * 0.05)); MR_AP_UNDEFINED without GT. */
mr_status mr_compute_ap_range(double *ap, const double *iou, const int64_t *gt_class_ids,
                              int64_t n_gt, const int64_t *pred_class_ids, const float *pred_scores,
                              int64_t n_pred, bool matterport_bug);
/* The same two on instances with full-size masks of `npix` pixels (mask IoU, as Matterport). */
mr_status mr_image_ap_masks(double *ap, double *ap_range, const mr_instances *gt,
                            const mr_instances *pred, int64_t npix, double iou_threshold);

/* ---- COCO-style AP (pycocotools' COCOeval, without crowd regions or area ranges) --------------
 */

#define MR_COCO_N_IOU    10  /* IoU thresholds 0.50:0.05:0.95 */
#define MR_COCO_N_RECALL 101 /* recall points 0:0.01:1 */
#define MR_COCO_MAX_DETS 100 /* per image and class */

typedef struct {
    float score;
    uint16_t matched; /* bit t: a true positive at IoU threshold t */
} mr_coco_det;

/* Accumulates images one at a time (only each detection's score and match bits are kept), as
 * COCOeval.evaluate does per image and category before accumulate(). */
typedef struct {
    int64_t num_classes; /* background included; classes 1..num_classes-1 are evaluated */
    int64_t n_images;
    int64_t *n_gt;      /* (num_classes) */
    mr_coco_det **dets; /* (num_classes) lists in image order, each image's in score order */
    int64_t *n_dets;
    size_t *cap_dets;
} mr_coco_eval;

mr_status mr_coco_init(mr_coco_eval *e, int64_t num_classes);
void mr_coco_free(mr_coco_eval *e);
/* One image with its overlap matrix iou (n_pred, n_gt) (box or mask IoU). Per class:
 * predictions of that class by score (stable: ties to the lower index), at most
 * MR_COCO_MAX_DETS; for each IoU threshold t each prediction in turn takes the unmatched GT of
 * its class with the highest IoU >= t (equal IoU: the later GT, as evaluateImg's `<` test).
 * Class ids outside 1..num_classes-1 are ignored. */
mr_status mr_coco_add_image(mr_coco_eval *e, const double *iou, const int64_t *gt_class_ids,
                            int64_t n_gt, const int64_t *pred_class_ids, const float *pred_scores,
                            int64_t n_pred);

typedef struct {
    int64_t num_classes;
    /* Per class (index = class id; entry 0 unused); MR_AP_UNDEFINED when the class has no GT. */
    double *ap; /* mean over the 10 thresholds and 101 recall points */
    double *ap50, *ap75;
    double *recall;    /* (num_classes, MR_COCO_N_IOU) the highest recall reached */
    double *precision; /* (num_classes, MR_COCO_N_IOU, MR_COCO_N_RECALL) interpolated */
    int64_t *n_gt, *n_dets;
    /* Over the classes with GT (pycocotools' mean of the valid entries); MR_AP_UNDEFINED when
     * no class has any. */
    double mean_ap, mean_ap50, mean_ap75;
} mr_coco_result;

/* COCOeval.accumulate + summarize for maxDets 100, area "all": per class every image's
 * detections merged and sorted by score (stable: image order, then score order), cumulative
 * TP/FP, recall = TP / #GT, precision = TP / (TP + FP + eps), precision made monotone from the
 * right, read at the first detection whose recall reaches each of 0, 0.01, ..., 1 (0 past the
 * last); AP = the mean of those 101 values. Free with mr_coco_result_free. */
mr_status mr_coco_summarize(const mr_coco_eval *e, mr_coco_result *r);
void mr_coco_result_free(mr_coco_result *r);

/* ---- lesion level: class-agnostic matching -------------------------------------------------- */

/* Predictions by score (ties: lower index) each take the still unmatched GT with the highest
 * IoU >= iou_threshold, whatever the classes (equal IoU: the lower GT index). gt_to_pred (n_gt)
 * gets the prediction index or -1. Fails only when out of memory. */
mr_status mr_match_class_agnostic(int64_t *gt_to_pred, const double *iou, int64_t n_gt,
                                  const float *pred_scores, int64_t n_pred, double iou_threshold);

typedef struct {
    int64_t num_classes; /* background included */
    int64_t n_images, n_images_without_gt;
    int64_t n_gt, n_pred, n_matched;
    int64_t n_fp_without_gt;  /* predictions on images with no lesion */
    double sum_dice, sum_iou; /* over matched pairs (mask overlap) */
    /* (num_classes, num_classes), [gt class][predicted class], index 0 = background:
     * [g][p] (g, p >= 1) matched pairs, [g][0] GT of class g left unmatched (missed),
     * [0][p] predictions of class p left unmatched (false positives); [0][0] unused. */
    int64_t *confusion;
} mr_lesion_stats;

mr_status mr_lesion_stats_init(mr_lesion_stats *s, int64_t num_classes);
void mr_lesion_stats_free(mr_lesion_stats *s);
/* One image: class-agnostic matching on iou (n_pred, n_gt) at iou_threshold, then the matched
 * pairs' Dice (from their IoU) and IoU, their classes, and the unmatched ones. Class ids
 * outside 1..num_classes-1 are counted everywhere but in the confusion matrix. */
mr_status mr_lesion_stats_add(mr_lesion_stats *s, const double *iou, const int64_t *gt_class_ids,
                              int64_t n_gt, const int64_t *pred_class_ids, const float *pred_scores,
                              int64_t n_pred, double iou_threshold);
/* Matched pairs whose predicted class equals the GT class, over matched pairs with valid
 * classes (the confusion matrix without row and column 0); 0 when none. */
double mr_lesion_accuracy(const mr_lesion_stats *s);
/* Matched GT over all GT (0 when no GT). */
double mr_lesion_sensitivity(const mr_lesion_stats *s);
/* Unmatched predictions per image (0 when no image). */
double mr_lesion_fp_per_image(const mr_lesion_stats *s);
double mr_lesion_mean_dice(const mr_lesion_stats *s);
double mr_lesion_mean_iou(const mr_lesion_stats *s);

/* ---- helpers -------------------------------------------------------------------------------- */

/* Boxes (n, 4) of masks (n, h, w): y1, x1 of the first row/column used, y2, x2 one past the last
 * (Matterport's extract_bboxes); an empty mask gives (0, 0, 0, 0). */
void mr_masks_to_boxes(double *boxes, const uint8_t *masks, int64_t n, int64_t h, int64_t w);

#endif

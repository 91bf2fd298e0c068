/* Training targets: RPN anchor labels and deltas (Matterport build_rpn_targets) and the
 * detection-head ROI targets (DetectionTargetLayer). The mask samplers they use (TF
 * crop_and_resize, skimage-style bilinear resize, mini masks) are in resample.h. */
#ifndef MR_TARGETS_H
#define MR_TARGETS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/rng.h"
#include "../core/status.h"
#include "boxes.h"

/* ---- RPN targets ---- */

typedef struct {
    int64_t anchors_per_image; /* RPN_TRAIN_ANCHORS_PER_IMAGE (256) */
    float positive_iou;        /* 0.7: anchors at or above are positive */
    float negative_iou;        /* 0.3: anchors below are negative */
    float bbox_std[4];         /* RPN_BBOX_STD_DEV (0.1, 0.1, 0.2, 0.2) */
} mr_rpn_target_config;

mr_rpn_target_config mr_rpn_target_config_matterport(void);

/* build_rpn_targets (crowd boxes not supported). anchors (n_anchors, 4) and gt_boxes (n_gt, 4)
 * in molded-image pixels. Writes match (n_anchors): 1 positive, -1 negative, 0 neutral; and
 * bbox (anchors_per_image, 4): deltas of the positives, in increasing anchor order, to the GT
 * of highest IoU, divided by bbox_std, zero padded. Subsampling draws from rng. With n_gt = 0
 * every anchor is a negative candidate. One deliberate difference: Matterport marks, for each
 * GT, every anchor reaching that GT's best IoU positive even when that IoU is 0 (a degenerate
 * GT would then label nearly all anchors positive); a GT overlapping no anchor is skipped. */
mr_status mr_build_rpn_targets(int8_t *match, float *bbox, const float *anchors, int64_t n_anchors,
                               const double *gt_boxes, int64_t n_gt,
                               const mr_rpn_target_config *cfg, mr_rng *rng);

/* ---- detection (ROI) targets ---- */

typedef struct {
    int64_t rois_per_image; /* TRAIN_ROIS_PER_IMAGE (200) */
    double positive_ratio;  /* ROI_POSITIVE_RATIO (0.33), double as Python holds it */
    float positive_iou;     /* 0.5: positive at or above, negative below */
    float bbox_std[4];      /* BBOX_STD_DEV (0.1, 0.1, 0.2, 0.2) */
    int64_t mask_h, mask_w; /* MASK_SHAPE (28, 28) */
    bool use_mini_mask;     /* USE_MINI_MASK: gt masks are mini masks of the GT box */
    bool fill_negatives;    /* ROI_SAMPLING "fill": negatives fill rois_per_image - P, even when
                               P = 0 (torchvision); false: P / positive_ratio - P (Matterport) */
} mr_roi_target_config;

mr_roi_target_config mr_roi_target_config_matterport(void);

/* Outputs, caller-owned (mr_roi_targets_alloc gives buffers of the config's sizes).
 * Rows: positives (random order), then negatives, then zero padding. */
typedef struct {
    float *rois;        /* (rois_per_image, 4) normalised */
    int64_t *class_ids; /* (rois_per_image) GT class of positives, 0 otherwise */
    float *deltas;      /* (rois_per_image, 4) box_refinement / bbox_std, 0 past positives */
    float *masks;       /* (rois_per_image, mask_h, mask_w) 0/1, 0 past positives */
    int64_t n_positive, n_negative;
} mr_roi_targets;

mr_status mr_roi_targets_alloc(mr_roi_targets *t, const mr_roi_target_config *cfg);
void mr_roi_targets_free(mr_roi_targets *t);

/* detection_targets_graph for one image. proposals (n_proposals, 4) normalised; all-zero rows
 * (padding) are skipped. positive_count = int(rois_per_image * positive_ratio) picked at random
 * among proposals with max IoU >= positive_iou, negatives int(P / ratio) - P among the rest
 * (so none at all when P = 0, as Matterport). Mask targets: the assigned GT mask cropped with
 * the ROI (mapped into the GT box frame for mini masks) by crop_and_resize to mask_h x mask_w,
 * then rounded half to even. */
mr_status mr_detection_targets(mr_roi_targets *out, const float *proposals, int64_t n_proposals,
                               const mr_instances *gt, const mr_roi_target_config *cfg,
                               mr_rng *rng);

#endif

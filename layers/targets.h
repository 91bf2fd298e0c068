/* Training targets: RPN anchor labels and deltas (Matterport build_rpn_targets) and the
 * detection-head ROI targets (DetectionTargetLayer), plus the mask samplers they need:
 * TF crop_and_resize, skimage-style bilinear resize, mini-mask minimize/expand. */
#ifndef MR_TARGETS_H
#define MR_TARGETS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/rng.h"
#include "../core/status.h"

/* ---- mask samplers (single channel, row-major (h, w)) ---- */

/* tf.image.crop_and_resize of one normalised box (y1, x1, y2, x2) of an h x w image to
 * out_h x out_w, bilinear: sample row i sits at y1*(h-1) + i*(y2-y1)*(h-1)/(out_h-1) (the box
 * centre when out_h == 1), likewise columns; samples outside [0, h-1] x [0, w-1] give
 * `extrapolation`. The _u8 form reads a byte mask as bool (nonzero = 1) without a copy.
 * Positions are computed in float32 in TF's order, so its edge effect is kept: box (0, 0, 1, 1)
 * of a 56-pixel side at 28 outputs puts the last sample at 27 * float(55/27) = 55.0000038,
 * outside, giving `extrapolation` for the last row and column. */
void mr_crop_and_resize(float *out, int64_t out_h, int64_t out_w, const float *image, int64_t h,
                        int64_t w, const float box[4], float extrapolation);
void mr_crop_and_resize_u8(float *out, int64_t out_h, int64_t out_w, const uint8_t *image,
                           int64_t h, int64_t w, const float box[4], float extrapolation);

/* skimage.transform.resize(order=1, mode="constant", cval=0, clip=True, no anti-aliasing),
 * Matterport's utils.resize: source = (dst + 0.5) * in/out - 0.5, neighbours outside the
 * image count as 0, then the output is clipped to the input's [min, max] (an output exactly 0
 * stays 0 when 0 lies outside that range). Computed in double like skimage. */
mr_status mr_resize_bilinear(float *out, int64_t out_h, int64_t out_w, const float *in,
                             int64_t in_h, int64_t in_w);

/* The same resize, thresholded on the exact double value: out = (value >= threshold). */
mr_status mr_resize_threshold(uint8_t *out, int64_t out_h, int64_t out_w, const float *in,
                              int64_t in_h, int64_t in_w, double threshold);

/* minimize_mask for one instance: crop mask[y1:y2, x1:x2] (integer pixel box, y2/x2
 * exclusive), resize it to mini_h x mini_w as above and round (np.around: 0.5 goes to 0).
 * An empty or out-of-image box is MR_ERR_ARG, as Matterport raises. */
mr_status mr_minimize_mask(uint8_t *mini, int64_t mini_h, int64_t mini_w, const uint8_t *mask,
                           int64_t h, int64_t w, const int64_t box[4]);
/* expand_mask for one instance: resize the mini mask to the box and round it into a zeroed
 * h x w mask (pixels of the box outside the image are dropped). */
mr_status mr_expand_mask(uint8_t *mask, int64_t h, int64_t w, const uint8_t *mini, int64_t mini_h,
                         int64_t mini_w, const int64_t box[4]);

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
                               const float *gt_boxes, int64_t n_gt, const mr_rpn_target_config *cfg,
                               mr_rng *rng);

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

/* Ground truth of one image as the data pipeline hands it over; only real instances (no
 * zero padding). */
typedef struct {
    int64_t n;
    const float *boxes;       /* (n, 4) molded-image pixels, y2/x2 exclusive */
    const int64_t *class_ids; /* (n) in 1..NUM_CLASSES-1 */
    const uint8_t *masks;     /* (n, mask_h, mask_w) 0/1: mini masks, or full image masks */
    int64_t mask_h, mask_w;   /* MINI_MASK_SHAPE, or image_h x image_w without mini masks */
    int64_t image_h, image_w; /* molded image shape, for norm_boxes */
} mr_gt_instances;

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
                               const mr_gt_instances *gt, const mr_roi_target_config *cfg,
                               mr_rng *rng);

#endif

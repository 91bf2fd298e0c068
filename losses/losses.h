/* The five Mask R-CNN losses exactly as Matterport computes them, and the training forward pass
 * that produces them: features, RPN, proposals, RPN and detection targets, heads, losses. */
#ifndef MR_LOSSES_H
#define MR_LOSSES_H

#include "../core/rng.h"
#include "../layers/model.h"

enum {
    MR_LOSS_RPN_CLASS,
    MR_LOSS_RPN_BBOX,
    MR_LOSS_MRCNN_CLASS,
    MR_LOSS_MRCNN_BBOX,
    MR_LOSS_MRCNN_MASK,
    MR_LOSS_COUNT
};

extern const char *const mr_loss_names[MR_LOSS_COUNT];

typedef struct {
    float value[MR_LOSS_COUNT]; /* each already scaled by its LOSS_WEIGHTS entry */
    float total;                /* sum of the five (weight decay is added by the optimizer) */
    int64_t n_positive_anchors, n_positive_rois;
} mr_loss_values;

/* One image's ground truth, as layers/targets.h describes it. */
typedef mr_gt_instances mr_image_gt;

/* The sampled targets of one training step (arena memory). ROIs are batch-major: image b owns
 * rows [b * TRAIN_ROIS_PER_IMAGE, (b + 1) * TRAIN_ROIS_PER_IMAGE). */
typedef struct {
    int8_t *match;   /* (B * anchors) 1 positive, -1 negative, 0 neutral */
    float *rpn_bbox; /* (B, rpn_targets_per_image, 4) deltas of the positives / std */
    int64_t rpn_targets_per_image;
    float *rois;        /* (n_rois, 4) normalised */
    int32_t *roi_image; /* (n_rois) */
    int64_t *roi_class; /* (n_rois) 0 = background or padding */
    float *roi_deltas;  /* (n_rois, 4) */
    float *roi_masks;   /* (n_rois, MASK_SHAPE, MASK_SHAPE) */
    int64_t n_rois;
} mr_train_targets;

/* The targets of one step: RPN anchor labels, proposals from the RPN outputs (plus the GT boxes
 * with PROPOSALS_INCLUDE_GT), and the sampled detection ROIs with their classes, deltas and
 * masks, drawn from rng (arena memory). */
mr_status mr_train_targets_build(mr_ctx *ctx, const mr_model *m, mr_tensor *rpn_logits,
                                 mr_tensor *rpn_deltas, const mr_image_gt *gt, int64_t batch,
                                 mr_rng *rng, mr_train_targets *tt);

/* The heads and the five losses for given features, RPN outputs and targets. */
mr_tensor *mr_losses_from_targets(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                                  mr_tensor *rpn_logits, mr_tensor *rpn_deltas,
                                  const mr_train_targets *targets, const float *active_class_ids,
                                  mr_loss_values *values);

/* Runs the whole training graph on a batch of molded images (B, H, W, C) with their ground
 * truth, draws the anchor and ROI samples from rng, and returns the scalar total loss (ready
 * for mr_backward) with each term in *values. active_class_ids (NUM_CLASSES entries, NULL: all
 * 1) weights mrcnn_class_loss by the predicted class, as Matterport does. */
mr_tensor *mr_training_losses(mr_ctx *ctx, const mr_model *m, mr_tensor *images,
                              const mr_image_gt *gt, const float *active_class_ids, mr_rng *rng,
                              mr_loss_values *values);

#endif

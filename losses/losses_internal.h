/* The two halves of mr_training_losses (losses.h), internal to losses/losses.c and its parity
 * tests: sampling the step's targets, and the heads and losses for given targets. */
#ifndef MR_LOSSES_INTERNAL_H
#define MR_LOSSES_INTERNAL_H

#include "losses.h"

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
                                 mr_tensor *rpn_deltas, const mr_instances *gt, int64_t batch,
                                 mr_rng *rng, mr_train_targets *tt);

/* The heads and the five losses for given features, RPN outputs and targets. */
mr_tensor *mr_losses_from_targets(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                                  mr_tensor *rpn_logits, mr_tensor *rpn_deltas,
                                  const mr_train_targets *targets, const float *active_class_ids,
                                  mr_loss_values *values);

#endif

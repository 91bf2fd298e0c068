/* The five Mask R-CNN losses exactly as Matterport computes them, and the training forward pass
 * that produces them: features, RPN, proposals, RPN and detection targets, heads, losses. */
#ifndef MR_LOSSES_H
#define MR_LOSSES_H

#include "../core/rng.h"
#include "../layers/model.h"
#include "../layers/targets.h"

/* The loss list (MR_LOSS_*, MR_LOSS_COUNT) is in layers/model.h, which sizes LOSS_WEIGHTS by it. */
extern const char *const mr_loss_names[MR_LOSS_COUNT];

typedef struct {
    float value[MR_LOSS_COUNT]; /* each already scaled by its LOSS_WEIGHTS entry */
    float total;                /* sum of the five (weight decay is added by the optimizer) */
    int64_t n_positive_anchors, n_positive_rois;
} mr_loss_values;

/* Runs the whole training graph on a batch of molded images (B, H, W, C) with their ground
 * truth, draws the anchor and ROI samples from rng, and returns the scalar total loss (ready
 * for mr_backward) with each term in *values. active_class_ids (NUM_CLASSES entries, NULL: all
 * 1) weights mrcnn_class_loss by the predicted class, as Matterport does. */
mr_tensor *mr_training_losses(mr_ctx *ctx, const mr_model *m, mr_tensor *images,
                              const mr_instances *gt, const float *active_class_ids, mr_rng *rng,
                              mr_loss_values *values);
/* The trainer's training graph: each image of the batch is a graph of its own (a batch of one)
 * that samples from its own stream, seeded by image_seeds[b], so none of an image's numbers
 * depend on which images share its batch or its process. Each loss term is still the mean over
 * the whole batch's rows: under mpirun (core/dist.h) the counts are summed over the processes,
 * which must then all call it in step. losses[b] is image b's part of the batch's total loss
 * (the parts of all images of all processes add up to it); first_nodes[b] (may be NULL) is the
 * tape index where image b's graph begins. *values holds the sum of this process's parts.
 * Returns MR_OK or the failure (also in ctx->status). */
mr_status mr_training_losses_per_image(mr_ctx *ctx, const mr_model *m, const mr_tensor *images,
                                       const mr_instances *gt, const float *active_class_ids,
                                       const uint64_t *image_seeds, mr_tensor **losses,
                                       int *first_nodes, mr_loss_values *values);

#endif

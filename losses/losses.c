/* The training graph and Matterport's five losses. Targets (anchor labels, proposals, ROI
 * samples) are built with recording off; the losses select rows with gather ops so gradients
 * reach only the predictions Matterport's losses read. */
#include "losses.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dist.h"
#include "../core/ops.h"
#include "../core/profile.h"
#include "../core/util.h"
#include "../layers/boxes.h"
#include "../layers/proposals.h"
#include "losses_internal.h"

const char *const mr_loss_names[MR_LOSS_COUNT] = {
    "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"};

static mr_tensor *zero_loss(mr_ctx *ctx, const char *name) {
    mr_tensor *t = mr_tensor_1d(ctx, name, 1);
    if (t) t->data[0] = 0.0f;
    return t;
}

static mr_tensor *rows_view(mr_ctx *ctx, mr_tensor *x, int64_t cols) {
    int64_t shape[2] = {x ? x->numel / cols : 0, cols};
    return mr_reshape(ctx, x, 2, shape);
}

/* ---- the loss terms, for given head outputs and targets ---- */

/* Each term also reports how many rows (or the weight) its mean divides by, so that processes
 * sharing a batch can divide by the batch's count (mr_losses_from_targets). */
static mr_tensor *mr_rpn_class_loss(mr_ctx *ctx, mr_tensor *rpn_logits, const int8_t *match,
                                    double *count) {
    *count = 0.0;
    if (!rpn_logits) return NULL;
    int64_t n = rpn_logits->numel / 2, k = 0;
    int64_t *index = mr_alloc(ctx, sizeof(int64_t) * (size_t)(n + 1), "rpn_class_loss");
    int32_t *target = mr_alloc(ctx, sizeof(int32_t) * (size_t)(n + 1), "rpn_class_loss");
    if (!index || !target) return NULL;
    for (int64_t i = 0; i < n; i++)
        if (match[i] != 0) {
            index[k] = i;
            target[k++] = match[i] == 1;
        }
    *count = (double)k;
    if (k == 0) return zero_loss(ctx, "rpn_class_loss");
    mr_tensor *picked = mr_gather_rows(ctx, rows_view(ctx, rpn_logits, 2), index, k);
    return mr_softmax_xent(ctx, picked, target, NULL);
}

static mr_tensor *mr_rpn_bbox_loss(mr_ctx *ctx, mr_tensor *rpn_deltas, const int8_t *match,
                                   const float *target_bbox, int64_t targets_per_image,
                                   double *rows) {
    *rows = 0.0;
    if (!rpn_deltas) return NULL;
    int64_t batch = rpn_deltas->shape[0], anchors = rpn_deltas->shape[1], k = 0;
    int64_t *index =
        mr_alloc(ctx, sizeof(int64_t) * (size_t)(batch * targets_per_image + 1), "rpn_bbox_loss");
    float *target =
        mr_alloc(ctx, sizeof(float) * (size_t)(4 * batch * targets_per_image + 1), "rpn_bbox_loss");
    if (!index || !target) return NULL;
    for (int64_t b = 0; b < batch; b++) {
        /* Positives in increasing anchor order pair with the first rows of this image's
         * targets (Matterport's batch_pack_graph). */
        int64_t count = 0;
        for (int64_t a = 0; a < anchors && count < targets_per_image; a++)
            if (match[b * anchors + a] == 1) {
                index[k] = b * anchors + a;
                memcpy(target + 4 * k, target_bbox + 4 * (b * targets_per_image + count),
                       4 * sizeof(float));
                k++;
                count++;
            }
    }
    *rows = (double)k;
    if (k == 0) return zero_loss(ctx, "rpn_bbox_loss");
    return mr_smooth_l1(ctx, mr_gather_rows(ctx, rows_view(ctx, rpn_deltas, 4), index, k), target);
}

static mr_tensor *mr_mrcnn_class_loss(mr_ctx *ctx, mr_tensor *class_logits,
                                      const int64_t *target_ids, const float *active_class_ids,
                                      double *count) {
    *count = 0.0;
    if (!class_logits) return NULL;
    int64_t n = class_logits->shape[0], c = class_logits->shape[1];
    int32_t *target = mr_alloc(ctx, sizeof(int32_t) * (size_t)(n + 1), "mrcnn_class_loss");
    float *weight = mr_alloc(ctx, sizeof(float) * (size_t)(n + 1), "mrcnn_class_loss");
    if (!target || !weight) return NULL;
    for (int64_t i = 0; i < n; i++) {
        target[i] = (int32_t)target_ids[i];
        /* Matterport weights each row by whether its *predicted* class is active. */
        int64_t best = 0;
        for (int64_t k = 1; k < c; k++)
            if (class_logits->data[i * c + k] > class_logits->data[i * c + best]) best = k;
        weight[i] = active_class_ids ? active_class_ids[best] : 1.0f;
        *count += (double)weight[i];
    }
    return mr_softmax_xent(ctx, class_logits, target, weight);
}

static mr_tensor *mr_mrcnn_bbox_loss(mr_ctx *ctx, mr_tensor *deltas, const int64_t *target_ids,
                                     const float *target_deltas, double *count) {
    *count = 0.0;
    if (!deltas) return NULL;
    int64_t n = deltas->shape[0], c = deltas->shape[1] / 4, k = 0;
    int64_t *index = mr_alloc(ctx, sizeof(int64_t) * (size_t)(n + 1), "mrcnn_bbox_loss");
    float *target = mr_alloc(ctx, sizeof(float) * (size_t)(4 * n + 1), "mrcnn_bbox_loss");
    if (!index || !target) return NULL;
    for (int64_t i = 0; i < n; i++)
        if (target_ids[i] > 0) {
            index[k] = i * c + target_ids[i]; /* the GT class's 4 deltas of ROI i */
            memcpy(target + 4 * k, target_deltas + 4 * i, 4 * sizeof(float));
            k++;
        }
    *count = (double)k;
    if (k == 0) return zero_loss(ctx, "mrcnn_bbox_loss");
    return mr_smooth_l1(ctx, mr_gather_rows(ctx, rows_view(ctx, deltas, 4), index, k), target);
}

/* mask_logits (n, S, S, NUM_CLASSES) for n ROIs whose classes are target_ids (only the rows with
 * a class > 0 count); target_masks (n, S, S). */
static mr_tensor *mr_mrcnn_mask_loss(mr_ctx *ctx, mr_tensor *mask_logits, const int64_t *target_ids,
                                     const float *target_masks, double *count) {
    *count = 0.0;
    if (!mask_logits) return NULL;
    int64_t n = mask_logits->shape[0], s = mask_logits->shape[1] * mask_logits->shape[2];
    int64_t c = mask_logits->shape[3], positives = 0;
    for (int64_t i = 0; i < n; i++) positives += target_ids[i] > 0;
    *count = (double)positives;
    if (positives == 0) return zero_loss(ctx, "mrcnn_mask_loss");
    int64_t *index = mr_alloc(ctx, sizeof(int64_t) * (size_t)(positives * s), "mrcnn_mask_loss");
    float *target = mr_alloc(ctx, sizeof(float) * (size_t)(positives * s), "mrcnn_mask_loss");
    if (!index || !target) return NULL;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (target_ids[i] <= 0) continue;
        /* Pixel p of ROI i in the GT class's channel: element (i*s + p)*c + class. */
        for (int64_t p = 0; p < s; p++) index[k * s + p] = (i * s + p) * c + target_ids[i];
        memcpy(target + k * s, target_masks + i * s, sizeof(float) * (size_t)s);
        k++;
    }
    mr_tensor *picked = mr_gather_rows(ctx, rows_view(ctx, mask_logits, 1), index, positives * s);
    return mr_sigmoid_bce(ctx, picked, target);
}

/* ---- the training graph ------------------------------------------------------------------- */

/* rng draws for the whole batch, image after image; or, with image_seeds, image b draws from a
 * stream of its own seeded by image_seeds[b], so an image's samples do not depend on which
 * images share its batch (or its process). */
static mr_status build_targets(mr_ctx *ctx, const mr_model *m, mr_tensor *rpn_logits,
                               mr_tensor *rpn_deltas, const mr_instances *gt, int64_t batch,
                               mr_rng *rng, const uint64_t *image_seeds, mr_train_targets *tt) {
    const mr_net_config *cfg = &m->cfg;
    int64_t anchors = m->n_anchors, rois = cfg->train_rois_per_image;
    mr_profile_enter(MR_GROUP_PROPOSALS);
    mr_rpn_target_config rpn_cfg = mr_rpn_target_config_matterport();
    rpn_cfg.anchors_per_image = cfg->rpn_train_anchors;
    memcpy(rpn_cfg.bbox_std, cfg->rpn_bbox_std, sizeof rpn_cfg.bbox_std);
    mr_proposal_config prop_cfg = mr_model_proposal_config(m, true);
    mr_roi_target_config roi_cfg = mr_roi_target_config_matterport();
    roi_cfg.rois_per_image = rois;
    roi_cfg.positive_ratio = (double)cfg->roi_positive_ratio;
    memcpy(roi_cfg.bbox_std, cfg->bbox_std, sizeof roi_cfg.bbox_std);
    roi_cfg.mask_h = roi_cfg.mask_w = cfg->mask_shape;
    roi_cfg.use_mini_mask = cfg->use_mini_mask;
    roi_cfg.fill_negatives = cfg->roi_sampling == MR_ROI_SAMPLING_FILL;
    /* With PROPOSALS_INCLUDE_GT the ground-truth boxes follow the RPN's proposals, so every
     * image with a lesion has positive ROIs from the first step on. */
    int64_t max_gt = 0;
    for (int64_t b = 0; b < batch && cfg->proposals_include_gt; b++)
        max_gt = gt[b].n > max_gt ? gt[b].n : max_gt;
    const int64_t n_rows = cfg->post_nms_rois_training + max_gt;

    int64_t s = cfg->mask_shape, total_rois = batch * rois;
    tt->n_rois = total_rois;
    tt->rpn_targets_per_image = cfg->rpn_train_anchors;
    tt->match = mr_alloc(ctx, (size_t)(batch * anchors), "rpn_targets");
    tt->rpn_bbox =
        mr_alloc(ctx, sizeof(float) * (size_t)(batch * cfg->rpn_train_anchors * 4), "rpn_targets");
    float *probs = mr_alloc(ctx, sizeof(float) * (size_t)(anchors * 2), "proposals");
    float *proposals = mr_alloc(ctx, sizeof(float) * (size_t)(n_rows * 4), "proposals");
    tt->rois = mr_alloc(ctx, sizeof(float) * (size_t)(total_rois * 4), "roi_targets");
    tt->roi_image = mr_alloc(ctx, sizeof(int32_t) * (size_t)total_rois, "roi_targets");
    tt->roi_class = mr_alloc(ctx, sizeof(int64_t) * (size_t)total_rois, "roi_targets");
    tt->roi_deltas = mr_alloc(ctx, sizeof(float) * (size_t)(total_rois * 4), "roi_targets");
    tt->roi_masks = mr_alloc(ctx, sizeof(float) * (size_t)(total_rois * s * s), "roi_targets");
    if (!tt->match || !tt->rpn_bbox || !probs || !proposals || !tt->rois || !tt->roi_image ||
        !tt->roi_class || !tt->roi_deltas || !tt->roi_masks)
        return ctx->status;
    mr_roi_targets t;
    MR_TRY(mr_roi_targets_alloc(&t, &roi_cfg));
    mr_status st = MR_OK;
    for (int64_t b = 0; b < batch && st == MR_OK; b++) {
        mr_rng own;
        if (image_seeds) {
            mr_rng_seed(&own, image_seeds[b]);
            rng = &own;
        }
        st = mr_build_rpn_targets(tt->match + b * anchors,
                                  tt->rpn_bbox + b * cfg->rpn_train_anchors * 4, m->anchors_px,
                                  anchors, gt[b].boxes, gt[b].n, &rpn_cfg, rng);
        if (st != MR_OK) break;
        mr_softmax_rows(probs, rpn_logits->data + b * anchors * 2, anchors, 2);
        int64_t n_props = 0;
        st = mr_proposals(proposals, &n_props, probs, rpn_deltas->data + b * anchors * 4,
                          m->anchors, anchors, &prop_cfg);
        if (st != MR_OK) break;
        int64_t n_gt_rows = cfg->proposals_include_gt ? gt[b].n : 0;
        float *gt_rows = proposals + 4 * cfg->post_nms_rois_training;
        mr_boxes_to_f32(gt_rows, gt[b].boxes, n_gt_rows);
        mr_norm_boxes(gt_rows, gt_rows, n_gt_rows, gt[b].image_h, gt[b].image_w);
        st = mr_detection_targets(&t, proposals, cfg->post_nms_rois_training + n_gt_rows, &gt[b],
                                  &roi_cfg, rng);
        if (st != MR_OK) break;
        memcpy(tt->rois + b * rois * 4, t.rois, sizeof(float) * (size_t)(rois * 4));
        memcpy(tt->roi_class + b * rois, t.class_ids, sizeof(int64_t) * (size_t)rois);
        memcpy(tt->roi_deltas + b * rois * 4, t.deltas, sizeof(float) * (size_t)(rois * 4));
        memcpy(tt->roi_masks + b * rois * s * s, t.masks, sizeof(float) * (size_t)(rois * s * s));
        for (int64_t r = 0; r < rois; r++) tt->roi_image[b * rois + r] = (int32_t)b;
    }
    mr_roi_targets_free(&t);
    return st;
}

mr_status mr_train_targets_build(mr_ctx *ctx, const mr_model *m, mr_tensor *rpn_logits,
                                 mr_tensor *rpn_deltas, const mr_instances *gt, int64_t batch,
                                 mr_rng *rng, mr_train_targets *tt) {
    return build_targets(ctx, m, rpn_logits, rpn_deltas, gt, batch, rng, NULL, tt);
}

/* The five unweighted terms for given features, RPN outputs and targets, each with the count of
 * rows its mean divides by (so that a part of a batch can be rescaled to the batch's mean). */
static mr_status loss_terms(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                            mr_tensor *rpn_logits, mr_tensor *rpn_deltas,
                            const mr_train_targets *tt, const float *active_class_ids,
                            mr_tensor *terms[MR_LOSS_COUNT], double counts[MR_LOSS_COUNT],
                            mr_loss_values *values) {
    const mr_net_config *cfg = &m->cfg;
    memset(counts, 0, sizeof(double) * MR_LOSS_COUNT); /* no positive ROI: no mask count set */
    int64_t s = cfg->mask_shape, total_rois = tt->n_rois;
    for (int64_t i = 0; i < rpn_logits->numel / 2; i++)
        values->n_positive_anchors += tt->match[i] == 1;
    int64_t np = 0;
    for (int64_t i = 0; i < total_rois; i++) np += tt->roi_class[i] > 0;
    values->n_positive_rois += np;
    mr_tensor *class_logits = NULL, *deltas = NULL;
    if (mr_model_box_head(ctx, m, p, tt->rois, tt->roi_image, total_rois, &class_logits, &deltas) !=
        MR_OK)
        return ctx->status;
    /* The mask loss reads positive ROIs only; with frozen batch norm each ROI's mask is
     * independent of the others, so running the head on the positives alone gives the same
     * loss and gradients for a fraction of the work. */
    mr_tensor *mask_loss;
    if (!cfg->train_bn) {
        float *pos_boxes = mr_alloc(ctx, sizeof(float) * (size_t)(4 * np + 1), "mrcnn_mask_loss");
        int32_t *pos_image = mr_alloc(ctx, sizeof(int32_t) * (size_t)(np + 1), "mrcnn_mask_loss");
        int64_t *pos_class = mr_alloc(ctx, sizeof(int64_t) * (size_t)(np + 1), "mrcnn_mask_loss");
        float *pos_masks =
            mr_alloc(ctx, sizeof(float) * (size_t)(np * s * s + 1), "mrcnn_mask_loss");
        if (!pos_boxes || !pos_image || !pos_class || !pos_masks) return ctx->status;
        for (int64_t i = 0, k = 0; i < total_rois; i++)
            if (tt->roi_class[i] > 0) {
                memcpy(pos_boxes + 4 * k, tt->rois + 4 * i, 4 * sizeof(float));
                pos_image[k] = tt->roi_image[i];
                pos_class[k] = tt->roi_class[i];
                memcpy(pos_masks + k * s * s, tt->roi_masks + i * s * s,
                       sizeof(float) * (size_t)(s * s));
                k++;
            }
        mask_loss =
            np ? mr_mrcnn_mask_loss(ctx, mr_model_mask_head(ctx, m, p, pos_boxes, pos_image, np),
                                    pos_class, pos_masks, &counts[MR_LOSS_MRCNN_MASK])
               : zero_loss(ctx, "mrcnn_mask_loss");
    } else {
        mask_loss = mr_mrcnn_mask_loss(
            ctx, mr_model_mask_head(ctx, m, p, tt->rois, tt->roi_image, total_rois), tt->roi_class,
            tt->roi_masks, &counts[MR_LOSS_MRCNN_MASK]);
    }
    terms[MR_LOSS_RPN_CLASS] =
        mr_rpn_class_loss(ctx, rpn_logits, tt->match, &counts[MR_LOSS_RPN_CLASS]);
    terms[MR_LOSS_RPN_BBOX] =
        mr_rpn_bbox_loss(ctx, rpn_deltas, tt->match, tt->rpn_bbox, tt->rpn_targets_per_image,
                         &counts[MR_LOSS_RPN_BBOX]);
    terms[MR_LOSS_MRCNN_CLASS] = mr_mrcnn_class_loss(
        ctx, class_logits, tt->roi_class, active_class_ids, &counts[MR_LOSS_MRCNN_CLASS]);
    terms[MR_LOSS_MRCNN_BBOX] =
        mr_mrcnn_bbox_loss(ctx, deltas, tt->roi_class, tt->roi_deltas, &counts[MR_LOSS_MRCNN_BBOX]);
    terms[MR_LOSS_MRCNN_MASK] = mask_loss;
    for (int i = 0; i < MR_LOSS_COUNT; i++)
        if (!terms[i]) return ctx->status != MR_OK ? ctx->status : MR_ERR_NOMEM;
    return MR_OK;
}

/* sum over the terms of LOSS_WEIGHTS[i] * share[i] * terms[i]; each weighted term is added to
 * values->value[i] and the sum to values->total. */
static mr_tensor *weighted_total(mr_ctx *ctx, const mr_net_config *cfg,
                                 mr_tensor *const terms[MR_LOSS_COUNT],
                                 const float share[MR_LOSS_COUNT], mr_loss_values *values) {
    mr_tensor *total = NULL;
    for (int i = 0; i < MR_LOSS_COUNT; i++) {
        mr_tensor *weighted = terms[i];
        const float scale = cfg->loss_weights[i] * share[i];
        if (scale != 1.0f) {
            /* Scaling by a constant is a 1x1 linear layer with a fixed weight. */
            mr_tensor *w = mr_tensor_2d(ctx, "loss_weight", 1, 1);
            if (!w) return NULL;
            w->data[0] = scale;
            int64_t one[2] = {1, 1}, scalar[1] = {1};
            weighted = mr_reshape(ctx, mr_linear(ctx, mr_reshape(ctx, terms[i], 2, one), w, NULL),
                                  1, scalar);
        }
        if (!weighted) return NULL;
        values->value[i] += weighted->data[0];
        total = total ? mr_add(ctx, total, weighted) : weighted;
    }
    if (total) values->total += total->data[0];
    return total;
}

mr_tensor *mr_losses_from_targets(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                                  mr_tensor *rpn_logits, mr_tensor *rpn_deltas,
                                  const mr_train_targets *tt, const float *active_class_ids,
                                  mr_loss_values *values) {
    memset(values, 0, sizeof *values);
    mr_tensor *terms[MR_LOSS_COUNT];
    double counts[MR_LOSS_COUNT];
    if (loss_terms(ctx, m, p, rpn_logits, rpn_deltas, tt, active_class_ids, terms, counts,
                   values) != MR_OK)
        return NULL;
    float whole[MR_LOSS_COUNT];
    for (int i = 0; i < MR_LOSS_COUNT; i++) whole[i] = 1.0f;
    return weighted_total(ctx, &m->cfg, terms, whole, values);
}

mr_tensor *mr_training_losses(mr_ctx *ctx, const mr_model *m, mr_tensor *images,
                              const mr_instances *gt, const float *active_class_ids, mr_rng *rng,
                              mr_loss_values *values) {
    memset(values, 0, sizeof *values);
    mr_tensor *p[5];
    if (!images || mr_model_features(ctx, m, images, p) != MR_OK) return NULL;
    mr_tensor *rpn_logits = NULL, *rpn_deltas = NULL;
    if (mr_model_rpn(ctx, m, p, &rpn_logits, &rpn_deltas) != MR_OK) return NULL;
    mr_train_targets tt;
    memset(&tt, 0, sizeof tt);
    mr_status st =
        build_targets(ctx, m, rpn_logits, rpn_deltas, gt, images->shape[0], rng, NULL, &tt);
    if (st != MR_OK) {
        if (ctx->status == MR_OK) ctx->status = st;
        return NULL;
    }
    return mr_losses_from_targets(ctx, m, p, rpn_logits, rpn_deltas, &tt, active_class_ids, values);
}

mr_status mr_training_losses_per_image(mr_ctx *ctx, const mr_model *m, const mr_tensor *images,
                                       const mr_instances *gt, const float *active_class_ids,
                                       const uint64_t *image_seeds, mr_tensor **losses,
                                       int *first_nodes, mr_loss_values *values) {
    memset(values, 0, sizeof *values);
    const int64_t batch = images->shape[0], h = images->shape[1], w = images->shape[2],
                  c = images->shape[3];
    mr_tensor **terms =
        mr_alloc(ctx, sizeof(mr_tensor *) * (size_t)(batch * MR_LOSS_COUNT), "losses");
    double *counts = mr_alloc(ctx, sizeof(double) * (size_t)(batch * MR_LOSS_COUNT), "losses");
    if (!terms || !counts) return ctx->status;
    double all[MR_LOSS_COUNT] = {0};
    for (int64_t b = 0; b < batch; b++) {
        if (first_nodes) first_nodes[b] = ctx->tape.count;
        mr_tensor *image = mr_tensor_4d(ctx, "image", 1, h, w, c);
        if (!image) return ctx->status;
        memcpy(image->data, images->data + b * h * w * c, sizeof(float) * (size_t)(h * w * c));
        mr_tensor *p[5], *rpn_logits = NULL, *rpn_deltas = NULL;
        MR_TRY(mr_model_features(ctx, m, image, p));
        MR_TRY(mr_model_rpn(ctx, m, p, &rpn_logits, &rpn_deltas));
        mr_train_targets tt;
        memset(&tt, 0, sizeof tt);
        mr_status st =
            build_targets(ctx, m, rpn_logits, rpn_deltas, &gt[b], 1, NULL, &image_seeds[b], &tt);
        if (st == MR_OK)
            st = loss_terms(ctx, m, p, rpn_logits, rpn_deltas, &tt, active_class_ids,
                            terms + b * MR_LOSS_COUNT, counts + b * MR_LOSS_COUNT, values);
        if (st != MR_OK) {
            if (ctx->status == MR_OK) ctx->status = st;
            return st;
        }
        for (int i = 0; i < MR_LOSS_COUNT; i++) all[i] += counts[b * MR_LOSS_COUNT + i];
    }
    mr_dist_sum_f64(all, MR_LOSS_COUNT);
    /* Each image's values, then their sums in the tree the gradients follow: one process and N
     * processes report the same bits (train/trainer.c sums the processes' in the same tree). */
    enum { ROW = MR_LOSS_COUNT + 1 };
    float *rows = mr_alloc(ctx, sizeof(float) * (size_t)(batch * ROW), "losses");
    if (!rows) return ctx->status;
    for (int64_t b = 0; b < batch; b++) {
        float share[MR_LOSS_COUNT];
        for (int i = 0; i < MR_LOSS_COUNT; i++)
            share[i] = all[i] > 0.0 ? (float)(counts[b * MR_LOSS_COUNT + i] / all[i]) : 0.0f;
        mr_loss_values image = {0};
        losses[b] = weighted_total(ctx, &m->cfg, terms + b * MR_LOSS_COUNT, share, &image);
        if (!losses[b]) return ctx->status != MR_OK ? ctx->status : MR_ERR_NOMEM;
        memcpy(rows + b * ROW, image.value, sizeof image.value);
        rows[b * ROW + MR_LOSS_COUNT] = image.total;
    }
    float sums[ROW] = {0};
    if (batch > 0) mr_tree_sum_f32(sums, rows, (int)batch, ROW);
    memcpy(values->value, sums, sizeof values->value);
    values->total = sums[MR_LOSS_COUNT];
    return MR_OK;
}

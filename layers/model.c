/* The model: config defaults, init (the network table of layers/network.c, its handles, the
 * anchors), freezing and the summary from the table, the forward helpers backbones share
 * (layers/network.h), and the forward pass (the backbone's, then FPN, RPN and heads) through the
 * handles resolved at init: no name is looked up per step. */
#include "network.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ops.h"
#include "../core/profile.h"
#include "boxes.h"

void mr_net_config_defaults(mr_net_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->backbone_name, sizeof c->backbone_name, "resnet101");
    c->num_classes = 2;
    c->image_min_dim = 800;
    c->image_max_dim = 1024;
    c->image_channels = 3;
    c->mean_pixel[0] = 123.7f;
    c->mean_pixel[1] = 116.8f;
    c->mean_pixel[2] = 103.9f;
    c->image_normalization = MR_NORM_MEAN;
    /* torchvision's ImageNet std (0.229, 0.224, 0.225) in 8-bit pixel units. */
    c->pixel_std[0] = 58.395f;
    c->pixel_std[1] = 57.12f;
    c->pixel_std[2] = 57.375f;
    c->backbone_filters = 64;
    c->resnet_stride = MR_STRIDE_1X1;
    c->rpn_depth = 512;
    c->pyramid_size = 256;
    c->fc_size = 1024;
    c->pool_size = 7;
    c->mask_pool_size = 14;
    c->mask_shape = 28;
    const int strides[5] = {4, 8, 16, 32, 64};
    memcpy(c->strides, strides, sizeof strides);
    const float scales[5] = {32, 64, 128, 256, 512};
    memcpy(c->anchor_scales, scales, sizeof scales);
    c->n_anchor_scales = 5;
    c->anchor_scales_per_level = true;
    const float ratios[3] = {0.5f, 1.0f, 2.0f};
    memcpy(c->anchor_ratios, ratios, sizeof ratios);
    c->n_anchor_ratios = 3;
    c->anchor_stride = 1;
    const float std[4] = {0.1f, 0.1f, 0.2f, 0.2f};
    memcpy(c->rpn_bbox_std, std, sizeof std);
    memcpy(c->bbox_std, std, sizeof std);
    c->rpn_train_anchors = 256;
    c->pre_nms_limit = 6000;
    c->post_nms_rois_training = 2000;
    c->post_nms_rois_inference = 1000;
    c->proposals_per_level = false;
    c->rpn_nms_threshold = 0.7f;
    c->train_rois_per_image = 200;
    c->roi_positive_ratio = 0.33f;
    c->roi_sampling = MR_ROI_SAMPLING_PROPORTIONAL;
    c->proposals_include_gt = false;
    c->use_mini_mask = true;
    c->mini_mask_shape = 56;
    c->max_gt_instances = 100;
    c->detection_max_instances = 100;
    c->detection_min_confidence = 0.7f;
    c->detection_nms_threshold = 0.3f;
    c->detection_candidates = MR_DETECT_TOP_CLASS;
    c->detection_nms = MR_NMS_PER_CLASS;
    for (int i = 0; i < MR_LOSS_COUNT; i++) c->loss_weights[i] = 1.0f;
    c->weight_decay = 1e-4f;
    c->roi_align_mode = MR_ROI_CROP_AND_RESIZE;
    c->train_bn = false;
    c->bn_eps = 1e-3f;
}

const float *mr_net_pixel_std(const mr_net_config *c) {
    return c->image_normalization == MR_NORM_MEAN_STD ? c->pixel_std : NULL;
}

mr_anchor_config mr_net_anchor_config(const mr_net_config *c) {
    mr_anchor_config a = {.n_levels = 5,
                          .strides = c->strides,
                          .n_scales = c->n_anchor_scales,
                          .scales = c->anchor_scales,
                          .scales_per_level = c->anchor_scales_per_level,
                          .n_ratios = c->n_anchor_ratios,
                          .ratios = c->anchor_ratios,
                          .anchor_stride = c->anchor_stride};
    return a;
}

static mr_status check_config(const mr_net_config *c) {
    if (!mr_net_backbone(c)) return MR_ERR_CONFIG;
    if (c->image_max_dim % 64 != 0 || c->image_max_dim < 64)
        return mr_fail(MR_ERR_CONFIG,
                       "IMAGE_MAX_DIM %d must be a positive multiple of 64 (the "
                       "FPN halves the image 6 times)",
                       c->image_max_dim);
    if (c->num_classes < 2 || c->num_classes > MR_MAX_CLASSES)
        return mr_fail(MR_ERR_CONFIG, "NUM_CLASSES %d must be 2..%d (background included)",
                       c->num_classes, MR_MAX_CLASSES);
    if (c->backbone_filters < 1 || c->backbone_filters > 64 || c->rpn_depth < 1 ||
        c->pyramid_size < 1 || c->fc_size < 1)
        return mr_fail(MR_ERR_CONFIG,
                       "layer widths must be positive (BACKBONE_FILTERS at most 64)");
    if (c->image_channels != 1 && c->image_channels != 3)
        return mr_fail(MR_ERR_CONFIG, "IMAGE_CHANNEL_COUNT %d must be 1 or 3", c->image_channels);
    if (c->mask_shape != c->mask_pool_size && c->mask_shape != 2 * c->mask_pool_size)
        return mr_fail(MR_ERR_CONFIG,
                       "MASK_SHAPE %d must equal MASK_POOL_SIZE %d (no deconv) or "
                       "twice it",
                       c->mask_shape, c->mask_pool_size);
    mr_anchor_config a = mr_net_anchor_config(c);
    return mr_anchor_config_check(&a);
}

mr_status mr_model_init(mr_model *m, const mr_net_config *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    mr_params_init(&m->params);
    MR_TRY(check_config(&m->cfg));
    mr_anchor_config a = mr_net_anchor_config(&m->cfg);
    m->anchors_per_location = mr_anchors_per_location(&a);
    mr_status st = mr_network_declare(m);
    if (st == MR_OK) st = mr_params_finalize(&m->params);
    if (st == MR_OK) mr_network_resolve(m);
    if (st == MR_OK)
        st = mr_generate_anchors(&a, m->cfg.image_max_dim, m->cfg.image_max_dim, &m->anchors_px,
                                 &m->n_anchors);
    if (st == MR_OK) {
        m->anchors = malloc(sizeof(float) * 4 * (size_t)m->n_anchors);
        if (!m->anchors)
            st = mr_fail(MR_ERR_NOMEM, "no memory for %lld anchors", (long long)m->n_anchors);
        else
            mr_norm_boxes(m->anchors, m->anchors_px, m->n_anchors, m->cfg.image_max_dim,
                          m->cfg.image_max_dim);
    }
    for (int l = 0; l < 5 && st == MR_OK; l++)
        m->level_anchors[l] =
            mr_anchor_level_count(&a, l, m->cfg.image_max_dim, m->cfg.image_max_dim);
    if (st == MR_OK) st = mr_model_set_trainable(m, "all", NULL);
    if (st != MR_OK) mr_model_free(m);
    return st;
}

mr_proposal_config mr_model_proposal_config(const mr_model *m, bool training) {
    const mr_net_config *c = &m->cfg;
    mr_proposal_config p = mr_proposal_config_matterport(training);
    p.pre_nms_limit = c->pre_nms_limit;
    p.proposal_count = training ? c->post_nms_rois_training : c->post_nms_rois_inference;
    p.nms_threshold = c->rpn_nms_threshold;
    memcpy(p.bbox_std, c->rpn_bbox_std, sizeof p.bbox_std);
    if (c->proposals_per_level) {
        p.n_levels = 5;
        p.level_counts = m->level_anchors;
    }
    return p;
}

void mr_model_free(mr_model *m) {
    mr_params_free(&m->params);
    free(m->layers);
    free(m->backbone_w);
    free(m->anchors);
    free(m->anchors_px);
    memset(m, 0, sizeof *m);
}

/* Freezes every layer before `stage` (1..MR_STAGE_HEADS), unfreezes the rest (moving statistics
 * stay frozen). Returns how many parameters became trainable. */
static void train_from_stage(mr_model *m, int stage, int *n_trainable) {
    int count = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const mr_layer *l = &m->layers[i];
        for (int k = 0; k < l->n_params; k++) {
            mr_param *q = &m->params.items[l->param[k]];
            mr_params_set_frozen(&m->params, q, l->stage < stage);
            if (!q->frozen) count++;
        }
    }
    if (n_trainable) *n_trainable = count;
}

mr_status mr_model_set_trainable(mr_model *m, const char *layers, int *n_trainable) {
    /* Matterport's presets (model.train): "heads" is the FPN, the RPN and the heads, "N+"
     * stage N of ResNet and everything after it. */
    static const struct {
        const char *key;
        int stage;
    } presets[] = {{"heads", MR_STAGE_HEADS}, {"3+", 3}, {"4+", 4}, {"5+", 5}, {"all", 1}};
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(layers, presets[i].key)) {
            train_from_stage(m, presets[i].stage, n_trainable);
            return MR_OK;
        }
    /* Anything else is a regex of layer names, as in Matterport. */
    return mr_params_set_trainable(&m->params, layers, n_trainable);
}

void mr_model_print_summary(const mr_model *m, FILE *out) {
    fprintf(out, "%-24s %-10s %-20s %12s %9s\n", "layer", "kind", "output", "params", "GFLOPs");
    int64_t total = 0, moving = 0;
    double gflops = 0.0;
    for (int i = 0; i < m->n_layers; i++) {
        const mr_layer *l = &m->layers[i];
        char shape[48];
        int n = snprintf(shape, sizeof shape, "(");
        for (int k = 0; k < l->ndim; k++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, k ? ",%lld" : "%lld",
                          (long long)l->shape[k]);
        snprintf(shape + n, sizeof shape - (size_t)n, ")");
        fprintf(out, "%-24s %-10s %-20s %12lld %9.3f\n", l->name, mr_layer_kind_name(l->kind),
                shape, (long long)l->params, l->gflops);
        total += l->params;
        gflops += l->gflops;
        if (l->kind == MR_LAYER_BN) moving += l->params / 2;
    }
    fprintf(out,
            "total params: %lld (trainable %lld, non-trainable %lld: batch-norm moving "
            "statistics)\n",
            (long long)total, (long long)(total - moving), (long long)moving);
    fprintf(out,
            "GFLOPs per %dx%d image at inference: %.1f (heads on %d proposals and %d "
            "detections)\n",
            m->cfg.image_max_dim, m->cfg.image_max_dim, gflops, m->cfg.post_nms_rois_inference,
            m->cfg.detection_max_instances);
}

/* ---- forward ------------------------------------------------------------------------------ */

mr_tensor *mr_net_conv(mr_ctx *ctx, mr_tensor *x, const mr_conv_w *w, int stride, int pad) {
    return mr_conv2d(ctx, x, w->kernel, w->bias, stride, pad);
}

mr_tensor *mr_net_conv_relu(mr_ctx *ctx, mr_tensor *x, const mr_conv_w *w, int stride, int pad) {
    return mr_conv2d_relu(ctx, x, w->kernel, w->bias, stride, pad);
}

static bool bn_uses_batch_statistics(const mr_ctx *ctx, const mr_model *m) {
    return m->cfg.train_bn && ctx->recording;
}

mr_tensor *mr_net_bn(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const mr_bn_w *w) {
    if (bn_uses_batch_statistics(ctx, m))
        return mr_batchnorm_batch(ctx, x, w->gamma, w->beta, w->mean, w->var, m->cfg.bn_eps, 0.99f,
                                  true);
    return mr_batchnorm_frozen(ctx, x, w->gamma, w->beta, w->mean, w->var, m->cfg.bn_eps);
}

/* A convolution and its batch norm. A frozen BN is folded into the convolution, which saves a
 * pass over the activations and the memory of one of the two tensors. */
mr_tensor *mr_net_conv_bn(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const mr_conv_bn_w *w,
                          int stride, int pad) {
    if (bn_uses_batch_statistics(ctx, m))
        return mr_net_bn(ctx, m, mr_net_conv(ctx, x, &w->conv, stride, pad), &w->bn);
    return mr_conv2d_bn(ctx, x, w->conv.kernel, w->conv.bias, stride, pad, w->bn.gamma, w->bn.beta,
                        w->bn.mean, w->bn.var, m->cfg.bn_eps);
}

mr_tensor *mr_net_conv_bn_relu(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const mr_conv_bn_w *w,
                               int stride, int pad) {
    if (bn_uses_batch_statistics(ctx, m))
        return mr_relu_inplace(ctx, mr_net_conv_bn(ctx, m, x, w, stride, pad));
    return mr_conv2d_bn_relu(ctx, x, w->conv.kernel, w->conv.bias, stride, pad, w->bn.gamma,
                             w->bn.beta, w->bn.mean, w->bn.var, m->cfg.bn_eps);
}

bool mr_net_stage_records_nothing(const mr_ctx *ctx, const mr_model *m, int stage,
                                  const mr_tensor *input) {
    if (ctx->recording && input->requires_grad) return false;
    if (!ctx->recording) return true;
    for (int i = 0; i < m->n_layers; i++) {
        const mr_layer *l = &m->layers[i];
        if (l->stage != stage) continue;
        for (int k = 0; k < l->n_params; k++)
            if (!m->params.items[l->param[k]].frozen) return false;
    }
    return true;
}

mr_status mr_model_features(mr_ctx *ctx, const mr_model *m, mr_tensor *images, mr_tensor *p[5]) {
    const mr_net_weights *w = &m->w;
    mr_tensor *c[4] = {NULL, NULL, NULL, NULL};
    mr_profile_enter(MR_GROUP_BACKBONE);
    if (m->backbone->forward(ctx, m, m->backbone_w, images, c) != MR_OK) return ctx->status;
    for (int l = 0; l < 4; l++)
        if (!c[l]) return ctx->status;
    /* Top-down: each level adds the x2 upsampled sum from above (before smoothing). */
    mr_profile_enter(MR_GROUP_FPN);
    mr_tensor *sum[4];
    sum[3] = mr_net_conv(ctx, c[3], &w->fpn_lateral[3], 1, MR_PAD_VALID);
    for (int l = 2; l >= 0; l--)
        sum[l] = mr_upsample2x_add(ctx, sum[l + 1],
                                   mr_net_conv(ctx, c[l], &w->fpn_lateral[l], 1, MR_PAD_VALID));
    for (int l = 0; l < 4; l++) p[l] = mr_net_conv(ctx, sum[l], &w->fpn_smooth[l], 1, MR_PAD_SAME);
    p[4] = mr_maxpool(ctx, p[3], 1, 2, MR_PAD_VALID); /* P6: every other pixel of P5 */
    return ctx->status;
}

mr_status mr_model_rpn(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                       mr_tensor **class_logits, mr_tensor **deltas) {
    const mr_net_weights *w = &m->w;
    mr_tensor *logits[5], *boxes[5];
    int64_t a = m->anchors_per_location;
    mr_profile_enter(MR_GROUP_RPN);
    /* In training, the class and box layers run as one product with their kernels side by side,
     * sliced apart after: the 512 channels they share are then read once forward and once
     * backward, and the input gradient is written once (the RPN's P2 at 1024: 35 ms less a step).
     * Inference keeps the two layers, whose kernels a context may keep (core/tensor.h). */
    mr_tensor *heads_kernel = NULL, *heads_bias = NULL;
    if (ctx->recording && w->rpn_class.bias && w->rpn_bbox.bias) {
        mr_tensor *k[2] = {w->rpn_class.kernel, w->rpn_bbox.kernel};
        mr_tensor *b[2] = {w->rpn_class.bias, w->rpn_bbox.bias};
        heads_kernel = mr_concat(ctx, k, 2, 3);
        heads_bias = mr_concat(ctx, b, 2, 0);
        if (!heads_kernel || !heads_bias) return ctx->status;
    }
    for (int l = 0; l < 5; l++) {
        mr_tensor *shared =
            mr_net_conv_relu(ctx, p[l], &w->rpn_shared, m->cfg.anchor_stride, MR_PAD_SAME);
        mr_tensor *cls, *box;
        if (heads_kernel) {
            mr_tensor *both = mr_conv2d(ctx, shared, heads_kernel, heads_bias, 1, MR_PAD_VALID);
            cls = mr_slice(ctx, both, 3, 0, 2 * a);
            box = mr_slice(ctx, both, 3, 2 * a, 4 * a);
        } else {
            cls = mr_net_conv(ctx, shared, &w->rpn_class, 1, MR_PAD_VALID);
            box = mr_net_conv(ctx, shared, &w->rpn_bbox, 1, MR_PAD_VALID);
        }
        if (!cls || !box) return ctx->status;
        /* (B, h, w, A*2) flattens to (B, h*w*A, 2): order y, x, anchor, as the anchors. */
        int64_t b = cls->shape[0], n = cls->shape[1] * cls->shape[2] * a;
        int64_t s2[3] = {b, n, 2}, s4[3] = {b, n, 4};
        logits[l] = mr_reshape(ctx, cls, 3, s2);
        boxes[l] = mr_reshape(ctx, box, 3, s4);
    }
    /* Levels P2..P6 in order, as Matterport's KL.Concatenate(axis=1). */
    *class_logits = mr_concat(ctx, logits, 5, 1);
    *deltas = mr_concat(ctx, boxes, 5, 1);
    return ctx->status;
}

mr_status mr_model_box_head(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                            const float *rois, const int32_t *batch_index, int64_t n,
                            mr_tensor **class_logits, mr_tensor **deltas) {
    const mr_net_config *c = &m->cfg;
    const mr_net_weights *w = &m->w;
    mr_profile_enter(MR_GROUP_ROI_ALIGN);
    mr_tensor *x = mr_roi_align(ctx, p, rois, batch_index, n, c->pool_size, c->image_max_dim,
                                c->image_max_dim, c->roi_align_mode);
    mr_profile_enter(MR_GROUP_HEADS);
    /* mrcnn_class_conv1 is a pool x pool valid conv: one output pixel per ROI. These two layers
     * keep their BN separate: their kernels outweigh their activations, so folding would cost
     * more memory than it saves. */
    for (int i = 0; i < 2; i++)
        x = mr_relu_inplace(
            ctx, mr_net_bn(ctx, m, mr_net_conv(ctx, x, &w->class_conv[i].conv, 1, MR_PAD_VALID),
                           &w->class_conv[i].bn));
    int64_t flat[2] = {n, c->fc_size};
    mr_tensor *shared = mr_reshape(ctx, x, 2, flat);
    *class_logits = mr_linear(ctx, shared, w->class_logits.kernel, w->class_logits.bias);
    *deltas = mr_linear(ctx, shared, w->bbox_fc.kernel, w->bbox_fc.bias);
    return ctx->status;
}

mr_tensor *mr_model_mask_head(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                              const float *rois, const int32_t *batch_index, int64_t n) {
    const mr_net_config *c = &m->cfg;
    const mr_net_weights *w = &m->w;
    mr_profile_enter(MR_GROUP_ROI_ALIGN);
    mr_tensor *x = mr_roi_align(ctx, p, rois, batch_index, n, c->mask_pool_size, c->image_max_dim,
                                c->image_max_dim, c->roi_align_mode);
    mr_profile_enter(MR_GROUP_HEADS);
    for (int i = 0; i < 4; i++)
        x = mr_net_conv_bn_relu(ctx, m, x, &w->mask_conv[i], 1, MR_PAD_SAME);
    if (w->mask_deconv.layer >= 0)
        x = mr_deconv2x2_relu(ctx, x, w->mask_deconv.kernel, w->mask_deconv.bias);
    return mr_net_conv(ctx, x, &w->mask, 1, MR_PAD_VALID);
}

/* Building the network: parameter declaration under Matterport's layer names (with the model
 * summary computed on the way), and the forward pass of the backbone, FPN, RPN and heads. The
 * declaration walk and the forward walk mirror each other block for block. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ops.h"
#include "boxes.h"

void mr_net_config_defaults(mr_net_config *c) {
    memset(c, 0, sizeof *c);
    c->backbone_depth = 101;
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
    for (int i = 0; i < 5; i++) c->loss_weights[i] = 1.0f;
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

/* ---- declaration and summary -------------------------------------------------------------- */

/* The declaration walk: the current spatial size and channels of the main path. */
typedef struct {
    mr_model *m;
    mr_status status;
    int64_t h, w, c;
} builder;

static void add_row(builder *b, const char *name, const char *kind, int ndim, const int64_t *shape,
                    int64_t params, double gflops) {
    mr_model *m = b->m;
    if (m->n_layers == m->cap_layers) {
        int cap = m->cap_layers ? 2 * m->cap_layers : 256;
        mr_layer_info *grown = realloc(m->layers, sizeof *grown * (size_t)cap);
        if (!grown) {
            b->status = mr_fail(MR_ERR_NOMEM, "cannot grow the layer table");
            return;
        }
        m->layers = grown;
        m->cap_layers = cap;
    }
    mr_layer_info *row = &m->layers[m->n_layers++];
    memset(row, 0, sizeof *row);
    snprintf(row->name, sizeof row->name, "%s", name);
    snprintf(row->kind, sizeof row->kind, "%s", kind);
    row->ndim = ndim;
    for (int i = 0; i < ndim; i++) row->shape[i] = shape[i];
    row->params = params;
    row->gflops = gflops;
}

static void declare(builder *b, const char *layer, const char *weight, int ndim,
                    const int64_t *shape, bool trainable) {
    if (b->status != MR_OK) return;
    char name[MR_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s/%s", layer, weight);
    if (mr_params_add(&b->m->params, name, ndim, shape, trainable) < 0) b->status = MR_ERR_NOMEM;
}

static int64_t same_size(int64_t in, int stride) {
    return (in + stride - 1) / stride;
}

/* A conv layer on a (h, w, cin) input; `rois` multiplies the FLOPs of per-ROI head layers. */
static void decl_conv_at(builder *b, const char *name, int64_t k, int64_t cin, int64_t cout,
                         int64_t oh, int64_t ow, double rois) {
    int64_t kernel[4] = {k, k, cin, cout}, bias[1] = {cout}, out[3] = {oh, ow, cout};
    declare(b, name, "kernel", 4, kernel, true);
    declare(b, name, "bias", 1, bias, true);
    add_row(b, name, "conv", 3, out, k * k * cin * cout + cout,
            rois * 2.0 * (double)(oh * ow) * (double)(k * k * cin * cout) * 1e-9);
}

static void decl_bn(builder *b, const char *name, int64_t c, int64_t oh, int64_t ow, double rois) {
    int64_t shape[1] = {c}, out[3] = {oh, ow, c};
    declare(b, name, "gamma", 1, shape, true);
    declare(b, name, "beta", 1, shape, true);
    declare(b, name, "moving_mean", 1, shape, false);
    declare(b, name, "moving_variance", 1, shape, false);
    add_row(b, name, "batchnorm", 3, out, 4 * c, rois * 2.0 * (double)(oh * ow * c) * 1e-9);
}

static void decl_dense(builder *b, const char *name, int64_t in, int64_t out, double rois) {
    int64_t kernel[2] = {in, out}, bias[1] = {out}, shape[1] = {out};
    declare(b, name, "kernel", 2, kernel, true);
    declare(b, name, "bias", 1, bias, true);
    add_row(b, name, "dense", 1, shape, in * out + out, rois * 2.0 * (double)(in * out) * 1e-9);
}

static void block_names(char *conv, char *bn, size_t size, int stage, char block, const char *br) {
    snprintf(conv, size, "res%d%c_branch%s", stage, block, br);
    snprintf(bn, size, "bn%d%c_branch%s", stage, block, br);
}

static void decl_bottleneck(builder *b, int stage, char block, int64_t f1, int64_t f3, int stride,
                            bool projection) {
    char conv[48], bn[48];
    int64_t cin = b->c, oh = same_size(b->h, stride), ow = same_size(b->w, stride);
    /* With the stride on the 3x3, branch2a still runs at the input's resolution. */
    bool late = b->m->cfg.resnet_stride == MR_STRIDE_3X3;
    int64_t ah = late ? b->h : oh, aw = late ? b->w : ow;
    block_names(conv, bn, sizeof conv, stage, block, "2a");
    decl_conv_at(b, conv, 1, cin, f1, ah, aw, 1.0);
    decl_bn(b, bn, f1, ah, aw, 1.0);
    block_names(conv, bn, sizeof conv, stage, block, "2b");
    decl_conv_at(b, conv, 3, f1, f1, oh, ow, 1.0);
    decl_bn(b, bn, f1, oh, ow, 1.0);
    block_names(conv, bn, sizeof conv, stage, block, "2c");
    decl_conv_at(b, conv, 1, f1, f3, oh, ow, 1.0);
    decl_bn(b, bn, f3, oh, ow, 1.0);
    if (projection) {
        block_names(conv, bn, sizeof conv, stage, block, "1");
        decl_conv_at(b, conv, 1, cin, f3, oh, ow, 1.0);
        decl_bn(b, bn, f3, oh, ow, 1.0);
    }
    b->h = oh;
    b->w = ow;
    b->c = f3;
}

static int stage_blocks(int depth, int stage) {
    static const int r50[4] = {3, 4, 6, 3}, r101[4] = {3, 4, 23, 3};
    /* Indexed per branch: GCC 12's -fsanitize=object-size misreads (cond ? a : b)[i] as an
     * out-of-bounds load, failing every model test under `make test-asan`. */
    return depth == 50 ? r50[stage - 2] : r101[stage - 2];
}

static mr_status declare_network(mr_model *m) {
    const mr_net_config *c = &m->cfg;
    builder b = {m, MR_OK, c->image_max_dim, c->image_max_dim, c->image_channels};
    /* Stem: 3-pixel zero pad, conv1 7x7/2 valid, bn_conv1, ReLU, 3x3/2 max-pool same. */
    b.h = (b.h + 6 - 7) / 2 + 1;
    b.w = (b.w + 6 - 7) / 2 + 1;
    int64_t base = c->backbone_filters;
    decl_conv_at(&b, "conv1", 7, c->image_channels, base, b.h, b.w, 1.0);
    decl_bn(&b, "bn_conv1", base, b.h, b.w, 1.0);
    b.h = same_size(b.h, 2);
    b.w = same_size(b.w, 2);
    b.c = base;
    int64_t feat_h[5], feat_w[5], feat_c[4];
    for (int stage = 2; stage <= 5; stage++) {
        int64_t f1 = base << (stage - 2);
        for (int k = 0; k < stage_blocks(c->backbone_depth, stage); k++)
            decl_bottleneck(&b, stage, (char)('a' + k), f1, 4 * f1, k == 0 && stage > 2 ? 2 : 1,
                            k == 0);
        feat_h[stage - 2] = b.h;
        feat_w[stage - 2] = b.w;
        feat_c[stage - 2] = b.c;
    }
    feat_h[4] = same_size(feat_h[3], 2);
    feat_w[4] = same_size(feat_w[3], 2);
    /* FPN: laterals top-down, then the 3x3 smoothing convs. */
    int64_t d = c->pyramid_size;
    static const char *lateral[4] = {"fpn_c2p2", "fpn_c3p3", "fpn_c4p4", "fpn_c5p5"};
    static const char *smooth[4] = {"fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"};
    for (int l = 3; l >= 0; l--)
        decl_conv_at(&b, lateral[l], 1, feat_c[l], d, feat_h[l], feat_w[l], 1.0);
    for (int l = 0; l < 4; l++) decl_conv_at(&b, smooth[l], 3, d, d, feat_h[l], feat_w[l], 1.0);
    /* RPN, shared over P2..P6: FLOPs summed over the five levels. */
    int64_t a = m->anchors_per_location;
    double positions = 0.0;
    for (int l = 0; l < 5; l++) positions += (double)(feat_h[l] * feat_w[l]);
    double per_pos = 1.0 / (double)(feat_h[0] * feat_w[0]);
    int64_t r = c->rpn_depth;
    decl_conv_at(&b, "rpn_conv_shared", 3, d, r, feat_h[0], feat_w[0], positions * per_pos);
    decl_conv_at(&b, "rpn_class_raw", 1, r, 2 * a, feat_h[0], feat_w[0], positions * per_pos);
    decl_conv_at(&b, "rpn_bbox_pred", 1, r, 4 * a, feat_h[0], feat_w[0], positions * per_pos);
    /* Heads, FLOPs at inference: the box head on every proposal, the mask head on every
     * detection. */
    double rois = (double)c->post_nms_rois_inference, dets = (double)c->detection_max_instances;
    int64_t fc = c->fc_size, nc = c->num_classes;
    decl_conv_at(&b, "mrcnn_class_conv1", c->pool_size, d, fc, 1, 1, rois);
    decl_bn(&b, "mrcnn_class_bn1", fc, 1, 1, rois);
    decl_conv_at(&b, "mrcnn_class_conv2", 1, fc, fc, 1, 1, rois);
    decl_bn(&b, "mrcnn_class_bn2", fc, 1, 1, rois);
    decl_dense(&b, "mrcnn_class_logits", fc, nc, rois);
    decl_dense(&b, "mrcnn_bbox_fc", fc, 4 * nc, rois);
    int64_t mp = c->mask_pool_size;
    for (int i = 1; i <= 4; i++) {
        char conv[32], bn[32];
        snprintf(conv, sizeof conv, "mrcnn_mask_conv%d", i);
        snprintf(bn, sizeof bn, "mrcnn_mask_bn%d", i);
        decl_conv_at(&b, conv, 3, d, d, mp, mp, dets);
        decl_bn(&b, bn, d, mp, mp, dets);
    }
    int64_t ms = mp;
    if (c->mask_shape == 2 * mp) {
        /* Conv2DTranspose kernels are (kh, kw, out, in) in Keras. */
        int64_t kernel[4] = {2, 2, d, d}, bias[1] = {d}, out[3] = {2 * mp, 2 * mp, d};
        declare(&b, "mrcnn_mask_deconv", "kernel", 4, kernel, true);
        declare(&b, "mrcnn_mask_deconv", "bias", 1, bias, true);
        add_row(&b, "mrcnn_mask_deconv", "deconv", 3, out, 4 * d * d + d,
                dets * 2.0 * (double)(mp * mp * 4 * d * d) * 1e-9);
        ms = 2 * mp;
    }
    decl_conv_at(&b, "mrcnn_mask", 1, d, nc, ms, ms, dets);
    return b.status;
}

static mr_status check_config(const mr_net_config *c) {
    if (c->backbone_depth != 50 && c->backbone_depth != 101)
        return mr_fail(MR_ERR_CONFIG, "BACKBONE must be resnet50 or resnet101");
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
    mr_status st = declare_network(m);
    if (st == MR_OK) st = mr_params_finalize(&m->params);
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
    free(m->anchors);
    free(m->anchors_px);
    memset(m, 0, sizeof *m);
}

mr_status mr_model_set_trainable(mr_model *m, const char *layers, int *n_trainable) {
    /* Matterport's presets (model.train), written as POSIX extended regexes. */
    static const struct {
        const char *key, *regex;
    } presets[] = {
        {"heads", "(mrcnn_.*)|(rpn_.*)|(fpn_.*)"},
        {"3+", "(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn_.*)|(rpn_.*)|(fpn_.*)"},
        {"4+", "(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn_.*)|(rpn_.*)|(fpn_.*)"},
        {"5+", "(res5.*)|(bn5.*)|(mrcnn_.*)|(rpn_.*)|(fpn_.*)"},
        {"all", ".*"},
    };
    const char *regex = layers;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(layers, presets[i].key)) regex = presets[i].regex;
    return mr_params_set_trainable(&m->params, regex, n_trainable);
}

void mr_model_print_summary(const mr_model *m, FILE *out) {
    fprintf(out, "%-24s %-10s %-20s %12s %9s\n", "layer", "kind", "output", "params", "GFLOPs");
    int64_t total = 0, moving = 0;
    double gflops = 0.0;
    for (int i = 0; i < m->n_layers; i++) {
        const mr_layer_info *l = &m->layers[i];
        char shape[48];
        int n = snprintf(shape, sizeof shape, "(");
        for (int k = 0; k < l->ndim; k++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, k ? ",%lld" : "%lld",
                          (long long)l->shape[k]);
        snprintf(shape + n, sizeof shape - (size_t)n, ")");
        fprintf(out, "%-24s %-10s %-20s %12lld %9.3f\n", l->name, l->kind, shape,
                (long long)l->params, l->gflops);
        total += l->params;
        gflops += l->gflops;
        if (!strcmp(l->kind, "batchnorm")) moving += l->params / 2;
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

static mr_tensor *P(const mr_model *m, const char *layer, const char *weight) {
    char name[MR_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s/%s", layer, weight);
    return mr_params_tensor((mr_params *)&m->params, name);
}

static mr_tensor *conv(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const char *name, int stride,
                       int pad) {
    return mr_conv2d(ctx, x, P(m, name, "kernel"), P(m, name, "bias"), stride, pad);
}

static bool bn_uses_batch_statistics(const mr_ctx *ctx, const mr_model *m) {
    return m->cfg.train_bn && ctx->recording;
}

static mr_tensor *bn(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const char *name) {
    mr_tensor *gamma = P(m, name, "gamma"), *beta = P(m, name, "beta");
    mr_tensor *mean = P(m, name, "moving_mean"), *var = P(m, name, "moving_variance");
    if (bn_uses_batch_statistics(ctx, m))
        return mr_batchnorm_batch(ctx, x, gamma, beta, mean, var, m->cfg.bn_eps, 0.99f, true);
    return mr_batchnorm_frozen(ctx, x, gamma, beta, mean, var, m->cfg.bn_eps);
}

/* A convolution and its batch norm. A frozen BN is folded into the convolution, which saves a
 * pass over the activations and the memory of one of the two tensors. */
static mr_tensor *conv_bn(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const char *conv_name,
                          const char *bn_name, int stride, int pad) {
    if (bn_uses_batch_statistics(ctx, m))
        return bn(ctx, m, conv(ctx, m, x, conv_name, stride, pad), bn_name);
    return mr_conv2d_bn(ctx, x, P(m, conv_name, "kernel"), P(m, conv_name, "bias"), stride, pad,
                        P(m, bn_name, "gamma"), P(m, bn_name, "beta"), P(m, bn_name, "moving_mean"),
                        P(m, bn_name, "moving_variance"), m->cfg.bn_eps);
}

static mr_tensor *bottleneck(mr_ctx *ctx, const mr_model *m, mr_tensor *x, int stage, char block,
                             int stride, bool projection) {
    char c[48], b[48];
    const bool late = m->cfg.resnet_stride == MR_STRIDE_3X3;
    block_names(c, b, sizeof c, stage, block, "2a");
    mr_tensor *y = mr_relu_inplace(ctx, conv_bn(ctx, m, x, c, b, late ? 1 : stride, MR_PAD_VALID));
    block_names(c, b, sizeof c, stage, block, "2b");
    y = mr_relu_inplace(ctx, conv_bn(ctx, m, y, c, b, late ? stride : 1, MR_PAD_SAME));
    block_names(c, b, sizeof c, stage, block, "2c");
    y = conv_bn(ctx, m, y, c, b, 1, MR_PAD_VALID);
    mr_tensor *shortcut = x;
    if (projection) {
        block_names(c, b, sizeof c, stage, block, "1");
        shortcut = conv_bn(ctx, m, x, c, b, stride, MR_PAD_VALID);
    }
    return mr_add_relu_inplace(ctx, y, shortcut);
}

/* True when a backbone stage (1 = the stem) records nothing: none of its parameters trains and
 * its input needs no gradient. Its temporaries can then live in the scratch arena. */
static bool stage_records_nothing(const mr_ctx *ctx, const mr_model *m, int stage,
                                  const mr_tensor *input) {
    if (ctx->recording && input->requires_grad) return false;
    if (!ctx->recording) return true;
    char conv[8], bnp[8];
    snprintf(conv, sizeof conv, stage == 1 ? "conv1" : "res%d", stage);
    snprintf(bnp, sizeof bnp, stage == 1 ? "bn_conv1" : "bn%d", stage);
    for (int i = 0; i < m->params.count; i++) {
        const mr_param *q = &m->params.items[i];
        if (!q->frozen &&
            (!strncmp(q->name, conv, strlen(conv)) || !strncmp(q->name, bnp, strlen(bnp))))
            return false;
    }
    return true;
}

mr_status mr_model_features(mr_ctx *ctx, const mr_model *m, mr_tensor *images, mr_tensor *p[5]) {
    bool scratch = stage_records_nothing(ctx, m, 1, images);
    if (scratch) mr_scratch_begin(ctx);
    mr_tensor *x = mr_relu_inplace(ctx, conv_bn(ctx, m, images, "conv1", "bn_conv1", 2, 3));
    x = mr_maxpool(ctx, x, 3, 2, MR_PAD_SAME);
    if (scratch) x = mr_scratch_end(ctx, x);
    mr_tensor *c[4];
    for (int stage = 2; stage <= 5 && x; stage++) {
        scratch = stage_records_nothing(ctx, m, stage, x);
        if (scratch) mr_scratch_begin(ctx);
        for (int k = 0; k < stage_blocks(m->cfg.backbone_depth, stage); k++)
            x = bottleneck(ctx, m, x, stage, (char)('a' + k), k == 0 && stage > 2 ? 2 : 1, k == 0);
        if (scratch) x = mr_scratch_end(ctx, x);
        c[stage - 2] = x;
    }
    if (!x) return ctx->status;
    /* Top-down: each level adds the x2 upsampled sum from above (before smoothing). */
    static const char *lateral[4] = {"fpn_c2p2", "fpn_c3p3", "fpn_c4p4", "fpn_c5p5"};
    static const char *smooth[4] = {"fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"};
    mr_tensor *sum[4];
    sum[3] = conv(ctx, m, c[3], lateral[3], 1, MR_PAD_VALID);
    for (int l = 2; l >= 0; l--)
        sum[l] =
            mr_upsample2x_add(ctx, sum[l + 1], conv(ctx, m, c[l], lateral[l], 1, MR_PAD_VALID));
    for (int l = 0; l < 4; l++) p[l] = conv(ctx, m, sum[l], smooth[l], 1, MR_PAD_SAME);
    p[4] = mr_maxpool(ctx, p[3], 1, 2, MR_PAD_VALID); /* P6: every other pixel of P5 */
    return ctx->status;
}

mr_status mr_model_rpn(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                       mr_tensor **class_logits, mr_tensor **deltas) {
    mr_tensor *logits[5], *boxes[5];
    int64_t a = m->anchors_per_location;
    for (int l = 0; l < 5; l++) {
        mr_tensor *shared = mr_relu_inplace(
            ctx, conv(ctx, m, p[l], "rpn_conv_shared", m->cfg.anchor_stride, MR_PAD_SAME));
        mr_tensor *cls = conv(ctx, m, shared, "rpn_class_raw", 1, MR_PAD_VALID);
        mr_tensor *box = conv(ctx, m, shared, "rpn_bbox_pred", 1, MR_PAD_VALID);
        if (!cls || !box) return ctx->status;
        /* (B, h, w, A*2) flattens to (B, h*w*A, 2): order y, x, anchor, as the anchors. */
        int64_t b = cls->shape[0], n = cls->shape[1] * cls->shape[2] * a;
        int64_t s2[3] = {b, n, 2}, s4[3] = {b, n, 4};
        logits[l] = mr_reshape(ctx, cls, 3, s2);
        boxes[l] = mr_reshape(ctx, box, 3, s4);
    }
    /* concat takes at most four inputs: levels 2..5, then P6 on top. */
    mr_tensor *first[2] = {mr_concat(ctx, logits, 4, 1), logits[4]};
    mr_tensor *second[2] = {mr_concat(ctx, boxes, 4, 1), boxes[4]};
    *class_logits = mr_concat(ctx, first, 2, 1);
    *deltas = mr_concat(ctx, second, 2, 1);
    return ctx->status;
}

mr_status mr_model_box_head(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                            const float *rois, const int32_t *batch_index, int64_t n,
                            mr_tensor **class_logits, mr_tensor **deltas) {
    const mr_net_config *c = &m->cfg;
    mr_tensor *x = mr_roi_align(ctx, p, rois, batch_index, n, c->pool_size, c->image_max_dim,
                                c->image_max_dim, c->roi_align_mode);
    /* mrcnn_class_conv1 is a pool x pool valid conv: one output pixel per ROI. These two layers
     * keep their BN separate: their kernels outweigh their activations, so folding would cost
     * more memory than it saves. */
    x = mr_relu_inplace(
        ctx, bn(ctx, m, conv(ctx, m, x, "mrcnn_class_conv1", 1, MR_PAD_VALID), "mrcnn_class_bn1"));
    x = mr_relu_inplace(
        ctx, bn(ctx, m, conv(ctx, m, x, "mrcnn_class_conv2", 1, MR_PAD_VALID), "mrcnn_class_bn2"));
    int64_t flat[2] = {n, c->fc_size};
    mr_tensor *shared = mr_reshape(ctx, x, 2, flat);
    *class_logits = mr_linear(ctx, shared, P(m, "mrcnn_class_logits", "kernel"),
                              P(m, "mrcnn_class_logits", "bias"));
    *deltas =
        mr_linear(ctx, shared, P(m, "mrcnn_bbox_fc", "kernel"), P(m, "mrcnn_bbox_fc", "bias"));
    return ctx->status;
}

mr_tensor *mr_model_mask_head(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                              const float *rois, const int32_t *batch_index, int64_t n) {
    const mr_net_config *c = &m->cfg;
    mr_tensor *x = mr_roi_align(ctx, p, rois, batch_index, n, c->mask_pool_size, c->image_max_dim,
                                c->image_max_dim, c->roi_align_mode);
    for (int i = 1; i <= 4; i++) {
        char cname[32], bname[32];
        snprintf(cname, sizeof cname, "mrcnn_mask_conv%d", i);
        snprintf(bname, sizeof bname, "mrcnn_mask_bn%d", i);
        x = mr_relu_inplace(ctx, conv_bn(ctx, m, x, cname, bname, 1, MR_PAD_SAME));
    }
    if (c->mask_shape == 2 * c->mask_pool_size)
        x = mr_relu_inplace(ctx, mr_deconv2x2(ctx, x, P(m, "mrcnn_mask_deconv", "kernel"),
                                              P(m, "mrcnn_mask_deconv", "bias")));
    return conv(ctx, m, x, "mrcnn_mask", 1, MR_PAD_VALID);
}

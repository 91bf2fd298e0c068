/* The network table: the one place Matterport's network is stated. The declaration walk adds
 * every layer (name, kind, parameters, the batch norm after each conv, stage, Keras group and
 * Keras order, summary numbers) and fills the typed handles the forward pass uses. Everything
 * else (freezing, initialisation, batch-norm folding, the Keras layout, the summary) iterates
 * the table this file builds. */
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* Keras nests the RPN in the model "rpn_model" (Matterport's build_rpn_model). */
static const char *const rpn_group = "rpn_model";
static const char *const rpn_layers[3] = {"rpn_conv_shared", "rpn_class_raw", "rpn_bbox_pred"};

const char *mr_net_keras_group(const char *layer) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(layer, rpn_layers[i])) return rpn_group;
    return layer;
}

const char *mr_layer_kind_name(mr_layer_kind kind) {
    switch (kind) {
    case MR_LAYER_CONV:
        return "conv";
    case MR_LAYER_BN:
        return "batchnorm";
    case MR_LAYER_DENSE:
        return "dense";
    case MR_LAYER_DECONV:
        return "deconv";
    }
    return "?";
}

const char *mr_layer_keras_group(const mr_layer *l) {
    return l->keras_group ? l->keras_group : l->name;
}

/* ---- the declaration walk ---------------------------------------------------------------- */

/* Keras depths (longest path to an output of Matterport's training graph): the heads' values
 * are counted in build_fpn_mask_graph / fpn_classifier_graph below; the RPN sits above every
 * head, the FPN above the RPN, the backbone above the FPN. Only their order matters. */
enum { DEPTH_RPN = 100, DEPTH_BACKBONE_TOP = 1000000 };

typedef struct {
    mr_model *m;
    mr_status status;
    int64_t h, w, c;      /* the main path's spatial size and channels */
    int stage;            /* of the layers added next */
    const char *group;    /* their Keras group, NULL: their own name */
    mr_kaiming_rule rule; /* how their kernels start under WEIGHT_INIT "kaiming" */
    int chain;            /* backbone layers so far: their Keras depth counts down */
} builder;

/* Adds a layer row; returns its table index or -1 (status set). */
static int add_layer(builder *b, const char *name, mr_layer_kind kind, int ndim,
                     const int64_t *shape, int64_t params, double gflops) {
    mr_model *m = b->m;
    if (b->status != MR_OK) return -1;
    if (m->n_layers == m->cap_layers) {
        int cap = m->cap_layers ? 2 * m->cap_layers : 256;
        mr_layer *grown = realloc(m->layers, sizeof *grown * (size_t)cap);
        if (!grown) {
            b->status = mr_fail(MR_ERR_NOMEM, "cannot grow the layer table");
            return -1;
        }
        m->layers = grown;
        m->cap_layers = cap;
    }
    int index = m->n_layers++;
    mr_layer *l = &m->layers[index];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->kind = kind;
    l->stage = b->stage;
    l->keras_group = b->group;
    l->bn = -1;
    l->kaiming = b->rule;
    l->keras_depth = DEPTH_BACKBONE_TOP - b->chain;
    l->keras_visit = index;
    l->ndim = ndim;
    for (int i = 0; i < ndim; i++) l->shape[i] = shape[i];
    l->params = params;
    l->gflops = gflops;
    return index;
}

/* Declares "<layer>/<weight>" and records it in the layer's row. */
static void declare(builder *b, int layer, const char *weight, int ndim, const int64_t *shape,
                    bool trainable) {
    if (b->status != MR_OK) return;
    mr_layer *l = &b->m->layers[layer];
    char name[MR_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s/%s", l->name, weight);
    int index = mr_params_add(&b->m->params, name, ndim, shape, trainable);
    if (index < 0) {
        b->status = MR_ERR_NOMEM;
        return;
    }
    l->param[l->n_params++] = index;
}

static int64_t same_size(int64_t in, int stride) {
    return (in + stride - 1) / stride;
}

/* A conv layer with a (oh, ow, cout) output; `rois` multiplies the FLOPs of per-ROI layers. */
static mr_conv_w decl_conv(builder *b, const char *name, int64_t k, int64_t cin, int64_t cout,
                           int64_t oh, int64_t ow, double rois) {
    int64_t kernel[4] = {k, k, cin, cout}, bias[1] = {cout}, out[3] = {oh, ow, cout};
    mr_conv_w c = {
        .layer = add_layer(b, name, MR_LAYER_CONV, 3, out, k * k * cin * cout + cout,
                           rois * 2.0 * (double)(oh * ow) * (double)(k * k * cin * cout) * 1e-9)};
    declare(b, c.layer, "kernel", 4, kernel, true);
    declare(b, c.layer, "bias", 1, bias, true);
    return c;
}

static mr_bn_w decl_bn(builder *b, const char *name, int64_t c, int64_t oh, int64_t ow,
                       double rois) {
    int64_t shape[1] = {c}, out[3] = {oh, ow, c};
    mr_bn_w n = {.layer = add_layer(b, name, MR_LAYER_BN, 3, out, 4 * c,
                                    rois * 2.0 * (double)(oh * ow * c) * 1e-9)};
    declare(b, n.layer, "gamma", 1, shape, true);
    declare(b, n.layer, "beta", 1, shape, true);
    declare(b, n.layer, "moving_mean", 1, shape, false);
    declare(b, n.layer, "moving_variance", 1, shape, false);
    return n;
}

/* A conv and the batch norm that follows it (folded together by export). In the backbone each
 * is one step further down the chain to the outputs. */
static mr_conv_bn_w decl_conv_bn(builder *b, const char *conv, const char *bn, int64_t k,
                                 int64_t cin, int64_t cout, int64_t oh, int64_t ow, double rois) {
    mr_conv_bn_w cb;
    cb.conv = decl_conv(b, conv, k, cin, cout, oh, ow, rois);
    b->chain++;
    cb.bn = decl_bn(b, bn, cout, oh, ow, rois);
    b->chain++;
    if (b->status == MR_OK) b->m->layers[cb.conv.layer].bn = cb.bn.layer;
    return cb;
}

static mr_conv_w decl_dense(builder *b, const char *name, int64_t in, int64_t out, double rois) {
    int64_t kernel[2] = {in, out}, bias[1] = {out}, shape[1] = {out};
    mr_conv_w d = {.layer = add_layer(b, name, MR_LAYER_DENSE, 1, shape, in * out + out,
                                      rois * 2.0 * (double)(in * out) * 1e-9)};
    declare(b, d.layer, "kernel", 2, kernel, true);
    declare(b, d.layer, "bias", 1, bias, true);
    return d;
}

static void set_keras_depth(builder *b, int layer, int depth) {
    if (b->status == MR_OK) b->m->layers[layer].keras_depth = depth;
}

/* ---- ResNet ------------------------------------------------------------------------------- */

static mr_conv_bn_w decl_branch(builder *b, int stage, char block, const char *branch, int64_t k,
                                int64_t cin, int64_t cout, int64_t oh, int64_t ow) {
    char conv[48], bn[48];
    snprintf(conv, sizeof conv, "res%d%c_branch%s", stage, block, branch);
    snprintf(bn, sizeof bn, "bn%d%c_branch%s", stage, block, branch);
    return decl_conv_bn(b, conv, bn, k, cin, cout, oh, ow, 1.0);
}

/* Matterport's identity_block / conv_block. Keras lists a conv_block's shortcut beside branch2c:
 * res_branch2c, res_branch1 (same depth), then bn_branch2c, bn_branch1. */
static mr_block_w decl_bottleneck(builder *b, int stage, char block, int64_t f1, int64_t f3,
                                  int stride, bool projection) {
    mr_block_w blk = {.stride = stride, .projection = projection};
    int64_t cin = b->c, oh = same_size(b->h, stride), ow = same_size(b->w, stride);
    /* With the stride on the 3x3, branch2a still runs at the input's resolution. */
    bool late = b->m->cfg.resnet_stride == MR_STRIDE_3X3;
    int64_t ah = late ? b->h : oh, aw = late ? b->w : ow;
    blk.branch2a = decl_branch(b, stage, block, "2a", 1, cin, f1, ah, aw);
    b->chain++; /* the ReLU */
    blk.branch2b = decl_branch(b, stage, block, "2b", 3, f1, f1, oh, ow);
    b->chain++;
    int chain_2c = b->chain;
    blk.branch2c = decl_branch(b, stage, block, "2c", 1, f1, f3, oh, ow);
    if (projection) {
        int after = b->chain;
        b->chain = chain_2c;
        blk.branch1 = decl_branch(b, stage, block, "1", 1, cin, f3, oh, ow);
        b->chain = after;
    }
    b->chain += 2; /* the add and its ReLU */
    b->h = oh;
    b->w = ow;
    b->c = f3;
    return blk;
}

static int stage_blocks(int depth, int stage) {
    static const int r50[4] = {3, 4, 6, 3}, r101[4] = {3, 4, 23, 3};
    /* Indexed per branch: GCC 12's -fsanitize=object-size misreads (cond ? a : b)[i] as an
     * out-of-bounds load, failing every model test under `make test-asan`. */
    return depth == 50 ? r50[stage - 2] : r101[stage - 2];
}

/* Stem and stages 2..5; feat_* get C2..C5's sizes. */
static void decl_resnet(builder *b, int64_t feat_h[4], int64_t feat_w[4], int64_t feat_c[4]) {
    const mr_net_config *c = &b->m->cfg;
    mr_net_weights *w = &b->m->w;
    /* Stem: 3-pixel zero pad, conv1 7x7/2 valid, bn_conv1, ReLU, 3x3/2 max-pool same. */
    b->h = (b->h + 6 - 7) / 2 + 1;
    b->w = (b->w + 6 - 7) / 2 + 1;
    int64_t base = c->backbone_filters;
    b->stage = 1;
    b->rule = MR_KAIMING_NORMAL_FAN_OUT;
    w->conv1 = decl_conv_bn(b, "conv1", "bn_conv1", 7, c->image_channels, base, b->h, b->w, 1.0);
    b->chain += 2;
    b->h = same_size(b->h, 2);
    b->w = same_size(b->w, 2);
    b->c = base;
    int total = 0;
    for (int stage = 2; stage <= 5; stage++) total += stage_blocks(c->backbone_depth, stage);
    w->blocks = calloc((size_t)total, sizeof *w->blocks);
    if (!w->blocks) {
        b->status = mr_fail(MR_ERR_NOMEM, "no memory for %d ResNet blocks", total);
        return;
    }
    mr_block_w *blk = w->blocks;
    for (int stage = 2; stage <= 5; stage++) {
        b->stage = stage;
        int64_t f1 = base << (stage - 2);
        w->stage_blocks[stage - 2] = stage_blocks(c->backbone_depth, stage);
        for (int k = 0; k < w->stage_blocks[stage - 2]; k++)
            *blk++ = decl_bottleneck(b, stage, (char)('a' + k), f1, 4 * f1,
                                     k == 0 && stage > 2 ? 2 : 1, k == 0);
        feat_h[stage - 2] = b->h;
        feat_w[stage - 2] = b->w;
        feat_c[stage - 2] = b->c;
    }
}

/* ---- FPN, RPN, heads ---------------------------------------------------------------------- */

/* Laterals top-down, then the 3x3 smoothing convs. Keras depths above the RPN's (counted from
 * fpn_p<N>add and fpn_p<N>upsampled): c5p5 +8, c4p4 +7, c3p3 +5, c2p2 +3, p5 +2 (it also feeds
 * P6), p2..p4 +1. */
static void decl_fpn(builder *b, const int64_t feat_h[4], const int64_t feat_w[4],
                     const int64_t feat_c[4]) {
    static const char *lateral[4] = {"fpn_c2p2", "fpn_c3p3", "fpn_c4p4", "fpn_c5p5"};
    static const char *smooth[4] = {"fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"};
    static const int lateral_depth[4] = {3, 5, 7, 8}, smooth_depth[4] = {1, 1, 1, 2};
    mr_net_weights *w = &b->m->w;
    int64_t d = b->m->cfg.pyramid_size;
    b->stage = MR_STAGE_HEADS;
    b->rule = MR_KAIMING_UNIFORM_FAN_IN;
    for (int l = 3; l >= 0; l--) {
        w->fpn_lateral[l] = decl_conv(b, lateral[l], 1, feat_c[l], d, feat_h[l], feat_w[l], 1.0);
        set_keras_depth(b, w->fpn_lateral[l].layer, DEPTH_RPN + lateral_depth[l]);
    }
    for (int l = 0; l < 4; l++) {
        w->fpn_smooth[l] = decl_conv(b, smooth[l], 3, d, d, feat_h[l], feat_w[l], 1.0);
        set_keras_depth(b, w->fpn_smooth[l].layer, DEPTH_RPN + smooth_depth[l]);
    }
}

/* The RPN, shared over P2..P6 (FLOPs summed over the five levels), in Keras' nested model. */
static void decl_rpn(builder *b, const int64_t feat_h[5], const int64_t feat_w[5]) {
    mr_net_weights *w = &b->m->w;
    int64_t a = b->m->anchors_per_location, d = b->m->cfg.pyramid_size, r = b->m->cfg.rpn_depth;
    double positions = 0.0;
    for (int l = 0; l < 5; l++) positions += (double)(feat_h[l] * feat_w[l]);
    double levels = positions / (double)(feat_h[0] * feat_w[0]);
    b->group = rpn_group;
    b->rule = MR_KAIMING_NORMAL_0_01;
    w->rpn_shared = decl_conv(b, rpn_layers[0], 3, d, r, feat_h[0], feat_w[0], levels);
    w->rpn_class = decl_conv(b, rpn_layers[1], 1, r, 2 * a, feat_h[0], feat_w[0], levels);
    w->rpn_bbox = decl_conv(b, rpn_layers[2], 1, r, 4 * a, feat_h[0], feat_w[0], levels);
    b->group = NULL;
    for (int i = 0; i < 3 && b->status == MR_OK; i++) {
        int layer = b->m->n_layers - 3 + i;
        set_keras_depth(b, layer, DEPTH_RPN);
    }
}

/* Box head (fpn_classifier_graph), FLOPs on every proposal at inference. Keras depths in
 * training mode: mrcnn_class_logits 1 (it feeds the class loss), mrcnn_bbox_fc 2 (through the
 * mrcnn_bbox reshape), pool_squeeze 3, then conv2's ReLU 4, bn2 5, conv2 6, ReLU 7, bn1 8,
 * conv1 9. A walk from the outputs meets this head before the mask head. */
static void decl_box_head(builder *b, int visit) {
    const mr_net_config *c = &b->m->cfg;
    mr_net_weights *w = &b->m->w;
    double rois = (double)c->post_nms_rois_inference;
    int64_t d = c->pyramid_size, fc = c->fc_size, nc = c->num_classes;
    b->rule = MR_KAIMING_UNIFORM_FAN_IN;
    w->class_conv[0] =
        decl_conv_bn(b, "mrcnn_class_conv1", "mrcnn_class_bn1", c->pool_size, d, fc, 1, 1, rois);
    w->class_conv[1] =
        decl_conv_bn(b, "mrcnn_class_conv2", "mrcnn_class_bn2", 1, fc, fc, 1, 1, rois);
    b->rule = MR_KAIMING_NORMAL_0_01;
    w->class_logits = decl_dense(b, "mrcnn_class_logits", fc, nc, rois);
    b->rule = MR_KAIMING_NORMAL_0_001;
    w->bbox_fc = decl_dense(b, "mrcnn_bbox_fc", fc, 4 * nc, rois);
    const int layers[6] = {w->class_conv[0].conv.layer, w->class_conv[0].bn.layer,
                           w->class_conv[1].conv.layer, w->class_conv[1].bn.layer,
                           w->class_logits.layer,       w->bbox_fc.layer};
    const int depth[6] = {9, 8, 6, 5, 1, 2};
    for (int i = 0; i < 6 && b->status == MR_OK; i++) {
        b->m->layers[layers[i]].keras_depth = depth[i];
        b->m->layers[layers[i]].keras_visit = visit + i;
    }
}

/* Mask head (build_fpn_mask_graph), FLOPs on every detection at inference. Keras depths:
 * mrcnn_mask 1 (it feeds the mask loss), the deconv 2, then per conv block from the last one
 * up: ReLU, bn, conv (+3 each). */
static void decl_mask_head(builder *b, int visit) {
    const mr_net_config *c = &b->m->cfg;
    mr_net_weights *w = &b->m->w;
    double dets = (double)c->detection_max_instances;
    int64_t d = c->pyramid_size, nc = c->num_classes, mp = c->mask_pool_size;
    bool deconv = c->mask_shape == 2 * mp;
    b->rule = MR_KAIMING_NORMAL_FAN_OUT;
    int top = deconv ? 3 : 2; /* depth of the last ReLU */
    for (int i = 0; i < 4; i++) {
        char conv[32], bn[32];
        snprintf(conv, sizeof conv, "mrcnn_mask_conv%d", i + 1);
        snprintf(bn, sizeof bn, "mrcnn_mask_bn%d", i + 1);
        w->mask_conv[i] = decl_conv_bn(b, conv, bn, 3, d, d, mp, mp, dets);
        set_keras_depth(b, w->mask_conv[i].conv.layer, top + 3 * (3 - i) + 2);
        set_keras_depth(b, w->mask_conv[i].bn.layer, top + 3 * (3 - i) + 1);
    }
    int64_t ms = mp;
    w->mask_deconv.layer = -1;
    if (deconv) {
        /* Conv2DTranspose kernels are (kh, kw, out, in) in Keras. */
        int64_t kernel[4] = {2, 2, d, d}, bias[1] = {d}, out[3] = {2 * mp, 2 * mp, d};
        w->mask_deconv.layer =
            add_layer(b, "mrcnn_mask_deconv", MR_LAYER_DECONV, 3, out, 4 * d * d + d,
                      dets * 2.0 * (double)(mp * mp * 4 * d * d) * 1e-9);
        declare(b, w->mask_deconv.layer, "kernel", 4, kernel, true);
        declare(b, w->mask_deconv.layer, "bias", 1, bias, true);
        set_keras_depth(b, w->mask_deconv.layer, 2);
        ms = 2 * mp;
    }
    w->mask = decl_conv(b, "mrcnn_mask", 1, d, nc, ms, ms, dets);
    set_keras_depth(b, w->mask.layer, 1);
    int first = w->mask_conv[0].conv.layer;
    for (int i = first; i < b->m->n_layers && b->status == MR_OK; i++)
        b->m->layers[i].keras_visit = visit + (i - first);
}

mr_status mr_network_declare(mr_model *m) {
    const mr_net_config *c = &m->cfg;
    builder b = {.m = m,
                 .status = MR_OK,
                 .h = c->image_max_dim,
                 .w = c->image_max_dim,
                 .c = c->image_channels};
    int64_t feat_h[5], feat_w[5], feat_c[4];
    decl_resnet(&b, feat_h, feat_w, feat_c);
    feat_h[4] = same_size(feat_h[3], 2);
    feat_w[4] = same_size(feat_w[3], 2);
    decl_fpn(&b, feat_h, feat_w, feat_c);
    decl_rpn(&b, feat_h, feat_w);
    /* Both heads come after everything else in a walk from the outputs. */
    decl_box_head(&b, 1 << 20);
    decl_mask_head(&b, 2 << 20);
    return b.status;
}

/* ---- handles and order -------------------------------------------------------------------- */

static mr_tensor *param_tensor(mr_model *m, int layer, int k) {
    return &m->params.items[m->layers[layer].param[k]].t;
}

static void resolve_conv(mr_model *m, mr_conv_w *c) {
    if (c->layer < 0) return;
    c->kernel = param_tensor(m, c->layer, 0);
    c->bias = param_tensor(m, c->layer, 1);
}

static void resolve_conv_bn(mr_model *m, mr_conv_bn_w *cb) {
    resolve_conv(m, &cb->conv);
    cb->bn.gamma = param_tensor(m, cb->bn.layer, 0);
    cb->bn.beta = param_tensor(m, cb->bn.layer, 1);
    cb->bn.mean = param_tensor(m, cb->bn.layer, 2);
    cb->bn.var = param_tensor(m, cb->bn.layer, 3);
}

void mr_network_resolve(mr_model *m) {
    mr_net_weights *w = &m->w;
    resolve_conv_bn(m, &w->conv1);
    int n_blocks = 0;
    for (int s = 0; s < 4; s++) n_blocks += w->stage_blocks[s];
    for (int i = 0; i < n_blocks; i++) {
        mr_block_w *blk = &w->blocks[i];
        resolve_conv_bn(m, &blk->branch2a);
        resolve_conv_bn(m, &blk->branch2b);
        resolve_conv_bn(m, &blk->branch2c);
        if (blk->projection) resolve_conv_bn(m, &blk->branch1);
    }
    for (int l = 0; l < 4; l++) {
        resolve_conv(m, &w->fpn_lateral[l]);
        resolve_conv(m, &w->fpn_smooth[l]);
    }
    resolve_conv(m, &w->rpn_shared);
    resolve_conv(m, &w->rpn_class);
    resolve_conv(m, &w->rpn_bbox);
    for (int i = 0; i < 2; i++) resolve_conv_bn(m, &w->class_conv[i]);
    resolve_conv(m, &w->class_logits);
    resolve_conv(m, &w->bbox_fc);
    for (int i = 0; i < 4; i++) resolve_conv_bn(m, &w->mask_conv[i]);
    resolve_conv(m, &w->mask_deconv);
    resolve_conv(m, &w->mask);
}

void mr_network_keras_order(const mr_model *m, int *order) {
    for (int i = 0; i < m->n_layers; i++) order[i] = i;
    /* An insertion sort (qsort has no context argument in C11); the table is nearly in order
     * already, so it costs little. */
    for (int i = 1; i < m->n_layers; i++) {
        int x = order[i], j = i - 1;
        const mr_layer *lx = &m->layers[x];
        while (j >= 0) {
            const mr_layer *lj = &m->layers[order[j]];
            bool after = lj->keras_depth < lx->keras_depth ||
                         (lj->keras_depth == lx->keras_depth && lj->keras_visit > lx->keras_visit);
            if (!after) break;
            order[j + 1] = order[j];
            j--;
        }
        order[j + 1] = x;
    }
}

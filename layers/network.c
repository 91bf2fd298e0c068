/* The network table: the one place Matterport's network is stated. The list of backbones, the
 * table builder backbone files declare through (layers/network.h), and the walk that adds the
 * backbone BACKBONE selects, then the FPN, RPN and heads: every layer (name, kind, parameters,
 * the batch norm after each conv, stage, Keras group and Keras order, summary numbers), filling
 * the typed handles the forward pass uses. Everything else (freezing, initialisation,
 * batch-norm folding, the Keras layout, the summary) iterates the table this file builds. */
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "network.h"

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

/* ---- the backbones ----------------------------------------------------------------------- */

/* The backbones BACKBONE can select. A new backbone is one file defining its mr_backbone
 * (layers/network.h) and its line here. */
extern const mr_backbone mr_backbone_resnet50, mr_backbone_resnet101;
static const mr_backbone *const backbones[] = {&mr_backbone_resnet50, &mr_backbone_resnet101};
enum { N_BACKBONES = sizeof backbones / sizeof backbones[0] };

const mr_backbone *mr_backbone_find(const char *name) {
    for (int i = 0; i < N_BACKBONES; i++)
        if (!strcmp(backbones[i]->name, name)) return backbones[i];
    return NULL;
}

void mr_backbone_names(char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < N_BACKBONES && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s",
                                 i == 0                 ? ""
                                 : i == N_BACKBONES - 1 ? " or "
                                                        : ", ",
                                 backbones[i]->name);
}

const mr_backbone *mr_net_backbone(const mr_net_config *c) {
    if (c->backbone) return c->backbone;
    const mr_backbone *found = mr_backbone_find(c->backbone_name);
    if (found) return found;
    char names[256];
    mr_backbone_names(names, sizeof names);
    mr_fail(MR_ERR_CONFIG, "BACKBONE must be %s, got '%s'", names, c->backbone_name);
    return NULL;
}

const char *mr_net_backbone_title(const mr_net_config *c) {
    const mr_backbone *b = c->backbone ? c->backbone : mr_backbone_find(c->backbone_name);
    return b && b->title ? b->title : c->backbone_name;
}

/* ---- the declaration walk ---------------------------------------------------------------- */

/* Keras depths (longest path to an output of Matterport's training graph): the heads' values
 * are counted in build_fpn_mask_graph / fpn_classifier_graph below; the RPN sits above every
 * head, the FPN above the RPN, the backbone above the FPN. Only their order matters. */
enum { DEPTH_RPN = 100, DEPTH_BACKBONE_TOP = 1000000 };

int mr_net_add_layer(mr_builder *b, const char *name, mr_layer_kind kind, int ndim,
                     const int64_t *shape, int64_t params, double gflops) {
    mr_model *m = b->m;
    if (b->status != MR_OK) return -1;
    if (!mr_grow(&m->layers, &m->cap_layers, (size_t)m->n_layers + 1, sizeof *m->layers, 256)) {
        b->status = mr_fail(MR_ERR_NOMEM, "cannot grow the layer table");
        return -1;
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

void mr_net_declare_param(mr_builder *b, int layer, const char *weight, int ndim,
                          const int64_t *shape, bool trainable) {
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

int64_t mr_net_same_size(int64_t in, int stride) {
    return (in + stride - 1) / stride;
}

mr_conv_w mr_net_decl_conv(mr_builder *b, const char *name, int64_t k, int64_t cin, int64_t cout,
                           int64_t oh, int64_t ow, double rois) {
    int64_t kernel[4] = {k, k, cin, cout}, bias[1] = {cout}, out[3] = {oh, ow, cout};
    mr_conv_w c = {.layer = mr_net_add_layer(
                       b, name, MR_LAYER_CONV, 3, out, k * k * cin * cout + cout,
                       rois * 2.0 * (double)(oh * ow) * (double)(k * k * cin * cout) * 1e-9)};
    mr_net_declare_param(b, c.layer, "kernel", 4, kernel, true);
    mr_net_declare_param(b, c.layer, "bias", 1, bias, true);
    return c;
}

mr_bn_w mr_net_decl_bn(mr_builder *b, const char *name, int64_t c, int64_t oh, int64_t ow,
                       double rois) {
    int64_t shape[1] = {c}, out[3] = {oh, ow, c};
    mr_bn_w n = {.layer = mr_net_add_layer(b, name, MR_LAYER_BN, 3, out, 4 * c,
                                           rois * 2.0 * (double)(oh * ow * c) * 1e-9)};
    mr_net_declare_param(b, n.layer, "gamma", 1, shape, true);
    mr_net_declare_param(b, n.layer, "beta", 1, shape, true);
    mr_net_declare_param(b, n.layer, "moving_mean", 1, shape, false);
    mr_net_declare_param(b, n.layer, "moving_variance", 1, shape, false);
    return n;
}

/* In the backbone each of the two is one step further down the chain to the outputs. */
mr_conv_bn_w mr_net_decl_conv_bn(mr_builder *b, const char *conv, const char *bn, int64_t k,
                                 int64_t cin, int64_t cout, int64_t oh, int64_t ow, double rois) {
    mr_conv_bn_w cb;
    cb.conv = mr_net_decl_conv(b, conv, k, cin, cout, oh, ow, rois);
    b->chain++;
    cb.bn = mr_net_decl_bn(b, bn, cout, oh, ow, rois);
    b->chain++;
    if (b->status == MR_OK) b->m->layers[cb.conv.layer].bn = cb.bn.layer;
    return cb;
}

mr_conv_w mr_net_decl_dense(mr_builder *b, const char *name, int64_t in, int64_t out, double rois) {
    int64_t kernel[2] = {in, out}, bias[1] = {out}, shape[1] = {out};
    mr_conv_w d = {.layer = mr_net_add_layer(b, name, MR_LAYER_DENSE, 1, shape, in * out + out,
                                             rois * 2.0 * (double)(in * out) * 1e-9)};
    mr_net_declare_param(b, d.layer, "kernel", 2, kernel, true);
    mr_net_declare_param(b, d.layer, "bias", 1, bias, true);
    return d;
}

void mr_net_set_keras_depth(mr_builder *b, int layer, int depth) {
    if (b->status == MR_OK) b->m->layers[layer].keras_depth = depth;
}

/* ---- FPN, RPN, heads ---------------------------------------------------------------------- */

/* Laterals top-down, then the 3x3 smoothing convs. Keras depths above the RPN's (counted from
 * fpn_p<N>add and fpn_p<N>upsampled): c5p5 +8, c4p4 +7, c3p3 +5, c2p2 +3, p5 +2 (it also feeds
 * P6), p2..p4 +1. */
static void decl_fpn(mr_builder *b, const int64_t feat_h[4], const int64_t feat_w[4],
                     const int64_t feat_c[4]) {
    static const char *lateral[4] = {"fpn_c2p2", "fpn_c3p3", "fpn_c4p4", "fpn_c5p5"};
    static const char *smooth[4] = {"fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"};
    static const int lateral_depth[4] = {3, 5, 7, 8}, smooth_depth[4] = {1, 1, 1, 2};
    mr_net_weights *w = &b->m->w;
    int64_t d = b->m->cfg.pyramid_size;
    b->stage = MR_STAGE_HEADS;
    b->rule = MR_KAIMING_UNIFORM_FAN_IN;
    for (int l = 3; l >= 0; l--) {
        w->fpn_lateral[l] =
            mr_net_decl_conv(b, lateral[l], 1, feat_c[l], d, feat_h[l], feat_w[l], 1.0);
        mr_net_set_keras_depth(b, w->fpn_lateral[l].layer, DEPTH_RPN + lateral_depth[l]);
    }
    for (int l = 0; l < 4; l++) {
        w->fpn_smooth[l] = mr_net_decl_conv(b, smooth[l], 3, d, d, feat_h[l], feat_w[l], 1.0);
        mr_net_set_keras_depth(b, w->fpn_smooth[l].layer, DEPTH_RPN + smooth_depth[l]);
    }
}

/* The RPN, shared over P2..P6 (FLOPs summed over the five levels), in Keras' nested model. */
static void decl_rpn(mr_builder *b, const int64_t feat_h[5], const int64_t feat_w[5]) {
    mr_net_weights *w = &b->m->w;
    int64_t a = b->m->anchors_per_location, d = b->m->cfg.pyramid_size, r = b->m->cfg.rpn_depth;
    double positions = 0.0;
    for (int l = 0; l < 5; l++) positions += (double)(feat_h[l] * feat_w[l]);
    double levels = positions / (double)(feat_h[0] * feat_w[0]);
    b->group = rpn_group;
    b->rule = MR_KAIMING_NORMAL_0_01;
    w->rpn_shared = mr_net_decl_conv(b, rpn_layers[0], 3, d, r, feat_h[0], feat_w[0], levels);
    w->rpn_class = mr_net_decl_conv(b, rpn_layers[1], 1, r, 2 * a, feat_h[0], feat_w[0], levels);
    w->rpn_bbox = mr_net_decl_conv(b, rpn_layers[2], 1, r, 4 * a, feat_h[0], feat_w[0], levels);
    b->group = NULL;
    for (int i = 0; i < 3 && b->status == MR_OK; i++) {
        int layer = b->m->n_layers - 3 + i;
        mr_net_set_keras_depth(b, layer, DEPTH_RPN);
    }
}

/* Box head (fpn_classifier_graph), FLOPs on every proposal at inference. Keras depths in
 * training mode: mrcnn_class_logits 1 (it feeds the class loss), mrcnn_bbox_fc 2 (through the
 * mrcnn_bbox reshape), pool_squeeze 3, then conv2's ReLU 4, bn2 5, conv2 6, ReLU 7, bn1 8,
 * conv1 9. A walk from the outputs meets this head before the mask head. */
static void decl_box_head(mr_builder *b, int visit) {
    const mr_net_config *c = &b->m->cfg;
    mr_net_weights *w = &b->m->w;
    double rois = (double)c->post_nms_rois_inference;
    int64_t d = c->pyramid_size, fc = c->fc_size, nc = c->num_classes;
    b->rule = MR_KAIMING_UNIFORM_FAN_IN;
    w->class_conv[0] = mr_net_decl_conv_bn(b, "mrcnn_class_conv1", "mrcnn_class_bn1", c->pool_size,
                                           d, fc, 1, 1, rois);
    w->class_conv[1] =
        mr_net_decl_conv_bn(b, "mrcnn_class_conv2", "mrcnn_class_bn2", 1, fc, fc, 1, 1, rois);
    b->rule = MR_KAIMING_NORMAL_0_01;
    w->class_logits = mr_net_decl_dense(b, "mrcnn_class_logits", fc, nc, rois);
    b->rule = MR_KAIMING_NORMAL_0_001;
    w->bbox_fc = mr_net_decl_dense(b, "mrcnn_bbox_fc", fc, 4 * nc, rois);
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
static void decl_mask_head(mr_builder *b, int visit) {
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
        w->mask_conv[i] = mr_net_decl_conv_bn(b, conv, bn, 3, d, d, mp, mp, dets);
        mr_net_set_keras_depth(b, w->mask_conv[i].conv.layer, top + 3 * (3 - i) + 2);
        mr_net_set_keras_depth(b, w->mask_conv[i].bn.layer, top + 3 * (3 - i) + 1);
    }
    int64_t ms = mp;
    w->mask_deconv.layer = -1;
    if (deconv) {
        /* Conv2DTranspose kernels are (kh, kw, out, in) in Keras. */
        int64_t kernel[4] = {2, 2, d, d}, bias[1] = {d}, out[3] = {2 * mp, 2 * mp, d};
        w->mask_deconv.layer =
            mr_net_add_layer(b, "mrcnn_mask_deconv", MR_LAYER_DECONV, 3, out, 4 * d * d + d,
                             dets * 2.0 * (double)(mp * mp * 4 * d * d) * 1e-9);
        mr_net_declare_param(b, w->mask_deconv.layer, "kernel", 4, kernel, true);
        mr_net_declare_param(b, w->mask_deconv.layer, "bias", 1, bias, true);
        mr_net_set_keras_depth(b, w->mask_deconv.layer, 2);
        ms = 2 * mp;
    }
    w->mask = mr_net_decl_conv(b, "mrcnn_mask", 1, d, nc, ms, ms, dets);
    mr_net_set_keras_depth(b, w->mask.layer, 1);
    int first = w->mask_conv[0].conv.layer;
    for (int i = first; i < b->m->n_layers && b->status == MR_OK; i++)
        b->m->layers[i].keras_visit = visit + (i - first);
}

/* The backbone's layers: stages 1..5, below every FPN layer in Keras' order. */
static mr_status check_backbone(const mr_model *m, const mr_backbone *bb, const int64_t c[4]) {
    for (int i = 0; i < m->n_layers; i++) {
        const mr_layer *l = &m->layers[i];
        if (l->stage < 1 || l->stage > 5)
            return mr_fail(MR_ERR_CONFIG, "backbone %s: layer %s has stage %d, not 1..5", bb->name,
                           l->name, l->stage);
        if (l->keras_depth <= DEPTH_RPN + 8)
            return mr_fail(MR_ERR_CONFIG,
                           "backbone %s: layer %s is %d steps deep, more than the table allows",
                           bb->name, l->name, DEPTH_BACKBONE_TOP - l->keras_depth);
    }
    for (int k = 0; k < 4; k++)
        if (c[k] < 1)
            return mr_fail(MR_ERR_CONFIG, "backbone %s: C%d has %lld channels", bb->name, k + 2,
                           (long long)c[k]);
    return MR_OK;
}

mr_status mr_network_declare(mr_model *m) {
    const mr_net_config *c = &m->cfg;
    const mr_backbone *bb = mr_net_backbone(c);
    if (!bb) return MR_ERR_CONFIG;
    m->backbone = bb;
    m->backbone_w = calloc(1, bb->handles_size ? bb->handles_size : 1);
    if (!m->backbone_w)
        return mr_fail(MR_ERR_NOMEM, "no memory for the handles of backbone %s", bb->name);
    mr_builder b = {.m = m,
                    .status = MR_OK,
                    .h = c->image_max_dim,
                    .w = c->image_max_dim,
                    .c = c->image_channels,
                    .stage = 1,
                    .rule = MR_KAIMING_NORMAL_FAN_OUT};
    int64_t feat_h[5], feat_w[5], feat_c[4] = {0, 0, 0, 0};
    b.status = bb->declare(&b, m->backbone_w, feat_c);
    if (b.status == MR_OK) b.status = check_backbone(m, bb, feat_c);
    b.group = NULL;
    /* C2..C5 and P6 at strides 4..64 ("same" rounding, as every listed backbone's layers). */
    for (int l = 0; l < 5; l++) {
        feat_h[l] = mr_net_same_size(c->image_max_dim, 4 << l);
        feat_w[l] = mr_net_same_size(c->image_max_dim, 4 << l);
    }
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

void mr_net_resolve_conv(mr_model *m, mr_conv_w *c) {
    if (c->layer < 0) return;
    c->kernel = param_tensor(m, c->layer, 0);
    c->bias = param_tensor(m, c->layer, 1);
}

void mr_net_resolve_conv_bn(mr_model *m, mr_conv_bn_w *cb) {
    mr_net_resolve_conv(m, &cb->conv);
    cb->bn.gamma = param_tensor(m, cb->bn.layer, 0);
    cb->bn.beta = param_tensor(m, cb->bn.layer, 1);
    cb->bn.mean = param_tensor(m, cb->bn.layer, 2);
    cb->bn.var = param_tensor(m, cb->bn.layer, 3);
}

void mr_network_resolve(mr_model *m) {
    mr_net_weights *w = &m->w;
    m->backbone->resolve(m, m->backbone_w);
    for (int l = 0; l < 4; l++) {
        mr_net_resolve_conv(m, &w->fpn_lateral[l]);
        mr_net_resolve_conv(m, &w->fpn_smooth[l]);
    }
    mr_net_resolve_conv(m, &w->rpn_shared);
    mr_net_resolve_conv(m, &w->rpn_class);
    mr_net_resolve_conv(m, &w->rpn_bbox);
    for (int i = 0; i < 2; i++) mr_net_resolve_conv_bn(m, &w->class_conv[i]);
    mr_net_resolve_conv(m, &w->class_logits);
    mr_net_resolve_conv(m, &w->bbox_fc);
    for (int i = 0; i < 4; i++) mr_net_resolve_conv_bn(m, &w->mask_conv[i]);
    mr_net_resolve_conv(m, &w->mask_deconv);
    mr_net_resolve_conv(m, &w->mask);
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

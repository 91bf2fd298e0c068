/* Private to layers/ (and tests): what a backbone file needs to state its network. The table
 * builder (mr_builder and the mr_net_decl_* helpers) and the handle resolvers (layers/
 * network.c), the forward helpers (layers/model.c), and the mr_backbone record. Adding a backbone
 * is one file defining its mr_backbone plus its line in the list in layers/network.c. */
#ifndef MR_NETWORK_H
#define MR_NETWORK_H

#include "../core/ops.h"
#include "model.h"

/* The declaration walk's state. A backbone sets `stage` and `rule` before declaring layers and
 * reads the image's size and channels from h, w, c (it may use them as its own running size). */
typedef struct mr_builder {
    mr_model *m;
    mr_status status;     /* the first failure; the helpers do nothing once it is set */
    int64_t h, w, c;      /* the main path's spatial size and channels: the image's at first */
    int stage;            /* of the layers added next: 1..5 in a backbone (freezing presets) */
    const char *group;    /* their Keras group, NULL: their own name */
    mr_kaiming_rule rule; /* how their kernels start under WEIGHT_INIT "kaiming" */
    /* Steps from the input so far: a backbone layer's Keras depth (the longest path to an
     * output) is a constant above the FPN's less `chain`, so Keras' order follows it.
     * mr_net_decl_conv_bn counts two steps (conv, bn); count the others (ReLUs, adds) by hand. */
    int chain;
} mr_builder;

/* Adds a layer row; returns its table index or -1 (status set). */
int mr_net_add_layer(mr_builder *b, const char *name, mr_layer_kind kind, int ndim,
                     const int64_t *shape, int64_t params, double gflops);
/* Declares the parameter "<layer name>/<weight>" and records it in the layer's row. */
void mr_net_declare_param(mr_builder *b, int layer, const char *weight, int ndim,
                          const int64_t *shape, bool trainable);
/* A k x k conv (kernel (k, k, cin, cout), bias) with an (oh, ow, cout) output; `rois`
 * multiplies the FLOPs of per-ROI layers (1 in a backbone). */
mr_conv_w mr_net_decl_conv(mr_builder *b, const char *name, int64_t k, int64_t cin, int64_t cout,
                           int64_t oh, int64_t ow, double rois);
/* A batch norm over c channels: gamma, beta (trainable), moving_mean, moving_variance. */
mr_bn_w mr_net_decl_bn(mr_builder *b, const char *name, int64_t c, int64_t oh, int64_t ow,
                       double rois);
/* A conv and the batch norm that follows it: the table links them (export folds them, the
 * forward pass fuses them when the batch norm is frozen). Counts two steps of `chain`. */
mr_conv_bn_w mr_net_decl_conv_bn(mr_builder *b, const char *conv, const char *bn, int64_t k,
                                 int64_t cin, int64_t cout, int64_t oh, int64_t ow, double rois);
/* A dense layer: kernel (in, out), bias. */
mr_conv_w mr_net_decl_dense(mr_builder *b, const char *name, int64_t in, int64_t out, double rois);
/* Overrides a layer's Keras depth (heads, whose depths are counted from the outputs). */
void mr_net_set_keras_depth(mr_builder *b, int layer, int depth);
/* The output size of a "same" padded stride: ceil(in / stride). */
int64_t mr_net_same_size(int64_t in, int stride);

/* Point handles at the registry's tensors; a conv with layer -1 is skipped. */
void mr_net_resolve_conv(mr_model *m, mr_conv_w *c);
void mr_net_resolve_conv_bn(mr_model *m, mr_conv_bn_w *cb);

/* Forward helpers (layers/model.c). mr_net_conv_bn applies the model's batch-norm mode
 * (TRAIN_BN: batch statistics while recording; else the frozen statistics, folded into the
 * conv). */
mr_tensor *mr_net_conv(mr_ctx *ctx, mr_tensor *x, const mr_conv_w *w, int stride, int pad);
mr_tensor *mr_net_bn(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const mr_bn_w *w);
mr_tensor *mr_net_conv_bn(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const mr_conv_bn_w *w,
                          int stride, int pad);
/* The two followed by a ReLU, fused where the op allows (core/ops.h: mr_conv2d_relu). */
mr_tensor *mr_net_conv_relu(mr_ctx *ctx, mr_tensor *x, const mr_conv_w *w, int stride, int pad);
mr_tensor *mr_net_conv_bn_relu(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const mr_conv_bn_w *w,
                               int stride, int pad);
/* True when every layer of `stage` is frozen (or nothing records) and `input` needs no
 * gradient: that stage records nothing, so its temporaries may live in a scratch scope
 * (mr_scratch_begin / mr_scratch_end). */
bool mr_net_stage_records_nothing(const mr_ctx *ctx, const mr_model *m, int stage,
                                  const mr_tensor *input);

/* A backbone: images in, C2..C5 out, at strides 4, 8, 16, 32 of the molded image (which is a
 * multiple of 64 on each side, so C<k> is exactly image / 2^k). Its layers carry stages 1..5
 * (1 = the stem), which the presets "3+", "4+", "5+" and "heads" freeze by. */
struct mr_backbone {
    const char *name;    /* BACKBONE's value: "resnet101" */
    const char *title;   /* for people: "ResNet-101" */
    size_t handles_size; /* of its handle struct, which the model allocates zeroed and owns */
    /* Declares its layers through `b` (b->h, b->w, b->c: the image), fills `handles` with their
     * table indices and `channels` with C2..C5's channel counts. Returns b->status. */
    mr_status (*declare)(mr_builder *b, void *handles, int64_t channels[4]);
    /* Points `handles` at the registry (after mr_params_finalize). */
    void (*resolve)(mr_model *m, void *handles);
    /* images (B, H, W, C) molded -> c[0..3] = C2..C5 (B, H / 2^k, W / 2^k, channels[k - 2]). */
    mr_status (*forward)(mr_ctx *ctx, const mr_model *m, const void *handles, mr_tensor *images,
                         mr_tensor *c[4]);
};

#endif

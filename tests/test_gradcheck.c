/* Finite-difference gradient checks: every op's backward against central differences of
 * L = sum(r * op(inputs)) for a random projection r, with inputs nudged away from kinks.
 * A test fails when an op in MR_OP_LIST has no case here. */
#include <math.h>
#include <string.h>

#include "../core/ops.h"
#include "../core/rng.h"
#include "../layers/roi_align.h"
#include "testutil.h"

#define MAX_IN 5

typedef struct {
    mr_tensor *in[MAX_IN]; /* differentiable inputs */
    int n_in;
    mr_tensor *fixed[2]; /* non-differentiable tensors (moving statistics) */
    int32_t targets[64];
    float ftargets[4096];
    float weights[64];
    int64_t index[16];
} gc_inputs;

typedef void (*setup_fn)(mr_ctx *ctx, mr_rng *rng, gc_inputs *in);
typedef mr_tensor *(*forward_fn)(mr_ctx *ctx, gc_inputs *in);

typedef struct {
    mr_op_id op;
    const char *name;
    setup_fn setup;
    forward_fn forward;
} gc_case;

/* ---- input makers ------------------------------------------------------------------------ */

static mr_tensor *param(mr_ctx *ctx, const char *name, int ndim, const int64_t *shape) {
    mr_tensor *t = mr_tensor_new(ctx, name, ndim, shape);
    cr_assert_not_null(t);
    t->requires_grad = true;
    return t;
}

static void fill_normal(mr_rng *rng, mr_tensor *t, float scale) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = scale * mr_rng_normal(rng);
}

/* Values at least `gap` away from 0, so ReLU-like kinks are never crossed by the nudge. */
static void fill_away_from_zero(mr_rng *rng, mr_tensor *t, float gap) {
    for (int64_t i = 0; i < t->numel; i++) {
        float v = gap + mr_rng_uniform(rng);
        t->data[i] = mr_rng_uniform(rng) < 0.5f ? -v : v;
    }
}

/* Distinct values spaced by `gap`, shuffled, so a max never changes winner under the nudge. */
static void fill_distinct(mr_rng *rng, mr_tensor *t, float gap) {
    int64_t *order = malloc(sizeof *order * (size_t)t->numel);
    for (int64_t i = 0; i < t->numel; i++) order[i] = i;
    mr_rng_shuffle_i64(rng, order, t->numel);
    for (int64_t i = 0; i < t->numel; i++) t->data[order[i]] = gap * (float)(i - t->numel / 2);
    free(order);
}

static mr_tensor *p4(mr_ctx *ctx, const char *n, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t s[4] = {a, b, c, d};
    return param(ctx, n, 4, s);
}
static mr_tensor *p2(mr_ctx *ctx, const char *n, int64_t a, int64_t b) {
    int64_t s[2] = {a, b};
    return param(ctx, n, 2, s);
}
static mr_tensor *p1(mr_ctx *ctx, const char *n, int64_t a) {
    return param(ctx, n, 1, &a);
}

/* ---- cases ------------------------------------------------------------------------------- */

static void setup_conv(mr_ctx *ctx, mr_rng *rng, gc_inputs *in, int64_t h, int64_t w, int64_t k,
                       int64_t cin, int64_t cout) {
    in->in[0] = p4(ctx, "x", 2, h, w, cin);
    in->in[1] = p4(ctx, "w", k, k, cin, cout);
    in->in[2] = p1(ctx, "b", cout);
    in->n_in = 3;
    for (int i = 0; i < 3; i++) fill_normal(rng, in->in[i], 0.5f);
}
static void setup_conv3(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv(c, r, in, 7, 6, 3, 3, 4);
}
/* Odd sizes, so the last Winograd tiles hang over the bottom and right edges. */
static void setup_conv3_winograd4(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv(c, r, in, 7, 6, 3, 3, 4);
    c->conv_algo = MR_CONV_WINOGRAD_F4;
}
static void setup_conv3_winograd6(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv(c, r, in, 7, 6, 3, 3, 4);
    c->conv_algo = MR_CONV_WINOGRAD_F6;
}
static void setup_conv3_im2col(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv(c, r, in, 7, 6, 3, 3, 4);
    c->conv_algo = MR_CONV_IM2COL;
}
static void setup_conv1(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv(c, r, in, 5, 5, 1, 4, 3);
}
static void setup_conv1_nobias(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv(c, r, in, 5, 5, 1, 4, 3);
    in->n_in = 2;
}
static void setup_conv7(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv(c, r, in, 9, 8, 7, 2, 3);
}
/* A kernel as large as its input, like the box head's pool x pool layer (no im2col copy). */
static void setup_conv_whole(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv(c, r, in, 3, 3, 3, 4, 5);
}
static mr_tensor *fwd_conv_same_s1(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d(c, in->in[0], in->in[1], in->in[2], 1, MR_PAD_SAME);
}
static mr_tensor *fwd_conv_same_s2(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d(c, in->in[0], in->in[1], in->in[2], 2, MR_PAD_SAME);
}
static mr_tensor *fwd_conv_valid_s1(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d(c, in->in[0], in->in[1], in->in[2], 1, MR_PAD_VALID);
}
/* conv + frozen BN: x, w, b, gamma, beta differentiable; the moving statistics fixed. */
static void setup_conv_bn_sized(mr_ctx *c, mr_rng *r, gc_inputs *in, int64_t side, int64_t k,
                                int64_t cin, mr_conv_algo algo) {
    setup_conv(c, r, in, side + 1, side, k, cin, 4);
    in->in[3] = p1(c, "gamma", 4);
    in->in[4] = p1(c, "beta", 4);
    in->n_in = 5;
    fill_normal(r, in->in[3], 1.0f);
    fill_normal(r, in->in[4], 0.5f);
    in->fixed[0] = mr_tensor_1d(c, "mean", 4);
    in->fixed[1] = mr_tensor_1d(c, "var", 4);
    for (int i = 0; i < 4; i++) {
        in->fixed[0]->data[i] = 0.3f * mr_rng_normal(r);
        in->fixed[1]->data[i] = 0.5f + mr_rng_uniform(r);
    }
    c->conv_algo = algo;
}
static void setup_conv_bn(mr_ctx *c, mr_rng *r, gc_inputs *in, int64_t k, mr_conv_algo algo) {
    setup_conv_bn_sized(c, r, in, 6, k, 3, algo);
}
static void setup_conv3_bn_winograd4(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv_bn(c, r, in, 3, MR_CONV_WINOGRAD_F4);
}
static void setup_conv3_bn_winograd6(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv_bn(c, r, in, 3, MR_CONV_WINOGRAD_F6);
}
static void setup_conv3_bn_im2col(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv_bn(c, r, in, 3, MR_CONV_IM2COL);
}
static void setup_conv1_bn_nobias(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv_bn(c, r, in, 1, MR_CONV_AUTO);
    in->in[2] = in->in[3]; /* gamma, beta move up over the unused bias */
    in->in[3] = in->in[4];
    in->n_in = 4;
}
/* An output smaller than the kernel, rectified: the batch norm is applied to the output rather
 * than folded (core/op_conv.c). beta lifts every output well clear of the ReLU's kink, while
 * staying within 16 gammas (else the layer folds). */
static void setup_conv3_bn_scaled(mr_ctx *c, mr_rng *r, gc_inputs *in) {
    setup_conv_bn_sized(c, r, in, 2, 3, 8, MR_CONV_AUTO);
    for (int i = 0; i < 4; i++) {
        in->in[3]->data[i] = 0.8f + 0.4f * mr_rng_uniform(r);
        in->in[4]->data[i] = 10.0f + mr_rng_uniform(r);
    }
}
static mr_tensor *fwd_conv_bn_relu_same(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d_bn_relu(c, in->in[0], in->in[1], in->in[2], 1, MR_PAD_SAME, in->in[3],
                             in->in[4], in->fixed[0], in->fixed[1], 1e-3f);
}
static mr_tensor *fwd_conv_bn_same(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d_bn(c, in->in[0], in->in[1], in->in[2], 1, MR_PAD_SAME, in->in[3], in->in[4],
                        in->fixed[0], in->fixed[1], 1e-3f);
}
/* RESNET_STRIDE_CONV "3x3": the strided 3x3 of a stage's first block, with its folded BN. */
static mr_tensor *fwd_conv_bn_same_s2(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d_bn(c, in->in[0], in->in[1], in->in[2], 2, MR_PAD_SAME, in->in[3], in->in[4],
                        in->fixed[0], in->fixed[1], 1e-3f);
}
static mr_tensor *fwd_conv_bn_strided_nobias(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d_bn(c, in->in[0], in->in[1], NULL, 2, MR_PAD_VALID, in->in[2], in->in[3],
                        in->fixed[0], in->fixed[1], 1e-3f);
}
static mr_tensor *fwd_conv_pointwise(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d(c, in->in[0], in->in[1], in->in[2], 1, MR_PAD_VALID);
}
static mr_tensor *fwd_conv_strided_1x1(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d(c, in->in[0], in->in[1], NULL, 2, MR_PAD_VALID);
}
static mr_tensor *fwd_conv_pad3_s2(mr_ctx *c, gc_inputs *in) {
    return mr_conv2d(c, in->in[0], in->in[1], in->in[2], 2, 3);
}

static void setup_deconv(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p4(ctx, "x", 2, 3, 4, 3);
    in->in[1] = p4(ctx, "w", 2, 2, 5, 3);
    in->in[2] = p1(ctx, "b", 5);
    in->n_in = 3;
    for (int i = 0; i < 3; i++) fill_normal(rng, in->in[i], 0.5f);
}
static mr_tensor *fwd_deconv(mr_ctx *c, gc_inputs *in) {
    return mr_deconv2x2(c, in->in[0], in->in[1], in->in[2]);
}

static void setup_bn(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p4(ctx, "x", 2, 3, 3, 4);
    in->in[1] = p1(ctx, "gamma", 4);
    in->in[2] = p1(ctx, "beta", 4);
    in->n_in = 3;
    fill_normal(rng, in->in[0], 1.0f);
    fill_normal(rng, in->in[1], 1.0f);
    fill_normal(rng, in->in[2], 1.0f);
    in->fixed[0] = mr_tensor_1d(ctx, "mean", 4);
    in->fixed[1] = mr_tensor_1d(ctx, "var", 4);
    for (int k = 0; k < 4; k++) {
        in->fixed[0]->data[k] = 0.3f * mr_rng_normal(rng);
        in->fixed[1]->data[k] = 0.5f + mr_rng_uniform(rng);
    }
}
static mr_tensor *fwd_bn_frozen(mr_ctx *c, gc_inputs *in) {
    return mr_batchnorm_frozen(c, in->in[0], in->in[1], in->in[2], in->fixed[0], in->fixed[1],
                               1e-3f);
}
static mr_tensor *fwd_bn_batch(mr_ctx *c, gc_inputs *in) {
    return mr_batchnorm_batch(c, in->in[0], in->in[1], in->in[2], in->fixed[0], in->fixed[1], 1e-3f,
                              0.99f, false);
}

static void setup_unary_kinky(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p4(ctx, "x", 2, 3, 4, 5);
    in->n_in = 1;
    fill_away_from_zero(rng, in->in[0], 0.05f);
}
static mr_tensor *fwd_relu(mr_ctx *c, gc_inputs *in) {
    return mr_relu(c, in->in[0]);
}
/* In place on a fresh sum, as the network uses it (never on a tensor read again). */
static mr_tensor *fwd_relu_inplace(mr_ctx *c, gc_inputs *in) {
    return mr_relu_inplace(c, mr_add(c, in->in[0], in->in[1]));
}
/* t feeds both the ReLU and the add, so by the time ReLU's backward runs t already holds a
 * gradient and must not inherit the ReLU's buffer. */
static mr_tensor *fwd_relu_fan_out(mr_ctx *c, gc_inputs *in) {
    mr_tensor *t = mr_add(c, in->in[0], in->in[1]);
    return mr_add(c, mr_relu(c, t), t);
}
static mr_tensor *fwd_sigmoid(mr_ctx *c, gc_inputs *in) {
    return mr_sigmoid(c, in->in[0]);
}
static void setup_upsample_add(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p4(ctx, "x", 2, 3, 4, 5);
    in->in[1] = p4(ctx, "base", 2, 6, 8, 5);
    in->n_in = 2;
    fill_normal(rng, in->in[0], 1.0f);
    fill_normal(rng, in->in[1], 1.0f);
}
/* The op writes over its base, so each forward pass gives it a fresh one (2 * base). */
static mr_tensor *fwd_upsample_add(mr_ctx *c, gc_inputs *in) {
    return mr_upsample2x_add(c, in->in[0], mr_add(c, in->in[1], in->in[1]));
}

static void setup_two(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p4(ctx, "a", 2, 3, 4, 5);
    in->in[1] = p4(ctx, "b", 2, 3, 4, 5);
    in->n_in = 2;
    fill_normal(rng, in->in[0], 1.0f);
    fill_normal(rng, in->in[1], 1.0f);
}
/* Sums kept away from relu's kink: a and b drawn so that 2a + b (both cases' sum) is at least
 * 0.1 from zero. */
static void setup_add_relu(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    setup_two(ctx, rng, in);
    mr_tensor *a = in->in[0], *b = in->in[1];
    for (int64_t i = 0; i < a->numel; i++) {
        float s = 0.1f + mr_rng_uniform(rng), sign = mr_rng_uniform(rng) < 0.5f ? -1.0f : 1.0f;
        b->data[i] = 0.3f * mr_rng_normal(rng);
        a->data[i] = 0.5f * (sign * s - b->data[i]);
    }
}
static mr_tensor *fwd_add(mr_ctx *c, gc_inputs *in) {
    return mr_add(c, in->in[0], in->in[1]);
}
/* Fan-out: the same tensor used twice must collect both gradients. */
static mr_tensor *fwd_add_self(mr_ctx *c, gc_inputs *in) {
    return mr_add(c, in->in[0], in->in[0]);
}
/* In place over a fresh sum (2a), whose gradient the op then hands on to it. */
static mr_tensor *fwd_add_relu_inplace(mr_ctx *c, gc_inputs *in) {
    return mr_add_relu_inplace(c, mr_add(c, in->in[0], in->in[0]), in->in[1]);
}
/* b also feeds the output directly, so b already holds a gradient when add_relu's backward
 * runs, and the masked gradient must be added to it. */
static mr_tensor *fwd_add_relu_fan_out(mr_ctx *c, gc_inputs *in) {
    mr_tensor *t = mr_add(c, in->in[0], in->in[0]);
    return mr_add(c, mr_add_relu_inplace(c, t, in->in[1]), in->in[1]);
}
static mr_tensor *fwd_concat_c(mr_ctx *c, gc_inputs *in) {
    mr_tensor *xs[2] = {in->in[0], in->in[1]};
    return mr_concat(c, xs, 2, 3);
}
static mr_tensor *fwd_concat_h(mr_ctx *c, gc_inputs *in) {
    mr_tensor *xs[3] = {in->in[0], in->in[1], in->in[0]};
    return mr_concat(c, xs, 3, 1);
}

static void setup_pool(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p4(ctx, "x", 2, 7, 6, 3);
    in->n_in = 1;
    fill_distinct(rng, in->in[0], 0.05f);
}
static mr_tensor *fwd_pool_same(mr_ctx *c, gc_inputs *in) {
    return mr_maxpool(c, in->in[0], 3, 2, MR_PAD_SAME);
}
static mr_tensor *fwd_pool_valid(mr_ctx *c, gc_inputs *in) {
    return mr_maxpool(c, in->in[0], 2, 2, MR_PAD_VALID);
}
static mr_tensor *fwd_pool_subsample(mr_ctx *c, gc_inputs *in) {
    return mr_maxpool(c, in->in[0], 1, 2, MR_PAD_VALID);
}

static void setup_linear(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p2(ctx, "x", 5, 7);
    in->in[1] = p2(ctx, "w", 7, 4);
    in->in[2] = p1(ctx, "b", 4);
    in->n_in = 3;
    for (int i = 0; i < 3; i++) fill_normal(rng, in->in[i], 0.7f);
}
static mr_tensor *fwd_linear(mr_ctx *c, gc_inputs *in) {
    return mr_linear(c, in->in[0], in->in[1], in->in[2]);
}

static void setup_one(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p4(ctx, "x", 2, 3, 4, 5);
    in->n_in = 1;
    fill_normal(rng, in->in[0], 1.0f);
    int64_t idx[6] = {3, 0, 3, 5, 1, 3};
    memcpy(in->index, idx, sizeof idx);
}
static mr_tensor *fwd_reshape(mr_ctx *c, gc_inputs *in) {
    int64_t s[2] = {6, 20};
    /* Followed by a slice so the check sees a non-trivial use of the reshaped tensor. */
    return mr_slice(c, mr_reshape(c, in->in[0], 2, s), 1, 3, 9);
}
static mr_tensor *fwd_slice(mr_ctx *c, gc_inputs *in) {
    return mr_slice(c, in->in[0], 2, 1, 2);
}
static mr_tensor *fwd_gather(mr_ctx *c, gc_inputs *in) {
    int64_t s[2] = {6, 20};
    return mr_gather_rows(c, mr_reshape(c, in->in[0], 2, s), in->index, 6);
}

static void setup_xent(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p2(ctx, "logits", 9, 4);
    in->n_in = 1;
    fill_normal(rng, in->in[0], 2.0f);
    for (int i = 0; i < 9; i++) {
        in->targets[i] = (int32_t)mr_rng_below(rng, 4);
        in->weights[i] = i % 3 ? 1.0f : 0.0f;
    }
}
static mr_tensor *fwd_xent(mr_ctx *c, gc_inputs *in) {
    return mr_softmax_xent(c, in->in[0], in->targets, NULL);
}
static mr_tensor *fwd_xent_weighted(mr_ctx *c, gc_inputs *in) {
    return mr_softmax_xent(c, in->in[0], in->targets, in->weights);
}

static void setup_bce(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p4(ctx, "logits", 2, 4, 4, 3);
    in->n_in = 1;
    fill_normal(rng, in->in[0], 3.0f);
    for (int64_t i = 0; i < in->in[0]->numel; i++)
        in->ftargets[i] = i % 5 == 0 ? 0.3f : (float)(mr_rng_uniform(rng) < 0.5f);
}
static mr_tensor *fwd_bce(mr_ctx *c, gc_inputs *in) {
    return mr_sigmoid_bce(c, in->in[0], in->ftargets);
}

/* Differences on both sides of 1 and of 0, kept 0.05 away from the |d| = 1 kink. */
static void setup_smooth_l1(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    in->in[0] = p2(ctx, "pred", 12, 4);
    in->n_in = 1;
    for (int64_t i = 0; i < 48; i++) {
        float d;
        do d = 4.0f * (mr_rng_uniform(rng) - 0.5f);
        while (fabsf(fabsf(d) - 1.0f) < 0.05f);
        in->ftargets[i] = mr_rng_normal(rng);
        in->in[0]->data[i] = in->ftargets[i] + d;
    }
}
static mr_tensor *fwd_smooth_l1(mr_ctx *c, gc_inputs *in) {
    return mr_smooth_l1(c, in->in[0], in->ftargets);
}

/* Four small pyramid maps standing for a 1024x1024 image, and boxes sized for levels
 * 2, 3, 4, 5 and 5 (one reaching past the map, so the zero-outside rule is exercised too). */
static const float roi_boxes[5][4] = {{0.1f, 0.1f, 0.15f, 0.16f},
                                      {0.2f, 0.3f, 0.31f, 0.41f},
                                      {0.3f, 0.2f, 0.52f, 0.42f},
                                      {-0.1f, 0.0f, 1.05f, 1.0f},
                                      {0.05f, 0.6f, 0.7f, 0.95f}};
static const int32_t roi_batch[5] = {0, 1, 1, 0, 1};
static void setup_roi(mr_ctx *ctx, mr_rng *rng, gc_inputs *in) {
    for (int l = 0; l < 4; l++) {
        int64_t side = 16 >> l;
        in->in[l] = p4(ctx, "P", 2, side, side, 3);
        fill_normal(rng, in->in[l], 1.0f);
    }
    in->n_in = 4;
}
static mr_tensor *fwd_roi_crop(mr_ctx *c, gc_inputs *in) {
    return mr_roi_align(c, in->in, &roi_boxes[0][0], roi_batch, 5, 3, 1024, 1024,
                        MR_ROI_CROP_AND_RESIZE);
}
static mr_tensor *fwd_roi_average(mr_ctx *c, gc_inputs *in) {
    return mr_roi_align(c, in->in, &roi_boxes[0][0], roi_batch, 5, 2, 1024, 1024, MR_ROI_AVERAGE);
}

static const gc_case cases[] = {
    {MR_OP_CONV2D, "conv 3x3 s1 same (im2col)", setup_conv3_im2col, fwd_conv_same_s1},
    {MR_OP_CONV2D, "conv 3x3 s1 same (Winograd 4x4)", setup_conv3_winograd4, fwd_conv_same_s1},
    {MR_OP_CONV2D, "conv 3x3 s1 valid (Winograd 4x4)", setup_conv3_winograd4, fwd_conv_valid_s1},
    {MR_OP_CONV2D, "conv 3x3 s1 same (Winograd 6x6)", setup_conv3_winograd6, fwd_conv_same_s1},
    {MR_OP_CONV2D, "conv 3x3 s1 valid (Winograd 6x6)", setup_conv3_winograd6, fwd_conv_valid_s1},
    {MR_OP_CONV2D, "conv 3x3 s2 same (extra pad bottom/right)", setup_conv3, fwd_conv_same_s2},
    {MR_OP_CONV2D, "conv 1x1 s1 (no im2col)", setup_conv1, fwd_conv_pointwise},
    {MR_OP_CONV2D, "conv 1x1 s2 valid, no bias", setup_conv1_nobias, fwd_conv_strided_1x1},
    {MR_OP_CONV2D, "conv 7x7 s2 pad 3", setup_conv7, fwd_conv_pad3_s2},
    {MR_OP_CONV2D, "conv 3x3 valid over a 3x3 input (no im2col)", setup_conv_whole,
     fwd_conv_valid_s1},
    {MR_OP_CONV2D_BN, "conv 3x3 + frozen BN (im2col)", setup_conv3_bn_im2col, fwd_conv_bn_same},
    {MR_OP_CONV2D_BN, "conv 3x3 + frozen BN (Winograd 4x4)", setup_conv3_bn_winograd4,
     fwd_conv_bn_same},
    {MR_OP_CONV2D_BN, "conv 3x3 + frozen BN (Winograd 6x6)", setup_conv3_bn_winograd6,
     fwd_conv_bn_same},
    {MR_OP_CONV2D_BN, "conv 3x3 s2 same + frozen BN", setup_conv3_bn_im2col, fwd_conv_bn_same_s2},
    {MR_OP_CONV2D_BN, "conv 1x1 s2 + frozen BN, no bias", setup_conv1_bn_nobias,
     fwd_conv_bn_strided_nobias},
    {MR_OP_CONV2D_BN, "conv 3x3 + frozen BN + relu, BN on the output", setup_conv3_bn_scaled,
     fwd_conv_bn_relu_same},
    {MR_OP_DECONV2X2, "deconv 2x2 s2", setup_deconv, fwd_deconv},
    {MR_OP_BATCHNORM_FROZEN, "batchnorm frozen", setup_bn, fwd_bn_frozen},
    {MR_OP_BATCHNORM_BATCH, "batchnorm batch statistics", setup_bn, fwd_bn_batch},
    {MR_OP_RELU, "relu", setup_unary_kinky, fwd_relu},
    {MR_OP_RELU, "relu in place", setup_two, fwd_relu_inplace},
    {MR_OP_RELU, "relu whose input fans out", setup_two, fwd_relu_fan_out},
    {MR_OP_SIGMOID, "sigmoid", setup_unary_kinky, fwd_sigmoid},
    {MR_OP_ADD, "add", setup_two, fwd_add},
    {MR_OP_ADD, "add with fan-out", setup_one, fwd_add_self},
    {MR_OP_ADD_RELU, "add + relu in place", setup_add_relu, fwd_add_relu_inplace},
    {MR_OP_ADD_RELU, "add + relu, input fans out", setup_add_relu, fwd_add_relu_fan_out},
    {MR_OP_MAXPOOL, "maxpool 3x3 s2 same", setup_pool, fwd_pool_same},
    {MR_OP_MAXPOOL, "maxpool 2x2 s2 valid", setup_pool, fwd_pool_valid},
    {MR_OP_MAXPOOL, "maxpool 1x1 s2 (P6)", setup_pool, fwd_pool_subsample},
    {MR_OP_UPSAMPLE2X_ADD, "upsample x2 and add", setup_upsample_add, fwd_upsample_add},
    {MR_OP_LINEAR, "linear", setup_linear, fwd_linear},
    {MR_OP_RESHAPE, "reshape", setup_one, fwd_reshape},
    {MR_OP_CONCAT, "concat channels", setup_two, fwd_concat_c},
    {MR_OP_CONCAT, "concat rows, repeated input", setup_two, fwd_concat_h},
    {MR_OP_SLICE, "slice", setup_one, fwd_slice},
    {MR_OP_GATHER_ROWS, "gather rows, repeated", setup_one, fwd_gather},
    {MR_OP_SOFTMAX_XENT, "softmax cross-entropy", setup_xent, fwd_xent},
    {MR_OP_SOFTMAX_XENT, "softmax cross-entropy, row weights", setup_xent, fwd_xent_weighted},
    {MR_OP_SIGMOID_BCE, "sigmoid BCE", setup_bce, fwd_bce},
    {MR_OP_SMOOTH_L1, "smooth L1", setup_smooth_l1, fwd_smooth_l1},
    {MR_OP_ROI_ALIGN, "roi align crop_and_resize", setup_roi, fwd_roi_crop},
    {MR_OP_ROI_ALIGN, "roi align average", setup_roi, fwd_roi_average},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* ---- the check --------------------------------------------------------------------------- */

static double projected(const mr_tensor *out, const float *r) {
    double sum = 0.0;
    for (int64_t i = 0; i < out->numel; i++) sum += (double)out->data[i] * (double)r[i];
    return sum;
}

static void check_case(const gc_case *c) {
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 64u << 20), MR_OK);
    mr_rng rng;
    mr_rng_seed(&rng, 1234);
    gc_inputs in;
    memset(&in, 0, sizeof in);
    c->setup(&ctx, &rng, &in);
    mr_tensor *out = c->forward(&ctx, &in);
    cr_assert_not_null(out, "%s: forward failed: %s", c->name, mr_last_error());
    cr_assert(ctx.tape.count > 0, "%s: nothing recorded", c->name);
    bool recorded = false;
    for (int i = 0; i < ctx.tape.count; i++) recorded |= ctx.tape.nodes[i].op == c->op;
    cr_assert(recorded, "%s: no %s node on the tape", c->name, mr_op_name(c->op));
    float *r = malloc(sizeof *r * (size_t)out->numel);
    for (int64_t i = 0; i < out->numel; i++) r[i] = mr_rng_normal(&rng);
    cr_assert_eq(mr_backward_seeded(&ctx, out, r), MR_OK, "%s: %s", c->name, mr_last_error());

    const float eps = 1e-2f;
    bool was = mr_no_grad_begin(&ctx);
    for (int k = 0; k < in.n_in; k++) {
        mr_tensor *x = in.in[k];
        cr_assert_not_null(x->grad, "%s: input %s got no gradient", c->name, x->name);
        int64_t checks = x->numel < 40 ? x->numel : 40;
        for (int64_t j = 0; j < checks; j++) {
            int64_t i = x->numel <= 40 ? j : (int64_t)mr_rng_below(&rng, (uint64_t)x->numel);
            float saved = x->data[i];
            x->data[i] = saved + eps;
            double plus = projected(c->forward(&ctx, &in), r);
            x->data[i] = saved - eps;
            double minus = projected(c->forward(&ctx, &in), r);
            x->data[i] = saved;
            double numeric = (plus - minus) / (2.0 * (double)eps);
            double analytic = (double)x->grad[i];
            double tol = 2e-3 + 1e-2 * fmax(fabs(numeric), fabs(analytic));
            cr_assert(fabs(numeric - analytic) <= tol, "%s: d/d%s[%lld] analytic %.6f numeric %.6f",
                      c->name, x->name, (long long)i, analytic, numeric);
        }
    }
    mr_no_grad_end(&ctx, was);
    cr_assert_eq(ctx.status, MR_OK);
    free(r);
    mr_ctx_free(&ctx);
}

Test(gradcheck, every_op_has_a_case) {
    for (int op = 0; op < MR_OP_COUNT; op++) {
        bool found = false;
        for (int c = 0; c < N_CASES; c++) found |= cases[c].op == (mr_op_id)op;
        cr_expect(found, "op %s has no gradient check", mr_op_name((mr_op_id)op));
    }
}

ParameterizedTestParameters(gradcheck, op) {
    static int indices[N_CASES];
    for (int i = 0; i < N_CASES; i++) indices[i] = i;
    return cr_make_param_array(int, indices, N_CASES);
}

ParameterizedTest(int *index, gradcheck, op) {
    check_case(&cases[*index]);
}

Test(gradcheck, roi_boxes_cover_every_level) {
    const int expected[5] = {2, 3, 4, 5, 5};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(mr_roi_level(roi_boxes[i], 1024.0 * 1024.0), expected[i], "box %d", i);
    const float padding[4] = {0, 0, 0, 0};
    cr_assert_eq(mr_roi_level(padding, 1024.0 * 1024.0), 2, "zero boxes read P2 as in Matterport");
    const float p4box[4] = {0.0f, 0.0f, 224.0f / 1023.0f, 224.0f / 1023.0f};
    cr_assert_eq(mr_roi_level(p4box, 1023.0 * 1023.0), 4, "a 224-pixel box goes to P4");
}

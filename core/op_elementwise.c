/* Element-wise ops: ReLU, sigmoid, add and the residual add + ReLU, forward and backward. ReLU
 * and the adds let their (first) input inherit the output's gradient buffer, so backward
 * allocates and zeroes less. */
#include <math.h>

#include "ops.h"

static mr_tensor *like(mr_ctx *ctx, const mr_tensor *x, const char *name) {
    return mr_tensor_new(ctx, name, x->ndim, x->shape);
}

/* ReLU's gradient is taken from the output: y > 0 exactly where x > 0. */
static void relu_backward(mr_node *node) {
    mr_tensor *x = node->inputs[0];
    const float *y = node->out->data, *dy = node->out->grad;
    if (node->grad_heir == 0) { /* x->grad is dy's buffer */
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < x->numel; i++) x->grad[i] = y[i] > 0.0f ? x->grad[i] : 0.0f;
        return;
    }
    /* Selects rather than conditional stores, so the loops vectorise. */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < x->numel; i++)
        x->grad[i] = y[i] > 0.0f ? x->grad[i] + dy[i] : x->grad[i];
}

static void record_relu(mr_ctx *ctx, mr_tensor *out, mr_tensor *x) {
    mr_node *node = mr_record(ctx, MR_OP_RELU, out, &x, 1, relu_backward);
    if (node) node->grad_heir = 0;
}

mr_tensor *mr_relu(mr_ctx *ctx, mr_tensor *x) {
    if (!x || ctx->status != MR_OK) return NULL;
    mr_tensor *out = like(ctx, x, "relu");
    if (!out) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < x->numel; i++) out->data[i] = x->data[i] > 0.0f ? x->data[i] : 0.0f;
    record_relu(ctx, out, x);
    return out;
}

mr_tensor *mr_relu_rectified(mr_ctx *ctx, mr_tensor *x) {
    if (!x || ctx->status != MR_OK) return NULL;
    mr_tensor *out = mr_alloc(ctx, sizeof *out, "relu");
    if (!out) return NULL;
    *out = (mr_tensor){.data = x->data, .ndim = x->ndim, .numel = x->numel, .name = "relu"};
    for (int i = 0; i < x->ndim; i++) out->shape[i] = x->shape[i];
    /* The backward reads only the output, so losing the input's values costs nothing. */
    record_relu(ctx, out, x);
    return out;
}

mr_tensor *mr_relu_inplace(mr_ctx *ctx, mr_tensor *x) {
    if (!x || ctx->status != MR_OK) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = x->data[i] > 0.0f ? x->data[i] : 0.0f;
    return mr_relu_rectified(ctx, x);
}

static void sigmoid_backward(mr_node *node) {
    mr_tensor *x = node->inputs[0];
    const float *y = node->out->data, *dy = node->out->grad;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < x->numel; i++) x->grad[i] += dy[i] * y[i] * (1.0f - y[i]);
}

float mr_sigmoidf(float v) {
    /* Two branches so exp never overflows. */
    if (v >= 0.0f) return 1.0f / (1.0f + expf(-v));
    float e = expf(v);
    return e / (1.0f + e);
}

mr_tensor *mr_sigmoid(mr_ctx *ctx, mr_tensor *x) {
    if (!x || ctx->status != MR_OK) return NULL;
    mr_tensor *out = like(ctx, x, "sigmoid");
    if (!out) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < x->numel; i++) out->data[i] = mr_sigmoidf(x->data[i]);
    mr_record(ctx, MR_OP_SIGMOID, out, &x, 1, sigmoid_backward);
    return out;
}

static void add_backward(mr_node *node) {
    const float *dy = node->out->grad;
    for (int k = 0; k < 2; k++) {
        if (!(node->needs_grad >> k & 1u) || node->grad_heir == k) continue;
        float *g = node->inputs[k]->grad;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < node->out->numel; i++) g[i] += dy[i];
    }
}

mr_tensor *mr_add(mr_ctx *ctx, mr_tensor *a, mr_tensor *b) {
    if (!a || !b || ctx->status != MR_OK) return NULL;
    char as[64], bs[64];
    MR_REQUIRE(mr_same_shape(a, b), "add: %s %s and %s %s differ in shape", a->name,
               mr_shape_str(a, as, sizeof as), b->name, mr_shape_str(b, bs, sizeof bs));
    mr_tensor *out = like(ctx, a, "add");
    if (!out) return NULL;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < a->numel; i++) out->data[i] = a->data[i] + b->data[i];
    mr_tensor *inputs[2] = {a, b};
    mr_node *node = mr_record(ctx, MR_OP_ADD, out, inputs, 2, add_backward);
    if (node) node->grad_heir = 0;
    return out;
}

/* The output's gradient is dead once this has run: it is masked in place (through the
 * inherited buffer, a's gradient with it), then added to the inputs that did not inherit. With
 * a as the heir, b's sum goes in the same pass, where a pass of its own read dy once more
 * (ResNet's residual sums: 65 MB of gradients a step at 512). */
static void add_relu_backward(mr_node *node) {
    float *dy = node->out->grad;
    const float *y = node->out->data;
    if (node->grad_heir == 0 && (node->needs_grad & 2u)) {
        float *db = node->inputs[1]->grad;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < node->out->numel; i++) {
            float d = y[i] > 0.0f ? dy[i] : 0.0f;
            dy[i] = d;
            db[i] += d;
        }
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < node->out->numel; i++) dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    add_backward(node);
}

mr_tensor *mr_add_relu_inplace(mr_ctx *ctx, mr_tensor *a, mr_tensor *b) {
    if (!a || !b || ctx->status != MR_OK) return NULL;
    char as[64], bs[64];
    MR_REQUIRE(mr_same_shape(a, b), "add_relu: %s %s and %s %s differ in shape", a->name,
               mr_shape_str(a, as, sizeof as), b->name, mr_shape_str(b, bs, sizeof bs));
    mr_tensor *out = mr_alloc(ctx, sizeof *out, "add_relu");
    if (!out) return NULL;
    *out = (mr_tensor){.data = a->data, .ndim = a->ndim, .numel = a->numel, .name = "add_relu"};
    for (int i = 0; i < a->ndim; i++) out->shape[i] = a->shape[i];
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < a->numel; i++) {
        float v = a->data[i] + b->data[i];
        out->data[i] = v > 0.0f ? v : 0.0f;
    }
    mr_tensor *inputs[2] = {a, b};
    mr_node *node = mr_record(ctx, MR_OP_ADD_RELU, out, inputs, 2, add_relu_backward);
    if (node) node->grad_heir = 0;
    return out;
}

/* Fused loss primitives: softmax cross-entropy, sigmoid binary cross-entropy from logits and
 * smooth-L1, forward and backward. Each returns a scalar; sums are accumulated in double. */
#include <math.h>
#include <string.h>

#include "ops.h"

static mr_tensor *scalar(mr_ctx *ctx, const char *name, double value) {
    mr_tensor *t = mr_tensor_1d(ctx, name, 1);
    if (t) t->data[0] = (float)value;
    return t;
}

/* Copies of the caller's targets and weights, which need not outlive the call. */
static void *keep(mr_ctx *ctx, const void *src, size_t bytes, const char *op) {
    if (!src) return NULL;
    void *p = mr_alloc(ctx, bytes ? bytes : 1, op);
    if (p) memcpy(p, src, bytes);
    return p;
}

/* ---- softmax cross-entropy ---------------------------------------------------------------- */

typedef struct {
    int32_t *targets;
    float *weights; /* NULL: every row weight 1 */
    float *probs;   /* (N,C) softmax */
    double total_weight;
} xent_saved;

static void softmax_xent_backward(mr_node *node) {
    const xent_saved *s = node->saved;
    mr_tensor *logits = node->inputs[0];
    int64_t n = logits->shape[0], c = logits->shape[1];
    if (s->total_weight <= 0.0) return;
    float scale = node->out->grad[0] / (float)s->total_weight;
    for (int64_t i = 0; i < n; i++) {
        float w = (s->weights ? s->weights[i] : 1.0f) * scale;
        for (int64_t k = 0; k < c; k++)
            logits->grad[i * c + k] +=
                w * (s->probs[i * c + k] - (k == s->targets[i] ? 1.0f : 0.0f));
    }
}

mr_tensor *mr_softmax_xent(mr_ctx *ctx, mr_tensor *logits, const int32_t *targets,
                           const float *row_weights) {
    if (!logits || ctx->status != MR_OK) return NULL;
    MR_REQUIRE(logits->ndim == 2, "softmax_xent: logits %s must be (N, C)", logits->name);
    int64_t n = logits->shape[0], c = logits->shape[1];
    float *probs = mr_alloc(ctx, (size_t)(n * c + 1) * sizeof(float), "softmax_xent");
    if (!probs) return NULL;
    double sum = 0.0, total_weight = 0.0;
    for (int64_t i = 0; i < n; i++) {
        MR_REQUIRE(targets[i] >= 0 && targets[i] < c, "softmax_xent: target %d outside [0, %lld)",
                   targets[i], (long long)c);
        const float *z = logits->data + i * c;
        float zmax = z[0];
        for (int64_t k = 1; k < c; k++) zmax = z[k] > zmax ? z[k] : zmax;
        double denom = 0.0;
        for (int64_t k = 0; k < c; k++) denom += exp((double)(z[k] - zmax));
        for (int64_t k = 0; k < c; k++)
            probs[i * c + k] = (float)(exp((double)(z[k] - zmax)) / denom);
        double ce = log(denom) - (double)(z[targets[i]] - zmax);
        double w = row_weights ? (double)row_weights[i] : 1.0;
        sum += w * ce;
        total_weight += w;
    }
    mr_tensor *out = scalar(ctx, "softmax_xent", total_weight > 0.0 ? sum / total_weight : 0.0);
    mr_node *node = mr_record(ctx, MR_OP_SOFTMAX_XENT, out, &logits, 1, softmax_xent_backward);
    if (node) {
        xent_saved *s = mr_alloc(ctx, sizeof *s, "softmax_xent");
        if (!s) return NULL;
        s->targets = keep(ctx, targets, (size_t)n * sizeof(int32_t), "softmax_xent");
        s->weights = keep(ctx, row_weights, (size_t)n * sizeof(float), "softmax_xent");
        s->probs = probs;
        s->total_weight = total_weight;
        node->saved = s;
    }
    return out;
}

/* ---- sigmoid binary cross-entropy from logits --------------------------------------------- */

typedef struct {
    float *targets;
} bce_saved;

static void sigmoid_bce_backward(mr_node *node) {
    mr_tensor *z = node->inputs[0];
    const float *t = ((bce_saved *)node->saved)->targets;
    if (z->numel == 0) return;
    float scale = node->out->grad[0] / (float)z->numel;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < z->numel; i++) z->grad[i] += scale * (mr_sigmoidf(z->data[i]) - t[i]);
}

mr_tensor *mr_sigmoid_bce(mr_ctx *ctx, mr_tensor *logits, const float *targets) {
    if (!logits || ctx->status != MR_OK) return NULL;
    double sum = 0.0;
    for (int64_t i = 0; i < logits->numel; i++) {
        /* max(z,0) - z t + log(1 + exp(-|z|)): no overflow for any z. */
        double z = (double)logits->data[i], t = (double)targets[i];
        sum += (z > 0.0 ? z : 0.0) - z * t + log1p(exp(-fabs(z)));
    }
    mr_tensor *out = scalar(ctx, "sigmoid_bce", logits->numel ? sum / (double)logits->numel : 0.0);
    mr_node *node = mr_record(ctx, MR_OP_SIGMOID_BCE, out, &logits, 1, sigmoid_bce_backward);
    if (node) {
        bce_saved *s = mr_alloc(ctx, sizeof *s, "sigmoid_bce");
        if (!s) return NULL;
        s->targets = keep(ctx, targets, (size_t)logits->numel * sizeof(float), "sigmoid_bce");
        node->saved = s;
    }
    return out;
}

/* ---- smooth L1 ---------------------------------------------------------------------------- */

typedef struct {
    float *targets;
} smooth_l1_saved;

static void smooth_l1_backward(mr_node *node) {
    mr_tensor *p = node->inputs[0];
    const float *t = ((smooth_l1_saved *)node->saved)->targets;
    if (p->numel == 0) return;
    float scale = node->out->grad[0] / (float)p->numel;
    for (int64_t i = 0; i < p->numel; i++) {
        float d = p->data[i] - t[i];
        float g = fabsf(d) < 1.0f ? d : (d > 0.0f ? 1.0f : -1.0f);
        p->grad[i] += scale * g;
    }
}

mr_tensor *mr_smooth_l1(mr_ctx *ctx, mr_tensor *pred, const float *targets) {
    if (!pred || ctx->status != MR_OK) return NULL;
    double sum = 0.0;
    for (int64_t i = 0; i < pred->numel; i++) {
        double d = fabs((double)(pred->data[i] - targets[i]));
        sum += d < 1.0 ? 0.5 * d * d : d - 0.5;
    }
    mr_tensor *out = scalar(ctx, "smooth_l1", pred->numel ? sum / (double)pred->numel : 0.0);
    mr_node *node = mr_record(ctx, MR_OP_SMOOTH_L1, out, &pred, 1, smooth_l1_backward);
    if (node) {
        smooth_l1_saved *s = mr_alloc(ctx, sizeof *s, "smooth_l1");
        if (!s) return NULL;
        s->targets = keep(ctx, targets, (size_t)pred->numel * sizeof(float), "smooth_l1");
        node->saved = s;
    }
    return out;
}

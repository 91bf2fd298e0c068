/* Batch normalisation over the last (channel) axis: the frozen form Matterport trains with
 * (moving statistics only, TRAIN_BN=False) and the batch-statistics form, forward and
 * backward. Moving statistics never receive gradients. */
#include <math.h>
#include <string.h>

#include "ops.h"

static void check_bn(const char *op, const mr_tensor *x, const mr_tensor *gamma,
                     const mr_tensor *beta, const mr_tensor *mean, const mr_tensor *var) {
    int64_t c = x->shape[x->ndim - 1];
    MR_REQUIRE(gamma->numel == c && beta->numel == c && mean->numel == c && var->numel == c,
               "%s: input %s has %lld channels but gamma/beta/mean/var have %lld/%lld/%lld/%lld",
               op, x->name, (long long)c, (long long)gamma->numel, (long long)beta->numel,
               (long long)mean->numel, (long long)var->numel);
}

/* ---- frozen: y = x * scale + shift per channel ------------------------------------------ */

typedef struct {
    const float *mean, *inv_std; /* (C) */
} bn_frozen_saved;

static void bn_frozen_backward(mr_node *node) {
    mr_tensor *x = node->inputs[0], *gamma = node->inputs[1], *beta = node->inputs[2];
    const bn_frozen_saved *s = node->saved;
    const float *mean = s->mean, *inv_std = s->inv_std;
    const float *dy = node->out->grad;
    int64_t c = x->shape[x->ndim - 1], rows = x->numel / c;
    if (node->needs_grad & 1u) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t k = 0; k < c; k++)
                x->grad[r * c + k] += dy[r * c + k] * gamma->data[k] * inv_std[k];
    }
    bool dg = node->needs_grad & 2u, db = node->needs_grad & 4u;
    if (!dg && !db) return;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < c; k++) {
            float g = dy[r * c + k];
            if (dg) gamma->grad[k] += g * (x->data[r * c + k] - mean[k]) * inv_std[k];
            if (db) beta->grad[k] += g;
        }
}

mr_tensor *mr_batchnorm_frozen(mr_ctx *ctx, mr_tensor *x, mr_tensor *gamma, mr_tensor *beta,
                               const mr_tensor *moving_mean, const mr_tensor *moving_var,
                               float eps) {
    if (!x || ctx->status != MR_OK) return NULL;
    check_bn("batchnorm_frozen", x, gamma, beta, moving_mean, moving_var);
    int64_t c = x->shape[x->ndim - 1], rows = x->numel / c;
    mr_tensor *out = mr_tensor_new(ctx, "batchnorm", x->ndim, x->shape);
    float *inv_std = mr_alloc(ctx, (size_t)c * sizeof(float), "batchnorm_frozen");
    float *shift = mr_alloc(ctx, (size_t)c * sizeof(float), "batchnorm_frozen");
    if (!out || !inv_std || !shift) return NULL;
    for (int64_t k = 0; k < c; k++) {
        inv_std[k] = 1.0f / sqrtf(moving_var->data[k] + eps);
        shift[k] = beta->data[k] - moving_mean->data[k] * gamma->data[k] * inv_std[k];
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < c; k++)
            out->data[r * c + k] = x->data[r * c + k] * gamma->data[k] * inv_std[k] + shift[k];
    mr_tensor *inputs[3] = {x, gamma, beta};
    mr_node *node = mr_record(ctx, MR_OP_BATCHNORM_FROZEN, out, inputs, 3, bn_frozen_backward);
    if (node) {
        bn_frozen_saved *s = mr_alloc(ctx, sizeof *s, "batchnorm_frozen");
        if (!s) return NULL;
        s->mean = moving_mean->data;
        s->inv_std = inv_std;
        node->saved = s;
    }
    return out;
}

/* ---- batch statistics ------------------------------------------------------------------- */

typedef struct {
    float *mean, *inv_std; /* (C) of this batch */
} bn_batch_saved;

static void bn_batch_backward(mr_node *node) {
    mr_tensor *x = node->inputs[0], *gamma = node->inputs[1], *beta = node->inputs[2];
    const bn_batch_saved *s = node->saved;
    const float *dy = node->out->grad;
    int64_t c = x->shape[x->ndim - 1], rows = x->numel / c;
    for (int64_t k = 0; k < c; k++) {
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            double xhat = (double)((x->data[r * c + k] - s->mean[k]) * s->inv_std[k]);
            sum_dy += (double)dy[r * c + k];
            sum_dy_xhat += (double)dy[r * c + k] * xhat;
        }
        if (node->needs_grad & 2u) gamma->grad[k] += (float)sum_dy_xhat;
        if (node->needs_grad & 4u) beta->grad[k] += (float)sum_dy;
        if (node->needs_grad & 1u) {
            /* dx = gamma * inv_std * (dy - mean(dy) - xhat * mean(dy * xhat)) */
            double scale = (double)(gamma->data[k] * s->inv_std[k]);
            double mean_dy = sum_dy / (double)rows, mean_dy_xhat = sum_dy_xhat / (double)rows;
            for (int64_t r = 0; r < rows; r++) {
                double xhat = (double)((x->data[r * c + k] - s->mean[k]) * s->inv_std[k]);
                x->grad[r * c + k] +=
                    (float)(scale * ((double)dy[r * c + k] - mean_dy - xhat * mean_dy_xhat));
            }
        }
    }
}

mr_tensor *mr_batchnorm_batch(mr_ctx *ctx, mr_tensor *x, mr_tensor *gamma, mr_tensor *beta,
                              mr_tensor *moving_mean, mr_tensor *moving_var, float eps,
                              float momentum, bool update_moving) {
    if (!x || ctx->status != MR_OK) return NULL;
    check_bn("batchnorm_batch", x, gamma, beta, moving_mean, moving_var);
    int64_t c = x->shape[x->ndim - 1], rows = x->numel / c;
    mr_tensor *out = mr_tensor_new(ctx, "batchnorm", x->ndim, x->shape);
    float *mean = mr_alloc(ctx, (size_t)c * sizeof(float), "batchnorm_batch");
    float *inv_std = mr_alloc(ctx, (size_t)c * sizeof(float), "batchnorm_batch");
    if (!out || !mean || !inv_std) return NULL;
    for (int64_t k = 0; k < c; k++) {
        double sum = 0.0, sq = 0.0;
        for (int64_t r = 0; r < rows; r++) sum += (double)x->data[r * c + k];
        double mu = sum / (double)rows;
        for (int64_t r = 0; r < rows; r++) {
            double d = (double)x->data[r * c + k] - mu;
            sq += d * d;
        }
        double var = sq / (double)rows; /* biased, as normalisation uses */
        mean[k] = (float)mu;
        inv_std[k] = (float)(1.0 / sqrt(var + (double)eps));
        if (update_moving) {
            /* Keras keeps the unbiased variance in the moving average. */
            double unbiased = rows > 1 ? sq / (double)(rows - 1) : var;
            moving_mean->data[k] = momentum * moving_mean->data[k] + (1.0f - momentum) * (float)mu;
            moving_var->data[k] =
                momentum * moving_var->data[k] + (1.0f - momentum) * (float)unbiased;
        }
    }
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < c; k++)
            out->data[r * c + k] =
                (x->data[r * c + k] - mean[k]) * inv_std[k] * gamma->data[k] + beta->data[k];
    mr_tensor *inputs[3] = {x, gamma, beta};
    mr_node *node = mr_record(ctx, MR_OP_BATCHNORM_BATCH, out, inputs, 3, bn_batch_backward);
    if (node) {
        bn_batch_saved *s = mr_alloc(ctx, sizeof *s, "batchnorm_batch");
        if (!s) return NULL;
        s->mean = mean;
        s->inv_std = inv_std;
        node->saved = s;
    }
    return out;
}

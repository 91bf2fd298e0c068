/* `mrcnn demo`: the README's first command. Until the full pipeline lands it fits a small
 * convolutional lesion segmenter (conv-BN-ReLU, a strided stage, upsampling, a sigmoid mask)
 * on generated speckled images with elliptical lesions, with the engine's SGD step, and prints
 * the loss falling and the final mask IoU on held-out images. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/ops.h"
#include "../core/params.h"
#include "../core/rng.h"
#include "../core/runtime.h"
#include "cli.h"

#define SIDE 32
#define BATCH 8

/* A speckled background with one darker ellipse; mask = the ellipse. */
static void make_image(mr_rng *rng, float *img, float *mask) {
    float cy = 8.0f + 16.0f * mr_rng_uniform(rng), cx = 8.0f + 16.0f * mr_rng_uniform(rng);
    float ry = 3.0f + 4.0f * mr_rng_uniform(rng), rx = 4.0f + 5.0f * mr_rng_uniform(rng);
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            float dy = ((float)y - cy) / ry, dx = ((float)x - cx) / rx;
            bool inside = dy * dy + dx * dx <= 1.0f;
            float speckle = 0.6f + 0.4f * mr_rng_uniform(rng);
            img[y * SIDE + x] = (inside ? 0.2f : 0.8f) * speckle - 0.5f;
            mask[y * SIDE + x] = inside ? 1.0f : 0.0f;
        }
}

typedef struct {
    mr_tensor *w1, *b1, *gamma, *beta, *mean, *var, *w2, *b2, *w3, *b3;
} demo_net;

static void declare(mr_params *p) {
    int64_t w1[4] = {3, 3, 1, 8}, c8[1] = {8}, w2[4] = {3, 3, 8, 16}, c16[1] = {16},
            w3[4] = {1, 1, 24, 1}, c1[1] = {1};
    mr_params_add(p, "conv_a/kernel", 4, w1, true);
    mr_params_add(p, "conv_a/bias", 1, c8, true);
    mr_params_add(p, "bn_a/gamma", 1, c8, true);
    mr_params_add(p, "bn_a/beta", 1, c8, true);
    mr_params_add(p, "bn_a/moving_mean", 1, c8, false);
    mr_params_add(p, "bn_a/moving_variance", 1, c8, false);
    mr_params_add(p, "conv_b/kernel", 4, w2, true);
    mr_params_add(p, "conv_b/bias", 1, c16, true);
    mr_params_add(p, "mask/kernel", 4, w3, true);
    mr_params_add(p, "mask/bias", 1, c1, true);
}

static mr_tensor *forward(mr_ctx *ctx, demo_net *n, mr_tensor *x, bool training) {
    mr_tensor *a = mr_conv2d(ctx, x, n->w1, n->b1, 1, MR_PAD_SAME);
    a = training ? mr_batchnorm_batch(ctx, a, n->gamma, n->beta, n->mean, n->var, 1e-3f, 0.9f, true)
                 : mr_batchnorm_frozen(ctx, a, n->gamma, n->beta, n->mean, n->var, 1e-3f);
    a = mr_relu(ctx, a);
    mr_tensor *b = mr_relu(ctx, mr_conv2d(ctx, mr_maxpool(ctx, a, 2, 2, MR_PAD_VALID), n->w2,
                                          n->b2, 1, MR_PAD_SAME));
    mr_tensor *parts[2] = {a, mr_upsample2x(ctx, b)};
    return mr_conv2d(ctx, mr_concat(ctx, parts, 2, 3), n->w3, n->b3, 1, MR_PAD_VALID);
}

int cmd_demo(int argc, char **argv) {
    const char *out = "demo";
    long steps = 300;
    mr_opt opts[] = {{"--out", MR_OPT_STRING, &out, "output folder (unused until training lands)"},
                     {"--steps", MR_OPT_INT, &steps, "SGD steps (default 300)"}};
    int code = 0;
    if (!mr_parse_args("demo", "[--steps N]", argc, argv, opts, 2, NULL, &code)) return code;
    if (steps < 1 || steps > 100000) {
        fprintf(stderr, "mrcnn demo: --steps must be 1..100000, got %ld\n", steps);
        return 2;
    }
    mr_runtime_banner();
    mr_params params;
    mr_params_init(&params);
    declare(&params);
    mr_status st = mr_params_finalize(&params);
    if (st != MR_OK) return mr_exit_code(st);
    demo_net n = {mr_params_tensor(&params, "conv_a/kernel"), mr_params_tensor(&params, "conv_a/bias"),
                  mr_params_tensor(&params, "bn_a/gamma"), mr_params_tensor(&params, "bn_a/beta"),
                  mr_params_tensor(&params, "bn_a/moving_mean"),
                  mr_params_tensor(&params, "bn_a/moving_variance"),
                  mr_params_tensor(&params, "conv_b/kernel"), mr_params_tensor(&params, "conv_b/bias"),
                  mr_params_tensor(&params, "mask/kernel"), mr_params_tensor(&params, "mask/bias")};
    mr_rng rng;
    mr_rng_seed(&rng, 42);
    for (int i = 0; i < params.count; i++) {
        mr_param *q = &params.items[i];
        float fan_in = q->t.ndim == 4 ? (float)(q->t.shape[0] * q->t.shape[1] * q->t.shape[2]) : 1.0f;
        for (int64_t k = 0; k < q->t.numel; k++)
            q->t.data[k] = q->t.ndim == 4 ? sqrtf(2.0f / fan_in) * mr_rng_normal(&rng) : 0.0f;
    }
    for (int k = 0; k < 8; k++) n.gamma->data[k] = n.var->data[k] = 1.0f;

    mr_ctx ctx;
    if ((st = mr_ctx_init(&ctx, (size_t)64 << 20)) != MR_OK) return mr_exit_code(st);
    static float images[BATCH * SIDE * SIDE], masks[BATCH * SIDE * SIDE];
    const float lr = 0.05f, momentum = 0.9f;
    printf("fitting a small lesion segmenter on generated %dx%d speckle images, batch %d\n", SIDE,
           SIDE, BATCH);
    double first = 0.0, last = 0.0;
    for (long step = 1; step <= steps; step++) {
        for (int b = 0; b < BATCH; b++)
            make_image(&rng, images + b * SIDE * SIDE, masks + b * SIDE * SIDE);
        mr_ctx_reset(&ctx);
        mr_tensor *x = mr_tensor_4d(&ctx, "images", BATCH, SIDE, SIDE, 1);
        if (!x) return mr_exit_code(ctx.status);
        memcpy(x->data, images, sizeof images);
        mr_tensor *loss = mr_sigmoid_bce(&ctx, forward(&ctx, &n, x, true), masks);
        mr_params_zero_grads(&params);
        if (!loss || mr_backward(&ctx, loss) != MR_OK) return mr_exit_code(ctx.status);
        for (size_t i = 0; i < params.total; i++) {
            params.momentum[i] = momentum * params.momentum[i] - lr * params.grads[i];
            params.values[i] += params.momentum[i];
        }
        double value = (double)loss->data[0];
        if (step == 1) first = value;
        last = value;
        if (step == 1 || step % 50 == 0) printf("step %4ld  mask loss %.4f\n", step, value);
    }
    /* Held-out images with the moving statistics, as inference runs. */
    double inter = 0.0, uni = 0.0;
    mr_ctx_reset(&ctx);
    bool was = mr_no_grad_begin(&ctx);
    for (int b = 0; b < BATCH; b++)
        make_image(&rng, images + b * SIDE * SIDE, masks + b * SIDE * SIDE);
    mr_tensor *x = mr_tensor_4d(&ctx, "images", BATCH, SIDE, SIDE, 1);
    if (!x) return mr_exit_code(ctx.status);
    memcpy(x->data, images, sizeof images);
    mr_tensor *logits = forward(&ctx, &n, x, false);
    mr_no_grad_end(&ctx, was);
    if (!logits) return mr_exit_code(ctx.status);
    for (int64_t i = 0; i < logits->numel; i++) {
        bool p = logits->data[i] > 0.0f, t = masks[i] > 0.5f;
        inter += p && t;
        uni += p || t;
    }
    printf("mask loss %.4f -> %.4f; held-out mask IoU %.3f\n", first, last, inter / uni);
    mr_ctx_free(&ctx);
    mr_params_free(&params);
    (void)out;
    return last < first ? 0 : 1;
}

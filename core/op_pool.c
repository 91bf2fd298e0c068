/* Max pooling (TF same/valid or explicit padding; padded cells never win) and the FPN's
 * nearest x2 upsample-and-add, forward and backward. Both backward passes are written as gathers
 * over input pixels, so they run in parallel with no two threads adding into one element. */
#include <math.h>
#include <string.h>

#include "ops.h"

typedef struct {
    int64_t n, h, w, c, oh, ow;
    int kernel, stride;
    int64_t pad_top, pad_left;
    int32_t *argmax; /* (N,OH,OW,C): flat input index of the winner */
} pool_saved;

static void pool_extent(int pad, int64_t in, int k, int stride, int64_t *out, int64_t *before) {
    if (pad == MR_PAD_SAME) {
        *out = (in + stride - 1) / stride;
        int64_t total = (*out - 1) * stride + k - in;
        *before = total > 0 ? total / 2 : 0;
    } else {
        *out = (in + 2 * pad - k) / stride + 1;
        *before = pad;
    }
}

/* Output rows/cols whose windows can contain input coordinate i: o*stride - before <= i <
 * o*stride - before + k. */
static void window_range(int64_t i, const pool_saved *s, int64_t before, int64_t out_size,
                         int64_t *lo, int64_t *hi) {
    int64_t a = i + before - s->kernel + 1; /* o*stride >= a */
    *lo = a <= 0 ? 0 : (a + s->stride - 1) / s->stride;
    *hi = (i + before) / s->stride; /* o*stride <= i + before */
    if (*hi >= out_size) *hi = out_size - 1;
}

static void maxpool_backward(mr_node *node) {
    const pool_saved *s = node->saved;
    mr_tensor *x = node->inputs[0];
    const float *dy = node->out->grad;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < s->n * s->h; r++) {
        int64_t n = r / s->h, iy = r % s->h, y0, y1;
        window_range(iy, s, s->pad_top, s->oh, &y0, &y1);
        for (int64_t ix = 0; ix < s->w; ix++) {
            int64_t x0, x1;
            window_range(ix, s, s->pad_left, s->ow, &x0, &x1);
            for (int64_t ch = 0; ch < s->c; ch++) {
                int64_t self = ((n * s->h + iy) * s->w + ix) * s->c + ch;
                float g = 0.0f;
                for (int64_t oy = y0; oy <= y1; oy++)
                    for (int64_t ox = x0; ox <= x1; ox++) {
                        int64_t o = ((n * s->oh + oy) * s->ow + ox) * s->c + ch;
                        if (s->argmax[o] == self) g += dy[o];
                    }
                x->grad[self] += g;
            }
        }
    }
}

/* The flat index of the first cell of window [y0,y1)x[x0,x1) that holds `best` in channel ch:
 * the maximum's winner, as only a strictly greater cell replaces it. A NaN maximum can only be
 * the seed's, the window's first cell. */
static int32_t first_holding(const float *x, const pool_saved *s, int64_t n, int64_t y0, int64_t y1,
                             int64_t x0, int64_t x1, int64_t ch, float best) {
    for (int64_t iy = y0; iy < y1 && !isnan(best); iy++)
        for (int64_t ix = x0; ix < x1; ix++) {
            int64_t i = ((n * s->h + iy) * s->w + ix) * s->c + ch;
            if (x[i] == best) return (int32_t)i;
        }
    return (int32_t)(((n * s->h + y0) * s->w + x0) * s->c + ch);
}

mr_tensor *mr_maxpool(mr_ctx *ctx, mr_tensor *x, int kernel, int stride, int pad) {
    if (!x || ctx->status != MR_OK) return NULL;
    MR_REQUIRE(x->ndim == 4 && kernel >= 1 && stride >= 1, "maxpool: input %s kernel %d stride %d",
               x->name, kernel, stride);
    MR_REQUIRE(x->numel < INT32_MAX, "maxpool: input %s too large", x->name);
    pool_saved s = {.n = x->shape[0],
                    .h = x->shape[1],
                    .w = x->shape[2],
                    .c = x->shape[3],
                    .kernel = kernel,
                    .stride = stride};
    pool_extent(pad, s.h, kernel, stride, &s.oh, &s.pad_top);
    pool_extent(pad, s.w, kernel, stride, &s.ow, &s.pad_left);
    mr_tensor *out = mr_tensor_4d(ctx, "maxpool", s.n, s.oh, s.ow, s.c);
    const bool recorded = ctx->recording && x->requires_grad;
    if (!out) return NULL;
    if (recorded) {
        s.argmax = mr_alloc(ctx, (size_t)(s.n * s.oh * s.ow * s.c) * sizeof(int32_t), "maxpool");
        if (!s.argmax) return NULL;
    }
    /* Channels are innermost, so each window cell is one contiguous run folded into the running
     * maximum, which vectorises. The first valid cell seeds the maximum and a later cell replaces
     * it only when strictly greater, so the winner is the first cell in window order holding the
     * maximum, or the seed when that is NaN; only a recorded pool looks for it. */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < s.n * s.oh; r++) {
        int64_t n = r / s.oh, oy = r % s.oh;
        int64_t y0 = oy * stride - s.pad_top, y1 = y0 + kernel;
        y0 = y0 < 0 ? 0 : y0;
        y1 = y1 > s.h ? s.h : y1;
        for (int64_t ox = 0; ox < s.ow; ox++) {
            int64_t x0 = ox * stride - s.pad_left, x1 = x0 + kernel;
            x0 = x0 < 0 ? 0 : x0;
            x1 = x1 > s.w ? s.w : x1;
            int64_t o = ((n * s.oh + oy) * s.ow + ox) * s.c;
            float *restrict best = out->data + o;
            if (y0 >= y1 || x0 >= x1) {
                for (int64_t ch = 0; ch < s.c; ch++) {
                    best[ch] = 0.0f;
                    if (recorded) s.argmax[o + ch] = -1;
                }
                continue;
            }
            const float *seed = x->data + ((n * s.h + y0) * s.w + x0) * s.c;
            memcpy(best, seed, (size_t)s.c * sizeof *best);
            for (int64_t iy = y0; iy < y1; iy++)
                for (int64_t ix = iy == y0 ? x0 + 1 : x0; ix < x1; ix++) {
                    const float *restrict cell = x->data + ((n * s.h + iy) * s.w + ix) * s.c;
                    for (int64_t ch = 0; ch < s.c; ch++)
                        best[ch] = cell[ch] > best[ch] ? cell[ch] : best[ch];
                }
            if (recorded)
                for (int64_t ch = 0; ch < s.c; ch++)
                    s.argmax[o + ch] = first_holding(x->data, &s, n, y0, y1, x0, x1, ch, best[ch]);
        }
    }
    mr_node *node = mr_record(ctx, MR_OP_MAXPOOL, out, &x, 1, maxpool_backward);
    if (node) {
        pool_saved *saved = mr_alloc(ctx, sizeof *saved, "maxpool");
        if (!saved) return NULL;
        *saved = s;
        node->saved = saved;
    }
    return out;
}

/* The FPN's top-down step. The result is written over `base`, so the upsampled tensor never
 * exists on its own; base's gradient is the output's (it inherits the buffer), x's is the sum
 * over each 2x2 block. */
static void upsample2x_add_backward(mr_node *node) {
    mr_tensor *x = node->inputs[0], *base = node->inputs[1];
    const float *dy = node->out->grad;
    int64_t n = x->shape[0], h = x->shape[1], w = x->shape[2], c = x->shape[3];
    if ((node->needs_grad & 2u) && node->grad_heir != 1)
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < base->numel; i++) base->grad[i] += dy[i];
    if (!(node->needs_grad & 1u)) return;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n * h; r++) {
        int64_t b = r / h, y = r % h;
        for (int64_t xx = 0; xx < w; xx++)
            for (int64_t ch = 0; ch < c; ch++) {
                float g = 0.0f;
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++)
                        g += dy[((b * 2 * h + 2 * y + i) * 2 * w + 2 * xx + j) * c + ch];
                x->grad[((b * h + y) * w + xx) * c + ch] += g;
            }
    }
}

mr_tensor *mr_upsample2x_add(mr_ctx *ctx, mr_tensor *x, mr_tensor *base) {
    if (!x || !base || ctx->status != MR_OK) return NULL;
    MR_REQUIRE(x->ndim == 4, "upsample2x_add: input %s is not NHWC", x->name);
    int64_t n = x->shape[0], h = x->shape[1], w = x->shape[2], c = x->shape[3];
    char xs[64], bs[64];
    MR_REQUIRE(base->ndim == 4 && base->shape[0] == n && base->shape[1] == 2 * h &&
                   base->shape[2] == 2 * w && base->shape[3] == c,
               "upsample2x_add: %s %s is not twice the size of %s %s", base->name,
               mr_shape_str(base, bs, sizeof bs), x->name, mr_shape_str(x, xs, sizeof xs));
    mr_tensor *out = mr_alloc(ctx, sizeof *out, "upsample2x_add");
    if (!out) return NULL;
    *out =
        (mr_tensor){.data = base->data, .ndim = 4, .numel = base->numel, .name = "upsample2x_add"};
    for (int i = 0; i < 4; i++) out->shape[i] = base->shape[i];
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < n * 2 * h; r++) {
        int64_t b = r / (2 * h), oy = r % (2 * h);
        for (int64_t ox = 0; ox < 2 * w; ox++)
            for (int64_t ch = 0; ch < c; ch++)
                out->data[((b * 2 * h + oy) * 2 * w + ox) * c + ch] +=
                    x->data[((b * h + oy / 2) * w + ox / 2) * c + ch];
    }
    mr_tensor *inputs[2] = {x, base};
    mr_node *node = mr_record(ctx, MR_OP_UPSAMPLE2X_ADD, out, inputs, 2, upsample2x_add_backward);
    if (node) node->grad_heir = 1;
    return out;
}

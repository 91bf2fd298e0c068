/* conv2d (any kernel, stride, TF-same/valid/explicit padding, optional bias) and the 2x2
 * stride-2 transposed conv, forward and backward. NHWC input, HWIO kernels. Three paths:
 * - 1x1 stride-1 unpadded: a single GEMM on the input itself, with no copy;
 * - 3x3 stride 1 with enough channels and pixels: Winograd (core/winograd.c);
 * - anything else: one GEMM per chunk of output pixels over an im2col buffer. */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "ops.h"
#include "util.h"
#include "winograd.h"

/* im2col chunks stay below this many floats, so scratch memory stays bounded on big images. */
#define COL_CHUNK_FLOATS ((int64_t)2 << 20)

typedef mr_conv_geom conv_geom;

/* TF "same": out = ceil(in / stride); the odd padding pixel goes after (bottom/right). */
static void pad_for(int pad, int64_t in, int64_t k, int64_t stride, int64_t *out, int64_t *before) {
    if (pad == MR_PAD_SAME) {
        *out = (in + stride - 1) / stride;
        int64_t total = (*out - 1) * stride + k - in;
        if (total < 0) total = 0;
        *before = total / 2;
    } else {
        *out = (in + 2 * pad - k) / stride + 1;
        *before = pad;
    }
}

/* The algorithms' workspace (im2col, Winograd, deconv). */
static float *scratch(mr_ctx *ctx, int64_t floats) {
    return mr_conv_scratch(ctx, MR_SCRATCH_CONV, floats);
}

/* Whether the im2col matrix is the input itself, so no copy is made: a 1x1 stride-1 convolution
 * without padding, or one whose kernel covers the whole unpadded input (one output pixel: the box
 * head's pool x pool layer, where each ROI's row is its 7 x 7 x 256 features). */
static bool col_is_input(const conv_geom *g) {
    if (g->pad_top != 0 || g->pad_left != 0) return false;
    if (g->kh == 1 && g->kw == 1 && g->stride == 1) return true;
    return g->kh == g->h && g->kw == g->w && g->oh == 1 && g->ow == 1;
}

/* Rows [m0, m1) of the im2col matrix: row m = output pixel (n, oy, ox), columns (ky, kx, c). */
static void im2col(float *col, const float *x, const conv_geom *g, int64_t m0, int64_t m1) {
    int64_t kdim = g->kh * g->kw * g->cin;
#pragma omp parallel for schedule(static)
    for (int64_t m = m0; m < m1; m++) {
        int64_t ox = m % g->ow, oy = (m / g->ow) % g->oh, n = m / (g->ow * g->oh);
        float *row = col + (m - m0) * kdim;
        int64_t ix0 = ox * g->stride - g->pad_left;
        for (int64_t ky = 0; ky < g->kh; ky++) {
            int64_t iy = oy * g->stride - g->pad_top + ky;
            if (iy >= 0 && iy < g->h && ix0 >= 0 && ix0 + g->kw <= g->w) {
                /* The whole kernel row inside the image: its pixels are adjacent in NHWC, one
                 * copy (conv1's 3 channels would otherwise take 7 tiny copies a row). */
                memcpy(row + ky * g->kw * g->cin, x + ((n * g->h + iy) * g->w + ix0) * g->cin,
                       (size_t)(g->kw * g->cin) * sizeof(float));
                continue;
            }
            for (int64_t kx = 0; kx < g->kw; kx++) {
                int64_t ix = ix0 + kx;
                float *dst = row + (ky * g->kw + kx) * g->cin;
                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w)
                    memset(dst, 0, (size_t)g->cin * sizeof(float));
                else
                    memcpy(dst, x + ((n * g->h + iy) * g->w + ix) * g->cin,
                           (size_t)g->cin * sizeof(float));
            }
        }
    }
}

/* dx += col2im(dcol) for rows [m0, m1). Threads split the channels, so no two threads ever
 * add into the same input element. */
static void col2im_add(float *dx, const float *dcol, const conv_geom *g, int64_t m0, int64_t m1) {
    int64_t kdim = g->kh * g->kw * g->cin;
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t c0 = g->cin * t / nt, c1 = g->cin * (t + 1) / nt;
        for (int64_t m = m0; m < m1 && c1 > c0; m++) {
            int64_t ox = m % g->ow, oy = (m / g->ow) % g->oh, n = m / (g->ow * g->oh);
            const float *row = dcol + (m - m0) * kdim;
            for (int64_t ky = 0; ky < g->kh; ky++) {
                int64_t iy = oy * g->stride - g->pad_top + ky;
                if (iy < 0 || iy >= g->h) continue;
                for (int64_t kx = 0; kx < g->kw; kx++) {
                    int64_t ix = ox * g->stride - g->pad_left + kx;
                    if (ix < 0 || ix >= g->w) continue;
                    const float *src = row + (ky * g->kw + kx) * g->cin;
                    float *dst = dx + ((n * g->h + iy) * g->w + ix) * g->cin;
                    for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
                }
            }
        }
    }
}

static int64_t chunk_rows(const conv_geom *g) {
    int64_t kdim = g->kh * g->kw * g->cin;
    int64_t rows = COL_CHUNK_FLOATS / (kdim > 0 ? kdim : 1);
    return rows < 1 ? 1 : rows;
}

/* acc[o] += sum over rows r of a[r, o] (times b[r, o] - centre[o] when b is given; a NULL centre
 * is 0). Threads take fixed blocks of whole rows, so each reads memory in one stream (threads
 * owning columns read short pieces of every row: half the speed), and add the blocks' sums in
 * block order: the blocks and the order depend only on the shape, so the bits do not depend on
 * the thread count. The total goes to acc in one addition, so what acc held (another image's
 * gradient) does not change the sum either. */
static void column_sums(float *acc, const float *a, const float *b, const float *centre,
                        int64_t rows, int64_t cols) {
    enum { PANEL = 1024, BLOCK_FLOATS = 16384 }; /* a block: 64 KB of a */
    for (int64_t o0 = 0; o0 < cols; o0 += PANEL) {
        int64_t n = cols - o0 < PANEL ? cols - o0 : PANEL;
        int64_t block = BLOCK_FLOATS / n > 16 ? BLOCK_FLOATS / n : 16;
        int64_t blocks = (rows + block - 1) / block;
        float total[PANEL] = {0}; /* the panel's sums, added to acc in one step as acc's own */
#pragma omp parallel
        {
            float sum[PANEL];
#pragma omp for ordered schedule(static, 1)
            for (int64_t k = 0; k < blocks; k++) {
                int64_t r1 = (k + 1) * block < rows ? (k + 1) * block : rows;
                memset(sum, 0, (size_t)n * sizeof(float));
                for (int64_t r = k * block; r < r1; r++) {
                    const float *restrict ar = a + r * cols + o0;
                    if (b && centre) {
                        const float *restrict br = b + r * cols + o0, *restrict cr = centre + o0;
#pragma omp simd
                        for (int64_t j = 0; j < n; j++) sum[j] += ar[j] * (br[j] - cr[j]);
                    } else if (b) {
                        const float *restrict br = b + r * cols + o0;
#pragma omp simd
                        for (int64_t j = 0; j < n; j++) sum[j] += ar[j] * br[j];
                    } else {
#pragma omp simd
                        for (int64_t j = 0; j < n; j++) sum[j] += ar[j];
                    }
                }
#pragma omp ordered
                for (int64_t j = 0; j < n; j++) total[j] += sum[j];
            }
        }
        for (int64_t j = 0; j < n; j++) acc[o0 + j] += total[j];
    }
}

/* ---- the three paths behind one forward and one backward ----------------------------------- */

/* y = conv(x, w) + b (b may be NULL), then max(0, y) with `relu`. `layer` (the kernel tensor)
 * names what a context that keeps kernels keeps of w (mr_ctx_keep_kernels); w may be NULL once
 * that is kept (kernel_kept). */
static void conv_forward(mr_ctx *ctx, const conv_geom *g, bool winograd, const float *x,
                         const float *w, const void *layer, const float *b, bool relu, float *y) {
    int64_t M = g->n * g->oh * g->ow, kdim = g->kh * g->kw * g->cin;
    if (winograd) {
        mr_winograd_forward(ctx, g, x, w, layer, b, relu, y);
        return;
    }
    const mr_kept_kernel *packed = mr_packed_rows(ctx, layer, kdim, g->cout, w, g->cout);
    if (ctx->status != MR_OK) return;
    if (col_is_input(g)) {
        mr_forward_product(ctx, M, g->cout, kdim, x, kdim, w, g->cout, packed, b, relu, y, g->cout);
        return;
    }
    int64_t rows = chunk_rows(g);
    float *col = scratch(ctx, rows * kdim);
    if (!col) return;
    for (int64_t m0 = 0; m0 < M; m0 += rows) {
        int64_t m1 = m0 + rows < M ? m0 + rows : M;
        im2col(col, x, g, m0, m1);
        mr_forward_product(ctx, m1 - m0, g->cout, kdim, col, kdim, w, g->cout, packed, b, relu,
                           y + m0 * g->cout, g->cout);
    }
}

/* Whether conv_forward has what it needs of the layer's kernel kept, so w need not be given. */
static bool kernel_kept(const mr_ctx *ctx, const conv_geom *g, bool winograd, const void *layer) {
    return winograd ? mr_winograd_kernel_kept(ctx, g, layer)
                    : mr_kept_find(ctx, layer, MR_KEPT_BF16) != NULL;
}

/* dx, dw, db (each may be NULL: not wanted) take the gradients for upstream dy. dx and db
 * accumulate; dw accumulates with dw_add and is overwritten without, so that a fresh buffer needs
 * no zeroing pass. */
static void conv_backward(mr_ctx *ctx, const conv_geom *g, bool winograd, const float *dy,
                          const float *x, const float *w, float *dx, float *dw, bool dw_add,
                          float *db) {
    int64_t M = g->n * g->oh * g->ow, kdim = g->kh * g->kw * g->cin;
    if (db) column_sums(db, dy, NULL, NULL, M, g->cout);
    if (winograd) {
        mr_winograd_backward(ctx, g, dy, x, w, dx, dw, dw_add);
        return;
    }
    float dw_beta = dw_add ? 1.0f : 0.0f; /* the first product's; later chunks add to it */
    if (col_is_input(g)) {
        if (dw)
            mr_sgemm(true, false, kdim, g->cout, M, 1.0f, x, kdim, dy, g->cout, dw_beta, dw,
                     g->cout);
        if (dx)
            mr_sgemm(false, true, M, kdim, g->cout, 1.0f, dy, g->cout, w, g->cout, 1.0f, dx, kdim);
        return;
    }
    int64_t rows = chunk_rows(g);
    float *col = scratch(ctx, 2 * rows * kdim);
    if (!col) return;
    float *dcol = col + rows * kdim;
    for (int64_t m0 = 0; m0 < M; m0 += rows) {
        int64_t m1 = m0 + rows < M ? m0 + rows : M;
        const float *dy_chunk = dy + m0 * g->cout;
        if (dw) {
            im2col(col, x, g, m0, m1);
            mr_sgemm(true, false, kdim, g->cout, m1 - m0, 1.0f, col, kdim, dy_chunk, g->cout,
                     dw_beta, dw, g->cout);
            dw_beta = 1.0f;
        }
        if (dx) {
            mr_sgemm(false, true, m1 - m0, kdim, g->cout, 1.0f, dy_chunk, g->cout, w, g->cout, 0.0f,
                     dcol, kdim);
            col2im_add(dx, dcol, g, m0, m1);
        }
    }
}

/* Shapes are the caller's contract (a mismatch is a bug, so it panics); works out the output
 * size and padding. */
static conv_geom conv_geometry(const char *op, const mr_tensor *x, const mr_tensor *w,
                               const mr_tensor *b, int stride, int pad) {
    char xs[64], ws[64];
    MR_REQUIRE(x->ndim == 4 && w->ndim == 4 && w->shape[2] == x->shape[3],
               "%s: input %s %s and kernel %s %s do not match (NHWC, HWIO)", op, x->name,
               mr_shape_str(x, xs, sizeof xs), w->name, mr_shape_str(w, ws, sizeof ws));
    MR_REQUIRE(!b || (b->numel == w->shape[3]), "%s: bias %s has %lld values for %lld filters", op,
               b ? b->name : "", b ? (long long)b->numel : 0LL, (long long)w->shape[3]);
    MR_REQUIRE(stride >= 1 && pad >= MR_PAD_SAME, "%s: stride %d pad %d", op, stride, pad);
    conv_geom g = {.n = x->shape[0],
                   .h = x->shape[1],
                   .w = x->shape[2],
                   .cin = x->shape[3],
                   .kh = w->shape[0],
                   .kw = w->shape[1],
                   .cout = w->shape[3],
                   .stride = stride};
    pad_for(pad, g.h, g.kh, stride, &g.oh, &g.pad_top);
    pad_for(pad, g.w, g.kw, stride, &g.ow, &g.pad_left);
    MR_REQUIRE(g.oh > 0 && g.ow > 0, "%s: input %s %s too small for a %lldx%lld kernel", op,
               x->name, mr_shape_str(x, xs, sizeof xs), (long long)g.kh, (long long)g.kw);
    return g;
}

typedef struct {
    conv_geom g;
    bool winograd; /* the forward pass's path, which backward takes as well */
} conv_saved;

static void conv2d_backward(mr_node *node) {
    const conv_saved *s = node->saved;
    mr_tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->inputs[2];
    conv_backward(node->ctx, &s->g, s->winograd, node->out->grad, x->data, w->data,
                  node->needs_grad & 1u ? x->grad : NULL, node->needs_grad & 2u ? w->grad : NULL,
                  true, b && (node->needs_grad & 4u) ? b->grad : NULL);
}

static mr_tensor *conv2d(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride, int pad,
                         bool relu) {
    if (!x || !w || ctx->status != MR_OK) return NULL;
    conv_geom g = conv_geometry("conv2d", x, w, b, stride, pad);
    mr_tensor *out = mr_tensor_4d(ctx, "conv2d", g.n, g.oh, g.ow, g.cout);
    if (!out) return NULL;
    bool winograd = mr_winograd_suits(ctx, &g);
    conv_forward(ctx, &g, winograd, x->data, w->data, w, b ? b->data : NULL, relu, out->data);
    if (ctx->status != MR_OK) return NULL;
    mr_tensor *inputs[3] = {x, w, b};
    mr_node *node = mr_record(ctx, MR_OP_CONV2D, out, inputs, 3, conv2d_backward);
    if (node) {
        conv_saved *s = mr_alloc(ctx, sizeof *s, "conv2d");
        if (!s) return NULL;
        *s = (conv_saved){g, winograd};
        node->saved = s;
    }
    return out;
}

mr_tensor *mr_conv2d(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride, int pad) {
    return conv2d(ctx, x, w, b, stride, pad, false);
}

/* The convolution's node holds the rectified values, as after mr_relu_inplace: its backward
 * never reads them, and the ReLU's reads exactly these. */
mr_tensor *mr_conv2d_relu(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride,
                          int pad) {
    return mr_relu_rectified(ctx, conv2d(ctx, x, w, b, stride, pad, true));
}

/* ---- conv2d followed by a frozen batch norm -------------------------------------------------
 * With s = gamma / sqrt(var + eps), BN(conv(x, w) + b) = conv(x, w * s) + (b - mean) * s + beta,
 * so the pair is one convolution and no BN pass over the activations. Two ways to apply s:
 *
 * - Fold it into the kernel (most layers): convolve with w' = w * s and bias
 *   b' = (b - mean) * s + beta. Backward runs the convolution's backward with w' and maps the
 *   folded gradients dW', db' back through the fold:
 *     dw = dW' * s,  db = db' * s,  dbeta = db',
 *     dgamma = (sum_k dW'[k] w[k] + db' (b - mean)) / sqrt(var + eps).
 *   The folded kernel lives in its own scratch slot and is rebuilt in backward. That is about ten
 *   passes over the kernel in a step.
 * - Scale the output (scale_output): y = relu(conv(x, w) * s + b'), and in backward convolve
 *   backward with dy * s, the kernel gradient going straight into w's. With the normalised value
 *   z = (y - beta) / gamma, dgamma = sum dy z: the output must still hold y in backward, which only
 *   a rectified output is sure to (its ReLU reads it; an unrectified one may be added to in place).
 *   That is about five passes over the output. ResNet's stages 4 and 5 have kernels larger than
 *   their outputs: there this path made a training step about 3% faster at 512 and 1% at 1024
 *   (the fold's passes went from 3.9% of the step at 512 to 2.4%). */

/* The recovered z's rounding grows with |beta / gamma| (y rounds to its own size): this bound keeps
 * it within some sixteen roundings of z's size, as a sum over the kernel's rows would be. */
#define SCALED_BETA_OVER_GAMMA 16.0f

typedef struct {
    conv_geom g;
    bool winograd;
    bool scaled; /* scale_output's path, else the fold */
    const float *mean, *var;
    float eps;
} conv_bn_saved;

/* dst[r, o] = src[r, o] * scale[o] over rows of `cols` channels. */
static void scale_columns(float *dst, const float *src, const float *scale, int64_t rows,
                          int64_t cols) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < cols; o++) dst[r * cols + o] = src[r * cols + o] * scale[o];
}

/* Folded kernel and bias: wf = w * s; bf = (b - mean) * s + beta (b may be NULL; wf or bf may
 * be NULL: not wanted). */
static void fold_kernel(float *wf, float *bf, const float *scale, const mr_tensor *w,
                        const mr_tensor *b, const mr_tensor *beta, const float *mean,
                        int64_t cout) {
    if (wf) scale_columns(wf, w->data, scale, w->numel / cout, cout);
    if (bf)
        for (int64_t o = 0; o < cout; o++)
            bf[o] = ((b ? b->data[o] : 0.0f) - mean[o]) * scale[o] + beta->data[o];
}

static void bn_scale(float *scale, const mr_tensor *gamma, const float *var, float eps, int64_t n) {
    for (int64_t o = 0; o < n; o++) scale[o] = gamma->data[o] / sqrtf(var[o] + eps);
}

/* Whether the batch norm maps every channel to itself: scale exactly 1, mean and beta 0. */
static bool bn_is_identity(const float *scale, const float *beta, const float *mean, int64_t n) {
    for (int64_t o = 0; o < n; o++)
        if (scale[o] != 1.0f || beta[o] != 0.0f || mean[o] != 0.0f) return false;
    return true;
}

/* Whether the layer scales its output rather than folding the kernel (see above): a rectified
 * output smaller than the kernel, outside a context that keeps (folded) kernels, and where gamma
 * trains, every channel's z recoverable from y. */
static bool scale_output(const mr_ctx *ctx, const conv_geom *g, bool relu, const mr_tensor *w,
                         const mr_tensor *gamma, const mr_tensor *beta) {
    if (!relu || ctx->keep_kernels || g->n * g->oh * g->ow * g->cout >= w->numel) return false;
    if (!gamma->requires_grad) return true;
    for (int64_t o = 0; o < g->cout; o++) {
        float gm = fabsf(gamma->data[o]);
        if (gm == 0.0f || !(fabsf(beta->data[o]) <= SCALED_BETA_OVER_GAMMA * gm)) return false;
    }
    return true;
}

/* y = max(0, y * s + bf) over rows of `cols` channels. */
static void scale_shift_relu(float *y, const float *scale, const float *bf, int64_t rows,
                             int64_t cols) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        float *restrict yr = y + r * cols;
#pragma omp simd
        for (int64_t o = 0; o < cols; o++) {
            float v = yr[o] * scale[o] + bf[o];
            yr[o] = v > 0.0f ? v : 0.0f;
        }
    }
}

/* The fold's backward: the convolution's with the folded kernel, mapped back through the fold.
 * dbf holds sum dy; wf is scratch for the kernel and then its gradient. */
static void fold_backward(mr_node *node, const float *scale, const float *dbf, float *dgamma,
                          float *wf) {
    mr_ctx *ctx = node->ctx;
    const conv_bn_saved *s = node->saved;
    mr_tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->inputs[2];
    mr_tensor *beta = node->inputs[4];
    bool want_dx = node->needs_grad & 1u, want_dw = node->needs_grad & 2u;
    bool want_dgamma = node->needs_grad & 8u;
    int64_t cout = s->g.cout, rows = w->numel / cout;
    const float *dy = node->out->grad;
    /* The input gradient is taken first, so the kernel's buffer can then take the kernel
     * gradient. */
    if (want_dx) {
        fold_kernel(wf, NULL, scale, w, b, beta, s->mean, cout);
        conv_backward(ctx, &s->g, s->winograd, dy, x->data, wf, x->grad, NULL, true, NULL);
    }
    float *dwf = wf;
    if (want_dw || want_dgamma)
        conv_backward(ctx, &s->g, s->winograd, dy, x->data, NULL, NULL, dwf, false, NULL);
    if (ctx->status != MR_OK) return;
    if (want_dw) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t o = 0; o < cout; o++)
                w->grad[r * cout + o] += dwf[r * cout + o] * scale[o];
    }
    if (want_dgamma) {
        for (int64_t o = 0; o < cout; o++) /* ds, then ds / sqrt(var + eps) */
            dgamma[o] = dbf[o] * ((b ? b->data[o] : 0.0f) - s->mean[o]);
        column_sums(dgamma, dwf, w->data, NULL, rows, cout);
        for (int64_t o = 0; o < cout; o++) dgamma[o] /= sqrtf(s->var[o] + s->eps);
    }
}

/* scale_output's backward: the convolution's with dy * s and the layer's own kernel. */
static void scaled_backward(mr_node *node, const float *scale, float *dgamma, float *dys) {
    mr_ctx *ctx = node->ctx;
    const conv_bn_saved *s = node->saved;
    mr_tensor *x = node->inputs[0], *w = node->inputs[1];
    mr_tensor *gamma = node->inputs[3], *beta = node->inputs[4];
    int64_t cout = s->g.cout, rows = s->g.n * s->g.oh * s->g.ow;
    const float *dy = node->out->grad;
    if (node->needs_grad & 8u) {
        memset(dgamma, 0, (size_t)cout * sizeof(float));
        column_sums(dgamma, dy, node->out->data, beta->data, rows, cout);
        for (int64_t o = 0; o < cout; o++) dgamma[o] /= gamma->data[o];
    }
    scale_columns(dys, dy, scale, rows, cout);
    conv_backward(ctx, &s->g, s->winograd, dys, x->data, w->data,
                  node->needs_grad & 1u ? x->grad : NULL, node->needs_grad & 2u ? w->grad : NULL,
                  true, NULL);
}

static void conv2d_bn_backward(mr_node *node) {
    mr_ctx *ctx = node->ctx;
    const conv_bn_saved *s = node->saved;
    const conv_geom *g = &s->g;
    mr_tensor *w = node->inputs[1], *b = node->inputs[2];
    mr_tensor *gamma = node->inputs[3], *beta = node->inputs[4];
    int64_t cout = g->cout, rows = g->n * g->oh * g->ow;
    /* Slot layout: scale, folded-bias gradient, gamma's gradient, then the fold's kernel or the
     * scaled output gradient. */
    float *scale =
        mr_conv_scratch(ctx, MR_SCRATCH_FOLD, 3 * cout + (s->scaled ? rows * cout : w->numel));
    if (!scale) return;
    float *dbf = scale + cout, *dgamma = dbf + cout, *rest = dgamma + cout;
    bn_scale(scale, gamma, s->var, s->eps, cout);
    memset(dbf, 0, (size_t)cout * sizeof(float));
    column_sums(dbf, node->out->grad, NULL, NULL, rows, cout);
    if (s->scaled)
        scaled_backward(node, scale, dgamma, rest);
    else
        fold_backward(node, scale, dbf, dgamma, rest);
    if (ctx->status != MR_OK) return;
    for (int64_t o = 0; o < cout; o++) {
        if (b && (node->needs_grad & 4u)) b->grad[o] += dbf[o] * scale[o];
        if (node->needs_grad & 8u) gamma->grad[o] += dgamma[o];
        if (node->needs_grad & 16u) beta->grad[o] += dbf[o];
    }
}

static mr_tensor *conv2d_bn(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride,
                            int pad, mr_tensor *gamma, mr_tensor *beta,
                            const mr_tensor *moving_mean, const mr_tensor *moving_var, float eps,
                            bool relu) {
    if (!x || !w || ctx->status != MR_OK) return NULL;
    conv_geom g = conv_geometry("conv2d_bn", x, w, b, stride, pad);
    MR_REQUIRE(gamma->numel == g.cout && beta->numel == g.cout && moving_mean->numel == g.cout &&
                   moving_var->numel == g.cout,
               "conv2d_bn: kernel %s has %lld filters but gamma/beta/mean/var have "
               "%lld/%lld/%lld/%lld",
               w->name, (long long)g.cout, (long long)gamma->numel, (long long)beta->numel,
               (long long)moving_mean->numel, (long long)moving_var->numel);
    mr_tensor *out = mr_tensor_4d(ctx, "conv2d_bn", g.n, g.oh, g.ow, g.cout);
    if (!out) return NULL;
    bool winograd = mr_winograd_suits(ctx, &g);
    /* Slot layout: scale, folded bias, then the folded kernel if there is one. */
    float *scale = mr_conv_scratch(ctx, MR_SCRATCH_FOLD, 2 * g.cout);
    if (!scale) return NULL;
    bn_scale(scale, gamma, moving_var->data, eps, g.cout);
    bool identity = bn_is_identity(scale, beta->data, moving_mean->data, g.cout);
    bool scaled = !identity && scale_output(ctx, &g, relu, w, gamma, beta);
    if (!identity && !scaled &&
        !(scale = mr_conv_scratch(ctx, MR_SCRATCH_FOLD, 2 * g.cout + w->numel)))
        return NULL;
    float *bf = scale + g.cout, *wf = bf + g.cout;
    if (scaled) {
        fold_kernel(NULL, bf, scale, w, b, beta, moving_mean->data, g.cout);
        conv_forward(ctx, &g, winograd, x->data, w->data, w, NULL, false, out->data);
        scale_shift_relu(out->data, scale, bf, g.n * g.oh * g.ow, g.cout);
    } else {
        if (identity) {
            /* An export's batch norms are folded already (train/export.h): the fold would
             * multiply by exactly 1 and add exactly 0, so the kernel and bias serve as they are. */
            wf = w->data;
            bf = b ? b->data : NULL;
        } else {
            /* A context that keeps kernels keeps the folded one: later images fold the bias
             * alone. */
            if (kernel_kept(ctx, &g, winograd, w)) wf = NULL;
            fold_kernel(wf, bf, scale, w, b, beta, moving_mean->data, g.cout);
        }
        conv_forward(ctx, &g, winograd, x->data, wf, w, bf, relu, out->data);
    }
    if (ctx->status != MR_OK) return NULL;
    mr_tensor *inputs[5] = {x, w, b, gamma, beta};
    mr_node *node = mr_record(ctx, MR_OP_CONV2D_BN, out, inputs, 5, conv2d_bn_backward);
    if (node) {
        conv_bn_saved *s = mr_alloc(ctx, sizeof *s, "conv2d_bn");
        if (!s) return NULL;
        *s = (conv_bn_saved){g, winograd, scaled, moving_mean->data, moving_var->data, eps};
        node->saved = s;
    }
    return out;
}

mr_tensor *mr_conv2d_bn(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride, int pad,
                        mr_tensor *gamma, mr_tensor *beta, const mr_tensor *moving_mean,
                        const mr_tensor *moving_var, float eps) {
    return conv2d_bn(ctx, x, w, b, stride, pad, gamma, beta, moving_mean, moving_var, eps, false);
}

mr_tensor *mr_conv2d_bn_relu(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride,
                             int pad, mr_tensor *gamma, mr_tensor *beta,
                             const mr_tensor *moving_mean, const mr_tensor *moving_var, float eps) {
    return mr_relu_rectified(
        ctx, conv2d_bn(ctx, x, w, b, stride, pad, gamma, beta, moving_mean, moving_var, eps, true));
}

/* ---- transposed conv 2x2 / 2 ------------------------------------------------------------ */

/* The layer is one product: row (n,y,x) of the input times the kernel gives the four output
 * pixels it feeds, a (N*H*W, 4*Cout) matrix. Keras's kernel (2,2,Cout,Cin) is that product's
 * (Cin, 4*Cout) matrix transposed, row (i*2+j)*Cout + o, so forward and backward multiply it as it
 * is stored; only a bfloat16 context lays it out the other way, once, to pack it. */
static void deconv_kernel_matrix(float *km, const float *w, int64_t cin, int64_t cout) {
    for (int64_t k = 0; k < 4; k++)
        for (int64_t o = 0; o < cout; o++)
            for (int64_t c = 0; c < cin; c++)
                km[c * 4 * cout + k * cout + o] = w[(k * cout + o) * cin + c];
}

typedef struct {
    int64_t n, h, w, cin, cout;
} deconv_saved;

/* The (N*H*W, 4*Cout) matrix view of the output: row (n,y,x), column (i,j,o) -> out pixel
 * (n, 2y+i, 2x+j, o). */
static int64_t deconv_out_index(const deconv_saved *s, int64_t m, int64_t k, int64_t o) {
    int64_t x = m % s->w, y = (m / s->w) % s->h, n = m / (s->w * s->h);
    int64_t i = k / 2, j = k % 2;
    return ((n * 2 * s->h + 2 * y + i) * 2 * s->w + 2 * x + j) * s->cout + o;
}

static void deconv2x2_backward(mr_node *node) {
    mr_ctx *ctx = node->ctx;
    const deconv_saved *s = node->saved;
    mr_tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->inputs[2];
    int64_t M = s->n * s->h * s->w, cols = 4 * s->cout;
    float *dy = scratch(ctx, M * cols);
    if (!dy) return;
    const float *dout = node->out->grad;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < 4; k++)
            memcpy(dy + m * cols + k * s->cout, dout + deconv_out_index(s, m, k, 0),
                   sizeof(float) * (size_t)s->cout);
    if (b && (node->needs_grad & 4u)) column_sums(b->grad, dy, NULL, NULL, 4 * M, s->cout);
    if (node->needs_grad & 1u)
        mr_sgemm(false, false, M, s->cin, cols, 1.0f, dy, cols, w->data, s->cin, 1.0f, x->grad,
                 s->cin);
    if (node->needs_grad & 2u)
        mr_sgemm(true, false, cols, s->cin, M, 1.0f, dy, cols, x->data, s->cin, 1.0f, w->grad,
                 s->cin);
}

static mr_tensor *deconv2x2(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, bool relu) {
    if (!x || !w || ctx->status != MR_OK) return NULL;
    char xs[64], ws[64];
    MR_REQUIRE(x->ndim == 4 && w->ndim == 4 && w->shape[0] == 2 && w->shape[1] == 2 &&
                   w->shape[3] == x->shape[3],
               "deconv2x2: input %s %s and kernel %s %s do not match (NHWC, (2,2,Cout,Cin))",
               x->name, mr_shape_str(x, xs, sizeof xs), w->name, mr_shape_str(w, ws, sizeof ws));
    deconv_saved s = {x->shape[0], x->shape[1], x->shape[2], x->shape[3], w->shape[2]};
    MR_REQUIRE(!b || b->numel == s.cout, "deconv2x2: bias %s size", b ? b->name : "");
    mr_tensor *out = mr_tensor_4d(ctx, "deconv2x2", s.n, 2 * s.h, 2 * s.w, s.cout);
    if (!out) return NULL;
    int64_t M = s.n * s.h * s.w, cols = 4 * s.cout;
    float *y = scratch(ctx, M * cols + (ctx->bf16 ? s.cin * cols : 0));
    if (!y) return NULL;
    const mr_kept_kernel *packed = ctx->bf16 ? mr_kept_find(ctx, w, MR_KEPT_BF16) : NULL;
    if (ctx->bf16 && !packed) {
        float *km = y + M * cols;
        deconv_kernel_matrix(km, w->data, s.cin, s.cout);
        packed = mr_packed_rows(ctx, w, s.cin, cols, km, cols);
        if (ctx->status != MR_OK) return NULL;
    }
    if (packed)
        mr_forward_product(ctx, M, cols, s.cin, x->data, s.cin, NULL, 0, packed, NULL, false, y,
                           cols);
    else
        mr_sgemm(false, true, M, cols, s.cin, 1.0f, x->data, s.cin, w->data, s.cin, 0.0f, y, cols);
    const float *bias = b ? b->data : NULL;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++)
        for (int64_t k = 0; k < 4; k++) {
            const float *src = y + m * cols + k * s.cout;
            float *dst = out->data + deconv_out_index(&s, m, k, 0);
            for (int64_t o = 0; o < s.cout; o++) dst[o] = src[o] + (bias ? bias[o] : 0.0f);
            if (relu) mr_relu_floats(dst, s.cout);
        }
    mr_tensor *inputs[3] = {x, w, b};
    mr_node *node = mr_record(ctx, MR_OP_DECONV2X2, out, inputs, 3, deconv2x2_backward);
    if (node) {
        deconv_saved *saved = mr_alloc(ctx, sizeof *saved, "deconv2x2");
        if (!saved) return NULL;
        *saved = s;
        node->saved = saved;
    }
    return out;
}

mr_tensor *mr_deconv2x2(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b) {
    return deconv2x2(ctx, x, w, b, false);
}

mr_tensor *mr_deconv2x2_relu(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b) {
    return mr_relu_rectified(ctx, deconv2x2(ctx, x, w, b, true));
}

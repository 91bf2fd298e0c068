/* Winograd F(m x m, 3x3) convolution, forward and backward, for conv2d's 3x3 stride-1 path.
 *
 * Each m x m block of output pixels (a tile) comes from an a x a input window, a = m + 2.
 * With the transforms
 *   V = B' d B (input window),  U = G g G' (3x3 kernel),  Y = A' (U .* V) A (m x m output)
 * the a*a element-wise products over channels become a*a GEMMs of (tiles x Cin) @ (Cin x Cout).
 * Transformed arrays are stored as a*a planes: plane i*a + j holds element (i, j) of every
 * tile, row-major (tile, channel). Backward applies the transposed transforms in reverse
 * order, so it is the exact adjoint of the forward pass and all three GEMMs of training
 * (output, input gradient, kernel gradient) get the saving. Where the product's columns are
 * whole panels and the CPU has AVX-512 (core/blas.h), U is made in panels once per layer and the
 * output's and input gradient's products run on them (core/gemm_panel.c) rather than BLAS packing
 * a plane of U on every call; the kernel gradient's stay BLAS's.
 *
 * Two sizes, the transforms Lavin and Gray's (2016), for correlation as CNNs compute it:
 * - F(4x4, 3x3): 36 multiplies per 16 outputs where direct convolution does 144 (4x fewer). It
 *   beat F(2x2, 3x3) (2.25x fewer) on every shape of the network measured.
 * - F(6x6, 3x3): 64 per 36 outputs (5.1x fewer), with transform coefficients up to 32 and 1/90
 *   that round about three times more (a 256-channel tile's worst error is about 2e-5 of its
 *   outputs' spread, against 7e-6). A layer takes it where its tiles multiply less over the
 *   output than F(4x4, 3x3)'s (variant_for): the RPN and the FPN on P2 and P3 and ResNet's
 *   first stages, where the step spends most. On 14 x 14 ROIs and 16 x 16 or 32 x 32 maps the
 *   wider tiles waste as much past the edge as they save, and F(4x4, 3x3) keeps them.
 *
 * It stays in float32 in a bf16 context (mr_ctx_use_bf16): its transforms amplify rounding. With
 * both operands in bfloat16, a 256-channel F(4x4, 3x3) tile is off by 6.7% of its outputs' spread
 * and F(2x2, 3x3) by 0.7%, against 0.5% for a direct product (tests/ref/winograd_bf16_error.py);
 * F(2x2, 3x3) in bfloat16 would do about the work of F(4x4, 3x3) in float32, for no gain. */
#include "winograd.h"

#include <omp.h>
#include <string.h>

#include "blas.h"
#include "util.h"

/* The 1-D transforms are plain vector arithmetic over memory: built for AVX-512 and AVX2 as well
 * (MR_CLONED), they took 2% off a training step at 512 on AVX-512 (at 1024 the difference was
 * within the noise) with the same bits. */

#define MAX_ALPHA 8 /* the widest input window, F(6x6, 3x3)'s */

/* Channels per block of a data transform, and (cin, cout) pairs per block of a kernel transform.
 * A block writes a row of every plane, 36 or 64 of them at once: long rows keep each stream's
 * writes together and pay the per-row overheads rarely. Against 64 (intermediate rows in L1), 256
 * and 1024 made the transforms of the RPN's convolution at P2 about twice as fast, and a training
 * step 5% faster at 512 and at 1024. The blocks' scratch is on the stack: at most 100 KB per
 * thread. */
#define BLOCK        256
#define KERNEL_BLOCK 1024

/* Chunks of tiles keep the transformed arrays below this many floats (scratch memory stays
 * bounded on big images) while each of the a*a GEMMs still has enough rows to run at speed. */
#define CHUNK_FLOATS ((int64_t)8 << 20)

/* Winograd pays off when the GEMMs stay big: with few channels the transforms dominate, with
 * few tiles the small GEMMs run below the BLAS's speed (measured in `mrcnn bench`). */
#define MIN_CHANNELS 64
#define MIN_OUTPUTS  512 /* output pixels over the whole batch */

/* PLANES_IN_PARALLEL: the a*a products of a chunk are independent, so threads take whole planes
 * (36 or 64 of them) rather than cutting each product into row blocks: a chunk of a small feature
 * map has too few tile rows to cut (one thread would run them all), and a whole product runs faster
 * than its parts. Each is one single-threaded call either way, so the bits do not depend on the
 * thread count (core/blas.c). Planes, tiles and kernel blocks go to threads as they come free
 * (dynamic schedules): each writes its own outputs, so the order is free, and a core slowed by
 * another process on a shared machine then holds up a few items rather than half the layer. */

bool mr_winograd_suits(const mr_ctx *ctx, const mr_conv_geom *g) {
    if (g->kh != 3 || g->kw != 3 || g->stride != 1 || ctx->conv_algo == MR_CONV_IM2COL)
        return false;
    if (ctx->conv_algo == MR_CONV_WINOGRAD_F4 || ctx->conv_algo == MR_CONV_WINOGRAD_F6) return true;
    return g->cin >= MIN_CHANNELS && g->cout >= MIN_CHANNELS && g->n * g->oh * g->ow >= MIN_OUTPUTS;
}

/* ---- geometry ------------------------------------------------------------------------------ */

/* Each 1-D transform maps a column of input rows to a column of output rows (below). */
typedef void (*transform_1d)(float *const *out, const float *const *in, int64_t n, bool add);

/* A Winograd size: its tile and window sides and its six 1-D transforms. */
typedef struct {
    int tile, alpha; /* m, and a = m + 2 */
    transform_1d bt, b, g, gt, at, a;
} variant;

typedef struct {
    const variant *f;
    int64_t tiles_h, tiles_w, tiles; /* tiles over the output, per image and in all */
    int64_t chunk;                   /* tiles per chunk */
} plan;

/* One past the last tile of the chunk that starts at tile t0. */
static int64_t chunk_end(const plan *p, int64_t t0) {
    return t0 + p->chunk < p->tiles ? t0 + p->chunk : p->tiles;
}

/* Input pixel (row, col) of element (r, s) of tile t's window, or -1 outside the image. */
static int64_t input_pixel(const mr_conv_geom *g, const plan *p, int64_t t, int r, int s) {
    int tile = p->f->tile;
    int64_t tx = t % p->tiles_w, ty = (t / p->tiles_w) % p->tiles_h;
    int64_t n = t / (p->tiles_w * p->tiles_h);
    int64_t iy = tile * ty - g->pad_top + r, ix = tile * tx - g->pad_left + s;
    if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) return -1;
    return (n * g->h + iy) * g->w + ix;
}

/* Output pixel of element (r, s) of tile t, or -1 past the image's edge. */
static int64_t output_pixel(const mr_conv_geom *g, const plan *p, int64_t t, int r, int s) {
    int tile = p->f->tile;
    int64_t tx = t % p->tiles_w, ty = (t / p->tiles_w) % p->tiles_h;
    int64_t n = t / (p->tiles_w * p->tiles_h);
    int64_t oy = tile * ty + r, ox = tile * tx + s;
    if (oy >= g->oh || ox >= g->ow) return -1;
    return (n * g->oh + oy) * g->ow + ox;
}

/* ---- 1-D transforms over n channels ----------------------------------------------------------
 * Each maps a column of input rows to a column of output rows, one channel at a time: B' and B
 * (a -> a), G (3 -> a) and G' (a -> 3), A' (a -> m) and A (m -> a). Written out rather than
 * driven by the matrices, so each input is read and each output written once. `add` adds into
 * the outputs instead of storing. */

#define LOAD6(in)                                                                                  \
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2],                  \
                          *restrict i3 = in[3], *restrict i4 = in[4], *restrict i5 = in[5]
#define LOAD8(in)                                                                                  \
    LOAD6(in);                                                                                     \
    const float *restrict i6 = in[6], *restrict i7 = in[7]
#define OUT6(out)                                                                                  \
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2],                     \
                    *restrict o3 = out[3], *restrict o4 = out[4], *restrict o5 = out[5]
#define OUT8(out)                                                                                  \
    OUT6(out);                                                                                     \
    float *restrict o6 = out[6], *restrict o7 = out[7]
#define STORE(o, k, v, add) ((add) ? ((o)[k] += (v)) : ((o)[k] = (v)))

/* The transforms that store or add: their bodies are inlined twice, with `add` a constant, so
 * each loop runs without the branch and vectorises. */
#define BODY_INLINE static inline __attribute__((always_inline)) void
#define SPLIT_ON_ADD(name)                                                                         \
    MR_CLONED static void name##_1d(float *const *out, const float *const *in, int64_t n,          \
                                    bool add) {                                                    \
        if (add)                                                                                   \
            name##_body(out, in, n, true);                                                         \
        else                                                                                       \
            name##_body(out, in, n, false);                                                        \
    }

/* F(4x4, 3x3) */

MR_CLONED static void bt4_1d(float *const *out, const float *const *in, int64_t n, bool add) {
    LOAD6(in);
    OUT6(out);
    (void)add; /* the input transform always stores */
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        o0[k] = 4.0f * i0[k] - 5.0f * i2[k] + i4[k];
        o1[k] = -4.0f * (i1[k] + i2[k]) + i3[k] + i4[k];
        o2[k] = 4.0f * (i1[k] - i2[k]) - i3[k] + i4[k];
        o3[k] = 2.0f * (i3[k] - i1[k]) - i2[k] + i4[k];
        o4[k] = 2.0f * (i1[k] - i3[k]) - i2[k] + i4[k];
        o5[k] = 4.0f * i1[k] - 5.0f * i3[k] + i5[k];
    }
}

BODY_INLINE b4_body(float *const *out, const float *const *in, int64_t n, bool add) {
    LOAD6(in);
    OUT6(out);
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        STORE(o0, k, 4.0f * i0[k], add);
        STORE(o1, k, 4.0f * (i2[k] - i1[k] + i5[k]) + 2.0f * (i4[k] - i3[k]), add);
        STORE(o2, k, -5.0f * i0[k] - 4.0f * (i1[k] + i2[k]) - i3[k] - i4[k], add);
        STORE(o3, k, i1[k] - i2[k] + 2.0f * (i3[k] - i4[k]) - 5.0f * i5[k], add);
        STORE(o4, k, i0[k] + i1[k] + i2[k] + i3[k] + i4[k], add);
        STORE(o5, k, i5[k], add);
    }
}
SPLIT_ON_ADD(b4)

/* G's entries as products: a division per element would cost more than the rest together. */
static const float QUARTER = 0.25f, SIXTH = 1.0f / 6.0f, TWELFTH = 1.0f / 12.0f,
                   TWENTYFOURTH = 1.0f / 24.0f;

MR_CLONED static void g4_1d(float *const *out, const float *const *in, int64_t n, bool add) {
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2];
    OUT6(out);
    (void)add;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        o0[k] = QUARTER * i0[k];
        o1[k] = -SIXTH * (i0[k] + i1[k] + i2[k]);
        o2[k] = -SIXTH * (i0[k] - i1[k] + i2[k]);
        o3[k] = TWENTYFOURTH * i0[k] + TWELFTH * i1[k] + SIXTH * i2[k];
        o4[k] = TWENTYFOURTH * i0[k] - TWELFTH * i1[k] + SIXTH * i2[k];
        o5[k] = i2[k];
    }
}

BODY_INLINE gt4_body(float *const *out, const float *const *in, int64_t n, bool add) {
    LOAD6(in);
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2];
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        STORE(o0, k, QUARTER * i0[k] - SIXTH * (i1[k] + i2[k]) + TWENTYFOURTH * (i3[k] + i4[k]),
              add);
        STORE(o1, k, SIXTH * (i2[k] - i1[k]) + TWELFTH * (i3[k] - i4[k]), add);
        STORE(o2, k, SIXTH * (i3[k] + i4[k] - i1[k] - i2[k]) + i5[k], add);
    }
}
SPLIT_ON_ADD(gt4)

MR_CLONED static void at4_1d(float *const *out, const float *const *in, int64_t n, bool add) {
    LOAD6(in);
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2];
    float *restrict o3 = out[3];
    (void)add;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        o0[k] = i0[k] + i1[k] + i2[k] + i3[k] + i4[k];
        o1[k] = i1[k] - i2[k] + 2.0f * (i3[k] - i4[k]);
        o2[k] = i1[k] + i2[k] + 4.0f * (i3[k] + i4[k]);
        o3[k] = i1[k] - i2[k] + 8.0f * (i3[k] - i4[k]) + i5[k];
    }
}

MR_CLONED static void a4_1d(float *const *out, const float *const *in, int64_t n, bool add) {
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2];
    const float *restrict i3 = in[3];
    OUT6(out);
    (void)add;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        o0[k] = i0[k];
        o1[k] = i0[k] + i1[k] + i2[k] + i3[k];
        o2[k] = i0[k] - i1[k] + i2[k] - i3[k];
        o3[k] = i0[k] + 2.0f * i1[k] + 4.0f * i2[k] + 8.0f * i3[k];
        o4[k] = i0[k] - 2.0f * i1[k] + 4.0f * i2[k] - 8.0f * i3[k];
        o5[k] = i3[k];
    }
}

/* F(6x6, 3x3), on the points 0, +-1, +-2, +-1/2 (Lavin and Gray's choice for this size). The
 * sums are grouped into their even and odd parts, which each pair of outputs shares. */

MR_CLONED static void bt6_1d(float *const *out, const float *const *in, int64_t n, bool add) {
    LOAD8(in);
    OUT8(out);
    (void)add;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        float e1 = i2[k] + i6[k] - 4.25f * i4[k], d1 = i1[k] + i5[k] - 4.25f * i3[k];
        float e2 = 0.25f * i2[k] - 1.25f * i4[k] + i6[k];
        float d2 = 0.5f * i1[k] - 2.5f * i3[k] + 2.0f * i5[k];
        float e3 = 4.0f * i2[k] - 5.0f * i4[k] + i6[k];
        float d3 = 2.0f * i1[k] - 2.5f * i3[k] + 0.5f * i5[k];
        o0[k] = i0[k] - i6[k] + 5.25f * (i4[k] - i2[k]);
        o1[k] = e1 + d1;
        o2[k] = e1 - d1;
        o3[k] = e2 + d2;
        o4[k] = e2 - d2;
        o5[k] = e3 + d3;
        o6[k] = e3 - d3;
        o7[k] = i7[k] - i1[k] + 5.25f * (i3[k] - i5[k]);
    }
}

BODY_INLINE b6_body(float *const *out, const float *const *in, int64_t n, bool add) {
    LOAD8(in);
    OUT8(out);
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        STORE(o0, k, i0[k], add);
        STORE(o1, k, i1[k] - i2[k] + 0.5f * (i3[k] - i4[k]) + 2.0f * (i5[k] - i6[k]) - i7[k], add);
        STORE(o2, k,
              -5.25f * i0[k] + i1[k] + i2[k] + 0.25f * (i3[k] + i4[k]) + 4.0f * (i5[k] + i6[k]),
              add);
        STORE(o3, k,
              4.25f * (i2[k] - i1[k]) + 2.5f * (i4[k] - i3[k] + i6[k] - i5[k]) + 5.25f * i7[k],
              add);
        STORE(o4, k,
              5.25f * i0[k] - 4.25f * (i1[k] + i2[k]) - 1.25f * (i3[k] + i4[k]) -
                  5.0f * (i5[k] + i6[k]),
              add);
        STORE(o5, k,
              i1[k] - i2[k] + 2.0f * (i3[k] - i4[k]) + 0.5f * (i5[k] - i6[k]) - 5.25f * i7[k], add);
        STORE(o6, k, i1[k] + i2[k] + i3[k] + i4[k] + i5[k] + i6[k] - i0[k], add);
        STORE(o7, k, i7[k], add);
    }
}
SPLIT_ON_ADD(b6)

static const float TWO_NINTHS = 2.0f / 9.0f, NINETIETH = 1.0f / 90.0f, FORTYFIFTH = 1.0f / 45.0f,
                   TWO_45THS = 2.0f / 45.0f, EIGHT_45THS = 8.0f / 45.0f,
                   SIXTEEN_45THS = 16.0f / 45.0f, THIRTYTWO_45THS = 32.0f / 45.0f;

MR_CLONED static void g6_1d(float *const *out, const float *const *in, int64_t n, bool add) {
    const float *restrict i0 = in[0], *restrict i1 = in[1], *restrict i2 = in[2];
    OUT8(out);
    (void)add;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        o0[k] = i0[k];
        o1[k] = -TWO_NINTHS * (i0[k] + i1[k] + i2[k]);
        o2[k] = -TWO_NINTHS * (i0[k] - i1[k] + i2[k]);
        o3[k] = NINETIETH * i0[k] + FORTYFIFTH * i1[k] + TWO_45THS * i2[k];
        o4[k] = NINETIETH * i0[k] - FORTYFIFTH * i1[k] + TWO_45THS * i2[k];
        o5[k] = THIRTYTWO_45THS * i0[k] + SIXTEEN_45THS * i1[k] + EIGHT_45THS * i2[k];
        o6[k] = THIRTYTWO_45THS * i0[k] - SIXTEEN_45THS * i1[k] + EIGHT_45THS * i2[k];
        o7[k] = i2[k];
    }
}

BODY_INLINE gt6_body(float *const *out, const float *const *in, int64_t n, bool add) {
    LOAD8(in);
    float *restrict o0 = out[0], *restrict o1 = out[1], *restrict o2 = out[2];
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        STORE(o0, k,
              i0[k] - TWO_NINTHS * (i1[k] + i2[k]) + NINETIETH * (i3[k] + i4[k]) +
                  THIRTYTWO_45THS * (i5[k] + i6[k]),
              add);
        STORE(o1, k,
              TWO_NINTHS * (i2[k] - i1[k]) + FORTYFIFTH * (i3[k] - i4[k]) +
                  SIXTEEN_45THS * (i5[k] - i6[k]),
              add);
        STORE(o2, k,
              -TWO_NINTHS * (i1[k] + i2[k]) + TWO_45THS * (i3[k] + i4[k]) +
                  EIGHT_45THS * (i5[k] + i6[k]) + i7[k],
              add);
    }
}
SPLIT_ON_ADD(gt6)

MR_CLONED static void at6_1d(float *const *out, const float *const *in, int64_t n, bool add) {
    LOAD8(in);
    OUT6(out);
    (void)add;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        float s1 = i1[k] + i2[k], d1 = i1[k] - i2[k], s2 = i3[k] + i4[k], d2 = i3[k] - i4[k];
        float s3 = i5[k] + i6[k], d3 = i5[k] - i6[k];
        o0[k] = i0[k] + s1 + s2 + s3;
        o1[k] = d1 + 2.0f * d2 + 0.5f * d3;
        o2[k] = s1 + 4.0f * s2 + 0.25f * s3;
        o3[k] = d1 + 8.0f * d2 + 0.125f * d3;
        o4[k] = s1 + 16.0f * s2 + 0.0625f * s3;
        o5[k] = d1 + 32.0f * d2 + 0.03125f * d3 + i7[k];
    }
}

MR_CLONED static void a6_1d(float *const *out, const float *const *in, int64_t n, bool add) {
    LOAD6(in);
    OUT8(out);
    (void)add;
#pragma omp simd
    for (int64_t k = 0; k < n; k++) {
        o0[k] = i0[k];
        o1[k] = i0[k] + i1[k] + i2[k] + i3[k] + i4[k] + i5[k];
        o2[k] = i0[k] - i1[k] + i2[k] - i3[k] + i4[k] - i5[k];
        o3[k] = i0[k] + 2.0f * i1[k] + 4.0f * i2[k] + 8.0f * i3[k] + 16.0f * i4[k] + 32.0f * i5[k];
        o4[k] = i0[k] - 2.0f * i1[k] + 4.0f * i2[k] - 8.0f * i3[k] + 16.0f * i4[k] - 32.0f * i5[k];
        o5[k] = i0[k] + 0.5f * i1[k] + 0.25f * i2[k] + 0.125f * i3[k] + 0.0625f * i4[k] +
                0.03125f * i5[k];
        o6[k] = i0[k] - 0.5f * i1[k] + 0.25f * i2[k] - 0.125f * i3[k] + 0.0625f * i4[k] -
                0.03125f * i5[k];
        o7[k] = i5[k];
    }
}

static const variant F4 = {4, 6, bt4_1d, b4_1d, g4_1d, gt4_1d, at4_1d, a4_1d};
static const variant F6 = {6, 8, bt6_1d, b6_1d, g6_1d, gt6_1d, at6_1d, a6_1d};

static int64_t tiles_for(const mr_conv_geom *g, const variant *f) {
    return g->n * ((g->oh + f->tile - 1) / f->tile) * ((g->ow + f->tile - 1) / f->tile);
}

/* F(6x6, 3x3) when its tiles multiply less over this output than F(4x4, 3x3)'s: 64 multiplies
 * per 36 outputs against 36 per 16 is 21% fewer inside the map, but the wider tiles hang further
 * past its edge. Where the two come out even (16 x 16, 32 x 32), F(4x4, 3x3) keeps the layer for
 * its smaller rounding. */
static const variant *variant_for(const mr_ctx *ctx, const mr_conv_geom *g) {
    if (ctx->conv_algo == MR_CONV_WINOGRAD_F4) return &F4;
    if (ctx->conv_algo == MR_CONV_WINOGRAD_F6) return &F6;
    return tiles_for(g, &F6) * 64 < tiles_for(g, &F4) * 36 ? &F6 : &F4;
}

static plan plan_for(const mr_ctx *ctx, const mr_conv_geom *g) {
    plan p = {.f = variant_for(ctx, g)};
    p.tiles_h = (g->oh + p.f->tile - 1) / p.f->tile;
    p.tiles_w = (g->ow + p.f->tile - 1) / p.f->tile;
    p.tiles = g->n * p.tiles_h * p.tiles_w;
    p.chunk = CHUNK_FLOATS / (p.f->alpha * p.f->alpha * (g->cin + g->cout));
    if (p.chunk < 1) p.chunk = 1;
    if (p.chunk > p.tiles) p.chunk = p.tiles;
    return p;
}

/* Applies a 1-D transform (n_in -> n_out) along both axes of an n_in x n_in grid of channel
 * rows, giving an n_out x n_out grid. Rows are reached through pointer tables; tmp holds
 * n_out * n_in rows of n floats. */
static void transform_2d(float *const *out, const float *const *in, int n_out, int n_in,
                         transform_1d f, bool add, float *tmp, int64_t n) {
    float *mid[MAX_ALPHA * MAX_ALPHA];
    for (int e = 0; e < n_out * n_in; e++) mid[e] = tmp + e * n;
    /* along the first axis: column s of `in` -> column s of mid (n_out x n_in) */
    for (int s = 0; s < n_in; s++) {
        const float *col_in[MAX_ALPHA];
        float *col_mid[MAX_ALPHA];
        for (int j = 0; j < n_in; j++) col_in[j] = in[j * n_in + s];
        for (int i = 0; i < n_out; i++) col_mid[i] = mid[i * n_in + s];
        f(col_mid, col_in, n, false);
    }
    /* along the second axis: row i of mid -> row i of out */
    for (int i = 0; i < n_out; i++)
        f(out + i * n_out, (const float *const *)(mid + i * n_in), n, add);
}

/* ---- the four data transforms and the kernel transform ------------------------------------- */

/* U = G g G' for every (cin, cout) pair of the HWIO kernel; U is a*a planes of (Cin, Cout). */
static void kernel_transform(float *u, const float *w, const mr_conv_geom *g, const plan *p) {
    int64_t plane = g->cin * g->cout;
    int alpha = p->f->alpha;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t k = 0; k < plane; k += KERNEL_BLOCK) {
        int64_t n = plane - k < KERNEL_BLOCK ? plane - k : KERNEL_BLOCK;
        float tmp[MAX_ALPHA * 3 * KERNEL_BLOCK];
        const float *in[9];
        float *out[MAX_ALPHA * MAX_ALPHA];
        for (int e = 0; e < 9; e++) in[e] = w + e * plane + k;
        for (int e = 0; e < alpha * alpha; e++) out[e] = u + e * plane + k;
        transform_2d(out, in, alpha, 3, p->f->g, false, tmp, n);
    }
}

/* dw += G' dU G (with add; dw = G' dU G without), the adjoint of kernel_transform. */
static void kernel_transform_backward(float *dw, const float *du, const mr_conv_geom *g,
                                      const plan *p, bool add) {
    int64_t plane = g->cin * g->cout;
    int alpha = p->f->alpha;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t k = 0; k < plane; k += KERNEL_BLOCK) {
        int64_t n = plane - k < KERNEL_BLOCK ? plane - k : KERNEL_BLOCK;
        float tmp[3 * MAX_ALPHA * KERNEL_BLOCK];
        const float *in[MAX_ALPHA * MAX_ALPHA];
        float *out[9];
        for (int e = 0; e < alpha * alpha; e++) in[e] = du + e * plane + k;
        for (int e = 0; e < 9; e++) out[e] = dw + e * plane + k;
        transform_2d(out, in, 3, alpha, p->f->gt, add, tmp, n);
    }
}

/* The HWIO kernel's nine planes in panels (core/blas.h), each as B of the product that will read
 * its transform: (Cin, Cout) for the output, transposed to (Cout, Cin) for the input gradient.
 * kernel_transform goes pair by pair, the same index in and out, so U then comes out in panels. */
static void arrange_in_panels(float *out, const float *w, const mr_conv_geom *g, bool transposed) {
    const int64_t cin = g->cin, cout = g->cout, plane = cin * cout;
    if (!transposed) {
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < 9 * cin; row++) {
            const int64_t e = row / cin, ci = row % cin;
            for (int64_t co = 0; co < cout; co += MR_PANEL)
                memcpy(out + e * plane + mr_panel_index(ci, co, cin),
                       w + e * plane + ci * cout + co, MR_PANEL * sizeof(float));
        }
        return;
    }
    /* Panel by panel, each written in order: a panel's rows take one column of 32 kernel rows,
     * which stay in cache as the columns go by. */
    const int64_t panels = cin / MR_PANEL;
#pragma omp parallel for schedule(static)
    for (int64_t item = 0; item < 9 * panels; item++) {
        const int64_t e = item / panels, ci0 = item % panels * MR_PANEL;
        const float *src = w + e * plane + ci0 * cout;
        float *dst = out + e * plane + mr_panel_index(0, ci0, cout);
        for (int64_t co = 0; co < cout; co++)
            for (int i = 0; i < MR_PANEL; i++) dst[co * MR_PANEL + i] = src[i * cout + co];
    }
}

/* Transformed planes (a*a of (t1 - t0, channels)) of tiles [t0, t1) of an image: each tile's
 * window of pixel rows (a x a input pixels, or m x m output pixels) through the 1-D transform f
 * along both axes. Pixels outside the image read as `zeros` (as wide as the channels). */
static void to_planes(float *planes, const float *image, const float *zeros, int64_t channels,
                      bool input_window, transform_1d f, const mr_conv_geom *g, const plan *p,
                      int64_t t0, int64_t t1) {
    int alpha = p->f->alpha, side = input_window ? alpha : p->f->tile;
    int64_t plane = (t1 - t0) * channels;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t t = t0; t < t1; t++) {
        const float *rows[MAX_ALPHA * MAX_ALPHA];
        for (int e = 0; e < side * side; e++) {
            int64_t px = input_window ? input_pixel(g, p, t, e / side, e % side)
                                      : output_pixel(g, p, t, e / side, e % side);
            rows[e] = px < 0 ? zeros : image + px * channels;
        }
        float tmp[MAX_ALPHA * MAX_ALPHA * BLOCK];
        for (int64_t c = 0; c < channels; c += BLOCK) {
            int64_t n = channels - c < BLOCK ? channels - c : BLOCK;
            const float *in[MAX_ALPHA * MAX_ALPHA];
            float *out[MAX_ALPHA * MAX_ALPHA];
            for (int e = 0; e < side * side; e++) in[e] = rows[e] + c;
            for (int e = 0; e < alpha * alpha; e++)
                out[e] = planes + e * plane + (t - t0) * channels + c;
            transform_2d(out, in, alpha, side, f, false, tmp, n);
        }
    }
}

/* V = B' d B for tiles [t0, t1). */
static void input_transform(float *v, const float *x, const float *zeros, const mr_conv_geom *g,
                            const plan *p, int64_t t0, int64_t t1) {
    to_planes(v, x, zeros, g->cin, true, p->f->bt, g, p, t0, t1);
}

/* dx += B dV B', the adjoint of input_transform. Windows of neighbouring tiles overlap, so
 * threads split the channels and never add into the same element. */
static void input_transform_backward(float *dx, const float *dv, const mr_conv_geom *g,
                                     const plan *p, int64_t t0, int64_t t1) {
    int64_t cin = g->cin, plane = (t1 - t0) * cin;
    int alpha = p->f->alpha;
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), th = omp_get_thread_num();
        int64_t c0 = cin * th / nt, c1 = cin * (th + 1) / nt;
        float tmp[MAX_ALPHA * MAX_ALPHA * BLOCK], sink[BLOCK] = {0};
        for (int64_t t = t0; t < t1 && c1 > c0; t++) {
            float *d[MAX_ALPHA * MAX_ALPHA];
            for (int e = 0; e < alpha * alpha; e++) {
                int64_t px = input_pixel(g, p, t, e / alpha, e % alpha);
                d[e] = px < 0 ? NULL : dx + px * cin;
            }
            for (int64_t c = c0; c < c1; c += BLOCK) {
                int64_t n = c1 - c < BLOCK ? c1 - c : BLOCK;
                const float *in[MAX_ALPHA * MAX_ALPHA];
                float *out[MAX_ALPHA * MAX_ALPHA];
                for (int e = 0; e < alpha * alpha; e++) {
                    in[e] = dv + e * plane + (t - t0) * cin + c;
                    out[e] = d[e] ? d[e] + c : sink; /* pixels outside take nothing back */
                }
                transform_2d(out, in, alpha, alpha, p->f->b, true, tmp, n);
            }
        }
    }
}

/* A row of output pixels' channels: res (+ bias), then max(0, y) with relu. */
MR_CLONED static void store_output_row(float *row, const float *res, const float *bias, bool relu,
                                       int64_t n) {
    if (bias)
        for (int64_t k = 0; k < n; k++) row[k] = res[k] + bias[k];
    else
        memcpy(row, res, (size_t)n * sizeof(float));
    if (relu) mr_relu_floats(row, n);
}

/* y = A' M A (+ bias, then max(0, y) with relu) for tiles [t0, t1); M is a*a planes of
 * (t1 - t0, Cout). */
static void output_transform(float *y, const float *mm, const float *bias, bool relu,
                             const mr_conv_geom *g, const plan *p, int64_t t0, int64_t t1) {
    int64_t cout = g->cout, plane = (t1 - t0) * cout;
    int alpha = p->f->alpha, tile = p->f->tile;
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t t = t0; t < t1; t++) {
        float *dst[MAX_ALPHA * MAX_ALPHA];
        for (int e = 0; e < tile * tile; e++) {
            int64_t px = output_pixel(g, p, t, e / tile, e % tile);
            dst[e] = px < 0 ? NULL : y + px * cout;
        }
        float tmp[MAX_ALPHA * MAX_ALPHA * BLOCK], res[(MAX_ALPHA - 2) * (MAX_ALPHA - 2)][BLOCK];
        for (int64_t o = 0; o < cout; o += BLOCK) {
            int64_t n = cout - o < BLOCK ? cout - o : BLOCK;
            const float *in[MAX_ALPHA * MAX_ALPHA];
            float *out[MAX_ALPHA * MAX_ALPHA];
            for (int e = 0; e < alpha * alpha; e++) in[e] = mm + e * plane + (t - t0) * cout + o;
            for (int e = 0; e < tile * tile; e++) out[e] = res[e];
            transform_2d(out, in, tile, alpha, p->f->at, false, tmp, n);
            for (int e = 0; e < tile * tile; e++)
                if (dst[e]) store_output_row(dst[e] + o, res[e], bias ? bias + o : NULL, relu, n);
        }
    }
}

/* dM = A dY A', the adjoint of output_transform; output pixels past the edge contribute zero. */
static void output_transform_backward(float *dm, const float *dy, const float *zeros,
                                      const mr_conv_geom *g, const plan *p, int64_t t0,
                                      int64_t t1) {
    to_planes(dm, dy, zeros, g->cout, false, p->f->a, g, p, t0, t1);
}

/* ---- the convolution ------------------------------------------------------------------------ */

/* One scratch block: U (left out when U is kept), dU when it must live beside U, V and M for one
 * chunk (a*a chunk Cin, a*a chunk Cout) and a row of zeros as wide as the wider of Cin and Cout.
 * With `arranged`, V and M's space holds at least the kernel in panels (9 Cin Cout), which is
 * made and transformed before the first chunk needs it. */
typedef struct {
    plan p;
    float *u, *du, *v, *m;
    const float *zeros;
} workspace;

static bool workspace_for(mr_ctx *ctx, const mr_conv_geom *g, bool with_u, bool with_du,
                          bool arranged, workspace *ws) {
    ws->p = plan_for(ctx, g);
    int64_t planes = ws->p.f->alpha * ws->p.f->alpha;
    int64_t kernel = planes * g->cin * g->cout;
    int64_t u_floats = with_u ? kernel : 0, du_floats = with_du ? kernel : 0;
    int64_t width = g->cin > g->cout ? g->cin : g->cout;
    int64_t v_floats = planes * ws->p.chunk * g->cin;
    int64_t m_floats = planes * ws->p.chunk * g->cout;
    int64_t vm_floats = v_floats + m_floats;
    if (arranged && vm_floats < 9 * g->cin * g->cout) vm_floats = 9 * g->cin * g->cout;
    float *base = mr_conv_scratch(ctx, MR_SCRATCH_CONV, u_floats + du_floats + vm_floats + width);
    if (!base) return false;
    ws->u = with_u ? base : NULL;
    ws->du = with_du ? base + u_floats : NULL;
    ws->v = base + u_floats + du_floats;
    ws->m = ws->v + v_floats;
    float *zeros = ws->v + vm_floats;
    memset(zeros, 0, (size_t)width * sizeof(float));
    ws->zeros = zeros;
    return true;
}

/* The kind a context keeps this layer's transformed kernel under: in panels where the forward
 * products take them. */
static mr_kept_kind kept_kind(const mr_ctx *ctx, const mr_conv_geom *g) {
    const bool panels = mr_panels_suit(g->cout);
    if (variant_for(ctx, g) == &F4)
        return panels ? MR_KEPT_WINOGRAD_F4_PANELS : MR_KEPT_WINOGRAD_F4;
    return panels ? MR_KEPT_WINOGRAD_F6_PANELS : MR_KEPT_WINOGRAD_F6;
}

bool mr_winograd_kernel_kept(const mr_ctx *ctx, const mr_conv_geom *g, const void *layer) {
    return mr_kept_find(ctx, layer, kept_kind(ctx, g)) != NULL;
}

void mr_winograd_forward(mr_ctx *ctx, const mr_conv_geom *g, const float *x, const float *w,
                         const void *layer, const float *b, bool relu, float *y) {
    const bool panels = mr_panels_suit(g->cout);
    const mr_kept_kernel *kept = mr_kept_find(ctx, layer, kept_kind(ctx, g));
    workspace ws;
    if (!workspace_for(ctx, g, !kept && !ctx->keep_kernels, false, panels && !kept, &ws)) return;
    const plan *p = &ws.p;
    int planes = p->f->alpha * p->f->alpha;
    int64_t u_plane = g->cin * g->cout;
    const float *u = kept ? kept->data : ws.u;
    if (!kept) {
        /* Transformed once for all images where the weights stay fixed (an inference session). */
        float *fresh = ctx->keep_kernels ? mr_kept_new(ctx, layer, kept_kind(ctx, g),
                                                       (size_t)(planes * u_plane) * sizeof(float))
                                         : ws.u;
        if (!fresh) return;
        if (panels) arrange_in_panels(ws.v, w, g, false);
        kernel_transform(fresh, panels ? ws.v : w, g, p);
        u = fresh;
    }
    for (int64_t t0 = 0; t0 < p->tiles; t0 += p->chunk) {
        int64_t t1 = chunk_end(p, t0), tc = t1 - t0;
        int64_t v_plane = tc * g->cin, m_plane = tc * g->cout;
        input_transform(ws.v, x, ws.zeros, g, p, t0, t1);
        /* The a*a products go to the threads whole, plane by plane (PLANES_IN_PARALLEL). */
#pragma omp parallel for schedule(dynamic, 1)
        for (int e = 0; e < planes; e++) {
            const float *ve = ws.v + e * v_plane, *ue = u + e * u_plane;
            float *me = ws.m + e * m_plane;
            if (panels)
                mr_panel_product(tc, g->cout, g->cin, ve, g->cin, ue, me, g->cout);
            else
                mr_sgemm(false, false, tc, g->cout, g->cin, 1.0f, ve, g->cin, ue, g->cout, 0.0f, me,
                         g->cout);
        }
        output_transform(y, ws.m, b, relu, g, p, t0, t1);
    }
}

/* dV = dM U' for a chunk (the input gradient's products), then dx += B dV B'. With `panels`, U
 * holds U' in panels. */
static void input_gradient_chunk(float *dx, const float *u, bool panels, workspace *ws,
                                 const mr_conv_geom *g, int64_t t0, int64_t t1) {
    const plan *p = &ws->p;
    int planes = p->f->alpha * p->f->alpha;
    int64_t tc = t1 - t0, u_plane = g->cin * g->cout, v_plane = tc * g->cin, m_plane = tc * g->cout;
#pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < planes; e++) {
        const float *me = ws->m + e * m_plane, *ue = u + e * u_plane;
        float *ve = ws->v + e * v_plane;
        if (panels)
            mr_panel_product(tc, g->cin, g->cout, me, g->cout, ue, ve, g->cin);
        else
            mr_sgemm(false, true, tc, g->cin, g->cout, 1.0f, me, g->cout, ue, g->cout, 0.0f, ve,
                     g->cin);
    }
    input_transform_backward(dx, ws->v, g, p, t0, t1);
}

/* V = B' x B for a chunk, then dU (+)= V' dM: the first chunk writes dU, each plane while it is
 * in cache, rather than after a pass that zeroes the whole of it. */
static void kernel_gradient_chunk(float *du, const float *x, workspace *ws, const mr_conv_geom *g,
                                  int64_t t0, int64_t t1) {
    const plan *p = &ws->p;
    int planes = p->f->alpha * p->f->alpha;
    int64_t tc = t1 - t0, u_plane = g->cin * g->cout, v_plane = tc * g->cin, m_plane = tc * g->cout;
    const float keep = t0 > 0 ? 1.0f : 0.0f;
    input_transform(ws->v, x, ws->zeros, g, p, t0, t1);
#pragma omp parallel for schedule(dynamic, 1)
    for (int e = 0; e < planes; e++)
        mr_sgemm(true, false, g->cin, g->cout, tc, 1.0f, ws->v + e * v_plane, g->cin,
                 ws->m + e * m_plane, g->cout, keep, du + e * u_plane, g->cout);
}

/* Each chunk's dM = A dY A' can serve both gradients: the input gradient's products first (they
 * read U), then the kernel gradient's (summed in the transformed domain, dU, and brought back
 * once). With one chunk, dU then takes U's buffer. With several, U and dU need a buffer each, so
 * dM is shared only where dY is at least SHARE_RATIO times the extra buffer (in training at 1024,
 * the RPN's and the FPN's convolutions on P2; at 512, none): a second pass over a dY that large
 * misses the cache, and sharing took 4% off the RPN convolution's backward on P2 at 1024 and 3%
 * off the step, for 33 MB. Elsewhere two passes over the chunks make dM for each gradient. */
#define SHARE_RATIO 4

void mr_winograd_backward(mr_ctx *ctx, const mr_conv_geom *g, const float *dy, const float *x,
                          const float *w, float *dx, float *dw, bool dw_add) {
    const plan whole = plan_for(ctx, g);
    const int64_t kernel = whole.f->alpha * whole.f->alpha * g->cin * g->cout;
    const bool several = whole.chunk < whole.tiles;
    const bool apart =
        dx && dw && several && g->n * g->oh * g->ow * g->cout >= SHARE_RATIO * kernel;
    const int passes = dx && dw && several && !apart ? 2 : 1;
    const bool panels = dx && mr_panels_suit(g->cin);
    workspace ws;
    if (!workspace_for(ctx, g, true, apart, panels, &ws)) return;
    const plan *p = &ws.p;
    float *du = apart ? ws.du : ws.u;
    if (panels) arrange_in_panels(ws.v, w, g, true);
    if (dx) kernel_transform(ws.u, panels ? ws.v : w, g, p);
    for (int pass = 0; pass < passes; pass++)
        for (int64_t t0 = 0; t0 < p->tiles; t0 += p->chunk) {
            int64_t t1 = chunk_end(p, t0);
            output_transform_backward(ws.m, dy, ws.zeros, g, p, t0, t1);
            if (dx && pass == 0) input_gradient_chunk(dx, ws.u, panels, &ws, g, t0, t1);
            if (dw && pass == passes - 1) kernel_gradient_chunk(du, x, &ws, g, t0, t1);
        }
    if (dw) kernel_transform_backward(dw, du, g, p, dw_add);
}

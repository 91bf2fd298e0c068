/* cblas_sgemm behind mr_sgemm, or our panel kernel for tall products with a small B; empty
 * products still honour beta (BLAS may skip them).
 *
 * Every element of a product must come out the same bits whatever the thread count, so that a
 * run and its data-parallel twin (processes with fewer threads each) follow one path. OpenBLAS's
 * own threading blocks K differently from its single-threaded driver, so it is never used: a
 * large product is cut into row (or column) blocks that threads compute with single-threaded
 * calls, and every other product is one single-threaded call. Blocks stay far above the size
 * where OpenBLAS switches to its small-matrix kernels, so both paths use the same kernels. The
 * panel kernel's elements do not depend on its blocks at all. */
#include "blas.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "util.h"

/* A product is cut only into blocks of at least this many multiply-adds. */
#define BLOCK_MIN_MNK (1 << 22)

/* Blocks per thread for a product big enough: threads take blocks as they come free, so a core
 * slowed by another process (shared machines) holds up its share of blocks, not half the product.
 * Each block packs the whole of the uncut operand again, which costs under 3% once a block is
 * BLOCK_MIN_ROWS rows (or columns) long. */
#define BLOCKS_PER_THREAD 4
#define BLOCK_MIN_ROWS    1024

/* With a bias, a product's rows are filled with it a block at a time, each block just before the
 * product adds into it, so it is still in cache: filled in a pass of its own, the whole of C
 * would go through memory once more. A ReLU after the product takes each block the same way. Blocks
 * hold about this many floats of C, and only products whose inner dimension is at most
 * BIAS_BLOCK_MAX_K are cut: each block packs B again, which costs little only while B is small
 * beside the work. */
#define BIAS_BLOCK_FLOATS (1 << 18)
#define BIAS_BLOCK_MAX_K  256

/* Products whose B is small and A tall (1x1 and im2col convolutions over a feature map, their
 * input gradients) run on our panel kernel (core/gemm_panel.c) with B laid out in panels once
 * per product. In a training step at 512, OpenBLAS ran the forward ones (K of 64 to 1024) at
 * 54-80% of the sgemm ceiling and the panels run them at 77-92%; the step took 1% less, 1.3% at
 * 1024. B must stay in a core's L2 while every block of 14 rows streams it, and each block's
 * rows of A in L1 (K bounded); with fewer rows, laying B out costs more than it saves. */
#define PANEL_MIN_ROWS   128
#define PANEL_MIN_DIM    64 /* N and K: narrower products are the narrow kernels' */
#define PANEL_MAX_K      1024
#define PANEL_MAX_FLOATS (1 << 19) /* 2 MB */

static int level_limit = MR_OWN_AVX512;

int mr_own_kernel_limit(int level) {
    int before = level_limit;
    level_limit = level;
    return before;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
static int cpu_level(void) {
    __builtin_cpu_init(); /* libgcc also checks that the OS saves the wide registers */
    if (__builtin_cpu_supports("avx512f")) return MR_OWN_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return MR_OWN_AVX2;
    return MR_OWN_OFF;
}
#else
static int cpu_level(void) {
    return MR_OWN_OFF;
}
#endif

int mr_own_kernel_level(void) {
    const int cpu = cpu_level();
    return cpu < level_limit ? cpu : level_limit;
}

/* What a product does to C around the multiplication, block by block. */
typedef struct {
    const float *bias; /* C = A B + bias on every row (alpha and beta unused); NULL: none */
    bool relu;         /* then max(0, c) on every element: the ReLU that follows a layer */
} epilogue;

/* One single-threaded product: C = alpha A B + beta C, then the epilogue. */
static void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, epilogue e, float *C,
                 int64_t ldc) {
    const float *bias = e.bias;
    int64_t rows = M;
    if (bias) alpha = beta = 1.0f;
    if ((bias || e.relu) && K <= BIAS_BLOCK_MAX_K) rows = (BIAS_BLOCK_FLOATS / N + 15) / 16 * 16;
    for (int64_t r0 = 0; r0 < M; r0 += rows) {
        int64_t n = M - r0 < rows ? M - r0 : rows;
        float *c = C + r0 * ldc;
        if (bias)
            for (int64_t r = 0; r < n; r++) memcpy(c + r * ldc, bias, (size_t)N * sizeof(float));
        if (K > 0 && !mr_narrow_product(ta, tb, n, N, K, alpha, ta ? A + r0 : A + r0 * lda, lda, B,
                                        ldb, beta, c, ldc))
            cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
                        tb ? CblasTrans : CblasNoTrans, (blasint)n, (blasint)N, (blasint)K, alpha,
                        ta ? A + r0 : A + r0 * lda, (blasint)lda, B, (blasint)ldb, beta, c,
                        (blasint)ldc);
        if (e.relu)
            for (int64_t r = 0; r < n; r++) mr_relu_floats(c + r * ldc, N);
    }
}

static bool panels_take(bool ta, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
    return !ta && alpha == 1.0f && (beta == 0.0f || beta == 1.0f) && M >= PANEL_MIN_ROWS &&
           N >= PANEL_MIN_DIM && K >= PANEL_MIN_DIM && K <= PANEL_MAX_K &&
           K * N <= PANEL_MAX_FLOATS && mr_panels_suit(N);
}

/* C = A op(B) (+ C with beta 1, or + the bias), then the ReLU, on the panel kernel, threads
 * taking blocks of rows. Each element is its start plus its K terms in order, so the bits depend
 * on neither the blocks nor the threads. False (nothing done) when the panels find no memory. */
static bool panel_product(bool tb, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const float *B, int64_t ldb, float beta, epilogue e, float *C,
                          int64_t ldc) {
    float *panels = aligned_alloc(64, (size_t)(K * N) * sizeof(float));
    if (!panels) return false;
    const float *start = e.bias ? e.bias : beta == 1.0f ? C : NULL;
    const int64_t start_ld = e.bias ? 0 : ldc;
    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    /* Blocks of whole 14-row kernel blocks, several per thread (see BLOCKS_PER_THREAD). */
    int64_t rows = (M + threads * BLOCKS_PER_THREAD - 1) / (threads * BLOCKS_PER_THREAD);
    rows = (rows + 13) / 14 * 14;
    const int64_t blocks = (M + rows - 1) / rows;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
#pragma omp for schedule(static)
        for (int64_t j = 0; j < N; j += MR_PANEL)
            mr_panels_pack(K, MR_PANEL, tb ? B + j * ldb : B + j, ldb, tb, panels + j * K);
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t lo = b * rows, n = M - lo < rows ? M - lo : rows;
            mr_panel_product_from(n, N, K, A + lo * lda, lda, panels,
                                  start ? start + lo * start_ld : NULL, start_ld, e.relu,
                                  C + lo * ldc, ldc);
        }
    }
    free(panels);
    return true;
}

static void run_product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        epilogue e, float *C, int64_t ldc) {
    if (K <= 0 && !e.bias) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                float c = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
                C[i * ldc + j] = e.relu && !(c > 0.0f) ? 0.0f : c;
            }
        return;
    }
    if (panels_take(ta, M, N, K, alpha, e.bias ? 1.0f : beta) &&
        panel_product(tb, M, N, K, A, lda, B, ldb, beta, e, C, ldc))
        return;
    const int threads = omp_get_max_threads();
    if (threads == 1 || omp_in_parallel()) { /* OpenBLAS runs single-threaded here */
        gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, e, C, ldc);
        return;
    }
    const double mnk = (double)M * (double)N * (double)K;
    const bool by_rows = M >= N;
    const int64_t dim = by_rows ? M : N;
    int64_t parts = (int64_t)(mnk / BLOCK_MIN_MNK);
    if (parts > threads) parts = threads;
    if (parts > dim / 16) parts = dim / 16;
    if (parts == threads) {
        int64_t more = (int64_t)(mnk / BLOCK_MIN_MNK);
        if (more > threads * BLOCKS_PER_THREAD) more = threads * BLOCKS_PER_THREAD;
        if (more > dim / BLOCK_MIN_ROWS) more = dim / BLOCK_MIN_ROWS;
        if (more > parts) parts = more;
    }
    if (parts <= 1) {
        /* Inside a parallel region, so that OpenBLAS does not thread it either. */
#pragma omp parallel
#pragma omp single
        gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, e, C, ldc);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(parts < threads ? (int)parts : threads)
    for (int64_t p = 0; p < parts; p++) {
        /* Block edges on multiples of 16 keep whole vectors in each block. */
        int64_t lo = dim * p / parts / 16 * 16,
                hi = p + 1 == parts ? dim : dim * (p + 1) / parts / 16 * 16;
        if (hi <= lo) continue;
        if (by_rows)
            gemm(ta, tb, hi - lo, N, K, alpha, ta ? A + lo : A + lo * lda, lda, B, ldb, beta, e,
                 C + lo * ldc, ldc);
        else
            gemm(ta, tb, M, hi - lo, K, alpha, A, lda, tb ? B + lo * ldb : B + lo, ldb, beta,
                 (epilogue){e.bias ? e.bias + lo : NULL, e.relu}, C + lo, ldc);
    }
}

static void product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                    int64_t lda, const float *B, int64_t ldb, float beta, epilogue e, float *C,
                    int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    double start = mr_profile_product_begin();
    run_product(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, e, C, ldc);
    mr_profile_product_end(start, (double)M, (double)N, (double)K);
}

void mr_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    product(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, (epilogue){NULL, false}, C, ldc);
}

void mr_sgemm_bias(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                   int64_t ldb, const float *bias, bool relu, float *C, int64_t ldc) {
    product(false, false, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, (epilogue){bias, relu}, C, ldc);
}

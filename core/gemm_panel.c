/* Products whose B is laid out in panels ahead of time: Winograd's transformed kernels, which
 * core/winograd.c writes in this layout as it makes them, once per layer and step.
 *
 * OpenBLAS packs both operands on every call. A Winograd layer makes a*a products per chunk of
 * tiles, each with only the chunk's rows, so each call packs its whole transformed-kernel plane
 * (up to 1 MB) for a few hundred rows, and the plane comes from memory again for every chunk.
 * Here B is already in panels and A (the transformed data) is read in place: a block of 14 rows
 * holds 14 x 2 vector accumulators, broadcasts A[m][k] against the two vectors of row k of a panel,
 * and prefetches the panel's rows a few ahead. On the RPN's convolution at P2 (170 x 256 by
 * 256 x 512, 64 planes) the products took 7% less time than OpenBLAS's, in place in a step.
 *
 * mr_sgemm (core/blas.c) runs tall products with a small B here too, B laid out once per call:
 * 1x1 and im2col convolutions over a feature map, and their input gradients.
 *
 * Every element adds its K terms in order with one fused multiply-add each, from zero (or from a
 * start the caller gives: C itself, a bias): its bits depend on nothing but its row of A and
 * column of B, so threads (which take whole planes in core/winograd.c, blocks of rows in
 * core/blas.c) cannot change them. */
#include "blas.h"

#include <string.h>

#include "profile.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_PANEL_KERNEL 1
#include <immintrin.h>
#endif

bool mr_panels_suit(int64_t N) {
    return N > 0 && N % MR_PANEL == 0 && mr_own_kernel_level() >= MR_OWN_AVX512;
}

void mr_panels_pack(int64_t K, int64_t N, const float *B, int64_t ldb, bool transposed,
                    float *panels) {
    if (!transposed) {
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n += MR_PANEL)
                memcpy(panels + mr_panel_index(k, n, K), B + k * ldb + n,
                       (size_t)(N - n < MR_PANEL ? N - n : MR_PANEL) * sizeof(float));
        return;
    }
    /* A transpose in blocks of 16 k: each row of B gives one cache line per block. */
    for (int64_t n0 = 0; n0 < N; n0 += MR_PANEL)
        for (int64_t k0 = 0; k0 < K; k0 += 16) {
            const int64_t n1 = N - n0 < MR_PANEL ? N : n0 + MR_PANEL,
                          k1 = K - k0 < 16 ? K : k0 + 16;
            for (int64_t n = n0; n < n1; n++)
                for (int64_t k = k0; k < k1; k++) panels[mr_panel_index(k, n, K)] = B[n * ldb + k];
        }
}

#ifdef HAVE_PANEL_KERNEL

#define ROWS     14 /* 28 accumulators, two panel vectors and a broadcast: 31 of 32 registers */
#define PREFETCH 8  /* panel rows ahead, each two cache lines */

/* `rows` (a constant in each copy below, at most ROWS) rows of A times one panel (K rows of
 * MR_PANEL). Made once per row count, so that a partial block at the end of a chunk of tiles also
 * keeps its accumulators in registers: with a variable count they lived on the stack, and the
 * last block of each chunk ran several times slower than the others. */
__attribute__((target("avx512f"), always_inline)) static inline void
panel_rows(const int rows, int64_t K, const float *A, int64_t lda, const float *panel,
           const float *start, int64_t start_ld, bool relu, float *C, int64_t ldc) {
    __m512 c0[ROWS], c1[ROWS];
    if (start) {
#pragma GCC unroll 14
        for (int r = 0; r < rows; r++) {
            c0[r] = _mm512_loadu_ps(start + r * start_ld);
            c1[r] = _mm512_loadu_ps(start + r * start_ld + 16);
        }
    } else {
#pragma GCC unroll 14
        for (int r = 0; r < rows; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < K; k++) {
        const float *b = panel + k * MR_PANEL;
        /* Past the panel's end this touches the next one, or memory it never reads: a prefetch
         * does not fault. */
        _mm_prefetch((const char *)(b + PREFETCH * MR_PANEL), _MM_HINT_T0);
        _mm_prefetch((const char *)(b + PREFETCH * MR_PANEL + 16), _MM_HINT_T0);
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
        for (int r = 0; r < rows; r++) {
            __m512 a = _mm512_set1_ps(A[r * lda + k]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
    }
    if (relu) { /* max with zero second: a NaN becomes 0, as mr_relu_floats makes it */
        const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 14
        for (int r = 0; r < rows; r++) {
            c0[r] = _mm512_max_ps(c0[r], zero);
            c1[r] = _mm512_max_ps(c1[r], zero);
        }
    }
#pragma GCC unroll 14
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_ps(C + r * ldc, c0[r]);
        _mm512_storeu_ps(C + r * ldc + 16, c1[r]);
    }
}

__attribute__((target("avx512f"))) static void panel_block(int64_t rows, int64_t K, const float *A,
                                                           int64_t lda, const float *panel,
                                                           const float *start, int64_t start_ld,
                                                           bool relu, float *C, int64_t ldc) {
    switch (rows) {
#define ROWS_CASE(n)                                                                               \
    case n:                                                                                        \
        panel_rows(n, K, A, lda, panel, start, start_ld, relu, C, ldc);                            \
        break
        ROWS_CASE(1);
        ROWS_CASE(2);
        ROWS_CASE(3);
        ROWS_CASE(4);
        ROWS_CASE(5);
        ROWS_CASE(6);
        ROWS_CASE(7);
        ROWS_CASE(8);
        ROWS_CASE(9);
        ROWS_CASE(10);
        ROWS_CASE(11);
        ROWS_CASE(12);
        ROWS_CASE(13);
        ROWS_CASE(14);
#undef ROWS_CASE
    }
    _mm256_zeroupper(); /* or the SSE code after it runs many times slower */
}

void mr_panel_product_from(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                           const float *panels, const float *start, int64_t start_ld, bool relu,
                           float *C, int64_t ldc) {
    /* Row blocks outside, panels inside: the block's rows of A stay in the first-level cache
     * while the panels stream past them. */
    for (int64_t m0 = 0; m0 < M; m0 += ROWS) {
        int64_t rows = M - m0 < ROWS ? M - m0 : ROWS;
        for (int64_t j = 0; j < N; j += MR_PANEL)
            panel_block(rows, K, A + m0 * lda, lda, panels + j * K,
                        start ? start + m0 * start_ld + j : NULL, start_ld, relu, C + m0 * ldc + j,
                        ldc);
    }
}

void mr_panel_product(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *panels, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    double start = mr_profile_product_begin();
    mr_panel_product_from(M, N, K, A, lda, panels, NULL, 0, false, C, ldc);
    mr_profile_product_end(start, (double)M, (double)N, (double)K);
}

#else

void mr_panel_product_from(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                           const float *panels, const float *start, int64_t start_ld, bool relu,
                           float *C, int64_t ldc) {
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)panels, (void)start, (void)start_ld;
    (void)relu, (void)C, (void)ldc;
}

void mr_panel_product(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *panels, float *C, int64_t ldc) {
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)panels, (void)C, (void)ldc;
}

#endif

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
 * Every element adds its K terms in order with one fused multiply-add each, from zero: its bits
 * depend on nothing but its row of A and column of B, so threads (which take whole planes in
 * core/winograd.c) cannot change them. */
#include "blas.h"
#include "profile.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_PANEL_KERNEL 1
#include <immintrin.h>
#endif

bool mr_panels_suit(int64_t N) {
    return N > 0 && N % MR_PANEL == 0 && mr_own_kernel_level() >= MR_OWN_AVX512;
}

#ifdef HAVE_PANEL_KERNEL

#define ROWS     14 /* 28 accumulators, two panel vectors and a broadcast: 31 of 32 registers */
#define PREFETCH 8  /* panel rows ahead, each two cache lines */

/* Rows m0 .. m0+rows (rows <= ROWS) of C times one panel (K rows of MR_PANEL). */
__attribute__((target("avx512f"))) static void panel_block(int64_t rows, int64_t K, const float *A,
                                                           int64_t lda, const float *panel,
                                                           float *C, int64_t ldc) {
    __m512 c0[ROWS], c1[ROWS];
    for (int r = 0; r < ROWS; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    if (rows == ROWS) {
        for (int64_t k = 0; k < K; k++) {
            const float *b = panel + k * MR_PANEL;
            /* Past the panel's end this touches the next one, or memory it never reads: a
             * prefetch does not fault. */
            _mm_prefetch((const char *)(b + PREFETCH * MR_PANEL), _MM_HINT_T0);
            _mm_prefetch((const char *)(b + PREFETCH * MR_PANEL + 16), _MM_HINT_T0);
            __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#define ROW(r)                                                                                     \
    {                                                                                              \
        __m512 a = _mm512_set1_ps(A[r * lda + k]);                                                 \
        c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);                                                     \
        c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);                                                     \
    }
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6);
            ROW(7) ROW(8) ROW(9) ROW(10) ROW(11) ROW(12) ROW(13);
#undef ROW
        }
    } else { /* the last few rows */
        for (int64_t k = 0; k < K; k++) {
            __m512 b0 = _mm512_loadu_ps(panel + k * MR_PANEL);
            __m512 b1 = _mm512_loadu_ps(panel + k * MR_PANEL + 16);
            for (int64_t r = 0; r < rows; r++) {
                __m512 a = _mm512_set1_ps(A[r * lda + k]);
                c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
            }
        }
    }
    for (int64_t r = 0; r < rows; r++) {
        _mm512_storeu_ps(C + r * ldc, c0[r]);
        _mm512_storeu_ps(C + r * ldc + 16, c1[r]);
    }
    _mm256_zeroupper(); /* or the SSE code after it runs many times slower */
}

void mr_panel_product(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *panels, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    mr_profile_gemm((double)M, (double)N, (double)K);
    /* Row blocks outside, panels inside: the block's rows of A stay in the first-level cache
     * while the panels stream past them. */
    for (int64_t m0 = 0; m0 < M; m0 += ROWS) {
        int64_t rows = M - m0 < ROWS ? M - m0 : ROWS;
        for (int64_t j = 0; j < N; j += MR_PANEL)
            panel_block(rows, K, A + m0 * lda, lda, panels + j * K, C + m0 * ldc + j, ldc);
    }
}

#else

void mr_panel_product(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *panels, float *C, int64_t ldc) {
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)panels, (void)C, (void)ldc;
}

#endif

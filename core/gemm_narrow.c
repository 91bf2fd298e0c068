/* Products of narrow layers, whose few output columns OpenBLAS handles badly: it vectorises
 * along N and packs A first, so at these widths it runs its lanes mostly empty over a copy of A.
 * Narrow layers are the RPN's class and box layers (6 and 12 columns over every anchor position of
 * P2) and the mask head's logits.
 *
 * Forward, C (M,N) = alpha A (M,K) B (K,N) + beta C for N up to 32 (16 with AVX2): the RPN's box
 * layer on P2 at 1024 took 26 ms in OpenBLAS and takes 9 here. The kernel streams A once. A block
 * of ROWS rows holds ROWS x NV vector accumulators; for each k it broadcasts A[m][k] against row k
 * of B, zero-padded to whole vectors and packed once per call.
 *
 * Input gradient, C (M,N) = alpha A (M,K) B' + beta C for K up to 32 (AVX-512): 19 ms -> 13 for
 * that layer, reading and writing C once. The kernel gradient (A transposed) stays OpenBLAS's:
 * the kernels tried were no faster.
 *
 * Every element adds its K terms in order with one fused multiply-add each, so the AVX2 and
 * AVX-512 kernels give the same bits, and threads (which split rows in core/blas.c) cannot change
 * them. */
#include <stdlib.h>
#include <string.h>

#include "blas.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_NARROW_KERNEL 1
#include <immintrin.h>
#endif

#ifdef HAVE_NARROW_KERNEL

/* n floats on a 64-byte boundary (aligned_alloc wants a whole number of 64-byte blocks). */
static float *aligned_floats(int64_t n) {
    return aligned_alloc(64, ((size_t)n * sizeof(float) + 63) / 64 * 64);
}

/* Writes a row of C from its accumulators. */
static void store_row(float *c, const float *acc, int64_t n, float alpha, float beta) {
    if (beta == 0.0f)
        for (int64_t j = 0; j < n; j++) c[j] = alpha * acc[j];
    else
        for (int64_t j = 0; j < n; j++) c[j] = alpha * acc[j] + beta * c[j];
}

#define AVX512_ROWS 8

/* Rows m0 .. m0+rows (rows <= AVX512_ROWS) with nv vectors (16 floats each) of packed B. */
__attribute__((target("avx512f"))) static void block_avx512(int64_t rows, int nv, int64_t N,
                                                            int64_t K, float alpha, const float *A,
                                                            int64_t lda, const float *Bp,
                                                            float beta, float *C, int64_t ldc) {
    __m512 c0[AVX512_ROWS], c1[AVX512_ROWS];
    for (int r = 0; r < AVX512_ROWS; r++) c0[r] = c1[r] = _mm512_setzero_ps();
    const int64_t width = 16 * nv;
    if (rows == AVX512_ROWS && nv == 1) {
        for (int64_t k = 0; k < K; k++) {
            __m512 b0 = _mm512_load_ps(Bp + k * width);
#define ROW(r) c0[r] = _mm512_fmadd_ps(_mm512_set1_ps(A[r * lda + k]), b0, c0[r]);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
        }
    } else if (rows == AVX512_ROWS) {
        for (int64_t k = 0; k < K; k++) {
            __m512 b0 = _mm512_load_ps(Bp + k * width), b1 = _mm512_load_ps(Bp + k * width + 16);
#define ROW(r)                                                                                     \
    {                                                                                              \
        __m512 a = _mm512_set1_ps(A[r * lda + k]);                                                 \
        c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);                                                     \
        c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);                                                     \
    }
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
        }
    } else { /* the last few rows */
        for (int64_t k = 0; k < K; k++) {
            __m512 b0 = _mm512_load_ps(Bp + k * width);
            __m512 b1 = nv > 1 ? _mm512_load_ps(Bp + k * width + 16) : _mm512_setzero_ps();
            for (int64_t r = 0; r < rows; r++) {
                __m512 a = _mm512_set1_ps(A[r * lda + k]);
                c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
                c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
            }
        }
    }
    float acc[AVX512_ROWS][32];
    for (int64_t r = 0; r < rows; r++) {
        _mm512_storeu_ps(acc[r], c0[r]);
        _mm512_storeu_ps(acc[r] + 16, c1[r]);
    }
    _mm256_zeroupper(); /* or the SSE code after it runs many times slower (expf: 20x) */
    for (int64_t r = 0; r < rows; r++) store_row(C + r * ldc, acc[r], N, alpha, beta);
}

#define AVX2_ROWS 6

/* As block_avx512 with vectors of 8 floats, nv <= 2: 12 accumulators of the 16 registers. */
__attribute__((target("avx2,fma"))) static void block_avx2(int64_t rows, int nv, int64_t N,
                                                           int64_t K, float alpha, const float *A,
                                                           int64_t lda, const float *Bp, float beta,
                                                           float *C, int64_t ldc) {
    __m256 c0[AVX2_ROWS], c1[AVX2_ROWS];
    for (int r = 0; r < AVX2_ROWS; r++) c0[r] = c1[r] = _mm256_setzero_ps();
    const int64_t width = 8 * nv;
    if (rows == AVX2_ROWS && nv == 1) {
        for (int64_t k = 0; k < K; k++) {
            __m256 b0 = _mm256_load_ps(Bp + k * width);
#define ROW(r) c0[r] = _mm256_fmadd_ps(_mm256_set1_ps(A[r * lda + k]), b0, c0[r]);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
        }
    } else if (rows == AVX2_ROWS) {
        for (int64_t k = 0; k < K; k++) {
            __m256 b0 = _mm256_load_ps(Bp + k * width), b1 = _mm256_load_ps(Bp + k * width + 8);
#define ROW(r)                                                                                     \
    {                                                                                              \
        __m256 a = _mm256_set1_ps(A[r * lda + k]);                                                 \
        c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);                                                     \
        c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);                                                     \
    }
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
        }
    } else {
        for (int64_t k = 0; k < K; k++) {
            __m256 b0 = _mm256_load_ps(Bp + k * width);
            __m256 b1 = nv > 1 ? _mm256_load_ps(Bp + k * width + 8) : _mm256_setzero_ps();
            for (int64_t r = 0; r < rows; r++) {
                __m256 a = _mm256_set1_ps(A[r * lda + k]);
                c0[r] = _mm256_fmadd_ps(a, b0, c0[r]);
                c1[r] = _mm256_fmadd_ps(a, b1, c1[r]);
            }
        }
    }
    float acc[AVX2_ROWS][16];
    for (int64_t r = 0; r < rows; r++) {
        _mm256_storeu_ps(acc[r], c0[r]);
        _mm256_storeu_ps(acc[r] + 8, c1[r]);
    }
    _mm256_zeroupper();
    for (int64_t r = 0; r < rows; r++) store_row(C + r * ldc, acc[r], N, alpha, beta);
}

/* ---- the input gradient of a narrow layer (AVX-512 only) ----------------------------------- */

/* C (M,N) = alpha A B' + beta C for A (M,K), B (N,K), K <= 32: a narrow layer's input gradient.
 * B' is packed (K rows of N); each row of C is made 16 columns at a time from K broadcasts of
 * its row of A, so C is read and written once. */
__attribute__((target("avx512f"))) static void narrow_a_bt(int64_t M, int64_t N, int64_t K,
                                                           float alpha, const float *A, int64_t lda,
                                                           const float *B, int64_t ldb, float beta,
                                                           float *C, int64_t ldc, float *bt) {
    const int64_t width = (N + 15) / 16 * 16;
    for (int64_t k = 0; k < K; k++)
        for (int64_t j = 0; j < width; j++) bt[k * width + j] = j < N ? B[j * ldb + k] : 0.0f;
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int64_t m = 0; m < M; m++) {
        const float *a = A + m * lda;
        float *c = C + m * ldc;
        for (int64_t j = 0; j < N; j += 16) {
            const __mmask16 lanes =
                N - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (N - j)) - 1);
            __m512 s = _mm512_setzero_ps();
            for (int64_t k = 0; k < K; k++)
                s = _mm512_fmadd_ps(_mm512_set1_ps(a[k]), _mm512_load_ps(bt + k * width + j), s);
            s = _mm512_mul_ps(va, s);
            if (beta != 0.0f)
                s = _mm512_add_ps(s, _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(lanes, c + j)));
            _mm512_mask_storeu_ps(c + j, lanes, s);
        }
    }
    _mm256_zeroupper();
}

#endif

bool mr_narrow_product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc) {
#ifdef HAVE_NARROW_KERNEL
    const int use = mr_own_kernel_level();
    if (use == MR_OWN_OFF || M <= 0 || N <= 0 || K <= 0) return false;
    if (ta) return false; /* a kernel gradient: OpenBLAS was as fast as the kernels tried */
    if (tb) {
        if (use != MR_OWN_AVX512 || K > 32) return false;
        float *bt = aligned_floats(K * ((N + 15) / 16 * 16));
        if (!bt) return false; /* BLAS then computes it */
        narrow_a_bt(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bt);
        free(bt);
        return true;
    }
    const int64_t lanes = use == MR_OWN_AVX512 ? 16 : 8, widest = 2 * lanes;
    if (N > widest) return false;
    const int nv = N > lanes ? 2 : 1;
    const int64_t width = lanes * nv;
    float *Bp = aligned_floats(K * width);
    if (!Bp) return false;
    for (int64_t k = 0; k < K; k++) {
        memcpy(Bp + k * width, B + k * ldb, (size_t)N * sizeof(float));
        memset(Bp + k * width + N, 0, (size_t)(width - N) * sizeof(float));
    }
    const int64_t rows = use == MR_OWN_AVX512 ? AVX512_ROWS : AVX2_ROWS;
    for (int64_t m0 = 0; m0 < M; m0 += rows) {
        int64_t n = M - m0 < rows ? M - m0 : rows;
        if (use == MR_OWN_AVX512)
            block_avx512(n, nv, N, K, alpha, A + m0 * lda, lda, Bp, beta, C + m0 * ldc, ldc);
        else
            block_avx2(n, nv, N, K, alpha, A + m0 * lda, lda, Bp, beta, C + m0 * ldc, ldc);
    }
    free(Bp);
    return true;
#else
    (void)ta, (void)tb, (void)M, (void)N, (void)K, (void)alpha, (void)A, (void)lda, (void)B;
    (void)ldb, (void)beta, (void)C, (void)ldc;
    return false;
#endif
}

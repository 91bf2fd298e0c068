/* Matrix product with bfloat16 inputs and float sums, for inference on CPUs with AVX-512 BF16.
 *
 * Debian's OpenBLAS 0.3.21 exports no sbgemm, so the product is our own: both operands are rounded
 * to bfloat16 (nearest, ties to even) as they are packed, and VDPBF16PS multiplies pairs of them
 * into float accumulators: 32 multiply-adds a cycle where single precision has 16 on AMD Zen 4.
 * The kernel operand B (weights) is packed once per layer and kept; A is packed as it is used.
 *
 * Layout: C (M,N) += A (M,K) B (K,N), row-major, in blocks of NC columns and, within them, KC of K.
 *  - A block of B is packed in panels of NR columns; pair p of a panel holds (B[2p][n],
 *    B[2p+1][n]) for its NR columns n, one 32-bit word each. Blocks follow each other, columns
 *    outer, in the order the product visits them.
 *  - A is packed row by row, pair p of a row holding (A[m][2p], A[m][2p+1]).
 *  - The MR x NR kernel broadcasts one word of A against two vectors of B per pair and row.
 * Each element of C sums its K blocks in one order whatever the threads do (they split rows
 * only), so its bits do not depend on the thread count, as core/blas.c promises for sgemm. */
#include "blas.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "profile.h"
#include "status.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_BF16_KERNEL 1
#include <immintrin.h>
#endif

#define MR 12   /* rows of C per kernel call: 24 accumulators of the 32 vector registers */
#define NR 32   /* columns of C per kernel call: two vectors of 16 floats */
#define KC 384  /* K per block: a block's B panel (KC * NR bf16) stays in L1 beside A's rows */
#define NC 1024 /* columns per block: the packed B block (768 KB) stays in L2 */
#define MC 96   /* rows per packed A block of one thread */

#define PAIRS (KC / 2)

bool mr_bf16_supported(void) {
#ifdef HAVE_BF16_KERNEL
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
#else
    return false;
#endif
}

#ifdef HAVE_BF16_KERNEL
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

BF16_TARGET static __mmask16 first_lanes(int64_t n) {
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* Rows k0 .. k0+kc of B, columns n0 .. n0+nc, into NR-column panels of pairs (zero beyond the
 * edges, so the kernel never tests them). */
BF16_TARGET static void pack_b(const float *B, int64_t ldb, int64_t k0, int64_t kc, int64_t n0,
                               int64_t nc, uint32_t *out) {
    const int64_t pairs = (kc + 1) / 2;
    for (int64_t j = 0; j < nc; j += NR) {
        uint32_t *panel = out + j / NR * pairs * NR;
        for (int64_t p = 0; p < pairs; p++) {
            const float *even = B + (k0 + 2 * p) * ldb + n0 + j;
            const bool has_odd = 2 * p + 1 < kc;
            for (int h = 0; h < NR; h += 16) {
                __mmask16 m = first_lanes(nc - j - h);
                __m512 x = _mm512_maskz_loadu_ps(m, even + h);
                __m512 y = has_odd ? _mm512_maskz_loadu_ps(m, even + ldb + h) : _mm512_setzero_ps();
                __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x));
                __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(y));
                _mm512_storeu_si512(panel + p * NR + h,
                                    _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
            }
        }
    }
}

/* Rows m0 .. m0+mc of A, columns k0 .. k0+kc, as bf16 pairs, PAIRS words a row; rows up to a
 * multiple of MR are zero. */
BF16_TARGET static void pack_a(const float *A, int64_t lda, int64_t m0, int64_t mc, int64_t k0,
                               int64_t kc, uint32_t *out) {
    const int64_t pairs = (kc + 1) / 2;
    for (int64_t r = 0; r < mc; r++) {
        const float *row = A + (m0 + r) * lda + k0;
        uint32_t *o = out + r * PAIRS;
        for (int64_t k = 0; k < kc; k += 32) {
            __m512 lo = _mm512_maskz_loadu_ps(first_lanes(kc - k), row + k);
            __m512 hi = _mm512_maskz_loadu_ps(first_lanes(kc - k - 16), row + k + 16);
            __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            _mm512_mask_storeu_epi32(o + k / 2, first_lanes(pairs - k / 2), v);
        }
    }
    int64_t padded = (mc + MR - 1) / MR * MR;
    if (padded > mc) memset(out + mc * PAIRS, 0, (size_t)((padded - mc) * PAIRS) * sizeof *out);
}

/* C (mr x nr of an MR x NR tile) = acc + (first block ? beta * C : C). */
#define ROW_DECLARE(r) __m512 c##r##a = _mm512_setzero_ps(), c##r##b = _mm512_setzero_ps();
#define ROW_STEP(r)                                                                                \
    av = (__m512bh)_mm512_set1_epi32((int)a[(r)*PAIRS + p]);                                       \
    c##r##a = _mm512_dpbf16_ps(c##r##a, av, b0);                                                   \
    c##r##b = _mm512_dpbf16_ps(c##r##b, av, b1);
#define ROW_SAVE(r) acc[r][0] = c##r##a, acc[r][1] = c##r##b;
#define ALL_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

BF16_TARGET static void kernel(int64_t pairs, const uint32_t *a, const uint32_t *b, float *C,
                               int64_t ldc, int mr, int nr, bool first, float beta) {
    ALL_ROWS(ROW_DECLARE)
    for (int64_t p = 0; p < pairs; p++) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b + p * NR);
        __m512bh b1 = (__m512bh)_mm512_loadu_si512(b + p * NR + 16);
        __m512bh av;
        ALL_ROWS(ROW_STEP)
    }
    __m512 acc[MR][2];
    ALL_ROWS(ROW_SAVE)
    const __mmask16 m0 = first_lanes(nr), m1 = first_lanes(nr - 16);
    for (int r = 0; r < mr; r++) {
        float *c = C + r * ldc;
        if (!first || beta != 0.0f) {
            __m512 scale = _mm512_set1_ps(first ? beta : 1.0f);
            acc[r][0] = _mm512_fmadd_ps(scale, _mm512_maskz_loadu_ps(m0, c), acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(scale, _mm512_maskz_loadu_ps(m1, c + 16), acc[r][1]);
        }
        _mm512_mask_storeu_ps(c, m0, acc[r][0]);
        _mm512_mask_storeu_ps(c + 16, m1, acc[r][1]);
    }
}

/* Rows m0 .. m0+mc of C over one packed B block (columns n0 .. n0+nc, K block k0 .. k0+kc). */
static void block_rows(const float *A, int64_t lda, int64_t m0, int64_t mc, int64_t k0, int64_t kc,
                       int64_t nc, const uint32_t *bpack, uint32_t *apack, float beta, float *C,
                       int64_t ldc) {
    pack_a(A, lda, m0, mc, k0, kc, apack);
    const int64_t pairs = (kc + 1) / 2;
    for (int64_t j = 0; j < nc; j += NR)
        for (int64_t i = 0; i < mc; i += MR)
            kernel(pairs, apack + i * PAIRS, bpack + j / NR * pairs * NR, C + (m0 + i) * ldc + j,
                   ldc, (int)min64(mc - i, MR), (int)min64(nc - j, NR), k0 == 0, beta);
}

/* Words of one packed block: its pairs times its columns rounded up to whole panels. */
static size_t block_words(int64_t kc, int64_t nc) {
    return (size_t)((kc + 1) / 2) * (size_t)((nc + NR - 1) / NR * NR);
}

size_t mr_bf16_packed_words(int64_t K, int64_t N) {
    size_t words = 0;
    for (int64_t n0 = 0; n0 < N; n0 += NC)
        for (int64_t k0 = 0; k0 < K; k0 += KC)
            words += block_words(min64(K - k0, KC), min64(N - n0, NC));
    return words;
}

void mr_bf16_pack(int64_t K, int64_t N, const float *B, int64_t ldb, uint32_t *packed) {
    for (int64_t n0 = 0; n0 < N; n0 += NC)
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = min64(K - k0, KC), nc = min64(N - n0, NC);
            pack_b(B, ldb, k0, kc, n0, nc, packed);
            packed += block_words(kc, nc);
        }
}

size_t mr_sgemm_bf16_workspace(void) {
    return (MC + MR) * PAIRS * sizeof(uint32_t);
}

/* Rows m0 .. m0+mc of C, over every block of B in the order mr_bf16_pack laid them. */
static void rows_product(int64_t m0, int64_t mc, int64_t N, int64_t K, const float *A, int64_t lda,
                         const uint32_t *packed, float beta, float *C, int64_t ldc,
                         uint32_t *apack) {
    for (int64_t n0 = 0; n0 < N; n0 += NC)
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            const int64_t kc = min64(K - k0, KC), nc = min64(N - n0, NC);
            block_rows(A, lda, m0, mc, k0, kc, nc, packed, apack, beta, C + n0, ldc);
            packed += block_words(kc, nc);
        }
}

static void run_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const uint32_t *packed, float beta, float *C, int64_t ldc, void *work) {
    if (K <= 0) { /* no K block runs: C = beta C */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
    const size_t slice = mr_sgemm_bf16_workspace() / sizeof(uint32_t);
    if (omp_in_parallel() || omp_get_max_threads() == 1 || M <= MC) {
        uint32_t *apack =
            (uint32_t *)work + (omp_in_parallel() ? (size_t)omp_get_thread_num() : 0) * slice;
        for (int64_t m0 = 0; m0 < M; m0 += MC)
            rows_product(m0, min64(M - m0, MC), N, K, A, lda, packed, beta, C, ldc, apack);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t m0 = 0; m0 < M; m0 += MC)
        rows_product(m0, min64(M - m0, MC), N, K, A, lda, packed, beta, C, ldc,
                     (uint32_t *)work + (size_t)omp_get_thread_num() * slice);
}

void mr_sgemm_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const uint32_t *packed, float beta, float *C, int64_t ldc, void *work) {
    if (M <= 0 || N <= 0) return;
    double start = mr_profile_product_begin();
    run_bf16(M, N, K, A, lda, packed, beta, C, ldc, work);
    mr_profile_product_end(start, (double)M, (double)N, (double)K);
}

/* A 3x3 convolution's product at 256 channels, 1024 positions: a few milliseconds each way. */
enum { PROBE_M = 1024, PROBE_N = 256, PROBE_K = 1152, PROBE_RUNS = 5 };

double mr_bf16_speedup(void) {
    static double measured = -1.0;
    if (measured >= 0.0) return measured;
    measured = 0.0;
    if (!mr_bf16_supported()) return measured;
    const int threads = omp_get_max_threads();
    float *a = malloc((size_t)PROBE_M * PROBE_K * sizeof *a),
          *b = malloc((size_t)PROBE_K * PROBE_N * sizeof *b),
          *c = malloc((size_t)PROBE_M * PROBE_N * sizeof *c);
    uint32_t *packed = malloc(mr_bf16_packed_words(PROBE_K, PROBE_N) * sizeof *packed);
    void *work = malloc(mr_sgemm_bf16_workspace() * (size_t)threads);
    if (a && b && c && packed && work) {
        for (int64_t i = 0; i < (int64_t)PROBE_M * PROBE_K; i++) a[i] = (float)(i % 13) * 0.25f;
        for (int64_t i = 0; i < (int64_t)PROBE_K * PROBE_N; i++) b[i] = (float)(i % 7) * 0.5f;
        mr_bf16_pack(PROBE_K, PROBE_N, b, PROBE_N, packed);
        double f32 = 1e30, b16 = 1e30;
        /* Alternating, best of each: a busy neighbour slows both alike. */
        for (int r = 0; r < PROBE_RUNS; r++) {
            double t = omp_get_wtime();
            mr_sgemm(false, false, PROBE_M, PROBE_N, PROBE_K, 1.0f, a, PROBE_K, b, PROBE_N, 0.0f, c,
                     PROBE_N);
            double t2 = omp_get_wtime();
            mr_sgemm_bf16(PROBE_M, PROBE_N, PROBE_K, a, PROBE_K, packed, 0.0f, c, PROBE_N, work);
            double t3 = omp_get_wtime();
            if (t2 - t < f32) f32 = t2 - t;
            if (t3 - t2 < b16) b16 = t3 - t2;
        }
        measured = b16 > 0.0 ? f32 / b16 : 0.0;
    }
    free(a), free(b), free(c), free(packed), free(work);
    return measured;
}

#else /* no x86-64 AVX-512 BF16 compiler support */

double mr_bf16_speedup(void) {
    return 0.0;
}

size_t mr_bf16_packed_words(int64_t K, int64_t N) {
    (void)K, (void)N;
    return 0;
}

void mr_bf16_pack(int64_t K, int64_t N, const float *B, int64_t ldb, uint32_t *packed) {
    (void)K, (void)N, (void)B, (void)ldb, (void)packed;
    MR_PANIC("bfloat16 products need an x86-64 compiler with AVX-512 BF16 (mr_bf16_supported)");
}

size_t mr_sgemm_bf16_workspace(void) {
    return 0;
}

void mr_sgemm_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const uint32_t *packed, float beta, float *C, int64_t ldc, void *work) {
    (void)M, (void)N, (void)K, (void)A, (void)lda, (void)packed, (void)beta, (void)C, (void)ldc,
        (void)work;
    MR_PANIC("bfloat16 products need an x86-64 compiler with AVX-512 BF16 (mr_bf16_supported)");
}

#endif

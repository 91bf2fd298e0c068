/* The one door to matrix products: row-major single-precision GEMM through BLAS (core/blas.c, the
 * only file that includes cblas.h), our kernel for few columns (core/gemm_narrow.c) or for tall
 * products with a small B (core/gemm_panel.c, B laid out in panels per call), products with a B
 * laid out in panels ahead of time (the same kernel, Winograd's), and the bfloat16 product for
 * inference (core/gemm_bf16.c). */
#ifndef MR_BLAS_H
#define MR_BLAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C, row-major; ta/tb transpose. */
void mr_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* C (M,N) = A (M,K) @ B (K,N) + bias (N) on every row, row-major: the same bits as filling C's
 * rows with the bias and calling mr_sgemm with beta 1, without a pass of its own over C. bias may
 * be NULL (then beta 0). With `relu`, each block of rows is then rectified (max(0, c)) as soon as
 * it is made. */
void mr_sgemm_bias(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                   int64_t ldb, const float *bias, bool relu, float *C, int64_t ldc);

/* Our own product kernels run with the widest instruction set that both this CPU and this limit
 * allow (tests pin each one, or none, where BLAS computes every product). mr_own_kernel_limit
 * returns the previous limit; mr_own_kernel_level gives the level in use. */
enum { MR_OWN_OFF, MR_OWN_AVX2, MR_OWN_AVX512 };
int mr_own_kernel_limit(int level);
int mr_own_kernel_level(void);

/* mr_sgemm's own kernels for narrow layers (core/gemm_narrow.c), single-threaded: C (M,N) =
 * alpha op(A) op(B) + beta C as mr_sgemm, computed (returning true) when
 *  - neither is transposed and N is at most 32 with AVX-512, 16 with AVX2 and FMA;
 *  - only B is transposed and K is at most 32 (an input gradient), with AVX-512.
 * Otherwise it does nothing and returns false. */
bool mr_narrow_product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc);

/* Products with B laid out ahead of time in panels of MR_PANEL columns (core/gemm_panel.c): panel
 * j holds columns [j MR_PANEL, (j + 1) MR_PANEL) of B (K,N), row by row, and the panels follow
 * each other, so element (k, n) sits at mr_panel_index(k, n, K). mr_panels_suit(N) says whether
 * this CPU runs them for N columns (AVX-512, N a whole number of panels); mr_panel_product then
 * computes C (M,N) = A (M,K) @ B on the calling thread, and counts its FLOPs as mr_sgemm does. */
enum { MR_PANEL = 32 };
static inline int64_t mr_panel_index(int64_t k, int64_t n, int64_t K) {
    return (n / MR_PANEL) * K * MR_PANEL + k * MR_PANEL + n % MR_PANEL;
}
bool mr_panels_suit(int64_t N);
void mr_panel_product(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *panels, float *C, int64_t ldc);
/* The same product started from `start` instead of zero (row r of it at start + r start_ld:
 * start_ld 0 repeats one row, a bias; NULL: zero), then max(0, c) on every element with `relu`;
 * not counted in the profile (the caller counts it). */
void mr_panel_product_from(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                           const float *panels, const float *start, int64_t start_ld, bool relu,
                           float *C, int64_t ldc);
/* B (K,N) row-major, or with `transposed` its transpose stored (N,K), laid out in panels. */
void mr_panels_pack(int64_t K, int64_t N, const float *B, int64_t ldb, bool transposed,
                    float *panels);

/* Whether this CPU (and compiler) runs mr_sgemm_bf16: x86-64 with AVX-512 BF16. */
bool mr_bf16_supported(void);

/* mr_sgemm_bf16's speed over mr_sgemm's on this CPU, measured once (a few milliseconds) on a
 * convolution-sized product; 0 where there is no bf16 product. Above 1 on AMD Zen 4, which runs
 * twice as many bf16 multiply-adds a cycle as float ones; below 1 on Intel's AVX-512 cores, whose
 * two float FMA units outrun their one bf16 dot-product rate. */
double mr_bf16_speedup(void);

/* B (K,N), row-major, rounded to bfloat16 and packed for mr_sgemm_bf16 into
 * mr_bf16_packed_words(K, N) 32-bit words. Weights are packed once and kept (core/tensor.h). */
size_t mr_bf16_packed_words(int64_t K, int64_t N);
void mr_bf16_pack(int64_t K, int64_t N, const float *B, int64_t ldb, uint32_t *packed);

/* Bytes of workspace mr_sgemm_bf16 needs for each thread (omp_get_max_threads()). */
size_t mr_sgemm_bf16_workspace(void);

/* C (M,N) = A (M,K) @ B (K,N) + beta * C, row-major, with A rounded to bfloat16 and B packed by
 * mr_bf16_pack, the products summed in float: near twice mr_sgemm's speed at bfloat16's 3
 * significant digits, for inference. As with mr_sgemm, no element's bits depend on the thread
 * count, and a call inside a parallel region runs on its own thread. `work`:
 * mr_sgemm_bf16_workspace() bytes for each thread. Only where mr_bf16_supported(). */
void mr_sgemm_bf16(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                   const uint32_t *packed, float beta, float *C, int64_t ldc, void *work);

#endif

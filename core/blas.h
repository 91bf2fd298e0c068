/* The one door to matrix products: row-major single-precision GEMM through BLAS (core/blas.c, the
 * only file that includes cblas.h) or our kernel for few columns (core/gemm_narrow.c), and the
 * bfloat16 product for inference (core/gemm_bf16.c). */
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

/* mr_sgemm's own kernels for narrow layers (core/gemm_narrow.c), single-threaded: C (M,N) =
 * alpha op(A) op(B) + beta C as mr_sgemm, computed (returning true) when
 *  - neither is transposed and N is at most 32 on a CPU with AVX-512, 16 with AVX2 and FMA;
 *  - only B is transposed and K is at most 32 (an input gradient), with AVX-512.
 * Otherwise it does nothing and returns false. */
bool mr_narrow_product(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc);
/* The widest kernel mr_narrow_product may use (tests pin each one, or none, where BLAS computes
 * every product); returns the previous limit. The CPU's own limit still holds. */
enum { MR_NARROW_OFF, MR_NARROW_AVX2, MR_NARROW_AVX512 };
int mr_narrow_limit(int level);

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

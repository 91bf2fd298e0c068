/* The one door to BLAS: row-major single-precision GEMM. Only core/blas.c includes cblas.h. */
#ifndef MR_BLAS_H
#define MR_BLAS_H

#include <stdbool.h>
#include <stdint.h>

/* C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C, row-major; ta/tb transpose. */
void mr_sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
              int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

#endif

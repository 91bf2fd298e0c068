/* Small generic helpers with no better home: growing an array by doubling, zeroing or copying
 * a large buffer on every thread, the ReLU of a row, and the plain (non-differentiable) softmax the
 * loss and inference code share. */
#ifndef MR_UTIL_H
#define MR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A function of plain vector arithmetic built again for AVX-512 and for AVX2 (GCC's function
 * clones, the widest the CPU runs picked when the program loads): the library's default target is
 * baseline x86-64, whose 4-wide vectors leave most of a newer core idle. The bits stay: C11 mode
 * keeps each a * b + c two roundings, fused multiply-adds or not. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MR_CLONED __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MR_CLONED
#endif

/* Makes room for at least `need` elements of `elem` bytes in *items (capacity *cap, doubled,
 * at least `first`). False when out of memory, with *items and *cap unchanged, so the caller's
 * cleanup still frees the old block. */
bool mr_grow(void *items, size_t *cap, size_t need, size_t elem, size_t first);

/* Set n floats to zero, or copy n floats between buffers that do not overlap, in blocks the
 * threads share when there are enough of them: one thread's pass over a gradient buffer or a kept
 * activation leaves the other threads waiting for it. */
void mr_zero_floats(float *p, int64_t n);
void mr_copy_floats(float *restrict dst, const float *restrict src, int64_t n);

/* x = max(0, x) on n floats, NaN to 0: the ReLU's own expression (core/op_elementwise.c), for
 * the ops that apply it to a row as they make it. Inline: it runs on rows of 64 floats. */
static inline void mr_relu_floats(float *x, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* out (n, c) = softmax of each row of z (n, c), max-subtracted; out may be z. */
void mr_softmax_rows(float *out, const float *z, int64_t n, int64_t c);

#endif

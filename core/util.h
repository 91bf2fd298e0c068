/* Small generic helpers with no better home: growing an array by doubling, zeroing or copying
 * a large buffer on every thread, and the plain (non-differentiable) softmax the loss and
 * inference code share. */
#ifndef MR_UTIL_H
#define MR_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Makes room for at least `need` elements of `elem` bytes in *items (capacity *cap, doubled,
 * at least `first`). False when out of memory, with *items and *cap unchanged, so the caller's
 * cleanup still frees the old block. */
bool mr_grow(void *items, size_t *cap, size_t need, size_t elem, size_t first);

/* Set n floats to zero, or copy n floats between buffers that do not overlap, in blocks the
 * threads share when there are enough of them: one thread's pass over a gradient buffer or a kept
 * activation leaves the other threads waiting for it. */
void mr_zero_floats(float *p, int64_t n);
void mr_copy_floats(float *restrict dst, const float *restrict src, int64_t n);

/* out (n, c) = softmax of each row of z (n, c), max-subtracted; out may be z. */
void mr_softmax_rows(float *out, const float *z, int64_t n, int64_t c);

#endif

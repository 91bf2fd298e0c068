/* Growable arrays and the row softmax (core/util.h). */
#include "util.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

bool mr_grow(void *items, size_t *cap, size_t need, size_t elem, size_t first) {
    if (need <= *cap) return true;
    size_t n = *cap ? *cap : first;
    while (n < need) {
        if (n > SIZE_MAX / 2 / elem) return false;
        n *= 2;
    }
    if (n > SIZE_MAX / elem) return false;
    void *old;
    memcpy(&old, items, sizeof old);
    void *grown = realloc(old, n * elem);
    if (!grown) return false;
    memcpy(items, &grown, sizeof grown);
    *cap = n;
    return true;
}

void mr_softmax_rows(float *out, const float *z, int64_t n, int64_t c) {
    for (int64_t i = 0; i < n; i++) {
        const float *zi = z + i * c;
        float *oi = out + i * c;
        float zmax = zi[0];
        for (int64_t k = 1; k < c; k++) zmax = zi[k] > zmax ? zi[k] : zmax;
        float sum = 0.0f;
        for (int64_t k = 0; k < c; k++) sum += (oi[k] = expf(zi[k] - zmax));
        for (int64_t k = 0; k < c; k++) oi[k] /= sum;
    }
}

/* Below this many floats (1 MB) one call beats waking the threads. */
#define PARALLEL_MIN ((int64_t)1 << 18)
#define BLOCK        ((int64_t)1 << 16)

static bool worth_threads(int64_t n) {
    return n >= PARALLEL_MIN && !omp_in_parallel() && omp_get_max_threads() > 1;
}

void mr_zero_floats(float *p, int64_t n) {
#pragma omp parallel for schedule(dynamic, 4) if (worth_threads(n))
    for (int64_t b = 0; b < n; b += BLOCK)
        memset(p + b, 0, (size_t)(n - b < BLOCK ? n - b : BLOCK) * sizeof *p);
}

void mr_copy_floats(float *restrict dst, const float *restrict src, int64_t n) {
#pragma omp parallel for schedule(dynamic, 4) if (worth_threads(n))
    for (int64_t b = 0; b < n; b += BLOCK)
        memcpy(dst + b, src + b, (size_t)(n - b < BLOCK ? n - b : BLOCK) * sizeof *dst);
}

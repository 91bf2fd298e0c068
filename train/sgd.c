/* The optimizer step over the parameter registry's flat buffers. Sums in double so the global
 * norm does not depend on summation order more than it must. */
#include "sgd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"

static bool decays(const mr_param *q) {
    /* Matterport: every trainable weight whose name has neither "gamma" nor "beta". */
    return !q->frozen && !strstr(q->name, "gamma") && !strstr(q->name, "beta");
}

double mr_weight_decay_loss(const mr_params *p, float weight_decay) {
    double total = 0.0;
    for (int i = 0; i < p->count; i++) {
        const mr_param *q = &p->items[i];
        if (!decays(q)) continue;
        double sq = 0.0;
        for (int64_t k = 0; k < q->t.numel; k++) sq += (double)q->t.data[k] * (double)q->t.data[k];
        total += (double)weight_decay * sq / (double)q->t.numel;
    }
    return total;
}

/* Both passes go over blocks of a fixed size, threads taking whole blocks. The norm pass sums
 * each block on its own (decay_and_sum) and adds the blocks in order, so the result does not
 * depend on the thread count. */
enum { SUM_BLOCK = 1 << 14 };

/* Both passes stream buffers far larger than the caches, and a core's own prefetcher keeps too
 * few of their lines in flight: asked for each buffer this many floats (4 KB) ahead, the norm
 * pass took about 25% less time and the update about 18% less (ResNet-50's parameters, two
 * threads). A prefetch past a buffer's end touches nothing it may not. */
enum { PREFETCH_FLOATS = 1024, LINE_FLOATS = 16 };

typedef struct {
    double grad_sq, weight_sq;
} block_sums;

/* The gradient with its decay term: both passes compute it with this one expression, so the
 * update uses the very floats the norm was taken of. */
static inline float decayed(float g, float w, bool decay, float scale) {
    return decay ? g + scale * w : g;
}

/* The block's sums of squares of the gradient with its decay term (g + scale * w where the
 * weight decays) and of the weights. Nothing is written: the update recomputes the same float
 * sum, so this pass over the largest buffers only reads. SUM_LANES running sums, element k in sum
 * k % SUM_LANES: the loops over whole groups keep that order and vectorise into independent
 * chains of additions (with four, one chain's latency held the pass at 30 ms of ResNet-50's 44
 * million parameters on a busy machine, against 18 ms with sixteen), the tail finishes; every
 * clone adds in that order, so the bits do not depend on the CPU either. */
enum { SUM_LANES = 16 };

MR_CLONED static block_sums decay_and_sum(const float *restrict g, const float *restrict w,
                                          int64_t n, bool decay, float scale) {
    double gs[SUM_LANES] = {0}, ws[SUM_LANES] = {0};
    int64_t k = 0;
    if (decay)
        for (; k + SUM_LANES <= n; k += SUM_LANES) {
            __builtin_prefetch(g + k + PREFETCH_FLOATS);
            __builtin_prefetch(w + k + PREFETCH_FLOATS);
            for (int j = 0; j < SUM_LANES; j++) {
                float gd = decayed(g[k + j], w[k + j], true, scale);
                ws[j] += (double)w[k + j] * (double)w[k + j];
                gs[j] += (double)gd * (double)gd;
            }
        }
    else
        for (; k + SUM_LANES <= n; k += SUM_LANES) {
            __builtin_prefetch(g + k + PREFETCH_FLOATS);
            for (int j = 0; j < SUM_LANES; j++) gs[j] += (double)g[k + j] * (double)g[k + j];
        }
    for (; k < n; k++) {
        float gd = decayed(g[k], w[k], decay, scale);
        if (decay) ws[k % SUM_LANES] += (double)w[k] * (double)w[k];
        gs[k % SUM_LANES] += (double)gd * (double)gd;
    }
    block_sums total = {0.0, 0.0};
    for (int j = 0; j < SUM_LANES; j++) {
        total.grad_sq += gs[j];
        total.weight_sq += ws[j];
    }
    return total;
}

typedef struct {
    float momentum, rate, factor, scale; /* factor: the clipping's; scale: the decay's */
} update_terms;

/* v = momentum v - rate (g + decay) factor, then w += v, over one block. Each element on its own,
 * so vectors change no bits; inlined once for each value of `decay`, so the loops run without
 * the branch and vectorise. Each gradient is zeroed as it is used: its cache line is there
 * already, so this costs nothing, where zeroing them all before the next backward was a pass of
 * its own (8 ms of ResNet-50's step, against 0). */
static inline __attribute__((always_inline)) void update_body(float *restrict v, float *restrict w,
                                                              float *restrict g, int64_t n,
                                                              bool decay, update_terms u) {
    for (int64_t k0 = 0; k0 < n; k0 += LINE_FLOATS) { /* one prefetch per cache line */
        __builtin_prefetch(v + k0 + PREFETCH_FLOATS, 1);
        __builtin_prefetch(w + k0 + PREFETCH_FLOATS, 1);
        __builtin_prefetch(g + k0 + PREFETCH_FLOATS, 1);
        const int64_t k1 = n - k0 < LINE_FLOATS ? n : k0 + LINE_FLOATS;
#pragma omp simd
        for (int64_t k = k0; k < k1; k++) {
            v[k] = u.momentum * v[k] - u.rate * (decayed(g[k], w[k], decay, u.scale) * u.factor);
            w[k] += v[k];
            g[k] = 0.0f;
        }
    }
}

MR_CLONED static void update_block(float *restrict v, float *restrict w, float *restrict g,
                                   int64_t n, bool decay, update_terms u) {
    if (decay)
        update_body(v, w, g, n, true, u);
    else
        update_body(v, w, g, n, false, u);
}

void mr_sgd_step(mr_params *p, const mr_sgd *opt, mr_sgd_report *report) {
    memset(report, 0, sizeof *report);
    report->finite = true;
    int64_t largest = 0;
    for (int i = 0; i < p->count; i++)
        if (p->items[i].t.numel > largest) largest = p->items[i].t.numel;
    int64_t max_blocks = (largest + SUM_BLOCK - 1) / SUM_BLOCK;
    block_sums *partial = malloc(sizeof *partial * (size_t)(max_blocks > 0 ? max_blocks : 1));
    double norm_sq = 0.0;
    for (int i = 0; i < p->count; i++) {
        mr_param *q = &p->items[i];
        if (q->frozen) continue;
        const float *g = q->t.grad, *w = q->t.data;
        bool decay = decays(q);
        float scale = 2.0f * opt->weight_decay / (float)q->t.numel;
        int64_t n = q->t.numel, blocks = (n + SUM_BLOCK - 1) / SUM_BLOCK;
        double sq_w = 0.0;
        if (partial) {
#pragma omp parallel for schedule(static) if (blocks > 1)
            for (int64_t b = 0; b < blocks; b++) {
                int64_t k0 = b * SUM_BLOCK, len = n - k0 < SUM_BLOCK ? n - k0 : SUM_BLOCK;
                partial[b] = decay_and_sum(g + k0, w + k0, len, decay, scale);
            }
            for (int64_t b = 0; b < blocks; b++) {
                norm_sq += partial[b].grad_sq;
                sq_w += partial[b].weight_sq;
            }
        } else { /* no memory for the partial sums: one block, one thread */
            block_sums s = decay_and_sum(g, w, n, decay, scale);
            norm_sq += s.grad_sq;
            sq_w = s.weight_sq;
        }
        if (decay) report->l2_loss += (double)opt->weight_decay * sq_w / (double)q->t.numel;
        if (report->finite && !isfinite(norm_sq)) {
            report->finite = false;
            snprintf(report->bad_param, sizeof report->bad_param, "%s", q->name);
        }
    }
    free(partial);
    report->grad_norm = sqrt(norm_sq);
    if (!report->finite) { /* nothing to update; the next step starts from zero all the same */
        mr_params_zero_grads(p);
        return;
    }
    float factor = 1.0f;
    if (opt->clip_norm > 0.0f && report->grad_norm > (double)opt->clip_norm) {
        factor = (float)((double)opt->clip_norm / report->grad_norm);
        report->clipped = true;
    }
    mr_params_back_momentum(p);
    for (int i = 0; i < p->count; i++) {
        mr_param *q = &p->items[i];
        if (q->frozen) continue;
        float *v = p->momentum + q->offset, *w = q->t.data, *g = q->t.grad;
        const bool decay = decays(q);
        const float scale = 2.0f * opt->weight_decay / (float)q->t.numel;
        const update_terms terms = {opt->momentum, opt->learning_rate, factor, scale};
        const int64_t n = q->t.numel, blocks = (n + SUM_BLOCK - 1) / SUM_BLOCK;
#pragma omp parallel for schedule(static) if (blocks > 1)
        for (int64_t b = 0; b < blocks; b++) {
            int64_t k0 = b * SUM_BLOCK, len = n - k0 < SUM_BLOCK ? n - k0 : SUM_BLOCK;
            update_block(v + k0, w + k0, g + k0, len, decay, terms);
        }
    }
}

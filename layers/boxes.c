/* Box geometry: IoU, delta coding, clipping, norm/denorm and NMS, written to reproduce
 * Matterport's numpy/TensorFlow arithmetic in float32 (the graph code runs in float32, so do we).
 * Boxes are (y1, x1, y2, x2). */
#include "boxes.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"

/* std::max / std::min as TF's kernels use them, so NaN handling matches too. */
static inline float max_f(float a, float b) {
    return a < b ? b : a;
}
static inline float min_f(float a, float b) {
    return b < a ? b : a;
}

float mr_box_iou(const float *a, const float *b) {
    float y1 = max_f(a[0], b[0]), y2 = min_f(a[2], b[2]);
    float x1 = max_f(a[1], b[1]), x2 = min_f(a[3], b[3]);
    float inter = max_f(x2 - x1, 0.0f) * max_f(y2 - y1, 0.0f);
    float area_a = (a[2] - a[0]) * (a[3] - a[1]);
    float area_b = (b[2] - b[0]) * (b[3] - b[1]);
    float uni = area_a + area_b - inter;
    /* numpy would give NaN (0/0) for two empty boxes; NaN compares false everywhere, so 0 keeps
     * every threshold test the same while staying a number. */
    return uni > 0.0f ? inter / uni : 0.0f;
}

void mr_box_iou_matrix(float *iou, const float *a, const float *b, int64_t na, int64_t nb) {
    for (int64_t i = 0; i < na; i++)
        for (int64_t j = 0; j < nb; j++) iou[i * nb + j] = mr_box_iou(a + 4 * i, b + 4 * j);
}

void mr_box_encode(float *deltas, const float *boxes, const float *gt, int64_t n,
                   const float *std) {
    for (int64_t i = 0; i < n; i++) {
        const float *b = boxes + 4 * i, *g = gt + 4 * i;
        float h = b[2] - b[0], w = b[3] - b[1];
        float cy = b[0] + 0.5f * h, cx = b[1] + 0.5f * w;
        float gh = g[2] - g[0], gw = g[3] - g[1];
        float gcy = g[0] + 0.5f * gh, gcx = g[1] + 0.5f * gw;
        float *d = deltas + 4 * i;
        d[0] = (gcy - cy) / h;
        d[1] = (gcx - cx) / w;
        d[2] = logf(gh / h);
        d[3] = logf(gw / w);
        if (std)
            for (int k = 0; k < 4; k++) d[k] /= std[k];
    }
}

void mr_box_decode(float *out, const float *boxes, const float *deltas, int64_t n,
                   const float *std) {
    for (int64_t i = 0; i < n; i++) {
        const float *b = boxes + 4 * i;
        float d[4];
        for (int k = 0; k < 4; k++) d[k] = deltas[4 * i + k] * (std ? std[k] : 1.0f);
        float h = b[2] - b[0], w = b[3] - b[1];
        float cy = b[0] + 0.5f * h, cx = b[1] + 0.5f * w;
        cy += d[0] * h;
        cx += d[1] * w;
        h *= expf(d[2]);
        w *= expf(d[3]);
        float *o = out + 4 * i;
        o[0] = cy - 0.5f * h;
        o[1] = cx - 0.5f * w;
        o[2] = o[0] + h;
        o[3] = o[1] + w;
    }
}

void mr_box_clip(float *boxes, int64_t n, const float window[4]) {
    for (int64_t i = 0; i < n; i++) {
        float *b = boxes + 4 * i;
        b[0] = max_f(min_f(b[0], window[2]), window[0]);
        b[1] = max_f(min_f(b[1], window[3]), window[1]);
        b[2] = max_f(min_f(b[2], window[2]), window[0]);
        b[3] = max_f(min_f(b[3], window[3]), window[1]);
    }
}

void mr_norm_boxes(float *out, const float *boxes, int64_t n, int64_t h, int64_t w) {
    MR_REQUIRE(h > 1 && w > 1, "norm_boxes: image %lldx%lld must be at least 2x2", (long long)h,
               (long long)w);
    /* numpy computes in float64 and casts to float32 at the end. */
    const double scale[4] = {(double)(h - 1), (double)(w - 1), (double)(h - 1), (double)(w - 1)};
    const double shift[4] = {0, 0, 1, 1};
    for (int64_t i = 0; i < 4 * n; i++)
        out[i] = (float)(((double)boxes[i] - shift[i % 4]) / scale[i % 4]);
}

void mr_denorm_boxes(int64_t *out, const float *boxes, int64_t n, int64_t h, int64_t w) {
    const double scale[4] = {(double)(h - 1), (double)(w - 1), (double)(h - 1), (double)(w - 1)};
    const double shift[4] = {0, 0, 1, 1};
    /* nearbyint in the default rounding mode is np.around: halves go to the even neighbour. */
    for (int64_t i = 0; i < 4 * n; i++) {
        double v = nearbyint((double)boxes[i] * scale[i % 4] + shift[i % 4]);
        /* Boxes from non-finite weights: a cast of NaN or of a value past int64 is undefined. */
        out[i] = v != v ? 0 : v < -1e15 ? (int64_t)-1e15 : v > 1e15 ? (int64_t)1e15 : (int64_t)v;
    }
}

typedef struct {
    float score;
    int64_t index;
} scored;

static int scored_cmp(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    bool an = isnan(a->score), bn = isnan(b->score);
    if (an != bn) return an ? 1 : -1;
    if (!an && a->score != b->score) return a->score > b->score ? -1 : 1;
    return (a->index > b->index) - (a->index < b->index);
}

mr_status mr_argsort_desc(int64_t *order, const float *scores, int64_t n) {
    if (n <= 0) return MR_OK;
    scored *s = malloc((size_t)n * sizeof *s);
    if (!s) return mr_fail(MR_ERR_NOMEM, "argsort: cannot allocate %lld entries", (long long)n);
    for (int64_t i = 0; i < n; i++) s[i] = (scored){scores[i], i};
    qsort(s, (size_t)n, sizeof *s, scored_cmp);
    for (int64_t i = 0; i < n; i++) order[i] = s[i].index;
    free(s);
    return MR_OK;
}

static bool scored_before(const scored *a, const scored *b) {
    return scored_cmp(a, b) < 0;
}

/* Rearranges s[lo, hi) so that its first k - lo entries (k in (lo, hi)) are the k - lo first in
 * scored_cmp's order (a total order: no two entries are equal), by quickselect on a median of
 * three; past `depth` rounds the rest is sorted instead, which bounds the worst case. */
static void select_first(scored *s, int64_t lo, int64_t hi, int64_t k, int depth) {
    while (hi - lo > 16) {
        if (depth-- == 0) {
            qsort(s + lo, (size_t)(hi - lo), sizeof *s, scored_cmp);
            return;
        }
        int64_t mid = lo + (hi - lo) / 2;
        scored a = s[lo], b = s[mid], c = s[hi - 1], pivot;
        if (scored_before(&a, &b))
            pivot = scored_before(&b, &c) ? b : scored_before(&a, &c) ? c : a;
        else
            pivot = scored_before(&a, &c) ? a : scored_before(&b, &c) ? c : b;
        int64_t i = lo, j = hi - 1;
        while (i <= j) { /* Hoare: [lo, i) before the pivot or it, (j, hi) after it or it */
            while (scored_before(&s[i], &pivot)) i++;
            while (scored_before(&pivot, &s[j])) j--;
            if (i <= j) {
                scored t = s[i];
                s[i++] = s[j];
                s[j--] = t;
            }
        }
        if (k <= j + 1)
            hi = j + 1;
        else if (k >= i)
            lo = i;
        else
            return; /* (j, i) holds the pivot: the first k are in place */
    }
    qsort(s + lo, (size_t)(hi - lo), sizeof *s, scored_cmp);
}

mr_status mr_topk_desc(int64_t *order, const float *scores, int64_t n, int64_t k) {
    if (k > n) k = n;
    if (k <= 0) return MR_OK;
    scored *s = malloc((size_t)n * sizeof *s);
    if (!s) return mr_fail(MR_ERR_NOMEM, "top-k: cannot allocate %lld entries", (long long)n);
    for (int64_t i = 0; i < n; i++) s[i] = (scored){scores[i], i};
    if (k < n) {
        int depth = 2;
        for (int64_t m = n; m > 1; m >>= 1) depth += 2;
        select_first(s, 0, n, k, depth);
    }
    qsort(s, (size_t)k, sizeof *s, scored_cmp);
    for (int64_t i = 0; i < k; i++) order[i] = s[i].index;
    free(s);
    return MR_OK;
}

/* Greedy pass over candidates already in score order, with TF's IoU: corners may come in either
 * order, and an empty box overlaps nothing. Each candidate meets the boxes kept so far in blocks of
 * NMS_BLOCK, their corners and areas laid out by coordinate in `work` (5 n floats), so that the
 * IoUs of a block are one vectorised loop (MR_CLONED: AVX-512 where the CPU has it), each element
 * the same expressions as one pair at a time. One pair at a time, the proposal layer's 6000
 * candidates took 7 ms of a training step at 512 while the other threads waited; 6000 boxes
 * keeping 2000 took 25.5 ms, now 1.7 ms (6.4 with AVX2, 21 with baseline SSE). */
enum { NMS_BLOCK = 64 };

MR_CLONED static int64_t nms_sorted(int64_t *keep, const float *boxes, const float *scores,
                                    const int64_t *order, int64_t n, float thr, int64_t max_out,
                                    float *work) {
    float *y1 = work, *x1 = y1 + n, *y2 = x1 + n, *x2 = y2 + n, *area = x2 + n;
    int64_t kept = 0;
    for (int64_t o = 0; o < n && kept < max_out; o++) {
        const int64_t i = order[o];
        if (isnan(scores[i])) continue;
        const float *a = boxes + 4 * i;
        const float ay1 = min_f(a[0], a[2]), ax1 = min_f(a[1], a[3]);
        const float ay2 = max_f(a[0], a[2]), ax2 = max_f(a[1], a[3]);
        const float area_a = (ay2 - ay1) * (ax2 - ax1);
        bool suppressed = false;
        for (int64_t k0 = 0; k0 < kept && !suppressed; k0 += NMS_BLOCK) {
            const int64_t k1 = kept - k0 < NMS_BLOCK ? kept : k0 + NMS_BLOCK;
            int hit = 0;
#pragma omp simd reduction(| : hit)
            for (int64_t k = k0; k < k1; k++) {
                const float iy1 = max_f(ay1, y1[k]), ix1 = max_f(ax1, x1[k]);
                const float iy2 = min_f(ay2, y2[k]), ix2 = min_f(ax2, x2[k]);
                const float inter = max_f(iy2 - iy1, 0.0f) * max_f(ix2 - ix1, 0.0f);
                const float iou =
                    area_a <= 0 || area[k] <= 0 ? 0.0f : inter / (area_a + area[k] - inter);
                hit |= iou > thr;
            }
            suppressed = hit;
        }
        if (suppressed) continue;
        y1[kept] = ay1, x1[kept] = ax1, y2[kept] = ay2, x2[kept] = ax2, area[kept] = area_a;
        keep[kept++] = i;
    }
    return kept;
}

mr_status mr_nms(int64_t *keep, int64_t *n_keep, const float *boxes, const float *scores, int64_t n,
                 float iou_threshold, int64_t max_out) {
    *n_keep = 0;
    if (n <= 0 || max_out <= 0) return MR_OK;
    int64_t *order = malloc((size_t)n * sizeof *order);
    float *work = malloc((size_t)n * 5 * sizeof *work);
    mr_status st = order && work
                       ? mr_argsort_desc(order, scores, n)
                       : mr_fail(MR_ERR_NOMEM, "nms: cannot allocate for %lld boxes", (long long)n);
    if (st == MR_OK)
        *n_keep = nms_sorted(keep, boxes, scores, order, n, iou_threshold, max_out, work);
    free(order);
    free(work);
    return st;
}

mr_status mr_nms_per_class(int64_t *keep, int64_t *n_keep, const float *boxes, const float *scores,
                           const int64_t *class_ids, int64_t n, float iou_threshold,
                           int64_t max_per_class) {
    *n_keep = 0;
    if (n <= 0 || max_per_class <= 0) return MR_OK;
    mr_status st = MR_OK;
    int64_t *order = malloc((size_t)n * sizeof *order);
    int64_t *subset = malloc((size_t)n * sizeof *subset);
    int64_t *kept = malloc((size_t)n * sizeof *kept);
    bool *done = calloc((size_t)n, sizeof *done); /* class already handled */
    bool *chosen = calloc((size_t)n, sizeof *chosen);
    float *work = malloc((size_t)n * 5 * sizeof *work);
    if (!order || !subset || !kept || !done || !chosen || !work) {
        st = mr_fail(MR_ERR_NOMEM, "per-class nms: cannot allocate for %lld boxes", (long long)n);
        goto out;
    }
    if ((st = mr_argsort_desc(order, scores, n)) != MR_OK) goto out;
    for (int64_t first = 0; first < n; first++) {
        if (done[first]) continue;
        int64_t cls = class_ids[first], m = 0;
        for (int64_t o = 0; o < n; o++)
            if (class_ids[order[o]] == cls) subset[m++] = order[o];
        for (int64_t i = first; i < n; i++)
            if (class_ids[i] == cls) done[i] = true;
        int64_t nk = nms_sorted(kept, boxes, scores, subset, m, iou_threshold, max_per_class, work);
        for (int64_t k = 0; k < nk; k++) chosen[kept[k]] = true;
    }
    for (int64_t i = 0; i < n; i++)
        if (chosen[i]) keep[(*n_keep)++] = i;
out:
    free(order);
    free(subset);
    free(kept);
    free(done);
    free(chosen);
    free(work);
    return st;
}

void mr_instances_free(mr_instances *d) {
    free(d->boxes);
    free(d->class_ids);
    free(d->scores);
    free(d->masks);
    free(d->class_probs);
    memset(d, 0, sizeof *d);
}

void mr_boxes_to_f32(float *out, const double *boxes, int64_t n) {
    for (int64_t i = 0; i < 4 * n; i++) out[i] = (float)boxes[i];
}

/* Pyramid ROI Align forward and backward. Every output cell is a weighted sum of at most 16
 * feature pixels ("taps": 4 bilinear corners x up to 4 samples); forward and backward compute
 * the same taps, so the two can never disagree. Backward splits the channels between threads:
 * each feature element is written by exactly one thread, with no atomics. */
#include "roi_align.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define MAX_TAPS 16

int mr_roi_level(const float *box, double image_area) {
    double h = (double)(box[2] - box[0]), w = (double)(box[3] - box[1]);
    if (!(h * w > 0.0)) return 2;
    double level = 4.0 + nearbyint(log2(sqrt(h * w) / (224.0 / sqrt(image_area))));
    return level < 2.0 ? 2 : level > 5.0 ? 5 : (int)level;
}

typedef struct {
    int64_t offset[MAX_TAPS]; /* pixel index (y * W + x) within one image of the level */
    float weight[MAX_TAPS];
    int count;
} taps;

static void add_tap(taps *t, int64_t offset, float weight) {
    if (weight != 0.0f) {
        t->offset[t->count] = offset;
        t->weight[t->count] = weight;
        t->count++;
    }
}

/* TF crop_and_resize: bilinear at (y, x) in pixel units, zero outside [0, H-1] x [0, W-1].
 * The test is written as "inside" so that NaN (a box from non-finite weights, or inf - inf from
 * a huge one) fails it too and never reaches the integer casts below; Inf is outside anyway. */
static void crop_resize_taps(taps *t, float y, float x, int64_t h, int64_t w, float scale) {
    if (!(y >= 0.0f && y <= (float)(h - 1) && x >= 0.0f && x <= (float)(w - 1))) return;
    int64_t y0 = (int64_t)floorf(y), x0 = (int64_t)floorf(x);
    int64_t y1 = (int64_t)ceilf(y), x1 = (int64_t)ceilf(x);
    float ly = y - (float)y0, lx = x - (float)x0;
    add_tap(t, y0 * w + x0, scale * (1.0f - ly) * (1.0f - lx));
    add_tap(t, y0 * w + x1, scale * (1.0f - ly) * lx);
    add_tap(t, y1 * w + x0, scale * ly * (1.0f - lx));
    add_tap(t, y1 * w + x1, scale * ly * lx);
}

/* torchvision's bilinear_interpolate (aligned=False): zero beyond one pixel outside, edges
 * clamped. As above, NaN counts as outside. */
static void average_taps(taps *t, float y, float x, int64_t h, int64_t w, float scale) {
    if (!(y >= -1.0f && y <= (float)h && x >= -1.0f && x <= (float)w)) return;
    if (y <= 0.0f) y = 0.0f;
    if (x <= 0.0f) x = 0.0f;
    int64_t y0 = (int64_t)y, x0 = (int64_t)x, y1, x1;
    if (y0 >= h - 1) {
        y0 = y1 = h - 1;
        y = (float)y0;
    } else {
        y1 = y0 + 1;
    }
    if (x0 >= w - 1) {
        x0 = x1 = w - 1;
        x = (float)x0;
    } else {
        x1 = x0 + 1;
    }
    float ly = y - (float)y0, lx = x - (float)x0;
    add_tap(t, y0 * w + x0, scale * (1.0f - ly) * (1.0f - lx));
    add_tap(t, y0 * w + x1, scale * (1.0f - ly) * lx);
    add_tap(t, y1 * w + x0, scale * ly * (1.0f - lx));
    add_tap(t, y1 * w + x1, scale * ly * lx);
}

typedef struct {
    const float *boxes;   /* (N, 4) normalised */
    const int32_t *batch; /* (N) */
    int8_t *level;        /* (N) 0..3 for P2..P5 */
    int64_t n;
    int pool, image_h, image_w;
    mr_roi_align_mode mode;
} roi_job;

static void cell_taps(const roi_job *j, int64_t i, int py, int px, int64_t h, int64_t w, taps *t) {
    const float *b = j->boxes + 4 * i;
    t->count = 0;
    /* A box with a NaN or Inf edge (from damaged weights) samples nothing: fmaxf below would
     * otherwise turn a NaN height into a 1-pixel bin at a finite corner. */
    if (!(isfinite(b[0]) && isfinite(b[1]) && isfinite(b[2]) && isfinite(b[3]))) return;
    if (j->mode == MR_ROI_CROP_AND_RESIZE) {
        float y, x;
        if (j->pool > 1) {
            /* TF's float order (scale first): a box edge at 1.0 puts the last sample a rounding
             * error either side of h - 1, and TF then zeroes the whole row; other orders decide
             * differently for ~10% of such boxes. */
            float hs = (b[2] - b[0]) * (float)(h - 1) / (float)(j->pool - 1);
            float ws = (b[3] - b[1]) * (float)(w - 1) / (float)(j->pool - 1);
            y = b[0] * (float)(h - 1) + (float)py * hs;
            x = b[1] * (float)(w - 1) + (float)px * ws;
        } else {
            y = 0.5f * (b[0] + b[2]) * (float)(h - 1);
            x = 0.5f * (b[1] + b[3]) * (float)(w - 1);
        }
        crop_resize_taps(t, y, x, h, w, 1.0f);
        return;
    }
    /* Normalised box back to image pixels (inverse of Matterport's norm_boxes), then to this
     * level's feature pixels. */
    float scale_y = (float)h / (float)j->image_h, scale_x = (float)w / (float)j->image_w;
    float y1 = b[0] * (float)(j->image_h - 1) * scale_y;
    float x1 = b[1] * (float)(j->image_w - 1) * scale_x;
    float y2 = (b[2] * (float)(j->image_h - 1) + 1.0f) * scale_y;
    float x2 = (b[3] * (float)(j->image_w - 1) + 1.0f) * scale_x;
    float bin_h = fmaxf(y2 - y1, 1.0f) / (float)j->pool,
          bin_w = fmaxf(x2 - x1, 1.0f) / (float)j->pool;
    for (int sy = 0; sy < 2; sy++)
        for (int sx = 0; sx < 2; sx++) {
            float y = y1 + (float)py * bin_h + ((float)sy + 0.5f) * bin_h / 2.0f;
            float x = x1 + (float)px * bin_w + ((float)sx + 0.5f) * bin_w / 2.0f;
            average_taps(t, y, x, h, w, 0.25f);
        }
}

static void roi_align_backward(mr_node *node) {
    const roi_job *j = node->saved;
    const float *dout = node->out->grad;
    int64_t c = node->out->shape[3];
#pragma omp parallel
    {
        int nt = omp_get_num_threads(), tid = omp_get_thread_num();
        int64_t c0 = c * tid / nt, c1 = c * (tid + 1) / nt;
        taps t;
        for (int64_t i = 0; i < j->n && c1 > c0; i++) {
            int lv = j->level[i];
            if (!(node->needs_grad >> lv & 1u)) continue;
            mr_tensor *f = node->inputs[lv];
            int64_t h = f->shape[1], w = f->shape[2];
            float *base = f->grad + (int64_t)j->batch[i] * h * w * c;
            for (int py = 0; py < j->pool; py++)
                for (int px = 0; px < j->pool; px++) {
                    cell_taps(j, i, py, px, h, w, &t);
                    const float *g = dout + ((i * j->pool + py) * j->pool + px) * c;
                    for (int k = 0; k < t.count; k++) {
                        float *dst = base + t.offset[k] * c;
                        for (int64_t ch = c0; ch < c1; ch++) dst[ch] += t.weight[k] * g[ch];
                    }
                }
        }
    }
}

mr_tensor *mr_roi_align(mr_ctx *ctx, mr_tensor *const features[4], const float *boxes,
                        const int32_t *batch_index, int64_t n_boxes, int pool, int image_h,
                        int image_w, mr_roi_align_mode mode) {
    for (int l = 0; l < 4; l++)
        if (!features[l]) return NULL;
    if (ctx->status != MR_OK) return NULL;
    int64_t c = features[0]->shape[3], batch = features[0]->shape[0];
    for (int l = 0; l < 4; l++)
        MR_REQUIRE(features[l]->ndim == 4 && features[l]->shape[3] == c &&
                       features[l]->shape[0] == batch,
                   "roi_align: feature map P%d (%s) does not match P2", l + 2, features[l]->name);
    MR_REQUIRE(pool >= 1, "roi_align: pool %d", pool);
    mr_tensor *out = mr_tensor_4d(ctx, "roi_align", n_boxes, pool, pool, c);
    roi_job *j = mr_alloc(ctx, sizeof *j, "roi_align");
    int8_t *level = mr_alloc(ctx, (size_t)(n_boxes + 1), "roi_align");
    if (!out || !j || !level) return NULL;
    double image_area = (double)image_h * (double)image_w;
    for (int64_t i = 0; i < n_boxes; i++) {
        MR_REQUIRE(batch_index[i] >= 0 && batch_index[i] < batch, "roi_align: box %lld of image %d",
                   (long long)i, batch_index[i]);
        level[i] = (int8_t)(mr_roi_level(boxes + 4 * i, image_area) - 2);
    }
    *j = (roi_job){boxes, batch_index, level, n_boxes, pool, image_h, image_w, mode};
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = 0; i < n_boxes; i++) {
        const mr_tensor *f = features[level[i]];
        int64_t h = f->shape[1], w = f->shape[2];
        const float *base = f->data + (int64_t)batch_index[i] * h * w * c;
        taps t;
        for (int py = 0; py < pool; py++)
            for (int px = 0; px < pool; px++) {
                float *dst = out->data + ((i * pool + py) * pool + px) * c;
                memset(dst, 0, (size_t)c * sizeof(float));
                cell_taps(j, i, py, px, h, w, &t);
                for (int k = 0; k < t.count; k++) {
                    const float *src = base + t.offset[k] * c;
                    for (int64_t ch = 0; ch < c; ch++) dst[ch] += t.weight[k] * src[ch];
                }
            }
    }
    mr_node *node = mr_record(ctx, MR_OP_ROI_ALIGN, out, features, 4, roi_align_backward);
    if (node) {
        /* The caller's box arrays need not outlive the call. */
        float *kept = mr_alloc(ctx, sizeof(float) * (size_t)(4 * n_boxes + 1), "roi_align");
        int32_t *kept_batch = mr_alloc(ctx, sizeof(int32_t) * (size_t)(n_boxes + 1), "roi_align");
        if (!kept || !kept_batch) return NULL;
        memcpy(kept, boxes, sizeof(float) * (size_t)(4 * n_boxes));
        memcpy(kept_batch, batch_index, sizeof(int32_t) * (size_t)n_boxes);
        j->boxes = kept;
        j->batch = kept_batch;
        node->saved = j;
    }
    return out;
}

/* TF crop_and_resize, skimage bilinear resize and mini masks on single-channel planes of float
 * or bytes (resample.h). */
#include "resample.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A read-only single-channel plane of either element type; stride is the row pitch. Bytes are
 * masks, read as bool like Matterport's astype(bool): any nonzero byte is 1. */
typedef struct {
    const float *f;
    const uint8_t *u;
    int64_t stride;
} plane;

static inline float plane_at(const plane *p, int64_t y, int64_t x) {
    return p->f ? p->f[y * p->stride + x] : (p->u[y * p->stride + x] ? 1.0f : 0.0f);
}

/* TF's CropAndResizePerBox, float arithmetic in the same order. */
static void crop_and_resize(float *out, int64_t oh, int64_t ow, const plane *img, int64_t h,
                            int64_t w, const float box[4], float extrapolation) {
    float y1 = box[0], x1 = box[1], y2 = box[2], x2 = box[3];
    float hs = oh > 1 ? (y2 - y1) * (float)(h - 1) / (float)(oh - 1) : 0.0f;
    float ws = ow > 1 ? (x2 - x1) * (float)(w - 1) / (float)(ow - 1) : 0.0f;
    for (int64_t y = 0; y < oh; y++) {
        float in_y = oh > 1 ? y1 * (float)(h - 1) + (float)y * hs
                            : (float)(0.5 * (double)(y1 + y2) * (double)(h - 1));
        float *row = out + y * ow;
        /* Negated so NaN (a zero-height GT box in the mini-mask frame) extrapolates too. */
        if (!(in_y >= 0 && in_y <= (float)(h - 1))) {
            for (int64_t x = 0; x < ow; x++) row[x] = extrapolation;
            continue;
        }
        int64_t top = (int64_t)floorf(in_y), bottom = (int64_t)ceilf(in_y);
        float y_lerp = in_y - (float)top;
        for (int64_t x = 0; x < ow; x++) {
            float in_x = ow > 1 ? x1 * (float)(w - 1) + (float)x * ws
                                : (float)(0.5 * (double)(x1 + x2) * (double)(w - 1));
            if (!(in_x >= 0 && in_x <= (float)(w - 1))) {
                row[x] = extrapolation;
                continue;
            }
            int64_t left = (int64_t)floorf(in_x), right = (int64_t)ceilf(in_x);
            float x_lerp = in_x - (float)left;
            float tl = plane_at(img, top, left), tr = plane_at(img, top, right);
            float bl = plane_at(img, bottom, left), br = plane_at(img, bottom, right);
            float t = tl + (tr - tl) * x_lerp;
            float b = bl + (br - bl) * x_lerp;
            row[x] = t + (b - t) * y_lerp;
        }
    }
}

void mr_crop_and_resize(float *out, int64_t out_h, int64_t out_w, const float *image, int64_t h,
                        int64_t w, const float box[4], float extrapolation) {
    plane p = {image, NULL, w};
    crop_and_resize(out, out_h, out_w, &p, h, w, box, extrapolation);
}

void mr_crop_and_resize_u8(float *out, int64_t out_h, int64_t out_w, const uint8_t *image,
                           int64_t h, int64_t w, const float box[4], float extrapolation) {
    plane p = {NULL, image, w};
    crop_and_resize(out, out_h, out_w, &p, h, w, box, extrapolation);
}

static inline double pixel_or_zero(const plane *p, int64_t h, int64_t w, int64_t y, int64_t x) {
    return (y < 0 || y >= h || x < 0 || x >= w) ? 0.0 : (double)plane_at(p, y, x);
}

/* skimage's warp with bilinear_interpolation and mode 'C' (cval 0), then _clip_warp_output as
 * in the skimage releases Matterport ran on (0.14-0.16). Output in a malloc'd double buffer so
 * callers threshold the exact value. */
static mr_status resize_plane(double **out, int64_t oh, int64_t ow, const plane *in, int64_t ih,
                              int64_t iw) {
    MR_REQUIRE(oh > 0 && ow > 0 && ih > 0 && iw > 0, "resize %lldx%lld -> %lldx%lld", (long long)ih,
               (long long)iw, (long long)oh, (long long)ow);
    double *o = malloc((size_t)(oh * ow) * sizeof *o);
    if (!o)
        return mr_fail(MR_ERR_NOMEM, "resize: cannot allocate %lldx%lld", (long long)oh,
                       (long long)ow);
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t y = 0; y < ih; y++)
        for (int64_t x = 0; x < iw; x++) {
            double v = (double)plane_at(in, y, x);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
    bool keep_zero = !(lo <= 0.0 && 0.0 <= hi);
    double fy = (double)ih / (double)oh, fx = (double)iw / (double)ow;
    for (int64_t y = 0; y < oh; y++) {
        double r = ((double)y + 0.5) * fy - 0.5;
        int64_t r0 = (int64_t)floor(r), r1 = (int64_t)ceil(r);
        double dr = r - (double)r0;
        for (int64_t x = 0; x < ow; x++) {
            double c = ((double)x + 0.5) * fx - 0.5;
            int64_t c0 = (int64_t)floor(c), c1 = (int64_t)ceil(c);
            double dc = c - (double)c0;
            double top = (1 - dc) * pixel_or_zero(in, ih, iw, r0, c0) +
                         dc * pixel_or_zero(in, ih, iw, r0, c1);
            double bot = (1 - dc) * pixel_or_zero(in, ih, iw, r1, c0) +
                         dc * pixel_or_zero(in, ih, iw, r1, c1);
            double v = (1 - dr) * top + dr * bot;
            if (!(keep_zero && v == 0.0)) v = v < lo ? lo : (v > hi ? hi : v);
            o[y * ow + x] = v;
        }
    }
    *out = o;
    return MR_OK;
}

mr_status mr_resize_bilinear(float *out, int64_t out_h, int64_t out_w, const float *in,
                             int64_t in_h, int64_t in_w) {
    plane p = {in, NULL, in_w};
    double *r;
    MR_TRY(resize_plane(&r, out_h, out_w, &p, in_h, in_w));
    for (int64_t i = 0; i < out_h * out_w; i++) out[i] = (float)r[i];
    free(r);
    return MR_OK;
}

mr_status mr_resize_threshold(uint8_t *out, int64_t out_h, int64_t out_w, const float *in,
                              int64_t in_h, int64_t in_w, double threshold) {
    plane p = {in, NULL, in_w};
    double *r;
    MR_TRY(resize_plane(&r, out_h, out_w, &p, in_h, in_w));
    for (int64_t i = 0; i < out_h * out_w; i++) out[i] = r[i] >= threshold;
    free(r);
    return MR_OK;
}

mr_status mr_minimize_mask(uint8_t *mini, int64_t mini_h, int64_t mini_w, const uint8_t *mask,
                           int64_t h, int64_t w, const int64_t box[4]) {
    if (!(0 <= box[0] && box[0] < box[2] && box[2] <= h && 0 <= box[1] && box[1] < box[3] &&
          box[3] <= w))
        return mr_fail(MR_ERR_ARG,
                       "minimize_mask: box (%lld, %lld, %lld, %lld) is empty or outside the "
                       "%lldx%lld mask; boxes must come from the mask itself (extract_bboxes)",
                       (long long)box[0], (long long)box[1], (long long)box[2], (long long)box[3],
                       (long long)h, (long long)w);
    /* The plane reads bytes as bool, as Matterport's astype(bool) before resizing. */
    plane p = {NULL, mask + box[0] * w + box[1], w};
    double *r;
    MR_TRY(resize_plane(&r, mini_h, mini_w, &p, box[2] - box[0], box[3] - box[1]));
    for (int64_t i = 0; i < mini_h * mini_w; i++) mini[i] = nearbyint(r[i]) != 0.0;
    free(r);
    return MR_OK;
}

mr_status mr_expand_mask(uint8_t *mask, int64_t h, int64_t w, const uint8_t *mini, int64_t mini_h,
                         int64_t mini_w, const int64_t box[4]) {
    memset(mask, 0, (size_t)(h * w));
    int64_t bh = box[2] - box[0], bw = box[3] - box[1];
    if (bh <= 0 || bw <= 0) return MR_OK;
    plane p = {NULL, mini, mini_w};
    double *r;
    MR_TRY(resize_plane(&r, bh, bw, &p, mini_h, mini_w));
    /* Rounded in place: byte i is written after r[i] (bytes 8i..8i+7) and every earlier double
     * were read, and bytes may alias any object. */
    uint8_t *rounded = (uint8_t *)r;
    for (int64_t i = 0; i < bh * bw; i++) rounded[i] = nearbyint(r[i]) != 0.0;
    mr_paste_box(mask, h, w, rounded, box);
    free(r);
    return MR_OK;
}

void mr_paste_box(uint8_t *mask, int64_t h, int64_t w, const uint8_t *src, const int64_t box[4]) {
    int64_t bh = box[2] - box[0], bw = box[3] - box[1];
    for (int64_t y = 0; y < bh; y++) {
        int64_t iy = box[0] + y;
        if (iy < 0 || iy >= h) continue;
        for (int64_t x = 0; x < bw; x++) {
            int64_t ix = box[1] + x;
            if (ix >= 0 && ix < w) mask[iy * w + ix] = src[y * bw + x];
        }
    }
}

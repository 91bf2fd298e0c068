/* Molding an image for the network: resize_image in "square" mode and mold_image, resampling
 * straight from the 8-bit pixels. */
#include "mold.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void mr_mold_plan(int64_t h, int64_t w, int min_dim, int max_dim, mr_mold_info *info) {
    memset(info, 0, sizeof *info);
    double scale = 1.0;
    int64_t short_side = h < w ? h : w, long_side = h > w ? h : w;
    if (min_dim > 0) scale = fmax(1.0, (double)min_dim / (double)short_side);
    if (nearbyint((double)long_side * scale) > (double)max_dim)
        scale = (double)max_dim / (double)long_side;
    info->scale = scale;
    info->resized_h = (int64_t)nearbyint((double)h * scale);
    info->resized_w = (int64_t)nearbyint((double)w * scale);
    if (info->resized_h < 1) info->resized_h = 1;
    if (info->resized_w < 1) info->resized_w = 1;
    info->top = (max_dim - info->resized_h) / 2;
    info->left = (max_dim - info->resized_w) / 2;
    info->geo.original_h = h;
    info->geo.original_w = w;
    info->geo.molded_h = info->geo.molded_w = max_dim;
    info->geo.window[0] = (float)info->top;
    info->geo.window[1] = (float)info->left;
    info->geo.window[2] = (float)(info->top + info->resized_h);
    info->geo.window[3] = (float)(info->left + info->resized_w);
}

void mr_resize_u8_init(mr_resize_u8 *r, const uint8_t *pixels, int64_t h, int64_t w, int channels,
                       int c, int64_t rh, int64_t rw) {
    uint8_t lo = 255, hi = 0;
    for (int64_t i = 0; i < h * w; i++) {
        uint8_t v = pixels[i * channels + c];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    *r = (mr_resize_u8){.pixels = pixels,
                        .h = h,
                        .w = w,
                        .channels = channels,
                        .c = c,
                        .rh = rh,
                        .rw = rw,
                        .lo = (double)lo,
                        .hi = (double)hi};
}

/* (double)(float)byte, what resize_plane reads from the float copy, is (double)byte. */
static inline double pixel_or_zero(const mr_resize_u8 *r, int64_t y, int64_t x) {
    return (y < 0 || y >= r->h || x < 0 || x >= r->w)
               ? 0.0
               : (double)r->pixels[(y * r->w + x) * r->channels + r->c];
}

/* resize_plane's loop body (layers/resample.c) for one row, expression for expression. */
void mr_resize_u8_row(const mr_resize_u8 *r, int64_t y, float *out) {
    bool keep_zero = !(r->lo <= 0.0 && 0.0 <= r->hi);
    double fy = (double)r->h / (double)r->rh, fx = (double)r->w / (double)r->rw;
    double rr = ((double)y + 0.5) * fy - 0.5;
    int64_t r0 = (int64_t)floor(rr), r1 = (int64_t)ceil(rr);
    double dr = rr - (double)r0;
    for (int64_t x = 0; x < r->rw; x++) {
        double c = ((double)x + 0.5) * fx - 0.5;
        int64_t c0 = (int64_t)floor(c), c1 = (int64_t)ceil(c);
        double dc = c - (double)c0;
        double top = (1 - dc) * pixel_or_zero(r, r0, c0) + dc * pixel_or_zero(r, r0, c1);
        double bot = (1 - dc) * pixel_or_zero(r, r1, c0) + dc * pixel_or_zero(r, r1, c1);
        double v = (1 - dr) * top + dr * bot;
        if (!(keep_zero && v == 0.0)) v = v < r->lo ? r->lo : (v > r->hi ? r->hi : v);
        out[x] = (float)v;
    }
}

mr_status mr_mold_image(float *out, const uint8_t *pixels, int64_t h, int64_t w, int channels,
                        int min_dim, int max_dim, const float *mean_pixel, const float *pixel_std,
                        mr_mold_info *info) {
    if (h < 1 || w < 1)
        return mr_fail(MR_ERR_ARG, "cannot mold an empty %lldx%lld image", (long long)h,
                       (long long)w);
    mr_mold_plan(h, w, min_dim, max_dim, info);
    int64_t rh = info->resized_h, rw = info->resized_w, side = max_dim;
    /* One resized row at a time, read from the 8-bit pixels: no copy of the image. At the
     * same size the resize gives each pixel back exactly (weights 1 and 0). */
    float *row = malloc(sizeof(float) * (size_t)rw);
    if (!row)
        return mr_fail(MR_ERR_NOMEM, "no memory to resize a %lldx%lld image", (long long)h,
                       (long long)w);
    for (int c = 0; c < channels; c++) {
        const float std = pixel_std ? pixel_std[c] : 1.0f; /* 1: exact, Matterport's path */
        mr_resize_u8 rs;
        mr_resize_u8_init(&rs, pixels, h, w, channels, c, rh, rw);
        /* Padding is 0 before the mean subtraction, as mold_image sees the padded image. */
        for (int64_t y = 0; y < side; y++) {
            int64_t ry = y - info->top;
            bool inside = ry >= 0 && ry < rh;
            if (inside) mr_resize_u8_row(&rs, ry, row);
            for (int64_t x = 0; x < side; x++) {
                int64_t rx = x - info->left;
                float v = 0.0f;
                if (inside && rx >= 0 && rx < rw) v = truncf(row[rx]); /* astype(uint8) */
                out[(y * side + x) * channels + c] = (v - mean_pixel[c]) / std;
            }
        }
    }
    free(row);
    return MR_OK;
}

/* Molding an image for the network: resize_image in "square" mode and mold_image. */
#include "mold.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "targets.h"

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

mr_status mr_mold_image(float *out, const uint8_t *pixels, int64_t h, int64_t w, int channels,
                        int min_dim, int max_dim, const float *mean_pixel, const float *pixel_std,
                        mr_mold_info *info) {
    if (h < 1 || w < 1)
        return mr_fail(MR_ERR_ARG, "cannot mold an empty %lldx%lld image", (long long)h,
                       (long long)w);
    mr_mold_plan(h, w, min_dim, max_dim, info);
    int64_t rh = info->resized_h, rw = info->resized_w, side = max_dim;
    float *plane = malloc(sizeof(float) * (size_t)(h * w));
    float *resized = malloc(sizeof(float) * (size_t)(rh * rw));
    if (!plane || !resized) {
        free(plane);
        free(resized);
        return mr_fail(MR_ERR_NOMEM, "no memory to resize a %lldx%lld image", (long long)h,
                       (long long)w);
    }
    mr_status st = MR_OK;
    for (int c = 0; c < channels && st == MR_OK; c++) {
        const float std = pixel_std ? pixel_std[c] : 1.0f; /* 1: exact, Matterport's path */
        for (int64_t i = 0; i < h * w; i++) plane[i] = (float)pixels[i * channels + c];
        if (rh == h && rw == w)
            memcpy(resized, plane, sizeof(float) * (size_t)(h * w));
        else
            st = mr_resize_bilinear(resized, rh, rw, plane, h, w);
        if (st != MR_OK) break;
        /* Padding is 0 before the mean subtraction, as mold_image sees the padded image. */
        for (int64_t y = 0; y < side; y++)
            for (int64_t x = 0; x < side; x++) {
                int64_t ry = y - info->top, rx = x - info->left;
                float v = 0.0f;
                if (ry >= 0 && ry < rh && rx >= 0 && rx < rw)
                    v = truncf(resized[ry * rw + rx]); /* astype(uint8) truncates */
                out[(y * side + x) * channels + c] = (v - mean_pixel[c]) / std;
            }
    }
    free(plane);
    free(resized);
    return st;
}

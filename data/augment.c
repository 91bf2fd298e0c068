/* Seeded augmentation of a molded image and its instance masks: one inverse map (flip, scale,
 * shift about the centre) shared by image and masks, then photometric jitter on the content
 * pixels only. Single-threaded on purpose: the result must not depend on the thread count. */
#include "augment.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"

mr_augment_params mr_augment_defaults(void) {
    return (mr_augment_params){.flip_prob = 0.5f,
                               .scale_min = 0.9f,
                               .scale_max = 1.1f,
                               .translate = 0.05f,
                               .brightness = 0.1f,
                               .contrast = 0.15f,
                               .gamma = 0.2f,
                               .speckle = 0.08f};
}

mr_augment_params mr_augment_none(void) {
    return (mr_augment_params){.scale_min = 1.0f, .scale_max = 1.0f};
}

bool mr_augment_enabled(const mr_augment_params *p) {
    return p->flip_prob > 0.0f || p->scale_min != 1.0f || p->scale_max != 1.0f ||
           p->translate > 0.0f || p->brightness > 0.0f || p->contrast > 0.0f || p->gamma > 0.0f ||
           p->speckle > 0.0f;
}

static double clamp255(double v) {
    return v < 0.0 ? 0.0 : (v > 255.0 ? 255.0 : v);
}

/* Uniform in [lo, hi]; always consumes one draw so later draws do not shift when a range is
 * set to zero (a config change to one op leaves the others' randomness alone). */
static double uniform(mr_rng *rng, double lo, double hi) {
    double u = mr_rng_uniform_double(rng);
    return lo + (hi - lo) * u;
}

static mr_status check_params(const mr_augment_params *p) {
    if (!(p->flip_prob >= 0.0f && p->flip_prob <= 1.0f))
        return mr_fail(MR_ERR_ARG, "augment: flip_prob must be in [0, 1], got %g",
                       (double)p->flip_prob);
    if (!(p->scale_min > 0.0f && p->scale_max >= p->scale_min && p->scale_max < 100.0f))
        return mr_fail(MR_ERR_ARG, "augment: need 0 < scale_min <= scale_max, got %g..%g",
                       (double)p->scale_min, (double)p->scale_max);
    if (!(p->translate >= 0.0f && p->translate <= 1.0f && p->brightness >= 0.0f &&
          p->brightness <= 1.0f && p->contrast >= 0.0f && p->contrast < 1.0f && p->gamma >= 0.0f &&
          p->gamma <= 3.0f && p->speckle >= 0.0f && p->speckle <= 1.0f))
        return mr_fail(MR_ERR_ARG,
                       "augment: ranges must be translate, brightness, speckle in [0, 1], "
                       "contrast in [0, 1), gamma in [0, 3]");
    return MR_OK;
}

mr_status mr_augment(float *image, int64_t side, int channels, const float *mean_pixel,
                     const float *pixel_std, const int64_t window[4], uint8_t *masks, int64_t n,
                     const mr_augment_params *params, uint64_t seed, mr_augment_draw *draw) {
    if (side < 1 || channels < 1 || n < 0)
        return mr_fail(MR_ERR_ARG, "augment: bad sizes side %lld, channels %d, instances %lld",
                       (long long)side, channels, (long long)n);
    MR_TRY(check_params(params));
    const mr_augment_params *p = params;
    int64_t wy1 = 0, wx1 = 0, wy2 = side, wx2 = side;
    if (window) wy1 = window[0], wx1 = window[1], wy2 = window[2], wx2 = window[3];

    /* Every draw in a fixed order, whatever is switched off. */
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    mr_augment_draw d;
    d.flipped = uniform(&rng, 0.0, 1.0) < (double)p->flip_prob;
    d.scale = (float)uniform(&rng, p->scale_min, p->scale_max);
    d.shift_y = (float)(uniform(&rng, -1.0, 1.0) * (double)p->translate * (double)side);
    d.shift_x = (float)(uniform(&rng, -1.0, 1.0) * (double)p->translate * (double)side);
    d.brightness = (float)(uniform(&rng, -1.0, 1.0) * (double)p->brightness * 255.0);
    d.contrast = (float)(1.0 + uniform(&rng, -1.0, 1.0) * (double)p->contrast);
    d.gamma = (float)exp(uniform(&rng, -1.0, 1.0) * (double)p->gamma);
    d.speckle = (float)uniform(&rng, 0.0, p->speckle);
    if (draw) *draw = d;
    const bool identity = !d.flipped && d.scale == 1.0f && d.shift_y == 0.0f && d.shift_x == 0.0f;
    /* Nothing to do: leave the floats alone rather than round-trip them through the mean. */
    if (identity && d.brightness == 0.0f && d.contrast == 1.0f && d.gamma == 1.0f &&
        d.speckle == 0.0f)
        return MR_OK;

    const int64_t np = side * side;
    const int64_t C = channels;
    float *real = malloc(sizeof(float) * (size_t)(np * C)); /* (side, side, C) intensities */
    int64_t *src = malloc(sizeof(int64_t) * (size_t)np);    /* nearest source pixel or -1 */
    uint8_t *tmp = n ? malloc((size_t)np) : NULL;
    if (!real || !src || (n && !tmp)) {
        free(real);
        free(src);
        free(tmp);
        return mr_fail(MR_ERR_NOMEM, "augment: no memory for a %lldx%lld image", (long long)side,
                       (long long)side);
    }

    /* Real intensities; padding is 0 whatever the float says, so later ops start clean. */
    for (int64_t y = 0; y < side; y++)
        for (int64_t x = 0; x < side; x++) {
            bool inside = y >= wy1 && y < wy2 && x >= wx1 && x < wx2;
            for (int64_t c = 0; c < C; c++) {
                int64_t i = (y * side + x) * C + c;
                float std = pixel_std ? pixel_std[c] : 1.0f;
                real[i] = inside ? image[i] * std + mean_pixel[c] : 0.0f;
            }
        }

    /* Geometry, as an inverse map from each output pixel centre to the source: the output at
     * p' shows the source at c + (p' - c - t) / s, mirrored in x when flipped. */
    const double ctr = (double)(side - 1) * 0.5, inv_s = 1.0 / (double)d.scale;
    for (int64_t y = 0; y < side; y++) {
        double sy = identity ? (double)y : ctr + ((double)y - ctr - (double)d.shift_y) * inv_s;
        for (int64_t x = 0; x < side; x++) {
            double sx = identity ? (double)x : ctr + ((double)x - ctr - (double)d.shift_x) * inv_s;
            if (d.flipped) sx = (double)(side - 1) - sx;
            double ry = floor(sy + 0.5), rx = floor(sx + 0.5);
            bool content =
                ry >= (double)wy1 && ry < (double)wy2 && rx >= (double)wx1 && rx < (double)wx2;
            src[y * side + x] = content ? (int64_t)ry * side + (int64_t)rx : -1;
        }
    }

    /* Masks: nearest neighbour through the same map; nothing outside the content survives. */
    for (int64_t k = 0; k < n; k++) {
        uint8_t *m = masks + k * np;
        memcpy(tmp, m, (size_t)np);
        for (int64_t i = 0; i < np; i++) m[i] = src[i] >= 0 ? tmp[src[i]] : 0;
    }

    /* Image: bilinear on the real intensities, neighbours outside the frame count as 0 (the
     * padding's intensity), written straight into `image` as real values for now. */
    for (int64_t y = 0; y < side; y++) {
        double sy = identity ? (double)y : ctr + ((double)y - ctr - (double)d.shift_y) * inv_s;
        double fy = floor(sy), ay = sy - fy;
        int64_t y0 = (int64_t)fy;
        for (int64_t x = 0; x < side; x++) {
            float *out = image + (y * side + x) * C;
            if (src[y * side + x] < 0) {
                for (int64_t c = 0; c < C; c++) out[c] = 0.0f;
                continue;
            }
            double sx = identity ? (double)x : ctr + ((double)x - ctr - (double)d.shift_x) * inv_s;
            if (d.flipped) sx = (double)(side - 1) - sx;
            double fx = floor(sx), ax = sx - fx;
            int64_t x0 = (int64_t)fx;
            for (int64_t c = 0; c < C; c++) {
                double acc = 0.0;
                for (int dy = 0; dy < 2; dy++) {
                    int64_t yy = y0 + dy;
                    double wy = dy ? ay : 1.0 - ay;
                    if (yy < 0 || yy >= side || wy == 0.0) continue;
                    for (int dx = 0; dx < 2; dx++) {
                        int64_t xx = x0 + dx;
                        double wx = dx ? ax : 1.0 - ax;
                        if (xx < 0 || xx >= side || wx == 0.0) continue;
                        acc += wy * wx * (double)real[(yy * side + xx) * C + c];
                    }
                }
                out[c] = (float)acc;
            }
        }
    }

    /* Photometric jitter on the content: contrast about the content's mean (so it does not
     * also shift the overall level), brightness, then gamma. */
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < np; i++)
        if (src[i] >= 0)
            for (int64_t c = 0; c < C; c++) sum += (double)image[i * C + c], count++;
    const double level = count ? sum / (double)count : 0.0;
    const bool speckle = d.speckle > 0.0f;
    for (int64_t i = 0; i < np; i++) {
        float *px = image + i * C;
        if (src[i] < 0) {
            for (int64_t c = 0; c < C; c++)
                px[c] = (0.0f - mean_pixel[c]) / (pixel_std ? pixel_std[c] : 1.0f);
            continue;
        }
        /* One speckle factor per pixel: ultrasound speckle is a property of the tissue, and
         * grey images loaded as RGB keep equal channels. */
        double noise = speckle ? 1.0 + (double)d.speckle * (double)mr_rng_normal(&rng) : 1.0;
        for (int64_t c = 0; c < C; c++) {
            double v = ((double)px[c] - level) * (double)d.contrast + level;
            v = clamp255(v + (double)d.brightness);
            if (d.gamma != 1.0f) v = 255.0 * pow(v / 255.0, (double)d.gamma);
            v = clamp255(v * noise);
            px[c] = ((float)v - mean_pixel[c]) / (pixel_std ? pixel_std[c] : 1.0f);
        }
    }

    free(real);
    free(src);
    free(tmp);
    return MR_OK;
}

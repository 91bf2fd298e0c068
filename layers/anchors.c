/* Anchor generation: Matterport's generate_pyramid_anchors and the all-sizes-at-every-level
 * variant. Arithmetic in double as numpy does, stored as float32. */
#include "anchors.h"

#include <math.h>
#include <stdlib.h>

static const int default_strides[5] = {4, 8, 16, 32, 64};
static const float default_scales[5] = {32, 64, 128, 256, 512};
static const float default_ratios[3] = {0.5f, 1.0f, 2.0f};

mr_anchor_config mr_anchor_config_matterport(void) {
    return (mr_anchor_config){.n_levels = 5,
                              .strides = default_strides,
                              .n_scales = 5,
                              .scales = default_scales,
                              .scales_per_level = true,
                              .n_ratios = 3,
                              .ratios = default_ratios,
                              .anchor_stride = 1};
}

mr_status mr_anchor_config_check(const mr_anchor_config *cfg) {
    if (cfg->n_levels < 1 || !cfg->strides)
        return mr_fail(MR_ERR_CONFIG, "anchors: need at least one level stride (BACKBONE_STRIDES)");
    for (int i = 0; i < cfg->n_levels; i++)
        if (cfg->strides[i] < 1)
            return mr_fail(MR_ERR_CONFIG, "anchors: BACKBONE_STRIDES[%d] = %d, expected >= 1", i,
                           cfg->strides[i]);
    if (cfg->n_scales < 1 || !cfg->scales)
        return mr_fail(MR_ERR_CONFIG, "anchors: need at least one anchor scale");
    if (cfg->scales_per_level && cfg->n_scales != cfg->n_levels)
        return mr_fail(MR_ERR_CONFIG,
                       "anchors: %d scales for %d levels; one scale per level needs one per "
                       "BACKBONE_STRIDES entry (or use the sizes-at-every-level form)",
                       cfg->n_scales, cfg->n_levels);
    for (int i = 0; i < cfg->n_scales; i++)
        if (!(cfg->scales[i] > 0))
            return mr_fail(MR_ERR_CONFIG, "anchors: scale[%d] = %g, expected > 0", i,
                           (double)cfg->scales[i]);
    if (cfg->n_ratios < 1 || !cfg->ratios)
        return mr_fail(MR_ERR_CONFIG, "anchors: need at least one ratio (RPN_ANCHOR_RATIOS)");
    for (int i = 0; i < cfg->n_ratios; i++)
        if (!(cfg->ratios[i] > 0))
            return mr_fail(MR_ERR_CONFIG, "anchors: RPN_ANCHOR_RATIOS[%d] = %g, expected > 0", i,
                           (double)cfg->ratios[i]);
    if (cfg->anchor_stride < 1)
        return mr_fail(MR_ERR_CONFIG, "anchors: RPN_ANCHOR_STRIDE = %d, expected >= 1",
                       cfg->anchor_stride);
    return MR_OK;
}

int64_t mr_anchors_per_location(const mr_anchor_config *cfg) {
    return (int64_t)cfg->n_ratios * (cfg->scales_per_level ? 1 : cfg->n_scales);
}

void mr_anchor_level_shape(const mr_anchor_config *cfg, int level, int64_t image_h, int64_t image_w,
                           int64_t *feat_h, int64_t *feat_w) {
    MR_REQUIRE(level >= 0 && level < cfg->n_levels, "anchor level %d of %d", level, cfg->n_levels);
    int64_t s = cfg->strides[level];
    *feat_h = (image_h + s - 1) / s;
    *feat_w = (image_w + s - 1) / s;
}

/* Positions 0, anchor_stride, ... below the feature size. */
static int64_t positions(int64_t feat, int anchor_stride) {
    return (feat + anchor_stride - 1) / anchor_stride;
}

int64_t mr_anchor_level_count(const mr_anchor_config *cfg, int level, int64_t image_h,
                              int64_t image_w) {
    int64_t fh, fw;
    mr_anchor_level_shape(cfg, level, image_h, image_w, &fh, &fw);
    return positions(fh, cfg->anchor_stride) * positions(fw, cfg->anchor_stride) *
           mr_anchors_per_location(cfg);
}

int64_t mr_anchor_count(const mr_anchor_config *cfg, int64_t image_h, int64_t image_w) {
    int64_t total = 0;
    for (int l = 0; l < cfg->n_levels; l++)
        total += mr_anchor_level_count(cfg, l, image_h, image_w);
    return total;
}

mr_status mr_generate_anchors(const mr_anchor_config *cfg, int64_t image_h, int64_t image_w,
                              float **anchors, int64_t *count) {
    *anchors = NULL;
    *count = 0;
    MR_TRY(mr_anchor_config_check(cfg));
    if (image_h < 1 || image_w < 1)
        return mr_fail(MR_ERR_ARG, "anchors: image shape %lldx%lld, expected positive sizes",
                       (long long)image_h, (long long)image_w);
    int64_t n = mr_anchor_count(cfg, image_h, image_w);
    float *out = malloc((size_t)n * 4 * sizeof *out);
    if (!out) return mr_fail(MR_ERR_NOMEM, "anchors: cannot allocate %lld anchors", (long long)n);

    int64_t per_loc = mr_anchors_per_location(cfg);
    float *o = out;
    for (int l = 0; l < cfg->n_levels; l++) {
        int64_t fh, fw;
        mr_anchor_level_shape(cfg, l, image_h, image_w, &fh, &fw);
        double stride = cfg->strides[l];
        for (int64_t y = 0; y < fh; y += cfg->anchor_stride) {
            for (int64_t x = 0; x < fw; x += cfg->anchor_stride) {
                double cy = (double)y * stride, cx = (double)x * stride;
                for (int64_t a = 0; a < per_loc; a++) {
                    double scale = cfg->scales[cfg->scales_per_level ? l : a / cfg->n_ratios];
                    double ratio = cfg->ratios[a % cfg->n_ratios];
                    double h = scale / sqrt(ratio), w = scale * sqrt(ratio);
                    *o++ = (float)(cy - 0.5 * h);
                    *o++ = (float)(cx - 0.5 * w);
                    *o++ = (float)(cy + 0.5 * h);
                    *o++ = (float)(cx + 0.5 * w);
                }
            }
        }
    }
    *anchors = out;
    *count = n;
    return MR_OK;
}

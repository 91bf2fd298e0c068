/* Anchor generation over the FPN levels: Matterport's generate_pyramid_anchors (one scale per
 * level x ratios) and the second seed's form (every size at every level x ratios). Anchors are
 * pixel boxes (y1, x1, y2, x2) of the molded image, unclipped; mr_norm_boxes normalises them. */
#ifndef MR_ANCHORS_H
#define MR_ANCHORS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"

typedef struct {
    int n_levels;       /* FPN levels, 5 for P2..P6 */
    const int *strides; /* (n_levels) BACKBONE_STRIDES, pixels per feature cell */
    /* Anchor sizes (square-root of the area) in pixels of the molded image, used as given: a
     * size is never multiplied by the stride or anything else. */
    int n_scales;
    const float *scales;
    /* true: Matterport's RPN_ANCHOR_SCALES, scales[i] used at level i only (n_scales ==
     * n_levels). false: every one of the n_scales sizes at every level (K-means sizes). */
    bool scales_per_level;
    int n_ratios;
    const float *ratios; /* RPN_ANCHOR_RATIOS, width / height: h = s/sqrt(r), w = s*sqrt(r) */
    int anchor_stride;   /* RPN_ANCHOR_STRIDE, in feature cells */
} mr_anchor_config;

/* Matterport defaults: strides 4..64, scales 32..512 one per level, ratios 0.5, 1, 2, stride 1. */
mr_anchor_config mr_anchor_config_matterport(void);

/* Checks a config a user may have written; MR_ERR_CONFIG names the bad field. */
mr_status mr_anchor_config_check(const mr_anchor_config *cfg);
/* Anchors at each feature location: n_ratios, times n_scales when scales are not per level.
 * This is the A of the RPN head (2A class channels, 4A box channels). */
int64_t mr_anchors_per_location(const mr_anchor_config *cfg);
/* Feature map shape of a level: ceil(image / stride), as compute_backbone_shapes. */
void mr_anchor_level_shape(const mr_anchor_config *cfg, int level, int64_t image_h, int64_t image_w,
                           int64_t *feat_h, int64_t *feat_w);
/* Anchors of one level, and the total for an image_h x image_w molded image (261,888 for
 * 1024x1024 defaults). */
int64_t mr_anchor_level_count(const mr_anchor_config *cfg, int level, int64_t image_h,
                              int64_t image_w);
int64_t mr_anchor_count(const mr_anchor_config *cfg, int64_t image_h, int64_t image_w);

/* Writes the anchors into a malloc'd (count, 4) array (caller frees). Order: level, then
 * feature row y, then column x, then size (only when scales are not per level), then ratio;
 * index within a location = size * n_ratios + ratio, matching the RPN head's channel order.
 * Centres sit at (y * stride, x * stride) for y, x = 0, anchor_stride, ... */
mr_status mr_generate_anchors(const mr_anchor_config *cfg, int64_t image_h, int64_t image_w,
                              float **anchors, int64_t *count);

#endif

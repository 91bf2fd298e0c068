/* RPN and ROI training targets as Matterport builds them (their mask samplers are in
 * resample.c). Randomness comes only from the caller's mr_rng, so a resumed run draws the same
 * targets. */
#include "targets.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "boxes.h"
#include "resample.h"

/* ---- RPN targets ---- */

mr_rpn_target_config mr_rpn_target_config_matterport(void) {
    return (mr_rpn_target_config){.anchors_per_image = 256,
                                  .positive_iou = 0.7f,
                                  .negative_iou = 0.3f,
                                  .bbox_std = {0.1f, 0.1f, 0.2f, 0.2f}};
}

/* Resets `extra` randomly chosen anchors labelled `label` to neutral (np.random.choice without
 * replacement = the head of a shuffle). */
static void drop_random(int8_t *match, int64_t n, int8_t label, int64_t keep, int64_t *ids,
                        mr_rng *rng) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (match[i] == label) ids[m++] = i;
    if (m <= keep) return;
    mr_rng_shuffle_i64(rng, ids, m);
    for (int64_t k = 0; k < m - keep; k++) match[ids[k]] = 0;
}

mr_status mr_build_rpn_targets(int8_t *match, float *bbox, const float *anchors, int64_t n_anchors,
                               const double *gt_boxes, int64_t n_gt,
                               const mr_rpn_target_config *cfg, mr_rng *rng) {
    memset(bbox, 0, (size_t)cfg->anchors_per_image * 4 * sizeof *bbox);
    memset(match, 0, (size_t)n_anchors * sizeof *match);
    if (n_anchors <= 0) return MR_OK;
    mr_status st = MR_OK;
    float *best = malloc((size_t)n_anchors * sizeof *best);
    int64_t *best_gt = malloc((size_t)n_anchors * sizeof *best_gt);
    int64_t *ids = malloc((size_t)n_anchors * sizeof *ids);
    float *gt_best = malloc((size_t)(n_gt > 0 ? n_gt : 1) * sizeof *gt_best);
    float *gt = malloc((size_t)(n_gt > 0 ? n_gt : 1) * 4 * sizeof *gt);
    if (!best || !best_gt || !ids || !gt_best || !gt) {
        st = mr_fail(MR_ERR_NOMEM, "rpn targets: cannot allocate for %lld anchors",
                     (long long)n_anchors);
        goto out;
    }
    /* The (anchors x GT) matrix would take 100 MB at 261,888 anchors and 100 GT, so keep only
     * row and column maxima and recompute IoUs in the second pass (same inputs, same bits). */
    mr_boxes_to_f32(gt, gt_boxes, n_gt);
    for (int64_t j = 0; j < n_gt; j++) gt_best[j] = 0.0f;
    for (int64_t i = 0; i < n_anchors; i++) {
        float b = n_gt > 0 ? -1.0f : 0.0f;
        int64_t arg = 0;
        for (int64_t j = 0; j < n_gt; j++) {
            float iou = mr_box_iou(anchors + 4 * i, gt + 4 * j);
            if (iou > b) b = iou, arg = j; /* strict: first maximum, as np.argmax */
            if (iou > gt_best[j]) gt_best[j] = iou;
        }
        best[i] = b;
        best_gt[i] = arg;
        if (b < cfg->negative_iou) match[i] = -1;
    }
    /* An anchor reaching some GT's best IoU has its own best at least that high, so anchors
     * below the smallest GT best cannot tie one: skip their recomputation. */
    float floor_best = INFINITY;
    for (int64_t j = 0; j < n_gt; j++)
        if (gt_best[j] > 0.0f && gt_best[j] < floor_best) floor_best = gt_best[j];
    for (int64_t i = 0; i < n_anchors; i++) {
        for (int64_t j = 0; j < n_gt && best[i] >= floor_best; j++)
            if (gt_best[j] > 0.0f && mr_box_iou(anchors + 4 * i, gt + 4 * j) == gt_best[j]) {
                match[i] = 1;
                break;
            }
        if (best[i] >= cfg->positive_iou) match[i] = 1;
    }
    drop_random(match, n_anchors, 1, cfg->anchors_per_image / 2, ids, rng);
    int64_t n_pos = 0;
    for (int64_t i = 0; i < n_anchors; i++) n_pos += match[i] == 1;
    drop_random(match, n_anchors, -1, cfg->anchors_per_image - n_pos, ids, rng);

    int64_t row = 0;
    for (int64_t i = 0; i < n_anchors && row < cfg->anchors_per_image; i++)
        if (match[i] == 1)
            mr_box_encode(bbox + 4 * row++, anchors + 4 * i, gt + 4 * best_gt[i], 1, cfg->bbox_std);
out:
    free(best);
    free(best_gt);
    free(ids);
    free(gt_best);
    free(gt);
    return st;
}

/* ---- detection targets ---- */

mr_roi_target_config mr_roi_target_config_matterport(void) {
    return (mr_roi_target_config){.rois_per_image = 200,
                                  .positive_ratio = 0.33,
                                  .positive_iou = 0.5f,
                                  .bbox_std = {0.1f, 0.1f, 0.2f, 0.2f},
                                  .mask_h = 28,
                                  .mask_w = 28,
                                  .use_mini_mask = true};
}

mr_status mr_roi_targets_alloc(mr_roi_targets *t, const mr_roi_target_config *cfg) {
    int64_t r = cfg->rois_per_image;
    *t = (mr_roi_targets){0};
    t->rois = calloc((size_t)r * 4, sizeof *t->rois);
    t->class_ids = calloc((size_t)r, sizeof *t->class_ids);
    t->deltas = calloc((size_t)r * 4, sizeof *t->deltas);
    t->masks = calloc((size_t)(r * cfg->mask_h * cfg->mask_w), sizeof *t->masks);
    if (!t->rois || !t->class_ids || !t->deltas || !t->masks) {
        mr_roi_targets_free(t);
        return mr_fail(MR_ERR_NOMEM, "roi targets: cannot allocate %lld rois", (long long)r);
    }
    return MR_OK;
}

void mr_roi_targets_free(mr_roi_targets *t) {
    free(t->rois);
    free(t->class_ids);
    free(t->deltas);
    free(t->masks);
    *t = (mr_roi_targets){0};
}

mr_status mr_detection_targets(mr_roi_targets *out, const float *proposals, int64_t n_proposals,
                               const mr_instances *gt, const mr_roi_target_config *cfg,
                               mr_rng *rng) {
    const int64_t R = cfg->rois_per_image, mh = cfg->mask_h, mw = cfg->mask_w, n_gt = gt->n;
    MR_REQUIRE(cfg->use_mini_mask || n_gt == 0 ||
                   (gt->mask_h == gt->image_h && gt->mask_w == gt->image_w),
               "detection targets: full masks are %lldx%lld but the image is %lldx%lld",
               (long long)gt->mask_h, (long long)gt->mask_w, (long long)gt->image_h,
               (long long)gt->image_w);
    memset(out->rois, 0, (size_t)R * 4 * sizeof *out->rois);
    memset(out->class_ids, 0, (size_t)R * sizeof *out->class_ids);
    memset(out->deltas, 0, (size_t)R * 4 * sizeof *out->deltas);
    memset(out->masks, 0, (size_t)(R * mh * mw) * sizeof *out->masks);
    out->n_positive = out->n_negative = 0;

    mr_status st = MR_OK;
    int64_t np_ = n_proposals > 0 ? n_proposals : 1;
    float *gt_norm = malloc((size_t)(n_gt > 0 ? n_gt : 1) * 4 * sizeof *gt_norm);
    int64_t *assign = malloc((size_t)np_ * sizeof *assign);
    int64_t *pos = malloc((size_t)np_ * sizeof *pos);
    int64_t *neg = malloc((size_t)np_ * sizeof *neg);
    if (!gt_norm || !assign || !pos || !neg) {
        st = mr_fail(MR_ERR_NOMEM, "detection targets: cannot allocate for %lld proposals",
                     (long long)n_proposals);
        goto done;
    }
    mr_boxes_to_f32(gt_norm, gt->boxes, n_gt);
    mr_norm_boxes(gt_norm, gt_norm, n_gt, gt->image_h, gt->image_w);

    int64_t n_pos = 0, n_neg = 0;
    for (int64_t i = 0; i < n_proposals; i++) {
        const float *p = proposals + 4 * i;
        /* trim_zeros_graph: padding rows have zero absolute sum. */
        if (fabsf(p[0]) + fabsf(p[1]) + fabsf(p[2]) + fabsf(p[3]) == 0.0f) continue;
        /* With no GT the row max is -inf in TF, so every proposal is a negative candidate. */
        float b = -INFINITY;
        int64_t arg = 0;
        for (int64_t j = 0; j < n_gt; j++) {
            float iou = mr_box_iou(p, gt_norm + 4 * j);
            if (iou > b) b = iou, arg = j;
        }
        assign[i] = arg;
        if (b >= cfg->positive_iou)
            pos[n_pos++] = i;
        else
            neg[n_neg++] = i;
    }
    mr_rng_shuffle_i64(rng, pos, n_pos);
    int64_t P = (int64_t)((double)R * cfg->positive_ratio);
    P = n_pos < P ? n_pos : P;
    /* TF multiplies a float32 copy of 1/ratio by float32(P) and truncates. */
    float r = (float)(1.0 / cfg->positive_ratio);
    int64_t N = cfg->fill_negatives ? R - P : (int64_t)(r * (float)P) - P;
    mr_rng_shuffle_i64(rng, neg, n_neg);
    N = n_neg < N ? n_neg : N;
    N = N > R - P ? R - P : N;

    for (int64_t k = 0; k < P; k++) {
        const float *roi = proposals + 4 * pos[k];
        int64_t g = assign[pos[k]];
        const float *gb = gt_norm + 4 * g;
        memcpy(out->rois + 4 * k, roi, 4 * sizeof *roi);
        out->class_ids[k] = gt->class_ids[g];
        mr_box_encode(out->deltas + 4 * k, roi, gb, 1, cfg->bbox_std);
        float box[4];
        if (cfg->use_mini_mask) {
            /* The mini mask covers exactly the GT box: move the ROI into that frame. */
            float gh = gb[2] - gb[0], gw = gb[3] - gb[1];
            box[0] = (roi[0] - gb[0]) / gh;
            box[1] = (roi[1] - gb[1]) / gw;
            box[2] = (roi[2] - gb[0]) / gh;
            box[3] = (roi[3] - gb[1]) / gw;
        } else {
            memcpy(box, roi, sizeof box);
        }
        float *m = out->masks + k * mh * mw;
        mr_crop_and_resize_u8(m, mh, mw, gt->masks + g * gt->mask_h * gt->mask_w, gt->mask_h,
                              gt->mask_w, box, 0.0f);
        for (int64_t i = 0; i < mh * mw; i++) m[i] = nearbyintf(m[i]);
    }
    for (int64_t k = 0; k < N; k++)
        memcpy(out->rois + 4 * (P + k), proposals + 4 * neg[k], 4 * sizeof(float));
    out->n_positive = P;
    out->n_negative = N;
done:
    free(gt_norm);
    free(assign);
    free(pos);
    free(neg);
    return st;
}

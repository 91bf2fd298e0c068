/* The inference graph: features, RPN, proposal layer, box head, detection layer, mask head on
 * the detections, unmolding. Every step runs without recording. */
#include "inference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/ops.h"
#include "../core/profile.h"
#include "../core/util.h"
#include "boxes.h"
#include "proposals.h"

static mr_status detect(mr_ctx *ctx, const mr_model *m, mr_tensor *images,
                        const mr_image_geometry *geo, float min_confidence, mr_instances *out) {
    const mr_net_config *cfg = &m->cfg;
    int64_t batch = images->shape[0], anchors = m->n_anchors, nc = cfg->num_classes;
    mr_tensor *p[5], *rpn_logits, *rpn_deltas;
    MR_TRY(mr_model_features(ctx, m, images, p));
    MR_TRY(mr_model_rpn(ctx, m, p, &rpn_logits, &rpn_deltas));

    mr_profile_enter(MR_GROUP_PROPOSALS);
    int64_t n_props = cfg->post_nms_rois_inference, total = batch * n_props;
    float *probs = mr_alloc(ctx, sizeof(float) * (size_t)(anchors * 2), "detect");
    float *rois = mr_alloc(ctx, sizeof(float) * (size_t)(total * 4), "detect");
    int32_t *roi_image = mr_alloc(ctx, sizeof(int32_t) * (size_t)total, "detect");
    if (!probs || !rois || !roi_image) return ctx->status;
    mr_proposal_config pc = mr_model_proposal_config(m, false);
    for (int64_t b = 0; b < batch; b++) {
        mr_softmax_rows(probs, rpn_logits->data + b * anchors * 2, anchors, 2);
        int64_t got = 0;
        MR_TRY(mr_proposals(rois + b * n_props * 4, &got, probs, rpn_deltas->data + b * anchors * 4,
                            m->anchors, anchors, &pc));
        for (int64_t r = 0; r < n_props; r++) roi_image[b * n_props + r] = (int32_t)b;
    }
    mr_tensor *class_logits, *deltas;
    MR_TRY(mr_model_box_head(ctx, m, p, rois, roi_image, total, &class_logits, &deltas));
    mr_profile_enter(MR_GROUP_PROPOSALS);
    float *class_probs = mr_alloc(ctx, sizeof(float) * (size_t)(total * nc), "detect");
    int64_t max_det = cfg->detection_max_instances;
    float *dets = mr_alloc(ctx, sizeof(float) * (size_t)(batch * max_det * 6), "detect");
    int64_t *n_dets = mr_alloc(ctx, sizeof(int64_t) * (size_t)batch, "detect");
    if (!class_probs || !dets || !n_dets) return ctx->status;
    mr_softmax_rows(class_probs, class_logits->data, total, nc);
    mr_detection_config dc = mr_detection_config_matterport(nc);
    dc.min_confidence = min_confidence >= 0.0f ? min_confidence : cfg->detection_min_confidence;
    dc.nms_threshold = cfg->detection_nms_threshold;
    dc.every_class = cfg->detection_candidates == MR_DETECT_EVERY_CLASS;
    dc.class_agnostic = cfg->detection_nms == MR_NMS_CLASS_AGNOSTIC;
    dc.max_instances = max_det;
    memcpy(dc.bbox_std, cfg->bbox_std, sizeof dc.bbox_std);
    int64_t n_masks = 0;
    int64_t *roi_of = mr_alloc(ctx, sizeof(int64_t) * (size_t)(batch * max_det), "detect");
    float *det_probs = mr_alloc(ctx, sizeof(float) * (size_t)(batch * max_det * nc), "detect");
    if (!roi_of || !det_probs) return ctx->status;
    for (int64_t b = 0; b < batch; b++) {
        float window[4];
        mr_norm_boxes(window, geo[b].window, 1, geo[b].molded_h, geo[b].molded_w);
        MR_TRY(mr_refine_detections(dets + b * max_det * 6, roi_of + b * max_det, &n_dets[b],
                                    rois + b * n_props * 4, class_probs + b * n_props * nc,
                                    deltas->data + b * n_props * nc * 4, n_props, window, &dc));
        /* Each detection reports its ROI's probability for every class. */
        for (int64_t i = 0; i < n_dets[b]; i++)
            memcpy(det_probs + (b * max_det + i) * nc,
                   class_probs + (b * n_props + roi_of[b * max_det + i]) * nc,
                   (size_t)nc * sizeof(float));
        n_masks += n_dets[b];
    }
    /* The mask head runs on the real detections only (Matterport also feeds the padding rows,
     * whose masks are thrown away). */
    float *det_boxes = mr_alloc(ctx, sizeof(float) * (size_t)(4 * n_masks + 4), "detect");
    int32_t *det_image = mr_alloc(ctx, sizeof(int32_t) * (size_t)(n_masks + 1), "detect");
    if (!det_boxes || !det_image) return ctx->status;
    for (int64_t b = 0, k = 0; b < batch; b++)
        for (int64_t i = 0; i < n_dets[b]; i++, k++) {
            memcpy(det_boxes + 4 * k, dets + (b * max_det + i) * 6, 4 * sizeof(float));
            det_image[k] = (int32_t)b;
        }
    mr_tensor *mask_logits = NULL;
    if (n_masks > 0) {
        mask_logits = mr_model_mask_head(ctx, m, p, det_boxes, det_image, n_masks);
        if (!mask_logits) return ctx->status;
        for (int64_t i = 0; i < mask_logits->numel; i++)
            mask_logits->data[i] = mr_sigmoidf(mask_logits->data[i]);
    }
    mr_profile_enter(MR_GROUP_PROPOSALS);
    int64_t s = cfg->mask_shape, per_mask = s * s * nc;
    for (int64_t b = 0, k = 0; b < batch; b++) {
        MR_TRY(mr_unmold_detections(
            &out[b], dets + b * max_det * 6, det_probs + b * max_det * nc, n_dets[b],
            mask_logits ? mask_logits->data + k * per_mask : NULL, s, s, nc, &geo[b]));
        k += n_dets[b];
    }
    return MR_OK;
}

mr_status mr_model_detect(mr_ctx *ctx, const mr_model *m, mr_tensor *images,
                          const mr_image_geometry *geo, float min_confidence, mr_instances *out) {
    for (int64_t b = 0; images && b < images->shape[0]; b++) memset(&out[b], 0, sizeof out[b]);
    if (!images) return ctx->status;
    bool was = mr_no_grad_begin(ctx);
    mr_status st = detect(ctx, m, images, geo, min_confidence, out);
    mr_no_grad_end(ctx, was);
    if (st == MR_OK && ctx->status != MR_OK) st = ctx->status;
    return st;
}

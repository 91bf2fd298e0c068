/* Detection post-processing: refine_detections_graph and unmold_detections/unmold_mask, with
 * TF's float32 order of operations for the boxes and numpy's float64 for denormalising. */
#include "detect.h"

#include <stdlib.h>
#include <string.h>

#include "boxes.h"
#include "resample.h"

mr_detection_config mr_detection_config_matterport(int64_t num_classes) {
    return (mr_detection_config){.num_classes = num_classes,
                                 .min_confidence = 0.7f,
                                 .nms_threshold = 0.3f,
                                 .max_instances = 100,
                                 .bbox_std = {0.1f, 0.1f, 0.2f, 0.2f}};
}

mr_status mr_refine_detections(float *out, int64_t *roi_of, int64_t *n_out, const float *rois,
                               const float *probs, const float *deltas, int64_t n,
                               const float window[4], const mr_detection_config *cfg) {
    const int64_t C = cfg->num_classes, max_out = cfg->max_instances;
    memset(out, 0, (size_t)max_out * 6 * sizeof *out);
    *n_out = 0;
    if (n <= 0 || max_out <= 0) return MR_OK;
    mr_status st = MR_OK;
    const int64_t cap = cfg->every_class ? n * (C - 1) : n; /* candidates at most */
    float *boxes = malloc((size_t)cap * 4 * sizeof *boxes); /* refined, of the candidates */
    float *scores = malloc((size_t)cap * sizeof *scores);
    int64_t *cls = malloc((size_t)cap * sizeof *cls);
    int64_t *nms_cls = malloc((size_t)cap * sizeof *nms_cls);
    int64_t *keep = malloc((size_t)cap * sizeof *keep);
    float *kept_scores = malloc((size_t)cap * sizeof *kept_scores);
    int64_t *order = malloc((size_t)cap * sizeof *order);
    int64_t *source = malloc((size_t)cap * sizeof *source); /* the ROI of each candidate */
    if (!boxes || !scores || !cls || !nms_cls || !keep || !kept_scores || !order || !source) {
        st = mr_fail(MR_ERR_NOMEM, "detections: cannot allocate for %lld rois", (long long)n);
        goto out;
    }
    /* Refining only the candidates gives the same rows as refining all and gathering after. */
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *p = probs + i * C;
        int64_t top = 0;
        for (int64_t j = 1; j < C; j++)
            if (p[j] > p[top]) top = j; /* first maximum, as tf.argmax */
        for (int64_t c = cfg->every_class ? 1 : top; c < (cfg->every_class ? C : top + 1); c++) {
            if (c == 0 || (cfg->every_class && !(p[c] > 0.0f))) continue;
            if (cfg->min_confidence != 0.0f && !(p[c] >= cfg->min_confidence)) continue;
            mr_box_decode(boxes + 4 * m, rois + 4 * i, deltas + (i * C + c) * 4, 1, cfg->bbox_std);
            mr_box_clip(boxes + 4 * m, 1, window);
            scores[m] = p[c];
            cls[m] = c;
            source[m] = i;
            nms_cls[m] = cfg->class_agnostic ? 1 : c;
            m++;
        }
    }
    int64_t n_keep;
    if ((st = mr_nms_per_class(keep, &n_keep, boxes, scores, nms_cls, m, cfg->nms_threshold,
                               max_out)) != MR_OK)
        goto out;
    /* keep is in increasing ROI order, so the score sort breaks ties by ROI index like top_k
     * over the sorted set intersection. */
    for (int64_t k = 0; k < n_keep; k++) kept_scores[k] = scores[keep[k]];
    if ((st = mr_argsort_desc(order, kept_scores, n_keep)) != MR_OK) goto out;
    int64_t total = n_keep < max_out ? n_keep : max_out;
    for (int64_t r = 0; r < total; r++) {
        int64_t k = keep[order[r]];
        float *row = out + 6 * r;
        memcpy(row, boxes + 4 * k, 4 * sizeof *row);
        row[4] = (float)cls[k];
        row[5] = scores[k];
        if (roi_of) roi_of[r] = source[k];
    }
    *n_out = total;
out:
    free(boxes);
    free(nms_cls);
    free(scores);
    free(cls);
    free(keep);
    free(kept_scores);
    free(order);
    free(source);
    return st;
}

mr_status mr_unmold_mask(uint8_t *full, int64_t h, int64_t w, const float *mask, int64_t mask_h,
                         int64_t mask_w, const int64_t box[4]) {
    memset(full, 0, (size_t)(h * w));
    int64_t bh = box[2] - box[0], bw = box[3] - box[1];
    if (bh <= 0 || bw <= 0) return MR_OK;
    uint8_t *r = malloc((size_t)(bh * bw));
    if (!r)
        return mr_fail(MR_ERR_NOMEM, "unmold_mask: cannot allocate %lldx%lld", (long long)bh,
                       (long long)bw);
    mr_status st = mr_resize_threshold(r, bh, bw, mask, mask_h, mask_w, 0.5);
    if (st == MR_OK) mr_paste_box(full, h, w, r, box);
    free(r);
    return st;
}

mr_status mr_unmold_detections(mr_instances *out, const float *detections, const float *row_probs,
                               int64_t n_rows, const float *masks, int64_t mask_h, int64_t mask_w,
                               int64_t num_classes, const mr_image_geometry *geo) {
    const int64_t H = geo->original_h, W = geo->original_w;
    *out = (mr_instances){.image_h = H, .image_w = W, .mask_h = H, .mask_w = W};
    int64_t n = 0;
    while (n < n_rows && detections[6 * n + 4] != 0.0f) n++;

    /* numpy: the float32 window is normalised over the molded shape, boxes are moved into it
     * in float32, then denorm_boxes works in float64. */
    float wn[4];
    mr_norm_boxes(wn, geo->window, 1, geo->molded_h, geo->molded_w);
    const float shift[4] = {wn[0], wn[1], wn[0], wn[1]};
    const float scale[4] = {wn[2] - wn[0], wn[3] - wn[1], wn[2] - wn[0], wn[3] - wn[1]};

    mr_status st = MR_OK;
    size_t plane = (size_t)(H * W);
    out->boxes = malloc((size_t)(n > 0 ? n : 1) * 4 * sizeof *out->boxes);
    out->class_ids = malloc((size_t)(n > 0 ? n : 1) * sizeof *out->class_ids);
    out->scores = malloc((size_t)(n > 0 ? n : 1) * sizeof *out->scores);
    out->masks = malloc((n > 0 ? (size_t)n : 1) * plane);
    if (row_probs) {
        out->class_probs = malloc((size_t)(n > 0 ? n : 1) * (size_t)num_classes * sizeof(float));
        out->n_classes = num_classes;
    }
    float *m = malloc((size_t)(mask_h * mask_w) * sizeof *m);
    if (!out->boxes || !out->class_ids || !out->scores || !out->masks || !m ||
        (row_probs && !out->class_probs)) {
        st = mr_fail(MR_ERR_NOMEM, "unmold: cannot allocate %lld masks of %lldx%lld", (long long)n,
                     (long long)H, (long long)W);
        goto out;
    }
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *row = detections + 6 * i;
        float b[4];
        for (int k = 0; k < 4; k++) b[k] = (row[k] - shift[k]) / scale[k];
        int64_t box[4];
        mr_denorm_boxes(box, b, 1, H, W);
        if ((box[2] - box[0]) * (box[3] - box[1]) <= 0) continue;
        int64_t c = (int64_t)row[4];
        MR_REQUIRE(c > 0 && c < num_classes, "unmold: class id %lld outside 1..%lld", (long long)c,
                   (long long)(num_classes - 1));
        for (int64_t p = 0; p < mask_h * mask_w; p++)
            m[p] = masks[(i * mask_h * mask_w + p) * num_classes + c];
        if ((st = mr_unmold_mask(out->masks + (size_t)kept * plane, H, W, m, mask_h, mask_w,
                                 box)) != MR_OK)
            goto out;
        for (int k = 0; k < 4; k++) out->boxes[4 * kept + k] = (double)box[k];
        out->class_ids[kept] = c;
        out->scores[kept] = row[5];
        if (row_probs)
            memcpy(out->class_probs + kept * num_classes, row_probs + i * num_classes,
                   (size_t)num_classes * sizeof(float));
        kept++;
    }
    out->n = kept;
out:
    free(m);
    if (st != MR_OK) mr_instances_free(out);
    return st;
}

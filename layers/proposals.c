/* Proposal layer: top-k by foreground score, decode, clip to the unit window, NMS, zero pad,
 * in that order, as Matterport's ProposalLayer (no small-box filter, on purpose). */
#include "proposals.h"

#include <stdlib.h>
#include <string.h>

#include "boxes.h"

mr_proposal_config mr_proposal_config_matterport(bool training) {
    return (mr_proposal_config){.pre_nms_limit = 6000,
                                .proposal_count = training ? 2000 : 1000,
                                .nms_threshold = 0.7f,
                                .bbox_std = {0.1f, 0.1f, 0.2f, 0.2f}};
}

mr_status mr_proposals(float *out, int64_t *n_out, const float *probs, const float *deltas,
                       const float *anchors, int64_t n, const mr_proposal_config *cfg) {
    const int64_t count = cfg->proposal_count;
    memset(out, 0, (size_t)count * 4 * sizeof *out);
    *n_out = 0;
    if (n <= 0 || count <= 0) return MR_OK;
    int64_t k = cfg->pre_nms_limit < n ? cfg->pre_nms_limit : n;
    mr_status st = MR_OK;
    float *fg = malloc((size_t)n * sizeof *fg);
    int64_t *order = malloc((size_t)n * sizeof *order);
    float *boxes = malloc((size_t)k * 4 * sizeof *boxes);
    float *scores = malloc((size_t)k * sizeof *scores);
    int64_t *keep = malloc((size_t)(k < count ? k : count) * sizeof *keep);
    if (!fg || !order || !boxes || !scores || !keep) {
        st = mr_fail(MR_ERR_NOMEM, "proposals: cannot allocate for %lld anchors", (long long)n);
        goto out;
    }
    for (int64_t i = 0; i < n; i++) fg[i] = probs[2 * i + 1];
    if ((st = mr_argsort_desc(order, fg, n)) != MR_OK) goto out;
    for (int64_t j = 0; j < k; j++) {
        int64_t i = order[j];
        mr_box_decode(boxes + 4 * j, anchors + 4 * i, deltas + 4 * i, 1, cfg->bbox_std);
        scores[j] = fg[i];
    }
    static const float unit[4] = {0, 0, 1, 1};
    mr_box_clip(boxes, k, unit);
    int64_t kept;
    if ((st = mr_nms(keep, &kept, boxes, scores, k, cfg->nms_threshold, count)) != MR_OK) goto out;
    for (int64_t j = 0; j < kept; j++) memcpy(out + 4 * j, boxes + 4 * keep[j], 4 * sizeof *out);
    *n_out = kept;
out:
    free(fg);
    free(order);
    free(boxes);
    free(scores);
    free(keep);
    return st;
}

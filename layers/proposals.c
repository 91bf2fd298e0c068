/* Proposal layer: top-k by foreground score, decode, clip to the unit window, NMS, zero pad,
 * in that order, as Matterport's ProposalLayer (no small-box filter, on purpose). */
#include "proposals.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "boxes.h"

mr_proposal_config mr_proposal_config_matterport(bool training) {
    return (mr_proposal_config){.pre_nms_limit = 6000,
                                .proposal_count = training ? 2000 : 1000,
                                .nms_threshold = 0.7f,
                                .bbox_std = {0.1f, 0.1f, 0.2f, 0.2f}};
}

/* The top k of fg[lo, hi) by score (ties: lower index), appended to order. */
static mr_status top_k(int64_t *order, const float *fg, int64_t lo, int64_t hi, int64_t k,
                       int64_t *scratch) {
    MR_TRY(mr_topk_desc(scratch, fg + lo, hi - lo, k));
    for (int64_t j = 0; j < k; j++) order[j] = lo + scratch[j];
    return MR_OK;
}

mr_status mr_proposals(float *out, int64_t *n_out, const float *probs, const float *deltas,
                       const float *anchors, int64_t n, const mr_proposal_config *cfg) {
    const int64_t count = cfg->proposal_count;
    memset(out, 0, (size_t)count * 4 * sizeof *out);
    *n_out = 0;
    if (n <= 0 || count <= 0) return MR_OK;
    const bool per_level = cfg->n_levels > 0;
    int64_t total = 0, k = 0; /* candidates over every level */
    for (int l = 0; per_level && l < cfg->n_levels; l++) {
        total += cfg->level_counts[l];
        k += cfg->pre_nms_limit < cfg->level_counts[l] ? cfg->pre_nms_limit : cfg->level_counts[l];
    }
    if (per_level && total != n)
        return mr_fail(MR_ERR_ARG, "proposals: levels hold %lld anchors, not %lld",
                       (long long)total, (long long)n);
    if (!per_level) k = cfg->pre_nms_limit < n ? cfg->pre_nms_limit : n;
    mr_status st = MR_OK;
    float *fg = malloc((size_t)n * sizeof *fg);
    int64_t *order = malloc((size_t)n * sizeof *order),
            *scratch = malloc((size_t)n * sizeof *scratch);
    float *boxes = malloc((size_t)k * 4 * sizeof *boxes);
    float *scores = malloc((size_t)k * sizeof *scores);
    int64_t *level = malloc((size_t)k * sizeof *level);
    int64_t *keep = malloc((size_t)k * sizeof *keep);
    float *kept_scores = malloc((size_t)k * sizeof *kept_scores);
    int64_t *rank = malloc((size_t)k * sizeof *rank);
    if (!fg || !order || !scratch || !boxes || !scores || !level || !keep || !kept_scores ||
        !rank) {
        st = mr_fail(MR_ERR_NOMEM, "proposals: cannot allocate for %lld anchors", (long long)n);
        goto out;
    }
    for (int64_t i = 0; i < n; i++) fg[i] = probs[2 * i + 1];
    if (per_level) {
        int64_t lo = 0, m = 0;
        for (int l = 0; l < cfg->n_levels && st == MR_OK; l++) {
            int64_t hi = lo + cfg->level_counts[l], kl = hi - lo;
            kl = cfg->pre_nms_limit < kl ? cfg->pre_nms_limit : kl;
            st = top_k(order + m, fg, lo, hi, kl, scratch);
            for (int64_t j = m; j < m + kl; j++) level[j] = l;
            m += kl;
            lo = hi;
        }
    } else {
        st = top_k(order, fg, 0, n, k, scratch);
    }
    if (st != MR_OK) goto out;
    for (int64_t j = 0; j < k; j++) {
        int64_t i = order[j];
        mr_box_decode(boxes + 4 * j, anchors + 4 * i, deltas + 4 * i, 1, cfg->bbox_std);
        scores[j] = fg[i];
    }
    static const float unit[4] = {0, 0, 1, 1};
    mr_box_clip(boxes, k, unit);
    int64_t kept;
    if (!per_level) {
        if ((st = mr_nms(keep, &kept, boxes, scores, k, cfg->nms_threshold, count)) != MR_OK)
            goto out;
        for (int64_t j = 0; j < kept; j++)
            memcpy(out + 4 * j, boxes + 4 * keep[j], 4 * sizeof *out);
    } else {
        /* NMS per level (levels as classes), then the best `count` survivors by score. */
        if ((st = mr_nms_per_class(keep, &kept, boxes, scores, level, k, cfg->nms_threshold, k)) !=
            MR_OK)
            goto out;
        for (int64_t j = 0; j < kept; j++) kept_scores[j] = scores[keep[j]];
        if ((st = mr_argsort_desc(rank, kept_scores, kept)) != MR_OK) goto out;
        kept = kept < count ? kept : count;
        for (int64_t j = 0; j < kept; j++)
            memcpy(out + 4 * j, boxes + 4 * keep[rank[j]], 4 * sizeof *out);
    }
    *n_out = kept;
out:
    free(fg);
    free(order);
    free(scratch);
    free(boxes);
    free(scores);
    free(level);
    free(keep);
    free(kept_scores);
    free(rank);
    return st;
}

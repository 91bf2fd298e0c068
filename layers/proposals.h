/* The proposal layer (Matterport's ProposalLayer, "ROI"): turns RPN scores and deltas over all
 * anchors into a fixed-size, zero-padded list of normalised proposal boxes for one image. */
#ifndef MR_PROPOSALS_H
#define MR_PROPOSALS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"

typedef struct {
    int64_t pre_nms_limit;  /* PRE_NMS_LIMIT (6000) */
    int64_t proposal_count; /* POST_NMS_ROIS_TRAINING (2000) / _INFERENCE (1000) */
    float nms_threshold;    /* RPN_NMS_THRESHOLD (0.7) */
    float bbox_std[4];      /* RPN_BBOX_STD_DEV (0.1, 0.1, 0.2, 0.2) */
    /* PROPOSALS_PER_LEVEL: with n_levels > 0 the anchors are n_levels consecutive runs of
     * level_counts[l] each, and the top-k and NMS run per level (torchvision), so small
     * objects' fine levels keep their share; 0: over all anchors at once (Matterport). */
    int n_levels;
    const int64_t *level_counts;
} mr_proposal_config;

/* Matterport defaults; training selects the 2000 or 1000 post-NMS count. */
mr_proposal_config mr_proposal_config_matterport(bool training);

/* probs (n, 2): softmax of the RPN logits, column 1 = foreground; deltas (n, 4) raw RPN box
 * output; anchors (n, 4) normalised. Takes the top min(pre_nms_limit, n) anchors by foreground
 * score (ties: lower index first), applies deltas * bbox_std, clips to [0, 1], runs NMS and
 * writes out (proposal_count, 4) normalised boxes in NMS order, zero padded; *n_out gets the
 * number of real rows. Per level: the top min(pre_nms_limit, level size) of each level, NMS
 * within each level, then the best proposal_count of the survivors by score. */
mr_status mr_proposals(float *out, int64_t *n_out, const float *probs, const float *deltas,
                       const float *anchors, int64_t n, const mr_proposal_config *cfg);

#endif

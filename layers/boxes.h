/* Box geometry for the non-differentiable stages: IoU, delta coding, clipping, greedy NMS with
 * tf.image.non_max_suppression's semantics, Matterport's norm/denorm conventions; and
 * mr_instances, the one type for the instances of an image.
 *
 * Boxes are (y1, x1, y2, x2) rows. Inside the network they are float tensors, as Matterport's;
 * everywhere else (annotations, ground truth, detections, metrics) a box is 4 doubles in pixels
 * with y2/x2 exclusive. The mask resamplers (resample.h, mr_unmold_mask, mr_mask_box) index
 * pixels with an int64 rectangle of the same layout, as Matterport's int32 boxes do. Only the
 * sorts and NMS allocate (scratch). */
#ifndef MR_BOXES_H
#define MR_BOXES_H

#include <stdint.h>

#include "../core/status.h"

/* The instances of one image: ground truth (scores NULL), detections, or a view of either for
 * scoring. Owned arrays are released with mr_instances_free; views point into other storage
 * and are not released. */
typedef struct {
    int64_t n;
    double *boxes;          /* (n, 4) y1, x1, y2, x2 pixels, y2/x2 exclusive */
    int64_t *class_ids;     /* (n) 1..NUM_CLASSES-1 */
    float *scores;          /* (n), NULL for ground truth */
    uint8_t *masks;         /* (n, mask_h, mask_w) 0/1 */
    int64_t mask_h, mask_w; /* image_h x image_w for full masks, MINI_MASK_SHAPE for mini masks */
    int64_t image_h, image_w;
    float *class_probs; /* (n, n_classes) each detection's class probabilities (its ROI's softmax,
                           background first), or NULL */
    int64_t n_classes;
} mr_instances;

/* Frees the arrays and zeroes the struct (core/status.h's rule). */
void mr_instances_free(mr_instances *d);
/* out (n, 4) = boxes as the network's float32 (pixel boxes are integers: exact). */
void mr_boxes_to_f32(float *out, const double *boxes, int64_t n);

/* IoU of two boxes with plain areas (no +1), as utils.compute_iou and overlaps_graph; a zero
 * union gives 0 rather than NaN. */
float mr_box_iou(const float *a, const float *b);
/* iou[i * nb + j] = IoU(a[i], b[j]); a (na, 4), b (nb, 4), iou (na, nb). */
void mr_box_iou_matrix(float *iou, const float *a, const float *b, int64_t na, int64_t nb);

/* deltas (n, 4) = (dy, dx, log dh, log dw) taking boxes (n, 4) to gt (n, 4), divided by std
 * when std is not NULL (box_refinement; targets store deltas / *_BBOX_STD_DEV). */
void mr_box_encode(float *deltas, const float *boxes, const float *gt, int64_t n, const float *std);
/* out (n, 4) = boxes moved by deltas * std (std NULL = 1), apply_box_deltas; no clamp on the
 * log sizes, as Matterport. out may alias boxes. */
void mr_box_decode(float *out, const float *boxes, const float *deltas, int64_t n,
                   const float *std);
/* Clamps each coordinate into window (wy1, wx1, wy2, wx2), as clip_boxes_graph. */
void mr_box_clip(float *boxes, int64_t n, const float window[4]);

/* Pixel boxes (y2, x2 exclusive) of an h x w image to normalised ones:
 * (y1/(h-1), x1/(w-1), (y2-1)/(h-1), (x2-1)/(w-1)). out may alias boxes. */
void mr_norm_boxes(float *out, const float *boxes, int64_t n, int64_t h, int64_t w);
/* The inverse, to integer pixels, exactly as utils.denorm_boxes:
 * around(y1*(h-1)), around(x1*(w-1)), around(y2*(h-1) + 1), around(x2*(w-1) + 1), where around
 * rounds halves to even (np.around / tf.round). The +1 comes before the rounding, so a y2 of
 * 0.5*(h-1) gives around(1.5) = 2, not around(0.5) + 1 = 1. */
void mr_denorm_boxes(int64_t *out, const float *boxes, int64_t n, int64_t h, int64_t w);

/* order (n) = indices sorted by score descending, ties by lower index first (tf.nn.top_k's
 * order); NaN scores go last. */
mr_status mr_argsort_desc(int64_t *order, const float *scores, int64_t n);
/* order (k) = the first k of mr_argsort_desc's order, in that order, without sorting the rest:
 * a selection in O(n), then a sort of the k (tf.nn.top_k on 261,888 anchors keeps 6,000). */
mr_status mr_topk_desc(int64_t *order, const float *scores, int64_t n, int64_t k);

/* tf.image.non_max_suppression: visit boxes by score (ties: lower index first) and keep a box
 * unless its IoU with an already kept box is greater than iou_threshold; stop at max_out.
 * keep must hold min(n, max_out) indices; *n_keep gets the count, keep is in score order.
 * Boxes with zero area suppress nothing; NaN scores are never kept. */
mr_status mr_nms(int64_t *keep, int64_t *n_keep, const float *boxes, const float *scores, int64_t n,
                 float iou_threshold, int64_t max_out);
/* The same NMS run separately for each class id (up to max_per_class per class), as the
 * detection layer does; keep (capacity n) gets the union in increasing index order. */
mr_status mr_nms_per_class(int64_t *keep, int64_t *n_keep, const float *boxes, const float *scores,
                           const int64_t *class_ids, int64_t n, float iou_threshold,
                           int64_t max_per_class);

#endif

/* Evaluation metrics over plain arrays: overlaps, Matterport's per-image AP, COCO-style AP and
 * lesion-level matching. Every function here is deterministic (stable orders for ties) and
 * allocates only scratch, so the tests can drive it with hand-made cases. */
#include "metrics.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "../core/util.h"
#include "../data/raster.h"
#include "../layers/boxes.h"

/* ---- overlaps ---------------------------------------------------------------------------------
 */

void mr_box_iou_matrix_f64(double *iou, const double *a, int64_t na, const double *b, int64_t nb) {
    for (int64_t i = 0; i < na; i++) {
        const double *p = a + 4 * i;
        double area_a = (p[2] - p[0]) * (p[3] - p[1]);
        for (int64_t j = 0; j < nb; j++) {
            const double *q = b + 4 * j;
            double area_b = (q[2] - q[0]) * (q[3] - q[1]);
            double ih = (p[2] < q[2] ? p[2] : q[2]) - (p[0] > q[0] ? p[0] : q[0]);
            double iw = (p[3] < q[3] ? p[3] : q[3]) - (p[1] > q[1] ? p[1] : q[1]);
            double inter = ih > 0 && iw > 0 ? ih * iw : 0.0;
            double uni = area_a + area_b - inter;
            iou[i * nb + j] = uni > 0 ? inter / uni : 0.0;
        }
    }
}

/* The flat byte range [lo, hi) holding every set pixel of a mask and its area; an empty mask
 * gets lo = hi = 0. Intersections only need the overlap of two such ranges, which for lesions
 * (a small share of the image) saves most of the work without knowing the image width. */
typedef struct {
    int64_t lo, hi, area;
} mask_extent;

static mask_extent extent_of(const uint8_t *m, int64_t npix) {
    mask_extent e = {0, 0, 0};
    int64_t first = -1, last = -1;
    for (int64_t k = 0; k < npix; k++)
        if (m[k]) {
            if (first < 0) first = k;
            last = k;
            e.area++;
        }
    if (first >= 0) e.lo = first, e.hi = last + 1;
    return e;
}

mr_status mr_mask_iou_matrix(double *iou, const uint8_t *a, int64_t na, const uint8_t *b,
                             int64_t nb, int64_t npix) {
    if (na <= 0 || nb <= 0) return MR_OK;
    mask_extent *ea = malloc(sizeof *ea * (size_t)(na + nb));
    if (!ea)
        return mr_fail(MR_ERR_NOMEM, "mask IoU: out of memory for %lld masks",
                       (long long)(na + nb));
    mask_extent *eb = ea + na;
    for (int64_t i = 0; i < na; i++) ea[i] = extent_of(a + i * npix, npix);
    for (int64_t j = 0; j < nb; j++) eb[j] = extent_of(b + j * npix, npix);
    for (int64_t i = 0; i < na; i++) {
        const uint8_t *p = a + i * npix;
        for (int64_t j = 0; j < nb; j++) {
            const uint8_t *q = b + j * npix;
            int64_t lo = ea[i].lo > eb[j].lo ? ea[i].lo : eb[j].lo;
            int64_t hi = ea[i].hi < eb[j].hi ? ea[i].hi : eb[j].hi;
            int64_t inter = 0;
            for (int64_t k = lo; k < hi; k++) inter += (p[k] != 0) & (q[k] != 0);
            int64_t uni = ea[i].area + eb[j].area - inter;
            iou[i * nb + j] = uni > 0 ? (double)inter / (double)uni : 0.0;
        }
    }
    free(ea);
    return MR_OK;
}

void mr_mask_dice_iou(const uint8_t *a, const uint8_t *b, int64_t npix, double *dice, double *iou) {
    int64_t inter = 0, sa = 0, sb = 0;
    for (int64_t k = 0; k < npix; k++) {
        int x = a[k] != 0, y = b[k] != 0;
        inter += x & y;
        sa += x;
        sb += y;
    }
    if (sa + sb == 0) {
        *dice = *iou = 1.0;
        return;
    }
    *dice = 2.0 * (double)inter / (double)(sa + sb);
    *iou = (double)inter / (double)(sa + sb - inter);
}

double mr_dice_from_iou(double iou) {
    return 2.0 * iou / (1.0 + iou);
}

void mr_masks_to_boxes(double *boxes, const uint8_t *masks, int64_t n, int64_t h, int64_t w) {
    for (int64_t i = 0; i < n; i++) {
        int64_t box[4] = {0, 0, 0, 0};
        (void)mr_mask_box(masks + i * h * w, h, w, box); /* an empty mask keeps (0, 0, 0, 0) */
        for (int k = 0; k < 4; k++) boxes[4 * i + k] = (double)box[k];
    }
}

/* ---- ordering helpers ----------------------------------------------------------------------- */

typedef struct {
    double v;
    int64_t i;
} keyed;

/* Descending by value, ties by lower index: a total order, so qsort's instability cannot show. */
static int keyed_desc(const void *pa, const void *pb) {
    const keyed *a = pa, *b = pb;
    if (a->v > b->v) return -1;
    if (a->v < b->v) return 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* ---- Matterport ----------------------------------------------------------------------------- */

mr_status mr_compute_matches(int64_t *gt_match, int64_t *pred_match, int64_t *order,
                             const double *iou, const int64_t *gt_class_ids, int64_t n_gt,
                             const int64_t *pred_class_ids, const float *pred_scores,
                             int64_t n_pred, double iou_threshold, bool matterport_bug) {
    for (int64_t j = 0; j < n_gt; j++) gt_match[j] = -1;
    for (int64_t k = 0; k < n_pred; k++) pred_match[k] = -1;
    if (n_pred <= 0) return MR_OK;
    MR_TRY(mr_argsort_desc(order, pred_scores, n_pred));
    if (n_gt <= 0) return MR_OK;
    keyed *cand = malloc(sizeof *cand * (size_t)n_gt);
    if (!cand) return mr_fail(MR_ERR_NOMEM, "compute_matches: out of memory");
    for (int64_t k = 0; k < n_pred; k++) {
        int64_t i = order[k];
        for (int64_t j = 0; j < n_gt; j++) cand[j] = (keyed){iou[i * n_gt + j], j};
        qsort(cand, (size_t)n_gt, sizeof *cand, keyed_desc);
        for (int64_t c = 0; c < n_gt; c++) {
            int64_t j = cand[c].i;
            /* The fix: -1 means free. Matterport's `> 0` treats a GT held by position 0 as free. */
            if (matterport_bug ? gt_match[j] > 0 : gt_match[j] > -1) continue;
            if (cand[c].v < iou_threshold) break;
            if (gt_class_ids[j] == pred_class_ids[i]) {
                gt_match[j] = k;
                pred_match[k] = j;
                break;
            }
        }
    }
    free(cand);
    return MR_OK;
}

/* compute_ap's arithmetic on pred_match in visiting order: precision and recall after each
 * prediction, padded to [0, p..., 0] and [0, r..., 1], the precision made monotone from the
 * right, AP = sum of (r[i] - r[i-1]) * p[i] where recall changes (VOC all-point). n_gt == 0
 * gives MR_AP_UNDEFINED (Matterport would divide by zero). */
static double ap_from_matches(const int64_t *pred_match, int64_t n_pred, int64_t n_gt) {
    if (n_gt <= 0) return MR_AP_UNDEFINED;
    /* The padded arrays are p = [0, p_1..p_n, 0], r = [0, r_1..r_n, 1] with p_i = tp_i / i and
     * r_i = tp_i / n_gt; the envelope from the right is a running max, so walk backwards and
     * need no storage. (Matterport keeps recall in float32; double moves AP by ~1e-8 at most.) */
    int64_t tp = 0;
    for (int64_t k = 0; k < n_pred; k++) tp += pred_match[k] > -1;
    double ng = (double)n_gt, env = 0.0, ap = 0.0;
    /* i = n + 1, the right pad: p = 0, r = 1. */
    double r_prev = (double)tp / ng;
    if (1.0 != r_prev) ap += (1.0 - r_prev) * env;
    for (int64_t i = n_pred; i >= 1; i--) {
        double p = (double)tp / (double)i, r = (double)tp / ng;
        if (p > env) env = p;
        tp -= pred_match[i - 1] > -1;
        r_prev = (double)tp / ng;
        if (r != r_prev) ap += (r - r_prev) * env;
    }
    return ap;
}

mr_status mr_compute_ap(double *ap, const double *iou, const int64_t *gt_class_ids, int64_t n_gt,
                        const int64_t *pred_class_ids, const float *pred_scores, int64_t n_pred,
                        double iou_threshold, bool matterport_bug) {
    *ap = MR_AP_UNDEFINED;
    if (n_gt <= 0) return MR_OK;
    int64_t *buf = malloc(sizeof(int64_t) * (size_t)(n_gt + 2 * n_pred + 1));
    if (!buf) return mr_fail(MR_ERR_NOMEM, "compute_ap: out of memory");
    int64_t *gt_match = buf, *pred_match = buf + n_gt, *order = buf + n_gt + n_pred;
    mr_status st =
        mr_compute_matches(gt_match, pred_match, order, iou, gt_class_ids, n_gt, pred_class_ids,
                           pred_scores, n_pred, iou_threshold, matterport_bug);
    if (st == MR_OK) *ap = ap_from_matches(pred_match, n_pred, n_gt);
    free(buf);
    return st;
}

/* np.arange(0.5, 1.0, 0.05) exactly: numpy fills start, start + step, then start + i * delta
 * with delta = (start + step) - start. */
static double matterport_threshold(int i) {
    if (i == 0) return 0.5;
    if (i == 1) return 0.5 + 0.05;
    double delta = (0.5 + 0.05) - 0.5;
    return 0.5 + (double)i * delta;
}

mr_status mr_compute_ap_range(double *ap, const double *iou, const int64_t *gt_class_ids,
                              int64_t n_gt, const int64_t *pred_class_ids, const float *pred_scores,
                              int64_t n_pred, bool matterport_bug) {
    *ap = MR_AP_UNDEFINED;
    if (n_gt <= 0) return MR_OK;
    double sum = 0.0;
    for (int i = 0; i < 10; i++) {
        double a;
        MR_TRY(mr_compute_ap(&a, iou, gt_class_ids, n_gt, pred_class_ids, pred_scores, n_pred,
                             matterport_threshold(i), matterport_bug));
        sum += a;
    }
    *ap = sum / 10.0;
    return MR_OK;
}

mr_status mr_image_ap_masks(double *ap, double *ap_range, const mr_instances *gt,
                            const mr_instances *pred, int64_t npix, double iou_threshold) {
    *ap = *ap_range = MR_AP_UNDEFINED;
    if (gt->n <= 0) return MR_OK;
    double *iou = malloc(sizeof(double) * (size_t)(gt->n * pred->n + 1));
    if (!iou) return mr_fail(MR_ERR_NOMEM, "image AP: out of memory");
    mr_status st = mr_mask_iou_matrix(iou, pred->masks, pred->n, gt->masks, gt->n, npix);
    if (st == MR_OK)
        st = mr_compute_ap(ap, iou, gt->class_ids, gt->n, pred->class_ids, pred->scores, pred->n,
                           iou_threshold, false);
    if (st == MR_OK)
        st = mr_compute_ap_range(ap_range, iou, gt->class_ids, gt->n, pred->class_ids, pred->scores,
                                 pred->n, false);
    free(iou);
    return st;
}

/* ---- COCO ----------------------------------------------------------------------------------- */

/* The IoU threshold of index t (0.50 + 0.05 t, computed as np.linspace does). */
static double coco_iou_threshold(int t) {
    /* np.linspace(.5, 0.95, 10): k * step + start, the last value set to stop. */
    if (t >= MR_COCO_N_IOU - 1) return 0.95;
    double step = (0.95 - 0.5) / (double)(MR_COCO_N_IOU - 1);
    return (double)t * step + 0.5;
}

static double coco_recall_point(int r) {
    if (r >= MR_COCO_N_RECALL - 1) return 1.0;
    double step = (1.0 - 0.0) / (double)(MR_COCO_N_RECALL - 1);
    return (double)r * step + 0.0;
}

mr_status mr_coco_init(mr_coco_eval *e, int64_t num_classes) {
    memset(e, 0, sizeof *e);
    if (num_classes < 2)
        return mr_fail(MR_ERR_ARG, "COCO eval: need at least 2 classes (BG + one), got %lld",
                       (long long)num_classes);
    e->num_classes = num_classes;
    e->n_gt = calloc((size_t)num_classes, sizeof *e->n_gt);
    e->dets = calloc((size_t)num_classes, sizeof *e->dets);
    e->n_dets = calloc((size_t)num_classes, sizeof *e->n_dets);
    e->cap_dets = calloc((size_t)num_classes, sizeof *e->cap_dets);
    if (!e->n_gt || !e->dets || !e->n_dets || !e->cap_dets) {
        mr_coco_free(e);
        return mr_fail(MR_ERR_NOMEM, "COCO eval: out of memory");
    }
    return MR_OK;
}

void mr_coco_free(mr_coco_eval *e) {
    if (e->dets)
        for (int64_t c = 0; c < e->num_classes; c++) free(e->dets[c]);
    free(e->n_gt);
    free(e->dets);
    free(e->n_dets);
    free(e->cap_dets);
    memset(e, 0, sizeof *e);
}

static mr_status push_det(mr_coco_eval *e, int64_t c, mr_coco_det d) {
    if (!mr_grow(&e->dets[c], &e->cap_dets[c], (size_t)e->n_dets[c] + 1, sizeof *e->dets[c], 64))
        return mr_fail(MR_ERR_NOMEM, "COCO eval: out of memory for detections");
    e->dets[c][e->n_dets[c]++] = d;
    return MR_OK;
}

mr_status mr_coco_add_image(mr_coco_eval *e, const double *iou, const int64_t *gt_class_ids,
                            int64_t n_gt, const int64_t *pred_class_ids, const float *pred_scores,
                            int64_t n_pred) {
    e->n_images++;
    int64_t *buf = malloc(sizeof(int64_t) * (size_t)(2 * n_pred + 2 * n_gt + 1));
    if (!buf) return mr_fail(MR_ERR_NOMEM, "COCO eval: out of memory");
    int64_t *order = buf, *dets = buf + n_pred, *gts = buf + 2 * n_pred,
            *taken = buf + 2 * n_pred + n_gt;
    mr_status st = mr_argsort_desc(order, pred_scores, n_pred);
    for (int64_t c = 1; c < e->num_classes && st == MR_OK; c++) {
        int64_t ng = 0, nd = 0;
        for (int64_t j = 0; j < n_gt; j++)
            if (gt_class_ids[j] == c) gts[ng++] = j;
        for (int64_t k = 0; k < n_pred && nd < MR_COCO_MAX_DETS; k++)
            if (pred_class_ids[order[k]] == c) dets[nd++] = order[k];
        e->n_gt[c] += ng;
        uint16_t *bits = calloc((size_t)(nd + 1), sizeof *bits);
        if (!bits) {
            st = mr_fail(MR_ERR_NOMEM, "COCO eval: out of memory");
            break;
        }
        for (int t = 0; t < MR_COCO_N_IOU; t++) {
            double thr = coco_iou_threshold(t);
            if (thr > 1 - 1e-10) thr = 1 - 1e-10;
            for (int64_t g = 0; g < ng; g++) taken[g] = 0;
            for (int64_t d = 0; d < nd; d++) {
                double best = thr;
                int64_t m = -1;
                for (int64_t g = 0; g < ng; g++) {
                    if (taken[g]) continue;
                    double v = iou[dets[d] * n_gt + gts[g]];
                    if (v < best) continue; /* evaluateImg: equal IoU lets the later GT win */
                    best = v;
                    m = g;
                }
                if (m >= 0) {
                    taken[m] = 1;
                    bits[d] |= (uint16_t)(1u << t);
                }
            }
        }
        for (int64_t d = 0; d < nd && st == MR_OK; d++)
            st = push_det(e, c, (mr_coco_det){pred_scores[dets[d]], bits[d]});
        free(bits);
    }
    free(buf);
    return st;
}

void mr_coco_result_free(mr_coco_result *r) {
    free(r->ap);
    free(r->recall);
    free(r->precision);
    free(r->n_gt);
    memset(r, 0, sizeof *r);
}

/* First index whose recall reaches x (np.searchsorted side='left' on a non-decreasing array). */
static int64_t first_at_least(const double *rc, int64_t n, double x) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (rc[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

mr_status mr_coco_summarize(const mr_coco_eval *e, mr_coco_result *r) {
    memset(r, 0, sizeof *r);
    int64_t nc = e->num_classes;
    r->num_classes = nc;
    r->ap = malloc(sizeof(double) * (size_t)nc * 3);
    r->recall = malloc(sizeof(double) * (size_t)(nc * MR_COCO_N_IOU));
    r->precision = calloc((size_t)(nc * MR_COCO_N_IOU * MR_COCO_N_RECALL), sizeof(double));
    r->n_gt = malloc(sizeof(int64_t) * (size_t)nc * 2);
    if (!r->ap || !r->recall || !r->precision || !r->n_gt) {
        mr_coco_result_free(r);
        return mr_fail(MR_ERR_NOMEM, "COCO eval: out of memory");
    }
    r->ap50 = r->ap + nc;
    r->ap75 = r->ap + 2 * nc;
    r->n_dets = r->n_gt + nc;
    int64_t valid = 0;
    double sum = 0.0, sum50 = 0.0, sum75 = 0.0;
    mr_status st = MR_OK;
    for (int64_t c = 0; c < nc && st == MR_OK; c++) {
        r->ap[c] = r->ap50[c] = r->ap75[c] = MR_AP_UNDEFINED;
        r->n_gt[c] = e->n_gt[c];
        r->n_dets[c] = e->n_dets[c];
        for (int t = 0; t < MR_COCO_N_IOU; t++) r->recall[c * MR_COCO_N_IOU + t] = MR_AP_UNDEFINED;
        if (c == 0 || e->n_gt[c] == 0) continue;
        int64_t nd = e->n_dets[c];
        float *scores = malloc(sizeof(float) * (size_t)(nd + 1));
        int64_t *order = malloc(sizeof(int64_t) * (size_t)(nd + 1));
        double *rc = malloc(sizeof(double) * (size_t)(2 * nd + 1));
        if (!scores || !order || !rc) {
            free(scores), free(order), free(rc);
            st = mr_fail(MR_ERR_NOMEM, "COCO eval: out of memory");
            break;
        }
        double *pr = rc + nd;
        for (int64_t d = 0; d < nd; d++) scores[d] = e->dets[c][d].score;
        /* pycocotools: np.argsort(-scores, kind='mergesort'), stable = what we have. */
        st = mr_argsort_desc(order, scores, nd);
        double class_sum = 0.0;
        for (int t = 0; t < MR_COCO_N_IOU && st == MR_OK; t++) {
            double tp = 0.0, fp = 0.0;
            for (int64_t d = 0; d < nd; d++) {
                if (e->dets[c][order[d]].matched & (1u << t))
                    tp += 1.0;
                else
                    fp += 1.0;
                rc[d] = tp / (double)e->n_gt[c];
                pr[d] = tp / (fp + tp + DBL_EPSILON); /* np.spacing(1) */
            }
            r->recall[c * MR_COCO_N_IOU + t] = nd ? rc[nd - 1] : 0.0;
            for (int64_t d = nd - 1; d > 0; d--)
                if (pr[d] > pr[d - 1]) pr[d - 1] = pr[d];
            double *q = r->precision + (c * MR_COCO_N_IOU + t) * MR_COCO_N_RECALL;
            double t_sum = 0.0;
            for (int k = 0; k < MR_COCO_N_RECALL; k++) {
                int64_t i = first_at_least(rc, nd, coco_recall_point(k));
                q[k] = i < nd ? pr[i] : 0.0;
                t_sum += q[k];
            }
            double t_ap = t_sum / MR_COCO_N_RECALL;
            class_sum += t_ap;
            if (t == 0) r->ap50[c] = t_ap;
            if (t == 5) r->ap75[c] = t_ap; /* 0.50 + 5 * 0.05 */
        }
        free(scores), free(order), free(rc);
        r->ap[c] = class_sum / MR_COCO_N_IOU;
        sum += r->ap[c], sum50 += r->ap50[c], sum75 += r->ap75[c];
        valid++;
    }
    if (st != MR_OK) {
        mr_coco_result_free(r);
        return st;
    }
    r->mean_ap = valid ? sum / (double)valid : MR_AP_UNDEFINED;
    r->mean_ap50 = valid ? sum50 / (double)valid : MR_AP_UNDEFINED;
    r->mean_ap75 = valid ? sum75 / (double)valid : MR_AP_UNDEFINED;
    return MR_OK;
}

/* ---- lesion level --------------------------------------------------------------------------- */

mr_status mr_match_class_agnostic(int64_t *gt_to_pred, const double *iou, int64_t n_gt,
                                  const float *pred_scores, int64_t n_pred, double iou_threshold) {
    for (int64_t j = 0; j < n_gt; j++) gt_to_pred[j] = -1;
    if (n_pred <= 0 || n_gt <= 0) return MR_OK;
    int64_t *order = malloc(sizeof(int64_t) * (size_t)n_pred);
    if (!order) return mr_fail(MR_ERR_NOMEM, "lesion matching: out of memory");
    mr_status st = mr_argsort_desc(order, pred_scores, n_pred);
    for (int64_t k = 0; k < n_pred && st == MR_OK; k++) {
        int64_t i = order[k], m = -1;
        double best = iou_threshold;
        for (int64_t j = 0; j < n_gt; j++) {
            double v = iou[i * n_gt + j];
            if (gt_to_pred[j] >= 0 || v < best || (m >= 0 && v == best)) continue;
            best = v;
            m = j;
        }
        if (m >= 0) gt_to_pred[m] = i;
    }
    free(order);
    return st;
}

mr_status mr_lesion_stats_init(mr_lesion_stats *s, int64_t num_classes) {
    memset(s, 0, sizeof *s);
    if (num_classes < 2)
        return mr_fail(MR_ERR_ARG, "lesion stats: need at least 2 classes, got %lld",
                       (long long)num_classes);
    s->num_classes = num_classes;
    s->confusion = calloc((size_t)(num_classes * num_classes), sizeof *s->confusion);
    if (!s->confusion) return mr_fail(MR_ERR_NOMEM, "lesion stats: out of memory");
    return MR_OK;
}

void mr_lesion_stats_free(mr_lesion_stats *s) {
    free(s->confusion);
    memset(s, 0, sizeof *s);
}

mr_status mr_lesion_stats_add(mr_lesion_stats *s, const double *iou, const int64_t *gt_class_ids,
                              int64_t n_gt, const int64_t *pred_class_ids, const float *pred_scores,
                              int64_t n_pred, double iou_threshold) {
    s->n_images++;
    s->n_gt += n_gt;
    s->n_pred += n_pred;
    if (n_gt == 0) {
        s->n_images_without_gt++;
        s->n_fp_without_gt += n_pred;
    }
    int64_t *g2p = malloc(sizeof(int64_t) * (size_t)(n_gt + 1));
    uint8_t *taken = calloc((size_t)(n_pred + 1), 1);
    if (!g2p || !taken) {
        free(g2p), free(taken);
        return mr_fail(MR_ERR_NOMEM, "lesion stats: out of memory");
    }
    const int64_t nc = s->num_classes;
    mr_status st = mr_match_class_agnostic(g2p, iou, n_gt, pred_scores, n_pred, iou_threshold);
    for (int64_t j = 0; j < n_gt && st == MR_OK; j++) {
        int64_t i = g2p[j], g = gt_class_ids[j];
        bool g_ok = g >= 1 && g < nc;
        if (i < 0) {
            if (g_ok) s->confusion[g * nc]++;
            continue;
        }
        taken[i] = 1;
        double v = iou[i * n_gt + j];
        s->n_matched++;
        s->sum_iou += v;
        s->sum_dice += mr_dice_from_iou(v);
        int64_t p = pred_class_ids[i];
        if (g_ok && p >= 1 && p < nc) s->confusion[g * nc + p]++;
    }
    for (int64_t i = 0; i < n_pred && st == MR_OK; i++) {
        int64_t p = pred_class_ids[i];
        if (!taken[i] && p >= 1 && p < nc) s->confusion[p]++;
    }
    free(g2p), free(taken);
    return st;
}

double mr_lesion_accuracy(const mr_lesion_stats *s) {
    int64_t total = 0, right = 0, nc = s->num_classes;
    for (int64_t g = 1; g < nc; g++)
        for (int64_t p = 1; p < nc; p++) {
            total += s->confusion[g * nc + p];
            if (g == p) right += s->confusion[g * nc + p];
        }
    return total ? (double)right / (double)total : 0.0;
}

double mr_lesion_sensitivity(const mr_lesion_stats *s) {
    return s->n_gt ? (double)s->n_matched / (double)s->n_gt : 0.0;
}

double mr_lesion_fp_per_image(const mr_lesion_stats *s) {
    return s->n_images ? (double)(s->n_pred - s->n_matched) / (double)s->n_images : 0.0;
}

double mr_lesion_mean_dice(const mr_lesion_stats *s) {
    return s->n_matched ? s->sum_dice / (double)s->n_matched : 0.0;
}

double mr_lesion_mean_iou(const mr_lesion_stats *s) {
    return s->n_matched ? s->sum_iou / (double)s->n_matched : 0.0;
}

/* The evaluation accumulator and its writers; the scoring of one image (ground truth rasterised
 * at the original size, box and mask overlaps, the three metric families) lives here once, for
 * `mrcnn evaluate`, the trainer's validation metrics and the quality benchmark. */
#include "evaluate.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../core/file.h"
#include "../core/log.h"
#include "../core/text.h"
#include "../core/util.h"
#include "../data/predictions.h"
#include "../layers/inference.h"
#include "export.h"
#include "weights.h"

/* The seed paper (Chiao et al., Medicine 2019;98(19):e15200): 307 sonograms of 80 patients. */
#define SEED_MAP      0.75
#define SEED_ACCURACY 0.85

static void num(mr_text *t, double v) {
    mr_text_json_number(t, v == MR_AP_UNDEFINED ? (double)NAN : v, 6);
}

/* ---- accumulating ------------------------------------------------------------------------ */

mr_status mr_evaluation_init(mr_evaluation *e, int64_t num_classes, const mr_eval_options *opt) {
    memset(e, 0, sizeof *e);
    e->opt = *opt;
    e->num_classes = num_classes;
    e->map50 = e->map50_95 = MR_AP_UNDEFINED;
    mr_status st = mr_coco_init(&e->coco_box, num_classes);
    if (st == MR_OK) st = mr_coco_init(&e->coco_mask, num_classes);
    if (st == MR_OK) st = mr_lesion_stats_init(&e->lesions, num_classes);
    if (st != MR_OK) mr_evaluation_free(e);
    return st;
}

void mr_evaluation_free(mr_evaluation *e) {
    for (int64_t i = 0; i < e->n_images && e->images; i++) free(e->images[i].path);
    free(e->images);
    mr_coco_free(&e->coco_box);
    mr_coco_free(&e->coco_mask);
    mr_lesion_stats_free(&e->lesions);
    mr_coco_result_free(&e->box);
    mr_coco_result_free(&e->mask);
    memset(e, 0, sizeof *e);
}

/* Scores one image: its GT shapes rasterised by pixel centres at the original size (empty ones
 * dropped and counted), GT boxes from the masks; detections below det_threshold ignored. */
static mr_status score_image(mr_evaluation *e, const mr_image_record *rec,
                             const mr_instances *det) {
    const int64_t H = rec->height, W = rec->width, npix = H * W;
    if (det->n > 0 && (det->image_h != H || det->image_w != W))
        return mr_fail(MR_ERR_FORMAT, "%s: detections are %lldx%lld but the image is %lldx%lld",
                       rec->path, (long long)det->image_w, (long long)det->image_h, (long long)W,
                       (long long)H);
    /* Detections below det_threshold are left out; the rest keep their order. */
    int64_t np = 0;
    for (int64_t i = 0; i < det->n; i++) np += det->scores[i] >= e->opt.det_threshold;
    const int64_t n_in = rec->n_instances;
    int64_t n_gt = 0;
    uint8_t *gt_masks = calloc((size_t)(n_in + 1), (size_t)npix);
    int64_t *gt_cls = malloc(sizeof(int64_t) * (size_t)(n_in + 1));
    double *gt_boxes = malloc(sizeof(double) * 4 * (size_t)(n_in + 1));
    int64_t *p_cls = malloc(sizeof(int64_t) * (size_t)(np + 1));
    float *p_scores = malloc(sizeof(float) * (size_t)(np + 1));
    double *p_boxes = malloc(sizeof(double) * 4 * (size_t)(np + 1));
    uint8_t *p_masks = np == det->n ? det->masks : malloc((size_t)(np + 1) * (size_t)npix);
    double *mask_iou = malloc(sizeof(double) * (size_t)(np * n_in + 1));
    double *box_iou = malloc(sizeof(double) * (size_t)(np * n_in + 1));
    double *op_iou = malloc(sizeof(double) * (size_t)(np * n_in + 1));
    int64_t *op_cls = malloc(sizeof(int64_t) * (size_t)(np + 1));
    float *op_scores = malloc(sizeof(float) * (size_t)(np + 1));
    mr_status st = MR_OK;
    if (!gt_masks || !gt_cls || !gt_boxes || !p_cls || !p_scores || !p_boxes || (np && !p_masks) ||
        !mask_iou || !box_iou || !op_iou || !op_cls || !op_scores) {
        st = mr_fail(MR_ERR_NOMEM, "%s: out of memory scoring the image", rec->path);
        goto done;
    }
    for (int64_t i = 0, k = 0; i < det->n; i++) {
        if (det->scores[i] < e->opt.det_threshold) continue;
        p_cls[k] = det->class_ids[i];
        p_scores[k] = det->scores[i];
        for (int c = 0; c < 4; c++) p_boxes[4 * k + c] = det->boxes[4 * i + c];
        if (p_masks != det->masks)
            memcpy(p_masks + (size_t)k * (size_t)npix, det->masks + (size_t)i * (size_t)npix,
                   (size_t)npix);
        k++;
    }
    /* Ground truth at the original size: the shapes rasterised by pixel centres, boxes from
     * the masks (extract_bboxes), shapes that cover no pixel centre dropped. */
    for (int64_t k = 0; k < n_in; k++) {
        uint8_t *m = gt_masks + n_gt * npix;
        if (mr_shape_rasterize(&rec->instances[k].shape, m, (int)W, (int)H, 1) == 0) {
            e->n_gt_empty++;
            continue;
        }
        gt_cls[n_gt++] = rec->instances[k].class_id;
    }
    mr_masks_to_boxes(gt_boxes, gt_masks, n_gt, H, W);
    if ((st = mr_mask_iou_matrix(mask_iou, p_masks, np, gt_masks, n_gt, npix)) != MR_OK) goto done;
    mr_box_iou_matrix_f64(box_iou, p_boxes, np, gt_boxes, n_gt);

    if (!mr_grow(&e->images, &e->images_cap, (size_t)e->n_images + 1, sizeof *e->images, 64)) {
        st = mr_fail(MR_ERR_NOMEM, "%s: out of memory scoring the image", rec->path);
        goto done;
    }
    mr_eval_image *img = &e->images[e->n_images];
    memset(img, 0, sizeof *img);
    img->ap50 = MR_AP_UNDEFINED;
    if (!(img->path = mr_strdup(rec->path))) {
        st = mr_fail(MR_ERR_NOMEM, "%s: out of memory scoring the image", rec->path);
        goto done;
    }
    e->n_images++;
    if (n_gt > 0) {
        double ap50, ap_range;
        if ((st = mr_compute_ap(&ap50, mask_iou, gt_cls, n_gt, p_cls, p_scores, np,
                                MR_EVAL_MATCH_IOU, false)) != MR_OK ||
            (st = mr_compute_ap_range(&ap_range, mask_iou, gt_cls, n_gt, p_cls, p_scores, np,
                                      false)) != MR_OK)
            goto done;
        e->sum_map50 += ap50;
        img->ap50 = ap50;
        e->sum_map50_95 += ap_range;
        e->n_map_images++;
    }
    if ((st = mr_coco_add_image(&e->coco_box, box_iou, gt_cls, n_gt, p_cls, p_scores, np)) !=
            MR_OK ||
        (st = mr_coco_add_image(&e->coco_mask, mask_iou, gt_cls, n_gt, p_cls, p_scores, np)) !=
            MR_OK)
        goto done;

    /* Lesion level at the operating point: only detections scoring at least op_threshold. */
    int64_t n_op = 0;
    for (int64_t i = 0; i < np; i++) {
        if (p_scores[i] < e->opt.op_threshold) continue;
        memcpy(op_iou + n_op * n_gt, mask_iou + i * n_gt, sizeof(double) * (size_t)n_gt);
        op_cls[n_op] = p_cls[i];
        op_scores[n_op] = p_scores[i];
        n_op++;
    }
    /* This image's share of the lesion counts: what the accumulator gained. */
    const int64_t matched0 = e->lesions.n_matched;
    const double dice0 = e->lesions.sum_dice;
    st = mr_lesion_stats_add(&e->lesions, op_iou, gt_cls, n_gt, op_cls, op_scores, n_op,
                             MR_EVAL_MATCH_IOU);
    img->lesions = n_gt;
    img->detections = n_op;
    img->matched = e->lesions.n_matched - matched0;
    img->missed = n_gt - img->matched;
    img->false_positives = n_op - img->matched;
    img->dice = img->matched ? (e->lesions.sum_dice - dice0) / (double)img->matched : (double)NAN;
done:
    if (p_masks != det->masks) free(p_masks);
    free(gt_masks), free(gt_cls), free(gt_boxes), free(p_cls), free(p_scores);
    free(p_boxes), free(mask_iou), free(box_iou), free(op_iou), free(op_cls), free(op_scores);
    return st;
}

mr_status mr_evaluation_finish(mr_evaluation *e) {
    mr_coco_result_free(&e->box);
    mr_coco_result_free(&e->mask);
    MR_TRY(mr_coco_summarize(&e->coco_box, &e->box));
    MR_TRY(mr_coco_summarize(&e->coco_mask, &e->mask));
    e->map50 = e->n_map_images ? e->sum_map50 / (double)e->n_map_images : MR_AP_UNDEFINED;
    e->map50_95 = e->n_map_images ? e->sum_map50_95 / (double)e->n_map_images : MR_AP_UNDEFINED;
    const int64_t nc = e->num_classes;
    e->n_classified = e->n_right = 0;
    for (int64_t g = 1; g < nc; g++)
        for (int64_t p = 1; p < nc; p++) {
            e->n_classified += e->lesions.confusion[g * nc + p];
            e->n_right += g == p ? e->lesions.confusion[g * nc + p] : 0;
        }
    return MR_OK;
}

/* ---- sources of detections --------------------------------------------------------------- */

mr_status mr_detect_dataset_image(mr_ctx *ctx, const mr_model *m, const mr_dataset *ds,
                                  int64_t image, float min_confidence, mr_instances *det) {
    const mr_net_config *net = &m->cfg;
    memset(det, 0, sizeof *det);
    mr_sample s;
    MR_TRY(mr_dataset_sample(ds, image, 0, &s));
    mr_ctx_reset(ctx);
    mr_tensor *images =
        mr_tensor_4d(ctx, "images", 1, net->image_max_dim, net->image_max_dim, net->image_channels);
    mr_status st = images ? MR_OK : ctx->status;
    if (st == MR_OK) {
        memcpy(images->data, s.image, sizeof(float) * (size_t)images->numel);
        st = mr_model_detect(ctx, m, images, &s.mold.geo, min_confidence, det);
    }
    mr_sample_free(&s);
    return st;
}

mr_status mr_evaluate_model(mr_evaluation *e, mr_ctx *ctx, const mr_model *m, const mr_dataset *ds,
                            int64_t limit, void (*progress)(int64_t done, int64_t total),
                            mr_eval_take_fn take, void *user) {
    const mr_annotations *ann = mr_dataset_annotations(ds);
    int64_t n = mr_dataset_size(ds);
    if (limit > 0 && limit < n) n = limit;
    mr_status st = MR_OK;
    for (int64_t i = 0; i < n && st == MR_OK; i++) {
        mr_instances det;
        st = mr_detect_dataset_image(ctx, m, ds, i, e->opt.det_threshold, &det);
        if (st == MR_OK) st = score_image(e, &ann->records[i], &det);
        if (!(st == MR_OK && take && take(user, i, &det))) mr_instances_free(&det);
        if (progress) progress(i + 1, n);
    }
    return st;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

mr_status mr_evaluate_prediction_files(mr_evaluation *e, const mr_annotations *ann,
                                       const char *pred_dir, int64_t limit, int64_t *n_missing) {
    int64_t n = ann->n;
    if (limit > 0 && limit < n) n = limit;
    if (n_missing) *n_missing = 0;
    mr_prediction_set set;
    MR_TRY(mr_prediction_set_load(&set, pred_dir));
    mr_status st = MR_OK;
    for (int64_t i = 0; i < n && st == MR_OK; i++) {
        const mr_image_record *rec = &ann->records[i];
        mr_instances det;
        memset(&det, 0, sizeof det);
        det.image_h = rec->height;
        det.image_w = rec->width;
        const char *file = mr_prediction_set_find(&set, base_name(rec->path));
        if (!file) {
            if (n_missing) (*n_missing)++;
        } else {
            st = mr_prediction_file_load(file, &det);
        }
        if (st == MR_OK) st = score_image(e, rec, &det);
        mr_instances_free(&det);
    }
    mr_prediction_set_free(&set);
    return st;
}

/* ---- writers ------------------------------------------------------------------------------- */

/* Precision-recall curves of one class: interpolated precision at the 101 recall points for
 * mask IoU 0.50 and 0.75 and box IoU 0.50, with axes, ticks, labels and a legend. */
static void svg_curves(mr_text *t, const char *name, const mr_coco_result *box,
                       const mr_coco_result *mask, int64_t c) {
    const double W = 560, H = 440, L = 70, R = 20, T = 50, B = 60;
    const double pw = W - L - R, ph = H - T - B;
    mr_text_printf(t, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    mr_text_printf(t,
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                   "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
                   W, H, W, H);
    mr_text_printf(t, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    mr_text_printf(t, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    mr_text_printf(t, "Precision-recall: ");
    for (const char *p = name; *p; p++) {
        if (*p == '&')
            mr_text_printf(t, "&amp;");
        else if (*p == '<')
            mr_text_printf(t, "&lt;");
        else if (*p == '>')
            mr_text_printf(t, "&gt;");
        else
            mr_text_printf(t, "%c", *p);
    }
    mr_text_printf(t, "</text>\n");
    mr_text_printf(t,
                   "<text x=\"%.0f\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">COCO-style, "
                   "101-point interpolated precision, %lld ground-truth lesions</text>\n",
                   W / 2, (long long)mask->n_gt[c]);
    /* Grid, ticks and tick labels every 0.1 / 0.2. */
    for (int i = 0; i <= 10; i++) {
        double v = i / 10.0, x = L + v * pw, y = T + ph - v * ph;
        mr_text_printf(t,
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n",
                       x, T, x, T + ph);
        mr_text_printf(t,
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n",
                       L, y, L + pw, y);
        if (i % 2) continue;
        mr_text_printf(t,
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
                       x, T + ph, x, T + ph + 5);
        mr_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n", x,
                       T + ph + 19, v);
        mr_text_printf(t,
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
                       L - 5, y, L, y);
        mr_text_printf(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", L - 8,
                       y + 4, v);
    }
    mr_text_printf(t,
                   "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
                   "stroke=\"black\"/>\n",
                   L, T, pw, ph);
    mr_text_printf(t, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">Recall</text>\n",
                   L + pw / 2, H - 18);
    mr_text_printf(
        t,
        "<text x=\"18\" y=\"%.0f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.0f)\">"
        "Precision</text>\n",
        T + ph / 2, T + ph / 2);
    struct {
        const mr_coco_result *r;
        int t;
        const char *label, *color, *dash;
    } curves[3] = {{mask, 0, "mask IoU 0.50", "#1f77b4", ""},
                   {mask, 5, "mask IoU 0.75", "#ff7f0e", "6,4"},
                   {box, 0, "box IoU 0.50", "#2ca02c", "2,3"}};
    if (mask->n_gt[c] == 0)
        mr_text_printf(
            t,
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#a00\">no ground truth "
            "of this class in the evaluated images</text>\n",
            L + pw / 2, T + ph / 2);
    for (int k = 0; k < 3 && mask->n_gt[c] > 0; k++) {
        const double *q =
            curves[k].r->precision + (c * MR_COCO_N_IOU + curves[k].t) * MR_COCO_N_RECALL;
        mr_text_printf(t,
                       "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s%s%s points=\"",
                       curves[k].color, curves[k].dash[0] ? " stroke-dasharray=\"" : "",
                       curves[k].dash, curves[k].dash[0] ? "\"" : "");
        for (int r = 0; r < MR_COCO_N_RECALL; r++)
            mr_text_printf(t, "%s%.1f,%.1f", r ? " " : "", L + r / 100.0 * pw, T + ph - q[r] * ph);
        mr_text_printf(t, "\"/>\n");
        double ap = 0.0;
        for (int r = 0; r < MR_COCO_N_RECALL; r++) ap += q[r];
        ap /= MR_COCO_N_RECALL;
        double ly = T + 18 + 18 * k;
        mr_text_printf(t,
                       "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
                       "stroke-width=\"2\"%s%s%s/>\n",
                       L + pw - 190, ly - 4, L + pw - 160, ly - 4, curves[k].color,
                       curves[k].dash[0] ? " stroke-dasharray=\"" : "", curves[k].dash,
                       curves[k].dash[0] ? "\"" : "");
        mr_text_printf(t, "<text x=\"%.0f\" y=\"%.0f\">%s (AP %.3f)</text>\n", L + pw - 154, ly,
                       curves[k].label, ap);
    }
    mr_text_printf(t, "</svg>\n");
}

static void json_coco(mr_text *t, const char *kind, const mr_coco_result *r, const mr_config *cfg) {
    mr_text_printf(t, "    \"%s\": {\"AP\": ", kind);
    num(t, r->mean_ap);
    mr_text_printf(t, ", \"AP50\": ");
    num(t, r->mean_ap50);
    mr_text_printf(t, ", \"AP75\": ");
    num(t, r->mean_ap75);
    mr_text_printf(t, ",\n      \"per_class\": {");
    for (int64_t c = 1; c < r->num_classes; c++) {
        mr_text_printf(t, "%s\n        ", c > 1 ? "," : "");
        mr_text_json_string(t, cfg->class_names[c]);
        mr_text_printf(t, ": {\"AP\": ");
        num(t, r->ap[c]);
        mr_text_printf(t, ", \"AP50\": ");
        num(t, r->ap50[c]);
        mr_text_printf(t, ", \"AP75\": ");
        num(t, r->ap75[c]);
        mr_text_printf(t, ", \"recall50\": ");
        num(t, r->recall[c * MR_COCO_N_IOU]);
        mr_text_printf(t, ", \"ground_truth\": %lld, \"detections\": %lld}", (long long)r->n_gt[c],
                       (long long)r->n_dets[c]);
    }
    mr_text_printf(t, "}}");
}

static bool is_benign_malignant(const mr_config *cfg) {
    if (cfg->net.num_classes != 3) return false;
    return (!strcasecmp(cfg->class_names[1], "benign") &&
            !strcasecmp(cfg->class_names[2], "malignant")) ||
           (!strcasecmp(cfg->class_names[1], "malignant") &&
            !strcasecmp(cfg->class_names[2], "benign"));
}

/* A class name as a file name part: letters, digits, '-' and '_' kept, the rest '_'. */
static void file_safe(char *out, size_t size, const char *name) {
    size_t i = 0;
    for (; name[i] && i + 1 < size; i++) {
        unsigned char c = (unsigned char)name[i];
        out[i] = (char)(isalnum(c) || c == '-' || c == '_' ? tolower(c) : '_');
    }
    out[i] = '\0';
    if (i == 0) snprintf(out, size, "class");
}

static void print_ap(FILE *out, double v) {
    if (v == MR_AP_UNDEFINED)
        fprintf(out, " %6s", "-");
    else
        fprintf(out, " %6.3f", v);
}

static double accuracy(const mr_evaluation *e) {
    return e->n_classified ? (double)e->n_right / (double)e->n_classified : MR_AP_UNDEFINED;
}

/* Worse first: more missed lesions and false positives together, then more missed, then the
 * lower AP, then the order added (the sort is made stable by the index). */
static int worse_first(const void *pa, const void *pb, const mr_eval_image *images) {
    const mr_eval_image *a = &images[*(const int64_t *)pa], *b = &images[*(const int64_t *)pb];
    int64_t ea = a->missed + a->false_positives, eb = b->missed + b->false_positives;
    if (ea != eb) return ea > eb ? -1 : 1;
    if (a->missed != b->missed) return a->missed > b->missed ? -1 : 1;
    double apa = a->ap50 == MR_AP_UNDEFINED ? 2.0 : a->ap50;
    double apb = b->ap50 == MR_AP_UNDEFINED ? 2.0 : b->ap50;
    if (apa != apb) return apa < apb ? -1 : 1;
    return *(const int64_t *)pa < *(const int64_t *)pb ? -1 : 1;
}

static const mr_eval_image *sort_images;
static int worse_first_cmp(const void *a, const void *b) {
    return worse_first(a, b, sort_images);
}

static void print_worst(const mr_evaluation *e, FILE *out) {
    int64_t n_bad = 0;
    for (int64_t i = 0; i < e->n_images; i++)
        n_bad += e->images[i].missed + e->images[i].false_positives > 0;
    if (!n_bad) {
        fprintf(out, "\nEvery lesion found and no false positives, in every image\n");
        return;
    }
    int64_t *order = malloc(sizeof *order * (size_t)e->n_images);
    if (!order) return;
    for (int64_t i = 0; i < e->n_images; i++) order[i] = i;
    sort_images = e->images;
    qsort(order, (size_t)e->n_images, sizeof *order, worse_first_cmp);
    const int64_t shown = n_bad < MR_EVAL_WORST ? n_bad : MR_EVAL_WORST;
    fprintf(out,
            "\nImages with the most missed lesions and false positives (%lld of the %lld images "
            "with any; per_image.csv in --out lists every image)\n",
            (long long)shown, (long long)n_bad);
    fprintf(out, "  %-32s %7s %6s %6s %6s %6s\n", "image", "lesions", "found", "missed", "false+",
            "Dice");
    for (int64_t k = 0; k < shown; k++) {
        const mr_eval_image *m = &e->images[order[k]];
        const char *name = strrchr(m->path, '/') ? strrchr(m->path, '/') + 1 : m->path;
        fprintf(out, "  %-32.32s %7lld %6lld %6lld %6lld", name, (long long)m->lesions,
                (long long)m->matched, (long long)m->missed, (long long)m->false_positives);
        if (isnan(m->dice))
            fprintf(out, " %6s\n", "-");
        else
            fprintf(out, " %6.3f\n", m->dice);
    }
    free(order);
}

void mr_evaluation_print(const mr_evaluation *e, const mr_config *cfg, const mr_eval_meta *meta,
                         FILE *out) {
    const mr_lesion_stats *L = &e->lesions;
    const int64_t nc = e->num_classes;
    const double op = (double)e->opt.op_threshold;
    const bool verbose = meta->verbose;
    fprintf(out, "evaluate: %lld images of %s (%lld without lesions), %s %s\n",
            (long long)e->n_images, meta->data, (long long)L->n_images_without_gt,
            meta->weights ? "weights" : "predictions",
            meta->weights ? meta->weights : meta->predictions);
    if (meta->threshold_given)
        fprintf(out, "detections: score >= %.2f (--threshold), for every number below\n", op);
    else
        fprintf(out,
                "detections: AP counts every detection (score >= 0); lesions found and missed "
                "count those scoring >= %.2f (the config's DETECTION_MIN_CONFIDENCE); "
                "--threshold T sets both\n",
                op);
    if (verbose && !meta->threshold_given)
        fprintf(out, "  (score >= 0 for AP is DETECTION_MIN_CONFIDENCE 0, as Matterport's COCO "
                     "evaluation runs)\n");
    if (e->n_gt_empty)
        fprintf(out, "note: %lld ground-truth shapes cover no pixel centre and were left out\n",
                (long long)e->n_gt_empty);

    fprintf(out, "\nAverage precision per image (Matterport's mAP), mask overlap\n");
    if (verbose)
        fprintf(out, "  method: each image's AP by Matterport's compute_ap on mask IoU, averaged "
                     "over the images with lesions; compute_matches uses the re-match fix "
                     "gt_match[j] > -1 (Matterport master's > 0 can match a lesion twice, its "
                     "issue #1692)\n");
    fprintf(out, "  mAP@0.5        ");
    print_ap(out, e->map50);
    fprintf(out, "   (mean over %lld images with lesions)\n", (long long)e->n_map_images);
    fprintf(out, "  mAP@[.5:.95]   ");
    print_ap(out, e->map50_95);
    fprintf(out, "   (the same, averaged over overlaps 0.50 to 0.95)\n");

    fprintf(out, "\nCOCO-style average precision per class, boxes and masks\n");
    if (verbose)
        fprintf(out, "  method: pycocotools' COCOeval: per class, greedy matching by score, IoU "
                     ".50:.05:.95, 101-point interpolated precision, maxDets 100; no crowd "
                     "regions or area ranges\n");
    fprintf(out, "  %-14s %5s %6s | %6s %6s %6s | %6s %6s %6s\n", "class", "GT", "dets", "box AP",
            "AP50", "AP75", "maskAP", "AP50", "AP75");
    int64_t all_gt = 0, all_dets = 0;
    for (int64_t c = 1; c < nc; c++) {
        fprintf(out, "  %-14.14s %5lld %6lld |", cfg->class_names[c], (long long)e->mask.n_gt[c],
                (long long)e->mask.n_dets[c]);
        print_ap(out, e->box.ap[c]), print_ap(out, e->box.ap50[c]), print_ap(out, e->box.ap75[c]);
        fprintf(out, " |");
        print_ap(out, e->mask.ap[c]), print_ap(out, e->mask.ap50[c]);
        print_ap(out, e->mask.ap75[c]);
        fprintf(out, "\n");
        all_gt += e->mask.n_gt[c], all_dets += e->mask.n_dets[c];
    }
    fprintf(out, "  %-14s %5lld %6lld |", "all (mean)", (long long)all_gt, (long long)all_dets);
    print_ap(out, e->box.mean_ap), print_ap(out, e->box.mean_ap50);
    print_ap(out, e->box.mean_ap75);
    fprintf(out, " |");
    print_ap(out, e->mask.mean_ap), print_ap(out, e->mask.mean_ap50);
    print_ap(out, e->mask.mean_ap75);
    fprintf(out, "\n");

    fprintf(out,
            "\nLesions (a detection finds a lesion when their masks overlap by IoU >= %.1f, "
            "whatever the class; score >= %.2f)\n",
            MR_EVAL_MATCH_IOU, op);
    fprintf(out,
            "  sensitivity %lld/%lld = %.3f; false positives per image %.2f (%lld on %lld images, "
            "%lld on the %lld without lesions)\n",
            (long long)L->n_matched, (long long)L->n_gt, mr_lesion_sensitivity(L),
            mr_lesion_fp_per_image(L), (long long)(L->n_pred - L->n_matched),
            (long long)L->n_images, (long long)L->n_fp_without_gt,
            (long long)L->n_images_without_gt);
    if (L->n_matched)
        fprintf(out, "  found lesions: mean Dice %.3f, mean IoU %.3f\n", mr_lesion_mean_dice(L),
                mr_lesion_mean_iou(L));
    else
        fprintf(out, "  found lesions: none, so no Dice or IoU\n");
    fprintf(out, "  confusion (rows: ground truth, columns: predicted)\n  %-14s", "");
    for (int64_t p = 1; p < nc; p++) fprintf(out, " %10.10s", cfg->class_names[p]);
    fprintf(out, " %10s\n", "missed");
    for (int64_t g = 1; g < nc; g++) {
        fprintf(out, "  %-14.14s", cfg->class_names[g]);
        for (int64_t p = 1; p < nc; p++)
            fprintf(out, " %10lld", (long long)L->confusion[g * nc + p]);
        fprintf(out, " %10lld\n", (long long)L->confusion[g * nc]);
    }
    fprintf(out, "  %-14s", "false positive");
    for (int64_t p = 1; p < nc; p++) fprintf(out, " %10lld", (long long)L->confusion[p]);
    fprintf(out, "\n");
    const char *acc_name =
        is_benign_malignant(cfg) ? "benign/malignant accuracy" : "class accuracy";
    char acc_text[64] = "n/a";
    if (e->n_classified) snprintf(acc_text, sizeof acc_text, "%.1f%%", 100.0 * accuracy(e));
    fprintf(out, "  %s %lld/%lld = %s (of the lesions found)\n", acc_name, (long long)e->n_right,
            (long long)e->n_classified, acc_text);
    if (e->images) print_worst(e, out);

    if (!meta->compare_paper) return;
    fprintf(out, "\nSeed paper: Chiao et al., Medicine 2019 (307 sonograms of 80 patients; its "
                 "exact protocol is not published, compare with care)\n");
    fprintf(out, "  %-34s %8s %8s\n", "", "theirs", "ours");
    fprintf(out, "  %-34s %8.2f ", "mAP (detection + segmentation)", SEED_MAP);
    if (e->map50 == MR_AP_UNDEFINED)
        fprintf(out, "%8s", "n/a");
    else
        fprintf(out, "%8.3f", e->map50);
    fprintf(out, "   ours: mAP@0.5, per image, mask overlap\n");
    fprintf(out, "  %-34s %7.0f%% %8s   ours: lesions found, score >= %.2f\n", acc_name,
            100.0 * SEED_ACCURACY, acc_text, op);
}

/* per_image.csv: one row per image, in the order scored. */
static mr_status write_per_image(const mr_evaluation *e, const char *path) {
    mr_text csv = {0};
    mr_text_printf(&csv, "image,lesions,detections,found,missed,false_positives,dice,ap50\n");
    for (int64_t i = 0; i < e->n_images; i++) {
        const mr_eval_image *m = &e->images[i];
        /* RFC 4180: quoted, inner quotes doubled. */
        mr_text_printf(&csv, "\"");
        for (const char *p = m->path; *p; p++) mr_text_printf(&csv, *p == '"' ? "\"\"" : "%c", *p);
        mr_text_printf(&csv, "\",%lld,%lld,%lld,%lld,%lld,", (long long)m->lesions,
                       (long long)m->detections, (long long)m->matched, (long long)m->missed,
                       (long long)m->false_positives);
        if (!isnan(m->dice)) mr_text_printf(&csv, "%.6g", m->dice);
        mr_text_printf(&csv, ",");
        if (m->ap50 != MR_AP_UNDEFINED) mr_text_printf(&csv, "%.6g", m->ap50);
        mr_text_printf(&csv, "\n");
    }
    mr_status st = mr_text_write_atomic(&csv, path);
    mr_text_free(&csv);
    return st;
}

mr_status mr_evaluation_write(const mr_evaluation *e, const mr_config *cfg,
                              const mr_eval_meta *meta, const char *out_dir) {
    const mr_lesion_stats *L = &e->lesions;
    const int64_t nc = e->num_classes;
    const bool given = meta->threshold_given;
    MR_TRY(mr_make_dirs(out_dir));
    mr_text json = {0};
    mr_text *t = &json;
    mr_text_printf(t, "{\n  \"format\": \"mrcnn-evaluation\",\n  \"version\": 1,\n  \"config\": ");
    mr_text_json_string(t, meta->config);
    mr_text_printf(t, meta->weights ? ",\n  \"weights\": " : ",\n  \"predictions\": ");
    mr_text_json_string(t, meta->weights ? meta->weights : meta->predictions);
    mr_text_printf(t, ",\n  \"data\": ");
    mr_text_json_string(t, meta->data);
    mr_text_printf(t, ",\n  \"images\": %lld,\n  \"images_without_lesions\": %lld,\n",
                   (long long)e->n_images, (long long)L->n_images_without_gt);
    mr_text_printf(t,
                   "  \"detection_min_confidence\": %.6g,\n  \"detection_threshold_source\": %s,\n",
                   (double)e->opt.det_threshold,
                   given ? "\"--threshold\"" : "\"default 0, as Matterport's COCO evaluation\"");
    mr_text_printf(t, "  \"operating_point\": %.6g,\n  \"operating_point_source\": %s,\n",
                   (double)e->opt.op_threshold,
                   given ? "\"--threshold\"" : "\"the config's DETECTION_MIN_CONFIDENCE\"");
    mr_text_printf(t, "  \"matterport\": {\"mAP50\": ");
    num(t, e->map50);
    mr_text_printf(t, ", \"mAP50_95\": ");
    num(t, e->map50_95);
    mr_text_printf(t,
                   ", \"images_averaged\": %lld, \"iou\": \"mask\",\n    \"note\": \"each "
                   "image's average precision, averaged over the images with lesions; each "
                   "lesion is matched at most once\"},\n",
                   (long long)e->n_map_images);
    mr_text_printf(t, "  \"coco\": {\n    \"method\": \"pycocotools COCOeval: per class, greedy "
                      "matching by score, IoU 0.50:0.05:0.95, 101-point interpolated precision, "
                      "maxDets 100; no crowd regions or area ranges\",\n");
    json_coco(t, "bbox", &e->box, cfg);
    mr_text_printf(t, ",\n");
    json_coco(t, "segm", &e->mask, cfg);
    mr_text_printf(t,
                   "\n  },\n  \"lesions\": {\"iou_threshold\": %.2f, \"score_threshold\": %.6g, "
                   "\"ground_truth\": %lld, \"predictions\": %lld, \"matched\": %lld,\n",
                   MR_EVAL_MATCH_IOU, (double)e->opt.op_threshold, (long long)L->n_gt,
                   (long long)L->n_pred, (long long)L->n_matched);
    mr_text_printf(t, "    \"sensitivity\": ");
    num(t, mr_lesion_sensitivity(L));
    mr_text_printf(t, ", \"fp_per_image\": ");
    num(t, mr_lesion_fp_per_image(L));
    mr_text_printf(t, ", \"fp_on_images_without_lesions\": %lld,\n    \"mean_dice\": ",
                   (long long)L->n_fp_without_gt);
    num(t, L->n_matched ? mr_lesion_mean_dice(L) : MR_AP_UNDEFINED);
    mr_text_printf(t, ", \"mean_iou\": ");
    num(t, L->n_matched ? mr_lesion_mean_iou(L) : MR_AP_UNDEFINED);
    mr_text_printf(t, ", \"accuracy\": ");
    num(t, accuracy(e));
    mr_text_printf(t, ",\n    \"confusion\": {\"labels\": [\"background\"");
    for (int64_t c = 1; c < nc; c++) {
        mr_text_printf(t, ", ");
        mr_text_json_string(t, cfg->class_names[c]);
    }
    mr_text_printf(t, "], \"rows\": \"ground truth\", \"columns\": \"predicted\", \"note\": "
                      "\"row 0: unmatched predictions (false positives), column 0: unmatched "
                      "ground truth (missed)\",\n      \"matrix\": [");
    for (int64_t g = 0; g < nc; g++) {
        mr_text_printf(t, "%s[", g ? ", " : "");
        for (int64_t p = 0; p < nc; p++)
            mr_text_printf(t, "%s%lld", p ? ", " : "", (long long)L->confusion[g * nc + p]);
        mr_text_printf(t, "]");
    }
    mr_text_printf(t,
                   "]}},\n  \"seed_paper\": {\"source\": \"Chiao et al., Medicine "
                   "2019;98(19):e15200\", \"mAP\": %.2f, \"accuracy\": %.2f, \"ours_mAP\": ",
                   SEED_MAP, SEED_ACCURACY);
    num(t, e->map50);
    mr_text_printf(t, ", \"ours_accuracy\": ");
    num(t, accuracy(e));
    mr_text_printf(t, "},\n  \"pr_curves\": {");
    mr_status st = MR_OK;
    char path[4200];
    for (int64_t c = 1; c < nc && st == MR_OK; c++) {
        char safe[64];
        file_safe(safe, sizeof safe, cfg->class_names[c]);
        snprintf(path, sizeof path, "%s/pr_%s.svg", out_dir, safe);
        mr_text svg = {0};
        svg_curves(&svg, cfg->class_names[c], &e->box, &e->mask, c);
        st = mr_text_write_atomic(&svg, path);
        mr_text_free(&svg);
        mr_text_printf(t, "%s", c > 1 ? ", " : "");
        mr_text_json_string(t, cfg->class_names[c]);
        mr_text_printf(t, ": \"pr_%s.svg\"", safe);
    }
    mr_text_printf(t, "}");
    mr_text_printf(t, ",\n  \"per_image\": \"per_image.csv\"");
    mr_text_printf(t, "\n}\n");
    if (st == MR_OK) {
        snprintf(path, sizeof path, "%s/per_image.csv", out_dir);
        st = write_per_image(e, path);
    }
    if (st == MR_OK) {
        snprintf(path, sizeof path, "%s/evaluation.json", out_dir);
        st = mr_text_write_atomic(t, path);
    }
    mr_text_free(&json);
    return st;
}

/* ---- a whole evaluation -------------------------------------------------------------------- */

mr_status mr_config_dataset_from_weights(mr_config *cfg, const char *weights_path, bool *taken) {
    *taken = false;
    if (cfg->train_data[0] || cfg->val_data[0]) return MR_OK;
    mr_weights_index ix;
    MR_TRY(mr_weights_index_read(weights_path, &ix));
    mr_config *run = NULL;
    mr_status st = MR_OK;
    if (ix.config_json && ix.config_json[0]) {
        char origin[1200];
        snprintf(origin, sizeof origin, "embedded in %s", weights_path);
        run = malloc(sizeof *run);
        if (!run) st = mr_fail(MR_ERR_NOMEM, "out of memory");
        if (st == MR_OK) {
            mr_config_defaults(run);
            st = mr_config_parse(ix.config_json, origin, run);
        }
    }
    if (st == MR_OK && run && (run->train_data[0] || run->val_data[0])) {
        memcpy(cfg->train_data, run->train_data, sizeof cfg->train_data);
        memcpy(cfg->val_data, run->val_data, sizeof cfg->val_data);
        if (!cfg->image_root[0]) memcpy(cfg->image_root, run->image_root, sizeof cfg->image_root);
        /* The held-out share is chosen by these two: the same images as training held out. */
        cfg->seed = run->seed;
        cfg->validation_split = run->validation_split;
        *taken = true;
    }
    free(run);
    mr_weights_index_free(&ix);
    return st;
}

void mr_eval_run_free(mr_eval_run *run) {
    mr_evaluation_free(&run->e);
    memset(run, 0, sizeof *run);
}

mr_status mr_evaluate_run(const mr_eval_request *r, mr_eval_run *run) {
    memset(run, 0, sizeof *run);
    mr_config *cfg = &run->cfg;
    mr_model model = {0};
    mr_ctx ctx = {0};
    mr_dataset *ds = NULL;
    bool model_ok = false;
    mr_status st = MR_OK;
    if (r->weights) {
        const mr_inference_options io = {.allow_damaged = r->allow_damaged,
                                         .fold_batchnorms = true};
        st = mr_inference_load_opts(r->weights, r->config, &io, cfg, &model, NULL);
        model_ok = st == MR_OK;
        if (st == MR_OK && !r->data.data)
            st = mr_config_dataset_from_weights(cfg, r->weights, &run->dataset_from_weights);
        if (st == MR_OK && run->dataset_from_weights)
            mr_info("evaluate: %s names no DATASET; using the data of the run recorded in %s",
                    r->config ? r->config : "the config", r->weights);
    } else {
        mr_config_defaults(cfg);
        st = mr_config_load(r->config, cfg);
    }
    /* --data means what it means to train: the images scored are the ones training held out
     * (val/, or the seeded share), unless the request's part says otherwise. */
    mr_data_summary used = {0};
    if (st == MR_OK) st = mr_data_resolve(cfg, &r->data);
    const bool given = r->threshold >= 0.0;
    const mr_eval_options eo = {.det_threshold = given ? (float)r->threshold : 0.0f,
                                .op_threshold = given ? (float)r->threshold
                                                      : cfg->net.detection_min_confidence};
    if (st == MR_OK) st = mr_data_open_part(cfg, r->part, &ds, &used);
    if (st == MR_OK && r->opened) r->opened(r->user, &used);
    if (st == MR_OK)
        snprintf(run->data, sizeof run->data, "%s", mr_dataset_annotations(ds)->source);
    if (st == MR_OK) st = mr_evaluation_init(&run->e, cfg->net.num_classes, &eo);
    if (st == MR_OK && r->weights) {
        st = mr_ctx_init(&ctx, (size_t)cfg->arena_mb << 20);
        if (st == MR_OK) mr_ctx_keep_kernels(&ctx);
        if (st == MR_OK && r->bf16) st = mr_ctx_use_bf16(&ctx);
        if (st == MR_OK)
            st = mr_evaluate_model(&run->e, &ctx, &model, ds, r->limit, r->progress, NULL, NULL);
    } else if (st == MR_OK) {
        st = mr_evaluate_prediction_files(&run->e, mr_dataset_annotations(ds), r->predictions,
                                          r->limit, &run->missing);
    }
    if (st == MR_OK) st = mr_evaluation_finish(&run->e);
    run->meta = (mr_eval_meta){.data = run->data,
                               .weights = r->weights,
                               .predictions = r->predictions,
                               .config = r->config ? r->config : r->weights,
                               .threshold_given = given};
    if (ds) mr_dataset_close(ds);
    mr_ctx_free(&ctx);
    if (model_ok) mr_model_free(&model);
    return st;
}

/* `mrcnn evaluate`: runs a trained model over a validation set and reports Matterport's per-image
 * mAP, COCO-style box and mask AP, lesion-level Dice/IoU, confusion matrix, sensitivity and FP
 * per image, next to the seed paper's numbers; writes evaluation.json and pr_<class>.svg. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/file.h"
#include "../layers/inference.h"
#include "../train/config.h"
#include "../train/dataset.h"
#include "../train/metrics.h"
#include "../train/weights.h"
#include "cli.h"

/* The seed paper (Chiao et al., Medicine 2019;98(19):e15200): 307 sonograms of 80 patients. */
#define SEED_MAP      0.75
#define SEED_ACCURACY 0.85

#define MATCH_IOU 0.5 /* lesion-level matching and Matterport's mAP threshold */

/* ---- a growable text buffer ------------------------------------------------------------------ */

typedef struct {
    char *s;
    size_t n, cap;
    bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    if (t->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(t->s ? t->s + t->n : NULL, t->s ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            t->failed = true;
            return;
        }
        if (t->s && t->n + (size_t)w < t->cap) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = t->cap ? t->cap : 4096;
        while (cap <= t->n + (size_t)w) cap *= 2;
        char *g = realloc(t->s, cap);
        if (!g) {
            t->failed = true;
            return;
        }
        t->s = g, t->cap = cap;
    }
}

/* A JSON number, or null for an undefined value. */
static void put_num(text *t, double v) {
    if (v == MR_AP_UNDEFINED || !isfinite(v))
        put(t, "null");
    else
        put(t, "%.6g", v);
}

static void put_str(text *t, const char *s) {
    put(t, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            put(t, "\\%c", c);
        else if (c < 0x20)
            put(t, "\\u%04x", c);
        else
            put(t, "%c", c);
    }
    put(t, "\"");
}

/* Temp file in the same folder, fsync, rename: a report is either whole or absent. */
static mr_status write_file(const char *path, const text *t) {
    if (t->failed) return mr_fail(MR_ERR_NOMEM, "%s: out of memory building the file", path);
    return mr_write_file_atomic(path, t->s, t->n, 0644);
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

/* ---- one image ------------------------------------------------------------------------------- */

typedef struct {
    mr_coco_eval coco_box, coco_mask;
    mr_lesion_stats lesions;
    double sum_map50, sum_map_range;
    int64_t n_map_images; /* images with ground truth: the per-image AP is defined */
    int64_t n_gt_empty;   /* GT shapes whose mask has no pixel at the original size */
} totals;

static mr_status score_image(totals *T, const mr_image_record *rec, const mr_detections *det,
                             float op_threshold) {
    const int64_t H = rec->height, W = rec->width, npix = H * W;
    if (det->n > 0 && (det->image_h != H || det->image_w != W))
        return mr_fail(MR_ERR_FORMAT, "%s: detections are %lldx%lld but the image is %lldx%lld",
                       rec->path, (long long)det->image_w, (long long)det->image_h, (long long)W,
                       (long long)H);
    /* Ground truth at the original size: the shapes rasterised by pixel centres, boxes from
     * the masks (extract_bboxes), shapes that cover no pixel centre dropped. */
    int64_t n_gt = 0, np = det->n;
    uint8_t *gt_masks = calloc((size_t)(rec->n_instances + 1), (size_t)npix);
    int64_t *gt_cls = malloc(sizeof(int64_t) * (size_t)(rec->n_instances + 1));
    double *gt_boxes = malloc(sizeof(double) * 4 * (size_t)(rec->n_instances + 1));
    double *p_boxes = malloc(sizeof(double) * 4 * (size_t)(np + 1));
    double *mask_iou = malloc(sizeof(double) * (size_t)(np * rec->n_instances + 1));
    double *box_iou = malloc(sizeof(double) * (size_t)(np * rec->n_instances + 1));
    double *op_iou = malloc(sizeof(double) * (size_t)(np * rec->n_instances + 1));
    int64_t *op_cls = malloc(sizeof(int64_t) * (size_t)(np + 1));
    float *op_scores = malloc(sizeof(float) * (size_t)(np + 1));
    mr_status st = MR_OK;
    if (!gt_masks || !gt_cls || !gt_boxes || !p_boxes || !mask_iou || !box_iou || !op_iou ||
        !op_cls || !op_scores) {
        st = mr_fail(MR_ERR_NOMEM, "%s: out of memory scoring the image", rec->path);
        goto done;
    }
    for (int64_t k = 0; k < rec->n_instances; k++) {
        uint8_t *m = gt_masks + n_gt * npix;
        if (mr_shape_rasterize(&rec->instances[k].shape, m, (int)W, (int)H, 1) == 0) {
            T->n_gt_empty++;
            continue;
        }
        gt_cls[n_gt++] = rec->instances[k].class_id;
    }
    mr_masks_to_boxes(gt_boxes, gt_masks, n_gt, H, W);
    for (int64_t i = 0; i < 4 * np; i++) p_boxes[i] = (double)det->boxes[i];

    if ((st = mr_mask_iou_matrix(mask_iou, det->masks, np, gt_masks, n_gt, npix)) != MR_OK)
        goto done;
    mr_box_iou_matrix_f64(box_iou, p_boxes, np, gt_boxes, n_gt);

    if (n_gt > 0) {
        double ap50, ap_range;
        if ((st = mr_compute_ap(&ap50, mask_iou, gt_cls, n_gt, det->class_ids, det->scores, np,
                                MATCH_IOU, false)) != MR_OK ||
            (st = mr_compute_ap_range(&ap_range, mask_iou, gt_cls, n_gt, det->class_ids,
                                      det->scores, np, false)) != MR_OK)
            goto done;
        T->sum_map50 += ap50;
        T->sum_map_range += ap_range;
        T->n_map_images++;
    }
    if ((st = mr_coco_add_image(&T->coco_box, box_iou, gt_cls, n_gt, det->class_ids, det->scores,
                                np)) != MR_OK ||
        (st = mr_coco_add_image(&T->coco_mask, mask_iou, gt_cls, n_gt, det->class_ids, det->scores,
                                np)) != MR_OK)
        goto done;

    /* Lesion level at the operating point: only detections scoring at least op_threshold. */
    int64_t n_op = 0;
    for (int64_t i = 0; i < np; i++) {
        if (det->scores[i] < op_threshold) continue;
        memcpy(op_iou + n_op * n_gt, mask_iou + i * n_gt, sizeof(double) * (size_t)n_gt);
        op_cls[n_op] = det->class_ids[i];
        op_scores[n_op] = det->scores[i];
        n_op++;
    }
    st = mr_lesion_stats_add(&T->lesions, op_iou, gt_cls, n_gt, op_cls, op_scores, n_op, MATCH_IOU);
done:
    free(gt_masks), free(gt_cls), free(gt_boxes), free(p_boxes), free(mask_iou), free(box_iou);
    free(op_iou), free(op_cls), free(op_scores);
    return st;
}

/* ---- output ---------------------------------------------------------------------------------- */

static void print_ap(double v) {
    if (v == MR_AP_UNDEFINED)
        printf(" %6s", "-");
    else
        printf(" %6.3f", v);
}

/* Precision-recall curves of one class: interpolated precision at the 101 recall points for
 * mask IoU 0.50 and 0.75 and box IoU 0.50, with axes, ticks, labels and a legend. */
static void svg_curves(text *t, const char *name, const mr_coco_result *box,
                       const mr_coco_result *mask, int64_t c) {
    const double W = 560, H = 440, L = 70, R = 20, T = 50, B = 60;
    const double pw = W - L - R, ph = H - T - B;
    put(t, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    put(t,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
        "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
        W, H, W, H);
    put(t, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    put(t, "<text x=\"%.0f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">", W / 2);
    put(t, "Precision-recall: ");
    for (const char *p = name; *p; p++) {
        if (*p == '&')
            put(t, "&amp;");
        else if (*p == '<')
            put(t, "&lt;");
        else if (*p == '>')
            put(t, "&gt;");
        else
            put(t, "%c", *p);
    }
    put(t, "</text>\n");
    put(t,
        "<text x=\"%.0f\" y=\"40\" text-anchor=\"middle\" fill=\"#555\">COCO-style, "
        "101-point interpolated precision, %lld ground-truth lesions</text>\n",
        W / 2, (long long)mask->n_gt[c]);
    /* Grid, ticks and tick labels every 0.1 / 0.2. */
    for (int i = 0; i <= 10; i++) {
        double v = i / 10.0, x = L + v * pw, y = T + ph - v * ph;
        put(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", x, T, x,
            T + ph);
        put(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", L, y,
            L + pw, y);
        if (i % 2) continue;
        put(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", x,
            T + ph, x, T + ph + 5);
        put(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n", x, T + ph + 19,
            v);
        put(t, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n", L - 5,
            y, L, y);
        put(t, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", L - 8, y + 4, v);
    }
    put(t,
        "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
        "stroke=\"black\"/>\n",
        L, T, pw, ph);
    put(t, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">Recall</text>\n", L + pw / 2,
        H - 18);
    put(t,
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
        put(t,
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#a00\">no ground truth "
            "of this class in the evaluated images</text>\n",
            L + pw / 2, T + ph / 2);
    for (int k = 0; k < 3 && mask->n_gt[c] > 0; k++) {
        const double *q =
            curves[k].r->precision + (c * MR_COCO_N_IOU + curves[k].t) * MR_COCO_N_RECALL;
        put(t, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s%s%s points=\"",
            curves[k].color, curves[k].dash[0] ? " stroke-dasharray=\"" : "", curves[k].dash,
            curves[k].dash[0] ? "\"" : "");
        for (int r = 0; r < MR_COCO_N_RECALL; r++)
            put(t, "%s%.1f,%.1f", r ? " " : "", L + r / 100.0 * pw, T + ph - q[r] * ph);
        put(t, "\"/>\n");
        double ap = 0.0;
        for (int r = 0; r < MR_COCO_N_RECALL; r++) ap += q[r];
        ap /= MR_COCO_N_RECALL;
        double ly = T + 18 + 18 * k;
        put(t,
            "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" "
            "stroke-width=\"2\"%s%s%s/>\n",
            L + pw - 190, ly - 4, L + pw - 160, ly - 4, curves[k].color,
            curves[k].dash[0] ? " stroke-dasharray=\"" : "", curves[k].dash,
            curves[k].dash[0] ? "\"" : "");
        put(t, "<text x=\"%.0f\" y=\"%.0f\">%s (AP %.3f)</text>\n", L + pw - 154, ly,
            curves[k].label, ap);
    }
    put(t, "</svg>\n");
}

static void json_coco(text *t, const char *kind, const mr_coco_result *r, const mr_config *cfg) {
    put(t, "    \"%s\": {\"AP\": ", kind);
    put_num(t, r->mean_ap);
    put(t, ", \"AP50\": ");
    put_num(t, r->mean_ap50);
    put(t, ", \"AP75\": ");
    put_num(t, r->mean_ap75);
    put(t, ",\n      \"per_class\": {");
    for (int64_t c = 1; c < r->num_classes; c++) {
        put(t, "%s\n        ", c > 1 ? "," : "");
        put_str(t, cfg->class_names[c]);
        put(t, ": {\"AP\": ");
        put_num(t, r->ap[c]);
        put(t, ", \"AP50\": ");
        put_num(t, r->ap50[c]);
        put(t, ", \"AP75\": ");
        put_num(t, r->ap75[c]);
        put(t, ", \"recall50\": ");
        put_num(t, r->recall[c * MR_COCO_N_IOU]);
        put(t, ", \"ground_truth\": %lld, \"detections\": %lld}", (long long)r->n_gt[c],
            (long long)r->n_dets[c]);
    }
    put(t, "}}");
}

static bool is_benign_malignant(const mr_config *cfg) {
    if (cfg->net.num_classes != 3) return false;
    return (!strcasecmp(cfg->class_names[1], "benign") &&
            !strcasecmp(cfg->class_names[2], "malignant")) ||
           (!strcasecmp(cfg->class_names[1], "malignant") &&
            !strcasecmp(cfg->class_names[2], "benign"));
}

/* ---- the verb -------------------------------------------------------------------------------- */

int cmd_evaluate(int argc, char **argv) {
    const char *weights = NULL, *config_path = NULL, *data = NULL, *out_dir = NULL;
    double threshold = -1.0;
    long limit = 0;
    bool quiet = false;
    mr_opt opts[] = {
        {"--weights", MR_OPT_STRING, &weights,
         "trained weights: an export or a checkpoint (required)"},
        {"--config", MR_OPT_STRING, &config_path,
         "config JSON the model was trained with (required)"},
        {"--data", MR_OPT_STRING, &data,
         "annotation file or folder (default: the config's DATASET.VAL)"},
        {"--threshold", MR_OPT_DOUBLE, &threshold,
         "keep detections scoring >= T (default 0, as Matterport's COCO evaluation)"},
        {"--out", MR_OPT_STRING, &out_dir, "folder for evaluation.json and pr_<class>.svg"},
        {"--limit", MR_OPT_INT, &limit, "evaluate only the first N images"},
        {"--quiet", MR_OPT_FLAG, &quiet, "no progress line"},
    };
    int code = 0;
    if (!mr_parse_args("evaluate",
                       "--weights W --config C [--data PATH] [--threshold T] [--out DIR]", argc,
                       argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!weights || !config_path) {
        fprintf(stderr, "mrcnn evaluate: --weights FILE and --config FILE are required\n");
        return 2;
    }
    if (threshold != -1.0 && !(threshold >= 0.0 && threshold <= 1.0)) {
        fprintf(stderr, "mrcnn evaluate: --threshold must be in [0, 1], got %g\n", threshold);
        return 2;
    }
    if (limit < 0) {
        fprintf(stderr, "mrcnn evaluate: --limit must be positive, got %ld\n", limit);
        return 2;
    }

    mr_config *cfg = malloc(sizeof *cfg);
    mr_model model;
    memset(&model, 0, sizeof model);
    mr_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    bool model_ok = false, ctx_ok = false;
    mr_dataset *ds = NULL;
    totals T;
    memset(&T, 0, sizeof T);
    mr_coco_result box_r, mask_r;
    memset(&box_r, 0, sizeof box_r);
    memset(&mask_r, 0, sizeof mask_r);
    mr_load_report report;
    memset(&report, 0, sizeof report);
    text json = {0};
    mr_status st = cfg ? MR_OK : mr_fail(MR_ERR_NOMEM, "out of memory");
    if (st == MR_OK) {
        mr_config_defaults(cfg);
        st = mr_config_load(config_path, cfg);
    }
    if (st != MR_OK) goto done;
    if (!data) data = cfg->val_data;
    if (!data[0]) {
        st = mr_fail(MR_ERR_ARG, "no --data and %s has no DATASET.VAL", config_path);
        goto done;
    }
    const bool given = threshold >= 0.0;
    const float det_threshold = given ? (float)threshold : 0.0f;
    const float op_threshold = given ? (float)threshold : cfg->net.detection_min_confidence;
    const int64_t nc = cfg->net.num_classes;
    if (out_dir && (st = mr_make_dirs(out_dir)) != MR_OK) goto done;

    if ((st = mr_dataset_open(&ds, data, cfg, false)) != MR_OK) goto done;
    if ((st = mr_model_init(&model, &cfg->net)) != MR_OK) goto done;
    model_ok = true;
    mr_weights_load_options wo = {0};
    st = mr_weights_load(weights, &model.params, &wo, &report);
    if (st == MR_OK && report.n[MR_LOAD_MISSING] + report.n[MR_LOAD_EXCLUDED] > 0)
        st = mr_fail(MR_ERR_FORMAT,
                     "%s: %d layers of the model are not in the weights (%d missing, %d left out "
                     "for another class count); evaluating them untrained would measure noise. "
                     "Use the weights the config was trained into (a checkpoint or export)",
                     weights, report.n[MR_LOAD_MISSING] + report.n[MR_LOAD_EXCLUDED],
                     report.n[MR_LOAD_MISSING], report.n[MR_LOAD_EXCLUDED]);
    if (st != MR_OK) {
        mr_load_report_print(&report, stderr);
        goto done;
    }
    if ((st = mr_ctx_init(&ctx, (size_t)cfg->arena_mb << 20)) != MR_OK) goto done;
    ctx_ok = true;
    if ((st = mr_coco_init(&T.coco_box, nc)) != MR_OK ||
        (st = mr_coco_init(&T.coco_mask, nc)) != MR_OK ||
        (st = mr_lesion_stats_init(&T.lesions, nc)) != MR_OK)
        goto done;

    const mr_annotations *ann = mr_dataset_annotations(ds);
    int64_t n_images = mr_dataset_size(ds);
    if (limit > 0 && limit < n_images) n_images = limit;
    const mr_net_config *net = &cfg->net;
    for (int64_t i = 0; i < n_images && st == MR_OK; i++) {
        mr_sample s;
        if ((st = mr_dataset_sample(ds, i, 0, &s)) != MR_OK) break;
        mr_ctx_reset(&ctx);
        mr_tensor *images = mr_tensor_4d(&ctx, "images", 1, net->image_max_dim, net->image_max_dim,
                                         net->image_channels);
        mr_detections det;
        memset(&det, 0, sizeof det);
        if (!images) {
            st = ctx.status;
        } else {
            memcpy(images->data, s.image, sizeof(float) * (size_t)images->numel);
            st = mr_model_detect(&ctx, &model, images, &s.mold.geo, det_threshold, &det);
        }
        if (st == MR_OK) st = score_image(&T, &ann->records[i], &det, op_threshold);
        mr_detections_free(&det);
        mr_sample_free(&s);
        if (!quiet && isatty(STDERR_FILENO))
            fprintf(stderr, "\revaluating %lld/%lld", (long long)(i + 1), (long long)n_images);
    }
    if (!quiet && isatty(STDERR_FILENO)) fprintf(stderr, "\n");
    if (st != MR_OK) goto done;
    if ((st = mr_coco_summarize(&T.coco_box, &box_r)) != MR_OK ||
        (st = mr_coco_summarize(&T.coco_mask, &mask_r)) != MR_OK)
        goto done;

    /* ---- the terminal table ---- */
    const mr_lesion_stats *L = &T.lesions;
    double map50 = T.n_map_images ? T.sum_map50 / (double)T.n_map_images : MR_AP_UNDEFINED;
    double map_range = T.n_map_images ? T.sum_map_range / (double)T.n_map_images : MR_AP_UNDEFINED;
    printf("evaluate: %lld images of %s (%lld without lesions), weights %s\n", (long long)n_images,
           data, (long long)L->n_images_without_gt, weights);
    if (given)
        printf("detections: score >= %.2f (--threshold), for every number below\n", threshold);
    else
        printf("detections: score >= 0 for AP (DETECTION_MIN_CONFIDENCE 0, as Matterport's COCO "
               "evaluation; --threshold T to change); lesion-level numbers at the config's "
               "operating point, score >= %.2f (DETECTION_MIN_CONFIDENCE)\n",
               (double)op_threshold);
    if (T.n_gt_empty)
        printf("note: %lld ground-truth shapes cover no pixel centre and were left out\n",
               (long long)T.n_gt_empty);

    printf("\nMatterport per-image AP, mask IoU (compute_matches with the re-match fix "
           "gt_match[j] > -1; master's > 0 can match a GT twice, issue #1692)\n");
    printf("  mAP@0.5        ");
    print_ap(map50);
    printf("   (mean over %lld images with lesions)\n", (long long)T.n_map_images);
    printf("  mAP@[.5:.95]   ");
    print_ap(map_range);
    printf("   (compute_ap_range)\n");

    printf("\nCOCO-style AP (pycocotools' method: per class, greedy matching by score, IoU "
           ".50:.05:.95, 101-point interpolated precision, maxDets 100; no crowd regions or "
           "area ranges)\n");
    printf("  %-14s %5s %6s | %6s %6s %6s | %6s %6s %6s\n", "class", "GT", "dets", "box AP", "AP50",
           "AP75", "maskAP", "AP50", "AP75");
    int64_t all_gt = 0, all_dets = 0;
    for (int64_t c = 1; c < nc; c++) {
        printf("  %-14.14s %5lld %6lld |", cfg->class_names[c], (long long)mask_r.n_gt[c],
               (long long)mask_r.n_dets[c]);
        print_ap(box_r.ap[c]), print_ap(box_r.ap50[c]), print_ap(box_r.ap75[c]);
        printf(" |");
        print_ap(mask_r.ap[c]), print_ap(mask_r.ap50[c]), print_ap(mask_r.ap75[c]);
        printf("\n");
        all_gt += mask_r.n_gt[c], all_dets += mask_r.n_dets[c];
    }
    printf("  %-14s %5lld %6lld |", "all (mean)", (long long)all_gt, (long long)all_dets);
    print_ap(box_r.mean_ap), print_ap(box_r.mean_ap50), print_ap(box_r.mean_ap75);
    printf(" |");
    print_ap(mask_r.mean_ap), print_ap(mask_r.mean_ap50), print_ap(mask_r.mean_ap75);
    printf("\n");

    printf("\nLesions (class-agnostic matching at mask IoU >= %.1f, score >= %.2f)\n", MATCH_IOU,
           (double)op_threshold);
    printf("  sensitivity %lld/%lld = %.3f; false positives per image %.2f (%lld on %lld images, "
           "%lld on the %lld without lesions)\n",
           (long long)L->n_matched, (long long)L->n_gt, mr_lesion_sensitivity(L),
           mr_lesion_fp_per_image(L), (long long)(L->n_pred - L->n_matched), (long long)L->n_images,
           (long long)L->n_fp_without_gt, (long long)L->n_images_without_gt);
    if (L->n_matched)
        printf("  matched lesions: mean Dice %.3f, mean IoU %.3f\n", mr_lesion_mean_dice(L),
               mr_lesion_mean_iou(L));
    else
        printf("  matched lesions: none, so no Dice or IoU\n");
    printf("  confusion (rows: ground truth, columns: predicted)\n  %-14s", "");
    for (int64_t p = 1; p < nc; p++) printf(" %10.10s", cfg->class_names[p]);
    printf(" %10s\n", "missed");
    for (int64_t g = 1; g < nc; g++) {
        printf("  %-14.14s", cfg->class_names[g]);
        for (int64_t p = 1; p < nc; p++) printf(" %10lld", (long long)L->confusion[g * nc + p]);
        printf(" %10lld\n", (long long)L->confusion[g * nc]);
    }
    printf("  %-14s", "false positive");
    for (int64_t p = 1; p < nc; p++) printf(" %10lld", (long long)L->confusion[p]);
    printf("\n");
    const bool bm = is_benign_malignant(cfg);
    int64_t right = 0, matched_valid = 0;
    for (int64_t g = 1; g < nc; g++)
        for (int64_t p = 1; p < nc; p++) {
            matched_valid += L->confusion[g * nc + p];
            right += g == p ? L->confusion[g * nc + p] : 0;
        }
    double acc = mr_lesion_accuracy(L);
    const char *acc_name = bm ? "benign/malignant accuracy" : "class accuracy";
    char acc_text[64];
    if (matched_valid)
        snprintf(acc_text, sizeof acc_text, "%.1f%%", 100.0 * acc);
    else
        snprintf(acc_text, sizeof acc_text, "n/a");
    printf("  %s %lld/%lld = %s (of the matched lesions)\n", acc_name, (long long)right,
           (long long)matched_valid, acc_text);

    printf("\nSeed paper: Chiao et al., Medicine 2019 (307 sonograms of 80 patients; its exact "
           "protocol is not published, compare with care)\n");
    printf("  %-34s %8s %8s\n", "", "theirs", "ours");
    printf("  %-34s %8.2f ", "mAP (detection + segmentation)", SEED_MAP);
    if (map50 == MR_AP_UNDEFINED)
        printf("%8s", "n/a");
    else
        printf("%8.3f", map50);
    printf("   ours: mAP@0.5, Matterport per-image, mask IoU\n");
    printf("  %-34s %7.0f%% %8s   ours: matched lesions, score >= %.2f\n", acc_name,
           100.0 * SEED_ACCURACY, acc_text, (double)op_threshold);

    /* ---- files ---- */
    if (out_dir) {
        char path[4200];
        put(&json, "{\n  \"format\": \"mrcnn-evaluation\",\n  \"version\": 1,\n  \"config\": ");
        put_str(&json, config_path);
        put(&json, ",\n  \"weights\": ");
        put_str(&json, weights);
        put(&json, ",\n  \"data\": ");
        put_str(&json, data);
        put(&json, ",\n  \"images\": %lld,\n  \"images_without_lesions\": %lld,\n",
            (long long)n_images, (long long)L->n_images_without_gt);
        put(&json, "  \"detection_min_confidence\": %.6g,\n  \"detection_threshold_source\": %s,\n",
            (double)det_threshold,
            given ? "\"--threshold\"" : "\"default 0, as Matterport's COCO evaluation\"");
        put(&json, "  \"operating_point\": %.6g,\n  \"operating_point_source\": %s,\n",
            (double)op_threshold,
            given ? "\"--threshold\"" : "\"the config's DETECTION_MIN_CONFIDENCE\"");
        put(&json, "  \"matterport\": {\"mAP50\": ");
        put_num(&json, map50);
        put(&json, ", \"mAP50_95\": ");
        put_num(&json, map_range);
        put(&json,
            ", \"images_averaged\": %lld, \"iou\": \"mask\",\n    \"note\": \"per-image "
            "compute_ap averaged over images with lesions; compute_matches uses "
            "gt_match[j] > -1 (Matterport master's > 0 can match a GT twice, issue "
            "#1692)\"},\n",
            (long long)T.n_map_images);
        put(&json, "  \"coco\": {\n    \"method\": \"pycocotools COCOeval: per class, greedy "
                   "matching by score, IoU 0.50:0.05:0.95, 101-point interpolated precision, "
                   "maxDets 100; no crowd regions or area ranges\",\n");
        json_coco(&json, "bbox", &box_r, cfg);
        put(&json, ",\n");
        json_coco(&json, "segm", &mask_r, cfg);
        put(&json,
            "\n  },\n  \"lesions\": {\"iou_threshold\": %.2f, \"score_threshold\": %.6g, "
            "\"ground_truth\": %lld, \"predictions\": %lld, \"matched\": %lld,\n",
            MATCH_IOU, (double)op_threshold, (long long)L->n_gt, (long long)L->n_pred,
            (long long)L->n_matched);
        put(&json, "    \"sensitivity\": ");
        put_num(&json, mr_lesion_sensitivity(L));
        put(&json, ", \"fp_per_image\": ");
        put_num(&json, mr_lesion_fp_per_image(L));
        put(&json, ", \"fp_on_images_without_lesions\": %lld,\n    \"mean_dice\": ",
            (long long)L->n_fp_without_gt);
        put_num(&json, L->n_matched ? mr_lesion_mean_dice(L) : MR_AP_UNDEFINED);
        put(&json, ", \"mean_iou\": ");
        put_num(&json, L->n_matched ? mr_lesion_mean_iou(L) : MR_AP_UNDEFINED);
        put(&json, ", \"accuracy\": ");
        put_num(&json, matched_valid ? acc : MR_AP_UNDEFINED);
        put(&json, ",\n    \"confusion\": {\"labels\": [\"background\"");
        for (int64_t c = 1; c < nc; c++) {
            put(&json, ", ");
            put_str(&json, cfg->class_names[c]);
        }
        put(&json, "], \"rows\": \"ground truth\", \"columns\": \"predicted\", \"note\": \"row 0: "
                   "unmatched predictions (false positives), column 0: unmatched ground truth "
                   "(missed)\",\n      \"matrix\": [");
        for (int64_t g = 0; g < nc; g++) {
            put(&json, "%s[", g ? ", " : "");
            for (int64_t p = 0; p < nc; p++)
                put(&json, "%s%lld", p ? ", " : "", (long long)L->confusion[g * nc + p]);
            put(&json, "]");
        }
        put(&json,
            "]}},\n  \"seed_paper\": {\"source\": \"Chiao et al., Medicine "
            "2019;98(19):e15200\", \"mAP\": %.2f, \"accuracy\": %.2f, \"ours_mAP\": ",
            SEED_MAP, SEED_ACCURACY);
        put_num(&json, map50);
        put(&json, ", \"ours_accuracy\": ");
        put_num(&json, matched_valid ? acc : MR_AP_UNDEFINED);
        put(&json, "},\n  \"pr_curves\": {");
        for (int64_t c = 1; c < nc && st == MR_OK; c++) {
            char safe[64];
            file_safe(safe, sizeof safe, cfg->class_names[c]);
            snprintf(path, sizeof path, "%s/pr_%s.svg", out_dir, safe);
            text svg = {0};
            svg_curves(&svg, cfg->class_names[c], &box_r, &mask_r, c);
            st = write_file(path, &svg);
            free(svg.s);
            put(&json, "%s", c > 1 ? ", " : "");
            put_str(&json, cfg->class_names[c]);
            put(&json, ": \"pr_%s.svg\"", safe);
        }
        put(&json, "}\n}\n");
        if (st != MR_OK) goto done;
        snprintf(path, sizeof path, "%s/evaluation.json", out_dir);
        if ((st = write_file(path, &json)) != MR_OK) goto done;
        printf("\nwrote %s/evaluation.json and %s/pr_<class>.svg\n", out_dir, out_dir);
    }
done:
    free(json.s);
    mr_coco_result_free(&box_r);
    mr_coco_result_free(&mask_r);
    mr_coco_free(&T.coco_box);
    mr_coco_free(&T.coco_mask);
    mr_lesion_stats_free(&T.lesions);
    mr_load_report_free(&report);
    if (ctx_ok) mr_ctx_free(&ctx);
    if (model_ok) mr_model_free(&model);
    if (ds) mr_dataset_close(ds);
    free(cfg);
    return mr_exit_code(st);
}

/* The anchors report (train/anchor_report.h): box shapes from the training data, K-means, the
 * config values and their coverage, printed; the config rewrite on request. */
#include "anchor_report.h"

#include <math.h>
#include <stdlib.h>

#include "../layers/mold.h"
#include "dataset.h"
#include "kmeans.h"

/* Box shapes (w, h) in molded-image pixels: each box's analytic extent times its image's
 * per-axis resize factor (mr_mold_plan's resized size over the original size, as the data
 * stream places masks). Padding does not change a shape. */
static mr_status collect_boxes(const mr_annotations *a, const mr_net_config *net, double **out,
                               int64_t *n_out, int64_t *n_images, int64_t *n_skipped) {
    int64_t total = 0;
    for (int64_t i = 0; i < a->n; i++) total += a->records[i].n_instances;
    double *wh = malloc(sizeof(double) * 2 * (size_t)(total + 1));
    if (!wh) return mr_fail(MR_ERR_NOMEM, "out of memory for %lld boxes", (long long)total);
    int64_t n = 0, images = 0, skipped = 0;
    for (int64_t i = 0; i < a->n; i++) {
        const mr_image_record *rec = &a->records[i];
        if (rec->n_instances == 0) continue;
        if (rec->width <= 0 || rec->height <= 0) {
            skipped += rec->n_instances;
            continue;
        }
        mr_mold_info mi;
        mr_mold_plan(rec->height, rec->width, net->image_min_dim, net->image_max_dim, &mi);
        double sy = (double)mi.resized_h / rec->height, sx = (double)mi.resized_w / rec->width;
        images++;
        for (int64_t k = 0; k < rec->n_instances; k++) {
            double box[4];
            mr_annotations_bbox(&rec->instances[k], box);
            double w = (box[3] - box[1]) * sx, h = (box[2] - box[0]) * sy;
            if (!(w > 0 && h > 0)) {
                skipped++;
                continue;
            }
            wh[2 * n] = w, wh[2 * n + 1] = h;
            n++;
        }
    }
    *out = wh, *n_out = n, *n_images = images, *n_skipped = skipped;
    return MR_OK;
}

static int cmp_d(const void *pa, const void *pb) {
    double a = *(const double *)pa, b = *(const double *)pb;
    return (a > b) - (a < b);
}

/* min / median / max of v (sorted in place). */
static void spread(double *v, int64_t n, double out[3]) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    out[0] = v[0], out[2] = v[n - 1];
    out[1] = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void print_fit_row(FILE *out, const char *label, const mr_anchor_fit *cur,
                          const mr_anchor_fit *fit, const mr_anchor_fit *raw, int which) {
    const mr_anchor_fit *f[3] = {cur, fit, raw};
    fprintf(out, "  %-28s", label);
    for (int i = 0; i < 3; i++) {
        double v = which == 0 ? f[i]->mean_iou : which == 1 ? f[i]->share_50 : f[i]->share_70;
        if (which == 0)
            fprintf(out, " %16.3f", v);
        else
            fprintf(out, " %15.1f%%", 100.0 * v);
    }
    fprintf(out, "\n");
}

mr_status mr_anchor_report(mr_config *cfg, const mr_anchor_report_options *o, FILE *out) {
    const mr_net_config *net = &cfg->net;
    const bool per_level = net->anchor_scales_per_level;
    const int n_levels = (int)(sizeof net->strides / sizeof net->strides[0]);
    mr_status st = MR_OK;
    /* Anchors fit the boxes training sees: the training images of --data, as train splits
     * them. */
    mr_dataset *ds = NULL;
    double *wh = NULL, *work = NULL;
    int64_t n = 0, n_images = 0, n_skipped = 0;
    const char *data = NULL;
    mr_data_summary used;
    if ((st = mr_data_resolve(cfg, &o->data)) != MR_OK) goto done;
    if ((st = mr_data_open_part(cfg, MR_DATA_TRAIN, &ds, &used)) != MR_OK) goto done;
    data = mr_dataset_annotations(ds)->source;
    fprintf(out, "%s\n", used.line);
    if ((st = collect_boxes(mr_dataset_annotations(ds), net, &wh, &n, &n_images, &n_skipped)) !=
        MR_OK)
        goto done;
    if (n == 0) {
        st = mr_fail(MR_ERR_FORMAT,
                     "%s: no ground-truth boxes with a known image size; nothing "
                     "to fit (run `mrcnn check-data --data %s`)",
                     data, data);
        goto done;
    }
    fprintf(out, "anchors: %lld ground-truth boxes from %lld images of %s", (long long)n,
            (long long)n_images, data);
    if (n_skipped) fprintf(out, " (%lld without area or image size skipped)", (long long)n_skipped);
    fprintf(out,
            "\nunit: pixels of the molded %dx%d image (IMAGE_MIN_DIM %d, IMAGE_MAX_DIM %d), the "
            "unit of RPN_ANCHOR_SCALES\n",
            net->image_max_dim, net->image_max_dim, net->image_min_dim, net->image_max_dim);
    work = malloc(sizeof(double) * (size_t)n);
    if (!work) {
        st = mr_fail(MR_ERR_NOMEM, "out of memory");
        goto done;
    }
    double s3[3], r3[3];
    for (int64_t i = 0; i < n; i++) work[i] = sqrt(wh[2 * i] * wh[2 * i + 1]);
    spread(work, n, s3);
    for (int64_t i = 0; i < n; i++) work[i] = wh[2 * i] / wh[2 * i + 1];
    spread(work, n, r3);
    fprintf(out,
            "boxes: size sqrt(w*h) min %.1f, median %.1f, max %.1f; w/h min %.2f, median %.2f, "
            "max %.2f\n",
            s3[0], s3[1], s3[2], r3[0], r3[1], r3[2]);

    mr_kmeans_options ko = {.k = o->k, .restarts = o->restarts, .seed = o->seed};
    mr_kmeans_result km;
    if ((st = mr_kmeans_wh(wh, n, &ko, &km)) != MR_OK) goto done;
    fprintf(out,
            "\nk-means, distance 1 - IoU of (w, h) at a common centre (YOLOv2), k-means++ seeding, "
            "seed %llu, %d restarts (best: #%d, %d iterations):\n",
            (unsigned long long)ko.seed, ko.restarts, km.best_restart + 1, km.iterations);
    fprintf(out, "  %-8s %9s %9s %9s %7s %7s\n", "cluster", "w", "h", "size", "w/h", "boxes");
    for (int j = 0; j < km.k; j++)
        fprintf(out, "  %-8d %9.1f %9.1f %9.1f %7.2f %7lld\n", j + 1, km.wh[j][0], km.wh[j][1],
                sqrt(km.wh[j][0] * km.wh[j][1]), km.wh[j][0] / km.wh[j][1], (long long)km.count[j]);

    float scales[MR_KMEANS_MAX_K], ratios[MR_MAX_ANCHOR_RATIOS];
    int n_scales = 0, n_ratios = 0;
    if ((st = mr_anchors_from_clusters(&km, per_level, n_levels, o->max_ratios, scales, &n_scales,
                                       ratios, &n_ratios)) != MR_OK)
        goto done;

    double cur_shapes[2 * MR_MAX_ANCHOR_SCALES * MR_MAX_ANCHOR_RATIOS];
    double fit_shapes[2 * MR_KMEANS_MAX_K * MR_MAX_ANCHOR_RATIOS], raw_shapes[2 * MR_KMEANS_MAX_K];
    int64_t n_cur = mr_anchor_shapes(cur_shapes, net->anchor_scales, net->n_anchor_scales,
                                     net->anchor_ratios, net->n_anchor_ratios);
    int64_t n_fit = mr_anchor_shapes(fit_shapes, scales, n_scales, ratios, n_ratios);
    for (int j = 0; j < km.k; j++)
        raw_shapes[2 * j] = km.wh[j][0], raw_shapes[2 * j + 1] = km.wh[j][1];
    mr_anchor_fit cur, fit, raw;
    mr_anchor_fit_eval(&cur, wh, n, cur_shapes, n_cur);
    mr_anchor_fit_eval(&fit, wh, n, fit_shapes, n_fit);
    mr_anchor_fit_eval(&raw, wh, n, raw_shapes, km.k);

    char cur_s[512], cur_r[256], fit_s[512], fit_r[256];
    mr_format_float_list(cur_s, sizeof cur_s, net->anchor_scales, net->n_anchor_scales);
    mr_format_float_list(cur_r, sizeof cur_r, net->anchor_ratios, net->n_anchor_ratios);
    mr_format_float_list(fit_s, sizeof fit_s, scales, n_scales);
    mr_format_float_list(fit_r, sizeof fit_r, ratios, n_ratios);
    fprintf(out, "\nform: %s\n",
            per_level ? "per_level (Matterport): one scale per FPN level P2..P6, smallest on P2, "
                        "every ratio at every level; level i takes the cluster size at rank "
                        "i(k-1)/4, interpolated geometrically"
                      : "every_level (second seed): every size x every ratio at every level; "
                        "sizes = the cluster sizes");
    fprintf(out,
            "ratios: the clusters' w/h grouped into at most %d (1-D k-means on log w/h weighted by "
            "boxes), 2 significant digits\n",
            o->max_ratios);
    fprintf(out, "\ncurrent: RPN_ANCHOR_SCALES %s, RPN_ANCHOR_RATIOS %s\n", cur_s, cur_r);
    fprintf(out, "fitted:  RPN_ANCHOR_SCALES %s, RPN_ANCHOR_RATIOS %s\n", fit_s, fit_r);
    fprintf(out, "\n  %-28s %16s %16s %16s\n", "", "current config", "fitted", "k-means centroids");
    fprintf(out, "  %-28s %16lld %16lld %16d\n", "anchor shapes", (long long)n_cur,
            (long long)n_fit, km.k);
    int64_t a_cur = (int64_t)net->n_anchor_ratios * (per_level ? 1 : net->n_anchor_scales);
    int64_t a_fit = (int64_t)n_ratios * (per_level ? 1 : n_scales);
    fprintf(out, "  %-28s %16lld %16lld %16s\n", "anchors per location (A)", (long long)a_cur,
            (long long)a_fit, "-");
    print_fit_row(out, "mean best-anchor IoU", &cur, &fit, &raw, 0);
    print_fit_row(out, "boxes with best IoU >= 0.5", &cur, &fit, &raw, 1);
    print_fit_row(out, "boxes with best IoU >= 0.7", &cur, &fit, &raw, 2);
    fprintf(out,
            "  (IoU of each box with its best anchor shape, both centred on one point: the fit of "
            "the shapes only, not of the grid of anchor centres)\n");
    if (a_fit != a_cur)
        fprintf(out,
                "note: A changes from %lld to %lld, so the RPN head's rpn_class_raw and "
                "rpn_bbox_pred change shape and cannot come from weights trained with the old "
                "anchors (COCO weights have A = 3)\n",
                (long long)a_cur, (long long)a_fit);
    if (fit.mean_iou < cur.mean_iou)
        fprintf(out,
                "note: the fitted anchors cover these boxes worse than the current ones; try a "
                "larger --k or --ratios, or keep the config\n");

    if (o->write) {
        if ((st = mr_config_write_anchors(o->config_path, scales, n_scales, ratios, n_ratios)) !=
            MR_OK)
            goto done;
        fprintf(out,
                "\nwrote %s: RPN_ANCHOR_SCALES %s, RPN_ANCHOR_RATIOS %s (every other byte "
                "unchanged)\n",
                o->config_path, fit_s, fit_r);
    } else {
        fprintf(out, "\nrun again with --write to put the fitted values into %s\n", o->config_path);
    }
done:
    free(wh), free(work);
    if (ds) mr_dataset_close(ds);
    return st;
}

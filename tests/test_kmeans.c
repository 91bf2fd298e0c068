/* Anchor fitting: centre-aligned IoU by hand, k-means recovering planted box shapes and beating
 * Matterport's default anchors on them, the clusters-to-config rule, and the config rewrite that
 * must change only RPN_ANCHOR_SCALES / RPN_ANCHOR_RATIOS (library and `mrcnn anchors --write`).
 * In the "metrics" suite with the evaluation tests. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/rng.h"
#include "../data/synth.h"
#include "../train/config.h"
#include "../train/anchor_report.h"
#include "../train/kmeans.h"
#include "testutil.h"

Test(metrics, kmeans_wh_iou_by_hand) {
    /* 2x4 and 4x2 on one centre: intersection 2x2 = 4, union 8 + 8 - 4 = 12 -> 1/3. */
    cr_assert_float_eq(mr_wh_iou(2, 4, 4, 2), 1.0 / 3.0, 1e-12);
    cr_assert_float_eq(mr_wh_iou(3, 5, 3, 5), 1.0, 1e-12);
    /* 10x10 inside 20x20: 100 / 400. */
    cr_assert_float_eq(mr_wh_iou(10, 10, 20, 20), 0.25, 1e-12);
    cr_assert_float_eq(mr_wh_iou(0, 10, 20, 20), 0.0, 1e-12);
}

/* 3 planted shapes (w, h) with +-5% uniform noise on each side, 100 boxes each, interleaved. */
static const double planted[3][2] = {{20, 40}, {60, 60}, {120, 80}};

static double *planted_boxes(int64_t *n) {
    *n = 300;
    double *wh = malloc(sizeof(double) * 2 * 300);
    mr_rng rng;
    mr_rng_seed(&rng, 2024);
    for (int64_t i = 0; i < 300; i++) {
        const double *c = planted[i % 3];
        wh[2 * i] = c[0] * (1.0 + 0.1 * (mr_rng_uniform_double(&rng) - 0.5));
        wh[2 * i + 1] = c[1] * (1.0 + 0.1 * (mr_rng_uniform_double(&rng) - 0.5));
    }
    return wh;
}

Test(metrics, kmeans_recovers_planted_clusters) {
    int64_t n;
    double *wh = planted_boxes(&n);
    mr_kmeans_options o = {.k = 3, .restarts = 5, .seed = 1};
    mr_kmeans_result r;
    cr_assert_eq(mr_kmeans_wh(wh, n, &o, &r), MR_OK, "%s", mr_last_error());
    /* Sorted by area: 800, 3600, 9600, the planted order. The noise has mean 0, so each
     * centroid (the mean of its 100 boxes) should sit within about 1% of its plant. */
    for (int j = 0; j < 3; j++) {
        cr_assert_eq(r.count[j], 100, "cluster %d has %lld boxes", j, (long long)r.count[j]);
        for (int d = 0; d < 2; d++)
            cr_assert(fabs(r.wh[j][d] / planted[j][d] - 1.0) < 0.02,
                      "cluster %d: %.2f vs planted %.0f", j, r.wh[j][d], planted[j][d]);
    }
    cr_assert_gt(r.mean_iou, 0.9);
    free(wh);
}

Test(metrics, kmeans_anchors_beat_the_defaults_on_planted_boxes) {
    int64_t n;
    double *wh = planted_boxes(&n);
    mr_kmeans_options o = {.k = 3, .restarts = 5, .seed = 1};
    mr_kmeans_result r;
    cr_assert_eq(mr_kmeans_wh(wh, n, &o, &r), MR_OK);
    /* Matterport's defaults: scales 32..512 x ratios 0.5, 1, 2 (15 shapes). By hand for the
     * plants: 20x40 vs 32 @ 0.5 (22.6x45.3) 0.78; 60x60 vs 64x64 0.88; 120x80 vs 128x128 or
     * 181x91 0.59: mean about 0.75. */
    const float dscales[5] = {32, 64, 128, 256, 512}, dratios[3] = {0.5f, 1, 2};
    double dshapes[30], fshapes[2 * 64 * 8], cshapes[6];
    int64_t nd = mr_anchor_shapes(dshapes, dscales, 5, dratios, 3);
    cr_assert_eq(nd, 15);
    mr_anchor_fit def, cen, fit;
    mr_anchor_fit_eval(&def, wh, n, dshapes, nd);
    for (int j = 0; j < 3; j++) cshapes[2 * j] = r.wh[j][0], cshapes[2 * j + 1] = r.wh[j][1];
    mr_anchor_fit_eval(&cen, wh, n, cshapes, 3);
    float scales[64], ratios[8];
    int ns, nr;
    cr_assert_eq(mr_anchors_from_clusters(&r, true, 5, 3, scales, &ns, ratios, &nr), MR_OK);
    cr_assert_eq(ns, 5);
    int64_t nf = mr_anchor_shapes(fshapes, scales, ns, ratios, nr);
    mr_anchor_fit_eval(&fit, wh, n, fshapes, nf);
    cr_assert_float_eq(def.mean_iou, 0.75, 0.03);
    cr_assert_gt(cen.mean_iou, def.mean_iou + 0.15, "centroids %.3f vs defaults %.3f", cen.mean_iou,
                 def.mean_iou);
    cr_assert_gt(fit.mean_iou, def.mean_iou + 0.1, "fitted config %.3f vs defaults %.3f",
                 fit.mean_iou, def.mean_iou);
    cr_assert_float_eq(cen.share_70, 1.0, 1e-12);
    cr_assert_lt(def.share_70, 1.0);
    free(wh);
}

Test(metrics, kmeans_same_seed_same_result) {
    int64_t n;
    double *wh = planted_boxes(&n);
    mr_kmeans_options o = {.k = 5, .restarts = 3, .seed = 9};
    mr_kmeans_result a, b;
    cr_assert_eq(mr_kmeans_wh(wh, n, &o, &a), MR_OK);
    cr_assert_eq(mr_kmeans_wh(wh, n, &o, &b), MR_OK);
    cr_assert_eq(memcmp(a.wh, b.wh, sizeof a.wh), 0);
    cr_assert_eq(a.mean_iou, b.mean_iou);
    free(wh);
}

Test(metrics, kmeans_rejects_bad_input) {
    const double wh[4] = {10, 10, 20, -1};
    mr_kmeans_options o = {.k = 3, .seed = 1};
    mr_kmeans_result r;
    cr_assert_eq(mr_kmeans_wh(wh, 2, &o, &r), MR_ERR_ARG); /* 3 clusters, 2 boxes */
    cr_assert_not_null(strstr(mr_last_error(), "at least 3 boxes"), "%s", mr_last_error());
    o.k = 1;
    cr_assert_eq(mr_kmeans_wh(wh, 2, &o, &r), MR_ERR_ARG); /* negative height */
    cr_assert_not_null(strstr(mr_last_error(), "box 1"), "%s", mr_last_error());
    o.k = 0;
    cr_assert_eq(mr_kmeans_wh(wh, 1, &o, &r), MR_ERR_ARG);
}

Test(metrics, kmeans_identical_boxes_do_not_break_seeding) {
    /* Every box the same shape: k-means++ has no distance to sample by; still a clean result. */
    double wh[20];
    for (int i = 0; i < 10; i++) wh[2 * i] = 30, wh[2 * i + 1] = 15;
    mr_kmeans_options o = {.k = 3, .seed = 4};
    mr_kmeans_result r;
    cr_assert_eq(mr_kmeans_wh(wh, 10, &o, &r), MR_OK);
    cr_assert_float_eq(r.mean_iou, 1.0, 1e-12);
}

Test(metrics, kmeans_clusters_to_config_values) {
    /* Five clusters with sizes 10, 20, 40, 80, 160 (w = h * r), ratios 0.5, 0.5, 1, 2, 2 and
     * 10, 10, 10, 30, 30 boxes: per_level takes the sorted sizes as the five scales; the ratios
     * group into 0.5, 1, 2. */
    mr_kmeans_result km = {.k = 5};
    const double sizes[5] = {10, 20, 40, 80, 160}, rat[5] = {0.5, 0.5, 1, 2, 2};
    const int64_t counts[5] = {10, 10, 10, 30, 30};
    for (int j = 0; j < 5; j++) {
        km.wh[j][0] = sizes[j] * sqrt(rat[j]);
        km.wh[j][1] = sizes[j] / sqrt(rat[j]);
        km.count[j] = counts[j];
    }
    float scales[64], ratios[8];
    int ns, nr;
    cr_assert_eq(mr_anchors_from_clusters(&km, true, 5, 3, scales, &ns, ratios, &nr), MR_OK);
    cr_assert_eq(ns, 5);
    for (int j = 0; j < 5; j++) cr_assert_float_eq(scales[j], sizes[j], 1e-6);
    cr_assert_eq(nr, 3);
    cr_assert(ratios[0] == 0.5f && ratios[1] == 1.0f && ratios[2] == 2.0f);
    /* At most 2 ratios, on log ratios l = -.693 (w 10), -.693 (10), 0 (10), .693 (30), .693 (30):
     * {0.5, 0.5, 1} | {2, 2} costs 20 * .231^2 + 10 * .462^2 = 3.2, {0.5, 0.5} | {1, 2, 2}
     * costs 10 * .594^2 + 60 * .099^2 = 4.1; so the first, with geometric means
     * exp(-2 * .693 / 3) = 0.63 and 2. */
    cr_assert_eq(mr_anchors_from_clusters(&km, true, 5, 2, scales, &ns, ratios, &nr), MR_OK);
    cr_assert_eq(nr, 2);
    cr_assert(ratios[0] == 0.63f && ratios[1] == 2.0f, "%g %g", (double)ratios[0],
              (double)ratios[1]);

    /* Three clusters of sizes 10, 40, 160 on five levels: ranks 0, .5, 1, 1.5, 2 interpolated
     * geometrically -> 10, 20, 40, 80, 160. every_level keeps the three sizes. */
    mr_kmeans_result k3 = {.k = 3};
    const double s3[3] = {10, 40, 160};
    for (int j = 0; j < 3; j++) k3.wh[j][0] = k3.wh[j][1] = s3[j], k3.count[j] = 1;
    cr_assert_eq(mr_anchors_from_clusters(&k3, true, 5, 3, scales, &ns, ratios, &nr), MR_OK);
    cr_assert_eq(ns, 5);
    for (int j = 0; j < 5; j++) cr_assert_float_eq(scales[j], sizes[j], 1e-6);
    cr_assert(nr == 1 && ratios[0] == 1.0f);
    cr_assert_eq(mr_anchors_from_clusters(&k3, false, 5, 3, scales, &ns, ratios, &nr), MR_OK);
    cr_assert(ns == 3 && scales[0] == 10 && scales[1] == 40 && scales[2] == 160);
    /* Small sizes keep a decimal: 4.26 -> 4.3. */
    mr_kmeans_result k1 = {.k = 1, .wh = {{4.26, 4.26}}, .count = {1}};
    cr_assert_eq(mr_anchors_from_clusters(&k1, false, 5, 3, scales, &ns, ratios, &nr), MR_OK);
    cr_assert_float_eq(scales[0], 4.3f, 1e-6);
}

Test(metrics, kmeans_float_lists_are_plain_decimals) {
    char buf[128];
    const float v[4] = {4, 7.5f, 0.77f, 1024};
    mr_format_float_list(buf, sizeof buf, v, 4);
    cr_assert_str_eq(buf, "[4, 7.5, 0.77, 1024]");
}

/* ---- the config rewrite -----------------------------------------------------------------------
 */

/* Odd but valid formatting, a nested object and a string holding the key names: none of it may
 * move. */
static const char *const sample =
    "{\n"
    "    \"NAME\": \"x \\\"RPN_ANCHOR_SCALES\\\": [1]\",\n"
    "    \"DATASET\" : {\"TRAIN\": \"a\", \"VAL\": \"RPN_ANCHOR_RATIOS\"},\n"
    "    \"RPN_ANCHOR_SCALES\":[ 8 ,16,32,64,128 ]  ,\n"
    "\t\"IMAGE_MIN_DIM\": 128, \"IMAGE_MAX_DIM\": 128\n"
    "}\n";

Test(metrics, anchors_json_member_replaced_in_place) {
    char *out = NULL;
    cr_assert_eq(mr_json_set_member(sample, "s.json", "RPN_ANCHOR_SCALES", "[1, 2, 3, 4, 5]", &out),
                 MR_OK, "%s", mr_last_error());
    const char *want = "{\n"
                       "    \"NAME\": \"x \\\"RPN_ANCHOR_SCALES\\\": [1]\",\n"
                       "    \"DATASET\" : {\"TRAIN\": \"a\", \"VAL\": \"RPN_ANCHOR_RATIOS\"},\n"
                       "    \"RPN_ANCHOR_SCALES\":[1, 2, 3, 4, 5]  ,\n"
                       "\t\"IMAGE_MIN_DIM\": 128, \"IMAGE_MAX_DIM\": 128\n"
                       "}\n";
    cr_assert_str_eq(out, want);
    free(out);
    /* Absent: appended as the last member with the first member's indentation. */
    cr_assert_eq(mr_json_set_member(sample, "s.json", "RPN_ANCHOR_RATIOS", "[0.5, 1]", &out),
                 MR_OK);
    const char *want2 = "{\n"
                        "    \"NAME\": \"x \\\"RPN_ANCHOR_SCALES\\\": [1]\",\n"
                        "    \"DATASET\" : {\"TRAIN\": \"a\", \"VAL\": \"RPN_ANCHOR_RATIOS\"},\n"
                        "    \"RPN_ANCHOR_SCALES\":[ 8 ,16,32,64,128 ]  ,\n"
                        "\t\"IMAGE_MIN_DIM\": 128, \"IMAGE_MAX_DIM\": 128,\n"
                        "    \"RPN_ANCHOR_RATIOS\": [0.5, 1]\n"
                        "}\n";
    cr_assert_str_eq(out, want2);
    free(out);
    /* One-line and empty objects. */
    cr_assert_eq(mr_json_set_member("{\"A\": 1}", "o", "B", "[2]", &out), MR_OK);
    cr_assert_str_eq(out, "{\"A\": 1, \"B\": [2]}");
    free(out);
    cr_assert_eq(mr_json_set_member("{}", "o", "B", "[2]", &out), MR_OK);
    cr_assert_str_eq(out, "{\n  \"B\": [2]\n}");
    free(out);
}

Test(metrics, anchors_json_member_errors) {
    char *out = NULL;
    cr_assert_eq(mr_json_set_member("[1, 2]", "a.json", "K", "1", &out), MR_ERR_FORMAT);
    cr_assert_not_null(strstr(mr_last_error(), "a.json:1:1"), "%s", mr_last_error());
    cr_assert_eq(mr_json_set_member("{\"A\": 1,\n \"B\" 2}", "b.json", "K", "1", &out),
                 MR_ERR_FORMAT);
    cr_assert_not_null(strstr(mr_last_error(), "b.json:2:"), "%s", mr_last_error());
    cr_assert_eq(mr_json_set_member("{\"K\": 1, \"K\": 2}", "c.json", "K", "3", &out),
                 MR_ERR_FORMAT);
    cr_assert_not_null(strstr(mr_last_error(), "twice"), "%s", mr_last_error());
    cr_assert_null(out);
}

Test(metrics, anchors_write_changes_only_the_two_keys) {
    const char *dir = temp_dir("anchors");
    char path[512];
    snprintf(path, sizeof path, "%s/c.json", dir);
    const char *text = "{\n  \"NAME\": \"t\",   \"RPN_ANCHOR_SCALES\": [16, 32, 64, 128, 256],\n"
                       "  \"IMAGE_MIN_DIM\": 128,\n  \"IMAGE_MAX_DIM\": 128\n}\n";
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, 0640);
    const float scales[5] = {12, 20, 33, 50, 80}, ratios[2] = {0.8f, 1.25f};
    cr_assert_eq(mr_config_write_anchors(path, scales, 5, ratios, 2), MR_OK, "%s", mr_last_error());
    FILE *g = fopen(path, "rb");
    char got[1024] = {0};
    cr_assert(fread(got, 1, sizeof got - 1, g) > 0);
    fclose(g);
    cr_assert_str_eq(got, "{\n  \"NAME\": \"t\",   \"RPN_ANCHOR_SCALES\": [12, 20, 33, 50, 80],\n"
                          "  \"IMAGE_MIN_DIM\": 128,\n  \"IMAGE_MAX_DIM\": 128,\n"
                          "  \"RPN_ANCHOR_RATIOS\": [0.8, 1.25]\n}\n");
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0640, "permissions kept");
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load(path, &c), MR_OK, "%s", mr_last_error());
    cr_assert(c.net.n_anchor_scales == 5 && c.net.anchor_scales[2] == 33.0f);
    cr_assert(c.net.n_anchor_ratios == 2 && c.net.anchor_ratios[1] == 1.25f);
    /* A value the config loader refuses is never written: 3 scales with one per level. */
    cr_assert_neq(mr_config_write_anchors(path, scales, 3, ratios, 2), MR_OK);
    FILE *h = fopen(path, "rb");
    char again[1024] = {0};
    cr_assert(fread(again, 1, sizeof again - 1, h) > 0);
    fclose(h);
    cr_assert_str_eq(again, got);
}

/* ---- `mrcnn anchors` end to end -------------------------------------------------------------- */

static int run_anchors(const char *args, char *out, size_t n) {
    char full[8192];
    cr_assert_lt(snprintf(full, sizeof full, "anchors %s", args), (int)sizeof full);
    return run_mrcnn(full, out, n);
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    char *t = calloc(1, 1 << 16);
    cr_assert(fread(t, 1, (1 << 16) - 1, f) > 0);
    fclose(f);
    return t;
}

Test(metrics, anchors_cli_write_keeps_every_other_byte, .timeout = 120) {
    FILE *src = fopen("configs/tiny.json", "rb");
    if (!src) cr_skip_test("configs/tiny.json not found (run from the repo root)");
    fclose(src);
    const char *dir = temp_dir("anchors-cli");
    char data[512], cfg[512], args[2048];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
    mr_synth_options so;
    mr_synth_defaults(&so);
    so.out_dir = data;
    so.n_images = 24;
    so.seed = 3;
    so.size = 128;
    cr_assert_eq(mr_synth_write(&so), MR_OK, "%s", mr_last_error());
    char *orig = read_all("configs/tiny.json");
    FILE *f = fopen(cfg, "wb");
    fputs(orig, f);
    fclose(f);

    static char out[1 << 15];
    snprintf(args, sizeof args, "--config '%s' --data '%s/train' --k 5 --write", cfg, data);
    cr_assert_eq(run_anchors(args, out, sizeof out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "mean best-anchor IoU"), "%s", out);
    cr_assert_not_null(strstr(out, "centred on one point"), "%s", out);
    cr_assert_not_null(strstr(out, "pixels of the molded"), "%s", out);

    /* Put the original two values back into the new file: that must give the original bytes,
     * so nothing else moved. (tiny.json has RPN_ANCHOR_SCALES; RPN_ANCHOR_RATIOS was appended.) */
    char *now = read_all(cfg);
    cr_assert_str_neq(now, orig);
    char *back = NULL;
    cr_assert_eq(mr_json_set_member(now, cfg, "RPN_ANCHOR_SCALES", "[16, 32, 64, 128, 256]", &back),
                 MR_OK);
    const char *tail = strstr(back, ",\n  \"RPN_ANCHOR_RATIOS\"");
    cr_assert_not_null(tail, "RPN_ANCHOR_RATIOS appended as the last member:\n%s", back);
    size_t keep = (size_t)(tail - back);
    const char *close = strrchr(back, '}');
    char *rebuilt = calloc(1, strlen(back) + 1);
    memcpy(rebuilt, back, keep);
    strcat(rebuilt, close - 1); /* the newline before the closing brace, and what follows */
    cr_assert_str_eq(rebuilt, orig);
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load(cfg, &c), MR_OK, "%s", mr_last_error());
    free(orig), free(now), free(back), free(rebuilt);
}

/* ---- the report as a library call (train/anchor_report.h) --------------------------------- */

Test(metrics, anchor_report_prints_the_fit_and_writes_only_on_request, .timeout = 120) {
    const char *dir = temp_dir("anchors-lib");
    char data[512], cfg_path[512];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/tiny.json", dir);
    mr_synth_options so;
    mr_synth_defaults(&so);
    so.out_dir = data;
    so.n_images = 16;
    so.seed = 5;
    so.size = 128;
    cr_assert_eq(mr_synth_write(&so), MR_OK, "%s", mr_last_error());
    char *orig = read_all("configs/tiny.json");
    FILE *f = fopen(cfg_path, "wb");
    fputs(orig, f);
    fclose(f);

    mr_config *c = malloc(sizeof *c);
    mr_config_defaults(c);
    cr_assert_eq(mr_config_load(cfg_path, c), MR_OK, "%s", mr_last_error());
    mr_anchor_report_options o = {.config_path = cfg_path,
                                  .data = {.data = data},
                                  .k = 5,
                                  .max_ratios = 3,
                                  .restarts = 2,
                                  .seed = 1};
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert_eq(mr_anchor_report(c, &o, out), MR_OK, "%s", mr_last_error());
    fclose(out);
    cr_assert(strstr(text, "ground-truth boxes from") && strstr(text, "mean best-anchor IoU") &&
                  strstr(text, "fitted:  RPN_ANCHOR_SCALES") &&
                  strstr(text, "run again with --write"),
              "%s", text);
    free(text);
    char *same = read_all(cfg_path);
    cr_assert_str_eq(same, orig, "nothing written without `write`");
    free(same);

    o.write = true;
    out = open_memstream(&text, &len);
    cr_assert_eq(mr_anchor_report(c, &o, out), MR_OK, "%s", mr_last_error());
    fclose(out);
    cr_assert(strstr(text, "(every other byte unchanged)"), "%s", text);
    free(text);
    mr_config_defaults(c);
    cr_assert_eq(mr_config_load(cfg_path, c), MR_OK, "the rewritten config loads: %s",
                 mr_last_error());

    /* Data without boxes: one line naming it, nothing printed after the data line. */
    char empty[600];
    snprintf(empty, sizeof empty, "%s/empty.json", dir);
    f = fopen(empty, "wb");
    fputs("{}", f);
    fclose(f);
    o.data.data = empty;
    o.write = false;
    out = open_memstream(&text, &len);
    cr_assert_neq(mr_anchor_report(c, &o, out), MR_OK);
    fclose(out);
    free(text);
    free(c);
    free(orig);
}

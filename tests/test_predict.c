/* `mrcnn predict` end to end on the tiny model with random weights: overlays and JSON per image,
 * a VIA project that loads back through mr_annotations_load with the same instances, polygons
 * (JSON and VIA) that rasterise back to every mask (IoU >= 0.98, area within 1%, holes filled)
 * and an RLE that decodes to it exactly, a corrupt image reported and skipped, --threshold, and
 * one-line failures for bad inputs. Needs MRCNN_BIN (set by `make test`); without it the tests
 * are skipped, visibly. */
#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/blas.h"
#include "../core/rng.h"
#include "../data/annotations.h"
#include "../data/image.h"
#include "../data/raster.h"
#include "../data/rle.h"
#include "../layers/inference.h"
#include "../layers/mold.h"
#include "../train/evaluate.h"
#include "../train/export.h"
#include "../train/predictor.h"
#include "testutil.h"

/* ---- fixtures ------------------------------------------------------------------------------ */

/* An mrcnn export of the tiny model (config embedded, DETECTION_MIN_CONFIDENCE 0). */
static void write_weights(const char *path, mr_config *c) {
    mr_config_defaults(c);
    cr_assert_eq(mr_config_load("configs/tiny.json", c), MR_OK, "%s", mr_last_error());
    c->net.detection_min_confidence = 0.0f;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c->net), MR_OK);
    random_test_weights(&m, 21);
    char *json = mr_config_to_json(c);
    cr_assert_eq(mr_weights_save(path, &m.params, json, false), MR_OK, "%s", mr_last_error());
    free(json);
    mr_model_free(&m);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *path) {
    return access(path, F_OK) == 0;
}

static int run_predict(const char *args, char *out, size_t n) {
    char full[8192];
    snprintf(full, sizeof full, "predict %s", args);
    return run_mrcnn(full, out, n);
}

/* The detections mrcnn predict should have made for one image file. */
static void detect_file(const mr_model *m, const char *path, mr_instances *d) {
    const mr_net_config *n = &m->cfg;
    mr_image img;
    cr_assert_eq(mr_image_load(path, n->image_channels, &img), MR_OK, "%s", mr_last_error());
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 512u << 20), MR_OK);
    mr_tensor *t =
        mr_tensor_4d(&ctx, "images", 1, n->image_max_dim, n->image_max_dim, n->image_channels);
    mr_mold_info info;
    cr_assert_eq(mr_mold_image(t->data, img.pixels, img.height, img.width, n->image_channels,
                               n->image_min_dim, n->image_max_dim, n->mean_pixel,
                               mr_net_pixel_std(n), &info),
                 MR_OK);
    cr_assert_eq(mr_model_detect(&ctx, m, t, &info.geo, -1.0f, d), MR_OK, "%s", mr_last_error());
    mr_ctx_free(&ctx);
    mr_image_free(&img);
}

static int count_substr(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* The mask with its holes filled (what a polygon without holes can hold): everything but the
 * background 4-connected to the image's border. */
static void fill_holes(const uint8_t *m, int64_t w, int64_t h, uint8_t *filled) {
    int64_t n = w * h, head = 0, tail = 0;
    int64_t *queue = malloc((size_t)n * sizeof *queue);
    cr_assert_not_null(queue);
    memset(filled, 1, (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        int64_t x = i % w, y = i / w;
        if ((x == 0 || y == 0 || x == w - 1 || y == h - 1) && !m[i]) {
            filled[i] = 0;
            queue[tail++] = i;
        }
    }
    while (head < tail) {
        int64_t c = queue[head++], x = c % w, y = c / w;
        const int64_t nb[4] = {x > 0 ? c - 1 : -1, x < w - 1 ? c + 1 : -1, y > 0 ? c - w : -1,
                               y < h - 1 ? c + w : -1};
        for (int k = 0; k < 4; k++)
            if (nb[k] >= 0 && !m[nb[k]] && filled[nb[k]]) {
                filled[nb[k]] = 0;
                queue[tail++] = nb[k];
            }
    }
    free(queue);
}

/* IoU and area ratio of `got` against `want`; the pixels where they differ. */
typedef struct {
    double iou, area_ratio;
    int64_t differ, area;
} overlap;

static overlap compare(const uint8_t *got, const uint8_t *want, int64_t n) {
    int64_t inter = 0, uni = 0, a = 0, b = 0;
    for (int64_t k = 0; k < n; k++) {
        inter += got[k] && want[k];
        uni += got[k] || want[k];
        a += got[k] != 0;
        b += want[k] != 0;
    }
    overlap o = {uni ? (double)inter / (double)uni : 1.0, b ? (double)a / (double)b : 1.0,
                 uni - inter, b};
    return o;
}

/* The promise predict makes for every detection's polygons, against the filled mask. */
static void expect_covers(overlap o, const char *what, const char *path, int64_t i) {
    cr_assert_geq(o.iou, 0.98, "%s region %lld: %s IoU %.4f", path, (long long)i, what, o.iou);
    cr_assert(fabs(o.area_ratio - 1.0) <= 0.01, "%s region %lld: %s area ratio %.4f", path,
              (long long)i, what, o.area_ratio);
}

/* Rasterises a JSON polygon ([[x, y], ...]) into `m` (or-ed in); each vertex must lie on a
 * pixel edge (a coordinate at x.5, or 0 on the left and top border). */
static void raster_json_polygon(const cJSON *poly, uint8_t *m, int64_t w, int64_t h) {
    int n = cJSON_GetArraySize(poly);
    cr_assert_geq(n, 3);
    double *xs = malloc((size_t)n * sizeof *xs), *ys = malloc((size_t)n * sizeof *ys);
    for (int v = 0; v < n; v++) {
        const cJSON *pt = cJSON_GetArrayItem(poly, v);
        cr_assert(cJSON_IsArray(pt) && cJSON_GetArraySize(pt) == 2);
        xs[v] = cJSON_GetNumberValue(cJSON_GetArrayItem(pt, 0));
        ys[v] = cJSON_GetNumberValue(cJSON_GetArrayItem(pt, 1));
        bool on_x = xs[v] == 0.0 || xs[v] - floor(xs[v]) == 0.5;
        bool on_y = ys[v] == 0.0 || ys[v] - floor(ys[v]) == 0.5;
        cr_assert(on_x || on_y, "vertex (%g, %g) is not on a pixel edge", xs[v], ys[v]);
    }
    mr_raster_polygon(m, (int)w, (int)h, xs, ys, n, 1);
    free(xs);
    free(ys);
}

/* ---- tests --------------------------------------------------------------------------------- */

Test(predict, via_project_loads_back_with_the_same_instances) {
    const char *dir = temp_dir("predict");
    char weights[512], images[512], other[512], out[512], args[4096], log[16384], path[1024];
    snprintf(weights, sizeof weights, "%s/model.h5", dir);
    snprintf(images, sizeof images, "%s/images", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    snprintf(out, sizeof out, "%s/pred", dir);
    mkdir(images, 0777);
    mkdir(other, 0777);
    mr_config c;
    write_weights(weights, &c);
    const char *names[3] = {"b_scan.png", "a_scan.png", "c_scan.png"};
    const int sizes[3][2] = {{160, 120}, {128, 128}, {200, 150}};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", images, names[i]);
        write_lesion_png(path, sizes[i][0], sizes[i][1], (uint64_t)i + 1);
    }
    snprintf(path, sizeof path, "%s/notes.txt", images);
    write_file(path, "not an image");

    /* Pass 1: one folder -> default_filepath is that folder, filenames bare. Pass 2: images in
     * two folders -> filenames are relative paths. Both must load back the same way. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0) {
            snprintf(args, sizeof args, "--weights %s %s --out %s", weights, images, out);
        } else {
            snprintf(path, sizeof path, "%s/d_scan.png", other);
            write_lesion_png(path, 150, 140, 9);
            snprintf(out, sizeof out, "%s/pred2", dir);
            snprintf(args, sizeof args, "--weights %s %s %s --out %s", weights, images, path, out);
        }
        cr_assert_eq(run_predict(args, log, sizeof log), 0, "%s", log);
        int n_images = pass == 0 ? 3 : 4;
        char progress[32];
        snprintf(progress, sizeof progress, "[%d/%d]", n_images, n_images);
        cr_assert(strstr(log, progress), "progress on stderr: %s", log);
        cr_assert(!strstr(log, "notes.txt"), "non-images are skipped quietly: %s", log);

        char project[1024];
        snprintf(project, sizeof project, "%s/via_project.json", out);
        char *text = read_text(project);
        cr_assert(strstr(text, "\"_via_data_format_version\"") && strstr(text, "\"2.0.10\"") &&
                      strstr(text, "\"_via_image_id_list\"") && strstr(text, "\"dropdown\""),
                  "%s", text);
        /* default_filepath is the absolute folder the images share, so VIA finds them from
         * wherever it is loaded; filenames are the rest of each path. */
        char *dir_real = realpath(dir, NULL), expect[1100];
        if (pass == 0)
            snprintf(expect, sizeof expect, "\"default_filepath\":\t\"%s/images/\"", dir_real);
        else
            snprintf(expect, sizeof expect, "\"default_filepath\":\t\"%s/\"", dir_real);
        cr_assert(strstr(text, expect), "%s not in %s", expect, text);
        cr_assert(strstr(text, pass == 0 ? "\"filename\":\t\"a_scan.png\""
                                         : "\"filename\":\t\"other/d_scan.png\""),
                  "%s", text);
        free(dir_real);
        free(text);

        mr_load_options lo = {.class_names = (const char *const[]){"BG", "benign", "malignant"},
                              .n_class_names = 3,
                              .class_attribute = "class"};
        mr_annotations ann;
        cr_assert_eq(mr_annotations_load(project, &lo, &ann), MR_OK, "%s", mr_last_error());
        cr_assert_eq(ann.format, MR_ANN_VIA2_PROJECT);
        cr_assert_eq(ann.report.n_errors, 0);
        cr_assert_eq(ann.n, n_images);
        /* Folder images come sorted by name. */
        cr_assert(strstr(ann.records[0].path, "a_scan.png"), "%s", ann.records[0].path);
        cr_assert(strstr(ann.records[2].path, "c_scan.png"), "%s", ann.records[2].path);

        mr_config mc;
        mr_model m;
        cr_assert_eq(mr_inference_load(weights, NULL, &mc, &m, NULL), MR_OK, "%s", mr_last_error());
        int64_t total = 0, fragmented = 0, holed = 0;
        double min_json = 1.0, min_via = 1.0, sum_json = 0.0, sum_via = 0.0;
        double min_ratio = 2.0, max_ratio = 0.0;
        for (int64_t r = 0; r < ann.n; r++) {
            const mr_image_record *rec = &ann.records[r];
            char *real = realpath(rec->path, NULL);
            cr_assert_not_null(real, "VIA path %s does not resolve", rec->path);
            free(real);
            mr_instances d;
            detect_file(&m, rec->path, &d);
            cr_assert_eq(rec->n_instances, d.n, "%s: %lld regions, %lld detections", rec->path,
                         (long long)rec->n_instances, (long long)d.n);
            cr_assert_eq(rec->width, d.image_w);

            /* The JSON result and the overlay of this image. */
            char stem[256], json_path[1200], png_path[1200];
            snprintf(stem, sizeof stem, "%s", strrchr(rec->path, '/') + 1);
            *strrchr(stem, '.') = '\0';
            snprintf(json_path, sizeof json_path, "%s/%s_pred.json", out, stem);
            snprintf(png_path, sizeof png_path, "%s/%s_pred.png", out, stem);
            char *res = read_text(json_path);
            cJSON *doc = cJSON_Parse(res);
            cr_assert_not_null(doc, "%s does not parse: %s", json_path, res);
            const cJSON *dets = cJSON_GetObjectItem(doc, "detections");
            cr_assert_eq(cJSON_GetArraySize(dets), d.n, "%s", res);
            cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(doc, "width")), d.image_w);
            cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(doc, "height")), d.image_h);
            mr_image ov;
            cr_assert_eq(mr_image_load(png_path, 3, &ov), MR_OK, "%s", mr_last_error());
            cr_assert(ov.width == d.image_w && ov.height == d.image_h, "overlay at image size");
            mr_image_free(&ov);

            int64_t np = d.image_h * d.image_w;
            uint8_t *filled = malloc((size_t)np), *poly = malloc((size_t)np);
            uint8_t *part = malloc((size_t)np), *decoded = malloc((size_t)np);
            for (int64_t i = 0; i < d.n; i++) {
                const uint8_t *mask = d.masks + i * np;
                const cJSON *det = cJSON_GetArrayItem(dets, (int)i);
                const mr_region *inst = &rec->instances[i];
                cr_assert_eq(inst->class_id, d.class_ids[i], "%s region %lld", rec->path,
                             (long long)i);
                cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(det, "class_id")),
                             d.class_ids[i]);
                fill_holes(mask, d.image_w, d.image_h, filled);
                int64_t area = 0, filled_area = 0;
                for (int64_t k = 0; k < np; k++) area += mask[k] != 0, filled_area += filled[k];
                holed += filled_area > area;
                cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(det, "area")), area);

                /* The RLE: the mask exactly. */
                const cJSON *rle = cJSON_GetObjectItem(det, "rle");
                const cJSON *size = cJSON_GetObjectItem(rle, "size");
                cr_assert(cJSON_GetArraySize(size) == 2 &&
                              cJSON_GetNumberValue(cJSON_GetArrayItem(size, 0)) == d.image_h &&
                              cJSON_GetNumberValue(cJSON_GetArrayItem(size, 1)) == d.image_w,
                          "rle size is [H, W]");
                const char *counts = cJSON_GetStringValue(cJSON_GetObjectItem(rle, "counts"));
                cr_assert_not_null(counts);
                cr_assert_eq(mr_rle_decode(counts, (int)d.image_h, (int)d.image_w, decoded), MR_OK,
                             "%s", mr_last_error());
                for (int64_t k = 0; k < np; k++)
                    cr_assert_eq(decoded[k], mask[k] != 0, "%s region %lld: RLE differs", rec->path,
                                 (long long)i);

                /* The JSON polygons: all parts, within 0.5% of the filled mask. */
                const cJSON *polys = cJSON_GetObjectItem(det, "polygons"), *pj;
                memset(poly, 0, (size_t)np);
                cJSON_ArrayForEach(pj, polys) raster_json_polygon(pj, poly, d.image_w, d.image_h);
                overlap oj = compare(poly, filled, np);
                cr_assert_leq((double)oj.differ, 0.005 * (double)area,
                              "%s region %lld: JSON polygons differ in %lld of %lld px", rec->path,
                              (long long)i, (long long)oj.differ, (long long)area);
                if (area) expect_covers(oj, "JSON", rec->path, i);
                fragmented += cJSON_GetArraySize(polys) > 1;

                /* The VIA region, as mrcnn loads it: one part per detection, the largest, so it
                 * is one of the JSON polygons pixel for pixel; for a mask in one part it is the
                 * whole mask. An empty mask (no polygon) is its box. */
                memset(poly, 0, (size_t)np);
                mr_shape_rasterize(&inst->shape, poly, rec->width, rec->height, 1);
                if (cJSON_GetArraySize(polys) == 0) {
                    cr_assert_eq(area, 0);
                    continue;
                }
                bool same = false;
                cJSON_ArrayForEach(pj, polys) {
                    memset(part, 0, (size_t)np);
                    raster_json_polygon(pj, part, d.image_w, d.image_h);
                    same = same || !memcmp(part, poly, (size_t)np);
                }
                cr_assert(same, "%s region %lld: the VIA polygon is none of the JSON ones",
                          rec->path, (long long)i);
                overlap ov_ = compare(poly, filled, np);
                if (getenv("MR_TEST_VERBOSE"))
                    fprintf(stderr,
                            "%s region %lld: mask %lld px (filled %lld), %d part(s), JSON IoU "
                            "%.4f area %.4f, VIA IoU %.4f\n",
                            rec->path, (long long)i, (long long)area, (long long)filled_area,
                            cJSON_GetArraySize(polys), oj.iou, oj.area_ratio, ov_.iou);
                min_json = fmin(min_json, oj.iou);
                sum_json += oj.iou;
                min_ratio = fmin(min_ratio, oj.area_ratio);
                max_ratio = fmax(max_ratio, oj.area_ratio);
                if (cJSON_GetArraySize(polys) == 1) {
                    expect_covers(ov_, "VIA", rec->path, i);
                    min_via = fmin(min_via, ov_.iou);
                    sum_via += ov_.iou;
                }
            }
            total += d.n;
            free(filled);
            free(poly);
            free(part);
            free(decoded);
            cJSON_Delete(doc);
            free(res);
            mr_instances_free(&d);
        }
        if (getenv("MR_TEST_VERBOSE"))
            fprintf(stderr,
                    "%lld detections (%lld in several parts, %lld with holes): JSON IoU min "
                    "%.4f mean %.4f, area %.4f..%.4f; VIA (one-part masks) IoU min %.4f mean "
                    "%.4f\n",
                    (long long)total, (long long)fragmented, (long long)holed, min_json,
                    sum_json / (double)total, min_ratio, max_ratio, min_via,
                    sum_via / (double)(total - fragmented));
        cr_assert_gt(total, 0, "the test needs detections");
        cr_assert_lt(2 * fragmented, total, "most masks must be in one part to test VIA's region");
        mr_model_free(&m);
        mr_annotations_free(&ann);
    }
}

Test(predict, a_corrupt_image_is_reported_and_skipped) {
    const char *dir = temp_dir("predict-corrupt");
    char weights[512], images[512], out[512], args[4096], log[16384], path[1024];
    snprintf(weights, sizeof weights, "%s/model.h5", dir);
    snprintf(images, sizeof images, "%s/images", dir);
    snprintf(out, sizeof out, "%s/pred", dir);
    mkdir(images, 0777);
    mr_config c;
    write_weights(weights, &c);
    snprintf(path, sizeof path, "%s/1_good.png", images);
    write_lesion_png(path, 140, 120, 4);
    snprintf(path, sizeof path, "%s/2_broken.png", images);
    write_file(path, "\x89PNG\r\n\x1a\n truncated");
    snprintf(path, sizeof path, "%s/3_good.png", images);
    write_lesion_png(path, 120, 140, 5);
    snprintf(args, sizeof args, "--weights %s %s --out %s", weights, images, out);
    cr_assert_eq(run_predict(args, log, sizeof log), 1, "non-zero at the end: %s", log);
    cr_assert(strstr(log, "2_broken.png") && strstr(log, "skipped"), "%s", log);
    cr_assert(strstr(log, "[3/3]"), "went on after the broken image: %s", log);
    snprintf(path, sizeof path, "%s/3_good_pred.png", out);
    cr_assert(exists(path));
    snprintf(path, sizeof path, "%s/2_broken_pred.json", out);
    cr_assert(!exists(path));
    snprintf(path, sizeof path, "%s/via_project.json", out);
    mr_annotations ann;
    cr_assert_eq(mr_annotations_load(path, NULL, &ann), MR_OK, "%s", mr_last_error());
    cr_assert_eq(ann.n, 2);
    mr_annotations_free(&ann);
}

Test(predict, threshold_overrides_the_config) {
    const char *dir = temp_dir("predict-threshold");
    char weights[512], img[512], out[512], args[4096], log[16384], path[1024];
    snprintf(weights, sizeof weights, "%s/model.h5", dir);
    snprintf(img, sizeof img, "%s/scan.png", dir);
    snprintf(out, sizeof out, "%s/pred", dir);
    mr_config c;
    write_weights(weights, &c);
    write_lesion_png(img, 128, 128, 6);
    snprintf(args, sizeof args, "--weights %s %s --out %s --threshold 0.9999", weights, img, out);
    cr_assert_eq(run_predict(args, log, sizeof log), 0, "%s", log);
    snprintf(path, sizeof path, "%s/scan_pred.json", out);
    char *res = read_text(path);
    cr_assert(strstr(res, "\"detections\": []") && strstr(res, "\"threshold\": 0.9999"), "%s", res);
    free(res);
    snprintf(args, sizeof args, "--weights %s %s --out %s --threshold 0", weights, img, out);
    cr_assert_eq(run_predict(args, log, sizeof log), 0, "%s", log);
    res = read_text(path);
    cr_assert_gt(count_substr(res, "\"class_id\""), 0, "%s", res);
    free(res);
    snprintf(args, sizeof args, "--weights %s %s --out %s --threshold 1.5", weights, img, out);
    cr_assert_eq(run_predict(args, log, sizeof log), 2, "%s", log);
}

/* A temporary folder `name` holding model.h5 (the tiny config, seeded weights) and a 96x96
 * scan.png, their paths in weights and img (512 bytes each); returns the folder. */
static const char *weights_and_scan(const char *name, char *weights, char *img) {
    const char *dir = temp_dir(name);
    snprintf(weights, 512, "%s/model.h5", dir);
    snprintf(img, 512, "%s/scan.png", dir);
    mr_config c;
    write_weights(weights, &c);
    write_lesion_png(img, 96, 96, 3);
    return dir;
}

/* The startup banner says something only when it is worth knowing: a pin to one of OpenBLAS's
 * fallback kernels (Haswell, Prescott) on a CPU with AVX-512 gets one line saying what unsetting
 * it gains; no pin (mrcnn picks the AVX-512 kernel itself) and a pin to that kernel say
 * nothing. */
Test(predict, banner_speaks_only_of_a_pinned_slower_kernel) {
    char weights[512], img[512], args[4096], log[16384];
    const char *dir = weights_and_scan("predict-banner", weights, img);
    const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                       __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                       __builtin_cpu_supports("avx512vl");
    const struct {
        const char *env;
        bool slower;
    } pins[4] = {{"env OPENBLAS_CORETYPE=Haswell", true},
                 {"env OPENBLAS_CORETYPE=Prescott", true},
                 {"env -u OPENBLAS_CORETYPE", false},
                 {"env OPENBLAS_CORETYPE=SkylakeX", false}};
    for (int i = 0; i < 4; i++) {
        const char *bin = getenv("MRCNN_BIN") ? getenv("MRCNN_BIN") : "build/mrcnn";
        snprintf(args, sizeof args, "%s '%s' predict --weights %s %s --out %s/pred", pins[i].env,
                 bin, weights, img, dir);
        cr_assert_eq(run_shell(args, log, sizeof log), 0, "%s", log);
        int want = pins[i].slower && avx512 ? 1 : 0;
        cr_assert_eq(count_substr(log, "unsetting it would use this CPU's AVX-512 kernels"), want,
                     "%s: %s", pins[i].env, log);
        cr_assert_eq(count_substr(log, "OpenBLAS"), 0, "no other banner line: %s", log);
    }
}

/* Asked for speed, --bf16 says once where this CPU's bfloat16 products are the slower ones
 * (Intel's AVX-512 cores: one bf16 dot product a cycle against two float FMAs) and nothing where
 * they are faster (AMD Zen 4). The verb's probe and this one are separate measurements, so a CPU
 * near the 0.9x line may answer either way; outside 0.7-1.1 the answer is fixed. */
Test(predict, bf16_warns_where_it_is_slower_than_float32) {
    if (!mr_bf16_supported()) cr_skip_test("this CPU has no AVX-512 BF16: --bf16 is refused");
    const double speedup = mr_bf16_speedup();
    cr_assert(speedup > 0.1 && speedup < 10.0, "bf16 probe: %g", speedup);
    char weights[512], img[512], args[2048], log[16384];
    const char *dir = weights_and_scan("predict-bf16-warn", weights, img);
    snprintf(args, sizeof args, "--bf16 --weights %s %s %s --out %s/pred", weights, img, img, dir);
    cr_assert_eq(run_predict(args, log, sizeof log), 0, "%s", log);
    const int warned = count_substr(log, "this CPU multiplies bfloat16 at");
    cr_assert_leq(warned, 1, "one warning a process: %s", log);
    if (speedup < 0.7)
        cr_assert_eq(warned, 1, "bf16 at %.2fx float32's speed: %s", speedup, log);
    else if (speedup > 1.1)
        cr_assert_eq(warned, 0, "bf16 at %.2fx float32's speed: %s", speedup, log);
    cr_log_info("bf16 at %.2fx float32's speed here; predict warned %d time(s)", speedup, warned);
}

/* One line naming the problem, non-zero exit. */
static void expect_one_line_failure(const char *args, const char *needle) {
    char log[16384];
    int rc = run_predict(args, log, sizeof log);
    cr_assert_neq(rc, 0, "%s: %s", args, log);
    cr_assert(strstr(log, needle), "%s: expected '%s' in: %s", args, needle, log);
    cr_assert_eq(count_substr(log, "\n"), 1, "%s: one line: %s", args, log);
}

Test(predict, bad_inputs_fail_with_one_clear_line) {
    const char *dir = temp_dir("predict-bad");
    char weights[512], img[512], args[4096], cfg[512], keras[512];
    snprintf(weights, sizeof weights, "%s/model.h5", dir);
    snprintf(img, sizeof img, "%s/scan.png", dir);
    mr_config c;
    write_weights(weights, &c);
    write_lesion_png(img, 128, 128, 7);

    snprintf(args, sizeof args, "--weights %s/missing.h5 %s --out %s/o", dir, img, dir);
    expect_one_line_failure(args, "missing.h5");

    /* A Keras file holds no config. */
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    random_test_weights(&m, 3);
    snprintf(keras, sizeof keras, "%s/keras.h5", dir);
    cr_assert_eq(mr_weights_save_keras(keras, &m.params), MR_OK, "%s", mr_last_error());
    mr_model_free(&m);
    snprintf(args, sizeof args, "--weights %s %s --out %s/o", keras, img, dir);
    expect_one_line_failure(args, "--config");

    /* A config that does not match the weights. */
    snprintf(cfg, sizeof cfg, "%s/four.json", dir);
    write_file(cfg, "{\"BACKBONE\": \"resnet50\", \"BACKBONE_FILTERS\": 8, "
                    "\"TOP_DOWN_PYRAMID_SIZE\": 32, \"RPN_CONV_DEPTH\": 32, "
                    "\"FPN_CLASSIF_FC_LAYERS_SIZE\": 64, \"IMAGE_CHANNEL_COUNT\": 1, "
                    "\"MEAN_PIXEL\": [100.0], \"IMAGE_MIN_DIM\": 128, \"IMAGE_MAX_DIM\": 128, "
                    "\"RPN_ANCHOR_SCALES\": [16, 32, 64, 128, 256], "
                    "\"CLASS_NAMES\": [\"BG\", \"a\", \"b\", \"c\"]}");
    snprintf(args, sizeof args, "--weights %s --config %s %s --out %s/o", weights, cfg, img, dir);
    expect_one_line_failure(args, "config mismatch");

    /* No usable image at all. */
    snprintf(args, sizeof args, "--weights %s %s/nope.png --out %s/o", weights, dir, dir);
    char log[16384];
    cr_assert_neq(run_predict(args, log, sizeof log), 0, "%s", log);
    cr_assert(strstr(log, "nope.png"), "%s", log);
}

/* The JSON files hold the exact masks, so scoring them gives what scoring the model gives
 * (through the library units; the other tests here run the binary). */
Test(predict, evaluating_the_json_equals_evaluating_the_model) {
    const char *dir = temp_dir("predict-eval");
    char weights[512], data[512], pred[512], cfg_path[512], path[1024];
    snprintf(weights, sizeof weights, "%s/model.h5", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(pred, sizeof pred, "%s/pred", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    cr_assert_eq(mkdir(data, 0755), 0);
    mr_config c;
    write_weights(weights, &c);
    char *json = mr_config_to_json(&c);
    write_file(cfg_path, json);
    free(json);
    /* Three scans, each annotated with a benign box around its ellipse's middle. */
    char via[4096] = "{";
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/s%d.png", data, k);
        write_lesion_png(path, 128, 96, 30 + (uint64_t)k);
        snprintf(via + strlen(via), sizeof via - strlen(via),
                 "%s\"s%d\": {\"filename\": \"s%d.png\", \"size\": 1, \"regions\": [{"
                 "\"shape_attributes\": {\"name\": \"rect\", \"x\": %d, \"y\": 30, \"width\": 30,"
                 " \"height\": 24}, \"region_attributes\": {\"class\": \"benign\"}}]}",
                 k ? ", " : "", k, k, 30 + 10 * k);
    }
    strcat(via, "}");
    snprintf(path, sizeof path, "%s/via_region_data.json", data);
    write_file(path, via);
    /* The units directly: mr_predict writes the JSON, mr_evaluate_run scores both ways. */
    const char *inputs[] = {data};
    mr_predict_options po = {.model = {.weights = weights, .threshold = 0.0},
                             .out_dir = pred,
                             .inputs = inputs,
                             .n_inputs = 1};
    mr_predict_summary sum;
    cr_assert_eq(mr_predict(&po, &sum), MR_OK, "%s", mr_last_error());
    cr_assert_eq(sum.images_done, 3);
    mr_eval_request r = {
        .weights = weights, .data = {.data = data}, .part = MR_DATA_ALL, .threshold = 0.0};
    mr_eval_run *run = calloc(1, sizeof *run);
    for (int way = 0; way < 2; way++) {
        if (way == 1) {
            r.weights = NULL;
            r.predictions = pred;
            r.config = cfg_path;
        }
        cr_assert_eq(mr_evaluate_run(&r, run), MR_OK, "%s", mr_last_error());
        snprintf(path, sizeof path, "%s/%s", dir, way ? "by-json" : "by-model");
        cr_assert_eq(mr_evaluation_write(&run->e, &run->cfg, &run->meta, path), MR_OK, "%s",
                     mr_last_error());
        mr_eval_run_free(run);
    }
    free(run);
    snprintf(path, sizeof path, "%s/by-model/evaluation.json", dir);
    char *a = read_text(path);
    snprintf(path, sizeof path, "%s/by-json/evaluation.json", dir);
    char *b = read_text(path);
    /* Everything from the COCO section on (the header names the sources). */
    const char *ca = strstr(a, "\"coco\""), *cb = strstr(b, "\"coco\"");
    cr_assert(ca && cb);
    cr_assert_str_eq(ca, cb);
    cr_assert(!strstr(a, "\"predictions\": 0,"), "the model made detections to compare: %s", a);
    cr_assert(strstr(a, "\"images\": 3,"), "every image scored: %s", a);
    free(a);
    free(b);
}

/* VIA's own application (VIA 2.0.10's index.html and via.js from the fixtures, loaded in Debian's
 * headless Chromium) opens the project predict wrote, from a page in another folder than the
 * project's: every image is found and shown with its regions and their class attribute. The
 * page is index.html with a <base> pointing at the fixture folder and a script appended that
 * hands the project to VIA's own "Load project" parser and steps through the images. */
Test(predict, via_opens_the_project_in_headless_chromium, .timeout = 240) {
    if (access("/usr/bin/chromium", X_OK) != 0)
        cr_skip_test("/usr/bin/chromium missing: `make test` installs it (package chromium)");
    const char *index_html = fixture_path("via/via2x_ox-vgg_app/index.html");
    char *app_dir = realpath(index_html, NULL);
    cr_assert_not_null(app_dir);
    *strrchr(app_dir, '/') = '\0';
    const char *dir = temp_dir("predict-via");
    char weights[512], images[600], out[600], args[4096], log[16384], path[1024];
    snprintf(weights, sizeof weights, "%s/model.h5", dir);
    snprintf(images, sizeof images, "%s/scans", dir);
    mkdir(images, 0777);
    mr_config c;
    write_weights(weights, &c);
    /* A space and a '#' in names: VIA puts the path into an <img src>. */
    const char *names[3] = {"case 1.png", "case#2.png", "case3.png"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", images, names[i]);
        write_lesion_png(path, 160 - 16 * i, 120 + 8 * i, (uint64_t)i + 5);
    }
    /* Trailing and doubled slashes as a user types them: nothing printed doubles a slash. */
    snprintf(out, sizeof out, "%s//pred/", dir);
    snprintf(args, sizeof args, "--weights %s %s/ --out %s", weights, images, out);
    cr_assert_eq(run_predict(args, log, sizeof log), 0, "%s", log);
    cr_assert_null(strstr(log, "//"), "a doubled slash in: %s", log);
    cr_assert(strstr(log, "Project > Load project") && strstr(log, "/scans/"), "the hint: %s", log);

    snprintf(path, sizeof path, "%s/pred/via_project.json", dir);
    char *project = read_text(path);
    cJSON *root = cJSON_Parse(project);
    cr_assert_not_null(root);
    int n_regions[3] = {0};
    const cJSON *meta = cJSON_GetObjectItem(root, "_via_img_metadata"), *e;
    int k = 0, total = 0;
    cJSON_ArrayForEach(e, meta) {
        n_regions[k] = cJSON_GetArraySize(cJSON_GetObjectItem(e, "regions"));
        total += n_regions[k++];
    }
    cr_assert_eq(k, 3);
    cr_assert_gt(total, 0, "detections to show (DETECTION_MIN_CONFIDENCE 0)");

    /* The harness page lives in the test folder, VIA's files are read from the fixtures. */
    char *html = read_text(index_html);
    char *body_end = strstr(html, "</body>"), *head = strstr(html, "<head>");
    cr_assert(body_end && head);
    snprintf(path, sizeof path, "%s/via-harness.html", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%.*s<head><base href=\"file://%s/\">", (int)(head - html), html, app_dir);
    fprintf(f, "%.*s", (int)(body_end - head - 6), head + 6);
    fprintf(f,
            "<script>\n"
            "window.addEventListener('load', function () {\n"
            "  var r = {images: [], errors: []};\n"
            "  window.addEventListener('error', function (e) { r.errors.push(String(e.message)); "
            "});\n"
            "  project_open_parse_json_file(JSON.stringify(%s));\n"
            "  r.count = _via_img_count;\n"
            "  var i = 0, waited = 0;\n"
            "  function done() {\n"
            "    var pre = document.createElement('pre');\n"
            "    pre.textContent = 'VIA' + 'CHECK ' + JSON.stringify(r) + ' E' + 'ND';\n"
            "    document.body.appendChild(pre);\n"
            "  }\n"
            "  function next() { i++; waited = 0; if (i < _via_img_count) _via_show_img(i); }\n"
            "  function step() {\n"
            "    if (i >= _via_img_count) return done();\n"
            "    var m = _via_img_metadata[_via_image_id_list[i]];\n"
            "    if (_via_image_index === i && _via_current_image_loaded) {\n"
            "      r.images.push({name: m.filename, w: _via_current_image.naturalWidth,\n"
            "        h: _via_current_image.naturalHeight, drawn: _via_canvas_regions.length,\n"
            "        classes: m.regions.map(function (g) { return g.region_attributes['class']; "
            "})});\n"
            "      next();\n"
            "    } else if (++waited > 300) {\n"
            "      r.images.push({name: m.filename, failed: true});\n"
            "      next();\n"
            "    }\n"
            "    setTimeout(step, 20);\n"
            "  }\n"
            "  step();\n"
            "});\n"
            "</script>\n%s",
            project, body_end);
    fclose(f);
    free(html);

    char cmd[4096], dom[1 << 18];
    snprintf(cmd, sizeof cmd,
             "timeout 120 /usr/bin/chromium --headless --no-sandbox --disable-gpu "
             "--user-data-dir='%s/profile' --virtual-time-budget=30000 --dump-dom "
             "'file://%s/via-harness.html' 2>/dev/null",
             dir, dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(dom, 1, sizeof dom - 1, p);
    dom[got] = '\0';
    pclose(p);
    char *check = strstr(dom, "VIACHECK "), *end = check ? strstr(check, " END") : NULL;
    cr_assert(check && end, "VIA's page did not finish: %.3000s", dom);
    *end = '\0';
    /* Text in the DOM dump has &, <, > escaped; the JSON holds none of them. */
    cJSON *r = cJSON_Parse(check + 9);
    cr_assert_not_null(r, "%s", check);
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(r, "errors")), 0, "%s", check);
    cr_assert_eq(cJSON_GetObjectItem(r, "count")->valueint, 3, "%s", check);
    const cJSON *shown = cJSON_GetObjectItem(r, "images");
    cr_assert_eq(cJSON_GetArraySize(shown), 3, "%s", check);
    k = 0;
    cJSON_ArrayForEach(e, shown) {
        cr_assert_null(cJSON_GetObjectItem(e, "failed"), "VIA did not find an image: %s", check);
        const char *name = cJSON_GetObjectItem(e, "name")->valuestring;
        cr_assert(!strcmp(name, names[0]) || !strcmp(name, names[1]) || !strcmp(name, names[2]),
                  "%s", name);
        /* The image VIA shows is the file predict read: its own size. */
        int idx = !strcmp(name, names[0]) ? 0 : !strcmp(name, names[1]) ? 1 : 2;
        cr_assert_eq(cJSON_GetObjectItem(e, "w")->valueint, 160 - 16 * idx, "%s", check);
        cr_assert_eq(cJSON_GetObjectItem(e, "h")->valueint, 120 + 8 * idx, "%s", check);
        cr_assert_eq(cJSON_GetObjectItem(e, "drawn")->valueint, n_regions[k], "%s", check);
        const cJSON *cls;
        cJSON_ArrayForEach(cls, cJSON_GetObjectItem(e, "classes")) {
            cr_assert(cJSON_IsString(cls) && (!strcmp(cls->valuestring, "benign") ||
                                              !strcmp(cls->valuestring, "malignant")),
                      "%s", check);
        }
        k++;
    }
    cJSON_Delete(r);
    cJSON_Delete(root);
    free(project);
    free(app_dir);
}

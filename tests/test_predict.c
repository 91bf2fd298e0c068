/* `mrcnn predict` end to end on the tiny model with random weights: overlays and JSON per image,
 * a VIA project that loads back through mr_annotations_load with the same instances, a corrupt
 * image reported and skipped, --threshold, and one-line failures for bad inputs. Needs
 * MRCNN_BIN (set by `make test`); without it the tests are skipped, visibly. */
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/rng.h"
#include "../data/annotations.h"
#include "../data/image.h"
#include "../layers/inference.h"
#include "../layers/mold.h"
#include "../train/export.h"
#include "testutil.h"

/* ---- fixtures ------------------------------------------------------------------------------ */

/* An mrcnn export of the tiny model (config embedded, DETECTION_MIN_CONFIDENCE 0). */
static void write_weights(const char *path, mr_config *c) {
    mr_config_defaults(c);
    cr_assert_eq(mr_config_load("configs/tiny.json", c), MR_OK, "%s", mr_last_error());
    c->net.detection_min_confidence = 0.0f;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c->net), MR_OK);
    random_test_weights(&m.params, 21);
    char *json = mr_config_to_json(c);
    cr_assert_eq(mr_weights_save(path, &m.params, json, false), MR_OK, "%s", mr_last_error());
    free(json);
    mr_model_free(&m);
}

/* A gray PNG with speckle and a dark ellipse at a seed-dependent place. */
static void write_png(const char *path, int w, int h, uint64_t seed) {
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, w, h, 1), MR_OK);
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    double cx = w * (0.3 + 0.4 * (double)mr_rng_uniform(&rng));
    double cy = h * (0.3 + 0.4 * (double)mr_rng_uniform(&rng));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = (x - cx) / (0.18 * w), dy = (y - cy) / (0.14 * h);
            double v = 80.0 + 70.0 * y / h + 40.0 * (double)mr_rng_uniform(&rng);
            if (dx * dx + dy * dy < 1.0) v = 25.0 + 20.0 * (double)mr_rng_uniform(&rng);
            img.pixels[y * w + x] = (uint8_t)v;
        }
    cr_assert_eq(mr_image_write_png(path, &img), MR_OK, "%s", mr_last_error());
    mr_image_free(&img);
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
static void detect_file(const mr_model *m, const char *path, mr_detections *d) {
    const mr_net_config *n = &m->cfg;
    mr_image img;
    cr_assert_eq(mr_image_load(path, n->image_channels, &img), MR_OK, "%s", mr_last_error());
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 512u << 20), MR_OK);
    mr_tensor *t =
        mr_tensor_4d(&ctx, "images", 1, n->image_max_dim, n->image_max_dim, n->image_channels);
    mr_mold_info info;
    cr_assert_eq(mr_mold_image(t->data, img.pixels, img.height, img.width, n->image_channels,
                               n->image_min_dim, n->image_max_dim, n->mean_pixel, &info),
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
        write_png(path, sizes[i][0], sizes[i][1], (uint64_t)i + 1);
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
            write_png(path, 150, 140, 9);
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
        if (pass == 0)
            cr_assert(strstr(text, "\"../images/\""), "default_filepath: %s", text);
        else
            cr_assert(strstr(text, "\"../other/d_scan.png\""), "%s", text);
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
        int64_t total = 0, thin_masks = 0;
        for (int64_t r = 0; r < ann.n; r++) {
            const mr_image_record *rec = &ann.records[r];
            char *real = realpath(rec->path, NULL);
            cr_assert_not_null(real, "VIA path %s does not resolve", rec->path);
            free(real);
            mr_detections d;
            detect_file(&m, rec->path, &d);
            cr_assert_eq(rec->n_instances, d.n, "%s: %lld regions, %lld detections", rec->path,
                         (long long)rec->n_instances, (long long)d.n);
            cr_assert_eq(rec->width, d.image_w);
            int64_t np = d.image_h * d.image_w;
            uint8_t *mask = malloc((size_t)np);
            for (int64_t i = 0; i < d.n; i++) {
                const mr_instance *inst = &rec->instances[i];
                cr_assert_eq(inst->class_id, d.class_ids[i], "%s region %lld", rec->path,
                             (long long)i);
                memset(mask, 0, (size_t)np);
                mr_shape_rasterize(&inst->shape, mask, rec->width, rec->height, 1);
                int64_t inter = 0, uni = 0;
                for (int64_t k = 0; k < np; k++) {
                    inter += mask[k] && d.masks[i * np + k];
                    uni += mask[k] || d.masks[i * np + k];
                }
                double iou = uni ? (double)inter / (double)uni : 1.0;
                if (getenv("MR_TEST_VERBOSE")) {
                    int64_t am = 0, ap = 0;
                    for (int64_t k = 0; k < np; k++) am += d.masks[i * np + k], ap += mask[k];
                    fprintf(
                        stderr,
                        "%s region %lld: mask %lld px, polygon %lld px (%lld points), IoU %.3f\n",
                        rec->path, (long long)i, (long long)am, (long long)ap,
                        (long long)inst->shape.n_points, iou);
                }
                /* VIA polygons have integer vertices and load by pixel centres, so a mask one or
                 * two pixels thin cannot come back exactly (cmd_predict.c makes it a rectangle a
                 * pixel thicker): for those the region must cover the mask. */
                int64_t y0 = d.image_h, y1 = -1, x0 = d.image_w, x1 = -1, area = 0;
                for (int64_t k = 0; k < np; k++)
                    if (d.masks[i * np + k]) {
                        int64_t y = k / d.image_w, x = k % d.image_w;
                        y0 = y < y0 ? y : y0, y1 = y > y1 ? y : y1;
                        x0 = x < x0 ? x : x0, x1 = x > x1 ? x : x1;
                        area++;
                    }
                bool thin = y1 - y0 < 2 || x1 - x0 < 2;
                if (!thin)
                    cr_assert_geq(iou, 0.9, "%s region %lld: polygon vs mask IoU %.3f", rec->path,
                                  (long long)i, iou);
                else
                    cr_assert_geq((double)inter, 0.9 * (double)area,
                                  "%s region %lld: thin mask of %lld px, %lld covered", rec->path,
                                  (long long)i, (long long)area, (long long)inter);
                thin_masks += thin;
            }
            total += d.n;
            free(mask);

            /* The JSON result and the overlay of this image. */
            char stem[256], json_path[1200], png_path[1200];
            snprintf(stem, sizeof stem, "%s", strrchr(rec->path, '/') + 1);
            *strrchr(stem, '.') = '\0';
            snprintf(json_path, sizeof json_path, "%s/%s_pred.json", out, stem);
            snprintf(png_path, sizeof png_path, "%s/%s_pred.png", out, stem);
            char *res = read_text(json_path);
            cr_assert_eq(count_substr(res, "\"class_id\""), d.n, "%s", res);
            cr_assert(strstr(res, "\"polygons\"") && strstr(res, "\"area\""), "%s", res);
            free(res);
            mr_image ov;
            cr_assert_eq(mr_image_load(png_path, 3, &ov), MR_OK, "%s", mr_last_error());
            cr_assert(ov.width == d.image_w && ov.height == d.image_h, "overlay at image size");
            mr_image_free(&ov);
            mr_detections_free(&d);
        }
        cr_assert_gt(total, 0, "the test needs detections");
        cr_assert_lt(thin_masks, total / 2, "most masks must be compared by IoU");
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
    write_png(path, 140, 120, 4);
    snprintf(path, sizeof path, "%s/2_broken.png", images);
    write_file(path, "\x89PNG\r\n\x1a\n truncated");
    snprintf(path, sizeof path, "%s/3_good.png", images);
    write_png(path, 120, 140, 5);
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
    write_png(img, 128, 128, 6);
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
    write_png(img, 128, 128, 7);

    snprintf(args, sizeof args, "--weights %s/missing.h5 %s --out %s/o", dir, img, dir);
    expect_one_line_failure(args, "missing.h5");

    /* A Keras file holds no config. */
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    random_test_weights(&m.params, 3);
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

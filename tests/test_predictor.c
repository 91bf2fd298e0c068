/* The predictor unit (train/predictor.h) linked directly: the model loaded once and detecting as
 * the network does on the molded image, polygons of a mask, the inputs list (folders sorted,
 * duplicates once, non-images counted, bad paths reported), a batch written by mr_predict that is
 * byte for byte what `mrcnn predict` writes, and a failed write stopping the batch with only whole
 * files left. */
#include <errno.h>
#include <math.h>
#include <sys/stat.h>

#include "../core/file.h"
#include "../core/rng.h"
#include "../data/image.h"
#include "../layers/inference.h"
#include "../layers/mold.h"
#include "../train/predictor.h"
#include "testutil.h"

/* An mrcnn export of the tiny model (config embedded, DETECTION_MIN_CONFIDENCE 0). */
static void write_weights(const char *path) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    c.net.detection_min_confidence = 0.0f;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    random_test_weights(&m, 21);
    char *json = mr_config_to_json(&c);
    cr_assert_eq(mr_weights_save(path, &m.params, json, false), MR_OK, "%s", mr_last_error());
    free(json);
    mr_model_free(&m);
}

static void write_text_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return s;
}

static void same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = slurp(a, &na), *y = slurp(b, &nb);
    cr_assert(na == nb && !memcmp(x, y, na), "%s and %s differ", a, b);
    free(x);
    free(y);
}

typedef struct {
    char lines[8][512];
    int n;
} notes;

static void take_note(void *user, const char *line) {
    notes *n = user;
    if (n->n < 8) snprintf(n->lines[n->n++], sizeof n->lines[0], "%s", line);
}

static mr_predictor_options model_opts(const char *weights) {
    return (mr_predictor_options){.weights = weights, .threshold = (double)NAN};
}

Test(predictor, detects_what_the_model_detects_on_the_molded_image) {
    const char *dir = temp_dir("predictor");
    char weights[512], png[512];
    snprintf(weights, sizeof weights, "%s/model.h5", dir);
    snprintf(png, sizeof png, "%s/scan.png", dir);
    write_weights(weights);
    write_lesion_png(png, 160, 120, 3);

    mr_predictor p;
    mr_predictor_options o = model_opts(weights);
    cr_assert_eq(mr_predictor_load(&p, &o), MR_OK, "%s", mr_last_error());
    cr_assert_float_eq(p.threshold, 0.0f, 0.0f, "the config's DETECTION_MIN_CONFIDENCE");
    cr_assert_eq(p.format, MR_WEIGHTS_EXPORT);
    cr_assert_str_eq(mr_predictor_class_name(&p, 1), "benign");
    cr_assert_str_eq(mr_predictor_class_name(&p, 7), "class7");

    mr_instances d;
    mr_image rgb;
    cr_assert_eq(mr_predictor_detect(&p, png, &d, &rgb), MR_OK, "%s", mr_last_error());
    cr_assert_eq(rgb.width, 160);
    cr_assert_eq(rgb.height, 120);
    cr_assert_eq(rgb.channels, 3, "RGB for drawing");
    cr_assert_eq(d.image_w, 160);
    cr_assert_eq(d.image_h, 120);
    cr_assert_gt(d.n, 0, "random weights leaning to lesions detect something");
    /* Each detection reports its class probabilities: they sum to 1 and its own class's is its
     * score (with class-agnostic NMS, the other classes' are what the lesion also could be). */
    cr_assert_not_null(d.class_probs);
    cr_assert_eq(d.n_classes, p.cfg.net.num_classes);
    for (int64_t i = 0; i < d.n; i++) {
        double sum = 0.0;
        for (int64_t k = 0; k < d.n_classes; k++) sum += (double)d.class_probs[i * d.n_classes + k];
        cr_assert_float_eq(sum, 1.0, 1e-5, "detection %lld", (long long)i);
        cr_assert_eq(d.class_probs[i * d.n_classes + d.class_ids[i]], d.scores[i]);
    }

    /* The same, by hand: the gray image molded and run through the model. */
    mr_image gray;
    cr_assert_eq(mr_image_load(png, 1, &gray), MR_OK);
    const mr_net_config *n = &p.cfg.net;
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 512u << 20), MR_OK);
    mr_tensor *t = mr_tensor_4d(&ctx, "images", 1, n->image_max_dim, n->image_max_dim, 1);
    mr_mold_info info;
    cr_assert_eq(mr_mold_image(t->data, gray.pixels, gray.height, gray.width, 1, n->image_min_dim,
                               n->image_max_dim, n->mean_pixel, mr_net_pixel_std(n), &info),
                 MR_OK);
    mr_instances e;
    cr_assert_eq(mr_model_detect(&ctx, &p.model, t, &info.geo, p.threshold, &e), MR_OK);
    cr_assert_eq(e.n, d.n);
    cr_assert_eq(memcmp(e.boxes, d.boxes, sizeof(int64_t) * 4 * (size_t)d.n), 0);
    cr_assert_eq(memcmp(e.masks, d.masks, (size_t)(d.n * d.image_h * d.image_w)), 0);
    mr_instances_free(&e);
    mr_ctx_free(&ctx);
    mr_image_free(&gray);

    /* Polygons: one list per detection, each part a closed outline with area. */
    mr_mask_polygons *polys = NULL;
    cr_assert_eq(mr_predictor_polygons(&d, &polys), MR_OK);
    for (int64_t i = 0; i < d.n; i++)
        for (int k = 0; k < polys[i].count; k++) {
            cr_assert_geq(polys[i].items[k].n_points, 3);
            cr_assert_gt(polys[i].items[k].area, 0.0);
        }
    mr_predictor_polygons_free(polys, d.n);
    mr_instances_free(&d);
    mr_image_free(&rgb);

    /* A missing image: an error naming it, the predictor still usable. */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/none.png", dir);
    cr_assert_neq(mr_predictor_detect(&p, missing, &d, NULL), MR_OK);
    cr_assert(strstr(mr_last_error(), "none.png"), "%s", mr_last_error());
    cr_assert_eq(mr_predictor_detect(&p, png, &d, NULL), MR_OK, "%s", mr_last_error());
    mr_instances_free(&d);
    mr_predictor_free(&p);

    /* --threshold's override, and a missing weights file with nothing to free. */
    o.threshold = 0.5;
    cr_assert_eq(mr_predictor_load(&p, &o), MR_OK, "%s", mr_last_error());
    cr_assert_float_eq(p.threshold, 0.5f, 0.0f);
    mr_predictor_free(&p);
    o.weights = missing;
    cr_assert_neq(mr_predictor_load(&p, &o), MR_OK);
    cr_assert(!p.loaded);
    mr_predictor_free(&p);
}

Test(predictor, polygons_of_a_rectangle_and_of_an_empty_mask) {
    enum { W = 12, H = 9 };
    uint8_t masks[2 * W * H] = {0};
    for (int y = 2; y < 6; y++)
        for (int x = 3; x < 9; x++) masks[y * W + x] = 1;
    double boxes[8] = {2, 3, 6, 9, 0, 0, 1, 1};
    int64_t ids[2] = {1, 2};
    float scores[2] = {0.9f, 0.8f};
    mr_instances d = {.n = 2,
                      .boxes = boxes,
                      .class_ids = ids,
                      .scores = scores,
                      .masks = masks,
                      .image_h = H,
                      .image_w = W};
    mr_mask_polygons *polys = NULL;
    cr_assert_eq(mr_predictor_polygons(&d, &polys), MR_OK);
    cr_assert_eq(polys[0].count, 1);
    cr_assert_eq(polys[0].items[0].n_points, 4, "a rectangle's outline is its four corners");
    cr_assert_float_eq(polys[0].items[0].area, 24.0, 1e-9);
    cr_assert_eq(polys[1].count, 0, "an empty mask has no polygon");
    mr_predictor_polygons_free(polys, d.n);
}

Test(predictor, inputs_are_sorted_unique_images_and_bad_paths_are_reported) {
    const char *dir = temp_dir("predictor-in");
    char path[600], out[600];
    const char *names[] = {"c.png", "a.JPG", "b.bmp", "notes.txt", "x_pred.png"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        write_text_file(path, "x");
    }
    snprintf(path, sizeof path, "%s/sub", dir);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/sub/d.png", dir);
    write_text_file(path, "x");

    char *real = realpath(dir, NULL);
    mr_predict_inputs l = {0};
    notes n = {0};
    /* The folder as the output folder: our overlay x_pred.png is not an input. */
    cr_assert_eq(mr_predict_inputs_add(&l, dir, real, take_note, &n), 0);
    cr_assert_eq(l.count, 3);
    cr_assert(strstr(l.items[0].path, "/a.JPG") && strstr(l.items[1].path, "/b.bmp") &&
              strstr(l.items[2].path, "/c.png"));
    cr_assert_eq(l.skipped, 2, "notes.txt and our overlay; subfolders are not read");
    /* A file of the folder again: kept once. */
    snprintf(path, sizeof path, "%s/b.bmp", dir);
    cr_assert_eq(mr_predict_inputs_add(&l, path, real, take_note, &n), 0);
    cr_assert_eq(l.count, 3);
    /* Elsewhere the overlay name is an ordinary image. */
    mr_predict_inputs_free(&l);
    cr_assert_eq(mr_predict_inputs_add(&l, dir, NULL, take_note, &n), 0);
    cr_assert_eq(l.count, 4);
    snprintf(out, sizeof out, "%s/missing.png", dir);
    cr_assert_eq(mr_predict_inputs_add(&l, out, NULL, take_note, &n), 1);
    cr_assert_eq(n.n, 1);
    cr_assert(strstr(n.lines[0], "missing.png: ") && strstr(n.lines[0], strerror(ENOENT)), "%s",
              n.lines[0]);
    mr_predict_inputs_free(&l);
    free(real);
}

Test(predictor, a_batch_is_byte_for_byte_what_mrcnn_predict_writes, .timeout = 300) {
    const char *dir = temp_dir("predictor-batch");
    char weights[512], images[512], other[512], lib_out[512], cli_out[512], path[1024];
    snprintf(weights, sizeof weights, "%s/model.h5", dir);
    snprintf(images, sizeof images, "%s/images", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    snprintf(lib_out, sizeof lib_out, "%s/lib", dir);
    snprintf(cli_out, sizeof cli_out, "%s/cli", dir);
    cr_assert_eq(mkdir(images, 0755), 0);
    cr_assert_eq(mkdir(other, 0755), 0);
    write_weights(weights);
    const char *names[] = {"b.png", "a.png", "bad.png"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", images, names[i]);
        write_lesion_png(path, 140 + 20 * i, 120, (uint64_t)i + 5);
    }
    snprintf(path, sizeof path, "%s/bad.png", images);
    write_text_file(path, "not a png");
    /* Same stem in another folder: made unique ("a-2"), and filenames become relative paths. */
    snprintf(path, sizeof path, "%s/a.png", other);
    write_lesion_png(path, 128, 128, 9);

    const char *inputs[] = {images, path};
    notes n = {0};
    mr_predict_options o = {.model = model_opts(weights),
                            .out_dir = lib_out,
                            .inputs = inputs,
                            .n_inputs = 2,
                            .user = &n,
                            .note = take_note};
    mr_predict_summary s;
    cr_assert_eq(mr_predict(&o, &s), MR_OK, "%s", mr_last_error());
    cr_assert_eq(s.images_done, 3);
    cr_assert_eq(s.failures, 1, "bad.png skipped");
    cr_assert_eq(s.num_classes, 3);
    cr_assert_str_eq(s.class_names[2], "malignant");
    int64_t by_class = 0;
    for (int c = 0; c < s.num_classes; c++) by_class += s.per_class[c];
    cr_assert_eq(by_class, s.detections);
    snprintf(path, sizeof path, "%s/via_project.json", lib_out);
    cr_assert_str_eq(s.project, path);

    char args[4096], log[16384];
    snprintf(args, sizeof args, "predict --weights %s %s %s/a.png --out %s", weights, images, other,
             cli_out);
    cr_assert_eq(run_mrcnn(args, log, sizeof log), 1, "one input skipped: %s", log);
    const char *files[] = {"a_pred.json",   "a_pred.png",   "b_pred.json",     "b_pred.png",
                           "a-2_pred.json", "a-2_pred.png", "via_project.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[1100], b[1100];
        snprintf(a, sizeof a, "%s/%s", lib_out, files[i]);
        snprintf(b, sizeof b, "%s/%s", cli_out, files[i]);
        same_file(a, b);
    }
    size_t len;
    snprintf(path, sizeof path, "%s/a-2_pred.json", lib_out);
    char *json = slurp(path, &len);
    cr_assert(strstr(json, "\"image\": \"../other/a.png\""), "%s", json);
    free(json);

    /* Nothing to predict: one line, before any weights are read. */
    const char *none[] = {other};
    snprintf(path, sizeof path, "%s/notes.txt", other);
    remove(path);
    snprintf(path, sizeof path, "%s/a.png", other);
    remove(path);
    o.inputs = none;
    o.n_inputs = 1;
    o.model.weights = "/nonexistent/weights.h5";
    cr_assert_eq(mr_predict(&o, &s), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "no images to predict on"), "%s", mr_last_error());
}

Test(predictor, a_failed_write_stops_the_batch_leaving_whole_files, .timeout = 300) {
    const char *dir = temp_dir("predictor-full");
    char weights[512], images[512], out[512], path[1024];
    snprintf(weights, sizeof weights, "%s/model.h5", dir);
    snprintf(images, sizeof images, "%s/images", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    cr_assert_eq(mkdir(images, 0755), 0);
    write_weights(weights);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/s%d.png", images, i);
        write_lesion_png(path, 128, 128, (uint64_t)i + 1);
    }
    const char *inputs[] = {images};
    mr_predict_options o = {
        .model = model_opts(weights), .out_dir = out, .inputs = inputs, .n_inputs = 1};
    mr_predict_summary s;
    /* Overlay and JSON of s0, the overlay of s1; then the disk is full. */
    mr_file_fail_after(3);
    mr_status st = mr_predict(&o, &s);
    mr_file_fail_after(-1);
    cr_assert_eq(st, MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "s1_pred.json") &&
                  strstr(mr_last_error(), "stopped at image 2 of 3") &&
                  strstr(mr_last_error(), strerror(ENOSPC)),
              "%s", mr_last_error());
    cr_assert_eq(s.images_done, 1);
    snprintf(path, sizeof path, "%s/s1_pred.png", out);
    cr_assert_eq(access(path, F_OK), 0, "written before the failure");
    snprintf(path, sizeof path, "%s/s1_pred.json", out);
    cr_assert_neq(access(path, F_OK), 0, "no partial file");
    snprintf(path, sizeof path, "%s/s2_pred.png", out);
    cr_assert_neq(access(path, F_OK), 0, "stopped");
    snprintf(path, sizeof path, "%s/via_project.json", out);
    cr_assert_neq(access(path, F_OK), 0, "no project for a stopped batch");
}

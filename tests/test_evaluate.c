/* Evaluation from prediction files (train/evaluate.h with data/predictions.h): predictions in
 * `mrcnn predict`'s JSON format score as their masks say, whether the masks come as COCO RLE
 * or as polygons; images without a file count as missed; malformed files fail with the file
 * and the place. */
#include <cjson/cJSON.h>
#include <string.h>
#include <sys/stat.h>

#include "../data/annotations.h"
#include "../data/image.h"
#include "../data/predictions.h"
#include "../data/rle.h"
#include "../layers/model.h"
#include "../train/evaluate.h"
#include "../train/weights.h"
#include "testutil.h"

enum { W = 40, H = 30 };

static void put_file(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

/* Two images: a.png with a benign 10x8 rectangle at (x 5, y 4), b.png with a malignant one at
 * (x 20, y 10) of 12x10. */
static void make_set(const char *dir, mr_annotations *ann) {
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, W, H, 1), MR_OK);
    memset(img.pixels, 90, W * H);
    char path[512];
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, k ? "b.png" : "a.png");
        cr_assert_eq(mr_image_write_png(path, &img), MR_OK);
    }
    mr_image_free(&img);
    put_file(dir, "via.json",
             "{\"a\": {\"filename\": \"a.png\", \"size\": 1, \"regions\": [{\"shape_attributes\": "
             "{\"name\": \"rect\", \"x\": 4.5, \"y\": 3.5, \"width\": 10, \"height\": 8}, "
             "\"region_attributes\": {\"class\": \"benign\"}}]},\n"
             " \"b\": {\"filename\": \"b.png\", \"size\": 1, \"regions\": [{\"shape_attributes\": "
             "{\"name\": \"rect\", \"x\": 19.5, \"y\": 9.5, \"width\": 12, \"height\": 10}, "
             "\"region_attributes\": {\"class\": \"malignant\"}}]}}\n");
    const char *names[3] = {"BG", "benign", "malignant"};
    mr_load_options o = {.class_names = names, .n_class_names = 3};
    snprintf(path, sizeof path, "%s/via.json", dir);
    cr_assert_eq(mr_annotations_load(path, &o, ann), MR_OK, "%s", mr_last_error());
    cr_assert_eq(ann->n, 2);
}

/* The RLE of a w x h rectangle at (x, y) in the W x H image. */
static char *rect_rle(int x, int y, int w, int h) {
    uint8_t m[W * H] = {0};
    for (int r = y; r < y + h; r++)
        for (int c = x; c < x + w; c++) m[r * W + c] = 1;
    char *counts = NULL;
    cr_assert_eq(mr_rle_encode(m, H, W, &counts), MR_OK);
    return counts;
}

static void write_pred(const char *dir, const char *stem, const char *image, const char *dets) {
    char name[128], text[4096];
    snprintf(name, sizeof name, "%s_pred.json", stem);
    snprintf(text, sizeof text,
             "{\"image\": \"../%s\", \"width\": %d, \"height\": %d, \"overlay\": \"\", "
             "\"threshold\": 0, \"detections\": [%s]}",
             image, W, H, dets);
    put_file(dir, name, text);
}

static mr_evaluation score(const mr_annotations *ann, const char *pred_dir, int64_t *missing) {
    mr_evaluation e;
    mr_eval_options o = {.det_threshold = 0.0f, .op_threshold = 0.5f};
    cr_assert_eq(mr_evaluation_init(&e, 3, &o), MR_OK);
    cr_assert_eq(mr_evaluate_prediction_files(&e, ann, pred_dir, 0, missing), MR_OK, "%s",
                 mr_last_error());
    cr_assert_eq(mr_evaluation_finish(&e), MR_OK);
    return e;
}

Test(evaluate, predictions_as_rle_or_polygons_score_as_their_masks) {
    const char *dir = temp_dir("eval-pred");
    mr_annotations ann;
    make_set(dir, &ann);
    char pred[600], dets[2048];
    snprintf(pred, sizeof pred, "%s/pred", dir);
    cr_assert_eq(mkdir(pred, 0755), 0);
    /* a: exact, as polygons through the pixel corners; b: exact, as RLE. */
    write_pred(
        pred, "a", "a.png",
        "{\"class_id\": 1, \"class\": \"benign\", \"score\": 0.9, \"box\": [4, 5, 12, 15],"
        " \"area\": 80, \"polygons\": [[[4.5, 3.5], [14.5, 3.5], [14.5, 11.5], [4.5, 11.5]]]}");
    char *rle = rect_rle(20, 10, 12, 10);
    snprintf(dets, sizeof dets,
             "{\"class_id\": 2, \"class\": \"malignant\", \"score\": 0.8, \"box\": [10, 20, 20, "
             "32], \"area\": 120, \"polygons\": [], \"rle\": {\"size\": [%d, %d], \"counts\": "
             "\"%s\"}}",
             H, W, rle);
    free(rle);
    write_pred(pred, "b", "b.png", dets);
    int64_t missing = -1;
    mr_evaluation e = score(&ann, pred, &missing);
    cr_assert_eq(missing, 0);
    cr_assert_float_eq(e.mask.mean_ap50, 1.0, 1e-9);
    cr_assert_float_eq(e.mask.mean_ap, 1.0, 1e-9);
    cr_assert_float_eq(e.box.mean_ap, 1.0, 1e-9);
    cr_assert_float_eq(mr_lesion_sensitivity(&e.lesions), 1.0, 1e-9);
    cr_assert_float_eq(mr_lesion_mean_dice(&e.lesions), 1.0, 1e-9);
    mr_evaluation_free(&e);

    /* b's mask shifted down by 5 of its 10 rows: IoU 50/150 < 0.5, so b is missed (a false
     * positive of class 2 and a miss); a's class wrong: matched as a lesion, wrong class. */
    rle = rect_rle(20, 15, 12, 10);
    snprintf(dets, sizeof dets,
             "{\"class_id\": 2, \"class\": \"malignant\", \"score\": 0.8, \"box\": [15, 20, 25, "
             "32], \"area\": 120, \"polygons\": [], \"rle\": {\"size\": [%d, %d], \"counts\": "
             "\"%s\"}}",
             H, W, rle);
    free(rle);
    write_pred(pred, "b", "b.png", dets);
    write_pred(pred, "a", "a.png",
               "{\"class_id\": 2, \"class\": \"malignant\", \"score\": 0.9, \"box\": [4, 5, 12, "
               "15], \"area\": 80, \"polygons\": [[[4.5, 3.5], [14.5, 3.5], [14.5, 11.5], "
               "[4.5, 11.5]]]}");
    e = score(&ann, pred, &missing);
    cr_assert_float_eq(e.mask.mean_ap50, 0.0, 1e-9,
                       "benign has no benign detection, "
                       "malignant's only one misses");
    cr_assert_eq(e.lesions.n_matched, 1);
    cr_assert_eq(e.n_right, 0);
    cr_assert_eq(e.n_classified, 1);
    mr_evaluation_free(&e);

    /* No file for b: it counts as an image without detections. */
    char path[700];
    snprintf(path, sizeof path, "%s/b_pred.json", pred);
    cr_assert_eq(remove(path), 0);
    write_pred(
        pred, "a", "a.png",
        "{\"class_id\": 1, \"class\": \"benign\", \"score\": 0.9, \"box\": [4, 5, 12, 15],"
        " \"area\": 80, \"polygons\": [[[4.5, 3.5], [14.5, 3.5], [14.5, 11.5], [4.5, 11.5]]]}");
    e = score(&ann, pred, &missing);
    cr_assert_eq(missing, 1);
    cr_assert_float_eq(mr_lesion_sensitivity(&e.lesions), 0.5, 1e-9);
    mr_evaluation_free(&e);
    mr_annotations_free(&ann);
}

static void expect_bad_file(const char *text, const char *needle) {
    const char *dir = temp_dir("eval-bad");
    put_file(dir, "x_pred.json", text);
    char path[600];
    snprintf(path, sizeof path, "%s/x_pred.json", dir);
    mr_instances d;
    cr_assert_eq(mr_prediction_file_load(path, &d), MR_ERR_FORMAT, "accepted: %s", text);
    cr_assert(strstr(mr_last_error(), needle), "'%s' lacks '%s'", mr_last_error(), needle);
    cr_assert(strstr(mr_last_error(), "x_pred.json"), "names the file: %s", mr_last_error());
    cr_assert_null(d.masks, "nothing left allocated");
}

Test(evaluate, malformed_prediction_files_fail_with_the_place) {
    expect_bad_file("[1, 2]", "a prediction file is a JSON object");
    expect_bad_file("{\"width\": 4", "not valid JSON");
    expect_bad_file("{\"width\": 0, \"height\": 4, \"detections\": []}", "\"width\" must be");
    expect_bad_file("{\"width\": 1e9, \"height\": 4, \"detections\": []}", "\"width\" must be");
    expect_bad_file("{\"width\": 60000, \"height\": 60000, \"detections\": []}", "larger than");
    expect_bad_file("{\"width\": 4, \"height\": 4, \"detections\": [{\"class_id\": 1.5}]}",
                    "detection 0: \"class_id\"");
    expect_bad_file("{\"width\": 4, \"height\": 4, \"detections\": [{\"class_id\": 1, "
                    "\"score\": 2, \"box\": [0, 0, 1, 1]}]}",
                    "\"score\" must be a number in [0, 1]");
    expect_bad_file("{\"width\": 4, \"height\": 4, \"detections\": [{\"class_id\": 1, "
                    "\"score\": 0.5, \"box\": [0, 0, 1]}]}",
                    "\"box\" must be [y1, x1, y2, x2]");
    expect_bad_file("{\"width\": 4, \"height\": 4, \"detections\": [{\"class_id\": 1, "
                    "\"score\": 0.5, \"box\": [0, 0, 1, 1], \"rle\": {\"size\": [5, 4], "
                    "\"counts\": \"04\"}}]}",
                    "\"rle\" must be {\"size\": [4, 4]");
    expect_bad_file("{\"width\": 4, \"height\": 4, \"detections\": [{\"class_id\": 1, "
                    "\"score\": 0.5, \"box\": [0, 0, 1, 1], \"rle\": {\"size\": [4, 4], "
                    "\"counts\": \"zz\"}}]}",
                    "detection 0: ");
    expect_bad_file("{\"width\": 4, \"height\": 4, \"detections\": [{\"class_id\": 1, "
                    "\"score\": 0.5, \"box\": [0, 0, 1, 1]}]}",
                    "neither \"rle\" nor \"polygons\"");
    expect_bad_file("{\"width\": 4, \"height\": 4, \"detections\": [{\"class_id\": 1, "
                    "\"score\": 0.5, \"box\": [0, 0, 1, 1], \"polygons\": [[[0, 0], [1]]]}]}",
                    "polygon 0 point 1 must be [x, y]");
}

Test(evaluate, a_folder_without_prediction_files_is_an_error) {
    const char *dir = temp_dir("eval-empty");
    mr_prediction_set s;
    cr_assert_eq(mr_prediction_set_load(&s, dir), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "no *_pred.json files"), "%s", mr_last_error());
    put_file(dir, "a_pred.json", "{\"image\": \"x/a.png\"}");
    put_file(dir, "b_pred.json", "{\"image\": \"y/a.png\"}");
    cr_assert_eq(mr_prediction_set_load(&s, dir), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "both describe an image called a.png"), "%s",
              mr_last_error());
}

/* ---- mr_evaluate_run: the data of the run when the config names none ---------------------- */

/* Weights of the tiny model whose embedded config trained on `data` (a flat set: a seeded half
 * held out), and beside them an inference config without DATASET whose MEAN_PIXEL differs. */
static void write_run(const char *dir, const char *data, char *weights, char *config, size_t n) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    snprintf(c.train_data, sizeof c.train_data, "%s", data);
    c.val_data[0] = '\0';
    c.validation_split = 0.5f;
    c.seed = 11;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    random_test_weights(&m, 5);
    char *json = mr_config_to_json(&c);
    snprintf(weights, n, "%s/model.h5", dir);
    cr_assert_eq(mr_weights_save(weights, &m.params, json, false), MR_OK, "%s", mr_last_error());
    mr_model_free(&m);
    /* The inference config: the same network, no DATASET, another MEAN_PIXEL and SEED. */
    cJSON *root = cJSON_Parse(json);
    free(json);
    cr_assert_not_null(root);
    cJSON_DeleteItemFromObject(root, "DATASET");
    cJSON_ReplaceItemInObject(root, "MEAN_PIXEL", cJSON_CreateDoubleArray((double[]){90.0}, 1));
    cJSON_ReplaceItemInObject(root, "SEED", cJSON_CreateNumber(1234));
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    snprintf(config, n, "%s/infer.json", dir);
    put_file(dir, "infer.json", text);
    free(text);
}

Test(evaluate, weights_and_a_config_without_dataset_score_the_runs_validation_images) {
    const char *dir = temp_dir("eval-run");
    char data[600], weights[700], config[700];
    snprintf(data, sizeof data, "%s/data", dir);
    cr_assert_eq(mkdir(data, 0755), 0);
    mr_annotations ann;
    make_set(data, &ann);
    mr_annotations_free(&ann);
    write_run(dir, data, weights, config, sizeof weights);

    mr_eval_request r = {
        .weights = weights, .config = config, .part = MR_DATA_VAL, .threshold = -1.0};
    mr_eval_run *run = calloc(1, sizeof *run);
    cr_assert_eq(mr_evaluate_run(&r, run), MR_OK, "%s", mr_last_error());
    cr_assert(run->dataset_from_weights);
    cr_assert(strstr(run->data, "/data/via.json"), "%s", run->data);
    /* The run's split (its SEED and VALIDATION_SPLIT, not the config's): one of the two. */
    cr_assert_eq(run->cfg.seed, 11);
    cr_assert_eq(run->e.n_images, 1);
    cr_assert_float_eq((double)run->cfg.net.mean_pixel[0], 90.0, 1e-9, "the config's settings");
    mr_eval_run_free(run);

    /* --data still wins; without weights nothing is taken. */
    r.data.data = data;
    r.part = MR_DATA_ALL;
    cr_assert_eq(mr_evaluate_run(&r, run), MR_OK, "%s", mr_last_error());
    cr_assert(!run->dataset_from_weights);
    cr_assert_eq(run->e.n_images, 2);
    mr_eval_run_free(run);
    free(run);

    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load(config, &c), MR_OK, "%s", mr_last_error());
    bool taken = true;
    cr_assert_eq(mr_config_dataset_from_weights(&c, weights, &taken), MR_OK);
    cr_assert(taken);
    cr_assert_str_eq(c.train_data, data);
    /* A config with its own DATASET keeps it. */
    snprintf(c.train_data, sizeof c.train_data, "/elsewhere");
    cr_assert_eq(mr_config_dataset_from_weights(&c, weights, &taken), MR_OK);
    cr_assert(!taken);
    cr_assert_str_eq(c.train_data, "/elsewhere");
}

Test(evaluate, a_config_that_differs_from_the_embedded_one_is_warned_about) {
    const char *dir = temp_dir("eval-warn");
    char data[600], weights[700], config[700], args[3000], log[16384];
    snprintf(data, sizeof data, "%s/data", dir);
    cr_assert_eq(mkdir(data, 0755), 0);
    mr_annotations ann;
    make_set(data, &ann);
    mr_annotations_free(&ann);
    write_run(dir, data, weights, config, sizeof weights);
    snprintf(args, sizeof args, "evaluate --weights %s --config %s", weights, config);
    cr_assert_eq(run_mrcnn(args, log, sizeof log), 0, "%s", log);
    cr_assert(strstr(log, "differs from the config embedded in") && strstr(log, "MEAN_PIXEL"),
              "the warning predict gives: %s", log);
    cr_assert(strstr(log, "names no DATASET; using the data of the run recorded in"), "%s", log);
    cr_assert(strstr(log, "the 1 of 2 images"), "the run's validation half: %s", log);
    /* --quiet keeps the warning and drops the information lines. */
    snprintf(args, sizeof args, "evaluate --weights %s --config %s --quiet", weights, config);
    cr_assert_eq(run_mrcnn(args, log, sizeof log), 0, "%s", log);
    cr_assert(strstr(log, "differs from the config embedded in"), "%s", log);
    cr_assert_null(strstr(log, "names no DATASET; using the data of the run"), "%s", log);
    /* predict says the same through the same loader. */
    snprintf(args, sizeof args, "predict --weights %s --config %s %s --out %s/pred", weights,
             config, data, dir);
    cr_assert_eq(run_mrcnn(args, log, sizeof log), 0, "%s", log);
    cr_assert(strstr(log, "differs from the config embedded in") && strstr(log, "MEAN_PIXEL"), "%s",
              log);
}

/* What evaluate prints by default is plain: no code names or issue numbers (--verbose explains
 * the methods), the seed paper only with --compare-paper, and the images with the most missed
 * lesions and false positives on screen and every image in per_image.csv. */
/* A lesion reported twice (per-class NMS: "benign 0.9" and "malignant 0.7" on the same place)
 * and once (class-agnostic NMS keeps the best class): evaluate measures both alike, every metric
 * defined; the duplicate shows as one false positive and nothing else changes. */
Test(evaluate, one_diagnosis_or_two_per_lesion_are_scored_alike) {
    const char *dir = temp_dir("eval-nms");
    mr_annotations ann;
    make_set(dir, &ann);
    const char *lesion_a = "\"box\": [4, 5, 12, 15], \"area\": 80, \"polygons\": [[[4.5, 3.5], "
                           "[14.5, 3.5], [14.5, 11.5], [4.5, 11.5]]]}";
    const char *lesion_b = "\"box\": [10, 20, 20, 32], \"area\": 120, \"polygons\": [[[19.5, "
                           "9.5], [31.5, 9.5], [31.5, 19.5], [19.5, 19.5]]]}";
    mr_evaluation e[2];
    for (int twice = 0; twice < 2; twice++) {
        char pred[600], dets[2048];
        snprintf(pred, sizeof pred, "%s/pred%d", dir, twice);
        cr_assert_eq(mkdir(pred, 0755), 0);
        snprintf(dets, sizeof dets, "{\"class_id\": 1, \"score\": 0.9, %s", lesion_a);
        if (twice)
            snprintf(dets + strlen(dets), sizeof dets - strlen(dets),
                     ", {\"class_id\": 2, \"score\": 0.7, %s", lesion_a);
        write_pred(pred, "a", "a.png", dets);
        snprintf(dets, sizeof dets, "{\"class_id\": 2, \"score\": 0.8, %s", lesion_b);
        write_pred(pred, "b", "b.png", dets);
        e[twice] = score(&ann, pred, NULL);
    }
    for (int k = 0; k < 2; k++) {
        cr_assert(!isnan(e[k].mask.mean_ap) && !isnan(e[k].mask.mean_ap50) && !isnan(e[k].map50),
                  "mask AP defined");
        cr_assert_eq(e[k].lesions.n_gt, 2);
        cr_assert_eq(e[k].lesions.n_matched, 2, "both lesions found");
        cr_assert_eq(e[k].n_right, 2, "and classed right");
    }
    cr_assert_eq(e[0].lesions.n_pred - e[0].lesions.n_matched, 0,
                 "one diagnosis: no false positive");
    cr_assert_eq(e[1].lesions.n_pred - e[1].lesions.n_matched, 1, "the second diagnosis is one");
    cr_assert_float_eq(e[0].mask.mean_ap50, 1.0, 1e-9);
    mr_evaluation_free(&e[0]);
    mr_evaluation_free(&e[1]);
    mr_annotations_free(&ann);
}

Test(evaluate, plain_output_worst_images_and_per_image_csv) {
    const char *dir = temp_dir("eval-plain");
    mr_annotations ann;
    make_set(dir, &ann);
    char pred[600], dets[2048];
    snprintf(pred, sizeof pred, "%s/pred", dir);
    cr_assert_eq(mkdir(pred, 0755), 0);
    /* a: found exactly; b: shifted down by half its height, so missed and a false positive. */
    write_pred(
        pred, "a", "a.png",
        "{\"class_id\": 1, \"class\": \"benign\", \"score\": 0.9, \"box\": [4, 5, 12, 15],"
        " \"area\": 80, \"polygons\": [[[4.5, 3.5], [14.5, 3.5], [14.5, 11.5], [4.5, 11.5]]]}");
    char *rle = rect_rle(20, 15, 12, 10);
    snprintf(dets, sizeof dets,
             "{\"class_id\": 2, \"class\": \"malignant\", \"score\": 0.8, \"box\": [15, 20, 25, "
             "32], \"area\": 120, \"polygons\": [], \"rle\": {\"size\": [%d, %d], \"counts\": "
             "\"%s\"}}",
             H, W, rle);
    free(rle);
    write_pred(pred, "b", "b.png", dets);

    /* The library's per-image record. */
    mr_evaluation e = score(&ann, pred, NULL);
    cr_assert_eq(e.n_images, 2);
    cr_assert(strstr(e.images[0].path, "a.png") && e.images[0].missed == 0 &&
              e.images[0].false_positives == 0 && e.images[0].matched == 1);
    cr_assert(strstr(e.images[1].path, "b.png") && e.images[1].missed == 1 &&
              e.images[1].false_positives == 1 && e.images[1].lesions == 1 &&
              isnan(e.images[1].dice));
    cr_assert_float_eq(e.images[0].dice, 1.0, 1e-9);
    mr_evaluation_free(&e);
    mr_annotations_free(&ann);

    char args[3000], out_dir[700];
    static char log[1 << 16];
    snprintf(out_dir, sizeof out_dir, "%s/out", dir);
    snprintf(args, sizeof args,
             "evaluate --predictions '%s' --config configs/tiny.json --data '%s/via.json' "
             "--split=all --threshold 0.5 --out '%s'",
             pred, dir, out_dir);
    cr_assert_eq(run_mrcnn(args, log, sizeof log), 0, "%s", log);
    const char *jargon[] = {"compute_matches", "#1692", "gt_match", "issue", "Seed paper", NULL};
    for (const char **j = jargon; *j; j++) cr_assert_null(strstr(log, *j), "%s in: %s", *j, log);
    const char *worst = strstr(log, "Images with the most missed lesions and false positives");
    cr_assert_not_null(worst, "%s", log);
    cr_assert(strstr(worst, "b.png") && !strstr(worst, "a.png"), "only b is listed: %s", worst);
    cr_assert(strstr(worst, "b.png                                  1      0      1      1      -"),
              "%s", worst);
    char path[800];
    /* The JSON a user opens says what was measured in plain words, too. */
    snprintf(path, sizeof path, "%s/evaluation.json", out_dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s not written", path);
    static char json[1 << 16];
    json[fread(json, 1, sizeof json - 1, f)] = '\0';
    fclose(f);
    for (const char **j = jargon; *j; j++)
        cr_assert_null(strstr(json, *j), "%s in evaluation.json: %s", *j, json);
    snprintf(path, sizeof path, "%s/per_image.csv", out_dir);
    f = fopen(path, "r");
    cr_assert_not_null(f, "%s not written", path);
    char csv[4096];
    csv[fread(csv, 1, sizeof csv - 1, f)] = '\0';
    fclose(f);
    cr_assert(
        !strncmp(csv, "image,lesions,detections,found,missed,false_positives,dice,ap50\n", 64),
        "%s", csv);
    cr_assert(strstr(csv, "a.png\",1,1,1,0,0,1,1\n"), "%s", csv);
    cr_assert(strstr(csv, "b.png\",1,1,0,1,1,,0\n"), "%s", csv);

    snprintf(args, sizeof args,
             "evaluate --predictions '%s' --config configs/tiny.json --data '%s/via.json' "
             "--split all --verbose --compare-paper",
             pred, dir);
    cr_assert_eq(run_mrcnn(args, log, sizeof log), 0, "%s", log);
    cr_assert(strstr(log, "method: ") && strstr(log, "compute_matches"), "%s", log);
    cr_assert(strstr(log, "Seed paper") && strstr(log, "theirs"), "%s", log);
}

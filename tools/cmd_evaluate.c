/* `mrcnn evaluate`: scores a trained model (--weights) or a folder of predict JSON files
 * (--predictions, from mrcnn or any tool writing that format) against annotated images, through
 * train/evaluate.h; prints the tables and optionally writes evaluation.json and the PR curves. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../train/data_source.h"
#include "../train/evaluate.h"
#include "../train/export.h"
#include "cli.h"

static void progress(int64_t done, int64_t total) {
    fprintf(stderr, "\revaluating %lld/%lld", (long long)done, (long long)total);
    if (done == total) fprintf(stderr, "\n");
}

int cmd_evaluate(int argc, char **argv) {
    const char *weights = NULL, *predictions = NULL, *config_path = NULL, *out_dir = NULL;
    const char *split = "val";
    mr_cli_data d = MR_CLI_DATA_INIT;
    double threshold = -1.0;
    long limit = LONG_MIN; /* not given: every image */
    bool quiet = false, allow_damaged = false;
    mr_opt opts[] = {
        {"--weights", MR_OPT_STRING, &weights, "trained weights: an export or a checkpoint"},
        {"--predictions", MR_OPT_STRING, &predictions,
         "or a folder of *_pred.json files (mrcnn predict's format) to score instead"},
        {"--config", MR_OPT_STRING, &config_path,
         "config JSON (default: the one inside --weights; required with --predictions)"},
        MR_CLI_DATA_OPTS(d),
        {"--split", MR_OPT_STRING, &split,
         "val: the validation images (val/, or the share training held out; default), train, "
         "or all: every image of a folder of images or an annotation file"},
        {"--threshold", MR_OPT_DOUBLE, &threshold,
         "keep detections scoring >= T (default 0, as Matterport's COCO evaluation)"},
        {"--out", MR_OPT_STRING, &out_dir, "folder for evaluation.json and pr_<class>.svg"},
        {"--limit", MR_OPT_INT, &limit, "evaluate only the first N images"},
        {"--quiet", MR_OPT_FLAG, &quiet, "no progress line"},
        MR_CLI_ALLOW_DAMAGED_OPT(allow_damaged),
    };
    int code = 0;
    if (!mr_parse_args("evaluate",
                       "(--weights W | --predictions DIR --config C) [--data PATH] "
                       "[--split val|train|all] [--threshold T] [--out DIR]",
                       argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!weights == !predictions) {
        fprintf(stderr, "mrcnn evaluate: give --weights FILE or --predictions DIR (one of them)\n");
        return 2;
    }
    if (predictions && !config_path) {
        fprintf(stderr, "mrcnn evaluate: --predictions needs --config (class names, thresholds)\n");
        return 2;
    }
    if (threshold != -1.0 && !(threshold >= 0.0 && threshold <= 1.0)) {
        fprintf(stderr, "mrcnn evaluate: --threshold must be in [0, 1], got %g\n", threshold);
        return 2;
    }
    mr_data_part part = MR_DATA_VAL;
    if (!strcmp(split, "train")) {
        part = MR_DATA_TRAIN;
    } else if (!strcmp(split, "all")) {
        part = MR_DATA_ALL;
    } else if (strcmp(split, "val")) {
        fprintf(stderr, "mrcnn evaluate: --split must be val, train or all, got '%s'\n", split);
        return 2;
    }
    /* 0 images would score nothing: it is refused as negatives are, not read as "all". */
    if (limit != LONG_MIN && limit < 1) {
        fprintf(stderr, "mrcnn evaluate: --limit must be at least 1, got %ld\n", limit);
        return 2;
    }
    if (limit == LONG_MIN) limit = 0; /* mr_evaluate_*: 0 is every image */

    mr_config *cfg = calloc(1, sizeof *cfg);
    mr_model model = {0};
    mr_ctx ctx = {0};
    mr_dataset *ds = NULL;
    mr_evaluation e = {0};
    bool model_ok = false;
    mr_status st = cfg ? MR_OK : mr_fail(MR_ERR_NOMEM, "out of memory");
    if (st == MR_OK && weights) {
        const mr_inference_options io = {.allow_damaged = allow_damaged};
        st = mr_inference_load_opts(weights, config_path, &io, cfg, &model, NULL);
        model_ok = st == MR_OK;
    } else if (st == MR_OK) {
        mr_config_defaults(cfg);
        st = mr_config_load(config_path, cfg);
    }
    /* --data means what it means to train: the images scored are the ones training held out
     * (val/, or the seeded share), unless --split says otherwise. */
    const mr_data_args args = mr_cli_data_args(&d);
    mr_data_summary used = {0};
    if (st == MR_OK) st = mr_data_resolve(cfg, &args);
    const bool given = threshold >= 0.0;
    const mr_eval_options eo = {.det_threshold = given ? (float)threshold : 0.0f,
                                .op_threshold = given ? (float)threshold
                                                : cfg ? cfg->net.detection_min_confidence
                                                      : 0.0f};
    if (st == MR_OK) st = mr_data_open_part(cfg, part, &ds, &used);
    if (st == MR_OK) printf("%s\n", used.line);
    const char *data = ds ? mr_dataset_annotations(ds)->source : NULL;
    if (st == MR_OK) st = mr_evaluation_init(&e, cfg->net.num_classes, &eo);
    int64_t missing = 0;
    if (st == MR_OK && weights) {
        st = mr_ctx_init(&ctx, (size_t)cfg->arena_mb << 20);
        bool show = !quiet && isatty(STDERR_FILENO);
        if (st == MR_OK)
            st = mr_evaluate_model(&e, &ctx, &model, ds, limit, show ? progress : NULL);
    } else if (st == MR_OK) {
        st = mr_evaluate_prediction_files(&e, mr_dataset_annotations(ds), predictions, limit,
                                          &missing);
    }
    if (st == MR_OK) st = mr_evaluation_finish(&e);
    if (st == MR_OK) {
        const mr_eval_meta meta = {.data = data,
                                   .weights = weights,
                                   .predictions = predictions,
                                   .config = config_path ? config_path : weights,
                                   .threshold_given = given};
        if (missing)
            printf("note: %lld annotated images have no prediction file in %s; they count as "
                   "images without detections\n",
                   (long long)missing, predictions);
        mr_evaluation_print(&e, cfg, &meta, stdout);
        if (out_dir && (st = mr_evaluation_write(&e, cfg, &meta, out_dir)) == MR_OK)
            printf("\nwrote %s/evaluation.json and %s/pr_<class>.svg\n", out_dir, out_dir);
    }
    mr_evaluation_free(&e);
    if (ds) mr_dataset_close(ds);
    mr_ctx_free(&ctx);
    if (model_ok) mr_model_free(&model);
    free(cfg);
    return mr_exit_code(st);
}

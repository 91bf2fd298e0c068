/* `mrcnn evaluate`: scores a trained model (--weights) or a folder of predict JSON files
 * (--predictions, from mrcnn or any tool writing that format) against annotated images, through
 * mr_evaluate_run (train/evaluate.h); prints the tables and optionally writes evaluation.json and
 * the PR curves. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../core/log.h"
#include "../train/evaluate.h"
#include "cli.h"

static void progress(int64_t done, int64_t total) {
    fprintf(stderr, "\revaluating %lld/%lld", (long long)done, (long long)total);
    if (done == total) fprintf(stderr, "\n");
}

static void opened(void *user, const mr_data_summary *s) {
    (void)user;
    printf("%s\n", s->line);
}

int cmd_evaluate(int argc, char **argv) {
    const char *weights = NULL, *predictions = NULL, *config_path = NULL, *out_dir = NULL;
    const char *split = "val";
    mr_cli_data d = MR_CLI_DATA_INIT;
    double threshold = -1.0;
    long limit = LONG_MIN; /* not given: every image */
    bool quiet = false, allow_damaged = false, verbose = false, compare_paper = false, bf16 = false;
    mr_opt opts[] = {
        {"--weights", MR_OPT_PATH, &weights, "trained weights: an export or a checkpoint"},
        {"--predictions", MR_OPT_PATH, &predictions,
         "or a folder of *_pred.json files (mrcnn predict's format) to score instead"},
        {"--config", MR_OPT_PATH, &config_path,
         "config JSON (default: the one inside --weights; required with --predictions)"},
        MR_CLI_DATA_OPTS(d),
        {"--split", MR_OPT_STRING, &split,
         "val: the validation images (val/, or the share training held out; default), train, "
         "or all: every image of a folder of images or an annotation file"},
        {"--threshold", MR_OPT_DOUBLE, &threshold,
         "keep detections scoring >= T (default 0, as Matterport's COCO evaluation)"},
        {"--out", MR_OPT_PATH, &out_dir,
         "folder for evaluation.json, per_image.csv (every image's missed lesions and false "
         "positives) and pr_<class>.svg"},
        {"--limit", MR_OPT_INT, &limit, "evaluate only the first N images"},
        {"--quiet", MR_OPT_FLAG, &quiet, "no progress line"},
        {"--verbose", MR_OPT_FLAG, &verbose, "say how each number is computed"},
        {"--compare-paper", MR_OPT_FLAG, &compare_paper,
         "add the seed paper's mAP and accuracy (Chiao et al. 2019) beside ours"},
        MR_CLI_BF16_OPT(bf16),
        MR_CLI_ALLOW_DAMAGED_OPT(allow_damaged),
    };
    static const mr_cli_help help = {
        "evaluate",
        "(--weights W | --predictions DIR --config C) [--data PATH] "
        "[--split val|train|all] [--threshold T] [--out DIR] [--verbose] [--compare-paper]",
        "mrcnn evaluate --weights runs/busi-20261123T1015/ckpt-e0030-s00001530.h5\n"
        "mrcnn evaluate --weights busi.h5 --data \"BUS scans\" --split all --out eval\n"
        "mrcnn evaluate --predictions predictions --config configs/busi.json --data \"BUS "
        "scans\"\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    mr_log_set_verbosity(quiet, verbose); /* --quiet: warnings and errors; --verbose: debug */
    const char *bad = NULL;
    char why[256];
    mr_data_part part = !strcmp(split, "val")     ? MR_DATA_VAL
                        : !strcmp(split, "train") ? MR_DATA_TRAIN
                        : !strcmp(split, "all")   ? MR_DATA_ALL
                                                  : (mr_data_part)-1;
    if (!weights == !predictions)
        return mr_cli_missing("give --weights FILE or --predictions DIR, one of them");
    if (predictions && !config_path) {
        bad = "--predictions needs --config (class names, thresholds)";
    } else if (predictions && bf16) {
        bad = "--bf16 runs a model: it goes with --weights, not --predictions";
    } else if (threshold != -1.0 && !(threshold >= 0.0 && threshold <= 1.0)) {
        snprintf(why, sizeof why, "--threshold must be in [0, 1], got %g", threshold);
        bad = why;
    } else if (part == (mr_data_part)-1) {
        snprintf(why, sizeof why, "--split must be val, train or all, got '%s'", split);
        bad = why;
    } else if (limit != LONG_MIN && limit < 1) {
        /* 0 images would score nothing: it is refused as negatives are, not read as "all". */
        snprintf(why, sizeof why, "--limit must be at least 1, got %ld", limit);
        bad = why;
    }
    if (bad) {
        fprintf(stderr, "mrcnn evaluate: %s\n", bad);
        return 2;
    }
    const mr_eval_request r = {.weights = weights,
                               .predictions = predictions,
                               .config = config_path,
                               .data = mr_cli_data_args(&d),
                               .part = part,
                               .threshold = threshold,
                               .limit = limit == LONG_MIN ? 0 : limit,
                               .allow_damaged = allow_damaged,
                               .bf16 = bf16,
                               .opened = opened,
                               .progress = !quiet && isatty(STDERR_FILENO) ? progress : NULL};
    mr_eval_run *run = calloc(1, sizeof *run);
    if (!run) return mr_exit_code(mr_fail(MR_ERR_NOMEM, "out of memory"));
    mr_status st = mr_evaluate_run(&r, run);
    if (st == MR_OK) {
        if (run->missing)
            printf("note: %lld annotated images have no prediction file in %s; they count as "
                   "images without detections\n",
                   (long long)run->missing, predictions);
        run->meta.verbose = verbose;
        run->meta.compare_paper = compare_paper;
        mr_evaluation_print(&run->e, &run->cfg, &run->meta, stdout);
        if (out_dir && (st = mr_evaluation_write(&run->e, &run->cfg, &run->meta, out_dir)) == MR_OK)
            printf("\nwrote %s/evaluation.json, %s/per_image.csv and %s/pr_<class>.svg\n", out_dir,
                   out_dir, out_dir);
    }
    mr_eval_run_free(run);
    free(run);
    return mr_exit_code(st);
}

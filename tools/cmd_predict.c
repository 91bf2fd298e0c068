/* `mrcnn predict`: images and folders in; per image an overlay PNG and a JSON of detections, and
 * one VIA 2.x project for the batch (train/predictor.h does the work). This file parses the
 * command line and prints progress and the summary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../core/log.h"
#include "../core/runtime.h"
#include "../train/predictor.h"
#include "cli.h"

typedef struct {
    const char *weights, *config;
    int failures;
} report;

static void on_note(void *user, const char *line) {
    (void)user;
    fprintf(stderr, "mrcnn predict: %s\n", line);
}

static void on_loaded(void *user, const mr_predictor *p, int n) {
    const report *r = user;
    mr_runtime_banner();
    mr_info("predict: %d image%s with %s (%s), config %s (hash %016llx), threshold %.3g%s", n,
            n == 1 ? "" : "s", r->weights, mr_weights_format_name(p->format),
            r->config ? r->config : "from the weights file",
            (unsigned long long)mr_config_hash(&p->cfg), (double)p->threshold,
            p->ctx.bf16 ? ", products in bf16" : "");
}

static void on_image(void *user, int i, int n, const char *path, const mr_instances *d,
                     const char *error) {
    (void)user;
    if (d)
        fprintf(stderr, "[%d/%d] %s: %lld detection%s\n", i + 1, n, path, (long long)d->n,
                d->n == 1 ? "" : "s");
    else
        fprintf(stderr, "[%d/%d] %s; skipped\n", i + 1, n, error);
}

static void print_summary(const mr_predict_summary *s, const char *out) {
    printf("%d image%s, %lld detection%s", s->images_done, s->images_done == 1 ? "" : "s",
           (long long)s->detections, s->detections == 1 ? "" : "s");
    for (int c = 1; c < s->num_classes; c++)
        if (s->per_class[c]) printf(", %s %lld", s->class_names[c], (long long)s->per_class[c]);
    printf("; overlays and JSON in %s\n", out);
    if (s->project[0])
        printf("VIA project %s: open it with VIA 2's Project > Load project; it reads the images "
               "from %s\n",
               s->project, s->images_folder);
    if (s->fragments_left_out)
        printf("note: %d extra mask fragment%s in the JSON but not in the VIA project "
               "(one region per detection: its largest part)\n",
               s->fragments_left_out, s->fragments_left_out == 1 ? " is" : "s are");
    if (s->empty_masks)
        printf("note: %d detection%s with an empty mask %s in the VIA project\n", s->empty_masks,
               s->empty_masks == 1 ? "" : "s",
               s->empty_masks == 1 ? "is its box" : "are their boxes");
}

int mr_cli_predict(mr_predict_options *o) {
    report r = {.weights = o->model.weights, .config = o->model.config};
    o->user = &r;
    o->note = on_note;
    o->loaded = on_loaded;
    o->image_done = on_image;
    mr_predict_summary *s = calloc(1, sizeof *s);
    if (!s) return mr_exit_code(mr_fail(MR_ERR_NOMEM, "no memory"));
    mr_status st = mr_predict(o, s);
    if (st == MR_OK && s->images_done > 0) print_summary(s, o->out_dir);
    if (s->failures && st == MR_OK)
        fprintf(stderr, "mrcnn predict: %d input%s could not be used (see above)\n", s->failures,
                s->failures == 1 ? "" : "s");
    int rc = st != MR_OK ? mr_exit_code(st) : s->failures ? 1 : 0;
    free(s);
    return rc;
}

int cmd_predict(int argc, char **argv) {
    const char *weights = NULL, *config = NULL, *out = NULL;
    double threshold = (double)NAN; /* NAN: not given */
    bool allow_damaged = false, bf16 = false;
    mr_str_list positional = {0};
    mr_opt opts[] = {
        {"--weights", MR_OPT_PATH, &weights, "export, checkpoint or Keras weights"},
        {"--config", MR_OPT_PATH, &config, "config JSON (default: the one inside --weights)"},
        {"--out", MR_OPT_PATH, &out, "folder for overlays, JSON results and via_project.json"},
        {"--threshold", MR_OPT_DOUBLE, &threshold,
         "minimum score (overrides DETECTION_MIN_CONFIDENCE)"},
        MR_CLI_BF16_OPT(bf16),
        MR_CLI_ALLOW_DAMAGED_OPT(allow_damaged),
    };
    static const mr_cli_help help = {
        "predict", "--weights W [--config C] IMAGES_OR_FOLDERS... --out DIR [--threshold T]",
        "mrcnn predict --weights busi.h5 scans/ --out predictions\n"
        "mrcnn predict --weights runs/busi-20261123T1015/ckpt-e0030-s00001530.h5 a.png b.png --out "
        "p --threshold 0.5\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &positional,
                       &code)) {
        free((void *)positional.items);
        return code;
    }
    if (!weights || !out || positional.count == 0) {
        code = mr_cli_missing("--weights FILE, --out DIR and at least one image or folder are "
                              "required");
    } else if (!isnan(threshold) && !(threshold >= 0.0 && threshold <= 1.0)) {
        fprintf(stderr, "mrcnn predict: --threshold must be between 0 and 1, got %g\n", threshold);
        code = 2;
    } else {
        mr_predict_options o = {.model = {weights, config, allow_damaged, bf16, threshold},
                                .out_dir = out,
                                .inputs = positional.items,
                                .n_inputs = positional.count};
        code = mr_cli_predict(&o);
    }
    free((void *)positional.items);
    return code;
}

/* `mrcnn demo`: the README's first command. Generates a synthetic breast-ultrasound set, trains
 * configs/tiny.json on it from random weights, scores the model on the validation images, predicts
 * on them, and prints where the overlays and the training report are. */
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../data/synth.h"
#include "../train/checkpoint.h"
#include "../train/config.h"
#include "../train/evaluate.h"
#include "../train/export.h"
#include "../train/trainer.h"
#include "cli.h"

#define DEFAULT_CONFIG "configs/tiny.json"

/* The demo's config: the one given, else configs/tiny.json from the current folder or, when run
 * from elsewhere, from the mrcnn folder the executable was built in (build/mrcnn). False, with
 * one line said, when there is none. */
static bool find_config(const char *given, char *path, size_t size) {
    if (given) {
        snprintf(path, size, "%s", given);
        return true;
    }
    snprintf(path, size, "%s", DEFAULT_CONFIG);
    if (access(path, R_OK) == 0) return true;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = '\0';
        snprintf(path, size, "%s/../%s", dirname(self), DEFAULT_CONFIG);
        if (access(path, R_OK) == 0) return true;
    }
    fprintf(stderr,
            "mrcnn demo: %s is found neither in this folder nor beside the mrcnn executable (%s); "
            "run the demo from the mrcnn folder or give --config\n",
            DEFAULT_CONFIG, len > 0 ? path : "its path unknown");
    return false;
}

int cmd_demo(int argc, char **argv) {
    const char *out = "demo", *given = NULL;
    long images = 160, epochs = 0;
    mr_opt opts[] = {{"--out", MR_OPT_PATH, &out, "output folder (default demo)"},
                     {"--config", MR_OPT_PATH, &given, "config (default " DEFAULT_CONFIG ")"},
                     {"--images", MR_OPT_INT, &images, "synthetic images (default 160)"},
                     {"--epochs", MR_OPT_INT, &epochs, "override the config's EPOCHS"}};
    static const mr_cli_help help = {"demo", "[--out DIR] [--config C] [--images N] [--epochs N]",
                                     "mrcnn demo\n"
                                     "mrcnn demo --out demo-big --images 400 --epochs 20\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, 4, NULL, &code)) return code;
    if (images < 10 || images > 100000 || epochs < 0) {
        fprintf(stderr, "mrcnn demo: --images must be 10..100000 and --epochs positive\n");
        return 2;
    }
    /* The config is read before anything is written, so a bad one costs nothing. */
    char config[4200];
    mr_config checked;
    if (!find_config(given, config, sizeof config)) return 2;
    mr_config_defaults(&checked);
    mr_status st = mr_config_load(config, &checked);
    if (st != MR_OK) return mr_exit_code(st);
    char data[1024], run[1024], predictions[1024], val[1100], ckpt[1200];
    snprintf(data, sizeof data, "%s/data", out);
    snprintf(run, sizeof run, "%s/run", out);
    snprintf(predictions, sizeof predictions, "%s/predictions", out);
    snprintf(val, sizeof val, "%s/val", data);

    printf("1/4 writing %ld synthetic ultrasound images to %s\n", images, data);
    fflush(stdout);
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.out_dir = data;
    o.n_images = (int)images;
    o.size = 128;
    o.seed = 1;
    if ((st = mr_synth_write(&o)) != MR_OK) return mr_exit_code(st);

    printf("2/4 training %s from random weights (progress on stderr)\n", config);
    fflush(stdout);
    /* The demo's folder is its own: running it again starts its run again. */
    mr_train_options topt = {.config_path = config,
                             .data_dir = data,
                             .epochs = (int)epochs,
                             .out_dir = run,
                             .force = true};
    mr_train_result tr;
    if ((st = mr_train(&topt, &tr)) != MR_OK) return mr_exit_code(st);
    if ((st = mr_checkpoint_find_latest(run, ckpt, sizeof ckpt, NULL)) != MR_OK)
        return mr_exit_code(st);

    printf("3/4 scoring %s on the %s images\n", ckpt, val);
    fflush(stdout);
    /* As `mrcnn evaluate --weights CKPT --data VAL` scores it. */
    mr_eval_request er = {
        .weights = ckpt, .data = {.data = val}, .part = MR_DATA_VAL, .threshold = -1.0};
    mr_eval_run ev;
    st = mr_evaluate_run(&er, &ev);
    const mr_evaluation *e = &ev.e;
    if (st == MR_OK)
        printf("    validation mask AP50 %.3f, mask AP %.3f; sensitivity %.3f at score >= %.2f, "
               "%.2f false positives per image\n",
               e->mask.mean_ap50, e->mask.mean_ap, mr_lesion_sensitivity(&e->lesions),
               (double)e->opt.op_threshold, mr_lesion_fp_per_image(&e->lesions));
    mr_eval_run_free(&ev);
    if (st != MR_OK) return mr_exit_code(st);

    printf("4/4 predicting on %s\n", val);
    fflush(stdout);
    const char *inputs[] = {val};
    mr_predict_options po = {.model = {.weights = ckpt, .threshold = (double)NAN},
                             .out_dir = predictions,
                             .inputs = inputs,
                             .n_inputs = 1};
    code = mr_cli_predict(&po);
    if (code != 0) return code;
    printf("\ndone.\n  overlays:   %s/*_pred.png (open %s/via_project.json in VIA to review)\n"
           "  report:     %s/report.html (run summary, validation metrics per epoch, losses, "
           "validation images)\n"
           "  checkpoint: %s\n",
           predictions, predictions, run, ckpt);
    return 0;
}

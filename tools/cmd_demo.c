/* `mrcnn demo`: the README's first command. Generates a synthetic breast-ultrasound set,
 * fine-tunes configs/tiny.json on it, predicts on the validation images, and prints where the
 * overlays and the training report are. Every step is an ordinary verb run in-process. */
#include <stdio.h>
#include <string.h>

#include "../data/synth.h"
#include "../train/checkpoint.h"
#include "cli.h"

int cmd_demo(int argc, char **argv) {
    const char *out = "demo", *config = "configs/tiny.json";
    long images = 160, epochs = 0;
    mr_opt opts[] = {{"--out", MR_OPT_STRING, &out, "output folder (default demo)"},
                     {"--config", MR_OPT_STRING, &config, "config (default configs/tiny.json)"},
                     {"--images", MR_OPT_INT, &images, "synthetic images (default 160)"},
                     {"--epochs", MR_OPT_INT, &epochs, "override the config's EPOCHS"}};
    int code = 0;
    if (!mr_parse_args("demo", "[--out DIR] [--images N] [--epochs N]", argc, argv, opts, 4, NULL,
                       &code))
        return code;
    if (images < 10 || images > 100000 || epochs < 0) {
        fprintf(stderr, "mrcnn demo: --images must be 10..100000 and --epochs positive\n");
        return 2;
    }
    char data[1024], run[1024], predictions[1024], epochs_text[32];
    snprintf(data, sizeof data, "%s/data", out);
    snprintf(run, sizeof run, "%s/run", out);
    snprintf(predictions, sizeof predictions, "%s/predictions", out);
    snprintf(epochs_text, sizeof epochs_text, "%ld", epochs);

    printf("1/3 writing %ld synthetic ultrasound images to %s\n", images, data);
    fflush(stdout);
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.out_dir = data;
    o.n_images = (int)images;
    o.size = 128;
    o.seed = 1;
    mr_status st = mr_synth_write(&o);
    if (st != MR_OK) return mr_exit_code(st);

    printf("2/3 fine-tuning %s (progress on stderr)\n", config);
    fflush(stdout);
    char *train_argv[] = {"train", "--config", (char *)config, "--data",    data,
                          "--out", run,        "--epochs",     epochs_text, NULL};
    code = cmd_train(epochs > 0 ? 9 : 7, train_argv);
    if (code != 0) return code;

    char ckpt[1200];
    if ((st = mr_checkpoint_find_latest(run, ckpt, sizeof ckpt, NULL)) != MR_OK)
        return mr_exit_code(st);
    char val[1100];
    snprintf(val, sizeof val, "%s/val", data);
    printf("3/3 predicting on %s with %s\n", val, ckpt);
    fflush(stdout);
    char *predict_argv[] = {"predict", "--weights", ckpt, val, "--out", predictions, NULL};
    code = cmd_predict(6, predict_argv);
    if (code != 0) return code;
    printf("\ndone.\n  overlays:   %s/*_pred.png (open %s/via_project.json in VIA to review)\n"
           "  report:     %s/report.html (loss curves, validation overlays)\n"
           "  checkpoint: %s\n",
           predictions, predictions, run, ckpt);
    return 0;
}

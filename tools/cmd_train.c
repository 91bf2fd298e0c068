/* `mrcnn train`: fine-tune from a config, optionally from (COCO) weights; Ctrl-C or SIGTERM
 * finishes the current step, saves, and says how to resume. */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dist.h"
#include "../core/log.h"
#include "../train/trainer.h"
#include "cli.h"

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

int cmd_train(int argc, char **argv) {
    const char *config = NULL, *weights = NULL, *out = NULL, *resume = NULL;
    mr_cli_data d = MR_CLI_DATA_INIT;
    long epochs = LONG_MIN; /* not given */
    mr_str_list exclude = {0};
    bool quiet = false, force = false, allow_damaged = false;
    mr_opt opts[] = {
        {"--config", MR_OPT_PATH, &config, "config JSON (required unless --resume)"},
        {"--weights", MR_OPT_PATH, &weights,
         "initial weights: mask_rcnn_coco.h5, an export or a checkpoint"},
        {"--exclude", MR_OPT_LIST, &exclude,
         "layer names to leave out of --weights (repeatable, or a,b,c)"},
        MR_CLI_DATA_OPTS(d),
        {"--epochs", MR_OPT_INT, &epochs, "total epochs (overrides EPOCHS)"},
        {"--out", MR_OPT_PATH, &out, "run folder (default runs/NAME-DATE)"},
        {"--resume", MR_OPT_PATH, &resume, "continue the run in this folder"},
        {"--force", MR_OPT_FLAG, &force,
         "start again in an --out folder that holds a run (deleting its checkpoints and log), "
         "or --resume on other --data"},
        {"--quiet", MR_OPT_FLAG, &quiet, "no progress output"},
        MR_CLI_ALLOW_DAMAGED_OPT(allow_damaged),
    };
    static const mr_cli_help help = {
        "train",
        "--config C [--weights FILE] [--data PATH] [--image-root DIR] "
        "[--val-split F] [--epochs N] [--out DIR] [--force] | --resume RUN_DIR "
        "[--epochs N]",
        "mrcnn train --config configs/busi.json --weights mask_rcnn_coco.h5 --data \"BUS scans\"\n"
        "mrcnn train --config configs/tiny.json --data synth --epochs 5 --out runs/tiny\n"
        "mrcnn train --resume runs/busi-20261123T1015\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    mr_log_set_verbosity(quiet, false); /* --quiet: warnings and errors only */
    if (!config && !resume) return mr_cli_missing("--config FILE is required, or --resume RUN_DIR");
    if (resume && (config || weights || out)) {
        fprintf(stderr, "mrcnn train: --resume continues a run with its own config and weights; "
                        "drop --config/--weights/--out\n");
        return 2;
    }
    if (epochs != LONG_MIN && (epochs < 1 || epochs > 100000)) {
        fprintf(stderr, "mrcnn train: --epochs must be 1..100000, got %ld\n", epochs);
        return 2;
    }
    /* Under mpirun: data-parallel, one process per rank; a plain run never touches MPI. */
    mr_status dist = mr_dist_init(&argc, &argv);
    if (dist != MR_OK) return mr_exit_code(dist);
    if (mr_dist_rank() != 0) mr_log_set_level(MR_LOG_ERROR); /* process 0 speaks for all */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    const mr_data_args data = mr_cli_data_args(&d);
    mr_train_options opt = {.config_path = config,
                            .weights_path = weights,
                            .exclude = exclude.items,
                            .n_exclude = exclude.count,
                            .data_dir = data.data,
                            .image_root = data.image_root,
                            .has_val_split = data.has_val_split,
                            .val_split = data.val_split,
                            .epochs = epochs == LONG_MIN ? 0 : (int)epochs,
                            .out_dir = out,
                            .resume_dir = resume,
                            .force = force,
                            .allow_damaged = allow_damaged,
                            .stop = &stop_requested,
                            .quiet = quiet};
    mr_train_result result;
    mr_status st = mr_train(&opt, &result);
    free((void *)exclude.items);
    /* Said before MPI ends: on a signal mpirun does not wait long for its processes. */
    code = result.silent ? (st == MR_OK ? 0 : st == MR_ERR_INTERRUPTED ? 130 : 1) : 0;
    if (result.silent) {
        mr_dist_finalize();
        return code;
    }
    if (st == MR_OK && result.already_complete)
        printf("%s is complete: %d of %d epochs trained. To train longer: mrcnn train --resume %s "
               "--epochs N (N > %d)\n",
               result.run_dir, result.epochs_done, result.epochs_total, result.run_dir,
               result.epochs_done);
    else if (st == MR_OK && result.best_ap50_epoch > 0)
        printf("trained %d epoch%s; last epoch's loss %.4f, validation loss %.4f (best %.4f); best "
               "validation mask AP50 %.3f at epoch %d; run folder %s\n",
               result.epochs_done, result.epochs_done == 1 ? "" : "s", result.last_epoch_loss,
               result.last_val_loss, result.best_val_loss, result.best_val_mask_ap50,
               result.best_ap50_epoch, result.run_dir);
    else if (st == MR_OK)
        printf("trained %d epoch%s; last epoch's loss %.4f, validation loss %.4f (best %.4f); run "
               "folder %s\n",
               result.epochs_done, result.epochs_done == 1 ? "" : "s", result.last_epoch_loss,
               result.last_val_loss, result.best_val_loss, result.run_dir);
    code = mr_exit_code(st);
    fflush(stdout);
    mr_dist_finalize();
    return code;
}

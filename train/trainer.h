/* The fine-tuning loop: config + data + (COCO) weights -> a run folder with per-epoch
 * checkpoints, a step log, validation losses and report.html; stop at any step and resume
 * bit-exactly. */
#ifndef MR_TRAINER_H
#define MR_TRAINER_H

#include <signal.h>
#include <stdbool.h>

#include "config.h"
#include "init.h" /* mr_init_weights, which callers of the trainer use */

typedef struct {
    const char *config_path;
    const char *weights_path;   /* Keras HDF5, export or checkpoint; NULL: random init */
    const char *const *exclude; /* layer names left out of the weights */
    int n_exclude;
    const char *data_dir;   /* --data (train/data_source.h), overrides DATASET */
    const char *image_root; /* --image-root, overrides IMAGE_ROOT */
    bool has_val_split;     /* --val-split given: */
    float val_split;        /* the share held out when the data has no val/ */
    int epochs;             /* > 0 overrides EPOCHS */
    const char *out_dir;    /* the run folder; NULL: runs/<name>-<date>T<time> */
    const char *resume_dir; /* continue this run from its newest complete checkpoint */
    bool allow_damaged;     /* use --weights whose checksums fail (train/weights.h) */
    bool force;             /* start again in a folder that holds a run (its checkpoints and log are
                               deleted), or resume on other data than the run was trained on */
    volatile sig_atomic_t *stop; /* set by a signal handler: save at the end of the step */
    bool quiet;                  /* no progress bar or step lines (tests) */
    int max_steps;               /* > 0: stop (as if interrupted) after this many steps, tests */
} mr_train_options;

typedef struct {
    char run_dir[1024];
    int epochs_done;
    double best_val_loss, last_val_loss;
    double last_epoch_loss;    /* the last epoch's mean training loss */
    double best_val_mask_ap50; /* the best per-epoch validation mask AP50; NaN: never measured */
    int best_ap50_epoch;       /* its epoch (1-based), 0: none */
    bool already_complete;     /* --resume of a run that has trained all its epochs: nothing ran */
    int epochs_total;          /* the run's EPOCHS */
    size_t step_memory_peak;   /* bytes: the most one step's tensors took at once (the step
                                  arena's high-water mark), training, validation and the
                                  report's overlays alike */
    bool silent;               /* under mpirun, not the writer: print nothing, not even an error
                                  (the writer, or the process that failed, says it) */
} mr_train_result;

/* Runs (or resumes) a training job. MR_ERR_INTERRUPTED when stopped by `stop` or max_steps,
 * after saving a checkpoint from which --resume continues. Any other failure once training has
 * started (an unreadable image, non-finite losses, a write error) also saves where it can, and
 * its message ends with the --resume command. A new run refuses a folder that already holds
 * one unless `force`; without out_dir each run gets a folder of its own. */
mr_status mr_train(const mr_train_options *opt, mr_train_result *result);
/* What a progress line shows: epoch and step counted from 1, the running mean losses (NaN:
 * none yet, shown "-"; value[] in mr_loss_names order), and whether it rewrites itself on a
 * terminal (a bar) or goes to a file (the step count and the time per step). */
typedef struct {
    int epoch, epochs, step, steps;
    double per_step, eta_seconds;
    double total, value[MR_LOSS_COUNT];
    bool tty;
} mr_progress;
/* The line, under 80 columns whatever the counts: the time per step, then the split of the
 * loss give way when it would be wider. */
void mr_progress_line(char *out, size_t size, const mr_progress *p);

/* Under mpirun (core/dist.h) every process calls mr_train with the same options: each takes its
 * share of every batch, gradients are averaged, process 0 alone writes the run folder and the
 * console, and a stop or a failure on any process stops all of them at the same step. */

#endif

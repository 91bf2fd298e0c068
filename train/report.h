/* The run folder's human side: log.jsonl (one line per step and per epoch) and report.html
 * (loss curves as inline SVG, validation overlays when present), refreshed every epoch. */
#ifndef MR_REPORT_H
#define MR_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

/* Drops log lines past a resume point: steps after `last_step` and epochs >= `next_epoch`
 * (1-based epoch numbers in the log), so a resumed run's log reads as one run. A missing log
 * is fine. */
mr_status mr_report_trim_log(const char *path, long last_step, int next_epoch);
/* What the report says of the run besides its log. */
typedef struct {
    int64_t n_train, n_val;          /* images on each side */
    int64_t lesions[MR_MAX_CLASSES]; /* annotated lesions per class id, both sides */
    int64_t normals;                 /* images without lesions, both sides */
    bool finished;                   /* all epochs trained: no projected finish */
} mr_report_run;

/* Writes <run_dir>/report.html from <run_dir>/log.jsonl, atomically: one self-contained page
 * (inline SVG charts, the validation panels overlay_*.png inlined as data) with a run summary
 * (config, data, stages, wall time, projected finish, the best epoch's metrics), the per-epoch
 * validation metrics with the best epoch marked, and the losses per step with their running
 * mean, the first steps' spike clipped and marked, epochs ticked and stage changes drawn. */
mr_status mr_report_write(const char *run_dir, const mr_config *cfg, const mr_report_run *run);

#endif

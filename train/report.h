/* The run folder's human side: log.jsonl (one line per step and per epoch) and report.html
 * (loss curves as inline SVG, validation overlays when present), refreshed every epoch. */
#ifndef MR_REPORT_H
#define MR_REPORT_H

#include "config.h"

/* Drops log lines past a resume point: steps after `last_step` and epochs >= `next_epoch`
 * (1-based epoch numbers in the log), so a resumed run's log reads as one run. A missing log
 * is fine. */
mr_status mr_report_trim_log(const char *path, long last_step, int next_epoch);
/* Writes <run_dir>/report.html from <run_dir>/log.jsonl (atomically: temp file + rename). */
mr_status mr_report_write(const char *run_dir, const mr_config *cfg);

#endif

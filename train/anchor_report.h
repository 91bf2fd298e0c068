/* The report `mrcnn anchors` prints: the ground-truth box shapes of a config's training images
 * as the network sees them (scaled to the molded image), K-means clusters of them
 * (train/kmeans.h), the config values those give, how well the fitted and the current anchors
 * cover the boxes, and on request the rewrite of the config file's two anchor keys. */
#ifndef MR_ANCHOR_REPORT_H
#define MR_ANCHOR_REPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "data_source.h"

typedef struct {
    const char *config_path; /* the file cfg came from; rewritten when `write` */
    mr_data_args data;       /* --data, --image-root, --val-split */
    int k;                   /* clusters (1..MR_KMEANS_MAX_K, or MR_MAX_ANCHOR_SCALES for the
                                every_level form) */
    int max_ratios;          /* at most this many ratios (1..MR_MAX_ANCHOR_RATIOS) */
    int restarts;            /* k-means++ restarts */
    uint64_t seed;
    bool write; /* put the fitted RPN_ANCHOR_SCALES / RPN_ANCHOR_RATIOS into config_path */
} mr_anchor_report_options;

/* Resolves and opens the training side of cfg's data (mr_data_resolve with o->data, then
 * mr_data_open_part), fits, and prints the whole report to `out`. Fails naming the data when it
 * holds no box with a known image size. */
mr_status mr_anchor_report(mr_config *cfg, const mr_anchor_report_options *o, FILE *out);

#endif

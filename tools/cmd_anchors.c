/* `mrcnn anchors`: fits RPN anchors to the ground-truth boxes as the network sees them (scaled
 * to the molded image), prints how well the fitted and the current anchors cover those boxes,
 * and with --write puts the two anchor keys into the config file, leaving every other byte. The
 * work is train/anchor_report.h's; this file checks the arguments against the config. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "../train/anchor_report.h"
#include "../train/config.h"
#include "../train/kmeans.h"
#include "cli.h"

int cmd_anchors(int argc, char **argv) {
    const char *config_path = NULL;
    mr_cli_data d = MR_CLI_DATA_INIT;
    /* LONG_MIN: not given, so the config's value stands; 0 or a negative given is refused. */
    long k = LONG_MIN, restarts = 10, seed = LONG_MIN, max_ratios = LONG_MIN;
    bool write = false;
    mr_opt opts[] = {
        {"--config", MR_OPT_PATH, &config_path,
         "config JSON (required); its form, sizes and image size are used"},
        MR_CLI_DATA_OPTS(d),
        {"--k", MR_OPT_INT, &k, "clusters (default: the config's number of RPN_ANCHOR_SCALES)"},
        {"--ratios", MR_OPT_INT, &max_ratios,
         "at most this many ratios (default: the config's count)"},
        {"--restarts", MR_OPT_INT, &restarts, "k-means++ restarts, the best kept (default 10)"},
        {"--seed", MR_OPT_INT, &seed, "random seed (default: the config's SEED)"},
        {"--write", MR_OPT_FLAG, &write,
         "put the fitted RPN_ANCHOR_SCALES / RPN_ANCHOR_RATIOS into the config file"},
    };
    static const mr_cli_help help = {
        "anchors",
        "--config C [--data PATH] [--k N] [--ratios M] [--restarts R] [--seed S] "
        "[--write]",
        "mrcnn anchors --config configs/busi.json --data \"BUS scans\"\n"
        "mrcnn anchors --config configs/busi.json --k 5 --write\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!config_path) return mr_cli_missing("--config FILE is required");
    if (restarts < 1 || restarts > 1000) {
        fprintf(stderr, "mrcnn anchors: --restarts must be 1..1000, got %ld\n", restarts);
        return 2;
    }
    /* The upper bounds depend on the config; these do not, so they fail before it is read. */
    if (k != LONG_MIN && k < 1) {
        fprintf(stderr, "mrcnn anchors: --k must be at least 1, got %ld\n", k);
        return 2;
    }
    if (max_ratios != LONG_MIN && max_ratios < 1) {
        fprintf(stderr, "mrcnn anchors: --ratios must be at least 1, got %ld\n", max_ratios);
        return 2;
    }
    if (seed != LONG_MIN && seed < 0) {
        fprintf(stderr, "mrcnn anchors: --seed must be 0 or more, got %ld\n", seed);
        return 2;
    }
    mr_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return mr_exit_code(mr_fail(MR_ERR_NOMEM, "out of memory"));
    mr_config_defaults(cfg);
    mr_status st = mr_config_load(config_path, cfg);
    if (st != MR_OK) {
        free(cfg);
        return mr_exit_code(st);
    }
    const mr_net_config *net = &cfg->net;
    const bool per_level = net->anchor_scales_per_level;
    if (k == LONG_MIN) k = net->n_anchor_scales;
    if (max_ratios == LONG_MIN) max_ratios = net->n_anchor_ratios;
    int k_max = per_level ? MR_KMEANS_MAX_K : MR_MAX_ANCHOR_SCALES;
    if (k < 1 || k > k_max) {
        fprintf(stderr, "mrcnn anchors: --k must be 1..%d%s, got %ld\n", k_max,
                per_level ? "" : " (every size is used at every level)", k);
        free(cfg);
        return 2;
    }
    if (max_ratios < 1 || max_ratios > MR_MAX_ANCHOR_RATIOS) {
        fprintf(stderr, "mrcnn anchors: --ratios must be 1..%d, got %ld\n", MR_MAX_ANCHOR_RATIOS,
                max_ratios);
        free(cfg);
        return 2;
    }
    /* Anchors fit the boxes training sees: the training images of --data, as train splits
     * them. */
    const mr_anchor_report_options o = {.config_path = config_path,
                                        .data = mr_cli_data_args(&d),
                                        .k = (int)k,
                                        .max_ratios = (int)max_ratios,
                                        .restarts = (int)restarts,
                                        .seed = seed != LONG_MIN ? (uint64_t)seed : cfg->seed,
                                        .write = write};
    st = mr_anchor_report(cfg, &o, stdout);
    free(cfg);
    return mr_exit_code(st);
}

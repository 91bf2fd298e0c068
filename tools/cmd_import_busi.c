/* `mrcnn import-busi`: converts the BUSI folder layout into VIA 2.x JSON with a seeded
 * train/val split (data/busi.h), reporting each bad input on one line and a summary at the end. */
#include <stdio.h>

#include "../data/busi.h"
#include "cli.h"

int cmd_import_busi(int argc, char **argv) {
    mr_busi_options o;
    mr_busi_defaults(&o);
    const char *src = NULL, *out = NULL;
    long seed = (long)o.seed, min_px = o.min_component_pixels;
    double val = o.val_fraction, tol = o.tolerance;
    const mr_opt opts[] = {
        {"--src", MR_OPT_PATH, &src, "BUSI folder with benign/ malignant/ normal/"},
        {"--out", MR_OPT_PATH, &out, "output folder; train/ and val/ are created in it"},
        {"--seed", MR_OPT_INT, &seed, "split seed (1)"},
        {"--val-fraction", MR_OPT_DOUBLE, &val, "share of each class in val/ (0.2)"},
        {"--min-pixels", MR_OPT_INT, &min_px, "mask blobs smaller than this are skipped (10)"},
        {"--tolerance", MR_OPT_DOUBLE, &tol, "polygon simplification tolerance in px (1.0)"},
    };
    static const mr_cli_help help = {
        "import-busi", "--src DIR --out DIR [--seed S] [--val-fraction F]",
        "mrcnn import-busi --src Dataset_BUSI_with_GT --out busi\n"
        "mrcnn import-busi --src Dataset_BUSI_with_GT --out busi --seed 3 --val-fraction 0.15\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!src || !out) return mr_cli_missing("--src DIR and --out DIR are required");
    if (seed < 0 || min_px < 1 || min_px > 1000000000) {
        fprintf(stderr, "mrcnn import-busi: --seed must be >= 0 and --min-pixels >= 1\n");
        return 2;
    }
    o.src_dir = src;
    o.out_dir = out;
    o.seed = (uint64_t)seed;
    o.val_fraction = val;
    o.min_component_pixels = (int)min_px;
    o.tolerance = tol;
    o.report = stderr;
    mr_busi_summary s;
    mr_status st = mr_busi_import(&o, &s);
    if (st != MR_OK) return mr_exit_code(st);
    mr_busi_print_summary(stdout, &o, &s);
    return 0;
}

/* The `mrcnn` command line: one function per verb, each in tools/cmd_<verb>.c, and the small
 * argument parser they share. Only tools/ may exit(); verbs return an exit code. */
#ifndef MR_CLI_H
#define MR_CLI_H

#include <math.h>
#include <stdbool.h>

#include "../core/status.h"
#include "../train/data_source.h"
#include "../train/predictor.h"

/* argv[0] is the verb itself. Returns the process exit code. */
typedef int (*mr_verb_fn)(int argc, char **argv);

int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_check_data(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_import_busi(int argc, char **argv);
int cmd_summary(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_anchors(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);

/* mr_predict with predict's progress lines, notes and summary (predict and demo); fills the
 * callbacks of `o`. Returns the exit code. */
int mr_cli_predict(mr_predict_options *o);

/* --name VALUE (or --name=VALUE) options and positional arguments. Each option is declared once;
 * unknown options (with a did-you-mean), missing values and bad numbers give one line naming the
 * verb and the option. An option whose help is NULL is a hidden alias kept for old scripts: it
 * parses but is not listed in --help. */
/* MR_OPT_PATH is a file or folder: tidied with mr_path_tidy, as positional arguments (always
 * paths) are, so no printed path carries a doubled slash. */
typedef enum {
    MR_OPT_STRING,
    MR_OPT_PATH,
    MR_OPT_INT,
    MR_OPT_DOUBLE,
    MR_OPT_FLAG,
    MR_OPT_LIST
} mr_opt_kind;
typedef struct {
    const char *name; /* "--data" */
    mr_opt_kind kind;
    void *target; /* const char **, long *, double *, bool *, or mr_str_list * */
    const char *help;
} mr_opt;

typedef struct {
    const char **items;
    int count;
    size_t cap;
} mr_str_list;

/* A verb's --help: the usage line after "mrcnn VERB", and 2-3 real command lines, one per line,
 * printed under "examples:" after the options. */
typedef struct {
    const char *verb, *usage, *examples;
} mr_cli_help;

/* Parses argv[1..]; positional arguments go to `positional` when given, else are an error.
 * Prints usage and returns false on error or --help (sets *exit_code). */
bool mr_parse_args(const mr_cli_help *help, int argc, char **argv, const mr_opt *opts, int n_opts,
                   mr_str_list *positional, int *exit_code);

/* The option name in opts[0..n_opts) closest to `name` by edit distance, or NULL when none is
 * close enough to be a likely misspelling. */
const char *mr_cli_closest_option(const char *name, const mr_opt *opts, int n_opts);

/* The verb being run (main.c sets it), for the "mrcnn VERB: " prefix of mr_exit_code. */
void mr_cli_set_verb(const char *verb);

/* A command line without what the verb needs: says `what` as one line,
 * "mrcnn VERB: WHAT (see mrcnn VERB --help)", and returns 2, the exit code for bad arguments. */
int mr_cli_missing(const char *what);

/* --data, --image-root and --val-split: every verb that reads data (train, check-data,
 * evaluate, anchors) declares them through MR_CLI_DATA_OPTS, so they are named, explained and
 * understood the same way everywhere (train/data_source.h). */
typedef struct {
    const char *data, *image_root;
    double val_split; /* NAN when not given */
} mr_cli_data;

/* Kept one option per line (clang-format would fold the list). */
/* clang-format off */
#define MR_CLI_DATA_INIT {NULL, NULL, (double)NAN}
#define MR_CLI_DATA_OPTS(d)                                                                        \
    {"--data", MR_OPT_PATH, &(d).data,                                                             \
     "a folder with train/ and val/, a folder of images with one annotation file, or an "          \
     "annotation file (default: the config's DATASET)"},                                           \
    {"--image-root", MR_OPT_PATH, &(d).image_root,                                               \
     "folder to look for images in when the annotation file's paths (a VIA default path from "     \
     "another machine) do not find them (overrides IMAGE_ROOT)"},                                  \
    {"--val-split", MR_OPT_DOUBLE, &(d).val_split,                                                 \
     "share of the images held out for validation when the data has no val/ (default: "           \
     "VALIDATION_SPLIT, 0.2)"}
/* clang-format on */

mr_data_args mr_cli_data_args(const mr_cli_data *d);

/* --allow-damaged: every verb that reads weights refuses a file whose tensors fail their
 * checksum unless given this (the policy is the loader's: mr_weights_load_options). */
/* clang-format off */
#define MR_CLI_ALLOW_DAMAGED_OPT(flag)                                                             \
    {"--allow-damaged", MR_OPT_FLAG, &(flag),                                                      \
     "use weights that fail their checksum (a damaged file) instead of refusing them; for "       \
     "salvage only"}
#define MR_CLI_BF16_OPT(flag)                                                                      \
    {"--bf16", MR_OPT_FLAG, &(flag),                                                               \
     "run the network's products in bfloat16, detections within about a pixel of float32's: "      \
     "1.2-1.4x faster on AMD Zen 4; slower on Intel's AVX-512 cores (it warns)"}
/* clang-format on */

/* Maps a status to the process exit code (0; 2 for bad arguments; 130, as after SIGINT, for a
 * run stopped by Ctrl-C or SIGTERM; 1 otherwise) and prints the last error as one line,
 * "mrcnn VERB: ...". */
int mr_exit_code(mr_status st);

#endif

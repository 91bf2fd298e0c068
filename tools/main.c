/* `mrcnn VERB ...`: dispatches to the verb functions in tools/cmd_*.c. */
#include <stdio.h>
#include <string.h>

#include "../core/runtime.h"
#include "../core/text.h"
#include "cli.h"

typedef struct {
    const char *name;
    mr_verb_fn run;
    const char *summary;
} verb;

static const verb verbs[] = {
    {"demo", cmd_demo, "generate synthetic ultrasound, train a small model, report"},
    {"synth", cmd_synth, "write a synthetic breast-ultrasound set (PNG + VIA JSON)"},
    {"import-busi", cmd_import_busi, "convert the BUSI folder layout to VIA JSON"},
    {"check-data", cmd_check_data, "load annotations and images, report every problem"},
    {"train", cmd_train, "fine-tune from a config (and COCO weights); --resume continues a run"},
    {"predict", cmd_predict, "detect and segment images: overlays, JSON, a VIA project to correct"},
    {"export", cmd_export,
     "inference-only weights: batch norms folded, config inside, fp16 or Keras"},
    {"summary", cmd_summary, "print the network's layers, shapes, parameters and GFLOPs"},
    {"inspect", cmd_inspect,
     "what a weights file is (kind, epoch, classes, intact); --tensors, --config for more"},
    {"evaluate", cmd_evaluate, "mAP, COCO box/mask AP, Dice, confusion; JSON report, PR curves"},
    {"anchors", cmd_anchors, "fit RPN anchors to the boxes (k-means, 1 - IoU); --write to config"},
    {"bench", cmd_bench, "measure sgemm and convolution speed on this machine"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: mrcnn VERB [options]   (mrcnn help VERB, or mrcnn VERB --help, for its "
                 "options)\n\nverbs:\n");
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(out, "  %-12s %s\n", verbs[i].name, verbs[i].summary);
}

int main(int argc, char **argv) {
    mr_runtime_prepare(argc, argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    /* `mrcnn help VERB` is `mrcnn VERB --help`, as git and the like have it. */
    char *help_argv[3];
    if (!strcmp(argv[1], "help")) {
        if (argc < 3 || !strcmp(argv[2], "help")) {
            usage(stdout);
            return 0;
        }
        help_argv[0] = argv[0], help_argv[1] = argv[2], help_argv[2] = "--help";
        argc = 3, argv = help_argv;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("mrcnn %s\n%s\n", MR_VERSION, mr_runtime_blas_desc());
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (!strcmp(argv[1], verbs[i].name)) {
            mr_cli_set_verb(verbs[i].name);
            return verbs[i].run(argc - 1, argv + 1);
        }
    /* A misspelt verb (evalute, check_data) gets the closest one, as options do. */
    const char *near = NULL;
    size_t best = 3;
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        size_t d = mr_edit_distance(argv[1], verbs[i].name);
        if (d < best) best = d, near = verbs[i].name;
    }
    if (near) {
        fprintf(stderr, "mrcnn: unknown verb '%s'; did you mean %s? (mrcnn --help lists them)\n",
                argv[1], near);
        return 2;
    }
    fprintf(stderr, "mrcnn: unknown verb '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

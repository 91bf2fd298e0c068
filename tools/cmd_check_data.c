/* `mrcnn check-data`: loads the data the way `train` will (the same config rules, the same
 * --data resolution, every image decoded) and prints, for each annotation set, the counts, the
 * kinds of image file, instances per class, box sizes and every problem found, repeated ones
 * grouped; so bad data fails here and not at hour 9. Exits 1 when any error was found (train
 * would refuse the data), 2 on bad arguments. The report is train/data_source.h's. */
#include <stdio.h>
#include <stdlib.h>

#include "../train/config.h"
#include "../train/data_source.h"
#include "cli.h"

int cmd_check_data(int argc, char **argv) {
    mr_cli_data d = MR_CLI_DATA_INIT;
    const char *config = NULL, *classes = NULL, *attribute = NULL;
    const char *attributes = NULL;
    bool no_images = false;
    const mr_opt opts[] = {
        MR_CLI_DATA_OPTS(d),
        {"--config", MR_OPT_PATH, &config,
         "the training config: its classes, DATASET, IMAGE_ROOT and image rules apply"},
        {"--classes", MR_OPT_STRING, &classes,
         "class names, comma-separated (overrides CLASS_NAMES; default: 1 class)"},
        {"--attribute", MR_OPT_STRING, &attribute,
         "region attribute holding the class (overrides CLASS_ATTRIBUTE)"},
        /* Its older name, hidden: --images is a count in synth and demo. */
        {"--images", MR_OPT_PATH, &d.image_root, NULL},
        {"--attributes", MR_OPT_PATH, &attributes, "VIA attribute definitions (option labels)"},
        {"--allow-missing-images", MR_OPT_FLAG, &no_images,
         "missing image files are not errors (sizes stay unknown; train would refuse them)"},
    };
    static const mr_cli_help help = {
        "check-data", "--data PATH [--config C] [options]",
        "mrcnn check-data --data \"BUS scans\"\n"
        "mrcnn check-data --config configs/busi.json --data \"BUS scans\"\n"
        "mrcnn check-data --data scans/via_region_data.json --image-root /data/scans --classes "
        "benign,malignant\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!d.data && !config)
        return mr_cli_missing("--data PATH or a --config with DATASET is required");

    mr_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return mr_exit_code(mr_fail(MR_ERR_NOMEM, "out of memory"));
    mr_config_defaults(cfg);
    mr_status st = config ? mr_config_load(config, cfg) : MR_OK;
    if (st == MR_OK && classes) st = mr_data_set_classes(cfg, classes);
    if (st == MR_OK && attribute)
        snprintf(cfg->class_attribute, sizeof cfg->class_attribute, "%s", attribute);
    const mr_data_args args = mr_cli_data_args(&d);
    if (st == MR_OK) st = mr_data_resolve(cfg, &args);
    if (st != MR_OK) {
        free(cfg);
        return mr_exit_code(st);
    }

    const mr_dataset_extra extra = {.attributes_path = attributes,
                                    .allow_missing_images = no_images};
    mr_data_check chk;
    st = mr_data_check_load(cfg, &extra, &chk);
    mr_data_check_print(&chk, st, cfg, stdout);
    fflush(stdout);
    mr_data_check_free(&chk);
    free(cfg);
    return mr_exit_code(st);
}

/* `mrcnn inspect FILE [--tensors] [--config C] [--exclude L] [--allow-damaged]`: says what a
 * weights file mrcnn reads is (Keras HDF5, mrcnn export, checkpoint): its kind, epoch, step,
 * validation loss, classes and config name, and whether every tensor matches its checksum (exit 1
 * on damage, after the rest); --tensors lists the tensors with shapes and types, and a config
 * prints the load report --weights would give, without training. */
#include <stdio.h>
#include <stdlib.h>

#include "../train/inspect.h"
#include "cli.h"

int cmd_inspect(int argc, char **argv) {
    const char *config_path = NULL, *weights = NULL;
    bool allow_damaged = false, tensors = false;
    mr_str_list exclude = {0}, positional = {0};
    mr_opt opts[] = {
        {"--weights", MR_OPT_PATH, &weights,
         "the weights file (the same as giving it as FILE, as other verbs take it)"},
        {"--tensors", MR_OPT_FLAG, &tensors, "list every tensor: layer, dataset, shape, dtype"},
        {"--config", MR_OPT_PATH, &config_path, "config JSON: print the load report for it"},
        {"--exclude", MR_OPT_LIST, &exclude, "layer names to leave out (repeat or comma list)"},
        MR_CLI_ALLOW_DAMAGED_OPT(allow_damaged),
    };
    static const mr_cli_help help = {
        "inspect",
        "(FILE | --weights FILE) [--tensors] [--config C] [--exclude LAYERS] [--allow-damaged]",
        "mrcnn inspect busi.h5\n"
        "mrcnn inspect --weights runs/busi-20261123T1015/ckpt-e0030-s00001530.h5 --tensors\n"
        "mrcnn inspect mask_rcnn_coco.h5 --config configs/busi.json --exclude "
        "mrcnn_class_logits,mrcnn_bbox_fc,mrcnn_mask\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &positional,
                       &code)) {
        free((void *)exclude.items);
        free((void *)positional.items);
        return code;
    }
    if (positional.count + (weights != NULL) != 1) {
        free((void *)exclude.items);
        free((void *)positional.items);
        return mr_cli_missing("give exactly one weights file, as FILE or --weights FILE");
    }
    const char *path = weights ? weights : positional.items[0];
    /* Damage is reported after everything else was printed: the listing and the load report
     * are what one looks at to understand it. */
    mr_status damage = MR_OK;
    char damage_msg[2048];
    mr_status st = mr_inspect_print(path, tensors, stdout, &damage, damage_msg, sizeof damage_msg);
    if (st == MR_OK && config_path) {
        mr_weights_load_options opt = {
            .exclude = exclude.items, .n_exclude = exclude.count, .allow_damaged = allow_damaged};
        st = mr_inspect_load_report(path, config_path, &opt, stdout);
    }
    /* --allow-damaged covers checksum failures only: NaN or Inf weights are refused anyway. */
    if (damage == MR_ERR_NUMERIC)
        st = mr_fail(damage, "%s; mrcnn refuses weights that are not finite", damage_msg);
    else if (damage != MR_OK && !allow_damaged)
        st = mr_fail(damage, "%s; every verb refuses this file unless given --allow-damaged",
                     damage_msg);
    free((void *)exclude.items);
    free((void *)positional.items);
    /* The verdict goes to stderr: after the report, also when both are one pipe. */
    fflush(stdout);
    return mr_exit_code(st);
}

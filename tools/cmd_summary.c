/* `mrcnn summary --config FILE`: one line per layer (name, output shape, parameters, GFLOPs)
 * and the totals, for the network the config describes. */
#include <stdio.h>

#include "../train/config.h"
#include "cli.h"

int cmd_summary(int argc, char **argv) {
    const char *config_path = NULL;
    mr_opt opts[] = {{"--config", MR_OPT_PATH, &config_path, "config JSON (required)"}};
    static const mr_cli_help help = {"summary", "--config FILE",
                                     "mrcnn summary --config configs/busi.json\n"
                                     "mrcnn summary --config configs/tiny.json\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, 1, NULL, &code)) return code;
    if (!config_path) return mr_cli_missing("--config FILE is required");
    mr_config cfg;
    mr_config_defaults(&cfg);
    mr_status st = mr_config_load(config_path, &cfg);
    if (st != MR_OK) return mr_exit_code(st);
    mr_model model;
    if ((st = mr_model_init(&model, &cfg.net)) != MR_OK) return mr_exit_code(st);
    printf("%s: %s, %d classes, %dx%dx%d input, %lld anchors (%lld per location)\n", config_path,
           mr_net_backbone_title(&cfg.net), cfg.net.num_classes, cfg.net.image_max_dim,
           cfg.net.image_max_dim, cfg.net.image_channels, (long long)model.n_anchors,
           (long long)model.anchors_per_location);
    mr_model_print_summary(&model, stdout);
    mr_model_free(&model);
    return 0;
}

/* `mrcnn inspect FILE [--tensors] [--config C] [--exclude L] [--allow-damaged]`: says what a
 * weights file mrcnn reads is (Keras HDF5, mrcnn export, checkpoint): its kind, epoch, step,
 * validation loss, classes and config name, and whether every tensor matches its checksum (exit 1
 * on damage, after the rest); --tensors lists the tensors with shapes and types, and a config
 * prints the load report --weights would give, without training. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../train/checkpoint.h"
#include "../train/config.h"
#include "../train/weights.h"
#include "cli.h"

static void shape_text(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, ")");
}

/* The first line: what the file is, and the network it holds (from its stored config). */
static void print_kind(const mr_weights_index *ix) {
    int64_t values = 0;
    for (int i = 0; i < ix->count; i++) values += ix->items[i].numel;
    const char *kind = ix->format == MR_WEIGHTS_CHECKPOINT ? "a training checkpoint"
                       : ix->format == MR_WEIGHTS_KERAS    ? "Keras weights"
                                                           : "an mrcnn export";
    printf("%s: %s (%s under %s", ix->path, kind, mr_weights_format_name(ix->format), ix->root);
    if (ix->format == MR_WEIGHTS_KERAS)
        printf(", keras_version %s, backend %s: %d layers, %d with weights",
               ix->keras_version ? ix->keras_version : "?", ix->backend ? ix->backend : "?",
               ix->n_file_layers, ix->n_weighted_layers);
    printf("), %d tensors, %lld values\n", ix->count, (long long)values);
}

/* config NAME and CLASS_NAMES from the config stored in the file (mrcnn layouts). */
static void print_config_line(const mr_weights_index *ix) {
    if (!ix->config_json) {
        printf("config: none stored (give --config to predict, evaluate or export with it)\n");
        return;
    }
    mr_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return;
    mr_config_defaults(cfg);
    if (mr_config_parse(ix->config_json, ix->path, cfg) != MR_OK) {
        printf("config: stored but unreadable: %s\n", mr_last_error());
        mr_clear_error();
        free(cfg);
        return;
    }
    printf("config: %s; %d classes:", cfg->name[0] ? cfg->name : "(no NAME)", cfg->net.num_classes);
    for (int c = 0; c < cfg->net.num_classes && c < MR_MAX_CLASSES; c++)
        printf("%s %s", c ? "," : "", cfg->class_names[c][0] ? cfg->class_names[c] : "?");
    printf("\n");
    free(cfg);
}

static void print_tensors(const mr_weights_index *ix) {
    printf("\n%-26s %-52s %-20s %s\n", "layer", "dataset", "shape", "dtype");
    for (int i = 0; i < ix->count; i++) {
        const mr_weights_tensor *t = &ix->items[i];
        char shape[96];
        shape_text(shape, sizeof shape, t->ndim, t->shape);
        printf("%-26s %-52s %-20s %s\n", t->layer, t->dataset, shape, t->dtype);
    }
}

static mr_status print_checkpoint_state(const char *path, bool *state_verified) {
    mr_checkpoint_state s;
    MR_TRY(mr_checkpoint_read_state(path, &s));
    printf("checkpoint: epoch %lld, step %lld, validation loss ", (long long)s.epoch,
           (long long)s.step);
    if (isnan(s.val_loss))
        printf("not measured");
    else
        printf("%.6g", s.val_loss);
    printf(", data order %lld values, config %zu bytes\n", (long long)s.n_data_order,
           s.config_json ? strlen(s.config_json) : 0);
    if (s.metrics_json && s.metrics_json[0]) printf("metrics: %s\n", s.metrics_json);
    *state_verified = s.verified;
    if (!s.verified)
        printf("training state: no checksum (written by an older mrcnn): range-checked only\n");
    mr_checkpoint_state_free(&s);
    return MR_OK;
}

/* The integrity line; damage is returned (its message kept) for the exit code. */
static mr_status print_integrity(const char *path, bool checkpoint, bool state_verified) {
    int64_t verified = 0, unverified = 0;
    mr_status st = mr_weights_verify(path, &verified, &unverified);
    if (st != MR_OK)
        printf("intact: NO: %s\n", mr_last_error());
    else if (checkpoint)
        printf("intact: yes (every checksum matches: %lld tensors, their momentum%s)\n",
               (long long)verified / 2, state_verified ? " and the training state" : "");
    else if (!unverified)
        printf("intact: yes (every checksum matches: %lld tensors)\n", (long long)verified);
    else if (!verified)
        printf("intact: not verified: the file stores no checksums (a Keras file, or an export "
               "of an older mrcnn); every value is finite\n");
    else
        printf("intact: %lld tensors match their checksums, %lld have none; every value is "
               "finite\n",
               (long long)verified, (long long)unverified);
    return st;
}

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
        fprintf(stderr, "mrcnn inspect: give exactly one weights file, as FILE or --weights FILE "
                        "(see mrcnn inspect --help)\n");
        free((void *)exclude.items);
        free((void *)positional.items);
        return 2;
    }
    const char *path = weights ? weights : positional.items[0];
    mr_weights_index ix;
    mr_status st = mr_weights_index_read(path, &ix);
    /* Damage is reported after everything else was printed: the listing and the load report
     * are what one looks at to understand it. */
    mr_status damage = MR_OK;
    char damage_msg[2048] = "";
    if (st == MR_OK) {
        /* The summary first; the table, long, only when asked for. */
        print_kind(&ix);
        bool checkpoint = ix.format == MR_WEIGHTS_CHECKPOINT, state_verified = false;
        if (checkpoint && print_checkpoint_state(path, &state_verified) != MR_OK) {
            damage = MR_ERR_FORMAT;
            snprintf(damage_msg, sizeof damage_msg, "%s", mr_last_error());
        }
        print_config_line(&ix);
        if (damage != MR_OK)
            printf("intact: NO: %s\n", damage_msg);
        else if ((damage = print_integrity(path, checkpoint, state_verified)) != MR_OK)
            snprintf(damage_msg, sizeof damage_msg, "%s", mr_last_error());
        if (tensors)
            print_tensors(&ix);
        else
            printf("(--tensors lists the %d tensors)\n", ix.count);
        mr_weights_index_free(&ix);
    }
    if (st == MR_OK && config_path) {
        mr_config cfg;
        mr_config_defaults(&cfg);
        st = mr_config_load(config_path, &cfg);
        mr_model model;
        if (st == MR_OK) st = mr_model_init(&model, &cfg.net);
        if (st == MR_OK) {
            mr_weights_load_options opt = {.exclude = exclude.items,
                                           .n_exclude = exclude.count,
                                           .dry_run = true,
                                           .allow_damaged = allow_damaged};
            mr_load_report report;
            st = mr_weights_load(path, &model.params, &opt, &report);
            printf("\nload report for %s:\n", config_path);
            mr_load_report_print_all(&report, stdout);
            mr_load_report_free(&report);
            mr_model_free(&model);
        }
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

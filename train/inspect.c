/* mrcnn inspect's description of a weights file (inspect.h). */
#include "inspect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "config.h"

static void shape_text(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, ")");
}

/* The first line: what the file is, and the network it holds (from its stored config). */
static void print_kind(const mr_weights_index *ix, FILE *out) {
    int64_t values = 0;
    for (int i = 0; i < ix->count; i++) values += ix->items[i].numel;
    const char *kind = ix->format == MR_WEIGHTS_CHECKPOINT ? "a training checkpoint"
                       : ix->format == MR_WEIGHTS_KERAS    ? "Keras weights"
                                                           : "an mrcnn export";
    fprintf(out, "%s: %s (%s under %s", ix->path, kind, mr_weights_format_name(ix->format),
            ix->root);
    if (ix->format == MR_WEIGHTS_KERAS)
        fprintf(out, ", keras_version %s, backend %s: %d layers, %d with weights",
                ix->keras_version ? ix->keras_version : "?", ix->backend ? ix->backend : "?",
                ix->n_file_layers, ix->n_weighted_layers);
    fprintf(out, "), %d tensors, %lld values\n", ix->count, (long long)values);
}

/* config NAME and CLASS_NAMES from the config stored in the file (mrcnn layouts). */
static void print_config_line(const mr_weights_index *ix, FILE *out) {
    if (!ix->config_json) {
        fprintf(out,
                "config: none stored (give --config to predict, evaluate or export with it)\n");
        return;
    }
    mr_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return;
    mr_config_defaults(cfg);
    if (mr_config_parse(ix->config_json, ix->path, cfg) != MR_OK) {
        fprintf(out, "config: stored but unreadable: %s\n", mr_last_error());
        mr_clear_error();
        free(cfg);
        return;
    }
    fprintf(out, "config: %s; %d classes:", cfg->name[0] ? cfg->name : "(no NAME)",
            cfg->net.num_classes);
    for (int c = 0; c < cfg->net.num_classes && c < MR_MAX_CLASSES; c++)
        fprintf(out, "%s %s", c ? "," : "", cfg->class_names[c][0] ? cfg->class_names[c] : "?");
    fprintf(out, "\n");
    free(cfg);
}

static void print_tensors(const mr_weights_index *ix, FILE *out) {
    fprintf(out, "\n%-26s %-52s %-20s %s\n", "layer", "dataset", "shape", "dtype");
    for (int i = 0; i < ix->count; i++) {
        const mr_weights_tensor *t = &ix->items[i];
        char shape[96];
        shape_text(shape, sizeof shape, t->ndim, t->shape);
        fprintf(out, "%-26s %-52s %-20s %s\n", t->layer, t->dataset, shape, t->dtype);
    }
}

static mr_status print_checkpoint_state(const char *path, bool *state_verified, FILE *out) {
    mr_checkpoint_state s;
    MR_TRY(mr_checkpoint_read_state(path, &s));
    fprintf(out, "checkpoint: epoch %lld, step %lld, validation loss ", (long long)s.epoch,
            (long long)s.step);
    if (isnan(s.val_loss))
        fprintf(out, "not measured");
    else
        fprintf(out, "%.6g", s.val_loss);
    fprintf(out, ", data order %lld values, config %zu bytes\n", (long long)s.n_data_order,
            s.config_json ? strlen(s.config_json) : 0);
    if (s.metrics_json && s.metrics_json[0]) fprintf(out, "metrics: %s\n", s.metrics_json);
    *state_verified = s.verified;
    if (!s.verified)
        fprintf(out,
                "training state: no checksum (written by an older mrcnn): range-checked only\n");
    mr_checkpoint_state_free(&s);
    return MR_OK;
}

/* The integrity line; damage is returned (its message kept) for the exit code. */
static mr_status print_integrity(const char *path, bool checkpoint, bool state_verified,
                                 FILE *out) {
    int64_t verified = 0, unverified = 0;
    mr_status st = mr_weights_verify(path, &verified, &unverified);
    if (st != MR_OK)
        fprintf(out, "intact: NO: %s\n", mr_last_error());
    else if (checkpoint)
        fprintf(out, "intact: yes (every checksum matches: %lld tensors, their momentum%s)\n",
                (long long)verified / 2, state_verified ? " and the training state" : "");
    else if (!unverified)
        fprintf(out, "intact: yes (every checksum matches: %lld tensors)\n", (long long)verified);
    else if (!verified)
        fprintf(out,
                "intact: not verified: the file stores no checksums (a Keras file, or an export "
                "of an older mrcnn); every value is finite\n");
    else
        fprintf(out,
                "intact: %lld tensors match their checksums, %lld have none; every value is "
                "finite\n",
                (long long)verified, (long long)unverified);
    return st;
}

mr_status mr_inspect_print(const char *path, bool tensors, FILE *out, mr_status *damage,
                           char *damage_msg, size_t msg_size) {
    *damage = MR_OK;
    damage_msg[0] = '\0';
    mr_weights_index ix;
    MR_TRY(mr_weights_index_read(path, &ix));
    /* The summary first; the table, long, only when asked for. */
    print_kind(&ix, out);
    bool checkpoint = ix.format == MR_WEIGHTS_CHECKPOINT, state_verified = false;
    if (checkpoint && print_checkpoint_state(path, &state_verified, out) != MR_OK) {
        *damage = MR_ERR_FORMAT;
        snprintf(damage_msg, msg_size, "%s", mr_last_error());
    }
    print_config_line(&ix, out);
    if (*damage != MR_OK)
        fprintf(out, "intact: NO: %s\n", damage_msg);
    else if ((*damage = print_integrity(path, checkpoint, state_verified, out)) != MR_OK)
        snprintf(damage_msg, msg_size, "%s", mr_last_error());
    if (tensors)
        print_tensors(&ix, out);
    else
        fprintf(out, "(--tensors lists the %d tensors)\n", ix.count);
    mr_weights_index_free(&ix);
    return MR_OK;
}

mr_status mr_inspect_load_report(const char *path, const char *config_path,
                                 const mr_weights_load_options *opt, FILE *out) {
    mr_config cfg;
    mr_config_defaults(&cfg);
    MR_TRY(mr_config_load(config_path, &cfg));
    mr_model model;
    mr_status st = mr_model_init(&model, &cfg.net);
    if (st != MR_OK) {
        mr_model_free(&model); /* core/status.h: released whatever the call returned */
        return st;
    }
    mr_weights_load_options dry = *opt;
    dry.dry_run = true;
    mr_load_report report;
    st = mr_weights_load(path, &model.params, &dry, &report);
    fprintf(out, "\nload report for %s:\n", config_path);
    mr_load_report_print_all(&report, out);
    mr_load_report_free(&report);
    mr_model_free(&model);
    return st;
}

/* Batch-norm folding, the strict inference loader and the export writer. Folding walks the
 * network table: each conv row names the batch norm that follows it. */
#include "export.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/text.h"
#include "../core/log.h"

/* ---- folding ------------------------------------------------------------------------------ */

static bool is_identity_inv_std(float v, float eps) {
    /* The frozen batch-norm op's own expression (core/op_norm.c). */
    return 1.0f / sqrtf(v + eps) == 1.0f;
}

float mr_bn_identity_variance(float eps) {
    float v = 1.0f - eps;
    if (is_identity_inv_std(v, eps)) return v;
    /* 1 - eps rounded may land an ulp off; step towards the side that reaches 1. */
    float up = v, down = v;
    for (int i = 0; i < 64; i++) {
        up = nextafterf(up, INFINITY);
        if (is_identity_inv_std(up, eps)) return up;
        down = nextafterf(down, -INFINITY);
        if (is_identity_inv_std(down, eps)) return down;
    }
    /* Unreachable for eps in BN_EPSILON's range [1e-12, 1]: 1/sqrtf(x) is 1.0f for x within an
     * ulp or so of 1, and v + eps sweeps through that as v moves by ulps of the same size. */
    MR_PANIC("no identity variance found for batch-norm eps %g", (double)eps);
}

void mr_fold_conv_bn(float *kernel, int64_t kernel_numel, float *bias, int64_t channels,
                     float *gamma, float *beta, float *mean, float *var, float eps) {
    MR_REQUIRE(channels > 0 && kernel_numel % channels == 0,
               "fold: kernel of %lld values is not a multiple of %lld channels",
               (long long)kernel_numel, (long long)channels);
    int64_t rows = kernel_numel / channels;
    float identity_var = mr_bn_identity_variance(eps);
    double *scale = malloc(sizeof *scale * (size_t)channels);
    MR_REQUIRE(scale, "fold: no memory for %lld scales", (long long)channels);
    for (int64_t c = 0; c < channels; c++) {
        /* The variance + eps sum is rounded to float first, as the batch-norm op does. */
        scale[c] = (double)gamma[c] / sqrt((double)(var[c] + eps));
        bias[c] = (float)(((double)bias[c] - (double)mean[c]) * scale[c] + (double)beta[c]);
        gamma[c] = 1.0f;
        beta[c] = 0.0f;
        mean[c] = 0.0f;
        var[c] = identity_var;
    }
    /* Row by row, in memory order: a predict or evaluate run folds the whole network at load. */
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < channels; c++)
            kernel[r * channels + c] = (float)((double)kernel[r * channels + c] * scale[c]);
    free(scale);
}

typedef struct {
    const char *conv, *bn;
    mr_param *kernel, *bias, *gamma, *beta, *mean, *var;
} bn_pair;

static mr_param *layer_param(mr_model *m, const mr_layer *l, int k) {
    return &m->params.items[l->param[k]];
}

static bool pair_is_identity(const bn_pair *b, float eps) {
    for (int64_t c = 0; c < b->gamma->t.numel; c++)
        if (b->gamma->t.data[c] != 1.0f || b->beta->t.data[c] != 0.0f ||
            b->mean->t.data[c] != 0.0f || !is_identity_inv_std(b->var->t.data[c], eps))
            return false;
    return true;
}

mr_status mr_fold_batchnorms(mr_model *m, float eps, int *n_folded, int *n_identity) {
    MR_REQUIRE(m->params.finalized, "mr_fold_batchnorms before mr_params_finalize");
    if (n_folded) *n_folded = 0;
    if (n_identity) *n_identity = 0;
    int n_pairs = 0;
    bn_pair *pairs = malloc(sizeof *pairs * (size_t)(m->n_layers + 1));
    if (!pairs) return mr_fail(MR_ERR_NOMEM, "no memory to fold batch norms");
    /* Every conv of the table with a batch norm after it; check every pair first so a bad one
     * leaves the parameters untouched. */
    mr_status st = MR_OK;
    for (int i = 0; i < m->n_layers && st == MR_OK; i++) {
        const mr_layer *conv = &m->layers[i];
        if (conv->bn < 0) continue;
        const mr_layer *bn = &m->layers[conv->bn];
        bn_pair b = {conv->name,
                     bn->name,
                     layer_param(m, conv, 0),
                     layer_param(m, conv, 1),
                     layer_param(m, bn, 0),
                     layer_param(m, bn, 1),
                     layer_param(m, bn, 2),
                     layer_param(m, bn, 3)};
        int64_t c = b.var->t.numel;
        const mr_tensor *k = &b.kernel->t;
        if (b.gamma->t.numel != c || b.beta->t.numel != c || b.mean->t.numel != c ||
            b.bias->t.numel != c || k->shape[k->ndim - 1] != c) {
            st = mr_fail(MR_ERR_FORMAT,
                         "cannot fold batch norm '%s' (%lld channels) into conv '%s': its "
                         "kernel has %lld output channels",
                         b.bn, (long long)c, b.conv, (long long)k->shape[k->ndim - 1]);
            break;
        }
        pairs[n_pairs++] = b;
    }
    for (int i = 0; i < n_pairs && st == MR_OK; i++) {
        bn_pair *b = &pairs[i];
        if (pair_is_identity(b, eps)) {
            if (n_identity) (*n_identity)++;
            continue;
        }
        mr_fold_conv_bn(b->kernel->t.data, b->kernel->t.numel, b->bias->t.data, b->var->t.numel,
                        b->gamma->t.data, b->beta->t.data, b->mean->t.data, b->var->t.data, eps);
        if (n_folded) (*n_folded)++;
    }
    free(pairs);
    return st;
}

/* ---- strict loading ----------------------------------------------------------------------- */

/* "a, b, c and 4 more" of the report entries of one kind. */
static void list_layers(const mr_load_report *r, mr_load_kind kind, char *buf, size_t size,
                        bool with_detail) {
    size_t used = 0;
    int shown = 0, total = r->n[kind];
    buf[0] = '\0';
    for (int i = 0; i < r->count && shown < 3; i++) {
        const mr_load_entry *e = &r->entries[i];
        if (e->kind != kind) continue;
        int n = snprintf(buf + used, size - used, "%s%s%s%s%s", shown ? ", " : "", e->layer,
                         with_detail && e->detail[0] ? " (" : "", with_detail ? e->detail : "",
                         with_detail && e->detail[0] ? ")" : "");
        if (n < 0 || (size_t)n >= size - used) break;
        used += (size_t)n;
        shown++;
    }
    if (total > shown && used < size)
        snprintf(buf + used, size - used, " and %d more", total - shown);
}

/* One line for a load that would leave part of the network untrained. */
static mr_status mismatch(const mr_load_report *r, const char *weights, const char *origin) {
    char list[1400], nets[600] = "", why[700] = "";
    if (mr_net_signature_diff(&r->file_net, &r->model_net, nets, sizeof nets))
        snprintf(why, sizeof why, " (%s)", nets);
    if (r->classes_excluded)
        return mr_fail(MR_ERR_CONFIG,
                       "config mismatch: %s holds %d classes (background included), the config "
                       "(%s) has NUM_CLASSES %d; use the config these weights were trained with",
                       weights, r->file_classes, origin, r->model_classes);
    if (r->n[MR_LOAD_MISSHAPED]) {
        list_layers(r, MR_LOAD_MISSHAPED, list, sizeof list, true);
        return mr_fail(MR_ERR_CONFIG,
                       "config mismatch: %d layer%s of %s do not fit the network of the config "
                       "(%s)%s: %s; use the config these weights were trained with",
                       r->n[MR_LOAD_MISSHAPED], r->n[MR_LOAD_MISSHAPED] == 1 ? "" : "s", weights,
                       origin, why, list);
    }
    if (r->n[MR_LOAD_MISSING]) {
        list_layers(r, MR_LOAD_MISSING, list, sizeof list, false);
        return mr_fail(MR_ERR_CONFIG,
                       "config mismatch: the network of the config (%s) has %d layer%s that %s "
                       "lacks: %s%s; use the config these weights were trained with",
                       origin, r->n[MR_LOAD_MISSING], r->n[MR_LOAD_MISSING] == 1 ? "" : "s",
                       weights, list, why[0] ? why : " (another BACKBONE or mask shape?)");
    }
    if (r->n[MR_LOAD_UNEXPECTED]) {
        list_layers(r, MR_LOAD_UNEXPECTED, list, sizeof list, false);
        return mr_fail(MR_ERR_CONFIG,
                       "config mismatch: %s has %d layer%s the network of the config (%s) "
                       "lacks: %s%s; use the config these weights were trained with",
                       weights, r->n[MR_LOAD_UNEXPECTED], r->n[MR_LOAD_UNEXPECTED] == 1 ? "" : "s",
                       origin, list, why[0] ? why : " (another BACKBONE or mask shape?)");
    }
    if (r->n[MR_LOAD_EXCLUDED]) {
        list_layers(r, MR_LOAD_EXCLUDED, list, sizeof list, true);
        return mr_fail(MR_ERR_CONFIG, "config mismatch: %s: layers left out: %s", weights, list);
    }
    return MR_OK;
}

/* Settings that change the outputs without changing any shape. */
static void config_differences(const mr_config *given, const char *embedded_json,
                               const char *config_path, const char *weights_path, char *warning,
                               size_t size) {
    warning[0] = '\0';
    mr_config *e = malloc(sizeof *e);
    if (!e) return;
    mr_config_defaults(e);
    if (mr_config_parse(embedded_json, weights_path, e) != MR_OK) {
        mr_clear_error();
        free(e);
        return;
    }
    const mr_net_config *a = &given->net, *b = &e->net;
    char diff[512] = "";
    size_t used = 0;
#define NOTE(cond, key)                                                                            \
    do {                                                                                           \
        if ((cond) && used < sizeof diff)                                                          \
            used +=                                                                                \
                (size_t)snprintf(diff + used, sizeof diff - used, "%s%s", used ? ", " : "", key);  \
    } while (0)
    bool mean_differs = false, std_differs = false;
    for (int c = 0; c < a->image_channels && c < 3; c++) {
        mean_differs |= a->mean_pixel[c] != b->mean_pixel[c];
        std_differs |= a->pixel_std[c] != b->pixel_std[c];
    }
    NOTE(mean_differs, "MEAN_PIXEL");
    NOTE(a->image_normalization != b->image_normalization, "IMAGE_NORMALIZATION");
    NOTE(a->image_normalization == MR_NORM_MEAN_STD && std_differs, "PIXEL_STD");
    NOTE(a->image_min_dim != b->image_min_dim, "IMAGE_MIN_DIM");
    NOTE(a->image_max_dim != b->image_max_dim, "IMAGE_MAX_DIM");
    NOTE(a->bn_eps != b->bn_eps, "BN_EPSILON");
    bool names_differ = false;
    for (int i = 0; i < a->num_classes && i < MR_MAX_CLASSES; i++)
        names_differ |= strcmp(given->class_names[i], e->class_names[i]) != 0;
    NOTE(names_differ, "CLASS_NAMES");
#undef NOTE
    if (diff[0])
        snprintf(warning, size, "%s differs from the config embedded in %s in %s; using %s",
                 config_path, weights_path, diff, config_path);
    free(e);
}

mr_status mr_inference_load(const char *weights_path, const char *config_path, mr_config *cfg,
                            mr_model *m, mr_weights_format *format) {
    return mr_inference_load_opts(weights_path, config_path, NULL, cfg, m, format);
}

mr_status mr_inference_load_opts(const char *weights_path, const char *config_path,
                                 const mr_inference_options *opt, mr_config *cfg, mr_model *m,
                                 mr_weights_format *format) {
    memset(m, 0, sizeof *m);
    mr_weights_index ix;
    MR_TRY(mr_weights_index_read(weights_path, &ix));
    if (format) *format = ix.format;
    char origin[1200], warning[4096] = "";
    mr_status st = MR_OK;
    mr_config_defaults(cfg);
    if (config_path) {
        snprintf(origin, sizeof origin, "%s", config_path);
        st = mr_config_load(config_path, cfg);
        if (st == MR_OK && ix.config_json && ix.config_json[0])
            config_differences(cfg, ix.config_json, config_path, weights_path, warning,
                               sizeof warning);
    } else if (ix.config_json && ix.config_json[0]) {
        snprintf(origin, sizeof origin, "embedded in %s", weights_path);
        st = mr_config_parse(ix.config_json, origin, cfg);
    } else {
        char side[1200], hint[1300] = "";
        snprintf(side, sizeof side, "%s.config.json", weights_path);
        if (access(side, R_OK) == 0) snprintf(hint, sizeof hint, " (found beside it: %s)", side);
        st = mr_fail(MR_ERR_CONFIG,
                     "%s is a %s, which holds no config: pass --config CONFIG.json, the config "
                     "the weights were trained with%s",
                     weights_path, mr_weights_format_name(ix.format), hint);
    }
    mr_weights_index_free(&ix);
    if (st != MR_OK) return st;
    st = mr_model_init(m, &cfg->net);
    if (st != MR_OK) {
        mr_model_free(m);
        return st;
    }
    /* Damage is the loader's call (refused unless allowed); predict, evaluate and export have
     * no --exclude, so its messages must not suggest one. */
    const mr_weights_load_options wo = {.allow_damaged = opt && opt->allow_damaged,
                                        .no_exclude_hint = true};
    mr_load_report report;
    st = mr_weights_load(weights_path, &m->params, &wo, &report);
    if (st != MR_OK && report.other_network) {
        /* The loader's line already says how the networks differ; say which config. */
        char keep[2048];
        snprintf(keep, sizeof keep, "%s", mr_last_error());
        st = mr_fail(MR_ERR_CONFIG, "config mismatch (config %s): %s", origin, keep);
    } else if (st != MR_OK && report.n[MR_LOAD_MISSHAPED]) {
        st = mismatch(&report, weights_path, origin);
    } else if (st == MR_OK) {
        st = mismatch(&report, weights_path, origin);
    }
    mr_load_report_free(&report);
    if (st == MR_OK && opt && opt->fold_batchnorms)
        st = mr_fold_batchnorms(m, cfg->net.bn_eps, NULL, NULL);
    if (st != MR_OK) mr_model_free(m);
    /* Only worth saying when the weights did load: a mismatch error says it all. */
    else if (warning[0])
        mr_warn("%s", warning);
    return st;
}

/* ---- export ------------------------------------------------------------------------------- */

/* The config beside a Keras export, ended by a newline, written whole or not at all. */
static mr_status write_text(const char *path, const char *text) {
    mr_text t = {0};
    mr_text_printf(&t, "%s\n", text);
    mr_status st = mr_text_write_atomic(&t, path);
    mr_text_free(&t);
    return st;
}

mr_status mr_export(const char *weights_path, const char *config_path, const char *out_path,
                    const mr_export_options *opt, mr_export_summary *sum) {
    static const mr_export_options defaults = {0};
    mr_export_summary local;
    if (!opt) opt = &defaults;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    if (opt->format == MR_EXPORT_KERAS && opt->half)
        return mr_fail(MR_ERR_ARG, "float16 is for the mrcnn layout only: Keras weight files are "
                                   "float32, as Matterport's loader expects; drop --fp16");
    mr_config *cfg = malloc(sizeof *cfg);
    if (!cfg) return mr_fail(MR_ERR_NOMEM, "no memory for the config");
    mr_model m;
    const mr_inference_options io = {.allow_damaged = opt->allow_damaged};
    mr_status st =
        mr_inference_load_opts(weights_path, config_path, &io, cfg, &m, &sum->source_format);
    if (st != MR_OK) {
        free(cfg);
        return st;
    }
    mr_params *p = &m.params;
    if (opt->format == MR_EXPORT_MRCNN && !opt->no_fold)
        st = mr_fold_batchnorms(&m, cfg->net.bn_eps, &sum->n_folded, &sum->n_identity);
    for (int i = 0; i < p->count && st == MR_OK; i++) {
        const mr_param *q = &p->items[i];
        for (int64_t k = 0; k < q->t.numel; k++) {
            float a = fabsf(q->t.data[k]);
            if (!isfinite(a)) {
                st = mr_fail(MR_ERR_NUMERIC,
                             "%s: %s holds a non-finite value at %lld: the "
                             "weights are damaged (diverged training?)",
                             weights_path, q->name, (long long)k);
                break;
            }
            if (a > sum->max_abs) sum->max_abs = a;
            if (opt->half && a > 65504.0f) {
                st = mr_fail(MR_ERR_NUMERIC,
                             "%s value %g at %lld exceeds float16's range (65504)%s; export "
                             "without --fp16",
                             q->name, (double)q->t.data[k], (long long)k,
                             opt->no_fold ? "" : " after batch-norm folding");
                break;
            }
        }
        sum->n_values += q->t.numel;
    }
    sum->n_params = p->count;
    char *json = st == MR_OK ? mr_config_to_json(cfg) : NULL;
    if (st == MR_OK && !json) st = mr_fail(MR_ERR_NOMEM, "no memory for the config text");
    if (st == MR_OK && opt->format == MR_EXPORT_MRCNN) {
        st = mr_weights_save(out_path, p, json, opt->half);
    } else if (st == MR_OK) {
        st = mr_weights_save_keras_model(out_path, &m);
        snprintf(sum->config_path, sizeof sum->config_path, "%s.config.json", out_path);
        if (st == MR_OK) st = write_text(sum->config_path, json);
    }
    if (st == MR_OK) {
        struct stat sb;
        if (stat(out_path, &sb) == 0) sum->file_bytes = (int64_t)sb.st_size;
    }
    free(json);
    mr_model_free(&m);
    free(cfg);
    return st;
}

/* Weight files in, weight files out. Reading builds an index (every tensor of the file under the
 * mrcnn parameter name it maps to), then a plan per model layer (copy, sum channels, zero bias,
 * or why not), then copies only if every layer that was not excluded fits. Writing produces
 * Keras' layout or mrcnn's own, both through the atomic writer of checkpoint.c. */
#include "weights.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "../core/runtime.h"
#include "../core/text.h"
#include "../core/util.h"
#include "checkpoint.h"

const char *mr_weights_format_name(mr_weights_format f) {
    switch (f) {
    case MR_WEIGHTS_KERAS:
        return "Keras HDF5 weights";
    case MR_WEIGHTS_EXPORT:
        return "mrcnn export";
    case MR_WEIGHTS_CHECKPOINT:
        return "mrcnn checkpoint";
    }
    return "unknown";
}

/* Appends `s` to a bounded text, ", "-separated; false once it no longer fits. */
static bool append_item(char *buf, size_t size, const char *s) {
    size_t n = strlen(buf), add = strlen(s) + (n ? 2 : 0);
    if (n + add + 1 > size) return false;
    if (n) strcat(buf, ", ");
    strcat(buf, s);
    return true;
}

static bool known_weight(const char *w) {
    static const char *kinds[] = {"kernel", "bias",        "gamma",
                                  "beta",   "moving_mean", "moving_variance"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(w, kinds[i])) return true;
    return false;
}

/* Removes a trailing "_<digits>" (TF's suffix for a name used twice: conv1_1) in place. */
static void strip_number_suffix(char *s) {
    size_t n = strlen(s), i = n;
    while (i > 0 && isdigit((unsigned char)s[i - 1])) i--;
    if (i < n && i > 1 && s[i - 1] == '_') s[i - 1] = '\0';
}

static void format_shape(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (n < size) mr_format(buf + n, size - n, ")");
}

/* ---- index -------------------------------------------------------------------------------- */

static mr_weights_tensor *index_push(mr_weights_index *ix) {
    if (!mr_grow(&ix->items, &ix->capacity, (size_t)ix->count + 1, sizeof *ix->items, 256))
        return NULL;
    mr_weights_tensor *t = &ix->items[ix->count++];
    memset(t, 0, sizeof *t);
    return t;
}

/* Shape and dtype of the dataset t->dataset. */
static mr_status describe(mr_h5 *f, mr_weights_tensor *t) {
    MR_TRY(mr_h5_shape(f, t->dataset, &t->ndim, t->shape));
    MR_TRY(mr_h5_dtype(f, t->dataset, t->dtype, sizeof t->dtype));
    /* mr_h5_shape has checked the product against MR_H5_MAX_VALUES: no overflow here. */
    t->numel = 1;
    for (int i = 0; i < t->ndim; i++) t->numel *= t->shape[i];
    return MR_OK;
}

/* Splits a TF variable name "rpn_conv_shared_1/kernel:0" into its layer part
 * ("rpn_conv_shared", suffix removed) and weight ("kernel"). */
static void split_variable(const char *var, char *inner, size_t inner_size, char *weight,
                           size_t weight_size) {
    char buf[512];
    mr_format(buf, sizeof buf, "%s", var);
    char *colon = strrchr(buf, ':');
    if (colon && !strchr(colon, '/')) *colon = '\0';
    char *slash = strrchr(buf, '/');
    mr_format(weight, weight_size, "%s", slash ? slash + 1 : buf);
    if (!known_weight(weight)) {
        char stripped[64];
        mr_format(stripped, sizeof stripped, "%s", weight);
        strip_number_suffix(stripped);
        if (known_weight(stripped)) mr_format(weight, weight_size, "%s", stripped);
    }
    inner[0] = '\0';
    if (slash) {
        *slash = '\0';
        char *prev = strrchr(buf, '/');
        mr_format(inner, inner_size, "%s", prev ? prev + 1 : buf);
        strip_number_suffix(inner);
    }
}

static mr_status index_keras_layer(mr_h5 *f, mr_weights_index *ix, const char *group_path,
                                   const char *layer_name) {
    char **wn = NULL;
    int n = 0;
    if (!mr_h5_has_attr(f, group_path, "weight_names") &&
        !mr_h5_has_attr(f, group_path, "weight_names0"))
        return mr_fail(MR_ERR_FORMAT,
                       "%s: Keras layer '%s' has no weight_names attribute (damaged file?)",
                       ix->path, layer_name);
    MR_TRY(mr_h5_get_attr_strings(f, group_path, "weight_names", &wn, &n));
    /* A nested model (rpn_model) names the variables of several inner layers; they load into
     * those layers. A plain or TimeDistributed layer's variables carry its own name, perhaps with
     * a suffix (conv1_1/kernel:0), and load into it. */
    char first_inner[MR_PARAM_NAME_MAX] = "";
    bool nested = false;
    for (int i = 0; i < n; i++) {
        char inner[MR_PARAM_NAME_MAX], weight[32];
        split_variable(wn[i], inner, sizeof inner, weight, sizeof weight);
        if (i == 0)
            mr_format(first_inner, sizeof first_inner, "%s", inner);
        else if (strcmp(inner, first_inner) != 0)
            nested = true;
    }
    mr_status st = MR_OK;
    for (int i = 0; i < n && st == MR_OK; i++) {
        mr_weights_tensor *t = index_push(ix);
        if (!t) {
            st = mr_fail(MR_ERR_NOMEM, "no memory for the weights index");
            break;
        }
        char inner[MR_PARAM_NAME_MAX];
        split_variable(wn[i], inner, sizeof inner, t->weight, sizeof t->weight);
        mr_format(t->group, sizeof t->group, "%s", layer_name);
        mr_format(t->layer, sizeof t->layer, "%s", nested && inner[0] ? inner : layer_name);
        mr_format(t->param, sizeof t->param, "%s/%s", t->layer, t->weight);
        mr_format(t->dataset, sizeof t->dataset, "%s/%s", group_path, wn[i]);
        if (!mr_h5_exists(f, t->dataset)) {
            st = mr_fail(MR_ERR_FORMAT,
                         "%s: Keras layer '%s' lists weight '%s' but there is no dataset %s "
                         "(damaged file?)",
                         ix->path, layer_name, wn[i], t->dataset);
            break;
        }
        st = describe(f, t);
    }
    mr_h5_free_strings(wn, n);
    return st;
}

static mr_status index_keras(mr_h5 *f, mr_weights_index *ix) {
    char **names = NULL;
    int n = 0;
    MR_TRY(mr_h5_get_attr_strings(f, ix->root, "layer_names", &names, &n));
    ix->n_file_layers = n;
    mr_status st = MR_OK;
    for (int i = 0; i < n && st == MR_OK; i++) {
        char group[600];
        mr_format(group, sizeof group, "%s/%s", strcmp(ix->root, "/") ? ix->root : "", names[i]);
        if (!mr_h5_exists(f, group)) {
            st = mr_fail(MR_ERR_FORMAT,
                         "%s: layer_names lists '%s' but the file has no group %s (damaged "
                         "file?)",
                         ix->path, names[i], group);
            break;
        }
        int before = ix->count;
        st = index_keras_layer(f, ix, group, names[i]);
        if (ix->count > before) ix->n_weighted_layers++;
    }
    mr_h5_free_strings(names, n);
    if (st != MR_OK) return st;
    if (mr_h5_has_attr(f, ix->root, "keras_version"))
        (void)mr_h5_get_attr_str(f, ix->root, "keras_version", &ix->keras_version);
    if (mr_h5_has_attr(f, ix->root, "backend"))
        (void)mr_h5_get_attr_str(f, ix->root, "backend", &ix->backend);
    return MR_OK;
}

typedef struct {
    mr_h5 *f;
    mr_weights_index *ix;
} visit_ctx;

static mr_status index_mrcnn_visit(const char *path, void *user) {
    visit_ctx *v = user;
    mr_weights_tensor *t = index_push(v->ix);
    if (!t) return mr_fail(MR_ERR_NOMEM, "no memory for the weights index");
    mr_format(t->dataset, sizeof t->dataset, "%s", path);
    mr_format(t->param, sizeof t->param, "%s", path + strlen("/params/"));
    mr_param_layer(t->param, t->layer, sizeof t->layer);
    const char *slash = strrchr(t->param, '/');
    mr_format(t->weight, sizeof t->weight, "%s", slash ? slash + 1 : t->param);
    mr_format(t->group, sizeof t->group, "%s", mr_net_keras_group(t->layer));
    return describe(v->f, t);
}

static mr_status index_build(mr_h5 *f, mr_weights_index *ix) {
    if (mr_h5_has_attr(f, "/", "format")) {
        char *format = NULL;
        MR_TRY(mr_h5_get_attr_str(f, "/", "format", &format));
        bool ckpt = !strcmp(format, MR_CHECKPOINT_FORMAT);
        bool exported = !strcmp(format, MR_WEIGHTS_EXPORT_FORMAT);
        if (!ckpt && !exported) {
            mr_status st = mr_fail(MR_ERR_FORMAT,
                                   "%s: unknown format '%s' (expected a Keras weights file, an "
                                   "mrcnn export or an mrcnn checkpoint)",
                                   ix->path, format);
            free(format);
            return st;
        }
        free(format);
        ix->format = ckpt ? MR_WEIGHTS_CHECKPOINT : MR_WEIGHTS_EXPORT;
        int64_t version = 0, supported = ckpt ? MR_CHECKPOINT_VERSION : MR_WEIGHTS_EXPORT_VERSION;
        MR_TRY(mr_h5_get_attr_i64(f, "/", "version", &version));
        if (version > supported)
            return mr_fail(MR_ERR_FORMAT,
                           "%s: %s version %lld is newer than this mrcnn reads (%lld); update "
                           "mrcnn",
                           ix->path, mr_weights_format_name(ix->format), (long long)version,
                           (long long)supported);
        mr_format(ix->root, sizeof ix->root, "/params");
        if (mr_h5_has_attr(f, "/", "config"))
            (void)mr_h5_get_attr_str(f, "/", "config", &ix->config_json);
        if (!mr_h5_exists(f, "/params"))
            return mr_fail(MR_ERR_FORMAT, "%s: %s without a /params group (damaged file?)",
                           ix->path, mr_weights_format_name(ix->format));
        visit_ctx v = {f, ix};
        MR_TRY(mr_h5_visit_datasets(f, "/params", index_mrcnn_visit, &v));
        return MR_OK;
    }
    ix->format = MR_WEIGHTS_KERAS;
    if (mr_h5_has_attr(f, "/", "layer_names") || mr_h5_has_attr(f, "/", "layer_names0")) {
        mr_format(ix->root, sizeof ix->root, "/");
    } else if (mr_h5_exists(f, "/model_weights") &&
               (mr_h5_has_attr(f, "/model_weights", "layer_names") ||
                mr_h5_has_attr(f, "/model_weights", "layer_names0"))) {
        /* model.save() keeps the weights one level down, as Matterport's load_weights knows. */
        snprintf(ix->root, sizeof ix->root, "/model_weights");
    } else {
        return mr_fail(MR_ERR_FORMAT,
                       "%s: an HDF5 file, but not a weights file mrcnn knows: no layer_names "
                       "attribute (Keras save_weights), no /model_weights group (Keras save) and "
                       "no format attribute (mrcnn export or checkpoint)",
                       ix->path);
    }
    return index_keras(f, ix);
}

static mr_status index_open(const char *path, mr_h5 *f, mr_weights_index *ix) {
    memset(ix, 0, sizeof *ix);
    ix->path = mr_strdup(path);
    if (!ix->path) return mr_fail(MR_ERR_NOMEM, "no memory");
    MR_TRY(mr_h5_check_regular(path, "weights file", NULL));
    MR_TRY(mr_h5_open(path, false, f));
    mr_status st = index_build(f, ix);
    if (st != MR_OK) st = mr_h5_close_after(f, st); /* the index error is the one to report */
    return st;
}

mr_status mr_weights_index_read(const char *path, mr_weights_index *out) {
    mr_h5 f;
    mr_status st = index_open(path, &f, out);
    if (st == MR_OK) st = mr_h5_close(&f);
    if (st != MR_OK) mr_weights_index_free(out);
    return st;
}

void mr_weights_index_free(mr_weights_index *ix) {
    free(ix->path);
    free(ix->items);
    free(ix->keras_version);
    free(ix->backend);
    free(ix->config_json);
    memset(ix, 0, sizeof *ix);
}

/* ---- the report --------------------------------------------------------------------------- */

static mr_status report_add(mr_load_report *r, const char *layer, mr_load_kind kind,
                            const char *detail) {
    if (!mr_grow(&r->entries, &r->capacity, (size_t)r->count + 1, sizeof *r->entries, 256))
        return mr_fail(MR_ERR_NOMEM, "no memory for the load report");
    mr_load_entry *e = &r->entries[r->count++];
    mr_format(e->layer, sizeof e->layer, "%s", layer);
    e->kind = kind;
    mr_format(e->detail, sizeof e->detail, "%s", detail ? detail : "");
    r->n[kind]++;
    return MR_OK;
}

static mr_status report_note(mr_load_report *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static mr_status report_note(mr_load_report *r, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!mr_grow(&r->notes, &r->notes_cap, (size_t)r->n_notes + 1, sizeof *r->notes, 16))
        return mr_fail(MR_ERR_NOMEM, "no memory for the load report");
    if (!(r->notes[r->n_notes] = mr_strdup(buf))) return mr_fail(MR_ERR_NOMEM, "no memory");
    r->n_notes++;
    return MR_OK;
}

void mr_load_report_free(mr_load_report *r) {
    free(r->path);
    free(r->entries);
    for (int i = 0; i < r->n_notes; i++) free(r->notes[i]);
    free(r->notes);
    memset(r, 0, sizeof *r);
}

static const char *kind_label(mr_load_kind k) {
    switch (k) {
    case MR_LOAD_LOADED:
        return "loaded";
    case MR_LOAD_EXCLUDED:
        return "excluded";
    case MR_LOAD_MISSING:
        return "missing";
    case MR_LOAD_UNEXPECTED:
        return "unexpected";
    case MR_LOAD_MISSHAPED:
        return "mis-shaped";
    case MR_LOAD_KINDS:
        break;
    }
    return "?";
}

/* Names per kind beyond this are counted, not listed: a file for another network would list
 * every layer twice. `mrcnn inspect FILE --config C` lists them all. */
#define REPORT_NAMES_SHOWN 10

static void report_print(const mr_load_report *r, FILE *out, int max_names) {
    fprintf(out, "weights %s (%s, %s)%s\n", r->path ? r->path : "?",
            mr_weights_format_name(r->format), r->root, r->applied ? "" : " [not applied]");
    static const char *meaning[MR_LOAD_KINDS] = {
        "from the file",
        "left out",
        "in the model, not in the file: keep their initial values",
        "in the file, not in the model: ignored",
        "do not fit the model",
    };
    for (int k = 0; k < MR_LOAD_KINDS; k++) {
        fprintf(out, "  %-10s %4d layers  %s\n", kind_label((mr_load_kind)k), r->n[k], meaning[k]);
        if (k == MR_LOAD_LOADED || r->n[k] == 0 || max_names == 0) continue;
        int shown = 0;
        for (int i = 0; i < r->count; i++) {
            const mr_load_entry *e = &r->entries[i];
            if (e->kind != (mr_load_kind)k) continue;
            if (max_names > 0 && shown == max_names) {
                fprintf(out, "    ... and %d more (mrcnn inspect %s --config CONFIG lists all)\n",
                        r->n[k] - shown, r->path ? r->path : "FILE");
                break;
            }
            fprintf(out, "    %s%s%s\n", e->layer, e->detail[0] ? ": " : "", e->detail);
            shown++;
        }
    }
    fprintf(out, "  %lld tensors, %lld values %s", (long long)r->tensors_loaded,
            (long long)r->values_loaded, r->applied ? "copied" : "would be copied");
    if (r->tensors_verified || r->tensors_damaged)
        fprintf(out, "; %lld match their checksums", (long long)r->tensors_verified);
    if (r->tensors_damaged)
        fprintf(out, ", %lld DO NOT (damaged, used anyway: --allow-damaged)",
                (long long)r->tensors_damaged);
    fprintf(out, "\n");
    for (int i = 0; i < r->n_notes; i++) fprintf(out, "  note: %s\n", r->notes[i]);
}

void mr_load_report_print(const mr_load_report *r, FILE *out) {
    /* A refused load's error line names what matters; the names would bury it. */
    report_print(r, out, r->refused ? 0 : REPORT_NAMES_SHOWN);
}

void mr_load_report_print_all(const mr_load_report *r, FILE *out) {
    report_print(r, out, -1);
}

/* ---- what the shapes say about the network ------------------------------------------------ */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

static void signature_add(mr_net_signature *g, const char *name, int ndim, const int64_t *shape) {
    int64_t last = ndim > 0 ? shape[ndim - 1] : 0;
    if (!strcmp(name, "conv1/kernel") && ndim == 4) {
        g->filters = shape[3];
        g->channels = shape[2];
    } else if (!strcmp(name, "fpn_c5p5/kernel") && ndim == 4) {
        g->pyramid = last;
    } else if (!strcmp(name, "rpn_conv_shared/kernel") && ndim == 4) {
        g->rpn_depth = last;
    } else if (!strcmp(name, "mrcnn_class_conv1/kernel") && ndim == 4) {
        g->fc_size = last;
    } else if (!strcmp(name, "mrcnn_class_logits/kernel") && ndim == 2) {
        g->classes = last;
    } else if (!strncmp(name, "res4", 4) && ends_with(name, "_branch2a/kernel")) {
        g->res4_blocks++;
    }
}

static void signature_finish(mr_net_signature *g) {
    g->depth = g->res4_blocks == 6 ? 50 : g->res4_blocks == 23 ? 101 : 0;
}

static void signature_of_index(const mr_weights_index *ix, mr_net_signature *g) {
    memset(g, 0, sizeof *g);
    for (int i = 0; i < ix->count; i++)
        signature_add(g, ix->items[i].param, ix->items[i].ndim, ix->items[i].shape);
    signature_finish(g);
}

static void signature_of_params(const mr_params *p, mr_net_signature *g) {
    memset(g, 0, sizeof *g);
    for (int i = 0; i < p->count; i++)
        signature_add(g, p->items[i].name, p->items[i].t.ndim, p->items[i].t.shape);
    signature_finish(g);
}

/* "ResNet-50 with 8 filters", "a ResNet with 9 res4 blocks", "" when nothing is known. */
static void signature_name(const mr_net_signature *g, char *buf, size_t size) {
    char net[64] = "";
    if (g->depth)
        mr_format(net, sizeof net, "ResNet-%d", g->depth);
    else if (g->res4_blocks)
        mr_format(net, sizeof net, "a ResNet with %d res4 blocks", g->res4_blocks);
    if (g->filters)
        mr_format(buf, size, "%s with %lld filters", net[0] ? net : "a network",
                  (long long)g->filters);
    else
        mr_format(buf, size, "%s", net);
}

/* Settings both sides show and disagree on: they alone make layers misfit. */
static bool shapes_settings_differ(const mr_net_signature *a, const mr_net_signature *b) {
    return (a->filters && b->filters && a->filters != b->filters) ||
           (a->pyramid && b->pyramid && a->pyramid != b->pyramid) ||
           (a->rpn_depth && b->rpn_depth && a->rpn_depth != b->rpn_depth) ||
           (a->fc_size && b->fc_size && a->fc_size != b->fc_size);
}

bool mr_net_signature_diff(const mr_net_signature *file, const mr_net_signature *model, char *buf,
                           size_t size) {
    buf[0] = '\0';
    char a[96], b[96], also[400] = "";
    signature_name(file, a, sizeof a);
    signature_name(model, b, sizeof b);
    const struct {
        const char *key;
        int64_t f, m;
    } other[] = {
        {"IMAGE_CHANNEL_COUNT", file->channels, model->channels},
        {"TOP_DOWN_PYRAMID_SIZE", file->pyramid, model->pyramid},
        {"RPN_CONV_DEPTH", file->rpn_depth, model->rpn_depth},
        {"FPN_CLASSIF_FC_LAYERS_SIZE", file->fc_size, model->fc_size},
        {"NUM_CLASSES", file->classes, model->classes},
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        if (!other[i].f || !other[i].m || other[i].f == other[i].m) continue;
        char item[96];
        mr_format(item, sizeof item, "%s %lld vs %lld", other[i].key, (long long)other[i].f,
                  (long long)other[i].m);
        append_item(also, sizeof also, item);
    }
    bool names_differ = a[0] && b[0] && strcmp(a, b) != 0;
    if (names_differ)
        mr_format(buf, size, "the weights are %s, the config is %s%s%s%s", a, b,
                  also[0] ? " (weights vs config also: " : "", also, also[0] ? ")" : "");
    else if (also[0] && a[0])
        mr_format(buf, size,
                  "the weights and the config are both %s but differ (weights vs config): %s", a,
                  also);
    else if (also[0])
        mr_format(buf, size, "the weights and the config differ (weights vs config): %s", also);
    return buf[0] != '\0';
}

/* ---- planning ----------------------------------------------------------------------------- */

typedef enum { ACT_COPY, ACT_SUM_CHANNELS, ACT_ZERO } action_kind;

typedef struct {
    mr_param *param;
    const mr_weights_tensor *src; /* NULL for ACT_ZERO */
    action_kind kind;
} action;

typedef struct {
    action *items;
    int count;
    size_t capacity;
} plan;

static mr_status plan_push(plan *pl, mr_param *param, const mr_weights_tensor *src,
                           action_kind kind) {
    if (!mr_grow(&pl->items, &pl->capacity, (size_t)pl->count + 1, sizeof *pl->items, 256))
        return mr_fail(MR_ERR_NOMEM, "no memory for the load plan");
    pl->items[pl->count++] = (action){param, src, kind};
    return MR_OK;
}

/* Growable list of names (layers of the model, exclude names, ...). */
typedef struct {
    char **items;
    int count;
    size_t cap;
} name_list;

static bool names_has(const name_list *l, const char *s) {
    for (int i = 0; i < l->count; i++)
        if (!strcmp(l->items[i], s)) return true;
    return false;
}

static mr_status names_add(name_list *l, const char *s) {
    if (!mr_grow(&l->items, &l->cap, (size_t)l->count + 1, sizeof *l->items, 64))
        return mr_fail(MR_ERR_NOMEM, "no memory");
    if (!(l->items[l->count] = mr_strdup(s))) return mr_fail(MR_ERR_NOMEM, "no memory");
    l->count++;
    return MR_OK;
}

static void names_free(name_list *l) {
    for (int i = 0; i < l->count; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static bool shapes_equal(const mr_tensor *t, const mr_weights_tensor *w) {
    if (t->ndim != w->ndim) return false;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] != w->shape[i]) return false;
    return true;
}

/* A 1-channel model from a file whose conv1 has several input channels (RGB COCO weights):
 * summing the kernel over them makes a grey image x respond as RGB (x, x, x) did. */
static bool can_sum_channels(const mr_param *q, const mr_weights_tensor *w) {
    if (strcmp(q->name, "conv1/kernel") != 0 || q->t.ndim != 4 || w->ndim != 4) return false;
    return q->t.shape[2] == 1 && w->shape[2] > 1 && q->t.shape[0] == w->shape[0] &&
           q->t.shape[1] == w->shape[1] && q->t.shape[3] == w->shape[3];
}

/* Matches one model layer against the file's tensors for it. Fills `why` when it does not fit. */
static mr_status plan_layer(mr_params *p, const char *layer, const mr_weights_index *ix,
                            const int *src, int n_src, plan *pl, char *why, size_t why_size,
                            name_list *zero_bias, bool *summed) {
    why[0] = '\0';
    int first_action = pl->count;
    char shape_f[96], shape_m[96], item[320];
    for (int i = 0; i < p->count; i++) {
        mr_param *q = &p->items[i];
        char ql[MR_PARAM_NAME_MAX];
        mr_param_layer(q->name, ql, sizeof ql);
        if (strcmp(ql, layer) != 0) continue;
        const char *weight = q->name + strlen(ql) + 1;
        const mr_weights_tensor *found = NULL;
        for (int k = 0; k < n_src; k++) {
            const mr_weights_tensor *w = &ix->items[src[k]];
            if (strcmp(w->weight, weight) != 0) continue;
            if (found) {
                mr_format(item, sizeof item, "the file has two '%s' tensors (%s, %s)", weight,
                          found->dataset, w->dataset);
                append_item(why, why_size, item);
            }
            found = w;
        }
        if (!found) {
            if (!strcmp(weight, "bias")) {
                MR_TRY(plan_push(pl, q, NULL, ACT_ZERO));
                MR_TRY(names_add(zero_bias, layer));
            } else {
                mr_format(item, sizeof item, "no %s in the file", weight);
                append_item(why, why_size, item);
            }
            continue;
        }
        if (shapes_equal(&q->t, found)) {
            MR_TRY(plan_push(pl, q, found, ACT_COPY));
        } else if (can_sum_channels(q, found)) {
            MR_TRY(plan_push(pl, q, found, ACT_SUM_CHANNELS));
            *summed = true;
        } else {
            format_shape(shape_f, sizeof shape_f, found->ndim, found->shape);
            format_shape(shape_m, sizeof shape_m, q->t.ndim, q->t.shape);
            mr_format(item, sizeof item, "%s %s in the file, %s in the model", weight, shape_f,
                      shape_m);
            append_item(why, why_size, item);
        }
    }
    for (int k = 0; k < n_src; k++) {
        const mr_weights_tensor *w = &ix->items[src[k]];
        char name[MR_PARAM_NAME_MAX * 2];
        mr_format(name, sizeof name, "%s/%s", layer, w->weight);
        if (!mr_params_find(p, name)) {
            mr_format(item, sizeof item, "the file has '%s' (%s), the model has no such tensor",
                      w->weight, w->dataset);
            append_item(why, why_size, item);
        }
    }
    if (why[0]) {
        /* The layer does not load: drop its actions (and its zero-bias note). */
        pl->count = first_action;
        if (zero_bias->count && !strcmp(zero_bias->items[zero_bias->count - 1], layer)) {
            free(zero_bias->items[--zero_bias->count]);
        }
    }
    return MR_OK;
}

static const char *const class_layers[] = {"mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"};

static int find_tensor(const mr_weights_index *ix, const char *param) {
    for (int i = 0; i < ix->count; i++)
        if (!strcmp(ix->items[i].param, param)) return i;
    return -1;
}

/* Builds the report and the plan. */
static mr_status make_plan(mr_params *p, const mr_weights_index *ix,
                           const mr_weights_load_options *opt, mr_load_report *r, plan *pl) {
    mr_status st = MR_OK;
    name_list layers = {0}, excl = {0}, zero_bias = {0};
    int *src = malloc(sizeof(int) * (size_t)(ix->count + 1));
    bool *used = calloc((size_t)ix->count + 1, sizeof(bool));
    if (!src || !used) st = mr_fail(MR_ERR_NOMEM, "no memory for the load plan");
    /* Model layers in declaration order. */
    for (int i = 0; i < p->count && st == MR_OK; i++) {
        char layer[MR_PARAM_NAME_MAX];
        mr_param_layer(p->items[i].name, layer, sizeof layer);
        if (!names_has(&layers, layer)) st = names_add(&layers, layer);
    }
    /* Exclude names, comma lists split. */
    for (int i = 0; opt && i < opt->n_exclude && st == MR_OK; i++) {
        /* A copy of any length: a fixed buffer would drop the tail of a long list silently. */
        char *buf = mr_strdup(opt->exclude[i]);
        if (!buf) st = mr_fail(MR_ERR_NOMEM, "no memory for the exclude list");
        for (char *save = NULL, *tok = buf ? strtok_r(buf, ", ", &save) : NULL; tok && st == MR_OK;
             tok = strtok_r(NULL, ", ", &save))
            if (!names_has(&excl, tok)) st = names_add(&excl, tok);
        free(buf);
    }
    /* NUM_CLASSES: the class layers of another class count can never fit. */
    int fl = find_tensor(ix, "mrcnn_class_logits/kernel");
    mr_param *ml = mr_params_find(p, "mrcnn_class_logits/kernel");
    if (fl >= 0 && ix->items[fl].ndim == 2) r->file_classes = (int)ix->items[fl].shape[1];
    if (ml && ml->t.ndim == 2) r->model_classes = (int)ml->t.shape[1];
    r->classes_excluded =
        r->file_classes && r->model_classes && r->file_classes != r->model_classes;
    signature_of_index(ix, &r->file_net);
    signature_of_params(p, &r->model_net);
    char why[2048];
    for (int li = 0; li < layers.count && st == MR_OK; li++) {
        const char *layer = layers.items[li];
        int n_src = 0;
        bool by_group = false;
        for (int k = 0; k < ix->count; k++) {
            if (strcmp(ix->items[k].layer, layer) != 0) continue;
            src[n_src++] = k;
            used[k] = true;
            if (names_has(&excl, ix->items[k].group)) by_group = true;
        }
        bool requested =
            names_has(&excl, layer) || by_group ||
            (names_has(&excl, "rpn_model") && !strcmp(mr_net_keras_group(layer), "rpn_model"));
        bool by_class = false;
        for (size_t c = 0; c < 3; c++)
            if (r->classes_excluded && !strcmp(layer, class_layers[c])) by_class = true;
        if (!requested && !by_class) r->n_wanted++;
        if (requested) {
            st = report_add(r, layer, MR_LOAD_EXCLUDED,
                            n_src ? "on request" : "on request (not in the file anyway)");
        } else if (by_class) {
            mr_format(why, sizeof why,
                      "NUM_CLASSES is %d, the file has %d classes: starts from its initial values",
                      r->model_classes, r->file_classes);
            st = report_add(r, layer, MR_LOAD_EXCLUDED, why);
        } else if (n_src == 0) {
            st = report_add(r, layer, MR_LOAD_MISSING, NULL);
        } else {
            bool summed = false;
            st = plan_layer(p, layer, ix, src, n_src, pl, why, sizeof why, &zero_bias, &summed);
            if (st == MR_OK)
                st = report_add(r, layer, why[0] ? MR_LOAD_MISSHAPED : MR_LOAD_LOADED, why);
            if (st == MR_OK && summed && !why[0]) {
                const mr_weights_tensor *w = NULL;
                for (int k = 0; k < n_src; k++)
                    if (!strcmp(ix->items[src[k]].weight, "kernel")) w = &ix->items[src[k]];
                st = report_note(r,
                                 "conv1/kernel: the file's %lld input channels summed into the "
                                 "model's 1, so a grey image x responds as (x, x, x) did",
                                 (long long)(w ? w->shape[2] : 0));
            }
        }
    }
    /* File layers the model does not have, in file order, once each. */
    name_list seen = {0};
    for (int k = 0; k < ix->count && st == MR_OK; k++) {
        const mr_weights_tensor *w = &ix->items[k];
        if (used[k] || names_has(&seen, w->layer)) continue;
        st = names_add(&seen, w->layer);
        if (st != MR_OK) break;
        bool requested = names_has(&excl, w->layer) || names_has(&excl, w->group);
        if (requested)
            st = report_add(r, w->layer, MR_LOAD_EXCLUDED, "on request");
        else
            st = report_add(r, w->layer, MR_LOAD_UNEXPECTED, NULL);
    }
    /* Exclude names that match nothing are most likely typos. */
    for (int i = 0; i < excl.count && st == MR_OK; i++) {
        const char *e = excl.items[i];
        bool hit = names_has(&layers, e) || names_has(&seen, e) || !strcmp(e, "rpn_model");
        for (int k = 0; k < ix->count && !hit; k++) hit = !strcmp(ix->items[k].group, e);
        if (!hit)
            st = report_note(
                r, "--exclude '%s' matches no layer with weights in the model or the file", e);
    }
    names_free(&seen);
    if (st == MR_OK && zero_bias.count) {
        char list[1536] = "";
        int shown = 0;
        for (int i = 0; i < zero_bias.count; i++)
            if (append_item(list, sizeof list - 32, zero_bias.items[i])) shown++;
        st = report_note(r, "%d layers have no bias in the file; set to zeros: %s%s",
                         zero_bias.count, list, shown < zero_bias.count ? ", ..." : "");
    }
    if (st == MR_OK && r->classes_excluded)
        st = report_note(r,
                         "NUM_CLASSES %d differs from the file's %d: mrcnn_class_logits, "
                         "mrcnn_bbox_fc and mrcnn_mask were left out",
                         r->model_classes, r->file_classes);
    names_free(&layers);
    names_free(&excl);
    names_free(&zero_bias);
    free(src);
    free(used);
    return st;
}

/* The first misfit of a layer's detail ("kernel (7,7,1,8) in the file, (7,7,3,64) in the
 * model, bias ..." -> up to "in the model"). */
static void first_misfit(const char *detail, char *buf, size_t size) {
    mr_format(buf, size, "%s", detail);
    char *end = strstr(buf, " in the model");
    if (end) end[strlen(" in the model")] = '\0';
}

/* One line for layers that do not fit: the two networks when the shapes say the file holds
 * another one (listing 100+ layers would bury that), else every layer that does not fit, with
 * the --exclude hint where the caller has --exclude. */
static mr_status misshaped_error(mr_load_report *r, const mr_weights_load_options *opt) {
    int bad = r->n[MR_LOAD_MISSHAPED], common = bad + r->n[MR_LOAD_LOADED];
    bool hint = !(opt && opt->no_exclude_hint);
    const mr_load_entry *first = NULL;
    for (int i = 0; i < r->count && !first; i++)
        if (r->entries[i].kind == MR_LOAD_MISSHAPED) first = &r->entries[i];
    char nets[600];
    bool described = mr_net_signature_diff(&r->file_net, &r->model_net, nets, sizeof nets);
    if (first && (shapes_settings_differ(&r->file_net, &r->model_net) || 2 * bad > common)) {
        r->other_network = true;
        char what[400];
        first_misfit(first->detail, what, sizeof what);
        return mr_fail(MR_ERR_FORMAT,
                       "%s: %s: %d of the %d layers both have by name do not fit, first %s "
                       "(%s); nothing was loaded; use the config these weights were trained with",
                       r->path, described ? nets : "weights for another network", bad, common,
                       first->layer, what);
    }
    char list[1200] = "", names[500] = "";
    int listed = 0;
    for (int i = 0; i < r->count; i++) {
        const mr_load_entry *e = &r->entries[i];
        if (e->kind != MR_LOAD_MISSHAPED) continue;
        char item[420];
        mr_format(item, sizeof item, "%s (%s)", e->layer, e->detail);
        if (append_item(list, sizeof list, item)) listed++;
        char bare[MR_PARAM_NAME_MAX + 1];
        mr_format(bare, sizeof bare, "%s", e->layer);
        size_t n = strlen(names);
        if (n + strlen(bare) + 2 < sizeof names) {
            if (n) strcat(names, ",");
            strcat(names, bare);
        }
    }
    int more = bad - listed;
    char tail[64] = "";
    if (more > 0) mr_format(tail, sizeof tail, " and %d more", more);
    return mr_fail(MR_ERR_FORMAT,
                   "%s: %d layer%s do not fit the model: %s%s; nothing was loaded%s%s", r->path,
                   bad, bad == 1 ? "" : "s", list, tail,
                   hint ? "; leave them out with --exclude " : "", hint ? names : "");
}

/* The rule for a file that fills too little of the model: fewer than half of the model's
 * layers that were not left out (by --exclude or by NUM_CLASSES) load. Such a "fine-tune" is
 * training from random weights with extra steps, almost always the wrong file or config;
 * layers meant to start from scratch are excluded on purpose, and then do not count. */
static mr_status too_little_error(mr_load_report *r, const mr_weights_load_options *opt) {
    int loaded = r->n[MR_LOAD_LOADED], wanted = r->n_wanted;
    if (wanted == 0 || 2 * loaded >= wanted) return MR_OK;
    r->other_network = true;
    char nets[600] = "", why[700] = "";
    if (mr_net_signature_diff(&r->file_net, &r->model_net, nets, sizeof nets))
        mr_format(why, sizeof why, "; %s", nets);
    bool hint = !(opt && opt->no_exclude_hint);
    return mr_fail(MR_ERR_FORMAT,
                   "weights %s: only %d of %d layers of this model match the file by name (%d "
                   "are not in it, %d file layers match nothing in the model)%s; fewer than half "
                   "would leave the network mostly at its initial values, so nothing was loaded; "
                   "check --weights and --config%s",
                   r->path, loaded, wanted, r->n[MR_LOAD_MISSING], r->n[MR_LOAD_UNEXPECTED], why,
                   hint ? ", or leave the layers meant to start from scratch out on purpose "
                          "with --exclude"
                        : "");
}

/* A NaN or Inf weight poisons every output (and ROI Align's boxes) without a word: refuse the
 * file instead, naming the tensor. Summed channels are checked too: finite values can add up to
 * Inf. */
static mr_status check_finite(const mr_load_report *r, const mr_param *q,
                              const mr_weights_tensor *w) {
    const float *v = q->t.data;
    for (int64_t i = 0; i < q->t.numel; i++)
        if (!isfinite(v[i]))
            return mr_fail(MR_ERR_NUMERIC,
                           "%s: tensor %s (%s) holds %s at index %lld%s; damaged weights (a "
                           "diverged run?), the file is refused",
                           r->path, q->name, w->dataset, isnan(v[i]) ? "NaN" : "Inf", (long long)i,
                           w->ndim == 4 && q->t.ndim == 4 && w->shape[2] != q->t.shape[2]
                               ? " after summing its input channels"
                               : "");
    return MR_OK;
}

/* Checks values just read against the checksum stored beside them. mrcnn writes one on every
 * tensor (checkpoints, exports); a checkpoint tensor without one is damage, an export or Keras
 * tensor without one was written before checksums or by Keras: not verified. Only what is loaded
 * is checked: a flipped bit in a checkpoint's momentum does not change the weights. */
static mr_status verify_tensor(mr_h5 *f, const mr_weights_tensor *w, const float *v, int64_t n,
                               bool required, const mr_weights_load_options *opt,
                               mr_load_report *r) {
    const char *why = NULL;
    int64_t stored = 0;
    if (!mr_h5_has_attr(f, w->dataset, MR_CHECKSUM_ATTR)) {
        if (!required) return MR_OK;
        why = "has no checksum, which every checkpoint tensor has";
    } else {
        MR_TRY(mr_h5_get_attr_i64(f, w->dataset, MR_CHECKSUM_ATTR, &stored));
        if (mr_checksum_f32(v, n) == (uint64_t)stored) {
            r->tensors_verified++;
            return MR_OK;
        }
        why = "fails its checksum";
    }
    if (opt && opt->allow_damaged) {
        r->tensors_damaged++;
        mr_warn("%s: tensor %s (%s) %s; loaded anyway (--allow-damaged)", r->path, w->param,
                w->dataset, why);
        return MR_OK;
    }
    return mr_fail(MR_ERR_FORMAT,
                   "%s: damaged weights: tensor %s (%s) %s; use an intact copy (or an earlier "
                   "checkpoint of the run), or pass --allow-damaged to load it anyway",
                   r->path, w->param, w->dataset, why);
}

static mr_status apply_plan(mr_h5 *f, const plan *pl, bool required,
                            const mr_weights_load_options *opt, mr_load_report *r) {
    for (int i = 0; i < pl->count; i++) {
        const action *a = &pl->items[i];
        mr_tensor *t = &a->param->t;
        if (a->kind == ACT_ZERO) {
            memset(t->data, 0, sizeof(float) * (size_t)t->numel);
            continue;
        }
        const mr_weights_tensor *w = a->src;
        if (a->kind == ACT_COPY) {
            MR_TRY(mr_h5_read_into(f, w->dataset, t->data, t->numel));
            MR_TRY(verify_tensor(f, w, t->data, t->numel, required, opt, r));
        } else {
            float *buf = NULL;
            MR_TRY(mr_h5_read(f, w->dataset, &buf, NULL, NULL));
            mr_status st = verify_tensor(f, w, buf, w->numel, required, opt, r);
            if (st != MR_OK) {
                free(buf);
                return st;
            }
            /* (kh, kw, cin, out) -> (kh, kw, 1, out), channels added in order. */
            int64_t khw = w->shape[0] * w->shape[1], cin = w->shape[2], out = w->shape[3];
            for (int64_t s = 0; s < khw; s++)
                for (int64_t o = 0; o < out; o++) {
                    float acc = 0.0f;
                    for (int64_t c = 0; c < cin; c++) acc += buf[(s * cin + c) * out + o];
                    t->data[s * out + o] = acc;
                }
            free(buf);
        }
        MR_TRY(check_finite(r, a->param, w));
        r->tensors_loaded++;
        r->values_loaded += t->numel;
    }
    if (r->tensors_damaged)
        MR_TRY(report_note(r,
                           "%lld tensors fail their checksum and were loaded anyway "
                           "(--allow-damaged): the weights are damaged",
                           (long long)r->tensors_damaged));
    return MR_OK;
}

mr_status mr_weights_load(const char *path, mr_params *p, const mr_weights_load_options *opt,
                          mr_load_report *report) {
    MR_REQUIRE(p->finalized, "mr_weights_load before mr_params_finalize");
    mr_load_report local;
    mr_load_report *r = report ? report : &local;
    memset(r, 0, sizeof *r);
    mr_weights_index ix;
    mr_h5 f;
    mr_status st = index_open(path, &f, &ix);
    if (st != MR_OK) {
        mr_weights_index_free(&ix);
        if (!report) mr_load_report_free(r);
        return st;
    }
    r->path = mr_strdup(path);
    r->format = ix.format;
    mr_format(r->root, sizeof r->root, "%s", ix.root);
    plan pl = {0};
    st = make_plan(p, &ix, opt, r, &pl);
    if (st == MR_OK && r->n[MR_LOAD_MISSHAPED] > 0) st = misshaped_error(r, opt);
    if (st == MR_OK) st = too_little_error(r, opt);
    /* Allowed (a ResNet-50 file fills most of a ResNet-101), but worth a line in the report. */
    if (st == MR_OK && r->file_net.depth && r->model_net.depth &&
        r->file_net.depth != r->model_net.depth) {
        char nets[600];
        mr_net_signature_diff(&r->file_net, &r->model_net, nets, sizeof nets);
        st = report_note(r, "%s: the layers only one of them has are not loaded", nets);
    }
    if (st == MR_OK && !(opt && opt->dry_run)) {
        st = apply_plan(&f, &pl, ix.format == MR_WEIGHTS_CHECKPOINT, opt, r);
        if (st == MR_OK) r->applied = true;
    } else if (st == MR_OK) {
        for (int i = 0; i < pl.count; i++)
            if (pl.items[i].kind != ACT_ZERO) {
                r->tensors_loaded++;
                r->values_loaded += pl.items[i].param->t.numel;
            }
    }
    r->refused = st != MR_OK;
    free(pl.items);
    mr_weights_index_free(&ix);
    st = mr_h5_close_after(&f, st);
    if (!report) mr_load_report_free(r);
    return st;
}

/* ---- verifying ---------------------------------------------------------------------------- */

mr_status mr_weights_verify(const char *path, int64_t *n_verified, int64_t *n_unverified) {
    if (n_verified) *n_verified = 0;
    if (n_unverified) *n_unverified = 0;
    mr_weights_index ix;
    mr_h5 f;
    mr_status st = index_open(path, &f, &ix);
    if (st != MR_OK) {
        mr_weights_index_free(&ix);
        return st;
    }
    if (ix.format == MR_WEIGHTS_CHECKPOINT) {
        /* The checkpoint's own check also covers momentum and the training state. */
        int64_t count = ix.count;
        mr_weights_index_free(&ix);
        MR_TRY(mr_h5_close(&f));
        MR_TRY(mr_checkpoint_check(path));
        if (n_verified) *n_verified = 2 * count; /* values and momentum */
        return MR_OK;
    }
    float *buf = NULL;
    int64_t cap = 0;
    for (int i = 0; i < ix.count && st == MR_OK; i++) {
        const mr_weights_tensor *w = &ix.items[i];
        if (w->numel > cap) {
            float *grown = realloc(buf, sizeof(float) * (size_t)w->numel);
            if (!grown) {
                st = mr_fail(MR_ERR_NOMEM, "no memory to verify %s", w->dataset);
                break;
            }
            buf = grown;
            cap = w->numel;
        }
        st = mr_h5_read_into(&f, w->dataset, buf, w->numel);
        if (st != MR_OK) break;
        if (mr_h5_has_attr(&f, w->dataset, MR_CHECKSUM_ATTR)) {
            int64_t stored = 0;
            st = mr_h5_get_attr_i64(&f, w->dataset, MR_CHECKSUM_ATTR, &stored);
            if (st == MR_OK && mr_checksum_f32(buf, w->numel) != (uint64_t)stored)
                st =
                    mr_fail(MR_ERR_FORMAT, "%s: damaged weights: tensor %s (%s) fails its checksum",
                            path, w->param, w->dataset);
            if (st == MR_OK && n_verified) (*n_verified)++;
        } else if (n_unverified) {
            (*n_unverified)++;
        }
        for (int64_t k = 0; k < w->numel && st == MR_OK; k++)
            if (!isfinite(buf[k]))
                st = mr_fail(MR_ERR_NUMERIC,
                             "%s: damaged weights: tensor %s (%s) holds %s at index %lld", path,
                             w->param, w->dataset, isnan(buf[k]) ? "NaN" : "Inf", (long long)k);
    }
    free(buf);
    mr_weights_index_free(&ix);
    return mr_h5_close_after(&f, st);
}

/* ---- export ------------------------------------------------------------------------------- */

/* Writes one tensor with the checksum of what a reader gets back: the values themselves, or for
 * float16 the rounded values, read back from the file (the loader checks what it read). */
static mr_status write_checked(mr_h5 *f, const char *ds, const mr_param *q, const float *data,
                               bool half) {
    MR_TRY(mr_h5_write(f, ds, data, q->t.ndim, q->t.shape, half));
    uint64_t h = 0;
    if (!half) {
        h = mr_checksum_f32(data, q->t.numel);
    } else {
        float *back = malloc(sizeof(float) * (size_t)q->t.numel);
        if (!back) return mr_fail(MR_ERR_NOMEM, "no memory to checksum %s", ds);
        mr_status st = mr_h5_read_into(f, ds, back, q->t.numel);
        if (st == MR_OK) h = mr_checksum_f32(back, q->t.numel);
        free(back);
        MR_TRY(st);
    }
    return mr_h5_set_attr_i64(f, ds, MR_CHECKSUM_ATTR, (int64_t)h);
}

typedef struct {
    const mr_params *p;
    const char *config;
    bool half;
} export_args;

static mr_status export_fill(mr_h5 *f, void *user) {
    const export_args *a = user;
    const mr_params *p = a->p;
    MR_TRY(mr_h5_set_attr_str(f, "/", "format", MR_WEIGHTS_EXPORT_FORMAT));
    MR_TRY(mr_h5_set_attr_i64(f, "/", "version", MR_WEIGHTS_EXPORT_VERSION));
    MR_TRY(mr_h5_set_attr_str(f, "/", "mrcnn_version", MR_VERSION));
    MR_TRY(mr_h5_set_attr_i64(f, "/", "n_params", p->count));
    if (a->config) MR_TRY(mr_h5_set_attr_str(f, "/", "config", a->config));
    for (int i = 0; i < p->count; i++) {
        const mr_param *q = &p->items[i];
        char ds[MR_PARAM_NAME_MAX + 16];
        mr_format(ds, sizeof ds, "/params/%s", q->name);
        MR_TRY(write_checked(f, ds, q, p->values + q->offset, a->half));
    }
    return MR_OK;
}

mr_status mr_weights_save(const char *path, const mr_params *p, const char *config_json,
                          bool half) {
    MR_REQUIRE(p->finalized, "mr_weights_save before mr_params_finalize");
    export_args a = {p, config_json, half};
    return mr_h5_save_atomic(path, export_fill, &a);
}

/* What the Keras layout writes: the parameters in file order, each with its top-level layer. */
typedef struct {
    const mr_params *p;
    int n;
    const int *param;                       /* registry indices, in file order */
    const char (*group)[MR_PARAM_NAME_MAX]; /* top-level Keras layer of each */
} keras_plan;

static mr_status keras_fill(mr_h5 *f, void *user) {
    const keras_plan *kp = user;
    const mr_params *p = kp->p;
    /* Top-level layers in the plan's order; the RPN layers share the nested "rpn_model". */
    name_list groups = {0};
    mr_status st = MR_OK;
    for (int i = 0; i < kp->n && st == MR_OK; i++)
        if (!names_has(&groups, kp->group[i])) st = names_add(&groups, kp->group[i]);
    if (st == MR_OK)
        st = mr_h5_set_attr_strings(f, "/", "layer_names", (const char *const *)groups.items,
                                    groups.count);
    /* Keras reads both with .decode(), so they must be byte strings, and a missing or "1"
     * keras_version would make it convert the kernels as Keras 1 files. */
    if (st == MR_OK) st = mr_h5_set_attr_bytes(f, "/", "backend", "tensorflow");
    if (st == MR_OK) st = mr_h5_set_attr_bytes(f, "/", "keras_version", "2.2.4");
    const char **wn = malloc(sizeof *wn * (size_t)(kp->n + 1));
    char(*names)[MR_PARAM_NAME_MAX + 4] = malloc(sizeof *names * (size_t)(kp->n + 1));
    if (st == MR_OK && (!wn || !names)) st = mr_fail(MR_ERR_NOMEM, "no memory for the export");
    for (int g = 0; g < groups.count && st == MR_OK; g++) {
        int n = 0;
        for (int i = 0; i < kp->n && st == MR_OK; i++) {
            if (strcmp(kp->group[i], groups.items[g]) != 0) continue;
            const mr_param *q = &p->items[kp->param[i]];
            mr_format(names[n], sizeof names[n], "%s:0", q->name);
            wn[n] = names[n];
            char ds[2 * MR_PARAM_NAME_MAX + 16];
            mr_format(ds, sizeof ds, "/%s/%s:0", groups.items[g], q->name);
            /* Keras ignores dataset attributes; mrcnn checks them when it loads the file. */
            st = write_checked(f, ds, q, p->values + q->offset, false);
            n++;
        }
        char gpath[MR_PARAM_NAME_MAX + 2];
        mr_format(gpath, sizeof gpath, "/%s", groups.items[g]);
        if (st == MR_OK) st = mr_h5_set_attr_strings(f, gpath, "weight_names", wn, n);
    }
    free(wn);
    free(names);
    names_free(&groups);
    return st;
}

static mr_status save_plan(const char *path, const mr_params *p, int *param,
                           char (*group)[MR_PARAM_NAME_MAX], int n) {
    keras_plan kp = {p, n, param, (const char(*)[MR_PARAM_NAME_MAX])group};
    return mr_h5_save_atomic(path, keras_fill, &kp);
}

mr_status mr_weights_save_keras_model(const char *path, const mr_model *m) {
    const mr_params *p = &m->params;
    MR_REQUIRE(p->finalized, "mr_weights_save_keras_model before mr_params_finalize");
    int *order = malloc(sizeof *order * (size_t)(m->n_layers + 1));
    int *param = malloc(sizeof *param * (size_t)(p->count + 1));
    char(*group)[MR_PARAM_NAME_MAX] = malloc(sizeof *group * (size_t)(p->count + 1));
    mr_status st = MR_OK;
    if (!order || !param || !group) {
        st = mr_fail(MR_ERR_NOMEM, "no memory for the export");
    } else {
        /* Keras' topological order, so that load_weights pairs layers right by name or not. */
        mr_network_keras_order(m, order);
        int n = 0;
        for (int i = 0; i < m->n_layers; i++) {
            const mr_layer *l = &m->layers[order[i]];
            for (int k = 0; k < l->n_params; k++, n++) {
                param[n] = l->param[k];
                mr_format(group[n], sizeof group[n], "%s", mr_layer_keras_group(l));
            }
        }
        st = save_plan(path, p, param, group, n);
    }
    free(order);
    free(param);
    free(group);
    return st;
}

mr_status mr_weights_save_keras(const char *path, const mr_params *p) {
    MR_REQUIRE(p->finalized, "mr_weights_save_keras before mr_params_finalize");
    int *param = malloc(sizeof *param * (size_t)(p->count + 1));
    char(*group)[MR_PARAM_NAME_MAX] = malloc(sizeof *group * (size_t)(p->count + 1));
    mr_status st = MR_OK;
    if (!param || !group) {
        st = mr_fail(MR_ERR_NOMEM, "no memory for the export");
    } else {
        for (int i = 0; i < p->count; i++) {
            char layer[MR_PARAM_NAME_MAX];
            mr_param_layer(p->items[i].name, layer, sizeof layer);
            param[i] = i;
            mr_format(group[i], sizeof group[i], "%s", mr_net_keras_group(layer));
        }
        st = save_plan(path, p, param, group, p->count);
    }
    free(param);
    free(group);
    return st;
}

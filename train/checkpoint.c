/* Checkpoint files (written by core/h5.h's atomic HDF5 writer): the checkpoint layout with a
 * checksum on every tensor, loading with one complete mismatch list, and the run-folder
 * housekeeping (probe, find latest intact, prune). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "../core/file.h"
#include "../core/log.h"
#include "../core/runtime.h"
#include "../core/text.h"
#include "../core/util.h"

/* ---- layout ------------------------------------------------------------------------------- */

#define FNV_OFFSET 1469598103934665603ull
#define FNV_PRIME  1099511628211ull

/* A changed word always changes the result, since xor and the odd multiplier are both
 * invertible. */
uint64_t mr_checksum_f32(const float *data, int64_t n) {
    uint64_t h = FNV_OFFSET;
    for (int64_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &data[i], sizeof w);
        h = (h ^ w) * FNV_PRIME;
    }
    return h;
}

static mr_status write_tensor(mr_h5 *f, const char *group, const mr_param *q, const float *data) {
    char ds[MR_PARAM_NAME_MAX + 32];
    mr_format(ds, sizeof ds, "/%s/%s", group, q->name);
    MR_TRY(mr_h5_write(f, ds, data, q->t.ndim, q->t.shape, false));
    return mr_h5_set_attr_i64(f, ds, MR_CHECKSUM_ATTR, (int64_t)mr_checksum_f32(data, q->t.numel));
}

/* ---- the training state's checksum ---- */

static void fnv_bytes(uint64_t *h, const void *data, size_t n) {
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) *h = (*h ^ b[i]) * FNV_PRIME;
}

static void fnv_i64(uint64_t *h, int64_t v) {
    fnv_bytes(h, &v, sizeof v);
}

/* The length goes in first, so "ab" + "c" and "a" + "bc" differ. */
static void fnv_text(uint64_t *h, const char *text) {
    size_t n = text ? strlen(text) : 0;
    fnv_i64(h, (int64_t)n);
    if (n) fnv_bytes(h, text, n);
}

/* Everything a resume takes from the file besides the tensors, in a fixed order: the counters
 * resume starts from, a version 1 file's RNG words (legacy_rng, NULL from version 2), the data
 * order, val_loss (which decides what prune keeps), the
 * config and metrics text, and the tensor count verify expects. A flipped bit in any of them
 * reads as damage instead of as a plausible place to resume from. */
static uint64_t state_checksum(const mr_checkpoint_state *s, const int64_t *legacy_rng,
                               int64_t n_params) {
    uint64_t h = FNV_OFFSET;
    fnv_i64(&h, s->epoch);
    fnv_i64(&h, s->step);
    /* One NaN for every NaN: "not measured" has no meaningful payload. */
    double loss = isnan(s->val_loss) ? (double)NAN : s->val_loss;
    fnv_bytes(&h, &loss, sizeof loss);
    if (legacy_rng)
        for (int i = 0; i < 4; i++) fnv_i64(&h, legacy_rng[i]);
    fnv_i64(&h, s->n_data_order);
    for (int64_t i = 0; i < s->n_data_order; i++) fnv_i64(&h, s->data_order[i]);
    fnv_text(&h, s->config_json);
    fnv_text(&h, s->metrics_json);
    fnv_i64(&h, n_params);
    return h;
}

typedef struct {
    const mr_params *p;
    const mr_checkpoint_state *s;
} save_args;

static mr_status checkpoint_fill(mr_h5 *f, void *user) {
    const save_args *a = user;
    const mr_checkpoint_state *s = a->s;
    char created[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    MR_TRY(mr_h5_set_attr_str(f, "/", "format", MR_CHECKPOINT_FORMAT));
    MR_TRY(mr_h5_set_attr_i64(f, "/", "version", MR_CHECKPOINT_VERSION));
    MR_TRY(mr_h5_set_attr_str(f, "/", "mrcnn_version", MR_VERSION));
    MR_TRY(mr_h5_set_attr_str(f, "/", "created", created));
    MR_TRY(mr_h5_set_attr_i64(f, "/", "epoch", s->epoch));
    MR_TRY(mr_h5_set_attr_i64(f, "/", "step", s->step));
    MR_TRY(mr_h5_set_attr_f64(f, "/", "val_loss", s->val_loss));
    MR_TRY(mr_h5_set_attr_str(f, "/", "config", s->config_json ? s->config_json : ""));
    MR_TRY(mr_h5_set_attr_str(f, "/", "metrics", s->metrics_json ? s->metrics_json : ""));
    MR_TRY(mr_h5_set_attr_i64(f, "/", "n_params", a->p->count));
    int64_t none = 0;
    MR_TRY(mr_h5_write_i64(f, "/state/data_order", s->data_order ? s->data_order : &none,
                           s->n_data_order));
    MR_TRY(mr_h5_set_attr_i64(f, "/", MR_STATE_CHECKSUM_ATTR,
                              (int64_t)state_checksum(s, NULL, a->p->count)));
    for (int i = 0; i < a->p->count; i++) {
        const mr_param *q = &a->p->items[i];
        MR_TRY(write_tensor(f, "params", q, a->p->values + q->offset));
        MR_TRY(write_tensor(f, "momentum", q, a->p->momentum + q->offset));
    }
    return MR_OK;
}

mr_status mr_checkpoint_save(const char *path, const mr_params *p, const mr_checkpoint_state *s) {
    MR_REQUIRE(p->finalized, "mr_checkpoint_save before mr_params_finalize");
    MR_REQUIRE(s->n_data_order == 0 || s->data_order, "data order count without data");
    save_args a = {p, s};
    return mr_h5_save_atomic(path, checkpoint_fill, &a);
}

void mr_checkpoint_state_free(mr_checkpoint_state *s) {
    free(s->data_order);
    free(s->config_json);
    free(s->metrics_json);
    memset(s, 0, sizeof *s);
}

/* Opens `path` and checks it claims to be a checkpoint this version reads. */
static mr_status open_checkpoint(const char *path, mr_h5 *f) {
    MR_TRY(mr_h5_check_regular(path, "checkpoint", NULL));
    MR_TRY(mr_h5_open(path, false, f));
    char *format = NULL;
    int64_t version = 0;
    mr_status st = MR_OK;
    if (!mr_h5_has_attr(f, "/", "format") || mr_h5_get_attr_str(f, "/", "format", &format) ||
        strcmp(format, MR_CHECKPOINT_FORMAT) != 0) {
        st = mr_fail(MR_ERR_FORMAT, "%s: not an mrcnn checkpoint (root attribute format is %s%s%s)",
                     path, format ? "'" : "missing", format ? format : "", format ? "'" : "");
    } else if (mr_h5_get_attr_i64(f, "/", "version", &version) != MR_OK) {
        st = mr_fail(MR_ERR_FORMAT, "%s: checkpoint without a version attribute (damaged?)", path);
    } else if (version > MR_CHECKPOINT_VERSION) {
        st = mr_fail(MR_ERR_FORMAT,
                     "%s: checkpoint version %lld is newer than this mrcnn reads "
                     "(%d); update mrcnn",
                     path, (long long)version, MR_CHECKPOINT_VERSION);
    }
    free(format);
    if (st != MR_OK) st = mr_h5_close_after(f, st);
    return st;
}

/* Counters a resume turns into ints (epochs, steps, the data order's positions): a value
 * outside 0..INT32_MAX comes from a damaged file, never from a run. */
static mr_status check_counter(mr_h5 *f, const char *what, int64_t v) {
    if (v >= 0 && v <= INT32_MAX) return MR_OK;
    return mr_fail(MR_ERR_FORMAT, "%s: damaged checkpoint: %s is %lld, expected 0..%d", f->path,
                   what, (long long)v, INT32_MAX);
}

/* The state as stored, unchecked; *has_rng and legacy_rng: a version 1 file's RNG words. */
static mr_status read_state_raw(mr_h5 *f, mr_checkpoint_state *s, bool *has_rng,
                                int64_t legacy_rng[4]) {
    MR_TRY(mr_h5_get_attr_i64(f, "/", "epoch", &s->epoch));
    MR_TRY(mr_h5_get_attr_i64(f, "/", "step", &s->step));
    MR_TRY(mr_h5_get_attr_f64(f, "/", "val_loss", &s->val_loss));
    MR_TRY(mr_h5_get_attr_str(f, "/", "config", &s->config_json));
    MR_TRY(mr_h5_get_attr_str(f, "/", "metrics", &s->metrics_json));
    int64_t version = 0;
    MR_TRY(mr_h5_get_attr_i64(f, "/", "version", &version));
    *has_rng = version < 2;
    if (*has_rng) {
        int64_t *rng = NULL, n = 0;
        MR_TRY(mr_h5_read_i64(f, "/state/rng", &rng, &n));
        if (n != 4) {
            free(rng);
            return mr_fail(MR_ERR_FORMAT,
                           "%s: damaged checkpoint: /state/rng holds %lld values, expected 4",
                           f->path, (long long)n);
        }
        memcpy(legacy_rng, rng, 4 * sizeof *rng);
        free(rng);
    }
    return mr_h5_read_i64(f, "/state/data_order", &s->data_order, &s->n_data_order);
}

static mr_status read_state(mr_h5 *f, mr_checkpoint_state *s) {
    memset(s, 0, sizeof *s);
    bool has_rng = false;
    int64_t legacy_rng[4] = {0};
    MR_TRY(read_state_raw(f, s, &has_rng, legacy_rng));
    /* The checksum first: when it fails, any value may be the damaged one, and saying so is
     * clearer than naming whichever value happens to be out of range. */
    if (mr_h5_has_attr(f, "/", MR_STATE_CHECKSUM_ATTR)) {
        int64_t stored = 0, n_params = 0;
        MR_TRY(mr_h5_get_attr_i64(f, "/", MR_STATE_CHECKSUM_ATTR, &stored));
        if (mr_h5_get_attr_i64(f, "/", "n_params", &n_params) != MR_OK ||
            state_checksum(s, has_rng ? legacy_rng : NULL, n_params) != (uint64_t)stored)
            return mr_fail(MR_ERR_FORMAT,
                           "%s: damaged checkpoint: the training state (epoch, step, data order, "
                           "validation loss, config, metrics) fails its checksum",
                           f->path);
        s->verified = true;
    }
    /* Files without a state checksum (and a writer's bug) are caught by the ranges alone. */
    MR_TRY(check_counter(f, "attribute epoch", s->epoch));
    if (s->step < 0)
        return mr_fail(MR_ERR_FORMAT,
                       "%s: damaged checkpoint: attribute step is %lld, expected 0 "
                       "or more",
                       f->path, (long long)s->step);
    /* Losses are sums of non-negative terms: NaN means not measured, +Inf a diverged
     * validation; a negative value would only win prune's "best" by damage. */
    if (s->val_loss < 0.0)
        return mr_fail(MR_ERR_FORMAT,
                       "%s: damaged checkpoint: attribute val_loss is %g, expected 0 or more "
                       "(or NaN: not measured)",
                       f->path, s->val_loss);
    for (int64_t i = 0; i < s->n_data_order; i++) {
        char what[64];
        mr_format(what, sizeof what, "/state/data_order[%lld]", (long long)i);
        MR_TRY(check_counter(f, what, s->data_order[i]));
    }
    return MR_OK;
}

mr_status mr_checkpoint_read_state(const char *path, mr_checkpoint_state *s) {
    mr_h5 f;
    memset(s, 0, sizeof *s);
    MR_TRY(open_checkpoint(path, &f));
    mr_status st = read_state(&f, s);
    if (st != MR_OK) mr_checkpoint_state_free(s);
    return mr_h5_close_after(&f, st);
}

mr_status mr_checkpoint_position(const char *path, const mr_checkpoint_state *s,
                                 int64_t steps_per_epoch, int *epoch, int *step_in_epoch) {
    MR_REQUIRE(steps_per_epoch > 0, "mr_checkpoint_position: steps_per_epoch %lld",
               (long long)steps_per_epoch);
    *epoch = *step_in_epoch = 0;
    if (s->n_data_order < 2)
        return mr_fail(MR_ERR_FORMAT,
                       "%s: damaged checkpoint: /state/data_order holds %lld values, expected "
                       "at least 2 (epoch, step within the epoch)",
                       path, (long long)s->n_data_order);
    int64_t e = s->data_order[0], k = s->data_order[1];
    if (e != s->epoch)
        return mr_fail(MR_ERR_FORMAT,
                       "%s: damaged checkpoint: /state/data_order[0] (epoch) is %lld, the "
                       "attribute epoch is %lld; they are written from the same counter",
                       path, (long long)e, (long long)s->epoch);
    if (k < 0 || k >= steps_per_epoch)
        return mr_fail(MR_ERR_FORMAT,
                       "%s: damaged checkpoint: /state/data_order[1] (step within the epoch) is "
                       "%lld, expected 0..%lld (STEPS_PER_EPOCH %lld)",
                       path, (long long)k, (long long)steps_per_epoch - 1,
                       (long long)steps_per_epoch);
    /* e and k are within 0..INT32_MAX (read_state), steps_per_epoch an int: no overflow. */
    if (s->step != e * steps_per_epoch + k)
        return mr_fail(MR_ERR_FORMAT,
                       "%s: damaged checkpoint: attribute step is %lld, but epoch %lld of %lld "
                       "steps plus step %lld makes %lld",
                       path, (long long)s->step, (long long)e, (long long)steps_per_epoch,
                       (long long)k, (long long)(e * steps_per_epoch + k));
    *epoch = (int)e;
    *step_in_epoch = (int)k;
    return MR_OK;
}

/* Every dataset under a group: its path relative to the group and its shape. */
typedef struct {
    char name[MR_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[MR_H5_MAX_DIMS];
    bool matched;
} file_tensor;

typedef struct {
    mr_h5 *f;
    size_t prefix;
    file_tensor *items;
    int count;
    size_t capacity;
} tensor_list;

static mr_status list_visit(const char *path, void *user) {
    tensor_list *l = user;
    if (!mr_grow(&l->items, &l->capacity, (size_t)l->count + 1, sizeof *l->items, 256))
        return mr_fail(MR_ERR_NOMEM, "no memory for the checkpoint listing");
    file_tensor *t = &l->items[l->count++];
    memset(t, 0, sizeof *t);
    mr_format(t->name, sizeof t->name, "%s", path + l->prefix);
    return mr_h5_shape(l->f, path, &t->ndim, t->shape);
}

static mr_status list_group(mr_h5 *f, const char *group, tensor_list *l) {
    memset(l, 0, sizeof *l);
    l->f = f;
    l->prefix = strlen(group) + 1;
    if (!mr_h5_exists(f, group))
        return mr_fail(MR_ERR_FORMAT, "%s: checkpoint has no %s group (damaged?)", f->path, group);
    return mr_h5_visit_datasets(f, group, list_visit, l);
}

/* Reads one tensor and checks it against its stored checksum. */
static mr_status read_checked(mr_h5 *f, const char *ds, float *out, int64_t n) {
    int64_t stored = 0;
    if (mr_h5_get_attr_i64(f, ds, MR_CHECKSUM_ATTR, &stored) != MR_OK)
        return mr_fail(MR_ERR_FORMAT, "%s: %s has no checksum (damaged or not written by mrcnn)",
                       f->path, ds);
    MR_TRY(mr_h5_read_into(f, ds, out, n));
    if (mr_checksum_f32(out, n) != (uint64_t)stored)
        return mr_fail(MR_ERR_FORMAT, "%s: damaged checkpoint: %s fails its checksum", f->path, ds);
    /* Intact but unusable: a run saved after its weights diverged. Resuming would only spread
     * NaN, so such a checkpoint is refused like a damaged one (find_latest skips it). */
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(out[i]))
            return mr_fail(MR_ERR_NUMERIC,
                           "%s: damaged checkpoint: tensor %s holds %s at index %lld; resume "
                           "from an earlier checkpoint",
                           f->path, ds, isnan(out[i]) ? "NaN" : "Inf", (long long)i);
    return MR_OK;
}

/* Appends "name" or "name (details)" to a bounded list; counts what did not fit. */
static void list_add(char *buf, size_t size, int *dropped, const char *item) {
    size_t n = strlen(buf), add = strlen(item) + 2;
    if (n + add + 48 > size) {
        (*dropped)++;
        return;
    }
    if (n) strcat(buf, ", ");
    strcat(buf, item);
}

static void shape_text(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (n < size) mr_format(buf + n, size - n, ")");
}

/* Checks the file's tensors of `group` against the registry: one list of all differences. */
static void compare_group(const mr_params *p, tensor_list *l, const char *group, char *missing,
                          char *unexpected, char *misshaped, size_t size, int *counts,
                          int *dropped) {
    for (int i = 0; i < p->count; i++) {
        const mr_param *q = &p->items[i];
        file_tensor *t = NULL;
        for (int k = 0; k < l->count && !t; k++)
            if (!strcmp(l->items[k].name, q->name)) t = &l->items[k];
        char item[320];
        if (!t) {
            mr_format(item, sizeof item, "%s/%s", group, q->name);
            list_add(missing, size, dropped, item);
            counts[0]++;
            continue;
        }
        t->matched = true;
        bool same = t->ndim == q->t.ndim;
        for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == q->t.shape[d];
        if (!same) {
            char a[96], b[96];
            shape_text(a, sizeof a, t->ndim, t->shape);
            shape_text(b, sizeof b, q->t.ndim, q->t.shape);
            mr_format(item, sizeof item, "%s/%s %s in the file, %s in the model", group, q->name, a,
                      b);
            list_add(misshaped, size, dropped, item);
            counts[2]++;
        }
    }
    for (int k = 0; k < l->count; k++) {
        if (l->items[k].matched) continue;
        char item[320];
        mr_format(item, sizeof item, "%s/%s", group, l->items[k].name);
        list_add(unexpected, size, dropped, item);
        counts[1]++;
    }
}

mr_status mr_checkpoint_load(const char *path, mr_params *p, mr_checkpoint_state *s) {
    MR_REQUIRE(p->finalized, "mr_checkpoint_load before mr_params_finalize");
    memset(s, 0, sizeof *s);
    mr_h5 f;
    MR_TRY(open_checkpoint(path, &f));
    tensor_list lp = {0}, lm = {0};
    mr_status st = read_state(&f, s);
    if (st == MR_OK) st = list_group(&f, "/params", &lp);
    if (st == MR_OK) st = list_group(&f, "/momentum", &lm);
    if (st == MR_OK) {
        char missing[700] = "", unexpected[700] = "", misshaped[700] = "";
        int counts[3] = {0, 0, 0}, dropped = 0;
        compare_group(p, &lp, "params", missing, unexpected, misshaped, sizeof missing, counts,
                      &dropped);
        compare_group(p, &lm, "momentum", missing, unexpected, misshaped, sizeof missing, counts,
                      &dropped);
        if (counts[0] || counts[1] || counts[2]) {
            char more[64] = "";
            if (dropped) mr_format(more, sizeof more, " (%d more not shown)", dropped);
            st = mr_fail(MR_ERR_FORMAT,
                         "%s: checkpoint does not match the model: %d missing [%s], %d "
                         "unexpected [%s], %d mis-shaped [%s]%s; was it written with another "
                         "config?",
                         path, counts[0], missing, counts[1], unexpected, counts[2], misshaped,
                         more);
        }
    }
    for (int i = 0; i < p->count && st == MR_OK; i++) {
        mr_param *q = &p->items[i];
        char ds[MR_PARAM_NAME_MAX + 32];
        mr_format(ds, sizeof ds, "/params/%s", q->name);
        st = read_checked(&f, ds, p->values + q->offset, q->t.numel);
        if (st != MR_OK) break;
        mr_format(ds, sizeof ds, "/momentum/%s", q->name);
        st = read_checked(&f, ds, p->momentum + q->offset, q->t.numel);
    }
    free(lp.items);
    free(lm.items);
    if (st != MR_OK) mr_checkpoint_state_free(s);
    return mr_h5_close_after(&f, st);
}

typedef struct {
    mr_h5 *f;
    int count;
    float *buf;
    int64_t cap;
} verify_ctx;

static mr_status verify_visit(const char *path, void *user) {
    verify_ctx *v = user;
    int ndim = 0;
    int64_t shape[MR_H5_MAX_DIMS], n = 1;
    MR_TRY(mr_h5_shape(v->f, path, &ndim, shape));
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (n > v->cap) {
        float *grown = realloc(v->buf, sizeof(float) * (size_t)n);
        if (!grown) return mr_fail(MR_ERR_NOMEM, "no memory to verify %s", path);
        v->buf = grown;
        v->cap = n;
    }
    v->count++;
    return read_checked(v->f, path, v->buf, n);
}

bool mr_checkpoint_verify(const char *path) {
    return mr_checkpoint_check(path) == MR_OK;
}

mr_status mr_checkpoint_check(const char *path) {
    mr_h5 f;
    MR_TRY(open_checkpoint(path, &f));
    mr_checkpoint_state s;
    mr_status st = read_state(&f, &s);
    mr_checkpoint_state_free(&s);
    int64_t n_params = 0;
    if (st == MR_OK) st = mr_h5_get_attr_i64(&f, "/", "n_params", &n_params);
    verify_ctx vp = {&f, 0, NULL, 0}, vm = {&f, 0, NULL, 0};
    if (st == MR_OK) st = mr_h5_visit_datasets(&f, "/params", verify_visit, &vp);
    vm.buf = vp.buf;
    vm.cap = vp.cap;
    vp.buf = NULL;
    if (st == MR_OK) st = mr_h5_visit_datasets(&f, "/momentum", verify_visit, &vm);
    free(vp.buf);
    free(vm.buf);
    if (st == MR_OK && (vp.count != n_params || vm.count != n_params))
        st = mr_fail(MR_ERR_FORMAT,
                     "%s: checkpoint holds %d parameters and %d momentum buffers, expected %lld "
                     "(damaged)",
                     path, vp.count, vm.count, (long long)n_params);
    return mr_h5_close_after(&f, st);
}

/* ---- the run folder ----------------------------------------------------------------------- */

void mr_checkpoint_path(char *buf, size_t size, const char *run_dir, int64_t epoch, int64_t step) {
    mr_format(buf, size, "%s/ckpt-e%04lld-s%08lld.h5", run_dir, (long long)epoch, (long long)step);
}

typedef struct {
    char name[256];
    long long epoch, step;
} ckpt_file;

/* Our own names only: "ckpt-e<digits>-s<digits>.h5", exactly. */
static bool parse_name(const char *name, ckpt_file *c) {
    int used = 0;
    if (sscanf(name, "ckpt-e%lld-s%lld.h5%n", &c->epoch, &c->step, &used) != 2) return false;
    if ((size_t)used != strlen(name) || strncmp(name + used - 3, ".h5", 3) != 0) return false;
    mr_format(c->name, sizeof c->name, "%s", name);
    return c->epoch >= 0 && c->step >= 0;
}

static int by_progress(const void *a, const void *b) {
    const ckpt_file *x = a, *y = b;
    if (x->epoch != y->epoch) return x->epoch < y->epoch ? -1 : 1;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The checkpoints of run_dir, oldest first. */
static mr_status list_checkpoints(const char *run_dir, ckpt_file **out, int *count) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(run_dir);
    if (!d)
        return mr_fail(MR_ERR_IO, "%s: cannot list the run folder (%s)", run_dir, strerror(errno));
    ckpt_file *items = NULL;
    int n = 0;
    size_t cap = 0;
    mr_status st = MR_OK;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        ckpt_file c;
        if (strlen(e->d_name) >= sizeof c.name || !parse_name(e->d_name, &c)) continue;
        if (!mr_grow(&items, &cap, (size_t)n + 1, sizeof *items, 32)) {
            st = mr_fail(MR_ERR_NOMEM, "no memory to list %s", run_dir);
            break;
        }
        items[n++] = c;
    }
    closedir(d);
    if (st != MR_OK) {
        free(items);
        return st;
    }
    if (n) qsort(items, (size_t)n, sizeof *items, by_progress);
    *out = items;
    *count = n;
    return MR_OK;
}

mr_status mr_checkpoint_find_latest(const char *run_dir, char *path, size_t size, int *n_skipped) {
    ckpt_file *items = NULL;
    int n = 0, skipped = 0;
    if (n_skipped) *n_skipped = 0;
    MR_TRY(list_checkpoints(run_dir, &items, &n));
    for (int i = n - 1; i >= 0; i--) {
        char full[4096];
        mr_format(full, sizeof full, "%s/%s", run_dir, items[i].name);
        if (mr_checkpoint_verify(full)) {
            mr_format(path, size, "%s", full);
            free(items);
            if (n_skipped) *n_skipped = skipped;
            return MR_OK;
        }
        mr_warn("skipping a damaged checkpoint: %s", mr_last_error()); /* names the file */
        skipped++;
    }
    free(items);
    if (n_skipped) *n_skipped = skipped;
    if (skipped)
        return mr_fail(MR_ERR_IO,
                       "%s: none of the %d checkpoints is intact (see the warnings "
                       "above); start again from the weights file",
                       run_dir, skipped);
    return mr_fail(MR_ERR_IO, "%s: no checkpoint (ckpt-e*-s*.h5) to resume from", run_dir);
}

/* val_loss of a checkpoint, NaN when unreadable or not measured. Read without verifying: only
 * to order the candidates for "best", each verified before it is chosen. */
/* A number after "key": in the checkpoint's metrics JSON, or NAN. */
static double metric_of(const char *json, const char *key) {
    char pattern[64];
    mr_format(pattern, sizeof pattern, "\"%s\":", key);
    const char *at = json ? strstr(json, pattern) : NULL;
    if (!at) return (double)NAN;
    char *end;
    double v = strtod(at + strlen(pattern), &end);
    return end == at + strlen(pattern) ? (double)NAN : v;
}

/* How good a checkpoint is for keeping as the best, lower is better: by the validation mask
 * AP50 (then mask AP) when the epoch measured them, which beats any checkpoint ranked only by
 * its validation loss; NaN when neither was measured (a mid-epoch save). */
static double checkpoint_rank(const char *path) {
    mr_h5 f;
    double loss = (double)NAN, rank;
    char *metrics = NULL;
    if (open_checkpoint(path, &f) != MR_OK) {
        mr_clear_error();
        return loss;
    }
    if (mr_h5_get_attr_f64(&f, "/", "val_loss", &loss) != MR_OK) loss = (double)NAN;
    if (mr_h5_get_attr_str(&f, "/", "metrics", &metrics) != MR_OK) metrics = NULL;
    mr_h5_close(&f);
    mr_clear_error();
    double ap50 = metric_of(metrics, "val_mask_ap50"), ap = metric_of(metrics, "val_mask_ap");
    free(metrics);
    if (isfinite(ap50))
        rank = -1e6 - 1e3 * ap50 - (isfinite(ap) ? ap : 0.0);
    else
        rank = loss;
    return rank;
}

typedef enum { UNCHECKED = 0, INTACT, DAMAGED } integrity;

/* Verifies items[i] once; damage is a warning naming the file and the reason. */
static bool is_intact(const char *run_dir, const ckpt_file *item, integrity *state) {
    if (*state == UNCHECKED) {
        char full[4096];
        mr_format(full, sizeof full, "%s/%s", run_dir, item->name);
        *state = mr_checkpoint_verify(full) ? INTACT : DAMAGED;
        if (*state == DAMAGED) mr_warn("not keeping a damaged checkpoint: %s", mr_last_error());
        mr_clear_error();
    }
    return *state == INTACT;
}

mr_status mr_checkpoint_prune(const char *run_dir, int keep, int *n_removed) {
    MR_REQUIRE(keep >= 1, "mr_checkpoint_prune keeps at least 1 checkpoint, asked %d", keep);
    if (n_removed) *n_removed = 0;
    ckpt_file *items = NULL;
    int n = 0, removed = 0;
    MR_TRY(list_checkpoints(run_dir, &items, &n));
    integrity *state = calloc((size_t)n + 1, sizeof *state);
    bool *kept = calloc((size_t)n + 1, sizeof *kept);
    double *loss = malloc(sizeof *loss * ((size_t)n + 1));
    mr_status st = MR_OK;
    if (!state || !kept || !loss) st = mr_fail(MR_ERR_NOMEM, "no memory to prune %s", run_dir);
    /* Only verified files are kept or counted: the newest `keep` intact ones... */
    int n_kept = 0, newest_intact = -1;
    for (int i = n - 1; i >= 0 && n_kept < keep && st == MR_OK; i--)
        if (is_intact(run_dir, &items[i], &state[i])) {
            kept[i] = true;
            n_kept++;
            if (newest_intact < 0) newest_intact = i;
        }
    /* ...and the best intact one (checkpoint_rank): candidates in order of their rank, each
     * verified until one is intact, so a damaged file cannot win with a readable score. */
    char full[4096];
    for (int i = 0; i < n && st == MR_OK; i++) {
        mr_format(full, sizeof full, "%s/%s", run_dir, items[i].name);
        loss[i] = state[i] == DAMAGED ? (double)NAN : checkpoint_rank(full);
    }
    while (st == MR_OK && newest_intact >= 0) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (state[i] != DAMAGED && isfinite(loss[i]) && (best < 0 || loss[i] < loss[best]))
                best = i;
        if (best < 0 || kept[best]) break;
        if (is_intact(run_dir, &items[best], &state[best])) {
            kept[best] = true;
            break;
        }
    }
    if (st == MR_OK && newest_intact < 0 && n > 0)
        st = mr_fail(MR_ERR_IO,
                     "%s: none of the %d checkpoints is intact (see the warnings above); nothing "
                     "was removed; is the disk failing?",
                     run_dir, n);
    for (int i = 0; i < n && st == MR_OK; i++) {
        if (kept[i]) continue;
        mr_format(full, sizeof full, "%s/%s", run_dir, items[i].name);
        if (state[i] == DAMAGED && i > newest_intact) {
            /* Newer than anything intact: it may hold progress nothing else has, so it is set
             * aside for salvage rather than deleted, under a name resume does not list. */
            char aside[4200];
            mr_format(aside, sizeof aside, "%s.damaged", full);
            if (rename(full, aside) != 0) {
                st = mr_fail(MR_ERR_IO, "%s: cannot set the damaged checkpoint aside (%s)", full,
                             strerror(errno));
                break;
            }
            mr_warn("set the damaged checkpoint aside as %s; the run continues from intact ones",
                    aside);
            removed++;
            continue;
        }
        if (unlink(full) != 0 && errno != ENOENT) {
            st = mr_fail(MR_ERR_IO, "%s: cannot remove old checkpoint (%s)", full, strerror(errno));
            break;
        }
        removed++;
    }
    free(items);
    free(state);
    free(kept);
    free(loss);
    if (st == MR_OK && removed && mr_fsync_path(run_dir, true) != 0)
        st = mr_fail(MR_ERR_IO, "%s: cannot fsync the run folder (%s)", run_dir, strerror(errno));
    if (n_removed) *n_removed = removed;
    return st;
}

mr_status mr_checkpoint_probe(const char *run_dir, int64_t bytes_needed) {
    MR_TRY(mr_make_dirs(run_dir));
    char probe[4096];
    mr_format(probe, sizeof probe, "%s/.mrcnn-probe-%ld", run_dir, (long)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return mr_fail(MR_ERR_IO,
                       "%s: the run folder is not writable (%s); choose another "
                       "output folder",
                       run_dir, strerror(errno));
    char block[4096];
    memset(block, 0x5a, sizeof block);
    bool ok = write(fd, block, sizeof block) == (ssize_t)sizeof block && fsync(fd) == 0;
    int saved = errno;
    ok = close(fd) == 0 && ok;
    unlink(probe);
    if (!ok)
        return mr_fail(MR_ERR_IO, "%s: writing to the run folder failed (%s); is the disk full?",
                       run_dir, strerror(saved));
    if (bytes_needed > 0) {
        struct statvfs vfs;
        if (statvfs(run_dir, &vfs) == 0) {
            double avail = (double)vfs.f_bavail * (double)vfs.f_frsize;
            if (avail < (double)bytes_needed)
                return mr_fail(MR_ERR_IO,
                               "%s: %.1f MB free, a checkpoint needs about %.1f MB; free some "
                               "space or lower CHECKPOINT_KEEP",
                               run_dir, avail / 1e6, (double)bytes_needed / 1e6);
        }
    }
    /* Temp files of saves that were interrupted (power cut, kill -9): never complete. */
    DIR *d = opendir(run_dir);
    if (d) {
        for (struct dirent *e = readdir(d); e; e = readdir(d)) {
            size_t len = strlen(e->d_name);
            ckpt_file c;
            char base[256];
            if (len < 5 || len >= sizeof base || strcmp(e->d_name + len - 4, ".tmp") != 0) continue;
            memcpy(base, e->d_name, len - 4);
            base[len - 4] = '\0';
            if (!parse_name(base, &c)) continue;
            char full[4096];
            mr_format(full, sizeof full, "%s/%s", run_dir, e->d_name);
            struct stat sb;
            if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode)) unlink(full);
        }
        closedir(d);
    }
    return MR_OK;
}

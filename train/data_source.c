/* Resolving --data (a parent with train/ and val/, a flat folder, an annotation file) into the
 * config's DATASET, and opening the splits: one function for every verb, so `train`,
 * `check-data`, `evaluate` and `anchors` read the same images the same way. */
#include "data_source.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DATA_FORMS                                                                                 \
    "a folder with train/ and val/, a folder of images with one annotation file, or an "           \
    "annotation file"

static bool is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Copies `value` into a config field of `size` bytes, or fails naming `what`. */
static mr_status set_field(char *field, size_t size, const char *value, const char *what) {
    size_t n = strlen(value);
    if (n >= size)
        return mr_fail(MR_ERR_ARG, "%s: the path is %zu bytes; at most %zu fit (%s)", value, n,
                       size - 1, what);
    memcpy(field, value, n + 1);
    return MR_OK;
}

/* `path` made absolute: resolved when it exists (so config.json names the real file), else
 * taken against the current folder. */
static mr_status absolute(const char *path, char *out, size_t n, const char *what) {
    char real[PATH_MAX];
    if (realpath(path, real)) return set_field(out, n, real, what);
    if (path[0] == '/') return set_field(out, n, path, what);
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd))
        return mr_fail(MR_ERR_IO, "cannot read the current folder: %s", strerror(errno));
    char joined[2 * PATH_MAX + 2];
    snprintf(joined, sizeof joined, "%s/%s", cwd, path);
    return set_field(out, n, joined, what);
}

/* dir + "/" + name into out (PATH_MAX bytes; cut there, and then found nowhere). */
static void join(char *out, const char *dir, const char *name) {
    size_t ld = strlen(dir), ln = strlen(name);
    bool slash = strcmp(dir, "/") != 0;
    if (ld + slash + ln + 1 > PATH_MAX) ld = ln = 0;
    memcpy(out, dir, ld);
    if (slash) out[ld++] = '/';
    memcpy(out + ld, name, ln);
    out[ld + ln] = '\0';
}

/* A parent's train/ and val/ are both folders. */
static bool is_parent(const char *dir) {
    char a[PATH_MAX], b[PATH_MAX];
    join(a, dir, "train");
    join(b, dir, "val");
    return is_dir(a) && is_dir(b);
}

mr_status mr_data_resolve(mr_config *cfg, const mr_data_args *args) {
    static const mr_data_args none = {0};
    if (!args) args = &none;
    if (args->has_val_split && !(args->val_split >= 0.0f && args->val_split <= 0.9f))
        return mr_fail(MR_ERR_ARG, "--val-split must be in [0, 0.9], got %g",
                       (double)args->val_split);

    const char *root = args->image_root ? args->image_root : cfg->image_root;
    if (root[0]) {
        char abs[PATH_MAX];
        MR_TRY(absolute(root, abs, sizeof abs, "the image root"));
        if (!is_dir(abs))
            return mr_fail(MR_ERR_IO, "%s: the image root (%s) is not a folder", root,
                           args->image_root ? "--image-root" : "IMAGE_ROOT");
        MR_TRY(set_field(cfg->image_root, sizeof cfg->image_root, abs, "IMAGE_ROOT"));
    }

    const char *given = args->data;
    if (!given) {
        if (!cfg->train_data[0])
            return mr_fail(MR_ERR_CONFIG,
                           "%s: no data: set DATASET in the config or pass --data (" DATA_FORMS ")",
                           cfg->source[0] ? cfg->source : "config");
        if (cfg->val_data[0]) { /* both splits named: take them as they are */
            char t[PATH_MAX], v[PATH_MAX];
            MR_TRY(absolute(cfg->train_data, t, sizeof t, "DATASET.TRAIN"));
            MR_TRY(absolute(cfg->val_data, v, sizeof v, "DATASET.VAL"));
            MR_TRY(set_field(cfg->train_data, sizeof cfg->train_data, t, "DATASET.TRAIN"));
            return set_field(cfg->val_data, sizeof cfg->val_data, v, "DATASET.VAL");
        }
        given = cfg->train_data;
    }
    char abs[PATH_MAX];
    MR_TRY(absolute(given, abs, sizeof abs, "--data"));
    struct stat sb;
    if (stat(abs, &sb) != 0)
        return mr_fail(MR_ERR_IO, "%s: %s; --data takes " DATA_FORMS, given, strerror(errno));

    char parent[PATH_MAX] = "", train[PATH_MAX], val[PATH_MAX];
    if (S_ISDIR(sb.st_mode)) {
        /* X/train or X/val of a split folder stands for X, so `--data X/val` still means
         * "X's validation images" to evaluate and "X" to train. */
        const char *slash = strrchr(abs, '/');
        const char *leaf = slash ? slash + 1 : abs;
        if (is_parent(abs)) {
            snprintf(parent, sizeof parent, "%s", abs);
        } else if (slash && slash > abs && (!strcmp(leaf, "train") || !strcmp(leaf, "val"))) {
            char up[PATH_MAX];
            snprintf(up, sizeof up, "%.*s", (int)(slash - abs), abs);
            if (is_parent(up)) snprintf(parent, sizeof parent, "%s", up);
        }
    }
    if (parent[0]) {
        join(train, parent, "train");
        join(val, parent, "val");
        MR_TRY(set_field(cfg->train_data, sizeof cfg->train_data, train, "DATASET.TRAIN"));
        return set_field(cfg->val_data, sizeof cfg->val_data, val, "DATASET.VAL");
    }
    /* One set: a folder with only train/, a flat folder, or a file; a seeded share of it
     * validates. */
    join(train, abs, "train");
    MR_TRY(set_field(cfg->train_data, sizeof cfg->train_data,
                     S_ISDIR(sb.st_mode) && is_dir(train) ? train : abs, "DATASET.TRAIN"));
    cfg->val_data[0] = '\0';
    if (args->has_val_split) cfg->validation_split = args->val_split;
    return MR_OK;
}

/* ---- opening ------------------------------------------------------------------------------- */

/* One annotation set, whole. */
static mr_status open_whole(const char *path, const mr_config *cfg, bool training,
                            mr_dataset **out) {
    mr_annotations ann;
    MR_TRY(mr_dataset_load_strict(path, cfg, &ann));
    return mr_dataset_wrap(out, &ann, cfg, training);
}

static const char *source_of(const mr_dataset *d, const char *fallback) {
    const mr_annotations *a = d ? mr_dataset_annotations(d) : NULL;
    return a && a->source ? a->source : fallback;
}

mr_status mr_data_open(const mr_config *cfg, mr_dataset **train, mr_dataset **val,
                       mr_data_summary *sum) {
    mr_data_summary ignored;
    if (!sum) sum = &ignored;
    memset(sum, 0, sizeof *sum);
    if (train) *train = NULL;
    if (val) *val = NULL;
    if (!cfg->train_data[0])
        return mr_fail(MR_ERR_CONFIG, "%s: no data: set DATASET in the config or pass --data",
                       cfg->source[0] ? cfg->source : "config");

    if (cfg->val_data[0]) { /* two sets */
        if (train) MR_TRY(open_whole(cfg->train_data, cfg, true, train));
        if (val) {
            mr_status st = open_whole(cfg->val_data, cfg, false, val);
            if (st != MR_OK) {
                if (train) {
                    mr_dataset_close(*train);
                    *train = NULL;
                }
                return st;
            }
        }
        sum->n_train = train ? mr_dataset_size(*train) : 0;
        sum->n_val = val ? mr_dataset_size(*val) : 0;
        char t[1200] = "", v[1200] = "";
        if (train)
            snprintf(t, sizeof t, "training %s (%lld images)", source_of(*train, cfg->train_data),
                     (long long)sum->n_train);
        if (val)
            snprintf(v, sizeof v, "validation %s (%lld images)", source_of(*val, cfg->val_data),
                     (long long)sum->n_val);
        snprintf(sum->line, sizeof sum->line, "data: %s%s%s", t, train && val ? "; " : "", v);
        return MR_OK;
    }

    /* One set, loaded once and split by seed. */
    mr_annotations ann, held;
    MR_TRY(mr_dataset_load_strict(cfg->train_data, cfg, &ann));
    const int64_t n = ann.n;
    bool *is_val = malloc(sizeof *is_val * (size_t)(n ? n : 1));
    if (!is_val) {
        mr_annotations_free(&ann);
        return mr_fail(MR_ERR_NOMEM, "out of memory splitting %s", cfg->train_data);
    }
    const int64_t n_val = mr_dataset_split(n, cfg->validation_split, cfg->seed, is_val);
    mr_status st = mr_annotations_split(&ann, is_val, &held); /* ann keeps the training side */
    free(is_val);
    sum->seeded = n_val > 0;
    sum->n_train = n - n_val;
    sum->n_val = n_val;
    if (n_val > 0)
        snprintf(sum->line, sizeof sum->line,
                 "data: %s: %lld images, no val/ split: %lld for training, %lld held out for "
                 "validation (seeded by SEED %llu, VALIDATION_SPLIT %g)",
                 ann.source ? ann.source : cfg->train_data, (long long)n, (long long)sum->n_train,
                 (long long)n_val, (unsigned long long)cfg->seed, (double)cfg->validation_split);
    else
        snprintf(sum->line, sizeof sum->line,
                 "data: %s: %lld images, all for training; no validation (VALIDATION_SPLIT %g)",
                 ann.source ? ann.source : cfg->train_data, (long long)n,
                 (double)cfg->validation_split);
    if (st == MR_OK && train) st = mr_dataset_wrap(train, &ann, cfg, true);
    if (st == MR_OK && val && held.n > 0) {
        st = mr_dataset_wrap(val, &held, cfg, false);
        if (st != MR_OK && train) {
            mr_dataset_close(*train);
            *train = NULL;
        }
    }
    mr_annotations_free(&ann);
    mr_annotations_free(&held);
    return st;
}

mr_status mr_data_open_part(const mr_config *cfg, mr_data_part part, mr_dataset **out,
                            mr_data_summary *sum) {
    mr_data_summary local;
    if (!sum) sum = &local;
    *out = NULL;
    if (part == MR_DATA_ALL) {
        memset(sum, 0, sizeof *sum);
        if (cfg->val_data[0])
            return mr_fail(MR_ERR_ARG,
                           "%s is the training half of a folder with train/ and val/: score "
                           "one half (val or train), not both as one set",
                           cfg->train_data);
        MR_TRY(open_whole(cfg->train_data, cfg, false, out));
        sum->n_val = mr_dataset_size(*out);
        snprintf(sum->line, sizeof sum->line, "data: all %lld images of %s", (long long)sum->n_val,
                 source_of(*out, cfg->train_data));
        return MR_OK;
    }
    const bool want_train = part == MR_DATA_TRAIN;
    MR_TRY(mr_data_open(cfg, want_train ? out : NULL, want_train ? NULL : out, sum));
    if (!*out)
        return mr_fail(MR_ERR_CONFIG,
                       "%s: no validation images: VALIDATION_SPLIT is 0 and there is no val/; "
                       "give --val-split F, or score every image",
                       cfg->train_data);
    /* Say which images this verb reads, not both sides. */
    const char *src = source_of(*out, cfg->train_data);
    const long long n = (long long)mr_dataset_size(*out), all = sum->n_train + sum->n_val;
    if (!sum->seeded)
        snprintf(sum->line, sizeof sum->line, "data: the %lld %s images of %s", n,
                 want_train ? "training" : "validation", src);
    else
        snprintf(sum->line, sizeof sum->line,
                 "data: the %lld of %lld images of %s %s (seeded by SEED %llu, "
                 "VALIDATION_SPLIT %g: the split training uses)",
                 n, all, src, want_train ? "used for training" : "held out for validation",
                 (unsigned long long)cfg->seed, (double)cfg->validation_split);
    return MR_OK;
}

/* ---- check-data ---------------------------------------------------------------------------- */

static void check_one(mr_data_check_set *s, const char *role, const char *path,
                      const mr_config *cfg, const mr_dataset_extra *extra) {
    s->role = role;
    s->status = mr_dataset_load(path, cfg, extra, &s->ann);
    /* As mr_dataset_wrap refuses it: training cannot start on an empty set. */
    if (s->status == MR_OK && s->ann.n == 0)
        s->status = mr_fail(MR_ERR_FORMAT, "%s: the annotations list no images; nothing to %s",
                            s->ann.source ? s->ann.source : path,
                            strcmp(role, "validation") ? "train on" : "validate on");
    if (s->status != MR_OK) snprintf(s->message, sizeof s->message, "%s", mr_last_error());
}

mr_status mr_data_check_load(const mr_config *cfg, const mr_dataset_extra *extra,
                             mr_data_check *out) {
    memset(out, 0, sizeof *out);
    if (!cfg->train_data[0])
        return mr_fail(MR_ERR_CONFIG, "%s: no data: set DATASET in the config or pass --data",
                       cfg->source[0] ? cfg->source : "config");
    if (cfg->val_data[0]) {
        check_one(&out->sets[0], "training", cfg->train_data, cfg, extra);
        check_one(&out->sets[1], "validation", cfg->val_data, cfg, extra);
        out->n_sets = 2;
        out->sets[0].n_train = out->sets[0].ann.n;
        out->sets[1].n_val = out->sets[1].ann.n;
    } else {
        mr_data_check_set *s = &out->sets[0];
        check_one(s, "training + validation", cfg->train_data, cfg, extra);
        out->n_sets = 1;
        bool *is_val = malloc(sizeof *is_val * (size_t)(s->ann.n ? s->ann.n : 1));
        if (!is_val) return mr_fail(MR_ERR_NOMEM, "out of memory");
        s->n_val = mr_dataset_split(s->ann.n, cfg->validation_split, cfg->seed, is_val);
        s->n_train = s->ann.n - s->n_val;
        free(is_val);
    }
    for (int i = 0; i < out->n_sets; i++)
        if (out->sets[i].status != MR_OK)
            return mr_fail(out->sets[i].status, "%s", out->sets[i].message);
    return MR_OK;
}

void mr_data_check_free(mr_data_check *c) {
    for (int i = 0; i < c->n_sets; i++) mr_annotations_free(&c->sets[i].ann);
    memset(c, 0, sizeof *c);
}

/* ---- words --------------------------------------------------------------------------------- */

void mr_data_describe_kind(const mr_image_kind *k, int channels, char *buf, size_t n) {
    const mr_image_info *i = &k->info;
    const int c = i->channels;
    const bool alpha = c == 2 || c == 4, colour = c >= 3 && !i->gray_as_rgb;
    const char *steps[6];
    int m = 0;
    /* What data/image.h's loader does to this kind of file for IMAGE_CHANNEL_COUNT. */
    if (i->bit_depth == 16) steps[m++] = "top 8 bits of each sample kept";
    if (i->bit_depth < 8 && !i->palette) steps[m++] = "scaled to 0-255";
    if (i->palette) steps[m++] = "palette expanded";
    if (alpha) steps[m++] = "alpha dropped";
    if (channels == 1 && c >= 3) steps[m++] = colour ? "averaged to gray" : "read as gray";
    if (channels == 3 && c <= 2) steps[m++] = "gray copied to R, G and B";
    size_t used = (size_t)snprintf(buf, n, "%s", i->kind);
    for (int s = 0; s < m && used + 1 < n; s++) {
        int w = snprintf(buf + used, n - used, "%s%s", s ? ", " : " [", steps[s]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (m && used + 1 < n) snprintf(buf + used, n - used, "]");
}

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

static void describe_kind(const mr_image_kind *k, int channels, char *buf, size_t n);

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

/* ---- the check-data report ------------------------------------------------------------------ */

/* "a,b , c" -> cfg CLASS_NAMES {"BG", "a", "b", "c"} (a leading "BG" is optional). */
mr_status mr_data_set_classes(mr_config *cfg, const char *list) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", list);
    int n = 1;
    for (char *tok = buf; tok;) {
        char *comma = strchr(tok, ',');
        if (comma) *comma = '\0';
        while (*tok == ' ') tok++;
        size_t l = strlen(tok);
        while (l && tok[l - 1] == ' ') tok[--l] = '\0';
        if (*tok && !(n == 1 && !strcmp(tok, "BG"))) {
            if (n >= MR_MAX_CLASSES)
                return mr_fail(MR_ERR_ARG, "--classes lists more than %d classes",
                               MR_MAX_CLASSES - 1);
            if (l >= sizeof cfg->class_names[n])
                return mr_fail(MR_ERR_ARG, "--classes: '%s' is longer than %zu characters", tok,
                               sizeof cfg->class_names[n] - 1);
            memcpy(cfg->class_names[n++], tok, l + 1); /* fits: checked above */
        }
        tok = comma ? comma + 1 : NULL;
    }
    if (n < 2) return mr_fail(MR_ERR_ARG, "--classes lists no class");
    cfg->net.num_classes = n;
    return MR_OK;
}

static void print_kinds(FILE *out, const mr_report *r, int channels) {
    if (!r->n_kinds) return;
    fprintf(out, "image files:");
    for (int k = 0; k < r->n_kinds; k++) {
        char kind[400];
        describe_kind(&r->kinds[k], channels, kind, sizeof kind);
        fprintf(out, "%s %lld image%s: %s", k ? ";" : "", (long long)r->kinds[k].count,
                r->kinds[k].count == 1 ? "" : "s", kind);
    }
    fprintf(out, "\n");
}

static void print_set(FILE *out, const mr_data_check_set *s, const mr_config *cfg, bool split) {
    const mr_annotations *a = &s->ann;
    const mr_report *r = &a->report;
    fprintf(out, "%s data: %s (%s)\n", s->role, a->source ? a->source : "?",
            mr_ann_format_name(a->format));
    if (a->attributes_path) fprintf(out, "attributes: %s\n", a->attributes_path);
    if (r->images_note) fprintf(out, "images found: %s\n", r->images_note);
    if (a->single_class) {
        fprintf(out, "classes: single class (every region is class 1)\n");
    } else {
        fprintf(out, "classes:");
        for (int i = 0; i < a->n_classes; i++)
            fprintf(out, "%s %s", i ? "," : "", a->class_names[i]);
        fprintf(out, "\n");
    }

    int64_t n_inst = 0, labelled = 0;
    int64_t *per_class = calloc((size_t)a->n_classes + 1, sizeof *per_class);
    double wmin = 0, wmax = 0, hmin = 0, hmax = 0;
    bool any = false;
    for (int64_t i = 0; i < a->n; i++) {
        const mr_image_record *rec = &a->records[i];
        labelled += rec->image_label_name != NULL;
        for (int64_t k = 0; k < rec->n_instances; k++) {
            const mr_region *inst = &rec->instances[k];
            double box[4];
            mr_annotations_bbox(inst, box);
            double w = box[3] - box[1], h = box[2] - box[0];
            if (!any || w < wmin) wmin = w;
            if (!any || w > wmax) wmax = w;
            if (!any || h < hmin) hmin = h;
            if (!any || h > hmax) hmax = h;
            any = true;
            n_inst++;
            if (per_class && inst->class_id >= 0 && inst->class_id < a->n_classes)
                per_class[inst->class_id]++;
        }
    }
    fprintf(out,
            "images: %lld (%lld negatives without instances, %lld with an image-level label)\n",
            (long long)a->n, (long long)r->n_negatives, (long long)labelled);
    print_kinds(out, r, cfg->net.image_channels);
    if (split)
        fprintf(out,
                "split: %lld for training, %lld held out for validation (seeded by SEED %llu, "
                "VALIDATION_SPLIT %g; the same images train holds out)\n",
                (long long)s->n_train, (long long)s->n_val, (unsigned long long)cfg->seed,
                (double)cfg->validation_split);
    fprintf(out, "instances: %lld\n", (long long)n_inst);
    for (int c = 1; per_class && c < a->n_classes; c++)
        fprintf(out, "  %-20s %lld\n", a->class_names[c], (long long)per_class[c]);
    free(per_class);
    /* Image-level labels ("normal" for BUSI negatives), counted by text. */
    const char *labels[16];
    int64_t counts[16];
    int n_labels = 0;
    for (int64_t i = 0; i < a->n; i++) {
        const char *l = a->records[i].image_label_name;
        if (!l) continue;
        int k = 0;
        while (k < n_labels && strcmp(labels[k], l)) k++;
        if (k == n_labels && n_labels < 16) labels[n_labels] = l, counts[n_labels++] = 0;
        if (k < n_labels) counts[k]++;
    }
    if (n_labels) {
        fprintf(out, "image labels:");
        for (int k = 0; k < n_labels; k++)
            fprintf(out, "%s %s %lld", k ? "," : "", labels[k], (long long)counts[k]);
        fprintf(out, "\n");
    }
    if (any)
        fprintf(out, "box size: width %.1f-%.1f px, height %.1f-%.1f px\n", wmin, wmax, hmin, hmax);
    else
        fprintf(out, "box size: no instances\n");
    fprintf(out,
            "regions: %lld seen; skipped %lld points, %lld polylines/lines, %lld temporal or "
            "file-level, %lld other; %lld degenerate; %lld wholly outside their image; %lld "
            "rejected by errors\n",
            (long long)r->n_regions, (long long)r->n_skipped_point,
            (long long)r->n_skipped_polyline, (long long)r->n_skipped_temporal,
            (long long)r->n_skipped_other, (long long)r->n_degenerate, (long long)r->n_outside,
            (long long)r->n_rejected);
    fprintf(out, "clipped: %lld points in %lld regions reaching outside their image\n",
            (long long)r->n_clipped_points, (long long)r->n_clipped_regions);
    fprintf(out, "problems: %lld error%s, %lld warning%s\n", (long long)r->n_errors,
            r->n_errors == 1 ? "" : "s", (long long)r->n_warnings, r->n_warnings == 1 ? "" : "s");
    for (int64_t i = 0; i < r->n_issues; i++)
        fprintf(out, "%s: %s\n", r->issues[i].level == MR_ISSUE_ERROR ? "error" : "warning",
                r->issues[i].text);
    if (r->n_issues_dropped)
        fprintf(out, "(%lld more problems not listed)\n", (long long)r->n_issues_dropped);
}

void mr_data_check_print(const mr_data_check *c, mr_status st, const mr_config *cfg, FILE *out) {
    int64_t errors = 0, warnings = 0;
    for (int i = 0; i < c->n_sets; i++) {
        const mr_data_check_set *s = &c->sets[i];
        errors += s->ann.report.n_errors;
        warnings += s->ann.report.n_warnings;
        /* A fatal error (an unreadable or malformed file, a config that cannot match any
         * label) has no report worth printing: its one line comes last. */
        if (s->status != MR_OK && s->ann.report.n_errors == 0) continue;
        if (i) fprintf(out, "\n");
        print_set(out, s, cfg, c->n_sets == 1);
    }
    if (st == MR_OK)
        fprintf(out, "\nverdict: train will accept this data (%lld warning%s)\n",
                (long long)warnings, warnings == 1 ? "" : "s");
    else if (errors)
        fprintf(out, "\nverdict: %lld error%s; train would stop on %s\n", (long long)errors,
                errors == 1 ? "" : "s", errors == 1 ? "it" : "them");
    else
        fprintf(out, "\nverdict: train would stop on the error below\n");
}

/* ---- words --------------------------------------------------------------------------------- */

/* "PNG 8-bit RGB (gray stored as RGB), read as gray" for an image kind: the file as it is and
 * what loading it for IMAGE_CHANNEL_COUNT `channels` does to it. */
static void describe_kind(const mr_image_kind *k, int channels, char *buf, size_t n) {
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

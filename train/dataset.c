/* Training/validation data stream: annotation loading with a one-line verdict, per-sample
 * molding with masks rasterised straight in molded space, seeded order and augmentation, and a
 * one-thread prefetcher with a two-batch queue. Owns the annotations, the order cache and the
 * queued batches. */
#include "dataset.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../core/log.h"
#include "../core/rng.h"
#include "../core/text.h"
#include "../data/image.h"
#include "../data/raster.h"
#include "../layers/resample.h"

#define QUEUE_DEPTH       2
#define MAX_LOGGED_ISSUES 20

/* Domain tags keep the order, augmentation and subsampling streams apart even when their
 * other hash inputs coincide. */
#define TAG_ORDER     0x6f72646572ull /* "order" */
#define TAG_AUGMENT   0x6175676dull   /* "augm" */
#define TAG_SUBSAMPLE 0x73756273ull   /* "subs" */

struct mr_dataset {
    mr_config cfg;
    bool training;
    mr_annotations ann;
    int shard, shards; /* this process's share of each batch (mr_dataset_set_shard) */

    /* Order cache: the permutation of the last (epoch, cycle) asked for. record_at is const
     * and called from both threads, hence the lock. */
    pthread_mutex_t order_mu;
    int64_t *perm; /* (ann.n) */
    int perm_epoch;
    int64_t perm_cycle;
    bool perm_valid;

    /* Prefetcher. Only one consumer (the trainer) calls next/release. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool running;     /* a thread was created and not yet joined */
    atomic_bool stop; /* read between samples without the lock */
    bool failed;      /* the producer stopped on an error */
    mr_status err;
    char *err_msg;
    mr_batch *queue[QUEUE_DEPTH];
    int q_head, q_count;
    int next_epoch, next_step, steps_per_epoch; /* the batch the producer makes next */
};

/* ---- hashing ------------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Order-sensitive hash of a few words (splitmix64 finaliser chained). */
static uint64_t hash_words(const uint64_t *w, int n) {
    uint64_t h = 0x2545f4914f6cdd1dull;
    for (int i = 0; i < n; i++) h = mix64(h ^ w[i]);
    return h;
}

/* ---- open / close -------------------------------------------------------------------------- */

/* True when CLASS_NAMES is still mr_config_defaults' "class1", "class2", ... */
static bool default_class_names(const mr_config *cfg) {
    for (int i = 1; i < cfg->net.num_classes; i++) {
        char want[48];
        snprintf(want, sizeof want, "class%d", i);
        if (strcmp(cfg->class_names[i], want)) return false;
    }
    return true;
}

static void log_issues(const mr_report *rep) {
    int64_t shown = 0;
    for (int64_t i = 0; i < rep->n_issues && shown < MAX_LOGGED_ISSUES; i++, shown++) {
        if (rep->issues[i].level == MR_ISSUE_ERROR)
            mr_error("%s", rep->issues[i].text);
        else
            mr_warn("%s", rep->issues[i].text);
    }
    int64_t more = rep->n_issues - shown + rep->n_issues_dropped;
    if (more > 0) mr_error("... %lld more", (long long)more);
}

mr_status mr_dataset_load(const char *path, const mr_config *cfg, const mr_dataset_extra *extra,
                          mr_annotations *out) {
    memset(out, 0, sizeof *out);
    const int n_classes = cfg->net.num_classes;
    if (n_classes < 2 || n_classes > MR_MAX_CLASSES)
        return mr_fail(MR_ERR_CONFIG, "NUM_CLASSES must be in 2..%d (background included), got %d",
                       MR_MAX_CLASSES, n_classes);
    /* With two classes and no CLASS_NAMES given, every region is the one class, whatever its
     * attributes say (balloon-style data); otherwise the names decide, and placeholder names
     * ("class1", ...) would only turn every real label into an "unknown class" error. */
    const bool named = !default_class_names(cfg);
    if (n_classes > 2 && !named)
        return mr_fail(MR_ERR_CONFIG,
                       "%s: NUM_CLASSES is %d but CLASS_NAMES is not given, so no region label "
                       "can be matched to a class; list the %d class names after \"BG\", e.g. "
                       "\"CLASS_NAMES\": [\"BG\", \"benign\", \"malignant\"]",
                       cfg->source[0] ? cfg->source : "config", n_classes, n_classes - 1);
    const char *names[MR_MAX_CLASSES];
    for (int i = 0; i < n_classes; i++) names[i] = cfg->class_names[i];
    mr_load_options opt = {0};
    opt.class_names = named ? names : NULL;
    opt.n_class_names = named ? n_classes : 0;
    opt.class_attribute = cfg->class_attribute[0] ? cfg->class_attribute : NULL;
    opt.image_root = cfg->image_root[0] ? cfg->image_root : NULL;
    opt.allow_missing_images = false; /* training reads every image: missing ones fail now */
    opt.decode_images = true;         /* and a truncated one must not fail at step 22 */
    opt.max_pixels = cfg->max_image_pixels;
    if (extra) {
        opt.attributes_path = extra->attributes_path;
        opt.allow_missing_images = extra->allow_missing_images;
    }
    return mr_annotations_load(path, &opt, out);
}

mr_status mr_dataset_load_strict(const char *path, const mr_config *cfg, mr_annotations *out) {
    mr_status st = mr_dataset_load(path, cfg, NULL, out);
    const mr_report *rep = &out->report;
    /* The check-data command that lists everything, with the config when it is a file. */
    char check[3400];
    size_t ls = strlen(cfg->source);
    bool json = ls > 5 && !strcmp(cfg->source + ls - 5, ".json");
    snprintf(check, sizeof check, "mrcnn check-data --data %s%s%s%s%s", path,
             json ? " --config " : "", json ? cfg->source : "",
             cfg->image_root[0] ? " --image-root " : "", cfg->image_root);
    if (rep->n_errors > 0) {
        log_issues(rep);
        const mr_issue *first = NULL;
        for (int64_t i = 0; i < rep->n_issues && !first; i++)
            if (rep->issues[i].level == MR_ISSUE_ERROR) first = &rep->issues[i];
        mr_status code =
            first && first->code != MR_OK ? first->code : (st != MR_OK ? st : MR_ERR_FORMAT);
        char text[1024];
        snprintf(text, sizeof text, "%s", first ? first->text : mr_last_error());
        const long long n_errors = (long long)rep->n_errors;
        mr_annotations_free(out);
        return mr_fail(code,
                       "%s: %lld error%s in the annotations, the first: %s; run `%s` for the "
                       "full list",
                       path, n_errors, n_errors == 1 ? "" : "s", text, check);
    }
    if (st != MR_OK) { /* unreadable or malformed file: the loader's message says it all */
        mr_annotations_free(out);
        return st;
    }
    if (rep->images_note) mr_info("%s", rep->images_note);
    if (rep->n_warnings > 0) {
        mr_warn("%s: %lld warning%s in the annotations (run `%s` to list them)", path,
                (long long)rep->n_warnings, rep->n_warnings == 1 ? "" : "s", check);
        for (int64_t i = 0; i < rep->n_issues; i++) mr_debug("%s", rep->issues[i].text);
    }
    return MR_OK;
}

int64_t mr_dataset_split(int64_t n, float share, uint64_t seed, bool *is_val) {
    for (int64_t i = 0; i < n; i++) is_val[i] = false;
    if (n < 2 || !(share > 0.0f)) return 0;
    int64_t n_val = (int64_t)((double)share * (double)n + 0.5);
    if (n_val < 1) n_val = 1;
    if (n_val >= n) n_val = n - 1;
    /* A permutation from SEED alone, drawn in place of an index array: the one rule every verb
     * applies, so the same images are held out each time. */
    int64_t *order = malloc(sizeof *order * (size_t)n);
    if (!order) { /* no memory for the draw: the last n_val images, still deterministic */
        for (int64_t i = n - n_val; i < n; i++) is_val[i] = true;
        return n_val;
    }
    for (int64_t i = 0; i < n; i++) order[i] = i;
    mr_rng rng;
    mr_rng_seed(&rng, seed ^ 0x5eed5911ull);
    mr_rng_shuffle_i64(&rng, order, n);
    for (int64_t i = 0; i < n_val; i++) is_val[order[i]] = true;
    free(order);
    return n_val;
}

mr_status mr_dataset_wrap(mr_dataset **out, mr_annotations *ann, const mr_config *cfg,
                          bool training) {
    *out = NULL;
    const char *source = ann->source ? ann->source : "the annotations";
    if (cfg->batch_size < 1) {
        mr_annotations_free(ann);
        return mr_fail(MR_ERR_CONFIG, "BATCH_SIZE must be at least 1, got %d", cfg->batch_size);
    }
    if (ann->n == 0) {
        mr_status st = mr_fail(MR_ERR_FORMAT, "%s: the annotations list no images; nothing to %s",
                               source, training ? "train on" : "validate on");
        mr_annotations_free(ann);
        return st;
    }
    mr_dataset *d = calloc(1, sizeof *d);
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)ann->n);
    if (!d || !perm) {
        free(d);
        free(perm);
        mr_status st = mr_fail(MR_ERR_NOMEM, "out of memory opening %s", source);
        mr_annotations_free(ann);
        return st;
    }
    d->cfg = *cfg;
    d->training = training;
    d->shards = 1;
    d->ann = *ann;
    memset(ann, 0, sizeof *ann);
    d->perm = perm;
    pthread_mutex_init(&d->order_mu, NULL);
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    atomic_init(&d->stop, false);
    *out = d;
    return MR_OK;
}

mr_status mr_dataset_open(mr_dataset **out, const char *path, const mr_config *cfg, bool training) {
    *out = NULL;
    if (cfg->batch_size < 1)
        return mr_fail(MR_ERR_CONFIG, "BATCH_SIZE must be at least 1, got %d", cfg->batch_size);
    mr_annotations ann;
    MR_TRY(mr_dataset_load_strict(path, cfg, &ann));
    if (!cfg->val_data[0] && cfg->validation_split > 0.0f && ann.n > 1) {
        bool *is_val = malloc(sizeof *is_val * (size_t)ann.n);
        if (!is_val) {
            mr_annotations_free(&ann);
            return mr_fail(MR_ERR_NOMEM, "out of memory splitting %s", path);
        }
        mr_dataset_split(ann.n, cfg->validation_split, cfg->seed, is_val);
        for (int64_t i = 0; i < ann.n; i++) is_val[i] = is_val[i] != training; /* = keep */
        mr_annotations_keep(&ann, is_val);
        free(is_val);
    }
    return mr_dataset_wrap(out, &ann, cfg, training);
}

void mr_dataset_close(mr_dataset *d) {
    if (!d) return;
    mr_dataset_stop(d);
    mr_annotations_free(&d->ann);
    free(d->perm);
    pthread_mutex_destroy(&d->order_mu);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    free(d);
}

const mr_annotations *mr_dataset_annotations(const mr_dataset *d) {
    return &d->ann;
}

int64_t mr_dataset_size(const mr_dataset *d) {
    return d->ann.n;
}

mr_status mr_dataset_set_shard(mr_dataset *d, int shard, int shards) {
    if (shards < 1 || shard < 0 || shard >= shards || d->cfg.batch_size % shards != 0)
        return mr_fail(MR_ERR_CONFIG,
                       "BATCH_SIZE %d does not divide among %d processes: each takes an equal "
                       "share of every batch; use a BATCH_SIZE that is a multiple of %d",
                       d->cfg.batch_size, shards, shards);
    mr_dataset_stop(d);
    d->shard = shard;
    d->shards = shards;
    return MR_OK;
}

/* ---- order --------------------------------------------------------------------------------- */

int64_t mr_dataset_record_at(const mr_dataset *d, int epoch, int64_t position) {
    const int64_t n = d->ann.n;
    if (position < 0) position = 0;
    if (!d->training) return position % n;
    const int64_t cycle = position / n;
    mr_dataset *m = (mr_dataset *)d; /* the cache is not part of the dataset's value */
    pthread_mutex_lock(&m->order_mu);
    if (!m->perm_valid || m->perm_epoch != epoch || m->perm_cycle != cycle) {
        /* Cycle 0 is seeded by hash(SEED, epoch) alone; later cycles add
         * the cycle number so long epochs do not repeat the same order. */
        uint64_t w[4] = {TAG_ORDER, d->cfg.seed, (uint64_t)(int64_t)epoch, (uint64_t)cycle};
        mr_rng rng;
        mr_rng_seed(&rng, hash_words(w, cycle ? 4 : 3));
        for (int64_t i = 0; i < n; i++) m->perm[i] = i;
        mr_rng_shuffle_i64(&rng, m->perm, n);
        m->perm_epoch = epoch;
        m->perm_cycle = cycle;
        m->perm_valid = true;
    }
    int64_t r = m->perm[position % n];
    pthread_mutex_unlock(&m->order_mu);
    return r;
}

uint64_t mr_dataset_augment_seed(const mr_dataset *d, int epoch, int64_t position) {
    if (!d->training || !mr_augment_enabled(&d->cfg.augment)) return 0;
    uint64_t w[4] = {TAG_AUGMENT, d->cfg.seed, (uint64_t)(int64_t)epoch, (uint64_t)position};
    return hash_words(w, 4) | 1u;
}

/* ---- one sample ---------------------------------------------------------------------------- */

void mr_sample_free(mr_sample *s) {
    if (!s) return;
    free(s->image);
    free(s->boxes);
    free(s->class_ids);
    free(s->masks);
    memset(s, 0, sizeof *s);
}

/* Original pixel coordinates -> molded: x' = (x + 0.5) * sx - 0.5 + left. The per-axis scales
 * are the resize's exact ratios (resized / original, what skimage's resize maps by), not the
 * rounded-off `scale`, so masks sit on exactly the pixels the image shows. */
typedef mr_placement placement;

static double place_x(const placement *p, double x) {
    return (x + 0.5) * p->sx - 0.5 + p->left;
}

static double place_y(const placement *p, double y) {
    return (y + 0.5) * p->sy - 0.5 + p->top;
}

/* Rasterises one instance's shape, placed in the molded image, into a zeroed side x side mask. */
static mr_status raster_instance(const mr_shape *s, const placement *p, uint8_t *mask,
                                 int64_t side) {
    switch (s->kind) {
    case MR_SHAPE_CIRCLE:
    case MR_SHAPE_ELLIPSE:
        /* The exact pixel-centre test mapped back to the original image: stays exact under the
         * two slightly different axis scales, where a rotated ellipse scaled analytically would
         * need re-deriving its axes. */
        mr_raster_ellipse(mask, (int)side, (int)side, s->cx, s->cy, s->rx, s->ry, s->theta, p, 1);
        return MR_OK;
    case MR_SHAPE_RECT: {
        mr_shape r = *s;
        r.x = place_x(p, s->x);
        r.y = place_y(p, s->y);
        r.w = s->w * p->sx;
        r.h = s->h * p->sy;
        mr_shape_rasterize(&r, mask, (int)side, (int)side, 1);
        return MR_OK;
    }
    case MR_SHAPE_POLYGON:
        break;
    }
    mr_shape q = *s; /* shares ring_ends; only the vertices are new */
    q.xs = malloc(sizeof(double) * (size_t)(s->n_points ? s->n_points : 1));
    q.ys = malloc(sizeof(double) * (size_t)(s->n_points ? s->n_points : 1));
    if (!q.xs || !q.ys) {
        free(q.xs);
        free(q.ys);
        return mr_fail(MR_ERR_NOMEM, "out of memory placing a %lld-point polygon",
                       (long long)s->n_points);
    }
    for (int64_t i = 0; i < s->n_points; i++) {
        q.xs[i] = place_x(p, s->xs[i]);
        q.ys[i] = place_y(p, s->ys[i]);
    }
    mr_shape_rasterize(&q, mask, (int)side, (int)side, 1);
    free(q.xs);
    free(q.ys);
    return MR_OK;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

mr_status mr_dataset_sample(const mr_dataset *d, int64_t record, uint64_t augment_seed,
                            mr_sample *out) {
    memset(out, 0, sizeof *out);
    if (record < 0 || record >= d->ann.n)
        return mr_fail(MR_ERR_ARG, "mr_dataset_sample: record %lld is outside 0..%lld",
                       (long long)record, (long long)d->ann.n - 1);
    const mr_net_config *net = &d->cfg.net;
    const mr_image_record *rec = &d->ann.records[record];
    const int64_t S = net->image_max_dim, C = net->image_channels, np = S * S;
    out->record = record;

    mr_image img;
    MR_TRY(mr_image_load_limited(rec->path, (int)C, d->cfg.max_image_pixels, &img));
    if (rec->width > 0 && (img.width != rec->width || img.height != rec->height)) {
        mr_status st = mr_fail(MR_ERR_FORMAT,
                               "%s: image is %dx%d but was %dx%d when the annotations were "
                               "loaded; the file changed since, restart training",
                               rec->path, img.width, img.height, rec->width, rec->height);
        mr_image_free(&img);
        return st;
    }
    out->image = malloc(sizeof(float) * (size_t)(np * C));
    if (!out->image) {
        mr_image_free(&img);
        return mr_fail(MR_ERR_NOMEM, "out of memory molding %s", rec->path);
    }
    mr_status st =
        mr_mold_image(out->image, img.pixels, img.height, img.width, (int)C, net->image_min_dim,
                      net->image_max_dim, net->mean_pixel, mr_net_pixel_std(net), &out->mold);
    mr_image_free(&img);
    if (st != MR_OK) {
        mr_sample_free(out);
        return st;
    }

    /* Full masks in molded space, clipped to the window: a shape clipped to the image's edge
     * may reach half a resized pixel into the padding, which holds no tissue. */
    const mr_mold_info *mi = &out->mold;
    const int64_t n_all = rec->n_instances;
    const int64_t win[4] = {mi->top, mi->left, mi->top + mi->resized_h, mi->left + mi->resized_w};
    const placement pl = {(double)mi->resized_h / (double)mi->geo.original_h,
                          (double)mi->resized_w / (double)mi->geo.original_w, (double)mi->top,
                          (double)mi->left};
    uint8_t *full = n_all ? calloc((size_t)n_all, (size_t)np) : NULL; /* (n_all, S, S) */
    int64_t *keep = malloc(sizeof(int64_t) * (size_t)(n_all + 1));
    int64_t *boxes = malloc(sizeof(int64_t) * 4 * (size_t)(n_all + 1));
    if ((n_all && !full) || !keep || !boxes) {
        st = mr_fail(MR_ERR_NOMEM, "out of memory for %lld masks of %s", (long long)n_all,
                     rec->path);
        goto fail;
    }
    for (int64_t k = 0; k < n_all && st == MR_OK; k++) {
        uint8_t *m = full + k * np;
        st = raster_instance(&rec->instances[k].shape, &pl, m, S);
        for (int64_t y = 0; y < S; y++) {
            if (y < win[0] || y >= win[2]) {
                memset(m + y * S, 0, (size_t)S);
                continue;
            }
            memset(m + y * S, 0, (size_t)win[1]);
            memset(m + y * S + win[3], 0, (size_t)(S - win[3]));
        }
    }
    if (st != MR_OK) goto fail;

    if (augment_seed != 0 && d->training && mr_augment_enabled(&d->cfg.augment)) {
        st = mr_augment(out->image, S, (int)C, net->mean_pixel, mr_net_pixel_std(net), win, full,
                        n_all, &d->cfg.augment, augment_seed, NULL);
        if (st != MR_OK) goto fail;
    }

    /* Instances that vanished (too small to cover a pixel centre, or pushed out of the frame)
     * are dropped, as Matterport's load_image_gt does after augmenting. */
    int64_t n = 0;
    for (int64_t k = 0; k < n_all; k++)
        if (mr_mask_box(full + k * np, S, S, boxes + 4 * n)) keep[n++] = k;

    /* Too many: a seeded random subset, kept in annotation order so the result does not
     * depend on the draw order. */
    const int64_t max_gt = net->max_gt_instances;
    if (max_gt > 0 && n > max_gt) {
        int64_t *idx = malloc(sizeof(int64_t) * (size_t)n);
        int64_t *kb = malloc(sizeof(int64_t) * 5 * (size_t)max_gt);
        if (!idx || !kb) {
            free(idx);
            free(kb);
            st = mr_fail(MR_ERR_NOMEM, "out of memory subsampling instances of %s", rec->path);
            goto fail;
        }
        uint64_t w[4] = {TAG_SUBSAMPLE, d->cfg.seed, (uint64_t)record, augment_seed};
        mr_rng rng;
        mr_rng_seed(&rng, hash_words(w, 4));
        for (int64_t i = 0; i < n; i++) idx[i] = i;
        mr_rng_shuffle_i64(&rng, idx, n);
        qsort(idx, (size_t)max_gt, sizeof *idx, cmp_i64);
        for (int64_t i = 0; i < max_gt; i++) {
            kb[i] = keep[idx[i]];
            memcpy(kb + max_gt + 4 * i, boxes + 4 * idx[i], sizeof(int64_t) * 4);
        }
        memcpy(keep, kb, sizeof(int64_t) * (size_t)max_gt);
        memcpy(boxes, kb + max_gt, sizeof(int64_t) * 4 * (size_t)max_gt);
        free(idx);
        free(kb);
        n = max_gt;
    }

    const int64_t mh = net->use_mini_mask ? net->mini_mask_shape : S;
    const int64_t mw = mh;
    const size_t nn = (size_t)(n ? n : 1); /* never NULL, even for a negative image */
    out->n = n;
    out->mask_h = mh;
    out->mask_w = mw;
    out->boxes = malloc(sizeof(double) * 4 * nn);
    out->class_ids = malloc(sizeof(int64_t) * nn);
    out->masks = calloc(nn, (size_t)(mh * mw));
    if (!out->boxes || !out->class_ids || !out->masks) {
        st = mr_fail(MR_ERR_NOMEM, "out of memory for the ground truth of %s", rec->path);
        goto fail;
    }
    for (int64_t i = 0; i < n; i++) {
        const int64_t *b = boxes + 4 * i;
        for (int j = 0; j < 4; j++) out->boxes[4 * i + j] = (double)b[j];
        out->class_ids[i] = rec->instances[keep[i]].class_id;
        const uint8_t *m = full + keep[i] * np;
        uint8_t *dst = out->masks + i * mh * mw;
        if (net->use_mini_mask)
            st = mr_minimize_mask(dst, mh, mw, m, S, S, b);
        else
            memcpy(dst, m, (size_t)np);
        if (st != MR_OK) goto fail;
    }
    free(full);
    free(keep);
    free(boxes);
    return MR_OK;

fail:
    free(full);
    free(keep);
    free(boxes);
    mr_sample_free(out);
    return st;
}

/* ---- batches and the prefetcher ------------------------------------------------------------ */

static void batch_free(mr_batch *b) {
    if (!b) return;
    if (b->samples)
        for (int64_t i = 0; i < b->size; i++) {
            b->samples[i].image = NULL; /* points into b->images */
            mr_sample_free(&b->samples[i]);
        }
    free(b->samples);
    free(b->gt);
    free(b->images);
    free(b);
}

/* Copies the last error so it can be re-raised with context without reading and writing the
 * same buffer. */
static mr_status fail_with_context(mr_status st, int epoch, int step, int64_t position) {
    char text[1536];
    snprintf(text, sizeof text, "%s", mr_last_error());
    return mr_fail(st, "%s (epoch %d, step %d, stream position %lld)", text, epoch, step,
                   (long long)position);
}

/* Batch (epoch, step): positions step*B .. step*B+B-1, or this shard's B/shards of them.
 * Returns MR_ERR_INTERRUPTED without a message when the prefetcher is being stopped. */
static mr_status make_batch(mr_dataset *d, int epoch, int step, mr_batch **out) {
    *out = NULL;
    const int64_t B = d->cfg.batch_size / d->shards, S = d->cfg.net.image_max_dim;
    const int64_t first = (int64_t)d->shard * B;
    const int64_t C = d->cfg.net.image_channels, per = S * S * C;
    mr_batch *b = calloc(1, sizeof *b);
    if (!b) return mr_fail(MR_ERR_NOMEM, "out of memory for a batch");
    b->size = B;
    b->image_side = S;
    b->channels = C;
    b->epoch = epoch;
    b->step = step;
    b->first = first;
    b->samples = calloc((size_t)B, sizeof *b->samples);
    b->gt = calloc((size_t)B, sizeof *b->gt);
    b->images = malloc(sizeof(float) * (size_t)(B * per));
    if (!b->samples || !b->gt || !b->images) {
        batch_free(b);
        return mr_fail(MR_ERR_NOMEM, "out of memory for a batch of %lld %lldx%lld images",
                       (long long)B, (long long)S, (long long)S);
    }
    for (int64_t i = 0; i < B; i++) {
        if (atomic_load(&d->stop)) {
            batch_free(b);
            return MR_ERR_INTERRUPTED;
        }
        int64_t pos = (int64_t)step * d->cfg.batch_size + first + i;
        int64_t rec = mr_dataset_record_at(d, epoch, pos);
        mr_sample *s = &b->samples[i];
        mr_status st = mr_dataset_sample(d, rec, mr_dataset_augment_seed(d, epoch, pos), s);
        if (st != MR_OK) {
            st = fail_with_context(st, epoch, step, pos);
            batch_free(b);
            return st;
        }
        float *dst = b->images + i * per;
        memcpy(dst, s->image, sizeof(float) * (size_t)per);
        free(s->image);
        s->image = dst;
        b->gt[i] = (mr_instances){.n = s->n,
                                  .boxes = s->boxes,
                                  .class_ids = s->class_ids,
                                  .masks = s->masks,
                                  .mask_h = s->mask_h,
                                  .mask_w = s->mask_w,
                                  .image_h = S,
                                  .image_w = S};
    }
    *out = b;
    return MR_OK;
}

static void *producer(void *arg) {
    mr_dataset *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        while (!atomic_load(&d->stop) && d->q_count == QUEUE_DEPTH)
            pthread_cond_wait(&d->cv, &d->mu);
        if (atomic_load(&d->stop)) {
            pthread_mutex_unlock(&d->mu);
            break;
        }
        int epoch = d->next_epoch, step = d->next_step;
        pthread_mutex_unlock(&d->mu);

        mr_batch *b = NULL;
        mr_status st = make_batch(d, epoch, step, &b); /* the slow part, unlocked */

        pthread_mutex_lock(&d->mu);
        if (atomic_load(&d->stop)) {
            pthread_mutex_unlock(&d->mu);
            batch_free(b);
            break;
        }
        if (st != MR_OK) {
            d->failed = true;
            d->err = st;
            d->err_msg = mr_strdup(mr_last_error());
            pthread_cond_broadcast(&d->cv);
            pthread_mutex_unlock(&d->mu);
            break;
        }
        d->queue[(d->q_head + d->q_count) % QUEUE_DEPTH] = b;
        d->q_count++;
        if (++d->next_step == d->steps_per_epoch) {
            d->next_step = 0;
            d->next_epoch++;
        }
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
    }
    return NULL;
}

mr_status mr_dataset_start(mr_dataset *d, int epoch, int step, int steps_per_epoch) {
    if (steps_per_epoch < 1 || step < 0 || step >= steps_per_epoch || epoch < 0)
        return mr_fail(MR_ERR_ARG,
                       "mr_dataset_start: need epoch >= 0 and 0 <= step < steps_per_epoch, got "
                       "epoch %d, step %d, steps_per_epoch %d",
                       epoch, step, steps_per_epoch);
    mr_dataset_stop(d);
    d->next_epoch = epoch;
    d->next_step = step;
    d->steps_per_epoch = steps_per_epoch;
    d->failed = false;
    d->q_head = d->q_count = 0;
    atomic_store(&d->stop, false);
    int rc = pthread_create(&d->thread, NULL, producer, d);
    if (rc != 0)
        return mr_fail(MR_ERR_NOMEM, "cannot start the data prefetch thread: %s", strerror(rc));
    d->running = true;
    return MR_OK;
}

mr_status mr_dataset_next(mr_dataset *d, mr_batch **batch) {
    *batch = NULL;
    if (!d->running)
        return mr_fail(MR_ERR_ARG, "mr_dataset_next: the prefetcher is not running; call "
                                   "mr_dataset_start first");
    pthread_mutex_lock(&d->mu);
    while (d->q_count == 0 && !d->failed) pthread_cond_wait(&d->cv, &d->mu);
    mr_status st = MR_OK;
    if (d->q_count > 0) { /* batches made before an error are still handed out first */
        *batch = d->queue[d->q_head];
        d->queue[d->q_head] = NULL;
        d->q_head = (d->q_head + 1) % QUEUE_DEPTH;
        d->q_count--;
        pthread_cond_broadcast(&d->cv);
    } else {
        st = mr_fail(d->err, "%s", d->err_msg ? d->err_msg : "data prefetch failed");
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}

void mr_dataset_release(mr_dataset *d, mr_batch *batch) {
    (void)d;
    batch_free(batch);
}

void mr_dataset_stop(mr_dataset *d) {
    if (!d || !d->running) return;
    pthread_mutex_lock(&d->mu);
    atomic_store(&d->stop, true);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->thread, NULL);
    d->running = false;
    for (int i = 0; i < d->q_count; i++) {
        int k = (d->q_head + i) % QUEUE_DEPTH;
        batch_free(d->queue[k]);
        d->queue[k] = NULL;
    }
    d->q_head = d->q_count = 0;
    free(d->err_msg);
    d->err_msg = NULL;
    d->failed = false;
}

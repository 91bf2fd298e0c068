/* Prediction on image files (train/predictor.h): the model loaded once, image -> detections ->
 * polygons and RLE, and the batch's overlays, per-image JSON and VIA project, each written
 * atomically. Owns the inputs list and the VIA writer of a batch. */
#include "predictor.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../core/file.h"
#include "../core/text.h"
#include "../core/util.h"
#include "../data/draw.h"
#include "../data/rle.h"
#include "../data/via_write.h"
#include "../layers/inference.h"
#include "../layers/mold.h"
#include "export.h"

/* Largest Douglas-Peucker distance for the polygons, in pixels; mr_mask_to_polygons lowers it
 * wherever the polygon would change more than 0.5% of the mask's pixels. */
#define POLYGON_TOLERANCE 1.0

/* ---- a loaded model ------------------------------------------------------------------------ */

mr_status mr_predictor_load(mr_predictor *p, const mr_predictor_options *o) {
    memset(p, 0, sizeof *p);
    const mr_inference_options io = {.allow_damaged = o->allow_damaged, .fold_batchnorms = true};
    MR_TRY(mr_inference_load_opts(o->weights, o->config, &io, &p->cfg, &p->model, &p->format));
    p->threshold = !isnan(o->threshold) ? (float)o->threshold : p->cfg.net.detection_min_confidence;
    mr_status st = mr_ctx_init(&p->ctx, (size_t)p->cfg.arena_mb << 20);
    if (st == MR_OK) mr_ctx_keep_kernels(&p->ctx);
    if (st == MR_OK && o->bf16) st = mr_ctx_use_bf16(&p->ctx);
    if (st != MR_OK) {
        mr_model_free(&p->model);
        mr_ctx_free(&p->ctx);
        return st;
    }
    p->loaded = true;
    return MR_OK;
}

void mr_predictor_free(mr_predictor *p) {
    if (!p || !p->loaded) return;
    mr_model_free(&p->model);
    mr_ctx_free(&p->ctx);
    memset(p, 0, sizeof *p);
}

const char *mr_predictor_class_name(const mr_predictor *p, int64_t id) {
    static _Thread_local char buf[32];
    if (id >= 0 && id < MR_MAX_CLASSES && p->cfg.class_names[id][0]) return p->cfg.class_names[id];
    snprintf(buf, sizeof buf, "class%lld", (long long)id);
    return buf;
}

mr_status mr_predictor_detect(mr_predictor *p, const char *path, mr_instances *d, mr_image *rgb) {
    const mr_net_config *net = &p->cfg.net;
    mr_image color = {0}, gray = {0};
    memset(d, 0, sizeof *d);
    mr_status st = mr_image_load_limited(path, 3, p->cfg.max_image_pixels, &color);
    /* The network sees the image exactly as training loaded it (gray by image.c's rule). */
    if (st == MR_OK && net->image_channels == 1)
        st = mr_image_load_limited(path, 1, p->cfg.max_image_pixels, &gray);
    const mr_image *src = net->image_channels == 1 ? &gray : &color;
    mr_ctx_reset(&p->ctx);
    mr_tensor *images = NULL;
    mr_mold_info info;
    if (st == MR_OK) {
        images = mr_tensor_4d(&p->ctx, "images", 1, net->image_max_dim, net->image_max_dim,
                              net->image_channels);
        if (!images) st = p->ctx.status;
    }
    if (st == MR_OK)
        st = mr_mold_image(images->data, src->pixels, src->height, src->width, net->image_channels,
                           net->image_min_dim, net->image_max_dim, net->mean_pixel,
                           mr_net_pixel_std(net), &info);
    if (st == MR_OK) st = mr_model_detect(&p->ctx, &p->model, images, &info.geo, p->threshold, d);
    mr_image_free(&gray);
    if (st == MR_OK && rgb)
        *rgb = color;
    else
        mr_image_free(&color);
    return st;
}

mr_status mr_predictor_polygons(const mr_instances *d, mr_mask_polygons **polys) {
    *polys = calloc((size_t)d->n + 1, sizeof **polys);
    if (!*polys) return mr_fail(MR_ERR_NOMEM, "no memory for polygons");
    int64_t np = d->image_h * d->image_w;
    for (int64_t i = 0; i < d->n; i++) {
        const uint8_t *mask = d->masks + (size_t)(i * np);
        mr_status st = mr_mask_to_polygons(mask, (int)d->image_w, (int)d->image_h, 1,
                                           POLYGON_TOLERANCE, &(*polys)[i]);
        if (st != MR_OK) {
            mr_predictor_polygons_free(*polys, d->n);
            *polys = NULL;
            return st;
        }
    }
    return MR_OK;
}

void mr_predictor_polygons_free(mr_mask_polygons *polys, int64_t n) {
    for (int64_t i = 0; polys && i < n; i++) mr_mask_polygons_free(&polys[i]);
    free(polys);
}

/* ---- inputs -------------------------------------------------------------------------------- */

static void note(mr_predict_note_fn fn, void *user, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(mr_predict_note_fn fn, void *user, const char *fmt, ...) {
    if (!fn) return;
    char line[PATH_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fn(user, line);
}

static bool push_input(mr_predict_inputs *l, const char *path) {
    if (!mr_grow(&l->items, &l->cap, (size_t)l->count + 1, sizeof *l->items, 64)) return false;
    mr_predict_input *in = &l->items[l->count];
    in->path = mr_strdup(path);
    in->real = realpath(path, NULL);
    if (!in->path || !in->real) {
        free(in->path);
        free(in->real);
        return false;
    }
    /* The same file named twice (a folder and one of its files) is predicted once. */
    for (int i = 0; i < l->count; i++)
        if (!strcmp(l->items[i].real, in->real)) {
            free(in->path);
            free(in->real);
            return true;
        }
    l->count++;
    return true;
}

void mr_predict_inputs_free(mr_predict_inputs *l) {
    for (int i = 0; i < l->count; i++) {
        free(l->items[i].path);
        free(l->items[i].real);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

static bool has_suffix_nocase(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

static bool is_image_name(const char *name) {
    static const char *ext[] = {".png", ".jpg", ".jpeg", ".bmp"};
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (has_suffix_nocase(name, ext[i])) return true;
    return false;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The image files of one folder (not its subfolders), sorted by name. */
static int scan_folder(mr_predict_inputs *l, const char *dir, const char *out_real,
                       mr_predict_note_fn fn, void *user) {
    DIR *d = opendir(dir);
    if (!d) {
        note(fn, user, "%s: cannot read folder: %s", dir, strerror(errno));
        return 1;
    }
    char *dir_real = realpath(dir, NULL);
    bool is_out = dir_real && out_real && !strcmp(dir_real, out_real);
    free(dir_real);
    char **names = NULL;
    int n = 0, bad = 0;
    size_t cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (!is_image_name(e->d_name) ||
            (is_out && has_suffix_nocase(e->d_name, MR_PREDICT_OVERLAY_SUFFIX))) {
            l->skipped++;
            continue;
        }
        if (!mr_grow(&names, &cap, (size_t)n + 1, sizeof *names, 64)) break;
        if (!(names[n] = mr_strdup(path))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        if (!push_input(l, names[i])) {
            note(fn, user, "%s: cannot resolve path: %s", names[i], strerror(errno));
            bad++;
        }
        free(names[i]);
    }
    free(names);
    return bad;
}

int mr_predict_inputs_add(mr_predict_inputs *l, const char *path, const char *out_real,
                          mr_predict_note_fn fn, void *user) {
    struct stat sb;
    if (stat(path, &sb) != 0) {
        note(fn, user, "%s: %s", path, strerror(errno));
        return 1;
    }
    if (S_ISDIR(sb.st_mode)) return scan_folder(l, path, out_real, fn, user);
    if (!push_input(l, path)) {
        note(fn, user, "%s: cannot resolve path: %s", path, strerror(errno));
        return 1;
    }
    return 0;
}

/* ---- paths --------------------------------------------------------------------------------- */

/* Path of `to` relative to the folder `from`, both canonical absolute paths. */
static void relative_path(const char *from, const char *to, char *out, size_t size) {
    size_t common = 0, i = 0;
    /* The longest common prefix that ends at a component boundary. */
    while (from[i] && to[i] && from[i] == to[i]) {
        i++;
        if (from[i] == '/' || from[i] == '\0') {
            if (to[i] == '/' || to[i] == '\0') common = i;
        }
    }
    size_t used = 0;
    out[0] = '\0';
    /* One "../" per component of `from` below the common part ("/" itself has none). */
    for (const char *p = from + common; *p; p++)
        if (*p == '/' && p[1] && used + 4 < size) {
            memcpy(out + used, "../", 4);
            used += 3;
        }
    const char *rest = to + common;
    while (*rest == '/') rest++;
    snprintf(out + used, size - used, "%s", rest);
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* "<stem>" of a file name, made unique among the names used so far ("x", "x-2", ...). */
static void unique_stem(const char *path, char **used, int n_used, char *out, size_t size) {
    char stem[200]; /* room left for "-N" and the suffixes */
    snprintf(stem, sizeof stem, "%s", base_name(path));
    char *dot = strrchr(stem, '.');
    if (dot && dot != stem) *dot = '\0';
    snprintf(out, size, "%s", stem);
    for (int k = 2;; k++) {
        bool taken = false;
        for (int i = 0; i < n_used && !taken; i++) taken = !strcmp(used[i], out);
        if (!taken) return;
        snprintf(out, size, "%s-%d", stem, k);
    }
}

/* ---- one image's outputs ------------------------------------------------------------------- */

typedef struct {
    mr_predictor *p;
    const char *out_dir;
    char *out_real;
    mr_via_writer *via;
    char **stems;
    int n_stems;
    size_t stems_cap;
    /* VIA resolves default_filepath + filename against the page VIA runs in, not against the
     * project file, so default_filepath is the absolute folder the images share (with its
     * trailing '/'), and each filename is the rest of its path: bare when all sit in one folder,
     * as VIA's "add files" writes them. */
    char via_prefix[PATH_MAX];
    mr_predict_summary *sum;
} batch;

/* A VIA region for a detection: the polygon of its largest mask part (an outline along pixel
 * edges, so even a one-pixel-thin part has area). An empty mask becomes its box. */
static mr_status via_region(batch *b, const mr_instances *d, int64_t i,
                            const mr_mask_polygons *polys) {
    const mr_mask_polygon *best = NULL;
    for (int k = 0; k < polys->count; k++)
        if (!best || polys->items[k].area > best->area) best = &polys->items[k];
    if (polys->count > 1) b->sum->fragments_left_out += polys->count - 1;
    const char *name = mr_predictor_class_name(b->p, d->class_ids[i]);
    mr_status st;
    if (best) {
        st = mr_via_writer_add_polygon_d(b->via, best->xs, best->ys, best->n_points, name);
    } else {
        /* The box's pixels [y1, y2) x [x1, x2), at least one, outlined by their corners. */
        const double *bx = d->boxes + 4 * i;
        double x1 = (double)bx[1] - 0.5, y1 = (double)bx[0] - 0.5;
        double x2 = (double)(bx[3] > bx[1] ? bx[3] : bx[1] + 1) - 0.5;
        double y2 = (double)(bx[2] > bx[0] ? bx[2] : bx[0] + 1) - 0.5;
        x1 = x1 < 0.0 ? 0.0 : x1;
        y1 = y1 < 0.0 ? 0.0 : y1;
        double xs[4] = {x1, x2, x2, x1}, ys[4] = {y1, y1, y2, y2};
        st = mr_via_writer_add_polygon_d(b->via, xs, ys, 4, name);
        b->sum->empty_masks++;
    }
    if (st != MR_OK) return st;
    char score[32];
    snprintf(score, sizeof score, "%.3f", (double)d->scores[i]);
    return mr_via_writer_set_region_attr(b->via, "score", score);
}

/* The per-image JSON, built in memory and written atomically (JSON by hand: only data/via*.c
 * sees cJSON). */
static mr_status write_result(const mr_predictor *p, const char *json_path, const char *image_rel,
                              const char *overlay_name, const mr_instances *d,
                              const mr_mask_polygons *polys) {
    mr_text t = {0};
    mr_text_printf(&t, "{\n  \"image\": ");
    mr_text_json_string(&t, image_rel);
    mr_text_printf(&t, ",\n  \"width\": %lld,\n  \"height\": %lld,\n  \"overlay\": ",
                   (long long)d->image_w, (long long)d->image_h);
    mr_text_json_string(&t, overlay_name);
    mr_text_printf(&t, ",\n  \"threshold\": %.6g,\n  \"detections\": [", (double)p->threshold);
    for (int64_t i = 0; i < d->n; i++) {
        const double *b = d->boxes + 4 * i;
        const mr_mask_polygons *pp = &polys[i];
        int64_t area = 0;
        const uint8_t *mask = d->masks + (size_t)i * (size_t)d->image_h * (size_t)d->image_w;
        for (int64_t k = 0; k < d->image_h * d->image_w; k++) area += mask[k] != 0;
        mr_text_printf(&t, "%s\n    {\"class_id\": %lld, \"class\": ", i ? "," : "",
                       (long long)d->class_ids[i]);
        mr_text_json_string(&t, mr_predictor_class_name(p, d->class_ids[i]));
        mr_text_printf(&t,
                       ", \"score\": %.6f, \"box\": [%lld, %lld, %lld, %lld], \"area\": %lld,\n"
                       "     \"polygons\": [",
                       (double)d->scores[i], (long long)b[0], (long long)b[1], (long long)b[2],
                       (long long)b[3], (long long)area);
        /* Vertices are pixel corners or edge midpoints, multiples of 0.5: one decimal is exact. */
        for (int k = 0; k < pp->count; k++) {
            const mr_mask_polygon *poly = &pp->items[k];
            mr_text_printf(&t, "%s[", k ? ", " : "");
            for (int v = 0; v < poly->n_points; v++)
                mr_text_printf(&t, "%s[%.1f, %.1f]", v ? ", " : "", poly->xs[v], poly->ys[v]);
            mr_text_printf(&t, "]");
        }
        char *counts = NULL;
        mr_status st = mr_rle_encode(mask, (int)d->image_h, (int)d->image_w, &counts);
        if (st != MR_OK) {
            mr_text_free(&t);
            return st;
        }
        mr_text_printf(&t, "],\n     \"rle\": {\"size\": [%lld, %lld], \"counts\": ",
                       (long long)d->image_h, (long long)d->image_w);
        mr_text_json_string(&t, counts); /* '\\' is one of the RLE characters */
        free(counts);
        mr_text_printf(&t, "}");
        if (d->class_probs) { /* the lesion's probability for each class, background included */
            mr_text_printf(&t, ",\n     \"class_scores\": {");
            for (int64_t k = 0; k < d->n_classes; k++) {
                mr_text_printf(&t, "%s", k ? ", " : "");
                mr_text_json_string(&t, mr_predictor_class_name(p, k));
                mr_text_printf(&t, ": %.6f", (double)d->class_probs[i * d->n_classes + k]);
            }
            mr_text_printf(&t, "}");
        }
        mr_text_printf(&t, "}");
    }
    mr_text_printf(&t, "%s]\n}\n", d->n ? "\n  " : "");
    mr_status st = mr_text_write_atomic(&t, json_path);
    mr_text_free(&t);
    return st;
}

/* Predicts one image and writes its overlay and JSON. A failed write sets *write_failed: the
 * caller stops there (the next file would fail the same way), whereas a bad input image is
 * reported and skipped. */
static mr_status predict_one(batch *b, const mr_predict_input *in, mr_instances *d,
                             bool *write_failed) {
    mr_predictor *p = b->p;
    mr_image rgb = {0};
    MR_TRY(mr_predictor_detect(p, in->path, d, &rgb));
    /* Polygons of every detection (all components, for the JSON); the largest goes to VIA. */
    mr_mask_polygons *polys = NULL;
    mr_status st = mr_predictor_polygons(d, &polys);

    char stem[NAME_MAX + 1], overlay[PATH_MAX], json[PATH_MAX], overlay_name[NAME_MAX + 16],
        rel[PATH_MAX];
    unique_stem(in->path, b->stems, b->n_stems, stem, sizeof stem);
    snprintf(overlay_name, sizeof overlay_name, "%s" MR_PREDICT_OVERLAY_SUFFIX, stem);
    snprintf(overlay, sizeof overlay, "%s/%s", b->out_dir, overlay_name);
    snprintf(json, sizeof json, "%s/%s" MR_PREDICT_RESULT_SUFFIX, b->out_dir, stem);
    relative_path(b->out_real, in->real, rel, sizeof rel);

    if (st == MR_OK) {
        const char *names[MR_MAX_CLASSES];
        for (int64_t k = 0; k < p->cfg.net.num_classes; k++)
            names[k] = mr_predictor_class_name(p, k);
        mr_draw_detections(&rgb, d, names, p->cfg.net.num_classes);
        st = mr_image_write_png(overlay, &rgb);
        *write_failed = st == MR_ERR_IO;
    }
    if (st == MR_OK) {
        st = write_result(p, json, rel, overlay_name, d, polys);
        *write_failed = st == MR_ERR_IO;
    }
    if (st == MR_OK) {
        struct stat sb;
        int64_t size = stat(in->path, &sb) == 0 ? (int64_t)sb.st_size : 0;
        st = mr_via_writer_add_image(b->via, in->real + strlen(b->via_prefix), size, NULL);
        for (int64_t i = 0; i < d->n && st == MR_OK; i++) st = via_region(b, d, i, &polys[i]);
    }
    if (st == MR_OK) {
        char *copy = mr_strdup(stem);
        if (copy && mr_grow(&b->stems, &b->stems_cap, (size_t)b->n_stems + 1, sizeof *b->stems, 64))
            b->stems[b->n_stems++] = copy;
        else
            free(copy);
        for (int64_t i = 0; i < d->n; i++) {
            b->sum->detections++;
            if (d->class_ids[i] >= 0 && d->class_ids[i] < MR_MAX_CLASSES)
                b->sum->per_class[d->class_ids[i]]++;
        }
    }
    if (polys) mr_predictor_polygons_free(polys, d->n);
    mr_image_free(&rgb);
    return st;
}

static void choose_via_paths(batch *b, const mr_predict_inputs *inputs) {
    /* The longest folder prefix of every image's real path, ending in '/' ("/" at worst). */
    size_t common = 0;
    for (int i = 0; i < inputs->count; i++) {
        const char *real = inputs->items[i].real;
        size_t folder = (size_t)(strrchr(real, '/') - real) + 1;
        if (i == 0) {
            common = folder;
            continue;
        }
        size_t same = 0;
        const char *first = inputs->items[0].real;
        while (same < common && same < folder && first[same] == real[same]) same++;
        while (same > 0 && first[same - 1] != '/') same--;
        common = same;
    }
    snprintf(b->via_prefix, sizeof b->via_prefix, "%.*s", (int)common,
             inputs->count ? inputs->items[0].real : "");
}

/* ---- a batch ------------------------------------------------------------------------------- */

static mr_status predict_all(batch *b, const mr_predict_options *o, const mr_predict_inputs *in) {
    mr_predict_summary *sum = b->sum;
    for (int i = 0; i < in->count; i++) {
        mr_instances d;
        memset(&d, 0, sizeof d);
        bool write_failed = false;
        mr_status one = predict_one(b, &in->items[i], &d, &write_failed);
        if (one == MR_OK) {
            sum->images_done++;
            if (o->image_done) o->image_done(o->user, i, in->count, in->items[i].path, &d, NULL);
        }
        mr_instances_free(&d);
        if (one == MR_OK) continue;
        if (write_failed) {
            /* A full disk or a read-only folder fails every later file too: stop at the first,
             * with one line, rather than one line per image and a folder of partial outputs.
             * The files written before are whole (core/file.h). */
            char why[1024];
            snprintf(why, sizeof why, "%s", mr_last_error());
            return mr_fail(one, "%s; stopped at image %d of %d", why, i + 1, in->count);
        }
        if (one == MR_ERR_NOMEM) return one; /* the next image will not fare better */
        if (o->image_done)
            o->image_done(o->user, i, in->count, in->items[i].path, NULL, mr_last_error());
        sum->failures++;
    }
    if (sum->images_done == 0) return MR_OK;
    const mr_predictor *p = b->p;
    snprintf(sum->project, sizeof sum->project, "%s/" MR_PREDICT_PROJECT_NAME, b->out_dir);
    const char *names[MR_MAX_CLASSES];
    for (int c = 0; c < p->cfg.net.num_classes; c++) names[c] = sum->class_names[c];
    mr_via_project_options po = {.name = p->cfg.name[0] ? p->cfg.name : "mrcnn predictions",
                                 .default_filepath = b->via_prefix,
                                 .class_names = names,
                                 .n_class_names = p->cfg.net.num_classes};
    mr_status st = mr_via_writer_save_project(b->via, sum->project, &po);
    if (st != MR_OK) sum->project[0] = '\0';
    snprintf(sum->images_folder, sizeof sum->images_folder, "%s", b->via_prefix);
    return st;
}

mr_status mr_predict(const mr_predict_options *o, mr_predict_summary *sum) {
    memset(sum, 0, sizeof *sum);
    batch b = {.out_dir = o->out_dir, .sum = sum};
    mr_predict_inputs inputs = {0};
    mr_predictor *p = calloc(1, sizeof *p);
    mr_status st = p ? MR_OK : mr_fail(MR_ERR_NOMEM, "no memory");
    if (st == MR_OK) st = mr_make_dirs(o->out_dir);
    /* A read-only or forbidden out_dir fails now, not after the model has loaded. */
    if (st == MR_OK) st = mr_check_dir_writable(o->out_dir);
    if (st == MR_OK && !(b.out_real = realpath(o->out_dir, NULL)))
        st = mr_fail(MR_ERR_IO, "%s: %s", o->out_dir, strerror(errno));
    /* Inputs before the model: a typo in a path should not wait for the weights to load. */
    for (int i = 0; i < o->n_inputs && st == MR_OK; i++)
        sum->failures += mr_predict_inputs_add(&inputs, o->inputs[i], b.out_real, o->note, o->user);
    if (st == MR_OK && inputs.count == 0)
        st = mr_fail(MR_ERR_ARG,
                     "no images to predict on (PNG, JPEG or BMP files or folders of them)%s",
                     inputs.skipped ? "; the folders given hold no image files" : "");
    if (st == MR_OK) choose_via_paths(&b, &inputs);
    if (st == MR_OK) st = mr_predictor_load(p, &o->model);
    if (st == MR_OK) {
        b.p = p;
        sum->num_classes = (int)p->cfg.net.num_classes;
        for (int c = 0; c < sum->num_classes && c < MR_MAX_CLASSES; c++)
            snprintf(sum->class_names[c], sizeof sum->class_names[c], "%s",
                     mr_predictor_class_name(p, c));
        if (o->loaded) o->loaded(o->user, p, inputs.count);
        if (!(b.via = mr_via_writer_new())) st = mr_fail(MR_ERR_NOMEM, "no memory");
    }
    if (st == MR_OK) st = predict_all(&b, o, &inputs);
    mr_predictor_free(p);
    free(p);
    mr_via_writer_free(b.via);
    for (int i = 0; i < b.n_stems; i++) free(b.stems[i]);
    free(b.stems);
    free(b.out_real);
    mr_predict_inputs_free(&inputs);
    return st;
}

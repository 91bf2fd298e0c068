/* `mrcnn predict`: images and folders in; per image an overlay PNG and a JSON of detections
 * (class, score, box, area, polygons that rasterise back to the mask within 0.5%, and the exact
 * mask as COCO RLE); for the whole batch one VIA 2.x project that a clinician can open in VIA,
 * correct, and feed back as training data. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../core/file.h"
#include "../core/log.h"
#include "../core/runtime.h"
#include "../core/tensor.h"
#include "../core/text.h"
#include "../data/draw.h"
#include "../data/image.h"
#include "../data/raster.h"
#include "../data/rle.h"
#include "../data/via_write.h"
#include "../layers/inference.h"
#include "../layers/mold.h"
#include "../train/export.h"
#include "cli.h"

#define OVERLAY_SUFFIX "_pred.png"
#define RESULT_SUFFIX  "_pred.json"
#define PROJECT_NAME   "via_project.json"
/* Largest Douglas-Peucker distance for the polygons, in pixels; mr_mask_to_polygons lowers it
 * wherever the polygon would change more than 0.5% of the mask's pixels. */
#define POLYGON_TOLERANCE 1.0

/* ---- inputs --------------------------------------------------------------------------------- */

typedef struct {
    char *path; /* as given, or folder + name */
    char *real; /* canonical absolute path, for duplicates and relative paths */
} input;

typedef struct {
    input *items;
    int count, cap;
} input_list;

static bool push_input(input_list *l, const char *path) {
    if (l->count == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        input *grown = realloc(l->items, sizeof *grown * (size_t)cap);
        if (!grown) return false;
        l->items = grown;
        l->cap = cap;
    }
    input *in = &l->items[l->count];
    in->path = strdup(path);
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

static void free_inputs(input_list *l) {
    for (int i = 0; i < l->count; i++) {
        free(l->items[i].path);
        free(l->items[i].real);
    }
    free(l->items);
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

/* The image files of one folder (not its subfolders), sorted by name. Our own overlays are
 * skipped when the folder is the output folder, so a second run does not predict on them. */
static int scan_folder(const char *dir, const char *out_real, input_list *l, int *skipped) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "mrcnn predict: %s: cannot read folder: %s\n", dir, strerror(errno));
        return 1;
    }
    char *dir_real = realpath(dir, NULL);
    bool is_out = dir_real && out_real && !strcmp(dir_real, out_real);
    free(dir_real);
    char **names = NULL;
    int n = 0, cap = 0, bad = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) continue;
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (!is_image_name(e->d_name) || (is_out && has_suffix_nocase(e->d_name, OVERLAY_SUFFIX))) {
            (*skipped)++;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, sizeof *grown * (size_t)cap);
            if (!grown) break;
            names = grown;
        }
        if (!(names[n] = strdup(path))) break;
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        if (!push_input(l, names[i])) {
            fprintf(stderr, "mrcnn predict: %s: cannot resolve path: %s\n", names[i],
                    strerror(errno));
            bad++;
        }
        free(names[i]);
    }
    free(names);
    return bad;
}

/* ---- paths ---------------------------------------------------------------------------------- */

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

/* ---- one image ------------------------------------------------------------------------------ */

typedef struct {
    mr_config cfg;
    mr_model model;
    mr_ctx ctx;
    float threshold;
    const char *out_dir;
    char *out_real;
    mr_via_writer *via;
    char **stems;
    int n_stems;
    /* VIA resolves default_filepath + filename. When every image sits in one folder, that folder
     * (relative to the project file) is default_filepath and filenames stay bare, which is also
     * what VIA's "add files" matches on; otherwise filenames are relative paths. */
    bool via_bare;
    char via_prefix[PATH_MAX];
    int64_t detections, per_class[MR_MAX_CLASSES];
    int images_done, fragments_left_out, empty_masks;
} predictor;

static const char *class_name(const predictor *p, int64_t id) {
    static _Thread_local char buf[32];
    if (id >= 0 && id < MR_MAX_CLASSES && p->cfg.class_names[id][0]) return p->cfg.class_names[id];
    snprintf(buf, sizeof buf, "class%lld", (long long)id);
    return buf;
}

/* A VIA region for a detection: the polygon of its largest mask part (an outline along pixel
 * edges, so even a one-pixel-thin part has area). An empty mask becomes its box. */
static mr_status via_region(predictor *p, const mr_detections *d, int64_t i,
                            const mr_mask_polygons *polys) {
    const mr_mask_polygon *best = NULL;
    for (int k = 0; k < polys->count; k++)
        if (!best || polys->items[k].area > best->area) best = &polys->items[k];
    if (polys->count > 1) p->fragments_left_out += polys->count - 1;
    const char *name = class_name(p, d->class_ids[i]);
    mr_status st;
    if (best) {
        st = mr_via_writer_add_polygon_d(p->via, best->xs, best->ys, best->n_points, name);
    } else {
        /* The box's pixels [y1, y2) x [x1, x2), at least one, outlined by their corners. */
        const int64_t *b = d->boxes + 4 * i;
        double x1 = (double)b[1] - 0.5, y1 = (double)b[0] - 0.5;
        double x2 = (double)(b[3] > b[1] ? b[3] : b[1] + 1) - 0.5;
        double y2 = (double)(b[2] > b[0] ? b[2] : b[0] + 1) - 0.5;
        x1 = x1 < 0.0 ? 0.0 : x1;
        y1 = y1 < 0.0 ? 0.0 : y1;
        double xs[4] = {x1, x2, x2, x1}, ys[4] = {y1, y1, y2, y2};
        st = mr_via_writer_add_polygon_d(p->via, xs, ys, 4, name);
        p->empty_masks++;
    }
    if (st != MR_OK) return st;
    char score[32];
    snprintf(score, sizeof score, "%.3f", (double)d->scores[i]);
    return mr_via_writer_set_region_attr(p->via, "score", score);
}

/* The per-image JSON, built in memory and written atomically (JSON by hand: only data/via*.c
 * sees cJSON). */
static mr_status write_result(const predictor *p, const char *json_path, const char *image_rel,
                              const char *overlay_name, const mr_detections *d,
                              const mr_mask_polygons *polys) {
    mr_text t = {0};
    mr_text_printf(&t, "{\n  \"image\": ");
    mr_text_json_string(&t, image_rel);
    mr_text_printf(&t, ",\n  \"width\": %lld,\n  \"height\": %lld,\n  \"overlay\": ",
                   (long long)d->image_w, (long long)d->image_h);
    mr_text_json_string(&t, overlay_name);
    mr_text_printf(&t, ",\n  \"threshold\": %.6g,\n  \"detections\": [", (double)p->threshold);
    for (int64_t i = 0; i < d->n; i++) {
        const int64_t *b = d->boxes + 4 * i;
        const mr_mask_polygons *pp = &polys[i];
        int64_t area = 0;
        const uint8_t *mask = d->masks + (size_t)i * (size_t)d->image_h * (size_t)d->image_w;
        for (int64_t k = 0; k < d->image_h * d->image_w; k++) area += mask[k] != 0;
        mr_text_printf(&t, "%s\n    {\"class_id\": %lld, \"class\": ", i ? "," : "",
                       (long long)d->class_ids[i]);
        mr_text_json_string(&t, class_name(p, d->class_ids[i]));
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
        mr_text_printf(&t, "}}");
    }
    mr_text_printf(&t, "%s]\n}\n", d->n ? "\n  " : "");
    mr_status st = mr_text_write_atomic(&t, json_path);
    mr_text_free(&t);
    return st;
}

/* Predicts one image and writes its overlay and JSON. A failed write sets *write_failed: the
 * caller stops there (the next file would fail the same way), whereas a bad input image is
 * reported and skipped. */
static mr_status predict_one(predictor *p, const input *in, mr_detections *d, bool *write_failed) {
    const mr_net_config *net = &p->cfg.net;
    mr_image rgb = {0}, gray = {0};
    mr_status st = mr_image_load_limited(in->path, 3, p->cfg.max_image_pixels, &rgb);
    /* The network sees the image exactly as training loaded it (gray by image.c's rule). */
    if (st == MR_OK && net->image_channels == 1)
        st = mr_image_load_limited(in->path, 1, p->cfg.max_image_pixels, &gray);
    const mr_image *src = net->image_channels == 1 ? &gray : &rgb;
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
    if (st != MR_OK) {
        mr_image_free(&rgb);
        return st;
    }

    /* Polygons of every detection (all components, for the JSON); the largest goes to VIA. */
    mr_mask_polygons *polys = calloc((size_t)d->n + 1, sizeof *polys);
    if (!polys) st = mr_fail(MR_ERR_NOMEM, "no memory for polygons");
    int64_t np = d->image_h * d->image_w;
    for (int64_t i = 0; i < d->n && st == MR_OK; i++) {
        const uint8_t *mask = d->masks + (size_t)(i * np);
        st = mr_mask_to_polygons(mask, (int)d->image_w, (int)d->image_h, 1, POLYGON_TOLERANCE,
                                 &polys[i]);
    }

    char stem[NAME_MAX + 1], overlay[PATH_MAX], json[PATH_MAX], overlay_name[NAME_MAX + 16],
        rel[PATH_MAX];
    unique_stem(in->path, p->stems, p->n_stems, stem, sizeof stem);
    snprintf(overlay_name, sizeof overlay_name, "%s" OVERLAY_SUFFIX, stem);
    snprintf(overlay, sizeof overlay, "%s/%s", p->out_dir, overlay_name);
    snprintf(json, sizeof json, "%s/%s" RESULT_SUFFIX, p->out_dir, stem);
    relative_path(p->out_real, in->real, rel, sizeof rel);

    if (st == MR_OK) {
        const char *names[MR_MAX_CLASSES];
        for (int64_t k = 0; k < p->cfg.net.num_classes; k++) names[k] = class_name(p, k);
        mr_draw_detections(&rgb, d->n, d->boxes, d->class_ids, d->scores, d->masks, names,
                           p->cfg.net.num_classes);
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
        st = mr_via_writer_add_image(p->via, p->via_bare ? base_name(rel) : rel, size, NULL);
        for (int64_t i = 0; i < d->n && st == MR_OK; i++) st = via_region(p, d, i, &polys[i]);
    }
    if (st == MR_OK) {
        char **grown = realloc(p->stems, sizeof *grown * (size_t)(p->n_stems + 1));
        char *copy = strdup(stem);
        if (grown) p->stems = grown;
        if (grown && copy)
            p->stems[p->n_stems++] = copy;
        else
            free(copy);
        for (int64_t i = 0; i < d->n; i++) {
            p->detections++;
            if (d->class_ids[i] >= 0 && d->class_ids[i] < MR_MAX_CLASSES)
                p->per_class[d->class_ids[i]]++;
        }
    }
    for (int64_t i = 0; polys && i < d->n; i++) mr_mask_polygons_free(&polys[i]);
    free(polys);
    mr_image_free(&rgb);
    return st;
}

static void choose_via_paths(predictor *p, const input_list *inputs) {
    char first[PATH_MAX] = "";
    p->via_bare = true;
    for (int i = 0; i < inputs->count && p->via_bare; i++) {
        char rel[PATH_MAX];
        relative_path(p->out_real, inputs->items[i].real, rel, sizeof rel);
        char *slash = strrchr(rel, '/');
        if (slash)
            slash[1] = '\0';
        else
            rel[0] = '\0';
        if (i == 0)
            snprintf(first, sizeof first, "%s", rel);
        else
            p->via_bare = !strcmp(first, rel);
    }
    snprintf(p->via_prefix, sizeof p->via_prefix, "%s", p->via_bare ? first : "");
}

int cmd_predict(int argc, char **argv) {
    const char *weights = NULL, *config = NULL, *out = NULL;
    double threshold = (double)NAN; /* NAN: not given */
    bool allow_damaged = false;
    mr_str_list positional = {0};
    mr_opt opts[] = {
        {"--weights", MR_OPT_STRING, &weights, "export, checkpoint or Keras weights"},
        {"--config", MR_OPT_STRING, &config, "config JSON (default: the one inside --weights)"},
        {"--out", MR_OPT_STRING, &out, "folder for overlays, JSON results and via_project.json"},
        {"--threshold", MR_OPT_DOUBLE, &threshold,
         "minimum score (overrides DETECTION_MIN_CONFIDENCE)"},
        MR_CLI_ALLOW_DAMAGED_OPT(allow_damaged),
    };
    int code = 0;
    if (!mr_parse_args("predict",
                       "--weights W [--config C] IMAGES_OR_FOLDERS... --out DIR [--threshold T]",
                       argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), &positional, &code)) {
        free((void *)positional.items);
        return code;
    }
    if (!weights || !out || positional.count == 0) {
        fprintf(stderr, "mrcnn predict: --weights FILE, --out DIR and at least one image or "
                        "folder are required\n");
        free((void *)positional.items);
        return 2;
    }
    if (!isnan(threshold) && !(threshold >= 0.0 && threshold <= 1.0)) {
        fprintf(stderr, "mrcnn predict: --threshold must be between 0 and 1, got %g\n", threshold);
        free((void *)positional.items);
        return 2;
    }
    predictor *p = calloc(1, sizeof *p);
    input_list inputs = {0};
    int failures = 0, skipped = 0;
    mr_status st = p ? MR_OK : mr_fail(MR_ERR_NOMEM, "no memory");
    if (st == MR_OK) st = mr_make_dirs(out);
    /* A read-only or forbidden --out fails now, not after the model has loaded. */
    if (st == MR_OK) st = mr_check_dir_writable(out);
    if (st == MR_OK) {
        p->out_dir = out;
        p->out_real = realpath(out, NULL);
        if (!p->out_real) st = mr_fail(MR_ERR_IO, "%s: %s", out, strerror(errno));
    }
    /* Inputs before the model: a typo in a path should not wait for the weights to load. */
    for (int i = 0; i < positional.count && st == MR_OK; i++) {
        const char *path = positional.items[i];
        struct stat sb;
        if (stat(path, &sb) != 0) {
            fprintf(stderr, "mrcnn predict: %s: %s\n", path, strerror(errno));
            failures++;
        } else if (S_ISDIR(sb.st_mode)) {
            failures += scan_folder(path, p->out_real, &inputs, &skipped);
        } else if (!push_input(&inputs, path)) {
            fprintf(stderr, "mrcnn predict: %s: cannot resolve path: %s\n", path, strerror(errno));
            failures++;
        }
    }
    if (st == MR_OK && inputs.count == 0)
        st = mr_fail(MR_ERR_ARG,
                     "no images to predict on (PNG, JPEG or BMP files or folders of "
                     "them)%s",
                     skipped ? "; the folders given hold no image files" : "");
    if (st == MR_OK) choose_via_paths(p, &inputs);
    mr_weights_format format = MR_WEIGHTS_EXPORT;
    const mr_inference_options io = {.allow_damaged = allow_damaged};
    if (st == MR_OK) st = mr_inference_load_opts(weights, config, &io, &p->cfg, &p->model, &format);
    bool model_ready = st == MR_OK;
    if (st == MR_OK) {
        p->threshold = !isnan(threshold) ? (float)threshold : p->cfg.net.detection_min_confidence;
        mr_runtime_banner();
        mr_info("predict: %d image%s with %s (%s), config %s (hash %016llx), threshold %.3g",
                inputs.count, inputs.count == 1 ? "" : "s", weights, mr_weights_format_name(format),
                config ? config : "from the weights file",
                (unsigned long long)mr_config_hash(&p->cfg), (double)p->threshold);
        st = mr_ctx_init(&p->ctx, (size_t)p->cfg.arena_mb << 20);
    }
    if (st == MR_OK && !(p->via = mr_via_writer_new())) st = mr_fail(MR_ERR_NOMEM, "no memory");
    for (int i = 0; i < inputs.count && st == MR_OK; i++) {
        mr_detections d;
        memset(&d, 0, sizeof d);
        bool write_failed = false;
        mr_status one = predict_one(p, &inputs.items[i], &d, &write_failed);
        if (one == MR_OK) {
            fprintf(stderr, "[%d/%d] %s: %lld detection%s\n", i + 1, inputs.count,
                    inputs.items[i].path, (long long)d.n, d.n == 1 ? "" : "s");
            p->images_done++;
        } else if (write_failed) {
            /* A full disk or a read-only folder fails every later file too: stop at the first,
             * with one line, rather than one line per image and a folder of partial outputs.
             * The files written before are whole (core/file.h). */
            char why[1024];
            snprintf(why, sizeof why, "%s", mr_last_error());
            st = mr_fail(one, "%s; stopped at image %d of %d", why, i + 1, inputs.count);
        } else if (one == MR_ERR_NOMEM) {
            st = one; /* the next image will not fare better */
        } else {
            fprintf(stderr, "[%d/%d] %s; skipped\n", i + 1, inputs.count, mr_last_error());
            failures++;
        }
        mr_detections_free(&d);
    }
    if (st == MR_OK && p->images_done > 0) {
        char project[PATH_MAX];
        snprintf(project, sizeof project, "%s/" PROJECT_NAME, out);
        const char *names[MR_MAX_CLASSES];
        for (int c = 0; c < p->cfg.net.num_classes; c++) names[c] = class_name(p, c);
        mr_via_project_options po = {.name = p->cfg.name[0] ? p->cfg.name : "mrcnn predictions",
                                     .default_filepath = p->via_prefix,
                                     .class_names = names,
                                     .n_class_names = p->cfg.net.num_classes};
        st = mr_via_writer_save_project(p->via, project, &po);
        if (st == MR_OK) {
            printf("%d image%s, %lld detection%s", p->images_done, p->images_done == 1 ? "" : "s",
                   (long long)p->detections, p->detections == 1 ? "" : "s");
            for (int c = 1; c < p->cfg.net.num_classes; c++)
                if (p->per_class[c])
                    printf(", %s %lld", class_name(p, c), (long long)p->per_class[c]);
            printf("; overlays and JSON in %s; VIA project %s\n", out, project);
            if (p->fragments_left_out)
                printf("note: %d extra mask fragment%s in the JSON but not in the VIA project "
                       "(one region per detection: its largest part)\n",
                       p->fragments_left_out, p->fragments_left_out == 1 ? " is" : "s are");
            if (p->empty_masks)
                printf("note: %d detection%s with an empty mask %s in the VIA project\n",
                       p->empty_masks, p->empty_masks == 1 ? "" : "s",
                       p->empty_masks == 1 ? "is its box" : "are their boxes");
        }
    }
    if (failures && st == MR_OK)
        fprintf(stderr, "mrcnn predict: %d input%s could not be used (see above)\n", failures,
                failures == 1 ? "" : "s");
    int rc = st != MR_OK ? mr_exit_code(st) : failures ? 1 : 0;
    if (p) {
        if (model_ready) mr_model_free(&p->model);
        mr_ctx_free(&p->ctx);
        mr_via_writer_free(p->via);
        for (int i = 0; i < p->n_stems; i++) free(p->stems[i]);
        free(p->stems);
        free(p->out_real);
        free(p);
    }
    free_inputs(&inputs);
    free((void *)positional.items);
    return rc;
}

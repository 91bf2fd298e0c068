/* The predict-JSON reader. Every number is range-checked before it is used as a size or an
 * index: the files may come from other tools. */
#include "predictions.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "../core/text.h"
#include "../core/util.h"
#include "raster.h"
#include "rle.h"

#define MAX_SIDE        65536
#define MAX_PIXELS      ((int64_t)1 << 28) /* 268 megapixels: a larger image is not a scan */
#define MAX_DETECTIONS  10000
#define MAX_POLY_POINTS 1000000

static cJSON *parse_file(const char *path, mr_status *st) {
    char *text = NULL;
    size_t len = 0;
    if ((*st = mr_read_file(path, "prediction file", (size_t)1 << 30, &text, &len)) != MR_OK)
        return NULL;
    cJSON *root = cJSON_Parse(text);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        int64_t line = 1, col = 1;
        if (at) mr_text_pos(text, len, (size_t)(at - text), &line, &col);
        *st = mr_fail(MR_ERR_FORMAT, "%s:%lld: not valid JSON", path, (long long)line);
    } else if (!cJSON_IsObject(root)) {
        *st = mr_fail(MR_ERR_FORMAT, "%s: a prediction file is a JSON object", path);
        cJSON_Delete(root);
        root = NULL;
    }
    free(text);
    return root;
}

/* An integer field within [lo, hi]. */
static mr_status get_int(const cJSON *obj, const char *key, double lo, double hi, int64_t *out,
                         const char *path, const char *where) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) ||
        v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return mr_fail(MR_ERR_FORMAT, "%s: %s\"%s\" must be a whole number in [%g, %g]", path,
                       where, key, lo, hi);
    *out = (int64_t)v->valuedouble;
    return MR_OK;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static bool is_pred_json(const char *name) {
    size_t n = strlen(name), k = strlen("_pred.json");
    return n > k && !strcmp(name + n - k, "_pred.json");
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

mr_status mr_prediction_set_load(mr_prediction_set *s, const char *dir) {
    memset(s, 0, sizeof *s);
    DIR *d = opendir(dir);
    if (!d)
        return mr_fail(MR_ERR_IO, "%s: cannot read the prediction folder: %s", dir,
                       strerror(errno));
    char **files = NULL;
    int64_t n = 0;
    size_t cap = 0;
    mr_status st = MR_OK;
    for (struct dirent *e; st == MR_OK && (e = readdir(d));) {
        if (!is_pred_json(e->d_name)) continue;
        if (!mr_grow(&files, &cap, (size_t)n + 1, sizeof *files, 64)) {
            st = mr_fail(MR_ERR_NOMEM, "%s: out of memory listing it", dir);
            break;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!(files[n] = malloc(len))) {
            st = mr_fail(MR_ERR_NOMEM, "%s: out of memory listing it", dir);
            break;
        }
        snprintf(files[n++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (st == MR_OK && n == 0)
        st = mr_fail(MR_ERR_ARG, "%s: no *_pred.json files (write them with mrcnn predict)", dir);
    if (st == MR_OK) qsort(files, (size_t)n, sizeof *files, cmp_str);
    s->image_names = calloc((size_t)(n + 1), sizeof *s->image_names);
    s->paths = files;
    s->n = n;
    if (!s->image_names && st == MR_OK) st = mr_fail(MR_ERR_NOMEM, "%s: out of memory", dir);
    for (int64_t i = 0; i < n && st == MR_OK; i++) {
        cJSON *root = parse_file(files[i], &st);
        if (!root) break;
        const cJSON *image = cJSON_GetObjectItemCaseSensitive(root, "image");
        if (!cJSON_IsString(image) || !image->valuestring[0])
            st = mr_fail(MR_ERR_FORMAT, "%s: \"image\" must name the image file", files[i]);
        else if (!(s->image_names[i] = mr_strdup(base_name(image->valuestring))))
            st = mr_fail(MR_ERR_NOMEM, "%s: out of memory", files[i]);
        cJSON_Delete(root);
        for (int64_t j = 0; j < i && st == MR_OK; j++)
            if (!strcmp(s->image_names[j], s->image_names[i]))
                st = mr_fail(MR_ERR_FORMAT, "%s and %s both describe an image called %s", files[j],
                             files[i], s->image_names[i]);
    }
    if (st != MR_OK) mr_prediction_set_free(s);
    return st;
}

const char *mr_prediction_set_find(const mr_prediction_set *s, const char *image_name) {
    for (int64_t i = 0; i < s->n; i++)
        if (!strcmp(s->image_names[i], image_name)) return s->paths[i];
    return NULL;
}

void mr_prediction_set_free(mr_prediction_set *s) {
    for (int64_t i = 0; i < s->n; i++) {
        if (s->image_names) free(s->image_names[i]);
        if (s->paths) free(s->paths[i]);
    }
    free(s->image_names);
    free(s->paths);
    memset(s, 0, sizeof *s);
}

/* Rasterises a detection's "polygons" ([[[x, y], ...], ...]) into mask. */
static mr_status polygons_to_mask(const cJSON *polys, uint8_t *mask, int64_t w, int64_t h,
                                  const char *path, int64_t det) {
    if (!cJSON_IsArray(polys))
        return mr_fail(MR_ERR_FORMAT, "%s: detection %lld has neither \"rle\" nor \"polygons\"",
                       path, (long long)det);
    const cJSON *poly;
    int k = 0;
    cJSON_ArrayForEach(poly, polys) {
        int n = cJSON_GetArraySize(poly);
        if (!cJSON_IsArray(poly) || n > MAX_POLY_POINTS)
            return mr_fail(MR_ERR_FORMAT, "%s: detection %lld polygon %d must be a list of [x, y]",
                           path, (long long)det, k);
        double *xs = malloc(sizeof(double) * (size_t)(n + 1)),
               *ys = malloc(sizeof(double) * (size_t)(n + 1));
        mr_status st = xs && ys ? MR_OK : mr_fail(MR_ERR_NOMEM, "%s: out of memory", path);
        int i = 0;
        const cJSON *pt;
        cJSON_ArrayForEach(pt, poly) {
            if (st != MR_OK) break;
            const cJSON *x = cJSON_GetArrayItem(pt, 0), *y = cJSON_GetArrayItem(pt, 1);
            if (!cJSON_IsArray(pt) || cJSON_GetArraySize(pt) != 2 || !cJSON_IsNumber(x) ||
                !cJSON_IsNumber(y) || !isfinite(x->valuedouble) || !isfinite(y->valuedouble) ||
                fabs(x->valuedouble) > 1e7 || fabs(y->valuedouble) > 1e7) {
                st = mr_fail(MR_ERR_FORMAT, "%s: detection %lld polygon %d point %d must be [x, y]",
                             path, (long long)det, k, i);
                break;
            }
            xs[i] = x->valuedouble;
            ys[i++] = y->valuedouble;
        }
        if (st == MR_OK && i >= 3) mr_raster_polygon(mask, (int)w, (int)h, xs, ys, i, 1);
        free(xs);
        free(ys);
        MR_TRY(st);
        k++;
    }
    return MR_OK;
}

mr_status mr_prediction_file_load(const char *path, mr_instances *out) {
    memset(out, 0, sizeof *out);
    mr_status st = MR_OK;
    cJSON *root = parse_file(path, &st);
    if (!root) return st;
    int64_t w = 0, h = 0;
    const cJSON *dets = cJSON_GetObjectItemCaseSensitive(root, "detections");
    int64_t n = cJSON_GetArraySize(dets);
    if ((st = get_int(root, "width", 1, MAX_SIDE, &w, path, "")) != MR_OK ||
        (st = get_int(root, "height", 1, MAX_SIDE, &h, path, "")) != MR_OK)
        goto done;
    if (w * h > MAX_PIXELS) {
        st = mr_fail(MR_ERR_FORMAT, "%s: %lldx%lld is larger than any image mrcnn reads", path,
                     (long long)w, (long long)h);
        goto done;
    }
    if (!cJSON_IsArray(dets) || n > MAX_DETECTIONS) {
        st = mr_fail(MR_ERR_FORMAT, "%s: \"detections\" must be a list of at most %d", path,
                     MAX_DETECTIONS);
        goto done;
    }
    out->image_w = w;
    out->image_h = h;
    out->mask_w = w;
    out->mask_h = h;
    const size_t npix = (size_t)(w * h), nn = (size_t)(n ? n : 1);
    out->boxes = calloc(nn * 4, sizeof *out->boxes);
    out->class_ids = calloc(nn, sizeof *out->class_ids);
    out->scores = calloc(nn, sizeof *out->scores);
    out->masks = calloc(nn, npix);
    if (!out->boxes || !out->class_ids || !out->scores || !out->masks) {
        st = mr_fail(MR_ERR_NOMEM, "%s: out of memory for %lld detections at %lldx%lld", path,
                     (long long)n, (long long)w, (long long)h);
        goto done;
    }
    int64_t i = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, dets) {
        char where[64];
        snprintf(where, sizeof where, "detection %lld: ", (long long)i);
        const cJSON *score = cJSON_GetObjectItemCaseSensitive(d, "score");
        const cJSON *box = cJSON_GetObjectItemCaseSensitive(d, "box");
        if ((st = get_int(d, "class_id", 0, 1e6, &out->class_ids[i], path, where)) != MR_OK) break;
        if (!cJSON_IsNumber(score) || !(score->valuedouble >= 0.0 && score->valuedouble <= 1.0)) {
            st = mr_fail(MR_ERR_FORMAT, "%s: %s\"score\" must be a number in [0, 1]", path, where);
            break;
        }
        out->scores[i] = (float)score->valuedouble;
        if (!cJSON_IsArray(box) || cJSON_GetArraySize(box) != 4) {
            st = mr_fail(MR_ERR_FORMAT, "%s: %s\"box\" must be [y1, x1, y2, x2]", path, where);
            break;
        }
        for (int c = 0; c < 4; c++) {
            const cJSON *v = cJSON_GetArrayItem(box, c);
            if (!cJSON_IsNumber(v) || !(fabs(v->valuedouble) <= 4.0 * MAX_SIDE)) {
                st = mr_fail(MR_ERR_FORMAT, "%s: %s\"box\"[%d] must be a pixel coordinate", path,
                             where, c);
                break;
            }
            out->boxes[4 * i + c] = v->valuedouble;
        }
        if (st != MR_OK) break;
        uint8_t *mask = out->masks + (size_t)i * npix;
        const cJSON *rle = cJSON_GetObjectItemCaseSensitive(d, "rle");
        if (rle) {
            const cJSON *size = cJSON_GetObjectItemCaseSensitive(rle, "size");
            const cJSON *counts = cJSON_GetObjectItemCaseSensitive(rle, "counts");
            const cJSON *rh = cJSON_GetArrayItem(size, 0), *rw = cJSON_GetArrayItem(size, 1);
            if (!cJSON_IsString(counts) || !cJSON_IsArray(size) || cJSON_GetArraySize(size) != 2 ||
                !cJSON_IsNumber(rh) || !cJSON_IsNumber(rw) || rh->valuedouble != (double)h ||
                rw->valuedouble != (double)w) {
                st = mr_fail(MR_ERR_FORMAT,
                             "%s: %s\"rle\" must be {\"size\": [%lld, %lld], \"counts\": \"...\"}",
                             path, where, (long long)h, (long long)w);
                break;
            }
            if ((st = mr_rle_decode(counts->valuestring, (int)h, (int)w, mask)) != MR_OK) {
                char msg[512];
                snprintf(msg, sizeof msg, "%s", mr_last_error());
                st = mr_fail(MR_ERR_FORMAT, "%s: %s%s", path, where, msg);
                break;
            }
        } else if ((st = polygons_to_mask(cJSON_GetObjectItemCaseSensitive(d, "polygons"), mask, w,
                                          h, path, i)) != MR_OK) {
            break;
        }
        i++;
    }
    out->n = i;
done:
    cJSON_Delete(root);
    if (st != MR_OK) mr_instances_free(out);
    return st;
}

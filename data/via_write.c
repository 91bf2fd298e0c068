/* The VIA 2.x annotation JSON writer: a cJSON tree built image by image, printed once, written
 * to a temp file that is fsync'ed and renamed over the target so a crash never leaves half a
 * file where a loader will look. */
#include "via_write.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include "../core/file.h"

struct mr_via_writer {
    cJSON *root;
    cJSON *last_regions; /* "regions" list of the image added last */
};

mr_via_writer *mr_via_writer_new(void) {
    mr_via_writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->root = cJSON_CreateObject();
    if (!w->root) {
        free(w);
        return NULL;
    }
    return w;
}

void mr_via_writer_free(mr_via_writer *w) {
    if (!w) return;
    cJSON_Delete(w->root);
    free(w);
}

static mr_status nomem(void) {
    return mr_fail(MR_ERR_NOMEM, "out of memory while building VIA JSON");
}

mr_status mr_via_writer_add_image(mr_via_writer *w, const char *filename, int64_t size,
                                  const char *label) {
    char key[4352];
    int n = snprintf(key, sizeof key, "%s%lld", filename, (long long)size);
    if (n < 0 || (size_t)n >= sizeof key)
        return mr_fail(MR_ERR_ARG, "VIA image name too long: %.80s...", filename);
    if (cJSON_GetObjectItemCaseSensitive(w->root, key))
        return mr_fail(MR_ERR_ARG, "VIA key '%s' added twice (same file name and size)", key);
    cJSON *img = cJSON_CreateObject();
    if (!img || !cJSON_AddItemToObject(w->root, key, img)) {
        cJSON_Delete(img);
        return nomem();
    }
    cJSON *attrs;
    if (!cJSON_AddStringToObject(img, "filename", filename) ||
        !cJSON_AddNumberToObject(img, "size", (double)size) ||
        !(w->last_regions = cJSON_AddArrayToObject(img, "regions")) ||
        !(attrs = cJSON_AddObjectToObject(img, "file_attributes")))
        return nomem();
    if (label && !cJSON_AddStringToObject(attrs, "label", label)) return nomem();
    return MR_OK;
}

/* Adds a polygon region with its class to the last image and returns its shape_attributes,
 * which still lack the point arrays; NULL with the status in *st on failure. */
static cJSON *new_polygon(mr_via_writer *w, int n_points, const char *class_name, mr_status *st) {
    *st = MR_OK;
    if (!w->last_regions) {
        *st = mr_fail(MR_ERR_ARG, "VIA polygon added before any image");
        return NULL;
    }
    if (n_points < 3) {
        *st = mr_fail(MR_ERR_ARG, "VIA polygon needs 3 points, got %d", n_points);
        return NULL;
    }
    cJSON *region = cJSON_CreateObject();
    if (!region || !cJSON_AddItemToArray(w->last_regions, region)) {
        cJSON_Delete(region);
        *st = nomem();
        return NULL;
    }
    cJSON *shape = cJSON_AddObjectToObject(region, "shape_attributes");
    cJSON *attrs = cJSON_AddObjectToObject(region, "region_attributes");
    if (!shape || !attrs || !cJSON_AddStringToObject(shape, "name", "polygon") ||
        !cJSON_AddStringToObject(attrs, "class", class_name)) {
        *st = nomem();
        return NULL;
    }
    return shape;
}

mr_status mr_via_writer_add_polygon(mr_via_writer *w, const int *xs, const int *ys, int n_points,
                                    const char *class_name) {
    mr_status st;
    cJSON *shape = new_polygon(w, n_points, class_name, &st);
    if (!shape) return st;
    if (!cJSON_AddItemToObject(shape, "all_points_x", cJSON_CreateIntArray(xs, n_points)) ||
        !cJSON_AddItemToObject(shape, "all_points_y", cJSON_CreateIntArray(ys, n_points)))
        return nomem();
    return MR_OK;
}

mr_status mr_via_writer_add_polygon_d(mr_via_writer *w, const double *xs, const double *ys,
                                      int n_points, const char *class_name) {
    mr_status st;
    cJSON *shape = new_polygon(w, n_points, class_name, &st);
    if (!shape) return st;
    if (!cJSON_AddItemToObject(shape, "all_points_x", cJSON_CreateDoubleArray(xs, n_points)) ||
        !cJSON_AddItemToObject(shape, "all_points_y", cJSON_CreateDoubleArray(ys, n_points)))
        return nomem();
    return MR_OK;
}

/* Writes text + '\n' to path through a temp file in the same folder: fsync, then rename. */
static mr_status write_atomic(const char *text, const char *path) {
    size_t len = strlen(text);
    char *with_newline = malloc(len + 2);
    if (!with_newline) return nomem();
    memcpy(with_newline, text, len);
    memcpy(with_newline + len, "\n", 2);
    mr_status st = mr_write_file_atomic(path, with_newline, len + 1, 0644);
    free(with_newline);
    return st;
}

mr_status mr_via_writer_save(const mr_via_writer *w, const char *path) {
    char *text = cJSON_Print(w->root);
    if (!text) return nomem();
    mr_status st = write_atomic(text, path);
    free(text);
    return st;
}

mr_status mr_via_writer_set_region_attr(mr_via_writer *w, const char *key, const char *value) {
    cJSON *region = w->last_regions ? cJSON_GetArrayItem(w->last_regions,
                                                         cJSON_GetArraySize(w->last_regions) - 1)
                                    : NULL;
    if (!region) return mr_fail(MR_ERR_ARG, "VIA region attribute '%s' set before any region", key);
    cJSON *attrs = cJSON_GetObjectItemCaseSensitive(region, "region_attributes");
    if (!attrs) return mr_fail(MR_ERR_ARG, "VIA region without region_attributes");
    cJSON_DeleteItemFromObjectCaseSensitive(attrs, key);
    if (!cJSON_AddStringToObject(attrs, key, value)) return nomem();
    return MR_OK;
}

/* VIA 2.0.10's default settings, with regions labelled and coloured by their class. */
static cJSON *project_settings(const mr_via_project_options *opt) {
    cJSON *s = cJSON_CreateObject(), *ui, *grid, *image, *core, *project;
    if (!s) return NULL;
    const char *fp = opt->default_filepath ? opt->default_filepath : "";
    bool ok =
        (ui = cJSON_AddObjectToObject(s, "ui")) &&
        cJSON_AddNumberToObject(ui, "annotation_editor_height", 25) &&
        cJSON_AddNumberToObject(ui, "annotation_editor_fontsize", 0.8) &&
        cJSON_AddNumberToObject(ui, "leftsidebar_width", 18) &&
        (grid = cJSON_AddObjectToObject(ui, "image_grid")) &&
        cJSON_AddNumberToObject(grid, "img_height", 80) &&
        cJSON_AddStringToObject(grid, "rshape_fill", "none") &&
        cJSON_AddNumberToObject(grid, "rshape_fill_opacity", 0.3) &&
        cJSON_AddStringToObject(grid, "rshape_stroke", "yellow") &&
        cJSON_AddNumberToObject(grid, "rshape_stroke_width", 2) &&
        cJSON_AddTrueToObject(grid, "show_region_shape") &&
        cJSON_AddStringToObject(grid, "show_image_policy", "all") &&
        (image = cJSON_AddObjectToObject(ui, "image")) &&
        cJSON_AddStringToObject(image, "region_label", "class") &&
        cJSON_AddStringToObject(image, "region_color", "class") &&
        cJSON_AddStringToObject(image, "region_label_font", "10px Sans") &&
        cJSON_AddStringToObject(image, "on_image_annotation_editor_placement", "NEAR_REGION") &&
        (core = cJSON_AddObjectToObject(s, "core")) &&
        cJSON_AddNumberToObject(core, "buffer_size", 18) &&
        cJSON_AddObjectToObject(core, "filepath") &&
        cJSON_AddStringToObject(core, "default_filepath", fp) &&
        (project = cJSON_AddObjectToObject(s, "project")) &&
        cJSON_AddStringToObject(project, "name", opt->name ? opt->name : "mrcnn");
    if (!ok) {
        cJSON_Delete(s);
        return NULL;
    }
    return s;
}

/* region: "class" as a dropdown of the class names, every other key used as text; file: {}. */
static cJSON *project_attributes(const mr_via_writer *w, const mr_via_project_options *opt) {
    cJSON *a = cJSON_CreateObject(), *region, *cls, *options;
    if (!a) return NULL;
    bool ok = (region = cJSON_AddObjectToObject(a, "region")) &&
              (cls = cJSON_AddObjectToObject(region, "class")) &&
              cJSON_AddStringToObject(cls, "type", "dropdown") &&
              cJSON_AddStringToObject(cls, "description", "") &&
              (options = cJSON_AddObjectToObject(cls, "options")) &&
              cJSON_AddObjectToObject(cls, "default_options") && cJSON_AddObjectToObject(a, "file");
    for (int i = 0; ok && i < opt->n_class_names; i++) {
        const char *name = opt->class_names[i];
        if ((i == 0 && !strcmp(name, "BG")) || cJSON_GetObjectItemCaseSensitive(options, name))
            continue;
        /* An empty description makes VIA show the option id, which is the class name. */
        ok = cJSON_AddStringToObject(options, name, "") != NULL;
    }
    for (const cJSON *img = w->root->child; ok && img; img = img->next) {
        const cJSON *regions = cJSON_GetObjectItemCaseSensitive(img, "regions");
        for (const cJSON *r = regions ? regions->child : NULL; ok && r; r = r->next) {
            const cJSON *ra = cJSON_GetObjectItemCaseSensitive(r, "region_attributes");
            for (const cJSON *kv = ra ? ra->child : NULL; ok && kv; kv = kv->next) {
                if (cJSON_GetObjectItemCaseSensitive(region, kv->string)) continue;
                cJSON *t = cJSON_AddObjectToObject(region, kv->string);
                ok = t && cJSON_AddStringToObject(t, "type", "text") &&
                     cJSON_AddStringToObject(t, "description", "") &&
                     cJSON_AddStringToObject(t, "default_value", "");
            }
        }
    }
    if (!ok) {
        cJSON_Delete(a);
        return NULL;
    }
    return a;
}

mr_status mr_via_writer_save_project(const mr_via_writer *w, const char *path,
                                     const mr_via_project_options *opt) {
    static const mr_via_project_options none = {0};
    if (!opt) opt = &none;
    cJSON *root = cJSON_CreateObject(), *ids = NULL;
    cJSON *settings = project_settings(opt), *attrs = project_attributes(w, opt);
    cJSON *meta = cJSON_Duplicate(w->root, true);
    bool ok =
        root && settings && attrs && meta && cJSON_AddItemToObject(root, "_via_settings", settings);
    if (ok) settings = NULL;
    ok = ok && cJSON_AddItemToObject(root, "_via_img_metadata", meta);
    if (ok) meta = NULL;
    ok = ok && cJSON_AddItemToObject(root, "_via_attributes", attrs);
    if (ok) attrs = NULL;
    ok = ok && cJSON_AddStringToObject(root, "_via_data_format_version", "2.0.10") &&
         (ids = cJSON_AddArrayToObject(root, "_via_image_id_list"));
    for (const cJSON *img = w->root->child; ok && img; img = img->next) {
        cJSON *id = cJSON_CreateString(img->string);
        ok = id && cJSON_AddItemToArray(ids, id);
        if (!ok) cJSON_Delete(id);
    }
    cJSON_Delete(settings);
    cJSON_Delete(attrs);
    cJSON_Delete(meta);
    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return nomem();
    mr_status st = write_atomic(text, path);
    free(text);
    return st;
}

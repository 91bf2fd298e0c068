/* COCO instance JSON: images[] (id, file_name, width, height), categories[] (id -> name, which
 * is matched against the class names) and annotations[] with polygon segmentation (one ring per
 * list; an object's rings are filled as a union). RLE masks and crowd regions are skipped. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "via_internal.h"

static const cJSON *member(const cJSON *obj, const char *key) {
    return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

/* A COCO size: absent or a non-negative integer. */
static mr_status image_dim(mr_ann_loader *ld, const cJSON *img, const char *field,
                           const char *where, int *v) {
    const cJSON *j = member(img, field);
    *v = 0;
    if (!j) return MR_OK;
    if (!cJSON_IsNumber(j))
        return mr_ann_error(ld, MR_ERR_FORMAT, "%s: field '%s': expected a number, found %s", where,
                            field, mr_via_type_name(j));
    if (!(j->valuedouble >= 0.0) || j->valuedouble > 1e6)
        return mr_ann_error(ld, MR_ERR_FORMAT,
                            "%s: field '%s' is %g; an image size must be between 0 and 1e6 px",
                            where, field, j->valuedouble);
    *v = (int)j->valuedouble;
    return MR_OK;
}

static mr_status load_images(mr_ann_loader *ld, const cJSON *images, mr_strmap *ids) {
    int64_t i = 0;
    for (const cJSON *img = images->child; img; img = img->next, i++) {
        char where[400], idbuf[64], qi[96];
        snprintf(where, sizeof where, "%s: images[%lld]", ld->file, (long long)i);
        if (!cJSON_IsObject(img)) {
            mr_ann_error(ld, MR_ERR_FORMAT,
                         "%s: expected an object {id, file_name, width, height}, "
                         "found %s",
                         where, mr_via_type_name(img));
            continue;
        }
        const cJSON *idj = member(img, "id"), *fn = member(img, "file_name");
        const char *id = mr_via_id_text(idj, idbuf, sizeof idbuf);
        if (!id) {
            mr_ann_error(ld, MR_ERR_FORMAT, "%s: field 'id': expected a number, found %s", where,
                         mr_via_type_name(idj));
            continue;
        }
        snprintf(where, sizeof where, "%s: image %s", ld->file, mr_ann_quote(qi, sizeof qi, id));
        if (!cJSON_IsString(fn) || !fn->valuestring[0]) {
            mr_ann_error(ld, MR_ERR_FORMAT, "%s: field 'file_name': expected a file name, found %s",
                         where, cJSON_IsString(fn) ? "an empty string" : mr_via_type_name(fn));
            continue;
        }
        if (mr_strmap_get(ids, id) >= 0) {
            mr_ann_error(ld, MR_ERR_FORMAT, "%s: image id %s is used twice", where, qi);
            continue;
        }
        int w = 0, h = 0;
        if (image_dim(ld, img, "width", where, &w) != MR_OK ||
            image_dim(ld, img, "height", where, &h) != MR_OK)
            continue;
        int64_t rec;
        MR_TRY(mr_ann_add_record(ld, id, fn->valuestring, NULL, NULL, w, h, &rec));
        MR_TRY(mr_strmap_put(ids, id, rec));
    }
    return MR_OK;
}

/* Polygon segmentation [[x0,y0,x1,y1,...], ...] as a multi-ring shape. */
static mr_status polygon_rings(mr_ann_loader *ld, const cJSON *seg, const char *where,
                               mr_shape *s) {
    memset(s, 0, sizeof *s);
    int64_t n_vals = 0;
    int n_rings = 0;
    int64_t k = 0;
    for (const cJSON *ring = seg->child; ring; ring = ring->next, k++) {
        if (!cJSON_IsArray(ring))
            return mr_ann_region_error(ld, MR_ERR_FORMAT,
                                       "%s: field 'segmentation' item %lld: expected a list of "
                                       "numbers [x0, y0, x1, y1, ...], found %s",
                                       where, (long long)k, mr_via_type_name(ring));
        int64_t m = 0;
        for (const cJSON *c = ring->child; c; c = c->next) m++;
        if (m % 2)
            return mr_ann_region_error(ld, MR_ERR_FORMAT,
                                       "%s: field 'segmentation' item %lld has %lld numbers; x,y "
                                       "pairs need an even count",
                                       where, (long long)k, (long long)m);
        n_vals += m;
        n_rings++;
    }
    int64_t np = n_vals / 2;
    s->kind = MR_SHAPE_POLYGON;
    s->xs = malloc(sizeof(double) * (size_t)(np ? np : 1));
    s->ys = malloc(sizeof(double) * (size_t)(np ? np : 1));
    s->ring_ends = malloc(sizeof(int64_t) * (size_t)(n_rings ? n_rings : 1));
    if (!s->xs || !s->ys || !s->ring_ends) {
        mr_shape_free(s);
        return mr_fail(MR_ERR_NOMEM, "out of memory for a %lld-point polygon", (long long)np);
    }
    int64_t p = 0;
    k = 0;
    for (const cJSON *ring = seg->child; ring; ring = ring->next, k++) {
        int64_t j = 0;
        for (const cJSON *c = ring->child; c; c = c->next, j++) {
            char field[80];
            snprintf(field, sizeof field, "segmentation[%lld][%lld]", (long long)k, (long long)j);
            if (!cJSON_IsNumber(c)) {
                mr_shape_free(s);
                return mr_ann_region_error(ld, MR_ERR_FORMAT,
                                           "%s: field '%s': expected a number, found %s", where,
                                           field, mr_via_type_name(c));
            }
            mr_status st = mr_ann_check_coord(ld, where, field, c->valuedouble);
            if (st != MR_OK) {
                mr_shape_free(s);
                return st;
            }
            if (j % 2 == 0)
                s->xs[p] = c->valuedouble;
            else
                s->ys[p++] = c->valuedouble;
        }
        s->ring_ends[s->n_rings++] = p;
    }
    s->n_points = p;
    return MR_OK;
}

static mr_status bbox_rect(mr_ann_loader *ld, const cJSON *bbox, const char *where, mr_shape *s) {
    memset(s, 0, sizeof *s);
    double v[4];
    int n = 0;
    for (const cJSON *c = cJSON_IsArray(bbox) ? bbox->child : NULL; c; c = c->next) {
        if (!cJSON_IsNumber(c) || n == 4) {
            n = 5;
            break;
        }
        v[n++] = c->valuedouble;
    }
    if (n != 4)
        return mr_ann_region_error(ld, MR_ERR_FORMAT,
                                   "%s: no segmentation, and field 'bbox' is not [x, y, width, "
                                   "height] (found %s)",
                                   where, mr_via_type_name(bbox));
    static const char *const names[4] = {"bbox x", "bbox y", "bbox width", "bbox height"};
    for (int i = 0; i < 4; i++) MR_TRY(mr_ann_check_coord(ld, where, names[i], v[i]));
    if (v[2] < 0.0 || v[3] < 0.0)
        return mr_ann_region_error(ld, MR_ERR_FORMAT, "%s: field 'bbox' has a negative size",
                                   where);
    s->kind = MR_SHAPE_RECT;
    s->x = v[0];
    s->y = v[1];
    s->w = v[2];
    s->h = v[3];
    return MR_OK;
}

static mr_status soft(mr_status st) {
    return st == MR_ERR_NOMEM ? st : MR_OK;
}

mr_status mr_ann_load_coco(mr_ann_loader *ld, const cJSON *root) {
    ld->out->format = MR_ANN_COCO;
    const cJSON *images = member(root, "images"), *anns = member(root, "annotations");
    const cJSON *cats = member(root, "categories");
    if (!cJSON_IsArray(images))
        return mr_fail(MR_ERR_FORMAT, "%s: COCO field 'images': expected an array, found %s",
                       ld->file, mr_via_type_name(images));
    if (!cJSON_IsArray(anns))
        return mr_fail(MR_ERR_FORMAT, "%s: COCO field 'annotations': expected an array, found %s",
                       ld->file, mr_via_type_name(anns));
    if (cats && !cJSON_IsArray(cats))
        return mr_fail(MR_ERR_FORMAT, "%s: COCO field 'categories': expected an array, found %s",
                       ld->file, mr_via_type_name(cats));
    mr_strmap ids = {0}, cat_ids = {0};
    const char **cat_names = NULL;
    int64_t n_cats = 0;
    for (const cJSON *c = cats ? cats->child : NULL; c; c = c->next) n_cats++;
    cat_names = calloc((size_t)(n_cats ? n_cats : 1), sizeof *cat_names);
    mr_status st = cat_names ? MR_OK : mr_fail(MR_ERR_NOMEM, "out of memory");
    int64_t i = 0;
    for (const cJSON *c = cats ? cats->child : NULL; c && st == MR_OK; c = c->next, i++) {
        char idbuf[64];
        const char *id = mr_via_id_text(member(c, "id"), idbuf, sizeof idbuf);
        const cJSON *name = member(c, "name");
        if (!id || !cJSON_IsString(name)) {
            mr_ann_error(ld, MR_ERR_FORMAT,
                         "%s: categories[%lld]: expected {id: number, name: string}, found id %s "
                         "and name %s",
                         ld->file, (long long)i, mr_via_type_name(member(c, "id")),
                         mr_via_type_name(name));
            continue;
        }
        cat_names[i] = name->valuestring;
        st = mr_strmap_put(&cat_ids, id, i);
    }
    if (st == MR_OK) st = load_images(ld, images, &ids);
    mr_report *rep = &ld->out->report;
    i = 0;
    for (const cJSON *a = anns->child; a && st == MR_OK; a = a->next, i++) {
        char where[600], idbuf[64], imbuf[64], qi[96], qa[96];
        rep->n_regions++;
        const char *aid = mr_via_id_text(member(a, "id"), idbuf, sizeof idbuf);
        const char *img = mr_via_id_text(member(a, "image_id"), imbuf, sizeof imbuf);
        snprintf(where, sizeof where, "%s: annotation %s (annotations[%lld], image %s)", ld->file,
                 aid ? mr_ann_quote(qa, sizeof qa, aid) : "?", (long long)i,
                 img ? mr_ann_quote(qi, sizeof qi, img) : "?");
        if (!cJSON_IsObject(a)) {
            mr_ann_region_error(ld, MR_ERR_FORMAT, "%s: expected an object, found %s", where,
                                mr_via_type_name(a));
            continue;
        }
        int64_t rec = img ? mr_strmap_get(&ids, img) : -1;
        if (rec < 0) {
            mr_ann_region_error(ld, MR_ERR_FORMAT,
                                "%s: field 'image_id' %s does not match any entry of 'images'",
                                where, img ? "value" : mr_via_type_name(member(a, "image_id")));
            continue;
        }
        mr_ann_note_region(ld, rec);
        const cJSON *crowd = member(a, "iscrowd");
        if (cJSON_IsNumber(crowd) && crowd->valuedouble != 0) {
            rep->n_skipped_other++;
            mr_ann_warn(ld, "%s: a crowd region (iscrowd 1); skipped", where);
            continue;
        }
        char cbuf[64];
        const cJSON *catj = member(a, "category_id");
        const char *cat = mr_via_id_text(catj, cbuf, sizeof cbuf);
        int64_t ci = cat ? mr_strmap_get(&cat_ids, cat) : -1;
        if (ci < 0) {
            mr_ann_region_error(ld, MR_ERR_FORMAT,
                                "%s: field 'category_id' %s%s does not match any entry of "
                                "'categories'",
                                where, cat ? "value " : "is ",
                                cat ? mr_ann_quote(qa, sizeof qa, cat) : mr_via_type_name(catj));
            continue;
        }
        const cJSON *seg = member(a, "segmentation");
        mr_shape shape;
        mr_status sst;
        if (cJSON_IsObject(seg)) {
            rep->n_skipped_other++;
            mr_ann_warn(ld, "%s: RLE segmentation is not supported; skipped", where);
            continue;
        } else if (cJSON_IsArray(seg) && seg->child) {
            sst = polygon_rings(ld, seg, where, &shape);
        } else if (seg && !cJSON_IsArray(seg) && !cJSON_IsNull(seg)) {
            mr_ann_region_error(ld, MR_ERR_FORMAT,
                                "%s: field 'segmentation': expected a list of polygons or an RLE "
                                "object, found %s",
                                where, mr_via_type_name(seg));
            continue;
        } else {
            sst = bbox_rect(ld, member(a, "bbox"), where, &shape);
            if (sst == MR_OK)
                mr_ann_warn(ld, "%s: no segmentation; using the bbox as a rect", where);
        }
        if (sst != MR_OK) {
            st = soft(sst);
            continue;
        }
        int class_id = 1;
        const char *name = cat_names[ci];
        if (!ld->out->single_class) {
            class_id = mr_ann_class_id(ld, name);
            if (class_id < 0) {
                mr_shape_free(&shape);
                st = soft(mr_ann_unknown_class(ld, where, "category", name, cat));
                continue;
            }
        }
        st = mr_ann_add_instance(ld, rec, &shape, class_id, name, i, where);
    }
    mr_strmap_free(&ids);
    mr_strmap_free(&cat_ids);
    free(cat_names);
    return st;
}

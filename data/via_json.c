/* VIA JSON readers: 1.x and 2.x annotation exports, the 2.x project file and the 3.x project,
 * with attribute definitions (option id -> label) and the region parser the CSV reader shares.
 * Which format a file is, annotations.c decides (from mr_via_json_facts). */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "via_internal.h"

/* ---- JSON helpers -------------------------------------------------------------------------- */

const char *mr_via_type_name(const cJSON *j) {
    if (!j) return "nothing";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsBool(j)) return "true/false";
    if (cJSON_IsNull(j)) return "null";
    return "an unknown value";
}

/* A short view of a wrong value for messages: strings quoted, numbers printed. */
static const char *jpreview(const cJSON *j, char *buf, size_t n) {
    char q[64];
    if (cJSON_IsString(j))
        snprintf(buf, n, " (\"%s\")", mr_ann_quote(q, sizeof q, j->valuestring));
    else if (cJSON_IsNumber(j))
        snprintf(buf, n, " (%g)", j->valuedouble);
    else
        buf[0] = '\0';
    return buf;
}

/* Object member by exact key; VIA keys are case-sensitive. Linear: only for small objects. */
static const cJSON *member(const cJSON *obj, const char *key) {
    return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

/* Object member ignoring case ("Class" and "class" both name the class attribute). */
static const cJSON *member_nocase(const cJSON *obj, const char *key) {
    if (!cJSON_IsObject(obj)) return NULL;
    const cJSON *exact = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (exact) return exact;
    for (const cJSON *c = obj->child; c; c = c->next)
        if (c->string && !mr_ann_strcasecmp(c->string, key)) return c;
    return NULL;
}

const char *mr_via_id_text(const cJSON *j, char *buf, size_t n) {
    if (cJSON_IsString(j)) return j->valuestring;
    if (cJSON_IsNumber(j)) {
        mr_ann_number_text(j->valuedouble, buf, n);
        return buf;
    }
    return NULL;
}

mr_status mr_via_parse(mr_ann_loader *ld, const char *what, const char *text, size_t len,
                       cJSON **out, bool fatal) {
    *out = NULL;
    size_t skip = len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? 3 : 0;
    /* cJSON would keep a NUL inside a string and silently cut the text there. */
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int64_t line, col;
        char qw[300];
        mr_text_pos(text, len, (size_t)(nul - text), &line, &col);
        mr_ann_quote(qw, sizeof qw, what);
        if (fatal)
            return mr_fail(MR_ERR_FORMAT,
                           "%s:%lld:%lld: a NUL byte at line %lld, column %lld; "
                           "JSON is text (a binary or corrupt file?)",
                           qw, (long long)line, (long long)col, (long long)line, (long long)col);
        return mr_ann_error(ld, MR_ERR_FORMAT, "%s: a NUL byte in the JSON text", qw);
    }
    const char *end = NULL;
    /* The length includes the terminating NUL: cJSON then checks for trailing garbage, and a
     * NUL byte inside the file stops the parse right there with a position. */
    cJSON *root = cJSON_ParseWithLengthOpts(text + skip, len - skip + 1, &end, 1);
    if (root) {
        *out = root;
        return MR_OK;
    }
    if (!end || end < text + skip) end = text + skip;
    size_t off = (size_t)(end - text);
    if (off > len) off = len;
    size_t b = off;
    while (b < len && isspace((unsigned char)text[b])) b++;
    int64_t line, col;
    mr_text_pos(text, len, off, &line, &col);
    char near[48], qw[300];
    char snippet[32];
    size_t k = 0;
    for (; k < sizeof snippet - 1 && off + k < len && text[off + k] != '\n'; k++)
        snippet[k] = text[off + k];
    snippet[k] = '\0';
    mr_ann_quote(near, sizeof near, snippet);
    const char *hint = "";
    if (b >= len)
        hint = "; the file ends too early (truncated?)";
    else if (text[b] == 'N' || text[b] == 'I' || (text[b] == '-' && text[b + 1] == 'I'))
        hint = "; NaN and Infinity are not JSON numbers";
    else if (text[b] == '\'')
        hint = "; JSON strings use double quotes";
    mr_ann_quote(qw, sizeof qw, what);
    if (fatal)
        return mr_fail(MR_ERR_FORMAT,
                       "%s:%lld:%lld: malformed JSON at line %lld, column %lld near "
                       "'%s'%s",
                       qw, (long long)line, (long long)col, (long long)line, (long long)col, near,
                       hint);
    return mr_ann_error(ld, MR_ERR_FORMAT, "%s: malformed JSON at character %lld near '%s'%s", qw,
                        (long long)(off - skip + 1), near, hint);
}

/* ---- attribute definitions ----------------------------------------------------------------- */

void mr_via_free_attributes(mr_ann_loader *ld) {
    cJSON_Delete(ld->attr_doc);
    ld->attr_doc = NULL;
    ld->region_defs = ld->file_defs = NULL;
}

/* {"region": {...}, "file": {...}} (or a project holding one under _via_attributes). */
static mr_status use_attribute_defs(mr_ann_loader *ld, const cJSON *defs, const char *what) {
    char qw[300];
    if (cJSON_IsObject(defs) && member(defs, "_via_attributes"))
        defs = member(defs, "_via_attributes");
    if (!cJSON_IsObject(defs))
        return mr_fail(MR_ERR_FORMAT,
                       "%s: attribute definitions must be an object "
                       "{\"region\": {...}, \"file\": {...}}, found %s",
                       mr_ann_quote(qw, sizeof qw, what), mr_via_type_name(defs));
    const cJSON *region = member(defs, "region"), *file = member(defs, "file");
    if ((region && !cJSON_IsObject(region)) || (file && !cJSON_IsObject(file)))
        return mr_fail(MR_ERR_FORMAT,
                       "%s: field '%s' of the attribute definitions must be an "
                       "object, found %s",
                       mr_ann_quote(qw, sizeof qw, what),
                       region && !cJSON_IsObject(region) ? "region" : "file",
                       mr_via_type_name(region && !cJSON_IsObject(region) ? region : file));
    ld->region_defs = region;
    ld->file_defs = file;
    return MR_OK;
}

static mr_status load_attr_file(mr_ann_loader *ld, const char *path) {
    char *text = NULL;
    size_t len = 0;
    MR_TRY(mr_read_file(path, "attributes file", 0, &text, &len));
    cJSON *doc = NULL;
    mr_status st = mr_via_parse(ld, path, text, len, &doc, true);
    free(text);
    if (st != MR_OK) return st;
    st = use_attribute_defs(ld, doc, path);
    if (st != MR_OK) {
        cJSON_Delete(doc);
        return st;
    }
    cJSON_Delete(ld->attr_doc);
    ld->attr_doc = doc;
    free(ld->out->attributes_path);
    ld->out->attributes_path = mr_strdup(path);
    return ld->out->attributes_path ? MR_OK : mr_fail(MR_ERR_NOMEM, "out of memory");
}

mr_status mr_via_load_attributes(mr_ann_loader *ld, bool look_beside) {
    if (ld->opt->attributes_path && ld->opt->attributes_path[0])
        return load_attr_file(ld, ld->opt->attributes_path);
    if (!look_beside) return MR_OK;
    /* VIA exports attribute definitions to their own file; one sitting next to the annotations
     * is almost surely theirs. Two are ambiguous: use none rather than guess. */
    DIR *d = opendir(ld->ann_dir);
    if (!d) return MR_OK;
    char *found = NULL;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        const char *nm = e->d_name;
        size_t l = strlen(nm);
        if (nm[0] == '.' || !strstr(nm, "attributes") || l < 5 ||
            mr_ann_strcasecmp(nm + l - 5, ".json"))
            continue;
        n++;
        if (n == 1) {
            size_t ld_len = strlen(ld->ann_dir);
            found = malloc(ld_len + l + 2);
            if (found) snprintf(found, ld_len + l + 2, "%s/%s", ld->ann_dir, nm);
        }
    }
    closedir(d);
    mr_status st = MR_OK;
    if (n == 1 && found) {
        st = load_attr_file(ld, found);
        if (st != MR_OK) {
            /* Not asked for by the user: a broken one is a warning, not a failure. */
            mr_ann_warn(ld, "ignoring attribute definitions: %s", mr_last_error());
            st = MR_OK;
        }
    } else if (n > 1) {
        mr_ann_warn(ld,
                    "%s: %d *attributes*.json files beside the annotations; using none (give "
                    "one as the attributes file to resolve option ids)",
                    ld->ann_dir, n);
    }
    free(found);
    return st;
}

/* ---- attribute values and classes ---------------------------------------------------------- */

typedef enum { VAL_ABSENT, VAL_OK, VAL_BADTYPE } val_kind;

/* The text of an attribute value: strings, numbers printed, a checkbox object's first checked
 * option. Then, when the definition lists it as an option id, its label. Caller frees. */
static val_kind attr_value(const cJSON *val, const cJSON *def_options, char **label,
                           char **option) {
    char num[64];
    const char *raw = NULL;
    *label = *option = NULL;
    if (cJSON_IsString(val)) {
        raw = val->valuestring;
    } else if (cJSON_IsNumber(val)) {
        mr_ann_number_text(val->valuedouble, num, sizeof num);
        raw = num;
    } else if (cJSON_IsObject(val)) {
        for (const cJSON *c = val->child; c && !raw; c = c->next)
            if (cJSON_IsTrue(c) && c->string) raw = c->string;
        if (!raw) return VAL_ABSENT;
    } else if (!val || cJSON_IsNull(val)) {
        return VAL_ABSENT;
    } else {
        return VAL_BADTYPE;
    }
    const char *s = raw;
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return VAL_ABSENT;
    const cJSON *opt_label =
        cJSON_IsObject(def_options) ? cJSON_GetObjectItemCaseSensitive(def_options, raw) : NULL;
    if (cJSON_IsString(opt_label) && opt_label->valuestring[0]) {
        *label = mr_strdup(opt_label->valuestring);
        *option = mr_strdup(raw);
    } else {
        *label = mr_strdup(raw);
    }
    return VAL_OK;
}

/* Resolves a label to a class. Single-class mode takes anything. On an unknown class the error
 * is reported and the region rejected. `label` may be NULL (no class attribute found). */
static mr_status resolve_class(mr_ann_loader *ld, const char *where, const char *attr,
                               const char *label, const char *option, int *class_id) {
    if (ld->out->single_class) {
        *class_id = 1;
        return MR_OK;
    }
    if (!label) return mr_ann_missing_class(ld, where);
    int id = mr_ann_class_id(ld, label);
    /* An option id may itself be the class name the user listed ("bird" rather than "Bird"). */
    if (id < 0 && option) id = mr_ann_class_id(ld, option);
    if (id < 0) return mr_ann_unknown_class(ld, where, attr, label, option);
    *class_id = id;
    return MR_OK;
}

/* VIA 1/2: the class of a region from its region_attributes. */
static mr_status region_class(mr_ann_loader *ld, const cJSON *rattrs, const char *where,
                              int *class_id, char **class_name) {
    *class_name = NULL;
    char *label = NULL, *option = NULL;
    const char *attr = NULL;
    for (int i = 0; i < ld->n_class_attrs && !label; i++) {
        const cJSON *v = member_nocase(rattrs, ld->class_attrs[i]);
        if (!v) continue;
        const cJSON *def = member_nocase(ld->region_defs, v->string);
        val_kind k = attr_value(v, member(def, "options"), &label, &option);
        if (k == VAL_BADTYPE && !ld->out->single_class) {
            char qa[96];
            return mr_ann_region_error(ld, MR_ERR_FORMAT,
                                       "%s: field 'region_attributes.%s': expected text, a number "
                                       "or a checkbox object, found %s",
                                       where, mr_ann_quote(qa, sizeof qa, v->string),
                                       mr_via_type_name(v));
        }
        if (k == VAL_OK && !label) return mr_fail(MR_ERR_NOMEM, "out of memory");
        if (label) attr = v->string;
    }
    mr_status st =
        resolve_class(ld, where, attr ? attr : ld->class_attrs[0], label, option, class_id);
    free(option);
    if (st != MR_OK) {
        free(label);
        return st;
    }
    *class_name = label;
    return MR_OK;
}

mr_status mr_via_file_attributes(mr_ann_loader *ld, int64_t rec, const cJSON *fattrs,
                                 const char *where) {
    if (!fattrs || cJSON_IsNull(fattrs)) return MR_OK;
    if (!cJSON_IsObject(fattrs)) {
        mr_ann_error(ld, MR_ERR_FORMAT, "%s: field 'file_attributes': expected an object, found %s",
                     where, mr_via_type_name(fattrs));
        return MR_OK;
    }
    for (int i = 0; i < ld->n_class_attrs; i++) {
        const cJSON *v = member_nocase(fattrs, ld->class_attrs[i]);
        if (!v) continue;
        char *label = NULL, *option = NULL;
        const cJSON *def = member_nocase(ld->file_defs, v->string);
        val_kind k = attr_value(v, member(def, "options"), &label, &option);
        free(option);
        if (k != VAL_OK) continue;
        if (!label) return mr_fail(MR_ERR_NOMEM, "out of memory");
        mr_status st = mr_ann_set_image_label(ld, rec, label);
        free(label);
        return st;
    }
    return MR_OK;
}

/* ---- VIA 1.x / 2.x regions ----------------------------------------------------------------- */

/* A required number field of shape_attributes; errors reject the region. */
static mr_status shape_num(mr_ann_loader *ld, const cJSON *sa, const char *field, const char *where,
                           bool required, double *v) {
    const cJSON *j = member(sa, field);
    char pv[80];
    if (!j) {
        if (!required) return MR_OK;
        const cJSON *name = member(sa, "name");
        return mr_ann_region_error(ld, MR_ERR_FORMAT, "%s: %s is missing field '%s'", where,
                                   cJSON_IsString(name) ? name->valuestring : "shape", field);
    }
    if (!cJSON_IsNumber(j))
        return mr_ann_region_error(ld, MR_ERR_FORMAT,
                                   "%s: field '%s': expected a number, found %s%s", where, field,
                                   mr_via_type_name(j), jpreview(j, pv, sizeof pv));
    *v = j->valuedouble;
    return mr_ann_check_coord(ld, where, field, *v);
}

static mr_status nonnegative(mr_ann_loader *ld, const char *where, const char *field, double v) {
    if (v < 0.0)
        return mr_ann_region_error(
            ld, MR_ERR_FORMAT, "%s: field '%s' is %g; a size cannot be negative", where, field, v);
    return MR_OK;
}

/* all_points_x / all_points_y into a fresh array (linear: walks the list once). */
static mr_status point_array(mr_ann_loader *ld, const cJSON *sa, const char *field,
                             const char *where, double **out, int64_t *n) {
    *out = NULL;
    *n = 0;
    const cJSON *arr = member(sa, field);
    char pv[80];
    if (!arr)
        return mr_ann_region_error(ld, MR_ERR_FORMAT, "%s: polygon is missing field '%s'", where,
                                   field);
    if (!cJSON_IsArray(arr))
        return mr_ann_region_error(
            ld, MR_ERR_FORMAT, "%s: field '%s': expected an array of numbers, found %s%s", where,
            field, mr_via_type_name(arr), jpreview(arr, pv, sizeof pv));
    int64_t count = 0;
    for (const cJSON *c = arr->child; c; c = c->next) count++;
    double *v = malloc(sizeof(double) * (size_t)(count ? count : 1));
    if (!v)
        return mr_fail(MR_ERR_NOMEM, "out of memory for a %lld-point polygon", (long long)count);
    int64_t i = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        if (!cJSON_IsNumber(c)) {
            free(v);
            return mr_ann_region_error(
                ld, MR_ERR_FORMAT, "%s: field '%s' item %lld: expected a number, found %s%s", where,
                field, (long long)i, mr_via_type_name(c), jpreview(c, pv, sizeof pv));
        }
        v[i] = c->valuedouble;
        if (!isfinite(v[i]) || fabs(v[i]) > MR_ANN_MAX_COORD) {
            char fname[96];
            snprintf(fname, sizeof fname, "%s[%lld]", field, (long long)i);
            free(v);
            return mr_ann_check_coord(ld, where, fname, c->valuedouble);
        }
    }
    *out = v;
    *n = count;
    return MR_OK;
}

/* Reports a failure that was already recorded as a region error as success to the caller
 * (the load goes on), but passes out-of-memory through. */
static mr_status soft(mr_status st) {
    return st == MR_ERR_NOMEM ? st : MR_OK;
}

mr_status mr_via_region(mr_ann_loader *ld, int64_t rec, const cJSON *sa, const cJSON *ra,
                        int64_t region, const char *where) {
    mr_report *rep = &ld->out->report;
    rep->n_regions++;
    mr_ann_note_region(ld, rec);
    char pv[80];
    if (!sa)
        return soft(
            mr_ann_region_error(ld, MR_ERR_FORMAT, "%s: missing field 'shape_attributes'", where));
    if (!cJSON_IsObject(sa))
        return soft(mr_ann_region_error(ld, MR_ERR_FORMAT,
                                        "%s: field 'shape_attributes': expected an object, found "
                                        "%s%s",
                                        where, mr_via_type_name(sa), jpreview(sa, pv, sizeof pv)));
    if (!sa->child) {
        rep->n_skipped_other++;
        mr_ann_warn(ld, "%s: empty shape_attributes (no shape drawn); skipped", where);
        return MR_OK;
    }
    const cJSON *name = member(sa, "name");
    if (!name)
        return soft(mr_ann_region_error(ld, MR_ERR_FORMAT,
                                        "%s: field 'shape_attributes.name' is missing (expected "
                                        "polygon, rect, circle, ellipse, polyline or point)",
                                        where));
    if (!cJSON_IsString(name))
        return soft(mr_ann_region_error(ld, MR_ERR_FORMAT,
                                        "%s: field 'shape_attributes.name': expected a string, "
                                        "found %s%s",
                                        where, mr_via_type_name(name),
                                        jpreview(name, pv, sizeof pv)));
    const char *kind = name->valuestring;
    if (!mr_ann_strcasecmp(kind, "point")) {
        rep->n_skipped_point++;
        return MR_OK;
    }
    if (!mr_ann_strcasecmp(kind, "polyline") || !mr_ann_strcasecmp(kind, "line")) {
        rep->n_skipped_polyline++;
        return MR_OK;
    }
    if (ra && !cJSON_IsObject(ra) && !cJSON_IsNull(ra) && !ld->out->single_class)
        return soft(mr_ann_region_error(ld, MR_ERR_FORMAT,
                                        "%s: field 'region_attributes': expected an object, found "
                                        "%s%s",
                                        where, mr_via_type_name(ra), jpreview(ra, pv, sizeof pv)));
    mr_shape s;
    memset(&s, 0, sizeof s);
    mr_status st = MR_OK;
    if (!mr_ann_strcasecmp(kind, "rect")) {
        s.kind = MR_SHAPE_RECT;
        if ((st = shape_num(ld, sa, "x", where, true, &s.x)) ||
            (st = shape_num(ld, sa, "y", where, true, &s.y)) ||
            (st = shape_num(ld, sa, "width", where, true, &s.w)) ||
            (st = shape_num(ld, sa, "height", where, true, &s.h)) ||
            (st = nonnegative(ld, where, "width", s.w)) ||
            (st = nonnegative(ld, where, "height", s.h)))
            return soft(st);
    } else if (!mr_ann_strcasecmp(kind, "circle")) {
        s.kind = MR_SHAPE_CIRCLE;
        if ((st = shape_num(ld, sa, "cx", where, true, &s.cx)) ||
            (st = shape_num(ld, sa, "cy", where, true, &s.cy)) ||
            (st = shape_num(ld, sa, "r", where, true, &s.rx)) ||
            (st = nonnegative(ld, where, "r", s.rx)))
            return soft(st);
        s.ry = s.rx;
    } else if (!mr_ann_strcasecmp(kind, "ellipse")) {
        s.kind = MR_SHAPE_ELLIPSE;
        if ((st = shape_num(ld, sa, "cx", where, true, &s.cx)) ||
            (st = shape_num(ld, sa, "cy", where, true, &s.cy)) ||
            (st = shape_num(ld, sa, "rx", where, true, &s.rx)) ||
            (st = shape_num(ld, sa, "ry", where, true, &s.ry)) ||
            (st = shape_num(ld, sa, "theta", where, false, &s.theta)) ||
            (st = nonnegative(ld, where, "rx", s.rx)) || (st = nonnegative(ld, where, "ry", s.ry)))
            return soft(st);
    } else if (!mr_ann_strcasecmp(kind, "polygon")) {
        double *xs = NULL, *ys = NULL;
        int64_t nx = 0, ny = 0;
        if ((st = point_array(ld, sa, "all_points_x", where, &xs, &nx)) != MR_OK) return soft(st);
        if ((st = point_array(ld, sa, "all_points_y", where, &ys, &ny)) != MR_OK) {
            free(xs);
            return soft(st);
        }
        if (nx != ny) {
            free(xs);
            free(ys);
            return soft(mr_ann_region_error(ld, MR_ERR_FORMAT,
                                            "%s: field 'all_points_x' has %lld values but "
                                            "'all_points_y' has %lld",
                                            where, (long long)nx, (long long)ny));
        }
        s.kind = MR_SHAPE_POLYGON;
        s.xs = xs;
        s.ys = ys;
        s.n_points = nx;
        s.ring_ends = malloc(sizeof(int64_t));
        if (!s.ring_ends) {
            mr_shape_free(&s);
            return mr_fail(MR_ERR_NOMEM, "out of memory");
        }
        s.ring_ends[0] = nx;
        s.n_rings = 1;
    } else {
        char qk[64];
        return soft(mr_ann_region_error(ld, MR_ERR_FORMAT,
                                        "%s: unknown shape '%s' in 'shape_attributes.name' "
                                        "(expected polygon, rect, circle, ellipse, polyline or "
                                        "point)",
                                        where, mr_ann_quote(qk, sizeof qk, kind)));
    }
    int class_id = 0;
    char *class_name = NULL;
    st = region_class(ld, cJSON_IsObject(ra) ? ra : NULL, where, &class_id, &class_name);
    if (st != MR_OK) {
        mr_shape_free(&s);
        return soft(st);
    }
    st = mr_ann_add_instance(ld, rec, &s, class_id, class_name, region, where);
    free(class_name);
    return st;
}

/* ---- VIA 1.x / 2.x images ------------------------------------------------------------------ */

static void image_where(const mr_ann_loader *ld, const char *key, char *buf, size_t n) {
    char qk[200];
    snprintf(buf, n, "%s: image '%s'", ld->file, mr_ann_quote(qk, sizeof qk, key));
}

static mr_status load_via_image(mr_ann_loader *ld, const cJSON *entry, const char *prefix,
                                bool project) {
    char where[512], rwhere[600], pv[80];
    const char *key = entry->string ? entry->string : "";
    image_where(ld, key, where, sizeof where);
    if (!cJSON_IsObject(entry)) {
        mr_ann_error(ld, MR_ERR_FORMAT,
                     "%s: expected an object {filename, size, regions}, found %s%s", where,
                     mr_via_type_name(entry), jpreview(entry, pv, sizeof pv));
        return MR_OK;
    }
    const cJSON *filename = member(entry, "filename");
    if (!filename) {
        mr_ann_error(ld, MR_ERR_FORMAT, "%s: missing field 'filename'", where);
        return MR_OK;
    }
    if (!cJSON_IsString(filename) || !filename->valuestring[0]) {
        mr_ann_error(ld, MR_ERR_FORMAT, "%s: field 'filename': expected a file name, found %s%s",
                     where,
                     cJSON_IsString(filename) ? "an empty string" : mr_via_type_name(filename),
                     jpreview(filename, pv, sizeof pv));
        return MR_OK;
    }
    const cJSON *regions = member(entry, "regions");
    if (regions && !cJSON_IsArray(regions) && !cJSON_IsObject(regions) && !cJSON_IsNull(regions)) {
        mr_ann_error(ld, MR_ERR_FORMAT,
                     "%s: field 'regions': expected a list (VIA 2) or an object keyed \"0\", "
                     "\"1\", ... (VIA 1), found %s%s",
                     where, mr_via_type_name(regions), jpreview(regions, pv, sizeof pv));
        return MR_OK;
    }
    if (!project && ld->out->format == MR_ANN_UNKNOWN) {
        if (cJSON_IsObject(regions) || member(entry, "fileref") || member(entry, "base64_img_data"))
            ld->out->format = MR_ANN_VIA1_JSON;
        else if (cJSON_IsArray(regions))
            ld->out->format = MR_ANN_VIA2_JSON;
    }
    int64_t rec;
    MR_TRY(mr_ann_add_record(ld, key, filename->valuestring, prefix, NULL, 0, 0, &rec));
    /* VIA writes the size as a number, sherlock-style files as a string. */
    const cJSON *size = member(entry, "size");
    if (cJSON_IsNumber(size) && isfinite(size->valuedouble) && fabs(size->valuedouble) < 1e15)
        mr_ann_check_file_bytes(ld, rec, (int64_t)size->valuedouble);
    else if (cJSON_IsString(size))
        mr_ann_check_file_bytes(ld, rec, strtoll(size->valuestring, NULL, 10));
    else if (!size && !strncmp(key, filename->valuestring, strlen(filename->valuestring))) {
        /* No size field: the key's digits after the filename are the size. */
        const char *digits = key + strlen(filename->valuestring);
        if (digits[0] && strspn(digits, "0123456789") == strlen(digits))
            mr_ann_check_file_bytes(ld, rec, strtoll(digits, NULL, 10));
    }
    MR_TRY(mr_via_file_attributes(ld, rec, member(entry, "file_attributes"), where));
    if (!regions) return MR_OK;
    int64_t i = 0;
    for (const cJSON *r = regions->child; r; r = r->next, i++) {
        char qr[64];
        if (cJSON_IsObject(regions))
            snprintf(rwhere, sizeof rwhere, "%s region %s", where,
                     mr_ann_quote(qr, sizeof qr, r->string ? r->string : "?"));
        else
            snprintf(rwhere, sizeof rwhere, "%s region %lld", where, (long long)i);
        if (!cJSON_IsObject(r)) {
            ld->out->report.n_regions++;
            mr_ann_note_region(ld, rec);
            mr_ann_region_error(ld, MR_ERR_FORMAT,
                                "%s: expected an object {shape_attributes, region_attributes}, "
                                "found %s%s",
                                rwhere, mr_via_type_name(r), jpreview(r, pv, sizeof pv));
            continue;
        }
        MR_TRY(mr_via_region(ld, rec, member(r, "shape_attributes"), member(r, "region_attributes"),
                             i, rwhere));
    }
    return MR_OK;
}

static mr_status load_via_images(mr_ann_loader *ld, const cJSON *images, const cJSON *order,
                                 const char *prefix, bool project) {
    if (!cJSON_IsArray(order)) {
        for (const cJSON *e = images->child; e; e = e->next)
            MR_TRY(load_via_image(ld, e, prefix, project));
        return MR_OK;
    }
    /* _via_image_id_list fixes the order; a map keeps it linear for big projects. */
    int64_t n = 0;
    for (const cJSON *e = images->child; e; e = e->next) n++;
    const cJSON **items = malloc(sizeof *items * (size_t)(n ? n : 1));
    bool *done = calloc((size_t)(n ? n : 1), sizeof *done);
    mr_strmap map = {0};
    mr_status st = items && done ? MR_OK : mr_fail(MR_ERR_NOMEM, "out of memory");
    int64_t i = 0;
    for (const cJSON *e = images->child; e && st == MR_OK; e = e->next, i++) {
        items[i] = e;
        if (e->string && mr_strmap_get(&map, e->string) < 0) st = mr_strmap_put(&map, e->string, i);
    }
    int64_t k = 0;
    for (const cJSON *id = order->child; id && st == MR_OK; id = id->next, k++) {
        int64_t at = cJSON_IsString(id) ? mr_strmap_get(&map, id->valuestring) : -1;
        if (at < 0) {
            char q[200];
            mr_ann_warn(ld,
                        "%s: _via_image_id_list item %lld ('%s') is not in _via_img_metadata; "
                        "ignored",
                        ld->file, (long long)k,
                        mr_ann_quote(q, sizeof q,
                                     cJSON_IsString(id) ? id->valuestring : mr_via_type_name(id)));
            continue;
        }
        if (done[at]) continue;
        done[at] = true;
        st = load_via_image(ld, items[at], prefix, project);
    }
    /* Images missing from the list still count: VIA would show them after the listed ones. */
    for (i = 0; i < n && st == MR_OK; i++)
        if (!done[i]) st = load_via_image(ld, items[i], prefix, project);
    mr_strmap_free(&map);
    free(items);
    free(done);
    return st;
}

mr_status mr_via_load_project(mr_ann_loader *ld, const cJSON *root) {
    ld->out->format = MR_ANN_VIA2_PROJECT;
    const cJSON *meta = member(root, "_via_img_metadata");
    if (!cJSON_IsObject(meta))
        return mr_fail(MR_ERR_FORMAT,
                       "%s: field '_via_img_metadata': expected an object of "
                       "images, found %s",
                       ld->file, mr_via_type_name(meta));
    if (ld->opt->attributes_path && ld->opt->attributes_path[0]) {
        MR_TRY(mr_via_load_attributes(ld, false));
    } else if (member(root, "_via_attributes")) {
        MR_TRY(use_attribute_defs(ld, member(root, "_via_attributes"), ld->file));
    }
    const cJSON *settings = member(root, "_via_settings");
    const cJSON *fp = member(member(settings, "core"), "default_filepath");
    const char *prefix = cJSON_IsString(fp) ? fp->valuestring : "";
    const cJSON *order = member(root, "_via_image_id_list");
    if (order && !cJSON_IsArray(order))
        mr_ann_warn(ld, "%s: field '_via_image_id_list': expected an array, found %s; ignored",
                    ld->file, mr_via_type_name(order));
    return load_via_images(ld, meta, order, prefix, true);
}

/* ---- VIA 3.x ------------------------------------------------------------------------------- */

enum {
    VIA3_POINT = 1,
    VIA3_RECT,
    VIA3_CIRCLE,
    VIA3_ELLIPSE,
    VIA3_LINE,
    VIA3_POLYLINE,
    VIA3_POLYGON,
    VIA3_EXTREME_RECT,
    VIA3_EXTREME_CIRCLE
};

typedef struct {
    const cJSON *attrs;  /* attribute: aid -> {aname, type, options} */
    const cJSON *prefix; /* config.file.loc_prefix */
    mr_strmap views;     /* vid -> record, or -2 for skipped views */
} via3_state;

/* The class label of a VIA 3 `av` object: the first class attribute name (by rank) with a
 * value, option ids turned into labels. */
static mr_status via3_label(mr_ann_loader *ld, const via3_state *s, const cJSON *av,
                            const char *where, char **label, char **option, const char **attr) {
    *label = *option = NULL;
    *attr = NULL;
    if (!av || cJSON_IsNull(av)) return MR_OK;
    char pv[80];
    if (!cJSON_IsObject(av))
        return mr_ann_region_error(ld, MR_ERR_FORMAT,
                                   "%s: field 'av': expected an object, found %s%s", where,
                                   mr_via_type_name(av), jpreview(av, pv, sizeof pv));
    int best = ld->n_class_attrs;
    const cJSON *best_v = NULL, *best_def = NULL;
    for (const cJSON *v = av->child; v; v = v->next) {
        const cJSON *def = member(s->attrs, v->string ? v->string : "");
        const cJSON *aname = member(def, "aname");
        if (!cJSON_IsString(aname)) continue;
        int rank = mr_ann_class_attr_rank(ld, aname->valuestring);
        if (rank < 0 || rank >= best) continue;
        bool empty = (cJSON_IsString(v) && !v->valuestring[0]) || cJSON_IsNull(v);
        if (empty) continue;
        best = rank;
        best_v = v;
        best_def = def;
    }
    if (!best_v) return MR_OK;
    *attr = member(best_def, "aname")->valuestring;
    char num[64];
    const char *raw;
    if (cJSON_IsString(best_v)) {
        raw = best_v->valuestring;
    } else if (cJSON_IsNumber(best_v)) {
        mr_ann_number_text(best_v->valuedouble, num, sizeof num);
        raw = num;
    } else {
        if (ld->out->single_class) return MR_OK;
        return mr_ann_region_error(ld, MR_ERR_FORMAT,
                                   "%s: field 'av.%s' (attribute '%s'): expected text or an option "
                                   "id, found %s",
                                   where, best_v->string, *attr, mr_via_type_name(best_v));
    }
    /* Checkbox values are comma-joined option ids; the first one decides. */
    const cJSON *type = member(best_def, "type");
    char first[256];
    if (cJSON_IsNumber(type) && type->valuedouble == 2) {
        snprintf(first, sizeof first, "%s", raw);
        char *comma = strchr(first, ',');
        if (comma) *comma = '\0';
        raw = first;
    }
    const cJSON *opts = member(best_def, "options");
    const cJSON *lab = cJSON_IsObject(opts) ? cJSON_GetObjectItemCaseSensitive(opts, raw) : NULL;
    if (cJSON_IsString(lab) && lab->valuestring[0]) {
        *label = mr_strdup(lab->valuestring);
        *option = mr_strdup(raw);
        if (!*label || !*option) return mr_fail(MR_ERR_NOMEM, "out of memory");
    } else {
        *label = mr_strdup(raw);
        if (!*label) return mr_fail(MR_ERR_NOMEM, "out of memory");
    }
    return MR_OK;
}

static mr_status via3_shape(mr_ann_loader *ld, const cJSON *xy, const char *where, mr_shape *s,
                            bool *skip) {
    char pv[80];
    *skip = false;
    memset(s, 0, sizeof *s);
    int64_t n = 0;
    for (const cJSON *c = xy->child; c; c = c->next) n++;
    double *v = malloc(sizeof(double) * (size_t)n);
    if (!v) return mr_fail(MR_ERR_NOMEM, "out of memory for a %lld-value shape", (long long)n);
    int64_t i = 0;
    for (const cJSON *c = xy->child; c; c = c->next, i++) {
        if (!cJSON_IsNumber(c)) {
            free(v);
            return mr_ann_region_error(
                ld, MR_ERR_FORMAT, "%s: field 'xy' item %lld: expected a number, found %s%s", where,
                (long long)i, mr_via_type_name(c), jpreview(c, pv, sizeof pv));
        }
        v[i] = c->valuedouble;
        if (i > 0 && (!isfinite(v[i]) || fabs(v[i]) > MR_ANN_MAX_COORD)) {
            char f[48];
            snprintf(f, sizeof f, "xy[%lld]", (long long)i);
            free(v);
            return mr_ann_check_coord(ld, where, f, c->valuedouble);
        }
    }
    double code = v[0];
    const double *a = v + 1;
    int64_t na = n - 1;
    mr_status st = MR_OK;
    int64_t want = -1; /* exact argument count, or -1 for "even and at least 6" */
    const char *shape_name = "?";
    /* Range first: casting a double outside int's range (1e300) is undefined behaviour, so
     * only small whole numbers become a shape code; anything else is code 0, unknown. */
    int kind = code >= 0.0 && code <= 64.0 && code == floor(code) ? (int)code : 0;
    switch (kind) {
    case VIA3_POINT:
        ld->out->report.n_skipped_point++;
        *skip = true;
        goto out;
    case VIA3_LINE:
    case VIA3_POLYLINE:
        ld->out->report.n_skipped_polyline++;
        *skip = true;
        goto out;
    case VIA3_RECT:
        want = 4, shape_name = "rect [2,x,y,w,h]";
        break;
    case VIA3_CIRCLE:
        want = 3, shape_name = "circle [3,cx,cy,r]";
        break;
    case VIA3_ELLIPSE:
        want = 4, shape_name = "ellipse [4,cx,cy,rx,ry]";
        break;
    case VIA3_POLYGON:
        want = -1, shape_name = "polygon [7,x0,y0,x1,y1,...]";
        break;
    case VIA3_EXTREME_RECT:
        want = 8, shape_name = "extreme rectangle [8, 4 points]";
        break;
    case VIA3_EXTREME_CIRCLE:
        want = 6, shape_name = "extreme circle [9, 3 points]";
        break;
    default:
        st = mr_ann_region_error(ld, MR_ERR_FORMAT,
                                 "%s: field 'xy': unknown shape code %g (expected 1-9: point, "
                                 "rect, circle, ellipse, line, polyline, polygon, extreme "
                                 "rectangle, extreme circle)",
                                 where, code);
        goto out;
    }
    if ((want >= 0 && na != want) || (want < 0 && na % 2)) {
        st = mr_ann_region_error(ld, MR_ERR_FORMAT,
                                 "%s: field 'xy': a %s needs %s coordinates, found %lld", where,
                                 shape_name,
                                 want >= 0 ? (want == 3   ? "3"
                                              : want == 4 ? "4"
                                              : want == 6 ? "6"
                                                          : "8")
                                           : "an even number of",
                                 (long long)na);
        goto out;
    }
    switch (kind) {
    case VIA3_RECT:
        s->kind = MR_SHAPE_RECT;
        s->x = a[0], s->y = a[1], s->w = a[2], s->h = a[3];
        if ((st = nonnegative(ld, where, "xy width", s->w)) ||
            (st = nonnegative(ld, where, "xy height", s->h)))
            goto out;
        break;
    case VIA3_CIRCLE:
        s->kind = MR_SHAPE_CIRCLE;
        s->cx = a[0], s->cy = a[1], s->rx = s->ry = a[2];
        if ((st = nonnegative(ld, where, "xy r", s->rx))) goto out;
        break;
    case VIA3_ELLIPSE:
        /* VIA 3 ellipses carry no rotation. */
        s->kind = MR_SHAPE_ELLIPSE;
        s->cx = a[0], s->cy = a[1], s->rx = a[2], s->ry = a[3];
        if ((st = nonnegative(ld, where, "xy rx", s->rx)) ||
            (st = nonnegative(ld, where, "xy ry", s->ry)))
            goto out;
        break;
    case VIA3_EXTREME_RECT: {
        double x0 = a[0], x1 = a[0], y0 = a[1], y1 = a[1];
        for (int k = 1; k < 4; k++) {
            x0 = fmin(x0, a[2 * k]), x1 = fmax(x1, a[2 * k]);
            y0 = fmin(y0, a[2 * k + 1]), y1 = fmax(y1, a[2 * k + 1]);
        }
        s->kind = MR_SHAPE_RECT;
        s->x = x0, s->y = y0, s->w = x1 - x0, s->h = y1 - y0;
        break;
    }
    case VIA3_EXTREME_CIRCLE: {
        /* The circle through three points on its circumference. */
        double ax = a[0], ay = a[1], bx = a[2], by = a[3], cx = a[4], cy = a[5];
        double d = 2.0 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by));
        s->kind = MR_SHAPE_CIRCLE;
        if (fabs(d) < 1e-12) {
            s->cx = ax, s->cy = ay, s->rx = s->ry = 0.0; /* collinear: reported as zero size */
            break;
        }
        double a2 = ax * ax + ay * ay, b2 = bx * bx + by * by, c2 = cx * cx + cy * cy;
        s->cx = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d;
        s->cy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d;
        s->rx = s->ry = hypot(ax - s->cx, ay - s->cy);
        if (!isfinite(s->rx) || s->rx > MR_ANN_MAX_COORD) {
            st = mr_ann_check_coord(ld, where, "xy (circumcircle radius)", s->rx);
            goto out;
        }
        break;
    }
    case VIA3_POLYGON: {
        int64_t np = na / 2;
        s->kind = MR_SHAPE_POLYGON;
        s->xs = malloc(sizeof(double) * (size_t)(np ? np : 1));
        s->ys = malloc(sizeof(double) * (size_t)(np ? np : 1));
        s->ring_ends = malloc(sizeof(int64_t));
        if (!s->xs || !s->ys || !s->ring_ends) {
            mr_shape_free(s);
            st = mr_fail(MR_ERR_NOMEM, "out of memory");
            goto out;
        }
        for (int64_t k = 0; k < np; k++) s->xs[k] = a[2 * k], s->ys[k] = a[2 * k + 1];
        s->n_points = np;
        s->ring_ends[0] = np;
        s->n_rings = 1;
        break;
    }
    default:
        break;
    }
out:
    free(v);
    return st;
}

static mr_status via3_views(mr_ann_loader *ld, via3_state *s, const cJSON *root) {
    const cJSON *files = member(root, "file"), *views = member(root, "view");
    const cJSON *project = member(root, "project");
    if (!cJSON_IsObject(files))
        return mr_fail(MR_ERR_FORMAT, "%s: field 'file': expected an object of files, found %s",
                       ld->file, mr_via_type_name(files));
    if (!cJSON_IsObject(views))
        return mr_fail(MR_ERR_FORMAT, "%s: field 'view': expected an object of views, found %s",
                       ld->file, mr_via_type_name(views));
    /* Files by id, for a linear walk over big projects. */
    mr_strmap fmap = {0};
    int64_t nf = 0;
    for (const cJSON *f = files->child; f; f = f->next) nf++;
    const cJSON **fitems = malloc(sizeof *fitems * (size_t)(nf ? nf : 1));
    if (!fitems) return mr_fail(MR_ERR_NOMEM, "out of memory");
    int64_t i = 0;
    mr_status st = MR_OK;
    for (const cJSON *f = files->child; f && st == MR_OK; f = f->next, i++) {
        fitems[i] = f;
        if (f->string) st = mr_strmap_put(&fmap, f->string, i);
    }
    /* View order: project.vid_list when present (VIA's own order), else the view object's. */
    const cJSON *vid_list = member(project, "vid_list");
    bool by_list = cJSON_IsArray(vid_list) && vid_list->child;
    const cJSON *it = by_list ? vid_list->child : views->child;
    for (; it && st == MR_OK; it = it->next) {
        char idbuf[64], where[512], pv[80], qv[96];
        const char *vid = by_list ? mr_via_id_text(it, idbuf, sizeof idbuf) : it->string;
        if (!vid) {
            mr_ann_error(ld, MR_ERR_FORMAT, "%s: project.vid_list: expected view ids, found %s",
                         ld->file, mr_via_type_name(it));
            continue;
        }
        if (mr_strmap_get(&s->views, vid) != -1) continue; /* listed twice */
        snprintf(where, sizeof where, "%s: view '%s'", ld->file, mr_ann_quote(qv, sizeof qv, vid));
        const cJSON *view = by_list ? member(views, vid) : it;
        if (!cJSON_IsObject(view)) {
            mr_ann_error(ld, MR_ERR_FORMAT, "%s: expected an object {fid_list}, found %s", where,
                         view ? mr_via_type_name(view) : "nothing (the view is not in 'view')");
            continue;
        }
        const cJSON *fl = member(view, "fid_list");
        int64_t nfid = 0;
        if (cJSON_IsArray(fl))
            for (const cJSON *c = fl->child; c; c = c->next) nfid++;
        if (!cJSON_IsArray(fl)) {
            mr_ann_error(ld, MR_ERR_FORMAT, "%s: field 'fid_list': expected an array, found %s%s",
                         where, mr_via_type_name(fl), jpreview(fl, pv, sizeof pv));
            continue;
        }
        if (nfid != 1) {
            /* A view of several files (side-by-side comparison) is not an image to train on. */
            mr_ann_warn(ld, "%s: shows %lld files; only single-file views are loaded", where,
                        (long long)nfid);
            st = mr_strmap_put(&s->views, vid, -2);
            continue;
        }
        const char *fid = mr_via_id_text(fl->child, idbuf, sizeof idbuf);
        int64_t fi = fid ? mr_strmap_get(&fmap, fid) : -1;
        if (fi < 0) {
            char qf[96];
            mr_ann_error(ld, MR_ERR_FORMAT, "%s: fid_list names file '%s', which is not in 'file'",
                         where,
                         fid ? mr_ann_quote(qf, sizeof qf, fid) : mr_via_type_name(fl->child));
            continue;
        }
        const cJSON *file = fitems[fi];
        char fwhere[600];
        snprintf(fwhere, sizeof fwhere, "%s: file '%s'", ld->file,
                 mr_ann_quote(qv, sizeof qv, file->string ? file->string : "?"));
        if (!cJSON_IsObject(file)) {
            mr_ann_error(ld, MR_ERR_FORMAT,
                         "%s: expected an object {fid, fname, src, loc}, found %s", fwhere,
                         mr_via_type_name(file));
            continue;
        }
        const cJSON *fname = member(file, "fname"), *src = member(file, "src");
        const cJSON *loc = member(file, "loc"), *type = member(file, "type");
        const char *name = cJSON_IsString(src) && src->valuestring[0] ? src->valuestring
                           : cJSON_IsString(fname)                    ? fname->valuestring
                                                                      : NULL;
        if (!name || !name[0]) {
            mr_ann_error(ld, MR_ERR_FORMAT, "%s: has neither 'src' nor 'fname' (found %s)", fwhere,
                         mr_via_type_name(src ? src : fname));
            continue;
        }
        /* The path is config.file.loc_prefix[loc] + src. */
        char locbuf[32];
        const char *loc_id = mr_via_id_text(loc, locbuf, sizeof locbuf);
        const cJSON *pfx = loc_id ? member(s->prefix, loc_id) : NULL;
        const char *display =
            cJSON_IsString(fname) && fname->valuestring[0] ? fname->valuestring : name;
        if (!strncmp(name, "data:", 5)) {
            /* loc 4 (inline): the image is base64 inside the project. */
            if (!ld->opt->allow_missing_images) {
                mr_ann_error(ld, MR_ERR_FORMAT,
                             "%s: the image is embedded in the project as base64 data; save it "
                             "as a file and point 'src' at it",
                             fwhere);
                continue;
            }
            name = display;
        }
        if (cJSON_IsNumber(type) && type->valuedouble != 2)
            mr_ann_warn(ld,
                        "%s (%s) is a %s, not an image; its regions are loaded but cannot be "
                        "trained on",
                        fwhere, mr_ann_quote(pv, sizeof pv, display),
                        type->valuedouble == 4   ? "video"
                        : type->valuedouble == 8 ? "audio file"
                                                 : "non-image file");
        int64_t rec;
        st = mr_ann_add_record(ld, file->string ? file->string : fid, display,
                               cJSON_IsString(pfx) ? pfx->valuestring : NULL, name, 0, 0, &rec);
        if (st != MR_OK) break;
        st = mr_strmap_put(&s->views, vid, rec);
    }
    mr_strmap_free(&fmap);
    free(fitems);
    return st;
}

mr_status mr_via_load_via3(mr_ann_loader *ld, const cJSON *root) {
    ld->out->format = MR_ANN_VIA3_PROJECT;
    via3_state s;
    memset(&s, 0, sizeof s);
    s.attrs = member(root, "attribute");
    if (s.attrs && !cJSON_IsObject(s.attrs))
        return mr_fail(MR_ERR_FORMAT, "%s: field 'attribute': expected an object, found %s",
                       ld->file, mr_via_type_name(s.attrs));
    s.prefix = member(member(member(root, "config"), "file"), "loc_prefix");
    const cJSON *metadata = member(root, "metadata");
    if (!cJSON_IsObject(metadata))
        return mr_fail(MR_ERR_FORMAT, "%s: field 'metadata': expected an object, found %s",
                       ld->file, mr_via_type_name(metadata));
    mr_status st = via3_views(ld, &s, root);
    int64_t *count = NULL;
    if (st == MR_OK) {
        count = calloc((size_t)(ld->out->n ? ld->out->n : 1), sizeof *count);
        if (!count) st = mr_fail(MR_ERR_NOMEM, "out of memory");
    }
    mr_report *rep = &ld->out->report;
    for (const cJSON *m = metadata->child; m && st == MR_OK; m = m->next) {
        char where[600], qm[96], qv[96], pv[80], idbuf[64];
        snprintf(where, sizeof where, "%s: metadata '%s'", ld->file,
                 mr_ann_quote(qm, sizeof qm, m->string ? m->string : "?"));
        if (!cJSON_IsObject(m)) {
            rep->n_regions++;
            mr_ann_region_error(ld, MR_ERR_FORMAT,
                                "%s: expected an object {vid, z, xy, av}, found %s%s", where,
                                mr_via_type_name(m), jpreview(m, pv, sizeof pv));
            continue;
        }
        const cJSON *vidj = member(m, "vid"), *z = member(m, "z"), *xy = member(m, "xy");
        const cJSON *av = member(m, "av");
        const char *vid = mr_via_id_text(vidj, idbuf, sizeof idbuf);
        if (!vid) {
            rep->n_regions++;
            mr_ann_region_error(ld, MR_ERR_FORMAT, "%s: field 'vid': expected a view id, found %s",
                                where, mr_via_type_name(vidj));
            continue;
        }
        if ((z && !cJSON_IsArray(z)) || (xy && !cJSON_IsArray(xy))) {
            const cJSON *bad = z && !cJSON_IsArray(z) ? z : xy;
            rep->n_regions++;
            mr_ann_region_error(ld, MR_ERR_FORMAT, "%s: field '%s': expected an array, found %s%s",
                                where, bad == z ? "z" : "xy", mr_via_type_name(bad),
                                jpreview(bad, pv, sizeof pv));
            continue;
        }
        /* -1: no such view; -2: a view skipped above (several files). */
        int64_t rec = mr_strmap_get(&s.views, vid);
        if (rec == -1) {
            rep->n_regions++;
            mr_ann_region_error(ld, MR_ERR_FORMAT, "%s: view '%s' does not exist in 'view'", where,
                                mr_ann_quote(qv, sizeof qv, vid));
            continue;
        }
        bool spatial = xy && xy->child;
        if (rec < 0) {
            rep->n_skipped_other++;
            continue;
        }
        if (!spatial) {
            /* z = [] and xy = []: a file-level entry (image label); z set: a temporal segment. */
            rep->n_skipped_temporal++;
            if (!z || !z->child) {
                char *label = NULL, *option = NULL;
                const char *attr = NULL;
                st = via3_label(ld, &s, av, where, &label, &option, &attr);
                if (st == MR_OK && label) st = mr_ann_set_image_label(ld, rec, label);
                st = st == MR_ERR_NOMEM ? st : MR_OK;
                free(label);
                free(option);
            }
            continue;
        }
        rep->n_regions++;
        mr_ann_note_region(ld, rec);
        int64_t region = count[rec]++;
        char rwhere[700];
        char qk[96];
        snprintf(rwhere, sizeof rwhere, "%s: file '%s' region %lld (metadata '%s')", ld->file,
                 mr_ann_quote(qk, sizeof qk, ld->out->records[rec].key), (long long)region, qm);
        mr_shape shape;
        bool skip = false;
        mr_status sst = via3_shape(ld, xy, rwhere, &shape, &skip);
        if (sst != MR_OK || skip) {
            st = soft(sst);
            continue;
        }
        char *label = NULL, *option = NULL;
        const char *attr = NULL;
        int class_id = 0;
        sst = via3_label(ld, &s, av, rwhere, &label, &option, &attr);
        if (sst == MR_OK)
            sst = resolve_class(ld, rwhere, attr ? attr : ld->class_attrs[0], label, option,
                                &class_id);
        if (sst == MR_OK) {
            st = mr_ann_add_instance(ld, rec, &shape, class_id, label, region, rwhere);
        } else {
            mr_shape_free(&shape);
            st = soft(sst);
        }
        free(label);
        free(option);
    }
    free(count);
    mr_strmap_free(&s.views);
    return st;
}

/* ---- facts for format detection (annotations.c decides) ------------------------------------ */

static bool looks_like_attributes(const cJSON *root) {
    const cJSON *r = member(root, "region"), *f = member(root, "file");
    if (!cJSON_IsObject(r) && !cJSON_IsObject(f)) return false;
    for (const cJSON *c = root->child; c; c = c->next)
        if (strcmp(c->string ? c->string : "", "region") &&
            strcmp(c->string ? c->string : "", "file"))
            return false;
    return true;
}

static bool looks_like_via_images(const cJSON *root) {
    for (const cJSON *c = root->child; c; c = c->next)
        if (cJSON_IsObject(c) && (member(c, "filename") || member(c, "regions"))) return true;
    return false;
}

void mr_via_json_facts(const cJSON *root, mr_ann_json_facts *f) {
    memset(f, 0, sizeof *f);
    f->type_name = mr_via_type_name(root);
    f->object = cJSON_IsObject(root);
    if (!f->object) return;
    f->via3_keys = member(root, "project") && member(root, "metadata") && member(root, "file");
    f->via2_project_key = member(root, "_via_img_metadata") != NULL;
    f->coco_keys = member(root, "images") && member(root, "annotations");
    f->attributes_only = looks_like_attributes(root);
    f->empty = !root->child;
    f->via_image_entries = looks_like_via_images(root);
}

mr_status mr_via_load_image_entries(mr_ann_loader *ld, const cJSON *root) {
    mr_status st = mr_via_load_attributes(ld, true);
    if (st == MR_OK) st = load_via_images(ld, root, NULL, NULL, false);
    if (st == MR_OK && ld->out->format == MR_ANN_UNKNOWN) ld->out->format = MR_ANN_VIA2_JSON;
    if (st == MR_OK && !root->child) mr_ann_warn(ld, "%s: the file lists no images", ld->file);
    return st;
}

/* ---- image entries one at a time ----------------------------------------------------------- */

/* A VIA annotations file is one object of image entries; its parsed tree takes about 15 times the
 * file (cJSON keeps a node per polygon coordinate), so a 10,000-image file would peak near 100 MB.
 * Parsing each entry's text on its own keeps the peak at one entry. The members are found by a
 * scan that only follows strings and brackets; anything it does not expect sends the file down
 * the whole-document path, which gives the same result and every syntax error's position. */

static size_t skip_space(const char *t, size_t i, size_t len) {
    while (i < len && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) i++;
    return i;
}

/* Past the string that starts at t[i] == '"'; false when it does not end. */
static bool skip_json_string(const char *t, size_t *i, size_t len) {
    for (size_t k = *i + 1; k < len; k++) {
        if (t[k] == '\\')
            k++;
        else if (t[k] == '"') {
            *i = k + 1;
            return true;
        }
    }
    return false;
}

typedef struct {
    size_t key_at, key_len, value_at, value_len;
} json_member;

/* The next member of the top-level object from *pos (just inside '{' or after a ','): 1 and its
 * spans, 0 at the closing '}', -1 when the text is not what a well-formed object would be. */
static int next_member(const char *t, size_t len, size_t *pos, json_member *m) {
    size_t i = skip_space(t, *pos, len);
    if (i < len && t[i] == '}') {
        if (t[*pos - 1] == ',') return -1; /* a comma before the brace is not JSON */
        *pos = i + 1;
        return 0;
    }
    if (i >= len || t[i] != '"') return -1;
    m->key_at = i;
    if (!skip_json_string(t, &i, len)) return -1;
    m->key_len = i - m->key_at;
    i = skip_space(t, i, len);
    if (i >= len || t[i] != ':') return -1;
    i = skip_space(t, i + 1, len);
    m->value_at = i;
    int depth = 0;
    for (; i < len; i++) {
        char c = t[i];
        if (c == '"') {
            if (!skip_json_string(t, &i, len)) return -1;
            i--;
        } else if (c == '{' || c == '[') {
            if (++depth > 64) return -1; /* far deeper than VIA writes: the whole parse decides */
        } else if (c == '}' || c == ']') {
            if (depth == 0) break;
            depth--;
        } else if (c == ',' && depth == 0) {
            break;
        }
    }
    if (i >= len || depth != 0) return -1;
    m->value_len = i - m->value_at;
    *pos = t[i] == ',' ? i + 1 : i; /* the '}' is read by the next call */
    return 1;
}

/* The member's value parsed alone, named by its key (unescaped as JSON); NULL when either does
 * not parse exactly within its span. */
static cJSON *parse_member(const char *t, const json_member *m) {
    const char *end = NULL;
    cJSON *key = cJSON_ParseWithLengthOpts(t + m->key_at, m->key_len, &end, 0);
    if (!cJSON_IsString(key) || end != t + m->key_at + m->key_len) {
        cJSON_Delete(key);
        return NULL;
    }
    cJSON *value = cJSON_ParseWithLengthOpts(t + m->value_at, m->value_len, &end, 0);
    if (!value || skip_space(t, (size_t)(end - t), m->value_at + m->value_len) !=
                      m->value_at + m->value_len) {
        cJSON_Delete(key);
        cJSON_Delete(value);
        return NULL;
    }
    value->string = key->valuestring; /* cJSON_Delete(value) frees it */
    key->valuestring = NULL;
    cJSON_Delete(key);
    return value;
}

/* Top-level keys that make the file another format (annotations.c's detection). */
static bool format_key(const cJSON *entry) {
    static const char *const keys[] = {"project", "metadata",    "file",  "_via_img_metadata",
                                       "images",  "annotations", "region"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        if (!strcmp(entry->string, keys[k])) return true;
    return false;
}

/* Checks every entry without keeping any: true when the file is image entries that each parse on
 * their own, with nothing after the object. */
static bool entries_parse_alone(const char *t, size_t len, size_t start) {
    size_t pos = start;
    json_member m;
    bool image_entry = false;
    int got;
    while ((got = next_member(t, len, &pos, &m)) == 1) {
        cJSON *e = parse_member(t, &m);
        bool ok = e && !format_key(e);
        if (ok && cJSON_IsObject(e) && (member(e, "filename") || member(e, "regions")))
            image_entry = true;
        cJSON_Delete(e);
        if (!ok) return false;
    }
    return got == 0 && image_entry && skip_space(t, pos, len) == len;
}

mr_status mr_via_load_image_entries_text(mr_ann_loader *ld, const char *text, size_t len,
                                         bool *loaded) {
    *loaded = false;
    size_t i = len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? 3 : 0;
    i = skip_space(text, i, len);
    if (i >= len || text[i] != '{' || memchr(text, '\0', len)) return MR_OK;
    if (!entries_parse_alone(text, len, i + 1)) return MR_OK;
    *loaded = true;
    MR_TRY(mr_via_load_attributes(ld, true));
    size_t pos = i + 1;
    json_member m;
    while (next_member(text, len, &pos, &m) == 1) {
        cJSON *e = parse_member(text, &m);
        if (!e) return mr_fail(MR_ERR_NOMEM, "out of memory");
        mr_status st = load_via_image(ld, e, NULL, false);
        cJSON_Delete(e);
        MR_TRY(st);
    }
    if (ld->out->format == MR_ANN_UNKNOWN) ld->out->format = MR_ANN_VIA2_JSON;
    return MR_OK;
}

void mr_via_delete(cJSON *root) {
    cJSON_Delete(root);
}

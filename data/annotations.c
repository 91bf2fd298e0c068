/* The format-independent half of annotation loading: the entry point (file or folder, the
 * detection of every format, class list), problem reporting, image records and sizes, and shape
 * geometry (validation, clipping, boxes, rasterising). The JSON and CSV readers live in
 * via_*.c/coco.c. */
#include "annotations.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../core/status.h"
#include "../core/util.h"
#include "image.h"
#include "raster.h"
#include "via_internal.h"

/* ---- small helpers ------------------------------------------------------------------------- */

int mr_ann_strcasecmp(const char *a, const char *b) {
    for (;; a++, b++) {
        int ca = tolower((unsigned char)*a), cb = tolower((unsigned char)*b);
        if (ca != cb || !ca) return ca - cb;
    }
}

void mr_ann_number_text(double v, char *buf, size_t n) {
    /* Integers print without a decimal point so {"track": 320} reads as the label "320". */
    if (isfinite(v) && fabs(v) < 1e15 && v == floor(v))
        snprintf(buf, n, "%lld", (long long)v);
    else
        snprintf(buf, n, "%.15g", v);
}

const char *mr_ann_quote(char *buf, size_t n, const char *s) {
    if (!s) s = "(null)";
    size_t len = strlen(s), keep = len;
    if (n < 8) {
        if (n) buf[0] = '\0';
        return buf;
    }
    if (len >= n) keep = n - 4;
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (keep < len) {
        memcpy(buf + keep, "...", 4);
    } else {
        buf[keep] = '\0';
    }
    return buf;
}

const char *mr_ann_format_name(mr_ann_format f) {
    switch (f) {
    case MR_ANN_UNKNOWN:
        return "unknown";
    case MR_ANN_VIA1_JSON:
        return "VIA 1.x annotations JSON";
    case MR_ANN_VIA2_JSON:
        return "VIA 2.x annotations JSON";
    case MR_ANN_VIA2_PROJECT:
        return "VIA 2.x project";
    case MR_ANN_VIA3_PROJECT:
        return "VIA 3.x project";
    case MR_ANN_VIA1_CSV:
        return "VIA 1.x CSV";
    case MR_ANN_VIA2_CSV:
        return "VIA 2.x CSV";
    case MR_ANN_COCO:
        return "COCO instances JSON";
    }
    return "unknown";
}

/* ---- string map ---------------------------------------------------------------------------- */

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int64_t mr_strmap_get(const mr_strmap *m, const char *key) {
    if (!m->cap) return -1;
    for (uint64_t i = hash_str(key) & (uint64_t)(m->cap - 1);;
         i = (i + 1) & (uint64_t)(m->cap - 1)) {
        if (!m->keys[i]) return -1;
        if (!strcmp(m->keys[i], key)) return m->vals[i];
    }
}

static void strmap_insert(char **keys, int64_t *vals, int64_t cap, char *key, int64_t val) {
    uint64_t i = hash_str(key) & (uint64_t)(cap - 1);
    while (keys[i]) i = (i + 1) & (uint64_t)(cap - 1);
    keys[i] = key;
    vals[i] = val;
}

mr_status mr_strmap_put(mr_strmap *m, const char *key, int64_t val) {
    if ((m->n + 1) * 2 > m->cap) {
        int64_t cap = m->cap ? m->cap * 2 : 64;
        char **keys = calloc((size_t)cap, sizeof *keys);
        int64_t *vals = calloc((size_t)cap, sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            return mr_fail(MR_ERR_NOMEM, "out of memory growing a table of %lld entries",
                           (long long)cap);
        }
        for (int64_t i = 0; i < m->cap; i++)
            if (m->keys[i]) strmap_insert(keys, vals, cap, m->keys[i], m->vals[i]);
        free(m->keys);
        free(m->vals);
        m->keys = keys;
        m->vals = vals;
        m->cap = cap;
    }
    for (uint64_t i = hash_str(key) & (uint64_t)(m->cap - 1);;
         i = (i + 1) & (uint64_t)(m->cap - 1)) {
        if (!m->keys[i]) break;
        if (!strcmp(m->keys[i], key)) {
            m->vals[i] = val;
            return MR_OK;
        }
    }
    char *k = mr_strdup(key);
    if (!k) return mr_fail(MR_ERR_NOMEM, "out of memory");
    strmap_insert(m->keys, m->vals, m->cap, k, val);
    m->n++;
    return MR_OK;
}

void mr_strmap_free(mr_strmap *m) {
    for (int64_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

/* ---- problems ------------------------------------------------------------------------------ */

/* A grouped problem: the issue that stands for every occurrence, and the first three places. */
struct mr_ann_group_state {
    int64_t issue; /* index into report.issues */
    const char *noun;
    char *what, *hint;
    char *items[3];
    int n_items;
};

static void free_groups(mr_ann_loader *ld) {
    for (int64_t g = 0; g < ld->n_groups; g++) {
        free(ld->groups[g].what);
        free(ld->groups[g].hint);
        for (int k = 0; k < ld->groups[g].n_items; k++) free(ld->groups[g].items[k]);
    }
    free(ld->groups);
    ld->groups = NULL;
    ld->n_groups = 0;
    ld->cap_groups = 0;
    mr_strmap_free(&ld->group_keys);
}

/* Counts a repeat of a known group; false when `g` is new (the caller adds it). */
static bool count_in_group(mr_ann_loader *ld, mr_issue_level level, const mr_ann_group *g,
                           const char *item, char **key_out) {
    size_t lw = strlen(g->what), lh = g->hint ? strlen(g->hint) : 0;
    char *key = malloc(lw + lh + 3);
    *key_out = key;
    if (!key) return false;
    key[0] = level == MR_ISSUE_ERROR ? 'E' : 'W';
    memcpy(key + 1, g->what, lw);
    key[1 + lw] = '\x1f';
    if (lh) memcpy(key + 2 + lw, g->hint, lh);
    key[2 + lw + lh] = '\0';
    int64_t at = mr_strmap_get(&ld->group_keys, key);
    if (at < 0) return false;
    mr_ann_group_state *gs = &ld->groups[at];
    mr_report *r = &ld->out->report;
    r->issues[gs->issue].count++;
    if (level == MR_ISSUE_ERROR)
        r->n_errors++;
    else
        r->n_warnings++;
    if (gs->n_items < 3 && (gs->items[gs->n_items] = mr_strdup(item))) gs->n_items++;
    return true;
}

static void add_issue(mr_ann_loader *ld, mr_issue_level level, mr_status code,
                      const mr_ann_group *g, const char *item, const char *fmt, va_list ap) {
    mr_report *r = &ld->out->report;
    char *key = NULL;
    if (g && count_in_group(ld, level, g, item, &key)) {
        free(key);
        return;
    }
    char text[2048];
    vsnprintf(text, sizeof text, fmt, ap);
    /* One line each, whatever the file held. */
    for (char *p = text; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (level == MR_ISSUE_ERROR) {
        r->n_errors++;
        if (ld->first_error == MR_OK) {
            ld->first_error = code;
            ld->first_error_text = mr_strdup(text);
        }
    } else {
        r->n_warnings++;
    }
    if (r->n_issues >= ld->max_issues) {
        r->n_issues_dropped++;
        free(key);
        return;
    }
    bool grown =
        mr_grow(&r->issues, &ld->cap_issues, (size_t)r->n_issues + 1, sizeof *r->issues, 16);
    char *copy = mr_strdup(text);
    if (!grown || !copy) {
        /* Out of memory while reporting: keep the count, lose the text. */
        free(copy);
        free(key);
        r->n_issues_dropped++;
        return;
    }
    r->issues[r->n_issues++] = (mr_issue){level, level == MR_ISSUE_ERROR ? code : MR_OK, copy, 1};
    if (!g || !key) {
        free(key);
        return;
    }
    /* The first of a group: later repeats count into this issue. */
    if (!mr_grow(&ld->groups, &ld->cap_groups, (size_t)ld->n_groups + 1, sizeof *ld->groups, 16)) {
        free(key);
        return;
    }
    mr_ann_group_state *gs = &ld->groups[ld->n_groups];
    memset(gs, 0, sizeof *gs);
    gs->issue = r->n_issues - 1;
    gs->noun = g->noun;
    gs->what = mr_strdup(g->what);
    gs->hint = g->hint ? mr_strdup(g->hint) : NULL;
    if ((gs->items[0] = mr_strdup(item))) gs->n_items = 1;
    if (gs->what && (!g->hint || gs->hint) &&
        mr_strmap_put(&ld->group_keys, key, ld->n_groups) == MR_OK) {
        ld->n_groups++;
    } else {
        free(gs->what);
        free(gs->hint);
        free(gs->items[0]);
    }
    free(key);
}

/* Rewrites each issue that stands for several problems as one line naming the first three. */
static void finish_groups(mr_ann_loader *ld, int64_t n_images) {
    mr_report *r = &ld->out->report;
    for (int64_t g = 0; g < ld->n_groups; g++) {
        const mr_ann_group_state *gs = &ld->groups[g];
        mr_issue *is = &r->issues[gs->issue];
        if (is->count < 2) continue;
        char items[700] = "", of[48] = "";
        size_t used = 0;
        for (int k = 0; k < gs->n_items && used + 1 < sizeof items; k++) {
            int w =
                snprintf(items + used, sizeof items - used, "%s%s", k ? ", " : "", gs->items[k]);
            if (w < 0) break;
            used += (size_t)w;
        }
        if (!strcmp(gs->noun, "images")) snprintf(of, sizeof of, " of %lld", (long long)n_images);
        char text[2048];
        snprintf(text, sizeof text, "%s: %lld%s %s %s%s%s%s%s", ld->file, (long long)is->count, of,
                 gs->noun, gs->what, is->count > 3 ? ", first three: " : ": ", items,
                 gs->hint ? "; " : "", gs->hint ? gs->hint : "");
        char *copy = mr_strdup(text);
        if (!copy) continue;
        free(is->text);
        is->text = copy;
    }
}

mr_status mr_ann_error(mr_ann_loader *ld, mr_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    add_issue(ld, MR_ISSUE_ERROR, code, NULL, NULL, fmt, ap);
    va_end(ap);
    return code;
}

mr_status mr_ann_group_error(mr_ann_loader *ld, mr_status code, const mr_ann_group *g,
                             const char *item, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    add_issue(ld, MR_ISSUE_ERROR, code, g, item, fmt, ap);
    va_end(ap);
    return code;
}

void mr_ann_group_warn(mr_ann_loader *ld, const mr_ann_group *g, const char *item, const char *fmt,
                       ...) {
    va_list ap;
    va_start(ap, fmt);
    add_issue(ld, MR_ISSUE_WARNING, MR_OK, g, item, fmt, ap);
    va_end(ap);
}

mr_status mr_ann_region_error(mr_ann_loader *ld, mr_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    add_issue(ld, MR_ISSUE_ERROR, code, NULL, NULL, fmt, ap);
    va_end(ap);
    ld->out->report.n_rejected++;
    return code;
}

void mr_ann_warn(mr_ann_loader *ld, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    add_issue(ld, MR_ISSUE_WARNING, MR_OK, NULL, NULL, fmt, ap);
    va_end(ap);
}

mr_status mr_ann_check_coord(mr_ann_loader *ld, const char *where, const char *field, double v) {
    if (!isfinite(v))
        return mr_ann_region_error(ld, MR_ERR_NUMERIC,
                                   "%s: field '%s' is %s; coordinates must be finite pixel "
                                   "positions",
                                   where, field, isnan(v) ? "NaN" : "infinite (overflowed)");
    if (fabs(v) > MR_ANN_MAX_COORD)
        return mr_ann_region_error(ld, MR_ERR_NUMERIC,
                                   "%s: field '%s' is %g, beyond +-%g px; a typo or corrupt "
                                   "coordinate",
                                   where, field, v, MR_ANN_MAX_COORD);
    return MR_OK;
}

/* ---- classes ------------------------------------------------------------------------------- */

/* Compares ignoring case and surrounding white space. */
static bool label_equal(const char *a, const char *b) {
    while (isspace((unsigned char)*a)) a++;
    while (isspace((unsigned char)*b)) b++;
    size_t la = strlen(a), lb = strlen(b);
    while (la && isspace((unsigned char)a[la - 1])) la--;
    while (lb && isspace((unsigned char)b[lb - 1])) lb--;
    if (la != lb) return false;
    for (size_t i = 0; i < la; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) return false;
    return true;
}

int mr_ann_class_id(const mr_ann_loader *ld, const char *label) {
    const mr_annotations *a = ld->out;
    if (!label) return -1;
    for (int i = 1; i < a->n_classes; i++)
        if (label_equal(a->class_names[i], label)) return i;
    return -1;
}

int mr_ann_class_attr_rank(const mr_ann_loader *ld, const char *name) {
    for (int i = 0; i < ld->n_class_attrs; i++)
        if (!mr_ann_strcasecmp(ld->class_attrs[i], name)) return i;
    return -1;
}

static void known_classes(const mr_ann_loader *ld, char *buf, size_t n) {
    const mr_annotations *a = ld->out;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 1; i < a->n_classes && used + 1 < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i > 1 ? ", " : "", a->class_names[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
}

static const char *near_match(const mr_ann_loader *ld, const char *label) {
    const mr_annotations *a = ld->out;
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (int i = 1; i < a->n_classes; i++) {
        size_t d = mr_edit_distance(label, a->class_names[i]);
        size_t len = strlen(a->class_names[i]);
        size_t limit = len / 3 > 1 ? len / 3 : 1;
        if (d <= limit && d < best_d) {
            best = a->class_names[i];
            best_d = d;
        }
    }
    return best;
}

/* `where` without the leading "FILE: ", to list places under one grouped line. */
static const char *place_of(const mr_ann_loader *ld, const char *where) {
    size_t lf = strlen(ld->file);
    if (!strncmp(where, ld->file, lf) && where[lf] == ':' && where[lf + 1] == ' ')
        return where + lf + 2;
    return where;
}

mr_status mr_ann_unknown_class(mr_ann_loader *ld, const char *where, const char *attr,
                               const char *label, const char *option) {
    char known[512], q[160], qo[96], qa[96], hint[200] = "";
    known_classes(ld, known, sizeof known);
    const char *near = near_match(ld, label);
    if (near) snprintf(hint, sizeof hint, "; did you mean '%s'?", near);
    char opt_text[140] = "";
    if (option)
        snprintf(opt_text, sizeof opt_text, " option '%s'", mr_ann_quote(qo, sizeof qo, option));
    mr_ann_quote(q, sizeof q, label);
    mr_ann_quote(qa, sizeof qa, attr);
    char what[512], how[800];
    snprintf(what, sizeof what, "with unknown class '%s' (attribute '%s'%s)", q, qa, opt_text);
    snprintf(how, sizeof how, "known classes: %s%s", known, hint);
    const mr_ann_group g = {"regions", what, how};
    ld->out->report.n_rejected++;
    return mr_ann_group_error(ld, MR_ERR_FORMAT, &g, place_of(ld, where),
                              "%s: unknown class '%s' (attribute '%s'%s); known classes: %s%s",
                              where, q, qa, opt_text, known, hint);
}

mr_status mr_ann_missing_class(mr_ann_loader *ld, const char *where) {
    char known[512], names[200] = "";
    known_classes(ld, known, sizeof known);
    size_t used = 0;
    for (int i = 0; i < ld->n_class_attrs && used + 1 < sizeof names; i++) {
        int w = snprintf(names + used, sizeof names - used, "%s'%s'", i ? ", " : "",
                         ld->class_attrs[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    char what[400], how[700];
    snprintf(what, sizeof what, "without a class: region attribute %s %s missing or empty", names,
             ld->n_class_attrs > 1 ? "are all" : "is");
    snprintf(how, sizeof how, "known classes: %s; choose the attribute with class_attribute",
             known);
    const mr_ann_group g = {"regions", what, how};
    ld->out->report.n_rejected++;
    return mr_ann_group_error(ld, MR_ERR_FORMAT, &g, place_of(ld, where),
                              "%s: no class: region attribute %s %s missing or empty "
                              "(known classes: %s; choose the attribute with class_attribute)",
                              where, names, ld->n_class_attrs > 1 ? "are all" : "is", known);
}

/* ---- shapes -------------------------------------------------------------------------------- */

void mr_shape_free(mr_shape *s) {
    if (!s) return;
    free(s->xs);
    free(s->ys);
    free(s->ring_ends);
    memset(s, 0, sizeof *s);
}

mr_status mr_shape_copy(const mr_shape *s, mr_shape *out) {
    *out = *s;
    out->xs = out->ys = NULL;
    out->ring_ends = NULL;
    if (s->kind != MR_SHAPE_POLYGON) return MR_OK;
    size_t n = (size_t)s->n_points;
    out->xs = malloc(sizeof(double) * (n ? n : 1));
    out->ys = malloc(sizeof(double) * (n ? n : 1));
    out->ring_ends = malloc(sizeof(int64_t) * (size_t)(s->n_rings ? s->n_rings : 1));
    if (!out->xs || !out->ys || !out->ring_ends) {
        mr_shape_free(out);
        return mr_fail(MR_ERR_NOMEM, "out of memory copying a %lld-point polygon",
                       (long long)s->n_points);
    }
    if (n) {
        memcpy(out->xs, s->xs, sizeof(double) * n);
        memcpy(out->ys, s->ys, sizeof(double) * n);
    }
    if (s->n_rings) memcpy(out->ring_ends, s->ring_ends, sizeof(int64_t) * (size_t)s->n_rings);
    return MR_OK;
}

mr_status mr_shape_to_polygon(const mr_shape *s, int n_segments, mr_shape *out) {
    memset(out, 0, sizeof *out);
    if (s->kind == MR_SHAPE_POLYGON) return mr_shape_copy(s, out);
    int n = s->kind == MR_SHAPE_RECT ? 4 : (n_segments > 2 ? n_segments : 72);
    out->kind = MR_SHAPE_POLYGON;
    out->xs = malloc(sizeof(double) * (size_t)n);
    out->ys = malloc(sizeof(double) * (size_t)n);
    out->ring_ends = malloc(sizeof(int64_t));
    if (!out->xs || !out->ys || !out->ring_ends) {
        mr_shape_free(out);
        return mr_fail(MR_ERR_NOMEM, "out of memory converting a shape to a polygon");
    }
    if (s->kind == MR_SHAPE_RECT) {
        const double x[4] = {s->x, s->x + s->w, s->x + s->w, s->x};
        const double y[4] = {s->y, s->y, s->y + s->h, s->y + s->h};
        memcpy(out->xs, x, sizeof x);
        memcpy(out->ys, y, sizeof y);
    } else {
        /* VIA's own parametrisation (data.md 2.2), so our polygons match its COCO export. */
        double ct = cos(s->theta), st = sin(s->theta);
        for (int i = 0; i < n; i++) {
            double phi = 2.0 * M_PI * i / n;
            double a = s->rx * cos(phi), b = s->ry * sin(phi);
            out->xs[i] = s->cx + a * ct - b * st;
            out->ys[i] = s->cy + a * st + b * ct;
        }
    }
    out->n_points = n;
    out->ring_ends[0] = n;
    out->n_rings = 1;
    return MR_OK;
}

void mr_shape_extent(const mr_shape *s, double box[4]) {
    switch (s->kind) {
    case MR_SHAPE_RECT:
        box[0] = s->y;
        box[1] = s->x;
        box[2] = s->y + s->h;
        box[3] = s->x + s->w;
        return;
    case MR_SHAPE_CIRCLE:
    case MR_SHAPE_ELLIPSE: {
        double ex, ey;
        mr_ellipse_half_extent(s->rx, s->ry, s->theta, &ex, &ey);
        box[0] = s->cy - ey;
        box[1] = s->cx - ex;
        box[2] = s->cy + ey;
        box[3] = s->cx + ex;
        return;
    }
    case MR_SHAPE_POLYGON:
        break;
    }
    if (s->n_points <= 0) {
        box[0] = box[1] = box[2] = box[3] = 0.0;
        return;
    }
    double x0 = s->xs[0], x1 = s->xs[0], y0 = s->ys[0], y1 = s->ys[0];
    for (int64_t i = 1; i < s->n_points; i++) {
        if (s->xs[i] < x0) x0 = s->xs[i];
        if (s->xs[i] > x1) x1 = s->xs[i];
        if (s->ys[i] < y0) y0 = s->ys[i];
        if (s->ys[i] > y1) y1 = s->ys[i];
    }
    box[0] = y0;
    box[1] = x0;
    box[2] = y1;
    box[3] = x1;
}

/* Shoelace area of points [b, e), positive for either orientation. */
static double ring_area(const double *xs, const double *ys, int64_t b, int64_t e) {
    if (e - b < 3) return 0.0;
    /* Relative to the first vertex, so large offsets do not swamp small polygons. */
    double ox = xs[b], oy = ys[b], sum = 0.0;
    for (int64_t i = b + 1; i + 1 < e; i++)
        sum += (xs[i] - ox) * (ys[i + 1] - oy) - (xs[i + 1] - ox) * (ys[i] - oy);
    return fabs(sum) * 0.5;
}

double mr_shape_area(const mr_shape *s) {
    switch (s->kind) {
    case MR_SHAPE_RECT:
        return fabs(s->w * s->h);
    case MR_SHAPE_CIRCLE:
    case MR_SHAPE_ELLIPSE:
        return M_PI * fabs(s->rx * s->ry);
    case MR_SHAPE_POLYGON:
        break;
    }
    double a = 0.0;
    for (int k = 0; k < s->n_rings; k++)
        a += ring_area(s->xs, s->ys, k ? s->ring_ends[k - 1] : 0, s->ring_ends[k]);
    return a;
}

int64_t mr_shape_rasterize(const mr_shape *s, uint8_t *mask, int width, int height, uint8_t value) {
    if (width <= 0 || height <= 0) return 0;
    switch (s->kind) {
    case MR_SHAPE_RECT: {
        double xs[4] = {s->x, s->x + s->w, s->x + s->w, s->x};
        double ys[4] = {s->y, s->y, s->y + s->h, s->y + s->h};
        return mr_raster_polygon(mask, width, height, xs, ys, 4, value);
    }
    case MR_SHAPE_CIRCLE:
    case MR_SHAPE_ELLIPSE:
        return mr_raster_ellipse(mask, width, height, s->cx, s->cy, s->rx, s->ry, s->theta, NULL,
                                 value);
    case MR_SHAPE_POLYGON:
        break;
    }
    int64_t set = 0;
    for (int k = 0; k < s->n_rings; k++) {
        int64_t b = k ? s->ring_ends[k - 1] : 0, e = s->ring_ends[k];
        if (e - b < 3 || e - b > INT32_MAX) continue;
        set += mr_raster_polygon(mask, width, height, s->xs + b, s->ys + b, (int)(e - b), value);
    }
    return set;
}

/* ---- polygon clean-up and clipping --------------------------------------------------------- */

/* Removes consecutive duplicate vertices (and a last vertex equal to the first, which VIA 1.x
 * writes to close polygons) from [b, e) in place. Returns the new end. */
static int64_t ring_dedup(double *xs, double *ys, int64_t b, int64_t e) {
    int64_t w = b;
    for (int64_t i = b; i < e; i++) {
        if (w > b && xs[i] == xs[w - 1] && ys[i] == ys[w - 1]) continue;
        xs[w] = xs[i];
        ys[w] = ys[i];
        w++;
    }
    while (w - b > 1 && xs[w - 1] == xs[b] && ys[w - 1] == ys[b]) w--;
    return w;
}

/* Sutherland-Hodgman against one side of the image: keeps points with sign * (coord - limit)
 * <= 0, on x when `axis` is 0, else y. Linear in the ring's length. */
static int64_t clip_side(const double *ix, const double *iy, int64_t n, double *ox, double *oy,
                         int axis, double limit, double sign) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = (i + 1) % n;
        double ci = (axis ? iy[i] : ix[i]) - limit, cj = (axis ? iy[j] : ix[j]) - limit;
        bool in_i = sign * ci <= 0.0, in_j = sign * cj <= 0.0;
        if (in_i) {
            ox[m] = ix[i];
            oy[m] = iy[i];
            m++;
        }
        if (in_i != in_j) {
            double t = ci / (ci - cj);
            double x = ix[i] + t * (ix[j] - ix[i]), y = iy[i] + t * (iy[j] - iy[i]);
            if (axis)
                y = limit;
            else
                x = limit;
            ox[m] = x;
            oy[m] = y;
            m++;
        }
    }
    return m;
}

/* Clips a ring of n points to [0, w] x [0, h] into new arrays (*rx, *ry, *rn points). Each
 * pass emits at most two points per input vertex, so its output is sized 2m + 1. */
static mr_status clip_ring(const double *xs, const double *ys, int64_t n, double w, double h,
                           double **rx, double **ry, int64_t *rn) {
    static const int axis[4] = {0, 0, 1, 1};
    const double limit[4] = {0.0, w, 0.0, h}, sign[4] = {-1.0, 1.0, -1.0, 1.0};
    const double *ix = xs, *iy = ys;
    double *ox = NULL, *oy = NULL;
    int64_t m = n;
    for (int pass = 0; pass < 4 && m > 0; pass++) {
        double *nx = malloc(sizeof(double) * (size_t)(2 * m + 1));
        double *ny = malloc(sizeof(double) * (size_t)(2 * m + 1));
        if (!nx || !ny) {
            free(nx);
            free(ny);
            if (ix != xs) {
                free((double *)ix);
                free((double *)iy);
            }
            return mr_fail(MR_ERR_NOMEM, "out of memory clipping a %lld-point polygon",
                           (long long)n);
        }
        m = clip_side(ix, iy, m, nx, ny, axis[pass], limit[pass], sign[pass]);
        if (ix != xs) {
            free((double *)ix);
            free((double *)iy);
        }
        ix = ox = nx;
        iy = oy = ny;
    }
    if (!ox) { /* nothing to clip */
        ox = malloc(sizeof(double));
        oy = malloc(sizeof(double));
        m = 0;
        if (!ox || !oy) {
            free(ox);
            free(oy);
            return mr_fail(MR_ERR_NOMEM, "out of memory");
        }
    }
    *rx = ox;
    *ry = oy;
    *rn = m;
    return MR_OK;
}

/* What clean_polygon did, for the caller's warnings. */
typedef struct {
    int64_t outside_points; /* vertices outside the image */
    int dropped_few;        /* rings with fewer than 3 distinct points */
    int dropped_flat;       /* rings with zero area */
    int dropped_outside;    /* rings with no area inside the image */
    int64_t min_distinct;   /* distinct points of the smallest dropped ring */
} poly_stats;

/* Keeps the rings of a polygon that still have area after dedup and (when w > 0) clipping to
 * [0, w] x [0, h]. Linear in the number of vertices. */
static mr_status clean_polygon(mr_shape *s, double w, double h, poly_stats *st) {
    memset(st, 0, sizeof *st);
    st->min_distinct = INT64_MAX;
    /* Pass 1: dedup in place and count outside vertices. */
    int64_t *ends = s->ring_ends;
    int64_t write = 0, begin = 0;
    int kept_rings = 0;
    for (int k = 0; k < s->n_rings; k++) {
        int64_t e = ends[k];
        int64_t ne = ring_dedup(s->xs, s->ys, begin, e);
        int64_t len = ne - begin;
        /* Compact ring to `write`. */
        if (write != begin) {
            memmove(s->xs + write, s->xs + begin, sizeof(double) * (size_t)len);
            memmove(s->ys + write, s->ys + begin, sizeof(double) * (size_t)len);
        }
        begin = e;
        if (len < 3) {
            st->dropped_few++;
            if (len < st->min_distinct) st->min_distinct = len;
            continue;
        }
        if (ring_area(s->xs, s->ys, write, write + len) < 1e-9) {
            st->dropped_flat++;
            continue;
        }
        write += len;
        ends[kept_rings++] = write;
    }
    s->n_rings = kept_rings;
    s->n_points = write;
    if (w <= 0.0 || h <= 0.0 || !kept_rings) return MR_OK;
    for (int64_t i = 0; i < s->n_points; i++)
        if (s->xs[i] < 0.0 || s->xs[i] > w || s->ys[i] < 0.0 || s->ys[i] > h) st->outside_points++;
    if (!st->outside_points) return MR_OK;
    /* Pass 2: clip each ring to the image, into new arrays. */
    double *nx = NULL, *ny = NULL;
    size_t cap_x = 0, cap_y = 0;
    int64_t n = 0;
    int out_rings = 0;
    begin = 0;
    for (int k = 0; k < s->n_rings; k++) {
        int64_t e = ends[k];
        double *cx = NULL, *cy = NULL;
        int64_t m = 0;
        mr_status rc = clip_ring(s->xs + begin, s->ys + begin, e - begin, w, h, &cx, &cy, &m);
        begin = e;
        if (rc != MR_OK) {
            free(nx);
            free(ny);
            return rc;
        }
        m = ring_dedup(cx, cy, 0, m);
        if (m < 3 || ring_area(cx, cy, 0, m) < 1e-9) {
            st->dropped_outside++;
            free(cx);
            free(cy);
            continue;
        }
        if (!mr_grow(&nx, &cap_x, (size_t)(n + m), sizeof *nx, 64) ||
            !mr_grow(&ny, &cap_y, (size_t)(n + m), sizeof *ny, 64)) {
            free(nx);
            free(ny);
            free(cx);
            free(cy);
            return mr_fail(MR_ERR_NOMEM, "out of memory clipping a polygon");
        }
        memcpy(nx + n, cx, sizeof(double) * (size_t)m);
        memcpy(ny + n, cy, sizeof(double) * (size_t)m);
        free(cx);
        free(cy);
        n += m;
        ends[out_rings++] = n;
    }
    free(s->xs);
    free(s->ys);
    s->xs = nx;
    s->ys = ny;
    s->n_points = n;
    s->n_rings = out_rings;
    return MR_OK;
}

/* ---- records and instances ----------------------------------------------------------------- */

static bool is_url(const char *s) {
    return strstr(s, "://") != NULL;
}

/* A path written on Windows ("C:\scans\a.png", "C:/scans", "\\server\share", "/C:/..." from a
 * file:///C:/ URL): never a path on this machine. */
static bool is_windows_path(const char *s) {
    if (s[0] == '/' && isalpha((unsigned char)s[1]) && s[2] == ':') return true;
    if (isalpha((unsigned char)s[0]) && s[1] == ':' && (s[2] == '\\' || s[2] == '/')) return true;
    return strchr(s, '\\') != NULL;
}

static char *join_path(const char *dir, const char *name) {
    while (name[0] == '.' && name[1] == '/') name += 2;
    if (name[0] == '/' || !dir || !dir[0] || !strcmp(dir, ".")) return mr_strdup(name);
    size_t ld = strlen(dir), ln = strlen(name);
    char *p = malloc(ld + ln + 2);
    if (!p) return NULL;
    memcpy(p, dir, ld);
    size_t at = ld;
    if (ld && dir[ld - 1] != '/') p[at++] = '/';
    memcpy(p + at, name, ln + 1);
    return p;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* URLs write "BUS%20scans/benign%20(1).png"; the file on disk has the spaces. */
static void percent_decode(char *s) {
    char *w = s;
    for (const char *r = s; *r; r++) {
        int hi, lo;
        if (r[0] == '%' && (hi = hex_value(r[1])) >= 0 && (lo = hex_value(r[2])) >= 0 &&
            (hi || lo)) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

/* The last component of a path written with '/' or '\', or of a URL (without ?query or
 * #fragment); NULL when there is none. */
static char *base_name(const char *full, bool url) {
    size_t end = strlen(full);
    if (url) end = strcspn(full, "?#");
    size_t start = end;
    while (start > 0 && full[start - 1] != '/' && full[start - 1] != '\\') start--;
    if (start == end) return NULL;
    char *b = malloc(end - start + 1);
    if (!b) return NULL;
    memcpy(b, full + start, end - start);
    b[end - start] = '\0';
    if (url) percent_decode(b);
    return b;
}

static bool is_regular_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Where one image may be: candidate paths in the order they are tried. */
#define MAX_CANDIDATES 5
typedef struct {
    char *path[MAX_CANDIDATES];
    int where[MAX_CANDIDATES]; /* MR_FOUND_* */
    int n;
    char *recorded; /* the path the annotation file records, resolved as VIA would */
    bool foreign;   /* a URL or a Windows path: not a path on this machine */
    bool remote;    /* an http(s) or other non-file URL */
} candidates;

static void candidates_free(candidates *c) {
    for (int i = 0; i < c->n; i++) free(c->path[i]);
    free(c->recorded);
    memset(c, 0, sizeof *c);
}

static bool add_candidate(candidates *c, char *path, int where) {
    if (!path) return false;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->path[i], path)) {
            free(path);
            return true;
        }
    c->path[c->n] = path;
    c->where[c->n++] = where;
    return true;
}

/* prefix + filename as VIA resolves it (file:// URLs become paths), then the fallbacks of
 * mr_load_options.image_root: the filename and its base name beside the annotation file, then
 * under the image root. */
static mr_status image_candidates(const mr_ann_loader *ld, const char *prefix, const char *name,
                                  candidates *c) {
    memset(c, 0, sizeof *c);
    size_t lp = prefix ? strlen(prefix) : 0, lf = strlen(name);
    char *full = malloc(lp + lf + 1);
    if (!full) return mr_fail(MR_ERR_NOMEM, "out of memory");
    if (lp) memcpy(full, prefix, lp);
    memcpy(full + lp, name, lf + 1);
    if (!strncmp(full, "file://", 7)) {
        memmove(full, full + 7, strlen(full + 7) + 1);
        percent_decode(full);
    }
    c->remote = is_url(full);
    c->foreign = c->remote || is_windows_path(full);
    const char *root = ld->opt->image_root && ld->opt->image_root[0] ? ld->opt->image_root : NULL;
    bool ok = true;
    if (c->foreign) {
        c->recorded = mr_strdup(full);
        ok = c->recorded != NULL;
    } else {
        /* A plain relative name is where the caller said images are: the image root when
         * given, else beside the annotation file. */
        int where = full[0] == '/' || lp ? MR_FOUND_RECORDED
                    : root               ? MR_FOUND_ROOT
                                         : MR_FOUND_BESIDE;
        c->recorded = join_path(ld->base_dir, full);
        ok = c->recorded && add_candidate(c, mr_strdup(c->recorded), where);
    }
    const char *rel = !c->foreign && full[0] != '/' ? full : NULL;
    char *base = base_name(full, c->remote);
    const char *dirs[2] = {ld->ann_dir, root};
    const int kinds[2] = {MR_FOUND_BESIDE, MR_FOUND_ROOT};
    for (int d = 0; d < 2 && ok; d++) {
        if (!dirs[d]) continue;
        if (rel) ok = add_candidate(c, join_path(dirs[d], rel), kinds[d]);
        if (ok && base) ok = add_candidate(c, join_path(dirs[d], base), kinds[d]);
    }
    free(base);
    free(full);
    if (!ok) {
        candidates_free(c);
        return mr_fail(MR_ERR_NOMEM, "out of memory");
    }
    return MR_OK;
}

/* A missing image: one line naming its recorded path and where else it was looked for; many
 * of them group into one ("266 of 266 images not found ..."). */
static void report_missing(mr_ann_loader *ld, const mr_image_record *r, const candidates *c) {
    char qk[200], qp[600], qf[300], qa[300], qr[300], places[700], why[400] = "", what[1400];
    const char *root = ld->opt->image_root && ld->opt->image_root[0] ? ld->opt->image_root : NULL;
    mr_ann_quote(qk, sizeof qk, r->key);
    mr_ann_quote(qp, sizeof qp, c->recorded);
    mr_ann_quote(qf, sizeof qf, r->filename);
    mr_ann_quote(qa, sizeof qa, ld->ann_dir);
    if (root)
        snprintf(places, sizeof places,
                 "beside the annotation file (%s) or under the image root (%s)", qa,
                 mr_ann_quote(qr, sizeof qr, root));
    else
        snprintf(places, sizeof places, "beside the annotation file (%s)", qa);
    if (ld->default_path && c->foreign) {
        char qd[300];
        snprintf(why, sizeof why, "; the default path '%s' is not on this machine",
                 mr_ann_quote(qd, sizeof qd, ld->default_path));
    }
    char item[320];
    snprintf(item, sizeof item, "'%s'", qf);
    if (c->remote) {
        snprintf(what, sizeof what, "are URLs with no copy %s", places);
        const mr_ann_group g = {"images", what,
                                "download them and give their folder with --image-root DIR (or "
                                "IMAGE_ROOT in the config)"};
        mr_ann_group_error(ld, MR_ERR_IO, &g, item,
                           "%s: image '%s': %s is a URL, and no copy was found %s; download it "
                           "and give its folder with --image-root DIR (or IMAGE_ROOT in the "
                           "config)",
                           ld->file, qk, qp, places);
        return;
    }
    /* A folder or an unreadable file at the recorded path says more than "not found". */
    struct stat sb;
    if (!c->foreign && stat(c->recorded, &sb) == 0) {
        mr_ann_error(ld, MR_ERR_IO, "%s: image '%s' is %s, not an image file", qp, qk,
                     S_ISDIR(sb.st_mode) ? "a folder" : "not a regular file");
        return;
    }
    if (!c->foreign && errno != ENOENT && errno != ENOTDIR) {
        mr_ann_error(ld, MR_ERR_IO, "%s: cannot open image: %s (image '%s' in %s)", qp,
                     strerror(errno), qk, ld->file);
        return;
    }
    const bool more = c->foreign ? c->n > 0 : c->n > 1;
    char hint[700];
    snprintf(what, sizeof what, "not found %s", places);
    snprintf(hint, sizeof hint,
             "%s%sgive the image folder with --image-root DIR (or IMAGE_ROOT in the config)",
             why[0] ? why + 2 : "", why[0] ? "; " : ""); /* why starts with "; " */
    const mr_ann_group g = {"images", what, hint};
    mr_ann_group_error(ld, MR_ERR_IO, &g, item,
                       "%s: image file not found (image '%s' in %s%s%s%s); give the image folder "
                       "with --image-root DIR (or IMAGE_ROOT in the config)",
                       qp, qk, ld->file, more ? "; also looked " : "", more ? places : "", why);
}

mr_status mr_ann_add_record(mr_ann_loader *ld, const char *key, const char *filename,
                            const char *prefix, const char *src, int known_w, int known_h,
                            int64_t *index) {
    mr_annotations *a = ld->out;
    *index = -1;
    if ((size_t)a->n == ld->cap_records) {
        /* The records and the loader's per-record arrays grow together; cap_records counts the
         * new size once all four have it. */
        size_t need = (size_t)a->n + 1, cap = ld->cap_records, cap_rej = cap, cap_had = cap,
               cap_bytes = cap;
        if (!mr_grow(&a->records, &cap, need, sizeof *a->records, 64) ||
            !mr_grow(&ld->rejected, &cap_rej, need, sizeof *ld->rejected, 64) ||
            !mr_grow(&ld->had_regions, &cap_had, need, sizeof *ld->had_regions, 64) ||
            !mr_grow(&ld->file_bytes, &cap_bytes, need, sizeof *ld->file_bytes, 64))
            return mr_fail(MR_ERR_NOMEM, "out of memory for %zu images",
                           ld->cap_records ? 2 * ld->cap_records : 64);
        ld->cap_records = cap;
    }
    if (prefix && prefix[0] && !ld->default_path) {
        ld->default_path = mr_strdup(prefix);
        if (!ld->default_path) return mr_fail(MR_ERR_NOMEM, "out of memory");
    }
    candidates c;
    MR_TRY(image_candidates(ld, prefix, src ? src : filename, &c));
    int found = -1;
    for (int i = 0; i < c.n && found < 0; i++)
        if (is_regular_file(c.path[i])) found = i;
    mr_image_record *r = &a->records[a->n];
    memset(r, 0, sizeof *r);
    r->image_label = -1;
    r->key = mr_strdup(key);
    r->filename = mr_strdup(filename);
    r->path = mr_strdup(found >= 0 ? c.path[found] : c.recorded);
    if (!r->key || !r->filename || !r->path) {
        free(r->key);
        free(r->filename);
        free(r->path);
        candidates_free(&c);
        return mr_fail(MR_ERR_NOMEM, "out of memory");
    }
    ld->rejected[a->n] = false;
    ld->had_regions[a->n] = false;
    ld->file_bytes[a->n] = -1;
    *index = a->n++;
    if (found >= 0) {
        ld->found[c.where[found]]++;
        ld->n_fallback += found > 0 || c.foreign;
    }

    char qk[200], qp[600];
    mr_ann_quote(qk, sizeof qk, key);
    mr_ann_quote(qp, sizeof qp, r->path);
    int64_t seen = mr_strmap_get(&ld->paths, r->path);
    if (seen >= 0) {
        char qs[200];
        mr_ann_warn(ld, "%s: image '%s' is listed twice (also as image '%s'); both are kept",
                    ld->file, qp, mr_ann_quote(qs, sizeof qs, a->records[seen].key));
    } else {
        mr_status st = mr_strmap_put(&ld->paths, r->path, *index);
        if (st != MR_OK) {
            candidates_free(&c);
            return st;
        }
    }

    if (found < 0) {
        if (ld->opt->allow_missing_images) {
            r->width = known_w > 0 ? known_w : 0;
            r->height = known_h > 0 ? known_h : 0;
        } else {
            ld->rejected[*index] = true;
            report_missing(ld, r, &c);
        }
        candidates_free(&c);
        return MR_OK;
    }
    candidates_free(&c);
    struct stat sb;
    if (stat(r->path, &sb) == 0) ld->file_bytes[*index] = (int64_t)sb.st_size;
    int w = 0, h = 0;
    mr_status st = mr_image_size(r->path, &w, &h);
    if (st != MR_OK || w <= 0 || h <= 0) {
        ld->rejected[*index] = true;
        char msg[700];
        mr_ann_quote(msg, sizeof msg, st != MR_OK ? mr_last_error() : "zero-sized image");
        mr_ann_error(ld, st == MR_ERR_NOMEM ? MR_ERR_NOMEM : MR_ERR_FORMAT, "%s (image '%s' in %s)",
                     msg, qk, ld->file);
        return MR_OK;
    }
    r->width = w;
    r->height = h;
    if (known_w > 0 && known_h > 0 && (known_w != w || known_h != h))
        mr_ann_warn(ld,
                    "%s: image '%s': the annotation file says %dx%d but %s is %dx%d; using the "
                    "file's size",
                    ld->file, qk, known_w, known_h, qp, w, h);
    return MR_OK;
}

void mr_ann_check_file_bytes(mr_ann_loader *ld, int64_t rec, int64_t recorded) {
    if (rec < 0 || rec >= ld->out->n || ld->rejected[rec] || recorded < 1) return;
    int64_t on_disk = ld->file_bytes[rec];
    if (on_disk < 0 || on_disk == recorded) return;
    const mr_image_record *r = &ld->out->records[rec];
    char qf[300], qp[600], item[400];
    mr_ann_quote(qf, sizeof qf, r->filename);
    snprintf(item, sizeof item, "'%s' (%lld bytes, key %lld)", qf, (long long)on_disk,
             (long long)recorded);
    const mr_ann_group g = {"images", "differ in size from the files that were annotated",
                            "VIA keys record each file's size in bytes: were they re-exported, "
                            "converted or resized since? check that their regions still fit"};
    mr_ann_group_warn(ld, &g, item,
                      "%s: image '%s': %s is %lld bytes but its VIA key records %lld; the file "
                      "changed since it was annotated (re-exported, converted or resized?): check "
                      "that its regions still fit",
                      ld->file, qf, mr_ann_quote(qp, sizeof qp, r->path), (long long)on_disk,
                      (long long)recorded);
}

static mr_status push_instance(mr_image_record *r, const mr_region *inst) {
    /* Doubling capacity, tracked implicitly: the array is full when n is 0 or a power of two
     * >= 4, and then holds exactly n. */
    size_t n = (size_t)r->n_instances, cap = n;
    if ((n == 0 || (n >= 4 && (n & (n - 1)) == 0)) &&
        !mr_grow(&r->instances, &cap, n + 1, sizeof *r->instances, 4))
        return mr_fail(MR_ERR_NOMEM, "out of memory for %zu instances", n ? 2 * n : 4);
    r->instances[r->n_instances++] = *inst;
    return MR_OK;
}

static void clip_box(double box[4], double w, double h) {
    if (w <= 0.0 || h <= 0.0) return;
    if (box[0] < 0.0) box[0] = 0.0;
    if (box[1] < 0.0) box[1] = 0.0;
    if (box[2] > h) box[2] = h;
    if (box[3] > w) box[3] = w;
}

/* A region wholly outside its image is an error, not a skipped shape: left out, its lesion would
 * vanish and the image would train as a normal negative. Returns MR_OK (the load goes on). */
static mr_status region_outside(mr_ann_loader *ld, const mr_image_record *r, const char *where,
                                const char *shape) {
    ld->out->report.n_outside++;
    ld->out->report.n_rejected++;
    const mr_ann_group g = {"regions", "lie wholly outside their image",
                            "were they drawn on another image, or was the image cropped or "
                            "resized since? fix or delete them"};
    mr_ann_group_error(ld, MR_ERR_FORMAT, &g, place_of(ld, where),
                       "%s: %s lies wholly outside the %dx%d image; left out, its lesion would be "
                       "lost and the image taken as a normal negative: was it drawn on another "
                       "image, or was the image cropped or resized since? fix or delete it",
                       where, shape, r->width, r->height);
    return MR_OK;
}

mr_status mr_ann_add_instance(mr_ann_loader *ld, int64_t rec, mr_shape *shape, int class_id,
                              const char *class_name, int64_t region, const char *where) {
    mr_annotations *a = ld->out;
    mr_report *rep = &a->report;
    mr_image_record *r = &a->records[rec];
    double w = r->width, h = r->height;
    bool sized = r->width > 0 && r->height > 0;
    mr_status st = MR_OK;

    if (shape->kind == MR_SHAPE_POLYGON) {
        int64_t before = shape->n_points;
        poly_stats ps;
        st = clean_polygon(shape, sized ? w : 0.0, sized ? h : 0.0, &ps);
        if (st != MR_OK) goto done;
        if (!shape->n_rings && ps.dropped_outside) {
            st = region_outside(ld, r, where, "polygon");
            goto done;
        }
        if (ps.outside_points) {
            rep->n_clipped_points += ps.outside_points;
            rep->n_clipped_regions++;
            mr_ann_warn(ld, "%s: %lld of %lld points lie outside the %dx%d image; clipped to it",
                        where, (long long)ps.outside_points, (long long)before, r->width,
                        r->height);
        }
        if (!shape->n_rings) {
            rep->n_degenerate++;
            if (ps.dropped_few)
                mr_ann_warn(ld, "%s: polygon has %lld distinct points (a polygon needs 3); skipped",
                            where, (long long)ps.min_distinct);
            else
                mr_ann_warn(ld, "%s: polygon has zero area (all points on one line); skipped",
                            where);
            goto done;
        }
    } else {
        double area = mr_shape_area(shape);
        if (!(area > 0.0)) {
            rep->n_degenerate++;
            mr_ann_warn(ld, "%s: %s has zero size; skipped", where,
                        shape->kind == MR_SHAPE_RECT     ? "rect"
                        : shape->kind == MR_SHAPE_CIRCLE ? "circle"
                                                         : "ellipse");
            goto done;
        }
        if (sized) {
            double box[4];
            mr_shape_extent(shape, box);
            if (box[2] <= 0.0 || box[3] <= 0.0 || box[0] >= h || box[1] >= w) {
                st = region_outside(ld, r, where,
                                    shape->kind == MR_SHAPE_RECT     ? "rect"
                                    : shape->kind == MR_SHAPE_CIRCLE ? "circle"
                                                                     : "ellipse");
                goto done;
            }
            if (box[0] < 0.0 || box[1] < 0.0 || box[2] > h || box[3] > w) {
                rep->n_clipped_regions++;
                if (shape->kind == MR_SHAPE_RECT) {
                    /* A rect stays a rect: intersect it with the image. */
                    int outside = 0;
                    const double cxs[4] = {box[1], box[3], box[3], box[1]};
                    const double cys[4] = {box[0], box[0], box[2], box[2]};
                    for (int i = 0; i < 4; i++)
                        outside += cxs[i] < 0.0 || cxs[i] > w || cys[i] < 0.0 || cys[i] > h;
                    rep->n_clipped_points += outside;
                    clip_box(box, w, h);
                    shape->x = box[1];
                    shape->y = box[0];
                    shape->w = box[3] - box[1];
                    shape->h = box[2] - box[0];
                    mr_ann_warn(ld, "%s: %d of 4 rect corners lie outside the %dx%d image; clipped",
                                where, outside, r->width, r->height);
                } else {
                    /* Circles and ellipses stay exact; the rasteriser and the box clip them. */
                    mr_ann_warn(ld, "%s: %s reaches outside the %dx%d image; clipped", where,
                                shape->kind == MR_SHAPE_CIRCLE ? "circle" : "ellipse", r->width,
                                r->height);
                }
            }
        }
    }

    mr_region inst;
    memset(&inst, 0, sizeof inst);
    inst.class_id = class_id;
    inst.region = region;
    inst.class_name = class_name ? mr_strdup(class_name) : NULL;
    if (class_name && !inst.class_name) {
        st = mr_fail(MR_ERR_NOMEM, "out of memory");
        goto done;
    }
    inst.shape = *shape;
    mr_shape_extent(&inst.shape, inst.box);
    if (sized) clip_box(inst.box, w, h);
    st = push_instance(r, &inst);
    if (st != MR_OK) {
        free(inst.class_name);
        goto done;
    }
    memset(shape, 0, sizeof *shape); /* ownership moved into the record */
    return MR_OK;
done:
    mr_shape_free(shape);
    return st;
}

void mr_ann_note_region(mr_ann_loader *ld, int64_t rec) {
    if (rec >= 0 && rec < ld->out->n) ld->had_regions[rec] = true;
}

mr_status mr_ann_set_image_label(mr_ann_loader *ld, int64_t rec, const char *label) {
    mr_image_record *r = &ld->out->records[rec];
    if (!label || !label[0] || r->image_label_name) return MR_OK;
    r->image_label_name = mr_strdup(label);
    if (!r->image_label_name) return mr_fail(MR_ERR_NOMEM, "out of memory");
    r->image_label = ld->out->single_class ? -1 : mr_ann_class_id(ld, label);
    return MR_OK;
}

void mr_annotations_bbox(const mr_region *inst, double box[4]) {
    memcpy(box, inst->box, sizeof inst->box);
}

/* ---- loading ------------------------------------------------------------------------------- */

static void record_free(mr_image_record *r) {
    for (int64_t k = 0; k < r->n_instances; k++) {
        free(r->instances[k].class_name);
        mr_shape_free(&r->instances[k].shape);
    }
    free(r->instances);
    free(r->path);
    free(r->filename);
    free(r->key);
    free(r->image_label_name);
}

void mr_annotations_keep(mr_annotations *a, const bool *keep) {
    int64_t kept = 0;
    for (int64_t i = 0; i < a->n; i++) {
        if (keep[i])
            a->records[kept++] = a->records[i];
        else
            record_free(&a->records[i]);
    }
    a->n = kept;
}

void mr_annotations_free(mr_annotations *a) {
    if (!a) return;
    for (int64_t i = 0; i < a->n; i++) record_free(&a->records[i]);
    free(a->records);
    for (int i = 0; i < a->n_classes; i++) free(a->class_names[i]);
    free(a->class_names);
    for (int64_t i = 0; i < a->report.n_issues; i++) free(a->report.issues[i].text);
    free(a->report.issues);
    free(a->report.images_note);
    free(a->report.kinds);
    free(a->source);
    free(a->attributes_path);
    memset(a, 0, sizeof *a);
}

mr_status mr_annotations_split(mr_annotations *a, const bool *take, mr_annotations *out) {
    memset(out, 0, sizeof *out);
    out->format = a->format;
    out->single_class = a->single_class;
    out->source = mr_strdup(a->source);
    out->attributes_path = mr_strdup(a->attributes_path);
    out->class_names = calloc((size_t)(a->n_classes ? a->n_classes : 1), sizeof *out->class_names);
    int64_t n_take = 0;
    for (int64_t i = 0; i < a->n; i++) n_take += take[i];
    out->records = malloc(sizeof *out->records * (size_t)(n_take ? n_take : 1));
    bool ok = out->source && (!a->attributes_path || out->attributes_path) && out->class_names &&
              out->records;
    for (int i = 0; ok && i < a->n_classes; i++) {
        out->class_names[i] = mr_strdup(a->class_names[i]);
        ok = out->class_names[i] != NULL;
        out->n_classes = i + 1;
    }
    if (!ok) return mr_fail(MR_ERR_NOMEM, "out of memory splitting %lld images", (long long)a->n);
    int64_t kept = 0;
    for (int64_t i = 0; i < a->n; i++) {
        if (take[i])
            out->records[out->n++] = a->records[i];
        else
            a->records[kept++] = a->records[i];
    }
    a->n = kept;
    for (int64_t i = 0; i < out->n; i++) out->report.n_negatives += out->records[i].negative;
    a->report.n_negatives -= out->report.n_negatives;
    return MR_OK;
}

static mr_status set_classes(mr_annotations *a, const mr_load_options *opt) {
    int given = opt->class_names ? opt->n_class_names : 0;
    if (given < 0) return mr_fail(MR_ERR_ARG, "class list: negative count %d", given);
    bool has_bg = given > 0 && opt->class_names[0] && !mr_ann_strcasecmp(opt->class_names[0], "BG");
    a->single_class = given == 0;
    int n = a->single_class ? 2 : given + (has_bg ? 0 : 1);
    if (n < 2)
        return mr_fail(MR_ERR_ARG, "class list holds only \"BG\"; give at least one class, or "
                                   "no list at all for a single class");
    a->class_names = calloc((size_t)n, sizeof *a->class_names);
    if (!a->class_names) return mr_fail(MR_ERR_NOMEM, "out of memory");
    a->n_classes = n;
    for (int i = 0; i < n; i++) {
        const char *name = i == 0            ? "BG"
                           : a->single_class ? "object"
                                             : opt->class_names[i - (has_bg ? 0 : 1)];
        if (!name || !name[0] || (i > 0 && !mr_ann_strcasecmp(name, "BG")))
            return mr_fail(MR_ERR_ARG,
                           "class list: class %d is %s; class names must be "
                           "non-empty, and \"BG\" may only come first",
                           i, !name || !name[0] ? "empty" : "\"BG\"");
        for (int k = 1; k < i; k++)
            if (!mr_ann_strcasecmp(a->class_names[k], name))
                return mr_fail(MR_ERR_ARG, "class list: '%s' is listed twice (classes %d and %d)",
                               name, k, i);
        a->class_names[i] = mr_strdup(name);
        if (!a->class_names[i]) return mr_fail(MR_ERR_NOMEM, "out of memory");
    }
    return MR_OK;
}

static bool has_suffix(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && !mr_ann_strcasecmp(s + ls - lx, suffix);
}

static int cmp_str(const void *x, const void *y) {
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* A folder stands for the one annotation file in it. */
static mr_status pick_annotation_file(const char *dir, char **out) {
    *out = NULL;
    char *preferred = join_path(dir, "via_region_data.json");
    if (!preferred) return mr_fail(MR_ERR_NOMEM, "out of memory");
    struct stat sb;
    if (stat(preferred, &sb) == 0 && S_ISREG(sb.st_mode)) {
        *out = preferred;
        return MR_OK;
    }
    free(preferred);
    DIR *d = opendir(dir);
    if (!d) return mr_fail(MR_ERR_IO, "%s: cannot list the folder: %s", dir, strerror(errno));
    char **names = NULL;
    int n = 0;
    size_t cap = 0;
    mr_status st = MR_OK;
    for (struct dirent *e; (e = readdir(d));) {
        const char *nm = e->d_name;
        if (nm[0] == '.' || strstr(nm, "attributes")) continue;
        if (!has_suffix(nm, ".json") && !has_suffix(nm, ".csv")) continue;
        char *full = join_path(dir, nm);
        if (!full || !mr_grow(&names, &cap, (size_t)n + 1, sizeof *names, 16)) {
            free(full);
            st = mr_fail(MR_ERR_NOMEM, "out of memory");
            break;
        }
        if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode))
            names[n++] = full;
        else
            free(full);
    }
    closedir(d);
    if (st == MR_OK && n == 0)
        st = mr_fail(MR_ERR_IO,
                     "%s: no annotation file in the folder (expected "
                     "via_region_data.json, one *.json or one *.csv)",
                     dir);
    if (st == MR_OK && n > 1) {
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        char list[1024] = "";
        size_t used = 0;
        for (int i = 0; i < n && used + 1 < sizeof list; i++) {
            const char *base = strrchr(names[i], '/');
            int w = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "",
                             base ? base + 1 : names[i]);
            if (w < 0) break;
            used += (size_t)w;
        }
        st = mr_fail(MR_ERR_ARG,
                     "%s: %d annotation files in the folder (%s); name the one to "
                     "load",
                     dir, n, list);
    }
    if (st == MR_OK) {
        *out = names[0];
        names[0] = NULL;
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return mr_strdup(".");
    if (slash == path) return mr_strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

/* Drops records whose image is missing or unreadable: they were reported as errors, and a
 * consumer should never see an image it cannot open. Warns about images whose regions all
 * vanished: training would take them as background. */
static void drop_rejected(mr_ann_loader *ld) {
    mr_annotations *a = ld->out;
    int64_t w = 0;
    for (int64_t i = 0; i < a->n; i++) {
        /* Only in an otherwise clean load: with errors, the regions' own errors say it. */
        if (!ld->rejected[i] && ld->had_regions[i] && a->records[i].n_instances == 0 &&
            a->report.n_errors == 0) {
            char qk[200];
            mr_ann_warn(ld,
                        "%s: image '%s': none of its regions became an instance (points, lines, "
                        "degenerate or rejected shapes); it counts as a negative",
                        ld->file, mr_ann_quote(qk, sizeof qk, a->records[i].key));
        }
        if (ld->rejected[i]) {
            record_free(&a->records[i]);
            continue;
        }
        a->records[w++] = a->records[i];
    }
    a->n = w;
}

/* Decodes every image found, in parallel, without keeping pixels: a truncated or corrupt
 * file is an error now rather than at the training step that first reads it. Tallies the kinds
 * of file in report.kinds. */
static mr_status decode_images(mr_ann_loader *ld) {
    mr_annotations *a = ld->out;
    const int64_t n = a->n;
    if (n == 0) return MR_OK;
    const int64_t max_pixels =
        ld->opt->max_pixels > 0 ? ld->opt->max_pixels : MR_IMAGE_MAX_PIXELS_DEFAULT;
    mr_image_info *info = calloc((size_t)n, sizeof *info);
    char **err = calloc((size_t)n, sizeof *err);
    mr_status *code = calloc((size_t)n, sizeof *code);
    if (!info || !err || !code) {
        free(info);
        free(err);
        free(code);
        return mr_fail(MR_ERR_NOMEM, "out of memory to check %lld images", (long long)n);
    }
#pragma omp parallel for schedule(dynamic)
    for (int64_t i = 0; i < n; i++) {
        const mr_image_record *r = &a->records[i];
        if (ld->rejected[i] || ld->file_bytes[i] < 0) continue; /* missing: reported already */
        code[i] = mr_image_probe(r->path, max_pixels, &info[i]);
        if (code[i] != MR_OK) err[i] = mr_strdup(mr_last_error());
    }
    mr_status st = MR_OK;
    for (int64_t i = 0; i < n; i++) {
        const mr_image_record *r = &a->records[i];
        if (code[i] != MR_OK) {
            ld->rejected[i] = true;
            char qk[200], qf[300], msg[900], item[320];
            mr_ann_quote(msg, sizeof msg, err[i] ? err[i] : mr_status_name(code[i]));
            snprintf(item, sizeof item, "'%s'", mr_ann_quote(qf, sizeof qf, r->filename));
            const mr_ann_group g = {"images", "cannot be decoded (truncated or corrupt files?)",
                                    "check-data names each; re-export them from the scanner or "
                                    "viewer"};
            mr_ann_group_error(ld, code[i] == MR_ERR_NOMEM ? MR_ERR_NOMEM : MR_ERR_FORMAT, &g, item,
                               "%s (image '%s' in %s)", msg, mr_ann_quote(qk, sizeof qk, r->key),
                               ld->file);
            continue;
        }
        if (ld->rejected[i] || ld->file_bytes[i] < 0) continue;
        mr_report *rep = &a->report;
        int k = 0;
        while (k < rep->n_kinds && strcmp(rep->kinds[k].info.kind, info[i].kind)) k++;
        if (k == rep->n_kinds) {
            if (!mr_grow(&rep->kinds, &ld->cap_kinds, (size_t)k + 1, sizeof *rep->kinds, 4)) {
                st = mr_fail(MR_ERR_NOMEM, "out of memory");
                break;
            }
            rep->kinds[k] = (mr_image_kind){info[i], 0};
            rep->n_kinds++;
        }
        rep->kinds[k].count++;
    }
    for (int64_t i = 0; i < n; i++) free(err[i]);
    free(err);
    free(info);
    free(code);
    return st;
}

/* Appends printf-style text at buf + *used, never past n bytes. */
static void __attribute__((format(printf, 4, 5)))
append(char *buf, size_t n, size_t *used, const char *fmt, ...) {
    if (*used + 1 >= n) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *used, n - *used, fmt, ap);
    va_end(ap);
    if (w > 0) *used = *used + (size_t)w < n ? *used + (size_t)w : n - 1;
}

/* report.images_note: where the images were found, when not simply beside the annotation
 * file: a VIA default path was set, an image root given, or a fallback used. One line, so a
 * user whose project was saved on another machine sees at once which folder was used. */
static mr_status note_where_images_were(mr_ann_loader *ld) {
    const char *root = ld->opt->image_root && ld->opt->image_root[0] ? ld->opt->image_root : NULL;
    if (!ld->default_path && !root && !ld->n_fallback) return MR_OK;
    const int64_t *f = ld->found;
    const int64_t n_found = f[MR_FOUND_RECORDED] + f[MR_FOUND_BESIDE] + f[MR_FOUND_ROOT];
    char text[2048], q[300];
    size_t used = 0;
    append(text, sizeof text, &used, "%s: %lld of %lld images found", ld->file, (long long)n_found,
           (long long)ld->out->n);
    const char *sep = ": ";
    if (f[MR_FOUND_RECORDED]) {
        append(text, sizeof text, &used, "%s%lld at the paths it records", sep,
               (long long)f[MR_FOUND_RECORDED]);
        if (ld->default_path)
            append(text, sizeof text, &used, " (VIA default path '%s')",
                   mr_ann_quote(q, sizeof q, ld->default_path));
        sep = ", ";
    }
    if (f[MR_FOUND_BESIDE]) {
        append(text, sizeof text, &used, "%s%lld beside the annotation file (%s)", sep,
               (long long)f[MR_FOUND_BESIDE], mr_ann_quote(q, sizeof q, ld->ann_dir));
        sep = ", ";
    }
    if (f[MR_FOUND_ROOT])
        append(text, sizeof text, &used, "%s%lld under the image root (%s)", sep,
               (long long)f[MR_FOUND_ROOT], mr_ann_quote(q, sizeof q, root ? root : "?"));
    if (ld->default_path && !f[MR_FOUND_RECORDED])
        append(text, sizeof text, &used, "; the VIA default path '%s' %s",
               mr_ann_quote(q, sizeof q, ld->default_path),
               is_url(ld->default_path) || is_windows_path(ld->default_path)
                   ? "is not on this machine"
                   : "holds none of them");
    ld->out->report.images_note = mr_strdup(text);
    if (!ld->out->report.images_note) return mr_fail(MR_ERR_NOMEM, "out of memory");
    return MR_OK;
}

/* Every JSON annotation format, told apart by its top-level keys. */
static mr_status load_json(mr_ann_loader *ld, const char *text, size_t len) {
    bool loaded = false;
    MR_TRY(mr_via_load_image_entries_text(ld, text, len, &loaded));
    if (loaded) return MR_OK;
    struct cJSON *root = NULL;
    MR_TRY(mr_via_parse(ld, ld->file, text, len, &root, true));
    mr_ann_json_facts f;
    mr_via_json_facts(root, &f);
    mr_status st;
    if (!f.object)
        st = mr_fail(MR_ERR_FORMAT,
                     "%s: expected a JSON object at the top level (VIA annotations, a VIA project "
                     "or COCO), found %s",
                     ld->file, f.type_name);
    else if (f.via3_keys)
        st = mr_via_load_via3(ld, root);
    else if (f.via2_project_key)
        st = mr_via_load_project(ld, root);
    else if (f.coco_keys)
        st = mr_ann_load_coco(ld, root);
    else if (f.attributes_only)
        st = mr_fail(MR_ERR_FORMAT,
                     "%s: this is a VIA attribute definitions file, not annotations; load the "
                     "annotations and give this file as the attributes file",
                     ld->file);
    else if (!f.empty && !f.via_image_entries)
        st = mr_fail(MR_ERR_FORMAT,
                     "%s: not a recognised annotation file: expected VIA image entries {filename, "
                     "size, regions}, a VIA 2 project (_via_img_metadata), a VIA 3 project "
                     "(project, file, view, metadata) or COCO (images, annotations, categories)",
                     ld->file);
    else
        st = mr_via_load_image_entries(ld, root);
    mr_via_delete(root);
    return st;
}

/* The one place that decides an annotation file's format. */
static mr_status load_text(mr_ann_loader *ld, const char *text, size_t len) {
    /* Sniff: JSON starts with '{' or '['; a VIA CSV with its header; anything else is
     * decided by the extension, so a broken file still gets the right parser's message. */
    size_t i = 0;
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3)) i = 3;
    while (i < len && isspace((unsigned char)text[i])) i++;
    if (i == len) return mr_fail(MR_ERR_FORMAT, "%s: the annotation file is empty", ld->file);
    const char *p = text + i;
    if (*p == '{' || *p == '[') return load_json(ld, text, len);
    if (!strncmp(p, "#filename", 9) || !strncmp(p, "filename", 8) || has_suffix(ld->file, ".csv"))
        return mr_ann_load_csv(ld, text, len);
    return load_json(ld, text, len);
}

mr_status mr_annotations_load(const char *path, const mr_load_options *opt, mr_annotations *out) {
    static const mr_load_options defaults = {0};
    memset(out, 0, sizeof *out);
    if (!opt) opt = &defaults;
    if (!path || !path[0]) return mr_fail(MR_ERR_ARG, "no annotation file given");
    MR_TRY(set_classes(out, opt));

    struct stat sb;
    if (stat(path, &sb) != 0)
        return mr_fail(MR_ERR_IO, "%s: cannot open annotation file: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) {
        MR_TRY(pick_annotation_file(path, &out->source));
    } else {
        out->source = mr_strdup(path);
        if (!out->source) return mr_fail(MR_ERR_NOMEM, "out of memory");
    }

    mr_ann_loader ld;
    memset(&ld, 0, sizeof ld);
    ld.file = out->source;
    ld.opt = opt;
    ld.out = out;
    ld.max_issues = opt->max_issues > 0 ? opt->max_issues : 1000;
    static const char *const default_attrs[] = {"class", "name", "label", "type"};
    if (opt->class_attribute && opt->class_attribute[0]) {
        ld.class_attrs[0] = opt->class_attribute;
        ld.n_class_attrs = 1;
    } else {
        for (int i = 0; i < 4; i++) ld.class_attrs[i] = default_attrs[i];
        ld.n_class_attrs = 4;
    }
    ld.ann_dir = dir_of(out->source);
    ld.base_dir = mr_strdup(opt->image_root && opt->image_root[0] ? opt->image_root : ld.ann_dir);
    char *text = NULL;
    size_t len = 0;
    mr_status st = ld.ann_dir && ld.base_dir ? MR_OK : mr_fail(MR_ERR_NOMEM, "out of memory");
    if (st == MR_OK) st = mr_read_file(out->source, "annotation file", 0, &text, &len);
    if (st == MR_OK) st = load_text(&ld, text, len);
    free(text);
    if (st == MR_OK && opt->decode_images) st = decode_images(&ld);
    if (st == MR_OK) st = note_where_images_were(&ld);
    finish_groups(&ld, out->n);
    if (ld.rejected) drop_rejected(&ld);
    for (int64_t i = 0; i < out->n; i++) {
        mr_image_record *r = &out->records[i];
        r->negative = r->n_instances == 0;
        out->report.n_negatives += r->negative;
    }
    if (st == MR_OK && ld.first_error != MR_OK) {
        if (out->report.n_errors > 1)
            st = mr_fail(
                ld.first_error, "%s (and %lld more error%s; mrcnn check-data lists them all)",
                ld.first_error_text ? ld.first_error_text : "error",
                (long long)(out->report.n_errors - 1), out->report.n_errors > 2 ? "s" : "");
        else
            st = mr_fail(ld.first_error, "%s", ld.first_error_text ? ld.first_error_text : "error");
    }
    free(ld.first_error_text);
    free(ld.rejected);
    free(ld.had_regions);
    free(ld.file_bytes);
    free(ld.default_path);
    free_groups(&ld);
    free(ld.ann_dir);
    free(ld.base_dir);
    mr_strmap_free(&ld.paths);
    mr_via_free_attributes(&ld);
    return st;
}

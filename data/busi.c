/* BUSI import: pairs images with their "_mask"/"_mask_N" files, turns mask blobs into polygons
 * (data/raster.h: outlines along pixel edges, simplified within 0.5% of the pixels), finds
 * duplicates, splits with a seed that keeps duplicates together, and writes byte copies of the
 * images plus VIA 2.x JSON. */
#include "busi.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../core/file.h"
#include "../core/rng.h"
#include "../core/text.h"
#include "../core/util.h"
#include "image.h"
#include "raster.h"
#include "via_write.h"

static const char *const CLASS_DIR[MR_BUSI_CLASSES] = {"benign", "malignant", "normal"};

void mr_busi_defaults(mr_busi_options *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->val_fraction = 0.2;
    o->min_component_pixels = 10;
    o->tolerance = 1.0;
}

typedef struct {
    int cls;
    int n;
    double *xs, *ys;
} region;

typedef struct {
    int cls;
    char *path; /* source image */
    char *name; /* its file name */
    char **masks;
    int n_masks;
    size_t mask_cap;
    region *regions;
    int n_regions;
    size_t region_cap;
    uint64_t hash;
    int group; /* duplicate set: index of its first member */
    int val;
    int usable;
} record;

typedef struct {
    record *items;
    int count;
    size_t cap;
} record_list;

typedef struct {
    FILE *out;
    mr_busi_summary *sum;
} reporter;

static void report(reporter *r, int problem, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void report(reporter *r, int problem, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("import-busi: ", r->out);
    vfprintf(r->out, fmt, ap);
    fputc('\n', r->out);
    va_end(ap);
    if (problem) r->sum->problems++;
}

static char *path_join(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    char *p = malloc(na + nb + 2);
    if (!p) return NULL;
    memcpy(p, a, na);
    p[na] = '/';
    memcpy(p + na + 1, b, nb + 1);
    return p;
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* "benign (2)" before "benign (10)": digit runs compare as numbers. */
static int natural_cmp(const char *a, const char *b) {
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            while (*a == '0') a++;
            while (*b == '0') b++;
            size_t la = 0, lb = 0;
            while (isdigit((unsigned char)a[la])) la++;
            while (isdigit((unsigned char)b[lb])) lb++;
            if (la != lb) return la < lb ? -1 : 1;
            int c = strncmp(a, b, la);
            if (c) return c;
            a += la;
            b += lb;
        } else {
            if (*a != *b) return (unsigned char)*a - (unsigned char)*b;
            a++;
            b++;
        }
    }
    return (unsigned char)*a - (unsigned char)*b;
}

static int cmp_names(const void *x, const void *y) {
    return natural_cmp(*(char *const *)x, *(char *const *)y);
}

static int ends_with_png(const char *name, size_t *stem_len) {
    size_t n = strlen(name);
    if (n < 5 || strcasecmp(name + n - 4, ".png") != 0) return 0;
    *stem_len = n - 4;
    return 1;
}

/* For "<base>_mask.png" returns 0 and for "<base>_mask_<k>.png" returns k + 1, with the base
 * length in *base_len; -1 when the name is not a mask. */
static int mask_index(const char *name, size_t stem_len, size_t *base_len) {
    if (stem_len >= 5 && !strncmp(name + stem_len - 5, "_mask", 5)) {
        *base_len = stem_len - 5;
        return 0;
    }
    size_t i = stem_len;
    while (i > 0 && isdigit((unsigned char)name[i - 1])) i--;
    if (i == stem_len || i < 6 || strncmp(name + i - 6, "_mask_", 6) != 0) return -1;
    *base_len = i - 6;
    long k = strtol(name + i, NULL, 10);
    return k > 100000 ? 100001 : (int)k + 1;
}

static void free_records(record_list *l) {
    for (int i = 0; i < l->count; i++) {
        record *r = &l->items[i];
        free(r->path);
        free(r->name);
        for (int k = 0; k < r->n_masks; k++) free(r->masks[k]);
        free(r->masks);
        for (int k = 0; k < r->n_regions; k++) {
            free(r->regions[k].xs);
            free(r->regions[k].ys);
        }
        free(r->regions);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

static mr_status nomem(void) {
    return mr_fail(MR_ERR_NOMEM, "out of memory");
}

/* Reads one class folder: images become records (in natural name order) with their mask files
 * attached in _mask, _mask_1, _mask_2 ... order; masks without an image are reported. */
static mr_status scan_class(const char *root, int cls, reporter *rep, record_list *list) {
    char *dir = path_join(root, CLASS_DIR[cls]);
    if (!dir) return nomem();
    if (!is_dir(dir)) {
        report(rep, 1, "missing folder %s: no %s images imported", dir, CLASS_DIR[cls]);
        free(dir);
        return MR_OK;
    }
    DIR *d = opendir(dir);
    if (!d) {
        report(rep, 1, "cannot read folder %s: %s", dir, strerror(errno));
        free(dir);
        return MR_OK;
    }
    char **names = NULL;
    int n = 0;
    size_t cap = 0;
    mr_status st = MR_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t stem;
        if (e->d_name[0] == '.' || !ends_with_png(e->d_name, &stem)) continue;
        if (!mr_grow(&names, &cap, (size_t)n + 1, sizeof *names, 64)) {
            st = nomem();
            break;
        }
        if (!(names[n] = mr_strdup(e->d_name))) {
            st = nomem();
            break;
        }
        n++;
    }
    closedir(d);
    if (st == MR_OK && n > 1) qsort(names, (size_t)n, sizeof *names, cmp_names);

    /* Images first, so masks can find them. */
    int first = list->count;
    for (int i = 0; i < n && st == MR_OK; i++) {
        size_t stem = 0, base = 0;
        ends_with_png(names[i], &stem);
        if (mask_index(names[i], stem, &base) >= 0) continue;
        if (!mr_grow(&list->items, &list->cap, (size_t)list->count + 1, sizeof *list->items, 256)) {
            st = nomem();
            break;
        }
        record *r = &list->items[list->count];
        memset(r, 0, sizeof *r);
        r->cls = cls;
        r->path = path_join(dir, names[i]);
        r->name = mr_strdup(names[i]);
        list->count++;
        if (!r->path || !r->name) st = nomem();
    }
    /* Then masks, in natural order, which puts _mask before _mask_1 before _mask_2. */
    for (int i = 0; i < n && st == MR_OK; i++) {
        size_t stem = 0, base = 0;
        ends_with_png(names[i], &stem);
        if (mask_index(names[i], stem, &base) < 0) continue;
        record *owner = NULL;
        for (int k = first; k < list->count && !owner; k++) {
            const char *img = list->items[k].name;
            size_t img_stem = 0;
            ends_with_png(img, &img_stem);
            if (img_stem == base && !strncmp(img, names[i], base)) owner = &list->items[k];
        }
        if (!owner) {
            report(rep, 1, "mask without an image: %s/%s (no %.*s.png): ignored", dir, names[i],
                   (int)base, names[i]);
            continue;
        }
        if (!mr_grow(&owner->masks, &owner->mask_cap, (size_t)owner->n_masks + 1,
                     sizeof *owner->masks, 2)) {
            st = nomem();
            break;
        }
        if (!(owner->masks[owner->n_masks] = path_join(dir, names[i]))) st = nomem();
        owner->n_masks++;
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    free(dir);
    return st;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Loads a mask as 0/1: a pixel is foreground when a colour channel is non-zero and it is not
 * transparent; a mask that is black everywhere but carries the shape in its alpha channel
 * alone falls back to alpha. Decoded with the file's own channels, so alpha is kept. */
static mr_status load_mask(const char *path, uint8_t **mask, int *w, int *h) {
    mr_image img;
    MR_TRY(mr_image_load(path, 0, &img));
    const int comp = img.channels;
    const uint8_t *raw = img.pixels;
    size_t np = (size_t)img.width * (size_t)img.height;
    uint8_t *m = malloc(np ? np : 1);
    if (!m) {
        mr_image_free(&img);
        return nomem();
    }
    int colour = comp >= 3 ? 3 : 1, alpha = comp == 2 || comp == 4;
    int any = 0, alpha_varies = 0;
    for (size_t i = 0; i < np; i++) {
        const uint8_t *p = raw + i * (size_t)comp;
        int c = 0;
        for (int k = 0; k < colour; k++) c |= p[k];
        m[i] = c != 0 && (!alpha || p[comp - 1] != 0);
        any |= m[i];
        if (alpha && p[comp - 1] != raw[comp - 1]) alpha_varies = 1;
    }
    if (!any && alpha_varies)
        for (size_t i = 0; i < np; i++) m[i] = raw[i * (size_t)comp + (size_t)comp - 1] != 0;
    *w = img.width;
    *h = img.height;
    *mask = m;
    mr_image_free(&img);
    return MR_OK;
}

static mr_status add_region(record *r, int cls, const mr_mask_polygon *p) {
    if (!mr_grow(&r->regions, &r->region_cap, (size_t)r->n_regions + 1, sizeof *r->regions, 4))
        return nomem();
    region *g = &r->regions[r->n_regions];
    g->cls = cls;
    g->n = p->n_points;
    g->xs = malloc((size_t)p->n_points * sizeof *g->xs);
    g->ys = malloc((size_t)p->n_points * sizeof *g->ys);
    if (!g->xs || !g->ys) {
        free(g->xs);
        free(g->ys);
        return nomem();
    }
    memcpy(g->xs, p->xs, (size_t)p->n_points * sizeof *g->xs);
    memcpy(g->ys, p->ys, (size_t)p->n_points * sizeof *g->ys);
    r->n_regions++;
    return MR_OK;
}

/* Decodes the image (it must be readable), hashes its pixels, and converts its masks. Sets
 * r->usable when the image goes into the output. */
static mr_status convert_record(const mr_busi_options *o, reporter *rep, record *r) {
    const char *cls_name = CLASS_DIR[r->cls];
    mr_image img;
    if (mr_image_load(r->path, 3, &img) != MR_OK) {
        report(rep, 1, "unreadable image %s (%s): skipped", r->path, mr_last_error());
        return MR_OK;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    int32_t dims[2] = {img.width, img.height};
    h = fnv1a(h, dims, sizeof dims);
    r->hash = fnv1a(h, img.pixels, (size_t)img.width * (size_t)img.height * 3);
    int w = img.width, hh = img.height;
    mr_image_free(&img);

    if (r->n_masks == 0) {
        if (r->cls == MR_BUSI_NORMAL) {
            report(rep, 1, "image without mask: %s: kept as a negative (normal folder)", r->path);
            r->usable = 1;
        } else {
            report(rep, 1, "image without mask: %s: skipped (where is its lesion?)", r->path);
        }
        return MR_OK;
    }
    for (int k = 0; k < r->n_masks; k++) {
        int mw = 0, mh = 0;
        uint8_t *m = NULL;
        if (load_mask(r->masks[k], &m, &mw, &mh) != MR_OK) {
            report(rep, 1, "unreadable mask %s (%s): image %s skipped", r->masks[k],
                   mr_last_error(), r->name);
            return MR_OK;
        }
        if (mw != w || mh != hh) {
            report(rep, 1, "mask %s is %dx%d but its image %s is %dx%d: image skipped", r->masks[k],
                   mw, mh, r->name, w, hh);
            free(m);
            return MR_OK;
        }
        mr_mask_polygons polys;
        mr_status st = mr_mask_to_polygons(m, w, hh, o->min_component_pixels, o->tolerance, &polys);
        free(m);
        MR_TRY(st);
        const char *mname = base_name(r->masks[k]);
        if (polys.tiny_skipped)
            report(rep, 0, "%s: %d blob(s) under %d px skipped (%lld px in all)", mname,
                   polys.tiny_skipped, o->min_component_pixels, (long long)polys.tiny_px);
        rep->sum->tiny_skipped += polys.tiny_skipped;
        if (r->cls == MR_BUSI_NORMAL) {
            if (polys.count)
                report(rep, 1,
                       "%s: a normal image's mask has %d blob(s): ignored, image kept as "
                       "a negative",
                       mname, polys.count);
        } else {
            if (polys.count == 0 && polys.tiny_skipped == 0)
                report(rep, 1, "%s: empty mask (no lesion pixels)", mname);
            for (int i = 0; i < polys.count && st == MR_OK; i++) {
                const mr_mask_polygon *p = &polys.items[i];
                if (p->holes) {
                    report(rep, 0,
                           "%s: blob %d at x=%d..%d y=%d..%d has %d hole(s) (%lld px); VIA "
                           "polygons cannot hold holes, so its polygon covers them",
                           mname, i + 1, p->x0, p->x1, p->y0, p->y1, p->holes,
                           (long long)p->hole_px);
                    rep->sum->components_with_holes++;
                    rep->sum->holes += p->holes;
                }
                st = add_region(r, r->cls, p);
            }
        }
        mr_mask_polygons_free(&polys);
        MR_TRY(st);
    }
    if (r->cls != MR_BUSI_NORMAL && r->n_regions == 0) {
        report(rep, 1, "%s (%s): no lesion in any of its %d mask file(s): skipped", r->name,
               cls_name, r->n_masks);
        return MR_OK;
    }
    r->usable = 1;
    return MR_OK;
}

static int cmp_by_hash(const void *a, const void *b, void *ctx) {
    const record *items = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (items[i].hash != items[j].hash) return items[i].hash < items[j].hash ? -1 : 1;
    return (i > j) - (i < j);
}

static int same_pixels(const char *a, const char *b) {
    mr_image x, y;
    if (mr_image_load(a, 3, &x) != MR_OK) return 0;
    if (mr_image_load(b, 3, &y) != MR_OK) {
        mr_image_free(&x);
        return 0;
    }
    int same = x.width == y.width && x.height == y.height &&
               !memcmp(x.pixels, y.pixels, (size_t)x.width * (size_t)x.height * 3);
    mr_image_free(&x);
    mr_image_free(&y);
    return same;
}

/* Groups images with identical decoded pixels: each record's `group` becomes the index of the
 * first record of its set. Hash-equal images are confirmed pixel by pixel. */
static mr_status find_duplicates(record_list *l, reporter *rep) {
    int n = l->count;
    int *idx = malloc((size_t)(n ? n : 1) * sizeof *idx);
    if (!idx) return nomem();
    int m = 0;
    for (int i = 0; i < n; i++) {
        l->items[i].group = i;
        if (l->items[i].usable) idx[m++] = i;
    }
    qsort_r(idx, (size_t)m, sizeof *idx, cmp_by_hash, l->items);
    for (int a = 0; a < m;) {
        int b = a + 1;
        while (b < m && l->items[idx[b]].hash == l->items[idx[a]].hash) b++;
        /* Within a run of equal hashes (ascending record index), attach each to the first
         * earlier member with the same pixels. */
        for (int i = a + 1; i < b; i++)
            for (int j = a; j < i; j++) {
                record *x = &l->items[idx[j]], *y = &l->items[idx[i]];
                if (x->group != idx[j]) continue; /* compare with set heads only */
                if (same_pixels(x->path, y->path)) {
                    y->group = idx[j];
                    break;
                }
            }
        a = b;
    }
    /* Report each set once, from its head. */
    for (int h = 0; h < n; h++) {
        record *head = &l->items[h];
        if (!head->usable || head->group != h) continue;
        int size = 1, conflict = 0;
        char line[2048];
        int len = snprintf(line, sizeof line, "%s/%s", CLASS_DIR[head->cls], head->name);
        for (int i = h + 1; i < n; i++) {
            record *r = &l->items[i];
            if (!r->usable || r->group != h) continue;
            size++;
            conflict |= r->cls != head->cls;
            if (len >= 0 && (size_t)len < sizeof line)
                len += snprintf(line + len, sizeof line - (size_t)len, " = %s/%s",
                                CLASS_DIR[r->cls], r->name);
        }
        if (size < 2) continue;
        rep->sum->duplicate_groups++;
        rep->sum->duplicate_images += size;
        rep->sum->conflicting_groups += conflict;
        report(rep, conflict, "duplicate images (same pixels): %s%s", line,
               conflict ? " -- CONFLICTING LABELS, check them" : "");
    }
    free(idx);
    return MR_OK;
}

/* Per class (of each duplicate set's first image), shuffle the sets with the seed and move
 * them to val until the class's val share is reached; every member follows its set. */
static void split(const mr_busi_options *o, record_list *l) {
    int n = l->count;
    int64_t *heads = malloc((size_t)(n ? n : 1) * sizeof *heads);
    int *set_size = calloc((size_t)(n ? n : 1), sizeof *set_size);
    if (!heads || !set_size) {
        /* Cannot allocate a few KB: everything stays in train, still a valid output. */
        free(heads);
        free(set_size);
        return;
    }
    for (int i = 0; i < n; i++)
        if (l->items[i].usable) set_size[l->items[i].group]++;
    for (int cls = 0; cls < MR_BUSI_CLASSES; cls++) {
        int m = 0, images = 0;
        for (int i = 0; i < n; i++)
            if (l->items[i].usable && l->items[i].group == i && l->items[i].cls == cls) {
                heads[m++] = i;
                images += set_size[i];
            }
        mr_rng rng;
        mr_rng_seed(&rng, o->seed * 0x9e3779b97f4a7c15ull + (uint64_t)cls + 1);
        mr_rng_shuffle_i64(&rng, heads, m);
        int target = (int)(images * o->val_fraction + 0.5), taken = 0;
        if (o->val_fraction > 0.0 && target == 0 && m >= 2) target = 1;
        /* Sets that fit, in shuffled order; if none fits (a small class whose sets are all
         * duplicates), the smallest set that still leaves something in train. */
        for (int k = 0; k < m && taken < target; k++) {
            if (taken + set_size[heads[k]] > target) continue;
            l->items[heads[k]].val = 1;
            taken += set_size[heads[k]];
        }
        if (taken == 0 && target > 0) {
            int best = -1;
            for (int k = 0; k < m; k++)
                if (set_size[heads[k]] < images &&
                    (best < 0 || set_size[heads[k]] < set_size[heads[best]]))
                    best = k;
            if (best >= 0) l->items[heads[best]].val = 1;
        }
    }
    for (int i = 0; i < n; i++)
        if (l->items[i].usable) l->items[i].val = l->items[l->items[i].group].val;
    free(heads);
    free(set_size);
}

/* BUSI images are small (a few hundred kB): read whole, written atomically (core/file.h). */
static mr_status copy_file(const char *src, const char *dst, int64_t *size) {
    char *data = NULL;
    size_t len = 0;
    MR_TRY(mr_read_file(src, "image", 0, &data, &len));
    mr_status st = mr_write_file_atomic(dst, data, len, 0644);
    free(data);
    if (st == MR_OK) *size = (int64_t)len;
    return st;
}

static mr_status write_output(const mr_busi_options *o, record_list *l, mr_busi_summary *sum) {
    static const char *const SPLIT[2] = {"train", "val"};
    char *dirs[2] = {NULL, NULL};
    mr_via_writer *w[2] = {mr_via_writer_new(), mr_via_writer_new()};
    char **used = calloc((size_t)(l->count ? l->count : 1), sizeof *used); /* names per split */
    mr_status st = MR_OK;
    if (!w[0] || !w[1] || !used) {
        st = nomem();
        goto out;
    }
    if ((st = mr_make_dirs(o->out_dir)) != MR_OK) goto out;
    for (int k = 0; k < 2; k++) {
        if (!(dirs[k] = path_join(o->out_dir, SPLIT[k]))) {
            st = nomem();
            goto out;
        }
        if ((st = mr_make_dirs(dirs[k])) != MR_OK) goto out;
    }
    int n_used = 0;
    for (int i = 0; i < l->count && st == MR_OK; i++) {
        record *r = &l->items[i];
        if (!r->usable) continue;
        int k = r->val;
        /* BUSI names carry their class, but another layout may not: a name already written to
         * this split gets the class as a prefix. */
        char name[1024];
        snprintf(name, sizeof name, "%s", r->name);
        for (int u = 0; u < n_used; u++)
            if (used[u][0] == (char)('0' + k) && !strcmp(used[u] + 1, name)) {
                snprintf(name, sizeof name, "%s_%s", CLASS_DIR[r->cls], r->name);
                break;
            }
        size_t nl = strlen(name);
        if (!(used[n_used] = malloc(nl + 2))) {
            st = nomem();
            break;
        }
        used[n_used][0] = (char)('0' + k);
        memcpy(used[n_used] + 1, name, nl + 1);
        n_used++;
        char *dst = path_join(dirs[k], name);
        if (!dst) {
            st = nomem();
            break;
        }
        int64_t size = 0;
        st = copy_file(r->path, dst, &size);
        free(dst);
        if (st != MR_OK) break;
        st = mr_via_writer_add_image(w[k], name, size, r->cls == MR_BUSI_NORMAL ? "normal" : NULL);
        for (int g = 0; g < r->n_regions && st == MR_OK; g++)
            st = mr_via_writer_add_polygon_d(w[k], r->regions[g].xs, r->regions[g].ys,
                                             r->regions[g].n, CLASS_DIR[r->regions[g].cls]);
        sum->images[r->cls]++;
        sum->instances[r->cls] += r->n_regions;
        if (r->n_masks > 1) sum->multi_mask_images[r->cls]++;
        if (r->n_regions > 1) sum->multi_instance_images++;
        if (k)
            sum->val_images++;
        else
            sum->train_images++;
    }
    for (int k = 0; k < 2 && st == MR_OK; k++) {
        char *json = path_join(dirs[k], "via_region_data.json");
        if (!json) {
            st = nomem();
            break;
        }
        st = mr_via_writer_save(w[k], json);
        free(json);
    }
out:
    for (int i = 0; used && i < l->count; i++) free(used[i]);
    free(used);
    free(dirs[0]);
    free(dirs[1]);
    mr_via_writer_free(w[0]);
    mr_via_writer_free(w[1]);
    return st;
}

mr_status mr_busi_import(const mr_busi_options *o, mr_busi_summary *summary) {
    mr_busi_summary local;
    mr_busi_summary *sum = summary ? summary : &local;
    memset(sum, 0, sizeof *sum);
    if (!o->src_dir || !o->src_dir[0])
        return mr_fail(MR_ERR_ARG, "no source folder given (--src DIR)");
    if (!o->out_dir || !o->out_dir[0])
        return mr_fail(MR_ERR_ARG, "no output folder given (--out DIR)");
    if (!(o->val_fraction >= 0.0 && o->val_fraction < 1.0))
        return mr_fail(MR_ERR_ARG, "--val-fraction must be in [0, 1), got %g", o->val_fraction);
    if (!(o->tolerance >= 0.0) || o->min_component_pixels < 1)
        return mr_fail(MR_ERR_ARG, "tolerance must be >= 0 and the smallest blob >= 1 pixel");
    if (!is_dir(o->src_dir))
        return mr_fail(MR_ERR_IO, "source folder %s does not exist", o->src_dir);

    /* The Kaggle download unpacks to Dataset_BUSI_with_GT/; accept its parent too. */
    char *root = NULL;
    for (int pass = 0; pass < 2 && !root; pass++) {
        char *cand =
            pass == 0 ? mr_strdup(o->src_dir) : path_join(o->src_dir, "Dataset_BUSI_with_GT");
        if (!cand) return nomem();
        int found = 0;
        for (int c = 0; c < MR_BUSI_CLASSES; c++) {
            char *d = path_join(cand, CLASS_DIR[c]);
            if (!d) {
                free(cand);
                return nomem();
            }
            found |= is_dir(d);
            free(d);
        }
        if (found)
            root = cand;
        else
            free(cand);
    }
    if (!root)
        return mr_fail(MR_ERR_IO,
                       "%s is not a BUSI folder: expected benign/, malignant/ and "
                       "normal/ in it (or in its Dataset_BUSI_with_GT/)",
                       o->src_dir);

    reporter rep = {o->report ? o->report : stderr, sum};
    record_list list = {0};
    mr_status st = MR_OK;
    for (int c = 0; c < MR_BUSI_CLASSES && st == MR_OK; c++) st = scan_class(root, c, &rep, &list);
    for (int i = 0; i < list.count && st == MR_OK; i++) {
        st = convert_record(o, &rep, &list.items[i]);
        if (!list.items[i].usable) sum->skipped_images++;
    }
    int usable = 0;
    for (int i = 0; i < list.count; i++) usable += list.items[i].usable;
    if (st == MR_OK && usable == 0)
        st = mr_fail(MR_ERR_FORMAT,
                     "no usable image in %s (need \"name.png\" with "
                     "\"name_mask.png\" in benign/, malignant/ or normal/)",
                     root);
    if (st == MR_OK) st = find_duplicates(&list, &rep);
    if (st == MR_OK) {
        split(o, &list);
        st = write_output(o, &list, sum);
    }
    free_records(&list);
    free(root);
    return st;
}

void mr_busi_print_summary(FILE *out, const mr_busi_options *o, const mr_busi_summary *s) {
    int total = s->train_images + s->val_images;
    fprintf(out, "import-busi: converted %d images from %s\n", total, o->src_dir);
    for (int c = 0; c < MR_BUSI_CLASSES; c++) {
        if (c == MR_BUSI_NORMAL)
            fprintf(out, "  %-10s %4d images (negatives, no regions)\n", CLASS_DIR[c],
                    s->images[c]);
        else
            fprintf(out, "  %-10s %4d images, %4d instances, %d with several mask files\n",
                    CLASS_DIR[c], s->images[c], s->instances[c], s->multi_mask_images[c]);
    }
    fprintf(out, "  images with several instances: %d\n", s->multi_instance_images);
    fprintf(out, "  duplicates: %d sets, %d images (each set kept on one side of the split)%s\n",
            s->duplicate_groups, s->duplicate_images,
            s->conflicting_groups ? "; some sets have conflicting labels" : "");
    fprintf(out, "  holes: %d blobs with %d holes (covered by their polygons)\n",
            s->components_with_holes, s->holes);
    fprintf(out, "  skipped: %d images, %d blobs under %d px; %d problem lines above\n",
            s->skipped_images, s->tiny_skipped, o->min_component_pixels, s->problems);
    fprintf(out, "  split: train %d, val %d (seed %llu, val fraction %.2f) -> %s/train, %s/val\n",
            s->train_images, s->val_images, (unsigned long long)o->seed, o->val_fraction,
            o->out_dir, o->out_dir);
}

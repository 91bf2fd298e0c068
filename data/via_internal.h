/* Private to the annotation loaders (annotations.c, via_json.c, via_csv.c, coco.c): the loader
 * state, problem reporting, and the record and instance builders every format shares. cJSON
 * appears only as an opaque struct here, so annotations.c stays free of it. */
#ifndef MR_VIA_INTERNAL_H
#define MR_VIA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "../core/file.h"
#include "../core/text.h"
#include "annotations.h"

struct cJSON;

/* Coordinates beyond this are typos or corrupt files, not pixels of any real image. */
#define MR_ANN_MAX_COORD 1e7

/* A string -> int64 hash map (open addressing), for image ids, filenames and category ids,
 * so large files stay linear. */
typedef struct {
    char **keys;
    int64_t *vals;
    int64_t cap, n;
} mr_strmap;

int64_t mr_strmap_get(const mr_strmap *m, const char *key); /* -1 when absent */
mr_status mr_strmap_put(mr_strmap *m, const char *key, int64_t val);
void mr_strmap_free(mr_strmap *m);

/* A problem that repeats over images or regions (a missing image, an unknown class): every
 * occurrence with the same level, `what` and `hint` becomes one line of the report,
 * "FILE: COUNT [of N] NOUN WHAT, first three: ITEM, ITEM, ITEM; HINT". */
typedef struct {
    const char *noun; /* "images" (then "of N" gives the image count) or "regions" */
    const char *what; /* the problem without its place: "not found beside the annotation ..." */
    const char *hint; /* what to do, or NULL */
} mr_ann_group;

/* Where images were found, for report.images_note. */
enum { MR_FOUND_RECORDED, MR_FOUND_BESIDE, MR_FOUND_ROOT, MR_FOUND_KINDS };

typedef struct mr_ann_group_state mr_ann_group_state;

typedef struct {
    const char *file; /* annotation file, as named in messages */
    char *ann_dir;    /* its folder */
    char *base_dir;   /* folder relative image paths resolve against */
    const mr_load_options *opt;
    mr_annotations *out;
    size_t cap_records;         /* of out->records, rejected, had_regions and file_bytes */
    const char *class_attrs[4]; /* attribute names to try, in order */
    int n_class_attrs;
    int64_t max_issues;
    size_t cap_issues; /* of out->report.issues */
    mr_status first_error;
    char *first_error_text;
    bool *rejected;      /* per record: its image is missing or unreadable (dropped at the end) */
    bool *had_regions;   /* per record: some region was seen (an empty result is then suspect) */
    mr_strmap paths;     /* resolved image path -> record, to spot images listed twice */
    int64_t *file_bytes; /* per record: the image file's size in bytes, -1 when not found */
    /* Grouped problems: `group_keys` maps level + what + hint to an index into `groups`. */
    mr_strmap group_keys;
    mr_ann_group_state *groups;
    int64_t n_groups;
    size_t cap_groups;
    /* Image lookup: how many were found where, and the first non-empty VIA default path. */
    int64_t found[MR_FOUND_KINDS];
    int64_t n_fallback; /* images found elsewhere than at their recorded path */
    size_t cap_kinds;   /* of out->report.kinds */
    char *default_path;
    /* VIA 2 attribute definitions ({"region": {...}, "file": {...}}); `attr_doc` is owned. */
    struct cJSON *attr_doc;
    const struct cJSON *region_defs, *file_defs;
} mr_ann_loader;

/* Problems. Errors keep the first one for mr_fail; every problem lands in the report. */
mr_status mr_ann_error(mr_ann_loader *ld, mr_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mr_ann_warn(mr_ann_loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same for a problem that may repeat (see mr_ann_group): `item` names its place (an image
 * or a region), and the full one-line text `fmt` is what the report keeps when it happens once. */
mr_status mr_ann_group_error(mr_ann_loader *ld, mr_status code, const mr_ann_group *g,
                             const char *item, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void mr_ann_group_warn(mr_ann_loader *ld, const mr_ann_group *g, const char *item, const char *fmt,
                       ...) __attribute__((format(printf, 4, 5)));
/* An error that drops one region: also counts it as rejected. */
mr_status mr_ann_region_error(mr_ann_loader *ld, mr_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* `s` made safe for a one-line message: control characters become '?', and long text is cut
 * to `n - 4` bytes plus "...". */
const char *mr_ann_quote(char *buf, size_t n, const char *s);

/* Coordinates: finite and within +-MR_ANN_MAX_COORD, else an error naming `where` and `field`. */
mr_status mr_ann_check_coord(mr_ann_loader *ld, const char *where, const char *field, double v);

/* Records. Resolves the image path (prefix + src, or prefix + filename when src is NULL, against
 * base_dir; URLs and absolute paths kept) and reads its size. A missing or unreadable image is
 * reported and the record marked rejected, so its regions can still be checked; only MR_ERR_NOMEM
 * is returned as failure. known_w/known_h (COCO's sizes, else 0) stand in when the image is absent
 * and allowed to be. */
mr_status mr_ann_add_record(mr_ann_loader *ld, const char *key, const char *filename,
                            const char *prefix, const char *src, int known_w, int known_h,
                            int64_t *index);
/* Appends an instance, taking ownership of `shape` (freed on every path). Drops a duplicate
 * closing vertex, skips degenerate shapes, clips to the image when its size is known and
 * reports what it did with `where` as the location. */
mr_status mr_ann_add_instance(mr_ann_loader *ld, int64_t rec, mr_shape *shape, int class_id,
                              const char *class_name, int64_t region, const char *where);
/* VIA keys are filename + size in bytes: warns when record `rec`'s file on disk has another
 * size (the image changed since it was annotated: re-exported, converted or resized). Sizes
 * below 1 (VIA's -1 for URLs) and images not found are not compared. */
void mr_ann_check_file_bytes(mr_ann_loader *ld, int64_t rec, int64_t recorded);
/* Marks that record `rec` had a region, whatever became of it. */
void mr_ann_note_region(mr_ann_loader *ld, int64_t rec);
/* Image-level label text (file attributes); sets image_label when it names a class. */
mr_status mr_ann_set_image_label(mr_ann_loader *ld, int64_t rec, const char *label);

/* Classes: the id of a label (case and surrounding spaces ignored), or -1. */
int mr_ann_class_id(const mr_ann_loader *ld, const char *label);
/* The unknown-class error: names the value, where it is, the known classes and a near match.
 * `option` is the dropdown/radio option id the label came from, or NULL. */
mr_status mr_ann_unknown_class(mr_ann_loader *ld, const char *where, const char *attr,
                               const char *label, const char *option);
/* The missing-class error (no class attribute set on a region). */
mr_status mr_ann_missing_class(mr_ann_loader *ld, const char *where);
/* Is `name` one of the class attribute names (case-insensitive)? Returns its rank or -1. */
int mr_ann_class_attr_rank(const mr_ann_loader *ld, const char *name);

/* Small string helpers. */
int mr_ann_strcasecmp(const char *a, const char *b);
/* A number as text the way a user would type it: 320, 0.5, 1e+20. */
void mr_ann_number_text(double v, char *buf, size_t n);

/* The formats (via_json.c, via_csv.c, coco.c); annotations.c alone decides which one a file is.
 * `text` is NUL-terminated, `len` excludes NUL. */
mr_status mr_ann_load_csv(mr_ann_loader *ld, const char *text, size_t len);
mr_status mr_ann_load_coco(mr_ann_loader *ld, const struct cJSON *root);

/* What a parsed JSON document looks like at the top level, for annotations.c's detection. */
typedef struct {
    const char *type_name;  /* "an object", "an array", ... */
    bool object;            /* the rest is false unless this is true */
    bool via3_keys;         /* project, metadata and file: a VIA 3 project */
    bool via2_project_key;  /* _via_img_metadata: a VIA 2 project */
    bool coco_keys;         /* images and annotations: COCO */
    bool attributes_only;   /* only region/file objects: a VIA attribute definitions file */
    bool empty;             /* {} */
    bool via_image_entries; /* some member is an object with filename or regions */
} mr_ann_json_facts;
void mr_via_json_facts(const struct cJSON *root, mr_ann_json_facts *f);
/* The JSON formats by their top-level shape: a VIA 3 project, a VIA 2 project, and a VIA 1.x/2.x
 * annotations file (image entries; attribute definitions loaded beside it). */
mr_status mr_via_load_via3(mr_ann_loader *ld, const struct cJSON *root);
mr_status mr_via_load_project(mr_ann_loader *ld, const struct cJSON *root);
mr_status mr_via_load_image_entries(mr_ann_loader *ld, const struct cJSON *root);
/* The same from the file's text, one entry parsed at a time so memory does not grow with the
 * file. *loaded is false (and nothing is loaded) when the text is not image entries that each
 * parse alone, or is malformed: the whole-document path then decides and reports. */
mr_status mr_via_load_image_entries_text(mr_ann_loader *ld, const char *text, size_t len,
                                         bool *loaded);
void mr_via_delete(struct cJSON *root);

/* Shared by the JSON and CSV readers (via_json.c). */
/* "a string", "an array", ... for messages. */
const char *mr_via_type_name(const struct cJSON *j);
/* Ids VIA and COCO write as numbers or strings (1 or "1") as text; NULL for other types. */
const char *mr_via_id_text(const struct cJSON *j, char *buf, size_t n);
/* Parses JSON text; a syntax error becomes "<what>:LINE:COLUMN: ..." with `what` usually the
 * file name. `fatal` false records the error in the report instead of only returning it. */
mr_status mr_via_parse(mr_ann_loader *ld, const char *what, const char *text, size_t len,
                       struct cJSON **out, bool fatal);
/* Loads opt->attributes_path, or a single *attributes*.json beside the annotation file. */
mr_status mr_via_load_attributes(mr_ann_loader *ld, bool look_beside);
void mr_via_free_attributes(mr_ann_loader *ld);
/* One VIA 1.x/2.x region: shape_attributes + region_attributes (either may be NULL). */
mr_status mr_via_region(mr_ann_loader *ld, int64_t rec, const struct cJSON *shape_attrs,
                        const struct cJSON *region_attrs, int64_t region, const char *where);
/* file_attributes: the image-level label. */
mr_status mr_via_file_attributes(mr_ann_loader *ld, int64_t rec, const struct cJSON *file_attrs,
                                 const char *where);

#endif

/* Annotation loading: one entry point that detects VIA 1.x/2.x/3.x JSON, VIA CSV and COCO and
 * yields, per image, its path, true size and instances (class id + shape), plus a report of every
 * problem found. Shapes stay analytic (rect, circle, ellipse) and rasterise by pixel centres. */
#ifndef MR_ANNOTATIONS_H
#define MR_ANNOTATIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"
#include "image.h"

/* ---- shapes -------------------------------------------------------------------------------- */

typedef enum {
    MR_SHAPE_POLYGON, /* one or more rings (COCO may split an object), filled as their union */
    MR_SHAPE_RECT,
    MR_SHAPE_CIRCLE, /* rx == ry == r, theta == 0 */
    MR_SHAPE_ELLIPSE,
} mr_shape_kind;

/* Pixel coordinates: origin at the top-left corner of the image, x right, y down; the centre of
 * pixel (row r, column c) is (c, r), as in skimage.draw (see data/raster.h). */
typedef struct {
    mr_shape_kind kind;
    double x, y, w, h;            /* rect: top-left corner and size */
    double cx, cy, rx, ry, theta; /* circle / ellipse; theta in radians, VIA 2's rotation */
    double *xs, *ys;              /* polygon vertices, all rings back to back (owned) */
    int64_t n_points;
    int64_t *ring_ends; /* polygon: ring k is [ring_ends[k-1], ring_ends[k]) (owned) */
    int n_rings;
} mr_shape;

void mr_shape_free(mr_shape *s);
/* Deep copy; `out` is overwritten. */
mr_status mr_shape_copy(const mr_shape *s, mr_shape *out);
/* Any shape as a polygon: rects as their 4 corners, circles and ellipses as `n_segments`
 * vertices (72 when <= 0, VIA's COCO export uses every 5 degrees); polygons are copied. */
mr_status mr_shape_to_polygon(const mr_shape *s, int n_segments, mr_shape *out);
/* Unclipped extent as (y1, x1, y2, x2), Matterport's box order, continuous coordinates. */
void mr_shape_extent(const mr_shape *s, double box[4]);
/* Exact for rects, circles and ellipses; for polygons the sum of the rings' shoelace areas
 * (rings that overlap count twice). */
double mr_shape_area(const mr_shape *s);
/* Sets mask[r * width + c] = value for every pixel whose centre lies inside the shape, clipped
 * to the mask: polygons and rects through mr_raster_polygon, circles and ellipses by an exact
 * centre test. Both rules are closed (centres on the boundary are filled). Returns the number of
 * pixels set (a pixel inside two overlapping rings counts twice). */
int64_t mr_shape_rasterize(const mr_shape *s, uint8_t *mask, int width, int height, uint8_t value);

/* ---- loaded annotations -------------------------------------------------------------------- */

/* One annotated region (VIA's word) as drawn: its shape and class. The network sees an image's
 * regions as mr_instances (layers/boxes.h) once they are rasterised and molded. */
typedef struct {
    int class_id;     /* 1..n_classes-1; always 1 in single-class mode */
    char *class_name; /* the resolved label text (option ids become labels); may be NULL in
                         single-class mode when the region has no class attribute */
    mr_shape shape;   /* clipped to the image when its size is known */
    double box[4];    /* (y1, x1, y2, x2) of the clipped shape */
    int64_t region;   /* index of the region in its image (COCO: annotation index) */
} mr_region;

typedef struct {
    char *path;           /* resolved image path (relative to the cwd, or absolute, or a URL) */
    char *filename;       /* as written in the annotation file */
    char *key;            /* VIA image key (filename + size), COCO image id, VIA 3 file id */
    int width, height;    /* from the image header; 0 when unknown (allow_missing_images) */
    mr_region *instances; /* the image's annotated regions */
    int64_t n_instances;
    int image_label;        /* class id of an image-level label, -1 when none or not a class */
    char *image_label_name; /* image-level label text ("normal"), NULL when none */
    bool negative;          /* no instances: a background-only example */
} mr_image_record;

typedef enum { MR_ISSUE_WARNING, MR_ISSUE_ERROR } mr_issue_level;

typedef struct {
    mr_issue_level level;
    mr_status code; /* the status an error maps to; MR_OK for warnings */
    char *text;     /* one line: where, what was expected, what was found */
    int64_t count;  /* problems this line stands for: 1, or more when one problem repeated over
                       images or regions and was grouped ("266 of 266 images not found ...") */
} mr_issue;

/* One kind of image file met while decoding (mr_load_options.decode_images). */
typedef struct {
    mr_image_info info; /* the first file of the kind; info.kind says it in words */
    int64_t count;
} mr_image_kind;

/* Every non-fatal problem plus counters. Errors: unknown or missing class, missing, unreadable or
 * undecodable image, wrong JSON types, non-finite or huge coordinates, negative sizes, unknown
 * shapes, regions lying wholly outside their image. Warnings: clipped points, skipped shapes
 * without area, degenerate regions, empty images, an image file whose size in bytes differs
 * from the one its VIA key records. A problem repeated over many images or regions is one
 * issue (its count says how many); n_errors and n_warnings count every one. */
typedef struct {
    mr_issue *issues; /* at most max_issues kept, in file order */
    int64_t n_issues;
    int64_t n_issues_dropped; /* problems beyond the cap, counted only */
    int64_t n_errors, n_warnings;
    int64_t n_regions;          /* regions (VIA 3: metadata entries, COCO: annotations) seen */
    int64_t n_skipped_point;    /* points: no area */
    int64_t n_skipped_polyline; /* polylines and lines: no area */
    int64_t n_skipped_temporal; /* VIA 3 temporal segments and file-level entries */
    int64_t n_skipped_other;    /* COCO RLE or crowd annotations, multi-file VIA 3 views */
    int64_t n_degenerate;       /* fewer than 3 distinct points or zero area (warnings) */
    int64_t n_rejected;         /* regions dropped because of an error */
    int64_t n_clipped_points;   /* polygon/rect vertices outside the image moved to its border */
    int64_t n_clipped_regions;  /* regions that reached outside the image */
    int64_t n_negatives;        /* images without instances */
    int64_t n_outside;          /* regions wholly outside their image (errors) */
    /* One line saying where the images were found, when that is not simply beside the
     * annotation file (a VIA default path, an image root, a fallback to the file's base name);
     * NULL otherwise. */
    char *images_note;
    mr_image_kind *kinds; /* decode_images: each kind of file once, in order of appearance */
    int n_kinds;
} mr_report;

typedef enum {
    MR_ANN_UNKNOWN = 0,
    MR_ANN_VIA1_JSON,    /* {key: {fileref, filename, size, regions: {"0": ...}}} */
    MR_ANN_VIA2_JSON,    /* {key: {filename, size, regions: [...], file_attributes}} */
    MR_ANN_VIA2_PROJECT, /* {_via_settings, _via_img_metadata, _via_attributes, ...} */
    MR_ANN_VIA3_PROJECT, /* {project, config, attribute, file, view, metadata} */
    MR_ANN_VIA1_CSV,     /* header starts with #filename */
    MR_ANN_VIA2_CSV,     /* header starts with filename */
    MR_ANN_COCO,         /* {images, annotations, categories} */
} mr_ann_format;

const char *mr_ann_format_name(mr_ann_format f);

typedef struct {
    mr_ann_format format;
    char *source;          /* the annotation file actually read (a folder resolves to one) */
    char *attributes_path; /* VIA 2 attribute definitions used from a separate file, or NULL */
    char **class_names;    /* [0] = "BG"; single-class mode: {"BG", "object"} */
    int n_classes;
    bool single_class;
    mr_image_record *records; /* in the file's image order */
    int64_t n;
    mr_report report;
} mr_annotations;

typedef struct {
    /* Class names, index = class id. A leading "BG" is optional ({"benign", "malignant"} and
     * {"BG", "benign", "malignant"} both give benign = 1). NULL or empty: single class, every
     * region is class 1 whatever its attributes say (balloon style). Matching ignores case and
     * surrounding spaces. */
    const char *const *class_names;
    int n_class_names;
    /* Region attribute holding the class. NULL: the first present of "class", "name", "label",
     * "type" (VIA 3: attribute names, compared ignoring case). Also read from file_attributes
     * as the image-level label. */
    const char *class_attribute;
    /* Where images are looked for besides where the annotation file says. An image is the
     * first file found among: the recorded path (VIA 2 default_filepath or VIA 3 loc_prefix +
     * filename; a relative one against the image root when given, else the annotation file's
     * folder); then, beside the annotation file, the filename and its base name; then the same
     * under the image root. So a project whose default path is a Windows folder, a URL or a
     * folder of another machine still finds its images. NULL: no image root. */
    const char *image_root;
    /* VIA 2 attribute definitions ({"region": {...}, "file": {...}} as VIA's "Export
     * attributes" writes, or a VIA 2 project) for option id -> label. NULL: those embedded in a
     * project file, else a single "*attributes*.json" next to the annotation file, if any. */
    const char *attributes_path;
    /* true: a missing image file is not an error; its width/height stay 0 or come from COCO's
     * images[].width/height, and nothing is clipped. Unreadable files are still errors. */
    bool allow_missing_images;
    /* Problems kept as text in the report (0: 1000); counters always count every one. */
    int64_t max_issues;
    /* true: every image found is decoded in full (not only its header), without keeping its
     * pixels, so a truncated or corrupt file is an error now and not at training step 22;
     * report.kinds then lists the kinds of file. max_pixels is the limit (MAX_IMAGE_PIXELS;
     * 0: MR_IMAGE_MAX_PIXELS_DEFAULT). */
    bool decode_images;
    int64_t max_pixels;
} mr_load_options;

/* Loads annotations from `path`, a file or a folder holding exactly one annotation file
 * (via_region_data.json preferred; *attributes*.json files are not candidates). `opt` may be
 * NULL for the defaults.
 *
 * Returns MR_OK, or the status of the first error with its message in mr_last_error() (plus
 * the count of further errors). Unreadable files, malformed JSON/CSV and an unrecognised format
 * stop at once; problems inside images and regions (wrong types, unknown classes, missing
 * images) are collected so that out->report lists every one, and the offending regions or
 * images are left out of out->records. In every case `out` must be released with
 * mr_annotations_free. */
mr_status mr_annotations_load(const char *path, const mr_load_options *opt, mr_annotations *out);
void mr_annotations_free(mr_annotations *a);
/* Keeps the records whose keep[i] is true (in their order) and frees the others. */
void mr_annotations_keep(mr_annotations *a, const bool *keep);
/* Moves the records whose take[i] is true (in their order) from `a` into `out`, which gets a
 * copy of a's format, source and classes and an empty report: one load, two splits. `out` is
 * overwritten and must be freed with mr_annotations_free, also on failure. */
mr_status mr_annotations_split(mr_annotations *a, const bool *take, mr_annotations *out);

/* The instance's box (y1, x1, y2, x2) in pixel coordinates, clipped to its image. */
void mr_annotations_bbox(const mr_region *inst, double box[4]);

#endif

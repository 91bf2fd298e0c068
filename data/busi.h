/* Importing the public BUSI folder layout (benign/, malignant/, normal/, "x (n)_mask.png" and
 * "x (n)_mask_1.png" masks) into VIA 2.x JSON with a seeded train/val split, and the
 * mask-to-polygon step it rests on, which any mask-based data set can use. */
#ifndef MR_BUSI_H
#define MR_BUSI_H

#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"

/* ---- masks to polygons ---------------------------------------------------------------- */

typedef struct {
    int n_points;
    int *xs, *ys;       /* outer contour through boundary pixel centres, simplified; no closing
                         * repeat. Rasterised with mr_raster_polygon it covers the component
                         * (holes included) up to the simplification tolerance. */
    int64_t area;       /* pixels in the component */
    int x0, y0, x1, y1; /* bounding box of the component, inclusive */
    int holes;          /* background regions enclosed by the component (4-connected) */
    int64_t hole_px;    /* pixels in those holes; the polygon covers them */
} mr_mask_polygon;

typedef struct {
    mr_mask_polygon *items;
    int count;
    int tiny_skipped; /* components smaller than min_pixels, not in items */
    int64_t tiny_px;
} mr_mask_polygons;

/* One polygon per 8-connected component of the non-zero pixels of `mask` (height, width),
 * in raster order of each component's first pixel. Components with fewer than `min_pixels`
 * pixels are counted in tiny_skipped and left out. `tolerance` is the Douglas-Peucker distance
 * in pixels (0 keeps every contour pixel). */
mr_status mr_mask_to_polygons(const uint8_t *mask, int width, int height, int min_pixels,
                              double tolerance, mr_mask_polygons *out);
void mr_mask_polygons_free(mr_mask_polygons *p);

/* ---- BUSI import ----------------------------------------------------------------------- */

enum { MR_BUSI_BENIGN = 0, MR_BUSI_MALIGNANT = 1, MR_BUSI_NORMAL = 2, MR_BUSI_CLASSES = 3 };

typedef struct {
    const char *src_dir;      /* holds benign/ malignant/ normal/ (or Dataset_BUSI_with_GT/) */
    const char *out_dir;      /* receives train/ and val/ */
    uint64_t seed;            /* split seed (1) */
    double val_fraction;      /* share of each class's images in val/ (0.2) */
    int min_component_pixels; /* smaller mask blobs are reported and skipped (10) */
    double tolerance;         /* Douglas-Peucker tolerance in pixels (1.0) */
    FILE *report;             /* one line per problem and per notable finding (stderr when
                               * NULL) */
} mr_busi_options;

typedef struct {
    int images[MR_BUSI_CLASSES];            /* images written, by class folder */
    int instances[MR_BUSI_CLASSES];         /* polygons written */
    int multi_mask_images[MR_BUSI_CLASSES]; /* images with more than one mask file */
    int multi_instance_images;              /* images with more than one polygon */
    int duplicate_groups;                   /* sets of images with identical decoded pixels */
    int duplicate_images;                   /* images in those sets */
    int conflicting_groups;                 /* duplicate sets spanning two classes */
    int components_with_holes, holes;
    int tiny_skipped;   /* blobs under min_component_pixels */
    int skipped_images; /* not written: no mask, bad mask, size mismatch */
    int problems;       /* lines reported about bad input */
    int train_images, val_images;
} mr_busi_summary;

void mr_busi_defaults(mr_busi_options *o);

/* Converts src_dir into out_dir/{train,val}/ (byte copies of the images, original names, plus
 * via_region_data.json each). Bad inputs (missing class folder, image without mask, unreadable
 * mask, mask size differing from the image) are reported one line each and skipped; the call
 * fails only when nothing usable is found or the output cannot be written. Duplicate images
 * stay on one side of the split. */
mr_status mr_busi_import(const mr_busi_options *o, mr_busi_summary *summary);

/* The summary as printed by `mrcnn import-busi`. */
void mr_busi_print_summary(FILE *out, const mr_busi_options *o, const mr_busi_summary *s);

#endif

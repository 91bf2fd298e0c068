/* Importing the public BUSI folder layout (benign/, malignant/, normal/, "x (n)_mask.png" and
 * "x (n)_mask_1.png" masks) into VIA 2.x JSON with a seeded train/val split. The mask-to-polygon
 * step it rests on is data/raster.h's. */
#ifndef MR_BUSI_H
#define MR_BUSI_H

#include <stdint.h>
#include <stdio.h>

#include "../core/status.h"

enum { MR_BUSI_BENIGN = 0, MR_BUSI_MALIGNANT = 1, MR_BUSI_NORMAL = 2, MR_BUSI_CLASSES = 3 };

typedef struct {
    const char *src_dir;      /* holds benign/ malignant/ normal/ (or Dataset_BUSI_with_GT/) */
    const char *out_dir;      /* receives train/ and val/ */
    uint64_t seed;            /* split seed (1) */
    double val_fraction;      /* share of each class's images in val/ (0.2) */
    int min_component_pixels; /* smaller mask blobs are reported and skipped (10) */
    double tolerance;         /* largest Douglas-Peucker tolerance in pixels (1.0); see
                               * mr_mask_to_polygons */
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

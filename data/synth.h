/* Synthetic breast-ultrasound images with lesion outlines (benign oval and wider than tall,
 * malignant irregular and taller than wide, normal without lesion) for the demo, tests and
 * benchmarks; written as PNG + VIA JSON, byte-identical for the same options. */
#ifndef MR_SYNTH_H
#define MR_SYNTH_H

#include <stdint.h>

#include "../core/status.h"
#include "image.h"

#define MR_SYNTH_MAX_LESIONS 2

typedef enum { MR_SYNTH_BENIGN = 1, MR_SYNTH_MALIGNANT = 2 } mr_synth_class;

typedef struct {
    const char *out_dir; /* writes out_dir/train and out_dir/val */
    int n_images;        /* total over train and val */
    uint64_t seed;
    int size;                   /* width = height in pixels (default 256, at least 64) */
    double val_fraction;        /* share of images in val/ (default 0.2) */
    double lesion_min;          /* lesion width as a fraction of the image width (0.15) */
    double lesion_max;          /* (0.35) */
    double normal_fraction;     /* images without a lesion (0.2) */
    double malignant_fraction;  /* malignant share of the lesion images (0.4) */
    double two_lesion_fraction; /* lesion images with a second lesion (0.1) */
} mr_synth_options;

typedef struct {
    mr_synth_class cls;
    int n_points;
    int *xs, *ys; /* outline, integer pixel coordinates, no repeated closing vertex */
} mr_synth_lesion;

/* One generated image. The lesion mask drawn into the image is exactly
 * mr_raster_polygon(outline), so annotations and pixels agree. */
typedef struct {
    mr_image image; /* (size, size, 1) */
    int n_lesions;  /* 0 for a normal image */
    mr_synth_lesion lesions[MR_SYNTH_MAX_LESIONS];
} mr_synth_sample;

typedef struct {
    int train_images, val_images;
    int benign_images, malignant_images, normal_images; /* by the first lesion's class */
    int benign_lesions, malignant_lesions;
} mr_synth_summary;

void mr_synth_defaults(mr_synth_options *o);

/* Image number `index` of the set described by `o` (out_dir is not used). Each image depends
 * only on (seed, index, size and the fractions), not on n_images. */
mr_status mr_synth_generate(const mr_synth_options *o, int64_t index, mr_synth_sample *out);
void mr_synth_sample_free(mr_synth_sample *s);

/* Writes o->n_images PNGs (synth_00000.png, ...) and one via_region_data.json into
 * out_dir/train and out_dir/val (created when missing). */
mr_status mr_synth_write(const mr_synth_options *o);
/* The same, and fills `summary` (may be NULL). */
mr_status mr_synth_write_summary(const mr_synth_options *o, mr_synth_summary *summary);

#endif

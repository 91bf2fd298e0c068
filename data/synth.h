/* Synthetic breast-ultrasound images with lesion outlines (benign oval and wider than tall,
 * malignant irregular and taller than wide, normal without lesion) for the demo, tests and
 * benchmarks; written as PNG + VIA JSON, byte-identical for the same options. Two presets:
 * `standard` (large, high-contrast lesions, an easy set) and `hard` (small and nearly isoechoic
 * lesions, varied posterior features, up to three lesions, per-image gain and depth curves). */
#ifndef MR_SYNTH_H
#define MR_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"
#include "image.h"

#define MR_SYNTH_MAX_LESIONS 3
/* Lesions narrower than this are drawn this wide: fewer pixels make no outline worth the name. */
#define MR_SYNTH_MIN_LESION_PX 6

typedef enum { MR_SYNTH_BENIGN = 1, MR_SYNTH_MALIGNANT = 2 } mr_synth_class;

/* How images are drawn. STANDARD: lesion widths uniform in [lesion_min, lesion_max], dark
 * interiors, strong posterior features, lesions at mid depth, fixed gain. HARD: log-uniform
 * widths, interiors from nearly anechoic to nearly isoechoic relative to the surrounding tissue
 * (low-contrast ones keep a margin cue), fuzzy margins, posterior features from none to strong,
 * lesions at any depth of the breast, and per-image gain, attenuation, time-gain compensation
 * and near-field brightness. */
typedef enum { MR_SYNTH_STANDARD = 0, MR_SYNTH_HARD = 1 } mr_synth_preset;

/* Defaults by preset are given as (standard, hard). */
typedef struct {
    const char *out_dir; /* writes out_dir/train and out_dir/val */
    int n_images;        /* total over train and val */
    uint64_t seed;
    mr_synth_preset preset;
    int size;                   /* width = height in pixels (default 256, at least 64) */
    double val_fraction;        /* share of images in val/ (default 0.2) */
    double lesion_min;          /* lesion width as a fraction of the image width (0.15, 0.03) */
    double lesion_max;          /* (0.35, 0.35) */
    double normal_fraction;     /* images without a lesion (0.2, 0.15) */
    double malignant_fraction;  /* malignant share (0.4): of the images, whose lesions share
                                 * one class (standard); of the lesions (hard) */
    double two_lesion_fraction; /* chance of each further lesion in a lesion image (0.1, 0.3) */
    int max_lesions;            /* lesions per image, 1..MR_SYNTH_MAX_LESIONS (2, 3) */
    double ambiguous_fraction;  /* lesions drawn with the look of the other class (0, 0.1) */
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
    int lesion_width_min, lesion_width_max; /* of the written outlines in pixels, 0 if none */
} mr_synth_summary;

/* The standard preset's defaults. */
void mr_synth_defaults(mr_synth_options *o);
/* The defaults of preset `p` (sets o->preset too). */
void mr_synth_preset_defaults(mr_synth_options *o, mr_synth_preset p);
/* "standard" or "hard"; false for any other name. */
bool mr_synth_preset_from_name(const char *name, mr_synth_preset *p);
const char *mr_synth_preset_name(mr_synth_preset p);

/* Image number `index` of the set described by `o` (out_dir is not used). Each image depends
 * only on (seed, index, preset, size, fractions and max_lesions), not on n_images. */
mr_status mr_synth_generate(const mr_synth_options *o, int64_t index, mr_synth_sample *out);
void mr_synth_sample_free(mr_synth_sample *s);

/* Writes o->n_images PNGs (synth_00000.png, ...) and one via_region_data.json into
 * out_dir/train and out_dir/val (created when missing). */
mr_status mr_synth_write(const mr_synth_options *o);
/* The same, and fills `summary` (may be NULL). */
mr_status mr_synth_write_summary(const mr_synth_options *o, mr_synth_summary *summary);

#endif

/* What `--data` names, resolved one way for every verb that reads data (train, check-data,
 * evaluate, anchors), and the splits opened from it. --data may be a folder with train/ and
 * val/, a flat folder (images plus one annotation file, VIA's normal export), or an annotation
 * file; without val/, a seeded share of the images is held out for validation. */
#ifndef MR_DATA_SOURCE_H
#define MR_DATA_SOURCE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "dataset.h"

/* The command line's say, over the config's. */
typedef struct {
    const char *data;       /* --data; NULL: the config's DATASET */
    const char *image_root; /* --image-root; NULL: the config's IMAGE_ROOT */
    bool has_val_split;     /* --val-split given: */
    float val_split;        /* the share held out when there is no val/ (0 to 0.9) */
} mr_data_args;

/* Resolves into `cfg`, so the run's config.json records what was used and resuming or
 * evaluating with it reopens the same images: DATASET.TRAIN and DATASET.VAL become absolute
 * annotation paths (a folder with train/ and val/ gives its two; a folder with only train/
 * gives that; a flat folder or a file gives TRAIN = it and VAL = "", with VALIDATION_SPLIT the
 * share held out: --val-split, else the config's, 0.2 by default); a folder that is the train/
 * or val/ of such a parent stands for the parent. IMAGE_ROOT becomes absolute and must be a
 * folder. Without --data, the config's DATASET is read the same way (a TRAIN without VAL may be
 * any of the three). Fails naming the path when nothing usable is there. */
mr_status mr_data_resolve(mr_config *cfg, const mr_data_args *args);

/* What was opened, for the verbs to print. */
typedef struct {
    int64_t n_train, n_val; /* images on each side (0 for a side not opened) */
    bool seeded;            /* the validation side is a seeded share of TRAIN */
    char line[2600];        /* one line: which annotation files, how many images each side */
} mr_data_summary;

/* Opens the training and the validation dataset of a resolved config; either pointer may be
 * NULL when that side is not wanted, and *val stays NULL when there is no validation data
 * (VAL empty and VALIDATION_SPLIT 0). A split set is loaded once and divided by
 * mr_dataset_split. Any error in the annotations fails (mr_dataset_load_strict). `sum` may be
 * NULL. On failure nothing is left open. */
mr_status mr_data_open(const mr_config *cfg, mr_dataset **train, mr_dataset **val,
                       mr_data_summary *sum);

/* Which images a verb that reads one set takes. */
typedef enum {
    MR_DATA_TRAIN, /* the training side (anchors) */
    MR_DATA_VAL,   /* the validation side (evaluate) */
    MR_DATA_ALL    /* every image of a flat folder or file, not split (evaluate --split all) */
} mr_data_part;

mr_status mr_data_open_part(const mr_config *cfg, mr_data_part part, mr_dataset **out,
                            mr_data_summary *sum);

/* check-data: each annotation set of a resolved config loaded by mr_dataset_load, the rules
 * training applies, with its whole report whatever the errors. */
typedef struct {
    const char *role;       /* "training", "validation", or "training + validation" (split) */
    mr_annotations ann;     /* images that loaded, and the report */
    mr_status status;       /* mr_dataset_load's */
    char message[1536];     /* its message when not MR_OK */
    int64_t n_train, n_val; /* the images on each side (of a split set: the seeded split) */
} mr_data_check_set;

typedef struct {
    mr_data_check_set sets[2];
    int n_sets;
} mr_data_check;

/* Loads every set; returns the first failing status (MR_OK when all loaded cleanly). `extra`
 * may be NULL. */
mr_status mr_data_check_load(const mr_config *cfg, const mr_dataset_extra *extra,
                             mr_data_check *out);
void mr_data_check_free(mr_data_check *c);

/* The check-data report of `c` (loaded with status `st` by mr_data_check_load) to `out`: per set
 * the counts, image file kinds, instances per class, box sizes and every problem, then the
 * verdict (whether train will accept the data). */
void mr_data_check_print(const mr_data_check *c, mr_status st, const mr_config *cfg, FILE *out);

/* "a,b , c" -> CLASS_NAMES {"BG", "a", "b", "c"} and NUM_CLASSES (a leading "BG" is optional):
 * check-data's --classes. MR_ERR_ARG naming --classes when the list is empty or too long. */
mr_status mr_data_set_classes(mr_config *cfg, const char *list);

#endif

/* Configs: JSON files whose keys are Matterport's Config names plus mrcnn's own (CLASS_NAMES,
 * DATASET, STAGES, EPOCHS, ...). Every key is known, typed and range-checked; an unknown key is
 * an error with a did-you-mean. The resolved config is printable as JSON and hashable. */
#ifndef MR_CONFIG_H
#define MR_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "../data/augment.h"
#include "../layers/model.h"

#define MR_MAX_STAGES 8

typedef struct {
    char layers[256]; /* "heads", "3+", "4+", "5+", "all" or a regex of layer names */
    int until_epoch;  /* the stage runs while epoch < until_epoch */
    float learning_rate;
} mr_stage;

/* WEIGHT_INIT: the starting values of every weight that no weights file provides. */
typedef enum {
    MR_INIT_GLOROT = 0, /* Keras' defaults: glorot-uniform kernels, zero biases (Matterport) */
    MR_INIT_KAIMING = 1 /* torchvision's: Kaiming-normal convolutions, small-normal heads */
} mr_weight_init;

typedef struct {
    mr_net_config net;
    char name[64];                         /* NAME */
    char description[512];                 /* DESCRIPTION: free text for people */
    char class_names[MR_MAX_CLASSES][48];  /* CLASS_NAMES, [0] = "BG" */
    char class_attribute[64];              /* CLASS_ATTRIBUTE ("" = class/name/label/type) */
    char train_data[1024], val_data[1024]; /* DATASET.TRAIN / DATASET.VAL */
    char image_root[1024];                 /* IMAGE_ROOT: where else images are looked for */
    float validation_split;                /* VALIDATION_SPLIT: share of TRAIN held out when VAL
                                              is empty (default 0.2) */
    int epochs, steps_per_epoch, validation_steps, batch_size;
    int validation_metrics;       /* VALIDATION_METRICS: every N epochs, 0 off */
    int validation_metric_images; /* VALIDATION_METRIC_IMAGES: 0 = VALIDATION_STEPS x BATCH */
    float learning_rate, learning_momentum, gradient_clip_norm;
    mr_stage stages[MR_MAX_STAGES];
    int n_stages;
    uint64_t seed;
    int checkpoint_keep;
    int max_image_pixels;      /* MAX_IMAGE_PIXELS: larger images are refused (data/image.h) */
    int arena_mb;              /* ARENA_MB: per-step memory */
    mr_augment_params augment; /* AUGMENT: true (defaults), false (none) or per-op ranges */
    mr_weight_init weight_init;
    int warmup_steps; /* WARMUP_STEPS: the learning rate rises linearly over the run's first
                         steps, from 1/1000 of its value */
    int n_mean_pixel, n_pixel_std; /* values given; must equal IMAGE_CHANNEL_COUNT */
    char source[1024];             /* the file it came from */
} mr_config;

void mr_config_defaults(mr_config *c);
/* Reads a config file over the defaults. Errors name the file, the key and what was expected.
 * Relative paths in DATASET and IMAGE_ROOT are taken against the config file's folder, not the
 * current directory, and come back absolute. */
mr_status mr_config_load(const char *path, mr_config *c);
/* The same from JSON text (`origin` names it in messages). */
mr_status mr_config_parse(const char *text, const char *origin, mr_config *c);
/* The full resolved config as JSON text (malloc'd); loads back to the same config. */
char *mr_config_to_json(const mr_config *c);
/* FNV-1a of the resolved JSON, for the banner and checkpoints. */
uint64_t mr_config_hash(const mr_config *c);
/* The stage (LAYERS, LEARNING_RATE) in force at a 0-based epoch. */
const mr_stage *mr_config_stage(const mr_config *c, int epoch);

#endif

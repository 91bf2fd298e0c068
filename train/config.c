/* The config reader and writer. One table lists every key with its type, place and range; the
 * reader, the writer and the did-you-mean all walk that table. cJSON stays inside this file. */
#include "config.h"

#include "../core/file.h"
#include "../core/text.h"
#include "../losses/losses.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    K_INT,
    K_FLOAT,
    K_BOOL,
    K_STRING,
    K_FLOATS,      /* float array with a count */
    K_INTS,        /* int array of fixed length */
    K_BACKBONE,    /* a name from the list of backbones (layers/network.c) */
    K_ROI_MODE,    /* "crop_and_resize" | "average" */
    K_SQUARE,      /* [n, n] -> one int (MASK_SHAPE, MINI_MASK_SHAPE) */
    K_CLASSES,     /* CLASS_NAMES */
    K_DATASET,     /* {"TRAIN": path, "VAL": path} */
    K_STAGES,      /* [{"LAYERS", "UNTIL_EPOCH", "LEARNING_RATE"}] */
    K_LOSSES,      /* {"rpn_class_loss": w, ...} */
    K_ANCHOR_FORM, /* "per_level" | "every_level" */
    K_SEED,
    K_ENUM,    /* one of `choices`, stored as its index in an int */
    K_AUGMENT, /* true | false | {"FLIP": p, "SCALE": [lo, hi], ...} */
} key_type;

typedef struct {
    const char *name;
    key_type type;
    size_t offset;
    double min, max;     /* values (or each element) must lie in [min, max] */
    size_t count_offset; /* K_FLOATS: where the count lives; K_INTS / K_STRING: capacity */
    int max_count;
    const char *help;
} key_spec;

/* The names of each K_ENUM key's values, in the order of its C enum. */
static const struct {
    const char *key;
    const char *const names[4]; /* NULL-terminated */
} enum_choices[] = {
    {"IMAGE_NORMALIZATION", {"mean", "mean_std", NULL}},
    {"ROI_SAMPLING", {"proportional", "fill", NULL}},
    {"WEIGHT_INIT", {"glorot", "kaiming", NULL}},
    {"DETECTION_CANDIDATES", {"top_class", "every_class", NULL}},
    {"RESNET_STRIDE_CONV", {"1x1", "3x3", NULL}},
    {"DETECTION_NMS", {"per_class", "class_agnostic", NULL}},
};

static const char *const *choices_of(const key_spec *k) {
    for (size_t i = 0; i < sizeof enum_choices / sizeof enum_choices[0]; i++)
        if (!strcmp(enum_choices[i].key, k->name)) return enum_choices[i].names;
    return NULL; /* a K_ENUM key missing above: caught by the config tests */
}

#define NET(field) offsetof(mr_config, net) + offsetof(mr_net_config, field)
#define TOP(field) offsetof(mr_config, field)

static const key_spec keys[] = {
    {"NAME", K_STRING, TOP(name), 0, 0, sizeof(((mr_config *)0)->name), 0, "run name"},
    {"DESCRIPTION", K_STRING, TOP(description), 0, 0, sizeof(((mr_config *)0)->description), 0,
     "what the config is for, in words"},
    {"BACKBONE", K_BACKBONE, NET(backbone_name), 0, 0, 0, 0,
     "backbone name, e.g. resnet101 (layers/network.c lists them)"},
    {"NUM_CLASSES", K_INT, NET(num_classes), 2, MR_MAX_CLASSES, 0, 0, "classes incl. background"},
    {"CLASS_NAMES", K_CLASSES, 0, 0, 0, 0, 0, "class names, BG first"},
    {"CLASS_ATTRIBUTE", K_STRING, TOP(class_attribute), 0, 0,
     sizeof(((mr_config *)0)->class_attribute), 0, "VIA region attribute holding the class"},
    {"DATASET", K_DATASET, 0, 0, 0, 0, 0, "{\"TRAIN\": path, \"VAL\": path}"},
    {"IMAGE_ROOT", K_STRING, TOP(image_root), 0, 0, sizeof(((mr_config *)0)->image_root), 0,
     "folder searched for images a VIA default path or filename does not find"},
    {"IMAGE_MIN_DIM", K_INT, NET(image_min_dim), 0, 8192, 0, 0, "shorter side scaled up to this"},
    {"IMAGE_MAX_DIM", K_INT, NET(image_max_dim), 64, 8192, 0, 0, "square side, multiple of 64"},
    {"IMAGE_CHANNEL_COUNT", K_INT, NET(image_channels), 1, 3, 0, 0, "1 or 3"},
    {"MEAN_PIXEL", K_FLOATS, NET(mean_pixel), -1000, 1000, TOP(n_mean_pixel), 3,
     "per-channel mean, one value per channel"},
    {"IMAGE_NORMALIZATION", K_ENUM, NET(image_normalization), 0, 0, 0, 0,
     "mean (subtract MEAN_PIXEL, Matterport) or mean_std (then divide by PIXEL_STD)"},
    {"PIXEL_STD", K_FLOATS, NET(pixel_std), 1e-3, 1000, TOP(n_pixel_std), 3,
     "per-channel divisor with IMAGE_NORMALIZATION mean_std"},
    {"BACKBONE_FILTERS", K_INT, NET(backbone_filters), 1, 64, 0, 0, "conv1/stage-2 width"},
    {"RESNET_STRIDE_CONV", K_ENUM, NET(resnet_stride), 0, 0, 0, 0,
     "1x1 (stride in branch2a, Matterport) or 3x3 (in branch2b, ResNet v1.5 / torchvision)"},
    {"BACKBONE_STRIDES", K_INTS, NET(strides), 1, 1024, 5, 5, "P2..P6 strides"},
    {"TOP_DOWN_PYRAMID_SIZE", K_INT, NET(pyramid_size), 1, 4096, 0, 0, "FPN channels"},
    {"RPN_CONV_DEPTH", K_INT, NET(rpn_depth), 1, 4096, 0, 0, "rpn_conv_shared filters"},
    {"FPN_CLASSIF_FC_LAYERS_SIZE", K_INT, NET(fc_size), 1, 16384, 0, 0, "box head width"},
    {"POOL_SIZE", K_INT, NET(pool_size), 1, 64, 0, 0, "box head ROI size"},
    {"MASK_POOL_SIZE", K_INT, NET(mask_pool_size), 1, 64, 0, 0, "mask head ROI size"},
    {"MASK_SHAPE", K_SQUARE, NET(mask_shape), 1, 128, 0, 0, "[28, 28] or [14, 14]"},
    {"RPN_ANCHOR_SCALES", K_FLOATS, NET(anchor_scales), 1, 4096, NET(n_anchor_scales),
     MR_MAX_ANCHOR_SCALES, "anchor sizes in molded-image pixels"},
    {"RPN_ANCHOR_FORM", K_ANCHOR_FORM, NET(anchor_scales_per_level), 0, 0, 0, 0,
     "per_level (one scale per FPN level) or every_level (all sizes at each level)"},
    {"RPN_ANCHOR_RATIOS", K_FLOATS, NET(anchor_ratios), 0.01, 100, NET(n_anchor_ratios),
     MR_MAX_ANCHOR_RATIOS, "width / height"},
    {"RPN_ANCHOR_STRIDE", K_INT, NET(anchor_stride), 1, 16, 0, 0, "feature cells"},
    {"RPN_BBOX_STD_DEV", K_FLOATS, NET(rpn_bbox_std), 1e-6, 100, 0, 4, "delta scaling"},
    {"BBOX_STD_DEV", K_FLOATS, NET(bbox_std), 1e-6, 100, 0, 4, "delta scaling"},
    {"RPN_TRAIN_ANCHORS_PER_IMAGE", K_INT, NET(rpn_train_anchors), 2, 100000, 0, 0, ""},
    {"PRE_NMS_LIMIT", K_INT, NET(pre_nms_limit), 1, 1000000, 0, 0, ""},
    {"POST_NMS_ROIS_TRAINING", K_INT, NET(post_nms_rois_training), 1, 100000, 0, 0, ""},
    {"POST_NMS_ROIS_INFERENCE", K_INT, NET(post_nms_rois_inference), 1, 100000, 0, 0, ""},
    {"PROPOSALS_PER_LEVEL", K_BOOL, NET(proposals_per_level), 0, 0, 0, 0,
     "top-k and NMS per FPN level (torchvision) instead of over all anchors (Matterport)"},
    {"RPN_NMS_THRESHOLD", K_FLOAT, NET(rpn_nms_threshold), 0, 1, 0, 0, ""},
    {"TRAIN_ROIS_PER_IMAGE", K_INT, NET(train_rois_per_image), 1, 10000, 0, 0, ""},
    {"ROI_POSITIVE_RATIO", K_FLOAT, NET(roi_positive_ratio), 0.001, 1, 0, 0, ""},
    {"ROI_SAMPLING", K_ENUM, NET(roi_sampling), 0, 0, 0, 0,
     "proportional (P/ratio - P negatives, Matterport) or fill (TRAIN_ROIS_PER_IMAGE - P)"},
    {"PROPOSALS_INCLUDE_GT", K_BOOL, NET(proposals_include_gt), 0, 0, 0, 0,
     "add the ground-truth boxes to the proposals in training"},
    {"USE_MINI_MASK", K_BOOL, NET(use_mini_mask), 0, 0, 0, 0, ""},
    {"MINI_MASK_SHAPE", K_SQUARE, NET(mini_mask_shape), 4, 1024, 0, 0, "[56, 56]"},
    {"MAX_GT_INSTANCES", K_INT, NET(max_gt_instances), 1, 10000, 0, 0, ""},
    {"DETECTION_MAX_INSTANCES", K_INT, NET(detection_max_instances), 1, 10000, 0, 0, ""},
    {"DETECTION_MIN_CONFIDENCE", K_FLOAT, NET(detection_min_confidence), 0, 1, 0, 0, ""},
    {"DETECTION_NMS_THRESHOLD", K_FLOAT, NET(detection_nms_threshold), 0, 1, 0, 0, ""},
    {"DETECTION_CANDIDATES", K_ENUM, NET(detection_candidates), 0, 0, 0, 0,
     "top_class (each ROI's argmax class, Matterport) or every_class (torchvision)"},
    {"DETECTION_NMS", K_ENUM, NET(detection_nms), 0, 0, 0, 0,
     "per_class (Matterport) or class_agnostic (one class per lesion)"},
    {"LOSS_WEIGHTS", K_LOSSES, NET(loss_weights), 0, 1000, 0, 0, "weight of each loss"},
    {"WEIGHT_DECAY", K_FLOAT, NET(weight_decay), 0, 1, 0, 0, "L2, Matterport style"},
    {"ROI_ALIGN_MODE", K_ROI_MODE, NET(roi_align_mode), 0, 0, 0, 0, "crop_and_resize or average"},
    {"TRAIN_BN", K_BOOL, NET(train_bn), 0, 0, 0, 0, "false: frozen batch norm"},
    {"BN_EPSILON", K_FLOAT, NET(bn_eps), 1e-12, 1, 0, 0, ""},
    {"VALIDATION_SPLIT", K_FLOAT, TOP(validation_split), 0, 0.9, 0, 0,
     "seeded share of DATASET.TRAIN held out for validation when DATASET.VAL is empty"},
    {"EPOCHS", K_INT, TOP(epochs), 1, 100000, 0, 0, ""},
    {"STEPS_PER_EPOCH", K_INT, TOP(steps_per_epoch), 1, 10000000, 0, 0, ""},
    {"VALIDATION_STEPS", K_INT, TOP(validation_steps), 0, 1000000, 0, 0, ""},
    {"VALIDATION_METRICS", K_INT, TOP(validation_metrics), 0, 100000, 0, 0,
     "score detections on the validation split every N epochs (mask AP, sensitivity, ...); 0 off"},
    {"VALIDATION_METRIC_IMAGES", K_INT, TOP(validation_metric_images), 0, 1000000, 0, 0,
     "validation images scored; 0: as many as the validation loss uses"},
    {"BATCH_SIZE", K_INT, TOP(batch_size), 1, 256, 0, 0, "images per step"},
    {"LEARNING_RATE", K_FLOAT, TOP(learning_rate), 1e-9, 10, 0, 0, ""},
    {"LEARNING_MOMENTUM", K_FLOAT, TOP(learning_momentum), 0, 0.9999, 0, 0, ""},
    {"GRADIENT_CLIP_NORM", K_FLOAT, TOP(gradient_clip_norm), 0, 1e9, 0, 0, "0: no clipping"},
    {"STAGES", K_STAGES, 0, 0, 0, 0, 0, "[{LAYERS, UNTIL_EPOCH, LEARNING_RATE}]"},
    {"SEED", K_SEED, TOP(seed), 0, 0, 0, 0, ""},
    {"CHECKPOINT_KEEP", K_INT, TOP(checkpoint_keep), 1, 1000, 0, 0, ""},
    {"ARENA_MB", K_INT, TOP(arena_mb), 16, 1 << 20, 0, 0, "per-step memory, MiB"},
    {"AUGMENT", K_AUGMENT, TOP(augment), 0, 0, 0, 0,
     "true, false, or {FLIP, SCALE, TRANSLATE, BRIGHTNESS, CONTRAST, GAMMA, SPECKLE}"},
    {"WEIGHT_INIT", K_ENUM, TOP(weight_init), 0, 0, 0, 0,
     "glorot (Keras, Matterport) or kaiming (torchvision) for weights no file provides"},
    {"WARMUP_STEPS", K_INT, TOP(warmup_steps), 0, 1000000, 0, 0,
     "steps over which the learning rate rises linearly from 1/1000"},
    {"MAX_IMAGE_PIXELS", K_INT, TOP(max_image_pixels), 1, 1e9, 0, 0,
     "width x height above which an image is refused (decompression bombs)"},
};
#define N_KEYS (sizeof keys / sizeof keys[0])

void mr_config_defaults(mr_config *c) {
    memset(c, 0, sizeof *c);
    mr_net_config_defaults(&c->net);
    snprintf(c->name, sizeof c->name, "mrcnn");
    snprintf(c->class_names[0], sizeof c->class_names[0], "BG");
    for (int i = 1; i < c->net.num_classes; i++)
        snprintf(c->class_names[i], sizeof c->class_names[i], "class%d", i);
    c->epochs = 30;
    c->steps_per_epoch = 1000;
    c->validation_steps = 50;
    c->validation_metrics = 1;
    c->validation_metric_images = 0;
    c->batch_size = 2;
    c->learning_rate = 0.001f;
    c->learning_momentum = 0.9f;
    c->gradient_clip_norm = 5.0f;
    c->n_stages = 1;
    snprintf(c->stages[0].layers, sizeof c->stages[0].layers, "all");
    c->stages[0].until_epoch = c->epochs;
    c->stages[0].learning_rate = c->learning_rate;
    c->seed = 42;
    c->checkpoint_keep = 3;
    c->arena_mb = 3072;
    c->augment = mr_augment_defaults();
    c->weight_init = MR_INIT_GLOROT;
    c->warmup_steps = 0;
    c->max_image_pixels = 50000000; /* MR_IMAGE_MAX_PIXELS_DEFAULT, tests/test_image.c checks */
    c->validation_split = 0.2f;     /* a data set without val/ still gets validated */
    c->n_mean_pixel = c->n_pixel_std = 3;
}

/* ---- did you mean ------------------------------------------------------------------------- */

static const char *closest_key(const char *name) {
    const char *best = NULL;
    size_t best_d = 4;
    for (size_t k = 0; k < N_KEYS; k++) {
        size_t d = mr_edit_distance(name, keys[k].name); /* keys are upper case: case ignored */
        if (d < best_d) {
            best_d = d;
            best = keys[k].name;
        }
    }
    return best;
}

/* ---- reading ------------------------------------------------------------------------------ */

static mr_status bad(const char *origin, const key_spec *k, const char *fmt, const char *detail) {
    char what[256];
    snprintf(what, sizeof what, fmt, detail);
    return mr_fail(MR_ERR_CONFIG, "%s: %s%s", origin, k->name, what);
}

static mr_status read_number(const char *origin, const key_spec *k, const cJSON *v, double *out,
                             const char *where) {
    char buf[160];
    if (!cJSON_IsNumber(v)) {
        snprintf(buf, sizeof buf, "%s", where);
        return bad(origin, k, "%s must be a number", buf);
    }
    double d = v->valuedouble;
    bool in_range = isfinite(d) && d >= k->min && d <= k->max;
    /* A float key at its documented bound is stored as the nearest float, which may lie just
     * past the bound; written out and read back it must still be accepted, so fractional values
     * are compared as the float they become. Whole numbers (the integer keys) stay exact. */
    if (!in_range && isfinite(d) && d != floor(d))
        in_range = (float)d >= (float)k->min && (float)d <= (float)k->max;
    if (!in_range) {
        return mr_fail(MR_ERR_CONFIG, "%s: %s%s is %g, outside the allowed range [%g, %g]", origin,
                       k->name, where, d, k->min, k->max);
    }
    *out = d;
    return MR_OK;
}

static mr_status read_string(const char *origin, const char *name, const cJSON *v, char *dst,
                             size_t capacity) {
    if (!cJSON_IsString(v)) return mr_fail(MR_ERR_CONFIG, "%s: %s must be a string", origin, name);
    if (strlen(v->valuestring) >= capacity)
        return mr_fail(MR_ERR_CONFIG, "%s: %s is longer than %zu characters", origin, name,
                       capacity - 1);
    memcpy(dst, v->valuestring, strlen(v->valuestring) + 1);
    return MR_OK;
}

/* AUGMENT: true = mr_augment_defaults(), false = none, or an object naming the ops to use
 * (the ops it leaves out are off). */
static mr_status read_augment(const char *origin, const key_spec *k, const cJSON *v,
                              mr_augment_params *a) {
    if (cJSON_IsBool(v)) {
        *a = cJSON_IsTrue(v) ? mr_augment_defaults() : mr_augment_none();
        return MR_OK;
    }
    if (!cJSON_IsObject(v))
        return bad(origin, k,
                   "%s must be true, false or an object such as {\"FLIP\": 0.5, \"SCALE\": "
                   "[0.9, 1.1]}",
                   "");
    static const struct {
        const char *name;
        size_t offset;
        double max;
    } ops[] = {{"FLIP", offsetof(mr_augment_params, flip_prob), 1},
               {"TRANSLATE", offsetof(mr_augment_params, translate), 1},
               {"BRIGHTNESS", offsetof(mr_augment_params, brightness), 1},
               {"CONTRAST", offsetof(mr_augment_params, contrast), 0.99},
               {"GAMMA", offsetof(mr_augment_params, gamma), 3},
               {"SPECKLE", offsetof(mr_augment_params, speckle), 1}};
    *a = mr_augment_none();
    const cJSON *item;
    char where[64];
    cJSON_ArrayForEach(item, v) {
        snprintf(where, sizeof where, ".%s", item->string);
        double d = 0.0;
        if (!strcmp(item->string, "SCALE")) {
            key_spec sk = {.name = k->name, .min = 0.1, .max = 10};
            if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2)
                return bad(origin, k, "%s.SCALE must be [min, max]", "");
            double lo = 0.0, hi = 0.0;
            MR_TRY(read_number(origin, &sk, cJSON_GetArrayItem(item, 0), &lo, ".SCALE[0]"));
            MR_TRY(read_number(origin, &sk, cJSON_GetArrayItem(item, 1), &hi, ".SCALE[1]"));
            if (lo > hi) return bad(origin, k, "%s.SCALE must be [min, max] with min <= max", "");
            a->scale_min = (float)lo;
            a->scale_max = (float)hi;
            continue;
        }
        size_t i = 0, n = sizeof ops / sizeof ops[0];
        while (i < n && strcmp(item->string, ops[i].name)) i++;
        if (i == n)
            return mr_fail(MR_ERR_CONFIG,
                           "%s: AUGMENT has unknown key \"%s\" (FLIP, SCALE, TRANSLATE, "
                           "BRIGHTNESS, CONTRAST, GAMMA, SPECKLE)",
                           origin, item->string);
        key_spec ok = {.name = k->name, .min = 0, .max = ops[i].max};
        MR_TRY(read_number(origin, &ok, item, &d, where));
        *(float *)((char *)a + ops[i].offset) = (float)d;
    }
    return MR_OK;
}

/* An enum key: one of its choices, stored as the choice's index. */
static mr_status read_enum(const char *origin, const key_spec *k, const cJSON *v, char *base) {
    const char *const *names = choices_of(k);
    for (int i = 0; cJSON_IsString(v) && names[i]; i++)
        if (!strcmp(v->valuestring, names[i])) {
            *(int *)(base + k->offset) = i;
            return MR_OK;
        }
    char list[256] = "";
    for (int i = 0; names[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s\"%s\"",
                 i == 0         ? ""
                 : names[i + 1] ? ", "
                                : " or ",
                 names[i]);
    return bad(origin, k, " must be %s", list);
}

/* A list of numbers: K_INTS of exactly max_count, K_FLOATS of exactly max_count or, with a
 * count field, 1 to max_count. */
static mr_status read_list(const char *origin, const key_spec *k, const cJSON *v, char *base) {
    double d = 0.0;
    char where[64];
    if (!cJSON_IsArray(v)) return bad(origin, k, "%s must be a list of numbers", "");
    int n = cJSON_GetArraySize(v);
    bool fixed = k->type == K_INTS || k->count_offset == 0;
    if ((fixed && n != k->max_count) || (!fixed && (n < 1 || n > k->max_count))) {
        return mr_fail(MR_ERR_CONFIG, "%s: %s has %d values, expected %s%d", origin, k->name, n,
                       fixed ? "" : "1 to ", k->max_count);
    }
    for (int i = 0; i < n; i++) {
        snprintf(where, sizeof where, "[%d]", i);
        MR_TRY(read_number(origin, k, cJSON_GetArrayItem(v, i), &d, where));
        if (k->type == K_INTS)
            ((int *)(base + k->offset))[i] = (int)d;
        else
            ((float *)(base + k->offset))[i] = (float)d;
    }
    if (!fixed) *(int *)(base + k->count_offset) = n;
    return MR_OK;
}

/* CLASS_NAMES: 2 to MR_MAX_CLASSES distinct names, BG first; they set NUM_CLASSES. */
static mr_status read_classes(const char *origin, const key_spec *k, const cJSON *v, mr_config *c) {
    char where[64];
    if (!cJSON_IsArray(v)) return bad(origin, k, "%s must be a list of names", "");
    int n = cJSON_GetArraySize(v);
    if (n < 2 || n > MR_MAX_CLASSES)
        return mr_fail(MR_ERR_CONFIG,
                       "%s: CLASS_NAMES has %d names, expected 2 to %d (BG "
                       "first)",
                       origin, n, MR_MAX_CLASSES);
    for (int i = 0; i < n; i++) {
        snprintf(where, sizeof where, "CLASS_NAMES[%d]", i);
        MR_TRY(read_string(origin, where, cJSON_GetArrayItem(v, i), c->class_names[i],
                           sizeof c->class_names[i]));
        for (int j = 0; j < i; j++)
            if (!strcmp(c->class_names[i], c->class_names[j]))
                return mr_fail(MR_ERR_CONFIG, "%s: CLASS_NAMES lists \"%s\" twice", origin,
                               c->class_names[i]);
    }
    c->net.num_classes = n;
    return MR_OK;
}

/* DATASET: {"TRAIN": path, "VAL": path}. */
static mr_status read_dataset(const char *origin, const key_spec *k, const cJSON *v, mr_config *c) {
    if (!cJSON_IsObject(v))
        return bad(origin, k, "%s must be {\"TRAIN\": path, \"VAL\": path}", "");
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        if (!strcmp(item->string, "TRAIN"))
            MR_TRY(read_string(origin, "DATASET.TRAIN", item, c->train_data, sizeof c->train_data));
        else if (!strcmp(item->string, "VAL"))
            MR_TRY(read_string(origin, "DATASET.VAL", item, c->val_data, sizeof c->val_data));
        else
            return mr_fail(MR_ERR_CONFIG, "%s: DATASET has unknown key \"%s\" (TRAIN or VAL)",
                           origin, item->string);
    }
    return MR_OK;
}

/* LOSS_WEIGHTS: {"rpn_class_loss": w, ...}, any subset of the losses. */
static mr_status read_losses(const char *origin, const key_spec *k, const cJSON *v, mr_config *c) {
    double d = 0.0;
    char where[64];
    if (!cJSON_IsObject(v)) return bad(origin, k, "%s must be an object of loss weights", "");
    const cJSON *item;
    cJSON_ArrayForEach(item, v) {
        int found = -1;
        for (int i = 0; i < MR_LOSS_COUNT; i++)
            if (!strcmp(item->string, mr_loss_names[i])) found = i;
        if (found < 0) {
            char names[256] = "";
            for (int i = 0; i < MR_LOSS_COUNT; i++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                         mr_loss_names[i]);
            return mr_fail(MR_ERR_CONFIG, "%s: LOSS_WEIGHTS has unknown loss \"%s\" (%s)", origin,
                           item->string, names);
        }
        snprintf(where, sizeof where, ".%s", item->string);
        MR_TRY(read_number(origin, k, item, &d, where));
        c->net.loss_weights[found] = (float)d;
    }
    return MR_OK;
}

/* STAGES: 1 to MR_MAX_STAGES of {"LAYERS", "UNTIL_EPOCH", "LEARNING_RATE"}, epochs rising. */
static mr_status read_stages(const char *origin, const key_spec *k, const cJSON *v, mr_config *c) {
    double d = 0.0;
    char where[64];
    if (!cJSON_IsArray(v)) return bad(origin, k, "%s must be a list of stages", "");
    int n = cJSON_GetArraySize(v);
    if (n < 1 || n > MR_MAX_STAGES)
        return mr_fail(MR_ERR_CONFIG, "%s: STAGES has %d entries, expected 1 to %d", origin, n,
                       MR_MAX_STAGES);
    for (int i = 0; i < n; i++) {
        const cJSON *s = cJSON_GetArrayItem(v, i);
        mr_stage *st = &c->stages[i];
        if (!cJSON_IsObject(s))
            return mr_fail(MR_ERR_CONFIG, "%s: STAGES[%d] must be an object", origin, i);
        const cJSON *layers = cJSON_GetObjectItemCaseSensitive(s, "LAYERS");
        const cJSON *until = cJSON_GetObjectItemCaseSensitive(s, "UNTIL_EPOCH");
        const cJSON *lr = cJSON_GetObjectItemCaseSensitive(s, "LEARNING_RATE");
        const cJSON *item;
        cJSON_ArrayForEach(item, s) {
            if (strcmp(item->string, "LAYERS") && strcmp(item->string, "UNTIL_EPOCH") &&
                strcmp(item->string, "LEARNING_RATE"))
                return mr_fail(MR_ERR_CONFIG,
                               "%s: STAGES[%d] has unknown key \"%s\" (LAYERS, "
                               "UNTIL_EPOCH, LEARNING_RATE)",
                               origin, i, item->string);
        }
        snprintf(where, sizeof where, "STAGES[%d].LAYERS", i);
        if (!layers) return mr_fail(MR_ERR_CONFIG, "%s: %s is missing", origin, where);
        MR_TRY(read_string(origin, where, layers, st->layers, sizeof st->layers));
        key_spec ek = {.name = "STAGES", .min = 1, .max = 100000};
        snprintf(where, sizeof where, "[%d].UNTIL_EPOCH", i);
        if (!until) return mr_fail(MR_ERR_CONFIG, "%s: STAGES%s is missing", origin, where);
        MR_TRY(read_number(origin, &ek, until, &d, where));
        st->until_epoch = (int)d;
        if (i > 0 && st->until_epoch <= c->stages[i - 1].until_epoch)
            return mr_fail(MR_ERR_CONFIG,
                           "%s: STAGES[%d].UNTIL_EPOCH %d must be after the "
                           "previous stage's %d",
                           origin, i, st->until_epoch, c->stages[i - 1].until_epoch);
        key_spec lk = {.name = "STAGES", .min = 1e-9, .max = 10};
        snprintf(where, sizeof where, "[%d].LEARNING_RATE", i);
        st->learning_rate = -1.0f; /* filled from LEARNING_RATE after the whole file */
        if (lr) {
            MR_TRY(read_number(origin, &lk, lr, &d, where));
            st->learning_rate = (float)d;
        }
    }
    c->n_stages = n;
    return MR_OK;
}

static mr_status read_key(const char *origin, const key_spec *k, const cJSON *v, mr_config *c) {
    char *base = (char *)c;
    double d = 0.0;
    switch (k->type) {
    case K_INT:
        MR_TRY(read_number(origin, k, v, &d, ""));
        if (d != floor(d)) return bad(origin, k, "%s must be a whole number", "");
        *(int *)(base + k->offset) = (int)d;
        return MR_OK;
    case K_FLOAT:
        MR_TRY(read_number(origin, k, v, &d, ""));
        *(float *)(base + k->offset) = (float)d;
        return MR_OK;
    case K_BOOL:
        if (!cJSON_IsBool(v)) return bad(origin, k, "%s must be true or false", "");
        *(bool *)(base + k->offset) = cJSON_IsTrue(v);
        return MR_OK;
    case K_ENUM:
        return read_enum(origin, k, v, base);
    case K_AUGMENT:
        return read_augment(origin, k, v, &c->augment);
    case K_STRING:
        return read_string(origin, k->name, v, base + k->offset, k->count_offset);
    case K_SEED:
        MR_TRY(read_number(
            origin, &(key_spec){.name = k->name, .min = 0, .max = 9007199254740992.0}, v, &d, ""));
        *(uint64_t *)(base + k->offset) = (uint64_t)d;
        return MR_OK;
    case K_FLOATS:
    case K_INTS:
        return read_list(origin, k, v, base);
    case K_BACKBONE:
        if (!cJSON_IsString(v) || !mr_backbone_find(v->valuestring)) {
            char names[160], what[180];
            mr_backbone_names(names, sizeof names);
            snprintf(what, sizeof what, " must be %s", names);
            return bad(origin, k, "%s", what);
        }
        snprintf(c->net.backbone_name, sizeof c->net.backbone_name, "%s", v->valuestring);
        return MR_OK;
    case K_ROI_MODE:
        if (!cJSON_IsString(v) ||
            (strcmp(v->valuestring, "crop_and_resize") && strcmp(v->valuestring, "average")))
            return bad(origin, k, "%s must be \"crop_and_resize\" or \"average\"", "");
        c->net.roi_align_mode =
            strcmp(v->valuestring, "average") ? MR_ROI_CROP_AND_RESIZE : MR_ROI_AVERAGE;
        return MR_OK;
    case K_ANCHOR_FORM:
        if (!cJSON_IsString(v) ||
            (strcmp(v->valuestring, "per_level") && strcmp(v->valuestring, "every_level")))
            return bad(origin, k, "%s must be \"per_level\" or \"every_level\"", "");
        c->net.anchor_scales_per_level = !strcmp(v->valuestring, "per_level");
        return MR_OK;
    case K_SQUARE: {
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2)
            return bad(origin, k, "%s must be [n, n]", "");
        double a = 0, b = 0;
        MR_TRY(read_number(origin, k, cJSON_GetArrayItem(v, 0), &a, "[0]"));
        MR_TRY(read_number(origin, k, cJSON_GetArrayItem(v, 1), &b, "[1]"));
        if (a != b || a != floor(a)) return bad(origin, k, "%s must be square: [n, n]", "");
        *(int *)(base + k->offset) = (int)a;
        return MR_OK;
    }
    case K_CLASSES:
        return read_classes(origin, k, v, c);
    case K_DATASET:
        return read_dataset(origin, k, v, c);
    case K_LOSSES:
        return read_losses(origin, k, v, c);
    case K_STAGES:
        return read_stages(origin, k, v, c);
    }
    return mr_fail(MR_ERR_CONFIG, "%s: %s has an unhandled type", origin, k->name);
}

static size_t key_index(const char *name) {
    size_t i = 0;
    while (i < N_KEYS && strcmp(keys[i].name, name)) i++;
    return i;
}

/* Per-channel lists: one value per image channel. PIXEL_STD, when not given, is the default
 * for three channels or their mean for one. */
static mr_status check_channels(const char *origin, mr_config *c, const bool *seen) {
    int ch = c->net.image_channels;
    if (!seen[key_index("PIXEL_STD")] && c->n_pixel_std != ch) {
        float mean = (c->net.pixel_std[0] + c->net.pixel_std[1] + c->net.pixel_std[2]) / 3.0f;
        for (int i = 0; i < 3; i++) c->net.pixel_std[i] = ch == 1 ? mean : c->net.pixel_std[i];
        c->n_pixel_std = ch;
    }
    if (c->n_mean_pixel != ch)
        return mr_fail(MR_ERR_CONFIG,
                       "%s: MEAN_PIXEL has %d value%s but IMAGE_CHANNEL_COUNT is %d; give one "
                       "mean per channel%s",
                       origin, c->n_mean_pixel, c->n_mean_pixel == 1 ? "" : "s", ch,
                       ch == 1 ? ", e.g. \"MEAN_PIXEL\": [100.0]" : "");
    if (c->n_pixel_std != ch)
        return mr_fail(MR_ERR_CONFIG,
                       "%s: PIXEL_STD has %d value%s but IMAGE_CHANNEL_COUNT is %d; give one per "
                       "channel",
                       origin, c->n_pixel_std, c->n_pixel_std == 1 ? "" : "s", ch);
    return MR_OK;
}

static mr_status check_whole(const char *origin, mr_config *c, const bool *seen) {
    const bool had_classes = seen[key_index("CLASS_NAMES")], had_stages = seen[key_index("STAGES")],
               had_epochs = seen[key_index("EPOCHS")];
    MR_TRY(check_channels(origin, c, seen));
    if (c->net.image_max_dim % 64)
        return mr_fail(MR_ERR_CONFIG,
                       "%s: IMAGE_MAX_DIM %d must be a multiple of 64 (the "
                       "network halves the image six times)",
                       origin, c->net.image_max_dim);
    if (c->net.image_min_dim > c->net.image_max_dim)
        return mr_fail(MR_ERR_CONFIG, "%s: IMAGE_MIN_DIM %d is larger than IMAGE_MAX_DIM %d",
                       origin, c->net.image_min_dim, c->net.image_max_dim);
    if (c->net.anchor_scales_per_level && c->net.n_anchor_scales != 5)
        return mr_fail(MR_ERR_CONFIG,
                       "%s: RPN_ANCHOR_SCALES has %d values; with one scale per "
                       "FPN level it needs 5 (P2..P6), or set RPN_ANCHOR_FORM "
                       "\"every_level\"",
                       origin, c->net.n_anchor_scales);
    if (c->net.mask_shape != c->net.mask_pool_size &&
        c->net.mask_shape != 2 * c->net.mask_pool_size)
        return mr_fail(MR_ERR_CONFIG, "%s: MASK_SHAPE %d must be MASK_POOL_SIZE %d or twice it",
                       origin, c->net.mask_shape, c->net.mask_pool_size);
    if (!had_classes)
        for (int i = 1; i < c->net.num_classes; i++)
            snprintf(c->class_names[i], sizeof c->class_names[i], "class%d", i);
    if (strcmp(c->class_names[0], "BG"))
        return mr_fail(MR_ERR_CONFIG,
                       "%s: CLASS_NAMES must start with \"BG\" (the background), "
                       "found \"%s\"",
                       origin, c->class_names[0]);
    if (!had_stages) {
        c->n_stages = 1;
        snprintf(c->stages[0].layers, sizeof c->stages[0].layers, "all");
        c->stages[0].until_epoch = c->epochs;
    }
    for (int i = 0; i < c->n_stages; i++)
        if (c->stages[i].learning_rate < 0.0f || !had_stages)
            c->stages[i].learning_rate = c->learning_rate;
    if (had_stages && !had_epochs) c->epochs = c->stages[c->n_stages - 1].until_epoch;
    if (c->stages[c->n_stages - 1].until_epoch < c->epochs)
        return mr_fail(MR_ERR_CONFIG,
                       "%s: the last stage ends at epoch %d but EPOCHS is %d; "
                       "extend the last UNTIL_EPOCH",
                       origin, c->stages[c->n_stages - 1].until_epoch, c->epochs);
    mr_anchor_config a = mr_net_anchor_config(&c->net);
    mr_status st = mr_anchor_config_check(&a);
    if (st != MR_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", mr_last_error());
        return mr_fail(MR_ERR_CONFIG, "%s: %s", origin, msg);
    }
    return MR_OK;
}

mr_status mr_config_parse(const char *text, const char *origin, mr_config *c) {
    snprintf(c->source, sizeof c->source, "%s", origin);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        int64_t line, col;
        const char *at = cJSON_GetErrorPtr();
        mr_text_pos(text, strlen(text), at ? (size_t)(at - text) : 0, &line, &col);
        return mr_fail(MR_ERR_CONFIG, "%s:%lld:%lld: not valid JSON", origin, (long long)line,
                       (long long)col);
    }
    mr_status st = MR_OK;
    if (!cJSON_IsObject(root)) st = mr_fail(MR_ERR_CONFIG, "%s: a config is a JSON object", origin);
    bool seen[N_KEYS] = {false}, had_classes = false, had_num_classes = false;
    const cJSON *item;
    /* NUM_CLASSES and CLASS_NAMES may come in either order; both must agree. */
    cJSON_ArrayForEach(item, root) {
        if (st != MR_OK) break;
        const key_spec *k = NULL;
        for (size_t i = 0; i < N_KEYS; i++)
            if (!strcmp(item->string, keys[i].name)) k = &keys[i];
        if (!k) {
            const char *guess = closest_key(item->string);
            st = guess ? mr_fail(MR_ERR_CONFIG, "%s: unknown key \"%s\"; did you mean \"%s\"?",
                                 origin, item->string, guess)
                       : mr_fail(MR_ERR_CONFIG,
                                 "%s: unknown key \"%s\" (see configs/README for "
                                 "the keys)",
                                 origin, item->string);
            break;
        }
        int before = c->net.num_classes;
        st = read_key(origin, k, item, c);
        if (k->type == K_CLASSES) {
            had_classes = true;
            if (had_num_classes && before != c->net.num_classes)
                st = mr_fail(MR_ERR_CONFIG, "%s: NUM_CLASSES is %d but CLASS_NAMES lists %d names",
                             origin, before, c->net.num_classes);
        }
        if (!strcmp(k->name, "NUM_CLASSES")) {
            if (had_classes && before != c->net.num_classes)
                st = mr_fail(MR_ERR_CONFIG, "%s: NUM_CLASSES is %d but CLASS_NAMES lists %d names",
                             origin, c->net.num_classes, before);
            had_num_classes = true;
        }
        seen[k - keys] = true;
    }
    cJSON_Delete(root);
    if (st == MR_OK) st = check_whole(origin, c, seen);
    return st;
}

/* `field` (a path from the config) made absolute against `dir`; "" stays "". */
static mr_status absolute_against(const char *origin, const char *key, const char *dir, char *field,
                                  size_t size) {
    if (!field[0] || field[0] == '/') return MR_OK;
    char joined[4096];
    const char *rel = field[0] == '.' && field[1] == '/' ? field + 2 : field;
    int n = snprintf(joined, sizeof joined, "%s/%s", dir, rel);
    if (n < 0 || (size_t)n >= size)
        return mr_fail(MR_ERR_CONFIG,
                       "%s: %s \"%s\" is longer than %zu bytes once taken against "
                       "the config's folder %s",
                       origin, key, field, size - 1, dir);
    memcpy(field, joined, (size_t)n + 1);
    return MR_OK;
}

/* A config names its data relative to itself, so it can travel with the data (configs/ next
 * to data/) and be run from any folder; the paths come back absolute, so a run's config.json
 * names the same files wherever it is read. */
static mr_status absolute_paths(const char *path, mr_config *c) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    char real[PATH_MAX];
    const char *base = realpath(dir, real) ? real : dir;
    MR_TRY(absolute_against(path, "DATASET.TRAIN", base, c->train_data, sizeof c->train_data));
    MR_TRY(absolute_against(path, "DATASET.VAL", base, c->val_data, sizeof c->val_data));
    return absolute_against(path, "IMAGE_ROOT", base, c->image_root, sizeof c->image_root);
}

mr_status mr_config_load(const char *path, mr_config *c) {
    char *text = NULL;
    mr_status st = mr_read_file(path, "config", (size_t)16 << 20, &text, NULL);
    if (st == MR_ERR_FORMAT) { /* too large: a config problem, as every other one */
        char msg[1200];
        snprintf(msg, sizeof msg, "%s", mr_last_error());
        return mr_fail(MR_ERR_CONFIG, "%s", msg);
    }
    if (st != MR_OK) return st;
    st = mr_config_parse(text, path, c);
    free(text);
    if (st == MR_OK) st = absolute_paths(path, c);
    return st;
}

/* ---- writing ------------------------------------------------------------------------------ */

/* A float as the user wrote it: the shortest decimal that reads back as the same float, so
 * config.json says 0.1 and not 0.10000000149011612. */
static cJSON *float_number(float f) {
    char buf[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return cJSON_CreateNumber(strtod(buf, NULL));
}

char *mr_config_to_json(const mr_config *c) {
    cJSON *root = cJSON_CreateObject();
    const char *base = (const char *)c;
    for (size_t i = 0; i < N_KEYS; i++) {
        const key_spec *k = &keys[i];
        cJSON *v = NULL;
        switch (k->type) {
        case K_INT:
            v = cJSON_CreateNumber(*(const int *)(base + k->offset));
            break;
        case K_FLOAT:
            v = float_number(*(const float *)(base + k->offset));
            break;
        case K_BOOL:
            v = cJSON_CreateBool(*(const bool *)(base + k->offset));
            break;
        case K_ENUM:
            v = cJSON_CreateString(choices_of(k)[*(const int *)(base + k->offset)]);
            break;
        case K_AUGMENT: {
            const mr_augment_params *a = &c->augment;
            v = cJSON_CreateObject();
            cJSON_AddItemToObject(v, "FLIP", float_number(a->flip_prob));
            float scale[2] = {a->scale_min, a->scale_max};
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, float_number(scale[0]));
            cJSON_AddItemToArray(pair, float_number(scale[1]));
            cJSON_AddItemToObject(v, "SCALE", pair);
            cJSON_AddItemToObject(v, "TRANSLATE", float_number(a->translate));
            cJSON_AddItemToObject(v, "BRIGHTNESS", float_number(a->brightness));
            cJSON_AddItemToObject(v, "CONTRAST", float_number(a->contrast));
            cJSON_AddItemToObject(v, "GAMMA", float_number(a->gamma));
            cJSON_AddItemToObject(v, "SPECKLE", float_number(a->speckle));
            break;
        }
        case K_STRING:
            v = cJSON_CreateString(base + k->offset);
            break;
        case K_SEED:
            v = cJSON_CreateNumber((double)c->seed);
            break;
        case K_FLOATS: {
            int n = k->count_offset ? *(const int *)(base + k->count_offset) : k->max_count;
            v = cJSON_CreateArray();
            for (int j = 0; j < n; j++)
                cJSON_AddItemToArray(v, float_number(((const float *)(base + k->offset))[j]));
            break;
        }
        case K_INTS:
            v = cJSON_CreateIntArray((const int *)(base + k->offset), k->max_count);
            break;
        case K_BACKBONE:
            v = cJSON_CreateString(c->net.backbone_name);
            break;
        case K_ROI_MODE:
            v = cJSON_CreateString(c->net.roi_align_mode == MR_ROI_AVERAGE ? "average"
                                                                           : "crop_and_resize");
            break;
        case K_ANCHOR_FORM:
            v = cJSON_CreateString(c->net.anchor_scales_per_level ? "per_level" : "every_level");
            break;
        case K_SQUARE: {
            int n = *(const int *)(base + k->offset), pair[2] = {n, n};
            v = cJSON_CreateIntArray(pair, 2);
            break;
        }
        case K_CLASSES:
            v = cJSON_CreateArray();
            for (int j = 0; j < c->net.num_classes; j++)
                cJSON_AddItemToArray(v, cJSON_CreateString(c->class_names[j]));
            break;
        case K_DATASET:
            v = cJSON_CreateObject();
            cJSON_AddStringToObject(v, "TRAIN", c->train_data);
            cJSON_AddStringToObject(v, "VAL", c->val_data);
            break;
        case K_LOSSES:
            v = cJSON_CreateObject();
            for (int j = 0; j < MR_LOSS_COUNT; j++)
                cJSON_AddItemToObject(v, mr_loss_names[j], float_number(c->net.loss_weights[j]));
            break;
        case K_STAGES:
            v = cJSON_CreateArray();
            for (int j = 0; j < c->n_stages; j++) {
                cJSON *s = cJSON_CreateObject();
                cJSON_AddStringToObject(s, "LAYERS", c->stages[j].layers);
                cJSON_AddNumberToObject(s, "UNTIL_EPOCH", c->stages[j].until_epoch);
                cJSON_AddItemToObject(s, "LEARNING_RATE", float_number(c->stages[j].learning_rate));
                cJSON_AddItemToArray(v, s);
            }
            break;
        }
        if (v) cJSON_AddItemToObject(root, k->name, v);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

uint64_t mr_config_hash(const mr_config *c) {
    char *text = mr_config_to_json(c);
    uint64_t h = 1469598103934665603ull;
    for (const char *p = text; p && *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ull;
    free(text);
    return h;
}

const mr_stage *mr_config_stage(const mr_config *c, int epoch) {
    for (int i = 0; i < c->n_stages; i++)
        if (epoch < c->stages[i].until_epoch) return &c->stages[i];
    return &c->stages[c->n_stages - 1];
}

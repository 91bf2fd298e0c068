/* Weight import and export: Matterport's Keras HDF5 files (mask_rcnn_coco.h5, weights-only or
 * whole-model saves) and mrcnn's own exports and checkpoints, detected from the file, loaded by
 * layer name into the parameter registry, with a report of what was loaded and what was not. */
#ifndef MR_WEIGHTS_H
#define MR_WEIGHTS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "../core/h5.h"
#include "../core/params.h"

#define MR_WEIGHTS_EXPORT_FORMAT  "mrcnn-weights"
#define MR_WEIGHTS_EXPORT_VERSION 1

typedef enum {
    MR_WEIGHTS_KERAS,      /* layer_names + weight_names, at "/" or "/model_weights" */
    MR_WEIGHTS_EXPORT,     /* mrcnn export: root attribute format = "mrcnn-weights", /params */
    MR_WEIGHTS_CHECKPOINT, /* mrcnn checkpoint: format = "mrcnn-checkpoint", /params (+momentum) */
} mr_weights_format;

const char *mr_weights_format_name(mr_weights_format f);

/* ---- what a file holds ------------------------------------------------------------------- */

/* One tensor of a weights file under the mrcnn parameter name it maps to. */
typedef struct {
    char param[MR_PARAM_NAME_MAX]; /* "rpn_conv_shared/kernel" */
    char layer[MR_PARAM_NAME_MAX]; /* "rpn_conv_shared": the layer it loads into */
    char group[MR_PARAM_NAME_MAX]; /* the file's top-level layer: "rpn_model" (= layer mostly) */
    char weight[32];               /* "kernel", "bias", "gamma", ... (the part after the last
                                      '/', ":0" and any "_N" suffix of the variable removed) */
    char dataset[512];             /* full path: "/rpn_model/rpn_conv_shared/kernel:0" */
    char dtype[16];                /* "float32", "float16", ... */
    int ndim;
    int64_t shape[MR_H5_MAX_DIMS];
    int64_t numel;
} mr_weights_tensor;

typedef struct {
    char *path;
    mr_weights_format format;
    char root[32]; /* the group the weights sit in: "/", "/model_weights", "/params" */
    mr_weights_tensor *items;
    int count, capacity;
    int n_file_layers;     /* Keras: names in layer_names, weightless ones included */
    int n_weighted_layers; /* file layers (groups) holding at least one tensor */
    char *keras_version;   /* Keras: the file's keras_version and backend (NULL if absent) */
    char *backend;
    char *config_json; /* mrcnn layouts: the resolved config stored in the file, or NULL */
} mr_weights_index;

/* Lists every tensor of a supported weights file without reading values. Fails with one line on
 * a missing, truncated or non-HDF5 file, and on an HDF5 file that is none of the formats. */
mr_status mr_weights_index_read(const char *path, mr_weights_index *out);
void mr_weights_index_free(mr_weights_index *ix);

/* ---- loading ------------------------------------------------------------------------------ */

typedef enum {
    MR_LOAD_LOADED,     /* every tensor of the layer came from the file */
    MR_LOAD_EXCLUDED,   /* in the file, left out on request or because NUM_CLASSES differs */
    MR_LOAD_MISSING,    /* the model has the layer, the file does not: keeps its initial values */
    MR_LOAD_UNEXPECTED, /* the file has weights for a layer the model does not have */
    MR_LOAD_MISSHAPED,  /* both have it but a shape or the set of tensors differs */
    MR_LOAD_KINDS
} mr_load_kind;

typedef struct {
    char layer[MR_PARAM_NAME_MAX];
    mr_load_kind kind;
    char detail[320]; /* mis-shaped: what differs; excluded: why */
} mr_load_entry;

typedef struct {
    char *path;
    mr_weights_format format;
    char root[32];
    mr_load_entry *entries; /* one per layer, model layers in model order, then unexpected ones */
    int count, capacity;
    int n[MR_LOAD_KINDS]; /* entries of each kind */
    char **notes;         /* "conv1/kernel: summed ...", "res2a_branch2a/bias: not in ..." */
    int n_notes;
    int file_classes, model_classes; /* from mrcnn_class_logits/kernel; 0 when absent */
    bool classes_excluded;           /* the class layers were left out automatically */
    int64_t tensors_loaded, values_loaded;
    bool applied; /* values were copied into the parameters */
} mr_load_report;

typedef struct {
    /* Layer names to leave out: mrcnn layer names ("mrcnn_mask", "rpn_conv_shared") or the file's
     * top-level Keras names ("rpn_model"); an item may hold several, comma-separated. */
    const char *const *exclude;
    int n_exclude;
    bool dry_run; /* build the report and check shapes, copy nothing (`mrcnn inspect --config`) */
} mr_weights_load_options;

/* Loads a Keras, export or checkpoint file into `p` by layer name. Loaded tensors are copied
 * as they are (mrcnn uses Keras' layouts); a bias missing from the file becomes zeros; a
 * 3-channel conv1 kernel is summed over its input channels for a 1-channel model; when the
 * class count differs, mrcnn_class_logits, mrcnn_bbox_fc and mrcnn_mask are left out. Fails,
 * before copying anything, when a layer that was not excluded does not fit, naming every such
 * layer. A NaN or Inf value in a loaded tensor fails with MR_ERR_NUMERIC naming it; the
 * parameters are then partly loaded and must not be used. `report` (may be NULL) is filled
 * whenever the file could be read; free it with
 * mr_load_report_free even when the load failed. `opt` may be NULL. */
mr_status mr_weights_load(const char *path, mr_params *p, const mr_weights_load_options *opt,
                          mr_load_report *report);
/* The report as a few lines: counts and names per kind, the notes. */
void mr_load_report_print(const mr_load_report *r, FILE *out);
void mr_load_report_free(mr_load_report *r);

/* ---- export ------------------------------------------------------------------------------ */

/* mrcnn layout: root attributes format/version/config, one dataset per parameter at
 * /params/<name>, float32 or (half) float16. Written atomically. config_json may be NULL. */
mr_status mr_weights_save(const char *path, const mr_params *p, const char *config_json, bool half);
/* Keras layout, loadable by Matterport's model.load_weights (by name or in order): layer_names,
 * weight_names, /<layer>/<layer>/<weight>:0 datasets, the RPN under the nested "rpn_model".
 * Written atomically. */
mr_status mr_weights_save_keras(const char *path, const mr_params *p);

#endif

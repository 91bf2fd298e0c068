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
#include "../layers/model.h" /* the network table: Keras groups and order */

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
    int count;
    size_t capacity;
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

/* What tensor shapes say about a network, read off Matterport's layer names; 0 = cannot tell
 * (a file without that layer, or not named as Matterport names it). */
typedef struct {
    int res4_blocks;   /* res4?_branch2a convs: 6 in ResNet-50, 23 in ResNet-101 */
    int depth;         /* 50 or 101 from res4_blocks, else 0 */
    int64_t filters;   /* BACKBONE_FILTERS: conv1's output channels */
    int64_t channels;  /* IMAGE_CHANNEL_COUNT: conv1's input channels */
    int64_t pyramid;   /* TOP_DOWN_PYRAMID_SIZE: fpn_c5p5's output channels */
    int64_t rpn_depth; /* RPN_CONV_DEPTH: rpn_conv_shared's output channels */
    int64_t fc_size;   /* FPN_CLASSIF_FC_LAYERS_SIZE: mrcnn_class_conv1's output channels */
    int64_t classes;   /* NUM_CLASSES: mrcnn_class_logits' outputs */
} mr_net_signature;

/* "the weights are ResNet-50 with 8 filters, the config is ResNet-101 with 64 filters (also
 * TOP_DOWN_PYRAMID_SIZE 32 vs 256)": how two networks differ, in config keys. false (and buf
 * "") when neither side can be described or nothing known differs. */
bool mr_net_signature_diff(const mr_net_signature *file, const mr_net_signature *model, char *buf,
                           size_t size);

typedef struct {
    char *path;
    mr_weights_format format;
    char root[32];
    mr_load_entry *entries; /* one per layer, model layers in model order, then unexpected ones */
    int count;
    size_t capacity;
    int n[MR_LOAD_KINDS]; /* entries of each kind */
    char **notes;         /* "conv1/kernel: summed ...", "res2a_branch2a/bias: not in ..." */
    int n_notes;
    size_t notes_cap;
    int file_classes, model_classes; /* from mrcnn_class_logits/kernel; 0 when absent */
    bool classes_excluded;           /* the class layers were left out automatically */
    int64_t tensors_loaded, values_loaded;
    int64_t tensors_verified; /* loaded tensors that matched their stored checksum */
    int64_t tensors_damaged;  /* loaded tensors that failed it (only with allow_damaged) */
    int n_wanted;             /* model layers not left out (on request or by NUM_CLASSES) */
    mr_net_signature file_net, model_net;
    bool other_network; /* refused: the shapes or the names say the file holds another
                           network (or too little of this one) */
    bool applied;       /* values were copied into the parameters */
    bool refused;       /* the load failed; the error line says why */
} mr_load_report;

typedef struct {
    /* Layer names to leave out: mrcnn layer names ("mrcnn_mask", "rpn_conv_shared") or the file's
     * top-level Keras names ("rpn_model"); an item may hold several, comma-separated. */
    const char *const *exclude;
    int n_exclude;
    bool dry_run; /* build the report and check shapes, copy nothing (`mrcnn inspect --config`) */
    /* Load tensors that fail their checksum (a warning each) instead of refusing the file:
     * `--allow-damaged`, for salvaging what a damaged file still holds. */
    bool allow_damaged;
    /* The caller has no --exclude option (predict, evaluate, export): messages leave out the
     * hint to use it. */
    bool no_exclude_hint;
} mr_weights_load_options;

/* Loads a Keras, export or checkpoint file into `p` by layer name. Loaded tensors are copied
 * as they are (mrcnn uses Keras' layouts); a bias missing from the file becomes zeros; a
 * 3-channel conv1 kernel is summed over its input channels for a 1-channel model; when the
 * class count differs, mrcnn_class_logits, mrcnn_bbox_fc and mrcnn_mask are left out.
 * Fails with one line (MR_ERR_FORMAT), before copying anything:
 *  - when a layer that was not excluded does not fit: when the shapes say the file holds
 *    another network (another BACKBONE_FILTERS, TOP_DOWN_PYRAMID_SIZE, RPN_CONV_DEPTH or
 *    FPN_CLASSIF_FC_LAYERS_SIZE, or more than half of the layers both have misfit), the line says
 *    which networks and names the first misfit; otherwise it names every misfit layer;
 *  - when fewer than half of the model's layers that were not left out (by --exclude or by
 *    NUM_CLASSES) are in the file: training would start from mostly random weights.
 * Every tensor copied is checked against its checksum where the file stores one (checkpoints
 * always do; a checkpoint tensor without one counts as damaged): a mismatch fails with
 * MR_ERR_FORMAT naming the file and the tensor, unless opt->allow_damaged. A NaN or Inf value
 * in a loaded tensor fails with MR_ERR_NUMERIC naming it. After a failure while copying the
 * parameters are partly loaded and must not be used. `report` (may be NULL) is filled
 * whenever the file could be read; free it with mr_load_report_free even when the load failed.
 * `opt` may be NULL. */
mr_status mr_weights_load(const char *path, mr_params *p, const mr_weights_load_options *opt,
                          mr_load_report *report);
/* Reads every tensor of a weights file back and checks it is finite and, where the file stores
 * checksums, matches its checksum (a checkpoint: every tensor, its momentum and its training
 * state). MR_OK when nothing is damaged, else the first damage as MR_ERR_FORMAT or
 * MR_ERR_NUMERIC naming the file and the tensor. *n_verified and *n_unverified (may be NULL)
 * count the tensors with and without a checksum. */
mr_status mr_weights_verify(const char *path, int64_t *n_verified, int64_t *n_unverified);
/* The report as a few lines: counts per kind, the first layer names of each kind (all with
 * mr_load_report_print_all), the notes. A refused load prints counts only: its error line says
 * why. */
void mr_load_report_print(const mr_load_report *r, FILE *out);
void mr_load_report_print_all(const mr_load_report *r, FILE *out);
void mr_load_report_free(mr_load_report *r);

/* ---- export ------------------------------------------------------------------------------ */

/* Both layouts store a checksum (MR_CHECKSUM_ATTR) on every dataset, which mr_weights_load
 * checks. */

/* mrcnn layout: root attributes format/version/config, one dataset per parameter at
 * /params/<name>, float32 or (half) float16. Written atomically. config_json may be NULL. */
mr_status mr_weights_save(const char *path, const mr_params *p, const char *config_json, bool half);
/* Keras layout, loadable by Matterport's model.load_weights (by name or in order): layer_names
 * in Keras' topological order (model.layers of Matterport's training graph, weightless layers
 * left out), weight_names, /<layer>/<layer>/<weight>:0 datasets, the RPN under the nested
 * "rpn_model"; all from the network table. Written atomically. */
mr_status mr_weights_save_keras_model(const char *path, const mr_model *m);
/* The same layout for a bare registry (no network table): layers in registry order, the RPN
 * nested by name (mr_net_keras_group). For tests and tools that hold no model. */
mr_status mr_weights_save_keras(const char *path, const mr_params *p);

#endif

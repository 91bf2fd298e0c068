/* The Mask R-CNN network as Matterport builds it: a backbone (ResNet-50/101, layers/
 * backbone_resnet.c, or any other mr_backbone), FPN P2..P6, the shared RPN head, and the box and
 * mask heads, with every parameter under its Matterport name so that mask_rcnn_coco.h5 loads by
 * name. The network-side settings of a config live here; the JSON reader (train/config.c) fills
 * them. */
#ifndef MR_MODEL_H
#define MR_MODEL_H

#include <stdbool.h>

#include "../core/params.h"
#include "../core/tensor.h"
#include "anchors.h"
#include "proposals.h"
#include "roi_align.h"

#define MR_MAX_ANCHOR_SCALES 16
#define MR_MAX_ANCHOR_RATIOS 8
#define MR_MAX_CLASSES       128

/* IMAGE_NORMALIZATION: what the network sees of a pixel value v of channel c. */
typedef enum {
    MR_NORM_MEAN = 0,     /* v - MEAN_PIXEL[c] (Matterport; what COCO weights expect) */
    MR_NORM_MEAN_STD = 1, /* (v - MEAN_PIXEL[c]) / PIXEL_STD[c] (torchvision, Detectron2) */
} mr_image_normalization;

/* ROI_SAMPLING: how many negatives the detection targets take besides P positives. */
typedef enum {
    MR_ROI_SAMPLING_PROPORTIONAL = 0, /* P / ROI_POSITIVE_RATIO - P, so none when P = 0
                                         (Matterport) */
    MR_ROI_SAMPLING_FILL = 1,         /* TRAIN_ROIS_PER_IMAGE - P (torchvision) */
} mr_roi_sampling;

/* RESNET_STRIDE_CONV: which convolution of a stage's first bottleneck halves the resolution. */
typedef enum {
    MR_STRIDE_1X1 =
        0, /* the 1x1 branch2a, as Matterport (Caffe's ResNet); COCO weights expect it */
    MR_STRIDE_3X3 = 1, /* the 3x3 branch2b, as torchvision (ResNet v1.5): the 1x1 no longer
                          skips three input positions of four */
} mr_resnet_stride;

/* DETECTION_CANDIDATES and DETECTION_NMS: see mr_detection_config. */
typedef enum { MR_DETECT_TOP_CLASS = 0, MR_DETECT_EVERY_CLASS = 1 } mr_detection_candidates;
typedef enum { MR_NMS_PER_CLASS = 0, MR_NMS_CLASS_AGNOSTIC = 1 } mr_detection_nms;
/* The five losses (losses/losses.h computes them), in LOSS_WEIGHTS and mr_loss_names order. */
enum {
    MR_LOSS_RPN_CLASS,
    MR_LOSS_RPN_BBOX,
    MR_LOSS_MRCNN_CLASS,
    MR_LOSS_MRCNN_BBOX,
    MR_LOSS_MRCNN_MASK,
    MR_LOSS_COUNT
};

/* A backbone's record (layers/network.h): how it declares, resolves and runs its layers. */
typedef struct mr_backbone mr_backbone;

typedef struct {
    char backbone_name[32]; /* BACKBONE: the name of a backbone in the list of layers/network.c
                               ("resnet101") */
    /* NULL: the backbone BACKBONE selects. Set: this record instead, whatever BACKBONE says
     * (tests, programs embedding the library); a config file cannot name it. */
    const mr_backbone *backbone;
    int num_classes; /* NUM_CLASSES, background included */
    int image_min_dim, image_max_dim, image_channels;
    float mean_pixel[3];
    mr_image_normalization image_normalization;
    float pixel_std[3]; /* PIXEL_STD: used with MR_NORM_MEAN_STD only */
    mr_resnet_stride resnet_stride;
    int backbone_filters; /* BACKBONE_FILTERS: conv1 and stage-2 width, 64 in ResNet;
                             smaller only for tests and the demo */
    int rpn_depth;        /* RPN_CONV_DEPTH: rpn_conv_shared filters, 512 in Matterport */
    int pyramid_size;     /* TOP_DOWN_PYRAMID_SIZE */
    int fc_size;          /* FPN_CLASSIF_FC_LAYERS_SIZE */
    int pool_size, mask_pool_size, mask_shape; /* 7, 14, 28 (14: no deconv) */
    int strides[5];                            /* BACKBONE_STRIDES */
    float anchor_scales[MR_MAX_ANCHOR_SCALES];
    int n_anchor_scales;
    bool anchor_scales_per_level; /* Matterport form; false = every size at every level */
    float anchor_ratios[MR_MAX_ANCHOR_RATIOS];
    int n_anchor_ratios;
    int anchor_stride;
    float rpn_bbox_std[4], bbox_std[4];
    int rpn_train_anchors;
    int pre_nms_limit, post_nms_rois_training, post_nms_rois_inference;
    bool proposals_per_level; /* PROPOSALS_PER_LEVEL: see mr_proposal_config */
    float rpn_nms_threshold;
    int train_rois_per_image;
    float roi_positive_ratio;
    mr_roi_sampling roi_sampling;
    bool proposals_include_gt; /* PROPOSALS_INCLUDE_GT: ground-truth boxes join the proposals
                                  before ROI sampling in training (torchvision); Matterport
                                  samples from the RPN's proposals only */
    bool use_mini_mask;
    int mini_mask_shape;
    int max_gt_instances;
    int detection_max_instances;
    float detection_min_confidence, detection_nms_threshold;
    mr_detection_candidates detection_candidates;
    mr_detection_nms detection_nms;
    float loss_weights[MR_LOSS_COUNT];
    float weight_decay;
    mr_roi_align_mode roi_align_mode;
    bool train_bn; /* false: batch norm always uses the moving statistics */
    float bn_eps;
} mr_net_config;

/* Matterport's Config defaults (ResNet-101, 1024 square, COCO anchors, 1 class + BG). */
void mr_net_config_defaults(mr_net_config *cfg);
/* PIXEL_STD when IMAGE_NORMALIZATION is "mean_std", else NULL (mean subtraction only): the
 * pixel_std argument of mr_mold_image and mr_augment. */
const float *mr_net_pixel_std(const mr_net_config *cfg);
/* The anchor settings as layers/anchors.h wants them (pointing into cfg). */
mr_anchor_config mr_net_anchor_config(const mr_net_config *cfg);

/* ---- the network table ---------------------------------------------------------------------
 * The network is declared once, as a table of layers (layers/network.c): each entry knows its
 * name, kind, parameters (registry indices), the batch norm that follows it, its stage, its Keras
 * group and its place in Keras' order. Freezing, initialisation, batch-norm folding, the Keras
 * layout and the summary iterate the table; the forward pass uses typed handles (mr_net_weights)
 * resolved from it once, at mr_model_init. */

typedef enum { MR_LAYER_CONV, MR_LAYER_BN, MR_LAYER_DENSE, MR_LAYER_DECONV } mr_layer_kind;

/* The stage a layer belongs to, for Matterport's presets ("3+" trains stages 3, 4, 5 and the
 * heads): 1 the stem (conv1, bn_conv1), 2..5 the backbone's stages (C2..C5), MR_STAGE_HEADS the
 * FPN, the RPN and the box and mask heads. */
#define MR_STAGE_HEADS 6

/* How WEIGHT_INIT "kaiming" starts a layer's kernel (torchvision's Mask R-CNN). */
typedef enum {
    MR_KAIMING_NORMAL_FAN_OUT, /* Kaiming-normal, fan_out, ReLU gain: backbone, mask head */
    MR_KAIMING_UNIFORM_FAN_IN, /* Kaiming-uniform with a = 1: FPN, box head's hidden convs */
    MR_KAIMING_NORMAL_0_01,    /* normal(0.01): RPN, class logits */
    MR_KAIMING_NORMAL_0_001,   /* normal(0.001): box regressor */
} mr_kaiming_rule;

#define MR_LAYER_MAX_PARAMS 4

typedef struct {
    char name[48]; /* Matterport's layer name: "res4b_branch2a" */
    mr_layer_kind kind;
    int stage;               /* 1..5 or MR_STAGE_HEADS */
    const char *keras_group; /* the top-level Keras layer holding it: "rpn_model", or NULL for
                                the layer itself (mr_layer_keras_group) */
    int n_params;
    /* Registry indices: kernel, bias (conv, dense, deconv); gamma, beta, moving_mean,
     * moving_variance (bn), in declaration order. */
    int param[MR_LAYER_MAX_PARAMS];
    int bn; /* conv: the table index of the batch norm that follows it, else -1 */
    /* Keras' topological order (model.layers, training mode): decreasing depth (the longest
     * path to an output), ties in the order a depth-first walk from the outputs meets them. */
    int keras_depth, keras_visit;
    mr_kaiming_rule kaiming;
    /* For the summary: output shape (batch 1, per ROI for the heads), parameter count, GFLOPs
     * per image (heads: times their ROI count at inference). */
    int64_t shape[4];
    int ndim;
    int64_t params;
    double gflops;
} mr_layer;

const char *mr_layer_kind_name(mr_layer_kind kind);
/* The top-level Keras layer that holds l's weights. */
const char *mr_layer_keras_group(const mr_layer *l);

/* Typed handles into the registry, resolved once at mr_model_init. `layer` is the table index. */
typedef struct {
    int layer;
    mr_tensor *kernel, *bias;
} mr_conv_w; /* conv, dense and deconv */
typedef struct {
    int layer;
    mr_tensor *gamma, *beta, *mean, *var;
} mr_bn_w;
typedef struct {
    mr_conv_w conv;
    mr_bn_w bn;
} mr_conv_bn_w;
/* The handles of the layers after the backbone (the backbone's own are its business:
 * mr_model.backbone_w). */
typedef struct {
    mr_conv_w fpn_lateral[4], fpn_smooth[4]; /* C2..C5 -> P2..P5 */
    mr_conv_w rpn_shared, rpn_class, rpn_bbox;
    mr_conv_bn_w class_conv[2];
    mr_conv_w class_logits, bbox_fc;
    mr_conv_bn_w mask_conv[4];
    mr_conv_w mask_deconv; /* layer -1: MASK_SHAPE == MASK_POOL_SIZE, no deconv */
    mr_conv_w mask;
} mr_net_weights;

typedef struct {
    mr_net_config cfg;
    mr_params params;
    mr_layer *layers; /* the network table, in declaration (= registry) order */
    int n_layers;
    size_t cap_layers;
    const mr_backbone *backbone; /* the record that declared and runs the backbone */
    void *backbone_w;            /* its handles (backbone->handles_size bytes, owned) */
    mr_net_weights w;
    int64_t anchors_per_location;
    float *anchors;    /* (n_anchors, 4) normalised, for the molded image size */
    float *anchors_px; /* the same in molded-image pixels */
    int64_t n_anchors;
    int64_t level_anchors[5]; /* of them on each FPN level, P2..P6 */
} mr_model;

/* The Keras group of a layer of Matterport's network by name ("rpn_model" for the three RPN
 * convs, else the name itself), for registries without a model; the network table is built
 * from the same list. */
const char *mr_net_keras_group(const char *layer);

/* The backbone a config selects: cfg->backbone when set, else the listed backbone named
 * BACKBONE; NULL (status set, naming the listed backbones) when none is. */
const mr_backbone *mr_net_backbone(const mr_net_config *cfg);
/* Looks a listed backbone up by its BACKBONE name ("resnet50"); NULL when none has it. */
const mr_backbone *mr_backbone_find(const char *name);
/* The listed names for messages: "resnet50 or resnet101". */
void mr_backbone_names(char *out, size_t size);
/* The selected backbone's name for people ("ResNet-101"); its BACKBONE name when none is. */
const char *mr_net_backbone_title(const mr_net_config *cfg);

/* Declares the network of m->cfg into m->params and m->layers, allocates the backbone's handles
 * and fills every handle's layer index (layers/network.c); mr_model_init calls it, then
 * resolves the handles. */
mr_status mr_network_declare(mr_model *m);
/* Points m->w's and the backbone's handles at the registry's tensors (after
 * mr_params_finalize). */
void mr_network_resolve(mr_model *m);
/* The table indices in Keras' topological order (model.layers, weighted layers only): `order`
 * gets m->n_layers entries. */
void mr_network_keras_order(const mr_model *m, int *order);

mr_status mr_model_init(mr_model *m, const mr_net_config *cfg);
/* The proposal layer's settings from the config, for training or inference (pointing into m). */
mr_proposal_config mr_model_proposal_config(const mr_model *m, bool training);
void mr_model_free(mr_model *m);
/* Matterport's set_trainable: "heads", "3+", "4+", "5+", "all" or a regex of layer names. */
mr_status mr_model_set_trainable(mr_model *m, const char *layers, int *n_trainable);
/* Writes the per-layer summary and totals to `out`. */
void mr_model_print_summary(const mr_model *m, FILE *out);

/* ---- forward pieces (NHWC tensors) -------------------------------------------------------- */

/* images (B, H, W, C) molded -> P2, P3, P4, P5, P6. */
mr_status mr_model_features(mr_ctx *ctx, const mr_model *m, mr_tensor *images, mr_tensor *p[5]);
/* RPN over P2..P6: logits (B, anchors, 2) and deltas (B, anchors, 4), Matterport's order. */
mr_status mr_model_rpn(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                       mr_tensor **class_logits, mr_tensor **deltas);
/* Box head on n ROIs (normalised boxes, image of each): class logits (n, NUM_CLASSES) and
 * deltas (n, NUM_CLASSES * 4). */
mr_status mr_model_box_head(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                            const float *rois, const int32_t *batch_index, int64_t n,
                            mr_tensor **class_logits, mr_tensor **deltas);
/* Mask head: logits (n, MASK_SHAPE, MASK_SHAPE, NUM_CLASSES); sigmoid gives the masks. */
mr_tensor *mr_model_mask_head(mr_ctx *ctx, const mr_model *m, mr_tensor *const p[5],
                              const float *rois, const int32_t *batch_index, int64_t n);

#endif

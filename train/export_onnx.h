/* `mrcnn export --format onnx`: the whole inference model as one ONNX graph (opset 17) that ONNX
 * Runtime runs with the detections `mrcnn predict` gives. Batch norms folded, anchors as
 * constants, the config, class names and mrcnn version in metadata_props.
 *
 * Inputs:  images (N, S, S, C) float32, molded as mrcnn molds them (resized, padded, minus
 *          MEAN_PIXEL, divided by PIXEL_STD under "mean_std"), S = IMAGE_MAX_DIM;
 *          window (N, 4) float32, where the image sits in the padded square, molded pixels
 *          (y1, x1, y2, x2), y2/x2 exclusive: Matterport's image_meta window.
 * Outputs: detections (N, D, 6) y1, x1, y2, x2 normalised to the molded image, class id, score,
 *          zero rows after the last detection; masks (N, D, MASK_SHAPE, MASK_SHAPE), each row's
 *          class channel of the mask head's sigmoid. D = DETECTION_MAX_INSTANCES.
 * The graph is written by train/export_onnx.c through core/protobuf.h. */
#ifndef MR_EXPORT_ONNX_H
#define MR_EXPORT_ONNX_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

#define MR_ONNX_OPSET      17
#define MR_ONNX_IR_VERSION 8

typedef struct {
    bool half;          /* float16 initializers, each Cast to float32 where it is used */
    bool allow_damaged; /* as mr_inference_options */
} mr_onnx_options;

typedef struct {
    int n_nodes, n_initializers;
    int64_t n_weights; /* network parameter values written */
    int n_folded;      /* conv + batch-norm pairs folded */
    int64_t file_bytes;
    int64_t image_size, channels; /* S and C of the images input */
} mr_onnx_summary;

/* The ModelProto bytes for a loaded model whose batch norms are folded (mr_fold_batchnorms), in
 * a malloc'd buffer (*bytes, *len). Settings ONNX cannot express the way mrcnn runs them are an
 * MR_ERR_CONFIG naming the key; a weight beyond float16's range with `half` an MR_ERR_NUMERIC
 * naming the tensor. `sum` may be NULL. */
mr_status mr_onnx_build(const mr_config *cfg, const mr_model *m, bool half, uint8_t **bytes,
                        size_t *len, mr_onnx_summary *sum);

/* Loads weights_path (mr_inference_load_opts; config_path may be NULL), folds the batch norms
 * and writes out_path atomically. `sum` may be NULL. */
mr_status mr_export_onnx(const char *weights_path, const char *config_path, const char *out_path,
                         const mr_onnx_options *opt, mr_onnx_summary *sum);

#endif

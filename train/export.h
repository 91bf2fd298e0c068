/* Inference-only weights: folding each frozen batch norm into the convolution before it, the
 * strict "weights + config -> ready model" loader that `mrcnn predict` and `mrcnn export` share,
 * and the export itself (mrcnn layout, folded, optionally float16; or Matterport's Keras layout).
 *
 * Batch-norm folding. At inference a frozen batch norm after a convolution is an affine map per
 * output channel c, y = (conv(x)_c - mean_c) * s_c + beta_c with s_c = gamma_c / sqrt(var_c + eps),
 * so it can live in the convolution instead:
 *     kernel'[..., c] = kernel[..., c] * s_c            (HWIO kernels: output channel last)
 *     bias'[c]        = (bias[c] - mean_c) * s_c + beta_c
 * after which the batch norm is set to the identity: gamma 1, beta 0, mean 0, and a variance v
 * for which the network's own float arithmetic, 1 / sqrtf(v + eps), gives exactly 1.0f
 * (mr_bn_identity_variance; 1 - eps rounded, nudged by an ulp when needed). x * 1 + 0 is x
 * exactly, so an identity batch norm costs nothing in accuracy, and the folded file keeps the
 * parameter names and shapes: it loads into the same network, by mrcnn and by anything that
 * loads mrcnn exports, with no special case. The folded values depend on BN_EPSILON, which the
 * export embeds with the rest of the config. The folded conv differs from conv + batch norm only
 * by float rounding (relative ~1e-7 per value).
 *
 * Pairs folded: every batch norm of the network table with the conv it follows (the table's
 * conv rows name it): conv1 + bn_conv1, resNX_branchB + bnNX_branchB (every ResNet block,
 * shortcuts included), mrcnn_class_conv1/2 + mrcnn_class_bn1/2, mrcnn_mask_conv1..4 +
 * mrcnn_mask_bn1..4.
 *
 * A folded export is for inference. Fine-tuning from it works (the identity batch norms are
 * ordinary frozen layers) but TRAIN_BN would then re-learn statistics from scratch; keep a
 * checkpoint or a `--no-fold` export for that. Keras exports are never folded: Matterport's Python
 * model must get true batch-norm parameters (it may train with them). */
#ifndef MR_EXPORT_H
#define MR_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "weights.h"

/* ---- batch-norm folding ------------------------------------------------------------------- */

/* The moving variance v with 1.0f / sqrtf(v + eps) == 1.0f in float32 (as the frozen batch-norm
 * op computes it): 1 - eps, moved by the fewest ulps that make it so. */
float mr_bn_identity_variance(float eps);

/* Folds one batch norm (gamma, beta, mean, var: `channels` each) into the conv before it,
 * in place: kernel has kernel_numel values with the output channel last (channels of them);
 * bias has `channels`. Then sets the batch norm to the identity. Arithmetic in double, rounded
 * once to float. */
void mr_fold_conv_bn(float *kernel, int64_t kernel_numel, float *bias, int64_t channels,
                     float *gamma, float *beta, float *mean, float *var, float eps);

/* Folds every batch norm of m's network table into the conv before it (the conv row's `bn`).
 * Batch norms already at the identity are left alone (folding an export again changes nothing).
 * Shapes that disagree are an MR_ERR_FORMAT naming the pair, reported before anything changes.
 * *n_folded (may be NULL) counts the pairs folded now, *n_identity (may be NULL) those already
 * folded. */
mr_status mr_fold_batchnorms(mr_model *m, float eps, int *n_folded, int *n_identity);

/* ---- weights + config -> a model ready for inference -------------------------------------- */

/* Reads the config (from config_path, or else the one embedded in an mrcnn export or checkpoint;
 * a Keras file without config_path is an MR_ERR_CONFIG saying to pass --config), builds the
 * network and loads every one of its tensors from the weights file. Unlike training's lenient
 * load, anything that would leave a layer at its initial values is an error: a missing file
 * (MR_ERR_IO), and, as MR_ERR_CONFIG "config mismatch: ..." on one line, another class count,
 * layers of another shape, layers missing from the file or present only in the file. When both a
 * config file and an embedded config exist and disagree on settings that change outputs but not
 * shapes (MEAN_PIXEL, IMAGE_NORMALIZATION, PIXEL_STD, IMAGE_MIN/MAX_DIM, BN_EPSILON, CLASS_NAMES),
 * a warning names them.
 * On success `m` must be freed with mr_model_free; on failure nothing needs freeing. `format`
 * (may be NULL) gets the file's layout. */
mr_status mr_inference_load(const char *weights_path, const char *config_path, mr_config *cfg,
                            mr_model *m, mr_weights_format *format);

typedef struct {
    /* Use tensors that fail their checksum (a warning each) instead of refusing the file:
     * the verbs' --allow-damaged. */
    bool allow_damaged;
    /* Fold every batch norm into its convolution once loaded (mr_fold_batchnorms), as an export
     * is: an inference session (predict, evaluate) then runs no fold per image, and a checkpoint
     * detects exactly as its export. */
    bool fold_batchnorms;
} mr_inference_options;

/* mr_inference_load with options; `opt` may be NULL (the defaults: damaged files refused, as
 * mr_inference_load does). A file whose tensors fail their checksum is refused with one line
 * naming the file and the tensor (mr_weights_load); a file for another network with one line
 * saying how the two networks differ ("the weights are ResNet-50 with 8 filters, the config is
 * ResNet-101 with 64 filters"). */
mr_status mr_inference_load_opts(const char *weights_path, const char *config_path,
                                 const mr_inference_options *opt, mr_config *cfg, mr_model *m,
                                 mr_weights_format *format);

/* ---- export ------------------------------------------------------------------------------- */

typedef enum {
    MR_EXPORT_MRCNN, /* mrcnn layout, config embedded, batch norms folded */
    MR_EXPORT_KERAS, /* Matterport's Keras layout (float32, unfolded, no config inside) */
} mr_export_format;

typedef struct {
    mr_export_format format;
    bool half;    /* float16 storage (mrcnn layout only): half the size, ~3 significant digits */
    bool no_fold; /* mrcnn layout: keep the batch norms as they are */
    /* Export from a file whose tensors fail their checksum (--allow-damaged): the export then
     * carries the damage under fresh checksums, so this is for salvage only. */
    bool allow_damaged;
} mr_export_options;

typedef struct {
    mr_weights_format source_format;
    int n_params;           /* tensors written */
    int64_t n_values;       /* values written */
    int n_folded;           /* conv + batch-norm pairs folded now */
    int n_identity;         /* pairs that were folded already */
    float max_abs;          /* largest magnitude written */
    int64_t file_bytes;     /* size of the file written */
    char config_path[1100]; /* Keras: where the config was written beside the file */
} mr_export_summary;

/* Loads weights_path as mr_inference_load does, then writes out_path (atomically) in the chosen
 * layout: only parameter values (no momentum, no training state). mrcnn layout: folded unless
 * no_fold, the resolved config embedded, float16 when `half` (an MR_ERR_NUMERIC naming the tensor
 * when a value exceeds float16's range, 65504). Keras layout: `half` is an MR_ERR_ARG; the config,
 * which Keras files cannot hold, is written beside it as <out_path>.config.json for
 * `mrcnn predict --config`. `sum` may be NULL. */
mr_status mr_export(const char *weights_path, const char *config_path, const char *out_path,
                    const mr_export_options *opt, mr_export_summary *sum);

#endif

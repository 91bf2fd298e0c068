/* `mrcnn export`: a checkpoint (or any weights file mrcnn reads) to an inference-only file:
 * mrcnn layout with batch norms folded and the config embedded (optionally float16),
 * Matterport's Keras layout for the Python model, or one ONNX graph of the whole inference
 * model. The work is in train/export.c and train/export_onnx.c. */
#include <stdio.h>
#include <string.h>

#include "../train/export.h"
#include "../train/export_onnx.h"
#include "cli.h"

static int export_onnx(const char *weights, const char *config, const char *out, bool fp16,
                       bool no_fold, bool allow_damaged) {
    if (no_fold) {
        fprintf(stderr, "mrcnn export: ONNX exports are always folded; drop --no-fold\n");
        return 2;
    }
    mr_onnx_options oo = {.half = fp16, .allow_damaged = allow_damaged};
    mr_onnx_summary s;
    mr_status st = mr_export_onnx(weights, config, out, &oo, &s);
    if (st != MR_OK) return mr_exit_code(st);
    printf("exported %s -> %s: ONNX opset %d, %s weights, %d batch norms folded, %d nodes, "
           "%d initializers (%lld weight values), %.1f MB\n",
           weights, out, MR_ONNX_OPSET, fp16 ? "float16" : "float32", s.n_folded, s.n_nodes,
           s.n_initializers, (long long)s.n_weights, (double)s.file_bytes / 1e6);
    printf("inputs: images (N, %lld, %lld, %lld) molded, window (N, 4); outputs: detections "
           "(N, D, 6), masks (N, D, M, M); run it with tools/onnx_detect.mjs\n",
           (long long)s.image_size, (long long)s.image_size, (long long)s.channels);
    return 0;
}

int cmd_export(int argc, char **argv) {
    const char *weights = NULL, *out = NULL, *format = "mrcnn", *config = NULL;
    bool fp16 = false, no_fold = false, allow_damaged = false;
    mr_opt opts[] = {
        {"--weights", MR_OPT_PATH, &weights, "checkpoint, export or Keras weights to export"},
        {"--out", MR_OPT_PATH, &out, "file to write (.h5, or .onnx)"},
        {"--format", MR_OPT_STRING, &format,
         "mrcnn (default: folded, config inside), keras or onnx (the whole inference model)"},
        {"--fp16", MR_OPT_FLAG, &fp16, "store float16 (mrcnn or onnx format): half the size"},
        {"--no-fold", MR_OPT_FLAG, &no_fold, "keep batch norms unfolded (mrcnn format)"},
        {"--config", MR_OPT_PATH, &config, "config JSON (default: the one inside --weights)"},
        MR_CLI_ALLOW_DAMAGED_OPT(allow_damaged),
    };
    static const mr_cli_help help = {
        "export", "--weights CKPT --out FILE [--fp16] [--format mrcnn|keras|onnx] [--config C]",
        "mrcnn export --weights runs/busi-20261123T1015/ckpt-e0030-s00001530.h5 --out busi.h5\n"
        "mrcnn export --weights busi.h5 --out busi_keras.h5 --format keras\n"
        "mrcnn export --weights busi.h5 --out busi.onnx --format onnx\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, (int)(sizeof opts / sizeof opts[0]), NULL, &code))
        return code;
    if (!weights || !out) return mr_cli_missing("--weights FILE and --out FILE are required");
    if (!strcmp(format, "onnx"))
        return export_onnx(weights, config, out, fp16, no_fold, allow_damaged);
    mr_export_options eo = {.half = fp16, .no_fold = no_fold, .allow_damaged = allow_damaged};
    if (!strcmp(format, "mrcnn")) {
        eo.format = MR_EXPORT_MRCNN;
    } else if (!strcmp(format, "keras")) {
        eo.format = MR_EXPORT_KERAS;
        if (no_fold) {
            fprintf(stderr, "mrcnn export: Keras exports are never folded; drop --no-fold\n");
            return 2;
        }
    } else {
        fprintf(stderr, "mrcnn export: --format must be mrcnn, keras or onnx, got '%s'\n", format);
        return 2;
    }
    mr_export_summary s;
    mr_status st = mr_export(weights, config, out, &eo, &s);
    if (st != MR_OK) return mr_exit_code(st);
    char folding[96] = "batch norms as they are";
    if (eo.format == MR_EXPORT_MRCNN && !no_fold)
        snprintf(folding, sizeof folding, "%d batch norms folded into their convs%s", s.n_folded,
                 s.n_identity ? " (some were already)" : "");
    printf("exported %s -> %s: %s layout, %s, %d tensors (%lld values, max |w| %.3g), %s, "
           "%.1f MB\n",
           weights, out, eo.format == MR_EXPORT_MRCNN ? "mrcnn" : "Keras (Matterport)",
           fp16 ? "float16" : "float32", s.n_params, (long long)s.n_values, (double)s.max_abs,
           folding, (double)s.file_bytes / 1e6);
    if (eo.format == MR_EXPORT_KERAS)
        printf("Keras files hold no config: it is in %s (mrcnn predict --config %s)\n",
               s.config_path, s.config_path);
    else
        printf("config embedded; no optimizer or training state\n");
    return 0;
}

/* Inference: molded images in, detections out (class, score, box and full-size mask per
 * object, in original-image pixels), as Matterport's detect(). */
#ifndef MR_INFERENCE_H
#define MR_INFERENCE_H

#include "detect.h"
#include "model.h"

/* images (B, S, S, C) molded; geo[b] says where image b sits. Runs with recording off.
 * out[b] must be released with mr_instances_free. `min_confidence` < 0 uses the config's
 * DETECTION_MIN_CONFIDENCE. */
mr_status mr_model_detect(mr_ctx *ctx, const mr_model *m, mr_tensor *images,
                          const mr_image_geometry *geo, float min_confidence, mr_instances *out);

#endif

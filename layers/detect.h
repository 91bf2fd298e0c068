/* Inference post-processing: Matterport's DetectionLayer (refine_detections_graph) and
 * unmold_detections, which maps detections and their 28x28 masks back onto the original
 * image in integer pixels. */
#ifndef MR_DETECT_H
#define MR_DETECT_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"
#include "boxes.h"

typedef struct {
    int64_t num_classes;   /* NUM_CLASSES, background included */
    bool every_class;      /* DETECTION_CANDIDATES "every_class": each ROI offers each class as
                              a candidate with that class's probability (torchvision); false:
                              only its argmax class, none when that is background (Matterport) */
    bool class_agnostic;   /* DETECTION_NMS "class_agnostic": one NMS over all classes, so one
                              lesion keeps one class; false: NMS per class (Matterport) */
    float min_confidence;  /* DETECTION_MIN_CONFIDENCE (0.7); 0 disables the test */
    float nms_threshold;   /* DETECTION_NMS_THRESHOLD (0.3) */
    int64_t max_instances; /* DETECTION_MAX_INSTANCES (100) */
    float bbox_std[4];     /* BBOX_STD_DEV (0.1, 0.1, 0.2, 0.2) */
} mr_detection_config;

mr_detection_config mr_detection_config_matterport(int64_t num_classes);

/* One image. rois (n, 4) normalised proposals; probs (n, num_classes); deltas
 * (n, num_classes, 4); window (4) the image area inside the molded image, normalised
 * (mr_norm_boxes of the pixel window). Each ROI keeps only its argmax class (background
 * included, ties to the lower class), refined by that class's deltas * bbox_std and clipped
 * to the window; ROIs of class 0 or below min_confidence are dropped; NMS per class (at most
 * max_instances per class); the best max_instances by score remain, sorted by score (ties:
 * lower ROI index first). With every_class, each (ROI, class >= 1) pair with a probability
 * above 0 and at least min_confidence is a candidate; with class_agnostic, the NMS runs over
 * all candidates together. Writes out (max_instances, 6) rows (y1, x1, y2, x2, class_id,
 * score), zero padded; *n_out gets the number of real rows. roi_of (max_instances, may be
 * NULL) gets the ROI each row came from: its class probabilities are the detection's. */
mr_status mr_refine_detections(float *out, int64_t *roi_of, int64_t *n_out, const float *rois,
                               const float *probs, const float *deltas, int64_t n,
                               const float window[4], const mr_detection_config *cfg);

/* Where the original image sits in the molded one (image_meta fields). */
typedef struct {
    int64_t original_h, original_w; /* before resizing */
    int64_t molded_h, molded_w;     /* as fed to the network */
    float window[4];                /* molded pixels (y1, x1, y2, x2), y2/x2 exclusive */
} mr_image_geometry;

/* unmold_detections: rows up to the first with class 0; boxes shifted and scaled from the
 * window to the original image and denormalised (rounding halves to even); boxes of zero area
 * dropped; each mask (the detected class's channel of masks (n_rows, mask_h, mask_w,
 * num_classes), NHWC as the mask head emits it) resized to its box and pasted. Fills a fresh
 * *out (free with mr_instances_free). row_probs (n_rows, num_classes, may be NULL) gives
 * each kept detection its class probabilities, in out->class_probs. */
mr_status mr_unmold_detections(mr_instances *out, const float *detections, const float *row_probs,
                               int64_t n_rows, const float *masks, int64_t mask_h, int64_t mask_w,
                               int64_t num_classes, const mr_image_geometry *geo);

/* unmold_mask: resize a (mask_h, mask_w) float mask to the pixel box with the skimage-style
 * bilinear resize, threshold >= 0.5, and write it into a zeroed (h, w) mask (box pixels
 * outside the image are dropped). */
mr_status mr_unmold_mask(uint8_t *full, int64_t h, int64_t w, const float *mask, int64_t mask_h,
                         int64_t mask_w, const int64_t box[4]);

#endif

/* The validation panels of report.html: one validation image with its ground truth beside the
 * model's prediction, captioned with the image's name, the epoch, and how well the predicted
 * lesion area matches the annotated one (IoU and Dice of the two unions), small images enlarged
 * with nearest-neighbour so single pixels stay visible. */
#ifndef MR_OVERLAYS_H
#define MR_OVERLAYS_H

#include "../data/annotations.h"
#include "../layers/detect.h"

/* Panels are enlarged by a whole factor until their image side reaches this. */
#define MR_PANEL_MIN_SIDE 320

typedef struct {
    double iou, dice;    /* of the union of annotated and of predicted masks; NaN when both empty */
    int64_t n_gt, n_det; /* lesions annotated, detections drawn */
} mr_panel_scores;

/* IoU and Dice of two 0/1 masks of n pixels; NaN for both when both are empty. */
void mr_mask_agreement(const uint8_t *a, const uint8_t *b, int64_t n, double *iou, double *dice);

/* Draws the panel of `rec` (its image loaded as RGB, at most max_pixels) with detections `det`
 * in original-image pixels, and writes it to out_png atomically. class_names[k] labels class k. */
mr_status mr_write_validation_panel(const mr_image_record *rec, const mr_instances *det, int epoch,
                                    const char *const *class_names, int n_classes,
                                    int64_t max_pixels, const char *out_png,
                                    mr_panel_scores *scores);

#endif

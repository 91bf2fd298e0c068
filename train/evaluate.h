/* Evaluation of detections against annotated ground truth: a model run over a dataset, or the
 * JSON files `mrcnn predict` writes (from mrcnn or any other tool writing that format). One
 * accumulator takes each image's detections and gives Matterport's per-image mAP, COCO-style
 * box and mask AP, and lesion-level sensitivity, false positives, Dice and the confusion
 * matrix; writers print it as text, JSON and precision-recall SVGs. */
#ifndef MR_EVALUATE_H
#define MR_EVALUATE_H

#include <stdio.h>

#include "../data/annotations.h"
#include "../layers/detect.h"
#include "config.h"
#include "dataset.h"
#include "metrics.h"

#define MR_EVAL_MATCH_IOU 0.5 /* lesion-level matching and Matterport's mAP threshold */

typedef struct {
    float det_threshold; /* detections scoring below are ignored everywhere (0: none) */
    float op_threshold;  /* the operating point of the lesion-level numbers */
} mr_eval_options;

typedef struct {
    mr_eval_options opt;
    int64_t num_classes;
    /* Accumulated image by image. */
    mr_coco_eval coco_box, coco_mask;
    mr_lesion_stats lesions;
    double sum_map50, sum_map50_95;
    int64_t n_images, n_map_images; /* n_map_images: those with GT, where AP is defined */
    int64_t n_gt_empty;             /* GT shapes covering no pixel at the original size */
    /* Filled by mr_evaluation_finish. */
    mr_coco_result box, mask;
    double map50, map50_95;        /* MR_AP_UNDEFINED without GT */
    int64_t n_classified, n_right; /* matched lesions with a class, and those classed right */
} mr_evaluation;

mr_status mr_evaluation_init(mr_evaluation *e, int64_t num_classes, const mr_eval_options *opt);
void mr_evaluation_free(mr_evaluation *e);
/* Scores one image: its GT shapes rasterised by pixel centres at the original size (empty ones
 * dropped and counted), GT boxes from the masks; detections below det_threshold ignored. */
mr_status mr_evaluation_add(mr_evaluation *e, const mr_image_record *rec, const mr_detections *det);
/* Summarises what was added. */
mr_status mr_evaluation_finish(mr_evaluation *e);

/* Runs the model over the first `limit` images of ds (all when limit <= 0), adding each; the
 * model sees each image as training loaded it. `progress` (may be NULL) is called after each
 * image with (done, total). */
mr_status mr_evaluate_model(mr_evaluation *e, mr_ctx *ctx, const mr_model *m, const mr_dataset *ds,
                            int64_t limit, void (*progress)(int64_t done, int64_t total));
/* Adds every image of `ann` from the `<stem>_pred.json` files in pred_dir, matched to the
 * annotation records by image file name; an annotated image without a prediction file counts
 * as an image without detections, and says so in *n_missing (may be NULL). */
mr_status mr_evaluate_prediction_files(mr_evaluation *e, const mr_annotations *ann,
                                       const char *pred_dir, int64_t limit, int64_t *n_missing);

/* What was evaluated, for the printout and evaluation.json. */
typedef struct {
    const char *data;        /* the annotations */
    const char *weights;     /* the weights file, or NULL */
    const char *predictions; /* or the folder of prediction files */
    const char *config;      /* the config's file */
    bool threshold_given;    /* --threshold set both thresholds */
} mr_eval_meta;

void mr_evaluation_print(const mr_evaluation *e, const mr_config *cfg, const mr_eval_meta *meta,
                         FILE *out);
/* evaluation.json and pr_<class>.svg in out_dir. */
mr_status mr_evaluation_write(const mr_evaluation *e, const mr_config *cfg,
                              const mr_eval_meta *meta, const char *out_dir);

#endif

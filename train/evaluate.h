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
#include "data_source.h"
#include "dataset.h"
#include "metrics.h"

#define MR_EVAL_MATCH_IOU 0.5 /* lesion-level matching and Matterport's mAP threshold */

typedef struct {
    float det_threshold; /* detections scoring below are ignored everywhere (0: none) */
    float op_threshold;  /* the operating point of the lesion-level numbers */
} mr_eval_options;

/* One scored image at the operating point (op_threshold), for per_image.csv and the list of
 * the worst images. */
typedef struct {
    char *path;                           /* the image's file (malloc'd) */
    int64_t lesions, detections, matched; /* GT lesions, detections >= op, pairs */
    int64_t missed, false_positives;      /* lesions - matched, detections - matched */
    double dice;                          /* mean Dice of the matched pairs, or NAN */
    double ap50;                          /* Matterport AP@0.5; MR_AP_UNDEFINED: no GT */
} mr_eval_image;

typedef struct {
    mr_eval_options opt;
    int64_t num_classes;
    mr_eval_image *images; /* n_images of them, in the order added */
    size_t images_cap;
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
/* Summarises what was added. */
mr_status mr_evaluation_finish(mr_evaluation *e);

/* Image `image` of ds through the model alone (a batch of one, in a reset ctx), as training
 * loaded it; min_confidence as mr_model_detect's. *det is zeroed first, owned after. */
mr_status mr_detect_dataset_image(mr_ctx *ctx, const mr_model *m, const mr_dataset *ds,
                                  int64_t image, float min_confidence, mr_instances *det);

/* Offered each image's detections once they are scored: true takes them (the taker frees them
 * with mr_instances_free), false leaves them to be freed. */
typedef bool (*mr_eval_take_fn)(void *user, int64_t image, mr_instances *det);

/* Runs the model over the first `limit` images of ds (all when limit <= 0), adding each; the
 * model sees each image as training loaded it. `progress` (may be NULL) is called after each
 * image with (done, total). `take` (may be NULL) is offered each image's detections: training
 * keeps its report panels' so as not to detect them again. */
mr_status mr_evaluate_model(mr_evaluation *e, mr_ctx *ctx, const mr_model *m, const mr_dataset *ds,
                            int64_t limit, void (*progress)(int64_t done, int64_t total),
                            mr_eval_take_fn take, void *user);
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
    bool verbose;            /* the printout explains each method */
    bool compare_paper;      /* the printout compares with the seed paper's numbers */
} mr_eval_meta;

/* The summary in plain words: the per-image AP, COCO-style AP per class, lesions found and
 * missed, the confusion matrix and the (up to) MR_EVAL_WORST images with the most missed lesions
 * and false positives; meta->verbose adds how each number is computed, meta->compare_paper the
 * seed paper's numbers beside ours. */
#define MR_EVAL_WORST 10
void mr_evaluation_print(const mr_evaluation *e, const mr_config *cfg, const mr_eval_meta *meta,
                         FILE *out);
/* evaluation.json, per_image.csv (one row per image: lesions, detections, matched, missed,
 * false positives, Dice, AP50) and pr_<class>.svg in out_dir. */
mr_status mr_evaluation_write(const mr_evaluation *e, const mr_config *cfg,
                              const mr_eval_meta *meta, const char *out_dir);

/* ---- a whole evaluation, as `mrcnn evaluate` runs it ------------------------------------- */

typedef struct {
    const char *weights;     /* trained weights (an export or a checkpoint), or */
    const char *predictions; /* a folder of <stem>_pred.json files; then config is required */
    const char *config;      /* NULL: the one inside weights */
    mr_data_args data;       /* --data, --image-root, --val-split */
    mr_data_part part;       /* which images of the data are scored */
    double threshold;        /* < 0: not given (detections >= 0, DETECTION_MIN_CONFIDENCE's
                                operating point); else both thresholds */
    int64_t limit;           /* score the first `limit` images; 0: every one */
    bool allow_damaged;      /* --allow-damaged */
    bool bf16;               /* --bf16: the model's products in bfloat16 (mr_ctx_use_bf16) */
    void *user;
    /* After the data opened (may be NULL). */
    void (*opened)(void *user, const mr_data_summary *s);
    /* After each image a model scored (may be NULL). */
    void (*progress)(int64_t done, int64_t total);
} mr_eval_request;

typedef struct {
    mr_config cfg; /* the config used, its DATASET resolved */
    mr_evaluation e;
    mr_eval_meta meta;         /* points into the request and into `data` */
    char data[1100];           /* the annotations scored against */
    int64_t missing;           /* predictions: annotated images without a prediction file */
    bool dataset_from_weights; /* DATASET, SEED and VALIDATION_SPLIT came from the weights */
} mr_eval_run;

/* Loads the model (mr_inference_load_opts: a given config that differs from the embedded one is
 * warned about there) or the config, resolves and opens the data, scores it and finishes the
 * evaluation. With weights but neither --data nor a DATASET in the config (a --config written
 * for inference), the data is the run's: DATASET, IMAGE_ROOT, SEED and VALIDATION_SPLIT of the
 * config embedded in the weights, so the images scored are the ones training held out. Free
 * `run` with mr_eval_run_free whatever the status. */
mr_status mr_evaluate_run(const mr_eval_request *r, mr_eval_run *run);
void mr_eval_run_free(mr_eval_run *run);

/* When cfg names no DATASET, takes DATASET (and IMAGE_ROOT when cfg has none), SEED and
 * VALIDATION_SPLIT from the config embedded in weights_path, if it has a DATASET; *taken says
 * whether it did. A weights file without an embedded config changes nothing. */
mr_status mr_config_dataset_from_weights(mr_config *cfg, const char *weights_path, bool *taken);

#endif

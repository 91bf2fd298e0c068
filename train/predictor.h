/* Prediction on image files: a model loaded once through the strict loader (train/export.h),
 * image -> detections -> polygons and COCO RLE, and the outputs `mrcnn predict` writes: per image
 * an overlay PNG and a JSON of detections, for the batch one VIA 2.x project a clinician can open,
 * correct and feed back as training data. Every file is written atomically (core/file.h); the
 * first failed write stops the batch, since the next would fail the same way. */
#ifndef MR_PREDICTOR_H
#define MR_PREDICTOR_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "../core/tensor.h"
#include "../data/image.h"
#include "../data/raster.h"
#include "../layers/detect.h"
#include "../layers/model.h"
#include "config.h"
#include "weights.h"

#define MR_PREDICT_OVERLAY_SUFFIX "_pred.png"
#define MR_PREDICT_RESULT_SUFFIX  "_pred.json"
#define MR_PREDICT_PROJECT_NAME   "via_project.json"

/* ---- a loaded model ------------------------------------------------------------------------ */

typedef struct {
    const char *weights; /* export, checkpoint or Keras weights */
    const char *config;  /* config JSON; NULL: the one inside the weights */
    bool allow_damaged;  /* --allow-damaged (mr_inference_options) */
    bool bf16;           /* --bf16: products in bfloat16 (mr_ctx_use_bf16) */
    double threshold;    /* minimum score; NAN: the config's DETECTION_MIN_CONFIDENCE */
} mr_predictor_options;

typedef struct {
    mr_config cfg;
    mr_model model;
    mr_ctx ctx;
    float threshold;
    mr_weights_format format;
    bool loaded;
} mr_predictor;

/* Loads the model (mr_inference_load_opts) and its working memory into a zeroed *p. On failure
 * nothing needs freeing; on success free with mr_predictor_free. */
mr_status mr_predictor_load(mr_predictor *p, const mr_predictor_options *o);
void mr_predictor_free(mr_predictor *p);

/* CLASS_NAMES[id], or "class<id>" when the config names none. The string lives until the next
 * call from the same thread. */
const char *mr_predictor_class_name(const mr_predictor *p, int64_t id);

/* Detections (at the predictor's threshold) for one image file, which the network sees exactly as
 * training loaded it. `rgb` (may be NULL) gets the image as RGB for drawing; free it with
 * mr_image_free. *d is fresh on success (free with mr_instances_free). */
mr_status mr_predictor_detect(mr_predictor *p, const char *path, mr_instances *d, mr_image *rgb);

/* The polygons of every detection's mask (all its parts; outlines along pixel edges, within 0.5%
 * of the mask's pixels): an array of d->n, freed by mr_predictor_polygons_free. */
mr_status mr_predictor_polygons(const mr_instances *d, mr_mask_polygons **polys);
void mr_predictor_polygons_free(mr_mask_polygons *polys, int64_t n);

/* ---- inputs -------------------------------------------------------------------------------- */

typedef struct {
    char *path; /* as given, or folder + name */
    char *real; /* canonical absolute path, for duplicates and relative paths */
} mr_predict_input;

typedef struct {
    mr_predict_input *items;
    int count;
    size_t cap;
    int skipped; /* files in the folders given that are not images (or are our own overlays) */
} mr_predict_inputs;

/* Called with one line (no prefix, no newline) per input that cannot be used. */
typedef void (*mr_predict_note_fn)(void *user, const char *line);

/* Adds an image file, or the image files of a folder (not its subfolders) sorted by name; the
 * same file twice is kept once. Our overlays are skipped in the folder whose canonical path is
 * out_real (may be NULL), so a second run does not predict on them. Returns the number of inputs
 * that could not be used, each reported through `note`. */
int mr_predict_inputs_add(mr_predict_inputs *l, const char *path, const char *out_real,
                          mr_predict_note_fn note, void *user);
void mr_predict_inputs_free(mr_predict_inputs *l);

/* ---- a batch, end to end ------------------------------------------------------------------- */

typedef struct {
    mr_predictor_options model;
    const char *out_dir;       /* created when missing; must be writable */
    const char *const *inputs; /* image files and folders */
    int n_inputs;
    void *user;
    mr_predict_note_fn note; /* an input that cannot be used (may be NULL) */
    /* After the model loaded, before the first image (may be NULL). */
    void (*loaded)(void *user, const mr_predictor *p, int n_images);
    /* After each image: its detections, or error (the reason it was skipped) when d is NULL. */
    void (*image_done)(void *user, int index, int n_images, const char *path, const mr_instances *d,
                       const char *error);
} mr_predict_options;

typedef struct {
    int images_done;
    int failures; /* inputs that could not be used and images skipped */
    int64_t detections, per_class[MR_MAX_CLASSES];
    int fragments_left_out; /* mask parts in the JSON but not in the VIA project */
    int empty_masks;        /* detections whose VIA region is their box */
    int num_classes;
    char class_names[MR_MAX_CLASSES][48];
    char project[PATH_MAX];       /* the VIA project written ("" when no image was predicted) */
    char images_folder[PATH_MAX]; /* its default_filepath: the absolute folder the images share */
} mr_predict_summary;

/* Predicts every input into out_dir: <stem>_pred.png and <stem>_pred.json per image (stems made
 * unique), and via_project.json for the batch. Bad inputs and unreadable images are reported and
 * counted in sum->failures, and the batch goes on; a failed write stops it with one line naming
 * the image ("...; stopped at image i of n"), leaving only whole files. `sum` must not be NULL. */
mr_status mr_predict(const mr_predict_options *o, mr_predict_summary *sum);

#endif

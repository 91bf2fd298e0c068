/* Reading back the per-image JSON results that `mrcnn predict` writes (`<stem>_pred.json`):
 * boxes, classes, scores and masks (from the COCO RLE when present, else the polygons), so
 * `mrcnn evaluate` can score predictions made by mrcnn or by any tool that writes the format. */
#ifndef MR_PREDICTIONS_H
#define MR_PREDICTIONS_H

#include <stdint.h>

#include "../core/status.h"
#include "../layers/detect.h"

/* The prediction files of a folder, by the file name of the image each describes. */
typedef struct {
    int64_t n;
    char **image_names; /* the base name of each file's "image" */
    char **paths;       /* the JSON file */
} mr_prediction_set;

/* Scans dir for *_pred.json files and reads the image each names. Two files naming images of
 * the same file name are an error (the set could not tell them apart). */
mr_status mr_prediction_set_load(mr_prediction_set *s, const char *dir);
/* The prediction file of the image called `image_name`, or NULL. */
const char *mr_prediction_set_find(const mr_prediction_set *s, const char *image_name);
void mr_prediction_set_free(mr_prediction_set *s);

/* One file's detections at the image's size ("width", "height"), with full-size masks. A
 * malformed file fails with its name and the place in it; it never crashes. */
mr_status mr_prediction_file_load(const char *path, mr_instances *out);

#endif

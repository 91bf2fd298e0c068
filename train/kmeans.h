/* Anchor fitting: K-means on ground-truth box shapes with YOLOv2's distance 1 - IoU of (w, h)
 * pairs aligned at a common centre, k-means++ seeding and seeded restarts; the step from
 * clusters to a config's RPN_ANCHOR_SCALES / RPN_ANCHOR_RATIOS in either anchor form; the
 * coverage numbers `mrcnn anchors` prints; and the text-preserving rewrite of those two keys. */
#ifndef MR_KMEANS_H
#define MR_KMEANS_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"

#define MR_KMEANS_MAX_K 64

/* IoU of two boxes of sizes (w1, h1) and (w2, h2) placed on the same centre:
 * min(w) min(h) / (w1 h1 + w2 h2 - min(w) min(h)); 0 when either is empty. */
double mr_wh_iou(double w1, double h1, double w2, double h2);

typedef struct {
    int k;        /* clusters, 1..MR_KMEANS_MAX_K */
    int restarts; /* independent k-means++ runs, the best kept (<= 0: 10) */
    int max_iter; /* Lloyd iterations per run (<= 0: 300) */
    uint64_t seed;
} mr_kmeans_options;

typedef struct {
    int k;
    double wh[MR_KMEANS_MAX_K][2];  /* centroids (w, h), sorted by area, smallest first */
    int64_t count[MR_KMEANS_MAX_K]; /* boxes assigned to each */
    double mean_iou;                /* mean over boxes of the best IoU with a centroid */
    int best_restart, iterations;   /* which run won (0-based) and its Lloyd iterations */
} mr_kmeans_result;

/* Clusters n boxes wh (n, 2) = (w, h), all > 0. Each run: k-means++ seeding (the first centre
 * uniform, each next one drawn with probability proportional to d^2, d = 1 - IoU to the nearest
 * centre chosen so far), then Lloyd iterations (assign by the highest IoU, move each centre to
 * its members' mean w and h; an emptied cluster restarts at the box worst served) until no
 * assignment changes. The run with the highest mean best-IoU is kept. Same seed, same result.
 * Fails with MR_ERR_ARG when k is out of range, there are fewer than k boxes, or a size is not
 * positive and finite. */
mr_status mr_kmeans_wh(const double *wh, int64_t n, const mr_kmeans_options *opt,
                       mr_kmeans_result *out);

/* Coverage of boxes by a set of anchor shapes, with centre-aligned IoU (shape only: where the
 * anchor grid puts centres and which level a shape sits on are ignored). */
typedef struct {
    int64_t n;       /* boxes */
    double mean_iou; /* mean over boxes of the best IoU with any shape */
    double share_50; /* share of boxes whose best IoU is >= 0.5 */
    double share_70; /* >= 0.7 */
} mr_anchor_fit;

void mr_anchor_fit_eval(mr_anchor_fit *fit, const double *wh, int64_t n, const double *shapes,
                        int64_t n_shapes);

/* The anchor shapes (w, h) of scales x ratios: w = s sqrt(r), h = s / sqrt(r) (Matterport's
 * generate_anchors). Both anchor forms give this same set: one scale per level with every ratio,
 * or every size at every level. shapes needs room for n_scales * n_ratios pairs. */
int64_t mr_anchor_shapes(double *shapes, const float *scales, int n_scales, const float *ratios,
                         int n_ratios);

/* From clusters to config values, sizes in pixels of the molded image.
 *   per_level (Matterport, RPN_ANCHOR_FORM "per_level"): n_levels scales, one per FPN level,
 *     smallest on P2. Cluster sizes sqrt(w h) are sorted; level i takes the size at rank
 *     i (k - 1) / (n_levels - 1), interpolated geometrically between neighbouring ranks (with
 *     k == n_levels: exactly the sorted cluster sizes).
 *   every_level (second seed): the k cluster sizes, sorted, duplicates after rounding dropped.
 * Ratios (both forms): the clusters' w/h grouped into at most max_ratios groups (optimal 1-D
 * k-means on log(w/h), each cluster weighted by its box count), each group's weighted geometric
 * mean, rounded to 2 significant digits, duplicates dropped, ascending.
 * Sizes are rounded to whole pixels (to 0.1 px below 10 px). */
mr_status mr_anchors_from_clusters(const mr_kmeans_result *km, bool per_level, int n_levels,
                                   int max_ratios, float *scales, int *n_scales, float *ratios,
                                   int *n_ratios);

/* ---- config file rewrite ------------------------------------------------------------------- */

/* Returns in *out (malloc'd) `text`, a JSON object, with the value of its top-level key `key`
 * replaced by `value` (raw JSON), every other byte kept; when the key is absent it is inserted
 * as the last member, before the closing brace, indented like the first member. Fails with
 * MR_ERR_FORMAT (naming `origin`) when the text is not a JSON object it can follow. */
mr_status mr_json_set_member(const char *text, const char *origin, const char *key,
                             const char *value, char **out);
/* Rewrites RPN_ANCHOR_SCALES and RPN_ANCHOR_RATIOS of the config file at `path` in place by
 * text replacement (mr_json_set_member), written atomically: temp file in the same folder,
 * fsync, rename, fsync the folder; the file's permissions are kept. */
mr_status mr_config_write_anchors(const char *path, const float *scales, int n_scales,
                                  const float *ratios, int n_ratios);
/* "[4, 7.5, 12]": shortest round-trip text of each float. buf of `size` bytes. */
void mr_format_float_list(char *buf, size_t size, const float *v, int n);

#endif

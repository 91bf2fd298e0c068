/* Training data: annotations + images -> molded batches with ground truth (boxes, class ids,
 * mini-masks), seeded shuffling each epoch, seeded augmentation, and a background prefetch
 * thread. The order and the augmentation of every sample are functions of (SEED, epoch, step),
 * so a checkpoint needs only the epoch and step to resume the data stream exactly. */
#ifndef MR_DATASET_H
#define MR_DATASET_H

#include <stdbool.h>
#include <stdint.h>

#include "../data/annotations.h"
#include "../data/augment.h"
#include "../layers/mold.h"
#include "../losses/losses.h"
#include "config.h"

/* One sample as the network sees it. */
typedef struct {
    float *image;       /* (S, S, C) molded: resized, padded, mean subtracted */
    mr_mold_info mold;  /* where the original image sits (before augmentation moved it) */
    int64_t n;          /* instances after augmentation (vanished ones dropped) */
    double *boxes;      /* (n, 4) molded-image pixels, y2/x2 exclusive (extract_bboxes) */
    int64_t *class_ids; /* (n) */
    uint8_t *masks;     /* (n, M, M) mini-masks (M = MINI_MASK_SHAPE) or (n, S, S) full */
    int64_t mask_h, mask_w;
    int64_t record; /* index into the dataset's records */
} mr_sample;

/* A batch owns its samples; samples[i].image points into `images` (no second copy), and
 * gt[i] points into samples[i]. Boxes, class ids and masks are never NULL, even when n = 0. */
typedef struct {
    int64_t size;  /* BATCH_SIZE, or this process's share of it (mr_dataset_set_shard) */
    int64_t first; /* the index of samples[0] in the whole batch: 0, or shard * size */
    int64_t image_side, channels;
    float *images;      /* (size, S, S, C), ready to copy into the step's input tensor */
    mr_sample *samples; /* (size) */
    mr_instances *gt;   /* (size) views of the samples for mr_training_losses */
    int epoch, step;    /* which batch of the stream this is */
} mr_batch;

typedef struct mr_dataset mr_dataset;

/* What check-data may relax for a look at annotations alone; training has neither. */
typedef struct {
    const char *attributes_path; /* VIA 2 attribute definitions from this file */
    bool allow_missing_images;   /* missing image files are not errors (sizes stay unknown) */
} mr_dataset_extra;

/* The annotation-loading rules every verb that reads data shares (train, check-data, evaluate,
 * anchors), so what one accepts the others accept: CLASS_NAMES (two classes and no names: one
 * class, every region of it, balloon style) and CLASS_ATTRIBUTE, IMAGE_ROOT, and every image
 * decoded in full under MAX_IMAGE_PIXELS. MR_ERR_CONFIG when NUM_CLASSES is above 2 but
 * CLASS_NAMES was not given (no region label could match). Otherwise as mr_annotations_load:
 * `out` holds every problem found, and the caller frees it whatever the status. `extra` may be
 * NULL (none). */
mr_status mr_dataset_load(const char *path, const mr_config *cfg, const mr_dataset_extra *extra,
                          mr_annotations *out);
/* mr_dataset_load for verbs that go on only with clean data: any error fails with one line
 * (the count, the first problem, and the check-data command that lists them all), after
 * logging the first few; warnings are counted on one line, and the report's images_note is
 * logged. On failure `out` is already freed. */
mr_status mr_dataset_load_strict(const char *path, const mr_config *cfg, mr_annotations *out);
/* The seeded validation split every verb uses, so train, evaluate and check-data hold out the
 * same images: of n images, round(share * n) (at least 1 and at most n - 1 when n > 1, none
 * when share is 0) chosen by a permutation seeded by SEED; sets is_val[i] and returns the
 * count. */
int64_t mr_dataset_split(int64_t n, float share, uint64_t seed, bool *is_val);
/* A dataset over annotations already loaded; takes them over (`ann` is left empty, also on
 * failure). Fails when they list no image. */
mr_status mr_dataset_wrap(mr_dataset **out, mr_annotations *ann, const mr_config *cfg,
                          bool training);
/* Loads one split: `path` is an annotation file or a folder holding one, loaded with
 * mr_dataset_load_strict: bad data fails before the first step. When DATASET.VAL is empty and
 * VALIDATION_SPLIT is above 0, the seeded split of `path` is taken (its training side when
 * `training`, else its validation side). Verbs resolve --data through train/data_source.h,
 * which loads a split set once for both sides. */
mr_status mr_dataset_open(mr_dataset **out, const char *path, const mr_config *cfg, bool training);
void mr_dataset_close(mr_dataset *d);
const mr_annotations *mr_dataset_annotations(const mr_dataset *d);
int64_t mr_dataset_size(const mr_dataset *d);
/* Data-parallel training: batches hold only shard `shard` of `shards` equal shares of each
 * batch's positions (shard s: positions step*B + s*B/shards ...), the samples one process would
 * put at those places. MR_ERR_CONFIG with one line when BATCH_SIZE does not divide. Stops the
 * prefetcher; call before mr_dataset_start. */
mr_status mr_dataset_set_shard(mr_dataset *d, int shard, int shards);

/* Loads and molds one record; `augment_seed` 0 means no augmentation. The sample owns its
 * buffers (mr_sample_free). */
mr_status mr_dataset_sample(const mr_dataset *d, int64_t record, uint64_t augment_seed,
                            mr_sample *out);
void mr_sample_free(mr_sample *s);

/* The record at position `step * batch + i` of the stream of epoch `epoch`: a fresh seeded
 * permutation each epoch (when training; the file order for validation), wrapping around
 * when an epoch needs more samples than the split holds. Training: position p reads
 * perm_k[p % n] with k = p / n, where perm_0 is shuffled from hash(SEED, epoch) and perm_k
 * (k > 0) from hash(SEED, epoch, k); so every run of n positions visits each record once.
 * Validation: p % n. Thread-safe. */
int64_t mr_dataset_record_at(const mr_dataset *d, int epoch, int64_t position);
/* The augmentation seed of a stream position: hash(SEED, epoch, position) | 1 when training
 * with an AUGMENT that does something, else 0 (no augmentation). */
uint64_t mr_dataset_augment_seed(const mr_dataset *d, int epoch, int64_t position);

/* Background prefetch: start() begins producing batches (epoch, step), (epoch, step+1), ...
 * up to `steps_per_epoch` per epoch, then (epoch+1, 0), ... until stop(); at most two batches
 * wait ready. Batch (epoch, step) holds the samples at positions step*B .. step*B+B-1 of its
 * epoch, each a pure function of (SEED, epoch, position), so a resumed run sees the same bytes.
 * next() hands out the next one (blocking) and the caller returns it with release(). Errors
 * (an image gone or unreadable since open) surface from next() after the batches made before
 * them, with the loader's message; the stream then ends. start() while running restarts it;
 * stop() joins the thread and frees batches not handed out (close() stops too). */
mr_status mr_dataset_start(mr_dataset *d, int epoch, int step, int steps_per_epoch);
mr_status mr_dataset_next(mr_dataset *d, mr_batch **batch);
void mr_dataset_release(mr_dataset *d, mr_batch *batch);
void mr_dataset_stop(mr_dataset *d);

#endif

/* Training checkpoints: one HDF5 file per save holding every parameter and momentum buffer plus
 * the state a bit-exact resume needs (epoch, step, RNG, data order, config, metrics), written
 * atomically (redis rdbSave style), pruned to the last K plus the best, found again on resume. */
#ifndef MR_CHECKPOINT_H
#define MR_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/h5.h"
#include "../core/params.h"
#include "../core/rng.h"

#define MR_CHECKPOINT_FORMAT  "mrcnn-checkpoint"
#define MR_CHECKPOINT_VERSION 1

/* Everything a checkpoint holds besides the tensors. */
typedef struct {
    int64_t epoch;       /* epochs completed (0-based index of the next epoch) */
    int64_t step;        /* optimizer steps completed over the whole run */
    mr_rng rng;          /* the trainer's generator, all four words */
    int64_t *data_order; /* the data loader's state, opaque here (e.g. permutation + cursor) */
    int64_t n_data_order;
    char *config_json;  /* the resolved config, as mr_config_to_json writes it */
    char *metrics_json; /* metrics so far, JSON text ("" or NULL = none) */
    double val_loss;    /* validation loss at this checkpoint; NaN = not measured */
} mr_checkpoint_state;

/* Writes params, momentum and state to `path` atomically: temp file in the same folder, every
 * call checked, flush and close, fsync, rename, fsync the folder. On failure the temp file is
 * removed and whatever was at `path` before is untouched. */
mr_status mr_checkpoint_save(const char *path, const mr_params *p, const mr_checkpoint_state *s);
/* Reads a checkpoint into `p` (values and momentum, byte for byte) and `s` (malloc'd strings and
 * data order; free with mr_checkpoint_state_free). Every missing, unexpected and mis-shaped
 * tensor is listed in one error before anything is copied; a damaged file (bad checksum,
 * unreadable dataset) is reported, and then the parameter values are unspecified. */
mr_status mr_checkpoint_load(const char *path, mr_params *p, mr_checkpoint_state *s);
/* Only the state (no tensors), e.g. for `mrcnn inspect`. */
mr_status mr_checkpoint_read_state(const char *path, mr_checkpoint_state *s);
/* Reads every tensor back and checks its checksum: true when the file is complete and intact;
 * otherwise the reason is the last error. */
bool mr_checkpoint_verify(const char *path);
void mr_checkpoint_state_free(mr_checkpoint_state *s);

/* "<run_dir>/ckpt-e0003-s00000060.h5": names sort in training order. */
void mr_checkpoint_path(char *buf, size_t size, const char *run_dir, int64_t epoch, int64_t step);
/* The newest checkpoint in run_dir that verifies; newer damaged ones are skipped with a warning
 * each and counted in *n_skipped (may be NULL). MR_ERR_IO when there is none. */
mr_status mr_checkpoint_find_latest(const char *run_dir, char *path, size_t size, int *n_skipped);
/* Deletes checkpoints of run_dir except the newest `keep` and the one with the lowest finite
 * val_loss; *n_removed (may be NULL) counts deletions. */
mr_status mr_checkpoint_prune(const char *run_dir, int keep, int *n_removed);
/* Proves at start that run_dir (created if missing) takes a file: writes, fsyncs and removes a
 * probe file, and, when bytes_needed > 0, checks that much space is free. Removes temp files an
 * interrupted save left behind. */
mr_status mr_checkpoint_probe(const char *run_dir, int64_t bytes_needed);

/* Writes an HDF5 file atomically the same way: `fill` writes the temp file's contents. */
typedef mr_status (*mr_h5_fill_fn)(mr_h5 *f, void *user);
mr_status mr_h5_save_atomic(const char *path, mr_h5_fill_fn fill, void *user);

/* Tests only: called at each stage of an atomic save ("create", "write", "close", "fsync",
 * "rename", "dirsync"); returning true makes that stage fail as a full disk would. NULL to
 * clear. */
typedef bool (*mr_save_fail_hook)(const char *stage, void *user);
void mr_checkpoint_set_fail_hook(mr_save_fail_hook hook, void *user);

#endif

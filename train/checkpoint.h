/* Training checkpoints: one HDF5 file per save holding every parameter and momentum buffer plus
 * the state a bit-exact resume needs (epoch, step, data order, config, metrics), written
 * atomically (redis rdbSave style), pruned to the last K plus the best, found again on resume. */
#ifndef MR_CHECKPOINT_H
#define MR_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/h5.h"
#include "../core/params.h"

#define MR_CHECKPOINT_FORMAT "mrcnn-checkpoint"
/* 2: no /state/rng. Every random draw of a run is a pure function of (SEED, epoch, position),
 * so a generator state had nothing to restore; version 1 files still read (their RNG words are
 * checked by the state checksum, then dropped). */
#define MR_CHECKPOINT_VERSION 2

/* Every tensor mrcnn writes (checkpoints, exports) carries this int64 attribute: FNV-1a over its
 * float32 values as a reader gets them back (mr_checksum_f32). The training state has its own,
 * a root attribute (files written before it existed read as "not verified", not as damaged). */
#define MR_CHECKSUM_ATTR       "fnv1a64"
#define MR_STATE_CHECKSUM_ATTR "state_fnv1a64"

/* FNV-1a over 32-bit words: any changed word changes the result. */
uint64_t mr_checksum_f32(const float *data, int64_t n);

/* Everything a checkpoint holds besides the tensors. */
typedef struct {
    int64_t epoch;       /* epochs completed (0-based index of the next epoch) */
    int64_t step;        /* optimizer steps completed over the whole run */
    int64_t *data_order; /* the data loader's state, opaque here (e.g. permutation + cursor) */
    int64_t n_data_order;
    char *config_json;  /* the resolved config, as mr_config_to_json writes it */
    char *metrics_json; /* metrics so far, JSON text ("" or NULL = none) */
    double val_loss;    /* validation loss at this checkpoint; NaN = not measured */
    bool verified;      /* read: the state matched its checksum (false: a file written before
                           mrcnn stored one; such files are range-checked only) */
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
/* Only the state (no tensors), e.g. for `mrcnn inspect`. The state is checked against its
 * checksum when the file has one, and its counters against their ranges: either failing is
 * MR_ERR_FORMAT "<path>: damaged checkpoint: ...". */
mr_status mr_checkpoint_read_state(const char *path, mr_checkpoint_state *s);
/* Where a resume continues. The trainer stores data_order = (epoch, step within the epoch) and
 * step = epoch * steps_per_epoch + step within the epoch; anything else (a step past the end of
 * the epoch, an epoch that disagrees with the epoch attribute) is MR_ERR_FORMAT "damaged
 * checkpoint: ..." naming the value and the range it should be in. */
mr_status mr_checkpoint_position(const char *path, const mr_checkpoint_state *s,
                                 int64_t steps_per_epoch, int *epoch, int *step_in_epoch);
/* Reads the state and every tensor back and checks their checksums: true when the file is
 * complete and intact; otherwise the reason is the last error. */
bool mr_checkpoint_verify(const char *path);
/* The same as a status: MR_ERR_FORMAT for damage (checksums, missing or unreadable parts),
 * MR_ERR_NUMERIC for a NaN or Inf value (a run saved after it diverged). */
mr_status mr_checkpoint_check(const char *path);
void mr_checkpoint_state_free(mr_checkpoint_state *s);

/* "<run_dir>/ckpt-e0003-s00000060.h5": names sort in training order. */
void mr_checkpoint_path(char *buf, size_t size, const char *run_dir, int64_t epoch, int64_t step);
/* The newest checkpoint in run_dir that verifies; newer damaged ones are skipped with a warning
 * each and counted in *n_skipped (may be NULL). MR_ERR_IO when there is none. */
mr_status mr_checkpoint_find_latest(const char *run_dir, char *path, size_t size, int *n_skipped);
/* Deletes checkpoints of run_dir except the newest `keep` intact ones and the best intact one:
 * the highest validation mask AP50 (then mask AP) its metrics record, or, among checkpoints
 * without them, the lowest finite val_loss. Candidates are verified (mr_checkpoint_verify) before
 * anything is decided, so a damaged file is never kept in place of an intact one: a damaged
 * checkpoint newer than every kept one is renamed to "<name>.damaged" (out of resume's way, kept
 * for salvage with
 * --allow-damaged), older damaged ones are deleted like any old checkpoint. When no checkpoint
 * is intact nothing is touched and the result is MR_ERR_IO. *n_removed (may be NULL) counts the
 * files deleted or set aside. */
mr_status mr_checkpoint_prune(const char *run_dir, int keep, int *n_removed);
/* Proves at start that run_dir (created if missing) takes a file: writes, fsyncs and removes a
 * probe file, and, when bytes_needed > 0, checks that much space is free. Removes temp files an
 * interrupted save left behind. */
mr_status mr_checkpoint_probe(const char *run_dir, int64_t bytes_needed);

#endif

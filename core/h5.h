/* HDF5 helpers: the only place that sees hdf5.h. Float datasets by path (groups created on
 * the way), string/int attributes, listing, the atomic HDF5 writer every .h5 output goes through
 * (checkpoints, exports), and failures turned into one-line statuses.
 * Used by checkpoints, weight import/export and the reference-file tests. */
#ifndef MR_H5_H
#define MR_H5_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define MR_H5_MAX_DIMS 8

typedef struct {
    int64_t id; /* hid_t of the open file */
    char *path;
    bool writable;
} mr_h5;

/* Largest dataset any reader accepts, in values: 8 GiB of float32, far above the biggest
 * Mask R-CNN tensor (12.8 M values); a damaged header claiming more is refused by name. Being
 * INT32_MAX, every dimension and count below it also fits an int. */
#define MR_H5_MAX_VALUES ((int64_t)INT32_MAX)

/* MR_OK when `path` is an existing regular file (its size in *size, may be NULL); else one
 * line naming what it is instead ("X: a folder, not a weights file"), `what` being the kind of
 * file expected. Called before any open: a FIFO would block an open forever. */
mr_status mr_h5_check_regular(const char *path, const char *what, int64_t *size);
/* Opens an existing file; a missing, truncated or non-HDF5 file gives one clear line. */
mr_status mr_h5_open(const char *path, bool writable, mr_h5 *out);
/* Creates (truncates) a file. */
mr_status mr_h5_create(const char *path, mr_h5 *out);
/* Flushes and closes; reports a failed flush (disk full) as MR_ERR_IO. */
mr_status mr_h5_close(mr_h5 *f);
/* Closes f after work on it that ended with `st`: a failure keeps its own message (whatever
 * closing says), MR_OK gives the close's status. */
mr_status mr_h5_close_after(mr_h5 *f, mr_status st);

bool mr_h5_exists(mr_h5 *f, const char *path);
/* Shape of a dataset; *ndim <= MR_H5_MAX_DIMS, and the product of the dimensions is at most
 * MR_H5_MAX_VALUES and fits in the file (a claim beyond either fails, naming the dataset). */
mr_status mr_h5_shape(mr_h5 *f, const char *dataset, int *ndim, int64_t *shape);
/* Reads a dataset of any numeric type as float32 into `out`, which holds `capacity` floats. */
mr_status mr_h5_read_into(mr_h5 *f, const char *dataset, float *out, int64_t capacity);
/* Reads a float dataset into a malloc'd buffer (caller frees); shape optional. */
mr_status mr_h5_read(mr_h5 *f, const char *dataset, float **data, int *ndim, int64_t *shape);
/* Reads an integer dataset into a malloc'd int64 buffer. */
mr_status mr_h5_read_i64(mr_h5 *f, const char *dataset, int64_t **data, int64_t *count);
/* Writes a float32 dataset, creating intermediate groups ("a/b/kernel:0"). With `half`
 * the values are stored as IEEE float16. */
mr_status mr_h5_write(mr_h5 *f, const char *dataset, const float *data, int ndim,
                      const int64_t *shape, bool half);
/* Creates a group and any missing parents; an existing group is fine. */
mr_status mr_h5_make_group(mr_h5 *f, const char *group);
mr_status mr_h5_write_i64(mr_h5 *f, const char *dataset, const int64_t *data, int64_t count);

/* Attributes on a group or dataset ("/" for the root). Strings come back malloc'd. */
mr_status mr_h5_set_attr_str(mr_h5 *f, const char *object, const char *name, const char *value);
mr_status mr_h5_set_attr_i64(mr_h5 *f, const char *object, const char *name, int64_t value);
/* A scalar fixed-length byte string, as numpy.bytes_ is stored: Keras reads keras_version and
 * backend with .decode(), which a variable-length (str) attribute would break. */
mr_status mr_h5_set_attr_bytes(mr_h5 *f, const char *object, const char *name, const char *value);
mr_status mr_h5_set_attr_f64(mr_h5 *f, const char *object, const char *name, double value);
mr_status mr_h5_get_attr_f64(mr_h5 *f, const char *object, const char *name, double *value);
mr_status mr_h5_get_attr_str(mr_h5 *f, const char *object, const char *name, char **value);
mr_status mr_h5_get_attr_i64(mr_h5 *f, const char *object, const char *name, int64_t *value);
bool mr_h5_has_attr(mr_h5 *f, const char *object, const char *name);
/* Keras-style string-array attribute (fixed or variable length): malloc'd array of malloc'd
 * strings. Also concatenates the chunked form name0, name1, ... */
mr_status mr_h5_get_attr_strings(mr_h5 *f, const char *object, const char *name, char ***values,
                                 int *count);
mr_status mr_h5_set_attr_strings(mr_h5 *f, const char *object, const char *name,
                                 const char *const *values, int count);
void mr_h5_free_strings(char **values, int count);

/* The stored element type of a dataset: "float32", "float16", "int64", "string", ... */
mr_status mr_h5_dtype(mr_h5 *f, const char *dataset, char *name, size_t size);

/* Calls fn for every dataset below `group`, with its full path. */
typedef mr_status (*mr_h5_visit_fn)(const char *path, void *user);
mr_status mr_h5_visit_datasets(mr_h5 *f, const char *group, mr_h5_visit_fn fn, void *user);

/* Writes an HDF5 file atomically (redis rdbSave's way): `fill` writes the contents of a temp
 * file in the same folder, every call checked, then fsync, rename over `path`, fsync of the
 * folder. On failure the message names the stage and whether an old file is untouched. */
typedef mr_status (*mr_h5_fill_fn)(mr_h5 *f, void *user);
mr_status mr_h5_save_atomic(const char *path, mr_h5_fill_fn fill, void *user);

/* Tests only: called at each stage of an atomic save ("create", "write", "close", "fsync",
 * "rename", "dirsync"); returning true makes that stage fail as a full disk would. NULL to
 * clear. */
typedef bool (*mr_h5_save_fail_hook)(const char *stage, void *user);
void mr_h5_set_save_fail_hook(mr_h5_save_fail_hook hook, void *user);

#endif

/* Status codes, the library's last-error message, and the caller-bug abort.
 * Input and environment failures return a status with a one-line message; caller bugs
 * (shape mismatches inside an op) abort with file:line. Nothing here calls exit().
 *
 * Who frees what, everywhere in mrcnn:
 * - A function that fills a struct through a pointer (`mr_image_load(path, c, &img)`) zeroes it
 *   before anything can fail.
 * - The caller releases it with the struct's mr_X_free whether the call succeeded or not. A
 *   function may free its partial work on failure; it then leaves the struct zeroed, so the
 *   caller's release stays harmless.
 * - Every mr_X_free accepts a zeroed struct and leaves the struct zeroed (or, for opaque
 *   handles, takes NULL), so releasing twice is harmless. tests/test_util.c holds them to it.
 * - Arguments passed in are borrowed: nothing frees what it did not allocate, unless its name
 *   says it takes ownership (mr_dataset_wrap).
 * - Tensors live in their mr_ctx arena and are never freed one by one. */
#ifndef MR_STATUS_H
#define MR_STATUS_H

#include <stdio.h>
#include <stdlib.h>

typedef enum {
    MR_OK = 0,
    MR_ERR_ARG,         /* bad command line or API argument */
    MR_ERR_IO,          /* file missing, unreadable, unwritable, disk full */
    MR_ERR_FORMAT,      /* malformed file contents: JSON, HDF5, image, CSV */
    MR_ERR_CONFIG,      /* bad configuration key or value */
    MR_ERR_NOMEM,       /* malloc or arena exhausted */
    MR_ERR_NUMERIC,     /* NaN or Inf where a finite number was needed */
    MR_ERR_INTERRUPTED, /* stopped by a signal; state was saved */
} mr_status;

const char *mr_status_name(mr_status s);

/* Records a printf-style message as the last error and returns `code`. */
mr_status mr_fail(mr_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last error message of this thread ("" when none). */
const char *mr_last_error(void);
void mr_clear_error(void);

#define MR_TRY(expr)                                                                               \
    do {                                                                                           \
        mr_status mr_try_status_ = (expr);                                                         \
        if (mr_try_status_ != MR_OK) return mr_try_status_;                                        \
    } while (0)

/* Caller bugs: a broken invariant in the program, not in the user's input. */
_Noreturn void mr_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define MR_PANIC(...) mr_panic_at(__FILE__, __LINE__, __VA_ARGS__)
#define MR_REQUIRE(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) mr_panic_at(__FILE__, __LINE__, __VA_ARGS__);                                 \
    } while (0)

#endif

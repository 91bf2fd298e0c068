/* Text built in memory: a growable buffer written with printf-style calls, the JSON pieces every
 * hand-written JSON file of mrcnn needs (escaped strings, numbers that are null when undefined),
 * and an atomic write of the result. One allocation failure marks the buffer failed; the write
 * then reports it, so callers check once at the end. Also the small string helpers every part
 * shares: a copy, the "did you mean" distance, and the line:column of an offset. */
#ifndef MR_TEXT_H
#define MR_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct {
    char *s; /* NUL-terminated once anything was written; NULL before */
    size_t n, cap;
    bool failed;
} mr_text;

void mr_text_printf(mr_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal: quotes, backslash escapes, control characters as \uXXXX. */
void mr_text_json_string(mr_text *t, const char *s);
/* A JSON number with `digits` significant digits, or null when v is not finite. */
void mr_text_json_number(mr_text *t, double v, int digits);
void mr_text_free(mr_text *t);
/* Writes the text to `path` atomically (core/file.h); a failed buffer is MR_ERR_NOMEM. */
mr_status mr_text_write_atomic(const mr_text *t, const char *path);

/* snprintf into a fixed buffer that truncates quietly, for messages and paths bounded by their
 * buffers (a cut path simply fails to resolve, with a message). */
void mr_format(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A malloc'ed copy of `s` (NULL for NULL or when out of memory). */
char *mr_strdup(const char *s);
/* Edit distance for "did you mean" (options, verbs, config keys, class labels): insertions,
 * deletions, substitutions and swaps of two neighbours cost 1 (optimal string alignment),
 * ASCII case ignored; SIZE_MAX when either string is longer than 64 bytes (names are short). */
size_t mr_edit_distance(const char *a, const char *b);
/* The 1-based line and column of byte `offset` of `text` (`len` bytes; an offset past the end
 * counts as the end), as messages say "file:line:column". */
void mr_text_pos(const char *text, size_t len, size_t offset, int64_t *line, int64_t *col);

#endif

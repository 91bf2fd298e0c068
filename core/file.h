/* Files and folders as every part of mrcnn writes them: `mkdir -p`, and whole-file writes that
 * are atomic (temp file in the same folder, every call checked, fsync, rename, fsync the
 * folder), so a reader sees the old file or the new one, never half of either. */
#ifndef MR_FILE_H
#define MR_FILE_H

#include <stddef.h>

#include "status.h"

/* Creates `path` and its missing parents; an existing non-folder in the way is an error. */
mr_status mr_make_dirs(const char *path);
/* Replaces `path` with `len` bytes of `data`, file mode `mode` (e.g. 0644). On failure the old
 * file, if any, is unchanged and no temp file is left. */
mr_status mr_write_file_atomic(const char *path, const void *data, size_t len, int mode);

#endif

/* Files and folders as every part of mrcnn reads and writes them: whole-file reads, `mkdir -p`,
 * and whole-file writes that are atomic (temp file in the same folder, every call checked, fsync,
 * rename, fsync the folder), so a reader sees the old file or the new one, never half of either.
 * Every whole-file write of mrcnn goes through mr_write_file_atomic (HDF5 files: core/h5.h). */
#ifndef MR_FILE_H
#define MR_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* Reads the whole of `path` into a NUL-terminated buffer the caller frees; `*len` (NULL: not
 * wanted) gets its size. `what` names the file in messages: "<path>: cannot open <what>: <OS
 * reason>". A file larger than `max_bytes` (0: no limit) is MR_ERR_FORMAT "<path>: larger than
 * <limit>, not a <what>", so a wrong path given for a small text file fails fast. */
mr_status mr_read_file(const char *path, const char *what, size_t max_bytes, char **text,
                       size_t *len);
/* Tidies a path the user typed, in place: runs of '/' become one and a trailing '/' goes ("/"
 * stays), so "runs//x/" and "runs/x" name, and print as, the same folder. */
void mr_path_tidy(char *path);
/* Creates `path` and its missing parents; an existing non-folder in the way is an error. */
mr_status mr_make_dirs(const char *path);
/* Replaces `path` with `len` bytes of `data`, file mode `mode` (e.g. 0644). On failure the old
 * file, if any, is unchanged, no temp file is left, and the message is one line naming `path`
 * and the OS reason ("No space left on device", "Read-only file system"). */
mr_status mr_write_file_atomic(const char *path, const void *data, size_t len, int mode);
/* fsync of a file or (folder true) a folder by path: 0, or -1 with errno set for the message. */
int mr_fsync_path(const char *path, bool folder);
/* Proves that files can be created in the folder `dir` (creates and removes a temp file), so a
 * read-only or forbidden folder fails before long work rather than at its first output. */
mr_status mr_check_dir_writable(const char *dir);

/* Test hook for the disk-full path: after `n` more successful mr_write_file_atomic calls, every
 * later one fails as a full disk does (part of the data reaches the temp file, then ENOSPC), so
 * callers' cleanup and messages can be tested without filling a disk. n < 0 turns it off. The
 * environment variable MRCNN_TEST_FAIL_WRITES_AFTER=n does the same for a whole process (how the
 * tests reach the `mrcnn` binary); it is read at the first write. */
void mr_file_fail_after(long n);

#endif

/* Whole-file reads, mkdir -p and the atomic whole-file write shared by configs, reports, annotation
 * files, predictions and every PNG; the disk-full test hook lives here so all of them can be
 * tested. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

/* ---- the disk-full test hook ------------------------------------------------------------- */

#define HOOK_UNREAD LONG_MIN /* MRCNN_TEST_FAIL_WRITES_AFTER not looked at yet */
/* Successful writes left before the simulated full disk; negative: no simulation. Atomic, as
 * nothing stops a caller from writing files from several threads. */
static _Atomic long writes_left = HOOK_UNREAD;

void mr_file_fail_after(long n) {
    atomic_store(&writes_left, n < 0 ? -1 : n);
}

/* True when this write is to fail as on a full disk; counts the writes that go through. */
static bool simulated_full_disk(void) {
    long n = atomic_load(&writes_left);
    if (n == HOOK_UNREAD) {
        const char *env = getenv("MRCNN_TEST_FAIL_WRITES_AFTER");
        char *end = NULL;
        long v = env && *env ? strtol(env, &end, 10) : -1;
        if (end && *end) v = -1; /* not a number: no simulation rather than a surprise */
        atomic_compare_exchange_strong(&writes_left, &n, v < 0 ? -1 : v);
        n = atomic_load(&writes_left);
    }
    while (n > 0 && !atomic_compare_exchange_weak(&writes_left, &n, n - 1)) {
    }
    return n == 0;
}

/* ---- whole-file reads ------------------------------------------------------------------- */

mr_status mr_read_file(const char *path, const char *what, size_t max_bytes, char **text,
                       size_t *len) {
    *text = NULL;
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return mr_fail(MR_ERR_IO, "%s: cannot open %s: %s", path, what, strerror(errno));
    /* Read until a short read, always with room left for the final NUL. */
    size_t cap = 0, n = 0;
    char *buf = NULL;
    for (;;) {
        if (!mr_grow(&buf, &cap, n + 2, 1, (size_t)1 << 16)) {
            free(buf);
            buf = NULL;
            break;
        }
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1) break;
        if (max_bytes && n > max_bytes) break;
    }
    bool bad = ferror(f) != 0;
    fclose(f);
    if (!buf) return mr_fail(MR_ERR_NOMEM, "%s: out of memory reading the %s", path, what);
    if (bad) {
        free(buf);
        return mr_fail(MR_ERR_IO, "%s: read error", path);
    }
    if (max_bytes && n > max_bytes) {
        free(buf);
        bool gib = max_bytes >= ((size_t)1 << 30);
        return mr_fail(MR_ERR_FORMAT, "%s: larger than %zu %s, not a %s", path,
                       max_bytes >> (gib ? 30 : 20), gib ? "GiB" : "MiB", what);
    }
    buf[n] = '\0';
    *text = buf;
    if (len) *len = n;
    return MR_OK;
}

/* ---- folders and atomic writes ----------------------------------------------------------- */

void mr_path_tidy(char *path) {
    char *w = path;
    for (const char *r = path; *r; r++)
        if (*r != '/' || w == path || w[-1] != '/') *w++ = *r;
    if (w - path > 1 && w[-1] == '/') w--;
    *w = '\0';
}

mr_status mr_make_dirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return mr_fail(MR_ERR_ARG, "path too long: %.80s...", path);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return mr_fail(MR_ERR_IO, "%s: cannot create folder: %s", buf, strerror(errno));
        struct stat sb;
        if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
            return mr_fail(MR_ERR_IO, "%s: exists and is not a folder", buf);
        *p = saved;
        if (saved == '\0') break;
    }
    return MR_OK;
}

/* fsync of the folder holding `path`, once a rename into it is done: a folder without fsync
 * support is not an error. */
static void sync_folder_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    (void)mr_fsync_path(dirname(dir), true);
}

int mr_fsync_path(const char *path, bool folder) {
    int fd = open(path, O_RDONLY | (folder ? O_DIRECTORY : 0));
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

mr_status mr_write_file_atomic(const char *path, const void *data, size_t len, int mode) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp)
        return mr_fail(MR_ERR_ARG, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return mr_fail(MR_ERR_IO, "%s: cannot write: %s (creating a temp file in its folder)", path,
                       strerror(errno));
    const char *what = NULL;
    int err = 0;
    const char *bytes = data;
    size_t done = 0;
    /* The simulated full disk lets half the data through first, as a real one would. */
    const bool full = simulated_full_disk();
    const size_t room = full ? len / 2 : len;
    if (fchmod(fd, (mode_t)mode) != 0) what = "chmod", err = errno;
    while (!what && done < room) {
        ssize_t w = write(fd, bytes + done, room - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            what = "write", err = w < 0 ? errno : ENOSPC;
        else
            done += (size_t)w;
    }
    if (!what && full) what = "write", err = ENOSPC;
    /* Disk quotas and network file systems may report a full disk only at fsync or close. */
    if (!what && fsync(fd) != 0) what = "fsync", err = errno;
    if (close(fd) != 0 && !what) what = "close", err = errno;
    if (!what && rename(tmp, path) != 0) what = "rename", err = errno;
    if (what) {
        unlink(tmp);
        return mr_fail(MR_ERR_IO, "%s: cannot write: %s (%s failed; any old file is unchanged)",
                       path, strerror(err), what);
    }
    sync_folder_of(path);
    return MR_OK;
}

mr_status mr_check_dir_writable(const char *dir) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s/.mrcnn-probe-XXXXXX", dir) >= (int)sizeof tmp)
        return mr_fail(MR_ERR_ARG, "%s: path too long", dir);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return mr_fail(MR_ERR_IO, "%s: cannot write files in this folder: %s", dir,
                       strerror(errno));
    close(fd);
    unlink(tmp);
    return MR_OK;
}

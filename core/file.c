/* mkdir -p and the atomic whole-file write shared by configs, reports and annotation files. */
#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

mr_status mr_write_file_atomic(const char *path, const void *data, size_t len, int mode) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= (int)sizeof tmp)
        return mr_fail(MR_ERR_ARG, "%s: path too long", path);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return mr_fail(MR_ERR_IO, "%s: cannot create a temp file next to it: %s", path,
                       strerror(errno));
    const char *what = NULL;
    const char *bytes = data;
    size_t done = 0;
    if (fchmod(fd, (mode_t)mode) != 0) what = "chmod";
    while (!what && done < len) {
        ssize_t w = write(fd, bytes + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            what = "write";
        else
            done += (size_t)w;
    }
    if (!what && fsync(fd) != 0) what = "fsync";
    int saved = errno;
    if (close(fd) != 0 && !what) what = "close", saved = errno;
    if (!what && rename(tmp, path) != 0) what = "rename", saved = errno;
    if (what) {
        unlink(tmp);
        return mr_fail(MR_ERR_IO, "%s: %s failed: %s (disk full?); the file is unchanged", path,
                       what, strerror(saved));
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) { /* the rename is done; a folder without fsync support is not an error */
        (void)fsync(dfd);
        close(dfd);
    }
    return MR_OK;
}

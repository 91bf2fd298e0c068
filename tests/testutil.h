/* Helpers shared by the Criterion tests: fixture paths, temp folders, tolerance checks. */
#ifndef MR_TESTUTIL_H
#define MR_TESTUTIL_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* Path of a file under ../shared/fixtures (MRCNN_SHARED overrides the shared folder). A test
 * whose fixture is missing is skipped visibly, never passed silently. */
static inline const char *fixture_path(const char *rel) {
    static _Thread_local char buf[4096];
    const char *shared = getenv("MRCNN_SHARED");
    snprintf(buf, sizeof buf, "%s/fixtures/%s", shared ? shared : "../shared", rel);
    FILE *f = fopen(buf, "rb");
    if (!f) cr_skip_test("fixture %s not found (set MRCNN_SHARED)", buf);
    fclose(f);
    return buf;
}

/* A fresh empty folder under /tmp for one test; the caller may leave files in it. */
static inline const char *temp_dir(const char *tag) {
    static _Thread_local char buf[256];
    snprintf(buf, sizeof buf, "/tmp/mrcnn-test-%s-XXXXXX", tag);
    cr_assert_not_null(mkdtemp(buf), "mkdtemp failed");
    return buf;
}

/* Runs `mrcnn args` ($MRCNN_BIN, which make test sets, else build/mrcnn from the repo root) with
 * stderr folded into `out`; returns the exit code. Without a binary the test is skipped visibly. */
static inline int run_mrcnn(const char *args, char *out, size_t n) {
    const char *bin = getenv("MRCNN_BIN");
    if (!bin || access(bin, X_OK) != 0)
        bin = access("build/mrcnn", X_OK) == 0 ? "build/mrcnn" : NULL;
    if (!bin) cr_skip_test("MRCNN_BIN not set and no build/mrcnn: `mrcnn %.40s` not run", args);
    char cmd[16384];
    cr_assert_lt(snprintf(cmd, sizeof cmd, "'%s' %.8000s 2>&1", bin, args), (int)sizeof cmd);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#endif

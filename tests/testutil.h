/* Helpers shared by the Criterion tests: fixture paths, temp folders, tolerance checks. */
#ifndef MR_TESTUTIL_H
#define MR_TESTUTIL_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif

/* Nothing lost on output (issue 12): every file mrcnn writes is whole or absent. The atomic writer
 * and the PNG writer under a simulated full disk (mr_file_fail_after); `mrcnn predict` stopping at
 * its first failed write with one line naming the file and the OS reason, leaving only whole files
 * (simulated through MRCNN_TEST_FAIL_WRITES_AFTER, and on a real read-only folder and a real full
 * tmpfs where this process may mount one); `mrcnn synth` refusing a folder that is not empty; and
 * counts of 0 refused on the command line. CLI tests need MRCNN_BIN (set by `make test`). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/file.h"
#include "../data/image.h"
#include "../data/synth.h"
#include "../layers/inference.h"
#include "../train/export.h"
#include "testutil.h"

/* snprintf that fails the test instead of truncating a path. */
#define FMT(buf, ...) cr_assert_lt(snprintf(buf, sizeof buf, __VA_ARGS__), (int)sizeof buf)

/* ---- helpers ------------------------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n, "%s", path);
    buf[n] = '\0';
    fclose(f);
    if (len) *len = (size_t)n;
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    cr_assert_eq(fclose(f), 0);
}

/* The names in `dir` (no "." or ".."), sorted, joined by '\n' into `out`; returns the count. */
static int list_dir(const char *dir, char *out, size_t size) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
    char *names[256];
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            cr_assert_lt(n, 256);
            names[n++] = strdup(e->d_name);
        }
    closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort: a handful of names */
        for (int k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
            char *t = names[k];
            names[k] = names[k - 1];
            names[k - 1] = t;
        }
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        int w = snprintf(out + used, size - used, "%s\n", names[i]);
        cr_assert(w > 0 && (size_t)w < size - used);
        used += (size_t)w;
        free(names[i]);
    }
    return n;
}

static int count_lines_with(const char *text, const char *needle) {
    int n = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[4096];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        n += strstr(buf, needle) != NULL;
        line += len + (end ? 1 : 0);
    }
    return n;
}

static int count_newlines(const char *text) {
    int n = 0;
    for (; *text; text++) n += *text == '\n';
    return n;
}

/* Every file in `dir` is whole: none empty, no temp file, each PNG decodes, each JSON parses.
 * Returns the number of files. */
static int expect_only_whole_files(const char *dir) {
    char names[8192];
    int n = list_dir(dir, names, sizeof names);
    for (char *name = strtok(names, "\n"); name; name = strtok(NULL, "\n")) {
        char path[1024];
        FMT(path, "%s/%s", dir, name);
        cr_assert(!strstr(name, ".tmp") && strncmp(name, ".mrcnn", 6), "temp file left: %s", path);
        size_t len = 0;
        char *bytes = slurp(path, &len);
        cr_assert_not_null(bytes, "%s", path);
        cr_assert_gt(len, 0, "zero-byte file left: %s", path);
        size_t nl = strlen(name);
        if (nl > 4 && !strcmp(name + nl - 4, ".png")) {
            mr_image img;
            cr_assert_eq(mr_image_load(path, 0, &img), MR_OK, "%s: %s", path, mr_last_error());
            mr_image_free(&img);
        } else if (nl > 5 && !strcmp(name + nl - 5, ".json")) {
            cJSON *j = cJSON_Parse(bytes);
            cr_assert_not_null(j, "%s is not whole JSON", path);
            cJSON_Delete(j);
        } else {
            cr_assert_fail("unexpected file %s", path);
        }
        free(bytes);
    }
    return n;
}

static int run_verb(const char *verb, const char *args, char *out, size_t n) {
    char full[8192];
    FMT(full, "%s %s", verb, args);
    return run_mrcnn(full, out, n);
}

/* ---- fixtures ------------------------------------------------------------------------------ */

/* An mrcnn export of the tiny model with random weights (config embedded, every detection
 * kept), so predict has masks and polygons to write. */
static void write_weights(const char *path) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    c.net.detection_min_confidence = 0.0f;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    random_test_weights(&m, 21);
    char *json = mr_config_to_json(&c);
    cr_assert_eq(mr_weights_save(path, &m.params, json, false), MR_OK, "%s", mr_last_error());
    free(json);
    mr_model_free(&m);
}

/* `n` synthetic ultrasound images img_0.png ... in `dir` (created), `size` px square. */
static void write_images(const char *dir, int n, int size) {
    cr_assert_eq(mr_make_dirs(dir), MR_OK, "%s", mr_last_error());
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.size = size;
    o.seed = 5;
    o.normal_fraction = 0.0;
    for (int i = 0; i < n; i++) {
        mr_synth_sample s;
        cr_assert_eq(mr_synth_generate(&o, i, &s), MR_OK, "%s", mr_last_error());
        char path[1024];
        FMT(path, "%s/img_%d.png", dir, i);
        cr_assert_eq(mr_image_write_png(path, &s.image), MR_OK, "%s", mr_last_error());
        mr_synth_sample_free(&s);
    }
}

/* ---- the writers under a simulated full disk ----------------------------------------------- */

Test(outputs, a_failed_png_write_leaves_the_old_file_and_names_the_os_reason) {
    const char *dir = temp_dir("out-png");
    char keep[512], fresh[512], names[1024];
    FMT(keep, "%s/keep.png", dir);
    FMT(fresh, "%s/new.png", dir);
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, 40, 30, 3), MR_OK);
    for (int i = 0; i < 40 * 30 * 3; i++) img.pixels[i] = (uint8_t)(i * 7);
    cr_assert_eq(mr_image_write_png(keep, &img), MR_OK, "%s", mr_last_error());
    size_t len0 = 0;
    char *before = slurp(keep, &len0);

    mr_file_fail_after(0); /* the disk is full from now on */
    img.pixels[0] ^= 0xff;
    cr_assert_eq(mr_image_write_png(keep, &img), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), keep) && strstr(mr_last_error(), strerror(ENOSPC)),
              "names the file and the OS reason: %s", mr_last_error());
    cr_assert_null(strchr(mr_last_error(), '\n'), "one line: %s", mr_last_error());
    cr_assert_eq(mr_image_write_png(fresh, &img), MR_ERR_IO, "a full disk stays full");
    cr_assert_eq(mr_write_file_atomic(fresh, "{}", 2, 0644), MR_ERR_IO);
    size_t len1 = 0;
    char *after = slurp(keep, &len1);
    cr_assert(len0 == len1 && !memcmp(before, after, len0), "the old file is unchanged");
    cr_assert_eq(list_dir(dir, names, sizeof names), 1, "no temp or new file left: %s", names);

    mr_file_fail_after(1); /* one more file fits */
    cr_assert_eq(mr_image_write_png(fresh, &img), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_write_file_atomic(keep, "x", 1, 0644), MR_ERR_IO);
    mr_file_fail_after(-1);
    cr_assert_eq(expect_only_whole_files(dir), 2);
    free(before);
    free(after);
    mr_image_free(&img);
}

/* ---- predict: the first failed write stops it ---------------------------------------------- */

/* The files predict writes for three images, in the order it writes them. */
static const char *const PREDICT_FILES[] = {
    "img_0_pred.png", "img_0_pred.json", "img_1_pred.png",   "img_1_pred.json",
    "img_2_pred.png", "img_2_pred.json", "via_project.json",
};
#define N_PREDICT_FILES ((int)(sizeof PREDICT_FILES / sizeof PREDICT_FILES[0]))

Test(outputs, predict_stops_at_the_first_failed_write_and_leaves_only_whole_files, .timeout = 600) {
    const char *dir = temp_dir("out-predict");
    char weights[512], images[512], args[2048], log[32768];
    FMT(weights, "%s/model.h5", dir);
    FMT(images, "%s/images", dir);
    write_weights(weights);
    write_images(images, 3, 128);
    /* The first overlay, the first JSON, a later overlay, a later JSON, the VIA project. */
    const int fail_at[] = {0, 1, 2, 5, 6};
    for (size_t t = 0; t < sizeof fail_at / sizeof fail_at[0]; t++) {
        const int n = fail_at[t];
        char out[512], env[16], names[4096], expected[4096] = "";
        FMT(out, "%s/pred-%d", dir, n);
        FMT(env, "%d", n);
        cr_assert_eq(setenv("MRCNN_TEST_FAIL_WRITES_AFTER", env, 1), 0);
        FMT(args, "--weights '%s' '%s' --out '%s'", weights, images, out);
        int rc = run_verb("predict", args, log, sizeof log);
        unsetenv("MRCNN_TEST_FAIL_WRITES_AFTER");
        cr_assert_eq(rc, 1, "after %d files: exit 1: %s", n, log);
        const char *failed = PREDICT_FILES[n];
        cr_assert_eq(count_lines_with(log, strerror(ENOSPC)), 1, "after %d: one line: %s", n, log);
        cr_assert_eq(count_lines_with(log, "mrcnn predict:"), 1, "after %d: one error line: %s", n,
                     log);
        cr_assert_eq(count_lines_with(log, failed), 1, "after %d: names %s: %s", n, failed, log);
        cr_assert_null(strstr(log, "skipped"), "after %d: %s", n, log);
        if (n < 6) {
            char stop[64];
            FMT(stop, "stopped at image %d of 3", n / 2 + 1);
            cr_assert(strstr(log, stop), "after %d: '%s' in %s", n, stop, log);
            FMT(stop, "[%d/3]", n / 2 + 1);
            cr_assert_null(strstr(log, stop), "after %d: went on: %s", n, log);
        }
        /* Exactly the files written before the failure, each whole. */
        const char *sorted[N_PREDICT_FILES];
        for (int i = 0; i < n; i++) sorted[i] = PREDICT_FILES[i];
        for (int i = 1; i < n; i++)
            for (int k = i; k > 0 && strcmp(sorted[k - 1], sorted[k]) > 0; k--) {
                const char *tmp = sorted[k];
                sorted[k] = sorted[k - 1];
                sorted[k - 1] = tmp;
            }
        for (int i = 0; i < n; i++) strcat(strcat(expected, sorted[i]), "\n");
        list_dir(out, names, sizeof names);
        cr_assert_str_eq(names, expected, "after %d files", n);
        cr_assert_eq(expect_only_whole_files(out), n);
    }
    /* The hook off: the same run writes everything. */
    char out[512];
    FMT(out, "%s/pred-all", dir);
    FMT(args, "--weights '%s' '%s' --out '%s'", weights, images, out);
    cr_assert_eq(run_verb("predict", args, log, sizeof log), 0, "%s", log);
    cr_assert_eq(expect_only_whole_files(out), N_PREDICT_FILES);
}

/* The tmpfs a test mounted, unmounted by the fini even when an assertion ends the test early. */
static char mounted_at[512];

/* Mounts a tmpfs with `opts` on `dir`; false (test skipped by the caller) when not allowed. */
static bool mount_tmpfs(const char *dir, const char *opts) {
    if (geteuid() != 0) return false;
    char cmd[1024];
    FMT(cmd, "mount -t tmpfs -o %s mrcnn-test '%s' 2>/dev/null", opts, dir);
    if (system(cmd) != 0) return false;
    FMT(mounted_at, "%s", dir);
    return true;
}

static void unmount(void) {
    if (!mounted_at[0]) return;
    char cmd[1024];
    FMT(cmd, "umount '%s'", mounted_at);
    mounted_at[0] = '\0';
    cr_assert_eq(system(cmd), 0, "%s", cmd);
}

Test(outputs, predict_into_a_read_only_folder_fails_at_once_with_the_os_reason, .fini = unmount) {
    const char *dir = temp_dir("out-ro");
    char weights[512], images[512], out[512], args[2048], log[16384], names[1024];
    FMT(weights, "%s/model.h5", dir);
    FMT(images, "%s/images", dir);
    FMT(out, "%s/pred", dir);
    write_weights(weights);
    write_images(images, 2, 64);
    cr_assert_eq(mkdir(out, 0777), 0);
    /* Root writes through chmod, so as root the folder is a read-only tmpfs instead. */
    bool mounted = false;
    if (geteuid() == 0) {
        mounted = mount_tmpfs(out, "ro,size=64k");
        if (!mounted) cr_skip_test("running as root and cannot mount a read-only tmpfs");
    } else {
        cr_assert_eq(chmod(out, 0555), 0);
    }
    FMT(args, "--weights '%s' '%s' --out '%s'", weights, images, out);
    int rc = run_verb("predict", args, log, sizeof log);
    int n = list_dir(out, names, sizeof names);
    if (mounted)
        unmount();
    else
        chmod(out, 0755);
    cr_assert_eq(rc, 1, "%s", log);
    const char *why = strerror(mounted ? EROFS : EACCES);
    cr_assert(strstr(log, why) && strstr(log, out), "names the folder and '%s': %s", why, log);
    cr_assert_eq(count_newlines(log), 1, "one line, before the model loads: %s", log);
    cr_assert_eq(n, 0, "nothing written: %s", names);
}

Test(outputs, predict_on_a_really_full_disk_leaves_only_whole_files, .timeout = 600,
     .fini = unmount) {
    const char *dir = temp_dir("out-full");
    char weights[512], images[512], out[512], args[2048], log[32768];
    FMT(weights, "%s/model.h5", dir);
    FMT(images, "%s/images", dir);
    FMT(out, "%s/pred", dir);
    write_weights(weights);
    /* 160 px overlays of speckle compress to about 40 KB: a 64 KB disk fills at the second. */
    write_images(images, 4, 160);
    cr_assert_eq(mkdir(out, 0777), 0);
    if (!mount_tmpfs(out, "size=64k"))
        cr_skip_test("a real full disk needs root and a mountable tmpfs; the simulated one is "
                     "tested in predict_stops_at_the_first_failed_write_and_leaves_only_whole_"
                     "files");
    FMT(args, "--weights '%s' '%s' --out '%s'", weights, images, out);
    int rc = run_verb("predict", args, log, sizeof log);
    char names[4096];
    int n = list_dir(out, names, sizeof names);
    /* Checked before unmounting: the files are only there. */
    int whole = n > 0 ? expect_only_whole_files(out) : 0;
    unmount();
    cr_assert_eq(rc, 1, "%s", log);
    cr_assert_eq(count_lines_with(log, strerror(ENOSPC)), 1, "%s", log);
    cr_assert_eq(count_lines_with(log, "mrcnn predict:"), 1, "%s", log);
    cr_assert_null(strstr(log, "skipped"), "%s", log);
    cr_assert_eq(whole, n);
    cr_assert_geq(n, 1, "the disk filled mid-run, after whole files: %s", log);
    cr_assert_lt(n, 9, "the disk was not full: %s", names);
    cr_assert_null(strstr(names, "via_project.json"), "%s", names);
}

/* ---- synth refuses a folder that is not empty ---------------------------------------------- */

Test(outputs, synth_refuses_a_folder_that_is_not_empty_and_changes_nothing) {
    const char *dir = temp_dir("out-synth");
    char other[512], set[512], args[1024], log[8192], before[4096], after[4096], path[1024];
    /* A folder holding someone's file. */
    FMT(other, "%s/notes", dir);
    cr_assert_eq(mkdir(other, 0777), 0);
    FMT(path, "%s/keep.txt", other);
    write_text(path, "mine");
    FMT(args, "--out '%s' --images 3 --size 64", other);
    cr_assert_eq(run_verb("synth", args, log, sizeof log), 2, "%s", log);
    cr_assert(strstr(log, other) && strstr(log, "not empty"), "%s", log);
    cr_assert_eq(count_newlines(log), 1, "one line: %s", log);
    cr_assert_eq(list_dir(other, after, sizeof after), 1, "%s", after);
    char *text = slurp(path, NULL);
    cr_assert_str_eq(text, "mine");
    free(text);

    /* An empty folder is fine; the set written there is then protected from a second run. */
    FMT(set, "%s/set", dir);
    cr_assert_eq(mkdir(set, 0777), 0);
    FMT(args, "--out '%s' --images 3 --size 64", set);
    cr_assert_eq(run_verb("synth", args, log, sizeof log), 0, "%s", log);
    FMT(path, "%s/train", set);
    list_dir(path, before, sizeof before);
    FMT(path, "%s/train/via_region_data.json", set);
    size_t len0 = 0, len1 = 0;
    char *ann0 = slurp(path, &len0);
    FMT(args, "--out '%s' --images 5 --seed 7 --size 64", set);
    cr_assert_eq(run_verb("synth", args, log, sizeof log), 2, "%s", log);
    cr_assert(strstr(log, "not empty"), "%s", log);
    char *ann1 = slurp(path, &len1);
    cr_assert(len0 == len1 && !memcmp(ann0, ann1, len0), "annotations unchanged");
    FMT(path, "%s/train", set);
    list_dir(path, after, sizeof after);
    cr_assert_str_eq(after, before);
    free(ann0);
    free(ann1);
}

/* ---- counts of 0 mean nothing ---------------------------------------------------------------- */

static void expect_refused(const char *verb, const char *args, const char *option) {
    char log[8192];
    cr_assert_eq(run_verb(verb, args, log, sizeof log), 2, "%s %s: %s", verb, args, log);
    cr_assert(strstr(log, option), "%s %s: names %s: %s", verb, args, option, log);
    cr_assert_eq(count_newlines(log), 1, "%s %s: one line: %s", verb, args, log);
}

Test(outputs, zero_counts_are_refused_as_negatives_are) {
    const char *dir = temp_dir("out-zero");
    char args[1024];
    /* Checked before the weights or data are read, so none are needed. */
    FMT(args, "--weights '%s/none.h5' --limit 0", dir);
    expect_refused("evaluate", args, "--limit");
    FMT(args, "--weights '%s/none.h5' --limit -3", dir);
    expect_refused("evaluate", args, "--limit");
    expect_refused("anchors", "--config configs/tiny.json --k 0", "--k");
    expect_refused("anchors", "--config configs/tiny.json --k -2", "--k");
    expect_refused("anchors", "--config configs/tiny.json --ratios 0", "--ratios");
    expect_refused("anchors", "--config configs/tiny.json --seed -1", "--seed");
    FMT(args, "--out '%s/set' --images 0", dir);
    expect_refused("synth", args, "--images");
    char names[256];
    cr_assert_eq(list_dir(dir, names, sizeof names), 0, "nothing written: %s", names);
}

/* Getting data in as a clinician brings it: VIA 2 and VIA 3 projects saved on another machine
 * (a Windows default path, a foreign absolute path, a URL) find their images beside the
 * annotation file or under --image-root and say where; flat folders split by seed; check-data
 * decodes every image, groups repeated problems and applies train's rules, so both accept and
 * refuse the same data; relative DATASET paths follow the config; evaluate --data reads the
 * validation images. Every fixture is generated here. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/annotations.h"
#include "../data/image.h"
#include "../train/config.h"
#include "../train/data_source.h"
#include "testutil.h"

/* ---- fixtures ------------------------------------------------------------------------------ */

/* A 64x64 gray PNG with a bright square at (16..40, 16..40). */
static void put_png(const char *dir, const char *name) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, 64, 64, 1), MR_OK);
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
            img.pixels[y * 64 + x] = (x >= 16 && x < 40 && y >= 16 && y < 40) ? 200 : 60;
    cr_assert_eq(mr_image_write_png(path, &img), MR_OK, "%s", mr_last_error());
    mr_image_free(&img);
}

static void put_text(const char *dir, const char *name, const char *text) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    char *t = calloc(1, 1 << 17);
    cr_assert(fread(t, 1, (1 << 17) - 1, f) > 0);
    fclose(f);
    return t;
}

static void make_dir(const char *path) {
    cr_assert_eq(mkdir(path, 0755), 0, "mkdir %s", path);
}

static int count_substr(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* The last line of a command's output (its "mrcnn VERB: ..." error line). */
static const char *last_line(const char *text, char *buf, size_t n) {
    size_t len = strlen(text);
    while (len && text[len - 1] == '\n') len--;
    size_t start = len;
    while (start && text[start - 1] != '\n') start--;
    snprintf(buf, n, "%.*s", (int)(len - start), text + start);
    return buf;
}

/* Runs `mrcnn args` in folder `cwd` (stderr folded in); returns the exit code. */
static int run_in(const char *cwd, const char *args, char *out, size_t n) {
    const char *bin = getenv("MRCNN_BIN");
    char abs[PATH_MAX];
    if (!bin || access(bin, X_OK) != 0) bin = realpath("build/mrcnn", abs);
    if (!bin) cr_skip_test("MRCNN_BIN not set and no build/mrcnn: `mrcnn %.40s` not run", args);
    char cmd[16384];
    cr_assert_lt(snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s 2>&1", cwd, bin, args),
                 (int)sizeof cmd);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* configs/tiny.json with a short run and `extra` (", \"K\": v" items) appended; later keys win.
 * `classes` false drops CLASS_NAMES and sets NUM_CLASSES 3 instead. */
static void put_config(const char *path, bool classes, const char *extra) {
    char *text = read_text("configs/tiny.json");
    if (!classes) {
        char *at = strstr(text, "\"CLASS_NAMES\"");
        cr_assert_not_null(at);
        char *end = strchr(at, '\n');
        const char *repl = "\"NUM_CLASSES\": 3,";
        memmove(at + strlen(repl), end, strlen(end) + 1);
        memcpy(at, repl, strlen(repl));
    }
    *strrchr(text, '}') = '\0';
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fprintf(f,
            "%s, \"STEPS_PER_EPOCH\": 2, \"VALIDATION_STEPS\": 1, \"BATCH_SIZE\": 1, "
            "\"VALIDATION_METRICS\": 0, \"CHECKPOINT_KEEP\": 1%s}\n",
            text, extra ? extra : "");
    fclose(f);
    free(text);
}

/* A VIA 2 project over img0.png .. img{n-1}.png, each with one benign rect (the last one's at
 * `last_x`, so a test can put it outside the 64x64 image), with this default path. */
static void put_via2_project(const char *dir, const char *name, const char *default_path, int n,
                             int last_x) {
    char text[16384], esc[600] = "";
    size_t k = 0;
    for (const char *p = default_path; *p && k + 2 < sizeof esc; p++) {
        if (*p == '\\' || *p == '"') esc[k++] = '\\';
        esc[k++] = *p;
    }
    esc[k] = '\0';
    size_t used = (size_t)snprintf(text, sizeof text,
                                   "{\"_via_settings\": {\"ui\": {}, \"core\": {\"buffer_size\": "
                                   "18, \"filepath\": {}, \"default_filepath\": \"%s\"}, "
                                   "\"project\": {\"name\": \"bus\"}},\n \"_via_img_metadata\": {",
                                   esc);
    for (int i = 0; i < n; i++)
        used += (size_t)snprintf(
            text + used, sizeof text - used,
            "%s\"img%d.png-1\": {\"filename\": \"img%d.png\", \"size\": -1, \"regions\": "
            "[{\"shape_attributes\": {\"name\": \"rect\", \"x\": %d, \"y\": 16, \"width\": 24, "
            "\"height\": 24}, \"region_attributes\": {\"class\": \"benign\"}}], "
            "\"file_attributes\": {}}\n",
            i ? ", " : "", i, i, i == n - 1 ? last_x : 16);
    snprintf(text + used, sizeof text - used,
             "}, \"_via_attributes\": {\"region\": {}, \"file\": {}}}\n");
    put_text(dir, name, text);
}

/* A VIA 3 project over img0.png and img1.png whose files have `loc` with this loc_prefix. */
static void put_via3_project(const char *dir, const char *name, const char *prefix, int loc) {
    char text[8192], esc[600] = "";
    size_t k = 0;
    for (const char *p = prefix; *p && k + 2 < sizeof esc; p++) {
        if (*p == '\\' || *p == '"') esc[k++] = '\\';
        esc[k++] = *p;
    }
    esc[k] = '\0';
    snprintf(text, sizeof text,
             "{\"project\": {\"pid\": \"x\", \"rev\": \"x\", \"rev_timestamp\": \"x\", "
             "\"pname\": \"bus\", \"creator\": \"VIA\", \"created\": 1, \"vid_list\": [\"1\", "
             "\"2\"]},\n \"config\": {\"file\": {\"loc_prefix\": {\"%d\": \"%s\"}}, \"ui\": {}},\n"
             " \"attribute\": {\"1\": {\"aname\": \"class\", \"anchor_id\": \"FILE1_Z0_XY1\", "
             "\"type\": 1, \"desc\": \"\", \"options\": {}, \"default_option_id\": \"\"}},\n"
             " \"file\": {\"1\": {\"fid\": \"1\", \"fname\": \"img0.png\", \"type\": 2, \"loc\": "
             "%d, \"src\": \"img0.png\"}, \"2\": {\"fid\": \"2\", \"fname\": \"img1.png\", "
             "\"type\": 2, \"loc\": %d, \"src\": \"img1.png\"}},\n"
             " \"view\": {\"1\": {\"fid_list\": [\"1\"]}, \"2\": {\"fid_list\": [\"2\"]}},\n"
             " \"metadata\": {\"1_a\": {\"vid\": \"1\", \"flg\": 0, \"z\": [], \"xy\": [2, 16, "
             "16, 24, 24], \"av\": {\"1\": \"benign\"}}, \"2_b\": {\"vid\": \"2\", \"flg\": 0, "
             "\"z\": [], \"xy\": [2, 16, 16, 24, 24], \"av\": {\"1\": \"malignant\"}}}}\n",
             loc, esc, loc, loc);
    put_text(dir, name, text);
}

static const char *const CLASSES[] = {"BG", "benign", "malignant"};

static mr_status load(const char *path, const char *root, mr_annotations *a) {
    mr_load_options o = {.class_names = CLASSES, .n_class_names = 3, .image_root = root};
    return mr_annotations_load(path, &o, a);
}

/* ---- 1. VIA's default path and per-file paths ---------------------------------------------- */

/* The default paths a project brings from another machine. */
static const char *const FOREIGN[] = {
    "C:\\Users\\sono\\Desktop\\BUS scans\\",
    "/home/radiologist/studies/",
    "https://example.org/bus%20scans/",
};

/* Images beside the annotation file: found, and the note says so once. */
static void expect_found_beside(const char *project, const char *dir, const char *prefix) {
    mr_annotations a;
    cr_assert_eq(load(project, NULL, &a), MR_OK, "%s (default path %s)", mr_last_error(), prefix);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(a.records[0].width, 64);
    cr_assert_eq(a.records[1].n_instances, 1);
    const char *note = a.report.images_note;
    cr_assert_not_null(note, "no note on where the images were found (default path %s)", prefix);
    cr_assert(strstr(note, "2 of 2 images found") && strstr(note, "beside the annotation file") &&
                  strstr(note, dir),
              "%s", note);
    cr_assert(!strchr(note, '\n'), "one line: %s", note);
    mr_annotations_free(&a);
}

/* Images only under an image root: not found without it, found with it. */
static void expect_found_under_root(const char *project, const char *root, const char *prefix) {
    mr_annotations a;
    cr_assert_eq(load(project, NULL, &a), MR_ERR_IO, "default path %s", prefix);
    cr_assert(strstr(mr_last_error(), "--image-root"), "%s", mr_last_error());
    mr_annotations_free(&a);
    cr_assert_eq(load(project, root, &a), MR_OK, "%s (default path %s)", mr_last_error(), prefix);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(a.records[1].height, 64);
    cr_assert(strstr(a.report.images_note, "2 under the image root") &&
                  strstr(a.report.images_note, root),
              "%s", a.report.images_note);
    mr_annotations_free(&a);
}

Test(data_paths, via2_default_path_from_another_machine) {
    for (size_t k = 0; k < sizeof FOREIGN / sizeof FOREIGN[0]; k++) {
        char dir[256], root[512], ann[512], project[1024];
        snprintf(dir, sizeof dir, "%s", temp_dir("via2-default"));
        snprintf(ann, sizeof ann, "%s/ann", dir);
        snprintf(root, sizeof root, "%s/images", dir);
        make_dir(ann);
        make_dir(root);
        /* Beside the annotation file. */
        put_png(dir, "img0.png");
        put_png(dir, "img1.png");
        put_via2_project(dir, "project.json", FOREIGN[k], 2, 16);
        snprintf(project, sizeof project, "%s/project.json", dir);
        expect_found_beside(project, dir, FOREIGN[k]);
        /* Only under the image root. */
        put_png(root, "img0.png");
        put_png(root, "img1.png");
        put_via2_project(ann, "project.json", FOREIGN[k], 2, 16);
        snprintf(project, sizeof project, "%s/project.json", ann);
        expect_found_under_root(project, root, FOREIGN[k]);
    }
}

Test(data_paths, via3_loc_prefix_from_another_machine) {
    for (size_t k = 0; k < sizeof FOREIGN / sizeof FOREIGN[0]; k++) {
        const int loc = strstr(FOREIGN[k], "://") ? 2 : 1; /* VIA 3: LOCAL 1, URIHTTP 2 */
        char dir[256], root[512], ann[512], project[1024];
        snprintf(dir, sizeof dir, "%s", temp_dir("via3-default"));
        snprintf(ann, sizeof ann, "%s/ann", dir);
        snprintf(root, sizeof root, "%s/images", dir);
        make_dir(ann);
        make_dir(root);
        put_png(dir, "img0.png");
        put_png(dir, "img1.png");
        put_via3_project(dir, "project.json", FOREIGN[k], loc);
        snprintf(project, sizeof project, "%s/project.json", dir);
        expect_found_beside(project, dir, FOREIGN[k]);
        put_png(root, "img0.png");
        put_png(root, "img1.png");
        put_via3_project(ann, "project.json", FOREIGN[k], loc);
        snprintf(project, sizeof project, "%s/project.json", ann);
        expect_found_under_root(project, root, FOREIGN[k]);
    }
}

Test(data_paths, per_file_foreign_paths_fall_back_to_the_base_name) {
    const char *dir = temp_dir("per-file");
    put_png(dir, "a (1).png");
    put_png(dir, "b.png");
    put_text(dir, "via.json",
             "{\"a1\": {\"filename\": \"C:\\\\scans\\\\BUS\\\\a (1).png\", \"size\": -1, "
             "\"regions\": []},\n"
             " \"b1\": {\"filename\": \"/home/radiologist/studies/b.png\", \"size\": -1, "
             "\"regions\": []}}\n");
    char path[1024];
    snprintf(path, sizeof path, "%s/via.json", dir);
    mr_annotations a;
    cr_assert_eq(load(path, NULL, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.n, 2);
    cr_assert_str_eq(a.records[0].filename, "C:\\scans\\BUS\\a (1).png");
    cr_assert(strstr(a.records[0].path, "/a (1).png") && a.records[0].width == 64, "%s",
              a.records[0].path);
    cr_assert(strstr(a.report.images_note, "2 beside the annotation file"), "%s",
              a.report.images_note);
    mr_annotations_free(&a);
}

Test(data_paths, cli_names_the_root_once_with_image_root_or_config_key) {
    char dir[256], ann[512], root[512], out[32768], args[4096], cfg[1024], extra[1200];
    snprintf(dir, sizeof dir, "%s", temp_dir("root-cli"));
    snprintf(ann, sizeof ann, "%s/ann", dir);
    snprintf(root, sizeof root, "%s/scans", dir);
    make_dir(ann);
    make_dir(root);
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof name, "img%d.png", i);
        put_png(root, name);
    }
    put_via2_project(ann, "project.json", FOREIGN[0], 5, 16);
    snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
    put_config(cfg, true, NULL);
    snprintf(args, sizeof args,
             "check-data --config '%s' --data '%s/project.json' --image-root '%s'", cfg, ann, root);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 0, "%s", out);
    cr_assert_eq(count_substr(out, "5 under the image root"), 1, "%s", out);
    cr_assert(strstr(out, "is not on this machine"), "%s", out);
    /* IMAGE_ROOT in the config, relative to the config's folder, says the same. */
    snprintf(extra, sizeof extra, ", \"IMAGE_ROOT\": \"scans\"");
    put_config(cfg, true, extra);
    snprintf(args, sizeof args, "check-data --config '%s' --data '%s/project.json'", cfg, ann);
    cr_assert_eq(run_in("/", args, out, sizeof out), 0, "%s", out);
    cr_assert_eq(count_substr(out, "5 under the image root"), 1, "%s", out);
    /* Every verb that reads data takes --image-root. */
    const char *verbs[] = {"train", "evaluate", "anchors"};
    for (int v = 0; v < 3; v++) {
        snprintf(args, sizeof args, "%s --help", verbs[v]);
        run_in(dir, args, out, sizeof out);
        cr_assert(strstr(out, "--image-root") && strstr(out, "--val-split") &&
                      strstr(out, "--data"),
                  "%s: %s", verbs[v], out);
    }
}

/* ---- 2. flat folders ----------------------------------------------------------------------- */

/* A flat folder as VIA exports it: images and one project saved on Windows. */
static void make_flat(const char *dir, int n) {
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "img%d.png", i);
        put_png(dir, name);
    }
    put_via2_project(dir, "bus_project.json", FOREIGN[0], n, 16);
}

Test(data_paths, flat_folder_trains_end_to_end_through_the_cli, .timeout = 240) {
    char dir[256], flat[512], cfg[512], run[512], args[4096];
    static char out[1 << 17];
    snprintf(dir, sizeof dir, "%s", temp_dir("flat-train"));
    snprintf(flat, sizeof flat, "%s/BUS export", dir); /* a space, as Windows folders have */
    snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    make_dir(flat);
    make_flat(flat, 5);
    put_config(cfg, true, NULL);

    snprintf(args, sizeof args, "check-data --config '%s' --data '%s'", cfg, flat);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "split: 4 for training, 1 held out for validation"), "%s", out);
    cr_assert(strstr(out, "verdict: train will accept this data"), "%s", out);

    snprintf(args, sizeof args, "train --config '%s' --data '%s' --epochs 1 --out '%s'", cfg, flat,
             run);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 0, "%s", out);
    cr_assert_eq(count_substr(out, "4 for training, 1 held out for validation"), 1, "%s", out);
    cr_assert_eq(count_substr(out, "5 beside the annotation file"), 1,
                 "the root used, said once: %s", out);
    cr_assert(strstr(out, "trained 1 epoch;"), "%s", out);
    /* The run records absolute paths and the split, so resume and evaluate find them. */
    char path[1024], real[PATH_MAX];
    snprintf(path, sizeof path, "%s/config.json", run);
    char *json = read_text(path);
    cr_assert_not_null(realpath(flat, real));
    char want[PATH_MAX + 32];
    snprintf(want, sizeof want, "\"TRAIN\":\t\"%s\"", real);
    cr_assert(strstr(json, want), "%s not in %s", want, json);
    cr_assert(strstr(json, "\"VALIDATION_SPLIT\":\t0.2"), "%s", json);
    free(json);

    /* --val-split sets the share. */
    snprintf(args, sizeof args, "check-data --config '%s' --data '%s' --val-split 0.4", cfg, flat);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "split: 3 for training, 2 held out for validation"), "%s", out);
}

Test(data_paths, resolve_reads_parents_sides_flat_folders_and_files) {
    char dir[256], p[2048], real[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", temp_dir("resolve"));
    cr_assert_not_null(realpath(dir, real));
    snprintf(p, sizeof p, "%s/train", dir);
    make_dir(p);
    snprintf(p, sizeof p, "%s/val", dir);
    make_dir(p);
    mr_config c;
    char want[PATH_MAX + 16];
    const char *forms[] = {dir, p}; /* the parent, and its val/ standing for it */
    for (int k = 0; k < 2; k++) {
        mr_config_defaults(&c);
        mr_data_args a = {.data = forms[k]};
        cr_assert_eq(mr_data_resolve(&c, &a), MR_OK, "%s", mr_last_error());
        snprintf(want, sizeof want, "%s/train", real);
        cr_assert_str_eq(c.train_data, want);
        snprintf(want, sizeof want, "%s/val", real);
        cr_assert_str_eq(c.val_data, want);
    }
    /* A flat folder and a file: one set, split by --val-split. */
    char flat[1024];
    snprintf(flat, sizeof flat, "%s/flat", dir);
    make_dir(flat);
    make_flat(flat, 2);
    snprintf(p, sizeof p, "%s/bus_project.json", flat);
    const char *one[] = {flat, p};
    for (int k = 0; k < 2; k++) {
        mr_config_defaults(&c);
        mr_data_args a = {.data = one[k], .has_val_split = true, .val_split = 0.5f};
        cr_assert_eq(mr_data_resolve(&c, &a), MR_OK, "%s", mr_last_error());
        cr_assert_not_null(realpath(one[k], real));
        cr_assert_str_eq(c.train_data, real);
        cr_assert_str_eq(c.val_data, "");
        cr_assert_float_eq(c.validation_split, 0.5f, 1e-6);
    }
    mr_config_defaults(&c);
    cr_assert_float_eq(c.validation_split, 0.2f, 1e-6, "the default share");
    mr_data_args bad = {.data = "/nonexistent/bus"};
    cr_assert_eq(mr_data_resolve(&c, &bad), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "/nonexistent/bus") &&
                  strstr(mr_last_error(), "a folder with train/ and val/"),
              "%s", mr_last_error());
    mr_data_args split = {.data = flat, .has_val_split = true, .val_split = 0.95f};
    cr_assert_eq(mr_data_resolve(&c, &split), MR_ERR_ARG);
}

/* ---- 3. check-data checks what train will meet --------------------------------------------- */

Test(data_paths, truncated_png_is_caught_by_check_data) {
    char dir[256], cfg[512], path[1024], args[4096], out[32768];
    snprintf(dir, sizeof dir, "%s", temp_dir("truncated"));
    make_flat(dir, 4);
    snprintf(path, sizeof path, "%s/img2.png", dir);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(truncate(path, sb.st_size / 2), 0);
    snprintf(cfg, sizeof cfg, "%s.json", dir); /* beside the folder, not in it */
    test_leftovers(cfg);
    put_config(cfg, true, NULL);
    snprintf(args, sizeof args, "check-data --config '%s' --data '%s'", cfg, dir);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "error: ") && strstr(out, "img2.png"), "%s", out);
    cr_assert(strstr(out, "image files: 3 images: PNG 8-bit gray"), "each kind once: %s", out);
    /* Train refuses it before the first step, for the same reason. */
    snprintf(args, sizeof args, "train --config '%s' --data '%s' --epochs 1 --out '%s/run'", cfg,
             dir, dir);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "img2.png") && !strstr(out, "step 1/"), "%s", out);
}

Test(data_paths, file_size_differing_from_the_via_key_is_a_warning) {
    const char *dir = temp_dir("size");
    put_png(dir, "a.png");
    put_png(dir, "b.png");
    char path[1024];
    snprintf(path, sizeof path, "%s/a.png", dir);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    char text[1024];
    snprintf(text, sizeof text,
             "{\"a.png%lld\": {\"filename\": \"a.png\", \"size\": %lld, \"regions\": []},"
             " \"b.png7\": {\"filename\": \"b.png\", \"regions\": []}}", /* size in the key */
             (long long)sb.st_size, (long long)sb.st_size);
    put_text(dir, "via.json", text);
    snprintf(path, sizeof path, "%s/via.json", dir);
    mr_annotations a;
    cr_assert_eq(load(path, NULL, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.report.n_warnings, 1);
    cr_assert(strstr(a.report.issues[0].text, "b.png") &&
                  strstr(a.report.issues[0].text, "records 7"),
              "%s", a.report.issues[0].text);
    mr_annotations_free(&a);
}

Test(data_paths, check_data_and_train_agree_on_classes) {
    char dir[256], cfg[512], args[4096], a[2048], b[2048];
    static char out[1 << 16];
    snprintf(dir, sizeof dir, "%s", temp_dir("agree"));
    make_flat(dir, 3);
    snprintf(cfg, sizeof cfg, "%s-three.json", dir);
    test_leftovers(cfg);
    put_config(cfg, false, NULL); /* NUM_CLASSES 3, no CLASS_NAMES */
    snprintf(args, sizeof args, "check-data --config '%s' --data '%s'", cfg, dir);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 1, "%s", out);
    last_line(out, a, sizeof a);
    snprintf(args, sizeof args, "train --config '%s' --data '%s' --epochs 1 --out '%s/run'", cfg,
             dir, dir);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 1, "%s", out);
    last_line(out, b, sizeof b);
    /* The same message after each verb's own "mrcnn VERB: " prefix. */
    cr_assert(!strncmp(a, "mrcnn check-data: ", 18) && !strncmp(b, "mrcnn train: ", 13), "%s\n%s",
              a, b);
    cr_assert_str_eq(a + 18, b + 13, "check-data and train refuse with the same message");
    cr_assert(strstr(a, "NUM_CLASSES is 3 but CLASS_NAMES is not given"), "%s", a);
}

Test(data_paths, region_wholly_outside_its_image_is_an_error_in_both) {
    char dir[256], cfg[512], args[4096], a[2048], b[2048], path[1024];
    static char out[1 << 16];
    snprintf(dir, sizeof dir, "%s", temp_dir("outside"));
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "img%d.png", i);
        put_png(dir, name);
    }
    put_via2_project(dir, "bus_project.json", "", 3, 300); /* img2's lesion at x = 300 */
    snprintf(path, sizeof path, "%s/bus_project.json", dir);
    mr_annotations ann;
    cr_assert_eq(load(path, NULL, &ann), MR_ERR_FORMAT);
    cr_assert_eq(ann.report.n_outside, 1);
    cr_assert(strstr(mr_last_error(), "img2.png") &&
                  strstr(mr_last_error(), "wholly outside the 64x64 image"),
              "%s", mr_last_error());
    mr_annotations_free(&ann);
    snprintf(cfg, sizeof cfg, "%s.json", dir);
    test_leftovers(cfg);
    put_config(cfg, true, NULL);
    snprintf(args, sizeof args, "check-data --config '%s' --data '%s'", cfg, dir);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "error: ") && strstr(out, "wholly outside"), "%s", out);
    last_line(out, a, sizeof a);
    snprintf(args, sizeof args, "train --config '%s' --data '%s' --epochs 1 --out '%s/run'", cfg,
             dir, dir);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 1, "%s", out);
    last_line(out, b, sizeof b);
    cr_assert(strstr(a, "wholly outside") && strstr(b, "wholly outside"), "%s\n%s", a, b);
}

Test(data_paths, many_missing_images_are_grouped) {
    char dir[256], path[1024], args[4096];
    static char out[1 << 16];
    snprintf(dir, sizeof dir, "%s", temp_dir("missing"));
    char text[16384] = "{";
    for (int i = 0; i < 40; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text),
                 "%s\"scan%02d.png-1\": {\"filename\": \"scan%02d.png\", \"size\": -1, "
                 "\"regions\": [{\"shape_attributes\": {\"name\": \"rect\", \"x\": 1, \"y\": 1, "
                 "\"width\": 5, \"height\": 5}, \"region_attributes\": {\"class\": \"cyst\"}}]}",
                 i ? ", " : "", i, i);
    strcat(text, "}");
    put_text(dir, "via.json", text);
    snprintf(path, sizeof path, "%s/via.json", dir);
    mr_annotations a;
    cr_assert_eq(load(path, NULL, &a), MR_ERR_IO);
    const mr_report *r = &a.report;
    cr_assert_eq(r->n_errors, 80, "every problem counted");
    cr_assert_eq(r->n_issues, 2, "two distinct problems, one line each");
    cr_assert_eq(r->issues[0].count, 40);
    cr_assert(strstr(r->issues[0].text, "40 of 40 images not found beside the annotation file") &&
                  strstr(r->issues[0].text, "first three: 'scan00.png', 'scan01.png', "
                                            "'scan02.png'") &&
                  strstr(r->issues[0].text, "--image-root"),
              "%s", r->issues[0].text);
    cr_assert(strstr(r->issues[1].text, "40 regions with unknown class 'cyst'"), "%s",
              r->issues[1].text);
    mr_annotations_free(&a);
    snprintf(args, sizeof args, "check-data --classes benign,malignant --data '%s'", path);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 1, "%s", out);
    cr_assert_eq(count_substr(out, "error: "), 2, "%s", out);
    cr_assert_eq(count_substr(out, "scan07.png"), 0, "only the first three are named: %s", out);
}

/* ---- 4. relative paths follow the config --------------------------------------------------- */

Test(data_paths, relative_dataset_resolves_against_the_config_folder) {
    char dir[256], cfgdir[512], data[512], cfg[1024], args[4096], real[PATH_MAX];
    static char out[1 << 16];
    snprintf(dir, sizeof dir, "%s", temp_dir("relative"));
    snprintf(cfgdir, sizeof cfgdir, "%s/configs", dir);
    snprintf(data, sizeof data, "%s/data", dir);
    make_dir(cfgdir);
    make_dir(data);
    make_flat(data, 3);
    snprintf(cfg, sizeof cfg, "%s/tiny.json", cfgdir);
    put_config(cfg, true, ", \"DATASET\": {\"TRAIN\": \"../data\", \"VAL\": \"\"}");
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load(cfg, &c), MR_OK, "%s", mr_last_error());
    cr_assert_not_null(realpath(dir, real));
    char want[PATH_MAX + 16];
    snprintf(want, sizeof want, "%s/configs/../data", real);
    cr_assert_str_eq(c.train_data, want);
    /* From another folder, check-data finds the data through the config alone. */
    snprintf(args, sizeof args, "check-data --config '%s'", cfg);
    cr_assert_eq(run_in("/", args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "images: 3") && strstr(out, "bus_project.json"), "%s", out);
}

/* ---- evaluate --data reads the validation images ------------------------------------------- */

Test(data_paths, evaluate_data_parent_uses_the_validation_split) {
    char dir[256], cfg[512], pred[512], sub[512], args[4096];
    static char out[1 << 17];
    snprintf(dir, sizeof dir, "%s", temp_dir("eval-parent"));
    snprintf(pred, sizeof pred, "%s/predictions", dir);
    make_dir(pred); /* predictions for another image only: every image scores as without */
    put_text(pred, "other_pred.json",
             "{\"image\": \"other.png\", \"width\": 64, \"height\": 64, \"detections\": []}\n");
    snprintf(sub, sizeof sub, "%s/train", dir);
    make_dir(sub);
    make_flat(sub, 4);
    snprintf(sub, sizeof sub, "%s/val", dir);
    make_dir(sub);
    make_flat(sub, 2);
    snprintf(cfg, sizeof cfg, "%s/tiny.json", dir);
    put_config(cfg, true, NULL);
    snprintf(args, sizeof args, "evaluate --predictions '%s' --config '%s' --data '%s'", pred, cfg,
             dir);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "the 2 validation images of ") && strstr(out, "/val/bus_project.json"),
              "%s", out);
    cr_assert(strstr(out, "2 annotated images have no prediction file"), "%s", out);
    /* A flat folder: the images training held out; --split all: every one. */
    snprintf(sub, sizeof sub, "%s/flat", dir);
    make_dir(sub);
    make_flat(sub, 5);
    snprintf(args, sizeof args, "evaluate --predictions '%s' --config '%s' --data '%s'", pred, cfg,
             sub);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "the 1 of 5 images of ") && strstr(out, "held out for validation"), "%s",
              out);
    snprintf(args, sizeof args, "evaluate --predictions '%s' --config '%s' --data '%s' --split all",
             pred, cfg, sub);
    cr_assert_eq(run_in(dir, args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "all 5 images of "), "%s", out);
}

/* ---- the check-data report as a library call (train/data_source.h) ------------------------ */

static char *check_report(const mr_config *cfg, mr_status *st) {
    mr_data_check chk;
    *st = mr_data_check_load(cfg, NULL, &chk);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cr_assert_not_null(out);
    mr_data_check_print(&chk, *st, cfg, out);
    fclose(out);
    mr_data_check_free(&chk);
    return text;
}

Test(data_paths, check_data_report_and_verdict_from_the_library) {
    char dir[256], path[1024];
    snprintf(dir, sizeof dir, "%s", temp_dir("check-lib"));
    make_flat(dir, 5);
    mr_config *cfg = malloc(sizeof *cfg);
    mr_config_defaults(cfg);
    cr_assert_eq(mr_data_set_classes(cfg, "BG, benign ,malignant"), MR_OK, "%s", mr_last_error());
    cr_assert_eq(cfg->net.num_classes, 3);
    cr_assert_str_eq(cfg->class_names[1], "benign");
    cr_assert_str_eq(cfg->class_names[2], "malignant");
    const mr_data_args args = {.data = dir};
    cr_assert_eq(mr_data_resolve(cfg, &args), MR_OK, "%s", mr_last_error());
    mr_status st;
    char *text = check_report(cfg, &st);
    cr_assert_eq(st, MR_OK, "%s", text);
    cr_assert(strstr(text, "training + validation data: ") && strstr(text, "images: 5") &&
                  strstr(text, "split: 4 for training, 1 held out for validation") &&
                  strstr(text, "verdict: train will accept this data (0 warnings)"),
              "%s", text);
    free(text);

    /* A truncated image: the error listed and counted in the verdict. */
    snprintf(path, sizeof path, "%s/img3.png", dir);
    cr_assert_eq(truncate(path, 40), 0);
    text = check_report(cfg, &st);
    cr_assert_neq(st, MR_OK);
    cr_assert(strstr(text, "error: ") && strstr(text, "img3.png"), "%s", text);
    cr_assert(strstr(text, "verdict: 1 error; train would stop on it"), "%s", text);
    free(text);

    /* --classes mistakes are one line naming the option. */
    cr_assert_eq(mr_data_set_classes(cfg, " , BG"), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "--classes lists no class"), "%s", mr_last_error());
    char many[2048] = "";
    for (int i = 0; i < MR_MAX_CLASSES + 1; i++) strcat(many, "c,");
    cr_assert_eq(mr_data_set_classes(cfg, many), MR_ERR_ARG);
    free(cfg);
}

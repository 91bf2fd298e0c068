/* Tests for data/synth.c and `mrcnn synth`'s output: byte-identical output for a seed, file
 * counts, VIA JSON that parses, polygons whose rasterised masks are plausible and inside the
 * image, and the class geometry (benign wider than tall, malignant taller than wide). */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../data/image.h"
#include "../data/raster.h"
#include "../data/synth.h"
#include "testutil.h"

/* snprintf that fails the test instead of truncating a path. */
#define FMT(buf, ...) cr_assert_lt(snprintf(buf, sizeof buf, __VA_ARGS__), (int)sizeof buf)

static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* Sorted names of the files in a folder. */
static int list_dir(const char *dir, char names[][64], int cap) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && n < cap)
            cr_assert_lt(snprintf(names[n++], 64, "%s", e->d_name), 64);
    closedir(d);
    qsort(names, (size_t)n, 64, (int (*)(const void *, const void *))strcmp);
    return n;
}

/* Runs `$MRCNN_BIN verb args` (set by `make test`) and returns its exit code, output in `out`. */
static int run_cli(const char *verb, const char *args, char *out, size_t n) {
    const char *bin = getenv("MRCNN_BIN");
    if (!bin || access(bin, X_OK) != 0) cr_skip_test("MRCNN_BIN not set: mrcnn %s not run", verb);
    char cmd[8192];
    cr_assert_lt(snprintf(cmd, sizeof cmd, "'%s' %s %s 2>&1", bin, verb, args), (int)sizeof cmd);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void write_set(const char *dir, int n, uint64_t seed) {
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.out_dir = dir;
    o.n_images = n;
    o.seed = seed;
    o.size = 128;
    cr_assert_eq(mr_synth_write(&o), MR_OK, "%s", mr_last_error());
}

Test(synth, same_seed_same_bytes) {
    char a[256], b[256], c[256];
    FMT(a, "%s/a", temp_dir("synth"));
    FMT(b, "%s/b", temp_dir("synth"));
    FMT(c, "%s/c", temp_dir("synth"));
    write_set(a, 12, 42);
    write_set(b, 12, 42);
    write_set(c, 12, 43);
    static char na[64][64], nb[64][64];
    int files = 0, differs = 0;
    for (int split = 0; split < 2; split++) {
        char da[300], db[300], dc[300];
        const char *sp = split ? "val" : "train";
        FMT(da, "%s/%s", a, sp);
        FMT(db, "%s/%s", b, sp);
        FMT(dc, "%s/%s", c, sp);
        int n = list_dir(da, na, 64);
        cr_assert_eq(list_dir(db, nb, 64), n);
        for (int i = 0; i < n; i++) {
            cr_assert_str_eq(na[i], nb[i]);
            char pa[400], pb[400], pc[400];
            FMT(pa, "%s/%s", da, na[i]);
            FMT(pb, "%s/%s", db, nb[i]);
            FMT(pc, "%s/%s", dc, na[i]);
            long la, lb, lc = -1;
            char *xa = slurp(pa, &la), *xb = slurp(pb, &lb), *xc = slurp(pc, &lc);
            cr_assert(xa && xb);
            cr_assert_eq(la, lb, "%s: sizes differ", pa);
            cr_assert_eq(memcmp(xa, xb, (size_t)la), 0, "%s differs between two runs", na[i]);
            if (!xc || lc != la || memcmp(xa, xc, (size_t)la) != 0) differs++;
            free(xa);
            free(xb);
            free(xc);
            files++;
        }
    }
    cr_assert_eq(files, 12 + 2, "12 PNGs and two JSON files");
    cr_assert_gt(differs, 10, "another seed gives other images");
}

Test(synth, image_does_not_depend_on_set_size) {
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.size = 96;
    mr_synth_sample s1, s2;
    cr_assert_eq(mr_synth_generate(&o, 5, &s1), MR_OK);
    o.n_images = 7;
    cr_assert_eq(mr_synth_generate(&o, 5, &s2), MR_OK);
    cr_assert_eq(memcmp(s1.image.pixels, s2.image.pixels, 96 * 96), 0);
    cr_assert_eq(s1.n_lesions, s2.n_lesions);
    mr_synth_sample_free(&s1);
    mr_synth_sample_free(&s2);
}

typedef struct {
    int images, normal, benign_regions, malignant_regions;
    double benign_aspect_sum, malignant_aspect_sum; /* width / height of the bounding box */
} tally;

static void check_json(const char *dir, int size, int n_png, tally *t) {
    char path[400];
    FMT(path, "%s/via_region_data.json", dir);
    char *text = slurp(path, NULL);
    cr_assert_not_null(text, "%s missing", path);
    cJSON *root = cJSON_Parse(text);
    cr_assert_not_null(root, "%s does not parse", path);
    cr_assert_eq(cJSON_GetArraySize(root), n_png, "%s: one entry per PNG", path);
    uint8_t *mask = malloc((size_t)size * size);
    const cJSON *img;
    cJSON_ArrayForEach(img, root) {
        const char *fn = cJSON_GetStringValue(cJSON_GetObjectItem(img, "filename"));
        cr_assert_not_null(fn);
        double bytes = cJSON_GetNumberValue(cJSON_GetObjectItem(img, "size"));
        char key[128], png[400];
        FMT(key, "%s%.0f", fn, bytes);
        cr_assert_str_eq(img->string, key, "VIA key is filename + size");
        FMT(png, "%s/%s", dir, fn);
        long len;
        char *data = slurp(png, &len);
        cr_assert_not_null(data, "%s listed but missing", png);
        free(data);
        cr_assert_eq((double)len, bytes, "%s: size is the file's byte count", fn);
        int w, h;
        cr_assert_eq(mr_image_size(png, &w, &h), MR_OK);
        cr_assert(w == size && h == size);

        const cJSON *regions = cJSON_GetObjectItem(img, "regions");
        const cJSON *fa = cJSON_GetObjectItem(img, "file_attributes");
        cr_assert(cJSON_IsArray(regions) && cJSON_IsObject(fa));
        const char *label = cJSON_GetStringValue(cJSON_GetObjectItem(fa, "label"));
        int nr = cJSON_GetArraySize(regions);
        t->images++;
        if (nr == 0) {
            cr_assert(label && !strcmp(label, "normal"), "%s: no region and not labelled normal",
                      fn);
            t->normal++;
        } else {
            cr_assert_null(label, "lesion images have empty file_attributes");
        }
        cr_assert_leq(nr, MR_SYNTH_MAX_LESIONS);
        const cJSON *r;
        cJSON_ArrayForEach(r, regions) {
            const cJSON *sa = cJSON_GetObjectItem(r, "shape_attributes");
            cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(sa, "name")), "polygon");
            const cJSON *ax = cJSON_GetObjectItem(sa, "all_points_x");
            const cJSON *ay = cJSON_GetObjectItem(sa, "all_points_y");
            int n = cJSON_GetArraySize(ax);
            cr_assert(n >= 3 && n == cJSON_GetArraySize(ay));
            double *xs = malloc((size_t)n * sizeof *xs), *ys = malloc((size_t)n * sizeof *ys);
            double x0 = 1e9, x1 = -1e9, y0 = 1e9, y1 = -1e9;
            for (int i = 0; i < n; i++) {
                const cJSON *vx = cJSON_GetArrayItem(ax, i), *vy = cJSON_GetArrayItem(ay, i);
                cr_assert(cJSON_IsNumber(vx) && cJSON_IsNumber(vy));
                xs[i] = vx->valuedouble;
                ys[i] = vy->valuedouble;
                cr_assert_eq(xs[i], floor(xs[i]), "integer coordinates");
                cr_assert_eq(ys[i], floor(ys[i]), "integer coordinates");
                cr_assert(xs[i] >= 0 && xs[i] < size && ys[i] >= 0 && ys[i] < size,
                          "%s: vertex (%g, %g) outside the image", fn, xs[i], ys[i]);
                x0 = fmin(x0, xs[i]), x1 = fmax(x1, xs[i]);
                y0 = fmin(y0, ys[i]), y1 = fmax(y1, ys[i]);
            }
            memset(mask, 0, (size_t)size * size);
            int64_t area = mr_raster_polygon(mask, size, size, xs, ys, n, 1);
            /* Lesions are 15-35% of the width: an area between a thin sliver of the smallest
             * and the box of the largest. */
            double min_area = 0.3 * (0.15 * size) * (0.15 * size) * 0.5;
            cr_assert(area >= min_area && area <= (x1 - x0 + 1) * (y1 - y0 + 1),
                      "%s: implausible lesion area %lld", fn, (long long)area);
            cr_assert_leq(area, (int64_t)size * size / 2);
            const char *cls = cJSON_GetStringValue(
                cJSON_GetObjectItem(cJSON_GetObjectItem(r, "region_attributes"), "class"));
            cr_assert_not_null(cls);
            double aspect = (x1 - x0 + 1) / (y1 - y0 + 1);
            if (!strcmp(cls, "benign")) {
                t->benign_regions++;
                t->benign_aspect_sum += aspect;
            } else {
                cr_assert_str_eq(cls, "malignant");
                t->malignant_regions++;
                t->malignant_aspect_sum += aspect;
            }
            free(xs);
            free(ys);
        }
    }
    free(mask);
    cJSON_Delete(root);
    free(text);
}

Test(synth, files_json_polygons_and_classes) {
    char dir[256];
    FMT(dir, "%s/set", temp_dir("synth"));
    write_set(dir, 40, 7);
    static char names[64][64];
    tally t = {0};
    int total = 0;
    for (int split = 0; split < 2; split++) {
        char d[300];
        FMT(d, "%s/%s", dir, split ? "val" : "train");
        int n = list_dir(d, names, 64);
        int png = 0;
        for (int i = 0; i < n; i++) png += strstr(names[i], ".png") != NULL;
        cr_assert_eq(png, n - 1, "%s: PNGs plus via_region_data.json only", d);
        cr_assert_eq(png, split ? 8 : 32, "val fraction 0.2 of 40 images");
        check_json(d, 128, png, &t);
        total += png;
    }
    cr_assert_eq(t.images, 40);
    cr_assert(t.normal >= 2 && t.normal <= 16, "about 20%% normal, got %d of 40", t.normal);
    cr_assert_geq(t.benign_regions, 5);
    cr_assert_geq(t.malignant_regions, 5);
    double benign_aspect = t.benign_aspect_sum / t.benign_regions;
    double malignant_aspect = t.malignant_aspect_sum / t.malignant_regions;
    cr_assert_gt(benign_aspect, 1.1, "benign wider than tall (mean w/h %.2f)", benign_aspect);
    cr_assert_lt(malignant_aspect, 0.9, "malignant taller than wide (mean w/h %.2f)",
                 malignant_aspect);
}

Test(synth, lesion_is_darker_than_its_surroundings) {
    /* The outline is the drawn lesion: pixels inside are hypoechoic compared with a ring just
     * outside, for every lesion of a few images. */
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.normal_fraction = 0.0;
    int checked = 0;
    for (int idx = 0; idx < 8; idx++) {
        mr_synth_sample s;
        cr_assert_eq(mr_synth_generate(&o, idx, &s), MR_OK);
        int n = o.size;
        uint8_t *m = calloc((size_t)n * n, 1);
        for (int k = 0; k < s.n_lesions; k++) {
            const mr_synth_lesion *l = &s.lesions[k];
            double xs[256], ys[256];
            for (int i = 0; i < l->n_points; i++) xs[i] = l->xs[i], ys[i] = l->ys[i];
            memset(m, 0, (size_t)n * n);
            mr_raster_polygon(m, n, n, xs, ys, l->n_points, 1);
            double in = 0, out = 0;
            int nin = 0, nout = 0;
            for (int y = 3; y < n - 3; y++)
                for (int x = 3; x < n - 3; x++) {
                    size_t i = (size_t)y * n + x;
                    if (m[i]) {
                        in += s.image.pixels[i], nin++;
                    } else if (m[i - 3] || m[i + 3] || m[i - 3 * n] || m[i + 3 * n]) {
                        out += s.image.pixels[i], nout++;
                    }
                }
            cr_assert(nin > 0 && nout > 0);
            cr_assert_lt(in / nin, 0.75 * out / nout, "image %d lesion %d: inside %.1f, ring %.1f",
                         idx, k, in / nin, out / nout);
            checked++;
        }
        free(m);
        mr_synth_sample_free(&s);
    }
    cr_assert_geq(checked, 8);
}

Test(synth, bad_options_fail_cleanly) {
    mr_synth_options o;
    mr_synth_defaults(&o);
    cr_assert_eq(mr_synth_write(&o), MR_ERR_ARG, "no output folder");
    o.out_dir = temp_dir("synth");
    o.n_images = 0;
    cr_assert_eq(mr_synth_write(&o), MR_ERR_ARG);
    o.n_images = 3;
    o.val_fraction = 1.5;
    cr_assert_eq(mr_synth_write(&o), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "--val-fraction") != NULL, "%s", mr_last_error());
    o.val_fraction = 0.2;
    o.lesion_min = 0.5;
    o.lesion_max = 0.3;
    cr_assert_eq(mr_synth_write(&o), MR_ERR_ARG);
    mr_synth_defaults(&o);
    o.out_dir = "/proc/cannot-create-here";
    cr_assert_eq(mr_synth_write(&o), MR_ERR_IO);
}

Test(synth, cli_writes_a_set_and_rejects_bad_arguments) {
    char dir[256], args[512], out[8192];
    FMT(dir, "%s/cli", temp_dir("synth"));
    FMT(args, "--out '%s' --images 5 --seed 9 --size 64", dir);
    cr_assert_eq(run_cli("synth", args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "wrote 5 images of 64x64 px"), "%s", out);
    cr_assert(strstr(out, "train 4, val 1"), "%s", out);
    cr_assert_eq(run_cli("synth", "--images 3", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--out DIR is required"), "%s", out);
    FMT(args, "--out '%s' --images 3 --val-fraction 1.5", dir);
    cr_assert_eq(run_cli("synth", args, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--val-fraction must be in [0, 1)"), "%s", out);
}

/* Tests for data/busi.c: the BUSI import on a generated folder with BUSI's names (spaces,
 * parentheses), multi-mask images, an RGBA mask, a hole, a normal image, a duplicate, and each
 * kind of bad input; its polygons give back the source blobs within 0.5% of their pixels (holes
 * filled). The mask-to-polygon step itself is tested in tests/test_raster.c. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/stat.h>

#include "../data/busi.h"
#include "../data/image.h"
#include "../data/raster.h"
#include "testutil.h"

#define FMT(buf, ...) cr_assert_lt(snprintf(buf, sizeof buf, __VA_ARGS__), (int)sizeof buf)

enum { W = 120, H = 100 };

/* ---- drawing helpers ------------------------------------------------------------------ */

static void disk(uint8_t *m, int w, int h, double cx, double cy, double rx, double ry, uint8_t v) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = (x - cx) / rx, dy = (y - cy) / ry;
            if (dx * dx + dy * dy <= 1.0) m[y * w + x] = v;
        }
}

static void rect(uint8_t *m, int w, int x0, int y0, int x1, int y1, uint8_t v) {
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) m[y * w + x] = v;
}

static int64_t count(const uint8_t *m, size_t n) {
    int64_t k = 0;
    for (size_t i = 0; i < n; i++) k += m[i] != 0;
    return k;
}

static double iou(const uint8_t *a, const uint8_t *b, size_t n) {
    int64_t inter = 0, uni = 0;
    for (size_t i = 0; i < n; i++) {
        inter += a[i] && b[i];
        uni += a[i] || b[i];
    }
    return uni ? (double)inter / (double)uni : 1.0;
}

static void raster(uint8_t *m, int w, int h, const double *xs, const double *ys, int n) {
    memset(m, 0, (size_t)w * h);
    mr_raster_polygon(m, w, h, xs, ys, n, 1);
}

/* ---- a BUSI folder --------------------------------------------------------------------- */

static void mkdir_or_fail(const char *path) {
    cr_assert(mkdir(path, 0777) == 0, "mkdir %s", path);
}

/* A 3-channel grey ultrasound-like picture, different for each `seed`. */
static void write_image(const char *path, int w, int h, uint32_t seed) {
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, w, h, 3), MR_OK);
    uint32_t s = seed * 2654435761u + 1;
    for (int i = 0; i < w * h; i++) {
        s = s * 1664525u + 1013904223u;
        uint8_t v = (uint8_t)(s >> 24);
        img.pixels[3 * i] = img.pixels[3 * i + 1] = img.pixels[3 * i + 2] = v;
    }
    cr_assert_eq(mr_image_write_png(path, &img), MR_OK);
    mr_image_free(&img);
}

/* Writes a 0/1 mask as a 0/255 PNG with 1, 3 or 4 channels. With 4 channels and
 * `transparent_bg`, background pixels are white and fully transparent. */
static void write_mask(const char *path, const uint8_t *m, int w, int h, int channels,
                       int transparent_bg) {
    uint8_t *px = malloc((size_t)w * h * channels);
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < channels; c++) {
            uint8_t v = m[i] ? 255 : 0;
            if (channels == 4 && c == 3)
                v = transparent_bg && !m[i] ? 0 : 255;
            else if (channels == 4 && transparent_bg && !m[i])
                v = 255;
            px[i * channels + c] = v;
        }
    mr_image img = {.width = w, .height = h, .channels = channels, .pixels = px};
    cr_assert_eq(mr_image_write_png(path, &img), MR_OK, "write %s: %s", path, mr_last_error());
    free(px);
}

static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    buf[n < 0 ? 0 : n] = '\0';
    if (len) *len = n;
    return buf;
}

/* The blobs each generated image should yield, to compare polygons against: with their holes
 * filled, which is what a polygon can hold. */
typedef struct {
    char name[64];
    const char *cls;
    int n_blobs;
    uint8_t *blobs[4];
} expected;

static expected exp_list[16];
static int n_exp;

static expected *expect(const char *name, const char *cls) {
    expected *e = &exp_list[n_exp++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->cls = cls;
    return e;
}

static uint8_t *blob_copy(const uint8_t *m) {
    uint8_t *b = malloc(W * H);
    memcpy(b, m, W * H);
    return b;
}

static void build_busi(const char *root) {
    char d[512], p[600];
    uint8_t m[W * H], part[W * H];
    n_exp = 0;
    FMT(d, "%s/benign", root);
    mkdir_or_fail(d);

    /* benign (1): two mask files, one blob each (grey and RGB masks). */
    expected *e = expect("benign (1).png", "benign");
    FMT(p, "%s/benign (1).png", d);
    write_image(p, W, H, 1);
    memset(m, 0, sizeof m);
    disk(m, W, H, 35, 40, 20, 12, 1);
    e->blobs[e->n_blobs++] = blob_copy(m);
    FMT(p, "%s/benign (1)_mask.png", d);
    write_mask(p, m, W, H, 1, 0);
    memset(m, 0, sizeof m);
    disk(m, W, H, 85, 65, 18, 10, 1);
    e->blobs[e->n_blobs++] = blob_copy(m);
    FMT(p, "%s/benign (1)_mask_1.png", d);
    write_mask(p, m, W, H, 3, 0);

    /* benign (2): one mask with two blobs and a speck. */
    e = expect("benign (2).png", "benign");
    FMT(p, "%s/benign (2).png", d);
    write_image(p, W, H, 2);
    memset(m, 0, sizeof m);
    memset(part, 0, sizeof part);
    disk(part, W, H, 30, 30, 15, 15, 1);
    e->blobs[e->n_blobs++] = blob_copy(part);
    disk(m, W, H, 30, 30, 15, 15, 1);
    memset(part, 0, sizeof part);
    rect(part, W, 70, 50, 105, 80, 1);
    e->blobs[e->n_blobs++] = blob_copy(part);
    rect(m, W, 70, 50, 105, 80, 1);
    rect(m, W, 5, 90, 6, 91, 1); /* 4 px: reported and skipped */
    FMT(p, "%s/benign (2)_mask.png", d);
    write_mask(p, m, W, H, 1, 0);

    /* benign (3): a ring (one hole). */
    e = expect("benign (3).png", "benign");
    FMT(p, "%s/benign (3).png", d);
    write_image(p, W, H, 3);
    memset(m, 0, sizeof m);
    disk(m, W, H, 60, 50, 25, 25, 1);
    e->blobs[e->n_blobs++] = blob_copy(m);
    disk(m, W, H, 60, 50, 5, 5, 0);
    FMT(p, "%s/benign (3)_mask.png", d);
    write_mask(p, m, W, H, 1, 0);

    /* benign (10): the same pixels as benign (1), its own mask. Written to a fresh file, so the
     * bytes may differ but the decoded pixels do not. */
    e = expect("benign (10).png", "benign");
    FMT(p, "%s/benign (10).png", d);
    write_image(p, W, H, 1);
    memset(m, 0, sizeof m);
    disk(m, W, H, 60, 50, 22, 14, 1);
    e->blobs[e->n_blobs++] = blob_copy(m);
    FMT(p, "%s/benign (10)_mask.png", d);
    write_mask(p, m, W, H, 1, 0);

    FMT(d, "%s/malignant", root);
    mkdir_or_fail(d);
    /* malignant (1): RGBA mask, opaque. malignant (2): RGBA, transparent white background. */
    for (int k = 1; k <= 2; k++) {
        char name[64];
        FMT(name, "malignant (%d).png", k);
        e = expect(name, "malignant");
        FMT(p, "%s/%s", d, name);
        write_image(p, W, H, 10 + (uint32_t)k);
        memset(m, 0, sizeof m);
        disk(m, W, H, 50 + 10 * k, 50, 12, 24, 1);
        rect(m, W, 55 + 10 * k, 20, 57 + 10 * k, 30, 1); /* a spicule */
        e->blobs[e->n_blobs++] = blob_copy(m);
        FMT(p, "%s/malignant (%d)_mask.png", d, k);
        write_mask(p, m, W, H, 4, k == 2);
    }

    FMT(d, "%s/normal", root);
    mkdir_or_fail(d);
    memset(m, 0, sizeof m);
    for (int k = 1; k <= 2; k++) {
        char name[64];
        FMT(name, "normal (%d).png", k);
        expect(name, "normal");
        FMT(p, "%s/%s", d, name);
        write_image(p, W, H, 20 + (uint32_t)k);
        FMT(p, "%s/normal (%d)_mask.png", d, k);
        write_mask(p, m, W, H, 1, 0);
    }
}

static void free_expected(void) {
    for (int i = 0; i < n_exp; i++)
        for (int k = 0; k < exp_list[i].n_blobs; k++) free(exp_list[i].blobs[k]);
    n_exp = 0;
}

static expected *find_expected(const char *name) {
    for (int i = 0; i < n_exp; i++)
        if (!strcmp(exp_list[i].name, name)) return &exp_list[i];
    return NULL;
}

Test(busi, import_generated_folder) {
    char root[256], src[300], out[300];
    FMT(root, "%s", temp_dir("busi"));
    FMT(src, "%s/Dataset_BUSI_with_GT", root); /* the Kaggle folder name, found from its parent */
    FMT(out, "%s/out", root);
    mkdir_or_fail(src);
    build_busi(src);

    mr_busi_options o;
    mr_busi_defaults(&o);
    o.src_dir = root;
    o.out_dir = out;
    o.seed = 3;
    o.val_fraction = 0.3;
    FILE *log = tmpfile();
    o.report = log;
    mr_busi_summary s;
    cr_assert_eq(mr_busi_import(&o, &s), MR_OK, "%s", mr_last_error());

    cr_assert_eq(s.images[MR_BUSI_BENIGN], 4);
    cr_assert_eq(s.images[MR_BUSI_MALIGNANT], 2);
    cr_assert_eq(s.images[MR_BUSI_NORMAL], 2);
    cr_assert_eq(s.instances[MR_BUSI_BENIGN], 2 + 2 + 1 + 1);
    cr_assert_eq(s.instances[MR_BUSI_MALIGNANT], 2);
    cr_assert_eq(s.instances[MR_BUSI_NORMAL], 0);
    cr_assert_eq(s.multi_mask_images[MR_BUSI_BENIGN], 1);
    cr_assert_eq(s.multi_instance_images, 2);
    cr_assert_eq(s.duplicate_groups, 1);
    cr_assert_eq(s.duplicate_images, 2);
    cr_assert_eq(s.conflicting_groups, 0);
    cr_assert_eq(s.components_with_holes, 1);
    cr_assert_eq(s.holes, 1);
    cr_assert_eq(s.tiny_skipped, 1);
    cr_assert_eq(s.skipped_images, 0);
    cr_assert_eq(s.problems, 0);
    cr_assert_eq(s.train_images + s.val_images, 8);
    cr_assert_gt(s.val_images, 0);

    rewind(log);
    char report[8192] = {0};
    cr_assert_gt(fread(report, 1, sizeof report - 1, log), 0);
    fclose(log);
    cr_assert(strstr(report, "duplicate images") && strstr(report, "benign (10).png"),
              "duplicate reported:\n%s", report);
    cr_assert(strstr(report, "hole"), "hole reported:\n%s", report);
    cr_assert(strstr(report, "under 10 px"), "tiny blob reported:\n%s", report);

    /* Read both splits back. */
    int seen = 0, side_dup1 = -1, side_dup10 = -1;
    uint8_t r[W * H];
    for (int k = 0; k < 2; k++) {
        char dir[400], path[500];
        FMT(dir, "%s/%s", out, k ? "val" : "train");
        FMT(path, "%s/via_region_data.json", dir);
        char *text = slurp(path, NULL);
        cr_assert_not_null(text, "%s missing", path);
        cJSON *root_json = cJSON_Parse(text);
        cr_assert_not_null(root_json, "%s does not parse", path);
        const cJSON *img;
        cJSON_ArrayForEach(img, root_json) {
            const char *fn = cJSON_GetStringValue(cJSON_GetObjectItem(img, "filename"));
            expected *e = find_expected(fn);
            cr_assert_not_null(e, "unexpected image %s", fn);
            seen++;
            if (!strcmp(fn, "benign (1).png")) side_dup1 = k;
            if (!strcmp(fn, "benign (10).png")) side_dup10 = k;

            /* A byte copy of the source, and the key is filename + size. */
            char copy[600], orig[600];
            FMT(copy, "%s/%s", dir, fn);
            FMT(orig, "%s/%s/%s", src, e->cls, fn);
            long la, lb;
            char *a = slurp(copy, &la), *b = slurp(orig, &lb);
            cr_assert(a && b && la == lb && !memcmp(a, b, (size_t)la), "%s is not a byte copy", fn);
            free(a);
            free(b);
            char key[128];
            FMT(key, "%s%ld", fn, la);
            cr_assert_str_eq(img->string, key);
            cr_assert_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(img, "size")), (double)la);

            const cJSON *fa = cJSON_GetObjectItem(img, "file_attributes");
            const cJSON *regions = cJSON_GetObjectItem(img, "regions");
            cr_assert(cJSON_IsArray(regions));
            const char *label = cJSON_GetStringValue(cJSON_GetObjectItem(fa, "label"));
            if (!strcmp(e->cls, "normal")) {
                cr_assert(label && !strcmp(label, "normal"));
                cr_assert_eq(cJSON_GetArraySize(regions), 0);
                continue;
            }
            cr_assert_null(label);
            cr_assert_eq(cJSON_GetArraySize(regions), e->n_blobs, "%s: %d regions, want %d", fn,
                         cJSON_GetArraySize(regions), e->n_blobs);
            const cJSON *reg;
            cJSON_ArrayForEach(reg, regions) {
                const char *cls = cJSON_GetStringValue(
                    cJSON_GetObjectItem(cJSON_GetObjectItem(reg, "region_attributes"), "class"));
                cr_assert_str_eq(cls, e->cls);
                const cJSON *sa = cJSON_GetObjectItem(reg, "shape_attributes");
                cr_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(sa, "name")), "polygon");
                const cJSON *ax = cJSON_GetObjectItem(sa, "all_points_x");
                const cJSON *ay = cJSON_GetObjectItem(sa, "all_points_y");
                int n = cJSON_GetArraySize(ax);
                cr_assert(n >= 3 && n == cJSON_GetArraySize(ay));
                double xs[4096], ys[4096];
                cr_assert_leq(n, 4096);
                for (int i = 0; i < n; i++) {
                    xs[i] = cJSON_GetNumberValue(cJSON_GetArrayItem(ax, i));
                    ys[i] = cJSON_GetNumberValue(cJSON_GetArrayItem(ay, i));
                }
                raster(r, W, H, xs, ys, n);
                /* Outlines along pixel edges, simplified within 0.5% of the blob's pixels. */
                const uint8_t *blob = NULL;
                double best = 0.0;
                for (int bi = 0; bi < e->n_blobs; bi++) {
                    double v = iou(r, e->blobs[bi], sizeof r);
                    if (v > best) best = v, blob = e->blobs[bi];
                }
                int64_t differ = 0;
                for (size_t j = 0; j < sizeof r; j++) differ += r[j] != blob[j];
                cr_assert_leq((double)differ, 0.005 * (double)count(blob, sizeof r),
                              "%s: polygon differs from its source blob in %lld px (IoU %.4f)", fn,
                              (long long)differ, best);
            }
        }
        cJSON_Delete(root_json);
        free(text);
    }
    cr_assert_eq(seen, 8);
    cr_assert(side_dup1 >= 0 && side_dup1 == side_dup10, "duplicates split apart");
    free_expected();
}

Test(busi, same_seed_same_split_and_duplicates_together) {
    /* Over several seeds the duplicate pair never separates, and a seed is reproducible. */
    char root[256], src[300];
    FMT(root, "%s", temp_dir("busi"));
    FMT(src, "%s/src", root);
    mkdir_or_fail(src);
    build_busi(src);
    free_expected();
    char first_train[4096] = {0};
    for (int seed = 0; seed < 6; seed++) {
        for (int again = 0; again < 2; again++) {
            char out[400], path[500];
            FMT(out, "%s/out_%d_%d", root, seed, again);
            mr_busi_options o;
            mr_busi_defaults(&o);
            o.src_dir = src;
            o.out_dir = out;
            o.seed = (uint64_t)seed;
            o.val_fraction = 0.5;
            o.report = tmpfile();
            mr_busi_summary s;
            cr_assert_eq(mr_busi_import(&o, &s), MR_OK, "%s", mr_last_error());
            fclose(o.report);
            FMT(path, "%s/train/via_region_data.json", out);
            char *train = slurp(path, NULL);
            int a = strstr(train, "\"benign (1).png\"") != NULL;
            int b = strstr(train, "\"benign (10).png\"") != NULL;
            cr_assert_eq(a, b, "seed %d: the duplicate pair is split", seed);
            if (again == 0)
                FMT(first_train, "%s", train);
            else
                cr_assert_str_eq(train, first_train, "seed %d: not reproducible", seed);
            free(train);
        }
    }
}

/* Runs `$MRCNN_BIN verb args` (set by `make test`) and returns its exit code, output in `out`. */
static int run_cli(const char *verb, const char *args, char *out, size_t n) {
    char full[8192];
    cr_assert_lt(snprintf(full, sizeof full, "%s %s", verb, args), (int)sizeof full);
    return run_mrcnn(full, out, n);
}

/* Runs an import with the report captured; returns the status and the report text. */
static mr_status import_capture(const char *src, const char *out, mr_busi_summary *s, char *text,
                                size_t cap) {
    mr_busi_options o;
    mr_busi_defaults(&o);
    o.src_dir = src;
    o.out_dir = out;
    o.report = tmpfile();
    mr_status st = mr_busi_import(&o, s);
    rewind(o.report);
    size_t n = fread(text, 1, cap - 1, o.report);
    text[n] = '\0';
    fclose(o.report);
    return st;
}

static int count_lines_with(const char *text, const char *needle) {
    int k = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++) k++;
    return k;
}

Test(busi, bad_inputs_one_line_each) {
    char root[256], d[400], p[500], out[400];
    FMT(root, "%s", temp_dir("busi"));
    FMT(out, "%s/out", root);
    FMT(d, "%s/benign", root);
    mkdir_or_fail(d);
    uint8_t m[W * H];
    memset(m, 0, sizeof m);
    disk(m, W, H, 50, 50, 20, 15, 1);
    /* (1) no mask; (2) unreadable mask; (3) mask of another size; (4) fine. */
    for (int k = 1; k <= 4; k++) {
        FMT(p, "%s/benign (%d).png", d, k);
        write_image(p, W, H, (uint32_t)(100 + k));
    }
    FMT(p, "%s/benign (2)_mask.png", d);
    FILE *f = fopen(p, "wb");
    fputs("this is not a PNG", f);
    fclose(f);
    uint8_t small[60 * 50];
    memset(small, 0, sizeof small);
    disk(small, 60, 50, 30, 25, 10, 10, 1);
    FMT(p, "%s/benign (3)_mask.png", d);
    write_mask(p, small, 60, 50, 1, 0);
    FMT(p, "%s/benign (4)_mask.png", d);
    write_mask(p, m, W, H, 1, 0);
    /* No malignant/ folder; normal/ holds a mask whose image is missing. */
    FMT(d, "%s/normal", root);
    mkdir_or_fail(d);
    FMT(p, "%s/normal (7)_mask.png", d);
    write_mask(p, small, 60, 50, 1, 0);

    mr_busi_summary s;
    char text[8192];
    cr_assert_eq(import_capture(root, out, &s, text, sizeof text), MR_OK, "%s", mr_last_error());
    cr_assert_eq(s.images[MR_BUSI_BENIGN], 1);
    cr_assert_eq(s.instances[MR_BUSI_BENIGN], 1);
    cr_assert_eq(s.skipped_images, 3);
    cr_assert_eq(s.problems, 5, "report:\n%s", text);
    cr_assert_eq(count_lines_with(text, "\n"), 5, "one line per problem:\n%s", text);
    cr_assert_eq(count_lines_with(text, "image without mask"), 1, "%s", text);
    cr_assert_eq(count_lines_with(text, "unreadable mask"), 1, "%s", text);
    cr_assert_eq(count_lines_with(text, "is 60x50 but its image benign (3).png is 120x100"), 1,
                 "%s", text);
    cr_assert_eq(count_lines_with(text, "missing folder"), 1, "%s", text);
    cr_assert_eq(count_lines_with(text, "mask without an image"), 1, "%s", text);
}

Test(busi, unusable_sources_fail_with_one_message) {
    char root[256], p[400];
    FMT(root, "%s", temp_dir("busi"));
    mr_busi_summary s;
    char text[4096];
    FMT(p, "%s/nowhere", root);
    cr_assert_eq(import_capture(p, root, &s, text, sizeof text), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "does not exist"), "%s", mr_last_error());
    cr_assert_eq(import_capture(root, root, &s, text, sizeof text), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "not a BUSI folder"), "%s", mr_last_error());
    FMT(p, "%s/benign", root);
    mkdir_or_fail(p);
    cr_assert_eq(import_capture(root, root, &s, text, sizeof text), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "no usable image"), "%s", mr_last_error());
}

Test(busi, cli_imports_and_reports) {
    char root[256], src[300], args[800], out[16384];
    FMT(root, "%s", temp_dir("busi"));
    FMT(src, "%s/src", root);
    mkdir_or_fail(src);
    build_busi(src);
    free_expected();
    FMT(args, "--src '%s' --out '%s/out' --seed 4", src, root);
    cr_assert_eq(run_cli("import-busi", args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "converted 8 images"), "%s", out);
    cr_assert(strstr(out, "duplicates: 1 sets, 2 images"), "%s", out);
    cr_assert(strstr(out, "has 1 hole(s)"), "%s", out);
    FMT(args, "--src '%s/nowhere' --out '%s/out2'", root, root);
    cr_assert_eq(run_cli("import-busi", args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "does not exist"), "%s", out);
    cr_assert_eq(run_cli("import-busi", "--out x", out, sizeof out), 2, "%s", out);
}

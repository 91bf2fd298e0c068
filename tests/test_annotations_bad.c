/* Malformed annotation input: every case must return a status with a precise one-line message
 * (file:line:column, image key, region index, field) and never crash; run under ASan/UBSan by
 * `make test-asan`. The bad files are written into fresh temp folders. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../data/annotations.h"
#include "../data/image.h"
#include "testutil.h"

static char g_dir[256];
static char g_path[1024];

/* Writes `len` bytes of `text` to a fresh folder as `name`; the path is in g_path. */
static const char *put_bytes(const char *name, const char *text, size_t len) {
    snprintf(g_dir, sizeof g_dir, "%s", temp_dir("ann-bad"));
    snprintf(g_path, sizeof g_path, "%s/%s", g_dir, name);
    FILE *f = fopen(g_path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(text, 1, len, f), len);
    fclose(f);
    return g_path;
}

static const char *put(const char *name, const char *text) {
    return put_bytes(name, text, strlen(text));
}

static void put_png(const char *name, int w, int h) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, w, h, 1), MR_OK);
    cr_assert_eq(mr_image_write_png(p, &img), MR_OK);
    mr_image_free(&img);
}

static const mr_load_options no_images = {.allow_missing_images = true};

/* Loads, checks the status, and checks that the last error holds each needle (NULL-ended). */
static void expect(const char *path, const mr_load_options *o, mr_status code, ...) {
    mr_annotations a;
    mr_status st = mr_annotations_load(path, o, &a);
    const char *msg = mr_last_error();
    cr_assert_eq(st, code, "status %s, expected %s: %s", mr_status_name(st), mr_status_name(code),
                 msg);
    cr_assert_null(strchr(msg, '\n'), "message is not one line: %s", msg);
    va_list ap;
    va_start(ap, code);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        cr_assert(strstr(msg, needle), "expected '%s' in: %s", needle, msg);
    va_end(ap);
    mr_annotations_free(&a);
}

/* A VIA 2 file with one image (missing on disk) and the given regions list. */
static const char *via_regions(const char *regions) {
    static char text[8192];
    snprintf(text, sizeof text,
             "{\"a.png-1\": {\"filename\": \"a.png\", \"size\": -1, \"file_attributes\": {},"
             " \"regions\": %s}}",
             regions);
    return put("via.json", text);
}

/* ---- unreadable and malformed files -------------------------------------------------------- */

Test(annotations, bad_missing_and_empty_files) {
    expect("/nonexistent/via.json", NULL, MR_ERR_IO, "/nonexistent/via.json", "cannot open", NULL);
    expect(put("via.json", ""), NULL, MR_ERR_FORMAT, "via.json", "empty", NULL);
    expect(put("via.json", " \n\t\n"), NULL, MR_ERR_FORMAT, "empty", NULL);
    expect(put("via.csv", ""), NULL, MR_ERR_FORMAT, "empty", NULL);
}

Test(annotations, bad_truncated_json_gives_line_and_column) {
    const char *p =
        put("via.json", "{\n  \"a.png1\": {\n    \"filename\": \"a.png\", \"regions\": [");
    expect(p, NULL, MR_ERR_FORMAT, "via.json:3:", "line 3", "column", "truncated", NULL);
}

Test(annotations, bad_json_syntax_gives_line_and_column) {
    const char *p = put("via.json", "{\n \"a.png1\": {\n  \"filename\": \"a.png\" \"size\": 1}}\n");
    expect(p, NULL, MR_ERR_FORMAT, "via.json:3:", "line 3, column", "malformed JSON", NULL);
    p = put("via.json", "{\"a\": {\"filename\": 'a.png'}}");
    expect(p, NULL, MR_ERR_FORMAT, "line 1", "double quotes", NULL);
    p = put("via.json", "{\"a\": 1} trailing");
    expect(p, NULL, MR_ERR_FORMAT, "line 1, column", NULL);
}

Test(annotations, bad_nan_is_not_json) {
    const char *p = via_regions("[{\"shape_attributes\": {\"name\": \"rect\", \"x\": NaN, \"y\": 1,"
                                " \"width\": 2, \"height\": 2}}]");
    expect(p, &no_images, MR_ERR_FORMAT, "line 1", "column", "NaN", NULL);
}

Test(annotations, bad_binary_garbage_and_nul_bytes) {
    const char garbage[] = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe";
    expect(put_bytes("via.json", garbage, sizeof garbage - 1), NULL, MR_ERR_FORMAT, "via.json",
           NULL);
    const char nul[] = "{\"a.png1\": {\"filename\": \"a\0.png\"}}";
    expect(put_bytes("via.json", nul, sizeof nul - 1), NULL, MR_ERR_FORMAT, "via.json:1:27",
           "NUL byte", NULL);
}

Test(annotations, bad_deep_nesting_does_not_crash) {
    size_t n = 100000;
    char *text = malloc(n + 1);
    memset(text, '[', n);
    text[n] = '\0';
    const char *p = put("via.json", text);
    free(text);
    expect(p, NULL, MR_ERR_FORMAT, "malformed JSON", NULL);
}

/* ---- wrong types at every level ------------------------------------------------------------ */

Test(annotations, bad_root_types) {
    expect(put("via.json", "[1, 2]"), NULL, MR_ERR_FORMAT, "top level", "found an array", NULL);
    expect(put("via.json", "\"hello\""), NULL, MR_ERR_FORMAT, "found a string", NULL);
    expect(put("via.json", "{\"foo\": 1, \"bar\": [2]}"), NULL, MR_ERR_FORMAT,
           "not a recognised annotation file", NULL);
    expect(put("via_region_data.json", "{\"region\": {\"name\": {\"type\": \"text\"}}}"), NULL,
           MR_ERR_FORMAT, "attribute definitions", NULL);
}

Test(annotations, bad_image_entry_types) {
    expect(put("via.json", "{\"a.png1\": {\"filename\": \"a.png\"}, \"b.png1\": 7}"), &no_images,
           MR_ERR_FORMAT, "image 'b.png1'", "found a number", NULL);
    expect(put("via.json", "{\"a.png1\": {\"filename\": 12, \"regions\": []}}"), &no_images,
           MR_ERR_FORMAT, "image 'a.png1'", "field 'filename'", "a number", NULL);
    expect(put("via.json", "{\"a.png1\": {\"size\": 1, \"regions\": []}}"), &no_images,
           MR_ERR_FORMAT, "image 'a.png1'", "missing field 'filename'", NULL);
    expect(put("via.json", "{\"a.png1\": {\"filename\": \"a.png\", \"regions\": [],"
                           " \"file_attributes\": [1]}}"),
           &no_images, MR_ERR_FORMAT, "image 'a.png1'", "file_attributes", "an array", NULL);
}

Test(annotations, bad_regions_a_string) {
    expect(via_regions("\"oops\""), &no_images, MR_ERR_FORMAT, "via.json", "image 'a.png-1'",
           "field 'regions'", "found a string", NULL);
    expect(via_regions("[5]"), &no_images, MR_ERR_FORMAT, "image 'a.png-1' region 0",
           "found a number", NULL);
}

Test(annotations, bad_shape_attributes_an_array) {
    expect(via_regions("[{\"shape_attributes\": [1, 2], \"region_attributes\": {}}]"), &no_images,
           MR_ERR_FORMAT, "image 'a.png-1' region 0", "field 'shape_attributes'", "an array", NULL);
    expect(via_regions("[{\"region_attributes\": {}}]"), &no_images, MR_ERR_FORMAT, "region 0",
           "missing field 'shape_attributes'", NULL);
    expect(via_regions("[{\"shape_attributes\": {\"x\": 1}}]"), &no_images, MR_ERR_FORMAT,
           "region 0", "shape_attributes.name", NULL);
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"blob\"}}]"), &no_images, MR_ERR_FORMAT,
           "region 0", "unknown shape 'blob'", NULL);
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"rect\", \"x\": 1, \"y\": 1,"
                       " \"width\": 3, \"height\": 3}, \"region_attributes\": \"cell\"}]"),
           &(mr_load_options){.allow_missing_images = true,
                              .class_names = (const char *const[]){"cell"},
                              .n_class_names = 1},
           MR_ERR_FORMAT, "region 0", "region_attributes", "a string", NULL);
}

Test(annotations, bad_all_points_x_with_a_string) {
    expect(
        via_regions("[{\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [1, 5, 5],"
                    " \"all_points_y\": [1, 1, 5]}},"
                    " {\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [1, 5,"
                    " \"9\"], \"all_points_y\": [1, 1, 5]}}]"),
        &no_images, MR_ERR_FORMAT, "image 'a.png-1' region 1", "field 'all_points_x' item 2",
        "found a string (\"9\")", NULL);
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": 3,"
                       " \"all_points_y\": [1, 1, 5]}}]"),
           &no_images, MR_ERR_FORMAT, "region 0", "all_points_x", "found a number", NULL);
    expect(
        via_regions("[{\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [1, 2, 3],"
                    " \"all_points_y\": [1, 5]}}]"),
        &no_images, MR_ERR_FORMAT, "region 0", "has 3 values but 'all_points_y' has 2", NULL);
}

Test(annotations, bad_x_as_a_string) {
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"rect\", \"x\": \"12\", \"y\": 1,"
                       " \"width\": 2, \"height\": 2}}]"),
           &no_images, MR_ERR_FORMAT, "image 'a.png-1' region 0", "field 'x'",
           "found a string (\"12\")", NULL);
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"circle\", \"cx\": 1, \"cy\": 1}}]"),
           &no_images, MR_ERR_FORMAT, "region 0", "circle is missing field 'r'", NULL);
}

Test(annotations, bad_via1_region_key_is_named) {
    const char *p = put("via.json", "{\"a.png1\": {\"fileref\": \"\", \"filename\": \"a.png\","
                                    " \"size\": 1, \"base64_img_data\": \"\", \"regions\": {"
                                    "\"0\": {\"shape_attributes\": {\"name\": \"point\","
                                    " \"cx\": 1, \"cy\": 1}}, \"1\": {\"shape_attributes\":"
                                    " {\"name\": \"ellipse\", \"cx\": 1, \"cy\": true,"
                                    " \"rx\": 1, \"ry\": 1}}}}}");
    expect(p, &no_images, MR_ERR_FORMAT, "image 'a.png1' region 1", "field 'cy'", "true/false",
           NULL);
}

/* ---- numbers ------------------------------------------------------------------------------- */

Test(annotations, bad_huge_and_infinite_coordinates) {
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"rect\", \"x\": 1e8, \"y\": 1,"
                       " \"width\": 2, \"height\": 2}}]"),
           &no_images, MR_ERR_NUMERIC, "region 0", "field 'x'", "1e+08", NULL);
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [1, 2,"
                       " 1e999], \"all_points_y\": [1, 2, 3]}}]"),
           &no_images, MR_ERR_NUMERIC, "region 0", "all_points_x[2]", "infinite", NULL);
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [1, 2,"
                       " 3], \"all_points_y\": [1, -2e7, 3]}}]"),
           &no_images, MR_ERR_NUMERIC, "all_points_y[1]", NULL);
}

Test(annotations, bad_negative_sizes) {
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"rect\", \"x\": 1, \"y\": 1,"
                       " \"width\": -5, \"height\": 2}}]"),
           &no_images, MR_ERR_FORMAT, "region 0", "field 'width' is -5", "negative", NULL);
    expect(via_regions("[{\"shape_attributes\": {\"name\": \"circle\", \"cx\": 1, \"cy\": 1,"
                       " \"r\": -1}}]"),
           &no_images, MR_ERR_FORMAT, "field 'r' is -1", NULL);
    const char *p =
        put("coco.json", "{\"images\": [{\"id\": 1, \"file_name\": \"a.png\", \"width\":"
                         " -640, \"height\": 480}], \"annotations\": [],"
                         " \"categories\": []}");
    expect(p, &no_images, MR_ERR_FORMAT, "image 1", "field 'width' is -640", NULL);
}

Test(annotations, bad_million_point_polygon_is_linear) {
    /* A circle of radius 60 around (50, 50) in a 100x100 image: every vertex is checked, most
     * are clipped, and nothing is quadratic (a quadratic step would take minutes here). */
    const int64_t n = 1000000;
    size_t cap = (size_t)n * 2 * 24 + 1024, used = 0;
    char *text = malloc(cap);
    cr_assert_not_null(text);
    used +=
        (size_t)snprintf(text + used, cap - used,
                         "{\"big.png1\": {\"filename\": \"big.png\", \"size\": 1, \"regions\":"
                         " [{\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [");
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i = 0; i < n; i++) {
            double t = 2.0 * M_PI * (double)i / (double)n;
            double v = pass == 0 ? 50.0 + 60.0 * cos(t) : 50.0 + 60.0 * sin(t);
            used += (size_t)snprintf(text + used, cap - used, "%s%.4f", i ? "," : "", v);
        }
        used += (size_t)snprintf(text + used, cap - used, "%s",
                                 pass == 0 ? "], \"all_points_y\": [" : "]}}]}}");
    }
    const char *p = put_bytes("via.json", text, used);
    free(text);
    put_png("big.png", 100, 100);
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(p, NULL, &a), MR_OK, "%s", mr_last_error());
    remove(p); /* 20 MB: do not leave it in /tmp */
    cr_assert_eq(a.n, 1);
    cr_assert_eq(a.records[0].n_instances, 1);
    const mr_region *inst = &a.records[0].instances[0];
    cr_assert_gt(a.report.n_clipped_points, n / 2);
    cr_assert_eq(a.report.n_clipped_regions, 1);
    double box[4];
    mr_annotations_bbox(inst, box);
    cr_assert_float_eq(box[0], 0.0, 1e-9);
    cr_assert_float_eq(box[3], 100.0, 1e-9);
    double area = mr_shape_area(&inst->shape);
    /* The square minus four corner caps of the disc. */
    cr_assert(area > 9000.0 && area < 10000.0, "area %f", area);
    uint8_t *mask = calloc(100 * 100, 1);
    int64_t set = mr_shape_rasterize(&inst->shape, mask, 100, 100, 1);
    cr_assert(set > 9000 && set <= 10000, "set %lld", (long long)set);
    free(mask);
    mr_annotations_free(&a);
}

/* ---- classes ------------------------------------------------------------------------------- */

Test(annotations, bad_unknown_class_names_itself_and_the_known_ones) {
    const char *classes[] = {"cell", "nucleus"};
    mr_load_options o = {.class_names = classes, .n_class_names = 2, .allow_missing_images = true};
    const char *p = via_regions("[{\"shape_attributes\": {\"name\": \"rect\", \"x\": 1, \"y\": 1,"
                                " \"width\": 3, \"height\": 3}, \"region_attributes\":"
                                " {\"name\": \"cell\"}},"
                                " {\"shape_attributes\": {\"name\": \"rect\", \"x\": 1, \"y\": 1,"
                                " \"width\": 3, \"height\": 3}, \"region_attributes\":"
                                " {\"name\": \"cel\"}}]");
    expect(p, &o, MR_ERR_FORMAT, "via.json: image 'a.png-1' region 1", "unknown class 'cel'",
           "attribute 'name'", "known classes: cell, nucleus", "did you mean 'cell'?", NULL);
}

Test(annotations, bad_missing_class_when_classes_are_given) {
    const char *classes[] = {"cell"};
    mr_load_options o = {.class_names = classes, .n_class_names = 1, .allow_missing_images = true};
    const char *p = via_regions("[{\"shape_attributes\": {\"name\": \"rect\", \"x\": 1, \"y\": 1,"
                                " \"width\": 3, \"height\": 3}, \"region_attributes\": {}}]");
    expect(p, &o, MR_ERR_FORMAT, "region 0", "no class", "'class', 'name', 'label', 'type'",
           "known classes: cell", NULL);
    o.class_attribute = "lesion";
    expect(p, &o, MR_ERR_FORMAT, "region 0", "'lesion' is missing", NULL);
}

Test(annotations, bad_class_lists) {
    const char *p = via_regions("[]");
    const char *dup[] = {"BG", "cell", "Cell"};
    mr_load_options o = {.class_names = dup, .n_class_names = 3};
    expect(p, &o, MR_ERR_ARG, "'Cell' is listed twice", NULL);
    const char *bg[] = {"BG"};
    o = (mr_load_options){.class_names = bg, .n_class_names = 1};
    expect(p, &o, MR_ERR_ARG, "only \"BG\"", NULL);
    const char *empty[] = {"cell", ""};
    o = (mr_load_options){.class_names = empty, .n_class_names = 2};
    expect(p, &o, MR_ERR_ARG, "class 2 is empty", NULL);
}

Test(annotations, bad_two_errors_name_the_second_in_the_singular) {
    const char *p = via_regions("[{\"shape_attributes\": {\"name\": \"rect\", \"x\": \"1\"}},"
                                " {\"shape_attributes\": 3}]");
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(p, &no_images, &a), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "region 0") && strstr(mr_last_error(), "(and 1 more error;"),
              "%s", mr_last_error());
    cr_assert_eq(a.report.n_errors, 2);
    mr_annotations_free(&a);
}

Test(annotations, bad_errors_are_all_collected) {
    const char *p = via_regions("[{\"shape_attributes\": {\"name\": \"rect\", \"x\": \"1\"}},"
                                " {\"shape_attributes\": 3},"
                                " {\"shape_attributes\": {\"name\": \"rect\", \"x\": 1, \"y\": 1,"
                                " \"width\": 3, \"height\": 3}},"
                                " {\"shape_attributes\": {\"name\": \"polygon\"}}]");
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(p, &no_images, &a), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "region 0") && strstr(mr_last_error(), "and 2 more errors"),
              "%s", mr_last_error());
    cr_assert_eq(a.report.n_errors, 3);
    cr_assert_eq(a.report.n_rejected, 3);
    cr_assert_eq(a.report.n_issues, 3);
    cr_assert(strstr(a.report.issues[1].text, "region 1"));
    cr_assert(strstr(a.report.issues[2].text, "region 3"));
    cr_assert(strstr(a.report.issues[2].text, "all_points_x"));
    cr_assert_eq(a.records[0].n_instances, 1); /* the good region is still loaded */
    mr_annotations_free(&a);
}

Test(annotations, bad_issue_cap_counts_the_rest) {
    char regions[16384] = "[";
    for (int i = 0; i < 50; i++)
        strcat(regions, i ? ", {\"shape_attributes\": 1}" : "{\"shape_attributes\": 1}");
    strcat(regions, "]");
    mr_load_options o = {.allow_missing_images = true, .max_issues = 10};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(via_regions(regions), &o, &a), MR_ERR_FORMAT);
    cr_assert_eq(a.report.n_issues, 10);
    cr_assert_eq(a.report.n_issues_dropped, 40);
    cr_assert_eq(a.report.n_errors, 50);
    mr_annotations_free(&a);
}

/* ---- images -------------------------------------------------------------------------------- */

Test(annotations, bad_missing_image_names_its_path) {
    const char *p = via_regions("[]");
    char expected[1100];
    snprintf(expected, sizeof expected, "%s/a.png: image file not found", g_dir);
    expect(p, NULL, MR_ERR_IO, expected, "image 'a.png-1'", NULL);
    mr_load_options o = {.image_root = "/nonexistent/images"};
    expect(p, &o, MR_ERR_IO, "/nonexistent/images/a.png", "image file not found", NULL);
}

Test(annotations, bad_corrupt_png_and_jpeg) {
    const char *p = put("via.json", "{\"x.png1\": {\"filename\": \"x.png\", \"size\": 1,"
                                    " \"regions\": []}, \"y.jpg1\": {\"filename\": \"y.jpg\","
                                    " \"size\": 1, \"regions\": []}}");
    char img[1100];
    snprintf(img, sizeof img, "%s/x.png", g_dir);
    FILE *f = fopen(img, "wb");
    fputs("this is not a PNG at all", f);
    fclose(f);
    snprintf(img, sizeof img, "%s/y.jpg", g_dir);
    f = fopen(img, "wb");
    fwrite("\xff\xd8\xff\xe0garbage", 1, 11, f);
    fclose(f);
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(p, NULL, &a), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "x.png") && strstr(mr_last_error(), "image 'x.png1'"), "%s",
              mr_last_error());
    cr_assert_eq(a.report.n_errors, 2);
    cr_assert(strstr(a.report.issues[1].text, "y.jpg"), "%s", a.report.issues[1].text);
    cr_assert_eq(a.n, 0);
    mr_annotations_free(&a);
    /* Unreadable files stay errors even when missing ones are allowed. */
    expect(p, &no_images, MR_ERR_FORMAT, "x.png", NULL);
}

/* ---- CSV ----------------------------------------------------------------------------------- */

#define CSV_HEADER                                                                                 \
    "filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,"           \
    "region_attributes\n"

Test(annotations, bad_csv_quoting) {
    expect(put("via.csv", CSV_HEADER "a.png,1,\"{}\",1,0,\"{\"\"name\"\":\"\"rect\"\"}\n"), NULL,
           MR_ERR_FORMAT, "via.csv:2:18", "line 2, column 18", "never closed", NULL);
    expect(put("via.csv", CSV_HEADER "a.png,1,\"{}\"x,1,0,\"{}\",\"{}\"\n"), NULL, MR_ERR_FORMAT,
           "via.csv:2:13", "after the closing quote", NULL);
    expect(put("via.csv", CSV_HEADER "a.png,1,{\"a\":1},1,0,\"{}\",\"{}\"\n"), NULL, MR_ERR_FORMAT,
           "line 2, column 10", "quote inside an unquoted field", NULL);
}

Test(annotations, bad_csv_rows) {
    expect(put("via.csv", CSV_HEADER "a.png,1,\"{}\",1,0,{}\n"), &no_images, MR_ERR_FORMAT,
           "via.csv:2:", "expected 7", "found 6", NULL);
    expect(
        put("via.csv", CSV_HEADER "a.png,1,\"{}\",1,0,\"{\"\"name\"\":\"\"rect\"\",}\",\"{}\"\n"),
        &no_images, MR_ERR_FORMAT, "via.csv:2: field 'region_shape_attributes'", "malformed JSON",
        NULL);
    expect(put("via.csv", CSV_HEADER "a.png,1,\"{}\",1,0,\"{\"\"name\"\":\"\"rect\"\",\"\"x\"\":"
                                     "\"\"1\"\"}\",\"{}\"\n"),
           &no_images, MR_ERR_FORMAT, "via.csv:2: image 'a.png' region 0", "field 'x'", NULL);
    expect(put("via.csv", "name,size\nx,1\n"), NULL, MR_ERR_FORMAT, "not a VIA CSV export", NULL);
}

/* ---- VIA 3 and COCO ------------------------------------------------------------------------ */

static const char *via3(const char *metadata) {
    static char text[8192];
    snprintf(text, sizeof text,
             "{\"project\": {}, \"config\": {}, \"attribute\": {},"
             " \"file\": {\"1\": {\"fid\": 1, \"fname\": \"a.png\", \"type\": 2, \"loc\": 1,"
             " \"src\": \"a.png\"}}, \"view\": {\"1\": {\"fid_list\": [1]}},"
             " \"metadata\": {%s}}",
             metadata);
    return put("p.json", text);
}

Test(annotations, bad_via3_shapes) {
    expect(via3("\"1_x\": {\"vid\": \"1\", \"z\": [], \"xy\": [2, 1, \"2\", 3, 4], \"av\": {}}"),
           &no_images, MR_ERR_FORMAT, "file '1' region 0 (metadata '1_x')", "field 'xy' item 2",
           "a string", NULL);
    expect(via3("\"1_x\": {\"vid\": \"1\", \"z\": [], \"xy\": [12, 1, 2], \"av\": {}}"), &no_images,
           MR_ERR_FORMAT, "unknown shape code 12", NULL);
    expect(via3("\"1_x\": {\"vid\": \"1\", \"z\": [], \"xy\": [2, 1, 2, 3], \"av\": {}}"),
           &no_images, MR_ERR_FORMAT, "needs 4 coordinates, found 3", NULL);
    expect(via3("\"1_x\": {\"vid\": \"9\", \"z\": [], \"xy\": [2, 1, 2, 3, 4], \"av\": {}}"),
           &no_images, MR_ERR_FORMAT, "metadata '1_x'", "view '9' does not exist", NULL);
    expect(via3("\"1_x\": {\"vid\": \"1\", \"z\": [], \"xy\": \"2,1,2\", \"av\": {}}"), &no_images,
           MR_ERR_FORMAT, "field 'xy'", "a string", NULL);
    expect(via3("\"1_x\": {\"vid\": \"1\", \"z\": [], \"xy\": [2, 1, 2, 3, 1e9], \"av\": {}}"),
           &no_images, MR_ERR_NUMERIC, "xy[4]", NULL);
    expect(put("p.json", "{\"project\": {}, \"file\": [], \"view\": {}, \"metadata\": {}}"),
           &no_images, MR_ERR_FORMAT, "field 'file'", "an array", NULL);
}

Test(annotations, bad_coco_references) {
    const char *head = "{\"images\": [{\"id\": 5, \"file_name\": \"a.png\", \"width\": 10,"
                       " \"height\": 10}], \"categories\": [{\"id\": 1, \"name\": \"cell\"}],"
                       " \"annotations\": [";
    char text[4096];
    snprintf(text, sizeof text,
             "%s{\"id\": 7, \"image_id\": 5, \"category_id\": 99,"
             " \"segmentation\": [[1, 1, 5, 1, 5, 5]]}]}",
             head);
    expect(put("coco.json", text), &no_images, MR_ERR_FORMAT, "annotation 7", "image 5",
           "'category_id' value 99", NULL);
    snprintf(text, sizeof text,
             "%s{\"id\": 7, \"image_id\": 6, \"category_id\": 1,"
             " \"segmentation\": [[1, 1, 5, 1, 5, 5]]}]}",
             head);
    expect(put("coco.json", text), &no_images, MR_ERR_FORMAT, "'image_id'", NULL);
    snprintf(text, sizeof text,
             "%s{\"id\": 7, \"image_id\": 5, \"category_id\": 1,"
             " \"segmentation\": [[1, 1, 5, 1, 5]]}]}",
             head);
    expect(put("coco.json", text), &no_images, MR_ERR_FORMAT, "has 5 numbers", "even", NULL);
    const char *classes[] = {"nucleus"};
    mr_load_options o = {.class_names = classes, .n_class_names = 1, .allow_missing_images = true};
    snprintf(text, sizeof text,
             "%s{\"id\": 7, \"image_id\": 5, \"category_id\": 1,"
             " \"segmentation\": [[1, 1, 5, 1, 5, 5]]}]}",
             head);
    expect(put("coco.json", text), &o, MR_ERR_FORMAT, "unknown class 'cell'",
           "known classes: nucleus", NULL);
    /* RLE and crowd regions are skipped with a warning, not an error. */
    snprintf(text, sizeof text,
             "%s{\"id\": 7, \"image_id\": 5, \"category_id\": 1, \"iscrowd\": 1,"
             " \"segmentation\": {\"counts\": [1, 2], \"size\": [10, 10]}}]}",
             head);
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(put("coco.json", text), &no_images, &a), MR_OK);
    cr_assert_eq(a.report.n_skipped_other, 1);
    cr_assert_eq(a.report.n_warnings, 2);
    cr_assert(strstr(a.report.issues[0].text, "crowd"));
    cr_assert(strstr(a.report.issues[1].text, "image '5': none of its regions became an instance"),
              "%s", a.report.issues[1].text);
    mr_annotations_free(&a);
    expect(put("coco.json", "{\"images\": {}, \"annotations\": []}"), &no_images, MR_ERR_FORMAT,
           "'images'", "an object", NULL);
}

/* Annotation loading on the real VIA/COCO fixtures (counts from fixtures/via/README.md), on
 * small hand-written files for project features, and the shape geometry; the malformed-input
 * cases are in test_annotations_bad.c. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../data/annotations.h"
#include "../core/file.h"
#include "../data/image.h"
#include "../data/synth.h"
#include "testutil.h"

/* Writes `text` to dir/name; the path goes to `out`. */
static void put_file(char *out, size_t n, const char *dir, const char *name, const char *text) {
    snprintf(out, n, "%s/%s", dir, name);
    FILE *f = fopen(out, "wb");
    cr_assert_not_null(f, "cannot write %s", out);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

/* A real grey PNG of the given size, so sizes come from a header. */
static void put_png(const char *dir, const char *name, int w, int h) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, w, h, 1), MR_OK);
    cr_assert_eq(mr_image_write_png(path, &img), MR_OK, "%s", mr_last_error());
    mr_image_free(&img);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && !strcmp(s + ls - lx, suffix);
}

static int64_t total_instances(const mr_annotations *a) {
    int64_t n = 0;
    for (int64_t i = 0; i < a->n; i++) n += a->records[i].n_instances;
    return n;
}

static int64_t count_kind(const mr_annotations *a, mr_shape_kind k) {
    int64_t n = 0;
    for (int64_t i = 0; i < a->n; i++)
        for (int64_t j = 0; j < a->records[i].n_instances; j++)
            n += a->records[i].instances[j].shape.kind == k;
    return n;
}

/* ---- fixtures ------------------------------------------------------------------------------ */

Test(annotations, via1_json_counts_shapes_and_closing_vertex) {
    const char *path = fixture_path("via/via1x_ox-vgg_unit_test/via1_annotations.json");
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, NULL, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.format, MR_ANN_VIA1_JSON);
    cr_assert_eq(a.n, 3);
    cr_assert_eq(a.report.n_regions, 12);
    cr_assert_eq(a.report.n_skipped_point, 5); /* 4 in the first image, 1 in the third */
    cr_assert_eq(a.report.n_errors, 0);
    cr_assert(a.single_class);

    const mr_image_record *r0 = &a.records[0];
    cr_assert_str_eq(r0->filename, "test_pattern_qbist.jpg");
    cr_assert_str_eq(r0->key, "test_pattern_qbist.jpg129855");
    cr_assert_eq(r0->width, 640);
    cr_assert_eq(r0->height, 480);
    /* 2 ellipses, 1 rect, 1 circle (the 4 points are skipped). */
    cr_assert_eq(r0->n_instances, 4);
    cr_assert_eq(r0->instances[0].shape.kind, MR_SHAPE_ELLIPSE);
    cr_assert_float_eq(r0->instances[0].shape.cx, 252.0, 1e-12);
    cr_assert_float_eq(r0->instances[0].shape.rx, 27.0, 1e-12);
    cr_assert_float_eq(r0->instances[0].shape.theta, 0.0, 1e-12);
    cr_assert_str_eq(r0->instances[0].class_name, "ellipse \"red\"");
    cr_assert_eq(r0->instances[1].shape.kind, MR_SHAPE_RECT);
    cr_assert_float_eq(r0->instances[1].shape.w, 127.0, 1e-12);
    cr_assert_eq(r0->instances[2].shape.kind, MR_SHAPE_CIRCLE);
    cr_assert_float_eq(r0->instances[2].shape.rx, 43.0, 1e-12);
    cr_assert_null(r0->instances[2].class_name); /* region_attributes {} */
    cr_assert_eq(r0->instances[3].shape.kind, MR_SHAPE_ELLIPSE);
    for (int k = 0; k < 4; k++) cr_assert_eq(r0->instances[k].class_id, 1);
    cr_assert_eq(r0->instances[3].region, 6);

    /* VIA 1 closes polygons by repeating the first vertex: 12 values, 11 vertices. */
    const mr_image_record *r1 = &a.records[1];
    cr_assert_eq(r1->n_instances, 1);
    const mr_shape *poly = &r1->instances[0].shape;
    cr_assert_eq(poly->kind, MR_SHAPE_POLYGON);
    cr_assert_eq(poly->n_points, 11);
    cr_assert_eq(poly->n_rings, 1);
    cr_assert_float_eq(poly->xs[10], 159.0, 1e-12);
    cr_assert_float_eq(poly->ys[10], 198.0, 1e-12);
    cr_assert_eq(r1->width, 640);
    cr_assert_eq(r1->height, 480);

    const mr_image_record *r2 = &a.records[2];
    cr_assert_eq(r2->n_instances, 2);
    cr_assert_eq(r2->width, 640);
    cr_assert_eq(r2->height, 427);
    double box[4];
    mr_annotations_bbox(&r2->instances[1], box); /* rect 79,310 66x62 */
    cr_assert_float_eq(box[0], 310.0, 1e-9);
    cr_assert_float_eq(box[1], 79.0, 1e-9);
    cr_assert_float_eq(box[2], 372.0, 1e-9);
    cr_assert_float_eq(box[3], 145.0, 1e-9);
    for (int64_t i = 0; i < a.n; i++) cr_assert_not(a.records[i].negative);
    mr_annotations_free(&a);
}

Test(annotations, via1_csv_matches_the_json) {
    const char *csv = fixture_path("via/via1x_ox-vgg_unit_test/via1_annotations.csv");
    char csv_path[4096];
    snprintf(csv_path, sizeof csv_path, "%s", csv);
    const char *json = fixture_path("via/via1x_ox-vgg_unit_test/via1_annotations.json");
    mr_annotations a, b;
    cr_assert_eq(mr_annotations_load(csv_path, NULL, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_annotations_load(json, NULL, &b), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.format, MR_ANN_VIA1_CSV);
    cr_assert_eq(a.n, 3);
    cr_assert_eq(a.report.n_regions, 12);
    cr_assert_eq(a.report.n_skipped_point, 5);
    for (int64_t i = 0; i < 3; i++) {
        const mr_image_record *x = &a.records[i], *y = &b.records[i];
        cr_assert_str_eq(x->filename, y->filename);
        cr_assert_str_eq(x->key, y->key);
        cr_assert_eq(x->width, y->width);
        cr_assert_eq(x->n_instances, y->n_instances);
        for (int64_t k = 0; k < x->n_instances; k++) {
            const mr_region *p = &x->instances[k], *q = &y->instances[k];
            cr_assert_eq(p->shape.kind, q->shape.kind);
            for (int c = 0; c < 4; c++) cr_assert_float_eq(p->box[c], q->box[c], 1e-12);
            if (q->class_name)
                cr_assert_str_eq(p->class_name, q->class_name);
            else
                cr_assert_null(p->class_name);
        }
    }
    /* CSV quoting with "" escapes inside JSON with \" escapes. */
    cr_assert_str_eq(a.records[1].instances[0].class_name, "a \"white\" swan, good fortune");
    cr_assert_eq(a.records[1].instances[0].shape.n_points, 11);
    mr_annotations_free(&a);
    mr_annotations_free(&b);
}

Test(annotations, basic_demo_dropdown_ids_resolve_through_attributes) {
    const char *attrs = fixture_path("via/via2x_ox-vgg_basic_demo/via_attributes.json");
    char attrs_path[4096];
    snprintf(attrs_path, sizeof attrs_path, "%s", attrs);
    const char *path = fixture_path("via/via2x_ox-vgg_basic_demo/via_region_data.json");
    const char *classes[] = {"BG", "Bird", "Human", "Cup (object)"};
    mr_load_options o = {.class_names = classes,
                         .n_class_names = 4,
                         .class_attribute = "type",
                         .attributes_path = attrs_path};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.format, MR_ANN_VIA2_JSON);
    cr_assert_str_eq(a.attributes_path, attrs_path);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(a.n_classes, 4);
    cr_assert_eq(total_instances(&a), 4);
    const mr_image_record *swan = &a.records[0], *socrates = &a.records[1];
    cr_assert_str_eq(swan->key, "adutta_swan.jpg-1"); /* size -1: added by URL */
    cr_assert_eq(swan->width, 600);
    cr_assert_eq(swan->height, 400);
    cr_assert_eq(socrates->width, 600);
    cr_assert_eq(socrates->height, 394);
    cr_assert_eq(swan->instances[0].class_id, 1);
    cr_assert_str_eq(swan->instances[0].class_name, "Bird"); /* option "bird" -> label */
    cr_assert_eq(swan->instances[0].shape.n_points, 15);     /* VIA 2: not closed */
    cr_assert_eq(socrates->instances[0].class_id, 2);
    cr_assert_eq(socrates->instances[1].class_id, 2);
    cr_assert_eq(socrates->instances[2].class_id, 3);
    cr_assert_str_eq(socrates->instances[2].class_name, "Cup (object)");
    cr_assert_eq(socrates->instances[2].shape.kind, MR_SHAPE_ELLIPSE);
    mr_annotations_free(&a);
}

Test(annotations, basic_demo_folder_finds_its_attributes_and_option_ids_match) {
    const char *dir = fixture_path("via/via2x_ox-vgg_basic_demo/via_region_data.json");
    char folder[4096];
    snprintf(folder, sizeof folder, "%s", dir);
    *strrchr(folder, '/') = '\0';
    /* Class names given as option ids ("bird") still match; the folder form picks
     * via_region_data.json and the via_attributes.json beside it. */
    const char *classes[] = {"bird", "human", "cup"};
    mr_load_options o = {.class_names = classes, .n_class_names = 3, .class_attribute = "type"};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(folder, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert(ends_with(a.source, "via_region_data.json"));
    cr_assert_not_null(a.attributes_path);
    cr_assert(ends_with(a.attributes_path, "via_attributes.json"));
    cr_assert_eq(a.records[1].instances[2].class_id, 3);
    cr_assert_str_eq(a.records[1].instances[2].class_name, "Cup (object)");
    mr_annotations_free(&a);
}

Test(annotations, basic_demo_csv_single_class) {
    const char *path = fixture_path("via/via2x_ox-vgg_basic_demo/via_region_data.csv");
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, NULL, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.format, MR_ANN_VIA2_CSV);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(a.report.n_regions, 4);
    cr_assert_eq(total_instances(&a), 4);
    cr_assert_eq(count_kind(&a, MR_SHAPE_RECT), 2);
    cr_assert_eq(count_kind(&a, MR_SHAPE_ELLIPSE), 1);
    cr_assert_eq(count_kind(&a, MR_SHAPE_POLYGON), 1);
    cr_assert_eq(a.records[1].width, 600);
    mr_annotations_free(&a);
}

Test(annotations, sherlock_string_sizes_path_prefix_and_number_labels) {
    const char *path =
        fixture_path("via/via2x_ox-vgg_sherlock_tracks/sherlock_ep01_tracks_FRCNN.json");
    mr_load_options o = {.allow_missing_images = true, .class_attribute = "track"};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.n, 266);
    cr_assert_eq(a.report.n_regions, 427);
    cr_assert_eq(total_instances(&a), 427);
    cr_assert_eq(count_kind(&a, MR_SHAPE_RECT), 427);
    const mr_image_record *r = &a.records[0];
    cr_assert_str_eq(r->filename, "./images/00011384.jpg");
    cr_assert_str_eq(r->key, "./images/00011384.jpg63930"); /* "size" was the string "63930" */
    cr_assert(ends_with(r->path, "via2x_ox-vgg_sherlock_tracks/images/00011384.jpg"), "%s",
              r->path);
    cr_assert_eq(r->width, 0);                           /* no images shipped */
    cr_assert_str_eq(r->instances[0].class_name, "320"); /* {"track": 320} */
    mr_annotations_free(&a);
}

Test(annotations, sherlock_without_images_names_each_missing_path) {
    const char *path =
        fixture_path("via/via2x_ox-vgg_sherlock_tracks/sherlock_ep01_tracks_FRCNN.json");
    mr_annotations a;
    mr_status st = mr_annotations_load(path, NULL, &a);
    cr_assert_eq(st, MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "images/00011384.jpg"), "%s", mr_last_error());
    cr_assert(strstr(mr_last_error(), "265 more errors"), "%s", mr_last_error());
    cr_assert_eq(a.report.n_errors, 266);
    cr_assert_eq(a.n, 0); /* images that cannot be opened are never handed out */
    mr_annotations_free(&a);
}

Test(annotations, via3_image_demo_with_an_image_root) {
    const char *swan = fixture_path("via/via2x_ox-vgg_basic_demo/adutta_swan.jpg");
    char root[4096];
    snprintf(root, sizeof root, "%s", swan);
    *strrchr(root, '/') = '\0';
    const char *path = fixture_path("via/via3x_ox-vgg_demo/via3_image_demo_project.json");
    const char *classes[] = {"Swan", "Socrates", "Plato"};
    mr_load_options o = {.class_names = classes,
                         .n_class_names = 3,
                         .image_root = root,
                         .allow_missing_images = true};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.format, MR_ANN_VIA3_PROJECT);
    cr_assert_eq(a.n, 2);
    cr_assert_eq(a.report.n_regions, 3);
    cr_assert_eq(total_instances(&a), 3);
    cr_assert_eq(count_kind(&a, MR_SHAPE_RECT), 3);
    cr_assert_str_eq(a.records[0].filename, "adutta_swan.jpg");
    cr_assert_eq(a.records[0].width, 600); /* found under the image root */
    cr_assert_eq(a.records[0].height, 400);
    cr_assert_eq(a.records[0].instances[0].class_id, 1);
    const mr_image_record *r1 = &a.records[1];
    cr_assert_eq(r1->width, 0); /* an http URL */
    cr_assert_eq(r1->n_instances, 2);
    cr_assert_eq(r1->instances[0].class_id, 2);
    cr_assert_float_eq(r1->instances[0].shape.x, 378.921, 1e-9);
    cr_assert_eq(r1->instances[1].class_id, 3);
    mr_annotations_free(&a);
}

Test(annotations, via3_video_project_spatial_and_temporal) {
    const char *path = fixture_path("via/via3x_ox-vgg_demo/via3_video_debug_project.json");
    const char *classes[] = {"Egg", "Bottle", "Mixer", "Cup", "Garlic", "Knife", "Tea Bag"};
    mr_load_options o = {.class_names = classes,
                         .n_class_names = 7,
                         .class_attribute = "object",
                         .allow_missing_images = true};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.n, 3);
    cr_assert_eq(a.report.n_regions, 7);
    cr_assert_eq(a.report.n_skipped_temporal, 8);
    cr_assert_eq(total_instances(&a), 7);
    cr_assert_eq(count_kind(&a, MR_SHAPE_RECT), 4);
    cr_assert_eq(count_kind(&a, MR_SHAPE_ELLIPSE), 2);
    cr_assert_eq(count_kind(&a, MR_SHAPE_POLYGON), 1);
    /* Select attribute: "av":{"2":"6"} -> options["6"] = "Knife"; fid values are integers. */
    const mr_image_record *v1 = &a.records[0];
    cr_assert_str_eq(v1->filename, "Alioli_Wikimedia_Wardtmar.mp4");
    cr_assert_eq(v1->n_instances, 5);
    const mr_region *knife = &v1->instances[2];
    cr_assert_eq(knife->shape.kind, MR_SHAPE_POLYGON);
    cr_assert_eq(knife->shape.n_points, 4);
    cr_assert_str_eq(knife->class_name, "Knife");
    cr_assert_eq(knife->class_id, 6);
    cr_assert(a.records[2].negative);
    mr_annotations_free(&a);

    /* The radio attribute "Type" is found by the default names. */
    const char *types[] = {"Ingredient", "Tool", "Unknown"};
    mr_load_options o2 = {.class_names = types, .n_class_names = 3, .allow_missing_images = true};
    cr_assert_eq(mr_annotations_load(path, &o2, &a), MR_OK, "%s", mr_last_error());
    cr_assert_str_eq(a.records[0].instances[2].class_name, "Tool");
    cr_assert_eq(a.records[0].instances[2].class_id, 2);
    mr_annotations_free(&a);
}

Test(annotations, coco_categories_map_by_name) {
    const char *path = fixture_path("via/coco_ox-vgg_val2017_subset/coco_val2017_3ann.json");
    const char *classes[] = {"person", "bottle", "potted plant"};
    mr_load_options o = {.class_names = classes, .n_class_names = 3, .allow_missing_images = true};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.format, MR_ANN_COCO);
    cr_assert_eq(a.n, 3);
    cr_assert_eq(a.report.n_regions, 3);
    cr_assert_str_eq(a.records[0].key, "397133");
    cr_assert_str_eq(a.records[0].filename, "000000397133.jpg");
    cr_assert_eq(a.records[0].width, 640); /* from images[].width/height */
    cr_assert_eq(a.records[0].height, 427);
    cr_assert_eq(a.records[1].width, 352);
    /* category ids 44 (bottle), 64 (potted plant), 1 (person) */
    cr_assert_eq(a.records[0].instances[0].class_id, 2);
    cr_assert_str_eq(a.records[0].instances[0].class_name, "bottle");
    cr_assert_eq(a.records[1].instances[0].class_id, 3);
    cr_assert_eq(a.records[2].instances[0].class_id, 1);
    const mr_region *bottle = &a.records[0].instances[0];
    cr_assert_eq(bottle->shape.kind, MR_SHAPE_POLYGON);
    double box[4];
    mr_annotations_bbox(bottle, box); /* COCO's bbox [217.62, 240.54, 38.99, 57.75] */
    cr_assert_float_eq(box[1], 217.62, 0.01);
    cr_assert_float_eq(box[0], 240.54, 0.01);
    cr_assert_float_eq(box[3] - box[1], 38.99, 0.01);
    cr_assert_float_eq(box[2] - box[0], 57.75, 0.01);
    mr_annotations_free(&a);
}

/* ---- hand-written files -------------------------------------------------------------------- */

Test(annotations, busi_names_image_labels_and_negatives) {
    char dir[256], path[1024];
    snprintf(dir, sizeof dir, "%s", temp_dir("ann-busi"));
    put_png(dir, "benign (12).png", 30, 20);
    put_png(dir, "normal (3).png", 25, 15);
    put_file(path, sizeof path, dir, "via.json",
             "{\"benign (12).png1234\": {\"filename\": \"benign (12).png\", \"size\": 1234,"
             " \"regions\": [{\"shape_attributes\": {\"name\": \"rect\", \"x\": 2, \"y\": 3,"
             " \"width\": 10, \"height\": 5}, \"region_attributes\": {\"class\": \"benign\"}}],"
             " \"file_attributes\": {\"label\": \"benign\"}},"
             " \"normal (3).png-1\": {\"filename\": \"normal (3).png\", \"size\": -1,"
             " \"regions\": [], \"file_attributes\": {\"label\": \"normal\"}}}");
    const char *classes[] = {"benign", "malignant"};
    mr_load_options o = {.class_names = classes, .n_class_names = 2};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.n_classes, 3);
    cr_assert_str_eq(a.class_names[0], "BG");
    cr_assert_eq(a.records[0].width, 30);
    cr_assert_eq(a.records[0].height, 20);
    cr_assert(ends_with(a.records[0].path, "/benign (12).png"));
    cr_assert_eq(a.records[0].instances[0].class_id, 1);
    cr_assert_eq(a.records[0].image_label, 1);
    cr_assert_not(a.records[0].negative);
    const mr_image_record *n = &a.records[1];
    cr_assert_eq(n->width, 25);
    cr_assert(n->negative);
    cr_assert_eq(n->n_instances, 0);
    cr_assert_eq(n->image_label, -1); /* "normal" is not a class */
    cr_assert_str_eq(n->image_label_name, "normal");
    cr_assert_eq(a.report.n_negatives, 1);
    mr_annotations_free(&a);
}

Test(annotations, via2_project_order_prefix_and_radio_options) {
    char dir[256], path[1024];
    snprintf(dir, sizeof dir, "%s", temp_dir("ann-proj"));
    char sub[512];
    snprintf(sub, sizeof sub, "%s/imgs", dir);
    cr_assert_eq(mkdir(sub, 0755), 0);
    put_png(sub, "a.png", 40, 30);
    put_png(sub, "b.png", 50, 20);
    put_file(
        path, sizeof path, dir, "project.json",
        "{\"_via_settings\": {\"core\": {\"default_filepath\": \"imgs/\"}},\n"
        " \"_via_img_metadata\": {\n"
        "  \"a.png10\": {\"filename\": \"a.png\", \"size\": 10, \"file_attributes\": {},\n"
        "   \"regions\": [{\"shape_attributes\": {\"name\": \"circle\", \"cx\": 10, \"cy\": 10,"
        " \"r\": 4}, \"region_attributes\": {\"lesion\": \"m\"}}]},\n"
        "  \"b.png20\": {\"filename\": \"b.png\", \"size\": \"20\", \"file_attributes\": {},\n"
        "   \"regions\": [{\"shape_attributes\": {\"name\": \"polyline\", \"all_points_x\": [1,2],"
        " \"all_points_y\": [1,2]}, \"region_attributes\": {}},\n"
        "    {\"shape_attributes\": {\"name\": \"ellipse\", \"cx\": 20, \"cy\": 10, \"rx\": 6,"
        " \"ry\": 3, \"theta\": 0.5}, \"region_attributes\": {\"lesion\": {\"b\": true}}}]}},\n"
        " \"_via_attributes\": {\"region\": {\"lesion\": {\"type\": \"radio\", \"options\":"
        " {\"b\": \"benign\", \"m\": \"malignant\"}}}, \"file\": {}},\n"
        " \"_via_data_format_version\": \"2.0.10\",\n"
        " \"_via_image_id_list\": [\"b.png20\", \"a.png10\"]}\n");
    const char *classes[] = {"BG", "benign", "malignant"};
    mr_load_options o = {.class_names = classes, .n_class_names = 3, .class_attribute = "lesion"};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.format, MR_ANN_VIA2_PROJECT);
    cr_assert_eq(a.n, 2);
    cr_assert_str_eq(a.records[0].filename, "b.png"); /* _via_image_id_list order */
    cr_assert(ends_with(a.records[0].path, "/imgs/b.png"), "%s", a.records[0].path);
    cr_assert_eq(a.records[0].width, 50);
    cr_assert_eq(a.report.n_skipped_polyline, 1);
    const mr_region *e = &a.records[0].instances[0];
    cr_assert_eq(e->shape.kind, MR_SHAPE_ELLIPSE);
    cr_assert_float_eq(e->shape.theta, 0.5, 1e-12);
    cr_assert_eq(e->class_id, 1); /* checkbox object {"b": true} -> "benign" */
    cr_assert_eq(a.records[1].instances[0].class_id, 2);
    cr_assert_str_eq(a.records[1].instances[0].class_name, "malignant");
    mr_annotations_free(&a);
}

/* (A region wholly outside its image is an error: tests/test_data_paths.c.) */
Test(annotations, clipping_and_degenerate_regions_are_warnings) {
    char dir[256], path[1024];
    snprintf(dir, sizeof dir, "%s", temp_dir("ann-clip"));
    put_png(dir, "x.png", 20, 10);
    put_file(path, sizeof path, dir, "via.json",
             "{\"x.png1\": {\"filename\": \"x.png\", \"size\": 1, \"regions\": [\n"
             " {\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [-5, 15, 15, -5],"
             " \"all_points_y\": [2, 2, 8, 8]}},\n"
             " {\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [1, 3, 1],"
             " \"all_points_y\": [1, 1, 1]}},\n"
             " {\"shape_attributes\": {\"name\": \"polygon\", \"all_points_x\": [1, 2, 3],"
             " \"all_points_y\": [1, 2, 3]}},\n"
             " {\"shape_attributes\": {\"name\": \"rect\", \"x\": 18, \"y\": -2, \"width\": 5,"
             " \"height\": 5}},\n"
             " {\"shape_attributes\": {\"name\": \"circle\", \"cx\": 1, \"cy\": 5, \"r\": 3}},\n"
             " {\"shape_attributes\": {\"name\": \"rect\", \"x\": 1, \"y\": 1, \"width\": 0,"
             " \"height\": 5}}]}}");
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, NULL, &a), MR_OK, "%s", mr_last_error());
    const mr_image_record *r = &a.records[0];
    cr_assert_eq(r->n_instances, 3);
    const mr_report *rep = &a.report;
    cr_assert_eq(rep->n_degenerate, 3);
    cr_assert_eq(rep->n_clipped_points, 2 + 3);
    cr_assert_eq(rep->n_clipped_regions, 3);
    cr_assert_eq(rep->n_errors, 0);
    /* The polygon is cut at x = 0: box and area stay inside the 20x10 image. */
    const mr_region *p = &r->instances[0];
    cr_assert_float_eq(p->box[1], 0.0, 1e-12);
    cr_assert_float_eq(p->box[3], 15.0, 1e-12);
    cr_assert_float_eq(mr_shape_area(&p->shape), 15.0 * 6.0, 1e-9);
    /* The rect reaching past the top-right corner becomes 18..20 x 0..3. */
    const mr_shape *rc = &r->instances[1].shape;
    cr_assert_eq(rc->kind, MR_SHAPE_RECT);
    cr_assert_float_eq(rc->x, 18.0, 1e-12);
    cr_assert_float_eq(rc->w, 2.0, 1e-12);
    cr_assert_float_eq(rc->y, 0.0, 1e-12);
    cr_assert_float_eq(rc->h, 3.0, 1e-12);
    /* A circle stays exact; its box is clipped. */
    cr_assert_eq(r->instances[2].shape.kind, MR_SHAPE_CIRCLE);
    cr_assert_float_eq(r->instances[2].box[1], 0.0, 1e-12);
    bool saw[3] = {false};
    for (int64_t i = 0; i < rep->n_issues; i++) {
        const char *t = rep->issues[i].text;
        cr_assert_eq(rep->issues[i].level, MR_ISSUE_WARNING);
        saw[0] |= strstr(t, "region 0") && strstr(t, "2 of 4 points lie outside the 20x10") != 0;
        saw[1] |= strstr(t, "region 1") && strstr(t, "2 distinct points") != 0;
        saw[2] |= strstr(t, "region 2") && strstr(t, "zero area") != 0;
    }
    for (int k = 0; k < 3; k++) cr_assert(saw[k], "warning %d missing", k);
    mr_annotations_free(&a);
}

Test(annotations, via3_extreme_shapes_and_string_ids) {
    char dir[256], path[1024];
    snprintf(dir, sizeof dir, "%s", temp_dir("ann-via3"));
    /* No data_format_version, fid_list with strings, an image-level label entry. */
    put_file(path, sizeof path, dir, "p.json",
             "{\"project\": {\"pname\": \"x\"}, \"config\": {}, \"attribute\": {"
             " \"1\": {\"aname\": \"Class\", \"type\": 3, \"options\": {\"0\": \"benign\", \"1\":"
             " \"malignant\", \"2\": \"normal\"}}},"
             " \"file\": {\"1\": {\"fid\": \"1\", \"fname\": \"a.png\", \"type\": 2, \"loc\": 1,"
             " \"src\": \"a.png\"}},"
             " \"view\": {\"1\": {\"fid_list\": [\"1\"]}},"
             " \"metadata\": {"
             "  \"1_a\": {\"vid\": \"1\", \"z\": [], \"xy\": [8, 10, 20, 30, 5, 50, 20, 30, 35],"
             " \"av\": {\"1\": \"0\"}},"
             "  \"1_b\": {\"vid\": \"1\", \"z\": [], \"xy\": [9, 0, 5, 10, 5, 5, 0],"
             " \"av\": {\"1\": \"1\"}},"
             "  \"1_c\": {\"vid\": 1, \"z\": [], \"xy\": [1, 3, 4], \"av\": {}},"
             "  \"1_d\": {\"vid\": \"1\", \"z\": [], \"xy\": [], \"av\": {\"1\": \"2\"}}}}");
    const char *classes[] = {"benign", "malignant"};
    mr_load_options o = {.class_names = classes, .n_class_names = 2, .allow_missing_images = true};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.n, 1);
    const mr_image_record *r = &a.records[0];
    cr_assert_eq(r->n_instances, 2);
    const mr_shape *er = &r->instances[0].shape;
    cr_assert_eq(er->kind, MR_SHAPE_RECT);
    cr_assert_float_eq(er->x, 10.0, 1e-12);
    cr_assert_float_eq(er->y, 5.0, 1e-12);
    cr_assert_float_eq(er->w, 40.0, 1e-12);
    cr_assert_float_eq(er->h, 30.0, 1e-12);
    cr_assert_eq(r->instances[0].class_id, 1);
    const mr_shape *ec = &r->instances[1].shape;
    cr_assert_eq(ec->kind, MR_SHAPE_CIRCLE);
    cr_assert_float_eq(ec->cx, 5.0, 1e-9);
    cr_assert_float_eq(ec->cy, 5.0, 1e-9);
    cr_assert_float_eq(ec->rx, 5.0, 1e-9);
    cr_assert_eq(r->instances[1].class_id, 2);
    cr_assert_eq(a.report.n_skipped_point, 1);
    cr_assert_str_eq(r->image_label_name, "normal");
    cr_assert_eq(r->image_label, -1);
    mr_annotations_free(&a);
}

Test(annotations, folder_with_two_annotation_files_is_ambiguous) {
    char dir[256], path[1024];
    snprintf(dir, sizeof dir, "%s", temp_dir("ann-amb"));
    put_file(path, sizeof path, dir, "a.json", "{}");
    put_file(path, sizeof path, dir, "b.csv", "filename,file_size\n");
    put_file(path, sizeof path, dir, "via_attributes.json", "{\"region\": {}}");
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(dir, NULL, &a), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "2 annotation files"), "%s", mr_last_error());
    cr_assert(strstr(mr_last_error(), "a.json, b.csv"), "%s", mr_last_error());
    mr_annotations_free(&a);
}

Test(annotations, csv_groups_rows_by_filename_and_ignores_region_count) {
    char dir[256], path[1024];
    snprintf(dir, sizeof dir, "%s", temp_dir("ann-csv"));
    put_file(path, sizeof path, dir, "r.csv",
             "filename,file_size,file_attributes,region_count,region_id,region_shape_attributes,"
             "region_attributes\r\n"
             "\"a, b.png\",1,\"{}\",5,0,\"{\"\"name\"\":\"\"rect\"\",\"\"x\"\":1,\"\"y\"\":1,"
             "\"\"width\"\":2,\"\"height\"\":2}\",\"{\"\"type\"\":\"\"k\"\"}\"\r\n"
             "c.png,2,\"{\"\"label\"\":\"\"normal\"\"}\",0,0,\"{}\",\"{}\"\r\n"
             "\"a, b.png\",1,\"{}\",1,7,\"{\"\"name\"\":\"\"circle\"\",\"\"cx\"\":5,\"\"cy\"\":5,"
             "\"\"r\"\":2}\",\"{\"\"type\"\":\"\"k\"\"}\"\r\n");
    mr_load_options o = {.allow_missing_images = true};
    mr_annotations a;
    cr_assert_eq(mr_annotations_load(path, &o, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.n, 2);
    cr_assert_str_eq(a.records[0].filename, "a, b.png");
    cr_assert_str_eq(a.records[0].key, "a, b.png1");
    cr_assert_eq(a.records[0].n_instances, 2);
    cr_assert_eq(a.records[0].instances[1].region, 1);
    cr_assert_str_eq(a.records[0].instances[1].class_name, "k");
    cr_assert(a.records[1].negative);
    cr_assert_str_eq(a.records[1].image_label_name, "normal");
    mr_annotations_free(&a);
}

/* ---- geometry ------------------------------------------------------------------------------ */

Test(annotations, circle_and_rotated_ellipse_rasterise_by_pixel_centres) {
    uint8_t mask[11 * 11];
    memset(mask, 0, sizeof mask);
    mr_shape c = {.kind = MR_SHAPE_CIRCLE, .cx = 5, .cy = 5, .rx = 2, .ry = 2};
    /* Centres with dx^2 + dy^2 <= 4: 1 + 4 + 4 + 4 = 13. */
    cr_assert_eq(mr_shape_rasterize(&c, mask, 11, 11, 1), 13);
    cr_assert_eq(mask[5 * 11 + 7], 1);
    cr_assert_eq(mask[7 * 11 + 7], 0);

    memset(mask, 0, sizeof mask);
    mr_shape e = {.kind = MR_SHAPE_ELLIPSE, .cx = 5, .cy = 5, .rx = 4, .ry = 1, .theta = M_PI / 2};
    /* Rotated a quarter turn: tall and thin. */
    int64_t n = mr_shape_rasterize(&e, mask, 11, 11, 7);
    cr_assert_eq(n, 9 + 2);
    cr_assert_eq(mask[1 * 11 + 5], 7);
    cr_assert_eq(mask[9 * 11 + 5], 7);
    cr_assert_eq(mask[5 * 11 + 1], 0);
    double box[4];
    mr_shape_extent(&e, box);
    cr_assert_float_eq(box[0], 1.0, 1e-9);
    cr_assert_float_eq(box[1], 4.0, 1e-9);
    cr_assert_float_eq(box[2], 9.0, 1e-9);
    cr_assert_float_eq(box[3], 6.0, 1e-9);

    /* Shapes reaching outside the mask are clipped, not written out of bounds. */
    memset(mask, 0, sizeof mask);
    mr_shape big = {.kind = MR_SHAPE_CIRCLE, .cx = 0, .cy = 0, .rx = 100, .ry = 100};
    cr_assert_eq(mr_shape_rasterize(&big, mask, 11, 11, 1), 121);
}

Test(annotations, shapes_convert_to_polygons) {
    mr_shape e = {.kind = MR_SHAPE_ELLIPSE, .cx = 10, .cy = 20, .rx = 5, .ry = 2, .theta = 0.3};
    mr_shape p;
    cr_assert_eq(mr_shape_to_polygon(&e, 0, &p), MR_OK);
    cr_assert_eq(p.kind, MR_SHAPE_POLYGON);
    cr_assert_eq(p.n_points, 72);
    cr_assert_eq(p.n_rings, 1);
    /* phi = 0 lies on the rotated major axis. */
    cr_assert_float_eq(p.xs[0], 10 + 5 * cos(0.3), 1e-12);
    cr_assert_float_eq(p.ys[0], 20 + 5 * sin(0.3), 1e-12);
    cr_assert_float_eq(mr_shape_area(&p), M_PI * 10, 0.05);
    mr_shape_free(&p);

    mr_shape r = {.kind = MR_SHAPE_RECT, .x = 1, .y = 1, .w = 2, .h = 2};
    cr_assert_eq(mr_shape_to_polygon(&r, 0, &p), MR_OK);
    cr_assert_eq(p.n_points, 4);
    cr_assert_float_eq(mr_shape_area(&p), 4.0, 1e-12);
    uint8_t a[25] = {0}, b[25] = {0};
    /* A rect and its polygon fill the same pixels (raster.c's closed rule: 3x3). */
    cr_assert_eq(mr_shape_rasterize(&r, a, 5, 5, 1), 9);
    cr_assert_eq(mr_shape_rasterize(&p, b, 5, 5, 1), 9);
    cr_assert_arr_eq(a, b, sizeof a);
    mr_shape copy;
    cr_assert_eq(mr_shape_copy(&p, &copy), MR_OK);
    cr_assert_neq(copy.xs, p.xs);
    cr_assert_float_eq(copy.xs[2], 3.0, 1e-12);
    mr_shape_free(&copy);
    mr_shape_free(&p);
}

/* ---- check-data ---------------------------------------------------------------------------- */

Test(annotations, check_data_prints_the_report) {
    const char *path = fixture_path("via/via2x_ox-vgg_basic_demo/via_region_data.json");
    char args[4200], out[16384];
    snprintf(args, sizeof args,
             "check-data --data '%s' --classes Bird,Human,'Cup (object)' --attribute type", path);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "images: 2"), "%s", out);
    cr_assert(strstr(out, "instances: 4"), "%s", out);
    cr_assert(strstr(out, "Human"), "%s", out);
    cr_assert(strstr(out, "box size: width 34.0-312.0 px, height 24.0-227.0 px"), "%s", out);
    cr_assert(strstr(out, "problems: 0 errors, 0 warnings"), "%s", out);

    snprintf(args, sizeof args, "check-data --data '%s' --classes swan,plato", path);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "error: ") && strstr(out, "unknown class 'Socrates'"), "%s", out);
    cr_assert(strstr(out, "unknown class 'Hemlock'"), "%s", out); /* every problem */
    cr_assert(strstr(out, "problems: 2 errors, 0 warnings"), "%s", out);

    /* One problem is counted in the singular. */
    snprintf(args, sizeof args, "check-data --data '%s' --classes Bird,Human --attribute type",
             path);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "problems: 1 error, 0 warnings"), "%s", out);
}

/* A VIA annotations file is read one image entry at a time (data/via_json.c), so memory does not
 * grow with the file; the same entries inside a VIA 2 project take the whole-document path. Both
 * must give the same records, keys with JSON escapes and a byte-order mark included. */
Test(annotations, entries_read_one_at_a_time_equal_the_whole_document) {
    const char *dir = temp_dir("entries");
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.out_dir = dir;
    o.n_images = 24;
    o.size = 64;
    o.val_fraction = 0.0;
    cr_assert_eq(mr_synth_write(&o), MR_OK, "%s", mr_last_error());
    char flat[700], project[700];
    snprintf(flat, sizeof flat, "%s/train/via_region_data.json", dir);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(mr_read_file(flat, "annotations", (size_t)64 << 20, &text, &len), MR_OK);
    /* One more entry whose key needs unescaping, before the others, and a BOM in front. */
    const char *extra = "{\"synth_00002.png \\\"copy\\\" \\u00e9\": {\"filename\": "
                        "\"synth_00002.png\", \"size\": 1, \"regions\": [{\"shape_attributes\": "
                        "{\"name\": \"rect\", \"x\": 3, \"y\": 4, \"width\": 20, \"height\": 10}, "
                        "\"region_attributes\": {\"class\": \"malignant\"}}]},";
    const char *brace = strchr(text, '{');
    cr_assert_not_null(brace);
    FILE *f = fopen(flat, "w");
    cr_assert_not_null(f);
    fprintf(f, "\xEF\xBB\xBF%s%s", extra, brace + 1);
    fclose(f);
    snprintf(project, sizeof project, "%s/train/project.json", dir);
    f = fopen(project, "w");
    cr_assert_not_null(f);
    fprintf(f, "{\"_via_img_metadata\": %s%s}", extra, brace + 1);
    fclose(f);
    free(text);
    mr_annotations a, b;
    cr_assert_eq(mr_annotations_load(flat, NULL, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_annotations_load(project, NULL, &b), MR_OK, "%s", mr_last_error());
    cr_assert_eq(a.format, MR_ANN_VIA2_JSON);
    cr_assert_eq(b.format, MR_ANN_VIA2_PROJECT);
    cr_assert_eq(a.n, 25);
    cr_assert_eq(a.n, b.n);
    cr_assert_eq(a.report.n_regions, b.report.n_regions);
    cr_assert_eq(a.report.n_issues, b.report.n_issues);
    cr_assert_str_eq(a.records[0].key, "synth_00002.png \"copy\" \xC3\xA9");
    for (int64_t i = 0; i < a.n; i++) {
        const mr_image_record *x = &a.records[i], *y = &b.records[i];
        cr_assert_str_eq(x->key, y->key);
        cr_assert_str_eq(x->filename, y->filename);
        cr_assert_eq(x->width, y->width);
        cr_assert_eq(x->n_instances, y->n_instances, "%s", x->key);
        cr_assert_eq(x->negative, y->negative);
        for (int64_t k = 0; k < x->n_instances; k++) {
            const mr_region *p = &x->instances[k], *q = &y->instances[k];
            cr_assert_eq(p->class_id, q->class_id);
            cr_assert_eq(p->shape.n_points, q->shape.n_points);
            for (int64_t v = 0; v < p->shape.n_points; v++)
                cr_assert(p->shape.xs[v] == q->shape.xs[v] && p->shape.ys[v] == q->shape.ys[v]);
            for (int c = 0; c < 4; c++) cr_assert_eq(p->box[c], q->box[c]);
        }
    }
    mr_annotations_free(&a);
    mr_annotations_free(&b);
    /* What JSON refuses is refused here too, with the whole-document path's line and column. */
    f = fopen(flat, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s}", extra);
    fclose(f);
    cr_assert_neq(mr_annotations_load(flat, NULL, &a), MR_OK, "a comma before the closing brace");
    cr_assert_not_null(strstr(mr_last_error(), "malformed JSON at line 1"), "%s", mr_last_error());
    mr_annotations_free(&a);
}

/* Overlay drawing: a translucent fill changes exactly the mask pixels, outlines sit on the mask's
 * edge, boxes and text clip at the image borders (labels move inside), and the text rasteriser
 * draws something legible-sized for any byte string. */
#include <string.h>

#include "../data/draw.h"
#include "testutil.h"

static mr_image make_image(int w, int h, uint8_t base) {
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, w, h, 3), MR_OK);
    for (int i = 0; i < w * h * 3; i++) img.pixels[i] = (uint8_t)(base + (i * 7) % 50);
    return img;
}

static bool px_equal(const mr_image *a, const mr_image *b, int i) {
    return !memcmp(a->pixels + 3 * i, b->pixels + 3 * i, 3);
}

Test(draw, translucent_fill_changes_exactly_the_mask_pixels) {
    const int w = 40, h = 30;
    mr_image img = make_image(w, h, 60), orig = make_image(w, h, 60);
    uint8_t *mask = calloc((size_t)(w * h), 1);
    for (int y = 5; y < 20; y++)
        for (int x = 8; x < 30; x++)
            if ((x - 18) * (x - 18) + (y - 12) * (y - 12) < 60) mask[y * w + x] = 1;
    mr_color c = {250, 10, 200};
    int64_t n = mr_draw_mask_fill(&img, mask, c, 0.4f);
    int64_t inside = 0;
    for (int i = 0; i < w * h; i++) {
        if (!mask[i]) {
            cr_assert(px_equal(&img, &orig, i), "pixel %d outside the mask changed", i);
            continue;
        }
        inside++;
        const uint8_t *p = img.pixels + 3 * i, *o = orig.pixels + 3 * i;
        const uint8_t want[3] = {c.r, c.g, c.b};
        for (int k = 0; k < 3; k++) {
            /* Translucent: moved towards the colour, not onto it. */
            int lo = o[k] < want[k] ? o[k] : want[k], hi = o[k] < want[k] ? want[k] : o[k];
            cr_assert(p[k] > lo && p[k] < hi, "pixel %d channel %d: %d from %d towards %d", i, k,
                      p[k], o[k], want[k]);
            int expect = (int)lrintf((float)o[k] + 0.4f * ((float)want[k] - (float)o[k]));
            cr_assert_eq(p[k], expect);
        }
    }
    cr_assert_eq(n, inside);
    cr_assert_gt(inside, 100);
    free(mask);
    mr_image_free(&img);
    mr_image_free(&orig);
}

Test(draw, outline_is_the_masks_edge) {
    const int w = 20, h = 20;
    mr_image img = make_image(w, h, 0);
    uint8_t *mask = calloc((size_t)(w * h), 1);
    for (int y = 0; y < 8; y++) /* touches the top border */
        for (int x = 5; x < 15; x++) mask[y * w + x] = 1;
    mr_color c = {255, 255, 255};
    int64_t n = mr_draw_mask_outline(&img, mask, c);
    /* Rows 0 and 7 (10 px each) + columns 5 and 14 on rows 1..6. */
    cr_assert_eq(n, 10 + 10 + 2 * 6);
    cr_assert(!memcmp(img.pixels + 3 * (0 * w + 9), (uint8_t[]){255, 255, 255}, 3));
    cr_assert(memcmp(img.pixels + 3 * (4 * w + 9), (uint8_t[]){255, 255, 255}, 3) != 0,
              "interior pixel painted");
    free(mask);
    mr_image_free(&img);
}

Test(draw, boxes_clip_at_the_borders) {
    mr_image img = make_image(16, 12, 0);
    mr_color c = {1, 2, 3};
    mr_draw_box(&img, -5, -5, 100, 100, c, 2); /* all four sides outside: nothing */
    mr_draw_box(&img, 2, 3, 9, 14, c, 1);
    cr_assert(!memcmp(img.pixels + 3 * (2 * 16 + 3), (uint8_t[]){1, 2, 3}, 3));
    cr_assert(!memcmp(img.pixels + 3 * (8 * 16 + 13), (uint8_t[]){1, 2, 3}, 3), "y2/x2 exclusive");
    cr_assert(memcmp(img.pixels + 3 * (5 * 16 + 8), (uint8_t[]){1, 2, 3}, 3) != 0, "hollow");
    mr_draw_box(&img, 10, 14, 30, 40, c, 3); /* partly outside */
    cr_assert(!memcmp(img.pixels + 3 * (11 * 16 + 15), (uint8_t[]){1, 2, 3}, 3));
    mr_image_free(&img);
}

/* Counts pixels of colour c inside and outside a rectangle (x0, y0, x1, y1). */
static void count_colour(const mr_image *img, mr_color c, const int r[4], int *in, int *out) {
    *in = *out = 0;
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++) {
            const uint8_t *p = img->pixels + 3 * (y * img->width + x);
            if (p[0] != c.r || p[1] != c.g || p[2] != c.b) continue;
            bool inside = x >= r[0] && x < r[2] && y >= r[1] && y < r[3];
            (*in) += inside;
            (*out) += !inside;
        }
}

Test(draw, labels_stay_inside_the_image) {
    const mr_color fg = {255, 255, 255}, bg = {0, 0, 255};
    int tw, th, tw2, th2;
    mr_draw_text_size("benign 0.93", 1, &tw, &th);
    mr_draw_text_size("benign 0.93", 3, &tw2, &th2);
    cr_assert(tw > 40 && th >= 7 && th <= 12, "%dx%d", tw, th);
    cr_assert_eq(tw2, 3 * tw);
    cr_assert_eq(th2, 3 * th);

    /* Anchored at each corner and beyond: moved inside, text drawn, nothing outside the label. */
    const int anchors[][2] = {{-20, -20}, {95, 75}, {200, 5}, {5, 300}, {60, 40}};
    for (size_t a = 0; a < sizeof anchors / sizeof anchors[0]; a++) {
        mr_image img;
        cr_assert_eq(mr_image_alloc(&img, 100, 80, 3), MR_OK); /* black */
        int r[4];
        mr_draw_label(&img, anchors[a][0], anchors[a][1], "malignant 0.71", 1, 2, fg, bg, r);
        cr_assert(r[0] >= 0 && r[1] >= 0 && r[2] <= 100 && r[3] <= 80, "anchor %zu", a);
        mr_draw_text_size("malignant 0.71", 1, &tw, &th);
        cr_assert_eq(r[2] - r[0], tw + 4, "anchor %zu: the whole label fits", a);
        cr_assert_eq(r[3] - r[1], th + 4);
        int in_fg, out_fg, in_bg, out_bg;
        count_colour(&img, fg, r, &in_fg, &out_fg);
        count_colour(&img, bg, r, &in_bg, &out_bg);
        cr_assert_gt(in_fg, 40, "anchor %zu: text drawn", a);
        cr_assert_eq(out_fg + out_bg, 0, "anchor %zu: drawn outside the label", a);
        cr_assert_eq(in_fg + in_bg, (r[2] - r[0]) * (r[3] - r[1]));
        mr_image_free(&img);
    }

    /* Wider than the image: starts at the left border and is clipped on the right. */
    mr_image small;
    cr_assert_eq(mr_image_alloc(&small, 30, 10, 3), MR_OK);
    int r[4];
    mr_draw_label(&small, 10, 3, "a very long label", 2, 1, fg, bg, r);
    cr_assert(r[0] == 0 && r[1] == 0 && r[2] == 30 && r[3] == 10, "%d %d %d %d", r[0], r[1], r[2],
              r[3]);
    mr_image_free(&small);
}

Test(draw, any_bytes_render_without_overflow) {
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, 8, 8, 3), MR_OK);
    const char text[] = "l\xc3\xa9sion \x01\x7f\xff\t~";
    int w, h;
    mr_draw_text_size(text, 1, &w, &h);
    cr_assert_gt(w, 0);
    /* Pen far outside on every side: clipped, nothing written out of bounds (ASan checks). */
    mr_color c = {9, 9, 9};
    mr_draw_text(&img, -1000, -3, text, 5, c);
    mr_draw_text(&img, 6, 6, text, 5, c);
    mr_draw_text(&img, -3, 1000, text, 1, c);
    mr_draw_text(&img, 2, 2, "", 1, c);
    mr_image_free(&img);
}

Test(draw, class_colours_are_distinct) {
    /* Okabe-Ito: benign blue and malignant orange, told apart with every common colour
     * vision deficiency; seven colours, then the palette repeats. */
    cr_assert(mr_draw_class_color(1).b > 150 && mr_draw_class_color(1).r < 50, "benign blue");
    cr_assert(mr_draw_class_color(2).r > 200 && mr_draw_class_color(2).b < 50, "malignant orange");
    for (int a = 1; a <= 7; a++)
        for (int b = a + 1; b <= 7; b++) {
            mr_color x = mr_draw_class_color(a), y = mr_draw_class_color(b);
            cr_assert(x.r != y.r || x.g != y.g || x.b != y.b, "classes %d and %d", a, b);
        }
    cr_assert_eq(mr_draw_text_color((mr_color){255, 225, 25}).r, 0, "dark text on yellow");
    cr_assert_eq(mr_draw_text_color((mr_color){0, 0, 128}).r, 255, "light text on navy");
}

static bool overlap(const int a[4], const int b[4]) {
    return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

/* Two lesions side by side, a third just below the first: every label lies outside every box
 * (none hides a lesion) and no two labels overlap. */
Test(draw, labels_stay_off_the_lesions_and_each_other) {
    const double boxes[12] = {40, 20, 80, 60, 40, 62, 80, 100, 90, 20, 120, 60};
    const int sizes[6] = {70, 12, 70, 12, 70, 12};
    int rects[3][4];
    mr_draw_label_layout(160, 160, 3, boxes, sizes, rects);
    for (int i = 0; i < 3; i++) {
        cr_assert(rects[i][0] >= 0 && rects[i][2] <= 160 && rects[i][1] >= 0 && rects[i][3] <= 160,
                  "label %d inside the image", i);
        for (int k = 0; k < 3; k++) {
            int box[4] = {(int)boxes[4 * k + 1], (int)boxes[4 * k], (int)boxes[4 * k + 3],
                          (int)boxes[4 * k + 2]};
            cr_assert(!overlap(rects[i], box), "label %d covers box %d", i, k);
        }
        for (int j = 0; j < i; j++)
            cr_assert(!overlap(rects[i], rects[j]), "labels %d and %d overlap", i, j);
    }
}

/* Twelve detections on a 128 px image: labels that find no clear place are left out, never
 * stacked over another label or another lesion. */
Test(draw, crowded_labels_are_left_out_rather_than_stacked) {
    enum { N = 12 };
    double boxes[4 * N];
    int sizes[2 * N], rects[N][4];
    for (int i = 0; i < N; i++) {
        double y = 10 + 36 * (i / 4), x = 4 + 31 * (i % 4);
        const double b[4] = {y, x, y + 24, x + 26};
        memcpy(boxes + 4 * i, b, sizeof b);
        sizes[2 * i] = 50;
        sizes[2 * i + 1] = 9;
    }
    mr_draw_label_layout(128, 128, N, boxes, sizes, rects);
    int drawn = 0;
    for (int i = 0; i < N; i++) {
        if (rects[i][2] == rects[i][0]) continue;
        drawn++;
        cr_assert(rects[i][0] >= 0 && rects[i][2] <= 128 && rects[i][1] >= 0 && rects[i][3] <= 128,
                  "label %d inside the image", i);
        for (int k = 0; k < N; k++) {
            int box[4] = {(int)boxes[4 * k + 1], (int)boxes[4 * k], (int)boxes[4 * k + 3],
                          (int)boxes[4 * k + 2]};
            cr_assert(k == i || !overlap(rects[i], box), "label %d covers box %d", i, k);
        }
        for (int j = 0; j < i; j++)
            cr_assert(rects[j][2] == rects[j][0] || !overlap(rects[i], rects[j]),
                      "labels %d and %d overlap", i, j);
    }
    cr_assert(rects[0][2] > rects[0][0], "the best detection keeps its label");
    cr_assert(drawn >= 3 && drawn < N, "%d of %d labels drawn", drawn, N);
}

Test(draw, an_image_without_detections_is_marked) {
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, 100, 80, 3), MR_OK);
    memset(img.pixels, 30, 100 * 80 * 3);
    const mr_instances none = {0};
    mr_draw_detections(&img, &none, NULL, 0);
    int64_t changed = 0;
    for (int64_t i = 0; i < 100 * 80 * 3; i++) changed += img.pixels[i] != 30;
    cr_assert_gt(changed, 100, "a 'no detections' mark is drawn");
    mr_image_free(&img);
}

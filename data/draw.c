/* Overlay drawing: per-pixel blends for masks, outlines, boxes, and text from stb_easy_font, whose
 * glyphs are lists of axis-aligned unit quads; each quad becomes a scale x scale filled block. */
#include "draw.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <stb_easy_font.h>

/* Sasha Trubetskoy's "distinct colours", reordered so the first two classes (benign, malignant
 * in the BUSI configs) are green and red. */
/* Okabe and Ito's colour-blind-safe palette: benign (class 1) blue, malignant (class 2)
 * orange, then bluish green, vermillion, sky blue, reddish purple, yellow; the class name is
 * always written beside the colour as well. */
static const mr_color palette[] = {
    {0, 114, 178},  {230, 159, 0},   {0, 158, 115},  {213, 94, 0},
    {86, 180, 233}, {204, 121, 167}, {240, 228, 66},
};

mr_color mr_draw_class_color(int class_id) {
    int n = (int)(sizeof palette / sizeof palette[0]);
    int i = class_id >= 1 ? (class_id - 1) % n : 0;
    return palette[i];
}

mr_color mr_draw_text_color(mr_color bg) {
    /* Rec. 601 luma: dark text on light backgrounds. */
    int luma = (299 * bg.r + 587 * bg.g + 114 * bg.b) / 1000;
    return luma > 140 ? (mr_color){0, 0, 0} : (mr_color){255, 255, 255};
}

static void require_rgb(const mr_image *img) {
    MR_REQUIRE(img && img->pixels && img->channels == 3,
               "drawing needs a 3-channel image (got %d channels)", img ? img->channels : 0);
}

static void put_px(mr_image *img, int64_t x, int64_t y, mr_color c) {
    if (x < 0 || y < 0 || x >= img->width || y >= img->height) return;
    uint8_t *p = img->pixels + ((size_t)y * (size_t)img->width + (size_t)x) * 3;
    p[0] = c.r;
    p[1] = c.g;
    p[2] = c.b;
}

static uint8_t blend(uint8_t p, uint8_t c, float alpha) {
    float v = (float)p + alpha * ((float)c - (float)p);
    return (uint8_t)lrintf(v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v);
}

int64_t mr_draw_mask_fill(mr_image *img, const uint8_t *mask, mr_color c, float alpha) {
    require_rgb(img);
    alpha = alpha < 0.0f ? 0.0f : alpha > 1.0f ? 1.0f : alpha;
    int64_t n = 0, np = (int64_t)img->width * img->height;
    for (int64_t i = 0; i < np; i++) {
        if (!mask[i]) continue;
        uint8_t *p = img->pixels + i * 3;
        p[0] = blend(p[0], c.r, alpha);
        p[1] = blend(p[1], c.g, alpha);
        p[2] = blend(p[2], c.b, alpha);
        n++;
    }
    return n;
}

int64_t mr_draw_mask_outline(mr_image *img, const uint8_t *mask, mr_color c) {
    require_rgb(img);
    int64_t w = img->width, h = img->height, n = 0;
    for (int64_t y = 0; y < h; y++)
        for (int64_t x = 0; x < w; x++) {
            if (!mask[y * w + x]) continue;
            bool edge = x == 0 || y == 0 || x == w - 1 || y == h - 1 || !mask[y * w + x - 1] ||
                        !mask[y * w + x + 1] || !mask[(y - 1) * w + x] || !mask[(y + 1) * w + x];
            if (!edge) continue;
            put_px(img, x, y, c);
            n++;
        }
    return n;
}

/* Fills [x0, x1) x [y0, y1), clipped. */
static void fill_rect(mr_image *img, int64_t x0, int64_t y0, int64_t x1, int64_t y1, mr_color c) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > img->width) x1 = img->width;
    if (y1 > img->height) y1 = img->height;
    for (int64_t y = y0; y < y1; y++)
        for (int64_t x = x0; x < x1; x++) put_px(img, x, y, c);
}

void mr_draw_box(mr_image *img, int64_t y1, int64_t x1, int64_t y2, int64_t x2, mr_color c,
                 int thickness) {
    require_rgb(img);
    if (thickness < 1) thickness = 1;
    if (y2 <= y1 || x2 <= x1) return;
    int64_t t = thickness;
    fill_rect(img, x1, y1, x2, y1 + t < y2 ? y1 + t : y2, c); /* top */
    fill_rect(img, x1, y2 - t > y1 ? y2 - t : y1, x2, y2, c); /* bottom */
    fill_rect(img, x1, y1, x1 + t < x2 ? x1 + t : x2, y2, c); /* left */
    fill_rect(img, x2 - t > x1 ? x2 - t : x1, y1, x2, y2, c); /* right */
}

/* ---- text ---------------------------------------------------------------------------------- */

/* stb_easy_font indexes its tables by (char - 32) and knows 32..126 only. */
static char printable(char ch) {
    unsigned char u = (unsigned char)ch;
    if (u == '\t' || u == '\n' || u == '\r') return ' ';
    return u >= 32 && u < 127 ? ch : '?';
}

/* One glyph's quads, in font units relative to the pen; returns the quad count. A glyph has at
 * most a few dozen segments; 64 bytes per quad. */
#define GLYPH_BUF 4096
typedef struct {
    float x, y, z;
    unsigned char color[4];
} font_vertex;

static int glyph_quads(char ch, font_vertex *vbuf, int *advance) {
    char s[2] = {printable(ch), '\0'};
    *advance = stb_easy_font_width(s);
    return stb_easy_font_print(0.0f, 0.0f, s, NULL, vbuf, GLYPH_BUF);
}

/* Walks every quad of `text` at `scale`, with the pen at (x, y). When img is NULL only the
 * extent is measured into *w, *h. */
static void text_walk(mr_image *img, int x, int y, const char *text, int scale, mr_color c, int *w,
                      int *h) {
    _Alignas(16) font_vertex vbuf[GLYPH_BUF / sizeof(font_vertex)];
    int pen = 0, max_x = 0, max_y = 0;
    for (const char *p = text; *p; p++) {
        int advance = 0, quads = glyph_quads(*p, vbuf, &advance);
        for (int q = 0; q < quads; q++) {
            /* Vertices 0 and 2 are opposite corners of the axis-aligned quad. */
            const font_vertex *a = &vbuf[4 * q], *b = &vbuf[4 * q + 2];
            int qx0 = pen + (int)lrintf(fminf(a->x, b->x)),
                qx1 = pen + (int)lrintf(fmaxf(a->x, b->x));
            int qy0 = (int)lrintf(fminf(a->y, b->y)), qy1 = (int)lrintf(fmaxf(a->y, b->y));
            max_x = qx1 > max_x ? qx1 : max_x;
            max_y = qy1 > max_y ? qy1 : max_y;
            if (img)
                fill_rect(img, (int64_t)x + (int64_t)qx0 * scale, (int64_t)y + (int64_t)qy0 * scale,
                          (int64_t)x + (int64_t)qx1 * scale, (int64_t)y + (int64_t)qy1 * scale, c);
        }
        pen += advance;
    }
    if (w) *w = max_x * scale;
    if (h) *h = max_y * scale;
}

void mr_draw_text_size(const char *text, int scale, int *width, int *height) {
    if (scale < 1) scale = 1;
    text_walk(NULL, 0, 0, text, scale, (mr_color){0, 0, 0}, width, height);
}

void mr_draw_text(mr_image *img, int x, int y, const char *text, int scale, mr_color c) {
    require_rgb(img);
    if (scale < 1) scale = 1;
    text_walk(img, x, y, text, scale, c, NULL, NULL);
}

void mr_draw_label(mr_image *img, int x, int y, const char *text, int scale, int pad, mr_color fg,
                   mr_color bg, int rect[4]) {
    require_rgb(img);
    if (scale < 1) scale = 1;
    if (pad < 0) pad = 0;
    int tw = 0, th = 0;
    mr_draw_text_size(text, scale, &tw, &th);
    int64_t w = (int64_t)tw + 2 * pad, h = (int64_t)th + 2 * pad;
    int64_t x0 = x, y0 = y;
    /* Move inside: first away from the right/bottom border, then the left/top one wins, so a
     * label wider than the image starts at 0 and is clipped on the right. */
    if (x0 + w > img->width) x0 = img->width - w;
    if (y0 + h > img->height) y0 = img->height - h;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    fill_rect(img, x0, y0, x0 + w, y0 + h, bg);
    text_walk(img, (int)(x0 + pad), (int)(y0 + pad), text, scale, fg, NULL, NULL);
    if (rect) {
        rect[0] = (int)x0;
        rect[1] = (int)y0;
        rect[2] = (int)(x0 + w < img->width ? x0 + w : img->width);
        rect[3] = (int)(y0 + h < img->height ? y0 + h : img->height);
    }
}

void mr_draw_detections(mr_image *rgb, const mr_instances *d, const char *const *class_names,
                        int64_t n_classes) {
    const int64_t n = d->n, *class_ids = d->class_ids;
    const double *boxes = d->boxes;
    const uint8_t *masks = d->masks;
    int side = rgb->width < rgb->height ? rgb->width : rgb->height;
    int scale = side >= 384 ? (side + 128) / 256 : 1, thick = side >= 500 ? side / 250 : 1;
    size_t plane = (size_t)rgb->width * (size_t)rgb->height;
    for (int64_t i = n - 1; i >= 0; i--) {
        mr_color c = mr_draw_class_color((int)class_ids[i]);
        mr_draw_mask_fill(rgb, masks + (size_t)i * plane, c, 0.4f);
        mr_draw_mask_outline(rgb, masks + (size_t)i * plane, c);
        const double *b = boxes + 4 * i;
        mr_draw_box(rgb, (int64_t)b[0], (int64_t)b[1], (int64_t)b[2], (int64_t)b[3], c, thick);
    }
    /* Labels last, so no mask is painted over them; placed outside their boxes and apart. */
    int(*rects)[4] = n > 0 ? malloc(sizeof *rects * (size_t)n) : NULL;
    int *widths = n > 0 ? malloc(sizeof *widths * (size_t)n * 2) : NULL;
    char(*texts)[96] = n > 0 ? malloc(sizeof *texts * (size_t)n) : NULL;
    int pad = scale;
    for (int64_t i = 0; rects && widths && texts && i < n; i++) {
        const char *name =
            class_ids[i] >= 0 && class_ids[i] < n_classes ? class_names[class_ids[i]] : "?";
        snprintf(texts[i], sizeof texts[i], "%s %.2f", name, (double)d->scores[i]);
        int tw = 0, th = 0;
        mr_draw_text_size(texts[i], scale, &tw, &th);
        widths[2 * i] = tw + 2 * pad;
        widths[2 * i + 1] = th + 2 * pad;
    }
    if (rects && widths && texts) {
        mr_draw_label_layout(rgb->width, rgb->height, n, boxes, widths, rects);
        for (int64_t i = 0; i < n; i++) {
            if (rects[i][2] == rects[i][0]) continue; /* no room left for it */
            mr_color c = mr_draw_class_color((int)class_ids[i]);
            mr_draw_label(rgb, rects[i][0], rects[i][1], texts[i], scale, pad,
                          mr_draw_text_color(c), c, NULL);
        }
    }
    free(rects);
    free(widths);
    free(texts);
    if (n == 0) /* a visible mark, so "nothing found" is not mistaken for "not run" */
        mr_draw_label(rgb, 2, 2, "no detections", scale, pad, (mr_color){255, 255, 255},
                      (mr_color){90, 90, 90}, NULL);
}

static bool rects_overlap(const int a[4], const int b[4]) {
    return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

/* Whether r is clear of the labels placed before label i, and of every box but `own` (-1:
 * none). */
static bool label_spot_clear(const int r[4], int64_t i, int64_t n, const double *boxes,
                             int (*rects)[4], int64_t own) {
    for (int64_t j = 0; j < i; j++)
        if (rects[j][2] > rects[j][0] && rects_overlap(r, rects[j])) return false;
    for (int64_t j = 0; j < n; j++) {
        if (j == own) continue;
        const double *o = boxes + 4 * j;
        const int box[4] = {(int)o[1], (int)o[0], (int)o[3], (int)o[2]};
        if (rects_overlap(r, box)) return false;
    }
    return true;
}

void mr_draw_label_layout(int width, int height, int64_t n, const double *boxes, const int *sizes,
                          int (*rects)[4]) {
    for (int64_t i = 0; i < n; i++) {
        const double *b = boxes + 4 * i;
        int w = sizes[2 * i], h = sizes[2 * i + 1];
        /* Above the box, below it, then inside its top edge (a box as tall as the image). */
        const int tries[3] = {(int)b[0] - h, (int)b[2], (int)b[0]};
        /* Level with the box's left edge, then its right edge, then half a label either way. */
        const int xs[4] = {(int)b[1], (int)b[3] - w, (int)b[1] - w / 2, (int)b[1] + w / 2};
        bool placed = false;
        /* Each spot as is, then moved away from labels in the way, a label height at a time:
         * up for the spot above the box, down for the others. */
        for (int spot = 0; spot < 3 && !placed; spot++)
            for (int k = 0; k < 8 && !placed; k++) {
                int y = tries[spot] + (spot == 0 ? -1 : 1) * k * h;
                if (y < 0 || y + h > height) break;
                for (int a = 0; a < 4 && !placed; a++) {
                    int x = xs[a] + w > width ? width - w : xs[a];
                    x = x < 0 ? 0 : x;
                    int r[4] = {x, y, x + w, y + h};
                    if (label_spot_clear(r, i, n, boxes, rects, spot == 2 ? i : -1)) {
                        memcpy(rects[i], r, sizeof r);
                        placed = true;
                    }
                }
            }
        /* Crowded: no label rather than one over another (the box keeps its class colour). */
        if (!placed) rects[i][0] = rects[i][1] = rects[i][2] = rects[i][3] = 0;
    }
}

/* The drawing primitives under mr_draw_detections (draw.h): class colours, boxes and text
 * labels (img with 3 channels, as in draw.h). Internal to data/draw.c and its tests. */
#ifndef MR_DRAW_INTERNAL_H
#define MR_DRAW_INTERNAL_H

#include "draw.h"

/* A colour per class id from a fixed palette of well-separated hues (class 1 first; ids past
 * the palette cycle). Fixed rather than random so a class looks the same in every overlay. */
mr_color mr_draw_class_color(int class_id);
/* Black or white, whichever reads better on `bg`. */
mr_color mr_draw_text_color(mr_color bg);

/* Outline of the box (y1, x1, y2, x2), y2/x2 exclusive as detection boxes are, `thickness`
 * pixels drawn inwards; the parts outside the image are clipped. */
void mr_draw_box(mr_image *img, int64_t y1, int64_t x1, int64_t y2, int64_t x2, mr_color c,
                 int thickness);

/* Size in pixels of `text` drawn at integer `scale` (1 = stb_easy_font's native ~7 px capitals),
 * padding excluded. Characters outside printable ASCII are drawn as '?'. */
void mr_draw_text_size(const char *text, int scale, int *width, int *height);
/* Draws `text` (one line) with its top-left corner at (x, y), clipped to the image. */
void mr_draw_text(mr_image *img, int x, int y, const char *text, int scale, mr_color c);
/* A label: `text` on a filled background rectangle with `pad` pixels around it. The rectangle's
 * top-left corner is placed at (x, y), then moved the least needed to lie inside the image;
 * a label larger than the image is clipped at its right and bottom. rect (may be NULL) gets the
 * rectangle drawn as (x0, y0, x1, y1), x1/y1 exclusive, clipped to the image. */
void mr_draw_label(mr_image *img, int x, int y, const char *text, int scale, int pad, mr_color fg,
                   mr_color bg, int rect[4]);

#endif

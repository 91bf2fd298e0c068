/* Drawing detections onto RGB images for people to look at: translucent mask fills with opaque
 * outlines, box outlines, and text labels (stb_easy_font's segment font rasterised here). Every
 * primitive clips to the image, so nothing written near a border lands outside it. */
#ifndef MR_DRAW_H
#define MR_DRAW_H

#include <stdint.h>

#include "../layers/boxes.h"
#include "image.h"

typedef struct {
    uint8_t r, g, b;
} mr_color;

/* A colour per class id from a fixed palette of well-separated hues (class 1 first; ids past
 * the palette cycle). Fixed rather than random so a class looks the same in every overlay. */
mr_color mr_draw_class_color(int class_id);
/* Black or white, whichever reads better on `bg`. */
mr_color mr_draw_text_color(mr_color bg);

/* img must have 3 channels (caller bug otherwise); mask is (img->height, img->width), non-zero =
 * inside. */

/* Blends `c` into every mask pixel: p = p + alpha * (c - p), rounded; alpha in [0, 1]. Pixels
 * outside the mask are untouched. Returns the number of mask pixels. */
int64_t mr_draw_mask_fill(mr_image *img, const uint8_t *mask, mr_color c, float alpha);
/* Paints, opaque, the mask pixels that touch (4-neighbourhood) a pixel outside the mask or the
 * image border. Returns the number of pixels painted. */
int64_t mr_draw_mask_outline(mr_image *img, const uint8_t *mask, mr_color c);
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

/* Where the labels of n detections go, best first: above the box, else below it, else inside
 * its top edge, moved a label height at a time (and half a label sideways) past labels already
 * placed and other boxes, so labels cover neither a lesion nor one another. A label with no such
 * place left is not drawn: its rect is all zeros. sizes (n, 2) label width and height in pixels;
 * rects (n, 4) x0, y0, x1, y1 (exclusive) out. */
void mr_draw_label_layout(int width, int height, int64_t n, const double *boxes, const int *sizes,
                          int (*rects)[4]);

/* Detections on an RGB image of their own size: each mask filled translucent in its class
 * colour with an opaque outline, its box, and a "class score" label above the box; the lowest
 * score is drawn first so the best detection stays on top; labels are placed by
 * mr_draw_label_layout. An image without detections gets a "no detections" mark. d's masks are
 * full size (height x width); class_names[class_id] for the labels.
 */
void mr_draw_detections(mr_image *rgb, const mr_instances *d, const char *const *class_names,
                        int64_t n_classes);

#endif

/* Drawing detections onto RGB images for people to look at: translucent mask fills with opaque
 * outlines, box outlines, and text labels (stb_easy_font's segment font rasterised here). Every
 * primitive clips to the image, so nothing written near a border lands outside it. */
#ifndef MR_DRAW_H
#define MR_DRAW_H

#include <stdint.h>

#include "image.h"

typedef struct {
    uint8_t r, g, b;
} mr_color;

/* img must have 3 channels (caller bug otherwise); mask is (img->height, img->width), non-zero =
 * inside. */

/* Blends `c` into every mask pixel: p = p + alpha * (c - p), rounded; alpha in [0, 1]. Pixels
 * outside the mask are untouched. Returns the number of mask pixels. */
int64_t mr_draw_mask_fill(mr_image *img, const uint8_t *mask, mr_color c, float alpha);
/* Paints, opaque, the mask pixels that touch (4-neighbourhood) a pixel outside the mask or the
 * image border. Returns the number of pixels painted. */
int64_t mr_draw_mask_outline(mr_image *img, const uint8_t *mask, mr_color c);

/* Detections on an RGB image of their own size: each mask filled translucent in its class
 * colour with an opaque outline, its box, and a "class score" label above the box; the lowest
 * score is drawn first so the best detection stays on top. masks: (n, height, width) 0/1;
 * boxes (n, 4) y1, x1, y2, x2 (y2/x2 exclusive); class_names[class_id] for the labels. */
void mr_draw_detections(mr_image *rgb, int64_t n, const int64_t *boxes, const int64_t *class_ids,
                        const float *scores, const uint8_t *masks, const char *const *class_names,
                        int64_t n_classes);

#endif

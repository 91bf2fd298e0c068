/* Pyramid ROI Align (Matterport's PyramidROIAlign): each box is assigned an FPN level from its
 * size and sampled into a pool x pool grid, in one of two modes. Differentiable with respect to
 * the feature maps (never the boxes, as Matterport stops that gradient). */
#ifndef MR_ROI_ALIGN_H
#define MR_ROI_ALIGN_H

#include "../core/tensor.h"

typedef enum {
    /* TF crop_and_resize on the normalised box: one bilinear sample per cell, samples on the
     * box edges spread evenly, zero outside the map (Matterport, the default). */
    MR_ROI_CROP_AND_RESIZE = 0,
    /* He et al.: bins of the box in feature pixels, sampling ratio 2 (four bilinear samples
     * per bin at offsets 0.25 and 0.75) averaged; torchvision roi_align, aligned=False. */
    MR_ROI_AVERAGE = 1,
} mr_roi_align_mode;

/* The FPN level (2..5) of a normalised box (y1,x1,y2,x2) on an image of image_area pixels:
 * clamp(4 + round_half_even(log2(sqrt(h*w) / (224 / sqrt(image_area)))), 2, 5). Zero-size
 * boxes (padding) go to level 2 as in Matterport. */
int mr_roi_level(const float *box, double image_area);

/* features[0..3] = P2..P5, each (B, Hl, Wl, C); boxes (N, 4) normalised to the image of
 * image_h x image_w pixels; batch_index[i] = the image of box i. Returns (N, pool, pool, C). */
mr_tensor *mr_roi_align(mr_ctx *ctx, mr_tensor *const features[4], const float *boxes,
                        const int32_t *batch_index, int64_t n_boxes, int pool, int image_h,
                        int image_w, mr_roi_align_mode mode);

#endif

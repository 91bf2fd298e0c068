/* Single-channel image resampling, each matching the library Matterport used bit for bit where
 * it matters: TF crop_and_resize, skimage-style bilinear resize, and the mini-mask
 * minimize/expand built on it. Used by the training targets, detection and the data pipeline. */
#ifndef MR_RESAMPLE_H
#define MR_RESAMPLE_H

#include <stdint.h>

#include "../core/status.h"

/* All planes single channel, row-major (h, w). */

/* tf.image.crop_and_resize of one normalised box (y1, x1, y2, x2) of an h x w image to
 * out_h x out_w, bilinear: sample row i sits at y1*(h-1) + i*(y2-y1)*(h-1)/(out_h-1) (the box
 * centre when out_h == 1), likewise columns; samples outside [0, h-1] x [0, w-1] give
 * `extrapolation`. The _u8 form reads a byte mask as bool (nonzero = 1) without a copy.
 * Positions are computed in float32 in TF's order, so its edge effect is kept: box (0, 0, 1, 1)
 * of a 56-pixel side at 28 outputs puts the last sample at 27 * float(55/27) = 55.0000038,
 * outside, giving `extrapolation` for the last row and column. */
void mr_crop_and_resize(float *out, int64_t out_h, int64_t out_w, const float *image, int64_t h,
                        int64_t w, const float box[4], float extrapolation);
void mr_crop_and_resize_u8(float *out, int64_t out_h, int64_t out_w, const uint8_t *image,
                           int64_t h, int64_t w, const float box[4], float extrapolation);

/* skimage.transform.resize(order=1, mode="constant", cval=0, clip=True, no anti-aliasing),
 * Matterport's utils.resize: source = (dst + 0.5) * in/out - 0.5, neighbours outside the
 * image count as 0, then the output is clipped to the input's [min, max] (an output exactly 0
 * stays 0 when 0 lies outside that range). Computed in double like skimage. */
mr_status mr_resize_bilinear(float *out, int64_t out_h, int64_t out_w, const float *in,
                             int64_t in_h, int64_t in_w);

/* The same resize, thresholded on the exact double value: out = (value >= threshold). */
mr_status mr_resize_threshold(uint8_t *out, int64_t out_h, int64_t out_w, const float *in,
                              int64_t in_h, int64_t in_w, double threshold);

/* minimize_mask for one instance: crop mask[y1:y2, x1:x2] (integer pixel box, y2/x2
 * exclusive), resize it to mini_h x mini_w as above and round (np.around: 0.5 goes to 0).
 * An empty or out-of-image box is MR_ERR_ARG, as Matterport raises. */
mr_status mr_minimize_mask(uint8_t *mini, int64_t mini_h, int64_t mini_w, const uint8_t *mask,
                           int64_t h, int64_t w, const int64_t box[4]);
/* expand_mask for one instance: resize the mini mask to the box and round it into a zeroed
 * h x w mask (pixels of the box outside the image are dropped). */
mr_status mr_expand_mask(uint8_t *mask, int64_t h, int64_t w, const uint8_t *mini, int64_t mini_h,
                         int64_t mini_w, const int64_t box[4]);

/* Copies src (the box's size, (y2 - y1) x (x2 - x1)) into the h x w mask at the box's place;
 * the parts of the box outside the mask are dropped. */
void mr_paste_box(uint8_t *mask, int64_t h, int64_t w, const uint8_t *src, const int64_t box[4]);

#endif

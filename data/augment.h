/* Training augmentation on a molded sample: horizontal flip, small scale and shift about the
 * image centre, brightness/contrast/gamma jitter and multiplicative speckle, applied in place
 * to the float image and its instance masks. Every draw comes from one seed: same seed, same
 * result, bit for bit. Depends on core only. */
#ifndef MR_AUGMENT_H
#define MR_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"

/* Ranges of the random draws; a zero range (or probability 0) turns that op off. Defaults
 * (mr_augment_defaults) are deliberately mild: lesion shape and echo texture are diagnostic
 * in ultrasound, so nothing here rotates, shears or flips vertically (the skin is on top). */
typedef struct {
    float flip_prob;            /* horizontal flip probability (0.5) */
    float scale_min, scale_max; /* zoom factor about the centre, uniform (0.9, 1.1) */
    float translate;            /* shift, uniform in +-translate * side on each axis (0.05) */
    float brightness;           /* additive, uniform in +-brightness * 255 (0.1) */
    float contrast;             /* factor about the content's mean, uniform 1 +- contrast (0.15) */
    float gamma;                /* exponent exp(u), u uniform in +-gamma (0.2) */
    float speckle;              /* multiplicative noise 1 + sigma * N(0, 1), one value per pixel
                                   shared by the channels, sigma uniform in [0, speckle] (0.08) */
} mr_augment_params;

mr_augment_params mr_augment_defaults(void);
/* Everything off: the image and masks are left untouched. */
mr_augment_params mr_augment_none(void);
/* False when every op is off (mr_augment would change nothing). */
bool mr_augment_enabled(const mr_augment_params *p);

/* What one call drew (for logs and tests). */
typedef struct {
    int flipped;
    float scale, shift_y, shift_x; /* shift in pixels */
    float brightness, contrast, gamma, speckle;
} mr_augment_draw;

/* Augments one molded sample in place.
 *   image (side, side, channels): normalised floats as mr_mold_image writes them; the real
 *       intensity is image * pixel_std + mean_pixel (pixel_std NULL: image + mean_pixel). Content
 * is what the window (y1, x1, y2, x2, exclusive; NULL = the whole image) holds; the rest is padding
 * (intensity 0). masks (n, side, side): 0/1 instance masks; they follow the image (nearest
 * neighbour) so masks, and boxes taken from them afterwards, stay on the pixels they marked.
 * Geometry first (bilinear for the image, with intensity 0 outside, as padding; a pixel whose
 * source lies outside the content becomes padding), then brightness, contrast and gamma on the
 * content only, clamped to [0, 255], then speckle. Padding stays exactly what molding wrote, so the
 * network never sees a jittered border. `seed` picks every draw; `draw` (may be NULL) receives
 * them. Masks may become empty (an instance pushed out of the frame): the caller drops those. */
mr_status mr_augment(float *image, int64_t side, int channels, const float *mean_pixel,
                     const float *pixel_std, const int64_t window[4], uint8_t *masks, int64_t n,
                     const mr_augment_params *params, uint64_t seed, mr_augment_draw *draw);

#endif

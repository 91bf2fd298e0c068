/* Rasterising annotation shapes into instance masks with skimage.draw.polygon's rule:
 * a pixel (row r, column c) is inside when its centre (c, r) lies inside the polygon
 * (even-odd rule, points on an edge or vertex count as inside, as current skimage does);
 * vertices may be fractional, negative or beyond the image (clipped). */
#ifndef MR_RASTER_H
#define MR_RASTER_H

#include <stdint.h>

/* Sets mask[r * width + c] = value for every pixel whose centre is inside the polygon.
 * Returns the number of pixels set. */
int64_t mr_raster_polygon(uint8_t *mask, int width, int height, const double *xs, const double *ys,
                          int n_points, uint8_t value);

#endif

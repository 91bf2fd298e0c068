/* Rasterising annotation shapes into instance masks with skimage.draw.polygon's rule:
 * a pixel (row r, column c) is inside when its centre (c, r) lies inside the polygon
 * (even-odd rule, points on an edge or vertex count as inside, as current skimage does);
 * vertices may be fractional, negative or beyond the image (clipped). And the way back: masks
 * to polygons that this rule turns into the same pixels. */
#ifndef MR_RASTER_H
#define MR_RASTER_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/status.h"

/* Sets mask[r * width + c] = value for every pixel whose centre is inside the polygon.
 * Returns the number of pixels set (-1: out of memory). */
int64_t mr_raster_polygon(uint8_t *mask, int width, int height, const double *xs, const double *ys,
                          int n_points, uint8_t value);

/* Where original-image coordinates land in the mask: x' = (x + 0.5) * sx - 0.5 + left, and so
 * for y (pixel centres kept on pixel centres, as a resize maps them). NULL: the identity. */
typedef struct {
    double sy, sx, top, left;
} mr_placement;

/* Half-extents (ex along x, ey along y) of the bounding box of an ellipse with radii rx, ry
 * rotated by theta radians. */
void mr_ellipse_half_extent(double rx, double ry, double theta, double *ex, double *ey);
/* Sets mask[r * width + c] = value for every pixel whose centre, mapped back through `p` to the
 * original image, is inside or on the ellipse (centre cx, cy, radii rx, ry, rotated by theta):
 * the exact pixel-centre test, closed like mr_raster_polygon, exact under unequal axis scales.
 * Returns the number of pixels set; radii that are not > 0 set none. */
int64_t mr_raster_ellipse(uint8_t *mask, int width, int height, double cx, double cy, double rx,
                          double ry, double theta, const mr_placement *p, uint8_t value);

/* Matterport's extract_bboxes for one mask (h rows of w): box = (y1, x1, y2, x2) of the pixels
 * set, y2 and x2 one past the last; false (box untouched) when the mask is empty. */
bool mr_mask_box(const uint8_t *mask, int64_t h, int64_t w, int64_t box[4]);

/* ---- masks to polygons ---------------------------------------------------------------- */

/* Share of a component's pixels that simplifying its polygon may change (pixels gained plus
 * pixels lost, against the exact polygon's raster). So every simplified polygon keeps an IoU of
 * at least 0.995 and its area within 0.5%, and so does the union of a mask's polygons. */
#define MR_POLYGON_MAX_ERROR 0.005

typedef struct {
    int n_points;
    double *xs, *ys;    /* outer boundary, no closing repeat; see mr_mask_to_polygons */
    int64_t area;       /* pixels in the component */
    int x0, y0, x1, y1; /* bounding box of the component, inclusive */
    int holes;          /* background regions enclosed by the component (4-connected) */
    int64_t hole_px;    /* pixels in those holes; the polygon covers them */
    int64_t error_px;   /* pixels where the polygon's raster differs from the component with
                         * its holes filled: 0 when exact, at most MR_POLYGON_MAX_ERROR * area */
} mr_mask_polygon;

typedef struct {
    mr_mask_polygon *items;
    int count;
    int tiny_skipped; /* components smaller than min_pixels, not in items */
    int64_t tiny_px;
} mr_mask_polygons;

/* One polygon per 8-connected component of the non-zero pixels of `mask` (height rows of
 * width), in raster order of each component's first pixel. Components with fewer than
 * `min_pixels` pixels are counted in tiny_skipped and left out.
 *
 * The exact polygon is the component's outer boundary along pixel edges: vertices at the pixel
 * corners where it turns (x +- 0.5, y +- 0.5), clockwise on screen, touching itself at corners
 * where the component continues diagonally. No pixel centre lies on it, so mr_raster_polygon
 * turns it back into the component exactly, with one exception: a polygon has no holes, so the
 * outer boundary fills them (`holes` and `hole_px` say what it covers beyond the component).
 *
 * `tolerance` > 0 simplifies: Douglas-Peucker with that distance in pixels on the path through
 * the midpoints of the boundary edges (vertices then at x.5 in one coordinate and whole in the
 * other), halved three times until the result rasterises to within MR_POLYGON_MAX_ERROR of the
 * exact polygon; when none does, or none has fewer vertices, the exact polygon stays. So a
 * small component, where one pixel is more than that share, keeps its pixels exactly.
 *
 * Vertices on the image's left or top border are moved from -0.5 to 0: the pixels stay the same
 * (centres on the boundary count) and loaders that clip polygons to the image have nothing to
 * clip. */
mr_status mr_mask_to_polygons(const uint8_t *mask, int width, int height, int min_pixels,
                              double tolerance, mr_mask_polygons *out);
void mr_mask_polygons_free(mr_mask_polygons *p);

#endif

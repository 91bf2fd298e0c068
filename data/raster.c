/* Polygon rasterising with scikit-image's rule (current skimage.draw.polygon) as a
 * scanline fill: O(edges + rows + active edges per row + filled area), clipped to the image,
 * so a million vertices or vertices far outside the image cost no more than they must. */

/* The rule, exactly as skimage's point_in_polygon (O'Rourke's crossing test) decides it for the
 * centre (x = c, y = r) of pixel (r, c):
 *   - for every edge from the previous vertex (x1, y1) to the current one (x0, y0), shifted so
 *     the centre is the origin, v = (x0*y1 - x1*y0) / (y1 - y0) is where the edge meets the row;
 *   - a "right" crossing is an edge with one end strictly below the row and the other at or above
 *     it ((y0 > 0) != (y1 > 0)) that meets the row at v > 0; a "left" crossing is an edge with
 *     ((y0 < 0) != (y1 < 0)) that meets it at v < 0; horizontal edges never count;
 *   - the centre is within 1e-12 of a vertex          -> VERTEX (filled);
 *     the two crossing counts differ in parity        -> EDGE   (filled);
 *     both counts are odd                             -> INSIDE (filled);
 *     otherwise                                       -> OUTSIDE.
 * So the polygon is closed: centres exactly on an edge or vertex are filled (the square with
 * corners (1,1) and (3,3) fills the 3x3 pixels of rows and columns 1..3), and self-intersecting
 * polygons follow the even-odd rule; tests/test_raster.c checks skimage's own docstring example
 * and fuzzes against a per-pixel port of the test. Older skimage releases (matterport's era)
 * used a half-open pnpoly test that left right and bottom edges out; the current rule is
 * symmetric (the mask does not depend on vertex order) and closer to cv2.fillPoly's masks. */
#include "raster.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double x0, y0; /* current vertex (skimage's i) */
    double x1, y1; /* previous vertex (skimage's i - 1) */
    int first_row, last_row;
} edge;

typedef struct {
    int begin, end; /* [begin, end) */
} span;

/* skimage's crossing position relative to the centre (c, r), with its operation order so the
 * sign matches bit for bit. */
static double crossing(const edge *e, double c, double r) {
    double x0 = e->x0 - c, y0 = e->y0 - r;
    double x1 = e->x1 - c, y1 = e->y1 - r;
    return (x0 * y1 - x1 * y0) / (y1 - y0);
}

/* The real crossing x of the edge with row r, computed without overflow (a convex combination
 * of the two x's) and clamped, as a first guess for the integer thresholds below. */
static double crossing_guess(const edge *e, double r, int width) {
    double t = (r - e->y1) / (e->y0 - e->y1);
    double x = e->x1 * (1.0 - t) + e->x0 * t;
    if (!(x > -2.0)) return -2.0; /* also catches NaN */
    if (x > (double)width + 2.0) return (double)width + 2.0;
    return x;
}

/* Guesses are off by at most a rounding step; a few exact evaluations settle the threshold. The
 * bound keeps absurd inputs (coordinates near DBL_MAX, where skimage's own arithmetic is noise)
 * finite in time. */
#define MR_RASTER_FIX_STEPS 4

/* Smallest column t in [0, width] with crossing > 0 false for every column >= t: right
 * crossings are counted for the columns c < t. */
static int right_threshold(const edge *e, double r, int width) {
    int t = (int)ceil(crossing_guess(e, r, width));
    if (t < 0) t = 0;
    if (t > width) t = width;
    for (int k = 0; k < MR_RASTER_FIX_STEPS && t > 0 && !(crossing(e, t - 1, r) > 0); k++) t--;
    for (int k = 0; k < MR_RASTER_FIX_STEPS && t < width && crossing(e, t, r) > 0; k++) t++;
    return t;
}

/* Smallest column t in [0, width] from which crossing < 0 holds: left crossings are counted for
 * the columns c >= t. */
static int left_threshold(const edge *e, double r, int width) {
    int t = (int)floor(crossing_guess(e, r, width)) + 1;
    if (t < 0) t = 0;
    if (t > width) t = width;
    for (int k = 0; k < MR_RASTER_FIX_STEPS && t > 0 && crossing(e, t - 1, r) < 0; k++) t--;
    for (int k = 0; k < MR_RASTER_FIX_STEPS && t < width && !(crossing(e, t, r) < 0); k++) t++;
    return t;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return (x->begin > y->begin) - (x->begin < y->begin);
}

static void sort_ints(int *v, int n) {
    if (n > 16) {
        qsort(v, (size_t)n, sizeof *v, cmp_int);
        return;
    }
    for (int i = 1; i < n; i++) {
        int x = v[i], j = i;
        for (; j > 0 && v[j - 1] > x; j--) v[j] = v[j - 1];
        v[j] = x;
    }
}

/* Columns whose count of thresholds <= c is odd: [t0, t1), [t2, t3), ... (n is even). */
static int pairs_to_spans(const int *t, int n, span *out) {
    int k = 0;
    for (int i = 0; i + 1 < n; i += 2)
        if (t[i] < t[i + 1]) out[k++] = (span){t[i], t[i + 1]};
    return k;
}

/* Row index range [first, last] of integer rows within [lo, hi], clipped to the image; empty
 * when first > last. Clamping in double first keeps the int conversion defined. */
static void row_range(double lo, double hi, int height, int *first, int *last) {
    double a = ceil(lo < -1.0 ? -1.0 : lo);
    double b = floor(hi > (double)height ? (double)height : hi);
    if (a < 0.0) a = 0.0;
    if (b > (double)height - 1.0) b = (double)height - 1.0;
    *first = (int)a;
    *last = b < a ? (int)a - 1 : (int)b;
}

typedef struct {
    int row, col;
} cell;

static int cmp_cell(const void *a, const void *b) {
    const cell *x = a, *y = b;
    if (x->row != y->row) return (x->row > y->row) - (x->row < y->row);
    return (x->col > y->col) - (x->col < y->col);
}

int64_t mr_raster_polygon(uint8_t *mask, int width, int height, const double *xs, const double *ys,
                          int n_points, uint8_t value) {
    if (!mask || !xs || !ys || width <= 0 || height <= 0 || n_points < 1) return 0;
    for (int i = 0; i < n_points; i++)
        if (!isfinite(xs[i]) || !isfinite(ys[i])) return 0; /* no defined answer; callers check */

    size_t n = (size_t)n_points;
    edge *edges = malloc(n * sizeof *edges);
    int *bucket_start = calloc((size_t)height + 1, sizeof *bucket_start);
    int *order = malloc(n * sizeof *order);
    int *active = malloc(n * sizeof *active);
    int *rt = malloc(n * sizeof *rt), *lt = malloc(n * sizeof *lt);
    span *spans = malloc((n + 2 * n + 2) * sizeof *spans);
    cell *verts = malloc(n * sizeof *verts);
    int64_t filled = -1; /* the only failure: out of memory */
    if (!edges || !bucket_start || !order || !active || !rt || !lt || !spans || !verts) goto done;
    filled = 0;

    /* Edges that touch at least one image row, bucketed by their first row (counting sort). */
    int n_edges = 0;
    for (int i = 0; i < n_points; i++) {
        int j = i == 0 ? n_points - 1 : i - 1;
        edge e = {xs[i], ys[i], xs[j], ys[j], 0, -1};
        if (e.y0 == e.y1) continue; /* horizontal: never a crossing */
        row_range(fmin(e.y0, e.y1), fmax(e.y0, e.y1), height, &e.first_row, &e.last_row);
        if (e.first_row > e.last_row) continue;
        edges[n_edges++] = e;
        bucket_start[e.first_row + 1]++;
    }
    for (int r = 0; r < height; r++) bucket_start[r + 1] += bucket_start[r];
    {
        int *fill = malloc(((size_t)height + 1) * sizeof *fill);
        if (!fill) {
            filled = -1;
            goto done;
        }
        memcpy(fill, bucket_start, ((size_t)height + 1) * sizeof *fill);
        for (int k = 0; k < n_edges; k++) order[fill[edges[k].first_row]++] = k;
        free(fill);
    }

    /* Centres within skimage's 1e-12 of a vertex are filled whatever the crossings say. */
    int n_verts = 0;
    for (int i = 0; i < n_points; i++) {
        double rc = nearbyint(xs[i]), rr = nearbyint(ys[i]);
        if (rc < 0.0 || rc >= (double)width || rr < 0.0 || rr >= (double)height) continue;
        if (fabs(xs[i] - rc) < 1e-12 && fabs(ys[i] - rr) < 1e-12)
            verts[n_verts++] = (cell){(int)rr, (int)rc};
    }
    qsort(verts, (size_t)n_verts, sizeof *verts, cmp_cell);

    int n_active = 0, vi = 0;
    for (int r = 0; r < height; r++) {
        double y = (double)r;
        for (int k = bucket_start[r]; k < bucket_start[r + 1]; k++) active[n_active++] = order[k];
        int nr = 0, nl = 0, kept = 0;
        for (int k = 0; k < n_active; k++) {
            const edge *e = &edges[active[k]];
            if (e->last_row < r) continue; /* finished: drop from the active list */
            active[kept++] = active[k];
            if ((e->y0 > y) != (e->y1 > y)) rt[nr++] = right_threshold(e, y, width);
            if ((e->y0 < y) != (e->y1 < y)) lt[nl++] = left_threshold(e, y, width);
        }
        n_active = kept;
        while (vi < n_verts && verts[vi].row < r) vi++;
        if (nr == 0 && nl == 0 && (vi >= n_verts || verts[vi].row != r)) continue;

        /* Filled = (right count odd) or (left count odd) or vertex: the union of three span
         * lists, merged after sorting by start. */
        sort_ints(rt, nr);
        sort_ints(lt, nl);
        int ns = pairs_to_spans(rt, nr, spans);
        ns += pairs_to_spans(lt, nl, spans + ns);
        for (; vi < n_verts && verts[vi].row == r; vi++)
            spans[ns++] = (span){verts[vi].col, verts[vi].col + 1};
        if (ns == 0) continue;
        qsort(spans, (size_t)ns, sizeof *spans, cmp_span);
        uint8_t *row = mask + (int64_t)r * width;
        int cur_b = spans[0].begin, cur_e = spans[0].end;
        for (int k = 1; k <= ns; k++) {
            if (k < ns && spans[k].begin <= cur_e) {
                if (spans[k].end > cur_e) cur_e = spans[k].end;
                continue;
            }
            memset(row + cur_b, value, (size_t)(cur_e - cur_b));
            filled += cur_e - cur_b;
            if (k < ns) cur_b = spans[k].begin, cur_e = spans[k].end;
        }
    }

done:
    free(edges);
    free(bucket_start);
    free(order);
    free(active);
    free(rt);
    free(lt);
    free(spans);
    free(verts);
    return filled;
}

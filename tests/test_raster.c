/* Tests for data/raster.c: hand-computed pixel sets for the skimage.draw.polygon rule (closed
 * polygon, even-odd), clipping, degenerate and huge inputs, and a fuzz comparison against a
 * direct per-pixel port of skimage's point_in_polygon. Then masks to polygons: exact outlines
 * (pixel for pixel, holes filled), hand-checked vertices, and simplified polygons within 0.5% of
 * the pixels on thin, spiky, holed, border-touching and random masks. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../data/raster.h"
#include "testutil.h"

/* skimage/_shared/geometry.pyx point_in_polygon, one pixel at a time: the oracle. */
static int ref_point_in_polygon(const double *xp, const double *yp, int n, double x, double y) {
    double x1 = xp[n - 1] - x, y1 = yp[n - 1] - y;
    unsigned l_cross = 0, r_cross = 0;
    for (int i = 0; i < n; i++) {
        double x0 = xp[i] - x, y0 = yp[i] - y;
        if (-1e-12 < x0 && x0 < 1e-12 && -1e-12 < y0 && y0 < 1e-12) return 2;
        if ((y0 > 0) != (y1 > 0) && (x0 * y1 - x1 * y0) / (y1 - y0) > 0) r_cross++;
        if ((y0 < 0) != (y1 < 0) && (x0 * y1 - x1 * y0) / (y1 - y0) < 0) l_cross++;
        x1 = x0;
        y1 = y0;
    }
    if ((r_cross & 1) != (l_cross & 1)) return 3;
    return (int)(r_cross & 1);
}

static int64_t ref_raster(uint8_t *mask, int w, int h, const double *xs, const double *ys, int n) {
    int64_t k = 0;
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++)
            if (ref_point_in_polygon(xs, ys, n, c, r)) mask[r * w + c] = 1, k++;
    return k;
}

/* Compares a mask with a picture: one string per row, '#' = filled, '.' = empty. */
static void expect_picture(const uint8_t *mask, int w, int h, const char *const *rows) {
    for (int r = 0; r < h; r++)
        for (int c = 0; c < w; c++)
            cr_assert_eq(mask[r * w + c] != 0, rows[r][c] == '#', "pixel (row %d, col %d)", r, c);
}

static int64_t fill(uint8_t *mask, int w, int h, const double *xs, const double *ys, int n) {
    memset(mask, 0, (size_t)w * (size_t)h);
    return mr_raster_polygon(mask, w, h, xs, ys, n, 1);
}

Test(raster, convex_square_half_integer_corners) {
    /* Corners at .5: centres 1, 2, 3 lie strictly inside on both axes, none on the boundary. */
    const double xs[] = {0.5, 3.5, 3.5, 0.5}, ys[] = {0.5, 0.5, 3.5, 3.5};
    uint8_t m[6 * 5];
    cr_assert_eq(fill(m, 6, 5, xs, ys, 4), 9);
    const char *pic[] = {"......", ".###..", ".###..", ".###..", "......"};
    expect_picture(m, 6, 5, pic);
}

Test(raster, convex_square_integer_corners_is_closed) {
    /* Corners (1,1)-(3,3): centres on every edge and corner are filled (skimage >= 0.19), so
     * 3x3 pixels, the same for either vertex order. */
    const double xs[] = {1, 3, 3, 1}, ys[] = {1, 1, 3, 3};
    const double xr[] = {1, 1, 3, 3}, yr[] = {1, 3, 3, 1};
    uint8_t m[5 * 5];
    const char *pic[] = {".....", ".###.", ".###.", ".###.", "....."};
    cr_assert_eq(fill(m, 5, 5, xs, ys, 4), 9);
    expect_picture(m, 5, 5, pic);
    cr_assert_eq(fill(m, 5, 5, xr, yr, 4), 9);
    expect_picture(m, 5, 5, pic);
}

Test(raster, triangle_matches_skimage_docstring) {
    /* skimage.draw.polygon's own example: r = [1, 2, 8], c = [1, 7, 4] on a 10x10 image. */
    const double xs[] = {1, 7, 4}, ys[] = {1, 2, 8};
    uint8_t m[100];
    const char *pic[] = {"..........", ".#........", "..######..", "..#####...", "...####...",
                         "...###....", "....##....", "....#.....", "....#.....", ".........."};
    cr_assert_eq(fill(m, 10, 10, xs, ys, 3), 23);
    expect_picture(m, 10, 10, pic);
}

Test(raster, concave_l_shape) {
    const double xs[] = {0.5, 4.5, 4.5, 2.5, 2.5, 0.5}, ys[] = {0.5, 0.5, 2.5, 2.5, 5.5, 5.5};
    uint8_t m[6 * 7];
    const char *pic[] = {"......", ".####.", ".####.", ".##...", ".##...", ".##...", "......"};
    cr_assert_eq(fill(m, 6, 7, xs, ys, 6), 14);
    expect_picture(m, 6, 7, pic);
}

Test(raster, concave_u_shape) {
    /* A U: two arms (columns 1-2 and 5-6, rows 1-5) joined by a base (rows 4-5); the notch
     * (columns 3-4, rows 1-3) stays empty. */
    const double xs[] = {0.5, 2.5, 2.5, 4.5, 4.5, 6.5, 6.5, 0.5};
    const double ys[] = {0.5, 0.5, 3.5, 3.5, 0.5, 0.5, 5.5, 5.5};
    uint8_t m[8 * 7];
    const char *pic[] = {"........", ".##..##.", ".##..##.", ".##..##.",
                         ".######.", ".######.", "........"};
    cr_assert_eq(fill(m, 8, 7, xs, ys, 8), 24);
    expect_picture(m, 8, 7, pic);
}

Test(raster, bow_tie_even_odd) {
    /* Self-intersecting at (3.5, 3.5): the two side triangles are inside, top and bottom are
     * not. Centres on the diagonals (c == r or c == 7 - r) lie on an edge and are filled. */
    const double xs[] = {0.5, 6.5, 6.5, 0.5}, ys[] = {0.5, 6.5, 0.5, 6.5};
    uint8_t m[8 * 8];
    const char *pic[] = {"........", ".#....#.", ".##..##.", ".######.",
                         ".######.", ".##..##.", ".#....#.", "........"};
    cr_assert_eq(fill(m, 8, 8, xs, ys, 4), 24);
    expect_picture(m, 8, 8, pic);
}

Test(raster, two_squares_touching_at_a_vertex) {
    /* One outline that visits both squares and meets itself at (2.5, 2.5). */
    const double xs[] = {0.5, 2.5, 2.5, 4.5, 4.5, 2.5, 2.5, 0.5};
    const double ys[] = {0.5, 0.5, 2.5, 2.5, 4.5, 4.5, 2.5, 2.5};
    uint8_t m[6 * 6];
    const char *pic[] = {"......", ".##...", ".##...", "...##.", "...##.", "......"};
    cr_assert_eq(fill(m, 6, 6, xs, ys, 8), 8);
    expect_picture(m, 6, 6, pic);

    /* Integer corners: the closed squares share the pixel (2, 2). */
    const double xi[] = {0, 2, 2, 4, 4, 2, 2, 0}, yi[] = {0, 0, 2, 2, 4, 4, 2, 2};
    const char *pic2[] = {"###...", "###...", "#####.", "..###.", "..###.", "......"};
    cr_assert_eq(fill(m, 6, 6, xi, yi, 8), 17);
    expect_picture(m, 6, 6, pic2);
}

Test(raster, subpixel_triangle_covers_nothing) {
    const double xs[] = {1.1, 1.9, 1.5}, ys[] = {1.1, 1.2, 1.8};
    uint8_t m[16];
    cr_assert_eq(fill(m, 4, 4, xs, ys, 3), 0);
    for (int i = 0; i < 16; i++) cr_assert_eq(m[i], 0);
}

Test(raster, fully_outside) {
    const double xs[] = {-10, -5, -5, -10}, ys[] = {-10, -10, -5, -5};
    const double xf[] = {30, 40, 40, 30}, yf[] = {2, 2, 8, 8};
    const double xb[] = {2, 8, 8, 2}, yb[] = {11, 11, 20, 20};
    uint8_t m[100];
    cr_assert_eq(fill(m, 10, 10, xs, ys, 4), 0);
    cr_assert_eq(fill(m, 10, 10, xf, yf, 4), 0);
    cr_assert_eq(fill(m, 10, 10, xb, yb, 4), 0);
    for (int i = 0; i < 100; i++) cr_assert_eq(m[i], 0);
}

Test(raster, partly_outside_is_clipped) {
    const double xs[] = {-5.5, 2.5, 2.5, -5.5}, ys[] = {-5.5, -5.5, 2.5, 2.5};
    const double xe[] = {7.5, 20, 20, 7.5}, ye[] = {7.5, 7.5, 20, 20};
    uint8_t m[10 * 10];
    cr_assert_eq(fill(m, 10, 10, xs, ys, 4), 9);
    for (int r = 0; r < 10; r++)
        for (int c = 0; c < 10; c++) cr_assert_eq(m[r * 10 + c], r <= 2 && c <= 2);
    cr_assert_eq(fill(m, 10, 10, xe, ye, 4), 4);
    for (int r = 0; r < 10; r++)
        for (int c = 0; c < 10; c++) cr_assert_eq(m[r * 10 + c], r >= 8 && c >= 8);
}

Test(raster, huge_vertices_cover_the_image) {
    const double xs[] = {-1e12, 1e12, 1e12, -1e12}, ys[] = {-1e12, -1e12, 1e12, 1e12};
    uint8_t m[7 * 5];
    cr_assert_eq(fill(m, 7, 5, xs, ys, 4), 35);
    const double xt[] = {-1e300, 1e300, 0}, yt[] = {-1e300, -1e300, 1e300};
    int64_t k = fill(m, 7, 5, xt, yt, 3);
    cr_assert(k >= 0 && k <= 35, "absurd coordinates still give a sane count (%lld)", (long long)k);
}

Test(raster, value_and_untouched_pixels) {
    const double xs[] = {0.5, 2.5, 2.5, 0.5}, ys[] = {0.5, 0.5, 2.5, 2.5};
    uint8_t m[16];
    memset(m, 9, sizeof m);
    cr_assert_eq(mr_raster_polygon(m, 4, 4, xs, ys, 4, 200), 4);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            cr_assert_eq(m[r * 4 + c], (r == 1 || r == 2) && (c == 1 || c == 2) ? 200 : 9);
}

Test(raster, degenerate_inputs) {
    const double xs[] = {1, 5, 3}, ys[] = {1, 1, 5};
    const double xn[] = {1, NAN, 3}, yn[] = {1, 1, 5};
    uint8_t m[64] = {0};
    cr_assert_eq(mr_raster_polygon(m, 8, 8, xs, ys, 0, 1), 0);
    cr_assert_eq(mr_raster_polygon(NULL, 8, 8, xs, ys, 3, 1), 0);
    cr_assert_eq(mr_raster_polygon(m, 0, 8, xs, ys, 3, 1), 0);
    cr_assert_eq(mr_raster_polygon(m, 8, 8, xn, yn, 3, 1), 0);
    /* One or two points: only a centre exactly on a vertex or the segment is filled. */
    cr_assert_eq(mr_raster_polygon(m, 8, 8, xs, ys, 1, 1), 1);
    cr_assert_eq(m[1 * 8 + 1], 1);
}

Test(raster, closing_vertex_repeated_changes_nothing) {
    /* VIA 1.x repeats the first vertex at the end. */
    const double xs[] = {1.2, 6.7, 5.1, 0.3}, ys[] = {0.4, 2.2, 6.9, 4.4};
    const double xc[] = {1.2, 6.7, 5.1, 0.3, 1.2}, yc[] = {0.4, 2.2, 6.9, 4.4, 0.4};
    uint8_t a[64], b[64];
    cr_assert_eq(fill(a, 8, 8, xs, ys, 4), fill(b, 8, 8, xc, yc, 5));
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
}

/* xorshift for the fuzz: deterministic, test-local. */
static uint64_t fuzz_state = 0x9e3779b97f4a7c15ull;
static double fuzz_uniform(void) {
    fuzz_state ^= fuzz_state << 13;
    fuzz_state ^= fuzz_state >> 7;
    fuzz_state ^= fuzz_state << 17;
    return (double)(fuzz_state >> 11) * 0x1.0p-53;
}

Test(raster, fuzz_matches_skimage_oracle) {
    enum { W = 23, H = 17 };
    uint8_t got[W * H], want[W * H];
    double xs[16], ys[16];
    for (int trial = 0; trial < 3000; trial++) {
        int n = 3 + (int)(fuzz_uniform() * 13);
        int kind = trial % 4; /* integer, half-integer, quarter steps, any float */
        for (int i = 0; i < n; i++) {
            double x = -6 + fuzz_uniform() * (W + 12), y = -6 + fuzz_uniform() * (H + 12);
            if (kind == 0) x = floor(x), y = floor(y);
            if (kind == 1) x = floor(x) + 0.5, y = floor(y) + 0.5;
            if (kind == 2) x = floor(4 * x) / 4, y = floor(4 * y) / 4;
            xs[i] = x;
            ys[i] = y;
        }
        memset(want, 0, sizeof want);
        int64_t kw = ref_raster(want, W, H, xs, ys, n);
        int64_t kg = fill(got, W, H, xs, ys, n);
        cr_assert_eq(kg, kw, "trial %d (n=%d kind=%d): %lld pixels, oracle %lld", trial, n, kind,
                     (long long)kg, (long long)kw);
        cr_assert_eq(memcmp(got, want, sizeof got), 0, "trial %d: masks differ", trial);
    }
}

Test(raster, million_vertex_circle) {
    enum { N = 1000000, S = 256 };
    double *xs = malloc(N * sizeof *xs), *ys = malloc(N * sizeof *ys);
    uint8_t *m = calloc(S * S, 1);
    cr_assert(xs && ys && m);
    for (int i = 0; i < N; i++) {
        double a = 6.283185307179586 * i / N;
        xs[i] = 128.3 + 100.0 * cos(a);
        ys[i] = 127.6 + 100.0 * sin(a);
    }
    int64_t k = mr_raster_polygon(m, S, S, xs, ys, N, 1);
    /* Centres inside the true circle; the inscribed 1e6-gon differs from it by < 1e-8 px. */
    int64_t want = 0, set = 0;
    for (int r = 0; r < S; r++)
        for (int c = 0; c < S; c++) {
            double dx = c - 128.3, dy = r - 127.6;
            want += dx * dx + dy * dy < 100.0 * 100.0;
            set += m[r * S + c];
        }
    cr_assert_eq(k, set);
    cr_assert(llabs(k - want) <= 2, "circle: %lld pixels, expected about %lld", (long long)k,
              (long long)want);
    free(xs);
    free(ys);
    free(m);
}

/* ---- masks to polygons ------------------------------------------------------------------- */

/* The mask with its holes filled: everything but the background 4-connected to the outside of
 * the image. Found by flooding, independently of mr_mask_to_polygons' own hole search. */
static void fill_holes(const uint8_t *m, int w, int h, uint8_t *filled) {
    size_t n = (size_t)w * h;
    int32_t *queue = malloc(n * sizeof *queue);
    cr_assert_not_null(queue);
    memset(filled, 1, n);
    size_t head = 0, tail = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            size_t i = (size_t)y * w + x;
            if ((x == 0 || y == 0 || x == w - 1 || y == h - 1) && !m[i] && filled[i]) {
                filled[i] = 0;
                queue[tail++] = (int32_t)i;
            }
        }
    while (head < tail) {
        int32_t c = queue[head++];
        int cx = c % w, cy = c / w;
        const int nx[4] = {cx - 1, cx + 1, cx, cx}, ny[4] = {cy, cy, cy - 1, cy + 1};
        for (int k = 0; k < 4; k++) {
            if (nx[k] < 0 || ny[k] < 0 || nx[k] >= w || ny[k] >= h) continue;
            size_t q = (size_t)ny[k] * w + nx[k];
            if (m[q] || !filled[q]) continue;
            filled[q] = 0;
            queue[tail++] = (int32_t)q;
        }
    }
    free(queue);
}

static int64_t count_set(const uint8_t *m, size_t n) {
    int64_t k = 0;
    for (size_t i = 0; i < n; i++) k += m[i] != 0;
    return k;
}

/* What the polygons of one mask give back, against the mask and against the mask with its
 * holes filled (what a polygon without holes can hold). */
typedef struct {
    double iou, area_ratio;          /* union of the polygons' rasters vs the mask */
    double filled_iou, filled_ratio; /* the same vs the filled mask */
    int64_t error_px;                /* pixels where the union differs from the filled mask */
    int64_t hole_px;
    int vertices, exact_vertices;
} coverage;

static double ratio(int64_t a, int64_t b) {
    return b ? (double)a / (double)b : (a ? 2.0 : 1.0);
}

static void compare(const uint8_t *got, const uint8_t *want, size_t n, double *iou, double *r) {
    int64_t inter = 0, uni = 0, a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        inter += got[i] && want[i];
        uni += got[i] || want[i];
        a += got[i] != 0;
        b += want[i] != 0;
    }
    *iou = ratio(inter, uni);
    *r = ratio(a, b);
}

/* Runs mr_mask_to_polygons at `tolerance` and at 0 and checks what must always hold:
 * - at 0, every polygon rasterises to its component plus its holes, pixel for pixel, and has
 *   its vertices at pixel corners (x.5, or 0 on the left and top border);
 * - at `tolerance`, every vertex lies on a pixel edge (one coordinate x.5 or 0), the union of
 *   the rasters differs from the filled mask in at most 0.5% of the mask's pixels, each
 *   polygon's error_px is what it claims, and there are no more vertices than exact.
 * Returns the measured coverage. */
static coverage check_mask(const uint8_t *m, int w, int h, double tolerance, const char *what) {
    size_t n = (size_t)w * h;
    uint8_t *filled = malloc(n), *all = calloc(n, 1), *one = malloc(n);
    cr_assert(filled && all && one);
    fill_holes(m, w, h, filled);
    int64_t area = count_set(m, n), filled_area = count_set(filled, n);
    coverage cov = {0};
    cov.hole_px = filled_area - area;

    mr_mask_polygons exact, simple;
    cr_assert_eq(mr_mask_to_polygons(m, w, h, 1, 0.0, &exact), MR_OK, "%s", mr_last_error());
    int64_t total = 0;
    for (int i = 0; i < exact.count; i++) {
        const mr_mask_polygon *q = &exact.items[i];
        cr_assert_geq(q->n_points, 4, "%s: polygon %d has %d vertices", what, i, q->n_points);
        for (int v = 0; v < q->n_points; v++) {
            cr_assert(q->xs[v] == 0.0 || q->xs[v] - floor(q->xs[v]) == 0.5, "%s: x = %g", what,
                      q->xs[v]);
            cr_assert(q->ys[v] == 0.0 || q->ys[v] - floor(q->ys[v]) == 0.5, "%s: y = %g", what,
                      q->ys[v]);
        }
        memset(one, 0, n);
        int64_t got = mr_raster_polygon(one, w, h, q->xs, q->ys, q->n_points, 1);
        cr_assert_eq(got, q->area + q->hole_px,
                     "%s: polygon %d fills %lld px, area %lld + holes %lld", what, i,
                     (long long)got, (long long)q->area, (long long)q->hole_px);
        cr_assert_eq(q->error_px, 0);
        for (size_t k = 0; k < n; k++) {
            cr_assert(!one[k] || filled[k], "%s: polygon %d leaks at (%zu, %zu)", what, i, k % w,
                      k / w);
            all[k] |= one[k];
        }
        total += q->area;
        cov.exact_vertices += q->n_points;
    }
    cr_assert_eq(total, area, "%s: every pixel is in one component", what);
    cr_assert_arr_eq(all, filled, n, "%s: the exact polygons give back the filled mask", what);

    cr_assert_eq(mr_mask_to_polygons(m, w, h, 1, tolerance, &simple), MR_OK, "%s", mr_last_error());
    cr_assert_eq(simple.count, exact.count);
    memset(all, 0, n);
    for (int i = 0; i < simple.count; i++) {
        const mr_mask_polygon *q = &simple.items[i];
        cr_assert_geq(q->n_points, 3);
        cr_assert_leq(q->n_points, exact.items[i].n_points, "%s: simplifying added vertices", what);
        for (int v = 0; v < q->n_points; v++) {
            bool on_x = q->xs[v] == 0.0 || q->xs[v] - floor(q->xs[v]) == 0.5;
            bool on_y = q->ys[v] == 0.0 || q->ys[v] - floor(q->ys[v]) == 0.5;
            cr_assert(on_x || on_y, "%s: vertex (%g, %g) is not on a pixel edge", what, q->xs[v],
                      q->ys[v]);
        }
        memset(one, 0, n);
        mr_raster_polygon(one, w, h, q->xs, q->ys, q->n_points, 1);
        memset(filled, 0, n); /* reused: this component with its holes, from its exact polygon */
        mr_raster_polygon(filled, w, h, exact.items[i].xs, exact.items[i].ys,
                          exact.items[i].n_points, 1);
        int64_t err = 0;
        for (size_t k = 0; k < n; k++) {
            err += one[k] != filled[k];
            all[k] |= one[k];
        }
        cr_assert_eq(err, q->error_px, "%s: polygon %d differs in %lld px, claims %lld", what, i,
                     (long long)err, (long long)q->error_px);
        cr_assert_leq((double)err, MR_POLYGON_MAX_ERROR * (double)q->area,
                      "%s: polygon %d differs in %lld of %lld px", what, i, (long long)err,
                      (long long)q->area);
        cov.vertices += q->n_points;
    }
    fill_holes(m, w, h, filled);
    for (size_t k = 0; k < n; k++) cov.error_px += all[k] != filled[k];
    cr_assert_leq((double)cov.error_px, MR_POLYGON_MAX_ERROR * (double)area,
                  "%s: the polygons differ from the mask in %lld of %lld px", what,
                  (long long)cov.error_px, (long long)area);
    compare(all, m, n, &cov.iou, &cov.area_ratio);
    compare(all, filled, n, &cov.filled_iou, &cov.filled_ratio);
    if (getenv("MR_TEST_VERBOSE"))
        fprintf(stderr,
                "%-28s %6lld px, holes %4lld px: IoU %.4f area %.4f (filled: IoU %.4f area %.4f),"
                " %d vertices (exact %d)\n",
                what, (long long)area, (long long)cov.hole_px, cov.iou, cov.area_ratio,
                cov.filled_iou, cov.filled_ratio, cov.vertices, cov.exact_vertices);
    mr_mask_polygons_free(&exact);
    mr_mask_polygons_free(&simple);
    free(filled);
    free(all);
    free(one);
    return cov;
}

/* Holes aside, the promise predict makes: IoU >= 0.98 and the area within 1%. */
static void expect_covered(const coverage *c, const char *what) {
    cr_assert_geq(c->iou, 0.98, "%s: IoU %.4f", what, c->iou);
    cr_assert(fabs(c->area_ratio - 1.0) <= 0.01, "%s: area ratio %.4f", what, c->area_ratio);
}

static void set_px(uint8_t *m, int w, int h, int x, int y) {
    if (x >= 0 && y >= 0 && x < w && y < h) m[y * w + x] = 1;
}

static void draw_disk(uint8_t *m, int w, int h, double cx, double cy, double r, uint8_t v) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) m[y * w + x] = v;
}

/* A disk with `spikes` rays `width` pixels wide (1 or 2) reaching `len` beyond its edge. */
static void draw_star(uint8_t *m, int w, int h, double cx, double cy, double r, int spikes,
                      double len, int width, double phase) {
    draw_disk(m, w, h, cx, cy, r, 1);
    for (int s = 0; s < spikes; s++) {
        double a = phase + 6.283185307179586 * s / spikes;
        for (double t = 0.0; t <= r + len; t += 0.25) {
            int x = (int)lround(cx + t * cos(a)), y = (int)lround(cy + t * sin(a));
            set_px(m, w, h, x, y);
            if (width > 1) set_px(m, w, h, x + 1, y);
        }
    }
}

enum { MW = 96, MH = 80 };

Test(mask_polygons, hand_checked_outlines) {
    uint8_t m[8 * 6] = {0};
    mr_mask_polygons p;

    /* One pixel: its four corners, clockwise on screen from the top-left one. */
    m[2 * 8 + 3] = 1;
    cr_assert_eq(mr_mask_to_polygons(m, 8, 6, 1, 1.0, &p), MR_OK);
    cr_assert_eq(p.count, 1);
    const double px[] = {2.5, 3.5, 3.5, 2.5}, py[] = {1.5, 1.5, 2.5, 2.5};
    cr_assert_eq(p.items[0].n_points, 4);
    cr_assert_arr_eq(p.items[0].xs, px, sizeof px);
    cr_assert_arr_eq(p.items[0].ys, py, sizeof py);
    mr_mask_polygons_free(&p);

    /* 2x1: a rectangle, the corner between the two pixels dropped as collinear. */
    m[2 * 8 + 4] = 1;
    cr_assert_eq(mr_mask_to_polygons(m, 8, 6, 1, 1.0, &p), MR_OK);
    const double rx[] = {2.5, 4.5, 4.5, 2.5}, ry[] = {1.5, 1.5, 2.5, 2.5};
    cr_assert_eq(p.items[0].n_points, 4);
    cr_assert_arr_eq(p.items[0].xs, rx, sizeof rx);
    cr_assert_arr_eq(p.items[0].ys, ry, sizeof ry);
    mr_mask_polygons_free(&p);

    /* Two pixels touching at a corner: one 8-connected component, one outline that passes the
     * shared corner (3.5, 2.5) twice. */
    memset(m, 0, sizeof m);
    m[2 * 8 + 3] = m[3 * 8 + 4] = 1;
    cr_assert_eq(mr_mask_to_polygons(m, 8, 6, 1, 0.0, &p), MR_OK);
    cr_assert_eq(p.count, 1);
    const double dx[] = {2.5, 3.5, 3.5, 4.5, 4.5, 3.5, 3.5, 2.5};
    const double dy[] = {1.5, 1.5, 2.5, 2.5, 3.5, 3.5, 2.5, 2.5};
    cr_assert_eq(p.items[0].n_points, 8);
    cr_assert_arr_eq(p.items[0].xs, dx, sizeof dx);
    cr_assert_arr_eq(p.items[0].ys, dy, sizeof dy);
    mr_mask_polygons_free(&p);

    /* The top-left pixel of the image: -0.5 becomes 0, the same single pixel. */
    memset(m, 0, sizeof m);
    m[0] = 1;
    cr_assert_eq(mr_mask_to_polygons(m, 8, 6, 1, 0.0, &p), MR_OK);
    const double cx[] = {0.0, 0.5, 0.5, 0.0}, cy[] = {0.0, 0.0, 0.5, 0.5};
    cr_assert_arr_eq(p.items[0].xs, cx, sizeof cx);
    cr_assert_arr_eq(p.items[0].ys, cy, sizeof cy);
    uint8_t back[8 * 6] = {0};
    cr_assert_eq(mr_raster_polygon(back, 8, 6, p.items[0].xs, p.items[0].ys, 4, 1), 1);
    cr_assert_eq(back[0], 1);
    mr_mask_polygons_free(&p);
}

Test(mask_polygons, exact_outlines_match_the_skimage_oracle) {
    /* The per-pixel port of skimage's test, not mr_raster_polygon, on small random masks with
     * diagonal joints, 1-px arms and holes: each exact polygon fills its component and holes. */
    enum { W = 14, H = 11 };
    uint8_t m[W * H], filled[W * H], got[W * H];
    for (int trial = 0; trial < 300; trial++) {
        double density = 0.2 + 0.5 * fuzz_uniform();
        for (int i = 0; i < W * H; i++) m[i] = fuzz_uniform() < density;
        mr_mask_polygons p;
        cr_assert_eq(mr_mask_to_polygons(m, W, H, 1, 0.0, &p), MR_OK);
        memset(got, 0, sizeof got);
        for (int i = 0; i < p.count; i++) {
            const mr_mask_polygon *q = &p.items[i];
            ref_raster(got, W, H, q->xs, q->ys, q->n_points);
        }
        fill_holes(m, W, H, filled);
        cr_assert_arr_eq(got, filled, sizeof got, "trial %d", trial);
        mr_mask_polygons_free(&p);
    }
}

Test(mask_polygons, thin_spiky_and_holed_masks) {
    uint8_t *m = malloc(MW * MH);
    coverage c;
    char what[64];

    for (int width = 1; width <= 2; width++)
        for (int k = 0; k < 3; k++) {
            memset(m, 0, MW * MH);
            draw_star(m, MW, MH, 48, 40, 8 + 6 * k, 5 + 3 * k, 12 + 4 * k, width, 0.3 * k);
            snprintf(what, sizeof what, "star %d-px spikes #%d", width, k);
            c = check_mask(m, MW, MH, 1.0, what);
            expect_covered(&c, what);
        }

    memset(m, 0, MW * MH); /* thin lines: horizontal, vertical, diagonal, shallow */
    for (int x = 5; x < 60; x++) m[10 * MW + x] = 1;
    for (int y = 20; y < 70; y++) m[y * MW + 8] = 1;
    for (int t = 0; t < 40; t++) m[(30 + t) * MW + 20 + t] = 1;
    for (int t = 0; t < 60; t++) m[(20 + t / 3) * MW + 30 + t] = 1;
    c = check_mask(m, MW, MH, 1.0, "thin lines");
    expect_covered(&c, "thin lines");

    /* A block with diagonal twigs: chains of pixels that touch only at corners, as a
     * checkerboard's do, but with the gaps between them open to the outside. */
    memset(m, 0, MW * MH);
    for (int y = 30; y < 60; y++)
        for (int x = 20; x < 70; x++) m[y * MW + x] = 1;
    for (int x = 20; x < 70; x += 4)
        for (int k = 0; k <= (x / 4) % 4; k++) {
            m[(29 - k) * MW + x + k] = 1;     /* up and right from the top edge */
            m[(60 + k) * MW + x + 1 - k] = 1; /* down and left from the bottom edge */
        }
    c = check_mask(m, MW, MH, 1.0, "diagonal twigs");
    cr_assert_eq(c.hole_px, 0);
    expect_covered(&c, "diagonal twigs");

    memset(m, 0, MW * MH);
    m[33 * MW + 21] = 1;
    c = check_mask(m, MW, MH, 1.0, "single pixel");
    expect_covered(&c, "single pixel");
    cr_assert_eq(c.iou, 1.0);
    m[33 * MW + 22] = 1;
    c = check_mask(m, MW, MH, 1.0, "2x1");
    cr_assert_eq(c.iou, 1.0);

    /* Holes: a ring and a whole checkerboard. The polygons fill them (nothing else), which is
     * all a polygon without holes can do; the promise then holds against the filled mask. */
    memset(m, 0, MW * MH);
    draw_disk(m, MW, MH, 40, 40, 25, 1);
    draw_disk(m, MW, MH, 40, 40, 12, 0);
    c = check_mask(m, MW, MH, 1.0, "ring");
    cr_assert_gt(c.hole_px, 400);
    cr_assert_geq(c.filled_iou, 0.995);
    cr_assert_lt(c.iou, 0.8, "the hole is filled");
    memset(m, 0, MW * MH);
    for (int y = 10; y < 40; y++)
        for (int x = 10; x < 50; x++) m[y * MW + x] = (x + y) % 2 == 0;
    c = check_mask(m, MW, MH, 1.0, "checkerboard");
    cr_assert_eq(c.hole_px, 38 * 28 / 2, "every white square not on the rim is a hole");
    cr_assert_geq(c.filled_iou, 0.995);
    free(m);
}

Test(mask_polygons, masks_touching_the_border) {
    uint8_t *m = malloc(MW * MH);
    coverage c;
    memset(m, 0, MW * MH); /* quarter disks in all four corners */
    draw_disk(m, MW, MH, 0, 0, 20, 1);
    draw_disk(m, MW, MH, MW - 1, 0, 15, 1);
    draw_disk(m, MW, MH, 0, MH - 1, 12, 1);
    draw_disk(m, MW, MH, MW - 1, MH - 1, 25, 1);
    c = check_mask(m, MW, MH, 1.0, "corner disks");
    expect_covered(&c, "corner disks");
    memset(m, 0, MW * MH); /* a frame one and two pixels thick: its inside is a hole */
    for (int y = 0; y < MH; y++)
        for (int x = 0; x < MW; x++) m[y * MW + x] = x < 1 || y < 2 || x >= MW - 2 || y >= MH - 1;
    c = check_mask(m, MW, MH, 1.0, "frame");
    cr_assert_geq(c.filled_iou, 0.995);
    memset(m, 1, MW * MH);
    c = check_mask(m, MW, MH, 1.0, "full image");
    cr_assert_eq(c.iou, 1.0);
    cr_assert_eq(c.vertices, 4);
    free(m);

    /* One pixel wide or high images: the outline is on both borders at once. */
    uint8_t col[7] = {0, 1, 1, 0, 1, 1, 1}, row[5] = {1, 1, 0, 1, 0};
    c = check_mask(col, 1, 7, 1.0, "1-px-wide image");
    cr_assert_eq(c.iou, 1.0);
    c = check_mask(row, 5, 1, 1.0, "1-px-high image");
    cr_assert_eq(c.iou, 1.0);
}

Test(mask_polygons, random_blobs) {
    /* Lesion-like blobs (a wobbly disk), unions of disks and bars, and thresholded noise with
     * many small parts, at predict's tolerance and at a coarse one. */
    enum { W = 160, H = 128 };
    uint8_t *m = malloc(W * H);
    double min_iou = 1.0, sum_iou = 0.0, min_r = 2.0, max_r = 0.0;
    int trials = 0;
    for (int trial = 0; trial < 60; trial++) {
        memset(m, 0, W * H);
        int kind = trial % 3;
        if (kind == 0) {
            double cx = 50 + 60 * fuzz_uniform(), cy = 40 + 50 * fuzz_uniform();
            double r = 4 + 40 * fuzz_uniform(), a = 6.3 * fuzz_uniform(), b = 6.3 * fuzz_uniform();
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    double t = atan2(y - cy, x - cx);
                    double rr = r * (1.0 + 0.2 * sin(3 * t + a) + 0.1 * sin(7 * t + b));
                    m[y * W + x] = hypot(x - cx, y - cy) <= rr;
                }
        } else if (kind == 1) {
            for (int k = 0; k < 4; k++) {
                draw_disk(m, W, H, 20 + 120 * fuzz_uniform(), 20 + 90 * fuzz_uniform(),
                          2 + 20 * fuzz_uniform(), 1);
                int x0 = (int)(fuzz_uniform() * 140), y0 = (int)(fuzz_uniform() * 110);
                int bw = 1 + (int)(fuzz_uniform() * 30), bh = 1 + (int)(fuzz_uniform() * 3);
                for (int y = y0; y < y0 + bh && y < H; y++)
                    for (int x = x0; x < x0 + bw && x < W; x++) m[y * W + x] = 1;
            }
        } else {
            for (int i = 0; i < W * H; i++) m[i] = fuzz_uniform() < 0.3;
            for (int pass = 0; pass < 2; pass++) /* majority smoothing: blobs of all sizes */
                for (int y = 1; y < H - 1; y++)
                    for (int x = 1; x < W - 1; x++) {
                        int s = 0;
                        for (int dy = -1; dy <= 1; dy++)
                            for (int dx = -1; dx <= 1; dx++) s += m[(y + dy) * W + x + dx];
                        m[y * W + x] = s >= 4;
                    }
        }
        char what[48];
        snprintf(what, sizeof what, "random %d (kind %d)", trial, kind);
        coverage c = check_mask(m, W, H, trial % 2 ? 1.0 : 3.0, what);
        if (c.hole_px == 0) {
            expect_covered(&c, what);
            min_iou = fmin(min_iou, c.iou);
            sum_iou += c.iou;
            min_r = fmin(min_r, c.area_ratio);
            max_r = fmax(max_r, c.area_ratio);
            trials++;
        } else {
            cr_assert_geq(c.filled_iou, 0.995, "%s", what);
        }
    }
    cr_assert_gt(trials, 30, "most random masks must be hole-free to test the promise");
    if (getenv("MR_TEST_VERBOSE"))
        fprintf(stderr,
                "random blobs without holes (%d): IoU min %.4f mean %.4f, area %.4f..%.4f\n",
                trials, min_iou, sum_iou / trials, min_r, max_r);
    free(m);
}

Test(mask_polygons, simplification_drops_most_vertices_of_large_blobs) {
    /* The point of simplifying: a lesion-sized smooth blob keeps a fraction of its corners. */
    enum { W = 200, H = 200 };
    uint8_t *m = calloc(W * H, 1);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double t = atan2(y - 100.0, x - 100.0);
            m[y * W + x] = hypot(x - 100.0, y - 100.0) <= 70.0 * (1.0 + 0.15 * sin(3 * t));
        }
    coverage c = check_mask(m, W, H, 1.0, "large blob");
    expect_covered(&c, "large blob");
    cr_assert_lt(c.vertices * 3, c.exact_vertices, "%d vertices of %d", c.vertices,
                 c.exact_vertices);
    free(m);
}

Test(mask_polygons, holes_and_tiny_blobs) {
    uint8_t *m = calloc(MW * MH, 1);
    draw_disk(m, MW, MH, 40, 40, 25, 1);
    draw_disk(m, MW, MH, 40, 40, 5, 0); /* a hole */
    for (int y = 25; y <= 26; y++)
        for (int x = 45; x <= 46; x++) m[y * MW + x] = 0; /* a second hole, 4 px */
    for (int y = 10; y <= 11; y++)
        for (int x = 80; x <= 81; x++) m[y * MW + x] = 1; /* 4 px: tiny */
    m[70 * MW + 90] = 1;                                  /* 1 px: tiny */
    mr_mask_polygons p;
    cr_assert_eq(mr_mask_to_polygons(m, MW, MH, 10, 1.0, &p), MR_OK);
    cr_assert_eq(p.count, 1);
    cr_assert_eq(p.tiny_skipped, 2);
    cr_assert_eq(p.tiny_px, 5);
    cr_assert_eq(p.items[0].holes, 2);
    cr_assert_eq(p.items[0].hole_px, 81 + 4); /* the r=5 disk holds 81 centres */
    mr_mask_polygons_free(&p);
    cr_assert_eq(mr_mask_to_polygons(m, MW, MH, 10, 1.0, &p), MR_OK); /* reusable, no state */
    mr_mask_polygons_free(&p);
    memset(m, 0, MW * MH);
    cr_assert_eq(mr_mask_to_polygons(m, MW, MH, 10, 1.0, &p), MR_OK);
    cr_assert_eq(p.count, 0);
    mr_mask_polygons_free(&p);
    free(m);
}

/* A blob reached through a one-pixel-thin arm that holds the start pixel (the first in raster
 * order). The centre-contour tracer this replaced came back through the start before it had
 * gone round and needed Jacob's stopping rule (cd0db09) to close the contour once; the edge
 * walk passes the start corner once by construction. Either way: one polygon, walked once,
 * giving back the blob exactly. */
Test(mask_polygons, thin_parts_trace_once) {
    static uint8_t m[12 * 12];
    for (int x = 1; x < 6; x++) m[1 * 12 + x] = 1; /* the arm, starting at (1, 1) */
    for (int y = 2; y < 6; y++)
        for (int x = 5; x < 9; x++) m[y * 12 + x] = 1;
    mr_mask_polygons p;
    cr_assert_eq(mr_mask_to_polygons(m, 12, 12, 1, 0.0, &p), MR_OK);
    cr_assert_eq(p.count, 1);
    const mr_mask_polygon *q = &p.items[0];
    const double xs[] = {0.5, 5.5, 5.5, 8.5, 8.5, 4.5, 4.5, 0.5};
    const double ys[] = {0.5, 0.5, 1.5, 1.5, 5.5, 5.5, 1.5, 1.5};
    cr_assert_eq(q->n_points, 8, "the outline was walked more than once: %d points", q->n_points);
    cr_assert_arr_eq(q->xs, xs, sizeof xs);
    cr_assert_arr_eq(q->ys, ys, sizeof ys);
    static uint8_t back[12 * 12];
    mr_raster_polygon(back, 12, 12, q->xs, q->ys, q->n_points, 1);
    cr_assert_arr_eq(back, m, sizeof m, "the polygon covers exactly the blob");
    mr_mask_polygons_free(&p);
}

/* A mask's polygons do not depend on how much background surrounds its pixels (the work is done on
 * a box round them): a pattern placed on the image's left and top border, its right and bottom
 * border, or inside, against the same image with a dot in its top-right and bottom-left corners,
 * which makes the box the whole image and which min_pixels leaves out. */
Test(mask_polygons, polygons_do_not_depend_on_the_background_round_the_mask) {
    enum { W = 150, H = 110 };
    uint8_t *alone = malloc(W * H), *dotted = malloc(W * H);
    for (int trial = 0; trial < 48; trial++) {
        /* Smoothed noise in a pw x ph pattern with pixels on all four of its edges. */
        int pw = 3 + (int)(fuzz_uniform() * 60), ph = 3 + (int)(fuzz_uniform() * 50);
        uint8_t pat[63 * 53];
        for (int i = 0; i < pw * ph; i++) pat[i] = fuzz_uniform() < 0.45;
        for (int y = 1; y < ph - 1; y++)
            for (int x = 1; x < pw - 1; x++) {
                int s = 0;
                for (int d = -1; d <= 1; d++) s += pat[(y + d) * pw + x] + pat[y * pw + x + d];
                pat[y * pw + x] = s >= 3;
            }
        pat[0] = pat[(ph - 1) * pw + pw - 1] = 1;
        int side = trial % 3;
        int bx = side == 0 ? 0 : side == 1 ? W - pw : 2 + (int)(fuzz_uniform() * (W - pw - 4));
        int by = side == 0 ? 0 : side == 1 ? H - ph : 2 + (int)(fuzz_uniform() * (H - ph - 4));
        memset(alone, 0, W * H);
        for (int y = 0; y < ph; y++) memcpy(alone + (y + by) * W + bx, pat + y * pw, (size_t)pw);
        memcpy(dotted, alone, W * H);
        dotted[W - 1] = dotted[(H - 1) * W] = 1;
        const double tolerance = trial % 2 ? 1.0 : 3.0;
        const int min_px = 2 + trial % 4;
        mr_mask_polygons a, b;
        cr_assert_eq(mr_mask_to_polygons(dotted, W, H, min_px, tolerance, &a), MR_OK);
        cr_assert_eq(mr_mask_to_polygons(alone, W, H, min_px, tolerance, &b), MR_OK);
        char what[64];
        snprintf(what, sizeof what, "trial %d (%dx%d at %d,%d)", trial, pw, ph, bx, by);
        cr_assert_gt(a.count, 0, "%s", what);
        cr_assert_eq(a.count, b.count, "%s: %d polygons, %d alone", what, a.count, b.count);
        cr_assert(a.tiny_skipped == b.tiny_skipped + 2 && a.tiny_px == b.tiny_px + 2, "%s", what);
        for (int i = 0; i < a.count; i++) {
            const mr_mask_polygon *p = &a.items[i], *q = &b.items[i];
            cr_assert(p->n_points == q->n_points && p->area == q->area && p->holes == q->holes &&
                          p->hole_px == q->hole_px && p->error_px == q->error_px &&
                          p->x0 == q->x0 && p->x1 == q->x1 && p->y0 == q->y0 && p->y1 == q->y1,
                      "%s: polygon %d", what, i);
            for (int k = 0; k < p->n_points; k++)
                cr_assert(p->xs[k] == q->xs[k] && p->ys[k] == q->ys[k],
                          "%s: polygon %d vertex %d (%g, %g), alone (%g, %g)", what, i, k, p->xs[k],
                          p->ys[k], q->xs[k], q->ys[k]);
        }
        mr_mask_polygons_free(&a);
        mr_mask_polygons_free(&b);
    }
    free(alone);
    free(dotted);
}

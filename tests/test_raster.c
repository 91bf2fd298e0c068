/* Tests for data/raster.c: hand-computed pixel sets for the skimage.draw.polygon rule (closed
 * polygon, even-odd), clipping, degenerate and huge inputs, and a fuzz comparison against a
 * direct per-pixel port of skimage's point_in_polygon. */
#include <math.h>
#include <stdint.h>
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

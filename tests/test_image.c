/* Tests for data/image.c (libpng, libjpeg-turbo, the BMP reader) and for molding straight from
 * 8-bit pixels (layers/mold.c). Every file is made here: PNGs with libpng's writer, JPEGs with
 * libjpeg's, EXIF segments, BMPs and a decompression bomb byte by byte. Each conversion, the
 * EXIF orientations as a browser (so VIA) shows them, truncated and hostile files, paths that
 * are not regular files, and the new mold against a copy of the old float-plane routine. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>

#include "../core/rng.h"
#include "../data/image.h"
#include "../layers/mold.h"
#include "../layers/resample.h"
#include "../train/config.h"
#include "testutil.h"

static char *tmp_file(const char *dir, const char *name) {
    static _Thread_local char buf[8][512];
    static _Thread_local int k;
    char *p = buf[k++ % 8];
    cr_assert_lt(snprintf(p, 512, "%s/%s", dir, name), 512);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static uint8_t *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)len + 1);
    cr_assert_eq(fread(d, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return d;
}

/* Asserts that `st` is an error whose message holds every needle. */
static void expect_fail(mr_status st, mr_status code, const char *what,
                        const char *const *needles) {
    cr_assert_eq(st, code, "%s: got %s: %s", what, mr_status_name(st), mr_last_error());
    for (int i = 0; needles[i]; i++)
        cr_assert(strstr(mr_last_error(), needles[i]), "%s: message '%s' lacks '%s'", what,
                  mr_last_error(), needles[i]);
}
#define EXPECT_FAIL(st, code, what, ...)                                                           \
    expect_fail(st, code, what, (const char *const[]){__VA_ARGS__, NULL})

/* ---- PNG files through libpng ------------------------------------------------------------ */

typedef struct {
    int w, h, depth, type; /* PNG_COLOR_TYPE_* */
    const uint8_t *rows;   /* packed as PNG stores them: 16-bit big-endian, low depths packed */
    const png_color *palette;
    int n_palette;
    const png_byte *trns; /* palette alpha */
    int n_trns;
    const png_color_16 *trns_colour; /* gray or RGB colour key */
    bool interlace;
} png_spec;

static void write_png_spec(const char *path, const png_spec *s) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) cr_assert_fail("libpng could not write %s", path);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)s->w, (png_uint_32)s->h, s->depth, s->type,
                 s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (s->palette) png_set_PLTE(png, info, s->palette, s->n_palette);
    if (s->trns || s->trns_colour)
        png_set_tRNS(png, info, s->trns, s->n_trns, (png_color_16p)s->trns_colour);
    png_write_info(png, info);
    size_t stride = png_get_rowbytes(png, info);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (int y = 0; y < s->h; y++) png_write_row(png, s->rows + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    cr_assert_eq(fclose(f), 0);
}

static mr_image load(const char *path, int channels) {
    mr_image img;
    cr_assert_eq(mr_image_load(path, channels, &img), MR_OK, "%s", mr_last_error());
    return img;
}

static mr_image_info probe(const char *path) {
    mr_image_info info;
    cr_assert_eq(mr_image_probe(path, MR_IMAGE_MAX_PIXELS_DEFAULT, &info), MR_OK, "%s",
                 mr_last_error());
    return info;
}

Test(image, png_16bit_gray_keeps_the_top_byte) {
    const char *dir = temp_dir("img16g");
    enum { W = 7, H = 5 };
    uint8_t rows[H * W * 2];
    uint16_t v[H * W];
    for (int i = 0; i < W * H; i++) {
        v[i] = (uint16_t)(i * 1931 + 255); /* low bytes differ from the high ones */
        rows[2 * i] = (uint8_t)(v[i] >> 8), rows[2 * i + 1] = (uint8_t)v[i];
    }
    const char *p = tmp_file(dir, "g16.png");
    write_png_spec(
        p, &(png_spec){.w = W, .h = H, .depth = 16, .type = PNG_COLOR_TYPE_GRAY, .rows = rows});
    mr_image g = load(p, 1), c = load(p, 3);
    cr_assert_eq(g.width, W);
    cr_assert_eq(g.height, H);
    for (int i = 0; i < W * H; i++) {
        cr_assert_eq(g.pixels[i], v[i] >> 8, "pixel %d: %d, want %d", i, g.pixels[i], v[i] >> 8);
        for (int k = 0; k < 3; k++) cr_assert_eq(c.pixels[3 * i + k], v[i] >> 8);
    }
    mr_image_info info = probe(p);
    cr_assert_eq(info.format, MR_IMAGE_PNG);
    cr_assert_eq(info.bit_depth, 16);
    cr_assert_eq(info.channels, 1);
    cr_assert(!info.gray_as_rgb);
    cr_assert_str_eq(info.kind, "PNG 16-bit gray");
    mr_image_free(&g);
    mr_image_free(&c);
}

Test(image, png_16bit_rgb_keeps_the_top_bytes) {
    const char *dir = temp_dir("img16c");
    enum { W = 6, H = 4 };
    uint8_t rows[H * W * 6], top[H * W * 3];
    for (int i = 0; i < W * H * 3; i++) {
        uint16_t v = (uint16_t)(i * 2741 + 129);
        rows[2 * i] = (uint8_t)(v >> 8), rows[2 * i + 1] = (uint8_t)v;
        top[i] = (uint8_t)(v >> 8);
    }
    const char *p = tmp_file(dir, "c16.png");
    write_png_spec(
        p, &(png_spec){.w = W, .h = H, .depth = 16, .type = PNG_COLOR_TYPE_RGB, .rows = rows});
    mr_image c = load(p, 3), g = load(p, 1);
    cr_assert_eq(memcmp(c.pixels, top, sizeof top), 0);
    for (int i = 0; i < W * H; i++) {
        int want = (top[3 * i] + top[3 * i + 1] + top[3 * i + 2] + 1) / 3;
        cr_assert_eq(g.pixels[i], want, "pixel %d: %d, want the mean %d", i, g.pixels[i], want);
    }
    mr_image_info info = probe(p);
    cr_assert_eq(info.bit_depth, 16);
    cr_assert_eq(info.channels, 3);
    cr_assert(!info.gray_as_rgb);
    mr_image_free(&c);
    mr_image_free(&g);
}

Test(image, png_palette_with_transparency) {
    const char *dir = temp_dir("imgpal");
    const png_color pal[4] = {{10, 20, 30}, {200, 100, 0}, {7, 7, 7}, {255, 255, 254}};
    const png_byte alpha[3] = {0, 128, 255}; /* entry 3 has none: opaque */
    enum { W = 9, H = 3 };
    uint8_t idx[H * W], rows[H * 3]; /* 2-bit indices, 9 pixels -> 3 bytes a row */
    memset(rows, 0, sizeof rows);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            idx[y * W + x] = (uint8_t)((x + 2 * y) % 4);
            rows[y * 3 + x / 4] |= (uint8_t)(idx[y * W + x] << (6 - 2 * (x % 4)));
        }
    const char *p = tmp_file(dir, "pal.png");
    write_png_spec(p, &(png_spec){.w = W,
                                  .h = H,
                                  .depth = 2,
                                  .type = PNG_COLOR_TYPE_PALETTE,
                                  .rows = rows,
                                  .palette = pal,
                                  .n_palette = 4,
                                  .trns = alpha,
                                  .n_trns = 3});
    mr_image c = load(p, 3), a = load(p, 0), g = load(p, 1);
    cr_assert_eq(a.channels, 4, "tRNS becomes alpha");
    for (int i = 0; i < W * H; i++) {
        const png_color *e = &pal[idx[i]];
        cr_assert(c.pixels[3 * i] == e->red && c.pixels[3 * i + 1] == e->green &&
                      c.pixels[3 * i + 2] == e->blue,
                  "pixel %d", i);
        cr_assert_eq(a.pixels[4 * i + 3], idx[i] < 3 ? alpha[idx[i]] : 255);
        cr_assert_eq(g.pixels[i], (e->red + e->green + e->blue + 1) / 3);
    }
    mr_image_info info = probe(p);
    cr_assert(info.palette);
    cr_assert_eq(info.bit_depth, 2);
    cr_assert_eq(info.channels, 4);
    cr_assert_str_eq(info.kind, "PNG 2-bit palette with transparency");
    mr_image_free(&c);
    mr_image_free(&a);
    mr_image_free(&g);
}

Test(image, png_gray_alpha_drops_alpha) {
    const char *dir = temp_dir("imgga");
    enum { W = 5, H = 4 };
    uint8_t rows[H * W * 2];
    for (int i = 0; i < W * H; i++)
        rows[2 * i] = (uint8_t)(i * 13), rows[2 * i + 1] = (uint8_t)(i * 7 + 1);
    const char *p = tmp_file(dir, "ga.png");
    write_png_spec(
        p,
        &(png_spec){.w = W, .h = H, .depth = 8, .type = PNG_COLOR_TYPE_GRAY_ALPHA, .rows = rows});
    mr_image g = load(p, 1), c = load(p, 3), a = load(p, 0);
    cr_assert_eq(a.channels, 2);
    cr_assert_eq(memcmp(a.pixels, rows, sizeof rows), 0);
    for (int i = 0; i < W * H; i++) {
        cr_assert_eq(g.pixels[i], rows[2 * i], "gray, not a mix with alpha");
        for (int k = 0; k < 3; k++) cr_assert_eq(c.pixels[3 * i + k], rows[2 * i]);
    }
    cr_assert_str_eq(probe(p).kind, "PNG 8-bit gray+alpha");
    /* Gray with a tRNS colour key: the key's pixels get alpha 0, gray itself is unchanged. */
    uint8_t gray[W * H];
    for (int i = 0; i < W * H; i++) gray[i] = (uint8_t)(i % 3 ? 90 : 50);
    const png_color_16 key = {.gray = 50};
    const char *k = tmp_file(dir, "key.png");
    write_png_spec(k, &(png_spec){.w = W,
                                  .h = H,
                                  .depth = 8,
                                  .type = PNG_COLOR_TYPE_GRAY,
                                  .rows = gray,
                                  .trns_colour = &key});
    mr_image ka = load(k, 0), kg = load(k, 1);
    cr_assert_eq(ka.channels, 2);
    for (int i = 0; i < W * H; i++) {
        cr_assert(ka.pixels[2 * i] == gray[i] && ka.pixels[2 * i + 1] == (gray[i] == 50 ? 0 : 255),
                  "pixel %d", i);
        cr_assert_eq(kg.pixels[i], gray[i]);
    }
    cr_assert_str_eq(probe(k).kind, "PNG 8-bit gray with transparency");
    mr_image_free(&ka);
    mr_image_free(&kg);
    mr_image_free(&g);
    mr_image_free(&c);
    mr_image_free(&a);
}

Test(image, png_rgba_drops_alpha) {
    const char *dir = temp_dir("imgrgba");
    enum { W = 4, H = 6 };
    uint8_t rows[H * W * 4];
    for (int i = 0; i < W * H * 4; i++) rows[i] = (uint8_t)(i * 37 + 3);
    const char *p = tmp_file(dir, "rgba.png");
    write_png_spec(
        p, &(png_spec){.w = W, .h = H, .depth = 8, .type = PNG_COLOR_TYPE_RGB_ALPHA, .rows = rows});
    mr_image c = load(p, 3), g = load(p, 1), a = load(p, 0);
    cr_assert_eq(a.channels, 4);
    cr_assert_eq(memcmp(a.pixels, rows, sizeof rows), 0);
    for (int i = 0; i < W * H; i++) {
        const uint8_t *q = rows + 4 * i;
        cr_assert(c.pixels[3 * i] == q[0] && c.pixels[3 * i + 1] == q[1] &&
                  c.pixels[3 * i + 2] == q[2]);
        cr_assert_eq(g.pixels[i], (q[0] + q[1] + q[2] + 1) / 3);
    }
    mr_image_free(&c);
    mr_image_free(&g);
    mr_image_free(&a);
}

Test(image, rgb_that_is_gray_is_detected_and_exact) {
    const char *dir = temp_dir("imgrgbgray");
    enum { W = 16, H = 16 };
    uint8_t rows[H * W * 3];
    for (int i = 0; i < W * H; i++) memset(rows + 3 * i, (i * 251 + 17) & 255, 3);
    const char *p = tmp_file(dir, "gray.png");
    write_png_spec(
        p, &(png_spec){.w = W, .h = H, .depth = 8, .type = PNG_COLOR_TYPE_RGB, .rows = rows});
    mr_image_info info = probe(p);
    cr_assert(info.gray_as_rgb);
    cr_assert_eq(info.channels, 3);
    cr_assert_str_eq(info.kind, "PNG 8-bit RGB (gray stored as RGB)");
    mr_image g = load(p, 1);
    for (int i = 0; i < W * H; i++)
        cr_assert_eq(g.pixels[i], rows[3 * i], "pixel %d: %d, want exactly %d", i, g.pixels[i],
                     rows[3 * i]);
    mr_image_free(&g);
    /* One pixel off gray, in the last row, green or blue: the file is colour. */
    for (int k = 1; k <= 2; k++) {
        rows[3 * (W * H - 1) + k] ^= 1;
        const char *q = tmp_file(dir, k == 1 ? "green.png" : "blue.png");
        write_png_spec(
            q, &(png_spec){.w = W, .h = H, .depth = 8, .type = PNG_COLOR_TYPE_RGB, .rows = rows});
        rows[3 * (W * H - 1) + k] ^= 1;
        info = probe(q);
        cr_assert(!info.gray_as_rgb, "channel %d differs", k);
        cr_assert_str_eq(info.kind, "PNG 8-bit RGB");
    }
}

Test(image, low_bit_gray_and_interlaced_png) {
    const char *dir = temp_dir("imglow");
    /* 1-bit: 0 and 1 -> 0 and 255; 2-bit: 0..3 -> 0, 85, 170, 255. */
    const uint8_t one[2] = {0xa0, 0x40}; /* 3 x 2: row 0 = 1 0 1, row 1 = 0 1 0 */
    const char *p = tmp_file(dir, "b1.png");
    write_png_spec(
        p, &(png_spec){.w = 3, .h = 2, .depth = 1, .type = PNG_COLOR_TYPE_GRAY, .rows = one});
    mr_image g = load(p, 1);
    const uint8_t want1[6] = {255, 0, 255, 0, 255, 0};
    cr_assert_eq(memcmp(g.pixels, want1, 6), 0);
    mr_image_free(&g);
    const uint8_t two[1] = {0x1b}; /* 4 x 1: 0 1 2 3 */
    p = tmp_file(dir, "b2.png");
    write_png_spec(
        p, &(png_spec){.w = 4, .h = 1, .depth = 2, .type = PNG_COLOR_TYPE_GRAY, .rows = two});
    g = load(p, 1);
    const uint8_t want2[4] = {0, 85, 170, 255};
    cr_assert_eq(memcmp(g.pixels, want2, 4), 0);
    mr_image_free(&g);
    /* Adam7 interlacing gives the same pixels as a plain file. */
    enum { W = 13, H = 11 };
    uint8_t rows[H * W * 3];
    for (int i = 0; i < W * H * 3; i++) rows[i] = (uint8_t)(i * 89 + 5);
    p = tmp_file(dir, "adam7.png");
    write_png_spec(p, &(png_spec){.w = W,
                                  .h = H,
                                  .depth = 8,
                                  .type = PNG_COLOR_TYPE_RGB,
                                  .rows = rows,
                                  .interlace = true});
    g = load(p, 3);
    cr_assert_eq(memcmp(g.pixels, rows, sizeof rows), 0);
    mr_image_free(&g);
}

Test(image, write_png_round_trips_every_channel_count) {
    const char *dir = temp_dir("imgwrite");
    for (int c = 1; c <= 4; c++) {
        mr_image img;
        cr_assert_eq(mr_image_alloc(&img, 19, 7, c), MR_OK);
        for (int i = 0; i < 19 * 7 * c; i++) img.pixels[i] = (uint8_t)(i * 31 + c);
        char name[32];
        snprintf(name, sizeof name, "w%d.png", c);
        const char *p = tmp_file(dir, name);
        cr_assert_eq(mr_image_write_png(p, &img), MR_OK, "%s", mr_last_error());
        mr_image back = load(p, 0);
        cr_assert_eq(back.channels, c);
        cr_assert_eq(memcmp(back.pixels, img.pixels, (size_t)19 * 7 * c), 0);
        mr_image_free(&back);
        mr_image_free(&img);
    }
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, 2, 2, 1), MR_OK);
    EXPECT_FAIL(mr_image_write_png("/nonexistent-dir/x.png", &img), MR_ERR_IO, "write",
                "/nonexistent-dir/x.png", "cannot write", "No such file or directory");
    mr_image_free(&img);
}

/* ---- JPEG files through libjpeg ---------------------------------------------------------- */

static void write_jpeg(const char *path, int w, int h, int comps, J_COLOR_SPACE cs,
                       const uint8_t *px, int quality, const uint8_t *app1, size_t app1_len) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = cs;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    if (app1) jpeg_write_marker(&c, JPEG_APP0 + 1, app1, (unsigned)app1_len);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * (size_t)w * (size_t)comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    cr_assert_eq(fclose(f), 0);
}

/* An APP1 EXIF segment whose IFD0 holds two tags, Orientation among them, in either byte
 * order. Returns its length. */
static size_t exif_segment(uint8_t *d, int orientation, bool big_endian) {
    size_t n = 0;
    memcpy(d, "Exif\0\0", 6);
    n = 6;
    uint8_t *t = d + n;
#define P16(at, v)                                                                                 \
    (big_endian ? (t[at] = (uint8_t)((v) >> 8), t[(at) + 1] = (uint8_t)(v))                        \
                : (t[at] = (uint8_t)(v), t[(at) + 1] = (uint8_t)((v) >> 8)))
#define P32(at, v)                                                                                 \
    (big_endian ? (P16(at, (v) >> 16), P16((at) + 2, (v)&0xffff))                                  \
                : (P16(at, (v)&0xffff), P16((at) + 2, (v) >> 16)))
    memcpy(t, big_endian ? "MM" : "II", 2);
    P16(2, 42u);
    P32(4, 8u); /* IFD0 right after the header */
    P16(8, 2u); /* two entries */
    /* 0x010f Make, ASCII, 4 bytes "Acme" inline */
    P16(10, 0x010fu);
    P16(12, 2u);
    P32(14, 4u);
    memcpy(t + 18, "Acm", 4);
    /* 0x0112 Orientation, SHORT, count 1, value in the first two bytes */
    P16(22, 0x0112u);
    P16(24, 3u);
    P32(26, 1u);
    P16(30, (unsigned)orientation);
    P16(32, 0u);
    P32(34, 0u); /* no next IFD */
#undef P16
#undef P32
    return n + 38;
}

/* Stored 48 x 32: quadrants red (top left), green (top right), blue (bottom left), white. */
enum { QW = 48, QH = 32 };
static const uint8_t QUAD[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};

static int quadrant_colour(const mr_image *img, int x, int y) {
    const uint8_t *p = img->pixels + ((size_t)y * (size_t)img->width + (size_t)x) * 3;
    int best = -1, best_d = 1 << 30;
    for (int q = 0; q < 4; q++) {
        int d = 0;
        for (int k = 0; k < 3; k++) d += (p[k] - QUAD[q][k]) * (p[k] - QUAD[q][k]);
        if (d < best_d) best = q, best_d = d;
    }
    cr_assert_lt(best_d, 3 * 40 * 40, "pixel (%d, %d) = %d %d %d is none of the colours", x, y,
                 p[0], p[1], p[2]);
    return best;
}

Test(image, jpeg_exif_orientation_as_a_browser_shows_it) {
    const char *dir = temp_dir("imgexif");
    uint8_t px[QH * QW * 3];
    for (int y = 0; y < QH; y++)
        for (int x = 0; x < QW; x++)
            memcpy(px + (y * QW + x) * 3, QUAD[(y >= QH / 2) * 2 + (x >= QW / 2)], 3);
    /* What each displayed corner (top left, top right, bottom left, bottom right) shows, by the
     * EXIF specification (CIPA DC-008) that browsers follow: 2 mirrors, 3 turns 180 degrees, 4
     * flips, 5 transposes, 6 turns 90 degrees clockwise, 7 transverses, 8 turns 90 degrees
     * counter-clockwise. R G B W are the stored quadrants. */
    enum { R, G, B, Wt };
    static const int corners[9][4] = {{0},           {R, G, B, Wt}, {G, R, Wt, B},
                                      {Wt, B, G, R}, {B, Wt, R, G}, {R, B, G, Wt},
                                      {B, R, Wt, G}, {Wt, G, B, R}, {G, Wt, R, B}};
    for (int big = 0; big < 2; big++)
        for (int o = 1; o <= 8; o++) {
            uint8_t seg[64];
            size_t n = exif_segment(seg, o, big);
            char name[32];
            snprintf(name, sizeof name, "o%d%s.jpg", o, big ? "mm" : "ii");
            const char *p = tmp_file(dir, name);
            write_jpeg(p, QW, QH, 3, JCS_RGB, px, 95, seg, n);
            bool turned = o >= 5;
            int w = 0, h = 0;
            cr_assert_eq(mr_image_size(p, &w, &h), MR_OK, "%s", mr_last_error());
            cr_assert(w == (turned ? QH : QW) && h == (turned ? QW : QH),
                      "orientation %d: size %dx%d", o, w, h);
            mr_image img = load(p, 3);
            cr_assert(img.width == w && img.height == h);
            const int xs[4] = {1, w - 2, 1, w - 2}, ys[4] = {1, 1, h - 2, h - 2};
            for (int k = 0; k < 4; k++)
                cr_assert_eq(quadrant_colour(&img, xs[k], ys[k]), corners[o][k],
                             "orientation %d (%s): corner %d shows stored quadrant %d, want %d", o,
                             big ? "MM" : "II", k, quadrant_colour(&img, xs[k], ys[k]),
                             corners[o][k]);
            /* Gray loads turn the same way. */
            mr_image g = load(p, 1);
            cr_assert(g.width == w && g.height == h);
            int want =
                (QUAD[corners[o][1]][0] + QUAD[corners[o][1]][1] + QUAD[corners[o][1]][2] + 1) / 3;
            cr_assert_lt(abs(g.pixels[1 * w + w - 2] - want), 40, "orientation %d gray", o);
            mr_image_info info = probe(p);
            cr_assert_eq(info.orientation, o);
            cr_assert_eq(info.width, w);
            cr_assert_eq(strstr(info.kind, "EXIF orientation") != NULL, o != 1, "%s", info.kind);
            mr_image_free(&img);
            mr_image_free(&g);
        }
    /* No EXIF at all, and an orientation out of range: shown as stored. */
    const char *p = tmp_file(dir, "plain.jpg");
    write_jpeg(p, QW, QH, 3, JCS_RGB, px, 95, NULL, 0);
    cr_assert_eq(probe(p).orientation, 1);
    uint8_t seg[64];
    size_t n = exif_segment(seg, 9, false);
    p = tmp_file(dir, "o9.jpg");
    write_jpeg(p, QW, QH, 3, JCS_RGB, px, 95, seg, n);
    cr_assert_eq(probe(p).orientation, 1);
    /* A segment cut inside its IFD is read as far as it goes, never past it. */
    n = exif_segment(seg, 6, false);
    p = tmp_file(dir, "cut.jpg");
    write_jpeg(p, QW, QH, 3, JCS_RGB, px, 95, seg, 6 + 30); /* inside Orientation */
    cr_assert_eq(probe(p).orientation, 1);
}

Test(image, one_pixel_png_and_jpeg) {
    const char *dir = temp_dir("img1x1");
    const uint8_t v[1] = {201};
    const char *p = tmp_file(dir, "one.png");
    write_png_spec(p,
                   &(png_spec){.w = 1, .h = 1, .depth = 8, .type = PNG_COLOR_TYPE_GRAY, .rows = v});
    mr_image g = load(p, 3);
    cr_assert(g.width == 1 && g.height == 1 && g.channels == 3);
    cr_assert(g.pixels[0] == 201 && g.pixels[1] == 201 && g.pixels[2] == 201);
    mr_image_free(&g);
    p = tmp_file(dir, "one.jpg");
    write_jpeg(p, 1, 1, 1, JCS_GRAYSCALE, v, 100, NULL, 0);
    g = load(p, 1);
    cr_assert(g.width == 1 && g.height == 1);
    cr_assert_lt(abs(g.pixels[0] - 201), 2, "%d", g.pixels[0]);
    mr_image_free(&g);
    mr_image_info info = probe(p);
    cr_assert_str_eq(info.kind, "JPEG gray");
    cr_assert_eq(info.channels, 1);
    const uint8_t rgb[3] = {30, 160, 90};
    p = tmp_file(dir, "one-rgb.jpg");
    write_jpeg(p, 1, 1, 3, JCS_RGB, rgb, 100, NULL, 0);
    g = load(p, 3);
    for (int k = 0; k < 3; k++) cr_assert_lt(abs(g.pixels[k] - rgb[k]), 4, "%d", g.pixels[k]);
    mr_image_free(&g);
}

Test(image, gray_jpeg_stored_as_rgb_is_detected) {
    const char *dir = temp_dir("imgjgray");
    uint8_t px[24 * 16 * 3];
    for (int i = 0; i < 24 * 16; i++) memset(px + 3 * i, (i * 7) & 255, 3);
    const char *p = tmp_file(dir, "g.jpg");
    write_jpeg(p, 24, 16, 3, JCS_RGB, px, 90, NULL, 0);
    mr_image_info info = probe(p);
    cr_assert(info.gray_as_rgb, "%s", info.kind);
    cr_assert_str_eq(info.kind, "JPEG RGB (gray stored as RGB)");
}

Test(image, cmyk_jpeg_is_refused_clearly) {
    const char *dir = temp_dir("imgcmyk");
    uint8_t px[8 * 8 * 4];
    memset(px, 90, sizeof px);
    const char *p = tmp_file(dir, "print.jpg");
    write_jpeg(p, 8, 8, 4, JCS_CMYK, px, 90, NULL, 0);
    mr_image img;
    EXPECT_FAIL(mr_image_load(p, 3, &img), MR_ERR_FORMAT, "CMYK", p, "CMYK", "RGB or gray");
    cr_assert_null(img.pixels);
}

/* ---- broken and hostile files ------------------------------------------------------------ */

Test(image, truncated_png_and_jpeg_fail_clearly) {
    const char *dir = temp_dir("imgtrunc");
    enum { W = 64, H = 48 };
    uint8_t px[H * W * 3];
    mr_rng rng;
    mr_rng_seed(&rng, 5);
    for (int i = 0; i < W * H * 3; i++) px[i] = (uint8_t)(mr_rng_next(&rng) >> 56);
    const char *png = tmp_file(dir, "full.png"), *jpg = tmp_file(dir, "full.jpg");
    write_png_spec(png,
                   &(png_spec){.w = W, .h = H, .depth = 8, .type = PNG_COLOR_TYPE_RGB, .rows = px});
    write_jpeg(jpg, W, H, 3, JCS_RGB, px, 90, NULL, 0);
    const char *files[2] = {png, jpg};
    const char *needle[2] = {"truncated", "Premature end of JPEG file"};
    for (int f = 0; f < 2; f++) {
        size_t n;
        uint8_t *d = read_bytes(files[f], &n);
        /* Cut in the pixel data: half-way, and just before the end of the image data (a PNG
         * loses its IDAT's last bytes, a JPEG its last entropy bytes and end marker). */
        const size_t cuts[2] = {n / 2, f == 0 ? n - 20 : n - 8};
        for (int c = 0; c < 2; c++) {
            const char *cut = tmp_file(dir, f == 0 ? "cut.png" : "cut.jpg");
            write_bytes(cut, d, cuts[c]);
            mr_image img;
            EXPECT_FAIL(mr_image_load(cut, 3, &img), MR_ERR_FORMAT, "truncated", cut, needle[f]);
            cr_assert_null(img.pixels);
            mr_image_info info;
            EXPECT_FAIL(mr_image_probe(cut, 1000000, &info), MR_ERR_FORMAT, "probe", needle[f]);
        }
        free(d);
    }
}

static uint32_t crc32_of(const uint8_t *p, size_t n, uint32_t crc) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static size_t put_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t len) {
    out[0] = (uint8_t)(len >> 24), out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8), out[3] = (uint8_t)len;
    memcpy(out + 4, type, 4);
    if (len) memcpy(out + 8, data, len);
    uint32_t crc = crc32_of(out + 4, 4 + (size_t)len, 0);
    out[8 + len] = (uint8_t)(crc >> 24), out[9 + len] = (uint8_t)(crc >> 16);
    out[10 + len] = (uint8_t)(crc >> 8), out[11 + len] = (uint8_t)crc;
    return 12 + (size_t)len;
}

/* A valid-looking PNG header declaring side x side gray pixels, with 1 byte of image data. */
static void write_png_bomb(const char *path, uint32_t side) {
    uint8_t f[128];
    size_t n = 0;
    memcpy(f, "\x89PNG\r\n\x1a\n", 8);
    n = 8;
    const uint8_t ihdr[13] = {(uint8_t)(side >> 24),
                              (uint8_t)(side >> 16),
                              (uint8_t)(side >> 8),
                              (uint8_t)side,
                              (uint8_t)(side >> 24),
                              (uint8_t)(side >> 16),
                              (uint8_t)(side >> 8),
                              (uint8_t)side,
                              8,
                              0,
                              0,
                              0,
                              0};
    n += put_chunk(f + n, "IHDR", ihdr, 13);
    /* zlib: header, one stored final block of 1 byte (row 0's filter byte), Adler-32. */
    const uint8_t idat[] = {0x78, 0x01, 0x01, 0x01, 0x00, 0xfe, 0xff, 0x00, 0x00, 0x01, 0x00, 0x01};
    n += put_chunk(f + n, "IDAT", idat, sizeof idat);
    n += put_chunk(f + n, "IEND", NULL, 0);
    write_bytes(path, f, n);
}

#ifndef __SANITIZE_ADDRESS__
static long vm_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0;
    cr_assert(f && fscanf(f, "%ld", &pages) == 1);
    fclose(f);
    return pages * sysconf(_SC_PAGESIZE);
}

#endif

Test(image, decompression_bomb_is_refused_before_allocating) {
    const char *dir = temp_dir("imgbomb");
    const char *p = tmp_file(dir, "bomb.png");
    write_png_bomb(p, 30000);
    struct stat sb;
    cr_assert_eq(stat(p, &sb), 0);
    cr_assert_lt(sb.st_size, 100);
    mr_image img;
    EXPECT_FAIL(mr_image_load(p, 1, &img), MR_ERR_FORMAT, "default limit", p, "30000x30000",
                "900000000", "limit of 50000000 pixels", "MAX_IMAGE_PIXELS");
    cr_assert_null(img.pixels);
    mr_image_info info;
    EXPECT_FAIL(mr_image_probe(p, MR_IMAGE_MAX_PIXELS_DEFAULT, &info), MR_ERR_FORMAT, "probe",
                "30000x30000");
    int w = 0, h = 0;
    cr_assert_eq(mr_image_size(p, &w, &h), MR_OK, "a header alone costs nothing to read");
    cr_assert(w == 30000 && h == 30000);
    /* 20000 x 20000 under a limit of 1e8: refused the same way, naming that limit. */
    const char *q = tmp_file(dir, "big.png");
    write_png_bomb(q, 20000);
    EXPECT_FAIL(mr_image_load_limited(q, 3, 100000000, &img), MR_ERR_FORMAT, "1e8 limit",
                "20000x20000", "limit of 100000000 pixels");
    /* A JPEG whose frame header declares 60000 x 60000. */
    uint8_t px[16 * 16];
    memset(px, 100, sizeof px);
    const char *j = tmp_file(dir, "bomb.jpg");
    write_jpeg(j, 16, 16, 1, JCS_GRAYSCALE, px, 90, NULL, 0);
    size_t n;
    uint8_t *d = read_bytes(j, &n);
    size_t sof = 2;
    while (sof + 9 < n && !(d[sof] == 0xff && d[sof + 1] == 0xc0)) sof++;
    cr_assert_lt(sof + 9, n, "no SOF0 marker");
    d[sof + 5] = d[sof + 7] = 0xea, d[sof + 6] = d[sof + 8] = 0x60; /* 60000 */
    write_bytes(j, d, n);
    free(d);
    EXPECT_FAIL(mr_image_load(j, 1, &img), MR_ERR_FORMAT, "jpeg bomb", "60000x60000",
                "MAX_IMAGE_PIXELS");

#ifndef __SANITIZE_ADDRESS__ /* ASan reserves terabytes of address space: no RLIMIT_AS there */
    /* In a child whose address space cannot grow by more than 256 MB: with the default limit
     * the bomb is refused by the limit (so before the 900 MB allocation, which would fail
     * first otherwise), and with the limit raised over it the allocation fails cleanly. */
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        long cap = vm_bytes() + (256L << 20);
        struct rlimit rl = {(rlim_t)cap, (rlim_t)cap};
        if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(10);
        mr_image a;
        if (mr_image_load(p, 1, &a) != MR_ERR_FORMAT || !strstr(mr_last_error(), "limit of"))
            _exit(11);
        if (mr_image_load_limited(p, 1, 1000000000, &a) != MR_ERR_NOMEM || a.pixels) _exit(12);
        _exit(0);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
#endif
}

Test(image, fifo_is_refused_at_once, .timeout = 10) {
    const char *dir = temp_dir("imgfifo");
    const char *p = tmp_file(dir, "pipe.png");
    cr_assert_eq(mkfifo(p, 0600), 0, "mkfifo: %s", strerror(errno));
    mr_image img;
    EXPECT_FAIL(mr_image_load(p, 3, &img), MR_ERR_IO, "load", p, "not a regular file (a FIFO)");
    int w, h;
    EXPECT_FAIL(mr_image_size(p, &w, &h), MR_ERR_IO, "size", "not a regular file (a FIFO)");
    mr_image_info info;
    EXPECT_FAIL(mr_image_probe(p, 100, &info), MR_ERR_IO, "probe", "(a FIFO)");
}

Test(image, directory_and_device_are_refused) {
    const char *dir = temp_dir("imgdir");
    mr_image img;
    EXPECT_FAIL(mr_image_load(dir, 1, &img), MR_ERR_IO, "dir", dir,
                "not a regular file (a directory)");
    cr_assert_null(strstr(mr_last_error(), "9223372036854775807"));
    cr_assert_null(strstr(mr_last_error(), "bytes"), "%s", mr_last_error());
    int w, h;
    EXPECT_FAIL(mr_image_size(dir, &w, &h), MR_ERR_IO, "dir size", "(a directory)");
    EXPECT_FAIL(mr_image_load("/dev/zero", 1, &img), MR_ERR_IO, "device",
                "not a regular file (a character device)");
    EXPECT_FAIL(mr_image_load(tmp_file(dir, "missing.png"), 1, &img), MR_ERR_IO, "missing",
                "missing.png", "cannot open image", "No such file");
}

Test(image, other_files_name_the_accepted_formats) {
    const char *dir = temp_dir("imgnot");
    const char *p = tmp_file(dir, "notes.png");
    write_bytes(p, "hello, world\n", 13);
    mr_image img;
    EXPECT_FAIL(mr_image_load(p, 3, &img), MR_ERR_FORMAT, "text", p, "not an image", "68 65 6c 6c",
                "PNG, JPEG or BMP (uncompressed 8, 24 or 32-bit)");
    p = tmp_file(dir, "empty.jpg");
    write_bytes(p, "", 0);
    EXPECT_FAIL(mr_image_load(p, 3, &img), MR_ERR_FORMAT, "empty", "empty file",
                "PNG, JPEG or BMP");
    p = tmp_file(dir, "anim.gif");
    write_bytes(p, "GIF89a\x01\x00\x01\x00\x00\x00\x00;", 14);
    EXPECT_FAIL(mr_image_load(p, 3, &img), MR_ERR_FORMAT, "gif", "a GIF image", "PNG, JPEG or BMP");
    uint8_t dicom[200] = {0};
    memcpy(dicom + 128, "DICM", 4);
    p = tmp_file(dir, "scan.png");
    write_bytes(p, dicom, sizeof dicom);
    EXPECT_FAIL(mr_image_load(p, 3, &img), MR_ERR_FORMAT, "dicom", "a DICOM file");
    EXPECT_FAIL(mr_image_load(p, 2, &img), MR_ERR_ARG, "channels", "1 or 3");
    EXPECT_FAIL(mr_image_load_limited(p, 1, 0, &img), MR_ERR_ARG, "limit", "at least 1");
}

/* ---- BMP --------------------------------------------------------------------------------- */

static void p32le(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(v >> (8 * k));
}

/* A BMP of rgb (h, w, 3): 24 or 32-bit, or 8-bit where rgb[.., 0] is the palette index into
 * `palette` (BGRA entries); bottom-up unless top_down; 32-bit with bit fields after a
 * 40-byte header when bitfields. */
static void write_bmp(const char *path, int w, int h, int bpp, bool top_down, bool bitfields,
                      const uint8_t *rgb, const uint8_t *palette, int n_palette) {
    size_t stride = ((size_t)w * (size_t)bpp + 31) / 32 * 4;
    size_t extra = bitfields ? 12 : 0, pal = bpp == 8 ? (size_t)n_palette * 4 : 0;
    size_t offset = 14 + 40 + extra + pal, size = offset + stride * (size_t)h;
    uint8_t *f = calloc(size, 1);
    f[0] = 'B', f[1] = 'M';
    p32le(f + 2, (uint32_t)size);
    p32le(f + 10, (uint32_t)offset);
    p32le(f + 14, 40);
    p32le(f + 18, (uint32_t)w);
    p32le(f + 22, (uint32_t)(top_down ? -h : h));
    f[26] = 1, f[28] = (uint8_t)bpp;
    p32le(f + 30, bitfields ? 3 : 0);
    p32le(f + 46, bpp == 8 ? (uint32_t)n_palette : 0);
    if (bitfields) p32le(f + 54, 0xff0000), p32le(f + 58, 0xff00), p32le(f + 62, 0xff);
    if (pal) memcpy(f + 14 + 40 + extra, palette, pal);
    for (int y = 0; y < h; y++) {
        uint8_t *row = f + offset + stride * (size_t)(top_down ? y : h - 1 - y);
        for (int x = 0; x < w; x++) {
            const uint8_t *p = rgb + ((size_t)y * (size_t)w + (size_t)x) * 3;
            if (bpp == 8) {
                row[x] = p[0];
            } else {
                uint8_t *q = row + (size_t)x * (size_t)(bpp / 8);
                q[0] = p[2], q[1] = p[1], q[2] = p[0];
                if (bpp == 32) q[3] = (uint8_t)(x * 40); /* ignored */
            }
        }
    }
    write_bytes(path, f, size);
    free(f);
}

Test(image, bmp_8_24_32_bit_both_row_orders) {
    const char *dir = temp_dir("imgbmp");
    enum { W = 5, H = 3 }; /* 5 pixels: rows are padded to 4 bytes */
    uint8_t rgb[H * W * 3], idx[H * W * 3], palette[16 * 4];
    for (int i = 0; i < W * H * 3; i++) rgb[i] = (uint8_t)(i * 17 + 1);
    for (int i = 0; i < 16; i++)
        palette[4 * i] = (uint8_t)(i * 3), palette[4 * i + 1] = (uint8_t)(255 - i),
                    palette[4 * i + 2] = (uint8_t)(i * 7), palette[4 * i + 3] = 0;
    for (int i = 0; i < W * H; i++) idx[3 * i] = (uint8_t)((i * 5) % 16);
    const int bpps[4] = {24, 32, 32, 8};
    for (int k = 0; k < 4; k++)
        for (int td = 0; td < 2; td++) {
            const char *p = tmp_file(dir, "x.bmp");
            write_bmp(p, W, H, bpps[k], td, k == 2, k == 3 ? idx : rgb, palette, 16);
            mr_image img = load(p, 3);
            cr_assert(img.width == W && img.height == H);
            for (int i = 0; i < W * H; i++) {
                const uint8_t *q = img.pixels + 3 * i;
                if (bpps[k] == 8) {
                    const uint8_t *e = palette + 4 * idx[3 * i];
                    cr_assert(q[0] == e[2] && q[1] == e[1] && q[2] == e[0], "8-bit pixel %d", i);
                } else {
                    cr_assert_eq(memcmp(q, rgb + 3 * i, 3), 0, "%d-bit%s pixel %d", bpps[k],
                                 td ? " top-down" : "", i);
                }
            }
            mr_image_free(&img);
            mr_image_info info = probe(p);
            cr_assert_eq(info.format, MR_IMAGE_BMP);
            cr_assert_eq(info.palette, bpps[k] == 8);
        }
}

Test(image, bmp_other_forms_are_refused) {
    const char *dir = temp_dir("imgbmpbad");
    uint8_t rgb[4 * 4 * 3] = {0};
    const char *p = tmp_file(dir, "x.bmp");
    write_bmp(p, 4, 4, 24, false, false, rgb, NULL, 0);
    size_t n;
    uint8_t *d = read_bytes(p, &n);
    mr_image img;
    d[28] = 16; /* 16 bits per pixel */
    write_bytes(p, d, n);
    EXPECT_FAIL(mr_image_load(p, 3, &img), MR_ERR_FORMAT, "16-bit", "a 16-bit BMP", "not supported",
                "PNG, JPEG or BMP (uncompressed 8, 24 or 32-bit)");
    d[28] = 8, d[30] = 1; /* RLE8 */
    write_bytes(p, d, n);
    EXPECT_FAIL(mr_image_load(p, 3, &img), MR_ERR_FORMAT, "rle", "compressed BMP", "not supported");
    d[28] = 24, d[30] = 0;
    write_bytes(p, d, n - 10); /* rows missing */
    EXPECT_FAIL(mr_image_load(p, 3, &img), MR_ERR_FORMAT, "short", "truncated");
    int w, h;
    EXPECT_FAIL(mr_image_size(p, &w, &h), MR_ERR_FORMAT, "short size", "truncated");
    free(d);
}

/* ---- config ------------------------------------------------------------------------------ */

Test(image, config_limit_defaults_to_the_library_limit) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(c.max_image_pixels, MR_IMAGE_MAX_PIXELS_DEFAULT);
    cr_assert_eq(mr_config_parse("{\"MAX_IMAGE_PIXELS\": 1000000000}", "t.json", &c), MR_OK, "%s",
                 mr_last_error());
    cr_assert_eq(c.max_image_pixels, 1000000000);
    cr_assert_eq(mr_config_parse("{\"MAX_IMAGE_PIXELS\": 0}", "t.json", &c), MR_ERR_CONFIG);
    cr_assert(strstr(mr_last_error(), "MAX_IMAGE_PIXELS"), "%s", mr_last_error());
}

/* ---- molding from 8-bit pixels ----------------------------------------------------------- */

/* mr_mold_image as it was before it read the 8-bit pixels in place: a float plane per channel,
 * mr_resize_bilinear, truncation, padding, normalisation. Kept verbatim as the oracle. */
static mr_status old_mold_image(float *out, const uint8_t *pixels, int64_t h, int64_t w,
                                int channels, int min_dim, int max_dim, const float *mean_pixel,
                                const float *pixel_std, mr_mold_info *info) {
    if (h < 1 || w < 1)
        return mr_fail(MR_ERR_ARG, "cannot mold an empty %lldx%lld image", (long long)h,
                       (long long)w);
    mr_mold_plan(h, w, min_dim, max_dim, info);
    int64_t rh = info->resized_h, rw = info->resized_w, side = max_dim;
    float *plane = malloc(sizeof(float) * (size_t)(h * w));
    float *resized = malloc(sizeof(float) * (size_t)(rh * rw));
    if (!plane || !resized) {
        free(plane);
        free(resized);
        return mr_fail(MR_ERR_NOMEM, "no memory to resize a %lldx%lld image", (long long)h,
                       (long long)w);
    }
    mr_status st = MR_OK;
    for (int c = 0; c < channels && st == MR_OK; c++) {
        const float std = pixel_std ? pixel_std[c] : 1.0f;
        for (int64_t i = 0; i < h * w; i++) plane[i] = (float)pixels[i * channels + c];
        if (rh == h && rw == w)
            memcpy(resized, plane, sizeof(float) * (size_t)(h * w));
        else
            st = mr_resize_bilinear(resized, rh, rw, plane, h, w);
        if (st != MR_OK) break;
        for (int64_t y = 0; y < side; y++)
            for (int64_t x = 0; x < side; x++) {
                int64_t ry = y - info->top, rx = x - info->left;
                float v = 0.0f;
                if (ry >= 0 && ry < rh && rx >= 0 && rx < rw) v = truncf(resized[ry * rw + rx]);
                out[(y * side + x) * channels + c] = (v - mean_pixel[c]) / std;
            }
    }
    free(plane);
    free(resized);
    return st;
}

Test(image, mold_from_uint8_is_bit_identical_to_the_float_path) {
    /* Sizes scaled up, down, not at all, extreme shapes, one pixel; contents: noise, a band of
     * values that excludes 0 (the keep-zero rule), constant channels, and flat 8x8 blocks: there
     * interpolation should give whole numbers, and whether it gives 255 or 254.99999999999997
     * (truncated to 254) depends on the exact order of the double arithmetic. */
    static const struct {
        int h, w, c, min_dim, max_dim, content;
    } cases[] = {
        {37, 53, 1, 64, 128, 0},  {300, 200, 3, 0, 128, 0},   {128, 128, 1, 128, 128, 0},
        {1, 1, 3, 0, 64, 0},      {5, 700, 1, 32, 256, 1},    {99, 101, 3, 100, 192, 1},
        {250, 130, 3, 0, 64, 2},  {640, 480, 1, 512, 512, 0}, {17, 19, 3, 128, 256, 1},
        {37, 53, 3, 128, 192, 3}, {45, 30, 1, 100, 128, 3},   {300, 171, 1, 0, 128, 3},
    };
    const float mean[3] = {123.7f, 116.8f, 103.9f}, std[3] = {58.4f, 57.1f, 57.4f};
    mr_rng rng;
    mr_rng_seed(&rng, 11);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int h = cases[k].h, w = cases[k].w, c = cases[k].c, S = cases[k].max_dim;
        uint8_t *px = malloc((size_t)h * (size_t)w * (size_t)c);
        for (int64_t i = 0; i < (int64_t)h * w * c; i++) {
            uint8_t r = (uint8_t)(mr_rng_next(&rng) >> 56);
            int64_t y = i / c / w, x = i / c % w;
            px[i] = cases[k].content == 0   ? r
                    : cases[k].content == 1 ? (uint8_t)(40 + r % 150)
                    : cases[k].content == 2 ? (uint8_t)(i % c == 1 ? 77 : r)
                                            : (uint8_t)((y / 8 * 97 + x / 8 * 61 + i % c * 31) * 7);
        }
        for (int norm = 0; norm < 2; norm++) {
            size_t n = (size_t)S * (size_t)S * (size_t)c;
            float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
            mr_mold_info wi, gi;
            const float *sd = norm ? std : NULL;
            cr_assert_eq(old_mold_image(want, px, h, w, c, cases[k].min_dim, S, mean, sd, &wi),
                         MR_OK);
            cr_assert_eq(mr_mold_image(got, px, h, w, c, cases[k].min_dim, S, mean, sd, &gi), MR_OK,
                         "%s", mr_last_error());
            cr_assert_eq(memcmp(&wi, &gi, sizeof wi), 0, "case %zu: mold info differs", k);
            for (size_t i = 0; i < n; i++)
                cr_assert(memcmp(&want[i], &got[i], sizeof(float)) == 0,
                          "case %zu (%dx%dx%d -> %d, norm %d): element %zu is %.9g, was %.9g", k, h,
                          w, c, S, norm, i, (double)got[i], (double)want[i]);
            free(want);
            free(got);
        }
        free(px);
    }
}

/* Before the truncation that hides the last bits: each resized row is the float that
 * mr_resize_bilinear gives from a float copy of the channel, bit for bit. */
Test(image, resize_rows_from_uint8_equal_resize_bilinear) {
    static const int sizes[][4] = {{37, 53, 128, 91},    {300, 200, 128, 85}, {64, 64, 64, 64},
                                   {1, 1, 7, 3},         {5, 700, 18, 2560},  {99, 101, 33, 34},
                                   {171, 300, 512, 901}, {8, 8, 3, 3}};
    mr_rng rng;
    mr_rng_seed(&rng, 3);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int h = sizes[k][0], w = sizes[k][1], rh = sizes[k][2], rw = sizes[k][3], C = 3;
        uint8_t *px = malloc((size_t)h * (size_t)w * C);
        float *plane = malloc(sizeof(float) * (size_t)h * (size_t)w);
        float *want = malloc(sizeof(float) * (size_t)rh * (size_t)rw);
        float *row = malloc(sizeof(float) * (size_t)rw);
        for (int64_t i = 0; i < (int64_t)h * w * C; i++)
            px[i] = i % C == 2 ? (uint8_t)(30 + (mr_rng_next(&rng) >> 56) % 100)
                               : (uint8_t)(mr_rng_next(&rng) >> 56);
        for (int c = 0; c < C; c++) {
            for (int64_t i = 0; i < (int64_t)h * w; i++) plane[i] = (float)px[i * C + c];
            cr_assert_eq(mr_resize_bilinear(want, rh, rw, plane, h, w), MR_OK);
            mr_resize_u8 rs;
            mr_resize_u8_init(&rs, px, h, w, C, c, rh, rw);
            for (int y = 0; y < rh; y++) {
                mr_resize_u8_row(&rs, y, row);
                for (int x = 0; x < rw; x++)
                    cr_assert(memcmp(&row[x], &want[(size_t)y * rw + x], sizeof(float)) == 0,
                              "%dx%d -> %dx%d channel %d (%d, %d): %.9g, float path %.9g", h, w, rh,
                              rw, c, y, x, (double)row[x], (double)want[(size_t)y * rw + x]);
            }
        }
        free(px), free(plane), free(want), free(row);
    }
}

/* Image decoding and encoding: PNG through libpng, JPEG through libjpeg-turbo (with the EXIF
 * orientation), uncompressed BMP through the small reader below. Every decoder hands its rows,
 * 8-bit with the file's own channels, to one place (put_row) that converts the channels,
 * applies the orientation and writes the output, so the conversions are written once. */
#include "image.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "../core/file.h"
#include "../core/util.h"

#define ACCEPTED "images must be " MR_IMAGE_FORMATS

/* More progressive scans than any encoder writes (they use about 10): a file with thousands
 * costs minutes of CPU for one small image, a known denial of service. */
enum { JPEG_MAX_SCANS = 500 };

typedef enum { READ_HEADER, READ_PROBE, READ_PIXELS } read_mode;

/* One decode: what was asked, what the header said, and every buffer to free afterwards.
 * Decoders that longjmp keep all their changing state here, in the caller's frame. */
typedef struct {
    const char *path;
    FILE *f;
    read_mode mode;
    int want;           /* channels asked for: 0 (the file's own), 1 or 3 */
    int64_t max_pixels; /* READ_PROBE and READ_PIXELS */
    mr_image *out;      /* READ_PIXELS */
    mr_image_info info;
    int w, h, n;    /* stored size and channels of the rows handed to put_row */
    bool colour;    /* a pixel with R != G or G != B was seen */
    uint8_t *row;   /* one decoded row, w * n */
    uint8_t *raw;   /* BMP: one row as stored */
    uint8_t *image; /* interlaced PNG: the whole image, w * h * n */
    mr_status code; /* of the decoder error in `err` */
    char err[256];  /* >= JMSG_LENGTH_MAX */
} job;

/* ---- the common part -------------------------------------------------------------------- */

static const char *file_kind(mode_t m) {
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    return "not a file";
}

/* Opens a regular file only: reading a FIFO waits forever for a writer, a device may never
 * end, and a directory's "size" is nonsense. stat first, so nothing else is even opened;
 * O_NONBLOCK so a path swapped for a FIFO after the stat cannot block the open; fstat to check
 * what was really opened. O_NONBLOCK changes nothing for reads of a regular file. */
static mr_status open_regular(const char *path, FILE **out, int64_t *size) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return mr_fail(MR_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return mr_fail(MR_ERR_IO, "%s: not a regular file (%s)", path, file_kind(sb.st_mode));
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return mr_fail(MR_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return mr_fail(MR_ERR_IO, "%s: not a regular file (%s)", path, file_kind(sb.st_mode));
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return mr_fail(MR_ERR_IO, "%s: cannot open image: %s", path, strerror(e));
    }
    *out = f;
    *size = (int64_t)sb.st_size;
    return MR_OK;
}

/* The header has been read: w x h stored pixels of n channels, shown after `orientation`.
 * Checks the pixel limit, then allocates the output and one row; nothing larger than a row
 * is allocated before this check. */
static mr_status start_pixels(job *j, uint32_t w, uint32_t h, int n, int orientation) {
    if (w == 0 || h == 0 || w > INT_MAX || h > INT_MAX)
        return mr_fail(MR_ERR_FORMAT, "%s: the header declares an image of %lux%lu pixels", j->path,
                       (unsigned long)w, (unsigned long)h);
    j->w = (int)w;
    j->h = (int)h;
    j->n = n;
    j->info.channels = n;
    j->info.orientation = orientation;
    bool swap = orientation >= 5; /* 5-8 turn the image by a quarter */
    j->info.width = swap ? j->h : j->w;
    j->info.height = swap ? j->w : j->h;
    if (j->mode == READ_HEADER) return MR_OK;
    int64_t pixels = (int64_t)w * (int64_t)h;
    if (pixels > j->max_pixels)
        return mr_fail(MR_ERR_FORMAT,
                       "%s: image of %lux%lu pixels (%lld) is over the limit of %lld pixels; if "
                       "it is genuine, raise MAX_IMAGE_PIXELS in the config",
                       j->path, (unsigned long)w, (unsigned long)h, (long long)pixels,
                       (long long)j->max_pixels);
    j->row = malloc((size_t)w * (size_t)n);
    if (!j->row) return mr_fail(MR_ERR_NOMEM, "%s: no memory for one image row", j->path);
    if (j->mode == READ_PIXELS) {
        int c = j->want ? j->want : n;
        if (mr_image_alloc(j->out, j->info.width, j->info.height, c) != MR_OK)
            return mr_fail(MR_ERR_NOMEM, "%s: no memory for a %dx%dx%d image", j->path,
                           j->info.width, j->info.height, c);
    }
    return MR_OK;
}

/* Stored row y, n channels, into the output: channels converted (image.h gives the rules),
 * and each pixel placed where the EXIF orientation shows it. Stored pixel (x, y) of a w x h
 * image is shown at (x', y') =
 *   1 (x, y)   2 (w-1-x, y)   3 (w-1-x, h-1-y)   4 (x, h-1-y)
 *   5 (y, x)   6 (h-1-y, x)   7 (h-1-y, w-1-x)   8 (y, w-1-x)
 * (5-8 in a h x w output), i.e. output pixel start + x * step. */
static void put_row(job *j, int y, const uint8_t *row) {
    const int w = j->w, h = j->h, n = j->n;
    if (n >= 3 && !j->colour)
        for (int x = 0; x < w; x++) {
            const uint8_t *p = row + (size_t)x * (size_t)n;
            if (p[0] != p[1] || p[1] != p[2]) {
                j->colour = true;
                break;
            }
        }
    mr_image *o = j->out;
    if (!o) return;
    const int64_t W = o->width, Y = y;
    int64_t start = 0, step = 1;
    switch (j->info.orientation) {
    case 2:
        start = Y * W + w - 1, step = -1;
        break;
    case 3:
        start = (h - 1 - Y) * W + w - 1, step = -1;
        break;
    case 4:
        start = (h - 1 - Y) * W, step = 1;
        break;
    case 5:
        start = Y, step = W;
        break;
    case 6:
        start = h - 1 - Y, step = W;
        break;
    case 7:
        start = (int64_t)(w - 1) * W + h - 1 - Y, step = -W;
        break;
    case 8:
        start = (int64_t)(w - 1) * W + Y, step = -W;
        break;
    default:
        start = Y * W, step = 1;
        break;
    }
    const int c = o->channels;
    if (c == n && step == 1) {
        memcpy(o->pixels + start * c, row, (size_t)w * (size_t)n);
        return;
    }
    for (int x = 0; x < w; x++) {
        const uint8_t *p = row + (size_t)x * (size_t)n;
        uint8_t *q = o->pixels + (start + x * step) * c;
        if (c == n)
            memcpy(q, p, (size_t)n);
        else if (c == 1) /* n is 2, 3 or 4 */
            q[0] = n >= 3 ? (uint8_t)((p[0] + p[1] + p[2] + 1) / 3) : p[0];
        else /* c == 3 */
            for (int k = 0; k < 3; k++) q[k] = n >= 3 ? p[k] : p[0];
    }
}

/* ---- PNG (libpng) ------------------------------------------------------------------------ */

_Noreturn static void png_fail(png_structp png, mr_status code, const char *msg) {
    job *j = png_get_error_ptr(png);
    j->code = code;
    snprintf(j->err, sizeof j->err, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_error(png_structp png, png_const_charp msg) {
    /* libpng reports its own allocation failures through here too */
    png_fail(png, strstr(msg, "memory") ? MR_ERR_NOMEM : MR_ERR_FORMAT, msg);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png; /* ancillary-chunk trouble (bad CRC, bad profile): the pixels are still fine */
    (void)msg;
}

static void png_on_read(png_structp png, png_bytep data, size_t len) {
    job *j = png_get_io_ptr(png);
    if (fread(data, 1, len, j->f) == len) return;
    if (ferror(j->f)) png_fail(png, MR_ERR_IO, strerror(errno));
    png_fail(png, MR_ERR_FORMAT, "the file ends early: truncated");
}

static void png_rows(png_structp png, job *j, int passes) {
    size_t stride = (size_t)j->w * (size_t)j->n;
    if (passes == 1) {
        for (int y = 0; y < j->h; y++) {
            png_read_row(png, j->row, NULL);
            put_row(j, y, j->row);
        }
        return;
    }
    /* Interlaced: each pass fills in pixels of rows already read, so all rows are kept. */
    j->image = malloc(stride * (size_t)j->h);
    if (!j->image) png_fail(png, MR_ERR_NOMEM, "no memory to de-interlace");
    for (int pass = 0; pass < passes; pass++)
        for (int y = 0; y < j->h; y++) png_read_row(png, j->image + (size_t)y * stride, NULL);
    for (int y = 0; y < j->h; y++) put_row(j, y, j->image + (size_t)y * stride);
}

static mr_status read_png(job *j) {
    j->info.format = MR_IMAGE_PNG;
    j->code = MR_ERR_FORMAT;
    png_structp png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, j, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return mr_fail(MR_ERR_NOMEM, "%s: no memory for the PNG decoder", j->path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return mr_fail(j->code, "%s: not a readable PNG image (%s)", j->path, j->err);
    }
    /* Sizes up to the format's own maximum: the pixel limit decides, in start_pixels. Chunks
     * other than IDAT: 8 MB each at most (libpng's usual bound, stated here so it cannot be
     * built away), and at most 128 stored text or palette-like ones, so none can eat memory. */
    png_set_user_limits(png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
    png_set_chunk_cache_max(png, 128);
    png_set_chunk_malloc_max(png, 8 << 20);
    png_set_read_fn(png, j, png_on_read);
    png_read_info(png, info);

    png_uint_32 w = 0, h = 0;
    int depth = 0, type = 0;
    png_get_IHDR(png, info, &w, &h, &depth, &type, NULL, NULL, NULL);
    bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    const char *name = "RGBA";
    int n = 4;
    switch (type) {
    case PNG_COLOR_TYPE_GRAY:
        name = "gray", n = trns ? 2 : 1;
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        name = "gray+alpha", n = 2;
        break;
    case PNG_COLOR_TYPE_PALETTE:
        name = "palette", n = trns ? 4 : 3;
        break;
    case PNG_COLOR_TYPE_RGB:
        name = "RGB", n = trns ? 4 : 3;
        break;
    default:
        break;
    }
    j->info.bit_depth = depth;
    j->info.palette = type == PNG_COLOR_TYPE_PALETTE;
    snprintf(j->info.kind, sizeof j->info.kind, "PNG %d-bit %s%s", depth, name,
             trns ? " with transparency" : "");
    mr_status st = start_pixels(j, w, h, n, 1);
    if (st != MR_OK || j->mode == READ_HEADER) {
        png_destroy_read_struct(&png, &info, NULL);
        return st;
    }

    /* To 8-bit samples with the file's channels; 16-bit keeps the top byte (image.h). */
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (trns) png_set_tRNS_to_alpha(png);
    if (depth == 16) png_set_strip_16(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != n || png_get_rowbytes(png, info) != (size_t)w * (size_t)n)
        png_fail(png, MR_ERR_FORMAT, "unexpected layout after conversion to 8 bits");
    png_rows(png, j, passes);
    /* The chunks after the pixels (text, IEND) are not read: the pixel data is complete and
     * checked (chunk CRCs, zlib checksum) by now, and other readers accept such files too. */
    png_destroy_read_struct(&png, &info, NULL);
    return MR_OK;
}

/* ---- JPEG (libjpeg-turbo) ---------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    job *j;
} jpeg_errors;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_errors errors;
    struct jpeg_progress_mgr progress;
} jpeg_state;

/* libjpeg's default error_exit calls exit(): ours returns to read_jpeg with the message. */
static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    e->j->code = cinfo->err->msg_code == JERR_OUT_OF_MEMORY ? MR_ERR_NOMEM : MR_ERR_FORMAT;
    cinfo->err->format_message(cinfo, e->j->err);
    longjmp(e->jump, 1);
}

/* Warnings that mean pixels were lost or made up fail the decode: libjpeg fills a truncated
 * file's missing rows with gray and goes on. Harmless ones (extra bytes before a marker, an
 * unknown JFIF revision) are ignored, as other readers do. Trace messages are dropped. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
    case JWRN_HIT_MARKER:
    case JWRN_HUFF_BAD_CODE:
    case JWRN_ARITH_BAD_CODE:
    case JWRN_MUST_RESYNC:
        jpeg_on_error(cinfo);
        break;
    default:
        break;
    }
}

static void jpeg_on_progress(j_common_ptr cinfo) {
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    if (cinfo->is_decompressor && ((j_decompress_ptr)cinfo)->input_scan_number > JPEG_MAX_SCANS) {
        snprintf(e->j->err, sizeof e->j->err, "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(e->jump, 1);
    }
}

static unsigned get16(const uint8_t *p, bool le) {
    return le ? (unsigned)p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | (unsigned)p[1];
}

static uint32_t get32(const uint8_t *p, bool le) {
    return le ? (uint32_t)get16(p, 1) | (uint32_t)get16(p + 2, 1) << 16
              : (uint32_t)get16(p, 0) << 16 | (uint32_t)get16(p + 2, 0);
}

/* The Orientation tag (0x0112) of IFD0 in an APP1 segment: "Exif\0\0", then a TIFF header
 * ("II" little-endian or "MM" big-endian, 42, offset of IFD0), then IFD0's 12-byte entries.
 * 0 when the segment is not EXIF (XMP also lives in APP1), 1 when the tag is absent or out of
 * 1-8, as browsers read it. Every offset is checked against the segment's length. */
static int exif_orientation(const uint8_t *d, size_t len) {
    if (len < 6 + 8 || memcmp(d, "Exif\0\0", 6) != 0) return 0;
    const uint8_t *t = d + 6;
    size_t n = len - 6;
    bool le = t[0] == 'I' && t[1] == 'I';
    if (!le && !(t[0] == 'M' && t[1] == 'M')) return 1;
    if (get16(t + 2, le) != 42) return 1;
    uint32_t ifd = get32(t + 4, le);
    if (ifd > n - 2) return 1;
    unsigned entries = get16(t + ifd, le);
    for (unsigned i = 0; i < entries; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) break;
        if (get16(t + e, le) != 0x0112) continue;
        /* type 3 is SHORT: the value sits in the first two bytes of the value field */
        unsigned v =
            get16(t + e + 2, le) == 3 && get32(t + e + 4, le) >= 1 ? get16(t + e + 8, le) : 1;
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

static int jpeg_orientation(j_decompress_ptr cinfo) {
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        int o = exif_orientation(m->data, m->data_length);
        if (o) return o;
    }
    return 1;
}

static const char *const ORIENTATION_NAME[9] = {"",
                                                "",
                                                "mirrored",
                                                "turned 180 degrees",
                                                "flipped upside down",
                                                "transposed",
                                                "turned 90 degrees clockwise",
                                                "transversed",
                                                "turned 90 degrees counter-clockwise"};

static mr_status jpeg_decode(job *j, jpeg_state *s) {
    j_decompress_ptr cinfo = &s->cinfo;
    cinfo->err = jpeg_std_error(&s->errors.pub);
    s->errors.pub.error_exit = jpeg_on_error;
    s->errors.pub.emit_message = jpeg_on_message;
    s->errors.j = j;
    if (setjmp(s->errors.jump)) {
        jpeg_destroy_decompress(cinfo);
        return mr_fail(j->code, "%s: not a readable JPEG image (%s)", j->path, j->err);
    }
    jpeg_create_decompress(cinfo);
    s->progress.progress_monitor = jpeg_on_progress;
    cinfo->progress = &s->progress;
    jpeg_stdio_src(cinfo, j->f);
    jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(cinfo, TRUE);

    int n = 3;
    switch (cinfo->jpeg_color_space) {
    case JCS_GRAYSCALE:
        n = 1, cinfo->out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        n = 3, cinfo->out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        jpeg_destroy_decompress(cinfo);
        return mr_fail(MR_ERR_FORMAT,
                       "%s: a CMYK JPEG (a print colour space) cannot be read; save it as RGB "
                       "or gray, e.g. convert in.jpg -colorspace sRGB out.jpg",
                       j->path);
    default:
        jpeg_destroy_decompress(cinfo);
        return mr_fail(MR_ERR_FORMAT,
                       "%s: a JPEG with %d colour components of unknown meaning cannot be read; "
                       "save it as RGB or gray",
                       j->path, cinfo->num_components);
    }
    int orientation = jpeg_orientation(cinfo);
    j->info.bit_depth = cinfo->data_precision;
    snprintf(j->info.kind, sizeof j->info.kind, "JPEG %s%s%s", n == 1 ? "gray" : "RGB",
             orientation == 1 ? "" : ", EXIF orientation applied: ", ORIENTATION_NAME[orientation]);
    mr_status st = start_pixels(j, cinfo->image_width, cinfo->image_height, n, orientation);
    if (st != MR_OK || j->mode == READ_HEADER) {
        jpeg_destroy_decompress(cinfo);
        return st;
    }
    jpeg_start_decompress(cinfo);
    if (cinfo->output_components != n || (int)cinfo->output_width != j->w ||
        (int)cinfo->output_height != j->h) {
        jpeg_destroy_decompress(cinfo);
        return mr_fail(MR_ERR_FORMAT, "%s: JPEG decoder output does not match its header", j->path);
    }
    while (cinfo->output_scanline < cinfo->output_height) {
        int y = (int)cinfo->output_scanline;
        JSAMPROW rows[1] = {j->row};
        if (jpeg_read_scanlines(cinfo, rows, 1) != 1) {
            jpeg_destroy_decompress(cinfo);
            return mr_fail(MR_ERR_FORMAT, "%s: not a readable JPEG image (no data for row %d)",
                           j->path, y);
        }
        put_row(j, y, j->row);
    }
    /* Not jpeg_finish_decompress: it reads on to the end marker, and a file whose pixels are
     * all there but whose last two bytes are missing is still a good image. */
    jpeg_destroy_decompress(cinfo);
    return MR_OK;
}

static mr_status read_jpeg(job *j) {
    j->info.format = MR_IMAGE_JPEG;
    j->code = MR_ERR_FORMAT;
    /* Lives here, outside the function that calls setjmp, so libjpeg's changes to it are
     * kept across the longjmp. */
    jpeg_state s;
    memset(&s, 0, sizeof s);
    return jpeg_decode(j, &s);
}

/* ---- BMP --------------------------------------------------------------------------------- */

/* BMP is read here because libpng and libjpeg cannot and some ultrasound machines export it;
 * only the plain forms: BITMAPINFOHEADER or later (40-124 bytes), 8-bit palette, 24-bit or
 * 32-bit (the 4th byte ignored: Windows calls it unused, and alpha is dropped anyway),
 * uncompressed or 32-bit bit fields in the usual byte order, bottom-up or top-down. */
static mr_status bmp_refuse(const job *j, const char *what) {
    return mr_fail(MR_ERR_FORMAT, "%s: %s is not supported; " ACCEPTED, j->path, what);
}

static mr_status bmp_corrupt(const job *j, const char *what) {
    return mr_fail(MR_ERR_FORMAT, "%s: not a readable BMP image (%s)", j->path, what);
}

static mr_status read_bmp(job *j, int64_t file_size) {
    j->info.format = MR_IMAGE_BMP;
    uint8_t hd[14 + 124 + 12];
    if (fread(hd, 1, 18, j->f) != 18) return bmp_corrupt(j, "the file ends inside the header");
    uint32_t offset = get32(hd + 10, 1), hsize = get32(hd + 14, 1);
    if (hsize == 12) return bmp_refuse(j, "an OS/2 BMP (12-byte header)");
    if (hsize < 40 || hsize > 124) return bmp_corrupt(j, "bad header size");
    if (fread(hd + 18, 1, hsize - 4, j->f) != hsize - 4)
        return bmp_corrupt(j, "the file ends inside the header");
    const uint8_t *ih = hd + 14;
    int32_t w = (int32_t)get32(ih + 4, 1), hs = (int32_t)get32(ih + 8, 1);
    unsigned planes = get16(ih + 12, 1), bpp = get16(ih + 14, 1);
    uint32_t compression = get32(ih + 16, 1), colours = get32(ih + 32, 1);
    if (w <= 0 || hs == 0 || hs == INT32_MIN || planes != 1)
        return bmp_corrupt(j, "bad width, height or plane count");
    bool top_down = hs < 0;
    uint32_t h = (uint32_t)(top_down ? -hs : hs);
    char what[128];
    if (bpp != 8 && bpp != 24 && bpp != 32) {
        snprintf(what, sizeof what, "a %u-bit BMP", bpp);
        return bmp_refuse(j, what);
    }
    if (compression == 3 && bpp == 32) {
        /* Bit fields: inside the header from 52 bytes on, else right after it. */
        const uint8_t *masks = ih + 40;
        if (hsize < 52 && fread(hd + 14 + hsize, 1, 12, j->f) != 12)
            return bmp_corrupt(j, "the file ends inside the colour masks");
        if (get32(masks, 1) != 0xff0000u || get32(masks + 4, 1) != 0xff00u ||
            get32(masks + 8, 1) != 0xffu)
            return bmp_refuse(j, "a 32-bit BMP with colour masks other than 8-bit B, G, R");
    } else if (compression != 0) {
        snprintf(what, sizeof what, "a compressed BMP (compression %lu: RLE or other)",
                 (unsigned long)compression);
        return bmp_refuse(j, what);
    }
    uint8_t palette[256 * 4];
    uint32_t n_colours = 0;
    if (bpp == 8) {
        n_colours = colours ? colours : 256;
        if (n_colours > 256) return bmp_corrupt(j, "more than 256 palette colours");
        if (fread(palette, 4, n_colours, j->f) != n_colours)
            return bmp_corrupt(j, "the file ends inside the palette");
    }
    uint64_t stride = ((uint64_t)(uint32_t)w * bpp + 31) / 32 * 4;
    if ((int64_t)offset > file_size || h > (uint64_t)(file_size - offset) / stride) {
        snprintf(what, sizeof what, "truncated: %lu rows of %llu bytes do not fit after byte %lu",
                 (unsigned long)h, (unsigned long long)stride, (unsigned long)offset);
        return bmp_corrupt(j, what);
    }
    j->info.bit_depth = 8;
    j->info.palette = bpp == 8;
    snprintf(j->info.kind, sizeof j->info.kind, "BMP %u-bit%s", bpp, bpp == 8 ? " palette" : "");
    MR_TRY(start_pixels(j, (uint32_t)w, h, 3, 1));
    if (j->mode == READ_HEADER) return MR_OK;
    j->raw = malloc(stride);
    if (!j->raw) return mr_fail(MR_ERR_NOMEM, "%s: no memory for one image row", j->path);
    if (fseeko(j->f, (off_t)offset, SEEK_SET) != 0)
        return mr_fail(MR_ERR_IO, "%s: cannot seek: %s", j->path, strerror(errno));
    for (uint32_t i = 0; i < h; i++) {
        if (fread(j->raw, 1, stride, j->f) != stride) return bmp_corrupt(j, "truncated");
        for (int32_t x = 0; x < w; x++) {
            uint8_t *q = j->row + (size_t)x * 3;
            const uint8_t *p = bpp == 8 ? NULL : j->raw + (size_t)x * (bpp / 8);
            if (bpp == 8) {
                if (j->raw[x] >= n_colours) return bmp_corrupt(j, "a pixel outside the palette");
                p = palette + (size_t)j->raw[x] * 4;
            }
            q[0] = p[2], q[1] = p[1], q[2] = p[0]; /* stored B, G, R */
        }
        put_row(j, top_down ? (int)i : (int)(h - 1 - i), j->row);
    }
    return MR_OK;
}

/* ---- entry points ------------------------------------------------------------------------ */

/* A format we do not read, named when it is a common one so the message says what to do. */
static const char *other_format(const uint8_t *b, size_t n) {
    if (n >= 6 && (!memcmp(b, "GIF87a", 6) || !memcmp(b, "GIF89a", 6))) return "a GIF image";
    if (n >= 4 && (!memcmp(b, "II*\0", 4) || !memcmp(b, "MM\0*", 4))) return "a TIFF image";
    if (n >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4)) return "a WebP image";
    if (n >= 12 && !memcmp(b, "\0\0\0\x0cjP  ", 8)) return "a JPEG 2000 image";
    if (n >= 132 && !memcmp(b + 128, "DICM", 4)) return "a DICOM file";
    if (n >= 5 && !memcmp(b, "%PDF-", 5)) return "a PDF document";
    return NULL;
}

static mr_status decode(job *j) {
    FILE *f = NULL;
    int64_t size = 0;
    MR_TRY(open_regular(j->path, &f, &size));
    j->f = f;
    uint8_t head[132];
    size_t got = fread(head, 1, sizeof head, f);
    mr_status st = MR_OK;
    if (ferror(f))
        st = mr_fail(MR_ERR_IO, "%s: cannot read image: %s", j->path, strerror(errno));
    else if (fseeko(f, 0, SEEK_SET) != 0)
        st = mr_fail(MR_ERR_IO, "%s: cannot seek: %s", j->path, strerror(errno));
    else if (got >= 8 && !memcmp(head, "\x89PNG\r\n\x1a\n", 8))
        st = read_png(j);
    else if (got >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff)
        st = read_jpeg(j);
    else if (got >= 2 && head[0] == 'B' && head[1] == 'M')
        st = read_bmp(j, size);
    else if (got == 0)
        st = mr_fail(MR_ERR_FORMAT, "%s: empty file (0 bytes); " ACCEPTED, j->path);
    else if (other_format(head, got))
        st = mr_fail(MR_ERR_FORMAT, "%s: %s; " ACCEPTED, j->path, other_format(head, got));
    else {
        char hex[3 * 8 + 1] = "";
        for (size_t i = 0; i < got && i < 8; i++)
            snprintf(hex + 3 * i, sizeof hex - 3 * i, " %02x", head[i]);
        st = mr_fail(MR_ERR_FORMAT, "%s: not an image (it starts with%s); " ACCEPTED, j->path, hex);
    }
    fclose(f);
    free(j->row);
    free(j->raw);
    free(j->image);
    if (st != MR_OK) {
        if (j->out) mr_image_free(j->out);
        return st;
    }
    j->info.gray_as_rgb = j->mode != READ_HEADER && j->n >= 3 && !j->colour;
    if (j->info.gray_as_rgb)
        snprintf(j->info.kind + strlen(j->info.kind), sizeof j->info.kind - strlen(j->info.kind),
                 " (gray stored as RGB)");
    return MR_OK;
}

mr_status mr_image_size(const char *path, int *width, int *height) {
    job j = {.path = path, .mode = READ_HEADER};
    MR_TRY(decode(&j));
    *width = j.info.width;
    *height = j.info.height;
    return MR_OK;
}

mr_status mr_image_probe(const char *path, int64_t max_pixels, mr_image_info *info) {
    memset(info, 0, sizeof *info);
    if (max_pixels < 1)
        return mr_fail(MR_ERR_ARG, "%s: the pixel limit must be at least 1, not %lld", path,
                       (long long)max_pixels);
    job j = {.path = path, .mode = READ_PROBE, .max_pixels = max_pixels};
    mr_status st = decode(&j);
    *info = j.info;
    return st;
}

mr_status mr_image_alloc(mr_image *img, int width, int height, int channels) {
    img->width = width;
    img->height = height;
    img->channels = channels;
    img->pixels = calloc((size_t)width * (size_t)height * (size_t)channels, 1);
    if (!img->pixels)
        return mr_fail(MR_ERR_NOMEM, "cannot allocate a %dx%dx%d image", width, height, channels);
    return MR_OK;
}

mr_status mr_image_load_limited(const char *path, int channels, int64_t max_pixels, mr_image *out) {
    memset(out, 0, sizeof *out);
    if (channels != 0 && channels != 1 && channels != 3)
        return mr_fail(MR_ERR_ARG, "%s: images load as 1 or 3 channels (0: as stored), not %d",
                       path, channels);
    if (max_pixels < 1)
        return mr_fail(MR_ERR_ARG, "%s: the pixel limit must be at least 1, not %lld", path,
                       (long long)max_pixels);
    job j = {
        .path = path, .mode = READ_PIXELS, .want = channels, .max_pixels = max_pixels, .out = out};
    return decode(&j);
}

mr_status mr_image_load(const char *path, int channels, mr_image *out) {
    return mr_image_load_limited(path, channels, MR_IMAGE_MAX_PIXELS_DEFAULT, out);
}

/* ---- PNG writing (libpng) ---------------------------------------------------------------- */

/* The PNG is encoded in memory and written by mr_write_file_atomic (core/file.h), like every
 * other file mrcnn writes: a full disk or a read-only folder then fails with the OS reason and
 * leaves neither a truncated PNG nor a temp file, and a reader never sees half an image. An
 * overlay is a few hundred KB at most, so the buffer costs nothing. */
typedef struct {
    job j; /* first: the error handler's pointer is also this sink's */
    uint8_t *buf;
    size_t len, cap;
} png_sink;

static void png_on_write(png_structp png, png_bytep data, size_t len) {
    png_sink *s = png_get_io_ptr(png);
    if (len > SIZE_MAX / 2 - s->len) png_fail(png, MR_ERR_NOMEM, "the PNG is too large");
    if (!mr_grow(&s->buf, &s->cap, s->len + len, 1, 64 * 1024))
        png_fail(png, MR_ERR_NOMEM, "no memory for the encoded PNG");
    memcpy(s->buf + s->len, data, len);
    s->len += len;
}

static void png_on_flush(png_structp png) {
    (void)png; /* nothing is buffered outside png_sink */
}

static mr_status png_encode(png_sink *s, const mr_image *img) {
    static const int TYPE[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    job *j = &s->j;
    j->code = MR_ERR_NOMEM;
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, j, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return mr_fail(MR_ERR_NOMEM, "%s: no memory for the PNG encoder", j->path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return mr_fail(j->code, "%s: cannot encode PNG: %s", j->path, j->err);
    }
    png_set_write_fn(png, s, png_on_write, png_on_flush);
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 TYPE[img->channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t stride = (size_t)img->width * (size_t)img->channels;
    for (int y = 0; y < img->height; y++) png_write_row(png, img->pixels + (size_t)y * stride);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return MR_OK;
}

mr_status mr_image_write_png(const char *path, const mr_image *img) {
    if (img->width < 1 || img->height < 1 || img->channels < 1 || img->channels > 4)
        return mr_fail(MR_ERR_ARG, "%s: cannot write a %dx%dx%d image as PNG", path, img->width,
                       img->height, img->channels);
    png_sink s = {.j = {.path = path}};
    mr_status st = png_encode(&s, img);
    if (st == MR_OK) st = mr_write_file_atomic(path, s.buf, s.len, 0644);
    free(s.buf);
    return st;
}

void mr_image_free(mr_image *img) {
    free(img->pixels);
    memset(img, 0, sizeof *img);
}

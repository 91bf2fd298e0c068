/* Image decoding and encoding on top of stb_image / stb_image_write (Debian's libstb). */
#include "image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image.h>
#include <stb_image_write.h>

static mr_status decode_failure(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return mr_fail(MR_ERR_IO, "%s: cannot open image: %s", path, strerror(errno));
    fclose(f);
    return mr_fail(MR_ERR_FORMAT, "%s: not a readable PNG, JPEG or BMP image (%s)", path,
                   stbi_failure_reason());
}

mr_status mr_image_size(const char *path, int *width, int *height) {
    int comp = 0;
    if (!stbi_info(path, width, height, &comp)) return decode_failure(path);
    return MR_OK;
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

mr_status mr_image_load(const char *path, int channels, mr_image *out) {
    memset(out, 0, sizeof *out);
    if (channels != 1 && channels != 3)
        return mr_fail(MR_ERR_ARG, "%s: images load as 1 or 3 channels, not %d", path, channels);
    int w = 0, h = 0, comp = 0;
    /* Ask for the file's own channel count so gray+alpha and RGBA are converted by our rule
     * (alpha dropped), not stb's luminance weights. 16-bit PNGs come back as 8-bit. */
    uint8_t *raw = stbi_load(path, &w, &h, &comp, 0);
    if (!raw) return decode_failure(path);
    mr_status st = mr_image_alloc(out, w, h, channels);
    if (st != MR_OK) {
        stbi_image_free(raw);
        return st;
    }
    size_t n = (size_t)w * (size_t)h;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = raw + i * (size_t)comp;
        uint8_t *q = out->pixels + i * (size_t)channels;
        int color = comp >= 3;
        if (channels == 1) {
            q[0] = color ? (uint8_t)((p[0] + p[1] + p[2] + 1) / 3) : p[0];
        } else {
            q[0] = p[0];
            q[1] = color ? p[1] : p[0];
            q[2] = color ? p[2] : p[0];
        }
    }
    stbi_image_free(raw);
    return MR_OK;
}

mr_status mr_image_write_png(const char *path, const mr_image *img) {
    if (!stbi_write_png(path, img->width, img->height, img->channels, img->pixels,
                        img->width * img->channels))
        return mr_fail(MR_ERR_IO, "%s: cannot write PNG", path);
    return MR_OK;
}

void mr_image_free(mr_image *img) {
    free(img->pixels);
    img->pixels = NULL;
}

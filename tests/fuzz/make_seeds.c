/* Writes the HDF5 and image seeds of the fuzz corpus with the project's own writers:
 * `make_seeds <corpus folder>` fills weights/, checkpoint/ and image/ with small valid files
 * (random bytes almost never get past HDF5's or a decoder's first checks; mutated valid files
 * do). The files are committed; run it again (make fuzz-seeds) when a writer's layout changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../data/image.h"
#include "../../train/checkpoint.h"
#include "../../train/weights.h"
#include "targets.h"

static void check(mr_status st, const char *what) {
    if (st == MR_OK) return;
    fprintf(stderr, "make_seeds: %s: %s\n", what, mr_last_error());
    exit(1);
}

static void path_of(char *buf, size_t size, const char *root, const char *rel) {
    snprintf(buf, size, "%s/%s", root, rel);
}

/* A 24-bit BMP written by hand: the smallest decoder input that is not PNG. */
static void write_bmp(const char *path, int w, int h) {
    int row = (3 * w + 3) & ~3, data = row * h;
    unsigned char hdr[54] = {'B', 'M'};
    unsigned total = 54u + (unsigned)data;
    for (int i = 0; i < 4; i++) hdr[2 + i] = (unsigned char)(total >> (8 * i));
    hdr[10] = 54, hdr[14] = 40, hdr[26] = 1, hdr[28] = 24;
    for (int i = 0; i < 4; i++) {
        hdr[18 + i] = (unsigned char)((unsigned)w >> (8 * i));
        hdr[22 + i] = (unsigned char)((unsigned)h >> (8 * i));
    }
    FILE *f = fopen(path, "wb");
    if (!f) check(MR_ERR_IO, path);
    fwrite(hdr, 1, sizeof hdr, f);
    for (int i = 0; i < data; i++) fputc(i * 37 & 0xff, f);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds CORPUS_DIR\n");
        return 2;
    }
    const char *root = argv[1];
    char path[1024];
    mr_params grey, rgb;
    check(mr_fuzz_small_params(&grey, 1), "registry");
    check(mr_fuzz_small_params(&rgb, 3), "registry");
    const char *config = "{\"NAME\": \"seed\", \"NUM_CLASSES\": 3}";

    path_of(path, sizeof path, root, "weights/export.h5");
    check(mr_weights_save(path, &grey, config, false), path);
    path_of(path, sizeof path, root, "weights/export-half-rgb.h5");
    check(mr_weights_save(path, &rgb, NULL, true), path);
    path_of(path, sizeof path, root, "weights/keras-rgb.h5");
    check(mr_weights_save_keras(path, &rgb), path);

    int64_t order[2] = {3, 1};
    mr_checkpoint_state s = {.epoch = 3,
                             .step = 61,
                             .data_order = order,
                             .n_data_order = 2,
                             .config_json = (char *)config,
                             .metrics_json = "{\"loss\": [1.5]}",
                             .val_loss = 0.75};
    mr_rng_seed(&s.rng, 7);
    path_of(path, sizeof path, root, "checkpoint/ckpt.h5");
    check(mr_checkpoint_save(path, &grey, &s), path);
    path_of(path, sizeof path, root, "weights/ckpt.h5");
    check(mr_checkpoint_save(path, &grey, &s), path);

    for (int channels = 1; channels <= 3; channels += 2) {
        mr_image img;
        check(mr_image_alloc(&img, 5, 4, channels), "image");
        for (int i = 0; i < 5 * 4 * channels; i++) img.pixels[i] = (uint8_t)(i * 13);
        path_of(path, sizeof path, root, channels == 1 ? "image/grey.png" : "image/rgb.png");
        check(mr_image_write_png(path, &img), path);
        mr_image_free(&img);
    }
    path_of(path, sizeof path, root, "image/rgb.bmp");
    write_bmp(path, 3, 2);
    mr_params_free(&grey);
    mr_params_free(&rgb);
    return 0;
}

/* Writes the HDF5 and image seeds of the fuzz corpus with the project's own writers:
 * `make_seeds <corpus folder>` fills weights/, checkpoint/ and image/ with small valid files
 * (random bytes almost never get past HDF5's or a decoder's first checks; mutated valid files
 * do). The files are committed; run it again (make fuzz-seeds) when a writer's layout changes. */
#include <math.h>
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

/* Rewrites, in place, every run of three little-endian uint64 equal to `from` into `to`: the
 * dataspace message of HDF5's default (v1, checksum-free) object headers holds the dimensions
 * so, and a damaged header is exactly that. Returns the number of runs rewritten. */
static int patch_dims(const char *path, const uint64_t from[3], const uint64_t to[3]) {
    FILE *f = fopen(path, "r+b");
    if (!f) check(MR_ERR_IO, path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    unsigned char *buf = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) check(MR_ERR_IO, path);
    unsigned char pat[24], rep[24];
    for (int d = 0; d < 3; d++)
        for (int b = 0; b < 8; b++) {
            pat[8 * d + b] = (unsigned char)(from[d] >> (8 * b));
            rep[8 * d + b] = (unsigned char)(to[d] >> (8 * b));
        }
    int hits = 0;
    for (long i = 0; i + 24 <= size; i++)
        if (!memcmp(buf + i, pat, 24)) {
            memcpy(buf + i, rep, 24);
            hits++;
        }
    fseek(f, 0, SEEK_SET);
    fwrite(buf, 1, (size_t)size, f);
    fclose(f);
    free(buf);
    return hits;
}

/* The crashers the outside campaign and our own runs found, rebuilt from valid files. */
static void write_crashers(const char *root) {
    char path[1024];
    mr_params p;
    /* (2^33, 2^31, 4): the product of the dimensions overflowed int64 in weights.c. */
    mr_params_init(&p);
    int64_t shape[3] = {3, 5, 7};
    if (mr_params_add(&p, "conv1/kernel", 3, shape, true) < 0) check(MR_ERR_NOMEM, "registry");
    check(mr_params_finalize(&p), "registry");
    memset(p.values, 0, sizeof(float) * p.total);
    path_of(path, sizeof path, root, "weights/crash-numel-overflow.h5");
    check(mr_weights_save(path, &p, NULL, false), path);
    const uint64_t from[3] = {3, 5, 7}, to[3] = {(uint64_t)1 << 33, (uint64_t)1 << 31, 4};
    if (patch_dims(path, from, to) < 1) check(MR_ERR_FORMAT, "no dataspace to patch");
    mr_params_free(&p);

    /* NaN and Inf in weights and momentum: loaded silently before, then NaN boxes reached
     * ROI Align's integer casts. */
    check(mr_fuzz_small_params(&p, 1), "registry");
    mr_param *gamma = mr_params_find(&p, "bn_conv1/gamma");
    p.values[gamma->offset + 2] = NAN;
    path_of(path, sizeof path, root, "weights/crash-nan-gamma.h5");
    check(mr_weights_save(path, &p, NULL, false), path);
    p.values[gamma->offset + 2] = 1.0f;
    p.values[mr_params_find(&p, "mrcnn_class_logits/bias")->offset] = INFINITY;
    path_of(path, sizeof path, root, "weights/crash-inf-keras.h5");
    check(mr_weights_save_keras(path, &p), path);
    p.values[mr_params_find(&p, "mrcnn_class_logits/bias")->offset] = 0.5f;

    int64_t order[2] = {3, 1};
    mr_checkpoint_state s = {.epoch = 3,
                             .step = 61,
                             .data_order = order,
                             .n_data_order = 2,
                             .config_json = "{}",
                             .metrics_json = "",
                             .val_loss = NAN};
    p.momentum[mr_params_find(&p, "mrcnn_mask/kernel")->offset + 1] = NAN;
    path_of(path, sizeof path, root, "checkpoint/crash-nan-momentum.h5");
    check(mr_checkpoint_save(path, &p, &s), path);
    p.momentum[mr_params_find(&p, "mrcnn_mask/kernel")->offset + 1] = 0.0f;

    /* Counters a resume casts to int: the writer takes any int64, a damaged file holds any. */
    s.epoch = -5;
    path_of(path, sizeof path, root, "checkpoint/crash-epoch-negative.h5");
    check(mr_checkpoint_save(path, &p, &s), path);
    s.epoch = 3;
    order[0] = (int64_t)1 << 40;
    order[1] = -1;
    path_of(path, sizeof path, root, "checkpoint/crash-data-order-2e40.h5");
    check(mr_checkpoint_save(path, &p, &s), path);
    mr_params_free(&p);
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
    write_crashers(root);
    mr_params_free(&grey);
    mr_params_free(&rgb);
    return 0;
}

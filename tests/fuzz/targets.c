/* The fuzz targets' bodies, shared by the libFuzzer harnesses and the corpus replay test. Inputs
 * that name files are written to a per-process temp folder (in /dev/shm when there is one), since
 * the loaders take paths; everything else is called in memory. */
#include "targets.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../core/tensor.h"
#include "../../data/annotations.h"
#include "../../data/image.h"
#include "../../layers/roi_align.h"
#include "../../train/checkpoint.h"
#include "../../train/config.h"
#include "../../train/weights.h"

/* ---- temp files ----------------------------------------------------------------------------- */

static char temp_root[64];
static const char *const temp_names[] = {
    "via_region_data.json", "annotations.csv", "img.png",  "input.img",
    "weights.h5",           "ckpt.h5",         "layout.h5"};

static void temp_cleanup(void) {
    char path[128];
    for (size_t i = 0; i < sizeof temp_names / sizeof temp_names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", temp_root, temp_names[i]);
        unlink(path);
    }
    rmdir(temp_root);
}

/* The folder, made on first use; a fuzzer that cannot write its inputs can test nothing. */
static const char *temp_dir(void) {
    if (temp_root[0]) return temp_root;
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(temp_root, sizeof temp_root, "%s/mrcnn-fuzz-XXXXXX", base);
    if (!mkdtemp(temp_root)) {
        perror("mrcnn fuzz: mkdtemp");
        abort();
    }
    atexit(temp_cleanup);
    return temp_root;
}

/* Writes the input to temp_dir()/name and returns the path (static buffer). */
static const char *temp_file(const char *name, const uint8_t *data, size_t size) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", temp_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("mrcnn fuzz: writing the input");
        abort();
    }
    return path;
}

static _Noreturn void finding(const char *target, const char *what) {
    fprintf(stderr, "mrcnn fuzz %s: FINDING: %s (last error: %s)\n", target, what, mr_last_error());
    abort();
}

/* ---- annotations ---------------------------------------------------------------------------- */

/* A 6x5 grey PNG next to the annotation file, so that a region naming "img.png" gets a real size
 * and is clipped, as in training. */
static void write_small_image(void) {
    static bool done;
    if (done) return;
    mr_image img;
    if (mr_image_alloc(&img, 6, 5, 1) != MR_OK) finding("annotations", "cannot make the image");
    for (int i = 0; i < 30; i++) img.pixels[i] = (uint8_t)(i * 8);
    char path[128];
    snprintf(path, sizeof path, "%s/img.png", temp_dir());
    if (mr_image_write_png(path, &img) != MR_OK) finding("annotations", "cannot write img.png");
    mr_image_free(&img);
    done = true;
}

static void check_annotations(const mr_annotations *a) {
    for (int64_t i = 0; i < a->n; i++) {
        const mr_image_record *r = &a->records[i];
        if (r->width < 0 || r->height < 0) finding("annotations", "negative image size");
        /* Unknown sizes (missing images) rasterise into a small mask; known ones into their own. */
        int w = r->width ? r->width : 16, h = r->height ? r->height : 16;
        if ((int64_t)w * h > (int64_t)1 << 24) w = h = 16;
        uint8_t *mask = calloc((size_t)w * (size_t)h, 1);
        if (!mask) finding("annotations", "no memory for a mask");
        for (int64_t k = 0; k < r->n_instances; k++) {
            const mr_region *in = &r->instances[k];
            if (in->class_id < 1 || in->class_id >= a->n_classes)
                finding("annotations", "class id outside 1..n_classes-1");
            for (int c = 0; c < 4; c++)
                if (!isfinite(in->box[c])) finding("annotations", "non-finite box");
            double area = mr_shape_area(&in->shape);
            if (isnan(area)) finding("annotations", "NaN shape area");
            mr_shape poly;
            if (mr_shape_to_polygon(&in->shape, 12, &poly) == MR_OK) mr_shape_free(&poly);
            int64_t set = mr_shape_rasterize(&in->shape, mask, w, h, 1);
            if (set < 0) finding("annotations", "negative pixel count");
        }
        free(mask);
    }
}

int mr_fuzz_annotations(const uint8_t *data, size_t size) {
    write_small_image();
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t'))
        i++;
    bool json = i < size && (data[i] == '{' || data[i] == '[');
    const char *path = temp_file(json ? "via_region_data.json" : "annotations.csv", data, size);
    static const char *const classes[] = {"benign", "malignant"};
    mr_load_options with_classes = {
        .class_names = classes, .n_class_names = 2, .allow_missing_images = true, .max_issues = 50};
    mr_load_options single = {.allow_missing_images = true, .max_issues = 50};
    const mr_load_options *opts[] = {&with_classes, &single};
    for (int k = 0; k < 2; k++) {
        mr_annotations a;
        (void)mr_annotations_load(path, opts[k], &a);
        check_annotations(&a);
        mr_annotations_free(&a);
    }
    return 0;
}

/* ---- config --------------------------------------------------------------------------------- */

int mr_fuzz_config(const uint8_t *data, size_t size) {
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    mr_config *c = malloc(sizeof *c), *back = malloc(sizeof *back);
    if (!c || !back) finding("config", "no memory");
    mr_config_defaults(c);
    if (mr_config_parse(text, "fuzz.json", c) == MR_OK) {
        char *json = mr_config_to_json(c);
        if (!json) finding("config", "mr_config_to_json failed on a parsed config");
        mr_config_defaults(back);
        if (mr_config_parse(json, "fuzz-written.json", back) != MR_OK) {
            fprintf(stderr, "written config:\n%s\n", json);
            finding("config", "the written config does not parse again");
        }
        if (mr_config_hash(c) != mr_config_hash(back)) {
            char *again = mr_config_to_json(back);
            fprintf(stderr, "first:\n%s\nsecond:\n%s\n", json, again ? again : "(null)");
            free(again);
            finding("config", "the written config parses to another config (hash differs)");
        }
        free(json);
    }
    free(c);
    free(back);
    free(text);
    return 0;
}

/* ---- images --------------------------------------------------------------------------------- */

int mr_fuzz_image(const uint8_t *data, size_t size) {
    const char *path = temp_file("input.img", data, size);
    int w = 0, h = 0;
    (void)mr_image_size(path, &w, &h);
    for (int channels = 1; channels <= 3; channels += 2) {
        mr_image img = {0};
        if (mr_image_load(path, channels, &img) == MR_OK) {
            if (img.width < 1 || img.height < 1 || img.channels != channels || !img.pixels)
                finding("image", "a loaded image without pixels or with other channels");
            /* Touch every byte: a buffer shorter than width x height x channels shows in ASan. */
            unsigned sum = 0;
            size_t n = (size_t)img.width * (size_t)img.height * (size_t)img.channels;
            for (size_t k = 0; k < n; k++) sum += img.pixels[k];
            if (sum == 0xffffffffu) fprintf(stderr, "%u\n", sum);
        }
        mr_image_free(&img);
    }
    return 0;
}

/* ---- weights and checkpoints ---------------------------------------------------------------- */

mr_status mr_fuzz_small_params(mr_params *p, int conv1_channels) {
    mr_params_init(p);
    static const struct {
        const char *name;
        int ndim;
        int64_t shape[4];
        bool trainable;
    } spec[] = {
        {"conv1/kernel", 4, {3, 3, 1, 4}, true},
        {"conv1/bias", 1, {4}, true},
        {"bn_conv1/gamma", 1, {4}, true},
        {"bn_conv1/beta", 1, {4}, true},
        {"bn_conv1/moving_mean", 1, {4}, false},
        {"bn_conv1/moving_variance", 1, {4}, false},
        {"rpn_conv_shared/kernel", 4, {3, 3, 4, 2}, true},
        {"rpn_conv_shared/bias", 1, {2}, true},
        {"mrcnn_class_logits/kernel", 2, {4, 3}, true},
        {"mrcnn_class_logits/bias", 1, {3}, true},
        {"mrcnn_mask/kernel", 4, {1, 1, 4, 3}, true},
        {"mrcnn_mask/bias", 1, {3}, true},
    };
    for (size_t i = 0; i < sizeof spec / sizeof spec[0]; i++) {
        int64_t shape[4];
        memcpy(shape, spec[i].shape, sizeof shape);
        if (i == 0) shape[2] = conv1_channels;
        if (mr_params_add(p, spec[i].name, spec[i].ndim, shape, spec[i].trainable) < 0)
            return MR_ERR_NOMEM;
    }
    MR_TRY(mr_params_finalize(p));
    for (size_t k = 0; k < p->total; k++) {
        p->values[k] = 0.25f * (float)(k % 7) - 0.5f;
        p->momentum[k] = 0.01f * (float)(k % 5);
    }
    return MR_OK;
}

static mr_params *target_params(void) {
    static mr_params p;
    static bool done;
    if (!done) {
        if (mr_fuzz_small_params(&p, 1) != MR_OK) finding("weights", "cannot build the registry");
        done = true;
    }
    return &p;
}

/* What every successful load promises: finite values only. */
static void check_finite(const char *target, const mr_params *p) {
    for (size_t k = 0; k < p->total; k++)
        if (!isfinite(p->values[k]) || !isfinite(p->momentum[k]))
            finding(target, "a load succeeded with a non-finite weight or momentum");
}

/* Every weights reader on one file. */
static void read_weights(const char *path) {
    mr_weights_index ix;
    if (mr_weights_index_read(path, &ix) == MR_OK) {
        for (int i = 0; i < ix.count; i++)
            if (ix.items[i].numel < 0 || ix.items[i].ndim < 0 || ix.items[i].ndim > MR_H5_MAX_DIMS)
                finding("weights", "index with a negative size or rank");
        mr_weights_index_free(&ix);
    }
    mr_params *p = target_params();
    static const char *const exclude[] = {"rpn_model,mrcnn_mask"};
    const mr_weights_load_options plain = {0}, dry = {.dry_run = true},
                                  excl = {.exclude = exclude, .n_exclude = 1};
    const mr_weights_load_options *opts[] = {&plain, &dry, &excl};
    FILE *sink = fopen("/dev/null", "w");
    for (int k = 0; k < 3; k++) {
        for (size_t v = 0; v < p->total; v++) p->values[v] = 0.0f;
        mr_load_report r;
        mr_status st = mr_weights_load(path, p, opts[k], &r);
        if (sink) mr_load_report_print(&r, sink);
        if (st == MR_OK) check_finite("weights", p);
        mr_load_report_free(&r);
    }
    if (sink) fclose(sink);
}

/* Every checkpoint reader on one file. */
static void read_checkpoint(const char *path) {
    mr_checkpoint_state s;
    if (mr_checkpoint_read_state(path, &s) == MR_OK) {
        if (s.epoch < 0 || s.step < 0 || s.n_data_order < 0 || (s.n_data_order && !s.data_order))
            finding("checkpoint", "a state read with negative counters");
        mr_checkpoint_state_free(&s);
    }
    (void)mr_checkpoint_verify(path);
    mr_params *p = target_params();
    if (mr_checkpoint_load(path, p, &s) == MR_OK) {
        check_finite("checkpoint", p);
        mr_checkpoint_state_free(&s);
    }
}

int mr_fuzz_weights(const uint8_t *data, size_t size) {
    read_weights(temp_file("weights.h5", data, size));
    return 0;
}

int mr_fuzz_checkpoint(const uint8_t *data, size_t size) {
    read_checkpoint(temp_file("ckpt.h5", data, size));
    return 0;
}

/* ---- HDF5 layouts --------------------------------------------------------------------------- */

/* The input as a little program for HDF5's writer, so every file is well formed (HDF5 1.10's
 * parser bugs stay out of the way) while its layout, names, shapes, attributes and values are
 * anything: what mrcnn's readers must judge themselves. */
typedef struct {
    const uint8_t *p;
    size_t n, at;
} byte_reader;

static unsigned next_byte(byte_reader *r) {
    return r->at < r->n ? r->p[r->at++] : 0u;
}

static int64_t next_i64(byte_reader *r) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)next_byte(r) << (8 * i);
    return (int64_t)v;
}

static float next_float(byte_reader *r) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)next_byte(r) << (8 * i);
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

static const char *const layout_words[] = {
    "params",     "momentum",
    "state",      "model_weights",
    "conv1",      "bn_conv1",
    "rpn_model",  "rpn_conv_shared",
    "mrcnn_mask", "mrcnn_class_logits",
    "kernel:0",   "bias:0",
    "kernel",     "bias",
    "gamma",      "moving_variance",
    "rng",        "data_order",
    "conv1_1",    "rpn_conv_shared_1",
    "",           "..",
    "a/b",        "x:0:1",
};
#define N_WORDS (sizeof layout_words / sizeof layout_words[0])

/* "/w1/w2[/w3]" from the vocabulary, or "/" */
static void next_path(byte_reader *r, char *buf, size_t size) {
    unsigned depth = next_byte(r) % 4;
    size_t n = 0;
    buf[0] = '\0';
    for (unsigned d = 0; d < depth && n < size; d++)
        n += (size_t)snprintf(buf + n, size - n, "/%s", layout_words[next_byte(r) % N_WORDS]);
    if (!buf[0]) snprintf(buf, size, "/");
}

static void next_text(byte_reader *r, char *buf, size_t size) {
    unsigned len = next_byte(r) % 48;
    size_t k = 0;
    for (unsigned i = 0; i < len && k + 1 < size; i++) {
        unsigned c = next_byte(r);
        buf[k++] = (char)(c ? c : 'x');
    }
    buf[k] = '\0';
}

static uint64_t layout_checksum(const float *v, int64_t n) {
    uint64_t h = 1469598103934665603ull; /* checkpoint.c's FNV-1a, so loads can succeed */
    for (int64_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, &v[i], sizeof w);
        h = (h ^ w) * 1099511628211ull;
    }
    return h;
}

static void build_layout(byte_reader *r, mr_h5 *f) {
    static const char *const formats[] = {"mrcnn-weights", "mrcnn-checkpoint", NULL, "other"};
    const char *format = formats[next_byte(r) % 4];
    if (format) mr_h5_set_attr_str(f, "/", "format", format);
    if (next_byte(r) & 1) mr_h5_set_attr_i64(f, "/", "version", (int64_t)(next_byte(r) % 3));
    static const char *const attr_names[] = {
        "epoch",    "step",          "val_loss",    "config",       "metrics",
        "n_params", "fnv1a64",       "layer_names", "weight_names", "backend",
        "version",  "keras_version", "format",      "layer_names0", "weight_names0",
    };
    unsigned ops = next_byte(r) % 24;
    float values[256];
    for (unsigned op = 0; op < ops && r->at < r->n; op++) {
        char path[256], text[64];
        unsigned kind = next_byte(r) % 6;
        next_path(r, path, sizeof path);
        if (kind <= 1) { /* float dataset, with its checksum when kind is 1 */
            int ndim = 1 + (int)(next_byte(r) % 4);
            int64_t shape[4], n = 1;
            for (int d = 0; d < ndim; d++) n *= shape[d] = next_byte(r) % 5;
            if (n > 256) n = 256, ndim = 1, shape[0] = 256;
            for (int64_t i = 0; i < n; i++) values[i] = next_byte(r) & 1 ? next_float(r) : 0.5f;
            if (mr_h5_write(f, path, values, ndim, shape, next_byte(r) == 7) == MR_OK && kind)
                mr_h5_set_attr_i64(f, path, "fnv1a64", (int64_t)layout_checksum(values, n));
        } else if (kind == 2) { /* int64 dataset */
            int64_t v[8], n = next_byte(r) % 8;
            for (int64_t i = 0; i < n; i++) v[i] = next_byte(r) & 1 ? next_i64(r) : i;
            mr_h5_write_i64(f, path, v, n);
        } else { /* an attribute of some type on an object that may exist */
            const char *name = attr_names[next_byte(r) % (sizeof attr_names / sizeof *attr_names)];
            if (!mr_h5_exists(f, path)) mr_h5_make_group(f, path);
            if (kind == 3) {
                mr_h5_set_attr_i64(f, path, name, next_i64(r));
            } else if (kind == 4) {
                next_text(r, text, sizeof text);
                if (next_byte(r) & 1)
                    mr_h5_set_attr_str(f, path, name, text);
                else
                    mr_h5_set_attr_f64(f, path, name, (double)next_float(r));
            } else {
                const char *list[4];
                char items[4][64];
                int count = (int)(next_byte(r) % 5);
                for (int i = 0; i < count; i++) {
                    if (next_byte(r) & 1)
                        next_text(r, items[i], sizeof items[i]);
                    else
                        snprintf(items[i], sizeof items[i], "%s",
                                 layout_words[next_byte(r) % N_WORDS]);
                    list[i] = items[i];
                }
                mr_h5_set_attr_strings(f, path, name, list, count);
            }
        }
    }
}

int mr_fuzz_h5_layout(const uint8_t *data, size_t size) {
    byte_reader r = {data, size, 0};
    char path[128];
    snprintf(path, sizeof path, "%s/layout.h5", temp_dir());
    mr_h5 f;
    if (mr_h5_create(path, &f) != MR_OK) finding("h5_layout", "cannot create the file");
    build_layout(&r, &f);
    if (mr_h5_close(&f) != MR_OK) finding("h5_layout", "cannot close the file");
    read_weights(path);
    read_checkpoint(path);
    return 0;
}

/* ---- ROI Align ------------------------------------------------------------------------------ */

/* Input: mode byte, pool byte, image height and width bytes, then boxes as float32 (y1,x1,y2,x2),
 * normalised like the model's, at most 32. Every feature is 1, so every output must lie in
 * [0, 1]: the taps of a cell are bilinear weights that add up to at most 1. */
int mr_fuzz_roi_align(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    mr_roi_align_mode mode = data[0] & 1 ? MR_ROI_AVERAGE : MR_ROI_CROP_AND_RESIZE;
    int pool = 1 + data[1] % 7, image_h = 4 + data[2] % 61, image_w = 4 + data[3] % 61;
    int64_t n = (int64_t)((size - 4) / 16);
    if (n > 32) n = 32;
    float boxes[32 * 4];
    int32_t batch[32];
    memcpy(boxes, data + 4, sizeof(float) * (size_t)(4 * n));
    for (int64_t i = 0; i < n; i++) batch[i] = (int32_t)(i & 1);
    mr_ctx ctx;
    if (mr_ctx_init(&ctx, (size_t)1 << 20) != MR_OK) finding("roi_align", "no arena");
    mr_tensor *features[4];
    for (int l = 0; l < 4; l++) {
        int64_t stride = (int64_t)4 << l;
        int64_t shape[4] = {2, (image_h + stride - 1) / stride, (image_w + stride - 1) / stride, 2};
        features[l] = mr_tensor_new(&ctx, "P", 4, shape);
        if (!features[l]) finding("roi_align", "no feature map");
        for (int64_t k = 0; k < features[l]->numel; k++) features[l]->data[k] = 1.0f;
        features[l]->requires_grad = true;
    }
    mr_tensor *y = mr_roi_align(&ctx, features, boxes, batch, n, pool, image_h, image_w, mode);
    if (!y) finding("roi_align", "mr_roi_align failed");
    for (int64_t k = 0; k < y->numel; k++)
        if (!(y->data[k] >= 0.0f && y->data[k] <= 1.0001f))
            finding("roi_align", "an output outside [0, 1] from features of 1");
    if (y->numel) {
        float *seed = malloc(sizeof(float) * (size_t)y->numel);
        if (!seed) finding("roi_align", "no memory");
        for (int64_t k = 0; k < y->numel; k++) seed[k] = 1.0f;
        if (mr_backward_seeded(&ctx, y, seed) != MR_OK) finding("roi_align", "backward failed");
        free(seed);
        for (int l = 0; l < 4; l++)
            for (int64_t k = 0; features[l]->grad && k < features[l]->numel; k++)
                if (!isfinite(features[l]->grad[k]))
                    finding("roi_align", "a non-finite gradient from finite seeds");
    }
    mr_ctx_free(&ctx);
    return 0;
}

/* ---- the list ------------------------------------------------------------------------------- */

const mr_fuzz_target mr_fuzz_targets[] = {
    {"annotations", mr_fuzz_annotations},
    {"config", mr_fuzz_config},
    {"image", mr_fuzz_image},
    {"weights", mr_fuzz_weights},
    {"checkpoint", mr_fuzz_checkpoint},
    {"roi_align", mr_fuzz_roi_align},
    {"h5_layout", mr_fuzz_h5_layout},
};
const int mr_fuzz_n_targets = (int)(sizeof mr_fuzz_targets / sizeof mr_fuzz_targets[0]);

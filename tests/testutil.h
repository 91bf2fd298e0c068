/* Helpers shared by the Criterion tests: fixture paths, temp folders, tolerance checks. */
#ifndef MR_TESTUTIL_H
#define MR_TESTUTIL_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <ftw.h>
#include <math.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/params.h"
#include "../core/rng.h"
#include "../data/synth.h"
#include "../data/image.h"
#include "../layers/model.h"
#include "../train/checkpoint.h"
#include "../train/config.h"

/* Path of a file under ../shared/fixtures (MRCNN_SHARED overrides the shared folder). A test
 * whose fixture is missing is skipped visibly, never passed silently. */
static inline const char *fixture_path(const char *rel) {
    static _Thread_local char buf[4096];
    const char *shared = getenv("MRCNN_SHARED");
    snprintf(buf, sizeof buf, "%s/fixtures/%s", shared ? shared : "../shared", rel);
    FILE *f = fopen(buf, "rb");
    if (!f) cr_skip_test("fixture %s not found (set MRCNN_SHARED)", buf);
    fclose(f);
    return buf;
}

static inline int remove_test_entry(const char *path, const struct stat *st, int flag,
                                    struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* What this test's process made under /tmp (folders, or files beside them): `made` adds a path;
 * NULL removes them all, unless MRCNN_KEEP_TEST_DIRS is set (to look into a failure). */
static inline void test_leftovers(const char *made) {
    static char dirs[64][512];
    static int n;
    if (made) {
        if (n < 64) snprintf(dirs[n++], sizeof dirs[0], "%s", made);
        return;
    }
    if (getenv("MRCNN_KEEP_TEST_DIRS")) return;
    for (int i = 0; i < n; i++) nftw(dirs[i], remove_test_entry, 16, FTW_DEPTH | FTW_PHYS);
    n = 0;
}

static inline void remove_test_leftovers(void) {
    test_leftovers(NULL);
}

/* A fresh empty folder under /tmp for one test; the caller may leave files in it. Each test runs
 * in a process of its own (Criterion forks one per test), which removes its folders as it exits:
 * a suite's worth of them (R50 weights among them) would otherwise fill the disk over a few runs.
 */
static inline const char *temp_dir(const char *tag) {
    static _Thread_local char buf[256];
    static bool registered;
    snprintf(buf, sizeof buf, "/tmp/mrcnn-test-%s-XXXXXX", tag);
    cr_assert_not_null(mkdtemp(buf), "mkdtemp failed");
    if (!registered) registered = atexit(remove_test_leftovers) == 0;
    test_leftovers(buf);
    return buf;
}

/* Runs the shell command `cmd` with stderr folded into `out`; returns the exit code. */
static inline int run_shell(const char *cmd, char *out, size_t n) {
    char full[16400];
    cr_assert_lt(snprintf(full, sizeof full, "%s 2>&1", cmd), (int)sizeof full);
    FILE *p = popen(full, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, n - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs `mrcnn args` ($MRCNN_BIN, which make test sets, else build/mrcnn from the repo root) with
 * stderr folded into `out`; returns the exit code. Without a binary the test is skipped visibly. */
static inline int run_mrcnn(const char *args, char *out, size_t n) {
    const char *bin = getenv("MRCNN_BIN");
    if (!bin || access(bin, X_OK) != 0)
        bin = access("build/mrcnn", X_OK) == 0 ? "build/mrcnn" : NULL;
    if (!bin) cr_skip_test("MRCNN_BIN not set and no build/mrcnn: `mrcnn %.40s` not run", args);
    char cmd[16384];
    cr_assert_lt(snprintf(cmd, sizeof cmd, "'%s' %.8000s", bin, args), (int)sizeof cmd);
    return run_shell(cmd, out, n);
}

/* A gray PNG with speckle and a dark ellipse at a seed-dependent place. */
static inline void write_lesion_png(const char *path, int w, int h, uint64_t seed) {
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, w, h, 1), MR_OK);
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    double cx = w * (0.3 + 0.4 * (double)mr_rng_uniform(&rng));
    double cy = h * (0.3 + 0.4 * (double)mr_rng_uniform(&rng));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = (x - cx) / (0.18 * w), dy = (y - cy) / (0.14 * h);
            double v = 80.0 + 70.0 * y / h + 40.0 * (double)mr_rng_uniform(&rng);
            if (dx * dx + dy * dy < 1.0) v = 25.0 + 20.0 * (double)mr_rng_uniform(&rng);
            img.pixels[y * w + x] = (uint8_t)v;
        }
    cr_assert_eq(mr_image_write_png(path, &img), MR_OK, "%s", mr_last_error());
    mr_image_free(&img);
}

/* configs/tiny.json's network under Matterport's recipe: the shipped tiny config trains with the
 * from-scratch recipe, while parity references and the data tests are written for Matterport's
 * behaviour (mean-only pixels, its sampling, unit loss weights, default augmentation). */
static inline void load_tiny_matterport(mr_config *c) {
    mr_config_defaults(c);
    cr_assert_eq(mr_config_load("configs/tiny.json", c), MR_OK, "%s", mr_last_error());
    mr_config d;
    mr_config_defaults(&d);
    c->net.image_normalization = d.net.image_normalization;
    c->net.proposals_include_gt = d.net.proposals_include_gt;
    c->net.roi_sampling = d.net.roi_sampling;
    c->net.detection_candidates = d.net.detection_candidates;
    c->net.detection_nms = d.net.detection_nms;
    memcpy(c->net.loss_weights, d.net.loss_weights, sizeof c->net.loss_weights);
    c->augment = d.augment;
}

/* Random but well-scaled weights for a test model that must detect something: variance-1/fan_in
 * kernels, batch norms far from the identity (so folding has something to do), heads leaning away
 * from background and empty masks, and non-zero momentum (so checkpoints carry some). Each
 * parameter's role comes from the network table (kernel and bias of a conv, dense or deconv
 * layer; gamma, beta, moving mean and variance of a batch norm); values are drawn in registry
 * order, so a seed gives the same model whatever the table's order. */
static inline void random_test_weights(mr_model *m, uint64_t seed) {
    mr_params *p = &m->params;
    float *lo = calloc((size_t)p->count, sizeof *lo), *hi = calloc((size_t)p->count, sizeof *hi);
    cr_assert(lo && hi);
    bool stem_seen = false;
    for (int l = 0; l < m->n_layers; l++) {
        const mr_layer *layer = &m->layers[l];
        const int *q = layer->param;
        if (layer->kind == MR_LAYER_BN) {
            lo[q[0]] = 0.5f, hi[q[0]] = 1.5f;  /* gamma */
            lo[q[1]] = -0.2f, hi[q[1]] = 0.2f; /* beta */
            lo[q[2]] = -0.2f, hi[q[2]] = 0.2f; /* moving mean */
            lo[q[3]] = 0.3f, hi[q[3]] = 2.0f;  /* moving variance */
            continue;
        }
        const mr_tensor *k = &p->items[q[0]].t;
        hi[q[0]] = (float)sqrt(3.0 / (double)(k->numel / k->shape[k->ndim - 1]));
        /* Molded pixels are about +-100, not +-1: scale the stem's conv down so activations stay
         * O(1) and the heads do not saturate (scores of exactly 1, sliver boxes). */
        if (layer->stage == 1 && !stem_seen) hi[q[0]] /= 64.0f, stem_seen = true;
        lo[q[0]] = -hi[q[0]];
        if (layer->n_params > 1) lo[q[1]] = -0.05f, hi[q[1]] = 0.05f;
    }
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    for (int i = 0; i < p->count; i++)
        for (int64_t k = 0; k < p->items[i].t.numel; k++)
            p->items[i].t.data[k] = lo[i] + (hi[i] - lo[i]) * mr_rng_uniform(&rng);
    free(lo);
    free(hi);
    /* Lean away from background and empty masks so every test image has detections with
     * masks to compare. */
    m->w.class_logits.bias->data[0] -= 1.0f;
    mr_tensor *mb = m->w.mask.bias;
    for (int64_t k = 0; k < mb->numel; k++) mb->data[k] += 0.5f;
    for (size_t k = 0; k < p->total; k++) p->momentum[k] = 0.5f * mr_rng_uniform(&rng);
}

/* The parameter and momentum values of a checkpoint of the model `config` describes. */
static inline void read_checkpoint_params(const char *path, const char *config, mr_params *p) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load(config, &c), MR_OK);
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    mr_checkpoint_state s;
    cr_assert_eq(mr_checkpoint_load(path, &m.params, &s), MR_OK, "%s", mr_last_error());
    mr_checkpoint_state_free(&s);
    *p = m.params;
    m.params = (mr_params){0};
    mr_model_free(&m);
}

/* configs/tiny.json written to `path` over the synthetic set in `data` (train/ and val/), with
 * `keys` (", \"K\": v" items) added before its closing brace; later keys win. */
static inline void write_tiny_config(const char *path, const char *data, const char *keys) {
    FILE *base = fopen("configs/tiny.json", "r");
    cr_assert_not_null(base);
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, base);
    fclose(base);
    text[n] = '\0';
    *strrchr(text, '}') = '\0';
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f, "%s, \"DATASET\": {\"TRAIN\": \"%s/train\", \"VAL\": \"%s/val\"}%s}\n", text, data,
            data, keys);
    fclose(f);
}

/* A tiny training job in dir: 16 synthetic 128-px images (seed 21, a quarter in val/) and
 * dir/tiny.json, configs/tiny.json with the data, EPOCHS, STEPS_PER_EPOCH, two validation steps,
 * CHECKPOINT_KEEP 10 and `extra` keys (", \"K\": v") added; its path goes to config_path. */
static inline void make_tiny_job(const char *dir, int epochs, int steps, const char *extra,
                                 char *config_path, size_t size) {
    char data[1024], keys[1024];
    cr_assert_lt(snprintf(data, sizeof data, "%s/data", dir), (int)sizeof data);
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.out_dir = data;
    o.n_images = 16;
    o.size = 128;
    o.seed = 21;
    o.val_fraction = 0.25;
    cr_assert_eq(mr_synth_write(&o), MR_OK, "%s", mr_last_error());
    cr_assert_lt(snprintf(config_path, size, "%s/tiny.json", dir), (int)size);
    snprintf(keys, sizeof keys,
             ", \"EPOCHS\": %d, \"STEPS_PER_EPOCH\": %d, \"VALIDATION_STEPS\": 2, "
             "\"CHECKPOINT_KEEP\": 10%s",
             epochs, steps, extra);
    write_tiny_config(config_path, data, keys);
}

#endif

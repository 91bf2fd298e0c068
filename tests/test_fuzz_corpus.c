/* The committed fuzz corpus, replayed: every file of tests/fuzz/corpus/<target>/ goes through
 * the same entry point its libFuzzer harness calls (tests/fuzz/targets.c), so a crasher that
 * comes back fails `make test`, and under `make test-asan` so does any undefined behaviour.
 * Then one test per finding, asserting the message the fix promises. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "../core/tensor.h"
#include "../data/annotations.h"
#include "../layers/roi_align.h"
#include "../train/checkpoint.h"
#include "../train/weights.h"
#include "fuzz/targets.h"
#include "testutil.h"

#define CORPUS "tests/fuzz/corpus"

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    cr_assert_geq(n, 0, "%s", path);
    rewind(f);
    uint8_t *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n, "%s: short read", path);
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* Replays every file of the target's corpus; returns how many there were. */
static int replay(const char *target) {
    mr_fuzz_fn fn = NULL;
    for (int i = 0; i < mr_fuzz_n_targets; i++)
        if (!strcmp(mr_fuzz_targets[i].name, target)) fn = mr_fuzz_targets[i].fn;
    cr_assert_not_null(fn, "no fuzz target '%s'", target);
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", CORPUS, target);
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s: %s (run the tests from the repository root)", dir, strerror(errno));
    int count = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t size = 0;
        uint8_t *data = read_all(path, &size);
        /* A finding aborts inside fn (the test then fails as crashed); the name shows which. */
        fprintf(stderr, "replay %s\n", path);
        cr_assert_eq(fn(data, size), 0, "%s", path);
        free(data);
        count++;
    }
    closedir(d);
    return count;
}

/* Each corpus holds its seeds plus the crashers and boundary inputs: fewer means files were
 * lost, and the replay would pass without testing them. */
Test(fuzz_corpus, annotations, .timeout = 300) {
    cr_assert_geq(replay("annotations"), 19);
}
Test(fuzz_corpus, config, .timeout = 300) {
    cr_assert_geq(replay("config"), 18);
}
Test(fuzz_corpus, image, .timeout = 300) {
    cr_assert_geq(replay("image"), 5);
}
Test(fuzz_corpus, weights, .timeout = 300) {
    cr_assert_geq(replay("weights"), 7);
}
Test(fuzz_corpus, checkpoint, .timeout = 300) {
    cr_assert_geq(replay("checkpoint"), 4);
}
Test(fuzz_corpus, h5_layout, .timeout = 300) {
    cr_assert_geq(replay("h5_layout"), 4);
}
Test(fuzz_corpus, roi_align, .timeout = 300) {
    cr_assert_geq(replay("roi_align"), 9);
}

Test(fuzz_corpus, every_target_has_a_corpus) {
    for (int i = 0; i < mr_fuzz_n_targets; i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "%s/%s", CORPUS, mr_fuzz_targets[i].name);
        struct stat sb;
        cr_assert(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode), "no corpus folder %s", dir);
    }
}

/* ---- the findings --------------------------------------------------------------------------- */

/* A VIA 3 shape code of 1e300 was cast to int (undefined); now it is an unknown shape. */
Test(fuzz_corpus, via3_huge_shape_code_is_an_unknown_shape) {
    mr_load_options opt = {.allow_missing_images = true};
    mr_annotations a;
    mr_status st = mr_annotations_load(CORPUS "/annotations/via3_shape_code_1e300.json", &opt, &a);
    cr_assert_eq(st, MR_ERR_FORMAT, "%s", mr_last_error());
    int unknown = 0;
    for (int64_t i = 0; i < a.report.n_issues; i++)
        if (strstr(a.report.issues[i].text, "unknown shape code")) unknown++;
    /* 1e300, -1e300, 2147483648, 2.5 and 1e400 (Inf) are all unknown codes. */
    cr_assert_eq(unknown, 5, "%d unknown shape codes reported; first error: %s", unknown,
                 mr_last_error());
    cr_assert(strstr(mr_last_error(), "unknown shape code 1e+300"), "%s", mr_last_error());
    mr_annotations_free(&a);
}

/* NaN and huge boxes sample nothing (zero), and do not change the other boxes' results. */
Test(fuzz_corpus, roi_align_non_finite_boxes_give_zero) {
    for (int mode = 0; mode < 2; mode++) {
        mr_ctx ctx;
        cr_assert_eq(mr_ctx_init(&ctx, (size_t)8 << 20), MR_OK);
        mr_tensor *features[4];
        for (int l = 0; l < 4; l++) {
            int64_t side = 16 >> l, shape[4] = {1, side, side, 1};
            features[l] = mr_tensor_new(&ctx, "P", 4, shape);
            for (int64_t k = 0; k < features[l]->numel; k++) features[l]->data[k] = 1.0f + (float)k;
        }
        const float good[4] = {0.1f, 0.2f, 0.6f, 0.7f};
        float boxes[4 * 4] = {NAN, 0.1f, 0.5f,   0.5f,   0.1f,  0.1f,
                              NAN, NAN,  -3e38f, -3e38f, 3e38f, 3e38f};
        memcpy(boxes + 12, good, sizeof good);
        int32_t batch[4] = {0, 0, 0, 0};
        mr_roi_align_mode m = mode ? MR_ROI_AVERAGE : MR_ROI_CROP_AND_RESIZE;
        mr_tensor *y = mr_roi_align(&ctx, features, boxes, batch, 4, 3, 64, 64, m);
        mr_tensor *ref = mr_roi_align(&ctx, features, good, batch, 1, 3, 64, 64, m);
        cr_assert(y && ref, "%s", mr_last_error());
        for (int64_t k = 0; k < 9; k++) {
            cr_assert_eq(y->data[k], 0.0f, "mode %d: NaN box cell %lld = %g", mode, (long long)k,
                         (double)y->data[k]);
            cr_assert_eq(y->data[9 + k], 0.0f, "mode %d: NaN box cell %lld", mode, (long long)k);
            cr_assert(isfinite(y->data[18 + k]), "mode %d: huge box cell %lld", mode, (long long)k);
        }
        cr_assert_eq(memcmp(y->data + 27, ref->data, 9 * sizeof(float)), 0,
                     "mode %d: a finite box changed next to non-finite ones", mode);
        cr_assert(ref->data[4] > 0.0f, "mode %d: the finite box sampled nothing", mode);
        mr_ctx_free(&ctx);
    }
}

/* Dims (2^33, 2^31, 4) overflowed the element count; now one line names the dataset. */
Test(fuzz_corpus, weights_huge_shape_is_refused_by_name) {
    mr_weights_index ix;
    mr_status st = mr_weights_index_read(CORPUS "/weights/crash-numel-overflow.h5", &ix);
    cr_assert_eq(st, MR_ERR_FORMAT);
    const char *e = mr_last_error();
    cr_assert(strstr(e, "'/params/conv1/kernel'") && strstr(e, "(8589934592,2147483648,4)") &&
                  strstr(e, "damaged"),
              "%s", e);
}

static void small_model(mr_params *p) {
    cr_assert_eq(mr_fuzz_small_params(p, 1), MR_OK, "%s", mr_last_error());
}

Test(fuzz_corpus, nan_weights_are_refused_naming_the_tensor) {
    mr_params p;
    small_model(&p);
    mr_load_report r;
    mr_status st = mr_weights_load(CORPUS "/weights/crash-nan-gamma.h5", &p, NULL, &r);
    cr_assert_eq(st, MR_ERR_NUMERIC, "%s", mr_last_error());
    cr_assert(strstr(mr_last_error(), "bn_conv1/gamma") && strstr(mr_last_error(), "NaN"), "%s",
              mr_last_error());
    cr_assert_not(r.applied);
    mr_load_report_free(&r);
    /* Keras layout, Inf, same rule. */
    st = mr_weights_load(CORPUS "/weights/crash-inf-keras.h5", &p, NULL, NULL);
    cr_assert_eq(st, MR_ERR_NUMERIC, "%s", mr_last_error());
    cr_assert(strstr(mr_last_error(), "mrcnn_class_logits/bias") && strstr(mr_last_error(), "Inf"),
              "%s", mr_last_error());
    /* The intact seed still loads. */
    cr_assert_eq(mr_weights_load(CORPUS "/weights/export.h5", &p, NULL, NULL), MR_OK, "%s",
                 mr_last_error());
    mr_params_free(&p);
}

Test(fuzz_corpus, nan_checkpoint_is_damaged) {
    mr_params p;
    small_model(&p);
    mr_checkpoint_state s;
    const char *path = CORPUS "/checkpoint/crash-nan-momentum.h5";
    cr_assert_eq(mr_checkpoint_load(path, &p, &s), MR_ERR_NUMERIC, "%s", mr_last_error());
    cr_assert(strstr(mr_last_error(), "damaged checkpoint") &&
                  strstr(mr_last_error(), "/momentum/mrcnn_mask/kernel"),
              "%s", mr_last_error());
    cr_assert_not(mr_checkpoint_verify(path), "find_latest must skip it");
    cr_assert_eq(mr_checkpoint_load(CORPUS "/checkpoint/ckpt.h5", &p, &s), MR_OK, "%s",
                 mr_last_error());
    cr_assert_eq(s.epoch, 3);
    mr_checkpoint_state_free(&s);
    mr_params_free(&p);
}

Test(fuzz_corpus, out_of_range_checkpoint_counters_are_damage) {
    mr_checkpoint_state s;
    cr_assert_eq(mr_checkpoint_read_state(CORPUS "/checkpoint/crash-epoch-negative.h5", &s),
                 MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "damaged checkpoint: attribute epoch is -5"), "%s",
              mr_last_error());
    cr_assert_eq(mr_checkpoint_read_state(CORPUS "/checkpoint/crash-data-order-2e40.h5", &s),
                 MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "damaged checkpoint: /state/data_order[0] is 1099511627776"),
              "%s", mr_last_error());
    cr_assert_null(s.data_order, "a failed read leaves nothing to free");
}

/* A FIFO blocked the HDF5 open forever; the timeout turns a hang back into a failure. */
Test(fuzz_corpus, fifo_is_not_a_weights_file, .timeout = 20) {
    char dir[256], fifo[300];
    snprintf(dir, sizeof dir, "%s", temp_dir("fifo"));
    snprintf(fifo, sizeof fifo, "%s/weights.h5", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0, "%s", strerror(errno));
    mr_weights_index ix;
    cr_assert_eq(mr_weights_index_read(fifo, &ix), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "a FIFO") && strstr(mr_last_error(), "not a weights file"),
              "%s", mr_last_error());
    mr_checkpoint_state s;
    cr_assert_eq(mr_checkpoint_read_state(fifo, &s), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "a FIFO"), "%s", mr_last_error());
    cr_assert_not(mr_checkpoint_verify(fifo));
    unlink(fifo);
    rmdir(dir);
}

Test(fuzz_corpus, folder_is_not_a_weights_file) {
    const char *dir = temp_dir("folder");
    mr_weights_index ix;
    cr_assert_eq(mr_weights_index_read(dir, &ix), MR_ERR_ARG);
    char want[400];
    snprintf(want, sizeof want, "%s: a folder, not a weights file", dir);
    cr_assert_str_eq(mr_last_error(), want);
    mr_checkpoint_state s;
    cr_assert_eq(mr_checkpoint_read_state(dir, &s), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "a folder, not a checkpoint"), "%s", mr_last_error());
    cr_assert_null(strstr(mr_last_error(), "9223372036854775807"));
    rmdir(dir);
}

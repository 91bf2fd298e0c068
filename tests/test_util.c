/* The shared helpers of core/ (whole-file reads, string helpers, growable arrays, row softmax,
 * log verbosity, the float mode) and the geometry of data/raster.c (ellipses, mask boxes). */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "../core/log.h"
#include "../core/runtime.h"
#include "../core/text.h"
#include "../core/util.h"
#include "../data/annotations.h"
#include "../data/image.h"
#include "../data/predictions.h"
#include "../data/raster.h"
#include "../data/synth.h"
#include "../data/via_internal.h"
#include "../data/via_write.h"
#include "../layers/detect.h"
#include "../layers/targets.h"
#include "../train/checkpoint.h"
#include "../train/data_source.h"
#include "../train/dataset.h"
#include "../train/evaluate.h"
#include "../train/metrics.h"
#include "../train/predictor.h"
#include "../train/weights.h"
#include "testutil.h"

Test(util, read_file_whole_missing_and_too_large) {
    char path[512];
    snprintf(path, sizeof path, "%s/a.txt", temp_dir("util"));
    size_t big = 200000; /* more than the first buffer */
    char *data = malloc(big);
    cr_assert_not_null(data);
    for (size_t i = 0; i < big; i++) data[i] = (char)('a' + i % 26);
    cr_assert_eq(mr_write_file_atomic(path, data, big, 0644), MR_OK);
    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(mr_read_file(path, "test file", 0, &text, &len), MR_OK);
    cr_assert_eq(len, big);
    cr_assert_eq(memcmp(text, data, big), 0);
    cr_assert_eq(text[len], '\0');
    free(text);
    cr_assert_eq(mr_read_file(path, "test file", 1 << 20, &text, NULL), MR_OK);
    free(text);
    cr_assert_eq(mr_read_file(path, "test file", 100000, &text, &len), MR_ERR_FORMAT);
    cr_assert_null(text);
    cr_assert_not_null(strstr(mr_last_error(), "not a test file"), "%s", mr_last_error());
    cr_assert_eq(mr_read_file("/nonexistent/x.json", "config", 0, &text, &len), MR_ERR_IO);
    cr_assert_not_null(strstr(mr_last_error(), "/nonexistent/x.json: cannot open config: No such"),
                       "%s", mr_last_error());
    free(data);
}

Test(util, strings) {
    char *d = mr_strdup("lesion");
    cr_assert_str_eq(d, "lesion");
    free(d);
    cr_assert_null(mr_strdup(NULL));
    cr_assert_eq(mr_edit_distance("Benign", "benign"), 0);
    cr_assert_eq(mr_edit_distance("malignent", "malignant"), 1);
    cr_assert_eq(mr_edit_distance("", "abc"), 3);
    cr_assert_eq(mr_edit_distance("cofnig", "config"), 1, "a swap of neighbours is one edit");
    cr_assert_eq(mr_edit_distance("evalute", "evaluate"), 1);
    char long_name[80];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    cr_assert_eq(mr_edit_distance(long_name, "x"), SIZE_MAX);
    const char *t = "ab\ncde\n\nf";
    int64_t line, col;
    mr_text_pos(t, strlen(t), 0, &line, &col);
    cr_assert(line == 1 && col == 1);
    mr_text_pos(t, strlen(t), 5, &line, &col); /* 'e' */
    cr_assert(line == 2 && col == 3, "%lld:%lld", (long long)line, (long long)col);
    mr_text_pos(t, strlen(t), 99, &line, &col); /* past the end: the end */
    cr_assert(line == 4 && col == 2, "%lld:%lld", (long long)line, (long long)col);
}

Test(util, grow_and_softmax) {
    int *v = NULL;
    size_t cap = 0;
    for (size_t i = 0; i < 1000; i++) {
        cr_assert(mr_grow(&v, &cap, i + 1, sizeof *v, 16));
        v[i] = (int)i;
    }
    cr_assert_geq(cap, 1000);
    cr_assert_eq(v[999], 999);
    free(v);
    float z[4] = {1.0f, 3.0f, -2.0f, -2.0f}, p[4];
    mr_softmax_rows(p, z, 2, 2);
    cr_assert_float_eq(p[0] + p[1], 1.0f, 1e-6f);
    cr_assert_float_eq(p[1], 1.0f / (1.0f + expf(-2.0f)), 1e-6f);
    cr_assert_float_eq(p[2], 0.5f, 1e-7f);
}

Test(util, log_verbosity) {
    mr_log_set_verbosity(true, false);
    cr_assert_eq(mr_log_get_level(), MR_LOG_WARN);
    mr_log_set_verbosity(false, true);
    cr_assert_eq(mr_log_get_level(), MR_LOG_DEBUG);
    mr_log_set_verbosity(true, true);
    cr_assert_eq(mr_log_get_level(), MR_LOG_WARN);
    mr_log_set_verbosity(false, false);
    cr_assert_eq(mr_log_get_level(), MR_LOG_INFO);
}

Test(util, ellipse_placed_matches_identity_and_mask_box) {
    enum { W = 40, H = 30 };
    uint8_t a[W * H] = {0}, b[W * H] = {0};
    int64_t n = mr_raster_ellipse(a, W, H, 15.0, 12.0, 8.0, 4.0, 0.4, NULL, 1);
    const mr_placement id = {1.0, 1.0, 0.0, 0.0};
    cr_assert_eq(mr_raster_ellipse(b, W, H, 15.0, 12.0, 8.0, 4.0, 0.4, &id, 1), n);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    cr_assert(n > 80 && n < 120, "%lld pixels for an area of 100.5", (long long)n);
    int64_t box[4];
    cr_assert(mr_mask_box(a, H, W, box));
    cr_assert(box[0] >= 7 && box[2] <= 18 && box[1] >= 7 && box[3] <= 24);
    memset(b, 0, sizeof b);
    cr_assert_not(mr_mask_box(b, H, W, box));
    /* Twice the size, shifted: the placed ellipse covers about four times the pixels. */
    memset(b, 0, sizeof b);
    const mr_placement twice = {2.0, 2.0, 1.0, 0.0};
    int64_t m = mr_raster_ellipse(b, W, H, 8.0, 6.0, 4.0, 2.0, 0.0, &twice, 1);
    cr_assert(m > 90 && m < 115, "%lld", (long long)m);
}

Test(util, path_tidy_drops_doubled_and_trailing_slashes) {
    const char *cases[][2] = {
        {"runs//x/", "runs/x"},      {"/", "/"}, {"///", "/"},  {"a", "a"}, {"./", "."},
        {"/tmp//a///b", "/tmp/a/b"}, {"", ""},   {"a/b", "a/b"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%s", cases[i][0]);
        mr_path_tidy(buf);
        cr_assert_str_eq(buf, cases[i][1], "'%s'", cases[i][0]);
    }
}

/* core/status.h's rule: every release takes a zeroed struct and leaves it zeroed, so a caller
 * may release after a failed fill, and twice. Each struct is poisoned, zeroed, released twice,
 * then checked to be all zero. */
#define RELEASE_TWICE(type, release)                                                               \
    do {                                                                                           \
        static type v_;                                                                            \
        memset(&v_, 0xA5, sizeof v_);                                                              \
        memset(&v_, 0, sizeof v_);                                                                 \
        release(&v_);                                                                              \
        release(&v_);                                                                              \
        const unsigned char *b_ = (const unsigned char *)&v_;                                      \
        for (size_t i_ = 0; i_ < sizeof v_; i_++)                                                  \
            cr_assert_eq(b_[i_], 0, "%s left byte %zu set", #release, i_);                         \
    } while (0)

Test(util, every_release_takes_a_zeroed_struct_twice) {
    RELEASE_TWICE(mr_params, mr_params_free);
    RELEASE_TWICE(mr_ctx, mr_ctx_free);
    RELEASE_TWICE(mr_text, mr_text_free);
    RELEASE_TWICE(mr_instances, mr_instances_free);
    RELEASE_TWICE(mr_model, mr_model_free);
    RELEASE_TWICE(mr_roi_targets, mr_roi_targets_free);
    RELEASE_TWICE(mr_shape, mr_shape_free);
    RELEASE_TWICE(mr_annotations, mr_annotations_free);
    RELEASE_TWICE(mr_image, mr_image_free);
    RELEASE_TWICE(mr_prediction_set, mr_prediction_set_free);
    RELEASE_TWICE(mr_mask_polygons, mr_mask_polygons_free);
    RELEASE_TWICE(mr_synth_sample, mr_synth_sample_free);
    RELEASE_TWICE(mr_strmap, mr_strmap_free);
    RELEASE_TWICE(mr_checkpoint_state, mr_checkpoint_state_free);
    RELEASE_TWICE(mr_data_check, mr_data_check_free);
    RELEASE_TWICE(mr_sample, mr_sample_free);
    RELEASE_TWICE(mr_evaluation, mr_evaluation_free);
    RELEASE_TWICE(mr_eval_run, mr_eval_run_free);
    RELEASE_TWICE(mr_coco_eval, mr_coco_free);
    RELEASE_TWICE(mr_coco_result, mr_coco_result_free);
    RELEASE_TWICE(mr_lesion_stats, mr_lesion_stats_free);
    RELEASE_TWICE(mr_predictor, mr_predictor_free);
    RELEASE_TWICE(mr_predict_inputs, mr_predict_inputs_free);
    RELEASE_TWICE(mr_weights_index, mr_weights_index_free);
    RELEASE_TWICE(mr_load_report, mr_load_report_free);
    /* Released after real work, too: nothing of it is left behind. */
    mr_image img;
    cr_assert_eq(mr_image_alloc(&img, 5, 7, 3), MR_OK);
    mr_image_free(&img);
    const unsigned char *b = (const unsigned char *)&img;
    for (size_t i = 0; i < sizeof img; i++) cr_assert_eq(b[i], 0, "mr_image_free left byte %zu", i);
    /* Opaque handles and arrays take NULL. */
    mr_via_writer_free(NULL);
    mr_predictor_polygons_free(NULL, 0);
}

/* Denormals are flushed to zero, as in TensorFlow's compute threads, on every thread OpenMP runs
 * (they inherit the mode set before main; this worker never ran main). */
Test(util, every_thread_flushes_denormals) {
#if defined(__x86_64__)
    int threads = 0, flushed = 0;
#pragma omp parallel num_threads(2) reduction(+ : threads, flushed)
    {
        volatile float tiny = 1.5e-39f, one = 1.0f, normal = 1e-30f, scale = 1e-9f;
        float in = tiny * one;      /* a denormal input reads as zero */
        float out = normal * scale; /* a denormal result is written as zero */
        threads += 1;
        flushed += mr_runtime_flushes_denormals() && in == 0.0f && out == 0.0f;
    }
    cr_assert_eq(threads, 2);
    cr_assert_eq(flushed, threads, "%d of %d threads flush denormals", flushed, threads);
#else
    cr_skip_test("the float mode is set on x86 only");
#endif
}

/* mr_zero_floats clears exactly the n floats it is given, on one thread or on two, for sizes
 * below the parallel threshold, at it, and past it with a ragged last block. */
Test(util, zero_floats_clears_exactly_its_range) {
    const int64_t sizes[] = {0, 5, (int64_t)1 << 18, ((int64_t)1 << 18) + 37, (int64_t)3 << 17};
    const int threads_before = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            const int64_t n = sizes[s];
            float *buf = malloc(sizeof *buf * (size_t)(n + 2));
            cr_assert_not_null(buf);
            for (int64_t i = 0; i < n + 2; i++) buf[i] = NAN;
            mr_zero_floats(buf + 1, n);
            cr_assert(isnan(buf[0]) && isnan(buf[n + 1]), "n %lld: a float outside was written",
                      (long long)n);
            for (int64_t i = 1; i <= n; i++)
                cr_assert(buf[i] == 0.0f && !signbit(buf[i]), "n %lld, %d threads: float %lld",
                          (long long)n, threads, (long long)(i - 1));
            free(buf);
        }
    }
    omp_set_num_threads(threads_before);
}

/* The optimizer step against hand-computed Matterport/Keras arithmetic: L2 as WEIGHT_DECAY *
 * mean(w^2) on non-gamma/beta weights, one global-norm clip, SGD with momentum; frozen weights
 * untouched; non-finite gradients stop the update. */
#include <math.h>
#include <omp.h>
#include <string.h>
#include <sys/resource.h>

#include "../core/rng.h"
#include "../train/sgd.h"
#include "testutil.h"

static mr_params p;

static void setup(void) {
    mr_params_init(&p);
    int64_t two[1] = {2}, one[1] = {1};
    mr_params_add(&p, "conv/kernel", 1, two, true);
    mr_params_add(&p, "bn/gamma", 1, one, true);
    mr_params_add(&p, "frozen/kernel", 1, one, true);
    cr_assert_eq(mr_params_finalize(&p), MR_OK);
    cr_assert_eq(mr_params_set_trainable(&p, "conv|bn", NULL), MR_OK);
    float *k = mr_params_tensor(&p, "conv/kernel")->data;
    k[0] = 1.0f;
    k[1] = -2.0f;
    mr_params_tensor(&p, "bn/gamma")->data[0] = 3.0f;
    mr_params_tensor(&p, "frozen/kernel")->data[0] = 5.0f;
}

static void teardown(void) {
    mr_params_free(&p);
}

TestSuite(sgd, .init = setup, .fini = teardown);

Test(sgd, weight_decay_momentum_and_frozen) {
    float *g = mr_params_tensor(&p, "conv/kernel")->grad;
    g[0] = 0.5f;
    g[1] = 0.25f;
    mr_params_tensor(&p, "bn/gamma")->grad[0] = 1.0f;
    mr_sgd opt = {.learning_rate = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f, .clip_norm = 0};
    mr_sgd_report r;
    mr_sgd_step(&p, &opt, &r);
    /* L2 = 0.01 * (1 + 4) / 2; its gradient 2 * 0.01 * w / 2 = 0.01 w. gamma has none. */
    cr_assert_float_eq(r.l2_loss, 0.025, 1e-9);
    const float *k = mr_params_tensor(&p, "conv/kernel")->data;
    cr_assert_float_eq(k[0], 1.0f - 0.1f * (0.5f + 0.01f), 1e-6f);
    cr_assert_float_eq(k[1], -2.0f - 0.1f * (0.25f - 0.02f), 1e-6f);
    cr_assert_float_eq(mr_params_tensor(&p, "bn/gamma")->data[0], 3.0f - 0.1f, 1e-6f);
    cr_assert_float_eq(mr_params_tensor(&p, "frozen/kernel")->data[0], 5.0f, 0.0f);
    /* A second step with the same gradient adds momentum: v2 = 0.9 v1 - lr g. */
    float v1 = -0.1f * 1.0f;
    mr_params_zero_grads(&p);
    mr_params_tensor(&p, "bn/gamma")->grad[0] = 1.0f;
    mr_sgd_step(&p, &opt, &r);
    cr_assert_float_eq(mr_params_tensor(&p, "bn/gamma")->data[0], 3.0f + v1 + (0.9f * v1 - 0.1f),
                       1e-6f);
}

Test(sgd, global_norm_clipping_scales_every_gradient) {
    float *g = mr_params_tensor(&p, "conv/kernel")->grad;
    g[0] = 3.0f;
    g[1] = 0.0f;
    mr_params_tensor(&p, "bn/gamma")->grad[0] = 4.0f; /* global norm 5 */
    mr_sgd opt = {.learning_rate = 1.0f, .momentum = 0.0f, .weight_decay = 0.0f, .clip_norm = 1.0f};
    mr_sgd_report r;
    mr_sgd_step(&p, &opt, &r);
    cr_assert(r.clipped);
    cr_assert_float_eq(r.grad_norm, 5.0, 1e-9);
    cr_assert_float_eq(mr_params_tensor(&p, "conv/kernel")->data[0], 1.0f - 0.6f, 1e-6f);
    cr_assert_float_eq(mr_params_tensor(&p, "bn/gamma")->data[0], 3.0f - 0.8f, 1e-6f);
}

Test(sgd, non_finite_gradient_updates_nothing) {
    mr_params_tensor(&p, "bn/gamma")->grad[0] = NAN;
    mr_sgd opt = {.learning_rate = 1.0f, .momentum = 0.9f, .weight_decay = 0.0f, .clip_norm = 5.0f};
    mr_sgd_report r;
    mr_sgd_step(&p, &opt, &r);
    cr_assert(!r.finite);
    cr_assert_str_eq(r.bad_param, "bn/gamma");
    cr_assert_float_eq(mr_params_tensor(&p, "conv/kernel")->data[0], 1.0f, 0.0f);
    cr_assert_float_eq(mr_params_tensor(&p, "bn/gamma")->data[0], 3.0f, 0.0f);
}

/* The step leaves every trainable gradient zero for the next backward (the trainer then skips
 * zeroing them), after an update and after a step that found a NaN and updated nothing alike. */
Test(sgd, the_step_consumes_the_trainable_gradients) {
    float *g = mr_params_tensor(&p, "conv/kernel")->grad;
    float *gamma = mr_params_tensor(&p, "bn/gamma")->grad;
    mr_sgd opt = {.learning_rate = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f, .clip_norm = 5};
    for (int nan_step = 0; nan_step < 2; nan_step++) {
        g[0] = 0.5f, g[1] = -0.25f, gamma[0] = nan_step ? NAN : 1.0f;
        mr_sgd_report r;
        mr_sgd_step(&p, &opt, &r);
        cr_assert_eq(r.finite, !nan_step);
        cr_assert(g[0] == 0.0f && g[1] == 0.0f && gamma[0] == 0.0f,
                  "step %d left gradients %g %g %g", nan_step, (double)g[0], (double)g[1],
                  (double)gamma[0]);
    }
}

/* One step on a parameter spanning many summation blocks, with 1 and with 2 threads: the global
 * norm (and so the clip and every updated weight) must come out bit for bit the same, or a
 * resumed run would drift from the original on a machine with another core count. */
static void big_step(int threads, float *weights_out, double *norm_out) {
    mr_params q;
    mr_params_init(&q);
    int64_t n[1] = {100003};
    mr_params_add(&q, "big/kernel", 1, n, true);
    cr_assert_eq(mr_params_finalize(&q), MR_OK);
    cr_assert_eq(mr_params_set_trainable(&q, "big", NULL), MR_OK);
    mr_tensor *t = mr_params_tensor(&q, "big/kernel");
    mr_rng rng;
    mr_rng_seed(&rng, 11);
    for (int64_t i = 0; i < t->numel; i++) {
        t->data[i] = mr_rng_normal(&rng);
        t->grad[i] = mr_rng_normal(&rng);
    }
    mr_sgd opt = {.learning_rate = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f, .clip_norm = 1};
    mr_sgd_report r;
    int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    mr_sgd_step(&q, &opt, &r);
    omp_set_num_threads(before);
    cr_assert(r.clipped, "the norm %g should exceed the clip", r.grad_norm);
    memcpy(weights_out, t->data, sizeof(float) * (size_t)t->numel);
    *norm_out = r.grad_norm;
    mr_params_free(&q);
}

Test(sgd, result_does_not_depend_on_the_thread_count) {
    static float one[100003], two[100003];
    double norm1, norm2;
    big_step(1, one, &norm1);
    big_step(2, two, &norm2);
    cr_expect_eq(norm1, norm2, "global norm %.17g with 1 thread, %.17g with 2", norm1, norm2);
    cr_expect(!memcmp(one, two, sizeof one), "updated weights differ between 1 and 2 threads");
}

static long minor_faults(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

/* The first update reads momentum never written. Where that read maps the system's zero page, the
 * write after it faults a second time and interrupts every core; the optimizer backs the pages for
 * writing first, so each faults once, and keeps what a resume loaded into them. */
Test(sgd, the_first_update_faults_each_momentum_page_once_and_keeps_loaded_momentum) {
    mr_params q;
    mr_params_init(&q);
    int64_t shape[2] = {4096, 4096}, one[1] = {1};
    mr_params_add(&q, "dense/kernel", 2, shape, true);
    mr_params_add(&q, "loaded/bias", 1, one, true);
    cr_assert_eq(mr_params_finalize(&q), MR_OK);
    cr_assert_eq(mr_params_set_trainable(&q, ".*", NULL), MR_OK);
    mr_tensor *t = mr_params_tensor(&q, "dense/kernel"), *b = mr_params_tensor(&q, "loaded/bias");
    mr_params_zero_grads(&q);
    for (int64_t k = 0; k < t->numel; k++) t->data[k] = 0.0f, t->grad[k] = 1.0f; /* as init does */
    b->data[0] = 1.0f;
    b->grad[0] = 0.5f;
    q.momentum[mr_params_find(&q, "loaded/bias")->offset] = -2.0f; /* as a checkpoint restores */
    mr_sgd opt = {.learning_rate = 0.01f, .momentum = 0.9f, .weight_decay = 0.0f, .clip_norm = 0};
    mr_sgd_report r;
    const long pages = (long)((size_t)t->numel * sizeof(float) / (size_t)sysconf(_SC_PAGESIZE));
    long before = minor_faults();
    mr_sgd_step(&q, &opt, &r);
    long faults = minor_faults() - before;
    cr_assert_leq(faults, pages + pages / 4, "%ld faults over %ld momentum pages", faults, pages);
    cr_assert_eq(t->data[0], -0.01f, "fresh momentum is zero: w = -lr g");
    cr_assert_eq(t->data[t->numel - 1], -0.01f);
    cr_assert_float_eq(b->data[0], 1.0f + (0.9f * -2.0f - 0.01f * 0.5f), 1e-6f,
                       "loaded momentum kept: %g", (double)b->data[0]);
    before = minor_faults();
    mr_sgd_step(&q, &opt, &r);
    faults = minor_faults() - before;
    cr_assert_leq(faults, pages / 8, "%ld faults on a second step", faults);
    mr_params_free(&q);
}

/* Engine semantics: the tape (fan-out, no-grad, frozen parameters, backward twice), the arena's
 * out-of-memory message, the parameter registry and trainable-layer selection, the RNG state. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../core/h5.h"
#include "../core/ops.h"
#include "../core/params.h"
#include "../core/rng.h"
#include "testutil.h"

static mr_ctx ctx;
static mr_params params;

static void setup(void) {
    cr_assert_eq(mr_ctx_init(&ctx, 1u << 20), MR_OK);
    mr_params_init(&params);
    int64_t k[4] = {1, 1, 2, 2}, v[1] = {2};
    cr_assert_geq(mr_params_add(&params, "res2a_branch2a/kernel", 4, k, true), 0);
    cr_assert_geq(mr_params_add(&params, "res2a_branch2a/bias", 1, v, true), 0);
    cr_assert_geq(mr_params_add(&params, "mrcnn_mask/kernel", 4, k, true), 0);
    cr_assert_geq(mr_params_add(&params, "bn2a_branch2a/moving_mean", 1, v, false), 0);
    cr_assert_eq(mr_params_finalize(&params), MR_OK);
    for (size_t i = 0; i < params.total; i++) params.values[i] = 0.25f * (float)(i % 5) - 0.3f;
}

static void teardown(void) {
    mr_ctx_free(&ctx);
    mr_params_free(&params);
}

static mr_tensor *input(void) {
    mr_tensor *x = mr_tensor_4d(&ctx, "x", 1, 2, 2, 2);
    for (int i = 0; i < 8; i++) x->data[i] = (float)i - 3.5f;
    return x;
}

/* loss = mean smooth-L1(conv(x) - 0) through one kernel. */
static mr_tensor *loss_through(const char *kernel) {
    float zeros[8] = {0};
    mr_tensor *y = mr_conv2d(&ctx, input(), mr_params_tensor(&params, kernel),
                             mr_params_tensor(&params, "res2a_branch2a/bias"), 1, MR_PAD_VALID);
    return mr_smooth_l1(&ctx, y, zeros);
}

TestSuite(tape, .init = setup, .fini = teardown);

Test(tape, backward_twice_doubles_parameter_gradients) {
    mr_tensor *loss = loss_through("res2a_branch2a/kernel");
    cr_assert_eq(mr_backward(&ctx, loss), MR_OK);
    float once[4];
    memcpy(once, mr_params_tensor(&params, "res2a_branch2a/kernel")->grad, sizeof once);
    cr_assert_eq(mr_backward(&ctx, loss), MR_OK);
    const float *twice = mr_params_tensor(&params, "res2a_branch2a/kernel")->grad;
    bool nonzero = false;
    for (int i = 0; i < 4; i++) {
        cr_assert_float_eq(twice[i], 2.0f * once[i], 1e-6f, "element %d", i);
        nonzero |= once[i] != 0.0f;
    }
    cr_assert(nonzero, "the gradient should not be all zero");
}

Test(tape, fan_out_accumulates) {
    mr_tensor *x = input();
    x->requires_grad = true;
    float zeros[8] = {0};
    mr_tensor *loss = mr_smooth_l1(&ctx, mr_add(&ctx, x, mr_relu(&ctx, x)), zeros);
    cr_assert_eq(mr_backward(&ctx, loss), MR_OK);
    for (int i = 0; i < 8; i++) {
        /* d/dx of smooth-L1 mean of (x + relu(x)): sign-clipped difference times (1 + [x>0]). */
        float y = x->data[i] + (x->data[i] > 0 ? x->data[i] : 0);
        float dl = (y > 1.0f ? 1.0f : y < -1.0f ? -1.0f : y) / 8.0f;
        cr_assert_float_eq(x->grad[i], dl * (x->data[i] > 0 ? 2.0f : 1.0f), 1e-6f, "element %d", i);
    }
}

Test(tape, no_grad_scope_records_nothing) {
    bool was = mr_no_grad_begin(&ctx);
    mr_tensor *loss = loss_through("res2a_branch2a/kernel");
    mr_no_grad_end(&ctx, was);
    cr_assert_not_null(loss);
    cr_assert_eq(ctx.tape.count, 0);
    cr_assert(!loss->requires_grad);
    cr_assert_eq(mr_backward(&ctx, loss), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "depends on no trainable parameter"), "%s", mr_last_error());
    cr_assert(ctx.recording, "the scope must restore recording");
}

Test(tape, frozen_parameters_get_no_gradient_or_work) {
    int n = 0;
    cr_assert_eq(mr_params_set_trainable(&params, "(mrcnn\\_.*)|(rpn\\_.*)|(fpn\\_.*)", &n), MR_OK);
    cr_assert_eq(n, 1, "only mrcnn_mask/kernel matches the heads pattern");
    mr_param *frozen = mr_params_find(&params, "res2a_branch2a/kernel");
    cr_assert(frozen->frozen && frozen->t.grad == NULL && !frozen->t.requires_grad);
    /* Everything through frozen layers: nothing to record at all. */
    mr_tensor *loss = loss_through("res2a_branch2a/kernel");
    cr_assert_eq(ctx.tape.count, 0);
    cr_assert_eq(mr_backward(&ctx, loss), MR_ERR_ARG);
    /* The trainable kernel gets a gradient; the frozen bias next to it stays untouched. */
    mr_params_zero_grads(&params);
    loss = loss_through("mrcnn_mask/kernel");
    cr_assert_eq(mr_backward(&ctx, loss), MR_OK);
    const mr_param *bias = mr_params_find(&params, "res2a_branch2a/bias");
    for (int i = 0; i < 2; i++) cr_assert_eq(params.grads[bias->offset + (size_t)i], 0.0f);
    bool any = false;
    for (int i = 0; i < 4; i++) any |= mr_params_tensor(&params, "mrcnn_mask/kernel")->grad[i] != 0;
    cr_assert(any);
}

Test(tape, moving_statistics_are_never_trainable) {
    int n = 0;
    cr_assert_eq(mr_params_set_trainable(&params, ".*", &n), MR_OK);
    cr_assert_eq(n, 3);
    cr_assert(mr_params_find(&params, "bn2a_branch2a/moving_mean")->frozen);
}

Test(tape, bad_layer_regex_is_a_config_error) {
    cr_assert_eq(mr_params_set_trainable(&params, "res(2", NULL), MR_ERR_CONFIG);
    cr_assert(strstr(mr_last_error(), "res(2"), "%s", mr_last_error());
}

Test(tape, duplicate_parameter_names_are_refused) {
    mr_params p;
    mr_params_init(&p);
    int64_t s[1] = {3};
    cr_assert_eq(mr_params_add(&p, "fpn_c5p5/bias", 1, s, true), 0);
    cr_assert_eq(mr_params_add(&p, "fpn_c5p5/bias", 1, s, true), -1);
    cr_assert(strstr(mr_last_error(), "fpn_c5p5/bias"));
    char layer[64];
    mr_param_layer("rpn_conv_shared/kernel", layer, sizeof layer);
    cr_assert_str_eq(layer, "rpn_conv_shared");
    mr_params_free(&p);
}

Test(tape, arena_exhaustion_names_op_bytes_and_capacity) {
    mr_tensor *big = mr_tensor_4d(&ctx, "x", 1, 256, 256, 8);
    cr_assert_null(big);
    cr_assert_eq(ctx.status, MR_ERR_NOMEM);
    const char *msg = mr_last_error();
    cr_assert(strstr(msg, "'x'") && strstr(msg, "2097152 bytes") && strstr(msg, "1048576"), "%s",
              msg);
    /* Later ops see the failure and return NULL instead of crashing. */
    cr_assert_null(mr_relu(&ctx, big));
    mr_ctx_reset(&ctx);
    cr_assert_eq(ctx.status, MR_OK);
    cr_assert_not_null(mr_tensor_1d(&ctx, "small", 16));
}

/* A pool's gradient goes to the cell its maximum came from: of equal cells the first in window
 * order (row by row), and a NaN only when it is the window's first cell; the forward is the same
 * whether or not it records. */
Test(tape, maxpool_ties_go_to_the_first_cell_in_window_order) {
    const float nan = NAN;
    /* One 2x2 window over 4 channels; cells in window order, channels innermost. */
    const float cells[4][4] = {{1.0f, nan, -0.0f, 2.0f},
                               {3.0f, 5.0f, 0.0f, nan},
                               {3.0f, 1.0f, 0.0f, 1.0f},
                               {2.0f, 2.0f, -1.0f, 2.0f}};
    const int winner[4] = {1, 0, 0, 0};
    float plain[4];
    for (int recorded = 0; recorded < 2; recorded++) {
        mr_ctx_reset(&ctx);
        mr_tensor *x = mr_tensor_4d(&ctx, "x", 1, 2, 2, 4);
        memcpy(x->data, cells, sizeof cells);
        x->requires_grad = recorded;
        mr_tensor *y = mr_maxpool(&ctx, x, 2, 2, MR_PAD_VALID);
        cr_assert_not_null(y);
        if (!recorded) {
            memcpy(plain, y->data, sizeof plain);
            continue;
        }
        for (int ch = 0; ch < 4; ch++)
            cr_assert(memcmp(&plain[ch], &y->data[ch], sizeof(float)) == 0,
                      "channel %d: %g recorded, %g not", ch, (double)y->data[ch],
                      (double)plain[ch]);
        const float seed[4] = {1.0f, 1.0f, 1.0f, 1.0f};
        cr_assert_eq(mr_backward_seeded(&ctx, y, seed), MR_OK);
        for (int ch = 0; ch < 4; ch++)
            for (int cell = 0; cell < 4; cell++)
                cr_assert_eq(x->grad[cell * 4 + ch], cell == winner[ch] ? 1.0f : 0.0f,
                             "channel %d cell %d", ch, cell);
    }
    cr_assert_eq(plain[0], 3.0f);
    cr_assert(isnan(plain[1]), "a NaN seed stays the maximum");
    cr_assert(plain[2] == 0.0f && signbit(plain[2]), "equal zeros keep the first, -0");
    cr_assert_eq(plain[3], 2.0f, "a later NaN never wins");
}

/* A scratch scope keeps only the tensor it returns, with its values, whether it lay far past the
 * scope's start (copied in parallel blocks) or overlapping where it moves to (one memmove); the
 * arena then ends just past it. */
Test(tape, scratch_scope_keeps_its_result_apart_or_overlapping) {
    mr_ctx big;
    cr_assert_eq(mr_ctx_init(&big, (size_t)64 << 20), MR_OK);
    const int threads_before = omp_get_max_threads();
    omp_set_num_threads(2);
    const int64_t sizes[2][2] = {{(int64_t)1 << 20, 300000}, {1000, 5000}}; /* temp, kept */
    for (int k = 0; k < 2; k++) {
        mr_ctx_reset(&big);
        size_t mark = big.arena.used;
        bool was = mr_no_grad_begin(&big);
        mr_scratch_begin(&big);
        mr_tensor *temp = mr_tensor_1d(&big, "temp", sizes[k][0]);
        mr_tensor *kept = mr_tensor_1d(&big, "kept", sizes[k][1]);
        cr_assert(temp && kept);
        for (int64_t i = 0; i < temp->numel; i++) temp->data[i] = -1.0f;
        for (int64_t i = 0; i < kept->numel; i++) kept->data[i] = (float)i * 0.5f;
        const float *was_at = kept->data;
        mr_tensor *out = mr_scratch_end(&big, kept);
        mr_no_grad_end(&big, was);
        cr_assert_not_null(out);
        cr_assert_eq(out->numel, sizes[k][1]);
        cr_assert_lt(out->data, was_at, "case %d: the kept tensor did not move down", k);
        for (int64_t i = 0; i < out->numel; i++)
            cr_assert_eq(out->data[i], (float)i * 0.5f, "case %d element %lld", k, (long long)i);
        cr_assert_eq(big.arena.used - mark,
                     (sizeof(mr_tensor) + 63) / 64 * 64 +
                         ((size_t)sizes[k][1] * sizeof(float) + 63) / 64 * 64);
    }
    omp_set_num_threads(threads_before);
    mr_ctx_free(&big);
}

Test(tape, rng_state_restores_exactly) {
    mr_rng a, b;
    mr_rng_seed(&a, 99);
    for (int i = 0; i < 10; i++) mr_rng_next(&a);
    b = a; /* the whole state is the four words a checkpoint stores */
    for (int i = 0; i < 100; i++) cr_assert_eq(mr_rng_next(&a), mr_rng_next(&b));
    mr_rng c;
    mr_rng_seed(&c, 100);
    cr_assert_neq(mr_rng_next(&c), mr_rng_next(&a), "different seeds, different streams");
    /* below(n) stays in range and reaches both ends */
    bool low = false, high = false;
    for (int i = 0; i < 1000; i++) {
        uint64_t v = mr_rng_below(&a, 5);
        cr_assert_lt(v, 5u);
        low |= v == 0;
        high |= v == 4;
    }
    cr_assert(low && high);
}

Test(tape, h5_round_trip_and_bad_files) {
    const char *dir = temp_dir("h5");
    char path[512];
    snprintf(path, sizeof path, "%s/t.h5", dir);
    mr_h5 f;
    cr_assert_eq(mr_h5_create(path, &f), MR_OK);
    float v[6] = {1, 2, 3, 4, 5, 6.5f};
    int64_t shape[2] = {2, 3};
    cr_assert_eq(mr_h5_write(&f, "conv1/conv1/kernel:0", v, 2, shape, false), MR_OK);
    cr_assert_eq(mr_h5_write(&f, "half/values", v, 2, shape, true), MR_OK);
    const char *names[3] = {"conv1", "bn_conv1", "rpn_model"};
    cr_assert_eq(mr_h5_set_attr_strings(&f, "/", "layer_names", names, 3), MR_OK);
    cr_assert_eq(mr_h5_set_attr_i64(&f, "/", "epoch", 7), MR_OK);
    cr_assert_eq(mr_h5_close(&f), MR_OK);

    cr_assert_eq(mr_h5_open(path, false, &f), MR_OK);
    float *back = NULL;
    int nd = 0;
    int64_t sh[8];
    cr_assert_eq(mr_h5_read(&f, "conv1/conv1/kernel:0", &back, &nd, sh), MR_OK);
    cr_assert(nd == 2 && sh[0] == 2 && sh[1] == 3);
    cr_assert_arr_eq(back, v, sizeof v);
    free(back);
    cr_assert_eq(mr_h5_read(&f, "half/values", &back, NULL, NULL), MR_OK);
    cr_assert_float_eq(back[5], 6.5f, 0.0f);
    free(back);
    char **got = NULL;
    int n = 0;
    cr_assert_eq(mr_h5_get_attr_strings(&f, "/", "layer_names", &got, &n), MR_OK);
    cr_assert(n == 3 && !strcmp(got[2], "rpn_model"));
    mr_h5_free_strings(got, n);
    int64_t epoch = 0;
    cr_assert_eq(mr_h5_get_attr_i64(&f, "/", "epoch", &epoch), MR_OK);
    cr_assert_eq(epoch, 7);
    cr_assert_eq(mr_h5_read(&f, "missing/thing", &back, NULL, NULL), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "missing/thing"));
    cr_assert_eq(mr_h5_close(&f), MR_OK);

    /* A file cut short, and a file that is not HDF5 at all: one line each, no crash. */
    FILE *in = fopen(path, "rb");
    char buf[4096];
    size_t got_bytes = fread(buf, 1, sizeof buf, in);
    fclose(in);
    snprintf(path, sizeof path, "%s/cut.h5", dir);
    FILE *out = fopen(path, "wb");
    fwrite(buf, 1, got_bytes / 3, out);
    fclose(out);
    cr_assert_neq(mr_h5_open(path, false, &f), MR_OK);
    cr_assert(strstr(mr_last_error(), "cut.h5"), "%s", mr_last_error());
    snprintf(path, sizeof path, "%s/text.h5", dir);
    out = fopen(path, "wb");
    fputs("<html>not found</html>", out);
    fclose(out);
    cr_assert_eq(mr_h5_open(path, false, &f), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "not an HDF5 file"), "%s", mr_last_error());
}

/* conv2d's 3x3 stride-1 paths on shapes too big for the finite-difference and PyTorch cases:
 * Winograd over several tile chunks and several images must agree with im2col (each path is
 * checked against PyTorch on small shapes in test_parity.c), forward and every gradient. */
#include <omp.h>
#include <signal.h>

#include "../core/blas.h"
#include "../core/ops.h"
#include "../core/rng.h"
#include "../train/export.h"
#include "testutil.h"

typedef struct {
    float *y, *dx, *dw, *db;
    int64_t ny, nx, nw, nb;
} conv_result;

static float *copy_floats(const float *src, int64_t n) {
    float *dst = malloc(sizeof *dst * (size_t)n);
    cr_assert_not_null(dst);
    memcpy(dst, src, sizeof *dst * (size_t)n);
    return dst;
}

/* One forward and backward pass with fixed random inputs and upstream gradient. */
static conv_result run_conv(mr_conv_algo algo, int64_t n, int64_t h, int64_t w, int64_t cin,
                            int64_t cout, int pad) {
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, (size_t)256 << 20), MR_OK);
    ctx.conv_algo = algo;
    mr_rng rng;
    mr_rng_seed(&rng, 99);
    mr_tensor *x = mr_tensor_4d(&ctx, "x", n, h, w, cin);
    mr_tensor *k = mr_tensor_4d(&ctx, "w", 3, 3, cin, cout);
    mr_tensor *b = mr_tensor_1d(&ctx, "b", cout);
    cr_assert(x && k && b);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = mr_rng_normal(&rng);
    for (int64_t i = 0; i < k->numel; i++) k->data[i] = 0.05f * mr_rng_normal(&rng);
    for (int64_t i = 0; i < b->numel; i++) b->data[i] = mr_rng_normal(&rng);
    x->requires_grad = k->requires_grad = b->requires_grad = true;
    mr_tensor *y = mr_conv2d(&ctx, x, k, b, 1, pad);
    cr_assert_not_null(y, "%s", mr_last_error());
    float *seed = malloc(sizeof *seed * (size_t)y->numel);
    for (int64_t i = 0; i < y->numel; i++) seed[i] = mr_rng_normal(&rng);
    cr_assert_eq(mr_backward_seeded(&ctx, y, seed), MR_OK, "%s", mr_last_error());
    conv_result r = {copy_floats(y->data, y->numel),
                     copy_floats(x->grad, x->numel),
                     copy_floats(k->grad, k->numel),
                     copy_floats(b->grad, b->numel),
                     y->numel,
                     x->numel,
                     k->numel,
                     b->numel};
    free(seed);
    mr_ctx_free(&ctx);
    return r;
}

static void expect_same(const char *what, const float *a, const float *b, int64_t n) {
    double worst = 0.0, scale = 0.0;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - (double)b[i]));
        scale = fmax(scale, fabs((double)b[i]));
    }
    /* F(4x4, 3x3) multiplies by transform coefficients up to 8 and 1/24, F(6x6, 3x3) up to 32
     * and 1/90, so they round a few times more than direct convolution; a wrong transform or
     * chunk is off by O(scale). */
    cr_expect(worst <= 1e-4 * scale, "%s: Winograd and im2col differ by %g (largest %g)", what,
              worst, scale);
}

static void compare_paths_once(mr_conv_algo winograd, int64_t n, int64_t h, int64_t w, int64_t cin,
                               int64_t cout, int pad) {
    conv_result a = run_conv(winograd, n, h, w, cin, cout, pad);
    conv_result b = run_conv(MR_CONV_IM2COL, n, h, w, cin, cout, pad);
    expect_same("output", a.y, b.y, a.ny);
    expect_same("input gradient", a.dx, b.dx, a.nx);
    expect_same("kernel gradient", a.dw, b.dw, a.nw);
    expect_same("bias gradient", a.db, b.db, a.nb);
    conv_result *rs[2] = {&a, &b};
    for (int i = 0; i < 2; i++) {
        free(rs[i]->y);
        free(rs[i]->dx);
        free(rs[i]->dw);
        free(rs[i]->db);
    }
}

/* Winograd against im2col, with its products in panels where the channels and this CPU allow
 * (core/gemm_panel.c) and then with BLAS's. */
static void compare_paths(mr_conv_algo winograd, int64_t n, int64_t h, int64_t w, int64_t cin,
                          int64_t cout, int pad) {
    const int levels[] = {MR_OWN_AVX512, MR_OWN_OFF};
    const int before = mr_own_kernel_limit(MR_OWN_AVX512);
    for (int i = 0; i < 2; i++) {
        mr_own_kernel_limit(levels[i]);
        compare_paths_once(winograd, n, h, w, cin, cout, pad);
    }
    mr_own_kernel_limit(before);
}

/* core/winograd.c's chunks hold 8M floats: 36 planes of 256 + 256 channels make 455 tiles
 * each. 2 images of 16 x 16 tiles of 4 x 4 pixels need two chunks, the second partial, and the
 * width 61 leaves tiles hanging over the right edge. */
Test(conv, winograd_4x4_matches_im2col_across_chunks) {
    compare_paths(MR_CONV_WINOGRAD_F4, 2, 64, 61, 256, 256, MR_PAD_SAME);
}

Test(conv, winograd_4x4_matches_im2col_valid_padding) {
    compare_paths(MR_CONV_WINOGRAD_F4, 3, 23, 30, 128, 160, MR_PAD_VALID);
}

/* F(6x6, 3x3): 64 planes of 256 + 256 channels make 256 tiles a chunk, and 2 images of
 * 15 x 11 tiles of 6 x 6 pixels fill one chunk and part of a second; 86 and 61 leave tiles
 * hanging over the bottom and right edges. */
Test(conv, winograd_6x6_matches_im2col_across_chunks) {
    compare_paths(MR_CONV_WINOGRAD_F6, 2, 86, 61, 256, 256, MR_PAD_SAME);
}

Test(conv, winograd_6x6_matches_im2col_valid_padding) {
    compare_paths(MR_CONV_WINOGRAD_F6, 3, 23, 30, 128, 160, MR_PAD_VALID);
}

/* Where dY is at least four times the transformed kernel and takes several chunks, each chunk's
 * dM serves both gradients and U and dU live side by side (core/winograd.c, SHARE_RATIO). 16 in
 * and 24 out make chunks of 5825 F(4x4, 3x3) tiles or 3276 F(6x6, 3x3) ones: 2 images of 256 x 256
 * take 8192 or 3698 tiles, two chunks each, and dY (2M floats) is far past four kernels (9216 or
 * 16384 floats a kernel). A dU written over U, or a chunk's dM taken for the wrong chunk, puts
 * the gradients off by O(scale). */
Test(conv, winograd_matches_im2col_when_both_gradients_share_each_chunk) {
    compare_paths(MR_CONV_WINOGRAD_F4, 2, 256, 256, 16, 24, MR_PAD_SAME);
    compare_paths(MR_CONV_WINOGRAD_F6, 2, 256, 256, 16, 24, MR_PAD_SAME);
}

/* The transforms take channels in blocks of 256 (kernels: 1024 channel pairs), and the input
 * gradient's transform splits the channels between the threads first: 600 in and 264 out leave
 * partial blocks everywhere (300 a thread, 264 = 256 + 8; 158400 pairs = 154 x 1024 + 704). */
Test(conv, winograd_matches_im2col_over_several_channel_blocks) {
    compare_paths(MR_CONV_WINOGRAD_F4, 1, 20, 22, 600, 264, MR_PAD_SAME);
    compare_paths(MR_CONV_WINOGRAD_F6, 1, 20, 22, 600, 264, MR_PAD_SAME);
}

/* Channel counts that are not whole panels on the other side: 72 in and 96 out put the output's
 * U in panels of 72 rows, and 96 in and 72 out the input gradient's transposed U in three panels
 * of 72 rows; both kernels (6912 pairs = 6 x 1024 + 768) end their transform on a partial block.
 * A pair arranged or transformed at the wrong place puts the outputs or the input gradient off
 * by O(scale). */
Test(conv, winograd_matches_im2col_with_panels_over_partial_kernel_blocks) {
    compare_paths(MR_CONV_WINOGRAD_F4, 1, 18, 21, 72, 96, MR_PAD_SAME);
    compare_paths(MR_CONV_WINOGRAD_F6, 1, 18, 21, 72, 96, MR_PAD_SAME);
    compare_paths(MR_CONV_WINOGRAD_F4, 1, 18, 21, 96, 72, MR_PAD_SAME);
    compare_paths(MR_CONV_WINOGRAD_F6, 1, 18, 21, 96, 72, MR_PAD_SAME);
}

/* The mask head's convolutions run on every positive ROI at once (n ROIs of 14 x 14 x 256):
 * Winograd's workspace is cut into chunks of tiles, so it stops growing once a chunk is full
 * (here past 29 ROIs) instead of growing with the ROI count. Past 188 ROIs dY is four times the
 * transformed kernel, and the backward keeps dU beside U (SHARE_RATIO): one kernel more, once,
 * and again no growth. */
Test(conv, winograd_workspace_stays_bounded_as_rois_grow, .timeout = 120) {
    enum { RUNS = 4 };
    size_t floats[RUNS];
    const int64_t rois[RUNS] = {40, 80, 200, 300};
    for (int i = 0; i < RUNS; i++) {
        mr_ctx ctx;
        cr_assert_eq(mr_ctx_init(&ctx, (size_t)768 << 20), MR_OK);
        ctx.conv_algo = MR_CONV_WINOGRAD_F4;
        mr_tensor *x = mr_tensor_4d(&ctx, "x", rois[i], 14, 14, 256);
        mr_tensor *k = mr_tensor_4d(&ctx, "w", 3, 3, 256, 256);
        cr_assert(x && k);
        for (int64_t j = 0; j < x->numel; j++) x->data[j] = (float)(j % 7) - 3.0f;
        for (int64_t j = 0; j < k->numel; j++) k->data[j] = 0.01f * (float)(j % 5);
        x->requires_grad = k->requires_grad = true;
        mr_tensor *y = mr_conv2d(&ctx, x, k, NULL, 1, MR_PAD_SAME);
        cr_assert_not_null(y, "%s", mr_last_error());
        float *seed = mr_alloc(&ctx, sizeof(float) * (size_t)y->numel, "seed");
        cr_assert_not_null(seed);
        for (int64_t j = 0; j < y->numel; j++) seed[j] = 1.0f;
        cr_assert_eq(mr_backward_seeded(&ctx, y, seed), MR_OK, "%s", mr_last_error());
        floats[i] = ctx.scratch_floats[MR_SCRATCH_CONV];
        mr_ctx_free(&ctx);
    }
    /* U (36 x 256 x 256) plus one chunk of V and M (8M floats) and a row of zeros; dU besides. */
    const size_t kernel = 36 * 256 * 256, chunk_and_zeros = ((size_t)8 << 20) + 256;
    for (int i = 0; i < RUNS; i++) {
        const bool beside = (size_t)rois[i] * 14 * 14 * 256 >= 4 * kernel; /* SHARE_RATIO */
        cr_expect_leq(floats[i], (beside ? 2 : 1) * kernel + chunk_and_zeros,
                      "%lld ROIs: %zu floats of workspace", (long long)rois[i], floats[i]);
    }
    cr_expect_eq(floats[0], floats[1], "40 ROIs %zu floats, 80 ROIs %zu", floats[0], floats[1]);
    cr_expect_eq(floats[2], floats[3], "200 ROIs %zu floats, 300 ROIs %zu", floats[2], floats[3]);
}

/* An export's batch norms are folded and left at the identity (train/export.h): conv2d_bn must
 * then compute exactly what conv2d computes with the same kernel and bias, on both paths, and its
 * gradients still reach the batch norm's parameters. */
Test(conv, conv_bn_with_an_identity_batch_norm_is_the_conv_itself) {
    const float eps = 1e-3f;
    for (int algo = MR_CONV_IM2COL; algo <= MR_CONV_WINOGRAD_F6; algo++) {
        mr_ctx ctx;
        cr_assert_eq(mr_ctx_init(&ctx, (size_t)64 << 20), MR_OK);
        ctx.conv_algo = (mr_conv_algo)algo;
        mr_rng rng;
        mr_rng_seed(&rng, 12);
        const int64_t cin = 64, cout = 72;
        mr_tensor *x = mr_tensor_4d(&ctx, "x", 1, 17, 19, cin);
        mr_tensor *k = mr_tensor_4d(&ctx, "w", 3, 3, cin, cout);
        mr_tensor *b = mr_tensor_1d(&ctx, "b", cout);
        mr_tensor *gamma = mr_tensor_1d(&ctx, "gamma", cout),
                  *beta = mr_tensor_1d(&ctx, "beta", cout);
        mr_tensor *mean = mr_tensor_1d(&ctx, "mean", cout), *var = mr_tensor_1d(&ctx, "var", cout);
        cr_assert(x && k && b && gamma && beta && mean && var);
        for (int64_t i = 0; i < x->numel; i++) x->data[i] = mr_rng_normal(&rng);
        for (int64_t i = 0; i < k->numel; i++) k->data[i] = 0.05f * mr_rng_normal(&rng);
        for (int64_t i = 0; i < cout; i++) {
            b->data[i] = mr_rng_normal(&rng);
            gamma->data[i] = 1.0f, beta->data[i] = 0.0f, mean->data[i] = 0.0f;
            var->data[i] = mr_bn_identity_variance(eps);
        }
        gamma->requires_grad = beta->requires_grad = true;
        mr_tensor *plain = mr_conv2d(&ctx, x, k, b, 1, MR_PAD_SAME);
        mr_tensor *folded =
            mr_conv2d_bn(&ctx, x, k, b, 1, MR_PAD_SAME, gamma, beta, mean, var, eps);
        cr_assert(plain && folded, "%s", mr_last_error());
        cr_assert(!memcmp(plain->data, folded->data, sizeof(float) * (size_t)plain->numel),
                  "algorithm %d: conv2d_bn with an identity batch norm differs from conv2d", algo);
        float *ones = malloc(sizeof *ones * (size_t)folded->numel);
        cr_assert_not_null(ones);
        for (int64_t i = 0; i < folded->numel; i++) ones[i] = 1.0f;
        cr_assert_eq(mr_backward_seeded(&ctx, folded, ones), MR_OK, "%s", mr_last_error());
        free(ones);
        /* Of the sum of the outputs: d/d(beta_c) is the pixel count, d/d(gamma_c) the sum of the
         * normalised input of channel c, here conv + b itself. */
        double want_gamma = 0.0;
        for (int64_t p = 0; p < 17 * 19; p++) want_gamma += (double)plain->data[p * cout];
        cr_assert_float_eq(beta->grad[0], 17.0f * 19.0f, 1e-3f);
        cr_assert_float_eq((double)gamma->grad[0], want_gamma, 1e-3 * fabs(want_gamma) + 1e-3);
        mr_ctx_free(&ctx);
    }
}

/* conv2d_bn's kernel gradient is computed into the fold's scratch, which the first of the
 * im2col path's chunks overwrites and the others add to: with an identity batch norm it must come
 * out as conv2d's, which adds every chunk into the zeroed gradient. 9 x 64 inputs a pixel make
 * chunks of 3640 pixels, so a 64 x 64 output takes two. */
Test(conv, conv_bn_kernel_gradient_sums_every_im2col_chunk) {
    const float eps = 1e-3f;
    const int64_t side = 64, cin = 64, cout = 72;
    mr_ctx ctx, fixed; /* each pass's graph, and what both passes share */
    cr_assert_eq(mr_ctx_init(&ctx, (size_t)256 << 20), MR_OK);
    cr_assert_eq(mr_ctx_init(&fixed, (size_t)16 << 20), MR_OK);
    ctx.conv_algo = MR_CONV_IM2COL;
    mr_rng rng;
    mr_rng_seed(&rng, 31);
    mr_tensor *x = mr_tensor_4d(&fixed, "x", 1, side, side, cin);
    mr_tensor *k = mr_tensor_4d(&fixed, "w", 3, 3, cin, cout);
    mr_tensor *gamma = mr_tensor_1d(&fixed, "gamma", cout),
              *beta = mr_tensor_1d(&fixed, "beta", cout);
    mr_tensor *mean = mr_tensor_1d(&fixed, "mean", cout), *var = mr_tensor_1d(&fixed, "var", cout);
    cr_assert(x && k && gamma && beta && mean && var);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = mr_rng_normal(&rng);
    for (int64_t i = 0; i < k->numel; i++) k->data[i] = 0.05f * mr_rng_normal(&rng);
    for (int64_t i = 0; i < cout; i++) {
        gamma->data[i] = 1.0f, beta->data[i] = 0.0f, mean->data[i] = 0.0f;
        var->data[i] = mr_bn_identity_variance(eps);
    }
    float *want = malloc(sizeof *want * (size_t)k->numel), *seed = NULL;
    k->grad = calloc((size_t)k->numel, sizeof *k->grad);
    cr_assert(want && k->grad);
    k->requires_grad = true;
    for (int pass = 0; pass < 2; pass++) {
        mr_ctx_reset(&ctx);
        memset(k->grad, 0, sizeof *k->grad * (size_t)k->numel);
        mr_tensor *y =
            pass ? mr_conv2d_bn(&ctx, x, k, NULL, 1, MR_PAD_SAME, gamma, beta, mean, var, eps)
                 : mr_conv2d(&ctx, x, k, NULL, 1, MR_PAD_SAME);
        cr_assert_not_null(y, "%s", mr_last_error());
        if (!seed) {
            seed = malloc(sizeof *seed * (size_t)y->numel);
            cr_assert_not_null(seed);
            for (int64_t i = 0; i < y->numel; i++) seed[i] = mr_rng_normal(&rng);
        }
        cr_assert_eq(mr_backward_seeded(&ctx, y, seed), MR_OK, "%s", mr_last_error());
        if (!pass) {
            memcpy(want, k->grad, sizeof *want * (size_t)k->numel);
            continue;
        }
        int64_t differ = 0;
        for (int64_t i = 0; i < k->numel; i++) differ += k->grad[i] != want[i];
        cr_assert_eq(differ, 0, "%lld of %lld kernel gradients differ from conv2d's",
                     (long long)differ, (long long)k->numel);
    }
    free(seed);
    free(want);
    free(k->grad);
    mr_ctx_free(&ctx);
    mr_ctx_free(&fixed);
}

/* A context that keeps kernels (an inference session: predict, evaluate) transforms a Winograd
 * layer's kernel at its first image and reuses it: each image gives the bits a fresh context
 * gives, the kernel is kept once for each Winograd size the layer meets (F(6x6) on 40 x 40,
 * F(4x4) on 32 x 32, as the RPN's one kernel meets both across the FPN levels), and later images
 * derive nothing, the batch norm's fold of the kernel included (its scratch is then left alone,
 * so a wrong kernel there would show in the bits). */
static void keeps_each_kernel_once(int64_t cout) {
    const float eps = 1e-3f;
    const int64_t cin = 64;
    mr_ctx fresh, keep;
    cr_assert_eq(mr_ctx_init(&fresh, (size_t)64 << 20), MR_OK);
    cr_assert_eq(mr_ctx_init(&keep, (size_t)64 << 20), MR_OK);
    mr_ctx_keep_kernels(&keep);
    mr_rng rng;
    mr_rng_seed(&rng, 31);
    /* The layer's parameters live outside both contexts, as a model's do. */
    float *k = malloc(sizeof *k * (size_t)(9 * cin * cout)), *bn = malloc(sizeof *bn * 5 * cout);
    cr_assert(k && bn);
    for (int64_t i = 0; i < 9 * cin * cout; i++) k[i] = 0.05f * mr_rng_normal(&rng);
    for (int64_t i = 0; i < cout; i++) {
        bn[i] = mr_rng_normal(&rng);                    /* bias */
        bn[cout + i] = 0.5f + mr_rng_uniform(&rng);     /* gamma */
        bn[2 * cout + i] = mr_rng_normal(&rng);         /* beta */
        bn[3 * cout + i] = 0.1f * mr_rng_normal(&rng);  /* mean */
        bn[4 * cout + i] = 0.5f + mr_rng_uniform(&rng); /* variance */
    }
    mr_tensor kt = {
        .data = k, .ndim = 4, .shape = {3, 3, cin, cout}, .numel = 9 * cin * cout, .name = "w"};
    mr_tensor p[5];
    for (int j = 0; j < 5; j++)
        p[j] = (mr_tensor){
            .data = bn + j * cout, .ndim = 1, .shape = {cout}, .numel = cout, .name = "bn"};
    const int sides[] = {40, 32, 40, 32};
    const size_t kept_after[] = {1, 2, 2, 2};
    /* In panels where the forward products take them (cout a whole number of panels). */
    const bool panels = mr_panels_suit(cout);
    const mr_kept_kind kinds[] = {panels ? MR_KEPT_WINOGRAD_F6_PANELS : MR_KEPT_WINOGRAD_F6,
                                  panels ? MR_KEPT_WINOGRAD_F4_PANELS : MR_KEPT_WINOGRAD_F4};
    for (int image = 0; image < 4; image++) {
        float *out[2];
        for (int c = 0; c < 2; c++) {
            mr_ctx *ctx = c ? &keep : &fresh;
            mr_ctx_reset(ctx);
            bool was = mr_no_grad_begin(ctx);
            mr_tensor *x = mr_tensor_4d(ctx, "x", 1, sides[image], sides[image], cin);
            cr_assert_not_null(x);
            mr_rng_seed(&rng, 100 + (uint64_t)image);
            for (int64_t i = 0; i < x->numel; i++) x->data[i] = mr_rng_normal(&rng);
            mr_tensor *y =
                mr_conv2d_bn(ctx, x, &kt, &p[0], 1, MR_PAD_SAME, &p[1], &p[2], &p[3], &p[4], eps);
            cr_assert_not_null(y, "%s", mr_last_error());
            out[c] = copy_floats(y->data, y->numel);
            if (c == 1) {
                cr_assert(!memcmp(out[0], out[1], sizeof(float) * (size_t)y->numel),
                          "image %d: the kept kernel changes the output", image);
                /* Whatever sits in the fold's scratch must not be what the output came from. */
                memset(keep.scratch[MR_SCRATCH_FOLD], 0xff,
                       keep.scratch_floats[MR_SCRATCH_FOLD] * sizeof(float));
            }
            mr_no_grad_end(ctx, was);
        }
        free(out[0]);
        free(out[1]);
        cr_assert_eq(keep.n_kept, kept_after[image], "image %d: %zu kernels kept", image,
                     keep.n_kept);
        cr_assert_eq(fresh.n_kept, 0, "a training context keeps nothing");
    }
    for (size_t i = 0; i < keep.n_kept; i++) {
        cr_assert_eq(keep.kept[i].key, &kt, "kept under the layer's kernel tensor");
        cr_assert_eq(keep.kept[i].kind, kinds[i]);
        cr_assert_eq(keep.kept[i].bytes, sizeof(float) * (size_t)((i ? 36 : 64) * cin * cout),
                     "a*a planes");
    }
    free(k);
    free(bn);
    mr_ctx_free(&fresh);
    mr_ctx_free(&keep);
}

Test(conv, a_context_that_keeps_kernels_transforms_each_once_with_the_same_bits) {
    keeps_each_kernel_once(72); /* planes of (Cin, Cout) */
    keeps_each_kernel_once(96); /* panels, with AVX-512 */
}

/* Training in a context that keeps kernels would leave them behind the weights: recording a
 * node there is a bug, and stops the program before any result is used. */
Test(conv, a_context_that_keeps_kernels_refuses_to_record, .signal = SIGABRT) {
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, (size_t)16 << 20), MR_OK);
    mr_ctx_keep_kernels(&ctx);
    mr_tensor *x = mr_tensor_4d(&ctx, "x", 1, 8, 8, 4), *w = mr_tensor_4d(&ctx, "w", 3, 3, 4, 4);
    cr_assert(x && w);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = 1.0f;
    for (int64_t i = 0; i < w->numel; i++) w->data[i] = 0.5f;
    w->requires_grad = true;
    mr_conv2d(&ctx, x, w, NULL, 1, MR_PAD_SAME);
    mr_ctx_free(&ctx); /* not reached */
}

/* The fused ReLU (mr_conv2d_relu, mr_conv2d_bn_relu, mr_deconv2x2_relu) against the op followed
 * by mr_relu_inplace: the same output bits and the same gradients to the bit, on every path the
 * epilogue lives in (Winograd's output transform, the im2col product, a 1x1 product whose rows
 * are blocked (inner dimension up to 256) and one whose are not, a strided BN-folded layer, the
 * deconvolution's scatter), with the same number of tape nodes. */
typedef enum { FUSED_CONV, FUSED_CONV_BN, FUSED_DECONV } fused_kind;

static mr_tensor *fused_param(mr_ctx *ctx, mr_rng *rng, int ndim, const int64_t *shape, float scale,
                              float offset) {
    mr_tensor *t = mr_tensor_new(ctx, "p", ndim, shape);
    cr_assert_not_null(t);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = offset + scale * mr_rng_normal(rng);
    t->requires_grad = true;
    return t;
}

/* A conv bias and a frozen batch norm's parameters for `cout` channels, the statistics fixed. */
typedef struct {
    mr_tensor *b, *gamma, *beta, *mean, *var;
} bn_params;

static bn_params random_bn(mr_ctx *ctx, mr_rng *rng, int64_t cout) {
    int64_t cs[1] = {cout};
    bn_params p;
    p.b = fused_param(ctx, rng, 1, cs, 0.3f, 0.0f);
    p.gamma = fused_param(ctx, rng, 1, cs, 0.2f, 1.0f);
    p.beta = fused_param(ctx, rng, 1, cs, 0.3f, 0.0f);
    p.mean = fused_param(ctx, rng, 1, cs, 0.1f, 0.0f);
    p.var = fused_param(ctx, rng, 1, cs, 0.1f, 1.0f);
    p.mean->requires_grad = p.var->requires_grad = false;
    return p;
}

/* Backward from y, a ReLU's output with a good share of zeros and of values, seeded at random. */
static void rectified_backward(mr_ctx *ctx, mr_rng *rng, mr_tensor *y) {
    int64_t zeros = 0;
    for (int64_t i = 0; i < y->numel; i++) zeros += y->data[i] == 0.0f;
    cr_assert(zeros > y->numel / 10 && zeros < y->numel * 9 / 10, "%lld of %lld rectified",
              (long long)zeros, (long long)y->numel);
    float *seed = malloc(sizeof *seed * (size_t)y->numel);
    cr_assert_not_null(seed);
    for (int64_t i = 0; i < y->numel; i++) seed[i] = mr_rng_normal(rng);
    cr_assert_eq(mr_backward_seeded(ctx, y, seed), MR_OK, "%s", mr_last_error());
    free(seed);
}

static void fused_run(fused_kind kind, mr_conv_algo algo, int64_t side, int64_t cin, int64_t cout,
                      int64_t k, int stride, bool fused, float **values, int64_t *n_values,
                      int *nodes) {
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, (size_t)128 << 20), MR_OK);
    ctx.conv_algo = algo;
    mr_rng rng;
    mr_rng_seed(&rng, 77);
    int64_t xs[4] = {2, side, side, cin}, ws[4] = {k, k, cin, cout}, ds[4] = {2, 2, cout, cin};
    mr_tensor *x = fused_param(&ctx, &rng, 4, xs, 1.0f, 0.0f);
    mr_tensor *w = fused_param(&ctx, &rng, 4, kind == FUSED_DECONV ? ds : ws, 0.05f, 0.0f);
    bn_params p = random_bn(&ctx, &rng, cout);
    mr_tensor *b = p.b, *gamma = p.gamma, *beta = p.beta, *mean = p.mean, *var = p.var;
    mr_tensor *y = NULL;
    if (kind == FUSED_CONV)
        y = fused ? mr_conv2d_relu(&ctx, x, w, b, stride, MR_PAD_SAME)
                  : mr_relu_inplace(&ctx, mr_conv2d(&ctx, x, w, b, stride, MR_PAD_SAME));
    else if (kind == FUSED_CONV_BN)
        y = fused ? mr_conv2d_bn_relu(&ctx, x, w, b, stride, MR_PAD_SAME, gamma, beta, mean, var,
                                      1e-3f)
                  : mr_relu_inplace(&ctx, mr_conv2d_bn(&ctx, x, w, b, stride, MR_PAD_SAME, gamma,
                                                       beta, mean, var, 1e-3f));
    else
        y = fused ? mr_deconv2x2_relu(&ctx, x, w, b)
                  : mr_relu_inplace(&ctx, mr_deconv2x2(&ctx, x, w, b));
    cr_assert_not_null(y, "%s", mr_last_error());
    *nodes = ctx.tape.count;
    rectified_backward(&ctx, &rng, y);
    const mr_tensor *parts[5] = {y, x, w, b, kind == FUSED_CONV_BN ? gamma : NULL};
    int64_t n = y->numel + x->numel + w->numel + b->numel + (parts[4] ? gamma->numel : 0);
    float *all = malloc(sizeof *all * (size_t)n), *at = all;
    cr_assert_not_null(all);
    memcpy(at, y->data, sizeof *at * (size_t)y->numel);
    at += y->numel;
    for (int j = 1; j < 5; j++)
        if (parts[j]) {
            memcpy(at, parts[j]->grad, sizeof *at * (size_t)parts[j]->numel);
            at += parts[j]->numel;
        }
    *values = all;
    *n_values = n;
    mr_ctx_free(&ctx);
}

Test(conv, fused_relu_gives_the_bits_and_gradients_of_the_op_then_relu) {
    const struct {
        const char *name;
        fused_kind kind;
        mr_conv_algo algo;
        int64_t side, cin, cout, k;
        int stride;
    } cases[] = {
        {"3x3 Winograd F(4x4)", FUSED_CONV, MR_CONV_WINOGRAD_F4, 20, 64, 72, 3, 1},
        {"3x3 Winograd F(6x6) + BN", FUSED_CONV_BN, MR_CONV_WINOGRAD_F6, 20, 64, 72, 3, 1},
        {"3x3 im2col", FUSED_CONV, MR_CONV_IM2COL, 20, 64, 72, 3, 1},
        {"1x1, rows blocked", FUSED_CONV_BN, MR_CONV_AUTO, 48, 64, 80, 1, 1},
        {"1x1, K 300", FUSED_CONV, MR_CONV_AUTO, 24, 300, 80, 1, 1},
        {"7x7 stride 2 + BN", FUSED_CONV_BN, MR_CONV_AUTO, 30, 3, 64, 7, 2},
        {"deconv 2x2", FUSED_DECONV, MR_CONV_AUTO, 14, 64, 48, 2, 2},
    };
    const int threads_before = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            float *want, *got;
            int64_t n_want, n_got;
            int nodes_want, nodes_got;
            fused_run(cases[c].kind, cases[c].algo, cases[c].side, cases[c].cin, cases[c].cout,
                      cases[c].k, cases[c].stride, false, &want, &n_want, &nodes_want);
            fused_run(cases[c].kind, cases[c].algo, cases[c].side, cases[c].cin, cases[c].cout,
                      cases[c].k, cases[c].stride, true, &got, &n_got, &nodes_got);
            cr_assert_eq(n_got, n_want);
            cr_assert_eq(nodes_got, nodes_want, "%s: %d tape nodes, unfused %d", cases[c].name,
                         nodes_got, nodes_want);
            cr_assert(!memcmp(got, want, sizeof *got * (size_t)n_got),
                      "%s, %d threads: fused output or gradients differ", cases[c].name, threads);
            free(want);
            free(got);
        }
    }
    omp_set_num_threads(threads_before);
}

/* The product with a bias (core/blas.c) fills C a block of rows at a time next to the product
 * instead of in a pass of its own: it must give the bits of filling C and then multiplying with
 * beta 1, for one thread and for two (blocks of rows, blocks of columns, several fill blocks,
 * no inner dimension), and without a bias overwrite whatever C held. */
Test(conv, product_with_a_bias_is_the_filled_product_bit_for_bit) {
    const struct {
        int64_t M, N, K;
    } shapes[] = {{9000, 64, 64}, {300, 700, 300}, {3000, 6, 512}, {100, 50, 0}, {37, 5, 3}};
    const int threads_before = omp_get_max_threads();
    mr_rng rng;
    mr_rng_seed(&rng, 5);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t M = shapes[s].M, N = shapes[s].N, K = shapes[s].K;
        float *A = malloc(sizeof(float) * (size_t)(M * K + 1)),
              *B = malloc(sizeof(float) * (size_t)(K * N + 1)), *bias = malloc(sizeof(float) * N),
              *want = malloc(sizeof(float) * (size_t)(M * N)),
              *got = malloc(sizeof(float) * (size_t)(M * N));
        cr_assert(A && B && bias && want && got);
        for (int64_t i = 0; i < M * K; i++) A[i] = mr_rng_normal(&rng);
        for (int64_t i = 0; i < K * N; i++) B[i] = mr_rng_normal(&rng);
        for (int64_t i = 0; i < N; i++) bias[i] = mr_rng_normal(&rng);
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            for (int64_t r = 0; r < M; r++) memcpy(want + r * N, bias, sizeof(float) * N);
            mr_sgemm(false, false, M, N, K, 1.0f, A, K, B, N, 1.0f, want, N);
            for (int64_t i = 0; i < M * N; i++) got[i] = NAN;
            mr_sgemm_bias(M, N, K, A, K, B, N, bias, false, got, N);
            cr_assert(!memcmp(want, got, sizeof(float) * (size_t)(M * N)),
                      "%lldx%lldx%lld, %d threads: the bias product differs", (long long)M,
                      (long long)N, (long long)K, threads);
            mr_sgemm(false, false, M, N, K, 1.0f, A, K, B, N, 0.0f, want, N);
            mr_sgemm_bias(M, N, K, A, K, B, N, NULL, false, got, N);
            cr_assert(!memcmp(want, got, sizeof(float) * (size_t)(M * N)),
                      "%lldx%lldx%lld, %d threads: without a bias the product differs",
                      (long long)M, (long long)N, (long long)K, threads);
        }
        free(A), free(B), free(bias), free(want), free(got);
    }
    omp_set_num_threads(threads_before);
}

/* Bias, beta and gamma gradients are column sums over every output pixel (core/op_conv.c), taken
 * by threads in fixed blocks of rows: they must be the sums a double-precision loop gives, and
 * the same bits for one thread and two. 2460 pixels by 1100 channels make two panels of columns
 * (1024 + 76), many blocks of rows and a partial last block in each. */
Test(conv, column_sums_are_exact_and_the_same_for_any_thread_count) {
    const int64_t n = 2, h = 30, w = 41, cin = 40, cout = 1100, rows = n * h * w;
    const int threads_before = omp_get_max_threads();
    float *grads[2][3] = {{NULL}};
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        mr_ctx ctx;
        cr_assert_eq(mr_ctx_init(&ctx, (size_t)64 << 20), MR_OK);
        mr_rng rng;
        mr_rng_seed(&rng, 17);
        mr_tensor *x = mr_tensor_4d(&ctx, "x", n, h, w, cin);
        mr_tensor *k = mr_tensor_4d(&ctx, "w", 1, 1, cin, cout);
        mr_tensor *b = mr_tensor_1d(&ctx, "b", cout), *gamma = mr_tensor_1d(&ctx, "gamma", cout);
        mr_tensor *beta = mr_tensor_1d(&ctx, "beta", cout),
                  *mean = mr_tensor_1d(&ctx, "mean", cout);
        mr_tensor *var = mr_tensor_1d(&ctx, "var", cout);
        cr_assert(x && k && b && gamma && beta && mean && var);
        mr_tensor *all[] = {x, k, b, gamma, beta, mean, var};
        for (size_t t = 0; t < sizeof all / sizeof all[0]; t++)
            for (int64_t i = 0; i < all[t]->numel; i++) all[t]->data[i] = mr_rng_normal(&rng);
        for (int64_t i = 0; i < cout; i++) var->data[i] = 0.5f + var->data[i] * var->data[i];
        x->requires_grad = k->requires_grad = b->requires_grad = true;
        gamma->requires_grad = beta->requires_grad = true;
        mr_tensor *y = mr_conv2d_bn(&ctx, x, k, b, 1, MR_PAD_SAME, gamma, beta, mean, var, 1e-3f);
        cr_assert_not_null(y, "%s", mr_last_error());
        float *seed = malloc(sizeof *seed * (size_t)y->numel);
        cr_assert_not_null(seed);
        for (int64_t i = 0; i < y->numel; i++) seed[i] = mr_rng_normal(&rng);
        cr_assert_eq(mr_backward_seeded(&ctx, y, seed), MR_OK, "%s", mr_last_error());
        for (int64_t o = 0; o < cout; o++) {
            /* beta's gradient: the sum of the upstream gradient over pixels; gamma's: that sum
             * times (b - mean), plus the unscaled kernel gradient dotted with the kernel, over
             * sqrt(var + eps). */
            double dbeta = 0.0, dbeta_abs = 0.0, dwk = 0.0, dwk_abs = 0.0;
            for (int64_t r = 0; r < rows; r++) {
                double d = seed[r * cout + o];
                dbeta += d;
                dbeta_abs += fabs(d);
            }
            for (int64_t c = 0; c < cin; c++) {
                double dw = 0.0, dw_abs = 0.0;
                for (int64_t r = 0; r < rows; r++) {
                    double term = (double)x->data[r * cin + c] * (double)seed[r * cout + o];
                    dw += term;
                    dw_abs += fabs(term);
                }
                double kw = k->data[c * cout + o];
                dwk += dw * kw;
                dwk_abs += dw_abs * fabs(kw);
            }
            double root = sqrt((double)var->data[o] + 1e-3);
            double shift = (double)b->data[o] - (double)mean->data[o];
            double dgamma = (dbeta * shift + dwk) / root;
            double dgamma_tol = 1e-5 * (dbeta_abs * fabs(shift) + dwk_abs) / root;
            cr_assert(fabs((double)beta->grad[o] - dbeta) <= 1e-5 * dbeta_abs,
                      "%d threads: beta gradient %lld is %g, the sum is %g", threads, (long long)o,
                      (double)beta->grad[o], dbeta);
            cr_assert(fabs((double)gamma->grad[o] - dgamma) <= dgamma_tol,
                      "%d threads: gamma gradient %lld is %g, the sum is %g", threads, (long long)o,
                      (double)gamma->grad[o], dgamma);
        }
        grads[threads - 1][0] = copy_floats(beta->grad, cout);
        grads[threads - 1][1] = copy_floats(gamma->grad, cout);
        grads[threads - 1][2] = copy_floats(b->grad, cout);
        free(seed);
        mr_ctx_free(&ctx);
    }
    omp_set_num_threads(threads_before);
    const char *names[3] = {"beta", "gamma", "bias"};
    for (int i = 0; i < 3; i++) {
        cr_expect(!memcmp(grads[0][i], grads[1][i], sizeof(float) * (size_t)cout),
                  "the %s gradient differs between one thread and two", names[i]);
        free(grads[0][i]);
        free(grads[1][i]);
    }
}

/* One narrow product through mr_narrow_product against sums in double: every element within
 * 1e-5 of the sum of its terms' sizes; with beta 0, C's old contents (NaN) must not leak. Returns
 * whether the kernel took it; C (rows of N + 5) goes to *out, for the caller to free. */
static bool narrow_case(bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta,
                        mr_rng *rng, float **out) {
    const int64_t lda = K + 3, ldb = tb ? K + 1 : N + 2, ldc = N + 5;
    const int64_t b_rows = tb ? N : K;
    float *A = malloc(sizeof(float) * (size_t)(M * lda)),
          *B = malloc(sizeof(float) * (size_t)(b_rows * ldb)),
          *C0 = malloc(sizeof(float) * (size_t)(M * ldc));
    cr_assert(A && B && C0);
    for (int64_t i = 0; i < M * lda; i++) A[i] = mr_rng_normal(rng);
    for (int64_t i = 0; i < b_rows * ldb; i++) B[i] = mr_rng_normal(rng);
    for (int64_t i = 0; i < M * ldc; i++) C0[i] = beta == 0.0f ? NAN : mr_rng_normal(rng);
    float *got = *out = malloc(sizeof(float) * (size_t)(M * ldc));
    cr_assert_not_null(got);
    memcpy(got, C0, sizeof(float) * (size_t)(M * ldc));
    bool took = mr_narrow_product(false, tb, M, N, K, alpha, A, lda, B, ldb, beta, got, ldc);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = N; n < ldc; n++)
            cr_assert(!memcmp(&got[m * ldc + n], &C0[m * ldc + n], sizeof(float)),
                      "%lldx%lldx%lld: C[%lld][%lld], past the product's columns, was written",
                      (long long)M, (long long)N, (long long)K, (long long)m, (long long)n);
    for (int64_t m = 0; took && m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double sum = 0.0, size = 0.0;
            for (int64_t k = 0; k < K; k++) {
                double t = (double)A[m * lda + k] * (double)(tb ? B[n * ldb + k] : B[k * ldb + n]);
                sum += t;
                size += fabs(t);
            }
            double c = beta == 0.0f ? 0.0 : (double)C0[m * ldc + n];
            double want = (double)alpha * sum + (double)beta * c;
            double tol = 1e-5 * (fabs((double)alpha) * size + fabs((double)beta * c)) + 1e-30;
            cr_assert(fabs((double)got[m * ldc + n] - want) <= tol,
                      "%s %lldx%lldx%lld alpha %g beta %g: C[%lld][%lld] is %.8g, want %.8g",
                      tb ? "A B'" : "A B", (long long)M, (long long)N, (long long)K, (double)alpha,
                      (double)beta, (long long)m, (long long)n, (double)got[m * ldc + n], want);
        }
    free(A), free(B), free(C0);
    return took;
}

/* core/gemm_narrow.c: the products of narrow layers, on each kernel this CPU has, over partial
 * row blocks, one and two vectors of columns (and past them, where BLAS must be left the product),
 * strides wider than the rows, alpha and beta. The AVX2 and AVX-512 kernels give the same bits, as
 * the file promises. */
Test(conv, narrow_products_are_exact_on_every_kernel) {
    const int64_t rows[] = {1, 7, 8, 9, 1003}, cols[] = {1, 3, 6, 12, 16, 17, 18, 32, 33};
    const int64_t depths[] = {1, 5, 512};
    const float scales[][2] = {{1.0f, 0.0f}, {0.5f, 2.0f}};
    const int before = mr_own_kernel_limit(MR_OWN_AVX512);
    float *got[2];
    int taken[3] = {0};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
            for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++)
                for (int s = 0; s < 2; s++) {
                    const int64_t M = rows[r], N = cols[c], K = depths[d];
                    bool took[2];
                    for (int level = MR_OWN_AVX2; level <= MR_OWN_AVX512; level++) {
                        mr_rng rng;
                        mr_rng_seed(&rng, (uint64_t)(M * 1000 + N * 10 + K));
                        mr_own_kernel_limit(level);
                        took[level - 1] = narrow_case(false, M, N, K, scales[s][0], scales[s][1],
                                                      &rng, &got[level - 1]);
                        taken[level] += took[level - 1];
                    }
                    cr_assert(N <= 32 || (!took[0] && !took[1]), "N %lld is not narrow",
                              (long long)N);
                    if (took[0] && took[1])
                        cr_assert(!memcmp(got[0], got[1], sizeof(float) * (size_t)(M * (N + 5))),
                                  "%lldx%lldx%lld: AVX2 and AVX-512 differ", (long long)M,
                                  (long long)N, (long long)K);
                    free(got[0]), free(got[1]);
                    /* the input gradient's form: K (the layer's outputs) at most 32 */
                    mr_rng rng;
                    mr_rng_seed(&rng, (uint64_t)(M + N + K));
                    mr_own_kernel_limit(MR_OWN_AVX512);
                    bool t = narrow_case(true, M, 2 * K + 13, N, scales[s][0], scales[s][1], &rng,
                                         &got[0]);
                    free(got[0]);
                    cr_assert(N <= 32 || !t, "an inner dimension of %lld is not narrow",
                              (long long)N);
                    taken[0] += t;
                }
    mr_own_kernel_limit(MR_OWN_OFF);
    mr_rng rng;
    mr_rng_seed(&rng, 1);
    cr_assert(!narrow_case(false, 9, 6, 5, 1.0f, 0.0f, &rng, &got[0]), "turned off, it computed");
    free(got[0]);
    mr_own_kernel_limit(before);
    /* This CPU's kernels must have run: an x86-64 without AVX2 computes every product in BLAS. */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        cr_assert_gt(taken[MR_OWN_AVX2], 0, "the AVX2 kernel never ran");
    else
        cr_log_warn("no AVX2 on this CPU: every narrow product is BLAS's");
    if (__builtin_cpu_supports("avx512f")) {
        cr_assert_gt(taken[MR_OWN_AVX512], taken[MR_OWN_AVX2], "the AVX-512 kernel");
        cr_assert_gt(taken[0], 0, "the input-gradient kernel never ran");
    } else {
        cr_log_warn("no AVX-512 on this CPU: the AVX-512 kernels were not tested");
    }
}

/* core/gemm_panel.c: C = A B with B laid out in panels, against each element's K fused
 * multiply-adds in order from zero (the same bits, as the file promises), over partial row blocks
 * (its blocks hold 14 rows), one to three panels, no terms at all, and strides wider than the rows;
 * C's columns past N stay as they were. It computes nothing turned off or for a partial panel. */
/* Our kernels at their widest (the previous limit in *before): false, with the limit restored
 * and a warning naming what stays untested, where this CPU runs no panels (no AVX-512). */
static bool panels_run_here(int *before, const char *untested) {
    *before = mr_own_kernel_limit(MR_OWN_AVX512);
    if (mr_panels_suit(MR_PANEL)) return true;
    cr_log_warn("no AVX-512 on this CPU: %s", untested);
    mr_own_kernel_limit(*before);
    return false;
}

Test(conv, panel_products_are_the_bits_of_fused_sums_in_order) {
    int before;
    if (!panels_run_here(&before, "Winograd's products are BLAS's, the panels untested")) return;
    const int64_t rows[] = {1, 13, 14, 15, 29, 170}, cols[] = {32, 64, 96},
                  depths[] = {0, 1, 7, 300};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
        for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
            for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
                const int64_t M = rows[r], N = cols[c], K = depths[d];
                const int64_t lda = K + 3, ldc = N + 5;
                mr_rng rng;
                mr_rng_seed(&rng, (uint64_t)(M * 1000 + N * 10 + K));
                float *A = malloc(sizeof(float) * (size_t)(M * lda + 1)),
                      *B = malloc(sizeof(float) * (size_t)(K * N + 1)),
                      *panels = malloc(sizeof(float) * (size_t)(K * N + 1)),
                      *C = malloc(sizeof(float) * (size_t)(M * ldc));
                cr_assert(A && B && panels && C);
                for (int64_t i = 0; i < M * lda; i++) A[i] = mr_rng_normal(&rng);
                for (int64_t k = 0; k < K; k++)
                    for (int64_t n = 0; n < N; n++) {
                        B[k * N + n] = mr_rng_normal(&rng);
                        panels[mr_panel_index(k, n, K)] = B[k * N + n];
                    }
                for (int64_t i = 0; i < M * ldc; i++) C[i] = NAN;
                mr_panel_product(M, N, K, A, lda, panels, C, ldc);
                for (int64_t m = 0; m < M; m++)
                    for (int64_t n = 0; n < ldc; n++) {
                        float want = NAN;
                        if (n < N) {
                            want = 0.0f;
                            for (int64_t k = 0; k < K; k++)
                                want = fmaf(A[m * lda + k], B[k * N + n], want);
                        }
                        cr_assert(!memcmp(&C[m * ldc + n], &want, sizeof want),
                                  "%lldx%lldx%lld: C[%lld][%lld] is %.9g, want %.9g", (long long)M,
                                  (long long)N, (long long)K, (long long)m, (long long)n,
                                  (double)C[m * ldc + n], (double)want);
                    }
                free(A), free(B), free(panels), free(C);
            }
    cr_assert(!mr_panels_suit(48), "48 columns are not whole panels");
    mr_own_kernel_limit(MR_OWN_AVX2);
    cr_assert(!mr_panels_suit(64), "limited to AVX2, the panels still run");
    mr_own_kernel_limit(before);
}

/* One case of tall_products_run_on_panels: C = A op(B) (+ C or + bias) (ReLU) through mr_sgemm
 * or mr_sgemm_bias with strides wider than the rows; returns C (M rows of ldc). */
typedef struct {
    int64_t M, N, K;
    bool tb, bias, relu;
    float beta;
} tall_case;

static float *tall_product(const tall_case *t, const float *A, const float *B, const float *bias,
                           const float *C0) {
    const int64_t lda = t->K + 3, ldb = (t->tb ? t->K : t->N) + 5, ldc = t->N + 7;
    float *C = malloc(sizeof(float) * (size_t)(t->M * ldc));
    cr_assert(C);
    memcpy(C, C0, sizeof(float) * (size_t)(t->M * ldc));
    if (t->bias || t->relu)
        mr_sgemm_bias(t->M, t->N, t->K, A, lda, B, ldb, t->bias ? bias : NULL, t->relu, C, ldc);
    else
        mr_sgemm(false, t->tb, t->M, t->N, t->K, 1.0f, A, lda, B, ldb, t->beta, C, ldc);
    return C;
}

/* core/blas.c runs tall products with a small B (convolutions over a feature map, their input
 * gradients) on the panel kernel, B laid out once per product: each element must be its start (0,
 * C's own value with beta 1, or the bias) and then its K fused multiply-adds in order, rectified
 * after with a ReLU (a NaN to 0), whatever the thread count; C's columns past N untouched. BLAS
 * (own kernels off) must agree to float rounding. Rows, columns and depths cover partial row
 * blocks and threads' blocks, one to eight panels, depths off the vector width, and a B given
 * transposed. */
Test(conv, tall_products_run_on_panels_as_fused_sums_in_order) {
    int before;
    if (!panels_run_here(&before, "every product is BLAS's, the panels untested")) return;
    const tall_case cases[] = {
        {9000, 64, 64, false, false, false, 0.0f}, {1001, 96, 147, false, true, true, 0.0f},
        {300, 256, 200, true, false, false, 1.0f}, {131, 128, 1024, true, false, false, 0.0f},
        {700, 64, 300, false, false, true, 0.0f},  {1500, 512, 96, false, true, false, 0.0f},
    };
    const int threads_before = omp_get_max_threads();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const tall_case *t = &cases[c];
        const int64_t M = t->M, N = t->N, K = t->K;
        const int64_t lda = K + 3, ldb = (t->tb ? K : N) + 5, ldc = N + 7;
        const int64_t brows = t->tb ? N : K;
        mr_rng rng;
        mr_rng_seed(&rng, (uint64_t)c + 40);
        float *A = malloc(sizeof(float) * (size_t)(M * lda)),
              *B = malloc(sizeof(float) * (size_t)(brows * ldb)), *bias = malloc(sizeof(float) * N),
              *C0 = malloc(sizeof(float) * (size_t)(M * ldc));
        cr_assert(A && B && bias && C0);
        for (int64_t i = 0; i < M * lda; i++) A[i] = mr_rng_normal(&rng);
        for (int64_t i = 0; i < brows * ldb; i++) B[i] = mr_rng_normal(&rng);
        for (int64_t i = 0; i < N; i++) bias[i] = mr_rng_normal(&rng);
        for (int64_t i = 0; i < M * ldc; i++) C0[i] = mr_rng_normal(&rng);
        if (t->relu) A[5 * lda + 1] = NAN; /* row 5 is NaN wherever its product is, then 0 */
        float *got[2];
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            got[threads - 1] = tall_product(t, A, B, bias, C0);
        }
        omp_set_num_threads(threads_before);
        mr_own_kernel_limit(MR_OWN_OFF);
        float *blas = tall_product(t, A, B, bias, C0);
        mr_own_kernel_limit(MR_OWN_AVX512);
        cr_assert(!memcmp(got[0], got[1], sizeof(float) * (size_t)(M * ldc)),
                  "case %zu: one thread and two differ", c);
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < ldc; n++) {
                const float g = got[1][m * ldc + n];
                if (n >= N) {
                    cr_assert(!memcmp(&g, &C0[m * ldc + n], sizeof g),
                              "case %zu: C[%lld][%lld] past N changed", c, (long long)m,
                              (long long)n);
                    continue;
                }
                float want = t->bias ? bias[n] : t->beta == 1.0f ? C0[m * ldc + n] : 0.0f;
                double exact = (double)want, size = fabs((double)want);
                for (int64_t k = 0; k < K; k++) {
                    const float b = t->tb ? B[n * ldb + k] : B[k * ldb + n];
                    want = fmaf(A[m * lda + k], b, want);
                    exact += (double)A[m * lda + k] * (double)b;
                    size += fabs((double)A[m * lda + k] * (double)b);
                }
                const bool poisoned = isnan(exact);
                if (t->relu) want = want > 0.0f ? want : 0.0f, exact = exact > 0.0 ? exact : 0.0;
                cr_assert(!memcmp(&g, &want, sizeof g),
                          "case %zu: C[%lld][%lld] is %.9g, the fused sum in order %.9g", c,
                          (long long)m, (long long)n, (double)g, (double)want);
                const float b = blas[m * ldc + n];
                if (poisoned) {
                    cr_assert(g == 0.0f && b == 0.0f, "case %zu: the ReLU kept a NaN", c);
                    continue;
                }
                cr_assert(fabs((double)g - exact) <= 1e-5 * size &&
                              fabs((double)b - exact) <= 1e-5 * size,
                          "case %zu: C[%lld][%lld] %.9g and BLAS's %.9g, exact %.9g", c,
                          (long long)m, (long long)n, (double)g, (double)b, exact);
            }
        free(got[0]), free(got[1]), free(blas);
        free(A), free(B), free(bias), free(C0);
    }
    mr_own_kernel_limit(before);
}

/* Where its output is smaller than its kernel (ResNet's stages 4 and 5), mr_conv2d_bn_relu
 * applies the batch norm to the output instead of folding it into the kernel (core/op_conv.c):
 * its output and its gradients for x, w, b, gamma and beta must be those of conv2d, then
 * mr_batchnorm_frozen, then relu, on the Winograd, 1x1 and strided im2col paths, with the same
 * bits for one thread and two; and it must never build a folded kernel (the fold's scratch stays
 * below the kernel's size). A channel whose beta is over 16 times its gamma, from whose output
 * the normalised value cannot be recovered exactly enough, makes the layer fold instead. */
typedef struct {
    float *values; /* y, then the gradients of x, w, b, gamma, beta */
    int64_t n, part_end[6];
    size_t fold_scratch;
} scaled_bn_result;

static scaled_bn_result scaled_bn_run(int64_t batch, int64_t side, int64_t cin, int64_t cout,
                                      int64_t k, int stride, bool fused, float bad_beta) {
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, (size_t)64 << 20), MR_OK);
    mr_rng rng;
    mr_rng_seed(&rng, 41);
    int64_t xs[4] = {batch, side, side, cin}, ws[4] = {k, k, cin, cout};
    mr_tensor *x = fused_param(&ctx, &rng, 4, xs, 1.0f, 0.0f);
    mr_tensor *w = fused_param(&ctx, &rng, 4, ws, 0.05f, 0.0f);
    bn_params p = random_bn(&ctx, &rng, cout);
    mr_tensor *b = p.b, *gamma = p.gamma, *beta = p.beta, *mean = p.mean, *var = p.var;
    beta->data[cout / 2] = bad_beta * gamma->data[cout / 2];
    mr_tensor *y =
        fused
            ? mr_conv2d_bn_relu(&ctx, x, w, b, stride, MR_PAD_SAME, gamma, beta, mean, var, 1e-3f)
            : mr_relu(&ctx, mr_batchnorm_frozen(&ctx, mr_conv2d(&ctx, x, w, b, stride, MR_PAD_SAME),
                                                gamma, beta, mean, var, 1e-3f));
    cr_assert_not_null(y, "%s", mr_last_error());
    rectified_backward(&ctx, &rng, y);
    const mr_tensor *parts[6] = {y, x, w, b, gamma, beta};
    scaled_bn_result r = {.fold_scratch = ctx.scratch_floats[MR_SCRATCH_FOLD]};
    for (int j = 0; j < 6; j++) r.part_end[j] = r.n += parts[j]->numel;
    r.values = malloc(sizeof *r.values * (size_t)r.n);
    cr_assert_not_null(r.values);
    float *at = r.values;
    for (int j = 0; j < 6; j++) {
        memcpy(at, j ? parts[j]->grad : parts[j]->data, sizeof *at * (size_t)parts[j]->numel);
        at += parts[j]->numel;
    }
    mr_ctx_free(&ctx);
    return r;
}

Test(conv, bn_applied_to_a_small_output_gives_conv_then_batch_norm) {
    const struct {
        const char *name;
        int64_t batch, side, cin, cout, k;
        int stride;
    } cases[] = {
        {"3x3 Winograd", 1, 24, 128, 128, 3, 1},
        {"1x1", 1, 5, 256, 128, 1, 1},
        {"3x3 stride 2 im2col", 2, 7, 32, 48, 3, 2},
    };
    const int threads_before = omp_get_max_threads();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int64_t kernel = cases[c].k * cases[c].k * cases[c].cin * cases[c].cout;
        scaled_bn_result want = scaled_bn_run(cases[c].batch, cases[c].side, cases[c].cin,
                                              cases[c].cout, cases[c].k, cases[c].stride, false, 0);
        float *first = NULL;
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            scaled_bn_result got =
                scaled_bn_run(cases[c].batch, cases[c].side, cases[c].cin, cases[c].cout,
                              cases[c].k, cases[c].stride, true, 0);
            cr_assert_eq(got.n, want.n);
            cr_assert_lt(got.fold_scratch, (size_t)kernel, "%s: a folded kernel was built",
                         cases[c].name);
            /* Every value of each part (the output, each gradient) within 1e-4 of the part's
             * largest: Winograd's transforms round each product to about that. */
            for (int j = 0, i = 0; j < 6; j++) {
                float largest = 0.0f;
                for (int64_t v = i; v < want.part_end[j]; v++)
                    largest = fmaxf(largest, fabsf(want.values[v]));
                for (; i < want.part_end[j]; i++)
                    cr_assert(fabsf(got.values[i] - want.values[i]) <= 1e-4f * largest,
                              "%s, %d threads: part %d value %d is %g, conv then BN gives %g",
                              cases[c].name, threads, j, i, (double)got.values[i],
                              (double)want.values[i]);
            }
            if (first)
                cr_assert(!memcmp(first, got.values, sizeof *first * (size_t)got.n),
                          "%s: two threads give other bits than one", cases[c].name);
            free(first);
            first = got.values;
        }
        free(first);
        free(want.values);
        /* One channel's beta 20 times its gamma: the layer folds. */
        scaled_bn_result fold = scaled_bn_run(cases[c].batch, cases[c].side, cases[c].cin,
                                              cases[c].cout, cases[c].k, cases[c].stride, true, 20);
        cr_assert_geq(fold.fold_scratch, (size_t)kernel, "%s: no folded kernel", cases[c].name);
        free(fold.values);
    }
    omp_set_num_threads(threads_before);
}

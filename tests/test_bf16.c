/* bfloat16 inference (core/gemm_bf16.c, mr_ctx_use_bf16, `--bf16`): the product is exact where
 * its inputs are bfloat16 values, rounds to nearest even, gives the same bits on any thread
 * count; every layer kind agrees with float32 within bfloat16's precision and reuses the kernel
 * it packed; and a trained model's detections hold (same detections, boxes within 1 px, mask IoU
 * >= 0.98), in predict and in evaluate. On a CPU without AVX-512 BF16 the option is refused with
 * one line, and the cases that need the instructions say so as skipped. */
#include <omp.h>

#include "../core/blas.h"
#include "../core/ops.h"
#include "../core/rng.h"
#include "../train/checkpoint.h"
#include "../train/evaluate.h"
#include "../train/metrics.h"
#include "../train/predictor.h"
#include "../train/trainer.h"
#include "testutil.h"

static void need_bf16(void) {
    if (!mr_bf16_supported()) cr_skip_test("this CPU has no AVX-512 BF16");
}

static void *workspace(void) {
    void *w = malloc(mr_sgemm_bf16_workspace() * (size_t)omp_get_max_threads());
    cr_assert_not_null(w);
    return w;
}

/* C = A B + beta C through a fresh packing of B. */
static void product(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float beta, float *C, int64_t ldc) {
    uint32_t *packed = malloc(mr_bf16_packed_words(K, N) * sizeof *packed + 4);
    cr_assert_not_null(packed);
    mr_bf16_pack(K, N, B, ldb, packed);
    void *work = workspace();
    mr_sgemm_bf16(M, N, K, A, lda, packed, beta, C, ldc, work);
    free(work);
    free(packed);
}

/* Small integers are bfloat16 values and their sums are exact in float, so the product must
 * equal the exact one on every edge: rows past the kernel's 12, columns past a panel's 32 and a
 * block's 1024, K odd and past a block's 384, leading dimensions wider than the matrix, beta. */
Test(bf16, product_is_exact_on_bfloat16_values) {
    need_bf16();
    const int64_t shapes[][3] = {{1, 1, 1},      {13, 33, 7},   {97, 65, 385}, {25, 1030, 5},
                                 {200, 40, 769}, {12, 32, 384}, {5, 17, 2}};
    mr_rng rng;
    mr_rng_seed(&rng, 5);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        int64_t lda = K + 3, ldb = N + 5, ldc = N + 2;
        float *A = calloc((size_t)(M * lda), sizeof *A), *B = calloc((size_t)(K * ldb), sizeof *B);
        float *C = calloc((size_t)(M * ldc), sizeof *C);
        cr_assert(A && B && C);
        for (int64_t i = 0; i < M * lda; i++) A[i] = (float)((int)(mr_rng_uniform(&rng) * 17) - 8);
        for (int64_t i = 0; i < K * ldb; i++) B[i] = (float)((int)(mr_rng_uniform(&rng) * 17) - 8);
        for (int64_t i = 0; i < M * ldc; i++) C[i] = (float)(i % 7);
        for (int pass = 0; pass < 2; pass++) {
            float beta = pass ? 1.0f : 0.0f;
            float *before = malloc(sizeof *before * (size_t)(M * ldc));
            memcpy(before, C, sizeof *before * (size_t)(M * ldc));
            product(M, N, K, A, lda, B, ldb, beta, C, ldc);
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < ldc; j++) {
                    double want = before[i * ldc + j];
                    if (j < N) {
                        want = (double)beta * want;
                        for (int64_t k = 0; k < K; k++)
                            want += (double)A[i * lda + k] * (double)B[k * ldb + j];
                    }
                    cr_assert_eq(C[i * ldc + j], (float)want,
                                 "%lldx%lldx%lld beta %g: C[%lld][%lld] = %g, want %g "
                                 "(columns past N untouched)",
                                 (long long)M, (long long)N, (long long)K, (double)beta,
                                 (long long)i, (long long)j, (double)C[i * ldc + j], want);
                }
            free(before);
        }
        free(A), free(B), free(C);
    }
}

/* bfloat16 keeps 8 significant bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 and goes to
 * the even 1; anything above halfway goes up; so does 1 + 3 * 2^-8, halfway to the even
 * 1 + 2^-6. Both operands round. */
Test(bf16, inputs_round_to_nearest_even) {
    need_bf16();
    const float in[] = {1.0f + 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-12f, 1.0f + 3 * 0x1p-8f,
                        -1.0f - 0x1p-9f};
    const float out[] = {1.0f, 1.0f + 0x1p-7f, 1.0f + 0x1p-6f, -1.0f};
    for (int i = 0; i < 4; i++) {
        float one = 1.0f, c = 0.0f;
        product(1, 1, 1, &in[i], 1, &one, 1, 0.0f, &c, 1);
        cr_assert_eq(c, out[i], "A = %a rounds to %a, got %a", (double)in[i], (double)out[i],
                     (double)c);
        product(1, 1, 1, &one, 1, &in[i], 1, 0.0f, &c, 1);
        cr_assert_eq(c, out[i], "B = %a rounds to %a, got %a", (double)in[i], (double)out[i],
                     (double)c);
    }
}

/* As for sgemm (core/blas.c), a run and its data-parallel twin with fewer threads must compute
 * the same bits: one thread, two, and a call made inside a parallel region. */
Test(bf16, bits_do_not_depend_on_the_thread_count) {
    need_bf16();
    const int64_t M = 500, N = 300, K = 700;
    float *A = malloc(sizeof *A * M * K), *B = malloc(sizeof *B * K * N);
    float *C[3];
    mr_rng rng;
    mr_rng_seed(&rng, 8);
    for (int64_t i = 0; i < M * K; i++) A[i] = mr_rng_normal(&rng);
    for (int64_t i = 0; i < K * N; i++) B[i] = mr_rng_normal(&rng);
    uint32_t *packed = malloc(mr_bf16_packed_words(K, N) * sizeof *packed);
    mr_bf16_pack(K, N, B, N, packed);
    int threads = omp_get_max_threads();
    omp_set_num_threads(2);
    void *work = workspace();
    for (int r = 0; r < 3; r++) {
        C[r] = malloc(sizeof *C[r] * M * N);
        omp_set_num_threads(r == 0 ? 1 : 2);
        if (r == 2) {
#pragma omp parallel num_threads(2)
#pragma omp single
            mr_sgemm_bf16(M, N, K, A, K, packed, 0.0f, C[r], N, work);
        } else {
            mr_sgemm_bf16(M, N, K, A, K, packed, 0.0f, C[r], N, work);
        }
    }
    omp_set_num_threads(threads);
    cr_assert(!memcmp(C[0], C[1], sizeof *C[0] * M * N), "one thread and two differ");
    cr_assert(!memcmp(C[0], C[2], sizeof *C[0] * M * N), "a call inside a parallel region differs");
    /* And the error stays within bfloat16's rounding of both operands (2^-8 of each product's
     * size, relative), so a wrong layout or a dropped block shows. */
    for (int64_t i = 0; i < M; i += 7)
        for (int64_t j = 0; j < N; j += 3) {
            double exact = 0.0, size = 0.0;
            for (int64_t k = 0; k < K; k++) {
                exact += (double)A[i * K + k] * (double)B[k * N + j];
                size += fabs((double)A[i * K + k] * (double)B[k * N + j]);
            }
            cr_assert_leq(fabs((double)C[0][i * N + j] - exact), 0x1p-8 * size + 1e-4,
                          "C[%lld][%lld] = %g, exact %g", (long long)i, (long long)j,
                          (double)C[0][i * N + j], exact);
        }
    for (int r = 0; r < 3; r++) free(C[r]);
    free(A), free(B), free(packed), free(work);
}

/* ---- layers ------------------------------------------------------------------------------ */

typedef enum {
    L_CONV_WINOGRAD,
    L_CONV_IM2COL,
    L_CONV_1X1,
    L_CONV_BN,
    L_CONV_BN_WINOGRAD,
    L_LINEAR,
    L_DECONV,
    L_COUNT
} layer_kind;
static const char *const layer_names[L_COUNT] = {"conv 3x3 (Winograd)",
                                                 "conv 3x3 (im2col)",
                                                 "conv 1x1",
                                                 "conv 3x3 + BN (im2col)",
                                                 "conv 3x3 + BN (Winograd)",
                                                 "dense",
                                                 "deconv 2x2"};

typedef struct {
    mr_tensor *x, *w, *b, *gamma, *beta, *mean, *var;
} layer_params;

static void fill(mr_tensor *t, mr_rng *rng, float scale, float offset) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = offset + scale * mr_rng_normal(rng);
}

static layer_params make_params(mr_ctx *ctx, layer_kind k) {
    mr_rng rng;
    mr_rng_seed(&rng, 40 + (uint64_t)k);
    layer_params p = {0};
    const int64_t cin = 72, cout = 80;
    if (k == L_LINEAR) {
        p.x = mr_tensor_2d(ctx, "x", 30, 400);
        p.w = mr_tensor_2d(ctx, "w", 400, 90);
    } else if (k == L_DECONV) {
        p.x = mr_tensor_4d(ctx, "x", 3, 7, 7, cin);
        p.w = mr_tensor_4d(ctx, "w", 2, 2, cout, cin);
    } else {
        p.x = mr_tensor_4d(ctx, "x", 2, 19, 23, cin);
        int64_t kk = k == L_CONV_1X1 ? 1 : 3;
        p.w = mr_tensor_4d(ctx, "w", kk, kk, cin, cout);
    }
    int64_t nout = p.w->shape[p.w->ndim - (k == L_DECONV ? 2 : 1)];
    p.b = mr_tensor_1d(ctx, "b", nout);
    p.gamma = mr_tensor_1d(ctx, "gamma", nout);
    p.beta = mr_tensor_1d(ctx, "beta", nout);
    p.mean = mr_tensor_1d(ctx, "mean", nout);
    p.var = mr_tensor_1d(ctx, "var", nout);
    cr_assert(p.x && p.w && p.b && p.gamma && p.beta && p.mean && p.var);
    fill(p.x, &rng, 1.0f, 0.0f);
    fill(p.w, &rng, 0.1f, 0.0f);
    fill(p.b, &rng, 0.5f, 0.0f);
    fill(p.gamma, &rng, 0.2f, 1.0f);
    fill(p.beta, &rng, 0.3f, 0.0f);
    fill(p.mean, &rng, 0.3f, 0.0f);
    for (int64_t i = 0; i < p.var->numel; i++) p.var->data[i] = 0.5f + mr_rng_uniform(&rng);
    return p;
}

static mr_tensor *run_layer(mr_ctx *ctx, layer_kind k, const layer_params *p) {
    ctx->conv_algo = k == L_CONV_WINOGRAD || k == L_CONV_BN_WINOGRAD ? MR_CONV_WINOGRAD_F4
                     : k == L_CONV_IM2COL || k == L_CONV_BN          ? MR_CONV_IM2COL
                                                                     : MR_CONV_AUTO;
    switch (k) {
    case L_LINEAR:
        return mr_linear(ctx, p->x, p->w, p->b);
    case L_DECONV:
        return mr_deconv2x2(ctx, p->x, p->w, p->b);
    case L_CONV_BN:
    case L_CONV_BN_WINOGRAD:
        return mr_conv2d_bn(ctx, p->x, p->w, p->b, 1, MR_PAD_SAME, p->gamma, p->beta, p->mean,
                            p->var, 1e-3f);
    default:
        return mr_conv2d(ctx, p->x, p->w, p->b, 1, MR_PAD_SAME);
    }
}

/* Each layer kind in a bf16 context against the same layer in float32: within bfloat16's
 * precision (1% of the output's range; a wrong layout or a missed block is off by its whole
 * size), and a second image gives the same bits through the kernel kept from the first. Winograd
 * layers stay in float32 (core/winograd.c): the same bits, their transformed kernel kept. */
Test(bf16, every_layer_kind_agrees_with_float32_and_reuses_its_packed_kernel) {
    need_bf16();
    for (int k = 0; k < L_COUNT; k++) {
        const bool winograd = k == L_CONV_WINOGRAD || k == L_CONV_BN_WINOGRAD;
        mr_ctx f32, b16;
        cr_assert_eq(mr_ctx_init(&f32, (size_t)64 << 20), MR_OK);
        cr_assert_eq(mr_ctx_init(&b16, (size_t)64 << 20), MR_OK);
        cr_assert_eq(mr_ctx_use_bf16(&b16), MR_OK, "%s", mr_last_error());
        layer_params pf = make_params(&f32, (layer_kind)k), pb = make_params(&b16, (layer_kind)k);
        bool was = mr_no_grad_begin(&b16);
        mr_tensor *want = run_layer(&f32, (layer_kind)k, &pf);
        mr_tensor *first = run_layer(&b16, (layer_kind)k, &pb);
        cr_assert(want && first, "%s: %s", layer_names[k], mr_last_error());
        size_t kept = b16.n_kept;
        cr_assert_eq(kept, 1, "%s: %zu kernels kept", layer_names[k], kept);
        cr_assert_eq(b16.kept[0].kind == MR_KEPT_BF16, !winograd, "%s: kept as %d", layer_names[k],
                     (int)b16.kept[0].kind);
        mr_tensor *again = run_layer(&b16, (layer_kind)k, &pb);
        cr_assert_not_null(again);
        cr_assert_eq(b16.n_kept, kept, "%s: the second image derives nothing", layer_names[k]);
        cr_assert(!memcmp(first->data, again->data, sizeof(float) * (size_t)first->numel),
                  "%s: the kept kernel gives the same bits", layer_names[k]);
        float range = 0.0f, worst = 0.0f;
        for (int64_t i = 0; i < want->numel; i++) range = fmaxf(range, fabsf(want->data[i]));
        for (int64_t i = 0; i < want->numel; i++)
            worst = fmaxf(worst, fabsf(first->data[i] - want->data[i]));
        cr_assert_gt(range, 0.1f);
        if (winograd) {
            cr_assert_eq(worst, 0.0f, "%s: float32 in a bf16 context", layer_names[k]);
        } else {
            cr_assert_leq(worst, 0.01f * range, "%s: off by %g of a range of %g", layer_names[k],
                          (double)worst, (double)range);
            cr_assert_gt(worst, 0.0f, "%s: bfloat16 rounding shows (the float path was not taken)",
                         layer_names[k]);
        }
        mr_no_grad_end(&b16, was);
        mr_ctx_free(&f32);
        mr_ctx_free(&b16);
    }
}

/* Meaningless combinations are refused before any work: scoring prediction files runs no model. */
Test(bf16, evaluate_refuses_it_with_prediction_files) {
    char out[4096];
    cr_assert_eq(
        run_mrcnn("evaluate --bf16 --predictions p --config configs/tiny.json", out, sizeof out), 2,
        "%s", out);
    cr_assert_not_null(strstr(out, "mrcnn evaluate: --bf16 runs a model: it goes with --weights"),
                       "%s", out);
}

/* ---- a trained model --------------------------------------------------------------------- */

static double box_iou(const double *a, const double *b) {
    double iou;
    mr_box_iou_matrix_f64(&iou, a, 1, b, 1);
    return iou;
}

static double mask_iou(const mr_instances *a, int64_t i, const mr_instances *b, int64_t j) {
    const int64_t px = a->mask_h * a->mask_w;
    double dice, iou;
    mr_mask_dice_iou(a->masks + i * px, b->masks + j * px, px, &dice, &iou);
    return iou;
}

/* configs/tiny.json trained 300 steps on a synthetic set (the ONNX parity test trains 80), then
 * predict in float32 and bf16 on its 16 validation and training images. The detections float32
 * is sure of (score 0.9 and up) come first in both, in the same order, class for class, boxes
 * within 1 px, scores within 0.02, mask IoU >= 0.98 (or, where a box edge rounded the other way,
 * within 0.02 of the two boxes' IoU), and bf16 is sure of no others. evaluate --bf16 scores the
 * validation images within 0.02 mAP of float32, and the verbs say which precision ran.
 *
 * Only sure detections are compared one by one: where the model hesitates, bf16's rounding can
 * let another proposal win NMS, and a box a few pixels over scores quite differently (0.35 in
 * float32, 0.75 in bf16 in one run). Whether a model has such a detection depends on its
 * training: all detections held in 2 of 4 runs of 280 to 340 steps, and the sure ones in 11 of
 * 12 runs of 280 to 400 steps (the twelfth moved a sure box by 3 px). The mAP check covers the
 * rest. */
#define SURE_SCORE 0.9f

Test(bf16, a_trained_model_detects_as_in_float32, .timeout = 600) {
    need_bf16();
    const char *dir = temp_dir("bf16-trained");
    char config[600], run[700], weights[1200], cmd[2400], out[16384];
    make_tiny_job(dir, 1, 300, ", \"DETECTION_MIN_CONFIDENCE\": 0.3, \"VALIDATION_STEPS\": 0",
                  config, sizeof config);
    snprintf(run, sizeof run, "%s/run", dir);
    mr_train_options to = {.config_path = config, .out_dir = run, .quiet = true};
    mr_train_result tr;
    cr_assert_eq(mr_train(&to, &tr), MR_OK, "%s", mr_last_error());
    mr_checkpoint_path(weights, sizeof weights, run, 1, 300);

    mr_predictor f32, b16;
    mr_predictor_options o = {.weights = weights, .threshold = (double)NAN};
    cr_assert_eq(mr_predictor_load(&f32, &o), MR_OK, "%s", mr_last_error());
    o.bf16 = true;
    cr_assert_eq(mr_predictor_load(&b16, &o), MR_OK, "%s", mr_last_error());
    snprintf(cmd, sizeof cmd, "ls '%s'/data/val/*.png '%s'/data/train/*.png", dir, dir);
    cr_assert_eq(run_shell(cmd, out, sizeof out), 0, "%s", out);
    int images = 0;
    int64_t compared = 0, box_moved = 0;
    for (char *path = strtok(out, "\n"); path; path = strtok(NULL, "\n"), images++) {
        mr_instances a, b;
        cr_assert_eq(mr_predictor_detect(&f32, path, &a, NULL), MR_OK, "%s", mr_last_error());
        cr_assert_eq(mr_predictor_detect(&b16, path, &b, NULL), MR_OK, "%s", mr_last_error());
        int64_t sure = 0; /* detections come best first */
        while (sure < a.n && a.scores[sure] >= SURE_SCORE) sure++;
        cr_assert_geq(b.n, sure, "%s: float32 is sure of %lld detections, bf16 finds %lld", path,
                      (long long)sure, (long long)b.n);
        cr_assert(b.n == sure ||
                          b.scores[sure]<
                              SURE_SCORE + 0.02f,
                              "%s: bf16 is sure of detection %lld (score %.3f), float32 is not",
                              path, (long long)sure, b.n>
                              sure
                      ? (double)b.scores[sure]
                      : 0.0);
        for (int64_t i = 0; i < sure; i++) {
            cr_assert_eq(a.class_ids[i], b.class_ids[i], "%s: detection %lld's class", path,
                         (long long)i);
            cr_assert_float_eq(a.scores[i], b.scores[i], 0.02f, "%s: detection %lld's score", path,
                               (long long)i);
            double box = 0.0, iou = mask_iou(&a, i, &b, i);
            for (int c = 0; c < 4; c++)
                box = fmax(box, fabs(a.boxes[i * 4 + c] - b.boxes[i * 4 + c]));
            cr_assert_leq(box, 1.0, "%s: detection %lld's box moved %g px", path, (long long)i,
                          box);
            /* A mask is resampled into its box, so a box edge that rounds the other way moves the
             * mask with it: then its IoU is held to the boxes' own. */
            double floor_iou =
                box == 0.0 ? 0.98 : fmin(0.98, box_iou(&a.boxes[i * 4], &b.boxes[i * 4]) - 0.02);
            cr_assert_geq(
                iou, floor_iou,
                "%s: detection %lld's mask IoU %.4f (box moved %g px, box IoU %.4f, score %.3f)",
                path, (long long)i, iou, box, box_iou(&a.boxes[i * 4], &b.boxes[i * 4]),
                (double)a.scores[i]);
            box_moved += box > 0.0;
        }
        compared += sure;
        mr_instances_free(&a);
        mr_instances_free(&b);
    }
    mr_predictor_free(&f32);
    mr_predictor_free(&b16);
    cr_assert_eq(images, 16);
    /* 14 or 15 sure detections in every run measured, and 0 to 2 of them with an edge moved. */
    cr_assert_geq(compared, 12, "the trained model is sure of lesions in only %lld detections",
                  (long long)compared);
    cr_assert_leq(box_moved, compared / 5, "a box edge rounds the other way in %lld of %lld",
                  (long long)box_moved, (long long)compared);

    double map[2];
    for (int k = 0; k < 2; k++) {
        mr_eval_request r = {
            .weights = weights, .part = MR_DATA_VAL, .threshold = -1.0, .bf16 = k == 1};
        mr_eval_run e;
        cr_assert_eq(mr_evaluate_run(&r, &e), MR_OK, "%s", mr_last_error());
        map[k] = e.e.mask.mean_ap50;
        mr_eval_run_free(&e);
    }
    cr_assert_float_eq(map[1], map[0], 0.02, "mask mAP@0.5 %.4f in bf16, %.4f in float32", map[1],
                       map[0]);

    snprintf(cmd, sizeof cmd, "predict --bf16 --weights '%s' '%s'/data/val --out '%s/pred'",
             weights, dir, dir);
    cr_assert_eq(run_mrcnn(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "products in bf16"), "predict says it runs in bf16: %s", out);
    snprintf(cmd, sizeof cmd, "evaluate --bf16 --quiet --weights '%s' --limit 2", weights);
    cr_assert_eq(run_mrcnn(cmd, out, sizeof out), 0, "%s", out);
}

/* `mrcnn bench`'s measurements (train/bench.h): the sgemm ceiling, the ResNet-50 + FPN
 * convolution table, whole-model training and inference steps beside torchvision and the ONNX
 * export's inference in ONNX Runtime, and the BENCHMARKS.md entry. Timing is measured here and
 * never asserted in a test. */
#include "bench.h"

#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/blas.h"
#include "../core/ops.h"
#include "../core/profile.h"
#include "../core/rng.h"
#include "../core/runtime.h"
#include "../layers/inference.h"
#include "../losses/losses.h"
#include "../core/file.h"
#include "../data/synth.h"
#include "config.h"
#include "data_source.h"
#include "dataset.h"
#include "export.h"
#include "export_onnx.h"
#include "checkpoint.h"
#include "metrics.h"
#include "predictor.h"
#include "sgd.h"
#include "trainer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

enum { CEILING_N = 2048 };

/* GFLOPS of a CEILING_N^3 sgemm in a, b, c (CEILING_N^2 floats each), the best of `repeats` runs
 * after a warm-up: a ceiling is what the machine can do, and a busy machine only ever slows a run
 * down. */
static double sgemm_ceiling_in(float *a, float *b, float *c, int repeats) {
    const int64_t n = CEILING_N;
    for (int64_t i = 0; i < n * n; i++) a[i] = b[i] = 1.0f / (float)(1 + i % 7);
    double best = INFINITY;
    mr_sgemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        mr_sgemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        best = fmin(best, now() - t0);
    }
    return 2.0 * (double)(n * n * n) / best * 1e-9;
}

static double sgemm_ceiling(int repeats) {
    const size_t size = sizeof(float) * CEILING_N * CEILING_N;
    float *a = malloc(size), *b = malloc(size), *c = malloc(size);
    double gflops = a && b && c ? sgemm_ceiling_in(a, b, c, repeats) : (double)NAN;
    free(a);
    free(b);
    free(c);
    return gflops;
}

typedef struct {
    const char *name;
    int64_t h, w, cin, cout, k;
    int stride, pad;
    int count; /* how many layers of ResNet-50 + FPN share the shape */
} conv_shape;

/* The distinct convolution shapes of ResNet-50 + FPN + RPN at 512x512 input. */
static const conv_shape shapes[] = {
    {"conv1 7x7/2", 512, 512, 3, 64, 7, 2, 3, 1},
    {"res2 1x1 64->64", 128, 128, 64, 64, 1, 1, 0, 1},
    {"res2 3x3 64", 128, 128, 64, 64, 3, 1, MR_PAD_SAME, 3},
    {"res2 1x1 64->256", 128, 128, 64, 256, 1, 1, 0, 4},
    {"res2 1x1 256->64", 128, 128, 256, 64, 1, 1, 0, 2},
    {"res3a 1x1/2 256->128", 128, 128, 256, 128, 1, 2, 0, 1},
    {"res3 3x3 128", 64, 64, 128, 128, 3, 1, MR_PAD_SAME, 4},
    {"res3 1x1 128->512", 64, 64, 128, 512, 1, 1, 0, 4},
    {"res3 1x1 512->128", 64, 64, 512, 128, 1, 1, 0, 3},
    {"res4 3x3 256", 32, 32, 256, 256, 3, 1, MR_PAD_SAME, 6},
    {"res4 1x1 256->1024", 32, 32, 256, 1024, 1, 1, 0, 6},
    {"res4 1x1 1024->256", 32, 32, 1024, 256, 1, 1, 0, 5},
    {"res5 3x3 512", 16, 16, 512, 512, 3, 1, MR_PAD_SAME, 3},
    {"res5 1x1 512->2048", 16, 16, 512, 2048, 1, 1, 0, 3},
    {"res5 1x1 2048->512", 16, 16, 2048, 512, 1, 1, 0, 2},
    {"fpn_p2 3x3 256", 128, 128, 256, 256, 3, 1, MR_PAD_SAME, 1},
    {"rpn_conv 3x3 256->512 P2", 128, 128, 256, 512, 3, 1, MR_PAD_SAME, 1},
};

/* Prints the conv table to `out`; returns the FLOP-weighted efficiency against `ceiling`, or NAN
 * when memory ran out. */
static double conv_table(int repeats, double ceiling, FILE *out) {
    fprintf(out, "%-26s %5s %9s %9s %9s %9s %6s\n", "conv (batch 1, 512x512 input)", "count",
            "fwd ms", "fwd GF/s", "bwd ms", "bwd GF/s", "eff");
    mr_ctx ctx;
    if (mr_ctx_init(&ctx, (size_t)1 << 30) != MR_OK) return NAN;
    mr_rng rng;
    mr_rng_seed(&rng, 7);
    double total_flops = 0.0, total_time = 0.0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const conv_shape *c = &shapes[s];
        double fwd[16], bwd[16], flops = 0.0;
        for (int r = 0; r < repeats; r++) {
            mr_ctx_reset(&ctx);
            mr_tensor *x = mr_tensor_4d(&ctx, "x", 1, c->h, c->w, c->cin);
            mr_tensor *w = mr_tensor_4d(&ctx, "w", c->k, c->k, c->cin, c->cout);
            mr_tensor *b = mr_tensor_1d(&ctx, "b", c->cout);
            if (!x || !w || !b) return NAN;
            for (int64_t i = 0; i < x->numel; i++) x->data[i] = mr_rng_uniform(&rng) - 0.5f;
            for (int64_t i = 0; i < w->numel; i++) w->data[i] = 0.01f * mr_rng_normal(&rng);
            memset(b->data, 0, sizeof(float) * (size_t)c->cout);
            x->requires_grad = w->requires_grad = b->requires_grad = true;
            double t0 = now();
            mr_tensor *y = mr_conv2d(&ctx, x, w, b, c->stride, c->pad);
            double t1 = now();
            if (!y) return NAN;
            float *seed = mr_alloc(&ctx, sizeof(float) * (size_t)y->numel, "bench");
            if (!seed) return NAN;
            for (int64_t i = 0; i < y->numel; i++) seed[i] = 1e-3f;
            double t2 = now();
            if (mr_backward_seeded(&ctx, y, seed) != MR_OK) return NAN;
            double t3 = now();
            fwd[r] = t1 - t0;
            bwd[r] = t3 - t2;
            flops = 2.0 * (double)(y->numel / c->cout) * (double)(c->k * c->k * c->cin) *
                    (double)c->cout;
        }
        double f = median(fwd, (int)repeats), bk = median(bwd, (int)repeats);
        double gf = flops / f * 1e-9, gb = 2.0 * flops / bk * 1e-9;
        total_flops += (double)c->count * 3.0 * flops;
        total_time += (double)c->count * (f + bk);
        fprintf(out, "%-26s %5d %9.2f %9.1f %9.2f %9.1f %5.0f%%\n", c->name, c->count, 1e3 * f, gf,
                1e3 * bk, gb, 100.0 * (3.0 * flops / (f + bk)) * 1e-9 / ceiling);
    }
    double eff = total_flops / total_time * 1e-9 / ceiling;
    fprintf(out,
            "\nall ResNet-50/FPN conv shapes (weighted by count): %.1f GFLOPS fwd+bwd, %.0f%% of "
            "the sgemm ceiling\n",
            total_flops / total_time * 1e-9, 100.0 * eff);
    fprintf(out,
            "(GF/s count a direct convolution's FLOPs; 3x3 stride-1 layers with enough channels "
            "and pixels run\n Winograd F(4x4,3x3) or F(6x6,3x3), 4x or 5.1x fewer multiplies, so "
            "they can pass the ceiling)\n");
    mr_ctx_free(&ctx);
    return eff;
}

/* ---- whole model -------------------------------------------------------------------------- */

/* The benchmark's model: ResNet-`depth` at side x side, 3 classes, Glorot weights of seed 1. */
static mr_status bench_model_init(mr_config *c, mr_model *m, int depth, int side) {
    mr_config_defaults(c);
    snprintf(c->net.backbone_name, sizeof c->net.backbone_name, "resnet%d", depth);
    c->net.num_classes = 3;
    c->net.image_min_dim = c->net.image_max_dim = side;
    /* As torchvision's heads do in training: the ground-truth boxes join the proposals, so both
     * train the mask head on positive ROIs even with an untrained RPN. */
    c->net.proposals_include_gt = true;
    MR_TRY(mr_model_init(m, &c->net));
    mr_init_weights(m, MR_INIT_GLOROT, 1);
    return MR_OK;
}

static void profile_add(mr_profile *sum, const mr_profile *p) {
    for (int g = 0; g < MR_GROUP_COUNT; g++)
        for (int k = 0; k < 2; k++) {
            sum->seconds[g][k] += p->seconds[g][k];
            sum->flops[g][k] += p->flops[g][k];
            sum->product_seconds[g][k] += p->product_seconds[g][k];
        }
}

static double profile_flops(const mr_profile *p) {
    double f = 0.0;
    for (int g = 0; g < MR_GROUP_COUNT; g++) f += p->flops[g][0] + p->flops[g][1];
    return f;
}

static void profile_mean(const mr_profile *sum, int runs, mr_profile *mean) {
    for (int g = 0; g < MR_GROUP_COUNT; g++)
        for (int k = 0; k < 2; k++) {
            mean->seconds[g][k] = sum->seconds[g][k] / runs;
            mean->flops[g][k] = sum->flops[g][k] / runs;
            mean->product_seconds[g][k] = sum->product_seconds[g][k] / runs;
        }
}

/* Median inference over `repeats` runs after a warm-up, keeping detections of `min_confidence`
 * and up (-1: the config's); profiled into `prof` when given; the last run's detections go to
 * `keep` when given (free with mr_instances_free). False when a run fails. */
static bool time_inference(mr_ctx *ctx, const mr_model *m, int side, int repeats,
                           float min_confidence, mr_profile *prof, double *median_s,
                           int *detections, mr_instances *keep) {
    double t[16];
    for (int r = 0; r <= repeats; r++) {
        if (r == 1 && prof) mr_profile_begin(prof);
        double t0 = now();
        mr_profile_enter(MR_GROUP_DATA);
        mr_ctx_reset(ctx);
        mr_tensor *img = mr_tensor_4d(ctx, "images", 1, side, side, 3);
        if (!img) return false;
        for (int64_t i = 0; i < img->numel; i++) img->data[i] = (float)((i * 7) % 255) - 120.0f;
        mr_image_geometry g = {side, side, side, side, {0, 0, (float)side, (float)side}};
        mr_instances d;
        if (mr_model_detect(ctx, m, img, &g, min_confidence, &d) != MR_OK) return false;
        *detections = (int)d.n;
        if (keep && r == repeats)
            *keep = d;
        else
            mr_instances_free(&d);
        if (r > 0) t[r - 1] = now() - t0;
    }
    if (prof) mr_profile_end();
    *median_s = median(t, repeats);
    return true;
}

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

/* What a context keeps of the kernels (mr_ctx_keep_kernels), in MB. */
static double kept_mb(const mr_ctx *ctx) {
    double mb = 0.0;
    for (size_t i = 0; i < ctx->n_kept; i++) mb += (double)ctx->kept[i].bytes / 1e6;
    return mb;
}

/* The bf16 inferences of mr_bench_model, in a context of their own (weights fixed from now), and
 * each of float32's detections (`f32`, every one kept) against its best bf16 partner: the same
 * class and the highest box IoU. */
static void bench_bf16(mr_model *m, int side, int repeats, const mr_instances *f32,
                       mr_bench_times *res) {
    mr_ctx ctx;
    if (mr_ctx_init(&ctx, (size_t)side * side * 8192) != MR_OK) return;
    const mr_detection_candidates candidates = m->cfg.detection_candidates;
    int n;
    mr_instances b16 = {0};
    bool ok = mr_ctx_use_bf16(&ctx) == MR_OK &&
              time_inference(&ctx, m, side, repeats, -1.0f, NULL, &res->infer_bf16_s, &n, NULL);
    m->cfg.detection_candidates = MR_DETECT_EVERY_CLASS;
    ok = ok && time_inference(&ctx, m, side, repeats, 0.0f, NULL, &res->infer_all_bf16_s, &n, &b16);
    m->cfg.detection_candidates = candidates;
    res->bf16_kept_mb = kept_mb(&ctx);
    mr_ctx_free(&ctx);
    if (!ok) {
        res->infer_bf16_s = res->infer_all_bf16_s = 0.0;
        return;
    }
    res->bf16_compared = (int)f32->n;
    for (int64_t i = 0; i < f32->n; i++) {
        int64_t best = -1;
        for (int64_t j = 0; j < b16.n; j++)
            if (b16.class_ids[j] == f32->class_ids[i] &&
                (best < 0 || box_iou(&f32->boxes[4 * i], &b16.boxes[4 * j]) >
                                 box_iou(&f32->boxes[4 * i], &b16.boxes[4 * best])))
                best = j;
        if (best < 0) continue;
        double box_px = 0.0;
        for (int c = 0; c < 4; c++)
            box_px = fmax(box_px, fabs(f32->boxes[4 * i + c] - b16.boxes[4 * best + c]));
        res->bf16_held += box_px <= 1.0 && mask_iou(f32, i, &b16, best) >= 0.98;
    }
    mr_instances_free(&b16);
}

/* mr_bench_model: one configuration, in this process. */
void mr_bench_model(int depth, int side, int repeats, mr_bench_times *res) {
    mr_config c;
    mr_model m;
    if (bench_model_init(&c, &m, depth, side) != MR_OK) return;
    mr_model_set_trainable(&m, "3+", NULL);
    mr_ctx ctx;
    if (mr_ctx_init(&ctx, (size_t)side * side * 8192) != MR_OK) return;
    double s = side / 512.0;
    double box[8] = {100 * s, 120 * s, 220 * s, 260 * s, 300 * s, 300 * s, 400 * s, 420 * s};
    int64_t cls[2] = {1, 2};
    static uint8_t mini[2 * 56 * 56];
    memset(mini, 1, sizeof mini);
    mr_instances gt = {.n = 2,
                       .boxes = box,
                       .class_ids = cls,
                       .masks = mini,
                       .mask_h = 56,
                       .mask_w = 56,
                       .image_h = side,
                       .image_w = side};
    mr_sgd opt = {0.001f, 0.9f, 1e-4f, 5.0f};
    mr_rng rng;
    mr_rng_seed(&rng, 1);
    double train[16], ceiling[16], floor_ratio[16];
    bool grads_zero = false; /* the last update consumed the gradients (mr_sgd_step) */
    /* The timed runs after the warm-up are profiled by layer group (core/profile.h): a clock
     * read at each group change and tape node, far below the noise of the step. */
    mr_profile prof = {0}, step_prof;
    for (int r = 0; r <= repeats; r++) {
        if (r > 0) {
            /* The machine's ceiling just before each timed step, for the step's distance from
             * its floor: on a shared machine the peak moves by half within one bench, so a
             * ceiling measured minutes away weighs the host as much as the code. Measured in
             * the arena, whose pages the steps have made resident already, so that the peak RSS
             * stays the step's own. */
            mr_ctx_reset(&ctx);
            const size_t size = sizeof(float) * CEILING_N * CEILING_N;
            float *a = mr_alloc(&ctx, size, "ceiling"), *b = mr_alloc(&ctx, size, "ceiling"),
                  *cc = mr_alloc(&ctx, size, "ceiling");
            if (!a || !b || !cc) return;
            ceiling[r - 1] = sgemm_ceiling_in(a, b, cc, 2);
            mr_profile_begin(&step_prof);
        }
        double t0 = now();
        mr_profile_enter(MR_GROUP_DATA);
        mr_ctx_reset(&ctx);
        mr_tensor *img = mr_tensor_4d(&ctx, "images", 1, side, side, 3);
        if (!img) return;
        for (int64_t i = 0; i < img->numel; i++) img->data[i] = (float)((i * 7) % 255) - 120.0f;
        mr_loss_values v;
        mr_tensor *loss = mr_training_losses(&ctx, &m, img, &gt, NULL, &rng, &v);
        mr_profile_enter(MR_GROUP_OPTIMIZER);
        if (!grads_zero) mr_params_zero_grads(&m.params); /* as the trainer does */
        if (!loss || mr_backward(&ctx, loss) != MR_OK) return;
        mr_profile_enter(MR_GROUP_OPTIMIZER);
        mr_sgd_report rep;
        mr_sgd_step(&m.params, &opt, &rep);
        grads_zero = true;
        if (r == 0) continue;
        train[r - 1] = now() - t0;
        mr_profile_end();
        profile_add(&prof, &step_prof);
        floor_ratio[r - 1] = train[r - 1] / (profile_flops(&step_prof) / (ceiling[r - 1] * 1e9));
    }
    profile_mean(&prof, repeats, &res->train_prof);
    res->step_ceiling = median(ceiling, repeats);
    res->step_floor_ratio = median(floor_ratio, repeats);
    /* Peak memory in training: before inference, whose masks (up to 100 at full image size with
     * every detection kept) would set a peak of their own. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    res->rss_mb = (double)ru.ru_maxrss / 1024.0;
    /* Inference as predict runs it (train/predictor.c): batch norms folded into their
     * convolutions, in a context of its own that keeps each layer's derived kernels. */
    mr_ctx_free(&ctx);
    if (mr_fold_batchnorms(&m, c.net.bn_eps, NULL, NULL) != MR_OK ||
        mr_ctx_init(&ctx, (size_t)side * side * 8192) != MR_OK)
        return;
    mr_ctx_keep_kernels(&ctx);
    /* Inference as configured (Matterport keeps each ROI's best class at confidence 0.7 and up),
     * profiled; then with every class of every ROI a candidate at any confidence, up to
     * DETECTION_MAX_INSTANCES, which is what torchvision's untrained model makes (its score
     * threshold 0.05 passes every class): the mask head's equal work. */
    if (!time_inference(&ctx, &m, side, repeats, -1.0f, &prof, &res->infer_s, &res->detections,
                        NULL))
        return;
    profile_mean(&prof, repeats, &res->infer_prof);
    const mr_detection_candidates candidates = m.cfg.detection_candidates;
    m.cfg.detection_candidates = MR_DETECT_EVERY_CLASS;
    mr_instances all;
    if (!time_inference(&ctx, &m, side, repeats, 0.0f, NULL, &res->infer_all_s,
                        &res->detections_all, &all))
        return;
    res->train_s = median(train, repeats);
    res->ok = 1;
    res->infer_kept_mb = kept_mb(&ctx);
    mr_ctx_free(&ctx);
    m.cfg.detection_candidates = candidates;
    if (mr_bf16_supported()) bench_bf16(&m, side, repeats, &all, res);
    mr_instances_free(&all);
    mr_model_free(&m);
}

void mr_bench_print_model(const mr_bench_times *t, FILE *out) {
    fprintf(out, "model train_s=%.4f infer_s=%.4f rss_mb=%.1f\n", t->train_s, t->infer_s,
            t->rss_mb);
    fprintf(out, "detections %d infer_all_s=%.4f all %d kept_mb=%.1f\n", t->detections,
            t->infer_all_s, t->detections_all, t->infer_kept_mb);
    fprintf(out, "bf16 infer_s=%.4f infer_all_s=%.4f held %d of %d kept_mb=%.1f\n", t->infer_bf16_s,
            t->infer_all_bf16_s, t->bf16_held, t->bf16_compared, t->bf16_kept_mb);
    fprintf(out, "floor step_ceiling=%.2f step_floor_ratio=%.5f\n", t->step_ceiling,
            t->step_floor_ratio);
    for (int k = 0; k < 2; k++) {
        const mr_profile *p = k ? &t->infer_prof : &t->train_prof;
        for (int g = 0; g < MR_GROUP_COUNT; g++)
            fprintf(out, "group %s %d %.6f %.6f %.6g %.6g %.6f %.6f\n", k ? "infer" : "train", g,
                    p->seconds[g][0], p->seconds[g][1], p->flops[g][0], p->flops[g][1],
                    p->product_seconds[g][0], p->product_seconds[g][1]);
    }
}

void mr_bench_read_model_line(const char *line, mr_bench_times *t) {
    char kind[8];
    int g;
    double s0, s1, f0, f1, p0, p1;
    if (sscanf(line, "model train_s=%lf infer_s=%lf rss_mb=%lf", &t->train_s, &t->infer_s,
               &t->rss_mb) == 3)
        t->ok = 1;
    else if (sscanf(line, "detections %d infer_all_s=%lf all %d kept_mb=%lf", &t->detections,
                    &t->infer_all_s, &t->detections_all, &t->infer_kept_mb) == 4)
        ;
    else if (sscanf(line, "bf16 infer_s=%lf infer_all_s=%lf held %d of %d kept_mb=%lf",
                    &t->infer_bf16_s, &t->infer_all_bf16_s, &t->bf16_held, &t->bf16_compared,
                    &t->bf16_kept_mb) == 5)
        ;
    else if (sscanf(line, "floor step_ceiling=%lf step_floor_ratio=%lf", &t->step_ceiling,
                    &t->step_floor_ratio) == 2)
        ;
    else if (sscanf(line, "group %7s %d %lf %lf %lf %lf %lf %lf", kind, &g, &s0, &s1, &f0, &f1, &p0,
                    &p1) == 8 &&
             g >= 0 && g < MR_GROUP_COUNT) {
        mr_profile *p = strcmp(kind, "infer") ? &t->train_prof : &t->infer_prof;
        p->seconds[g][0] = s0;
        p->seconds[g][1] = s1;
        p->flops[g][0] = f0;
        p->flops[g][1] = f1;
        p->product_seconds[g][0] = p0;
        p->product_seconds[g][1] = p1;
    }
}

/* How tools/bench_torchvision.py builds torchvision's model: as torchvision's defaults have it,
 * sampling the heads' ROIs as Matterport does, or that and Matterport's RPN as well (its shared
 * convolution 512 channels wide, where torchvision's keeps the FPN's 256). */
typedef enum { TV_DEFAULTS, TV_MATTERPORT_SAMPLING, TV_MATTERPORT_NETWORK } tv_recipe;

/* mr_bench_model's measurements made by tools/bench_torchvision.py (python3-torch), when it can
 * run: in the user's environment, or with its OpenBLAS on the kernel `coretype`. */
static mr_bench_times torchvision(int side, int repeats, tv_recipe recipe, const char *coretype) {
    mr_bench_times t = {0};
    if (access("tools/bench_torchvision.py", R_OK) != 0) return t;
    char cmd[320], pin[64] = "";
    if (coretype) snprintf(pin, sizeof pin, "OPENBLAS_CORETYPE=%s ", coretype);
    static const char *const recipe_arg[] = {"", " matterport", " matterport-network"};
    snprintf(cmd, sizeof cmd, "%s/usr/bin/python3 tools/bench_torchvision.py %d %d%s 2>/dev/null",
             pin, side, repeats, recipe_arg[recipe]);
    FILE *p = popen(cmd, "r");
    if (!p) return t;
    char line[256] = "";
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "train_s=%lf infer_s=%lf rss_mb=%lf", &t.train_s, &t.infer_s, &t.rss_mb) ==
            3)
            t.ok = 1;
        else if (sscanf(line, "detections=%d", &t.detections) == 1)
            ;
        else if (!strncmp(line, "kernel=", 7))
            snprintf(t.kernel, sizeof t.kernel, "%.*s", (int)strcspn(line + 7, "\n"), line + 7);
    pclose(p);
    return t;
}

/* The same model (weights as mr_bench_model's) exported to ONNX and run for inference by
 * tools/bench_onnxruntime.mjs in ONNX Runtime (onnxruntime-node in ort_dir), 2 threads: its
 * median inference and node's peak RSS (train_s stays 0); not ok when it cannot run. */
static mr_bench_times onnxruntime(int depth, int side, int repeats, const char *ort_dir) {
    mr_bench_times t = {0};
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/package.json", ort_dir);
    if (access(probe, R_OK) != 0 || access("tools/bench_onnxruntime.mjs", R_OK) != 0) return t;
    mr_config c;
    mr_model m;
    if (bench_model_init(&c, &m, depth, side) != MR_OK) return t;
    uint8_t *bytes = NULL;
    size_t len = 0;
    char path[64];
    snprintf(path, sizeof path, "/tmp/mrcnn-bench-%d-r%d-%d.onnx", (int)getpid(), depth, side);
    mr_status st = mr_fold_batchnorms(&m, c.net.bn_eps, NULL, NULL);
    if (st == MR_OK) st = mr_onnx_build(&c, &m, false, &bytes, &len, NULL);
    mr_model_free(&m);
    if (st == MR_OK) st = mr_write_file_atomic(path, bytes, len, 0644);
    free(bytes);
    if (st != MR_OK) return t;
    char cmd[2400];
    snprintf(cmd, sizeof cmd,
             "MRCNN_ONNXRUNTIME='%s' node tools/bench_onnxruntime.mjs %s %d 3 %d 2>/dev/null",
             ort_dir, path, side, repeats);
    FILE *p = popen(cmd, "r");
    char line[256] = "";
    while (p && fgets(line, sizeof line, p))
        if (sscanf(line, "infer_s=%lf rss_mb=%lf", &t.infer_s, &t.rss_mb) == 2) t.ok = 1;
    if (p) pclose(p);
    remove(path);
    return t;
}

/* ---- the data pipeline -------------------------------------------------------------------- */

/* The config of the data check: 128 px grey images as the synthetic set, flips on. */
static mr_status data_config(const char *dir, mr_config *c) {
    char text[2600];
    snprintf(text, sizeof text,
             "{\"NAME\": \"bench-data\", \"BACKBONE\": \"resnet50\", \"CLASS_NAMES\": [\"BG\", "
             "\"benign\", \"malignant\"], \"CLASS_ATTRIBUTE\": \"class\", \"IMAGE_CHANNEL_COUNT\": "
             "1, \"MEAN_PIXEL\": [100.0], \"PIXEL_STD\": [58.0], \"IMAGE_NORMALIZATION\": "
             "\"mean_std\", \"IMAGE_MIN_DIM\": 128, \"IMAGE_MAX_DIM\": 128, \"MINI_MASK_SHAPE\": "
             "[28, 28], \"AUGMENT\": {\"FLIP\": 0.5}, \"DATASET\": {\"TRAIN\": \"%s/train\", "
             "\"VAL\": \"%s/val\"}}",
             dir, dir);
    mr_config_defaults(c);
    return mr_config_parse(text, "the data check's config", c);
}

/* Resident memory now, in MB, after handing freed heap back to the system (so the figure is what
 * is held, not what the allocator kept). */
static double resident_mb(void) {
    malloc_trim(0);
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    if (f) fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

void mr_bench_data(const char *dir, mr_bench_data_times *res) {
    memset(res, 0, sizeof *res);
    mr_config c;
    if (data_config(dir, &c) != MR_OK) return;
    double t0 = now();
    mr_data_check check;
    mr_status st = mr_data_check_load(&c, NULL, &check);
    res->check_s = now() - t0;
    mr_data_check_free(&check);
    if (st != MR_OK) return;
    mr_dataset *train = NULL;
    if (mr_data_open(&c, &train, NULL, NULL) != MR_OK) return;
    int64_t n = mr_dataset_size(train);
    res->held_mb = resident_mb();
    double settled = res->held_mb;
    t0 = now();
    st = mr_dataset_start(train, 0, 0, (int)n);
    for (int64_t i = 0; i < n && st == MR_OK; i++) {
        mr_batch *b = NULL;
        st = mr_dataset_next(train, &b);
        mr_dataset_release(train, b);
        if (i == 99) settled = resident_mb(); /* the prefetcher's buffers are all made by now */
    }
    res->pipeline_s = now() - t0;
    res->epoch_growth_mb = resident_mb() - settled;
    mr_dataset_close(train);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    res->images = n;
    res->rss_mb = (double)ru.ru_maxrss / 1024.0;
    res->ok = st == MR_OK;
}

void mr_bench_print_data(const mr_bench_data_times *t, FILE *out) {
    fprintf(out,
            "data images=%lld check_s=%.4f pipeline_s=%.4f rss_mb=%.1f held_mb=%.1f "
            "growth_mb=%.2f\n",
            (long long)t->images, t->check_s, t->pipeline_s, t->rss_mb, t->held_mb,
            t->epoch_growth_mb);
}

void mr_bench_read_data_line(const char *line, mr_bench_data_times *t) {
    long long n = 0;
    if (sscanf(line,
               "data images=%lld check_s=%lf pipeline_s=%lf rss_mb=%lf held_mb=%lf growth_mb=%lf",
               &n, &t->check_s, &t->pipeline_s, &t->rss_mb, &t->held_mb,
               &t->epoch_growth_mb) == 6) {
        t->images = n;
        t->ok = 1;
    }
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* check-data and one epoch of the prefetcher over synthetic sets of 1k, 5k and 10k images, each
 * measured in a fresh process: time per image and peak RSS must not grow with the set. */
static void data_table(const mr_bench_options *o, FILE *out, FILE *md) {
    char root[] = "/tmp/mrcnn-bench-data-XXXXXX";
    if (!mkdtemp(root)) return;
    static const int sizes[] = {1000, 5000, 10000};
    fprintf(out,
            "\ndata pipeline over synthetic sets (128 px, flips; each in a fresh process: "
            "check-data, then one epoch\nthrough the prefetcher, batch 1; held: resident once "
            "the set is open; growth: over the epoch\nafter its first 100 images; peak: the "
            "process's)\n%8s %14s %14s %10s %10s %10s\n",
            "images", "check ms/img", "epoch ms/img", "held MB", "growth MB", "peak MB");
    if (md)
        fprintf(
            md,
            "\nData pipeline over synthetic sets (128 px, flips; each in a fresh process: "
            "check-data, then one epoch through the prefetcher; held: resident once the set "
            "is open; growth: over the epoch after its first 100 images; peak: the "
            "process's):\n\n| images | check-data ms/image | "
            "epoch ms/image | held MB | growth MB | peak RSS MB |\n|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char dir[96];
        snprintf(dir, sizeof dir, "%s/n%d", root, sizes[i]);
        mr_synth_options so;
        mr_synth_defaults(&so);
        so.out_dir = dir;
        so.n_images = sizes[i];
        so.size = 64;
        so.val_fraction = 0.1;
        if (mr_synth_write(&so) != MR_OK) break;
        mr_bench_data_times d = o->isolated_data(o->user, dir);
        if (!d.ok) {
            fprintf(out, "%8d (failed)\n", sizes[i]);
            continue;
        }
        double per_check = 1e3 * d.check_s / sizes[i], per_image = 1e3 * d.pipeline_s / d.images;
        fprintf(out, "%8d %14.3f %14.3f %10.1f %10.2f %10.0f\n", sizes[i], per_check, per_image,
                d.held_mb, d.epoch_growth_mb, d.rss_mb);
        if (md)
            fprintf(md, "| %d | %.3f | %.3f | %.1f | %.2f | %.0f |\n", sizes[i], per_check,
                    per_image, d.held_mb, d.epoch_growth_mb, d.rss_mb);
    }
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The real training loop (mr_train) on 512 px synthetic images for a few steps: how long each
 * step waited for the prefetcher (log.jsonl's data_wait_seconds), against its compute. */
/* Whether bf16's detections hold where a model has learnt something: the bench's ResNet-50 has
 * seeded weights, whose RPN saturates to scores of exactly 1.0 and orders those ties by the last
 * bit, so its proposals (and detections) differ with any change of rounding. configs/tiny.json
 * trained 300 steps on 16 synthetic 128 px images instead; predict in float32 and bf16 on all 16,
 * detections compared in order: class, box, mask IoU, score. */
static void bf16_trained_check(FILE *out, FILE *md) {
    char root[] = "/tmp/mrcnn-bench-bf16-XXXXXX";
    char *tiny = NULL;
    if (!mr_bf16_supported() || !mkdtemp(root)) return;
    char data[96], config[96], run[96], weights[160], line[600] = "";
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(config, sizeof config, "%s/tiny.json", root);
    snprintf(run, sizeof run, "%s/run", root);
    enum { STEPS = 300, IMAGES = 16 };
    mr_synth_options so;
    mr_synth_defaults(&so);
    so.out_dir = data;
    so.n_images = IMAGES;
    so.size = 128;
    so.seed = 21;
    so.val_fraction = 0.25;
    mr_train_result tr;
    mr_train_options to = {.config_path = config, .out_dir = run, .quiet = true};
    mr_status st = mr_read_file("configs/tiny.json", "config", 1 << 16, &tiny, NULL);
    char *end = st == MR_OK ? strrchr(tiny, '}') : NULL;
    if (st == MR_OK && !end) st = mr_fail(MR_ERR_CONFIG, "configs/tiny.json: not a JSON object");
    if (st == MR_OK) {
        *end = '\0';
        char *text = NULL;
        int len = asprintf(&text,
                           "%s, \"DATASET\": {\"TRAIN\": \"%s/train\", \"VAL\": \"%s/val\"}, "
                           "\"EPOCHS\": 1, \"STEPS_PER_EPOCH\": %d, \"VALIDATION_STEPS\": 0, "
                           "\"DETECTION_MIN_CONFIDENCE\": 0.3}",
                           tiny, data, data, STEPS);
        st = len < 0 ? mr_fail(MR_ERR_NOMEM, "no memory") : mr_synth_write(&so);
        if (st == MR_OK) st = mr_write_file_atomic(config, text, (size_t)len, 0644);
        if (st == MR_OK) st = mr_train(&to, &tr);
        free(text);
    }
    mr_predictor f32 = {0}, b16 = {0};
    mr_predictor_options po = {.weights = weights, .threshold = (double)NAN};
    mr_checkpoint_path(weights, sizeof weights, run, 1, STEPS);
    if (st == MR_OK) st = mr_predictor_load(&f32, &po);
    po.bf16 = true;
    if (st == MR_OK) st = mr_predictor_load(&b16, &po);
    int64_t compared = 0, held = 0, followed = 0, count_differs = 0;
    double worst_box = 0.0, worst_iou = 1.0, worst_score = 0.0;
    for (int i = 0; i < 2 * IMAGES && st == MR_OK; i++) {
        char path[160];
        snprintf(path, sizeof path, "%s/%s/synth_%05d.png", data, i % 2 ? "val" : "train", i / 2);
        mr_instances a, b;
        if (access(path, R_OK) != 0) continue; /* each image is in one of the two folders */
        st = mr_predictor_detect(&f32, path, &a, NULL);
        if (st == MR_OK) st = mr_predictor_detect(&b16, path, &b, NULL);
        if (st != MR_OK) break;
        count_differs += a.n != b.n;
        for (int64_t k = 0; k < a.n && k < b.n; k++) {
            double box = 0.0, iou = mask_iou(&a, k, &b, k);
            for (int c = 0; c < 4; c++)
                box = fmax(box, fabs(a.boxes[4 * k + c] - b.boxes[4 * k + c]));
            compared++;
            bool same = a.class_ids[k] == b.class_ids[k] && box <= 1.0;
            held += same && iou >= 0.98;
            /* A mask is resampled into its box: when an edge rounds the other way, so does it. */
            followed +=
                same && iou < 0.98 && iou >= box_iou(&a.boxes[4 * k], &b.boxes[4 * k]) - 0.02;
            worst_box = fmax(worst_box, box);
            worst_iou = fmin(worst_iou, iou);
            worst_score = fmax(worst_score, fabs((double)a.scores[k] - (double)b.scores[k]));
        }
        mr_instances_free(&a);
        mr_instances_free(&b);
    }
    mr_predictor_free(&f32);
    mr_predictor_free(&b16);
    free(tiny);
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (st != MR_OK) {
        fprintf(out, "\nbf16 on a trained model: not measured (%s)\n", mr_last_error());
        return;
    }
    snprintf(line, sizeof line,
             "(configs/tiny.json trained %d steps, predict on its %d synthetic images): %lld of "
             "%lld detections held (same class, box within 1 px, mask IoU >= 0.98) and %lld more "
             "had a box edge round the other way, their mask following it (IoU within 0.02 of "
             "the boxes'); images with a different count %lld; largest box difference %.2f px, "
             "lowest mask IoU %.4f, largest score difference %.4f",
             STEPS, IMAGES, (long long)held, (long long)compared, (long long)followed,
             (long long)count_differs, worst_box, worst_iou, worst_score);
    fprintf(out, "\nbf16 on a trained model %s\n", line);
    if (md) fprintf(md, "\nbf16 on a trained model %s.\n", line);
}

static void prefetch_check(FILE *out, FILE *md) {
    char root[] = "/tmp/mrcnn-bench-prefetch-XXXXXX";
    if (!mkdtemp(root)) return;
    char data[96], config[96], run[96];
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(config, sizeof config, "%s/job.json", root);
    snprintf(run, sizeof run, "%s/run", root);
    enum { STEPS = 8 };
    mr_synth_options so;
    mr_synth_defaults(&so);
    so.out_dir = data;
    so.n_images = 12;
    so.size = 512;
    so.val_fraction = 0.25;
    char text[1600];
    int len = snprintf(
        text, sizeof text,
        "{\"NAME\": \"bench-prefetch\", \"BACKBONE\": \"resnet50\", \"CLASS_NAMES\": [\"BG\", "
        "\"benign\", \"malignant\"], \"CLASS_ATTRIBUTE\": \"class\", \"IMAGE_MIN_DIM\": 512, "
        "\"IMAGE_MAX_DIM\": 512, \"DATASET\": {\"TRAIN\": \"%s/train\", \"VAL\": \"%s/val\"}, "
        "\"EPOCHS\": 1, \"STEPS_PER_EPOCH\": %d, \"VALIDATION_STEPS\": 1, \"VALIDATION_METRICS\": "
        "0, \"STAGES\": [{\"LAYERS\": \"3+\", \"UNTIL_EPOCH\": 1, \"LEARNING_RATE\": 0.001}], "
        "\"AUGMENT\": true, \"BATCH_SIZE\": 1}",
        data, data, STEPS);
    mr_train_result tr;
    mr_train_options to = {.config_path = config, .out_dir = run, .quiet = true};
    double wait[STEPS], compute[STEPS];
    int n = 0;
    if (mr_synth_write(&so) == MR_OK &&
        mr_write_file_atomic(config, text, (size_t)len, 0644) == MR_OK &&
        mr_train(&to, &tr) == MR_OK) {
        char log[128], line[4096];
        snprintf(log, sizeof log, "%s/log.jsonl", run);
        FILE *f = fopen(log, "r");
        while (f && n < STEPS && fgets(line, sizeof line, f)) {
            const char *sec = strstr(line, "\"seconds\":"),
                       *w = strstr(line, "\"data_wait_seconds\":");
            if (!strstr(line, "\"type\":\"step\"") || !sec || !w) continue;
            compute[n] = atof(sec + 10);
            wait[n++] = atof(w + 20);
        }
        if (f) fclose(f);
    }
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    if (n < 2) {
        fprintf(out, "\nprefetcher: not measured (the training run failed: %s)\n", mr_last_error());
        return;
    }
    double first = wait[0], worst = 0.0, total = 0.0;
    for (int i = 1; i < n; i++) {
        worst = wait[i] > worst ? wait[i] : worst;
        total += wait[i];
    }
    double step = median(compute, n), later = median(wait + 1, n - 1);
    char line[512];
    snprintf(line, sizeof line,
             "(mr_train, ResNet-50 at 512, 512 px synthetic images with augmentation, "
             "%d steps): the first step waited %.1f ms for the first batch; steps 2-%d waited a "
             "median of %.2f ms and at most %.2f ms (%.2f%% of their compute, median %.3f s a "
             "step)",
             n, 1e3 * first, n, 1e3 * later, 1e3 * worst, 100.0 * total / (step * (n - 1)), step);
    fprintf(out, "\nprefetcher %s\n", line);
    if (md) fprintf(md, "\nPrefetcher %s.\n", line);
}

/* Training step and peak RSS against the image side, for both backbones: how cost grows. */
static void scaling_table(const mr_bench_options *o, const mr_bench_times known[3], FILE *out,
                          FILE *md) {
    static const int sides[] = {256, 512, 768, 1024, 1280}, depths[] = {50, 101};
    fprintf(out,
            "\nhow cost grows with the image (batch 1, 3 classes, stages 3+; inference keeping "
            "every detection,\nup to 100 masks; medians of %d; 512 and 1024 from above)\n%-8s "
            "%6s %9s %9s %9s %9s %10s\n",
            o->repeats < 3 ? o->repeats : 3, "model", "side", "train s", "s/MP", "infer s", "s/MP",
            "train RSS");
    if (md)
        fprintf(md,
                "\nHow cost grows (batch 1, 3 classes, stages 3+ trainable; inference "
                "keeping every detection, up to 100 masks):\n\n| model | "
                "side | train s | train s/MP | infer s | infer s/MP | peak RSS MB in training |\n"
                "|---|---|---|---|---|---|---|\n");
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 5; i++) {
            int depth = depths[d], side = sides[i];
            mr_bench_times t;
            if (depth == 50 && side == 512)
                t = known[0];
            else if (depth == 50 && side == 1024)
                t = known[1];
            else if (depth == 101 && side == 512)
                t = known[2];
            else
                t = o->isolated(o->user, depth, side, o->repeats < 3 ? o->repeats : 3);
            if (!t.ok) {
                fprintf(out, "R%-7d %6d (failed: out of memory?)\n", depth, side);
                continue;
            }
            double mp = (double)side * side * 1e-6;
            fprintf(out, "R%-7d %6d %9.3f %9.3f %9.3f %9.3f %10.0f\n", depth, side, t.train_s,
                    t.train_s / mp, t.infer_all_s, t.infer_all_s / mp, t.rss_mb);
            if (md)
                fprintf(md, "| R%d-FPN | %d | %.3f | %.3f | %.3f | %.3f | %.0f |\n", depth, side,
                        t.train_s, t.train_s / mp, t.infer_all_s, t.infer_all_s / mp, t.rss_mb);
            fflush(out);
        }
}

/* ---- the machine's floor ------------------------------------------------------------------ */

/* Where one model's training step and inference go, by layer group, against the floor: each
 * group's matrix-product FLOPs at the sgemm ceiling (groups without products have no floor of
 * that kind: their time is memory traffic). Training is set against the ceiling measured just
 * before each of its steps (mr_bench_model), inference against the run's `ceiling`. The training
 * columns also split the group's time into its matrix products, with their speed against the
 * ceiling, and the rest. Returns the training step's distance from its floor, the median of the
 * steps' own; `*run_ratio` gets the median step over its floor at the run's ceiling. */
static double floor_table(const char *name, const mr_bench_times *t, double ceiling, FILE *out,
                          FILE *md, double *run_ratio) {
    const mr_profile *tp = &t->train_prof, *ip = &t->infer_prof;
    double train_sum = 0.0, infer_sum = 0.0, train_products = 0.0;
    for (int g = 0; g < MR_GROUP_COUNT; g++) {
        train_sum += tp->seconds[g][0] + tp->seconds[g][1];
        train_products += tp->product_seconds[g][0] + tp->product_seconds[g][1];
        infer_sum += ip->seconds[g][0] + ip->seconds[g][1];
    }
    const double run_peak = ceiling * 1e9, peak = t->step_ceiling * 1e9;
    double train_floor = profile_flops(tp) / peak, infer_floor = profile_flops(ip) / run_peak;
    double run_floor = profile_flops(tp) / run_peak;
    *run_ratio = run_floor > 0 ? t->train_s / run_floor : (double)NAN;
    if (out)
        fprintf(out,
                "\n%s, where the time goes (means of the timed runs; floor: the group's "
                "matrix-product FLOPs\nat the sgemm ceiling, Winograd layers by their real "
                "multiplies, training at the ceiling measured\nbefore each step, inference at "
                "the run's; in products: the training time spent in them, and\ntheir speed "
                "against the ceiling; '-': no products, memory-bound)\n",
                name);
    if (out)
        fprintf(out, "%-10s %8s %8s %6s %8s %8s %8s %6s | %8s %6s %8s %8s\n", "group", "fwd ms",
                "bwd ms", "share", "GFLOP", "x floor", "prod ms", "speed", "infer ms", "share",
                "GFLOP", "x floor");
    if (md)
        fprintf(md,
                "\n%s by layer group (training step forward and backward, inference; floor: "
                "matrix-product FLOPs at the sgemm ceiling, for training the one measured before "
                "each step, for inference the run's; in products: the training time spent in "
                "matrix products, and their speed against the ceiling):\n\n| group | train "
                "fwd ms | train bwd ms | share | GFLOP | x floor | in products ms | their speed "
                "| infer ms | share | GFLOP | x floor |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|\n",
                name);
    for (int g = 0; g <= MR_GROUP_COUNT; g++) {
        bool total = g == MR_GROUP_COUNT;
        double fwd = 0, bwd = 0, tf = 0, prod = 0, inf = 0, iflops = 0;
        for (int k = 0; k < MR_GROUP_COUNT; k++) {
            if (!total && k != g) continue; /* the step row sums every group */
            fwd += tp->seconds[k][0];
            bwd += tp->seconds[k][1];
            tf += tp->flops[k][0] + tp->flops[k][1];
            prod += tp->product_seconds[k][0] + tp->product_seconds[k][1];
            inf += ip->seconds[k][0] + ip->seconds[k][1];
            iflops += ip->flops[k][0] + ip->flops[k][1];
        }
        double tsec = fwd + bwd;
        char tx[16] = "-", ix[16] = "-", pm[16] = "-", sp[16] = "-", fw[16], bw[16];
        if (tf > 0) snprintf(tx, sizeof tx, "%.2f", tsec / (tf / peak));
        if (tf > 0 && prod > 0) {
            snprintf(pm, sizeof pm, "%.1f", 1e3 * prod);
            snprintf(sp, sizeof sp, "%.0f%%", 100.0 * (tf / peak) / prod);
        }
        if (iflops > 0) snprintf(ix, sizeof ix, "%.2f", inf / (iflops / run_peak));
        snprintf(fw, sizeof fw, "%.1f", 1e3 * fwd);
        snprintf(bw, sizeof bw, "%.1f", 1e3 * bwd);
        const char *label = total ? "step" : mr_group_name((mr_group)g);
        if (out)
            fprintf(out, "%-10s %8s %8s %5.1f%% %8.1f %8s %8s %6s | %8.1f %5.1f%% %8.1f %8s\n",
                    label, fw, bw, 100.0 * tsec / train_sum, tf * 1e-9, tx, pm, sp, 1e3 * inf,
                    100.0 * inf / infer_sum, iflops * 1e-9, ix);
        if (md)
            fprintf(md,
                    "| %s | %s | %s | %.1f%% | %.1f | %s | %s | %s | %.1f | %.1f%% | %.1f | %s |\n",
                    label, fw, bw, 100.0 * tsec / train_sum, tf * 1e-9, tx, pm, sp, 1e3 * inf,
                    100.0 * inf / infer_sum, iflops * 1e-9, ix);
    }
    /* The floor's distance in two parts: the products' own time over the floor, and the time
     * outside them (as the profiled step's share, over the same floor). */
    double in_products = train_floor > 0 ? train_products / train_floor : (double)NAN;
    double outside = train_floor > 0 ? (train_sum - train_products) / train_floor : (double)NAN;
    char split[400];
    snprintf(split, sizeof split,
             "against the ceiling measured just before each step (median %.1f GFLOPS), floor "
             "%.3f s and %.2fx it (the median of the steps' own ratios); against the run's "
             "ceiling (%.1f GFLOPS), floor %.3f s and %.2fx; of the profiled %.3f s, %.3f s in "
             "matrix products (%.2fx the floor) and %.3f s outside them (%.2fx)",
             t->step_ceiling, train_floor, t->step_floor_ratio, ceiling, run_floor, *run_ratio,
             train_sum, train_products, in_products, train_sum - train_products, outside);
    if (out)
        fprintf(out,
                "training step: median %.3f s; %s; inference: median %.3f s, floor %.3f s, "
                "%.2fx\n",
                t->train_s, split, t->infer_s, infer_floor, t->infer_s / infer_floor);
    if (md)
        fprintf(md,
                "\nTraining step: median %.3f s; %s; inference: median %.3f s, floor %.3f s, "
                "%.2fx.\n",
                t->train_s, split, t->infer_s, infer_floor, t->infer_s / infer_floor);
    return t->step_floor_ratio;
}

static void cpu_name(char *buf, size_t size) {
    snprintf(buf, size, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            const char *v = strchr(line, ':');
            v = v ? v + 2 : line;
            size_t n = strcspn(v, "\n");
            if (n >= size) n = size - 1;
            memcpy(buf, v, n);
            buf[n] = '\0';
            break;
        }
    if (f) fclose(f);
}

static void git_commit(char *buf, size_t size) {
    snprintf(buf, size, "unknown");
    FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
    if (p && fgets(buf, (int)size, p)) buf[strcspn(buf, "\n")] = '\0';
    if (p) pclose(p);
}

/* Rounds of each case the ratios come from (the ResNet-50 ones, beside torchvision). */
#define RATIO_ROUNDS 3

/* Field-wise median over rounds; not ok when any round failed. */
static mr_bench_times median_times(const mr_bench_times *t, int n) {
    double train[RATIO_ROUNDS], infer[RATIO_ROUNDS], infer_all[RATIO_ROUNDS], rss[RATIO_ROUNDS];
    double bf16[RATIO_ROUNDS], bf16_all[RATIO_ROUNDS];
    double step_ceiling[RATIO_ROUNDS], step_floor[RATIO_ROUNDS];
    for (int i = 0; i < n; i++) {
        if (!t[i].ok) return (mr_bench_times){0};
        train[i] = t[i].train_s;
        infer[i] = t[i].infer_s;
        infer_all[i] = t[i].infer_all_s;
        rss[i] = t[i].rss_mb;
        bf16[i] = t[i].infer_bf16_s;
        bf16_all[i] = t[i].infer_all_bf16_s;
        step_ceiling[i] = t[i].step_ceiling;
        step_floor[i] = t[i].step_floor_ratio;
    }
    double train_s = median(train, n);
    /* The rest (profiles, counts, kernels) from the round whose training step is the median. */
    int k = 0;
    for (int i = 1; i < n; i++)
        if (fabs(t[i].train_s - train_s) < fabs(t[k].train_s - train_s)) k = i;
    mr_bench_times m = t[k];
    m.train_s = train_s;
    m.infer_s = median(infer, n);
    m.infer_all_s = median(infer_all, n);
    m.rss_mb = median(rss, n);
    m.infer_bf16_s = median(bf16, n);
    m.infer_all_bf16_s = median(bf16_all, n);
    m.step_ceiling = median(step_ceiling, n);
    m.step_floor_ratio = median(step_floor, n);
    return m;
}

static double ratio(double a, double b) {
    return a > 0 && b > 0 ? a / b : (double)NAN;
}

/* Runs per measurement of case i: all the repeats for the ratios' case (the first), at most 3
 * for the others. */
static int case_repeats(const mr_bench_options *o, int i) {
    return i == 0 ? (int)o->repeats : (int)(o->repeats < 3 ? o->repeats : 3);
}

/* Appends case i's sentence to a "; "-separated markdown paragraph. */
static void append_case(char *md, size_t size, int i, const char *line) {
    size_t l = strlen(md);
    snprintf(md + l, size - l, "%s%s", i ? "; " : "", line);
}

/* The whole-model cases: ResNet-50 at 512 (the ratios' case), at 1024, and ResNet-101 at 512. */
static const struct { int depth, side; } cases[3] = {{50, 512}, {50, 1024}, {101, 512}};

/* mrcnn against torchvision on the same work (equal_work), at 512 and 1024: the ratios, and their
 * sentences for BENCHMARKS.md. */
typedef struct {
    double train[2], infer[2];
    char md[640];
} equal_runs;

/* What the model table measured, for the sections after it and BENCHMARKS.md. */
typedef struct {
    int n_cases;
    mr_bench_times ours[3], torch[3], onnx[3];
    /* torchvision on the same work as mrcnn and on the same network as well (tv_recipe), for the
     * ResNet-50 cases, measured in the same rounds as the two columns above. */
    mr_bench_times torch_equal[2], torch_network[2];
    char table[2048]; /* the table's markdown rows */
    equal_runs equal, same_network;
    double same_kernel[2], same_kernel_infer[2];
    char same_kernel_md[640];
    char bf16_md[900];
} model_runs;

/* mrcnn, torchvision and ONNX Runtime on each case, printed as one table. */
static mr_status model_table(const mr_bench_options *o, model_runs *m, FILE *out) {
    const long repeats = o->repeats;
    fprintf(
        out,
        "\nwhole model, batch 1, 3 classes, stages 3+ trainable, %d threads (medians of %ld; "
        "ResNet-50 rows\nalternate mrcnn and torchvision's three recipes over %d rounds, median of "
        "the rounds)\n",
        mr_runtime_threads(), repeats, RATIO_ROUNDS);
    fprintf(out, "%-22s %10s %10s %10s %12s %12s %10s %10s %10s\n", "", "train s", "infer s",
            "train RSS", "torch train", "torch infer", "torch RSS", "ORT infer", "ORT RSS");
    size_t used = 0;
    for (int i = 0; i < m->n_cases; i++) {
        /* The ratios come from the ResNet-50 cases: their runs alternate between mrcnn and
         * torchvision's three recipes over several rounds, so a change in the machine's load
         * hits all of them. */
        int reps = case_repeats(o, i);
        bool r50 = cases[i].depth == 50;
        int rounds = r50 ? RATIO_ROUNDS : 1;
        mr_bench_times ours_r[RATIO_ROUNDS], torch_r[RATIO_ROUNDS] = {{0}};
        mr_bench_times equal_r[RATIO_ROUNDS] = {{0}}, network_r[RATIO_ROUNDS] = {{0}};
        for (int r = 0; r < rounds; r++) {
            ours_r[r] = o->isolated(o->user, cases[i].depth, cases[i].side, reps);
            if (!ours_r[r].ok) {
                return mr_fail(MR_ERR_NOMEM, "the %dx%d ResNet-%d measurement failed",
                               cases[i].side, cases[i].side, cases[i].depth);
            }
            if (!r50) continue;
            torch_r[r] = torchvision(cases[i].side, reps, TV_DEFAULTS, NULL);
            if (!torch_r[r].ok) continue;
            equal_r[r] = torchvision(cases[i].side, reps, TV_MATTERPORT_SAMPLING, NULL);
            network_r[r] = torchvision(cases[i].side, reps, TV_MATTERPORT_NETWORK, NULL);
        }
        m->ours[i] = median_times(ours_r, rounds);
        m->torch[i] = median_times(torch_r, rounds);
        if (r50 && i < 2) {
            m->torch_equal[i] = median_times(equal_r, rounds);
            m->torch_network[i] = median_times(network_r, rounds);
        }
        /* The same model exported to ONNX, in ONNX Runtime (ResNet-50 only, as torchvision). */
        m->onnx[i] = cases[i].depth == 50 && o->onnxruntime
                         ? onnxruntime(cases[i].depth, cases[i].side, reps, o->onnxruntime)
                         : (mr_bench_times){0};
        const mr_bench_times *ours = &m->ours[i], *torch = &m->torch[i], *onnx = &m->onnx[i];
        char ort[48] = "         -          -", ort_md[32] = "- | -";
        if (onnx->ok) {
            snprintf(ort, sizeof ort, "%10.3f %10.0f", onnx->infer_s, onnx->rss_mb);
            snprintf(ort_md, sizeof ort_md, "%.3f | %.0f", onnx->infer_s, onnx->rss_mb);
        }
        char name[64];
        snprintf(name, sizeof name, "R%d-FPN %dx%d", cases[i].depth, cases[i].side, cases[i].side);
        char theirs[64] = "             -            -          -", theirs_md[64] = "- | - | -";
        if (torch->ok) {
            snprintf(theirs, sizeof theirs, "%12.3f %12.3f %10.0f", torch->train_s, torch->infer_s,
                     torch->rss_mb);
            snprintf(theirs_md, sizeof theirs_md, "%.3f | %.3f | %.0f", torch->train_s,
                     torch->infer_s, torch->rss_mb);
        }
        fprintf(out, "%-22s %10.3f %10.3f %10.0f %s %s\n", name, ours->train_s, ours->infer_s,
                ours->rss_mb, theirs, ort);
        fflush(out);
        used += (size_t)snprintf(m->table + used, sizeof m->table - used,
                                 "| %s | %.3f | %.3f | %.0f | %s | %s |\n", name, ours->train_s,
                                 ours->infer_s, ours->rss_mb, theirs_md, ort_md);
    }
    if (!m->torch[0].ok)
        fprintf(out,
                "(torchvision not measured: run `make bench-deps` to install python3-torch)\n");
    else
        fprintf(out, "torchvision's kernels: %s\n", m->torch[0].kernel);
    for (int i = 0; i < m->n_cases && m->torch[0].ok; i++)
        if (m->torch[i].ok)
            fprintf(out,
                    "masks made in the inference above at %dx%d: mrcnn %d (Matterport's "
                    "confidence 0.7), torchvision %d (score 0.05)\n",
                    cases[i].side, cases[i].side, m->ours[i].detections, m->torch[i].detections);
    for (int i = 0; i < m->n_cases; i++)
        if (cases[i].depth == 50)
            fprintf(out,
                    "kernels mrcnn's inference keeps across images at %dx%d (as predict and "
                    "evaluate do): %.0f MB\n",
                    cases[i].side, cases[i].side, m->ours[i].infer_kept_mb);
    if (!m->onnx[0].ok)
        fprintf(out, "(ONNX Runtime not measured: `make bench` installs onnxruntime-node with "
                     "npm; node or npm missing, or the registry unreachable)\n");
    return MR_OK;
}

/* Equal work: torchvision's heads sample 512 ROIs at 25% positive by default, Matterport's 200
 * at 33%; at inference torchvision makes a mask for every detection of score 0.05 and up,
 * Matterport's detection layer keeps confidence 0.7 and up. Timed (model_table) with
 * Matterport's sampling, and with its RPN as well for the same network, and with every detection
 * kept on both sides (100 masks), the ratios show the implementation. */
static void equal_work(const model_runs *m, const mr_bench_times theirs[2], const char *what,
                       equal_runs *e, FILE *out) {
    e->train[0] = e->train[1] = e->infer[0] = e->infer[1] = NAN;
    e->md[0] = '\0';
    for (int i = 0; i < (m->n_cases > 1 ? 2 : 1) && theirs[i].ok; i++) {
        e->train[i] = ratio(m->ours[i].train_s, theirs[i].train_s);
        e->infer[i] = ratio(m->ours[i].infer_all_s, theirs[i].infer_s);
        char line[400];
        snprintf(line, sizeof line,
                 "%dx%d: torchvision trains in %.3f s (mrcnn/torchvision %.3f) and infers in %.3f "
                 "s with %d masks, mrcnn in %.3f s with %d (%.3f)",
                 cases[i].side, cases[i].side, theirs[i].train_s, e->train[i], theirs[i].infer_s,
                 theirs[i].detections, m->ours[i].infer_all_s, m->ours[i].detections_all,
                 e->infer[i]);
        fprintf(out, "%s at %s\n", what, line);
        append_case(e->md, sizeof e->md, i, line);
    }
}

/* Where OpenBLAS fell back to a slower kernel on this CPU and mrcnn replaced it
 * (core/runtime.h), torchvision's own matrix products (its box head's fully connected layers)
 * ran on the fallback above. Timed again with its OpenBLAS on mrcnn's kernel, the ratios show the
 * implementations on one BLAS. */
static void same_kernel(const mr_bench_options *o, model_runs *m, FILE *out) {
    m->same_kernel[0] = m->same_kernel[1] = m->same_kernel_infer[0] = m->same_kernel_infer[1] = NAN;
    m->same_kernel_md[0] = '\0';
    const char *was = mr_runtime_blas_replaced();
    if (!was || !m->torch[0].ok) return;
    const char *kernel = mr_runtime_kernel();
    for (int i = 0; i < (m->n_cases > 1 ? 2 : 1); i++) {
        mr_bench_times t = torchvision(cases[i].side, case_repeats(o, i), TV_DEFAULTS, kernel);
        if (!t.ok) break;
        m->same_kernel[i] = ratio(m->ours[i].train_s, t.train_s);
        m->same_kernel_infer[i] = ratio(m->ours[i].infer_s, t.infer_s);
        char line[300];
        snprintf(line, sizeof line,
                 "%dx%d: torchvision trains in %.3f s (mrcnn/torchvision %.3f) and infers in %.3f "
                 "s (%.3f)",
                 cases[i].side, cases[i].side, t.train_s, m->same_kernel[i], t.infer_s,
                 m->same_kernel_infer[i]);
        fprintf(out, "torchvision on OpenBLAS's %s kernel (not its fallback %s) at %s\n", kernel,
                was, line);
        append_case(m->same_kernel_md, sizeof m->same_kernel_md, i, line);
    }
}

/* bfloat16 inference (`predict --bf16`) against float32 and torchvision, and whether its
 * detections hold, for the ResNet-50 cases. */
static void bf16_summary(model_runs *m, FILE *out) {
    m->bf16_md[0] = '\0';
    if (!mr_bf16_supported()) {
        fprintf(out, "bf16 inference not measured: this CPU has no AVX-512 BF16\n");
        return;
    }
    for (int i = 0; i < (m->n_cases > 1 ? 2 : 1); i++) {
        const mr_bench_times *t = &m->ours[i];
        char line[420];
        snprintf(line, sizeof line,
                 "%dx%d: %.3f s, %.2fx float32's speed (mrcnn/torchvision %.3f); every detection "
                 "kept %.3f s, %.2fx; kernels kept %.0f MB; on these seeded weights %d of %d "
                 "detections have a bf16 partner within 1 px and mask IoU 0.98",
                 cases[i].side, cases[i].side, t->infer_bf16_s, ratio(t->infer_s, t->infer_bf16_s),
                 ratio(t->infer_bf16_s, m->torch[i].infer_s), t->infer_all_bf16_s,
                 ratio(t->infer_all_s, t->infer_all_bf16_s), t->bf16_kept_mb, t->bf16_held,
                 t->bf16_compared);
        fprintf(out, "bf16 inference at %s\n", line);
        append_case(m->bf16_md, sizeof m->bf16_md, i, line);
    }
}

/* The run's entry in BENCHMARKS.md: header, ceiling, the model table, equal work, the sections
 * printed after the table, and the ratio line. */
static void append_markdown(const char *path, const model_runs *m, double ceiling,
                            double first_ceiling, double eff, const char *sections,
                            const char *ratios) {
    FILE *md = fopen(path, "a");
    if (!md) return;
    char cpu[160], commit[64];
    cpu_name(cpu, sizeof cpu);
    git_commit(commit, sizeof commit);
    time_t t = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&t));
    const char *note = mr_runtime_blas_note(); /* the banner printed it; BENCHMARKS.md keeps it */
    fprintf(md, "\n## %s, commit %s, %s, %d threads\n\n", date, commit, cpu, mr_runtime_threads());
    fprintf(md,
            "sgemm ceiling %.1f GFLOPS (%s; best of two measurements, %.1f at the start); "
            "ResNet-50/FPN convolutions at %.0f%% of the first (direct-convolution FLOPs over "
            "time, so Winograd layers count 4-5x).%s%s torchvision's kernels: %s.\n\n",
            ceiling, mr_runtime_blas_desc(), first_ceiling, 100.0 * eff, note ? " Note: " : "",
            note ? note : "", m->torch[0].ok ? m->torch[0].kernel : "not measured");
    fprintf(md,
            "| model | mrcnn train s | mrcnn infer s | mrcnn RSS MB in training | torchvision "
            "train s | torchvision infer s | torchvision RSS MB in training | ONNX Runtime "
            "infer s | ONNX Runtime "
            "RSS MB |\n|---|---|---|---|---|---|---|---|---|\n%s",
            m->table);
    if (m->equal.md[0])
        fprintf(md,
                "\nEqual work (torchvision sampling ROIs as Matterport, 200 an image at 33%% "
                "positive; both keeping every detection at inference): %s.\n",
                m->equal.md);
    if (m->same_network.md[0])
        fprintf(md,
                "\nSame network (as equal work, and torchvision's RPN convolution 512 channels "
                "wide as Matterport's, where its default keeps the FPN's 256): %s.\n",
                m->same_network.md);
    if (m->same_kernel_md[0])
        fprintf(md,
                "\nOne BLAS kernel (OpenBLAS alone runs %s on this CPU, in torchvision's box head "
                "above; here torchvision's OpenBLAS runs mrcnn's %s): %s.\n",
                mr_runtime_blas_replaced(), mr_runtime_kernel(), m->same_kernel_md);
    if (m->bf16_md[0])
        fprintf(md,
                "\nbfloat16 inference (`predict --bf16`; 3x3 stride-1 layers stay in float32 "
                "Winograd; the seeded weights' RPN saturates to scores of exactly 1.0 and orders "
                "those ties by the last bit, so any change of rounding picks other proposals: "
                "see the trained model's check below): %s.\n",
                m->bf16_md);
    if (sections) fputs(sections, md);
    fprintf(md, "\n%s\n", ratios);
    fclose(md);
}

mr_status mr_bench_run(const mr_bench_options *o, FILE *out) {
    double ceiling = sgemm_ceiling((int)o->repeats);
    fprintf(out, "sgemm 2048^3 ceiling: %.1f GFLOPS (%s)\n\n", ceiling, mr_runtime_blas_desc());
    double eff = conv_table((int)o->repeats, ceiling, out);
    model_runs *m = calloc(1, sizeof *m);
    if (!m) return mr_fail(MR_ERR_NOMEM, "no memory for the bench's results");
    m->n_cases = o->quick ? 1 : 3;
    mr_status st = model_table(o, m, out);
    if (st != MR_OK) {
        free(m);
        return st;
    }
    equal_work(m, m->torch_equal, "equal work", &m->equal, out);
    equal_work(m, m->torch_network, "same network", &m->same_network, out);
    same_kernel(o, m, out);
    bf16_summary(m, out);
    if (!o->quick && m->ours[2].ok) {
        /* configs/busi.json: ResNet-101 at 512, 30 epochs x 51 steps, batch 1, plus validation. */
        double hours =
            (30.0 * 51.0 * m->ours[2].train_s + 30.0 * 10.0 * m->ours[2].infer_s) / 3600.0;
        fprintf(out,
                "projected configs/busi.json fine-tune (30 x 51 steps of ResNet-101 at 512): %.1f "
                "hours on this machine\n",
                hours);
    }
    /* The sections after the model table, for the terminal now and BENCHMARKS.md below. */
    char *sections = NULL;
    size_t sections_len = 0;
    FILE *sec = o->markdown ? open_memstream(&sections, &sections_len) : NULL;
    double floor_ratio[2] = {NAN, NAN}, floor_run_ratio[2] = {NAN, NAN};
    /* Measured again now, in case the machine was busy at the start: the run's floor takes the
     * higher. */
    const double first_ceiling = ceiling, again = sgemm_ceiling((int)o->repeats);
    fprintf(out, "\nsgemm ceiling measured again: %.1f GFLOPS; the run's floor below uses %.1f\n",
            again, fmax(ceiling, again));
    ceiling = fmax(ceiling, again);
    for (int i = 0; i < (m->n_cases > 1 ? 2 : 1); i++) {
        char name[64];
        snprintf(name, sizeof name, "R%d-FPN %dx%d", cases[i].depth, cases[i].side, cases[i].side);
        floor_ratio[i] = floor_table(name, &m->ours[i], ceiling, out, sec, &floor_run_ratio[i]);
    }
    bf16_trained_check(out, sec);
    if (!o->quick) {
        prefetch_check(out, sec);
        scaling_table(o, m->ours, out, sec);
        data_table(o, out, sec);
    }
    if (sec) fclose(sec);
    const mr_bench_times *ours = m->ours, *torch = m->torch;
    char ratios[1000];
    snprintf(ratios, sizeof ratios,
             "train_step_ratio=%.3f infer_ratio=%.3f rss_ratio=%.3f conv_efficiency=%.3f "
             "train_1024_ratio=%.3f infer_1024_ratio=%.3f floor_ratio=%.3f floor_1024_ratio=%.3f "
             "train_equal_work_ratio=%.3f infer_equal_work_ratio=%.3f infer_bf16_ratio=%.3f "
             "infer_bf16_1024_ratio=%.3f bf16_speedup=%.3f train_same_kernel_ratio=%.3f "
             "infer_same_kernel_ratio=%.3f train_equal_work_1024_ratio=%.3f "
             "infer_equal_work_1024_ratio=%.3f train_same_network_ratio=%.3f "
             "infer_same_network_ratio=%.3f train_same_network_1024_ratio=%.3f "
             "infer_same_network_1024_ratio=%.3f floor_run_ratio=%.3f floor_1024_run_ratio=%.3f",
             ratio(ours[0].train_s, torch[0].train_s), ratio(ours[0].infer_s, torch[0].infer_s),
             ratio(ours[0].rss_mb, torch[0].rss_mb), eff,
             m->n_cases > 1 ? ratio(ours[1].train_s, torch[1].train_s) : (double)NAN,
             m->n_cases > 1 ? ratio(ours[1].infer_s, torch[1].infer_s) : (double)NAN,
             floor_ratio[0], floor_ratio[1], m->equal.train[0], m->equal.infer[0],
             ratio(ours[0].infer_bf16_s, torch[0].infer_s),
             m->n_cases > 1 ? ratio(ours[1].infer_bf16_s, torch[1].infer_s) : (double)NAN,
             ratio(ours[0].infer_s, ours[0].infer_bf16_s), m->same_kernel[0],
             m->same_kernel_infer[0], m->equal.train[1], m->equal.infer[1],
             m->same_network.train[0], m->same_network.infer[0], m->same_network.train[1],
             m->same_network.infer[1], floor_run_ratio[0], floor_run_ratio[1]);
    if (o->markdown) append_markdown(o->markdown, m, ceiling, first_ceiling, eff, sections, ratios);
    free(sections);
    free(m);
    fprintf(out, "%s\n", ratios);
    return MR_OK;
}

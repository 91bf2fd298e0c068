/* `mrcnn bench`'s measurements (train/bench.h): the sgemm ceiling, the ResNet-50 + FPN
 * convolution table, whole-model training and inference steps beside torchvision and the ONNX
 * export's inference in ONNX Runtime, and the BENCHMARKS.md entry. Timing is measured here and
 * never asserted in a test. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../core/blas.h"
#include "../core/ops.h"
#include "../core/rng.h"
#include "../core/runtime.h"
#include "../layers/inference.h"
#include "../losses/losses.h"
#include "../core/file.h"
#include "config.h"
#include "export.h"
#include "export_onnx.h"
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

double mr_bench_sgemm_ceiling(int repeats) {
    const int64_t n = 2048;
    float *a = malloc(sizeof(float) * (size_t)(n * n)),
          *b = malloc(sizeof(float) * (size_t)(n * n)),
          *c = malloc(sizeof(float) * (size_t)(n * n));
    for (int64_t i = 0; i < n * n; i++) a[i] = b[i] = 1.0f / (float)(1 + i % 7);
    double t[16];
    mr_sgemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n); /* warm-up */
    for (int r = 0; r < repeats; r++) {
        double t0 = now();
        mr_sgemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        t[r] = now() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * (double)(n * n * n) / median(t, repeats) * 1e-9;
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

/* The conv table; returns the FLOP-weighted efficiency against the ceiling, or NAN. */
double mr_bench_conv_table(int repeats, double ceiling, FILE *out) {
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
            "and pixels run\n Winograd F(4x4,3x3), 4x fewer multiplies, so they can pass the "
            "ceiling)\n");
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
    MR_TRY(mr_model_init(m, &c->net));
    mr_init_weights(m, MR_INIT_GLOROT, 1);
    return MR_OK;
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
    double train[16], infer[16];
    for (int r = 0; r <= repeats; r++) {
        double t0 = now();
        mr_ctx_reset(&ctx);
        mr_tensor *img = mr_tensor_4d(&ctx, "images", 1, side, side, 3);
        if (!img) return;
        for (int64_t i = 0; i < img->numel; i++) img->data[i] = (float)((i * 7) % 255) - 120.0f;
        mr_loss_values v;
        mr_tensor *loss = mr_training_losses(&ctx, &m, img, &gt, NULL, &rng, &v);
        mr_params_zero_grads(&m.params);
        if (!loss || mr_backward(&ctx, loss) != MR_OK) return;
        mr_sgd_report rep;
        mr_sgd_step(&m.params, &opt, &rep);
        if (r > 0) train[r - 1] = now() - t0;
    }
    for (int r = 0; r <= repeats; r++) {
        double t0 = now();
        mr_ctx_reset(&ctx);
        mr_tensor *img = mr_tensor_4d(&ctx, "images", 1, side, side, 3);
        if (!img) return;
        for (int64_t i = 0; i < img->numel; i++) img->data[i] = (float)((i * 7) % 255) - 120.0f;
        mr_image_geometry g = {side, side, side, side, {0, 0, (float)side, (float)side}};
        mr_instances d;
        if (mr_model_detect(&ctx, &m, img, &g, -1.0f, &d) != MR_OK) return;
        mr_instances_free(&d);
        if (r > 0) infer[r - 1] = now() - t0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    res->train_s = median(train, repeats);
    res->infer_s = median(infer, repeats);
    res->rss_mb = (double)ru.ru_maxrss / 1024.0;
    res->ok = 1;
    mr_ctx_free(&ctx);
    mr_model_free(&m);
}

mr_bench_times mr_bench_torchvision(int side, int repeats, bool matterport_sampling) {
    mr_bench_times t = {0};
    if (access("tools/bench_torchvision.py", R_OK) != 0) return t;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tools/bench_torchvision.py %d %d%s 2>/dev/null",
             side, repeats, matterport_sampling ? " matterport" : "");
    FILE *p = popen(cmd, "r");
    if (!p) return t;
    char line[256] = "";
    while (fgets(line, sizeof line, p))
        if (sscanf(line, "train_s=%lf infer_s=%lf rss_mb=%lf", &t.train_s, &t.infer_s, &t.rss_mb) ==
            3)
            t.ok = 1;
    pclose(p);
    return t;
}

mr_bench_times mr_bench_onnxruntime(int depth, int side, int repeats, const char *ort_dir) {
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

/* Rounds of the case the ratios come from. */
#define RATIO_ROUNDS 3

/* Field-wise median over rounds; not ok when any round failed. */
static mr_bench_times median_times(const mr_bench_times *t, int n) {
    mr_bench_times m = {.ok = 1};
    double train[RATIO_ROUNDS], infer[RATIO_ROUNDS], rss[RATIO_ROUNDS];
    for (int i = 0; i < n; i++) {
        if (!t[i].ok) return (mr_bench_times){0};
        train[i] = t[i].train_s;
        infer[i] = t[i].infer_s;
        rss[i] = t[i].rss_mb;
    }
    m.train_s = median(train, n);
    m.infer_s = median(infer, n);
    m.rss_mb = median(rss, n);
    return m;
}

static double ratio(double a, double b) {
    return a > 0 && b > 0 ? a / b : (double)NAN;
}

mr_status mr_bench_run(const mr_bench_options *o, FILE *out) {
    const long repeats = o->repeats;
    const bool quick = o->quick;
    double ceiling = mr_bench_sgemm_ceiling((int)repeats);
    fprintf(out, "sgemm 2048^3 ceiling: %.1f GFLOPS (%s)\n\n", ceiling, mr_runtime_blas_desc());
    const char *note = mr_runtime_blas_note(); /* the banner printed it; BENCHMARKS.md keeps it */
    double eff = mr_bench_conv_table((int)repeats, ceiling, out);

    fprintf(
        out,
        "\nwhole model, batch 1, 3 classes, stages 3+ trainable, %d threads (medians of %ld; "
        "the first row\nalternates mrcnn and torchvision over %d rounds, median of the rounds)\n",
        mr_runtime_threads(), repeats, RATIO_ROUNDS);
    fprintf(out, "%-22s %10s %10s %10s %12s %12s %10s %10s %10s\n", "", "train s", "infer s",
            "RSS MB", "torch train", "torch infer", "torch RSS", "ORT infer", "ORT RSS");
    struct {
        int depth, side;
    } cases[3] = {{50, 512}, {50, 1024}, {101, 512}};
    int n_cases = quick ? 1 : 3;
    mr_bench_times ours[3], torch[3], onnx[3];
    char table[2048] = "";
    size_t used = 0;
    for (int i = 0; i < n_cases; i++) {
        /* The ratios come from the first case: its runs alternate between mrcnn and
         * torchvision over several rounds, so a change in the machine's load hits both. */
        int reps = i == 0 ? (int)repeats : (int)(repeats < 3 ? repeats : 3);
        int rounds = i == 0 ? RATIO_ROUNDS : 1;
        mr_bench_times ours_r[RATIO_ROUNDS], torch_r[RATIO_ROUNDS];
        for (int r = 0; r < rounds; r++) {
            ours_r[r] = o->isolated(o->user, cases[i].depth, cases[i].side, reps);
            if (!ours_r[r].ok) {
                return mr_fail(MR_ERR_NOMEM, "the %dx%d ResNet-%d measurement failed",
                               cases[i].side, cases[i].side, cases[i].depth);
            }
            torch_r[r] = cases[i].depth == 50 ? mr_bench_torchvision(cases[i].side, reps, false)
                                              : (mr_bench_times){0};
        }
        ours[i] = median_times(ours_r, rounds);
        torch[i] = median_times(torch_r, rounds);
        /* The same model exported to ONNX, in ONNX Runtime (ResNet-50 only, as torchvision). */
        onnx[i] = cases[i].depth == 50 && o->onnxruntime
                      ? mr_bench_onnxruntime(cases[i].depth, cases[i].side, reps, o->onnxruntime)
                      : (mr_bench_times){0};
        char ort[48] = "         -          -", ort_md[32] = "- | -";
        if (onnx[i].ok) {
            snprintf(ort, sizeof ort, "%10.3f %10.0f", onnx[i].infer_s, onnx[i].rss_mb);
            snprintf(ort_md, sizeof ort_md, "%.3f | %.0f", onnx[i].infer_s, onnx[i].rss_mb);
        }
        char name[64];
        snprintf(name, sizeof name, "R%d-FPN %dx%d", cases[i].depth, cases[i].side, cases[i].side);
        char theirs[64] = "             -            -          -", theirs_md[64] = "- | - | -";
        if (torch[i].ok) {
            snprintf(theirs, sizeof theirs, "%12.3f %12.3f %10.0f", torch[i].train_s,
                     torch[i].infer_s, torch[i].rss_mb);
            snprintf(theirs_md, sizeof theirs_md, "%.3f | %.3f | %.0f", torch[i].train_s,
                     torch[i].infer_s, torch[i].rss_mb);
        }
        fprintf(out, "%-22s %10.3f %10.3f %10.0f %s %s\n", name, ours[i].train_s, ours[i].infer_s,
                ours[i].rss_mb, theirs, ort);
        fflush(out);
        used += (size_t)snprintf(table + used, sizeof table - used,
                                 "| %s | %.3f | %.3f | %.0f | %s | %s |\n", name, ours[i].train_s,
                                 ours[i].infer_s, ours[i].rss_mb, theirs_md, ort_md);
    }
    if (!torch[0].ok)
        fprintf(out,
                "(torchvision not measured: run `make bench-deps` to install python3-torch)\n");
    if (!onnx[0].ok)
        fprintf(out, "(ONNX Runtime not measured: `make bench` installs onnxruntime-node with "
                     "npm; node or npm missing, or the registry unreachable)\n");
    double tr = ratio(ours[0].train_s, torch[0].train_s),
           ir = ratio(ours[0].infer_s, torch[0].infer_s),
           rr = ratio(ours[0].rss_mb, torch[0].rss_mb);
    double tr1024 = n_cases > 1 ? ratio(ours[1].train_s, torch[1].train_s) : (double)NAN,
           ir1024 = n_cases > 1 ? ratio(ours[1].infer_s, torch[1].infer_s) : (double)NAN;
    /* Equal work: torchvision's heads sample 512 ROIs at 25% positive by default, Matterport's
     * 200 at 33%; timed again with Matterport's sampling, the ratio shows the implementation. */
    double equal[2] = {NAN, NAN};
    char equal_md[160] = "";
    for (int i = 0; i < (n_cases > 1 ? 2 : 1) && torch[0].ok; i++) {
        int reps = i == 0 ? (int)repeats : (int)(repeats < 3 ? repeats : 3);
        mr_bench_times eq = mr_bench_torchvision(cases[i].side, reps, true);
        if (!eq.ok) break;
        equal[i] = ratio(ours[i].train_s, eq.train_s);
        fprintf(out,
                "equal work at %dx%d: torchvision sampling ROIs as Matterport (200 an image, 33%% "
                "positive) trains in %.3f s; mrcnn/torchvision %.3f\n",
                cases[i].side, cases[i].side, eq.train_s, equal[i]);
        size_t l = strlen(equal_md);
        snprintf(equal_md + l, sizeof equal_md - l, "%s%dx%d %.3f s (ratio %.3f)", i ? ", " : "",
                 cases[i].side, cases[i].side, eq.train_s, equal[i]);
    }
    if (!quick && ours[2].ok) {
        /* configs/busi.json: ResNet-101 at 512, 30 epochs x 51 steps, batch 1, plus validation. */
        double hours = (30.0 * 51.0 * ours[2].train_s + 30.0 * 10.0 * ours[2].infer_s) / 3600.0;
        fprintf(out,
                "projected configs/busi.json fine-tune (30 x 51 steps of ResNet-101 at 512): %.1f "
                "hours on this machine\n",
                hours);
    }
    char cpu[160], commit[64];
    cpu_name(cpu, sizeof cpu);
    git_commit(commit, sizeof commit);
    time_t t = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&t));
    FILE *md = o->markdown ? fopen(o->markdown, "a") : NULL;
    if (md) {
        fprintf(md, "\n## %s, commit %s, %s, %d threads\n\n", date, commit, cpu,
                mr_runtime_threads());
        fprintf(md,
                "sgemm ceiling %.1f GFLOPS (%s); ResNet-50/FPN convolutions at %.0f%% of it "
                "(direct-convolution FLOPs over time, so Winograd layers count 4x).%s%s\n\n",
                ceiling, mr_runtime_blas_desc(), 100.0 * eff, note ? " Note: " : "",
                note ? note : "");
        fprintf(md,
                "| model | mrcnn train s | mrcnn infer s | mrcnn RSS MB | torchvision train s | "
                "torchvision infer s | torchvision RSS MB | ONNX Runtime infer s | ONNX Runtime "
                "RSS MB |\n|---|---|---|---|---|---|---|---|---|\n%s",
                table);
        if (equal_md[0])
            fprintf(md,
                    "\nEqual work (torchvision sampling ROIs as Matterport: 200 an image, 33%% "
                    "positive): torchvision trains in %s.\n",
                    equal_md);
        fprintf(md,
                "\ntrain_step_ratio=%.3f infer_ratio=%.3f rss_ratio=%.3f conv_efficiency=%.3f "
                "train_1024_ratio=%.3f infer_1024_ratio=%.3f train_equal_work_ratio=%.3f\n",
                tr, ir, rr, eff, tr1024, ir1024, equal[0]);
        fclose(md);
    }
    fprintf(out,
            "train_step_ratio=%.3f infer_ratio=%.3f rss_ratio=%.3f conv_efficiency=%.3f "
            "train_1024_ratio=%.3f infer_1024_ratio=%.3f train_equal_work_ratio=%.3f\n",
            tr, ir, rr, eff, tr1024, ir1024, equal[0]);
    return MR_OK;
}

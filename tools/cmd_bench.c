/* `mrcnn bench`: the sgemm ceiling of this machine, then forward and backward time and achieved
 * GFLOPS for the convolution shapes of ResNet-50 + FPN on a 512x512 image. Medians of several
 * runs, since the machines are shared and noisy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../core/blas.h"
#include "../core/ops.h"
#include "../core/rng.h"
#include "../core/runtime.h"
#include "cli.h"

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

static double sgemm_ceiling(int repeats) {
    const int64_t n = 2048;
    float *a = malloc(sizeof(float) * (size_t)(n * n)), *b = malloc(sizeof(float) * (size_t)(n * n)),
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

int cmd_bench(int argc, char **argv) {
    long repeats = 5;
    mr_opt opts[] = {{"--repeats", MR_OPT_INT, &repeats, "runs per measurement (median), 1..15"}};
    int code = 0;
    if (!mr_parse_args("bench", "[--repeats N]", argc, argv, opts, 1, NULL, &code)) return code;
    if (repeats < 1 || repeats > 15) {
        fprintf(stderr, "mrcnn bench: --repeats must be 1..15, got %ld\n", repeats);
        return 2;
    }
    mr_runtime_banner();
    double ceiling = sgemm_ceiling((int)repeats);
    printf("sgemm 2048^3 ceiling: %.1f GFLOPS (%s)\n\n", ceiling, mr_runtime_blas_desc());
    printf("%-26s %5s %9s %9s %9s %9s %6s\n", "conv (batch 1, 512x512 input)", "count", "fwd ms",
           "fwd GF/s", "bwd ms", "bwd GF/s", "eff");
    mr_ctx ctx;
    if (mr_ctx_init(&ctx, (size_t)1 << 30) != MR_OK) return mr_exit_code(MR_ERR_NOMEM);
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
            if (!x || !w || !b) return mr_exit_code(ctx.status);
            for (int64_t i = 0; i < x->numel; i++) x->data[i] = mr_rng_uniform(&rng) - 0.5f;
            for (int64_t i = 0; i < w->numel; i++) w->data[i] = 0.01f * mr_rng_normal(&rng);
            memset(b->data, 0, sizeof(float) * (size_t)c->cout);
            x->requires_grad = w->requires_grad = b->requires_grad = true;
            double t0 = now();
            mr_tensor *y = mr_conv2d(&ctx, x, w, b, c->stride, c->pad);
            double t1 = now();
            if (!y) return mr_exit_code(ctx.status);
            float *seed = mr_alloc(&ctx, sizeof(float) * (size_t)y->numel, "bench");
            if (!seed) return mr_exit_code(ctx.status);
            for (int64_t i = 0; i < y->numel; i++) seed[i] = 1e-3f;
            double t2 = now();
            if (mr_backward_seeded(&ctx, y, seed) != MR_OK) return mr_exit_code(ctx.status);
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
        printf("%-26s %5d %9.2f %9.1f %9.2f %9.1f %5.0f%%\n", c->name, c->count, 1e3 * f, gf,
               1e3 * bk, gb, 100.0 * (3.0 * flops / (f + bk)) * 1e-9 / ceiling);
    }
    double eff = total_flops / total_time * 1e-9 / ceiling;
    printf("\nall ResNet-50/FPN conv shapes (weighted by count): %.1f GFLOPS fwd+bwd, %.0f%% of "
           "the sgemm ceiling\n",
           total_flops / total_time * 1e-9, 100.0 * eff);
    printf("sgemm_gflops=%.1f conv_efficiency=%.3f\n", ceiling, eff);
    mr_ctx_free(&ctx);
    return 0;
}

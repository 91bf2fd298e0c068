/* `mrcnn bench`'s measurements: the sgemm ceiling of this machine; forward and backward time and
 * achieved GFLOPS for the convolution shapes of ResNet-50 + FPN at 512x512; whole-model training
 * steps, inference and peak memory for mrcnn and torchvision side by side; the entry appended to
 * BENCHMARKS.md. Medians of several runs, since the machines are shared and noisy. Timing is
 * measured here, never asserted in a test. */
#ifndef MR_BENCH_H
#define MR_BENCH_H

#include <stdbool.h>
#include <stdio.h>

#include "../core/profile.h"
#include "../core/status.h"

typedef struct {
    double train_s, infer_s, rss_mb; /* median step times and peak resident memory in training */
    int detections;                  /* the inference's detections (masks made) */
    /* mrcnn only: inference keeping every detection up to the maximum (minimum confidence 0),
     * the mask work torchvision's untrained model does */
    double infer_all_s;
    int detections_all;
    /* mrcnn only: what its float32 inference context keeps of the kernels across images */
    double infer_kept_mb;
    /* mrcnn only, on a CPU with AVX-512 BF16: both inferences again with bfloat16 products
     * (`--bf16`), the packed kernels they keep, and how its detections (every one kept) hold
     * against float32's: of bf16_compared, bf16_held have a partner of their class within 1 px
     * whose mask IoU is at least 0.98. */
    double infer_bf16_s, infer_all_bf16_s, bf16_kept_mb;
    int bf16_compared, bf16_held;
    /* mrcnn only: one step's time and matrix-product FLOPs by layer group, mean of the runs */
    mr_profile train_prof, infer_prof;
    /* mrcnn only: the sgemm ceiling measured just before each timed training step (GFLOPS), and
     * each step's time over its floor at that ceiling: medians over the steps */
    double step_ceiling, step_floor_ratio;
    char kernel[200]; /* torchvision only: the CPU kernels torch ended up with */
    int ok;           /* 0: the measurement failed or was not made */
} mr_bench_times;

/* One whole model (ResNet-`depth` + FPN at side x side, 3 classes, stages 3+ trainable), in
 * this process: median train step and inference over `repeats` runs after a warm-up, and this
 * process's peak RSS (so run it in a fresh process for a peak of its own). */
void mr_bench_model(int depth, int side, int repeats, mr_bench_times *res);
/* mr_bench_model's result as the lines `bench --model` prints, and each such line read back
 * into `t` (ok once the times line is read). */
void mr_bench_print_model(const mr_bench_times *t, FILE *out);
void mr_bench_read_model_line(const char *line, mr_bench_times *t);

/* check-data and one epoch of the prefetcher over a synthetic set. */
typedef struct {
    long long images;           /* in the epoch (the training side) */
    double check_s, pipeline_s; /* check-data over both sides; the epoch */
    double rss_mb;              /* this process's peak */
    double held_mb;             /* resident once the set is open */
    double epoch_growth_mb;     /* resident growth over the epoch after its first 100 images */
    int ok;
} mr_bench_data_times;

/* The data check over the synthetic set in `dir` (train/ and val/ of 64 px images), in this
 * process (run it in a fresh one for a peak RSS of its own); its result as `bench --data`
 * prints it, and such a line read back. */
void mr_bench_data(const char *dir, mr_bench_data_times *res);
void mr_bench_print_data(const mr_bench_data_times *t, FILE *out);
void mr_bench_read_data_line(const char *line, mr_bench_data_times *t);

typedef struct {
    int repeats; /* runs per measurement, 1..15 */
    bool quick;  /* 512x512 ResNet-50 only */
    /* Measures one model in a fresh process (fork() alone is not safe once OpenMP threads
     * exist), so its peak RSS is its own. */
    mr_bench_times (*isolated)(void *user, int depth, int side, int repeats);
    mr_bench_data_times (*isolated_data)(void *user, const char *dir); /* likewise mr_bench_data */
    void *user;
    const char *markdown;    /* file the results are appended to (BENCHMARKS.md); NULL: none */
    const char *onnxruntime; /* the onnxruntime-node folder; NULL: ONNX Runtime not measured */
} mr_bench_options;

/* The whole benchmark, printed to `out`; the ratio line last. Fails when a model measurement
 * does. */
mr_status mr_bench_run(const mr_bench_options *o, FILE *out);

#endif

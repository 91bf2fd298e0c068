/* `mrcnn bench`: the sgemm ceiling of this machine; forward and backward time and achieved
 * GFLOPS for the convolution shapes of ResNet-50 + FPN at 512x512; then whole-model training
 * steps, inference and peak memory for mrcnn and torchvision side by side (and the ONNX export's
 * inference in ONNX Runtime), appended to
 * BENCHMARKS.md (train/bench.h measures). This file parses the arguments and runs each model in a
 * fresh copy of itself (`bench --model`), whose one output line it reads back. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../core/runtime.h"
#include "../train/bench.h"
#include "cli.h"

/* This program re-run with `args` in a fresh process, its output to read: each measurement's
 * peak RSS is then its own, and fork() alone is not safe once OpenMP threads exist. NULL when it
 * cannot start. */
static FILE *run_self(const char *args) {
    /* popen runs a shell, whose /proc/self/exe is the shell: resolve our own path first. */
    char self[4096], cmd[8400];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return NULL;
    self[len] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' bench %s", self, args);
    fflush(NULL);
    return popen(cmd, "r");
}

/* One model measured by `bench --model`. */
static mr_bench_times run_isolated(void *user, int depth, int side, int repeats) {
    (void)user;
    mr_bench_times t = {0};
    char args[64], line[256];
    snprintf(args, sizeof args, "--model %d,%d,%d", depth, side, repeats);
    FILE *p = run_self(args);
    while (p && fgets(line, sizeof line, p)) mr_bench_read_model_line(line, &t);
    if (p) pclose(p);
    return t;
}

/* The data check of one synthetic set by `bench --data`. */
static mr_bench_data_times run_data_isolated(void *user, const char *dir) {
    (void)user;
    mr_bench_data_times t = {0};
    char args[4200], line[256];
    snprintf(args, sizeof args, "--data '%s'", dir);
    FILE *p = run_self(args);
    while (p && fgets(line, sizeof line, p)) mr_bench_read_data_line(line, &t);
    if (p) pclose(p);
    return t;
}

int cmd_bench(int argc, char **argv) {
    long repeats = 5;
    bool quick = false;
    const char *model = NULL, *data = NULL;
    mr_opt opts[] = {
        {"--repeats", MR_OPT_INT, &repeats, "runs per measurement (median), 1..15"},
        {"--quick", MR_OPT_FLAG, &quick, "512x512 ResNet-50 only, no scaling or data sections"},
        {"--model", MR_OPT_STRING, &model, "DEPTH,SIDE,REPEATS: measure one model"},
        {"--data", MR_OPT_PATH, &data, "measure the data pipeline over this synthetic set"}};
    static const mr_cli_help help = {"bench", "[--repeats N] [--quick]",
                                     "mrcnn bench --quick\n"
                                     "mrcnn bench\n"
                                     "mrcnn bench --repeats 9\n"};
    int code = 0;
    if (!mr_parse_args(&help, argc, argv, opts, 4, NULL, &code)) return code;
    if (model) {
        int depth = 0, side = 0, reps = 0;
        if (sscanf(model, "%d,%d,%d", &depth, &side, &reps) != 3 || (depth != 50 && depth != 101) ||
            side < 64 || side % 64 || reps < 1 || reps > 15) {
            fprintf(stderr, "mrcnn bench: --model expects DEPTH,SIDE,REPEATS such as 50,512,5\n");
            return 2;
        }
        mr_bench_times t = {0};
        mr_bench_model(depth, side, reps, &t);
        if (!t.ok) return mr_exit_code(MR_ERR_NOMEM);
        mr_bench_print_model(&t, stdout);
        return 0;
    }
    if (data) {
        mr_bench_data_times t;
        mr_bench_data(data, &t);
        if (!t.ok) {
            fprintf(stderr, "mrcnn bench: %s\n", mr_last_error());
            return 1;
        }
        mr_bench_print_data(&t, stdout);
        return 0;
    }
    if (repeats < 1 || repeats > 15) {
        fprintf(stderr, "mrcnn bench: --repeats must be 1..15, got %ld\n", repeats);
        return 2;
    }
    mr_runtime_banner();
    /* make bench installs it there and says so in MRCNN_ONNXRUNTIME. */
    const char *ort_dir = getenv("MRCNN_ONNXRUNTIME");
    if (!ort_dir) ort_dir = "build/onnxruntime/node_modules/onnxruntime-node";
    const mr_bench_options o = {.repeats = (int)repeats,
                                .quick = quick,
                                .isolated = run_isolated,
                                .isolated_data = run_data_isolated,
                                .markdown = "BENCHMARKS.md",
                                .onnxruntime = ort_dir};
    if (mr_bench_run(&o, stdout) != MR_OK) {
        fprintf(stderr, "mrcnn bench: %s\n", mr_last_error());
        return 1;
    }
    return 0;
}

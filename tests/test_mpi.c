/* Data-parallel training under mpirun (core/dist.h) on the tiny config: two and three processes
 * train bit for bit as one process on the same global batch does, over 50 steps and whatever
 * the thread counts (split validation agrees to rounding), gradient buckets do not change the
 * sums, a run at a given process count repeats bit for bit, a run resumes at another count,
 * SIGTERM or Ctrl-C to mpirun, a full disk under the writer and a failing or killed process
 * stop every process, each process takes its share of the cores, and a batch that does not
 * divide (or TRAIN_BN) is refused in one line.
 * Without mpirun the tests skip, saying so. */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../core/dist.h"
#include "../core/rng.h"
#include "../data/synth.h"
#include "../train/checkpoint.h"
#include "../train/trainer.h"
#include "testutil.h"

/* Split validation sums the processes' losses in double: they agree to float rounding. */
#define LOSS_RTOL 1e-4

/* Under AddressSanitizer (make test-asan) the processes run with leak detection off: OpenMPI
 * leaves allocations of its unloaded plugins at exit, which no suppression can name. Memory
 * errors and UBSan still stop them. */
#ifdef __SANITIZE_ADDRESS__
#define MPI_ENV "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "
#else
#define MPI_ENV ""
#endif

static const char *mpi_bin(void) {
    static char bin[1024];
    char out[256];
    if (run_shell("command -v mpirun", out, sizeof out) != 0)
        cr_skip_test("mpirun not installed (make installs openmpi-bin): MPI test skipped");
    const char *b = getenv("MRCNN_BIN");
    if (!b || access(b, X_OK) != 0) b = "build/mrcnn";
    cr_assert_eq(access(b, X_OK), 0, "no mrcnn binary at %s", b);
    snprintf(bin, sizeof bin, "%s", b);
    return bin;
}

/* `mpirun -np n mrcnn args` (n = 1: mrcnn alone, no mpirun) with output in out; exit code. */
static int mpi_run(int n, const char *args, char *out, size_t size) {
    const char *bin = mpi_bin();
    char cmd[8192];
    if (n == 1)
        snprintf(cmd, sizeof cmd, MPI_ENV "'%s' %s", bin, args);
    else
        snprintf(cmd, sizeof cmd,
                 MPI_ENV "mpirun --allow-run-as-root --oversubscribe -np %d -x MRCNN_TEST_FAIL -x "
                         "MRCNN_BUCKET_FLOATS -x MRCNN_TEST_FAIL_WRITES_AFTER '%s' %s",
                 n, bin, args);
    return run_shell(cmd, out, size);
}

static int count_of(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* The numbers of the step (or epoch) records of a run's log.jsonl under `key`. */
static int log_values(const char *run, const char *type, const char *key, double *v, int max) {
    char path[700], line[4096], pat[64], tag[64];
    snprintf(path, sizeof path, "%s/log.jsonl", run);
    snprintf(pat, sizeof pat, "\"%s\":", key);
    snprintf(tag, sizeof tag, "\"type\":\"%s\"", type);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    int n = 0;
    while (fgets(line, sizeof line, f) && n < max) {
        const char *p = strstr(line, pat);
        if (strstr(line, tag) && p) v[n++] = strtod(p + strlen(pat), NULL);
    }
    fclose(f);
    return n;
}

/* The largest difference between the weights of two checkpoints (0: bit-identical values and
 * momentum). */
static double weight_diff(const char *a, const char *b, const char *config, bool *identical) {
    mr_params pa, pb;
    read_checkpoint_params(a, config, &pa);
    read_checkpoint_params(b, config, &pb);
    cr_assert_eq(pa.total, pb.total);
    double d = 0.0;
    for (size_t k = 0; k < pa.total; k++)
        d = fmax(d, fabs((double)pa.values[k] - (double)pb.values[k]));
    *identical = !memcmp(pa.values, pb.values, pa.total * sizeof(float)) &&
                 !memcmp(pa.momentum, pb.momentum, pa.total * sizeof(float));
    mr_params_free(&pa);
    mr_params_free(&pb);
    return d;
}

static void expect_close(const char *one, const char *two, const char *type, const char *key,
                         int n_expected) {
    double a[64], b[64];
    int na = log_values(one, type, key, a, 64), nb = log_values(two, type, key, b, 64);
    cr_assert_eq(na, n_expected, "%s records of %s in %s", type, key, one);
    cr_assert_eq(nb, n_expected, "%s records of %s in %s", type, key, two);
    for (int i = 0; i < na; i++)
        cr_assert(fabs(a[i] - b[i]) <= LOSS_RTOL * fabs(a[i]) + 1e-7,
                  "%s %d %s: one process %.7g, two %.7g", type, i + 1, key, a[i], b[i]);
}

/* Every step's numbers under `key` are the same in both runs' logs. */
static void expect_same(const char *one, const char *other, const char *key, int n_expected) {
    double a[64], b[64];
    int na = log_values(one, "step", key, a, 64), nb = log_values(other, "step", key, b, 64);
    cr_assert_eq(na, n_expected, "step records of %s in %s", key, one);
    cr_assert_eq(nb, n_expected, "step records of %s in %s", key, other);
    for (int i = 0; i < na; i++)
        cr_assert(a[i] == b[i], "step %d %s: one process %.9g, several %.9g", i + 1, key, a[i],
                  b[i]);
}

/* Runs `train` with config into `run` under n processes, the user's default threads (without
 * OMP_NUM_THREADS: one process takes every core, each of n processes its share). */
static void train_default_threads(int n, const char *config, const char *run, char *out,
                                  size_t size) {
    char args[2048];
    snprintf(args, sizeof args, "train --config %s --out %s%s", config, run,
             n == 1 ? " --quiet" : "");
    const char *was = getenv("OMP_NUM_THREADS");
    char saved[32] = "";
    if (was) snprintf(saved, sizeof saved, "%s", was);
    unsetenv("OMP_NUM_THREADS");
    /* Idle threads sleep: the suite runs two tests at once on the machine's cores. */
    setenv("OMP_WAIT_POLICY", "passive", 1);
    int rc = mpi_run(n, args, out, size);
    unsetenv("OMP_WAIT_POLICY");
    if (saved[0]) setenv("OMP_NUM_THREADS", saved, 1);
    cr_assert_eq(rc, 0, "%s", out);
}

/* Each image's gradient is summed in one tree over the batch's positions and the processes'
 * sums in the same tree over ranks, and no product depends on the thread count: two processes
 * with a core each take the very steps one process with both cores takes. */
Test(mpi, two_processes_agree_with_one, .timeout = 300) {
    const char *dir = temp_dir("mpi-agree");
    char config[600], args[2048], out[16384], one[700], two[700], a[1300], b[1300];
    make_tiny_job(dir, 1, 50, ", \"VALIDATION_STEPS\": 0", config, sizeof config);
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(two, sizeof two, "%s/two", dir);
    train_default_threads(1, config, one, out, sizeof out);
    train_default_threads(2, config, two, out, sizeof out);
    /* One writer: the summary line once, the config summary once. */
    cr_assert_eq(count_of(out, "trained 1 epoch;"), 1, "%s", out);
    cr_assert_eq(count_of(out, "run folder"), 2, "%s", out); /* banner + summary */
    const char *keys[] = {"loss",
                          "rpn_class_loss",
                          "rpn_bbox_loss",
                          "mrcnn_class_loss",
                          "mrcnn_bbox_loss",
                          "mrcnn_mask_loss",
                          "grad_norm"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) expect_same(one, two, keys[k], 50);
    mr_checkpoint_path(a, sizeof a, one, 1, 50);
    mr_checkpoint_path(b, sizeof b, two, 1, 50);
    bool same;
    double d = weight_diff(a, b, config, &same);
    cr_assert(same, "weights after 50 steps differ by up to %g between 1 and 2 processes", d);
    /* Gradients are all-reduced in buckets started during backward; with buckets of 4096 values
     * (about 150 of them, most started long before backward ends) two processes' sums are the
     * same numbers, so the weights are bit-identical. */
    char small[700];
    snprintf(small, sizeof small, "%s/small-buckets", dir);
    snprintf(args, sizeof args, "train --config %s --out %s --quiet", config, small);
    setenv("MRCNN_BUCKET_FLOATS", "4096", 1);
    int rc = mpi_run(2, args, out, sizeof out);
    unsetenv("MRCNN_BUCKET_FLOATS");
    cr_assert_eq(rc, 0, "%s", out);
    mr_checkpoint_path(a, sizeof a, small, 1, 50);
    weight_diff(a, b, config, &same);
    cr_assert(same, "small gradient buckets changed the result");
}

/* Three processes, one image each of a batch of 3 (an odd tree over ranks), and two processes
 * with two images each of a batch of 4 (trees inside the shares): the bits of one process. */
Test(mpi, three_processes_and_shares_of_two_agree_with_one, .timeout = 300) {
    const char *dir = temp_dir("mpi-three");
    char config[600], out[16384], one[700], other[700], a[1300], b[1300];
    const struct { int batch, processes; } cases[] = {{3, 3}, {4, 2}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char extra[64], sub[600];
        snprintf(sub, sizeof sub, "%s/b%d", dir, cases[i].batch);
        mkdir(sub, 0755);
        snprintf(extra, sizeof extra, ", \"BATCH_SIZE\": %d, \"VALIDATION_STEPS\": 0",
                 cases[i].batch);
        make_tiny_job(sub, 1, 12, extra, config, sizeof config);
        snprintf(one, sizeof one, "%s/one", sub);
        snprintf(other, sizeof other, "%s/n%d", sub, cases[i].processes);
        train_default_threads(1, config, one, out, sizeof out);
        train_default_threads(cases[i].processes, config, other, out, sizeof out);
        const char *keys[] = {"loss", "rpn_class_loss", "mrcnn_class_loss", "mrcnn_mask_loss",
                              "grad_norm"};
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
            expect_same(one, other, keys[k], 12);
        mr_checkpoint_path(a, sizeof a, one, 1, 12);
        mr_checkpoint_path(b, sizeof b, other, 1, 12);
        bool same;
        double d = weight_diff(a, b, config, &same);
        cr_assert(same, "batch %d: weights differ by up to %g between 1 and %d processes",
                  cases[i].batch, d, cases[i].processes);
    }
}

/* Without OMP_NUM_THREADS, each process takes its share of the cores (mpirun --oversubscribe
 * binds nothing): two processes on this machine's cores do not oversubscribe them. The thread
 * and process counts are in the checkpoint's numerics. */
Test(mpi, each_process_takes_its_share_of_the_cores, .timeout = 120) {
    const char *dir = temp_dir("mpi-threads");
    char config[600], args[2048], out[16384], run[700], ckpt[1300];
    make_tiny_job(dir, 1, 1, ", \"VALIDATION_STEPS\": 0", config, sizeof config);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(args, sizeof args, "train --config %s --out %s --quiet", config, run);
    const char *was = getenv("OMP_NUM_THREADS");
    char saved[32] = "";
    if (was) snprintf(saved, sizeof saved, "%s", was);
    unsetenv("OMP_NUM_THREADS");
    int rc = mpi_run(2, args, out, sizeof out);
    if (saved[0]) setenv("OMP_NUM_THREADS", saved, 1);
    cr_assert_eq(rc, 0, "%s", out);
    mr_checkpoint_path(ckpt, sizeof ckpt, run, 1, 1);
    mr_checkpoint_state st;
    cr_assert_eq(mr_checkpoint_read_state(ckpt, &st), MR_OK, "%s", mr_last_error());
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    char want[64];
    snprintf(want, sizeof want, "%ld thread%s, 2 processes", cores / 2 > 1 ? cores / 2 : 1,
             cores / 2 > 1 ? "s" : "");
    cr_assert(st.metrics_json && strstr(st.metrics_json, want), "want \"%s\" in %s", want,
              st.metrics_json ? st.metrics_json : "(none)");
    mr_checkpoint_state_free(&st);
}

/* Validation is split over the processes and reduced. Its ROI samples hang on proposal ranks,
 * which the rounding of the training steps can flip, so here training moves the weights by less
 * than their last bit (a learning rate of 1e-9): the validation losses must then agree. */
Test(mpi, split_validation_agrees_with_one_process, .timeout = 240) {
    const char *dir = temp_dir("mpi-val");
    char config[600], args[2048], out[16384], one[700], two[700];
    make_tiny_job(dir, 1, 1,
                  ", \"STAGES\": [{\"LAYERS\": \"all\", \"UNTIL_EPOCH\": 100, \"LEARNING_RATE\": "
                  "1e-9}], \"VALIDATION_STEPS\": 2",
                  config, sizeof config);
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(two, sizeof two, "%s/two", dir);
    snprintf(args, sizeof args, "train --config %s --out %s --quiet", config, one);
    cr_assert_eq(mpi_run(1, args, out, sizeof out), 0, "%s", out);
    snprintf(args, sizeof args, "train --config %s --out %s --quiet", config, two);
    cr_assert_eq(mpi_run(2, args, out, sizeof out), 0, "%s", out);
    const char *keys[] = {"val_loss",
                          "val_rpn_class_loss",
                          "val_rpn_bbox_loss",
                          "val_mrcnn_class_loss",
                          "val_mrcnn_bbox_loss",
                          "val_mrcnn_mask_loss"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        expect_close(one, two, "epoch", keys[k], 1);
}

Test(mpi, a_run_repeats_bit_for_bit_and_resumes_at_any_count, .timeout = 300) {
    const char *dir = temp_dir("mpi-repeat");
    char config[600], args[2048], out[16384], r1[700], r2[700], split[700], other[700];
    char a[1300], b[1300];
    make_tiny_job(dir, 2, 3, "", config, sizeof config);
    snprintf(r1, sizeof r1, "%s/r1", dir);
    snprintf(r2, sizeof r2, "%s/r2", dir);
    snprintf(split, sizeof split, "%s/split", dir);
    snprintf(other, sizeof other, "%s/other", dir);
    const char *runs[] = {r1, r2};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "train --config %s --out %s --quiet", config, runs[i]);
        cr_assert_eq(mpi_run(2, args, out, sizeof out), 0, "%s", out);
    }
    mr_checkpoint_path(a, sizeof a, r1, 2, 6);
    mr_checkpoint_path(b, sizeof b, r2, 2, 6);
    bool same;
    weight_diff(a, b, config, &same);
    cr_assert(same, "two runs with 2 processes differ");
    /* Stopped after epoch 1 and resumed at the same count: bit-identical to the whole run. */
    snprintf(args, sizeof args, "train --config %s --out %s --quiet --epochs 1", config, split);
    cr_assert_eq(mpi_run(2, args, out, sizeof out), 0, "%s", out);
    snprintf(args, sizeof args, "train --resume %s --quiet --epochs 2", split);
    cr_assert_eq(mpi_run(2, args, out, sizeof out), 0, "%s", out);
    mr_checkpoint_path(b, sizeof b, split, 2, 6);
    weight_diff(a, b, config, &same);
    cr_assert(same, "a resume at the same process count is not bit-identical");
    /* Written by 1 process, resumed by 2 (and the other way round): the same files, and the
     * same bits as the whole run at 2, so no warning about rounding. */
    snprintf(args, sizeof args, "train --config %s --out %s --quiet --epochs 1", config, other);
    cr_assert_eq(mpi_run(1, args, out, sizeof out), 0, "%s", out);
    snprintf(args, sizeof args, "train --resume %s --epochs 2", other);
    cr_assert_eq(mpi_run(2, args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "resuming"), "%s", out);
    /* mpirun's 1 s between SIGTERM and SIGKILL is named once, with the option that lengthens it. */
    cr_assert_eq(count_of(out, "kills the processes 1 s after"), 1, "%s", out);
    cr_assert_eq(count_of(out, "--mca odls_base_sigkill_timeout 30"), 1, "%s", out);
    cr_assert(!strstr(out, "float rounding"), "a warning about rounding: %s", out);
    mr_checkpoint_path(b, sizeof b, other, 2, 6);
    weight_diff(a, b, config, &same);
    cr_assert(same, "a resume at another process count is not bit-identical");
    snprintf(args, sizeof args, "train --resume %s --quiet --epochs 3", r1);
    cr_assert_eq(mpi_run(1, args, out, sizeof out), 0, "%s", out);
    mr_checkpoint_path(b, sizeof b, r1, 3, 9);
    struct stat st;
    cr_assert_eq(stat(b, &st), 0, "no %s after resuming with one process", b);
}

/* Runs `mpirun -np 2 mrcnn train` in the background, waits until the log has two step records
 * and sends a signal: `kill_what` "TERM" or "INT" goes to mpirun (as a scheduler or Ctrl-C
 * does), "rank" is SIGKILL to one training process. For a signal, mpirun waits 10 s between its
 * SIGTERM and its SIGKILL, as the trainer advises (its default of 1 s can be shorter than a step
 * and a save under ASan on a busy machine); it sleeps that long twice whatever the processes do,
 * so a longer time would only slow the test. Returns the exit code; *seconds is the time from the
 * signal until every process had ended. */
static int run_and_signal(const char *config, const char *run, const char *kill_what, char *out,
                          size_t size, double *seconds) {
    const char *bin = mpi_bin();
    int grace = strcmp(kill_what, "rank") ? 10 : 1;
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "cd '%s/..' && { " MPI_ENV
             "mpirun --allow-run-as-root --oversubscribe --mca odls_base_sigkill_timeout %d "
             "-np 2 '%s' train --config '%s' --out '%s' > out.txt 2>&1 & M=$!; "
             "for i in $(seq 600); do [ \"$(cat '%s/log.jsonl' 2>/dev/null | "
             "grep -c '\"type\":\"step\"')\" -ge 2 ] && break; sleep 0.1; done; "
             "T0=$(date +%%s.%%N); "
             "if [ %s = rank ]; then kill -KILL $(pgrep -P $M | head -1); else kill -%s $M; fi; "
             "wait $M; rc=$?; T1=$(date +%%s.%%N); "
             "cat out.txt; awk \"BEGIN { print \\\"seconds=\\\" $T1 - $T0 }\"; exit $rc; }",
             run, grace, bin, config, run, run, kill_what, kill_what);
    int rc = run_shell(cmd, out, size);
    const char *s = strstr(out, "seconds=");
    cr_assert_not_null(s, "%s", out);
    *seconds = strtod(s + 8, NULL);
    return rc;
}

/* Steps of the job a signal stops. The signal reached the processes about 9 s after mpirun got
 * it (mpirun's kill timeout is 10 s, run_and_signal), by when the optimised build of the tiny
 * model had run 440 steps on a fast CPU (Emerald Rapids): its job must run well past that for
 * the stop to come from the signal rather than the epoch's end. Under the sanitizers a step takes
 * several times as long, and the resume's remaining steps must fit the test's timeout. */
#ifdef __SANITIZE_ADDRESS__
enum { SIGNAL_JOB_STEPS = 400 };
#else
enum { SIGNAL_JOB_STEPS = 1600 };
#endif

/* `signal` ("TERM" or "INT") to mpirun stops both processes after one step: saved once, by the
 * one writer, at the step the log ends with, and the --resume command said once. */
static void signal_stops_every_process(const char *tag, const char *signal, bool resume) {
    const char *dir = temp_dir(tag);
    char config[600], run[700], out[32768], args[1024];
    make_tiny_job(dir, 1, SIGNAL_JOB_STEPS, ", \"VALIDATION_STEPS\": 0", config, sizeof config);
    snprintf(run, sizeof run, "%s/run", dir);
    mkdir(run, 0755);
    double seconds = 0.0;
    int rc = run_and_signal(config, run, signal, out, sizeof out, &seconds);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert_lt(seconds, 60.0, "the processes took %.1f s to stop", seconds);
    cr_assert_eq(count_of(out, "(interrupted)"), 1, "%s", out);
    cr_assert_eq(count_of(out, "resume with: mrcnn train --resume"), 1, "%s", out);
    /* 10 s is read from mpirun's option, and is still named as short of what a big model needs. */
    cr_assert_eq(count_of(out, "kills the processes 10 s after"), 1, "%s", out);
    char ckpt[1200];
    cr_assert_eq(mr_checkpoint_find_latest(run, ckpt, sizeof ckpt, NULL), MR_OK, "%s",
                 mr_last_error());
    static double loss[SIGNAL_JOB_STEPS + 1];
    int steps = log_values(run, "step", "loss", loss, SIGNAL_JOB_STEPS + 1);
    cr_assert(steps >= 2 && steps < SIGNAL_JOB_STEPS, "%d steps logged", steps);
    char want[64];
    snprintf(want, sizeof want, "-s%08d.h5", steps);
    cr_assert(strstr(ckpt, want), "checkpoint %s is not where the log stops (%d steps)", ckpt,
              steps);
    if (!resume) return;
    snprintf(args, sizeof args, "train --resume %s --quiet --epochs 1", run);
    cr_assert_eq(mpi_run(1, args, out, sizeof out), 0, "%s", out);
    cr_assert_eq(log_values(run, "step", "loss", loss, SIGNAL_JOB_STEPS + 1), SIGNAL_JOB_STEPS);
}

/* SIGTERM, and the run then resumes with one process. */
Test(mpi, sigterm_to_mpirun_stops_every_process_at_one_step, .timeout = 240) {
    signal_stops_every_process("mpi-sigterm", "TERM", true);
}

/* Ctrl-C at the terminal: mpirun passes SIGINT on. */
Test(mpi, ctrl_c_to_mpirun_stops_every_process_at_one_step, .timeout = 240) {
    signal_stops_every_process("mpi-sigint", "INT", false);
}

/* A disk that fills under the writer (simulated: its writes fail with ENOSPC after the first
 * two) stops both processes: one line with the reason, the resume command once, every
 * checkpoint left whole, and the run resumes once there is room again. */
Test(mpi, a_full_disk_on_the_writer_stops_every_process, .timeout = 240) {
    const char *dir = temp_dir("mpi-full");
    char config[600], run[700], out[32768], args[2048];
    make_tiny_job(dir, 3, 3, ", \"VALIDATION_STEPS\": 1", config, sizeof config);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(args, sizeof args, "train --config %s --out %s", config, run);
    setenv("MRCNN_TEST_FAIL_WRITES_AFTER", "2", 1);
    int rc = mpi_run(2, args, out, sizeof out);
    unsetenv("MRCNN_TEST_FAIL_WRITES_AFTER");
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert_eq(count_of(out, strerror(ENOSPC)), 1, "%s", out);
    cr_assert_eq(count_of(out, "resume with: mrcnn train --resume"), 1, "%s", out);
    char ckpt[1200];
    cr_assert_eq(mr_checkpoint_find_latest(run, ckpt, sizeof ckpt, NULL), MR_OK, "%s",
                 mr_last_error());
    mr_checkpoint_state st;
    cr_assert_eq(mr_checkpoint_read_state(ckpt, &st), MR_OK, "%s", mr_last_error());
    mr_checkpoint_state_free(&st);
    char cmd[900], found[256] = "";
    snprintf(cmd, sizeof cmd, "ls -a '%s' | grep '\\.tmp' || true", run);
    cr_assert_eq(run_shell(cmd, found, sizeof found), 0);
    cr_assert_eq(found[0], '\0', "temp files left: %s", found);
    snprintf(args, sizeof args, "train --resume %s --quiet", run);
    cr_assert_eq(mpi_run(2, args, out, sizeof out), 0, "%s", out);
    double loss[16];
    cr_assert_eq(log_values(run, "step", "loss", loss, 16), 9);
}

Test(mpi, a_failing_process_stops_all_and_the_writer_saves_once, .timeout = 240) {
    const char *dir = temp_dir("mpi-fail");
    char config[600], run[700], out[32768], args[2048];
    make_tiny_job(dir, 1, 50, ", \"VALIDATION_STEPS\": 0", config, sizeof config);
    snprintf(run, sizeof run, "%s/run", dir);
    setenv("MRCNN_TEST_FAIL", "1:4", 1);
    snprintf(args, sizeof args, "train --config %s --out %s", config, run);
    int rc = mpi_run(2, args, out, sizeof out);
    unsetenv("MRCNN_TEST_FAIL");
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert_eq(count_of(out, "MRCNN_TEST_FAIL: process 1 fails at step 4"), 1, "%s", out);
    cr_assert_eq(count_of(out, "process 1 of 2 failed"), 1, "%s", out);
    cr_assert_eq(count_of(out, "resume with: mrcnn train --resume"), 1, "%s", out);
    char ckpt[1300];
    mr_checkpoint_path(ckpt, sizeof ckpt, run, 0, 4);
    struct stat st;
    cr_assert_eq(stat(ckpt, &st), 0, "no checkpoint at the failing step: %s", out);
}

/* Non-finite losses are judged on the batch's reduced loss, so every process skips the same
 * steps and all stop together after five, with one message. */
Test(mpi, non_finite_losses_stop_every_process_together, .timeout = 240) {
    const char *dir = temp_dir("mpi-nan");
    char config[600], run[700], out[32768], args[2048];
    make_tiny_job(dir, 1, 40,
                  ", \"VALIDATION_STEPS\": 0, \"GRADIENT_CLIP_NORM\": 0, \"LEARNING_RATE\": 9.99, "
                  "\"IMAGE_NORMALIZATION\": \"mean\", \"STAGES\": [{\"LAYERS\": \"all\", "
                  "\"UNTIL_EPOCH\": 100}]",
                  config, sizeof config);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(args, sizeof args, "train --config %s --out %s", config, run);
    int rc = mpi_run(2, args, out, sizeof out);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert_eq(count_of(out, "non-finite steps in a row"), 1, "%s", out);
    cr_assert_eq(count_of(out, "resume with: mrcnn train --resume"), 1, "%s", out);
}

Test(mpi, a_killed_process_ends_the_others_in_bounded_time, .timeout = 240) {
    const char *dir = temp_dir("mpi-kill");
    char config[600], run[700], out[32768];
    make_tiny_job(dir, 1, 400, ", \"VALIDATION_STEPS\": 0", config, sizeof config);
    snprintf(run, sizeof run, "%s/run", dir);
    mkdir(run, 0755);
    double seconds = 0.0;
    int rc = run_and_signal(config, run, "rank", out, sizeof out, &seconds);
    cr_assert_neq(rc, 0, "%s", out);
    cr_log_info("the other process ended %.1f s after the kill", seconds);
    cr_assert_lt(seconds, 30.0, "the surviving process took %.1f s to end: %s", seconds, out);
    double loss[512];
    cr_assert_lt(log_values(run, "step", "loss", loss, 512), 400, "the run went on: %s", out);
}

Test(mpi, refuses_a_batch_that_does_not_divide_and_train_bn, .timeout = 120) {
    const char *dir = temp_dir("mpi-refuse");
    char config[600], args[2048], out[16384], run[700];
    make_tiny_job(dir, 1, 3, "", config, sizeof config);
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(args, sizeof args, "train --config %s --out %s", config, run);
    cr_assert_neq(mpi_run(3, args, out, sizeof out), 0, "%s", out);
    cr_assert_eq(count_of(out, "BATCH_SIZE 2 does not divide among 3 processes"), 1, "%s", out);
    double loss[8];
    char log[800];
    snprintf(log, sizeof log, "%s/log.jsonl", run);
    struct stat st;
    cr_assert(stat(log, &st) != 0 || log_values(run, "step", "loss", loss, 8) == 0,
              "a refused run trained");
    char config2[600];
    const char *dir2 = temp_dir("mpi-refuse-bn");
    make_tiny_job(dir2, 1, 3, ", \"TRAIN_BN\": true", config2, sizeof config2);
    snprintf(args, sizeof args, "train --config %s --out %s/run", config2, dir2);
    cr_assert_neq(mpi_run(2, args, out, sizeof out), 0, "%s", out);
    cr_assert_eq(count_of(out, "TRAIN_BN true trains batch statistics"), 1, "%s", out);
}

/* The tree behind every sum over images and ranks: for shares of a power-of-two size, the tree
 * over the shares' trees is the tree over all parts, bit for bit, for one float per part and
 * for several; three parts are (a + b) + c. */
Test(mpi, the_sum_tree_over_shares_is_the_tree_over_all_parts) {
    mr_rng rng;
    mr_rng_seed(&rng, 3);
    enum { LEN = 5, PARTS = 8 };
    for (int trial = 0; trial < 200; trial++) {
        float parts[PARTS * LEN], copy[PARTS * LEN], whole[LEN], shares[2 * LEN], of_shares[LEN];
        for (int k = 0; k < PARTS * LEN; k++)
            parts[k] = mr_rng_normal(&rng) * (float)(1 << (k % 7 * 3));
        memcpy(copy, parts, sizeof parts);
        mr_tree_sum_f32(whole, copy, PARTS, LEN);
        for (int s = 0; s < 2; s++) {
            memcpy(copy, parts + s * 4 * LEN, sizeof(float) * 4 * LEN);
            mr_tree_sum_f32(shares + s * LEN, copy, 4, LEN);
        }
        mr_tree_sum_f32(of_shares, shares, 2, LEN);
        cr_assert(!memcmp(whole, of_shares, sizeof whole),
                  "trial %d: eight parts summed whole and as two shares of four differ", trial);
        float three[3] = {parts[0], parts[1], parts[2]}, sum3;
        mr_tree_sum_f32(&sum3, three, 3, 1);
        float want = (parts[0] + parts[1]) + parts[2];
        cr_assert(!memcmp(&sum3, &want, sizeof want), "trial %d: three parts sum to %.9g, not %.9g",
                  trial, (double)sum3, (double)want);
    }
}

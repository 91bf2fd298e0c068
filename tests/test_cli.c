/* The command line as users meet it (issue 13): every verb's --help ends with examples, options
 * mean one thing across verbs and take --name=value, misspellings get a did-you-mean, errors
 * start "mrcnn VERB: ", inspect prints its summary first and its tensors on request, and the
 * README's verb table lists every verb. Runs the built binary through run_mrcnn. */
#include <string.h>

#include "../core/runtime.h"
#include "../train/checkpoint.h"
#include "../train/config.h"
#include "testutil.h"

static const char *const verbs[] = {"demo",    "synth",    "import-busi", "check-data",
                                    "train",   "predict",  "export",      "summary",
                                    "inspect", "evaluate", "anchors",     "bench"};
#define N_VERBS (int)(sizeof verbs / sizeof verbs[0])

static const char *last_line(const char *text) {
    static _Thread_local char buf[4096];
    size_t len = strlen(text);
    while (len && text[len - 1] == '\n') len--;
    size_t start = len;
    while (start && text[start - 1] != '\n') start--;
    snprintf(buf, sizeof buf, "%.*s", (int)(len - start), text + start);
    return buf;
}

Test(cli, every_help_ends_with_examples) {
    static char out[1 << 16];
    for (int i = 0; i < N_VERBS; i++) {
        char args[64], want[64];
        snprintf(args, sizeof args, "%s --help", verbs[i]);
        cr_assert_eq(run_mrcnn(args, out, sizeof out), 0, "%s: %s", verbs[i], out);
        const char *ex = strstr(out, "\nexamples:\n");
        cr_assert_not_null(ex, "%s --help has no examples: %s", verbs[i], out);
        snprintf(want, sizeof want, "\n  mrcnn %s", verbs[i]);
        int n = 0;
        for (const char *p = ex; (p = strstr(p, want)); p++) n++;
        cr_assert(n >= 2 && n <= 3, "%s: %d examples: %s", verbs[i], n, ex);
        /* The examples end the text: nothing but example lines after the header. */
        for (const char *p = ex + strlen("\nexamples:\n"); *p; p = strchr(p, '\n') + 1)
            cr_assert(!strncmp(p, "  mrcnn ", 8), "%s: not an example line: %s", verbs[i], p);
    }
}

Test(cli, equals_form_and_did_you_mean) {
    char out[1 << 14];
    cr_assert_eq(run_mrcnn("summary --config=configs/tiny.json", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "configs/tiny.json: ResNet-50"), "%s", out);
    cr_assert_eq(run_mrcnn("summary --confg configs/tiny.json", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "mrcnn summary: unknown option '--confg'; did you mean --config?"), "%s",
              out);
    cr_assert_eq(run_mrcnn("synth --out /tmp/x --imags 3", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "did you mean --images?"), "%s", out);
    cr_assert_eq(run_mrcnn("evaluate --wieghts w.h5", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "did you mean --weights?"), "%s", out);
    /* Nothing close: no guess. */
    cr_assert_eq(run_mrcnn("synth --out /tmp/x --zebra 3", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "unknown option '--zebra' (see") && !strstr(out, "did you mean"), "%s",
              out);
    /* A flag takes no value; a value option needs one in either form. */
    cr_assert_eq(run_mrcnn("evaluate --quiet=1", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "--quiet takes no value"), "%s", out);
    cr_assert_eq(run_mrcnn("synth --images=x --out /tmp/x", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "option --images expects an integer, got 'x'"), "%s", out);
}

Test(cli, synth_equals_form_writes_the_same_set) {
    const char *dir = temp_dir("cli-synth");
    char args[1200], out[1 << 14];
    snprintf(args, sizeof args, "synth --out='%s/a' --images=3 --size=64 --seed=4", dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "wrote 3 images of 64x64 px (seed 4"), "%s", out);
}

/* --images is a count (synth, demo); check-data's folder option is --image-root, as in train and
 * evaluate; its old spelling still works, hidden, with a note. */
Test(cli, one_name_per_meaning) {
    char out[1 << 16];
    cr_assert_eq(run_mrcnn("check-data --help", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "--image-root") && !strstr(out, "  --images "), "%s", out);
    const char *verbs_with_images_count[] = {"synth --help", "demo --help"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(run_mrcnn(verbs_with_images_count[i], out, sizeof out), 0);
        cr_assert(strstr(out, "[--images N]"), "%s", out);
    }
    char args[1200];
    snprintf(args, sizeof args, "check-data --data /nonexistent/mrcnn/data --images /elsewhere");
    int rc = run_mrcnn(args, out, sizeof out);
    cr_assert_neq(rc, 0, "%s", out);
    cr_assert(strstr(out, "mrcnn check-data: note: --images is the old name of --image-root"), "%s",
              out);
    cr_assert(strstr(last_line(out), "mrcnn check-data: "), "%s", out);
}

/* Errors from the library carry the verb's name, like the parser's own. */
Test(cli, errors_name_the_verb) {
    char out[1 << 14];
    cr_assert_eq(run_mrcnn("inspect /nonexistent/mrcnn.h5", out, sizeof out), 1, "%s", out);
    cr_assert(!strncmp(last_line(out), "mrcnn inspect: ", 15), "%s", out);
    cr_assert_eq(run_mrcnn("summary --config /nonexistent/c.json", out, sizeof out), 1, "%s", out);
    cr_assert(!strncmp(last_line(out), "mrcnn summary: ", 15), "%s", out);
    /* Library messages do not name the verb again. */
    cr_assert_eq(run_mrcnn("synth --out /tmp/mrcnn-never --size 10", out, sizeof out), 2, "%s",
                 out);
    cr_assert(!strncmp(last_line(out), "mrcnn synth: --size", 19), "%s", out);
    cr_assert_eq(
        run_mrcnn("import-busi --src /nonexistent/busi --out /tmp/mrcnn-never", out, sizeof out), 1,
        "%s", out);
    cr_assert(!strncmp(last_line(out), "mrcnn import-busi: source folder", 32), "%s", out);
    cr_assert_eq(run_mrcnn("frobnicate", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "mrcnn: unknown verb 'frobnicate'") && !strstr(out, "did you mean"), "%s",
              out);
    cr_assert_eq(run_mrcnn("evalute --help", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "mrcnn: unknown verb 'evalute'; did you mean evaluate?"), "%s", out);
    cr_assert_eq(run_mrcnn("check_data", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "did you mean check-data?"), "%s", out);
}

/* A verb run without what it needs says what is missing and where its options are. */
Test(cli, a_bare_verb_points_to_its_help) {
    static char out[1 << 14];
    for (int i = 0; i < N_VERBS; i++) {
        if (!strcmp(verbs[i], "demo") || !strcmp(verbs[i], "bench")) continue; /* they run */
        char want[128];
        cr_assert_eq(run_mrcnn(verbs[i], out, sizeof out), 2, "%s: %s", verbs[i], out);
        snprintf(want, sizeof want, "mrcnn %s: ", verbs[i]);
        cr_assert(!strncmp(last_line(out), want, strlen(want)), "%s: %s", verbs[i], out);
        snprintf(want, sizeof want, "(see mrcnn %s --help)", verbs[i]);
        cr_assert(strstr(last_line(out), want), "%s: %s", verbs[i], out);
    }
}

/* `mrcnn help` lists the verbs and `mrcnn help VERB` is `mrcnn VERB --help`, a misspelt verb
 * getting its did-you-mean there too. */
Test(cli, help_verb_shows_a_verbs_options) {
    static char out[1 << 16], direct[1 << 16];
    cr_assert_eq(run_mrcnn("help", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "usage: mrcnn VERB") && strstr(out, "\n  evaluate "), "%s", out);
    cr_assert_eq(run_mrcnn("help help", direct, sizeof direct), 0, "%s", direct);
    cr_assert_str_eq(direct, out);
    cr_assert_eq(run_mrcnn("evaluate --help", direct, sizeof direct), 0, "%s", direct);
    cr_assert_eq(run_mrcnn("help evaluate", out, sizeof out), 0, "%s", out);
    cr_assert_str_eq(out, direct);
    cr_assert_eq(run_mrcnn("help evalute", out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "mrcnn: unknown verb 'evalute'; did you mean evaluate?"), "%s", out);
}

/* The README's verb table lists every verb `mrcnn --help` does. */
Test(cli, readme_lists_every_verb) {
    char out[1 << 14];
    cr_assert_eq(run_mrcnn("--help", out, sizeof out), 0, "%s", out);
    FILE *f = fopen("README.md", "r");
    cr_assert_not_null(f);
    static char readme[1 << 18];
    readme[fread(readme, 1, sizeof readme - 1, f)] = '\0';
    fclose(f);
    for (int i = 0; i < N_VERBS; i++) {
        char row[64], listed[64];
        snprintf(listed, sizeof listed, "\n  %s ", verbs[i]);
        cr_assert(strstr(out, listed), "mrcnn --help lacks %s: %s", verbs[i], out);
        snprintf(row, sizeof row, "| `mrcnn %s` |", verbs[i]);
        cr_assert(strstr(readme, row), "README's verb table lacks %s", verbs[i]);
    }
}

static void write_checkpoint(const char *path) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK, "%s", mr_last_error());
    random_test_weights(&m, 3);
    mr_checkpoint_state s = {0};
    s.epoch = 4;
    s.step = 200;
    int64_t order[2] = {3, 0};
    s.data_order = order;
    s.n_data_order = 2;
    s.config_json = mr_config_to_json(&c);
    s.val_loss = 0.75;
    cr_assert_eq(mr_checkpoint_save(path, &m.params, &s), MR_OK, "%s", mr_last_error());
    free(s.config_json);
    mr_model_free(&m);
}

/* inspect: the summary (kind, epoch, step, validation loss, config and classes, intact) first;
 * the tensor table only with --tensors; the file as FILE or --weights FILE. */
Test(cli, inspect_summary_first_tensors_on_request) {
    const char *dir = temp_dir("cli-inspect");
    char path[600], args[1400];
    static char out[1 << 20], with[1 << 20];
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    write_checkpoint(path);
    snprintf(args, sizeof args, "inspect '%s'", path);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 0, "%s", out);
    const char *kind = strstr(out, "a training checkpoint");
    const char *epoch = strstr(out, "checkpoint: epoch 4, step 200, validation loss 0.75");
    const char *cfg = strstr(out, "config: tiny; 3 classes: BG, benign, malignant");
    const char *intact = strstr(out, "intact: yes");
    cr_assert(kind && epoch && cfg && intact && kind < epoch && epoch < cfg && cfg < intact, "%s",
              out);
    cr_assert(!strstr(out, "conv1/kernel"), "no tensor table without --tensors: %s", out);
    cr_assert(strstr(out, "--tensors lists the"), "%s", out);

    snprintf(args, sizeof args, "inspect --weights='%s' --tensors", path);
    cr_assert_eq(run_mrcnn(args, with, sizeof with), 0, "%s", with);
    const char *table = strstr(with, "/params/conv1/kernel");
    cr_assert(table && strstr(with, "intact: yes") < table, "the table after the summary: %s",
              with);
    snprintf(args, sizeof args, "inspect --weights '%s' '%s'", path, path);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 2, "%s", out);
    cr_assert(strstr(out, "exactly one weights file"), "%s", out);

    cr_assert_eq(run_mrcnn("inspect tests/ref/keras_tiny.h5", out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "Keras weights") && strstr(out, "config: none stored"), "%s", out);
}

/* The widest vectors this CPU runs: 0 SSE, 1 AVX, 2 AVX2 with FMA, 3 AVX-512. */
static int cpu_vector_level(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512cd"))
        return 3;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
    return __builtin_cpu_supports("avx") ? 1 : 0;
}

/* The level of the kernels OpenBLAS 0.3.21 falls back to on CPUs it does not know by model, -1
 * for the others. */
static int fallback_kernel_level(const char *kernel) {
    static const char *const names[] = {"Prescott", "Sandybridge", "Haswell", "Zen"};
    static const int levels[] = {0, 1, 2, 2};
    for (int i = 0; i < 4; i++)
        if (!strcmp(kernel, names[i])) return levels[i];
    return -1;
}

/* `mrcnn --version` under the environment prefix `env`: its output and the kernel it names. */
static void version_kernel(const char *env, char *out, size_t n, char *kernel) {
    const char *bin = getenv("MRCNN_BIN") ? getenv("MRCNN_BIN") : "build/mrcnn";
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "env %s '%s' --version", env, bin);
    cr_assert_eq(run_shell(cmd, out, n), 0, "%s: %s", cmd, out);
    const char *k = strstr(out, " kernel ");
    cr_assert_not_null(k, "%s: no kernel named: %s", cmd, out);
    cr_assert_eq(sscanf(k, " kernel %31[^,]", kernel), 1, "%s", out);
}

/* OpenBLAS 0.3.21 runs a slower fallback kernel on CPUs it does not know by model (Prescott, a
 * sixth of the speed, on Emerald Rapids; Haswell on Zen 4). mrcnn runs the one the CPU's vectors
 * call for and says what it replaced; a kernel the user set is kept; this suite's workers run
 * the kernel its `mrcnn` runs do (tests/main.c). */
Test(cli, runs_the_kernel_this_cpu_calls_for) {
    char out[4096], kernel[32], pinned[32], in_process[32];
    const int level = cpu_vector_level();
    version_kernel("-u OPENBLAS_CORETYPE", out, sizeof out, kernel);
    const int got = fallback_kernel_level(kernel);
    cr_assert(got < 0 || got >= level, "vector level %d, yet the fallback kernel %s: %s", level,
              kernel, out);
    const char *over = strstr(out, "chose this kernel over ");
    if (over) {
        char was[32];
        cr_assert_eq(sscanf(over, "chose this kernel over %31[^,]", was), 1, "%s", out);
        cr_assert(fallback_kernel_level(was) >= 0 && fallback_kernel_level(was) < level, "%s", out);
    }
    cr_log_info("this CPU: vector level %d, mrcnn runs %s%s", level, kernel,
                over ? " in place of OpenBLAS's fallback" : ", OpenBLAS's own pick");

    version_kernel("OPENBLAS_CORETYPE=Prescott", out, sizeof out, pinned);
    cr_assert_str_eq(pinned, "Prescott", "the user's kernel is kept: %s", out);
    cr_assert_null(strstr(out, "chose this kernel"), "%s", out);

    cr_assert_eq(sscanf(strstr(mr_runtime_numerics(), "kernel "), "kernel %31[^,]", in_process), 1);
    version_kernel("", out, sizeof out, kernel);
    cr_assert_str_eq(in_process, kernel, "tests and `mrcnn` run one kernel: %s", out);
}

/* `mrcnn demo` from another folder finds configs/tiny.json beside the executable it was built as,
 * and reads its config before it writes anything: a missing one costs no images. */
Test(cli, demo_runs_from_any_folder_and_reads_its_config_first, .timeout = 300) {
    const char *env = getenv("MRCNN_BIN");
    char bin[4096];
    cr_assert_not_null(realpath(env && access(env, X_OK) == 0 ? env : "build/mrcnn", bin));
    const char *dir = temp_dir("demo");
    char cmd[9000], path[4200];
    static char out[1 << 16];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' demo --out d --images 10 --epochs 1", dir, bin);
    cr_assert_eq(run_shell(cmd, out, sizeof out), 0, "%s", out);
    cr_assert_not_null(strstr(out, "\ndone.\n"), "%s", out);
    snprintf(path, sizeof path, "%s/d/run", dir);
    char ckpt[4400];
    cr_assert_eq(mr_checkpoint_find_latest(path, ckpt, sizeof ckpt, NULL), MR_OK, "%s",
                 mr_last_error());

    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' demo --out d2 --config nowhere.json", dir, bin);
    cr_assert_eq(run_shell(cmd, out, sizeof out), 1, "%s", out);
    cr_assert(!strncmp(last_line(out), "mrcnn demo: ", 12) && strstr(out, "nowhere.json"), "%s",
              out);
    snprintf(path, sizeof path, "%s/d2", dir);
    cr_assert_neq(access(path, F_OK), 0, "the demo wrote %s before reading its config", path);

    /* An executable away from the mrcnn folder, run away from it too: one line, nothing written. */
    snprintf(cmd, sizeof cmd,
             "mkdir '%s/bin' && cp '%s' '%s/bin/mrcnn' && cd '%s' && bin/mrcnn demo --out d3", dir,
             bin, dir, dir);
    cr_assert_eq(run_shell(cmd, out, sizeof out), 2, "%s", out);
    cr_assert(!strncmp(last_line(out), "mrcnn demo: configs/tiny.json is found neither", 46), "%s",
              out);
    snprintf(path, sizeof path, "%s/d3", dir);
    cr_assert_neq(access(path, F_OK), 0, "the demo wrote %s without a config", path);
}

/* The training loop as users run it: a short fine-tune on synthetic ultrasound lowers the
 * validation loss; an interrupted run resumed with --resume ends bit-identical to one never
 * interrupted (at an epoch boundary and mid-epoch); a kill -9 during a checkpoint write leaves
 * the previous checkpoint loadable; bad data fails before the first step. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../data/synth.h"
#include "../train/checkpoint.h"
#include "../train/data_source.h"
#include "../train/evaluate.h"
#include "../train/trainer.h"
#include "testutil.h"

/* A tiny config over a synthetic set, written into `dir`; `extra` adds keys (", \"K\": v"). */
/* Keys that make training diverge within a few steps. */
#define NON_FINITE_KEYS                                                                            \
    ", \"GRADIENT_CLIP_NORM\": 0, \"LEARNING_RATE\": 9.99, \"IMAGE_NORMALIZATION\": \"mean\", "    \
    "\"STAGES\": [{\"LAYERS\": \"all\", \"UNTIL_EPOCH\": 100}]"

static void make_job(const char *dir, int epochs, int steps, char *config_path, size_t size) {
    make_tiny_job(dir, epochs, steps, "", config_path, size);
}

static mr_status run(const char *config, const char *out, const char *resume, int max_steps,
                     mr_train_result *r) {
    mr_train_options opt = {.config_path = resume ? NULL : config,
                            .out_dir = resume ? NULL : out,
                            .resume_dir = resume,
                            .quiet = true,
                            .max_steps = max_steps};
    return mr_train(&opt, r);
}

static void expect_identical(const char *a, const char *b, const char *config) {
    mr_params pa, pb;
    read_checkpoint_params(a, config, &pa);
    read_checkpoint_params(b, config, &pb);
    cr_assert_eq(pa.total, pb.total);
    cr_assert(memcmp(pa.values, pb.values, pa.total * sizeof(float)) == 0,
              "weights of %s and %s differ", a, b);
    cr_assert(memcmp(pa.momentum, pb.momentum, pa.total * sizeof(float)) == 0,
              "momentum of %s and %s differs", a, b);
    mr_params_free(&pa);
    mr_params_free(&pb);
}

Test(train, resume_is_bit_exact, .timeout = 300) {
    const char *dir = temp_dir("resume");
    char config[600], straight[600], split[600], mid[600], a[1300], b[1300];
    make_job(dir, 4, 3, config, sizeof config);
    snprintf(straight, sizeof straight, "%s/straight", dir);
    snprintf(split, sizeof split, "%s/split", dir);
    snprintf(mid, sizeof mid, "%s/mid", dir);
    mr_train_result r;
    cr_assert_eq(run(config, straight, NULL, 0, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.epochs_done, 4);
    /* 2 epochs, stop, resume for the other 2. */
    cr_assert_eq(run(config, split, NULL, 6, &r), MR_ERR_INTERRUPTED);
    cr_assert(strstr(mr_last_error(), "mrcnn train --resume"), "%s", mr_last_error());
    cr_assert_eq(run(NULL, NULL, split, 0, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.epochs_done, 4);
    /* Stopped in the middle of epoch 2 (after 4 steps of 3-step epochs). */
    cr_assert_eq(run(config, mid, NULL, 4, &r), MR_ERR_INTERRUPTED);
    /* The message counts as the checkpoint's name does: epochs complete, steps done. */
    cr_assert(strstr(mr_last_error(), "stopped after 4 steps (1 epoch complete + 1 step); saved "
                                      "ckpt-e0001-s00000004.h5"),
              "%s", mr_last_error());
    cr_assert_eq(run(NULL, NULL, mid, 0, &r), MR_OK, "%s", mr_last_error());
    mr_checkpoint_path(a, sizeof a, straight, 4, 12);
    mr_checkpoint_path(b, sizeof b, split, 4, 12);
    expect_identical(a, b, config);
    mr_checkpoint_path(b, sizeof b, mid, 4, 12);
    expect_identical(a, b, config);
}

/* On 12 training images the validation loss of the from-scratch recipe is noisy (its sampled
 * ROIs change as the proposals improve); the training loss of an epoch is what must fall. */
Test(train, short_fine_tune_lowers_the_epoch_loss, .timeout = 300) {
    const char *dir = temp_dir("finetune");
    char config[600], out[600];
    make_job(dir, 6, 12, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    mr_train_result r;
    cr_assert_eq(run(config, out, NULL, 0, &r), MR_OK, "%s", mr_last_error());
    /* Each epoch's mean training loss is in the log; the last must be lower than the first. */
    char path[700], line[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", out);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    double first = NAN, last = NAN;
    int epochs = 0, steps = 0;
    while (fgets(line, sizeof line, f)) {
        if (strstr(line, "\"type\":\"step\"")) steps++;
        const char *v = strstr(line, "\"type\":\"epoch\"");
        if (!v) continue;
        const char *loss = strstr(line, "\"loss\":");
        cr_assert_not_null(loss, "%s", line);
        last = strtod(loss + 7, NULL);
        if (epochs++ == 0) first = last;
        /* Each epoch also scores detections on the validation images (VALIDATION_METRICS 1). */
        const char *ap = strstr(line, "\"val_mask_ap50\":");
        cr_assert_not_null(ap, "epoch record without detection metrics: %s", line);
        cr_assert(strstr(line, "\"val_sensitivity\":") && strstr(line, "\"val_images\":4"), "%s",
                  line);
        double a = strtod(ap + 16, NULL);
        cr_assert(a >= 0.0 && a <= 1.0, "mask AP50 %f", a);
    }
    fclose(f);
    cr_assert_eq(epochs, 6);
    cr_assert_eq(steps, 72);
    cr_log_info("epoch loss %.4f in epoch 1, %.4f in epoch 6", first, last);
    cr_assert_lt(last, first, "epoch loss %f -> %f", first, last);
    snprintf(path, sizeof path, "%s/report.html", out);
    f = fopen(path, "r");
    cr_assert_not_null(f, "report.html written");
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    cr_assert(strstr(line, "<svg"), "the report holds inline SVG charts");
}

Test(train, warmup_raises_the_learning_rate_linearly, .timeout = 120) {
    const char *dir = temp_dir("warmup");
    char config[600], out[600];
    make_tiny_job(dir, 1, 6, ", \"WARMUP_STEPS\": 4, \"VALIDATION_STEPS\": 0", config,
                  sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    mr_train_result r;
    cr_assert_eq(run(config, out, NULL, 0, &r), MR_OK, "%s", mr_last_error());
    char path[700], line[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", out);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    double lr[6];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < 6) {
        const char *v = strstr(line, "\"lr\":");
        if (strstr(line, "\"type\":\"step\"") && v) lr[n++] = strtod(v + 5, NULL);
    }
    fclose(f);
    cr_assert_eq(n, 6);
    /* tiny.json's 0.01, from 1/1000 of it over 4 steps: 0.001 + (1 - 0.001) * step / 4. */
    for (int s = 0; s < 6; s++) {
        double want = 0.01 * (s < 4 ? 0.001 + 0.999 * s / 4.0 : 1.0);
        cr_assert_float_eq(lr[s], want, 1e-6 * want + 1e-9, "step %d: lr %g, want %g", s + 1, lr[s],
                           want);
    }
}

/* VALIDATION_METRICS 2 scores the validation images at epochs 2 and 4 only, and 0 never; the
 * validation loss is logged every epoch either way. */
Test(train, validation_metrics_thinned_or_turned_off, .timeout = 240) {
    for (int every = 0; every <= 2; every += 2) {
        const char *dir = temp_dir(every ? "metrics-thin" : "metrics-off");
        char config[600], out[600], keys[128];
        snprintf(keys, sizeof keys, ", \"VALIDATION_METRICS\": %d, \"VALIDATION_STEPS\": 1", every);
        make_tiny_job(dir, 4, 1, keys, config, sizeof config);
        snprintf(out, sizeof out, "%s/run", dir);
        mr_train_result r;
        cr_assert_eq(run(config, out, NULL, 0, &r), MR_OK, "%s", mr_last_error());
        char path[700], line[8192];
        snprintf(path, sizeof path, "%s/log.jsonl", out);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f);
        int epochs = 0, scored = 0;
        while (fgets(line, sizeof line, f)) {
            if (!strstr(line, "\"type\":\"epoch\"")) continue;
            epochs++;
            cr_assert(strstr(line, "\"val_loss\":"), "%s", line);
            if (!strstr(line, "\"val_mask_ap50\":")) continue;
            scored++;
            cr_assert(every && epochs % every == 0, "epoch %d scored with VALIDATION_METRICS %d",
                      epochs, every);
        }
        fclose(f);
        cr_assert_eq(epochs, 4);
        cr_assert_eq(scored, every ? 4 / every : 0, "VALIDATION_METRICS %d", every);
    }
}

/* The most step memory detection takes on any one validation image, with the weights of the
 * run's last checkpoint: what validation and the report's overlays need at most, image by image. */
static size_t one_image_detection_peak(const char *config, const char *run_dir) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load(config, &c), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_data_resolve(&c, &(mr_data_args){0}), MR_OK, "%s", mr_last_error());
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK, "%s", mr_last_error());
    char ckpt[1200];
    cr_assert_eq(mr_checkpoint_find_latest(run_dir, ckpt, sizeof ckpt, NULL), MR_OK);
    mr_checkpoint_state st;
    cr_assert_eq(mr_checkpoint_load(ckpt, &m.params, &st), MR_OK, "%s", mr_last_error());
    mr_checkpoint_state_free(&st);
    mr_dataset *val = NULL;
    cr_assert_eq(mr_data_open_part(&c, MR_DATA_VAL, &val, NULL), MR_OK, "%s", mr_last_error());
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, (size_t)c.arena_mb << 20), MR_OK);
    mr_evaluation e;
    const mr_eval_options eo = {.det_threshold = 0.0f, .op_threshold = 0.5f};
    cr_assert_eq(mr_evaluation_init(&e, c.net.num_classes, &eo), MR_OK);
    cr_assert_eq(mr_evaluate_model(&e, &ctx, &m, val, 0, NULL, NULL, NULL), MR_OK, "%s",
                 mr_last_error());
    size_t peak = ctx.arena.high_water;
    mr_evaluation_free(&e);
    mr_ctx_free(&ctx);
    mr_dataset_close(val);
    mr_model_free(&m);
    return peak;
}

/* Validation and the report's overlays go image by image: detected together (three panels here),
 * the step arena would hold their sum and keep that high-water mark for the rest of the run
 * (ResNet-101 at 512 px: 2.8 GB of peak memory instead of 1.5). The keys make one image's
 * detection outweigh a training step (1000 proposals, 100 masks, one image a step), so the run's
 * peak is that of detecting the heaviest image alone. */
Test(train, validation_and_overlays_detect_one_image_at_a_time, .timeout = 240) {
    size_t peak[2];
    char config[2][600], out[2][600];
    for (int with_val = 0; with_val <= 1; with_val++) {
        const char *dir = temp_dir(with_val ? "memory-val" : "memory-noval");
        char keys[300];
        snprintf(keys, sizeof keys,
                 ", \"BATCH_SIZE\": 1, \"POST_NMS_ROIS_INFERENCE\": 1000, "
                 "\"DETECTION_MAX_INSTANCES\": 100, \"DETECTION_MIN_CONFIDENCE\": 0%s",
                 with_val ? "" : ", \"VALIDATION_STEPS\": 0");
        make_tiny_job(dir, 1, 2, keys, config[with_val], sizeof config[with_val]);
        snprintf(out[with_val], sizeof out[with_val], "%s/run", dir);
        mr_train_result r;
        cr_assert_eq(run(config[with_val], out[with_val], NULL, 0, &r), MR_OK, "%s",
                     mr_last_error());
        int panels = 0;
        for (int k = 1; k <= 4; k++) {
            char overlay[700];
            snprintf(overlay, sizeof overlay, "%s/overlay_%d.png", out[with_val], k);
            panels += access(overlay, F_OK) == 0;
        }
        cr_assert_eq(panels, with_val ? 3 : 0, "%d panels", panels);
        peak[with_val] = r.step_memory_peak;
    }
    const size_t one = one_image_detection_peak(config[1], out[1]);
    cr_assert_gt(one, peak[0], "one image's detection (%zu bytes) should outweigh a step (%zu)",
                 one, peak[0]);
    cr_assert_eq(peak[1], one, "step memory peaked at %zu bytes; detecting one image takes %zu",
                 peak[1], one);
}

static char *read_whole(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    rewind(f);
    char *bytes = malloc(*size);
    cr_assert(bytes && fread(bytes, 1, *size, f) == *size);
    fclose(f);
    return bytes;
}

/* The panels draw the detections validation scoring kept (at every confidence) cut to
 * DETECTION_MIN_CONFIDENCE: the same pictures as detecting them again at that confidence. */
Test(train, overlays_from_scored_detections_match_detecting_again, .timeout = 240) {
    const char *modes[3] = {", \"DETECTION_MIN_CONFIDENCE\": 0.4",
                            ", \"DETECTION_MIN_CONFIDENCE\": 0.4, \"VALIDATION_METRICS\": 0",
                            ", \"DETECTION_MIN_CONFIDENCE\": 0"};
    char out[3][600];
    for (int k = 0; k < 3; k++) {
        const char *dir = temp_dir("panels");
        char config[600];
        make_tiny_job(dir, 1, 3, modes[k], config, sizeof config);
        snprintf(out[k], sizeof out[k], "%s/run", dir);
        mr_train_result r;
        cr_assert_eq(run(config, out[k], NULL, 0, &r), MR_OK, "%s", mr_last_error());
    }
    int differ_at_zero = 0;
    for (int panel = 1; panel <= 3; panel++) {
        char path[3][2048];
        char *bytes[3];
        size_t size[3];
        for (int k = 0; k < 3; k++) {
            snprintf(path[k], sizeof path[k], "%s/overlay_%d.png", out[k], panel);
            bytes[k] = read_whole(path[k], &size[k]);
        }
        cr_assert(size[0] == size[1] && !memcmp(bytes[0], bytes[1], size[0]), "%s and %s differ",
                  path[0], path[1]);
        differ_at_zero += size[0] != size[2] || memcmp(bytes[0], bytes[2], size[0]);
        for (int k = 0; k < 3; k++) free(bytes[k]);
    }
    /* Otherwise nothing here scored between the two confidences, and the cut went untested. */
    cr_assert_gt(differ_at_zero, 0, "no panel has a detection scored below 0.4");
}

static bool kill_on_second_fsync(const char *stage, void *user) {
    int *count = user;
    if (!strcmp(stage, "fsync") && ++*count == 2) raise(SIGKILL);
    return false;
}

Test(train, kill_during_checkpoint_write_keeps_the_previous, .timeout = 300) {
    const char *dir = temp_dir("kill");
    char config[600], out[600];
    make_job(dir, 3, 2, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    pid_t pid = fork();
    if (pid == 0) {
        static int count = 0;
        mr_h5_set_save_fail_hook(kill_on_second_fsync, &count);
        mr_train_result r;
        run(config, out, NULL, 0, &r);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the child was killed");
    char latest[1300];
    cr_assert_eq(mr_checkpoint_find_latest(out, latest, sizeof latest, NULL), MR_OK);
    cr_assert(strstr(latest, "ckpt-e0001-"), "previous checkpoint %s", latest);
    mr_train_result r;
    cr_assert_eq(run(NULL, NULL, out, 0, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.epochs_done, 3);
}

Test(train, bad_data_fails_before_the_first_step) {
    const char *dir = temp_dir("baddata");
    char config[600], out[600], via[700];
    make_job(dir, 1, 1, config, sizeof config);
    snprintf(via, sizeof via, "%s/data/train/via_region_data.json", dir);
    FILE *f = fopen(via, "w");
    fputs("{\"x.png1\": {\"filename\": \"missing.png\", \"size\": 1, \"regions\": [], "
          "\"file_attributes\": {}}}",
          f);
    fclose(f);
    snprintf(out, sizeof out, "%s/run", dir);
    mr_train_result r;
    cr_assert_neq(run(config, out, NULL, 0, &r), MR_OK);
    cr_assert(strstr(mr_last_error(), "missing.png"), "%s", mr_last_error());
    char ckpt[700];
    cr_assert_neq(mr_checkpoint_find_latest(out, ckpt, sizeof ckpt, NULL), MR_OK,
                  "no checkpoint written");
}

Test(train, non_finite_losses_stop_with_the_loss_named, .timeout = 120) {
    const char *dir = temp_dir("nan");
    char config[600], out[600];
    /* A learning rate this large on unscaled pixels makes the weights overflow within a few
     * steps. */
    make_tiny_job(dir, 2, 10, NON_FINITE_KEYS, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    mr_train_result r;
    cr_assert_eq(run(config, out, NULL, 0, &r), MR_ERR_NUMERIC, "%s", mr_last_error());
    const char *msg = mr_last_error();
    /* Either a loss or, when the loss is still finite, the parameter whose gradient is not;
     * and the images of the step. */
    cr_assert(strstr(msg, "non-finite steps in a row") &&
                  (strstr(msg, "_loss") || strstr(msg, "gradient of ")) &&
                  strstr(msg, "images: ") && strstr(msg, ".png"),
              "the message names the loss and the images: %s", msg);
}

/* The real command line: SIGTERM during training finishes the step, saves, exits 130 with
 * the resume command; --resume then completes the run. */
Test(train, sigterm_saves_and_resume_completes, .timeout = 300) {
    const char *bin = getenv("MRCNN_BIN");
    if (!bin || access(bin, X_OK) != 0) cr_skip_test("MRCNN_BIN not set: signal test not run");
    const char *dir = temp_dir("sigterm");
    char config[600], out[600], log[700], errs[700];
    make_job(dir, 3, 40, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(log, sizeof log, "%s/log.jsonl", out);
    snprintf(errs, sizeof errs, "%s/stderr.txt", dir);
    pid_t pid = fork();
    if (pid == 0) {
        FILE *e = freopen(errs, "w", stderr);
        (void)e;
        execl(bin, bin, "train", "--config", config, "--out", out, "--quiet", (char *)NULL);
        _exit(127);
    }
    /* Wait for the first logged step, then ask it to stop. */
    for (int i = 0; i < 600; i++) {
        FILE *f = fopen(log, "r");
        char line[4096];
        bool stepped = f && fgets(line, sizeof line, f);
        if (f) fclose(f);
        if (stepped) break;
        usleep(50 * 1000);
    }
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    /* 130, as a shell reports a program Ctrl-C ended: stopped, not failed. */
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 130, "exit status %d", status);
    FILE *f = fopen(errs, "r");
    char text[8192] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    cr_assert(strstr(text, "mrcnn train: stopped") && strstr(text, "mrcnn train --resume"),
              "the message says how to resume: %s", text);
    char latest[1300];
    cr_assert_eq(mr_checkpoint_find_latest(out, latest, sizeof latest, NULL), MR_OK);
    mr_train_result r;
    cr_assert_eq(run(NULL, NULL, out, 0, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.epochs_done, 3);
}

/* Every file of a folder, names and bytes, as one string to compare before and after. */
static char *folder_snapshot(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cd '%s' && ls -la --time-style=+%%s . && md5sum * 2>/dev/null", dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char *text = calloc(1, 1 << 16);
    size_t n = fread(text, 1, (1 << 16) - 1, p);
    text[n] = '\0';
    pclose(p);
    return text;
}

Test(train, out_folder_holding_a_run_is_refused_unchanged, .timeout = 300) {
    const char *dir = temp_dir("outrefuse");
    char config[600], out[600];
    make_job(dir, 1, 2, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    mr_train_result r;
    cr_assert_eq(run(config, out, NULL, 0, &r), MR_OK, "%s", mr_last_error());
    char *before = folder_snapshot(out);
    cr_assert_eq(run(config, out, NULL, 0, &r), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "already holds a run") &&
                  strstr(mr_last_error(), "--resume") && strstr(mr_last_error(), "--force"),
              "%s", mr_last_error());
    char *after = folder_snapshot(out);
    cr_assert_str_eq(before, after, "the refused run changed the folder");
    /* --force starts again: the old run's checkpoint goes, a new one is written. */
    mr_train_options opt = {
        .config_path = config, .out_dir = out, .quiet = true, .force = true, .epochs = 1};
    cr_assert_eq(mr_train(&opt, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.epochs_done, 1);
    free(before);
    free(after);
}

Test(train, runs_started_in_the_same_minute_get_their_own_folders, .timeout = 300) {
    const char *dir = temp_dir("defaultdir");
    char config[600];
    make_job(dir, 1, 1, config, sizeof config);
    cr_assert_eq(chdir(dir), 0);
    mr_train_result a, b;
    mr_train_options opt = {.config_path = config, .quiet = true};
    cr_assert_eq(mr_train(&opt, &a), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_train(&opt, &b), MR_OK, "%s", mr_last_error());
    cr_assert(!strncmp(a.run_dir, "runs/tiny-", 10), "%s", a.run_dir);
    cr_assert_str_neq(a.run_dir, b.run_dir, "two runs share %s", a.run_dir);
    char la[1300], lb[1300];
    cr_assert_eq(mr_checkpoint_find_latest(a.run_dir, la, sizeof la, NULL), MR_OK);
    cr_assert_eq(mr_checkpoint_find_latest(b.run_dir, lb, sizeof lb, NULL), MR_OK);
}

Test(train, resume_of_a_complete_run_says_how_to_train_longer, .timeout = 300) {
    const char *dir = temp_dir("complete");
    char config[600], out[600], args[1400], text[8192];
    make_job(dir, 1, 1, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    mr_train_result r;
    cr_assert_eq(run(config, out, NULL, 0, &r), MR_OK, "%s", mr_last_error());
    char *before = folder_snapshot(out);
    snprintf(args, sizeof args, "train --resume '%s'", out);
    int rc = run_mrcnn(args, text, sizeof text);
    cr_assert_eq(rc, 0, "%s", text);
    cr_assert(strstr(text, "is complete: 1 of 1 epochs") && strstr(text, "--epochs N"), "%s", text);
    char *after = folder_snapshot(out);
    cr_assert_str_eq(before, after, "resuming a complete run changed it");
    /* --epochs 0 means nothing: refused as negatives are. */
    snprintf(args, sizeof args, "train --resume '%s' --epochs 0", out);
    cr_assert_eq(run_mrcnn(args, text, sizeof text), 2, "%s", text);
    cr_assert(strstr(text, "--epochs must be 1.."), "%s", text);
    free(before);
    free(after);
}

Test(train, resume_on_other_data_needs_force, .timeout = 300) {
    const char *dir = temp_dir("otherdata");
    char config[600], out[600], other[600];
    make_job(dir, 2, 2, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    mr_train_result r;
    cr_assert_eq(run(config, out, NULL, 2, &r), MR_ERR_INTERRUPTED, "%s", mr_last_error());
    snprintf(other, sizeof other, "%s/other", dir);
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.out_dir = other;
    o.n_images = 8;
    o.size = 128;
    o.seed = 99;
    o.val_fraction = 0.25;
    cr_assert_eq(mr_synth_write(&o), MR_OK, "%s", mr_last_error());
    mr_train_options opt = {.resume_dir = out, .data_dir = other, .quiet = true};
    cr_assert_eq(mr_train(&opt, &r), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "exact resume") && strstr(mr_last_error(), "--force"), "%s",
              mr_last_error());
    /* The same data named another way (its train/ folder) is the same data. */
    char same[700];
    snprintf(same, sizeof same, "%s/data/train", dir);
    opt.data_dir = same;
    opt.max_steps = 1;
    cr_assert_eq(mr_train(&opt, &r), MR_ERR_INTERRUPTED, "%s", mr_last_error());
    opt.data_dir = other;
    opt.max_steps = 0;
    opt.force = true;
    cr_assert_eq(mr_train(&opt, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.epochs_done, 2);
}

/* The "loss" of the epoch record for `epoch` in a run's log.jsonl, as written. */
static void epoch_loss_text(const char *run_dir, int epoch, char *out, size_t n) {
    char path[1300], want[64], line[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", run_dir);
    snprintf(want, sizeof want, "{\"type\":\"epoch\",\"epoch\":%d,\"loss\":", epoch);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    out[0] = '\0';
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, want, strlen(want)))
            snprintf(out, n, "%.*s", (int)strcspn(line + strlen(want), ","), line + strlen(want));
    fclose(f);
    cr_assert(out[0], "no epoch %d record in %s", epoch, path);
}

Test(train, epoch_loss_after_a_mid_epoch_resume_covers_the_whole_epoch, .timeout = 300) {
    const char *dir = temp_dir("epochloss");
    char config[600], straight[600], split[600], a[64], b[64];
    make_job(dir, 1, 4, config, sizeof config);
    snprintf(straight, sizeof straight, "%s/straight", dir);
    snprintf(split, sizeof split, "%s/split", dir);
    mr_train_result r;
    cr_assert_eq(run(config, straight, NULL, 0, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(run(config, split, NULL, 3, &r), MR_ERR_INTERRUPTED, "%s", mr_last_error());
    cr_assert_eq(run(NULL, NULL, split, 0, &r), MR_OK, "%s", mr_last_error());
    epoch_loss_text(straight, 1, a, sizeof a);
    epoch_loss_text(split, 1, b, sizeof b);
    cr_assert_str_eq(a, b, "epoch loss %s uninterrupted, %s after a resume at step 3", a, b);
}

/* A failure after training began (here: non-finite steps) saves where training stands and
 * ends with the --resume command; the resume starts from that checkpoint. */
Test(train, failure_inside_training_saves_and_says_how_to_resume, .timeout = 120) {
    const char *dir = temp_dir("failsave");
    char config[600], out[600];
    make_tiny_job(dir, 1, 8, NON_FINITE_KEYS, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    mr_train_result r;
    cr_assert_eq(run(config, out, NULL, 0, &r), MR_ERR_NUMERIC, "%s", mr_last_error());
    cr_assert(strstr(mr_last_error(), "with: mrcnn train --resume"), "%s", mr_last_error());
    char latest[1300];
    cr_assert_eq(mr_checkpoint_find_latest(out, latest, sizeof latest, NULL), MR_OK,
                 "a checkpoint was saved on the way out");
}

/* A disk that fills during training: exit with a true message, the previous checkpoint
 * intact and named. A small tmpfs where root may mount one; else the save's injected failure. */
static bool fail_second_create(const char *stage, void *user) {
    int *count = user;
    return !strcmp(stage, "create") && ++*count == 2;
}

Test(train, full_disk_during_training_keeps_the_previous_checkpoint, .timeout = 300) {
    const char *dir = temp_dir("fulldisk");
    char config[600], out[600], cmd[1400];
    make_job(dir, 3, 1, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    cr_assert_eq(mkdir(out, 0755), 0);
    /* Room for one checkpoint of this model (5.3 MB) and not for two. */
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=9m tmpfs '%s' 2>/dev/null", out);
    bool real = geteuid() == 0 && system(cmd) == 0;
    static int count = 0;
    if (!real) mr_h5_set_save_fail_hook(fail_second_create, &count);
    mr_train_result r;
    mr_status st = run(config, out, NULL, 0, &r);
    char msg[4096];
    snprintf(msg, sizeof msg, "%s", mr_last_error());
    char latest[1300];
    mr_status found = mr_checkpoint_find_latest(out, latest, sizeof latest, NULL);
    if (real) {
        snprintf(cmd, sizeof cmd, "umount '%s'", out);
        cr_assert_eq(system(cmd), 0);
    }
    mr_h5_set_save_fail_hook(NULL, NULL);
    cr_assert_eq(st, MR_ERR_IO, "%s", msg);
    cr_assert(strstr(msg, "is intact") && strstr(msg, "ckpt-e0001-"), "%s", msg);
    cr_assert_eq(found, MR_OK, "the first checkpoint survives");
    cr_assert(strstr(latest, "ckpt-e0001-"), "%s", latest);
}

/* HDF5 itself meeting a failed write (a disk that fills between the space check and the save):
 * the save fails with the OS reason, leaves no temp file, and the process still exits cleanly
 * (HDF5 used to keep the half-written file open and crash in its shutdown at exit). A file-size
 * limit makes the writes fail as a full disk would, without root. */
Test(train, hdf5_write_failure_fails_cleanly) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    const char *dir = temp_dir("efbig");
    char path[600], tmp[700], why[64];
    snprintf(path, sizeof path, "%s/ckpt-e0001-s00000001.h5", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(why, sizeof why, "%s", strerror(EFBIG));
    /* In a child that exits through exit(), so HDF5's shutdown runs and a crash there shows. */
    pid_t pid = fork();
    if (pid == 0) {
        mr_checkpoint_state s = {.epoch = 1, .step = 1, .val_loss = NAN};
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit old, small = {.rlim_cur = 1 << 20};
        if (getrlimit(RLIMIT_FSIZE, &old) != 0) exit(10);
        small.rlim_max = old.rlim_max;
        if (setrlimit(RLIMIT_FSIZE, &small) != 0) exit(11);
        mr_status st = mr_checkpoint_save(path, &m.params, &s);
        setrlimit(RLIMIT_FSIZE, &old);
        if (st != MR_ERR_IO) exit(12);
        if (!strstr(mr_last_error(), why)) exit(13);
        if (access(tmp, F_OK) == 0 || access(path, F_OK) == 0) exit(14);
        exit(0);
    }
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status), "the process crashed on its way out (signal %d)",
              WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    cr_assert_eq(WEXITSTATUS(status), 0,
                 "exit %d: 12 not MR_ERR_IO, 13 no OS reason, 14 a file was left",
                 WEXITSTATUS(status));
    mr_model_free(&m);
}

/* What the terminal shows when output goes to a file: plain progress lines within 80 columns
 * with running means and labelled times, the config in a few lines (not the whole JSON), the
 * last epoch's mean loss at the end; log.jsonl records carry a timestamp. */
/* The widest counts, losses and times still fit in 80 columns, both on a terminal and in a
 * file; ordinary ones keep every part, and a loss with no value yet shows "-". */
Test(train, progress_line_fits_80_columns_at_any_size) {
    char line[256];
    mr_progress wide = {.epoch = 120,
                        .epochs = 120,
                        .step = 9999,
                        .steps = 9999,
                        .per_step = 123.4,
                        .eta_seconds = 99 * 3600.0,
                        .total = 12.3,
                        .value = {12.3, 12.3, 12.3, 12.3, 12.3}};
    for (int tty = 0; tty < 2; tty++) {
        wide.tty = tty;
        mr_progress_line(line, sizeof line, &wide);
        cr_assert_lt(strlen(line), 80, "%zu columns: %s", strlen(line), line);
        cr_assert(strstr(line, "epoch 120/120") && strstr(line, "loss 12.3") &&
                      strstr(line, "ETA 99h00m"),
                  "%s", line);
    }
    mr_progress usual = {.epoch = 30,
                         .epochs = 30,
                         .step = 51,
                         .steps = 100,
                         .per_step = 2.1,
                         .eta_seconds = 3900.0,
                         .total = 1.42,
                         .value = {0.21, 0.33, 0.18, NAN, 0.29}};
    mr_progress_line(line, sizeof line, &usual); /* 80 wide with its time per step */
    cr_assert_str_eq(line,
                     "epoch 30/30 51/100 loss 1.42 rpn .21/.33 head .18/- mask .29 ETA 1h05m");
    mr_progress shorter = usual;
    shorter.epoch = 3;
    shorter.steps = 60;
    shorter.eta_seconds = 47 * 60.0;
    mr_progress_line(line, sizeof line, &shorter);
    cr_assert_str_eq(line, "epoch 3/30 51/60 loss 1.42 rpn .21/.33 head .18/- mask .29 2.1s/step "
                           "ETA 47m");
    shorter.per_step = 0.0414; /* a small model's step: in milliseconds, not "0.0s" */
    mr_progress_line(line, sizeof line, &shorter);
    cr_assert_str_eq(line, "epoch 3/30 51/60 loss 1.42 rpn .21/.33 head .18/- mask .29 41ms/step "
                           "ETA 47m");
    shorter.per_step = 0.9996; /* rounds to a second, not to "1000ms" */
    mr_progress_line(line, sizeof line, &shorter);
    cr_assert_str_eq(line, "epoch 3/30 51/60 loss 1.42 rpn .21/.33 head .18/- mask .29 1.0s/step "
                           "ETA 47m");
    usual.tty = true;
    mr_progress_line(line, sizeof line, &usual);
    cr_assert_str_eq(line, "epoch 30/30 [#####.....] loss 1.42 rpn .21/.33 head .18/- mask .29 "
                           "ETA 1h05m");
}

Test(train, progress_lines_are_short_and_labelled, .timeout = 300) {
    const char *dir = temp_dir("progress");
    char config[600], out[600], args[1400];
    make_job(dir, 1, 10, config, sizeof config);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(args, sizeof args, "train --config '%s' --out '%s'", config, out);
    static char text[1 << 16];
    int rc = run_mrcnn(args, text, sizeof text);
    cr_assert_eq(rc, 0, "%s", text);
    cr_assert_null(strstr(text, "\"LEARNING_RATE\""), "the config is not dumped: %s", text);
    cr_assert_not_null(strstr(text, "training: 1 epoch of 10 steps, batch 2"), "%s", text);
    int lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "epoch 1/1 ", 10) || !strstr(line, " ETA ")) {
            if (!strncmp(line, "trained 1 epoch; last epoch's loss ", 35)) lines += 100;
            continue;
        }
        lines++;
        cr_assert_leq(strlen(line), 80, "%zu columns: %s", strlen(line), line);
        cr_assert(strstr(line, " loss ") && strstr(line, " rpn ") && strstr(line, " head ") &&
                      strstr(line, " mask ") && strstr(line, "s/step"),
                  "%s", line);
        cr_assert_null(strstr(line, "0.0000"), "%s", line);
    }
    cr_assert_eq(lines, 110, "ten progress lines and the end-of-run summary (%d)", lines);
    char path[700], record[4096];
    snprintf(path, sizeof path, "%s/log.jsonl", out);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    int steps = 0;
    while (fgets(record, sizeof record, f)) {
        cr_assert(strstr(record, ",\"time\":\"20") && strstr(record, "Z\"}"), "%s", record);
        if (!strstr(record, "\"type\":\"step\"")) continue;
        /* Each step says how long it waited for the prefetcher, apart from its compute. */
        const char *wait = strstr(record, "\"data_wait_seconds\":");
        cr_assert_not_null(wait, "%s", record);
        double w = strtod(wait + 20, NULL);
        cr_assert(isfinite(w) && w >= 0.0 && w < 60.0, "%s", record);
        steps++;
    }
    cr_assert_eq(steps, 10);
    fclose(f);
}

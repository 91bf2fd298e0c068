/* Damaged and mismatched weights, through every path that reads them: a checkpoint with one
 * flipped bit (a weight of ~1e37 that no range check would notice) is refused by the loader and
 * by predict, evaluate, export, inspect and train --weights, with one line naming the file and the
 * tensor, unless --allow-damaged; exports carry checksums too; a file for another network is one
 * line naming both networks, with the --exclude hint only where the verb has --exclude. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/synth.h"
#include "../train/checkpoint.h"
#include "../train/config.h"
#include "../train/export.h"
#include "../train/weights.h"
#include "testutil.h"

/* The tensor the tests damage: any would do, this one is in the middle of the backbone. */
#define VICTIM "res3a_branch2a/kernel"

/* ---- fixtures ------------------------------------------------------------------------------- */

static void tiny_config(mr_config *c) {
    mr_config_defaults(c);
    cr_assert_eq(mr_config_load("configs/tiny.json", c), MR_OK, "%s", mr_last_error());
}

/* A checkpoint of the tiny model with random weights, config embedded; `victim` (may be NULL)
 * gets the first 4 values of VICTIM, which locate it in the file. */
static void write_checkpoint(const char *path, uint64_t seed, float *victim) {
    mr_config c;
    tiny_config(&c);
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK, "%s", mr_last_error());
    random_test_weights(&m, seed);
    if (victim) memcpy(victim, mr_params_tensor(&m.params, VICTIM)->data, 4 * sizeof(float));
    mr_checkpoint_state s = {0};
    s.epoch = 3;
    s.step = 150;
    int64_t order[2] = {3, 0};
    s.data_order = order;
    s.n_data_order = 2;
    s.config_json = mr_config_to_json(&c);
    s.val_loss = 1.25;
    cr_assert_eq(mr_checkpoint_save(path, &m.params, &s), MR_OK, "%s", mr_last_error());
    free(s.config_json);
    mr_model_free(&m);
}

/* Flips bit 30 of the float stored where `values` (4 floats) are: a weight of 0.03 becomes about
 * 1e37, finite, so only the checksum can tell. Returns the new value. */
static float flip_weight(const char *path, const float *values) {
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f, "%s", path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    char *buf = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    char *hit = memmem(buf, (size_t)size, values, 4 * sizeof(float));
    cr_assert_not_null(hit, "values not found in %s", path);
    uint32_t w;
    memcpy(&w, hit, sizeof w);
    w ^= UINT32_C(1) << 30;
    fseek(f, hit - buf, SEEK_SET);
    cr_assert_eq(fwrite(&w, sizeof w, 1, f), 1u);
    fclose(f);
    free(buf);
    float v;
    memcpy(&v, &w, sizeof v);
    return v;
}

static int count_lines(const char *text) {
    int n = 0;
    for (const char *c = text; *c; c++) n += *c == '\n';
    return n;
}

static const char *last_line(const char *text) {
    size_t n = strlen(text);
    if (n && text[n - 1] == '\n') n--;
    while (n && text[n - 1] != '\n') n--;
    return text + n;
}

static void remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* The tiny config over 8 synthetic images, for train. */
static void write_train_config(const char *dir, const char *extra, char *path, size_t size) {
    char data[512];
    snprintf(data, sizeof data, "%s/data", dir);
    struct stat sb;
    if (stat(data, &sb) != 0) {
        mr_synth_options o;
        mr_synth_defaults(&o);
        o.out_dir = data;
        o.n_images = 8;
        o.size = 128;
        o.seed = 4;
        o.val_fraction = 0.25;
        cr_assert_eq(mr_synth_write(&o), MR_OK, "%s", mr_last_error());
    }
    char keys[1024];
    snprintf(keys, sizeof keys,
             ", \"EPOCHS\": 1, \"STEPS_PER_EPOCH\": 1, \"VALIDATION_STEPS\": 1%s", extra);
    write_tiny_config(path, data, keys);
    (void)size;
}

/* ---- the loader's policy -------------------------------------------------------------------- */

Test(integrity, loader_refuses_a_flipped_bit_unless_allowed) {
    const char *dir = temp_dir("integ-lib");
    char path[512];
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    float victim[4];
    write_checkpoint(path, 11, victim);
    float now = flip_weight(path, victim);
    cr_assert_gt(fabsf(now), 1e30f, "the flip makes a huge but finite weight: %g", (double)now);
    cr_assert(isfinite(now));
    mr_config c;
    tiny_config(&c);
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_ERR_FORMAT);
    const char *e = mr_last_error();
    cr_assert(strstr(e, path) && strstr(e, "tensor " VICTIM " (/params/" VICTIM ")") &&
                  strstr(e, "fails its checksum") && strstr(e, "--allow-damaged") &&
                  !strchr(e, '\n'),
              "%s", e);
    cr_assert(r.refused && !r.applied);
    mr_load_report_free(&r);
    /* Salvage on request: loaded, counted, noted. */
    mr_weights_load_options allow = {.allow_damaged = true};
    cr_assert_eq(mr_weights_load(path, &m.params, &allow, &r), MR_OK, "%s", mr_last_error());
    cr_assert(r.applied);
    cr_assert_eq(r.tensors_damaged, 1);
    cr_assert_eq(r.tensors_verified, r.tensors_loaded - 1);
    cr_assert_eq(mr_params_tensor(&m.params, VICTIM)->data[0], now);
    bool noted = false;
    for (int i = 0; i < r.n_notes; i++) noted |= strstr(r.notes[i], "fail their checksum") != NULL;
    cr_assert(noted);
    mr_load_report_free(&r);
    /* The strict inference loader (predict, evaluate, export, demo) refuses it the same way. */
    mr_config got;
    mr_model im;
    cr_assert_eq(mr_inference_load(path, NULL, &got, &im, NULL), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), VICTIM), "%s", mr_last_error());
    const mr_inference_options io = {.allow_damaged = true};
    cr_assert_eq(mr_inference_load_opts(path, NULL, &io, &got, &im, NULL), MR_OK, "%s",
                 mr_last_error());
    mr_model_free(&im);
    /* Only what is loaded is checked: damaged momentum leaves the weights intact. */
    char mom[512];
    snprintf(mom, sizeof mom, "%s/momentum.h5", dir);
    write_checkpoint(mom, 12, NULL);
    mr_model tmp;
    cr_assert_eq(mr_model_init(&tmp, &c.net), MR_OK);
    random_test_weights(&tmp, 12);
    float *mv = tmp.params.momentum + mr_params_find(&tmp.params, VICTIM)->offset;
    flip_weight(mom, mv);
    mr_model_free(&tmp);
    cr_assert(!mr_checkpoint_verify(mom));
    cr_assert_eq(mr_weights_load(mom, &m.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.tensors_verified, r.tensors_loaded);
    mr_load_report_free(&r);
    mr_model_free(&m);
    remove_dir(dir);
}

/* Exports are written with checksums, float16 ones included, and damage in them is refused. */
Test(integrity, exports_carry_checksums) {
    const char *dir = temp_dir("integ-export");
    char ckpt[512], out[512], half[512], keras[512];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    snprintf(out, sizeof out, "%s/export.h5", dir);
    snprintf(half, sizeof half, "%s/export16.h5", dir);
    snprintf(keras, sizeof keras, "%s/keras.h5", dir);
    write_checkpoint(ckpt, 13, NULL);
    mr_export_options eo = {.format = MR_EXPORT_MRCNN, .no_fold = true};
    cr_assert_eq(mr_export(ckpt, NULL, out, &eo, NULL), MR_OK, "%s", mr_last_error());
    eo.half = true;
    cr_assert_eq(mr_export(ckpt, NULL, half, &eo, NULL), MR_OK, "%s", mr_last_error());
    eo = (mr_export_options){.format = MR_EXPORT_KERAS};
    cr_assert_eq(mr_export(ckpt, NULL, keras, &eo, NULL), MR_OK, "%s", mr_last_error());
    mr_config c;
    tiny_config(&c);
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    const char *files[] = {out, half, keras};
    for (int i = 0; i < 3; i++) {
        mr_load_report r;
        cr_assert_eq(mr_weights_load(files[i], &m.params, NULL, &r), MR_OK, "%s", mr_last_error());
        cr_assert_gt(r.tensors_loaded, 0);
        cr_assert_eq(r.tensors_verified, r.tensors_loaded, "%s", files[i]);
        mr_load_report_free(&r);
        int64_t verified = 0, unverified = -1;
        cr_assert_eq(mr_weights_verify(files[i], &verified, &unverified), MR_OK, "%s",
                     mr_last_error());
        cr_assert_eq(verified, m.params.count);
        cr_assert_eq(unverified, 0);
    }
    /* A flipped bit in the (unfolded float32) export. */
    mr_model tmp;
    cr_assert_eq(mr_model_init(&tmp, &c.net), MR_OK);
    random_test_weights(&tmp, 13);
    flip_weight(out, mr_params_tensor(&tmp.params, VICTIM)->data);
    mr_model_free(&tmp);
    cr_assert_eq(mr_weights_load(out, &m.params, NULL, NULL), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), VICTIM) && strstr(mr_last_error(), "fails its checksum"),
              "%s", mr_last_error());
    cr_assert_eq(mr_weights_verify(out, NULL, NULL), MR_ERR_FORMAT);
    mr_model_free(&m);
    remove_dir(dir);
}

/* ---- the verbs ------------------------------------------------------------------------------ */

Test(integrity, every_verb_refuses_a_damaged_checkpoint, .timeout = 120) {
    const char *dir = temp_dir("integ-cli");
    char ckpt[512], args[4096], out[65536], img[600];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt-e0003-s00000150.h5", dir);
    float victim[4];
    write_checkpoint(ckpt, 14, victim);
    /* An image to predict on: the synthetic set train uses. */
    char config[600];
    snprintf(config, sizeof config, "%s/train.json", dir);
    write_train_config(dir, "", config, sizeof config);
    snprintf(img, sizeof img, "%s/data/val", dir);
    /* Intact: every verb works (export as the example). */
    snprintf(args, sizeof args, "export --weights %s --out %s/ok.h5", ckpt, dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 0, "%s", out);
    flip_weight(ckpt, victim);

    struct {
        const char *what, *fmt;
    } verbs[] = {
        {"predict", "predict --weights %s %s --out %s/pred"},
        {"export", "export --weights %s --out %s/x.h5 --format mrcnn%.0s"},
        {"evaluate", "evaluate --weights %s --data %s --out %s/eval"},
    };
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++) {
        snprintf(args, sizeof args, verbs[i].fmt, ckpt, i == 1 ? dir : img, dir);
        int rc = run_mrcnn(args, out, sizeof out);
        cr_assert_eq(rc, 1, "%s: rc %d: %s", verbs[i].what, rc, out);
        cr_assert_eq(count_lines(out), 1, "%s: one line: %s", verbs[i].what, out);
        cr_assert(strstr(out, ckpt) && strstr(out, VICTIM) && strstr(out, "fails its checksum") &&
                      strstr(out, "--allow-damaged"),
                  "%s: %s", verbs[i].what, out);
        /* And with the flag, it goes ahead, saying so. */
        char allowed[4200];
        snprintf(allowed, sizeof allowed, "%s --allow-damaged", args);
        rc = run_mrcnn(allowed, out, sizeof out);
        cr_assert_eq(rc, 0, "%s --allow-damaged: %s", verbs[i].what, out);
        cr_assert(strstr(out, "loaded anyway (--allow-damaged)"), "%s: %s", verbs[i].what, out);
    }
    char x[600];
    snprintf(x, sizeof x, "%s/x.h5", dir);
    cr_assert_eq(access(x, F_OK), 0, "export --allow-damaged wrote its file");

    /* inspect: the whole listing, then the verdict, exit 1; 0 with --allow-damaged. */
    snprintf(args, sizeof args, "inspect %s --tensors", ckpt);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "/params/" VICTIM) && strstr(out, "checkpoint: epoch 3"), "%s", out);
    cr_assert(strstr(out, "intact: NO:"), "%s", out);
    cr_assert(strstr(last_line(out), "mrcnn inspect: ") && strstr(last_line(out), VICTIM), "%s",
              last_line(out));
    snprintf(args, sizeof args, "inspect %s --allow-damaged", ckpt);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "intact: NO:"), "%s", out);

    /* train --weights: refused before the first step, the error line naming the tensor. */
    snprintf(args, sizeof args, "train --config %s --weights %s --out %s/run --quiet", config, ckpt,
             dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(last_line(out), VICTIM) && strstr(last_line(out), "fails its checksum"), "%s",
              out);
    remove_dir(dir);
}

/* A file for another network: predict and export say so in one line with both networks and no
 * --exclude (they have none); train says the same, with a short report, not 240 lines. */
Test(integrity, another_network_is_one_line_per_verb, .timeout = 120) {
    const char *dir = temp_dir("integ-other");
    char ckpt[512], wide[600], config[600], args[4096], out[65536];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    write_checkpoint(ckpt, 15, NULL);
    snprintf(config, sizeof config, "%s/deep.json", dir);
    write_train_config(dir, ", \"BACKBONE\": \"resnet101\", \"BACKBONE_FILTERS\": 16", config,
                       sizeof config);
    const char *nets = "the weights are ResNet-50 with 8 filters, the config is ResNet-101 with "
                       "16 filters";
    snprintf(args, sizeof args, "predict --weights %s --config %s %s/data/val --out %s/p", ckpt,
             config, dir, dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 1, "%s", out);
    cr_assert_eq(count_lines(out), 1, "%s", out);
    cr_assert(strstr(out, "config mismatch") && strstr(out, nets), "%s", out);
    cr_assert_null(strstr(out, "--exclude"), "%s", out);
    snprintf(args, sizeof args, "export --weights %s --config %s --out %s/x.h5", ckpt, config, dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 1, "%s", out);
    cr_assert_eq(count_lines(out), 1, "%s", out);
    cr_assert(strstr(out, nets), "%s", out);
    cr_assert_null(strstr(out, "--exclude"), "%s", out);
    snprintf(args, sizeof args, "train --config %s --weights %s --out %s/run --quiet", config, ckpt,
             dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(last_line(out), nets), "%s", out);
    cr_assert_leq(count_lines(out), 10, "a report of counts and one error line: %s", out);
    /* inspect --config lists every layer (that is what it is for) and fails like train. */
    snprintf(args, sizeof args, "inspect %s --config %s", ckpt, config);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "intact: yes"), "%s", out);
    cr_assert(strstr(out, "    res5c_branch2c: kernel"), "%s", out);
    cr_assert(strstr(last_line(out), nets), "%s", out);

    /* A file that fills almost nothing of the model: train refuses instead of training from
     * random weights (silently, with --quiet). */
    mr_params other;
    mr_params_init(&other);
    int64_t k[2] = {8, 8};
    cr_assert_geq(mr_params_add(&other, "dense_1/kernel", 2, k, true), 0);
    cr_assert_eq(mr_params_finalize(&other), MR_OK);
    snprintf(wide, sizeof wide, "%s/foreign.h5", dir);
    cr_assert_eq(mr_weights_save_keras(wide, &other), MR_OK, "%s", mr_last_error());
    mr_params_free(&other);
    snprintf(config, sizeof config, "%s/tiny.json", dir);
    write_train_config(dir, "", config, sizeof config);
    snprintf(args, sizeof args, "train --config %s --weights %s --out %s/run2 --quiet", config,
             wide, dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(last_line(out), "only 0 of 133 layers of this model match the file by name"),
              "%s", out);
    cr_assert(strstr(last_line(out), "--exclude"), "train has --exclude: %s", out);
    remove_dir(dir);
}

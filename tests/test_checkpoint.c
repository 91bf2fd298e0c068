/* Checkpoints: bit-exact round trip of values, momentum, RNG, data order, config and metrics;
 * saves that fail at any stage leave the previous file intact; pruning keeps the last K plus the
 * best; a damaged newest checkpoint is skipped for the previous one; mismatches listed at once. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/h5.h"
#include "../train/checkpoint.h"
#include "../train/config.h"
#include "../train/weights.h"
#include "testutil.h"

/* A small registry shaped like a model's: a conv, a batch norm, a dense layer. */
static void small_params(mr_params *p, bool variant) {
    mr_params_init(p);
    int64_t k[4] = {3, 3, 2, variant ? 5 : 4}, b[1] = {4}, c[1] = {4}, d[2] = {4, 3};
    cr_assert_geq(mr_params_add(p, "conv/kernel", 4, k, true), 0);
    cr_assert_geq(mr_params_add(p, "conv/bias", 1, b, true), 0);
    cr_assert_geq(mr_params_add(p, "bn/gamma", 1, c, true), 0);
    cr_assert_geq(mr_params_add(p, "bn/moving_variance", 1, c, false), 0);
    if (!variant)
        cr_assert_geq(mr_params_add(p, "fc/kernel", 2, d, true), 0);
    else
        cr_assert_geq(mr_params_add(p, "fc2/kernel", 2, d, true), 0);
    cr_assert_eq(mr_params_finalize(p), MR_OK, "%s", mr_last_error());
}

/* Random bit patterns that are finite floats, including denormals and negative zero. */
static void fill_bits(float *x, size_t n, uint64_t seed) {
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        uint32_t w;
        do {
            w = (uint32_t)mr_rng_next(&rng);
        } while (((w >> 23) & 0xff) == 0xff);
        memcpy(&x[i], &w, sizeof w);
    }
    if (n > 2) {
        uint32_t nz = 0x80000000u, den = 0x00000001u;
        memcpy(&x[0], &nz, 4);
        memcpy(&x[1], &den, 4);
    }
}

/* Each parameter's own range: the alignment padding between them is not stored. */
static void fill_params(mr_params *p, uint64_t seed) {
    for (int i = 0; i < p->count; i++) {
        const mr_param *q = &p->items[i];
        fill_bits(p->values + q->offset, (size_t)q->t.numel, seed + (uint64_t)i);
        fill_bits(p->momentum + q->offset, (size_t)q->t.numel, seed + 1000 + (uint64_t)i);
    }
}

static mr_checkpoint_state make_state(int64_t epoch, double val_loss) {
    mr_checkpoint_state s = {0};
    s.epoch = epoch;
    s.step = epoch * 20;
    s.val_loss = val_loss;
    return s;
}

static void save(const char *path, const mr_params *p, const mr_checkpoint_state *s) {
    cr_assert_eq(mr_checkpoint_save(path, p, s), MR_OK, "%s", mr_last_error());
}

static bool exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(checkpoint, round_trip_is_bit_exact) {
    const char *dir = temp_dir("ckptrt");
    char path[512];
    mr_checkpoint_path(path, sizeof path, dir, 3, 60);
    cr_assert(strstr(path, "/ckpt-e0003-s00000060.h5"), "%s", path);
    mr_config cfg;
    mr_config_defaults(&cfg);
    cr_assert_eq(mr_config_load("configs/tiny.json", &cfg), MR_OK, "%s", mr_last_error());
    mr_model a, b;
    cr_assert_eq(mr_model_init(&a, &cfg.net), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_model_init(&b, &cfg.net), MR_OK, "%s", mr_last_error());
    fill_params(&a.params, 5);
    mr_checkpoint_state s = make_state(3, 0.8125);
    int64_t order[7] = {4, 0, 6, 2, 1, 5, 3};
    int64_t state[8];
    memcpy(state, order, sizeof order);
    state[7] = 5; /* cursor */
    s.data_order = state;
    s.n_data_order = 8;
    s.config_json = mr_config_to_json(&cfg);
    s.metrics_json = "{\"loss\": [1.5, 1.25, 0.9], \"val_loss\": [1.1, 0.95, 0.8125]}";
    save(path, &a.params, &s);

    mr_checkpoint_state r;
    cr_assert_eq(mr_checkpoint_load(path, &b.params, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(memcmp(a.params.values, b.params.values, sizeof(float) * a.params.total), 0);
    cr_assert_eq(memcmp(a.params.momentum, b.params.momentum, sizeof(float) * a.params.total), 0);
    cr_assert_eq(r.epoch, 3);
    cr_assert_eq(r.step, 60);
    cr_assert_eq(r.n_data_order, 8);
    cr_assert_eq(memcmp(r.data_order, state, sizeof state), 0);
    /* Version 2 stores no generator state: every draw is a function of (SEED, epoch, step). */
    mr_h5 f;
    cr_assert_eq(mr_h5_open(path, false, &f), MR_OK, "%s", mr_last_error());
    int64_t version = 0;
    cr_assert_eq(mr_h5_get_attr_i64(&f, "/", "version", &version), MR_OK);
    cr_assert_eq(version, MR_CHECKPOINT_VERSION);
    cr_assert(!mr_h5_exists(&f, "/state/rng"));
    mr_h5_close(&f);
    cr_assert_str_eq(r.config_json, s.config_json);
    cr_assert_str_eq(r.metrics_json, s.metrics_json);
    cr_assert_eq(r.val_loss, 0.8125);
    /* The stored config is the resolved config: it parses back to the same hash. */
    mr_config back;
    mr_config_defaults(&back);
    cr_assert_eq(mr_config_parse(r.config_json, path, &back), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_config_hash(&back), mr_config_hash(&cfg));
    cr_assert(mr_checkpoint_verify(path), "%s", mr_last_error());
    mr_checkpoint_state_free(&r);
    cr_assert_eq(mr_checkpoint_read_state(path, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.step, 60);
    mr_checkpoint_state_free(&r);
    free(s.config_json);
    mr_model_free(&a);
    mr_model_free(&b);
    remove_dir(dir);
}

Test(checkpoint, empty_data_order_and_unmeasured_loss) {
    const char *dir = temp_dir("ckptempty");
    char path[512];
    mr_checkpoint_path(path, sizeof path, dir, 0, 0);
    mr_params p, q;
    small_params(&p, false);
    small_params(&q, false);
    fill_params(&p, 1);
    mr_checkpoint_state s = make_state(0, (double)NAN);
    save(path, &p, &s);
    mr_checkpoint_state r;
    cr_assert_eq(mr_checkpoint_load(path, &q, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.n_data_order, 0);
    cr_assert(isnan(r.val_loss));
    cr_assert_str_eq(r.config_json, "");
    mr_checkpoint_state_free(&r);
    mr_params_free(&p);
    mr_params_free(&q);
    remove_dir(dir);
}

/* ---- failing saves ------------------------------------------------------------------------ */

static const char *fail_stage;
static bool fail_at(const char *stage, void *user) {
    (void)user;
    return !strcmp(stage, fail_stage);
}

static void expect_unchanged(const char *path, const mr_params *want) {
    mr_params q;
    small_params(&q, false);
    mr_checkpoint_state r;
    cr_assert_eq(mr_checkpoint_load(path, &q, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.epoch, 1, "the previous checkpoint was replaced");
    cr_assert_eq(memcmp(q.values, want->values, sizeof(float) * want->total), 0);
    cr_assert_eq(memcmp(q.momentum, want->momentum, sizeof(float) * want->total), 0);
    mr_checkpoint_state_free(&r);
    mr_params_free(&q);
}

Test(checkpoint, failed_save_leaves_the_previous_file_intact) {
    const char *dir = temp_dir("ckptfail");
    char path[512], tmp[600];
    mr_checkpoint_path(path, sizeof path, dir, 1, 20);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    mr_params old, next;
    small_params(&old, false);
    small_params(&next, false);
    fill_params(&old, 21);
    fill_params(&next, 22);
    mr_checkpoint_state s1 = make_state(1, 2.0), s2 = make_state(2, 1.0);
    save(path, &old, &s1);
    /* Overwriting the same name is the hard case: a failure at any stage before the rename must
     * leave the old bytes. */
    const char *stages[] = {"create", "write", "close", "fsync", "rename"};
    for (size_t i = 0; i < sizeof stages / sizeof stages[0]; i++) {
        fail_stage = stages[i];
        mr_h5_set_save_fail_hook(fail_at, NULL);
        mr_status st = mr_checkpoint_save(path, &next, &s2);
        mr_h5_set_save_fail_hook(NULL, NULL);
        cr_assert_eq(st, MR_ERR_IO, "stage %s", stages[i]);
        cr_assert(strstr(mr_last_error(), stages[i]), "%s", mr_last_error());
        cr_assert(strstr(mr_last_error(), "untouched"), "%s", mr_last_error());
        cr_assert_null(strchr(mr_last_error(), '\n'));
        cr_assert(!exists(tmp), "temp file left after a failure at %s", stages[i]);
        expect_unchanged(path, &old);
    }
    /* An unwritable temp path (a folder sits there) fails for real, as a full disk would. */
    cr_assert_eq(mkdir(tmp, 0755), 0);
    cr_assert_eq(mr_checkpoint_save(path, &next, &s2), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "cannot create"), "%s", mr_last_error());
    expect_unchanged(path, &old);
    cr_assert_eq(rmdir(tmp), 0);
    /* And the next save works. */
    save(path, &next, &s2);
    mr_params_free(&old);
    mr_params_free(&next);
    remove_dir(dir);
}

Test(checkpoint, failed_keras_export_leaves_the_previous_file_intact) {
    const char *dir = temp_dir("exportfail");
    char path[512];
    snprintf(path, sizeof path, "%s/model.h5", dir);
    mr_params a, b;
    small_params(&a, false);
    small_params(&b, false);
    fill_params(&a, 31);
    fill_params(&b, 32);
    cr_assert_eq(mr_weights_save_keras(path, &a), MR_OK, "%s", mr_last_error());
    fail_stage = "write";
    mr_h5_set_save_fail_hook(fail_at, NULL);
    cr_assert_eq(mr_weights_save_keras(path, &b), MR_ERR_IO);
    mr_h5_set_save_fail_hook(NULL, NULL);
    mr_params c;
    small_params(&c, false);
    cr_assert_eq(mr_weights_load(path, &c, NULL, NULL), MR_OK, "%s", mr_last_error());
    cr_assert_eq(memcmp(c.values, a.values, sizeof(float) * a.total), 0);
    mr_params_free(&a);
    mr_params_free(&b);
    mr_params_free(&c);
    remove_dir(dir);
}

/* ---- the run folder ----------------------------------------------------------------------- */

Test(checkpoint, prune_keeps_the_last_k_and_the_best) {
    const char *dir = temp_dir("ckptprune");
    mr_params p;
    small_params(&p, false);
    const double loss[7] = {5.0, 1.0, 4.0, (double)NAN, 3.0, 6.0, 7.0};
    char path[512];
    for (int e = 1; e <= 7; e++) {
        fill_params(&p, (uint64_t)e);
        mr_checkpoint_state s = make_state(e, loss[e - 1]);
        mr_checkpoint_path(path, sizeof path, dir, e, e * 20);
        save(path, &p, &s);
    }
    /* A file that is not ours stays. */
    char other[600];
    snprintf(other, sizeof other, "%s/notes.txt", dir);
    FILE *f = fopen(other, "w");
    fclose(f);
    int removed = -1;
    cr_assert_eq(mr_checkpoint_prune(dir, 2, &removed), MR_OK, "%s", mr_last_error());
    cr_assert_eq(removed, 4);
    for (int e = 1; e <= 7; e++) {
        mr_checkpoint_path(path, sizeof path, dir, e, e * 20);
        bool keep = e == 2 || e == 6 || e == 7;
        cr_assert_eq(exists(path), keep, "epoch %d", e);
    }
    cr_assert(exists(other));
    /* Pruning again changes nothing. */
    cr_assert_eq(mr_checkpoint_prune(dir, 2, &removed), MR_OK);
    cr_assert_eq(removed, 0);
    mr_params_free(&p);
    remove_dir(dir);
}

/* With per-epoch validation metrics, the best kept is the best by mask AP50 (then mask AP),
 * not the lowest validation loss: the checkpoint report.html names as the best epoch's. */
Test(checkpoint, prune_keeps_the_best_by_validation_mask_ap) {
    const char *dir = temp_dir("ckptap");
    mr_params p;
    small_params(&p, false);
    const double loss[4] = {0.5, 0.9, 0.7, 0.8};
    const char *metrics[4] = {"{\"val_mask_ap50\":0.5,\"val_mask_ap\":0.2}",
                              "{\"val_mask_ap50\":0.8,\"val_mask_ap\":0.3}",
                              "{\"val_mask_ap50\":0.8,\"val_mask_ap\":0.4}",
                              "{\"val_mask_ap50\":0.6,\"val_mask_ap\":0.5}"};
    char path[512];
    for (int e = 1; e <= 4; e++) {
        fill_params(&p, (uint64_t)e);
        mr_checkpoint_state s = make_state(e, loss[e - 1]);
        s.metrics_json = (char *)metrics[e - 1];
        mr_checkpoint_path(path, sizeof path, dir, e, e * 20);
        save(path, &p, &s);
    }
    cr_assert_eq(mr_checkpoint_prune(dir, 1, NULL), MR_OK, "%s", mr_last_error());
    for (int e = 1; e <= 4; e++) {
        mr_checkpoint_path(path, sizeof path, dir, e, e * 20);
        bool keep = e == 3 || e == 4; /* AP50 0.8 with the better AP, and the newest */
        cr_assert_eq(exists(path), keep, "epoch %d", e);
    }
    mr_params_free(&p);
    remove_dir(dir);
}

/* Flips one byte of the file where `marker` (4 floats) is stored. */
static void corrupt_at_marker(const char *path, const float *marker) {
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    char *buf = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    char *hit = memmem(buf, (size_t)size, marker, 4 * sizeof(float));
    cr_assert_not_null(hit, "marker not found in %s", path);
    long at = hit - buf + 5;
    fseek(f, at, SEEK_SET);
    unsigned char byte = (unsigned char)(buf[at] ^ 0x10);
    fwrite(&byte, 1, 1, f);
    fclose(f);
    free(buf);
}

Test(checkpoint, damaged_newest_falls_back_to_the_previous) {
    const char *dir = temp_dir("ckptlatest");
    char found[512], path[4][512];
    int skipped = -1;
    cr_assert_eq(mr_checkpoint_find_latest(dir, found, sizeof found, &skipped), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "no checkpoint"), "%s", mr_last_error());
    mr_params p;
    small_params(&p, false);
    for (int e = 1; e <= 3; e++) {
        fill_params(&p, (uint64_t)(40 + e));
        float marker[4] = {1000.0f + (float)e, 2000.0f, 3000.0f, 4000.0f};
        memcpy(mr_params_tensor(&p, "conv/kernel")->data, marker, sizeof marker);
        mr_checkpoint_state s = make_state(e, 1.0);
        mr_checkpoint_path(path[e], sizeof path[e], dir, e, e * 20);
        save(path[e], &p, &s);
    }
    cr_assert_eq(mr_checkpoint_find_latest(dir, found, sizeof found, &skipped), MR_OK);
    cr_assert_str_eq(found, path[3]);
    cr_assert_eq(skipped, 0);
    /* Newest cut short (a copy interrupted), the one before with a flipped bit in its data. */
    cr_assert_eq(truncate(path[3], 2000), 0);
    float marker2[4] = {1002.0f, 2000.0f, 3000.0f, 4000.0f};
    corrupt_at_marker(path[2], marker2);
    cr_assert_eq(mr_checkpoint_find_latest(dir, found, sizeof found, &skipped), MR_OK, "%s",
                 mr_last_error());
    cr_assert_str_eq(found, path[1]);
    cr_assert_eq(skipped, 2);
    /* Loading either damaged file directly reports it in one line. */
    mr_params q;
    small_params(&q, false);
    mr_checkpoint_state r;
    cr_assert_neq(mr_checkpoint_load(path[3], &q, &r), MR_OK);
    cr_assert(strstr(mr_last_error(), path[3]), "%s", mr_last_error());
    cr_assert_null(strchr(mr_last_error(), '\n'));
    cr_assert_eq(mr_checkpoint_load(path[2], &q, &r), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "fails its checksum"), "%s", mr_last_error());
    /* Nothing intact at all. */
    unlink(path[1]);
    cr_assert_eq(mr_checkpoint_find_latest(dir, found, sizeof found, &skipped), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "none of the 2 checkpoints is intact"), "%s",
              mr_last_error());
    mr_params_free(&p);
    mr_params_free(&q);
    remove_dir(dir);
}

/* The fault-injection case: CHECKPOINT_KEEP 1, the newest checkpoint damaged and (by its still
 * readable val_loss) the best. Resume starts from the older intact one; then an interrupted save
 * writes a new intact checkpoint that sorts before the damaged one. Pruning used to keep the
 * damaged file (newest by name, best by loss) and delete both intact ones. */
Test(checkpoint, prune_never_keeps_a_damaged_checkpoint_over_an_intact_one) {
    const char *dir = temp_dir("ckptprunedmg");
    mr_params p;
    small_params(&p, false);
    char source[512], damaged[512], fresh[512], aside[600], found[512];
    mr_checkpoint_path(source, sizeof source, dir, 3, 30);
    mr_checkpoint_path(damaged, sizeof damaged, dir, 4, 40);
    mr_checkpoint_path(fresh, sizeof fresh, dir, 3, 35);
    snprintf(aside, sizeof aside, "%s.damaged", damaged);
    fill_params(&p, 71);
    mr_checkpoint_state s = make_state(3, 2.0);
    save(source, &p, &s);
    float marker[4] = {1004.0f, 2000.0f, 3000.0f, 4000.0f};
    fill_params(&p, 72);
    memcpy(mr_params_tensor(&p, "conv/kernel")->data, marker, sizeof marker);
    s = make_state(4, 0.5);
    save(damaged, &p, &s);
    corrupt_at_marker(damaged, marker);
    /* Resume skips the damaged file... */
    int skipped = 0;
    cr_assert_eq(mr_checkpoint_find_latest(dir, found, sizeof found, &skipped), MR_OK);
    cr_assert_str_eq(found, source);
    cr_assert_eq(skipped, 1);
    /* ...and, stopped mid-epoch, saves a new intact one, then prunes to CHECKPOINT_KEEP 1. */
    fill_params(&p, 73);
    s = make_state(3, (double)NAN);
    save(fresh, &p, &s);
    int removed = -1;
    cr_assert_eq(mr_checkpoint_prune(dir, 1, &removed), MR_OK, "%s", mr_last_error());
    cr_assert(exists(fresh), "the newest intact checkpoint was deleted");
    cr_assert(exists(source), "the best intact checkpoint was deleted");
    cr_assert(mr_checkpoint_verify(fresh) && mr_checkpoint_verify(source));
    /* The damaged one, newer than every intact one, is set aside, not counted, not resumed. */
    cr_assert(!exists(damaged), "a damaged checkpoint was kept in place of an intact one");
    cr_assert(exists(aside), "the damaged checkpoint was deleted instead of set aside");
    cr_assert_eq(removed, 1);
    cr_assert_eq(mr_checkpoint_find_latest(dir, found, sizeof found, &skipped), MR_OK);
    cr_assert_str_eq(found, fresh);
    cr_assert_eq(skipped, 0);
    /* A second prune keeps both: the newest intact and the best intact. */
    cr_assert_eq(mr_checkpoint_prune(dir, 1, &removed), MR_OK, "%s", mr_last_error());
    cr_assert_eq(removed, 0);
    /* The next epoch's checkpoint is the newest and the best: the other two go. */
    char next[512];
    mr_checkpoint_path(next, sizeof next, dir, 4, 40);
    fill_params(&p, 74);
    s = make_state(4, 1.0);
    save(next, &p, &s);
    cr_assert_eq(mr_checkpoint_prune(dir, 1, &removed), MR_OK, "%s", mr_last_error());
    cr_assert_eq(removed, 2);
    cr_assert(exists(next) && !exists(fresh) && !exists(source));
    mr_params_free(&p);
    remove_dir(dir);
}

/* An older damaged file is simply deleted; with nothing intact, nothing is touched. */
Test(checkpoint, prune_deletes_old_damage_and_never_empties_a_run) {
    const char *dir = temp_dir("ckptprunenone");
    mr_params p;
    small_params(&p, false);
    char path[3][512];
    for (int e = 0; e < 3; e++) {
        float marker[4] = {1100.0f + (float)e, 2000.0f, 3000.0f, 4000.0f};
        fill_params(&p, 80 + (uint64_t)e);
        memcpy(mr_params_tensor(&p, "conv/kernel")->data, marker, sizeof marker);
        mr_checkpoint_state s = make_state(e + 1, 3.0 - e);
        mr_checkpoint_path(path[e], sizeof path[e], dir, e + 1, (e + 1) * 20);
        save(path[e], &p, &s);
        if (e == 0) corrupt_at_marker(path[e], marker);
    }
    int removed = -1;
    cr_assert_eq(mr_checkpoint_prune(dir, 1, &removed), MR_OK, "%s", mr_last_error());
    cr_assert_eq(removed, 2);
    cr_assert(!exists(path[0]) && !exists(path[1]) && exists(path[2]));
    char aside[600];
    snprintf(aside, sizeof aside, "%s.damaged", path[0]);
    cr_assert(!exists(aside), "damage older than an intact checkpoint holds nothing to salvage");
    /* The last one damaged too: the run keeps it, and prune says so. */
    float marker[4] = {1102.0f, 2000.0f, 3000.0f, 4000.0f};
    corrupt_at_marker(path[2], marker);
    cr_assert_eq(mr_checkpoint_prune(dir, 1, &removed), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "none of the 1 checkpoints is intact") &&
                  strstr(mr_last_error(), "nothing was removed"),
              "%s", mr_last_error());
    cr_assert_eq(removed, 0);
    cr_assert(exists(path[2]));
    mr_params_free(&p);
    remove_dir(dir);
}

/* ---- the training state ------------------------------------------------------------------- */

/* Flips one bit of the first of two int64 values stored side by side in the file. */
static void flip_i64_pair(const char *path, const int64_t pair[2]) {
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    char *buf = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    cr_assert_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
    char *hit = memmem(buf, (size_t)size, pair, 2 * sizeof(int64_t));
    cr_assert_not_null(hit, "values not found in %s", path);
    int64_t v;
    memcpy(&v, hit, sizeof v);
    v ^= INT64_C(1) << 3;
    fseek(f, hit - buf, SEEK_SET);
    fwrite(&v, sizeof v, 1, f);
    fclose(f);
    free(buf);
}

Test(checkpoint, state_checksum_catches_a_flipped_data_order) {
    const char *dir = temp_dir("ckptstate");
    char path[512];
    mr_checkpoint_path(path, sizeof path, dir, 5, 57);
    mr_params p;
    small_params(&p, false);
    fill_params(&p, 90);
    mr_checkpoint_state s = make_state(5, 0.75);
    int64_t order[2] = {5, 7};
    s.step = 57;
    s.data_order = order;
    s.n_data_order = 2;
    save(path, &p, &s);
    mr_checkpoint_state r;
    cr_assert_eq(mr_checkpoint_read_state(path, &r), MR_OK, "%s", mr_last_error());
    cr_assert(r.verified, "a new checkpoint's state is verified");
    int epoch = -1, step = -1;
    cr_assert_eq(mr_checkpoint_position(path, &r, 10, &epoch, &step), MR_OK, "%s", mr_last_error());
    cr_assert(epoch == 5 && step == 7);
    mr_checkpoint_state_free(&r);
    /* (5, 7) -> (13, 7): in range, and a plausible place to resume from, but not this run's. */
    flip_i64_pair(path, order);
    cr_assert_eq(mr_checkpoint_read_state(path, &r), MR_ERR_FORMAT);
    const char *e = mr_last_error();
    cr_assert(strstr(e, path) && strstr(e, "damaged checkpoint: the training state") &&
                  strstr(e, "fails its checksum") && !strchr(e, '\n'),
              "%s", e);
    cr_assert_null(r.data_order, "a failed read leaves nothing to free");
    cr_assert(!mr_checkpoint_verify(path), "find_latest and prune must skip it");
    mr_params q;
    small_params(&q, false);
    cr_assert_eq(mr_checkpoint_load(path, &q, &r), MR_ERR_FORMAT);
    mr_params_free(&q);
    mr_params_free(&p);
    remove_dir(dir);
}

/* Values out of range read as damage even when the checksum matches them (a writer's bug, or a
 * file edited by hand), and the resume position is checked against the run's epochs. */
Test(checkpoint, out_of_range_state_reads_as_damage) {
    const char *dir = temp_dir("ckptrange");
    char path[512];
    mr_checkpoint_path(path, sizeof path, dir, 2, 20);
    mr_params p;
    small_params(&p, false);
    fill_params(&p, 91);
    mr_checkpoint_state r, s = make_state(2, 0.5);
    int64_t order[2] = {2, 0};
    s.data_order = order;
    s.n_data_order = 2;
    const struct {
        int64_t epoch, step, order0, order1;
        double loss;
        const char *expect;
    } cases[] = {
        {2, 20, -1, 0, 0.5, "damaged checkpoint: /state/data_order[0] is -1, expected 0.."},
        {2, 20, 2, 0, -3.0, "damaged checkpoint: attribute val_loss is -3"},
        {-2, 20, 2, 0, 0.5, "damaged checkpoint: attribute epoch is -2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        s.epoch = cases[i].epoch;
        s.step = cases[i].step;
        order[0] = cases[i].order0;
        order[1] = cases[i].order1;
        s.val_loss = cases[i].loss;
        save(path, &p, &s);
        cr_assert_eq(mr_checkpoint_read_state(path, &r), MR_ERR_FORMAT, "case %zu", i);
        cr_assert(strstr(mr_last_error(), cases[i].expect), "case %zu: %s", i, mr_last_error());
    }
    /* Readable, but not a place a run of 10-step epochs can resume from. */
    const struct {
        int64_t epoch, step, order0, order1;
        const char *expect;
    } positions[] = {
        {2, 1000002, 2, 1000000,
         "damaged checkpoint: /state/data_order[1] (step within the epoch) is 1000000, expected "
         "0..9 (STEPS_PER_EPOCH 10)"},
        {2, 20, 3, 0, "/state/data_order[0] (epoch) is 3, the attribute epoch is 2"},
        {2, 25, 2, 0, "attribute step is 25, but epoch 2 of 10 steps plus step 0 makes 20"},
    };
    for (size_t i = 0; i < sizeof positions / sizeof positions[0]; i++) {
        s.epoch = positions[i].epoch;
        s.step = positions[i].step;
        order[0] = positions[i].order0;
        order[1] = positions[i].order1;
        s.val_loss = 0.5;
        save(path, &p, &s);
        cr_assert_eq(mr_checkpoint_read_state(path, &r), MR_OK, "%s", mr_last_error());
        int epoch = -1, step = -1;
        cr_assert_eq(mr_checkpoint_position(path, &r, 10, &epoch, &step), MR_ERR_FORMAT, "%zu", i);
        cr_assert(strstr(mr_last_error(), positions[i].expect), "position %zu: %s", i,
                  mr_last_error());
        cr_assert(strstr(mr_last_error(), path), "%s", mr_last_error());
        mr_checkpoint_state_free(&r);
    }
    mr_params_free(&p);
    remove_dir(dir);
}

/* Checkpoints written before the state had a checksum (version 1, with its /state/rng) still
 * load: not verified, range-checked. */
Test(checkpoint, state_without_a_checksum_is_not_verified_but_readable) {
    mr_checkpoint_state r;
    const char *old = "tests/fuzz/corpus/checkpoint/ckpt.h5";
    cr_assert_eq(mr_checkpoint_read_state(old, &r), MR_OK, "%s", mr_last_error());
    cr_assert(!r.verified);
    cr_assert_eq(r.epoch, 3);
    mr_checkpoint_state_free(&r);
    cr_assert(mr_checkpoint_verify(old), "%s", mr_last_error());
}

Test(checkpoint, load_lists_every_mismatch_at_once) {
    const char *dir = temp_dir("ckptmismatch");
    char path[512];
    mr_checkpoint_path(path, sizeof path, dir, 1, 1);
    mr_params a, b;
    small_params(&a, false);
    small_params(&b, true); /* conv/kernel reshaped, fc/kernel -> fc2/kernel */
    fill_params(&a, 3);
    for (size_t i = 0; i < b.total; i++) b.values[i] = 7.0f;
    mr_checkpoint_state s = make_state(1, 1.0);
    save(path, &a, &s);
    mr_checkpoint_state r;
    cr_assert_eq(mr_checkpoint_load(path, &b, &r), MR_ERR_FORMAT);
    const char *msg = mr_last_error();
    cr_assert_null(strchr(msg, '\n'));
    cr_assert(strstr(msg, "2 missing [params/fc2/kernel, momentum/fc2/kernel]"), "%s", msg);
    cr_assert(strstr(msg, "2 unexpected [params/fc/kernel, momentum/fc/kernel]"), "%s", msg);
    cr_assert(strstr(msg, "2 mis-shaped [params/conv/kernel (3,3,2,4) in the file, (3,3,2,5) in "
                          "the model"),
              "%s", msg);
    for (size_t i = 0; i < b.total; i++) cr_assert_eq(b.values[i], 7.0f);
    /* Not a checkpoint at all. */
    cr_assert_eq(mr_checkpoint_load("tests/ref/keras_tiny.h5", &b, &r), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "not an mrcnn checkpoint"), "%s", mr_last_error());
    mr_params_free(&a);
    mr_params_free(&b);
    remove_dir(dir);
}

Test(checkpoint, probe_proves_the_folder_writable) {
    const char *dir = temp_dir("ckptprobe");
    char run[512], stale[600], file[600];
    snprintf(run, sizeof run, "%s/runs/tiny20240101T0000", dir);
    cr_assert_eq(mr_checkpoint_probe(run, 0), MR_OK, "%s", mr_last_error());
    struct stat sb;
    cr_assert(stat(run, &sb) == 0 && S_ISDIR(sb.st_mode));
    /* A temp file of an interrupted save is cleared; the probe leaves nothing. */
    snprintf(stale, sizeof stale, "%s/ckpt-e0001-s00000020.h5.tmp", run);
    FILE *f = fopen(stale, "w");
    fputs("half", f);
    fclose(f);
    cr_assert_eq(mr_checkpoint_probe(run, 1024), MR_OK, "%s", mr_last_error());
    cr_assert(!exists(stale));
    /* Far more space than any disk has. */
    cr_assert_eq(mr_checkpoint_probe(run, INT64_C(1) << 62), MR_ERR_IO);
    cr_assert(strstr(mr_last_error(), "MB free, a checkpoint needs about"), "%s", mr_last_error());
    /* A regular file where the folder should be. */
    snprintf(file, sizeof file, "%s/plain", dir);
    f = fopen(file, "w");
    fclose(f);
    char under[700];
    snprintf(under, sizeof under, "%s/run", file);
    cr_assert_eq(mr_checkpoint_probe(under, 0), MR_ERR_IO);
    cr_assert_null(strchr(mr_last_error(), '\n'));
    remove_dir(dir);
}

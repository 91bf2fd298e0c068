/* The layer-group profile behind `mrcnn bench`'s floor table (core/profile.h): matrix-product
 * FLOPs counted exactly, Winograd layers by their real multiplies, backward charged to the group
 * that recorded the op; and the bench's measurement lines and data check (train/bench.h). */
#include "../core/ops.h"
#include "../core/profile.h"
#include "../core/rng.h"
#include "../losses/losses.h"
#include "../train/bench.h"
#include "../train/init.h"
#include "testutil.h"

/* One 3x3 stride-1 convolution (n, h, w, cin) -> cout recorded in `group`, forward then
 * backward from a seed gradient, profiled; the current group at backward is a different one. */
static void profile_conv(mr_conv_algo algo, int64_t n, int64_t h, int64_t w, int64_t cin,
                         int64_t cout, mr_group group, mr_profile *p) {
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, (size_t)64 << 20), MR_OK);
    ctx.conv_algo = algo;
    mr_rng rng;
    mr_rng_seed(&rng, 5);
    mr_tensor *x = mr_tensor_4d(&ctx, "x", n, h, w, cin);
    mr_tensor *k = mr_tensor_4d(&ctx, "w", 3, 3, cin, cout);
    cr_assert(x && k);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = mr_rng_normal(&rng);
    for (int64_t i = 0; i < k->numel; i++) k->data[i] = 0.1f * mr_rng_normal(&rng);
    x->requires_grad = k->requires_grad = true;
    mr_profile_begin(p);
    mr_profile_enter(group);
    mr_tensor *y = mr_conv2d(&ctx, x, k, NULL, 1, MR_PAD_SAME);
    cr_assert_not_null(y, "%s", mr_last_error());
    float *seed = mr_alloc(&ctx, sizeof(float) * (size_t)y->numel, "seed");
    for (int64_t i = 0; i < y->numel; i++) seed[i] = 1.0f;
    mr_profile_enter(MR_GROUP_OPTIMIZER);
    cr_assert_eq(mr_backward_seeded(&ctx, y, seed), MR_OK, "%s", mr_last_error());
    cr_expect_eq(mr_profile_group(), MR_GROUP_OPTIMIZER, "backward restores the caller's group");
    mr_profile_end();
    mr_ctx_free(&ctx);
}

static double other_groups_flops(const mr_profile *p, mr_group except) {
    double f = 0.0;
    for (int g = 0; g < MR_GROUP_COUNT; g++)
        if (g != (int)except) f += p->flops[g][0] + p->flops[g][1];
    return f;
}

Test(profile, im2col_convolution_flops_are_exact_and_backward_goes_to_the_recording_group) {
    mr_profile p;
    profile_conv(MR_CONV_IM2COL, 2, 9, 7, 8, 16, MR_GROUP_RPN, &p);
    /* One product of (pixels, 9 cin) @ (9 cin, cout) forward; backward one for the input's
     * gradient and one for the kernel's, each as large. */
    double direct = 2.0 * (2 * 9 * 7) * (9 * 8) * 16;
    cr_expect_eq(p.flops[MR_GROUP_RPN][0], direct, "forward %g, want %g", p.flops[MR_GROUP_RPN][0],
                 direct);
    cr_expect_eq(p.flops[MR_GROUP_RPN][1], 2.0 * direct, "backward %g, want %g",
                 p.flops[MR_GROUP_RPN][1], 2.0 * direct);
    cr_expect_eq(other_groups_flops(&p, MR_GROUP_RPN), 0.0);
    cr_expect_gt(p.seconds[MR_GROUP_RPN][0], 0.0);
    cr_expect_gt(p.seconds[MR_GROUP_RPN][1], 0.0);
    for (int g = 0; g < MR_GROUP_COUNT; g++)
        cr_expect(p.seconds[g][0] >= 0.0 && p.seconds[g][1] >= 0.0, "group %d", g);
}

Test(profile, winograd_layers_count_their_real_multiplies) {
    mr_profile p;
    /* 8 x 12 outputs are 2 x 3 tiles of 4 x 4 per image; each tile's 36 transformed elements
     * are one cin -> cout product row: 36 * tiles * cin * cout multiply-adds, where direct
     * convolution does 144 per 16 outputs (4x more). */
    profile_conv(MR_CONV_WINOGRAD_F4, 3, 8, 12, 64, 32, MR_GROUP_BACKBONE, &p);
    double tiles = 3.0 * 2 * 3, real = 2.0 * 36 * tiles * 64 * 32;
    double direct = 2.0 * (3 * 8 * 12) * (9 * 64) * 32;
    cr_expect_eq(p.flops[MR_GROUP_BACKBONE][0], real, "forward %g, want %g",
                 p.flops[MR_GROUP_BACKBONE][0], real);
    cr_expect_eq(p.flops[MR_GROUP_BACKBONE][0] * 4.0, direct);
    cr_expect_eq(p.flops[MR_GROUP_BACKBONE][1], 2.0 * real);
    cr_expect_eq(other_groups_flops(&p, MR_GROUP_BACKBONE), 0.0);
}

/* By default a layer takes 6 x 6 tiles only where they multiply less than 4 x 4 ones: 48 x 48
 * outputs are 8 x 8 tiles of 6 x 6 (64 multiplies each, 4096) against 12 x 12 of 4 x 4 (36
 * each, 5184); 32 x 32 outputs come out even (6 x 6 tiles of 6 x 6 hang over the edge), and the
 * 4 x 4 tiles with their smaller rounding keep them. */
Test(profile, winograd_takes_6x6_tiles_where_they_multiply_less) {
    mr_profile p;
    profile_conv(MR_CONV_AUTO, 1, 48, 48, 64, 64, MR_GROUP_FPN, &p);
    double f6 = 2.0 * 64 * (8 * 8) * 64 * 64;
    cr_expect_eq(p.flops[MR_GROUP_FPN][0], f6, "48 x 48: forward %g, want %g",
                 p.flops[MR_GROUP_FPN][0], f6);
    cr_expect_eq(p.flops[MR_GROUP_FPN][1], 2.0 * f6);
    profile_conv(MR_CONV_AUTO, 1, 32, 32, 64, 64, MR_GROUP_FPN, &p);
    double f4 = 2.0 * 36 * (8 * 8) * 64 * 64;
    cr_expect_eq(p.flops[MR_GROUP_FPN][0], f4, "32 x 32: forward %g, want %g",
                 p.flops[MR_GROUP_FPN][0], f4);
    profile_conv(MR_CONV_WINOGRAD_F6, 1, 32, 32, 64, 64, MR_GROUP_FPN, &p);
    cr_expect_eq(p.flops[MR_GROUP_FPN][0], 2.0 * 64 * (6 * 6) * 64 * 64,
                 "32 x 32 forced to 6 x 6 tiles: forward %g", p.flops[MR_GROUP_FPN][0]);
}

Test(profile, nothing_is_counted_without_a_profile) {
    mr_profile p;
    profile_conv(MR_CONV_IM2COL, 1, 5, 5, 4, 4, MR_GROUP_HEADS, &p);
    mr_profile copy = p;
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, (size_t)8 << 20), MR_OK);
    mr_tensor *x = mr_tensor_4d(&ctx, "x", 1, 5, 5, 4), *k = mr_tensor_4d(&ctx, "w", 3, 3, 4, 4);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = 1.0f;
    for (int64_t i = 0; i < k->numel; i++) k->data[i] = 1.0f;
    cr_assert_not_null(mr_conv2d(&ctx, x, k, NULL, 1, MR_PAD_SAME));
    mr_ctx_free(&ctx);
    cr_expect_eq(memcmp(&copy, &p, sizeof p), 0, "an ended profile no longer changes");
}

/* A training step of the tiny model, profiled: products land in the groups that run them. */
Test(profile, a_training_step_spreads_over_the_model_groups) {
    mr_config c;
    load_tiny_matterport(&c);
    c.net.proposals_include_gt = true; /* positive ROIs: the mask head runs */
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK, "%s", mr_last_error());
    mr_init_weights(&m, MR_INIT_GLOROT, 3);
    mr_model_set_trainable(&m, "all", NULL);
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, (size_t)256 << 20), MR_OK);
    int64_t side = c.net.image_max_dim;
    mr_tensor *img = mr_tensor_4d(&ctx, "images", 1, side, side, c.net.image_channels);
    cr_assert_not_null(img);
    for (int64_t i = 0; i < img->numel; i++) img->data[i] = (float)(i % 17) - 8.0f;
    double box[4] = {10, 12, 60, 70};
    int64_t cls[1] = {1};
    static uint8_t mask[56 * 56];
    memset(mask, 1, sizeof mask);
    mr_instances gt = {.n = 1,
                       .boxes = box,
                       .class_ids = cls,
                       .masks = mask,
                       .mask_h = 56,
                       .mask_w = 56,
                       .image_h = side,
                       .image_w = side};
    mr_rng rng;
    mr_rng_seed(&rng, 1);
    mr_profile p;
    mr_profile_begin(&p);
    mr_loss_values v;
    mr_tensor *loss = mr_training_losses(&ctx, &m, img, &gt, NULL, &rng, &v);
    cr_assert_not_null(loss, "%s", mr_last_error());
    cr_assert_eq(mr_backward(&ctx, loss), MR_OK, "%s", mr_last_error());
    mr_profile_end();
    const mr_group with_products[] = {MR_GROUP_BACKBONE, MR_GROUP_FPN, MR_GROUP_RPN,
                                      MR_GROUP_HEADS};
    for (size_t i = 0; i < sizeof with_products / sizeof with_products[0]; i++) {
        mr_group g = with_products[i];
        cr_expect_gt(p.flops[g][0], 0.0, "%s forward", mr_group_name(g));
        cr_expect_gt(p.flops[g][1], 0.0, "%s backward", mr_group_name(g));
    }
    /* The time in products is part of each group's time: products on both threads count in
     * full, one thread's products inside a parallel region count for its share. */
    for (int g = 0; g < MR_GROUP_COUNT; g++)
        for (int k = 0; k < 2; k++) {
            cr_expect_eq(p.product_seconds[g][k] > 0.0, p.flops[g][k] > 0.0,
                         "%s phase %d: %g s in products for %g FLOPs", mr_group_name((mr_group)g),
                         k, p.product_seconds[g][k], p.flops[g][k]);
            cr_expect_leq(p.product_seconds[g][k], p.seconds[g][k] + 1e-6,
                          "%s phase %d: %g s in products of %g s", mr_group_name((mr_group)g), k,
                          p.product_seconds[g][k], p.seconds[g][k]);
        }
    /* The proposal layer, targets and ROI Align multiply no matrices. */
    cr_expect_eq(p.flops[MR_GROUP_PROPOSALS][0] + p.flops[MR_GROUP_ROI_ALIGN][0], 0.0);
    cr_expect_gt(p.seconds[MR_GROUP_PROPOSALS][0], 0.0);
    cr_expect_gt(p.seconds[MR_GROUP_ROI_ALIGN][0] + p.seconds[MR_GROUP_ROI_ALIGN][1], 0.0);
    mr_ctx_free(&ctx);
    mr_model_free(&m);
}

/* `bench --model` prints its result as lines the parent reads back: nothing is lost between. */
Test(profile, bench_model_lines_read_back_what_was_printed) {
    mr_bench_times t = {.train_s = 1.25,
                        .infer_s = 0.5,
                        .rss_mb = 900.5,
                        .detections = 7,
                        .infer_all_s = 0.75,
                        .detections_all = 100,
                        .infer_bf16_s = 0.375,
                        .infer_all_bf16_s = 0.625,
                        .bf16_kept_mb = 71.5,
                        .bf16_compared = 100,
                        .bf16_held = 23,
                        .step_ceiling = 287.25,
                        .step_floor_ratio = 1.6125,
                        .ok = 1};
    for (int g = 0; g < MR_GROUP_COUNT; g++) {
        t.train_prof.seconds[g][0] = 0.01 * (g + 1);
        t.train_prof.seconds[g][1] = 0.02 * (g + 1);
        t.train_prof.flops[g][0] = 1e9 * (g + 1);
        t.train_prof.flops[g][1] = 3e9 * (g + 2);
        t.train_prof.product_seconds[g][0] = 0.004 * (g + 1);
        t.train_prof.product_seconds[g][1] = 0.015 * (g + 1);
        t.infer_prof.seconds[g][0] = 0.005 * (g + 3);
        t.infer_prof.flops[g][0] = 2e9 * (g + 1);
    }
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    mr_bench_print_model(&t, f);
    fclose(f);
    mr_bench_times back = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        mr_bench_read_model_line(line, &back);
    free(text);
    cr_assert_eq(back.ok, 1);
    cr_expect(fabs(back.train_s - t.train_s) < 1e-4 && fabs(back.rss_mb - t.rss_mb) < 0.05);
    cr_expect(fabs(back.infer_all_s - t.infer_all_s) < 1e-4);
    cr_expect(back.detections == 7 && back.detections_all == 100);
    cr_expect(fabs(back.infer_bf16_s - t.infer_bf16_s) < 1e-4 &&
              fabs(back.infer_all_bf16_s - t.infer_all_bf16_s) < 1e-4);
    cr_expect(fabs(back.bf16_kept_mb - t.bf16_kept_mb) < 0.05);
    cr_expect(back.bf16_compared == 100 && back.bf16_held == 23);
    cr_expect(fabs(back.step_ceiling - t.step_ceiling) < 0.01 &&
                  fabs(back.step_floor_ratio - t.step_floor_ratio) < 1e-4,
              "ceiling %g ratio %g read back as %g %g", t.step_ceiling, t.step_floor_ratio,
              back.step_ceiling, back.step_floor_ratio);
    for (int g = 0; g < MR_GROUP_COUNT; g++)
        for (int k = 0; k < 2; k++) {
            cr_expect(fabs(back.train_prof.seconds[g][k] - t.train_prof.seconds[g][k]) < 1e-6);
            cr_expect(fabs(back.train_prof.flops[g][k] / t.train_prof.flops[g][k] - 1.0) < 1e-5);
            cr_expect(fabs(back.train_prof.product_seconds[g][k] -
                           t.train_prof.product_seconds[g][k]) < 1e-6,
                      "group %d phase %d: product seconds %g, printed %g", g, k,
                      back.train_prof.product_seconds[g][k], t.train_prof.product_seconds[g][k]);
            cr_expect(fabs(back.infer_prof.seconds[g][k] - t.infer_prof.seconds[g][k]) < 1e-6);
        }
}

/* The data check `make bench` runs over 1k, 5k and 10k images, here over a small set through
 * the command line: every training image goes through the prefetcher once. */
Test(profile, bench_data_check_runs_an_epoch_over_the_set, .timeout = 120) {
    const char *dir = temp_dir("bench-data");
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.out_dir = dir;
    o.n_images = 40;
    o.size = 64;
    o.val_fraction = 0.25;
    cr_assert_eq(mr_synth_write(&o), MR_OK, "%s", mr_last_error());
    char args[700], out[4096];
    snprintf(args, sizeof args, "bench --data '%s'", dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 0, "%s", out);
    mr_bench_data_times t = {0};
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
        mr_bench_read_data_line(line, &t);
    cr_assert_eq(t.ok, 1, "no data line in the output");
    cr_expect_eq(t.images, 30, "the 30 training images of 40, got %lld", t.images);
    cr_expect(t.pipeline_s > 0.0 && t.check_s > 0.0 && t.rss_mb > 1.0);
    cr_expect(t.held_mb > 1.0 && t.held_mb <= t.rss_mb, "held %.1f MB of a %.1f MB peak", t.held_mb,
              t.rss_mb);
    /* A folder without the set: one line and a failure, no result line. */
    snprintf(args, sizeof args, "bench --data '%s/none'", dir);
    cr_expect_neq(run_mrcnn(args, out, sizeof out), 0, "%s", out);
    cr_expect_null(strstr(out, "data images="), "%s", out);
}

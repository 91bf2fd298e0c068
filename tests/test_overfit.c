/* Training end to end on the tiny configuration, once with each recipe (Matterport's, as COCO
 * fine-tuning uses, and the from-scratch one tiny.json ships): two synthetic lesions (one benign,
 * one malignant) are learned to a low total loss, and detection then finds each with the right
 * class and a mask IoU of at least 0.8. */
#include <math.h>
#include <string.h>

#include "../core/ops.h"
#include "../data/raster.h"
#include "../data/synth.h"
#include "../layers/inference.h"
#include "../layers/mold.h"
#include "../layers/resample.h"
#include "../losses/losses.h"
#include "../train/sgd.h"
#include "../train/trainer.h"
#include "testutil.h"

#define SIDE 128

typedef struct {
    float *image;
    mr_mold_info mold;
    double box[4];
    int64_t class_id;
    uint8_t *full_mask; /* SIDE x SIDE */
    uint8_t *mini;
} example;

/* The first synthetic image holding exactly one lesion of class `cls`. */
static void make_example(const mr_config *c, mr_synth_class cls, example *e) {
    mr_synth_options o;
    mr_synth_defaults(&o);
    o.size = SIDE;
    o.seed = 11;
    o.two_lesion_fraction = 0.0;
    mr_synth_sample s;
    for (int64_t i = 0;; i++) {
        cr_assert_lt(i, 200, "no synthetic image of class %d", cls);
        cr_assert_eq(mr_synth_generate(&o, i, &s), MR_OK);
        if (s.n_lesions == 1 && s.lesions[0].cls == cls) break;
        mr_synth_sample_free(&s);
    }
    e->image = malloc(sizeof(float) * SIDE * SIDE);
    cr_assert_eq(mr_mold_image(e->image, s.image.pixels, SIDE, SIDE, 1, c->net.image_min_dim,
                               c->net.image_max_dim, c->net.mean_pixel, mr_net_pixel_std(&c->net),
                               &e->mold),
                 MR_OK);
    e->full_mask = calloc(SIDE * SIDE, 1);
    double xs[512], ys[512];
    cr_assert_lt(s.lesions[0].n_points, 512);
    for (int k = 0; k < s.lesions[0].n_points; k++) {
        xs[k] = s.lesions[0].xs[k];
        ys[k] = s.lesions[0].ys[k];
    }
    mr_raster_polygon(e->full_mask, SIDE, SIDE, xs, ys, s.lesions[0].n_points, 1);
    int64_t y1 = SIDE, x1 = SIDE, y2 = 0, x2 = 0;
    for (int64_t y = 0; y < SIDE; y++)
        for (int64_t x = 0; x < SIDE; x++)
            if (e->full_mask[y * SIDE + x]) {
                y1 = y < y1 ? y : y1;
                x1 = x < x1 ? x : x1;
                y2 = y + 1 > y2 ? y + 1 : y2;
                x2 = x + 1 > x2 ? x + 1 : x2;
            }
    int64_t box[4] = {y1, x1, y2, x2};
    for (int k = 0; k < 4; k++) e->box[k] = (double)box[k];
    e->class_id = cls;
    int64_t m = c->net.mini_mask_shape;
    e->mini = malloc((size_t)(m * m));
    cr_assert_eq(mr_minimize_mask(e->mini, m, m, e->full_mask, SIDE, SIDE, box), MR_OK);
    mr_synth_sample_free(&s);
}

/* Matterport's choices wherever the from-scratch recipe departs from them. */
#define MATTERPORT_RECIPE                                                                          \
    "{\"IMAGE_NORMALIZATION\": \"mean\", \"PROPOSALS_INCLUDE_GT\": false, \"ROI_SAMPLING\": "      \
    "\"proportional\", \"WEIGHT_INIT\": \"glorot\"}"

static void overfit(const char *recipe) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    if (recipe) cr_assert_eq(mr_config_parse(recipe, "recipe", &c), MR_OK, "%s", mr_last_error());
    example ex[2];
    make_example(&c, MR_SYNTH_BENIGN, &ex[0]);
    make_example(&c, MR_SYNTH_MALIGNANT, &ex[1]);
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    mr_init_weights(&m, c.weight_init, 3);
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 512u << 20), MR_OK);
    mr_instances gt[2];
    for (int b = 0; b < 2; b++)
        gt[b] = (mr_instances){.n = 1,
                               .boxes = ex[b].box,
                               .class_ids = &ex[b].class_id,
                               .masks = ex[b].mini,
                               .mask_h = c.net.mini_mask_shape,
                               .mask_w = c.net.mini_mask_shape,
                               .image_h = SIDE,
                               .image_w = SIDE};
    mr_sgd opt = {0.01f, 0.9f, 1e-4f, 5.0f};
    mr_rng rng;
    mr_rng_seed(&rng, 5);
    /* The loss of one step is noisy (anchors and ROIs are sampled anew each step), so the
     * bound is on the mean of the last 20 steps. */
    double first = 0.0, last = 0.0;
    const int steps = 400;
    for (int step = 0; step < steps; step++) {
        mr_ctx_reset(&ctx);
        mr_tensor *images = mr_tensor_4d(&ctx, "images", 2, SIDE, SIDE, 1);
        for (int b = 0; b < 2; b++)
            memcpy(images->data + b * SIDE * SIDE, ex[b].image, sizeof(float) * SIDE * SIDE);
        mr_loss_values v;
        mr_tensor *loss = mr_training_losses(&ctx, &m, images, gt, NULL, &rng, &v);
        cr_assert_not_null(loss, "step %d: %s", step, mr_last_error());
        cr_assert(isfinite(v.total), "step %d: loss %f", step, (double)v.total);
        mr_params_zero_grads(&m.params);
        cr_assert_eq(mr_backward(&ctx, loss), MR_OK);
        /* A tenth of the rate for the last 100 steps, as fine-tune schedules end: at 0.01 the
         * head losses keep jumping with each step's ROI sample, so where they stand at step
         * 400 depends on last-bit rounding rather than on whether the network learned. */
        opt.learning_rate = step < steps - 100 ? 0.01f : 0.001f;
        mr_sgd_report r;
        mr_sgd_step(&m.params, &opt, &r);
        if (step == 0) first = (double)v.total;
        if (step >= steps - 20) last += (double)v.total / 20.0;
    }
    cr_log_info("total loss %.4f -> %.4f (mean of the last 20 of %d steps)", first, last, steps);
    cr_assert_lt(last, 0.4, "total loss %.3f after %d steps (first %.3f)", last, steps, first);

    mr_ctx_reset(&ctx);
    mr_tensor *images = mr_tensor_4d(&ctx, "images", 2, SIDE, SIDE, 1);
    for (int b = 0; b < 2; b++)
        memcpy(images->data + b * SIDE * SIDE, ex[b].image, sizeof(float) * SIDE * SIDE);
    mr_image_geometry geo[2] = {ex[0].mold.geo, ex[1].mold.geo};
    mr_instances det[2];
    cr_assert_eq(mr_model_detect(&ctx, &m, images, geo, 0.5f, det), MR_OK, "%s", mr_last_error());
    for (int b = 0; b < 2; b++) {
        double best = 0.0;
        int64_t best_class = -1;
        for (int64_t i = 0; i < det[b].n; i++) {
            const uint8_t *pm = det[b].masks + i * SIDE * SIDE;
            double inter = 0, uni = 0;
            for (int64_t k = 0; k < SIDE * SIDE; k++) {
                inter += pm[k] && ex[b].full_mask[k];
                uni += pm[k] || ex[b].full_mask[k];
            }
            if (uni > 0 && inter / uni > best) {
                best = inter / uni;
                best_class = det[b].class_ids[i];
            }
        }
        cr_log_info("image %d: %lld detections, best mask IoU %.3f (class %lld)", b,
                    (long long)det[b].n, best, (long long)best_class);
        cr_assert_eq(best_class, ex[b].class_id, "image %d: best detection class %lld", b,
                     (long long)best_class);
        cr_assert_geq(best, 0.8, "image %d: mask IoU %.3f", b, best);
        mr_instances_free(&det[b]);
    }
    for (int b = 0; b < 2; b++) {
        free(ex[b].image);
        free(ex[b].full_mask);
        free(ex[b].mini);
    }
    mr_ctx_free(&ctx);
    mr_model_free(&m);
}

Test(overfit, two_synthetic_lesions_matterport_recipe, .timeout = 240) {
    overfit(MATTERPORT_RECIPE);
}

Test(overfit, two_synthetic_lesions_scratch_recipe, .timeout = 240) {
    overfit(NULL);
}

/* The from-scratch training recipe's switches each do what they claim, and leave Matterport's
 * behaviour alone when off: input scaling (IMAGE_NORMALIZATION), ground-truth boxes among the
 * proposals (PROPOSALS_INCLUDE_GT), Kaiming initialisation (WEIGHT_INIT), the learning-rate
 * warm-up (WARMUP_STEPS). ROI_SAMPLING "fill" is tested with the other targets. */
#include <math.h>
#include <string.h>

#include "../core/ops.h"
#include "../data/augment.h"
#include "../layers/boxes.h"
#include "../layers/mold.h"
#include "../losses/losses_internal.h"
#include "../train/config.h"
#include "../train/trainer.h"
#include "testutil.h"

static mr_config tiny_config(void) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    return c;
}

/* ---- IMAGE_NORMALIZATION ------------------------------------------------------------------ */

Test(recipe, mean_std_divides_content_and_padding_by_pixel_std) {
    mr_config c = tiny_config();
    enum { H = 32, W = 64 }; /* a wide image: rows of padding above and below */
    uint8_t px[H * W];
    for (int i = 0; i < H * W; i++) px[i] = (uint8_t)(i * 7);
    const int64_t S = c.net.image_max_dim;
    float *mean_only = malloc(sizeof(float) * (size_t)(S * S));
    float *scaled = malloc(sizeof(float) * (size_t)(S * S));
    mr_mold_info a, b;
    cr_assert_eq(
        mr_mold_image(mean_only, px, H, W, 1, c.net.image_min_dim, S, c.net.mean_pixel, NULL, &a),
        MR_OK);
    c.net.image_normalization = MR_NORM_MEAN_STD;
    c.net.pixel_std[0] = 40.0f;
    cr_assert_eq(mr_mold_image(scaled, px, H, W, 1, c.net.image_min_dim, S, c.net.mean_pixel,
                               mr_net_pixel_std(&c.net), &b),
                 MR_OK);
    cr_assert_gt(a.top, 0, "the test needs padding");
    for (int64_t i = 0; i < S * S; i++)
        cr_assert_float_eq(scaled[i], mean_only[i] / 40.0f, 1e-6f, "pixel %lld", (long long)i);
    cr_assert_float_eq(scaled[0], -c.net.mean_pixel[0] / 40.0f, 1e-6f, "padding");
    free(mean_only);
    free(scaled);
}

Test(recipe, augment_keeps_the_normalisation_it_was_given) {
    enum { S = 32 };
    const float mean[1] = {100.0f}, std[1] = {50.0f};
    float img[S * S], ref[S * S];
    const int64_t win[4] = {8, 0, 24, S};
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++) {
            bool inside = y >= win[0] && y < win[2];
            img[y * S + x] = inside ? ((float)(x * 8) - mean[0]) / std[0] : -mean[0] / std[0];
        }
    memcpy(ref, img, sizeof img);
    /* A flip moves values without changing them: the result is the mirrored input, padding
     * included, in the same normalised units. */
    mr_augment_params p = mr_augment_none();
    p.flip_prob = 1.0f;
    cr_assert_eq(mr_augment(img, S, 1, mean, std, win, NULL, 0, &p, 3, NULL), MR_OK);
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            cr_assert_float_eq(img[y * S + x], ref[y * S + (S - 1 - x)], 1e-5f, "(%d, %d)", y, x);
    /* Brightness adds its draw in pixel units, i.e. draw / std in normalised units. */
    memcpy(img, ref, sizeof img);
    p = mr_augment_none();
    p.brightness = 0.1f;
    mr_augment_draw d;
    cr_assert_eq(mr_augment(img, S, 1, mean, std, win, NULL, 0, &p, 11, &d), MR_OK);
    cr_assert_neq(d.brightness, 0.0f);
    int checked = 0;
    for (int i = 8 * S; i < 24 * S; i++) {
        double real = (double)ref[i] * 50.0 + 100.0, want = real + (double)d.brightness;
        if (want <= 0.0 || want >= 255.0) continue; /* clamped */
        cr_assert_float_eq(img[i], (float)((want - 100.0) / 50.0), 1e-4f, "pixel %d", i);
        checked++;
    }
    cr_assert_gt(checked, 100);
    cr_assert_float_eq(img[0], -2.0f, 0.0f, "padding stays -mean / std");
}

/* ---- PROPOSALS_INCLUDE_GT ----------------------------------------------------------------- */

/* The training targets of one blank image with one small lesion, from a freshly initialised
 * tiny model; returns how many positive ROIs are exactly the lesion's box. */
static int64_t gt_rows_among_positives(bool include_gt, int64_t *n_positive) {
    mr_config c = tiny_config();
    c.net.proposals_include_gt = include_gt;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK, "%s", mr_last_error());
    mr_init_weights(&m, MR_INIT_GLOROT, 4);
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 256u << 20), MR_OK);
    const int64_t S = c.net.image_max_dim, M = c.net.mini_mask_shape;
    mr_tensor *images = mr_tensor_4d(&ctx, "images", 1, S, S, 1);
    cr_assert_not_null(images);
    memset(images->data, 0, sizeof(float) * (size_t)images->numel);
    /* 6 x 6 pixels: smaller than every anchor, so the RPN alone rarely proposes it. */
    double box[4] = {40, 70, 46, 76};
    int64_t cls = 2;
    uint8_t *mini = malloc((size_t)(M * M));
    memset(mini, 1, (size_t)(M * M));
    mr_instances gt = {.n = 1,
                       .boxes = box,
                       .class_ids = &cls,
                       .masks = mini,
                       .mask_h = M,
                       .mask_w = M,
                       .image_h = S,
                       .image_w = S};
    mr_tensor *p[5], *logits, *deltas;
    cr_assert_eq(mr_model_features(&ctx, &m, images, p), MR_OK);
    cr_assert_eq(mr_model_rpn(&ctx, &m, p, &logits, &deltas), MR_OK);
    mr_rng rng;
    mr_rng_seed(&rng, 12);
    mr_train_targets tt;
    cr_assert_eq(mr_train_targets_build(&ctx, &m, logits, deltas, &gt, 1, &rng, &tt), MR_OK, "%s",
                 mr_last_error());
    float norm[4];
    mr_boxes_to_f32(norm, box, 1);
    mr_norm_boxes(norm, norm, 1, S, S);
    int64_t exact = 0;
    *n_positive = 0;
    for (int64_t r = 0; r < tt.n_rois; r++) {
        if (tt.roi_class[r] <= 0) continue;
        (*n_positive)++;
        cr_assert_eq(tt.roi_class[r], cls);
        exact += !memcmp(tt.rois + 4 * r, norm, sizeof norm);
    }
    free(mini);
    mr_ctx_free(&ctx);
    mr_model_free(&m);
    return exact;
}

Test(recipe, gt_boxes_join_the_proposals_only_when_asked) {
    int64_t positives = 0;
    cr_assert_eq(gt_rows_among_positives(true, &positives), 1,
                 "the lesion's own box is a positive ROI");
    cr_assert_geq(positives, 1);
    cr_assert_eq(gt_rows_among_positives(false, &positives), 0,
                 "Matterport samples from the RPN's proposals only");
}

/* ---- WEIGHT_INIT -------------------------------------------------------------------------- */

static double std_of(const mr_params *p, const char *name) {
    mr_param *q = mr_params_find((mr_params *)p, name);
    cr_assert_not_null(q, "%s", name);
    double s = 0.0, s2 = 0.0;
    for (int64_t k = 0; k < q->t.numel; k++) {
        s += (double)q->t.data[k];
        s2 += (double)q->t.data[k] * (double)q->t.data[k];
    }
    double mean = s / (double)q->t.numel;
    return sqrt(s2 / (double)q->t.numel - mean * mean);
}

Test(recipe, kaiming_init_follows_torchvision) {
    mr_config c = tiny_config();
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    mr_init_weights(&m, MR_INIT_KAIMING, 1);
    /* Backbone and mask convs: Kaiming-normal, fan_out = kh * kw * out, ReLU gain. */
    const mr_param *k = mr_params_find(&m.params, "res3a_branch2b/kernel");
    double fan_out = (double)(k->t.shape[0] * k->t.shape[1] * k->t.shape[3]);
    cr_assert_float_eq(std_of(&m.params, "res3a_branch2b/kernel"), sqrt(2.0 / fan_out),
                       0.06 * sqrt(2.0 / fan_out));
    k = mr_params_find(&m.params, "mrcnn_mask_conv2/kernel");
    fan_out = (double)(k->t.shape[0] * k->t.shape[1] * k->t.shape[3]);
    cr_assert_float_eq(std_of(&m.params, "mrcnn_mask_conv2/kernel"), sqrt(2.0 / fan_out),
                       0.06 * sqrt(2.0 / fan_out));
    /* FPN: Kaiming-uniform with a = 1, std = sqrt(1 / fan_in). */
    k = mr_params_find(&m.params, "fpn_p3/kernel");
    double fan_in = (double)(k->t.shape[0] * k->t.shape[1] * k->t.shape[2]);
    cr_assert_float_eq(std_of(&m.params, "fpn_p3/kernel"), sqrt(1.0 / fan_in),
                       0.06 * sqrt(1.0 / fan_in));
    /* RPN and class logits normal(0.01), box regression normal(0.001). */
    cr_assert_float_eq(std_of(&m.params, "rpn_conv_shared/kernel"), 0.01, 0.0006);
    cr_assert_float_eq(std_of(&m.params, "mrcnn_class_logits/kernel"), 0.01, 0.002);
    cr_assert_float_eq(std_of(&m.params, "mrcnn_bbox_fc/kernel"), 0.001, 0.0001);
    cr_assert_float_eq(std_of(&m.params, "mrcnn_mask/bias"), 0.0, 0.0);
    /* Glorot (Keras) gives the RPN conv a uniform of limit sqrt(6 / (fan_in + fan_out)). */
    mr_init_weights(&m, MR_INIT_GLOROT, 1);
    k = mr_params_find(&m.params, "rpn_conv_shared/kernel");
    double fi = (double)(9 * k->t.shape[2]), fo = (double)(9 * k->t.shape[3]);
    cr_assert_float_eq(std_of(&m.params, "rpn_conv_shared/kernel"), sqrt(2.0 / (fi + fo)),
                       0.06 * sqrt(2.0 / (fi + fo)));
    mr_model_free(&m);
}

/* ---- RESNET_STRIDE_CONV ------------------------------------------------------------------- */

/* P2..P6 of one random image under a stride placement, with the same weights. */
static void features(mr_resnet_stride where, float **p2, int64_t shapes[5][4]) {
    mr_config c = tiny_config();
    c.net.resnet_stride = where;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    mr_init_weights(&m, MR_INIT_GLOROT, 6);
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 256u << 20), MR_OK);
    const int64_t S = c.net.image_max_dim;
    mr_tensor *images = mr_tensor_4d(&ctx, "images", 1, S, S, 1);
    mr_rng rng;
    mr_rng_seed(&rng, 2);
    for (int64_t i = 0; i < images->numel; i++) images->data[i] = mr_rng_normal(&rng);
    mr_tensor *p[5];
    bool was = mr_no_grad_begin(&ctx);
    cr_assert_eq(mr_model_features(&ctx, &m, images, p), MR_OK, "%s", mr_last_error());
    mr_no_grad_end(&ctx, was);
    for (int l = 0; l < 5; l++)
        for (int d = 0; d < 4; d++) shapes[l][d] = p[l]->shape[d];
    *p2 = malloc(sizeof(float) * (size_t)p[0]->numel);
    memcpy(*p2, p[0]->data, sizeof(float) * (size_t)p[0]->numel);
    mr_ctx_free(&ctx);
    mr_model_free(&m);
}

Test(recipe, stride_on_the_3x3_keeps_shapes_and_changes_features) {
    float *a, *b;
    int64_t sa[5][4], sb[5][4];
    features(MR_STRIDE_1X1, &a, sa);
    features(MR_STRIDE_3X3, &b, sb);
    cr_assert(!memcmp(sa, sb, sizeof sa), "same feature shapes, so the same weights load");
    int64_t n = sa[0][0] * sa[0][1] * sa[0][2] * sa[0][3];
    double diff = 0.0;
    for (int64_t i = 0; i < n; i++) diff += fabs((double)a[i] - (double)b[i]);
    cr_assert_gt(diff / (double)n, 1e-3, "the strided convolution moved");
    free(a);
    free(b);
}

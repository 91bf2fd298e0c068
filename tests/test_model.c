/* The network as Matterport builds it: parameter names, shapes and counts (ResNet-101 with 81
 * classes must hold exactly the 64,158,584 parameters users report for mask_rcnn_coco.h5), the
 * second seed's variant reached by config, feature and RPN output shapes, layer presets. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../core/ops.h"
#include "../train/config.h"
#include "testutil.h"

static int64_t count_params(const mr_model *m, bool moving_only) {
    int64_t n = 0;
    for (int i = 0; i < m->params.count; i++)
        if (!moving_only || !m->params.items[i].trainable_kind) n += m->params.items[i].t.numel;
    return n;
}

static void expect_shape(const mr_model *m, const char *name, int ndim, int64_t a, int64_t b,
                         int64_t c, int64_t d) {
    mr_param *p = mr_params_find((mr_params *)&m->params, name);
    cr_assert_not_null(p, "no parameter %s", name);
    int64_t want[4] = {a, b, c, d};
    cr_assert_eq(p->t.ndim, ndim, "%s rank", name);
    for (int i = 0; i < ndim; i++)
        cr_assert_eq(p->t.shape[i], want[i], "%s dim %d: %lld vs %lld", name, i,
                     (long long)p->t.shape[i], (long long)want[i]);
}

Test(model, resnet101_coco_has_matterports_parameter_count) {
    mr_net_config c;
    mr_net_config_defaults(&c);
    c.num_classes = 81;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_OK, "%s", mr_last_error());
    cr_assert_eq(count_params(&m, false), 64158584);
    cr_assert_eq(count_params(&m, true), 111488);
    cr_assert_eq(m.n_anchors, 261888, "1024x1024 with Matterport's anchors");
    expect_shape(&m, "conv1/kernel", 4, 7, 7, 3, 64);
    expect_shape(&m, "conv1/bias", 1, 64, 0, 0, 0);
    expect_shape(&m, "bn_conv1/gamma", 1, 64, 0, 0, 0);
    expect_shape(&m, "res2a_branch1/kernel", 4, 1, 1, 64, 256);
    expect_shape(&m, "res4w_branch2c/bias", 1, 1024, 0, 0, 0);
    expect_shape(&m, "bn4w_branch2c/moving_variance", 1, 1024, 0, 0, 0);
    expect_shape(&m, "res5c_branch2b/kernel", 4, 3, 3, 512, 512);
    expect_shape(&m, "fpn_c5p5/kernel", 4, 1, 1, 2048, 256);
    expect_shape(&m, "fpn_p2/kernel", 4, 3, 3, 256, 256);
    expect_shape(&m, "rpn_conv_shared/kernel", 4, 3, 3, 256, 512);
    expect_shape(&m, "rpn_class_raw/kernel", 4, 1, 1, 512, 6);
    expect_shape(&m, "rpn_bbox_pred/kernel", 4, 1, 1, 512, 12);
    expect_shape(&m, "mrcnn_class_conv1/kernel", 4, 7, 7, 256, 1024);
    expect_shape(&m, "mrcnn_class_logits/kernel", 2, 1024, 81, 0, 0);
    expect_shape(&m, "mrcnn_bbox_fc/kernel", 2, 1024, 324, 0, 0);
    expect_shape(&m, "mrcnn_mask_deconv/kernel", 4, 2, 2, 256, 256);
    expect_shape(&m, "mrcnn_mask/kernel", 4, 1, 1, 256, 81);
    cr_assert_null(mr_params_find(&m.params, "res4x_branch2a/kernel"), "stage 4 ends at w");
    mr_model_free(&m);
}

/* Pages of [p, p + floats) the system backs with memory now (mincore), whole pages inside only. */
static size_t resident_pages(const float *p, size_t floats) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) / page * page;
    uintptr_t hi = (uintptr_t)(p + floats) / page * page;
    if (hi <= lo) return 0;
    size_t n = (size_t)((hi - lo) / page), count = 0;
    unsigned char *vec = malloc(n);
    cr_assert_not_null(vec);
    cr_assert_eq(mincore((void *)lo, hi - lo, vec), 0);
    for (size_t i = 0; i < n; i++) count += vec[i] & 1u;
    free(vec);
    return count;
}

/* A model's gradients and momentum cost memory only once written: predict and evaluate never
 * write them, so an inference process holds the weights alone (ResNet-101's 257 MB, not three
 * times that). Training zeroes the trainable parameters' gradients alone, so training the heads
 * leaves the backbone's unbacked. */
Test(model, gradients_and_momentum_take_memory_only_once_written) {
    mr_net_config c;
    mr_net_config_defaults(&c);
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_OK, "%s", mr_last_error());
    const mr_params *p = &m.params;
    const size_t page_floats = (size_t)sysconf(_SC_PAGESIZE) / sizeof(float);
    cr_assert_gt(p->total / page_floats, 10000);
    cr_assert_eq(resident_pages(p->grads, p->total), 0, "gradients backed before any write");
    cr_assert_eq(resident_pages(p->momentum, p->total), 0, "momentum backed before any write");
    cr_assert_eq(mr_model_set_trainable(&m, "heads", NULL), MR_OK, "%s", mr_last_error());
    mr_params_zero_grads(&m.params);
    size_t trainable = 0, frozen = 0;
    for (int i = 0; i < p->count; i++) {
        const mr_param *q = &p->items[i];
        const float *g = p->grads + q->offset;
        const size_t floats = (size_t)q->t.numel, whole = floats / page_floats;
        if (whole < 4) continue; /* pages shared with neighbours */
        size_t backed = resident_pages(g, floats);
        if (q->frozen) {
            cr_assert_eq(backed, 0, "%s: frozen, yet its gradient is backed", q->name);
            frozen++;
        } else {
            cr_assert_geq(backed, whole - 1, "%s: zeroed, so backed", q->name);
            trainable++;
        }
    }
    cr_assert(trainable > 10 && frozen > 100, "%zu trainable, %zu frozen", trainable, frozen);
    /* Last: reading maps the system's zero page, which mincore counts as resident. */
    for (size_t i = 0; i < p->total; i += page_floats)
        cr_assert(p->grads[i] == 0.0f && p->momentum[i] == 0.0f, "zero when read");
    mr_model_free(&m);
}

Test(model, resnet50_is_resnet101_less_seventeen_stage4_blocks) {
    mr_net_config c;
    mr_net_config_defaults(&c);
    c.num_classes = 81;
    snprintf(c.backbone_name, sizeof c.backbone_name, "resnet50");
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_OK);
    /* One stage-4 identity block: 1x1 1024->256, 3x3 256->256, 1x1 256->1024, biases, and
     * three batch norms of 4 vectors each. */
    int64_t block =
        (1024 * 256 + 256) + (9 * 256 * 256 + 256) + (256 * 1024 + 1024) + 4 * (256 + 256 + 1024);
    cr_assert_eq(count_params(&m, false), 64158584 - 17 * block);
    cr_assert_not_null(mr_params_find(&m.params, "res4f_branch2c/kernel"));
    cr_assert_null(mr_params_find(&m.params, "res4g_branch2c/kernel"));
    mr_model_free(&m);
}

Test(model, mammography_variant_comes_from_config_alone) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/mammo.json", &c), MR_OK, "%s", mr_last_error());
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK, "%s", mr_last_error());
    cr_assert_eq(m.anchors_per_location, 15);
    expect_shape(&m, "conv1/kernel", 4, 7, 7, 1, 64);
    expect_shape(&m, "rpn_class_raw/kernel", 4, 1, 1, 512, 30);
    expect_shape(&m, "rpn_bbox_pred/kernel", 4, 1, 1, 512, 60);
    expect_shape(&m, "mrcnn_class_conv1/kernel", 4, 7, 7, 256, 4096);
    expect_shape(&m, "mrcnn_mask/kernel", 4, 1, 1, 256, 2);
    cr_assert_null(mr_params_find(&m.params, "mrcnn_mask_deconv/kernel"), "14x14 masks: no deconv");
    cr_assert_eq(m.cfg.roi_align_mode, MR_ROI_AVERAGE);
    mr_model_free(&m);
}

Test(model, tiny_forward_shapes_and_rpn_layout) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 256u << 20), MR_OK);
    mr_tensor *img = mr_tensor_4d(&ctx, "images", 2, 128, 128, 1);
    for (int64_t i = 0; i < img->numel; i++) img->data[i] = (float)(i % 17) - 8.0f;
    for (int i = 0; i < m.params.count; i++) {
        mr_param *p = &m.params.items[i];
        for (int64_t k = 0; k < p->t.numel; k++)
            p->t.data[k] =
                strstr(p->name, "variance") ? 1.0f : 0.01f * (float)((k * 7 + i) % 13 - 6);
    }
    mr_tensor *p[5];
    cr_assert_eq(mr_model_features(&ctx, &m, img, p), MR_OK, "%s", mr_last_error());
    const int64_t side[5] = {32, 16, 8, 4, 2};
    for (int l = 0; l < 5; l++) {
        cr_assert_eq(p[l]->shape[0], 2);
        cr_assert_eq(p[l]->shape[1], side[l], "P%d", l + 2);
        cr_assert_eq(p[l]->shape[3], 32);
    }
    /* P6 is every other pixel of P5. */
    cr_assert_float_eq(p[4]->data[(1 * 2 + 1) * 32 + 5], p[3]->data[(2 * 4 + 2) * 32 + 5], 0.0f);
    mr_tensor *logits, *deltas;
    cr_assert_eq(mr_model_rpn(&ctx, &m, p, &logits, &deltas), MR_OK);
    cr_assert_eq(logits->shape[1], m.n_anchors);
    cr_assert_eq(deltas->shape[2], 4);
    cr_assert_eq(m.n_anchors, 3 * (32 * 32 + 16 * 16 + 8 * 8 + 4 * 4 + 2 * 2));
    mr_ctx_free(&ctx);
    mr_model_free(&m);
}

Test(model, layer_presets_select_matterports_layers) {
    mr_net_config c;
    mr_net_config_defaults(&c);
    snprintf(c.backbone_name, sizeof c.backbone_name, "resnet50");
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_OK);
    int n = 0;
    cr_assert_eq(mr_model_set_trainable(&m, "heads", &n), MR_OK);
    cr_assert(mr_params_find(&m.params, "res5a_branch2a/kernel")->frozen);
    cr_assert(!mr_params_find(&m.params, "fpn_c5p5/kernel")->frozen);
    cr_assert(!mr_params_find(&m.params, "rpn_conv_shared/kernel")->frozen);
    cr_assert(!mr_params_find(&m.params, "mrcnn_mask_bn1/gamma")->frozen);
    cr_assert_eq(mr_model_set_trainable(&m, "4+", &n), MR_OK);
    cr_assert(mr_params_find(&m.params, "res3d_branch2c/kernel")->frozen);
    cr_assert(!mr_params_find(&m.params, "res4a_branch1/kernel")->frozen);
    cr_assert(!mr_params_find(&m.params, "bn4a_branch1/gamma")->frozen);
    cr_assert(mr_params_find(&m.params, "bn4a_branch1/moving_mean")->frozen);
    cr_assert_eq(mr_model_set_trainable(&m, "3+", &n), MR_OK);
    cr_assert(!mr_params_find(&m.params, "res3a_branch2a/kernel")->frozen);
    cr_assert(mr_params_find(&m.params, "res2c_branch2c/kernel")->frozen);
    cr_assert_eq(mr_model_set_trainable(&m, "all", &n), MR_OK);
    cr_assert(!mr_params_find(&m.params, "conv1/kernel")->frozen);
    mr_model_free(&m);
}

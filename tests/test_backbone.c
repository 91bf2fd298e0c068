/* The backbone extension point: a tiny backbone stated in this file through the same record
 * and builder as ResNet (layers/network.h), handed to mr_model_init by the net config's explicit
 * record (mr_net_config.backbone: the test hook; a config file selects from the list in
 * layers/network.c by BACKBONE). It builds, runs forward and backward, and its layers appear in
 * the table with their stages, init rules and Keras order; presets freeze it by stage. */
#include "../layers/network.h"
#include "../train/init.h"
#include "testutil.h"

/* ---- the test backbone: what a backbone file holds ---------------------------------------- */

/* A 3x3/2 stem conv + batch norm, then one 3x3/2 conv per stage: C2..C5 at strides 4..32. */
typedef struct {
    mr_conv_bn_w stem;
    mr_conv_w stage[4];
} tiny_w;

static mr_status tiny_declare(mr_builder *b, void *handles, int64_t channels[4]) {
    tiny_w *w = handles;
    int64_t h = mr_net_same_size(b->h, 2), wd = mr_net_same_size(b->w, 2), cin = 4;
    b->stage = 1;
    b->rule = MR_KAIMING_NORMAL_FAN_OUT;
    w->stem = mr_net_decl_conv_bn(b, "tiny_stem", "tiny_stem_bn", 3, b->c, cin, h, wd, 1.0);
    b->rule = MR_KAIMING_NORMAL_0_01;
    for (int k = 0; k < 4; k++) {
        char name[24];
        snprintf(name, sizeof name, "tiny_c%d", k + 2);
        b->stage = k + 2;
        h = mr_net_same_size(h, 2);
        wd = mr_net_same_size(wd, 2);
        w->stage[k] = mr_net_decl_conv(b, name, 3, cin, 8 * (k + 1), h, wd, 1.0);
        b->chain += 2; /* the conv and its ReLU */
        cin = channels[k] = 8 * (k + 1);
    }
    return b->status;
}

static void tiny_resolve(mr_model *m, void *handles) {
    tiny_w *w = handles;
    mr_net_resolve_conv_bn(m, &w->stem);
    for (int k = 0; k < 4; k++) mr_net_resolve_conv(m, &w->stage[k]);
}

static mr_status tiny_forward(mr_ctx *ctx, const mr_model *m, const void *handles,
                              mr_tensor *images, mr_tensor *c[4]) {
    const tiny_w *w = handles;
    mr_tensor *x = mr_relu_inplace(ctx, mr_net_conv_bn(ctx, m, images, &w->stem, 2, MR_PAD_SAME));
    for (int k = 0; k < 4; k++)
        x = c[k] = mr_relu_inplace(ctx, mr_net_conv(ctx, x, &w->stage[k], 2, MR_PAD_SAME));
    return ctx->status;
}

static const mr_backbone tiny_backbone = {.name = "tiny-test",
                                          .handles_size = sizeof(tiny_w),
                                          .declare = tiny_declare,
                                          .resolve = tiny_resolve,
                                          .forward = tiny_forward};

/* ---- tests -------------------------------------------------------------------------------- */

static void tiny_model(mr_model *m) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    c.net.backbone = &tiny_backbone;
    cr_assert_eq(mr_model_init(m, &c.net), MR_OK, "%s", mr_last_error());
}

static const mr_layer *row(const mr_model *m, const char *name) {
    for (int i = 0; i < m->n_layers; i++)
        if (!strcmp(m->layers[i].name, name)) return &m->layers[i];
    return NULL;
}

Test(backbone, a_new_backbone_declares_its_layers_into_the_table) {
    mr_model m;
    tiny_model(&m);
    cr_assert_eq(m.backbone, &tiny_backbone);
    cr_assert_null(row(&m, "conv1"), "no ResNet layer");
    cr_assert_null(mr_params_find(&m.params, "res2a_branch2a/kernel"));
    static const char *const names[6] = {"tiny_stem", "tiny_stem_bn", "tiny_c2",
                                         "tiny_c3",   "tiny_c4",      "tiny_c5"};
    static const int stages[6] = {1, 1, 2, 3, 4, 5};
    for (int i = 0; i < 6; i++) {
        const mr_layer *l = &m.layers[i];
        cr_assert_str_eq(l->name, names[i]);
        cr_assert_eq(l->stage, stages[i], "%s", l->name);
        cr_assert_eq(l->kaiming, i < 2 ? MR_KAIMING_NORMAL_FAN_OUT : MR_KAIMING_NORMAL_0_01);
    }
    cr_assert_eq(m.layers[0].bn, 1, "the stem's batch norm is linked for folding");
    cr_assert_eq(m.layers[1].kind, MR_LAYER_BN);
    cr_assert_eq(mr_params_tensor(&m.params, "tiny_c4/kernel")->shape[2], 16);
    /* The FPN's laterals take the channels the backbone reported. */
    const mr_tensor *lat = mr_params_tensor(&m.params, "fpn_c5p5/kernel");
    cr_assert_eq(lat->shape[2], 32);
    cr_assert_eq(mr_params_tensor(&m.params, "fpn_c2p2/kernel")->shape[2], 8);
    cr_assert_eq(row(&m, "fpn_c2p2")->shape[0], 32, "C2 at stride 4 of 128");
    /* Keras order: the backbone first, stem to C5, then the FPN. */
    int *order = malloc(sizeof *order * (size_t)m.n_layers);
    mr_network_keras_order(&m, order);
    for (int i = 0; i < 6; i++) cr_assert_eq(order[i], i, "Keras position %d", i);
    cr_assert_str_eq(m.layers[order[6]].name, "fpn_c5p5");
    free(order);
    /* The summary lists it. */
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    mr_model_print_summary(&m, out);
    fclose(out);
    cr_assert_not_null(strstr(text, "tiny_c3"));
    free(text);
    mr_model_free(&m);
}

Test(backbone, init_rules_and_presets_follow_the_table) {
    mr_model m;
    tiny_model(&m);
    mr_init_weights(&m, MR_INIT_KAIMING, 7);
    const mr_tensor *stem = mr_params_tensor(&m.params, "tiny_stem/kernel");
    const mr_tensor *c3 = mr_params_tensor(&m.params, "tiny_c3/kernel");
    double ss = 0.0, s3 = 0.0;
    for (int64_t i = 0; i < stem->numel; i++) ss += (double)(stem->data[i] * stem->data[i]);
    for (int64_t i = 0; i < c3->numel; i++) s3 += (double)(c3->data[i] * c3->data[i]);
    /* fan_out 3*3*4 = 36: std sqrt(2/36) = 0.24; normal(0.01) for the stages. */
    cr_assert(sqrt(ss / (double)stem->numel) > 0.1, "stem std %g", sqrt(ss / (double)stem->numel));
    cr_assert(sqrt(s3 / (double)c3->numel) < 0.02, "C3 std %g", sqrt(s3 / (double)c3->numel));
    cr_assert_eq(mr_params_tensor(&m.params, "tiny_stem_bn/moving_variance")->data[0], 1.0f);
    int n = 0;
    cr_assert_eq(mr_model_set_trainable(&m, "4+", &n), MR_OK);
    cr_assert(mr_params_find(&m.params, "tiny_c3/kernel")->frozen);
    cr_assert(mr_params_find(&m.params, "tiny_stem_bn/gamma")->frozen);
    cr_assert(!mr_params_find(&m.params, "tiny_c4/kernel")->frozen);
    cr_assert(!mr_params_find(&m.params, "fpn_c2p2/kernel")->frozen);
    mr_model_free(&m);
}

Test(backbone, a_new_backbone_runs_forward_and_backward) {
    mr_model m;
    tiny_model(&m);
    mr_init_weights(&m, MR_INIT_KAIMING, 3);
    int n = 0;
    cr_assert_eq(mr_model_set_trainable(&m, "3+", &n), MR_OK);
    mr_params_zero_grads(&m.params);
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 64u << 20), MR_OK);
    mr_tensor *img = mr_tensor_4d(&ctx, "images", 1, 128, 128, 1);
    for (int64_t i = 0; i < img->numel; i++) img->data[i] = (float)(i % 23) - 11.0f;
    mr_tensor *p[5];
    cr_assert_eq(mr_model_features(&ctx, &m, img, p), MR_OK, "%s", mr_last_error());
    const int64_t side[5] = {32, 16, 8, 4, 2};
    for (int l = 0; l < 5; l++) {
        cr_assert_eq(p[l]->shape[1], side[l], "P%d", l + 2);
        cr_assert_eq(p[l]->shape[3], 32);
    }
    mr_tensor *logits, *deltas;
    cr_assert_eq(mr_model_rpn(&ctx, &m, p, &logits, &deltas), MR_OK);
    cr_assert_eq(logits->shape[1], m.n_anchors);
    /* Backward from P2 reaches the trainable stages, not the frozen ones. */
    float *seed = malloc(sizeof(float) * (size_t)p[0]->numel);
    for (int64_t i = 0; i < p[0]->numel; i++) seed[i] = (float)(i % 7) - 3.0f;
    cr_assert_eq(mr_backward_seeded(&ctx, p[0], seed), MR_OK, "%s", mr_last_error());
    free(seed);
    const mr_param *c3 = mr_params_find(&m.params, "tiny_c3/kernel");
    const mr_param *c2 = mr_params_find(&m.params, "tiny_c2/kernel");
    double g3 = 0.0, g2 = 0.0;
    for (int64_t i = 0; i < c3->t.numel; i++) g3 += fabs(m.params.grads[c3->offset + (size_t)i]);
    for (int64_t i = 0; i < c2->t.numel; i++) g2 += fabs(m.params.grads[c2->offset + (size_t)i]);
    cr_assert(g3 > 0.0, "tiny_c3 trains under 3+");
    cr_assert_eq(g2, 0.0, "tiny_c2 is frozen under 3+");
    mr_ctx_free(&ctx);
    mr_model_free(&m);
}

Test(backbone, backbone_selects_from_the_list) {
    mr_net_config c;
    mr_net_config_defaults(&c);
    snprintf(c.backbone_name, sizeof c.backbone_name, "resnet50");
    cr_assert_eq(mr_net_backbone(&c), mr_backbone_find("resnet50"));
    snprintf(c.backbone_name, sizeof c.backbone_name, "resnet101");
    cr_assert_eq(mr_net_backbone(&c), mr_backbone_find("resnet101"));
    cr_assert_str_eq(mr_net_backbone(&c)->name, "resnet101");
    cr_assert_null(mr_backbone_find("resnet18"));
    c.backbone = &tiny_backbone;
    cr_assert_eq(mr_net_backbone(&c), &tiny_backbone, "an explicit record wins");
    c.backbone = NULL;
    snprintf(c.backbone_name, sizeof c.backbone_name, "resnet152");
    cr_assert_null(mr_net_backbone(&c));
    cr_assert(strstr(mr_last_error(), "BACKBONE must be resnet50 or resnet101, got 'resnet152'"),
              "%s", mr_last_error());
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_ERR_CONFIG);
}

/* A backbone whose layers claim a heads stage is refused (presets would misfreeze it). */
static mr_status bad_declare(mr_builder *b, void *handles, int64_t channels[4]) {
    (void)handles;
    b->stage = MR_STAGE_HEADS;
    mr_net_decl_conv(b, "bad_c2", 1, b->c, 4, b->h / 4, b->w / 4, 1.0);
    for (int k = 0; k < 4; k++) channels[k] = 4;
    return b->status;
}

Test(backbone, a_backbone_outside_stages_1_to_5_is_refused) {
    mr_backbone bad = tiny_backbone;
    bad.name = "bad";
    bad.declare = bad_declare;
    mr_net_config c;
    mr_net_config_defaults(&c);
    c.image_max_dim = 128;
    c.backbone = &bad;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_ERR_CONFIG);
    cr_assert(strstr(mr_last_error(), "backbone bad: layer bad_c2 has stage 6, not 1..5"), "%s",
              mr_last_error());
}

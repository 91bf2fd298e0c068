/* The network table against the parameter registry: every parameter in exactly one layer, the
 * counts Matterport's users know, the batch norm after each conv, stages, Keras groups, Keras'
 * topological order (as written to Keras files), and the forward handles resolved at init. */
#include <string.h>

#include "../train/config.h"
#include "../train/weights.h"
#include "testutil.h"

/* Checks the table against the registry; returns the parameters counted through the table. */
static int64_t check_table(const mr_model *m) {
    int *owner = malloc(sizeof *owner * (size_t)m->params.count);
    cr_assert_not_null(owner);
    for (int i = 0; i < m->params.count; i++) owner[i] = -1;
    int64_t total = 0;
    for (int li = 0; li < m->n_layers; li++) {
        const mr_layer *l = &m->layers[li];
        int want = l->kind == MR_LAYER_BN ? 4 : 2;
        cr_assert_eq(l->n_params, want, "%s has %d parameters", l->name, l->n_params);
        int64_t numel = 0;
        for (int k = 0; k < l->n_params; k++) {
            int q = l->param[k];
            cr_assert(q >= 0 && q < m->params.count, "%s: parameter index %d", l->name, q);
            cr_assert_eq(owner[q], -1, "%s is in %s and %s", m->params.items[q].name,
                         owner[q] >= 0 ? m->layers[owner[q]].name : "", l->name);
            owner[q] = li;
            const char *name = m->params.items[q].name;
            size_t n = strlen(l->name);
            cr_assert(!strncmp(name, l->name, n) && name[n] == '/', "%s in layer %s", name,
                      l->name);
            numel += m->params.items[q].t.numel;
        }
        cr_assert_eq(numel, l->params, "%s: the summary's count", l->name);
        total += numel;
        if (l->bn >= 0) {
            const mr_layer *bn = &m->layers[l->bn];
            cr_assert_eq(bn->kind, MR_LAYER_BN, "%s is followed by %s", l->name, bn->name);
            cr_assert_eq(l->kind, MR_LAYER_CONV);
            cr_assert_eq(bn->stage, l->stage);
            const mr_tensor *k = &m->params.items[l->param[0]].t;
            cr_assert_eq(k->shape[k->ndim - 1], m->params.items[bn->param[0]].t.numel);
        }
    }
    for (int i = 0; i < m->params.count; i++)
        cr_assert_neq(owner[i], -1, "%s is in no layer", m->params.items[i].name);
    /* Every batch norm follows exactly one conv. */
    for (int li = 0; li < m->n_layers; li++) {
        if (m->layers[li].kind != MR_LAYER_BN) continue;
        int convs = 0;
        for (int j = 0; j < m->n_layers; j++) convs += m->layers[j].bn == li;
        cr_assert_eq(convs, 1, "%s follows %d convs", m->layers[li].name, convs);
    }
    free(owner);
    return total;
}

static const mr_layer *row(const mr_model *m, const char *name) {
    for (int i = 0; i < m->n_layers; i++)
        if (!strcmp(m->layers[i].name, name)) return &m->layers[i];
    cr_assert_fail("no layer %s", name);
    return NULL;
}

Test(network, table_holds_every_parameter_once_resnet101_coco) {
    mr_net_config c;
    mr_net_config_defaults(&c);
    c.num_classes = 81;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_OK, "%s", mr_last_error());
    cr_assert_eq(check_table(&m), 64158584);
    /* conv1 + bn_conv1, 33 blocks x 6 + 4 shortcuts x 2, 8 FPN, 3 RPN, 6 box head, 10 mask. */
    cr_assert_eq(m.n_layers, 2 + 33 * 6 + 4 * 2 + 8 + 3 + 6 + 10);
    mr_model_free(&m);
}

Test(network, table_holds_every_parameter_once_in_other_networks) {
    const char *configs[] = {"configs/tiny.json", "configs/mammo.json", "configs/busi.json"};
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        mr_config c;
        mr_config_defaults(&c);
        cr_assert_eq(mr_config_load(configs[i], &c), MR_OK, "%s", mr_last_error());
        mr_model m;
        cr_assert_eq(mr_model_init(&m, &c.net), MR_OK, "%s", mr_last_error());
        int64_t n = 0;
        for (int k = 0; k < m.params.count; k++) n += m.params.items[k].t.numel;
        cr_assert_eq(check_table(&m), n, "%s", configs[i]);
        mr_model_free(&m);
    }
}

Test(network, stages_and_keras_groups) {
    mr_net_config c;
    mr_net_config_defaults(&c);
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_OK);
    cr_assert_eq(row(&m, "conv1")->stage, 1);
    cr_assert_eq(row(&m, "bn_conv1")->stage, 1);
    cr_assert_eq(row(&m, "res2c_branch2c")->stage, 2);
    cr_assert_eq(row(&m, "bn4a_branch1")->stage, 4);
    cr_assert_eq(row(&m, "res5c_branch2b")->stage, 5);
    cr_assert_eq(row(&m, "fpn_c5p5")->stage, MR_STAGE_HEADS);
    cr_assert_eq(row(&m, "mrcnn_mask")->stage, MR_STAGE_HEADS);
    for (int i = 0; i < m.n_layers; i++) {
        const mr_layer *l = &m.layers[i];
        bool rpn = !strncmp(l->name, "rpn_", 4);
        cr_assert_str_eq(mr_layer_keras_group(l), rpn ? "rpn_model" : l->name);
        cr_assert_str_eq(mr_net_keras_group(l->name), mr_layer_keras_group(l));
    }
    mr_model_free(&m);
}

Test(network, forward_handles_point_at_the_registry) {
    mr_config c;
    mr_config_defaults(&c);
    cr_assert_eq(mr_config_load("configs/tiny.json", &c), MR_OK, "%s", mr_last_error());
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    /* The backbone's handles are its own (layers/backbone_resnet.c); the parity tests run
     * them. The table's rows and the record say which backbone declared them. */
    cr_assert_eq(m.backbone, mr_backbone_find("resnet50"));
    cr_assert_not_null(m.backbone_w);
    int blocks = 0;
    for (int i = 0; i < m.n_layers; i++)
        blocks += !strncmp(m.layers[i].name, "res", 3) && strstr(m.layers[i].name, "_branch2a");
    cr_assert_eq(blocks, 16, "ResNet-50");
    const mr_net_weights *w = &m.w;
    cr_assert_eq(w->fpn_lateral[3].kernel, mr_params_tensor(&m.params, "fpn_c5p5/kernel"));
    cr_assert_eq(w->rpn_bbox.kernel, mr_params_tensor(&m.params, "rpn_bbox_pred/kernel"));
    cr_assert_eq(w->bbox_fc.bias, mr_params_tensor(&m.params, "mrcnn_bbox_fc/bias"));
    cr_assert_eq(w->mask_conv[3].bn.mean,
                 mr_params_tensor(&m.params, "mrcnn_mask_bn4/moving_mean"));
    cr_assert_eq(w->mask.kernel, mr_params_tensor(&m.params, "mrcnn_mask/kernel"));
    mr_model_free(&m);
}

/* Positions of `names` in `list` must be consecutive, in that order. */
static void expect_run(char **list, int n, const char *const *names, int k) {
    int at = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], names[0])) at = i;
    cr_assert_geq(at, 0, "%s is not listed", names[0]);
    for (int j = 1; j < k; j++)
        cr_assert(at + j < n && !strcmp(list[at + j], names[j]), "after %s: %s, not %s",
                  names[j - 1], at + j < n ? list[at + j] : "(end)", names[j]);
}

Test(network, keras_layer_names_follow_keras_topological_order) {
    mr_net_config c;
    mr_net_config_defaults(&c);
    c.num_classes = 81;
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_OK);
    int *order = malloc(sizeof *order * (size_t)m.n_layers);
    char **names = malloc(sizeof *names * (size_t)m.n_layers);
    mr_network_keras_order(&m, order);
    for (int i = 0; i < m.n_layers; i++) names[i] = m.layers[order[i]].name;
    /* Matterport's conv_block: the shortcut sits beside branch2c (same depth), conv before bn. */
    static const char *const conv_block[] = {
        "res3a_branch2a", "bn3a_branch2a", "res3a_branch2b", "bn3a_branch2b",  "res3a_branch2c",
        "res3a_branch1",  "bn3a_branch2c", "bn3a_branch1",   "res3b_branch2a", "bn3b_branch2a",
        "res3b_branch2b", "bn3b_branch2b", "res3b_branch2c", "bn3b_branch2c",  "res3c_branch2a"};
    expect_run(names, m.n_layers, conv_block, 15);
    static const char *const fpn[] = {
        "res5c_branch2c", "bn5c_branch2c", "fpn_c5p5", "fpn_c4p4", "fpn_c3p3",       "fpn_c2p2",
        "fpn_p5",         "fpn_p2",        "fpn_p3",   "fpn_p4",   "rpn_conv_shared"};
    expect_run(names, m.n_layers, fpn, 11);
    /* The heads as Keras sorts Matterport's training graph (by the longest path to an output:
     * the mask head's chain is longer), as its model.summary() lists them. */
    static const char *const heads[] = {
        "rpn_bbox_pred",  "mrcnn_mask_conv1",  "mrcnn_mask_bn1",    "mrcnn_mask_conv2",
        "mrcnn_mask_bn2", "mrcnn_class_conv1", "mrcnn_class_bn1",   "mrcnn_mask_conv3",
        "mrcnn_mask_bn3", "mrcnn_class_conv2", "mrcnn_class_bn2",   "mrcnn_mask_conv4",
        "mrcnn_mask_bn4", "mrcnn_bbox_fc",     "mrcnn_mask_deconv", "mrcnn_class_logits",
        "mrcnn_mask"};
    expect_run(names, m.n_layers, heads, 17);
    cr_assert_str_eq(names[0], "conv1");
    cr_assert_str_eq(names[m.n_layers - 1], "mrcnn_mask");

    /* The Keras file lists its layers in that order (the RPN once, as rpn_model). */
    const char *dir = temp_dir("keras-order");
    char path[512];
    snprintf(path, sizeof path, "%s/order.h5", dir);
    cr_assert_eq(mr_weights_save_keras_model(path, &m), MR_OK, "%s", mr_last_error());
    mr_h5 f;
    cr_assert_eq(mr_h5_open(path, false, &f), MR_OK, "%s", mr_last_error());
    char **file = NULL;
    int n = 0;
    cr_assert_eq(mr_h5_get_attr_strings(&f, "/", "layer_names", &file, &n), MR_OK);
    cr_assert_eq(n, m.n_layers - 2, "the three RPN layers are one Keras layer");
    expect_run(file, n, conv_block, 15);
    static const char *const fpn_file[] = {"fpn_p4", "rpn_model", "mrcnn_mask_conv1"};
    expect_run(file, n, fpn_file, 3);
    mr_h5_free_strings(file, n);
    cr_assert_eq(mr_h5_close(&f), MR_OK);
    free(order);
    free(names);
    mr_model_free(&m);
}

Test(network, presets_freeze_by_stage) {
    mr_net_config c;
    mr_net_config_defaults(&c);
    snprintf(c.backbone_name, sizeof c.backbone_name, "resnet50");
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c), MR_OK);
    /* Each preset trains what Matterport's regex of the same name does. */
    static const struct {
        const char *preset, *regex;
    } same[] = {
        {"heads", "(mrcnn_.*)|(rpn_.*)|(fpn_.*)"},
        {"3+", "(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn_.*)|(rpn_.*)|(fpn_.*)"},
        {"4+", "(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn_.*)|(rpn_.*)|(fpn_.*)"},
        {"5+", "(res5.*)|(bn5.*)|(mrcnn_.*)|(rpn_.*)|(fpn_.*)"},
        {"all", ".*"},
    };
    bool *want = malloc(sizeof *want * (size_t)m.params.count);
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        int a = 0, b = 0;
        cr_assert_eq(mr_model_set_trainable(&m, same[i].regex, &a), MR_OK);
        for (int k = 0; k < m.params.count; k++) want[k] = m.params.items[k].frozen;
        cr_assert_eq(mr_model_set_trainable(&m, same[i].preset, &b), MR_OK);
        cr_assert_eq(a, b, "%s", same[i].preset);
        for (int k = 0; k < m.params.count; k++)
            cr_assert_eq(m.params.items[k].frozen, want[k], "%s: %s", same[i].preset,
                         m.params.items[k].name);
    }
    free(want);
    mr_model_free(&m);
}

/* Weight import/export: Keras-layout files written here in C (full-width ResNet-50/101 COCO
 * layouts, every value distinct) and by tests/ref/make_keras_weights.py (the independent
 * reference), loaded by name with the report; mrcnn exports; the errors of bad files. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../core/h5.h"
#include "../train/checkpoint.h"
#include "../train/config.h"
#include "../train/weights.h"
#include "testutil.h"

#define KERAS_TINY "tests/ref/keras_tiny.h5"

/* ---- the values: the formula of make_keras_weights.py -------------------------------------- */

static uint32_t fnv1a32(const char *s) {
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Element e of parameter `param` in Keras' C order; exact in float32. */
static float kval(const char *param, int64_t e) {
    return (float)(((int64_t)fnv1a32(param) + e) % 65521) / 64.0f - 512.0f;
}

/* ---- a Keras-layout writer, mirroring make_keras_weights.py -------------------------------- */

typedef struct {
    char var[128];                 /* "rpn_conv_shared/kernel:0" */
    char param[MR_PARAM_NAME_MAX]; /* the mrcnn name whose formula gives the values */
    int ndim;
    int64_t shape[4];
} kw_weight;

typedef struct {
    char name[64];
    kw_weight w[6];
    int nw;
} kw_layer;

typedef struct {
    int depth, base, pyramid, rpn_depth, fc, classes, channels, anchors, pool;
} kw_spec;

typedef struct {
    kw_layer *l;
    int n, cap;
    int n_act, n_add;
} kw_model;

static kw_layer *kw_push(kw_model *m, const char *name) {
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 512;
        m->l = realloc(m->l, sizeof *m->l * (size_t)m->cap);
        cr_assert_not_null(m->l);
    }
    kw_layer *l = &m->l[m->n++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    return l;
}

static void kw_add(kw_layer *l, const char *inner, const char *weight, int ndim, int64_t a,
                   int64_t b, int64_t c, int64_t d) {
    kw_weight *w = &l->w[l->nw++];
    snprintf(w->var, sizeof w->var, "%s/%s:0", inner, weight);
    snprintf(w->param, sizeof w->param, "%s/%s", inner, weight);
    w->ndim = ndim;
    int64_t s[4] = {a, b, c, d};
    memcpy(w->shape, s, sizeof s);
}

static void kw_conv(kw_model *m, const char *name, int64_t k, int64_t cin, int64_t cout) {
    kw_layer *l = kw_push(m, name);
    kw_add(l, name, "kernel", 4, k, k, cin, cout);
    kw_add(l, name, "bias", 1, cout, 0, 0, 0);
}

static void kw_dense(kw_model *m, const char *name, int64_t cin, int64_t cout) {
    kw_layer *l = kw_push(m, name);
    kw_add(l, name, "kernel", 2, cin, cout, 0, 0);
    kw_add(l, name, "bias", 1, cout, 0, 0, 0);
}

static void kw_bn(kw_model *m, const char *name, int64_t c) {
    kw_layer *l = kw_push(m, name);
    kw_add(l, name, "gamma", 1, c, 0, 0, 0);
    kw_add(l, name, "beta", 1, c, 0, 0, 0);
    kw_add(l, name, "moving_mean", 1, c, 0, 0, 0);
    kw_add(l, name, "moving_variance", 1, c, 0, 0, 0);
}

static void kw_auto(kw_model *m, const char *kind, int *counter) {
    char name[64];
    snprintf(name, sizeof name, "%s_%d", kind, ++*counter);
    kw_push(m, name);
}

/* model.layers of Matterport's training model, as make_keras_weights.py lists them. */
static void kw_build(const kw_spec *s, kw_model *m) {
    memset(m, 0, sizeof *m);
    static const char *inputs[] = {"input_image",    "input_image_meta",   "input_rpn_match",
                                   "input_rpn_bbox", "input_gt_class_ids", "input_gt_boxes",
                                   "input_gt_masks"};
    for (size_t i = 0; i < 7; i++) kw_push(m, inputs[i]);
    int zp = 0, mp = 0;
    kw_auto(m, "zero_padding2d", &zp);
    kw_conv(m, "conv1", 7, s->channels, s->base);
    kw_bn(m, "bn_conv1", s->base);
    kw_auto(m, "activation", &m->n_act);
    kw_auto(m, "max_pooling2d", &mp);
    int blocks[6] = {0, 0, 3, 4, s->depth == 50 ? 6 : 23, 3};
    int64_t cin = s->base;
    for (int stage = 2; stage <= 5; stage++) {
        int64_t f1 = (int64_t)s->base << (stage - 2), f3 = 4 * f1;
        for (int k = 0; k < blocks[stage]; k++) {
            char res[48], bn[48], name[64];
            snprintf(res, sizeof res, "res%d%c_branch", stage, 'a' + k);
            snprintf(bn, sizeof bn, "bn%d%c_branch", stage, 'a' + k);
#define NM(base, br) (snprintf(name, sizeof name, "%s%s", base, br), name)
            kw_conv(m, NM(res, "2a"), 1, cin, f1);
            kw_bn(m, NM(bn, "2a"), f1);
            kw_auto(m, "activation", &m->n_act);
            kw_conv(m, NM(res, "2b"), 3, f1, f1);
            kw_bn(m, NM(bn, "2b"), f1);
            kw_auto(m, "activation", &m->n_act);
            kw_conv(m, NM(res, "2c"), 1, f1, f3);
            if (k == 0) {
                kw_conv(m, NM(res, "1"), 1, cin, f3);
                kw_bn(m, NM(bn, "2c"), f3);
                kw_bn(m, NM(bn, "1"), f3);
            } else {
                kw_bn(m, NM(bn, "2c"), f3);
            }
#undef NM
            kw_auto(m, "add", &m->n_add);
            snprintf(name, sizeof name, "res%d%c_out", stage, 'a' + k);
            kw_push(m, name);
            cin = f3;
        }
    }
    int64_t d = s->pyramid;
    kw_conv(m, "fpn_c5p5", 1, 32 * s->base, d);
    kw_push(m, "fpn_p5upsampled");
    kw_conv(m, "fpn_c4p4", 1, 16 * s->base, d);
    kw_push(m, "fpn_p4add");
    kw_push(m, "fpn_p4upsampled");
    kw_conv(m, "fpn_c3p3", 1, 8 * s->base, d);
    kw_push(m, "fpn_p3add");
    kw_push(m, "fpn_p3upsampled");
    kw_conv(m, "fpn_c2p2", 1, 4 * s->base, d);
    kw_push(m, "fpn_p2add");
    static const char *smooth[] = {"fpn_p5", "fpn_p2", "fpn_p3", "fpn_p4"};
    for (int i = 0; i < 4; i++) kw_conv(m, smooth[i], 3, d, d);
    kw_push(m, "fpn_p6");
    kw_layer *rpn = kw_push(m, "rpn_model");
    kw_add(rpn, "rpn_conv_shared", "kernel", 4, 3, 3, d, s->rpn_depth);
    kw_add(rpn, "rpn_conv_shared", "bias", 1, s->rpn_depth, 0, 0, 0);
    kw_add(rpn, "rpn_class_raw", "kernel", 4, 1, 1, s->rpn_depth, 2 * s->anchors);
    kw_add(rpn, "rpn_class_raw", "bias", 1, 2 * s->anchors, 0, 0, 0);
    kw_add(rpn, "rpn_bbox_pred", "kernel", 4, 1, 1, s->rpn_depth, 4 * s->anchors);
    kw_add(rpn, "rpn_bbox_pred", "bias", 1, 4 * s->anchors, 0, 0, 0);
    static const char *mid[] = {
        "rpn_class_logits", "rpn_class",           "rpn_bbox", "ROI", "lambda_1",
        "proposal_targets", "roi_align_classifier"};
    for (int i = 0; i < 7; i++) kw_push(m, mid[i]);
    kw_conv(m, "mrcnn_class_conv1", s->pool, d, s->fc);
    kw_bn(m, "mrcnn_class_bn1", s->fc);
    kw_auto(m, "activation", &m->n_act);
    kw_conv(m, "mrcnn_class_conv2", 1, s->fc, s->fc);
    kw_bn(m, "mrcnn_class_bn2", s->fc);
    kw_auto(m, "activation", &m->n_act);
    kw_push(m, "pool_squeeze");
    kw_dense(m, "mrcnn_class_logits", s->fc, s->classes);
    kw_dense(m, "mrcnn_bbox_fc", s->fc, 4 * s->classes);
    kw_push(m, "mrcnn_class");
    kw_push(m, "mrcnn_bbox");
    kw_push(m, "roi_align_mask");
    for (int i = 1; i <= 4; i++) {
        char conv[32], bn[32];
        snprintf(conv, sizeof conv, "mrcnn_mask_conv%d", i);
        snprintf(bn, sizeof bn, "mrcnn_mask_bn%d", i);
        kw_conv(m, conv, 3, d, d);
        kw_bn(m, bn, d);
        kw_auto(m, "activation", &m->n_act);
    }
    kw_layer *dc = kw_push(m, "mrcnn_mask_deconv"); /* (kh, kw, out, in) */
    kw_add(dc, "mrcnn_mask_deconv", "kernel", 4, 2, 2, d, d);
    kw_add(dc, "mrcnn_mask_deconv", "bias", 1, d, 0, 0, 0);
    kw_conv(m, "mrcnn_mask", 1, d, s->classes);
    static const char *tail[] = {"output_rois",      "rpn_class_loss",  "rpn_bbox_loss",
                                 "mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"};
    for (int i = 0; i < 6; i++) kw_push(m, tail[i]);
}

static kw_layer *kw_find(kw_model *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->l[i].name, name)) return &m->l[i];
    cr_assert_fail("no layer %s in the test model", name);
    return NULL;
}

static int64_t kw_numel(const kw_weight *w) {
    int64_t n = 1;
    for (int i = 0; i < w->ndim; i++) n *= w->shape[i];
    return n;
}

static int64_t kw_total(const kw_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n; i++)
        for (int k = 0; k < m->l[i].nw; k++) n += kw_numel(&m->l[i].w[k]);
    return n;
}

#define H5_OK(expr) cr_assert_eq((expr), MR_OK, "%s", mr_last_error())

/* Writes the layers as Keras' save_weights does, under `root` ("/" or "/model_weights" with the
 * model.save() extras). `chunk_names` splits layer_names over layer_names0/1 as Keras does for
 * attributes over 64 KB. */
static void kw_write(const kw_model *m, const char *path, const char *root, bool chunk_names) {
    mr_h5 f;
    H5_OK(mr_h5_create(path, &f));
    const char *prefix = strcmp(root, "/") ? root : "";
    if (*prefix) {
        H5_OK(mr_h5_set_attr_bytes(&f, "/", "keras_version", "2.2.4"));
        H5_OK(mr_h5_set_attr_bytes(&f, "/", "backend", "tensorflow"));
        H5_OK(mr_h5_set_attr_bytes(&f, "/", "model_config", "{\"class_name\": \"Model\"}"));
        int64_t one = 1;
        H5_OK(mr_h5_write_i64(&f, "/optimizer_weights/training/SGD/iterations:0", &one, 1));
    }
    const char **names = malloc(sizeof *names * (size_t)m->n);
    for (int i = 0; i < m->n; i++) names[i] = m->l[i].name;
    char group[256];
    snprintf(group, sizeof group, "%s/", prefix);
    for (int i = 0; i < m->n; i++) {
        const kw_layer *l = &m->l[i];
        const char *wn[6];
        for (int k = 0; k < l->nw; k++) {
            const kw_weight *w = &l->w[k];
            int64_t n = kw_numel(w);
            float *buf = malloc(sizeof(float) * (size_t)n);
            for (int64_t e = 0; e < n; e++) buf[e] = kval(w->param, e);
            char ds[512];
            snprintf(ds, sizeof ds, "%s/%s/%s", prefix, l->name, w->var);
            H5_OK(mr_h5_write(&f, ds, buf, w->ndim, w->shape, false));
            free(buf);
            wn[k] = w->var;
        }
        char gpath[256];
        snprintf(gpath, sizeof gpath, "%s/%s", prefix, l->name);
        H5_OK(mr_h5_make_group(&f, gpath)); /* weightless layers have a group too */
        H5_OK(mr_h5_set_attr_strings(&f, gpath, "weight_names", wn, l->nw));
    }
    const char *obj = *prefix ? prefix : "/";
    if (chunk_names) {
        int half = m->n / 2;
        H5_OK(mr_h5_set_attr_strings(&f, obj, "layer_names0", names, half));
        H5_OK(mr_h5_set_attr_strings(&f, obj, "layer_names1", names + half, m->n - half));
    } else {
        H5_OK(mr_h5_set_attr_strings(&f, obj, "layer_names", names, m->n));
    }
    H5_OK(mr_h5_set_attr_bytes(&f, obj, "backend", "tensorflow"));
    H5_OK(mr_h5_set_attr_bytes(&f, obj, "keras_version", "2.2.4"));
    free(names);
    H5_OK(mr_h5_close(&f));
}

/* ---- models ------------------------------------------------------------------------------- */

static void tiny_config(mr_config *c) {
    mr_config_defaults(c);
    cr_assert_eq(mr_config_load("configs/tiny.json", c), MR_OK, "%s", mr_last_error());
}

static kw_spec tiny_spec(int channels, int classes) {
    return (kw_spec){50, 8, 32, 32, 64, classes, channels, 3, 7};
}

static void init_model(mr_model *m, const mr_net_config *cfg, float fill) {
    cr_assert_eq(mr_model_init(m, cfg), MR_OK, "%s", mr_last_error());
    for (size_t i = 0; i < m->params.total; i++) m->params.values[i] = fill;
}

static void init_tiny(mr_model *m, float fill) {
    mr_config c;
    tiny_config(&c);
    init_model(m, &c.net, fill);
}

/* Checks every element of every parameter against the formula; `skip` layers are checked to
 * still hold `fill`, the `ignore` layer (may be NULL) not at all. Returns the number of elements
 * checked. */
static int64_t check_values_but(mr_model *m, const char *const *skip, int n_skip, float fill,
                                const char *ignore) {
    int64_t checked = 0;
    for (int i = 0; i < m->params.count; i++) {
        mr_param *q = &m->params.items[i];
        char layer[MR_PARAM_NAME_MAX];
        mr_param_layer(q->name, layer, sizeof layer);
        if (ignore && !strcmp(layer, ignore)) continue;
        bool skipped = false;
        for (int k = 0; k < n_skip; k++) skipped |= !strcmp(skip[k], layer);
        for (int64_t e = 0; e < q->t.numel; e++) {
            float want = skipped ? fill : kval(q->name, e);
            if (q->t.data[e] != want)
                cr_assert_fail("%s[%lld] = %g, expected %g", q->name, (long long)e,
                               (double)q->t.data[e], (double)want);
        }
        checked += q->t.numel;
    }
    return checked;
}

static int64_t check_values(mr_model *m, const char *const *skip, int n_skip, float fill) {
    return check_values_but(m, skip, n_skip, fill, NULL);
}

static int model_layers(const mr_model *m) {
    int n = 0;
    char prev[MR_PARAM_NAME_MAX] = "";
    for (int i = 0; i < m->params.count; i++) {
        char layer[MR_PARAM_NAME_MAX];
        mr_param_layer(m->params.items[i].name, layer, sizeof layer);
        if (strcmp(layer, prev) != 0) n++;
        snprintf(prev, sizeof prev, "%s", layer);
    }
    return n;
}

static const mr_load_entry *entry(const mr_load_report *r, const char *layer) {
    for (int i = 0; i < r->count; i++)
        if (!strcmp(r->entries[i].layer, layer)) return &r->entries[i];
    return NULL;
}

static bool has_note(const mr_load_report *r, const char *needle) {
    for (int i = 0; i < r->n_notes; i++)
        if (strstr(r->notes[i], needle)) return true;
    return false;
}

static void one_line(const char *msg) {
    cr_assert(msg[0], "empty error message");
    cr_assert_null(strchr(msg, '\n'), "message spans lines: %s", msg);
}

/* ---- full-width COCO layouts -------------------------------------------------------------- */

static void full_coco(int depth, int64_t expect_total) {
    const char *dir = temp_dir("kerasfull");
    char path[512];
    snprintf(path, sizeof path, "%s/mask_rcnn_coco_r%d.h5", dir, depth);
    kw_spec spec = {depth, 64, 256, 512, 1024, 81, 3, 3, 7};
    kw_model km;
    kw_build(&spec, &km);
    if (expect_total) cr_assert_eq(kw_total(&km), expect_total, "%lld", (long long)kw_total(&km));
    kw_write(&km, path, "/", false);

    mr_net_config cfg;
    mr_net_config_defaults(&cfg);
    snprintf(cfg.backbone_name, sizeof cfg.backbone_name, "resnet%d", depth);
    cfg.num_classes = 81;
    cfg.image_min_dim = cfg.image_max_dim = 256; /* anchors only; the weights do not depend on it */
    mr_model m;
    init_model(&m, &cfg, -1.0f);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.format, MR_WEIGHTS_KERAS);
    cr_assert_str_eq(r.root, "/");
    cr_assert_eq(r.n[MR_LOAD_LOADED], model_layers(&m));
    cr_assert_eq(r.n[MR_LOAD_MISSING] + r.n[MR_LOAD_UNEXPECTED] + r.n[MR_LOAD_MISSHAPED] +
                     r.n[MR_LOAD_EXCLUDED],
                 0);
    cr_assert_eq(r.n_notes, 0, "%s", r.n_notes ? r.notes[0] : "");
    cr_assert(!r.classes_excluded);
    cr_assert_eq(r.file_classes, 81);
    cr_assert(r.applied);
    cr_assert_eq(r.values_loaded, kw_total(&km));
    cr_assert_eq(check_values(&m, NULL, 0, 0.0f), kw_total(&km));
    /* Spot checks of the layouts the issue names, through the file's own paths. */
    mr_h5 f;
    H5_OK(mr_h5_open(path, false, &f));
    int nd;
    int64_t sh[8];
    H5_OK(mr_h5_shape(&f, "/rpn_model/rpn_conv_shared/kernel:0", &nd, sh));
    cr_assert(nd == 4 && sh[0] == 3 && sh[2] == 256 && sh[3] == 512);
    H5_OK(mr_h5_shape(&f, "/mrcnn_mask_bn3/mrcnn_mask_bn3/moving_variance:0", &nd, sh));
    cr_assert(nd == 1 && sh[0] == 256);
    H5_OK(mr_h5_shape(&f, "/mrcnn_bbox_fc/mrcnn_bbox_fc/kernel:0", &nd, sh));
    cr_assert(nd == 2 && sh[0] == 1024 && sh[1] == 324);
    H5_OK(mr_h5_close(&f));
    mr_tensor *deconv = mr_params_tensor(&m.params, "mrcnn_mask_deconv/kernel");
    /* (kh, kw, out, in): element [1,0,5,7] is at ((1*2+0)*256+5)*256+7 in the file. */
    cr_assert_eq(deconv->data[((1 * 2 + 0) * 256 + 5) * 256 + 7],
                 kval("mrcnn_mask_deconv/kernel", ((1 * 2 + 0) * 256 + 5) * 256 + 7));
    mr_load_report_free(&r);
    mr_model_free(&m);
    free(km.l);
    unlink(path);
    rmdir(dir);
}

Test(weights, keras_resnet50_coco_full_width, .timeout = 600) {
    full_coco(50, 0);
}

/* 64,158,584 = the parameter count users report for Matterport's COCO model. */
Test(weights, keras_resnet101_coco_full_width, .timeout = 600) {
    full_coco(101, 64158584);
}

/* ---- the Python reference ----------------------------------------------------------------- */

Test(weights, python_reference_loads_into_tiny) {
    mr_model m;
    init_tiny(&m, -1.0f);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(KERAS_TINY, &m.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.n[MR_LOAD_LOADED], model_layers(&m));
    cr_assert_eq(r.n[MR_LOAD_MISSHAPED] + r.n[MR_LOAD_MISSING] + r.n[MR_LOAD_UNEXPECTED], 0);
    cr_assert(has_note(&r, "conv1/kernel: the file's 3 input channels summed"));
    /* conv1 (7,7,3,8) summed over its input channels into (7,7,1,8), channels in order. */
    check_values_but(&m, NULL, 0, 0.0f, "conv1");
    mr_tensor *k = mr_params_tensor(&m.params, "conv1/kernel");
    cr_assert_eq(k->shape[2], 1);
    for (int64_t s = 0; s < 49; s++)
        for (int64_t o = 0; o < 8; o++) {
            float want = 0.0f;
            for (int64_t c = 0; c < 3; c++) want += kval("conv1/kernel", (s * 3 + c) * 8 + o);
            cr_assert_eq(k->data[s * 8 + o], want, "conv1/kernel[%lld,%lld]", (long long)s,
                         (long long)o);
        }
    mr_tensor *b = mr_params_tensor(&m.params, "conv1/bias");
    for (int64_t e = 0; e < b->numel; e++) cr_assert_eq(b->data[e], kval("conv1/bias", e));
    mr_load_report_free(&r);
    mr_model_free(&m);
}

static void expect_same_strings(mr_h5 *a, mr_h5 *b, const char *obj, const char *name) {
    char **x = NULL, **y = NULL;
    int nx = 0, ny = 0;
    H5_OK(mr_h5_get_attr_strings(a, obj, name, &x, &nx));
    H5_OK(mr_h5_get_attr_strings(b, obj, name, &y, &ny));
    cr_assert_eq(nx, ny, "%s@%s: %d vs %d entries", name, obj, nx, ny);
    for (int i = 0; i < nx; i++) cr_assert_str_eq(x[i], y[i], "%s@%s[%d]", name, obj, i);
    mr_h5_free_strings(x, nx);
    mr_h5_free_strings(y, ny);
}

/* The C writer used for the full-width tests writes what the Python reference writes. */
Test(weights, c_writer_matches_python_reference) {
    const char *dir = temp_dir("kerasmatch");
    char path[512];
    snprintf(path, sizeof path, "%s/c.h5", dir);
    kw_model km;
    kw_spec spec = tiny_spec(3, 3);
    kw_build(&spec, &km);
    kw_write(&km, path, "/", false);
    mr_h5 py, c;
    H5_OK(mr_h5_open(KERAS_TINY, false, &py));
    H5_OK(mr_h5_open(path, false, &c));
    expect_same_strings(&py, &c, "/", "layer_names");
    char *v1, *v2;
    H5_OK(mr_h5_get_attr_str(&py, "/", "keras_version", &v1));
    H5_OK(mr_h5_get_attr_str(&c, "/", "keras_version", &v2));
    cr_assert_str_eq(v1, v2);
    free(v1);
    free(v2);
    int64_t values = 0;
    for (int i = 0; i < km.n; i++) {
        char g[128];
        snprintf(g, sizeof g, "/%s", km.l[i].name);
        expect_same_strings(&py, &c, g, "weight_names");
        for (int k = 0; k < km.l[i].nw; k++) {
            char ds[256];
            snprintf(ds, sizeof ds, "%s/%s", g, km.l[i].w[k].var);
            float *a = NULL, *b = NULL;
            int na = 0, nb = 0;
            int64_t sa[8], sb[8];
            H5_OK(mr_h5_read(&py, ds, &a, &na, sa));
            H5_OK(mr_h5_read(&c, ds, &b, &nb, sb));
            char ta[16], tb[16];
            H5_OK(mr_h5_dtype(&py, ds, ta, sizeof ta));
            H5_OK(mr_h5_dtype(&c, ds, tb, sizeof tb));
            cr_assert_str_eq(ta, "float32");
            cr_assert_str_eq(tb, "float32");
            cr_assert_eq(na, nb, "%s", ds);
            int64_t n = 1;
            for (int d = 0; d < na; d++) {
                cr_assert_eq(sa[d], sb[d], "%s dim %d", ds, d);
                n *= sa[d];
            }
            cr_assert_eq(memcmp(a, b, sizeof(float) * (size_t)n), 0, "%s values", ds);
            values += n;
            free(a);
            free(b);
        }
    }
    cr_assert_eq(values, 594228); /* what make_keras_weights.py reports */
    H5_OK(mr_h5_close(&py));
    H5_OK(mr_h5_close(&c));
    free(km.l);
    unlink(path);
    rmdir(dir);
}

/* ---- by-name loading rules ---------------------------------------------------------------- */

static void write_tiny(const char *dir, const char *name, kw_model *km, const char *root,
                       char *path, size_t size) {
    snprintf(path, size, "%s/%s", dir, name);
    kw_write(km, path, root, false);
}

Test(weights, class_count_mismatch_leaves_out_the_class_layers) {
    const char *dir = temp_dir("kerascls");
    char path[512];
    kw_model km;
    kw_spec spec = tiny_spec(1, 81);
    kw_build(&spec, &km);
    write_tiny(dir, "coco81.h5", &km, "/", path, sizeof path);
    mr_model m;
    init_tiny(&m, 3.5f);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert(r.classes_excluded);
    cr_assert_eq(r.file_classes, 81);
    cr_assert_eq(r.model_classes, 3);
    cr_assert_eq(r.n[MR_LOAD_EXCLUDED], 3);
    const char *cls[] = {"mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"};
    for (int i = 0; i < 3; i++) {
        const mr_load_entry *e = entry(&r, cls[i]);
        cr_assert(e && e->kind == MR_LOAD_EXCLUDED, "%s", cls[i]);
        cr_assert(strstr(e->detail, "NUM_CLASSES is 3, the file has 81"), "%s", e->detail);
    }
    cr_assert(has_note(&r, "NUM_CLASSES 3 differs from the file's 81"));
    cr_assert_eq(r.n[MR_LOAD_LOADED], model_layers(&m) - 3);
    check_values(&m, cls, 3, 3.5f);
    mr_load_report_free(&r);
    mr_model_free(&m);
    free(km.l);
    unlink(path);
    rmdir(dir);
}

Test(weights, exclude_names_layers_and_keras_groups) {
    mr_model m;
    init_tiny(&m, 2.0f);
    const char *excl[] = {"conv1,mrcnn_mask_deconv", "rpn_model", "bn_conv1", "no_such_layer"};
    mr_weights_load_options opt = {.exclude = excl, .n_exclude = 4};
    mr_load_report r;
    cr_assert_eq(mr_weights_load(KERAS_TINY, &m.params, &opt, &r), MR_OK, "%s", mr_last_error());
    const char *skip[] = {"conv1",         "mrcnn_mask_deconv", "rpn_conv_shared",
                          "rpn_class_raw", "rpn_bbox_pred",     "bn_conv1"};
    cr_assert_eq(r.n[MR_LOAD_EXCLUDED], 6);
    for (int i = 0; i < 6; i++) {
        const mr_load_entry *e = entry(&r, skip[i]);
        cr_assert(e && e->kind == MR_LOAD_EXCLUDED, "%s", skip[i]);
    }
    cr_assert(has_note(&r, "--exclude 'no_such_layer' matches no layer"));
    cr_assert(!has_note(&r, "summed"), "conv1 was excluded, nothing to sum");
    check_values(&m, skip, 6, 2.0f);
    mr_load_report_free(&r);
    mr_model_free(&m);
}

Test(weights, whole_model_save_nests_under_model_weights) {
    const char *dir = temp_dir("kerasnest");
    char path[512];
    kw_model km;
    kw_spec spec = tiny_spec(1, 3);
    kw_build(&spec, &km);
    write_tiny(dir, "saved_model.h5", &km, "/model_weights", path, sizeof path);
    mr_model m;
    init_tiny(&m, 0.0f);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert_str_eq(r.root, "/model_weights");
    cr_assert_eq(r.n[MR_LOAD_LOADED], model_layers(&m));
    cr_assert_eq(r.n_notes, 0);
    check_values(&m, NULL, 0, 0.0f);
    mr_load_report_free(&r);
    mr_model_free(&m);
    free(km.l);
    unlink(path);
    rmdir(dir);
}

Test(weights, chunked_layer_names_and_suffixed_variables) {
    const char *dir = temp_dir("kerassuffix");
    char path[512];
    kw_model km;
    kw_spec spec = tiny_spec(1, 3);
    kw_build(&spec, &km);
    /* A model built twice in one graph: conv1_1/kernel:0, rpn_conv_shared_1/kernel:0, ... */
    const char *renamed[] = {"conv1", "rpn_model", "mrcnn_mask_bn3"};
    for (int i = 0; i < 3; i++) {
        kw_layer *l = kw_find(&km, renamed[i]);
        for (int k = 0; k < l->nw; k++) {
            char inner[96];
            snprintf(inner, sizeof inner, "%s", l->w[k].param);
            *strrchr(inner, '/') = '\0';
            snprintf(l->w[k].var, sizeof l->w[k].var, "%s_1/%s:0", inner,
                     strrchr(l->w[k].param, '/') + 1);
        }
    }
    snprintf(path, sizeof path, "%s/suffix.h5", dir);
    kw_write(&km, path, "/", true);
    mr_model m;
    init_tiny(&m, 0.0f);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.n[MR_LOAD_LOADED], model_layers(&m));
    check_values(&m, NULL, 0, 0.0f);
    mr_weights_index ix;
    H5_OK(mr_weights_index_read(path, &ix));
    cr_assert_eq(ix.n_file_layers, km.n);
    bool seen = false;
    for (int i = 0; i < ix.count; i++)
        if (!strcmp(ix.items[i].dataset, "/rpn_model/rpn_conv_shared_1/kernel:0")) {
            seen = true;
            cr_assert_str_eq(ix.items[i].param, "rpn_conv_shared/kernel");
            cr_assert_str_eq(ix.items[i].group, "rpn_model");
        }
    cr_assert(seen);
    mr_weights_index_free(&ix);
    mr_load_report_free(&r);
    mr_model_free(&m);
    free(km.l);
    unlink(path);
    rmdir(dir);
}

Test(weights, missing_unexpected_misshaped_all_listed) {
    const char *dir = temp_dir("kerasbad");
    char path[512];
    kw_model km;
    kw_spec spec = tiny_spec(1, 3);
    kw_build(&spec, &km);
    kw_find(&km, "fpn_p3")->nw = 0;                    /* missing */
    kw_find(&km, "res3a_branch2a")->w[0].shape[3] = 5; /* mis-shaped */
    kw_find(&km, "mrcnn_class_conv2")->w[0].shape[0] = 3;
    kw_layer *bn = kw_find(&km, "mrcnn_class_bn2"); /* incomplete BN: mis-shaped */
    bn->nw = 2;
    kw_layer *nb = kw_find(&km, "res2a_branch2a"); /* no bias: zeros */
    nb->nw = 1;
    kw_layer *extra = kw_push(&km, "extra_head"); /* unexpected */
    kw_add(extra, "extra_head", "kernel", 2, 4, 4, 0, 0);
    write_tiny(dir, "bad.h5", &km, "/", path, sizeof path);

    mr_model m;
    init_tiny(&m, 9.0f);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_ERR_FORMAT);
    const char *msg = mr_last_error();
    one_line(msg);
    cr_assert(strstr(msg, "3 layers do not fit the model"), "%s", msg);
    cr_assert(strstr(msg, "res3a_branch2a (kernel (1,1,32,5) in the file, (1,1,32,16) in the "
                          "model)"),
              "%s", msg);
    cr_assert(strstr(msg, "mrcnn_class_conv2"), "%s", msg);
    cr_assert(strstr(msg, "mrcnn_class_bn2 (no moving_mean in the file, no moving_variance"), "%s",
              msg);
    cr_assert(strstr(msg, "--exclude res3a_branch2a,mrcnn_class_conv2,mrcnn_class_bn2"), "%s", msg);
    cr_assert_eq(r.n[MR_LOAD_MISSHAPED], 3);
    cr_assert_eq(r.n[MR_LOAD_MISSING], 1);
    cr_assert_eq(entry(&r, "fpn_p3")->kind, MR_LOAD_MISSING);
    cr_assert_eq(r.n[MR_LOAD_UNEXPECTED], 1);
    cr_assert_eq(entry(&r, "extra_head")->kind, MR_LOAD_UNEXPECTED);
    cr_assert(!r.applied);
    for (size_t i = 0; i < m.params.total; i++)
        cr_assert_eq(m.params.values[i], 9.0f, "a failed load changed parameter values");
    mr_load_report_free(&r);

    /* Excluding what does not fit makes the rest load; the missing bias becomes zeros. */
    const char *excl[] = {"res3a_branch2a,mrcnn_class_conv2,mrcnn_class_bn2"};
    mr_weights_load_options opt = {.exclude = excl, .n_exclude = 1};
    cr_assert_eq(mr_weights_load(path, &m.params, &opt, &r), MR_OK, "%s", mr_last_error());
    cr_assert(has_note(&r, "1 layers have no bias in the file; set to zeros: res2a_branch2a"));
    mr_tensor *b = mr_params_tensor(&m.params, "res2a_branch2a/bias");
    for (int64_t e = 0; e < b->numel; e++) cr_assert_eq(b->data[e], 0.0f);
    cr_assert_eq(entry(&r, "res2a_branch2a")->kind, MR_LOAD_LOADED);
    cr_assert_eq(mr_params_tensor(&m.params, "fpn_p3/kernel")->data[0], 9.0f);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    mr_load_report_print(&r, out);
    fclose(out);
    cr_assert(strstr(text, "missing       1 layers"), "%s", text);
    cr_assert(strstr(text, "    fpn_p3\n"), "%s", text);
    cr_assert(strstr(text, "    extra_head\n"), "%s", text);
    free(text);
    mr_load_report_free(&r);
    mr_model_free(&m);
    free(km.l);
    unlink(path);
    rmdir(dir);
}

Test(weights, grey_file_into_rgb_model_is_misshaped) {
    const char *dir = temp_dir("kerasrgb");
    char path[512];
    kw_model km;
    kw_spec spec = tiny_spec(1, 3);
    kw_build(&spec, &km);
    write_tiny(dir, "grey.h5", &km, "/", path, sizeof path);
    mr_config c;
    tiny_config(&c);
    c.net.image_channels = 3;
    mr_model m;
    init_model(&m, &c.net, 0.0f);
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, NULL), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "conv1 (kernel (7,7,1,8) in the file, (7,7,3,8) in the "
                                      "model); nothing was loaded; leave them out with --exclude "
                                      "conv1"),
              "%s", mr_last_error());
    mr_model_free(&m);
    free(km.l);
    unlink(path);
    rmdir(dir);
}

/* ---- files for another network, files that fill too little -------------------------------- */

/* Lines of the report as the trainer prints it. */
static int report_lines(const mr_load_report *r) {
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    mr_load_report_print(r, out);
    fclose(out);
    int n = 0;
    for (const char *c = text; *c; c++) n += *c == '\n';
    free(text);
    return n;
}

Test(weights, another_network_is_one_line_naming_both) {
    const char *dir = temp_dir("kerasother");
    char path[512];
    kw_model km;
    kw_spec spec = {101, 16, 32, 32, 64, 3, 1, 3, 7}; /* ResNet-101, twice the tiny width */
    kw_build(&spec, &km);
    write_tiny(dir, "r101.h5", &km, "/", path, sizeof path);
    mr_model m;
    init_tiny(&m, 6.0f);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_ERR_FORMAT);
    const char *msg = mr_last_error();
    one_line(msg);
    cr_assert(strstr(msg, "the weights are ResNet-101 with 16 filters, the config is ResNet-50 "
                          "with 8 filters"),
              "%s", msg);
    cr_assert(strstr(msg, "do not fit, first conv1 (kernel (7,7,1,16) in the file, (7,7,1,8) in "
                          "the model)"),
              "%s", msg);
    cr_assert_null(strstr(msg, "--exclude"), "no hint that cannot help: %s", msg);
    cr_assert_lt(strlen(msg), 600, "%s", msg);
    cr_assert(r.other_network && r.refused && !r.applied);
    cr_assert_eq(r.file_net.depth, 101);
    cr_assert_eq(r.model_net.depth, 50);
    /* The report the trainer prints next to it: counts only, no 100+ layer names. */
    cr_assert_leq(report_lines(&r), 8, "%d lines", report_lines(&r));
    for (size_t i = 0; i < m.params.total; i++) cr_assert_eq(m.params.values[i], 6.0f);
    mr_load_report_free(&r);

    /* Same depth, another width: still one line, naming the width. */
    kw_spec wide = {50, 16, 32, 32, 64, 3, 1, 3, 7};
    free(km.l);
    kw_build(&wide, &km);
    write_tiny(dir, "r50w16.h5", &km, "/", path, sizeof path);
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, NULL), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "the weights are ResNet-50 with 16 filters, the config is "
                                      "ResNet-50 with 8 filters"),
              "%s", mr_last_error());
    /* Only the pyramid differs: said in config keys. */
    kw_spec fpn = {50, 8, 16, 32, 64, 3, 1, 3, 7};
    free(km.l);
    kw_build(&fpn, &km);
    write_tiny(dir, "fpn16.h5", &km, "/", path, sizeof path);
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, NULL), MR_ERR_FORMAT);
    cr_assert(strstr(mr_last_error(), "both ResNet-50 with 8 filters but differ (weights vs "
                                      "config): TOP_DOWN_PYRAMID_SIZE 16 vs 32"),
              "%s", mr_last_error());
    mr_model_free(&m);
    free(km.l);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* A ResNet-50 file for a ResNet-101 config of the same width fills more than half of it: loaded,
 * with a note saying which networks they are. */
Test(weights, shallower_backbone_loads_with_a_note) {
    const char *dir = temp_dir("kerasdeeper");
    char path[512];
    kw_model km;
    kw_spec spec = tiny_spec(1, 3);
    kw_build(&spec, &km);
    write_tiny(dir, "r50.h5", &km, "/", path, sizeof path);
    mr_config c;
    tiny_config(&c);
    snprintf(c.net.backbone_name, sizeof c.net.backbone_name, "resnet101");
    mr_model m;
    init_model(&m, &c.net, 0.0f);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.n[MR_LOAD_MISSING], 17 * 6, "res4g..res4w, conv and batch norm each");
    cr_assert(has_note(&r, "the weights are ResNet-50 with 8 filters, the config is ResNet-101 "
                           "with 8 filters"));
    mr_load_report_free(&r);
    mr_model_free(&m);
    free(km.l);
    unlink(path);
    rmdir(dir);
}

static bool is_backbone(const char *layer) {
    return !strcmp(layer, "conv1") || !strcmp(layer, "bn_conv1") ||
           (!strncmp(layer, "res", 3) && strstr(layer, "_branch")) ||
           (!strncmp(layer, "bn", 2) && strstr(layer, "_branch"));
}

Test(weights, fewer_than_half_of_the_layers_is_refused) {
    const char *dir = temp_dir("kerashalf");
    char path[512];
    kw_model km;
    kw_spec spec = tiny_spec(1, 3);
    kw_build(&spec, &km);
    /* The heads without the backbone: 27 of the model's 133 layers. */
    int kept = 0;
    for (int i = 0; i < km.n; i++) {
        if (is_backbone(km.l[i].name))
            km.l[i].nw = 0;
        else if (km.l[i].nw)
            kept++;
    }
    write_tiny(dir, "heads.h5", &km, "/", path, sizeof path);
    mr_model m;
    init_tiny(&m, 5.0f);
    int total = model_layers(&m);
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_ERR_FORMAT);
    const char *msg = mr_last_error();
    one_line(msg);
    char want[160];
    int heads = total - 106; /* conv1 + bn_conv1 + 52 bottleneck convs and their batch norms */
    snprintf(want, sizeof want, "only %d of %d layers of this model match the file by name", heads,
             total);
    cr_assert(strstr(msg, want), "%s", msg);
    cr_assert(strstr(msg, "nothing was loaded") && strstr(msg, "--exclude"), "%s", msg);
    cr_assert(r.other_network && r.refused);
    for (size_t i = 0; i < m.params.total; i++) cr_assert_eq(m.params.values[i], 5.0f);
    mr_load_report_free(&r);
    /* Callers without --exclude get no such hint. */
    mr_weights_load_options strict = {.no_exclude_hint = true};
    cr_assert_eq(mr_weights_load(path, &m.params, &strict, NULL), MR_ERR_FORMAT);
    cr_assert_null(strstr(mr_last_error(), "--exclude"), "%s", mr_last_error());
    /* Leaving the backbone out on purpose makes it a deliberate partial load. */
    char list[8192] = "";
    for (int i = 0; i < m.params.count; i++) {
        char layer[MR_PARAM_NAME_MAX];
        mr_param_layer(m.params.items[i].name, layer, sizeof layer);
        char item[MR_PARAM_NAME_MAX + 2];
        snprintf(item, sizeof item, ",%s", layer);
        if (is_backbone(layer) && !strstr(list, item)) strcat(list, item);
    }
    const char *excl[] = {list + 1};
    mr_weights_load_options opt = {.exclude = excl, .n_exclude = 1};
    cr_assert_eq(mr_weights_load(path, &m.params, &opt, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.n[MR_LOAD_LOADED], heads);
    cr_assert_eq(r.n[MR_LOAD_EXCLUDED], 106);
    mr_load_report_free(&r);
    free(km.l);

    /* The backbone without the heads (an ImageNet-style file) is most of the model: loaded. */
    kw_build(&spec, &km);
    for (int i = 0; i < km.n; i++)
        if (!is_backbone(km.l[i].name)) km.l[i].nw = 0;
    write_tiny(dir, "backbone.h5", &km, "/", path, sizeof path);
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.n[MR_LOAD_LOADED], 106);
    mr_load_report_free(&r);
    free(km.l);

    /* Nothing in common by name at all: "0 of 133". */
    mr_params other;
    mr_params_init(&other);
    int64_t k[2] = {4, 4};
    cr_assert_geq(mr_params_add(&other, "dense_1/kernel", 2, k, true), 0);
    cr_assert_geq(mr_params_add(&other, "dense_2/kernel", 2, k, true), 0);
    cr_assert_eq(mr_params_finalize(&other), MR_OK);
    snprintf(path, sizeof path, "%s/foreign.h5", dir);
    cr_assert_eq(mr_weights_save_keras(path, &other), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, NULL), MR_ERR_FORMAT);
    snprintf(want, sizeof want,
             "only 0 of %d layers of this model match the file by name (%d are "
             "not in it, 2 file layers match nothing in the model)",
             total, total);
    cr_assert(strstr(mr_last_error(), want), "%s", mr_last_error());
    mr_params_free(&other);
    mr_model_free(&m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- bad files ---------------------------------------------------------------------------- */

Test(weights, truncated_and_foreign_files_give_one_line) {
    const char *dir = temp_dir("kerastrunc");
    char path[512];
    mr_model m;
    init_tiny(&m, 0.0f);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    FILE *f = fopen(path, "w");
    fputs("this is not HDF5\n", f);
    fclose(f);
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, NULL), MR_ERR_FORMAT);
    one_line(mr_last_error());
    cr_assert(strstr(mr_last_error(), "not an HDF5 file"), "%s", mr_last_error());
    unlink(path);

    /* The first half of a real file, as an interrupted download leaves it. */
    snprintf(path, sizeof path, "%s/cut.h5", dir);
    FILE *in = fopen(KERAS_TINY, "rb"), *out = fopen(path, "wb");
    cr_assert(in && out);
    char buf[65536];
    size_t total = 0, n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0 && total < 800000) {
        fwrite(buf, 1, n, out);
        total += n;
    }
    fclose(in);
    fclose(out);
    mr_load_report r;
    mr_status st = mr_weights_load(path, &m.params, NULL, &r);
    cr_assert_neq(st, MR_OK);
    one_line(mr_last_error());
    cr_assert(strstr(mr_last_error(), "cut.h5"), "%s", mr_last_error());
    mr_load_report_free(&r);
    unlink(path);

    /* HDF5, but nothing mrcnn knows. */
    snprintf(path, sizeof path, "%s/other.h5", dir);
    mr_h5 h;
    H5_OK(mr_h5_create(path, &h));
    float x = 1.0f;
    int64_t one = 1;
    H5_OK(mr_h5_write(&h, "/data/x", &x, 1, &one, false));
    H5_OK(mr_h5_close(&h));
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, NULL), MR_ERR_FORMAT);
    one_line(mr_last_error());
    cr_assert(strstr(mr_last_error(), "not a weights file mrcnn knows"), "%s", mr_last_error());
    unlink(path);

    snprintf(path, sizeof path, "%s/absent.h5", dir);
    cr_assert_eq(mr_weights_load(path, &m.params, NULL, NULL), MR_ERR_IO);
    one_line(mr_last_error());
    mr_model_free(&m);
    rmdir(dir);
}

/* ---- export ------------------------------------------------------------------------------- */

/* Each parameter's own range: the alignment padding between them is not stored. */
static void random_values(mr_params *p, uint64_t seed) {
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    for (int i = 0; i < p->count; i++)
        for (int64_t e = 0; e < p->items[i].t.numel; e++)
            p->values[p->items[i].offset + (size_t)e] = mr_rng_normal(&rng);
}

Test(weights, keras_export_round_trips) {
    const char *dir = temp_dir("kerasexport");
    char path[512];
    snprintf(path, sizeof path, "%s/export_keras.h5", dir);
    mr_model a, b;
    init_tiny(&a, 0.0f);
    init_tiny(&b, 0.0f);
    random_values(&a.params, 11);
    H5_OK(mr_weights_save_keras_model(path, &a));
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &b.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.format, MR_WEIGHTS_KERAS);
    cr_assert_eq(r.n[MR_LOAD_LOADED], model_layers(&a));
    cr_assert_eq(memcmp(a.params.values, b.params.values, sizeof(float) * a.params.total), 0);
    mr_load_report_free(&r);
    /* The Keras layout itself: nested rpn_model, byte-string version attributes. */
    mr_h5 f;
    H5_OK(mr_h5_open(path, false, &f));
    cr_assert(mr_h5_exists(&f, "/rpn_model/rpn_class_raw/bias:0"));
    cr_assert(mr_h5_exists(&f, "/mrcnn_mask_deconv/mrcnn_mask_deconv/kernel:0"));
    char **wn = NULL;
    int n = 0;
    H5_OK(mr_h5_get_attr_strings(&f, "/bn_conv1", "weight_names", &wn, &n));
    cr_assert_eq(n, 4);
    cr_assert_str_eq(wn[0], "bn_conv1/gamma:0");
    cr_assert_str_eq(wn[3], "bn_conv1/moving_variance:0");
    mr_h5_free_strings(wn, n);
    char *kv = NULL;
    H5_OK(mr_h5_get_attr_str(&f, "/", "keras_version", &kv));
    cr_assert_str_eq(kv, "2.2.4");
    free(kv);
    H5_OK(mr_h5_close(&f));
    mr_model_free(&a);
    mr_model_free(&b);
    unlink(path);
    rmdir(dir);
}

Test(weights, mrcnn_export_round_trips_and_lists) {
    const char *dir = temp_dir("mrcnnexport");
    char path[512], half[512];
    snprintf(path, sizeof path, "%s/export.h5", dir);
    snprintf(half, sizeof half, "%s/export16.h5", dir);
    mr_model a, b;
    init_tiny(&a, 0.0f);
    init_tiny(&b, 0.0f);
    random_values(&a.params, 12);
    H5_OK(mr_weights_save(path, &a.params, "{\"NAME\": \"tiny\"}", false));
    H5_OK(mr_weights_save(half, &a.params, NULL, true));
    mr_load_report r;
    cr_assert_eq(mr_weights_load(path, &b.params, NULL, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.format, MR_WEIGHTS_EXPORT);
    cr_assert_eq(r.n[MR_LOAD_LOADED], model_layers(&a));
    cr_assert_eq(memcmp(a.params.values, b.params.values, sizeof(float) * a.params.total), 0);
    mr_load_report_free(&r);
    cr_assert_eq(mr_weights_load(half, &b.params, NULL, NULL), MR_OK, "%s", mr_last_error());
    for (size_t i = 0; i < a.params.total; i++)
        cr_assert(fabsf(a.params.values[i] - b.params.values[i]) <=
                      1e-3f * fabsf(a.params.values[i]) + 1e-7f,
                  "half precision export at %zu: %g vs %g", i, (double)a.params.values[i],
                  (double)b.params.values[i]);
    mr_weights_index ix;
    H5_OK(mr_weights_index_read(path, &ix));
    cr_assert_eq(ix.format, MR_WEIGHTS_EXPORT);
    cr_assert_eq(ix.count, a.params.count);
    cr_assert_str_eq(ix.config_json, "{\"NAME\": \"tiny\"}");
    bool listed = false;
    for (int i = 0; i < ix.count; i++)
        if (!strcmp(ix.items[i].param, "rpn_conv_shared/kernel")) {
            listed = true;
            cr_assert_str_eq(ix.items[i].dataset, "/params/rpn_conv_shared/kernel");
            cr_assert_str_eq(ix.items[i].group, "rpn_model");
            cr_assert_eq(ix.items[i].ndim, 4);
        }
    cr_assert(listed);
    mr_weights_index_free(&ix);
    H5_OK(mr_weights_index_read(half, &ix));
    cr_assert_str_eq(ix.items[0].dtype, "float16");
    mr_weights_index_free(&ix);
    mr_model_free(&a);
    mr_model_free(&b);
    unlink(path);
    unlink(half);
    rmdir(dir);
}

Test(weights, checkpoint_loads_as_weights) {
    const char *dir = temp_dir("ckptweights");
    char path[512];
    mr_checkpoint_path(path, sizeof path, dir, 2, 40);
    mr_model a, b;
    init_tiny(&a, 0.0f);
    init_tiny(&b, 0.0f);
    random_values(&a.params, 13);
    mr_checkpoint_state s = {0};
    s.val_loss = 1.0;
    H5_OK(mr_checkpoint_save(path, &a.params, &s));
    mr_load_report r;
    const char *excl[] = {"mrcnn_mask"};
    mr_weights_load_options opt = {.exclude = excl, .n_exclude = 1};
    cr_assert_eq(mr_weights_load(path, &b.params, &opt, &r), MR_OK, "%s", mr_last_error());
    cr_assert_eq(r.format, MR_WEIGHTS_CHECKPOINT);
    cr_assert_eq(r.n[MR_LOAD_LOADED], model_layers(&a) - 1);
    mr_tensor *ta = mr_params_tensor(&a.params, "rpn_conv_shared/kernel"),
              *tb = mr_params_tensor(&b.params, "rpn_conv_shared/kernel");
    cr_assert_eq(memcmp(ta->data, tb->data, sizeof(float) * (size_t)ta->numel), 0);
    cr_assert_eq(mr_params_tensor(&b.params, "mrcnn_mask/kernel")->data[0], 0.0f);
    mr_load_report_free(&r);
    mr_model_free(&a);
    mr_model_free(&b);
    unlink(path);
    rmdir(dir);
}

Test(weights, dry_run_reports_without_copying) {
    mr_model m;
    init_tiny(&m, 4.0f);
    mr_weights_load_options opt = {.dry_run = true};
    mr_load_report r;
    cr_assert_eq(mr_weights_load(KERAS_TINY, &m.params, &opt, &r), MR_OK, "%s", mr_last_error());
    cr_assert(!r.applied);
    cr_assert_eq(r.n[MR_LOAD_LOADED], model_layers(&m));
    cr_assert_gt(r.values_loaded, 0);
    for (size_t i = 0; i < m.params.total; i++) cr_assert_eq(m.params.values[i], 4.0f);
    mr_load_report_free(&r);
    mr_model_free(&m);
}

/* `mrcnn inspect`, through the built binary. */
Test(weights, inspect_lists_tensors_and_prints_the_report) {
    const char *bin = getenv("MRCNN_BIN");
    if (!bin || access(bin, X_OK) != 0) cr_skip_test("MRCNN_BIN not set: inspect not run");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s inspect %s --tensors --config configs/tiny.json 2>&1", bin,
             KERAS_TINY);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char *text = calloc(1, 1 << 20);
    size_t n = fread(text, 1, (1 << 20) - 1, p);
    text[n] = '\0';
    int rc = pclose(p);
    cr_assert_eq(rc, 0, "%s", text);
    cr_assert(strstr(text, "/rpn_model/rpn_conv_shared/kernel:0"), "%s", text);
    cr_assert(strstr(text, "(3,3,32,32)"), "%s", text);
    cr_assert(strstr(text, "235 layers"), "%s", text);
    cr_assert(strstr(text, "mis-shaped    0 layers"), "%s", text);
    cr_assert(strstr(text, "summed"), "%s", text);
    snprintf(cmd, sizeof cmd, "%s inspect tests/ref/README.md 2>&1", bin);
    p = popen(cmd, "r");
    n = fread(text, 1, (1 << 20) - 1, p);
    text[n] = '\0';
    rc = pclose(p);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(text, "not an HDF5 file"), "%s", text);
    free(text);
}

/* The Keras export lists its layers as Matterport's model.layers does: the independent layout of
 * kw_build (make_keras_weights.py's) agrees on every weighted layer through rpn_model; the heads
 * it lists in construction order, Keras (and the export) by depth, so there only the set is
 * compared. */
Test(weights, keras_export_lists_layers_in_matterports_order) {
    const char *dir = temp_dir("kerasorder");
    char path[512];
    snprintf(path, sizeof path, "%s/export_keras.h5", dir);
    mr_model a;
    init_tiny(&a, 0.5f);
    H5_OK(mr_weights_save_keras_model(path, &a));
    mr_h5 f;
    H5_OK(mr_h5_open(path, false, &f));
    char **names = NULL;
    int n = 0;
    H5_OK(mr_h5_get_attr_strings(&f, "/", "layer_names", &names, &n));
    H5_OK(mr_h5_close(&f));
    kw_spec spec = tiny_spec(1, 3);
    kw_model km;
    kw_build(&spec, &km);
    int k = 0, heads_from = -1;
    bool heads = false;
    for (int i = 0; i < km.n; i++) {
        if (!km.l[i].nw) continue;
        cr_assert_lt(k, n, "the export lists fewer layers than Matterport's model");
        if (!heads) {
            cr_assert_str_eq(names[k], km.l[i].name, "layer %d", k);
        } else {
            bool found = false;
            for (int j = heads_from; j < n; j++) found |= !strcmp(names[j], km.l[i].name);
            cr_assert(found, "%s is not among the export's heads", km.l[i].name);
        }
        k++;
        if (!heads && !strcmp(km.l[i].name, "rpn_model")) {
            heads = true;
            heads_from = k;
        }
    }
    cr_assert_eq(k, n);
    mr_h5_free_strings(names, n);
    free(km.l);
    mr_model_free(&a);
    unlink(path);
    rmdir(dir);
}

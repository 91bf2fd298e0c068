/* Inference-only export: batch-norm folding is exact where it must be (identity batch norms) and
 * within float rounding elsewhere; exports in mrcnn and Keras layouts give the same detections as
 * the checkpoint they came from (float16: within stated tolerances); config mismatches and bad
 * inputs fail with one line; the `mrcnn export` verb end to end. */
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/ops.h"
#include "../core/rng.h"
#include "../layers/inference.h"
#include "../layers/mold.h"
#include "../train/checkpoint.h"
#include "../train/export.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------------------- */

static void tiny_config(mr_config *c) {
    mr_config_defaults(c);
    cr_assert_eq(mr_config_load("configs/tiny.json", c), MR_OK, "%s", mr_last_error());
    c->net.detection_min_confidence = 0.0f; /* random weights: keep every detection */
}

/* A checkpoint of the tiny model with random weights and momentum, config embedded. */
static void write_checkpoint(const char *path, const mr_config *c, uint64_t seed) {
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c->net), MR_OK, "%s", mr_last_error());
    random_test_weights(&m, seed);
    mr_checkpoint_state s;
    memset(&s, 0, sizeof s);
    s.epoch = 3;
    s.step = 60;
    s.config_json = mr_config_to_json(c);
    s.val_loss = 1.5;
    cr_assert_eq(mr_checkpoint_save(path, &m.params, &s), MR_OK, "%s", mr_last_error());
    free(s.config_json);
    mr_model_free(&m);
}

/* A gray ultrasound-like test image: speckle, a dark ellipse, a bright rim. */
static uint8_t *test_image(int h, int w, uint64_t seed) {
    uint8_t *px = malloc((size_t)h * (size_t)w);
    mr_rng rng;
    mr_rng_seed(&rng, seed);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double dx = (x - 0.55 * w) / (0.2 * w), dy = (y - 0.45 * h) / (0.15 * h);
            double r = dx * dx + dy * dy;
            double v = 90.0 + 60.0 * (double)y / h + 40.0 * (double)mr_rng_uniform(&rng);
            if (r < 1.0)
                v = 30.0 + 20.0 * (double)mr_rng_uniform(&rng);
            else if (r < 1.4)
                v = 200.0;
            px[y * w + x] = (uint8_t)(v > 255.0 ? 255.0 : v);
        }
    return px;
}

static void detect_image(const mr_model *m, const uint8_t *px, int h, int w, mr_instances *d) {
    const mr_net_config *n = &m->cfg;
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 512u << 20), MR_OK);
    mr_tensor *img = mr_tensor_4d(&ctx, "images", 1, n->image_max_dim, n->image_max_dim, 1);
    cr_assert_not_null(img);
    mr_mold_info info;
    cr_assert_eq(mr_mold_image(img->data, px, h, w, 1, n->image_min_dim, n->image_max_dim,
                               n->mean_pixel, mr_net_pixel_std(n), &info),
                 MR_OK);
    cr_assert_eq(mr_model_detect(&ctx, m, img, &info.geo, -1.0f, d), MR_OK, "%s", mr_last_error());
    mr_ctx_free(&ctx);
}

static double mask_iou(const uint8_t *a, const uint8_t *b, int64_t n) {
    int64_t inter = 0, uni = 0;
    for (int64_t i = 0; i < n; i++) {
        inter += a[i] && b[i];
        uni += a[i] || b[i];
    }
    return uni ? (double)inter / (double)uni : 1.0;
}

/* Every detection of `a` has its own partner in `b`: same class, box corners within box_tol
 * pixels, score within score_tol, mask IoU at least min_iou. Partners are searched, not taken by
 * index, so two detections whose scores swap order within the tolerance still match. */
static void expect_same_detections(const mr_instances *a, const mr_instances *b, int box_tol,
                                   float score_tol, double min_iou, const char *what) {
    cr_assert_gt(a->n, 0, "%s: the test needs detections", what);
    cr_assert_eq(a->n, b->n, "%s: %lld vs %lld detections", what, (long long)a->n, (long long)b->n);
    bool used[256] = {false};
    int64_t np = a->image_h * a->image_w;
    for (int64_t i = 0; i < a->n; i++) {
        int64_t best = -1;
        float best_diff = INFINITY;
        for (int64_t j = 0; j < b->n; j++) {
            if (used[j] || a->class_ids[i] != b->class_ids[j]) continue;
            bool close = true;
            for (int k = 0; k < 4; k++)
                close &= fabs(a->boxes[4 * i + k] - b->boxes[4 * j + k]) <= box_tol;
            float diff = fabsf(a->scores[i] - b->scores[j]);
            if (close && diff <= score_tol && diff < best_diff) best = j, best_diff = diff;
        }
        cr_assert_geq(best, 0,
                      "%s: detection %lld (class %lld, score %.6f, box %lld %lld %lld %lld) has "
                      "no partner",
                      what, (long long)i, (long long)a->class_ids[i], (double)a->scores[i],
                      (long long)a->boxes[4 * i], (long long)a->boxes[4 * i + 1],
                      (long long)a->boxes[4 * i + 2], (long long)a->boxes[4 * i + 3]);
        used[best] = true;
        double iou = mask_iou(a->masks + i * np, b->masks + best * np, np);
        if (getenv("MR_TEST_VERBOSE")) {
            int64_t area = 0;
            for (int64_t k = 0; k < np; k++) area += a->masks[i * np + k];
            fprintf(stderr,
                    "%s: det %lld class %lld score %.5f/%.5f box %lld %lld %lld %lld area %lld iou "
                    "%.3f\n",
                    what, (long long)i, (long long)a->class_ids[i], (double)a->scores[i],
                    (double)b->scores[best], (long long)a->boxes[4 * i],
                    (long long)a->boxes[4 * i + 1], (long long)a->boxes[4 * i + 2],
                    (long long)a->boxes[4 * i + 3], (long long)area, iou);
        }
        cr_assert_geq(iou, min_iou, "%s: detection %lld mask IoU %.4f", what, (long long)i, iou);
    }
}

static void load_and_detect(const char *weights, const char *config, const uint8_t *px, int h,
                            int w, mr_instances *d) {
    mr_config c;
    mr_model m;
    cr_assert_eq(mr_inference_load(weights, config, &c, &m, NULL), MR_OK, "%s", mr_last_error());
    detect_image(&m, px, h, w, d);
    mr_model_free(&m);
}

static int64_t file_size(const char *path) {
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "%s missing", path);
    return (int64_t)sb.st_size;
}

/* ---- folding ------------------------------------------------------------------------------- */

Test(export, identity_variance_makes_batch_norm_exactly_the_identity) {
    const float eps[] = {1e-3f, 1e-5f, 1e-12f, 0.1f, 0.5f, 1.0f, 3e-4f};
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 16u << 20), MR_OK);
    for (size_t e = 0; e < sizeof eps / sizeof eps[0]; e++) {
        float v = mr_bn_identity_variance(eps[e]);
        cr_assert(1.0f / sqrtf(v + eps[e]) == 1.0f, "eps %g: v %.9g", (double)eps[e], (double)v);
        mr_ctx_reset(&ctx);
        mr_tensor *x = mr_tensor_2d(&ctx, "x", 50, 3), *g = mr_tensor_1d(&ctx, "g", 3),
                  *b = mr_tensor_1d(&ctx, "b", 3), *mu = mr_tensor_1d(&ctx, "m", 3),
                  *var = mr_tensor_1d(&ctx, "v", 3);
        for (int64_t i = 0; i < x->numel; i++) x->data[i] = (float)sin((double)i * 1.7) * 1e3f;
        for (int k = 0; k < 3; k++)
            g->data[k] = 1.0f, b->data[k] = 0.0f, mu->data[k] = 0.0f, var->data[k] = v;
        mr_tensor *y = mr_batchnorm_frozen(&ctx, x, g, b, mu, var, eps[e]);
        cr_assert_not_null(y);
        cr_assert_eq(memcmp(x->data, y->data, sizeof(float) * (size_t)x->numel), 0,
                     "eps %g: identity batch norm changed a value", (double)eps[e]);
    }
    mr_ctx_free(&ctx);
}

Test(export, folding_preserves_the_output_of_a_conv_bn_pair) {
    mr_ctx ctx;
    cr_assert_eq(mr_ctx_init(&ctx, 64u << 20), MR_OK);
    const int64_t cin = 5, cout = 7;
    const float eps = 1e-3f;
    mr_rng rng;
    mr_rng_seed(&rng, 3);
    mr_tensor *x = mr_tensor_4d(&ctx, "x", 2, 9, 11, cin);
    mr_tensor *k = mr_tensor_4d(&ctx, "k", 3, 3, cin, cout), *bias = mr_tensor_1d(&ctx, "b", cout);
    mr_tensor *g = mr_tensor_1d(&ctx, "gamma", cout), *be = mr_tensor_1d(&ctx, "beta", cout),
              *mu = mr_tensor_1d(&ctx, "mean", cout), *var = mr_tensor_1d(&ctx, "var", cout);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = 4.0f * mr_rng_uniform(&rng) - 2.0f;
    for (int64_t i = 0; i < k->numel; i++) k->data[i] = mr_rng_uniform(&rng) - 0.5f;
    for (int64_t c = 0; c < cout; c++) {
        bias->data[c] = mr_rng_uniform(&rng) - 0.5f;
        g->data[c] = 0.2f + 2.0f * mr_rng_uniform(&rng);
        be->data[c] = mr_rng_uniform(&rng) - 0.5f;
        mu->data[c] = 2.0f * mr_rng_uniform(&rng) - 1.0f;
        var->data[c] = 0.01f + 3.0f * mr_rng_uniform(&rng); /* small variances: big scales */
    }
    mr_tensor *ref =
        mr_batchnorm_frozen(&ctx, mr_conv2d(&ctx, x, k, bias, 1, MR_PAD_SAME), g, be, mu, var, eps);
    mr_fold_conv_bn(k->data, k->numel, bias->data, cout, g->data, be->data, mu->data, var->data,
                    eps);
    for (int64_t c = 0; c < cout; c++) {
        cr_assert(g->data[c] == 1.0f && be->data[c] == 0.0f && mu->data[c] == 0.0f);
        cr_assert(var->data[c] == mr_bn_identity_variance(eps));
    }
    mr_tensor *conv_only = mr_conv2d(&ctx, x, k, bias, 1, MR_PAD_SAME);
    mr_tensor *folded = mr_batchnorm_frozen(&ctx, conv_only, g, be, mu, var, eps);
    cr_assert_not_null(folded);
    cr_assert_eq(memcmp(conv_only->data, folded->data, sizeof(float) * (size_t)folded->numel), 0,
                 "the folded batch norm must be an exact identity");
    double max_err = 0.0, max_ref = 0.0;
    for (int64_t i = 0; i < ref->numel; i++) {
        max_err = fmax(max_err, fabs((double)ref->data[i] - (double)folded->data[i]));
        max_ref = fmax(max_ref, fabs((double)ref->data[i]));
    }
    cr_assert_lt(max_err, 1e-5 * max_ref + 1e-6, "max error %g (outputs up to %g)", max_err,
                 max_ref);
    mr_ctx_free(&ctx);
}

/* The conv row that names `bn` as the batch norm after it, or NULL. */
static const char *conv_before(const mr_model *m, const char *bn) {
    for (int i = 0; i < m->n_layers; i++)
        if (m->layers[i].bn >= 0 && !strcmp(m->layers[m->layers[i].bn].name, bn))
            return m->layers[i].name;
    return NULL;
}

Test(export, every_batch_norm_of_the_network_folds_into_its_conv) {
    mr_config c;
    tiny_config(&c);
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    static const char *pairs[][2] = {{"bn_conv1", "conv1"},
                                     {"bn4b_branch2a", "res4b_branch2a"},
                                     {"bn2a_branch1", "res2a_branch1"},
                                     {"mrcnn_class_bn2", "mrcnn_class_conv2"},
                                     {"mrcnn_mask_bn4", "mrcnn_mask_conv4"}};
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const char *conv = conv_before(&m, pairs[i][0]);
        cr_assert(conv && !strcmp(conv, pairs[i][1]), "%s follows %s", pairs[i][0], pairs[i][1]);
    }
    cr_assert_null(conv_before(&m, "fpn_p2"));
    random_test_weights(&m, 5);
    int bns = 0;
    for (int i = 0; i < m.params.count; i++)
        bns += strstr(m.params.items[i].name, "/moving_variance") != NULL;
    /* ResNet-50: bn_conv1, 16 blocks x 3, 4 shortcuts; heads: 2 + 4. */
    cr_assert_eq(bns, 1 + 16 * 3 + 4 + 2 + 4);
    int folded = 0, identity = 0;
    cr_assert_eq(mr_fold_batchnorms(&m, c.net.bn_eps, &folded, &identity), MR_OK, "%s",
                 mr_last_error());
    cr_assert_eq(folded, bns);
    cr_assert_eq(identity, 0);
    /* Folding again finds only identities and changes nothing. */
    float *before = malloc(sizeof(float) * m.params.total);
    memcpy(before, m.params.values, sizeof(float) * m.params.total);
    cr_assert_eq(mr_fold_batchnorms(&m, c.net.bn_eps, &folded, &identity), MR_OK);
    cr_assert_eq(folded, 0);
    cr_assert_eq(identity, bns);
    cr_assert_eq(memcmp(before, m.params.values, sizeof(float) * m.params.total), 0);
    free(before);
    mr_model_free(&m);
}

/* ---- round trips --------------------------------------------------------------------------- */

Test(export, mrcnn_export_detects_as_its_checkpoint) {
    const char *dir = temp_dir("export");
    char ckpt[512], out[512];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    snprintf(out, sizeof out, "%s/model.h5", dir);
    mr_config c;
    tiny_config(&c);
    write_checkpoint(ckpt, &c, 11);
    mr_export_summary s;
    mr_export_options eo = {.format = MR_EXPORT_MRCNN};
    cr_assert_eq(mr_export(ckpt, NULL, out, &eo, &s), MR_OK, "%s", mr_last_error());
    cr_assert_eq(s.source_format, MR_WEIGHTS_CHECKPOINT);
    cr_assert_eq(s.n_folded, 59);

    /* Parameters only, config inside, batch norms at the identity. */
    mr_weights_index ix;
    cr_assert_eq(mr_weights_index_read(out, &ix), MR_OK, "%s", mr_last_error());
    cr_assert_eq(ix.format, MR_WEIGHTS_EXPORT);
    cr_assert_eq(ix.count, s.n_params, "no momentum or other state in an export");
    cr_assert_not_null(ix.config_json);
    cr_assert(strstr(ix.config_json, "\"DETECTION_MIN_CONFIDENCE\""));
    mr_weights_index_free(&ix);
    cr_assert_lt(file_size(out), file_size(ckpt), "the checkpoint also holds momentum");

    uint8_t *px = test_image(120, 160, 1);
    mr_instances a, b;
    load_and_detect(ckpt, NULL, px, 120, 160, &a);
    load_and_detect(out, NULL, px, 120, 160, &b);
    expect_same_detections(&a, &b, 0, 1e-4f, 0.99, "mrcnn export");
    mr_instances_free(&a);

    /* Folded as it loads (predict and evaluate do), the checkpoint holds the export's weights:
     * the same detections to the bit. */
    mr_config fc;
    mr_model fm;
    const mr_inference_options fold = {.fold_batchnorms = true};
    cr_assert_eq(mr_inference_load_opts(ckpt, NULL, &fold, &fc, &fm, NULL), MR_OK, "%s",
                 mr_last_error());
    detect_image(&fm, px, 120, 160, &a);
    mr_model_free(&fm);
    cr_assert_eq(a.n, b.n);
    cr_assert(!memcmp(a.boxes, b.boxes, sizeof *a.boxes * 4 * (size_t)a.n));
    cr_assert(!memcmp(a.scores, b.scores, sizeof *a.scores * (size_t)a.n));
    cr_assert(!memcmp(a.masks, b.masks, (size_t)(a.n * a.image_h * a.image_w)));
    mr_instances_free(&a);
    mr_instances_free(&b);
    free(px);
}

Test(export, keras_export_is_unfolded_and_detects_as_its_checkpoint) {
    const char *dir = temp_dir("export-keras");
    char ckpt[512], out[512], side[600];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    snprintf(out, sizeof out, "%s/mask_rcnn_tiny.h5", dir);
    mr_config c;
    tiny_config(&c);
    write_checkpoint(ckpt, &c, 12);
    mr_export_summary s;
    mr_export_options eo = {.format = MR_EXPORT_KERAS};
    cr_assert_eq(mr_export(ckpt, NULL, out, &eo, &s), MR_OK, "%s", mr_last_error());
    cr_assert_eq(s.n_folded, 0);
    snprintf(side, sizeof side, "%s.config.json", out);
    cr_assert_str_eq(s.config_path, side);

    /* Matterport's layout, true batch-norm statistics. */
    mr_weights_index ix;
    cr_assert_eq(mr_weights_index_read(out, &ix), MR_OK, "%s", mr_last_error());
    cr_assert_eq(ix.format, MR_WEIGHTS_KERAS);
    bool nested_rpn = false;
    for (int i = 0; i < ix.count; i++)
        nested_rpn |= !strcmp(ix.items[i].dataset, "/rpn_model/rpn_conv_shared/kernel:0");
    cr_assert(nested_rpn, "RPN weights sit in Keras' nested rpn_model group");
    mr_weights_index_free(&ix);
    mr_config c2;
    mr_model k, orig;
    cr_assert_eq(mr_inference_load(out, side, &c2, &k, NULL), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_inference_load(ckpt, NULL, &c2, &orig, NULL), MR_OK);
    cr_assert_eq(memcmp(k.params.values, orig.params.values, sizeof(float) * k.params.total), 0,
                 "a Keras export holds the checkpoint's values bit for bit");
    mr_model_free(&k);
    mr_model_free(&orig);

    /* No config inside: without --config the load says what to do. */
    mr_config c3;
    mr_model m3;
    cr_assert_eq(mr_inference_load(out, NULL, &c3, &m3, NULL), MR_ERR_CONFIG);
    cr_assert(strstr(mr_last_error(), "pass --config") && strstr(mr_last_error(), side), "%s",
              mr_last_error());

    uint8_t *px = test_image(120, 160, 2);
    mr_instances a, b;
    load_and_detect(ckpt, NULL, px, 120, 160, &a);
    load_and_detect(out, side, px, 120, 160, &b);
    expect_same_detections(&a, &b, 0, 1e-4f, 0.99, "keras export");
    mr_instances_free(&a);
    mr_instances_free(&b);
    free(px);
}

/* float16 keeps ~3 significant digits, so detections are compared with relaxed tolerances:
 * same classes, box corners within 2 px, scores within 1e-2, mask IoU >= 0.9. */
Test(export, fp16_export_is_half_the_size_and_detects_nearly_the_same) {
    const char *dir = temp_dir("export-fp16");
    char ckpt[512], full[512], half[512];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    snprintf(full, sizeof full, "%s/fp32.h5", dir);
    snprintf(half, sizeof half, "%s/fp16.h5", dir);
    mr_config c;
    tiny_config(&c);
    write_checkpoint(ckpt, &c, 13);
    mr_export_options e32 = {.format = MR_EXPORT_MRCNN},
                      e16 = {.format = MR_EXPORT_MRCNN, .half = true};
    cr_assert_eq(mr_export(ckpt, NULL, full, &e32, NULL), MR_OK, "%s", mr_last_error());
    cr_assert_eq(mr_export(ckpt, NULL, half, &e16, NULL), MR_OK, "%s", mr_last_error());
    double ratio = (double)file_size(half) / (double)file_size(full);
    cr_assert(ratio > 0.45 && ratio < 0.6, "fp16/fp32 size ratio %.3f", ratio);
    mr_weights_index ix;
    cr_assert_eq(mr_weights_index_read(half, &ix), MR_OK);
    cr_assert_str_eq(ix.items[0].dtype, "float16");
    mr_weights_index_free(&ix);

    uint8_t *px = test_image(120, 160, 3);
    mr_instances a, b;
    load_and_detect(ckpt, NULL, px, 120, 160, &a);
    load_and_detect(half, NULL, px, 120, 160, &b);
    expect_same_detections(&a, &b, 2, 1e-2f, 0.9, "fp16 export");
    mr_instances_free(&a);
    mr_instances_free(&b);
    free(px);
}

Test(export, fp16_refuses_values_beyond_its_range) {
    const char *dir = temp_dir("export-range");
    char ckpt[512], out[512];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    snprintf(out, sizeof out, "%s/fp16.h5", dir);
    mr_config c;
    tiny_config(&c);
    mr_model m;
    cr_assert_eq(mr_model_init(&m, &c.net), MR_OK);
    random_test_weights(&m, 4);
    mr_params_tensor(&m.params, "fpn_p3/bias")->data[2] = 1e5f;
    char *json = mr_config_to_json(&c);
    cr_assert_eq(mr_weights_save(ckpt, &m.params, json, false), MR_OK, "%s", mr_last_error());
    free(json);
    mr_model_free(&m);
    mr_export_options eo = {.format = MR_EXPORT_MRCNN, .half = true};
    cr_assert_eq(mr_export(ckpt, NULL, out, &eo, NULL), MR_ERR_NUMERIC);
    cr_assert(strstr(mr_last_error(), "fpn_p3/bias") && strstr(mr_last_error(), "65504"), "%s",
              mr_last_error());
    cr_assert_neq(access(out, F_OK), 0, "nothing written");
    eo.format = MR_EXPORT_KERAS;
    cr_assert_eq(mr_export(ckpt, NULL, out, &eo, NULL), MR_ERR_ARG);
    cr_assert(strstr(mr_last_error(), "--fp16"), "%s", mr_last_error());
}

Test(export, config_mismatch_is_one_clear_line) {
    const char *dir = temp_dir("export-mismatch");
    char ckpt[512], cfg[512];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    mr_config c;
    tiny_config(&c);
    write_checkpoint(ckpt, &c, 14);
    const struct {
        const char *json, *expect;
    } cases[] = {
        {"{\"NUM_CLASSES\": 4, \"CLASS_NAMES\": [\"BG\", \"a\", \"b\", \"c\"]}", "NUM_CLASSES 4"},
        {"{\"BACKBONE\": \"resnet101\"}", "lacks"},
        {"{\"TOP_DOWN_PYRAMID_SIZE\": 16}", "do not fit"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* The tiny config with one change, as a user's config file. */
        char *base = mr_config_to_json(&c);
        mr_config changed;
        mr_config_defaults(&changed);
        cr_assert_eq(mr_config_parse(base, "tiny", &changed), MR_OK);
        free(base);
        cr_assert_eq(mr_config_parse(cases[i].json, "change", &changed), MR_OK, "%s",
                     mr_last_error());
        /* A partial parse resets CLASS_NAMES it does not mention; keep the tiny ones. */
        if (changed.net.num_classes == c.net.num_classes)
            memcpy(changed.class_names, c.class_names, sizeof c.class_names);
        char *text = mr_config_to_json(&changed);
        snprintf(cfg, sizeof cfg, "%s/config%zu.json", dir, i);
        FILE *f = fopen(cfg, "w");
        fputs(text, f);
        fclose(f);
        free(text);
        mr_config got;
        mr_model m;
        cr_assert_eq(mr_inference_load(ckpt, cfg, &got, &m, NULL), MR_ERR_CONFIG, "case %zu", i);
        const char *e = mr_last_error();
        cr_assert(strstr(e, "config mismatch") && strstr(e, cases[i].expect) && !strchr(e, '\n'),
                  "case %zu: %s", i, e);
    }
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope.h5", dir);
    mr_config got;
    mr_model m;
    cr_assert_neq(mr_inference_load(missing, NULL, &got, &m, NULL), MR_OK);
    cr_assert(strstr(mr_last_error(), "nope.h5"), "%s", mr_last_error());
}

/* ---- the verb ------------------------------------------------------------------------------- */

Test(export, the_export_verb) {
    const char *dir = temp_dir("export-cli");
    char ckpt[512], args[2048], out[8192];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt.h5", dir);
    mr_config c;
    tiny_config(&c);
    write_checkpoint(ckpt, &c, 15);
    snprintf(args, sizeof args, "export --weights %s --out %s/m16.h5 --fp16", ckpt, dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "float16") && strstr(out, "59 batch norms folded"), "%s", out);
    snprintf(args, sizeof args, "export --weights %s --out %s/k.h5 --format keras", ckpt, dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "k.h5.config.json"), "%s", out);

    /* Bad inputs: one line, non-zero exit. */
    snprintf(args, sizeof args, "export --weights %s/missing.h5 --out %s/x.h5", dir, dir);
    cr_assert_neq(run_mrcnn(args, out, sizeof out), 0);
    cr_assert(strstr(out, "missing.h5") && strchr(out, '\n') == out + strlen(out) - 1, "%s", out);
    snprintf(args, sizeof args, "export --weights %s --out %s/x.h5 --format tflite", ckpt, dir);
    cr_assert_eq(run_mrcnn(args, out, sizeof out), 2, "%s", out);
    snprintf(args, sizeof args, "export --weights %s/k.h5 --out %s/x.h5", dir, dir);
    cr_assert_neq(run_mrcnn(args, out, sizeof out), 0);
    cr_assert(strstr(out, "--config"), "%s", out);
}

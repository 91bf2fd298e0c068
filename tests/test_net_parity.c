/* PyTorch parity for the whole network: tests/ref/net_ref.h5 (tests/ref/make_net_refs.py, float64
 * torch) holds configs/tiny.json's network with random weights, two images and a fixed set of
 * targets. The C forward (P2..P6, RPN, box and mask heads), the five losses and the gradient of
 * their sum with respect to every parameter must match it within float32 tolerance. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/h5.h"
#include "../core/ops.h"
#include "../losses/losses_internal.h"
#include "../train/config.h"
#include "testutil.h"

#define REF_FILE "tests/ref/net_ref.h5" /* tests run from the repository root */
#define CONFIG   "configs/tiny.json"

/* Forward outputs (values of order 1): |C - torch| <= FWD_ATOL + FWD_RTOL * |torch|. */
#define FWD_ATOL 2e-5
#define FWD_RTOL 2e-4
/* Losses: scalars of order 1, float32 sums over thousands of terms. */
#define LOSS_ATOL 1e-5
#define LOSS_RTOL 2e-5
/* Gradients, per parameter tensor G: |C - torch| <= GRAD_SCALE * max|G| + GRAD_RTOL * |torch|.
 * The absolute part follows the tensor's own scale: the largest gradient of a tensor ranges
 * from ~3e-3 to ~1e-1 between layers and most elements are far smaller, so one fixed atol would
 * check little in some tensors. One ReLU decided differently by float32 would move a gradient
 * by more than this, so make_net_refs.py keeps every ReLU input at least 1e-5 (about three times
 * float32's worst error in this network) away from 0. */
#define GRAD_SCALE 1e-3
#define GRAD_RTOL  1e-3

/* Everything one run of the network needs and produces. */
typedef struct {
    mr_config cfg;
    mr_model m;
    mr_ctx ctx;
    mr_h5 f;
    mr_tensor *images, *p[5], *rpn_logits, *rpn_deltas, *total;
    mr_train_targets tt;
    mr_loss_values values;
    int64_t batch, rois_per_image;
} net_run;

/* The file's dataset `path` as floats (any numeric type); shape optional; caller frees. */
static float *read_ds(net_run *r, const char *path, int *ndim, int64_t *shape, int64_t *numel) {
    float *data = NULL;
    int nd = 0;
    int64_t sh[MR_H5_MAX_DIMS];
    mr_status st = mr_h5_read(&r->f, path, &data, &nd, sh);
    cr_assert(st == MR_OK, "%s (regenerate with `make refs`)", mr_last_error());
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    if (ndim) *ndim = nd;
    if (shape)
        for (int i = 0; i < nd; i++) shape[i] = sh[i];
    if (numel) *numel = n;
    return data;
}

static int64_t *read_ints(net_run *r, const char *path, int64_t want) {
    int64_t *data = NULL, n = 0;
    cr_assert(mr_h5_read_i64(&r->f, path, &data, &n) == MR_OK, "%s", mr_last_error());
    cr_assert(n == want, "%s holds %lld values, expected %lld", path, (long long)n,
              (long long)want);
    return data;
}

/* A dataset read into arena memory of exactly `want` floats. */
static float *read_arena(net_run *r, const char *path, int64_t want) {
    int64_t n = 0;
    float *data = read_ds(r, path, NULL, NULL, &n);
    cr_assert(n == want, "%s holds %lld values, expected %lld", path, (long long)n,
              (long long)want);
    float *dst = mr_alloc(&r->ctx, sizeof(float) * (size_t)(n + 1), "net_parity");
    cr_assert_not_null(dst, "%s", mr_last_error());
    memcpy(dst, data, sizeof(float) * (size_t)n);
    free(data);
    return dst;
}

static void fmt_index(char *buf, size_t size, int64_t flat, int ndim, const int64_t *shape) {
    int64_t idx[MR_H5_MAX_DIMS];
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    size_t len = (size_t)snprintf(buf, size, "(");
    for (int d = 0; d < ndim && len < size; d++)
        len += (size_t)snprintf(buf + len, size - len, d ? ",%lld" : "%lld", (long long)idx[d]);
    if (len < size) snprintf(buf + len, size - len, ")");
}

/* Compares `got` with dataset `path`: shapes first, then every element within
 * atol + rtol * |torch|. A failure names the tensor, how many elements are off and the worst
 * one. Returns the worst error / tolerance ratio (for the log). */
static double expect_close(net_run *r, const char *what, const char *path, const float *got,
                           int ndim, const int64_t *shape, double atol, double rtol) {
    int rnd = 0;
    int64_t rshape[MR_H5_MAX_DIMS], n = 0, numel = 1;
    float *want = read_ds(r, path, &rnd, rshape, &n);
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    bool same = rnd == ndim && n == numel;
    for (int i = 0; same && i < ndim; i++) same = rshape[i] == shape[i];
    if (!same) {
        free(want);
        cr_expect_fail("%s: C has %d dims / %lld values, torch %d dims / %lld values", what, ndim,
                       (long long)numel, rnd, (long long)n);
        return INFINITY;
    }
    int64_t bad = 0, worst = 0;
    double worst_ratio = 0.0;
    for (int64_t i = 0; i < numel; i++) {
        double a = got ? (double)got[i] : 0.0, b = (double)want[i];
        double ratio = fabs(a - b) / (atol + rtol * fabs(b));
        if (isnan(ratio)) ratio = INFINITY;
        if (ratio > 1.0) bad++;
        if (ratio > worst_ratio || i == 0) worst_ratio = ratio, worst = i;
    }
    if (bad) {
        char where[96];
        fmt_index(where, sizeof where, worst, ndim, shape);
        double a = got ? (double)got[worst] : 0.0, b = (double)want[worst];
        cr_expect_fail("%s: %lld of %lld values off; worst at %s: C %.8g, torch %.8g, |diff| "
                       "%.3g > tol %.3g",
                       what, (long long)bad, (long long)numel, where, a, b, fabs(a - b),
                       atol + rtol * fabs(b));
    }
    free(want);
    return worst_ratio;
}

static double expect_tensor(net_run *r, const char *what, const char *path, const mr_tensor *t) {
    cr_assert_not_null(t, "%s was not computed: %s", what, mr_last_error());
    return expect_close(r, what, path, t->data, t->ndim, t->shape, FWD_ATOL, FWD_RTOL);
}

/* Loads the config, the model, the reference weights and the targets; `algo` picks the 3x3
 * stride-1 convolutions' path. */
static void setup(net_run *r, mr_conv_algo algo) {
    memset(r, 0, sizeof *r);
    mr_config_defaults(&r->cfg);
    load_tiny_matterport(&r->cfg);
    cr_assert(mr_model_init(&r->m, &r->cfg.net) == MR_OK, "%s", mr_last_error());
    cr_assert(mr_h5_open(REF_FILE, false, &r->f) == MR_OK,
              "%s (run the tests from the repository root; `make refs` regenerates the file)",
              mr_last_error());
    int64_t n_anchors = 0;
    cr_assert(mr_h5_get_attr_i64(&r->f, "/", "n_anchors", &n_anchors) == MR_OK, "%s",
              mr_last_error());
    cr_assert(n_anchors == r->m.n_anchors,
              "%s was made for %lld anchors, %s gives %lld: regenerate with `make refs`", REF_FILE,
              (long long)n_anchors, CONFIG, (long long)r->m.n_anchors);
    cr_assert(mr_ctx_init(&r->ctx, (size_t)r->cfg.arena_mb << 20) == MR_OK, "%s", mr_last_error());
    r->ctx.conv_algo = algo;

    /* Every parameter of the model from the file, by name and shape. */
    mr_params *ps = &r->m.params;
    for (int i = 0; i < ps->count; i++) {
        mr_param *p = &ps->items[i];
        char path[160];
        snprintf(path, sizeof path, "/params/%s", p->name);
        cr_assert(mr_h5_exists(&r->f, path), "parameter %s is missing from %s", p->name, REF_FILE);
        int nd = 0;
        int64_t shape[MR_H5_MAX_DIMS];
        cr_assert(mr_h5_shape(&r->f, path, &nd, shape) == MR_OK, "%s", mr_last_error());
        bool same = nd == p->t.ndim;
        for (int k = 0; same && k < nd; k++) same = shape[k] == p->t.shape[k];
        char want[64];
        cr_assert(same, "parameter %s: %d dims in %s, C shape %s", p->name, nd, REF_FILE,
                  mr_shape_str(&p->t, want, sizeof want));
        cr_assert(mr_h5_read_into(&r->f, path, p->t.data, p->t.numel) == MR_OK, "%s",
                  mr_last_error());
    }

    /* Images. */
    int nd = 0;
    int64_t shape[MR_H5_MAX_DIMS], n = 0;
    float *img = read_ds(r, "/inputs/images", &nd, shape, &n);
    const mr_net_config *c = &r->cfg.net;
    cr_assert(nd == 4 && shape[1] == c->image_max_dim && shape[2] == c->image_max_dim &&
                  shape[3] == c->image_channels,
              "images do not fit %s", CONFIG);
    r->batch = shape[0];
    r->images = mr_tensor_new(&r->ctx, "images", 4, shape);
    cr_assert_not_null(r->images, "%s", mr_last_error());
    memcpy(r->images->data, img, sizeof(float) * (size_t)n);
    free(img);

    /* Targets, as mr_train_targets wants them (batch-major ROIs). */
    mr_train_targets *tt = &r->tt;
    int64_t b = r->batch, a = r->m.n_anchors;
    int64_t *match = read_ints(r, "/targets/rpn_match", b * a);
    tt->match = mr_alloc(&r->ctx, (size_t)(b * a), "net_parity");
    cr_assert_not_null(tt->match);
    for (int64_t i = 0; i < b * a; i++) tt->match[i] = (int8_t)match[i];
    free(match);
    float *rb = read_ds(r, "/targets/rpn_bbox", &nd, shape, &n);
    cr_assert(nd == 3 && shape[0] == b && shape[1] == c->rpn_train_anchors && shape[2] == 4,
              "rpn_bbox is not (B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4)");
    free(rb);
    tt->rpn_targets_per_image = c->rpn_train_anchors;
    tt->rpn_bbox = read_arena(r, "/targets/rpn_bbox", b * c->rpn_train_anchors * 4);
    float *rois = read_ds(r, "/targets/rois", &nd, shape, &n);
    cr_assert(nd == 3 && shape[0] == b && shape[1] == c->train_rois_per_image && shape[2] == 4,
              "rois is not (B, TRAIN_ROIS_PER_IMAGE, 4)");
    free(rois);
    r->rois_per_image = c->train_rois_per_image;
    tt->n_rois = b * r->rois_per_image;
    tt->rois = read_arena(r, "/targets/rois", tt->n_rois * 4);
    tt->roi_deltas = read_arena(r, "/targets/roi_deltas", tt->n_rois * 4);
    tt->roi_masks = read_arena(r, "/targets/roi_masks", tt->n_rois * c->mask_shape * c->mask_shape);
    int64_t *cls = read_ints(r, "/targets/roi_class", tt->n_rois);
    tt->roi_class = mr_alloc(&r->ctx, sizeof(int64_t) * (size_t)tt->n_rois, "net_parity");
    tt->roi_image = mr_alloc(&r->ctx, sizeof(int32_t) * (size_t)tt->n_rois, "net_parity");
    cr_assert(tt->roi_class && tt->roi_image, "%s", mr_last_error());
    memcpy(tt->roi_class, cls, sizeof(int64_t) * (size_t)tt->n_rois);
    free(cls);
    for (int64_t i = 0; i < tt->n_rois; i++) tt->roi_image[i] = (int32_t)(i / r->rois_per_image);
}

static void teardown(net_run *r) {
    mr_ctx_free(&r->ctx);
    mr_model_free(&r->m);
    mr_h5_close(&r->f);
}

/* The training forward pass on the fixed targets: features, RPN, heads and the five losses. */
static void forward(net_run *r) {
    mr_params_zero_grads(&r->m.params);
    cr_assert(mr_model_features(&r->ctx, &r->m, r->images, r->p) == MR_OK, "features: %s",
              mr_last_error());
    cr_assert(mr_model_rpn(&r->ctx, &r->m, r->p, &r->rpn_logits, &r->rpn_deltas) == MR_OK,
              "rpn: %s", mr_last_error());
    r->total = mr_losses_from_targets(&r->ctx, &r->m, r->p, r->rpn_logits, r->rpn_deltas, &r->tt,
                                      NULL, &r->values);
    cr_assert(r->total && r->ctx.status == MR_OK, "losses: %s", mr_last_error());
}

/* Every dataset under /params or /grads must name a model parameter (a gradient: a trainable
 * one), so nothing in the file goes unchecked. */
typedef struct {
    mr_params *ps;
    size_t prefix;
    bool grads;
    int count;
} file_walk;

static mr_status check_file_entry(const char *path, void *user) {
    file_walk *w = user;
    const char *name = path + w->prefix;
    mr_param *p = mr_params_find(w->ps, name);
    cr_expect(p != NULL, "%s: %s names no parameter of the %s model", REF_FILE, path, CONFIG);
    if (p && w->grads)
        cr_expect(p->trainable_kind, "%s: %s is a gradient of a moving statistic", REF_FILE, path);
    w->count++;
    return MR_OK;
}

Test(net_parity, file_matches_the_model) {
    static net_run r;        /* large; not on the stack */
    setup(&r, MR_CONV_AUTO); /* loads every model parameter by name and shape */
    mr_params *ps = &r.m.params;
    int trainable = 0;
    for (int i = 0; i < ps->count; i++) {
        mr_param *p = &ps->items[i];
        char path[160];
        snprintf(path, sizeof path, "/grads/%s", p->name);
        bool has = mr_h5_exists(&r.f, path);
        cr_expect(has == p->trainable_kind, "%s: %s", p->name,
                  has ? "a moving statistic has a gradient in the file"
                      : "no reference gradient in the file");
        trainable += p->trainable_kind;
    }
    file_walk w = {ps, strlen("/params/"), false, 0};
    cr_assert(mr_h5_visit_datasets(&r.f, "/params", check_file_entry, &w) == MR_OK, "%s",
              mr_last_error());
    cr_expect_eq(w.count, ps->count, "%d parameters in the file, %d in the model", w.count,
                 ps->count);
    w = (file_walk){ps, strlen("/grads/"), true, 0};
    cr_assert(mr_h5_visit_datasets(&r.f, "/grads", check_file_entry, &w) == MR_OK, "%s",
              mr_last_error());
    cr_expect_eq(w.count, trainable, "%d gradients in the file, %d trainable parameters", w.count,
                 trainable);
    teardown(&r);
}

static void check_forward_and_losses(mr_conv_algo algo) {
    static net_run r;
    setup(&r, algo);
    forward(&r);
    char what[32], path[64];
    double worst = 0.0;
    for (int l = 0; l < 5; l++) {
        snprintf(what, sizeof what, "P%d", l + 2);
        snprintf(path, sizeof path, "/outputs/P%d", l + 2);
        worst = fmax(worst, expect_tensor(&r, what, path, r.p[l]));
    }
    worst = fmax(worst,
                 expect_tensor(&r, "rpn_class_logits", "/outputs/rpn_class_logits", r.rpn_logits));
    worst = fmax(worst, expect_tensor(&r, "rpn_bbox", "/outputs/rpn_bbox", r.rpn_deltas));

    /* The heads once more, outside the tape, to compare their outputs: the box head on every
     * ROI, the mask head on the positive ones (the rows the mask loss reads). */
    const mr_train_targets *tt = &r.tt;
    bool prev = mr_no_grad_begin(&r.ctx);
    mr_tensor *class_logits = NULL, *deltas = NULL;
    cr_assert(mr_model_box_head(&r.ctx, &r.m, r.p, tt->rois, tt->roi_image, tt->n_rois,
                                &class_logits, &deltas) == MR_OK,
              "%s", mr_last_error());
    worst = fmax(worst, expect_tensor(&r, "mrcnn_class_logits", "/outputs/mrcnn_class_logits",
                                      class_logits));
    worst = fmax(worst, expect_tensor(&r, "mrcnn_bbox", "/outputs/mrcnn_bbox", deltas));
    int64_t np = 0;
    float *boxes = mr_alloc(&r.ctx, sizeof(float) * (size_t)(4 * tt->n_rois), "net_parity");
    int32_t *image = mr_alloc(&r.ctx, sizeof(int32_t) * (size_t)tt->n_rois, "net_parity");
    cr_assert(boxes && image);
    for (int64_t i = 0; i < tt->n_rois; i++)
        if (tt->roi_class[i] > 0) {
            memcpy(boxes + 4 * np, tt->rois + 4 * i, 4 * sizeof(float));
            image[np++] = tt->roi_image[i];
        }
    cr_assert_eq(np, r.values.n_positive_rois);
    mr_tensor *masks = mr_model_mask_head(&r.ctx, &r.m, r.p, boxes, image, np);
    worst = fmax(worst, expect_tensor(&r, "mrcnn_mask logits (positive ROIs)",
                                      "/outputs/mrcnn_mask_logits", masks));
    mr_no_grad_end(&r.ctx, prev);

    for (int i = 0; i < MR_LOSS_COUNT; i++) {
        snprintf(path, sizeof path, "/losses/%s", mr_loss_names[i]);
        int64_t shape[1] = {1};
        worst = fmax(worst, expect_close(&r, mr_loss_names[i], path, &r.values.value[i], 1, shape,
                                         LOSS_ATOL, LOSS_RTOL));
    }
    int64_t shape[1] = {1};
    worst = fmax(worst, expect_close(&r, "total_loss", "/losses/total_loss", &r.total->data[0], 1,
                                     shape, LOSS_ATOL, LOSS_RTOL));
    cr_log_info("net_parity forward: worst |C - torch| / tolerance %.3f", worst);
    teardown(&r);
}

static void check_parameter_gradients(mr_conv_algo algo) {
    static net_run r;
    setup(&r, algo);
    forward(&r);
    cr_assert(mr_backward(&r.ctx, r.total) == MR_OK, "backward: %s", mr_last_error());
    mr_params *ps = &r.m.params;
    double worst = 0.0;
    const char *worst_name = "";
    int checked = 0;
    for (int i = 0; i < ps->count; i++) {
        mr_param *p = &ps->items[i];
        if (!p->trainable_kind) {
            /* Moving statistics are never trainable: no gradient buffer, no backward work. */
            cr_expect(p->frozen && !p->t.grad, "%s: a moving statistic gets a gradient", p->name);
            continue;
        }
        cr_expect_not_null(p->t.grad, "%s: trainable under \"all\" but has no gradient", p->name);
        char path[160];
        snprintf(path, sizeof path, "/grads/%s", p->name);
        int64_t n = 0;
        float *want = read_ds(&r, path, NULL, NULL, &n);
        double scale = 0.0;
        for (int64_t k = 0; k < n; k++) scale = fmax(scale, fabs((double)want[k]));
        free(want);
        char what[160];
        snprintf(what, sizeof what, "d total_loss / d %s (max |grad| %.3g)", p->name, scale);
        double ratio = expect_close(&r, what, path, p->t.grad, p->t.ndim, p->t.shape,
                                    GRAD_SCALE * scale + 1e-12, GRAD_RTOL);
        if (ratio > worst) worst = ratio, worst_name = ps->items[i].name;
        checked++;
    }
    cr_log_info("net_parity: %d parameter gradients; worst |C - torch| / tolerance %.3f (%s)",
                checked, worst, worst_name);
    teardown(&r);
}

/* This network is narrower than Winograd's 64 channels, so by default its 3x3 layers run
 * im2col; the other runs of each check put every 3x3 stride-1 layer on Winograd's 4x4 and 6x6
 * tiles, whose larger rounding must still stay within the tolerances. */
Test(net_parity, forward_and_losses) {
    check_forward_and_losses(MR_CONV_AUTO);
}

Test(net_parity, forward_and_losses_with_winograd_4x4) {
    check_forward_and_losses(MR_CONV_WINOGRAD_F4);
}

Test(net_parity, forward_and_losses_with_winograd_6x6) {
    check_forward_and_losses(MR_CONV_WINOGRAD_F6);
}

Test(net_parity, parameter_gradients) {
    check_parameter_gradients(MR_CONV_AUTO);
}

Test(net_parity, parameter_gradients_with_winograd_4x4) {
    check_parameter_gradients(MR_CONV_WINOGRAD_F4);
}

Test(net_parity, parameter_gradients_with_winograd_6x6) {
    check_parameter_gradients(MR_CONV_WINOGRAD_F6);
}

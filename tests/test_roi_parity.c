/* PyTorch parity for layers/roi_align.c: each case of tests/ref/roi_ref.h5 (tests/ref/
 * make_roi_refs.py, float64) runs mr_roi_align on its feature maps and boxes in one mode; the box
 * levels, the output and the gradient with respect to every feature map must match. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/h5.h"
#include "../layers/roi_align.h"
#include "testutil.h" /* criterion.h before parameterized.h, or Test() stays undefined */

#include <criterion/parameterized.h>

#define REF_FILE    "tests/ref/roi_ref.h5" /* tests run from the repository root */
#define ATOL        2e-5
#define RTOL        1e-4
#define ARENA_BYTES ((size_t)32 << 20)

/* Every case the reference file must hold (and no other). Criterion copies the parameters into
 * a re-executed child, so they hold no pointers. */
typedef struct {
    char name[48];
} roi_case;

static roi_case cases[] = {
    {"crop_and_resize_pool7_square"}, {"crop_and_resize_pool14_square"},
    {"crop_and_resize_pool7_rect"},   {"crop_and_resize_pool1_rect"},
    {"crop_and_resize_pool7_edges"},  {"crop_and_resize_pool14_edges"},
    {"average_pool7_square"},         {"average_pool14_square"},
    {"average_pool7_rect"},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void open_refs(mr_h5 *f) {
    cr_assert(mr_h5_open(REF_FILE, false, f) == MR_OK,
              "%s (run the tests from the repository root; `make refs` regenerates the file)",
              mr_last_error());
}

static float *read_ds(mr_h5 *f, const char *path, int *ndim, int64_t *shape, int64_t *numel) {
    float *data = NULL;
    int nd = 0;
    int64_t sh[MR_H5_MAX_DIMS];
    cr_assert(mr_h5_read(f, path, &data, &nd, sh) == MR_OK, "%s", mr_last_error());
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    if (ndim) *ndim = nd;
    if (shape)
        for (int i = 0; i < nd; i++) shape[i] = sh[i];
    if (numel) *numel = n;
    return data;
}

static int64_t attr_int(mr_h5 *f, const char *obj, const char *name) {
    int64_t v = 0;
    cr_assert(mr_h5_get_attr_i64(f, obj, name, &v) == MR_OK, "%s", mr_last_error());
    return v;
}

/* got (ndim, shape; NULL = all zero) against dataset `path`, within ATOL + RTOL * |torch|. */
static void expect_close(mr_h5 *f, const char *what, const char *path, const float *got, int ndim,
                         const int64_t *shape) {
    int rnd = 0;
    int64_t rshape[MR_H5_MAX_DIMS], n = 0, numel = 1;
    float *want = read_ds(f, path, &rnd, rshape, &n);
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    bool same = rnd == ndim && n == numel;
    for (int i = 0; same && i < ndim; i++) same = rshape[i] == shape[i];
    if (!same) {
        free(want);
        cr_expect_fail("%s: C has %d dims / %lld values, torch %d / %lld", what, ndim,
                       (long long)numel, rnd, (long long)n);
        return;
    }
    int64_t bad = 0, worst = 0;
    double worst_ratio = -1.0;
    for (int64_t i = 0; i < numel; i++) {
        double a = got ? (double)got[i] : 0.0, b = (double)want[i];
        double ratio = fabs(a - b) / (ATOL + RTOL * fabs(b));
        if (isnan(ratio)) ratio = INFINITY;
        bad += ratio > 1.0;
        if (ratio > worst_ratio) worst_ratio = ratio, worst = i;
    }
    if (bad) {
        int64_t idx[MR_H5_MAX_DIMS], rem = worst;
        for (int d = ndim - 1; d >= 0; d--) {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        char where[96];
        size_t len = 0;
        for (int d = 0; d < ndim && len < sizeof where; d++)
            len += (size_t)snprintf(where + len, sizeof where - len, d ? ",%lld" : "%lld",
                                    (long long)idx[d]);
        double a = got ? (double)got[worst] : 0.0, b = (double)want[worst];
        cr_expect_fail("%s: %lld of %lld values off; worst at (%s): C %.8g, torch %.8g, |diff| "
                       "%.3g > tol %.3g",
                       what, (long long)bad, (long long)numel, where, a, b, fabs(a - b),
                       ATOL + RTOL * fabs(b));
    }
    free(want);
}

ParameterizedTestParameters(roi_parity, roi_align) {
    return cr_make_param_array(roi_case, cases, (size_t)N_CASES);
}

ParameterizedTest(roi_case *rc, roi_parity, roi_align) {
    mr_h5 f;
    open_refs(&f);
    char obj[128], path[192];
    snprintf(obj, sizeof obj, "/cases/%s", rc->name);
    cr_assert(mr_h5_exists(&f, obj), "case %s is missing from %s (regenerate with `make refs`)",
              rc->name, REF_FILE);
    char *setup = NULL, *mode_name = NULL;
    cr_assert(mr_h5_get_attr_str(&f, obj, "setup", &setup) == MR_OK, "%s", mr_last_error());
    cr_assert(mr_h5_get_attr_str(&f, obj, "mode", &mode_name) == MR_OK, "%s", mr_last_error());
    mr_roi_align_mode mode = MR_ROI_CROP_AND_RESIZE;
    if (!strcmp(mode_name, "average"))
        mode = MR_ROI_AVERAGE;
    else
        cr_assert(!strcmp(mode_name, "crop_and_resize"), "case %s: unknown mode '%s'", rc->name,
                  mode_name);
    int pool = (int)attr_int(&f, obj, "pool");
    int image_h = (int)attr_int(&f, obj, "image_h"), image_w = (int)attr_int(&f, obj, "image_w");

    mr_ctx ctx;
    cr_assert(mr_ctx_init(&ctx, ARENA_BYTES) == MR_OK, "%s", mr_last_error());
    static const char *const level_names[4] = {"P2", "P3", "P4", "P5"};
    mr_tensor *features[4];
    for (int l = 0; l < 4; l++) {
        snprintf(path, sizeof path, "/setups/%s/%s", setup, level_names[l]);
        int nd = 0;
        int64_t shape[MR_H5_MAX_DIMS], n = 0;
        float *data = read_ds(&f, path, &nd, shape, &n);
        cr_assert(nd == 4, "%s: rank %d", path, nd);
        features[l] = mr_tensor_new(&ctx, level_names[l], 4, shape);
        cr_assert_not_null(features[l], "%s", mr_last_error());
        memcpy(features[l]->data, data, sizeof(float) * (size_t)n);
        free(data);
        features[l]->requires_grad = true;
    }

    snprintf(path, sizeof path, "%s/boxes", obj);
    int64_t n_boxes = 0, bshape[MR_H5_MAX_DIMS];
    int bnd = 0;
    float *boxes = read_ds(&f, path, &bnd, bshape, NULL);
    cr_assert(bnd == 2 && bshape[1] == 4, "%s: boxes are not (N, 4)", rc->name);
    n_boxes = bshape[0];
    int64_t *batch64 = NULL, *levels = NULL, count = 0;
    snprintf(path, sizeof path, "%s/batch_index", obj);
    cr_assert(mr_h5_read_i64(&f, path, &batch64, &count) == MR_OK && count == n_boxes, "%s",
              mr_last_error());
    snprintf(path, sizeof path, "%s/levels", obj);
    cr_assert(mr_h5_read_i64(&f, path, &levels, &count) == MR_OK && count == n_boxes, "%s",
              mr_last_error());
    int32_t *batch = malloc(sizeof(int32_t) * (size_t)n_boxes);
    cr_assert_not_null(batch);
    for (int64_t i = 0; i < n_boxes; i++) {
        batch[i] = (int32_t)batch64[i];
        int lv = mr_roi_level(boxes + 4 * i, (double)image_h * (double)image_w);
        cr_expect_eq(lv, levels[i], "case %s: box %lld (%g,%g,%g,%g) goes to P%d, torch says P%lld",
                     rc->name, (long long)i, (double)boxes[4 * i], (double)boxes[4 * i + 1],
                     (double)boxes[4 * i + 2], (double)boxes[4 * i + 3], lv, (long long)levels[i]);
    }

    mr_tensor *y =
        mr_roi_align(&ctx, features, boxes, batch, n_boxes, pool, image_h, image_w, mode);
    free(boxes); /* the op keeps its own copies */
    free(batch);
    cr_assert(y && ctx.status == MR_OK, "case %s: %s", rc->name, mr_last_error());
    char what[96];
    snprintf(what, sizeof what, "case %s: y", rc->name);
    snprintf(path, sizeof path, "%s/y", obj);
    expect_close(&f, what, path, y->data, y->ndim, y->shape);

    int64_t dn = 0;
    snprintf(path, sizeof path, "%s/dy", obj);
    float *dy = read_ds(&f, path, NULL, NULL, &dn);
    cr_assert(dn == y->numel, "case %s: dy holds %lld values, y %lld", rc->name, (long long)dn,
              (long long)y->numel);
    cr_assert(mr_backward_seeded(&ctx, y, dy) == MR_OK, "case %s: %s", rc->name, mr_last_error());
    free(dy);
    for (int l = 0; l < 4; l++) {
        snprintf(what, sizeof what, "case %s: d%s", rc->name, level_names[l]);
        snprintf(path, sizeof path, "%s/d%s", obj, level_names[l]);
        /* A level no box went to has no gradient buffer: all zeros. */
        expect_close(&f, what, path, features[l]->grad, features[l]->ndim, features[l]->shape);
    }
    free(batch64);
    free(levels);
    free(setup);
    free(mode_name);
    mr_ctx_free(&ctx);
    mr_h5_close(&f);
}

/* Every case in the file is in the table above (so none goes unchecked), and vice versa. */
typedef struct {
    char names[64][64];
    int n;
} case_list;

static mr_status collect_case(const char *path, void *user) {
    case_list *c = user;
    const char *start = path + strlen("/cases/"), *end = strchr(start, '/');
    size_t len = end ? (size_t)(end - start) : strlen(start);
    if (len >= sizeof c->names[0]) len = sizeof c->names[0] - 1;
    if (c->n > 0 && strlen(c->names[c->n - 1]) == len && !strncmp(c->names[c->n - 1], start, len))
        return MR_OK;
    cr_assert(c->n < 64, "too many cases");
    memcpy(c->names[c->n], start, len);
    c->names[c->n][len] = '\0';
    c->n++;
    return MR_OK;
}

Test(roi_parity, every_case_is_checked) {
    mr_h5 f;
    open_refs(&f);
    static case_list found;
    found.n = 0;
    cr_assert(mr_h5_visit_datasets(&f, "/cases", collect_case, &found) == MR_OK, "%s",
              mr_last_error());
    for (int i = 0; i < found.n; i++) {
        bool listed = false;
        for (int k = 0; k < N_CASES && !listed; k++)
            listed = !strcmp(cases[k].name, found.names[i]);
        cr_expect(listed, "case %s is in %s but not in test_roi_parity.c's table", found.names[i],
                  REF_FILE);
    }
    for (int k = 0; k < N_CASES; k++) {
        bool in_file = false;
        for (int i = 0; i < found.n && !in_file; i++)
            in_file = !strcmp(cases[k].name, found.names[i]);
        cr_expect(in_file, "case %s is missing from %s", cases[k].name, REF_FILE);
    }
    mr_h5_close(&f);
}

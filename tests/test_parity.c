/* PyTorch parity for every primitive op of core/ops.h: each case of tests/ref/ops_ref.h5 (written
 * by tests/ref/make_op_refs.py, float64 torch autograd) runs through the C op in a fresh context,
 * and the output and every input gradient must match within float32 tolerance. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../core/h5.h"
#include "../core/ops.h"
#include "testutil.h" /* criterion.h before parameterized.h, or Test() stays undefined */

#include <criterion/parameterized.h>

#define REF_FILE    "tests/ref/ops_ref.h5" /* tests run from the repository root */
#define ATOL        1e-4
#define RTOL        1e-4
#define ARENA_BYTES ((size_t)32 << 20)
#define MAX_USED    16

/* Every case the reference file must hold, with its op. A case missing from the file fails;
 * so does a case in the file that is not listed here (it would never be checked). Criterion
 * copies the parameters into a re-executed child, so they hold no pointers. */
typedef struct {
    char name[40];
    char op[24];
    mr_conv_algo conv_algo; /* conv2d cases run once per 3x3 stride-1 path */
} parity_case;

static parity_case cases[] = {
    {"conv2d_3x3_s1_same", "conv2d", MR_CONV_IM2COL},
    {"conv2d_3x3_s1_same", "conv2d", MR_CONV_WINOGRAD_F4},
    {"conv2d_3x3_s1_same", "conv2d", MR_CONV_WINOGRAD_F6},
    {"conv2d_3x3_s1_same_nobias", "conv2d", MR_CONV_IM2COL},
    {"conv2d_3x3_s1_same_nobias", "conv2d", MR_CONV_WINOGRAD_F4},
    {"conv2d_3x3_s1_same_nobias", "conv2d", MR_CONV_WINOGRAD_F6},
    {"conv2d_3x3_s2_same_even", "conv2d", MR_CONV_AUTO},
    {"conv2d_3x3_s2_same_odd", "conv2d", MR_CONV_AUTO},
    {"conv2d_2x2_s1_same", "conv2d", MR_CONV_AUTO},
    {"conv2d_3x3_s1_valid", "conv2d", MR_CONV_IM2COL},
    {"conv2d_3x3_s1_valid", "conv2d", MR_CONV_WINOGRAD_F4},
    {"conv2d_3x3_s1_valid", "conv2d", MR_CONV_WINOGRAD_F6},
    {"conv2d_1x1_s1", "conv2d", MR_CONV_AUTO},
    {"conv2d_1x1_s1_nobias", "conv2d", MR_CONV_AUTO},
    {"conv2d_1x1_s2_valid", "conv2d", MR_CONV_AUTO},
    {"conv2d_7x7_s2_pad3", "conv2d", MR_CONV_AUTO},
    {"conv2d_7x7_s2_pad3_nobias", "conv2d", MR_CONV_AUTO},
    {"conv2d_bn_3x3_s1_same", "conv2d_bn", MR_CONV_IM2COL},
    {"conv2d_bn_3x3_s1_same", "conv2d_bn", MR_CONV_WINOGRAD_F4},
    {"conv2d_bn_3x3_s1_same", "conv2d_bn", MR_CONV_WINOGRAD_F6},
    {"conv2d_bn_1x1_s2_nobias", "conv2d_bn", MR_CONV_AUTO},
    {"deconv2x2", "deconv2x2", MR_CONV_AUTO},
    {"deconv2x2_nobias", "deconv2x2", MR_CONV_AUTO},
    {"batchnorm_frozen", "batchnorm_frozen", MR_CONV_AUTO},
    {"batchnorm_batch", "batchnorm_batch", MR_CONV_AUTO},
    {"batchnorm_batch_2d", "batchnorm_batch", MR_CONV_AUTO},
    {"relu", "relu", MR_CONV_AUTO},
    {"sigmoid", "sigmoid", MR_CONV_AUTO},
    {"add", "add", MR_CONV_AUTO},
    {"add_relu", "add_relu", MR_CONV_AUTO},
    {"maxpool_3x3_s2_same_even", "maxpool", MR_CONV_AUTO},
    {"maxpool_3x3_s2_same_odd", "maxpool", MR_CONV_AUTO},
    {"maxpool_2x2_s2_valid", "maxpool", MR_CONV_AUTO},
    {"maxpool_1x1_s2_valid", "maxpool", MR_CONV_AUTO},
    {"maxpool_3x3_s2_pad1", "maxpool", MR_CONV_AUTO},
    {"upsample2x_add", "upsample2x_add", MR_CONV_AUTO},
    {"linear", "linear", MR_CONV_AUTO},
    {"linear_nobias", "linear", MR_CONV_AUTO},
    {"reshape", "reshape", MR_CONV_AUTO},
    {"concat_axis1", "concat", MR_CONV_AUTO},
    {"concat_axis3", "concat", MR_CONV_AUTO},
    {"concat_axis0", "concat", MR_CONV_AUTO},
    {"slice_axis3", "slice", MR_CONV_AUTO},
    {"slice_axis1", "slice", MR_CONV_AUTO},
    {"slice_axis0", "slice", MR_CONV_AUTO},
    {"gather_rows", "gather_rows", MR_CONV_AUTO},
    {"gather_rows_2d", "gather_rows", MR_CONV_AUTO},
    {"softmax_xent", "softmax_xent", MR_CONV_AUTO},
    {"softmax_xent_weighted", "softmax_xent", MR_CONV_AUTO},
    {"sigmoid_bce", "sigmoid_bce", MR_CONV_AUTO},
    {"smooth_l1", "smooth_l1", MR_CONV_AUTO},
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

/* One case being run: the open file, a fresh context, the datasets read so far (each dataset
 * in the group must be read by the runner, so a new input cannot be silently ignored). */
typedef struct {
    mr_h5 f;
    mr_ctx ctx;
    const char *group;
    char used[MAX_USED][32];
    int n_used;
} run_state;

static void ds_path(char *buf, size_t size, const run_state *r, const char *name) {
    snprintf(buf, size, "/%s/%s", r->group, name);
}

static void mark_used(run_state *r, const char *name) {
    for (int i = 0; i < r->n_used; i++)
        if (!strcmp(r->used[i], name)) return;
    cr_assert(r->n_used < MAX_USED, "%s: too many datasets", r->group);
    snprintf(r->used[r->n_used++], sizeof r->used[0], "%s", name);
}

static bool has(run_state *r, const char *name) {
    char path[256];
    ds_path(path, sizeof path, r, name);
    return mr_h5_exists(&r->f, path);
}

static int64_t attr_i64(run_state *r, const char *name) {
    char obj[128];
    snprintf(obj, sizeof obj, "/%s", r->group);
    int64_t v = 0;
    mr_status st = mr_h5_get_attr_i64(&r->f, obj, name, &v);
    cr_assert(st == MR_OK, "%s: %s", r->group, mr_last_error());
    return v;
}

/* Reads dataset `name` of the case (any numeric type) as floats; caller frees. */
static float *read_floats(run_state *r, const char *name, int *ndim, int64_t *shape,
                          int64_t *numel) {
    char path[256];
    ds_path(path, sizeof path, r, name);
    float *data = NULL;
    int nd = 0;
    int64_t sh[MR_H5_MAX_DIMS];
    mr_status st = mr_h5_read(&r->f, path, &data, &nd, sh);
    cr_assert(st == MR_OK, "case %s: %s (regenerate with `make refs`)", r->group, mr_last_error());
    mark_used(r, name);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= sh[i];
    if (ndim) *ndim = nd;
    if (shape)
        for (int i = 0; i < nd; i++) shape[i] = sh[i];
    if (numel) *numel = n;
    return data;
}

static float read_scalar(run_state *r, const char *name) {
    int64_t n = 0;
    float *data = read_floats(r, name, NULL, NULL, &n);
    cr_assert(n == 1, "case %s: %s holds %lld values, expected 1", r->group, name, (long long)n);
    float v = data[0];
    free(data);
    return v;
}

/* A dataset of the case as a new arena tensor of the same shape. */
static mr_tensor *load(run_state *r, const char *name, bool requires_grad) {
    int nd = 0;
    int64_t shape[MR_H5_MAX_DIMS], n = 0;
    float *data = read_floats(r, name, &nd, shape, &n);
    cr_assert(nd >= 1 && nd <= MR_MAX_DIMS, "case %s: %s has rank %d", r->group, name, nd);
    char *tname = mr_alloc(&r->ctx, strlen(name) + 1, "parity");
    mr_tensor *t = tname ? mr_tensor_new(&r->ctx, tname, nd, shape) : NULL;
    cr_assert_not_null(t, "case %s: %s", r->group, mr_last_error());
    strcpy(tname, name);
    memcpy(t->data, data, (size_t)n * sizeof(float));
    free(data);
    t->requires_grad = requires_grad;
    return t;
}

/* Compares got (ndim, shape, numel) with the case's dataset `ref`: the shape first, then every
 * value within ATOL + RTOL * |ref|; a failure names the case, the count and the worst element. */
static void expect_close(run_state *r, const char *ref, const float *got, int ndim,
                         const int64_t *shape, int64_t numel) {
    int rnd = 0;
    int64_t rshape[MR_H5_MAX_DIMS], rn = 0;
    float *want = read_floats(r, ref, &rnd, rshape, &rn);
    bool same = rnd == ndim && rn == numel;
    for (int i = 0; same && i < ndim; i++) same = rshape[i] == shape[i];
    if (!same) {
        free(want);
        cr_expect_fail("case %s: %s has %d dims / %lld values in C, reference has %d / %lld",
                       r->group, ref, ndim, (long long)numel, rnd, (long long)rn);
        return;
    }
    if (!got) {
        free(want);
        cr_expect_fail("case %s: no %s computed (backward never reached the input)", r->group, ref);
        return;
    }
    int64_t bad = 0, worst = -1;
    double worst_excess = 0.0;
    for (int64_t i = 0; i < numel; i++) {
        double a = (double)got[i], b = (double)want[i];
        double err = fabs(a - b), tol = ATOL + RTOL * fabs(b);
        if (err <= tol) continue; /* NaN fails here */
        bad++;
        double excess = isnan(err) ? (double)INFINITY : err / tol;
        if (worst < 0 || excess > worst_excess) worst = i, worst_excess = excess;
    }
    if (bad) {
        int64_t idx[MR_H5_MAX_DIMS], rem = worst; /* flat index -> (i0,i1,...) */
        for (int d = ndim - 1; d >= 0; d--) {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        char where[128] = "";
        size_t len = 0;
        for (int d = 0; d < ndim && len < sizeof where; d++)
            len += (size_t)snprintf(where + len, sizeof where - len, d ? ",%lld" : "%lld",
                                    (long long)idx[d]);
        cr_expect_fail("case %s: %s: %lld of %lld values off; worst at (%s): C %.8g, torch "
                       "%.8g, |diff| %.3g > tol %.3g",
                       r->group, ref, (long long)bad, (long long)numel, where, (double)got[worst],
                       (double)want[worst], fabs((double)got[worst] - (double)want[worst]),
                       ATOL + RTOL * fabs((double)want[worst]));
    }
    free(want);
}

static void expect_tensor(run_state *r, const char *ref, const mr_tensor *t) {
    expect_close(r, ref, t->data, t->ndim, t->shape, t->numel);
}

/* Forward output, backward from the stored dy, then d<name> for every given input. */
static void check_forward_backward(run_state *r, mr_tensor *y, mr_tensor *const *inputs,
                                   const char *const *names, int n) {
    cr_assert(r->ctx.status == MR_OK && y, "case %s: forward failed: %s", r->group,
              mr_last_error());
    expect_tensor(r, "y", y);
    int64_t dn = 0;
    float *dy = read_floats(r, "dy", NULL, NULL, &dn);
    cr_assert(dn == y->numel, "case %s: dy holds %lld values, y %lld", r->group, (long long)dn,
              (long long)y->numel);
    mr_status st = y->numel == 1 && dy[0] == 1.0f ? mr_backward(&r->ctx, y)
                                                  : mr_backward_seeded(&r->ctx, y, dy);
    free(dy);
    cr_assert(st == MR_OK, "case %s: backward failed: %s", r->group, mr_last_error());
    for (int i = 0; i < n; i++) {
        if (!inputs[i]) continue;
        char dname[64];
        snprintf(dname, sizeof dname, "d%s", names[i]);
        expect_close(r, dname, inputs[i]->grad, inputs[i]->ndim, inputs[i]->shape,
                     inputs[i]->numel);
    }
}

/* ---- one runner per op ------------------------------------------------------------------- */

static void run_conv2d(run_state *r) {
    mr_tensor *x = load(r, "x", true), *w = load(r, "w", true);
    mr_tensor *b = has(r, "b") ? load(r, "b", true) : NULL;
    mr_tensor *y = mr_conv2d(&r->ctx, x, w, b, (int)attr_i64(r, "stride"), (int)attr_i64(r, "pad"));
    check_forward_backward(r, y, (mr_tensor *[]){x, w, b}, (const char *[]){"x", "w", "b"}, 3);
}

static void run_conv2d_bn(run_state *r) {
    mr_tensor *x = load(r, "x", true), *w = load(r, "w", true);
    mr_tensor *b = has(r, "b") ? load(r, "b", true) : NULL;
    mr_tensor *gamma = load(r, "gamma", true), *beta = load(r, "beta", true);
    mr_tensor *mean = load(r, "moving_mean", false), *var = load(r, "moving_var", false);
    mr_tensor *y =
        mr_conv2d_bn(&r->ctx, x, w, b, (int)attr_i64(r, "stride"), (int)attr_i64(r, "pad"), gamma,
                     beta, mean, var, read_scalar(r, "eps"));
    check_forward_backward(r, y, (mr_tensor *[]){x, w, gamma, beta, b},
                           (const char *[]){"x", "w", "gamma", "beta", "b"}, b ? 5 : 4);
}

static void run_deconv2x2(run_state *r) {
    mr_tensor *x = load(r, "x", true), *w = load(r, "w", true);
    mr_tensor *b = has(r, "b") ? load(r, "b", true) : NULL;
    mr_tensor *y = mr_deconv2x2(&r->ctx, x, w, b);
    check_forward_backward(r, y, (mr_tensor *[]){x, w, b}, (const char *[]){"x", "w", "b"}, 3);
}

static void run_batchnorm(run_state *r, bool batch) {
    mr_tensor *x = load(r, "x", true), *gamma = load(r, "gamma", true);
    mr_tensor *beta = load(r, "beta", true);
    mr_tensor *mean = load(r, "moving_mean", false), *var = load(r, "moving_var", false);
    float eps = read_scalar(r, "eps");
    mr_tensor *y;
    if (batch) {
        float momentum = read_scalar(r, "momentum");
        bool update = attr_i64(r, "update_moving") != 0;
        y = mr_batchnorm_batch(&r->ctx, x, gamma, beta, mean, var, eps, momentum, update);
        expect_tensor(r, "moving_mean_new", mean);
        expect_tensor(r, "moving_var_new", var);
    } else {
        y = mr_batchnorm_frozen(&r->ctx, x, gamma, beta, mean, var, eps);
    }
    check_forward_backward(r, y, (mr_tensor *[]){x, gamma, beta},
                           (const char *[]){"x", "gamma", "beta"}, 3);
}

typedef mr_tensor *(*unary_fn)(mr_ctx *, mr_tensor *);

static void run_unary(run_state *r, unary_fn fn) {
    mr_tensor *x = load(r, "x", true);
    check_forward_backward(r, fn(&r->ctx, x), &x, (const char *[]){"x"}, 1);
}

static void run_add(run_state *r) {
    mr_tensor *a = load(r, "a", true), *b = load(r, "b", true);
    check_forward_backward(r, mr_add(&r->ctx, a, b), (mr_tensor *[]){a, b},
                           (const char *[]){"a", "b"}, 2);
}

/* The op writes over a; only the result and the gradients are compared. */
static void run_add_relu(run_state *r) {
    mr_tensor *a = load(r, "a", true), *b = load(r, "b", true);
    mr_tensor *y = mr_add_relu_inplace(&r->ctx, a, b);
    check_forward_backward(r, y, (mr_tensor *[]){a, b}, (const char *[]){"a", "b"}, 2);
}

static void run_maxpool(run_state *r) {
    mr_tensor *x = load(r, "x", true);
    mr_tensor *y = mr_maxpool(&r->ctx, x, (int)attr_i64(r, "kernel"), (int)attr_i64(r, "stride"),
                              (int)attr_i64(r, "pad"));
    check_forward_backward(r, y, &x, (const char *[]){"x"}, 1);
}

static void run_linear(run_state *r) {
    mr_tensor *x = load(r, "x", true), *w = load(r, "w", true);
    mr_tensor *b = has(r, "b") ? load(r, "b", true) : NULL;
    check_forward_backward(r, mr_linear(&r->ctx, x, w, b), (mr_tensor *[]){x, w, b},
                           (const char *[]){"x", "w", "b"}, 3);
}

static void run_reshape(run_state *r) {
    mr_tensor *x = load(r, "x", true);
    char path[256];
    ds_path(path, sizeof path, r, "y");
    int nd = 0;
    int64_t shape[MR_H5_MAX_DIMS];
    cr_assert(mr_h5_shape(&r->f, path, &nd, shape) == MR_OK, "case %s: %s", r->group,
              mr_last_error());
    check_forward_backward(r, mr_reshape(&r->ctx, x, nd, shape), &x, (const char *[]){"x"}, 1);
}

static void run_concat(run_state *r) {
    static const char *const names[MR_MAX_INPUTS] = {"x0", "x1", "x2", "x3"};
    int n = (int)attr_i64(r, "n");
    cr_assert(n >= 1 && n <= MR_MAX_INPUTS, "case %s: n = %d", r->group, n);
    mr_tensor *xs[MR_MAX_INPUTS] = {NULL};
    for (int i = 0; i < n; i++) xs[i] = load(r, names[i], true);
    mr_tensor *y = mr_concat(&r->ctx, xs, n, (int)attr_i64(r, "axis"));
    check_forward_backward(r, y, xs, names, n);
}

static void run_slice(run_state *r) {
    mr_tensor *x = load(r, "x", true);
    mr_tensor *y =
        mr_slice(&r->ctx, x, (int)attr_i64(r, "axis"), attr_i64(r, "start"), attr_i64(r, "len"));
    check_forward_backward(r, y, &x, (const char *[]){"x"}, 1);
}

static void run_gather_rows(run_state *r) {
    mr_tensor *x = load(r, "x", true);
    char path[256];
    ds_path(path, sizeof path, r, "index");
    int64_t *index = NULL, n = 0;
    cr_assert(mr_h5_read_i64(&r->f, path, &index, &n) == MR_OK, "case %s: %s", r->group,
              mr_last_error());
    mark_used(r, "index");
    mr_tensor *y = mr_gather_rows(&r->ctx, x, index, n);
    free(index);
    check_forward_backward(r, y, &x, (const char *[]){"x"}, 1);
}

static void run_softmax_xent(run_state *r) {
    mr_tensor *x = load(r, "x", true);
    char path[256];
    ds_path(path, sizeof path, r, "targets");
    int64_t *t64 = NULL, n = 0;
    cr_assert(mr_h5_read_i64(&r->f, path, &t64, &n) == MR_OK, "case %s: %s", r->group,
              mr_last_error());
    mark_used(r, "targets");
    cr_assert(n == x->shape[0], "case %s: %lld targets for %lld rows", r->group, (long long)n,
              (long long)x->shape[0]);
    int32_t *targets = malloc((size_t)(n ? n : 1) * sizeof *targets);
    cr_assert_not_null(targets, "out of memory");
    for (int64_t i = 0; i < n; i++) targets[i] = (int32_t)t64[i];
    free(t64);
    float *weights = NULL;
    if (has(r, "weights")) {
        int64_t wn = 0;
        weights = read_floats(r, "weights", NULL, NULL, &wn);
        cr_assert(wn == n, "case %s: %lld weights for %lld rows", r->group, (long long)wn,
                  (long long)n);
    }
    mr_tensor *y = mr_softmax_xent(&r->ctx, x, targets, weights);
    free(targets); /* the op keeps its own copies */
    free(weights);
    check_forward_backward(r, y, &x, (const char *[]){"x"}, 1);
}

typedef mr_tensor *(*target_loss_fn)(mr_ctx *, mr_tensor *, const float *);

static void run_target_loss(run_state *r, target_loss_fn fn) {
    mr_tensor *x = load(r, "x", true);
    int64_t n = 0;
    float *targets = read_floats(r, "targets", NULL, NULL, &n);
    cr_assert(n == x->numel, "case %s: %lld targets for %lld values", r->group, (long long)n,
              (long long)x->numel);
    mr_tensor *y = fn(&r->ctx, x, targets);
    free(targets);
    check_forward_backward(r, y, &x, (const char *[]){"x"}, 1);
}

/* The op id named `name`, or MR_OP_COUNT. */
static mr_op_id op_by_name(const char *name) {
    for (int i = 0; i < MR_OP_COUNT; i++)
        if (!strcmp(mr_op_name((mr_op_id)i), name)) return (mr_op_id)i;
    return MR_OP_COUNT;
}

static void run_batchnorm_frozen(run_state *r) {
    run_batchnorm(r, false);
}
static void run_batchnorm_batch(run_state *r) {
    run_batchnorm(r, true);
}
static void run_relu(run_state *r) {
    run_unary(r, mr_relu);
}
static void run_sigmoid(run_state *r) {
    run_unary(r, mr_sigmoid);
}
static void run_upsample2x_add(run_state *r) {
    mr_tensor *x = load(r, "x", true), *base = load(r, "base", true);
    mr_tensor *y = mr_upsample2x_add(&r->ctx, x, base);
    check_forward_backward(r, y, (mr_tensor *[]){x, base}, (const char *[]){"x", "base"}, 2);
}
static void run_sigmoid_bce(run_state *r) {
    run_target_loss(r, mr_sigmoid_bce);
}
static void run_smooth_l1(run_state *r) {
    run_target_loss(r, mr_smooth_l1);
}

/* The runner of each op; an op added to MR_OP_LIST without one fails its cases. */
static void (*const runners[MR_OP_COUNT])(run_state *) = {
    [MR_OP_CONV2D] = run_conv2d,
    [MR_OP_CONV2D_BN] = run_conv2d_bn,
    [MR_OP_DECONV2X2] = run_deconv2x2,
    [MR_OP_BATCHNORM_FROZEN] = run_batchnorm_frozen,
    [MR_OP_BATCHNORM_BATCH] = run_batchnorm_batch,
    [MR_OP_RELU] = run_relu,
    [MR_OP_SIGMOID] = run_sigmoid,
    [MR_OP_ADD] = run_add,
    [MR_OP_ADD_RELU] = run_add_relu,
    [MR_OP_MAXPOOL] = run_maxpool,
    [MR_OP_UPSAMPLE2X_ADD] = run_upsample2x_add,
    [MR_OP_LINEAR] = run_linear,
    [MR_OP_RESHAPE] = run_reshape,
    [MR_OP_CONCAT] = run_concat,
    [MR_OP_SLICE] = run_slice,
    [MR_OP_GATHER_ROWS] = run_gather_rows,
    [MR_OP_SOFTMAX_XENT] = run_softmax_xent,
    [MR_OP_SIGMOID_BCE] = run_sigmoid_bce,
    [MR_OP_SMOOTH_L1] = run_smooth_l1,
};

static void open_refs(mr_h5 *f) {
    mr_status st = mr_h5_open(REF_FILE, false, f);
    cr_assert(st == MR_OK,
              "%s (run the tests from the repository root; `make refs` regenerates "
              "the file)",
              mr_last_error());
}

/* Every dataset of the group must have been read by the runner. */
static mr_status check_used(const char *path, void *user) {
    run_state *r = user;
    const char *name = strrchr(path, '/') + 1;
    for (int i = 0; i < r->n_used; i++)
        if (!strcmp(r->used[i], name)) return MR_OK;
    cr_expect_fail("case %s: dataset '%s' in the reference file was not checked", r->group, name);
    return MR_OK;
}

ParameterizedTestParameters(parity, op) {
    return cr_make_param_array(parity_case, cases, (size_t)N_CASES);
}

ParameterizedTest(parity_case *pc, parity, op) {
    run_state r = {.group = pc->name};
    open_refs(&r.f);
    char obj[128];
    snprintf(obj, sizeof obj, "/%s", pc->name);
    cr_assert(mr_h5_exists(&r.f, obj), "case %s is missing from %s (regenerate with `make refs`)",
              pc->name, REF_FILE);
    char *op = NULL;
    cr_assert(mr_h5_get_attr_str(&r.f, obj, "op", &op) == MR_OK, "case %s: %s", pc->name,
              mr_last_error());
    cr_assert(!strcmp(op, pc->op), "case %s: file says op '%s', table says '%s'", pc->name, op,
              pc->op);
    free(op);
    mr_op_id id = op_by_name(pc->op);
    cr_assert(id != MR_OP_COUNT, "case %s: op '%s' is not in MR_OP_LIST", pc->name, pc->op);
    cr_assert(mr_ctx_init(&r.ctx, ARENA_BYTES) == MR_OK, "%s", mr_last_error());
    r.ctx.conv_algo = pc->conv_algo;
    cr_assert(runners[id], "case %s: no parity runner for op '%s'", pc->name, pc->op);
    runners[id](&r);
    cr_assert(mr_h5_visit_datasets(&r.f, obj, check_used, &r) == MR_OK, "%s", mr_last_error());
    mr_ctx_free(&r.ctx);
    mr_h5_close(&r.f);
}

/* ---- coverage: every op has a case, every case in the file is checked --------------------- */

/* Ops in MR_OP_LIST that are not core/ primitives: they are checked against their own
 * references with their layer (layers/roi_align.c: Matterport's crop_and_resize). */
static const char *const not_core_primitives[] = {"roi_align"};

static bool is_core_primitive(const char *op) {
    for (size_t i = 0; i < sizeof not_core_primitives / sizeof not_core_primitives[0]; i++)
        if (!strcmp(not_core_primitives[i], op)) return false;
    return true;
}

typedef struct {
    char names[256][64];
    int n;
} group_list;

static mr_status collect_group(const char *path, void *user) {
    group_list *g = user;
    const char *start = path + 1, *end = strchr(start, '/');
    if (!end) return MR_OK; /* a dataset at the root */
    size_t len = (size_t)(end - start);
    if (len >= sizeof g->names[0]) len = sizeof g->names[0] - 1;
    if (g->n > 0 && strlen(g->names[g->n - 1]) == len && !strncmp(g->names[g->n - 1], start, len))
        return MR_OK;
    if (g->n == (int)(sizeof g->names / sizeof g->names[0]))
        return mr_fail(MR_ERR_FORMAT, "more than %d groups", g->n);
    memcpy(g->names[g->n], start, len);
    g->names[g->n][len] = '\0';
    g->n++;
    return MR_OK;
}

Test(parity, every_op_has_a_case) {
    mr_h5 f;
    open_refs(&f);
    static group_list groups; /* large; not on the stack */
    groups.n = 0;
    cr_assert(mr_h5_visit_datasets(&f, "/", collect_group, &groups) == MR_OK, "%s",
              mr_last_error());
    static char ops[256][64];
    for (int i = 0; i < groups.n; i++) {
        char obj[80], *op = NULL;
        snprintf(obj, sizeof obj, "/%s", groups.names[i]);
        cr_assert(mr_h5_get_attr_str(&f, obj, "op", &op) == MR_OK, "%s", mr_last_error());
        snprintf(ops[i], sizeof ops[i], "%s", op);
        free(op);
        bool listed = false;
        for (int k = 0; k < N_CASES && !listed; k++)
            listed = !strcmp(cases[k].name, groups.names[i]);
        cr_expect(listed, "case %s is in %s but not in test_parity.c's table: it is never checked",
                  groups.names[i], REF_FILE);
    }
    for (int i = 0; i < MR_OP_COUNT; i++) {
        const char *name = mr_op_name((mr_op_id)i);
        if (!is_core_primitive(name)) continue;
        bool in_file = false, in_table = false;
        for (int k = 0; k < groups.n && !in_file; k++) in_file = !strcmp(ops[k], name);
        for (int k = 0; k < N_CASES && !in_table; k++) in_table = !strcmp(cases[k].op, name);
        cr_expect(in_file,
                  "op %s has no PyTorch parity case in %s: add one to "
                  "tests/ref/make_op_refs.py and run `make refs`",
                  name, REF_FILE);
        cr_expect(in_table, "op %s has no case in test_parity.c's table", name);
        cr_expect(runners[i], "op %s has no parity runner in test_parity.c", name);
    }
    for (int k = 0; k < N_CASES; k++) {
        bool in_file = false;
        for (int i = 0; i < groups.n && !in_file; i++)
            in_file = !strcmp(groups.names[i], cases[k].name);
        cr_expect(in_file, "case %s is missing from %s", cases[k].name, REF_FILE);
    }
    mr_h5_close(&f);
}

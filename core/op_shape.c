/* Shape ops: reshape, concat, slice and gather-rows, forward and backward. Every op copies;
 * a reshape shares its input's values but keeps its own gradient. */
#include <string.h>

#include "ops.h"

static void reshape_backward(mr_node *node) {
    mr_tensor *x = node->inputs[0];
    const float *dy = node->out->grad;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < x->numel; i++) x->grad[i] += dy[i];
}

mr_tensor *mr_reshape(mr_ctx *ctx, mr_tensor *x, int ndim, const int64_t *shape) {
    if (!x || ctx->status != MR_OK) return NULL;
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    char xs[64];
    MR_REQUIRE(ndim >= 1 && ndim <= MR_MAX_DIMS && numel == x->numel,
               "reshape: %s %s cannot become %lld elements in %d dims", x->name,
               mr_shape_str(x, xs, sizeof xs), (long long)numel, ndim);
    mr_tensor *out = mr_alloc(ctx, sizeof *out, "reshape");
    if (!out) return NULL;
    *out = (mr_tensor){.data = x->data, .ndim = ndim, .numel = numel, .name = "reshape"};
    for (int i = 0; i < ndim; i++) out->shape[i] = shape[i];
    mr_record(ctx, MR_OP_RESHAPE, out, &x, 1, reshape_backward);
    return out;
}

/* A tensor seen as (outer, axis, inner) around `axis`. */
static void split_at(const mr_tensor *t, int axis, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= t->shape[i];
    for (int i = axis + 1; i < t->ndim; i++) *inner *= t->shape[i];
}

typedef struct {
    int axis;
} concat_saved;

static void concat_backward(mr_node *node) {
    int axis = ((concat_saved *)node->saved)->axis;
    const mr_tensor *out = node->out;
    int64_t outer, inner, offset = 0;
    split_at(out, axis, &outer, &inner);
    for (int k = 0; k < node->n_inputs; k++) {
        mr_tensor *x = node->inputs[k];
        int64_t len = x->shape[axis] * inner;
        if (node->needs_grad >> k & 1u)
            for (int64_t o = 0; o < outer; o++) {
                const float *src = out->grad + o * out->shape[axis] * inner + offset;
                float *dst = x->grad + o * len;
                for (int64_t i = 0; i < len; i++) dst[i] += src[i];
            }
        offset += len;
    }
}

mr_tensor *mr_concat(mr_ctx *ctx, mr_tensor *const *xs, int n, int axis) {
    if (ctx->status != MR_OK) return NULL;
    MR_REQUIRE(n >= 1 && n <= MR_MAX_INPUTS, "concat of %d tensors (1..%d)", n, MR_MAX_INPUTS);
    for (int k = 0; k < n; k++)
        if (!xs[k]) return NULL;
    const mr_tensor *first = xs[0];
    MR_REQUIRE(axis >= 0 && axis < first->ndim, "concat: axis %d of %s", axis, first->name);
    int64_t shape[MR_MAX_DIMS];
    for (int i = 0; i < first->ndim; i++) shape[i] = first->shape[i];
    shape[axis] = 0;
    for (int k = 0; k < n; k++) {
        MR_REQUIRE(xs[k]->ndim == first->ndim, "concat: %s and %s differ in rank", first->name,
                   xs[k]->name);
        for (int i = 0; i < first->ndim; i++)
            MR_REQUIRE(i == axis || xs[k]->shape[i] == first->shape[i],
                       "concat: %s and %s differ in dim %d", first->name, xs[k]->name, i);
        shape[axis] += xs[k]->shape[axis];
    }
    mr_tensor *out = mr_tensor_new(ctx, "concat", first->ndim, shape);
    if (!out) return NULL;
    int64_t outer, inner, offset = 0;
    split_at(out, axis, &outer, &inner);
    for (int k = 0; k < n; k++) {
        int64_t len = xs[k]->shape[axis] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(out->data + o * shape[axis] * inner + offset, xs[k]->data + o * len,
                   (size_t)len * sizeof(float));
        offset += len;
    }
    mr_node *node = mr_record(ctx, MR_OP_CONCAT, out, xs, n, concat_backward);
    if (node) {
        concat_saved *s = mr_alloc(ctx, sizeof *s, "concat");
        if (!s) return NULL;
        s->axis = axis;
        node->saved = s;
    }
    return out;
}

typedef struct {
    int axis;
    int64_t start;
} slice_saved;

static void slice_backward(mr_node *node) {
    const slice_saved *s = node->saved;
    mr_tensor *x = node->inputs[0];
    const mr_tensor *out = node->out;
    int64_t outer, inner;
    split_at(x, s->axis, &outer, &inner);
    int64_t len = out->shape[s->axis] * inner;
    for (int64_t o = 0; o < outer; o++) {
        float *dst = x->grad + (o * x->shape[s->axis] + s->start) * inner;
        const float *src = out->grad + o * len;
        for (int64_t i = 0; i < len; i++) dst[i] += src[i];
    }
}

mr_tensor *mr_slice(mr_ctx *ctx, mr_tensor *x, int axis, int64_t start, int64_t len) {
    if (!x || ctx->status != MR_OK) return NULL;
    MR_REQUIRE(axis >= 0 && axis < x->ndim && start >= 0 && len >= 0 &&
                   start + len <= x->shape[axis],
               "slice: [%lld, %lld) of axis %d of %s", (long long)start, (long long)(start + len),
               axis, x->name);
    int64_t shape[MR_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[axis] = len;
    mr_tensor *out = mr_tensor_new(ctx, "slice", x->ndim, shape);
    if (!out) return NULL;
    int64_t outer, inner;
    split_at(x, axis, &outer, &inner);
    for (int64_t o = 0; o < outer; o++)
        memcpy(out->data + o * len * inner, x->data + (o * x->shape[axis] + start) * inner,
               (size_t)(len * inner) * sizeof(float));
    mr_node *node = mr_record(ctx, MR_OP_SLICE, out, &x, 1, slice_backward);
    if (node) {
        slice_saved *s = mr_alloc(ctx, sizeof *s, "slice");
        if (!s) return NULL;
        *s = (slice_saved){axis, start};
        node->saved = s;
    }
    return out;
}

typedef struct {
    int64_t *index;
} gather_saved;

/* Serial on purpose: repeated indices add up with no race, and the rows are few (sampled
 * anchors and ROIs). */
static void gather_rows_backward(mr_node *node) {
    mr_tensor *x = node->inputs[0];
    const mr_tensor *out = node->out;
    const int64_t *index = ((gather_saved *)node->saved)->index;
    int64_t n = out->shape[0], cols = out->numel / (n ? n : 1);
    for (int64_t i = 0; i < n; i++) {
        float *dst = x->grad + index[i] * cols;
        const float *src = out->grad + i * cols;
        for (int64_t c = 0; c < cols; c++) dst[c] += src[c];
    }
}

mr_tensor *mr_gather_rows(mr_ctx *ctx, mr_tensor *x, const int64_t *index, int64_t n) {
    if (!x || ctx->status != MR_OK) return NULL;
    int64_t rows = x->shape[0], cols = x->numel / (rows ? rows : 1);
    for (int64_t i = 0; i < n; i++)
        MR_REQUIRE(index[i] >= 0 && index[i] < rows,
                   "gather_rows: index %lld outside %s's %lld rows", (long long)index[i], x->name,
                   (long long)rows);
    int64_t shape[MR_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[0] = n;
    mr_tensor *out = mr_tensor_new(ctx, "gather_rows", x->ndim, shape);
    if (!out) return NULL;
    for (int64_t i = 0; i < n; i++)
        memcpy(out->data + i * cols, x->data + index[i] * cols, (size_t)cols * sizeof(float));
    mr_node *node = mr_record(ctx, MR_OP_GATHER_ROWS, out, &x, 1, gather_rows_backward);
    if (node) {
        gather_saved *s = mr_alloc(ctx, sizeof *s, "gather_rows");
        int64_t *copy = mr_alloc(ctx, (size_t)(n ? n : 1) * sizeof(int64_t), "gather_rows");
        if (!s || !copy) return NULL;
        memcpy(copy, index, (size_t)n * sizeof(int64_t));
        s->index = copy;
        node->saved = s;
    }
    return out;
}

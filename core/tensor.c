/* The arena, the per-op scratch slots, tensor construction, the tape (recording and the reverse
 * walk) and the op-name table. Ops themselves live in core/op_*.c, forward and backward side by
 * side. */
#include "tensor.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "log.h"
#include "profile.h"
#include "util.h"

static const char *const op_names[] = {
#define MR_OP_NAME(id, name) name,
    MR_OP_LIST(MR_OP_NAME)
#undef MR_OP_NAME
};

const char *mr_op_name(mr_op_id op) {
    return op >= 0 && op < MR_OP_COUNT ? op_names[op] : "?";
}

mr_status mr_ctx_init(mr_ctx *ctx, size_t arena_bytes) {
    memset(ctx, 0, sizeof *ctx);
    size_t bytes = (arena_bytes + 63) / 64 * 64;
    /* Both blocks are only reserved here: the system backs the pages when they are first
     * written, so the resident size follows what a step really uses. */
    ctx->arena.base = aligned_alloc(64, bytes);
    ctx->grads.base = aligned_alloc(64, bytes);
    if (!ctx->arena.base || !ctx->grads.base) {
        free(ctx->arena.base);
        free(ctx->grads.base);
        memset(ctx, 0, sizeof *ctx);
        return mr_fail(MR_ERR_NOMEM, "cannot reserve a %.1f MiB step arena",
                       (double)arena_bytes / (1024.0 * 1024.0));
    }
    ctx->arena.capacity = ctx->grads.capacity = bytes;
    ctx->recording = true;
    return MR_OK;
}

void mr_ctx_free(mr_ctx *ctx) {
    free(ctx->arena.base);
    free(ctx->grads.base);
    free(ctx->grads.free);
    free(ctx->tape.nodes);
    for (int i = 0; i < MR_SCRATCH_SLOTS; i++) free(ctx->scratch[i]);
    for (size_t i = 0; i < ctx->n_kept; i++) free(ctx->kept[i].data);
    free(ctx->kept);
    memset(ctx, 0, sizeof *ctx);
}

float *mr_conv_scratch(mr_ctx *ctx, int slot, int64_t floats) {
    if ((size_t)floats > ctx->scratch_floats[slot]) {
        /* On a 64-byte boundary, as the arena's tensors: vector loads then never straddle two
         * cache lines (realloc gives 16 bytes past a page for large blocks). */
        float *grown = aligned_alloc(64, ((size_t)floats * sizeof(float) + 63) / 64 * 64);
        if (!grown) {
            ctx->status =
                mr_fail(MR_ERR_NOMEM, "cannot grow the convolution workspace to %lld floats",
                        (long long)floats);
            return NULL;
        }
        if (ctx->scratch[slot])
            memcpy(grown, ctx->scratch[slot], ctx->scratch_floats[slot] * sizeof(float));
        free(ctx->scratch[slot]);
        ctx->scratch[slot] = grown;
        ctx->scratch_floats[slot] = (size_t)floats;
    }
    return ctx->scratch[slot];
}

/* Below this, the bf16 product is slower beyond the probe's noise. */
#define BF16_SLOWER 0.9

void mr_ctx_keep_kernels(mr_ctx *ctx) {
    ctx->keep_kernels = true;
}

mr_status mr_ctx_use_bf16(mr_ctx *ctx) {
    if (!mr_bf16_supported())
        return mr_fail(MR_ERR_ARG, "bf16 inference needs a CPU with AVX-512 BF16 (this one has "
                                   "none); leave the option out to run in float32");
    ctx->bf16 = ctx->keep_kernels = true;
    /* Asked for speed: say so, once, where the CPU's bfloat16 products are the slower ones. */
    static bool told;
    const double speedup = mr_bf16_speedup();
    if (!told && speedup > 0.0 && speedup < BF16_SLOWER) {
        told = true;
        mr_warn("bf16 inference: this CPU multiplies bfloat16 at %.2fx float32's speed, so it "
                "runs slower and less exactly than without the option",
                speedup);
    }
    return MR_OK;
}

const mr_kept_kernel *mr_kept_find(const mr_ctx *ctx, const void *key, mr_kept_kind kind) {
    for (size_t i = 0; ctx->keep_kernels && i < ctx->n_kept; i++)
        if (ctx->kept[i].key == key && ctx->kept[i].kind == kind) return &ctx->kept[i];
    return NULL;
}

void *mr_kept_new(mr_ctx *ctx, const void *key, mr_kept_kind kind, size_t bytes) {
    MR_REQUIRE(ctx->keep_kernels && !mr_kept_find(ctx, key, kind),
               "mr_kept_new: the context keeps no kernels, or keeps this one already");
    void *data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!data ||
        !mr_grow(&ctx->kept, &ctx->kept_capacity, ctx->n_kept + 1, sizeof *ctx->kept, 64)) {
        free(data);
        ctx->status = mr_fail(MR_ERR_NOMEM, "out of memory keeping a layer's kernel (%.1f MB)",
                              (double)bytes / 1e6);
        return NULL;
    }
    ctx->kept[ctx->n_kept++] = (mr_kept_kernel){key, kind, data, bytes};
    return data;
}

const mr_kept_kernel *mr_packed_rows(mr_ctx *ctx, const void *key, int64_t K, int64_t N,
                                     const float *w, int64_t ldw) {
    if (!ctx->bf16) return NULL;
    const mr_kept_kernel *kept = mr_kept_find(ctx, key, MR_KEPT_BF16);
    if (kept) return kept;
    MR_REQUIRE(w, "mr_packed_rows: no kernel to pack");
    const size_t bytes = mr_bf16_packed_words(K, N) * sizeof(uint32_t);
    uint32_t *data = mr_kept_new(ctx, key, MR_KEPT_BF16, bytes);
    if (!data) return NULL;
    mr_bf16_pack(K, N, w, ldw, data);
    return &ctx->kept[ctx->n_kept - 1];
}

void mr_forward_product(mr_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *x, int64_t ldx,
                        const float *w, int64_t ldw, const mr_kept_kernel *packed,
                        const float *bias, bool relu, float *y, int64_t ldy) {
    if (!packed) {
        mr_sgemm_bias(M, N, K, x, ldx, w, ldw, bias, relu, y, ldy);
        return;
    }
    MR_REQUIRE(!ctx->recording && !omp_in_parallel(),
               "bfloat16 products are for inference, outside parallel regions");
    /* Sized here, for the threads of now: the workspace slot only grows. */
    int64_t floats = (int64_t)(mr_sgemm_bf16_workspace() / sizeof(float)) * omp_get_max_threads();
    float *work = mr_conv_scratch(ctx, MR_SCRATCH_BF16, floats);
    if (!work) return;
    if (bias)
#pragma omp parallel for schedule(static)
        for (int64_t m = 0; m < M; m++) memcpy(y + m * ldy, bias, (size_t)N * sizeof(float));
    mr_sgemm_bf16(M, N, K, x, ldx, (const uint32_t *)packed->data, bias ? 1.0f : 0.0f, y, ldy,
                  work);
    if (relu)
#pragma omp parallel for schedule(static)
        for (int64_t m = 0; m < M; m++) mr_relu_floats(y + m * ldy, N);
}

void mr_ctx_reset(mr_ctx *ctx) {
    ctx->arena.used = 0;
    ctx->in_scratch = false;
    ctx->grads.top = 0;
    ctx->grads.n_free = 0;
    ctx->tape.count = 0;
    ctx->status = MR_OK;
    ctx->recording = true;
}

bool mr_no_grad_begin(mr_ctx *ctx) {
    bool previous = ctx->recording;
    ctx->recording = false;
    return previous;
}

void mr_no_grad_end(mr_ctx *ctx, bool previous) {
    ctx->recording = previous;
}

void mr_scratch_begin(mr_ctx *ctx) {
    MR_REQUIRE(!ctx->in_scratch, "scratch scopes do not nest");
    ctx->in_scratch = true;
    ctx->scratch_mark = ctx->arena.used;
}

mr_tensor *mr_scratch_end(mr_ctx *ctx, mr_tensor *keep) {
    MR_REQUIRE(ctx->in_scratch, "mr_scratch_end without mr_scratch_begin");
    ctx->in_scratch = false;
    if (!keep || ctx->status != MR_OK) return NULL;
    /* Everything after the mark is dead but `keep`, which lies after the mark too: move it down
     * and rewind the arena to just past it. */
    mr_tensor header = *keep;
    ctx->arena.used = ctx->scratch_mark;
    mr_tensor *t = mr_alloc(ctx, sizeof *t, keep->name);
    size_t bytes = (size_t)header.numel * sizeof(float);
    float *data = mr_alloc(ctx, bytes, keep->name);
    if (!t || !data) return NULL;
    /* Apart, the usual case (the scope's temporaries outweigh what it keeps), the threads share
     * the copy; overlapping, one memmove. */
    if ((const char *)header.data - (const char *)data >= (ptrdiff_t)bytes)
        mr_copy_floats(data, header.data, header.numel);
    else
        memmove(data, header.data, bytes);
    *t = header;
    t->data = data;
    return t;
}

void *mr_alloc(mr_ctx *ctx, size_t bytes, const char *op) {
    if (ctx->status != MR_OK) return NULL;
    size_t aligned = (bytes + 63) / 64 * 64;
    mr_arena *a = &ctx->arena;
    if (aligned > a->capacity - a->used) {
        ctx->status = mr_fail(MR_ERR_NOMEM,
                              "step arena exhausted in op '%s': asked %zu bytes with %zu of %zu "
                              "used; raise ARENA_MB in the config or lower the image size",
                              op, bytes, a->used, a->capacity);
        return NULL;
    }
    void *p = a->base + a->used;
    a->used += aligned;
    if (a->used > a->high_water) a->high_water = a->used;
    return p;
}

mr_tensor *mr_tensor_new(mr_ctx *ctx, const char *name, int ndim, const int64_t *shape) {
    MR_REQUIRE(ndim >= 1 && ndim <= MR_MAX_DIMS, "tensor '%s' with %d dims", name, ndim);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        MR_REQUIRE(shape[i] >= 0, "tensor '%s' with negative dim %lld", name, (long long)shape[i]);
        numel *= shape[i];
    }
    mr_tensor *t = mr_alloc(ctx, sizeof *t, name);
    float *data = mr_alloc(ctx, (size_t)numel * sizeof(float), name);
    if (!t || !data) return NULL;
    memset(t, 0, sizeof *t);
    t->data = data;
    t->ndim = ndim;
    t->numel = numel;
    t->name = name;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    return t;
}

mr_tensor *mr_tensor_4d(mr_ctx *ctx, const char *name, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t s[4] = {a, b, c, d};
    return mr_tensor_new(ctx, name, 4, s);
}

mr_tensor *mr_tensor_2d(mr_ctx *ctx, const char *name, int64_t a, int64_t b) {
    int64_t s[2] = {a, b};
    return mr_tensor_new(ctx, name, 2, s);
}

mr_tensor *mr_tensor_1d(mr_ctx *ctx, const char *name, int64_t a) {
    return mr_tensor_new(ctx, name, 1, &a);
}

bool mr_same_shape(const mr_tensor *a, const mr_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *mr_shape_str(const mr_tensor *t, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "(");
    for (int i = 0; i < t->ndim && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)t->shape[i]);
    if (n < size) snprintf(buf + n, size - n, ")");
    return buf;
}

mr_node *mr_record(mr_ctx *ctx, mr_op_id op, mr_tensor *out, mr_tensor *const *inputs, int n_inputs,
                   mr_backward_fn backward) {
    MR_REQUIRE(n_inputs <= MR_MAX_INPUTS, "op %s with %d inputs", mr_op_name(op), n_inputs);
    if (!ctx->recording || !out) return NULL;
    unsigned needs = 0;
    for (int i = 0; i < n_inputs; i++)
        if (inputs[i] && inputs[i]->requires_grad) needs |= 1u << i;
    if (!needs) return NULL;
    MR_REQUIRE(!ctx->in_scratch, "op %s would record inside a scratch scope", mr_op_name(op));
    /* Training there would leave the kept kernels behind the weights. */
    MR_REQUIRE(!ctx->keep_kernels, "op %s would record in a context that keeps kernels",
               mr_op_name(op));
    mr_tape *tape = &ctx->tape;
    if (!mr_grow(&tape->nodes, &tape->capacity, (size_t)tape->count + 1, sizeof *tape->nodes,
                 1024)) {
        ctx->status = mr_fail(MR_ERR_NOMEM, "cannot grow the tape to %zu nodes in op '%s'",
                              tape->capacity ? 2 * tape->capacity : 1024, mr_op_name(op));
        return NULL;
    }
    mr_node *node = &tape->nodes[tape->count++];
    memset(node, 0, sizeof *node);
    node->ctx = ctx;
    node->op = op;
    node->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) node->inputs[i] = inputs[i];
    node->needs_grad = needs;
    node->out = out;
    node->backward = backward;
    node->grad_heir = -1;
    node->group = mr_profile_group();
    out->requires_grad = true;
    return node;
}

static size_t pool_size(const mr_tensor *t) {
    return ((size_t)t->numel * sizeof(float) + 63) / 64 * 64;
}

/* First fit over the free spans, else from the top. */
static void *pool_alloc(mr_ctx *ctx, size_t size, const char *name) {
    mr_pool *p = &ctx->grads;
    for (int i = 0; i < p->n_free; i++) {
        mr_span *f = &p->free[i];
        if (f->size < size) continue;
        void *at = p->base + f->offset;
        f->offset += size;
        f->size -= size;
        if (f->size == 0) {
            memmove(f, f + 1, sizeof *f * (size_t)(p->n_free - i - 1));
            p->n_free--;
        }
        return at;
    }
    if (size > p->capacity - p->top) {
        ctx->status = mr_fail(MR_ERR_NOMEM,
                              "gradient memory exhausted for '%s': asked %zu bytes with %zu of "
                              "%zu in use; raise ARENA_MB in the config or lower the image size",
                              name, size, p->top, p->capacity);
        return NULL;
    }
    void *at = p->base + p->top;
    p->top += size;
    if (p->top > p->high_water) p->high_water = p->top;
    return at;
}

static void pool_release(mr_ctx *ctx, void *ptr, size_t size) {
    mr_pool *p = &ctx->grads;
    size_t offset = (size_t)((char *)ptr - p->base);
    int i = 0;
    while (i < p->n_free && p->free[i].offset < offset) i++;
    bool joins_prev = i > 0 && p->free[i - 1].offset + p->free[i - 1].size == offset;
    bool joins_next = i < p->n_free && offset + size == p->free[i].offset;
    if (joins_prev && joins_next) {
        p->free[i - 1].size += size + p->free[i].size;
        memmove(&p->free[i], &p->free[i + 1], sizeof *p->free * (size_t)(p->n_free - i - 1));
        p->n_free--;
    } else if (joins_prev) {
        p->free[i - 1].size += size;
    } else if (joins_next) {
        p->free[i].offset = offset;
        p->free[i].size += size;
    } else {
        if (!mr_grow(&p->free, &p->cap_free, (size_t)p->n_free + 1, sizeof *p->free, 256))
            return; /* the span stays unused until the step ends */
        memmove(&p->free[i + 1], &p->free[i], sizeof *p->free * (size_t)(p->n_free - i));
        p->free[i] = (mr_span){offset, size};
        p->n_free++;
    }
    /* A free span that reaches the top gives its memory back to the top. */
    if (p->n_free && p->free[p->n_free - 1].offset + p->free[p->n_free - 1].size == p->top) {
        p->top = p->free[p->n_free - 1].offset;
        p->n_free--;
    }
}

/* The gradient buffer of a tensor that backward is about to accumulate into (zeroed on first
 * use). NULL only when the arena is exhausted. */
static float *grad_of(mr_ctx *ctx, mr_tensor *t) {
    if (!t->grad) {
        MR_REQUIRE(!t->is_param, "parameter '%s' has no gradient buffer", t->name);
        if (ctx->status != MR_OK) return NULL;
        t->grad = pool_alloc(ctx, pool_size(t), t->name);
        if (t->grad) mr_zero_floats(t->grad, t->numel);
    }
    return t->grad;
}

mr_status mr_backward_seeded(mr_ctx *ctx, mr_tensor *out, const float *seed) {
    if (ctx->status != MR_OK) return ctx->status;
    if (!out->requires_grad)
        return mr_fail(MR_ERR_ARG,
                       "backward from '%s', which depends on no trainable parameter "
                       "(all frozen, or computed in a no-grad scope)",
                       out->name);
    mr_tape *tape = &ctx->tape;
    /* Intermediate gradients are released as backward passes them, so a second backward over
     * the same tape starts from zero and adds exactly one more copy to the parameters. Leaves
     * that are not parameters (inputs marked requires_grad) keep theirs. */
    float *g = grad_of(ctx, out);
    if (!g) return ctx->status;
    memcpy(g, seed, (size_t)out->numel * sizeof(float));
    mr_profile_backward(true);
    mr_group group = mr_profile_group();
    mr_status st = MR_OK;
    for (int i = tape->count - 1; i >= 0 && st == MR_OK; i--) {
        mr_node *node = &tape->nodes[i];
        if (!node->out->grad) continue; /* not on a path to `out` */
        mr_profile_enter((mr_group)node->group);
        /* The heir inherits the buffer only while no other consumer has given it a gradient:
         * the buffer then holds exactly what it would have been added to a zeroed one. */
        int heir = node->grad_heir;
        if (heir >= 0) {
            mr_tensor *in = node->inputs[heir];
            if ((node->needs_grad >> heir & 1u) && !in->grad && !in->is_param &&
                in->numel == node->out->numel)
                in->grad = node->out->grad;
            else
                node->grad_heir = -1;
        }
        for (int k = 0; k < node->n_inputs && st == MR_OK; k++)
            if ((node->needs_grad >> k & 1u) && !grad_of(ctx, node->inputs[k])) st = ctx->status;
        if (st != MR_OK) break;
        node->backward(node);
        if ((st = ctx->status) != MR_OK) break;
        if (ctx->after_backward_node) ctx->after_backward_node(ctx->after_backward_user, i);
        /* Every consumer of this output ran before its producer: its gradient is dead (or now
         * belongs to the heir). */
        if (node->grad_heir < 0) pool_release(ctx, node->out->grad, pool_size(node->out));
        node->out->grad = NULL;
    }
    mr_profile_backward(false);
    mr_profile_enter(group);
    return st;
}

mr_status mr_backward(mr_ctx *ctx, mr_tensor *loss) {
    MR_REQUIRE(loss->numel == 1, "backward from '%s' with %lld elements; losses are scalars",
               loss->name, (long long)loss->numel);
    const float one = 1.0f;
    return mr_backward_seeded(ctx, loss, &one);
}

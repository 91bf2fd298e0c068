/* Tensors, the per-step arena they live in, and the tape that records ops for backward.
 * Layout is NHWC everywhere (as Matterport/TensorFlow), conv kernels HWIO, dense kernels
 * (in, out). A context owns one arena and one tape; both are reset at the start of a step. */
#ifndef MR_TENSOR_H
#define MR_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define MR_MAX_DIMS   4
#define MR_MAX_INPUTS 5

typedef struct mr_tensor {
    float *data; /* values, row-major over shape */
    float *grad; /* same size; allocated when backward first reaches the tensor */
    int64_t shape[MR_MAX_DIMS];
    int ndim;
    int64_t numel;
    const char *name;   /* static or arena string; for messages and dumps */
    bool requires_grad; /* parameters that are not frozen, and op outputs that depend on them */
    bool is_param;      /* grad lives in the parameter registry and outlives the step */
} mr_tensor;

/* Per-step memory: one block, bump allocation, reset each step. */
typedef struct {
    char *base;
    size_t capacity, used, high_water;
} mr_arena;

/* Gradients of intermediate tensors: a block with a free list, because a gradient is dead as
 * soon as the op that produced its tensor has run backward. Keeping only the live ones makes the
 * backward pass need a fraction of the forward pass's memory. */
typedef struct {
    size_t offset, size;
} mr_span;

typedef struct {
    char *base;
    size_t capacity, top, high_water;
    mr_span *free; /* free spans below top, sorted by offset, never adjacent */
    int n_free;
    size_t cap_free;
} mr_pool;

/* Every differentiable op; tests/test_gradcheck.c fails when one lacks a gradient check. */
#define MR_OP_LIST(X)                                                                              \
    X(CONV2D, "conv2d")                                                                            \
    X(CONV2D_BN, "conv2d_bn")                                                                      \
    X(DECONV2X2, "deconv2x2")                                                                      \
    X(BATCHNORM_FROZEN, "batchnorm_frozen")                                                        \
    X(BATCHNORM_BATCH, "batchnorm_batch")                                                          \
    X(RELU, "relu")                                                                                \
    X(SIGMOID, "sigmoid")                                                                          \
    X(ADD, "add")                                                                                  \
    X(ADD_RELU, "add_relu")                                                                        \
    X(MAXPOOL, "maxpool")                                                                          \
    X(UPSAMPLE2X_ADD, "upsample2x_add")                                                            \
    X(LINEAR, "linear")                                                                            \
    X(RESHAPE, "reshape")                                                                          \
    X(CONCAT, "concat")                                                                            \
    X(SLICE, "slice")                                                                              \
    X(GATHER_ROWS, "gather_rows")                                                                  \
    X(SOFTMAX_XENT, "softmax_xent")                                                                \
    X(SIGMOID_BCE, "sigmoid_bce")                                                                  \
    X(SMOOTH_L1, "smooth_l1")                                                                      \
    X(ROI_ALIGN, "roi_align")

typedef enum {
#define MR_OP_ENUM(id, name) MR_OP_##id,
    MR_OP_LIST(MR_OP_ENUM)
#undef MR_OP_ENUM
        MR_OP_COUNT
} mr_op_id;

const char *mr_op_name(mr_op_id op);

struct mr_node;
typedef void (*mr_backward_fn)(struct mr_node *node);

/* One recorded op: its inputs (which of them need a gradient), its output, and the op's own
 * saved context (a struct the op's file defines, allocated in the arena). */
typedef struct mr_node {
    struct mr_ctx *ctx;
    mr_op_id op;
    mr_tensor *inputs[MR_MAX_INPUTS];
    int n_inputs;
    unsigned needs_grad; /* bit i set: inputs[i] receives a gradient */
    mr_tensor *out;
    void *saved;
    mr_backward_fn backward;
    /* Input that may inherit the output's gradient buffer instead of getting a zeroed one of its
     * own (element-wise ops whose backward can work in place), or -1. Backward runs with it
     * still set only when the inheritance happened; the op then updates that gradient in place
     * rather than adding to it. */
    int grad_heir;
    int group; /* the mr_group it was recorded in (core/profile.h), where backward charges it */
} mr_node;

typedef struct {
    mr_node *nodes;
    int count;
    size_t capacity;
} mr_tape;

/* Per-op workspaces that grow and never shrink: the convolution algorithms' buffers, a
 * BN-folded kernel with its gradient (used while the algorithms' buffer is busy), and the
 * per-thread workspace of bfloat16 products. */
enum { MR_SCRATCH_CONV, MR_SCRATCH_FOLD, MR_SCRATCH_BF16, MR_SCRATCH_SLOTS };

/* How conv2d computes a 3x3 stride-1 convolution. AUTO picks by shape; tests force each path. */
typedef enum {
    MR_CONV_AUTO,
    MR_CONV_IM2COL,
    MR_CONV_WINOGRAD_F4, /* Winograd F(4x4, 3x3) */
    MR_CONV_WINOGRAD_F6  /* Winograd F(6x6, 3x3) */
} mr_conv_algo;

typedef struct mr_ctx {
    mr_arena arena;
    size_t scratch_mark; /* arena offset where the open scratch scope began */
    bool in_scratch;
    mr_pool grads;
    mr_tape tape;
    bool recording;   /* false inside a no-grad scope */
    mr_status status; /* sticky: the first failure of the step; later ops return NULL */
    float *scratch[MR_SCRATCH_SLOTS];
    size_t scratch_floats[MR_SCRATCH_SLOTS];
    mr_conv_algo conv_algo;
    bool keep_kernels; /* the weights stay fixed: mr_ctx_keep_kernels */
    bool bf16;         /* forward products in bfloat16 (inference only): mr_ctx_use_bf16 */
    struct mr_kept_kernel *kept;
    size_t n_kept, kept_capacity;
    /* Called after each node's backward with its tape index, NULL: nothing. Data-parallel
     * training starts the all-reduce of gradients that are complete (train/trainer.c). */
    void (*after_backward_node)(void *user, int node);
    void *after_backward_user;
} mr_ctx;

mr_status mr_ctx_init(mr_ctx *ctx, size_t arena_bytes);
void mr_ctx_free(mr_ctx *ctx);
/* Forget every tensor and node of the step; parameters are untouched. */
void mr_ctx_reset(mr_ctx *ctx);
/* A per-op workspace slot of ctx (MR_SCRATCH_*), grown to at least `floats`; NULL with the
 * status set when memory runs out. Used by the convolution paths (op_conv.c, winograd.c). */
float *mr_conv_scratch(mr_ctx *ctx, int slot, int64_t floats);

/* ---- inference sessions: kernels kept across images ------------------------------------ */

/* Declares the model's weights fixed for as long as ctx lives, as in predict and evaluate: each
 * convolution then keeps what it derives from its kernel at the first image (Winograd's
 * transformed kernel, core/winograd.c; a bf16 context's packed kernel) and reuses it on the next,
 * where a training context derives it again every step. The kept kernels stay until
 * mr_ctx_free: 210 MB for ResNet-50 at 512 in float32. Such a context records no gradients (a
 * node recorded there is a bug and panics). */
void mr_ctx_keep_kernels(mr_ctx *ctx);

/* From now on the forward products of convolutions (but Winograd's, core/winograd.c) and dense
 * layers round their inputs to bfloat16 (core/blas.h), for inference; the context keeps its
 * kernels (mr_ctx_keep_kernels), packed. MR_ERR_ARG when this CPU has no AVX-512 BF16; one
 * warning a process where its bf16 products are slower than float32's (mr_bf16_speedup: Intel's
 * AVX-512 cores). */
mr_status mr_ctx_use_bf16(mr_ctx *ctx);

/* What a kept kernel was derived as. */
typedef enum {
    MR_KEPT_BF16,               /* packed for the bfloat16 product (uint32_t words) */
    MR_KEPT_WINOGRAD_F4,        /* Winograd F(4x4, 3x3)'s transformed kernel (floats) */
    MR_KEPT_WINOGRAD_F6,        /* Winograd F(6x6, 3x3)'s */
    MR_KEPT_WINOGRAD_F4_PANELS, /* the same in panels for mr_panel_product (core/blas.h) */
    MR_KEPT_WINOGRAD_F6_PANELS
} mr_kept_kind;

/* A layer's kernel as a context keeps it, under the layer's kernel tensor. */
typedef struct mr_kept_kernel {
    const void *key;
    mr_kept_kind kind;
    void *data;
    size_t bytes;
} mr_kept_kernel;

/* The kernel kept under (key, kind); NULL when the context keeps no kernels or has not derived
 * this one yet. The pointer lasts until the next mr_kept_new; its data until mr_ctx_free. */
const mr_kept_kernel *mr_kept_find(const mr_ctx *ctx, const void *key, mr_kept_kind kind);
/* `bytes` of memory kept under (key, kind) for the caller to fill now; NULL with the status set
 * when memory runs out. Only in a context that keeps kernels, for a pair not kept yet. */
void *mr_kept_new(mr_ctx *ctx, const void *key, mr_kept_kind kind, size_t bytes);

/* The layer's bf16-packed kernel: kept, else w (K x N, rows ldw apart) packed now and kept under
 * `key`; NULL in a float context, and with the status set when memory runs out. */
const mr_kept_kernel *mr_packed_rows(mr_ctx *ctx, const void *key, int64_t K, int64_t N,
                                     const float *w, int64_t ldw);

/* y (M,N) = x (M,K) @ w (K,N) + bias (N, or NULL) on every row, then max(0, y) with `relu`: the
 * forward product of convolutions and dense layers, in float; with `packed` instead of w when a
 * bf16 context gives one. */
void mr_forward_product(mr_ctx *ctx, int64_t M, int64_t N, int64_t K, const float *x, int64_t ldx,
                        const float *w, int64_t ldw, const mr_kept_kernel *packed,
                        const float *bias, bool relu, float *y, int64_t ldy);

/* No-grad scope: ops inside record nothing. Returns the previous state for the restore. */
bool mr_no_grad_begin(mr_ctx *ctx);
void mr_no_grad_end(mr_ctx *ctx, bool previous);

/* Scratch scope: mr_scratch_end rewinds the arena to where mr_scratch_begin found it, keeping
 * only `keep` (moved down to that point; the returned tensor), so the temporaries of work that
 * records nothing (frozen backbone stages, inference) do not stay for the whole step and later
 * tensors reuse their memory. Recording inside the scope is a caller bug. */
void mr_scratch_begin(mr_ctx *ctx);
mr_tensor *mr_scratch_end(mr_ctx *ctx, mr_tensor *keep);

/* Arena allocation; on exhaustion sets ctx->status with the op, bytes and capacity and returns
 * NULL. Memory is 64-byte aligned and not zeroed. */
void *mr_alloc(mr_ctx *ctx, size_t bytes, const char *op);

/* A new arena tensor of the given shape (ndim 1..4), values uninitialised. */
mr_tensor *mr_tensor_new(mr_ctx *ctx, const char *name, int ndim, const int64_t *shape);
mr_tensor *mr_tensor_4d(mr_ctx *ctx, const char *name, int64_t a, int64_t b, int64_t c, int64_t d);
mr_tensor *mr_tensor_2d(mr_ctx *ctx, const char *name, int64_t a, int64_t b);
mr_tensor *mr_tensor_1d(mr_ctx *ctx, const char *name, int64_t a);
bool mr_same_shape(const mr_tensor *a, const mr_tensor *b);
/* "(2,3,4,5)" into buf, for messages. */
const char *mr_shape_str(const mr_tensor *t, char *buf, size_t size);

/* Used by ops: true when the output should be recorded (recording on and an input needs a
 * gradient). Appends the node and marks the output as requiring a gradient. */
mr_node *mr_record(mr_ctx *ctx, mr_op_id op, mr_tensor *out, mr_tensor *const *inputs, int n_inputs,
                   mr_backward_fn backward);

/* Backward from a scalar loss (seed 1) or from any tensor with a given seed gradient
 * (same size as the tensor). Intermediate gradients are cleared first, parameter gradients
 * accumulate, so calling twice doubles them. */
mr_status mr_backward(mr_ctx *ctx, mr_tensor *loss);
mr_status mr_backward_seeded(mr_ctx *ctx, mr_tensor *out, const float *seed);

#endif

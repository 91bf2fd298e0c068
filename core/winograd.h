/* Winograd convolution for conv2d's 3x3 stride-1 path; internal to core/op_conv.c. */
#ifndef MR_WINOGRAD_H
#define MR_WINOGRAD_H

#include "tensor.h"

typedef struct {
    int64_t n, h, w, cin; /* input (N,H,W,Cin) */
    int64_t kh, kw, cout; /* kernel (KH,KW,Cin,Cout) */
    int64_t oh, ow;       /* output (N,OH,OW,Cout) */
    int64_t stride, pad_top, pad_left;
} mr_conv_geom;

/* True when conv2d should take the Winograd path for this geometry (3x3, stride 1, and big
 * enough to win, unless ctx->conv_algo forces a path). */
bool mr_winograd_suits(const mr_ctx *ctx, const mr_conv_geom *g);

/* y = conv(x, w) + b (b may be NULL), then max(0, y) with `relu`. A context that keeps kernels
 * (mr_ctx_keep_kernels) keeps w's transform under `layer` (the kernel tensor) at the first call
 * and uses it from then on, when w may be NULL. */
void mr_winograd_forward(mr_ctx *ctx, const mr_conv_geom *g, const float *x, const float *w,
                         const void *layer, const float *b, bool relu, float *y);

/* Whether ctx keeps the transform mr_winograd_forward would use for `layer` at this geometry. */
bool mr_winograd_kernel_kept(const mr_ctx *ctx, const mr_conv_geom *g, const void *layer);

/* dx and dw (either may be NULL) take the gradients for upstream dy: dx accumulates, dw
 * accumulates with dw_add and is overwritten without (a fresh buffer then needs no zeroing). */
void mr_winograd_backward(mr_ctx *ctx, const mr_conv_geom *g, const float *dy, const float *x,
                          const float *w, float *dx, float *dw, bool dw_add);

#endif

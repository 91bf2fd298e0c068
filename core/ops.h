/* The differentiable primitive ops. Each returns a new arena tensor (NULL once the step has
 * failed, so calls chain and the caller checks ctx->status once), and records a tape node when
 * an input needs a gradient. Shapes: images NHWC, conv kernels HWIO, dense kernels (in, out).
 * Forward and backward of each op live together in core/op_<family>.c. */
#ifndef MR_OPS_H
#define MR_OPS_H

#include "tensor.h"

/* Padding for conv2d and maxpool: MR_PAD_SAME is TensorFlow's "same" (the odd extra pixel
 * goes to the bottom/right), MR_PAD_VALID none; a value >= 0 pads that many zeros on every
 * side (Matterport's ZeroPadding2D(3) before conv1 is pad 3). */
#define MR_PAD_SAME  (-1)
#define MR_PAD_VALID 0

/* x (N,H,W,Cin), w (KH,KW,Cin,Cout), b (Cout) or NULL -> (N,OH,OW,Cout). */
mr_tensor *mr_conv2d(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride, int pad);
/* conv2d then a frozen batch norm (as mr_batchnorm_frozen), computed as one convolution: the BN
 * folded into kernel and bias, or (mr_conv2d_bn_relu, output smaller than the kernel) applied to
 * the output as the ReLU is; gradients reach x, w, b, gamma and beta. */
mr_tensor *mr_conv2d_bn(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride, int pad,
                        mr_tensor *gamma, mr_tensor *beta, const mr_tensor *moving_mean,
                        const mr_tensor *moving_var, float eps);
/* Transposed conv, kernel 2x2, stride 2, Keras kernel layout (2,2,Cout,Cin):
 * out[2y+i, 2x+j, o] = b[o] + sum_c x[y,x,c] * w[i,j,o,c]. */
mr_tensor *mr_deconv2x2(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b);
/* mr_relu_inplace of each of the three, with the ReLU applied as each block of the output is
 * made rather than in a pass of its own: the same values, and the tape records the same two
 * nodes, so the gradients are the same to the bit; except where conv2d_bn's output is smaller
 * than its kernel, when the BN is applied to the output rather than folded (the same values
 * to rounding). */
mr_tensor *mr_conv2d_relu(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride,
                          int pad);
mr_tensor *mr_conv2d_bn_relu(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b, int stride,
                             int pad, mr_tensor *gamma, mr_tensor *beta,
                             const mr_tensor *moving_mean, const mr_tensor *moving_var, float eps);
mr_tensor *mr_deconv2x2_relu(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b);

/* Batch norm over the last axis. Frozen: y = gamma (x - mean) / sqrt(var + eps) + beta with the
 * moving statistics (Matterport's TRAIN_BN=False). Batch: statistics of this batch over every
 * axis but the last; the moving statistics are updated with `momentum` (Keras: 0.99) when
 * `update_moving` is true. */
mr_tensor *mr_batchnorm_frozen(mr_ctx *ctx, mr_tensor *x, mr_tensor *gamma, mr_tensor *beta,
                               const mr_tensor *moving_mean, const mr_tensor *moving_var,
                               float eps);
mr_tensor *mr_batchnorm_batch(mr_ctx *ctx, mr_tensor *x, mr_tensor *gamma, mr_tensor *beta,
                              mr_tensor *moving_mean, mr_tensor *moving_var, float eps,
                              float momentum, bool update_moving);

mr_tensor *mr_relu(mr_ctx *ctx, mr_tensor *x);
/* ReLU written over its input's values (the result shares them). Only for an input whose values
 * nothing reads afterwards, forward or backward: batch norm and add outputs, conv outputs. */
mr_tensor *mr_relu_inplace(mr_ctx *ctx, mr_tensor *x);
/* mr_relu_inplace of an x whose values are rectified already (the fused ops above): the result
 * and its tape node without the pass. */
mr_tensor *mr_relu_rectified(mr_ctx *ctx, mr_tensor *x);
/* The logistic function, overflow-free for any input (also used by losses and inference). */
float mr_sigmoidf(float v);
mr_tensor *mr_sigmoid(mr_ctx *ctx, mr_tensor *x);
mr_tensor *mr_add(mr_ctx *ctx, mr_tensor *a, mr_tensor *b);
/* relu(a + b) written over a's values (the result shares them; the same rule as
 * mr_relu_inplace): the residual block's end in one pass. */
mr_tensor *mr_add_relu_inplace(mr_ctx *ctx, mr_tensor *a, mr_tensor *b);

/* Max pool over H and W of (N,H,W,C); padded cells never win. */
mr_tensor *mr_maxpool(mr_ctx *ctx, mr_tensor *x, int kernel, int stride, int pad);
/* base + nearest-neighbour x2 upsampling of x (each value repeated 2x2), written over base's
 * values (the result shares them; the same rule as mr_relu_inplace): the FPN's top-down step.
 * x (N,H,W,C), base (N,2H,2W,C). There is no separate upsampling op. */
mr_tensor *mr_upsample2x_add(mr_ctx *ctx, mr_tensor *x, mr_tensor *base);

/* x (N,In) @ w (In,Out) + b (Out) or NULL. */
mr_tensor *mr_linear(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b);

/* Same data, new shape (numel must match). */
mr_tensor *mr_reshape(mr_ctx *ctx, mr_tensor *x, int ndim, const int64_t *shape);
/* Concatenation of n tensors along `axis`; all other dims equal. */
mr_tensor *mr_concat(mr_ctx *ctx, mr_tensor *const *xs, int n, int axis);
/* [start, start+len) along `axis`. */
mr_tensor *mr_slice(mr_ctx *ctx, mr_tensor *x, int axis, int64_t start, int64_t len);
/* Rows of x viewed as (rows, cols): out[i] = x[index[i]]; indices may repeat. */
mr_tensor *mr_gather_rows(mr_ctx *ctx, mr_tensor *x, const int64_t *index, int64_t n);

/* Fused loss primitives; each returns a scalar. With no rows (or zero total weight) the
 * loss is 0 and its gradient 0, as Matterport's K.switch(size > 0, ..., 0).
 * softmax_xent: logits (N,C), integer targets in [0,C); row weights or NULL (all 1);
 * result sum_i w_i * CE_i / sum_i w_i. */
mr_tensor *mr_softmax_xent(mr_ctx *ctx, mr_tensor *logits, const int32_t *targets,
                           const float *row_weights);
/* Mean over all elements of the binary cross-entropy of sigmoid(logits) against targets in
 * [0,1] (same numel), computed stably from the logits. */
mr_tensor *mr_sigmoid_bce(mr_ctx *ctx, mr_tensor *logits, const float *targets);
/* Mean over all elements of smooth-L1(pred - target): 0.5 d^2 if |d| < 1 else |d| - 0.5. */
mr_tensor *mr_smooth_l1(mr_ctx *ctx, mr_tensor *pred, const float *targets);

#endif

/* Fully connected layer y = x W + b with Keras' (in, out) kernel layout, forward and backward. */
#include <string.h>

#include "blas.h"
#include "ops.h"

static void linear_backward(mr_node *node) {
    mr_tensor *x = node->inputs[0], *w = node->inputs[1], *b = node->inputs[2];
    int64_t n = x->shape[0], in = w->shape[0], out = w->shape[1];
    const float *dy = node->out->grad;
    if (node->needs_grad & 1u)
        mr_sgemm(false, true, n, in, out, 1.0f, dy, out, w->data, out, 1.0f, x->grad, in);
    if (node->needs_grad & 2u)
        mr_sgemm(true, false, in, out, n, 1.0f, x->data, in, dy, out, 1.0f, w->grad, out);
    if (b && (node->needs_grad & 4u))
        for (int64_t r = 0; r < n; r++)
            for (int64_t o = 0; o < out; o++) b->grad[o] += dy[r * out + o];
}

mr_tensor *mr_linear(mr_ctx *ctx, mr_tensor *x, mr_tensor *w, mr_tensor *b) {
    if (!x || !w || ctx->status != MR_OK) return NULL;
    char xs[64], ws[64];
    MR_REQUIRE(x->ndim == 2 && w->ndim == 2 && x->shape[1] == w->shape[0],
               "linear: input %s %s and kernel %s %s do not match ((N,In) @ (In,Out))", x->name,
               mr_shape_str(x, xs, sizeof xs), w->name, mr_shape_str(w, ws, sizeof ws));
    MR_REQUIRE(!b || b->numel == w->shape[1], "linear: bias %s size", b ? b->name : "");
    int64_t n = x->shape[0], in = w->shape[0], outc = w->shape[1];
    mr_tensor *out = mr_tensor_2d(ctx, "linear", n, outc);
    if (!out) return NULL;
    const mr_kept_kernel *packed = mr_packed_rows(ctx, w, in, outc, w->data, outc);
    if (ctx->status != MR_OK) return NULL;
    mr_forward_product(ctx, n, outc, in, x->data, in, w->data, outc, packed, b ? b->data : NULL,
                       false, out->data, outc);
    mr_tensor *inputs[3] = {x, w, b};
    mr_record(ctx, MR_OP_LINEAR, out, inputs, 3, linear_backward);
    return out;
}

/* Matterport's ResNet-50/101 backbone (resnet_graph): the stem and stages 2..5 of bottlenecks,
 * declared into the network table under Matterport's layer names, its typed handles, and its
 * forward pass to C2..C5. Owns nothing beyond its handle struct, which the model allocates. */
#include <stdio.h>

#include "network.h"

/* Blocks per stage (2..5); the handle struct holds the deepest listed ResNet's. */
static const int r50_blocks[4] = {3, 4, 6, 3}, r101_blocks[4] = {3, 4, 23, 3};
#define MAX_BLOCKS (3 + 4 + 23 + 3)

/* One bottleneck: 1x1, 3x3, 1x1 and, in a stage's first block, the projection. */
typedef struct {
    mr_conv_bn_w branch2a, branch2b, branch2c, branch1;
    int stride;
    bool projection;
} block_w;

typedef struct {
    mr_conv_bn_w conv1;         /* stem */
    block_w blocks[MAX_BLOCKS]; /* stages 2..5 one after the other */
    int stage_blocks[4];        /* of them in stages 2..5 */
} resnet_w;

/* ---- declaration -------------------------------------------------------------------------- */

static mr_conv_bn_w decl_branch(mr_builder *b, int stage, char block, const char *branch, int64_t k,
                                int64_t cin, int64_t cout, int64_t oh, int64_t ow) {
    char conv[48], bn[48];
    snprintf(conv, sizeof conv, "res%d%c_branch%s", stage, block, branch);
    snprintf(bn, sizeof bn, "bn%d%c_branch%s", stage, block, branch);
    return mr_net_decl_conv_bn(b, conv, bn, k, cin, cout, oh, ow, 1.0);
}

/* Matterport's identity_block / conv_block. Keras lists a conv_block's shortcut beside branch2c:
 * res_branch2c, res_branch1 (same depth), then bn_branch2c, bn_branch1. */
static block_w decl_bottleneck(mr_builder *b, int stage, char block, int64_t f1, int64_t f3,
                               int stride, bool projection) {
    block_w blk = {.stride = stride, .projection = projection};
    int64_t cin = b->c, oh = mr_net_same_size(b->h, stride), ow = mr_net_same_size(b->w, stride);
    /* With the stride on the 3x3, branch2a still runs at the input's resolution. */
    bool late = b->m->cfg.resnet_stride == MR_STRIDE_3X3;
    int64_t ah = late ? b->h : oh, aw = late ? b->w : ow;
    blk.branch2a = decl_branch(b, stage, block, "2a", 1, cin, f1, ah, aw);
    b->chain++; /* the ReLU */
    blk.branch2b = decl_branch(b, stage, block, "2b", 3, f1, f1, oh, ow);
    b->chain++;
    int chain_2c = b->chain;
    blk.branch2c = decl_branch(b, stage, block, "2c", 1, f1, f3, oh, ow);
    if (projection) {
        int after = b->chain;
        b->chain = chain_2c;
        blk.branch1 = decl_branch(b, stage, block, "1", 1, cin, f3, oh, ow);
        b->chain = after;
    }
    b->chain += 2; /* the add and its ReLU */
    b->h = oh;
    b->w = ow;
    b->c = f3;
    return blk;
}

/* Stem and stages 2..5 of a ResNet with `blocks` bottlenecks per stage. */
static mr_status declare(mr_builder *b, resnet_w *w, const int blocks[4], int64_t channels[4]) {
    const mr_net_config *c = &b->m->cfg;
    /* Stem: 3-pixel zero pad, conv1 7x7/2 valid, bn_conv1, ReLU, 3x3/2 max-pool same. */
    b->h = (b->h + 6 - 7) / 2 + 1;
    b->w = (b->w + 6 - 7) / 2 + 1;
    int64_t base = c->backbone_filters;
    b->stage = 1;
    b->rule = MR_KAIMING_NORMAL_FAN_OUT;
    w->conv1 =
        mr_net_decl_conv_bn(b, "conv1", "bn_conv1", 7, c->image_channels, base, b->h, b->w, 1.0);
    b->chain += 2;
    b->h = mr_net_same_size(b->h, 2);
    b->w = mr_net_same_size(b->w, 2);
    b->c = base;
    block_w *blk = w->blocks;
    for (int stage = 2; stage <= 5; stage++) {
        b->stage = stage;
        int64_t f1 = base << (stage - 2);
        w->stage_blocks[stage - 2] = blocks[stage - 2];
        for (int k = 0; k < blocks[stage - 2]; k++)
            *blk++ = decl_bottleneck(b, stage, (char)('a' + k), f1, 4 * f1,
                                     k == 0 && stage > 2 ? 2 : 1, k == 0);
        channels[stage - 2] = b->c;
    }
    return b->status;
}

static mr_status declare50(mr_builder *b, void *handles, int64_t channels[4]) {
    return declare(b, handles, r50_blocks, channels);
}

static mr_status declare101(mr_builder *b, void *handles, int64_t channels[4]) {
    return declare(b, handles, r101_blocks, channels);
}

static void resolve(mr_model *m, void *handles) {
    resnet_w *w = handles;
    mr_net_resolve_conv_bn(m, &w->conv1);
    int n_blocks = 0;
    for (int s = 0; s < 4; s++) n_blocks += w->stage_blocks[s];
    for (int i = 0; i < n_blocks; i++) {
        block_w *blk = &w->blocks[i];
        mr_net_resolve_conv_bn(m, &blk->branch2a);
        mr_net_resolve_conv_bn(m, &blk->branch2b);
        mr_net_resolve_conv_bn(m, &blk->branch2c);
        if (blk->projection) mr_net_resolve_conv_bn(m, &blk->branch1);
    }
}

/* ---- forward ------------------------------------------------------------------------------ */

static mr_tensor *bottleneck(mr_ctx *ctx, const mr_model *m, mr_tensor *x, const block_w *w) {
    const bool late = m->cfg.resnet_stride == MR_STRIDE_3X3;
    mr_tensor *y = mr_net_conv_bn_relu(ctx, m, x, &w->branch2a, late ? 1 : w->stride, MR_PAD_VALID);
    y = mr_net_conv_bn_relu(ctx, m, y, &w->branch2b, late ? w->stride : 1, MR_PAD_SAME);
    y = mr_net_conv_bn(ctx, m, y, &w->branch2c, 1, MR_PAD_VALID);
    mr_tensor *shortcut =
        w->projection ? mr_net_conv_bn(ctx, m, x, &w->branch1, w->stride, MR_PAD_VALID) : x;
    return mr_add_relu_inplace(ctx, y, shortcut);
}

/* A stage whose layers are all frozen runs in a scratch scope: only its output stays. */
static mr_status forward(mr_ctx *ctx, const mr_model *m, const void *handles, mr_tensor *images,
                         mr_tensor *c[4]) {
    const resnet_w *w = handles;
    bool scratch = mr_net_stage_records_nothing(ctx, m, 1, images);
    if (scratch) mr_scratch_begin(ctx);
    mr_tensor *x = mr_net_conv_bn_relu(ctx, m, images, &w->conv1, 2, 3);
    x = mr_maxpool(ctx, x, 3, 2, MR_PAD_SAME);
    if (scratch) x = mr_scratch_end(ctx, x);
    const block_w *blk = w->blocks;
    for (int stage = 2; stage <= 5 && x; stage++) {
        scratch = mr_net_stage_records_nothing(ctx, m, stage, x);
        if (scratch) mr_scratch_begin(ctx);
        for (int k = 0; k < w->stage_blocks[stage - 2]; k++) x = bottleneck(ctx, m, x, blk++);
        if (scratch) x = mr_scratch_end(ctx, x);
        c[stage - 2] = x;
    }
    return ctx->status;
}

const mr_backbone mr_backbone_resnet50 = {.name = "resnet50",
                                          .title = "ResNet-50",
                                          .handles_size = sizeof(resnet_w),
                                          .declare = declare50,
                                          .resolve = resolve,
                                          .forward = forward};

const mr_backbone mr_backbone_resnet101 = {.name = "resnet101",
                                           .title = "ResNet-101",
                                           .handles_size = sizeof(resnet_w),
                                           .declare = declare101,
                                           .resolve = resolve,
                                           .forward = forward};

/* The ONNX graph of the inference model (train/export_onnx.h), written as a ModelProto with
 * core/protobuf.h. One helper per node kind (conv, gather_nd, top_k, ...) appends a NodeProto
 * and returns its output's name; the network's sections (backbone from the network table, FPN,
 * RPN, proposal layer, ROI Align, heads, detection layer) are built from those. Nodes and
 * initializers are streamed into the GraphProto as they are made (protobuf merges repeated
 * fields in any order), so nothing but the output buffer is held.
 *
 * Layout: mrcnn is NHWC, ONNX's Conv is NCHW: the images are transposed once at the start and
 * every kernel is written OIHW. Batch: every step works on N images at once (NonMaxSuppression
 * takes a batch; per-image padded lists come from scattering the kept scores into a dense array
 * and TopK, whose ties go to the lower index, as mrcnn's sorts). */
#include "export_onnx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/file.h"
#include "../core/protobuf.h"
#include "../core/runtime.h"
#include "../layers/model.h"
#include "export.h"

/* ---- onnx.proto field numbers (ONNX specification, onnx/onnx.proto) ----------------------- */
enum {
    MODEL_IR_VERSION = 1,
    MODEL_PRODUCER_NAME = 2,
    MODEL_PRODUCER_VERSION = 3,
    MODEL_DOC_STRING = 6,
    MODEL_GRAPH = 7,
    MODEL_OPSET_IMPORT = 8,
    MODEL_METADATA_PROPS = 14,
    OPSET_DOMAIN = 1,
    OPSET_VERSION = 2,
    ENTRY_KEY = 1,
    ENTRY_VALUE = 2,
    GRAPH_NODE = 1,
    GRAPH_NAME = 2,
    GRAPH_INITIALIZER = 5,
    GRAPH_INPUT = 11,
    GRAPH_OUTPUT = 12,
    NODE_INPUT = 1,
    NODE_OUTPUT = 2,
    NODE_NAME = 3,
    NODE_OP_TYPE = 4,
    NODE_ATTRIBUTE = 5,
    ATTR_NAME = 1,
    ATTR_F = 2,
    ATTR_I = 3,
    ATTR_S = 4,
    ATTR_INTS = 8,
    ATTR_TYPE = 20,
    TENSOR_DIMS = 1,
    TENSOR_DATA_TYPE = 2,
    TENSOR_NAME = 8,
    TENSOR_RAW_DATA = 9,
    VALUE_NAME = 1,
    VALUE_TYPE = 2,
    TYPE_TENSOR = 1,
    TYPE_TENSOR_ELEM_TYPE = 1,
    TYPE_TENSOR_SHAPE = 2,
    SHAPE_DIM = 1,
    DIM_VALUE = 1,
    DIM_PARAM = 2,
};
/* AttributeProto.AttributeType and TensorProto.DataType values. */
enum { ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_STRING = 3, ATTR_INTS_TYPE = 7 };
enum { T_FLOAT = 1, T_INT64 = 7, T_BOOL = 9, T_FLOAT16 = 10, T_DOUBLE = 11 };

/* ---- the graph being written ------------------------------------------------------------- */

typedef struct {
    char s[96];
} vname; /* a value's name in the graph */

typedef struct {
    mr_pb pb;
    bool half;
    int next_id;
    int n_nodes, n_initializers;
    int64_t n_weights;
    mr_status status;
    vname *written; /* (n_layers, 2): a layer's kernel and bias once written (shared RPN) */
    vname canvas;   /* P2..P5 side by side for ROI Align, once made */
} graph;

static vname fresh(graph *g, const char *hint) {
    vname v;
    snprintf(v.s, sizeof v.s, "%s_%d", hint, g->next_id++);
    return v;
}

/* A node with n_in inputs and n_out outputs named after `hint`; attributes follow
 * (attr_* below), then node_end. */
static void node_begin(graph *g, const char *op, const vname *in, int n_in, vname *out, int n_out,
                       const char *hint) {
    mr_pb_begin(&g->pb, GRAPH_NODE);
    for (int i = 0; i < n_in; i++) mr_pb_string(&g->pb, NODE_INPUT, in[i].s);
    for (int i = 0; i < n_out; i++) {
        out[i] = fresh(g, hint);
        mr_pb_string(&g->pb, NODE_OUTPUT, out[i].s);
    }
    mr_pb_string(&g->pb, NODE_NAME, out[0].s);
    mr_pb_string(&g->pb, NODE_OP_TYPE, op);
    g->n_nodes++;
}

static void node_end(graph *g) {
    mr_pb_end(&g->pb);
}

static void attr_int(graph *g, const char *name, int64_t v) {
    mr_pb_begin(&g->pb, NODE_ATTRIBUTE);
    mr_pb_string(&g->pb, ATTR_NAME, name);
    mr_pb_int(&g->pb, ATTR_I, v);
    mr_pb_int(&g->pb, ATTR_TYPE, ATTR_INT);
    mr_pb_end(&g->pb);
}

static void attr_float(graph *g, const char *name, float v) {
    mr_pb_begin(&g->pb, NODE_ATTRIBUTE);
    mr_pb_string(&g->pb, ATTR_NAME, name);
    mr_pb_float(&g->pb, ATTR_F, v);
    mr_pb_int(&g->pb, ATTR_TYPE, ATTR_FLOAT);
    mr_pb_end(&g->pb);
}

static void attr_string(graph *g, const char *name, const char *v) {
    mr_pb_begin(&g->pb, NODE_ATTRIBUTE);
    mr_pb_string(&g->pb, ATTR_NAME, name);
    mr_pb_string(&g->pb, ATTR_S, v);
    mr_pb_int(&g->pb, ATTR_TYPE, ATTR_STRING);
    mr_pb_end(&g->pb);
}

static void attr_ints(graph *g, const char *name, const int64_t *v, int n) {
    mr_pb_begin(&g->pb, NODE_ATTRIBUTE);
    mr_pb_string(&g->pb, ATTR_NAME, name);
    mr_pb_packed_ints(&g->pb, ATTR_INTS, v, n);
    mr_pb_int(&g->pb, ATTR_TYPE, ATTR_INTS_TYPE);
    mr_pb_end(&g->pb);
}

/* A one-input, one-output node without attributes (Relu, Exp, Shape, ...). */
static vname op1(graph *g, const char *op, vname x) {
    vname y;
    node_begin(g, op, &x, 1, &y, 1, op);
    node_end(g);
    return y;
}

/* A two-input, one-output node without attributes (Add, Mul, Equal, ...). */
static vname op2(graph *g, const char *op, vname a, vname b) {
    vname in[2] = {a, b}, y;
    node_begin(g, op, in, 2, &y, 1, op);
    node_end(g);
    return y;
}

/* ---- initializers ------------------------------------------------------------------------ */

static void tensor_header(graph *g, const char *name, int type, const int64_t *dims, int ndim) {
    mr_pb_begin(&g->pb, GRAPH_INITIALIZER);
    mr_pb_packed_ints(&g->pb, TENSOR_DIMS, dims, ndim);
    mr_pb_int(&g->pb, TENSOR_DATA_TYPE, type);
    mr_pb_string(&g->pb, TENSOR_NAME, name);
    g->n_initializers++;
}

static int64_t dims_numel(const int64_t *dims, int ndim) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= dims[i];
    return n;
}

/* Raw little-endian data (the exporting machine is little-endian, as every target of mrcnn). */
static vname constant(graph *g, const char *hint, int type, const int64_t *dims, int ndim,
                      const void *data, size_t elem_size) {
    vname v = fresh(g, hint);
    tensor_header(g, v.s, type, dims, ndim);
    mr_pb_bytes(&g->pb, TENSOR_RAW_DATA, data, elem_size * (size_t)dims_numel(dims, ndim));
    mr_pb_end(&g->pb);
    return v;
}

static vname const_f32(graph *g, const char *hint, const float *v, const int64_t *dims, int ndim) {
    return constant(g, hint, T_FLOAT, dims, ndim, v, sizeof *v);
}

static vname const_i64(graph *g, const char *hint, const int64_t *v, int n) {
    int64_t dims[1] = {n};
    return constant(g, hint, T_INT64, dims, 1, v, sizeof *v);
}

static vname scalar_f32(graph *g, float v) {
    return constant(g, "c", T_FLOAT, NULL, 0, &v, sizeof v);
}

static vname scalar_f64(graph *g, double v) {
    return constant(g, "c", T_DOUBLE, NULL, 0, &v, sizeof v);
}

static vname scalar_i64(graph *g, int64_t v) {
    return constant(g, "c", T_INT64, NULL, 0, &v, sizeof v);
}

/* float -> IEEE half, round to nearest even (values already checked to be within range). */
static uint16_t float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u, exp = (x >> 23) & 0xffu, man = x & 0x7fffffu;
    if (exp == 0xffu) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* subnormal half (or zero) */
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000u;
        int shift = 14 - e;
        uint32_t half = man >> shift, rest = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rest > mid || (rest == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | (uint32_t)e << 10 | man >> 13, rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half++; /* may carry into exp */
    return (uint16_t)half;
}

/* A network weight under its parameter name: float32, or float16 plus a Cast to float32 (ONNX
 * Runtime's CPU Conv and Gemm run in float32). `values` are already in ONNX's layout. */
static vname weight(graph *g, const char *name, const float *values, const int64_t *dims,
                    int ndim) {
    int64_t n = dims_numel(dims, ndim);
    g->n_weights += n;
    vname v;
    snprintf(v.s, sizeof v.s, "%s", name);
    if (!g->half) {
        tensor_header(g, v.s, T_FLOAT, dims, ndim);
        mr_pb_bytes(&g->pb, TENSOR_RAW_DATA, values, (size_t)n * sizeof(float));
        mr_pb_end(&g->pb);
        return v;
    }
    uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    if (!h) {
        g->status = mr_fail(MR_ERR_NOMEM, "onnx: no memory for float16 %s", name);
        return v;
    }
    for (int64_t i = 0; i < n; i++) {
        if (!(fabsf(values[i]) <= 65504.0f) && g->status == MR_OK)
            g->status = mr_fail(MR_ERR_NUMERIC,
                                "onnx --fp16: %s holds %g at index %lld, beyond float16's range "
                                "(65504); export without --fp16",
                                name, (double)values[i], (long long)i);
        h[i] = float_to_half(values[i]);
    }
    snprintf(v.s, sizeof v.s, "%s_fp16", name);
    tensor_header(g, v.s, T_FLOAT16, dims, ndim);
    mr_pb_bytes(&g->pb, TENSOR_RAW_DATA, h, (size_t)n * sizeof *h);
    mr_pb_end(&g->pb);
    free(h);
    vname y;
    node_begin(g, "Cast", &v, 1, &y, 1, "fp32");
    attr_int(g, "to", T_FLOAT);
    node_end(g);
    return y;
}

static const mr_tensor *param(const mr_model *m, int layer, int k) {
    return &m->params.items[m->layers[layer].param[k]].t;
}

/* A conv or deconv kernel in ONNX's layout. Conv: HWIO -> OIHW. Deconv (Keras (kh, kw, out,
 * in)) -> ConvTranspose's (in, out, kh, kw). Dense kernels (in, out) are Gemm's B as they are.
 * `flat`: a conv kernel as (O, I * kh * kw), a Gemm's B^T over NCHW-flattened inputs. */
static vname kernel_weight_as(graph *g, const mr_model *m, int layer, bool flat) {
    if (g->written[2 * layer].s[0]) return g->written[2 * layer];
    const mr_tensor *k = param(m, layer, 0);
    const char *name = m->params.items[m->layers[layer].param[0]].name;
    if (k->ndim == 2) return g->written[2 * layer] = weight(g, name, k->data, k->shape, 2);
    int64_t kh = k->shape[0], kw = k->shape[1], a = k->shape[2], b = k->shape[3];
    float *t = malloc((size_t)k->numel * sizeof *t);
    if (!t) {
        g->status = mr_fail(MR_ERR_NOMEM, "onnx: no memory for %s", name);
        return (vname){""};
    }
    /* conv: a = in, b = out -> (b, a, kh, kw); deconv: a = out, b = in -> (b, a, kh, kw) too. */
    for (int64_t y = 0; y < kh; y++)
        for (int64_t x = 0; x < kw; x++)
            for (int64_t i = 0; i < a; i++)
                for (int64_t o = 0; o < b; o++)
                    t[((o * a + i) * kh + y) * kw + x] = k->data[((y * kw + x) * a + i) * b + o];
    int64_t dims[4] = {b, a, kh, kw}, flat_dims[2] = {b, a * kh * kw};
    vname v = flat ? weight(g, name, t, flat_dims, 2) : weight(g, name, t, dims, 4);
    free(t);
    g->written[2 * layer] = v;
    return v;
}

static vname kernel_weight(graph *g, const mr_model *m, int layer) {
    return kernel_weight_as(g, m, layer, false);
}

static vname bias_weight(graph *g, const mr_model *m, int layer) {
    if (g->written[2 * layer + 1].s[0]) return g->written[2 * layer + 1];
    const mr_tensor *b = param(m, layer, 1);
    return g->written[2 * layer + 1] =
               weight(g, m->params.items[m->layers[layer].param[1]].name, b->data, b->shape, 1);
}

/* ---- one helper per node kind ----------------------------------------------------------- */

/* TF "same" padding of one axis: the extra pixel goes after. */
static void same_pads(int64_t in, int64_t k, int64_t stride, int64_t *begin, int64_t *end) {
    int64_t out = (in + stride - 1) / stride, total = (out - 1) * stride + k - in;
    if (total < 0) total = 0;
    *begin = total / 2;
    *end = total - *begin;
}

/* A conv of the network table (its batch norm already folded). `pad` < 0: "same" for an input
 * of in_size; else that many pixels each side. */
static vname conv(graph *g, const mr_model *m, vname x, int layer, int64_t stride, int64_t pad,
                  int64_t in_size) {
    const mr_tensor *k = param(m, layer, 0);
    int64_t kh = k->shape[0], kw = k->shape[1], pads[4] = {pad, pad, pad, pad};
    if (pad < 0) {
        same_pads(in_size, kh, stride, &pads[0], &pads[2]);
        same_pads(in_size, kw, stride, &pads[1], &pads[3]);
    }
    vname in[3] = {x, kernel_weight(g, m, layer), bias_weight(g, m, layer)}, y;
    node_begin(g, "Conv", in, 3, &y, 1, m->layers[layer].name);
    int64_t ks[2] = {kh, kw}, st[2] = {stride, stride};
    attr_ints(g, "kernel_shape", ks, 2);
    attr_ints(g, "strides", st, 2);
    attr_ints(g, "pads", pads, 4);
    node_end(g);
    return y;
}

static vname relu(graph *g, vname x) {
    return op1(g, "Relu", x);
}

static vname max_pool(graph *g, vname x, int64_t k, int64_t stride, bool same, int64_t in_size) {
    int64_t pads[4] = {0, 0, 0, 0};
    if (same) {
        same_pads(in_size, k, stride, &pads[0], &pads[2]);
        pads[1] = pads[0];
        pads[3] = pads[2];
    }
    vname y;
    node_begin(g, "MaxPool", &x, 1, &y, 1, "maxpool");
    int64_t ks[2] = {k, k}, st[2] = {stride, stride};
    attr_ints(g, "kernel_shape", ks, 2);
    attr_ints(g, "strides", st, 2);
    attr_ints(g, "pads", pads, 4);
    node_end(g);
    return y;
}

/* Nearest-neighbour x2 (Keras UpSampling2D): out[y][x] = in[y / 2][x / 2]. */
static vname upsample2x(graph *g, vname x) {
    static const float scales[4] = {1, 1, 2, 2};
    int64_t d[1] = {4};
    vname in[3] = {x, {""}, const_f32(g, "scales", scales, d, 1)}, y;
    node_begin(g, "Resize", in, 3, &y, 1, "upsample");
    attr_string(g, "mode", "nearest");
    attr_string(g, "coordinate_transformation_mode", "asymmetric");
    attr_string(g, "nearest_mode", "floor");
    node_end(g);
    return y;
}

static vname conv_transpose(graph *g, const mr_model *m, vname x, int layer) {
    vname in[3] = {x, kernel_weight(g, m, layer), bias_weight(g, m, layer)}, y;
    node_begin(g, "ConvTranspose", in, 3, &y, 1, m->layers[layer].name);
    int64_t ks[2] = {2, 2}, st[2] = {2, 2};
    attr_ints(g, "kernel_shape", ks, 2);
    attr_ints(g, "strides", st, 2);
    node_end(g);
    return y;
}

/* x (M, K) times a dense layer's kernel (K, N) plus its bias. */
static vname dense(graph *g, const mr_model *m, vname x, int layer) {
    vname in[3] = {x, kernel_weight(g, m, layer), bias_weight(g, m, layer)}, y;
    node_begin(g, "Gemm", in, 3, &y, 1, m->layers[layer].name);
    node_end(g);
    return y;
}

static vname transpose(graph *g, vname x, const int64_t *perm, int n) {
    vname y;
    node_begin(g, "Transpose", &x, 1, &y, 1, "transpose");
    attr_ints(g, "perm", perm, n);
    node_end(g);
    return y;
}

/* Reshape to `dims` (0 copies the input's dimension, -1 is inferred). */
static vname reshape(graph *g, vname x, const int64_t *dims, int n) {
    return op2(g, "Reshape", x, const_i64(g, "shape", dims, n));
}

static vname unsqueeze(graph *g, vname x, int64_t axis) {
    return op2(g, "Unsqueeze", x, const_i64(g, "axes", &axis, 1));
}

/* x[..., start:end] along `axis`. */
static vname slice(graph *g, vname x, int64_t axis, int64_t start, int64_t end) {
    vname in[4] = {x, const_i64(g, "starts", &start, 1), const_i64(g, "ends", &end, 1),
                   const_i64(g, "axes", &axis, 1)},
          y;
    node_begin(g, "Slice", in, 4, &y, 1, "slice");
    node_end(g);
    return y;
}

static vname concat(graph *g, const vname *xs, int n, int64_t axis) {
    vname y;
    node_begin(g, "Concat", xs, n, &y, 1, "concat");
    attr_int(g, "axis", axis);
    node_end(g);
    return y;
}

static vname softmax(graph *g, vname x, int64_t axis) {
    vname y;
    node_begin(g, "Softmax", &x, 1, &y, 1, "softmax");
    attr_int(g, "axis", axis);
    node_end(g);
    return y;
}

static vname cast(graph *g, vname x, int to) {
    vname y;
    node_begin(g, "Cast", &x, 1, &y, 1, "cast");
    attr_int(g, "to", to);
    node_end(g);
    return y;
}

static vname gather(graph *g, vname data, vname indices, int64_t axis) {
    vname in[2] = {data, indices}, y;
    node_begin(g, "Gather", in, 2, &y, 1, "gather");
    attr_int(g, "axis", axis);
    node_end(g);
    return y;
}

static vname gather_nd(graph *g, vname data, vname indices, int64_t batch_dims) {
    vname in[2] = {data, indices}, y;
    node_begin(g, "GatherND", in, 2, &y, 1, "gather_nd");
    attr_int(g, "batch_dims", batch_dims);
    node_end(g);
    return y;
}

static vname where(graph *g, vname cond, vname a, vname b) {
    vname in[3] = {cond, a, b}, y;
    node_begin(g, "Where", in, 3, &y, 1, "where");
    node_end(g);
    return y;
}

/* The k largest along `axis`, sorted, ties to the lower index; *indices gets theirs. */
static vname top_k(graph *g, vname x, int64_t k, int64_t axis, vname *indices) {
    vname in[2] = {x, const_i64(g, "k", &k, 1)}, out[2];
    node_begin(g, "TopK", in, 2, out, 2, "topk");
    attr_int(g, "axis", axis);
    node_end(g);
    *indices = out[1];
    return out[0];
}

/* boxes (B, n, 4) y1, x1, y2, x2; scores (B, classes, n). Boxes scoring at most score_min are
 * not candidates. Returns selected (M, 3): batch, class, box. */
static vname nms(graph *g, vname boxes, vname scores, int64_t max_per_class, float iou,
                 float score_min) {
    vname in[5] = {boxes, scores, const_i64(g, "max_out", &max_per_class, 1),
                   const_f32(g, "iou", &iou, (int64_t[]){1}, 1),
                   const_f32(g, "score_min", &score_min, (int64_t[]){1}, 1)},
          y;
    node_begin(g, "NonMaxSuppression", in, 5, &y, 1, "nms");
    attr_int(g, "center_point_box", 0);
    node_end(g);
    return y;
}

static vname scatter_nd(graph *g, vname data, vname indices, vname updates) {
    vname in[3] = {data, indices, updates}, y;
    node_begin(g, "ScatterND", in, 3, &y, 1, "scatter_nd");
    node_end(g);
    return y;
}

static vname expand(graph *g, vname x, vname shape) {
    return op2(g, "Expand", x, shape);
}

static vname add(graph *g, vname a, vname b) {
    return op2(g, "Add", a, b);
}
static vname sub(graph *g, vname a, vname b) {
    return op2(g, "Sub", a, b);
}
static vname mul(graph *g, vname a, vname b) {
    return op2(g, "Mul", a, b);
}
static vname div_(graph *g, vname a, vname b) {
    return op2(g, "Div", a, b);
}

/* ---- box arithmetic as mrcnn's layers/boxes.c does it, in the same float order ------------ */

/* boxes (..., 4) and deltas (..., 4) already multiplied by the std (broadcasting): the
 * decoded boxes (..., 4), mr_box_decode's order of operations. */
static vname box_decode(graph *g, vname boxes, vname deltas) {
    vname half = scalar_f32(g, 0.5f);
    vname lo = slice(g, boxes, -1, 0, 2), hi = slice(g, boxes, -1, 2, 4);
    vname d_centre = slice(g, deltas, -1, 0, 2), d_size = slice(g, deltas, -1, 2, 4);
    vname size = sub(g, hi, lo);                   /* h, w */
    vname centre = add(g, lo, mul(g, half, size)); /* cy, cx */
    centre = add(g, centre, mul(g, d_centre, size));
    size = mul(g, size, op1(g, "Exp", d_size));
    vname start = sub(g, centre, mul(g, half, size));
    vname xs[2] = {start, add(g, start, size)};
    return concat(g, xs, 2, -1);
}

/* ---- network sections --------------------------------------------------------------------- */

static int64_t ceil_div(int64_t in, int64_t stride) {
    return (in + stride - 1) / stride;
}

/* The index of the table's layer named `name`, or -1. */
static int find_layer(const mr_model *m, const char *name) {
    for (int i = 0; i < m->n_layers; i++)
        if (!strcmp(m->layers[i].name, name)) return i;
    return -1;
}

/* Matterport's ResNet from the network table: conv1, max-pool, then every bottleneck
 * res<stage><block>_branch{2a,2b,2c,1} in table order. Strides come from the table's output
 * sizes. images (N, C, S, S) -> C2..C5 (NCHW) and their sizes. */
static void backbone_resnet(graph *g, const mr_model *m, vname images, vname c[4],
                            int64_t size[4]) {
    int64_t s = m->cfg.image_max_dim;
    int conv1 = find_layer(m, "conv1");
    vname x = relu(g, conv(g, m, images, conv1, 2, 3, s));
    s = m->layers[conv1].shape[0];
    x = max_pool(g, x, 3, 2, true, s);
    s = ceil_div(s, 2);
    for (int stage = 2; stage <= 5; stage++) {
        for (char block = 'a';; block++) {
            char name[48];
            int br[4]; /* 2a, 2b, 2c, 1 */
            static const char *branch[4] = {"2a", "2b", "2c", "1"};
            for (int k = 0; k < 4; k++) {
                snprintf(name, sizeof name, "res%d%c_branch%s", stage, block, branch[k]);
                br[k] = find_layer(m, name);
            }
            if (br[0] < 0) break;
            int64_t sa = m->layers[br[0]].shape[0], sb = m->layers[br[1]].shape[0];
            vname y = relu(g, conv(g, m, x, br[0], s / sa, 0, s));
            y = relu(g, conv(g, m, y, br[1], sa / sb, -1, sa));
            y = conv(g, m, y, br[2], 1, 0, sb);
            vname shortcut = br[3] >= 0 ? conv(g, m, x, br[3], s / sb, 0, s) : x;
            x = relu(g, add(g, y, shortcut));
            s = sb;
        }
        c[stage - 2] = x;
        size[stage - 2] = s;
    }
}

/* FPN: P2..P5 (3x3 smoothed top-down sums) and P6 (every other pixel of P5). */
static void fpn(graph *g, const mr_model *m, const vname c[4], const int64_t size[4], vname p[5]) {
    const mr_net_weights *w = &m->w;
    vname sum[4];
    sum[3] = conv(g, m, c[3], w->fpn_lateral[3].layer, 1, 0, size[3]);
    for (int l = 2; l >= 0; l--)
        sum[l] = add(g, upsample2x(g, sum[l + 1]),
                     conv(g, m, c[l], w->fpn_lateral[l].layer, 1, 0, size[l]));
    for (int l = 0; l < 4; l++) p[l] = conv(g, m, sum[l], w->fpn_smooth[l].layer, 1, -1, size[l]);
    p[4] = max_pool(g, p[3], 1, 2, false, size[3]);
}

/* The RPN over P2..P6: foreground probabilities (N, anchors) and deltas (N, anchors, 4) in the
 * anchors' order (level, y, x, anchor). */
static void rpn(graph *g, const mr_model *m, const vname p[5], const int64_t size[5], vname *fg,
                vname *deltas) {
    const mr_net_weights *w = &m->w;
    vname logits[5], boxes[5];
    static const int64_t to_nhwc[4] = {0, 2, 3, 1}, by2[3] = {0, -1, 2}, by4[3] = {0, -1, 4};
    for (int l = 0; l < 5; l++) {
        vname shared =
            relu(g, conv(g, m, p[l], w->rpn_shared.layer, m->cfg.anchor_stride, -1, size[l]));
        vname cls = conv(g, m, shared, w->rpn_class.layer, 1, 0, size[l]);
        vname box = conv(g, m, shared, w->rpn_bbox.layer, 1, 0, size[l]);
        logits[l] = reshape(g, transpose(g, cls, to_nhwc, 4), by2, 3);
        boxes[l] = reshape(g, transpose(g, box, to_nhwc, 4), by4, 3);
    }
    vname probs = softmax(g, concat(g, logits, 5, 1), -1);
    static const int64_t flat[2] = {0, -1};
    *fg = reshape(g, slice(g, probs, 2, 1, 2), flat, 2);
    *deltas = concat(g, boxes, 5, 1);
}

/* A dense (N, n) array of -1 with `scores` (N, n) scattered in at the (image, index) rows of
 * `at` (M, 2), then the k best per image: *order (N, k) the indices, returned the values (-1
 * for no row). Ties go to the lower index, as mrcnn's score sorts. */
static vname best_of_kept(graph *g, vname scores, vname at, int64_t k, vname *order) {
    float minus_one = -1.0f;
    vname blank = expand(g, const_f32(g, "minus_one", &minus_one, (int64_t[]){1, 1}, 2),
                         op1(g, "Shape", scores));
    vname dense_scores = scatter_nd(g, blank, at, gather_nd(g, scores, at, 0));
    return top_k(g, dense_scores, k, 1, order);
}

/* rows (N, n, d) picked per image by idx (N, k): (N, k, d). */
static vname pick_rows(graph *g, vname rows, vname idx) {
    return gather_nd(g, rows, unsqueeze(g, idx, -1), 1);
}

/* The top-k candidates by foreground score: Matterport's top PRE_NMS_LIMIT over all anchors,
 * or under PROPOSALS_PER_LEVEL the top PRE_NMS_LIMIT of each level, levels in order. Returns
 * their scores (N, k); *index (N, k) their anchors, *level (k) int64 the level of each (NULL
 * when not per level), *k their number. */
static vname candidates(graph *g, const mr_model *m, vname fg, vname *index, int64_t **level,
                        int64_t *k) {
    const mr_net_config *c = &m->cfg;
    int64_t n = m->n_anchors;
    *level = NULL;
    *index = fg;
    *k = 0;
    if (!c->proposals_per_level) {
        *k = c->pre_nms_limit < n ? c->pre_nms_limit : n;
        return top_k(g, fg, *k, 1, index);
    }
    vname scores[5], indices[5];
    int64_t lo = 0, total = 0;
    for (int l = 0; l < 5; l++)
        total += c->pre_nms_limit < m->level_anchors[l] ? c->pre_nms_limit : m->level_anchors[l];
    *level = malloc((size_t)total * sizeof **level);
    if (!*level) {
        g->status = mr_fail(MR_ERR_NOMEM, "onnx: no memory");
        return fg;
    }
    for (int l = 0; l < 5; l++) {
        int64_t hi = lo + m->level_anchors[l], kl = hi - lo;
        kl = c->pre_nms_limit < kl ? c->pre_nms_limit : kl;
        vname local;
        scores[l] = top_k(g, slice(g, fg, 1, lo, hi), kl, 1, &local);
        indices[l] = add(g, local, scalar_i64(g, lo));
        for (int64_t j = 0; j < kl; j++) (*level)[*k + j] = l;
        *k += kl;
        lo = hi;
    }
    *index = concat(g, indices, 5, 1);
    return concat(g, scores, 5, 1);
}

/* Matterport's ProposalLayer over N images: the candidates, decoded with RPN_BBOX_STD_DEV,
 * clipped to [0, 1], NMS (per level under PROPOSALS_PER_LEVEL, levels as NMS classes), the best
 * POST_NMS_ROIS_INFERENCE by score, zero padded: (N, P, 4). */
static vname proposals(graph *g, const mr_model *m, vname fg, vname deltas) {
    const mr_net_config *c = &m->cfg;
    int64_t n = m->n_anchors, k, *level;
    vname top;
    vname scores = candidates(g, m, fg, &top, &level, &k); /* (N, k) */
    int64_t count = c->post_nms_rois_inference, kept_max = count < k ? count : k;
    int64_t adims[2] = {n, 4}, sdims[1] = {4};
    vname anchors = gather(g, const_f32(g, "anchors", m->anchors, adims, 2), top, 0);
    vname d =
        mul(g, pick_rows(g, deltas, top), const_f32(g, "rpn_bbox_std", c->rpn_bbox_std, sdims, 1));
    vname boxes = box_decode(g, anchors, d);
    vname clip_in[3] = {boxes, scalar_f32(g, 0.0f), scalar_f32(g, 1.0f)};
    node_begin(g, "Clip", clip_in, 3, &boxes, 1, "clip");
    node_end(g);
    vname nms_scores = unsqueeze(g, scores, 1), kept; /* (N, 1, k) */
    if (level) {
        /* (N, 5, k): a candidate scores in its level's row only, -1 (no candidate) elsewhere. */
        static const int64_t levels[5] = {0, 1, 2, 3, 4}, column[2] = {5, 1};
        vname mine = op2(g, "Equal", const_i64(g, "level", level, (int)k),
                         reshape(g, const_i64(g, "levels", levels, 5), column, 2)); /* (5, k) */
        nms_scores = where(g, mine, nms_scores, scalar_f32(g, -1.0f));
        kept = nms(g, boxes, nms_scores, k, c->rpn_nms_threshold, -0.5f);
        free(level);
    } else {
        kept = nms(g, boxes, nms_scores, count, c->rpn_nms_threshold, -0.5f);
    }
    static const int64_t image_and_box[2] = {0, 2};
    vname at = gather(g, kept, const_i64(g, "cols", image_and_box, 2), 1);
    vname order;
    vname best = best_of_kept(g, scores, at, kept_max, &order);
    vname rois = pick_rows(g, boxes, order);
    vname valid = unsqueeze(g, op2(g, "Greater", best, scalar_f32(g, -0.5f)), -1);
    rois = where(g, valid, rois, scalar_f32(g, 0.0f));
    if (kept_max < count) { /* fewer candidates than proposals: pad with zero rows */
        int64_t pads[6] = {0, 0, 0, 0, count - kept_max, 0};
        rois = op2(g, "Pad", rois, const_i64(g, "pads", pads, 6));
    }
    return rois;
}

/* A box list's corners, sizes (N, R, 1) each, and the pyramid level of each box (N, R, 1)
 * int64, 2..5: mr_roi_level, clamp(4 + round(log2(sqrt(h * w) / (224 / sqrt(S * S)))), 2, 5),
 * in float64 as mrcnn; 2 when h * w <= 0 (padding rows). */
typedef struct {
    vname y1, x1, y2, x2, h, w, level;
} roi_boxes;

static roi_boxes roi_levels(graph *g, const mr_model *m, vname boxes) {
    int64_t s = m->cfg.image_max_dim;
    roi_boxes b;
    b.y1 = slice(g, boxes, 2, 0, 1), b.x1 = slice(g, boxes, 2, 1, 2);
    b.y2 = slice(g, boxes, 2, 2, 3), b.x2 = slice(g, boxes, 2, 3, 4);
    b.h = sub(g, b.y2, b.y1), b.w = sub(g, b.x2, b.x1);
    vname area = mul(g, cast(g, b.h, T_DOUBLE), cast(g, b.w, T_DOUBLE));
    vname ratio = div_(g, op1(g, "Sqrt", area), scalar_f64(g, 224.0 / sqrt((double)s * (double)s)));
    vname lg = div_(g, op1(g, "Log", ratio), scalar_f64(g, log(2.0)));
    vname level = add(g, scalar_f64(g, 4.0), op1(g, "Round", lg));
    level = op2(g, "Min", op2(g, "Max", level, scalar_f64(g, 2.0)), scalar_f64(g, 5.0));
    level = where(g, op2(g, "Greater", area, scalar_f64(g, 0.0)), level, scalar_f64(g, 2.0));
    b.level = cast(g, level, T_INT64);
    return b;
}

/* ROI_ALIGN_MODE "average": ONNX RoiAlign is torchvision's (aligned=False with
 * output_half_pixel), run on each level and kept for the boxes of that level. Boxes go back to
 * image pixels (x1, y1, x2, y2), +1 on the far edges as mrcnn's average mode. Returns
 * (N * R, C, pool, pool). */
static vname roi_align_average(graph *g, const mr_model *m, const vname p[5], const int64_t size[5],
                               vname boxes, const roi_boxes *b, int64_t r, int64_t pool) {
    int64_t s = m->cfg.image_max_dim;
    vname out = {""}, y1 = b->y1, x1 = b->x1, y2 = b->y2, x2 = b->x2, level = b->level;
    vname px[4];
    vname sm1 = scalar_f32(g, (float)(s - 1)), one = scalar_f32(g, 1.0f);
    px[0] = mul(g, x1, sm1);
    px[1] = mul(g, y1, sm1);
    px[2] = add(g, mul(g, x2, sm1), one);
    px[3] = add(g, mul(g, y2, sm1), one);
    static const int64_t flat4[2] = {-1, 4}, flat[1] = {-1}, per_roi[4] = {-1, 1, 1, 1};
    vname rois = reshape(g, concat(g, px, 4, 2), flat4, 2);
    vname n_images = gather(g, op1(g, "Shape", boxes), scalar_i64(g, 0), 0);
    vname range_in[3] = {scalar_i64(g, 0), n_images, scalar_i64(g, 1)}, images;
    node_begin(g, "Range", range_in, 3, &images, 1, "range");
    node_end(g);
    int64_t rep[2] = {1, r};
    vname batch =
        reshape(g, expand(g, unsqueeze(g, images, 1), const_i64(g, "rep", rep, 2)), flat, 1);
    vname lv = reshape(g, level, per_roi, 4);
    for (int l = 0; l < 4; l++) {
        vname in[3] = {p[l], rois, batch}, y;
        node_begin(g, "RoiAlign", in, 3, &y, 1, "roi_align");
        attr_string(g, "coordinate_transformation_mode", "output_half_pixel");
        attr_string(g, "mode", "avg");
        attr_int(g, "output_height", pool);
        attr_int(g, "output_width", pool);
        attr_int(g, "sampling_ratio", 2);
        attr_float(g, "spatial_scale", (float)size[l] / (float)s);
        node_end(g);
        vname here = op2(g, "Equal", lv, scalar_i64(g, l + 2));
        out = l == 0 ? where(g, here, y, scalar_f32(g, 0.0f)) : where(g, here, y, out);
    }
    return out;
}

/* ROI_ALIGN_MODE "crop_and_resize" (Matterport): returns (N * R, C, pool, pool). */
static vname roi_align_crop(graph *g, const mr_model *m, const vname p[5], const int64_t size[5],
                            const roi_boxes *b, int64_t r, int64_t pool) {
    int64_t ch = m->cfg.pyramid_size;
    vname out = {""}, y1 = b->y1, x1 = b->x1, y2 = b->y2, x2 = b->x2, h = b->h, w = b->w,
          level = b->level;
    /* Sample (py, px) of a box at y = y1 (H-1) + py * ((y2-y1)(H-1) / (pool-1))
     * in feature pixels of its level (TF's float order, as layers/roi_align.c), zero unless
     * 0 <= y <= H-1 (and the same for x). One GridSample (align_corners) samples the bilinear
     * values for every box from P2..P5 laid side by side on one canvas (each level at its x
     * offset, padded below): a sample inside its level's map only reads that map's pixels, so
     * this is the same as sampling each level, at a quarter of the work. The validity rule is
     * applied from the exact coordinates. */
    float *steps = malloc((size_t)pool * sizeof *steps);
    if (!steps) {
        g->status = mr_fail(MR_ERR_NOMEM, "onnx: no memory");
        return out;
    }
    for (int64_t i = 0; i < pool; i++) steps[i] = (float)i;
    vname step = const_f32(g, "steps", steps, &pool, 1);
    free(steps);
    float last[4], offset[4];
    int64_t canvas_w = 0, four = 4;
    for (int l = 0; l < 4; l++) {
        last[l] = (float)(size[l] - 1);
        offset[l] = (float)canvas_w;
        canvas_w += size[l];
    }
    if (!g->canvas.s[0]) {
        vname parts[4];
        for (int l = 0; l < 4; l++) {
            int64_t pads[8] = {0, 0, 0, 0, 0, 0, size[0] - size[l], 0};
            parts[l] = l == 0 ? p[0] : op2(g, "Pad", p[l], const_i64(g, "pads", pads, 8));
        }
        g->canvas = concat(g, parts, 4, 3); /* (N, C, H2, W2 + W3 + W4 + W5) */
    }
    vname index = sub(g, level, scalar_i64(g, 2)); /* (N, R, 1): 0..3 */
    vname fm1 = gather(g, const_f32(g, "level_last", last, &four, 1), index, 0);
    vname x0 = gather(g, const_f32(g, "level_x", offset, &four, 1), index, 0);
    vname ys, xs;
    if (pool > 1) {
        vname pm1 = scalar_f32(g, (float)(pool - 1));
        vname hs = div_(g, mul(g, h, fm1), pm1), ws = div_(g, mul(g, w, fm1), pm1);
        ys = add(g, mul(g, y1, fm1), mul(g, step, hs)); /* (N, R, pool) */
        xs = add(g, mul(g, x1, fm1), mul(g, step, ws));
    } else {
        vname half = scalar_f32(g, 0.5f);
        ys = mul(g, mul(g, half, add(g, y1, y2)), fm1);
        xs = mul(g, mul(g, half, add(g, x1, x2)), fm1);
    }
    vname zero = scalar_f32(g, 0.0f);
    vname vy = op2(g, "And", op2(g, "GreaterOrEqual", ys, zero), op2(g, "LessOrEqual", ys, fm1));
    vname vx = op2(g, "And", op2(g, "GreaterOrEqual", xs, zero), op2(g, "LessOrEqual", xs, fm1));
    vname valid = op2(g, "And", unsqueeze(g, vy, 3), unsqueeze(g, vx, 2)); /* (N, R, py, px) */
    /* Grid in [-1, 1] over the canvas: g = y * 2 / (H - 1) - 1; last axis (x, y). */
    vname one = scalar_f32(g, 1.0f);
    vname gy = sub(g, mul(g, ys, scalar_f32(g, 2.0f / (float)(size[0] - 1))), one);
    vname gx = sub(g, mul(g, add(g, xs, x0), scalar_f32(g, 2.0f / (float)(canvas_w - 1))), one);
    int64_t across[4] = {1, 1, pool, pool};
    vname across_shape = const_i64(g, "across", across, 4);
    vname gy4 = expand(g, unsqueeze(g, gy, 3), across_shape); /* (N, R, py, px) */
    vname gx4 = expand(g, unsqueeze(g, gx, 2), across_shape); /* (N, R, py, px) */
    /* Samples outside their map move far off the canvas, where GridSample's zero padding
     * gives 0 (all four corners outside): cheaper than zeroing the (N, C, ...) output. */
    vname off_canvas = scalar_f32(g, -4.0f);
    gx4 = where(g, valid, gx4, off_canvas);
    gy4 = where(g, valid, gy4, off_canvas);
    vname xy[2] = {unsqueeze(g, gx4, 4), unsqueeze(g, gy4, 4)}; /* (N, R, py, px, 1) */
    int64_t grid_dims[4] = {0, r * pool, pool, 2};
    vname grid = reshape(g, concat(g, xy, 2, 4), grid_dims, 4);
    vname in[2] = {g->canvas, grid}, sample;
    node_begin(g, "GridSample", in, 2, &sample, 1, "grid_sample");
    attr_string(g, "mode", "bilinear");
    attr_string(g, "padding_mode", "zeros");
    attr_int(g, "align_corners", 1);
    node_end(g); /* (N, C, R * pool, pool) */
    out = sample;
    int64_t split[5] = {0, ch, r, pool, pool}, perm[5] = {0, 2, 1, 3, 4},
            flat[4] = {-1, ch, pool, pool};
    return reshape(g, transpose(g, reshape(g, out, split, 5), perm, 5), flat, 4);
}

/* Matterport's PyramidROIAlign over N images: boxes (N, R, 4) normalised, each sampled from
 * its level of P2..P5 into (N * R, C, pool, pool). */
static vname roi_align(graph *g, const mr_model *m, const vname p[5], const int64_t size[5],
                       vname boxes, int64_t r, int64_t pool) {
    roi_boxes b = roi_levels(g, m, boxes);
    if (m->cfg.roi_align_mode == MR_ROI_AVERAGE)
        return roi_align_average(g, m, p, size, boxes, &b, r, pool);
    return roi_align_crop(g, m, p, size, &b, r, pool);
}

/* A k x k valid conv whose input is exactly k x k (mrcnn_class_conv1: one output pixel per ROI)
 * as the Gemm it is: x (M, C, k, k) flattened times the kernel as (O, C * k * k)^T, plus the
 * bias: (M, O). ONNX Runtime's Conv runs this shape ~10x slower than its Gemm. */
static vname conv_as_dense(graph *g, const mr_model *m, vname x, int layer) {
    const mr_tensor *k = param(m, layer, 0);
    int64_t flat[2] = {-1, k->shape[0] * k->shape[1] * k->shape[2]};
    vname in[3] = {reshape(g, x, flat, 2), kernel_weight_as(g, m, layer, true),
                   bias_weight(g, m, layer)},
          y;
    node_begin(g, "Gemm", in, 3, &y, 1, m->layers[layer].name);
    attr_int(g, "transB", 1);
    node_end(g);
    return y;
}

/* Box head on (N * R) ROI features: class probabilities (N, R, classes) and deltas (N, R,
 * classes, 4). */
static void box_head(graph *g, const mr_model *m, vname x, int64_t r, vname *probs, vname *deltas) {
    const mr_net_config *c = &m->cfg;
    const mr_net_weights *w = &m->w;
    x = relu(g, conv_as_dense(g, m, x, w->class_conv[0].conv.layer)); /* (N * R, FC) */
    x = relu(g, conv_as_dense(g, m, x, w->class_conv[1].conv.layer));
    int64_t pd[3] = {-1, r, c->num_classes}, dd[4] = {-1, r, c->num_classes, 4};
    *probs = reshape(g, softmax(g, dense(g, m, x, w->class_logits.layer), -1), pd, 3);
    *deltas = reshape(g, dense(g, m, x, w->bbox_fc.layer), dd, 4);
}

/* The detection layer's candidates among (ROI, class) pairs: the ROI's argmax class (first
 * maximum, as tf.argmax), or under DETECTION_CANDIDATES every_class each class with a
 * probability above 0; never background; at least DETECTION_MIN_CONFIDENCE unless that is 0.
 * Returns probs (N, R, nc) with -1 where a pair is no candidate. */
static vname candidate_scores(graph *g, const mr_model *m, vname probs) {
    const mr_net_config *c = &m->cfg;
    int64_t nc = c->num_classes;
    vname offered;
    if (c->detection_candidates == MR_DETECT_EVERY_CLASS) {
        offered = op2(g, "Greater", probs, scalar_f32(g, 0.0f));
    } else {
        vname top;
        node_begin(g, "ArgMax", &probs, 1, &top, 1, "argmax");
        attr_int(g, "axis", 2);
        attr_int(g, "keepdims", 1);
        node_end(g);
        int64_t classes[MR_MAX_CLASSES];
        for (int64_t k = 0; k < nc; k++) classes[k] = k;
        offered = op2(g, "Equal", top, const_i64(g, "classes", classes, (int)nc));
    }
    uint8_t not_bg[MR_MAX_CLASSES];
    for (int64_t k = 0; k < nc; k++) not_bg[k] = k > 0;
    offered = op2(g, "And", offered, constant(g, "not_bg", T_BOOL, &nc, 1, not_bg, 1));
    if (c->detection_min_confidence != 0.0f)
        offered = op2(g, "And", offered,
                      op2(g, "GreaterOrEqual", probs, scalar_f32(g, c->detection_min_confidence)));
    return where(g, offered, probs, scalar_f32(g, -1.0f));
}

/* Matterport's DetectionLayer over N images: each ROI refined by each class's deltas (only the
 * candidates count: the ROI's argmax class, or every class under DETECTION_CANDIDATES
 * every_class, not background, at least DETECTION_MIN_CONFIDENCE), clipped to the window, NMS
 * per class (or over all classes), the best DETECTION_MAX_INSTANCES by score. Returns the
 * detections (N, D, 6); *class_ids (N, D) int64 (0 on padding rows). */
static vname detection_layer(graph *g, const mr_model *m, vname rois, vname probs, vname deltas,
                             vname window, int64_t r, vname *class_ids) {
    const mr_net_config *c = &m->cfg;
    int64_t nc = c->num_classes, d = c->detection_max_instances, sdims[1] = {4};
    vname std = const_f32(g, "bbox_std", c->bbox_std, sdims, 1);
    vname boxes = box_decode(g, unsqueeze(g, rois, 2), mul(g, deltas, std)); /* (N,R,nc,4) */
    /* The window, normalised as mr_norm_boxes: (w - (0, 0, 1, 1)) / (S - 1). */
    float shift[4] = {0, 0, 1, 1}, scale = (float)(c->image_max_dim - 1);
    vname wn =
        div_(g, sub(g, window, const_f32(g, "shift", shift, sdims, 1)), scalar_f32(g, scale));
    static const int64_t lo_cols[4] = {0, 1, 0, 1}, hi_cols[4] = {2, 3, 2, 3},
                         per_image[4] = {-1, 1, 1, 4};
    vname lo = reshape(g, gather(g, wn, const_i64(g, "lo", lo_cols, 4), 1), per_image, 4);
    vname hi = reshape(g, gather(g, wn, const_i64(g, "hi", hi_cols, 4), 1), per_image, 4);
    boxes = op2(g, "Max", op2(g, "Min", boxes, hi), lo);
    vname scores = candidate_scores(g, m, probs); /* (N, R, nc) */
    /* Each candidate's key is roi * nc + class: ties in score go to the lower key, as mrcnn's
     * candidate order. */
    int64_t flat_scores_dims[2] = {0, -1}, flat_boxes_dims[3] = {0, -1, 4};
    vname flat_scores = reshape(g, scores, flat_scores_dims, 2); /* (N, R * nc) */
    vname flat_boxes = reshape(g, boxes, flat_boxes_dims, 3);    /* (N, R * nc, 4) */
    vname at;                                                    /* (M, 2): image, key */
    if (c->detection_nms == MR_NMS_CLASS_AGNOSTIC) {
        vname kept =
            nms(g, flat_boxes, unsqueeze(g, flat_scores, 1), d, c->detection_nms_threshold, -0.5f);
        static const int64_t cols[2] = {0, 2};
        at = gather(g, kept, const_i64(g, "cols", cols, 2), 1);
    } else {
        /* One NMS "batch" per (image, class): boxes (N * nc, R, 4), scores (N * nc, 1, R). */
        static const int64_t by_class[4] = {0, 2, 1, 3}, by_class_s[3] = {0, 2, 1};
        int64_t bd[3] = {-1, r, 4}, sd[3] = {-1, 1, r};
        vname cb = reshape(g, transpose(g, boxes, by_class, 4), bd, 3);
        vname cs = reshape(g, transpose(g, scores, by_class_s, 3), sd, 3);
        vname kept = nms(g, cb, cs, d, c->detection_nms_threshold, -0.5f);
        vname pair = gather(g, kept, scalar_i64(g, 0), 1); /* image * nc + class */
        vname roi = gather(g, kept, scalar_i64(g, 2), 1);
        vname n_classes = scalar_i64(g, nc);
        vname image = div_(g, pair, n_classes), cls = op2(g, "Mod", pair, n_classes);
        vname key = add(g, mul(g, roi, n_classes), cls);
        vname cols[2] = {unsqueeze(g, image, 1), unsqueeze(g, key, 1)};
        at = concat(g, cols, 2, 1);
    }
    vname order;
    vname best = best_of_kept(g, flat_scores, at, d, &order); /* (N, D) */
    vname valid = op2(g, "Greater", best, scalar_f32(g, -0.5f));
    vname cls = where(g, valid, op2(g, "Mod", order, scalar_i64(g, nc)), scalar_i64(g, 0));
    *class_ids = cls;
    vname row[3] = {pick_rows(g, flat_boxes, order), unsqueeze(g, cast(g, cls, T_FLOAT), -1),
                    unsqueeze(g, best, -1)};
    return where(g, unsqueeze(g, valid, -1), concat(g, row, 3, 2), scalar_f32(g, 0.0f));
}

/* Mask head on (N * D) ROI features, sigmoid, each row's class channel: (N, D, MS, MS). */
static vname mask_head(graph *g, const mr_model *m, vname x, vname class_ids) {
    const mr_net_config *c = &m->cfg;
    const mr_net_weights *w = &m->w;
    for (int i = 0; i < 4; i++)
        x = relu(g, conv(g, m, x, w->mask_conv[i].conv.layer, 1, -1, c->mask_pool_size));
    if (w->mask_deconv.layer >= 0) x = relu(g, conv_transpose(g, m, x, w->mask_deconv.layer));
    x = op1(g, "Sigmoid", conv(g, m, x, w->mask.layer, 1, 0, c->mask_shape));
    int64_t per_row[2] = {-1, 1},
            out[4] = {-1, c->detection_max_instances, c->mask_shape, c->mask_shape};
    x = gather_nd(g, x, reshape(g, class_ids, per_row, 2), 1); /* (N * D, MS, MS) */
    return reshape(g, x, out, 4);
}

/* ---- graph inputs, outputs, model -------------------------------------------------------- */

/* A graph input or output: float32 with the given dims, 0 = the batch, named "N". */
static void value_info(graph *g, int field, const char *name, const int64_t *dims, int ndim) {
    mr_pb_begin(&g->pb, field);
    mr_pb_string(&g->pb, VALUE_NAME, name);
    mr_pb_begin(&g->pb, VALUE_TYPE);
    mr_pb_begin(&g->pb, TYPE_TENSOR);
    mr_pb_int(&g->pb, TYPE_TENSOR_ELEM_TYPE, T_FLOAT);
    mr_pb_begin(&g->pb, TYPE_TENSOR_SHAPE);
    for (int i = 0; i < ndim; i++) {
        mr_pb_begin(&g->pb, SHAPE_DIM);
        if (dims[i] == 0)
            mr_pb_string(&g->pb, DIM_PARAM, "N");
        else
            mr_pb_int(&g->pb, DIM_VALUE, dims[i]);
        mr_pb_end(&g->pb);
    }
    mr_pb_end(&g->pb);
    mr_pb_end(&g->pb);
    mr_pb_end(&g->pb);
    mr_pb_end(&g->pb);
}

/* An output under its public name: an Identity from the value that holds it. */
static void name_output(graph *g, vname v, const char *name) {
    mr_pb_begin(&g->pb, GRAPH_NODE);
    mr_pb_string(&g->pb, NODE_INPUT, v.s);
    mr_pb_string(&g->pb, NODE_OUTPUT, name);
    mr_pb_string(&g->pb, NODE_NAME, name);
    mr_pb_string(&g->pb, NODE_OP_TYPE, "Identity");
    mr_pb_end(&g->pb);
    g->n_nodes++;
}

static void metadata(graph *g, const char *key, const char *value) {
    mr_pb_begin(&g->pb, MODEL_METADATA_PROPS);
    mr_pb_string(&g->pb, ENTRY_KEY, key);
    mr_pb_string(&g->pb, ENTRY_VALUE, value);
    mr_pb_end(&g->pb);
}

/* CLASS_NAMES as a JSON array ("BG" first), quotes, backslashes and control characters
 * escaped. */
static void class_names_json(const mr_config *cfg, char *out, size_t size) {
    size_t used = 0;
    out[used++] = '[';
    for (int k = 0; k < cfg->net.num_classes; k++) {
        if (k) out[used++] = ',';
        out[used++] = '"';
        for (const unsigned char *ch = (const unsigned char *)cfg->class_names[k]; *ch; ch++) {
            if (used + 8 >= size) break;
            if (*ch == '"' || *ch == '\\')
                used += (size_t)snprintf(out + used, size - used, "\\%c", *ch);
            else if (*ch < 0x20)
                used += (size_t)snprintf(out + used, size - used, "\\u%04x", *ch);
            else
                out[used++] = (char)*ch;
        }
        out[used++] = '"';
    }
    out[used++] = ']';
    out[used] = '\0';
}

/* What the graph cannot do the way mrcnn does it: one line naming the key. */
static mr_status check_exportable(const mr_model *m) {
    const mr_net_config *c = &m->cfg;
    if (m->backbone != mr_backbone_find("resnet50") && m->backbone != mr_backbone_find("resnet101"))
        return mr_fail(MR_ERR_CONFIG,
                       "cannot export to ONNX: the model's backbone has no ONNX form (resnet50 "
                       "and resnet101 have)");
    if (c->image_max_dim / 32 < 2)
        return mr_fail(MR_ERR_CONFIG,
                       "cannot export to ONNX: IMAGE_MAX_DIM %d is too small (P5 would be 1 "
                       "pixel); at least 64",
                       c->image_max_dim);
    int64_t candidates = (int64_t)c->post_nms_rois_inference * c->num_classes;
    if (c->detection_max_instances > candidates)
        return mr_fail(
            MR_ERR_CONFIG,
            "cannot export to ONNX: DETECTION_MAX_INSTANCES %d exceeds POST_NMS_ROIS_INFERENCE x "
            "NUM_CLASSES (%lld)",
            c->detection_max_instances, (long long)candidates);
    return MR_OK;
}

mr_status mr_onnx_build(const mr_config *cfg, const mr_model *m, bool half, uint8_t **bytes,
                        size_t *len, mr_onnx_summary *sum) {
    *bytes = NULL;
    *len = 0;
    MR_TRY(check_exportable(m));
    const mr_net_config *c = &m->cfg;
    graph g = {.half = half, .status = MR_OK};
    g.written = calloc((size_t)m->n_layers * 2, sizeof *g.written);
    if (!g.written) return mr_fail(MR_ERR_NOMEM, "onnx: no memory for %d layers", m->n_layers);
    mr_pb_init(&g.pb);
    mr_pb_int(&g.pb, MODEL_IR_VERSION, MR_ONNX_IR_VERSION);
    mr_pb_string(&g.pb, MODEL_PRODUCER_NAME, "mrcnn");
    mr_pb_string(&g.pb, MODEL_PRODUCER_VERSION, MR_VERSION);
    mr_pb_string(&g.pb, MODEL_DOC_STRING,
                 "Mask R-CNN (Matterport's network) exported by mrcnn. Inputs: images (N, S, S, "
                 "C) molded; window (N, 4) y1, x1, y2, x2 in molded pixels. Outputs: detections "
                 "(N, D, 6) y1, x1, y2, x2 normalised, class id, score; masks (N, D, M, M).");
    mr_pb_begin(&g.pb, MODEL_GRAPH);
    mr_pb_string(&g.pb, GRAPH_NAME, cfg->name[0] ? cfg->name : "mrcnn");

    int64_t s = c->image_max_dim, r = c->post_nms_rois_inference;
    vname images = {"images"}, window = {"window"};
    static const int64_t to_nchw[4] = {0, 3, 1, 2};
    vname x = transpose(&g, images, to_nchw, 4);
    vname cf[4], p[5];
    int64_t size[5];
    backbone_resnet(&g, m, x, cf, size);
    size[4] = ceil_div(size[3], 2);
    fpn(&g, m, cf, size, p);
    vname fg, deltas;
    rpn(&g, m, p, size, &fg, &deltas);
    vname rois = proposals(&g, m, fg, deltas);
    vname probs, box_deltas, class_ids;
    box_head(&g, m, roi_align(&g, m, p, size, rois, r, c->pool_size), r, &probs, &box_deltas);
    vname dets = detection_layer(&g, m, rois, probs, box_deltas, window, r, &class_ids);
    int64_t box_dims[3] = {0, -1, 4};
    vname det_boxes = reshape(&g, slice(&g, dets, 2, 0, 4), box_dims, 3);
    vname masks = mask_head(
        &g, m, roi_align(&g, m, p, size, det_boxes, c->detection_max_instances, c->mask_pool_size),
        class_ids);
    name_output(&g, dets, "detections");
    name_output(&g, masks, "masks");

    int64_t in_dims[4] = {0, s, s, c->image_channels}, win_dims[2] = {0, 4};
    int64_t det_dims[3] = {0, c->detection_max_instances, 6},
            mask_dims[4] = {0, c->detection_max_instances, c->mask_shape, c->mask_shape};
    value_info(&g, GRAPH_INPUT, "images", in_dims, 4);
    value_info(&g, GRAPH_INPUT, "window", win_dims, 2);
    value_info(&g, GRAPH_OUTPUT, "detections", det_dims, 3);
    value_info(&g, GRAPH_OUTPUT, "masks", mask_dims, 4);
    mr_pb_end(&g.pb); /* graph */

    mr_pb_begin(&g.pb, MODEL_OPSET_IMPORT);
    mr_pb_string(&g.pb, OPSET_DOMAIN, "");
    mr_pb_int(&g.pb, OPSET_VERSION, MR_ONNX_OPSET);
    mr_pb_end(&g.pb);
    char *json = mr_config_to_json(cfg);
    if (!json) g.status = mr_fail(MR_ERR_NOMEM, "onnx: no memory for the config");
    if (json) metadata(&g, "config", json);
    free(json);
    char names[MR_MAX_CLASSES * (6 * 48 + 4) + 4]; /* every byte escaped at worst */
    class_names_json(cfg, names, sizeof names);
    metadata(&g, "class_names", names);
    metadata(&g, "mrcnn_version", MR_VERSION);

    free(g.written);
    mr_status st = g.status != MR_OK ? g.status : mr_pb_status(&g.pb);
    if (st != MR_OK) {
        mr_pb_free(&g.pb);
        return st;
    }
    if (sum) {
        sum->n_nodes = g.n_nodes;
        sum->n_initializers = g.n_initializers;
        sum->n_weights = g.n_weights;
        sum->image_size = s;
        sum->channels = c->image_channels;
    }
    *bytes = g.pb.data;
    *len = g.pb.len;
    return MR_OK;
}

mr_status mr_export_onnx(const char *weights_path, const char *config_path, const char *out_path,
                         const mr_onnx_options *opt, mr_onnx_summary *sum) {
    mr_onnx_summary local;
    if (!sum) sum = &local;
    memset(sum, 0, sizeof *sum);
    mr_config cfg;
    mr_model m;
    mr_inference_options io = {.allow_damaged = opt && opt->allow_damaged};
    MR_TRY(mr_inference_load_opts(weights_path, config_path, &io, &cfg, &m, NULL));
    uint8_t *bytes = NULL;
    size_t len = 0;
    mr_status st = mr_fold_batchnorms(&m, cfg.net.bn_eps, &sum->n_folded, NULL);
    if (st == MR_OK) st = mr_onnx_build(&cfg, &m, opt && opt->half, &bytes, &len, sum);
    if (st == MR_OK) st = mr_write_file_atomic(out_path, bytes, len, 0644);
    if (st == MR_OK) sum->file_bytes = (int64_t)len;
    free(bytes);
    mr_model_free(&m);
    return st;
}

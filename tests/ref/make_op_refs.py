#!/usr/bin/python3
"""Writes tests/ref/ops_ref.h5: PyTorch references for every primitive op of core/ops.h, read by
tests/test_parity.c. One group per case with inputs, the upstream gradient `dy`, the output `y`
and one gradient `d<input>` per differentiable input, in mrcnn's layouts (NHWC, HWIO, ...).

Run with Debian's python3 (python3-torch, python3-h5py): `make refs`. The reference is computed
in float64 from float32-representable inputs and stored as float32; the seed is fixed, so the
file only changes when this script does.

Group layout (every group has the string attribute `op`, a name from MR_OP_LIST):
  conv2d            x (N,H,W,Cin), w (KH,KW,Cin,Cout), [b (Cout)]; attrs stride, pad (-1 = TF same)
  conv2d_bn         as conv2d, then gamma, beta (Cout); moving_mean, moving_var; eps as for BN
  deconv2x2         x (N,H,W,Cin), w (2,2,Cout,Cin) Keras layout, [b (Cout)]
  batchnorm_frozen  x, gamma, beta, moving_mean, moving_var; eps (1,) dataset and attribute
  batchnorm_batch   as frozen plus momentum; moving_mean_new, moving_var_new after the update
  relu, sigmoid, reshape (new shape = y's shape)      x
  upsample2x_add    x (N,H,W,C), base (N,2H,2W,C)
  add, add_relu     a, b
  maxpool           x; attrs kernel, stride, pad (-1 = TF same)
  linear            x (N,In), w (In,Out) Keras layout, [b (Out)]
  concat            x0..x{n-1}; attrs axis, n
  slice             x; attrs axis, start, len
  gather_rows       x, index (int64, repeats allowed)
  softmax_xent      x (N,C) logits, targets (int64), [weights (N)]
  sigmoid_bce       x logits, targets (float, same shape)
  smooth_l1         x predictions, targets (float, same shape)
Scalar losses are stored with shape (1,) and dy = [1].
"""
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "ops_ref.h5")
SEED = 20240611

torch.set_default_dtype(torch.float64)
GEN = torch.Generator().manual_seed(SEED)


def f32(t):
    """Rounds to float32 and back, so the stored inputs are exactly the computed-on values."""
    return t.to(torch.float32).to(torch.float64)


def randn(*shape, scale=1.0, shift=0.0):
    return f32(torch.randn(*shape, generator=GEN) * scale + shift)


def uniform(*shape, lo=0.0, hi=1.0):
    return f32(torch.rand(*shape, generator=GEN) * (hi - lo) + lo)


def away_from(t, kink, margin):
    """Moves values within `margin` of `kink` to kink +- margin (keeps finite differences and
    float32 rounding off the non-differentiable point)."""
    d = t - kink
    near = d.abs() < margin
    sign = torch.where(d >= 0, torch.ones_like(d), -torch.ones_like(d))
    return f32(torch.where(near, kink + sign * margin, t))


# ---- layout helpers: mrcnn (NHWC, HWIO, Keras) <-> PyTorch (NCHW, OIHW) ------------------------

def nchw(x):
    return x.permute(0, 3, 1, 2)


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def oihw(w_hwio):
    return w_hwio.permute(3, 2, 0, 1)


def tf_same_pads(size, k, stride):
    """TensorFlow "same": out = ceil(in/stride); the odd extra pad pixel goes after."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def pad_nchw(x, k, stride, pad, value):
    """Explicit F.pad for TF same (pad == -1) or symmetric padding (pad >= 0)."""
    if pad == -1:
        top, bottom = tf_same_pads(x.shape[2], k, stride)
        left, right = tf_same_pads(x.shape[3], k, stride)
    else:
        top = bottom = left = right = pad
    return F.pad(x, (left, right, top, bottom), value=value)


# ---- the ops, in mrcnn's layouts ----------------------------------------------------------------

def conv2d(x, w, b=None, *, stride, pad):
    k = w.shape[0]
    assert w.shape[1] == k
    y = F.conv2d(pad_nchw(nchw(x), k, stride, pad, 0.0), oihw(w), b, stride=stride)
    return nhwc(y)


def conv2d_bn(x, w, gamma, beta, b=None, *, stride, pad, moving_mean, moving_var, eps):
    """Convolution then a frozen batch norm, computed unfused: the reference for the fold."""
    return batchnorm_frozen(conv2d(x, w, b, stride=stride, pad=pad), gamma, beta,
                            moving_mean=moving_mean, moving_var=moving_var, eps=eps)


def deconv2x2(x, w, b=None):
    # Keras Conv2DTranspose kernel (2,2,Cout,Cin) -> ConvTranspose2d weight (Cin,Cout,2,2).
    return nhwc(F.conv_transpose2d(nchw(x), w.permute(3, 2, 0, 1), b, stride=2))


def maxpool(x, *, kernel, stride, pad):
    xp = pad_nchw(nchw(x), kernel, stride, pad, float("-inf"))
    return nhwc(F.max_pool2d(xp, kernel, stride))


def upsample2x_add(x, base):
    return base + nhwc(F.interpolate(nchw(x), scale_factor=2, mode="nearest"))


def linear(x, w, b=None):
    return F.linear(x, w.t(), b)  # Keras (in, out) -> torch (out, in)


def bn_rows(x):
    """(..., C) -> (rows, C): batch norm over every axis but the last."""
    return x.reshape(-1, x.shape[-1])


def batchnorm_frozen(x, gamma, beta, *, moving_mean, moving_var, eps):
    y = F.batch_norm(bn_rows(x), moving_mean, moving_var, gamma, beta, training=False, eps=eps)
    return y.reshape(x.shape)


def batchnorm_batch(x, gamma, beta, *, running_mean, running_var, eps, momentum):
    # torch's running update is (1 - m) * old + m * batch with the unbiased batch variance:
    # Keras' momentum 0.99 is torch's 0.01.
    y = F.batch_norm(bn_rows(x), running_mean, running_var, gamma, beta, training=True,
                     momentum=1.0 - momentum, eps=eps)
    return y.reshape(x.shape)


def softmax_xent(x, *, targets, weights=None):
    ce = F.cross_entropy(x, targets, reduction="none")
    if weights is None:
        return ce.mean()
    return (weights * ce).sum() / weights.sum()


# ---- writing ------------------------------------------------------------------------------------

class Writer:
    def __init__(self, f):
        self.f = f
        self.names = set()
        self.ops = set()

    def _data(self, group, name, value):
        if isinstance(value, torch.Tensor):
            value = value.detach().numpy()
        value = np.asarray(value)
        if value.dtype.kind in "iu":
            value = value.astype(np.int64)
        else:
            value = value.astype(np.float32)
        if value.ndim == 0:
            value = value.reshape(1)
        group.create_dataset(name, data=value, track_times=False)

    def case(self, name, op, fn, inputs, consts=None, attrs=None, kwargs=None, floats=None):
        """Runs fn(*inputs.values(), **kwargs) in float64, backpropagates a random dy (1 for a
        scalar) and writes inputs, consts, dy, y and d<input> for every input into group `name`."""
        assert name not in self.names, name
        self.names.add(name)
        self.ops.add(op)
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()}
        y = fn(*leaves.values(), **(kwargs or {}))
        dy = torch.ones_like(y) if y.dim() == 0 else randn(*y.shape)
        grads = torch.autograd.grad(y, list(leaves.values()), dy)
        g = self.f.create_group(name)
        g.attrs["op"] = np.bytes_(op)
        for k, v in (attrs or {}).items():
            g.attrs[k] = np.int64(v)
        for k, v in (floats or {}).items():  # float arguments: dataset (for C) and attribute
            g.attrs[k] = np.float64(v)
            self._data(g, k, np.float32(v))
        for k, v in inputs.items():
            self._data(g, k, v)
        for k, v in (consts or {}).items():
            self._data(g, k, v)
        self._data(g, "dy", dy)
        self._data(g, "y", y)
        for k, d in zip(leaves, grads):
            self._data(g, "d" + k, d)
        return g


def build(w):
    # conv2d: stride 1/2, TF same (symmetric and extra bottom/right pixel), valid, explicit.
    conv_cases = [
        # name, x shape, (k, cin, cout), stride, pad, bias
        ("conv2d_3x3_s1_same", (2, 8, 7, 4), (3, 4, 5), 1, -1, True),
        ("conv2d_3x3_s1_same_nobias", (2, 7, 9, 3), (3, 3, 4), 1, -1, False),
        ("conv2d_3x3_s2_same_even", (2, 8, 10, 3), (3, 3, 4), 2, -1, True),  # pads 0 top, 1 bottom
        ("conv2d_3x3_s2_same_odd", (2, 9, 7, 3), (3, 3, 4), 2, -1, False),   # pads 1 and 1
        ("conv2d_2x2_s1_same", (2, 6, 7, 3), (2, 3, 4), 1, -1, True),        # pad only after
        ("conv2d_3x3_s1_valid", (2, 7, 8, 3), (3, 3, 2), 1, 0, True),
        ("conv2d_1x1_s1", (2, 7, 8, 6), (1, 6, 5), 1, 0, True),              # no-im2col path
        ("conv2d_1x1_s1_nobias", (2, 5, 6, 4), (1, 4, 7), 1, -1, False),
        ("conv2d_1x1_s2_valid", (2, 9, 8, 4), (1, 4, 6), 2, 0, True),        # strided shortcut
        ("conv2d_7x7_s2_pad3", (2, 11, 10, 3), (7, 3, 4), 2, 3, True),       # conv1
        ("conv2d_7x7_s2_pad3_nobias", (2, 8, 9, 3), (7, 3, 4), 2, 3, False),
    ]
    for name, xs, (k, cin, cout), stride, pad, bias in conv_cases:
        assert xs[3] == cin
        inputs = {"x": randn(*xs), "w": randn(k, k, cin, cout, scale=1.0 / np.sqrt(k * k * cin))}
        if bias:
            inputs["b"] = randn(cout, scale=0.5)
        w.case(name, "conv2d", conv2d, inputs, attrs={"stride": stride, "pad": pad},
               kwargs={"stride": stride, "pad": pad})

    # conv2d_bn: the folded conv + frozen BN of the backbone and mask head.
    bn_cases = [
        ("conv2d_bn_3x3_s1_same", (2, 7, 9, 4), (3, 4, 5), 1, -1, True),
        ("conv2d_bn_1x1_s2_nobias", (2, 8, 7, 3), (1, 3, 6), 2, 0, False),
    ]
    for name, xs, (k, cin, cout), stride, pad, bias in bn_cases:
        mm, mv = randn(cout, scale=0.5), uniform(cout, lo=0.2, hi=2.0)
        inputs = {"x": randn(*xs), "w": randn(k, k, cin, cout, scale=1.0 / np.sqrt(k * k * cin)),
                  "gamma": uniform(cout, lo=0.5, hi=1.5), "beta": randn(cout, scale=0.5)}
        if bias:
            inputs["b"] = randn(cout, scale=0.5)
        w.case(name, "conv2d_bn", conv2d_bn, inputs, attrs={"stride": stride, "pad": pad},
               consts={"moving_mean": mm, "moving_var": mv},
               kwargs={"stride": stride, "pad": pad, "moving_mean": mm, "moving_var": mv,
                       "eps": 1e-3}, floats={"eps": 1e-3})

    # deconv2x2 (Keras kernel (2,2,Cout,Cin)).
    w.case("deconv2x2", "deconv2x2", deconv2x2,
           {"x": randn(2, 4, 5, 6), "w": randn(2, 2, 3, 6, scale=0.4), "b": randn(3, scale=0.5)})
    w.case("deconv2x2_nobias", "deconv2x2", deconv2x2,
           {"x": randn(2, 3, 3, 4), "w": randn(2, 2, 5, 4, scale=0.5)})

    # Batch norm, frozen (moving statistics) and batch statistics with the moving update.
    c = 7
    mm, mv = randn(c, scale=0.5), uniform(c, lo=0.2, hi=2.0)
    w.case("batchnorm_frozen", "batchnorm_frozen", batchnorm_frozen,
           {"x": randn(2, 5, 6, c, scale=1.5, shift=0.3), "gamma": uniform(c, lo=0.5, hi=1.5),
            "beta": randn(c, scale=0.5)},
           consts={"moving_mean": mm, "moving_var": mv},
           kwargs={"moving_mean": mm, "moving_var": mv, "eps": 1e-3}, floats={"eps": 1e-3})
    for name, xs in [("batchnorm_batch", (2, 5, 4, 6)), ("batchnorm_batch_2d", (9, 5))]:
        c = xs[-1]
        mm, mv = randn(c, scale=0.5), uniform(c, lo=0.2, hi=2.0)
        run_mean, run_var = mm.clone(), mv.clone()
        w.case(name, "batchnorm_batch", batchnorm_batch,
               {"x": randn(*xs, scale=2.0, shift=0.7), "gamma": uniform(c, lo=0.5, hi=1.5),
                "beta": randn(c, scale=0.5)},
               consts={"moving_mean": mm, "moving_var": mv},
               kwargs={"running_mean": run_mean, "running_var": run_var, "eps": 1e-3,
                       "momentum": 0.99},
               attrs={"update_moving": 1}, floats={"eps": 1e-3, "momentum": 0.99})
        g = w.f[name]
        w._data(g, "moving_mean_new", run_mean)
        w._data(g, "moving_var_new", run_var)

    # Element-wise.
    w.case("relu", "relu", F.relu, {"x": away_from(randn(2, 5, 6, 4), 0.0, 0.05)})
    xs = randn(2, 5, 6, 4, scale=4.0)
    xs[0, 0, 0, :] = torch.tensor([30.0, -30.0, 90.0, -90.0])  # saturated, no overflow
    w.case("sigmoid", "sigmoid", torch.sigmoid, {"x": xs})
    w.case("add", "add", torch.add, {"a": randn(2, 5, 6, 4), "b": randn(2, 5, 6, 4)})
    ar_b = randn(2, 5, 6, 4)
    ar_sum = away_from(randn(2, 5, 6, 4), 0.0, 0.05)  # a + b stays off relu's kink
    w.case("add_relu", "add_relu", lambda a, b: torch.relu(a + b),
           {"a": f32(ar_sum - ar_b), "b": ar_b})

    # Max pool; distinct random values, so no ties decide the gradient.
    pool_cases = [
        ("maxpool_3x3_s2_same_even", (2, 8, 10, 3), 3, 2, -1),  # extra pad pixel bottom/right
        ("maxpool_3x3_s2_same_odd", (2, 9, 7, 3), 3, 2, -1),
        ("maxpool_2x2_s2_valid", (2, 8, 9, 3), 2, 2, 0),         # odd width: last column dropped
        ("maxpool_1x1_s2_valid", (2, 7, 8, 3), 1, 2, 0),         # P6
        ("maxpool_3x3_s2_pad1", (2, 7, 8, 3), 3, 2, 1),
    ]
    for name, xs, k, s, p in pool_cases:
        w.case(name, "maxpool", maxpool, {"x": randn(*xs)},
               attrs={"kernel": k, "stride": s, "pad": p},
               kwargs={"kernel": k, "stride": s, "pad": p})

    w.case("upsample2x_add", "upsample2x_add", upsample2x_add,
           {"x": randn(2, 4, 5, 3), "base": randn(2, 8, 10, 3)})

    w.case("linear", "linear", linear,
           {"x": randn(6, 10), "w": randn(10, 7, scale=0.3), "b": randn(7, scale=0.5)})
    w.case("linear_nobias", "linear", linear, {"x": randn(3, 8), "w": randn(8, 5, scale=0.3)})

    # Shape ops.
    w.case("reshape", "reshape", lambda x: x.reshape(6, 20), {"x": randn(2, 3, 4, 5)})
    w.case("concat_axis1", "concat", lambda a, b: torch.cat([a, b], 1),
           {"x0": randn(2, 4, 5, 3), "x1": randn(2, 3, 5, 3)}, attrs={"axis": 1, "n": 2})
    w.case("concat_axis3", "concat", lambda a, b, c_: torch.cat([a, b, c_], 3),
           {"x0": randn(2, 4, 5, 2), "x1": randn(2, 4, 5, 3), "x2": randn(2, 4, 5, 1)},
           attrs={"axis": 3, "n": 3})
    w.case("concat_axis0", "concat", lambda a, b: torch.cat([a, b], 0),
           {"x0": randn(3, 4), "x1": randn(5, 4)}, attrs={"axis": 0, "n": 2})
    for name, xs, axis, start, length in [("slice_axis3", (2, 4, 5, 8), 3, 2, 3),
                                          ("slice_axis1", (2, 6, 5, 3), 1, 1, 4),
                                          ("slice_axis0", (7, 4), 0, 3, 4)]:
        w.case(name, "slice", lambda x, a=axis, s=start, n=length: x.narrow(a, s, n),
               {"x": randn(*xs)}, attrs={"axis": axis, "start": start, "len": length})
    for name, xs, index in [("gather_rows", (6, 3, 4), [2, 0, 2, 5, 2, 1, 0]),
                            ("gather_rows_2d", (5, 4), [4, 4, 0])]:
        idx = torch.tensor(index, dtype=torch.int64)
        w.case(name, "gather_rows", lambda x, i=idx: x[i], {"x": randn(*xs)},
               consts={"index": idx})

    # Fused losses.
    n, c = 10, 5
    tg = torch.randint(0, c, (n,), generator=GEN)
    w.case("softmax_xent", "softmax_xent", softmax_xent, {"x": randn(n, c, scale=2.0)},
           consts={"targets": tg}, kwargs={"targets": tg})
    tg = torch.randint(0, c, (n,), generator=GEN)
    wt = f32(torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.5, 2.0, 1.0, 0.0, 0.25]))
    w.case("softmax_xent_weighted", "softmax_xent", softmax_xent, {"x": randn(n, c, scale=2.0)},
           consts={"targets": tg, "weights": wt}, kwargs={"targets": tg, "weights": wt})

    z = randn(2, 7, 7, 3, scale=3.0)
    z[0, 0, 0, :] = torch.tensor([40.0, -40.0, 100.0])  # stable from logits
    t = (torch.rand(z.shape, generator=GEN) > 0.5).to(torch.float64)
    t[1, :, :, 0] = uniform(7, 7)  # soft targets too
    w.case("sigmoid_bce", "sigmoid_bce",
           lambda x, tt=t: F.binary_cross_entropy_with_logits(x, tt), {"x": z},
           consts={"targets": t})

    p = randn(12, 4)
    d = away_from(randn(12, 4, scale=1.5), 1.0, 0.05)
    d = away_from(d, -1.0, 0.05)
    d = away_from(d, 0.0, 0.02)
    t = f32(p - d)
    assert (((p - t).abs() > 1.0).sum() > 8) and (((p - t).abs() < 1.0).sum() > 8)
    w.case("smooth_l1", "smooth_l1",
           lambda x, tt=t: F.smooth_l1_loss(x, tt, beta=1.0), {"x": p}, consts={"targets": t})


def main():
    tmp = OUT + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = np.bytes_("mrcnn op parity references")
        f.attrs["generator"] = np.bytes_("tests/ref/make_op_refs.py")
        f.attrs["torch"] = np.bytes_(torch.__version__)
        f.attrs["seed"] = np.int64(SEED)
        w = Writer(f)
        build(w)
    os.replace(tmp, OUT)
    print(f"{os.path.relpath(OUT)}: {len(w.names)} cases, ops {sorted(w.ops)}, "
          f"{os.path.getsize(OUT)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

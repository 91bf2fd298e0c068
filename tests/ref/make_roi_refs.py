#!/usr/bin/python3
"""Writes tests/ref/roi_ref.h5: PyTorch (float64) references for layers/roi_align.c's pyramid ROI
Align in both modes, forward and the gradient with respect to every feature map. Read by
tests/test_roi_parity.c.

  crop_and_resize  Matterport's PyramidROIAlign: TF crop_and_resize on the normalised box, sample
                   (i, j) at y1*(H-1) + i*(y2-y1)*(H-1)/(pool-1) (centre when pool == 1),
                   bilinear, zero outside [0, H-1]. Reproduced with grid_sample(align_corners=True,
                   padding_mode='zeros') masked to zero outside the map, and checked here against a
                   plain loop over TF's kernel. Whether a sample is outside is TF's float32
                   decision (tf_inside): it matters for boxes with an edge exactly on the image
                   border, which the *_edges cases hold; elsewhere samples keep clear of the edges.
  average          torchvision.ops.roi_align(aligned=False, sampling_ratio=2, spatial_scale =
                   1/stride = feature size / image size) on the pixel box y1*(H-1), x1*(W-1),
                   y2*(H-1)+1, x2*(W-1)+1 (the inverse of Matterport's norm_boxes).
Each box goes to level clamp(4 + round_half_even(log2(sqrt(h*w) / (224 / sqrt(image_area)))), 2,
5) (2 for zero-area padding boxes), computed from the float32 box as TF does.

Run with Debian's python3 (python3-torch, python3-torchvision, python3-h5py): `make refs`.
Layout:
  /setups/<setup>/P2..P5   (B,Hl,Wl,C) feature maps (float16 numbers); attrs image_h, image_w
  /cases/<case>            attrs setup, mode ("crop_and_resize" | "average"), pool, image_h,
                           image_w; datasets boxes (N,4) normalised, batch_index (N), levels (N),
                           dy (N,pool,pool,C) upstream gradient, y (N,pool,pool,C) and
                           dP2..dP5 (the gradients of sum(y * dy))
Outputs and gradients are float32 rounded to 16 significant bits (relative error <= 2^-17). Fixed
seeds and no timestamps: the file is the same byte for byte on every run.
"""
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "roi_ref.h5")
SEED = 20240613

torch.set_default_dtype(torch.float64)
GEN = torch.Generator().manual_seed(SEED)
RNG = np.random.RandomState(SEED)
EDGE_MARGIN = 1e-3  # sample coordinates stay this far (feature pixels) from mode boundaries
LEVEL_MARGIN = 1e-3  # log2 values stay this far from the .5 rounding boundaries


def f16(t, bits=7):
    """Rounds to `bits` significant bits in float16: stored exactly and compactly."""
    m, e = torch.frexp(t)
    return torch.ldexp(torch.round(m * 2.0 ** bits) / 2.0 ** bits, e).to(torch.float16).double()


def randn(*shape):
    return f16(torch.randn(*shape, generator=GEN))


# ---- levels ---------------------------------------------------------------------------------

def level_raw(box, image_h, image_w):
    """log2(sqrt(h*w) / (224 / sqrt(area))) with h, w from float32 subtraction, or None for a
    box of no positive area (Matterport's padding goes to level 2)."""
    b = np.asarray(box, np.float32)
    h, w = float(b[2] - b[0]), float(b[3] - b[1])
    if not h * w > 0:
        return None
    return np.log2(np.sqrt(h * w) / (224.0 / np.sqrt(float(image_h) * float(image_w))))


def level_of(box, image_h, image_w):
    raw = level_raw(box, image_h, image_w)
    return 2 if raw is None else int(np.clip(4 + np.rint(raw), 2, 5))


# ---- the two modes ----------------------------------------------------------------------------

def cr_coords(lo, hi, size, pool):
    """crop_and_resize sample positions along one axis (float64 from the float32 box)."""
    i = torch.arange(pool, dtype=torch.float64)
    if pool == 1:
        return torch.tensor([0.5 * (lo + hi) * (size - 1)])
    return lo * (size - 1) + i * (hi - lo) * (size - 1) / (pool - 1)


def tf_inside(lo, hi, size, pool):
    """Which samples TF keeps: its float32 in_y, computed in its order (scale first), within
    [0, size-1]. A box edge at exactly 1.0 puts the last sample a rounding error either side of
    size-1, and TF zeroes the whole row when it lands outside; elsewhere this equals the exact
    test."""
    f = np.float32
    lo, hi, i = f(lo), f(hi), np.arange(pool, dtype=np.float32)
    if pool == 1:
        c = np.array([f(0.5 * float(f(lo + hi)) * (size - 1))])
    else:
        scale = f(f(f(hi - lo) * f(size - 1)) / f(pool - 1))
        c = (f(lo * f(size - 1)) + (i * scale).astype(np.float32)).astype(np.float32)
    return torch.from_numpy((c >= 0) & (c <= size - 1))


def crop_and_resize(feat, boxes, image_index, pool):
    """feat (B,C,H,W); boxes float32 numpy (n,4) -> (n,C,pool,pool)."""
    h, w = feat.shape[2], feat.shape[3]
    out = []
    for box, b in zip(boxes, image_index):
        ys = cr_coords(float(box[0]), float(box[2]), h, pool)
        xs = cr_coords(float(box[1]), float(box[3]), w, pool)
        gy = (2.0 * ys / (h - 1) - 1.0)[:, None].expand(pool, pool)
        gx = (2.0 * xs / (w - 1) - 1.0)[None, :].expand(pool, pool)
        grid = torch.stack([gx, gy], dim=-1)[None]
        r = F.grid_sample(feat[b:b + 1], grid, mode="bilinear", padding_mode="zeros",
                          align_corners=True)[0]
        inside = tf_inside(box[0], box[2], h, pool)[:, None] & tf_inside(box[1], box[3], w,
                                                                         pool)[None, :]
        out.append(r * inside.to(r.dtype))
    return torch.stack(out)


def crop_and_resize_tf_loop(feat, boxes, image_index, pool):
    """TF's CropAndResize kernel, literally (forward only; positions in float64, the keep/zero
    decision in TF's float32): the check on grid_sample above."""
    f = feat.detach().numpy()
    _, c, h, w = f.shape
    out = np.zeros((len(boxes), c, pool, pool))
    for n, (box, b) in enumerate(zip(boxes, image_index)):
        keep_y, keep_x = tf_inside(box[0], box[2], h, pool), tf_inside(box[1], box[3], w, pool)
        y1, x1, y2, x2 = box.astype(np.float64)
        hs = (y2 - y1) * (h - 1) / (pool - 1) if pool > 1 else 0.0
        ws = (x2 - x1) * (w - 1) / (pool - 1) if pool > 1 else 0.0
        for i in range(pool):
            iy = y1 * (h - 1) + i * hs if pool > 1 else 0.5 * (y1 + y2) * (h - 1)
            if not keep_y[i]:
                continue
            iy = min(max(iy, 0.0), h - 1.0)  # exact position on an edge TF keeps
            t, bt = int(np.floor(iy)), int(np.ceil(iy))
            ly = iy - t
            for j in range(pool):
                ix = x1 * (w - 1) + j * ws if pool > 1 else 0.5 * (x1 + x2) * (w - 1)
                if not keep_x[j]:
                    continue
                ix = min(max(ix, 0.0), w - 1.0)
                le, r = int(np.floor(ix)), int(np.ceil(ix))
                lx = ix - le
                top = f[b, :, t, le] + (f[b, :, t, r] - f[b, :, t, le]) * lx
                bot = f[b, :, bt, le] + (f[b, :, bt, r] - f[b, :, bt, le]) * lx
                out[n, :, i, j] = top + (bot - top) * ly
    return out


def pixel_boxes(boxes, image_h, image_w):
    """Normalised (y1,x1,y2,x2) -> image pixels, as layers/roi_align.c maps them."""
    b = boxes.astype(np.float64)
    return np.stack([b[:, 0] * (image_h - 1), b[:, 1] * (image_w - 1),
                     b[:, 2] * (image_h - 1) + 1, b[:, 3] * (image_w - 1) + 1], axis=1)


def average(feat, boxes, image_index, pool, image_h, image_w):
    h, w = feat.shape[2], feat.shape[3]
    scale = h / image_h
    assert w / image_w == scale, "one stride per level"
    px = pixel_boxes(boxes, image_h, image_w)
    rois = torch.tensor(np.stack([image_index.astype(np.float64), px[:, 1], px[:, 0], px[:, 3],
                                  px[:, 2]], axis=1))
    return torchvision.ops.roi_align(feat, rois, output_size=pool, spatial_scale=scale,
                                     sampling_ratio=2, aligned=False)


def sample_margin(mode, box, image_h, image_w, sizes, pool):
    """Distance (feature pixels) from the box's sample points to the points where the mode's
    output jumps (crop_and_resize: 0 and H-1; average: -1 and H), on the level the box goes to.
    crop_and_resize samples that a box edge at exactly 0 or 1 puts on the map's edge do not
    count: there the reference makes TF's own float32 decision (tf_inside)."""
    lvl = level_of(box, image_h, image_w)
    h, w = sizes[lvl - 2]
    b = np.asarray(box, np.float32).astype(np.float64)
    margin = np.inf
    if mode == "crop_and_resize":
        for lo, hi, n in ((b[0], b[2], h), (b[1], b[3], w)):
            c = cr_coords(lo, hi, n, pool).numpy()
            d = np.minimum(np.abs(c), np.abs(c - (n - 1)))
            if pool > 1:
                d[0] = np.inf if lo in (0.0, 1.0) else d[0]
                d[-1] = np.inf if hi in (0.0, 1.0) else d[-1]
            margin = min(margin, d.min())
    else:
        px = pixel_boxes(b[None], image_h, image_w)[0] * (h / image_h)
        for lo, hi, n in ((px[0], px[2], h), (px[1], px[3], w)):
            bin_ = max(hi - lo, 1.0) / pool
            c = np.array([lo + p * bin_ + (s + 0.5) * bin_ / 2
                          for p in range(pool) for s in (0, 1)])
            margin = min(margin, np.abs(c + 1).min(), np.abs(c - n).min())
    return margin


def edge_stats(boxes, levels, pool, image_h, image_w):
    """How many sample rows/columns TF zeroes because a border edge lands them a rounding error
    outside the map, and how many rows/columns the order lo*(n-1) + ((i*(hi-lo))*(n-1))/(pool-1)
    (layers/roi_align.c before it followed TF) would keep or zero the other way."""
    f = np.float32
    dropped = flips = 0
    for box, lvl in zip(boxes, levels):
        h, w = level_sizes(image_h, image_w)[lvl - 2]
        for lo, hi, n in ((box[0], box[2], h), (box[1], box[3], w)):
            keep = tf_inside(lo, hi, n, pool).numpy()
            i = np.arange(pool, dtype=np.float32)
            other = (f(lo * f(n - 1)) + ((i * f(hi - lo)).astype(f) * f(n - 1)).astype(f) /
                     f(pool - 1)).astype(f)
            keep2 = (other >= 0) & (other <= n - 1)
            dropped += int((~keep).sum()) if hi == 1.0 or lo == 1.0 else 0
            flips += int((keep != keep2).sum())
    return dropped, flips


# ---- cases ------------------------------------------------------------------------------------

SETUPS = {
    # name: (batch, channels, image_h, image_w); feature maps at strides 4, 8, 16, 32
    "square128": (2, 3, 128, 128),
    "rect96x128": (2, 3, 96, 128),
}


def level_sizes(image_h, image_w):
    return [((image_h + s - 1) // s, (image_w + s - 1) // s) for s in (4, 8, 16, 32)]


def draw_box(kind, image_h, image_w, mode, pool):
    """A random normalised box of the given kind, clear of level boundaries and sample-edge
    discontinuities. Kinds: ("in", level) inside the image; ("out", level) partly outside;
    ("edge", level) inside with one to four edges exactly on the image border (as clipped
    proposals are)."""
    sizes = level_sizes(image_h, image_w)
    where, want = kind
    for _ in range(100000):
        if where in ("in", "edge"):
            hh, ww = RNG.uniform(0.05, 1.0, 2)
            y1, x1 = RNG.uniform(0, 1 - hh), RNG.uniform(0, 1 - ww)
            if where == "edge":
                snap = RNG.rand(4) < 0.4
                snap[RNG.randint(4)] = True
                y1, x1 = (0.0 if snap[0] else y1), (0.0 if snap[1] else x1)
                hh, ww = (1.0 - y1 if snap[2] else hh), (1.0 - x1 if snap[3] else ww)
        else:
            hh, ww = RNG.uniform(0.1, 4.0, 2)
            y1, x1 = RNG.uniform(-hh + 0.15, 0.85), RNG.uniform(-ww + 0.15, 0.85)
            if 0 <= y1 and y1 + hh <= 1 and 0 <= x1 and x1 + ww <= 1:
                continue
        box = np.array([y1, x1, y1 + hh, x1 + ww], np.float32)
        if where == "edge":  # exactly on the border
            box[2], box[3] = (1.0 if snap[2] else box[2]), (1.0 if snap[3] else box[3])
        if level_of(box, image_h, image_w) != want:
            continue
        raw = level_raw(box, image_h, image_w)
        if abs(raw - np.floor(raw) - 0.5) < LEVEL_MARGIN:
            continue
        if sample_margin(mode, box, image_h, image_w, sizes, pool) < EDGE_MARGIN:
            continue
        return box
    raise SystemExit(f"no box of kind {kind}")


def special_boxes(image_h, image_w, mode, pool):
    """Matterport's zero padding box, a box on the image's top-left corner, one degenerate (zero
    height) box, and one with y1 > y2 and x1 > x2 (TF crops it flipped)."""
    boxes = [np.zeros(4, np.float32),
             np.array([0.0, 0.0, 0.3125, 0.4375], np.float32),
             np.array([0.40625, 0.1875, 0.40625, 0.6875], np.float32),
             np.array([0.84375, 0.78125, 0.21875, 0.34375], np.float32)]
    sizes = level_sizes(image_h, image_w)
    for b in boxes[1:]:
        assert sample_margin(mode, b, image_h, image_w, sizes, pool) >= EDGE_MARGIN, b
    return boxes


def case_boxes(setup, mode, pool, n_random, edges=False):
    _, _, ih, iw = SETUPS[setup]
    kinds = [("in", 2), ("in", 3), ("out", 2), ("out", 3), ("out", 4), ("out", 5)]
    if edges:
        kinds = [("edge", 2), ("edge", 3), ("edge", 2)]
    boxes = special_boxes(ih, iw, mode, pool) if pool > 1 and not edges else []
    n_special = len(boxes)
    i = 0
    while len(boxes) < n_random + n_special:
        box = draw_box(kinds[i % len(kinds)], ih, iw, mode, pool)
        if edges and len(boxes) < n_random // 2:
            # The first half: boxes whose border samples TF zeroes, or that another float order
            # would decide differently (the cases that tell the orders apart).
            dropped, flips = edge_stats(box[None], [level_of(box, ih, iw)], pool, ih, iw)
            if not dropped and not flips:
                continue
        boxes.append(box)
        i += 1
    boxes = np.stack(boxes)
    batch = np.arange(len(boxes)) % SETUPS[setup][0]
    RNG.shuffle(batch)
    return boxes, batch.astype(np.int64)


CASES = [
    # name, setup, mode, pool, random boxes (plus the four special ones when pool > 1, except
    # for the "edges" cases, whose boxes all touch the image border)
    ("crop_and_resize_pool7_square", "square128", "crop_and_resize", 7, 14),
    ("crop_and_resize_pool14_square", "square128", "crop_and_resize", 14, 6),
    ("crop_and_resize_pool7_rect", "rect96x128", "crop_and_resize", 7, 10),
    ("crop_and_resize_pool1_rect", "rect96x128", "crop_and_resize", 1, 12),
    ("crop_and_resize_pool7_edges", "square128", "crop_and_resize", 7, 16),
    ("crop_and_resize_pool14_edges", "square128", "crop_and_resize", 14, 8),
    ("average_pool7_square", "square128", "average", 7, 14),
    ("average_pool14_square", "square128", "average", 14, 6),
    ("average_pool7_rect", "rect96x128", "average", 7, 10),
]


# ---- writing ------------------------------------------------------------------------------------

def round_bits(x, keep=15):
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    u = a.view(np.uint32).astype(np.uint64)
    drop = 23 - keep
    u = ((u + (1 << (drop - 1))) >> drop) << drop
    return u.astype(np.uint32).view(np.float32).reshape(a.shape)


def create_file(path):
    """A new HDF5 1.10-format file (small per-dataset overhead) whose root group stores no
    timestamps, so that the file is the same byte for byte on every run."""
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_LATEST)
    return h5py.File(h5py.h5f.create(path.encode(), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


def group(root, path):
    """The group at `path` under root, created with its missing parents and no timestamps, so
    that the file is the same byte for byte on every run."""
    g = root
    for part in path.strip("/").split("/"):
        if part not in g:
            gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
            gcpl.set_obj_track_times(False)
            h5py.h5g.create(g.id, part.encode(), gcpl=gcpl)
        g = g[part]
    return g


def put(g, name, value, dtype=None):
    if isinstance(value, torch.Tensor):
        value = value.detach().numpy()
    value = np.asarray(value)
    value = value.astype(dtype) if dtype is not None else round_bits(value)
    kw = dict(compression="gzip", compression_opts=9, shuffle=True) if value.size >= 64 else {}
    g.create_dataset(name, data=value, track_times=False, **kw)


def nchw(x):
    return x.permute(0, 3, 1, 2)


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def main():
    tmp = OUT + ".tmp"
    with create_file(tmp) as f:
        f.attrs["format"] = np.bytes_("mrcnn ROI Align parity references")
        f.attrs["generator"] = np.bytes_("tests/ref/make_roi_refs.py")
        f.attrs["torch"] = np.bytes_(torch.__version__)
        f.attrs["torchvision"] = np.bytes_(torchvision.__version__)
        f.attrs["seed"] = np.int64(SEED)
        feats = {}
        for name, (b, c, ih, iw) in SETUPS.items():
            g = group(f, f"setups/{name}")
            g.attrs["image_h"], g.attrs["image_w"] = np.int64(ih), np.int64(iw)
            feats[name] = [randn(b, h, w, c) for h, w in level_sizes(ih, iw)]  # NHWC
            for lvl, t in enumerate(feats[name]):
                put(g, f"P{lvl + 2}", t, np.float16)
        for name, setup, mode, pool, n_random in CASES:
            _, c, ih, iw = SETUPS[setup]
            boxes, batch = case_boxes(setup, mode, pool, n_random, edges="edges" in name)
            levels = np.array([level_of(b, ih, iw) for b in boxes])
            leaves = [t.clone().requires_grad_(True) for t in feats[setup]]
            y = [None] * len(boxes)
            for lvl in range(2, 6):
                idx = np.nonzero(levels == lvl)[0]
                if len(idx) == 0:
                    continue
                fm = nchw(leaves[lvl - 2])
                if mode == "crop_and_resize":
                    r = crop_and_resize(fm, boxes[idx], batch[idx], pool)
                    check = crop_and_resize_tf_loop(fm, boxes[idx], batch[idx], pool)
                    assert np.abs(r.detach().numpy() - check).max() < 1e-12, name
                else:
                    r = average(fm, boxes[idx], batch[idx], pool, ih, iw)
                for k, i in enumerate(idx):
                    y[i] = r[k]
            y = nhwc(torch.stack(y))
            dy = randn(*y.shape)
            grads = torch.autograd.grad(y, leaves, dy, allow_unused=True)
            g = group(f, f"cases/{name}")
            g.attrs["setup"] = np.bytes_(setup)
            g.attrs["mode"] = np.bytes_(mode)
            g.attrs["pool"] = np.int64(pool)
            g.attrs["image_h"], g.attrs["image_w"] = np.int64(ih), np.int64(iw)
            put(g, "boxes", boxes, np.float32)
            put(g, "batch_index", batch, np.int8)
            put(g, "levels", levels, np.int8)
            put(g, "dy", dy, np.float16)
            put(g, "y", y)
            for lvl, (leaf, d) in enumerate(zip(leaves, grads)):
                put(g, f"dP{lvl + 2}", torch.zeros_like(leaf) if d is None else d)
            note = ""
            if mode == "crop_and_resize" and pool > 1:
                dropped, flips = edge_stats(boxes, levels, pool, ih, iw)
                note = (f"; TF zeroes {dropped} border sample rows/columns, another float order "
                        f"would decide {flips} differently")
            print(f"{name}: {len(boxes)} boxes, levels {np.bincount(levels, minlength=6)[2:]}"
                  f"{note}", file=sys.stderr)
    os.replace(tmp, OUT)
    print(f"{os.path.relpath(OUT)}: {len(CASES)} cases, {os.path.getsize(OUT)} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()

"""Writes tests/ref/boxes_ref.h5: PyTorch/torchvision references for layers/boxes.c and
layers/targets.c (NMS, IoU matrix, TF crop_and_resize, skimage-style resize) that
tests/test_boxes.c and tests/test_targets.c compare against. Run with Debian's python3 (needs
python3-torch, python3-torchvision, python3-h5py): `make refs` or
`cd tests/ref && /usr/bin/python3 make_box_refs.py`.
"""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import torchvision

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boxes_ref.h5")
rng = np.random.default_rng(20240611)
torch.set_default_dtype(torch.float64)


def to_xyxy(b):
    """(y1, x1, y2, x2) -> torchvision's (x1, y1, x2, y2)."""
    return b[:, [1, 0, 3, 2]]


def random_boxes(n, size=100.0, min_side=2.0, max_side=40.0):
    y1 = rng.uniform(0, size, n)
    x1 = rng.uniform(0, size, n)
    h = rng.uniform(min_side, max_side, n)
    w = rng.uniform(min_side, max_side, n)
    return np.stack([y1, x1, y1 + h, x1 + w], 1).astype(np.float32)


def greedy_nms(boxes, scores, thr):
    """Plain greedy NMS in float32, ties by lower index: the semantics the C code promises."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    keep = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in order:
        ok = True
        for j in keep:
            yy1 = max(boxes[i, 0], boxes[j, 0])
            xx1 = max(boxes[i, 1], boxes[j, 1])
            yy2 = min(boxes[i, 2], boxes[j, 2])
            xx2 = min(boxes[i, 3], boxes[j, 3])
            inter = np.float32(max(yy2 - yy1, 0)) * np.float32(max(xx2 - xx1, 0))
            if inter / (area[i] + area[j] - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return np.array(keep, dtype=np.int64)


def clustered_boxes(n, clusters=25):
    """Boxes jittered around a few centres, so IoUs spread across the threshold."""
    base = random_boxes(clusters, min_side=8.0)
    pick = rng.integers(0, clusters, n)
    jitter = rng.normal(0, 1.5, (n, 4)).astype(np.float32)
    b = base[pick] + jitter
    b[:, 2] = np.maximum(b[:, 2], b[:, 0] + 1)
    b[:, 3] = np.maximum(b[:, 3], b[:, 1] + 1)
    return b.astype(np.float32)


def nms_case(f, name, n, thr):
    boxes = clustered_boxes(n)
    # Exact duplicates and near-duplicates so suppression chains and ties happen.
    boxes[n // 2 : n // 2 + 10] = boxes[:10]
    boxes[n // 2 + 10 : n // 2 + 20] = boxes[10:20] + np.float32(0.5)
    # Scores on a coarse grid: many exact ties, broken by index.
    scores = (rng.integers(0, 20, n) / 20.0).astype(np.float32)
    keep = torchvision.ops.nms(
        torch.from_numpy(to_xyxy(boxes)).float(), torch.from_numpy(scores).float(), thr
    ).numpy()
    mine = greedy_nms(boxes, scores, np.float32(thr))
    assert np.array_equal(keep, mine), "torchvision nms breaks ties differently than assumed"
    g = f.create_group(name)
    g["boxes"] = boxes
    g["scores"] = scores
    g["threshold"] = np.array([thr], dtype=np.float32)
    g["keep"] = keep.astype(np.int64)


def iou_case(f):
    a = random_boxes(40)
    b = random_boxes(30)
    b[:5] = a[:5]  # identical pairs give exactly 1
    b[5] = [10, 10, 60, 60]
    a[5] = [20, 20, 30, 30]  # containment
    iou = torchvision.ops.box_iou(
        torch.from_numpy(to_xyxy(a)).double(), torch.from_numpy(to_xyxy(b)).double()
    ).numpy()
    g = f.create_group("iou")
    g["a"] = a
    g["b"] = b
    g["iou"] = iou.astype(np.float32)


def crop_and_resize_case(f):
    """TF crop_and_resize = grid_sample(align_corners=True) when every sample is inside."""
    H, W, oh, ow = 13, 17, 7, 9
    image = rng.uniform(-1, 1, (H, W)).astype(np.float32)
    boxes = np.array(
        [
            [0.0, 0.0, 1.0, 1.0],
            [0.1, 0.2, 0.7, 0.9],
            [0.33, 0.05, 0.34, 0.95],  # very thin
            [0.8, 0.6, 0.2, 0.1],  # flipped: TF samples it upside down
            [0.25, 0.25, 0.75, 0.75],
            [0.0, 0.5, 0.999, 0.5001],
        ],
        dtype=np.float32,
    )
    out = []
    for b in boxes.astype(np.float64):
        ys = b[0] * (H - 1) + np.arange(oh) * (b[2] - b[0]) * (H - 1) / (oh - 1)
        xs = b[1] * (W - 1) + np.arange(ow) * (b[3] - b[1]) * (W - 1) / (ow - 1)
        gy, gx = np.meshgrid(2 * ys / (H - 1) - 1, 2 * xs / (W - 1) - 1, indexing="ij")
        grid = torch.from_numpy(np.stack([gx, gy], -1)[None])
        img = torch.from_numpy(image.astype(np.float64))[None, None]
        out.append(F.grid_sample(img, grid, mode="bilinear", align_corners=True)[0, 0].numpy())
    g = f.create_group("crop_and_resize")
    g["image"] = image
    g["boxes"] = boxes
    g["out"] = np.stack(out).astype(np.float32)


def skimage_resize(m, oh, ow):
    """skimage.transform.resize(order=1, mode='constant', cval=0, clip=True): half-pixel
    centres and zero neighbours outside = grid_sample(align_corners=False, zeros padding)."""
    ih, iw = m.shape
    ys = (np.arange(oh) + 0.5) * ih / oh - 0.5
    xs = (np.arange(ow) + 0.5) * iw / ow - 0.5
    gy, gx = np.meshgrid((2 * ys + 1) / ih - 1, (2 * xs + 1) / iw - 1, indexing="ij")
    grid = torch.from_numpy(np.stack([gx, gy], -1)[None])
    img = torch.from_numpy(m.astype(np.float64))[None, None]
    r = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    r = r[0, 0].numpy()
    lo, hi = m.min(), m.max()
    keep_zero = not (lo <= 0 <= hi)
    zero = r == 0
    r = np.clip(r, lo, hi)
    if keep_zero:
        r[zero] = 0
    return r


def resize_case(f):
    g = f.create_group("resize")
    yy, xx = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    blob = np.exp(-((yy - 13.0) ** 2 + (xx - 15.0) ** 2) / 60.0)
    mask = (0.05 + 0.9 * blob + rng.uniform(-0.03, 0.03, (28, 28))).astype(np.float32)
    g["mask"] = mask
    for k, (oh, ow) in enumerate([(40, 23), (13, 57), (9, 9), (28, 28), (100, 71)]):
        r = skimage_resize(mask.astype(np.float64), oh, ow)
        g[f"out{k}"] = r.astype(np.float32)


def negative_count_case(f):
    """DetectionTargetLayer's negative count: TF float32 of 1/0.33 times float32(P)."""
    r = np.float32(1.0 / 0.33)
    p = np.arange(0, 67)
    neg = np.array([int(r * np.float32(v)) - v for v in p], dtype=np.int64)
    f["negative_count"] = neg


with h5py.File(OUT, "w") as f:
    f.attrs["generator"] = "tests/ref/make_box_refs.py torch %s torchvision %s" % (
        torch.__version__,
        torchvision.__version__,
    )
    nms_case(f, "nms", 300, 0.7)
    nms_case(f, "nms05", 120, 0.5)
    iou_case(f)
    crop_and_resize_case(f)
    resize_case(f)
    negative_count_case(f)
print("wrote", OUT, os.path.getsize(OUT), "bytes")

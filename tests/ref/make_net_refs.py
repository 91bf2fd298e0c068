#!/usr/bin/python3
"""Writes tests/ref/net_ref.h5: a PyTorch (float64) re-statement of the whole Matterport network at
configs/tiny.json's widths (ResNet-50 layout, frozen batch norm, FPN, shared RPN, box and mask
heads with crop_and_resize ROI Align), its five losses on a fixed set of targets, and the gradient
of their sum with respect to every trainable parameter. Read by tests/test_net_parity.c.

Run with Debian's python3 (python3-torch, python3-h5py): `make refs`. Fixed seed and no
timestamps: the file is the same byte for byte until this script or configs/tiny.json changes.
Layout (mrcnn's: NHWC, conv kernels HWIO, dense (in,out), deconv (2,2,out,in)):
  /params/<layer>/<weight>   every parameter under its Matterport name, held exactly: kernels are
                             drawn as 7-bit float16 numbers, vectors stored as float32 (some
                             betas/biases are nudged, see clear_kinks)
  /inputs/images             (B,H,W,C) molded images (float16, exact)
  /targets/rpn_match         (B,anchors) int8 1/-1/0
  /targets/rpn_bbox          (B,RPN_TRAIN_ANCHORS_PER_IMAGE,4): row j of image b pairs with b's
                             j-th positive anchor (increasing index); rows past the positives hold
                             noise that the loss must ignore
  /targets/rois              (B,TRAIN_ROIS_PER_IMAGE,4) normalised; positives, negatives, zero pad
  /targets/roi_class         (B,TRAIN_ROIS_PER_IMAGE) int8 (0 = background or padding)
  /targets/roi_deltas        (B,TRAIN_ROIS_PER_IMAGE,4) (noise on non-positive rows, ignored)
  /targets/roi_masks         (B,TRAIN_ROIS_PER_IMAGE,28,28) uint8 0/1 (noise on non-positive rows)
  /outputs/P2..P6            (B,h,w,TOP_DOWN_PYRAMID_SIZE)  (the ROIs, inside the 128-pixel
                             image, all go to P2 or P3)
  /outputs/rpn_class_logits  (B,anchors,2);  /outputs/rpn_bbox (B,anchors,4)
  /outputs/mrcnn_class_logits (B*R,NUM_CLASSES); /outputs/mrcnn_bbox (B*R,NUM_CLASSES*4)
  /outputs/mrcnn_mask_logits (positive rows in batch-major order,28,28,NUM_CLASSES)
  /losses/<name>             the five Matterport losses and total_loss, float64 (1,)
  /grads/<layer>/<weight>    d total_loss / d parameter, every trainable parameter (moving
                             statistics get none)
Outputs are float32 rounded to 16 significant bits (relative error <= 2^-17), gradients to 13
(<= 2^-14), so that the file stays under 3 MB once shuffled and deflated; the C test's tolerances
are far wider. The file uses the HDF5 1.10 format (small per-dataset overhead).
"""
import json
import os
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(ROOT, "configs", "tiny.json")
OUT = os.path.join(HERE, "net_ref.h5")
SEED = 20240612
# Explicit mantissa bits kept in the stored outputs (relative error <= 2^-17) and gradients
# (<= 2^-14, under a tenth of the C test's relative gradient tolerance): the file stays < 3 MB.
OUT_BITS, GRAD_BITS = 15, 12
# No ReLU input closer than this to 0 (see clear_kinks).
KINK_WINDOW = 1e-5

torch.set_default_dtype(torch.float64)
GEN = torch.Generator().manual_seed(SEED)
RNG = np.random.RandomState(SEED)


def f16(t, bits=7):
    """Rounds to `bits` significant bits, then to float16: values the file stores exactly (and
    compactly: the low mantissa bits are zero and deflate well)."""
    m, e = torch.frexp(t)
    t = torch.ldexp(torch.round(m * 2.0 ** bits) / 2.0 ** bits, e)
    return t.to(torch.float16).to(torch.float64)


def randn(*shape, scale=1.0, shift=0.0):
    return f16(torch.randn(*shape, generator=GEN) * scale + shift)


def uniform(*shape, lo=0.0, hi=1.0):
    return f16(torch.rand(*shape, generator=GEN) * (hi - lo) + lo)


# ---- configuration: tiny.json over Matterport's defaults ---------------------------------------
# Only widths and sizes are read: the recipe keys (IMAGE_NORMALIZATION, LOSS_WEIGHTS, ...) stay
# Matterport's here, as tests/test_net_parity.c sets them (load_tiny_matterport).

class Cfg:
    def __init__(self, path):
        with open(path) as f:
            j = json.load(f)
        self.depth = {"resnet50": 50, "resnet101": 101}[j.get("BACKBONE", "resnet101")]
        self.filters = j.get("BACKBONE_FILTERS", 64)
        self.pyramid = j.get("TOP_DOWN_PYRAMID_SIZE", 256)
        self.rpn_depth = j.get("RPN_CONV_DEPTH", 512)
        self.fc = j.get("FPN_CLASSIF_FC_LAYERS_SIZE", 1024)
        self.num_classes = j.get("NUM_CLASSES", len(j.get("CLASS_NAMES", ["BG", "x"])))
        self.channels = j.get("IMAGE_CHANNEL_COUNT", 3)
        self.image = j.get("IMAGE_MAX_DIM", 1024)
        self.rpn_train_anchors = j.get("RPN_TRAIN_ANCHORS_PER_IMAGE", 256)
        self.rois = j.get("TRAIN_ROIS_PER_IMAGE", 200)
        self.batch = j.get("BATCH_SIZE", 2)
        self.strides = j.get("BACKBONE_STRIDES", [4, 8, 16, 32, 64])
        self.ratios = j.get("RPN_ANCHOR_RATIOS", [0.5, 1, 2])
        self.pool, self.mask_pool, self.mask_shape = 7, 14, 28
        for key in ("POOL_SIZE", "MASK_POOL_SIZE", "MASK_SHAPE", "RPN_ANCHOR_STRIDE"):
            assert key not in j, f"{key}: this script assumes Matterport's default"
        self.bn_eps = 1e-3
        self.anchors_per_location = len(self.ratios)
        self.level_sizes = [(self.image + s - 1) // s for s in self.strides]
        self.n_anchors = self.anchors_per_location * sum(n * n for n in self.level_sizes)


# ---- parameters, declared in Matterport's names and layouts --------------------------------------

class Params:
    def __init__(self):
        self.values = {}   # name -> float64 tensor (float16-exact)
        self.trainable = {}

    def add(self, name, value, trainable=True):
        assert name not in self.values, name
        self.values[name] = value
        self.trainable[name] = trainable

    def conv(self, name, k, cin, cout, gain=1.0):
        self.add(f"{name}/kernel", randn(k, k, cin, cout, scale=gain / np.sqrt(k * k * cin)))
        self.add(f"{name}/bias", randn(cout, scale=0.1))

    def bn(self, name, c, gamma=(0.6, 1.2)):
        self.add(f"{name}/gamma", uniform(c, lo=gamma[0], hi=gamma[1]))
        self.add(f"{name}/beta", randn(c, scale=0.1))
        self.add(f"{name}/moving_mean", randn(c, scale=0.2), trainable=False)
        self.add(f"{name}/moving_variance", uniform(c, lo=0.5, hi=2.0), trainable=False)

    def dense(self, name, cin, cout):
        self.add(f"{name}/kernel", randn(cin, cout, scale=1.0 / np.sqrt(cin)))
        self.add(f"{name}/bias", randn(cout, scale=0.1))


def stage_blocks(depth, stage):
    return {50: [3, 4, 6, 3], 101: [3, 4, 23, 3]}[depth][stage - 2]


def declare(cfg):
    p = Params()
    base = cfg.filters
    p.conv("conv1", 7, cfg.channels, base)
    p.bn("bn_conv1", base)
    cin = base
    for stage in range(2, 6):
        f1 = base << (stage - 2)
        for k in range(stage_blocks(cfg.depth, stage)):
            blk = chr(ord("a") + k)
            p.conv(f"res{stage}{blk}_branch2a", 1, cin, f1)
            p.bn(f"bn{stage}{blk}_branch2a", f1)
            p.conv(f"res{stage}{blk}_branch2b", 3, f1, f1)
            p.bn(f"bn{stage}{blk}_branch2b", f1)
            p.conv(f"res{stage}{blk}_branch2c", 1, f1, 4 * f1)
            p.bn(f"bn{stage}{blk}_branch2c", 4 * f1, gamma=(0.3, 0.6))  # tame residual growth
            if k == 0:
                p.conv(f"res{stage}{blk}_branch1", 1, cin, 4 * f1)
                p.bn(f"bn{stage}{blk}_branch1", 4 * f1, gamma=(0.3, 0.6))
            cin = 4 * f1
    d = cfg.pyramid
    for lvl in (5, 4, 3, 2):  # C{lvl} has 4 * (base << (lvl - 2)) channels
        p.conv(f"fpn_c{lvl}p{lvl}", 1, base << lvl, d, gain=0.7)
    for lvl in (2, 3, 4, 5):
        p.conv(f"fpn_p{lvl}", 3, d, d)
    a = cfg.anchors_per_location
    p.conv("rpn_conv_shared", 3, d, cfg.rpn_depth, gain=1.4)
    p.conv("rpn_class_raw", 1, cfg.rpn_depth, 2 * a, gain=1.5)
    p.conv("rpn_bbox_pred", 1, cfg.rpn_depth, 4 * a, gain=1.5)
    p.conv("mrcnn_class_conv1", cfg.pool, d, cfg.fc)
    p.bn("mrcnn_class_bn1", cfg.fc)
    p.conv("mrcnn_class_conv2", 1, cfg.fc, cfg.fc)
    p.bn("mrcnn_class_bn2", cfg.fc)
    p.dense("mrcnn_class_logits", cfg.fc, cfg.num_classes)
    p.dense("mrcnn_bbox_fc", cfg.fc, 4 * cfg.num_classes)
    for i in range(1, 5):
        p.conv(f"mrcnn_mask_conv{i}", 3, d, d)
        p.bn(f"mrcnn_mask_bn{i}", d)
    # Conv2DTranspose: Keras kernel (kh, kw, out, in).
    p.add("mrcnn_mask_deconv/kernel", randn(2, 2, d, d, scale=1.0 / np.sqrt(d)))
    p.add("mrcnn_mask_deconv/bias", randn(d, scale=0.1))
    p.conv("mrcnn_mask", 1, d, cfg.num_classes, gain=1.5)
    return p


# ---- the network, NCHW inside, kernels converted from mrcnn's layouts ---------------------------

class Net:
    def __init__(self, cfg, w):
        self.cfg, self.w = cfg, w
        self.relu_inputs, self.pool_margins, self.sample_coords = [], [], []

    def conv(self, x, name, stride=1, pad="valid"):
        k = self.w[f"{name}/kernel"]
        ksz = k.shape[0]
        if pad == "same":  # TensorFlow: out = ceil(in/stride), odd extra pixel after
            pads = []
            for size in (x.shape[3], x.shape[2]):
                out = (size + stride - 1) // stride
                total = max((out - 1) * stride + ksz - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        elif isinstance(pad, int):
            x = F.pad(x, (pad, pad, pad, pad))
        return F.conv2d(x, k.permute(3, 2, 0, 1), self.w[f"{name}/bias"], stride=stride)

    def bn(self, x, name):
        w = self.w
        return F.batch_norm(x, w[f"{name}/moving_mean"], w[f"{name}/moving_variance"],
                            w[f"{name}/gamma"], w[f"{name}/beta"], training=False,
                            eps=self.cfg.bn_eps)

    def relu(self, x, knob):
        """ReLU; `knob` names the parameter vector whose entry c adds straight to channel c of x
        (a batch-norm beta or a conv bias), which clear_kinks() may nudge."""
        self.relu_inputs.append((x.detach(), knob))
        return F.relu(x)

    def maxpool3x3s2_same(self, x):
        h, w = x.shape[2:]
        pads = []
        for size in (w, h):
            out = (size + 1) // 2
            total = max((out - 1) * 2 + 3 - size, 0)
            pads += [total // 2, total - total // 2]
        xp = F.pad(x, pads, value=float("-inf"))
        # Margin between the best and second-best value of every window (ties flip gradients).
        win = xp.detach().unfold(2, 3, 2).unfold(3, 3, 2).reshape(*xp.shape[:2], -1, 9)
        top2 = win.topk(2, dim=-1).values
        live = top2[..., 0] > 0  # ties among ReLU zeros pass no gradient either way
        self.pool_margins.append((top2[..., 0] - top2[..., 1])[live].min().item())
        return F.max_pool2d(xp, 3, 2)

    def bottleneck(self, x, stage, blk, stride, projection):
        c, b = f"res{stage}{blk}_branch", f"bn{stage}{blk}_branch"
        y = self.relu(self.bn(self.conv(x, c + "2a", stride), b + "2a"), b + "2a/beta")
        y = self.relu(self.bn(self.conv(y, c + "2b", 1, "same"), b + "2b"), b + "2b/beta")
        y = self.bn(self.conv(y, c + "2c"), b + "2c")
        short = self.bn(self.conv(x, c + "1", stride), b + "1") if projection else x
        return self.relu(y + short, b + "2c/beta")

    def features(self, images):
        cfg = self.cfg
        x = images.permute(0, 3, 1, 2)
        x = self.relu(self.bn(self.conv(x, "conv1", 2, 3), "bn_conv1"), "bn_conv1/beta")
        x = self.maxpool3x3s2_same(x)
        c = []
        for stage in range(2, 6):
            for k in range(stage_blocks(cfg.depth, stage)):
                x = self.bottleneck(x, stage, chr(ord("a") + k), 2 if k == 0 and stage > 2 else 1,
                                    k == 0)
            c.append(x)
        s = [None] * 4
        s[3] = self.conv(c[3], "fpn_c5p5")
        for lvl in (2, 1, 0):  # pre-smoothing sums go down, nearest x2
            up = F.interpolate(s[lvl + 1], scale_factor=2, mode="nearest")
            s[lvl] = up + self.conv(c[lvl], f"fpn_c{lvl + 2}p{lvl + 2}")
        p = [self.conv(s[i], f"fpn_p{i + 2}", 1, "same") for i in range(4)]
        p.append(p[3][:, :, ::2, ::2])  # P6: MaxPooling2D(1, strides 2)
        return p

    def rpn(self, p):
        a = self.cfg.anchors_per_location
        logits, deltas = [], []
        for f in p:
            shared = self.relu(self.conv(f, "rpn_conv_shared", 1, "same"), "rpn_conv_shared/bias")
            cls = self.conv(shared, "rpn_class_raw").permute(0, 2, 3, 1)  # channel a*2+k
            box = self.conv(shared, "rpn_bbox_pred").permute(0, 2, 3, 1)
            n = cls.shape[1] * cls.shape[2] * a
            logits.append(cls.reshape(cls.shape[0], n, 2))  # order y, x, anchor
            deltas.append(box.reshape(box.shape[0], n, 4))
        return torch.cat(logits, 1), torch.cat(deltas, 1)

    # -- Matterport's PyramidROIAlign: level per box, tf.image.crop_and_resize on that level --

    def roi_levels(self, boxes):
        """Level 2..5 per box, in float32 box arithmetic as TF (and the C code) does it."""
        b = boxes.astype(np.float32)
        h = (b[:, 2] - b[:, 0]).astype(np.float64)
        w = (b[:, 3] - b[:, 1]).astype(np.float64)
        area = float(self.cfg.image) ** 2
        levels = np.full(len(b), 2, np.int64)
        ok = h * w > 0
        raw = np.log2(np.sqrt(h[ok] * w[ok]) / (224.0 / np.sqrt(area)))
        frac = np.abs(raw - np.floor(raw) - 0.5)
        assert frac.size == 0 or frac.min() > 1e-3, "a box sits on a level boundary"
        levels[ok] = np.clip(4 + np.rint(raw), 2, 5).astype(np.int64)
        return levels

    def crop_and_resize(self, feat, boxes, image_index, pool):
        """TF crop_and_resize on normalised boxes: sample (i, j) at y1*(H-1) + i*(y2-y1)*(H-1)/
        (pool-1); bilinear via grid_sample(align_corners=True), zero outside [0, H-1]."""
        h, w = feat.shape[2], feat.shape[3]
        b = torch.from_numpy(boxes.astype(np.float32).astype(np.float64))
        i = torch.arange(pool, dtype=torch.float64)
        ys = b[:, 0:1] * (h - 1) + i * (b[:, 2:3] - b[:, 0:1]) * (h - 1) / (pool - 1)
        xs = b[:, 1:2] * (w - 1) + i * (b[:, 3:4] - b[:, 1:2]) * (w - 1) / (pool - 1)
        self.sample_coords.append((ys.clone(), h))
        self.sample_coords.append((xs.clone(), w))
        gy = 2.0 * ys / (h - 1) - 1.0
        gx = 2.0 * xs / (w - 1) - 1.0
        n = len(boxes)
        grid = torch.stack([gx[:, None, :].expand(n, pool, pool),
                            gy[:, :, None].expand(n, pool, pool)], dim=-1)
        src = feat[torch.from_numpy(image_index.astype(np.int64))]
        out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        inside = (((ys >= 0) & (ys <= h - 1))[:, :, None] & ((xs >= 0) & (xs <= w - 1))[:, None, :])
        return out * inside[:, None, :, :].to(out.dtype)

    def roi_align(self, p, boxes, image_index, pool):
        levels = self.roi_levels(boxes)
        out = [None] * len(boxes)
        for lvl in range(2, 6):
            idx = np.nonzero(levels == lvl)[0]
            if len(idx) == 0:
                continue
            r = self.crop_and_resize(p[lvl - 2], boxes[idx], image_index[idx], pool)
            for k, i in enumerate(idx):
                out[i] = r[k]
        return torch.stack(out), levels

    def box_head(self, p, boxes, image_index):
        x, levels = self.roi_align(p, boxes, image_index, self.cfg.pool)
        x = self.relu(self.bn(self.conv(x, "mrcnn_class_conv1"), "mrcnn_class_bn1"),
                      "mrcnn_class_bn1/beta")
        x = self.relu(self.bn(self.conv(x, "mrcnn_class_conv2"), "mrcnn_class_bn2"),
                      "mrcnn_class_bn2/beta")
        x = x.reshape(x.shape[0], -1)
        w = self.w
        logits = F.linear(x, w["mrcnn_class_logits/kernel"].t(), w["mrcnn_class_logits/bias"])
        deltas = F.linear(x, w["mrcnn_bbox_fc/kernel"].t(), w["mrcnn_bbox_fc/bias"])
        return logits, deltas, levels

    def mask_head(self, p, boxes, image_index):
        x, _ = self.roi_align(p, boxes, image_index, self.cfg.mask_pool)
        for i in range(1, 5):
            x = self.relu(self.bn(self.conv(x, f"mrcnn_mask_conv{i}", 1, "same"),
                                  f"mrcnn_mask_bn{i}"), f"mrcnn_mask_bn{i}/beta")
        w = self.w
        x = self.relu(F.conv_transpose2d(x, w["mrcnn_mask_deconv/kernel"].permute(3, 2, 0, 1),
                                         w["mrcnn_mask_deconv/bias"], stride=2),
                      "mrcnn_mask_deconv/bias")
        return self.conv(x, "mrcnn_mask").permute(0, 2, 3, 1)  # (n, 28, 28, classes)


# ---- Matterport's five losses (section 8) -----------------------------------------------------

def smooth_l1(d):
    ad = d.abs()
    return torch.where(ad < 1.0, 0.5 * d * d, ad - 0.5)


def losses(cfg, rpn_logits, rpn_deltas, class_logits, bbox, mask_logits, t):
    match = torch.from_numpy(t["rpn_match"].astype(np.int64))
    sel = match.reshape(-1) != 0
    rpn_class = F.cross_entropy(rpn_logits.reshape(-1, 2)[sel],
                                (match.reshape(-1)[sel] == 1).to(torch.int64))
    pred, target = [], []
    for b in range(cfg.batch):  # positives in anchor order pair with the first rows (batch_pack)
        pos = torch.nonzero(match[b] == 1)[:, 0]
        pred.append(rpn_deltas[b, pos])
        target.append(torch.from_numpy(t["rpn_bbox"][b, :len(pos)].astype(np.float64)))
    rpn_bbox = smooth_l1(torch.cat(pred) - torch.cat(target)).mean()

    ids = torch.from_numpy(t["roi_class"].reshape(-1).astype(np.int64))
    ce = F.cross_entropy(class_logits, ids, reduction="none")
    weight = torch.ones_like(ce)  # active_class_ids all 1: every predicted class counts
    mrcnn_class = (ce * weight).sum() / weight.sum()
    pos = torch.nonzero(ids > 0)[:, 0]
    d = bbox.reshape(-1, cfg.num_classes, 4)[pos, ids[pos]]
    td = torch.from_numpy(t["roi_deltas"].reshape(-1, 4).astype(np.float64))[pos]
    mrcnn_bbox = smooth_l1(d - td).mean()
    m = mask_logits.permute(0, 3, 1, 2)[torch.arange(len(pos)), ids[pos]]  # GT channel
    tm = torch.from_numpy(t["roi_masks"].reshape(-1, cfg.mask_shape, cfg.mask_shape)
                          .astype(np.float64))[pos]
    mrcnn_mask = F.binary_cross_entropy_with_logits(m, tm)  # mean over num_pos * 28 * 28
    return {"rpn_class_loss": rpn_class, "rpn_bbox_loss": rpn_bbox,
            "mrcnn_class_loss": mrcnn_class, "mrcnn_bbox_loss": mrcnn_bbox,
            "mrcnn_mask_loss": mrcnn_mask}


# ---- the fixed targets --------------------------------------------------------------------------

def level_of(cfg, box):
    h, w = np.float32(box[2]) - np.float32(box[0]), np.float32(box[3]) - np.float32(box[1])
    if h * w <= 0:
        return 2
    raw = np.log2(np.sqrt(float(h) * float(w)) / (224.0 / cfg.image))
    return int(np.clip(4 + np.rint(raw), 2, 5))


def random_box(cfg, want_level):
    """A normalised box inside [0, 1] whose level is want_level, away from level boundaries
    (main() then checks that no crop_and_resize sample sits near a map edge)."""
    while True:
        size = RNG.uniform(0.08, 0.95, 2)
        y1, x1 = RNG.uniform(0.0, 1.0 - size[0]), RNG.uniform(0.0, 1.0 - size[1])
        box = np.array([y1, x1, y1 + size[0], x1 + size[1]], np.float32)
        if level_of(cfg, box) != want_level:
            continue
        h, w = float(box[2] - box[0]), float(box[3] - box[1])
        raw = np.log2(np.sqrt(h * w) / (224.0 / cfg.image))
        if abs(raw - np.floor(raw) - 0.5) < 0.02:
            continue
        return box


def make_targets(cfg):
    b_, a_ = cfg.batch, cfg.n_anchors
    t = {}
    match = np.zeros((b_, a_), np.int8)
    rpn_bbox = np.zeros((b_, cfg.rpn_train_anchors, 4), np.float32)
    level_start = np.cumsum([0] + [cfg.anchors_per_location * n * n for n in cfg.level_sizes])
    for b in range(b_):
        # A handful of positives on every level (P6's last anchors included), then negatives.
        pos = set()
        for lvl in range(5):
            k = 2 if lvl < 2 else 1
            pos.update(RNG.choice(np.arange(level_start[lvl], level_start[lvl + 1]), k,
                                  replace=False).tolist())
        pos.add(a_ - 1 - b)
        pos = sorted(pos)
        rest = np.setdiff1d(np.arange(a_), pos)
        neg = RNG.choice(rest, 40 + 7 * b, replace=False)
        match[b, pos] = 1
        match[b, neg] = -1
        rpn_bbox[b, :len(pos)] = (RNG.randn(len(pos), 4) * 1.5).astype(np.float32)
        # Rows past the positives: noise the loss must not read.
        rpn_bbox[b, len(pos):len(pos) + 10] = RNG.randn(10, 4).astype(np.float32) * 5
    t["rpn_match"], t["rpn_bbox"] = match, rpn_bbox

    r = cfg.rois
    rois = np.zeros((b_, r, 4), np.float32)
    cls = np.zeros((b_, r), np.int8)
    deltas = (RNG.randn(b_, r, 4) * 3).astype(np.float32)  # noise on non-positive rows
    masks = (RNG.rand(b_, r, cfg.mask_shape, cfg.mask_shape) > 0.5).astype(np.uint8)
    for b in range(b_):
        n_pos, n_neg = 5 + b, 12 - b
        for i in range(n_pos + n_neg):
            rois[b, i] = random_box(cfg, 3 if i % 3 == 0 else 2)
        cls[b, :n_pos] = RNG.randint(1, cfg.num_classes, n_pos)
        cls[b, 0], cls[b, 1] = 1, 2
        deltas[b, :n_pos] = (RNG.randn(n_pos, 4) * 1.2).astype(np.float32)
        yy, xx = np.mgrid[0:cfg.mask_shape, 0:cfg.mask_shape]
        for i in range(n_pos):  # blob-like masks
            cy, cx, rad = RNG.uniform(6, 22), RNG.uniform(6, 22), RNG.uniform(4, 11)
            masks[b, i] = ((yy - cy) ** 2 + (xx - cx) ** 2 < rad * rad).astype(np.uint8)
        # Rows past positives + negatives are zero padding: box 0, class 0 (they still count in
        # mrcnn_class_loss and read P2[0, 0], as in Matterport).
    t["rois"], t["roi_class"], t["roi_deltas"], t["roi_masks"] = rois, cls, deltas, masks
    return t


def edge_margin(coords, size):
    """How close crop_and_resize samples come to the map's edges 0 and size-1 (exact hits, as
    from a box edge at 0, are computed exactly in float32 too and do not count)."""
    c = coords.reshape(-1)
    d = torch.cat([c[c != 0].abs(), (c - (size - 1))[c != size - 1].abs(), torch.tensor([1e9])])
    return d.min().item()


# ---- writing ------------------------------------------------------------------------------------

def round_bits(x, keep):
    """float32 values rounded to `keep` explicit mantissa bits (the low bits become zero and
    deflate to nothing)."""
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


def put(f, path, value, dtype=None, keep=OUT_BITS):
    if isinstance(value, torch.Tensor):
        value = value.detach().numpy()
    value = np.asarray(value)
    if dtype is not None:
        value = value.astype(dtype)
    elif value.dtype.kind == "f":
        value = round_bits(value, keep)
    if value.ndim == 0:
        value = value.reshape(1)
    kw = {}
    if value.size >= 64:
        kw = dict(compression="gzip", compression_opts=9, shuffle=True)
    parent, name = path.rsplit("/", 1)
    group(f, parent).create_dataset(name, data=value, track_times=False, **kw)


def run(cfg, params, images, targets, grads=True):
    """Forward, losses and (with grads) parameter gradients in float64."""
    leaves = {k: v.clone().requires_grad_(params.trainable[k]) for k, v in params.values.items()}
    net = Net(cfg, leaves)
    r = {"net": net}
    r["p"] = p = net.features(images)
    r["rpn_logits"], r["rpn_deltas"] = net.rpn(p)
    rois = targets["rois"].reshape(-1, 4)
    image_index = np.repeat(np.arange(cfg.batch), cfg.rois).astype(np.int32)
    r["class_logits"], r["bbox"], r["levels"] = net.box_head(p, rois, image_index)
    # The mask loss reads the positive rows only, and with frozen batch norm each ROI's mask is
    # independent of the others: the head runs on the positives (as the C code does).
    pos = np.nonzero(targets["roi_class"].reshape(-1) > 0)[0]
    r["mask_logits"] = net.mask_head(p, rois[pos], image_index[pos])
    r["terms"] = losses(cfg, r["rpn_logits"], r["rpn_deltas"], r["class_logits"], r["bbox"],
                        r["mask_logits"], targets)
    r["total"] = sum(r["terms"].values())
    r["names"] = [k for k in leaves if params.trainable[k]]
    if grads:
        r["grads"] = torch.autograd.grad(r["total"], [leaves[k] for k in r["names"]])
    return r


def clearing_shift(values, width):
    """The smallest shift (by magnitude) that leaves none of `values` within `width` of 0."""
    lo, hi = -width - values, width - values  # shifts that put value i inside: (lo_i, hi_i)
    for s in sorted(np.concatenate([[0.0], lo, hi]), key=abs):
        if not np.any((s > lo) & (s < hi)):
            return s
    raise AssertionError("unreachable: the largest endpoint clears everything")


def clear_kinks(cfg, params, images, targets):
    """Float32 (C) and float64 (here) agree on every ReLU decision only if no ReLU input lies
    within float32's error of 0 (up to ~3e-6 in this network, torch float32 against float64);
    one flipped decision moves a gradient by far more than the C tolerance. So: in forward
    order, a channel with a ReLU input closer than KINK_WINDOW to 0 is shifted (by nudging its
    batch-norm beta or conv bias, stored as float32) just enough to clear all its inputs. A nudge
    only changes later ReLUs (and, for the shared RPN conv, the other levels' calls), which later
    rounds handle. Returns the number of nudges."""
    for nudges in range(500):
        with torch.no_grad():
            net = run(cfg, params, images, targets, grads=False)["net"]
        for x, knob in net.relu_inputs:
            near = torch.nonzero(x.abs() < KINK_WINDOW)
            if len(near):
                c = near[0, 1].item()
                shift = clearing_shift(x[:, c].reshape(-1).numpy(), 1.5 * KINK_WINDOW)
                vec = params.values[knob]
                vec[c] = float(np.float32(vec[c].item() + shift))
                break
        else:
            return nudges
    raise SystemExit("clear_kinks does not converge")


def main():
    cfg = Cfg(CONFIG)
    params = declare(cfg)
    images = randn(cfg.batch, cfg.image, cfg.image, cfg.channels)
    targets = make_targets(cfg)
    nudges = clear_kinks(cfg, params, images, targets)
    r = run(cfg, params, images, targets)
    net, p, terms, total = r["net"], r["p"], r["terms"], r["total"]
    names, grads = r["names"], r["grads"]
    relu_margin = min(x.abs().min().item() for x, _ in net.relu_inputs)
    count = sum(x.numel() for x, _ in net.relu_inputs)
    edge = min(edge_margin(c, n) for c, n in net.sample_coords)
    print(f"{nudges} nudges: ReLU margin {relu_margin:.2e} over {count} inputs, max-pool margin "
          f"{min(net.pool_margins):.2e}, ROI sample edge margin {edge:.2e}, ROI levels "
          f"{np.bincount(r['levels'], minlength=6)[2:].tolist()}", file=sys.stderr)
    print("losses: " + ", ".join(f"{k} {v.item():.6f}" for k, v in terms.items()) +
          f", total {total.item():.6f}", file=sys.stderr)
    assert relu_margin >= KINK_WINDOW
    assert min(net.pool_margins) > KINK_WINDOW, "a max-pool window has a near tie"
    assert edge > 1e-3, "a crop_and_resize sample sits on a map edge"

    tmp = OUT + ".tmp"
    with create_file(tmp) as f:
        f.attrs["format"] = np.bytes_("mrcnn whole-network parity reference")
        f.attrs["generator"] = np.bytes_("tests/ref/make_net_refs.py")
        f.attrs["config"] = np.bytes_("configs/tiny.json")
        f.attrs["torch"] = np.bytes_(torch.__version__)
        f.attrs["seed"] = np.int64(SEED)
        f.attrs["n_anchors"] = np.int64(cfg.n_anchors)
        for k, v in params.values.items():  # vectors may hold nudged float32 values
            put(f, f"params/{k}", v, np.float32 if v.dim() == 1 else np.float16)
        put(f, "inputs/images", images, np.float16)
        put(f, "targets/rpn_match", targets["rpn_match"], np.int8)
        put(f, "targets/rpn_bbox", targets["rpn_bbox"], np.float32)
        put(f, "targets/rois", targets["rois"], np.float32)
        put(f, "targets/roi_class", targets["roi_class"], np.int8)
        put(f, "targets/roi_deltas", targets["roi_deltas"], np.float32)
        put(f, "targets/roi_masks", targets["roi_masks"], np.uint8)
        for i in range(5):
            put(f, f"outputs/P{i + 2}", p[i].permute(0, 2, 3, 1))
        put(f, "outputs/rpn_class_logits", r["rpn_logits"])
        put(f, "outputs/rpn_bbox", r["rpn_deltas"])
        put(f, "outputs/mrcnn_class_logits", r["class_logits"])
        put(f, "outputs/mrcnn_bbox", r["bbox"])
        put(f, "outputs/mrcnn_mask_logits", r["mask_logits"])
        for k, v in terms.items():
            put(f, f"losses/{k}", v.detach().numpy(), np.float64)
        put(f, "losses/total_loss", total.detach().numpy(), np.float64)
        for k, g in zip(names, grads):
            put(f, f"grads/{k}", g, keep=GRAD_BITS)
    os.replace(tmp, OUT)
    print(f"{os.path.relpath(OUT)}: {len(params.values)} parameters ({len(names)} with "
          f"gradients), {os.path.getsize(OUT)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()

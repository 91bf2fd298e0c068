#!/usr/bin/python3
"""torchvision's Mask R-CNN as the accuracy twin of an mrcnn run: same architecture width, same
data, same step budget; writes mrcnn-format predictions for score_predictions.py.

    quality_torchvision.py --config CONFIG.json --data DIR --out PRED_DIR [--seed N]
                           [--threads 2] [--torchvision-defaults] [--val SPLIT] [--epochs N]

DIR holds train/ and val/ (each with one VIA 1/2 .json), or is a split folder itself (then give
--val, or the same split is predicted). The model is torchvision's own `MaskRCNN` with its own
random initialisations, built at the config's width:
  - backbone: a ResNet-50/101 laid out exactly as torchvision's (stride on the 3x3 conv, no conv
    biases) with every width scaled by BACKBONE_FILTERS / 64 and IMAGE_CHANNEL_COUNT input
    channels; FrozenBatchNorm2d everywhere (Matterport's TRAIN_BN false; BatchNorm2d with
    TRAIN_BN true); torchvision's FPN (TOP_DOWN_PYRAMID_SIZE channels on C2..C5) plus the max-pool
    P6 ("pool");
  - RPN: one anchor size per level P2..P6 from RPN_ANCHOR_SCALES (or every size at every level
    with RPN_ANCHOR_FORM "every_level") at RPN_ANCHOR_RATIOS (Matterport's width/height, given to
    torchvision as height/width), RPNHead with RPN_CONV_DEPTH channels;
  - heads: TwoMLPHead of FPN_CLASSIF_FC_LAYERS_SIZE on POOL_SIZE ROIs, MaskRCNNHeads of four
    TOP_DOWN_PYRAMID_SIZE convs and the deconv to MASK_SHAPE, NUM_CLASSES (len(CLASS_NAMES))
    classes with the background.
Training: EPOCHS x STEPS_PER_EPOCH steps of BATCH_SIZE images, each epoch a seeded shuffle
cycling through the training images; SGD (LEARNING_MOMENTUM, WEIGHT_DECAY as torch's
weight_decay) at each stage's learning rate with the stage's LAYERS trainable (a fresh optimizer
per stage, as Matterport compiles one per train() call); global-norm clipping at
GRADIENT_CLIP_NORM; horizontal flips (p = 0.5) the only augmentation.
Without --torchvision-defaults the RPN and ROI sampling budgets are the config's (see
tv_kwargs below); with it, torchvision's defaults. Detections are scored down to 0 either way.
Prints one line per epoch and the wall time; writes <stem>_pred.json per validation image (mrcnn
predict's format, masks as COCO compressed RLE) and run.json."""
import argparse
import json
import os
import random
import re
import sys
import time

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.resnet import Bottleneck, conv1x1
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import Conv2dNormActivation

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import score_predictions as sp  # noqa: E402  (the VIA reader, rasteriser and RLE codec)

# Matterport's Config defaults (mrcnn: layers/model.c mr_net_config_defaults, train/config.c
# mr_config_defaults), for every key this script reads.
DEFAULTS = {
    "NAME": "mrcnn",
    "BACKBONE": "resnet101",
    "NUM_CLASSES": 2,
    "IMAGE_MIN_DIM": 800,
    "IMAGE_MAX_DIM": 1024,
    "IMAGE_CHANNEL_COUNT": 3,
    "MEAN_PIXEL": [123.7, 116.8, 103.9],
    "BACKBONE_FILTERS": 64,
    "BACKBONE_STRIDES": [4, 8, 16, 32, 64],
    "TOP_DOWN_PYRAMID_SIZE": 256,
    "RPN_CONV_DEPTH": 512,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 1024,
    "POOL_SIZE": 7,
    "MASK_POOL_SIZE": 14,
    "MASK_SHAPE": [28, 28],
    "RPN_ANCHOR_SCALES": [32, 64, 128, 256, 512],
    "RPN_ANCHOR_FORM": "per_level",
    "RPN_ANCHOR_RATIOS": [0.5, 1, 2],
    "RPN_ANCHOR_STRIDE": 1,
    "RPN_BBOX_STD_DEV": [0.1, 0.1, 0.2, 0.2],
    "BBOX_STD_DEV": [0.1, 0.1, 0.2, 0.2],
    "RPN_TRAIN_ANCHORS_PER_IMAGE": 256,
    "PRE_NMS_LIMIT": 6000,
    "POST_NMS_ROIS_TRAINING": 2000,
    "POST_NMS_ROIS_INFERENCE": 1000,
    "RPN_NMS_THRESHOLD": 0.7,
    "TRAIN_ROIS_PER_IMAGE": 200,
    "ROI_POSITIVE_RATIO": 0.33,
    "MAX_GT_INSTANCES": 100,
    "DETECTION_MAX_INSTANCES": 100,
    "DETECTION_MIN_CONFIDENCE": 0.7,
    "DETECTION_NMS_THRESHOLD": 0.3,
    "LOSS_WEIGHTS": {},
    "WEIGHT_DECAY": 1e-4,
    "TRAIN_BN": False,
    "EPOCHS": 30,
    "STEPS_PER_EPOCH": 1000,
    "BATCH_SIZE": 2,
    "LEARNING_RATE": 0.001,
    "LEARNING_MOMENTUM": 0.9,
    "GRADIENT_CLIP_NORM": 5.0,
    "SEED": 42,
}
# Keys of mrcnn's config that have no torchvision counterpart (reported in run.json).
NOT_MIRRORED = ["ROI_ALIGN_MODE", "USE_MINI_MASK", "MINI_MASK_SHAPE", "BN_EPSILON", "AUGMENT",
                "RPN_BBOX_STD_DEV", "VALIDATION_STEPS", "VALIDATION_SPLIT", "CHECKPOINT_KEEP",
                "ARENA_MB", "DETECTION_MIN_CONFIDENCE"]
# Matterport's LAYERS presets (model.train), matched against Matterport layer names.
LAYER_PRESETS = {
    "heads": r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "5+": r"(res5.*)|(bn5.*)|(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)",
    "all": ".*",
}
TV_LOSS = {"rpn_class_loss": "loss_objectness", "rpn_bbox_loss": "loss_rpn_box_reg",
           "mrcnn_class_loss": "loss_classifier", "mrcnn_bbox_loss": "loss_box_reg",
           "mrcnn_mask_loss": "loss_mask"}


# ---- config -------------------------------------------------------------------------------------

def resolve_config(path, epochs_override=None):
    raw = sp.load_config(path)
    cfg = dict(DEFAULTS)
    cfg.update(raw)
    names, single, attrs = sp.class_setup(raw)
    cfg["CLASS_NAMES"] = names
    cfg["NUM_CLASSES"] = len(names)
    cfg["_single_class"] = single
    cfg["_class_attrs"] = attrs
    mean = [float(v) for v in cfg["MEAN_PIXEL"]]
    ch = int(cfg["IMAGE_CHANNEL_COUNT"])
    if len(mean) == 1:
        mean = mean * ch
    cfg["MEAN_PIXEL"] = mean[:ch]
    if cfg["BACKBONE"] not in ("resnet50", "resnet101"):
        raise SystemExit("%s: BACKBONE must be resnet50 or resnet101" % path)
    if int(cfg["RPN_ANCHOR_STRIDE"]) != 1:
        raise SystemExit("%s: RPN_ANCHOR_STRIDE %s: torchvision's AnchorGenerator puts anchors at "
                         "every feature cell (stride 1) only" % (path, cfg["RPN_ANCHOR_STRIDE"]))
    if list(cfg["BACKBONE_STRIDES"]) != [4, 8, 16, 32, 64]:
        raise SystemExit("%s: BACKBONE_STRIDES must be [4, 8, 16, 32, 64] (torchvision's FPN)" %
                         path)
    # Stages as mrcnn resolves them (train/config.c check_whole).
    had_epochs = "EPOCHS" in raw
    if "STAGES" in raw:
        stages = [{"LAYERS": s["LAYERS"], "UNTIL_EPOCH": int(s["UNTIL_EPOCH"]),
                   "LEARNING_RATE": float(s.get("LEARNING_RATE", cfg["LEARNING_RATE"]))}
                  for s in raw["STAGES"]]
        if not had_epochs:
            cfg["EPOCHS"] = stages[-1]["UNTIL_EPOCH"]
    else:
        stages = [{"LAYERS": "all", "UNTIL_EPOCH": int(cfg["EPOCHS"]),
                   "LEARNING_RATE": float(cfg["LEARNING_RATE"])}]
    if epochs_override:
        cfg["EPOCHS"] = epochs_override
        if stages[-1]["UNTIL_EPOCH"] < epochs_override:
            stages[-1]["UNTIL_EPOCH"] = epochs_override
    if stages[-1]["UNTIL_EPOCH"] < int(cfg["EPOCHS"]):
        raise SystemExit("%s: the last stage ends at epoch %d but EPOCHS is %d" % (
            path, stages[-1]["UNTIL_EPOCH"], cfg["EPOCHS"]))
    cfg["STAGES"] = stages
    ms = cfg["MASK_SHAPE"]
    cfg["MASK_SHAPE"] = int(ms[0] if isinstance(ms, list) else ms)
    return cfg


def stage_for(cfg, epoch):
    for s in cfg["STAGES"]:
        if epoch < s["UNTIL_EPOCH"]:
            return s
    return cfg["STAGES"][-1]


# ---- the model ----------------------------------------------------------------------------------

class NarrowResNet(nn.Module):
    """torchvision's ResNet (models/resnet.py) with base width `width` instead of 64: conv1,
    bn1, relu, maxpool, layer1..4 of torchvision's Bottleneck (stride on the 3x3 conv), its
    kaiming-normal (fan_out) conv initialisation; no avgpool/fc (the FPN reads layer1..4)."""

    def __init__(self, in_channels, width, blocks, norm_layer):
        super().__init__()
        self.inplanes = width
        self._norm = norm_layer
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, blocks[0])
        self.layer2 = self._make_layer(width * 2, blocks[1], stride=2)
        self.layer3 = self._make_layer(width * 4, blocks[2], stride=2)
        self.layer4 = self._make_layer(width * 8, blocks[3], stride=2)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * Bottleneck.expansion, stride),
                                       self._norm(planes * Bottleneck.expansion))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, norm_layer=self._norm)]
        self.inplanes = planes * Bottleneck.expansion
        for _ in range(1, blocks):
            layers.append(Bottleneck(self.inplanes, planes, norm_layer=self._norm))
        return nn.Sequential(*layers)


def tv_kwargs(cfg, torchvision_defaults):
    """MaskRCNN's sampling and inference arguments."""
    kw = {"box_score_thresh": 0.0}  # every detection is scored, as Matterport's COCO evaluation
    if torchvision_defaults:
        return kw
    kw.update(
        rpn_batch_size_per_image=int(cfg["RPN_TRAIN_ANCHORS_PER_IMAGE"]),
        rpn_pre_nms_top_n_train=int(cfg["PRE_NMS_LIMIT"]),
        rpn_pre_nms_top_n_test=int(cfg["PRE_NMS_LIMIT"]),
        rpn_post_nms_top_n_train=int(cfg["POST_NMS_ROIS_TRAINING"]),
        rpn_post_nms_top_n_test=int(cfg["POST_NMS_ROIS_INFERENCE"]),
        rpn_nms_thresh=float(cfg["RPN_NMS_THRESHOLD"]),
        box_batch_size_per_image=int(cfg["TRAIN_ROIS_PER_IMAGE"]),
        box_positive_fraction=float(cfg["ROI_POSITIVE_RATIO"]),
        box_detections_per_img=int(cfg["DETECTION_MAX_INSTANCES"]),
        box_nms_thresh=float(cfg["DETECTION_NMS_THRESHOLD"]),
        bbox_reg_weights=tuple(1.0 / float(s) for s in cfg["BBOX_STD_DEV"]),
    )
    return kw


def build_model(cfg, torchvision_defaults=False):
    ch = int(cfg["IMAGE_CHANNEL_COUNT"])
    width = int(cfg["BACKBONE_FILTERS"])
    pyr = int(cfg["TOP_DOWN_PYRAMID_SIZE"])
    blocks = [3, 4, 6, 3] if cfg["BACKBONE"] == "resnet50" else [3, 4, 23, 3]
    norm = nn.BatchNorm2d if cfg["TRAIN_BN"] else FrozenBatchNorm2d
    body = NarrowResNet(ch, width, blocks, norm)
    backbone = BackboneWithFPN(
        body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=[width * 4 * 2 ** i for i in range(4)], out_channels=pyr,
        extra_blocks=LastLevelMaxPool())

    scales = [float(s) for s in cfg["RPN_ANCHOR_SCALES"]]
    ratios = tuple(1.0 / float(r) for r in cfg["RPN_ANCHOR_RATIOS"])  # torchvision: h / w
    if cfg["RPN_ANCHOR_FORM"] == "per_level":
        if len(scales) != 5:
            raise SystemExit("RPN_ANCHOR_SCALES needs 5 sizes (P2..P6) with per_level anchors")
        sizes = tuple((s,) for s in scales)
    else:
        sizes = (tuple(scales),) * 5
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=(ratios,) * 5)
    n_anchors = anchors.num_anchors_per_location()[0]
    rpn_head = RPNHead(pyr, n_anchors)
    depth = int(cfg["RPN_CONV_DEPTH"])
    if depth != pyr:  # RPNHead's shared conv keeps the input width; Matterport's has its own
        rpn_head.conv = nn.Sequential(Conv2dNormActivation(pyr, depth, kernel_size=3,
                                                           norm_layer=None))
        rpn_head.cls_logits = nn.Conv2d(depth, n_anchors, kernel_size=1, stride=1)
        rpn_head.bbox_pred = nn.Conv2d(depth, n_anchors * 4, kernel_size=1, stride=1)
        for layer in rpn_head.modules():  # RPNHead's own initialisation
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    levels = ["0", "1", "2", "3"]
    pool = int(cfg["POOL_SIZE"])
    fc = int(cfg["FPN_CLASSIF_FC_LAYERS_SIZE"])
    n_classes = int(cfg["NUM_CLASSES"])
    mask_shape = int(cfg["MASK_SHAPE"])
    if mask_shape % 2:
        raise SystemExit("MASK_SHAPE %d: torchvision's mask predictor doubles its ROIs (even "
                         "sizes only)" % mask_shape)
    model = MaskRCNN(
        backbone,
        num_classes=None,
        min_size=int(cfg["IMAGE_MAX_DIM"]),
        max_size=int(cfg["IMAGE_MAX_DIM"]),
        image_mean=[m / 255.0 for m in cfg["MEAN_PIXEL"]],
        image_std=[0.226] if ch == 1 else [0.229, 0.224, 0.225],
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=pool, sampling_ratio=2),
        box_head=TwoMLPHead(pyr * pool * pool, fc),
        box_predictor=FastRCNNPredictor(fc, n_classes),
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=mask_shape // 2, sampling_ratio=2),
        mask_head=MaskRCNNHeads(pyr, (pyr,) * 4, 1),
        mask_predictor=MaskRCNNPredictor(pyr, pyr, n_classes),
        **tv_kwargs(cfg, torchvision_defaults))
    return model


def matterport_layer(name, backbone):
    """The Matterport layer a torchvision parameter corresponds to (for LAYERS patterns)."""
    m = re.match(r"backbone\.body\.(conv1|bn1)\.", name)
    if m:
        return "conv1" if m.group(1) == "conv1" else "bn_conv1"
    m = re.match(r"backbone\.body\.layer(\d)\.(\d+)\.(conv(\d)|bn(\d)|downsample\.(\d))\.", name)
    if m:
        stage, block = int(m.group(1)) + 1, chr(ord("a") + int(m.group(2)))
        if m.group(4):
            return "res%d%s_branch2%s" % (stage, block, "abc"[int(m.group(4)) - 1])
        if m.group(5):
            return "bn%d%s_branch2%s" % (stage, block, "abc"[int(m.group(5)) - 1])
        return ("res" if m.group(6) == "0" else "bn") + "%d%s_branch1" % (stage, block)
    m = re.match(r"backbone\.fpn\.(inner|layer)_blocks\.(\d)\.", name)
    if m:
        k = int(m.group(2)) + 2
        return "fpn_c%dp%d" % (k, k) if m.group(1) == "inner" else "fpn_p%d" % k
    for prefix, layer in (("rpn.head.conv", "rpn_conv_shared"), ("rpn.head.cls_logits",
                          "rpn_class_raw"), ("rpn.head.bbox_pred", "rpn_bbox_pred"),
                          ("roi_heads.box_head.fc6", "mrcnn_class_conv1"),
                          ("roi_heads.box_head.fc7", "mrcnn_class_conv2"),
                          ("roi_heads.box_predictor.cls_score", "mrcnn_class_logits"),
                          ("roi_heads.box_predictor.bbox_pred", "mrcnn_bbox_fc"),
                          ("roi_heads.mask_predictor.conv5_mask", "mrcnn_mask_deconv"),
                          ("roi_heads.mask_predictor.mask_fcn_logits", "mrcnn_mask")):
        if name.startswith(prefix + "."):
            return layer
    m = re.match(r"roi_heads\.mask_head\.(\d)\.", name)
    if m:
        return "mrcnn_mask_conv%d" % (int(m.group(1)) + 1)
    raise SystemExit("no Matterport name for parameter %s" % name)


def set_trainable(model, layers):
    regex = LAYER_PRESETS.get(layers, layers)
    n = 0
    for name, p in model.named_parameters():
        p.requires_grad_(re.fullmatch(regex, matterport_layer(name, model)) is not None)
        n += p.numel() if p.requires_grad else 0
    return n


# ---- data ---------------------------------------------------------------------------------------

def load_image(path, channels):
    """uint8 (channels, H, W); gray as mrcnn's image.c makes it ((r + g + b + 1) // 3)."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I"):
                a = (np.asarray(im).astype(np.int64) >> 8).astype(np.uint8)  # as stb_image
            else:
                a = np.asarray(im.convert("RGBA" if "A" in im.mode else
                                          ("RGB" if im.mode not in ("L", "LA") else "L")))
    except ImportError:
        a = torchvision.io.read_image(path).permute(1, 2, 0).numpy()
    if a.ndim == 2:
        a = a[:, :, None]
    color = a.shape[2] >= 3
    if channels == 1:
        if color:
            a = ((a[:, :, 0].astype(np.int32) + a[:, :, 1] + a[:, :, 2] + 1) // 3).astype(
                np.uint8)[:, :, None]
        else:
            a = a[:, :, :1]
    else:
        a = a[:, :, :3] if color else np.repeat(a[:, :, :1], 3, axis=2)
    return torch.from_numpy(np.array(a.transpose(2, 0, 1), copy=True))


def split_dirs(data, val):
    if os.path.isdir(os.path.join(data, "train")):
        return os.path.join(data, "train"), val or os.path.join(data, "val")
    return data, val or data


def load_split(path, cfg):
    recs = sp.load_via(sp.find_via_json(path), cfg["CLASS_NAMES"], cfg["_single_class"],
                       cfg["_class_attrs"])
    samples = []
    for rec in recs:
        img = load_image(rec["path"], int(cfg["IMAGE_CHANNEL_COUNT"]))
        h, w = img.shape[1:]
        inst = sp.ground_truth([rec], {rec["file"]: (h, w)})[0][2]
        samples.append({"file": rec["file"], "path": rec["path"], "image": img,
                        "labels": torch.tensor([c for c, _, _ in inst], dtype=torch.int64),
                        "masks": torch.from_numpy(np.stack([m for _, m, _ in inst]).astype(
                            np.uint8)) if inst else torch.zeros((0, h, w), dtype=torch.uint8),
                        # [x1, y1, x2, y2] in continuous pixel coordinates: x2 = last column + 1
                        "boxes": torch.tensor([[b[1], b[0], b[3], b[2]] for _, _, b in inst],
                                              dtype=torch.float32).reshape(-1, 4)})
    return samples


def order_for(seed, epoch, cycle, n):
    """A seeded permutation per (epoch, cycle): each epoch starts a fresh shuffle, and an epoch
    longer than the data set continues with a new one (as mrcnn's dataset order)."""
    rs = np.random.RandomState((seed * 1000003 + epoch * 7919 + cycle) % (2 ** 32))
    return rs.permutation(n)


def batch(samples, cfg, seed, epoch, step, flip_rng):
    B, n = int(cfg["BATCH_SIZE"]), len(samples)
    images, targets, cache = [], [], {}
    max_gt = int(cfg["MAX_GT_INSTANCES"])
    for i in range(B):
        pos = step * B + i
        cycle = pos // n
        if cycle not in cache:
            cache[cycle] = order_for(seed, epoch, cycle, n)
        s = samples[int(cache[cycle][pos % n])]
        img = s["image"].float() / 255.0
        boxes, masks, labels = s["boxes"].clone(), s["masks"], s["labels"]
        if len(labels) > max_gt:
            keep = torch.from_numpy(np.sort(flip_rng.permutation(len(labels))[:max_gt]))
            boxes, masks, labels = boxes[keep], masks[keep], labels[keep]
        if flip_rng.random_sample() < 0.5:
            w = img.shape[-1]
            img = img.flip(-1)
            masks = masks.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        images.append(img)
        targets.append({"boxes": boxes, "labels": labels, "masks": masks})
    return images, targets


# ---- prediction output --------------------------------------------------------------------------

def write_predictions(model, samples, cfg, out_dir):
    model.eval()
    names = cfg["CLASS_NAMES"]
    n_det = 0
    with torch.no_grad():
        for s in samples:
            img = s["image"].float() / 255.0
            h, w = img.shape[1:]
            r = model([img])[0]
            order = np.argsort(-r["scores"].numpy(), kind="mergesort")
            dets = []
            for k in order:
                x1, y1, x2, y2 = r["boxes"][k].tolist()
                box = [min(max(int(round(y1)), 0), h), min(max(int(round(x1)), 0), w),
                       min(max(int(round(y2)), 0), h), min(max(int(round(x2)), 0), w)]
                mask = (r["masks"][k, 0] >= 0.5).numpy()
                cid = int(r["labels"][k])
                dets.append({"class_id": cid, "class": names[cid],
                             "score": round(float(r["scores"][k]), 6), "box": box,
                             "area": int(mask.sum()), "polygons": [],
                             "rle": sp.mask_to_rle(mask)})
            n_det += len(dets)
            stem = os.path.splitext(s["file"])[0]
            doc = {"image": os.path.relpath(s["path"], out_dir), "width": int(w),
                   "height": int(h), "overlay": "", "threshold": 0, "detections": dets}
            tmp = os.path.join(out_dir, stem + "_pred.json.tmp")
            with open(tmp, "w") as f:
                json.dump(doc, f)
                f.write("\n")
            os.replace(tmp, os.path.join(out_dir, stem + "_pred.json"))
    return n_det


# ---- main ---------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", help="folder with train/ and val/, or a split folder "
                    "(default: the config's DATASET)")
    ap.add_argument("--val", help="validation split folder (default DATA/val)")
    ap.add_argument("--out", required=True, help="folder for <stem>_pred.json and run.json")
    ap.add_argument("--seed", type=int, help="default: the config's SEED")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, help="override EPOCHS (short runs while developing)")
    ap.add_argument("--torchvision-defaults", action="store_true",
                    help="torchvision's own RPN/ROI sampling and inference budgets")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    cfg = resolve_config(args.config, args.epochs)
    seed = int(args.seed if args.seed is not None else cfg["SEED"])
    torch.set_num_threads(args.threads)
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)

    if args.data:
        train_dir, val_dir = split_dirs(args.data, args.val)
    else:
        ds = cfg.get("DATASET") or {}
        if not ds.get("TRAIN"):
            raise SystemExit("no --data and the config has no DATASET.TRAIN")
        train_dir, val_dir = ds["TRAIN"], args.val or ds.get("VAL") or ds["TRAIN"]
    if os.path.abspath(train_dir) == os.path.abspath(val_dir):
        print("warning: predicting on the training split %s" % val_dir, file=sys.stderr)
    train = load_split(train_dir, cfg)
    val = load_split(val_dir, cfg)
    if not train:
        raise SystemExit("%s: no training images" % train_dir)
    side = int(cfg["IMAGE_MAX_DIM"])
    if any(s["image"].shape[1] != s["image"].shape[2] for s in train + val):
        print("note: non-square images: torchvision scales the longer side to %d (Matterport: "
              "shorter side up to IMAGE_MIN_DIM %d, longer capped at %d)" % (
                  side, int(cfg["IMAGE_MIN_DIM"]), side), file=sys.stderr)
    os.makedirs(args.out, exist_ok=True)

    model = build_model(cfg, args.torchvision_defaults)
    n_params = sum(p.numel() for p in model.parameters())
    weights = {TV_LOSS[k]: float(v) for k, v in (cfg["LOSS_WEIGHTS"] or {}).items()}
    B, S, E = int(cfg["BATCH_SIZE"]), int(cfg["STEPS_PER_EPOCH"]), int(cfg["EPOCHS"])
    clip = float(cfg["GRADIENT_CLIP_NORM"])
    print("torch %s, torchvision %s, %d threads; %s x%d width, %d classes, %d parameters; "
          "%d training and %d validation images; %d epochs x %d steps x %d images%s" % (
              torch.__version__, torchvision.__version__, args.threads, cfg["BACKBONE"],
              int(cfg["BACKBONE_FILTERS"]), int(cfg["NUM_CLASSES"]), n_params, len(train),
              len(val), E, S, B, ", torchvision's sampling defaults"
              if args.torchvision_defaults else ""), flush=True)

    flip_rng = np.random.RandomState((seed * 7 + 1) % 2 ** 32)
    opt, stage, steps_done, skipped = None, None, 0, 0
    t_train = time.perf_counter()
    epoch_log = []
    for epoch in range(E):
        st = stage_for(cfg, epoch)
        if st is not stage:
            stage = st
            n_train = set_trainable(model, st["LAYERS"])
            params = [p for p in model.parameters() if p.requires_grad]
            opt = torch.optim.SGD(params, lr=st["LEARNING_RATE"],
                                  momentum=float(cfg["LEARNING_MOMENTUM"]),
                                  weight_decay=float(cfg["WEIGHT_DECAY"]))
            print("epoch %d: layers \"%s\" (%d trainable values), learning rate %g" % (
                epoch + 1, st["LAYERS"], n_train, st["LEARNING_RATE"]), flush=True)
        model.train()
        t0 = time.perf_counter()
        sums, n = {}, 0
        for step in range(S):
            images, targets = batch(train, cfg, seed, epoch, step, flip_rng)
            losses = model(images, targets)
            loss = sum(weights.get(k, 1.0) * v for k, v in losses.items())
            if not torch.isfinite(loss):
                skipped += 1
                print("warning: epoch %d step %d: non-finite loss %s; update skipped" % (
                    epoch + 1, step + 1, {k: float(v) for k, v in losses.items()}),
                    file=sys.stderr)
                if skipped >= 5:
                    raise SystemExit("stopped after 5 non-finite steps")
                continue
            opt.zero_grad()
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            steps_done += 1
            n += 1
            sums["loss"] = sums.get("loss", 0.0) + float(loss)
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        mean = {k: v / max(n, 1) for k, v in sums.items()}
        dt = time.perf_counter() - t0
        epoch_log.append(dict(mean, epoch=epoch + 1, seconds=round(dt, 2)))
        print("epoch %d/%d: loss %.4f | rpn_class %.4f rpn_bbox %.4f class %.4f bbox %.4f "
              "mask %.4f | %.1fs (%.2fs/step)" % (
                  epoch + 1, E, mean.get("loss", float("nan")),
                  mean.get("loss_objectness", float("nan")),
                  mean.get("loss_rpn_box_reg", float("nan")),
                  mean.get("loss_classifier", float("nan")),
                  mean.get("loss_box_reg", float("nan")), mean.get("loss_mask", float("nan")),
                  dt, dt / max(n, 1)), flush=True)
    train_s = time.perf_counter() - t_train

    t_pred = time.perf_counter()
    n_det = write_predictions(model, val, cfg, args.out)
    pred_s = time.perf_counter() - t_pred
    wall = time.perf_counter() - t_start
    print("predicted %d validation images (%d detections) in %.1fs; training %.1fs "
          "(%.3fs/step); total wall time %.1fs" % (len(val), n_det, pred_s, train_s,
                                                    train_s / max(steps_done, 1), wall),
          flush=True)

    resolved = {k: v for k, v in cfg.items() if not k.startswith("_")}
    kw = tv_kwargs(cfg, args.torchvision_defaults)
    run = {
        "config": os.path.abspath(args.config),
        "train": os.path.abspath(train_dir),
        "val": os.path.abspath(val_dir),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "threads": args.threads,
        "seed": seed,
        "torchvision_defaults": bool(args.torchvision_defaults),
        "maskrcnn_kwargs": {k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()},
        "resolved_config": resolved,
        "not_mirrored": [k for k in NOT_MIRRORED if k in sp.load_config(args.config)],
        "parameters": n_params,
        "steps": steps_done,
        "skipped_steps": skipped,
        "images_per_step": B,
        "train_seconds": round(train_s, 2),
        "seconds_per_step": round(train_s / max(steps_done, 1), 4),
        "predict_seconds": round(pred_s, 2),
        "wall_seconds": round(wall, 2),
        "validation_images": len(val),
        "detections": n_det,
        "epochs": epoch_log,
    }
    with open(os.path.join(args.out, "run.json"), "w") as f:
        json.dump(run, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

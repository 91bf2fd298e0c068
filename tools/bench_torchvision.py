#!/usr/bin/python3
"""torchvision's maskrcnn_resnet50_fpn timed the way `mrcnn bench` times mrcnn: random weights,
3 classes, one square image, 2 threads, backbone layers 2-4 trainable and batch norms frozen, as
torchvision builds the model for fine-tuning from pretrained weights and as mrcnn trains stages
"3+". (Built by hand: maskrcnn_resnet50_fpn without pretrained weights would make every layer
trainable and its batch norms live, more work than mrcnn does.) Prints three lines:
kernel=... (which CPU kernels torch ended up with: oneDNN's ISA for the convolutions and ATen's
CPU capability), detections=N (masks the inference made) and train_s=... infer_s=... rss_mb=...
(medians).

`bench_torchvision.py SIDE REPEATS matterport` samples the heads' ROIs as Matterport does (200 an
image, 33% positive, 2000 proposals after NMS in training) instead of torchvision's 512 at 25%,
and keeps every detection at inference (score threshold 0, so 100 masks, as mrcnn's bench keeping
every detection): the same work as mrcnn, so the ratio shows the implementation rather than the
recipe. `matterport-network` does that and builds Matterport's RPN as well: its shared 3x3
convolution ("rpn_conv_shared", mrcnn's RPN_CONV_DEPTH) 512 channels wide where torchvision's
keeps the FPN's 256, initialised as torchvision initialises its own RPN head."""
import ctypes
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torchvision
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import misc as misc_nn_ops


def openblas_kernel():
    """The kernel of the OpenBLAS torch's matrix products (nn.Linear) run on, if it is OpenBLAS."""
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return "not loaded"


def kernels():
    """oneDNN names its ISA only in its verbose log: one small convolution in a child says it."""
    probe = ("import torch\n"
             "torch.nn.functional.conv2d(torch.rand(1, 64, 56, 56), torch.rand(64, 64, 3, 3))\n")
    env = dict(os.environ, ONEDNN_VERBOSE="1")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                         timeout=300).stdout
    isa = next((line.split("isa:", 1)[1] for line in out.splitlines() if "isa:" in line), "?")
    aten = next((line.split(":", 1)[1].strip() for line in torch.__config__.show().splitlines()
                 if "CPU capability usage" in line), "?")
    return "torch %s, oneDNN %s, ATen %s, OpenBLAS %s" % (torch.__version__, isa.strip(), aten,
                                                           openblas_kernel())


def matterport_rpn_head():
    """torchvision's RPN head (per level: a shared 3x3 convolution and ReLU, then 1x1 objectness
    and box convolutions) with Matterport's width: 512 channels out of the 3x3, 3 anchors a place.
    Weights drawn as torchvision's RPNHead draws its own (normal, std 0.01; biases 0)."""
    head = RPNHead(256, 3)
    head.conv = torch.nn.Sequential(torch.nn.Conv2d(256, 512, 3, padding=1),
                                    torch.nn.ReLU(inplace=True))
    head.cls_logits = torch.nn.Conv2d(512, 3, 1)
    head.bbox_pred = torch.nn.Conv2d(512, 3 * 4, 1)
    for layer in head.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.normal_(layer.weight, std=0.01)
            torch.nn.init.constant_(layer.bias, 0)
    return head


def main():
    side, repeats = int(sys.argv[1]), int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "defaults"
    if mode not in ("defaults", "matterport", "matterport-network"):
        sys.exit("bench_torchvision.py: unknown recipe %r (defaults, matterport, "
                 "matterport-network)" % mode)
    recipe = {}
    if mode != "defaults":
        recipe = dict(box_batch_size_per_image=200, box_positive_fraction=0.33,
                      rpn_post_nms_top_n_train=2000, box_score_thresh=0.0)
    if mode == "matterport-network":
        recipe["rpn_head"] = matterport_rpn_head()
    print("kernel=" + kernels(), flush=True)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
    backbone = _resnet_fpn_extractor(resnet, 3)
    model = MaskRCNN(backbone, num_classes=3, min_size=side, max_size=side, **recipe)
    image = torch.rand(3, side, side)
    masks = torch.zeros(2, side, side, dtype=torch.uint8)
    s = side / 512.0
    boxes = torch.tensor([[120, 100, 260, 220], [300, 300, 420, 400]], dtype=torch.float32) * s
    for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[k, y1:y2, x1:x2] = 1
    target = [{"boxes": boxes, "labels": torch.tensor([1, 2]), "masks": masks}]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=1e-4)
    model.train()
    train = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        loss = sum(model([image], target).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        train.append(time.perf_counter() - t0)
    # Peak memory in training, as mrcnn's bench measures it: before inference.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    model.eval()
    infer = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            detections = len(model([image])[0]["boxes"])
            infer.append(time.perf_counter() - t0)
    # The first run of each warms caches and allocators; medians of the rest.
    print("detections=%d" % detections)
    print("train_s=%.4f infer_s=%.4f rss_mb=%.1f" % (
        statistics.median(train[1:]), statistics.median(infer[1:]), rss))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""torchvision's maskrcnn_resnet50_fpn timed the way `mrcnn bench` times mrcnn: random weights,
3 classes, one square image, 2 threads, backbone layers 2-4 trainable (torchvision's default,
Matterport's "3+"). Prints one line: train_s=... infer_s=... rss_mb=... (medians)."""
import resource
import statistics
import sys
import time

import torch
import torchvision


def main():
    side, repeats = int(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=side, max_size=side,
        trainable_backbone_layers=3)
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
    model.eval()
    infer = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            model([image])
            infer.append(time.perf_counter() - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    # The first run of each warms caches and allocators; medians of the rest.
    print("train_s=%.4f infer_s=%.4f rss_mb=%.1f" % (
        statistics.median(train[1:]), statistics.median(infer[1:]), rss))


if __name__ == "__main__":
    main()

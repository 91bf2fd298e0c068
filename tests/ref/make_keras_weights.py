"""Writes tests/ref/keras_tiny.h5: a Keras-layout weights file for configs/tiny.json, saved the
way Keras 2.x `model.save_weights()` saves Matterport's training model, so that
tests/test_weights.c can check the C importer (and the C test's own full-size writer) against an
independent reference. Run with Debian's python3 (python3-h5py, python3-numpy; no TensorFlow
needed): `make refs` or `cd tests/ref && /usr/bin/python3 make_keras_weights.py`.

Layout (Keras 2.2 keras/engine/saving.py, save_weights_to_hdf5_group; reference/matterport.md 11):
* root attributes layer_names (numpy fixed-length bytes, every layer of model.layers, weightless
  ones included), backend = b"tensorflow", keras_version = b"2.2.4";
* one group per layer with attribute weight_names (bytes; `[]` for a weightless layer, which
  h5py stores as an empty float64 array), datasets named by the TF variable, so "conv1/kernel:0"
  becomes /conv1/conv1/kernel:0 and the nested rpn_model holds /rpn_model/rpn_conv_shared/...;
* float32 (gzip-compressed here to keep the committed file small), conv kernels HWIO, Conv2DTranspose (kh, kw, out, in), Dense (in, out), BN gamma, beta,
  moving_mean, moving_variance.

Widths are the tiny config's (BACKBONE_FILTERS 8, pyramid 32, RPN depth 32, FC 64, 3 classes),
but conv1 has 3 input channels as in every Matterport file (the tiny config is 1-channel, so the
importer sums it). Every element has a distinct exact value (see value()), so a test can tell
where each one landed.
"""
import os

import h5py
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras_tiny.h5")

DEPTH = 50
BASE = 8           # BACKBONE_FILTERS
PYRAMID = 32       # TOP_DOWN_PYRAMID_SIZE
RPN_DEPTH = 32     # RPN_CONV_DEPTH
FC = 64            # FPN_CLASSIF_FC_LAYERS_SIZE
NUM_CLASSES = 3
CHANNELS = 3       # conv1 input channels in the file
ANCHORS = 3        # len(RPN_ANCHOR_RATIOS)
POOL = 7           # POOL_SIZE


def fnv1a32(text):
    h = 2166136261
    for b in text.encode("utf8"):
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def value(param, n):
    """Element e of parameter `param` ("conv1/kernel", our name) in its Keras C order:
    ((fnv1a32(param) + e) mod 65521) / 64 - 512. Integers below 2^16 over a power of two, so
    float32 holds every value exactly and C computes the same bits (tests/test_weights.c)."""
    e = np.arange(n, dtype=np.int64)
    return ((fnv1a32(param) + e) % 65521).astype(np.float32) / np.float32(64) - np.float32(512)


class Layers:
    """model.layers of Matterport's training model: (layer name, [(variable name, shape)])."""

    def __init__(self):
        self.items = []
        self.counters = {}

    def plain(self, name):
        self.items.append((name, []))

    def auto(self, kind):
        """A weightless layer with a Keras auto name (activation_7, add_3, ...)."""
        self.counters[kind] = self.counters.get(kind, 0) + 1
        self.plain("%s_%d" % (kind, self.counters[kind]))

    def conv(self, name, k, cin, cout):
        self.items.append((name, [(name + "/kernel:0", (k, k, cin, cout)), (name + "/bias:0", (cout,))]))

    def dense(self, name, cin, cout):
        self.items.append((name, [(name + "/kernel:0", (cin, cout)), (name + "/bias:0", (cout,))]))

    def bn(self, name, c):
        self.items.append((name, [(name + "/" + w + ":0", (c,))
                                  for w in ("gamma", "beta", "moving_mean", "moving_variance")]))


def matterport_layers():
    m = Layers()
    # Inputs of the training model come first in model.layers.
    for name in ("input_image", "input_image_meta", "input_rpn_match", "input_rpn_bbox",
                 "input_gt_class_ids", "input_gt_boxes", "input_gt_masks"):
        m.plain(name)
    # resnet_graph
    m.auto("zero_padding2d")
    m.conv("conv1", 7, CHANNELS, BASE)
    m.bn("bn_conv1", BASE)
    m.auto("activation")
    m.auto("max_pooling2d")
    blocks = {2: 3, 3: 4, 4: 6 if DEPTH == 50 else 23, 5: 3}
    cin = BASE
    for stage in (2, 3, 4, 5):
        f1 = BASE << (stage - 2)
        f3 = 4 * f1
        for k in range(blocks[stage]):
            letter = chr(ord("a") + k)
            res, bn = "res%d%s_branch" % (stage, letter), "bn%d%s_branch" % (stage, letter)
            m.conv(res + "2a", 1, cin, f1)
            m.bn(bn + "2a", f1)
            m.auto("activation")
            m.conv(res + "2b", 3, f1, f1)
            m.bn(bn + "2b", f1)
            m.auto("activation")
            m.conv(res + "2c", 1, f1, f3)
            if k == 0:
                m.conv(res + "1", 1, cin, f3)
                m.bn(bn + "2c", f3)
                m.bn(bn + "1", f3)
            else:
                m.bn(bn + "2c", f3)
            m.auto("add")
            m.plain("res%d%s_out" % (stage, letter))
            cin = f3
    # FPN
    m.conv("fpn_c5p5", 1, 32 * BASE, PYRAMID)
    m.plain("fpn_p5upsampled")
    m.conv("fpn_c4p4", 1, 16 * BASE, PYRAMID)
    m.plain("fpn_p4add")
    m.plain("fpn_p4upsampled")
    m.conv("fpn_c3p3", 1, 8 * BASE, PYRAMID)
    m.plain("fpn_p3add")
    m.plain("fpn_p3upsampled")
    m.conv("fpn_c2p2", 1, 4 * BASE, PYRAMID)
    m.plain("fpn_p2add")
    for name in ("fpn_p5", "fpn_p2", "fpn_p3", "fpn_p4"):
        m.conv(name, 3, PYRAMID, PYRAMID)
    m.plain("fpn_p6")
    # The nested rpn_model: one group, the inner layers' variables in its weight_names.
    m.items.append(("rpn_model", [
        ("rpn_conv_shared/kernel:0", (3, 3, PYRAMID, RPN_DEPTH)),
        ("rpn_conv_shared/bias:0", (RPN_DEPTH,)),
        ("rpn_class_raw/kernel:0", (1, 1, RPN_DEPTH, 2 * ANCHORS)),
        ("rpn_class_raw/bias:0", (2 * ANCHORS,)),
        ("rpn_bbox_pred/kernel:0", (1, 1, RPN_DEPTH, 4 * ANCHORS)),
        ("rpn_bbox_pred/bias:0", (4 * ANCHORS,)),
    ]))
    for name in ("rpn_class_logits", "rpn_class", "rpn_bbox", "ROI", "lambda_1",
                 "proposal_targets", "roi_align_classifier"):
        m.plain(name)
    # Box head (TimeDistributed: the wrapper's name everywhere).
    m.conv("mrcnn_class_conv1", POOL, PYRAMID, FC)
    m.bn("mrcnn_class_bn1", FC)
    m.auto("activation")
    m.conv("mrcnn_class_conv2", 1, FC, FC)
    m.bn("mrcnn_class_bn2", FC)
    m.auto("activation")
    m.plain("pool_squeeze")
    m.dense("mrcnn_class_logits", FC, NUM_CLASSES)
    m.dense("mrcnn_bbox_fc", FC, 4 * NUM_CLASSES)
    m.plain("mrcnn_class")
    m.plain("mrcnn_bbox")
    # Mask head
    m.plain("roi_align_mask")
    for i in (1, 2, 3, 4):
        m.conv("mrcnn_mask_conv%d" % i, 3, PYRAMID, PYRAMID)
        m.bn("mrcnn_mask_bn%d" % i, PYRAMID)
        m.auto("activation")
    # Conv2DTranspose kernels are (kh, kw, out, in).
    m.items.append(("mrcnn_mask_deconv", [("mrcnn_mask_deconv/kernel:0", (2, 2, PYRAMID, PYRAMID)),
                                          ("mrcnn_mask_deconv/bias:0", (PYRAMID,))]))
    m.conv("mrcnn_mask", 1, PYRAMID, NUM_CLASSES)
    for name in ("output_rois", "rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss",
                 "mrcnn_bbox_loss", "mrcnn_mask_loss"):
        m.plain(name)
    return m.items


def save_attributes_to_hdf5_group(group, name, data):
    """Keras' helper: one attribute unless it would pass the 64 KB object-header limit."""
    limit = 64512
    data_npy = np.asarray(data)
    num_chunks = 1
    chunked = np.array_split(data_npy, num_chunks)
    while any(x.nbytes > limit for x in chunked):
        num_chunks += 1
        chunked = np.array_split(data_npy, num_chunks)
    # Keras assigns the list itself; the h5py 2.x it ran with stored a list of bytes as a
    # fixed-length, NULL-padded string array (numpy 'S'), and [] as an empty float64 array.
    # h5py 3 would store variable-length strings, so the conversion is spelled out here.
    if num_chunks > 1:
        for i, chunk in enumerate(chunked):
            group.attrs["%s%d" % (name, i)] = chunk
    else:
        group.attrs[name] = data_npy


def main():
    layers = matterport_layers()
    with h5py.File(OUT, "w") as f:
        # save_weights_to_hdf5_group(f, model.layers)
        save_attributes_to_hdf5_group(f, "layer_names", [n.encode("utf8") for n, _ in layers])
        f.attrs["backend"] = np.bytes_("tensorflow".encode("utf8"))
        f.attrs["keras_version"] = np.bytes_("2.2.4".encode("utf8"))
        for name, weights in layers:
            g = f.create_group(name)
            weight_names = [w.encode("utf8") for w, _ in weights]
            save_attributes_to_hdf5_group(g, "weight_names", weight_names)
            for (var, shape), wname in zip(weights, weight_names):
                param = var.split(":")[0]  # "rpn_conv_shared/kernel": the mrcnn name
                n = int(np.prod(shape))
                # Keras writes contiguous datasets; gzip keeps the committed file under 2 MB and
                # changes nothing a reader sees (HDF5 decompresses transparently).
                ds = g.create_dataset(wname, shape, dtype=np.float32, compression="gzip",
                                      compression_opts=9, shuffle=True)
                ds[...] = value(param, n).reshape(shape)
    count = sum(int(np.prod(s)) for _, w in layers for _, s in w)
    print("wrote %s: %d layers, %d weighted, %d values" %
          (OUT, len(layers), sum(1 for _, w in layers if w), count))


if __name__ == "__main__":
    main()

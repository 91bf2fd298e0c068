#!/usr/bin/python3
"""An independent scorer for `*_pred.json` prediction files (mrcnn predict's format).

    score_predictions.py --data VAL_DIR_OR_VIA_JSON --pred PRED_DIR --config CONFIG.json
                         [--threshold T] [--json FILE]
    score_predictions.py --self-test

Ground truth: the VIA 1/2 annotations, every shape rasterised at the original image size with
skimage.draw.polygon's rule (a pixel (r, c) is inside when its centre (x=c, y=r) is inside the
polygon by the even-odd rule; centres exactly on an edge or a vertex count as inside); instances
whose raster is empty are dropped; a GT box is the bounding box of its mask, y2/x2 exclusive.
Predictions: masks from the COCO compressed RLE ("rle") or, without one, the union of the
rasterised "polygons"; boxes from "box" ([y1, x1, y2, x2], y2/x2 exclusive).

Metrics: pycocotools' COCOeval logic written out from its description (no pycocotools, nothing
of mrcnn's C): one area range (all), maxDets 100, per class then the mean over the classes that
have ground truth -- mask AP (IoU .50:.05:.95, 101 recall points), mask AP50, box AP50; and at
the operating threshold T (default the config's DETECTION_MIN_CONFIDENCE): sensitivity (GT
lesions matched by class-agnostic greedy matching at mask IoU >= 0.5), false positives per
image, and the mean Dice of the matched pairs.

Only numpy and PIL (or torchvision.io for PNG sizes when PIL is missing). The rasteriser, the VIA
reader and the RLE codec are also used by quality_torchvision.py."""
import argparse
import glob
import json
import math
import os
import sys

import numpy as np

# COCOeval's parameters, built with its own expressions so the floats are the same.
IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
MAX_DETS = 100

# Matterport's defaults for the few config keys read here (mrcnn: layers/model.c,
# train/config.c).
DEFAULT_NUM_CLASSES = 2
DEFAULT_MIN_CONFIDENCE = 0.7
DEFAULT_CLASS_ATTRS = ["class", "name", "label", "type"]


# ---- config -------------------------------------------------------------------------------------

def load_config(path):
    with open(path) as f:
        cfg = json.load(f)
    if not isinstance(cfg, dict):
        raise SystemExit("%s: a config is a JSON object" % path)
    return cfg


def class_setup(cfg):
    """(class names with "BG" first, single_class, class attributes to look at), as mrcnn's loader
    resolves them: no CLASS_NAMES and NUM_CLASSES 2 is single-class mode (every region is
    class 1); no CLASS_NAMES otherwise names the classes class1..classN."""
    names = cfg.get("CLASS_NAMES")
    if names:
        names = list(names)
        if names[0].strip().lower() != "bg":
            names = ["BG"] + names
        single = False
    else:
        n = int(cfg.get("NUM_CLASSES", DEFAULT_NUM_CLASSES))
        names = ["BG"] + ["class%d" % i for i in range(1, n)]
        single = n == 2
    attr = cfg.get("CLASS_ATTRIBUTE")
    attrs = [attr] if attr else list(DEFAULT_CLASS_ATTRS)
    return names, single, attrs


# ---- rasterising --------------------------------------------------------------------------------

def raster_polygon(xs, ys, height, width, out=None):
    """skimage.draw.polygon's current rule (O'Rourke's crossing test at every pixel centre):
    for each edge from the previous vertex (x1, y1) to the current (x0, y0), shifted so the
    centre is the origin, v = (x0*y1 - x1*y0) / (y1 - y0); a right crossing is an edge with
    (y0 > 0) != (y1 > 0) and v > 0, a left crossing one with (y0 < 0) != (y1 < 0) and v < 0.
    Filled: a centre within 1e-12 of a vertex, or crossing parities that differ (on an edge), or
    an odd right count (inside). Returns a bool (height, width) mask (or ORs into `out`)."""
    mask = np.zeros((height, width), bool) if out is None else out
    xs = np.asarray(xs, np.float64).ravel()
    ys = np.asarray(ys, np.float64).ravel()
    n = xs.size
    if n == 0 or n != ys.size or not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
        return mask
    # Outside the vertices' bounding box nothing is filled.
    r0 = max(0, int(math.ceil(ys.min())))
    r1 = min(height - 1, int(math.floor(ys.max())))
    c0 = max(0, int(math.ceil(xs.min())))
    c1 = min(width - 1, int(math.floor(xs.max())))
    if r0 > r1 or c0 > c1:
        return mask
    cols = np.arange(c0, c1 + 1, dtype=np.float64)[None, :]
    nr = r1 - r0 + 1
    right = np.zeros((nr, cols.size), np.int32)
    left = np.zeros((nr, cols.size), np.int32)
    filled = np.zeros((nr, cols.size), bool)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i in range(n):
            j = i - 1 if i else n - 1
            ya, yb = ys[i], ys[j]
            # Only rows within the edge's y range can see a crossing.
            lo = max(r0, int(math.ceil(min(ya, yb))))
            hi = min(r1, int(math.floor(max(ya, yb))))
            if lo <= hi and ya != yb:
                rows = np.arange(lo, hi + 1, dtype=np.float64)[:, None]
                x0 = xs[i] - cols
                y0 = ya - rows
                x1 = xs[j] - cols
                y1 = yb - rows
                v = (x0 * y1 - x1 * y0) / (y1 - y0)
                sl = slice(lo - r0, hi - r0 + 1)
                right[sl] += ((y0 > 0) != (y1 > 0)) & (v > 0)
                left[sl] += ((y0 < 0) != (y1 < 0)) & (v < 0)
            rc, rr = round(xs[i]), round(ys[i])
            if (abs(xs[i] - rc) < 1e-12 and abs(ys[i] - rr) < 1e-12 and c0 <= rc <= c1
                    and r0 <= rr <= r1):
                filled[int(rr) - r0, int(rc) - c0] = True
    filled |= ((right & 1) != (left & 1)) | ((right & 1) == 1)
    mask[r0:r1 + 1, c0:c1 + 1] |= filled
    return mask


def raster_ellipse(cx, cy, rx, ry, theta, height, width, out=None):
    """Pixel centres with u^2 + v^2 <= 1 in the ellipse's frame (closed, like the polygon)."""
    mask = np.zeros((height, width), bool) if out is None else out
    if not (rx > 0 and ry > 0):
        return mask
    ct, st = math.cos(theta), math.sin(theta)
    ex = math.sqrt((rx * ct) ** 2 + (ry * st) ** 2)
    ey = math.sqrt((rx * st) ** 2 + (ry * ct) ** 2)
    r0, r1 = max(0, math.ceil(cy - ey)), min(height - 1, math.floor(cy + ey))
    c0, c1 = max(0, math.ceil(cx - ex)), min(width - 1, math.floor(cx + ex))
    if r0 > r1 or c0 > c1:
        return mask
    dy = np.arange(r0, r1 + 1, dtype=np.float64)[:, None] - cy
    dx = np.arange(c0, c1 + 1, dtype=np.float64)[None, :] - cx
    u = (dx * ct + dy * st) / rx
    v = (-dx * st + dy * ct) / ry
    mask[r0:r1 + 1, c0:c1 + 1] |= u * u + v * v <= 1.0
    return mask


def shape_mask(sa, height, width):
    """A VIA shape_attributes object as a bool mask; None for shapes that hold no area (point,
    polyline) or are not understood."""
    kind = str(sa.get("name", "")).lower()
    num = lambda k, d=None: float(sa[k]) if k in sa else d  # noqa: E731
    if kind == "polygon":
        return raster_polygon(sa.get("all_points_x", []), sa.get("all_points_y", []), height,
                              width)
    if kind == "rect":
        x, y, w, h = num("x"), num("y"), num("width"), num("height")
        return raster_polygon([x, x + w, x + w, x], [y, y, y + h, y + h], height, width)
    if kind == "circle":
        return raster_ellipse(num("cx"), num("cy"), num("r"), num("r"), 0.0, height, width)
    if kind == "ellipse":
        return raster_ellipse(num("cx"), num("cy"), num("rx"), num("ry"), num("theta", 0.0),
                              height, width)
    return None


def mask_box(mask):
    """[y1, x1, y2, x2] of a non-empty mask, y2/x2 exclusive; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return [int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1]


# ---- images -------------------------------------------------------------------------------------

def image_size(path):
    """(height, width) of an image file."""
    try:
        from PIL import Image
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except ImportError:
        import torchvision.io
        img = torchvision.io.read_image(path)
        return int(img.shape[1]), int(img.shape[2])


# ---- VIA annotations ----------------------------------------------------------------------------

def find_via_json(path):
    """The VIA JSON of a split: the file itself, or the single annotation .json in the folder."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise SystemExit("%s: no such file or folder" % path)
    found = sorted(p for p in glob.glob(os.path.join(path, "*.json"))
                   if not p.endswith("_pred.json"))
    if len(found) != 1:
        raise SystemExit("%s: expected one VIA annotation .json, found %d%s" % (
            path, len(found), (": " + ", ".join(os.path.basename(p) for p in found)) if found
            else ""))
    return found[0]


def _label_of(value):
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):  # a VIA checkbox: {"option": true, ...}
        for k, v in value.items():
            if v:
                return k
    return None


def region_class(rattrs, names, single, attrs, where):
    if single:
        return 1
    label = None
    lower = {str(k).lower(): v for k, v in (rattrs or {}).items()}
    for a in attrs:
        if a.lower() in lower:
            label = _label_of(lower[a.lower()])
            if label is not None:
                break
    if label is None:
        raise SystemExit("%s: region has no class attribute (looked for %s)" % (
            where, ", ".join(attrs)))
    for i, n in enumerate(names):
        if i and n.strip().lower() == label.strip().lower():
            return i
    raise SystemExit("%s: class \"%s\" is not in CLASS_NAMES %s" % (where, label, names[1:]))


def load_via(json_path, names, single, attrs):
    """A list of records, one per image in file order: {"file", "path", "regions":
    [(class_id, shape_attributes)]}."""
    with open(json_path) as f:
        data = json.load(f)
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
    if not isinstance(data, dict):
        raise SystemExit("%s: not a VIA 1/2 annotation file" % json_path)
    base = os.path.dirname(os.path.abspath(json_path))
    records = []
    for key, entry in data.items():
        fname = entry.get("filename")
        if not fname:
            raise SystemExit("%s: entry %s has no filename" % (json_path, key))
        regions = entry.get("regions") or []
        if isinstance(regions, dict):  # VIA 1.x
            regions = [regions[k] for k in sorted(regions, key=lambda s: int(s)
                                                  if str(s).isdigit() else 0)]
        out = []
        for k, r in enumerate(regions):
            sa = r.get("shape_attributes") or {}
            if str(sa.get("name", "")).lower() in ("point", "polyline", "line", ""):
                continue
            where = "%s: %s region %d" % (json_path, fname, k)
            out.append((region_class(r.get("region_attributes"), names, single, attrs, where),
                        sa))
        records.append({"file": fname, "path": os.path.join(base, fname), "regions": out})
    return records


def ground_truth(records, sizes=None):
    """Per image: (height, width, [(class_id, mask, box)]); empty rasters dropped."""
    out = []
    for rec in records:
        if sizes and rec["file"] in sizes:
            h, w = sizes[rec["file"]]
        else:
            h, w = image_size(rec["path"])
        inst = []
        for cid, sa in rec["regions"]:
            m = shape_mask(sa, h, w)
            if m is None:
                continue
            b = mask_box(m)
            if b is None:
                continue
            inst.append((cid, m, b))
        out.append((h, w, inst))
    return out


# ---- COCO compressed RLE ------------------------------------------------------------------------

def rle_counts(mask):
    """pycocotools' rleEncode: run lengths of the column-major (Fortran order) pixels, starting
    with a run of zeros (possibly empty)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat[0]:
        counts = [0] + counts
    return counts


def rle_to_string(counts):
    """pycocotools' rleToString: each count (from the fourth on, minus the count two before) in
    5-bit groups, low first, 0x20 marking 'more follows', the last group's 0x10 the sign; each
    group + 48 as a character."""
    out = []
    for i, x in enumerate(counts):
        x = int(x)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1f
            x >>= 5  # arithmetic shift, as C's on a signed long
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def rle_from_string(s):
    """pycocotools' rleFrString: the counts of a compressed RLE string."""
    counts = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1f) << (5 * k)
            more = c & 0x20
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_decode(counts, height, width):
    n = height * width
    if sum(counts) != n or any(c < 0 for c in counts):
        raise ValueError("RLE counts sum to %d, the mask has %d pixels" % (sum(counts), n))
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((height, width), order="F")


def mask_to_rle(mask):
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": rle_to_string(rle_counts(mask))}


def rle_to_mask(rle):
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = rle_from_string(counts)
    return rle_decode([int(c) for c in counts], int(h), int(w))


# ---- predictions --------------------------------------------------------------------------------

def load_predictions(pred_dir, gt_files, gt_shapes):
    """{gt file name: [(class_id, score, mask, box)]} in file order; warnings for files that
    match no GT image."""
    by_name = {os.path.basename(f): f for f in gt_files}
    by_stem = {os.path.splitext(os.path.basename(f))[0]: f for f in gt_files}
    preds, unmatched = {}, []
    files = sorted(glob.glob(os.path.join(pred_dir, "*_pred.json")))
    if not files:
        raise SystemExit("%s: no *_pred.json files" % pred_dir)
    for path in files:
        with open(path) as f:
            doc = json.load(f)
        key = by_name.get(os.path.basename(str(doc.get("image", ""))))
        if key is None:
            key = by_stem.get(os.path.basename(path)[:-len("_pred.json")])
        if key is None:
            unmatched.append(os.path.basename(path))
            continue
        h, w = gt_shapes[key]
        if int(doc.get("height", h)) != h or int(doc.get("width", w)) != w:
            raise SystemExit("%s: prediction is %sx%s but the image is %dx%d" % (
                path, doc.get("width"), doc.get("height"), w, h))
        dets = []
        for k, d in enumerate(doc.get("detections", [])):
            if d.get("rle"):
                m = rle_to_mask(d["rle"])
                if m.shape != (h, w):
                    raise SystemExit("%s: detection %d: RLE size %s, image %dx%d" % (
                        path, k, d["rle"].get("size"), w, h))
            else:
                m = np.zeros((h, w), bool)
                for poly in d.get("polygons", []):
                    pts = np.asarray(poly, np.float64).reshape(-1, 2)
                    raster_polygon(pts[:, 0], pts[:, 1], h, w, out=m)
            box = d.get("box") or mask_box(m) or [0, 0, 0, 0]
            dets.append((int(d["class_id"]), float(d["score"]), m, [int(v) for v in box]))
        if key in preds:
            raise SystemExit("%s: a second prediction file for %s" % (path, key))
        preds[key] = dets
    return preds, unmatched


# ---- COCOeval -----------------------------------------------------------------------------------

def mask_iou_matrix(dmasks, gmasks):
    """IoU of every detection (rows) with every GT (columns), as pycocotools' rleIou: integer
    intersection over union, 0 when they do not intersect."""
    if not dmasks or not gmasks:
        return np.zeros((len(dmasks), len(gmasks)))
    d = np.stack([m.ravel() for m in dmasks]).astype(np.float64)
    g = np.stack([m.ravel() for m in gmasks]).astype(np.float64)
    inter = d @ g.T
    union = d.sum(1)[:, None] + g.sum(1)[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(inter > 0, inter / np.where(union > 0, union, 1), 0.0)
    return iou


def box_iou_matrix(dboxes, gboxes):
    """pycocotools' bbIou on [x, y, w, h] boxes (plain areas, no +1)."""
    o = np.zeros((len(dboxes), len(gboxes)))
    for gi, (gy1, gx1, gy2, gx2) in enumerate(gboxes):
        G = [float(gx1), float(gy1), float(gx2 - gx1), float(gy2 - gy1)]
        ga = G[2] * G[3]
        for di, (dy1, dx1, dy2, dx2) in enumerate(dboxes):
            D = [float(dx1), float(dy1), float(dx2 - dx1), float(dy2 - dy1)]
            da = D[2] * D[3]
            w = min(D[2] + D[0], G[2] + G[0]) - max(D[0], G[0])
            if w <= 0:
                continue
            h = min(D[3] + D[1], G[3] + G[1]) - max(D[1], G[1])
            if h <= 0:
                continue
            i = w * h
            o[di, gi] = i / (da + ga - i)
    return o


def evaluate_image(ious, n_gt):
    """COCOeval.evaluateImg for detections already sorted by score: for every IoU threshold,
    each detection in turn takes the best still-unmatched GT with IoU >= the threshold (a later
    GT wins a tie, by pycocotools' `<` test). Returns dtMatches as bool (T, D)."""
    n_dt = ious.shape[0]
    dtm = np.zeros((len(IOU_THRS), n_dt), bool)
    for t, thr in enumerate(IOU_THRS):
        gtm = np.zeros(n_gt, bool)
        for d in range(n_dt):
            iou = min(thr, 1 - 1e-10)
            m = -1
            for g in range(n_gt):
                if gtm[g]:
                    continue
                if ious[d, g] < iou:
                    continue
                iou = ious[d, g]
                m = g
            if m == -1:
                continue
            dtm[t, d] = True
            gtm[m] = True
    return dtm


def accumulate(evals):
    """COCOeval.accumulate for one class: `evals` is a list of (scores sorted, dtm (T, D), n_gt)
    per image holding GT or detections of the class. Returns precision (T, R), or None without
    GT."""
    if not evals:
        return None
    scores = np.concatenate([e[0] for e in evals])
    inds = np.argsort(-scores, kind="mergesort")
    dtm = np.concatenate([e[1] for e in evals], axis=1)[:, inds]
    npig = sum(e[2] for e in evals)
    if npig == 0:
        return None
    tp_sum = np.cumsum(dtm, axis=1).astype(np.float64)
    fp_sum = np.cumsum(~dtm, axis=1).astype(np.float64)
    precision = np.zeros((len(IOU_THRS), len(REC_THRS)))
    for t in range(len(IOU_THRS)):
        tp, fp = tp_sum[t], fp_sum[t]
        nd = len(tp)
        rc = tp / npig
        pr = (tp / (fp + tp + np.spacing(1))).tolist()
        for i in range(nd - 1, 0, -1):
            if pr[i] > pr[i - 1]:
                pr[i - 1] = pr[i]
        for ri, pi in enumerate(np.searchsorted(rc, REC_THRS, side="left")):
            if pi >= nd:
                break  # unreachable recall: precision stays 0
            precision[t, ri] = pr[pi]
    return precision


def coco_ap(gt, preds, n_classes, kind):
    """Per class (1..n_classes-1): precision (T, R) or None; `kind` is "segm" or "bbox".
    gt: list per image of [(class_id, mask, box)]; preds: same order, [(class_id, score, mask,
    box)]."""
    result = {}
    for k in range(1, n_classes):
        evals = []
        for g_inst, p_inst in zip(gt, preds):
            g = [x for x in g_inst if x[0] == k]
            d = [x for x in p_inst if x[0] == k]
            if not g and not d:
                continue
            order = np.argsort([-x[1] for x in d], kind="mergesort")[:MAX_DETS]
            d = [d[i] for i in order]
            if kind == "segm":
                ious = mask_iou_matrix([x[2] for x in d], [x[1] for x in g])
            else:
                ious = box_iou_matrix([x[3] for x in d], [x[2] for x in g])
            evals.append((np.array([x[1] for x in d], np.float64).reshape(-1),
                          evaluate_image(ious, len(g)), len(g)))
        result[k] = accumulate(evals)
    return result


def mean_over_classes(per_class, t=None):
    vals = []
    for p in per_class.values():
        if p is None:
            continue
        vals.append(float(p.mean()) if t is None else float(p[t].mean()))
    return float(np.mean(vals)) if vals else float("nan")


def lesion_metrics(gt, preds, threshold):
    """Class-agnostic greedy matching at mask IoU >= 0.5 of the detections with score >=
    threshold: each detection in score order takes the unmatched GT of highest IoU (the first
    such on a tie). Returns (matched, n_gt, false positives, [dice of matched pairs])."""
    matched = n_gt = fps = 0
    dices = []
    for g_inst, p_inst in zip(gt, preds):
        d = [x for x in p_inst if x[1] >= threshold]
        order = np.argsort([-x[1] for x in d], kind="mergesort")
        d = [d[i] for i in order]
        gm = [x[1] for x in g_inst]
        dm = [x[2] for x in d]
        ious = mask_iou_matrix(dm, gm)
        taken = np.zeros(len(gm), bool)
        n_gt += len(gm)
        for i in range(len(dm)):
            best, arg = 0.5, -1
            for j in range(len(gm)):
                if not taken[j] and ious[i, j] >= best and (arg < 0 or ious[i, j] > best):
                    best, arg = ious[i, j], j
            if arg < 0:
                fps += 1
                continue
            taken[arg] = True
            matched += 1
            inter = float(np.logical_and(dm[i], gm[arg]).sum())
            dices.append(2.0 * inter / float(dm[i].sum() + gm[arg].sum()))
    return matched, n_gt, fps, dices


def score(gt, preds, names, threshold):
    n_classes = len(names)
    segm = coco_ap(gt, preds, n_classes, "segm")
    bbox = coco_ap(gt, preds, n_classes, "bbox")
    matched, n_gt, fps, dices = lesion_metrics(gt, preds, threshold)
    n_images = len(gt)
    r = {
        "mask_ap50": mean_over_classes(segm, 0),
        "mask_ap": mean_over_classes(segm),
        "box_ap50": mean_over_classes(bbox, 0),
        "sensitivity": matched / n_gt if n_gt else float("nan"),
        "dice": float(np.mean(dices)) if dices else float("nan"),
        "fp_per_image": fps / n_images if n_images else float("nan"),
        "threshold": threshold,
        "images": n_images,
        "gt_instances": n_gt,
        "matched": matched,
        "false_positives": fps,
        "detections": sum(len(p) for p in preds),
        "per_class": {},
    }
    for k in range(1, n_classes):
        r["per_class"][names[k]] = {
            "gt": sum(1 for g in gt for x in g if x[0] == k),
            "detections": sum(1 for p in preds for x in p if x[0] == k),
            "mask_ap": None if segm[k] is None else float(segm[k].mean()),
            "mask_ap50": None if segm[k] is None else float(segm[k][0].mean()),
            "box_ap50": None if bbox[k] is None else float(bbox[k][0].mean()),
        }
    return r


def fmt(v):
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.4f" % v


def report(r, out=sys.stdout):
    pc = r["per_class"]

    def per(key):
        return ", ".join("%s %s" % (n, fmt(c[key])) for n, c in pc.items() if c["gt"])

    print("images %d, GT lesions %d (%s), detections %d" % (
        r["images"], r["gt_instances"], ", ".join("%s %d" % (n, c["gt"]) for n, c in pc.items()),
        r["detections"]), file=out)
    print("mask AP      %s  (IoU .50:.05:.95; %s)" % (fmt(r["mask_ap"]), per("mask_ap")), file=out)
    print("mask AP50    %s  (%s)" % (fmt(r["mask_ap50"]), per("mask_ap50")), file=out)
    print("box AP50     %s  (%s)" % (fmt(r["box_ap50"]), per("box_ap50")), file=out)
    print("sensitivity  %s  (%d of %d lesions at score >= %g, mask IoU >= 0.5)" % (
        fmt(r["sensitivity"]), r["matched"], r["gt_instances"], r["threshold"]), file=out)
    print("FP per image %s  (%d false positives on %d images)" % (
        fmt(r["fp_per_image"]), r["false_positives"], r["images"]), file=out)
    print("mean Dice    %s  (matched pairs)" % fmt(r["dice"]), file=out)
    print(" ".join("%s=%s" % (k, fmt(r[k])) for k in (
        "mask_ap50", "mask_ap", "box_ap50", "sensitivity", "dice", "fp_per_image")), file=out)


def json_safe(v):
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    return v


# ---- self-test ----------------------------------------------------------------------------------

def self_test():
    rng = np.random.default_rng(5)
    fails = []

    def check(name, got, want, tol=1e-9):
        ok = (math.isnan(want) and math.isnan(got)) if isinstance(want, float) and math.isnan(
            want) else abs(got - want) <= tol
        print("%-58s %s (got %.6f, want %.6f)" % (name, "ok" if ok else "FAIL", got, want))
        if not ok:
            fails.append(name)

    # RLE: known strings (worked by hand from rleToString), then random round trips.
    m = np.array([[0, 1], [1, 1]], bool)  # column-major 0,1,1,1 -> counts [1, 3] -> "13"
    check("rle [[0,1],[1,1]] is '13'", float(mask_to_rle(m)["counts"] == "13"), 1.0)
    # 100 = 0b11_00100: low group 4 with 'more' (4|32)+48 = 'T', then 3+48 = '3'.
    check("rle counts [100] is 'T3'", float(rle_to_string([100]) == "T3"), 1.0)
    # [1, 10, 1, 2]: the fourth is stored as 2 - 10 = -8 -> group 24 (sign bit set) -> 'H'.
    check("rle counts [1,10,1,2] is '1:1H'", float(rle_to_string([1, 10, 1, 2]) == "1:1H"), 1.0)
    check("rle '1:1H' decodes", float(rle_from_string("1:1H") == [1, 10, 1, 2]), 1.0)
    bad = 0
    for trial in range(300):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        p = [0.02, 0.5, 0.98][trial % 3]
        mk = rng.random((h, w)) < p
        if trial % 7 == 0:
            mk[:] = trial % 2 == 0
        back = rle_to_mask(json.loads(json.dumps(mask_to_rle(mk))))
        bad += not np.array_equal(back, mk)
        bad += rle_counts(mk) != rle_from_string(rle_to_string(rle_counts(mk)))
    check("rle round trip of 300 random masks (mismatches)", float(bad), 0.0)

    # Rasteriser: closed rule -- the square (1,1)-(3,3) fills rows/cols 1..3.
    sq = raster_polygon([1, 3, 3, 1], [1, 1, 3, 3], 5, 5)
    check("square (1,1)-(3,3) fills 9 pixels", float(sq.sum()), 9.0)
    check("  ... exactly rows/cols 1..3", float(sq[1:4, 1:4].all()), 1.0)
    tri = raster_polygon([0.5, 4.5, 0.5], [0.5, 0.5, 4.5], 6, 6)  # x + y <= 5 inside, edge incl.
    want = np.array([[1 if (c >= 1 and r >= 1 and c + r <= 5) else 0 for c in range(6)]
                     for r in range(6)], bool)
    check("triangle with a diagonal edge through centres", float(np.array_equal(tri, want)), 1.0)

    # Scenes: one class, two images with one square lesion each.
    names = ["BG", "lesion"]

    def sqmask(y, x, s, h=32, w=32):
        mk = np.zeros((h, w), bool)
        mk[y:y + s, x:x + s] = True
        return mk

    g1, g2 = sqmask(2, 2, 8), sqmask(10, 12, 10)
    gt = [[(1, g1, mask_box(g1))], [(1, g2, mask_box(g2))]]
    perfect = [[(1, 0.8, g1, mask_box(g1))], [(1, 0.7, g2, mask_box(g2))]]
    r = score(gt, perfect, names, 0.5)
    check("perfect: mask AP", r["mask_ap"], 1.0)
    check("perfect: box AP50", r["box_ap50"], 1.0)
    check("perfect: sensitivity", r["sensitivity"], 1.0)
    check("perfect: Dice", r["dice"], 1.0)
    check("perfect: FP per image", r["fp_per_image"], 0.0)

    # One false positive ranked first: cumulative TP 0,1,2 and FP 1,1,1, so recall 0,.5,1 and
    # precision 0,1/2,2/3 -> made monotone 2/3,2/3,2/3; every recall point samples 2/3
    # (well, 2/(3 + eps)): AP = 2/3 at every IoU threshold.
    fp = sqmask(22, 22, 6)
    one_fp = [[(1, 0.9, fp, mask_box(fp)), (1, 0.8, g1, mask_box(g1))],
              [(1, 0.7, g2, mask_box(g2))]]
    r = score(gt, one_fp, names, 0.5)
    check("FP ranked first: mask AP = 2/3", r["mask_ap"], 2.0 / 3.0, 1e-12)
    check("FP ranked first: box AP50 = 2/3", r["box_ap50"], 2.0 / 3.0, 1e-12)
    check("FP ranked first: sensitivity", r["sensitivity"], 1.0)
    check("FP ranked first: FP per image = 1/2", r["fp_per_image"], 0.5)

    # FP ranked second: TP .9, FP .8, TP .7 -> recall .5,.5,1, precision 1,1/2,2/3 ->
    # monotone 1,2/3,2/3; recall points 0..0.50 (51 of them) sample 1, 0.51..1 (50) sample 2/3:
    # AP = (51 + 50 * 2/3) / 101 = 0.834983...
    mid = [[(1, 0.9, g1, mask_box(g1)), (1, 0.8, fp, mask_box(fp))],
           [(1, 0.7, g2, mask_box(g2))]]
    r = score(gt, mid, names, 0.5)
    check("FP ranked second: mask AP = (51 + 100/3) / 101", r["mask_ap"],
          (51 + 50 * 2.0 / 3.0) / 101, 1e-12)

    # Half-overlapping mask: IoU exactly 0.5 (16 of 32 pixels...): a 4x8 prediction on the 8x8
    # GT has IoU 32/64 = 0.5 -> a match at .50 only: AP50 1, AP = 1/10 (one threshold of ten).
    half = np.zeros((32, 32), bool)
    half[2:6, 2:10] = True
    r = score([gt[0]], [[(1, 0.9, half, mask_box(half))]], names, 0.5)
    check("IoU exactly 0.5: mask AP50", r["mask_ap50"], 1.0)
    check("IoU exactly 0.5: mask AP = 1/10", r["mask_ap"], 0.1, 1e-12)
    check("IoU exactly 0.5: Dice = 2*32/(32+64)", r["dice"], 64.0 / 96.0, 1e-12)

    # Two classes, the second without GT: left out of the mean.
    r = score(gt, [[(1, 0.8, g1, mask_box(g1)), (2, 0.95, fp, mask_box(fp))],
                   [(1, 0.7, g2, mask_box(g2))]], ["BG", "a", "b"], 0.5)
    check("class without GT left out of the mean", r["mask_ap"], 1.0)

    # Empty predictions.
    r = score(gt, [[], []], names, 0.5)
    check("empty predictions: mask AP", r["mask_ap"], 0.0)
    check("empty predictions: sensitivity", r["sensitivity"], 0.0)
    check("empty predictions: FP per image", r["fp_per_image"], 0.0)

    # Through files: a VIA JSON and prediction JSONs (polygons and RLE) in a temp folder.
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        try:
            from PIL import Image
            for fn in ("a.png", "b.png"):
                Image.fromarray(np.zeros((32, 32), np.uint8)).save(os.path.join(tmp, fn))
            via = {
                "a.png1": {"filename": "a.png", "size": 1, "file_attributes": {}, "regions": [{
                    "shape_attributes": {"name": "polygon", "all_points_x": [2, 9, 9, 2],
                                         "all_points_y": [2, 2, 9, 9]},
                    "region_attributes": {"class": "lesion"}}]},
                "b.png1": {"filename": "b.png", "size": 1, "file_attributes": {}, "regions": []},
            }
            with open(os.path.join(tmp, "via_region_data.json"), "w") as f:
                json.dump(via, f)
            pd = os.path.join(tmp, "pred")
            os.makedirs(pd)
            with open(os.path.join(pd, "a_pred.json"), "w") as f:
                json.dump({"image": "../a.png", "width": 32, "height": 32, "detections": [
                    {"class_id": 1, "class": "lesion", "score": 0.9, "box": [2, 2, 10, 10],
                     "polygons": [[[2, 2], [9, 2], [9, 9], [2, 9]]]}]}, f)
            with open(os.path.join(pd, "b_pred.json"), "w") as f:
                json.dump({"image": "../b.png", "width": 32, "height": 32, "detections": [
                    {"class_id": 1, "class": "lesion", "score": 0.3, "box": [20, 20, 26, 26],
                     "polygons": [], "rle": mask_to_rle(sqmask(20, 20, 6))}]}, f)
            names2, single, attrs = class_setup({"CLASS_NAMES": ["BG", "lesion"]})
            recs = load_via(find_via_json(tmp), names2, single, attrs)
            g = ground_truth(recs)
            shapes = {rec["file"]: gg[:2] for rec, gg in zip(recs, g)}
            p, _ = load_predictions(pd, [rec["file"] for rec in recs], shapes)
            r = score([x[2] for x in g], [p.get(rec["file"], []) for rec in recs], names2, 0.5)
            check("files: polygon prediction on polygon GT, AP", r["mask_ap"], 1.0)
            # The 0.3 FP is below every TP: AP stays 1, but it is below T so no FP counted.
            check("files: FP below threshold not counted", r["fp_per_image"], 0.0)
        except ImportError:
            print("files: skipped (no PIL)")

    print("self-test: %s" % ("FAILED: " + ", ".join(fails) if fails else "all passed"))
    return 1 if fails else 0


# ---- main ---------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="validation folder (holding one VIA .json) or the VIA .json")
    ap.add_argument("--pred", help="folder of <stem>_pred.json files")
    ap.add_argument("--config", help="the run's config JSON (classes, DETECTION_MIN_CONFIDENCE)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="operating score threshold (default: DETECTION_MIN_CONFIDENCE)")
    ap.add_argument("--json", help="also write the metrics to this file")
    ap.add_argument("--self-test", action="store_true", help="run the built-in checks")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    if not (args.data and args.pred and args.config):
        ap.error("--data, --pred and --config are required (or --self-test)")
    cfg = load_config(args.config)
    names, single, attrs = class_setup(cfg)
    threshold = args.threshold if args.threshold is not None else float(
        cfg.get("DETECTION_MIN_CONFIDENCE", DEFAULT_MIN_CONFIDENCE))
    data = args.data
    if os.path.isdir(data) and os.path.isdir(os.path.join(data, "val")) and not glob.glob(
            os.path.join(data, "*.json")):
        data = os.path.join(data, "val")
    recs = load_via(find_via_json(data), names, single, attrs)
    gt = ground_truth(recs)
    shapes = {rec["file"]: g[:2] for rec, g in zip(recs, gt)}
    preds, unmatched = load_predictions(args.pred, [rec["file"] for rec in recs], shapes)
    if unmatched:
        print("warning: %d prediction files match no annotated image (ignored): %s" % (
            len(unmatched), ", ".join(unmatched[:5]) + (" ..." if len(unmatched) > 5 else "")),
            file=sys.stderr)
    missing = [rec["file"] for rec in recs if rec["file"] not in preds]
    if missing:
        print("warning: %d images have no prediction file (scored as no detections): %s" % (
            len(missing), ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")),
            file=sys.stderr)
    r = score([g[2] for g in gt], [preds.get(rec["file"], []) for rec in recs], names, threshold)
    report(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(json_safe(r), f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

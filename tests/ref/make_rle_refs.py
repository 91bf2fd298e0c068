"""Writes tests/ref/rle_ref.json: binary masks and their COCO compressed RLE "counts" strings,
computed here from the format's description (column-major runs starting with zeros; each run,
from the fourth on as the difference to the run two before, in 5-bit chunks, least significant
first, 0x20 = more follow, 0x10 of the last = negative, plus 48), independently of data/rle.c.
tests/test_rle.c checks mr_rle_encode and mr_rle_decode against them. Plain numpy (pycocotools
is not packaged for Debian 12): `cd tests/ref && /usr/bin/python3 make_rle_refs.py`.
"""
import json
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rle_ref.json")
rng = np.random.default_rng(20250301)


def runs(mask):
    """Run lengths of the column-major pixel sequence, the first run counting zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    cuts = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate(([0], cuts, [flat.size]))
    lengths = np.diff(edges).tolist()
    if flat[0] == 1:
        lengths.insert(0, 0)
    return lengths


def number(x):
    out = ""
    while True:
        chunk = x & 0x1F  # Python ints: two's complement bits, any size
        x >>= 5  # floor division by 32
        more = x != -1 if chunk & 0x10 else x != 0
        out += chr(48 + (chunk | 0x20 if more else chunk))
        if not more:
            return out


def counts_string(mask):
    r = runs(mask)
    return "".join(number(r[i] - r[i - 2] if i > 2 else r[i]) for i in range(len(r)))


def decode(s, h, w):
    """The inverse, to check the encoder above on every case."""
    values, i = [], 0
    while i < len(s):
        x, k = 0, 0
        while True:
            c = ord(s[i]) - 48
            x |= (c & 0x1F) << (5 * k)
            i, k = i + 1, k + 1
            if not c & 0x20:
                if c & 0x10:
                    x -= 1 << (5 * k)
                break
        values.append(x + values[-2] if len(values) > 2 else x)
    flat = np.repeat(np.arange(len(values)) % 2, values).astype(np.uint8)
    return flat.reshape((h, w), order="F")


cases = []


def add(name, mask):
    mask = np.asarray(mask, dtype=np.uint8)
    s = counts_string(mask)
    assert np.array_equal(decode(s, *mask.shape), mask), name
    cases.append({
        "name": name,
        "height": int(mask.shape[0]),
        "width": int(mask.shape[1]),
        "mask": "".join(str(v) for v in mask.flatten()),  # row-major, as mrcnn stores masks
        "counts": s,
    })


add("1x1 empty", np.zeros((1, 1)))
add("1x1 full", np.ones((1, 1)))
add("3x4 empty", np.zeros((3, 4)))
add("3x4 full", np.ones((3, 4)))
add("4x3 first pixel", np.eye(4, 3) * (np.arange(4)[:, None] == 0))
add("2x5 last pixel", np.pad(np.ones((1, 1)), ((1, 0), (4, 0))))
add("5x7 checkerboard", np.indices((5, 7)).sum(0) % 2)
for k, (h, w, p) in enumerate([(6, 9, 0.5), (11, 13, 0.2), (17, 5, 0.8), (30, 40, 0.5)]):
    add(f"{h}x{w} random {p}", rng.random((h, w)) < p)
# Long runs: several chunks per number, and large negative differences.
m = np.zeros((40, 64))
m[20:24, 3:60] = 1
m[5, 61] = 1
add("40x64 bar and speck", m)
m = np.zeros((50, 60))
yy, xx = np.indices(m.shape)
m[(yy - 22) ** 2 + (xx - 31) ** 2 <= 15**2] = 1
m[:, :2] = 1
add("50x60 disk and edge", m)
m = np.zeros((100, 90))
m[70:, 50:] = 1
m[0, 0] = 1
add("100x90 corner block", m)

with open(OUT, "w") as f:
    json.dump({"cases": cases}, f, indent=1)
    f.write("\n")
print(f"wrote {OUT}: {len(cases)} cases")

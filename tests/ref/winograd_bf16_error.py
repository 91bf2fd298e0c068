#!/usr/bin/env python3
"""Why a bf16 context keeps Winograd layers in float32 (core/winograd.c).

Rounds the transformed input tile V and kernel U of Winograd F(2x2,3x3) and F(4x4,3x3) (Lavin and
Gray's matrices, the ones core/winograd.c uses for F(4x4,3x3)) to bfloat16, and compares the
output tile with the exact one; beside it, a direct 3x3 convolution with its inputs rounded the
same way. 256 channels, inputs N(0,1), kernel N(0,0.05); the error is the tile's largest, over the
spread of exact outputs, median of 200 tiles. Needs Debian's python3-torch (for the rounding) and
numpy. Prints, for example:

  F(2x2,3x3)  Winograd 0.0070  direct 0.0046
  F(4x4,3x3)  Winograd 0.0674  direct 0.0050
"""
import numpy as np
import torch


def to_bf16(a):
    return torch.tensor(a, dtype=torch.float32).to(torch.bfloat16).to(torch.float32).numpy()


F2 = dict(m=2,
          BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
          G=[[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
          AT=[[1, 1, 1, 0], [0, 1, -1, -1]])
F4 = dict(m=4,
          BT=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
          G=[[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
             [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
          AT=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])


def errors(f, rng, channels=256, tiles=200):
    BT, G, AT = (np.array(f[k], float) for k in ("BT", "G", "AT"))
    m = f["m"]
    wino, direct = [], []
    for _ in range(tiles):
        d = rng.standard_normal((channels, m + 2, m + 2))
        g = 0.05 * rng.standard_normal((channels, 3, 3))
        V = np.einsum("ij,cjk,lk->cil", BT, d, BT)
        U = np.einsum("ij,cjk,lk->cil", G, g, G)
        exact = np.einsum("ij,jk,lk->il", AT, (V * U).sum(0), AT)
        rounded = np.einsum("ij,jk,lk->il", AT, (to_bf16(V) * to_bf16(U)).sum(0), AT)
        dr, gr = to_bf16(d), to_bf16(g)
        dir_out = np.array([[(dr[:, y:y + 3, x:x + 3] * gr).sum() for x in range(m)]
                            for y in range(m)])
        spread = exact.std()
        wino.append(np.abs(rounded - exact).max() / spread)
        direct.append(np.abs(dir_out - exact).max() / spread)
    return np.median(wino), np.median(direct)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    for name, f in (("F(2x2,3x3)", F2), ("F(4x4,3x3)", F4)):
        w, d = errors(f, rng)
        print(f"{name}  Winograd {w:.4f}  direct {d:.4f}")

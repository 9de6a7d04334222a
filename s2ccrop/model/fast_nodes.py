"""The RoD half of the node embedding without a RoD sample per box (eval-mode fast path, SPEC §1–2).

RoDAlign samples the same grid over the WHOLE map for every box (bin = (W - 1.001) / (a - 1) in map
pixels, no box offset) and only zeroes the samples that lie inside the box. So the raw RoD samples
of box k are rod[k] = G ⊙ M_k, with G [C, P] the unmasked samples of the image (P = ah·aw) and M_k [P]
the box's keep-mask, the same for every channel. Through the node embedding's (pool-folded) weights
W [C, P, D]:

    Σ_{c,p} rod[k, c, p] · W[c, p, :]  =  Σ_p M_k[p] · V[p, :],   V[p, :] = Σ_c G[c, p] · W[c, p, :]

V [P, D] is computed once per image (`rod_table`), and each box only needs its mask (`rod_keep_mask`):
a [K, P] @ [P, D] product instead of a RoD kernel and a [K, C·P] @ [C·P, D] one.

The mask must flip exactly where the op's does, on edges included: `rod_keep_mask` is the pure-PyTorch
op's own (`ops._fallback.rod_grid`, the arithmetic of `locate` in csrc/align_common.h step by step),
in the op's compute dtype (float32 for half / bfloat16).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops import rod_align
from ..ops._fallback import compute_dtype, rod_grid

__all__ = ["rod_table", "rod_keep_mask"]


def rod_table(fmap: Tensor, batch_index: int, weight: Tensor, size: int, spatial_scale: float) -> Tensor:
    """V [size², D] = Σ_c G[c, p] · weight[c, p, :] for image `batch_index` of `fmap` [B, C, H, W].

    `weight` is [C, size², D] (the RoD part of the pool-folded node embedding). G comes from the op
    itself, given a box that masks nothing (x1 > x2, so no sample has x1 <= x <= x2): bit for bit the
    samples the op writes for any box where that box keeps them, on every backend. Summed in the op's
    compute dtype, returned in `weight`'s dtype."""
    nothing = fmap.new_tensor([[float(batch_index), 1.0, 1.0, 0.0, 0.0]])
    samples = rod_align(fmap, nothing, size, spatial_scale).flatten(2)[0]  # [C, P]
    dtype = compute_dtype(weight.dtype)
    # a broadcast multiply and a sum over C: [C, P, D] is small, and on CPU einsum / bmm would go
    # through P matmuls of a 1 x C row
    return (samples.to(dtype)[:, :, None] * weight.to(dtype)).sum(0).to(weight.dtype)


def rod_keep_mask(rois: Tensor, height: int, width: int, size: int, spatial_scale: float) -> Tensor:
    """[K, size²] bool: which RoD samples (row-major over the size x size grid) the op keeps for each
    roi of `rois` [K, 5] (batch_index, x1, y1, x2, y2) on an H x W map: False inside the box, borders
    included, as `locate` decides it. `rois` are in the features' dtype, as the op receives them."""
    return rod_grid(rois, height, width, size, size, spatial_scale, compute_dtype(rois.dtype))[2].flatten(1)

"""Distilling teacher boxes into the gene head (`s2ccrop.model.gene_head`): targets and loss.

Targets follow CenterNet: each teacher box puts a peak of 1 at the stride-8 cell holding its centre
and an elliptical Gaussian around it (σ proportional to the box's size, as in TTFNet), and at that
cell the head regresses log box size and the centre's sub-cell offset. The heat loss is CenterNet's
penalty-reduced focal loss, normalised by the number of boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..genes import box_rows
from ..model.gene_head import STRIDE

GAUSSIAN_ALPHA = 0.54  # σ = α · size / 6 (TTFNet)
MIN_SIGMA = 0.4  # cells


@dataclass
class GeneTargets:
    heat: torch.Tensor  # [2, h, w] in [0, 1]: objects, faces
    index: torch.Tensor  # [n] flat cell index of each box centre
    kind: torch.Tensor  # [n] 0 object, 1 face
    log_size: torch.Tensor  # [n, 2] log(w / STRIDE), log(h / STRIDE)
    offset: torch.Tensor  # [n, 2] centre minus its cell, in [0, 1)


def gene_targets(objects: np.ndarray, faces: np.ndarray, cells: tuple[int, int]) -> GeneTargets:
    """Targets on a grid of `cells` = (h, w) stride-8 cells for boxes [k, ≥4] (xyxy, model pixels)."""
    h, w = cells
    heat = np.zeros((2, h, w), dtype=np.float32)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    index, kind, log_size, offset = [], [], [], []
    for k, boxes in enumerate((objects, faces)):
        for x1, y1, x2, y2 in box_rows(boxes)[:, :4]:
            bw, bh = x2 - x1, y2 - y1
            if bw < 1 or bh < 1:
                continue
            cx, cy = (x1 + x2) / 2 / STRIDE, (y1 + y2) / 2 / STRIDE
            ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
            sx = max(GAUSSIAN_ALPHA * bw / STRIDE / 6, MIN_SIGMA)
            sy = max(GAUSSIAN_ALPHA * bh / STRIDE / 6, MIN_SIGMA)
            g = np.exp(-((xs - ix) ** 2) / (2 * sx * sx) - ((ys - iy) ** 2) / (2 * sy * sy))
            np.maximum(heat[k], g, out=heat[k])
            index.append(iy * w + ix)
            kind.append(k)
            log_size.append((np.log(bw / STRIDE), np.log(bh / STRIDE)))
            offset.append((min(cx - ix, 0.999), min(cy - iy, 0.999)))
    return GeneTargets(
        torch.from_numpy(heat),
        torch.tensor(index, dtype=torch.long),
        torch.tensor(kind, dtype=torch.long),
        torch.tensor(log_size, dtype=torch.float32).reshape(-1, 2),
        torch.tensor(offset, dtype=torch.float32).reshape(-1, 2),
    )


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced pixel-wise focal loss (α = 2, β = 4), summed (normalise outside)."""
    p = logits.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -F.logsigmoid(logits) * (1 - p) ** 2 * pos
    neg_loss = -F.logsigmoid(-logits) * p**2 * (1 - target) ** 4 * (1 - pos)
    return (pos_loss + neg_loss).sum()


def gene_loss(raw: torch.Tensor, t: GeneTargets, size_weight: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one image's raw head output [8, h, w] against its targets."""
    t_heat = t.heat.to(raw.device)
    n = max(int(t.index.numel()), 1)
    heat = focal_loss(raw[:2], t_heat) / n
    if t.index.numel():
        flat = raw.flatten(1)
        index = t.index.to(raw.device)
        size_rows = (2 + 2 * t.kind).to(raw.device)
        pred_size = torch.stack([flat[size_rows, index], flat[size_rows + 1, index]], dim=1)
        pred_off = flat[6:8, index].t()
        reg = F.l1_loss(pred_size, t.log_size.to(raw.device)) + F.l1_loss(pred_off, t.offset.to(raw.device))
    else:
        reg = raw.sum() * 0.0
    loss = heat + size_weight * reg
    return loss, {"gene_heat": heat.item(), "gene_reg": reg.item()}


__all__ = ["GeneTargets", "focal_loss", "gene_loss", "gene_targets"]

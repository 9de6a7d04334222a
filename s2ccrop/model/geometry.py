"""What a box is, as numbers a layer can read: where its edges are and how much of the image it keeps."""

from __future__ import annotations

import torch

GEOMETRY_FEATURES = 6


def box_geometry(boxes: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """[K, 4] xyxy (image pixels) → [K, 6]: the edges as fractions of the image, log of the share of the
    image the box keeps, and log of its aspect (w / h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    w = (x2 - x1).clamp_min(1.0)
    h = (y2 - y1).clamp_min(1.0)
    return torch.stack(
        [x1 / width, y1 / height, x2 / width, y2 / height, torch.log(w * h / (width * height)), torch.log(w / h)], dim=-1
    )

"""A head that moves the chosen crop's edges towards where a human would put them (ours only; as
CACNet regresses its box).

The graph scores a fixed set of candidates, so a crop can only be as good as the nearest candidate, and
the averaged choice inherits the grid's coarse corners. This head looks at one box at a time: the fused
feature map that RoI/RoD sample, taken inside the box and over a context window twice its size (so it
sees what lies just outside each edge), plus the box's place in the image (`box_geometry`), and
predicts how far each edge should move, in units of the box's width and height (x1, y1, x2, y2). It
is trained on boxes near the human crop (`TrainConfig.refine_weight`) with the human crop's edges as
targets. At inference it moves the chosen crop once (`select.refine_box`); the ranking is untouched.
"""

from __future__ import annotations

import torch
from torch import nn

from ..ops import roi_align

SPATIAL_SCALE = 1.0 / 16.0
# Offsets are bounded to ±MAX_OFFSET of the box's side (tanh), so a box keeps at least a fifth of each
# side; a human crop further away than that is a different crop, not a refinement of this one.
MAX_OFFSET = 0.4
# The context window grows the box by this share of its width and height on every side.
CONTEXT = 0.5
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


def refine_targets(boxes: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """[N, 4] offsets that move xyxy `boxes` [N, 4] onto the xyxy box `crop` [4], in units of each
    box's width and height, clipped to what the head can output (±0.95 MAX_OFFSET)."""
    w = (boxes[:, 2] - boxes[:, 0]).clamp_min(1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp_min(1.0)
    scale = torch.stack([w, h, w, h], dim=1)
    return ((crop[None] - boxes) / scale).clamp(-0.95 * MAX_OFFSET, 0.95 * MAX_OFFSET)


def apply_offsets(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """xyxy boxes [N, 4] moved by `offsets` [N, 4] (units of each box's width and height)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return boxes + offsets * torch.stack([w, h, w, h], dim=1)


class BoxRefiner(nn.Module):
    def __init__(self, channels: int, samples: int = 7, hidden: int = 256) -> None:
        super().__init__()
        self.samples = samples
        self.mlp = nn.Sequential(
            nn.Linear(2 * channels * samples * samples + GEOMETRY_FEATURES, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4)
        )
        nn.init.zeros_(self.mlp[2].weight)  # untrained, it moves nothing
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, fmap: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], batch_index: int = 0) -> torch.Tensor:
        """Offsets [N, 4] for xyxy boxes [N, 4] in the pixels of an image of `image_size` (w, h) whose
        features are image `batch_index` of `fmap`; `apply_offsets` moves the boxes by them."""
        boxes = boxes.to(fmap.dtype)
        w = boxes[:, 2] - boxes[:, 0]
        h = boxes[:, 3] - boxes[:, 1]
        grow = CONTEXT * torch.stack([-w, -h, w, h], dim=1)
        index = torch.full((boxes.shape[0], 1), float(batch_index), dtype=fmap.dtype, device=fmap.device)
        inside = roi_align(fmap, torch.cat([index, boxes], dim=1), self.samples, SPATIAL_SCALE)
        around = roi_align(fmap, torch.cat([index, boxes + grow], dim=1), self.samples, SPATIAL_SCALE)
        x = torch.cat([inside.flatten(1), around.flatten(1), box_geometry(boxes, *image_size)], dim=1)
        return MAX_OFFSET * torch.tanh(self.mlp(x))

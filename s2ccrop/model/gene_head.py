"""The learned visual-gene head: object and face boxes from the backbone's own feature maps.

S2CNet's graph relates every candidate crop to a few object boxes ("visual genes"); the reference fed
it Faster R-CNN detections precomputed for its benchmark photos. This head finds them in the photo
itself, from the MobileNetV2 maps the crop model already computed (no second network): a small
feature pyramid brings the stride-8/16/32 maps to stride 8, and a centre-point detector
(CenterNet-style) predicts, per cell,

    channel 0, 1   object / face centre heat (logits)
    channel 2, 3   log(width / 8), log(height / 8) of an object centred there (cells of stride 8)
    channel 4, 5   the same for a face
    channel 6, 7   sub-cell offset of the centre (x, y), shared by both kinds

It is trained by distillation from teacher models (salient-object masks → object boxes; a face
detector → face boxes) in `s2ccrop.training.gene_loss`; the teachers never ship.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STRIDE = 8
CHANNELS = 8
HEAT_PRIOR = 0.01  # initial centre probability: an untrained head finds nothing (genes fall back to the whole image)
OBJECT_THRESHOLD = 0.3
# Faces are kept from a lower confidence than graph genes: they feed the face guard, where a missed face
# means a cut face and a false one only narrows the choice of crops. As graph genes, faces count from
# GENE_FACE_THRESHOLD, the value genes were trained with.
FACE_THRESHOLD = 0.2
GENE_FACE_THRESHOLD = 0.3
MAX_DETECTIONS = 8


class GeneHead(nn.Module):
    """(f3, f4, f5) backbone maps (`channels`: 32/96/320 for MobileNetV2, at strides 8/16/32) →
    [B, 8, h/8, w/8] raw outputs."""

    def __init__(self, width: int = 64, channels: tuple[int, int, int] = (32, 96, 320)) -> None:
        super().__init__()
        self.lateral3 = nn.Conv2d(channels[0], width, 1)
        self.lateral4 = nn.Conv2d(channels[1], width, 1)
        self.lateral5 = nn.Conv2d(channels[2], width, 1)
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.pointwise = nn.Conv2d(width, width, 1)
        self.out = nn.Conv2d(width, CHANNELS, 1)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            self.out.bias[:2] = float(np.log(HEAT_PRIOR / (1 - HEAT_PRIOR)))

    def forward(self, f3: torch.Tensor, f4: torch.Tensor, f5: torch.Tensor) -> torch.Tensor:
        size = f3.shape[-2:]
        x = self.lateral3(f3)
        x = x + F.interpolate(self.lateral4(f4), size=size, mode="bilinear", align_corners=False)
        x = x + F.interpolate(self.lateral5(f5), size=size, mode="bilinear", align_corners=False)
        x = F.relu(x)
        x = x + F.relu(self.pointwise(F.relu(self.depthwise(x))))
        return self.out(x)


@dataclass
class Detections:
    """Boxes of one photo as rows (x1, y1, x2, y2, score), best first, in the pixels they were decoded for."""

    objects: np.ndarray
    faces: np.ndarray

    def scaled(self, sx: float, sy: float) -> "Detections":
        f = np.array([sx, sy, sx, sy, 1.0])
        return Detections(self.objects * f, self.faces * f)

    def genes(self, face_threshold: float = GENE_FACE_THRESHOLD) -> np.ndarray:
        """Object boxes and faces of at least `face_threshold` [k, 4], most confident first: the graph's
        visual genes."""
        rows = np.concatenate([self.objects, self.faces[self.faces[:, 4] >= face_threshold]], axis=0)
        order = np.argsort(-rows[:, 4], kind="stable")
        return rows[order, :4]


def _peaks(heat: torch.Tensor, k: int, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and flat indices of the k strongest local maxima (3×3) of a [h, w] probability map."""
    pooled = F.max_pool2d(heat[None, None], 3, stride=1, padding=1)[0, 0]
    peaks = torch.where(heat == pooled, heat, torch.zeros_like(heat)).flatten()
    k = min(k, peaks.numel())
    scores, index = torch.topk(peaks, k)
    keep = scores >= threshold
    return scores[keep], index[keep]


def _boxes(raw: torch.Tensor, index: torch.Tensor, size_channels: slice, image_size: tuple[int, int]) -> torch.Tensor:
    w_cells = raw.shape[-1]
    ys = torch.div(index, w_cells, rounding_mode="floor")
    xs = index - ys * w_cells
    flat = raw.flatten(1)
    cx = (xs.to(raw.dtype) + flat[6, index].clamp(0, 1)) * STRIDE
    cy = (ys.to(raw.dtype) + flat[7, index].clamp(0, 1)) * STRIDE
    log_wh = flat[size_channels, index].clamp(-3.0, 8.0)
    bw, bh = log_wh.exp() * STRIDE
    width, height = image_size
    x1 = (cx - bw / 2).clamp(0, width)
    y1 = (cy - bh / 2).clamp(0, height)
    x2 = (cx + bw / 2).clamp(0, width)
    y2 = (cy + bh / 2).clamp(0, height)
    return torch.stack([x1, y1, x2, y2], dim=1)


@torch.no_grad()
def decode(
    raw: torch.Tensor,
    image_size: tuple[int, int],
    object_threshold: float = OBJECT_THRESHOLD,
    face_threshold: float = FACE_THRESHOLD,
    max_detections: int = MAX_DETECTIONS,
) -> Detections:
    """Boxes of one image from its raw head output [8, h/8, w/8]; `image_size` (w, h) is the model input
    size, and the boxes come out in its pixels. Deterministic: ties keep the lower cell index."""
    raw = raw.float()
    out = []
    for channel, sizes, threshold in ((0, slice(2, 4), object_threshold), (1, slice(4, 6), face_threshold)):
        scores, index = _peaks(raw[channel].sigmoid(), max_detections, threshold)
        boxes = _boxes(raw, index, sizes, image_size)
        ok = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        rows = torch.cat([boxes[ok], scores[ok, None]], dim=1)
        out.append(rows.cpu().numpy().astype(np.float64))
    return Detections(*out)


__all__ = ["CHANNELS", "Detections", "GeneHead", "STRIDE", "decode"]

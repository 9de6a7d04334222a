"""Training-time augmentation that multiplies framings while keeping the human crop right.

A sample is a photo (uint8 HxWx3, kept in memory at a reduced size), its human crop and its votes, all in
that array's pixels. `augment` draws a random context window that still contains the human crop (so the
label stays exactly right), optionally mirrors it, jitters its aspect, and returns the window resized to
the model's input with every box mapped into the model's pixels. The geometry (crop, resize, mirror) is
torchvision's `transforms.v2` on the image and on every box as `tv_tensors.BoundingBoxes`, so the boxes
follow the pixels by construction; boxes are not clamped there (votes may overhang the window by a
pixel, teacher boxes are clipped by `_visible`, which needs their unclipped area).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..preprocess import MEAN, SHORT_SIDE, STD, model_size


@dataclass
class AugmentConfig:
    p_full: float = 0.35  # keep the whole photo (the framing seen at inference)
    max_shrink: float = 0.6  # each side of the window moves at most this share of the margin to the crop
    p_flip: float = 0.5
    aspect_jitter: float = 0.08  # the window's resized aspect is scaled by exp(U(-j, j))
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2


@dataclass
class Sample:
    image: torch.Tensor  # [1, 3, h, w] normalised model input
    size: tuple[int, int]  # (w, h) of the model input
    crop: np.ndarray  # [4] human crop, model pixels
    votes: np.ndarray  # [V, 8] box0 xyxy, box1 xyxy (model pixels)
    vote_weights: np.ndarray  # [V] signed: > 0 means box0 preferred
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. teacher boxes [k, 5] (xyxy + score), model pixels


def _visible(boxes: np.ndarray, width: float, height: float, min_visible: float) -> np.ndarray:
    """Boxes [k, 5] clipped to the frame, keeping those with at least `min_visible` of their area inside."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    clipped = boxes.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (inside > 0) & (inside >= min_visible * np.maximum(area, 1e-9))
    return clipped[keep]


def _window(width: int, height: int, crop: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < cfg.p_full:
        return np.array([0.0, 0.0, width, height])
    x1, y1, x2, y2 = crop
    u = rng.uniform(0, cfg.max_shrink, size=4)
    return np.array([x1 * u[0], y1 * u[1], width - (width - x2) * u[2], height - (height - y2) * u[3]])


def augment(
    pixels: np.ndarray,
    crop: np.ndarray,
    votes: np.ndarray,
    vote_weights: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    train: bool = True,
    labels: dict[str, np.ndarray] | None = None,
    min_visible: float = 0.4,
    short_side: int = SHORT_SIDE,
) -> Sample:
    """Draw one framing of a photo. With ``train=False`` the whole photo is used as is. `labels`: more
    boxes [k, 5] (xyxy + score, array pixels) to carry along, e.g. teacher objects and faces; each
    comes back clipped to the framing, without those less than `min_visible` inside. `short_side`: of
    the model input (the model config's `input_short_side`)."""
    height, width = pixels.shape[:2]
    crop = np.asarray(crop, dtype=np.float64)
    if train:
        win = np.floor(_window(width, height, crop, cfg, rng) + [0, 0, 0.999, 0.999]).astype(int)
        win[2:] = np.maximum(win[2:], win[:2] + 1)
    else:
        win = np.array([0, 0, width, height])
    wx1, wy1, wx2, wy2 = (int(v) for v in win)
    rw, rh = wx2 - wx1, wy2 - wy1
    aspect = float(np.exp(rng.uniform(-cfg.aspect_jitter, cfg.aspect_jitter))) if train else 1.0
    size = model_size(max(1, round(rw * aspect)), rh, short_side=short_side)

    votes = np.asarray(votes, dtype=np.float64).reshape(-1, 8)
    inside = (
        (votes[:, [0, 4]].min(1) >= wx1 - 1) & (votes[:, [1, 5]].min(1) >= wy1 - 1)
        & (votes[:, [2, 6]].max(1) <= wx2 + 1) & (votes[:, [3, 7]].max(1) <= wy2 + 1)
    )
    votes, vote_weights = votes[inside], np.asarray(vote_weights, dtype=np.float64)[inside]
    label_rows = {name: np.asarray(rows, dtype=np.float64).reshape(-1, 5) for name, rows in (labels or {}).items()}
    # every box of the photo in one BoundingBoxes: the crop, both boxes of each vote, the teacher boxes
    parts = [crop.reshape(1, 4), votes[:, :4], votes[:, 4:], *(rows[:, :4] for rows in label_rows.values())]
    boxes = tv_tensors.BoundingBoxes(torch.from_numpy(np.concatenate(parts)), format="XYXY",
                                     canvas_size=pixels.shape[:2], clamping_mode=None)
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).unsqueeze(0)
    x = TF.crop(x, wy1, wx1, rh, rw).float()
    boxes = TF.crop(boxes, wy1, wx1, rh, rw)
    x = TF.resize(x, [size[1], size[0]], interpolation=InterpolationMode.BILINEAR, antialias=False)
    boxes = TF.resize(boxes, [size[1], size[0]])
    flip = train and rng.random() < cfg.p_flip
    if flip:
        x = TF.horizontal_flip(x)
        boxes = TF.horizontal_flip(boxes)
    mapped = boxes.as_subclass(torch.Tensor).numpy().astype(np.float64)
    crop_m = mapped[0]
    n = len(votes)
    votes_m = np.concatenate([mapped[1 : 1 + n], mapped[1 + n : 1 + 2 * n]], axis=1)
    labels_m, start = {}, 1 + 2 * n
    for name, rows in label_rows.items():
        labelled = np.concatenate([mapped[start : start + len(rows)], rows[:, 4:]], axis=1)
        labels_m[name] = _visible(labelled, size[0], size[1], min_visible)
        start += len(rows)
    if train:
        x = _colour(x, cfg, rng)
    x = x / 256.0
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return Sample(x, size, crop_m, votes_m, vote_weights, labels_m)


def _colour(x: torch.Tensor, cfg: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    b = 1 + rng.uniform(-cfg.brightness, cfg.brightness)
    c = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    s = 1 + rng.uniform(-cfg.saturation, cfg.saturation)
    x = x * b
    mean = x.mean()
    x = (x - mean) * c + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * s + grey
    return x.clamp(0, 255)

"""What the training loop and validation see of a photo: the photo cached once at a reduced size with
its labels (`cache_photo`), the candidate boxes of a training framing (`training_candidates`), the
gene boxes the graph sees, and the gene head's targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import torch

from .. import candidates as cand
from ..genes import pad_boxes
from ..model.gene_head import decode
from .augment import Sample
from .config import TrainConfig
from .datasets import FCDBRecord
from .gene_loss import GeneTargets, gene_targets


@dataclass
class CachedPhoto:
    """A photo decoded once, at a reduced size, with its labels in that array's pixels."""

    file: str
    pixels: np.ndarray
    original: tuple[int, int]
    crop: np.ndarray
    votes: np.ndarray
    vote_weights: np.ndarray
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # teacher boxes [k, 5] in the array's pixels


def cache_photo(record: FCDBRecord, short_side: int, teacher: dict | None = None) -> CachedPhoto:
    from PIL import Image

    with Image.open(record.path) as im:
        im.draft("RGB", (record.width // 2, record.height // 2))
        im = im.convert("RGB")
        scale = min(1.0, short_side / min(im.size))
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(size, Image.BILINEAR) if size != im.size else im
        pixels = np.asarray(im, dtype=np.uint8).copy()
    sx, sy = pixels.shape[1] / record.width, pixels.shape[0] / record.height
    f = np.array([sx, sy, sx, sy])
    votes = [v for v in record.votes if v.votes0 != v.votes1]
    vboxes = np.array([list(v.box0) + list(v.box1) for v in votes], dtype=np.float64).reshape(-1, 8) * np.tile(f, 2)
    vw = np.array([(v.votes0 - v.votes1) / (v.votes0 + v.votes1) for v in votes], dtype=np.float64)
    labels = {}
    if teacher is not None:
        f5 = np.array([sx, sy, sx, sy, 1.0])
        labels = {k: np.asarray(teacher[k], dtype=np.float64).reshape(-1, 5) * f5 for k in ("objects", "faces")}
    return CachedPhoto(record.file, pixels, (record.width, record.height), np.asarray(record.crop, float) * f, vboxes, vw, labels)


def _jitter(crop: np.ndarray, n: int, sigma: float, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    w, h = crop[2] - crop[0], crop[3] - crop[1]
    noise = rng.normal(0, sigma, size=(n, 4)) * [w, h, w, h]
    boxes = crop[None] + noise
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, size[0])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, size[1])
    ok = (boxes[:, 2] - boxes[:, 0] > 4) & (boxes[:, 3] - boxes[:, 1] > 4)
    return boxes[ok]


def _rescaled(crop: np.ndarray, n: int, area_range, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """`n` boxes with the crop's centre and aspect, their area scaled by U(area_range), moved (not
    squeezed) back inside the image where they can fit, clipped where they cannot."""
    if n <= 0:
        return np.zeros((0, 4))
    w, h = crop[2] - crop[0], crop[3] - crop[1]
    cx, cy = (crop[0] + crop[2]) / 2, (crop[1] + crop[3]) / 2
    k = np.sqrt(rng.uniform(*area_range, size=n))
    bw, bh = np.minimum(w * k, size[0]), np.minimum(h * k, size[1])
    x1 = np.clip(cx - bw / 2, 0, size[0] - bw)
    y1 = np.clip(cy - bh / 2, 0, size[1] - bh)
    return np.stack([x1, y1, x1 + bw, y1 + bh], axis=1)


def _one_edge(crop: np.ndarray, n: int, move_range, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """`n` copies of the crop, each with one random edge moved in or out by U(move_range) of the crop's
    side along that edge's axis, clipped to the image; copies that clipping leaves equal to the crop or
    thinner than 4 px are dropped."""
    if n <= 0:
        return np.zeros((0, 4))
    edge = rng.integers(0, 4, size=n)
    side = np.where(edge % 2 == 0, crop[2] - crop[0], crop[3] - crop[1])
    outward = np.where(edge < 2, -1.0, 1.0)  # x0, y0 grow towards 0; x1, y1 away from it
    move = side * rng.uniform(*move_range, size=n) * np.where(rng.random(n) < 0.5, outward, -outward)
    boxes = np.repeat(crop[None].astype(np.float64), n, axis=0)
    boxes[np.arange(n), edge] += move
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, size[0])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, size[1])
    ok = (boxes[:, 2] - boxes[:, 0] > 4) & (boxes[:, 3] - boxes[:, 1] > 4) & (np.abs(boxes - crop).max(1) > 1e-6)
    return boxes[ok]


def _subset(boxes: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(boxes) <= n:
        return boxes
    return boxes[rng.choice(len(boxes), n, replace=False)]


def training_candidates(
    crop: np.ndarray, size: tuple[int, int], cfg: TrainConfig, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, slice]]:
    """A mix that covers what inference scores: the free-form grid, boxes of the human crop's ratio,
    and near misses around the human crop (plus the crop itself). Also returns where the grid and the
    ratio boxes lie, since inference chooses within each of those groups."""
    w, h = size
    ratio = Fraction((crop[2] - crop[0]) / max(crop[3] - crop[1], 1e-6)).limit_denominator(64)
    grid = _subset(cand.gaic_grid(w, h, cfg.free_form_grid), cfg.n_grid, rng)
    fixed = _subset(cand.fixed_ratio(w, h, ratio).astype(np.float64), cfg.n_ratio, rng) if ratio > 0 else np.zeros((0, 4))
    parts = [grid, fixed, _jitter(crop, cfg.n_jitter, cfg.jitter_sigma, size, rng),
             _rescaled(crop, cfg.n_scale, cfg.scale_range, size, rng),
             _one_edge(crop, cfg.n_edge, cfg.edge_range, size, rng), crop[None]]
    groups = {"grid": slice(0, len(grid)), "ratio": slice(len(grid), len(grid) + len(fixed))}
    return np.concatenate(parts, axis=0), groups


def whole_image_genes(size: tuple[int, int], count: int) -> torch.Tensor:
    return torch.tensor([[0.0, 0.0, float(size[0]), float(size[1])]] * count)


def graph_genes(raw: torch.Tensor | None, size: tuple[int, int], count: int) -> torch.Tensor:
    """The gene boxes the graph sees for one image: the head's own detections (as at inference, no
    gradient through them), padded with the whole image; the whole image alone without a head."""
    if raw is None:
        return whole_image_genes(size, count)
    found = decode(raw.detach(), size).genes()
    return torch.from_numpy(pad_boxes(found, count, *size)).float()


def gene_targets_of(s: Sample, cells: tuple[int, int]) -> GeneTargets:
    """Gene-head targets of a framing's teacher boxes on a grid of `cells` (h, w)."""
    return gene_targets(s.labels.get("objects", np.zeros((0, 5))), s.labels.get("faces", np.zeros((0, 5))), cells)

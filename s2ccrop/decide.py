"""Where a crop is decided. For one prepared photo and its ratios, `decide` runs, in this order:

1. candidates: each ratio's candidate boxes in the photo's pixels (`candidates.for_ratio`), of the
   sizes the photo's `scale` range allows when it has one;
2. guard: what the crops must not cut (`guard_of`: faces, the focus point, the keep region, the subject);
   a ratio whose every candidate in the range cuts a face or a hint takes the smallest larger size
   at which one does not (`widened`);
3. scores: the model scores every candidate, in float32 (`PhotoModel.score`);
4. best or average: per ratio, the best candidate after the guard's penalties, or the score-weighted
   mean of the best ones, snapped to the ratio (`select.select_crops`); equal scores go to the earlier
   candidate;
5. refine: the model's box refiner moves the chosen crops' edges (`refined`); an averaged or refined
   box is not a candidate, so its reported score is the model's score of the box itself; with a size
   range, an averaged or refined crop is brought back into it (`candidates.into_scale`);
6. fit: a padded fit shows the model's free-form framing whole (`fitted`).

A crop is a function of the photo, the options and the model's scores alone: no randomness, no state
carried from one photo to the next, and no choice that depends on the machine, its threads or timing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Protocol, Sequence

import numpy as np
import torch
from PIL import Image

from . import candidates as cand
from .genes import box_rows
from .model.gene_head import Detections
from .select import Guard, cuts_everywhere, hold, penalties_of, refine_box, select_crops
from .types import Crop, Ratio


@dataclass
class Prepared:
    """One photo ready for the model: the upright image, its size, model size and input tensor.
    `detections`: the gene head's object and face boxes (original pixels), filled in by the backbone
    pass (`Cropper.features`) when the model has a gene head. What its crops must respect, in
    fractions of the upright photo: `focus` (x, y), `keep` (x1, y1, x2, y2), `faces` (rows x1, y1, x2,
    y2: marked in its metadata, or given); `fit`: "crop", "pad" or "auto"; `scale`: (lo, hi), the sizes
    its crops may have (`Cropper.crop`)."""

    image: Image.Image
    size: tuple[int, int]
    model_size: tuple[int, int]
    tensor: torch.Tensor
    key: str | None
    detections: Detections | None = field(default=None, repr=False)
    focus: tuple[float, float] | None = None
    keep: tuple[float, float, float, float] | None = None
    faces: np.ndarray | None = field(default=None, repr=False)
    fit: str = "crop"
    scale: tuple[float, float] | None = None  # how large crops may be (`candidates.scale_of`); None: any size


class PhotoModel(Protocol):
    """The model, bound to one photo's feature map; boxes are float xyxy [N, 4] in the photo's pixels."""

    def score(self, boxes: np.ndarray) -> np.ndarray:
        """The model's scores [N] of the boxes."""

    def refine(self, boxes: np.ndarray) -> np.ndarray:
        """The boxes with their edges moved by the box refiner (float, not snapped, maybe outside)."""


@dataclass(frozen=True)
class Rules:
    """How a model's crops are chosen: `average` (score-weighted mean of the best candidates, else the
    best one), the free-form candidate `grid`, whether its box `refiner` runs and what it may do to a
    ratio-given crop (`refine_ratio_given`: "move", "size" or "off"), and whether faces are guarded."""

    average: bool = False
    grid: str = "gaic"
    refiner: bool = False
    refine_ratio_given: str = "move"
    face_guard: bool = True


def decide(p: Prepared, ratios: Sequence[Ratio], model: PhotoModel, rules: Rules) -> list[Crop]:
    """The crop of `p` for each ratio, in the order asked (steps 1–6 of the module docstring)."""
    groups = candidate_groups(p, ratios, rules.grid)  # 1
    guard = guard_of(p, rules.face_guard)  # 2
    groups, ranges = widened(p, ratios, groups, guard, rules.grid)
    scores = model.score(np.concatenate(groups, axis=0))  # 3
    crops = select_crops(ratios, groups, scores, guard, average=rules.average, size=p.size)  # 4
    if rules.refiner:  # 5
        crops = refined(p, ratios, crops, guard, model, rules.refine_ratio_given)
    if p.scale is not None:
        crops = [replace(c, box=cand.into_scale(c.box, r, *p.size, rng), widened=rng != p.scale)
                 for c, r, rng in zip(crops, ratios, ranges)]
    if rules.average or rules.refiner:
        rescored = model.score(np.array([c.box for c in crops], dtype=np.float64))
        crops = [replace(c, score=float(v)) for c, v in zip(crops, rescored)]
    return fitted(p, ratios, groups, guard, crops, model, rules)  # 6


def candidate_groups(p: Prepared, ratios: Sequence[Ratio], grid: str = "gaic") -> list[np.ndarray]:
    """Each ratio's candidate boxes (float xyxy [N, 4], pixels of the upright photo); `grid`: the model's
    free-form grid."""
    W, H = p.size
    return [cand.for_ratio(W, H, r, p.model_size, grid, p.scale) for r in ratios]


def widened(p: Prepared, ratios: Sequence[Ratio], groups: list[np.ndarray], guard: Guard | None,
            grid: str = "gaic") -> tuple[list[np.ndarray], list[tuple[float, float] | None]]:
    """Each ratio's candidates and the size range its crop keeps. With a range, a ratio whose every
    candidate cuts a face or goes against a hint takes the candidates of the smallest larger size (in
    steps of 0.05) at which one does not, and the range grows to it; when none does, the range stays."""
    ranges: list[tuple[float, float] | None] = [p.scale] * len(ratios)
    if p.scale is None or guard is None:
        return groups, ranges
    W, H = p.size
    out = list(groups)
    sizes = [s for s in np.arange(p.scale[1] + 0.05, 1.0, 0.05)] + [1.0]
    for i, ratio in enumerate(ratios):
        if not (penalties_of(groups[i], guard) > 0).all():
            continue
        for size in sizes:
            boxes = cand.for_ratio(W, H, ratio, p.model_size, grid, (float(size), float(size)))
            if (penalties_of(boxes, guard) <= 0).any():
                out[i], ranges[i] = boxes, (p.scale[0], float(size))
                break
    return out, ranges


def guard_of(p: Prepared, face_guard: bool = True) -> Guard | None:
    """What the crops of `p` must not cut, in its pixels: the faces (the gene head's and those its
    metadata marks or the caller gave, unless the face guard is off), the focus point, the keep
    region, and the model's subject (its most confident object, read by `fit="auto"`). None when
    there is nothing."""
    W, H = p.size
    scale = np.array([W, H, W, H], dtype=np.float64)
    faces = []
    if face_guard:
        if p.detections is not None:
            faces.append(box_rows(p.detections.faces)[:, :4])
        if p.faces is not None and len(p.faces):
            faces.append(box_rows(p.faces)[:, :4] * scale)
    objects = box_rows(p.detections.objects) if p.detections is not None and p.fit == "auto" else np.zeros((0, 4))
    focus = (p.focus[0] * W, p.focus[1] * H) if p.focus is not None else None
    keep = tuple(float(v) for v in np.asarray(p.keep) * scale) if p.keep is not None else None
    subject = tuple(float(v) for v in objects[0, :4]) if len(objects) else None
    if not faces and focus is None and keep is None and subject is None:
        return None
    return Guard(p.size, np.concatenate(faces) if faces else None, focus, keep, subject)  # type: ignore[arg-type]


def refined(p: Prepared, ratios: Sequence[Ratio], crops: list[Crop], guard: Guard | None, model: PhotoModel,
            mode: str) -> list[Crop]:
    """The chosen crops with their edges moved by the model's box refiner, snapped to each ratio
    (`select.refine_box`); a crop stays where it was when the move would cut a face or a hint more
    than it does. A ratio-given crop takes the moved box's centre and area ("move"), only its area
    ("size"), or stays ("off"); a free-form crop always takes the move."""
    which = [i for i, r in enumerate(ratios) if mode != "off" or r.is_any]
    if not which:
        return crops
    W, H = p.size
    boxes = np.array([crops[i].box for i in which], dtype=np.float64)
    moved = model.refine(boxes)
    out = list(crops)
    for j, (i, box) in enumerate(zip(which, moved)):
        x1, y1, x2, y2 = crops[i].box
        centre = ((x1 + x2) / 2, (y1 + y2) / 2) if mode == "size" else None
        new = refine_box(box, ratios[i], W, H, centre)
        if guard is not None and penalties_of(np.array([new], dtype=np.float64), guard)[0] > penalties_of(boxes[j : j + 1], guard)[0]:
            continue
        out[i] = replace(crops[i], box=new)
    return out


def fitted(p: Prepared, ratios: Sequence[Ratio], groups: Sequence[np.ndarray], guard: Guard | None,
           crops: list[Crop], model: PhotoModel, rules: Rules) -> list[Crop]:
    """Padded fits: with fit "pad" every fixed ratio, with "auto" those whose every candidate cuts a
    face, a hint or the subject, show the model's free-form framing (its "any" crop, grown to hold
    whatever it cuts: `select.hold`) whole, to be padded to the ratio. The same box whatever the
    output size."""
    pad = [i for i, r in enumerate(ratios)
           if not r.is_any and (p.fit == "pad" or (p.fit == "auto" and cuts_everywhere(groups[i], guard)))]
    if not pad:
        return crops
    framing = next((c for r, c in zip(ratios, crops) if r.is_any), None)
    if framing is None:
        framing = decide(replace(p, fit="crop"), [Ratio.parse("any")], model, rules)[0]
    region = hold(framing.box, guard, p.size)
    score = framing.score
    if region != tuple(framing.box):
        score = float(model.score(np.array([region], dtype=np.float64))[0])
    out = list(crops)
    for i in pad:
        out[i] = Crop(crops[i].ratio, region, score, fit="pad")  # a region shown whole: no size range
    return out

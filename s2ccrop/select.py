"""Choosing the crop of each ratio from the scored candidates, with the face guard."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .genes import box_rows
from .types import Crop, Ratio

# A face counts as cut when a candidate keeps more than CUT_MIN and less than CUT_MAX of its box: the
# tolerance absorbs detector boxes that are a little loose or tight (a crop that trims a sliver of the
# box, or one that leaves only a sliver of a face at its border, is not a cut face).
CUT_MIN, CUT_MAX = 0.1, 0.9
# Detected face boxes span brows to chin; hair, ears and jaw reach further. Each box grows by this share
# of its width and height on every side before cuts are measured.
FACE_MARGIN = 0.15
# Far above the spread of model scores: any candidate that cuts no face beats every one that does;
# among candidates that all cut a face, the one that cuts least wins.
FACE_CUT_PENALTY = 1e3


def face_cuts(boxes: np.ndarray, faces: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Severity [N] in [0, 1] with which each xyxy candidate [N, 4] cuts the worst-cut face of
    `faces` [F, ≥4] (grown by `margin` of their size on each side): 0 when every face is wholly in or
    out (within tolerance), 1 when a face is halved."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    faces = box_rows(faces)[:, :4]
    if margin:
        grow = margin * np.concatenate([faces[:, 2:] - faces[:, :2]] * 2, axis=1) * [-1, -1, 1, 1]
        faces = faces + grow
    if len(faces) == 0 or len(boxes) == 0:
        return np.zeros(len(boxes))
    ix = np.minimum(boxes[:, None, 2], faces[None, :, 2]) - np.maximum(boxes[:, None, 0], faces[None, :, 0])
    iy = np.minimum(boxes[:, None, 3], faces[None, :, 3]) - np.maximum(boxes[:, None, 1], faces[None, :, 1])
    inter = ix.clip(0) * iy.clip(0)
    area = ((faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])).clip(1e-9)
    kept = inter / area[None, :]
    cut = (kept > CUT_MIN) & (kept < CUT_MAX)
    severity = np.where(cut, np.minimum(kept, 1 - kept) / 0.5, 0.0)
    return severity.max(axis=1)


# Score-weighted box averaging: the model's scores are trained as log-weights of how well each candidate
# matches a human crop, so when several candidates score nearly alike, their weighted mean is a better
# guess than any one of them (and not bound to the candidate grid).
AVERAGE_TOP = 10  # at most this many of the best candidates
AVERAGE_TAU = 0.5  # weights softmax(score / tau)
AVERAGE_WINDOW = 2.0  # and only those within this of the best score (weight >= e^-4): exact scores suffice


def average_box(
    boxes: np.ndarray, scores: np.ndarray, top: int = AVERAGE_TOP, tau: float = AVERAGE_TAU, window: float = AVERAGE_WINDOW
) -> np.ndarray:
    """Float xyxy [4]: the mean of the `top` best-scoring boxes within `window` of the best score,
    weighted by softmax(score / tau) (ties in score order go to the earlier box). Candidates scored -inf
    get no weight; at least the best counts."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")[: max(1, top)]
    s = scores[order]
    if not np.isfinite(s[0]):
        return boxes[order[0]].copy()
    w = np.where(s >= s[0] - window, np.exp((s - s[0]) / tau), 0.0)
    w[~np.isfinite(w)] = 0.0
    return (boxes[order] * (w / w.sum())[:, None]).sum(axis=0)


def best_index(scores: np.ndarray) -> int:
    """Index of the highest score; ties go to the first (candidate order is deterministic)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no candidates to choose from")
    if np.isnan(scores).any():
        raise ValueError("model produced NaN scores")
    return int(np.argmax(scores))


# Approximate (bfloat16) scores are off by up to ~0.05 on FCDB with the shipped weights (0.049 worst
# over 267 photos x 4 ratios), nearly the same offset for every candidate of a photo. Every candidate
# within this margin of its group's best approximate score is scored again exactly before choosing: 5x
# that error, ~2 candidates per ratio on average.
APPROX_MARGIN = 0.25


def guard_penalties(groups: Sequence[np.ndarray], faces: np.ndarray | None) -> np.ndarray:
    """What the face guard subtracts from each candidate's score before ranking ([N] over the groups
    in order; zeros without faces)."""
    if faces is None:
        return np.zeros(sum(len(b) for b in groups))
    return np.concatenate([FACE_CUT_PENALTY * face_cuts(b, faces, FACE_MARGIN) for b in groups] or [np.zeros(0)])


def contenders(
    groups: Sequence[np.ndarray], approx: np.ndarray, penalties: np.ndarray, margin: float = APPROX_MARGIN
) -> np.ndarray:
    """Indices (ascending, over the groups in order) of the candidates that could win their group
    given approximate scores within `margin` / 2 of the exact ones: those whose ranked approximate
    score is within `margin` of the group's best. Every candidate when a score is not finite."""
    ranked = np.asarray(approx, dtype=np.float64) - penalties
    if not np.isfinite(ranked).all():
        return np.arange(len(ranked))
    keep, start = [], 0
    for boxes in groups:
        r = ranked[start : start + len(boxes)]
        if len(r):
            keep.append(start + np.flatnonzero(r >= r.max() - margin))
        start += len(boxes)
    return np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)


def select_crops(
    ratios: Sequence[Ratio],
    groups: Sequence[np.ndarray],
    scores: np.ndarray,
    faces: np.ndarray | None = None,
    average: bool = False,
    size: tuple[int, int] | None = None,
) -> list[Crop]:
    """The best-scoring box of each ratio's candidate group (`scores` covers the groups in order).
    With `faces` (boxes [F, ≥4], same pixels as the candidates), the face guard: candidates that cut
    through a face are penalised. Reported scores are the model's own. A candidate scored -inf (one
    that `contenders` ruled out) never wins.

    `average` (needs the photo's `size`): the crop is `average_box` of the best candidates by their
    guarded scores, snapped to whole pixels and to the exact ratio (`candidates.snap`), unless it cuts a
    face more than the best candidate does; its score is then still the best candidate's (the caller
    may score the box itself)."""
    from .candidates import snap

    if average and size is None:
        raise ValueError("averaging needs the photo's size")
    crops, start = [], 0
    penalties = guard_penalties(groups, faces)
    for ratio, boxes in zip(ratios, groups):
        s = np.asarray(scores[start : start + len(boxes)], dtype=np.float64)
        ranked = s - penalties[start : start + len(boxes)]
        start += len(boxes)
        i = best_index(ranked)
        box = tuple(int(v) for v in boxes[i])
        if average:
            mean = snap(average_box(boxes, ranked), ratio, *size)
            if faces is None or face_cuts(np.array([mean]), faces, FACE_MARGIN)[0] <= face_cuts(boxes[i : i + 1], faces, FACE_MARGIN)[0]:
                box = mean
        crops.append(Crop(str(ratio), box, float(s[i])))
    return crops

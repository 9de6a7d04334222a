"""Coarse-to-fine search: which candidates of each ratio the model scores, when not all of them.

Neighbouring candidates of a ratio overlap heavily and score alike, so the best one is found by scoring
a coarse subset first, a *cover* (every candidate has a member of it that overlaps it by IoU >=
`COVER_IOU`), then every candidate around the best `REFINE_TOP` scored ones (IoU >= `REFINE_IOU`
with one of them), again around the new best ones until their neighbourhoods are all scored
(`REFINE_ROUNDS` at most). The choice is made among the scored candidates; the rest get -inf, which
`select.select_crops` never picks and `select.average_box` gives no weight.

Measured on FCDB val (186 photos, shipped s2ccrop-v2, free-form + the human crop's ratio): 51 % of
the candidates scored in ~3 passes, the same box for 100 % / 98.9 % of the photos, IoU 0.7145 ->
0.7145 free-form and 0.7811 -> 0.7807 ratio-given. One refinement pass only (no rounds) kept 82 % of
the ratio-given boxes and lost 0.012 IoU. With averaging (`select.average_box`) the best three are
refined around (`AVERAGE_REFINE_TOP`): the best two lost 0.002 of ratio-given IoU there.

The face guard and the hints come first: a candidate that cuts a face or goes against a hint loses to
every one that does not (their penalties are far above the spread of scores), so where a ratio has
candidates without a penalty, only those are searched; where every candidate has one, all are scored.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np

COVER_IOU = 0.5
REFINE_IOU = 0.6
REFINE_TOP = 2
AVERAGE_REFINE_TOP = 3
REFINE_ROUNDS = 4
# The search pays only where scoring one more candidate costs more than one more scoring pass: each
# pass has a fixed cost (~1.5 ms on one thread: the gene nodes and some twenty small graph products),
# each candidate ~0.01 ms more at graph width 64. Whole crops, 4 ratios, one thread, A/B in one
# process on a host busy with two training runs (`python -m bench.ab_weights W W --search on,off
# --photos ../shared/data/fcdb-train/images -n 100`, 2026-12-03): width 128 (s2ccrop-v4's fold-0
# model) scoring every candidate costs 1.06x the search; width 64 (s2ccrop-v5) 0.93x (0.98x in a
# 40-photo run; 0.97x with oneDNN, ATen, MKL and fbgemm capped at AVX2), for the same FCDB crops
# (cross-validation, 1,149 photos: free-form +0.0000, ratio-given +0.0001 +- 0.0005 per photo).
# Narrower graphs score every candidate by default.
SEARCH_MIN_NODE_DIM = 128
# Groups this small are scored whole: a cover would save next to nothing and cost a second pass.
SMALL_GROUP = 12
# Covers depend only on the candidate boxes, which repeat for every photo of one size and ratio.
_COVERS: dict[tuple, np.ndarray] = {}
_COVERS_KEPT = 128

ScoreFn = Callable[[np.ndarray], np.ndarray]


def pays_for(config) -> bool:
    """Whether the search is cheaper than scoring every candidate for a model of `config`
    (`S2CNetConfig`): its graph is at least SEARCH_MIN_NODE_DIM wide."""
    return config.node_dim >= SEARCH_MIN_NODE_DIM


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU [len(a), len(b)] of xyxy boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    iy = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def cover(boxes: np.ndarray, threshold: float = COVER_IOU) -> np.ndarray:
    """Indices (ascending) of a subset of `boxes` such that every box has IoU >= `threshold` with one of
    them (itself included): greedy set cover, each step taking the box that covers most of those not yet
    covered (ties: the earliest). Deterministic; remembered for the last boxes seen."""
    boxes = np.ascontiguousarray(boxes, dtype=np.float64).reshape(-1, 4)
    key = (len(boxes), threshold, hashlib.blake2b(boxes.tobytes(), digest_size=16).digest())
    found = _COVERS.get(key)
    if found is not None:
        return found
    near = iou(boxes, boxes) >= threshold
    uncovered = np.ones(len(boxes), dtype=bool)
    chosen = []
    while uncovered.any():
        pick = int(np.argmax(near[:, uncovered].sum(axis=1)))
        chosen.append(pick)
        uncovered &= ~near[pick]
    found = np.array(sorted(chosen), dtype=np.int64)
    if len(_COVERS) >= _COVERS_KEPT:
        _COVERS.pop(next(iter(_COVERS)))
    _COVERS[key] = found
    return found


def searched_scores(
    groups: Sequence[np.ndarray],
    penalties: np.ndarray,
    score: ScoreFn,
    *,
    cover_iou: float = COVER_IOU,
    refine_iou: float = REFINE_IOU,
    refine_top: int = REFINE_TOP,
    rounds: int = REFINE_ROUNDS,
) -> np.ndarray:
    """Scores [N] over the groups in order (N = all candidates), -inf for those not scored.
    `penalties` [N]: what the guard subtracts (`select.guard_penalties`); `score(indices)` returns the
    model's scores of those candidates (indices into the concatenated groups), all groups in one call:
    the coarse candidates, then the unscored neighbours of each group's best, `rounds` times at most
    (fewer once no group has any left)."""
    penalties = np.asarray(penalties, dtype=np.float64)
    total = sum(len(g) for g in groups)
    scores = np.full(total, -np.inf)
    scored = np.zeros(total, dtype=bool)
    plans = []  # (start, eligible indices within the group, whether searched)
    coarse = []
    start = 0
    for boxes in groups:
        n = len(boxes)
        p = penalties[start : start + n]
        eligible = np.flatnonzero(p <= 0.0) if n and p.min() <= 0.0 else np.arange(n)
        searched = n and p.min() <= 0.0 and len(eligible) > SMALL_GROUP
        if searched:
            first = eligible[cover(np.asarray(boxes)[eligible], cover_iou)]
        else:
            first = eligible if n and p.min() <= 0.0 else np.arange(n)
        coarse.append(start + first)
        plans.append((start, eligible, searched))
        start += n
    first_pass = np.concatenate(coarse) if coarse else np.zeros(0, dtype=np.int64)
    if len(first_pass):
        scores[first_pass] = score(first_pass)
        scored[first_pass] = True
    for _ in range(rounds):
        fine = [start + _unscored_neighbours(np.asarray(boxes), eligible, scored[start : start + len(boxes)],
                                             scores[start : start + len(boxes)] - penalties[start : start + len(boxes)],
                                             refine_iou, refine_top)
                for (start, eligible, searched), boxes in zip(plans, groups) if searched]
        more = np.concatenate(fine) if fine else np.zeros(0, dtype=np.int64)
        if not len(more):
            break
        scores[more] = score(more)
        scored[more] = True
    return scores


def _unscored_neighbours(boxes: np.ndarray, eligible: np.ndarray, scored: np.ndarray, ranked: np.ndarray,
                         refine_iou: float, refine_top: int) -> np.ndarray:
    """Indices (within the group) of the eligible, not yet scored candidates with IoU >= `refine_iou`
    with one of the `refine_top` best scored ones (by `ranked`: scores less penalties)."""
    done = eligible[scored[eligible]]
    best = done[np.argsort(-ranked[done], kind="stable")[:refine_top]]
    near = (iou(boxes[eligible], boxes[best]) >= refine_iou).any(axis=1)
    return eligible[near & ~scored[eligible]]

"""Choosing the crop of each ratio from the scored candidates."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .types import Crop, Ratio


def best_index(scores: np.ndarray) -> int:
    """Index of the highest score; ties go to the first (candidate order is deterministic)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no candidates to choose from")
    if np.isnan(scores).any():
        raise ValueError("model produced NaN scores")
    return int(np.argmax(scores))


def select_crops(ratios: Sequence[Ratio], groups: Sequence[np.ndarray], scores: np.ndarray) -> list[Crop]:
    """The best-scoring box of each ratio's candidate group (`scores` covers the groups in order)."""
    crops, start = [], 0
    for ratio, boxes in zip(ratios, groups):
        s = scores[start : start + len(boxes)]
        start += len(boxes)
        i = best_index(s)
        crops.append(Crop(str(ratio), tuple(int(v) for v in boxes[i]), float(s[i])))
    return crops

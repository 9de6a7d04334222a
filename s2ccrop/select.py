"""Choosing the crop of each ratio from the scored candidates."""

from __future__ import annotations

import numpy as np


def best_index(scores: np.ndarray) -> int:
    """Index of the highest score; ties go to the first (candidate order is deterministic)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no candidates to choose from")
    if np.isnan(scores).any():
        raise ValueError("model produced NaN scores")
    return int(np.argmax(scores))

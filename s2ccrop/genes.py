"""Visual-gene providers: the object boxes that S2CNet's graph relates each candidate to.

A provider returns boxes (xyxy, original pixels of the upright image) for one photo; `pad_boxes`
makes exactly the model's number of boxes. Padding repeats the whole-image box, which is what the
graph sees when no object is known, so padding is deterministic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import InputError


class GeneProvider(Protocol):
    def boxes(self, width: int, height: int, key: str | None = None) -> np.ndarray:
        """Object boxes [k, 4] (xyxy, pixels) of a width×height photo; `key` names the photo (its stem)."""
        ...


class WholeImageGenes:
    """No object knowledge: every gene is the whole image."""

    name = "whole-image"

    def boxes(self, width: int, height: int, key: str | None = None) -> np.ndarray:
        return np.array([[0, 0, width, height]], dtype=np.float64)


class LearnedGenes:
    """The model's own gene head (object and face boxes from the backbone pass, `model/gene_head.py`).
    `Cropper` fills these in during its backbone pass; there is nothing to compute from a size alone."""

    name = "learned"

    def boxes(self, width: int, height: int, key: str | None = None) -> np.ndarray:
        raise RuntimeError("learned genes come from the model's backbone pass (Cropper.features), not from a size")


class BoxFileGenes:
    """Reads reference detector boxes: ``<folder>/<key>.txt`` with lines ``y1 x1 y2 x2`` in pixels,
    as the reference GAICD loader does. A photo without a file gets no boxes (then padding)."""

    name = "box-files"

    def __init__(self, folder: "str | os.PathLike[str]", missing_ok: bool = False) -> None:
        self.folder = Path(folder)
        self.missing_ok = missing_ok
        if not self.folder.is_dir():
            raise InputError(f"{self.folder}: gene box folder not found")

    def boxes(self, width: int, height: int, key: str | None = None) -> np.ndarray:
        if key is None:
            raise InputError("box-file genes need the photo's name (key)")
        path = self.folder / f"{key}.txt"
        if not path.is_file():
            if self.missing_ok:
                return np.zeros((0, 4))
            raise InputError(f"{path}: no gene box file for {key}")
        return read_box_file(path)


def read_box_file(path: Path) -> np.ndarray:
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4:
            raise InputError(f"{path}:{lineno}: expected 'y1 x1 y2 x2', got {line!r}")
        y1, x1, y2, x2 = (float(p) for p in parts[:4])
        rows.append((x1, y1, x2, y2))
    return np.asarray(rows, dtype=np.float64).reshape(-1, 4)


def box_rows(boxes) -> np.ndarray:
    """Boxes as a float array of rows (x1, y1, x2, y2[, score, ...]) [k, ≥4]; nothing gives [0, 4]."""
    a = np.asarray(boxes, dtype=np.float64)
    return a.reshape(len(a), -1) if a.size else np.zeros((0, 4))


def pad_boxes(boxes: np.ndarray, count: int, width: int, height: int) -> np.ndarray:
    """Exactly `count` boxes: the first `count` given, then copies of the whole image."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)[:count]
    if len(boxes) < count:
        pad = np.tile(np.array([[0, 0, width, height]], dtype=np.float64), (count - len(boxes), 1))
        boxes = np.concatenate([boxes, pad], axis=0)
    return boxes

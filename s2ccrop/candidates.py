"""Candidate crops (SPEC §3), generated in original-image pixels.

- free-form ("any"): the GAIC 12-bin grid on the model's resized image, mapped back to pixels; models of
  ours trained on it may use the "full" grid instead, whose corners reach the image's edges;
- any W:H ratio: boxes of exactly that ratio at full resolution (within one pixel of rounding), at
  several scales of the largest box that fits, on a regular grid of positions, always including the
  largest centred box. Deterministic: the same image size and ratio always give the same list.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

from .types import Ratio

GRID_BINS = 12
# Side scales relative to the largest box of the ratio: areas from 100 % down to 25 %.
RATIO_SCALES = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)
# At most this many position steps per axis and scale (keeps each ratio near 100 candidates).
MAX_STEPS = 6


# Free-form grids: (first edge indices, second edge indices, corner offset in steps). "gaic" is the
# reference's (SPEC §3): its corners sit half a step inside, so no candidate reaches an edge of the
# photo. "full" puts corners on the bin lines from the edge inwards (0..4 and 8..12), so crops that
# keep a whole side or nearly the whole photo exist too.
FREE_FORM_GRIDS = {"gaic": (range(0, 4), range(8, 12), 0.5), "full": (range(0, 5), range(8, 13), 0.0)}


def gaic_grid(width: float, height: float, kind: str = "gaic") -> np.ndarray:
    """A free-form grid (`FREE_FORM_GRIDS`; by default the reference's) on an image of (width, height):
    float xyxy [N, 4]. A box is kept when it covers more than half the bins and its aspect lies strictly
    in (0.5, 2)."""
    if kind not in FREE_FORM_GRIDS:
        raise ValueError(f"free-form grid must be one of {sorted(FREE_FORM_GRIDS)}, got {kind!r}")
    first, second, offset = FREE_FORM_GRIDS[kind]
    step_w, step_h = width / GRID_BINS, height / GRID_BINS
    boxes = []
    for y1 in first:
        for y2 in second:
            for x1 in first:
                for x2 in second:
                    if (y2 - y1) * (x2 - x1) <= 0.4999 * GRID_BINS * GRID_BINS:
                        continue
                    aspect = (x2 - x1) * step_w / ((y2 - y1) * step_h)
                    if not 0.5 < aspect < 2:
                        continue
                    boxes.append(
                        (step_w * (offset + x1), step_h * (offset + y1), step_w * (offset + x2), step_h * (offset + y2))
                    )
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def free_form(width: int, height: int, model_size: tuple[int, int], grid: str = "gaic") -> np.ndarray:
    """A free-form grid (by default the reference's) on the model's (w, h) image, mapped back to integer
    pixels of a width×height image.

    Beyond 2:1 the grid's aspect rule keeps no box at all; the whole image is then the one candidate."""
    mw, mh = model_size
    boxes = gaic_grid(mw, mh, grid) * np.array([width / mw, height / mh, width / mw, height / mh])
    if len(boxes) == 0:
        return np.array([[0, 0, width, height]], dtype=np.int64)
    return _to_pixels(boxes, width, height)


def largest_box_size(width: int, height: int, ratio: Fraction) -> tuple[int, int]:
    """(w, h) of the largest box of `ratio` (= w/h) inside width×height, rounded to whole pixels."""
    if width * ratio.denominator >= height * ratio.numerator:  # image wider than the ratio
        h = height
        w = min(width, max(1, round(h * ratio)))
    else:
        w = width
        h = min(height, max(1, round(w / ratio)))
    return w, h


def _size_at(scale: float, w0: int, h0: int, ratio: Fraction) -> tuple[int, int]:
    # Round the longer side, derive the other from the exact ratio: error stays within one pixel.
    if w0 >= h0:
        w = max(1, round(w0 * scale))
        h = max(1, min(h0, round(w / ratio)))
    else:
        h = max(1, round(h0 * scale))
        w = max(1, min(w0, round(h * ratio)))
    return w, h


def _positions(free: int, stride: float, most: int = MAX_STEPS) -> list[int]:
    if free <= 0:
        return [0]
    steps = min(most, max(1, math.ceil(free / stride)))
    return sorted({round(free * i / steps) for i in range(steps + 1)} | {free // 2})


def fixed_ratio(width: int, height: int, ratio: Ratio | Fraction, scales: tuple[float, ...] | None = None,
                steps: int = MAX_STEPS) -> np.ndarray:
    """Integer xyxy boxes [N, 4] of the given ratio inside a width×height image, at `scales` of the
    largest box (None: RATIO_SCALES, and row 0 is the largest centred box)."""
    r = _as_fraction(ratio)
    w0, h0 = largest_box_size(width, height, r)
    stride = max(width, height) / GRID_BINS
    seen: set[tuple[int, int, int, int]] = set()
    boxes: list[tuple[int, int, int, int]] = []

    def add(x: int, y: int, w: int, h: int) -> None:
        box = (x, y, x + w, y + h)
        if box not in seen:
            seen.add(box)
            boxes.append(box)

    if scales is None:
        add((width - w0) // 2, (height - h0) // 2, w0, h0)
    for scale in RATIO_SCALES if scales is None else scales:
        w, h = _size_at(scale, w0, h0, r)
        for y in _positions(height - h, stride, steps):
            for x in _positions(width - w, stride, steps):
                add(x, y, w, h)
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


# ---------------------------------------------------------------- a size range (`scale`)
#
# A crop's scale is how large it is against the largest box of its own shape in the photo: the larger
# of its width and height as fractions of the photo's, max(w / W, h / H). A range (lo, hi) keeps the
# crops whose scale lies in it, to the pixel: w <= ceil(hi * W), h <= ceil(hi * H), and
# w >= floor(lo * W) or h >= floor(lo * H).

SCALE_STEP = 0.1  # at most this far apart, the sizes of a range's candidates
FREE_FORM_ASPECTS = tuple(Fraction(a) for a in ("1/2", "2/3", "3/4", "1", "4/3", "3/2", "2"))
FREE_FORM_STEPS = 4  # positions per axis and size for a free-form range (7 shapes and the photo's)


def scale_of(box, width: int, height: int) -> float:
    """How large `box` (xyxy) is in a width×height photo: max(w / W, h / H)."""
    x1, y1, x2, y2 = box
    return max((x2 - x1) / width, (y2 - y1) / height)


def in_scale(boxes: np.ndarray, width: int, height: int, scale: tuple[float, float]) -> np.ndarray:
    """Which of `boxes` (xyxy [N, 4]) lie in the range `scale`, to the pixel."""
    lo, hi = scale
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return ((w <= math.ceil(hi * width - 1e-9)) & (h <= math.ceil(hi * height - 1e-9))
            & ((w >= math.floor(lo * width + 1e-9)) | (h >= math.floor(lo * height + 1e-9))))


def range_scales(lo: float, hi: float) -> tuple[float, ...]:
    """Sizes from hi down to lo, at most SCALE_STEP apart (both ends included)."""
    n = max(1, math.ceil((hi - lo) / SCALE_STEP - 1e-9)) if hi > lo else 0
    return tuple(hi - (hi - lo) * i / n for i in range(n + 1)) if n else (hi,)


def scaled(width: int, height: int, ratio: Ratio, model_size: tuple[int, int], grid: str,
           scale: tuple[float, float]) -> np.ndarray:
    """The candidates of `ratio` whose scale is in `scale`: for a fixed ratio, its boxes at sizes across
    the range; free-form, the grid's boxes in the range and boxes of seven common shapes and the
    photo's own across it. Never empty: when rounding leaves none, the sizes nearest the range."""
    sizes = range_scales(*scale)
    if ratio.is_any:
        shapes = sorted(set(FREE_FORM_ASPECTS) | {Fraction(width, height).limit_denominator(100)})
        parts = [free_form(width, height, model_size, grid)]
        parts += [fixed_ratio(width, height, a, sizes, FREE_FORM_STEPS) for a in shapes]
        boxes = np.unique(np.concatenate(parts), axis=0)
    else:
        boxes = fixed_ratio(width, height, ratio, sizes)
    kept = boxes[in_scale(boxes, width, height, scale)]
    if len(kept):
        return kept
    distance = np.abs(np.array([scale_of(b, width, height) for b in boxes]) - (scale[0] + scale[1]) / 2)
    return boxes[distance <= distance.min() + 1e-9]


def into_scale(box, ratio: Ratio, width: int, height: int, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """`box` (a snapped crop of `ratio`) resized about its centre into the range `scale` when an
    average or the box refiner took it out; unchanged when it is in."""
    box = tuple(int(v) for v in box)
    if in_scale(np.array([box]), width, height, scale)[0]:
        return box  # type: ignore[return-value]
    lo, hi = scale
    x1, y1, x2, y2 = box
    target = min(max(scale_of(box, width, height), lo), hi)
    if ratio.is_any:
        f = target / scale_of(box, width, height)
        w, h = max(1, min(width, round((x2 - x1) * f))), max(1, min(height, round((y2 - y1) * f)))
    else:
        r = _as_fraction(ratio)
        w, h = _size_at(target, *largest_box_size(width, height, r), r)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x = int(min(max(round(cx - w / 2), 0), width - w))
    y = int(min(max(round(cy - h / 2), 0), height - h))
    return (x, y, x + w, y + h)


def for_ratio(width: int, height: int, ratio: Ratio, model_size: tuple[int, int], grid: str = "gaic",
              scale: tuple[float, float] | None = None) -> np.ndarray:
    """Candidates of one requested ratio, integer xyxy in original pixels (x2, y2 exclusive); `grid`
    names the free-form grid, `scale` a size range (`scaled`). They depend only on the sizes, the
    ratio, the grid and the range, and photos of one camera share them: the array is cached and
    read-only."""
    return _for_ratio(int(width), int(height), ratio, (int(model_size[0]), int(model_size[1])), grid,
                      None if scale is None else (float(scale[0]), float(scale[1])))


@functools.lru_cache(maxsize=256)
def _for_ratio(width: int, height: int, ratio: Ratio, model_size: tuple[int, int], grid: str = "gaic",
               scale: tuple[float, float] | None = None) -> np.ndarray:
    if scale is not None:
        boxes = scaled(width, height, ratio, model_size, grid, scale)
    elif ratio.is_any:
        boxes = free_form(width, height, model_size, grid)
    else:
        boxes = fixed_ratio(width, height, ratio)
    boxes.setflags(write=False)
    return boxes


def snap(box, ratio: Ratio, width: int, height: int) -> tuple[int, int, int, int]:
    """A float xyxy box as a candidate would be: whole pixels inside the image, at least 1 px, and for a
    fixed ratio exactly that ratio at full resolution (within one pixel of rounding, as `fixed_ratio`),
    the size no larger than the ratio's largest box, the centre kept where it fits."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if ratio.is_any:
        out = _to_pixels(np.array([[x1, y1, x2, y2]]), width, height)[0]
        return tuple(int(v) for v in out)  # type: ignore[return-value]
    r = _as_fraction(ratio)
    w0, h0 = largest_box_size(width, height, r)
    # the mean of boxes of one ratio has (within rounding) that ratio: its longer side sets the size
    scale = (x2 - x1) / w0 if w0 >= h0 else (y2 - y1) / h0
    w, h = _size_at(min(1.0, max(scale, 0.0)), w0, h0, r)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x = int(min(max(round(cx - w / 2), 0), width - w))
    y = int(min(max(round(cy - h / 2), 0), height - h))
    return (x, y, x + w, y + h)


def _as_fraction(ratio: Ratio | Fraction) -> Fraction:
    if isinstance(ratio, Fraction):
        return ratio
    if ratio.is_any or ratio.width is None or ratio.height is None:
        raise ValueError("free-form has no fixed ratio")
    return ratio.width / ratio.height


def _to_pixels(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Round float boxes to integer pixels, keep them inside the image and at least 1 px wide."""
    out = np.rint(boxes).astype(np.int64)
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, width)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, height)
    out[:, 2] = np.maximum(out[:, 2], np.minimum(out[:, 0] + 1, width))
    out[:, 0] = np.minimum(out[:, 0], out[:, 2] - 1)
    out[:, 3] = np.maximum(out[:, 3], np.minimum(out[:, 1] + 1, height))
    out[:, 1] = np.minimum(out[:, 1], out[:, 3] - 1)
    return out

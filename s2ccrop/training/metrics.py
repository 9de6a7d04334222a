"""Cropping metrics exactly as SPEC §4 defines them, as pure numpy functions.

FCDB / FLMS: IoU and boundary displacement error (BDE) of one predicted box against the human box(es),
averaged over images. GAICD: per-image SRCC / PCC between predicted and annotated MOS, averaged over
images, and the top-K accuracies Acc_{K/N}.

Conventions chosen here (the SPEC leaves them open):

* Boxes are ``(x1, y1, x2, y2)`` in original pixels with x2/y2 exclusive, so width = x2 - x1.
* A correlation is undefined when either side is constant (e.g. a model that gives every candidate the
  same score). We then count it as **0.0** (no ranking information) rather than dropping the image,
  so a degenerate model cannot improve its average by being degenerate; the number of such images is
  reported as ``n_constant_pred`` / ``n_constant_gt``.
* Top-K ties among predicted scores are broken by candidate order (a stable sort), as the reference
  code's ``sorted(..., reverse=True)`` does.
* When an image has fewer than N annotated candidates, the N-th best score is clamped to the worst one
  (every candidate is then within the "top N", so every pick is a hit). An image with fewer than K
  candidates is an error: "top-K" would not exist.
* Accuracies are returned as fractions in [0, 1]; papers print them ×100 (``format_table`` does too).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ACC_KS = (1, 2, 3, 4)
ACC_NS = (5, 10)


# ----------------------------------------------------------------------------------------- FCDB / FLMS


def _as_box(box: Sequence[float], name: str) -> np.ndarray:
    arr = np.asarray(box, dtype=np.float64)
    if arr.shape != (4,):
        raise ValueError(f"{name} must be 4 numbers (x1, y1, x2, y2), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite coordinates: {arr.tolist()}")
    if arr[2] < arr[0] or arr[3] < arr[1]:
        raise ValueError(f"{name} must have x2 >= x1 and y2 >= y1, got {arr.tolist()}")
    return arr


def iou(pred_xyxy: Sequence[float], gt_xyxy: Sequence[float]) -> float:
    """Intersection over union of two boxes; 0.0 when the union is empty (two empty boxes)."""
    p = _as_box(pred_xyxy, "pred")
    g = _as_box(gt_xyxy, "gt")
    iw = max(0.0, min(p[2], g[2]) - max(p[0], g[0]))
    ih = max(0.0, min(p[3], g[3]) - max(p[1], g[1]))
    inter = iw * ih
    union = (p[2] - p[0]) * (p[3] - p[1]) + (g[2] - g[0]) * (g[3] - g[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def bde(pred_xyxy: Sequence[float], gt_xyxy: Sequence[float], width: float, height: float) -> float:
    """Boundary displacement error: ((|Δx1| + |Δx2|) / W + (|Δy1| + |Δy2|) / H) / 4."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    p = _as_box(pred_xyxy, "pred")
    g = _as_box(gt_xyxy, "gt")
    d = np.abs(p - g)
    return float(((d[0] + d[2]) / width + (d[1] + d[3]) / height) / 4.0)


def best_of(
    pred_xyxy: Sequence[float], gts_xyxy: Sequence[Sequence[float]], width: float, height: float
) -> tuple[float, float]:
    """(IoU, BDE) against the ground truth with the highest IoU (FLMS has several; ties: the first)."""
    if len(gts_xyxy) == 0:
        raise ValueError("best_of needs at least one ground-truth box")
    ious = [iou(pred_xyxy, g) for g in gts_xyxy]
    best = int(np.argmax(ious))  # argmax returns the first maximum
    return ious[best], bde(pred_xyxy, gts_xyxy[best], width, height)


def aggregate_boxes(ious: Sequence[float], bdes: Sequence[float]) -> dict[str, float | int]:
    """Average per-image IoU and BDE over images: {"iou", "bde", "count"}."""
    if len(ious) != len(bdes):
        raise ValueError(f"{len(ious)} IoU values but {len(bdes)} BDE values")
    if len(ious) == 0:
        return {"iou": float("nan"), "bde": float("nan"), "count": 0}
    return {"iou": float(np.mean(ious)), "bde": float(np.mean(bdes)), "count": len(ious)}


# ------------------------------------------------------------------------------------------------ GAICD


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (what Spearman's rho needs)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # start index of each run of equal values
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    avg = (starts + ends + 1) / 2.0  # mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def pearson(a: Sequence[float], b: Sequence[float]) -> float:
    """Pearson correlation; NaN when either side is constant (callers decide what that means)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"pearson needs two 1-D arrays of equal length, got {x.shape} and {y.shape}")
    if len(x) < 2:
        raise ValueError("a correlation needs at least 2 values")
    xc = x - x.mean()
    yc = y - y.mean()
    denom = np.sqrt(np.dot(xc, xc) * np.dot(yc, yc))
    if denom == 0:
        return float("nan")
    return float(np.clip(np.dot(xc, yc) / denom, -1.0, 1.0))


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho = Pearson of average ranks; NaN when either side is constant."""
    return pearson(average_ranks(a), average_ranks(b))


def _is_constant(x: np.ndarray) -> bool:
    return bool(np.all(x == x[0]))


def acc_hits(pred: Sequence[float], gt: Sequence[float], k: int, n: int) -> int:
    """How many of the model's top-k candidates have gt >= the n-th best gt score (ties count)."""
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    if k < 1 or n < 1:
        raise ValueError(f"k and n must be >= 1, got k={k}, n={n}")
    if k > len(g):
        raise ValueError(f"top-{k} needs at least {k} candidates, the image has {len(g)}")
    top_k = np.argsort(-p, kind="stable")[:k]
    nth_best = np.sort(g)[::-1][min(n, len(g)) - 1]
    return int(np.sum(g[top_k] >= nth_best))


def _check_image(i: int, pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.ndim != 1 or gt.ndim != 1:
        raise ValueError(f"image {i}: scores must be 1-D, got {pred.shape} and {gt.shape}")
    if len(pred) != len(gt):
        raise ValueError(f"image {i}: {len(pred)} predicted scores but {len(gt)} annotated ones")
    if len(gt) < max(2, max(ACC_KS)):
        raise ValueError(f"image {i}: needs at least {max(ACC_KS)} candidates, has {len(gt)}")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(gt))):
        raise ValueError(f"image {i}: scores must be finite")


def gaicd_metrics(preds: Sequence[Sequence[float]], gts: Sequence[Sequence[float]]) -> dict:
    """SPEC §4 GAICD metrics over images.

    ``preds[i]`` and ``gts[i]`` are the predicted and annotated scores of image i's annotated candidates,
    in the same order. Returns a JSON-able dict:

    * ``srcc``, ``pcc``: per-image correlations averaged over images (constant side -> 0.0, see module doc)
    * ``acc_k{K}_n{N}`` for K = 1..4, N in (5, 10): mean over images of hits / K (fractions)
    * ``acc5`` = mean over K of acc_k{K}_n5, ``acc10`` = mean over K of acc_k{K}_n10 — the numbers S2CNet
      reports as "Acc5" / "Acc10"; the per-K values are the different "Acc1/5 … Acc4/5" of GAIC tables.
    * ``count``, ``n_constant_pred``, ``n_constant_gt``
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predicted score lists but {len(gts)} annotated ones")
    if len(preds) == 0:
        raise ValueError("gaicd_metrics needs at least one image")
    srccs, pccs = [], []
    hits = {(k, n): [] for k in ACC_KS for n in ACC_NS}
    const_pred = const_gt = 0
    for i, (p_raw, g_raw) in enumerate(zip(preds, gts)):
        p = np.asarray(p_raw, dtype=np.float64)
        g = np.asarray(g_raw, dtype=np.float64)
        _check_image(i, p, g)
        const_pred += _is_constant(p)
        const_gt += _is_constant(g)
        s, c = spearman(p, g), pearson(p, g)
        srccs.append(0.0 if np.isnan(s) else s)
        pccs.append(0.0 if np.isnan(c) else c)
        for k, n in hits:
            hits[(k, n)].append(acc_hits(p, g, k, n) / k)
    out: dict = {"count": len(preds), "srcc": float(np.mean(srccs)), "pcc": float(np.mean(pccs))}
    for (k, n), values in sorted(hits.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        out[f"acc_k{k}_n{n}"] = float(np.mean(values))
    for n in ACC_NS:
        out[f"acc{n}"] = float(np.mean([out[f"acc_k{k}_n{n}"] for k in ACC_KS]))
    out["n_constant_pred"] = const_pred
    out["n_constant_gt"] = const_gt
    return out

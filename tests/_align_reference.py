"""Slow, obviously correct RoI/RoD align, written line by line from SPEC §1 (tests only).

Arithmetic is done with NumPy scalars of the input's precision (float32 for float32/half inputs,
float64 for float64) so that samples landing exactly on a map or box edge round the same way as in
the implementations under test.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _scalar_type(dtype: torch.dtype):
    return np.float64 if dtype == torch.float64 else np.float32


def _bilinear(fmap: np.ndarray, y, x, real):
    """SPEC §1's bilinear formula on one [H, W] map; hr / wr may exceed 1 on the last row / column."""
    height, width = fmap.shape
    hs = min(math.floor(y), height - 2)
    ws = min(math.floor(x), width - 2)
    hr = y - real(hs)
    wr = x - real(ws)
    one = real(1)
    return (
        fmap[hs, ws] * (one - hr) * (one - wr)
        + fmap[hs, ws + 1] * (one - hr) * wr
        + fmap[hs + 1, ws] * hr * (one - wr)
        + fmap[hs + 1, ws + 1] * hr * wr
    )


def _align(kind: str, features: torch.Tensor, rois: torch.Tensor, ah: int, aw: int, scale: float) -> torch.Tensor:
    real = _scalar_type(features.dtype)
    feats = features.detach().cpu().to(torch.float64 if real is np.float64 else torch.float32).numpy()
    boxes = rois.detach().cpu().to(torch.float64 if real is np.float64 else torch.float32).numpy()
    _, channels, height, width = feats.shape
    out = np.zeros((boxes.shape[0], channels, ah, aw), dtype=real)
    s = real(scale)
    for k in range(boxes.shape[0]):
        b = int(boxes[k, 0])
        x1s, y1s, x2s, y2s = (real(v) * s for v in boxes[k, 1:5])
        for c in range(channels):
            for ph in range(ah):
                for pw in range(aw):
                    if kind == "roi":
                        roi_w = max(x2s - x1s + real(1), real(0))
                        roi_h = max(y2s - y1s + real(1), real(0))
                        bin_w = roi_w / real(aw - 1)
                        bin_h = roi_h / real(ah - 1)
                        y = real(ph) * bin_h + y1s
                        x = real(pw) * bin_w + x1s
                        if y < 0 or y >= height or x < 0 or x >= width:
                            continue  # out = 0
                    else:
                        bin_w = real(width - 1.001) / real(aw - 1)
                        bin_h = real(height - 1.001) / real(ah - 1)
                        y = real(ph) * bin_h
                        x = real(pw) * bin_w
                        if y1s <= y <= y2s and x1s <= x <= x2s:
                            continue  # out = 0
                    out[k, c, ph, pw] = _bilinear(feats[b, c], y, x, real)
    return torch.from_numpy(out).to(features.dtype)


def roi_align(features, rois, ah, aw, scale):
    return _align("roi", features, rois, ah, aw, scale)


def rod_align(features, rois, ah, aw, scale):
    return _align("rod", features, rois, ah, aw, scale)


def roi_align_avg(features, rois, a, scale):
    return F.avg_pool2d(roi_align(features, rois, a + 1, a + 1, scale), kernel_size=2, stride=1)


def rod_align_avg(features, rois, a, scale):
    return F.avg_pool2d(rod_align(features, rois, a + 1, a + 1, scale), kernel_size=2, stride=1)

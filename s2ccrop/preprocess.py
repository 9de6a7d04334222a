"""From an upright RGB photo to the model's input tensor (SPEC §2.1), and boxes into its pixels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from .ops import bilinear_u8

SHORT_SIDE = 256
MULTIPLE = 32
# Extreme panoramas would otherwise make huge inputs (3000×4 → 192000×256): cap the long side, as a
# 4:1 photo at the reference size has it.
MAX_LONG_SIDE = 1024
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def model_size(width: int, height: int, short_side: int = SHORT_SIDE) -> tuple[int, int]:
    """(w, h) of the model input: short side → 256, each side rounded to a multiple of 32 (≥ 32);
    beyond 4:1 the long side is capped at 1024 instead."""
    scale = min(short_side / min(width, height), MAX_LONG_SIDE / max(width, height))
    w = max(MULTIPLE, round(width * scale / MULTIPLE) * MULTIPLE)
    h = max(MULTIPLE, round(height * scale / MULTIPLE) * MULTIPLE)
    return w, h


def image_tensor(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    """[1, 3, h, w] float32: bilinear resize (no antialias, as the reference's cv2 resize), /256,
    ImageNet mean/std. The same values on any CPU and thread count (`bilinear_resize`)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    w, h = size
    x = bilinear_resize(np.asarray(image, dtype=np.uint8), w, h)
    # (x / 256 - mean) / std as one multiply and one subtraction per value, each correctly rounded
    return x.mul_(_SCALE).sub_(_SHIFT)


_SCALE = (1.0 / (256.0 * torch.tensor(STD, dtype=torch.float64))).float().view(1, 3, 1, 1)
_SHIFT = (torch.tensor(MEAN, dtype=torch.float64) / torch.tensor(STD, dtype=torch.float64)).float().view(1, 3, 1, 1)


def bilinear_resize(pixels: np.ndarray, width: int, height: int) -> torch.Tensor:
    """[H, W, 3] uint8 → [1, 3, height, width] float32, the values of
    ``F.interpolate(x, (height, width), mode="bilinear", align_corners=False, antialias=False)``
    within float rounding, and exactly the same bits on every CPU and thread count: each value is
    ``a + t * (b - a)`` between two columns, then between two rows, every operation rounded on its own
    (`ops.bilinear_u8`). torch's interpolate and lerp fuse a multiply-add in their vector loops but
    not in their scalar tails, so a value at a thread's chunk boundary could differ in its last bit
    with the thread count, and the int8 backbone's input quantisation could then round it apart.
    Each output pixel reads only 2×2 input pixels, so the cost follows the output size.
    """
    r0, r1, wy = _linear_taps(height, pixels.shape[0])
    c0, c1, wx = _linear_taps(width, pixels.shape[1])
    rows = torch.from_numpy(np.stack([r0, r1]))
    cols = torch.from_numpy(np.stack([c0, c1]))
    # torch warns on a view of a read-only array (PIL's are), though the op only reads it: a copy then
    view = torch.from_numpy(np.require(pixels, requirements=("C", "W")))
    return bilinear_u8(view, rows, cols, torch.from_numpy(wy), torch.from_numpy(wx))


def _linear_taps(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (i0, i1) and the weight of i1 for each output index, as ATen computes them
    (float32, half-pixel centres, clamped at 0, no tap beyond the last pixel)."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = scale * (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam = np.clip(src - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    i1 = np.where(i0 < in_size - 1, i0 + 1, i0)
    return i0, i1, lam


def scale_boxes(boxes: np.ndarray, original: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """xyxy boxes [N, 4] in original (W, H) pixels → float32 tensor in model (w, h) pixels."""
    W, H = original
    w, h = size
    factors = np.array([w / W, h / H, w / W, h / H], dtype=np.float64)
    return torch.from_numpy((np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * factors).astype(np.float32))

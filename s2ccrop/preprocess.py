"""From an upright RGB photo to the model's input tensor (SPEC §2.1), and boxes into its pixels."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

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
    ImageNet mean/std."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).unsqueeze(0).float()
    w, h = size
    if (x.shape[-1], x.shape[-2]) != (w, h):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    x = x / 256.0
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def scale_boxes(boxes: np.ndarray, original: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """xyxy boxes [N, 4] in original (W, H) pixels → float32 tensor in model (w, h) pixels."""
    W, H = original
    w, h = size
    factors = np.array([w / W, h / H, w / W, h / H], dtype=np.float64)
    return torch.from_numpy((np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * factors).astype(np.float32))

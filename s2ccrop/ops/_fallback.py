"""Pure-PyTorch RoI/RoD align (SPEC §1), vectorised over boxes and bins.

Used when the compiled ``s2ccrop._C`` ops are missing, disabled, or have no kernel for the device.
Gradients come from autograd through plain tensor ops.

Rounding matters at the edges: a sample that lands exactly on the map border (RoI) or on the box
border (RoD) is in or out depending on the last bit. Every quantity is therefore computed in the same
order and precision as the compiled kernels (and the reference in the tests): a multiply, then a
separate add, in the features' dtype (float32 for half / bfloat16), divisions tensor by tensor.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["roi_align", "rod_align", "rod_grid", "compute_dtype", "bilinear_u8", "quantize", "qadd", "dequantize"]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """What the align ops compute in (at::opmath_type): float32 for half / bfloat16."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _scaled_boxes(rois: Tensor, spatial_scale: float, dtype: torch.dtype) -> tuple[Tensor, ...]:
    boxes = rois[:, 1:5].to(dtype) * spatial_scale
    return boxes.unbind(1)  # x1s, y1s, x2s, y2s, each [K]


def _divide(numerator: Tensor, steps: int) -> Tensor:
    # tensor / tensor: a Python-scalar divisor may be turned into a multiply by its reciprocal
    return numerator / torch.full_like(numerator, steps)


def _bilinear(features: Tensor, batch: Tensor, y: Tensor, x: Tensor, keep: Tensor, dtype: torch.dtype) -> Tensor:
    """Sample ``features`` at rows ``y`` [K, ah] x columns ``x`` [K, aw]; zero where ``keep`` [K, ah, aw] is False.

    Returns [K, C, ah, aw] in ``features.dtype``.
    """
    _, channels, height, width = features.shape
    keep_rows = keep.any(2)
    keep_cols = keep.any(1)
    # positions that are discarded may be NaN or far outside the map: park them at 0 before indexing
    y = torch.where(keep_rows, y, torch.zeros_like(y))
    x = torch.where(keep_cols, x, torch.zeros_like(x))
    row0 = y.floor().clamp(0, height - 2)
    col0 = x.floor().clamp(0, width - 2)
    hr = y - row0  # may exceed 1 on the last row: the SPEC keeps it
    wr = x - col0

    base = (batch[:, None, None] * height + row0.long()[:, :, None]) * width + col0.long()[:, None, :]
    flat = features.permute(0, 2, 3, 1).reshape(-1, channels)  # [B*H*W, C]
    top_left = flat[base]
    top_right = flat[base + 1]
    bottom_left = flat[base + width]
    bottom_right = flat[base + width + 1]

    hr = hr[:, :, None, None]
    wr = wr[:, None, :, None]
    value = (
        top_left.to(dtype) * (1 - hr) * (1 - wr)
        + top_right.to(dtype) * (1 - hr) * wr
        + bottom_left.to(dtype) * hr * (1 - wr)
        + bottom_right.to(dtype) * hr * wr
    )
    value = torch.where(keep[..., None], value, torch.zeros_like(value))
    return value.to(features.dtype).permute(0, 3, 1, 2).contiguous()


def roi_align(features: Tensor, rois: Tensor, aligned_height: int, aligned_width: int, spatial_scale: float) -> Tensor:
    """RoIAlign: an ``ah`` x ``aw`` grid inside each box, corners included; zero outside the map."""
    dtype = compute_dtype(features.dtype)
    _, _, height, width = features.shape
    x1, y1, x2, y2 = _scaled_boxes(rois, spatial_scale, dtype)
    bin_w = _divide(((x2 - x1) + 1).clamp_min(0), aligned_width - 1)
    bin_h = _divide(((y2 - y1) + 1).clamp_min(0), aligned_height - 1)
    steps_w = torch.arange(aligned_width, device=features.device, dtype=dtype)
    steps_h = torch.arange(aligned_height, device=features.device, dtype=dtype)
    x = steps_w[None, :] * bin_w[:, None] + x1[:, None]
    y = steps_h[None, :] * bin_h[:, None] + y1[:, None]
    inside_y = (y >= 0) & (y < height)
    inside_x = (x >= 0) & (x < width)
    keep = inside_y[:, :, None] & inside_x[:, None, :]
    return _bilinear(features, rois[:, 0].long(), y, x, keep, dtype)


def rod_grid(rois: Tensor, height: int, width: int, aligned_height: int, aligned_width: int, spatial_scale: float,
             dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """RoDAlign's sample rows y [ah] and columns x [aw] on an H x W map (the same for every box) and its
    keep-mask [K, ah, aw]: False inside each box, borders included; computed in `dtype`."""
    device = rois.device
    x1, y1, x2, y2 = _scaled_boxes(rois, spatial_scale, dtype)
    # float(H - 1.001) then a division in the compute dtype, as the kernels do
    bin_w = torch.tensor(width - 1.001, dtype=dtype, device=device) / torch.tensor(aligned_width - 1, dtype=dtype, device=device)
    bin_h = torch.tensor(height - 1.001, dtype=dtype, device=device) / torch.tensor(aligned_height - 1, dtype=dtype, device=device)
    x = torch.arange(aligned_width, device=device, dtype=dtype) * bin_w
    y = torch.arange(aligned_height, device=device, dtype=dtype) * bin_h
    inside_y = (y1[:, None] <= y) & (y <= y2[:, None])
    inside_x = (x1[:, None] <= x) & (x <= x2[:, None])
    return y, x, ~(inside_y[:, :, None] & inside_x[:, None, :])


def rod_align(features: Tensor, rois: Tensor, aligned_height: int, aligned_width: int, spatial_scale: float) -> Tensor:
    """RoDAlign: an ``ah`` x ``aw`` grid over the whole map; zero inside the box (borders included)."""
    _, _, height, width = features.shape
    num_boxes = rois.shape[0]
    dtype = compute_dtype(features.dtype)
    y, x, keep = rod_grid(rois, height, width, aligned_height, aligned_width, spatial_scale, dtype)
    y, x = y.expand(num_boxes, aligned_height), x.expand(num_boxes, aligned_width)
    return _bilinear(features, rois[:, 0].long(), y, x, keep, dtype)


def bilinear_u8(pixels: Tensor, rows: Tensor, cols: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
    """`s2ccrop::bilinear_u8` in plain tensor ops: the same operations, one by one, so the same bits.
    Gathers only the rows and columns the taps read."""
    h, w = rows.shape[1], cols.shape[1]
    g = pixels.index_select(0, rows.reshape(-1)).index_select(1, cols.reshape(-1)).float()  # [2h, 2w, 3]
    left = g[:, :w]
    x = left + (g[:, w:] - left).mul_(wx.view(1, w, 1))
    top = x[:h]
    y = top + (x[h:] - top).mul_(wy.view(h, 1, 1))
    return y.permute(2, 0, 1).unsqueeze(0).contiguous()


def dequantize(q: Tensor) -> Tensor:
    """`s2ccrop::dequantize`: float32 (q - zero_point) * scale, an exact integer times the scale."""
    return (q.int_repr().to(torch.int32) - q.q_zero_point()).to(torch.float32).mul_(q.q_scale())


def quantize(x: Tensor, scale: float, zero_point: int) -> Tensor:
    """float32 `x` as quint8: clamp(round(x / scale) + zero_point, 0, 255), one correctly rounded division
    and a round-half-to-even per value (torch's quantize_per_tensor multiplies by the inverse scale in its
    vector loop and divides in its scalar tail)."""
    q = torch.round(x / scale).add_(zero_point).clamp_(0, 255).to(torch.uint8)
    return torch._make_per_tensor_quantized_tensor(q, scale, zero_point)


def qadd(a: Tensor, b: Tensor, scale: float, zero_point: int) -> Tensor:
    """`s2ccrop::qadd`: quantize(dequantize(a) + dequantize(b)), each operation rounded on its own."""
    return quantize(dequantize(a).add_(dequantize(b)), scale, zero_point)

"""RoI / RoD align ops with the legacy GAIC semantics of SPEC §1 (not torchvision's ``roi_align``).

Inside:

- ``roi_align(features, rois, output_size, spatial_scale)``: an ``ah`` x ``aw`` grid inside each box,
  corners included, bilinear samples, zero outside the map.
- ``rod_align(...)``: the same grid over the whole map, zero inside the box ("region of discard").
- ``roi_align_avg`` / ``rod_align_avg``: the op at ``a + 1`` then a 2x2 average pool with stride 1
  (the only variants the model uses).
- ``bilinear_u8`` (the model input's resize, ``preprocess.bilinear_resize``) and ``quantize``, ``qadd``,
  ``dequantize`` (the int8 backbone's input, residual sums and stage outputs): each operation rounded on
  its own, the same bits on every CPU (torch's own kernels round differently in their vector loops and
  scalar tails).
- ``extension_status() -> (loaded, reason)``: whether the compiled ops are in use, and why (not).
- ``compiled_function(name)``: a plain function of the extension (``lanczos_u8``, the output
  resampler ``io.render`` uses where it is built; Pillow's own resize gives the same pixels), or None.

``features`` is float [B, C, H, W] with H, W >= 2; ``rois`` is float [K, 5] =
(batch_index, x1, y1, x2, y2) in input-image pixels; ``spatial_scale`` maps those pixels onto the
feature map (1/16 in the model). Outputs are [K, C, ah, aw].

The compiled kernels (``csrc/``, loaded by ``_extension``) run when built and the device has them;
otherwise a vectorised pure-PyTorch implementation (``_fallback``) computes the same values.
Set ``S2CCROP_NO_EXT=1`` to force the fallback.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from . import _extension, _fallback
from ._extension import compiled_function
from ._fallback import quantize  # plain tensor ops give the same bits everywhere: no compiled twin needed

__all__ = ["roi_align", "rod_align", "roi_align_avg", "rod_align_avg", "bilinear_u8", "quantize", "qadd", "dequantize",
           "extension_status", "compiled_function"]


def extension_status() -> tuple[bool, str]:
    """(True, what was loaded) when the compiled ops are in use, else (False, why not)."""
    return _extension.LOADED, _extension.REASON


def roi_align(features: Tensor, rois: Tensor, output_size: int | Sequence[int], spatial_scale: float) -> Tensor:
    """RoIAlign of SPEC §1: [B, C, H, W] features, [K, 5] rois -> [K, C, ah, aw]."""
    return _align("roi_align", features, rois, output_size, spatial_scale)


def rod_align(features: Tensor, rois: Tensor, output_size: int | Sequence[int], spatial_scale: float) -> Tensor:
    """RoDAlign of SPEC §1: [B, C, H, W] features, [K, 5] rois -> [K, C, ah, aw]."""
    return _align("rod_align", features, rois, output_size, spatial_scale)


def roi_align_avg(features: Tensor, rois: Tensor, output_size: int | Sequence[int], spatial_scale: float) -> Tensor:
    """RoIAlign at (ah + 1, aw + 1), then a 2x2 average pool with stride 1 -> [K, C, ah, aw]."""
    return _align_avg("roi_align", features, rois, output_size, spatial_scale)


def rod_align_avg(features: Tensor, rois: Tensor, output_size: int | Sequence[int], spatial_scale: float) -> Tensor:
    """RoDAlign at (ah + 1, aw + 1), then a 2x2 average pool with stride 1 -> [K, C, ah, aw]."""
    return _align_avg("rod_align", features, rois, output_size, spatial_scale)


def bilinear_u8(pixels: Tensor, rows: Tensor, cols: Tensor, wy: Tensor, wx: Tensor) -> Tensor:
    """uint8 [H, W, 3] pixels → float32 [1, 3, h, w]: output (i, j) blends rows rows[0, i], rows[1, i]
    with weight wy[i] and columns cols[0, j], cols[1, j] with weight wx[j] as ``a + t * (b - a)``,
    horizontally then vertically, each operation rounded on its own (CPU tensors)."""
    if _extension.LOADED and _extension.has_op("bilinear_u8"):
        return torch.ops.s2ccrop.bilinear_u8(pixels, rows, cols, wy, wx)
    return _fallback.bilinear_u8(pixels, rows, cols, wy, wx)


def qadd(a: Tensor, b: Tensor, scale: float, zero_point: int) -> Tensor:
    """quint8 a + b at (`scale`, `zero_point`): clamp(round((dequantize(a) + dequantize(b)) / scale) +
    zero_point, 0, 255), in a's memory format."""
    if _extension.LOADED and _extension.has_op("qadd"):
        return torch.ops.s2ccrop.qadd(a, b, float(scale), int(zero_point))
    return _fallback.qadd(a, b, float(scale), int(zero_point))


def dequantize(q: Tensor) -> Tensor:
    """float32 (q - zero_point) * scale of a per-tensor quint8 tensor."""
    if _extension.LOADED and _extension.has_op("dequantize"):
        return torch.ops.s2ccrop.dequantize(q)
    return _fallback.dequantize(q)


def _align_avg(name: str, features: Tensor, rois: Tensor, output_size, spatial_scale: float) -> Tensor:
    height, width = _output_size(name, output_size, minimum=1)
    sampled = _align(name, features, rois, (height + 1, width + 1), spatial_scale)
    return F.avg_pool2d(sampled, kernel_size=2, stride=1)


def _align(name: str, features: Tensor, rois: Tensor, output_size, spatial_scale: float) -> Tensor:
    height, width = _output_size(name, output_size, minimum=2)
    _check_inputs(name, features, rois)
    spatial_scale = float(spatial_scale)
    _check_batch_indices(name, rois, features.shape[0])
    if _extension.has_kernel_for(features.device):
        return getattr(torch.ops.s2ccrop, name)(features, rois, height, width, spatial_scale)
    return getattr(_fallback, name)(features, rois, height, width, spatial_scale)


def _output_size(name: str, output_size, minimum: int) -> tuple[int, int]:
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        size = (output_size, output_size)
    elif isinstance(output_size, Sequence) and len(output_size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in output_size
    ):
        size = (int(output_size[0]), int(output_size[1]))
    else:
        raise ValueError(f"{name}: output_size must be an int or a pair of ints, got {output_size!r}")
    if min(size) < minimum:
        raise ValueError(f"{name}: output_size must be at least {minimum} on each side, got {output_size!r}")
    return size


def _check_inputs(name: str, features: Tensor, rois: Tensor) -> None:
    if not isinstance(features, Tensor) or not isinstance(rois, Tensor):
        raise TypeError(f"{name}: features and rois must be tensors")
    if features.dim() != 4:
        raise ValueError(f"{name}: features must be [B, C, H, W], got shape {tuple(features.shape)}")
    if features.shape[2] < 2 or features.shape[3] < 2:
        raise ValueError(f"{name}: the feature map must be at least 2x2, got {tuple(features.shape[2:])}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(f"{name}: rois must be [K, 5] = (batch_index, x1, y1, x2, y2), got shape {tuple(rois.shape)}")
    if not features.is_floating_point() or not rois.is_floating_point():
        raise ValueError(f"{name}: features and rois must be floating point, got {features.dtype} and {rois.dtype}")
    if features.device != rois.device:
        raise ValueError(f"{name}: features are on {features.device} but rois on {rois.device}")


def _check_batch_indices(name: str, rois: Tensor, batch: int) -> None:
    if rois.shape[0] == 0 or torch.compiler.is_compiling():
        return
    index = rois[:, 0]
    # the index is truncated to an integer, as the legacy kernels do: (-1, B) is valid
    if not bool(((index > -1) & (index < batch)).all()):
        bad = index[~((index > -1) & (index < batch))][0].item()
        raise ValueError(f"{name}: rois batch index {bad} is out of range for {batch} feature map(s)")

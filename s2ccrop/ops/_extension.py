"""Loading of the compiled ops (``s2ccrop._C``) and their Python-side registrations.

Importing ``s2ccrop._C`` registers ``torch.ops.s2ccrop.{roi,rod}_align[_backward]`` with CPU (and, in a
CUDA build, CUDA) kernels. This module adds what the C++ side does not carry: autograd formulas and
fake (meta) kernels, so the ops work with ``backward()``, ``torch.compile`` and ``torch.library.opcheck``.

If the extension cannot be used, the reason is kept (never swallowed) and reported by
``s2ccrop.ops.extension_status()`` and ``s2ccrop info``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

from .. import envvars

__all__ = ["LOADED", "REASON", "WITH_CUDA", "compiled_function", "has_kernel_for", "has_op"]

_DISABLE_VAR = envvars.NO_EXT
_OPS = ("roi_align", "rod_align")


def _import_compiled() -> tuple[ModuleType | None, str]:
    try:
        compiled = importlib.import_module("s2ccrop._C")
    except ModuleNotFoundError as exc:
        if exc.name not in ("s2ccrop._C", "s2ccrop"):
            return None, f"importing s2ccrop._C failed: {type(exc).__name__}: {exc}"
        return None, (
            "s2ccrop._C is not built (installed with S2CCROP_BUILD_EXT=0, or the compile failed and the "
            "install fell back to pure PyTorch; reinstall with S2CCROP_BUILD_EXT=1 to see the compiler error)"
        )
    except (ImportError, OSError) as exc:  # e.g. undefined symbol: built against another torch
        return None, f"importing s2ccrop._C failed: {type(exc).__name__}: {exc}"
    return compiled, ""


def _register_python_parts() -> None:
    for name in _OPS:
        forward = getattr(torch.ops.s2ccrop, name).default
        backward = getattr(torch.ops.s2ccrop, f"{name}_backward").default
        _register_fake(name)
        _register_autograd(name, forward, backward)


def _register_fake(name: str) -> None:
    @torch.library.register_fake(f"s2ccrop::{name}")
    def _forward_fake(features, rois, aligned_height, aligned_width, spatial_scale):
        torch._check(features.dim() == 4, lambda: f"{name}: features must be [B, C, H, W]")
        torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: f"{name}: rois must be [K, 5]")
        return features.new_empty((rois.shape[0], features.shape[1], aligned_height, aligned_width))

    @torch.library.register_fake(f"s2ccrop::{name}_backward")
    def _backward_fake(grad, rois, aligned_height, aligned_width, spatial_scale, batch, channels, height, width):
        return grad.new_empty((batch, channels, height, width))


def _register_autograd(name: str, forward, backward) -> None:
    def setup_forward(ctx, inputs, output):
        features, rois, aligned_height, aligned_width, spatial_scale = inputs
        ctx.save_for_backward(rois)
        ctx.args = (aligned_height, aligned_width, spatial_scale, *features.shape)

    def backward_of_forward(ctx, grad):
        (rois,) = ctx.saved_tensors
        grad_features = backward(grad, rois, *ctx.args) if ctx.needs_input_grad[0] else None
        return grad_features, None, None, None, None

    # the backward op is linear in `grad`; its own derivative is the forward op (double backward)
    def setup_backward(ctx, inputs, output):
        grad, rois, aligned_height, aligned_width, spatial_scale, *_ = inputs
        ctx.save_for_backward(rois)
        ctx.args = (aligned_height, aligned_width, spatial_scale)

    def backward_of_backward(ctx, grad_grad):
        (rois,) = ctx.saved_tensors
        grad_grad_out = forward(grad_grad, rois, *ctx.args) if ctx.needs_input_grad[0] else None
        return grad_grad_out, None, None, None, None, None, None, None, None

    torch.library.register_autograd(f"s2ccrop::{name}", backward_of_forward, setup_context=setup_forward)
    torch.library.register_autograd(f"s2ccrop::{name}_backward", backward_of_backward, setup_context=setup_backward)


def _load() -> tuple[bool, str, bool]:
    if envvars.switch(_DISABLE_VAR):
        return False, f"disabled at run time by {_DISABLE_VAR}={envvars.text(_DISABLE_VAR)}; using the pure-PyTorch fallback", False
    if not hasattr(torch.library, "register_autograd"):
        return False, f"torch {torch.__version__} lacks torch.library.register_autograd (needs torch >= 2.4)", False
    global _MODULE
    module, reason = _import_compiled()
    if module is None:
        return False, reason, False
    _register_python_parts()
    _MODULE = module
    with_cuda = bool(getattr(module, "WITH_CUDA", 0))
    built_for = getattr(module, "TORCH_VERSION", "unknown")
    kernels = "CPU and CUDA kernels" if with_cuda else "CPU kernels only (built without CUDA)"
    reason = f"compiled ops loaded: {kernels}, built against torch {built_for}"
    if built_for != torch.__version__.split("+")[0]:
        reason += f" (running torch {torch.__version__}: rebuild if the ops misbehave)"
    return True, reason, with_cuda


_MODULE: ModuleType | None = None  # s2ccrop._C, once loaded
LOADED, REASON, WITH_CUDA = _load()


def compiled_function(name: str):
    """The plain function ``s2ccrop._C.<name>`` (not an op: e.g. ``lanczos_u8``), or None when the
    extension is not loaded or was built without it."""
    return getattr(_MODULE, name, None) if LOADED else None


def has_kernel_for(device: torch.device) -> bool:
    """True when the compiled ops can run on tensors of ``device``."""
    if not LOADED:
        return False
    return device.type == "cpu" or (device.type == "cuda" and WITH_CUDA)


def has_op(name: str) -> bool:
    """True when the loaded extension defines ``torch.ops.s2ccrop.<name>`` (an older build may not)."""
    if not LOADED:
        return False
    try:
        getattr(torch.ops.s2ccrop, name)
    except (AttributeError, RuntimeError):
        return False
    return True

"""What `s2ccrop info` reports: versions, the device, whether the compiled ops loaded (and why not),
the cache folder and the default weights. Every value is plain data (JSON-ready); the command line
formats it. Answers even when parts of the installation are broken: that is when it is needed."""

from __future__ import annotations

from . import __version__
from .errors import S2CCropError, WeightsError

LIBRARIES = ("torch", "torchvision", "typer", "pillow", "numpy", "safetensors", "rich", "platformdirs")


def collect_info(device: str = "auto") -> dict:
    """Everything `s2ccrop info` shows, in display order; `device` is resolved as `Cropper` would."""
    import platform

    from . import weights as reg

    data: dict = {"s2ccrop": __version__, "python": platform.python_version(), "platform": platform.platform()}
    data.update(library_versions())
    data.update(device_info(device))
    data.update(ops_info())
    data["cache_dir"] = str(reg.cache_dir())
    data["offline"] = reg.offline()
    data.update(default_weights_info())
    return data


def library_versions() -> dict:
    """Installed versions of the libraries s2ccrop runs on (None: not installed)."""
    from importlib import metadata

    out = {}
    for dist in LIBRARIES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def device_info(device: str) -> dict:
    import torch

    out: dict = {"cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda}
    try:
        from .api import resolve_device

        dev = resolve_device(device)
        out["device"] = str(dev)
        if dev.type == "cuda":
            out["device_name"] = torch.cuda.get_device_name(dev)
    except S2CCropError as exc:
        out["device"] = f"unavailable: {exc}"
    out["torch_threads"] = torch.get_num_threads()
    return out


def ops_info() -> dict:
    try:
        from .ops import extension_status

        loaded, reason = extension_status()
    except Exception as exc:  # info must still answer when the ops package itself is broken
        loaded, reason = False, f"s2ccrop.ops failed to import: {type(exc).__name__}: {exc}"
    return {"compiled_ops": loaded, "compiled_ops_detail": reason}


def default_weights_info() -> dict:
    from . import weights as reg

    try:
        rows = reg.status(reg.default_name()) if reg.default_name() else []
    except WeightsError as exc:
        return {"default_weights": None, "default_weights_state": str(exc)}
    if not rows:
        return {"default_weights": None, "default_weights_state": "none registered"}
    row = rows[0]
    state = row.state + (f" ({row.detail})" if row.detail else "")
    return {
        "default_weights": row.entry.name,
        "default_weights_sha256": row.entry.sha256,
        "default_weights_state": state,
        "default_weights_path": str(row.path) if row.path else None,
    }

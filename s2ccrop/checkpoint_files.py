"""What a weights file says it is, read without trusting it: a safetensors header's metadata, whether
our model configuration in it is one this version reads, and a checkpoint's configuration by name."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from .errors import WeightsError

_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on a header


def is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def inspect_checkpoint(path: Path) -> str:
    """Load `path` as S2CNet (no pickled code runs) and describe its config; WeightsError if it does not fit."""
    from .model.checkpoint import model_from_state_dict, read_state_dict

    check_metadata(path)
    state_dict, config, _ = read_state_dict(path)
    model = model_from_state_dict(state_dict, config)
    cfg = getattr(model, "config", config)
    return config_label(cfg)


def check_metadata(path: Path) -> None:
    """WeightsError when a safetensors file's `s2ccrop_config` metadata is not a model config this
    version reads (malformed JSON, unknown fields, bad values). Other damage is the loader's to report."""
    config = header_metadata(path).get("s2ccrop_config")
    if config is None:
        return
    from .model import S2CNetConfig

    try:
        S2CNetConfig.from_json(config)
    except (ValueError, TypeError) as exc:
        why = "" if "removed on" in str(exc) else "; is the file damaged, or written by a newer s2ccrop?"
        raise WeightsError(f"{path}: its s2ccrop_config metadata is not a model configuration this s2ccrop "
                           f"reads ({type(exc).__name__}: {exc}){why}") from None


def header_metadata(path: Path) -> dict:
    """The `__metadata__` of a safetensors header ({} for anything else, or a header past reading)."""
    try:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > _MAX_HEADER:
                return {}
            header = json.loads(fh.read(length))
    except (OSError, ValueError, struct.error):
        return {}
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def config_label(cfg) -> str:
    if cfg is None:
        return "unknown"
    try:
        from .model import CONFIGS

        for label, known in CONFIGS.items():
            if known == cfg:
                return label
    except Exception:
        pass
    return str(cfg)

"""Reading and writing S2CNet checkpoints.

Two formats load:
- ours: a safetensors file whose metadata holds ``s2ccrop_config`` (JSON of `S2CNetConfig`);
  tensors may be stored in float16 and are restored to float32;
- the reference's: a torch pickle of a state_dict (optionally under ``state_dict``/``model`` and with a
  ``module.`` prefix from DataParallel), read with ``weights_only=True`` so no pickled code runs.
The config of a reference checkpoint is recognised from tensor shapes (SPEC §2).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch

from .._warnings import noted
from ..errors import WeightsError
from . import int8_backbone
from .s2cnet import GAICV1, S2CNet, S2CNetConfig

SAFETENSORS_MAGIC_OFFSET = 8  # safetensors files start with a little-endian u64 header length, then '{'


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def infer_config(state_dict: Mapping[str, torch.Tensor]) -> S2CNetConfig:
    """Recognise the reference config from shapes: node_emb input = 2·8·a²; the head's kind and box count."""
    try:
        in_dim = state_dict["node_emb.0.weight"].shape[1]
        reduced = state_dict["DimRed.weight"].shape[0]
    except KeyError as exc:
        raise WeightsError(f"not an S2CNet state_dict: missing {exc.args[0]!r}") from None
    align = round((in_dim / (2 * reduced)) ** 0.5)
    if 2 * reduced * align * align != in_dim:
        raise WeightsError(f"node_emb.0.weight has {in_dim} inputs, which is not 2·{reduced}·a² for any a")
    genes_head = any(k.startswith("GeneHead.") for k in state_dict)
    if "FC_layers.weight" in state_dict:
        return S2CNetConfig(align_size=align, num_boxes=GAICV1.num_boxes, head="crop", reduced_dim=reduced, genes_head=genes_head)
    if "FC_layers.0.0.weight" in state_dict:
        nodes = state_dict["FC_layers.0.0.weight"].shape[1]
        return S2CNetConfig(align_size=align, num_boxes=nodes - 1, head="graph", reduced_dim=reduced, genes_head=genes_head)
    raise WeightsError("not an S2CNet state_dict: no FC_layers head found")


def model_from_state_dict(state_dict: Mapping[str, torch.Tensor], config: S2CNetConfig | None = None) -> S2CNet:
    """Build the model for `state_dict` and load it strictly; errors name the keys that do not fit."""
    state_dict = strip_prefix(state_dict)
    config = config or infer_config(state_dict)
    model = S2CNet(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state_dict) if tuple(expected[k].shape) != tuple(state_dict[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if wrong:
            parts.append(f"wrong shapes {_few(wrong)}")
        raise WeightsError(
            f"checkpoint does not fit S2CNet {config}: " + "; ".join(parts)
            + " — is this an S2CNet (GAICv1/GAICv2) or s2ccrop checkpoint?"
        )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}, strict=True)
    return model.eval()


def _few(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def is_safetensors(path: "str | os.PathLike[str]") -> bool:
    with open(path, "rb") as fh:
        head = fh.read(SAFETENSORS_MAGIC_OFFSET + 1)
    return len(head) == SAFETENSORS_MAGIC_OFFSET + 1 and head[-1:] == b"{"


def read_state_dict(path: "str | os.PathLike[str]") -> tuple[dict[str, torch.Tensor], S2CNetConfig | None, dict[str, str]]:
    """(state_dict, config or None, metadata) of a checkpoint file, without running any pickled code."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if is_safetensors(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = dict(fh.metadata() or {})
                sd = {k: fh.get_tensor(k) for k in fh.keys()}
        except Exception as exc:  # a corrupt header or truncated data
            raise WeightsError(f"{path}: unreadable safetensors file ({exc})") from None
        config = S2CNetConfig.from_json(meta["s2ccrop_config"]) if "s2ccrop_config" in meta else None
        return sd, config, meta
    try:
        with noted([]):  # torch's notes on pickle protocols: not the user's business
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # pickle's UnpicklingError (pickle is not imported here): torch's own message advises loading the
        # file unsafely, which is not repeated to the user.
        if type(exc).__name__ == "UnpicklingError":
            raise WeightsError(f"{path}: refused to load: it holds pickled Python objects, not only tensors. "
                               "Only safetensors files and weights_only torch state_dicts are accepted.") from None
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsError(f"{path}: refused to load: not a tensor checkpoint ({type(exc).__name__}: {first}). "
                           "Only safetensors files and weights_only torch state_dicts are accepted.") from None
    for key in ("state_dict", "model", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a state_dict of tensors")
    return obj, None, {}


def load_checkpoint(path: "str | os.PathLike[str]") -> S2CNet:
    """Load ours or a reference checkpoint; strict; returns the model in eval mode."""
    sd, config, meta = read_state_dict(path)
    try:
        model = model_from_state_dict(sd, config)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None  # which file is not a cropper's
    model.own_checkpoint = config is not None  # ours carry their config; the reference's are bare
    if config is not None and int8_backbone.CALIBRATION_KEY in meta:
        try:
            model.int8_calibration = int8_backbone.from_metadata(meta[int8_backbone.CALIBRATION_KEY])
        except ValueError as exc:
            raise WeightsError(f"{path}: unreadable int8 backbone calibration ({exc})") from None
    return model


def save_checkpoint(
    model: S2CNet, path: "str | os.PathLike[str]", metadata: Mapping[str, str] | None = None, half: bool = True
) -> None:
    """Write our safetensors format atomically; `half` stores floats as float16 (the weights we ship)."""
    from safetensors.torch import save_file

    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        if half and v.is_floating_point() and "running_var" not in k:
            v = v.half()
        tensors[k] = v.contiguous()
    meta = {"s2ccrop_config": model.config.to_json(), "format": "s2ccrop-s2cnet-v1"}
    if getattr(model, "int8_calibration", None) is not None:
        meta[int8_backbone.CALIBRATION_KEY] = int8_backbone.to_metadata(model.int8_calibration)
    meta.update({k: str(v) for k, v in (metadata or {}).items()})
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


__all__ = [
    "infer_config",
    "load_checkpoint",
    "model_from_state_dict",
    "read_state_dict",
    "save_checkpoint",
    "strip_prefix",
]


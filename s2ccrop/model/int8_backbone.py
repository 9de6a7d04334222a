"""An int8 copy of the backbone for CPU inference: PyTorch's eager-mode static quantisation on the
fbgemm engine (AVX2 and up), with the same numbers on every x86 CPU, thread count and process:

- the engine is pinned to fbgemm. PyTorch's "x86" engine picks fbgemm or oneDNN kernels per layer by
  its own heuristics (CPU features, thread count), and the two round differently;
- weights are quantised to 7 bits ([-64, 63]). CPUs without VNNI multiply uint8 activations by int8
  weights in pairs summed into int16 with saturation (vpmaddubsw); VNNI CPUs sum into int32. With
  |w| <= 64 a pair sums to at most 2·255·64 = 32640 < 2^15, so no CPU saturates and every
  accumulator is the exact integer, whatever its order;
- the requantisation after each layer is one float multiply and round-to-nearest per value;
- the input is quantised, the residual sums added and the stage outputs dequantised here
  (`ops.quantize`, `ops.qadd`, `ops.dequantize`: divisions, multiplications and additions each correctly
  rounded on its own, then round-half-to-even), not by torch's quantized kernels, whose vector loops round
  differently from their scalar tails: which values fell in a tail (the thread count, the vector
  width) moved boxes.

Quantisation needs the range of every activation. Two kinds of points:

- a convolution followed by ReLU6 becomes one quantised Conv+ReLU whose output range is fixed at
  [0, 6] (scale 6/255, zero point 0): saturating at 255 *is* the ReLU6 clamp, so no calibration is
  needed there and the float model's semantics are kept;
- the input, every projection convolution (no activation) and every residual sum get a range measured
  once on real photos (`calibrate`, a histogram observer) and stored with the checkpoint
  (`CALIBRATION_KEY` in its metadata), so loading needs no data and every machine quantises alike.

Weights are quantised per output channel (symmetric int8) when the copy is built. The copy returns
the three float32 maps (`FeatureExtractor`'s outputs) in channels-last memory; everything after the
backbone stays float32. Only our own checkpoints carry a calibration; reference checkpoints keep the
float path, and $S2CCROP_INT8_BACKBONE=0 turns the copy off for ours.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from .. import envvars
from .._warnings import noted
from ..ops import dequantize, qadd, quantize
from .backbone import FeatureExtractor, fold_batchnorm, stage_blocks

CALIBRATION_KEY = "s2ccrop_int8_backbone"
FORMAT = 1
ENV = envvars.INT8_BACKBONE
RELU6_SCALE = 6.0 / 255.0
# How many training photos a calibration is measured on (each costs one backbone pass).
CALIBRATION_PHOTOS = 32


# Weights within these bounds never saturate a CPU's int16 pair sums (module docstring).
WEIGHT_MIN, WEIGHT_MAX = -64, 63


def engine() -> str | None:
    """The quantised engine the int8 copy runs on: "fbgemm" where this torch has it, else None."""
    return "fbgemm" if "fbgemm" in torch.backends.quantized.supported_engines else None


def enabled_by_env() -> bool:
    """False when $S2CCROP_INT8_BACKBONE is 0/false/no/off."""
    return envvars.switch(ENV, default=True)


class _Block(nn.Module):
    """One backbone block with its layers in a plain Sequential and its residual sum as a quantisable op."""

    def __init__(self, layers: nn.Sequential, residual: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)])
        self.residual = residual
        if residual:
            self.add = torch.ao.nn.quantized.FloatFunctional()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if not self.residual:
            return y
        if hasattr(self.add, "scale") and x.is_quantized:  # converted: the sum, exact on every CPU
            return qadd(x, y, float(self.add.scale), int(self.add.zero_point))
        return self.add.add(x, y)  # float (calibration) or prepared


class QuantisableExtractor(nn.Module):
    """`FeatureExtractor` (BatchNorm folded) laid out for eager-mode quantisation: a quant stub, the
    blocks with each Conv + ReLU6 pair fused into one Conv+ReLU, a dequant stub after each stage. Takes
    over `folded`'s modules (pass a copy)."""

    def __init__(self, folded: FeatureExtractor) -> None:
        super().__init__()
        from torch.ao import quantization as tq

        self.quant = tq.QuantStub()
        self.stages = nn.ModuleList(nn.Sequential(*[_Block(layers, residual) for layers, residual in stage])
                                    for stage in stage_blocks(folded))
        self.dequant = nn.ModuleList([tq.DeQuantStub() for _ in range(3)])
        for stage in self.stages:
            for block in stage:
                mods = list(block.body)
                if any(isinstance(m, nn.BatchNorm2d) for m in mods):
                    raise ValueError("QuantisableExtractor needs BatchNorm folded into the convolutions")
                pairs = [[str(i - 1), str(i)] for i, m in enumerate(mods) if isinstance(m, nn.ReLU6)]
                for _, i in pairs:
                    block.body[int(i)] = nn.ReLU()  # the [0, 6] output range does the clamp at 6
                tq.fuse_modules(block.body, pairs, inplace=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = x.contiguous()
        # converted: the input quantised as `ops.quantize` does it, the same values on every CPU
        x = quantize(x, float(self.quant.scale), int(self.quant.zero_point)) if hasattr(self.quant, "scale") else self.quant(x)
        outs = []
        for stage, dequant in zip(self.stages, self.dequant):
            x = stage(x)
            outs.append((dequantize(x) if x.is_quantized else dequant(x)).contiguous(memory_format=torch.channels_last))
        return outs[0], outs[1], outs[2]


def _weight_observer():
    from torch.ao import quantization as tq

    return tq.PerChannelMinMaxObserver.with_args(
        dtype=torch.qint8, qscheme=torch.per_channel_symmetric, quant_min=WEIGHT_MIN, quant_max=WEIGHT_MAX)


def _fixed(scale: float, zero_point: int):
    from torch.ao import quantization as tq

    return tq.QConfig(
        activation=tq.FixedQParamsObserver.with_args(scale=scale, zero_point=zero_point, dtype=torch.quint8, quant_min=0, quant_max=255),
        weight=_weight_observer(),
    )


def folded_copy(feat_ext: FeatureExtractor) -> FeatureExtractor:
    """A float32 eval copy of `feat_ext` with its BatchNorm folded into the convolutions."""
    return fold_batchnorm(copy.deepcopy(feat_ext).float().eval())


def _prepared(folded: FeatureExtractor, measured: dict[str, list] | None) -> QuantisableExtractor:
    """A prepared (observed) model made of `folded`'s modules: ReLU points fixed at [0, 6]; the others
    measured by a histogram observer (`measured` None) or fixed at the stored (scale, zero point)."""
    from torch.ao import quantization as tq
    from torch.ao.nn.intrinsic import ConvReLU2d

    q = QuantisableExtractor(folded).eval()
    q.qconfig = tq.QConfig(activation=tq.HistogramObserver.with_args(quant_min=0, quant_max=255), weight=_weight_observer())
    for m in q.modules():
        if isinstance(m, ConvReLU2d):
            m.qconfig = _fixed(RELU6_SCALE, 0)
    if measured is not None:
        names = _measured_names(q)
        if sorted(names) != sorted(measured):
            raise ValueError("int8 calibration does not fit this backbone: its points differ")
        for name in names:
            scale, zero_point = measured[name]
            q.get_submodule(name).qconfig = _fixed(float(scale), int(zero_point))
    with _quiet():
        tq.prepare(q, inplace=True)
    return q


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch 2.10+ announces that eager quantisation and quantised tensors will move to torchao; until
    they go they are what runs int8 convolutions without a compiler (a torch without them raises, and
    the float path runs), so their deprecation warnings are not the user's business."""
    with noted([], (UserWarning, DeprecationWarning)):
        yield


def _measured_names(q: QuantisableExtractor) -> list[str]:
    """The points whose range is measured: the quant stub, each projection conv and each residual sum."""
    names = ["quant"]
    for s, stage in enumerate(q.stages):
        for b, block in enumerate(stage):
            names += [f"stages.{s}.{b}.body.{i}" for i, m in block.body.named_children() if type(m) is nn.Conv2d]
            if block.residual:
                names.append(f"stages.{s}.{b}.add")
    return names


def calibrate(feat_ext: FeatureExtractor, images: Iterable[torch.Tensor]) -> dict:
    """Measure the activation ranges of `feat_ext` on `images` ([1, 3, h, w] model inputs, as
    `preprocess.image_tensor` makes them): the JSON-able calibration `quantised_extractor` takes."""
    q = _prepared(folded_copy(feat_ext), None)
    n = 0
    with torch.no_grad():
        for image in images:
            q(image)
            n += 1
    if n == 0:
        raise ValueError("int8 calibration needs at least one image")
    points = {}
    for name in _measured_names(q):
        scale, zero_point = q.get_submodule(name).activation_post_process.calculate_qparams()
        points[name] = [float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0])]
    return {"format": FORMAT, "images": n, "points": points}


def quantised_extractor(folded: FeatureExtractor, calibration: dict) -> nn.Module:
    """The int8 model of `folded` (`folded_copy` of a backbone; its modules are taken over) for
    `calibration` (from `calibrate`); needs `engine()`. The weights are packed for fbgemm here, and
    a packed layer runs on the engine it was packed for."""
    from torch.ao import quantization as tq

    name = engine()
    if name is None:
        raise RuntimeError("this torch has no x86 quantised engine")
    if calibration.get("format") != FORMAT:
        raise ValueError(f"int8 calibration format {calibration.get('format')!r} is not {FORMAT}")
    torch.backends.quantized.engine = name
    q = _prepared(folded, calibration["points"])
    with _quiet():
        tq.convert(q, inplace=True)
    return q.requires_grad_(False)


def to_metadata(calibration: dict) -> str:
    return json.dumps(calibration, sort_keys=True)


def from_metadata(text: str) -> dict:
    calibration = json.loads(text)
    if not isinstance(calibration, dict) or not isinstance(calibration.get("points"), dict):
        raise ValueError("not an int8 backbone calibration")
    return calibration

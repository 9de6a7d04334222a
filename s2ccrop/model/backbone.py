"""Backbone feature extractors split at strides 8, 16 and 32, with the reference state_dict names.

The reference wraps slices of a MobileNetV2 ``features`` Sequential; slicing an ``nn.Sequential``
keeps the original child indices, which is why its keys read ``feature4.0.7.conv.0.weight``. We build
the same module tree so that reference checkpoints load strictly.

Our own configs may instead use EfficientNet-Lite0 or -Lite2 (issue 19's "stronger ImageNet features" lever): the
same inverted-residual blocks with 5x5 depthwise kernels in some stages, ReLU6, no squeeze-excitation,
so it is built from the same modules and runs through the same fused inference path.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone's layout. `settings`: (expand_ratio, out_channels, repeats, first_stride, kernel) per
    stage after a 3x3 stride-2 stem conv; `splits`: where the block list is cut into the stride-8, 16
    and 32 stages; `channels`: what those stages return; `bn_eps`: its BatchNorm epsilon."""

    settings: tuple
    splits: tuple
    channels: tuple
    bn_eps: float = 1e-5
    stem: int = 32


MOBILENET_V2 = BackboneSpec(
    settings=((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 32, 3, 2, 3), (6, 64, 4, 2, 3), (6, 96, 3, 1, 3),
              (6, 160, 3, 2, 3), (6, 320, 1, 1, 3)),
    splits=(7, 14, 18), channels=(32, 96, 320),
)
# EfficientNet-Lite0 (Tan & Le; the Lite variants drop squeeze-excitation and use ReLU6). Trained in
# TensorFlow, hence BatchNorm's epsilon of 1e-3.
EFFICIENTNET_LITE0 = BackboneSpec(
    settings=((1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5),
              (6, 192, 4, 2, 5), (6, 320, 1, 1, 3)),
    splits=(6, 12, 17), channels=(40, 112, 320), bn_eps=1e-3,
)
# EfficientNet-Lite2: Lite0's stages 1.1x as wide (rounded to 8 channels) and 1.2x as deep, the first and
# last stage's repeats and the stem kept (the Lite variants fix them); 3.2x Lite0's multiply-adds.
EFFICIENTNET_LITE2 = BackboneSpec(
    settings=((1, 16, 1, 1, 3), (6, 24, 3, 2, 3), (6, 48, 3, 2, 5), (6, 88, 4, 2, 3), (6, 120, 4, 1, 5),
              (6, 208, 5, 2, 5), (6, 352, 1, 1, 3)),
    splits=(8, 16, 22), channels=(48, 120, 352), bn_eps=1e-3,
)
BACKBONES = {"mobilenet_v2": MOBILENET_V2, "efficientnet_lite0": EFFICIENTNET_LITE0, "efficientnet_lite2": EFFICIENTNET_LITE2}


def backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}") from None


def _conv_bn(inp: int, oup: int, stride: int, eps: float = 1e-5) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup, eps=eps), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, kernel: int = 3, eps: float = 1e-5) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden, eps=eps), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden, eps=eps),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup, eps=eps),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


def backbone_blocks(spec: BackboneSpec = MOBILENET_V2) -> nn.Sequential:
    """The feature blocks of `spec`: stem conv + inverted residuals (18 for MobileNetV2 width 1.0)."""
    blocks: list[nn.Module] = [_conv_bn(3, spec.stem, 2, spec.bn_eps)]
    inp = spec.stem
    for t, c, n, s, k in spec.settings:
        for i in range(n):
            blocks.append(InvertedResidual(inp, c, s if i == 0 else 1, t, k, spec.bn_eps))
            inp = c
    return nn.Sequential(*blocks)


def mobilenet_v2_blocks() -> nn.Sequential:
    """The 18 feature blocks of MobileNetV2 width 1.0: stem conv + 17 inverted residuals."""
    return backbone_blocks(MOBILENET_V2)


class FeatureExtractor(nn.Module):
    """Returns (f3, f4, f5) at strides 8, 16 and 32: 32/96/320 channels for MobileNetV2 (the
    reference's), 40/112/320 for EfficientNet-Lite0, 48/120/352 for -Lite2."""

    def __init__(self, backbone: str = "mobilenet_v2") -> None:
        super().__init__()
        spec = backbone_spec(backbone)
        blocks = backbone_blocks(spec)
        a, b, c = spec.splits
        # Each stage is Sequential(slice of blocks): the slice keeps the original indices.
        self.feature3 = nn.Sequential(blocks[0:a])
        self.feature4 = nn.Sequential(blocks[a:b])
        self.feature5 = nn.Sequential(blocks[b:c])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f3 = self.feature3(x)
        f4 = self.feature4(f3)
        f5 = self.feature5(f4)
        return f3, f4, f5


def torchvision_to_reference(state_dict: "OrderedDict[str, torch.Tensor] | dict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
    """Map a torchvision ``mobilenet_v2()`` state_dict onto ``FeatureExtractor`` names, by position.

    torchvision's ``features[0:18]`` holds the same tensors in the same order under other names
    (``features.1.conv.0.0.weight`` ↔ ``feature3.0.1.conv.0.weight``). Its final 1×1 conv
    (``features.18``) and the classifier have no counterpart and are dropped.
    """
    source = [(k, v) for k, v in state_dict.items() if k.startswith("features.") and int(k.split(".")[1]) < 18]
    return _by_position(source, FeatureExtractor().state_dict(), "a torchvision MobileNetV2 state_dict", "tensors in features[0:18]")


def _by_position(
    source: "list[tuple[str, torch.Tensor]]", target: "dict[str, torch.Tensor]", what: str, counted: str
) -> "OrderedDict[str, torch.Tensor]":
    """`source`'s tensors under `target`'s names, in order; a count or shape that differs is an error."""
    if len(source) != len(target):
        raise ValueError(f"not {what}: {len(source)} {counted}, expected {len(target)}")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for (src_name, tensor), (dst_name, ref) in zip(source, target.items()):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise ValueError(f"shape mismatch mapping {src_name} {tuple(tensor.shape)} -> {dst_name} {tuple(ref.shape)}")
        out[dst_name] = tensor
    return out


# EfficientNet-Lite's ImageNet weights expect pixels p in [0, 255] as (p - 127) / 128; ours are
# normalised with torchvision's ImageNet mean and std (preprocess.MEAN / STD).
LITE_MEAN, LITE_STD = 127.0, 128.0


def efficientnet_lite_to_extractor(
    state_dict: "dict[str, torch.Tensor]", backbone: str = "efficientnet_lite0",
    mean: "tuple[float, float, float]" = (0.485, 0.456, 0.406), std: "tuple[float, float, float]" = (0.229, 0.224, 0.225),
) -> "OrderedDict[str, torch.Tensor]":
    """Map an EfficientNet-Lite ImageNet state_dict (the ``_conv_stem`` / ``_blocks.N`` names of the
    PyTorch port) onto ``FeatureExtractor(backbone)`` names, by position; its head conv and classifier
    are dropped. The stem is rewritten for our input normalisation: the network was trained on
    x' = (255 p - 127) / 128 and gets x = (p - mean) / std, so x' = a x + b per channel with
    a = 255 std / 128 and b = (255 mean - 127) / 128; the stem conv's weights are scaled by a and the
    constant W·b it would add is taken off its BatchNorm's running mean (exact but at the padded border)."""
    target = FeatureExtractor(backbone).state_dict()
    source = [(k, v) for k, v in state_dict.items() if k.startswith(("_conv_stem.", "_bn0.", "_blocks."))]
    out = _by_position(source, target, f"an EfficientNet-Lite state_dict for {backbone}", "stem and block tensors")
    names = list(target)
    conv, bn_mean = names[0], names[3]  # stem conv weight; its BatchNorm: weight, bias, running_mean, ...
    a = 255.0 * torch.tensor(std, dtype=torch.float64) / LITE_STD
    b = (255.0 * torch.tensor(mean, dtype=torch.float64) - LITE_MEAN) / LITE_STD
    w = out[conv].double()
    out[bn_mean] = (out[bn_mean].double() - (w * b.view(1, 3, 1, 1)).sum((1, 2, 3))).to(out[bn_mean].dtype)
    out[conv] = (w * a.view(1, 3, 1, 1)).to(out[conv].dtype)
    return out


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d in a Sequential into that conv."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        fold_batchnorm(child)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()
    return module


def _onednn_pointwise_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


class _FusedConv:
    """One inference convolution (BatchNorm already folded in) with its ReLU6, if any, fused into the
    same oneDNN primitive: the clamp happens as the outputs are written instead of in another pass."""

    def __init__(self, conv: nn.Conv2d, relu6: bool) -> None:
        self.weight = conv.weight.detach().contiguous(memory_format=torch.channels_last)
        self.bias = conv.bias.detach() if conv.bias is not None else None
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.attr, self.scalars = ("hardtanh", [0.0, 6.0]) if relu6 else ("none", [])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.args, self.attr, self.scalars, "")


def _fused_chain(layers: nn.Sequential) -> list[_FusedConv]:
    mods = [m for m in layers if not isinstance(m, nn.Identity)]
    chain, i = [], 0
    while i < len(mods):
        conv = mods[i]
        if not isinstance(conv, nn.Conv2d) or isinstance(mods[i + 1] if i + 1 < len(mods) else None, nn.BatchNorm2d):
            raise ValueError("fuse_relu6 needs convolutions with BatchNorm folded in")
        relu6 = i + 1 < len(mods) and isinstance(mods[i + 1], nn.ReLU6)
        chain.append(_FusedConv(conv, relu6))
        i += 2 if relu6 else 1
    return chain


class FusedFeatureExtractor(nn.Module):
    """`FeatureExtractor` for CPU inference in channels-last memory, each Conv + ReLU6 pair run as one
    oneDNN convolution with a fused clamp (~20 % faster on one core; the same values within float
    rounding). Built by `fuse_relu6` from a copy whose BatchNorm is folded; holds no parameters."""

    def __init__(self, folded: FeatureExtractor) -> None:
        super().__init__()
        self.stages = []
        for stage in (folded.feature3, folded.feature4, folded.feature5):
            blocks = []
            for block in stage[0]:
                layers = block.conv if isinstance(block, InvertedResidual) else block
                blocks.append((_fused_chain(layers), isinstance(block, InvertedResidual) and block.use_res_connect))
            self.stages.append(blocks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        outs = []
        for blocks in self.stages:
            for chain, residual in blocks:
                y = x
                for conv in chain:
                    y = conv(y)
                x = x + y if residual else y
            outs.append(x)
        return outs[0], outs[1], outs[2]


def fuse_relu6(folded: FeatureExtractor) -> nn.Module:
    """`FusedFeatureExtractor` where this torch has oneDNN's fused convolution, else `folded` itself."""
    return FusedFeatureExtractor(folded) if _onednn_pointwise_available() else folded

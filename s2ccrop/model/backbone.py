"""MobileNetV2 feature extractor split at strides 8, 16 and 32, with the reference state_dict names.

The reference wraps slices of a MobileNetV2 ``features`` Sequential; slicing an ``nn.Sequential``
keeps the original child indices, which is why its keys read ``feature4.0.7.conv.0.weight``. We build
the same module tree so that reference checkpoints load strictly.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

# (expand_ratio, out_channels, repeats, first_stride) of MobileNetV2 width 1.0
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]
# What the stride-8, 16 and 32 stages return.
CHANNELS = (32, 96, 320)


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = inp * expand_ratio
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


def mobilenet_v2_blocks() -> nn.Sequential:
    """The 18 feature blocks of MobileNetV2 width 1.0: stem conv + 17 inverted residuals."""
    blocks: list[nn.Module] = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True))]
    inp = 32
    for t, c, n, s in _SETTINGS:
        for i in range(n):
            blocks.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
            inp = c
    return nn.Sequential(*blocks)


class FeatureExtractor(nn.Module):
    """Returns (f3, f4, f5): 32 ch at stride 8, 96 ch at stride 16, 320 ch at stride 32."""

    def __init__(self) -> None:
        super().__init__()
        blocks = mobilenet_v2_blocks()
        # Each stage is Sequential(slice of blocks): the slice keeps the original indices.
        self.feature3 = nn.Sequential(blocks[0:7])
        self.feature4 = nn.Sequential(blocks[7:14])
        self.feature5 = nn.Sequential(blocks[14:18])

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
    target = FeatureExtractor().state_dict()
    source = [(k, v) for k, v in state_dict.items() if k.startswith("features.") and int(k.split(".")[1]) < 18]
    if len(source) != len(target):
        raise ValueError(
            f"not a torchvision MobileNetV2 state_dict: {len(source)} tensors in features[0:18], expected {len(target)}"
        )
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for (src_name, tensor), (dst_name, ref) in zip(source, target.items()):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise ValueError(f"shape mismatch mapping {src_name} {tuple(tensor.shape)} -> {dst_name} {tuple(ref.shape)}")
        out[dst_name] = tensor
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


def stage_blocks(folded: FeatureExtractor) -> list[list[tuple[nn.Sequential, bool]]]:
    """Per stage, each block's layers and whether it adds its input back (a residual block)."""
    return [[(block.conv, block.use_res_connect) if isinstance(block, InvertedResidual) else (block, False)
             for block in stage[0]] for stage in (folded.feature3, folded.feature4, folded.feature5)]


class FusedFeatureExtractor(nn.Module):
    """`FeatureExtractor` for CPU inference in channels-last memory, each Conv + ReLU6 pair run as one
    oneDNN convolution with a fused clamp (the same values within float rounding). Built by
    `fuse_relu6` from a copy whose BatchNorm is folded; holds no parameters."""

    def __init__(self, folded: FeatureExtractor) -> None:
        super().__init__()
        self.stages = [[(_fused_chain(layers), residual) for layers, residual in stage] for stage in stage_blocks(folded)]

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

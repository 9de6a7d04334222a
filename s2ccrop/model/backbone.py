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


def _conv_bn(inp: int, oup: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


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
    blocks: list[nn.Module] = [_conv_bn(3, 32, 2)]
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

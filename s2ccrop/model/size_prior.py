"""A per-photo prior on how much of the photo the crop keeps (ours only; issue 19's "small head that
predicts how much of the photo to keep").

The shipped models keep ~70 % of a photo whatever it shows, while a human keeps 40 % of one photo and
95 % of another; a uniform penalty on area cannot fix that. This head reads the fused feature map that
RoI/RoD sample, predicts the log share of the photo the best crop keeps (``mu``) and how sure it is
(``weight`` ≥ 0), and adds ``-weight * (log share(box) - mu)²`` to every candidate's score. The graph
still ranks the candidates; the prior only tilts the ranking towards the size this photo calls for, by
as much as training found it worth. It is trained through the ranking losses, and (``size_weight`` in
the training config) directly on the human crop's share.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Before training: a kept share of 0.6 (the human crops' typical one) at a weight of 0.25 (a log-share
# error of 0.5, 1.65x the area, costs 0.06: about what an IoU difference of 0.003 is worth to the
# listwise targets' temperature), so the untrained prior barely moves the ranking.
INITIAL_SHARE = 0.6
INITIAL_WEIGHT = 0.25


def log_share(boxes: torch.Tensor, width: float, height: float) -> torch.Tensor:
    """log(area of each xyxy box [N, 4] / area of the image), boxes thinner than a pixel counted as one."""
    w = (boxes[:, 2] - boxes[:, 0]).clamp_min(1.0)
    h = (boxes[:, 3] - boxes[:, 1]).clamp_min(1.0)
    return torch.log(w * h / (float(width) * float(height)))


class SizePrior(nn.Module):
    def __init__(self, channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, hidden, kernel_size=3, padding=1)
        self.out = nn.Linear(2 * hidden, 2)
        nn.init.normal_(self.out.weight, std=0.01)
        with torch.no_grad():
            self.out.bias.copy_(torch.tensor([math.log(INITIAL_SHARE), math.log(math.expm1(INITIAL_WEIGHT))]))

    def predict(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """fmap [B, C, h, w] → (mu [B]: predicted log share kept, weight [B] ≥ 0)."""
        x = F.relu(self.conv(fmap)).flatten(2)
        o = self.out(torch.cat([x.mean(2), x.amax(2)], dim=1))
        return o[:, 0], F.softplus(o[:, 1])

    def forward(self, fmap: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], batch_index: int = 0) -> torch.Tensor:
        """The prior's term [N] for xyxy boxes [N, 4] in the pixels of an image of `image_size` (w, h)
        whose features are image `batch_index` of `fmap`."""
        mu, weight = self.predict(fmap[batch_index : batch_index + 1].float())
        return -weight[0] * (log_share(boxes.float(), *image_size) - mu[0]) ** 2

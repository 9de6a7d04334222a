"""S2CNet: MobileNetV2 features → RoI/RoD align per box → spatial-semantic graph → a score per crop.

Follows SPEC §2 of the reference implementation, with identical state_dict names, so reference
GAICv1/GAICv2 checkpoints load strictly and score as their authors' code does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import rod_align_avg, roi_align_avg
from .backbone import FeatureExtractor, torchvision_to_reference
from .graph import GraphConstructor, GraphTransformer

SPATIAL_SCALE = 1.0 / 16.0
MOS_MEAN, MOS_STD = 2.95, 0.8  # scores are normalised MOS: (mos - 2.95) / 0.8


@dataclass(frozen=True)
class S2CNetConfig:
    """Hyper-parameters that change tensor shapes. `head` is "crop" (GAICv1) or "graph" (GAICv2)."""

    align_size: int = 9
    num_boxes: int = 10
    head: str = "crop"
    reduced_dim: int = 8
    node_dim: int = 256
    depth: int = 2
    heads: int = 4
    mlp_dim: int = 1024
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.head not in ("crop", "graph"):
            raise ValueError(f"head must be 'crop' or 'graph', got {self.head!r}")
        if self.align_size < 1 or self.num_boxes < 1:
            raise ValueError("align_size and num_boxes must be positive")
        if self.head == "graph" and self.node_dim != 256:
            raise ValueError("the graph head views each node as 16×16: node_dim must be 256")

    @property
    def node_input_dim(self) -> int:
        return 2 * self.reduced_dim * self.align_size**2

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "S2CNetConfig":
        return cls(**json.loads(text))


GAICV1 = S2CNetConfig(align_size=9, num_boxes=10, head="crop")
GAICV2 = S2CNetConfig(align_size=15, num_boxes=5, head="graph")
CONFIGS = {"GAICv1": GAICV1, "GAICv2": GAICV2}


def _graph_head(num_nodes: int, dropout: float = 0.5) -> nn.Sequential:
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(num_nodes, 768, kernel_size=16), nn.BatchNorm2d(768), nn.ReLU(inplace=True)),
        nn.Sequential(nn.Conv2d(768, 128, kernel_size=1), nn.BatchNorm2d(128), nn.ReLU(inplace=True)),
        nn.Dropout(dropout),
        nn.Conv2d(128, 1, kernel_size=1),
    )


def box_centres(boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[..., 4] xyxy → [..., 2] centres normalised by the resized image size."""
    cx = (boxes[..., 0] + boxes[..., 2]) / (2.0 * width)
    cy = (boxes[..., 1] + boxes[..., 3]) / (2.0 * height)
    return torch.stack([cx, cy], dim=-1)


class S2CNet(nn.Module):
    def __init__(self, config: S2CNetConfig = GAICV1) -> None:
        super().__init__()
        self.config = config
        self.Feat_ext = FeatureExtractor()
        self.DimRed = nn.Conv2d(448, config.reduced_dim, kernel_size=1)
        self.node_emb = nn.Sequential(
            nn.Linear(config.node_input_dim, config.node_dim), nn.LayerNorm(config.node_dim), nn.ReLU(inplace=True)
        )
        self.GraphConstructor = GraphConstructor(config.node_dim, config.node_dim, config.heads)
        self.GraphTransformer = GraphTransformer(config.node_dim, config.depth, config.heads, config.mlp_dim, config.dropout)
        if config.head == "crop":
            self.FC_layers: nn.Module = nn.Linear(config.node_dim, 1)
        else:
            self.FC_layers = _graph_head(config.num_boxes + 1)

    # -- stages -------------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, h, w] normalised images (h, w multiples of 32) → [B, reduced_dim, h/16, w/16]."""
        f3, f4, f5 = self.Feat_ext(images)
        size = f4.shape[-2:]
        f3 = F.interpolate(f3, size=size, mode="bilinear", align_corners=True)
        f5 = F.interpolate(f5, size=size, mode="bilinear", align_corners=True)
        return self.DimRed(torch.cat([f3, f4, 0.5 * f5], dim=1))

    def embed_boxes(self, fmap: torch.Tensor, boxes: torch.Tensor, batch_index: int = 0) -> torch.Tensor:
        """Node embeddings [K, node_dim] of xyxy boxes [K, 4] (resized-image pixels) on image `batch_index`."""
        a = self.config.align_size
        index = torch.full((boxes.shape[0], 1), float(batch_index), dtype=fmap.dtype, device=fmap.device)
        rois = torch.cat([index, boxes.to(fmap.dtype)], dim=1)
        roi = roi_align_avg(fmap, rois, a, SPATIAL_SCALE)
        rod = rod_align_avg(fmap, rois, a, SPATIAL_SCALE)
        nodes = torch.stack([roi, rod], dim=2).flatten(1)
        return self.node_emb(nodes)

    def score_boxes(
        self,
        fmap: torch.Tensor,
        crop_boxes: torch.Tensor,
        gene_boxes: torch.Tensor,
        image_size: tuple[int, int],
        batch_index: int = 0,
    ) -> torch.Tensor:
        """Scores [N] of crop boxes [N, 4] given the image's gene boxes [D, 4]; image_size = (w, h) resized."""
        width, height = image_size
        d = self.config.num_boxes
        if gene_boxes.shape != (d, 4):
            raise ValueError(f"expected {d} gene boxes of 4 coordinates, got shape {tuple(gene_boxes.shape)}")
        n = crop_boxes.shape[0]
        if n == 0:
            return fmap.new_zeros(0)
        crop_nodes = self.embed_boxes(fmap, crop_boxes, batch_index)
        # Gene nodes are the same for every candidate: embed once, share.
        gene_nodes = self.embed_boxes(fmap, gene_boxes, batch_index)
        x = torch.cat([crop_nodes.unsqueeze(1), gene_nodes.unsqueeze(0).expand(n, d, -1)], dim=1)
        boxes = torch.cat([crop_boxes.unsqueeze(1), gene_boxes.unsqueeze(0).expand(n, d, 4)], dim=1).to(x.dtype)
        pos, app = self.GraphConstructor(x, box_centres(boxes, width, height))
        x = self.GraphTransformer(x, pos, app)
        if self.config.head == "crop":
            return self.FC_layers(x[:, 0]).reshape(n)
        side = int(self.config.node_dim**0.5)
        return self.FC_layers(x.reshape(n, d + 1, side, side)).reshape(n)

    def forward(self, images: torch.Tensor, crop_boxes: torch.Tensor, gene_boxes: torch.Tensor) -> torch.Tensor:
        """images [1, 3, h, w]; boxes in resized-image pixels. Returns scores [N]."""
        if images.dim() != 4 or images.shape[0] != 1:
            raise ValueError(f"forward scores one image [1, 3, h, w]; got {tuple(images.shape)}")
        fmap = self.features(images)
        h, w = images.shape[-2:]
        return self.score_boxes(fmap, crop_boxes, gene_boxes, (int(w), int(h)))

    # -- initialisation -----------------------------------------------------------------------
    def load_imagenet_backbone(self, torchvision_state_dict: dict[str, torch.Tensor]) -> None:
        """Initialise `Feat_ext` from a torchvision MobileNetV2 ImageNet state_dict (positional mapping)."""
        self.Feat_ext.load_state_dict(torchvision_to_reference(torchvision_state_dict), strict=True)

"""S2CNet: MobileNetV2 features → RoI/RoD align per box → spatial-semantic graph → a score per crop.

Follows SPEC §2 of the reference implementation, with identical state_dict names, so reference
GAICv1/GAICv2 checkpoints load strictly and score as their authors' code does.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..candidates import FREE_FORM_GRIDS
from ..ops import rod_align_avg, roi_align, roi_align_avg
from ..preprocess import SHORT_SIDE
from . import int8_backbone
from .backbone import CHANNELS, FeatureExtractor, fold_batchnorm, fuse_relu6, torchvision_to_reference
from .box_refiner import BoxRefiner, apply_offsets
from .fast_nodes import rod_keep_mask, rod_table
from .gene_head import GeneHead
from .graph import GraphConstructor, GraphTransformer

SPATIAL_SCALE = 1.0 / 16.0
MOS_MEAN, MOS_STD = 2.95, 0.8  # scores are normalised MOS: (mos - 2.95) / 0.8


# what the box refiner may do to a ratio-given crop (S2CNetConfig.refine_ratio_given, select.refine_box)
REFINE_MODES = ("move", "size", "off")
# Options of ours that left the package, each with the value that means "off": a checkpoint's config
# may still name one at that value (s2ccrop-v5 does) and loads as before; one that needs it on is refused.
REMOVED_OPTIONS = {
    "backbone": "mobilenet_v2",  # EfficientNet-Lite0/-Lite2 backbones
    "size_prior": False,  # a per-photo prior on how much of the photo to keep
    "box_geometry": False,  # each graph node also embedding its box's geometry
}


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
    genes_head: bool = False  # ours only: a learned visual-gene head (model/gene_head.py); reference checkpoints have none
    graph_uses_head: bool = True  # with a gene head: whether the graph was trained on its boxes (else on the whole image)
    # ours only: the free-form grid the model was trained to choose among (candidates.FREE_FORM_GRIDS);
    # reference checkpoints use the reference's
    free_form_grid: str = "gaic"
    # ours only: how the crop is chosen from the scores, "best" (the reference's argmax) or "average"
    # (select.average_box of the best candidates, for models trained for it)
    selection: str = "best"
    # ours only: a head that moves the chosen crop's edges (box_refiner.py; `S2CNet.refine_boxes`)
    box_refiner: bool = False
    # ours only: what the refiner does to a ratio-given crop (free-form crops always take its move):
    # "move" its centre and area to those of the moved box, "size" keep its centre and take the moved
    # box's area, "off" leave it (select.refine_box)
    refine_ratio_given: str = "move"
    # ours only: the short side of the model input (preprocess.model_size); the SPEC's is 256. A smaller
    # input makes the backbone cheaper (its cost follows the pixels) for a coarser feature map.
    input_short_side: int = SHORT_SIDE

    def __post_init__(self) -> None:
        if self.head not in ("crop", "graph"):
            raise ValueError(f"head must be 'crop' or 'graph', got {self.head!r}")
        if not 64 <= self.input_short_side <= 1024:
            raise ValueError(f"input_short_side must be between 64 and 1024, got {self.input_short_side}")
        if self.align_size < 1 or self.num_boxes < 1:
            raise ValueError("align_size and num_boxes must be positive")
        if self.selection not in ("best", "average"):
            raise ValueError(f"selection must be 'best' or 'average', got {self.selection!r}")
        if self.free_form_grid not in FREE_FORM_GRIDS:
            gone = " (removed on 2026-12-06; docs/RECIPES.md)" if self.free_form_grid in ("wide", "deep") else ""
            raise ValueError(f"free_form_grid must be 'gaic' or 'full', got {self.free_form_grid!r}{gone}")
        if self.refine_ratio_given not in REFINE_MODES:
            raise ValueError(f"refine_ratio_given must be one of {', '.join(REFINE_MODES)}, got {self.refine_ratio_given!r}")
        if self.refine_ratio_given != "move" and not self.box_refiner:
            raise ValueError(f"refine_ratio_given = {self.refine_ratio_given!r} says what the box refiner does: it needs box_refiner = true")
        if self.head == "graph" and self.node_dim != 256:
            raise ValueError("the graph head views each node as 16×16: node_dim must be 256")

    @property
    def node_input_dim(self) -> int:
        return 2 * self.reduced_dim * self.align_size**2

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "S2CNetConfig":
        """The config a checkpoint's metadata holds. Options that left the package (`REMOVED_OPTIONS`)
        are dropped where they hold their "off" value; a checkpoint that needs one is refused."""
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError(f"a model config is a JSON object, got {type(fields).__name__}")
        for name, off in REMOVED_OPTIONS.items():
            if name in fields:
                value = fields.pop(name)
                if value != off:
                    raise ValueError(f"this checkpoint needs {name} = {json.dumps(value)}, an option removed on 2026-12-06 "
                                     f"(only {json.dumps(off)} loads; docs/RECIPES.md)")
        return cls(**fields)


def _fused_features(feat_ext: nn.Module, dim_red: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """SPEC §2.2–2.3: backbone maps at strides 8/16/32 fused at stride 16, then DimRed."""
    return _fuse(dim_red, *feat_ext(images))


def _fuse(dim_red: nn.Module, f3: torch.Tensor, f4: torch.Tensor, f5: torch.Tensor) -> torch.Tensor:
    size = f4.shape[-2:]
    f3 = F.interpolate(f3, size=size, mode="bilinear", align_corners=True)
    f5 = F.interpolate(f5, size=size, mode="bilinear", align_corners=True)
    return dim_red(torch.cat([f3, f4, 0.5 * f5], dim=1))


def _signature(tensors: list[torch.Tensor]) -> tuple:
    """Changes when any tensor is edited in place (version counter) or given new storage (.to(), .half())."""
    return tuple((t.data_ptr(), t._version) for t in tensors)


def _fold_avg_pool(weight: torch.Tensor, channels: int, a: int) -> tuple[torch.Tensor, torch.Tensor]:
    """node_emb's weight [D, C·2·a·a] (inputs: RoI/RoD pooled a x a, stacked per channel) → weights
    [D, C·(a+1)²] for the raw RoI and RoD samples at a+1, the 2x2 stride-1 average pool folded in:
    W·pool(r) = (poolᵀ·W)·r, and poolᵀ spreads each weight over the 4 samples it averaged."""
    w = weight.reshape(-1, channels, 2, a, a)
    spread = 0.25 * (F.pad(w, (0, 1, 0, 1)) + F.pad(w, (1, 0, 0, 1)) + F.pad(w, (0, 1, 1, 0)) + F.pad(w, (1, 0, 1, 0)))
    return spread[:, :, 0].flatten(1).contiguous(), spread[:, :, 1].flatten(1).contiguous()


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
        # True when loaded from one of our own checkpoints (`load_checkpoint`); reference ones keep False.
        self.own_checkpoint = False
        # Our checkpoints may carry the activation ranges of an int8 copy of the backbone
        # (int8_backbone.calibrate, stored in their metadata): then CPU inference runs that copy.
        self.int8_calibration: dict | None = None
        self.Feat_ext = FeatureExtractor()
        self.DimRed = nn.Conv2d(sum(CHANNELS), config.reduced_dim, kernel_size=1)
        self.node_emb = nn.Sequential(
            nn.Linear(config.node_input_dim, config.node_dim), nn.LayerNorm(config.node_dim), nn.ReLU(inplace=True)
        )
        self.GraphConstructor = GraphConstructor(config.node_dim, config.node_dim, config.heads)
        self.GraphTransformer = GraphTransformer(config.node_dim, config.depth, config.heads, config.mlp_dim, config.dropout)
        if config.head == "crop":
            self.FC_layers: nn.Module = nn.Linear(config.node_dim, 1)
        else:
            self.FC_layers = _graph_head(config.num_boxes + 1)
        if config.genes_head:
            self.GeneHead = GeneHead(channels=CHANNELS)
        if config.box_refiner:
            self.BoxRefiner = BoxRefiner(config.reduced_dim)

    # -- stages -------------------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, h, w] normalised images (h, w multiples of 32) → [B, reduced_dim, h/16, w/16]."""
        return self.features_and_genes(images, genes=False)[0]

    def features_and_genes(self, images: torch.Tensor, genes: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One backbone pass → (features as `features` returns them, the gene head's raw output
        [B, 8, h/8, w/8] or None when the model has no gene head or `genes` is False)."""
        fast = self._inference_cache()
        if fast is not None:
            images = images.contiguous(memory_format=fast["memory_format"])
            feat_ext, dim_red = fast["backbone"].Feat_ext, fast["backbone"].DimRed
        else:
            feat_ext, dim_red = self.Feat_ext, self.DimRed
        maps = feat_ext(images)
        fmap = _fuse(dim_red, *maps)
        raw = self.GeneHead(*maps).contiguous() if genes and self.config.genes_head else None
        if fast is not None:
            fmap = fmap.contiguous()
            fast["checked_map"] = fmap  # scoring boxes on this map needs no second look at the weights
        return fmap, raw

    # -- faster inference -------------------------------------------------------------------
    def prepare_for_inference(self) -> "S2CNet":
        """Precompute what makes eval-mode inference cheaper, with the same values within float rounding:
        a copy of the backbone with BatchNorm folded into the convolutions (channels-last on CPU; for
        our checkpoints with an int8 calibration, the int8 copy of `int8_backbone`), and the node
        embedding's weights with the align ops' 2x2 average pool folded in (the pool is linear, so it
        becomes part of the Linear; the RoD part as [C, (a+1)², D] for `rod_table`). Used in eval mode
        without gradients while the weights stay those of this call: any change to them (training,
        load_state_dict, .to()) switches back to the plain modules; after replacing parameter objects
        themselves, call this again. Every copy is built here, never on demand, so a photo scores the
        same on every call. Returns self."""
        fused = nn.Module()
        fused.Feat_ext = fold_batchnorm(copy.deepcopy(self.Feat_ext).eval())
        fused.DimRed = copy.deepcopy(self.DimRed)
        # Channels-last on CPU; on CUDA, cuDNN 9 compiles a channels-last depthwise engine for every new
        # input shape while NCHW runs as fast: NCHW there.
        on_cpu = all(p.device.type == "cpu" for p in self.Feat_ext.parameters())
        memory_format = torch.channels_last if on_cpu else torch.contiguous_format
        fused = fused.to(memory_format=memory_format).requires_grad_(False)
        # the int8 copy: for a float32 model that carries a calibration, unless $S2CCROP_INT8_BACKBONE is
        # off or torch has no x86 quantised engine
        int8 = (on_cpu and self.int8_calibration is not None and int8_backbone.enabled_by_env()
                and int8_backbone.engine() is not None and all(p.dtype == torch.float32 for p in self.Feat_ext.parameters()))
        if int8:
            try:
                fused.Feat_ext = int8_backbone.quantised_extractor(fused.Feat_ext, self.int8_calibration)
            except (ImportError, AttributeError, RuntimeError):  # a torch without eager quantisation
                int8 = False
                fused.Feat_ext = fold_batchnorm(copy.deepcopy(self.Feat_ext).eval()).to(memory_format=memory_format).requires_grad_(False)
        if not int8 and on_cpu and all(p.dtype == torch.float32 for p in fused.parameters()):
            fused.Feat_ext = fuse_relu6(fused.Feat_ext)  # conv + ReLU6 as one oneDNN primitive
        linear = self.node_emb[0]
        channels, a = self.config.reduced_dim, self.config.align_size
        roi_w, rod_w = _fold_avg_pool(linear.weight.detach(), channels, a)
        # The tensors the copies were made from: in-place edits bump their version, .to() moves their data.
        sources = [t for m in (self.Feat_ext, self.DimRed, linear) for t in (*m.parameters(), *m.buffers())]
        rod_w = rod_w.t().reshape(channels, (a + 1) ** 2, -1).contiguous()  # [C, (a+1)², D]
        bias = linear.bias.detach().clone()
        # Kept out of the module tree (plain attributes): no state_dict keys, no parameters.
        self.__dict__["_inference"] = {
            "backbone": fused, "memory_format": memory_format, "roi_w": roi_w.t(), "bias": bias, "rod_w": rod_w,
            "sources": sources, "signature": _signature(sources), "int8_backbone": int8,
        }
        return self

    @property
    def int8_backbone_active(self) -> bool:
        """Whether the prepared inference path runs the int8 backbone."""
        cache = self.__dict__.get("_inference")
        return bool(cache and cache.get("int8_backbone"))

    def _inference_cache(self, fmap: torch.Tensor | None = None) -> dict | None:
        """The copies `prepare_for_inference` made, while they still match the weights (eval mode, no
        gradients); None otherwise. Comparing the weights' signature walks every parameter, so a
        feature map this cache's own backbone pass just made (`fmap`, the last one) is trusted without
        walking them again."""
        cached = self.__dict__.get("_inference")
        if cached is None or self.training or torch.is_grad_enabled():
            return None
        if fmap is not None and cached.get("checked_map") is fmap:
            return cached
        if cached["signature"] != _signature(cached["sources"]):
            del self.__dict__["_inference"]
            return None
        return cached

    def embed_boxes(
        self, fmap: torch.Tensor, boxes: torch.Tensor, batch_index: int = 0
    ) -> torch.Tensor:
        """Node embeddings [K, node_dim] of xyxy boxes [K, 4] (resized-image pixels) on image `batch_index`.

        Eval-mode fast path (after `prepare_for_inference`): the 2x2 pool is folded into the weights,
        so the Linear reads the raw samples at a+1; the RoD term is each box's keep-mask times one
        table per map (model/fast_nodes.py). The same values within float rounding."""
        a = self.config.align_size
        index = torch.full((boxes.shape[0], 1), float(batch_index), dtype=fmap.dtype, device=fmap.device)
        rois = torch.cat([index, boxes.to(fmap.dtype)], dim=1)
        fast = self._inference_cache(fmap)
        if fast is not None and fast["bias"].dtype == fmap.dtype:
            roi = roi_align(fmap, rois, a + 1, SPATIAL_SCALE).flatten(1)
            table = self._rod_table(fmap, batch_index, fast)  # [(a+1)², D]
            keep = rod_keep_mask(rois, fmap.shape[2], fmap.shape[3], a + 1, SPATIAL_SCALE)
            keep = keep.to(table.dtype)
            x = torch.addmm(torch.addmm(fast["bias"], roi, fast["roi_w"]), keep, table)
            return self.node_emb[2](self.node_emb[1](x))
        roi = roi_align_avg(fmap, rois, a, SPATIAL_SCALE)
        rod = rod_align_avg(fmap, rois, a, SPATIAL_SCALE)
        return self.node_emb(torch.stack([roi, rod], dim=2).flatten(1))

    def _rod_table(self, fmap: torch.Tensor, batch_index: int, fast: dict) -> torch.Tensor:
        """`rod_table` of image `batch_index` of `fmap`, remembered for the last map: the crop and gene
        boxes of a photo share one (eval mode only: feature maps are not edited in place there)."""
        last = fast.get("last_table")
        if last is not None and last[0] is fmap and last[1] == batch_index:
            return last[2]
        a = self.config.align_size
        table = rod_table(fmap, batch_index, fast["rod_w"], a + 1, SPATIAL_SCALE)
        fast["last_table"] = (fmap, batch_index, table)
        return table

    def score_boxes(
        self,
        fmap: torch.Tensor,
        crop_boxes: torch.Tensor,
        gene_boxes: torch.Tensor,
        image_size: tuple[int, int],
        batch_index: int = 0,
    ) -> torch.Tensor:
        """Scores [N] of crop boxes [N, 4] given the image's gene boxes [D, 4]; image_size = (w, h) resized.
        In eval mode each distinct thing is computed once (`_score_shared`); in training mode the
        literal SPEC graph runs (`_score_literal`)."""
        d = self.config.num_boxes
        if gene_boxes.shape != (d, 4):
            raise ValueError(f"expected {d} gene boxes of 4 coordinates, got shape {tuple(gene_boxes.shape)}")
        n = crop_boxes.shape[0]
        if n == 0:
            return fmap.new_zeros(0)
        if not self.training:
            return self._score_shared(fmap, crop_boxes, gene_boxes, image_size, batch_index)
        return self._score_literal(fmap, crop_boxes, gene_boxes, image_size, batch_index)

    def refine_boxes(
        self, fmap: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], batch_index: int = 0
    ) -> torch.Tensor:
        """xyxy boxes [N, 4] (resized-image pixels, image `batch_index` of `fmap`) with their edges moved
        by the box refiner (`S2CNetConfig.box_refiner`); unchanged for models without one. Not clipped
        to the image and not snapped to a ratio: `select.refine_box` does that."""
        if not self.config.box_refiner or boxes.shape[0] == 0:
            return boxes
        offsets = self.BoxRefiner(fmap.float(), boxes.float(), image_size, batch_index)
        return apply_offsets(boxes.float(), offsets).to(boxes.dtype)

    def _score_literal(self, fmap, crop_boxes, gene_boxes, image_size, batch_index: int = 0) -> torch.Tensor:
        """Every candidate with its own full node set, as SPEC §2 reads (training: dropout per node)."""
        width, height = image_size
        d = self.config.num_boxes
        n = crop_boxes.shape[0]
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

    def _score_shared(self, fmap, crop_boxes, gene_boxes, image_size, batch_index: int = 0) -> torch.Tensor:
        """The same scores in eval mode, computing each distinct thing once: gene boxes that repeat
        (padding with the whole image) become one node with a multiplicity, gene nodes are embedded
        once for all candidates, and the crop head computes only node 0 in the last layer
        (see `GraphTransformer.forward_shared`)."""
        width, height = image_size
        n = crop_boxes.shape[0]
        genes, inverse, counts = torch.unique(gene_boxes, dim=0, return_inverse=True, return_counts=True)
        crop_x = self.embed_boxes(fmap, crop_boxes, batch_index)
        gene_x = self.embed_boxes(fmap, genes, batch_index)
        crop_boxes = crop_boxes.to(crop_x.dtype)
        pos, app = self.GraphConstructor.forward_shared(
            crop_x, gene_x, box_centres(crop_boxes, width, height), box_centres(genes.to(crop_x.dtype), width, height)
        )
        first_only = self.config.head == "crop"
        x = self.GraphTransformer.forward_shared(crop_x, gene_x, pos, app, counts.to(crop_x.dtype).log(), first_only)
        if first_only:
            return self.FC_layers(x[:, 0]).reshape(n)
        # The graph head reads every node in order: put the copies back.
        order = torch.cat([inverse.new_zeros(1), inverse + 1])
        side = int(self.config.node_dim**0.5)
        return self.FC_layers(x[:, order].reshape(n, len(order), side, side)).reshape(n)

    def forward(self, images: torch.Tensor, crop_boxes: torch.Tensor, gene_boxes: torch.Tensor) -> torch.Tensor:
        """images [1, 3, h, w]; boxes in resized-image pixels. Returns scores [N]."""
        if images.dim() != 4 or images.shape[0] != 1:
            raise ValueError(f"forward scores one image [1, 3, h, w]; got {tuple(images.shape)}")
        fmap = self.features(images)
        h, w = images.shape[-2:]
        return self.score_boxes(fmap, crop_boxes, gene_boxes, (int(w), int(h)))

    # -- initialisation -----------------------------------------------------------------------
    def load_imagenet_backbone(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Initialise `Feat_ext` from torchvision's ImageNet MobileNetV2 state_dict (positional mapping)."""
        self.Feat_ext.load_state_dict(torchvision_to_reference(state_dict), strict=True)

"""The training recipe: `TrainConfig`, read from a committed TOML file (``base = "other.toml"`` starts
from another one). Everything that changes a trained model's result lives here; the seed fixes the rest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..model import S2CNetConfig
from ..preprocess import SHORT_SIDE
from .augment import AugmentConfig

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


@dataclass
class TrainConfig:
    seed: int = 2024
    # model shape
    align_size: int = 9
    num_boxes: int = 4
    head: str = "crop"
    dropout: float = 0.1
    reduced_dim: int = 8  # channels of the fused map that RoI/RoD sample (the reference's 8)
    # training photos the saved model's int8 backbone is calibrated on (model.int8_backbone); 0: none
    int8_calibration: int = 32
    node_dim: int = 256  # the graph's width (the reference's 256); ours may be narrower
    mlp_dim: int = 1024
    # the short side of the model input (S2CNetConfig.input_short_side; the SPEC's 256), at most cache_short_side
    input_short_side: int = SHORT_SIDE
    # a head that moves the chosen crop's edges (model/box_refiner.py), trained with weight refine_weight on
    # up to n_refine boxes per framing whose IoU with the human crop is at least refine_min_iou (smooth L1
    # towards the human crop's edges, in units of each box's side)
    box_refiner: bool = False
    refine_weight: float = 0.0
    n_refine: int = 32
    refine_min_iou: float = 0.5
    # what the saved model's refiner does to ratio-given crops: "move", "size" or "off"
    # (S2CNetConfig.refine_ratio_given)
    refine_ratio_given: str = "move"
    free_form_grid: str = "gaic"  # the free-form candidates trained on and chosen among (candidates.FREE_FORM_GRIDS)
    selection: str = "best"  # how the shipped model chooses (S2CNetConfig.selection): "best" or "average"
    # visual genes: "whole" (every gene is the whole image) or "learned" (the gene head, distilled from
    # teacher boxes; its own detections feed the graph, as at inference)
    genes: str = "whole"
    gene_head: bool = False  # train a gene head (for the face guard) even when the graph sees the whole image
    gene_weight: float = 1.0
    # after the main stage: train only the gene head (backbone and graph frozen) for up to this many
    # epochs, keeping the epoch with the lowest validation distillation loss. Only when the graph sees
    # the whole image, so that what the graph was trained on does not change.
    head_epochs: int = 0
    head_lr: float = 1e-3
    head_patience: int = 2
    # optimisation
    epochs: int = 12
    lr_head: float = 3e-4
    lr_backbone: float = 3e-5
    weight_decay: float = 1e-2
    frozen_stages: list = field(default_factory=lambda: ["feature3"])
    grad_clip: float = 5.0
    # candidates per training framing
    n_grid: int = 32
    n_ratio: int = 20
    n_jitter: int = 12
    jitter_sigma: float = 0.06
    # boxes of the human crop's centre and aspect at other sizes (area x U(scale_range)): they differ
    # from it in size only, which is what the model gets wrong most (it keeps ~70 % whatever the photo)
    n_scale: int = 0
    scale_range: tuple = (0.5, 1.5)
    # boxes that differ from the human crop by one edge, moved in or out by U(edge_range) of its side:
    # each asks whether that strip of the photo belongs in the crop
    n_edge: int = 0
    edge_range: tuple = (0.05, 0.25)
    # losses
    temperature: float = 0.05
    group_weight: float = 0.0  # > 0: also rank within the grid and within the ratio boxes
    vote_weight: float = 0.5
    vote_margin: float = 0.5
    # > 0: also train what select.average_box does with the grid and the ratio boxes (1 - IoU of their
    # score-weighted mean with the human crop, losses.averaged_box_loss)
    avg_weight: float = 0.0
    # distillation: checkpoints whose mean score on the same framing and candidates is a second listwise
    # target, softmax(mean teacher score) (the scores are trained as log-weights of softmax(IoU / T), so
    # temperature 1 is each teacher's own belief). "{fold}" in a path is replaced by the held-out fold,
    # so that in cross-validation no teacher has seen the photos it is measured on.
    distill_from: list = field(default_factory=list)
    distill_weight: float = 0.0
    # data
    cache_short_side: int = 320
    val_fraction: float = 0.15
    split_seed: int = 2024
    patience: int = 4
    # which epoch's weights to keep: "best" by the validation split's IoU (early stopping), or "last"
    # (a fixed schedule: the validation split is then never looked at to choose anything)
    keep: str = "best"
    # with keep = "last": measure the validation split (and the held-out fold) after every epoch, or only
    # after the last one (nothing reads the others; each measure costs about a minute on one core)
    measure_every_epoch: bool = True
    max_minutes: float = 85.0
    threads: int = 0
    limit_train: int = 0  # > 0: use only this many training photos (smoke runs)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    @classmethod
    def from_toml(cls, path: "str | Path") -> "TrainConfig":
        """Read a config; ``base = "other.toml"`` (relative to this file) starts from another config,
        so an ablation states only what it changes."""
        raw = _read_config(Path(path))
        aug = AugmentConfig(**raw.pop("augment", {}))
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"{path}: unknown settings {sorted(unknown)}")
        return cls(**raw, augment=aug)

    def __post_init__(self) -> None:
        if self.genes not in ("whole", "learned"):
            raise ValueError(f"genes must be 'whole' or 'learned', got {self.genes!r}")
        if self.keep not in ("best", "last"):
            raise ValueError(f"keep must be 'best' or 'last', got {self.keep!r}")
        if self.input_short_side > self.cache_short_side:
            raise ValueError(f"input_short_side {self.input_short_side} exceeds cache_short_side {self.cache_short_side}: "
                             "the photos are kept in memory at that size")
        if self.box_refiner != (self.refine_weight > 0):
            raise ValueError("box_refiner and refine_weight go together: the ranking losses never train the refiner")
        if self.head_epochs and not (self.gene_head and self.genes == "whole"):
            raise ValueError("head_epochs needs gene_head = true with genes = 'whole' (a head stage must not move the graph's genes)")
        self.model_config()  # what the model's own config refuses (a refine_ratio_given without a refiner, ...)

    def model_config(self) -> S2CNetConfig:
        return S2CNetConfig(
            align_size=self.align_size, num_boxes=self.num_boxes, head=self.head, dropout=self.dropout,
            reduced_dim=self.reduced_dim, node_dim=self.node_dim, mlp_dim=self.mlp_dim, free_form_grid=self.free_form_grid,
            selection=self.selection, box_refiner=self.box_refiner,
            refine_ratio_given=self.refine_ratio_given, input_short_side=self.input_short_side,
            genes_head=self.trains_head, graph_uses_head=self.genes == "learned",
        )

    @property
    def trains_head(self) -> bool:
        return self.gene_head or self.genes == "learned"

    def to_json(self) -> str:
        """Every setting, as a checkpoint's ``train_config`` metadata records the recipe."""
        return json.dumps({**asdict(self), "augment": asdict(self.augment)}, sort_keys=True)


def _read_config(path: Path, depth: int = 0) -> dict:
    raw = tomllib.loads(path.read_text())
    base = raw.pop("base", None)
    if base is None:
        return raw
    if depth > 4:
        raise ValueError(f"{path}: 'base' chain too deep")
    merged = _read_config(path.parent / base, depth + 1)
    augment = {**merged.pop("augment", {}), **raw.pop("augment", {})}
    merged.update(raw)
    if augment:
        merged["augment"] = augment
    return merged

"""The library API: `Cropper` runs decode → candidates → preprocess → model → select for each photo."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np
import torch
from PIL import Image

from . import candidates as cand
from .errors import ConfigError, WeightsError
from .genes import GeneProvider, WholeImageGenes, pad_boxes
from .model import GAICV1, S2CNet, load_checkpoint
from .preprocess import image_tensor, model_size, scale_boxes
from .select import best_index
from .types import Crop, Ratio

ImageLike = Union[str, "os.PathLike[str]", Image.Image]


@dataclass(frozen=True)
class Prepared:
    """One photo ready for the model: the upright image, its size, model size and input tensor."""

    image: Image.Image
    size: tuple[int, int]
    model_size: tuple[int, int]
    tensor: torch.Tensor
    key: str | None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device {device!r}: use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but no CUDA device is available (use --device cpu)")
    return torch.device(device)


class Cropper:
    """Crops photos to aspect ratios with a learned S2CNet model.

    `weights`: None for the embedded default, a registry name, a checkpoint path, ``"random"`` (a
    seeded untrained model, for tests) or an `S2CNet`. `genes` provides the visual-gene boxes.
    """

    def __init__(
        self,
        weights: "str | os.PathLike[str] | S2CNet | None" = None,
        device: str | torch.device = "auto",
        genes: GeneProvider | None = None,
    ) -> None:
        self.device = resolve_device(device)
        self.model, self.weights_info = _load_model(weights)
        self.model.to(self.device).eval()
        self.genes = genes or WholeImageGenes()

    @property
    def config(self):
        return self.model.config

    def info(self) -> dict:
        return {"device": str(self.device), "config": self.model.config.to_json(), "genes": getattr(self.genes, "name", type(self.genes).__name__), **self.weights_info}

    # -- stages ---------------------------------------------------------------------------------
    def prepare(self, image: ImageLike, key: str | None = None) -> Prepared:
        img = open_image(image)
        if key is None and not isinstance(image, Image.Image):
            key = Path(os.fspath(image)).stem
        size = (img.width, img.height)
        msize = model_size(*size)
        return Prepared(img, size, msize, image_tensor(img, msize), key)

    def _gene_boxes(self, p: Prepared) -> torch.Tensor:
        W, H = p.size
        genes = pad_boxes(self.genes.boxes(W, H, p.key), self.model.config.num_boxes, W, H)
        return scale_boxes(genes, p.size, p.model_size)

    @torch.inference_mode()
    def score(self, p: Prepared, boxes: np.ndarray) -> np.ndarray:
        """Model scores of xyxy boxes [N, 4] given in original pixels of the prepared photo."""
        fmap = self.model.features(p.tensor.to(self.device))
        scores = self.model.score_boxes(
            fmap, scale_boxes(boxes, p.size, p.model_size).to(self.device), self._gene_boxes(p).to(self.device), p.model_size
        )
        return scores.float().cpu().numpy()

    def crop_prepared(self, p: Prepared, ratios: Sequence[Ratio]) -> list[Crop]:
        W, H = p.size
        groups = [cand.for_ratio(W, H, r, p.model_size) for r in ratios]
        scores = self.score(p, np.concatenate(groups, axis=0))  # one backbone pass for all ratios
        crops, start = [], 0
        for ratio, boxes in zip(ratios, groups):
            s = scores[start : start + len(boxes)]
            start += len(boxes)
            i = best_index(s)
            crops.append(Crop(str(ratio), tuple(int(v) for v in boxes[i]), float(s[i])))
        return crops

    # -- the one-call API -------------------------------------------------------------------------
    def crop(self, image: ImageLike, ratios: "Iterable[str | Ratio] | str | Ratio" = ("any",)) -> list[Crop]:
        """Best crop of `image` for each ratio, in the order asked. Boxes are in upright pixels."""
        if isinstance(ratios, (str, Ratio)):
            ratios = [ratios]
        parsed = [Ratio.parse(r) for r in ratios]
        if not parsed:
            raise ConfigError("no ratio given")
        return self.crop_prepared(self.prepare(image), parsed)


def open_image(image: ImageLike) -> Image.Image:
    """An upright RGB image from a path or PIL image (the I/O layer does the decoding)."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    from .io.images import load_image

    return load_image(image)


def _load_model(weights) -> tuple[S2CNet, dict]:
    if isinstance(weights, S2CNet):
        return weights, {"weights": "<in-memory model>"}
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = S2CNet(GAICV1)
        return model.eval(), {"weights": "random (untrained)"}
    from . import weights as registry

    try:
        entry = registry.resolve(weights)
    except WeightsError:
        if weights is None and not registry.has_default():
            warnings.warn("no trained default weights are installed: using an untrained model", stacklevel=3)
            return _load_model("random")
        raise
    return load_checkpoint(entry.path), entry.info()

"""The library API: `Cropper` decodes a photo, runs the model's backbone once, and has `decide` choose
its crop for each ratio."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence, Union

from ._imports import import_torch

import_torch()  # with the garbage collector off (see there); the two lines below then find them loaded
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from . import envvars
from .decide import Prepared, Rules, candidate_groups, decide, guard_of
from .errors import ConfigError
from .genes import GeneProvider, LearnedGenes, WholeImageGenes, box_rows, pad_boxes
from .hints import FITS, parse_focus, parse_keep, parse_scale
from .io.images import MODEL, open_image
from .model import GAICV1, S2CNet, load_checkpoint
from .model.gene_head import Detections, decode
from .preprocess import image_tensor, model_size, scale_boxes
from .types import Crop, Ratio

ImageLike = Union[str, "os.PathLike[str]", Image.Image]


def set_threads(threads: int | None = None) -> None:
    """Set torch's intra-op CPU threads from `threads` or $S2CCROP_THREADS (unset: leave torch's default)."""
    if threads is None:
        threads = envvars.threads()
        if threads is None:
            return
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)


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
    A photo given as a path is decoded as the command line decodes it: a large JPEG at the reduced
    scale the model reads (`io.images.model_reduction`), so its crops are the command line's.
    `threads`: torch's intra-op CPU threads (process-wide); default: $S2CCROP_THREADS, else torch's
    own choice. The crops do not depend on it.
    `selection`: "best" (the best-scoring candidate) or "average" (the score-weighted mean of the best
    candidates, `select.average_box`, snapped to the ratio); None (default): what the model was
    trained for (`S2CNetConfig.selection`). Where a crop is decided: `s2ccrop.decide`.
    """

    def __init__(
        self,
        weights: "str | os.PathLike[str] | S2CNet | None" = None,
        device: str | torch.device = "auto",
        genes: GeneProvider | None = None,
        threads: int | None = None,
        face_guard: bool = True,
        selection: str | None = None,
    ) -> None:
        set_threads(threads)
        self.device = resolve_device(device)
        # Loading and preparing the model is hundreds of small elementwise copies, each a fork/join of the
        # thread pool that stalls whenever another process holds a core: one thread for those.
        inference_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self.model, self.weights_info = _load_model(weights)
            self.model.to(self.device).eval()
            self.model.prepare_for_inference()
        finally:
            torch.set_num_threads(inference_threads)
        has_head = self.model.config.genes_head
        # The graph sees by default the boxes it was trained with.
        self.genes = genes or (LearnedGenes() if has_head and self.model.config.graph_uses_head else WholeImageGenes())
        if isinstance(self.genes, LearnedGenes) and not has_head:
            raise ConfigError("learned genes need a model with a gene head; this checkpoint has none (use whole-image genes)")
        self.face_guard = face_guard
        self.selection = selection or self.model.config.selection
        if self.selection not in ("best", "average"):
            raise ConfigError(f"selection must be 'best' or 'average', got {self.selection!r}")

    @property
    def config(self):
        return self.model.config

    def info(self) -> dict:
        return {
            "device": str(self.device), "config": self.model.config.to_json(),
            "genes": getattr(self.genes, "name", type(self.genes).__name__),
            "face_guard": self.face_guard and self.model.config.genes_head, "selection": self.selection,
            "backbone": "int8" if self.model.int8_backbone_active else "float",
            **self.weights_info,
        }

    # -- stages ---------------------------------------------------------------------------------
    def prepare(self, image: ImageLike, key: str | None = None, size: tuple[int, int] | None = None) -> Prepared:
        """Decode (paths) and make the model input. `size`: the full upright (W, H) that `image`, a
        reduced copy (e.g. a JPEG decoded at 1/4), stands for; boxes are then in pixels of that size."""
        faces = None
        if isinstance(image, Image.Image):
            img = image if image.mode == "RGB" else image.convert("RGB")
        else:
            img, full, faces = _decode(image)
            size = size or full
            if key is None:
                key = Path(os.fspath(image)).stem
        size = size or (img.width, img.height)
        msize = model_size(*size, short_side=self.model.config.input_short_side)
        return Prepared(img, size, msize, image_tensor(img, msize), key, faces=faces)

    def _gene_boxes(self, p: Prepared) -> torch.Tensor:
        W, H = p.size
        if isinstance(self.genes, LearnedGenes):
            if p.detections is None:
                raise RuntimeError("learned genes are found by the backbone pass: call features() first")
            found = p.detections.genes()
        else:
            found = self.genes.boxes(W, H, p.key)
        genes = pad_boxes(found, self.model.config.num_boxes, W, H)
        return scale_boxes(genes, p.size, p.model_size)

    @torch.inference_mode()
    def score(self, p: Prepared, boxes: np.ndarray) -> np.ndarray:
        """Model scores of xyxy boxes [N, 4] given in original pixels of the prepared photo."""
        return self.score_features(self.features([p]), 0, p, boxes)

    @torch.inference_mode()
    def features(self, prepared: Sequence[Prepared], detect: bool | None = None) -> torch.Tensor:
        """One backbone pass over photos of the same model size: [B, reduced_dim, h/16, w/16]. With a
        gene head, the same pass finds each photo's objects and faces (`Prepared.detections`) when
        `detect`; by default, when something reads them (learned genes or the face guard)."""
        if detect is None:  # --fit auto reads the model's subject
            detect = self.face_guard or isinstance(self.genes, LearnedGenes) or any(p.fit == "auto" for p in prepared)
        batch = torch.cat([p.tensor for p in prepared]) if len(prepared) > 1 else prepared[0].tensor
        fmap, raw = self.model.features_and_genes(batch.to(self.device), genes=detect)
        if raw is not None:
            for p, r in zip(prepared, raw):
                (W, H), (w, h) = p.size, p.model_size
                p.detections = decode(r, p.model_size).scaled(W / w, H / h)
        return fmap

    def detect(self, image: ImageLike) -> Detections:
        """Objects and faces the gene head finds in a photo (rows x1, y1, x2, y2, score; pixels of the
        upright photo), best first. Needs a model with a gene head."""
        if not self.model.config.genes_head:
            raise ConfigError("this checkpoint has no gene head: it detects nothing")
        p = self.prepare(image)
        self.features([p], detect=True)
        assert p.detections is not None
        return p.detections

    @torch.inference_mode()
    def score_features(self, fmap: torch.Tensor, index: int, p: Prepared, boxes: np.ndarray) -> np.ndarray:
        """Scores of xyxy boxes [N, 4] (original pixels) of photo `p`, image `index` of `fmap`."""
        crop_boxes = scale_boxes(boxes, p.size, p.model_size).to(self.device)
        genes = self._gene_boxes(p).to(self.device)
        scores = self.model.score_boxes(fmap, crop_boxes, genes, p.model_size, index)
        return scores.float().cpu().numpy()

    @torch.inference_mode()
    def refine_features(self, fmap: torch.Tensor, index: int, p: Prepared, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes [N, 4] (original pixels) of photo `p` with their edges moved by the model's box
        refiner (float, not snapped; unchanged for models without one)."""
        moved = self.model.refine_boxes(fmap, scale_boxes(boxes, p.size, p.model_size).to(self.device), p.model_size, index)
        (W, H), (w, h) = p.size, p.model_size
        return moved.float().cpu().numpy().astype(np.float64) * [W / w, H / h, W / w, H / h]

    @property
    def rules(self) -> Rules:
        """How this Cropper's model chooses its crops (`decide.Rules`)."""
        config = self.model.config
        return Rules(average=self.averages, grid=config.free_form_grid, refiner=config.box_refiner,
                     refine_ratio_given=config.refine_ratio_given, face_guard=self.face_guard)

    def candidates(self, p: Prepared, ratios: Sequence[Ratio]) -> list[np.ndarray]:
        return candidate_groups(p, ratios, self.model.config.free_form_grid)

    def guard(self, p: Prepared):
        """What the crops of `p` must not cut (`decide.guard_of`), with this Cropper's face guard."""
        return guard_of(p, self.face_guard)

    @property
    def averages(self) -> bool:
        return self.selection == "average"

    def crop_prepared(self, p: Prepared, ratios: Sequence[Ratio]) -> list[Crop]:
        return self._crops(p, ratios, self.features([p]), 0)  # one backbone pass for all ratios

    def _crops(self, p: Prepared, ratios: Sequence[Ratio], fmap: torch.Tensor, index: int) -> list[Crop]:
        return decide(p, ratios, _PhotoModel(self, fmap, index, p), self.rules)

    # -- the one-call API -------------------------------------------------------------------------
    def crop(
        self,
        image: ImageLike,
        ratios: "Iterable[str | Ratio] | str | Ratio" = ("any",),
        size: tuple[int, int] | None = None,
        *,
        focus: "Sequence[float] | str | None" = None,
        keep: "Sequence[float] | str | None" = None,
        faces: "np.ndarray | Sequence[Sequence[float]] | None" = None,
        fit: str = "crop",
        scale: "Sequence[float] | str | None" = None,
    ) -> list[Crop]:
        """Best crop of `image` for each ratio, in the order asked. Boxes are in upright pixels (of
        `size` when `image` is a reduced copy of a photo of that size).

        Hints, in fractions of the upright photo: `focus` (x, y), a point the crop must keep, and
        `keep` (x1, y1, x2, y2), a region it must keep whole when any candidate of the ratio can (a
        crop that goes against them loses to every one that does not; when all do, the one that
        misses least wins). `faces` (rows x1, y1, x2, y2, fractions) join the gene head's for the
        face guard; None: those the file's XMP metadata marks (`io.xmp`; paths only).
        `fit`: "crop" cuts to the ratio; "pad" gives each fixed ratio a `Crop(fit="pad")` whose box is
        the model's free-form framing, grown to hold the hints and the faces it would cut, to be shown
        whole in a padded thumbnail of the ratio (`io.render.render_pad`); "auto" pads only the ratios
        whose every candidate cuts a face, a hint or the model's subject (its most confident object).
        `scale` (lo, hi): how large each crop may be, as a fraction of the largest box of its shape in
        the photo (max(w / W, h / H)); the model chooses among candidates of sizes in the range. When none
        of them can hold a face or a hint, the crop is the smallest larger one that does
        (`Crop.widened`)."""
        parsed = _parse_ratios(ratios)  # a bad ratio and a bad hint fail before any decoding
        focus, keep, scale = parse_focus(focus, "focus"), parse_keep(keep, "keep"), parse_scale(scale, "scale")
        if fit not in FITS:
            raise ConfigError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        p = self.prepare(image, size=size)
        p.focus, p.keep, p.fit, p.scale = focus, keep, fit, scale
        if faces is not None:
            p.faces = box_rows(faces)[:, :4]
        return self.crop_prepared(p, parsed)

    def crop_many(
        self,
        images: Iterable[ImageLike],
        ratios: "Iterable[str | Ratio] | str | Ratio" = ("any",),
        batch_size: int = 16,
    ) -> list[list[Crop]]:
        """`crop` for many photos, in order. Photos of the same model input size (most photos of one
        camera) share backbone passes of up to `batch_size` images, which is what keeps a GPU busy;
        on CPU the result is the same as calling `crop` on each (within float rounding)."""
        parsed = _parse_ratios(ratios)
        results: list[list[Crop]] = []
        chunk: list[Prepared] = []
        for image in images:
            chunk.append(self.prepare(image))
            if len(chunk) == batch_size:
                results += self._crop_chunk(chunk, parsed)
                chunk = []
        if chunk:
            results += self._crop_chunk(chunk, parsed)
        return results

    def _crop_chunk(self, chunk: list[Prepared], ratios: Sequence[Ratio]) -> list[list[Crop]]:
        out: list[list[Crop] | None] = [None] * len(chunk)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(chunk):
            by_size.setdefault(p.model_size, []).append(i)
        for members in by_size.values():
            fmap = self.features([chunk[i] for i in members])
            for b, i in enumerate(members):
                out[i] = self._crops(chunk[i], ratios, fmap, b)
        return out  # type: ignore[return-value]


class _PhotoModel:
    """The Cropper's model bound to one photo's feature map (`decide.PhotoModel`)."""

    def __init__(self, cropper: Cropper, fmap: torch.Tensor, index: int, p: Prepared) -> None:
        self.cropper, self.fmap, self.index, self.p = cropper, fmap, index, p

    def score(self, boxes: np.ndarray) -> np.ndarray:
        return self.cropper.score_features(self.fmap, self.index, self.p, boxes)

    def refine(self, boxes: np.ndarray) -> np.ndarray:
        return self.cropper.refine_features(self.fmap, self.index, self.p, boxes)


def _parse_ratios(ratios) -> list[Ratio]:
    if isinstance(ratios, (str, Ratio)):
        ratios = [ratios]
    parsed = [Ratio.parse(r) for r in ratios]
    if not parsed:
        raise ConfigError("no ratio given")
    return parsed


def _decode(path) -> tuple[Image.Image, tuple[int, int], np.ndarray | None]:
    """(RGB image as the model reads it, full upright size, the face regions its XMP marks) of a photo
    file: a large JPEG is decoded at a reduced scale chosen from its size (`io.images.model_reduction`)."""
    decoded = open_image(path, reduction=MODEL)
    return decoded.rgb(), decoded.size, decoded.faces


def _load_model(weights) -> tuple[S2CNet, dict]:
    if isinstance(weights, S2CNet):
        return weights, {"weights": "<in-memory model>"}
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = S2CNet(GAICV1)
        return model.eval(), {"weights": "random (untrained)"}
    from . import weights as registry

    # A missing or corrupt default is an error that names the fix, never a silent untrained model.
    entry = registry.resolve(weights)
    return load_checkpoint(entry.path), entry.info()

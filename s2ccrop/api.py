"""The library API: `Cropper` runs decode → candidates → preprocess → model → select for each photo."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence, Union

from ._imports import import_torch

import_torch()  # with the garbage collector off (see there); the two lines below then find them loaded
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from . import candidates as cand
from .errors import ConfigError
from .genes import GeneProvider, LearnedGenes, WholeImageGenes, box_rows, pad_boxes
from .hints import FITS, parse_focus, parse_keep
from .model import GAICV1, S2CNet, load_checkpoint
from .model.gene_head import Detections, decode
from .preprocess import image_tensor, model_size, scale_boxes
from .select import APPROX_MARGIN, AVERAGE_WINDOW, INT8_MARGIN, Guard, contenders, cuts_everywhere, guard_penalties, hold
from .select import penalties_of, refine_box, select_crops
from .search import AVERAGE_REFINE_TOP, REFINE_TOP, pays_for, searched_scores
from .types import Crop, Ratio

ImageLike = Union[str, "os.PathLike[str]", Image.Image]

# bfloat16 ranking costs a second, exact pass over the contenders; with the shipped weights ~1.3 % of
# the candidates. When more than this share of the first RANKING_TRIAL candidates (~3 photos at 4
# ratios) needed it, exact scoring alone is faster.
RANKING_GIVES_UP = 0.25
RANKING_TRIAL = 2000
# 0 scores every candidate (as the reference does), 1 searches coarse-to-fine with any checkpoint;
# unset: `Cropper(search=None)` searches with our own checkpoints whose graph makes it pay.
SEARCH_ENV = "S2CCROP_SEARCH"


@dataclass
class Prepared:
    """One photo ready for the model: the upright image, its size, model size and input tensor.
    `detections`: the gene head's object and face boxes (original pixels), filled in by the backbone
    pass (`Cropper.features`) when the model has a gene head. What its crops must respect, in
    fractions of the upright photo: `focus` (x, y), `keep` (x1, y1, x2, y2), `faces` (rows x1, y1, x2,
    y2: marked in its metadata, or given); `fit`: "crop", "pad" or "auto" (`Cropper.crop`)."""

    image: Image.Image
    size: tuple[int, int]
    model_size: tuple[int, int]
    tensor: torch.Tensor
    key: str | None
    detections: Detections | None = field(default=None, repr=False)
    focus: tuple[float, float] | None = None
    keep: tuple[float, float, float, float] | None = None
    faces: np.ndarray | None = field(default=None, repr=False)
    fit: str = "crop"


def env_threads() -> int | None:
    """$S2CCROP_THREADS as a number (None when unset); ConfigError when it is not a whole number."""
    text = os.environ.get("S2CCROP_THREADS", "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"S2CCROP_THREADS={text!r} is not a whole number") from None


def env_search() -> bool | None:
    """$S2CCROP_SEARCH as a choice: False for 0/false/no/off, True for 1/true/yes/on, None when unset;
    ConfigError for anything else."""
    text = os.environ.get(SEARCH_ENV, "").strip().lower()
    if not text:
        return None
    if text in ("0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{SEARCH_ENV}={text!r}: use 0 (score every candidate) or 1 (coarse-to-fine search)")


def set_threads(threads: int | None = None) -> None:
    """Set torch's intra-op CPU threads from `threads` or $S2CCROP_THREADS (unset: leave torch's default)."""
    if threads is None:
        threads = env_threads()
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
    `draft`: decode JPEG paths at a reduced scale that still covers the model's input (JPEG draft
    mode: a 12 MP photo decodes ~10x faster). The model then sees a DCT-downscaled photo instead of
    a bilinear sample of the full one, so scores can differ slightly from ``draft=False``, which is
    what the command line uses (it needs the full pixels to write the crops anyway).
    `threads`: torch's intra-op CPU threads (process-wide); default: $S2CCROP_THREADS, else torch's
    own choice (one per core).
    `bf16_ranking`: on CPU, rank all candidates with a bfloat16 copy of the graph, then score exactly
    only those within `select.APPROX_MARGIN` of their ratio's best: the same crops and scores as exact
    scoring, faster where the CPU multiplies bfloat16 in hardware (Intel AMX). None (default): as
    $S2CCROP_BF16 says (0 off, 1 on), else where the CPU does; True: on any CPU (slower without AMX);
    False: never.
    `int8_ranking`: the same with a copy of the graph whose Linear layers are dynamically quantised to
    int8 (x86 fbgemm: AVX2 CPUs too), its candidates within `select.INT8_MARGIN` rescored; ~2x faster
    than float32 ranking without AMX. None (default): on for our own checkpoints that choose the best
    candidate (not with averaging, whose exact window covers most candidates) where bfloat16 ranking
    is off, unless $S2CCROP_INT8=0 ($S2CCROP_INT8=1: for any checkpoint); False: never.
    `selection`: "best" (the best-scoring candidate) or "average" (the score-weighted mean of the best
    candidates, `select.average_box`, snapped to the ratio; its reported score is the model's score of
    that box); None (default): what the model was trained for (`S2CNetConfig.selection`).
    `search`: choose each crop by coarse-to-fine search (`s2ccrop.search`): score a cover of each
    ratio's candidates, then those around the best two; 40-60 % of the candidates scored, nearly
    always the same choice (README, Speed). False scores every candidate, as the reference does. None
    (default): as $S2CCROP_SEARCH says (0 off, 1 on), else on for our own checkpoints whose graph
    is wide enough for it to pay (`search.pays_for`: s2ccrop-v3 and v4, not the narrower default
    s2ccrop-v5, whose every candidate costs less than a search's extra passes) and off for reference
    ones. `score` and `score_features` always score every box asked.
    """

    def __init__(
        self,
        weights: "str | os.PathLike[str] | S2CNet | None" = None,
        device: str | torch.device = "auto",
        genes: GeneProvider | None = None,
        draft: bool = False,
        threads: int | None = None,
        face_guard: bool = True,
        bf16_ranking: bool | None = None,
        selection: str | None = None,
        search: bool | None = None,
        int8_ranking: bool | None = None,
    ) -> None:
        set_threads(threads)
        self.device = resolve_device(device)
        # Loading and preparing the model is ~700 small elementwise copies: the same values on any
        # number of threads, and each a fork/join of the thread pool, which stalls for a time slice
        # whenever another process holds a core (1.0-1.5 s instead of 0.3 s on a busy 2-core machine).
        inference_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self.model, self.weights_info = _load_model(weights)
            self.model.to(self.device).eval()
            # int8 ranking by default for our checkpoints, unless they average: averaging needs exact
            # scores for everything within AVERAGE_WINDOW of the best, which is most of what is ranked
            own = getattr(self.model, "own_checkpoint", False)
            averaging = (selection or self.model.config.selection) == "average"
            self.model.prepare_for_inference(approximate=_ranking_kind(bf16_ranking, int8_ranking, own and not averaging))
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
        self.draft = draft
        if search is None:
            search = env_search()
        if search is None:
            search = getattr(self.model, "own_checkpoint", False) and pays_for(self.model.config)
        self.search = bool(search)
        self._ranking = {"on": True, "ranked": 0, "rescored": 0}  # bfloat16 ranking's tally (selection_scores)

    @property
    def config(self):
        return self.model.config

    def info(self) -> dict:
        return {
            "device": str(self.device), "config": self.model.config.to_json(),
            "genes": getattr(self.genes, "name", type(self.genes).__name__),
            "face_guard": self.face_guard and self.model.config.genes_head, "selection": self.selection,
            "search": self.search, "ranking": self.model.ranking, "backbone": "int8" if self.model.int8_backbone_active else "float",
            **self.weights_info,
        }

    # -- stages ---------------------------------------------------------------------------------
    def prepare(self, image: ImageLike, key: str | None = None, size: tuple[int, int] | None = None) -> Prepared:
        """Decode (paths) and make the model input. `size`: the full upright (W, H) that `image`, a
        reduced copy (e.g. a JPEG draft), stands for; boxes are then in pixels of that size."""
        faces = None
        if isinstance(image, Image.Image):
            img = image if image.mode == "RGB" else image.convert("RGB")
        else:
            img, full, faces = _decode(image, self.draft)
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
    def score_features(
        self, fmap: torch.Tensor, index: int, p: Prepared, boxes: np.ndarray, approximate: bool = False
    ) -> np.ndarray:
        """Scores of xyxy boxes [N, 4] (original pixels) of photo `p`, image `index` of `fmap`.
        `approximate`: bfloat16 scores where the CPU has the hardware (`S2CNet.score_boxes`)."""
        crop_boxes = scale_boxes(boxes, p.size, p.model_size).to(self.device)
        genes = self._gene_boxes(p).to(self.device)
        scores = self.model.score_boxes(fmap, crop_boxes, genes, p.model_size, index, approximate=approximate)
        return scores.float().cpu().numpy()

    def candidates(self, p: Prepared, ratios: Sequence[Ratio]) -> list[np.ndarray]:
        W, H = p.size
        return [cand.for_ratio(W, H, r, p.model_size, self.model.config.free_form_grid) for r in ratios]

    @property
    def averages(self) -> bool:
        return self.selection == "average"

    def crop_prepared(self, p: Prepared, ratios: Sequence[Ratio]) -> list[Crop]:
        return self._crops(p, ratios, self.features([p]), 0)  # one backbone pass for all ratios

    def _crops(self, p: Prepared, ratios: Sequence[Ratio], fmap: torch.Tensor, index: int) -> list[Crop]:
        groups = self.candidates(p, ratios)
        guard = self.guard(p)
        crops = select_crops(ratios, groups, self.selection_scores(fmap, index, p, groups, guard), guard,
                             average=self.averages, size=p.size)
        refines = self.model.config.box_refiner
        if refines:
            crops = self._refined(p, ratios, crops, guard, fmap, index)
        if self.averages or refines:
            # an averaged or refined box is not a candidate: report the model's score of the box itself
            scores = self.score_features(fmap, index, p, np.array([c.box for c in crops], dtype=np.float64))
            crops = [Crop(c.ratio, c.box, float(v)) for c, v in zip(crops, scores)]
        return self._fit(p, ratios, groups, guard, crops, fmap, index)

    @torch.inference_mode()
    def _refined(self, p: Prepared, ratios: Sequence[Ratio], crops: list[Crop], guard: Guard | None,
                 fmap: torch.Tensor, index: int) -> list[Crop]:
        """The chosen crops with their edges moved by the model's box refiner (`S2CNet.refine_boxes`),
        snapped to each ratio (`select.refine_box`); a crop stays where it was when the move would cut a
        face or a hint more than it does. A ratio-given crop takes the moved box's centre and area, only
        its area, or stays, as the model's `S2CNetConfig.refine_ratio_given` says ("move", "size", "off")."""
        mode = self.model.config.refine_ratio_given
        which = [i for i, r in enumerate(ratios) if mode != "off" or r.is_any]
        if not which:
            return crops
        boxes = np.array([crops[i].box for i in which], dtype=np.float64)
        moved = self.model.refine_boxes(fmap, scale_boxes(boxes, p.size, p.model_size).to(self.device), p.model_size, index)
        (W, H), (w, h) = p.size, p.model_size
        moved_px = moved.float().cpu().numpy().astype(np.float64) * [W / w, H / h, W / w, H / h]
        out = list(crops)
        for j, (i, box) in enumerate(zip(which, moved_px)):
            x1, y1, x2, y2 = crops[i].box
            centre = ((x1 + x2) / 2, (y1 + y2) / 2) if mode == "size" else None
            new = refine_box(box, ratios[i], W, H, centre)
            if guard is not None and penalties_of(np.array([new], dtype=np.float64), guard)[0] > penalties_of(boxes[j : j + 1], guard)[0]:
                continue
            out[i] = Crop(crops[i].ratio, new, crops[i].score, fit=crops[i].fit)
        return out

    def guard(self, p: Prepared) -> Guard | None:
        """What the crops of `p` must not cut, in its pixels: the faces (the gene head's and those its
        metadata marks, unless the face guard is off), the focus point, the keep region, and the
        model's subject (its most confident object, read by `fit="auto"`). None when there is nothing."""
        W, H = p.size
        scale = np.array([W, H, W, H], dtype=np.float64)
        faces = []
        if self.face_guard:
            if p.detections is not None:
                faces.append(box_rows(p.detections.faces)[:, :4])
            if p.faces is not None and len(p.faces):
                faces.append(box_rows(p.faces)[:, :4] * scale)
        objects = box_rows(p.detections.objects) if p.detections is not None and p.fit == "auto" else np.zeros((0, 4))
        focus = (p.focus[0] * W, p.focus[1] * H) if p.focus is not None else None
        keep = tuple(float(v) for v in np.asarray(p.keep) * scale) if p.keep is not None else None
        subject = tuple(float(v) for v in objects[0, :4]) if len(objects) else None
        if not faces and focus is None and keep is None and subject is None:
            return None
        return Guard(p.size, np.concatenate(faces) if faces else None, focus, keep, subject)  # type: ignore[arg-type]

    def _fit(self, p: Prepared, ratios: Sequence[Ratio], groups: Sequence[np.ndarray], guard: Guard | None,
             crops: list[Crop], fmap: torch.Tensor, index: int) -> list[Crop]:
        """Padded fits: with fit "pad" every fixed ratio, with "auto" those whose every candidate cuts
        a face, a hint or the subject, show the model's free-form framing (its "any" crop, grown to hold
        whatever it cuts: `select.hold`) whole, to be padded to the ratio. The same box whatever the
        output size."""
        pad = [i for i, r in enumerate(ratios)
               if not r.is_any and (p.fit == "pad" or (p.fit == "auto" and cuts_everywhere(groups[i], guard)))]
        if not pad:
            return crops
        free = Ratio.parse("any")
        framing = next((c for r, c in zip(ratios, crops) if r.is_any), None)
        if framing is None:
            framing = self._crops(replace(p, fit="crop"), [free], fmap, index)[0]
        region = hold(framing.box, guard, p.size)
        score = framing.score
        if region != tuple(framing.box):
            score = float(self.score_features(fmap, index, p, np.array([region], dtype=np.float64))[0])
        out = list(crops)
        for i in pad:
            out[i] = Crop(crops[i].ratio, region, score, fit="pad")
        return out

    @torch.inference_mode()
    def selection_scores(
        self, fmap: torch.Tensor, index: int, p: Prepared, groups: Sequence[np.ndarray], faces: np.ndarray | None
    ) -> np.ndarray:
        """Scores of the candidate groups (all ratios at once) as `select_crops` needs them: exact for
        every candidate that can win its group, -inf for the rest. With the search (`self.search`),
        only the candidates `search.searched_scores` picks are scored. With bfloat16 ranking
        (`self.model.approximates`), those candidates (all, without the search) are ranked in bfloat16
        and only those within `select.APPROX_MARGIN` of their group's best (after the face guard) are
        scored exactly: the same crops and scores as exact scoring of the same candidates, in less
        time. Ranking stops paying when a checkpoint's scores are so flat that many candidates are
        close to the best: once more than RANKING_GIVES_UP of RANKING_TRIAL candidates needed
        rescoring, this Cropper scores exactly from then on (the same crops either way)."""
        boxes = np.concatenate(groups, axis=0)
        tally = self._ranking
        ranking = self.model.approximates and tally["on"]
        if not ranking and not self.search:
            return self.score_features(fmap, index, p, boxes)
        penalties = guard_penalties(groups, faces)
        if self.search:
            first = searched_scores(
                groups, penalties, lambda pick: self.score_features(fmap, index, p, boxes[pick], approximate=ranking),
                refine_top=AVERAGE_REFINE_TOP if self.averages else REFINE_TOP)
            if not ranking:
                return first
        else:
            first = self.score_features(fmap, index, p, boxes, approximate=True)
        # averaging weighs every candidate within AVERAGE_WINDOW of the best: those need exact scores too
        margin = (INT8_MARGIN if self.model.ranking == "int8" else APPROX_MARGIN) + (AVERAGE_WINDOW if self.averages else 0.0)
        pick = contenders(groups, first, penalties, margin)
        scores = np.full(len(boxes), -np.inf)
        scores[pick] = self.score_features(fmap, index, p, boxes[pick])
        tally["ranked"] += int(np.isfinite(first).sum())
        tally["rescored"] += len(pick)
        if tally["ranked"] >= RANKING_TRIAL and tally["rescored"] > RANKING_GIVES_UP * tally["ranked"]:
            tally["on"] = False  # exact scoring from now on
        return scores

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
        whole in a padded thumbnail of the ratio (`io.writers.render_pad`); "auto" pads only the ratios
        whose every candidate cuts a face, a hint or the model's subject (its most confident object)."""
        parsed = _parse_ratios(ratios)  # a bad ratio and a bad hint fail before any decoding
        focus, keep = parse_focus(focus, "focus"), parse_keep(keep, "keep")
        if fit not in FITS:
            raise ConfigError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        p = self.prepare(image, size=size)
        p.focus, p.keep, p.fit = focus, keep, fit
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


def _ranking_kind(bf16: bool | None, int8: bool | None, own: bool = False) -> "str | bool":
    """What `S2CNet.prepare_for_inference(approximate=)` gets from the Cropper's two keywords: True for
    either forces that ranking (bfloat16 first), False turns it off, None leaves it to
    `model.s2cnet.ranking_kind` (bfloat16 where $S2CCROP_BF16=1 or the CPU has AMX, int8 where
    $S2CCROP_INT8=1) and, for int8, to $S2CCROP_INT8 and whether the checkpoint is one of ours (`own`:
    int8 ranking is on by default for ours where bfloat16 ranking is not)."""
    from .model.s2cnet import int8_env, ranking_kind

    if bf16 is True:
        return "bf16"
    if int8 is None and own and int8_env() is not False:
        int8 = True
    kind = ranking_kind(None)
    if bf16 is False and kind == "bf16":
        kind = None
    if int8 is True and kind is None:
        kind = "int8"
    if int8 is False and kind == "int8":
        kind = None
    return kind or False


def _parse_ratios(ratios) -> list[Ratio]:
    if isinstance(ratios, (str, Ratio)):
        ratios = [ratios]
    parsed = [Ratio.parse(r) for r in ratios]
    if not parsed:
        raise ConfigError("no ratio given")
    return parsed


def _decode(path, draft: bool) -> tuple[Image.Image, tuple[int, int], np.ndarray | None]:
    """(RGB image, full upright size, the face regions its XMP marks) of a photo file; with `draft`, a
    JPEG is decoded at the smallest power-of-two scale whose short side still covers the model's
    (SHORT_SIDE)."""
    from .io.images import open_image as decode
    from .preprocess import SHORT_SIDE

    decoded = decode(path, draft=(SHORT_SIDE, SHORT_SIDE) if draft else None)
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

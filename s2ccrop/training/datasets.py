"""Readers for the FCDB training split and the GAICD v1 annotations (read from ``../shared``, never copied).

FCDB (``data/fcdb-train``): ``crops.json`` holds one human best crop per photo as ``crop_xyxy``;
``pairwise_rankings.json`` holds human votes between two crops ``[x, y, w, h]``. The votes were collected
on the Flickr size named by ``ranking_image_url_suffix``, which need not be the resolution of the stored
file, so ``load_fcdb`` works out, per photo, which frame the vote boxes are in and rescales them (and, for
the same photo, the human crop) into file pixels; photos whose frame cannot be determined lose their votes,
and the ``FCDBReport`` counts everything that was rescaled or dropped.

GAICD v1 (``data/gaicd-v1``): ``annotations/<id>.txt`` lines ``y1 x1 y2 x2 MOS`` (MOS = -2 means "not
annotated" and is skipped), ``train.txt`` / ``test.txt``, the few public ``images/`` and the reference
detector boxes ``official-detector-boxes/<id>.txt`` (``y1 x1 y2 x2``). Boxes are returned as x1, y1, x2, y2.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from .._shared import shared_dir

T = TypeVar("T")

# Long side in pixels of Flickr's size suffixes (https://www.flickr.com/services/api/misc.urls.html).
# "o" (original) has no fixed size: only the file itself tells it.
FLICKR_LONG_SIDE = {"t": 100, "m": 240, "n": 320, "w": 400, "z": 640, "c": 800, "b": 1024, "h": 1600, "k": 2048}

# The FCDB generator drew crops of up to 80 % of the ranking image's sides at many positions, so the union
# of a photo's 20 vote boxes reaches far towards the right and bottom edges of the frame they were drawn
# in (>= 0.84 of each side for every photo measured). Boxes that stay within a much smaller corner of the
# file were drawn on a smaller copy.
MIN_VOTE_COVERAGE = 0.75
_EDGE_TOLERANCE_PX = 1.0

MOS_NOT_ANNOTATED = -2.0


def data_root(name: str, shared: "str | Path | None" = None) -> Path:
    """``<shared>/data/<name>``; a FileNotFoundError that says how to point at ../shared when absent."""
    base = shared_dir(shared)
    if base is None:
        raise FileNotFoundError("../shared not found: pass its path or set S2CCROP_SHARED")
    root = base / "data" / name
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist")
    return root


# ------------------------------------------------------------------------------------------------- FCDB

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Vote:
    """One pairwise human comparison, boxes in file pixels (x1, y1, x2, y2), x2/y2 exclusive."""

    box0: Box
    box1: Box
    votes0: int
    votes1: int


@dataclass(frozen=True)
class FCDBRecord:
    """One FCDB photo: its file, size, the human best crop (file pixels, x2/y2 exclusive) and votes."""

    file: str
    path: Path
    width: int
    height: int
    crop: Box
    votes: tuple[Vote, ...] = ()

    @property
    def photo_id(self) -> str:
        """Flickr photo id (the file name before the first '_'): all size variants share it."""
        return self.file.split("_", 1)[0]


@dataclass
class FCDBReport:
    """What ``load_fcdb`` had to correct or drop, photo by photo."""

    photos: int = 0
    votes_total: int = 0
    votes_kept: int = 0
    photos_votes_in_file_pixels: int = 0
    photos_votes_rescaled: list[tuple[str, float, float]] = field(default_factory=list)  # file, sx, sy
    photos_votes_dropped: list[str] = field(default_factory=list)  # frame not determinable
    votes_dropped_invalid: int = 0  # degenerate or outside the photo after rescaling
    crops_rescaled: list[str] = field(default_factory=list)
    photos_without_votes: list[str] = field(default_factory=list)
    photos_dropped_bad_crop: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.photos} photos; votes: {self.votes_total} read, {self.votes_kept} kept; "
            f"vote frame: {self.photos_votes_in_file_pixels} photos in file pixels, "
            f"{len(self.photos_votes_rescaled)} rescaled, {len(self.photos_votes_dropped)} undeterminable "
            f"(votes dropped); {self.votes_dropped_invalid} invalid votes dropped; "
            f"{len(self.crops_rescaled)} human crops rescaled; "
            f"{len(self.photos_dropped_bad_crop)} photos dropped for an invalid human crop"
        )


def _read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def flickr_frame(width: int, height: int, suffix: str) -> tuple[int, int] | None:
    """Size of the Flickr copy named by ``suffix`` of a ``width`` x ``height`` photo, or None if unknown.

    Flickr scales so the long side equals the suffix's size and rounds the short side.
    """
    long_side = FLICKR_LONG_SIDE.get(suffix)
    if long_side is None:
        return None
    if width >= height:
        return long_side, max(1, round(height * long_side / width))
    return max(1, round(width * long_side / height)), long_side


def _frame_fits(boxes_xywh: np.ndarray, frame_w: float, frame_h: float, min_coverage: float) -> bool:
    x, y, w, h = boxes_xywh.T
    if np.any(x < 0) or np.any(y < 0) or np.any(w <= 0) or np.any(h <= 0):
        return False
    right, bottom = float(np.max(x + w)), float(np.max(y + h))
    if right > frame_w + _EDGE_TOLERANCE_PX or bottom > frame_h + _EDGE_TOLERANCE_PX:
        return False
    return right >= min_coverage * frame_w and bottom >= min_coverage * frame_h


def detect_vote_scale(
    boxes_xywh: Sequence[Sequence[float]],
    width: int,
    height: int,
    suffix: str,
    min_coverage: float = MIN_VOTE_COVERAGE,
) -> tuple[float, float] | None:
    """Scale (sx, sy) that maps one photo's vote boxes into file pixels, or None when undeterminable.

    Tries the file's own pixels first (what the data claims), then the Flickr size named by ``suffix``.
    A frame fits when every box lies inside it and the boxes' union reaches ``min_coverage`` of both sides
    (see MIN_VOTE_COVERAGE for why that tells frames apart).
    """
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return None
    if _frame_fits(boxes, width, height, min_coverage):
        return 1.0, 1.0
    frame = flickr_frame(width, height, suffix)
    if frame is not None and frame != (width, height) and _frame_fits(boxes, *frame, min_coverage):
        return width / frame[0], height / frame[1]
    return None


def scale_box_xywh(box: Sequence[float], sx: float, sy: float) -> Box:
    """[x, y, w, h] in a scaled frame -> (x1, y1, x2, y2) in file pixels, rounded to whole pixels."""
    x, y, w, h = box
    return (round(x * sx), round(y * sy), round((x + w) * sx), round((y + h) * sy))


def scale_box_xyxy(box: Sequence[float], sx: float, sy: float) -> Box:
    """(x1, y1, x2, y2) in a scaled frame -> file pixels, rounded to whole pixels."""
    x1, y1, x2, y2 = box
    return (round(x1 * sx), round(y1 * sy), round(x2 * sx), round(y2 * sy))


def _box_ok(box: Box, width: int, height: int) -> bool:
    x1, y1, x2, y2 = box
    return 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height


def _clamp(box: Box, width: int, height: int) -> Box:
    """Clip by at most the edge tolerance that ``_frame_fits`` allowed (rounding at the border)."""
    x1, y1, x2, y2 = box
    return (max(0, x1), max(0, y1), min(width, x2), min(height, y2))


def votes_in_file_pixels(
    ranking: dict, width: int, height: int, report: FCDBReport
) -> tuple[tuple[Vote, ...], tuple[float, float] | None]:
    """One photo's votes rescaled into file pixels, and the scale used (None: frame undeterminable).

    Updates ``report`` with what was rescaled or dropped.
    """
    pairs = ranking.get("crops", [])
    report.votes_total += len(pairs)
    boxes = [p[k] for p in pairs for k in ("crop_0", "crop_1")]
    scale = detect_vote_scale(boxes, width, height, ranking.get("ranking_image_url_suffix", ""))
    if scale is None:
        if pairs:
            report.photos_votes_dropped.append(ranking["file"])
        return (), None
    if scale == (1.0, 1.0):
        report.photos_votes_in_file_pixels += 1
    else:
        report.photos_votes_rescaled.append((ranking["file"], scale[0], scale[1]))
    votes = []
    for p in pairs:
        b0 = _clamp(scale_box_xywh(p["crop_0"], *scale), width, height)
        b1 = _clamp(scale_box_xywh(p["crop_1"], *scale), width, height)
        v0, v1 = int(p["vote_for_0"]), int(p["vote_for_1"])
        if not (_box_ok(b0, width, height) and _box_ok(b1, width, height)) or v0 < 0 or v1 < 0 or v0 + v1 == 0:
            report.votes_dropped_invalid += 1
            continue
        votes.append(Vote(b0, b1, v0, v1))
    report.votes_kept += len(votes)
    return tuple(votes), scale


def _human_crop(entry: dict, scale: tuple[float, float] | None, report: FCDBReport) -> Box:
    """The human crop in file pixels.

    When a photo's votes turned out to be drawn on a smaller Flickr copy, its human crop was annotated on
    that copy too (checked by eye on the one such photo, 9646966948_39441cfd6f_c.jpg: unscaled, the box
    covers an empty night sky corner; scaled, it frames the pizza stand), so it gets the same scale when it
    fits inside that copy.
    """
    crop = tuple(int(v) for v in entry["crop_xyxy"])
    if scale is None or scale == (1.0, 1.0):
        return crop  # type: ignore[return-value]
    sx, sy = scale
    frame_w, frame_h = entry["width"] / sx, entry["height"] / sy
    if crop[2] <= frame_w + _EDGE_TOLERANCE_PX and crop[3] <= frame_h + _EDGE_TOLERANCE_PX:
        report.crops_rescaled.append(entry["file"])
        return _clamp(scale_box_xyxy(crop, sx, sy), entry["width"], entry["height"])
    return crop  # type: ignore[return-value]


def load_fcdb(root: "str | Path") -> tuple[list[FCDBRecord], FCDBReport]:
    """Read an FCDB folder (``crops.json``, ``pairwise_rankings.json``, ``images/``) into records.

    Coordinates are all converted to file pixels (see module doc). Photos whose human crop is not a valid
    box inside the photo are dropped and listed in the report. Records keep the order of ``crops.json``.
    """
    root = Path(root)
    crops = _read_json(root / "crops.json")
    rankings_path = root / "pairwise_rankings.json"
    rankings = {r["file"]: r for r in _read_json(rankings_path)} if rankings_path.exists() else {}
    report = FCDBReport()
    records = []
    for entry in crops:
        width, height = int(entry["width"]), int(entry["height"])
        ranking = rankings.get(entry["file"])
        if ranking is None:
            report.photos_without_votes.append(entry["file"])
            votes, scale = (), None
        else:
            votes, scale = votes_in_file_pixels(ranking, width, height, report)
        crop = _human_crop(entry, scale, report)
        if not _box_ok(crop, width, height):
            report.photos_dropped_bad_crop.append(entry["file"])
            report.votes_kept -= len(votes)  # they leave with their photo
            continue
        records.append(FCDBRecord(entry["file"], root / "images" / entry["file"], width, height, crop, votes))
    report.photos = len(records)
    return records, report


@dataclass
class ImageCheck:
    """Differences between what the annotation says about each file and the file itself."""

    checked: int = 0
    missing: list[str] = field(default_factory=list)
    size_mismatches: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    exif_rotated: list[tuple[str, int]] = field(default_factory=list)  # file, EXIF orientation != 1


def exif_orientation(image) -> int:
    """EXIF orientation tag of an opened PIL image (1 = upright, also when the tag is absent)."""
    return int(image.getexif().get(0x0112, 1) or 1)


def check_fcdb_images(records: Iterable[FCDBRecord]) -> ImageCheck:
    """Open each file's header: does its size match the annotation, is it EXIF-rotated, does it exist?"""
    from PIL import Image

    check = ImageCheck()
    for r in records:
        check.checked += 1
        if not r.path.exists():
            check.missing.append(r.file)
            continue
        with Image.open(r.path) as im:
            if im.size != (r.width, r.height):
                check.size_mismatches.append((r.file, (r.width, r.height), im.size))
            orientation = exif_orientation(im)
            if orientation != 1:
                check.exif_rotated.append((r.file, orientation))
    return check


def _unit_hash(text: str) -> float:
    """A number in [0, 1) from sha256: identical on every machine and Python run (unlike hash())."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_fcdb(
    records: Sequence[T],
    val_fraction: float = 0.15,
    seed: int = 2024,
    key: Callable[[T], str] = lambda r: r.photo_id,  # type: ignore[attr-defined]
) -> tuple[list[T], list[T]]:
    """Deterministic (train, val) split by photo.

    Each photo goes to validation when sha256(f"{seed}:{photo_id}") falls below ``val_fraction``: the
    choice depends only on the photo itself, so it is the same on every machine, in any input order, and
    adding or removing photos never moves the others. The validation share is therefore ~15 %, not exact.
    Size variants of one Flickr photo share a key and so always land on the same side.
    """
    if not 0.0 <= val_fraction <= 1.0 or math.isnan(val_fraction):
        raise ValueError(f"val_fraction must lie in [0, 1], got {val_fraction}")
    train, val = [], []
    for r in records:
        (val if _unit_hash(f"{seed}:{key(r)}") < val_fraction else train).append(r)
    return train, val



def fold_of(key: str, folds: int, seed: int = 2024) -> int:
    """The cross-validation fold (0 .. folds-1) of one photo, from sha256 of its key: like the validation
    split, it depends only on the photo, so every machine and every recipe sees the same folds."""
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    return min(int(_unit_hash(f"{seed}:fold:{key}") * folds), folds - 1)


def cv_split(
    records: Sequence[T],
    folds: int,
    fold: int,
    seed: int = 2024,
    key: Callable[[T], str] = lambda r: r.photo_id,  # type: ignore[attr-defined]
) -> tuple[list[T], list[T]]:
    """(train, test) of fold ``fold`` of ``folds``: test holds the records whose ``fold_of`` is ``fold``.

    Meant for the training part of ``split_fcdb``, so that the fixed validation split stays out of
    every fold. Size variants of one Flickr photo share a key and so share a fold.
    """
    if not 0 <= fold < folds:
        raise ValueError(f"fold must lie in [0, {folds}), got {fold}")
    train, test = [], []
    for r in records:
        (test if fold_of(key(r), folds, seed) == fold else train).append(r)
    return train, test


# ------------------------------------------------------------------------------------------------ GAICD


@dataclass(frozen=True)
class GAICDRecord:
    """One GAICD image: annotated candidate boxes (x1, y1, x2, y2 float [N, 4]) and their MOS [N].

    ``image_path`` / ``gene_boxes`` are None where ../shared has no image / reference detector boxes.
    """

    image_id: str
    split: str
    boxes: np.ndarray
    mos: np.ndarray
    image_path: Path | None = None
    gene_boxes: np.ndarray | None = None


def _yxyx_to_xyxy(rows: np.ndarray) -> np.ndarray:
    return rows[:, [1, 0, 3, 2]].astype(np.float64)


def _read_rows(path: Path, columns: int) -> np.ndarray:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != columns:
                raise ValueError(f"{path}:{lineno}: expected {columns} numbers, got {line.strip()!r}")
            rows.append([float(p) for p in parts])
    return np.asarray(rows, dtype=np.float64).reshape(-1, columns)


def read_gaicd_annotation(path: "str | Path") -> tuple[np.ndarray, np.ndarray]:
    """``y1 x1 y2 x2 MOS`` lines -> (boxes x1, y1, x2, y2 [N, 4], MOS [N]), MOS = -2 rows skipped."""
    rows = _read_rows(Path(path), 5)
    rows = rows[rows[:, 4] != MOS_NOT_ANNOTATED]
    return _yxyx_to_xyxy(rows[:, :4]), rows[:, 4].copy()


def read_detector_boxes(path: "str | Path") -> np.ndarray:
    """Reference detector boxes, ``y1 x1 y2 x2`` lines -> x1, y1, x2, y2 [D, 4]."""
    return _yxyx_to_xyxy(_read_rows(Path(path), 4))


def read_split_list(path: "str | Path") -> list[str]:
    """Image ids (file names without extension) listed one per line in train.txt / test.txt."""
    with open(path, encoding="utf-8") as f:
        return [Path(line.strip()).stem for line in f if line.strip()]


def load_gaicd_v1(root: "str | Path", split: str | None = None, with_images_only: bool = False) -> list[GAICDRecord]:
    """GAICD v1 records in list order (train first, then test), optionally one split / only those with images.

    ``split`` is "train", "test" or None (both).
    """
    root = Path(root)
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    records = []
    for name in ("train", "test"):
        if split not in (None, name):
            continue
        for image_id in read_split_list(root / f"{name}.txt"):
            image = root / "images" / f"{image_id}.jpg"
            if with_images_only and not image.exists():
                continue
            genes_path = root / "official-detector-boxes" / f"{image_id}.txt"
            boxes, mos = read_gaicd_annotation(root / "annotations" / f"{image_id}.txt")
            records.append(
                GAICDRecord(
                    image_id=image_id,
                    split=name,
                    boxes=boxes,
                    mos=mos,
                    image_path=image if image.exists() else None,
                    gene_boxes=read_detector_boxes(genes_path) if genes_path.exists() else None,
                )
            )
    return records

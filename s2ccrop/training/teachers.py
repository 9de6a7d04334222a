"""Training-time teacher labels ("visual genes" pseudo-boxes) for the FCDB photos.

Two frozen off-the-shelf teachers label each photo; their boxes are training targets only and never ship
with the cropper:

* salient objects: U²-Net-p (``u2netp.onnx``, run with onnxruntime), rembg-style preprocessing; the
  mask is resized to the photo, thresholded at 0.5 and split into 8-connected components, each boxed.
* faces: MTCNN (``pnet.pt``, ``rnet.pt``, ``onet.pt``: facenet-pytorch 2.6.0 state dicts), the standard
  three-stage cascade (pyramid factor 0.709, min face 20 px, thresholds 0.6 / 0.7 / 0.7), faces kept at
  probability >= 0.9.

The weights are read from the teachers folder (default ``<shared>/weights/teachers``, see
``s2ccrop._shared``) and never copied into the project. Boxes are ``(x1, y1, x2, y2, score)`` float rows in
pixels of the array given (x2/y2 exclusive for object boxes, MTCNN's own continuous box for faces).

    python -m s2ccrop.training.teachers --data ../shared/data/fcdb-train \\
        --teachers ../shared/weights/teachers --out runs/teachers/fcdb.json

writes ``{"version": 1, "teachers": {...}, "photos": {file: {"size": [W, H], "objects": [...],
"faces": [...]}}}`` with coordinates in file pixels rounded to 0.1. The file is replaced atomically and
rewritten every 100 photos, so an interrupted run resumes where it stopped (photos already labelled by
the same teacher weights are skipped).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import envvars
from .._shared import shared_dir

FORMAT_VERSION = 1
U2NET_FILE = "u2netp.onnx"
MTCNN_FILES = ("pnet.pt", "rnet.pt", "onet.pt")
U2NET_SIZE = 320
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

MASK_THRESHOLD = 0.5
MIN_OBJECT_FRACTION = 0.005  # components smaller than 0.5 % of the photo are dropped
MAX_BOXES = 8

MIN_FACE_PX = 20
PYRAMID_FACTOR = 0.709
STAGE_THRESHOLDS = (0.6, 0.7, 0.7)
MIN_FACE_PROB = 0.9
FACE_MAX_SIDE = 640  # Teachers run MTCNN on a copy whose long side is at most this (boxes scaled back)

PROGRESS_EVERY = 100


def teachers_root(shared: "str | os.PathLike[str] | None" = None) -> Path:
    """``<shared>/weights/teachers`` (same lookup as ``datasets.data_root``); FileNotFoundError when absent."""
    base = shared_dir(shared)
    if base is None:
        raise FileNotFoundError("../shared not found: pass its path or set S2CCROP_SHARED")
    root = base / "weights" / "teachers"
    if not root.is_dir():
        raise FileNotFoundError(f"{root} does not exist")
    return root


# ------------------------------------------------------------------------------------- salient objects


def mask_to_boxes(
    mask: np.ndarray,
    threshold: float = MASK_THRESHOLD,
    min_fraction: float = MIN_OBJECT_FRACTION,
    max_boxes: int = MAX_BOXES,
) -> np.ndarray:
    """Boxes of the connected components of ``mask > threshold`` (8-connectivity), as ``[k, 5]`` float64.

    ``mask`` is ``[H, W]`` in [0, 1]. Each row is ``(x1, y1, x2, y2, score)`` in mask pixels with x2/y2
    exclusive (a single pixel at (x, y) gives ``(x, y, x + 1, y + 1)``). Components covering less than
    ``min_fraction`` of the mask are dropped. ``score = mean(mask inside the component) *
    sqrt(component area / mask area)``: confident and large objects first, yet a small sharp object can
    outrank a big faint one. At most ``max_boxes`` rows, sorted by score descending (ties: top-left first).
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=np.float64)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    labels, n = ndimage.label(mask > threshold, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return np.zeros((0, 5))
    total = float(mask.size)
    index = np.arange(1, n + 1)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    means = np.asarray(ndimage.mean(mask, labels, index), dtype=np.float64)
    rows = []
    for i, sl in enumerate(ndimage.find_objects(labels)):
        if sl is None or areas[i] < min_fraction * total:
            continue
        ys, xs = sl
        score = means[i] * np.sqrt(areas[i] / total)
        rows.append((xs.start, ys.start, xs.stop, ys.stop, score))
    if not rows:
        return np.zeros((0, 5))
    boxes = np.array(rows, dtype=np.float64)
    order = np.lexsort((boxes[:, 0], boxes[:, 1], -boxes[:, 4]))
    return boxes[order][:max_boxes]


def open_u2net(path: "str | os.PathLike[str]", threads: int = 1):
    """An onnxruntime CPU session for ``u2netp.onnx`` with ``threads`` intra-op threads."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "the salient-object teacher needs onnxruntime: pip install onnxruntime") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def saliency_mask(rgb: np.ndarray, session) -> np.ndarray:
    """U²-Net-p saliency of ``rgb`` (``[H, W, 3]`` uint8) as a ``[H, W]`` float32 mask in [0, 1]."""
    from PIL import Image

    _check_rgb(rgb)
    h, w = rgb.shape[:2]
    small = np.asarray(Image.fromarray(rgb).resize((U2NET_SIZE, U2NET_SIZE), Image.LANCZOS), dtype=np.float32)
    small = small / max(float(small.max()), 1e-6)
    x = ((small - _MEAN) / _STD).transpose(2, 0, 1)[None].astype(np.float32)
    d1 = session.run(None, {session.get_inputs()[0].name: x})[0][0, 0]
    lo, hi = float(d1.min()), float(d1.max())
    d1 = (d1 - lo) / (hi - lo) if hi > lo else np.zeros_like(d1)
    full = Image.fromarray(d1.astype(np.float32), mode="F").resize((w, h), Image.BILINEAR)
    return np.clip(np.asarray(full, dtype=np.float32), 0.0, 1.0)


def salient_objects(rgb: np.ndarray, session) -> np.ndarray:
    """Salient-object boxes ``[k, 5]`` (x1, y1, x2, y2, score) in pixels of ``rgb``; see ``mask_to_boxes``."""
    return mask_to_boxes(saliency_mask(rgb, session))


# ------------------------------------------------------------------------------------------------ MTCNN


class PNet(nn.Module):
    """MTCNN proposal net (fully convolutional, 12 x 12 receptive field, stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    """MTCNN refinement net on 24 x 24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        # the dense weights were converted from Caffe: they expect the feature map flattened as (W, H, C)
        x = self.prelu4(self.dense4(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """MTCNN output net on 48 x 48 crops (box regression, probability, 5 landmarks)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)))
        return self.dense6_2(x), F.softmax(self.dense6_1(x), dim=1), self.dense6_3(x)


@dataclass(frozen=True)
class MTCNNNets:
    """The three MTCNN stages, in eval mode on the CPU."""

    pnet: PNet
    rnet: RNet
    onet: ONet

    @classmethod
    def load(cls, folder: "str | os.PathLike[str]") -> "MTCNNNets":
        """Load ``pnet.pt``, ``rnet.pt``, ``onet.pt`` (facenet-pytorch state dicts) strictly from ``folder``."""
        nets = []
        for net, name in zip((PNet(), RNet(), ONet()), MTCNN_FILES):
            state = torch.load(Path(folder) / name, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
            nets.append(net.eval().requires_grad_(False))
        return cls(*nets)


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy NMS on ``[n, 4]`` boxes (MTCNN's +1 pixel areas); ``mode`` "union" (IoU) or "min"."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = iw * ih
        denom = np.minimum(area[i], area[rest]) if mode == "min" else area[i] + area[rest] - inter
        order = rest[inter / denom <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box (columns 0-3) into a square around its centre."""
    out = boxes.copy()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + (w - side) / 2
    out[:, 1] = boxes[:, 1] + (h - side) / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray, plus_one: bool) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + (1 if plus_one else 0)
    h = boxes[:, 3] - boxes[:, 1] + (1 if plus_one else 0)
    out[:, :4] = boxes[:, :4] + reg * np.stack([w, h, w, h], axis=1)
    return out


def _crops(img: torch.Tensor, boxes: np.ndarray, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """``size`` x ``size`` crops of the (1, 3, H, W) float image under ``boxes`` (1-based pixel convention
    of MTCNN, clipped to the image), normalised; also the indices of the boxes that gave a crop."""
    h, w = img.shape[2:]
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    x, y = np.maximum(b[:, 0], 1), np.maximum(b[:, 1], 1)
    ex, ey = np.minimum(b[:, 2], w), np.minimum(b[:, 3], h)
    patches, kept = [], []
    for k in range(len(b)):
        if ey[k] > y[k] - 1 and ex[k] > x[k] - 1:
            patch = img[:, :, y[k] - 1:ey[k], x[k] - 1:ex[k]]
            patches.append(F.interpolate(patch, size=(size, size), mode="area"))
            kept.append(k)
    if not patches:
        return torch.zeros(0, 3, size, size), np.zeros(0, dtype=np.int64)
    return (torch.cat(patches) - 127.5) * 0.0078125, np.asarray(kept, dtype=np.int64)


@torch.inference_mode()
def _mtcnn(rgb: np.ndarray, nets: MTCNNNets) -> np.ndarray:
    """The MTCNN cascade on ``rgb``: ``[k, 5]`` (x1, y1, x2, y2, prob) after ONet, unclipped, unsorted."""
    img = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float()
    h, w = rgb.shape[:2]
    # stage 1: PNet over an image pyramid
    scale = 12.0 / MIN_FACE_PX
    min_side = min(h, w) * scale
    found = []
    while min_side >= 12:
        size = (int(h * scale + 1), int(w * scale + 1))
        reg, prob = nets.pnet((F.interpolate(img, size=size, mode="area") - 127.5) * 0.0078125)
        prob, reg = prob[0, 1].numpy(), reg[0].numpy()
        ys, xs = np.nonzero(prob >= STAGE_THRESHOLDS[0])
        if len(ys):
            cells = np.stack([xs, ys], axis=1).astype(np.float64)
            q1 = np.floor((2 * cells + 1) / scale)
            q2 = np.floor((2 * cells + 12) / scale)
            b = np.concatenate([q1, q2, prob[ys, xs][:, None], reg[:, ys, xs].T], axis=1)
            found.append(b[_nms(b[:, :4], b[:, 4], 0.5)])
        scale *= PYRAMID_FACTOR
        min_side *= PYRAMID_FACTOR
    if not found:
        return np.zeros((0, 5))
    boxes = np.concatenate(found)
    boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7)]
    boxes = _square(_regress(boxes[:, :5], boxes[:, 5:9], plus_one=False))
    # stage 2: RNet on 24 x 24 crops
    crops, kept = _crops(img, boxes, 24)
    if not len(kept):
        return np.zeros((0, 5))
    reg, prob = nets.rnet(crops)
    boxes, reg, prob = boxes[kept], reg.numpy(), prob[:, 1].numpy()
    ok = prob > STAGE_THRESHOLDS[1]
    boxes = np.concatenate([boxes[ok, :4], prob[ok, None]], axis=1)
    reg = reg[ok]
    keep = _nms(boxes[:, :4], boxes[:, 4], 0.7)
    boxes = _square(_regress(boxes[keep], reg[keep], plus_one=True))
    # stage 3: ONet on 48 x 48 crops
    crops, kept = _crops(img, boxes, 48)
    if not len(kept):
        return np.zeros((0, 5))
    reg, prob, _ = nets.onet(crops)
    boxes, reg, prob = boxes[kept], reg.numpy(), prob[:, 1].numpy()
    ok = prob > STAGE_THRESHOLDS[2]
    boxes = np.concatenate([boxes[ok, :4], prob[ok, None]], axis=1)
    boxes = _regress(boxes, reg[ok], plus_one=True)
    return boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7, mode="min")]


def detect_faces(
    rgb: np.ndarray, nets: MTCNNNets, max_side: int | None = None, min_prob: float = MIN_FACE_PROB,
) -> np.ndarray:
    """Face boxes ``[k, 5]`` (x1, y1, x2, y2, prob) in pixels of ``rgb`` (``[H, W, 3]`` uint8 RGB).

    Only faces with ``prob >= min_prob``, clipped to the image, sorted by probability descending, at most
    8. With ``max_side``, MTCNN runs on a copy whose long side is at most that (faster; the 20 px minimum
    face size then applies to the copy) and the boxes are scaled back.
    """
    from PIL import Image

    _check_rgb(rgb)
    h, w = rgb.shape[:2]
    f = 1.0
    if max_side is not None and max(h, w) > max_side:
        f = max_side / max(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        small = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR), dtype=np.uint8)
        fx, fy = w / small.shape[1], h / small.shape[0]
    else:
        small, fx, fy = rgb, 1.0, 1.0
    boxes = _mtcnn(small, nets)
    boxes = boxes[boxes[:, 4] >= min_prob]
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]] * fx, 0, w)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]] * fy, 0, h)
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    return boxes[np.argsort(-boxes[:, 4], kind="stable")][:MAX_BOXES].astype(np.float64)


def _check_rgb(rgb: np.ndarray) -> None:
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3):
        raise ValueError("expected an [H, W, 3] uint8 RGB array")


# ------------------------------------------------------------------------------------------------ both


class Teachers:
    """Both teachers, loaded from ``folder`` (default ``<shared>/weights/teachers``)."""

    def __init__(
        self, folder: "str | os.PathLike[str] | None" = None, threads: int = 1,
        face_max_side: int | None = FACE_MAX_SIDE,
    ) -> None:
        self.folder = Path(folder) if folder is not None else teachers_root()
        missing = [n for n in (U2NET_FILE, *MTCNN_FILES) if not (self.folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.folder} lacks teacher weights: {', '.join(missing)}")
        self.session = open_u2net(self.folder / U2NET_FILE, threads=threads)
        self.nets = MTCNNNets.load(self.folder)
        self.face_max_side = face_max_side

    def label(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """``{"objects": [k, 5], "faces": [m, 5]}`` in pixels of ``rgb``."""
        return {"objects": salient_objects(rgb, self.session),
                "faces": detect_faces(rgb, self.nets, max_side=self.face_max_side)}

    def describe(self) -> dict[str, Any]:
        """The ``teachers`` entry of the labels file: names and the sha256 of every weight file."""
        return {"objects": U2NET_FILE, "faces": "mtcnn",
                "sha256": {n: _sha256(self.folder / n) for n in (U2NET_FILE, *MTCNN_FILES)}}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------- FCDB


def write_json_atomic(path: "str | os.PathLike[str]", payload: Any) -> None:
    """Write ``payload`` as JSON to ``path`` through a temporary file and ``os.replace``: readers see the
    old file or the complete new one, never a partial write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(payload, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _rows(boxes: np.ndarray, sx: float, sy: float) -> list[list[float]]:
    scaled = np.asarray(boxes, dtype=np.float64).reshape(-1, 5) * [sx, sy, sx, sy, 1.0]
    return [[round(float(v), 1) for v in row[:4]] + [round(float(row[4]), 4)] for row in scaled]


def _decode(path: Path) -> np.ndarray:
    """The photo as ``cache_photo`` (training/samples.py) reads it (PIL, no EXIF transpose, RGB), at full size."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def label_fcdb(
    data_root: "str | os.PathLike[str]",
    teachers_dir: "str | os.PathLike[str] | None",
    out_path: "str | os.PathLike[str]",
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Label every photo of ``load_fcdb(data_root)`` (the first ``limit`` ones) and write ``out_path``.

    Coordinates are in file pixels (``record.width`` x ``record.height``), rounded to 0.1; scores to 1e-4.
    An existing ``out_path`` written with the same teacher weights is resumed: its photos are kept and
    skipped. Returns the written payload.
    """
    from .datasets import load_fcdb

    start = time.perf_counter()
    teachers = Teachers(teachers_dir)
    records, _ = load_fcdb(data_root)
    if limit is not None:
        records = records[:limit]
    header = {"version": FORMAT_VERSION, "teachers": teachers.describe()}
    photos: dict[str, Any] = {}
    out_path = Path(out_path)
    if out_path.exists():
        try:
            old = json.loads(out_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old.get("version") == FORMAT_VERSION and old.get("teachers") == header["teachers"]:
            photos = dict(old.get("photos", {}))
            log(f"resuming {out_path}: {len(photos)} photos already labelled")
    wanted = {r.file for r in records}
    photos = {k: v for k, v in photos.items() if k in wanted}
    todo = [r for r in records if r.file not in photos]
    for i, record in enumerate(todo, 1):
        rgb = _decode(record.path)
        labels = teachers.label(rgb)
        sx, sy = record.width / rgb.shape[1], record.height / rgb.shape[0]
        photos[record.file] = {"size": [record.width, record.height],
                               "objects": _rows(labels["objects"], sx, sy),
                               "faces": _rows(labels["faces"], sx, sy)}
        if i % PROGRESS_EVERY == 0:
            write_json_atomic(out_path, {**header, "photos": _ordered(photos, records)})
            log(f"{i}/{len(todo)} photos labelled ({time.perf_counter() - start:.0f} s)")
    payload = {**header, "photos": _ordered(photos, records)}
    write_json_atomic(out_path, payload)
    n = len(payload["photos"])
    n_objects = sum(len(p["objects"]) for p in payload["photos"].values())
    n_faces = sum(bool(p["faces"]) for p in payload["photos"].values())
    log(f"wrote {out_path}: {n} photos, {n_objects / max(n, 1):.2f} objects/photo, "
        f"{n_faces} photos with faces ({100 * n_faces / max(n, 1):.1f} %), "
        f"{time.perf_counter() - start:.0f} s")
    return payload


def _ordered(photos: dict[str, Any], records: Sequence[Any]) -> dict[str, Any]:
    return {r.file: photos[r.file] for r in records if r.file in photos}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m s2ccrop.training.teachers",
        description="Label the FCDB photos with the salient-object (U²-Net-p) and face (MTCNN) teachers.")
    parser.add_argument("--data", required=True, help="FCDB folder (crops.json, images/)")
    parser.add_argument("--teachers", default=None,
                        help="folder with u2netp.onnx and pnet/rnet/onet.pt (default <shared>/weights/teachers)")
    parser.add_argument("--out", required=True, help="labels JSON to write")
    parser.add_argument("--limit", type=int, default=None, help="label only the first N photos")
    args = parser.parse_args(argv)
    torch.set_num_threads(envvars.threads() or 1)
    label_fcdb(args.data, args.teachers, args.out, limit=args.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())

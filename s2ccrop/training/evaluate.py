"""Benchmark loops, decoupled from any model through plain callables.

* ``evaluate_fcdb(records, crop_fn, mode)`` with ``crop_fn(pil_image, ratio_str) -> (x1, y1, x2, y2)``
  in original pixels; mode "any" asks for a free-form crop, mode "ratio" for a crop of the human crop's
  own W:H (reduced, e.g. "4:3").
* ``evaluate_gaicd(records, score_fn)`` with ``score_fn(pil_image, crop_boxes [N, 4], gene_boxes [D, 4] |
  None) -> scores [N]``, boxes x1, y1, x2, y2 in original pixels.

Images are handed over in the frame the annotations use. For FCDB that is the stored pixel grid:
``crops.json``'s width/height equal the stored (not EXIF-rotated) size of all 1,335 files, and none of
them carries an EXIF orientation other than 1, so stored and upright pixels coincide. To keep it that way
for any file, ``open_annotation_frame`` drops the metadata, so a crop_fn that applies EXIF transposition
(as the public API does) cannot move the image out of the annotation's frame.

Results are JSON-able dicts; ``format_table`` turns a list of them into a markdown table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..genes import box_rows
from . import metrics
from .datasets import FCDBRecord, GAICDRecord

CropFn = Callable[[object, str], Sequence[float]]
ScoreFn = Callable[[object, np.ndarray, "np.ndarray | None"], Sequence[float]]
FCDB_MODES = ("any", "ratio")


def open_annotation_frame(path: "str | Path"):
    """RGB PIL image of the stored pixels, without metadata (so no EXIF orientation can be re-applied)."""
    from PIL import Image

    with Image.open(path) as im:
        return Image.fromarray(np.asarray(im.convert("RGB")))


def ratio_string(width: int, height: int) -> str:
    """"W:H" of a box reduced to lowest terms: a 1200x900 box gives "4:3"."""
    if width <= 0 or height <= 0:
        raise ValueError(f"box size must be positive, got {width}x{height}")
    f = Fraction(int(width), int(height))
    return f"{f.numerator}:{f.denominator}"


def _ratio_for(record: FCDBRecord, mode: str) -> str:
    if mode == "any":
        return "any"
    x1, y1, x2, y2 = record.crop
    return ratio_string(x2 - x1, y2 - y1)


def _checked_box(box: Sequence[float], record: FCDBRecord) -> tuple[float, float, float, float]:
    values = tuple(float(v) for v in box)
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{record.file}: crop_fn must return 4 finite numbers, got {box!r}")
    x1, y1, x2, y2 = values
    if not (0 <= x1 < x2 <= record.width and 0 <= y1 < y2 <= record.height):
        raise ValueError(f"{record.file}: crop {values} is not a box inside the {record.width}x{record.height} image")
    return values  # type: ignore[return-value]


def evaluate_fcdb(
    records: Iterable[FCDBRecord],
    crop_fn: CropFn,
    mode: str,
    name: str = "model",
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Mean IoU / BDE of ``crop_fn`` against the human crops (SPEC §4), with one row per photo.

    Returns ``{"benchmark": "fcdb", "name", "mode", "count", "iou", "bde", "rows": [...]}``; each row has
    ``file, ratio, pred, gt, size, iou, bde``. A crop_fn answer that is not a box inside the image is an error,
    not a zero: a bug in the model code should not look like a bad score.
    """
    if mode not in FCDB_MODES:
        raise ValueError(f"mode must be one of {FCDB_MODES}, got {mode!r}")
    rows = []
    for i, record in enumerate(records):
        ratio = _ratio_for(record, mode)
        image = open_annotation_frame(record.path)
        if image.size != (record.width, record.height):
            raise ValueError(f"{record.file}: file is {image.size}, annotation says {(record.width, record.height)}")
        answer = crop_fn(image, ratio, record) if getattr(crop_fn, "wants_record", False) else crop_fn(image, ratio)
        pred = _checked_box(answer, record)
        rows.append(
            {
                "file": record.file,
                "ratio": ratio,
                "pred": list(pred),
                "gt": list(record.crop),
                "size": [record.width, record.height],
                "iou": metrics.iou(pred, record.crop),
                "bde": metrics.bde(pred, record.crop, record.width, record.height),
            }
        )
        if progress is not None:
            progress(i + 1)
    agg = metrics.aggregate_boxes([r["iou"] for r in rows], [r["bde"] for r in rows])
    return {"benchmark": "fcdb", "name": name, "mode": mode, **agg, "rows": rows}


# Bins of how much of the photo the human crop keeps (area share), as the quality issue tabulates them.
SIZE_BINS = ((0.0, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0 + 1e-9))


def _area_share(box: Sequence[float], size: Sequence[int]) -> float:
    return (box[2] - box[0]) * (box[3] - box[1]) / float(size[0] * size[1])


def by_size(result: dict) -> list[dict]:
    """An FCDB result's photos grouped by the human crop's share of the photo: per bin the count, the
    mean share the human crop and the chosen crop keep, and the mean IoU / BDE. Shows whether a method's
    crop size follows the photo or sits at one size whatever the photo asks for."""
    rows = result["rows"]
    out = []
    for lo, hi in SIZE_BINS:
        sel = [r for r in rows if lo <= _area_share(r["gt"], r["size"]) < hi]
        n = len(sel)
        out.append({
            "bin": (lo, min(hi, 1.0)), "count": n,
            "human_keeps": float(np.mean([_area_share(r["gt"], r["size"]) for r in sel])) if n else float("nan"),
            "model_keeps": float(np.mean([_area_share(r["pred"], r["size"]) for r in sel])) if n else float("nan"),
            "iou": float(np.mean([r["iou"] for r in sel])) if n else float("nan"),
            "bde": float(np.mean([r["bde"] for r in sel])) if n else float("nan"),
        })
    return out


def cross_validated(per_fold: Sequence[dict]) -> dict:
    """One FCDB result from the same method and mode on each fold: every photo's row once, the mean over
    all photos, and per fold its mean, so that a difference can be held against the spread across folds
    (``iou_sd`` / ``bde_sd``: standard deviation of the fold means)."""
    if not per_fold:
        raise ValueError("no folds to combine")
    names = {(r["name"], r["mode"]) for r in per_fold}
    if len(names) != 1:
        raise ValueError(f"folds of different methods or modes: {sorted(names)}")
    rows = [row for r in per_fold for row in r["rows"]]
    agg = metrics.aggregate_boxes([r["iou"] for r in rows], [r["bde"] for r in rows])
    fold_iou = [r["iou"] for r in per_fold]
    fold_bde = [r["bde"] for r in per_fold]
    return {
        "benchmark": "fcdb", "name": per_fold[0]["name"], "mode": per_fold[0]["mode"], **agg,
        "folds": len(per_fold), "fold_iou": fold_iou, "fold_bde": fold_bde,
        "iou_sd": float(np.std(fold_iou, ddof=1)) if len(per_fold) > 1 else 0.0,
        "bde_sd": float(np.std(fold_bde, ddof=1)) if len(per_fold) > 1 else 0.0,
        "rows": rows,
    }


def evaluate_gaicd(records: Iterable[GAICDRecord], score_fn: ScoreFn, name: str = "model") -> dict:
    """SPEC §4 GAICD metrics of ``score_fn`` over the records that have an image.

    Records without an image (all but 5 in ../shared) are skipped and counted in ``skipped_no_image``.
    The score_fn gets the reference detector boxes when ../shared has them, else None.
    """
    preds, gts, ids = [], [], []
    skipped = 0
    for record in records:
        if record.image_path is None:
            skipped += 1
            continue
        image = open_annotation_frame(record.image_path)
        scores = np.asarray(score_fn(image, record.boxes.copy(), record.gene_boxes), dtype=np.float64)
        if scores.shape != record.mos.shape:
            raise ValueError(f"{record.image_id}: score_fn returned shape {scores.shape}, expected {record.mos.shape}")
        preds.append(scores)
        gts.append(record.mos)
        ids.append(record.image_id)
    if not preds:
        raise ValueError("no GAICD record has an image: nothing to evaluate")
    result = metrics.gaicd_metrics(preds, gts)
    return {"benchmark": "gaicd", "name": name, **result, "skipped_no_image": skipped, "image_ids": ids}


def match_count(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> int:
    """True positives of a greedy one-to-one matching (predictions best first) at IoU >= threshold."""
    pred, truth = box_rows(pred), box_rows(truth)
    used = np.zeros(len(truth), dtype=bool)
    hits = 0
    for box in pred[:, :4]:
        best, best_j = threshold, -1
        for j, gt in enumerate(truth[:, :4]):
            if not used[j]:
                v = metrics.iou(box, gt)
                if v >= best:
                    best, best_j = v, j
        if best_j >= 0:
            used[best_j] = True
            hits += 1
    return hits


def evaluate_genes(
    photos: Iterable[tuple[str, dict, Callable[[], object]]], name: str = "gene head", threshold: float = 0.5
) -> dict:
    """Box precision and recall of detections against teacher boxes, per kind (objects, faces), pooled
    over photos. `photos` yields (file, teacher entry {"objects", "faces"}, a function returning the
    `Detections` of that photo in the same pixels)."""
    totals = {k: {"tp": 0, "pred": 0, "truth": 0} for k in ("objects", "faces")}
    photos_with_face = {"truth": 0, "pred": 0, "both": 0}
    count = 0
    for _, teacher, detect in photos:
        det = detect()
        count += 1
        for kind in totals:
            pred = getattr(det, kind)
            truth = np.asarray(teacher.get(kind, []), dtype=np.float64).reshape(-1, 5)
            totals[kind]["tp"] += match_count(pred, truth, threshold)
            totals[kind]["pred"] += len(pred)
            totals[kind]["truth"] += len(truth)
        has_t, has_p = len(teacher.get("faces", [])) > 0, len(det.faces) > 0
        photos_with_face["truth"] += has_t
        photos_with_face["pred"] += has_p
        photos_with_face["both"] += has_t and has_p
    out = {"benchmark": "genes", "name": name, "count": count, "iou_threshold": threshold, "photos_with_face": photos_with_face}
    for kind, t in totals.items():
        out[kind] = {
            **t,
            "precision": t["tp"] / t["pred"] if t["pred"] else float("nan"),
            "recall": t["tp"] / t["truth"] if t["truth"] else float("nan"),
        }
    return out


def _fmt(value: float, scale: float = 1.0, digits: int = 3) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value * scale:.{digits}f}"


def format_table(results: Sequence[dict]) -> str:
    """Markdown tables of evaluation results: one for FCDB results, one for GAICD results.

    GAICD accuracies are printed ×100 as papers do; the per-K columns are Acc_{K/5} and Acc_{K/10}.
    """
    fcdb = [r for r in results if r.get("benchmark") == "fcdb"]
    gaicd = [r for r in results if r.get("benchmark") == "gaicd"]
    genes = [r for r in results if r.get("benchmark") == "genes"]
    unknown = [r for r in results if r.get("benchmark") not in ("fcdb", "gaicd", "genes")]
    if unknown:
        raise ValueError(f"unknown benchmark in results: {[r.get('benchmark') for r in unknown]}")
    parts = []
    if fcdb:
        lines = ["| method | mode | n | IoU | BDE |", "|---|---|---:|---:|---:|"]
        for r in fcdb:
            iou_text, bde_text = _fmt(r["iou"]), _fmt(r["bde"])
            if "folds" in r:  # mean over all photos ± the standard deviation of the fold means
                iou_text = f"{_fmt(r['iou'], digits=4)} ± {_fmt(r['iou_sd'], digits=4)}"
                bde_text = f"{_fmt(r['bde'], digits=4)} ± {_fmt(r['bde_sd'], digits=4)}"
            lines.append(f"| {r['name']} | {r['mode']} | {r['count']} | {iou_text} | {bde_text} |")
        parts.append("\n".join(lines))
        sized = [r for r in fcdb if "by_size" in r]
        if sized:
            lines = ["| method | mode | human crop keeps | photos | human keeps (mean) | chosen crop keeps | IoU | BDE |",
                     "|---|---|---|---:|---:|---:|---:|---:|"]
            for r in sized:
                for b in r["by_size"]:
                    lo, hi = b["bin"]
                    lines.append(f"| {r['name']} | {r['mode']} | {lo * 100:.0f}–{hi * 100:.0f} % | {b['count']} | "
                                 f"{_fmt(b['human_keeps'], 100, 0)} % | {_fmt(b['model_keeps'], 100, 0)} % | "
                                 f"{_fmt(b['iou'])} | {_fmt(b['bde'])} |")
            parts.append("\n".join(lines))
    if gaicd:
        per_k = [f"acc_k{k}_n{n}" for n in metrics.ACC_NS for k in metrics.ACC_KS]
        head = ["method", "n", "SRCC", "PCC", "Acc5", "Acc10"] + [f"Acc{k}/{n}" for n in metrics.ACC_NS for k in metrics.ACC_KS]
        lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for r in gaicd:
            cells = [r["name"], str(r["count"]), _fmt(r["srcc"]), _fmt(r["pcc"]), _fmt(r["acc5"], 100, 1), _fmt(r["acc10"], 100, 1)]
            cells += [_fmt(r[k], 100, 1) for k in per_k]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    if genes:
        lines = ["| method | kind | photos | teacher boxes | detected | matched (IoU ≥ 0.5) | precision | recall |",
                 "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in genes:
            for kind in ("objects", "faces"):
                k = r[kind]
                lines.append(f"| {r['name']} | {kind} | {r['count']} | {k['truth']} | {k['pred']} | {k['tp']} | "
                             f"{_fmt(k['precision'])} | {_fmt(k['recall'])} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)

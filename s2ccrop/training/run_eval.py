"""`s2ccrop eval fcdb|gaicd|genes DIR`: score a model the way the field does (SPEC §4), and its gene head.

FCDB: mean IoU / BDE of the chosen crop against the human crop, free-form ("any") and given the human
crop's own ratio ("ratio"); `--baselines` adds whole image, centred crop and smartcrop.py measured the
same way. GAICD: SRCC/PCC and Acc_{K/N}, Acc5/Acc10 over the annotated candidates, with the reference
detector boxes as visual genes (`--genes official`) or none (`--genes whole`). Genes: box precision and
recall of the gene head against the teacher boxes of a labels file (`s2ccrop.training.teachers`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .datasets import cv_split, load_fcdb, load_gaicd_v1, split_fcdb
from .evaluate import by_size, cross_validated, evaluate_fcdb, evaluate_gaicd, format_table


class FixedGenes:
    """Gene boxes handed over by the caller for the photo being scored (the reference detector's)."""

    name = "given"

    def __init__(self) -> None:
        self.current = np.zeros((0, 4))

    def boxes(self, width: int, height: int, key: str | None = None) -> np.ndarray:
        return self.current


def _cropper(weights: str | None, device: str, genes=None, face_guard: bool = True, selection: str | None = None):
    from ..api import Cropper

    return Cropper(weights=weights, device=device, genes=genes, face_guard=face_guard, selection=selection)


def _provider(name: str):
    from ..genes import LearnedGenes, WholeImageGenes

    return {"default": None, "whole": WholeImageGenes(), "learned": LearnedGenes()}[name]


def model_crop_fn(cropper, scale: tuple[float, float] | None = None, oracle: bool = False):
    """The cropper as an FCDB crop function; `scale`: a size range for every photo; `oracle`: each
    photo's own human crop's size as the range (how well the model places a crop of known size)."""
    from ..candidates import scale_of

    def crop(image, ratio: str, record=None):
        rng = scale
        if oracle:
            s = min(1.0, scale_of(record.crop, record.width, record.height))
            rng = (s, s)
        return cropper.crop(image, [ratio], scale=rng)[0].box

    crop.wants_record = True  # type: ignore[attr-defined]
    return crop


def _fcdb_records(args: argparse.Namespace, fold: int | None = None):
    """(records of the asked split, at most --limit of them; the loader's report). With --folds, the
    photos of fold `fold` of the training part (what a model trained with the same --folds/--fold
    never saw)."""
    records, report = load_fcdb(args.dir)
    if fold is not None:
        records = cv_split(split_fcdb(records)[0], args.folds, fold)[1]
    elif args.split != "all":
        train, val = split_fcdb(records)
        records = val if args.split == "val" else train
    if args.limit:
        records = records[: args.limit]
    return records, report


def _fold_list(args: argparse.Namespace) -> list[int | None]:
    if not getattr(args, "folds", 0):
        return [None]
    if args.fold == "all":
        return list(range(args.folds))
    return [int(args.fold)]


def eval_fcdb(args: argparse.Namespace) -> list[dict]:
    """FCDB results per method and mode. With --folds and --fold all, each fold is measured with its own
    model (`--weights` with a `{fold}` field) and the folds are combined (`cross_validated`)."""
    folds = _fold_list(args)
    per_fold: dict[tuple[str, str], list[dict]] = {}
    for fold in folds:
        records, report = _fcdb_records(args, fold)
        where = f"fold {fold} of {args.folds}" if fold is not None else args.split
        print(f"fcdb: {len(records)} photos ({where}); {report.summary()}", file=sys.stderr)
        methods = []
        if not args.only_baselines:
            weights = args.weights.format(fold=fold) if args.weights and fold is not None else args.weights
            cropper = _cropper(weights, args.device, _provider(args.genes), face_guard=not args.no_face_guard,
                               selection=args.selection)
            from ..hints import parse_scale

            scale = parse_scale(args.scale, "--scale")
            sized = ", the human crop's size" if args.oracle_scale else (f", scale {args.scale}" if scale else "")
            label = (f"s2ccrop ({cropper.info()['genes']} genes{', no face guard' if args.no_face_guard else ''}"
                     f"{', averaged' if cropper.averages else ''}{sized})")
            methods.append((label, model_crop_fn(cropper, scale, args.oracle_scale)))
        if args.baselines or args.only_baselines:
            from . import baselines

            methods += [("whole image", baselines.whole_image), ("centred crop", baselines.centred_crop), ("smartcrop.py", baselines.smartcrop_crop)]
        for name, fn in methods:
            for mode in ("any", "ratio"):
                per_fold.setdefault((name, mode), []).append(evaluate_fcdb(records, fn, mode, name=name))
    results = [cross_validated(parts) if len(folds) > 1 else parts[0] for parts in per_fold.values()]
    if args.by_size:
        for r in results:
            r["by_size"] = by_size(r)
    return results


def eval_gaicd(args: argparse.Namespace) -> list[dict]:
    records = load_gaicd_v1(args.dir, split=None if args.split == "all" else args.split, with_images_only=True)
    genes = FixedGenes() if args.genes == "official" else None
    cropper = _cropper(args.weights, args.device, genes)

    def score(image, boxes, gene_boxes):
        if genes is not None:
            genes.current = gene_boxes if gene_boxes is not None else np.zeros((0, 4))
        return cropper.score(cropper.prepare(image), boxes)

    return [evaluate_gaicd(records, score, name=f"s2ccrop ({args.genes} genes)")]


def eval_genes(args: argparse.Namespace) -> list[dict]:
    from .evaluate import evaluate_genes, open_annotation_frame

    records, _ = _fcdb_records(args)
    teacher = json.loads(args.labels.read_text())["photos"]
    missing = [r.file for r in records if r.file not in teacher]
    if missing:
        raise SystemExit(f"s2ccrop eval genes: {args.labels} has no labels for {len(missing)} photos (e.g. {missing[0]})")
    cropper = _cropper(args.weights, args.device)
    print(f"genes: {len(records)} photos ({args.split}) against {args.labels}", file=sys.stderr)
    photos = ((r.file, teacher[r.file], lambda r=r: cropper.detect(open_annotation_frame(r.path))) for r in records)
    return [evaluate_genes(photos, name="gene head")]


def kept_row(rows: list[dict]) -> dict:
    """The epoch a run kept: its last measured row when it trained to a fixed schedule (no row after it
    was measured), else the row with the best mean validation IoU (early stopping's choice)."""
    measured = [r for r in rows if "fold_iou_any" in r]
    if not measured:
        raise ValueError("no epoch of this run measured its held-out fold")
    if len(measured) == 1:
        return measured[0]
    return max(measured, key=lambda r: (r["val_iou_any"] + r["val_iou_ratio"]) / 2)


def fold_logs(run_dir: Path, keep: str = "auto") -> dict:
    """Cross-validation result of one run folder (`fold<I>.log.jsonl` of `s2ccrop train --folds --out
    <folder>/fold<I>.safetensors`), over the folds that finished: per
    fold the kept epoch's held-out IoU (the training loop's own measure, on the photos cached at short
    side 320), their mean and the standard deviation of the fold means. A fold in <run>/remeasured.json
    (`remeasure`) takes its averaged-crop numbers from there."""
    # a fold counts once its run has saved the checkpoint (a run in progress has a log but no choice yet)
    logs = sorted(p for p in run_dir.glob("fold*.log.jsonl") if p.with_name(p.name.replace(".log.jsonl", ".safetensors")).is_file())
    remeasured_path = run_dir / "remeasured.json"
    remeasured = json.loads(remeasured_path.read_text()) if remeasured_path.is_file() else {}
    if not logs and (run_dir / "members.txt").is_file():  # an ensemble (measure_ensemble): no training logs
        rows_of = {name: [{"epoch": "–"}] for name in sorted(remeasured)}
    else:
        rows_of = {p.name.split(".")[0]: [json.loads(line) for line in p.read_text().splitlines() if line.strip()] for p in logs}
    if not rows_of:
        raise SystemExit(f"s2ccrop eval folds: {run_dir}: no finished fold (fold<I>.log.jsonl beside fold<I>.safetensors)")
    folds = []
    for name, rows in rows_of.items():
        if rows == [{"epoch": "–"}]:
            row = {"epoch": "–"}
        else:
            row = rows[-1] if keep == "last" else kept_row(rows)
        # The log's argmax numbers stay what training measured; the averaged crop (what ships, which
        # also depends on settings saved with the model, e.g. refine_ratio_given) is today's when remeasured.
        again = {"fold_" + k[4:]: v for k, v in remeasured.get(name, {}).items()}
        row = {**again, **row, **{k: v for k, v in again.items() if "_avg" in k}}
        fold = {"fold": name, "epoch": row["epoch"], "any": row["fold_iou_any"], "ratio": row["fold_iou_ratio"]}
        if "fold_iou_any_avg" in row:  # measured in training since select.average_box, or remeasured
            fold.update(any_avg=row["fold_iou_any_avg"], ratio_avg=row["fold_iou_ratio_avg"])
        folds.append(fold)
    out = {"run": str(run_dir), "folds": folds}
    modes = ("any", "ratio", "any_avg", "ratio_avg") if all("any_avg" in f for f in folds) else ("any", "ratio")
    for mode in modes:
        values = [f[mode] for f in folds]
        out[mode] = float(np.mean(values))
        out[mode + "_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def paired_difference(run: dict, base: dict) -> dict:
    """Per mode, the mean and standard deviation over the folds both runs finished of (run - base): the
    folds differ in difficulty far more than recipes do, so a recipe is judged by its gain fold by fold."""
    theirs = {f["fold"]: f for f in base["folds"]}
    shared = [f for f in run["folds"] if f["fold"] in theirs]
    out: dict = {"folds": len(shared)}
    for mode in ("any", "ratio", "any_avg", "ratio_avg"):
        diffs = [f[mode] - theirs[f["fold"]][mode] for f in shared if mode in f and mode in theirs[f["fold"]]]
        if diffs:
            out[mode] = float(np.mean(diffs))
            out[mode + "_sd"] = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan")
    return out


def remeasure(run_dir: Path, data: Path, folds: int = 3) -> None:
    """Measure a run's finished fold models on their folds with today's `validation.validate` (e.g. the
    averaged crop, for runs from before it was measured) into <run>/remeasured.json."""
    import torch

    from ..model import load_checkpoint
    from .samples import cache_photo
    from .validation import validate

    train, _ = split_fcdb(load_fcdb(data)[0])
    out = {}
    for fold in range(folds):
        path = run_dir / f"fold{fold}.safetensors"
        if path.is_file():
            with torch.inference_mode():
                model = load_checkpoint(path)
                photos = [cache_photo(r, 320) for r in cv_split(train, folds, fold)[1]]
                out[f"fold{fold}"] = validate(model, photos, model.config.num_boxes)
            print(f"{run_dir.name} fold {fold}: {out[f'fold{fold}']}", file=sys.stderr)
    (run_dir / "remeasured.json").write_text(json.dumps(out, indent=1))


def measure_ensemble(members: Sequence[Path], out_dir: Path, data: Path, folds: int = 3, log=print) -> dict:
    """Cross-validate the ensemble of several runs: on each fold that every member finished, the mean
    score of their fold models (each trained without that fold) chooses the crop (`validation.validate`).
    Written as <out_dir>/remeasured.json, which `fold_logs` reads like a run's own, so that
    `s2ccrop eval folds <out_dir> --against <run>` compares it fold by fold."""
    import torch

    from ..model import load_checkpoint
    from .samples import cache_photo
    from .validation import validate

    train, _ = split_fcdb(load_fcdb(data)[0])
    out: dict = {}
    for fold in range(folds):
        paths = [m / f"fold{fold}.safetensors" for m in members]
        if not all(p.is_file() for p in paths):
            continue
        with torch.inference_mode():
            models = [load_checkpoint(p) for p in paths]
            photos = [cache_photo(r, 320) for r in cv_split(train, folds, fold)[1]]
            out[f"fold{fold}"] = validate(models, photos, models[0].config.num_boxes)
        log(f"ensemble fold {fold}: {out[f'fold{fold}']}")
    if not out:
        raise SystemExit(f"s2ccrop eval ensemble: no fold that all of {', '.join(map(str, members))} finished")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "members.txt").write_text("".join(f"{m}\n" for m in members))
    (out_dir / "remeasured.json").write_text(json.dumps(out, indent=1))
    return out


def eval_folds(args: argparse.Namespace) -> None:
    if args.remeasure:
        for run_dir in args.runs:
            remeasure(run_dir, args.remeasure)
    modes = ("any", "ratio", "any_avg", "ratio_avg")
    lines = ["| run | folds | epochs kept | free-form IoU | ratio IoU | free-form, averaged | ratio, averaged |",
             "|---|---:|---|---:|---:|---:|---:|"]
    base = fold_logs(args.against, args.keep) if args.against else None
    diffs = []
    for run_dir in args.runs:
        r = fold_logs(run_dir, args.keep)
        epochs = ", ".join(str(f["epoch"]) for f in r["folds"])
        cells = [f"{r[m]:.4f} ± {r[m + '_sd']:.4f}" if m in r else "–" for m in modes]
        lines.append(f"| {run_dir.name} | {len(r['folds'])} | {epochs} | " + " | ".join(cells) + " |")
        if base is not None:
            d = paired_difference(r, base)
            cells = [f"{d[m]:+.4f} ± {d[m + '_sd']:.4f}" if m in d else "–" for m in modes]
            diffs.append(f"| {run_dir.name} − {args.against.name} | {d['folds']} | | " + " | ".join(cells) + " |")
    print("\n".join(lines + diffs))


def build_parser(prog: str = "s2ccrop eval") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="benchmark", required=True)
    for name, helptext in (("fcdb", "FCDB-format folder (crops.json, images/)"), ("gaicd", "GAICD v1 folder (annotations/, images/, train.txt, test.txt)")):
        p = sub.add_parser(name, help=f"evaluate on a {helptext}")
        p.add_argument("dir", type=Path, help=helptext)
        p.add_argument("--weights", help="registry name or checkpoint path (default: the embedded default)")
        p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
        p.add_argument("--json", dest="json_out", type=Path, help="also write the full results (per-photo rows) as JSON")
    fcdb = sub.choices["fcdb"]
    fcdb.add_argument("--split", choices=["val", "train", "all"], default="val",
                      help="photos to use: our validation split of the FCDB training photos (default), its training part, or all (a test folder)")
    fcdb.add_argument("--limit", type=int, default=0, help="only the first N photos")
    fcdb.add_argument("--baselines", action="store_true", help="also measure whole image, centred crop and smartcrop.py")
    fcdb.add_argument("--only-baselines", action="store_true", help="measure only the baselines (no model)")
    fcdb.add_argument("--genes", choices=["default", "whole", "learned"], default="default",
                      help="visual genes: the model's own (default: its gene head if it has one), whole image, or the gene head")
    fcdb.add_argument("--no-face-guard", action="store_true", help="let crops cut through detected faces")
    fcdb.add_argument("--scale", metavar="LO,HI", help="a size range for every crop (as the crop command's --scale)")
    fcdb.add_argument("--oracle-scale", action="store_true",
                      help="give each photo its human crop's own size as the range (placement at a known size)")
    fcdb.add_argument("--selection", choices=["best", "average"],
                      help="how the crop is chosen from the scores (default: what the model was trained for)")
    fcdb.add_argument("--folds", type=int, default=0,
                      help="cross-validation: measure fold --fold of K folds of the training photos (as `s2ccrop train --folds K`)")
    fcdb.add_argument("--fold", default="all",
                      help="with --folds: one fold (0 .. K-1) or 'all' (default), each with its own model: "
                           "put {fold} in --weights, e.g. runs/cv/v2/fold{fold}.safetensors")
    fcdb.add_argument("--by-size", action="store_true",
                      help="also tabulate by how much of the photo the human crop keeps (<40, 40-60, 60-80, 80-100 %%)")
    genes = sub.add_parser("genes", help="gene head boxes vs teacher boxes on FCDB photos")
    genes.add_argument("dir", type=Path, help="FCDB-format folder (crops.json, images/)")
    genes.add_argument("--labels", type=Path, required=True, help="teacher labels JSON (s2ccrop.training.teachers)")
    genes.add_argument("--weights", help="registry name or checkpoint path (default: the embedded default)")
    genes.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    genes.add_argument("--json", dest="json_out", type=Path, help="also write the results as JSON")
    genes.add_argument("--split", choices=["val", "train", "all"], default="val")
    genes.add_argument("--limit", type=int, default=0, help="only the first N photos")
    ens = sub.add_parser("ensemble", help="cross-validate the ensemble (mean score) of several runs' fold models")
    ens.add_argument("runs", type=Path, nargs="+", help="run folders, each with fold<I>.safetensors of s2ccrop train --folds")
    ens.add_argument("--data", type=Path, required=True, metavar="FCDB_DIR", help="the FCDB training folder the runs were trained on")
    ens.add_argument("--out", type=Path, required=True, help="folder for the result (then: s2ccrop eval folds OUT --against RUN)")
    ens.add_argument("--folds", type=int, default=3, help="K of the runs' --folds K (default 3)")
    folds = sub.add_parser("folds", help="summarise cross-validation training runs (their fold*.log.jsonl)")
    folds.add_argument("runs", type=Path, nargs="+", help="run folders, each with fold<I>.log.jsonl of s2ccrop train --folds")
    folds.add_argument("--against", type=Path, help="a baseline run folder: also print each run's gain over it, fold by fold")
    folds.add_argument("--remeasure", type=Path, metavar="FCDB_DIR",
                       help="first measure each finished fold model again with today's validation (into <run>/remeasured.json)")
    folds.add_argument("--keep", choices=["auto", "last"], default="auto",
                       help="epoch per fold: the run's own choice (auto) or the last one it measured")
    gaicd = sub.choices["gaicd"]
    gaicd.add_argument("--split", choices=["test", "train", "all"], default="test")
    gaicd.add_argument("--genes", choices=["official", "whole"], default="official",
                       help="visual genes: the reference detector boxes beside the annotations, or the whole image")
    return ap


def main(argv: list[str] | None = None, prog: str = "s2ccrop eval") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.benchmark == "fcdb" and args.folds:
        if args.folds < 2:
            parser.error(f"--folds needs K >= 2, got {args.folds}")
        if args.fold != "all" and not (args.fold.isdigit() and int(args.fold) < args.folds):
            parser.error(f"--fold must be 'all' or a fold in 0 .. {args.folds - 1}, got {args.fold!r}")
        if args.fold == "all" and args.weights and "{fold}" not in args.weights:
            parser.error("--fold all measures each fold with its own model: put {fold} in --weights")
    if args.benchmark == "folds":
        eval_folds(args)
        return 0
    if args.benchmark == "ensemble":
        if args.folds < 2:
            parser.error(f"--folds needs K >= 2, got {args.folds}")
        if len(args.runs) < 2:
            parser.error("an ensemble needs at least two runs")
        measure_ensemble(args.runs, args.out, args.data, args.folds, log=lambda m: print(m, file=sys.stderr))
        return 0
    results = {"fcdb": eval_fcdb, "gaicd": eval_gaicd, "genes": eval_genes}[args.benchmark](args)
    print(format_table(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train S2CNet on FCDB human crops and votes: one reproducible command.

    s2ccrop train --data ../shared/data/fcdb-train --config configs/s2ccrop-v1.toml --out weights/s2ccrop-v1.safetensors

Everything that changes the result lives in the TOML config (committed); the seed fixes the rest. The
validation split is carved from the training photos by `datasets.split_fcdb` and never trained on; the
epoch with the best validation IoU is kept (early stopping).

The recipe is `config.TrainConfig`; what a training step sees of a photo, `samples`; the validation
measure, `validation`; the gene-head-only stage, `head_stage`. This module holds the loop (`run`, one
`train_step` per framing) and the command line, and re-exports the names other code imports from it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..model import S2CNet, save_checkpoint
from ..model.box_refiner import refine_targets
from ..select import AVERAGE_TAU, AVERAGE_TOP
from .augment import augment
from .calibrate import calibrate_checkpoint
from .config import TrainConfig
from .datasets import FCDBRecord, cv_split, load_fcdb, split_fcdb
from .gene_loss import gene_loss
from .head_stage import head_meta, head_stage_only, train_head_stage
from .losses import averaged_box_loss, box_iou, listwise_loss, vote_loss
from .samples import CachedPhoto, cache_photo, gene_targets_of, graph_genes, training_candidates, whole_image_genes
from .validation import validate

__all__ = [
    "CachedPhoto", "TrainConfig", "build_model", "cache_photo", "graph_genes", "load_teachers", "main", "run",
    "set_train_mode", "teacher_labels", "teacher_scores", "train_head_stage", "train_step", "training_candidates",
    "validate", "whole_image_genes",
]

# The refiner's smooth L1 is quadratic below this offset (a share of the box's side): a few pixels
# either way are within what two people framing one photo differ by.
REFINE_BETA = 0.05


def build_model(cfg: TrainConfig, imagenet: dict[str, torch.Tensor] | None) -> S2CNet:
    model = S2CNet(cfg.model_config())
    if imagenet is not None:
        model.load_imagenet_backbone(imagenet)
    for stage in cfg.frozen_stages:
        for p in getattr(model.Feat_ext, stage).parameters():
            p.requires_grad_(False)
    return model


def set_train_mode(model: S2CNet) -> None:
    """Train the head; keep every BatchNorm on its ImageNet statistics (batches are one photo)."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eval()


@torch.inference_mode()
def teacher_scores(teachers: list, image: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], num_boxes: int) -> torch.Tensor:
    """Mean score of the teacher models (eval mode, whole-image genes) on one framing's boxes."""
    total = None
    for t in teachers:
        genes = whole_image_genes(size, t.config.num_boxes).to(boxes.device)
        s = t.score_boxes(t.features(image), boxes, genes, size).float()
        total = s if total is None else total + s
    return total / len(teachers)


def train_step(
    model: S2CNet, photo: CachedPhoto, cfg: TrainConfig, rng: np.random.Generator, teachers: list | None = None
) -> dict[str, float]:
    learned = cfg.genes == "learned"
    s = augment(photo.pixels, photo.crop, photo.votes, photo.vote_weights, cfg.augment, rng, train=True,
                labels=photo.labels if cfg.trains_head else None, short_side=cfg.input_short_side)
    boxes, groups = training_candidates(s.crop, s.size, cfg, rng)
    device = next(model.parameters()).device
    overlaps = box_iou(boxes, s.crop)
    targets = torch.from_numpy(overlaps).float().to(device)
    n_votes = len(s.votes)
    all_boxes = np.concatenate([boxes, s.votes[:, :4], s.votes[:, 4:]], axis=0) if n_votes else boxes
    fmap, raw = model.features_and_genes(s.image.to(device), genes=cfg.trains_head)
    genes = graph_genes(raw[0] if raw is not None and learned else None, s.size, cfg.num_boxes)
    scores = model.score_boxes(fmap, torch.from_numpy(all_boxes).float().to(device), genes.to(device), s.size)
    n = len(boxes)
    l_rank = listwise_loss(scores[:n], targets, cfg.temperature)
    if cfg.group_weight > 0:
        # Near misses of the human crop take all the target mass of the full list, which says nothing
        # about the order among grid boxes or among boxes of one ratio — the choices inference makes.
        for part in groups.values():
            if part.stop - part.start > 1:
                l_rank = l_rank + cfg.group_weight * listwise_loss(scores[part], targets[part], cfg.temperature)
    l_vote = vote_loss(scores[n : n + n_votes], scores[n + n_votes :], torch.from_numpy(s.vote_weights).float().to(device), cfg.vote_margin)
    loss = l_rank + cfg.vote_weight * l_vote
    parts = {"rank": l_rank.item(), "vote": l_vote.item(), "gene": 0.0, "distill": 0.0, "avg": 0.0, "refine": 0.0}
    if cfg.refine_weight > 0:
        near = np.flatnonzero(overlaps >= cfg.refine_min_iou)
        if len(near) > cfg.n_refine:
            near = rng.choice(near, cfg.n_refine, replace=False)
        near_t = torch.from_numpy(boxes[near]).float().to(device)
        offsets = model.BoxRefiner(fmap, near_t, s.size)
        target = refine_targets(near_t, torch.from_numpy(s.crop).float().to(device))
        l_refine = torch.nn.functional.smooth_l1_loss(offsets, target, beta=REFINE_BETA)
        loss = loss + cfg.refine_weight * l_refine
        parts["refine"] = l_refine.item()
    if cfg.avg_weight > 0:
        boxes_t = torch.from_numpy(boxes).float().to(device)
        crop_t = torch.from_numpy(s.crop).float().to(device)
        l_avg = sum(averaged_box_loss(scores[part], boxes_t[part], crop_t, AVERAGE_TOP, AVERAGE_TAU)
                    for part in groups.values() if part.stop > part.start)
        loss = loss + cfg.avg_weight * l_avg
        parts["avg"] = l_avg.item()
    if teachers:
        target = teacher_scores(teachers, s.image.to(device), torch.from_numpy(boxes).float().to(device), s.size, cfg.num_boxes).clone()
        l_distill = listwise_loss(scores[:n], target, 1.0)
        for part in groups.values():
            if part.stop - part.start > 1:
                l_distill = l_distill + cfg.group_weight * listwise_loss(scores[part], target[part], 1.0)
        loss = loss + cfg.distill_weight * l_distill
        parts["distill"] = l_distill.item()
    if raw is not None:
        l_gene, _ = gene_loss(raw[0], gene_targets_of(s, tuple(raw.shape[-2:])))
        loss = loss + cfg.gene_weight * l_gene
        parts["gene"] = l_gene.item()
    loss.backward()
    return {"loss": loss.item(), **parts}


def run(
    data: Path, cfg: TrainConfig, out: Path, imagenet_path: Path | None, log=print, teacher_labels: dict | None = None,
    init: Path | None = None, folds: int = 0, fold: int = 0,
) -> dict:
    """Train and save the kept epoch (`cfg.keep`) to `out`. `teacher_labels`: the "photos" mapping of a teacher
    labels file (`s2ccrop.training.teachers`), needed when the model has a gene head. `init`: a
    checkpoint of this config's main stage: skip that stage and run only the head stage on it.
    `folds` > 0: cross-validation, train without fold `fold` of the training photos (`datasets.cv_split`)
    and measure that fold after every epoch (`fold_iou_*`); the validation split stays out as always."""
    if cfg.trains_head and teacher_labels is None:
        raise ValueError("a gene head (genes = 'learned' or gene_head = true) needs teacher labels (s2ccrop train --teachers DIR)")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    records, report = load_fcdb(data)
    log(f"data: {report.summary()}")
    train_recs, val_recs = split_fcdb(records, cfg.val_fraction, cfg.split_seed)
    test_recs: list[FCDBRecord] = []
    if folds:
        train_recs, test_recs = cv_split(train_recs, folds, fold, cfg.split_seed)
        log(f"cross-validation: fold {fold} of {folds} ({len(test_recs)} photos) held out")
    if cfg.limit_train:
        train_recs = train_recs[: cfg.limit_train]
    t0 = time.time()
    if teacher_labels is not None:
        missing = [r.file for r in train_recs if r.file not in teacher_labels]
        if missing:
            raise ValueError(f"teacher labels lack {len(missing)} training photos (e.g. {missing[0]}): relabel")
    labels = teacher_labels or {}
    train_photos = [cache_photo(r, cfg.cache_short_side, labels.get(r.file)) for r in train_recs]
    val_photos = [cache_photo(r, cfg.cache_short_side, labels.get(r.file)) for r in val_recs]
    test_photos = [cache_photo(r, cfg.cache_short_side) for r in test_recs]
    log(f"cached {len(train_photos)} train / {len(val_photos)} val / {len(test_photos)} fold photos in {time.time() - t0:.0f}s")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if init is not None:
        return head_stage_only(init, cfg, out, train_photos, val_photos, device, log)
    imagenet = torch.load(imagenet_path, map_location="cpu", weights_only=True) if imagenet_path else None
    model = build_model(cfg, imagenet).to(device)
    log(f"device: {device}")
    teachers = load_teachers(cfg, fold if folds else None, device, log)
    backbone = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("Feat_ext.")]
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("Feat_ext.")]
    opt = torch.optim.AdamW(
        [{"params": backbone, "lr": cfg.lr_backbone}, {"params": head, "lr": cfg.lr_head}], weight_decay=cfg.weight_decay
    )
    steps_total = cfg.epochs * len(train_photos)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / max(steps_total, 1), 1.0))))

    history: list[dict] = []
    best: dict | None = None
    best_state = None
    start = time.time()
    log_path = out.with_suffix(".log.jsonl")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    def measure() -> dict[str, float]:
        out = validate(model, val_photos, cfg.num_boxes)
        if test_photos:
            out.update({"fold_" + k[4:]: v for k, v in validate(model, test_photos, cfg.num_boxes).items()})
        return out

    quiet = cfg.keep == "last" and not cfg.measure_every_epoch
    base = {} if quiet else measure()
    if base:
        log(f"epoch 0 (untrained head): {base}")
    for epoch in range(1, cfg.epochs + 1):
        set_train_mode(model)
        order = rng.permutation(len(train_photos))
        sums = {"loss": 0.0, "rank": 0.0, "vote": 0.0, "gene": 0.0, "distill": 0.0, "avg": 0.0, "refine": 0.0}
        with Progress(
            TextColumn(f"epoch {epoch}/{cfg.epochs}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn(),
            TextColumn("{task.fields[loss]}"), transient=True, disable=not sys.stderr.isatty(),
        ) as bar:
            task = bar.add_task("train", total=len(order), loss="")
            for i, idx in enumerate(order, 1):
                opt.zero_grad(set_to_none=True)
                parts = train_step(model, train_photos[idx], cfg, rng, teachers)
                torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], cfg.grad_clip)
                opt.step()
                sched.step()
                for k in sums:
                    sums[k] += parts[k]
                bar.update(task, advance=1, loss=f"loss {sums['loss'] / i:.3f}")
        out_of_time = (time.time() - start) / 60 > cfg.max_minutes * epoch / (epoch + 1)
        metrics = measure() if not quiet or epoch == cfg.epochs or out_of_time else {}
        row = {"epoch": epoch, **{k: v / len(order) for k, v in sums.items()}, **metrics, "minutes": (time.time() - start) / 60}
        history.append(row)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        score = (metrics["val_iou_any"] + metrics["val_iou_ratio"]) / 2 if metrics else float("nan")
        improved = best is None or score > best["score"] or cfg.keep == "last"
        if improved:
            best = {"score": score, **row}
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        measured = ""
        if metrics:
            measured = f" val IoU any {metrics['val_iou_any']:.4f} ratio {metrics['val_iou_ratio']:.4f}"
        if test_photos and metrics:
            measured += f" fold IoU any {metrics['fold_iou_any']:.4f} ratio {metrics['fold_iou_ratio']:.4f}"
        log(
            f"epoch {epoch}: loss {row['loss']:.4f} (rank {row['rank']:.4f}, vote {row['vote']:.4f}, gene {row['gene']:.4f}, "
            f"distill {row['distill']:.4f}, avg {row['avg']:.4f}, refine {row['refine']:.4f})"
            f"{measured} [{row['minutes']:.1f} min]{' *kept*' if improved else ''}"
        )
        if cfg.keep == "best" and epoch - best["epoch"] >= cfg.patience:
            log(f"early stop: no improvement for {cfg.patience} epochs")
            break
        if out_of_time:
            log("stopping: the next epoch would pass the time budget")
            break
    assert best_state is not None and best is not None
    model.load_state_dict(best_state)
    held_out = f", minus fold {fold} of {folds} (cv_split)" if folds else ""
    meta = {
        "training_data": f"FCDB training split minus the validation split (split_fcdb, seed {cfg.split_seed}){held_out}",
        "train_config": cfg.to_json(),
        "best_epoch": str(best["epoch"]),
        "val_iou_any": f"{best['val_iou_any']:.4f}",
        "val_iou_ratio": f"{best['val_iou_ratio']:.4f}",
    }
    if folds:
        meta.update({"folds": str(folds), "fold": str(fold), "fold_iou_any": f"{best['fold_iou_any']:.4f}",
                     "fold_iou_ratio": f"{best['fold_iou_ratio']:.4f}"})
    result = {"best": best, "history": history, "baseline_epoch0": base or None}
    if cfg.head_epochs:
        # as a checkpoint of the main stage would hold it (float16), so that --init gives the same head stage
        model.load_state_dict({k: v.half().float() if v.is_floating_point() and "running_var" not in k else v
                               for k, v in model.state_dict().items()})
        result["head_stage"] = train_head_stage(model, train_photos, val_photos, cfg, log)
        meta.update(head_meta(result["head_stage"]))
    model.cpu()
    save_checkpoint(model.eval(), out, meta, half=True)
    if cfg.int8_calibration:
        calibrate_checkpoint(out, train_recs, cfg.int8_calibration, log=log)
    log(f"saved {out} ({cfg.keep} epoch {best['epoch']}: any {best['val_iou_any']:.4f}, ratio {best['val_iou_ratio']:.4f})")
    return result


def load_teachers(cfg: TrainConfig, fold: int | None, device, log=print) -> list[S2CNet]:
    """The distillation teachers of `cfg` (eval mode, frozen); none when distill_weight is 0."""
    if not cfg.distill_weight or not cfg.distill_from:
        return []
    from ..model import load_checkpoint

    paths = []
    for template in cfg.distill_from:
        if "{fold}" in template and fold is None:
            raise ValueError(f"teacher {template!r} names a fold: train with --folds/--fold")
        paths.append(Path(template.format(fold=fold) if fold is not None else template))
    teachers = [load_checkpoint(p).to(device).eval().requires_grad_(False) for p in paths]
    for t in teachers:
        t.prepare_for_inference()
    log(f"distilling from {len(teachers)} teachers: {', '.join(str(p) for p in paths)}")
    return teachers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="s2ccrop train", description="Train S2CNet on FCDB human crops.")
    ap.add_argument("--data", required=True, type=Path, help="FCDB folder (crops.json, pairwise_rankings.json, images/)")
    ap.add_argument("--config", required=True, type=Path, help="TOML training config")
    ap.add_argument("--out", required=True, type=Path, help="output checkpoint (.safetensors)")
    ap.add_argument("--imagenet", type=Path, help="torchvision's ImageNet MobileNetV2 state_dict (mobilenet_v2-b0353104.pth)")
    ap.add_argument("--teachers", type=Path,
                    help="teacher models folder (u2netp.onnx, MTCNN pnet/rnet/onet.pt) for configs with genes = 'learned'")
    ap.add_argument("--init", type=Path,
                    help="a checkpoint of this config's main stage: run only the head stage (head_epochs) on it")
    ap.add_argument("--labels", type=Path,
                    help="teacher labels file: read if it exists, else written from --teachers "
                         "(default: runs/teachers/<data folder name>.json)")
    ap.add_argument("--folds", type=int, default=0,
                    help="cross-validation: split the training photos into K folds (by photo, fixed by the split seed)")
    ap.add_argument("--fold", type=int, default=0, help="with --folds: the fold to hold out (0 .. K-1)")
    ap.add_argument("--threads", type=int, help="torch threads (overrides the config's; does not change the recipe)")
    args = ap.parse_args(argv)
    if args.folds == 1 or args.folds < 0 or (args.folds and not 0 <= args.fold < args.folds):
        ap.error(f"--folds needs K >= 2 and --fold in 0 .. K-1 (got --folds {args.folds} --fold {args.fold})")
    cfg = TrainConfig.from_toml(args.config)
    if args.threads is not None:
        cfg.threads = args.threads

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    labels = None
    if cfg.trains_head:
        labels = teacher_labels(args.data, args.labels or Path("runs/teachers") / f"{args.data.resolve().name}.json", args.teachers, log)
    run(args.data, cfg, args.out, args.imagenet, log, labels, init=args.init, folds=args.folds, fold=args.fold)
    return 0


def teacher_labels(data: Path, path: Path, teachers: Path | None, log=print) -> dict:
    """The "photos" mapping of a teacher labels file, labelling the photos first when it is missing."""
    if not path.is_file():
        if teachers is None:
            raise SystemExit(f"s2ccrop train: {path}: no teacher labels yet; pass --teachers DIR to make them")
        from .teachers import label_fcdb

        log(f"labelling {data} with the teachers in {teachers} → {path}")
        label_fcdb(data, teachers, path, log=log)
    log(f"teacher labels: {path}")
    return json.loads(path.read_text())["photos"]


if __name__ == "__main__":
    sys.exit(main())

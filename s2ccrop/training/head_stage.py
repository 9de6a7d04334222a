"""The head stage: after the main stage, train only the gene head (backbone and graph frozen) on the
teacher boxes, keeping the epoch with the lowest validation distillation loss; `head_stage_only` runs it
alone on a checkpoint of the main stage (`s2ccrop train --init`)."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..model import S2CNet, read_state_dict, save_checkpoint
from ..model.checkpoint import model_from_state_dict
from .augment import augment
from .config import TrainConfig
from .gene_loss import gene_loss
from .samples import CachedPhoto, gene_targets_of


def head_loss(model: S2CNet, photo: CachedPhoto, cfg: TrainConfig, rng: np.random.Generator, train: bool) -> torch.Tensor:
    """Distillation loss of the gene head on one framing of a photo, the backbone run without gradients."""
    s = augment(photo.pixels, photo.crop, photo.votes, photo.vote_weights, cfg.augment, rng, train=train, labels=photo.labels,
                short_side=cfg.input_short_side)
    device = next(model.parameters()).device
    with torch.no_grad():
        maps = model.Feat_ext(s.image.to(device))
    raw = model.GeneHead(*maps)
    return gene_loss(raw[0], gene_targets_of(s, tuple(raw.shape[-2:])))[0]


def train_head_stage(model: S2CNet, train_photos: list, val_photos: list, cfg: TrainConfig, log=print) -> dict:
    """Train only `model.GeneHead` on the teacher boxes; keep the epoch with the lowest validation loss.
    Seeded on its own (seed + 1), so it gives the same result after the main stage in one run or on a
    checkpoint of it (`--init`)."""
    torch.manual_seed(cfg.seed + 1)
    rng = np.random.default_rng(cfg.seed + 1)
    model.eval()  # BatchNorm statistics and dropout as at inference; only the head learns
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.GeneHead.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.head_lr, weight_decay=1e-4)
    steps = cfg.head_epochs * len(train_photos)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / max(steps, 1), 1.0))))

    def val_loss() -> float:
        with torch.no_grad():
            return float(np.mean([head_loss(model, p, cfg, np.random.default_rng(0), train=False).item() for p in val_photos]))

    best = {"epoch": 0, "val_gene_loss": val_loss()}
    best_state = copy.deepcopy(model.GeneHead.state_dict())
    log(f"head stage, epoch 0: val gene loss {best['val_gene_loss']:.4f}")
    start = time.time()
    for epoch in range(1, cfg.head_epochs + 1):
        total = 0.0
        for idx in rng.permutation(len(train_photos)):
            opt.zero_grad(set_to_none=True)
            loss = head_loss(model, train_photos[idx], cfg, rng, train=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            total += loss.item()
        v = val_loss()
        improved = v < best["val_gene_loss"]
        if improved:
            best = {"epoch": epoch, "val_gene_loss": v}
            best_state = copy.deepcopy(model.GeneHead.state_dict())
        log(f"head stage, epoch {epoch}: train gene loss {total / len(train_photos):.4f}, val {v:.4f} "
            f"[{(time.time() - start) / 60:.1f} min]{' *best*' if improved else ''}")
        if epoch - best["epoch"] >= cfg.head_patience:
            log(f"head stage: early stop, no improvement for {cfg.head_patience} epochs")
            break
    model.GeneHead.load_state_dict(best_state)
    return best


def head_meta(head: dict) -> dict[str, str]:
    return {"head_stage_best_epoch": str(head["epoch"]), "head_stage_val_gene_loss": f"{head['val_gene_loss']:.4f}"}


def head_stage_only(init: Path, cfg: TrainConfig, out: Path, train_photos, val_photos, device, log) -> dict:
    """`s2ccrop train --init`: run only the head stage on `init`, a checkpoint of this config's main
    stage, and save the result to `out` with `init`'s metadata."""
    if not cfg.head_epochs:
        raise ValueError("--init runs only the head stage: the config has head_epochs = 0")
    sd, config, meta = read_state_dict(init)
    if config != cfg.model_config():
        raise ValueError(f"{init}: its model config {config} is not this config's {cfg.model_config()}")
    model = model_from_state_dict(sd, config).to(device)
    log(f"head stage only, from {init} (main stage: best epoch {meta.get('best_epoch', '?')}); device: {device}")
    head = train_head_stage(model, train_photos, val_photos, cfg, log)
    kept = {k: v for k, v in meta.items() if k not in ("s2ccrop_config", "format", "train_config")}
    meta = {**kept, **head_meta(head), "train_config": cfg.to_json(),
            "head_stage_init": init.name}
    model.cpu()
    save_checkpoint(model.eval(), out, meta, half=True)
    log(f"saved {out} (head stage best epoch {head['epoch']}: val gene loss {head['val_gene_loss']:.4f})")
    return {"best": {k: meta.get(k) for k in ("best_epoch", "val_iou_any", "val_iou_ratio")}, "head_stage": head}

"""Measure the int8 backbone's activation ranges (`model.int8_backbone`) for a checkpoint of ours on
FCDB training photos and store them in the checkpoint (tensors unchanged). `s2ccrop train` does this
for every model it saves; this command adds it to a checkpoint trained before:

    python -m s2ccrop.training.calibrate --data ../shared/data/fcdb-train --weights in.safetensors --out out.safetensors
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..model import int8_backbone
from ..model.checkpoint import load_checkpoint, read_state_dict, save_checkpoint
from ..preprocess import SHORT_SIDE, image_tensor, model_size
from .datasets import FCDBRecord, load_fcdb, split_fcdb
from .evaluate import open_annotation_frame

_RESERVED = ("s2ccrop_config", "format", int8_backbone.CALIBRATION_KEY)


def model_inputs(records: Sequence[FCDBRecord], short_side: int = SHORT_SIDE) -> Iterator[torch.Tensor]:
    """Each photo as `s2ccrop eval fcdb` gives it to the model: its stored pixels (the annotation
    frame), resized to the model's input size (`short_side`: its config's), normalised."""
    for record in records:
        image = open_annotation_frame(record.path)
        yield image_tensor(image, model_size(*image.size, short_side=short_side))


def calibrate_checkpoint(path: "str | Path", records: Sequence[FCDBRecord], photos: int = int8_backbone.CALIBRATION_PHOTOS,
                         out: "str | Path | None" = None, log=print) -> dict:
    """Calibrate the checkpoint at `path` on the first `photos` of `records` (the model as stored, float16
    weights and all) and write it with the calibration to `out` (default: in place, atomically)."""
    model = load_checkpoint(path)
    if not model.own_checkpoint:
        raise ValueError(f"{path}: not one of our checkpoints (reference checkpoints keep the float backbone)")
    tensors, _, meta = read_state_dict(path)
    half = any(v.dtype == torch.float16 for v in tensors.values())
    t0 = time.perf_counter()
    calibration = int8_backbone.calibrate(model.Feat_ext, model_inputs(records[:photos], model.config.input_short_side))
    model.int8_calibration = calibration
    save_checkpoint(model, out or path, {k: v for k, v in meta.items() if k not in _RESERVED}, half=half)
    log(f"int8 backbone calibrated on {calibration['images']} training photos ({time.perf_counter() - t0:.1f} s): {out or path}")
    return calibration


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m s2ccrop.training.calibrate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="FCDB folder (crops.json, images/)")
    ap.add_argument("--weights", required=True, type=Path, help="a checkpoint of ours (.safetensors)")
    ap.add_argument("--out", type=Path, help="where to write it (default: in place)")
    ap.add_argument("--photos", type=int, default=int8_backbone.CALIBRATION_PHOTOS,
                    help="training photos to measure on (default %(default)s): the first of the training split")
    ap.add_argument("--val-fraction", type=float, default=0.15, help="as the checkpoint's training config (default 0.15)")
    ap.add_argument("--split-seed", type=int, default=2024, help="as the checkpoint's training config (default 2024)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    records, _ = load_fcdb(args.data)
    train, _ = split_fcdb(records, args.val_fraction, args.split_seed)
    calibrate_checkpoint(args.weights, train, args.photos, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Do the crops hold on phone photos? FCDB's validation photos made into 12-MP phone photos
(`bench.phone.phone_jpeg`: enlarged, mild noise, JPEG q92, every fourth stored with EXIF orientation 6),
cropped free-form and at the human crop's ratio, boxes scaled back to the original photo:

- original: the 800-px photo itself (what `s2ccrop eval fcdb --split val` measures);
- 12 MP, full decode: the phone photo decoded at full resolution;
- 12 MP, as shipped: the phone photo given as a path, decoded as the command line does (a large JPEG
  at the reduced scale the model reads, `io.images.model_reduction`: for a 12-MP photo, ¼, made as the
  ½ decode averaged 2×2).

    .venv/bin/python -m bench.phone_quality ../shared/data/fcdb-train --seeds 0 1

Each seed makes the set with other noise. Paired differences per photo are given as mean ± standard
error over the photos.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from .phone import phone_jpeg


def main(argv: list[str] | None = None) -> int:
    from s2ccrop.api import Cropper
    from s2ccrop.io.images import open_image
    from s2ccrop.training import metrics
    from s2ccrop.training.datasets import load_fcdb, split_fcdb
    from s2ccrop.training.evaluate import open_annotation_frame, ratio_string

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="the FCDB folder (crops.json, images/)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args(argv)
    records = split_fcdb(load_fcdb(args.data)[0])[1]
    records = records[: args.limit] if args.limit else records
    cropper = Cropper(device="cpu")
    ways = ("original", "12 MP, full decode", "12 MP, as shipped")
    table = {}
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        ious = {(w, m): [] for w in ways for m in ("any", "ratio")}
        with tempfile.TemporaryDirectory(prefix="s2ccrop-phone-quality-") as tmp:
            for i, r in enumerate(records):
                image = open_annotation_frame(r.path)
                path = Path(tmp) / f"{i:03d}.jpg"
                W, H = phone_jpeg(image, path, rng, rotated=i % 4 == 3)
                sx, sy = W / r.width, H / r.height
                x1, y1, x2, y2 = r.crop
                full = open_image(path).rgb()
                for mode in ("any", "ratio"):
                    small = "any" if mode == "any" else ratio_string(x2 - x1, y2 - y1)
                    big = "any" if mode == "any" else ratio_string(round((x2 - x1) * sx), round((y2 - y1) * sy))
                    boxes = {"original": cropper.crop(image, [small])[0].box}
                    for way, source in (("12 MP, full decode", full), ("12 MP, as shipped", path)):
                        b = cropper.crop(source, [big], (W, H))[0].box
                        boxes[way] = (b[0] / sx, b[1] / sy, b[2] / sx, b[3] / sy)
                    for way, box in boxes.items():
                        ious[(way, mode)].append(metrics.iou(box, r.crop))
                print(f"seed {seed}: {i + 1}/{len(records)}", end="\r", file=sys.stderr)
        table[seed] = {k: np.array(v) for k, v in ious.items()}
    print(report(table, ways, len(records)))
    return 0


def report(table: dict, ways, n: int) -> str:
    lines = [f"{n} FCDB validation photos as 12-MP phone photos; mean IoU (free-form / ratio-given)", "",
             "| seed | " + " | ".join(ways) + " | as shipped − full decode | as shipped − original |",
             "|---|" + "---:|" * (len(ways) + 2)]
    for seed, ious in table.items():
        cells = [f"{ious[(w, 'any')].mean():.3f} / {ious[(w, 'ratio')].mean():.3f}" for w in ways]
        for other in ("12 MP, full decode", "original"):
            diffs = [ious[("12 MP, as shipped", m)] - ious[(other, m)] for m in ("any", "ratio")]
            cells.append(" / ".join(f"{d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f}" for d in diffs))
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

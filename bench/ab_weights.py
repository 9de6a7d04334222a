"""Two checkpoints' cost per photo, A/B in one process: CPU milliseconds (``time.process_time``) of
``Cropper.crop`` for the same decoded photos and ratios, on one torch thread, the two taking turns photo by
photo (the order flips every photo) so that a busy or throttling host slows both alike.

    python -m bench.ab_weights A.safetensors B.safetensors --photos DIR [-n 40] [--ratios 16:9,1:1,4:3,9:16]

Prints the median of each and the median of the per-photo ratios B/A. Model time only from a decoded
image (no decode or write); the whole program is `bench/run.py`'s job.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--photos", type=Path, required=True, help="folder of JPEG photos")
    ap.add_argument("-n", type=int, default=40, help="photos (a seeded random sample; default 40)")
    ap.add_argument("--ratios", default="16:9,1:1,4:3,9:16")
    args = ap.parse_args(argv)

    import torch
    from PIL import Image

    from s2ccrop import Cropper

    torch.set_num_threads(1)
    photos = sorted(args.photos.glob("*.jpg"))
    random.Random(0).shuffle(photos)
    images = [Image.open(p).convert("RGB") for p in photos[: args.n]]
    croppers = [Cropper(w, device="cpu", threads=1) for w in (args.a, args.b)]
    ratios = args.ratios.split(",")
    for c in croppers:  # warm-up
        for im in images[:3]:
            c.crop(im, ratios)
    times: list[list[float]] = [[], []]
    for i, im in enumerate(images):
        for k in ((0, 1) if i % 2 == 0 else (1, 0)):
            t0 = time.process_time()
            croppers[k].crop(im, ratios)
            times[k].append((time.process_time() - t0) * 1000)
    ma, mb = statistics.median(times[0]), statistics.median(times[1])
    paired = statistics.median(b / a for a, b in zip(*times))
    print(f"A {args.a}: {ma:.1f} ms per photo; B {args.b}: {mb:.1f} ms; B/A {mb / ma:.3f} "
          f"(median of per-photo ratios {paired:.3f}); {len(images)} photos, ratios {args.ratios}, one thread")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Do the shipped speed paths choose what float32 scoring throughout chooses? (a check, not a test)

    .venv/bin/python bench/same_choices.py --photos ../shared/data/fcdb-train/images [-n N]

Crops every photo twice with the same weights: as shipped (bfloat16 ranking + exact rescoring where the
CPU has AMX; forced on here) and with exact float32 scoring of every candidate. Prints how many of the
photo × ratio choices differ, the largest difference of the reported scores, and ms per photo of each.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

RATIOS = ("any", "16:9", "4:3", "1:1", "9:16", "3:2", "21:9")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True, type=Path)
    ap.add_argument("-n", type=int, default=0, help="first N photos by name (default: all)")
    ap.add_argument("--weights", default=None)
    args = ap.parse_args(argv)

    from s2ccrop.api import Cropper
    from s2ccrop.types import Ratio

    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    photos = photos[: args.n] if args.n else photos
    ratios = [Ratio.parse(r) for r in RATIOS]
    shipped = Cropper(weights=args.weights, device="cpu", bf16_ranking=True)
    exact = Cropper(weights=args.weights, device="cpu", bf16_ranking=False)
    differ, worst, t_shipped, t_exact = 0, 0.0, 0.0, 0.0
    for path in photos:
        p = shipped.prepare(path)
        start = time.perf_counter()
        a = shipped.crop_prepared(p, ratios)
        t_shipped += time.perf_counter() - start
        start = time.perf_counter()
        b = exact.crop_prepared(p, ratios)
        t_exact += time.perf_counter() - start
        differ += sum(x.box != y.box for x, y in zip(a, b))
        worst = max(worst, max(abs(x.score - y.score) for x, y in zip(a, b)))
    n = len(photos)
    print(f"{n} photos x {len(ratios)} ratios = {n * len(ratios)} choices; different boxes: {differ}; "
          f"max |score difference| {worst:.2e}; ms per photo: shipped {1e3 * t_shipped / n:.1f}, "
          f"float32 throughout {1e3 * t_exact / n:.1f}")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())

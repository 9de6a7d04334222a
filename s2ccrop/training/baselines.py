"""Non-learned crop baselines with the ``crop_fn(pil_image, ratio_str) -> (x1, y1, x2, y2)`` signature.

* ``whole_image``: the trivial crop (SPEC §5 anchor: IoU 0.640 on the FCDB test split).
* ``centred_crop``: the largest centred box of the requested ratio; the whole image for "any".
* ``smartcrop_crop``: smartcrop.py (the port of smartcrop.js), used the way its own CLI uses it: a
  100-pixel-wide target of the requested ratio, so it analyses a small prescaled copy and considers crops
  of 100 % and 90 % of the largest box of that ratio. It has no free-form mode, so for "any" it gets the
  image's own ratio (it then picks the whole image or a 90 % crop of the same shape).

Run ``python -m s2ccrop.training.baselines --data <shared>/data/fcdb-train`` to measure all three on the
deterministic FCDB validation split in both modes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from ..candidates import largest_box_size
from ..types import Ratio

Box = tuple[int, int, int, int]

SMARTCROP_TARGET_WIDTH = 100  # what smartcrop's CLI passes; only the ratio and the prescale depend on it


def whole_image(image, ratio: str) -> Box:
    """The whole image, whatever the ratio: the trivial baseline."""
    return (0, 0, image.size[0], image.size[1])


def largest_centred_box(width: int, height: int, ratio: str) -> Box:
    """Largest box of ``ratio`` (W:H) centred in a width x height image; the whole image for "any".

    The same box the cropper's candidates start with (`candidates.largest_box_size`)."""
    r = Ratio.parse(ratio)
    if r.is_any:
        return (0, 0, width, height)
    w, h = largest_box_size(width, height, r.width / r.height)
    x1, y1 = (width - w) // 2, (height - h) // 2
    return (x1, y1, x1 + w, y1 + h)


def centred_crop(image, ratio: str) -> Box:
    """Largest centred crop of the requested ratio (whole image for "any")."""
    return largest_centred_box(image.size[0], image.size[1], ratio)


def _smartcrop_target(width: int, height: int, ratio: str) -> tuple[int, int]:
    r = Ratio.parse(ratio)
    value = width / height if r.is_any else r.value
    return SMARTCROP_TARGET_WIDTH, max(1, round(SMARTCROP_TARGET_WIDTH / value))


def smartcrop_crop(image, ratio: str) -> Box:
    """smartcrop.py's top crop for the ratio (see module doc for "any"), clipped to the image."""
    import smartcrop  # optional dependency (extra "train"): imported only when this baseline runs

    width, height = image.size
    tw, th = _smartcrop_target(width, height, ratio)
    top = smartcrop.SmartCrop().crop(image, tw, th)["top_crop"]
    x1, y1 = max(0, int(top["x"])), max(0, int(top["y"]))
    x2, y2 = min(width, x1 + int(top["width"])), min(height, y1 + int(top["height"]))
    return (x1, y1, x2, y2)


BASELINES: dict[str, Callable[[object, str], Box]] = {
    "whole image": whole_image,
    "centred crop": centred_crop,
    "smartcrop": smartcrop_crop,
}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m s2ccrop.training.baselines", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=None, help="FCDB folder (default: <S2CCROP_SHARED or ../shared>/data/fcdb-train)")
    p.add_argument("--split", choices=("val", "train", "all"), default="val", help="which part of the split (default val)")
    p.add_argument("--modes", nargs="+", choices=("any", "ratio"), default=["any", "ratio"])
    p.add_argument("--baselines", nargs="+", choices=list(BASELINES), default=list(BASELINES))
    p.add_argument("--limit", type=int, default=None, help="only the first N photos (quick checks)")
    p.add_argument("--json", dest="json_path", default=None, help="also write the results (without rows) here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print a markdown table of the baselines on the FCDB validation split; progress goes to stderr."""
    from .datasets import data_root, load_fcdb, split_fcdb
    from .evaluate import evaluate_fcdb, format_table

    args = _parse_args(argv)
    root = args.data if args.data is not None else data_root("fcdb-train")
    records, report = load_fcdb(root)
    train, val = split_fcdb(records)
    chosen = {"val": val, "train": train, "all": records}[args.split]
    if args.limit is not None:
        chosen = chosen[: args.limit]
    print(f"FCDB {args.split}: {len(chosen)} photos ({report.summary()})", file=sys.stderr)
    results = []
    for name in args.baselines:
        for mode in args.modes:
            start = time.perf_counter()
            result = evaluate_fcdb(chosen, BASELINES[name], mode, name=name)
            print(f"{name} / {mode}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
            results.append(result)
    print(format_table(results))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as f:
            json.dump([{k: v for k, v in r.items() if k != "rows"} for r in results], f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

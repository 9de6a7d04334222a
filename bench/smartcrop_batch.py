"""smartcrop.py over photos × ratios, with crops written as s2ccrop writes them (the comparison run).

    python bench/smartcrop_batch.py OUT_DIR RATIO[,RATIO...] < paths.txt

Does what smartcrop.py's own CLI does per (photo, ratio) — analyse at its prescaled size, take the top
crop — minus one Python start per crop, and writes each crop at full resolution as JPEG quality 90.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction

from PIL import Image, ImageOps
from smartcrop import SmartCrop


def main() -> None:
    out_dir, ratios = sys.argv[1], [Fraction(*map(int, r.split(":"))) for r in sys.argv[2].split(",")]
    cropper = SmartCrop()
    for line in sys.stdin:
        path = line.rstrip("\n")
        image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        stem = os.path.splitext(os.path.basename(path))[0]
        for ratio in ratios:
            # smartcrop.py's CLI asks for a 100-px-wide crop of the ratio; the box is in full pixels
            top = cropper.crop(image, width=100, height=int(100 / ratio))["top_crop"]
            box = (top["x"], top["y"], top["x"] + top["width"], top["y"] + top["height"])
            name = f"{stem}_{ratio.numerator}x{ratio.denominator}.jpg"
            image.crop(box).save(os.path.join(out_dir, name), "JPEG", quality=90)


if __name__ == "__main__":
    main()

"""smartcrop.py over photos × ratios, with crops written as s2ccrop writes them (the comparison run).

    python bench/smartcrop_batch.py OUT_DIR RATIO[,RATIO...] [WIDTH] < paths.txt

Does what smartcrop.py's own CLI does per (photo, ratio) — analyse at its prescaled size, take the top
crop — minus one Python start per crop, and writes each crop as JPEG quality 90: at full resolution,
or with WIDTH as a thumbnail that wide, resampled as s2ccrop resamples (Lanczos from the crop's box,
never upscaled, the height from the ratio).
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction

from PIL import Image, ImageOps
from smartcrop import SmartCrop


def main() -> None:
    out_dir, ratios = sys.argv[1], [Fraction(*map(int, r.split(":"))) for r in sys.argv[2].split(",")]
    width = int(sys.argv[3]) if len(sys.argv) > 3 else 0
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
            path_out = os.path.join(out_dir, name)
            if width and width <= top["width"] and round(width / ratio) <= top["height"]:
                size = (width, round(width / ratio))
                image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0).save(path_out, "JPEG", quality=90)
            else:
                image.crop(box).save(path_out, "JPEG", quality=90)


if __name__ == "__main__":
    main()

"""libvips as its users call it (sharp, imgproxy, vipsthumbnail): one `thumbnail` per (photo, ratio),
shrink-on-load and `crop="attention"`, written as JPEG quality 90 (the phone-photo bench's peer).

    python bench/vips_batch.py OUT_DIR RATIO[,RATIO...] WIDTH < paths.txt

Needs pyvips with its binary libvips (`pip install 's2ccrop[bench]'`).
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction

import pyvips


def main() -> None:
    out_dir, width = sys.argv[1], int(sys.argv[3])
    ratios = [Fraction(*map(int, r.split(":"))) for r in sys.argv[2].split(",")]
    for line in sys.stdin:
        path = line.rstrip("\n")
        stem = os.path.splitext(os.path.basename(path))[0]
        for ratio in ratios:
            thumb = pyvips.Image.thumbnail(path, width, height=round(width / ratio), crop="attention")
            thumb.jpegsave(os.path.join(out_dir, f"{stem}_{ratio.numerator}x{ratio.denominator}.jpg"), Q=90)


if __name__ == "__main__":
    main()

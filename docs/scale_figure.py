"""Draw docs/scale.jpg, the README's picture of `--scale`: one photo, three size ranges, side by side.

    python docs/scale_figure.py [PHOTO] [OUT]

Each tile is the contact-sheet tile `s2ccrop preview` draws (io.preview.preview_tile) for the shipped
model's 16:9 and 1:1 crops of the photo, without a range and with two.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from s2ccrop import Cropper
from s2ccrop.io.preview import preview_tile
from s2ccrop.io.writers import write_image

ROOT = Path(__file__).resolve().parent.parent
RANGES = (None, (0.5, 0.75), (0.25, 0.4))


def main(photo: Path = ROOT / "examples" / "chelsea.png", out: Path = ROOT / "docs" / "scale.jpg") -> None:
    image = Image.open(photo).convert("RGB")
    cropper = Cropper(device="cpu")
    tiles = []
    for scale in RANGES:
        crops = cropper.crop(image, ["16:9", "1:1"], scale=scale)
        caption = "no --scale" if scale is None else f"--scale {scale[0]:g},{scale[1]:g}"
        tiles.append(preview_tile(image, crops, caption, tile=360))
    sheet = Image.new("RGB", (sum(t.width for t in tiles), max(t.height for t in tiles)), "white")
    x = 0
    for tile in tiles:
        sheet.paste(tile, (x, 0))
        x += tile.width
    write_image(out, sheet, "JPEG", quality=85)


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))

"""Preview sheets: `preview_tile` draws one photo with its crops (and hints) marked, `ContactSheet`
collects the tiles of a run and writes them as one image (`--preview`, `s2ccrop preview`), through
the same durable, tagged writes as the crops (`writers.write_image`).
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from .formats import DEFAULT_QUALITY
from .render import box_onto, render_pad
from .writers import write_image

_PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))


PAD_INSET = 0.34  # a padded fit is shown as an inset of this share of the tile, in its lower right corner


def preview_tile(image: Image.Image, crops, caption: str, *, tile: int = 480, hints=None,
                 pad_color: str | None = None, size: tuple[int, int] | None = None) -> Image.Image:
    """A thumbnail of the photo with each crop drawn and labelled "ratio score" ("ratio pad score" for
    a padded fit, whose thumbnail is also shown as an inset), captioned below. `hints`
    (`s2ccrop.hints.Hints`) are drawn in white: the keep region as a rectangle, the focus point as a
    ringed cross. `size`: the photo's size, which the crops' boxes refer to, when `image` is a
    reduced decode of it."""
    from PIL import ImageDraw

    from .images import to_rgb

    w, h = size or image.size
    scale = min(tile / w, tile / h)  # small photos are enlarged: a preview is for looking
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    thumb = to_rgb(image.resize((tw, th), Image.Resampling.BILINEAR, reducing_gap=2.0))
    font = _font(12)
    caption_h = 18
    canvas = Image.new("RGB", (tile, tile + caption_h), (24, 24, 24))
    canvas.paste(thumb, ((tile - tw) // 2, (tile - th) // 2))
    draw = ImageDraw.Draw(canvas)
    ox, oy = (tile - tw) // 2, (tile - th) // 2
    for i, crop in enumerate(crops):
        colour = _PALETTE[i % len(_PALETTE)]
        x1, y1, x2, y2 = crop.box
        rect = (ox + x1 * scale, oy + y1 * scale, ox + x2 * scale - 1, oy + y2 * scale - 1)
        padded = getattr(crop, "fit", "crop") == "pad"
        draw.rectangle(rect, outline=colour, width=2)
        label = f"{crop.ratio} {'pad ' if padded else ''}{crop.score:.2f}"
        tx, ty = rect[0] + 3, rect[1] + 3 + 14 * (i % 3)  # stagger labels of boxes sharing a corner
        draw.rectangle(draw.textbbox((tx, ty), label, font=font), fill=(0, 0, 0))
        draw.text((tx, ty), label, fill=colour, font=font)
    if hints:
        _draw_hints(draw, hints, (ox, oy), (tw, th))
    for i, crop in enumerate(crops):
        if getattr(crop, "fit", "crop") == "pad":
            _pad_inset(canvas, image, crop, (w, h), pad_color, _PALETTE[i % len(_PALETTE)], tile)
            break  # one inset: the tile has room for one
    draw.text((4, tile + 3), caption[-70:], fill=(230, 230, 230), font=font)
    return canvas


def _draw_hints(draw, hints, origin: tuple[int, int], size: tuple[int, int]) -> None:
    (ox, oy), (tw, th) = origin, size
    white, black = (255, 255, 255), (0, 0, 0)
    if hints.keep is not None:
        x1, y1, x2, y2 = hints.keep
        rect = (ox + x1 * tw, oy + y1 * th, ox + x2 * tw - 1, oy + y2 * th - 1)
        draw.rectangle(rect, outline=black, width=3)
        draw.rectangle(rect, outline=white, width=1)
    if hints.focus is not None:
        x, y = ox + hints.focus[0] * tw, oy + hints.focus[1] * th
        for colour, width in ((black, 4), (white, 2)):
            draw.ellipse((x - 9, y - 9, x + 9, y + 9), outline=colour, width=width)
            draw.line((x - 14, y, x + 14, y), fill=colour, width=width - 1)
            draw.line((x, y - 14, x, y + 14), fill=colour, width=width - 1)


def _pad_inset(canvas: Image.Image, image: Image.Image, crop, photo_size, pad_color, colour, tile: int) -> None:
    from .images import to_rgb

    w, h = crop.ratio.split(":") if ":" in crop.ratio else (1, 1)
    ratio = float(w) / float(h)
    side = int(tile * PAD_INSET)
    size = (side, max(1, round(side / ratio))) if ratio >= 1 else (max(1, round(side * ratio)), side)
    region = box_onto(crop.box, photo_size, image.size)  # in pixels of a reduced decode
    inset = to_rgb(render_pad(image, region, size, pad_color, (crop.width, crop.height)))
    x, y = tile - size[0] - 6, tile - size[1] - 6
    canvas.paste((255, 255, 255), (x - 2, y - 2, x + size[0] + 2, y + size[1] + 2))
    canvas.paste(inset, (x, y))


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: bitmap font only
        return ImageFont.load_default()


class ContactSheet:
    """Preview tiles collected during a run, composed into one image at the end."""

    def __init__(self, *, tile: int = 480, columns: int = 4, limit: int = 200) -> None:
        self.tile, self.columns, self.limit = tile, columns, limit
        self.tiles: list[Image.Image] = []
        self.dropped = 0

    def add(self, tile: Image.Image) -> None:
        if len(self.tiles) < self.limit:  # bounded memory on huge runs
            self.tiles.append(tile)
        else:
            self.dropped += 1

    def compose(self) -> Image.Image:
        cols = min(self.columns, len(self.tiles))
        rows = -(-len(self.tiles) // cols)
        tw, th = self.tiles[0].size
        sheet = Image.new("RGB", (cols * tw + (cols - 1) * 4, rows * th + (rows - 1) * 4), (0, 0, 0))
        for i, t in enumerate(self.tiles):
            sheet.paste(t, ((i % cols) * (tw + 4), (i // cols) * (th + 4)))
        return sheet

    def save(self, path: "str | os.PathLike[str]", quality: int = DEFAULT_QUALITY) -> None:
        suffix = os.path.splitext(os.fspath(path))[1].lower()
        pil = {".png": "PNG", ".webp": "WEBP"}.get(suffix, "JPEG")
        write_image(Path(path), self.compose(), pil, quality=quality)


__all__ = ["PAD_INSET", "ContactSheet", "preview_tile"]

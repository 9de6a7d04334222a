"""Rendering a crop's pixels: `render_crop` cuts a box out of the upright photo and resamples it to
exactly the size asked in one pass; `render_pad` shows a region whole in a thumbnail of another shape
(a padded fit), centred on a plain colour or on a blurred, darkened copy of the photo.

The resampling is Pillow's Lanczos (`Image.resize(size, LANCZOS, box=box, reducing_gap=3)`). Where the
compiled extension is built and torch is already loaded (as it is once a photo has been scored), the
extension's `lanczos_u8` computes it: the same pixels, in the same fixed-point arithmetic, a few
times faster (`compiled_resize`). Rendering never loads torch for it.
"""

from __future__ import annotations

import sys

import PIL
from PIL import Image

from .formats import round_pixels


def box_onto(box, size: tuple[int, int], image_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """A box in pixels of a photo of `size` as a box in the pixels of a decode of it of `image_size` (a
    reduced JPEG decode; exact where the box is whole and the sizes are equal)."""
    (W, H), (w, h) = size, image_size
    return box[0] * w / W, box[1] * h / H, box[2] * w / W, box[3] * h / H


REDUCING_GAP = 3.0  # Pillow first averages a box 3x (or more) the output's size down by whole factors
# Pillow 13 runs the vertical pass first where the height shrinks more than twice as much as the width;
# the extension follows the Pillow it runs beside, so the pixels are that Pillow's.
_VERTICAL_FIRST = int(PIL.__version__.split(".")[0]) >= 13


def render_crop(image: Image.Image, box: tuple[float, float, float, float], size: tuple[int, int]) -> Image.Image:
    """Cut `box` (pixels of `image`; fractional where it is a reduced decode) out of `image` and
    resample it to exactly `size` in one pass; a whole-pixel box of that size is cut as it is."""
    if size == (box[2] - box[0], box[3] - box[1]) and all(float(v).is_integer() for v in box):
        return image.crop(tuple(int(v) for v in box))
    fast = compiled_resize(image, box, size)
    if fast is not None:
        return fast
    return image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)


def compiled_resize(image: Image.Image, box, size: tuple[int, int]) -> Image.Image | None:
    """`image.resize(size, LANCZOS, box=box, reducing_gap=REDUCING_GAP)`, pixel for pixel, from the
    extension's resampler; None where it does not apply: a mode other than L or RGB, a box Pillow
    would first reduce, torch not loaded (rendering never loads it) or an extension built without it.
    Only the part of `image` the filter reads is handed over: the box widened by its reach."""
    (x1, y1, x2, y2), (w, h) = box, size
    if image.mode not in ("L", "RGB") or "torch" not in sys.modules or w <= 0 or h <= 0:
        return None
    if int((x2 - x1) / w / REDUCING_GAP) > 1 or int((y2 - y1) / h / REDUCING_GAP) > 1:
        return None
    from ..ops import compiled_function

    resize = compiled_function("lanczos_u8")
    if resize is None:
        return None
    W, H = image.size
    # Lanczos-3 reaches 3 output pixels, in input pixels where it shrinks; a pixel more for rounding
    rx, ry = 3 * max(1.0, (x2 - x1) / w), 3 * max(1.0, (y2 - y1) / h)
    held = (max(0, int(x1 - rx) - 1), max(0, int(y1 - ry) - 1), min(W, int(x2 + rx) + 2), min(H, int(y2 + ry) + 2))
    part = image if held == (0, 0, W, H) else image.crop(held)
    data = resize(part.tobytes(), (held[0], held[1], part.width, part.height), (W, H), len(image.getbands()),
                  (float(x1), float(y1), float(x2), float(y2)), w, h, _VERTICAL_FIRST)
    return Image.frombytes(image.mode, size, data)


# ---------------------------------------------------------------- padded fits

PAD_BLUR_SHRINK = 8  # the background is blurred at 1/8 of the thumbnail's size: cheap, and as smooth
PAD_DIM = 0.8  # and a little darker, so the photo itself stands out


def pad_placement(region_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where a region of `region_size` goes in a padded thumbnail of `size`: (x, y, w, h), scaled to
    fit whole and centred."""
    (rw, rh), (w, h) = region_size, size
    scale = min(w / rw, h / rh)
    iw, ih = min(w, max(1, round_pixels(rw * scale))), min(h, max(1, round_pixels(rh * scale)))
    return (w - iw) // 2, (h - ih) // 2, iw, ih


def render_pad(image: Image.Image, region: tuple[float, float, float, float], size: tuple[int, int],
               color: str | None = None, region_size: tuple[int, int] | None = None) -> Image.Image:
    """A thumbnail of exactly `size` that shows `region` of `image` whole (`render_crop` of it, scaled
    to fit and centred; its pixels are exactly those of a direct resize of the region), on `color`, or
    by default on a blurred, darkened copy of the photo scaled to cover the thumbnail. `region_size`:
    the region's size in the photo's pixels where `image` is a reduced decode (it places the region)."""
    x, y, iw, ih = pad_placement(region_size or (region[2] - region[0], region[3] - region[1]), size)
    if color is not None:
        from PIL import ImageColor

        canvas = Image.new(image.mode, size, ImageColor.getcolor(color, image.mode))
    else:
        canvas = _blurred_cover(image, region, size)
    canvas.paste(render_crop(image, region, (iw, ih)), (x, y))
    return canvas


def _blurred_cover(image: Image.Image, region: tuple[int, int, int, int], size: tuple[int, int]) -> Image.Image:
    from PIL import ImageEnhance, ImageFilter

    W, H = size
    iw, ih = image.size
    scale = max(W / iw, H / ih)
    cw, ch = min(iw, W / scale), min(ih, H / scale)  # the part of the photo that covers the thumbnail
    cx, cy = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
    x1, y1 = min(max(cx - cw / 2, 0), iw - cw), min(max(cy - ch / 2, 0), ih - ch)
    small = (max(1, W // PAD_BLUR_SHRINK), max(1, H // PAD_BLUR_SHRINK))
    back = image.resize(small, Image.Resampling.BILINEAR, box=(x1, y1, x1 + cw, y1 + ch), reducing_gap=2.0)
    back = back.filter(ImageFilter.GaussianBlur(max(1.0, max(small) / 24)))
    if back.mode in ("L", "RGB"):
        back = ImageEnhance.Brightness(back).enhance(PAD_DIM)
    return back.resize(size, Image.Resampling.BILINEAR)


__all__ = ["PAD_BLUR_SHRINK", "PAD_DIM", "REDUCING_GAP", "box_onto", "compiled_resize", "pad_placement", "render_crop",
           "render_pad"]

"""Output formats and sizes: what a crop is written as, and at how many pixels.

`choose_format` gives a photo's `OutputFormat` (--format, or the input's own for "same"), known from
its name before it is decoded (--skip-existing needs the output name). `SizeSpec` (--size, --width,
--height, --upscale) and `output_size` give a crop's exact pixel size; `pad_canvas` and `pad_size`
those of a padded fit. Standard library only: arithmetic on names and numbers, no pixels.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ..errors import ConfigError

FORMAT_CHOICES = ("same", "jpg", "png", "webp")
DEFAULT_QUALITY = 90

# Output format by the input's suffix when --format same: the name is known before decoding, which
# --skip-existing needs. Suffixes we cannot write back (gif, ppm, ...) become PNG, which is lossless;
# so does BMP, which has nowhere to carry the Software tag that marks an image as ours.
_SAME_BY_SUFFIX = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".jfif": "JPEG",
    ".png": "PNG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
}
# Phone photos (HEIC/HEIF) are lossy photos that s2ccrop does not encode: their thumbnails are JPEG.
_SAME_AS_JPEG = {".heic", ".heif", ".hif"}
_BY_OPTION = {"jpg": ("JPEG", "jpg"), "jpeg": ("JPEG", "jpg"), "png": ("PNG", "png"), "webp": ("WEBP", "webp")}


@dataclass(frozen=True)
class OutputFormat:
    pil: str  # Pillow format name
    ext: str  # extension without the dot, as it appears in output names


def choose_format(option: str, input_path: "str | os.PathLike[str]") -> OutputFormat:
    """The output format for one input: --format, or the input's own for 'same'."""
    option = option.lower()
    if option in _BY_OPTION:
        return OutputFormat(*_BY_OPTION[option])
    if option != "same":
        raise ConfigError(f"invalid --format {option!r}: choose from {', '.join(FORMAT_CHOICES)}")
    suffix = os.path.splitext(os.fspath(input_path))[1]
    if suffix.lower() in _SAME_AS_JPEG:
        return OutputFormat("JPEG", "jpg")
    pil = _SAME_BY_SUFFIX.get(suffix.lower())
    if pil is None:
        return OutputFormat("PNG", "png")
    return OutputFormat(pil, suffix[1:])


# ---------------------------------------------------------------- sizes


@dataclass(frozen=True)
class SizeSpec:
    """--size WxH (both set), --width or --height (one set), or neither (the crop's own pixels)."""

    width: int | None = None
    height: int | None = None
    upscale: bool = False

    @classmethod
    def parse_size(cls, text: str, upscale: bool = False) -> "SizeSpec":
        w, h = parse_wxh(text)
        return cls(w, h, upscale)


MAX_SIDE = 65_500  # pixels a side of an output may have (JPEG and WebP stop below 65,536 and 16,384)


def parse_wxh(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"invalid size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1920x1080") from None
    if w <= 0 or h <= 0 or w > MAX_SIDE or h > MAX_SIDE:
        raise ConfigError(f"invalid size {text!r}: both sides must be between 1 and {MAX_SIDE} pixels")
    return w, h


def output_size(box_size: tuple[int, int], ratio: float | None, spec: SizeSpec) -> tuple[tuple[int, int], bool]:
    """Pixel size of the written crop, and whether it was kept smaller than asked (no upscaling).

    `ratio` is the requested width/height (None for free-form crops, which keep their own shape):
    deriving the free side from it rather than from the rounded box keeps 16:9 at --width 1280 at 720.
    """
    bw, bh = box_size
    shape = ratio if ratio is not None else bw / bh
    if spec.width and spec.height:
        want = (spec.width, spec.height)
    elif spec.width:
        want = (spec.width, round_pixels(spec.width / shape))
    elif spec.height:
        want = (round_pixels(spec.height * shape), spec.height)
    else:
        return (bw, bh), False
    if not spec.upscale and (want[0] > bw or want[1] > bh):
        return (bw, bh), True
    if max(want) > MAX_SIDE:  # a free-form crop's derived side (fixed ratios are checked with the options)
        raise ValueError(f"it would be {want[0]}x{want[1]} pixels, more than {MAX_SIDE} a side")
    return want, False


def round_pixels(x: float) -> int:
    """`x` rounded half up to whole pixels, at least 1."""
    return max(1, math.floor(x + 0.5))


# ---------------------------------------------------------------- padded fits


def pad_canvas(region_size: tuple[int, int], ratio: float) -> tuple[int, int]:
    """The smallest (w, h) of `ratio` (= w / h) that holds a region of `region_size` at its own pixels."""
    rw, rh = region_size
    if rw >= rh * ratio:
        return rw, max(rh, round_pixels(rw / ratio))
    return max(rw, round_pixels(rh * ratio)), rh


def pad_size(region: tuple[int, int, int, int], ratio: float, spec: SizeSpec) -> tuple[tuple[int, int], bool]:
    """The size of a padded thumbnail of `ratio` for `region`, and whether it was kept smaller than
    asked (as `output_size`: never enlarged unless `spec.upscale`)."""
    canvas = pad_canvas((region[2] - region[0], region[3] - region[1]), ratio)
    return output_size(canvas, ratio, spec)


__all__ = ["DEFAULT_QUALITY", "FORMAT_CHOICES", "MAX_SIDE", "OutputFormat", "SizeSpec", "choose_format", "output_size",
           "pad_canvas", "pad_size", "parse_wxh", "round_pixels"]

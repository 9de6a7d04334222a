"""Plain value types shared by every stage: boxes, aspect ratios and crops."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from .errors import ConfigError

_NUMBER = r"(\d+(?:\.\d+)?|\.\d+)"
_RATIO_RE = re.compile(rf"^\s*{_NUMBER}\s*[:x/]\s*{_NUMBER}\s*$")


@dataclass(frozen=True, order=True)
class Box:
    """Axis-aligned box in pixels; x2 and y2 are exclusive, so width = x2 - x1."""

    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def area(self) -> int:
        return max(self.width, 0) * max(self.height, 0)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x1, self.y1, self.x2, self.y2)

    def inside(self, width: int, height: int) -> bool:
        return 0 <= self.x1 < self.x2 <= width and 0 <= self.y1 < self.y2 <= height


@dataclass(frozen=True)
class Ratio:
    """A requested aspect ratio: width:height as an exact fraction, or free-form ("any")."""

    width: Fraction | None  # None means free-form
    height: Fraction | None

    @classmethod
    def parse(cls, text: "str | Ratio") -> "Ratio":
        """Parse "any", "16:9", "1.91:1", "4x5" or "9/16". Raises ConfigError on anything else."""
        if isinstance(text, Ratio):
            return text
        if not isinstance(text, str):
            raise ConfigError(f"ratio must be a string such as '16:9' or 'any', got {text!r}")
        if text.strip().lower() in ("any", "free", "freeform", "free-form"):
            return cls(None, None)
        m = _RATIO_RE.match(text)
        if not m:
            raise ConfigError(f"invalid ratio {text!r}: expected W:H such as 16:9 or 1.91:1, or 'any'")
        w, h = Fraction(m.group(1)), Fraction(m.group(2))
        if w <= 0 or h <= 0:
            raise ConfigError(f"invalid ratio {text!r}: both sides must be positive")
        value = w / h
        if not (Fraction(1, 100) <= value <= 100):
            raise ConfigError(f"invalid ratio {text!r}: must lie between 1:100 and 100:1")
        return cls(w, h)

    @property
    def is_any(self) -> bool:
        return self.width is None

    @property
    def value(self) -> float:
        """width / height as a float (NaN for free-form)."""
        if self.width is None or self.height is None:
            return math.nan
        return float(self.width / self.height)

    def __str__(self) -> str:
        if self.width is None or self.height is None:
            return "any"
        return f"{_fmt(self.width)}:{_fmt(self.height)}"


def _fmt(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    return f"{float(x):g}"


@dataclass(frozen=True)
class Crop:
    """The chosen crop of one image for one ratio.

    `box` is (x1, y1, x2, y2) in pixels of the upright (EXIF-transposed) image, x2/y2 exclusive.
    `ratio` is the ratio as asked for, normalised ("any" or "W:H"). `score` is the model's score
    (predicted normalised MOS, higher is better). `fit` is "crop" (the box has the ratio and is the
    thumbnail) or "pad" (the box is the region shown whole, scaled into a thumbnail of the ratio whose
    rest is padding; its score is the model's for that framing). `widened`: a size range was asked
    for, and no crop inside it could hold a face or a hint, so this one is the smallest larger that does.
    """

    ratio: str
    box: tuple[int, int, int, int]
    score: float
    fit: str = "crop"
    widened: bool = False

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

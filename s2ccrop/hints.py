"""What a photo's crop must keep, as the user says it: a focus point, a region to keep whole, and how
to fit the photo to a ratio (cut, or pad).

Hints are fractions of the upright photo (0..1 on each axis, x to the right, y down), so one hint holds
for a photo at any size and for every ratio. They come from the command line (`--focus X,Y`,
`--keep X1,Y1,X2,Y2`: every photo of the run), from a sidecar JSON-lines file (`--hints FILE`: one
object per photo, `{"input": PATH, "focus": [x, y], "keep": [x1, y1, x2, y2], "scale": [lo, hi]}`),
or from the API's
keywords. Standard library only: the batch engine plans with these before Pillow or torch load.

A hints file is read and checked whole before any work: a line that is not a JSON object, a field
that is not a hint, a value outside 0..1, a path given twice or one that does not exist is a usage
error naming FILE:LINE (exit 2). A line whose photo the run never meets gets that photo's error line at
the end of the run (exit 1): the hint was not applied.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

from .errors import ConfigError

FITS = ("crop", "pad", "auto")
HINT_FIELDS = ("focus", "keep", "scale")


@dataclass(frozen=True)
class Hints:
    """`focus` (x, y) and `keep` (x1, y1, x2, y2) in fractions of the upright photo, `scale` (lo, hi)
    how large the crops may be (fractions of the largest box of each crop's shape); None when not given."""

    focus: tuple[float, float] | None = None
    keep: tuple[float, float, float, float] | None = None
    scale: tuple[float, float] | None = None

    def __bool__(self) -> bool:
        return self.focus is not None or self.keep is not None or self.scale is not None

    def record(self) -> dict:
        """The JSON fields of the hints given ("focus", "keep", "scale")."""
        out: dict = {}
        for name in HINT_FIELDS:
            if getattr(self, name) is not None:
                out[name] = [round(v, 6) for v in getattr(self, name)]
        return out

    def merged(self, other: "Hints | None") -> "Hints":
        """These hints, with each one `other` gives taking precedence."""
        if not other:
            return self
        return Hints(*(getattr(other, n) if getattr(other, n) is not None else getattr(self, n) for n in HINT_FIELDS))


def fractions(values, count: int, what: str) -> tuple[float, ...]:
    """`count` numbers in 0..1 from a sequence or a comma-separated string; ConfigError saying why not."""
    if isinstance(values, str):
        values = [v for v in values.replace(" ", "").split(",")]
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: expected {count} numbers between 0 and 1, got {values!r}") from None
    if len(numbers) != count:
        raise ConfigError(f"{what}: expected {count} numbers between 0 and 1, got {len(numbers)}")
    if any(isinstance(v, bool) for v in values if not isinstance(v, str)):
        raise ConfigError(f"{what}: expected numbers, got {values!r}")
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in numbers):
        raise ConfigError(f"{what}: {', '.join(f'{v:g}' for v in numbers)} is outside the photo; give fractions "
                          "of its width and height, between 0 and 1")
    return numbers


def parse_focus(value, what: str = "--focus") -> tuple[float, float] | None:
    """X,Y as fractions of the upright photo (None stays None)."""
    if value is None:
        return None
    x, y = fractions(value, 2, what)
    return (x, y)


def parse_scale(value, what: str = "--scale") -> tuple[float, float] | None:
    """LO,HI: how large a crop may be, as fractions of the largest box of its shape in the photo, with
    0 < LO <= HI <= 1 (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",")]
    try:
        numbers = tuple(float(v) for v in value)
        ok = len(numbers) == 2 and not any(isinstance(v, bool) for v in value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"{what}: expected LO,HI, two numbers such as 0.4,0.7, got {value!r}")
    lo, hi = numbers
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi <= 1):
        raise ConfigError(f"{what}: {lo:g},{hi:g} is not a range of sizes; give LO,HI with 0 < LO <= HI <= 1 "
                          "(fractions of the largest crop of each ratio)")
    return (lo, hi)


def parse_keep(value, what: str = "--keep") -> tuple[float, float, float, float] | None:
    """X1,Y1,X2,Y2 as fractions, X1 < X2 and Y1 < Y2 (None stays None)."""
    if value is None:
        return None
    x1, y1, x2, y2 = fractions(value, 4, what)
    if not (x1 < x2 and y1 < y2):
        raise ConfigError(f"{what}: the region {x1:g},{y1:g},{x2:g},{y2:g} is empty; give X1,Y1,X2,Y2 with "
                          "X1 < X2 and Y1 < Y2 (left, top, right, bottom)")
    return (x1, y1, x2, y2)


def path_key(path: "str | os.PathLike[str]") -> str:
    """How a photo is looked up in a hints file: its real, absolute path (./a.jpg, a.jpg and a link to it
    are one photo)."""
    return os.path.realpath(os.fspath(path))


@dataclass
class HintsFile:
    """A parsed `--hints` file: the hints of each photo (by `path_key`) and the line that gave them."""

    path: str
    table: dict[str, tuple[Hints, int, str]]  # key -> (hints, line number, the path as written)

    @classmethod
    def read(cls, path: "str | os.PathLike[str]") -> "HintsFile":
        """Parse and check every line (ConfigError naming FILE:LINE). Paths are relative to the
        current folder, as the command line's own paths and its --json "input" are."""
        name = os.fspath(path)
        try:
            with open(name, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(f"--hints {name}: cannot read it: {str(reason).lower()}") from None
        table: dict[str, tuple[Hints, int, str]] = {}
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"--hints {name}:{number}"
            input_path, hints = parse_line(line, where)
            if not os.path.isfile(input_path):
                raise ConfigError(f"{where}: input {input_path!r} is not a file (paths are relative to the "
                                  "current folder)")
            key = path_key(input_path)
            if key in table:
                raise ConfigError(f"{where}: {input_path!r} already has hints on line {table[key][1]}")
            table[key] = (hints, number, input_path)
        return cls(name, table)

    def lookup(self, path: "str | os.PathLike[str]") -> Hints | None:
        found = self.table.get(path_key(path))
        return found[0] if found is not None else None


def parse_line(line: str, where: str) -> tuple[str, Hints]:
    """One hints-file line: (input path, its hints); ConfigError saying what is wrong with it."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not a JSON object ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: not a JSON object but {type(obj).__name__}")
    unknown = sorted(set(obj) - {"input", *HINT_FIELDS})
    if unknown:
        raise ConfigError(f"{where}: unknown field {', '.join(map(repr, unknown))}; a line has \"input\" and "
                          "\"focus\" [x, y], \"keep\" [x1, y1, x2, y2] and/or \"scale\" [lo, hi]")
    input_path = obj.get("input")
    if not isinstance(input_path, str) or not input_path:
        raise ConfigError(f"{where}: \"input\" must be the photo's path (a string)")
    if not any(obj.get(k) is not None for k in HINT_FIELDS):
        raise ConfigError(f"{where}: no hint for {input_path!r}: give \"focus\", \"keep\" and/or \"scale\"")
    for k in HINT_FIELDS:
        if obj.get(k) is not None and not isinstance(obj[k], list):
            raise ConfigError(f"{where}: \"{k}\" must be a list of numbers")
    hints = Hints(parse_focus(obj.get("focus"), f"{where}: \"focus\""),
                  parse_keep(obj.get("keep"), f"{where}: \"keep\""),
                  parse_scale(obj.get("scale"), f"{where}: \"scale\""))
    return input_path, hints


def check_fit(fit: str, pad_color: str | None) -> tuple[str, str | None]:
    """The fit mode (crop, pad, auto) and the padding colour (None: a blurred copy of the photo)."""
    fit = str(fit).lower()
    if fit not in FITS:
        raise ConfigError(f"--fit {fit}: invalid choice (choose from {', '.join(FITS)})")
    if pad_color is not None:
        if fit == "crop":
            raise ConfigError("--pad-color needs --fit pad or --fit auto")
        pad_color = check_color(pad_color)
    return fit, pad_color


def check_color(text: str) -> str:
    """A colour Pillow knows (#rrggbb, #rgb, rgb(...), a CSS name); ConfigError otherwise. Pillow is
    imported here only when a colour is given."""
    from PIL import ImageColor

    try:
        ImageColor.getrgb(text)
    except ValueError:
        raise ConfigError(f"--pad-color {text!r}: not a colour (use #rrggbb, #rgb or a name such as white)") from None
    return text


__all__ = ["FITS", "Hints", "HintsFile", "check_color", "check_fit", "fractions", "parse_focus", "parse_keep",
           "parse_line", "parse_scale", "path_key"]

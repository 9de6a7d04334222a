"""A run's options: `Settings`, built from keyword arguments (the command line's options) and checked
when built, so that a bad option is one `ConfigError` before any photo is touched.

    from s2ccrop.settings import Settings
    settings = Settings(["photos/"], ratios=["16:9", "1:1"], output="thumbs", width=1080)

Also the limits the command line shows (`FORMATS`, `DEFAULT_WORKERS`, `MAX_JOBS`) and `range_phrase`,
what a whole number out of range is told. Only the standard library and light s2ccrop modules load at
import; Pillow loads when settings are built (the default pixel limit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from .errors import ConfigError
from .hints import Hints, HintsFile, check_fit, parse_focus, parse_keep, parse_scale
from .io.formats import MAX_SIDE, SizeSpec, parse_wxh
from .io.paths import DEFAULT_TEMPLATE, check_distinct, check_template
from .presets import RatioRequest, resolve_ratios
from .report import display
from .types import Ratio

FORMATS = ("same", "jpg", "png", "webp")
DEFAULT_WORKERS = 2
MAX_JOBS = 256


@dataclass
class Settings:
    """The options of one run, as keyword arguments; checked when built (ConfigError says what is wrong).

    `paths`: photos, folders, or "-" for paths read from the run's stdin (NUL-separated with `null`).
    `ratios`: W:H ("16:9", "1.91:1"), "any", preset or group names; None: the "default" group.
    `output`: the output folder (the input tree is mirrored below it); None: beside each photo.
    `name`: output file name template ({stem} {ratio} {preset} {ext}; "/" makes subfolders).
    `size` ("WxH", sets the ratio when `ratios` is None) or `width` or `height`: exact output pixels,
    never enlarged unless `upscale`. `format`: same, jpg, png or webp. `max_pixels`: refuse larger
    images (None: the default limit of io.images, 0: no limit). `jobs`: processes on CPU (None: one
    per core); `workers`: decode/write threads beside the model in one process. `preview`: also
    write a contact sheet there; `preview_only`: write nothing else (a dry run).
    `focus` ("X,Y" or (x, y)) and `keep` ("X1,Y1,X2,Y2" or a sequence): hints for every photo, in
    fractions of the upright photo, and `scale` ("LO,HI" or (lo, hi)): how large crops may be, as fractions
    of the largest box of each crop's shape; `hints`: a JSON-lines file of hints per photo (`s2ccrop.hints`),
    whose lines take precedence. `fit`: crop (cut to the ratio), pad (show the model's framing whole,
    padded to the ratio) or auto (pad only when every candidate of a ratio cuts a face, a hint or the
    model's subject); `pad_color`: the padding's colour (None: a blurred copy of the photo).
    """

    paths: Sequence["str | os.PathLike[str]"] = ()
    ratios: Sequence[str] | None = None
    output: "str | os.PathLike[str] | None" = None
    name: str = DEFAULT_TEMPLATE
    size: str | None = None
    width: int | None = None
    height: int | None = None
    upscale: bool = False
    format: str = "same"
    quality: int = 90
    json: bool = False
    quiet: bool = False
    dry_run: bool = False
    skip_existing: bool = False
    recursive: bool = True
    null: bool = False
    max_pixels: int | None = None
    weights: str | None = None
    device: str = "auto"
    face_guard: bool = True
    jobs: int | None = None
    workers: int = DEFAULT_WORKERS
    preview: "str | os.PathLike[str] | None" = None
    preview_only: bool = False
    focus: "str | Sequence[float] | None" = None
    keep: "str | Sequence[float] | None" = None
    scale: "str | Sequence[float] | None" = None
    hints: "str | os.PathLike[str] | None" = None
    fit: str = "crop"
    pad_color: str | None = None
    # Worked out from the options above when built:
    requests: list[RatioRequest] = field(init=False, repr=False)
    size_spec: SizeSpec = field(init=False, repr=False)
    out_dir: Path | None = field(init=False, repr=False)
    preview_path: Path | None = field(init=False, repr=False)
    pixel_limit: int | None = field(init=False, repr=False)
    base_hints: Hints = field(init=False, repr=False)  # --focus / --keep: every photo's
    hint_file: HintsFile | None = field(init=False, repr=False)  # --hints, read and checked

    def __post_init__(self) -> None:
        from .io.images import DEFAULT_MAX_PIXELS

        self.paths = [os.fspath(p) for p in ([self.paths] if isinstance(self.paths, (str, os.PathLike)) else self.paths)]
        if not self.paths:
            raise ConfigError("no input: give photos or folders, or - to read paths from stdin")
        if "" in self.paths:  # Path("") is ".": an unset shell variable must not crop the current folder
            raise ConfigError("an empty PATH argument (an unset shell variable?): give a photo or a folder "
                              "(. for the current one)")
        for option, value in (("-o", self.output), ("--preview", self.preview), ("--hints", self.hints)):
            if value is not None and os.fspath(value) == "":  # Path("") is "." as well
                raise ConfigError(f"{option}: an empty path (an unset shell variable?): give a file or folder "
                                  "(. for the current folder)")
        self._check_numbers()
        self.format = self.format.lower()
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format}: invalid choice (choose from {', '.join(FORMATS)})")
        given = [f"--{k}" for k in ("size", "width", "height") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(f"{given[1]} is not allowed with {given[0]}: give one of --size, --width, --height")
        ratios = list(self.ratios) if self.ratios else None
        if self.size is not None:
            w, h = parse_wxh(self.size)
            self.size_spec = SizeSpec(w, h, self.upscale)
            shape = Fraction(w, h)
            ratios = ratios or [str(Ratio(Fraction(shape.numerator), Fraction(shape.denominator)))]
        else:
            self.size_spec = SizeSpec(self.width, self.height, self.upscale)
        self.requests = resolve_ratios(ratios)
        if self.size is not None:
            self._check_size_fits()
        self._check_derived_sides()
        check_template(self.name)
        check_distinct(self.name, [(r.slug, r.label) for r in self.requests])
        self.out_dir = Path(self.output).expanduser() if self.output is not None else None
        if self.out_dir is not None and self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"-o {display(self.output)}: exists and is not a folder")
        if self.preview_only and self.preview is None:
            raise ConfigError("preview_only needs a preview file")
        self.dry_run = self.dry_run or self.preview_only
        self.preview_path = Path(self.preview) if self.preview is not None else None
        self.pixel_limit = DEFAULT_MAX_PIXELS if self.max_pixels is None else (self.max_pixels or None)
        self.base_hints = Hints(parse_focus(self.focus), parse_keep(self.keep), parse_scale(self.scale))
        self.hint_file = HintsFile.read(self.hints) if self.hints is not None else None
        self.fit, self.pad_color = check_fit(self.fit, self.pad_color)

    def __getstate__(self) -> dict:
        # Settings travel to Ray tasks with every batch, where a copy may be rebuilt (dataclasses.replace):
        # the hints file stays with the process that plans; each photo's hints travel in its job.
        return {**self.__dict__, "hints": None, "hint_file": None}

    def hints_for(self, path: "str | os.PathLike[str]") -> Hints:
        """The hints of one photo: --focus/--keep, with its --hints line taking precedence."""
        found = self.hint_file.lookup(path) if self.hint_file is not None else None
        return self.base_hints.merged(found)

    def _check_numbers(self) -> None:
        for option, value, low, high in (("--quality", self.quality, 1, 100), ("--jobs", self.jobs, 1, MAX_JOBS),
                                         ("--workers", self.workers, 0, None), ("--width", self.width, 1, MAX_SIDE),
                                         ("--height", self.height, 1, MAX_SIDE), ("--max-pixels", self.max_pixels, 0, None)):
            if value is not None and not (low <= value and (high is None or value <= high)):
                raise ConfigError(f"{option} {value}: {range_phrase(low, high)}")

    def _check_derived_sides(self) -> None:
        """--width W or --height H gives each fixed ratio's other side: at most MAX_SIDE too."""
        for req in self.requests:
            r = Ratio.parse(req.ratio)
            if r.is_any:
                continue
            if self.width is not None and self.width / r.value > MAX_SIDE:
                raise ConfigError(f"--width {self.width}: {req.ratio} crops would be {round(self.width / r.value)} "
                                  f"pixels high (at most {MAX_SIDE})")
            if self.height is not None and self.height * r.value > MAX_SIDE:
                raise ConfigError(f"--height {self.height}: {req.ratio} crops would be {round(self.height * r.value)} "
                                  f"pixels wide (at most {MAX_SIDE})")

    def _check_size_fits(self) -> None:
        """--size WxH must have each ratio's shape (within a pixel), or the photo would be distorted."""
        for req in self.requests:
            r = Ratio.parse(req.ratio)
            if r.is_any or abs(self.size_spec.width - self.size_spec.height * r.value) > 1.0:
                raise ConfigError(
                    f"--size {self.size} does not have the ratio {req.ratio}; give that ratio its own run, "
                    "or use --width/--height, which follow each ratio"
                )


def range_phrase(low: int, high: int | None) -> str:
    """What a whole number outside [low, high] is told (high None: no upper bound)."""
    if high is not None:
        return f"must be between {low} and {high}"
    return "must not be negative" if low == 0 else f"must be at least {low}"


__all__ = ["DEFAULT_WORKERS", "FORMATS", "MAX_JOBS", "Settings", "range_phrase"]

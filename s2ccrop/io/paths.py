"""Input discovery and output naming.

Inputs are streamed: a folder is read one directory at a time and `-` reads paths from stdin as they
arrive, so a library of a million photos never sits in memory as one list.

Walk rules: names starting with "." are skipped (macOS `._photo.jpg` forks, `.thumbnails`); inside
folders only files with an image extension are taken (an explicitly named file is always tried;
.heic/.heif only when pillow-heif can read them, else the walk yields them as `Skipped`);
symlinked folders are not followed (no loops); entries come in sorted order, files of a folder before
its subfolders, so runs are reproducible.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable, Iterator

from ..errors import ConfigError

IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .webp .bmp .dib .tif .tiff .gif .ppm .pgm .pbm .pnm .tga .jp2 .avif".split()
)

# Phone photos: read with the optional pillow-heif (the heif extra).
HEIF_EXTENSIONS = frozenset(".heic .heif .hif".split())
HEIF_HELP = "pip install 's2ccrop[heif]'"
HEIF_MISSING = "a HEIC/HEIF photo, and pillow-heif is not installed (the heif extra)"

DEFAULT_TEMPLATE = "{stem}_{ratio}.{ext}"
TEMPLATE_FIELDS = frozenset({"stem", "ratio", "preset", "ext"})


@dataclass(frozen=True)
class InputPath:
    """A photo to process. `rel` is its place below the folder it was found in (the tree -o mirrors);
    `named`: given as a command-line argument (not found in a folder or read from stdin)."""

    path: Path
    rel: PurePosixPath
    named: bool = False


@dataclass(frozen=True)
class WalkError:
    """A path that could not be listed or does not exist; reported as one error line."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Skipped:
    """A photo in a folder that this installation cannot read (a HEIC without pillow-heif): not
    cropped; the batch engine says once how to read such photos."""

    path: Path
    reason: str


def is_image_name(name: str) -> bool:
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_EXTENSIONS or (suffix in HEIF_EXTENSIONS and heif_installed())


@functools.cache
def heif_installed() -> bool:
    """Whether pillow-heif is installed (found, not imported: io.images registers it when decoding)."""
    return importlib.util.find_spec("pillow_heif") is not None


def iter_inputs(
    args: Iterable[str],
    *,
    recursive: bool = True,
    stdin: BinaryIO | None = None,
    null: bool = False,
    exclude_dirs: Iterable[Path] = (),
) -> Iterator[InputPath | WalkError | Skipped]:
    """Yield inputs for command-line `args` in order; `-` splices in the paths read from `stdin`.

    `exclude_dirs` are never entered (the output folder when it lies inside an input folder).
    """
    excluded = {_real(d) for d in exclude_dirs}
    stdin_used = False
    for arg in args:
        if arg == "-":
            if stdin_used:
                continue  # stdin can be read only once
            stdin_used = True
            if stdin is None:
                yield WalkError(Path("-"), "standard input is not available")
                continue
            for line in read_path_list(stdin, null=null):
                yield from _expand(line, recursive, excluded, named=False)
        else:
            yield from _expand(arg, recursive, excluded, named=True)


def read_path_list(stream: BinaryIO, *, null: bool = False, chunk: int = 1 << 16) -> Iterator[str]:
    """Paths from a byte stream, one per line (or NUL-separated), decoded as the OS does file names."""
    if not null:
        for raw in stream:
            raw = raw.rstrip(b"\n").rstrip(b"\r")
            if raw:
                yield os.fsdecode(raw)
        return
    pending = b""
    while True:
        data = stream.read(chunk)
        if not data:
            break
        *complete, pending = (pending + data).split(b"\0")
        yield from (os.fsdecode(p) for p in complete if p)
    if pending:
        yield os.fsdecode(pending)


def _expand(arg: str, recursive: bool, excluded: set[str], *, named: bool):
    path = Path(arg)
    try:
        is_dir = path.is_dir()
        exists = is_dir or os.path.lexists(path)
    except OSError as exc:
        yield WalkError(path, _reason(exc))
        return
    if not exists:
        yield WalkError(path, "no such file or directory")
    elif is_dir:
        yield from walk_folder(path, recursive=recursive, excluded=excluded)
    else:
        yield InputPath(path, PurePosixPath(path.name), named=named)


def walk_folder(
    root: Path,
    *,
    recursive: bool = True,
    excluded: set[str] | None = None,
) -> Iterator[InputPath | WalkError | Skipped]:
    """Depth-first, sorted walk of `root` yielding image files; unreadable folders become WalkErrors,
    photos this installation cannot read `Skipped`."""
    excluded = excluded or set()
    stack: list[tuple[Path, PurePosixPath]] = [(root, PurePosixPath())]
    while stack:
        folder, rel = stack.pop()
        if _real(folder) in excluded:
            continue
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield WalkError(folder, _reason(exc))
            continue
        files, subdirs, unreadable = _split(entries)
        for name in files:
            yield InputPath(folder / name, rel / name)
        for name in unreadable:
            yield Skipped(folder / name, "HEIC/HEIF photos need pillow-heif")
        if recursive:
            stack.extend((folder / name, rel / name) for name in reversed(subdirs))


def _split(entries: list[os.DirEntry]) -> tuple[list[str], list[str], list[str]]:
    files, subdirs, unreadable = [], [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            real_dir = entry.is_dir(follow_symlinks=False)
            link_to_dir = not real_dir and entry.is_symlink() and entry.is_dir()
        except OSError:
            real_dir = link_to_dir = False
        if real_dir:
            subdirs.append(entry.name)
        elif not link_to_dir and is_image_name(entry.name):
            # A broken or looping symlink lands here too and fails later with a one-line error.
            files.append(entry.name)
        elif not link_to_dir and os.path.splitext(entry.name)[1].lower() in HEIF_EXTENSIONS:
            unreadable.append(entry.name)
    return files, subdirs, unreadable


def _real(path: Path) -> str:
    return os.path.realpath(path)


def _reason(exc: OSError) -> str:
    return (exc.strerror or str(exc)).lower() if isinstance(exc, OSError) else str(exc)


# ---------------------------------------------------------------- output names


def check_template(template: str) -> None:
    """Reject unknown fields and templates that would escape the output folder."""
    try:
        parsed = [(f, conversion) for _, f, _, conversion in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ConfigError(f"invalid --name template {template!r}: {exc}") from None
    fields = {f for f, _ in parsed}
    converted = [f"{{{f}!{c}}}" for f, c in parsed if c is not None]
    if converted:  # {ratio!r} would put quotes in the name
        raise ConfigError(f"invalid --name template {template!r}: {converted[0]}: conversions (!r, !s, !a) are "
                          "not allowed; write the field alone")
    unknown = fields - TEMPLATE_FIELDS
    if unknown or "" in fields:
        raise ConfigError(
            f"invalid --name template {template!r}: unknown field(s) {', '.join(sorted(unknown)) or '{}'}; "
            f"use {', '.join('{' + f + '}' for f in sorted(TEMPLATE_FIELDS))}"
        )
    if "stem" not in fields:
        raise ConfigError(f"invalid --name template {template!r}: it must contain {{stem}} so photos do not collide")
    sample = render_name(template, stem="x", ratio="1x1", preset="square", ext="jpg")
    if not sample.strip():
        raise ConfigError(f"invalid --name template {template!r}: it renders an empty name")


def check_distinct(template: str, slugs_and_labels: list[tuple[str, str]]) -> None:
    """Several ratios must not map one photo to the same output name."""
    names = [render_name(template, stem="x", ratio=s, preset=p, ext="jpg") for s, p in slugs_and_labels]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"--name template {template!r} gives the same file name for different ratios; include {{ratio}}"
        )


def render_name(template: str, *, stem: str, ratio: str, preset: str, ext: str) -> str:
    """The output name `template` gives; ConfigError for a bad format spec ({stem:d}) or a name that
    leaves the output folder (which may depend on the photo: a stem of "..")."""
    try:
        name = template.format(stem=stem, ratio=ratio, preset=preset, ext=ext)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ConfigError(f"invalid --name template {template!r}: {exc}") from None
    parts = PurePosixPath(name.replace(os.sep, "/")).parts
    if name.startswith(("/", os.sep)) or ".." in parts or "\0" in name:
        raise ConfigError(f"--name template {template!r} gives {name!r}, which leaves the output folder")
    return name


def output_path(item: InputPath, out_dir: Path | None, name: str) -> Path:
    """Where the output `name` of `item` goes: beside the input, or mirrored below `out_dir`."""
    if out_dir is None:
        return item.path.parent / name
    return out_dir.joinpath(*item.rel.parent.parts) / name

"""Writing crops: exact output sizes, formats, ICC profiles, and atomic replacement.

Every file is written to a hidden temporary file in the destination folder, checked to hold every
byte written (a full disk is an error, never a shorter file), flushed to disk, then renamed over the
destination with `os.replace`: a reader (or a crash, or Ctrl-C) sees either the old file, the complete
new one, or nothing, never half an image. Temporary names start with "." so a folder walk never
mistakes them for photos.

Every image written here says so: its Software tag (EXIF for JPEG/WebP/TIFF, a PNG text chunk) is
"s2ccrop VERSION". An image is replaced only when it carries that tag (`written_by_s2ccrop`): an
earlier run's output is replaced, a photo or another program's file of the same name never is.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import math
import os
import secrets
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from PIL import Image

from .._version import __version__
from ..errors import ConfigError
from ..interrupts import temp_file
from .images import flatten, open_regular_file

FORMAT_CHOICES = ("same", "jpg", "png", "webp")
DEFAULT_QUALITY = 90
OWNER = "s2ccrop"
SOFTWARE = f"{OWNER} {__version__}"  # the Software tag of every image written here
SOFTWARE_TAG = 0x0131  # EXIF/TIFF "Software"

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
_NO_ALPHA = {"JPEG", "BMP"}
_RGB_ONLY = {"WEBP"}


class Cancelled(Exception):
    """The run was interrupted before this file could be put in place; nothing was written."""


class Occupied(FileExistsError):
    """The destination holds a file s2ccrop did not write (a photo, another program's file): it is left alone."""

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        super().__init__(errno.EEXIST, "a file s2ccrop did not write is there; it is left alone", os.fspath(path))


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


def parse_wxh(text: str) -> tuple[int, int]:
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"invalid size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 1920x1080") from None
    if w <= 0 or h <= 0 or w > 65_500 or h > 65_500:
        raise ConfigError(f"invalid size {text!r}: both sides must be between 1 and 65500 pixels")
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
        want = (spec.width, _round(spec.width / shape))
    elif spec.height:
        want = (_round(spec.height * shape), spec.height)
    else:
        return (bw, bh), False
    if not spec.upscale and (want[0] > bw or want[1] > bh):
        return (bw, bh), True
    return want, False


def _round(x: float) -> int:
    return max(1, math.floor(x + 0.5))


# ---------------------------------------------------------------- encoding


def render_crop(image: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int]) -> Image.Image:
    """Cut `box` out of `image` and resample it to exactly `size` in one pass."""
    if size == (box[2] - box[0], box[3] - box[1]):
        return image.crop(box)
    return image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)


# ---------------------------------------------------------------- padded fits

PAD_BLUR_SHRINK = 8  # the background is blurred at 1/8 of the thumbnail's size: cheap, and as smooth
PAD_DIM = 0.8  # and a little darker, so the photo itself stands out


def pad_canvas(region_size: tuple[int, int], ratio: float) -> tuple[int, int]:
    """The smallest (w, h) of `ratio` (= w / h) that holds a region of `region_size` at its own pixels."""
    rw, rh = region_size
    if rw >= rh * ratio:
        return rw, max(rh, _round(rw / ratio))
    return max(rw, _round(rh * ratio)), rh


def pad_placement(region_size: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where a region of `region_size` goes in a padded thumbnail of `size`: (x, y, w, h), scaled to
    fit whole and centred."""
    (rw, rh), (w, h) = region_size, size
    scale = min(w / rw, h / rh)
    iw, ih = min(w, max(1, _round(rw * scale))), min(h, max(1, _round(rh * scale)))
    return (w - iw) // 2, (h - ih) // 2, iw, ih


def render_pad(image: Image.Image, region: tuple[int, int, int, int], size: tuple[int, int],
               color: str | None = None) -> Image.Image:
    """A thumbnail of exactly `size` that shows `region` of `image` whole (`render_crop` of it, scaled
    to fit and centred; its pixels are exactly those of a direct resize of the region), on `color`, or
    by default on a blurred, darkened copy of the photo scaled to cover the thumbnail."""
    region = tuple(int(v) for v in region)
    x, y, iw, ih = pad_placement((region[2] - region[0], region[3] - region[1]), size)
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


def pad_size(region: tuple[int, int, int, int], ratio: float, spec: "SizeSpec") -> tuple[tuple[int, int], bool]:
    """The size of a padded thumbnail of `ratio` for `region`, and whether it was kept smaller than
    asked (as `output_size`: never enlarged unless `spec.upscale`)."""
    canvas = pad_canvas((region[2] - region[0], region[3] - region[1]), ratio)
    return output_size(canvas, ratio, spec)


def prepare_for(image: Image.Image, pil_format: str, icc: bytes | None) -> tuple[Image.Image, bytes | None]:
    """Adapt the mode to what the format stores; a grey profile cannot describe RGB pixels, so drop it."""
    if pil_format in _NO_ALPHA:
        image = flatten(image)
    if pil_format in _RGB_ONLY and image.mode in ("L", "LA"):
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
        icc = None
    return image, icc


def save_image(fh: BinaryIO, image: Image.Image, pil_format: str, quality: int, icc: bytes | None) -> None:
    kwargs: dict = {}
    if icc and pil_format in ("JPEG", "PNG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = icc
    if pil_format in ("JPEG", "WEBP"):
        kwargs["quality"] = quality
    kwargs.update(_software_tag(pil_format))
    image.save(fh, format=pil_format, **kwargs)


def _software_tag(pil_format: str) -> dict:
    """Save keywords that mark the image as written by s2ccrop (see `written_by_s2ccrop`)."""
    if pil_format == "PNG":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("Software", SOFTWARE)
        return {"pnginfo": info}
    if pil_format == "TIFF":
        return {"tiffinfo": {SOFTWARE_TAG: SOFTWARE}}
    if pil_format in ("JPEG", "WEBP"):
        exif = Image.Exif()
        exif[SOFTWARE_TAG] = SOFTWARE
        return {"exif": exif.tobytes()}
    return {}


def written_by_s2ccrop(path: "str | os.PathLike[str]") -> bool:
    """Whether `path` is an image s2ccrop wrote (its Software tag says so): such a file may be replaced
    by a later run. A photo, another program's file, a link, a folder, a missing path: False."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open_regular_file(path) as fh, Image.open(fh) as im:
            software = im.info.get("Software") if im.format == "PNG" else im.getexif().get(SOFTWARE_TAG)
    except Exception:  # unreadable, not an image: not ours either way
        return False
    return isinstance(software, str) and software.split(" ", 1)[0] == OWNER


def write_image(
    path: Path,
    image: Image.Image,
    pil_format: str,
    *,
    quality: int = DEFAULT_QUALITY,
    icc: bytes | None = None,
    cancel: threading.Event | None = None,
    batch: "WriteBatch | None" = None,
) -> None:
    """Write `image` to `path` (atomically, tagged as ours); a file already there is replaced only if
    s2ccrop wrote it (else `Occupied`). With `batch`, staged: in place once the batch commits."""
    image, icc = prepare_for(image, pil_format, icc)
    atomic_write(path, lambda fh: save_image(fh, image, pil_format, quality, icc), cancel=cancel,
                 may_replace=written_by_s2ccrop, batch=batch)


def write_crop(
    path: Path,
    image: Image.Image,
    box: tuple[int, int, int, int],
    size: tuple[int, int],
    fmt: OutputFormat,
    *,
    quality: int = DEFAULT_QUALITY,
    icc: bytes | None = None,
    cancel: threading.Event | None = None,
    pad: bool = False,
    pad_color: str | None = None,
    batch: "WriteBatch | None" = None,
) -> None:
    """Write `box` of the upright `image` to `path` at exactly `size` pixels; with `pad`, `box` shown
    whole in a thumbnail of `size` (`render_pad`). With `batch`, staged (`WriteBatch`)."""
    rendered = render_pad(image, box, size, pad_color) if pad else render_crop(image, box, size)
    write_image(path, rendered, fmt.pil, quality=quality, icc=icc, cancel=cancel, batch=batch)


# ---------------------------------------------------------------- atomic files


def atomic_write(
    path: "str | os.PathLike[str]",
    write: Callable[[BinaryIO], None],
    *,
    cancel: threading.Event | None = None,
    may_replace: Callable[[Path], bool] | None = None,
    batch: "WriteBatch | None" = None,
) -> None:
    """Create or replace `path` with what `write(fh)` produces, all or nothing. With `may_replace`, an
    existing `path` is replaced only if `may_replace(path)` (else `Occupied`), checked just before.
    With `batch`, the complete temporary file is staged instead: `batch.commit()` makes it durable and
    renames it into place, with the batch's other files (one sync for all of them).

    `fh` is a `CheckedFile`: every byte given to it reaches the file or an OSError says why (a full
    disk, a file size limit); the file's size is checked against what was written before it is put
    in place.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where the folder should be: say so, not "File exists"
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), os.fspath(path.parent)) from None
    tmp = temp_path_for(path)
    if batch is not None:
        batch.stage(tmp, path, write, cancel, may_replace)
        return
    with temp_file(tmp):  # registered while it exists: a signal that ends the process deletes it
        # os.open rather than tempfile: the final file gets the usual 0666 & ~umask, not tempfile's 0600.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                checked = CheckedFile(fh, os.fspath(tmp))
                write(checked)
                fh.flush()
                checked.verify()
                os.fsync(fh.fileno())
            if cancel is not None and cancel.is_set():
                raise Cancelled(str(path))
            if may_replace is not None and os.path.lexists(path) and not may_replace(path):
                raise Occupied(path)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class WriteBatch:
    """Outputs written as complete temporary files, then made durable together and renamed into place:
    one sync of their filesystem (Linux `syncfs`; elsewhere one fsync per file) instead of one fsync per
    file, then the renames, then one fsync per folder so that the renames last too. The guarantees of
    `atomic_write` hold for each file: only complete files are renamed, a file s2ccrop did not write is
    never replaced (checked just before its rename), a cancelled batch renames nothing more, and every
    temporary file is registered for deletion on a stop signal until it is renamed or deleted.

        with WriteBatch() as batch:
            atomic_write(a, write_a, batch=batch); atomic_write(b, write_b, batch=batch)
            batch.commit()        # a and b in place; leaving the block deletes what was not committed

    `committed`: the paths put in place, in order.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path, threading.Event | None, Callable[[Path], bool] | None]] = []
        self._stack = contextlib.ExitStack()
        self.committed: list[Path] = []

    def __enter__(self) -> "WriteBatch":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def stage(self, tmp: Path, path: Path, write: Callable[[BinaryIO], None], cancel, may_replace) -> None:
        """Write `tmp` completely (as `atomic_write` does, without its fsync) and keep it for `commit`."""
        self._stack.enter_context(temp_file(tmp))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            with os.fdopen(fd, "wb") as fh:
                checked = CheckedFile(fh, os.fspath(tmp))
                write(checked)
                fh.flush()
                checked.verify()
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._staged.append((tmp, path, cancel, may_replace))

    def commit(self) -> list[Path]:
        """Sync the staged files, rename them into place in order, sync their folders; the paths put
        in place. On an error (`Cancelled`, `Occupied`, OSError) the files before it stay in place
        (`committed`) and the rest are deleted."""
        staged, self._staged = self._staged, []
        try:
            _sync_files([tmp for tmp, *_ in staged])
            for i, (tmp, path, cancel, may_replace) in enumerate(staged):
                if cancel is not None and cancel.is_set():
                    raise Cancelled(str(path))
                if may_replace is not None and os.path.lexists(path) and not may_replace(path):
                    raise Occupied(path)
                os.replace(tmp, path)
                self.committed.append(path)
            _sync_folders({path.parent for path in self.committed})
        except BaseException:
            for tmp, *_ in staged:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise
        finally:
            self._stack.close()
            self._stack = contextlib.ExitStack()
        return list(self.committed)

    def discard(self) -> None:
        """Delete every staged file not yet committed."""
        staged, self._staged = self._staged, []
        for tmp, *_ in staged:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._stack.close()
        self._stack = contextlib.ExitStack()


def _syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(fd) on Linux (flushes one filesystem), else None."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def _sync_files(paths: list[Path]) -> None:
    """Make the data of `paths` durable: one syncfs per filesystem they are on, or an fsync each."""
    syncfs = _syncfs()
    seen: set[int] = set()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            device = os.fstat(fd).st_dev
            if syncfs is not None:
                if device in seen:
                    continue
                if syncfs(fd) == 0:
                    seen.add(device)
                    continue
            os.fsync(fd)
        finally:
            os.close(fd)


def _sync_folders(folders: set[Path]) -> None:
    """fsync each folder, so that renames into it survive a crash (where folders can be opened)."""
    for folder in folders:
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:
            continue
        try:
            with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
                os.fsync(fd)
        finally:
            os.close(fd)


class CheckedFile:
    """The file an encoder writes to: seekable, with no `fileno()`.

    Pillow writes straight to a file descriptor when it can get one (`ImageFile._save` hands it to the
    encoder's C loop, which ignores a short `write()`): on a nearly full disk a JPEG was cut at the
    free space and still reported as written. Without a descriptor every chunk goes through Python's
    buffered file, which writes the rest of a short write or raises (ENOSPC, EFBIG). `verify()` then
    checks that the file on disk is as long as what was written.
    """

    def __init__(self, fh: BinaryIO, name: str = "") -> None:
        self._fh = fh
        self.name = name  # the file being written (a temporary file), as real file objects have
        self._pos = 0
        self.end = 0  # the furthest byte written

    def write(self, data) -> int:
        view = memoryview(data)
        written = self._fh.write(view)
        if written is not None and written != view.nbytes:
            raise OSError(errno.EIO, f"short write: {written} of {view.nbytes} bytes")
        self._pos += view.nbytes
        self.end = max(self.end, self._pos)
        return view.nbytes

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._pos = self._fh.seek(offset, whence)
        return self._pos

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self._fh.flush()

    def verify(self) -> None:
        """After a flush: OSError unless the file holds every byte written."""
        size = os.fstat(self._fh.fileno()).st_size
        if size != self.end:
            raise OSError(errno.EIO, f"only {size} of {self.end} bytes reached the disk (is it full?)")


def temp_path_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def remove_temp_files(path: "str | os.PathLike[str]") -> int:
    """Delete what `atomic_write(path, ...)` leaves when its process is killed mid-write (the hidden
    temporary files of `path`); the number deleted."""
    path = Path(path)
    removed = 0
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f".{glob.escape(path.name)}.{'[0-9a-f]' * 8}.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


# ---------------------------------------------------------------- preview / contact sheet

_PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
            (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128))


PAD_INSET = 0.34  # a padded fit is shown as an inset of this share of the tile, in its lower right corner


def preview_tile(image: Image.Image, crops, caption: str, *, tile: int = 480, hints=None,
                 pad_color: str | None = None) -> Image.Image:
    """A thumbnail of the photo with each crop drawn and labelled "ratio score" ("ratio pad score" for
    a padded fit, whose thumbnail is also shown as an inset), captioned below. `hints`
    (`s2ccrop.hints.Hints`) are drawn in white: the keep region as a rectangle, the focus point as a
    ringed cross."""
    from PIL import ImageDraw

    from .images import to_rgb

    w, h = image.size
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
            _pad_inset(canvas, image, crop, pad_color, _PALETTE[i % len(_PALETTE)], tile)
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


def _pad_inset(canvas: Image.Image, image: Image.Image, crop, pad_color, colour, tile: int) -> None:
    from .images import to_rgb

    w, h = crop.ratio.split(":") if ":" in crop.ratio else (1, 1)
    ratio = float(w) / float(h)
    side = int(tile * PAD_INSET)
    size = (side, max(1, round(side / ratio))) if ratio >= 1 else (max(1, round(side * ratio)), side)
    inset = to_rgb(render_pad(image, crop.box, size, pad_color))
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

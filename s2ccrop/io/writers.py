"""Durable writes: every image s2ccrop writes is encoded (ICC kept, tagged as ours) and put in place
whole, or not at all; `write_crop` renders a crop (`io.render`) and writes it so.

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
import os
import secrets
import stat
import threading
from pathlib import Path
from typing import BinaryIO, Callable

from PIL import Image

from .._version import __version__
from ..interrupts import blocked, temp_file
from .formats import DEFAULT_QUALITY, OutputFormat
from .images import flatten, open_regular_file
from .render import render_crop, render_pad

OWNER = "s2ccrop"
SOFTWARE = f"{OWNER} {__version__}"  # the Software tag of every image written here
SOFTWARE_TAG = 0x0131  # EXIF/TIFF "Software"
_NO_ALPHA = {"JPEG", "BMP"}
_RGB_ONLY = {"WEBP"}


class Cancelled(Exception):
    """The run was interrupted before this file could be put in place; nothing was written."""


class Occupied(FileExistsError):
    """The destination holds a file s2ccrop did not write (a photo, another program's file): it is left alone."""

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        super().__init__(errno.EEXIST, "a file s2ccrop did not write is there; it is left alone", os.fspath(path))


# ---------------------------------------------------------------- encoding


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
    region_size: tuple[int, int] | None = None,
    batch: "WriteBatch | None" = None,
) -> None:
    """Write `box` of the upright `image` to `path` at exactly `size` pixels; with `pad`, `box` shown
    whole in a thumbnail of `size` (`render_pad`; `region_size`: the box's size in photo pixels when
    `image` is a reduced decode). With `batch`, staged (`WriteBatch`)."""
    rendered = render_pad(image, box, size, pad_color, region_size) if pad else render_crop(image, box, size)
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
        self.failed: Path | None = None

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
        """Sync the staged files, rename them all into place, sync their folders; the paths put in
        place. All or nothing: every destination is checked first (`Cancelled`, `Occupied`), the
        renames run with the stop signals held (`interrupts.blocked`), and on any error those renamed
        are deleted again. `failed`: the destination the error concerns (the first one for the sync)."""
        staged, self._staged = self._staged, []
        renamed: list[Path] = []
        self.failed = staged[0][1] if staged else None
        try:
            _sync_files([tmp for tmp, *_ in staged])
            for tmp, path, cancel, may_replace in staged:
                self.failed = path
                if cancel is not None and cancel.is_set():
                    raise Cancelled(str(path))
                if may_replace is not None and os.path.lexists(path) and not may_replace(path):
                    raise Occupied(path)
            with blocked():
                for tmp, path, *_ in staged:
                    self.failed = path
                    os.replace(tmp, path)
                    renamed.append(path)
            _sync_folders({path.parent for path in renamed})
        except BaseException:
            for path in [tmp for tmp, *_ in staged] + renamed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        finally:
            self._stack.close()
            self._stack = contextlib.ExitStack()
        self.failed = None
        self.committed.extend(renamed)
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


NAME_MAX = 255  # bytes in a file name, on the file systems s2ccrop writes to


def temp_path_for(path: Path) -> Path:
    """`.NAME.XXXXXXXX.tmp` beside `path`; NAME is cut short when the whole would pass NAME_MAX (an
    output whose name is legal always gets a legal temporary name)."""
    return path.with_name(f".{_temp_prefix(path.name)}.{secrets.token_hex(4)}.tmp")


def _temp_prefix(name: str) -> str:
    room = NAME_MAX - len(".") - len(".XXXXXXXX.tmp")
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return name


def remove_temp_files(path: "str | os.PathLike[str]") -> int:
    """Delete what `atomic_write(path, ...)` leaves when its process is killed mid-write (the hidden
    temporary files of `path`); the number deleted."""
    path = Path(path)
    removed = 0
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f".{glob.escape(_temp_prefix(path.name))}.{'[0-9a-f]' * 8}.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


__all__ = ["OWNER", "SOFTWARE", "SOFTWARE_TAG", "Cancelled", "CheckedFile", "Occupied", "WriteBatch", "atomic_write",
           "prepare_for", "remove_temp_files", "save_image", "temp_path_for", "write_crop", "write_image",
           "written_by_s2ccrop"]

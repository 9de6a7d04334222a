"""Shared fixtures. ``shared_dir``: the read-only ../shared folder, or a skip when this machine lacks it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from s2ccrop._shared import shared_dir as _find_shared

# A test run started in the background by a non-interactive shell (`pytest &`) has SIGINT (and SIGQUIT)
# ignored, and under nohup SIGHUP too; every CLI process the tests start inherits that, and the CLI
# rightly leaves an ignored signal ignored, so the signal tests would see Ctrl-C do nothing. They test
# the CLI's own handling: start them from the defaults a terminal gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
for _sig in (signal.SIGHUP, signal.SIGQUIT):
    if signal.getsignal(_sig) is signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path of ../shared (or $S2CCROP_SHARED); skips the test where it is absent."""
    path = _find_shared()
    if path is None:
        pytest.skip("needs ../shared (set S2CCROP_SHARED)")
    return path


PHOTO_MODES = ("L", "LA", "RGB", "RGBA")  # the modes photo_image makes: 8 bits a band


def photo_image(size: tuple[int, int] = (320, 240), seed: int = 0, kind: str = "blobs", mode: str = "RGB"):
    """A synthetic photo (PIL) of `size` (w, h): "blobs", smooth shapes plus noise, a photo-like
    image whose candidates get distinct scores; or "noise", uniform noise,
    `np.random.default_rng(seed).integers(0, 255, (h, w, bands), dtype=np.uint8)`. `mode`: one of
    PHOTO_MODES; "noise" draws every band (alpha too), "blobs" is drawn in RGB and converted."""
    import numpy as np
    from PIL import Image

    if mode not in PHOTO_MODES:
        raise ValueError(f"unknown mode {mode!r}: one of {PHOTO_MODES}")
    w, h = size
    rng = np.random.default_rng(seed)
    if kind == "noise":
        arr = rng.integers(0, 255, (h, w, len(mode)), dtype=np.uint8)
        return Image.fromarray(arr[..., 0] if len(mode) == 1 else arr)  # the shape gives the mode
    if kind != "blobs":
        raise ValueError(f"unknown kind {kind!r}")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(4):
        cx, cy, r = rng.random() * w, rng.random() * h, (0.1 + 0.3 * rng.random()) * min(w, h)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.random(3) * 255
    img += rng.normal(0, 12, img.shape)
    image = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    return image if mode == "RGB" else image.convert(mode)


@pytest.fixture
def make_photo(tmp_path: Path):
    """A factory: `make_photo(name, size=(320, 240), seed=0, kind="blobs", folder=None, mode="RGB",
    orientation=None, **save_options)` writes `photo_image(size, seed, kind, mode)` to `folder/name`
    (default: the test's tmp_path; missing folders are made; the format follows the suffix unless
    save_options give `format`), with `orientation` as its EXIF orientation tag (1-8) where given, and
    returns its path."""

    def make(name: str = "p.jpg", size: tuple[int, int] = (320, 240), seed: int = 0, kind: str = "blobs",
             folder: Path | None = None, mode: str = "RGB", orientation: int | None = None, **save) -> Path:
        from PIL import Image

        path = (folder or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if orientation is not None:
            exif = Image.Exif()
            exif[0x0112] = orientation
            save["exif"] = exif
        photo_image(size, seed, kind, mode).save(path, **save)
        return path

    return make

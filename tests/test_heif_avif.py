"""Phone photos: HEIC/HEIF through the optional pillow-heif (the heif extra), AVIF through Pillow; both
upright (EXIF orientation), ICC kept; without the extra, one line says how to get it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, features

from s2ccrop import batch
from s2ccrop.io import images, paths
from s2ccrop.io.images import open_image
from s2ccrop.io.paths import iter_inputs

try:
    from ._cli_helpers import FastCropper, run_in_process
except ImportError:  # run from tests/
    from _cli_helpers import FastCropper, run_in_process

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
HEIF_HELP = "pip install 's2ccrop[heif]'"


def marked(w: int = 96, h: int = 64) -> Image.Image:
    """A grey photo with a white block in its top-left corner (where it is after orientation is the test)."""
    arr = np.full((h, w, 3), 60, np.uint8)
    arr[: h // 3, : w // 3] = 250
    return Image.fromarray(arr)


def white_corner(img: Image.Image) -> str:
    arr = np.asarray(img.convert("L"), dtype=np.float64)
    h, w = arr.shape
    corners = {"top-left": arr[: h // 4, : w // 4], "top-right": arr[: h // 4, -w // 4 :],
               "bottom-left": arr[-h // 4 :, : w // 4], "bottom-right": arr[-h // 4 :, -w // 4 :]}
    return max(corners, key=lambda k: corners[k].mean())


def exif(orientation: int) -> bytes:
    e = Image.Exif()
    e[0x0112] = orientation
    return e.tobytes()


@pytest.fixture()
def pillow_heif():
    return pytest.importorskip("pillow_heif", reason="HEIC needs the heif extra: pip install 's2ccrop[heif]'")


def save_heic(path: Path, img: Image.Image, orientation: int = 1, icc: bytes | None = None) -> Path:
    import pillow_heif

    pillow_heif.register_heif_opener()
    kwargs = {"exif": exif(orientation)} if orientation != 1 else {}
    if icc:
        kwargs["icc_profile"] = icc
    img.save(path, format="HEIF", quality=95, **kwargs)
    return path


@pytest.mark.parametrize("orientation, corner", [(1, "top-left"), (6, "top-right"), (8, "bottom-left"), (3, "bottom-right")])
def test_heic_decodes_upright_with_its_profile(pillow_heif, tmp_path, orientation, corner):
    path = save_heic(tmp_path / "phone.heic", marked(), orientation, icc=SRGB)
    decoded = open_image(path)
    swapped = orientation in (5, 6, 7, 8)
    assert decoded.size == ((64, 96) if swapped else (96, 64))
    assert decoded.image.size == decoded.size
    assert white_corner(decoded.image) == corner
    assert decoded.icc_profile == SRGB
    assert decoded.format == "HEIF"


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow was built without AVIF support")
@pytest.mark.parametrize("orientation, corner", [(1, "top-left"), (6, "top-right"), (8, "bottom-left")])
def test_avif_decodes_upright_with_its_profile(tmp_path, orientation, corner):
    path = tmp_path / "photo.avif"
    marked().save(path, format="AVIF", quality=90, exif=exif(orientation), icc_profile=SRGB)
    decoded = open_image(path)
    assert decoded.size == ((64, 96) if orientation in (5, 6, 7, 8) else (96, 64))
    assert white_corner(decoded.image) == corner
    assert decoded.icc_profile == SRGB
    assert paths.is_image_name("photo.AVIF")


def test_heic_is_walked_and_cropped_to_jpeg(pillow_heif, tmp_path, monkeypatch):
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())
    (tmp_path / "in").mkdir()
    save_heic(tmp_path / "in" / "a.heic", marked(), 6)
    save_heic(tmp_path / "in" / "b.HEIF", marked())
    assert [i.rel.as_posix() for i in iter_inputs([str(tmp_path / "in")])] == ["a.heic", "b.HEIF"]
    code, out, err = run_in_process(tmp_path / "in", "-r", "any", "-o", tmp_path / "out", "-j", "1", "--json")
    assert code == 0, err
    with Image.open(tmp_path / "out" / "a_any.jpg") as im:  # --format same: a HEIC's thumbnail is a JPEG
        assert im.format == "JPEG" and im.size == (64, 96)
        assert white_corner(im) == "top-right"


def test_without_the_extra_one_line_says_how_to_get_it(tmp_path, monkeypatch):
    """No pillow-heif: a folder's HEIC photos are skipped, a named one gets the usual error line, and one
    warning (not one per photo) says how to read them."""
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())
    monkeypatch.setattr(images, "heif_support", lambda: False)
    monkeypatch.setattr(paths, "heif_installed", lambda: False)
    folder = tmp_path / "in"
    folder.mkdir()
    marked().save(folder / "a.png")
    for name in ("b.heic", "c.heif"):
        (folder / name).write_bytes(b"\0\0\0\x18ftypheic" + bytes(32))
    named = tmp_path / "named.HEIC"
    named.write_bytes((folder / "b.heic").read_bytes())
    assert [i.rel.as_posix() for i in iter_inputs([str(folder)]) if isinstance(i, paths.InputPath)] == ["a.png"]

    code, out, err = run_in_process(folder, named, "-r", "any", "-o", tmp_path / "out", "-j", "1")
    assert code == 1  # the named HEIC failed
    lines = err.splitlines()
    assert lines.count(f"s2ccrop: error: {named}: {images.HEIF_MISSING}") == 1
    hints = [line for line in lines if HEIF_HELP in line]
    assert len(hints) == 1 and hints[0].startswith("s2ccrop: warning: HEIC/HEIF photos need pillow-heif")
    assert len([line for line in lines if line.startswith("s2ccrop: error:")]) == 1
    assert (tmp_path / "out" / "a_any.png").exists()
    assert "a.png" in out and "b.heic" not in out


def test_a_heic_under_another_name_is_read_when_the_extra_is_there(pillow_heif, tmp_path):
    buf = io.BytesIO()
    pillow_heif.register_heif_opener()
    marked().save(buf, format="HEIF", quality=95)
    misnamed = tmp_path / "photo.jpg"
    misnamed.write_bytes(buf.getvalue())
    images.heif_support.cache_clear()  # as in a fresh process: the plugin is registered on demand
    Image.OPEN.pop("HEIF", None)
    Image.ID[:] = [i for i in Image.ID if i != "HEIF"]
    assert open_image(misnamed).size == (96, 64)

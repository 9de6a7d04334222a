"""Decoding (EXIF, modes, frames, limits, reduced JPEG decodes) and writing (sizes, formats, ICC, atomicity)."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from s2ccrop.errors import ConfigError, InputError
from s2ccrop.io.images import open_image, to_rgb
from s2ccrop.io.formats import OutputFormat, SizeSpec, choose_format, output_size, parse_wxh
from s2ccrop.io.preview import ContactSheet
from s2ccrop.io.writers import Cancelled, atomic_write, write_crop

# Orientation o: the op a viewer applies to the stored pixels to show them upright, and its inverse
# (used here to make the stored pixels from an upright picture).
T = Image.Transpose
INVERSE = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
           6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}


def upright_picture(w: int = 12, h: int = 8) -> Image.Image:
    """Four coloured quadrants plus a gradient: any wrong flip or rotation changes pixels."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2] = (255, 0, 0)
    arr[: h // 2, w // 2 :] = (0, 255, 0)
    arr[h // 2 :, : w // 2] = (0, 0, 255)
    arr[h // 2 :, w // 2 :] = (255, 255, 0)
    arr[..., 2] ^= np.arange(w, dtype=np.uint8)[None, :] * 7
    return Image.fromarray(arr)


def stored_with_orientation(upright: Image.Image, orientation: int, path: Path, fmt: str = "PNG") -> Path:
    stored = upright if INVERSE[orientation] is None else upright.transpose(INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, format=fmt, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_exact_upright_pixels(tmp_path: Path, orientation: int):
    up = upright_picture()
    path = stored_with_orientation(up, orientation, tmp_path / f"o{orientation}.png")
    d = open_image(path)
    assert d.orientation == orientation
    assert d.size == up.size == d.image.size
    assert np.array_equal(np.asarray(d.image), np.asarray(up))


def test_exif_orientation_in_jpeg(tmp_path: Path):
    up = upright_picture(64, 32)
    d = open_image(stored_with_orientation(up, 6, tmp_path / "o6.jpg", "JPEG"))
    assert d.size == (64, 32)
    diff = np.abs(np.asarray(d.image, np.int16) - np.asarray(up, np.int16))
    assert diff.mean() < 12  # JPEG noise, not a rotation (which would differ by ~128)


def test_cmyk_jpeg_becomes_rgb_without_its_cmyk_profile(tmp_path: Path):
    Image.new("CMYK", (10, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    d = open_image(tmp_path / "c.jpg")
    assert d.image.mode == "RGB" and d.size == (10, 6) and d.icc_profile is None
    r, g, b = d.image.getpixel((5, 3))
    assert r > 200 and g < 60 and b < 60  # CMYK (0, 1, 1, 0) is red


def test_16bit_grey_is_scaled_not_clipped(tmp_path: Path):
    arr = np.array([[0, 32768, 65535, 256]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    d = open_image(tmp_path / "g16.png")
    assert d.image.mode == "L"
    assert list(np.asarray(d.image)[0]) == [0, 128, 255, 1]


def test_palette_alpha_and_grey_alpha_modes(tmp_path: Path):
    p = Image.new("P", (4, 4), 0)
    p.putpalette([10, 20, 30] + [0, 0, 0] * 255)
    p.save(tmp_path / "p.png")
    p.save(tmp_path / "pt.png", transparency=0)
    Image.new("LA", (4, 4), (100, 0)).save(tmp_path / "la.png")
    assert open_image(tmp_path / "p.png").image.getpixel((0, 0)) == (10, 20, 30)
    assert open_image(tmp_path / "pt.png").image.mode == "RGBA"
    la = open_image(tmp_path / "la.png")
    assert la.image.mode == "LA"
    assert la.rgb().getpixel((0, 0)) == (255, 255, 255)  # fully transparent -> white


def test_half_transparent_colour_is_composited_on_white():
    img = Image.new("RGBA", (2, 2), (20, 200, 30, 128))
    assert to_rgb(img).getpixel((0, 0)) == (137, 227, 142)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_its_first_frame(tmp_path: Path, fmt: str):
    frames = [Image.new("RGB", (8, 8), c) for c in ((250, 0, 0), (0, 0, 250), (0, 250, 0))]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=50, loop=0, lossless=True)
    r, g, b = to_rgb(open_image(path).image).getpixel((4, 4))[:3]
    assert r > 200 and g < 50 and b < 50


def test_pixel_limit_refuses_before_decoding(tmp_path: Path):
    Image.new("1", (12_300, 12_300)).save(tmp_path / "bomb.png")  # 151 MP, a few KB on disk
    assert (tmp_path / "bomb.png").stat().st_size < 100_000
    with pytest.raises(InputError, match=r"12300x12300 = 151.3 MP, above the limit of 150.0 MP.*--max-pixels"):
        open_image(tmp_path / "bomb.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    with pytest.raises(InputError, match="--max-pixels"):
        open_image(tmp_path / "small.png", max_pixels=399)
    assert open_image(tmp_path / "small.png", max_pixels=400).size == (20, 20)


def test_a_batch_sets_pillow_for_many_photos_and_leaves_a_users_block_setting(monkeypatch):
    """`batch_pillow`: Pillow's pixel limit lifted (ours decides) and one freed block kept for the next
    image, unless $PILLOW_BLOCKS_MAX says how many; Pillow's own settings are put back afterwards."""
    from s2ccrop.io.images import batch_pillow

    limit, blocks = Image.MAX_IMAGE_PIXELS, Image.core.get_blocks_max()
    try:
        monkeypatch.delenv("PILLOW_BLOCKS_MAX", raising=False)
        Image.core.set_blocks_max(0)
        batch_pillow()
        assert (Image.MAX_IMAGE_PIXELS, Image.core.get_blocks_max()) == (None, 1)
        monkeypatch.setenv("PILLOW_BLOCKS_MAX", "0")  # read by Pillow at its import; we leave it alone
        Image.core.set_blocks_max(0)
        batch_pillow()
        assert Image.core.get_blocks_max() == 0
    finally:
        Image.MAX_IMAGE_PIXELS = limit
        Image.core.set_blocks_max(blocks)


@pytest.mark.parametrize(
    "data, reason",
    [(b"", "not an image"), (b"hello, I am text", "not an image")],
)
def test_broken_files_raise_one_line_input_errors(tmp_path: Path, data: bytes, reason: str):
    (tmp_path / "bad.jpg").write_bytes(data)
    with pytest.raises(InputError, match=reason) as err:
        open_image(tmp_path / "bad.jpg")
    assert "\n" not in str(err.value)


def test_truncated_jpeg_and_directories(tmp_path: Path):
    buf = io.BytesIO()
    upright_picture(200, 100).save(buf, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(InputError, match="truncated"):
        open_image(tmp_path / "cut.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        open_image(tmp_path / "dir.jpg")


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_a_jpeg_decoded_at_a_reduction_reports_its_full_upright_size(tmp_path: Path, k: int):
    up = upright_picture(803, 402)
    path = stored_with_orientation(up, 6, tmp_path / "big.jpg", "JPEG")
    d = open_image(path, reduction=k)
    assert d.size == (803, 402) and d.reduction == k
    assert d.image.size == (-(-803 // k), -(-402 // k))  # libjpeg rounds up
    # upright, as the whole decode is: the quadrants' colours where they belong
    assert d.image.getpixel((d.image.width // 4, d.image.height // 4))[0] > 200
    assert d.box_in_image((0, 0, 803, 402)) == (0, 0, d.image.width, d.image.height)


@pytest.mark.parametrize("mode, want", [("L", "L"), ("CMYK", "RGB")])
def test_grey_and_cmyk_jpegs_decode_reduced_too(tmp_path: Path, mode: str, want: str):
    Image.new(mode, (2400, 1800), 90 if mode == "L" else (10, 200, 30, 5)).save(tmp_path / "p.jpg")
    d = open_image(tmp_path / "p.jpg", reduction=4)
    assert (d.image.mode, d.image.size, d.size) == (want, (600, 450), (2400, 1800))


def test_only_jpegs_are_decoded_reduced(tmp_path: Path):
    upright_picture(2400, 1200).save(tmp_path / "big.png")
    d = open_image(tmp_path / "big.png", reduction=4)
    assert d.image.size == d.size == (2400, 1200) and d.reduction == 1
    with pytest.raises(ValueError, match="reduction"):
        open_image(tmp_path / "big.png", reduction=3)


def test_icc_profile_is_kept_in_every_output_format(tmp_path: Path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    upright_picture(40, 30).save(tmp_path / "in.png", icc_profile=icc)
    d = open_image(tmp_path / "in.png")
    assert d.icc_profile == icc
    for fmt in ("jpg", "png", "webp"):
        out = tmp_path / f"out.{fmt}"
        write_crop(out, d.image, (0, 0, 20, 20), (10, 10), choose_format(fmt, out), icc=d.icc_profile)
        with Image.open(out) as im:
            assert im.info.get("icc_profile") == icc, fmt
            assert im.size == (10, 10)


def test_write_crop_pixels_are_the_box(tmp_path: Path):
    up = upright_picture(12, 8)
    write_crop(tmp_path / "c.png", up, (6, 0, 12, 4), (6, 4), OutputFormat("PNG", "png"))
    with Image.open(tmp_path / "c.png") as im:
        assert np.array_equal(np.asarray(im), np.asarray(up)[0:4, 6:12])


def test_alpha_is_kept_in_png_and_flattened_in_jpeg(tmp_path: Path):
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    write_crop(tmp_path / "a.png", img, (0, 0, 8, 8), (8, 8), OutputFormat("PNG", "png"))
    write_crop(tmp_path / "a.jpg", img, (0, 0, 8, 8), (8, 8), OutputFormat("JPEG", "jpg"))
    assert Image.open(tmp_path / "a.png").mode == "RGBA"
    assert Image.open(tmp_path / "a.jpg").convert("RGB").getpixel((4, 4)) == (255, 255, 255)


@pytest.mark.parametrize(
    "box, ratio, spec, expected",
    [
        ((1600, 900), 16 / 9, SizeSpec(1280, 720), ((1280, 720), False)),
        ((1600, 900), 16 / 9, SizeSpec(width=1280), ((1280, 720), False)),
        ((1600, 901), 16 / 9, SizeSpec(width=1000), ((1000, 563), False)),  # 562.5 rounds half up
        ((1910, 1000), 1.91, SizeSpec(width=1200), ((1200, 628), False)),
        ((900, 1600), 9 / 16, SizeSpec(height=1920), ((900, 1600), True)),  # never upscale by default
        ((900, 1600), 9 / 16, SizeSpec(height=1920, upscale=True), ((1080, 1920), False)),
        ((333, 222), None, SizeSpec(width=100), ((100, 67), False)),  # free-form keeps its own shape
        ((333, 222), None, SizeSpec(), ((333, 222), False)),
        ((10, 10), 1.0, SizeSpec(1, 1), ((1, 1), False)),
    ],
)
def test_output_size(box, ratio, spec, expected):
    assert output_size(box, ratio, spec) == expected


def test_parse_wxh():
    assert parse_wxh("1920x1080") == (1920, 1080) and parse_wxh("64X64") == (64, 64)
    for bad in ("1920", "0x10", "axb", "10x10x10", "-5x5"):
        with pytest.raises(ConfigError):
            parse_wxh(bad)


def test_choose_format():
    assert choose_format("same", "a/B.JPG") == OutputFormat("JPEG", "JPG")
    assert choose_format("same", "x.gif") == OutputFormat("PNG", "png")
    assert choose_format("same", "x.tiff") == OutputFormat("TIFF", "tiff")
    assert choose_format("webp", "x.jpg") == OutputFormat("WEBP", "webp")
    with pytest.raises(ConfigError):
        choose_format("gif", "x.jpg")


def test_atomic_write_leaves_old_file_and_no_temp_on_failure(tmp_path: Path):
    target = tmp_path / "out.jpg"
    target.write_bytes(b"old")

    def half_then_fail(fh):
        fh.write(b"partial")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.jpg"]


def test_atomic_write_cancelled_and_interrupted_write_nothing(tmp_path: Path):
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        atomic_write(tmp_path / "a.png", lambda fh: fh.write(b"data"), cancel=cancel)

    def interrupted(fh):
        fh.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "b.png", interrupted)
    assert os.listdir(tmp_path) == []


def test_atomic_write_respects_umask_and_makes_folders(tmp_path: Path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "x" / "y" / "f.bin", lambda fh: fh.write(b"abc"))
    finally:
        os.umask(old)
    f = tmp_path / "x" / "y" / "f.bin"
    assert f.read_bytes() == b"abc"
    assert f.stat().st_mode & 0o777 == 0o644


def test_contact_sheet_layout(tmp_path: Path):
    sheet = ContactSheet(tile=50, columns=2)
    for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255)):
        sheet.add(Image.new("RGB", (50, 60), c))
    sheet.save(tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as im:
        assert im.size == (2 * 50 + 4, 2 * 60 + 4)
        assert im.getpixel((10, 10)) == (255, 0, 0)
        assert im.getpixel((60, 10)) == (0, 255, 0)
        assert im.getpixel((10, 70)) == (0, 0, 255)


def test_remove_temp_files_deletes_only_the_hidden_temporaries_of_that_output(tmp_path):
    from s2ccrop.io import writers

    out = tmp_path / "a [1].jpg"  # glob metacharacters in the name
    keep = [out, tmp_path / ".b.jpg.0123abcd.tmp", tmp_path / ".a [1].jpg.notes", tmp_path / ".a [1].jpg.0123abcd.tmp.x"]
    gone = [tmp_path / ".a [1].jpg.0123abcd.tmp", tmp_path / ".a [1].jpg.ffffffff.tmp"]
    for p in keep + gone:
        p.write_bytes(b"x")
    assert writers.remove_temp_files(out) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in keep)
    assert writers.remove_temp_files(tmp_path / "missing" / "x.jpg") == 0

"""Fit instead of cut: padded thumbnails of the exact size whose kept region is the photo's own pixels
(scaled only), `--fit auto` padding only where every crop would cut, and the same boxes at every size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2ccrop import Cropper
from s2ccrop.io.formats import pad_canvas
from s2ccrop.io.render import pad_placement, render_pad
from s2ccrop.select import Guard, cuts_everywhere, hold
from s2ccrop.types import Ratio

try:
    from ._cli_helpers import run_in_process
except ImportError:  # run from tests/
    from _cli_helpers import run_in_process
from conftest import photo_image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def direct(image: Image.Image, region, size) -> Image.Image:
    """The region resized straight to `size`, as any image program would (the reference)."""
    if size == (region[2] - region[0], region[3] - region[1]):
        return image.crop(region)
    return image.resize(size, Image.Resampling.LANCZOS, box=region, reducing_gap=3.0)


# ---------------------------------------------------------------- geometry and rendering


def test_pad_canvas_and_placement_by_hand():
    assert pad_canvas((300, 200), 9 / 16) == (300, 533)  # wide region, tall ratio: pad above and below
    assert pad_canvas((100, 200), 16 / 9) == (356, 200)
    assert pad_canvas((160, 90), 16 / 9) == (160, 90)  # the region has the ratio: nothing to pad
    assert pad_placement((300, 200), (300, 533)) == (0, 166, 300, 200)
    assert pad_placement((300, 200), (150, 267)) == (0, 83, 150, 100)
    assert pad_placement((100, 200), (160, 90)) == (57, 0, 45, 90)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
@pytest.mark.parametrize("size", [(90, 160), (160, 90), (57, 101)])
def test_render_pad_keeps_the_region_pixel_for_pixel(mode, size):
    image = photo_image((200, 150), seed=1, kind="noise", mode=mode)
    region = (30, 20, 170, 110)
    out = render_pad(image, region, size, "#ff0000")
    assert out.size == size and out.mode == mode
    x, y, w, h = pad_placement((140, 90), size)
    assert np.array_equal(np.asarray(out.crop((x, y, x + w, y + h))), np.asarray(direct(image, region, (w, h))))
    red = np.asarray(Image.new(mode, (1, 1), "#ff0000"))[0, 0]
    padding = np.asarray(out).reshape(size[1], size[0], -1)
    mask = np.ones((size[1], size[0]), bool)
    mask[y : y + h, x : x + w] = False
    assert mask.any() and (padding[mask] == np.asarray(red).reshape(-1)).all()


def test_blurred_padding_is_the_photo_not_a_flat_colour():
    image = photo_image((200, 150), seed=2, kind="noise")
    out = np.asarray(render_pad(image, (50, 0, 150, 150), (300, 150)), dtype=np.float64)
    side = out[:, :80]
    assert side.std() > 1.0  # it varies as the photo does, blurred: far less than the noise itself
    assert side.std() < np.asarray(image, dtype=np.float64).std() / 3


def test_cuts_everywhere_and_the_subject():
    boxes = np.array([[0, 0, 100, 100], [100, 0, 200, 100]], dtype=float)
    subject = (50.0, 10.0, 150.0, 90.0)  # each box keeps half of it
    assert cuts_everywhere(boxes, Guard((200, 100), subject=subject))
    assert not cuts_everywhere(boxes, Guard((200, 100), subject=(10.0, 10.0, 90.0, 90.0)))
    # unlike a face, a subject left out altogether counts as cut: a crop beside the subject is no fit
    assert cuts_everywhere(boxes[:1] * [1, 1, 0.4, 1], Guard((200, 100), subject=subject))
    assert not cuts_everywhere(boxes, None)
    assert cuts_everywhere(boxes, Guard((200, 100), keep=(50.0, 10.0, 150.0, 90.0)))
    assert not cuts_everywhere(boxes, Guard((200, 100), focus=(150.0, 50.0)))
    assert hold((0, 0, 100, 100), Guard((200, 100), subject=subject), (200, 100)) == (0, 0, 150, 100)


# ---------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def cropper():
    return Cropper(weights="random", device="cpu")


def test_api_pad_shows_the_free_form_framing_grown_to_the_hints(cropper):
    img = photo_image((320, 240), seed=4, kind="noise")
    framing = cropper.crop(img, ["any"])[0]
    padded = cropper.crop(img, ["9:16", "16:9", "any"], fit="pad")
    assert [c.fit for c in padded] == ["pad", "pad", "crop"]
    assert padded[0].box == padded[1].box == framing.box == padded[2].box
    focus = (0.01, 0.99)  # outside every free-form candidate of the reference grid
    grown = cropper.crop(img, ["9:16"], fit="pad", focus=focus)[0]
    assert grown.box[0] <= 0.01 * 320 and grown.box[3] >= 0.99 * 240


def test_api_auto_pads_only_the_ratios_that_cannot_hold_the_region(cropper):
    img = photo_image((320, 240), seed=4, kind="noise")
    keep = (0.05, 0.3, 0.95, 0.7)  # 288 px wide: no 9:16 crop of a 240 px tall photo holds it
    crops = cropper.crop(img, ["9:16", "16:9"], keep=keep, fit="auto")
    assert [c.fit for c in crops] == ["pad", "crop"]
    assert crops[0].box[0] <= 16 and crops[0].box[2] >= 304  # the padded region holds the keep region
    assert [c.fit for c in cropper.crop(img, ["9:16", "16:9"], fit="auto")] == ["crop", "crop"]


# ---------------------------------------------------------------- the command line


def crop_json(*args) -> tuple[list[dict], str]:
    code, out, err = run_in_process(*args, "--json", "-j", "1")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize("size_args, ratio, want", [
    ([], "9:16", None),
    (["--width", "120"], "9:16", (120, 213)),
    (["--height", "90"], "16:9", (160, 90)),
    (["--size", "100x100"], "1:1", (100, 100)),
    (["--width", "101"], "4:5", (101, 126)),
])
def test_cli_pad_has_the_exact_size_and_the_photos_own_pixels(tmp_path, make_photo, size_args, ratio, want):
    photo = make_photo("p.png", (320, 240), seed=6, kind="noise")
    records, _ = crop_json(photo, "-r", ratio, "--fit", "pad", "--pad-color", "black", "-o", tmp_path / "out",
                           "--weights", "random", *size_args)
    (record,) = records
    assert record["fit"] == "pad" and record["ratio"] == ratio
    region = tuple(record["box"])
    rw, rh = region[2] - region[0], region[3] - region[1]
    w, h = (float(v) for v in ratio.split(":"))
    want = want or pad_canvas((rw, rh), w / h)  # no size asked: the region's own pixels, padded
    with Image.open(record["output"]) as out:
        assert out.size == want
        x, y, iw, ih = pad_placement((rw, rh), out.size)
        with Image.open(photo) as src:
            assert np.array_equal(np.asarray(out.crop((x, y, x + iw, y + ih))),
                                  np.asarray(direct(src.convert("RGB"), region, (iw, ih))))
        assert (iw, ih) != out.size  # something was padded: the region does not have the ratio


def test_cli_auto_pads_where_every_crop_cuts_the_region_and_says_so(tmp_path, make_photo):
    photo = make_photo("p.png", (320, 240), seed=6, kind="noise")
    records, _ = crop_json(photo, "-r", "9:16", "-r", "16:9", "--fit", "auto", "--keep", "0.05,0.3,0.95,0.7",
                           "-o", tmp_path / "out", "--weights", "random", "--width", "90")
    assert [(r["ratio"], r["fit"], r["keep"]) for r in records] == [
        ("9:16", "pad", [0.05, 0.3, 0.95, 0.7]), ("16:9", "crop", [0.05, 0.3, 0.95, 0.7])]
    assert Image.open(records[0]["output"]).size == (90, 160)
    assert Image.open(records[1]["output"]).size == (90, 51)


def test_cli_pad_too_small_is_not_enlarged(tmp_path, make_photo):
    photo = make_photo("p.png", (64, 48), seed=6, kind="noise")
    code, out, err = run_in_process(photo, "-r", "1:1", "--fit", "pad", "--width", "500", "-o", tmp_path / "out",
                                    "--weights", "random", "-j", "1")
    assert code == 0
    assert "the padded fit is only" in err and "(--upscale enlarges)" in err
    with Image.open(tmp_path / "out" / "p_1x1.png") as im:
        assert im.size[0] == im.size[1] < 500


@pytest.mark.parametrize("fit", ["crop", "pad"])
def test_the_same_box_whatever_size_is_asked(tmp_path, fit):
    """Consistency across sizes: the shipped model, three ratios, six output sizes, one box per ratio."""
    photo = EXAMPLES / "astronaut.png"
    boxes = []
    for i, size_args in enumerate([[], ["--width", "64"], ["--width", "333"], ["--height", "50"],
                                   ["--height", "777", "--upscale"], ["--width", "1200", "--upscale"]]):
        records, _ = crop_json(photo, "-r", "16:9", "-r", "9:16", "-r", "4:5", "--fit", fit,
                               "-o", tmp_path / str(i), *size_args)
        boxes.append([(r["ratio"], r["box"], r["fit"]) for r in records])
    assert all(b == boxes[0] for b in boxes)
    assert {f for _, _, f in boxes[0]} == {fit}
    for ratio, want in (("16:9", (160, 90)), ("9:16", (90, 160))):
        records, _ = crop_json(photo, "-r", ratio, "--fit", fit, "--size", f"{want[0]}x{want[1]}", "-o", tmp_path / "s")
        assert [(r["ratio"], r["box"], r["fit"]) for r in records] == [b for b in boxes[0] if b[0] == ratio]
        assert Image.open(records[0]["output"]).size == want


def test_preview_draws_hints_and_the_padded_thumbnail(tmp_path):
    photo = tmp_path / "p.png"
    Image.new("RGB", (320, 240), (40, 40, 40)).save(photo)
    sheet = tmp_path / "sheet.png"
    code, out, err = run_in_process("preview", photo, "-r", "9:16", "--fit", "pad", "--pad-color", "#00ff00",
                                    "--focus", "0.5,0.5", "--weights", "random", "-o", sheet, "-j", "1")
    assert code == 0, err
    with Image.open(sheet) as im:
        arr = np.asarray(im.convert("RGB")).astype(int)
    # 480 px tile: the photo is 480x360 at (0, 60); the focus point's white ring sits at (240, 240) ± 9
    assert (arr[240 - 12 : 240 + 12, 240 - 12 : 240 + 12] > 200).all(axis=2).any()
    # the padded 9:16 thumbnail's green padding shows in the lower-right inset
    inset = arr[300:480, 380:480]
    assert ((inset[..., 1] > 200) & (inset[..., 0] < 60) & (inset[..., 2] < 60)).sum() > 200

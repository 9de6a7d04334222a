"""Large photos and decode scales (issue 31). A large JPEG is read by the model at a reduced DCT scale
chosen from the photo's size alone, so its crops never depend on the outputs asked; every output is
rendered from a decode that covers it, never enlarged from a smaller one, and full-size crops are
full-resolution pixels."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms

from _cli_helpers import run_in_process
from s2ccrop.io.images import MODEL, covering_reduction, model_reduction, open_image, reduced_size
from s2ccrop.io.preview import preview_tile
from s2ccrop.io.render import pad_placement, render_crop
from s2ccrop.types import Crop

BIG = (2400, 1800)  # read by the model at 1/2: 1200x900 (1/4 would leave a 450-px short side)
PHONE = (2100, 2800)  # upright; read by the model at 1/4 (525x700), as the 1/2 decode averaged 2x2
RATIOS = ("16:9", "9:16", "1:1", "any")
# The phone photo's colour profile: not sRGB's, so an output that dropped it or got sRGB's would show.
PHONE_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


@pytest.mark.parametrize("size, k", [
    ((800, 600), 1), ((1022, 4000), 1), ((1023, 4000), 2), ((1024, 1024), 2), ((2047, 1500), 2),
    ((2048, 2048), 4), ((4032, 3024), 4), ((3024, 4032), 4), ((4095, 4088), 4), ((4095, 4095), 8),
    ((8064, 6048), 8), ((100000, 700), 1),
])
def test_the_model_reads_the_smallest_dct_scale_that_keeps_a_512_px_short_side(size, k):
    assert model_reduction(size) == k


def _covers(size, k, outputs) -> bool:
    """The slow, plain reading: at 1/k a box of bw photo pixels spans bw * ceil(W/k) / W decoded pixels."""
    W, H = size
    dw, dh = -(-W // k), -(-H // k)
    return all(Fraction(b[2] - b[0]) * dw / W >= w and Fraction(b[3] - b[1]) * dh / H >= h for b, (w, h) in outputs)


@st.composite
def photo_and_outputs(draw):
    W, H = draw(st.integers(1, 9000)), draw(st.integers(1, 9000))
    outputs = []
    for _ in range(draw(st.integers(1, 4))):
        x1, x2 = sorted(draw(st.lists(st.integers(0, W), min_size=2, max_size=2, unique=True)))
        y1, y2 = sorted(draw(st.lists(st.integers(0, H), min_size=2, max_size=2, unique=True)))
        size = (draw(st.integers(1, 2 * (x2 - x1))), draw(st.integers(1, 2 * (y2 - y1))))
        outputs.append(((x1, y1, x2, y2), size))
    return (W, H), outputs, draw(st.sampled_from([1, 2, 4, 8]))


@settings(max_examples=300, deadline=None)
@given(photo_and_outputs())
def test_the_covering_reduction_is_the_largest_that_covers_every_output(case):
    size, outputs, upto = case
    k = covering_reduction(size, outputs, upto)
    assert k <= upto and reduced_size(size, k) == (-(-size[0] // k), -(-size[1] // k))
    assert k == 1 or _covers(size, k, outputs)
    if k < upto and min(size) >= 2 * k:  # the next scale down, where it exists, does not cover them
        assert not _covers(size, 2 * k, outputs)


def _run(photo: Path, out: Path, *args: str) -> list[dict]:
    ratios = [a for r in RATIOS for a in ("-r", r)]
    code, stdout, stderr = run_in_process(photo, *ratios, "-o", out, "--json", "--format", "png", "-j", "1", *args)
    assert code == 0, stderr
    return [json.loads(line) for line in stdout.splitlines()]


def _rendered_from_covering_decode(record: dict, size: tuple[int, int], upto: int, decode_at):
    """Check that `record`'s output holds exactly the pixels rendered from the coarsest decode (at most
    1/`upto`) that covers it, `decode_at(k)` being the photo decoded at 1/k; its k and its pixels."""
    box = tuple(record["box"])
    with Image.open(record["output"]) as im:
        got = np.asarray(im.convert("RGB"))
    shown = (got.shape[1], got.shape[0])
    k = covering_reduction(size, [(box, shown)], upto=upto)
    assert _covers(size, k, [(box, shown)])
    source = decode_at(k)
    want = np.asarray(render_crop(source.image, source.box_in_image(box), shown).convert("RGB"))
    assert np.array_equal(got, want), (record["ratio"], k)
    return k, got


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory) -> Path:
    from conftest import photo_image

    path = tmp_path_factory.mktemp("big") / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned, as phones store portrait shots
    photo_image(BIG, seed=7).transpose(Image.Transpose.ROTATE_90).save(path, quality=92, exif=exif)
    return path


def test_a_photos_crops_do_not_depend_on_the_outputs_asked(big_photo: Path, tmp_path: Path):
    from s2ccrop.api import Cropper

    runs = [_run(big_photo, tmp_path / f"o{i}", *args) for i, args in enumerate(
        [(), ("--width", "64"), ("--width", "1000"), ("--height", "1200", "--upscale"), ("--dry-run",)])]
    boxes = [[(r["ratio"], r["box"], r["width"], r["height"]) for r in run] for run in runs]
    assert all(b == boxes[0] for b in boxes[1:])
    assert {(w, h) for _, _, w, h in boxes[0]} == {BIG}  # the upright size
    library = Cropper().crop(big_photo, list(RATIOS))  # a path: decoded as the command line decodes it
    assert [(c.ratio, list(c.box)) for c in library] == [(r, b) for r, b, _, _ in boxes[0]]


@pytest.mark.parametrize("args", [(), ("--width", "200"), ("--width", "700"), ("--height", "1000", "--upscale")])
def test_each_output_is_rendered_from_a_decode_that_covers_it(big_photo: Path, tmp_path: Path, args):
    """Its pixels are exactly those rendered from the coarsest decode that holds at least its pixels
    across its box (the model's own, 1/2, where it does; each other scale decoded once): never a
    smaller decode enlarged. A full-size crop is the full-resolution pixels themselves."""
    records = _run(big_photo, tmp_path / "out", *args)
    full = open_image(big_photo)
    model_k = model_reduction(full.size)
    assert model_k == 2
    used = set()
    for r in records:
        k, got = _rendered_from_covering_decode(r, full.size, model_k, lambda k: open_image(big_photo, reduction=k))
        if not args:
            box = r["box"]
            assert k == 1 and (got.shape[1], got.shape[0]) == (box[2] - box[0], box[3] - box[1])
            assert np.array_equal(got, np.asarray(full.image)[box[1]:box[3], box[0]:box[2]])
        used.add(k)
    # 200 px: the model's 1/2 decode covers every crop; 700 px: not a 9:16 one (at most 1012 x 1800 photo
    # pixels, 506 decoded); 1000 px high: no crop at 1/2 (at most 1800 photo pixels high, 900 decoded)
    assert used == {"": {1}, "200": {2}, "700": {1, 2}, "1000": {1}}[args[1] if args else ""]


@pytest.fixture(scope="module")
def phone_photo(tmp_path_factory) -> Path:
    """A photo of 2,048 px or more on its short side, stored turned (EXIF 6) as phones store it, with a
    colour profile (`PHONE_ICC`)."""
    from conftest import photo_image

    path = tmp_path_factory.mktemp("phone") / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    photo_image(PHONE, seed=5).transpose(Image.Transpose.ROTATE_90).save(path, quality=92, exif=exif,
                                                                          icc_profile=PHONE_ICC)
    return path


def test_a_photo_of_2048_px_or_more_is_decoded_once_for_the_model_at_half_its_scale(phone_photo: Path):
    """The model reads 1/4, made as the upright 1/2 decode averaged 2x2 (one decode: its entropy
    decoding, most of the cost, is not paid twice); the 1/2 decode stays for the outputs it covers."""
    model = open_image(phone_photo, reduction=MODEL)
    half = open_image(phone_photo, reduction=2)
    assert model_reduction(PHONE) == 4 and model.size == half.size == PHONE
    assert (model.reduction, model.image.size) == (4, reduced_size(PHONE, 4)) == (4, (525, 700))
    assert np.array_equal(np.asarray(model.image), np.asarray(half.image.reduce(2)))
    finer = model.finer
    assert (finer.reduction, finer.size, finer.stamp, finer.finer) == (2, PHONE, model.stamp, None)
    assert np.array_equal(np.asarray(finer.image), np.asarray(half.image))
    assert open_image(phone_photo, reduction=4).finer is None  # a scale asked: that DCT decode itself
    assert open_image(phone_photo, reduction=MODEL).image.tobytes() == model.image.tobytes()


# The crops are 2071, 1416, 1958 and 2058 photo pixels wide (16:9, 9:16, 1:1, free): 200 px fit in each
# at 1/4; 400 px in all but the 9:16 one (354 decoded); 1000 px in the 16:9 and free ones at 1/2 only.
@pytest.mark.parametrize("args, scales", [(("--width", "200"), {4}), (("--width", "400"), {2, 4}),
                                          (("--width", "1000"), {1, 2}), ((), {1})])
def test_a_phone_photos_outputs_come_from_the_model_decode_its_finer_one_or_one_more(
        phone_photo: Path, tmp_path: Path, args, scales):
    """Each output is rendered from the coarsest decode that covers it: the model's 1/4 (the average
    of the 1/2 decode), the 1/2 decode it was made from, or the photo decoded again at 1/1; each keeps
    the photo's colour profile."""
    records = _run(phone_photo, tmp_path / "out", *args)
    model = open_image(phone_photo, reduction=MODEL)
    sources = {4: model, 2: model.finer, 1: open_image(phone_photo)}
    used = {_rendered_from_covering_decode(r, PHONE, 4, sources.__getitem__)[0] for r in records}
    assert used == scales
    for r in records:
        with Image.open(r["output"]) as im:
            assert im.info.get("icc_profile") == PHONE_ICC, r["ratio"]
    boxes = [(r["ratio"], r["box"]) for r in records]
    assert boxes == [(r["ratio"], r["box"]) for r in _run(phone_photo, tmp_path / "dry", "--dry-run")]


def test_a_padded_fit_from_a_reduced_decode_is_placed_as_from_the_whole_photo(big_photo: Path, tmp_path: Path):
    records = _run(big_photo, tmp_path / "out", "--fit", "pad", "--pad-color", "#ff00ff", "--width", "300")
    assert [r["fit"] for r in records] == ["pad", "pad", "pad", "crop"]
    for r in records[:3]:
        box = r["box"]
        with Image.open(r["output"]) as im:
            arr = np.asarray(im.convert("RGB")).astype(int)
        photo = np.abs(arr - [255, 0, 255]).sum(axis=2) > 60
        ys, xs = np.nonzero(photo)
        x, y, w, h = pad_placement((box[2] - box[0], box[3] - box[1]), (arr.shape[1], arr.shape[0]))
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)


@pytest.mark.parametrize("replacement", [(1200, 900), BIG])
def test_a_photo_replaced_between_its_decode_and_its_outputs_fails_alone(big_photo: Path, tmp_path: Path,
                                                                         monkeypatch, make_photo, replacement):
    """Its outputs need a finer decode than the model's: the file read again must be the photo that was
    cropped. Here it is another photo by then (of another size, or of the same): that photo's line says
    so, nothing of it is written, and the batch goes on."""
    from s2ccrop import batch

    photo = tmp_path / "in" / "big.jpg"
    photo.parent.mkdir()
    photo.write_bytes(big_photo.read_bytes())
    other = make_photo("other.jpg", size=(320, 240), folder=tmp_path / "in")
    real = batch.BatchRun.score

    def score_then_replace(self, job):
        job = real(self, job)
        if job.item.path.name == "big.jpg":
            Image.new("RGB", replacement, "grey").save(photo.with_suffix(".new.jpg"))
            photo.with_suffix(".new.jpg").replace(photo)  # another photo under the same name
        return job

    monkeypatch.setattr(batch.BatchRun, "score", score_then_replace)
    code, stdout, stderr = run_in_process(photo.parent, "-r", "16:9", "-o", tmp_path / "out", "-j", "1")
    assert code == 1
    assert "big.jpg: the file changed while it was being cropped; crop it again" in stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{other.stem}_16x9.jpg"]


def test_a_preview_tile_of_a_reduced_decode_draws_the_boxes_of_the_whole_photo():
    full = Image.new("RGB", (2400, 1800), (90, 140, 60))
    reduced = Image.new("RGB", reduced_size(full.size, 4), (90, 140, 60))
    crops = [Crop("16:9", (0, 300, 2400, 1650), 1.5), Crop("1:1", (600, 0, 2400, 1800), 1.2, fit="pad")]
    want = np.asarray(preview_tile(full, crops, "photo.jpg"))
    got = np.asarray(preview_tile(reduced, crops, "photo.jpg", size=full.size))
    assert np.array_equal(got, want)


def test_the_library_reads_a_path_as_the_command_line_and_an_image_as_given(big_photo: Path):
    from s2ccrop.api import Cropper

    cropper = Cropper()
    as_path = cropper.crop(big_photo, ["16:9"])[0]
    as_read = cropper.crop(open_image(big_photo, reduction=MODEL).rgb(), ["16:9"], BIG)[0]
    assert as_path.box == as_read.box and as_path.score == pytest.approx(as_read.score, abs=1e-6)

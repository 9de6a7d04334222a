"""Property-based tests of the geometry (issue 7): for any image size and any ratio, every candidate
lies inside the image with the exact ratio (within a pixel of rounding), the chosen box maps back inside
the upright image, and output sizes are exact and never upscaled unless asked.

Example counts stay modest: the model examples run the (untrained, seeded) network once each.
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from s2ccrop import candidates as cand
from s2ccrop.io.formats import MAX_SIDE, SizeSpec, output_size
from s2ccrop.io.render import render_crop
from s2ccrop.preprocess import model_size
from s2ccrop.types import Ratio

from conftest import photo_image

SIDES = st.integers(min_value=1, max_value=6000)
SMALL_SIDES = st.integers(min_value=1, max_value=96)
FAST = settings(max_examples=300, deadline=None)
MODEL = settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def ratios(draw) -> Ratio:
    """W:H with integer or one-decimal sides, as a user types them (within Ratio's 1:100..100:1)."""
    a = draw(st.integers(1, 400)) / draw(st.sampled_from([1, 10]))
    b = draw(st.integers(1, 400)) / draw(st.sampled_from([1, 10]))
    assume(Fraction(1, 100) <= Fraction(str(a)) / Fraction(str(b)) <= 100)
    return Ratio.parse(f"{a:g}:{b:g}")


ANY_RATIO = st.one_of(ratios(), st.just(Ratio.parse("any")))


def assert_inside(boxes: np.ndarray, width: int, height: int) -> None:
    boxes = np.asarray(boxes)
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) >= 1
    x1, y1, x2, y2 = boxes.T
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= width).all() and (y2 <= height).all()
    assert (x2 > x1).all() and (y2 > y1).all(), "every box is at least one pixel"


def ratio_error(w: int, h: int, r: Fraction) -> float:
    """How far (in pixels) a w x h box is from ratio r: the smaller error of deriving either side."""
    return float(min(abs(w - h * r), abs(h - w / r)))


def assert_ratio(boxes: np.ndarray, ratio: Ratio) -> None:
    r = ratio.width / ratio.height
    for x1, y1, x2, y2 in np.asarray(boxes).tolist():
        assert ratio_error(x2 - x1, y2 - y1, r) <= 1, ((x1, y1, x2, y2), str(ratio))


# ------------------------------------------------------------------ candidates


@FAST
@given(width=SIDES, height=SIDES, ratio=ratios())
def test_fixed_ratio_candidates_are_inside_and_of_the_ratio(width: int, height: int, ratio: Ratio):
    boxes = cand.fixed_ratio(width, height, ratio)
    assert_inside(boxes, width, height)
    assert_ratio(boxes, ratio)
    assert len({tuple(b) for b in boxes.tolist()}) == len(boxes), "no duplicates"
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert areas[0] == areas.max(), "row 0 is the largest box"
    # The largest box touches two opposite sides of the image (it could not grow while keeping the ratio).
    w0, h0 = boxes[0, 2] - boxes[0, 0], boxes[0, 3] - boxes[0, 1]
    assert w0 == width or h0 == height


@FAST
@given(width=SIDES, height=SIDES, ratio=ANY_RATIO)
def test_for_ratio_candidates_are_inside_and_deterministic(width: int, height: int, ratio: Ratio):
    msize = model_size(width, height)
    boxes = cand.for_ratio(width, height, ratio, msize)
    assert boxes.dtype.kind == "i"
    assert_inside(boxes, width, height)
    if not ratio.is_any:
        assert_ratio(boxes, ratio)
    assert np.array_equal(boxes, cand.for_ratio(width, height, ratio, msize))


@FAST
@given(width=SIDES, height=SIDES)
def test_free_form_candidates_are_inside(width: int, height: int):
    assert_inside(cand.free_form(width, height, model_size(width, height)), width, height)


# ------------------------------------------------------------------ the chosen box

_cropper = None


def cropper():
    global _cropper
    if _cropper is None:
        from s2ccrop import Cropper

        _cropper = Cropper(weights="random", device="cpu")
    return _cropper


@MODEL
@given(width=SMALL_SIDES, height=SMALL_SIDES, asked=st.lists(ANY_RATIO, min_size=1, max_size=3), seed=st.integers(0, 99))
def test_chosen_boxes_of_a_pil_image_are_inside_and_of_the_ratio(width, height, asked, seed):
    crops = cropper().crop(photo_image((width, height), seed=seed, kind="noise"), asked)
    assert [c.ratio for c in crops] == [str(r) for r in asked]
    for crop, ratio in zip(crops, asked):
        assert_inside(np.array([crop.box]), width, height)
        if not ratio.is_any:
            assert_ratio(np.array([crop.box]), ratio)
        assert np.isfinite(crop.score)


T = Image.Transpose
STORE_FOR_ORIENTATION = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
                         6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}


@MODEL
@given(width=SMALL_SIDES, height=SMALL_SIDES, orientation=st.integers(1, 8), ratio=ANY_RATIO, seed=st.integers(0, 99))
def test_chosen_box_of_an_exif_rotated_file_maps_inside_the_upright_image(width, height, orientation, ratio, seed):
    """(width, height) is the upright size; the file stores it rotated/flipped with an EXIF tag."""
    upright = photo_image((width, height), seed=seed, kind="noise")
    store = STORE_FOR_ORIENTATION[orientation]
    exif = Image.Exif()
    exif[0x0112] = orientation
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.png"
        (upright if store is None else upright.transpose(store)).save(path, exif=exif.tobytes())
        (crop,) = cropper().crop(path, [ratio])
    assert_inside(np.array([crop.box]), width, height)
    if not ratio.is_any:
        assert_ratio(np.array([crop.box]), ratio)


# ------------------------------------------------------------------ output sizes

SPECS = st.builds(
    SizeSpec,
    width=st.one_of(st.none(), st.integers(1, 5000)),
    height=st.one_of(st.none(), st.integers(1, 5000)),
    upscale=st.booleans(),
)


@FAST
@given(width=SIDES, height=SIDES, ratio=ANY_RATIO, spec=SPECS)
def test_output_size_is_exact_and_never_upscaled_unless_asked(width, height, ratio, spec):
    # The box a fixed ratio would give: the writer is always handed boxes of the ratio asked for.
    if ratio.is_any:
        box, value = (width, height), None
    else:
        box = cand.largest_box_size(width, height, ratio.width / ratio.height)
        value = ratio.value
    try:
        (w, h), clamped = output_size(box, value, spec)
    except ValueError as exc:  # larger than MAX_SIDE a side: refused (the photo's error line), never written
        w, h = map(int, str(exc).split("it would be ", 1)[1].split(" ", 1)[0].split("x"))
        assert spec.upscale and max(w, h) > MAX_SIDE and (w == spec.width or h == spec.height), exc
        return
    assert w >= 1 and h >= 1 and max(w, h) <= MAX_SIDE
    if spec.width is None and spec.height is None:
        assert ((w, h), clamped) == (box, False)
        return
    if clamped:
        assert not spec.upscale and (w, h) == box
        return
    if not spec.upscale:
        assert w <= box[0] and h <= box[1], "never enlarged without --upscale"
    shape = value if value is not None else box[0] / box[1]
    if spec.width and spec.height:
        assert (w, h) == (spec.width, spec.height)
    elif spec.width:
        assert w == spec.width and abs(h - w / shape) <= (0.5 if w / shape >= 0.5 else 1)
    else:
        assert h == spec.height and abs(w - h * shape) <= (0.5 if h * shape >= 0.5 else 1)


@settings(max_examples=60, deadline=None)
@given(iw=st.integers(1, 64), ih=st.integers(1, 64), data=st.data())
def test_render_crop_gives_exactly_the_asked_pixels(iw, ih, data):
    x1 = data.draw(st.integers(0, iw - 1))
    y1 = data.draw(st.integers(0, ih - 1))
    x2 = data.draw(st.integers(x1 + 1, iw))
    y2 = data.draw(st.integers(y1 + 1, ih))
    size = (data.draw(st.integers(1, 128)), data.draw(st.integers(1, 128)))
    mode = data.draw(st.sampled_from(["RGB", "RGBA", "L", "LA"]))
    image = Image.new(mode, (iw, ih))
    out = render_crop(image, (x1, y1, x2, y2), size)
    assert out.size == size and out.mode == mode
    if size == (x2 - x1, y2 - y1):
        assert out.tobytes() == image.crop((x1, y1, x2, y2)).tobytes()

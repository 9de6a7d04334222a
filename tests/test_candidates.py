"""Candidate generation (SPEC §3): the GAIC grid, exact ratios, determinism, bounds."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2ccrop import candidates as cand
from s2ccrop.preprocess import model_size
from s2ccrop.types import Ratio


def _slow_grid(w, h):
    # literal transcription of SPEC §3, free-form
    out = []
    sw, sh = w / 12, h / 12
    for y1 in range(4):
        for y2 in range(8, 12):
            for x1 in range(4):
                for x2 in range(8, 12):
                    if (y2 - y1) * (x2 - x1) > 0.4999 * 144 and 0.5 < (x2 - x1) * sw / ((y2 - y1) * sh) < 2:
                        out.append([sw * (x1 + 0.5), sh * (y1 + 0.5), sw * (x2 + 0.5), sh * (y2 + 0.5)])
    return np.array(out)


@pytest.mark.parametrize("size", [(384, 256), (256, 256), (256, 512), (768, 256)])
def test_gaic_grid_matches_spec(size):
    grid = cand.gaic_grid(*size)
    assert np.allclose(grid, _slow_grid(*size))


def test_gaic_grid_square_count_and_corners():
    grid = cand.gaic_grid(240, 240)
    # 256 index combinations; the area rule removes those with (y2-y1)(x2-x1) <= 72 (e.g. 5x5..8x9...)
    assert len(grid) == len(_slow_grid(240, 240))
    assert grid[:, 0].min() == pytest.approx(10.0) and grid[:, 2].max() == pytest.approx(230.0)


def test_free_form_maps_back_to_pixels():
    boxes = cand.free_form(1024, 768, model_size(1024, 768))
    assert boxes.dtype == np.int64
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 1024).all() and (boxes[:, 3] <= 768).all()
    # corner at 0.5 step of the 352-px model image → 1024/12 * 0.5 ≈ 42.7 px of the original
    assert boxes[:, 0].min() == 43


@pytest.mark.parametrize("ratio", ["16:9", "9:16", "1:1", "4:3", "3:4", "4:5", "1.91:1", "21:9", "2.35:1"])
@pytest.mark.parametrize("size", [(1024, 768), (768, 1024), (4000, 3000), (640, 640), (300, 1200)])
def test_fixed_ratio_exact_and_inside(ratio, size):
    W, H = size
    r = Ratio.parse(ratio)
    boxes = cand.fixed_ratio(W, H, r)
    assert len(boxes) >= 1
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all()
    assert (w >= 1).all() and (h >= 1).all()
    # exact ratio within one pixel of rounding on the derived side
    target = float(r.width / r.height)
    assert (np.abs(w - h * target) <= 1.0 + 1e-9).all() or (np.abs(h - w / target) <= 1.0 + 1e-9).all()
    assert len({tuple(b) for b in boxes.tolist()}) == len(boxes), "duplicates"


@pytest.mark.parametrize("ratio,size,expected", [
    ("16:9", (1024, 768), (0, 96, 1024, 672)),
    ("1:1", (1024, 768), (128, 0, 896, 768)),
    ("9:16", (1024, 768), (296, 0, 728, 768)),
    ("4:3", (1024, 768), (0, 0, 1024, 768)),
    ("16:9", (1920, 1080), (0, 0, 1920, 1080)),
    ("1:1", (3000, 4), (1498, 0, 1502, 4)),
])
def test_first_box_is_largest_centred(ratio, size, expected):
    assert tuple(cand.fixed_ratio(*size, Ratio.parse(ratio))[0]) == expected


def test_deterministic():
    a = cand.fixed_ratio(1234, 777, Ratio.parse("1.91:1"))
    b = cand.fixed_ratio(1234, 777, Ratio.parse("1.91:1"))
    assert np.array_equal(a, b)


def test_tiny_images():
    assert cand.fixed_ratio(1, 1, Ratio.parse("16:9")).tolist() == [[0, 0, 1, 1]]
    boxes = cand.free_form(1, 1, model_size(1, 1))
    assert (boxes == [0, 0, 1, 1]).all()


def test_free_form_has_no_fixed_ratio():
    with pytest.raises(ValueError):
        cand.fixed_ratio(10, 10, Ratio.parse("any"))


@settings(max_examples=150, deadline=None)
@given(
    W=st.integers(1, 6000),
    H=st.integers(1, 6000),
    rw=st.integers(1, 40),
    rh=st.integers(1, 40),
)
def test_property_any_size_any_ratio(W, H, rw, rh):
    r = Fraction(rw, rh)
    boxes = cand.fixed_ratio(W, H, r)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all()
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (w >= 1).all() and (h >= 1).all()
    # within one pixel of the exact ratio on one side, unless the image is too small to hold it
    err = np.minimum(np.abs(w - h * float(r)), np.abs(h - w / float(r)))
    clipped = (w == W) | (h == H) | (w == 1) | (h == 1)
    assert ((err <= 1.0 + 1e-9) | clipped).all()
    ff = cand.free_form(W, H, model_size(W, H))
    assert (ff[:, 0] < ff[:, 2]).all() and (ff[:, 1] < ff[:, 3]).all()
    assert (ff[:, 2] <= W).all() and (ff[:, 3] <= H).all() and (ff >= 0).all()


def test_free_form_of_a_panorama_is_the_whole_image():
    # the grid keeps only aspects in (0.5, 2): a 3000x4 strip gets the whole image
    assert cand.free_form(3000, 4, model_size(3000, 4)).tolist() == [[0, 0, 3000, 4]]


def test_for_ratio_is_cached_read_only_and_equal_to_a_fresh_computation():
    r = Ratio.parse("4:3")
    a = cand.for_ratio(1024, 768, r, model_size(1024, 768))
    assert a is cand.for_ratio(1024, 768, Ratio.parse("4:3"), model_size(1024, 768))  # same size, same array
    assert np.array_equal(a, cand.fixed_ratio(1024, 768, r))
    with pytest.raises(ValueError):
        a[0, 0] = 1  # shared between photos: never edited in place
    free = cand.for_ratio(1024, 768, Ratio.parse("any"), model_size(1024, 768))
    assert np.array_equal(free, cand.free_form(1024, 768, model_size(1024, 768)))
    assert cand.for_ratio(1024, 769, r, model_size(1024, 769)) is not a


def test_full_grid_reaches_the_edges_and_keeps_the_reference_rules():
    full = cand.gaic_grid(240, 240, "full")
    step = 240 / 12
    assert len(full) > len(cand.gaic_grid(240, 240))
    assert [0, 0, 240, 240] in full.tolist()  # the whole photo is a candidate; never in the reference grid
    assert [0, 0, 240, 240] not in cand.gaic_grid(240, 240).tolist()
    w, h = full[:, 2] - full[:, 0], full[:, 3] - full[:, 1]
    assert ((w / step) * (h / step) > 0.4999 * 144).all() and ((w / h > 0.5) & (w / h < 2)).all()
    corners = full / step
    assert np.allclose(corners, np.round(corners))  # on the bin lines
    assert set(corners[:, 0].astype(int)) == {0, 1, 2, 3, 4} and set(corners[:, 2].astype(int)) == {8, 9, 10, 11, 12}
    assert np.array_equal(cand.free_form(1024, 768, model_size(1024, 768), "full"),
                          cand.for_ratio(1024, 768, Ratio.parse("any"), model_size(1024, 768), "full"))
    with pytest.raises(ValueError, match="free-form grid"):
        cand.gaic_grid(240, 240, "dense")

"""How large a crop may be (issue 33): `--scale LO,HI`, `Cropper.crop(scale=)`, `"scale"` in --hints.

A crop's scale is max(w / W, h / H): its size against the largest box of its own shape in the photo.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from s2ccrop import candidates as cand
from s2ccrop.types import Ratio

try:
    from ._cli_helpers import run_in_process
except ImportError:
    from _cli_helpers import run_in_process
from conftest import photo_image

ROOT = Path(__file__).resolve().parent.parent
RANGES = [(0.25, 0.25), (0.25, 0.4), (0.3, 0.5), (0.4, 0.7), (0.5, 0.6), (0.7, 1.0), (1.0, 1.0)]
SIZES = [(1200, 800), (800, 1200), (640, 640), (451, 300)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("ratio", ["any", "16:9", "1:1", "9:16", "4:5"])
def test_the_candidates_of_a_range_are_real_choices_inside_it(size, ratio):
    W, H = size
    for rng in RANGES:
        boxes = cand.for_ratio(W, H, Ratio.parse(ratio), (384, 256), "gaic", rng)
        assert cand.in_scale(boxes, W, H, rng).all(), (ratio, rng)
        widths = sorted({int(b[2] - b[0]) for b in boxes})
        if rng[1] - rng[0] >= 0.15:  # several sizes across the range, ends included
            assert len(widths) >= 3, (ratio, rng, widths)
        scales = [cand.scale_of(b, W, H) for b in boxes]
        assert min(scales) <= rng[0] + 2 / min(W, H) and max(scales) >= rng[1] - 2 / min(W, H), (ratio, rng)
        if rng[1] <= 0.7:  # small crops: positions all over the photo, not one row
            centres = {(round((b[0] + b[2]) / 2 / W, 1), round((b[1] + b[3]) / 2 / H, 1)) for b in boxes}
            assert len(centres) >= 9, (ratio, rng, len(centres))
        if not Ratio.parse(ratio).is_any:
            r = Ratio.parse(ratio).value
            assert all(abs((b[2] - b[0]) - (b[3] - b[1]) * r) <= max(1.0, r) for b in boxes)


def test_the_default_candidates_are_the_ones_of_before():
    W, H = 1200, 800
    assert np.array_equal(cand.for_ratio(W, H, Ratio.parse("16:9"), (384, 256)), cand.fixed_ratio(W, H, Ratio.parse("16:9")))
    assert np.array_equal(cand.for_ratio(W, H, Ratio.parse("any"), (384, 256)), cand.free_form(W, H, (384, 256)))


def test_into_scale_brings_a_box_back_keeping_its_ratio_and_centre():
    rng = np.random.default_rng(0)
    W, H = 900, 600
    for _ in range(300):
        ratio = Ratio.parse(str(rng.choice(["any", "16:9", "1:1", "3:4"])))
        lo = float(rng.uniform(0.2, 0.9))
        scale = (lo, float(min(1.0, lo + rng.uniform(0, 0.3))))
        x1, y1 = int(rng.integers(0, W - 20)), int(rng.integers(0, H - 20))
        box = (x1, y1, int(rng.integers(x1 + 10, W + 1)), int(rng.integers(y1 + 10, H + 1)))
        box = cand.snap(box, ratio, W, H)
        out = cand.into_scale(box, ratio, W, H, scale)
        assert cand.in_scale(np.array([out]), W, H, scale)[0], (box, out, scale)
        assert 0 <= out[0] < out[2] <= W and 0 <= out[1] < out[3] <= H
        if cand.in_scale(np.array([box]), W, H, scale)[0]:
            assert out == box


@pytest.fixture(scope="module")
def cropper():
    from s2ccrop import Cropper

    return Cropper(device="cpu")


@pytest.mark.parametrize("sample", ["chelsea.png", "astronaut.png", "coffee.png"])
def test_the_shipped_model_keeps_every_crop_inside_the_range_to_the_pixel(cropper, sample):
    """With the shipped weights' averaging and box refiner: the reported box is inside the range."""
    from PIL import Image

    image = Image.open(ROOT / "examples" / sample).convert("RGB")
    W, H = image.size
    ratios = ["any", "16:9", "1:1", "9:16", "4:5"]
    default = cropper.crop(image, ratios)
    for rng in RANGES:
        crops = cropper.crop(image, ratios, scale=rng)
        for c in crops:
            assert cand.in_scale(np.array([c.box]), W, H, rng)[0], (sample, rng, c)
            assert not c.widened
            if c.ratio != "any":
                r = Ratio.parse(c.ratio).value
                assert abs(c.width - c.height * r) <= max(1.0, r)
    assert cropper.crop(image, ratios, scale=None) == default


def test_a_hint_no_crop_of_the_range_can_hold_widens_it_and_says_so(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo_image((300, 200), kind="noise").save("p.png")
    code, out, err = run_in_process("p.png", "-r", "1:1", "-r", "16:9", "--scale", "0.25,0.4", "--keep",
                                    "0.2,0.2,0.8,0.8", "--json", "--dry-run", "-j", "1")
    assert code == 0, err
    for r in map(json.loads, out.splitlines()):
        x1, y1, x2, y2 = r["box"]
        assert r["widened"] is True and r["scale"] == [0.25, 0.4]
        assert x1 <= 60 and y1 <= 40 and x2 >= 240 and y2 >= 160  # holds the keep region
        s = cand.scale_of(r["box"], 300, 200)
        assert 0.6 <= s <= 1.0
        # the smallest size that holds it: 0.05 smaller would not
        smaller = cand.for_ratio(300, 200, Ratio.parse(r["ratio"]), (384, 256), "gaic", (s - 0.05, s - 0.05))
        assert not any(b[0] <= 60 and b[1] <= 40 and b[2] >= 240 and b[3] >= 160 for b in smaller)
    # A hint that fits: not widened, and inside the range.
    code, out, err = run_in_process("p.png", "-r", "1:1", "--scale", "0.25,0.4", "--focus", "0.9,0.9", "--json",
                                    "--dry-run", "-j", "1")
    r = json.loads(out)
    assert code == 0 and r["widened"] is False and cand.in_scale(np.array([r["box"]]), 300, 200, (0.25, 0.4))[0]
    x1, y1, x2, y2 = r["box"]
    assert x1 <= 270 < x2 and y1 <= 180 < y2


@pytest.mark.parametrize("value", ["0", "0,0.5", "1.2,1.5", "0.7,0.4", "a,b", "0.5", "0.2,0.4,0.6", "nan,1"])
def test_a_bad_range_is_a_usage_error_naming_the_option(tmp_path: Path, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    photo_image((40, 30), kind="noise").save("p.png")
    code, out, err = run_in_process("p.png", "-r", "1:1", "--scale", value, "--weights", "random", "--device", "cpu")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and err.startswith("s2ccrop: error: --scale: ")
    assert os.listdir(tmp_path) == ["p.png"]


def test_a_hints_line_gives_one_photo_its_own_range(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo_image((300, 200), kind="noise").save("a.png")
    photo_image((300, 200), seed=1, kind="noise").save("b.png")
    Path("h.jsonl").write_text('{"input": "a.png", "scale": [0.3, 0.4]}\n')
    code, out, err = run_in_process("a.png", "b.png", "-r", "1:1", "--hints", "h.jsonl", "--scale", "0.8,1",
                                    "--json", "--dry-run", "-j", "1", "--weights", "random", "--device", "cpu")
    assert code == 0, err
    a, b = map(json.loads, out.splitlines())
    assert a["scale"] == [0.3, 0.4] and cand.in_scale(np.array([a["box"]]), 300, 200, (0.3, 0.4))[0]
    assert b["scale"] == [0.8, 1.0] and cand.in_scale(np.array([b["box"]]), 300, 200, (0.8, 1.0))[0]
    Path("h.jsonl").write_text('{"input": "a.png", "scale": [0.7, 0.4]}\n')
    code, out, err = run_in_process("a.png", "-r", "1:1", "--hints", "h.jsonl", "--weights", "random")
    assert code == 2 and err.startswith('s2ccrop: error: --hints h.jsonl:1: "scale": 0.7,0.4 is not a range')

"""Focus hints: a point the crop must keep, a region kept whole, from the command line, a sidecar file or
the API; scored as the face guard scores faces, ahead of it; bad hints are one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2ccrop import Cropper, batch
from s2ccrop.errors import ConfigError
from s2ccrop.hints import Hints, HintsFile, parse_focus, parse_keep
from s2ccrop.select import Guard, focus_misses, hold, keep_cuts, select_crops
from s2ccrop.types import Ratio

try:
    from ._cli_helpers import FastCropper, run_in_process
except ImportError:  # run from tests/
    from _cli_helpers import FastCropper, run_in_process
from conftest import photo_image

ANY = [Ratio.parse("any")]
SIZE = (400, 300)


# ---------------------------------------------------------------- scoring


def test_focus_misses_by_hand():
    boxes = np.array([[0, 0, 200, 300], [250, 0, 400, 300], [100, 0, 150, 300]], dtype=float)
    got = focus_misses(boxes, (220.0, 150.0), SIZE)
    assert got[0] == pytest.approx(1 + 20 / 500) and got[1] == pytest.approx(1 + 30 / 500)
    assert got[2] == pytest.approx(1 + 70 / 500)
    assert focus_misses(boxes, (120.0, 10.0), SIZE).tolist() == [0.0, pytest.approx(1 + 130 / 500), 0.0]


def test_keep_cuts_by_hand():
    region = (100.0, 100.0, 200.0, 200.0)
    boxes = np.array([[0, 0, 400, 300], [100, 100, 200, 200], [150, 0, 400, 300], [0, 0, 100, 300],
                      [100.4, 99.6, 200, 200]], dtype=float)
    np.testing.assert_allclose(keep_cuts(boxes, region), [0, 0, 1.5, 2.0, 0])  # within half a pixel: whole
    # a box trimming one pixel off the region is not whole: it loses to every box that holds it
    assert keep_cuts(np.array([[101.0, 100.0, 200.0, 200.0]]), region)[0] == pytest.approx(1.01)


def test_a_crop_that_drops_the_focus_point_loses_to_any_that_keeps_it():
    boxes = np.array([[0, 0, 200, 300], [50, 0, 250, 300], [200, 0, 400, 300]], dtype=float)
    scores = np.array([9.0, 5.0, -7.0])  # the worst-scoring box is the only one holding the point
    guard = Guard(SIZE, focus=(300.0, 150.0))
    crop = select_crops(ANY, [boxes], scores, guard)[0]
    assert crop.box == (200, 0, 400, 300) and crop.score == -7.0  # the model's own score is reported
    assert select_crops(ANY, [boxes], scores)[0].box == (0, 0, 200, 300)


def test_when_every_crop_drops_the_point_the_nearest_wins():
    boxes = np.array([[0, 0, 100, 300], [0, 0, 150, 300], [0, 0, 120, 300]], dtype=float)
    crop = select_crops(ANY, [boxes], np.array([5.0, 0.0, 3.0]), Guard(SIZE, focus=(390.0, 10.0)))[0]
    assert crop.box == (0, 0, 150, 300)


def test_keep_region_stays_whole_when_a_candidate_can_hold_it_else_most_of_it():
    boxes = np.array([[0, 0, 150, 300], [100, 0, 250, 300], [200, 0, 350, 300]], dtype=float)
    scores = np.array([3.0, -1.0, 2.0])
    assert select_crops(ANY, [boxes], scores, Guard(SIZE, keep=(120.0, 50.0, 240.0, 250.0)))[0].box == (100, 0, 250, 300)
    # no candidate holds 40..260 whole: the one that keeps most of it wins, whatever the scores
    assert select_crops(ANY, [boxes], scores, Guard(SIZE, keep=(40.0, 50.0, 260.0, 250.0)))[0].box == (100, 0, 250, 300)


def test_hints_come_before_the_face_guard():
    boxes = np.array([[0, 0, 200, 300], [150, 0, 350, 300]], dtype=float)
    faces = np.array([[180.0, 100.0, 240.0, 160.0]])  # the first box cuts this face, the second holds it
    guard = Guard(SIZE, faces=faces, focus=(100.0, 150.0))
    # box 0 keeps the point but cuts the face; box 1 keeps the face but drops the point
    assert select_crops(ANY, [boxes], np.array([0.0, 5.0]), guard)[0].box == (0, 0, 200, 300)
    assert select_crops(ANY, [boxes], np.array([0.0, 5.0]), Guard(SIZE, faces=faces))[0].box == (150, 0, 350, 300)


def test_averaging_keeps_the_point_too():
    boxes = np.array([[0, 0, 200, 300], [10, 0, 210, 300], [190, 0, 390, 300]], dtype=float)
    crop = select_crops(ANY, [boxes], np.array([4.0, 4.0, 1.0]), Guard(SIZE, focus=(300.0, 150.0)), average=True,
                        size=SIZE)[0]
    assert crop.box[0] <= 300 <= crop.box[2]


def test_hold_grows_the_framing_to_everything_it_cuts():
    guard = Guard(SIZE, faces=np.array([[190.0, 20.0, 230.0, 60.0]]), focus=(10.0, 290.0), keep=(50.0, 50.0, 120.0, 100.0))
    box = hold((100, 40, 200, 200), guard, SIZE)
    assert box[0] <= 10 and box[3] >= 290  # the point
    assert box[0] <= 50 and box[1] <= 50  # the region
    assert box[2] >= 230 + 0.15 * 40 and box[1] <= 20 - 0.15 * 40  # the face, with the guard's margin
    assert hold((0, 0, 400, 300), guard, SIZE) == (0, 0, 400, 300)
    assert hold((100, 100, 150, 150), None, SIZE) == (100, 100, 150, 150)


# ---------------------------------------------------------------- parsing


def test_parse_focus_and_keep():
    assert parse_focus("0.25, 0.5") == (0.25, 0.5) and parse_focus([1, 0]) == (1.0, 0.0)
    assert parse_keep("0,0.1,0.5,1") == (0.0, 0.1, 0.5, 1.0)
    for bad, match in (("1.5,0.5", "outside the photo"), ("0.5", "expected 2 numbers"), ("a,b", "expected 2"),
                       ("nan,0.5", "outside"), ([True, 0.5], "expected numbers")):
        with pytest.raises(ConfigError, match=match):
            parse_focus(bad)
    with pytest.raises(ConfigError, match="is empty"):
        parse_keep("0.5,0.5,0.2,0.9")


def write_lines(path: Path, *lines) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_hints_file_lines_and_their_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (8, 8)).save("a.png")
    Image.new("RGB", (8, 8)).save("b.png")
    good = HintsFile.read(write_lines(tmp_path / "h.jsonl", {"input": "a.png", "focus": [0.1, 0.2]}, "",
                                      {"input": "./b.png", "keep": [0, 0, 0.5, 0.5], "focus": None}))
    assert good.lookup(tmp_path / "a.png") == Hints((0.1, 0.2), None)
    assert good.lookup("b.png") == Hints(None, (0.0, 0.0, 0.5, 0.5))
    cases = [
        ('{"input": "a.png", "focus": [0.1, 0.2]', "h.jsonl:1: not a JSON object"),
        ('["a.png"]', "not a JSON object but list"),
        ({"input": "a.png", "fokus": [0.1, 0.2]}, "unknown field 'fokus'"),
        ({"input": "a.png"}, "no hint"),
        ({"input": "a.png", "focus": [2, 0.2]}, "h.jsonl:1: \"focus\": 2, 0.2 is outside the photo"),
        ({"input": "a.png", "keep": "0,0,1,1"}, "must be a list"),
        ({"input": "missing.png", "focus": [0.5, 0.5]}, "input 'missing.png' is not a file"),
    ]
    for line, message in cases:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            HintsFile.read(write_lines(tmp_path / "h.jsonl", line))
    with pytest.raises(ConfigError, match="h.jsonl:2: 'a.png' already has hints on line 1"):
        HintsFile.read(write_lines(tmp_path / "h.jsonl", {"input": "a.png", "focus": [0, 0]},
                                   {"input": "a.png", "focus": [1, 1]}))


# ---------------------------------------------------------------- the command line


@pytest.fixture()
def fake_model(monkeypatch):
    fake = FastCropper()
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: fake)
    return fake


@pytest.mark.parametrize("args, message", [
    (["--focus", "1.2,0.5"], "s2ccrop: error: --focus: 1.2, 0.5 is outside the photo"),
    (["--focus", "0.5"], "s2ccrop: error: --focus: expected 2 numbers"),
    (["--keep", "0.5,0.5,0.2,0.9"], "s2ccrop: error: --keep: the region 0.5,0.5,0.2,0.9 is empty"),
    (["--pad-color", "red"], "s2ccrop: error: --pad-color needs --fit pad or --fit auto"),
    (["--fit", "pad", "--pad-color", "reddish"], "s2ccrop: error: --pad-color 'reddish': not a colour"),
    (["--fit", "stretch"], "s2ccrop: error: argument --fit: invalid choice: 'stretch'"),
])
def test_bad_flags_are_usage_errors(fake_model, tmp_path, args, message):
    photo_image((20, 10), kind="noise").save(tmp_path / "a.png")
    code, out, err = run_in_process(tmp_path / "a.png", "-o", tmp_path / "out", *args)
    assert code == 2 and out == ""
    assert err.splitlines()[0].startswith(message) and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_hints_reach_each_photo_and_the_json(fake_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("in").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        photo_image((20, 10), kind="noise").save(Path("in") / name)
    write_lines(Path("h.jsonl"), {"input": "in/a.png", "focus": [0.1, 0.9]}, {"input": "in/b.png", "keep": [0, 0, 0.5, 1]})
    code, out, err = run_in_process("in", "-r", "1:1", "-o", "out", "--json", "-j", "1", "--hints", "h.jsonl",
                                    "--focus", "0.5,0.5")
    assert code == 0, err
    records = {r["input"]: r for r in map(json.loads, out.splitlines())}
    assert records["in/a.png"]["focus"] == [0.1, 0.9] and "keep" not in records["in/a.png"]
    assert records["in/b.png"]["focus"] == [0.5, 0.5] and records["in/b.png"]["keep"] == [0, 0, 0.5, 1]
    assert records["in/c.png"]["focus"] == [0.5, 0.5]
    assert all(r["fit"] == "crop" for r in records.values())
    asked = sorted(fake_model.asked, key=lambda k: (k["focus"], k["keep"] or ()))
    assert [(a["focus"], a["keep"], a["fit"]) for a in asked] == [
        ((0.1, 0.9), None, "crop"), ((0.5, 0.5), None, "crop"), ((0.5, 0.5), (0.0, 0.0, 0.5, 1.0), "crop")]


def test_a_hints_line_for_a_photo_not_in_the_run_is_that_photos_error(fake_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo_image((20, 10), kind="noise").save("a.png")
    photo_image((20, 10), kind="noise").save("other.png")
    write_lines(Path("h.jsonl"), {"input": "other.png", "focus": [0.5, 0.5]})
    code, out, err = run_in_process("a.png", "-r", "1:1", "-o", "out", "--hints", "h.jsonl", "-j", "1")
    assert code == 1
    assert err.splitlines() == ["s2ccrop: error: other.png: has hints (--hints h.jsonl:1) but is not among the "
                                "photos of this run"]
    assert Path("out/a_1x1.png").exists()


def test_a_bad_hints_file_is_a_usage_error_before_any_work(fake_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo_image((20, 10), kind="noise").save("a.png")
    Path("h.jsonl").write_text('{"input": "a.png", "focus": [0.5, 0.5]}\n{"input": "a.png", "focus": [0.5]}\n')
    code, out, err = run_in_process("a.png", "-o", "out", "--hints", "h.jsonl")
    assert code == 2 and not Path("out").exists()
    assert err == 's2ccrop: error: --hints h.jsonl:2: "focus": expected 2 numbers between 0 and 1, got 1\n'
    code, _, err = run_in_process("a.png", "-o", "out", "--hints", "nope.jsonl")
    assert code == 2 and err.startswith("s2ccrop: error: --hints nope.jsonl: cannot read it: no such file")


# ---------------------------------------------------------------- the API, with a model


@pytest.fixture(scope="module")
def cropper():
    return Cropper(weights="random", device="cpu")


def contains(box, x, y) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


@pytest.mark.parametrize("ratio", ["9:16", "1:1", "any"])
def test_the_api_keeps_a_focus_point_the_model_would_drop(cropper, ratio):
    img = photo_image(seed=3, kind="noise")
    free = cropper.crop(img, [ratio])[0]
    # a point the model's own choice leaves out: beyond its box, on the side with more room
    x = (free.box[0] / 2) if free.box[0] > 320 - free.box[2] else (free.box[2] + 320) / 2
    assert not contains(free.box, x, 120)
    focused = cropper.crop(img, [ratio], focus=(x / 320, 0.5))[0]
    assert contains(focused.box, x, 120)


def test_the_api_keeps_a_region_whole(cropper):
    img = photo_image(seed=5, kind="noise")
    free = cropper.crop(img, ["1:1"])[0]
    keep = (0.0, 0.1, 0.3, 0.9) if free.box[0] > 40 else (0.7, 0.1, 1.0, 0.9)
    kept = cropper.crop(img, ["1:1"], keep=keep)[0]
    assert kept.box[0] <= keep[0] * 320 + 0.5 and kept.box[2] >= keep[2] * 320 - 0.5
    assert kept.box[1] <= keep[1] * 240 + 0.5 and kept.box[3] >= keep[3] * 240 - 0.5
    with pytest.raises(ConfigError, match="focus"):
        cropper.crop(img, ["1:1"], focus=(1.5, 0))
    with pytest.raises(ConfigError, match="fit must be one of"):
        cropper.crop(img, ["1:1"], fit="stretch")


def test_given_faces_join_the_guard(cropper):
    """A face straddling the model's unguarded crop: with the face given, no crop cuts it."""
    from s2ccrop.select import FACE_MARGIN, face_cuts

    img = photo_image(seed=7, kind="noise")
    plain = cropper.crop(img, ["9:16"])[0]
    edge = plain.box[0] if plain.box[0] > 30 else plain.box[2]
    face = np.array([[(edge - 20) / 320, 0.4, (edge + 20) / 320, 0.6]])
    pixels = face * [320, 240, 320, 240]
    assert face_cuts(np.array([plain.box]), pixels, FACE_MARGIN)[0] > 0
    guarded = cropper.crop(img, ["9:16"], faces=face)[0]
    assert face_cuts(np.array([guarded.box]), pixels, FACE_MARGIN)[0] == 0


def test_hints_of_skipped_and_failed_photos_count_as_met(fake_model, tmp_path, monkeypatch):
    """A resumed run (--skip-existing) skips a hinted photo whose outputs exist: no error for its line."""
    monkeypatch.chdir(tmp_path)
    photo_image((20, 10), kind="noise").save("a.png")
    write_lines(Path("h.jsonl"), {"input": "a.png", "focus": [0.5, 0.5]})
    assert run_in_process("a.png", "-r", "1:1", "-o", "out", "--hints", "h.jsonl", "-j", "1")[0] == 0
    code, out, err = run_in_process("a.png", "-r", "1:1", "-o", "out", "--hints", "h.jsonl", "-j", "1",
                                    "--skip-existing")
    assert (code, out, err) == (0, "", "")

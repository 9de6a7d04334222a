"""Coarse-to-fine search (s2ccrop/search.py) and how the Cropper uses it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from s2ccrop import Cropper, candidates
from s2ccrop import search as S
from s2ccrop.select import FACE_CUT_PENALTY, Guard, contenders, guard_penalties, select_crops
from s2ccrop.types import Ratio

RATIOS = ["16:9", "4:3", "1:1", "9:16", "any"]


def _grid(width: int = 640, height: int = 480, ratio: str = "any") -> np.ndarray:
    return candidates.for_ratio(width, height, Ratio.parse(ratio), (320, 240))


def _photo(seed: int, size=(320, 240)) -> Image.Image:
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(4):
        cx, cy, r = rng.random() * w, rng.random() * h, (0.1 + 0.3 * rng.random()) * min(w, h)
        img += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None] * rng.random(3) * 255
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("ratio", ["any", "16:9", "1:1", "9:16"])
def test_cover_reaches_every_candidate(ratio):
    boxes = _grid(ratio=ratio)
    chosen = S.cover(boxes, 0.5)
    assert np.all(np.diff(chosen) > 0) and len(chosen) < len(boxes)
    assert (S.iou(boxes, boxes[chosen]) >= 0.5).any(axis=1).all()
    assert np.array_equal(S.cover(boxes.copy(), 0.5), chosen)  # deterministic (and remembered)
    assert len(S.cover(boxes, 0.7)) > len(chosen)  # a finer cover needs more


def test_iou_of_boxes():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert np.allclose(S.iou(a, b), [[1, 1 / 3, 0], [1, 1 / 3, 0]])


def _smooth_scores(boxes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """A score that falls off with the distance from one box: its best is the candidate nearest it."""
    return -np.abs(boxes - target).sum(axis=1) / 100.0


def test_search_finds_a_single_peak_scoring_a_fraction():
    groups = [_grid(ratio=r) for r in ("any", "16:9", "1:1")]
    boxes = np.concatenate(groups)
    targets = [np.array([100, 60, 500, 420]), np.array([0, 100, 640, 460]), np.array([200, 0, 640, 440])]
    exact = np.concatenate([_smooth_scores(g, t) for g, t in zip(groups, targets)])
    calls = []

    def score(pick):
        calls.append(pick.copy())
        return exact[pick]

    got = S.searched_scores(groups, np.zeros(len(boxes)), score)
    scored = np.isfinite(got)
    assert np.array_equal(got[scored], exact[scored])  # scores are the model's own
    assert 0.05 < scored.mean() < 0.7
    assert 2 <= len(calls) <= 1 + S.REFINE_ROUNDS
    assert not np.intersect1d(calls[0], np.concatenate(calls[1:])).size  # nothing scored twice
    want = select_crops([Ratio.parse(r) for r in ("any", "16:9", "1:1")], groups, exact)
    assert [c.box for c in select_crops([Ratio.parse(r) for r in ("any", "16:9", "1:1")], groups, got)] == \
        [c.box for c in want]


def test_search_scores_every_neighbour_of_the_best():
    boxes = _grid()
    rng = np.random.default_rng(3)
    exact = rng.normal(size=len(boxes))
    got = S.searched_scores([boxes], np.zeros(len(boxes)), lambda pick: exact[pick])
    scored = np.flatnonzero(np.isfinite(got))
    top = scored[np.argsort(-got[scored], kind="stable")[: S.REFINE_TOP]]
    near = (S.iou(boxes, boxes[top]) >= S.REFINE_IOU).any(axis=1)
    assert np.isfinite(got[near]).all()  # the search stopped because the best ones' neighbourhoods were done
    assert np.isfinite(got[S.cover(boxes)]).all()


def test_search_leaves_out_what_the_guard_rules_out_and_scores_all_when_nothing_is_left():
    boxes = _grid()
    face = np.array([[0.0, 200.0, 60.0, 260.0]])  # at the left edge: some candidates cut it, others keep it whole
    penalties = guard_penalties([boxes], Guard((640, 480), faces=face))
    assert (penalties > 0).any() and (penalties == 0).any()
    got = S.searched_scores([boxes], penalties, lambda pick: np.zeros(len(pick)))
    assert not np.isfinite(got[penalties > 0]).any()
    everywhere = np.full(len(boxes), FACE_CUT_PENALTY)  # every candidate cuts: all scored, the guard decides
    assert np.isfinite(S.searched_scores([boxes], everywhere, lambda pick: np.zeros(len(pick)))).all()


def test_small_groups_are_scored_whole():
    boxes = _grid()[: S.SMALL_GROUP]
    calls = []
    got = S.searched_scores([boxes], np.zeros(len(boxes)), lambda pick: calls.append(pick) or np.zeros(len(pick)))
    assert np.isfinite(got).all() and len(calls) == 1


def test_contenders_skip_unscored_candidates():
    groups = [np.zeros((4, 4)), np.zeros((3, 4))]
    approx = np.array([1.0, -np.inf, 0.9, -np.inf, -np.inf, 2.0, 1.9])
    assert list(contenders(groups, approx, np.zeros(7), margin=0.25)) == [0, 2, 5, 6]


# ---------------------------------------------------------------- the Cropper


@pytest.fixture(scope="module")
def shipped():
    # choosing the best candidate, where the search's boxes can be compared with exhaustive argmax;
    # averaging is tested with the search below
    # (the default scores every candidate by default: its graph is too narrow for the search to pay)
    return (Cropper(device="cpu", bf16_ranking=False, selection="best", search=True),
            Cropper(device="cpu", bf16_ranking=False, int8_ranking=False, search=False, selection="best"))


def test_search_is_the_default_for_our_wide_checkpoints_only(monkeypatch, own_checkpoint):
    """On by default for our checkpoints whose graph is at least SEARCH_MIN_NODE_DIM wide (v3, v4);
    off for narrower ones (the default s2ccrop-v5) and for reference checkpoints; the environment and
    the keyword win, in that order."""
    from s2ccrop.search import SEARCH_MIN_NODE_DIM, pays_for

    monkeypatch.delenv("S2CCROP_SEARCH", raising=False)
    default = Cropper(device="cpu")
    assert default.model.config.node_dim < SEARCH_MIN_NODE_DIM and not pays_for(default.model.config)
    assert not default.search and not default.info()["search"]
    assert default.info()["ranking"] == default.model.ranking
    wide, narrow = own_checkpoint(SEARCH_MIN_NODE_DIM), own_checkpoint(SEARCH_MIN_NODE_DIM // 2)
    assert Cropper(wide, device="cpu").search and Cropper(wide, device="cpu").info()["search"]
    assert not Cropper(narrow, device="cpu").search
    assert not Cropper(weights="random", device="cpu").search  # the reference's shape and scoring
    monkeypatch.setenv("S2CCROP_SEARCH", "0")
    assert not Cropper(wide, device="cpu").search
    assert Cropper(wide, device="cpu", search=True).search  # the keyword wins
    monkeypatch.setenv("S2CCROP_SEARCH", "1")
    assert Cropper(weights="random", device="cpu").search and Cropper(device="cpu").search
    assert not Cropper(device="cpu", search=False).search
    monkeypatch.setenv("S2CCROP_SEARCH", "maybe")
    from s2ccrop.errors import ConfigError

    with pytest.raises(ConfigError, match="S2CCROP_SEARCH"):
        Cropper(weights="random", device="cpu")


def _exhaustive(cropper: Cropper, image, ratios):
    """Today's choice: every candidate scored exactly, then select_crops, then the model's box refiner
    when it has one (the default s2ccrop-v5 does)."""
    p = cropper.prepare(image)
    parsed = [Ratio.parse(r) for r in ratios]
    with torch.inference_mode():
        fmap = cropper.features([p])
        groups = cropper.candidates(p, parsed)
        guard = cropper.guard(p)
        scores = cropper.score_features(fmap, 0, p, np.concatenate(groups))
        crops = select_crops(parsed, groups, scores, guard)
        if cropper.model.config.box_refiner:
            crops = cropper._refined(p, parsed, crops, guard, fmap, 0)
    return [c.box for c in crops]


def test_search_off_gives_exactly_the_exhaustive_boxes(shipped):
    _, exact = shipped
    calls = []
    original = exact.score_features
    exact.score_features = lambda fmap, i, p, boxes, **k: calls.append(len(boxes)) or original(fmap, i, p, boxes, **k)
    try:
        for seed in range(4):
            photo = _photo(seed)
            assert [c.box for c in exact.crop(photo, RATIOS)] == _exhaustive(exact, photo, RATIOS)
    finally:
        del exact.score_features
    every = [n for n in calls if n > len(RATIOS)]
    assert len(every) == 4 * 2  # one call for every candidate per photo (+ _exhaustive's own)
    assert calls.count(len(RATIOS)) == len(calls) - len(every) == 4  # and the refined crops' own scores


def test_search_scores_fewer_and_reports_exact_scores(shipped):
    search, exact = shipped
    same = 0
    for seed in range(6):
        photo = _photo(10 + seed)
        p = search.prepare(photo)
        with torch.inference_mode():
            fmap = search.features([p])
            groups = search.candidates(p, [Ratio.parse(r) for r in RATIOS])
            got = search.selection_scores(fmap, 0, p, groups, search.guard(p))
            every = search.score_features(fmap, 0, p, np.concatenate(groups))
        scored = np.isfinite(got)
        assert scored.mean() < 0.8
        assert np.allclose(got[scored], every[scored], atol=1e-4)
        a, b = search.crop(photo, RATIOS), exact.crop(photo, RATIOS)
        same += sum(x.box == y.box for x, y in zip(a, b))
        for c in a:
            box = np.array([c.box], dtype=np.float64)
            with torch.inference_mode():
                assert abs(search.score_features(search.features([p]), 0, p, box)[0] - c.score) < 1e-4
    assert same >= 0.8 * 6 * len(RATIOS)


def test_search_composes_with_averaging_and_bf16_ranking():
    averaged = Cropper(device="cpu", bf16_ranking=False, selection="average", search=True)
    ranked = Cropper(device="cpu", bf16_ranking=True, search=True)
    assert averaged.search and ranked.search and ranked.model.approximates
    for seed in range(3):
        photo = _photo(20 + seed)
        p = averaged.prepare(photo)
        for cropper in (averaged, ranked):
            for c in cropper.crop(photo, RATIOS):
                with torch.inference_mode():
                    exact = cropper.score_features(cropper.features([p]), 0, p, np.array([c.box], dtype=np.float64))[0]
                assert abs(exact - c.score) < 1e-4  # what is reported is the exact score of the box shown
    assert ranked._ranking["ranked"] > 0 and ranked._ranking["rescored"] < ranked._ranking["ranked"]


def test_search_keeps_the_face_guard_and_hints(shipped):
    search, exact = shipped
    photo = _photo(30, (400, 300))
    face = [[0.45, 0.4, 0.55, 0.55]]
    for kw in ({"faces": face}, {"keep": (0.05, 0.1, 0.4, 0.9)}, {"focus": (0.9, 0.5)}):
        a, b = search.crop(photo, RATIOS, **kw), exact.crop(photo, RATIOS, **kw)
        p = search.prepare(photo)
        p.focus, p.keep = kw.get("focus"), kw.get("keep")
        if "faces" in kw:
            p.faces = np.array(face)
        guard = search.guard(p)
        pen_a = guard_penalties([np.array([c.box]) for c in a], guard)
        pen_b = guard_penalties([np.array([c.box]) for c in b], guard)
        assert np.all(pen_a <= pen_b + 1e-9)  # never cuts more than the exhaustive choice


def test_search_and_int8_ranking_work_for_a_v3_shaped_checkpoint(own_checkpoint):
    """The next default (configs/s2ccrop-v3.toml): the full free-form grid, a half-width graph, averaged
    selection. Everything is read from the checkpoint's config; nothing is keyed on a model's name."""
    from s2ccrop.model.s2cnet import int8_linear_is_available

    path = own_checkpoint(128)
    fast = Cropper(weights=path, device="cpu", bf16_ranking=False)
    exact = Cropper(weights=path, device="cpu", bf16_ranking=False, int8_ranking=False, search=False)
    assert fast.search and fast.averages and not exact.search
    assert fast.model.ranking is None  # averaging rescores nearly all it ranks: int8 ranking would not pay
    best = Cropper(weights=path, device="cpu", bf16_ranking=False, selection="best")
    assert best.model.ranking == ("int8" if int8_linear_is_available() else None)
    photo = _photo(40, (400, 300))
    p = fast.prepare(photo)
    groups = fast.candidates(p, [Ratio.parse("any")])
    assert len(groups[0]) > 150  # the full grid
    for cropper in (fast, exact):
        crops = cropper.crop(photo, RATIOS)
        assert [c.ratio for c in crops] == RATIOS
        for c in crops:
            x1, y1, x2, y2 = c.box
            assert 0 <= x1 < x2 <= 400 and 0 <= y1 < y2 <= 300
            with torch.inference_mode():
                want = cropper.score_features(cropper.features([p]), 0, p, np.array([c.box], dtype=np.float64))[0]
            assert abs(want - c.score) < 1e-4

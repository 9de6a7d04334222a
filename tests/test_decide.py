"""`decide`: the one place a crop is chosen, driven here by a model whose scores are known, so every
step can be checked by hand: candidates, guard, scores, best or average, refine, fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from s2ccrop import candidates as cand
from s2ccrop.decide import Prepared, Rules, decide, guard_of
from s2ccrop.types import Ratio

SIZE = (400, 300)
MODEL_SIZE = (352, 256)


class KnownModel:
    """Scores a box by how close its centre is to `target` (higher nearer), or as `table` says; moves
    every box by `shift` when asked to refine. Records every call."""

    def __init__(self, target=(300.0, 150.0), shift=(0.0, 0.0), table=None):
        self.target, self.shift, self.table = np.array(target), np.array(shift * 2), table
        self.scored: list[np.ndarray] = []
        self.refined: list[np.ndarray] = []

    def score(self, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64)
        self.scored.append(boxes)
        if self.table is not None and len(boxes) == len(self.table):
            return np.asarray(self.table, dtype=np.float64)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        return -np.hypot(*(centres - self.target).T) / 100.0

    def refine(self, boxes: np.ndarray) -> np.ndarray:
        self.refined.append(np.asarray(boxes, dtype=np.float64))
        return np.asarray(boxes, dtype=np.float64) + self.shift


def prepared(**hints) -> Prepared:
    image = Image.new("RGB", SIZE)
    return Prepared(image, SIZE, MODEL_SIZE, torch.zeros(1, 3, MODEL_SIZE[1], MODEL_SIZE[0]), "p", **hints)


def ratios(*names: str) -> list[Ratio]:
    return [Ratio.parse(n) for n in names]


def test_every_candidate_is_scored_once_and_the_best_wins():
    model = KnownModel()
    crops = decide(prepared(), ratios("1:1", "any"), model, Rules(grid="full"))
    groups = [cand.for_ratio(*SIZE, r, MODEL_SIZE, "full") for r in ratios("1:1", "any")]
    assert len(model.scored) == 1 and np.array_equal(model.scored[0], np.concatenate(groups))
    for crop, boxes in zip(crops, groups):
        scores = model.score(boxes)
        assert crop.box == tuple(int(v) for v in boxes[int(np.argmax(scores))]) and crop.score == pytest.approx(scores.max())
    assert not model.refined


def test_equal_scores_go_to_the_earlier_candidate():
    boxes = cand.for_ratio(*SIZE, Ratio.parse("1:1"), MODEL_SIZE)
    table = np.zeros(len(boxes))
    table[[3, 7]] = 1.0
    crop = decide(prepared(), ratios("1:1"), KnownModel(table=table), Rules())[0]
    assert crop.box == tuple(int(v) for v in boxes[3])


def test_a_face_is_not_cut_when_a_candidate_can_keep_it():
    """The best-scoring 1:1 box would halve the face: another box wins (guard before scores)."""
    model = KnownModel(target=(200.0, 150.0))
    plain = decide(prepared(), ratios("1:1"), model, Rules())[0]
    x1, y1, x2, y2 = plain.box
    face = np.array([[x2 - 20, 100, x2 + 20, 140]], dtype=np.float64) / [*SIZE, *SIZE]  # across its right edge
    guarded = decide(prepared(faces=face), ratios("1:1"), model, Rules())[0]
    assert guarded.box != plain.box
    fx1, fx2 = face[0, 0] * SIZE[0], face[0, 2] * SIZE[0]
    assert guarded.box[2] <= fx1 + 0.1 * 40 or guarded.box[2] >= fx2 - 0.1 * 40 or guarded.box[0] >= fx2
    off = decide(prepared(faces=face), ratios("1:1"), model, Rules(face_guard=False))[0]
    assert off.box == plain.box


def test_averaging_reports_the_score_of_the_box_itself():
    model = KnownModel()
    crop = decide(prepared(), ratios("any"), model, Rules(average=True, grid="full"))[0]
    assert len(model.scored) == 2 and np.array_equal(model.scored[1], np.array([crop.box], dtype=np.float64))
    assert crop.score == pytest.approx(model.score(np.array([crop.box], dtype=np.float64))[0])


@pytest.mark.parametrize("mode", ["move", "size", "off"])
def test_the_refiner_moves_free_form_crops_and_ratio_crops_as_its_mode_says(mode):
    model = KnownModel(target=(200.0, 150.0), shift=(10.0, 0.0))  # the 1:1 crop has room to move right
    before = decide(prepared(), ratios("any", "1:1"), KnownModel(target=(200.0, 150.0)), Rules())
    after = decide(prepared(), ratios("any", "1:1"), model, Rules(refiner=True, refine_ratio_given=mode))
    assert after[0].box != before[0].box  # free-form: always moved
    if mode == "off":
        assert after[1].box == before[1].box and len(model.refined[0]) == 1
    else:
        moved = after[1].box[0] - before[1].box[0]
        assert (moved > 0) if mode == "move" else abs(moved) <= 1  # "size" keeps the crop's centre
        assert (after[1].box[2] - after[1].box[0]) == (after[1].box[3] - after[1].box[1])  # still 1:1


def test_a_refined_crop_stays_where_it_was_when_the_move_would_drop_the_focus_point():
    plain = decide(prepared(), ratios("any"), KnownModel(), Rules())[0]
    focus = ((plain.box[0] + 2) / SIZE[0], 0.5)  # just inside its left edge
    model = KnownModel(shift=(40.0, 0.0))
    crop = decide(prepared(focus=focus), ratios("any"), model, Rules(refiner=True))[0]
    assert crop.box == plain.box


def test_pad_shows_the_free_form_framing_for_every_fixed_ratio():
    model = KnownModel()
    crops = decide(prepared(fit="pad"), ratios("9:16", "any"), model, Rules())
    assert crops[0].fit == "pad" and crops[0].box == crops[1].box and crops[1].fit == "crop"
    alone = decide(prepared(fit="pad"), ratios("9:16"), KnownModel(), Rules())[0]
    assert alone.box == crops[1].box  # without "any" asked, the same framing is found


def test_guard_of_is_none_without_anything_to_guard_and_in_pixels_otherwise():
    assert guard_of(prepared()) is None
    g = guard_of(prepared(focus=(0.5, 0.25), keep=(0.1, 0.2, 0.3, 0.4)))
    assert g.focus == (200.0, 75.0) and g.keep == pytest.approx((40.0, 60.0, 120.0, 120.0)) and g.faces is None

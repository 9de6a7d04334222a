"""The face guard: candidates that cut through a face lose to those that do not."""

from __future__ import annotations

import numpy as np
import pytest

from s2ccrop.select import CUT_MAX, CUT_MIN, face_cuts, select_crops
from s2ccrop.types import Ratio

FACE = np.array([[100.0, 100.0, 200.0, 200.0, 0.99]])


def test_face_cuts_by_hand():
    boxes = np.array([
        [0, 0, 400, 400],  # the whole face inside
        [0, 0, 150, 400],  # half the face: the worst cut
        [0, 0, 120, 400],  # 20 % kept
        [0, 0, 105, 400],  # 5 % kept: a sliver at the border, not a cut
        [0, 0, 195, 400],  # 95 % kept: a trimmed edge, not a cut
        [300, 0, 400, 400],  # no face at all
    ], dtype=float)
    np.testing.assert_allclose(face_cuts(boxes, FACE), [0, 1, 0.4, 0, 0, 0])
    assert face_cuts(boxes, np.zeros((0, 5))).tolist() == [0] * 6
    assert CUT_MIN < 0.2 and CUT_MAX > 0.8


def test_face_cuts_takes_the_worst_face():
    faces = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], dtype=float)
    boxes = np.array([[0, 0, 55, 100], [0, 0, 5, 100]], dtype=float)
    np.testing.assert_allclose(face_cuts(boxes, faces), [1.0, 1.0])
    np.testing.assert_allclose(face_cuts(np.array([[0, 0, 57, 100]], float), faces), [0.6])


def test_guard_skips_the_best_scoring_box_when_it_cuts_a_face():
    boxes = np.array([[0, 0, 150, 300], [0, 0, 250, 300], [210, 0, 400, 300]], dtype=float)
    scores = np.array([3.0, 1.0, 2.0])
    r = [Ratio.parse("any")]
    assert select_crops(r, [boxes], scores)[0].box == (0, 0, 150, 300)
    guarded = select_crops(r, [boxes], scores, FACE)[0]
    assert guarded.box == (210, 0, 400, 300)  # no face at all is not a cut
    assert guarded.score == 2.0  # the model's own score is reported


def test_guard_falls_back_to_the_least_cut_when_all_cut():
    boxes = np.array([[0, 0, 150, 300], [0, 0, 170, 300], [0, 0, 120, 300], [0, 0, 180, 300]], dtype=float)
    scores = np.array([3.0, 2.5, 1.0, 2.0])
    crop = select_crops([Ratio.parse("any")], [boxes], scores, FACE)[0]
    # severities 1, 0.6, 0.4, 0.4: the two least-cut tie, and the model's score decides between them
    assert crop.box == (0, 0, 180, 300)


def test_guard_works_per_ratio_group():
    a = np.array([[0, 0, 150, 300], [0, 0, 300, 300]], dtype=float)
    b = np.array([[0, 0, 300, 150], [0, 100, 300, 250]], dtype=float)
    scores = np.array([5.0, 0.0, 5.0, 0.0])
    crops = select_crops([Ratio.parse("1:2"), Ratio.parse("2:1")], [a, b], scores, FACE)
    assert crops[0].box == (0, 0, 300, 300) and crops[1].box == (0, 100, 300, 250)


def test_guard_keeps_nan_an_error():
    with pytest.raises(ValueError, match="NaN"):
        select_crops([Ratio.parse("any")], [np.zeros((2, 4))], np.array([np.nan, 1.0]), FACE)

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


def test_face_margin_grows_the_face_before_measuring():
    box = np.array([[0, 0, 190, 400]], dtype=float)  # keeps 90 % of the face box: not a cut
    assert face_cuts(box, FACE)[0] == 0
    # grown by 15 % a side the face spans 85..215: the box keeps 105/130 = 81 % of it
    np.testing.assert_allclose(face_cuts(box, FACE, margin=0.15), [2 * (1 - 105 / 130)])


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


# ------------------------------------------------------------------ end to end, shipped weights

from pathlib import Path  # noqa: E402

from PIL import Image  # noqa: E402

from s2ccrop.presets import PRESETS  # noqa: E402

ASTRONAUT = Path(__file__).resolve().parent.parent / "examples" / "astronaut.png"
ASTRONAUT_FACE = (180, 65, 262, 168)  # hand-labelled, brows to chin (examples/astronaut.png, 512 x 512)
# Framings of the photo that put the face near an edge or a corner: (x1, y1, x2, y2) of the original.
NEAR_EDGES = {
    "left": (165, 0, 512, 512),
    "right": (0, 0, 280, 512),
    "top": (0, 50, 512, 512),
    "left-top": (165, 50, 512, 420),
    "right-top": (0, 50, 280, 380),
    "bottom": (60, 0, 400, 185),
}
PRESET_RATIOS = sorted({p.ratio for p in PRESETS.values()})


def _kept(box, face) -> float:
    ix = max(0, min(box[2], face[2]) - max(box[0], face[0]))
    iy = max(0, min(box[3], face[3]) - max(box[1], face[1]))
    return ix * iy / ((face[2] - face[0]) * (face[3] - face[1]))


@pytest.fixture(scope="module")
def shipped():
    from s2ccrop.api import Cropper

    cropper = Cropper(device="cpu")
    if not cropper.config.genes_head:
        pytest.skip("the embedded default weights have no gene head")
    return cropper


def test_gene_head_finds_the_astronauts_face(shipped):
    from s2ccrop.training.metrics import iou

    faces = shipped.detect(Image.open(ASTRONAUT)).faces
    assert len(faces) == 1
    assert iou(faces[0, :4], ASTRONAUT_FACE) > 0.5


@pytest.mark.parametrize("edge", sorted(NEAR_EDGES))
def test_no_preset_ratio_cuts_a_face_near_the_edge(shipped, edge):
    x1, y1, x2, y2 = NEAR_EDGES[edge]
    photo = Image.open(ASTRONAUT).convert("RGB").crop((x1, y1, x2, y2))
    face = (ASTRONAUT_FACE[0] - x1, ASTRONAUT_FACE[1] - y1, ASTRONAUT_FACE[2] - x1, ASTRONAUT_FACE[3] - y1)
    assert 0 < min(face[0], face[1], photo.width - face[2], photo.height - face[3]) < 40  # really near an edge
    for crop in shipped.crop(photo, PRESET_RATIOS):
        kept = _kept(crop.box, face)
        assert kept >= 0.85 or kept <= 0.15, f"{edge}: {crop.ratio} crop {crop.box} keeps {kept:.0%} of the face"


def test_gene_head_runs_only_when_something_reads_it(shipped):
    from s2ccrop.api import Cropper

    photo = Image.open(ASTRONAUT).convert("RGB")
    unguarded = Cropper(device="cpu", face_guard=False)
    p = unguarded.prepare(photo)
    unguarded.features([p])
    assert p.detections is None  # whole-image genes and no guard: the head's output is not needed
    assert len(unguarded.detect(photo).faces) == 1  # detect() always runs it
    q = shipped.prepare(photo)
    shipped.features([q])
    assert q.detections is not None


def test_average_box_weights_the_best_candidates_by_score():
    from s2ccrop.select import average_box

    boxes = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [100, 100, 200, 200]], dtype=float)
    # equal scores: the plain mean of the top two; the third is outside top=2
    assert average_box(boxes, np.array([1.0, 1.0, 0.0]), top=2, tau=0.5).tolist() == [5, 0, 15, 10]
    # weights exp((s - best) / tau): 1 and e^-1
    w = np.exp(-1.0)
    expect = (boxes[0] + w * boxes[1]) / (1 + w)
    assert np.allclose(average_box(boxes, np.array([2.0, 1.5, -np.inf]), top=3, tau=0.5), expect)
    # -inf never counts; a single finite best stays itself
    assert average_box(boxes, np.array([-np.inf, 3.0, -np.inf]), top=10).tolist() == [10, 0, 20, 10]


def test_averaging_never_cuts_a_face_that_the_best_candidate_keeps():
    from s2ccrop.select import select_crops

    any_ratio = Ratio.parse("any")
    # two equally scored candidates whose mean (x 20..120) would cut the face at x 100..130
    boxes = np.array([[0, 0, 140, 100], [40, 0, 100, 100]])
    face = np.array([[100, 20, 130, 50, 0.9]])
    plain = select_crops([any_ratio], [boxes], np.array([1.0, 1.0]), average=True, size=(200, 100))
    assert plain[0].box == (20, 0, 120, 100)
    guarded = select_crops([any_ratio], [boxes], np.array([1.0, 1.0]), face, average=True, size=(200, 100))
    assert guarded[0].box == (0, 0, 140, 100)  # the mean cuts the face, the best candidate does not
    with pytest.raises(ValueError, match="size"):
        select_crops([any_ratio], [boxes], np.array([1.0, 1.0]), average=True)

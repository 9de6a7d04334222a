"""Choosing the crop of each ratio from the scored candidates, with the face guard and the user's hints
(a focus point, a region to keep whole), and the region a padded fit shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .candidates import snap
from .genes import box_rows
from .types import Crop, Ratio

# A face counts as cut when a candidate keeps more than CUT_MIN and less than CUT_MAX of its box: the
# tolerance absorbs detector boxes that are a little loose or tight (a crop that trims a sliver of the
# box, or one that leaves only a sliver of a face at its border, is not a cut face).
CUT_MIN, CUT_MAX = 0.1, 0.9
# Detected face boxes span brows to chin; hair, ears and jaw reach further. Each box grows by this share
# of its width and height on every side before cuts are measured.
FACE_MARGIN = 0.15
# Far above the spread of model scores: any candidate that cuts no face beats every one that does;
# among candidates that all cut a face, the one that cuts least wins.
FACE_CUT_PENALTY = 1e3


def face_cuts(boxes: np.ndarray, faces: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Severity [N] in [0, 1] with which each xyxy candidate [N, 4] cuts the worst-cut face of
    `faces` [F, ≥4] (grown by `margin` of their size on each side): 0 when every face is wholly in or
    out (within tolerance), 1 when a face is halved."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    faces = box_rows(faces)[:, :4]
    if margin:
        faces = _grown(faces, margin)
    if len(faces) == 0 or len(boxes) == 0:
        return np.zeros(len(boxes))
    kept = _kept_share(boxes, faces)
    cut = (kept > CUT_MIN) & (kept < CUT_MAX)
    severity = np.where(cut, np.minimum(kept, 1 - kept) / 0.5, 0.0)
    return severity.max(axis=1)


def _grown(faces: np.ndarray, margin: float) -> np.ndarray:
    """Boxes [F, 4] grown by `margin` of their width and height on every side."""
    return faces + margin * np.concatenate([faces[:, 2:] - faces[:, :2]] * 2, axis=1) * [-1, -1, 1, 1]


def _kept_share(boxes: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """[N, R]: the share of the area of each xyxy region [R, 4] that each xyxy box [N, 4] keeps."""
    ix = np.minimum(boxes[:, None, 2], regions[None, :, 2]) - np.maximum(boxes[:, None, 0], regions[None, :, 0])
    iy = np.minimum(boxes[:, None, 3], regions[None, :, 3]) - np.maximum(boxes[:, None, 1], regions[None, :, 1])
    area = ((regions[:, 2] - regions[:, 0]) * (regions[:, 3] - regions[:, 1])).clip(1e-9)
    return ix.clip(0) * iy.clip(0) / area[None, :]


# What the user asks for comes before the face guard: a candidate that drops the focus point or cuts the
# keep region loses to every one that keeps them, whatever faces either cuts.
HINT_PENALTY = 1e6
# A candidate edge within this many pixels of the keep region's counts as holding it (the region is
# given in fractions, candidates are whole pixels).
KEEP_TOLERANCE = 0.5


@dataclass(frozen=True)
class Guard:
    """What the crops of one photo should not cut, in pixels of the upright photo: `faces` (rows x1, y1,
    x2, y2[, score]: the gene head's and those the photo's metadata marks), the user's `focus` point
    (x, y) and `keep` region (x1, y1, x2, y2), and the model's `subject` (its most confident object box,
    which only `--fit auto` reads). `size` is the photo's (W, H)."""

    size: tuple[int, int]
    faces: np.ndarray | None = None
    focus: tuple[float, float] | None = None
    keep: tuple[float, float, float, float] | None = None
    subject: tuple[float, float, float, float] | None = None


def focus_misses(boxes: np.ndarray, point: tuple[float, float], size: tuple[int, int]) -> np.ndarray:
    """Severity [N]: 0 for each xyxy box that holds the point, else 1 + its distance from the box as a
    share of the photo's diagonal (when every candidate misses it, the nearest wins)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x, y = point
    dx = np.maximum(np.maximum(boxes[:, 0] - x, x - boxes[:, 2]), 0.0)
    dy = np.maximum(np.maximum(boxes[:, 1] - y, y - boxes[:, 3]), 0.0)
    diagonal = max(float(np.hypot(*size)), 1.0)
    return np.where((dx > 0) | (dy > 0), 1.0 + np.hypot(dx, dy) / diagonal, 0.0)


def keep_cuts(boxes: np.ndarray, region: tuple[float, float, float, float]) -> np.ndarray:
    """Severity [N]: 0 for each xyxy box that holds the region whole (within KEEP_TOLERANCE pixels),
    else 1 + the share of the region's area it leaves out (a box that trims a sliver still loses to
    every one that holds it; when none does, the one that keeps most wins)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1, x2, y2 = region
    t = KEEP_TOLERANCE
    whole = (boxes[:, 0] <= x1 + t) & (boxes[:, 1] <= y1 + t) & (boxes[:, 2] >= x2 - t) & (boxes[:, 3] >= y2 - t)
    kept = _kept_share(boxes, np.array([region], dtype=np.float64))[:, 0]
    return np.where(whole, 0.0, 1.0 + np.clip(1.0 - kept, 0.0, 1.0))


def penalties_of(boxes: np.ndarray, guard: Guard | None) -> np.ndarray:
    """What the guard subtracts from the scores of xyxy `boxes` [N, 4] (zeros without a guard)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros(len(boxes))
    if guard is None:
        return out
    if guard.faces is not None:
        out += FACE_CUT_PENALTY * face_cuts(boxes, guard.faces, FACE_MARGIN)
    hints = np.zeros(len(boxes))  # how far each candidate goes against the user's hints
    if guard.focus is not None:
        hints += focus_misses(boxes, guard.focus, guard.size)
    if guard.keep is not None:
        hints += keep_cuts(boxes, guard.keep)
    return out + HINT_PENALTY * hints


def subject_cuts(boxes: np.ndarray, subject: tuple[float, float, float, float]) -> np.ndarray:
    """Bool [N]: whether each xyxy box leaves out part of the subject box: keeps less than CUT_MAX of it,
    the face guard's tolerance for a trimmed edge. Unlike a face, a subject dropped altogether counts as
    cut too: a crop without the photo's subject is no fit of the photo."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return _kept_share(boxes, np.array([subject], dtype=np.float64))[:, 0] < CUT_MAX


def cuts_everywhere(boxes: np.ndarray, guard: Guard | None) -> bool:
    """Whether every candidate of a group cuts a face (as the face guard measures cuts), goes against a
    hint, or leaves out part of the model's subject (`subject_cuts`): what makes `--fit auto` pad."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if guard is None or len(boxes) == 0:
        return False
    cut = penalties_of(boxes, guard) > 0
    if guard.subject is not None:
        cut |= subject_cuts(boxes, guard.subject)
    return bool(cut.all())


def hold(box, guard: Guard | None, size: tuple[int, int], rounds: int = 4) -> tuple[int, int, int, int]:
    """The smallest box (whole pixels, inside the photo) that holds `box` and everything of the guard
    it cuts: the keep region, the focus point, each face it cuts (with the guard's margin) and the
    subject. Growing may reach another face: repeated until nothing more is cut (`rounds` at most)."""
    W, H = size
    x1, y1, x2, y2 = (float(v) for v in box)
    for _ in range(rounds):
        current = np.array([[x1, y1, x2, y2]])
        wanted = []
        if guard is not None:
            if guard.keep is not None and keep_cuts(current, guard.keep)[0] > 0:
                wanted.append(guard.keep)
            if guard.focus is not None and focus_misses(current, guard.focus, size)[0] > 0:
                wanted.append((*guard.focus, *guard.focus))
            faces = box_rows(guard.faces)[:, :4] if guard.faces is not None else np.zeros((0, 4))
            for face in _grown(faces, FACE_MARGIN):  # each face it cuts, with the guard's margin
                if face_cuts(current, face[None])[0] > 0:
                    wanted.append(tuple(face))
            if guard.subject is not None and subject_cuts(current, guard.subject)[0]:
                wanted.append(guard.subject)
        if not wanted:
            break
        for w in wanted:
            x1, y1, x2, y2 = min(x1, w[0]), min(y1, w[1]), max(x2, w[2]), max(y2, w[3])
    left, top = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    right, bottom = min(W, int(np.ceil(x2))), min(H, int(np.ceil(y2)))
    return (left, top, max(right, left + 1), max(bottom, top + 1))


# Score-weighted box averaging: the model's scores are trained as log-weights of how well each candidate
# matches a human crop, so when several candidates score nearly alike, their weighted mean is a better
# guess than any one of them (and not bound to the candidate grid).
AVERAGE_TOP = 10  # at most this many of the best candidates
AVERAGE_TAU = 0.5  # weights softmax(score / tau)
AVERAGE_WINDOW = 2.0  # and only those within this of the best score (weight >= e^-4)


def average_box(
    boxes: np.ndarray, scores: np.ndarray, top: int = AVERAGE_TOP, tau: float = AVERAGE_TAU, window: float = AVERAGE_WINDOW
) -> np.ndarray:
    """Float xyxy [4]: the mean of the `top` best-scoring boxes within `window` of the best score,
    weighted by softmax(score / tau) (ties in score order go to the earlier box). Candidates scored -inf
    get no weight; at least the best counts."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")[: max(1, top)]
    s = scores[order]
    if not np.isfinite(s[0]):
        return boxes[order[0]].copy()
    w = np.where(s >= s[0] - window, np.exp((s - s[0]) / tau), 0.0)
    w[~np.isfinite(w)] = 0.0
    return (boxes[order] * (w / w.sum())[:, None]).sum(axis=0)


def best_index(scores: np.ndarray) -> int:
    """Index of the highest score; ties go to the first (candidate order is deterministic)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        raise ValueError("no candidates to choose from")
    if np.isnan(scores).any():
        raise ValueError("model produced NaN scores")
    return int(np.argmax(scores))


def same_centre_and_area(box, aspect: float, centre=None) -> tuple[float, float, float, float]:
    """The float xyxy box of aspect (w / h) `aspect` with the area of `box` (sides under a pixel counted
    as one), centred on `centre` ((x, y); default `box`'s own centre)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    area = max(x2 - x1, 1.0) * max(y2 - y1, 1.0)
    w, h = (area * aspect) ** 0.5, (area / aspect) ** 0.5
    cx, cy = ((x1 + x2) / 2, (y1 + y2) / 2) if centre is None else (float(centre[0]), float(centre[1]))
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def refine_box(refined, ratio: Ratio, width: int, height: int, centre=None) -> tuple[int, int, int, int]:
    """A box the box refiner moved (float xyxy, maybe outside the image or off the ratio) as a crop: for a
    fixed ratio first the box of that ratio with the same area, centred on `centre` ((x, y); default
    the moved box's own: `S2CNetConfig.refine_ratio_given` "size" passes the crop's), then
    `candidates.snap` (whole pixels, inside the image)."""
    if not ratio.is_any:
        assert ratio.width is not None and ratio.height is not None
        refined = same_centre_and_area(refined, float(ratio.width / ratio.height), centre)
    return snap(refined, ratio, width, height)


def select_crops(
    ratios: Sequence[Ratio],
    groups: Sequence[np.ndarray],
    scores: np.ndarray,
    faces: "np.ndarray | Guard | None" = None,
    average: bool = False,
    size: tuple[int, int] | None = None,
) -> list[Crop]:
    """The best-scoring box of each ratio's candidate group (`scores` covers the groups in order).
    With `faces` (boxes [F, ≥4], same pixels as the candidates, or a `Guard` that also holds the user's
    hints), the face guard: candidates that cut through a face are penalised, and those that drop the
    focus point or cut the keep region far more. Reported scores are the model's own. A candidate scored -inf
    never wins; equal scores go to the earlier candidate.

    `average` (needs the photo's `size`): the crop is `average_box` of the best candidates by their
    guarded scores, snapped to whole pixels and to the exact ratio (`candidates.snap`), unless it cuts a
    face or a hint more than the best candidate does; its score is then still the best candidate's (the caller
    may score the box itself)."""
    if average and size is None:
        raise ValueError("averaging needs the photo's size")
    crops, start = [], 0
    guard = faces if faces is None or isinstance(faces, Guard) else Guard((0, 0), faces=faces)
    penalties = np.concatenate([penalties_of(b, guard) for b in groups] or [np.zeros(0)])
    for ratio, boxes in zip(ratios, groups):
        s = np.asarray(scores[start : start + len(boxes)], dtype=np.float64)
        ranked = s - penalties[start : start + len(boxes)]
        start += len(boxes)
        i = best_index(ranked)
        box = tuple(int(v) for v in boxes[i])
        if average:
            mean = snap(average_box(boxes, ranked), ratio, *size)
            if guard is None or penalties_of(np.array([mean]), guard)[0] <= penalties_of(boxes[i : i + 1], guard)[0]:
                box = mean
        crops.append(Crop(str(ratio), box, float(s[i])))
    return crops

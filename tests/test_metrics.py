"""SPEC §4 metrics on small cases whose answers were worked out by hand (arithmetic in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from s2ccrop.training import metrics as m

# ------------------------------------------------------------------------------------------------- IoU


def test_iou_partial_overlap():
    # inter = 5 * 5 = 25; union = 100 + 100 - 25 = 175 -> 25/175 = 1/7
    assert m.iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(1 / 7, abs=1e-12)


def test_iou_contained_and_identical_and_disjoint():
    assert m.iou((0, 0, 10, 10), (0, 0, 5, 10)) == pytest.approx(0.5)  # 50 / 100
    assert m.iou((3, 4, 9, 8), (3, 4, 9, 8)) == 1.0
    assert m.iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_iou_touching_edges_do_not_overlap():
    # x2 is exclusive: [0, 10) and [10, 20) share no pixel
    assert m.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0


def test_iou_is_symmetric():
    a, b = (1, 2, 40, 30), (10, 5, 50, 25)
    assert m.iou(a, b) == m.iou(b, a)


@pytest.mark.parametrize("bad", [(0, 0, 10), (10, 0, 5, 10), (0, 10, 10, 5), (0, 0, float("nan"), 1)])
def test_iou_rejects_malformed_boxes(bad):
    with pytest.raises(ValueError):
        m.iou(bad, (0, 0, 1, 1))


# ------------------------------------------------------------------------------------------------- BDE


def test_bde_hand_computed():
    # W = 20, H = 40. x: |0-5| + |10-15| = 10 -> 10/20 = 0.5; y: |0-5| + |10-15| = 10 -> 10/40 = 0.25
    # (0.5 + 0.25) / 4 = 0.1875
    assert m.bde((0, 0, 10, 10), (5, 5, 15, 15), 20, 40) == pytest.approx(0.1875)


def test_bde_zero_for_identical_and_one_for_opposite_extremes():
    assert m.bde((1, 2, 3, 4), (1, 2, 3, 4), 10, 10) == 0.0
    # degenerate boxes at opposite corners: every edge moves by the full side -> (2 + 2) / 4 = 1
    assert m.bde((0, 0, 0, 0), (10, 20, 10, 20), 10, 20) == pytest.approx(1.0)


def test_bde_rejects_non_positive_size():
    with pytest.raises(ValueError):
        m.bde((0, 0, 1, 1), (0, 0, 1, 1), 0, 10)


def test_best_of_takes_highest_iou_gt():
    # IoUs with pred (0,0,10,10): 0, 1/7, 50/100 = 0.5 -> third gt.
    # its BDE with W = 20, H = 40: x 0, y |10 - 5| = 5 -> 5/40 = 0.125 -> /4 = 0.03125
    gts = [(50, 50, 60, 60), (5, 5, 15, 15), (0, 0, 10, 5)]
    iou, bde = m.best_of((0, 0, 10, 10), gts, 20, 40)
    assert iou == pytest.approx(0.5)
    assert bde == pytest.approx(0.03125)


def test_best_of_tie_takes_first_gt():
    # both gts have IoU 0.5 with (0,0,10,10); W = H = 20:
    # gt1 (0,0,5,10): BDE = (5/20)/4 = 0.0625; gt2 (0,0,10,20): BDE = (10/20)/4 = 0.125 -> first wins
    iou, bde = m.best_of((0, 0, 10, 10), [(0, 0, 5, 10), (0, 0, 10, 20)], 20, 20)
    assert (iou, bde) == (pytest.approx(0.5), pytest.approx(0.0625))
    iou, bde = m.best_of((0, 0, 10, 10), [(0, 0, 10, 20), (0, 0, 5, 10)], 20, 20)
    assert bde == pytest.approx(0.125)


def test_best_of_needs_a_gt():
    with pytest.raises(ValueError):
        m.best_of((0, 0, 1, 1), [], 1, 1)


def test_aggregate_boxes():
    assert m.aggregate_boxes([0.5, 1.0], [0.1, 0.3]) == {"iou": 0.75, "bde": pytest.approx(0.2), "count": 2}
    empty = m.aggregate_boxes([], [])
    assert empty["count"] == 0 and math.isnan(empty["iou"])
    with pytest.raises(ValueError):
        m.aggregate_boxes([0.5], [])


# --------------------------------------------------------------------------------------- correlations


def test_average_ranks_share_ties():
    # sorted 10, 20, 20, 30 -> ranks 1, (2+3)/2, (2+3)/2, 4
    assert m.average_ranks([20, 10, 30, 20]).tolist() == [2.5, 1.0, 4.0, 2.5]


def test_pearson_and_spearman_hand_computed():
    # x - mean = [-1.5, -.5, .5, 1.5]; y - mean = [-1.5, .5, -.5, 1.5]
    # dot = 2.25 - .25 - .25 + 2.25 = 4; |x|^2 = |y|^2 = 5 -> 4/5
    assert m.pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert m.spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)


def test_correlation_of_constant_is_nan_and_length_checked():
    assert math.isnan(m.pearson([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError):
        m.pearson([1, 2, 3], [1, 2])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=3, max_size=30))
def test_spearman_matches_scipy(pairs):
    scipy_stats = pytest.importorskip("scipy.stats")
    a = np.array([p[0] for p in pairs], dtype=float)
    b = np.array([p[1] for p in pairs], dtype=float)
    ours = m.spearman(a, b)
    if np.all(a == a[0]) or np.all(b == b[0]):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(scipy_stats.spearmanr(a, b).statistic, abs=1e-9)


# ------------------------------------------------------------------------------------------ Acc_{K/N}

# Image A: 6 candidates.
GT_A = [5, 4, 3, 2, 1, 0]
PRED_A = [0.1, 0.9, 0.8, 0.2, 0.3, 0.95]
# model order (descending pred): idx5 (gt 0), idx1 (gt 4), idx2 (gt 3), idx4 (gt 1), ...
# N = 5: 5th best gt = 1 -> hits per K: K1 [0] 0/1; K2 [0,4] 1/2; K3 [0,4,3] 2/3; K4 [0,4,3,1] 3/4
# N = 10 > 6 candidates: clamped to the worst gt (0) -> every pick is a hit
# SRCC: gt ranks [6,5,4,3,2,1], pred ranks [1,5,4,2,3,6]; d^2 = 25+0+0+1+1+25 = 52
#       rho = 1 - 6*52 / (6*(36-1)) = 1 - 312/210 = -17/35
# Image B: 4 candidates, perfectly ranked: SRCC = PCC = 1; N = 5 and 10 clamp -> all hits.
GT_B = [1, 2, 3, 4]
PRED_B = [2, 4, 6, 8]


def test_acc_hits_hand_computed():
    assert [m.acc_hits(PRED_A, GT_A, k, 5) for k in (1, 2, 3, 4)] == [0, 1, 2, 3]
    assert [m.acc_hits(PRED_A, GT_A, k, 10) for k in (1, 2, 3, 4)] == [1, 2, 3, 4]


def test_acc_hits_gt_ties_count():
    # gt sorted desc: 4, 3, 3, 3, 3, 3, 0 -> the 2nd best score is 3, so all five 3s are "top 2"
    gt = [4, 3, 3, 3, 3, 3, 0]
    pred = [6, 5, 4, 3, 2, 1, 0]  # picks idx0..3: gt 4, 3, 3, 3
    assert m.acc_hits(pred, gt, 4, 2) == 4  # a rank-based "index < 2" rule would give 2


def test_acc_hits_prediction_ties_keep_candidate_order():
    # all four first candidates tie at 1: stable order picks idx0 (gt 0) first
    pred, gt = [1, 1, 1, 1, 0], [0, 1, 2, 3, 4]
    assert m.acc_hits(pred, gt, 1, 1) == 0
    # top-4 = idx0..3 (gt 0,1,2,3); 4th best gt = 1 -> gt 1, 2, 3 hit
    assert m.acc_hits(pred, gt, 4, 4) == 3


def test_acc_hits_rejects_k_beyond_candidates():
    with pytest.raises(ValueError):
        m.acc_hits([1, 2, 3], [1, 2, 3], 4, 5)
    with pytest.raises(ValueError):
        m.acc_hits([1, 2, 3], [1, 2, 3], 0, 5)


def test_gaicd_metrics_two_images_hand_computed():
    r = m.gaicd_metrics([PRED_A, PRED_B], [GT_A, GT_B])
    assert r["count"] == 2
    assert r["srcc"] == pytest.approx((-17 / 35 + 1) / 2)  # = 9/35
    # per K: mean over the two images of (A, B) = ((0+1)/2, (1/2+1)/2, (2/3+1)/2, (3/4+1)/2)
    assert r["acc_k1_n5"] == pytest.approx(0.5)
    assert r["acc_k2_n5"] == pytest.approx(0.75)
    assert r["acc_k3_n5"] == pytest.approx(5 / 6)
    assert r["acc_k4_n5"] == pytest.approx(0.875)
    # Acc5 = (1/2 + 3/4 + 5/6 + 7/8) / 4 = (12 + 18 + 20 + 21) / 24 / 4 = 71/96
    assert r["acc5"] == pytest.approx(71 / 96)
    assert r["acc10"] == 1.0
    assert all(r[f"acc_k{k}_n10"] == 1.0 for k in (1, 2, 3, 4))
    assert r["n_constant_pred"] == 0 and r["n_constant_gt"] == 0


def test_gaicd_metrics_pcc_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    r = m.gaicd_metrics([PRED_A, PRED_B], [GT_A, GT_B])
    expected = (scipy_stats.pearsonr(PRED_A, GT_A).statistic + 1.0) / 2
    assert r["pcc"] == pytest.approx(expected)


def test_gaicd_metrics_constant_prediction_counts_as_zero_correlation():
    # constant prediction: SRCC/PCC defined as 0 -> mean with image B's 1.0 is 0.5
    r = m.gaicd_metrics([[0.0] * 6, PRED_B], [GT_A, GT_B])
    assert r["srcc"] == pytest.approx(0.5)
    assert r["pcc"] == pytest.approx(0.5)
    assert r["n_constant_pred"] == 1
    # constant prediction picks candidates in order: idx0 has gt 5 -> hit for every K at N = 5
    # (K4 picks gt 5, 4, 3, 2; 5th best = 1 -> 4/4)
    assert r["acc_k4_n5"] == 1.0


def test_gaicd_metrics_acc5_and_acc10_are_means_over_k_not_per_k_values():
    r = m.gaicd_metrics([PRED_A], [GT_A])
    assert r["acc_k1_n5"] == 0.0 and r["acc_k4_n5"] == 0.75
    assert r["acc5"] == pytest.approx((0 + 1 / 2 + 2 / 3 + 3 / 4) / 4)
    assert set(r) >= {f"acc_k{k}_n{n}" for k in (1, 2, 3, 4) for n in (5, 10)} | {"acc5", "acc10"}


@pytest.mark.parametrize(
    "preds, gts",
    [
        ([[1, 2, 3, 4, 5]], [[1, 2, 3, 4]]),  # lengths differ inside an image
        ([[1, 2, 3, 4]], []),  # image counts differ
        ([[1, 2, 3]], [[1, 2, 3]]),  # fewer than K = 4 candidates
        ([[1, 2, 3, float("nan")]], [[1, 2, 3, 4]]),  # NaN score
        ([], []),  # nothing to average
    ],
)
def test_gaicd_metrics_rejects_bad_input(preds, gts):
    with pytest.raises(ValueError):
        m.gaicd_metrics(preds, gts)

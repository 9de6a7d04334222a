"""The learned gene head: decoding by hand, targets ↔ decode round trip, the loss, the model wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s2ccrop.model import S2CNet, S2CNetConfig, infer_config, load_checkpoint, save_checkpoint
from s2ccrop.model.gene_head import STRIDE, Detections, GeneHead, decode
from s2ccrop.training.augment import AugmentConfig, augment
from s2ccrop.training.gene_loss import focal_loss, gene_loss, gene_targets

BIG = 12.0  # a logit whose sigmoid is 1 - 6e-6


def _raw(h: int, w: int) -> torch.Tensor:
    raw = torch.zeros(8, h, w)
    raw[:2] = -BIG
    return raw


def test_decode_one_object_by_hand():
    raw = _raw(6, 10)
    raw[0, 3, 5] = 2.0  # sigmoid 0.881
    raw[2, 3, 5], raw[3, 3, 5] = math.log(4), math.log(2)  # 4 x 2 cells = 32 x 16 px
    raw[6, 3, 5], raw[7, 3, 5] = 0.5, 0.25
    det = decode(raw, (80, 48))
    assert det.faces.shape == (0, 5)
    # centre (5.5, 3.25) cells = (44, 26) px
    np.testing.assert_allclose(det.objects, [[28, 18, 60, 34, 1 / (1 + math.exp(-2))]], atol=1e-5)


def test_decode_clips_to_the_image_and_applies_thresholds():
    raw = _raw(4, 4)
    raw[1, 0, 0] = 3.0  # a face in the corner, larger than the image
    raw[4:6, 0, 0] = math.log(10)
    raw[1, 3, 3] = -1.5  # sigmoid 0.18: below the face threshold (0.2)
    det = decode(raw, (32, 32))
    assert det.objects.shape == (0, 5)
    np.testing.assert_allclose(det.faces[:, :4], [[0, 0, 32, 32]], atol=1e-5)  # 80 x 80 px, clipped
    assert decode(raw, (32, 32), face_threshold=0.15).faces.shape == (2, 5)


def test_decode_keeps_only_local_maxima_best_first():
    raw = _raw(5, 5)
    raw[0, 2, 2], raw[0, 2, 3] = 3.0, 2.5  # neighbours: only the stronger is a peak
    raw[0, 0, 4] = 1.0
    det = decode(raw, (40, 40))
    assert len(det.objects) == 2
    assert det.objects[0, 4] > det.objects[1, 4]


def test_targets_and_decode_round_trip():
    objects = np.array([[10.0, 20.0, 90.0, 70.0, 0.8], [100.0, 8.0, 150.0, 40.0, 0.5]])
    faces = np.array([[40.0, 25.0, 60.0, 49.0, 0.99]])
    cells = (10, 20)  # a 160 x 80 image
    t = gene_targets(objects, faces, cells)
    assert t.heat.shape == (2, 10, 20) and t.heat.max() == 1.0
    assert (t.heat == 1).sum() == 3 and t.kind.tolist() == [0, 0, 1]
    raw = torch.where(t.heat == 1, BIG, -BIG)
    raw = torch.cat([raw, torch.zeros(6, *cells)])
    flat = raw.view(8, -1)
    for i, k, size, off in zip(t.index, t.kind, t.log_size, t.offset):
        flat[2 + 2 * k : 4 + 2 * k, i] = size
        flat[6:8, i] = off
    det = decode(raw, (160, 80))
    got = sorted(map(tuple, np.round(det.objects[:, :4], 3)))
    np.testing.assert_allclose(got, sorted(map(tuple, objects[:, :4])), atol=1e-3)
    np.testing.assert_allclose(det.faces[:, :4], faces[:, :4], atol=1e-3)


def test_focal_loss_prefers_the_right_heat():
    target = torch.zeros(1, 4, 4)
    target[0, 1, 2] = 1.0
    good = torch.where(target == 1, 4.0, -4.0)
    bad = torch.where(target == 1, -4.0, 4.0)
    assert focal_loss(good, target) < 0.05 < focal_loss(bad, target)


def test_gene_loss_without_boxes_only_pushes_heat_down():
    raw = torch.zeros(8, 3, 3, requires_grad=True)
    t = gene_targets(np.zeros((0, 5)), np.zeros((0, 5)), (3, 3))
    loss, parts = gene_loss(raw, t)
    loss.backward()
    assert parts["gene_reg"] == 0.0
    assert (raw.grad[:2] > 0).all() and (raw.grad[2:] == 0).all()


def test_head_overfits_one_image():
    torch.manual_seed(0)
    head = GeneHead()
    f3, f4, f5 = torch.randn(1, 32, 8, 12), torch.randn(1, 96, 4, 6), torch.randn(1, 320, 2, 3)
    objects = np.array([[16.0, 8.0, 64.0, 56.0, 1.0]])
    faces = np.array([[30.0, 12.0, 46.0, 30.0, 1.0]])
    t = gene_targets(objects, faces, (8, 12))
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        loss, _ = gene_loss(head(f3, f4, f5)[0], t)
        loss.backward()
        opt.step()
    with torch.no_grad():
        det = decode(head(f3, f4, f5)[0], (96, 64))
    assert len(det.objects) >= 1 and len(det.faces) >= 1
    np.testing.assert_allclose(det.objects[0, :4], objects[0, :4], atol=4)
    np.testing.assert_allclose(det.faces[0, :4], faces[0, :4], atol=4)


def test_untrained_head_finds_nothing():
    torch.manual_seed(0)
    head = GeneHead()
    raw = head(torch.randn(1, 32, 8, 8), torch.randn(1, 96, 4, 4), torch.randn(1, 320, 2, 2))
    det = decode(raw[0], (64, 64))
    assert len(det.objects) == 0 and len(det.faces) == 0


def test_detections_genes_merge_by_score_and_scale():
    det = Detections(np.array([[0, 0, 10, 10, 0.5], [1, 1, 5, 5, 0.9]]), np.array([[2, 2, 4, 4, 0.7], [3, 3, 4, 4, 0.25]]))
    # faces below the genes' threshold (0.3) guard crops but are not graph genes
    np.testing.assert_array_equal(det.genes(), [[1, 1, 5, 5], [2, 2, 4, 4], [0, 0, 10, 10]])
    assert len(det.genes(face_threshold=0.2)) == 4
    np.testing.assert_allclose(det.scaled(2, 3).faces, [[4, 6, 8, 12, 0.7], [6, 9, 8, 12, 0.25]])


def test_model_with_gene_head_keeps_reference_keys_and_round_trips(tmp_path):
    plain = S2CNet(S2CNetConfig(num_boxes=4))
    with_head = S2CNet(S2CNetConfig(num_boxes=4, genes_head=True))
    extra = set(with_head.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("GeneHead.") for k in extra)
    assert set(plain.state_dict()) <= set(with_head.state_dict())
    assert infer_config(with_head.state_dict()).genes_head and not infer_config(plain.state_dict()).genes_head
    save_checkpoint(with_head, tmp_path / "m.safetensors")
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.config.genes_head
    x = torch.randn(1, 3, 64, 96)
    fmap, raw = loaded.eval().features_and_genes(x)
    assert fmap.shape == (1, 8, 4, 6) and raw.shape == (1, 8, 8, 12)
    assert plain.eval().features_and_genes(x)[1] is None


def test_fast_inference_path_gives_the_same_gene_output():
    torch.manual_seed(1)
    model = S2CNet(S2CNetConfig(num_boxes=4, genes_head=True)).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        slow = model.features_and_genes(x)
    model.prepare_for_inference()
    with torch.inference_mode():
        fast = model.features_and_genes(x)
    torch.testing.assert_close(fast[0], slow[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast[1], slow[1], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("seed", range(8))
def test_augment_carries_labels_with_the_pixels(seed):
    rng = np.random.default_rng(seed)
    px = np.zeros((200, 300, 3), np.uint8)
    px[60:140, 110:140] = (255, 0, 0)  # the labelled object is red, off-centre (flips show)
    crop = np.array([100.0, 50.0, 200.0, 150.0])
    inside = np.array([[110.0, 60.0, 140.0, 140.0, 0.9]])  # inside the crop: always kept whole
    edge = np.array([[0.0, 0.0, 30.0, 30.0, 0.8]])  # in a corner: may be cut away or clipped
    s = augment(px, crop, np.zeros((0, 8)), np.zeros(0), AugmentConfig(), rng, train=True,
                labels={"objects": inside, "faces": edge})
    obj = s.labels["objects"]
    assert obj.shape == (1, 5) and obj[0, 4] == 0.9
    x1, y1, x2, y2 = obj[0, :4]
    img = s.image[0]
    red = img[0] - img[2]  # normalised, but red minus blue is high only on the red patch
    inner = red[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2]
    assert inner.numel() > 0 and (inner > 1.0).all()
    outer = torch.cat([red[:, : max(int(x1) - 2, 0)].flatten(), red[:, int(x2) + 2 :].flatten()])
    assert (outer < 1.0).all()
    w, h = s.size
    f = s.labels["faces"]
    assert ((f[:, [0, 2]] >= 0) & (f[:, [0, 2]] <= w)).all() and ((f[:, [1, 3]] >= 0) & (f[:, [1, 3]] <= h)).all()

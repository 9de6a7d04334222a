"""Training pieces: augmentation keeps the human crop right, losses, and a tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from s2ccrop.model import load_checkpoint
from s2ccrop.preprocess import MEAN, STD
from s2ccrop.training.augment import AugmentConfig, augment
from s2ccrop.training.calibrate import main as calibrate_main
from s2ccrop.training.datasets import load_fcdb, split_fcdb
from s2ccrop.training.losses import box_iou, listwise_loss, vote_loss
from s2ccrop.training.train import TrainConfig, run, training_candidates


def _photo_with_red_crop(h=240, w=320, crop=(100, 60, 260, 200)):
    px = np.zeros((h, w, 3), np.uint8)
    px[..., 2] = 200  # blue everywhere
    x1, y1, x2, y2 = crop
    px[y1:y2, x1:x2] = (255, 0, 0)  # the human crop is red
    return px, np.array(crop, float)


def _unnormalise(x: torch.Tensor) -> np.ndarray:
    x = x[0] * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)
    return (x * 256).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("seed", range(12))
def test_augment_keeps_the_crop_exact(seed):
    px, crop = _photo_with_red_crop()
    cfg = AugmentConfig(brightness=0, contrast=0, saturation=0)
    s = augment(px, crop, np.zeros((0, 8)), np.zeros(0), cfg, np.random.default_rng(seed), train=True)
    img = _unnormalise(s.image)
    assert s.image.shape == (1, 3, s.size[1], s.size[0])
    x1, y1, x2, y2 = s.crop
    assert 0 <= x1 < x2 <= s.size[0] + 1e-6 and 0 <= y1 < y2 <= s.size[1] + 1e-6
    inner = img[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1]
    assert inner[..., 0].min() > 240 and inner[..., 2].max() < 15, "crop box no longer covers the red region"
    red = img[..., 0] > 128
    ys, xs = np.nonzero(red)
    # the red region ends where the mapped box ends (within a pixel of resampling)
    assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
    assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5


def test_augment_flips_votes_with_the_image():
    px, crop = _photo_with_red_crop()
    votes = np.array([[0, 0, 100, 100, 200, 50, 300, 150]], float)
    cfg = AugmentConfig(p_full=1.0, p_flip=1.0, aspect_jitter=0, brightness=0, contrast=0, saturation=0)
    s = augment(px, crop, votes, np.array([0.6]), cfg, np.random.default_rng(0), train=True)
    sx = s.size[0] / 320
    w = s.size[0]
    assert np.allclose(s.crop, [w - 260 * sx, 60 * s.size[1] / 240, w - 100 * sx, 200 * s.size[1] / 240])
    assert np.allclose(s.votes[0, [0, 2]], [w - 100 * sx, w])
    assert s.vote_weights.tolist() == [0.6]


@pytest.mark.parametrize("seed", range(8))
def test_augment_moves_teacher_boxes_and_votes_with_the_pixels(seed):
    """Through the torchvision geometry (crop, resize, mirror), a box painted green in the photo still
    bounds the green pixels after any context window, aspect jitter and flip; vote boxes likewise."""
    px, crop = _photo_with_red_crop()
    px[100:150, 150:200] = (0, 255, 0)  # a "face" inside the human crop, so every window keeps it
    labels = {"faces": np.array([[150.0, 100.0, 200.0, 150.0, 0.9]]), "objects": np.zeros((0, 5))}
    votes = np.array([[150.0, 100.0, 200.0, 150.0, 100.0, 60.0, 260.0, 200.0]])
    cfg = AugmentConfig(brightness=0, contrast=0, saturation=0, p_flip=0.5)
    s = augment(px, crop, votes, np.array([0.5]), cfg, np.random.default_rng(seed), train=True, labels=labels)
    img = _unnormalise(s.image)
    ys, xs = np.nonzero((img[..., 1] > 128) & (img[..., 0] < 128))
    for box in (s.labels["faces"][0, :4], s.votes[0, :4]):
        x1, y1, x2, y2 = box
        assert abs(xs.min() - x1) <= 1.5 and abs(xs.max() + 1 - x2) <= 1.5
        assert abs(ys.min() - y1) <= 1.5 and abs(ys.max() + 1 - y2) <= 1.5
    assert s.labels["faces"][0, 4] == 0.9 and np.allclose(s.votes[0, 4:], s.crop)


def test_eval_framing_is_the_whole_photo():
    px, crop = _photo_with_red_crop()
    s = augment(px, crop, np.zeros((0, 8)), np.zeros(0), AugmentConfig(), np.random.default_rng(0), train=False)
    assert s.size == (352, 256)
    assert np.allclose(s.crop, crop * [352 / 320, 256 / 240, 352 / 320, 256 / 240])


def test_box_iou_hand_values():
    gt = np.array([0, 0, 10, 10])
    got = box_iou(np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]]), gt)
    assert np.allclose(got, [1.0, 50 / 150, 0.0, 0.25])


def test_listwise_loss_prefers_the_target_order():
    targets = torch.tensor([0.9, 0.5, 0.1])
    good = listwise_loss(torch.tensor([3.0, 1.0, -1.0]), targets, 0.05)
    bad = listwise_loss(torch.tensor([-1.0, 1.0, 3.0]), targets, 0.05)
    assert good < bad
    # with one-hot targets it is exactly the cross-entropy of the best candidate
    ce = torch.nn.functional.cross_entropy(torch.tensor([[3.0, 1.0, -1.0]]), torch.tensor([0]))
    assert torch.allclose(listwise_loss(torch.tensor([3.0, 1.0, -1.0]), torch.tensor([1.0, 0.0, 0.0]), 1e-4), ce, atol=1e-5)


def test_vote_loss():
    s0, s1 = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0])
    # vote 1 prefers box 0 clearly (w = 1) and the margin is met; vote 2 prefers box 1 (w = -0.6)
    loss = vote_loss(s0, s1, torch.tensor([1.0, -0.6]), margin=0.5)
    # second term: 0.6 * relu(0.5*0.6 - (-1)*(0 - 0)) = 0.6 * 0.3 = 0.18; normalised by 1.6
    assert loss.item() == pytest.approx(0.18 / 1.6)
    assert vote_loss(torch.zeros(0), torch.zeros(0), torch.zeros(0), 0.5).item() == 0.0


def test_training_candidates_include_the_crop_and_stay_inside():
    crop = np.array([50.0, 40.0, 250.0, 200.0])
    boxes, groups = training_candidates(crop, (352, 256), TrainConfig(), np.random.default_rng(0))
    assert groups["grid"] == slice(0, 32) and groups["ratio"].start == 32
    grid = boxes[groups["grid"]]
    from s2ccrop.candidates import gaic_grid

    full = {tuple(np.round(b, 6)) for b in gaic_grid(352, 256)}
    assert all(tuple(np.round(b, 6)) in full for b in grid)
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 352).all() and (boxes[:, 3] <= 256).all()
    assert any(np.allclose(b, crop) for b in boxes)
    assert 40 <= len(boxes) <= 70


def test_one_edge_boxes_move_exactly_one_edge_by_the_given_share_of_its_side():
    from s2ccrop.training.samples import _one_edge

    crop = np.array([100.0, 80.0, 200.0, 130.0])  # 100 x 50 in a 352 x 256 image: no edge clips
    boxes = _one_edge(crop, 400, (0.05, 0.25), (352, 256), np.random.default_rng(0))
    assert len(boxes) == 400
    moved = np.abs(boxes - crop) > 1e-9
    assert (moved.sum(1) == 1).all()
    assert set(np.flatnonzero(moved.any(0))) == {0, 1, 2, 3}  # every edge is moved by some box
    edge = moved.argmax(1)
    share = np.abs(boxes - crop)[np.arange(400), edge] / np.where(edge % 2 == 0, 100.0, 50.0)
    assert share.min() >= 0.05 and share.max() <= 0.25
    grows = ((edge < 2) & (boxes[np.arange(400), edge] < crop[edge])) | ((edge >= 2) & (boxes[np.arange(400), edge] > crop[edge]))
    assert 0.4 < grows.mean() < 0.6  # in and out about equally
    at_border = np.array([0.0, 0.0, 352.0, 256.0])  # the whole image: only inward moves survive clipping
    inside = _one_edge(at_border, 200, (0.05, 0.25), (352, 256), np.random.default_rng(1))
    assert 60 < len(inside) < 140 and (inside[:, :2] >= 0).all() and (inside[:, 2] <= 352).all() and (inside[:, 3] <= 256).all()
    assert (np.abs(inside - at_border).max(1) > 0).all()
    assert _one_edge(crop, 0, (0.05, 0.25), (352, 256), np.random.default_rng(0)).shape == (0, 4)
    cfg = TrainConfig(n_edge=12)
    with_edges, _ = training_candidates(crop, (352, 256), cfg, np.random.default_rng(0))
    without, _ = training_candidates(crop, (352, 256), TrainConfig(), np.random.default_rng(0))
    assert len(with_edges) == len(without) + 12


def test_rescaled_boxes_keep_centre_and_aspect_and_stay_inside():
    from s2ccrop.training.samples import _rescaled

    rng = np.random.default_rng(0)
    crop = np.array([100.0, 80.0, 200.0, 130.0])  # 100 x 50, centre (150, 105), in a 352 x 256 image
    boxes = _rescaled(crop, 200, (0.5, 1.5), (352, 256), rng)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert np.allclose(w / h, 2.0) and (w * h >= 0.5 * 5000 - 1e-6).all() and (w * h <= 1.5 * 5000 + 1e-6).all()
    assert np.allclose((boxes[:, 0] + boxes[:, 2]) / 2, 150) and np.allclose((boxes[:, 1] + boxes[:, 3]) / 2, 105)
    corner = _rescaled(np.array([0.0, 0.0, 100.0, 100.0]), 50, (1.2, 1.5), (352, 256), rng)
    assert (corner[:, :2] == 0).all() and (corner[:, 2] - corner[:, 0] > 100).all()  # moved inside, not squeezed
    assert len(_rescaled(crop, 0, (0.5, 1.5), (352, 256), rng)) == 0


def test_tiny_training_run_writes_a_loadable_checkpoint(tmp_path):
    data = tmp_path / "fcdb"
    (data / "images").mkdir(parents=True)
    crops = []
    for i in range(4):
        px, crop = _photo_with_red_crop(crop=(40 + 10 * i, 30, 250, 200))
        Image.fromarray(px).save(data / "images" / f"{i}000_a_c.jpg")
        crops.append({"file": f"{i}000_a_c.jpg", "width": 320, "height": 240, "crop_xyxy": [int(v) for v in crop]})
    (data / "crops.json").write_text(json.dumps(crops))
    cfg = TrainConfig(epochs=1, val_fraction=0.5, threads=1, n_grid=8, n_ratio=4, n_jitter=2, group_weight=1.0)
    out = tmp_path / "w.safetensors"
    result = run(data, cfg, out, None, log=lambda m: None)
    model = load_checkpoint(out)
    assert model.config.num_boxes == 4 and model.config.align_size == 9
    assert result["best"]["epoch"] == 1
    assert 0.0 < result["best"]["val_iou_any"] <= 1.0
    assert (tmp_path / "w.log.jsonl").read_text().count("\n") == 1
    # calibrated for the int8 backbone on the training photos (the rest of the 4 went to validation)
    from s2ccrop.model.int8_backbone import engine

    if engine() is not None:
        assert model.int8_calibration["images"] == len(split_fcdb(load_fcdb(data)[0], 0.5, cfg.split_seed)[0])
        assert len(model.int8_calibration["points"]) == 28
    calibrated = tmp_path / "again.safetensors"
    calibrate_main(["--data", str(data), "--weights", str(out), "--out", str(calibrated), "--photos", "1", "--val-fraction", "0.5"])
    again = load_checkpoint(calibrated)
    assert again.int8_calibration["images"] == 1
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in again.state_dict().items())  # tensors untouched


def test_cross_validation_run_holds_out_its_fold_and_keeps_the_last_epoch(tmp_path):
    from s2ccrop.training.datasets import cv_split, load_fcdb, split_fcdb

    data = tmp_path / "fcdb"
    (data / "images").mkdir(parents=True)
    crops = []
    for i in range(8):
        px, crop = _photo_with_red_crop(crop=(40 + 10 * (i % 4), 30, 250, 200))
        Image.fromarray(px).save(data / "images" / f"{i}000_a_c.jpg")
        crops.append({"file": f"{i}000_a_c.jpg", "width": 320, "height": 240, "crop_xyxy": [int(v) for v in crop]})
    (data / "crops.json").write_text(json.dumps(crops))
    records = load_fcdb(data)[0]
    train, _ = split_fcdb(records, 0.25)
    held = cv_split(train, 2, 1)[1]
    assert 0 < len(held) < len(train)
    cfg = TrainConfig(epochs=2, val_fraction=0.25, threads=1, n_grid=8, n_ratio=4, n_jitter=2, keep="last", patience=1)
    out = tmp_path / "w.safetensors"
    result = run(data, cfg, out, None, log=lambda m: None, folds=2, fold=1)
    rows = [json.loads(line) for line in (tmp_path / "w.log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # keep = "last": no early stop, whatever the patience
    assert all(0.0 < r["fold_iou_any"] <= 1.0 and 0.0 < r["fold_iou_ratio"] <= 1.0 for r in rows)
    assert result["best"]["epoch"] == 2
    from s2ccrop.model import read_state_dict

    meta = read_state_dict(out)[2]
    assert (meta["folds"], meta["fold"]) == ("2", "1")
    assert meta["fold_iou_any"] == f"{rows[-1]['fold_iou_any']:.4f}"
    assert "minus fold 1 of 2" in meta["training_data"]


def test_fixed_schedule_measures_only_the_last_epoch(tmp_path):
    data = tmp_path / "fcdb"
    (data / "images").mkdir(parents=True)
    crops = []
    for i in range(4):
        px, crop = _photo_with_red_crop(crop=(40 + 10 * i, 30, 250, 200))
        Image.fromarray(px).save(data / "images" / f"{i}000_a_c.jpg")
        crops.append({"file": f"{i}000_a_c.jpg", "width": 320, "height": 240, "crop_xyxy": [int(v) for v in crop]})
    (data / "crops.json").write_text(json.dumps(crops))
    cfg = TrainConfig(epochs=2, val_fraction=0.5, threads=1, n_grid=8, n_ratio=4, n_jitter=2, keep="last",
                      measure_every_epoch=False)
    result = run(data, cfg, tmp_path / "w.safetensors", None, log=lambda m: None)
    rows = [json.loads(line) for line in (tmp_path / "w.log.jsonl").read_text().splitlines()]
    assert "val_iou_any" not in rows[0] and 0.0 < rows[1]["val_iou_any"] <= 1.0
    assert result["baseline_epoch0"] is None and result["best"]["epoch"] == 2


def test_distillation_from_a_teacher_per_fold(tmp_path):
    data = tmp_path / "fcdb"
    (data / "images").mkdir(parents=True)
    crops = []
    for i in range(8):
        px, crop = _photo_with_red_crop(crop=(40 + 10 * (i % 4), 30, 250, 200))
        Image.fromarray(px).save(data / "images" / f"{i}000_a_c.jpg")
        crops.append({"file": f"{i}000_a_c.jpg", "width": 320, "height": 240, "crop_xyxy": [int(v) for v in crop]})
    (data / "crops.json").write_text(json.dumps(crops))
    small = dict(epochs=1, val_fraction=0.25, threads=1, n_grid=8, n_ratio=4, n_jitter=2)
    run(data, TrainConfig(**small), tmp_path / "teacher1.safetensors", None, log=lambda m: None, folds=2, fold=1)
    cfg = TrainConfig(**small, distill_from=[str(tmp_path / "teacher{fold}.safetensors")], distill_weight=1.0)
    seen = []
    run(data, cfg, tmp_path / "student.safetensors", None, log=seen.append, folds=2, fold=1)
    assert any("distilling from 1 teachers" in m and "teacher1.safetensors" in m for m in seen)
    row = json.loads((tmp_path / "student.log.jsonl").read_text().splitlines()[-1])
    assert row["distill"] > 0
    with pytest.raises(ValueError, match="names a fold"):
        run(data, cfg, tmp_path / "x.safetensors", None, log=lambda m: None)


def test_config_file_rejects_unknown_settings(tmp_path):
    (tmp_path / "c.toml").write_text("epochs = 2\nlearning_rate = 1\n")
    with pytest.raises(ValueError, match="unknown settings"):
        TrainConfig.from_toml(tmp_path / "c.toml")


def test_shipped_configs_parse():
    from pathlib import Path

    for path in (Path(__file__).resolve().parents[1] / "configs").rglob("*.toml"):
        cfg = TrainConfig.from_toml(path)
        assert cfg.model_config().head in ("crop", "graph")


def test_config_base_inheritance(tmp_path):
    (tmp_path / "a.toml").write_text('epochs = 9\nn_grid = 7\n[augment]\np_full = 0.1\np_flip = 0.2\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\nepochs = 2\n[augment]\np_full = 0.9\n')
    cfg = TrainConfig.from_toml(tmp_path / "b.toml")
    assert (cfg.epochs, cfg.n_grid, cfg.augment.p_full, cfg.augment.p_flip) == (2, 7, 0.9, 0.2)


def _tiny_fcdb_with_labels(tmp_path):
    data = tmp_path / "fcdb"
    (data / "images").mkdir(parents=True)
    crops, labels = [], {}
    for i in range(4):
        px, crop = _photo_with_red_crop(crop=(40 + 10 * i, 30, 250, 200))
        name = f"{i}000_a_c.jpg"
        Image.fromarray(px).save(data / "images" / name)
        crops.append({"file": name, "width": 320, "height": 240, "crop_xyxy": [int(v) for v in crop]})
        labels[name] = {"size": [320, 240], "objects": [[*crop.tolist(), 0.9]], "faces": [[120.0, 40.0, 150.0, 80.0, 0.99]]}
    (data / "crops.json").write_text(json.dumps(crops))
    return data, labels


@pytest.mark.parametrize("genes, gene_head, uses_head", [("learned", False, True), ("whole", True, False)])
def test_tiny_run_with_a_gene_head(tmp_path, genes, gene_head, uses_head):
    data, labels = _tiny_fcdb_with_labels(tmp_path)
    cfg = TrainConfig(epochs=1, val_fraction=0.5, threads=1, n_grid=8, n_ratio=4, n_jitter=2, genes=genes, gene_head=gene_head)
    out = tmp_path / "w.safetensors"
    result = run(data, cfg, out, None, log=lambda m: None, teacher_labels=labels)
    model = load_checkpoint(out)
    assert model.config.genes_head and model.config.graph_uses_head is uses_head
    assert result["history"][0]["gene"] > 0  # the distillation loss was trained
    with pytest.raises(ValueError, match="teacher labels"):
        run(data, cfg, out, None, log=lambda m: None)


def test_gene_config_is_checked():
    with pytest.raises(ValueError, match="genes must be"):
        TrainConfig(genes="teachers")


def test_head_stage_trains_only_the_head_and_init_runs_it_alone(tmp_path):
    data, labels = _tiny_fcdb_with_labels(tmp_path)
    base = dict(epochs=1, val_fraction=0.5, threads=1, n_grid=8, n_ratio=4, n_jitter=2, genes="whole", gene_head=True)
    main_out = tmp_path / "main.safetensors"
    run(data, TrainConfig(**base), main_out, None, log=lambda m: None, teacher_labels=labels)
    cfg = TrainConfig(**base, head_epochs=2, head_patience=5)
    out = tmp_path / "head.safetensors"
    result = run(data, cfg, out, None, log=lambda m: None, teacher_labels=labels, init=main_out)
    before, after = load_checkpoint(main_out).state_dict(), load_checkpoint(out).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("GeneHead.") for k in changed)
    assert result["head_stage"]["epoch"] in (0, 1, 2)
    # the full command (main stage, then head stage) gives the same head as --init on the main checkpoint
    full = tmp_path / "full.safetensors"
    run(data, cfg, full, None, log=lambda m: None, teacher_labels=labels)
    for k, v in load_checkpoint(full).state_dict().items():
        torch.testing.assert_close(v, after[k])


def test_head_stage_needs_whole_image_genes():
    with pytest.raises(ValueError, match="head_epochs"):
        TrainConfig(genes="learned", head_epochs=3)


def test_averaged_box_loss_matches_select_and_pulls_weight_to_the_better_box():
    from s2ccrop.select import average_box
    from s2ccrop.training.losses import averaged_box_loss

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    gt = torch.tensor([0.0, 0.0, 10.0, 10.0])
    scores = torch.tensor([1.0, 1.0, -5.0], requires_grad=True)
    loss = averaged_box_loss(scores, boxes, gt, top=2, tau=0.5)
    avg = average_box(boxes.numpy(), scores.detach().numpy(), top=2, tau=0.5)
    assert avg.tolist() == [2.5, 0.0, 12.5, 10.0]
    assert loss.item() == pytest.approx(1 - box_iou(avg[None], gt.numpy())[0])
    loss.backward()
    assert scores.grad[0] < 0 < scores.grad[1] and scores.grad[2] == 0  # raise the matching box, lower the other


def test_box_refiner_trains_towards_the_human_crops_and_validate_measures_its_moves(tmp_path):
    data, _ = _tiny_fcdb_with_labels(tmp_path)
    cfg = TrainConfig(epochs=2, val_fraction=0.5, threads=1, n_grid=8, n_ratio=4, n_jitter=6, box_refiner=True,
                      refine_weight=1.0, selection="average")
    result = run(data, cfg, tmp_path / "w.safetensors", None, log=lambda m: None)
    first, last = result["history"]
    assert first["refine"] > 0  # the smooth L1 towards the human crop's edges was trained on
    for row in (first, last):
        assert {"val_iou_any_avg_unrefined", "val_iou_ratio_avg_unrefined"} <= set(row)
    model = load_checkpoint(tmp_path / "w.safetensors")
    assert model.config.box_refiner and any(v.abs().sum() > 0 for k, v in model.state_dict().items() if k.startswith("BoxRefiner.mlp.2"))
    with pytest.raises(ValueError, match="box_refiner and refine_weight"):
        TrainConfig(box_refiner=True)
    with pytest.raises(ValueError, match="box_refiner and refine_weight"):
        TrainConfig(refine_weight=1.0)


def test_validate_moves_the_averaged_crops_with_the_refiner():
    """validate's refined boxes: the free-form one clipped to the image, the ratio-given one at its own
    aspect with the moved box's centre and area, inside the image."""
    from s2ccrop.model import S2CNet, S2CNetConfig
    from s2ccrop.training.validation import _refined

    model = S2CNet(S2CNetConfig(align_size=9, num_boxes=4, box_refiner=True)).eval()
    with torch.no_grad():
        model.BoxRefiner.mlp[2].weight.zero_()
        model.BoxRefiner.mlp[2].bias.copy_(torch.atanh(torch.tensor([-0.25, 0.0, 0.25, 0.0]) / 0.4))
        fmap = torch.randn(1, 8, 4, 6)
        free, fixed = _refined(model, fmap, np.array([[10.0, 8.0, 50.0, 40.0], [20.0, 10.0, 60.0, 40.0]]), (96, 64))
    assert np.allclose(free, [0.0, 8.0, 60.0, 40.0])  # 0 - 10 clipped to 0, 50 + 10
    # 4:3 box 40 x 30 grown to 60 x 30 (area 1800) at centre (40, 25): 4:3 of area 1800 is 48.99 x 36.74
    w, h = fixed[2] - fixed[0], fixed[3] - fixed[1]
    assert w / h == pytest.approx(4 / 3) and w * h == pytest.approx(1800)
    assert ((fixed[0] + fixed[2]) / 2, (fixed[1] + fixed[3]) / 2) == pytest.approx((40.0, 25.0))


def test_validate_refines_ratio_given_crops_as_the_config_says(tmp_path):
    """A refiner that moves every edge by a quarter of the side: the free-form choice moves in every
    mode; the ratio-given one moves ("move"), stays ("off": validate's ratio-given averaged IoU is the
    unrefined one), or keeps its centre and takes the moved box's area ("size", checked on `_refined`).
    The mode is saved with the model and needs a refiner."""
    from s2ccrop.model import S2CNet, S2CNetConfig, save_checkpoint
    from s2ccrop.training.samples import cache_photo
    from s2ccrop.training.validation import _refined, validate

    data, _ = _tiny_fcdb_with_labels(tmp_path)
    photos = [cache_photo(r, 96) for r in load_fcdb(data)[0]]
    out = {}
    for mode in ("move", "size", "off"):
        torch.manual_seed(3)
        model = S2CNet(S2CNetConfig(align_size=9, num_boxes=4, box_refiner=True, refine_ratio_given=mode)).eval()
        with torch.no_grad():
            model.BoxRefiner.mlp[2].weight.zero_()
            model.BoxRefiner.mlp[2].bias.copy_(torch.atanh(torch.tensor([0.25, 0.25, -0.25, -0.25]) / 0.4))
        out[mode] = validate(model, photos, 4)
        assert out[mode]["val_iou_any_avg"] != out[mode]["val_iou_any_avg_unrefined"]
        assert out[mode]["val_iou_any_avg"] == out["move"]["val_iou_any_avg"]
    assert out["move"]["val_iou_ratio_avg"] != out["move"]["val_iou_ratio_avg_unrefined"]
    assert out["size"]["val_iou_ratio_avg"] not in (out["move"]["val_iou_ratio_avg"], out["size"]["val_iou_ratio_avg_unrefined"])
    assert out["off"]["val_iou_ratio_avg"] == out["off"]["val_iou_ratio_avg_unrefined"]
    # a refiner that moves only the left edge, by a quarter: the 4:3 box 40 x 30 at (40, 25) becomes
    # 30 x 30 at (45, 25); at 4:3 with that area (900) it is 34.64 x 25.98
    with torch.no_grad():
        model.BoxRefiner.mlp[2].bias.copy_(torch.atanh(torch.tensor([0.25, 0.0, 0.0, 0.0]) / 0.4))
        fmap = torch.randn(1, 8, 4, 6)
        chosen = np.array([[10.0, 8.0, 50.0, 40.0], [20.0, 10.0, 60.0, 40.0]])
        (w, h) = (900 * 4 / 3) ** 0.5, (900 * 3 / 4) ** 0.5
        _, moved = _refined(model, fmap, chosen, (96, 64), "move")
        _, sized = _refined(model, fmap, chosen, (96, 64), "size")
        _, kept = _refined(model, fmap, chosen, (96, 64), "off")
        assert np.allclose(moved, [45 - w / 2, 25 - h / 2, 45 + w / 2, 25 + h / 2])
        assert np.allclose(sized, [40 - w / 2, 25 - h / 2, 40 + w / 2, 25 + h / 2])  # the chosen box's centre
        assert np.array_equal(kept, chosen[1])
        # at the photo's edge the resized box is shifted inside: centre (10, 25) -> (w / 2, 25)
        _, sized = _refined(model, fmap, np.array([chosen[0], [-10.0, 10.0, 30.0, 40.0]]), (96, 64), "size")
        assert np.allclose(sized, [0.0, 25 - h / 2, w, 25 + h / 2])
    save_checkpoint(model, tmp_path / "off.safetensors", half=False)
    assert load_checkpoint(tmp_path / "off.safetensors").config.refine_ratio_given == "off"
    assert TrainConfig(box_refiner=True, refine_weight=1.0, refine_ratio_given="size").model_config().refine_ratio_given == "size"
    with pytest.raises(ValueError, match="needs box_refiner"):
        TrainConfig(refine_ratio_given="size")
    with pytest.raises(ValueError, match="needs box_refiner"):
        S2CNetConfig(refine_ratio_given="off")
    with pytest.raises(ValueError, match="must be one of move, size, off"):
        S2CNetConfig(box_refiner=True, refine_ratio_given="centre")


def test_a_smaller_model_input_is_trained_measured_and_calibrated_at_its_size(tmp_path, monkeypatch):
    import s2ccrop.training.calibrate as calibrate_module
    import s2ccrop.training.train as train_module
    import s2ccrop.training.validation as validation_module

    data, _ = _tiny_fcdb_with_labels(tmp_path)
    cfg = TrainConfig(epochs=1, val_fraction=0.5, threads=1, n_grid=8, n_ratio=4, n_jitter=2, input_short_side=128,
                      int8_calibration=2)
    seen, calibrated = [], []

    def framing(*args, **kwargs):
        s = augment(*args, **kwargs)
        seen.append(min(s.size))
        return s

    real_inputs = calibrate_module.model_inputs

    def inputs(records, short_side=256):
        for x in real_inputs(records, short_side):
            calibrated.append(min(x.shape[-2:]))
            yield x

    monkeypatch.setattr(train_module, "augment", framing)
    monkeypatch.setattr(validation_module, "augment", framing)
    monkeypatch.setattr(calibrate_module, "model_inputs", inputs)
    run(data, cfg, tmp_path / "w.safetensors", None, log=lambda m: None)
    assert seen and set(seen) == {128}  # every training framing and every measured photo
    assert calibrated and set(calibrated) == {128}
    model = load_checkpoint(tmp_path / "w.safetensors")
    assert model.config.input_short_side == 128 and model.int8_calibration is not None
    with pytest.raises(ValueError, match="cache_short_side"):
        TrainConfig(input_short_side=384)


def test_augment_resizes_to_the_asked_short_side():
    px, crop = _photo_with_red_crop()
    s = augment(px, crop, np.zeros((0, 8)), np.zeros(0), AugmentConfig(), np.random.default_rng(0), train=False, short_side=160)
    assert s.size == (224, 160) and tuple(s.image.shape) == (1, 3, 160, 224)

"""Benchmark loops and baselines: synthetic photos with hand-computed answers, then the real ../shared data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from s2ccrop.training import baselines as bl
from s2ccrop.training import datasets as ds
from s2ccrop.training import evaluate as ev
from s2ccrop.training import metrics

from conftest import photo_image


@pytest.fixture()
def two_photos(make_photo) -> list[ds.FCDBRecord]:
    a = make_photo("1_a_b.png", (100, 50), kind="noise")
    b = make_photo("2_b_b.png", (60, 80), kind="noise")
    return [ds.FCDBRecord("1_a_b.png", a, 100, 50, (0, 0, 50, 50)), ds.FCDBRecord("2_b_b.png", b, 60, 80, (0, 0, 60, 60))]


def test_ratio_string_reduces():
    assert ev.ratio_string(1200, 900) == "4:3"
    assert ev.ratio_string(757, 399) == "757:399"
    with pytest.raises(ValueError):
        ev.ratio_string(0, 10)


def test_evaluate_fcdb_whole_image_hand_computed(two_photos):
    # photo 1 (100x50, gt 0,0,50,50): IoU 2500/5000 = 0.5; BDE (|100-50|/100)/4 = 0.125
    # photo 2 (60x80, gt 0,0,60,60):  IoU 3600/4800 = 0.75; BDE (|80-60|/80)/4 = 0.0625
    seen = []

    def crop_fn(image, ratio):
        seen.append((image.size, ratio))
        return bl.whole_image(image, ratio)

    r = ev.evaluate_fcdb(two_photos, crop_fn, "any", name="whole")
    assert seen == [((100, 50), "any"), ((60, 80), "any")]
    assert (r["benchmark"], r["name"], r["mode"], r["count"]) == ("fcdb", "whole", "any", 2)
    assert r["iou"] == pytest.approx(0.625)
    assert r["bde"] == pytest.approx(0.09375)
    assert [row["iou"] for row in r["rows"]] == [pytest.approx(0.5), pytest.approx(0.75)]
    json.dumps(r)  # JSON-able


def test_by_size_and_cross_validated_hand_computed(two_photos):
    # photo 1: the human crop keeps 2500/5000 = 50 %, photo 2: 3600/4800 = 75 %; the whole image keeps 100 %
    a = ev.evaluate_fcdb(two_photos[:1], bl.whole_image, "any", name="whole")
    b = ev.evaluate_fcdb(two_photos[1:], bl.whole_image, "any", name="whole")
    cv = ev.cross_validated([a, b])
    assert (cv["folds"], cv["count"]) == (2, 2)
    assert cv["iou"] == pytest.approx(0.625) and cv["fold_iou"] == [pytest.approx(0.5), pytest.approx(0.75)]
    assert cv["iou_sd"] == pytest.approx(np.std([0.5, 0.75], ddof=1))
    bins = ev.by_size(cv)
    assert [b["count"] for b in bins] == [0, 1, 1, 0]
    assert bins[1]["human_keeps"] == pytest.approx(0.5) and bins[1]["model_keeps"] == pytest.approx(1.0)
    assert bins[2]["iou"] == pytest.approx(0.75) and bins[2]["human_keeps"] == pytest.approx(0.75)
    cv["by_size"] = bins
    table = ev.format_table([cv])
    assert "| whole | any | 2 | 0.6250 ± 0.1768 |" in table
    assert "| whole | any | 40–60 % | 1 | 50 % | 100 % | 0.500 | 0.125 |" in table
    with pytest.raises(ValueError, match="different methods"):
        ev.cross_validated([a, ev.evaluate_fcdb(two_photos[1:], bl.whole_image, "ratio", name="whole")])


def test_evaluate_fcdb_ratio_mode_gives_gt_ratio(two_photos):
    # both human crops are square -> "1:1".
    # photo 1: centred (25,0,75,50) vs (0,0,50,50): inter 1250, union 3750 -> 1/3; BDE (50/100)/4 = 0.125
    # photo 2: centred (0,10,60,70) vs (0,0,60,60): inter 3000, union 4200 -> 5/7; BDE (20/80)/4 = 0.0625
    ratios = []

    def crop_fn(image, ratio):
        ratios.append(ratio)
        return bl.centred_crop(image, ratio)

    r = ev.evaluate_fcdb(two_photos, crop_fn, "ratio")
    assert ratios == ["1:1", "1:1"]
    assert r["rows"][0]["pred"] == [25, 0, 75, 50]
    assert r["iou"] == pytest.approx((1 / 3 + 5 / 7) / 2)
    assert r["bde"] == pytest.approx((0.125 + 0.0625) / 2)


def test_evaluate_fcdb_rejects_bad_mode_and_bad_boxes(two_photos):
    with pytest.raises(ValueError, match="mode"):
        ev.evaluate_fcdb(two_photos, bl.whole_image, "free")
    with pytest.raises(ValueError, match="inside"):
        ev.evaluate_fcdb(two_photos, lambda im, r: (0, 0, im.size[0] + 1, im.size[1]), "any")
    with pytest.raises(ValueError, match="4 finite"):
        ev.evaluate_fcdb(two_photos, lambda im, r: (0, 0, 1), "any")


def test_evaluate_fcdb_keeps_annotation_frame_of_exif_rotated_file(make_photo):
    # Stored 40x20 with orientation 6 (upright it would be 20x40). FCDB boxes refer to the stored
    # pixels, so a crop_fn that applies EXIF transposition must still see a 40x20 image.
    path = make_photo("3_c_b.jpg", (40, 20), kind="noise", orientation=6)
    with Image.open(path) as raw:
        assert raw.getexif()[0x0112] == 6 and ImageOps.exif_transpose(raw).size == (20, 40)
    record = ds.FCDBRecord("3_c_b.jpg", path, 40, 20, (0, 0, 20, 20))
    r = ev.evaluate_fcdb([record], lambda im, ratio: bl.whole_image(ImageOps.exif_transpose(im), ratio), "any")
    assert r["rows"][0]["pred"] == [0, 0, 40, 20]
    assert r["iou"] == pytest.approx(0.5)


def test_largest_centred_box():
    assert bl.largest_centred_box(1000, 500, "1:1") == (250, 0, 750, 500)
    # 500 wide, 16:9 -> height round(500 * 9 / 16) = 281, top (1000 - 281) // 2 = 359
    assert bl.largest_centred_box(500, 1000, "16:9") == (0, 359, 500, 640)
    assert bl.largest_centred_box(640, 480, "4:3") == (0, 0, 640, 480)
    assert bl.largest_centred_box(640, 480, "any") == (0, 0, 640, 480)


def test_smartcrop_baseline_returns_box_of_ratio():
    pytest.importorskip("smartcrop")
    rng = np.random.default_rng(0)
    pixels = np.full((300, 600, 3), 40, dtype=np.uint8)
    pixels[50:250, 400:580] = rng.integers(0, 255, (200, 180, 3), dtype=np.uint8)  # detail on the right
    image = Image.fromarray(pixels)
    x1, y1, x2, y2 = bl.smartcrop_crop(image, "1:1")
    assert 0 <= x1 < x2 <= 600 and 0 <= y1 < y2 <= 300
    assert abs((x2 - x1) - (y2 - y1)) <= 3  # square up to rounding
    assert (x2 - x1) >= 0.9 * 300 - 3  # smartcrop's scales are 100 % and 90 % of the largest square
    assert (x1 + x2) / 2 > 300  # moved towards the detail
    ax1, ay1, ax2, ay2 = bl.smartcrop_crop(image, "any")
    assert (ax2 - ax1) / (ay2 - ay1) == pytest.approx(2.0, rel=0.03)  # the image's own ratio


def test_baselines_cli_prints_table(tmp_path, make_photo, capsys):
    make_photo("images/1_a_b.png", (100, 50), kind="noise")
    crops = [{"file": "1_a_b.png", "width": 100, "height": 50, "crop_xyxy": [0, 0, 50, 50]}]
    (tmp_path / "crops.json").write_text(json.dumps(crops))
    out_json = tmp_path / "r.json"
    code = bl.main(["--data", str(tmp_path), "--split", "all", "--baselines", "whole image", "centred crop",
                    "--json", str(out_json)])
    assert code == 0
    table = capsys.readouterr().out
    assert "| whole image | any | 1 | 0.500 | 0.125 |" in table
    assert "| centred crop | ratio | 1 | 0.333 | 0.125 |" in table
    saved = json.loads(out_json.read_text())
    assert [(r["name"], r["mode"]) for r in saved] == [
        ("whole image", "any"), ("whole image", "ratio"), ("centred crop", "any"), ("centred crop", "ratio")]


# ------------------------------------------------------------------------------------------------ GAICD


def _reference_style_metrics(preds, gts):
    """Independent re-implementation the way the GAIC reference loop reads (sorted, reverse=True)."""
    stats = pytest.importorskip("scipy.stats")
    srcc, acc = [], {(k, n): [] for k in (1, 2, 3, 4) for n in (5, 10)}
    for pred, mos in zip(preds, gts):
        srcc.append(stats.spearmanr(pred, mos).statistic)
        order = sorted(range(len(pred)), key=lambda i: pred[i], reverse=True)
        by_mos = sorted(range(len(mos)), key=lambda i: mos[i], reverse=True)
        for k, n in acc:
            thr = mos[by_mos[n - 1]]
            acc[(k, n)].append(sum(mos[order[j]] >= thr for j in range(k)) / k)
    out = {"srcc": float(np.mean(srcc))}
    out.update({f"acc_k{k}_n{n}": float(np.mean(v)) for (k, n), v in acc.items()})
    return out


def _area_score(image, boxes, genes):
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def test_evaluate_gaicd_synthetic(make_photo):
    path = make_photo("7.png", (64, 48), kind="noise")
    boxes = np.array([[0, 0, 64, 48], [0, 0, 32, 48], [8, 8, 40, 40], [0, 0, 16, 16], [10, 10, 60, 45]], float)
    mos = np.array([4.0, 3.0, 2.0, 1.0, 5.0])
    record = ds.GAICDRecord("7", "test", boxes, mos, image_path=path)
    no_image = ds.GAICDRecord("8", "test", boxes, mos)
    calls = []

    def score_fn(image, crop_boxes, genes):
        calls.append((image.size, crop_boxes.tolist(), genes))
        return _area_score(image, crop_boxes, genes)

    r = ev.evaluate_gaicd([record, no_image], score_fn, name="area")
    assert calls == [((64, 48), boxes.tolist(), None)]
    assert r["skipped_no_image"] == 1 and r["image_ids"] == ["7"] and r["count"] == 1
    # areas 3072, 1536, 1024, 256, 1750 -> pred ranks 5,3,2,1,4; mos ranks 4,3,2,1,5; d^2 = 1+0+0+0+1 = 2
    # rho = 1 - 6*2 / (5*24) = 0.9
    assert r["srcc"] == pytest.approx(0.9)
    # N = 5 and 10 reach the worst of the 5 candidates (clamped for 10): every pick is a hit
    assert r["acc5"] == 1.0 and r["acc10"] == 1.0
    json.dumps(r)


def test_evaluate_gaicd_checks_score_shape(make_photo):
    path = make_photo("7.png", (64, 48), kind="noise")
    record = ds.GAICDRecord("7", "test", np.zeros((4, 4)) + [0, 0, 10, 10], np.arange(4.0), image_path=path)
    with pytest.raises(ValueError, match="shape"):
        ev.evaluate_gaicd([record], lambda im, b, g: np.zeros(3))
    with pytest.raises(ValueError, match="no GAICD record"):
        ev.evaluate_gaicd([ds.GAICDRecord("8", "test", record.boxes, record.mos)], lambda im, b, g: np.zeros(4))


@pytest.mark.shared
def test_evaluate_gaicd_end_to_end_on_public_images(shared_dir: Path):
    records = ds.load_gaicd_v1(shared_dir / "data" / "gaicd-v1", with_images_only=True)
    seen = {}

    def score_fn(image, boxes, genes):
        seen[len(seen)] = (image.size, genes.shape if genes is not None else None)
        assert boxes[:, 2].max() <= image.size[0] and boxes[:, 3].max() <= image.size[1]
        return _area_score(image, boxes, genes)

    r = ev.evaluate_gaicd(records, score_fn, name="area")
    assert r["count"] == 5 and r["skipped_no_image"] == 0
    assert seen[0] == ((1024, 683), (10, 4))  # 211958 is listed first (train)
    expected = _reference_style_metrics(
        [_area_score(None, rec.boxes, None) for rec in records], [rec.mos for rec in records])
    for key, value in expected.items():
        assert r[key] == pytest.approx(value, abs=1e-12), key
    assert r["acc5"] == pytest.approx(np.mean([expected[f"acc_k{k}_n5"] for k in (1, 2, 3, 4)]))
    assert r["acc10"] == pytest.approx(np.mean([expected[f"acc_k{k}_n10"] for k in (1, 2, 3, 4)]))


# ------------------------------------------------------------------------------------------ formatting


def test_format_table_exact():
    fcdb = {"benchmark": "fcdb", "name": "whole image", "mode": "any", "count": 2, "iou": 0.625, "bde": 0.09375}
    gaicd = {"benchmark": "gaicd", "name": "area", "count": 1, "srcc": 0.9, "pcc": 0.5,
             "acc5": 0.75, "acc10": 1.0, **{f"acc_k{k}_n{n}": k / 4 for k in (1, 2, 3, 4) for n in (5, 10)}}
    assert ev.format_table([fcdb, gaicd]) == (
        "| method | mode | n | IoU | BDE |\n"
        "|---|---|---:|---:|---:|\n"
        "| whole image | any | 2 | 0.625 | 0.094 |\n"
        "\n"
        "| method | n | SRCC | PCC | Acc5 | Acc10 | Acc1/5 | Acc2/5 | Acc3/5 | Acc4/5 | Acc1/10 | Acc2/10 | Acc3/10 | Acc4/10 |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        "| area | 1 | 0.900 | 0.500 | 75.0 | 100.0 | 25.0 | 50.0 | 75.0 | 100.0 | 25.0 | 50.0 | 75.0 | 100.0 |"
    )
    with pytest.raises(ValueError):
        ev.format_table([{"benchmark": "flms"}])


# ------------------------------------------------------------------------------------- real FCDB split


@pytest.mark.shared
def test_baselines_on_real_validation_split(shared_dir: Path):
    records, _ = ds.load_fcdb(shared_dir / "data" / "fcdb-train")
    _, val = ds.split_fcdb(records)
    whole = ev.evaluate_fcdb(val, bl.whole_image, "any")
    centred = ev.evaluate_fcdb(val, bl.centred_crop, "ratio")
    assert whole["count"] == centred["count"] == 186
    assert whole["iou"] == pytest.approx(0.6605655558041141, abs=1e-9)
    assert whole["bde"] == pytest.approx(0.09238532060422504, abs=1e-9)
    assert centred["iou"] == pytest.approx(0.7203606446542721, abs=1e-9)
    assert centred["bde"] == pytest.approx(0.06768091971811412, abs=1e-9)
    # whole image in any mode is the same box whatever the ratio; per-row IoU agrees with metrics.iou
    row = whole["rows"][0]
    assert row["iou"] == metrics.iou(row["pred"], row["gt"])


def test_match_count_is_one_to_one_at_the_threshold():
    from s2ccrop.training.evaluate import match_count

    truth = np.array([[0, 0, 10, 10, 1], [20, 20, 30, 30, 1]], dtype=float)
    pred = np.array([[0, 0, 10, 10, 0.9], [0, 0, 10, 11, 0.8], [20, 20, 30, 40, 0.7]], dtype=float)
    # the second prediction duplicates the first truth (already used); the third has IoU exactly 0.5
    assert match_count(pred, truth) == 2
    assert match_count(pred, truth, threshold=0.51) == 1
    assert match_count(np.zeros((0, 5)), truth) == 0 and match_count(pred, np.zeros((0, 5))) == 0


def test_evaluate_genes_pools_precision_and_recall():
    from s2ccrop.model.gene_head import Detections
    from s2ccrop.training.evaluate import evaluate_genes, format_table

    box = [0.0, 0.0, 10.0, 10.0, 1.0]
    photos = [
        ("a", {"objects": [box], "faces": []}, lambda: Detections(np.array([box, [50, 50, 60, 60, 0.5]]), np.zeros((0, 5)))),
        ("b", {"objects": [box], "faces": [box]}, lambda: Detections(np.zeros((0, 5)), np.array([box]))),
    ]
    r = evaluate_genes(photos)
    assert r["count"] == 2
    assert r["objects"] == {"tp": 1, "pred": 2, "truth": 2, "precision": 0.5, "recall": 0.5}
    assert r["faces"]["precision"] == 1.0 and r["faces"]["recall"] == 1.0
    assert r["photos_with_face"] == {"truth": 1, "pred": 1, "both": 1}
    table = format_table([r])
    assert "| gene head | objects | 2 | 2 | 2 | 1 | 0.500 | 0.500 |" in table


def test_fold_logs_summarise_finished_folds_with_the_kept_epoch(tmp_path):
    from s2ccrop.training.run_eval import fold_logs

    def write(i, rows, done=True):
        (tmp_path / f"fold{i}.log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if done:
            (tmp_path / f"fold{i}.safetensors").write_bytes(b"x")

    row = lambda e, v, a, r: {"epoch": e, "val_iou_any": v, "val_iou_ratio": v, "fold_iou_any": a, "fold_iou_ratio": r}  # noqa: E731
    write(0, [row(1, 0.70, 0.60, 0.70), row(2, 0.72, 0.62, 0.74), row(3, 0.71, 0.66, 0.76)])  # early stopping kept epoch 2
    write(1, [{"epoch": 1}, row(2, 0.5, 0.68, 0.78)])  # a fixed schedule measured only its last epoch
    write(2, [row(1, 0.9, 0.1, 0.1)], done=False)  # still training: not counted
    r = fold_logs(tmp_path)
    assert [(f["fold"], f["epoch"]) for f in r["folds"]] == [("fold0", 2), ("fold1", 2)]
    assert r["any"] == pytest.approx(0.65) and r["ratio"] == pytest.approx(0.76)
    assert r["any_sd"] == pytest.approx(np.std([0.62, 0.68], ddof=1))
    assert fold_logs(tmp_path, keep="last")["folds"][0]["epoch"] == 3


def test_paired_difference_is_taken_fold_by_fold_over_shared_folds():
    from s2ccrop.training.run_eval import paired_difference

    base = {"folds": [{"fold": "fold0", "any": 0.60, "ratio": 0.70}, {"fold": "fold1", "any": 0.70, "ratio": 0.80}]}
    run = {"folds": [{"fold": "fold0", "any": 0.62, "ratio": 0.70}, {"fold": "fold1", "any": 0.73, "ratio": 0.81},
                     {"fold": "fold2", "any": 0.99, "ratio": 0.99}]}  # fold2: the baseline has not finished it
    d = paired_difference(run, base)
    assert d["folds"] == 2
    assert d["any"] == pytest.approx(0.025) and d["any_sd"] == pytest.approx(np.std([0.02, 0.03], ddof=1))
    assert d["ratio"] == pytest.approx(0.005)
    assert "any_avg" not in d


def test_remeasure_adds_the_averaged_crop_to_a_run_from_before_it(tmp_path):
    import torch

    from s2ccrop.model import S2CNet, S2CNetConfig, save_checkpoint
    from s2ccrop.training.run_eval import fold_logs, remeasure

    data, run = _random_fcdb(tmp_path / "fcdb"), tmp_path / "run"
    run.mkdir()
    torch.manual_seed(0)
    save_checkpoint(S2CNet(S2CNetConfig(align_size=9, num_boxes=4)).eval(), run / "fold0.safetensors", half=False)
    (run / "fold0.log.jsonl").write_text(json.dumps({"epoch": 4, "fold_iou_any": 0.5, "fold_iou_ratio": 0.6}) + "\n")
    assert "any_avg" not in fold_logs(run)
    remeasure(run, data, folds=3)
    measured = json.loads((run / "remeasured.json").read_text())["fold0"]
    r = fold_logs(run)
    assert r["any_avg"] == pytest.approx(measured["val_iou_any_avg"]) and 0 < r["ratio_avg"] <= 1
    assert r["any"] == 0.5  # the log's own argmax numbers stay what training measured
    # a log that measured the averaged crop too: the remeasured crop wins (e.g. refine_ratio_given changed)
    (run / "fold0.log.jsonl").write_text(json.dumps({"epoch": 4, "fold_iou_any": 0.5, "fold_iou_ratio": 0.6,
                                                     "fold_iou_any_avg": 0.1, "fold_iou_ratio_avg": 0.2}) + "\n")
    r = fold_logs(run)
    assert (r["any"], r["ratio"]) == (0.5, 0.6)
    assert (r["any_avg"], r["ratio_avg"]) == (pytest.approx(measured["val_iou_any_avg"]), pytest.approx(measured["val_iou_ratio_avg"]))


def _random_fcdb(root, n=12):
    (root / "images").mkdir(parents=True)
    crops = []
    for i in range(n):
        photo_image((160, 120), seed=i, kind="noise").save(root / "images" / f"{i}000_a_c.jpg")
        crops.append({"file": f"{i}000_a_c.jpg", "width": 160, "height": 120, "crop_xyxy": [20, 10, 140, 100]})
    (root / "crops.json").write_text(json.dumps(crops))
    return root


def test_validate_scores_an_ensemble_by_the_mean_of_its_members_scores(tmp_path, monkeypatch):
    """Member A scores every candidate by its IoU with the human crop (it always finds the best), member
    B by -2 x IoU (the worst): their mean, -IoU / 2, chooses what B alone chooses, never what A does, and
    averages crops as a model scoring -IoU / 2 does."""
    from types import SimpleNamespace

    from s2ccrop.training import validation
    from s2ccrop.training.datasets import load_fcdb
    from s2ccrop.training.losses import box_iou
    from s2ccrop.training.samples import cache_photo

    records, _ = load_fcdb(_random_fcdb(tmp_path / "fcdb", n=3))
    photos = [cache_photo(r, 96) for r in records]
    config = SimpleNamespace(free_form_grid="full", box_refiner=False, input_short_side=256)
    a = SimpleNamespace(config=config, eval=lambda: None, weight=1.0)
    b = SimpleNamespace(config=config, eval=lambda: None, weight=-2.0)
    monkeypatch.setattr(validation, "_scores_of", lambda m, s, boxes, n: (m.weight * box_iou(boxes, s.crop), None))
    half = SimpleNamespace(config=config, eval=lambda: None, weight=-0.5)  # what the mean of a and b is
    validate = validation.validate
    best, worst, mean = validate(a, photos, 4), validate(b, photos, 4), validate([a, b], photos, 4)
    assert best["val_iou_any"] > worst["val_iou_any"] + 0.2
    assert (mean["val_iou_any"], mean["val_iou_ratio"]) == (worst["val_iou_any"], worst["val_iou_ratio"])
    assert mean == validate(half, photos, 4)  # the averaged crops too, which depend on the scores' scale
    assert validate([a, a], photos, 4) == best


def test_measure_ensemble_is_read_by_eval_folds_like_a_run(tmp_path, capsys):
    import torch

    from s2ccrop.model import S2CNet, S2CNetConfig, load_checkpoint, save_checkpoint
    from s2ccrop.training.run_eval import fold_logs, main, measure_ensemble
    from s2ccrop.training.datasets import cv_split, load_fcdb, split_fcdb
    from s2ccrop.training.samples import cache_photo
    from s2ccrop.training.validation import validate

    data = _random_fcdb(tmp_path / "fcdb")
    runs = []
    for seed, name in ((0, "a"), (1, "b")):
        run = tmp_path / name
        run.mkdir()
        torch.manual_seed(seed)
        save_checkpoint(S2CNet(S2CNetConfig(align_size=9, num_boxes=4, node_dim=32, mlp_dim=64)).eval(), run / "fold1.safetensors", half=False)
        runs.append(run)
    (runs[1] / "fold2.safetensors").write_bytes((runs[1] / "fold1.safetensors").read_bytes())  # a has no fold 2
    out = measure_ensemble(runs, tmp_path / "ens", data, folds=3, log=lambda m: None)
    assert list(out) == ["fold1"]  # only the fold every member finished
    photos = [cache_photo(r, 320) for r in cv_split(split_fcdb(load_fcdb(data)[0])[0], 3, 1)[1]]
    with torch.inference_mode():
        expected = validate([load_checkpoint(r / "fold1.safetensors") for r in runs], photos, 4)
    assert out["fold1"] == pytest.approx(expected)
    summary = fold_logs(tmp_path / "ens")
    assert [f["fold"] for f in summary["folds"]] == ["fold1"] and summary["ratio_avg"] == pytest.approx(expected["val_iou_ratio_avg"])
    assert (tmp_path / "ens" / "members.txt").read_text().splitlines() == [str(r) for r in runs]
    with pytest.raises(SystemExit, match="no fold that all of"):
        measure_ensemble([runs[0], tmp_path / "empty"], tmp_path / "none", data, folds=3, log=lambda m: None)
    with pytest.raises(SystemExit):
        main(["ensemble", str(runs[0]), "--data", str(data), "--out", str(tmp_path / "one")])
    assert "at least two runs" in capsys.readouterr().err

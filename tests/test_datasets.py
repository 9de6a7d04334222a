"""FCDB / GAICD readers: vote-frame detection, split stability, annotation parsing; then the real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from s2ccrop.training import datasets as ds

# ---------------------------------------------------------------------------------- Flickr frames


def test_flickr_frame_landscape_portrait_and_unknown():
    # 2048 x 1363 at "c" (800 long side): 1363 * 800 / 2048 = 532.4 -> 532
    assert ds.flickr_frame(2048, 1363, "c") == (800, 532)
    assert ds.flickr_frame(768, 1024, "z") == (480, 640)  # 768 * 640 / 1024 = 480
    assert ds.flickr_frame(1000, 800, "o") is None  # original: no fixed size


def _fcdb_like_boxes(frame_w: int, frame_h: int) -> list[list[int]]:
    """Boxes like the FCDB generator's: up to 80 % of each side, reaching near the far edges."""
    w, h = int(0.8 * frame_w), int(0.8 * frame_h)
    return [[0, 0, w, h], [frame_w - w - 2, frame_h - h - 3, w, h], [10, 10, w // 2, h // 2]]


def test_detect_vote_scale_prefers_file_pixels():
    assert ds.detect_vote_scale(_fcdb_like_boxes(1024, 768), 1024, 768, "b") == (1.0, 1.0)


def test_detect_vote_scale_finds_smaller_flickr_copy():
    # drawn on the 800 x 532 "c" copy of a 2048 x 1363 file -> scale 2048/800, 1363/532
    scale = ds.detect_vote_scale(_fcdb_like_boxes(800, 532), 2048, 1363, "c")
    assert scale == (2.56, 1363 / 532)


def test_detect_vote_scale_gives_up_when_no_frame_fits():
    corner = _fcdb_like_boxes(300, 200)  # only covers a corner of the file, and "o" names no size
    assert ds.detect_vote_scale(corner, 1024, 768, "o") is None
    too_big = _fcdb_like_boxes(1200, 900)  # sticks out of the file, and "b" would be 1024 wide = the file
    assert ds.detect_vote_scale(too_big, 1024, 768, "b") is None
    assert ds.detect_vote_scale([[-5, 0, 900, 700]], 1024, 768, "b") is None  # negative origin
    assert ds.detect_vote_scale([], 1024, 768, "b") is None


def test_scale_box_rounds_to_pixels():
    assert ds.scale_box_xywh([10, 20, 100, 50], 2.5, 2.0) == (25, 40, 275, 140)
    assert ds.scale_box_xyxy([27, 36, 667, 517], 2.56, 1363 / 532) == (69, 92, 1708, 1325)


# ------------------------------------------------------------------------------- load_fcdb (synthetic)


def _pair(b0, b1, v0=2, v1=3):
    return {"crop_0": b0, "crop_1": b1, "vote_for_0": v0, "vote_for_1": v1}


@pytest.fixture()
def fake_fcdb(tmp_path: Path) -> Path:
    crops = [
        {"file": "1_a_b.jpg", "width": 1024, "height": 768, "crop_xyxy": [10, 20, 500, 400]},
        {"file": "2_a_c.jpg", "width": 2048, "height": 1363, "crop_xyxy": [27, 36, 667, 517]},
        {"file": "3_a_o.jpg", "width": 1000, "height": 800, "crop_xyxy": [0, 0, 100, 100]},
        {"file": "4_a_b.jpg", "width": 1024, "height": 768, "crop_xyxy": [500, 0, 400, 100]},  # x2 < x1
        {"file": "5_a_b.jpg", "width": 1024, "height": 768, "crop_xyxy": [0, 0, 1024, 768]},  # no votes
    ]
    b1 = _fcdb_like_boxes(1024, 768)
    b2 = _fcdb_like_boxes(800, 532)
    rankings = [
        # photo 1: in file pixels; its last pair has no votes at all -> dropped as invalid
        {"file": "1_a_b.jpg", "ranking_image_url_suffix": "b",
         "crops": [_pair(b1[0], b1[1]), _pair(b1[1], b1[2], 4, 1), _pair(b1[0], b1[2], 0, 0)]},
        # photo 2: drawn on the 800-px "c" copy -> rescaled, human crop too
        {"file": "2_a_c.jpg", "ranking_image_url_suffix": "c",
         "crops": [_pair(b2[0], b2[1]), _pair(b2[1], b2[2])]},
        # photo 3: boxes in a corner, suffix "o" -> undeterminable, votes dropped, photo kept
        {"file": "3_a_o.jpg", "ranking_image_url_suffix": "o",
         "crops": [_pair([0, 0, 100, 100], [5, 5, 100, 100])]},
        {"file": "4_a_b.jpg", "ranking_image_url_suffix": "b", "crops": [_pair(b1[0], b1[1])]},
    ]
    (tmp_path / "crops.json").write_text(json.dumps(crops))
    (tmp_path / "pairwise_rankings.json").write_text(json.dumps(rankings))
    return tmp_path


def test_load_fcdb_converts_and_reports(fake_fcdb: Path):
    records, report = ds.load_fcdb(fake_fcdb)
    by_file = {r.file: r for r in records}
    assert list(by_file) == ["1_a_b.jpg", "2_a_c.jpg", "3_a_o.jpg", "5_a_b.jpg"]
    assert report.photos == 4
    assert report.photos_dropped_bad_crop == ["4_a_b.jpg"]
    assert report.photos_without_votes == ["5_a_b.jpg"]
    assert report.votes_total == 3 + 2 + 1 + 1
    assert report.votes_dropped_invalid == 1
    assert report.photos_votes_dropped == ["3_a_o.jpg"]
    assert [f for f, _, _ in report.photos_votes_rescaled] == ["2_a_c.jpg"]
    assert report.crops_rescaled == ["2_a_c.jpg"]
    # photo 1 keeps 2, photo 2 keeps 2; photo 3's vote has no frame, photo 4's leaves with its photo
    assert report.votes_kept == 2 + 2

    one = by_file["1_a_b.jpg"]
    assert one.crop == (10, 20, 500, 400)
    assert one.votes[0] == ds.Vote((0, 0, 819, 614), (203, 151, 1022, 765), 2, 3)
    assert one.path == fake_fcdb / "images" / "1_a_b.jpg"
    assert one.photo_id == "1"

    two = by_file["2_a_c.jpg"]
    assert two.crop == (69, 92, 1708, 1325)  # 27*2.56, 36*2.562, 667*2.56, 517*2.562, rounded
    # b2[0] = [0, 0, 640, 425] -> (0, 0, 1638, 1089)
    assert two.votes[0].box0 == (0, 0, round(640 * 2.56), round(425 * 1363 / 532))
    assert by_file["3_a_o.jpg"].votes == ()


def test_load_fcdb_without_rankings_file(tmp_path: Path):
    (tmp_path / "crops.json").write_text(json.dumps([{"file": "9_x_b.jpg", "width": 10, "height": 10, "crop_xyxy": [0, 0, 5, 5]}]))
    records, report = ds.load_fcdb(tmp_path)
    assert [r.crop for r in records] == [(0, 0, 5, 5)]
    assert report.photos_without_votes == ["9_x_b.jpg"]


# -------------------------------------------------------------------------------------------- split

NAMES = [f"{i}_abc_b.jpg" for i in range(100, 140)]


def _photo_key(name: str) -> str:
    return name.split("_")[0]


def test_split_is_pinned():
    # Pinned: sha256("2024:<photo id>") must give the same split on every machine and Python version.
    train, val = ds.split_fcdb(NAMES, key=_photo_key)
    assert val == ["105_abc_b.jpg", "107_abc_b.jpg", "108_abc_b.jpg", "115_abc_b.jpg",
                   "122_abc_b.jpg", "123_abc_b.jpg", "127_abc_b.jpg", "136_abc_b.jpg"]
    assert sorted(train + val) == sorted(NAMES)


def test_split_ignores_order_and_other_photos():
    _, val = ds.split_fcdb(NAMES, key=_photo_key)
    _, val_rev = ds.split_fcdb(NAMES[::-1], key=_photo_key)
    _, val_half = ds.split_fcdb(NAMES[:20], key=_photo_key)
    assert sorted(val_rev) == sorted(val)
    assert val_half == [n for n in val if n in NAMES[:20]]


def test_split_keeps_size_variants_together_and_depends_on_seed():
    variants = [f"{i}_abc_{s}.jpg" for i in range(100, 160) for s in "bco"]
    train, val = ds.split_fcdb(variants, key=_photo_key)
    assert {_photo_key(n) for n in train}.isdisjoint({_photo_key(n) for n in val})
    _, other = ds.split_fcdb(NAMES, seed=7, key=_photo_key)
    assert other != ds.split_fcdb(NAMES, key=_photo_key)[1]


def test_split_extremes_and_errors():
    assert ds.split_fcdb(NAMES, val_fraction=0.0, key=_photo_key) == (NAMES, [])
    assert ds.split_fcdb(NAMES, val_fraction=1.0, key=_photo_key) == ([], NAMES)
    with pytest.raises(ValueError):
        ds.split_fcdb(NAMES, val_fraction=1.5, key=_photo_key)


def test_folds_are_pinned_and_partition_the_photos():
    # Pinned: sha256("2024:fold:<photo id>") must give the same folds on every machine.
    assert [ds.fold_of(_photo_key(n), 3) for n in NAMES[:12]] == [2, 2, 1, 0, 2, 1, 0, 1, 2, 2, 1, 1]
    tests = [ds.cv_split(NAMES, 3, f, key=_photo_key)[1] for f in range(3)]
    assert sorted(sum(tests, [])) == sorted(NAMES)  # every photo in exactly one fold
    for f in range(3):
        train, test = ds.cv_split(NAMES, 3, f, key=_photo_key)
        assert set(train).isdisjoint(test) and sorted(train + test) == sorted(NAMES)
    assert tests[0] == ["103_abc_b.jpg", "106_abc_b.jpg", "112_abc_b.jpg", "113_abc_b.jpg", "115_abc_b.jpg",
                        "118_abc_b.jpg", "122_abc_b.jpg", "124_abc_b.jpg", "129_abc_b.jpg", "130_abc_b.jpg",
                        "133_abc_b.jpg", "134_abc_b.jpg", "135_abc_b.jpg", "136_abc_b.jpg", "137_abc_b.jpg",
                        "139_abc_b.jpg"]


def test_folds_keep_size_variants_together_and_reject_bad_arguments():
    variants = [f"{i}_abc_{s}.jpg" for i in range(100, 160) for s in "bco"]
    for f in range(4):
        train, test = ds.cv_split(variants, 4, f, key=_photo_key)
        assert {_photo_key(n) for n in train}.isdisjoint({_photo_key(n) for n in test})
    with pytest.raises(ValueError):
        ds.cv_split(NAMES, 3, 3, key=_photo_key)
    with pytest.raises(ValueError):
        ds.fold_of("1", 1)


# -------------------------------------------------------------------------------------- GAICD readers


def test_read_gaicd_annotation_skips_unannotated_and_swaps_axes(tmp_path: Path):
    path = tmp_path / "1.txt"
    path.write_text("10 20 110 220 3.5\n0 0 50 60 -2\n\n5 6 7 8 1.25\n")
    boxes, mos = ds.read_gaicd_annotation(path)
    assert boxes.tolist() == [[20, 10, 220, 110], [6, 5, 8, 7]]  # y1 x1 y2 x2 -> x1 y1 x2 y2
    assert mos.tolist() == [3.5, 1.25]


def test_read_gaicd_annotation_rejects_malformed_lines(tmp_path: Path):
    path = tmp_path / "bad.txt"
    path.write_text("1 2 3 4\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        ds.read_gaicd_annotation(path)


def test_read_detector_boxes_and_split_list(tmp_path: Path):
    (tmp_path / "d.txt").write_text("128 539 177 614\n")
    assert ds.read_detector_boxes(tmp_path / "d.txt").tolist() == [[539, 128, 614, 177]]
    (tmp_path / "train.txt").write_text("211085.jpg\n211292.jpg\n\n")
    assert ds.read_split_list(tmp_path / "train.txt") == ["211085", "211292"]


# ------------------------------------------------------------------------------------- real ../shared


@pytest.mark.shared
def test_real_fcdb_votes_and_crops(shared_dir: Path):
    records, report = ds.load_fcdb(shared_dir / "data" / "fcdb-train")
    assert report.photos == len(records) == 1335
    assert report.votes_total == report.votes_kept == 13350
    assert report.photos_votes_in_file_pixels == 1334
    assert report.photos_votes_dropped == [] and report.votes_dropped_invalid == 0
    # the one photo whose file (2048 px) is larger than its "c" (800 px) name: votes and crop rescaled
    assert [f for f, _, _ in report.photos_votes_rescaled] == ["9646966948_39441cfd6f_c.jpg"]
    assert report.crops_rescaled == ["9646966948_39441cfd6f_c.jpg"]
    odd = next(r for r in records if r.file == "9646966948_39441cfd6f_c.jpg")
    assert odd.crop == (69, 92, 1708, 1325)
    for r in records:
        assert all(ds._box_ok(v.box0, r.width, r.height) and ds._box_ok(v.box1, r.width, r.height) for v in r.votes)


@pytest.mark.shared
def test_real_fcdb_files_match_annotations(shared_dir: Path):
    records, _ = ds.load_fcdb(shared_dir / "data" / "fcdb-train")
    check = ds.check_fcdb_images(records)
    assert check.checked == 1335
    assert check.missing == [] and check.size_mismatches == [] and check.exif_rotated == []


@pytest.mark.shared
def test_real_fcdb_split_is_pinned(shared_dir: Path):
    records, _ = ds.load_fcdb(shared_dir / "data" / "fcdb-train")
    train, val = ds.split_fcdb(records)
    assert (len(train), len(val)) == (1149, 186)
    assert [r.file for r in val[:3]] == [
        "2042696446_2556d13c0b_b.jpg", "5237687896_bdf349c7e7_b.jpg", "13179700414_73169bd82b_c.jpg"]


@pytest.mark.shared
def test_real_gaicd_v1(shared_dir: Path):
    root = shared_dir / "data" / "gaicd-v1"
    records = ds.load_gaicd_v1(root)
    assert len(records) == 1236
    assert sum(r.split == "train" for r in records) == 1036
    assert len(ds.load_gaicd_v1(root, split="test")) == 200
    with_images = ds.load_gaicd_v1(root, with_images_only=True)
    assert sorted(r.image_id for r in with_images) == ["211958", "265813", "297406", "302166", "309808"]
    first = next(r for r in with_images if r.image_id == "211958")
    assert first.split == "train" and len(first.mos) == 87
    # first annotation line "28 43 484 811 3.57" -> x1 43, y1 28, x2 811, y2 484
    assert first.boxes[0].tolist() == [43, 28, 811, 484] and first.mos[0] == 3.57
    assert first.gene_boxes is not None and first.gene_boxes.shape == (10, 4)
    assert first.gene_boxes[0].tolist() == [539, 128, 614, 177]  # "128 539 177 614"
    for r in with_images:
        assert np.all(r.boxes[:, 2] > r.boxes[:, 0]) and np.all(r.boxes[:, 3] > r.boxes[:, 1])
    with pytest.raises(ValueError):
        ds.load_gaicd_v1(root, split="val")


# ------------------------------------------------------------------------------------ locating ../shared


def test_shared_dir_lookup_order(tmp_path: Path, monkeypatch):
    from s2ccrop import _shared
    from s2ccrop.errors import ConfigError

    assert _shared.shared_dir(tmp_path) == tmp_path  # explicit wins
    with pytest.raises(ConfigError):
        _shared.shared_dir(tmp_path / "missing")  # an explicit path that is not there is an error
    monkeypatch.setenv("S2CCROP_SHARED", str(tmp_path))
    assert _shared.shared_dir() == tmp_path
    monkeypatch.setenv("S2CCROP_SHARED", str(tmp_path / "missing"))
    assert _shared.shared_dir() is None  # absent: callers skip instead of failing
    with pytest.raises(FileNotFoundError, match="S2CCROP_SHARED"):
        ds.data_root("fcdb-train")

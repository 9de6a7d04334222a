"""Teacher labels (s2ccrop.training.teachers): component boxes, the JSON writer, and the real teachers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from s2ccrop.training import teachers as T

FACE_PHOTO = "9415194618_20c9391083_c.jpg"  # 589 x 800, one man in a cap and sunglasses, checked by eye
OBJECTS_PHOTO = "23361824710_4cf1345188_c.jpg"  # 800 x 480, cotton pads, a foam ball, a lamp


# ------------------------------------------------------------------------------------------ synthetic


def test_mask_to_boxes_two_blobs_exact():
    pytest.importorskip("scipy")
    mask = np.zeros((100, 200), dtype=np.float32)
    mask[10:30, 20:60] = 1.0  # 800 px = 4 % of the image, full confidence
    mask[50:90, 100:180] = 0.8  # 3200 px = 16 %
    mask[95, 195] = 1.0  # one pixel: below the 0.5 % minimum, dropped
    boxes = T.mask_to_boxes(mask)
    assert boxes.shape == (2, 5)
    np.testing.assert_array_equal(boxes[:, :4], [[100, 50, 180, 90], [20, 10, 60, 30]])
    np.testing.assert_allclose(boxes[:, 4], [0.8 * np.sqrt(0.16), 1.0 * np.sqrt(0.04)], rtol=1e-6)


def test_mask_to_boxes_eight_connectivity_threshold_and_limit():
    pytest.importorskip("scipy")
    mask = np.zeros((50, 50))
    for i in range(10):  # a diagonal line: one component with 8-connectivity
        mask[i, i] = 1.0
    assert T.mask_to_boxes(mask, min_fraction=0).tolist() == [[0, 0, 10, 10, pytest.approx(np.sqrt(10 / 2500))]]
    assert len(T.mask_to_boxes(np.full((10, 10), 0.5))) == 0  # strictly above the threshold
    assert T.mask_to_boxes(np.zeros((10, 10))).shape == (0, 5)
    many = np.zeros((40, 40))
    many[::4, ::4] = 1.0  # 100 isolated pixels
    out = T.mask_to_boxes(many, min_fraction=0)
    assert out.shape == (T.MAX_BOXES, 5)
    assert out[0, :4].tolist() == [0, 0, 1, 1]  # equal scores: top-left first
    with pytest.raises(ValueError):
        T.mask_to_boxes(np.zeros((2, 2, 3)))


def test_write_json_atomic(tmp_path: Path, monkeypatch):
    out = tmp_path / "sub" / "labels.json"
    T.write_json_atomic(out, {"a": [1, 2.5]})
    assert json.loads(out.read_text()) == {"a": [1, 2.5]}
    # a failing write leaves the previous file intact and no temporary file behind
    with pytest.raises(TypeError):
        T.write_json_atomic(out, {"a": object()})
    assert json.loads(out.read_text()) == {"a": [1, 2.5]}
    assert sorted(p.name for p in out.parent.iterdir()) == ["labels.json"]
    # the file is swapped in by os.replace
    calls = []
    real = os.replace
    monkeypatch.setattr(T.os, "replace", lambda a, b: (calls.append((Path(a), Path(b))), real(a, b)))
    T.write_json_atomic(out, {"b": 1})
    assert calls and calls[0][1] == out and calls[0][0] != out
    assert json.loads(out.read_text()) == {"b": 1}


def test_mtcnn_state_dict_keys():
    shapes = {k: tuple(v.shape) for k, v in T.ONet().state_dict().items()}
    assert shapes["dense5.weight"] == (256, 1152) and shapes["dense6_3.weight"] == (10, 256)
    assert tuple(T.RNet().state_dict()["dense4.weight"].shape) == (128, 576)
    assert tuple(T.PNet().state_dict()["conv4_2.weight"].shape) == (4, 32, 1, 1)


def test_rejects_non_rgb():
    with pytest.raises(ValueError):
        T.detect_faces(np.zeros((10, 10), np.uint8), None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- real ../shared


@pytest.fixture(scope="module")
def teachers(shared_dir: Path) -> T.Teachers:
    pytest.importorskip("onnxruntime", reason="the salient-object teacher needs onnxruntime")
    pytest.importorskip("scipy", reason="component boxes need scipy")
    import torch

    torch.set_num_threads(1)
    folder = shared_dir / "weights" / "teachers"
    if not (folder / T.U2NET_FILE).is_file():
        pytest.skip(f"{folder} lacks the teacher weights")
    return T.Teachers(folder)


def _photo(shared_dir: Path, name: str) -> np.ndarray:
    path = shared_dir / "data" / "fcdb-train" / "images" / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return T._decode(path)


@pytest.mark.shared
def test_salient_objects_real_photo(shared_dir: Path, teachers: T.Teachers):
    rgb = _photo(shared_dir, OBJECTS_PHOTO)
    h, w = rgb.shape[:2]
    boxes = T.salient_objects(rgb, teachers.session)
    assert boxes.ndim == 2 and boxes.shape[1] == 5 and 1 <= len(boxes) <= T.MAX_BOXES
    assert np.all(np.diff(boxes[:, 4]) <= 0) and np.all((boxes[:, 4] > 0) & (boxes[:, 4] <= 1))
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
    assert np.all(boxes[:, 2] <= w) and np.all(boxes[:, 3] <= h)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    # the foam ball (right of centre) is boxed on its own
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    assert np.any((cx > 500) & (cx < 660) & (cy > 250) & (cy < 390))


@pytest.mark.shared
def test_detect_faces_one_face_on_the_face(shared_dir: Path, teachers: T.Teachers):
    rgb = _photo(shared_dir, FACE_PHOTO)
    assert rgb.shape == (800, 589, 3)
    for max_side in (None, T.FACE_MAX_SIDE):
        faces = T.detect_faces(rgb, teachers.nets, max_side=max_side)
        assert faces.shape == (1, 5)
        x1, y1, x2, y2, prob = faces[0]
        assert prob >= T.MIN_FACE_PROB
        assert 0 <= x1 < x2 <= 589 and 0 <= y1 < y2 <= 800
        # face (between the cap and the chin) checked by eye: centre near (243, 235), ~140 x 185 px
        assert 200 < (x1 + x2) / 2 < 290 and 190 < (y1 + y2) / 2 < 280
        assert 90 < x2 - x1 < 200 and 120 < y2 - y1 < 250
    labels = teachers.label(rgb)
    assert set(labels) == {"objects", "faces"} and len(labels["faces"]) == 1
    # the man is the salient object, and his face lies inside its box
    ox1, oy1, ox2, oy2, _ = labels["objects"][0]
    assert ox1 <= x1 and oy1 <= y1 and x2 <= ox2 and y2 <= oy2


@pytest.mark.shared
def test_label_fcdb_writes_file_pixels(shared_dir: Path, teachers: T.Teachers, tmp_path: Path):
    out = tmp_path / "fcdb.json"
    logs: list[str] = []
    payload = T.label_fcdb(shared_dir / "data" / "fcdb-train", teachers.folder, out, limit=2, log=logs.append)
    data = json.loads(out.read_text())
    assert data == payload and data["version"] == 1
    assert data["teachers"]["objects"] == "u2netp.onnx" and data["teachers"]["faces"] == "mtcnn"
    assert set(data["teachers"]["sha256"]) == {"u2netp.onnx", "pnet.pt", "rnet.pt", "onet.pt"}
    assert len(data["photos"]) == 2
    for entry in data["photos"].values():
        w, h = entry["size"]
        for row in entry["objects"] + entry["faces"]:
            assert len(row) == 5 and 0 <= row[0] < row[2] <= w and 0 <= row[1] < row[3] <= h
            assert all(round(v, 1) == v for v in row[:4])
    assert "2 photos" in logs[-1]
    # resuming skips what is there
    logs.clear()
    T.label_fcdb(shared_dir / "data" / "fcdb-train", teachers.folder, out, limit=2, log=logs.append)
    assert logs[0].startswith("resuming") and "2 photos already labelled" in logs[0] and json.loads(out.read_text()) == data

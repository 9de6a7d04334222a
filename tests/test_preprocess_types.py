"""Preprocessing (SPEC §2.1), ratio parsing and gene padding."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from s2ccrop.errors import ConfigError, InputError
from s2ccrop.genes import BoxFileGenes, WholeImageGenes, pad_boxes
from s2ccrop.preprocess import image_tensor, model_size, scale_boxes
from s2ccrop.types import Ratio


@pytest.mark.parametrize("size,expected", [
    ((1024, 768), (352, 256)),   # 1024*256/768 = 341.3 → 352
    ((768, 1024), (256, 352)),
    ((640, 640), (256, 256)),
    ((4000, 1000), (1024, 256)),
    ((1000, 3000), (256, 768)),
    ((1, 1), (256, 256)),
    ((3000, 4), (1024, 32)),
    ((5000, 1000), (1024, 192)),
])
def test_model_size(size, expected):
    assert model_size(*size) == expected


def test_image_tensor_values():
    # a constant image: each channel becomes (v/256 - mean) / std exactly
    img = Image.new("RGB", (64, 32), (128, 64, 255))
    x = image_tensor(img, (64, 32))
    assert x.shape == (1, 3, 32, 64)
    expected = [(128 / 256 - 0.485) / 0.229, (64 / 256 - 0.456) / 0.224, (255 / 256 - 0.406) / 0.225]
    assert torch.allclose(x[0, :, 0, 0], torch.tensor(expected), atol=1e-6)
    assert torch.allclose(x.std(dim=(2, 3)), torch.zeros(1, 3), atol=1e-6)


def test_image_tensor_resizes_bilinear():
    arr = np.zeros((4, 4, 3), np.uint8)
    arr[:, 2:] = 255
    x = image_tensor(Image.fromarray(arr), (2, 2))
    assert x.shape == (1, 3, 2, 2)


def test_scale_boxes():
    out = scale_boxes(np.array([[0, 0, 1024, 768], [512, 384, 1024, 768]]), (1024, 768), (352, 256))
    assert torch.allclose(out, torch.tensor([[0, 0, 352, 256], [176, 128, 352, 256]], dtype=torch.float32))


@pytest.mark.parametrize("text,w,h,s", [
    ("16:9", 16, 9, "16:9"), ("1.91:1", Fraction(191, 100), 1, "1.91:1"), ("4x5", 4, 5, "4:5"),
    (" 9/16 ", 9, 16, "9:16"), ("21:9", 21, 9, "21:9"),
])
def test_ratio_parse(text, w, h, s):
    r = Ratio.parse(text)
    assert (r.width, r.height) == (w, h) and str(r) == s


@pytest.mark.parametrize("bad", ["", "16", "16:0", "0:9", "a:b", "-1:2", "1:1000", "16:9:1", None, 3])
def test_ratio_parse_errors(bad):
    with pytest.raises(ConfigError):
        Ratio.parse(bad)


def test_ratio_any():
    assert Ratio.parse("any").is_any and str(Ratio.parse("ANY")) == "any"


def test_pad_boxes():
    got = pad_boxes(np.array([[1, 2, 3, 4]]), 3, 10, 20)
    assert got.tolist() == [[1, 2, 3, 4], [0, 0, 10, 20], [0, 0, 10, 20]]
    assert pad_boxes(np.zeros((7, 4)), 5, 1, 1).shape == (5, 4)
    assert pad_boxes(WholeImageGenes().boxes(8, 6), 2, 8, 6).tolist() == [[0, 0, 8, 6]] * 2


def test_box_file_genes(tmp_path):
    (tmp_path / "a.txt").write_text("10 20 30 40\n\n1 2 3 4\n")
    genes = BoxFileGenes(tmp_path)
    # lines are y1 x1 y2 x2 → returned as x1 y1 x2 y2
    assert genes.boxes(100, 100, "a").tolist() == [[20, 10, 40, 30], [2, 1, 4, 3]]
    with pytest.raises(InputError, match="no gene box file"):
        genes.boxes(100, 100, "missing")
    assert BoxFileGenes(tmp_path, missing_ok=True).boxes(1, 1, "missing").shape == (0, 4)
    (tmp_path / "bad.txt").write_text("1 2 3\n")
    with pytest.raises(InputError, match="bad.txt:1"):
        genes.boxes(1, 1, "bad")
    with pytest.raises(InputError):
        BoxFileGenes(tmp_path / "nope")

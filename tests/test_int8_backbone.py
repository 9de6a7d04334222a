"""The int8 copy of the backbone (model/int8_backbone.py): what it keeps exactly (the ReLU6 clamp, the
stored calibration, the float path when off), how close it stays to float32, and its error paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s2ccrop.model import S2CNet, S2CNetConfig, int8_backbone
from s2ccrop.model.backbone import FeatureExtractor
from s2ccrop.model.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.skipif(int8_backbone.engine() is None, reason="this torch has no x86 quantised engine")

SMALL = S2CNetConfig(num_boxes=4, genes_head=True, node_dim=128, mlp_dim=512)


def _trained_like(feat_ext: FeatureExtractor, seed: int = 0) -> FeatureExtractor:
    """Random BatchNorm statistics and affine terms, as a trained backbone has (fresh ones are identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in feat_ext.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.8 + 0.4 * torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return feat_ext.eval()


def _images(n: int, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # smooth random photos: low-frequency noise upsampled, in the normalised range of real inputs
    return [torch.nn.functional.interpolate(torch.randn(1, 3, 8, 12, generator=g), size=(64, 96), mode="bilinear") * 1.2
            for _ in range(n)]


@pytest.fixture(scope="module")
def calibrated():
    torch.manual_seed(0)
    model = S2CNet(SMALL).eval()
    _trained_like(model.Feat_ext)
    model.int8_calibration = int8_backbone.calibrate(model.Feat_ext, _images(6))
    return model


def test_calibration_names_every_measured_point(calibrated):
    points = calibrated.int8_calibration["points"]
    # the input, one projection conv per inverted residual (17) and one sum per residual block (10)
    assert len(points) == 1 + 17 + 10
    assert calibrated.int8_calibration["images"] == 6
    assert all(scale > 0 and 0 <= zero_point <= 255 for scale, zero_point in points.values())


def test_relu6_points_are_fixed_at_zero_to_six_so_the_clamp_is_exact(calibrated):
    q = int8_backbone.quantised_extractor(int8_backbone.folded_copy(calibrated.Feat_ext), calibrated.int8_calibration)
    fused = [m for m in q.modules() if type(m).__name__ == "ConvReLU2d"]
    assert len(fused) == 1 + 17 + 16  # the stem, and expand + depthwise of each block (the first has no expand)
    assert all(m.scale == pytest.approx(6 / 255) and m.zero_point == 0 for m in fused)
    # a quantised Conv+ReLU with these parameters saturates at 6.0 exactly
    x = torch.quantize_per_tensor(torch.full((1, 32, 4, 4), 50.0), 0.5, 0, torch.quint8)
    assert fused[1](x).dequantize().max().item() == pytest.approx(6.0)


def test_int8_maps_stay_close_to_float32(calibrated):
    float_maps = calibrated.Feat_ext
    q = int8_backbone.quantised_extractor(int8_backbone.folded_copy(calibrated.Feat_ext), calibrated.int8_calibration)
    with torch.no_grad():
        for image in _images(3, seed=9):
            for exact, low in zip(float_maps(image), q(image)):
                assert low.shape == exact.shape and low.dtype == torch.float32
                assert low.is_contiguous(memory_format=torch.channels_last)
                corr = torch.corrcoef(torch.stack([exact.flatten(), low.flatten()]))[0, 1].item()
                assert corr > 0.9, corr


def test_checkpoint_keeps_the_calibration_and_inference_uses_it(calibrated, tmp_path, monkeypatch):
    path = tmp_path / "c.safetensors"
    save_checkpoint(calibrated, path, half=False)
    loaded = load_checkpoint(path)
    assert loaded.int8_calibration == calibrated.int8_calibration
    image = _images(1, seed=4)[0]
    crops = torch.tensor([[0.0, 0.0, 95.0, 63.0], [10.0, 5.0, 70.0, 50.0]])
    genes = torch.tensor([[0.0, 0.0, 96.0, 64.0]] * 4)
    with torch.no_grad():
        literal = loaded(image, crops, genes)
        monkeypatch.setenv(int8_backbone.ENV, "0")
        loaded.prepare_for_inference()
        assert not loaded.int8_backbone_active
        float_fmap = loaded.features(image)
        exact = loaded.score_boxes(float_fmap, crops, genes, (96, 64))
        monkeypatch.delenv(int8_backbone.ENV)
        loaded.prepare_for_inference()
        assert loaded.int8_backbone_active
        fmap = loaded.features(image)
        assert torch.equal(loaded.features(image), fmap)  # every call alike
        assert not torch.allclose(fmap, float_fmap, atol=1e-4)
        f3, f4, f5 = int8_backbone.quantised_extractor(int8_backbone.folded_copy(loaded.Feat_ext), loaded.int8_calibration)(image)
        size = f4.shape[-2:]
        up = dict(size=size, mode="bilinear", align_corners=True)
        expected = loaded.DimRed(torch.cat([F.interpolate(f3, **up), f4, 0.5 * F.interpolate(f5, **up)], 1))
    assert torch.allclose(exact, literal, atol=1e-4)  # off: the float path as before
    assert torch.allclose(fmap, expected, atol=1e-5)  # on: the int8 maps, deterministic per calibration


def test_reference_checkpoints_and_uncalibrated_models_keep_the_float_backbone():
    model = S2CNet(SMALL).eval().prepare_for_inference()
    assert model.int8_calibration is None and not model.int8_backbone_active


def test_a_calibration_whose_points_differ_is_refused(calibrated):
    points = dict(calibrated.int8_calibration["points"])
    points.pop(sorted(points)[-1])
    with pytest.raises(ValueError, match="points differ"):
        int8_backbone.quantised_extractor(int8_backbone.folded_copy(calibrated.Feat_ext), {**calibrated.int8_calibration, "points": points})
    with pytest.raises(ValueError, match="format"):
        int8_backbone.quantised_extractor(int8_backbone.folded_copy(calibrated.Feat_ext), {"format": 99, "points": {}})
    with pytest.raises(ValueError, match="at least one image"):
        int8_backbone.calibrate(calibrated.Feat_ext, [])


def test_an_unreadable_calibration_in_a_checkpoint_names_the_file(calibrated, tmp_path):
    from safetensors.torch import load_file, save_file

    from s2ccrop.errors import WeightsError
    from s2ccrop.model.checkpoint import read_state_dict

    path = tmp_path / "c.safetensors"
    save_checkpoint(calibrated, path, half=False)
    _, _, meta = read_state_dict(path)
    save_file(load_file(str(path)), str(path), metadata={**meta, int8_backbone.CALIBRATION_KEY: "[1, 2]"})
    with pytest.raises(WeightsError, match="c.safetensors: unreadable int8 backbone calibration"):
        load_checkpoint(path)

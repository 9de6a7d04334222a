"""S2CNet structure, checkpoint loading and a slow re-implementation of SPEC §2.3–2.7 to compare against."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from s2ccrop.errors import WeightsError
from s2ccrop.model import CONFIGS, GAICV1, GAICV2, S2CNet, S2CNetConfig, infer_config, load_checkpoint, save_checkpoint
from s2ccrop.model.backbone import torchvision_to_reference
from s2ccrop.ops import rod_align_avg, roi_align_avg


def _official_keys(shared_docs: Path, name: str) -> list[tuple[str, list[int]]]:
    rows = []
    for line in (shared_docs / f"official-keys-{name}.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape = line.split(" ", 1)
        rows.append((key, [int(s) for s in shape.strip("[] ").split(",") if s.strip()]))
    return rows


@pytest.mark.parametrize("name", ["GAICv1", "GAICv2"])
def test_state_dict_matches_reference_names_and_shapes(shared_dir, name):
    expected = _official_keys(shared_dir / "docs", name)
    got = [(k, list(v.shape)) for k, v in S2CNet(CONFIGS[name]).state_dict().items()]
    assert got == expected


def test_state_dict_sizes_without_shared():
    # Independent of ../shared: counts and the shapes that identify each config.
    v1, v2 = S2CNet(GAICV1).state_dict(), S2CNet(GAICV2).state_dict()
    assert len(v1) == 353 and len(v2) == 367
    assert v1["node_emb.0.weight"].shape == (256, 1296)
    assert v2["node_emb.0.weight"].shape == (256, 3600)
    assert v2["FC_layers.0.0.weight"].shape == (768, 6, 16, 16)
    assert v1["Feat_ext.feature4.0.7.conv.0.weight"].shape == (192, 32, 1, 1)


@pytest.mark.parametrize("name", ["GAICv1", "GAICv2"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_reference_checkpoint_roundtrip(tmp_path, name, prefix):
    torch.manual_seed(1)
    model = S2CNet(CONFIGS[name]).eval()
    path = tmp_path / "ref.pth"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    loaded = load_checkpoint(path)
    assert loaded.config == CONFIGS[name]
    assert not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_wrapped_state_dict_is_accepted(tmp_path):
    model = S2CNet(GAICV1)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "w.pth")
    assert load_checkpoint(tmp_path / "w.pth").config == GAICV1


def test_wrong_checkpoint_names_the_keys(tmp_path):
    sd = S2CNet(GAICV1).state_dict()
    sd.pop("DimRed.bias")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=r"missing keys DimRed\.bias.*unexpected keys extra\.weight"):
        load_checkpoint(tmp_path / "bad.pth")


def test_pickled_payload_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(WeightsError, match="refused"):
        load_checkpoint(tmp_path / "evil.pth")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError):
        load_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(WeightsError, match="no such"):
        load_checkpoint(tmp_path / "missing.pth")


def test_infer_config_from_shapes():
    assert infer_config(S2CNet(GAICV2).state_dict()) == GAICV2
    custom = S2CNetConfig(align_size=7, num_boxes=3, head="graph")
    assert infer_config(S2CNet(custom).state_dict()) == custom


@pytest.mark.parametrize("half", [False, True])
def test_safetensors_roundtrip_keeps_config(tmp_path, half):
    torch.manual_seed(2)
    config = S2CNetConfig(align_size=9, num_boxes=4, head="crop")
    model = S2CNet(config).eval()
    save_checkpoint(model, tmp_path / "ours.safetensors", {"note": "test"}, half=half)
    loaded = load_checkpoint(tmp_path / "ours.safetensors")
    assert loaded.config == config
    for k, v in model.state_dict().items():
        tol = 1e-2 * v.abs().max().item() + 1e-6 if half and v.is_floating_point() else 0
        assert torch.allclose(loaded.state_dict()[k].to(v.dtype), v, atol=tol, rtol=0), k


def test_imagenet_positional_mapping_gives_torchvision_features():
    tv = pytest.importorskip("torchvision")
    torch.manual_seed(3)
    net = tv.models.mobilenet_v2().eval()
    model = S2CNet(GAICV1).eval()
    model.load_imagenet_backbone(net.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        f3, f4, f5 = model.Feat_ext(x)
        assert torch.allclose(f3, net.features[:7](x), atol=1e-5)
        assert torch.allclose(f5, net.features[:18](x), atol=1e-5)


def test_imagenet_mapping_rejects_other_state_dicts():
    with pytest.raises(ValueError, match="not a torchvision MobileNetV2"):
        torchvision_to_reference({"features.0.0.weight": torch.zeros(32, 3, 3, 3)})


def test_shared_imagenet_weights_load(shared_dir):
    sd = torch.load(shared_dir / "weights/imagenet/mobilenet_v2-b0353104.pth", weights_only=True)
    model = S2CNet(GAICV1)
    model.load_imagenet_backbone(sd)
    assert torch.equal(model.Feat_ext.feature3[0][0][0].weight, sd["features.0.0.weight"])


# ---- a slow, literal re-implementation of SPEC §2.3-2.7 -----------------------------------------


def _slow_scores(model: S2CNet, image: torch.Tensor, crops: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
    cfg = model.config
    sd = {k: v.double() for k, v in model.state_dict().items() if v.is_floating_point()}
    lin = lambda x, name, bias=True: F.linear(x, sd[name + ".weight"], sd.get(name + ".bias") if bias else None)  # noqa: E731
    ln = lambda x, name: F.layer_norm(x, (x.shape[-1],), sd[name + ".weight"], sd[name + ".bias"])  # noqa: E731
    with torch.no_grad():
        f3, f4, f5 = model.Feat_ext(image)
        f3 = F.interpolate(f3, scale_factor=0.5, mode="bilinear", align_corners=True)
        f5 = F.interpolate(f5, scale_factor=2.0, mode="bilinear", align_corners=True)
        fmap = model.DimRed(torch.cat([f3, f4, 0.5 * f5], 1))
    h, w = image.shape[-2:]
    a = cfg.align_size
    out = []
    for crop in crops:
        boxes = torch.cat([crop[None], genes], 0)
        rois = torch.cat([torch.zeros(len(boxes), 1), boxes], 1)
        roi = roi_align_avg(fmap, rois, a, 1 / 16)
        rod = rod_align_avg(fmap, rois, a, 1 / 16)
        feats = torch.stack([roi, rod], 2).reshape(len(boxes), -1).double()
        pre_norm = lin(feats, "node_emb.0")
        if cfg.box_geometry:  # edges as fractions, log share of the image, log aspect
            bw, bh = (boxes[:, 2] - boxes[:, 0]).double(), (boxes[:, 3] - boxes[:, 1]).double()
            geo = torch.stack([boxes[:, 0] / w, boxes[:, 1] / h, boxes[:, 2] / w, boxes[:, 3] / h,
                               torch.log(bw * bh / (w * h)), torch.log(bw / bh)], 1).double()
            pre_norm = pre_norm + lin(geo, "GeoEmb")
        x = F.relu(ln(pre_norm, "node_emb.1"))  # [n, 256]
        n = x.shape[0]
        centres = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2 / w, (boxes[:, 1] + boxes[:, 3]) / 2 / h], 1).double()
        th, ph = lin(centres, "GraphConstructor.pos_ascension_theta"), lin(centres, "GraphConstructor.pos_ascension_phi")
        P = torch.zeros(4, n, n, dtype=torch.float64)
        S = torch.zeros(4, n, n, dtype=torch.float64)
        at, ap = lin(x, "GraphConstructor.fc_rn_theta"), lin(x, "GraphConstructor.fc_rn_phi")
        for i in range(n):
            for j in range(n):
                d = math.sqrt(max(float(((th[i] - ph[j]) ** 2).sum()), 0.0)) / 16.0
                P[:, i, j] = lin(torch.tensor([d], dtype=torch.float64), "GraphConstructor.pos_to_head")
                s = float(at[i] @ ap[j]) / 16.0
                S[:, i, j] = lin(torch.tensor([s], dtype=torch.float64), "GraphConstructor.app_to_head")
        G = torch.softmax(P.mean(0) * S.mean(0), dim=-1)
        for layer in range(cfg.depth):
            pre = f"GraphTransformer.layers.{layer}"
            x_ma = F.relu(ln(lin(G @ x, "GraphTransformer.fc_gcn", bias=False), "GraphTransformer.nl_gcn"))
            xn = ln(x, f"{pre}.0.fn.norm")
            kv = lin(xn, f"{pre}.0.fn.fn.to_kv", bias=False)
            k, v = kv[:, :256], kv[:, 256:]
            q = lin(x_ma, f"{pre}.0.fn.fn.to_q", bias=False)
            heads = []
            for hd in range(4):
                sl = slice(64 * hd, 64 * hd + 64)
                logits = q[:, sl] @ k[:, sl].T * 256**-0.5 + P[hd] + S[hd]
                heads.append(torch.softmax(logits, -1) @ v[:, sl])
            x = x + lin(torch.cat(heads, 1), f"{pre}.0.fn.fn.to_out.0")
            xn = ln(x, f"{pre}.1.fn.norm")
            x = x + lin(F.gelu(lin(xn, f"{pre}.1.fn.fn.net.0")), f"{pre}.1.fn.fn.net.3")
        if cfg.head == "crop":
            out.append(lin(x[0], "FC_layers").reshape(()))
        else:
            head = model.FC_layers.double().eval()
            out.append(head(x.reshape(1, n, 16, 16)).reshape(()))
            model.FC_layers.float()
    return torch.stack(out).float()


GEOMETRY = S2CNetConfig(align_size=9, num_boxes=4, box_geometry=True)


@pytest.mark.parametrize("config", [GAICV1, GAICV2, GEOMETRY], ids=["GAICv1", "GAICv2", "box-geometry"])
def test_forward_equals_slow_reference(config):
    torch.manual_seed(4)
    model = S2CNet(config).eval()
    # make BatchNorm statistics non-trivial so the head's BN is exercised
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    image = torch.randn(1, 3, 64, 96)
    crops = torch.tensor([[0.0, 0.0, 95.0, 63.0], [10.0, 5.0, 70.0, 50.0], [30.0, 20.0, 90.0, 60.0]])
    genes = torch.tensor([[5.0, 5.0, 40.0, 40.0]] + [[0.0, 0.0, 96.0, 64.0]] * (config.num_boxes - 1))
    with torch.no_grad():
        fast = model(image, crops, genes)
    slow = _slow_scores(model, image, crops, genes)
    assert fast.shape == (3,)
    assert torch.allclose(fast, slow, atol=1e-4), (fast, slow)


def test_forward_rejects_wrong_gene_count_and_batch():
    model = S2CNet(GAICV1).eval()
    image = torch.randn(1, 3, 64, 64)
    with pytest.raises(ValueError, match="expected 10 gene boxes"):
        model(image, torch.tensor([[0.0, 0, 32, 32]]), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="one image"):
        model(torch.randn(2, 3, 64, 64), torch.tensor([[0.0, 0, 32, 32]]), torch.zeros(10, 4))


def test_empty_candidates_give_empty_scores():
    model = S2CNet(GAICV1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64), torch.zeros(0, 4), torch.zeros(10, 4)).shape == (0,)


def test_gradients_reach_the_backbone():
    model = S2CNet(GAICV1).train()
    scores = model(torch.randn(1, 3, 64, 64), torch.tensor([[0.0, 0, 40, 40], [8.0, 8, 60, 60]]), torch.zeros(10, 4))
    scores.sum().backward()
    assert model.Feat_ext.feature3[0][0][0].weight.grad.abs().sum() > 0
    assert model.DimRed.weight.grad.abs().sum() > 0


def _scores_on_every_path(model, image, crops, genes):
    """(literal, shared) scores of an eval model, after checking that the eval fast path matches the
    literal one."""
    with torch.no_grad():
        literal = model(image, crops, genes)
        model.prepare_for_inference()
        fmap = model.features(image)
        shared = model.score_boxes(fmap, crops, genes, (96, 64))
    assert torch.allclose(literal, shared, atol=1e-5)
    return literal, shared


def test_box_geometry_is_ours_only_and_every_path_agrees(tmp_path):
    """Reference configs have no GeoEmb (their state_dicts stay the reference's); with it, the eval fast
    path and the bfloat16 copy read it too, and a checkpoint keeps the setting."""
    assert not any(k.startswith("GeoEmb") for k in S2CNet(GAICV1).state_dict())
    torch.manual_seed(5)
    model = S2CNet(GEOMETRY).eval()
    assert model.state_dict()["GeoEmb.weight"].shape == (256, 6)
    image = torch.randn(1, 3, 64, 96)
    crops = torch.tensor([[0.0, 0.0, 95.0, 63.0], [10.0, 5.0, 70.0, 50.0], [10.0, 5.0, 40.0, 27.5]])
    genes = torch.tensor([[0.0, 0.0, 96.0, 64.0]] * 4)
    literal, shared = _scores_on_every_path(model, image, crops, genes)
    with torch.no_grad():
        model.GeoEmb.weight.zero_()
        model.GeoEmb.bias.zero_()
        without = model.score_boxes(model.features(image), crops, genes, (96, 64))
    assert not torch.allclose(without, shared, atol=1e-3)  # the geometry term did change the scores
    save_checkpoint(model, tmp_path / "g.safetensors", half=False)
    assert load_checkpoint(tmp_path / "g.safetensors").config.box_geometry


def _lite_port_state_dict(seed: int = 11) -> "dict[str, torch.Tensor]":
    """A random EfficientNet-Lite0 state_dict under the PyTorch port's names (``_conv_stem``,
    ``_blocks.N._expand_conv``, …, its head conv and classifier), with non-trivial BatchNorm statistics."""
    from s2ccrop.model.backbone import EFFICIENTNET_LITE0, backbone_blocks

    torch.manual_seed(seed)
    blocks = backbone_blocks(EFFICIENTNET_LITE0)
    out: dict[str, torch.Tensor] = {}

    def bn(prefix, m):
        out.update({f"{prefix}.weight": torch.rand(m.num_features) + 0.5, f"{prefix}.bias": torch.randn(m.num_features),
                    f"{prefix}.running_mean": torch.randn(m.num_features), f"{prefix}.running_var": torch.rand(m.num_features) + 0.5,
                    f"{prefix}.num_batches_tracked": torch.tensor(7)})

    out["_conv_stem.weight"] = torch.randn_like(blocks[0][0].weight)
    bn("_bn0", blocks[0][1])
    for i, block in enumerate(blocks[1:]):
        layers = [m for m in block.conv if not isinstance(m, torch.nn.ReLU6)]
        names = (["_expand_conv", "_bn0"] if len(layers) == 6 else []) + ["_depthwise_conv", "_bn1", "_project_conv", "_bn2"]
        for name, m in zip(names, layers):
            if isinstance(m, torch.nn.Conv2d):
                out[f"_blocks.{i}.{name}.weight"] = torch.randn_like(m.weight) * 0.2
            else:
                bn(f"_blocks.{i}.{name}", m)
    out["_conv_head.weight"] = torch.randn(1280, 320, 1, 1)
    bn("_bn1", torch.nn.BatchNorm2d(1280))
    out["_fc.weight"], out["_fc.bias"] = torch.randn(1000, 1280), torch.randn(1000)
    return out


def test_efficientnet_lite0_backbone_shapes_and_channels():
    model = S2CNet(S2CNetConfig(backbone="efficientnet_lite0", genes_head=True)).eval()
    assert model.DimRed.weight.shape == (8, 40 + 112 + 320, 1, 1)
    assert model.GeneHead.lateral3.weight.shape[1] == 40 and model.GeneHead.lateral4.weight.shape[1] == 112
    with torch.no_grad():
        f3, f4, f5 = model.Feat_ext(torch.randn(1, 3, 64, 96))
    assert (f3.shape, f4.shape, f5.shape) == ((1, 40, 8, 12), (1, 112, 4, 6), (1, 320, 2, 3))
    depthwise = [m.kernel_size for m in model.Feat_ext.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert depthwise.count((5, 5)) == 9 and depthwise.count((3, 3)) == 7  # Lite0's 16 blocks
    assert all(m.eps == 1e-3 for m in model.Feat_ext.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ValueError, match="backbone must be one of"):
        S2CNetConfig(backbone="resnet50")


def test_efficientnet_lite2_layout_matches_the_published_port():
    """Lite2's blocks, (depthwise kernel, output channels) each, as the PyPI port's 21 ``_blocks`` hold
    them (read off efficientnet-lite2-9656183e.pth), cut at strides 8, 16 and 32."""
    from s2ccrop.model.backbone import FeatureExtractor

    port = [(3, 16)] + [(3, 24)] * 3 + [(5, 48)] * 3 + [(3, 88)] * 4 + [(5, 120)] * 4 + [(5, 208)] * 5 + [(3, 352)]
    extractor = FeatureExtractor("efficientnet_lite2").eval()
    blocks = [b for stage in (extractor.feature3, extractor.feature4, extractor.feature5) for b in stage[0]][1:]
    ours = [(b.conv[-5].kernel_size[0] if len(b.conv) > 5 else b.conv[0].kernel_size[0], b.conv[-2].out_channels) for b in blocks]
    assert ours == port
    with torch.no_grad():
        f3, f4, f5 = extractor(torch.randn(1, 3, 64, 96))
    assert (f3.shape, f4.shape, f5.shape) == ((1, 48, 8, 12), (1, 120, 4, 6), (1, 352, 2, 3))
    model = S2CNet(S2CNetConfig(backbone="efficientnet_lite2", genes_head=True))
    assert model.DimRed.weight.shape == (8, 48 + 120 + 352, 1, 1)


def test_efficientnet_lite_mapping_folds_the_input_normalisation():
    """The port's weights see x' = (255 p - 127) / 128; after the mapping the stem sees our
    x = (p - mean) / std and gives the same outputs (exactly, but at the zero-padded border); every
    other tensor is copied as it is, in order, and the head conv and classifier are dropped."""
    from s2ccrop.model.backbone import FeatureExtractor, efficientnet_lite_to_extractor
    from s2ccrop.preprocess import MEAN, STD

    port = _lite_port_state_dict()
    mapped = efficientnet_lite_to_extractor(port)
    raw = FeatureExtractor("efficientnet_lite0").eval()
    raw.load_state_dict(dict(zip(raw.state_dict(), [v for k, v in port.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))])))
    ours = FeatureExtractor("efficientnet_lite0").eval()
    ours.load_state_dict(mapped)
    assert torch.equal(mapped["feature5.0.16.conv.6.weight"], port["_blocks.15._project_conv.weight"])
    assert torch.equal(mapped["feature3.0.0.1.running_var"], port["_bn0.running_var"])
    p = torch.rand(1, 3, 32, 48)
    lite_input = (255 * p - 127) / 128
    our_input = (p - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = raw.feature3[0][0](lite_input)
        got = ours.feature3[0][0](our_input)
    assert expected.abs().max() > 0.5
    assert torch.allclose(got[..., 1:, 1:], expected[..., 1:, 1:], atol=1e-4)  # top/left rows saw the padding
    with pytest.raises(ValueError, match="not an EfficientNet-Lite state_dict"):
        efficientnet_lite_to_extractor({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)})


def test_efficientnet_lite0_fast_path_and_checkpoint_agree(tmp_path):
    torch.manual_seed(6)
    config = S2CNetConfig(backbone="efficientnet_lite0", num_boxes=4, genes_head=True, node_dim=128, mlp_dim=512)
    model = S2CNet(config).eval()
    model.load_imagenet_backbone(_lite_port_state_dict())
    image = torch.randn(1, 3, 64, 96)
    crops = torch.tensor([[0.0, 0.0, 95.0, 63.0], [10.0, 5.0, 70.0, 50.0]])
    genes = torch.tensor([[0.0, 0.0, 96.0, 64.0]] * 4)
    with torch.no_grad():
        literal = model(image, crops, genes)
        model.prepare_for_inference()
        fast = model.score_boxes(model.features(image), crops, genes, (96, 64))
    assert torch.allclose(literal, fast, atol=1e-4)
    save_checkpoint(model, tmp_path / "lite.safetensors", half=False)
    loaded = load_checkpoint(tmp_path / "lite.safetensors")
    assert loaded.config.backbone == "efficientnet_lite0"
    with torch.no_grad():
        assert torch.allclose(loaded(image, crops, genes), literal, atol=1e-5)


SIZE_PRIOR = S2CNetConfig(align_size=9, num_boxes=4, size_prior=True)


def test_size_prior_is_ours_only_adds_its_hand_computed_term_on_every_path(tmp_path):
    """Reference configs have no SizePrior; with one, every scoring path adds
    -weight * (log(box area / image area) - mu)² to the graph's score, and a checkpoint keeps it."""
    assert not any(k.startswith("SizePrior") for k in S2CNet(GAICV1).state_dict())
    torch.manual_seed(6)
    model = S2CNet(SIZE_PRIOR).eval()
    plain = S2CNet(dataclasses.replace(SIZE_PRIOR, size_prior=False)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("SizePrior")})
    # a prior that predicts a quarter of the photo with weight 2, whatever the photo shows
    with torch.no_grad():
        model.SizePrior.out.weight.zero_()
        model.SizePrior.out.bias.copy_(torch.tensor([math.log(0.25), math.log(math.expm1(2.0))]))
    image = torch.randn(1, 3, 64, 96)
    crops = torch.tensor([[0.0, 0.0, 96.0, 64.0], [0.0, 0.0, 48.0, 32.0], [10.0, 5.0, 34.0, 21.0]])
    genes = torch.tensor([[0.0, 0.0, 96.0, 64.0]] * 4)
    expected_term = torch.tensor([-2 * math.log(4) ** 2, 0.0, -2 * math.log(0.25 / 0.0625) ** 2])
    literal, _ = _scores_on_every_path(model, image, crops, genes)
    with torch.no_grad():
        assert torch.allclose(literal - plain(image, crops, genes), expected_term, atol=1e-4)
    save_checkpoint(model, tmp_path / "p.safetensors", half=False)
    again = load_checkpoint(tmp_path / "p.safetensors")
    assert again.config.size_prior
    with torch.no_grad():
        assert torch.allclose(again.eval()(image, crops, genes), literal, atol=1e-5)


def test_size_prior_reads_the_photo():
    """Before training the prior is mild (a share of 0.6 at weight 0.25) and its prediction depends on
    the feature map, so training can make it follow the photo."""
    from s2ccrop.model.size_prior import INITIAL_SHARE, INITIAL_WEIGHT, SizePrior, log_share

    torch.manual_seed(7)
    prior = SizePrior(8)
    mu, weight = prior.predict(torch.zeros(1, 8, 4, 6))
    assert abs(mu.item() - math.log(INITIAL_SHARE)) < 0.05 and abs(weight.item() - INITIAL_WEIGHT) < 0.05
    mu2, _ = prior.predict(torch.randn(2, 8, 4, 6) * 5)
    assert mu2.shape == (2,) and not torch.isclose(mu2[0], mu2[1])
    assert torch.allclose(log_share(torch.tensor([[0.0, 0.0, 50.0, 20.0], [3.0, 3.0, 3.0, 4.0]]), 100, 40),
                          torch.tensor([math.log(0.25), math.log(1 / 4000)]))


REFINER = S2CNetConfig(align_size=9, num_boxes=4, box_refiner=True)


def _refiner_moving_by(model, offsets):
    """Make `model`'s refiner move every box by `offsets` (x1, y1, x2, y2, units of its side), whatever it sees."""
    with torch.no_grad():
        model.BoxRefiner.mlp[2].weight.zero_()
        model.BoxRefiner.mlp[2].bias.copy_(torch.atanh(torch.tensor(offsets) / 0.4))


def test_box_refiner_is_ours_only_moves_nothing_untrained_and_survives_a_checkpoint(tmp_path):
    from s2ccrop.model.box_refiner import MAX_OFFSET

    assert MAX_OFFSET == 0.4  # _refiner_moving_by inverts the tanh with it
    assert not any(k.startswith("BoxRefiner") for k in S2CNet(GAICV1).state_dict())
    torch.manual_seed(8)
    model = S2CNet(REFINER).eval()
    image = torch.randn(1, 3, 64, 96)
    boxes = torch.tensor([[0.0, 0.0, 96.0, 64.0], [10.0, 5.0, 34.0, 21.0]])
    with torch.no_grad():
        fmap = model.features(image)
        assert torch.equal(model.refine_boxes(fmap, boxes, (96, 64)), boxes)
        assert torch.equal(S2CNet(GAICV1).eval().refine_boxes(fmap, boxes, (96, 64)), boxes)  # no refiner: unchanged
        _refiner_moving_by(model, [-0.1, 0.05, 0.2, -0.25])
        moved = model.refine_boxes(fmap, boxes, (96, 64))
    # box 1 is 24 x 16: x1 - 2.4, y1 + 0.8, x2 + 4.8, y2 - 4
    assert torch.allclose(moved[1], torch.tensor([7.6, 5.8, 38.8, 17.0]), atol=1e-4)
    assert torch.allclose(moved[0], torch.tensor([-9.6, 3.2, 115.2, 48.0]), atol=1e-4)
    save_checkpoint(model, tmp_path / "r.safetensors", half=False)
    again = load_checkpoint(tmp_path / "r.safetensors").eval()
    assert again.config.box_refiner
    with torch.no_grad():
        assert torch.allclose(again.refine_boxes(again.features(image), boxes, (96, 64)), moved, atol=1e-5)
        # the refiner moves boxes, it never changes a score
        assert torch.allclose(again(image, boxes, torch.tensor([[0.0, 0.0, 96.0, 64.0]] * 4)),
                              model(image, boxes, torch.tensor([[0.0, 0.0, 96.0, 64.0]] * 4)), atol=1e-5)


def test_box_refiner_sees_the_box_and_a_context_window_twice_its_size():
    """The offsets depend on the feature map inside the box and just outside each edge (the context
    window grows it by half its side on every side), never on what lies beyond that window; and they
    stay within ±MAX_OFFSET."""
    from s2ccrop.model.box_refiner import MAX_OFFSET, BoxRefiner

    torch.manual_seed(9)
    refiner = BoxRefiner(4)
    with torch.no_grad():
        refiner.mlp[2].weight.normal_(std=1.0)
    fmap = torch.randn(1, 4, 16, 16)  # 256 x 256 pixels at stride 16
    box = torch.tensor([[96.0, 96.0, 160.0, 160.0]])  # map cells 6..10; context window cells 4..12
    base = refiner(fmap, box, (256, 256))
    assert base.shape == (1, 4) and base.abs().max() <= MAX_OFFSET
    for cells, changes in (((8, 8), True), ((4, 8), True), ((12, 5), True), ((0, 0), False), ((15, 14), False)):
        edited = fmap.clone()
        edited[0, :, cells[0], cells[1]] += 10.0
        assert (not torch.equal(refiner(edited, box, (256, 256)), base)) is changes, cells
    big = refiner(fmap * 100, box, (256, 256))
    assert big.abs().max() <= MAX_OFFSET


def test_refine_targets_are_the_human_crops_edges_in_units_of_the_box():
    from s2ccrop.model.box_refiner import apply_offsets, refine_targets

    boxes = torch.tensor([[0.0, 0.0, 100.0, 50.0], [10.0, 10.0, 20.0, 20.0]])
    crop = torch.tensor([10.0, 5.0, 90.0, 50.0])
    t = refine_targets(boxes, crop)
    assert torch.allclose(t[0], torch.tensor([0.1, 0.1, -0.1, 0.0]))
    assert torch.allclose(t[1], torch.full((4,), 0.38).mul(torch.tensor([0.0, -1.0, 1.0, 1.0])))  # clipped at 0.95 x 0.4
    assert torch.allclose(apply_offsets(boxes[:1], t[:1]), crop[None])


def test_scoring_on_the_backbones_own_map_does_not_walk_the_weights_again(monkeypatch):
    """The weights' signature (a walk over every parameter) is taken once per backbone pass, not once
    per scoring call; a map the cache did not make, or weights edited since, still get the full check."""
    import s2ccrop.model.s2cnet as s2cnet

    torch.manual_seed(10)
    model = S2CNet(S2CNetConfig(align_size=9, num_boxes=4)).eval().prepare_for_inference()
    calls = []
    real = s2cnet._signature
    monkeypatch.setattr(s2cnet, "_signature", lambda tensors: calls.append(1) or real(tensors))
    image = torch.randn(1, 3, 64, 96)
    boxes = torch.tensor([[0.0, 0.0, 96.0, 64.0], [10.0, 5.0, 34.0, 21.0]])
    genes = torch.tensor([[0.0, 0.0, 96.0, 64.0]] * 4)
    with torch.inference_mode():
        fmap = model.features(image)
        assert len(calls) == 1
        first = model.score_boxes(fmap, boxes, genes, (96, 64))
        for _ in range(3):
            model.score_boxes(fmap, boxes, genes, (96, 64))
        assert len(calls) == 1
        assert model._inference_cache(fmap.clone()) is not None and len(calls) == 2  # another map: checked
        model.node_emb[0].weight.add_(1.0)  # an in-place edit: the next check drops the copies
        again = model.features(image)
        assert "_inference" not in model.__dict__
        assert not torch.allclose(model.score_boxes(again, boxes, genes, (96, 64)), first)

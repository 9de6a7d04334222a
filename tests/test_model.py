"""S2CNet structure, checkpoint loading and a slow re-implementation of SPEC §2.3–2.7 to compare against."""

from __future__ import annotations

import json
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


# The model config in weights/s2ccrop-v5.safetensors' metadata, written before the options `backbone`,
# `box_geometry` and `size_prior` left the package (2026-12-06): each at its off value.
V5_CONFIG_JSON = (
    '{"align_size": 9, "backbone": "mobilenet_v2", "box_geometry": false, "box_refiner": true, "depth": 2, "dropout": 0.1, '
    '"free_form_grid": "full", "genes_head": true, "graph_uses_head": false, "head": "crop", "heads": 4, '
    '"input_short_side": 256, "mlp_dim": 256, "node_dim": 64, "num_boxes": 4, "reduced_dim": 8, '
    '"refine_ratio_given": "size", "selection": "average", "size_prior": false}'
)
V5_CONFIG = S2CNetConfig(align_size=9, num_boxes=4, dropout=0.1, node_dim=64, mlp_dim=256, genes_head=True, graph_uses_head=False,
                         free_form_grid="full", selection="average", box_refiner=True, refine_ratio_given="size")


def _with_config_metadata(path: Path, config_json: str) -> None:
    from safetensors.torch import load_file, save_file

    from s2ccrop.model.checkpoint import read_state_dict

    meta = read_state_dict(path)[2]
    save_file(load_file(str(path)), str(path), metadata={**meta, "s2ccrop_config": config_json})


def test_a_checkpoint_naming_removed_options_at_their_off_values_loads_as_before(tmp_path):
    """Checkpoints written before backbone / box_geometry / size_prior were removed name them, off
    (s2ccrop-v5 does): they load strictly to the same config, which no longer has those fields."""
    from s2ccrop.model.s2cnet import REMOVED_OPTIONS

    assert S2CNetConfig.from_json(V5_CONFIG_JSON) == V5_CONFIG
    assert not set(REMOVED_OPTIONS) & set(json.loads(V5_CONFIG.to_json()))
    torch.manual_seed(12)
    model = S2CNet(V5_CONFIG).eval()
    save_checkpoint(model, tmp_path / "v5.safetensors", half=False)
    _with_config_metadata(tmp_path / "v5.safetensors", V5_CONFIG_JSON)
    loaded = load_checkpoint(tmp_path / "v5.safetensors")
    assert loaded.config == V5_CONFIG and loaded.own_checkpoint
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    shipped = Path(__file__).resolve().parents[1] / "weights" / "s2ccrop-v5.safetensors"
    if shipped.is_file():
        from s2ccrop.model.checkpoint import read_state_dict

        _, config, meta = read_state_dict(shipped)
        assert config == V5_CONFIG and json.loads(meta["s2ccrop_config"]) == json.loads(V5_CONFIG_JSON)


@pytest.mark.parametrize("name, value", [("size_prior", True), ("box_geometry", True), ("backbone", "efficientnet_lite0")])
def test_a_checkpoint_that_needs_a_removed_option_is_refused_by_name(tmp_path, name, value):
    text = json.dumps({**json.loads(V5_CONFIG_JSON), name: value})
    with pytest.raises(ValueError, match=f"needs {name} = {json.dumps(value)}, an option removed") as info:
        S2CNetConfig.from_json(text)
    assert len(str(info.value).splitlines()) == 1
    save_checkpoint(S2CNet(V5_CONFIG).eval(), tmp_path / "old.safetensors", half=False)
    _with_config_metadata(tmp_path / "old.safetensors", text)
    with pytest.raises(ValueError, match=f"needs {name} = "):
        load_checkpoint(tmp_path / "old.safetensors")


@pytest.mark.parametrize("grid", ["wide", "deep"])
def test_a_checkpoint_trained_on_a_removed_free_form_grid_is_refused_by_name(grid):
    with pytest.raises(ValueError, match=f"free_form_grid must be 'gaic' or 'full', got '{grid}' \\(removed") as info:
        S2CNetConfig.from_json(json.dumps({**json.loads(V5_CONFIG_JSON), "free_form_grid": grid}))
    assert len(str(info.value).splitlines()) == 1


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
        x = F.relu(ln(lin(feats, "node_emb.0"), "node_emb.1"))  # [n, 256]
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


@pytest.mark.parametrize("config", [GAICV1, GAICV2], ids=["GAICv1", "GAICv2"])
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

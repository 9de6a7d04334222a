"""The eval-mode node embedding without a RoD sample per box (model/fast_nodes.py) against the plain path.

RoDAlign's grid is the same for every box; only its keep-mask differs. The fast path samples the
whole map once, folds it into the node embedding's weights (`rod_table`) and recomputes each box's
mask (`rod_keep_mask`). The mask must flip exactly where the op's does, so boxes are also built with
edges ON sample positions (the <= comparisons), and the mask is checked bit for bit against the op.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from s2ccrop import Cropper
from s2ccrop.model import S2CNet, S2CNetConfig
from s2ccrop.model import fast_nodes
from s2ccrop.model.s2cnet import SPATIAL_SCALE, _fold_avg_pool
from s2ccrop.ops import _extension, extension_status, rod_align, rod_align_avg, roi_align, roi_align_avg

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXT_LOADED, EXT_REASON = extension_status()
HAS_CUDA = torch.cuda.is_available()

# (which ops, device): the compiled kernels where built, the pure-PyTorch fallback everywhere
BACKENDS = [
    pytest.param("compiled-cpu", id="compiled-cpu", marks=pytest.mark.skipif(not EXT_LOADED, reason=EXT_REASON)),
    pytest.param("fallback-cpu", id="fallback-cpu"),
    pytest.param("default-cuda", id="cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")),
]


@pytest.fixture
def backend(request, monkeypatch):
    ops, device = request.param.split("-")
    if ops == "fallback":
        monkeypatch.setattr(_extension, "has_kernel_for", lambda device: False)
    return torch.device(device)


def _model(config: S2CNetConfig, seed: int, dtype: torch.dtype, device: torch.device) -> S2CNet:
    torch.manual_seed(seed)
    return S2CNet(config).eval().to(device, dtype).prepare_for_inference()


def _sample_positions(size: int, length: int, dtype: torch.dtype) -> torch.Tensor:
    """Where RoDAlign samples one axis of a map `length` long, in map pixels, as the kernels compute it."""
    step = torch.tensor(length - 1.001, dtype=dtype) / torch.tensor(size - 1, dtype=dtype)
    return torch.arange(size, dtype=dtype) * step


def _boxes(height: int, width: int, size: int, dtype: torch.dtype, seed: int, count: int = 300) -> torch.Tensor:
    """xyxy boxes in image pixels (map x 16) on an H x W map: random ones, boxes partly or wholly
    outside, tiny and empty ones, the whole image, and boxes whose edges are sample positions
    (x16 is exact, so the scaled edge equals the sample and the op's <= decides)."""
    g = torch.Generator().manual_seed(seed)
    img_w, img_h = width / SPATIAL_SCALE, height / SPATIAL_SCALE
    span = torch.tensor([img_w, img_h], dtype=torch.float64)
    corners = (torch.rand(count, 2, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2) * span  # some outside
    random = torch.cat([corners.min(1).values, corners.max(1).values], 1)
    xs = _sample_positions(size, width, dtype).double() / SPATIAL_SCALE
    ys = _sample_positions(size, height, dtype).double() / SPATIAL_SCALE
    i = torch.randint(0, size, (count, 4), generator=g)
    lo_x, hi_x = torch.minimum(xs[i[:, 0]], xs[i[:, 1]]), torch.maximum(xs[i[:, 0]], xs[i[:, 1]])
    lo_y, hi_y = torch.minimum(ys[i[:, 2]], ys[i[:, 3]]), torch.maximum(ys[i[:, 2]], ys[i[:, 3]])
    on_samples = torch.stack([lo_x, lo_y, hi_x, hi_y], 1)
    # one edge on a sample, the other random; and a box one sample wide (x1 == x2)
    mixed = torch.cat([on_samples[:, :2], random[:, 2:].maximum(on_samples[:, :2])], 1)
    point = torch.stack([xs[i[:, 0]], ys[i[:, 2]], xs[i[:, 0]], ys[i[:, 2]]], 1)
    special = torch.tensor(
        [
            [0, 0, img_w, img_h],  # the whole image
            [0, 0, 0, 0],  # the first sample only
            [-50, -50, img_w + 50, img_h + 50],  # everything
            [-80, -80, -10, -10],  # outside: nothing masked
            [5.0, 5.0, 7.0, 7.0],  # tiny, between samples
            [30, 30, 10, 10],  # inverted
            [img_w / 2, -20, img_w + 40, img_h / 2],  # partly outside
        ],
        dtype=torch.float64,
    )
    return torch.cat([random, on_samples, mixed, point, special]).to(dtype)


def _plain(model: S2CNet, fmap: torch.Tensor, boxes: torch.Tensor, batch_index: int) -> torch.Tensor:
    """SPEC §2.4 as written: RoI/RoD align with the 2x2 pool, stacked per channel, then node_emb."""
    a = model.config.align_size
    rois = torch.cat([torch.full_like(boxes[:, :1], batch_index), boxes], 1).to(fmap.dtype)
    nodes = torch.stack([roi_align_avg(fmap, rois, a, SPATIAL_SCALE), rod_align_avg(fmap, rois, a, SPATIAL_SCALE)], 2)
    return model.node_emb(nodes.flatten(1))


def _per_box_rod(model: S2CNet, fmap: torch.Tensor, boxes: torch.Tensor, batch_index: int = 0) -> torch.Tensor:
    """The previous fast path: the pool folded into the weights, but a RoD sample per box."""
    a, fast = model.config.align_size, model._inference_cache()
    roi_w, rod_w = _fold_avg_pool(model.node_emb[0].weight, model.config.reduced_dim, a)
    rois = torch.cat([torch.full_like(boxes[:, :1], batch_index), boxes], 1).to(fmap.dtype)
    roi = roi_align(fmap, rois, a + 1, SPATIAL_SCALE).flatten(1)
    rod = rod_align(fmap, rois, a + 1, SPATIAL_SCALE).flatten(1)
    x = torch.addmm(torch.addmm(fast["bias"], roi, roi_w.t()), rod, rod_w.t())
    return model.node_emb[2](model.node_emb[1](x))


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [(16, 24), (7, 3), (2, 2)])  # a stride-16 map of 256x384, odd and minimal ones
def test_rod_keep_mask_is_the_ops_mask(backend, dtype, size):
    """Bit for bit: on a map of ones, the op writes 0 exactly where it masks a sample."""
    height, width = size
    boxes = _boxes(height, width, 10, dtype, seed=height * width)
    rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], 1).to(backend)
    written = rod_align(torch.ones(1, 1, height, width, dtype=dtype, device=backend), rois, 10, SPATIAL_SCALE)
    keep = fast_nodes.rod_keep_mask(rois, height, width, 10, SPATIAL_SCALE)
    assert torch.equal(keep, written.flatten(1) != 0)
    assert 0 < int(keep.sum()) < keep.numel()  # both outcomes are exercised


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("config", [S2CNetConfig(9, 4, "crop"), S2CNetConfig(15, 5, "graph")], ids=["a9", "a15"])
def test_fast_embed_boxes_equals_plain_path(backend, dtype, atol, config):
    model = _model(config, seed=config.align_size, dtype=dtype, device=backend)
    torch.manual_seed(1)
    fmap = torch.randn(3, config.reduced_dim, 16, 24, dtype=dtype, device=backend)
    boxes = _boxes(16, 24, config.align_size + 1, dtype, seed=2).to(backend)
    with torch.no_grad():
        assert model._inference_cache() is not None  # the fast path is the one under test
        for batch_index in (0, 2):
            fast = model.embed_boxes(fmap, boxes, batch_index)
            plain = _plain(model, fmap, boxes, batch_index)
            assert fast.shape == plain.shape == (len(boxes), config.node_dim)
            assert (fast - plain).abs().max().item() < atol
        assert model.embed_boxes(fmap, boxes[:0], 1).shape == (0, config.node_dim)


@pytest.mark.parametrize("dtype, atol", [(torch.float16, 2e-2), (torch.bfloat16, 1e-1)])
def test_fast_embed_boxes_reduced_precision(dtype, atol):
    """Half / bfloat16 models take the fast path too (prepared after the cast): rounding-level changes."""
    model = _model(S2CNetConfig(9, 4, "crop"), seed=3, dtype=dtype, device=torch.device("cpu"))
    torch.manual_seed(4)
    fmap = torch.randn(2, 8, 16, 24).to(dtype)
    boxes = _boxes(16, 24, 10, torch.float32, seed=5)
    with torch.no_grad():
        fast = model.embed_boxes(fmap, boxes, 1)
        before = _per_box_rod(model, fmap, boxes, 1)
    assert fast.dtype == dtype
    assert (fast.float() - before.float()).abs().max().item() < atol
    # the mask itself stays exact in reduced precision
    rois = torch.cat([torch.ones_like(boxes[:, :1]), boxes], 1).to(dtype)
    written = rod_align(torch.ones(2, 1, 16, 24, dtype=dtype), rois, 10, SPATIAL_SCALE)
    assert torch.equal(fast_nodes.rod_keep_mask(rois, 16, 24, 10, SPATIAL_SCALE), written.flatten(1) != 0)


def test_fast_path_samples_the_rod_grid_once(monkeypatch):
    model = _model(S2CNetConfig(9, 4, "crop"), seed=6, dtype=torch.float32, device=torch.device("cpu"))
    seen = []
    original = fast_nodes.rod_align
    monkeypatch.setattr(fast_nodes, "rod_align", lambda f, rois, *a: seen.append(len(rois)) or original(f, rois, *a))
    with torch.no_grad():
        model.embed_boxes(torch.randn(1, 8, 16, 24), _boxes(16, 24, 10, torch.float32, seed=7))
    assert seen == [1]


@pytest.mark.parametrize("backend", BACKENDS[:2], indirect=True)
@pytest.mark.parametrize("name", ["coffee.png", "chelsea.png"])
def test_cropper_choices_unchanged(backend, name, monkeypatch):
    """The same crops (and scores within float rounding) as with a RoD sample per box."""
    ratios = ["any", "16:9", "4:3", "1:1", "9:16"]
    image = Image.open(EXAMPLES / name)
    cropper = Cropper(weights="random", device="cpu")
    new = cropper.crop(image, ratios)
    model = cropper.model
    monkeypatch.setattr(model, "embed_boxes", lambda fmap, boxes, index=0, low=None: _per_box_rod(model, fmap, boxes, index))
    old = cropper.crop(image, ratios)
    assert [c.box for c in new] == [c.box for c in old]
    assert all(abs(a.score - b.score) < 1e-5 for a, b in zip(new, old))

"""The speed work must not change what is chosen: the optimised Cropper against a straightforward scorer.

`_reference_scores` below is the unoptimised pipeline as first written (and as SPEC §2 reads): whole
photo to float then `F.interpolate`, the plain BatchNorm backbone, RoI/RoD align with the 2x2 average
pool, every candidate with its own full node set [crop, gene_1..gene_D], every node through every
layer. The Cropper's path folds BatchNorm, runs channels-last, folds the pool into the node embedding,
shares gene nodes across candidates, merges repeated gene boxes and computes only node 0 in the
crop head's last layer. Same candidates in, same boxes and (within 1e-4) the same scores out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from s2ccrop import Cropper
from s2ccrop.genes import pad_boxes
from s2ccrop.model import S2CNet, S2CNetConfig
from s2ccrop.model.s2cnet import GAICV1, GAICV2, box_centres
from s2ccrop.ops import rod_align_avg, roi_align_avg
from s2ccrop.preprocess import MEAN, STD, model_size, scale_boxes
from s2ccrop.types import Ratio

RATIOS = ["16:9", "4:3", "1:1", "9:16", "any", "21:9"]
SIZES = [(320, 240), (240, 320), (500, 333), (97, 61), (900, 220)]
SCORE_TOL = 1e-4
TIE = 1e-5  # two candidates this close are a tie that float rounding may break either way


def _photo(size: tuple[int, int], seed: int) -> Image.Image:
    """Smooth shapes plus noise: a photo-like image whose candidates get distinct scores."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(4):
        cx, cy, r = rng.random() * w, rng.random() * h, (0.1 + 0.3 * rng.random()) * min(w, h)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.random(3) * 255
    img += rng.normal(0, 12, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


class FixedGenes:
    """Gene boxes as fractions of the image: some distinct, the rest padded (repeated) by the Cropper."""

    name = "fixed"

    def __init__(self, fractions):
        self.fractions = np.asarray(fractions, dtype=np.float64).reshape(-1, 4)

    def boxes(self, width, height, key=None):
        return self.fractions * np.array([width, height, width, height])


# ---------------------------------------------------------------- the straightforward reference


def _reference_tensor(image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)[None].float()
    w, h = size
    if (x.shape[-1], x.shape[-2]) != (w, h):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=False)
    return (x / 256.0 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def _reference_scores(model: S2CNet, image: Image.Image, boxes: np.ndarray, genes: np.ndarray) -> np.ndarray:
    cfg = model.config
    W, H = image.size
    msize = model_size(W, H)
    with torch.no_grad():
        f3, f4, f5 = model.Feat_ext(_reference_tensor(image, msize))
        f3 = F.interpolate(f3, size=f4.shape[-2:], mode="bilinear", align_corners=True)
        f5 = F.interpolate(f5, size=f4.shape[-2:], mode="bilinear", align_corners=True)
        fmap = model.DimRed(torch.cat([f3, f4, 0.5 * f5], dim=1))
        crop = scale_boxes(boxes, (W, H), msize)
        gene = scale_boxes(genes, (W, H), msize)
        n, d = len(crop), len(gene)

        def embed(b):
            rois = torch.cat([torch.zeros(len(b), 1), b], 1)
            nodes = torch.stack([roi_align_avg(fmap, rois, cfg.align_size, 1 / 16),
                                 rod_align_avg(fmap, rois, cfg.align_size, 1 / 16)], 2).flatten(1)
            return model.node_emb(nodes)

        x = torch.cat([embed(crop)[:, None], embed(gene)[None].expand(n, d, -1)], 1)  # [N, D+1, 256]
        allb = torch.cat([crop[:, None], gene[None].expand(n, d, 4)], 1)
        gc = model.GraphConstructor
        centres = box_centres(allb, *msize)
        theta, phi = gc.pos_ascension_theta(centres), gc.pos_ascension_phi(centres)
        sq = theta.pow(2).sum(-1, keepdim=True) + phi.pow(2).sum(-1)[:, None] - 2 * theta @ phi.transpose(1, 2)
        pos = gc.pos_to_head((sq.clamp(min=0).sqrt() / 16)[..., None]).permute(0, 3, 1, 2)
        sim = gc.fc_rn_theta(x) @ gc.fc_rn_phi(x).transpose(1, 2) / math.sqrt(256)
        app = gc.app_to_head(sim[..., None]).permute(0, 3, 1, 2)
        gt = model.GraphTransformer
        graph = (pos.mean(1) * app.mean(1)).softmax(-1)
        for attn_block, ff_block in gt.layers:
            attn, ff = attn_block.fn, ff_block.fn
            x_ma = F.relu(gt.nl_gcn(gt.fc_gcn(graph @ x)))
            k, v = attn.fn.to_kv(attn.norm(x)).chunk(2, -1)
            q = attn.fn.to_q(x_ma)
            split = lambda t: t.reshape(n, d + 1, 4, 64).transpose(1, 2)  # noqa: E731
            a = (split(q) @ split(k).transpose(-1, -2) * 256**-0.5 + pos + app).softmax(-1)
            x = x + attn.fn.to_out((a @ split(v)).transpose(1, 2).reshape(n, d + 1, 256))
            x = x + ff.fn(ff.norm(x))
        if cfg.head == "crop":
            return model.FC_layers(x[:, 0]).reshape(n).numpy()
        return model.FC_layers(x.reshape(n, d + 1, 16, 16)).reshape(n).numpy()


def _assert_same_choice(cropper: Cropper, image: Image.Image, ratios=RATIOS) -> int:
    """Checks every ratio; returns how many were decided by a near-tie (allowed to differ)."""
    got = cropper.crop(image, ratios)
    p = cropper.prepare(image)
    W, H = image.size
    genes = pad_boxes(cropper.genes.boxes(W, H, None), cropper.config.num_boxes, W, H)
    groups = cropper.candidates(p, [Ratio.parse(r) for r in ratios])
    every = np.concatenate(groups)
    ref_all = _reference_scores(cropper.model, image, every, genes)
    # every candidate's score, not just the winners'
    assert np.abs(cropper.score(p, every) - ref_all).max() < SCORE_TOL
    ties, start = 0, 0
    for crop, ratio, boxes in zip(got, ratios, groups):
        ref = ref_all[start : start + len(boxes)]
        start += len(boxes)
        best = int(np.argmax(ref))
        chosen = [tuple(int(v) for v in b) for b in boxes].index(crop.box)
        assert abs(crop.score - ref[chosen]) < SCORE_TOL, (ratio, crop.score, ref[chosen])
        if chosen != best:  # only a tie may go the other way
            assert ref[best] - ref[chosen] < TIE, (ratio, crop.box, tuple(boxes[best]), ref[best] - ref[chosen])
            ties += 1
    return ties


def _model(config: S2CNetConfig, seed: int = 0) -> S2CNet:
    torch.manual_seed(seed)
    model = S2CNet(config).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so folding them is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
    return model


CASES = {
    "random (GAICv1 shape)": lambda: Cropper(weights="random", device="cpu"),
    "shipped shape, crop head, 4 genes": lambda: Cropper(weights=_model(S2CNetConfig(9, 4, "crop"), 1), device="cpu"),
    "graph head (GAICv2 shape)": lambda: Cropper(weights=_model(GAICV2, 2), device="cpu"),
    "crop head, distinct genes": lambda: Cropper(
        weights=_model(GAICV1, 3), device="cpu",
        genes=FixedGenes([[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.9, 0.9], [0.1, 0.1, 0.5, 0.6]])),
    "graph head, distinct genes": lambda: Cropper(
        weights=_model(GAICV2, 4), device="cpu", genes=FixedGenes([[0.2, 0.0, 0.7, 0.5], [0.0, 0.5, 0.4, 1.0]])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_optimised_choices_equal_reference(case):
    cropper = CASES[case]()
    ties = sum(_assert_same_choice(cropper, _photo(size, seed)) for seed, size in enumerate(SIZES))
    assert ties <= 1  # a tie in ~30 decisions is rounding; more would be a real difference


def test_crop_many_equals_crop():
    cropper = Cropper(weights=_model(S2CNetConfig(9, 4, "crop"), 5), device="cpu")
    photos = [_photo(SIZES[i % 3], 10 + i) for i in range(7)]  # repeated sizes: shared backbone batches
    many = cropper.crop_many(photos, ["16:9", "1:1", "any"], batch_size=3)
    single = [cropper.crop(p, ["16:9", "1:1", "any"]) for p in photos]
    assert [[c.box for c in r] for r in many] == [[c.box for c in r] for r in single]
    for a, b in zip(many, single):
        assert all(abs(x.score - y.score) < SCORE_TOL for x, y in zip(a, b))


def test_training_mode_keeps_the_literal_graph():
    """Dropout acts per node, so training must not take the shared-node path."""
    model = _model(S2CNetConfig(9, 4, "crop", dropout=0.5), 6)
    model.prepare_for_inference()
    calls = []
    original = model._score_shared
    model._score_shared = lambda *a, **k: calls.append(1) or original(*a, **k)
    image, crops, genes = torch.randn(1, 3, 64, 96), torch.tensor([[0.0, 0, 60, 40], [10, 5, 90, 60]]), torch.zeros(4, 4)
    model.train()
    model(image, crops, genes).sum().backward()
    assert not calls and model.Feat_ext.feature3[0][0][0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        model(image, crops, genes)
    assert calls


def test_inference_cache_follows_weight_changes():
    model = _model(S2CNetConfig(9, 4, "crop"), 7)
    model.prepare_for_inference()
    image, crops, genes = torch.randn(1, 3, 64, 96), torch.tensor([[0.0, 0, 60, 40], [10, 5, 90, 60]]), torch.zeros(4, 4)
    with torch.no_grad():
        before = model(image, crops, genes)
        model.node_emb[0].weight.mul_(2.0)
        model.Feat_ext.feature3[0][0][0].weight.mul_(-1.0)
        after = model(image, crops, genes)
        fresh = _model(S2CNetConfig(9, 4, "crop"), 7)
        fresh.load_state_dict(model.state_dict())
        assert torch.allclose(after, fresh.eval()(image, crops, genes), atol=1e-5)
    assert not torch.allclose(before, after)


def test_large_photo_resize_matches_interpolate():
    from s2ccrop.preprocess import image_tensor

    img = _photo((2400, 1600), 11)  # above the gather threshold
    size = model_size(*img.size)
    assert torch.allclose(image_tensor(img, size), _reference_tensor(img, size), atol=1e-5)


# ---------------------------------------------------------------- bfloat16 ranking, exact rescoring


EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.png"))


@pytest.fixture(scope="module")
def shipped_pair():
    """The shipped weights twice, choosing the best candidate (the choice ranking must not change):
    ranking in bfloat16 (forced, so CPUs without AMX test it too) and exact."""
    return (Cropper(device="cpu", bf16_ranking=True, selection="best"),
            Cropper(device="cpu", bf16_ranking=False, selection="best"))


def test_bf16_ranking_is_on_only_where_asked_or_fast():
    from s2ccrop.model.s2cnet import bf16_matmul_is_fast

    assert Cropper(weights="random", device="cpu", bf16_ranking=True).model.approximates
    assert not Cropper(weights="random", device="cpu", bf16_ranking=False).model.approximates
    assert Cropper(weights="random", device="cpu").model.approximates == bf16_matmul_is_fast()  # int8: ours only
    model = _model(S2CNetConfig(9, 4, "crop"), 8).prepare_for_inference(approximate=True)
    assert model.approximates
    model.train()
    assert not model.approximates  # training never takes it
    model.eval()
    with torch.no_grad():
        model.node_emb[0].weight.mul_(2.0)
    assert not model.approximates  # stale copy after a weight change: exact path
    model.prepare_for_inference(approximate=True)
    with torch.no_grad():
        model.GraphTransformer.fc_gcn.weight.mul_(0.5)  # the graph is copied too
    assert not model.approximates


@pytest.mark.parametrize("env, fast, approximates", [
    ({"S2CCROP_BF16": "0"}, False, False), ({"S2CCROP_BF16": "off"}, False, False),
    ({"S2CCROP_BF16": "1"}, True, True), ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False, False),
    ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, True, True),
])
def test_bf16_switch_in_the_environment(monkeypatch, env, fast, approximates):
    """$S2CCROP_BF16=0 keeps bfloat16 ranking off even where AMX would turn it on, =1 forces it on,
    and a oneDNN capped below AMX counts as a CPU without it (bench/run.py --isa avx2 sets both)."""
    from s2ccrop.model import s2cnet

    monkeypatch.delenv("S2CCROP_BF16", raising=False)
    monkeypatch.delenv("S2CCROP_INT8", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)  # as on an AMX CPU
    assert s2cnet.bf16_matmul_is_fast()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert s2cnet.bf16_matmul_is_fast() is fast
    assert Cropper(weights="random", device="cpu").model.approximates is approximates
    # the keyword still wins over the environment
    assert not Cropper(weights="random", device="cpu", bf16_ranking=False).model.approximates


def test_approximate_scores_track_exact(shipped_pair):
    """Approximate scores: every candidate, in order, within the error the margin was set from."""
    from s2ccrop.select import APPROX_MARGIN

    fast, _ = shipped_pair
    for seed, size in enumerate(SIZES):
        p = fast.prepare(_photo(size, 40 + seed))
        boxes = np.concatenate(fast.candidates(p, [Ratio.parse(r) for r in RATIOS]))
        fmap = fast.features([p])
        exact = fast.score_features(fmap, 0, p, boxes)
        approx = fast.score_features(fmap, 0, p, boxes, approximate=True)
        assert approx.shape == exact.shape == (len(boxes),)
        assert not np.array_equal(approx, exact)  # it did take the bfloat16 path
        assert np.abs(approx - exact).max() < APPROX_MARGIN / 2.5


@pytest.mark.parametrize("source", ["examples", "synthetic"])
def test_bf16_ranking_chooses_what_exact_scoring_chooses(shipped_pair, source):
    fast, exact = shipped_pair
    photos = [Image.open(p) for p in EXAMPLES] if source == "examples" else [
        _photo(size, 50 + seed) for seed, size in enumerate(SIZES)]
    assert photos
    for photo in photos:
        a, b = fast.crop(photo, RATIOS), exact.crop(photo, RATIOS)
        assert [c.box for c in a] == [c.box for c in b]
        assert all(abs(x.score - y.score) < SCORE_TOL for x, y in zip(a, b))  # winners rescored exactly


def test_contenders_keep_every_possible_winner():
    from s2ccrop.select import contenders

    rng = np.random.default_rng(0)
    groups = [np.zeros((n, 4)) for n in (50, 1, 30)]
    exact = rng.normal(0, 2, 81)
    approx = exact + rng.uniform(-0.1, 0.1, 81)  # error below half the margin
    pick = contenders(groups, approx, np.zeros(81), margin=0.25)
    assert np.all(np.diff(pick) > 0)
    for start, n in ((0, 50), (50, 1), (51, 30)):
        assert start + int(np.argmax(exact[start : start + n])) in pick
    # a margin of 0 keeps exactly each group's approximate best
    assert list(contenders(groups, approx, np.zeros(81), margin=0.0)) == [
        int(np.argmax(approx[:50])), 50, 51 + int(np.argmax(approx[51:]))]


def test_contenders_follow_the_face_guard_and_fall_back_on_nan():
    from s2ccrop.select import FACE_CUT_PENALTY, contenders

    groups = [np.zeros((4, 4))]
    approx = np.array([3.0, 2.9, 1.0, 0.0])
    penalties = np.array([FACE_CUT_PENALTY, 0.0, 0.0, 0.0])  # the best cuts a face
    assert list(contenders(groups, approx, penalties, margin=0.25)) == [1]
    assert list(contenders(groups, np.array([1.0, np.nan, 0.0, 0.0]), np.zeros(4))) == [0, 1, 2, 3]
    assert list(contenders([np.zeros((0, 4))], np.zeros(0), np.zeros(0))) == []


def test_select_crops_never_picks_a_ruled_out_candidate():
    from s2ccrop.select import select_crops

    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 12, 12]])
    crops = select_crops([Ratio.parse("1:1")], [boxes], np.array([-np.inf, 0.5, -np.inf]))
    assert crops[0].box == (1, 1, 11, 11) and crops[0].score == 0.5


def test_fused_relu6_backbone_equals_the_modules():
    from s2ccrop.model.backbone import FusedFeatureExtractor, _onednn_pointwise_available, fuse_relu6
    from s2ccrop.model.backbone import fold_batchnorm

    if not _onednn_pointwise_available():
        pytest.skip("this torch has no oneDNN fused convolution (mkldnn._convolution_pointwise)")
    model = _model(S2CNetConfig(9, 4, "crop"), 9)
    folded = fold_batchnorm(model.Feat_ext).to(memory_format=torch.channels_last)
    fused = fuse_relu6(folded)
    assert isinstance(fused, FusedFeatureExtractor) and not list(fused.parameters())
    image = torch.randn(2, 3, 96, 160).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for a, b in zip(fused(image), folded(image)):
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    prepared = _model(S2CNetConfig(9, 4, "crop"), 9).prepare_for_inference()
    assert isinstance(prepared.__dict__["_inference"]["backbone"].Feat_ext, FusedFeatureExtractor)


def test_rod_table_is_shared_within_a_map_and_renewed_for_another():
    model = _model(S2CNetConfig(9, 4, "crop"), 10).prepare_for_inference(approximate=False)
    boxes = torch.tensor([[0.0, 0, 60, 40], [10, 5, 90, 60]])
    with torch.inference_mode():
        fmap1, fmap2 = torch.randn(2, 8, 6, 8), torch.randn(2, 8, 6, 8)
        first = model.embed_boxes(fmap1, boxes, 1)
        assert torch.equal(model.embed_boxes(fmap1, boxes, 1), first)  # cached table, same values
        other_image = model.embed_boxes(fmap1, boxes, 0)
        other_map = model.embed_boxes(fmap2, boxes, 1)
        model.__dict__["_inference"].pop("last_table")
        assert torch.equal(model.embed_boxes(fmap1, boxes, 0), other_image)
        assert torch.equal(model.embed_boxes(fmap2, boxes, 1), other_map)
        assert not torch.equal(other_map, first)


def test_bf16_ranking_gives_up_when_scores_are_flat():
    """A seeded random model scores every candidate nearly alike: ranking would rescore them all."""
    from s2ccrop import api

    cropper = Cropper(weights="random", device="cpu", bf16_ranking=True)
    exact = Cropper(weights="random", device="cpu", bf16_ranking=False)
    calls = []
    original = cropper.score_features
    cropper.score_features = lambda *a, **k: calls.append(k.get("approximate", False)) or original(*a, **k)
    photos = [_photo(SIZES[i % 3], 60 + i) for i in range(6)]
    for photo in photos:
        assert [c.box for c in cropper.crop(photo, RATIOS)] == [c.box for c in exact.crop(photo, RATIOS)]
    assert cropper._ranking["on"] is False  # gave up after the trial...
    ranked_photos = calls.count(True)
    assert 1 <= ranked_photos < len(photos) and calls[-1] is False  # ...having ranked the first photos
    counts = [sum(map(len, cropper.candidates(cropper.prepare(ph), [Ratio.parse(r) for r in RATIOS]))) for ph in photos]
    assert ranked_photos == 1 + int(np.searchsorted(np.cumsum(counts), api.RANKING_TRIAL))  # the trial, in photos


def test_bf16_ranking_keeps_going_with_the_shipped_weights_choosing_the_best():
    fast = Cropper(device="cpu", bf16_ranking=True, selection="best")
    for seed, size in enumerate(SIZES):
        fast.crop(_photo(size, 70 + seed), RATIOS)
    assert fast._ranking["on"] and fast._ranking["rescored"] < 0.1 * fast._ranking["ranked"]


def test_averaging_needs_so_many_exact_scores_that_bf16_ranking_gives_up():
    """The shipped model averages: every candidate within AVERAGE_WINDOW of the best needs its exact
    score (~27 % of them on these photos), so after its trial the Cropper scores exactly throughout."""
    fast = Cropper(device="cpu", bf16_ranking=True)
    assert fast.selection == "average"
    for seed, size in enumerate(SIZES):
        fast.crop(_photo(size, 70 + seed), RATIOS)
    from s2ccrop import api

    assert not fast._ranking["on"] and fast._ranking["ranked"] >= api.RANKING_TRIAL


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("nodes", [1, 2, 3, 4])
def test_sum_of_products_is_the_reduction_bit_for_bit(dtype, nodes):
    from s2ccrop.model.graph import sum_of_products

    g = torch.Generator().manual_seed(nodes)
    weights = torch.randn(37, 2, nodes, 4, 1, generator=g).to(dtype)  # attention: [N, r, n, heads, 1]
    values = torch.randn(37, 1, nodes, 4, 64, generator=g).to(dtype)  # [N, 1, n, heads, d]
    mixing = torch.rand(37, 2, nodes, 1, generator=g).to(dtype)  # graph mixing: [N, r, n, 1] × [N, 1, n, d]
    rows = torch.randn(37, 1, nodes, 256, generator=g).to(dtype)
    for a, b in ((weights, values), (mixing, rows)):
        got, want = sum_of_products(a, b), (a * b).sum(2)
        if dtype == torch.float32 or nodes <= 2:
            assert torch.equal(got, want)
        else:  # bfloat16 partial sums: within two bfloat16 roundings of the float32-accumulated reduction
            assert torch.allclose(got.float(), want.float(), rtol=2 * 2**-8, atol=2 * 2**-8 * want.float().abs().max())


def test_bf16_ranking_averages_what_exact_scoring_averages():
    """With averaging, every candidate within AVERAGE_WINDOW of the best gets an exact score, so the
    averaged crop is the exact path's too."""
    fast = Cropper(device="cpu", bf16_ranking=True, selection="average")
    exact = Cropper(device="cpu", bf16_ranking=False, selection="average")
    for photo in [Image.open(p) for p in EXAMPLES] + [_photo(size, 60 + seed) for seed, size in enumerate(SIZES)]:
        a, b = fast.crop(photo, RATIOS), exact.crop(photo, RATIOS)
        assert [c.box for c in a] == [c.box for c in b]
        assert all(abs(x.score - y.score) < SCORE_TOL for x, y in zip(a, b))


# ---------------------------------------------------------------- int8 ranking (CPUs without AMX)

int8 = pytest.mark.skipif(not __import__("s2ccrop.model.s2cnet", fromlist=["x"]).int8_linear_is_available(),
                          reason="this torch has no x86/fbgemm quantised engine")


@int8
def test_int8_ranking_is_the_default_for_our_weights_where_bf16_is_not(monkeypatch):
    from s2ccrop.model.s2cnet import bf16_matmul_is_fast

    for key in ("S2CCROP_INT8", "S2CCROP_BF16"):
        monkeypatch.delenv(key, raising=False)
    want = "bf16" if bf16_matmul_is_fast() else "int8"
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Cropper(device="cpu", selection="best").model.ranking == want
    assert not caught  # torch's deprecation notices of eager quantisation would reach the CLI's stderr
    assert Cropper(device="cpu", bf16_ranking=False, selection="best").model.ranking == "int8"
    # the shipped model averages: its exact window covers most candidates, so no int8 ranking by default
    assert Cropper(device="cpu").selection == "average"
    assert Cropper(device="cpu", bf16_ranking=False).model.ranking is None
    assert Cropper(device="cpu", bf16_ranking=False, int8_ranking=True).model.ranking == "int8"
    assert Cropper(device="cpu", bf16_ranking=False, int8_ranking=False, selection="best").model.ranking is None
    assert Cropper(weights="random", device="cpu", bf16_ranking=False).model.ranking is None  # reference shape
    assert Cropper(weights="random", device="cpu", bf16_ranking=False, int8_ranking=True).model.ranking == "int8"
    monkeypatch.setenv("S2CCROP_INT8", "0")
    assert Cropper(device="cpu", bf16_ranking=False, selection="best").model.ranking is None
    monkeypatch.setenv("S2CCROP_INT8", "1")
    assert Cropper(weights="random", device="cpu", bf16_ranking=False).model.ranking == "int8"


@int8
def test_int8_scores_track_exact_within_the_margin():
    from s2ccrop.select import INT8_MARGIN

    fast = Cropper(device="cpu", bf16_ranking=False, int8_ranking=True)
    assert fast.model.ranking == "int8"
    for seed, size in enumerate(SIZES):
        p = fast.prepare(_photo(size, 80 + seed))
        groups = fast.candidates(p, [Ratio.parse(r) for r in RATIOS])
        boxes = np.concatenate(groups)
        with torch.inference_mode():
            fmap = fast.features([p])
            exact = fast.score_features(fmap, 0, p, boxes)
            approx = fast.score_features(fmap, 0, p, boxes, approximate=True)
        assert not np.array_equal(approx, exact)  # it did take the int8 path
        start = 0
        for g in groups:  # what decides a contender: the error's spread within one ratio
            err = approx[start : start + len(g)] - exact[start : start + len(g)]
            start += len(g)
            assert err.max() - err.min() < INT8_MARGIN / 1.5


@int8
@pytest.mark.parametrize("search", [False, True])
def test_int8_ranking_chooses_what_float32_scoring_chooses(search):
    fast = Cropper(device="cpu", bf16_ranking=False, int8_ranking=True, search=search, selection="best")
    exact = Cropper(device="cpu", bf16_ranking=False, int8_ranking=False, search=search, selection="best")
    for photo in [Image.open(p) for p in EXAMPLES] + [_photo(size, 90 + seed) for seed, size in enumerate(SIZES)]:
        a, b = fast.crop(photo, RATIOS), exact.crop(photo, RATIOS)
        if not search:  # every candidate ranked: the exact winner is always among the contenders
            assert [c.box for c in a] == [c.box for c in b]
        p = fast.prepare(photo)
        with torch.inference_mode():
            fmap = fast.features([p])
            for c in a:  # whatever is chosen, its score is the exact one
                assert abs(fast.score_features(fmap, 0, p, np.array([c.box], dtype=np.float64))[0] - c.score) < SCORE_TOL
    assert fast._ranking["on"] and fast._ranking["rescored"] < 0.2 * fast._ranking["ranked"]

"""RoI/RoD align: compiled CPU / CUDA kernels and the pure-PyTorch fallback against the SPEC §1 reference."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from s2ccrop import ops
from s2ccrop.ops import _extension, _fallback

try:
    from . import _align_reference as ref
except ImportError:
    import _align_reference as ref

EXT_LOADED, EXT_REASON = ops.extension_status()
HAS_CUDA = torch.cuda.is_available()

needs_ext = pytest.mark.skipif(not EXT_LOADED, reason=f"compiled ops not loaded: {EXT_REASON}")
needs_cuda_ext = pytest.mark.skipif(
    not (EXT_LOADED and _extension.WITH_CUDA and HAS_CUDA),
    reason="needs a CUDA device and an extension built with CUDA",
)
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")

KINDS = ("roi_align", "rod_align")


def _compiled(kind):
    return lambda f, r, ah, aw, s: getattr(torch.ops.s2ccrop, kind)(f, r, ah, aw, s)


def _fallback_op(kind):
    return getattr(_fallback, kind)


def _public(kind):
    return lambda f, r, ah, aw, s: getattr(ops, kind)(f, r, (ah, aw), s)


# (implementation, device): every path that must agree with the reference
IMPLS = [
    pytest.param(_fallback_op, "cpu", id="fallback-cpu"),
    pytest.param(_public, "cpu", id="public-cpu"),
    pytest.param(_compiled, "cpu", id="compiled-cpu", marks=needs_ext),
    pytest.param(_fallback_op, "cuda", id="fallback-cuda", marks=needs_cuda),
    pytest.param(_compiled, "cuda", id="compiled-cuda", marks=needs_cuda_ext),
]
GRAD_IMPLS = [
    pytest.param(_fallback_op, "cpu", id="fallback-cpu"),
    pytest.param(_compiled, "cpu", id="compiled-cpu", marks=needs_ext),
    pytest.param(_compiled, "cuda", id="compiled-cuda", marks=needs_cuda_ext),
]


def make_rois(batch: int, height: int, width: int, scale: float, seed: int, random_count: int = 10) -> torch.Tensor:
    """Boxes inside, across and outside the map, tiny, degenerate (x2 < x1), on exact edges; several batch indices."""
    gen = torch.Generator().manual_seed(seed)
    img_w, img_h = width / scale, height / scale
    px = 1 / scale  # one feature cell in input pixels
    fixed = [
        (0, 0, img_w, img_h),  # whole image: the last samples fall past the map
        (0, 0, img_w - px, img_h - px),  # last samples exactly on row/col H-1: hr = wr = 1
        (-3 * px, -2 * px, 2 * px, 3 * px),  # across the top-left corner
        (0.5 * img_w, 0.25 * img_h, 2 * img_w, 3 * img_h),  # across the bottom-right corner
        (img_w + 5 * px, 0, img_w + 9 * px, img_h),  # entirely right of the map
        (-9 * px, -9 * px, -5 * px, -5 * px),  # entirely above-left
        (0.3 * img_w, 0.3 * img_h, 0.3 * img_w + 0.01, 0.3 * img_h + 0.01),  # tiny
        (0.6 * img_w, 0.6 * img_h, 0.4 * img_w, 0.2 * img_h),  # degenerate: x2 < x1, y2 < y1
        (0.5 * img_w, 0.5 * img_h, 0.5 * img_w - 0.5 * px, 0.5 * img_h - 0.5 * px),  # x2 < x1 by half a cell
        (px, px, 2 * px, 2 * px),  # integer cells: RoD samples on the box edges
    ]
    rows = [(k % batch, *box) for k, box in enumerate(fixed)]
    for _ in range(random_count):
        u = torch.rand(5, generator=gen).tolist()
        x1 = (u[0] * 1.5 - 0.3) * img_w
        y1 = (u[1] * 1.5 - 0.3) * img_h
        w = (u[2] * 1.2 - 0.2) * img_w
        h = (u[3] * 1.2 - 0.2) * img_h
        rows.append((u[4] * batch * 0.999, x1, y1, x1 + w, y1 + h))  # fractional index: truncated
    return torch.tensor(rows, dtype=torch.float32)


def make_features(batch, channels, height, width, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=gen).to(dtype)


CASES = [
    # batch, channels, H, W, ah, aw, scale
    (2, 3, 10, 13, 5, 5, 1 / 16),
    (3, 2, 7, 5, 4, 9, 1 / 16),
    (1, 2, 2, 2, 3, 3, 1 / 16),  # the smallest map
    (2, 2, 2, 6, 6, 2, 0.5),
    (2, 2, 9, 4, 10, 10, 1.0),
]


@pytest.mark.parametrize("impl, device", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "B{}C{}H{}W{}_{}x{}_s{:g}".format(*c))
def test_matches_reference(impl, device, kind, case):
    batch, channels, height, width, ah, aw, scale = case
    features = make_features(batch, channels, height, width, seed=height * width)
    rois = make_rois(batch, height, width, scale, seed=ah * aw)
    expected = getattr(ref, kind)(features, rois, ah, aw, scale)
    out = impl(kind)(features.to(device), rois.to(device), ah, aw, scale)
    assert out.shape == (rois.shape[0], channels, ah, aw)
    assert out.dtype == features.dtype
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=1e-4)
    # the fixed boxes exercise both zeroing rules: some outputs must be zero, most not
    assert 0 < int((expected == 0).sum()) < expected.numel()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
@pytest.mark.parametrize("size", [9, 15])
@pytest.mark.parametrize("kind", KINDS)
def test_avg_variants_match_reference(device, kind, size):
    features = make_features(2, 8, 12, 16, seed=size)
    rois = make_rois(2, 12, 16, 1 / 16, seed=size, random_count=4)
    expected = getattr(ref, f"{kind}_avg")(features, rois, size, 1 / 16)
    out = getattr(ops, f"{kind}_avg")(features.to(device), rois.to(device), size, 1 / 16)
    assert out.shape == (rois.shape[0], 8, size, size)
    torch.testing.assert_close(out.cpu(), expected, rtol=0, atol=1e-4)


@needs_ext
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("size", [10, 16])
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_cpu_equals_fallback_bitwise(kind, size, dtype):
    """Many boxes on the model's map shape ([B, 8, 16, 24]), at its output size (a + 1 = 10) and at 16:
    the compiled CPU kernel and the fallback compute every sample in the same order and precision
    (see _fallback), so their outputs are the same to the bit."""
    features = make_features(2, 8, 16, 24, seed=size, dtype=dtype)
    rois = make_rois(2, 16, 24, 1 / 16, seed=size, random_count=300)
    compiled = _compiled(kind)(features, rois, size, size, 1 / 16)
    fallback = _fallback_op(kind)(features, rois, size, size, 1 / 16)
    assert compiled.shape == (rois.shape[0], 8, size, size) and compiled.dtype == dtype
    assert 0 < int((fallback == 0).sum()) < fallback.numel()
    assert torch.equal(compiled, fallback)


@needs_ext
@pytest.mark.parametrize("kind", KINDS)
def test_public_api_uses_compiled_ops_when_loaded(kind, monkeypatch):
    def fail(*args):
        raise AssertionError("the fallback ran although the compiled ops are loaded")

    monkeypatch.setattr(_fallback, kind, fail)
    features = make_features(1, 2, 6, 6, seed=0)
    rois = make_rois(1, 6, 6, 1 / 16, seed=0, random_count=0)
    getattr(ops, kind)(features, rois, 3, 1 / 16)


@pytest.mark.parametrize("impl, device", GRAD_IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck_float64(impl, device, kind):
    features = make_features(2, 2, 5, 6, seed=1, dtype=torch.float64).to(device).requires_grad_()
    rois = make_rois(2, 5, 6, 1 / 16, seed=2, random_count=2).to(device, torch.float64)
    op = impl(kind)
    assert torch.autograd.gradcheck(lambda f: op(f, rois, 4, 3, 1 / 16), (features,))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda_ext)])
@needs_ext
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_gradgradcheck(device, kind):
    features = make_features(1, 2, 4, 5, seed=3, dtype=torch.float64).to(device).requires_grad_()
    rois = make_rois(1, 4, 5, 1 / 16, seed=4, random_count=1).to(device, torch.float64)
    op = _compiled(kind)
    assert torch.autograd.gradgradcheck(lambda f: op(f, rois, 3, 3, 1 / 16), (features,))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda_ext)])
@needs_ext
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_backward_equals_fallback_backward(device, kind):
    features = make_features(2, 3, 8, 9, seed=5).to(device)
    rois = make_rois(2, 8, 9, 1 / 16, seed=6).to(device)
    grad = torch.randn(rois.shape[0], 3, 6, 7, generator=torch.Generator().manual_seed(7)).to(device)
    grads = []
    for op in (_compiled(kind), _fallback_op(kind)):
        f = features.clone().requires_grad_()
        op(f, rois, 6, 7, 1 / 16).backward(grad)
        grads.append(f.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-4)


@needs_ext
@pytest.mark.parametrize("kind", KINDS)
def test_opcheck(kind):
    features = make_features(2, 3, 6, 7, seed=8).requires_grad_()
    rois = make_rois(2, 6, 7, 1 / 16, seed=9, random_count=2)
    torch.library.opcheck(getattr(torch.ops.s2ccrop, kind).default, (features, rois, 4, 5, 1 / 16))
    grad = torch.randn(rois.shape[0], 3, 4, 5)
    backward = getattr(torch.ops.s2ccrop, f"{kind}_backward").default
    torch.library.opcheck(backward, (grad, rois, 4, 5, 1 / 16, 2, 3, 6, 7))


@needs_cuda_ext
@pytest.mark.parametrize("kind", KINDS)
def test_opcheck_cuda(kind):
    features = make_features(2, 3, 6, 7, seed=8).cuda().requires_grad_()
    rois = make_rois(2, 6, 7, 1 / 16, seed=9, random_count=2).cuda()
    torch.library.opcheck(getattr(torch.ops.s2ccrop, kind).default, (features, rois, 4, 5, 1 / 16))


@needs_cuda_ext
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_reduced_precision(kind, dtype):
    features = make_features(2, 3, 10, 13, seed=10)
    rois = make_rois(2, 10, 13, 1 / 16, seed=11)
    expected = getattr(ref, kind)(features.to(dtype).float(), rois, 5, 5, 1 / 16)
    f = features.to("cuda", dtype).requires_grad_()
    out = _compiled(kind)(f, rois.cuda(), 5, 5, 1 / 16)
    assert out.dtype == dtype
    torch.testing.assert_close(out.float().cpu(), expected, rtol=2e-2, atol=2e-2)
    out.float().sum().backward()
    assert f.grad.dtype == dtype


# ---------------------------------------------------------------- empty input, no in-place edits


@pytest.mark.parametrize("impl, device", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_empty_rois_give_empty_output(impl, device, kind):
    features = make_features(2, 4, 5, 6, seed=0).to(device).requires_grad_()
    rois = torch.zeros(0, 5, device=device)
    out = impl(kind)(features, rois, 3, 4, 1 / 16)
    assert out.shape == (0, 4, 3, 4)
    out.sum().backward()
    assert torch.equal(features.grad, torch.zeros_like(features))


@pytest.mark.parametrize("impl, device", GRAD_IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_inputs_are_not_modified(impl, device, kind):
    features = make_features(2, 3, 6, 7, seed=12).to(device).requires_grad_()
    rois = make_rois(2, 6, 7, 1 / 16, seed=13).to(device)
    features_before, rois_before = features.detach().clone(), rois.clone()
    grad = torch.randn(rois.shape[0], 3, 4, 4, device=device)
    grad_before = grad.clone()
    impl(kind)(features, rois, 4, 4, 1 / 16).backward(grad)
    assert torch.equal(features.detach(), features_before)
    assert torch.equal(rois, rois_before)
    assert torch.equal(grad, grad_before)


@pytest.mark.parametrize("impl, device", GRAD_IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_non_contiguous_inputs(impl, device, kind):
    features = make_features(2, 3, 7, 6, seed=14).to(device)
    rois = make_rois(2, 6, 7, 1 / 16, seed=15).to(device)
    transposed = features.transpose(2, 3)  # [2, 3, 6, 7], not contiguous
    padded_rois = torch.cat([rois, rois], dim=1)[:, :5]
    assert not transposed.is_contiguous() and not padded_rois.is_contiguous()
    out = impl(kind)(transposed, padded_rois, 4, 5, 1 / 16)
    torch.testing.assert_close(out.cpu(), getattr(ref, kind)(transposed.cpu(), rois.cpu(), 4, 5, 1 / 16), rtol=0, atol=1e-4)


# ---------------------------------------------------------------- error paths


def _good_inputs():
    return make_features(2, 3, 6, 7, seed=0), make_features(1, 1, 1, 5, seed=0).reshape(1, 5).abs()


BAD_INPUTS = {
    "rois not [K, 5]": (lambda f, r: (f, r[:, :4]), r"rois must be \[K, 5\]"),
    "rois 1-d": (lambda f, r: (f, r[0]), r"rois must be \[K, 5\]"),
    "features 3-d": (lambda f, r: (f[0], r), r"features must be \[B, C, H, W\]"),
    "map 1 pixel high": (lambda f, r: (f[:, :, :1], r), r"at least 2x2"),
    "batch index too large": (lambda f, r: (f, torch.tensor([[2.0, 0, 0, 10, 10]])), r"batch index"),
    "batch index negative": (lambda f, r: (f, torch.tensor([[-1.0, 0, 0, 10, 10]])), r"batch index"),
    "batch index NaN": (lambda f, r: (f, torch.tensor([[float("nan"), 0, 0, 10, 10]])), r"batch index"),
    "integer features": (lambda f, r: (f.long(), r), r"floating point"),
}


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=list(BAD_INPUTS))
@pytest.mark.parametrize("kind", KINDS)
def test_public_api_rejects_bad_input(kind, bad):
    make, message = BAD_INPUTS[bad]
    features, rois = make(*_good_inputs())
    with pytest.raises(ValueError, match=message):
        getattr(ops, kind)(features, rois, 3, 1 / 16)


@needs_ext
@pytest.mark.parametrize("bad", BAD_INPUTS, ids=list(BAD_INPUTS))
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_op_rejects_bad_input(kind, bad):
    make, message = BAD_INPUTS[bad]
    features, rois = make(*_good_inputs())
    with pytest.raises(RuntimeError, match=message):
        getattr(torch.ops.s2ccrop, kind)(features, rois, 3, 3, 1 / 16)


@needs_ext
@pytest.mark.parametrize("kind", KINDS)
def test_compiled_op_rejects_small_output(kind):
    features, rois = _good_inputs()
    with pytest.raises(RuntimeError, match=r"output size must be at least 2"):
        getattr(torch.ops.s2ccrop, kind)(features, rois, 1, 3, 1 / 16)


@pytest.mark.parametrize("size", [1, 0, (3, 1), (2, 2, 2), "3", 2.5, True])
@pytest.mark.parametrize("name", ["roi_align", "rod_align"])
def test_public_api_rejects_bad_output_size(name, size):
    features, rois = _good_inputs()
    with pytest.raises(ValueError, match="output_size"):
        getattr(ops, name)(features, rois, size, 1 / 16)


@pytest.mark.parametrize("name", ["roi_align_avg", "rod_align_avg"])
def test_avg_accepts_one_and_rejects_zero(name):
    features, rois = _good_inputs()
    assert getattr(ops, name)(features, rois, 1, 1 / 16).shape == (1, 3, 1, 1)
    with pytest.raises(ValueError, match="output_size"):
        getattr(ops, name)(features, rois, 0, 1 / 16)


# ---------------------------------------------------------------- loading


def _status_in_subprocess(**env_overrides) -> tuple[bool, str]:
    env = {**os.environ, **env_overrides}
    code = "from s2ccrop.ops import extension_status; loaded, reason = extension_status(); print(loaded); print(reason)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    loaded, reason = result.stdout.strip().splitlines()
    return loaded == "True", reason


def test_no_ext_env_var_forces_fallback():
    loaded, reason = _status_in_subprocess(S2CCROP_NO_EXT="1")
    assert not loaded
    assert "S2CCROP_NO_EXT" in reason


def test_extension_status_explains_itself():
    loaded, reason = ops.extension_status()
    assert isinstance(loaded, bool) and reason
    assert ("loaded" in reason) == loaded or not loaded


# ---------------------------------------------------------------- bilinear_u8 (the model input's resize)


def _resize_case(size, out, seed):
    """(args of ops.bilinear_u8 for a noise photo of `size` (w, h) resized to `out` (w, h), the photo)."""
    import numpy as np

    from s2ccrop.preprocess import _linear_taps

    (w, h), (ow, oh) = size, out
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    r0, r1, wy = _linear_taps(oh, h)
    c0, c1, wx = _linear_taps(ow, w)
    args = (torch.from_numpy(pixels), torch.from_numpy(np.stack([r0, r1])), torch.from_numpy(np.stack([c0, c1])),
            torch.from_numpy(wy), torch.from_numpy(wx))
    return args, pixels


def _slow_bilinear(pixels, rows, cols, wy, wx):
    """One value at a time in float32 numpy scalars: a + t * (b - a) across, then down."""
    import numpy as np

    f32 = np.float32
    h, w = rows.shape[1], cols.shape[1]
    out = np.zeros((3, h, w), np.float32)
    for i in range(h):
        for j in range(w):
            for c in range(3):
                a0, b0 = f32(pixels[rows[0, i], cols[0, j], c]), f32(pixels[rows[0, i], cols[1, j], c])
                a1, b1 = f32(pixels[rows[1, i], cols[0, j], c]), f32(pixels[rows[1, i], cols[1, j], c])
                s, t = f32(wx[j]), f32(wy[i])
                upper, lower = f32(a0 + f32(s * f32(b0 - a0))), f32(a1 + f32(s * f32(b1 - a1)))
                out[c, i, j] = f32(upper + f32(t * f32(lower - upper)))
    return out[None]


@pytest.mark.parametrize("size, out", [((37, 23), (16, 10)), ((10, 7), (32, 32)), ((64, 48), (64, 48))])
def test_bilinear_u8_is_the_slow_formula_bit_for_bit(size, out):
    args, _ = _resize_case(size, out, 3)
    want = torch.from_numpy(_slow_bilinear(*(a.numpy() for a in args)))
    assert torch.equal(_fallback.bilinear_u8(*args), want)
    assert torch.equal(ops.bilinear_u8(*args), want)


@pytest.mark.parametrize("threads", [1, 2])
def test_bilinear_u8_does_not_depend_on_threads_or_the_extension(threads):
    args, _ = _resize_case((1023, 683), (384, 256), 5)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = ops.bilinear_u8(*args)
    finally:
        torch.set_num_threads(before)
    assert got.shape == (1, 3, 256, 384) and got.dtype == torch.float32
    assert torch.equal(got, _fallback.bilinear_u8(*args))
    x = args[0].permute(2, 0, 1).unsqueeze(0).float()
    assert torch.allclose(got, torch.nn.functional.interpolate(x, (256, 384), mode="bilinear", align_corners=False), atol=1e-3)


@needs_ext
def test_bilinear_u8_checks_its_inputs():
    args, _ = _resize_case((20, 10), (8, 4), 1)
    with pytest.raises(RuntimeError, match="uint8"):
        torch.ops.s2ccrop.bilinear_u8(args[0].float(), *args[1:])
    bad_rows = args[1].clone()
    bad_rows[0, 0] = 99
    with pytest.raises(RuntimeError, match="row tap out of range"):
        torch.ops.s2ccrop.bilinear_u8(args[0], bad_rows, *args[2:])


# ---------------------------------------------------------------- qadd, dequantize (the int8 backbone's sums and outputs)


def _quint8(shape, scale, zero_point, seed, channels_last=True):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    if channels_last:
        q = q.contiguous(memory_format=torch.channels_last)
    return torch._make_per_tensor_quantized_tensor(q, scale, zero_point)


def _slow_qadd(a, b, scale, zero_point):
    """One value at a time in float32 numpy scalars, as the op's docstring reads."""
    import numpy as np

    f32 = np.float32
    ia, ib = a.int_repr().flatten().numpy(), b.int_repr().flatten().numpy()
    out = np.empty(ia.shape, np.uint8)
    for i in range(len(ia)):
        fa = f32(int(ia[i]) - a.q_zero_point()) * f32(a.q_scale())
        fb = f32(int(ib[i]) - b.q_zero_point()) * f32(b.q_scale())
        q = f32(np.rint(f32(f32(fa + fb) / f32(scale)))) + f32(zero_point)
        out[i] = min(max(q, 0), 255)
    return out.reshape(a.shape)


@pytest.mark.parametrize("channels_last", [True, False])
def test_qadd_and_dequantize_are_the_slow_formula_bit_for_bit(channels_last):
    a = _quint8((1, 5, 7, 9), 0.0696, 141, 1, channels_last)
    b = _quint8((1, 5, 7, 9), 0.0413, 118, 2, channels_last)
    want = torch.from_numpy(_slow_qadd(a, b, 0.0811, 130))
    for fn in (ops.qadd, _fallback.qadd):
        got = fn(a, b, 0.0811, 130)
        assert got.is_quantized and got.q_scale() == pytest.approx(0.0811) and got.q_zero_point() == 130
        assert torch.equal(got.int_repr().contiguous(), want)
    float_want = (a.int_repr().to(torch.int32) - 141).to(torch.float32) * torch.tensor(0.0696, dtype=torch.float32)
    assert torch.equal(ops.dequantize(a), float_want) and torch.equal(_fallback.dequantize(a), float_want)
    if channels_last:  # the next layer reads channels-last: the sum keeps it
        assert ops.qadd(a, b, 0.0811, 130).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("threads", [1, 2])
def test_qadd_does_not_depend_on_threads_or_the_extension(threads):
    a = _quint8((1, 24, 96, 64), 0.05, 120, 3)
    b = _quint8((1, 24, 96, 64), 0.07, 131, 4)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = ops.qadd(a, b, 0.09, 125)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(got.int_repr(), _fallback.qadd(a, b, 0.09, 125).int_repr())
    # and within one step of torch's own quantized add (which rounds differently in places)
    theirs = torch.ops.quantized.add(a, b, 0.09, 125)
    assert (got.int_repr().int() - theirs.int_repr().int()).abs().max() <= 1

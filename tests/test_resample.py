"""The output resampler (issue 31): the extension's `lanczos_u8` gives Pillow's Lanczos resize pixel for
pixel, so a thumbnail does not depend on whether the extension was built.

Checked against a slow, plain reading of Pillow's fixed-point algorithm (both pass orders: Pillow 13's
and the one before it), and against the installed Pillow itself through `render_crop`."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from s2ccrop.io.render import REDUCING_GAP, compiled_resize, render_crop

torch = pytest.importorskip("torch")
from s2ccrop.ops import compiled_function, extension_status  # noqa: E402

LANCZOS_U8 = compiled_function("lanczos_u8")
needs_extension = pytest.mark.skipif(LANCZOS_U8 is None, reason=f"no compiled resampler: {extension_status()[1]}")


# ---------------------------------------------------------------- the plain reading


def _lanczos(x: float) -> float:
    def sinc(v: float) -> float:
        return 1.0 if v == 0.0 else math.sin(v * math.pi) / (v * math.pi)

    return sinc(x) * sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


def _taps(n: int, a: float, b: float, out: int) -> list[tuple[int, list[int]]]:
    """Per output pixel: the first input and the 22-bit fixed-point weights (Pillow's precompute_coeffs
    and normalize_coeffs_8bpc, the box as float32)."""
    a32, b32 = np.float32(a), np.float32(b)
    scale = float(b32 - a32) / out
    filterscale = max(1.0, scale)
    support = 3.0 * filterscale
    taps = []
    for i in range(out):
        center = float(a32) + (i + 0.5) * scale
        lo, hi = max(0, int(center - support + 0.5)), min(n, int(center + support + 0.5))
        w = [_lanczos((k + lo - center + 0.5) * (1.0 / filterscale)) for k in range(hi - lo)]
        total = sum(w)
        w = [v / total if total != 0.0 else v for v in w]
        taps.append((lo, [int(-0.5 + v * (1 << 22)) if v < 0 else int(0.5 + v * (1 << 22)) for v in w]))
    return taps


def _pass(lines: np.ndarray, taps, first: int = 0) -> np.ndarray:
    """Filter along axis 0: one output line per tap list, clipped to 8 bits."""
    out = []
    for lo, w in taps:
        acc = np.full(lines.shape[1:], 1 << 21, dtype=np.int64)
        for k, wk in enumerate(w):
            acc += wk * lines[lo - first + k].astype(np.int64)
        out.append(np.clip(acc >> 22, 0, 255))
    return np.array(out, dtype=np.uint8)


def reference(pixels: np.ndarray, box, size, vertical_first_rule: bool) -> np.ndarray:
    """Pillow's Lanczos resize of `box` of `pixels` [H, W, C] to `size`, read plainly."""
    H, W = pixels.shape[:2]
    (x1, y1, x2, y2), (w, h) = [float(np.float32(v)) for v in box], size
    horizontal = w != W or x1 != 0 or x2 != w
    vertical = h != H or y1 != 0 or y2 != h
    vt, ht = _taps(H, y1, y2, h), _taps(W, x1, x2, w)
    if vertical_first_rule and H - h > 0 and H - h > (W - w) * 2:
        down = _pass(pixels, vt) if vertical else pixels
        return _pass(down.swapaxes(0, 1), ht).swapaxes(0, 1) if horizontal else down
    first = vt[0][0] if horizontal else 0
    rows = pixels[first: vt[-1][0] + len(vt[-1][1])] if horizontal else pixels
    across = _pass(rows.swapaxes(0, 1), ht).swapaxes(0, 1) if horizontal else rows
    return _pass(across, vt, first) if vertical else across


def _case(rng, max_side: int = 40):
    W, H = int(rng.integers(1, max_side)), int(rng.integers(1, max_side))
    x1, y1 = rng.uniform(0, W), rng.uniform(0, H)
    x2, y2 = rng.uniform(x1, W), rng.uniform(y1, H)
    if rng.random() < 0.2:
        x1, y1, x2, y2 = 0.0, 0.0, float(W), float(H)
    elif rng.random() < 0.2:
        x1, x2 = float(int(x1)), float(int(x2))
    return (W, H), (x1, y1, x2, y2), (int(rng.integers(1, max_side)), int(rng.integers(1, max_side)))


# ---------------------------------------------------------------- the kernel


@needs_extension
@pytest.mark.parametrize("vertical_first_rule", [True, False])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_kernel_computes_pillows_fixed_point_lanczos(channels, vertical_first_rule):
    rng = np.random.default_rng(channels * 10 + vertical_first_rule)
    orders = set()
    for _ in range(150):
        (W, H), box, size = _case(rng)
        pixels = rng.integers(0, 256, (H, W, channels), dtype=np.uint8)
        got = LANCZOS_U8(pixels.tobytes(), (0, 0, W, H), (W, H), channels, box, *size, vertical_first_rule)
        want = reference(pixels, box, size, vertical_first_rule)
        got = np.frombuffer(got, np.uint8).reshape(size[1], size[0], channels)
        assert got.tolist() == want.tolist(), (W, H, box, size)
        orders.add(H - size[1] > 0 and H - size[1] > (W - size[0]) * 2)
    assert orders == {True, False}  # both pass orders came up


@needs_extension
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_render_crop_gives_the_installed_pillows_pixels(mode):
    """What a user sees: the thumbnail is Pillow's resize, enlarging and shrinking, boxes of any
    fraction, both pass orders; the compiled resampler made them (not Pillow's fallback)."""
    rng = np.random.default_rng(7 if mode == "RGB" else 8)
    compiled = 0
    for _ in range(200):
        (W, H), box, size = _case(rng, max_side=300)
        image = Image.fromarray(rng.integers(0, 256, (H, W, 3) if mode == "RGB" else (H, W), dtype=np.uint8), mode)
        want = image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
        got = render_crop(image, box, size)
        assert (got.mode, got.size, got.tobytes()) == (mode, size, want.tobytes()), (W, H, box, size)
        compiled += compiled_resize(image, box, size) is not None
    assert compiled >= 150  # all but the boxes Pillow first reduces (3x the output or more)


def test_other_modes_and_reduced_boxes_are_pillows_own():
    rng = np.random.default_rng(3)
    rgba = Image.fromarray(rng.integers(0, 256, (50, 60, 4), dtype=np.uint8), "RGBA")
    assert compiled_resize(rgba, (1.5, 2.0, 40.0, 30.0), (20, 10)) is None
    rgb = rgba.convert("RGB")
    assert compiled_resize(rgb, (0.0, 0.0, 60.0, 50.0), (9, 8)) is None  # 6.7x: Pillow reduces first
    for image in (rgba, rgb):
        want = image.resize((9, 8), Image.Resampling.LANCZOS, box=(0.0, 0.0, 60.0, 50.0), reducing_gap=REDUCING_GAP)
        assert render_crop(image, (0.0, 0.0, 60.0, 50.0), (9, 8)).tobytes() == want.tobytes()


@needs_extension
def test_a_photo_sized_thumbnail_is_pillows_too():
    """A 12-MP photo's 1/2 decode to a 640-px 9:16 thumbnail and a 1/4 decode to 16:9 (the two orders)."""
    rng = np.random.default_rng(11)
    for (W, H), box, size in [((2016, 1512), (583.1, 0.0, 1433.6, 1512.0), (640, 1138)),
                              ((756, 1008), (0.0, 291.5, 756.0, 716.75), (640, 360))]:
        base = rng.integers(0, 256, (H // 8 + 1, W // 8 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(base).resize((W, H), Image.Resampling.BILINEAR)
        want = image.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
        assert compiled_resize(image, box, size).tobytes() == want.tobytes()


@needs_extension
@pytest.mark.parametrize("channels", [1, 3])
def test_ringing_past_black_and_white_is_clipped_as_pillow_clips_it(channels):
    """Hard black/white edges make Lanczos overshoot below 0 and above 255; each sum is clipped to 8
    bits after its shift. Lines long enough that most outputs are made in full vector blocks, and
    a few widths that leave a remainder of every size."""
    clipped = set()
    for W, H, size in [(203, 97, (71, 130)), (64, 64, (96, 40)), (131, 259, (67, 61)), (37, 300, (300, 37))]:
        # 9 x 7 black and white blocks: every case here overshoots to between -52 and 307 before the clip
        blocks = np.where((np.arange(W)[None, :] // 9 + np.arange(H)[:, None] // 7) % 2, 255, 0)
        pixels = np.repeat(blocks[:, :, None], channels, axis=2).astype(np.uint8)
        for box in [(0.0, 0.0, float(W), float(H)), (3.3, 1.7, W - 2.2, H - 5.9)]:
            for rule in (True, False):
                got = LANCZOS_U8(pixels.tobytes(), (0, 0, W, H), (W, H), channels, box, *size, rule)
                want = reference(pixels, box, size, rule)
                assert np.frombuffer(got, np.uint8).reshape(want.shape).tolist() == want.tolist(), (W, H, box, rule)
                clipped |= {v for v in (0, 255) if (want == v).any()}
    assert clipped == {0, 255}


@needs_extension
def test_the_kernel_reads_only_the_part_of_the_image_it_is_given():
    """Given the box widened by the filter's reach, the same pixels as from the whole image; given
    less, a ValueError (never a read outside the buffer)."""
    rng = np.random.default_rng(21)
    pixels = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    box, size = (30.25, 20.5, 70.75, 60.0), (17, 23)  # shrinks 2.4 and 1.7 times: reaches 7.1 and 5.2 px
    whole = LANCZOS_U8(pixels.tobytes(), (0, 0, 120, 90), (120, 90), 3, box, *size, True)
    x, y, x2, y2 = 22, 14, 79, 66
    part = np.ascontiguousarray(pixels[y:y2, x:x2])
    assert LANCZOS_U8(part.tobytes(), (x, y, x2 - x, y2 - y), (120, 90), 3, box, *size, True) == whole
    assert whole == np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS, box=box)).tobytes()
    short = np.ascontiguousarray(pixels[y:y2, x + 4:x2])
    with pytest.raises(ValueError, match="do not hold all"):
        LANCZOS_U8(short.tobytes(), (x + 4, y, x2 - x - 4, y2 - y), (120, 90), 3, box, *size, True)


WHOLE = (0, 0, 2, 2)


@needs_extension
@pytest.mark.parametrize("args, message", [
    ((b"\0" * 12, WHOLE, (2, 2), 3, (0.0, 0.0, 2.0, 2.0), 1, 1, True), None),
    ((b"\0" * 12, WHOLE, (2, 2), 4, (0.0, 0.0, 2.0, 2.0), 1, 1, True), "channels must be 1 or 3"),
    ((b"\0" * 11, WHOLE, (2, 2), 3, (0.0, 0.0, 2.0, 2.0), 1, 1, True), "not held_w x held_h x channels"),
    ((b"\0" * 12, (1, 0, 2, 2), (2, 2), 3, (0.0, 0.0, 2.0, 2.0), 1, 1, True), "not held_w x held_h x channels"),
    ((b"\0" * 12, WHOLE, (2, 2), 3, (0.0, 0.0, 2.0, 2.0), 0, 1, True), "output size must be positive"),
    ((b"\0" * 12, WHOLE, (2, 2), 3, (0.0, 0.0, 2.5, 2.0), 1, 1, True), "box must lie inside"),
    ((b"\0" * 12, WHOLE, (2, 2), 3, (-0.5, 0.0, 2.0, 2.0), 1, 1, True), "box must lie inside"),
    ((b"\0" * 12, WHOLE, (2, 2), 3, (1.5, 0.0, 1.0, 2.0), 1, 1, True), "box must lie inside"),
])
def test_the_kernel_refuses_what_it_cannot_resize(args, message):
    if message is None:
        assert LANCZOS_U8(*args) == b"\0" * 3
        return
    with pytest.raises(ValueError, match=message):
        LANCZOS_U8(*args)

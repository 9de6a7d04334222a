"""Reliability and security (issue 7): whatever a folder holds, nothing is lost and nothing untrusted runs.

Every input is generated here: a corpus of awkward and broken files goes through the real entry point
(`python -m s2ccrop`) in one batch. Each photo must get upright crops of the exact ratio, each broken
input exactly one error line naming it, the batch must finish with exit status 1, no traceback may
reach the user, and no input may change. The model is the seeded untrained one (`--weights random`):
these tests are about the plumbing, not the choice of crop.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from s2ccrop import batch, cli
from s2ccrop.batch import BatchRun
from s2ccrop.io import paths as paths_mod
from s2ccrop.io.paths import InputPath, iter_inputs, walk_folder
from s2ccrop.types import Ratio

try:
    from ._cli_helpers import CountingLines, FastCropper, run_in_process
except ImportError:
    from _cli_helpers import CountingLines, FastCropper, run_in_process
from conftest import photo_image

ROOT = Path(__file__).resolve().parent.parent
RATIOS = ["1:1", "16:9", "9:16", "any"]
QUADRANTS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0))  # top-left, top-right, bottom-left, bottom-right

T = Image.Transpose
# How to store an upright picture so that a viewer applying EXIF orientation k shows it upright again.
STORE_FOR_ORIENTATION = {1: None, 2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
                         6: T.ROTATE_90, 7: T.TRANSVERSE, 8: T.ROTATE_270}


# ------------------------------------------------------------------ helpers


def subprocess_env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "S2CCROP_CACHE": str(tmp_path / ".cache"),
            "PYTHONDONTWRITEBYTECODE": "1"}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("s2ccrop: error:")]


def quadrant_picture(w: int = 48, h: int = 32) -> Image.Image:
    """Four colours, one per quadrant: any wrong flip or rotation puts the wrong colour somewhere."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2] = QUADRANTS[0]
    arr[: h // 2, w // 2 :] = QUADRANTS[1]
    arr[h // 2 :, : w // 2] = QUADRANTS[2]
    arr[h // 2 :, w // 2 :] = QUADRANTS[3]
    return Image.fromarray(arr)


def png_header_only(width: int, height: int) -> bytes:
    """A valid-looking PNG that declares width x height but holds almost no data (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry below `root` (not following links): kind, size, mtime_ns and sha256 of regular files."""
    state = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            digest = None
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as fh:
                    digest = hashlib.sha256(fh.read()).hexdigest()
            link = os.readlink(path) if os.path.islink(path) else None
            state[os.path.relpath(path, root)] = (st.st_mode, st.st_size, st.st_mtime_ns, digest, link)
    return state


def check_ratio(box: list[int], ratio: str, size: tuple[int, int]) -> None:
    """The box lies inside the upright image and, for W:H, has that ratio within a pixel of rounding."""
    x1, y1, x2, y2 = box
    W, H = size
    assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H, (box, size)
    if ratio == "any":
        return
    r = Ratio.parse(ratio).width / Ratio.parse(ratio).height
    w, h = x2 - x1, y2 - y1
    assert min(abs(w - h * r), abs(h - w / r)) <= 1, (box, ratio, size)


# ------------------------------------------------------------------ the corpus


def build_corpus(root: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Write the awkward inputs under root. Returns (good: rel -> expectations, bad: rel -> error text)."""
    root.mkdir(parents=True)
    good: dict[str, dict] = {}
    bad: dict[str, str] = {}

    def add(name: str, img: Image.Image, upright: Image.Image | None = None, **save) -> Path:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, **save)
        up = upright if upright is not None else img
        good[name] = {"size": up.size, "upright": up}
        return path

    # Broken files.
    (root / "empty.jpg").write_bytes(b"")
    bad["empty.jpg"] = "not an image file"
    (root / "text.jpg").write_text("I am a text file wearing a .jpg name\n")
    bad["text.jpg"] = "not an image file"
    buf = io.BytesIO()
    photo_image((64, 48), kind="noise").save(buf, "JPEG")
    (root / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    bad["truncated.jpg"] = "truncated"
    (root / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    bad["bomb.png"] = "100000x100000 = 10000.0 MP, above the limit of 150.0 MP"
    os.mkfifo(root / "fifo.jpg")  # unreadable in practice: open() would wait forever for a writer
    bad["fifo.jpg"] = "not a regular file"
    os.symlink("nowhere.jpg", root / "dangling.jpg")
    bad["dangling.jpg"] = "no such file or directory"
    os.symlink("loop.jpg", root / "loop.jpg")
    bad["loop.jpg"] = "too many levels of symbolic links"

    # Odd but valid photos.
    add("tiny.png", photo_image((1, 1), kind="noise"))
    add("wide.png", photo_image((3000, 4), seed=1, kind="noise"))
    add("tall.png", photo_image((4, 700), seed=2, kind="noise"))
    cmyk = Image.new("CMYK", (40, 30), (0, 255, 255, 0))  # red
    add("cmyk.jpg", cmyk, upright=Image.new("RGB", (40, 30), (255, 0, 0)))
    grey16 = Image.fromarray(np.full((30, 40), 40_000, np.uint16))
    add("grey16.png", grey16, upright=Image.new("L", (40, 30), 40_000 >> 8))
    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    add("palette.png", pal, upright=Image.new("RGB", (40, 30), (10, 200, 30)))
    add("palette_transparent.gif", pal, upright=Image.new("RGBA", (40, 30), (10, 200, 30, 0)), transparency=1)
    add("alpha.png", photo_image((40, 30), seed=3, kind="noise", mode="RGBA"))
    add("grey_alpha.png", photo_image((40, 30), seed=4, kind="noise", mode="LA"))
    frames = [Image.new("RGB", (40, 30), c) for c in ((250, 0, 0), (0, 0, 250), (0, 250, 0))]
    for fmt in ("gif", "webp"):
        add(f"animated.{fmt}", frames[0], upright=frames[0], save_all=True, append_images=frames[1:],
            duration=40, loop=0)

    # All eight EXIF orientations of one upright picture.
    upright = quadrant_picture()
    for o, store in STORE_FOR_ORIENTATION.items():
        exif = Image.Exif()
        exif[0x0112] = o
        stored = upright if store is None else upright.transpose(store)
        add(f"exif/o{o}.jpg", stored, upright=upright, exif=exif.tobytes(), quality=95)

    # Names: spaces, unicode, a newline; a folder named like an image (walked, not decoded).
    add("names/with space.png", photo_image((40, 30), seed=5, kind="noise"))
    add("names/ünïcødé 写真.png", photo_image((40, 30), seed=6, kind="noise"))
    add("names/new\nline.png", photo_image((40, 30), seed=7, kind="noise"))
    add("photo.jpg/inside.png", photo_image((40, 30), seed=8, kind="noise"))
    return good, bad


@pytest.fixture
def corpus(tmp_path: Path):
    good, bad = build_corpus(tmp_path / "in")
    return tmp_path / "in", good, bad


def test_every_awkward_input_is_cropped_upright_or_named_in_one_line(tmp_path: Path, corpus, monkeypatch):
    root, good, bad = corpus
    before = snapshot(root)
    argv = [sys.executable, "-m", "s2ccrop", "in", "-o", "out", "--json", "--weights", "random", "--device", "cpu"]
    for r in RATIOS:
        argv += ["-r", r]
    proc = subprocess.run(argv, capture_output=True, env=subprocess_env(tmp_path), cwd=tmp_path, timeout=300)
    out, err = proc.stdout.decode(), proc.stderr.decode()

    # The batch completed, failed as a whole, and told the user nothing but one-liners.
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    lines = error_lines(err)
    assert len(lines) == len(bad), err
    for name, reason in bad.items():
        mine = [line for line in lines if line.startswith(f"s2ccrop: error: {batch.display(Path('in') / name)}: ")]
        assert len(mine) == 1 and reason in mine[0], (name, err)

    # Every good input: one record per ratio, an output of exactly the box, of the ratio, upright.
    records = [json.loads(line) for line in out.splitlines()]
    by_input: dict[str, list[dict]] = {}
    for rec in records:
        by_input.setdefault(rec["input"], []).append(rec)
    assert sorted(by_input) == sorted(os.fspath(Path("in") / n) for n in good)
    for name, expect in good.items():
        recs = by_input[os.fspath(Path("in") / name)]
        assert [r["ratio"] for r in recs] == RATIOS
        for rec in recs:
            assert (rec["width"], rec["height"]) == expect["size"], name
            check_ratio(rec["box"], rec["ratio"], expect["size"])
            x1, y1, x2, y2 = rec["box"]
            with Image.open(tmp_path / rec["output"]) as im:
                im.load()
                assert im.size == (x2 - x1, y2 - y1), (name, rec)
                assert im.getexif().get(0x0112, 1) == 1
                check_pixels(name, im, expect["upright"].crop(tuple(rec["box"])))

    # Nothing changed among the inputs, and nothing was left behind in the output folder.
    assert snapshot(root) == before
    assert not [p for p in (tmp_path / "out").rglob(".*")]

    # A re-run with --skip-existing touches no output and never loads the model (every photo is done).
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("S2CCROP_CACHE", str(tmp_path / ".cache"))
    outputs = snapshot(tmp_path / "out")

    def no_model(*a, **k):
        raise AssertionError("the model must not load when every output exists")

    monkeypatch.setattr(batch, "make_cropper", no_model)
    code, out2, err2 = run_in_process(*argv[3:], "--skip-existing")
    assert code == 1 and out2 == "" and "Traceback" not in err2
    assert sorted(error_lines(err2)) == sorted(lines)  # the broken inputs are still reported
    assert snapshot(tmp_path / "out") == outputs
    assert snapshot(root) == before


def check_pixels(name: str, got: Image.Image, want: Image.Image) -> None:
    """The written crop shows the upright photo's pixels at the box (lossy formats within noise)."""
    if name == "palette_transparent.gif":  # fully transparent: PNG keeps it, colour under alpha 0 is moot
        assert got.mode == "RGBA" and np.asarray(got)[..., 3].max() == 0
        return
    if name == "grey_alpha.png":
        assert got.mode == "LA"
    if name == "alpha.png":
        assert got.mode == "RGBA"
    if name == "grey16.png":
        assert got.mode == "L"
    mode = want.mode
    a = np.asarray(got.convert(mode), np.int16)
    b = np.asarray(want, np.int16)
    lossy = name.endswith((".jpg", ".webp"))
    tolerance = 20 if lossy else 0
    assert np.abs(a - b).mean() <= tolerance, (name, np.abs(a - b).mean())


def test_exif_orientation_puts_the_red_quadrant_top_left(tmp_path: Path, monkeypatch):
    """The plain-words version of 'upright': the whole-photo crop has red at its top left, yellow bottom right."""
    monkeypatch.chdir(tmp_path)
    up = quadrant_picture(48, 32)
    for o, store in STORE_FOR_ORIENTATION.items():
        exif = Image.Exif()
        exif[0x0112] = o
        (up if store is None else up.transpose(store)).save(tmp_path / f"o{o}.jpg", exif=exif.tobytes(), quality=95)
    # The chosen box is the model's business: check the output's corners against where the box lies.
    code, out, err = run_in_process(*[f"o{o}.jpg" for o in range(1, 9)], "-r", "any", "-o", "out", "--json",
                                    "--weights", "random", "--device", "cpu")
    assert code == 0, err
    for rec in map(json.loads, out.splitlines()):
        assert (rec["width"], rec["height"]) == (48, 32), rec
        x1, y1, x2, y2 = rec["box"]
        with Image.open(rec["output"]) as im:
            arr = np.asarray(im.convert("RGB"), np.int16)
        for (px, py), (bx, by) in [((1, 1), (x1 + 1, y1 + 1)), ((-2, -2), (x2 - 2, y2 - 2))]:
            if abs(bx + 0.5 - 24) < 3 or abs(by + 0.5 - 16) < 3:
                continue  # JPEG blurs the seams between quadrants
            expected = QUADRANTS[(bx >= 24) + 2 * (by >= 16)]
            assert np.abs(arr[py, px] - expected).max() < 60, (rec["input"], arr[py, px], expected)


def test_an_encoder_crash_on_one_photo_is_one_line_and_the_batch_goes_on(tmp_path: Path, monkeypatch):
    from s2ccrop.io import writers

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())
    for name in ("a.png", "b.png", "c.png"):
        photo_image((16, 12), kind="noise").save(name)
    real = writers.render_crop

    def flaky(image, box, size):
        if image.width == 16 and flaky.calls == 1:  # the second photo
            flaky.calls += 1
            raise RuntimeError("encoder exploded")
        flaky.calls += 1
        return real(image, box, size)

    flaky.calls = 0
    monkeypatch.setattr(writers, "render_crop", flaky)
    code, out, err = run_in_process("a.png", "b.png", "c.png", "-r", "1:1", "-o", "out", "-j", "1", "--workers", "0",
                                    "--json")
    assert code == 1 and "Traceback" not in err
    assert [json.loads(l)["input"] for l in out.splitlines()] == ["a.png", "c.png"]
    assert error_lines(err) == ["s2ccrop: error: b.png: cannot write out/b_1x1.png: RuntimeError: encoder exploded"]
    assert sorted(os.listdir("out")) == ["a_1x1.png", "c_1x1.png"]


def test_an_internal_error_is_one_line_unless_debugging(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo_image((16, 12), kind="noise").save("p.png")

    def broken(self, jobs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(BatchRun, "pipeline", broken)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    code, out, err = run_in_process("p.png", "-j", "1")
    assert (code, out) == (2, "") and err.splitlines() == [
        "s2ccrop: internal error: RuntimeError: a bug (run with S2CCROP_DEBUG=1 for the traceback, and please report it)"
    ]
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(RuntimeError, match="a bug"):
        run_in_process("p.png", "-j", "1")


# ------------------------------------------------------------------ limits


def test_max_pixels_is_configurable_with_a_clear_message(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo_image((20, 20), kind="noise").save("p.png")
    code, out, err = run_in_process("p.png", "-r", "1:1", "--max-pixels", "399", "--weights", "random", "--json")
    assert (code, out) == (1, "")
    assert error_lines(err) == [
        "s2ccrop: error: p.png: image is 20x20 = 400 pixels, above the limit of 399 pixels (possible "
        "decompression bomb); raise it with --max-pixels if you trust this file"
    ]
    code, out, err = run_in_process("p.png", "-r", "1:1", "--max-pixels", "400", "--weights", "random", "--json")
    assert code == 0, err
    check_ratio(json.loads(out)["box"], "1:1", (20, 20))
    code, out, err = run_in_process("p.png", "-r", "1:1", "--max-pixels", "0", "--weights", "random", "--json")
    assert code == 0, err  # 0 = no limit
    (tmp_path / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    code, out, err = run_in_process("bomb.png", "--weights", "random")
    assert code == 1 and "above the limit of 150.0 MP" in err and "--max-pixels" in err
    assert len(error_lines(err)) == 1 and "Traceback" not in err


def test_iter_inputs_consumes_arguments_lazily(tmp_path: Path):
    for i in range(5):
        photo_image((4, 4), kind="noise").save(tmp_path / f"{i}.png")
    consumed = []

    def args():
        for i in range(5):
            consumed.append(i)
            yield str(tmp_path / f"{i}.png")

    it = iter_inputs(args())
    assert isinstance(next(it), InputPath) and consumed == [0]
    next(it)
    assert consumed == [0, 1]


class CountingChunks:
    """A NUL-separated stdin that hands out small chunks and counts the reads."""

    def __init__(self, path: Path, n: int) -> None:
        self.data = io.BytesIO((os.fsencode(path) + b"\0") * n)
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        return self.data.read(min(size, 16))


def test_stdin_paths_are_read_incrementally(tmp_path: Path):
    photo_image((4, 4), kind="noise").save(tmp_path / "p.png")
    lines = CountingLines(tmp_path / "p.png", 1_000_000)
    it = iter_inputs(["-"], stdin=lines)
    for _ in range(3):
        next(it)
    assert lines.taken == 3
    chunks = CountingChunks(tmp_path / "p.png", 100_000)
    it = iter_inputs(["-"], stdin=chunks, null=True)
    for _ in range(3):
        next(it)
    assert chunks.reads <= 3 * (len(os.fsencode(tmp_path / "p.png")) // 16 + 2)


def test_folder_walk_lists_one_folder_at_a_time(tmp_path: Path, monkeypatch):
    for d in range(20):
        (tmp_path / f"d{d:02}").mkdir()
        photo_image((4, 4), kind="noise").save(tmp_path / f"d{d:02}" / "p.png")
    calls = []
    real = os.scandir

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(paths_mod.os, "scandir", counting)
    it = walk_folder(tmp_path)
    assert next(it).rel.as_posix() == "d00/p.png"
    assert len(calls) == 2  # the root and the first subfolder, not all 21


@pytest.mark.parametrize("workers", [0, 1, 2, 4])
def test_pipeline_keeps_a_bounded_number_of_photos_in_flight(tmp_path: Path, monkeypatch, workers: int):
    monkeypatch.chdir(tmp_path)
    photo_image((16, 12), kind="noise").save("p.png")
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())
    stdin = CountingLines(Path("p.png"), 60)
    in_flight = {"now": 0, "max": 0, "read_ahead": 0}
    real_jobs, real_finish = BatchRun.plan, BatchRun.finish

    def jobs(self):
        for job in real_jobs(self):
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
            yield job

    def finish(self, job):
        in_flight["now"] -= 1
        in_flight["read_ahead"] = max(in_flight["read_ahead"], stdin.taken - self.counts["photos"])
        return real_finish(self, job)

    monkeypatch.setattr(BatchRun, "plan", jobs)
    monkeypatch.setattr(BatchRun, "finish", finish)
    code, out, err = run_in_process("-", "-r", "1:1", "--dry-run", "--json", "-j", "1", "--workers", str(workers),
                                    stdin=stdin)
    assert code == 0, err
    assert len(out.splitlines()) == 60 and in_flight["now"] == 0
    bound = 2 * (workers + 1) + 1
    assert in_flight["max"] <= bound
    assert in_flight["read_ahead"] <= bound + 1  # stdin is read as the pipeline drains, not up front


# ------------------------------------------------------------------ Ctrl-C


def test_real_sigint_mid_batch_exits_130_and_leaves_only_complete_files(tmp_path: Path, monkeypatch):
    n = 30
    (tmp_path / "many").mkdir()
    for i in range(n):
        photo_image((32, 24), seed=i, kind="noise").save(tmp_path / "many" / f"{i:02}.png")
    before = snapshot(tmp_path / "many")
    out_dir = tmp_path / "out"
    options = ["-o", "out", "-r", "1:1", "--weights", "random", "--device", "cpu"]
    # The paths come on stdin, the first third of them before the signal and the rest never: however
    # fast the photos are cropped, the run is still in the middle of its list when the signal comes.
    proc = subprocess.Popen([sys.executable, "-m", "s2ccrop", "-", *options], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(tmp_path), cwd=tmp_path)
    try:
        proc.stdin.write(b"".join(f"many/{i:02}.png\n".encode() for i in range(n // 3)))
        proc.stdin.flush()
        deadline = time.monotonic() + 240
        while not (out_dir.is_dir() and any(not p.name.startswith(".") for p in out_dir.iterdir())):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no output appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and err.endswith(b"s2ccrop: interrupted\n")
    written = sorted(out_dir.iterdir())
    assert all(not p.name.startswith(".") and p.suffix == ".png" for p in written), written  # no temp files
    assert 1 <= len(written) <= n // 3  # it was really stopped in the middle
    for p in written:
        with Image.open(p) as im:
            im.load()  # complete, decodable files only
            assert im.width == im.height <= 24  # a 1:1 crop
    assert snapshot(tmp_path / "many") == before

    # Resuming with --skip-existing finishes the rest and leaves the earlier outputs alone.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("S2CCROP_CACHE", str(tmp_path / ".cache"))
    done = {p.name: snapshot(out_dir)[p.name] for p in written}
    code, _, err = run_in_process("many", *options, "--skip-existing", "--workers", "0")
    assert code == 0, err
    after = snapshot(out_dir)
    assert len(after) == n and all(after[name] == state for name, state in done.items())


# ------------------------------------------------------------------ weights


class Payload:
    """Unpickling this runs `touch marker`: the proof that a loader executed pickled code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil_zip(path: Path, marker: Path) -> None:
    import torch

    torch.save({"node_emb.0.weight": torch.zeros(2, 2), "x": Payload(str(marker))}, path)


def _evil_legacy(path: Path, marker: Path) -> None:
    import torch

    torch.save({"w": torch.zeros(2), "x": Payload(str(marker))}, path, _use_new_zipfile_serialization=False)


def _evil_pickle(path: Path, marker: Path) -> None:
    import pickle

    path.write_bytes(pickle.dumps({"w": Payload(str(marker))}))


@pytest.mark.parametrize(
    "name, make",
    [("evil.pth", _evil_zip), ("evil.safetensors", _evil_zip), ("legacy.pt", _evil_legacy), ("raw.bin", _evil_pickle)],
)
def test_cli_refuses_a_checkpoint_with_pickled_code_and_never_runs_it(tmp_path: Path, monkeypatch, name, make):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("S2CCROP_CACHE", str(tmp_path / ".cache"))
    marker = tmp_path / "pwned"
    make(tmp_path / name, marker)
    photo_image((16, 12), kind="noise").save("p.png")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run_in_process("p.png", "-r", "1:1", "--weights", name, "-o", "out")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"s2ccrop: error: {name}: refused to load") and "safetensors" in err
    # Not torch's advice to load it unsafely, no terminal escapes, no note on pickle protocols.
    assert "Re-running" not in err and "weights_only" in err and "\x1b" not in err
    assert not [w for w in caught if "pickle" in str(w.message)]
    assert not marker.exists() and not Path("out").exists()
    code, out, err = run_in_process("weights", "import", name, "--name", "evil")
    assert code == 2 and len(err.splitlines()) == 1 and "refused to load" in err
    assert not marker.exists()


@pytest.fixture
def imported(tmp_path: Path, monkeypatch) -> Path:
    """A real checkpoint imported into an isolated cache as 'mine'; returns the cached file."""
    from s2ccrop.model import S2CNet
    from s2ccrop.model.checkpoint import save_checkpoint
    from s2ccrop.model import GAICV1
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("S2CCROP_CACHE", str(tmp_path / ".cache"))
    monkeypatch.delenv("S2CCROP_MANIFEST", raising=False)
    torch.manual_seed(0)
    save_checkpoint(S2CNet(GAICV1), tmp_path / "mine.safetensors")
    code, out, err = run_in_process("weights", "import", "mine.safetensors", "--name", "mine")
    assert code == 0, err
    cached = Path(out.split("\t")[2].strip())
    assert cached.is_file() and cached.parent.is_relative_to(tmp_path / ".cache")
    photo_image((16, 12), kind="noise").save("p.png")
    return cached


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside a tensor: safetensors alone would load it without noticing
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _flip_a_byte])
def test_damaged_cached_weights_are_refused_through_the_cli_with_the_fix(imported: Path, damage):
    code, out, err = run_in_process("p.png", "-r", "1:1", "--weights", "mine", "--json")
    assert code == 0 and len(out.splitlines()) == 1, err  # it works while intact
    damage(imported)
    code, out, err = run_in_process("p.png", "-r", "1:1", "--weights", "mine", "-o", "out")
    assert (code, out) == (2, "") and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "does not match the pinned" in err
    assert "`s2ccrop weights import FILE --name mine --force`" in err
    assert not Path("out").exists()
    code, out, err = run_in_process("weights", "verify", "mine")
    assert code == 2 and "mine" in err and "does not match the pinned" in err


def test_unpinned_damaged_safetensors_path_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo_image((16, 12), kind="noise").save("p.png")
    Path("cut.safetensors").write_bytes(struct.pack("<Q", 1000) + b'{"a": 1')
    Path("text.pth").write_text("not a checkpoint")
    for name in ("cut.safetensors", "text.pth"):
        code, out, err = run_in_process("p.png", "--weights", name)
        assert (code, out) == (2, "") and len(err.splitlines()) == 1 and "Traceback" not in err
        assert err.startswith(f"s2ccrop: error: {name}: ")


# Modules that read checkpoints or data from disk. (engines/ pickles its own jobs between Ray workers:
# objects it made itself, never a file a user hands over, so it is not in this list.)
LOADERS = ("weights.py", "checkpoint_files.py", "api.py", "model", "training", "io", "genes.py", "cli", "batch.py",
           "settings.py", "loader.py", "info.py")


def test_package_loads_weights_only_through_safe_loaders():
    """Static guard: every torch.load passes weights_only=True; no jit/pickle loading where files are read."""
    offenders = []
    for path in sorted((ROOT / "s2ccrop").rglob("*.py")):
        rel = path.relative_to(ROOT / "s2ccrop")
        reads_files = rel.parts[0] in LOADERS
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if reads_files and isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n and n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve") for n in names):
                    offenders.append(f"{rel}:{node.lineno} imports a pickle module")
            if not isinstance(node, ast.Call):
                continue
            text = ast.unparse(node.func)
            if text.endswith(("jit.load", "pickle.load", "package.PackageImporter")):
                offenders.append(f"{rel}:{node.lineno} {text}")
            if text == "torch.load":
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is True
                           for k in node.keywords)
                if not safe:
                    offenders.append(f"{rel}:{node.lineno} torch.load without weights_only=True")
            if text.endswith(("np.load", "numpy.load")):
                if any(k.arg == "allow_pickle" for k in node.keywords):
                    offenders.append(f"{rel}:{node.lineno} np.load(allow_pickle=...)")
    assert offenders == []


def test_weights_that_are_not_a_croppers_name_the_file(tmp_path, make_photo):
    """A state_dict of something else is one error line that names the file (issue 32, item 5)."""
    from _cli_helpers import run_in_process

    wrong = tmp_path / "wrong.pth"
    torch.save({"a": torch.zeros(3)}, wrong)
    code, out, err = run_in_process(make_photo("p.jpg"), "--weights", wrong, "--dry-run")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("s2ccrop: error: ") and str(wrong) in err


@pytest.mark.parametrize("closed", [">&-", ">&- 2>&- <&-"])
def test_closed_standard_streams_are_nowhere_to_write_not_an_internal_error(tmp_path, make_photo, closed):
    """`s2ccrop ... >&-` (issue 32, item 6): results written to a closed stdout go nowhere, as Python's
    print treats it; the crop is written whole, and no output file takes the closed stream's number."""
    photo = make_photo("p.jpg", (160, 120))
    out = tmp_path / "out"
    done = subprocess.run(["sh", "-c", f'"$@" {closed}; echo "rc=$?"', "sh", sys.executable, "-m", "s2ccrop",
                           str(photo), "-r", "1:1", "-o", str(out), "--json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.stdout == "rc=0\n" and done.stderr == ""
    with Image.open(out / "p_1x1.jpg") as im:
        im.load()
        assert im.size[0] == im.size[1] <= 120


# ------------------------------------------------------------------ a hostile user (issue 32)


def test_a_long_stem_whose_output_name_is_legal_is_cropped(tmp_path: Path, monkeypatch):
    """A 240-character stem failed with "File name too long": its temporary name passed 255 bytes."""
    from s2ccrop.io.writers import NAME_MAX, temp_path_for

    monkeypatch.chdir(tmp_path)
    stem = "é" * 20 + "x" * 220  # 260 bytes in UTF-8: the temporary name is cut by bytes, not characters
    if len(os.fsencode(stem + "_1x1.png")) > NAME_MAX:
        stem = "x" * 240
    photo_image((40, 30), kind="noise").save(f"{stem}.png")
    code, out, err = run_in_process(f"{stem}.png", "-r", "1:1", "--json", "-j", "1", "--weights", "random",
                                    "--device", "cpu")
    assert code == 0, err
    assert [json.loads(line)["output"] for line in out.splitlines()] == [f"{stem}_1x1.png"]
    long = Path("y" * 250 + ".jpg")
    assert len(os.fsencode(temp_path_for(long).name)) == NAME_MAX
    assert sorted(os.listdir(tmp_path)) == sorted([f"{stem}.png", f"{stem}_1x1.png"])


@pytest.mark.parametrize("argv, line", [
    (["-o", ""], "s2ccrop: error: -o: an empty path (an unset shell variable?): give a file or folder "
                 "(. for the current folder)"),
    (["--preview", ""], "s2ccrop: error: --preview: an empty path (an unset shell variable?): give a file or "
                        "folder (. for the current folder)"),
    (["--name", "{stem}_{ratio!r}.{ext}"], "s2ccrop: error: invalid --name template '{stem}_{ratio!r}.{ext}': "
                                           "{ratio!r}: conversions (!r, !s, !a) are not allowed; write the field alone"),
    (["--height", "99999999"], "s2ccrop: error: --height 99999999: must be between 1 and 65500"),
    (["--width", "60000", "-r", "1:4"], "s2ccrop: error: --width 60000: 1:4 crops would be 240000 pixels high "
                                        "(at most 65500)"),
])
def test_hostile_options_are_one_usage_line(tmp_path: Path, monkeypatch, argv, line):
    monkeypatch.chdir(tmp_path)
    photo_image((40, 30), kind="noise").save("p.png")
    code, out, err = run_in_process("p.png", "-r", "1:1", *argv, "--weights", "random", "--device", "cpu")
    assert (code, out, err) == (2, "", line + "\n")
    assert os.listdir(tmp_path) == ["p.png"]


def test_a_free_form_output_past_the_side_limit_is_the_photos_error_line():
    from s2ccrop.io.formats import MAX_SIDE, SizeSpec, output_size

    assert output_size((400, 100), None, SizeSpec(None, 16000, True)) == ((64000, 16000), False)
    with pytest.raises(ValueError, match=f"it would be 260000x65000 pixels, more than {MAX_SIDE} a side"):
        output_size((400, 100), None, SizeSpec(None, 65000, True))


def test_photos_of_one_name_from_two_folders_get_advice_that_helps(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        photo_image((40, 30), kind="noise").save(f"{folder}/x.png")
    for dry in ([], ["--dry-run"]):  # a dry run says what the run would
        code, out, err = run_in_process("a/x.png", "b/x.png", "-o", "o", "-r", "1:1", "--weights", "random",
                                        "--device", "cpu", "-j", "1", *dry)
        assert code == 1 and err.splitlines() == [
            "s2ccrop: error: b/x.png: output o/x_1x1.png is also a/x.png's in this run (photos of the same name "
            "from different folders: give the folder above both (its tree is mirrored under -o), or crop them "
            "into different -o folders)"]
    code, out, err = run_in_process(".", "-o", "o", "-r", "1:1", "--weights", "random", "--device", "cpu", "-j", "1")
    assert code == 0 and sorted(os.listdir("o/a") + os.listdir("o/b")) == ["x_1x1.png", "x_1x1.png"], err


def test_skip_existing_says_when_a_file_it_keeps_is_not_an_earlier_output(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo_image((40, 30), kind="noise").save("p.png")
    Path("p_1x1.png").write_bytes(b"the user's own file")
    code, out, err = run_in_process("p.png", "-r", "1:1", "-r", "16:9", "--skip-existing", "--json",
                                    "--weights", "random", "--device", "cpu", "-j", "1")
    assert code == 0 and [json.loads(line)["output"] for line in out.splitlines()] == ["p_16x9.png"]
    assert err.splitlines() == ["s2ccrop: warning: p_1x1.png: exists and s2ccrop did not write it (a photo, or "
                                "another program's file): left alone, so p.png has no 1:1 output"]
    assert Path("p_1x1.png").read_bytes() == b"the user's own file"


def test_messages_carry_no_terminal_escapes():
    from s2ccrop.report import one_line

    assert one_line("a \x1b[1mbold\x1b[0m\nb \x1b]8;;http://x\x07link\x1b]8;;\x07") == "a bold b link"

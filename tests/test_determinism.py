"""The same photos and options give the same crops however s2ccrop is run (issue 29): any `-j`, any
thread count, either engine, any photo order, a photo listed twice, the library against the command
line, and (within 1 px; so far identical) any x86 instruction set the libraries are capped at. The
shipped weights, real processes: what a user runs. `bench/determinism.py` runs the same matrix on
200 photos."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RATIOS = ("16:9", "1:1", "9:16", "4:3", "any")
# Libraries capped below this CPU's instruction sets, as a CPU without AVX-512 or AMX (or without any
# vector unit, for ATen) runs them. A cap above what the CPU has changes nothing, which is fine.
CAPS = {
    "oneDNN AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "ATen without vectors": {"ATEN_CPU_CAPABILITY": "default"},
    "all AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
                 "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """The three sample photos and four photo-like JPEGs of other sizes and aspects (other model input
    shapes, so other thread chunk boundaries), the last one large enough to be read by the model at a
    reduced scale, and stored turned (EXIF orientation 6) as phones store portrait shots."""
    from conftest import photo_image
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    made = []
    for i, size in enumerate([(1024, 683), (600, 900), (1200, 400), (1600, 2400)]):
        path = folder / f"made{i}.jpg"
        image, exif = photo_image(size, seed=20 + i), Image.Exif()
        if i == 3:
            image, exif[0x0112] = image.transpose(Image.Transpose.ROTATE_90), 6
        image.save(path, quality=92, exif=exif)
        made.append(path)
    return sorted((ROOT / "examples").glob("*.png")) + made


def cli(paths, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> list[dict]:
    """JSON records of one `s2ccrop` process."""
    ratios = [a for r in RATIOS for a in ("-r", r)]
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "S2CCROP_THREADS")}
    out = subprocess.run([sys.executable, "-m", "s2ccrop", *map(str, paths), *ratios, "--json", *args],
                         capture_output=True, text=True, env={**clean, **(env or {})}, cwd=cwd or ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def boxes(records: list[dict]) -> dict[tuple[str, str], tuple[list[int], float]]:
    return {(Path(r["input"]).resolve().as_posix(), r["ratio"]): (r["box"], r["score"]) for r in records}


def assert_same(got: list[dict], want: list[dict], px: int = 0) -> None:
    a, b = boxes(got), boxes(want)
    assert a.keys() == b.keys()
    for key in b:
        (box, score), (box0, score0) = a[key], b[key]
        assert max(abs(x - y) for x, y in zip(box, box0)) <= px, (key, box, box0)
        assert abs(score - score0) <= 1e-3, (key, score, score0)


@pytest.fixture(scope="module")
def reference(photos) -> list[dict]:
    return cli(photos, "--dry-run", "-j", "1")


def test_a_second_run_is_identical(photos, reference):
    assert cli(photos, "--dry-run", "-j", "1") == reference


@pytest.mark.parametrize("args, env", [
    (("-j", "2"), {}),
    (("-j", "1"), {"S2CCROP_THREADS": "1"}),
    (("-j", "1"), {"S2CCROP_THREADS": "2"}),
    (("-j", "2"), {"OMP_NUM_THREADS": "1"}),
], ids=["-j 2", "one thread", "two threads", "OMP_NUM_THREADS=1"])
def test_jobs_and_threads_do_not_change_a_crop(photos, reference, args, env):
    assert_same(cli(photos, "--dry-run", *args, env=env), reference)


def test_order_and_a_photo_listed_twice_do_not_change_a_crop(photos, reference, tmp_path):
    """Reversed, and the first photo listed again by another spelling of its path: every record of a
    photo has the photo's one box."""
    first = photos[0]
    again = Path(os.path.relpath(first, tmp_path))
    got = cli([*photos[::-1], again], "--dry-run", "-j", "2", cwd=tmp_path)
    want = boxes(reference)
    assert len(got) == len(reference) + len(RATIOS)
    for r in got:
        box, score = want[(Path(tmp_path, r["input"]).resolve().as_posix(), r["ratio"])]
        assert r["box"] == box and abs(r["score"] - score) <= 1e-3, r


def test_written_files_are_byte_identical_with_one_or_two_jobs(photos, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    cli(photos, "-o", str(one), "-j", "1", "--width", "200")
    cli(photos, "-o", str(two), "-j", "2", "--width", "200")
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir()) and len(names) == len(photos) * len(RATIOS)
    for name in names:
        assert (one / name).read_bytes() == (two / name).read_bytes(), name


def test_the_library_crops_what_the_command_line_crops(photos, reference):
    from s2ccrop import Cropper

    cropper = Cropper(device="cpu")
    want = boxes(reference)
    for path in photos:
        for crop in cropper.crop(path, RATIOS):
            box, score = want[(path.resolve().as_posix(), crop.ratio)]
            assert list(crop.box) == box and abs(crop.score - score) <= 1e-3


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs Ray (pip install 's2ccrop[ray]')")
def test_the_ray_engine_crops_what_local_runs_crop(photos, reference):
    assert_same(cli(photos, "--dry-run", "--engine", "ray"), reference)


@pytest.mark.parametrize("cap", list(CAPS))
def test_older_instruction_sets_crop_alike(photos, reference, cap):
    assert_same(cli(photos, "--dry-run", "-j", "1", env=CAPS[cap]), reference, px=1)

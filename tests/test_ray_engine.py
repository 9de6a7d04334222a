"""The Ray engine: same JSON, files and error lines as the local engine, resume, manifest, actor plans.

A one-node Ray cluster (2 CPUs, 200 MB object store) is started on 127.0.0.1 by this module and shut
down at its end; the CLI runs in subprocesses that connect to it with --address, as on a real cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the Ray engine needs the optional extra: pip install 's2ccrop[ray]'")
pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data: pip install 's2ccrop[ray]'")

from PIL import Image  # noqa: E402

from s2ccrop.batch import Settings  # noqa: E402
from s2ccrop.cli import main  # noqa: E402
from s2ccrop.engines import check_address  # noqa: E402
from s2ccrop.engines.ray_engine import crop_with_ray, plan_actors  # noqa: E402
from s2ccrop.errors import ConfigError  # noqa: E402

# Ray Data's own DataContext warns about its deprecated settings whenever it is pickled.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")

REPO = Path(__file__).resolve().parents[1]
BAD_REASON = "not an image file (or a format Pillow cannot read)"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def cluster() -> str:
    """GCS address of a tiny Ray cluster on 127.0.0.1, owned (and stopped) by this test process."""
    os.environ.pop("RAY_ADDRESS", None)
    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False,
             _node_ip_address="127.0.0.1", logging_level="ERROR")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture()
def photos(tmp_path: Path, make_photo) -> Path:
    """Six tiny photos in a tree (jpg and png, several shapes) and one file that is not an image."""
    root = tmp_path / "photos"
    for i in range(6):
        name = f"{'sub/' if i % 2 else ''}p{i}.{'jpg' if i % 3 else 'png'}"
        make_photo(name, (64, 40 + 8 * i), seed=8 + i, kind="noise", folder=root)
    (root / "bad.jpg").write_bytes(b"not an image")
    return root


def run_cli(args: list[str], *, threads: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run([sys.executable, "-m", "s2ccrop", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def error_lines(stderr: str) -> list[str]:
    return sorted(line for line in stderr.splitlines() if line.startswith("s2ccrop: error:"))


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- the CLI against a cluster


@pytest.mark.parametrize("scale", [[], ["--scale", "0.4,0.7"]])
def test_ray_engine_matches_local_engine(cluster: str, photos: Path, tmp_path: Path, scale: list[str]):
    common = [str(photos), "-r", "16:9", "-r", "any", "-r", "square", "--width", "32", "--json", "--weights", "random",
              *scale]
    # Ray gives each CPU actor one thread; the local run gets one too so float sums add up in the same order.
    local = run_cli([*common, "-o", str(tmp_path / "local")], threads=1)
    remote = run_cli([*common, "-o", str(tmp_path / "ray"), "--engine", "ray", "--address", cluster])

    assert local.returncode == 1, local.stderr
    assert remote.returncode == 1, remote.stderr  # one photo failed, the rest are done
    want = json_lines(local.stdout)
    got = [dict(r, output=r["output"].replace(str(tmp_path / "ray"), str(tmp_path / "local"))) for r in
           json_lines(remote.stdout)]
    assert len(want) == 6 * 3 and all(("scale" in r) == bool(scale) for r in want)
    key = lambda r: (r["input"], r["ratio"])  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)
    assert error_lines(remote.stderr) == error_lines(local.stderr) == [
        f"s2ccrop: error: {photos / 'bad.jpg'}: {BAD_REASON}"
    ]
    assert tree(tmp_path / "ray") == tree(tmp_path / "local")  # byte-identical thumbnails, same names


def test_address_without_ray_engine_is_a_usage_error(photos: Path):
    done = run_cli([str(photos), "--address", "127.0.0.1:6379", "--weights", "random", "--dry-run"])
    assert done.returncode == 2
    assert "--address needs --engine ray" in done.stderr


def test_bad_weights_fail_the_run_with_one_line(cluster: str, photos: Path, tmp_path: Path):
    done = run_cli([str(photos / "p0.png"), "-o", str(tmp_path / "out"), "--engine", "ray", "--address", cluster,
                    "--weights", str(tmp_path / "missing.safetensors")])
    assert done.returncode == 2, done.stderr
    missing = tmp_path / "missing.safetensors"
    assert error_lines(done.stderr) == [f"s2ccrop: error: {missing}: no such weights file"]
    assert not (tmp_path / "out").exists()


def test_dry_run_with_preview_writes_only_the_sheet(cluster: str, photos: Path, tmp_path: Path, capsys):
    import torch

    args = [str(photos / "p0.png"), str(photos / "sub"), "-r", "4:5", "--dry-run", "--json", "--weights", "random"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each Ray CPU actor
    try:
        assert main([*args, "--preview", str(tmp_path / "local.jpg")]) == 0
        local = capsys.readouterr().out
    finally:
        torch.set_num_threads(threads)
    assert main([*args, "--preview", str(tmp_path / "ray.jpg"), "--engine", "ray"]) == 0  # joins this cluster
    remote = capsys.readouterr().out
    key = lambda r: r["input"]  # noqa: E731
    assert sorted(json_lines(remote), key=key) == sorted(json_lines(local), key=key)
    assert all(r["output"] is None for r in json_lines(remote)) and len(json_lines(remote)) == 4
    with Image.open(tmp_path / "ray.jpg") as sheet:  # 4 tiles of 480 px, 4 per row
        assert sheet.size == Image.open(tmp_path / "local.jpg").size == (4 * 480 + 3 * 4, 498)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.jpg", "photos", "ray.jpg"]


def test_ray_engine_never_writes_an_input_or_leaves_a_partial_output(cluster: str, tmp_path: Path, make_photo):
    """Issue 16's guarantees hold on Ray too: outputs named like inputs (--name '{stem}.jpg' for a.png
    beside a.jpg; a photo named like an output, a_1x1.jpg, also given on the command line) and a file
    s2ccrop did not write are left alone, each with its photo's one line; every output reported is
    complete; no temporary file is left."""
    import hashlib

    folder = tmp_path / "d"
    for i, name in enumerate(("a.jpg", "a.png", "a_1x1.jpg", "b.png", "c.png", "c_1x1.png")):  # a_1x1, c_1x1: photos
        make_photo(name, (56, 40), seed=3 + i, kind="noise", folder=folder)
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    ray_args = ["--engine", "ray", "--address", cluster, "--weights", "random", "--json", "-r", "1:1"]

    done = run_cli([str(folder), *ray_args, "--name", "{stem}.jpg"])
    assert done.returncode == 1, done.stderr
    assert error_lines(done.stderr) == [
        f"s2ccrop: error: {folder / 'a.jpg'}: output {folder / 'a.jpg'} would overwrite the input; "
        "use -o or another --name",
        f"s2ccrop: error: {folder / 'a.png'}: output {folder / 'a.jpg'} would overwrite an input of this run; "
        "use -o or another --name",
        f"s2ccrop: error: {folder / 'a_1x1.jpg'}: output {folder / 'a_1x1.jpg'} would overwrite the input; "
        "use -o or another --name",
    ]
    assert sorted(Path(r["output"]).name for r in json_lines(done.stdout)) == ["b.jpg", "c.jpg", "c_1x1.jpg"]
    for record in json_lines(done.stdout):
        Path(record["output"]).unlink()  # they would be photos of the next run

    done = run_cli([str(folder), str(folder / "a_1x1.jpg"), *ray_args])
    assert done.returncode == 1, done.stderr
    assert [line.split(": ", 3)[2:] for line in error_lines(done.stderr)] == [
        [str(folder / "a.jpg"), f"output {folder / 'a_1x1.jpg'} would overwrite an input of this run; use -o or "
                                "another --name"],
        [str(folder / "c.png"), f"output {folder / 'c_1x1.png'} exists and s2ccrop did not write it (a photo, or "
                                "another program's file): it is left alone; use -o, another --name, or move it away"],
    ]
    assert sorted(Path(r["output"]).name for r in json_lines(done.stdout)) == sorted([
        "a_1x1_1x1.jpg", "a_1x1_1x1.jpg", "a_1x1.png", "b_1x1.png", "c_1x1_1x1.png"])
    for record in json_lines(done.stdout):
        x1, y1, x2, y2 = record["box"]
        with Image.open(record["output"]) as im:
            im.load()
            assert im.size == (x2 - x1, y2 - y1)
    now = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert {k: now[k] for k in before} == before
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]


# ---------------------------------------------------------------- the library: listing, manifest, resume


def test_listing_manifest_and_resume(cluster: str, photos: Path, tmp_path: Path):
    listing = tmp_path / "photos.txt"
    names = ["p0.png", "sub/p1.jpg", "p2.jpg", "bad.jpg"]
    listing.write_text("".join(f"{photos / n}\n" for n in names))
    manifest = tmp_path / "manifest.jsonl"
    options = {"ratios": ["16:9", "1:1"], "output": tmp_path / "out", "weights": "random"}

    first = crop_with_ray(listing=listing, manifest=manifest, **options)
    assert first.exit_status == 1
    assert first.counts == {"photos": 4, "written": 6, "failed": 1, "skipped": 0, "earlier_outputs": 0}
    records = json_lines(manifest.read_text())
    done = [r for r in records if "error" not in r]
    assert {(Path(r["input"]).name, r["ratio"]) for r in done} == {
        (n, r) for n in ("p0.png", "p1.jpg", "p2.jpg") for r in ("16:9", "1:1")}
    assert all(Path(r["output"]).is_file() and set(r) == {"input", "ratio", "box", "width", "height", "score", "output", "fit"}
               for r in done)
    (failed,) = [r for r in records if "error" in r]
    assert failed["input"] == str(photos / "bad.jpg") and failed["error"] == BAD_REASON and failed["fit"] is None

    # One output lost: a re-run redoes that photo only, and appends its records to the manifest.
    lost = tmp_path / "out" / "p2_1x1.jpg"
    lost.unlink()
    second = crop_with_ray(listing=listing, manifest=manifest, **options)
    assert second.counts == {"photos": 2, "written": 1, "failed": 1, "skipped": 2, "earlier_outputs": 0}
    assert lost.is_file()
    added = json_lines(manifest.read_text())[len(records):]
    assert [(Path(r["input"]).name, r.get("ratio")) for r in added if "error" not in r] == [("p2.jpg", "1:1")]


# ---------------------------------------------------------------- pieces that need no cluster


def _settings(device: str) -> Settings:
    return Settings(["x.jpg"], device=device)


def test_actor_plan_uses_gpus_when_asked_or_present():
    cpu_only = {"CPU": 8.0}
    with_gpus = {"CPU": 32.0, "GPU": 4.0}
    auto_cpu = plan_actors(_settings("auto"), cpu_only, None)
    assert (auto_cpu.min_size, auto_cpu.max_size, auto_cpu.num_gpus, auto_cpu.device) == (1, 7, 0, "cpu")
    auto_gpu = plan_actors(_settings("auto"), with_gpus, None)
    assert (auto_gpu.max_size, auto_gpu.num_gpus, auto_gpu.device) == (4, 1, "cuda")
    pinned = plan_actors(_settings("cuda:2"), with_gpus, 2)
    assert (pinned.min_size, pinned.max_size, pinned.device) == (2, 2, "cuda")
    assert plan_actors(_settings("cpu"), with_gpus, None).num_gpus == 0
    with pytest.raises(ConfigError, match="no GPUs"):
        plan_actors(_settings("cuda"), cpu_only, None)


@pytest.mark.parametrize("text", ["auto", "127.0.0.1:6379", "head.example.org:6379", "ray://10.0.0.5:10001"])
def test_address_accepts(text: str):
    assert check_address(text) == text


@pytest.mark.parametrize("text", ["", "localhost", "host:", ":6379", "host:99999", "host:port"])
def test_address_rejects(text: str, capsys):
    assert main(["x.jpg", "--engine", "ray", "--address", text]) == 2
    assert "--address" in capsys.readouterr().err


def test_hints_and_fit_through_ray_match_the_local_engine(cluster: str, photos: Path, tmp_path: Path):
    """--focus, a --hints file and --fit pad give the same boxes, fits and JSON fields on Ray as locally
    (the hints file is read on the driver; each photo's hints travel in its job)."""
    hints = tmp_path / "hints.jsonl"
    hints.write_text(json.dumps({"input": str(photos / "p2.jpg"), "keep": [0.0, 0.0, 0.9, 0.3]}) + "\n")
    common = [str(photos / "p0.png"), str(photos / "p2.jpg"), "-r", "9:16", "-r", "16:9", "--json",
              "--weights", "random", "--focus", "0.95,0.5", "--hints", str(hints), "--fit", "auto", "--width", "40"]
    local = run_cli([*common, "-o", str(tmp_path / "local")], threads=1)
    remote = run_cli([*common, "-o", str(tmp_path / "ray"), "--engine", "ray", "--address", cluster])
    assert local.returncode == remote.returncode == 0, remote.stderr
    key = lambda r: (r["input"], r["ratio"])  # noqa: E731
    want = sorted(json_lines(local.stdout), key=key)
    got = sorted((dict(r, output=r["output"].replace(str(tmp_path / "ray"), str(tmp_path / "local")))
                  for r in json_lines(remote.stdout)), key=key)
    assert got == want and len(want) == 4
    assert {(Path(r["input"]).name, r["ratio"]): r["fit"] for r in want} == {
        ("p0.png", "9:16"): "crop", ("p0.png", "16:9"): "crop", ("p2.jpg", "9:16"): "pad", ("p2.jpg", "16:9"): "crop"}
    assert all(r["focus"] == [0.95, 0.5] for r in want)
    assert [r.get("keep") for r in want if r["input"].endswith("p2.jpg")] == [[0.0, 0.0, 0.9, 0.3]] * 2
    assert tree(tmp_path / "ray") == tree(tmp_path / "local")

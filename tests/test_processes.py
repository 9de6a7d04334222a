"""The process engine (s2ccrop/engines/processes.py): forked workers crop what one process would, in
input order, and a worker's death or bug costs one photo, not the batch."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from s2ccrop import batch
from s2ccrop.batch import BatchRun, Env, Settings
from s2ccrop.engines import local_run, processes

try:
    from ._cli_helpers import CountingLines, FastCropper, run_in_process
except ImportError:
    from _cli_helpers import CountingLines, FastCropper, run_in_process
from conftest import photo_image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.skipif(not processes.can_fork(), reason="the process engine forks (Linux only)")


@pytest.fixture
def parent_pid() -> int:
    return os.getpid()


@pytest.fixture
def fast_photos(tmp_path: Path, monkeypatch):
    """In tmp_path, with the model replaced by FastCropper: make(names) writes a small photo per name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())

    def make(names: list[str]) -> list[str]:
        for i, name in enumerate(names):
            photo_image((16, 12), seed=i, kind="noise").save(name)
        return names

    return make


def test_the_default_picks_processes_on_a_multicore_linux_cpu(monkeypatch):
    settings = Settings(["x.jpg"])
    monkeypatch.setattr(processes, "usable_cores", lambda: 2)
    assert isinstance(local_run(settings, Env()), processes.ProcessRun)
    assert local_run(settings, Env()).processes == 2
    monkeypatch.setattr(processes, "usable_cores", lambda: 64)
    assert local_run(settings, Env()).processes == processes.MAX_AUTO_PROCESSES
    monkeypatch.setattr(processes, "usable_cores", lambda: 1)
    assert type(local_run(settings, Env())) is BatchRun
    for options, kind in (({"jobs": 1}, BatchRun), ({"jobs": 3}, processes.ProcessRun), ({"device": "cuda"}, BatchRun)):
        s = Settings(["x.jpg"], **options)
        assert type(local_run(s, Env())) is kind, options
    monkeypatch.setattr(processes, "can_fork", lambda: False)
    assert type(local_run(Settings(["x.jpg"], jobs=3), Env())) is BatchRun


@pytest.mark.parametrize("value", ["0", "-1", "x", "257"])
def test_bad_jobs_is_a_usage_error(value):
    code, out, err = run_in_process("x.jpg", "-j", value)
    assert code == 2 and out == "" and "-j/--jobs" in err


def test_processes_choose_what_one_process_chooses(tmp_path: Path):
    """The real default model: the same boxes and (within float rounding of 1 vs 2 threads) scores."""
    photos = []
    for i, src in enumerate(sorted(EXAMPLES.glob("*.png"))):
        with Image.open(src) as im:
            im.load()
            for j, variant in enumerate((im, ImageOps.mirror(im))):
                path = tmp_path / "in" / f"{i}{j}_{src.stem}.png"
                path.parent.mkdir(exist_ok=True)
                variant.save(path)
                photos.append(path)
    common = ["-r", "16:9", "-r", "1:1", "-r", "9:16", "--json", "--device", "cpu", "--dry-run"]
    one = run_in_process(*photos, *common, "-j", "1")
    two = run_in_process(*photos, *common, "-j", "2")
    assert one[0] == two[0] == 0, (one[2], two[2])
    a = [json.loads(line) for line in one[1].splitlines()]
    b = [json.loads(line) for line in two[1].splitlines()]
    assert len(a) == len(b) == 3 * len(photos)
    assert [(r["input"], r["ratio"], r["box"]) for r in a] == [(r["input"], r["ratio"], r["box"]) for r in b]
    assert max(abs(x["score"] - y["score"]) for x, y in zip(a, b)) < 1e-4


def test_results_and_errors_come_in_input_order(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())
    names = []
    for i in range(12):
        name = f"p{i:02}.png"
        if i in (0, 5, 6, 11):
            Path(name).write_bytes(b"not an image")
        else:
            photo_image((16 + i, 12), seed=i, kind="noise").save(name)
        names.append(name)
    code, out, err = run_in_process(*names, "-r", "1:1", "-o", "out", "--json", "-j", "3")
    assert code == 1
    assert [json.loads(line)["input"] for line in out.splitlines()] == [n for i, n in enumerate(names) if i not in (0, 5, 6, 11)]
    errors = [line for line in err.splitlines() if line.startswith("s2ccrop: error:")]
    assert [line.split()[2] for line in errors] == ["p00.png:", "p05.png:", "p06.png:", "p11.png:"]
    assert sorted(os.listdir("out")) == sorted(f"p{i:02}_1x1.png" for i in range(12) if i not in (0, 5, 6, 11))
    for i in (1, 7):
        with Image.open(f"out/p{i:02}_1x1.png") as im:
            assert im.size == (16 + i, 12)  # FastCropper's whole-image "crop"


def test_a_worker_that_dies_costs_only_its_photo(fast_photos, monkeypatch, parent_pid: int):
    """A crash (here SIGKILL, as the OOM killer sends) in a worker: its photo is retried alone, dies
    again and fails with one line; every other photo, in flight or not, is cropped."""
    names = fast_photos([f"p{i:02}.png" for i in range(10)])
    real = BatchRun.score

    def deadly(self, job):
        if job.item.path.name == "p04.png" and os.getpid() != parent_pid:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, job)

    monkeypatch.setattr(BatchRun, "score", deadly)
    code, out, err = run_in_process(*names, "-r", "1:1", "-o", "out", "--json", "-j", "2")
    assert code == 1, err
    assert [json.loads(line)["input"] for line in out.splitlines()] == [n for n in names if n != "p04.png"]
    errors = [line for line in err.splitlines() if line.startswith("s2ccrop: error:")]
    assert errors == ["s2ccrop: error: p04.png: the worker process cropping this photo died (twice); it was skipped"]
    assert "Traceback" not in err
    assert len(os.listdir("out")) == 9


def test_a_bug_in_a_worker_is_one_line_and_the_batch_goes_on(fast_photos, monkeypatch):
    names = fast_photos([f"p{i}.png" for i in range(5)])
    real = BatchRun.crop_one

    def buggy(self, job):
        if job.item.path.name == "p3.png":
            raise RuntimeError("a bug")
        return real(self, job)

    monkeypatch.setattr(BatchRun, "crop_one", buggy)
    code, out, err = run_in_process(*names, "-r", "1:1", "--dry-run", "--json", "-j", "2")
    assert code == 1 and "Traceback" not in err
    assert [json.loads(line)["input"] for line in out.splitlines()] == ["p0.png", "p1.png", "p2.png", "p4.png"]
    assert [line for line in err.splitlines() if "p3.png" in line] == [
        "s2ccrop: error: p3.png: internal error in a worker process: RuntimeError: a bug"
    ]


def test_one_photo_never_forks(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photo_image((16, 12), kind="noise").save("only.png")
    for name in ("broken1.png", "broken2.png"):
        Path(name).write_bytes(b"nope")

    def no_pool(self, jobs):
        raise AssertionError("a single photo must be cropped in this process")

    monkeypatch.setattr(processes.ProcessRun, "_run_pool", no_pool)
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())
    code, out, err = run_in_process("broken1.png", "broken2.png", "only.png", "-r", "1:1", "--json", "--dry-run", "-j", "4")
    assert code == 1, err
    assert [json.loads(line)["input"] for line in out.splitlines()] == ["only.png"]
    assert len([line for line in err.splitlines() if line.startswith("s2ccrop: error:")]) == 2


@pytest.mark.parametrize("jobs", [2, 3])
def test_the_pool_keeps_a_bounded_number_of_photos_in_flight(tmp_path: Path, monkeypatch, jobs: int):
    monkeypatch.chdir(tmp_path)
    photo_image((16, 12), kind="noise").save("p.png")
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())
    stdin = CountingLines("p.png", 40)
    read_ahead = []
    real_finish = BatchRun.finish

    def finish(self, job):
        read_ahead.append(stdin.taken - self.counts["photos"])
        return real_finish(self, job)

    monkeypatch.setattr(BatchRun, "finish", finish)
    code, out, err = run_in_process("-", "-r", "1:1", "--dry-run", "--json", "-j", str(jobs), stdin=stdin)
    assert code == 0, err
    assert len(out.splitlines()) == 40
    assert max(read_ahead) <= 2 * jobs + 2  # stdin is read as results come back, not up front


def test_a_worker_killed_mid_write_leaves_no_temporary_file(fast_photos, monkeypatch, parent_pid: int):
    from s2ccrop.io import writers

    names = fast_photos([f"p{i}.png" for i in range(5)])
    real = writers.save_image

    def killed_while_saving(fh, image, *args):
        being_written = fh.name  # the hidden temporary file
        if os.getpid() != parent_pid and killed_while_saving.target in being_written:
            fh.write(b"half a PNG")
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(fh, image, *args)

    killed_while_saving.target = "p3_1x1"
    monkeypatch.setattr(writers, "save_image", killed_while_saving)
    code, out, err = run_in_process(*names, "-r", "1:1", "-o", "out", "--json", "-j", "2")
    assert code == 1, err
    assert sorted(os.listdir("out")) == ["p0_1x1.png", "p1_1x1.png", "p2_1x1.png", "p4_1x1.png"]  # no .tmp left
    assert [line for line in err.splitlines() if line.startswith("s2ccrop: error:")] == [
        "s2ccrop: error: p3.png: the worker process cropping this photo died (twice); it was skipped"
    ]

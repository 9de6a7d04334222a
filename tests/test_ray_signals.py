"""`--engine ray` behaves like a local run (issue 32): only s2ccrop's lines on stderr, our one line and
128 + the signal when stopped, and no Ray process or session folder left behind by the instance that
s2ccrop started for the run.

Each test runs the real command in its own session with no Ray address, so s2ccrop starts (and must
stop) a local Ray instance; its processes are found by the session folder in their command lines.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="the Ray engine needs the optional extra: pip install 's2ccrop[ray]'")
pytest.importorskip("ray.data", reason="the Ray engine needs Ray Data: pip install 's2ccrop[ray]'")

from conftest import photo_image  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="processes are found through Linux's /proc"),
    pytest.mark.slow,
]


def session_folders() -> set[str]:
    """Ray's session folders of s2ccrop's local instances, and the journals of their write steps."""
    return set(glob.glob("/tmp/s2ccrop-ray-*")) | set(glob.glob(os.path.join(tempfile.gettempdir(), "s2ccrop-journal-*")))


def ray_processes_of(folders: set[str]) -> list[str]:
    """Live processes (zombies aside) whose command line names one of the session `folders`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z" and any(folder in cmdline for folder in folders):
            found.append(f"{entry} {cmdline[:120]}")
    return found


class RayCommand:
    """`python -m s2ccrop photos -r 1:1 -r 2:1 --engine ray -o out --json` in a session of its own."""

    def __init__(self, tmp_path: Path, n_photos: int, size: tuple[int, int]) -> None:
        photos = tmp_path / "photos"
        photos.mkdir()
        for i in range(n_photos):
            photo_image(size, seed=i, kind="noise").save(photos / f"p{i:02d}.png")
        self.out = tmp_path / "out"
        self.before = session_folders()
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "S2CCROP_DEBUG")}
        env.update(PYTHONPATH=str(ROOT), S2CCROP_CACHE=str(tmp_path / ".cache"))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "s2ccrop", str(photos), "-r", "1:1", "-r", "2:1", "--engine", "ray", "-o", str(self.out),
             "--json", "--weights", "random", "--device", "cpu"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
            start_new_session=True)

    def ours(self) -> set[str]:
        return session_folders() - self.before

    def wait_for(self, what, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not what():
            assert self.proc.poll() is None, self.proc.communicate()
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.02)

    def finish(self) -> tuple[int, list[dict], str]:
        out, err = self.proc.communicate(timeout=120)
        return self.proc.returncode, [json.loads(line) for line in out.splitlines()], err


def test_a_ray_run_prints_only_results_and_leaves_nothing_behind(tmp_path: Path):
    run = RayCommand(tmp_path, 3, (96, 64))
    folders: set[str] = set()
    run.wait_for(lambda: folders.update(run.ours()) or folders)  # its session folder, while it exists
    code, records, err = run.finish()
    assert (code, err) == (0, ""), err  # no token-auth warning, no E-level line of Ray's C++ core
    names = sorted(f"p{i:02d}_{r}.png" for i in range(3) for r in ("1x1", "2x1"))
    assert sorted(os.path.basename(r["output"]) for r in records) == names
    assert sorted(os.listdir(run.out)) == names
    assert run.ours() == set() and ray_processes_of(folders) == []


@pytest.mark.parametrize("signum,status,line,when", [
    (signal.SIGTERM, 143, "s2ccrop: stopped by SIGTERM", "while Ray starts"),
    (signal.SIGINT, 130, "s2ccrop: interrupted", "mid-run"),
    (signal.SIGHUP, 129, "s2ccrop: stopped by SIGHUP", "mid-run"),
])
def test_a_signal_to_the_group_of_a_ray_run_is_our_line_and_status(tmp_path: Path, signum, status, line, when):
    """Sent to the whole process group, as a terminal or a process manager does. Before: Ray's
    "*** SIGTERM received ***" dump, exit 15, 134 or 1, Ray processes lingering."""
    run = RayCommand(tmp_path, 12, (700, 500))
    folders: set[str] = set()

    def started() -> bool:
        folders.update(run.ours())
        return bool(folders) and bool(ray_processes_of(folders))

    run.wait_for(started)
    if when == "mid-run":
        run.wait_for(lambda: run.out.is_dir() and any(run.out.iterdir()))
    os.killpg(run.proc.pid, signum)
    code, records, err = run.finish()
    assert (code, err) == (status, line + "\n")
    assert run.ours() == set() and ray_processes_of(folders) == []
    # A photo's outputs are all or nothing (a photo finished on a worker may not have reached the
    # report), every reported output is in place, and no temporary file is left.
    written = sorted(os.listdir(run.out)) if run.out.is_dir() else []
    assert not [name for name in written if name.startswith(".")], written
    by_photo: dict[str, set[str]] = {}
    for name in written:
        by_photo.setdefault(name.rsplit("_", 1)[0], set()).add(name)
    assert all(len(names) == 2 for names in by_photo.values()), by_photo
    assert {os.path.basename(r["output"]) for r in records} <= set(written)

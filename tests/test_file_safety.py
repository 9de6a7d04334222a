"""No lost, truncated or overwritten file (issue 16), whatever the disk, the names, -o or --preview say.

The guarantees, each tested here through the real command line:
- every output reported as written is complete: a full disk or a file size limit is an error line,
  never a shorter file (checked by size and by decoding);
- an input of the run is never written, whatever --name, -o or --preview say, and a file s2ccrop did
  not write is never replaced; an earlier run's outputs are replaced as before;
- every mistake is one line naming the file or the option, with its exit status.
Signals have their own file, test_signals.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

try:
    from ._cli_helpers import noise, run_in_process
except ImportError:
    from _cli_helpers import noise, run_in_process

ROOT = Path(__file__).resolve().parent.parent
RANDOM = ("--weights", "random", "--device", "cpu")


def subprocess_env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "S2CCROP_CACHE": str(tmp_path / ".cache"),
            "PYTHONDONTWRITEBYTECODE": "1"}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("s2ccrop: error:")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_complete(record: dict) -> None:
    """A reported output exists, decodes to its last byte, and has the box's size."""
    x1, y1, x2, y2 = record["box"]
    with Image.open(record["output"]) as im:
        im.load()
        assert im.size == (x2 - x1, y2 - y1), record


# ------------------------------------------------------------------ a full disk


def file_size_limit(limit: int):
    """preexec_fn: files of the child may not grow past `limit` bytes. With SIGXFSZ ignored, write()
    then writes what fits and returns short, and the next write fails with EFBIG: what a nearly full
    disk does, without needing a mount."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp"])
def test_a_write_cut_short_is_an_error_never_a_truncated_output(tmp_path: Path, monkeypatch, fmt: str):
    """A JPEG of less than Pillow's 64 kB chunk used to be written by one C write() whose short count
    was ignored: 8,192 bytes on disk, reported as written, exit 0."""
    noise(200, 150).save(tmp_path / "p.png")
    argv = ["p.png", "-o", "out", "-r", "1:1", "-j", "1", "--format", fmt, *RANDOM]
    proc = subprocess.run([sys.executable, "-m", "s2ccrop", *argv], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=subprocess_env(tmp_path), preexec_fn=file_size_limit(8192))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == [f"s2ccrop: error: p.png: cannot write out/p_1x1.{fmt}: File too large"]
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []  # no output, no temporary file

    # Without the limit the same command writes a complete file, bigger than the limit was.
    monkeypatch.chdir(tmp_path)
    code, out, err = run_in_process(*argv, "--json")
    assert code == 0, err
    record = json.loads(out)
    check_complete(record)
    assert os.path.getsize(record["output"]) > 8192


def test_a_full_tmpfs_is_an_error_never_a_truncated_output(tmp_path: Path):
    """The report's own case, on a real nearly full file system (where this user may mount one)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("mounting a tmpfs needs privileges this user lacks; the RLIMIT_FSIZE test covers it")
    try:
        (mount / "fill").write_bytes(b"\0" * (192 * 1024))  # leaves 8 kB
        noise(200, 150).save(tmp_path / "p.jpg", quality=95)
        proc = subprocess.run([sys.executable, "-m", "s2ccrop", "p.jpg", "-o", str(mount / "full"), "-r", "1:1",
                               "-j", "1", *RANDOM], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env=subprocess_env(tmp_path))
        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        assert error_lines(proc.stderr) == [
            f"s2ccrop: error: p.jpg: cannot write {mount}/full/p_1x1.jpg: No space left on device"]
        assert os.listdir(mount / "full") == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)

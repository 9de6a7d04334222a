"""Signals that end a run (issue 16): real processes, real signals, sent at the moment that hurts.

Whatever ends a run (Ctrl-C, a second Ctrl-C, SIGTERM to the parent or to its process group as
`timeout`, systemd and docker send it, SIGHUP, even SIGKILL to the parent) must leave no worker
process, no temporary file and no half-written output, close stdout so a reader of the pipe gets its
end of file, and exit with a status that says what happened: 130 SIGINT, 143 SIGTERM, 129 SIGHUP.

Each test starts `python -m s2ccrop` in a session of its own (so every process it forks can be found
by its session id in /proc), waits for the moment (workers forked, a temporary file being written),
sends the signal, then reads stdout to its end and checks the session is empty. Timing is by polling
with deadlines, never fixed sleeps, so a loaded 2-core machine only makes them slower.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from s2ccrop.engines import processes

from conftest import photo_image

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux") or not processes.can_fork(),
                       reason="the process engine forks, and these tests find processes through Linux's /proc"),
    pytest.mark.slow,
]


def make_photos(folder: Path, n: int, size: tuple[int, int] = (900, 700)) -> None:
    """`n` noise photos (conftest's photo_image), 00.png on: slow to encode as PNG, so a write is in
    progress for a good share of the run."""
    folder.mkdir(parents=True)
    for i in range(n):
        photo_image(size, seed=i, kind="noise").save(folder / f"{i:02}.png")


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, session id) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[3])


def alive_in_session(sid: int) -> list[int]:
    """Processes of session `sid` that still run (a zombie has ended; only its exit status is left)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None and stat[2] == sid and stat[0] != "Z":
                found.append(int(name))
    return found


def describe(pids: list[int]) -> str:
    """What each process is doing, for a failure message: command line, state, parent, wait channel."""
    parts = []
    for pid in pids:
        def read(name: str) -> str:
            try:
                return Path(f"/proc/{pid}/{name}").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                return "?"
        stat = proc_stat(pid)
        parts.append(f"{pid} [{read('cmdline')[:120]}] state {stat[0] if stat else '?'} ppid {stat[1] if stat else '?'} "
                     f"wchan {read('wchan')}")
    return "; ".join(parts)


def children_of(pid: int) -> list[int]:
    return [int(n) for n in os.listdir("/proc") if n.isdigit() and (proc_stat(int(n)) or ("", 0, 0))[1] == pid]


def temporary_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*.tmp")] if folder.is_dir() else []


def finished(folder: Path) -> list[str]:
    """Outputs in place (not temporary files)."""
    try:
        return [name for name in os.listdir(folder) if not name.startswith(".")]
    except FileNotFoundError:
        return []


class Run:
    """`python -m s2ccrop ARGV` in a session of its own; stdout and stderr are read as they come."""

    def __init__(self, tmp_path: Path, *argv: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "S2CCROP_CACHE": str(tmp_path / ".cache"),
               "PYTHONDONTWRITEBYTECODE": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "s2ccrop", *argv], cwd=tmp_path, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.sid = self.proc.pid  # a new session's id is its leader's pid; so is its process group's
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                         for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[bytes]) -> None:
        for line in iter(stream.readline, b""):  # until every process holding the pipe has closed it
            into.append(line)

    def stderr(self) -> str:
        return b"".join(self.err).decode()

    def wait_for(self, ready, what: str, timeout: float = 120.0, poll: float = 0.005):
        """Poll `ready()` until it returns something true; fail if the run ends first or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            got = ready()
            if got:
                return got
            if self.proc.poll() is not None:
                pytest.fail(f"the run ended (status {self.proc.returncode}) before {what}: {self.stderr()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} after {timeout} s")
            time.sleep(poll)

    def workers(self) -> list[int]:
        return children_of(self.proc.pid)

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Read stdout and stderr to their end: that needs every process holding them to be gone."""
        deadline = time.monotonic() + timeout
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))
        if any(reader.is_alive() for reader in self._readers):
            pytest.fail(f"stdout or stderr still open {timeout} s after the signal; alive in the session: "
                        f"{describe(alive_in_session(self.sid))}")
        code = self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        return code, b"".join(self.out).decode(), self.stderr()

    def left_behind(self, timeout: float = 15.0) -> list[int]:
        """Processes of the run's session still running `timeout` seconds from now (at most)."""
        deadline = time.monotonic() + timeout
        while (left := alive_in_session(self.sid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        return left

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        for pid in alive_in_session(self.sid):  # a failed test must not leave its processes running
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def check_outputs(out_dir: Path, ratios: tuple[str, ...] = ("1x1",)) -> int:
    """No temporary file; every output complete (decodes, of its ratio); a photo has all its outputs
    or none. Returns how many photos have them."""
    assert temporary_files(out_dir) == []
    written = sorted(out_dir.iterdir()) if out_dir.is_dir() else []
    by_photo: dict[str, set[str]] = {}
    for path in written:
        stem, ratio = path.stem.rsplit("_", 1)
        by_photo.setdefault(stem, set()).add(ratio)
        w, h = map(int, ratio.split("x"))
        with Image.open(path) as im:
            im.load()
            assert im.width * h == im.height * w, path
    assert all(got == set(ratios) for got in by_photo.values()), by_photo
    return len(by_photo)


CROP = ["photos", "-o", "out", "-r", "1:1", "-j", "2", "--weights", "random", "--device", "cpu"]


def test_sigterm_to_the_parent_stops_its_workers_and_exits_143(tmp_path: Path):
    """It used to leave both workers running for good (PPID 1), holding stdout open."""
    make_photos(tmp_path / "photos", 12)
    with Run(tmp_path, *CROP) as run:
        workers = run.wait_for(lambda: len(run.workers()) >= 2 and run.workers(), "two worker processes")
        run.proc.send_signal(signal.SIGTERM)
        code, out, err = run.finish()
        assert code == 143, err
        assert err.endswith("s2ccrop: stopped by SIGTERM\n") and "Traceback" not in err
        assert run.left_behind() == []
        assert all((proc_stat(pid) or ("Z",))[0] == "Z" for pid in workers)  # gone, or ended and not yet reaped
    check_outputs(tmp_path / "out")


@pytest.mark.parametrize("signum, status, message, jobs", [
    (signal.SIGTERM, 143, "stopped by SIGTERM", "2"),
    (signal.SIGHUP, 129, "stopped by SIGHUP", "2"),
    (signal.SIGINT, 130, "interrupted", "2"),
    (signal.SIGTERM, 143, "stopped by SIGTERM", "1"),  # one process, writing on threads
])
def test_a_signal_to_the_whole_group_mid_write_leaves_no_temporary_file(tmp_path: Path, signum, status, message,
                                                                        jobs: str):
    """What `timeout`, systemd, docker (SIGTERM), a closed terminal (SIGHUP) and Ctrl-C (SIGINT) send:
    every process at once, here while an output is being written."""
    make_photos(tmp_path / "photos", 16)
    out_dir = tmp_path / "out"
    with Run(tmp_path, *CROP[:-5], jobs, *CROP[-4:], "-r", "2:1") as run:
        if jobs != "1":
            run.wait_for(lambda: len(run.workers()) >= 2, "two worker processes")
        run.wait_for(lambda: temporary_files(out_dir) and finished(out_dir), "output written and another being written",
                     timeout=60, poll=0.001)
        os.killpg(run.sid, signum)
        code, out, err = run.finish()
        assert code == status, err
        assert err.endswith(f"s2ccrop: {message}\n") and "Traceback" not in err
        assert run.left_behind() == []
    assert 1 <= check_outputs(out_dir, ("1x1", "2x1")) < 16  # stopped in the middle: whole photos only


def test_sigkill_to_the_parent_takes_its_workers_down(tmp_path: Path):
    """Nothing can be cleaned up in a process killed outright, but its workers must not outlive it."""
    make_photos(tmp_path / "photos", 16)
    out_dir = tmp_path / "out"
    with Run(tmp_path, *CROP) as run:
        run.wait_for(lambda: len(run.workers()) >= 2, "two worker processes")
        run.wait_for(lambda: temporary_files(out_dir), "temporary file being written", timeout=60, poll=0.001)
        run.proc.kill()
        code, out, err = run.finish()
        assert code == -signal.SIGKILL
        assert run.left_behind() == []
    # The workers were told (SIGTERM on their parent's death) and deleted what they were writing.
    check_outputs(out_dir)


@pytest.mark.parametrize("to, gap", [("group", 0.0), ("group", 0.02), ("group", 0.15), ("parent", 0.05),
                                     ("parent", 0.2)])
def test_two_ctrl_c_while_the_workers_start_never_hang(tmp_path: Path, to: str, gap: float):
    """Ctrl-C twice in quick succession just as the workers are forked, to the group as a terminal sends
    it or to the parent as `kill -INT` does: it used to hang now and then (the parent joining workers
    at exit), die of the second SIGINT, or print a traceback from an exit handler."""
    make_photos(tmp_path / "photos", 8, size=(300, 200))
    with Run(tmp_path, *CROP) as run:
        send = (lambda signum: os.killpg(run.sid, signum)) if to == "group" else run.proc.send_signal
        run.wait_for(run.workers, "worker process", poll=0.001)
        send(signal.SIGINT)
        time.sleep(gap)  # the gap between the two presses is the point here, not a wait for something
        send(signal.SIGINT)
        code, out, err = run.finish(timeout=30)
        assert code == 130, err
        assert err.endswith("s2ccrop: interrupted\n") and "Traceback" not in err and "Exception ignored" not in err
        assert run.left_behind() == []
    check_outputs(tmp_path / "out")


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_while_the_run_exits_changes_nothing(tmp_path: Path, second: int):
    """The second Ctrl-C of an impatient user lands while the stopped run exits: it must neither print a
    traceback from an exit handler nor kill the process with a status that hides the first signal
    (Python resets its handlers to the default action at the very end of its shutdown)."""
    make_photos(tmp_path / "photos", 8, size=(300, 200))
    with Run(tmp_path, *CROP) as run:
        run.wait_for(lambda: len(run.workers()) >= 2, "two worker processes")
        os.killpg(run.sid, signal.SIGINT)
        run.wait_for(lambda: "s2ccrop: interrupted" in run.stderr(), "'interrupted' on stderr", timeout=30,
                     poll=0.001)
        try:
            os.killpg(run.sid, second)
        except ProcessLookupError:  # already gone: nothing left to disturb
            pass
        code, out, err = run.finish(timeout=30)
        assert code == 130, err
        assert err.endswith("s2ccrop: interrupted\n") and "Traceback" not in err and "Exception ignored" not in err
        assert run.left_behind() == []
    check_outputs(tmp_path / "out")


# ------------------------------------------------------------------ a signal while s2ccrop starts

# The console script's own lines (`from s2ccrop.cli import run`, then run()), in a script named s2ccrop,
# with a signal sent to itself at the N-th import once s2ccrop's first line has run: each import is a
# moment of start-up (torch's among them). Imports before that (the package's own) are counted apart.
AT_IMPORT = """
import atexit, os, signal, sys
n, signum, before, seen = int(os.environ["AT"]), int(os.environ["SIG"]), [0], [0]
def at_import(event, args):
    if event != "import":
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        before[0] += 1
        return
    seen[0] += 1
    if seen[0] == n:
        os.kill(os.getpid(), signum)
sys.addaudithook(at_import)
atexit.register(lambda: print(f"imports {before[0]} {seen[0]}", file=sys.stderr))  # run() ends with os._exit
from s2ccrop.cli import run
run()
"""


def start_and_signal(tmp_path: Path, n: int, signum: int, *argv: str) -> tuple[int, str]:
    script = tmp_path / "bin" / "s2ccrop"
    script.parent.mkdir(exist_ok=True)
    script.write_text(AT_IMPORT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "S2CCROP_CACHE": str(tmp_path / ".cache"), "AT": str(n),
           "SIG": str(int(signum))}
    proc = subprocess.run([sys.executable, str(script), *argv], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    return proc.returncode, proc.stderr


def test_module_imports_before_run_are_light():
    """Until run() installs its handler a signal is Python's (a traceback): that time holds no more than
    the package's light modules."""
    code = "import sys; from s2ccrop.cli import run; print(' '.join(sorted(sys.modules)))"
    loaded = set(subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT)},
                                capture_output=True, text=True, check=True).stdout.split())
    ours = {m for m in loaded if m.startswith("s2ccrop")}
    assert ours == {"s2ccrop", "s2ccrop._version", "s2ccrop.cli", "s2ccrop.cli.rules", "s2ccrop.envvars",
                    "s2ccrop.errors", "s2ccrop.interrupts"}
    assert not loaded & {"torch", "numpy", "PIL", "typer", "rich"}


@pytest.mark.parametrize("signum,status,line", [(signal.SIGINT, 130, "s2ccrop: interrupted"),
                                                (signal.SIGTERM, 143, "s2ccrop: stopped by SIGTERM"),
                                                (signal.SIGHUP, 129, "s2ccrop: stopped by SIGHUP")])
def test_a_signal_at_any_moment_of_start_up_is_our_one_line_and_status(tmp_path: Path, signum, status, line):
    """Issue 32: Ctrl-C in the first ~50 ms printed Python's traceback (exit 1 under a process manager).
    A crop's start-up, signalled at its 1st, 2nd, ... import (every one of the first 40, then spread
    over the rest, torch's included), always ends with our line and 128 + the signal."""
    photo_image((64, 48), kind="noise").save(tmp_path / "p.jpg")
    crop = ("p.jpg", "-r", "1:1", "--weights", "random", "--device", "cpu", "-j", "1")
    code, err = start_and_signal(tmp_path, 10**9, signum, *crop)
    assert code == 0 and err.startswith("imports "), err  # and nothing else on stderr
    before, total = map(int, err.split()[1:3])
    assert before <= 2, f"{before} imports before s2ccrop handles stop signals (the package itself, signal)"
    moments = sorted(set(range(1, 41)) | set(range(41, total + 1, max(1, (total - 40) // 8))))
    if signum != signal.SIGINT:
        moments = moments[::4]  # the same code path: a sample is enough
    for n in moments:
        code, err = start_and_signal(tmp_path, n, signum, *crop)
        assert (code, err.strip().splitlines()[:1]) == (status, [line]), f"signal at import {n} of {total}: {err}"
        assert "Traceback" not in err, f"signal at import {n}: {err}"


def test_python_m_s2ccrop_and_a_library_import():
    """`python -m s2ccrop` holds its stop signals from the package's first line too; a program that
    imports s2ccrop (even s2ccrop.cli) keeps its own handlers."""
    probe = ("import signal, sys; import s2ccrop.cli; "
             "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"
    held = subprocess.run([sys.executable, "-m", "s2ccrop", "--version"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True)
    assert held.returncode == 0 and held.stdout.startswith("s2ccrop ")

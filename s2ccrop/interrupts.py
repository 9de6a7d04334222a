"""Stopping on a signal: Ctrl-C (SIGINT), `kill`/`timeout`/systemd/docker (SIGTERM), a closed terminal
(SIGHUP). Standard library only.

A stopped run leaves no worker process, no temporary file and no half-written output, and its exit
status says why: 128 + the signal's number (130 SIGINT, 143 SIGTERM, 129 SIGHUP).

- The command line runs under `stop_signals()`: the first stop signal raises `Interrupted` in the main
  thread. It is a KeyboardInterrupt, so the clean-up that Ctrl-C already does (cancel the writes in
  progress, stop the workers) runs for every signal. A further signal while that clean-up runs (a
  second Ctrl-C, `timeout` sending SIGTERM to the whole process group) is noted, not raised: raised
  inside the clean-up it would cut it short and leave workers or temporary files behind. Only when
  the clean-up has not finished FORCE_AFTER seconds later does a further signal end the process at
  once (`force_exit`: workers told to stop, temporary files deleted, os._exit).
- `deferred()` holds stop signals over code that must not be cut in the middle (forking workers,
  torch's import), then delivers them.
- Forked workers call `worker_signals(parent_pid)`: they ignore SIGINT (the parent decides), delete
  their temporary files and exit on SIGTERM/SIGHUP, and get SIGTERM when the parent dies, however it
  dies (Linux `PR_SET_PDEATHSIG`), so none outlives it holding the parent's stdout.
- `atomic_write` registers each temporary file while it exists (`temp_file`), so whoever stops the
  process can delete them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Callable, Iterable, Iterator

# Present on this platform (Windows has no SIGHUP).
STOP_SIGNALS: tuple[int, ...] = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
FORCE_AFTER = 3.0  # seconds of clean-up after which a further stop signal ends the process at once


def exit_status(signum: int) -> int:
    """The shell's convention: 128 + the signal's number (130 SIGINT, 143 SIGTERM, 129 SIGHUP)."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived (SIGINT, SIGTERM or SIGHUP); the run stops and cleans up as for Ctrl-C."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal_name(signum))
        self.signum = int(signum)

    @property
    def exit_status(self) -> int:
        return exit_status(self.signum)


# ================================================================ what a stop must clean up

_temp_files: set[str] = set()
_children: dict[int, Callable[[], Iterable[int]]] = {}  # id -> the live worker pids of one pool
_journal: list[str] = []  # where this process lists its temporary files for another one (see journal_temp_files)


@contextlib.contextmanager
def temp_file(path: "str | os.PathLike[str]") -> Iterator[None]:
    """Register `path` (a temporary file about to be created) until the block ends."""
    name = os.fspath(path)
    _temp_files.add(name)
    _write_journal()
    try:
        yield
    finally:
        _temp_files.discard(name)
        _write_journal()


def journal_temp_files(path: "str | os.PathLike[str]") -> None:
    """From now on keep the list of this process's registered temporary files in the file `path`, one
    per line: for a process that may be killed outright (a Ray worker when its instance shuts down),
    so that whoever started it can delete what it left (`remove_journaled`)."""
    _journal[:] = [os.fspath(path)]
    _write_journal()


def _write_journal() -> None:
    if not _journal:
        return
    with contextlib.suppress(OSError, RuntimeError):  # RuntimeError: another thread changed the set
        with open(_journal[0], "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write("".join(name + "\n" for name in list(_temp_files)))


def remove_journaled(folder: "str | os.PathLike[str]") -> int:
    """Delete the temporary files listed in the journals (`journal_temp_files`) found in `folder`; how
    many. Only names of hidden temporary files (`.NAME.tmp`) are taken."""
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError), open(entry.path, encoding="utf-8", errors="surrogateescape") as fh:
                for name in fh.read().splitlines():
                    if os.path.basename(name).startswith(".") and name.endswith(".tmp"):
                        with contextlib.suppress(OSError):
                            os.unlink(name)
                            removed += 1
    return removed


def remove_temp_files() -> int:
    """Delete the registered temporary files of this process (those being written now); how many."""
    removed = 0
    for _ in range(3):  # another thread may change the set while it is copied
        try:
            names = list(_temp_files)
            break
        except RuntimeError:
            continue
    else:
        names = []
    for name in names:
        try:
            os.unlink(name)
            removed += 1
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def children(live_pids: Callable[[], Iterable[int]]) -> Iterator[None]:
    """Register worker processes (`live_pids()` lists them) that `force_exit` must stop."""
    key = id(live_pids)
    _children[key] = live_pids
    try:
        yield
    finally:
        _children.pop(key, None)


def force_exit(status: int) -> None:
    """End this process now: workers get SIGTERM (they delete their own temporary files), ours are
    deleted, the standard streams flushed as far as they can be."""
    for live_pids in list(_children.values()):
        try:
            pids = list(live_pids())
        except Exception:
            pids = []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
    remove_temp_files()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


# ================================================================ the main process


class StopHandler:
    """The stop signals' handler of a command-line run (see the module docstring). `signum` is the
    first stop signal received, or None."""

    def __init__(self, force_after: float = FORCE_AFTER) -> None:
        self.signum: int | None = None
        self.force_after = force_after
        self._since = 0.0
        self._exiting = False

    def __call__(self, signum: int, frame) -> None:
        if self.signum is None and not self._exiting:
            self.signum = signum
            self._since = time.monotonic()
            raise Interrupted(signum)
        if time.monotonic() - self._since > self.force_after:  # the clean-up is stuck: leave now
            force_exit(exit_status(self.signum or signum))

    def exiting(self) -> None:
        """The command is over and the process only exits now: a signal no longer raises (it would print
        a traceback from an exit handler); after FORCE_AFTER seconds one ends the process at once."""
        self._exiting = True
        self._since = time.monotonic()


def install(handler: StopHandler) -> dict:
    """Make `handler` the handler of every stop signal (main thread only; ignored signals stay ignored:
    `nohup`, a background job's SIGINT). Returns the previous handlers, for `restore`."""
    previous: dict = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for signum in STOP_SIGNALS:
        current = signal.getsignal(signum)
        if current == signal.SIG_IGN:
            continue
        previous[signum] = current
        signal.signal(signum, handler)
    return previous


def restore(previous: dict) -> None:
    for signum, current in previous.items():
        signal.signal(signum, current if current is not None else signal.SIG_DFL)


def ignore() -> None:
    """Ignore the stop signals from now on: for the interpreter's last moments. After the exit handlers
    Python resets its handlers to the default action, so a signal there would kill the process with a
    status that says nothing of the run (-2 for a second Ctrl-C); it is over already."""
    if threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


@contextlib.contextmanager
def stop_signals(handler: StopHandler | None = None) -> Iterator[StopHandler]:
    """Run the block with `handler` for every stop signal; the previous handlers come back at the end.
    Without `handler`: the StopHandler already installed (the command line installs one for the life
    of its process), else a new one. Outside the main thread signals cannot be handled: nothing changes."""
    if handler is None:
        handler = next((h for h in map(signal.getsignal, STOP_SIGNALS) if isinstance(h, StopHandler)), None)
        if handler is not None:
            yield handler
            return
    handler = handler or StopHandler()
    previous = install(handler)
    try:
        yield handler
    finally:
        restore(previous)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold the stop signals that Python handles (a raising handler) over the block, then deliver the
    first one through its handler, so the KeyboardInterrupt/Interrupted comes out after the block,
    never from the middle of it (a fork, torch's C++ while it builds tensors). Main thread only;
    signals whose handler is the default action or ignored are left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for signum in STOP_SIGNALS:
        current = signal.getsignal(signum)
        if callable(current):
            previous[signum] = current
            signal.signal(signum, lambda got, frame: caught.append(got))
    try:
        yield
    finally:
        for signum, current in previous.items():
            signal.signal(signum, current)
        if caught:
            previous[caught[0]](caught[0], None)


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Block the stop signals in this thread over the block (POSIX `pthread_sigmask`); one that arrives
    meanwhile is delivered when it ends. Unlike `deferred`, it holds a signal whose action is the
    default (it would end the process) and works in any thread: for a few system calls that must not
    be cut in the middle (a photo's renames into place)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# ================================================================ forked workers


def worker_signals(parent_pid: int) -> None:
    """In a forked worker, before its first photo: ignore SIGINT (the parent cancels through the run's
    shared event), stop on SIGTERM/SIGHUP deleting this worker's temporary files, and get SIGTERM
    when the parent dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for signum in STOP_SIGNALS:
        if signum != signal.SIGINT:
            signal.signal(signum, _worker_stop)
    die_with_parent(parent_pid)


def _worker_stop(signum: int, frame) -> None:
    remove_temp_files()
    os._exit(exit_status(signum))


def die_with_parent(parent_pid: int, signum: int = signal.SIGTERM) -> bool:
    """Ask Linux to send `signum` to this process when its parent dies (PR_SET_PDEATHSIG); when the
    parent is already gone, exit now. Returns whether the request was made (Linux only).

    Linux sends it when the *thread* that forked this process ends: the process engine forks from
    the parent's main thread (`ProcessRun._submit`), which lasts as long as the parent."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        made = libc.prctl(1, int(signum), 0, 0, 0) == 0  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent_pid:  # it died before the request: nothing would ever tell us
        os._exit(exit_status(signum))
    return made


__all__ = ["FORCE_AFTER", "Interrupted", "STOP_SIGNALS", "StopHandler", "blocked", "children", "deferred", "die_with_parent",
           "exit_status", "force_exit", "ignore", "install", "journal_temp_files", "remove_journaled", "remove_temp_files", "restore", "signal_name", "stop_signals",
           "temp_file", "worker_signals"]

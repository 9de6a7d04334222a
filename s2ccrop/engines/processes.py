"""The crop command on every CPU core: forked worker processes, each cropping whole photos.

    paths ─► plan (this process: walk, names, --skip-existing) ─► one photo per task ─► N forked
        processes, each with one model thread: decode → model → write ─► report (this process,
        input order)

Why processes: the model runs many small parallel operations, and with two intra-op threads each one
ends at a barrier that waits a whole time slice whenever anything else holds a core (our own decode
and write threads included). One single-threaded model per core, each on its own photo, has no
barrier to wait at: on the project's 2-core machine the CLI crops ~1.4x as many photos per second as
one process with two threads (bench/RESULTS.md).

The model is loaded once, here, before the fork, so the workers share its memory (copy-on-write) and
a checkpoint that cannot load fails the run once, with one message. Each worker sets its torch
threads before its first operation (libgomp cannot run a multi-threaded region in a forked child
whose parent already had one; PyTorch's DataLoader does the same). Every step is the batch engine's
(`BatchRun.decode`, `score`, `write`, `finish`), so photos are named, written and reported identically
and the chosen crops are the same. The first photo that decodes is cropped here (that loads the model, before
the fork; a batch of broken files never loads it), so a single photo never forks.

A worker that dies (a decoder crash, the OOM killer) breaks the pool: a new one is started and each
photo that was in flight is tried again; a photo whose worker dies twice fails with one line.

Stopping (`s2ccrop.interrupts`): workers ignore SIGINT; the parent, stopped by any signal (Ctrl-C,
SIGTERM, SIGHUP: a KeyboardInterrupt there), sets the shared cancel event and sends each worker SIGTERM,
on which a worker deletes the temporary file it is writing and exits; one that has not gone after a
grace period is killed, and the parent deletes what a killed worker left. A worker also gets SIGTERM
when the parent dies (PR_SET_PDEATHSIG), so none outlives it holding its stdout. Signals sent to the
whole process group (`timeout`, systemd, docker, a closed terminal) reach the workers directly: they
stop the same way.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import sys
import time
from collections import deque
from concurrent.futures import Future
from typing import Iterable, Iterator

from .. import envvars, interrupts
from ..batch import BatchRun, Env, Job, Settings

MAX_AUTO_PROCESSES = 8
STOP_GRACE = 5.0  # seconds a worker has to stop on SIGTERM before it is killed
_RUN: "ProcessRun | None" = None  # the run the forked workers inherit


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def can_fork() -> bool:
    """Forked workers are used on Linux only (macOS frameworks are not fork-safe; Windows cannot fork)."""
    import multiprocessing as mp

    return sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods()


def auto_processes() -> int:
    """Processes for `--jobs auto`: one per usable core, at most MAX_AUTO_PROCESSES."""
    return max(1, min(usable_cores(), MAX_AUTO_PROCESSES))


class ProcessRun(BatchRun):
    """A `BatchRun` whose photos are cropped by `processes` forked workers (CPU); results in input order."""

    def __init__(self, settings: Settings, env: Env | None, processes: int) -> None:
        super().__init__(settings, env)
        if processes < 2:
            raise ValueError("ProcessRun needs at least 2 processes; use BatchRun for one")
        self.processes = processes
        self._pool = None
        self._forked = False  # whether the current pool has started its workers

    def pipeline(self, jobs: Iterable[Job]) -> None:
        jobs = iter(jobs)
        # Up to the first photo that decodes, work here: the model loads only when there is something
        # to crop (a folder of broken files never loads it), and before any fork, so the workers
        # share it. That photo is cropped here too.
        for job in jobs:
            job = self.decode(job)
            if job.error:
                self.finish(job)
                continue
            cropper = self.load_cropper()
            self.finish(self.write(self.score(job)))
            break
        else:
            return
        following = next(jobs, None)
        if following is None:  # a single photo: forking would only add start-up
            return
        if cropper.device.type != "cpu":  # a GPU batches better in one process
            return super().pipeline(itertools.chain([following], jobs))
        self._run_pool(itertools.chain([following], jobs))

    def _run_pool(self, jobs: Iterator[Job]) -> None:
        global _RUN
        import multiprocessing as mp

        # Workers see Ctrl-C through this: an interrupted write is abandoned, as in the local engine.
        self.cancel_event = mp.get_context("fork").Event()
        _RUN = self
        # What the parent has made so far (torch, the model) goes to the permanent generation: the
        # workers' collections then never walk it, so they do not copy its pages (copy-on-write).
        gc.freeze()
        self._pool = self._new_pool()
        pending: deque = deque()  # (job, future or None) in input order
        ahead = 2 * self.processes  # photos in flight: bounds memory and keeps every worker fed
        try:
            with interrupts.children(self._worker_pids):
                try:
                    for job in jobs:
                        pending.append((job, None if job.error else self._submit(job)))
                        while len(pending) > ahead:
                            self.finish(self._collect(*pending.popleft()))
                    while pending:
                        self.finish(self._collect(*pending.popleft()))
                except BaseException:
                    self.cancel()
                    self._stop_workers()
                    for job, _ in pending:
                        _remove_temp_files(job)  # what a killed worker left
                    raise
                finally:
                    self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            _RUN = None

    def _worker_pids(self) -> list[int]:
        processes = getattr(self._pool, "_processes", None) or {}
        return [p.pid for p in list(processes.values()) if p.pid is not None]

    def _stop_workers(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM to every worker (each deletes its temporary file and exits), then SIGKILL to any
        still there after `grace` seconds: a stopped run leaves no process behind."""
        from multiprocessing.connection import wait

        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        for p in processes:
            with contextlib.suppress(Exception):
                p.terminate()
        waiting = {p.sentinel: p for p in processes}
        deadline = time.monotonic() + grace
        while waiting and time.monotonic() < deadline:
            for sentinel in wait(list(waiting), timeout=max(0.0, deadline - time.monotonic())):
                waiting.pop(sentinel, None)
        for p in waiting.values():
            with contextlib.suppress(Exception):
                p.kill()

    def _submit(self, job: Job) -> Future:
        from concurrent.futures.process import BrokenProcessPool

        try:
            if self._forked:
                return self._pool.submit(_crop_in_worker, job)
        except BrokenProcessPool:  # a worker died: the photos it took down are retried by _collect
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        # The first submit forks every worker. A Ctrl-C that lands inside fork()'s own handlers would
        # be printed and swallowed ("Exception ignored in _releaseLock"): hold it until the forks are
        # done. The children start with the holding handler too, until _init_worker replaces it.
        with interrupts.deferred():
            future = self._pool.submit(_crop_in_worker, job)
        self._forked = True
        return future

    def _new_pool(self):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self._forked = False
        threads = _worker_threads(self.processes)
        return ProcessPoolExecutor(self.processes, mp_context=mp.get_context("fork"),
                                   initializer=_init_worker, initargs=(threads, os.getpid()))

    def _collect(self, job: Job, future: Future | None, retried: bool = False) -> Job:
        """The finished job of `future` (None: nothing to run, e.g. a planning error)."""
        from concurrent.futures.process import BrokenProcessPool

        if future is None:
            return job
        try:
            return future.result()
        except BrokenProcessPool:
            _remove_temp_files(job)  # a write the dead worker had begun
            if retried:
                job.error = "the worker process cropping this photo died (twice); it was skipped"
                return job
            # Some photo in flight killed its worker; this one is tried again on a new pool (`_submit`
            # replaces the broken one) while it is the oldest in flight, so the culprit fails twice
            # and the photos it took down with it once.
            return self._collect(job, self._submit(job), retried=True)
        except Exception as exc:  # a bug of ours in a worker: this photo fails, the batch goes on
            job.error = f"internal error in a worker process: {type(exc).__name__}: {exc}"
            return job


def _remove_temp_files(job: Job) -> None:
    from ..io.writers import remove_temp_files

    for target in job.targets:
        remove_temp_files(target.output)


def _worker_threads(processes: int) -> int:
    """torch threads per worker: $S2CCROP_THREADS when set (the parent's Cropper has already checked
    it), else the usable cores shared out."""

    return envvars.threads() or max(1, usable_cores() // processes)


def _init_worker(threads: int, parent_pid: int) -> None:
    from ..api import set_threads

    # SIGINT ignored (the parent cancels through the shared event); SIGTERM/SIGHUP: delete this
    # worker's temporary file and exit; SIGTERM when the parent dies.
    interrupts.worker_signals(parent_pid)
    set_threads(threads)


def _crop_in_worker(job: Job) -> Job:
    assert _RUN is not None, "a worker process runs only under ProcessRun"
    job = _RUN.crop_one(job)
    job.decoded = None  # pixels never travel back
    return job

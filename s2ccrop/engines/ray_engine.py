"""The crop command on a Ray cluster: a Ray Data pipeline with one model per actor.

    paths (folders, files, a listing) ─► plan on the driver (the batch engine's walk, names, skip_existing)
        ─► decode (Ray tasks, in parallel) ─► crop (actor pool: each actor loads the model once;
        CPU actors, or GPU actors with num_gpus=1) ─► write (Ray tasks) ─► report + manifest (driver)

Ray Data fuses the decode step into CPU actors when it can (each actor then decodes its own photos,
still in parallel across actors, and pixels skip one trip through the object store); GPU actors ask for
a GPU that decode tasks do not, so there decoding stays on CPU tasks. The driver lists and plans photos
and puts them in the object store in growing blocks before the pipeline starts.

Every stage is a public step of the batch engine, `s2ccrop.batch.BatchRun` (`plan`, `decode`, `score`,
`write`, `finish`), run where Ray puts it. Each photo travels as one pickled `batch.Job`, so both
engines name, write and report crops identically and a bad photo becomes the same one-line error (never
a failed job). Only work the cluster cannot do per photo fails the run: the model cannot load (exit 2).

Resuming: with `--skip-existing` (`crop_with_ray` turns it on by default: `resume=True`) photos whose
outputs all exist are skipped before anything is shipped to the cluster, and the manifest is appended
to, so a re-run after a crash does only the rest and the manifest ends up listing every photo.

Paths are opened where each task runs: on a real cluster inputs and the output folder must be on
storage every node sees at the same path (NFS, a mounted bucket), and s2ccrop must be installed on
every node.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .. import envvars, interrupts
from ..batch import BatchRun, Env, Job, Settings, crop_record, one_line
from ..errors import ConfigError, S2CCropError
from . import check_address

DECODE_BATCH = 1  # photos per decode/write task batch: a full-resolution photo is already a big object
CROP_BATCH = 4  # photos per call of a model actor
FIRST_BLOCK, MAX_BLOCK = 4, 1024  # planned photos per input block: doubling from the first to the last


# ================================================================ the driver


class RayRun(BatchRun):
    """A `BatchRun` whose decode, score and write steps run as a Ray Data pipeline."""

    def __init__(
        self,
        settings: Settings,
        env: Env | None = None,
        *,
        address: str | None = None,
        actors: int | None = None,
        manifest: "str | os.PathLike[str] | None" = None,
    ) -> None:
        super().__init__(settings, env)
        self.address = address
        self.actors = actors
        self.manifest_path = manifest
        self._manifest = None

    def pipeline(self, jobs: Iterable[Job]) -> None:
        # Ray prints its workers' logs on this process's sys.stdout: keep stdout for results only.
        with self._open_manifest(), contextlib.redirect_stdout(self.env.stderr), contextlib.ExitStack() as stack:
            ray, blocks, journal = None, [], None
            for table in self._planned_tables(jobs):
                if ray is None:  # connect only when there is work: a finished job resumes in a blink
                    # Cleaned up after Ray has shut down (LIFO): the temporary files its killed write
                    # steps left (workers on other machines cannot write there: nothing to clean).
                    journal = stack.enter_context(_journal_folder())
                    ray = stack.enter_context(connect(self.address))
                    self._quiet_ray_data(ray)
                # The driver keeps only refs: a million planned photos (~0.8 kB each) wait in the
                # object store, which spills to disk, not in this process.
                blocks.append(ray.put(table))
            if blocks:
                for job in _run_dataset(ray, blocks, self.settings, self.actors, journal):
                    self.finish(job)

    def _planned_tables(self, jobs: Iterable[Job]) -> Iterator[object]:
        """Arrow tables with a "job" column of pickled `batch.Job`s, as the walk goes; walk errors and
        name clashes are reported here, before any work."""
        import pyarrow as pa

        pending: list[bytes] = []
        size = FIRST_BLOCK
        for job in jobs:
            if job.error:
                self.finish(job)
                continue
            pending.append(_pack_bytes(job))
            if len(pending) >= size:
                yield pa.table({"job": pa.array(pending, pa.binary())})
                pending = []
                size = min(2 * size, MAX_BLOCK)  # small first blocks: short runs still use every actor
        if pending:
            yield pa.table({"job": pa.array(pending, pa.binary())})

    # -- manifest: the --json records, plus one record per failed photo ---------------------------
    @contextlib.contextmanager
    def _open_manifest(self):
        if self.manifest_path is None:
            yield
            return
        path = os.fspath(self.manifest_path)
        if os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:  # append: a resumed run adds the photos it did
            self._manifest = fh
            try:
                yield
            finally:
                self._manifest = None

    def finish(self, job: Job) -> None:
        super().finish(job)
        if self._manifest is None:
            return
        if job.error:  # the schema's fields, empty, and the reason the error line gives
            records = [{"input": os.fspath(job.item.path), "ratio": None, "box": None, "width": None,
                        "height": None, "score": None, "output": None, "fit": None,
                        "error": one_line(job.error)}]
        else:
            records = [crop_record(job.item.path, crop, job.image_size, written, job.hints)
                       for crop, written in zip(job.crops, job.written)]
        self._manifest.writelines(json.dumps(r, ensure_ascii=True) + "\n" for r in records)
        self._manifest.flush()

    def _quiet_ray_data(self, ray) -> None:
        """Ray Data's progress bars only on a terminal, and its chatter off stderr unless asked for."""
        ctx = ray.data.DataContext.get_current()
        show = self.env.stderr_isatty and not self.settings.quiet
        ctx.enable_progress_bars = show
        ctx.print_on_execution_start = False
        if not show:
            logging.getLogger("ray.data").setLevel(logging.ERROR)


@contextlib.contextmanager
def connect(address: str | None) -> Iterator[object]:
    """Ray, connected: to `address` ("auto", "HOST:PORT", "ray://HOST:PORT"), to $RAY_ADDRESS, or to a
    Ray instance started here for this run. A connection made here is closed at the end.

    A run behaves as a local one: only s2ccrop's lines on stderr (Ray's own logging is off unless
    $S2CCROP_DEBUG is on), the stop signals keep s2ccrop's handlers (ray.init installs its own for
    SIGTERM), and an instance started here leaves no process and no session folder behind."""
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra)
    except ImportError as exc:
        raise ConfigError(f"--engine ray needs Ray Data: pip install 's2ccrop[ray]' ({exc})") from None
    if ray.is_initialized():  # a library caller connected already: use that cluster, leave it open
        yield ray
        return
    _check_reachable(address)
    debug = envvars.switch(envvars.DEBUG)
    kwargs: dict = {"logging_level": logging.INFO if debug else logging.ERROR, "configure_logging": True,
                    "log_to_driver": debug}  # errors and warnings of a photo travel on its Job
    local = address is None and not os.environ.get("RAY_ADDRESS")
    with contextlib.ExitStack() as stack:
        sessions: list[int] = []  # the sessions of the processes Ray starts here (see _own_sessions)
        if local:
            kwargs["include_dashboard"] = False
            # Under /tmp: Ray's Unix socket paths inside the session folder must stay under ~107 characters.
            kwargs["_temp_dir"] = stack.enter_context(
                _temporary_folder("s2ccrop-ray-", "/tmp" if os.path.isdir("/tmp") else None, keep := []))
            stack.callback(_end_sessions, sessions)  # after the shutdown: any process of them left
        try:
            # A stop signal while Ray starts is delivered once it has started, so that it is shut down.
            with _keep_stop_handlers(ray), _own_sessions(ray, sessions if local else None), interrupts.deferred():
                try:
                    ray.init(address=address, **kwargs)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    if local:
                        keep.append(True)  # the message names its log files: they stay
                    where = address or os.environ.get("RAY_ADDRESS") or "a new local instance"
                    raise ConfigError(f"cannot start or reach the Ray cluster ({where}): {one_line(exc)}") from None
            yield ray
        finally:
            with interrupts.deferred():  # a second signal must not cut the shutdown short
                ray.shutdown()


@contextlib.contextmanager
def _own_sessions(ray, sessions: list[int] | None) -> Iterator[None]:
    """The processes of a local instance (`sessions` is not None) start in sessions of their own
    (POSIX), listed in `sessions`. A signal to s2ccrop's process group (Ctrl-C, `kill -TERM -PGID`, a
    process manager) then reaches s2ccrop alone, which shuts them down in order; reaching them too,
    the raylet would die first and Ray would end s2ccrop at once with status 1. Ray's fate sharing
    still ends them with s2ccrop."""
    try:
        import ray._private.services as services
    except ImportError:
        services = None
    popen = getattr(services, "ConsolePopen", None)
    if sessions is None or popen is None or os.name != "posix":  # another Ray: they share our group
        yield
        return

    class SessionPopen(popen):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)
            sessions.append(self.pid)  # a session leader: its session's id is its pid

    services.ConsolePopen = SessionPopen
    try:
        yield
    finally:
        services.ConsolePopen = popen


@contextlib.contextmanager
def _keep_stop_handlers(ray) -> Iterator[None]:
    """ray.init installs a SIGTERM handler that exits at once (status 15, Ray left running): s2ccrop's
    handlers stay, and report and shut down as for any stop."""
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    setter = getattr(utils, "set_sigterm_handler", None)
    main = threading.current_thread() is threading.main_thread()
    before = {signum: signal.getsignal(signum) for signum in interrupts.STOP_SIGNALS} if main else {}
    if setter is not None:
        utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        if setter is not None:
            utils.set_sigterm_handler = setter
        for signum, handler in before.items():  # another Ray that sets it some other way
            if handler is not None and signal.getsignal(signum) is not handler:
                signal.signal(signum, handler)


def _end_sessions(sessions: list[int], grace: float = 2.0) -> None:
    """Wait up to `grace` seconds for the processes of `sessions` to end (ray.shutdown stops them; a
    worker of a raylet that died first may outlive it), then kill those left (Linux /proc)."""
    if not sessions:
        return
    deadline = time.monotonic() + grace
    while True:
        left = _processes_of(set(sessions))
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _processes_of(sessions: set[int]) -> list[int]:
    """The live processes (zombies aside) whose session is one of `sessions`."""
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 4 and fields[0] != b"Z" and int(fields[4]) in sessions:  # state, ppid, pgrp, session
            found.append(int(entry))
    return found


@contextlib.contextmanager
def _journal_folder() -> Iterator[str]:
    """A folder where each write step lists its temporary files (`interrupts.journal_temp_files`); at
    the end those still there are deleted, with the folder."""
    with _temporary_folder("s2ccrop-journal-") as folder:
        try:
            yield folder
        finally:
            interrupts.remove_journaled(folder)


@contextlib.contextmanager
def _temporary_folder(prefix: str, under: str | None = None, keep: list = ()) -> Iterator[str]:
    """A fresh folder, deleted at the end unless `keep` is not empty by then (an instance that could not
    start: its logs say why)."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix=prefix, dir=under)
    try:
        yield folder
    finally:
        for _ in range(0 if keep else 20):  # processes that are ending may still write their last log lines
            shutil.rmtree(folder, ignore_errors=True)
            if not os.path.exists(folder):
                break
            time.sleep(0.05)


def _check_reachable(address: str | None, timeout: float = 10.0) -> None:
    """Fail in seconds, not minutes, when nothing listens at HOST:PORT (ray.init would keep retrying)."""
    import socket

    if not address or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {reason.lower()}") from None


# ================================================================ the pipeline


@dataclass(frozen=True)
class ActorPlan:
    """How many model actors, and what each asks Ray for."""

    min_size: int
    max_size: int
    num_gpus: float
    device: str  # the device as seen inside the actor


def plan_actors(settings: Settings, resources: dict, actors: int | None) -> ActorPlan:
    """GPU actors (one GPU each) for --device cuda, or auto on a cluster with GPUs; CPU actors otherwise.

    `actors` fixes the pool size; None lets it grow from 1 to one per GPU (or per CPU, less one CPU
    left for decoding and writing).
    """
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    want_gpu = settings.device.startswith("cuda") or (settings.device == "auto" and gpus > 0)
    if want_gpu and gpus == 0:
        raise ConfigError(f"--device {settings.device}: the Ray cluster has no GPUs (use --device cpu or auto)")
    # Ray gives each GPU actor its own CUDA_VISIBLE_DEVICES, so inside it the GPU is always cuda:0.
    device, limit = ("cuda", gpus) if want_gpu else ("cpu", max(1, cpus - 1))
    if actors:
        return ActorPlan(actors, actors, 1 if want_gpu else 0, device)
    return ActorPlan(1, limit, 1 if want_gpu else 0, device)


def _run_dataset(ray, blocks: list, settings: Settings, actors: int | None, journal: str | None) -> Iterator[Job]:
    plan = plan_actors(settings, ray.cluster_resources(), actors)
    for batch in build_dataset(ray, blocks, settings, plan, journal).iter_batches(batch_size=CROP_BATCH, batch_format="numpy"):
        for blob in batch["job"]:
            job = _unpack(blob)
            if job.fatal is not None:  # the model could not load: no photo can be cropped (exit 2, as local)
                raise job.fatal
            yield job


def build_dataset(ray, blocks: list, settings: Settings, plan: ActorPlan, journal: str | None = None):
    """The lazy Ray Data pipeline over planned jobs: refs of Arrow tables with a "job" column of
    pickled `batch.Job`s. `journal`: a folder where the write steps list their temporary files."""
    ds = ray.data.from_arrow_refs(blocks)
    ds = ds.map_batches(_decode_batch, fn_kwargs={"settings": settings}, batch_size=DECODE_BATCH, num_cpus=1)
    with warnings.catch_warnings():
        # max_restarts is passed as a remote argument, which Ray Data calls deprecated; it has no
        # named parameter for it yet.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        ds = ds.map_batches(
            CropActor,
            fn_constructor_kwargs={"settings": settings, "device": plan.device},
            compute=ray.data.ActorPoolStrategy(min_size=plan.min_size, max_size=plan.max_size),
            batch_size=CROP_BATCH,
            num_cpus=1,
            num_gpus=plan.num_gpus,
            # A dead actor is not restarted: its constructor arguments live in the object store and may
            # be gone (Ray logs an error line about it otherwise). The run fails; a re-run resumes.
            max_restarts=0,
        )
    return ds.map_batches(_write_batch, fn_kwargs={"settings": settings, "journal": journal},
                          batch_size=DECODE_BATCH, num_cpus=1)


# ================================================================ the workers


def _worker_run(settings: Settings) -> BatchRun:
    """A `BatchRun` inside a Ray worker, for its steps, with messages to this worker's stderr. Preview
    tiles are drawn here (`write`) and added to the driver's sheet (`finish`)."""
    from ..io.images import batch_pillow

    batch_pillow()  # as BatchRun.execute does
    return BatchRun(settings, Env(None, sys.stderr, sys.stderr, False))


def _decode_batch(batch: dict, settings: Settings) -> dict:
    return _map_jobs(batch, _worker_run(settings).decode)


def _write_batch(batch: dict, settings: Settings, journal: str | None) -> dict:
    if journal is not None:  # a local instance: its workers may be killed outright when it shuts down
        interrupts.journal_temp_files(os.path.join(journal, str(os.getpid())))
    return _map_jobs(batch, _worker_run(settings).write)


class CropActor:
    """One model per actor, loaded once; scores the photos of each batch it is given.

    A model that cannot load (bad --weights) is not raised here, where Ray would retry the actor and
    then report it as a bare ActorDiedError: it rides back on the photos to the driver, which stops the
    run with the local engine's one-line error and exit status 2.
    """

    def __init__(self, settings: Settings, device: str) -> None:
        import dataclasses

        import torch

        if device == "cpu":
            # One thread per actor: the pool, not torch, spreads the work over the node's CPUs.
            torch.set_num_threads(1)
        self.run = _worker_run(dataclasses.replace(settings, device=device))
        self.fatal: S2CCropError | None = None
        try:
            self.run.load_cropper()
        except S2CCropError as exc:
            self.fatal = exc

    def __call__(self, batch: dict) -> dict:
        return _map_jobs(batch, self._score)

    def _score(self, job: Job) -> Job:
        if self.fatal is None:
            try:
                return self.run.score(job)
            except S2CCropError as exc:  # WeightsError: BatchRun.score lets it end the run
                self.fatal = exc
        job.decoded = None
        job.fatal = self.fatal
        return job


def _map_jobs(batch: dict, step) -> dict:
    return {"job": _column([_pack_bytes(step(_unpack(blob))) for blob in batch["job"]])}


def _pack_bytes(job: Job) -> bytes:
    return pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(blob) -> Job:
    return pickle.loads(bytes(blob))


def _column(blobs: Sequence[bytes]) -> np.ndarray:
    column = np.empty(len(blobs), dtype=object)
    column[:] = blobs
    return column


# ================================================================ library entry point


@dataclass
class RayResult:
    exit_status: int  # as the command line's: 0 all done, 1 some photos failed
    counts: dict  # photos, written, failed, skipped


def crop_with_ray(
    paths: Sequence["str | os.PathLike[str]"] = (),
    *,
    listing: "str | os.PathLike[str] | None" = None,
    manifest: "str | os.PathLike[str] | None" = None,
    address: str | None = None,
    actors: int | None = None,
    resume: bool = True,
    **options: Any,
) -> RayResult:
    """Crop `paths` (photos, folders) and/or the photos named in `listing` (one path per line) on Ray.

    `options` are `s2ccrop.batch.Settings` keywords: `ratios=["16:9", "1:1"]`, `output="thumbs"`,
    `width=1080`, `weights=...`, `json=True`, ... The manifest gets one JSON line per (photo, ratio) in
    the `--json` schema, and one with an "error" per failed photo. `resume` skips photos whose outputs
    all exist (`skip_existing`). `address`: "auto", HOST:PORT or ray://HOST:PORT (default
    $RAY_ADDRESS, else a Ray instance started for the run); `actors` fixes the model pool's size.
    Raises ConfigError for bad options, and for a model that cannot load (WeightsError).
    """
    if address is not None:
        try:
            check_address(address)
        except ValueError as exc:
            raise ConfigError(f"address: {exc}") from None
    inputs = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
    if listing is not None:
        inputs.append("-")
    options["skip_existing"] = options.get("skip_existing", False) or resume
    settings = Settings(inputs, **options)
    with contextlib.ExitStack() as stack:
        stdin = stack.enter_context(open(listing, "rb")) if listing is not None else None
        env = Env(stdin, io.StringIO(), sys.stderr, False)
        run = RayRun(settings, env, address=address, actors=actors, manifest=manifest)
        status = run.execute()
    return RayResult(status, dict(run.counts))


__all__ = ["ActorPlan", "CropActor", "RayResult", "RayRun", "build_dataset", "connect",
           "crop_with_ray", "plan_actors"]

"""Engines: where the batch engine's steps (`s2ccrop.batch.BatchRun`) run.

- the local engine: `BatchRun` itself (one process: decode and write threads around the model), or
  `processes.ProcessRun` (forked worker processes, one per CPU core); `local_run` picks one.
- `ray_engine`: a Ray Data pipeline (decode tasks → one model per actor → write tasks) for a cluster;
  needs the optional extra `pip install 's2ccrop[ray]'`. `s2ccrop PATH... --engine ray` uses it.

Every engine runs the same public steps (plan, decode, score, write, finish), so all of them name,
write and report crops identically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..batch import BatchRun, Env, Settings

ENGINES = ("local", "ray")


def local_run(settings: "Settings", env: "Env | None" = None) -> "BatchRun":
    """This machine's engine: forked worker processes on a multi-core Linux CPU (`settings.jobs`, by
    default one per core), else one process with decode/write threads."""
    from ..batch import BatchRun
    from .processes import ProcessRun, auto_processes, can_fork

    processes = settings.jobs if settings.jobs is not None else auto_processes()
    if processes > 1 and settings.device in ("auto", "cpu") and can_fork():
        return ProcessRun(settings, env, processes)
    return BatchRun(settings, env)


def check_address(text: str) -> str:
    """A Ray address: 'auto', HOST:PORT or ray://HOST:PORT; ValueError otherwise."""
    if text == "auto":
        return text
    hostport = text[len("ray://"):] if text.startswith("ray://") else text
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected auto, HOST:PORT or ray://HOST:PORT, not {text!r}")
    return text

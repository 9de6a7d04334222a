"""The command line's entry point: `run()` (the `s2ccrop` script and `python -m s2ccrop`) and
`main(argv, env)`, which returns the exit status.

    cli/__init__.py  run(), main(): --version, one-line errors, exit statuses, the fast exit
    cli/rules.py     which command an argument list runs (crop is the default; see there)
    cli/commands.py  the Typer app: the commands, their options and help, info/weights output

`--version` is answered before anything heavier than this package loads (no typer, Pillow or
torch); everything else goes to the Typer app, imported then.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING

from .. import envvars, interrupts
from .rules import SUBCOMMANDS, asks_version

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Env

# Only light modules above: a stop signal is s2ccrop's to report from the first line of run() on, and
# until then Python's default (a KeyboardInterrupt traceback), so the time before run() is kept short.
# The rest (the batch engine's statuses, report's streams) loads inside main, under the handler.

DEBUG_ENV = envvars.DEBUG  # on: unexpected errors show their traceback instead of one line

__all__ = ["DEBUG_ENV", "SUBCOMMANDS", "main", "run"]


def main(argv: list[str] | None = None, env: Env | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 some inputs failed, 2 usage; stopped by a
    signal: 128 + its number, 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP). Stop signals are handled for the
    call (`interrupts.stop_signals`): the first one stops the command and cleans up, as Ctrl-C does."""
    with interrupts.stop_signals() as stop:
        try:
            return _main(argv, env, stop)
        except KeyboardInterrupt:  # a stop signal before _main could catch it (while loading)
            return _stopped(env, stop.signum or signal.SIGINT)


def _main(argv: list[str] | None, env: Env | None, stop: interrupts.StopHandler) -> int:
    from .. import __version__
    from ..report import PROG, Env, display, one_line

    env = env or Env.from_sys()
    argv = list(sys.argv[1:] if argv is None else argv)
    if asks_version(argv):
        env.stdout.write(f"{PROG} {__version__}\n")
        env.stdout.flush()
        return 0
    from ..batch import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
    from ..errors import S2CCropError

    local_crop_done = False
    try:
        # Help and completion scripts are printed on sys.stdout: route them to env's streams.
        with contextlib.redirect_stdout(env.stdout), contextlib.redirect_stderr(env.stderr), _one_line_warnings():
            from .commands import invoke

            code, local_crop_done = invoke(argv, env)
    except KeyboardInterrupt:  # Ctrl-C, or interrupts.Interrupted for any stop signal: reported below
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        code = EXIT_FAILED  # the reader went away before every result was delivered
    except S2CCropError as exc:  # ConfigError, WeightsError and the like: the tool cannot run
        _safe_write(env.stderr, f"{PROG}: error: {one_line(exc)}\n")
        code = EXIT_USAGE
    except OSError as exc:  # the system refused something the command needs (a file, a folder): not our bug
        if envvars.switch(DEBUG_ENV):
            raise
        where = f"{display(exc.filename)}: " if exc.filename else ""
        _safe_write(env.stderr, f"{PROG}: error: {where}{one_line(exc.strerror or exc)}\n")
        code = EXIT_USAGE
    except SystemExit as exc:  # a pass-through command's own argparse: --help, usage errors
        code = exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    except Exception as exc:  # a bug of ours: one line for the user, the traceback on request
        if envvars.switch(DEBUG_ENV):
            raise
        _safe_write(env.stderr, f"{PROG}: internal error: {type(exc).__name__}: {one_line(exc)} "
                                f"(run with {DEBUG_ENV}=1 for the traceback, and please report it)\n")
        code = EXIT_USAGE
    if stop.signum is not None or code == EXIT_INTERRUPTED:
        # Stopped by a signal, whatever came out of the clean-up: the status says which signal.
        return _stopped(env, stop.signum or signal.SIGINT)
    if local_crop_done:  # every output was written and closed: run() may skip the teardown
        _FAST_EXIT["ok"] = True
    return code


_FAST_EXIT = {"ok": False}  # set once the local crop command has finished (see run)


def run() -> None:
    """The console script and `python -m s2ccrop`: `main()`, then, after the local crop command, exit
    without tearing the interpreter down (after torch has loaded, Python's own shutdown is a large
    part of a single crop). Every output was already written and closed, worker pools shut down; here
    the streams are flushed and the atexit handlers run (logging, multiprocessing), then the process
    ends. A flush that fails (the reader of stdout went away) makes the exit status 1, as the
    interpreter's own exit would."""
    from .. import _held_signals

    stop = _handle_stop_signals_for_good()  # first: from here on a stop signal is reported as ours
    try:
        if _held_signals:  # one arrived while the command loaded (see s2ccrop/__init__.py)
            stop(_held_signals[0], None)
        _reopen_closed_standard_streams()
        code = main()  # uses `stop`
    except KeyboardInterrupt:  # a signal between the two
        code = _stopped(None, stop.signum or signal.SIGINT)
    stop.exiting()
    if not _FAST_EXIT["ok"] or sys.getprofile() is not None or sys.gettrace() is not None:
        # Only the local crop command, whose files are all written and closed by now, skips the
        # teardown (other subcommands may leave buffered files to it); a profiler or debugger
        # (`python -m cProfile -m s2ccrop`) writes its results after this returns.
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1  # EXIT_FAILED
    import atexit

    atexit._run_exitfuncs()
    os._exit(code)


def _reopen_closed_standard_streams() -> None:
    """A standard stream the caller closed (`s2ccrop ... >&-`) reads as empty and writes nowhere, as
    Python's own print treats it. Its descriptor is pointed at the null device first: left closed, the
    next file opened (an output among them) would take its number, and whatever a library writes to
    that stream would land in the file."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own stream)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115


def _handle_stop_signals_for_good() -> interrupts.StopHandler:
    """This process's stop-signal handler, installed for its whole life (`main` finds and uses it):
    after the command, a late signal must not come out of an exit handler as a traceback."""
    import atexit

    stop = interrupts.StopHandler()
    interrupts.install(stop)
    atexit.register(interrupts.ignore)  # registered first, so it runs last (see interrupts.ignore)
    return stop


@contextlib.contextmanager
def _one_line_warnings():
    """A library warning that reaches stderr (one not tied to a photo: those are the photo's warning
    line) is one `s2ccrop: warning: ...` line, without the library's file name and source line. One
    raised in a thread that notes its warnings is noted, even where a library's catch_warnings has
    put Python's own hook back (`s2ccrop._warnings`)."""
    import warnings

    from .._warnings import note
    from ..report import PROG, one_line

    previous = warnings.formatwarning
    warnings.formatwarning = lambda message, category, filename, lineno, line=None: (
        "" if note(message, category) else f"{PROG}: warning: {one_line(message)}\n")
    try:
        yield
    finally:
        warnings.formatwarning = previous


def _stopped(env: "Env | None", signum: int) -> int:
    """Say that a stop signal ended the command (one line on stderr); its exit status."""
    from ..report import PROG

    what = "interrupted" if signum == signal.SIGINT else f"stopped by {interrupts.signal_name(signum)}"
    _safe_write(env.stderr if env is not None else sys.stderr, f"{PROG}: {what}\n")
    return interrupts.exit_status(signum)


def _safe_write(stream, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    # Python would report a second BrokenPipeError while flushing stdout at exit; point it at devnull.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass

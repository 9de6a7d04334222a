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
import sys

from .. import __version__
from ..batch import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, Env, display, one_line
from ..errors import S2CCropError
from .rules import SUBCOMMANDS, asks_version

DEBUG_ENV = "S2CCROP_DEBUG"  # set: unexpected errors show their traceback instead of one line

__all__ = ["DEBUG_ENV", "SUBCOMMANDS", "main", "run"]


def main(argv: list[str] | None = None, env: Env | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 some inputs failed, 2 usage, 130 Ctrl-C)."""
    env = env or Env.from_sys()
    argv = list(sys.argv[1:] if argv is None else argv)
    if asks_version(argv):
        env.stdout.write(f"{PROG} {__version__}\n")
        env.stdout.flush()
        return EXIT_OK
    try:
        # Help and completion scripts are printed on sys.stdout: route them to env's streams.
        with contextlib.redirect_stdout(env.stdout), contextlib.redirect_stderr(env.stderr), _one_line_warnings():
            from .commands import invoke

            code, local_crop_done = invoke(argv, env)
    except KeyboardInterrupt:
        _safe_write(env.stderr, f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_FAILED  # the reader went away before every result was delivered
    except S2CCropError as exc:  # ConfigError, WeightsError and the like: the tool cannot run
        _safe_write(env.stderr, f"{PROG}: error: {one_line(exc)}\n")
        return EXIT_USAGE
    except OSError as exc:  # the system refused something the command needs (a file, a folder): not our bug
        if os.environ.get(DEBUG_ENV):
            raise
        where = f"{display(exc.filename)}: " if exc.filename else ""
        _safe_write(env.stderr, f"{PROG}: error: {where}{one_line(exc.strerror or exc)}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # a pass-through command's own argparse: --help, usage errors
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    except Exception as exc:  # a bug of ours: one line for the user, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        _safe_write(env.stderr, f"{PROG}: internal error: {type(exc).__name__}: {one_line(exc)} "
                                f"(run with {DEBUG_ENV}=1 for the traceback, and please report it)\n")
        return EXIT_USAGE
    if local_crop_done:  # every output was written and closed: run() may skip the teardown
        _FAST_EXIT["ok"] = True
    return code


_FAST_EXIT = {"ok": False}  # set once the local crop command has finished (see run)


def run() -> None:
    """The console script and `python -m s2ccrop`: `main()`, then, after the local crop command, exit
    without tearing the interpreter down. After torch has loaded, Python's own shutdown (module
    teardown, a final garbage collection, the C++ destructors of torch's libraries) takes ~0.5 s of a
    single crop's ~2.5 s. Every output was already written and closed, worker pools shut down; here
    the streams are flushed and the atexit handlers run (logging, multiprocessing), then the process
    ends. A flush that fails (the reader of stdout went away) makes the exit status 1, as the
    interpreter's own exit would."""
    import atexit

    code = main()
    if not _FAST_EXIT["ok"] or sys.getprofile() is not None or sys.gettrace() is not None:
        # Only the local crop command, whose files are all written and closed by now, skips the
        # teardown (other subcommands may leave buffered files to it); a profiler or debugger
        # (`python -m cProfile -m s2ccrop`) writes its results after this returns.
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or EXIT_FAILED
    atexit._run_exitfuncs()
    os._exit(code)


@contextlib.contextmanager
def _one_line_warnings():
    """A library warning that reaches stderr (one not tied to a photo: those are the photo's warning
    line) is one `s2ccrop: warning: ...` line, without the library's file name and source line."""
    import warnings

    previous = warnings.formatwarning
    warnings.formatwarning = lambda message, category, filename, lineno, line=None: (
        f"{PROG}: warning: {one_line(message)}\n")
    try:
        yield
    finally:
        warnings.formatwarning = previous


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

"""The command line's entry point: `run()` (the `s2ccrop` script and `python -m s2ccrop`) and
`main(argv, env)`, which returns the exit status.

`--version` is answered here before anything heavier than this package loads (no typer, Pillow or
torch). Everything else is the Typer app in `cli.commands`; this module keeps the parts every
command shares: the subcommand rule, one-line errors, exit statuses and the fast exit.

Subcommand rule: a subcommand (crop, weights, info, preview, train, eval) is recognised only as the
very first argument, and there it always wins, even over a file or folder of that name (this
repository itself has a weights/ folder, and `s2ccrop weights list` must work in it). To crop such a
path write it as `./weights`, after `--` (`s2ccrop -- weights`), or after any option. Anything else is
the crop command, the default: `s2ccrop photo.jpg -r 16:9` is `s2ccrop crop photo.jpg -r 16:9`.
"""

from __future__ import annotations

import contextlib
import os
import sys

from .. import __version__
from ..batch import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, Env, one_line
from ..errors import S2CCropError

DEBUG_ENV = "S2CCROP_DEBUG"  # set: unexpected errors show their traceback instead of one line
SUBCOMMANDS = ("crop", "weights", "info", "preview", "train", "eval")
# Options of the command line itself (not of a subcommand); `--show-completion=bash` counts too.
TOP_LEVEL_OPTIONS = ("-h", "--help", "--version", "--install-completion", "--show-completion")

__all__ = ["DEBUG_ENV", "SUBCOMMANDS", "main", "run", "with_default_command"]


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
        with contextlib.redirect_stdout(env.stdout), contextlib.redirect_stderr(env.stderr):
            from .commands import invoke

            return invoke(argv, env)
    except KeyboardInterrupt:
        _safe_write(env.stderr, f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_FAILED  # the reader went away before every result was delivered
    except S2CCropError as exc:  # ConfigError, WeightsError and the like: the tool cannot run
        _safe_write(env.stderr, f"{PROG}: error: {one_line(exc)}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # a pass-through command's own argparse: --help, usage errors
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    except Exception as exc:  # a bug of ours: one line for the user, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        _safe_write(env.stderr, f"{PROG}: internal error: {type(exc).__name__}: {one_line(exc)} "
                                f"(run with {DEBUG_ENV}=1 for the traceback, and please report it)\n")
        return EXIT_USAGE


def asks_version(argv: list[str]) -> bool:
    """`s2ccrop --version`, also among the crop command's arguments (not after `--`, not a subcommand's)."""
    if argv[:1] == ["--version"]:
        return True
    if not argv or argv[0] in SUBCOMMANDS:
        return False
    return "--version" in (argv[: argv.index("--")] if "--" in argv else argv)


def with_default_command(args: list[str]) -> list[str]:
    """The subcommand rule (see the module docstring): `args` with "crop" in front unless they start
    with a subcommand or an option of the command line itself."""
    if args and (args[0] in SUBCOMMANDS or args[0].split("=", 1)[0] in TOP_LEVEL_OPTIONS):
        return args
    return ["crop", *args]


_FAST_EXIT = {"ok": False}  # set by the local crop command once it has finished (see run)


def crop_finished() -> None:
    """The local crop command has written and closed every output: `run()` may skip the teardown."""
    _FAST_EXIT["ok"] = True


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

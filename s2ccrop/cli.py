"""The command line: parse arguments, call `Cropper`, write files, report.

Only the standard library and light s2ccrop modules are imported at start-up; Pillow, rich and torch
load when a command needs them, so `s2ccrop --version` and `--help` answer at once.

Subcommand rule: a subcommand (weights, info, preview, train, eval) is recognised only as the very first
argument, and there it always wins, even over a file or folder of that name (this repository itself has
a weights/ folder, and `s2ccrop weights list` must work in it). To crop such a path write it as
`./weights`, after `--` (`s2ccrop -- weights`), or after any option. Everything else is the crop command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, TextIO

from . import __version__
from .errors import ConfigError, S2CCropError, WeightsError
from .engines import ENGINES, check_address
from .io.paths import DEFAULT_TEMPLATE, InputPath, WalkError, check_distinct, check_template, iter_inputs
from .io.paths import output_path, render_name
from .presets import RatioRequest, preset_table, resolve_ratios
from .types import Ratio

PROG = "s2ccrop"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
DEBUG_ENV = "S2CCROP_DEBUG"  # set: unexpected errors show their traceback instead of one line
DEFAULT_WORKERS = 2


# ================================================================ environment and reporting


@dataclass
class Env:
    """The streams a run talks to; tests swap them (httpie's Environment idea)."""

    stdin: object = None  # a binary stream
    stdout: TextIO = None  # type: ignore[assignment]
    stderr: TextIO = None  # type: ignore[assignment]
    stderr_isatty: bool = False

    @classmethod
    def from_sys(cls) -> "Env":
        stdin = getattr(sys.stdin, "buffer", sys.stdin)
        isatty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        return cls(stdin, sys.stdout, sys.stderr, isatty)


def display(path: "str | os.PathLike[str]") -> str:
    """A path fit for one line: control characters (a newline in a name) shown escaped."""
    text = os.fspath(path)
    if any(ord(c) < 32 or c == "\x7f" for c in text):
        text = text.encode("unicode_escape", "backslashreplace").decode("ascii")
    return text


class Reporter:
    """stdout gets results only; errors, warnings, the summary and the progress bar go to stderr."""

    def __init__(self, env: Env, *, quiet: bool = False, progress: bool = False) -> None:
        self.env = env
        self.quiet = quiet
        self._bar = None
        self._task = None
        if progress and env.stderr_isatty and not quiet:
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = Console(file=self.env.stderr, stderr=True)
        self._bar = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
        )
        self._task = self._bar.add_task("cropping", total=None)
        self._bar.start()

    def advance(self, seen: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _stderr(self, line: str) -> None:
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            self.env.stderr.write(line + "\n")
            self.env.stderr.flush()

    def error(self, path: "str | os.PathLike[str] | None", reason: str) -> None:
        where = f"{display(path)}: " if path is not None else ""
        self._stderr(f"{PROG}: error: {where}{_one_line(reason)}")

    def warn(self, message: str) -> None:
        self._stderr(f"{PROG}: warning: {_one_line(message)}")

    def note(self, message: str) -> None:
        if not self.quiet:
            self._stderr(f"{PROG}: {message}")

    def result(self, line: str) -> None:
        out = self.env.stdout
        try:
            out.write(line + "\n")
        except UnicodeEncodeError:  # an undecodable file name on a strict stream
            out.write(line.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")
        out.flush()


def _one_line(text: str) -> str:
    return " ".join(str(text).split("\n")).strip()


# ================================================================ entry point


def main(argv: list[str] | None = None, env: Env | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 some inputs failed, 2 usage, 130 Ctrl-C)."""
    env = env or Env.from_sys()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # argparse prints help and usage errors on sys.stdout/sys.stderr: route them to env's streams.
        with contextlib.redirect_stdout(env.stdout), contextlib.redirect_stderr(env.stderr):
            return _dispatch(argv, env)
    except KeyboardInterrupt:
        _safe_write(env.stderr, f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_FAILED  # the reader went away before every result was delivered
    except S2CCropError as exc:  # ConfigError, WeightsError and the like: the tool cannot run
        _safe_write(env.stderr, f"{PROG}: error: {_one_line(str(exc))}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_USAGE)
    except Exception as exc:  # a bug of ours: one line for the user, the traceback on request
        if os.environ.get(DEBUG_ENV):
            raise
        _safe_write(env.stderr, f"{PROG}: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
                                f"(run with {DEBUG_ENV}=1 for the traceback, and please report it)\n")
        return EXIT_USAGE


_FAST_EXIT = {"ok": False}  # set by the local crop command once it has finished (see run)


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


def _dispatch(argv: list[str], env: Env) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:], env)
    return crop_command(argv, env)


def _safe_write(stream: TextIO, text: str) -> None:
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


# ================================================================ the crop command

EXAMPLES = """\
examples:
  s2ccrop photo.jpg -r 16:9                    best 16:9 crop -> photo_16x9.jpg beside it
  s2ccrop ~/Pictures -o thumbs -r phone -r desktop --width 1080
  s2ccrop shots/ -r square --size 512x512 --format webp --json > crops.jsonl
  find . -name '*.jpg' -print0 | s2ccrop - -0 -o out --skip-existing
  s2ccrop trip/ --dry-run --preview sheet.jpg  look at the choices, write nothing else
  s2ccrop weights list | s2ccrop info

subcommands (only as the first argument; to crop a folder named like one, write ./NAME or -- NAME):
  weights   list | path [NAME] | import FILE [--name N] | verify [NAME...] | download NAME
  info      versions, device, compiled ops, cache dir, default weights
  preview   PATH... [-o FILE]: draw every ratio's crop over the photos (a contact sheet)
  train, eval   training and evaluation (when installed)

inputs: files are always tried; in folders only image files (jpg, png, webp, tif, bmp, gif, ...) are
taken, hidden names and symlinked folders are skipped. '-' reads paths from stdin, one per line
(-0: NUL-separated).

outputs: one file per (photo, ratio) named by --name (default {stem}_{ratio}.{ext}: photo_16x9.jpg,
photo_1.91x1.jpg, photo_any.jpg). Without -o they go beside each photo; with -o the folder tree of each
folder argument is mirrored below OUT (a file argument goes straight into OUT). An input is never
overwritten. Template fields: {stem} {ratio} {preset} {ext}; '/' makes subfolders.

exit status: 0 all done, 1 some inputs failed, 2 usage/configuration/weights error, 130 interrupted.
environment: S2CCROP_CACHE (cache dir), S2CCROP_OFFLINE=1 (never download), S2CCROP_MANIFEST (extra
weights registry), S2CCROP_DEBUG=1 (show the traceback of an internal error).
"""


def build_crop_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        usage=f"{PROG} [options] PATH [PATH ...]\n       {PROG} {{weights,info,preview,train,eval}} ...",
        description="Crop photos to every aspect ratio you need with a learned model (S2CNet).",
        epilog=EXAMPLES + "\nratio presets (-r NAME):\n" + preset_table() + "\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="photo, folder, or - for paths on stdin")
    p.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    g = p.add_argument_group("what to crop")
    g.add_argument("-r", "--ratio", action="append", metavar="RATIO",
                   help="W:H (16:9, 1.91:1), 'any', a preset or group (repeatable; default: the 'default' group)")
    g.add_argument("--no-recursive", action="store_true", help="do not descend into subfolders")
    g.add_argument("-0", "--null", action="store_true", help="paths on stdin are NUL-separated (find -print0)")
    g.add_argument("--max-pixels", type=_nonneg_int, default=None, metavar="N",
                   help="refuse images with more pixels (default 150000000; 0 = no limit)")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--out", metavar="DIR", help="output folder (mirrors the input tree); default: beside each photo")
    o.add_argument("--name", default=DEFAULT_TEMPLATE, metavar="TEMPLATE", help=f"output name (default {DEFAULT_TEMPLATE})")
    size = o.add_mutually_exclusive_group()
    size.add_argument("--size", metavar="WxH", help="exact output pixels; sets the ratio when no -r is given")
    size.add_argument("--width", type=_positive_int, metavar="W", help="output width; height follows the ratio")
    size.add_argument("--height", type=_positive_int, metavar="H", help="output height; width follows the ratio")
    o.add_argument("--upscale", action="store_true", help="enlarge crops smaller than the asked size (default: never)")
    o.add_argument("--format", default="same", type=str.lower, choices=("same", "jpg", "png", "webp"),
                   help="output format (default: same as the input)")
    o.add_argument("--quality", type=_quality, default=90, metavar="Q", help="jpg/webp quality 1-100 (default 90)")
    o.add_argument("--skip-existing", action="store_true", help="leave existing outputs untouched (re-runs are no-ops)")
    o.add_argument("--dry-run", action="store_true", help="decide and report, write nothing")
    o.add_argument("--preview", metavar="FILE", help="also write FILE: every crop drawn over its photo (contact sheet)")
    r = p.add_argument_group("reporting")
    r.add_argument("--json", action="store_true", help="one JSON object per (photo, ratio) on stdout")
    r.add_argument("-q", "--quiet", action="store_true", help="no result lines in text mode, no summary")
    m = p.add_argument_group("model")
    m.add_argument("--weights", metavar="NAME|PATH", help="registry name or checkpoint file (default: built in)")
    m.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    m.add_argument("--no-face-guard", dest="face_guard", action="store_false",
                   help="allow crops that cut through a detected face (by default they lose to any crop that does not)")
    m.add_argument("-j", "--jobs", type=_jobs, default=None, metavar="N",
                   help="processes cropping photos in parallel on CPU, each with its own model thread "
                        "(default: one per core, at most 8; 1 = this process only)")
    m.add_argument("--workers", type=_nonneg_int, default=DEFAULT_WORKERS, metavar="N",
                   help=f"with --jobs 1 or a GPU: threads decoding/writing while the model runs "
                        f"(default {DEFAULT_WORKERS}; 0 = none)")
    e = p.add_argument_group("engine")
    e.add_argument("--engine", default="local", choices=ENGINES,
                   help="local: this process; ray: a Ray Data pipeline, one model per actor, sized by the "
                        "cluster (--workers and --jobs do not apply; pip install 's2ccrop[ray]')")
    e.add_argument("--address", type=check_address, metavar="auto|HOST:PORT",
                   help="with --engine ray: the cluster to use (default $RAY_ADDRESS, else a local Ray started for the run)")
    return p


def _positive_int(text: str) -> int:
    value = _nonneg_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _nonneg_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _jobs(text: str) -> int:
    value = _positive_int(text)
    if value > 256:
        raise argparse.ArgumentTypeError("must be between 1 and 256")
    return value


def _quality(text: str) -> int:
    value = _positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError("must be between 1 and 100")
    return value


@dataclass
class Settings:
    """Validated crop-command options."""

    paths: list[str]
    ratios: list[RatioRequest]
    out_dir: Path | None
    template: str
    size: object  # writers.SizeSpec
    format: str
    quality: int
    json: bool
    quiet: bool
    dry_run: bool
    skip_existing: bool
    recursive: bool
    null: bool
    max_pixels: int | None
    weights: str | None
    device: str
    workers: int
    preview: Path | None
    jobs: int | None = None  # processes (None: one per core); see engines/processes.py
    preview_only: bool = False
    face_guard: bool = True


def crop_command(argv: list[str], env: Env, *, preview_only: Path | None = None) -> int:
    parser = build_crop_parser()
    args = parser.parse_args(argv)
    if preview_only is not None:
        args.dry_run, args.preview = True, str(preview_only)
        args.quiet = args.quiet or not args.json  # the sheet's path is the result
    if not args.paths:
        parser.error("no input: give photos or folders, or - to read paths from stdin")
    settings = settings_from(args)
    settings.preview_only = preview_only is not None
    if args.engine == "ray":
        from .engines.ray_engine import RayRun

        return RayRun(settings, env, address=args.address).execute()
    if args.address is not None:
        parser.error("--address needs --engine ray")
    code = local_run(settings, env).execute()
    _FAST_EXIT["ok"] = True  # every output was written and closed; see run()
    return code


def local_run(settings: Settings, env: Env) -> "Run":
    """This machine's engine: forked worker processes on a multi-core Linux CPU (engines/processes.py),
    else this process with decode/write threads."""
    from .engines.processes import ProcessRun, auto_processes, can_fork

    processes = settings.jobs if settings.jobs is not None else auto_processes()
    if processes > 1 and settings.device in ("auto", "cpu") and can_fork():
        return ProcessRun(settings, env, processes)
    return Run(settings, env)


def settings_from(args: argparse.Namespace) -> Settings:
    from .io.writers import SizeSpec, parse_wxh

    size = SizeSpec(upscale=args.upscale)
    ratio_values = args.ratio
    if args.size:
        w, h = parse_wxh(args.size)
        size = SizeSpec(w, h, args.upscale)
        shape = Fraction(w, h)
        ratio_values = ratio_values or [str(Ratio(Fraction(shape.numerator), Fraction(shape.denominator)))]
    elif args.width or args.height:
        size = SizeSpec(args.width, args.height, args.upscale)
    ratios = resolve_ratios(ratio_values)
    if args.size:
        _check_size_fits(args.size, size, ratios)
    check_template(args.name)
    check_distinct(args.name, [(r.slug, r.label) for r in ratios])
    out_dir = Path(args.out).expanduser() if args.out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"-o {args.out}: exists and is not a folder")
    return Settings(
        paths=args.paths, ratios=ratios, out_dir=out_dir, template=args.name, size=size, format=args.format,
        quality=args.quality, json=args.json, quiet=args.quiet, dry_run=args.dry_run,
        skip_existing=args.skip_existing, recursive=not args.no_recursive, null=args.null,
        max_pixels=_max_pixels(args.max_pixels), weights=args.weights, device=args.device,
        workers=args.workers, jobs=args.jobs, preview=Path(args.preview) if args.preview else None, face_guard=args.face_guard,
    )


def _max_pixels(value: int | None) -> int | None:
    from .io.images import DEFAULT_MAX_PIXELS

    if value is None:
        return DEFAULT_MAX_PIXELS
    return value or None


def _check_size_fits(text: str, size, ratios: list[RatioRequest]) -> None:
    """--size WxH must have each ratio's shape (within a pixel), or the photo would be distorted."""
    for req in ratios:
        r = Ratio.parse(req.ratio)
        if r.is_any or abs(size.width - size.height * r.value) > 1.0:
            raise ConfigError(
                f"--size {text} does not have the ratio {req.ratio}; give that ratio its own run, "
                "or use --width/--height, which follow each ratio"
            )


# ================================================================ one run over many photos


@dataclass
class Target:
    request: RatioRequest
    output: Path


@dataclass
class Job:
    """One photo on its way through decode → model → write."""

    item: InputPath
    targets: list[Target]
    fmt: object  # writers.OutputFormat
    decoded: object = None  # images.Decoded
    crops: list = field(default_factory=list)
    error: str | None = None
    written: list[Path | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    image_size: tuple[int, int] = (0, 0)  # upright input size, kept after the pixels are freed
    tile: object = None  # preview tile, drawn on a worker, added to the sheet in input order


class OutputLedger:
    """Outputs claimed in this run, per output folder, for the folders seen most recently.

    Inputs of one folder arrive together, so a bounded window catches same-stem collisions
    (photo.jpg and photo.png -> photo_16x9.jpg) without holding every output of a huge run in memory.
    """

    def __init__(self, folders: int = 256) -> None:
        self._folders: OrderedDict[str, dict[str, Path]] = OrderedDict()
        self._limit = folders

    def claim(self, output: Path, owner: Path) -> Path | None:
        """Record `output` for `owner`; return the earlier owner if another input already has it."""
        folder, name = os.path.split(os.path.abspath(output))
        names = self._folders.pop(folder, None) or {}
        self._folders[folder] = names
        if len(self._folders) > self._limit:
            self._folders.popitem(last=False)
        earlier = names.get(name)
        if earlier is not None and earlier != owner:
            return earlier
        names[name] = owner
        return None


class Run:
    def __init__(self, settings: Settings, env: Env) -> None:
        self.s = settings
        self.env = env
        self.report = Reporter(env, quiet=settings.quiet, progress=True)
        self.ledger = OutputLedger()
        self.cropper = None
        self.sheet = None
        self.counts = {"photos": 0, "written": 0, "failed": 0, "skipped": 0}
        self.started = time.monotonic()
        self._cancel = None

    # -- orchestration -----------------------------------------------------------------------
    def execute(self) -> int:
        import threading

        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # our own --max-pixels check gives the message; see io.images
        self._cancel = threading.Event()
        if self.s.preview is not None:
            from .io.writers import ContactSheet

            self.sheet = ContactSheet()
        try:
            self._pipeline()
            self._write_preview()
        except BaseException:
            self._cancel.set()
            raise
        finally:
            self.report.stop()
        self._summary()
        return EXIT_FAILED if self.counts["failed"] else EXIT_OK

    def _pipeline(self, jobs: "Iterable[Job] | None" = None) -> None:
        """Decode and write on worker threads while the model runs here; results stay in input order.
        `jobs`: planned photos (default: `self._jobs()`, the walk of the inputs)."""
        from concurrent.futures import ThreadPoolExecutor

        jobs = self._jobs() if jobs is None else jobs
        if self.s.workers == 0:
            for job in jobs:
                self._finish(self._crop_one(job))
            return
        ahead = self.s.workers + 1  # photos in flight per stage: bounds memory on huge folders
        pool = ThreadPoolExecutor(max_workers=self.s.workers, thread_name_prefix="s2ccrop-io")
        decoding: deque = deque()
        writing: deque = deque()
        try:
            for job in jobs:
                decoding.append(pool.submit(self._decode, job))
                while len(decoding) >= ahead:
                    self._advance(pool, decoding, writing, ahead)
            while decoding:
                self._advance(pool, decoding, writing, ahead)
            while writing:
                self._finish(writing.popleft().result())
        finally:
            if self._cancel.is_set() or decoding or writing:
                self._cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)

    def _crop_one(self, job: Job) -> Job:
        """Every step of one photo, here: decode, model, write."""
        return self._write(self._score(self._decode(job)))

    def _advance(self, pool, decoding: deque, writing: deque, ahead: int) -> None:
        job = self._score(decoding.popleft().result())
        writing.append(pool.submit(self._write, job))
        while writing and (writing[0].done() or len(writing) >= ahead):
            self._finish(writing.popleft().result())

    # -- stage 0: inputs and their outputs -----------------------------------------------------
    def _jobs(self):
        exclude = [self.s.out_dir] if self.s.out_dir is not None else []
        skip = self._own_outputs if self.s.out_dir is None else None
        stdin = self.env.stdin if "-" in self.s.paths else None
        for found in iter_inputs(self.s.paths, recursive=self.s.recursive, stdin=stdin, null=self.s.null,
                                 exclude_dirs=exclude, skip_names=skip):
            if isinstance(found, WalkError):  # reported in input order, through the pipeline
                yield Job(InputPath(found.path, PurePosixPath(found.path.name)), [], None, error=found.reason)
                continue
            job = self._plan(found)
            if job is not None:
                yield job

    def _plan(self, item: InputPath) -> Job | None:
        from .io.writers import choose_format

        fmt = choose_format(self.s.format, item.path)
        targets = []
        for req in self.s.ratios:
            name = render_name(self.s.template, stem=item.path.stem, ratio=req.slug, preset=req.label, ext=fmt.ext)
            targets.append(Target(req, output_path(item, self.s.out_dir, name)))
        problem = self._output_problem(item, targets)
        if problem:
            return Job(item, [], fmt, error=problem)
        if self.s.skip_existing:
            targets = [t for t in targets if not os.path.lexists(t.output)]
            if not targets:
                self.counts["skipped"] += 1
                self.report.advance()
                return None
        return Job(item, targets, fmt)

    def _output_problem(self, item: InputPath, targets: list[Target]) -> str | None:
        for t in targets:
            if _same_file(t.output, item.path):
                return f"output {display(t.output)} would overwrite the input; use -o or another --name"
            if self.s.preview is not None and _same_file(t.output, self.s.preview):
                return f"output {display(t.output)} is the --preview file"
        if self.s.dry_run:
            return None
        for t in targets:
            earlier = self.ledger.claim(t.output, item.path)
            if earlier is not None:
                return (f"output {display(t.output)} was already written for {display(earlier)} in this run "
                        "(same name stem); use --format same or a --name with {ext}")
        return None

    def _own_outputs(self, folder: Path, names: list[str]) -> set[str]:
        """Names in `folder` that this run writes there: re-running in place must not crop its own outputs."""
        from .io.writers import choose_format

        own: set[str] = set()
        for name in names:
            stem = os.path.splitext(name)[0]
            ext = choose_format(self.s.format, name).ext
            for req in self.s.ratios:
                rendered = render_name(self.s.template, stem=stem, ratio=req.slug, preset=req.label, ext=ext)
                own.add(rendered.replace(os.sep, "/").split("/", 1)[0])
        return own & set(names)

    # -- stage 1: decode (worker) --------------------------------------------------------------
    def _decode(self, job: Job) -> Job:
        from .io.images import open_image

        if self._cancel.is_set() or job.error:
            return job
        try:
            job.decoded = open_image(job.item.path, max_pixels=self.s.max_pixels)
            job.image_size = job.decoded.size
        except S2CCropError as exc:
            job.error = str(exc)
        except Exception as exc:  # never let one photo end the batch with a traceback
            job.error = f"internal error while decoding: {type(exc).__name__}: {exc}"
        return job

    # -- stage 2: the model (this thread) ------------------------------------------------------
    def _score(self, job: Job) -> Job:
        if job.error or job.decoded is None:
            return job
        cropper = self._get_cropper()
        try:
            job.crops = cropper.crop(job.decoded.rgb(), [t.request.ratio for t in job.targets])
        except (WeightsError, KeyboardInterrupt):
            raise
        except S2CCropError as exc:
            job.error = str(exc)
        except Exception as exc:
            job.error = f"cannot crop this image: {type(exc).__name__}: {exc}"
        if job.error:
            job.decoded = None
        return job

    def _get_cropper(self):
        if self.cropper is None:
            self.cropper = make_cropper(self.s.weights, self.s.device, self.report, self.s.face_guard)
        return self.cropper

    # -- stage 3: write (worker) ---------------------------------------------------------------
    def _write(self, job: Job) -> Job:
        from .io.writers import Cancelled, output_size, preview_tile, write_crop

        if job.error or not job.crops:
            return job
        for target, crop in zip(job.targets, job.crops):
            if self.s.dry_run:
                job.written.append(None)
                continue
            ratio = Ratio.parse(target.request.ratio)
            size, clamped = output_size((crop.width, crop.height), None if ratio.is_any else ratio.value, self.s.size)
            if clamped:
                job.notes.append(f"{display(target.output)}: the crop is only {crop.width}x{crop.height}; "
                                 "written at that size (--upscale enlarges)")
            try:
                write_crop(target.output, job.decoded.image, crop.box, size, job.fmt, quality=self.s.quality,
                           icc=job.decoded.icc_profile, cancel=self._cancel)
            except Cancelled:
                job.error = "interrupted"
                break
            except (OSError, ValueError) as exc:
                job.error = f"cannot write {display(target.output)}: {getattr(exc, 'strerror', None) or exc}"
                break
            except Exception as exc:  # an encoder bug on one photo must not end the batch with a traceback
                job.error = f"cannot write {display(target.output)}: {type(exc).__name__}: {exc}"
                break
            job.written.append(target.output)
        if self.sheet is not None and job.error is None:
            try:
                job.tile = preview_tile(job.decoded.image, job.crops, display(job.item.path))
            except Exception as exc:
                job.notes.append(f"{display(job.item.path)}: left out of the preview ({type(exc).__name__}: {exc})")
        job.decoded = None  # free the pixels as soon as the photo is done
        return job

    # -- stage 4: report (this thread, input order) --------------------------------------------
    def _finish(self, job: Job) -> None:
        self.report.advance()
        self.counts["photos"] += 1
        for note in job.notes:
            self.report.warn(note)
        if job.error:
            self._fail(job.item.path, job.error)
            return
        if job.tile is not None:
            self.sheet.add(job.tile)
        for target, crop, written in zip(job.targets, job.crops, job.written):
            self.counts["written"] += written is not None
            self._result_line(job, target, crop, written)

    def _result_line(self, job: Job, target: Target, crop, written: Path | None) -> None:
        if self.s.json:
            self.report.result(_json_line(crop_record(job.item.path, crop, job.image_size, written)))
        elif not self.s.quiet:
            x1, y1, x2, y2 = crop.box
            dest = display(written) if written is not None else f"(dry run) {display(target.output)}"
            self.report.result(f"{display(job.item.path)}  {crop.ratio}  {x1},{y1},{x2},{y2}  "
                               f"{crop.score:.3f}  -> {dest}")

    def _fail(self, path, reason: str) -> None:
        self.counts["failed"] += 1
        self.report.error(path, reason)

    def _write_preview(self) -> None:
        if self.sheet is None:
            return
        if not self.sheet.tiles:
            self.report.warn(f"no photo was cropped, so {display(self.s.preview)} was not written")
            return
        self.sheet.save(self.s.preview)
        if self.s.preview_only and not self.s.json:
            self.report.result(display(self.s.preview))

    def _summary(self) -> None:
        if not self.env.stderr_isatty or self.s.quiet:
            return
        c = self.counts
        took = time.monotonic() - self.started
        verb = "decided" if self.s.dry_run else "written"
        n_crops = c["written"] if not self.s.dry_run else "all"
        self.report.note(f"{c['photos']} photos, {n_crops} crops {verb}, {c['failed']} failed, "
                         f"{c['skipped']} skipped in {took:.1f} s")


def crop_record(input_path, crop, image_size: tuple[int, int], written: Path | None) -> dict:
    """The --json object of one (photo, ratio); the Ray engine's manifest uses it too."""
    return {
        "input": os.fspath(input_path), "ratio": crop.ratio, "box": list(crop.box),
        "width": image_size[0], "height": image_size[1], "score": round(float(crop.score), 6),
        "output": os.fspath(written) if written is not None else None,
    }


def _json_line(record: dict) -> str:
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in a file name: escape rather than emit invalid UTF-8
        line = json.dumps(record, ensure_ascii=True)
    return line


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b)


def make_cropper(weights: str | None, device: str, report: Reporter, face_guard: bool = True):
    """Import torch and load the model once; its warnings become one stderr line each. Ctrl-C waits
    for both to end (about 2 s from a cold start): raised inside torch's C++ while it builds tensors,
    it would come out as a TypeError and be reported as an unreadable weights file."""
    import warnings

    with warnings.catch_warnings(record=True) as caught, sigint_deferred():
        warnings.simplefilter("always")
        from ._imports import import_torch

        import_torch(freeze=True)  # a command-line process: freeze what torch's import made
        from .api import Cropper

        cropper = Cropper(weights=weights, device=device, face_guard=face_guard)
    for w in caught:
        if issubclass(w.category, UserWarning):
            report.warn(str(w.message))
    return cropper


@contextlib.contextmanager
def sigint_deferred():
    """A SIGINT inside this block is raised as KeyboardInterrupt when the block ends (main thread only;
    elsewhere Python delivers no signals anyway)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


# ================================================================ preview subcommand


def preview_command(argv: list[str], env: Env) -> int:
    """`s2ccrop preview PATH... [-o FILE] [crop options]`: only the contact sheet is written."""
    out = "s2ccrop-preview.jpg"
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in ("-o", "--out"):
            out = next(it, None) or out
        elif arg.startswith("--out="):
            out = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if any(a in ("-h", "--help") for a in rest):
        env.stdout.write(f"usage: {PROG} preview PATH [PATH ...] [-o FILE] [-r RATIO ...] [--weights W] [--device D]\n"
                         "Draws the chosen crop of every ratio over each photo; several photos make a contact "
                         "sheet. Writes only FILE (default s2ccrop-preview.jpg).\n")
        return EXIT_OK
    return crop_command(rest, env, preview_only=Path(out))


# ================================================================ info subcommand


def info_command(argv: list[str], env: Env) -> int:
    p = argparse.ArgumentParser(prog=f"{PROG} info", description="Versions, device, compiled ops, cache and weights.")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    data = collect_info(args.device)
    if args.json:
        env.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        width = max(len(k) for k in data)
        for key, value in data.items():
            env.stdout.write(f"{key:<{width}}  {value}\n")
    env.stdout.flush()
    return EXIT_OK


def collect_info(device: str = "auto") -> dict:
    import platform

    from . import weights as reg

    data: dict = {"s2ccrop": __version__, "python": platform.python_version(), "platform": platform.platform()}
    data.update(_library_versions())
    data.update(_device_info(device))
    data.update(_ops_info())
    data["cache_dir"] = str(reg.cache_dir())
    data["offline"] = reg.offline()
    data.update(_default_weights_info())
    return data


def _library_versions() -> dict:
    from importlib import metadata

    out = {}
    for dist in ("torch", "torchvision", "pillow", "numpy", "safetensors", "rich", "platformdirs"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _device_info(device: str) -> dict:
    import torch

    out: dict = {"cuda_available": torch.cuda.is_available(), "cuda_version": torch.version.cuda}
    try:
        from .api import resolve_device

        dev = resolve_device(device)
        out["device"] = str(dev)
        if dev.type == "cuda":
            out["device_name"] = torch.cuda.get_device_name(dev)
    except S2CCropError as exc:
        out["device"] = f"unavailable: {exc}"
    out["torch_threads"] = torch.get_num_threads()
    return out


def _ops_info() -> dict:
    try:
        from .ops import extension_status

        loaded, reason = extension_status()
    except Exception as exc:  # info must still answer when the ops package itself is broken
        loaded, reason = False, f"s2ccrop.ops failed to import: {type(exc).__name__}: {exc}"
    return {"compiled_ops": loaded, "compiled_ops_detail": reason}


def _default_weights_info() -> dict:
    from . import weights as reg

    try:
        rows = reg.status(reg.default_name()) if reg.default_name() else []
    except WeightsError as exc:
        return {"default_weights": None, "default_weights_state": str(exc)}
    if not rows:
        return {"default_weights": None, "default_weights_state": "none registered"}
    row = rows[0]
    state = row.state + (f" ({row.detail})" if row.detail else "")
    return {
        "default_weights": row.entry.name,
        "default_weights_sha256": row.entry.sha256,
        "default_weights_state": state,
        "default_weights_path": str(row.path) if row.path else None,
    }


# ================================================================ weights subcommand


def build_weights_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} weights", description="Manage model weights (registry and cache).")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = sub.add_parser("list", help="registered and imported weights, with their state")
    ls.add_argument("--json", action="store_true")
    ls.add_argument("--no-check", action="store_true", help="do not hash files (faster)")
    pa = sub.add_parser("path", help="the verified file of NAME, or the cache folder without NAME")
    pa.add_argument("name", nargs="?")
    im = sub.add_parser("import", help="copy a checkpoint (ours or a GAICv1/GAICv2 .pth) into the cache")
    im.add_argument("file")
    im.add_argument("--name", help="name to use with --weights (default: the file's stem)")
    im.add_argument("--force", action="store_true", help="replace an import of the same name")
    ve = sub.add_parser("verify", help="check sha256 of NAMEs (default: every present file)")
    ve.add_argument("names", nargs="*", metavar="NAME")
    dl = sub.add_parser("download", help="fetch registered weights into the cache")
    dl.add_argument("name")
    dl.add_argument("--force", action="store_true", help="download again even when a verified copy exists")
    return p


def weights_command(argv: list[str], env: Env) -> int:
    args = build_weights_parser().parse_args(argv)
    action = {"list": _weights_list, "path": _weights_path, "import": _weights_import,
              "verify": _weights_verify, "download": _weights_download}[args.action]
    return action(args, env)


def _weights_list(args, env: Env) -> int:
    from . import weights as reg

    rows = reg.status(check=not args.no_check)
    if args.json:
        for row in rows:
            env.stdout.write(json.dumps({
                "name": row.entry.name, "default": row.is_default, "state": row.state,
                "source": row.entry.source, "path": str(row.path) if row.path else None,
                "sha256": row.entry.sha256, "url": row.entry.url, "config": row.entry.config,
                "description": row.entry.description,
            }) + "\n")
    else:
        width = max([len(r.entry.name) for r in rows] + [4])
        for row in rows:
            mark = "*" if row.is_default else " "
            env.stdout.write(f"{mark} {row.entry.name:<{width}}  {row.state:<14}  {row.entry.config or '-':<8}  "
                             f"{row.entry.description}\n")
        if not rows:
            env.stderr.write(f"{PROG}: no weights registered\n")
    env.stdout.flush()
    return EXIT_OK


def _weights_path(args, env: Env) -> int:
    from . import weights as reg

    path = reg.weights_cache_dir() if args.name is None else reg.resolve(args.name, download=False).path
    env.stdout.write(f"{os.fspath(path)}\n")
    return EXIT_OK


def _weights_import(args, env: Env) -> int:
    from . import weights as reg

    got = reg.import_weights(args.file, args.name, force=args.force)
    env.stdout.write(f"{got.name}\t{got.sha256}\t{os.fspath(got.path)}\n")
    return EXIT_OK


def _weights_verify(args, env: Env) -> int:
    from . import weights as reg

    rows = [r for n in (args.names or [None]) for r in reg.status(n)]
    if not args.names:
        rows = [r for r in rows if r.path is not None]
    bad = 0
    for row in rows:
        if row.state == "ok":
            env.stdout.write(f"ok      {row.entry.name}  {row.entry.sha256}\n")
        else:
            bad += 1
            detail = row.detail or row.state
            env.stderr.write(f"{PROG}: error: {row.entry.name}: {detail}\n")
    env.stdout.flush()
    return EXIT_USAGE if bad else EXIT_OK


def _weights_download(args, env: Env) -> int:
    from . import weights as reg

    progress, stop = _download_bar(env, args.name)
    try:
        path = reg.download(args.name, force=args.force, progress=progress)
    finally:
        stop()
    env.stdout.write(f"{os.fspath(path)}\n")
    return EXIT_OK


def _download_bar(env: Env, name: str) -> tuple[Callable | None, Callable[[], None]]:
    if not env.stderr_isatty:
        return None, lambda: None
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    bar = Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                   console=Console(file=env.stderr), transient=True)
    task = bar.add_task(f"downloading {name}", total=None)
    bar.start()
    return (lambda done, total: bar.update(task, completed=done, total=total)), bar.stop


# ================================================================ subcommands registry


def _external(target: str, name: str) -> Callable[[list[str], Env], int]:
    """A subcommand implemented elsewhere ("module:function" taking argv), imported only when used."""

    def run(argv: list[str], env: Env) -> int:
        import importlib

        module, func = target.split(":")
        try:
            fn = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"the '{name}' command is not available in this installation ({exc})") from None
        return int(fn(argv) or 0)

    return run


SUBCOMMANDS: dict[str, Callable[[list[str], Env], int]] = {
    "weights": weights_command,
    "info": info_command,
    "preview": preview_command,
    # Owned by the training package: each is `main(argv: list[str]) -> int`.
    "train": _external("s2ccrop.training.train:main", "train"),
    "eval": _external("s2ccrop.training.run_eval:main", "eval"),
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The batch engine: crop many photos (folders, file lists, stdin) to many ratios, write and report.

    paths ─► plan (walk, output names, --skip-existing) ─► decode ─► score (the model) ─► write
          ─► finish (report in input order: result lines or JSON, one-line errors, the preview sheet)

`Settings` holds a run's options, built from keyword arguments and checked when built. A `BatchRun`
runs them: `execute()` does everything and returns the exit status, here with decode and write
threads around the model. Its steps are public so that other engines run the same steps elsewhere
and name, write and report crops identically: `plan()` yields one `Job` per photo, and `decode(job)`,
`score(job)`, `write(job)` each return the job one step further; `finish(job)` reports it;
`pipeline(jobs)` is the loop that engines replace (`engines/processes.py`: forked workers on every
core; `engines/ray_engine.py`: a Ray Data pipeline).

    from s2ccrop.batch import BatchRun, Settings
    status = BatchRun(Settings(["photos/"], ratios=["16:9", "1:1"], output="thumbs", width=1080)).execute()

Only the standard library and light s2ccrop modules load at import; Pillow and torch load when a run
needs them. A bad photo never ends a run: it gets one error line (`s2ccrop: error: PATH: reason`)
and the run goes on; stdout carries only results.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator, Sequence, TextIO

from .errors import ConfigError, S2CCropError, WeightsError
from .hints import Hints, HintsFile, check_fit, parse_focus, parse_keep, path_key
from .interrupts import deferred
from .io.paths import DEFAULT_TEMPLATE, InputPath, Skipped, WalkError, check_distinct, check_template, iter_inputs
from .io.paths import output_path, render_name
from .presets import RatioRequest, resolve_ratios
from .types import Ratio

PROG = "s2ccrop"
# The command line's exit statuses; a run's `execute()` returns one of the first two. A run stopped by
# a signal exits 128 + its number (`interrupts.Interrupted.exit_status`): 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TERMINATED, EXIT_HANGUP = 143, 129
FORMATS = ("same", "jpg", "png", "webp")
DEFAULT_WORKERS = 2
MAX_JOBS = 256


# ================================================================ streams and reporting


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


def one_line(text: object) -> str:
    """A message as one line: newlines become spaces."""
    return " ".join(str(text).split("\n")).strip()


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

    def advance(self) -> None:
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
        self._stderr(f"{PROG}: error: {where}{one_line(reason)}")

    def warn(self, message: str) -> None:
        self._stderr(f"{PROG}: warning: {one_line(message)}")

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


# ================================================================ settings


@dataclass
class Settings:
    """The options of one run, as keyword arguments; checked when built (ConfigError says what is wrong).

    `paths`: photos, folders, or "-" for paths read from the run's stdin (NUL-separated with `null`).
    `ratios`: W:H ("16:9", "1.91:1"), "any", preset or group names; None: the "default" group.
    `output`: the output folder (the input tree is mirrored below it); None: beside each photo.
    `name`: output file name template ({stem} {ratio} {preset} {ext}; "/" makes subfolders).
    `size` ("WxH", sets the ratio when `ratios` is None) or `width` or `height`: exact output pixels,
    never enlarged unless `upscale`. `format`: same, jpg, png or webp. `max_pixels`: refuse larger
    images (None: the default limit of io.images, 0: no limit). `jobs`: processes on CPU (None: one
    per core); `workers`: decode/write threads beside the model in one process. `preview`: also
    write a contact sheet there; `preview_only`: write nothing else (a dry run).
    `focus` ("X,Y" or (x, y)) and `keep` ("X1,Y1,X2,Y2" or a sequence): hints for every photo, in
    fractions of the upright photo; `hints`: a JSON-lines file of hints per photo (`s2ccrop.hints`),
    whose lines take precedence. `fit`: crop (cut to the ratio), pad (show the model's framing whole,
    padded to the ratio) or auto (pad only when every candidate of a ratio cuts a face, a hint or the
    model's subject); `pad_color`: the padding's colour (None: a blurred copy of the photo).
    """

    paths: Sequence["str | os.PathLike[str]"] = ()
    ratios: Sequence[str] | None = None
    output: "str | os.PathLike[str] | None" = None
    name: str = DEFAULT_TEMPLATE
    size: str | None = None
    width: int | None = None
    height: int | None = None
    upscale: bool = False
    format: str = "same"
    quality: int = 90
    json: bool = False
    quiet: bool = False
    dry_run: bool = False
    skip_existing: bool = False
    recursive: bool = True
    null: bool = False
    max_pixels: int | None = None
    weights: str | None = None
    device: str = "auto"
    face_guard: bool = True
    jobs: int | None = None
    workers: int = DEFAULT_WORKERS
    preview: "str | os.PathLike[str] | None" = None
    preview_only: bool = False
    focus: "str | Sequence[float] | None" = None
    keep: "str | Sequence[float] | None" = None
    hints: "str | os.PathLike[str] | None" = None
    fit: str = "crop"
    pad_color: str | None = None
    # Worked out from the options above when built:
    requests: list[RatioRequest] = field(init=False, repr=False)
    size_spec: object = field(init=False, repr=False)  # io.writers.SizeSpec
    out_dir: Path | None = field(init=False, repr=False)
    preview_path: Path | None = field(init=False, repr=False)
    pixel_limit: int | None = field(init=False, repr=False)
    base_hints: Hints = field(init=False, repr=False)  # --focus / --keep: every photo's
    hint_file: HintsFile | None = field(init=False, repr=False)  # --hints, read and checked

    def __post_init__(self) -> None:
        from .io.images import DEFAULT_MAX_PIXELS
        from .io.writers import SizeSpec, parse_wxh

        self.paths = [os.fspath(p) for p in ([self.paths] if isinstance(self.paths, (str, os.PathLike)) else self.paths)]
        if not self.paths:
            raise ConfigError("no input: give photos or folders, or - to read paths from stdin")
        if "" in self.paths:  # Path("") is ".": an unset shell variable must not crop the current folder
            raise ConfigError("an empty PATH argument (an unset shell variable?): give a photo or a folder "
                              "(. for the current one)")
        self._check_numbers()
        self.format = self.format.lower()
        if self.format not in FORMATS:
            raise ConfigError(f"--format {self.format}: invalid choice (choose from {', '.join(FORMATS)})")
        given = [f"--{k}" for k in ("size", "width", "height") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ConfigError(f"{given[1]} is not allowed with {given[0]}: give one of --size, --width, --height")
        ratios = list(self.ratios) if self.ratios else None
        if self.size is not None:
            w, h = parse_wxh(self.size)
            self.size_spec = SizeSpec(w, h, self.upscale)
            shape = Fraction(w, h)
            ratios = ratios or [str(Ratio(Fraction(shape.numerator), Fraction(shape.denominator)))]
        else:
            self.size_spec = SizeSpec(self.width, self.height, self.upscale)
        self.requests = resolve_ratios(ratios)
        if self.size is not None:
            self._check_size_fits()
        check_template(self.name)
        check_distinct(self.name, [(r.slug, r.label) for r in self.requests])
        self.out_dir = Path(self.output).expanduser() if self.output is not None else None
        if self.out_dir is not None and self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"-o {display(self.output)}: exists and is not a folder")
        if self.preview_only and self.preview is None:
            raise ConfigError("preview_only needs a preview file")
        self.dry_run = self.dry_run or self.preview_only
        self.preview_path = Path(self.preview) if self.preview is not None else None
        self.pixel_limit = DEFAULT_MAX_PIXELS if self.max_pixels is None else (self.max_pixels or None)
        self.base_hints = Hints(parse_focus(self.focus), parse_keep(self.keep))
        self.hint_file = HintsFile.read(self.hints) if self.hints is not None else None
        self.fit, self.pad_color = check_fit(self.fit, self.pad_color)

    def __getstate__(self) -> dict:
        # Settings travel to Ray tasks with every batch, where a copy may be rebuilt (dataclasses.replace):
        # the hints file stays with the process that plans; each photo's hints travel in its job.
        return {**self.__dict__, "hints": None, "hint_file": None}

    def hints_for(self, path: "str | os.PathLike[str]") -> Hints:
        """The hints of one photo: --focus/--keep, with its --hints line taking precedence."""
        found = self.hint_file.lookup(path) if self.hint_file is not None else None
        return self.base_hints.merged(found)

    def _check_numbers(self) -> None:
        for option, value, low, high in (("--quality", self.quality, 1, 100), ("--jobs", self.jobs, 1, MAX_JOBS),
                                         ("--workers", self.workers, 0, None), ("--width", self.width, 1, None),
                                         ("--height", self.height, 1, None), ("--max-pixels", self.max_pixels, 0, None)):
            if value is not None and not (low <= value and (high is None or value <= high)):
                raise ConfigError(f"{option} {value}: {range_phrase(low, high)}")

    def _check_size_fits(self) -> None:
        """--size WxH must have each ratio's shape (within a pixel), or the photo would be distorted."""
        for req in self.requests:
            r = Ratio.parse(req.ratio)
            if r.is_any or abs(self.size_spec.width - self.size_spec.height * r.value) > 1.0:
                raise ConfigError(
                    f"--size {self.size} does not have the ratio {req.ratio}; give that ratio its own run, "
                    "or use --width/--height, which follow each ratio"
                )


def range_phrase(low: int, high: int | None) -> str:
    """What a whole number outside [low, high] is told (high None: no upper bound)."""
    if high is not None:
        return f"must be between {low} and {high}"
    return "must not be negative" if low == 0 else f"must be at least {low}"


# ================================================================ one photo's way through a run


@dataclass
class Target:
    """One output of a photo: the ratio asked for and the file it goes to."""

    request: RatioRequest
    output: Path


@dataclass
class Job:
    """One photo on its way through decode → score → write; picklable, so other processes and Ray
    workers can run its steps."""

    item: InputPath
    targets: list[Target] = field(default_factory=list)
    fmt: object = None  # io.writers.OutputFormat
    decoded: object = None  # io.images.Decoded, freed once written
    crops: list = field(default_factory=list)  # types.Crop per target
    error: str | None = None  # set: the photo failed; the reason is its error line
    written: list[Path | None] = field(default_factory=list)  # per target; None in a dry run
    notes: list[str] = field(default_factory=list)  # warnings, reported with the photo
    image_size: tuple[int, int] = (0, 0)  # upright input size, kept after the pixels are freed
    tile: object = None  # preview tile, drawn where the job is written, added to the sheet in input order
    warned: list[str] = field(default_factory=list)  # library warnings while decoding/writing (one line in all)
    fatal: S2CCropError | None = None  # the model could not load where this job was scored: ends the run
    hints: Hints = field(default_factory=Hints)  # the focus point / keep region asked for this photo


class OutputLedger:
    """The inputs and the outputs of this run, per folder, for the folders seen most recently.

    Inputs of one folder arrive together, so a bounded window catches same-stem collisions
    (photo.jpg and photo.png -> photo_16x9.jpg) and outputs named like an input cropped a moment ago,
    without holding every file of a huge run in memory.
    """

    def __init__(self, folders: int = 256) -> None:
        self._folders: OrderedDict[str, tuple[dict[str, Path], set[str]]] = OrderedDict()
        self._limit = folders

    def _folder(self, path: Path) -> tuple[dict[str, Path], set[str], str]:
        folder, name = os.path.split(os.path.abspath(path))
        entry = self._folders.pop(folder, None) or ({}, set())
        self._folders[folder] = entry
        if len(self._folders) > self._limit:
            self._folders.popitem(last=False)
        return entry[0], entry[1], name

    def claim(self, output: Path, owner: Path) -> Path | None:
        """Record `output` for `owner`; return the earlier owner if another input already has it."""
        outputs, _, name = self._folder(output)
        earlier = outputs.get(name)
        if earlier is not None and earlier != owner:
            return earlier
        outputs[name] = owner
        return None

    def note_input(self, path: Path) -> None:
        _, inputs, name = self._folder(path)
        inputs.add(name)

    def is_input(self, path: Path) -> bool:
        _, inputs, name = self._folder(path)
        return name in inputs

    def output_owner(self, path: Path) -> Path | None:
        """The input whose output `path` is in this run, if any."""
        outputs, _, name = self._folder(path)
        return outputs.get(name)


# ================================================================ the run


class BatchRun:
    """Runs `settings` in this process: decode and write on `settings.workers` threads while the model
    scores here. Results, errors and warnings are reported in input order on `env`'s streams."""

    def __init__(self, settings: Settings, env: Env | None = None) -> None:
        self.settings = settings
        self.env = env if env is not None else Env.from_sys()
        self.report = Reporter(self.env, quiet=settings.quiet, progress=True)
        self.ledger = OutputLedger()
        self.cropper = None
        self.sheet = None  # the contact sheet of --preview, in the process that reports
        self.counts = {"photos": 0, "written": 0, "failed": 0, "skipped": 0}
        self.started = time.monotonic()
        # Anything with set() / is_set(): the process engine swaps in one its forked workers share.
        self.cancel_event = threading.Event()
        self._explicit: set[tuple[int, int]] = set()  # files named on the command line (st_dev, st_ino)
        self._preview_id: tuple[int, int] | None = None  # an earlier contact sheet at the --preview path
        self._hinted: set[str] = set()  # --hints lines whose photo this run met (path_key)
        self._heif_told = False  # the one line on how to read HEIC photos

    # -- the whole run ---------------------------------------------------------------------------
    def execute(self) -> int:
        """Plan, crop, write and report every photo; EXIT_OK, or EXIT_FAILED when any photo failed.
        Errors that stop the whole run (weights that cannot load) are raised as S2CCropError."""
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # our own max_pixels check gives the message; see io.images
        self.check_outputs()
        if self.settings.preview_path is not None:
            from .io.writers import ContactSheet

            self.sheet = ContactSheet()
        try:
            self.pipeline(self.plan())
            self._write_preview()
            self._unused_hints()
        except BaseException:
            self.cancel()
            raise
        finally:
            self.report.stop()
        self._summary()
        return EXIT_FAILED if self.counts["failed"] else EXIT_OK

    def cancel(self) -> None:
        """Abandon the writes in progress (their outputs are not left half-written) and stop decoding."""
        self.cancel_event.set()

    def pipeline(self, jobs: Iterable[Job]) -> None:
        """Take planned `jobs` through decode → score → write → finish, results in input order.
        Decode and write run on worker threads while the model runs here; engines replace this loop."""
        from concurrent.futures import ThreadPoolExecutor

        if self.settings.workers == 0:
            for job in jobs:
                self.finish(self.crop_one(job))
            return
        ahead = self.settings.workers + 1  # photos in flight per stage: bounds memory on huge folders
        pool = ThreadPoolExecutor(max_workers=self.settings.workers, thread_name_prefix="s2ccrop-io")
        decoding: deque = deque()
        writing: deque = deque()
        try:
            for job in jobs:
                decoding.append(pool.submit(self.decode, job))
                while len(decoding) >= ahead:
                    self._advance(pool, decoding, writing, ahead)
            while decoding:
                self._advance(pool, decoding, writing, ahead)
            while writing:
                self.finish(writing.popleft().result())
        finally:
            if self.cancel_event.is_set() or decoding or writing:
                self.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def _advance(self, pool, decoding: deque, writing: deque, ahead: int) -> None:
        job = self.score(decoding.popleft().result())
        writing.append(pool.submit(self.write, job))
        while writing and (writing[0].done() or len(writing) >= ahead):
            self.finish(writing.popleft().result())

    def crop_one(self, job: Job) -> Job:
        """Every step of one photo, here: decode, score, write."""
        return self.write(self.score(self.decode(job)))

    # -- step 0: inputs and their outputs --------------------------------------------------------
    def plan(self) -> Iterator[Job]:
        """One job per input photo, in input order, as the inputs are walked. Walk errors and output
        name clashes come as jobs with an error; photos whose outputs all exist (skip_existing) are
        counted as skipped and not yielded.

        No input is ever an output: an output that is an input of the run (named on the command line,
        or met earlier), or a file s2ccrop did not write, makes its photo fail with one line; in a
        folder walk, what s2ccrop wrote for a photo beside it is not an input (`_own_outputs`)."""
        s = self.settings
        self._explicit = _identities(p for p in s.paths if p != "-")
        stdin = self.env.stdin if "-" in s.paths else None
        for found in iter_inputs(s.paths, recursive=s.recursive, stdin=stdin, null=s.null,
                                 exclude_dirs=self._excluded_dirs(), skip_names=self._own_outputs):
            if isinstance(found, WalkError):  # reported in input order, through the pipeline
                yield Job(InputPath(found.path, PurePosixPath(found.path.name)), error=found.reason)
                continue
            if isinstance(found, Skipped):  # a HEIC in a folder, without pillow-heif
                self._tell_heif()
                continue
            if self._preview_id is not None and _identity(found.path) == self._preview_id:
                continue  # an earlier run's contact sheet, about to be replaced: not a photo to crop
            job = self._plan_one(found)
            if job is not None:
                yield job

    def _excluded_dirs(self) -> list[Path]:
        """The output folder is not walked (its files are outputs), unless it is a folder being
        cropped itself (`-o photos` for `photos`): that is writing beside the photos."""
        out = self.settings.out_dir
        if out is None or any(_same_folder(out, p) for p in self.settings.paths if p != "-"):
            return []
        return [out]

    def _plan_one(self, item: InputPath) -> Job | None:
        from .io.writers import choose_format

        s = self.settings
        fmt = choose_format(s.format, item.path)
        hints = self._hints_of(item)  # met, whatever becomes of it: skipped, or failed here
        earlier = self.ledger.output_owner(item.path)
        if earlier is not None and not s.dry_run:
            return Job(item, fmt=fmt, error=f"is an output of this run (for {display(earlier)}), not cropped")
        self.ledger.note_input(item.path)
        targets = []
        for req in s.requests:
            try:
                name = render_name(s.name, stem=item.path.stem, ratio=req.slug, preset=req.label, ext=fmt.ext)
            except ConfigError as exc:  # this photo's name makes the template leave the folder: its own error
                return Job(item, fmt=fmt, error=str(exc))
            targets.append(Target(req, output_path(item, s.out_dir, name)))
        problem = self._output_problem(item, targets)
        if problem:
            return Job(item, fmt=fmt, error=problem)
        if s.skip_existing:
            targets = [t for t in targets if not os.path.lexists(t.output)]
            if not targets:
                self.counts["skipped"] += 1
                self.report.advance()
                return None
        return Job(item, targets, fmt, hints=hints)

    def _hints_of(self, item: InputPath) -> Hints:
        s = self.settings
        if s.hint_file is not None:
            key = path_key(item.path)
            if key in s.hint_file.table:
                self._hinted.add(key)
        return s.hints_for(item.path)

    def _unused_hints(self) -> None:
        """A --hints line whose photo this run never met: that photo's error line (its hint was not
        applied), after the run."""
        table = self.settings.hint_file.table if self.settings.hint_file is not None else {}
        for key, (_, line, written) in table.items():
            if key not in self._hinted:
                self.counts["failed"] += 1
                self.report.error(written, f"has hints (--hints {display(self.settings.hint_file.path)}:{line}) "
                                           "but is not among the photos of this run")

    def _tell_heif(self) -> None:
        """Once per run: how to read HEIC/HEIF photos (a photo met without pillow-heif)."""
        from .io.paths import HEIF_HELP

        if not self._heif_told:
            self._heif_told = True
            self.report.warn(f"HEIC/HEIF photos need pillow-heif: {HEIF_HELP} (folders' HEIC photos are skipped "
                             "until then)")

    def _output_problem(self, item: InputPath, targets: list[Target]) -> str | None:
        """Why `item`'s outputs cannot be written (None: they can); claims them in the ledger if so."""
        from .io.writers import written_by_s2ccrop

        s = self.settings
        for t in targets:
            if _same_file(t.output, item.path):
                return f"output {display(t.output)} would overwrite the input; use -o or another --name"
            if s.preview_path is not None and _same_file(t.output, s.preview_path):
                return f"output {display(t.output)} is the --preview file"
            if self.ledger.is_input(t.output) or (self._explicit and _identity(t.output) in self._explicit):
                return f"output {display(t.output)} would overwrite an input of this run; use -o or another --name"
        if s.dry_run:
            return None
        for t in targets:
            earlier = self.ledger.output_owner(t.output)
            if earlier is not None and earlier != item.path:
                return (f"output {display(t.output)} was already written for {display(earlier)} in this run "
                        "(same name stem); use --format same or a --name with {ext}")
            if not s.skip_existing and os.path.lexists(t.output) and not written_by_s2ccrop(t.output):
                return (f"output {display(t.output)} exists and s2ccrop did not write it (a photo, or another "
                        "program's file): it is left alone; use -o, another --name, or move it away")
        for t in targets:
            self.ledger.claim(t.output, item.path)
        return None

    def _own_outputs(self, folder: Path, names: list[str]) -> set[str]:
        """Names in `folder` that s2ccrop wrote for a photo beside them: a re-run in place must not crop
        its own outputs. Only files that carry s2ccrop's Software tag count: a photo that happens to be
        named like an output (photo_1x1.jpg beside photo.jpg) is an input like any other."""
        from .io.writers import choose_format, written_by_s2ccrop

        s = self.settings
        own: set[str] = set()
        for name in names:
            stem = os.path.splitext(name)[0]
            ext = choose_format(s.format, name).ext
            for req in s.requests:
                try:
                    rendered = render_name(s.name, stem=stem, ratio=req.slug, preset=req.label, ext=ext)
                except ConfigError:  # this name's outputs cannot be named: the photo gets that error line
                    continue
                own.add(rendered.replace(os.sep, "/").split("/", 1)[0])
        return {name for name in own & set(names) if written_by_s2ccrop(folder / name)}

    def check_outputs(self) -> None:
        """Before any work: the --preview file must not be a folder, an input, or a file s2ccrop did not
        write (ConfigError). Called by `execute`."""
        from .io.writers import written_by_s2ccrop

        s = self.settings
        self._preview_id = None
        if s.preview_path is None:
            return
        path, option = s.preview_path, ("-o" if s.preview_only else "--preview")
        if path.is_dir():
            raise ConfigError(f"{option} {display(path)}: is a folder; give the contact sheet's file name "
                              f"(such as {display(path / 'sheet.jpg')})")
        if not os.path.lexists(path):
            return
        if not written_by_s2ccrop(path):
            raise ConfigError(f"{option} {display(path)}: the file exists and s2ccrop did not write it (one of "
                              "your photos?); it is left alone: choose another file name")
        self._preview_id = _identity(path)
        if self._preview_id in _identities(p for p in s.paths if p != "-"):
            raise ConfigError(f"{option} {display(path)}: is also an input; choose another file name")

    # -- step 1: decode --------------------------------------------------------------------------
    def decode(self, job: Job) -> Job:
        """Read the photo upright (EXIF applied); a photo that cannot be read gets its error."""
        from .io.images import open_image

        if self.cancel_event.is_set() or job.error:
            return job
        try:
            with warnings_noted(job.warned):  # Pillow on a damaged EXIF block: one line, not its source
                job.decoded = open_image(job.item.path, max_pixels=self.settings.pixel_limit)
            job.image_size = job.decoded.size
        except S2CCropError as exc:
            job.error = str(exc)
        except Exception as exc:  # never let one photo end the batch with a traceback
            job.error = f"internal error while decoding: {type(exc).__name__}: {exc}"
        return job

    # -- step 2: the model -----------------------------------------------------------------------
    def score(self, job: Job) -> Job:
        """Choose the crop of every target's ratio. Loads the model on first use; a model that cannot
        load raises (WeightsError: no photo can be cropped), a photo the model fails on gets its error."""
        if job.error or job.decoded is None:
            return job
        cropper = self.load_cropper()
        s, hints = self.settings, job.hints
        try:
            job.crops = cropper.crop(job.decoded.rgb(), [t.request.ratio for t in job.targets], focus=hints.focus,
                                     keep=hints.keep, faces=job.decoded.faces, fit=s.fit)
        except (WeightsError, KeyboardInterrupt):
            raise
        except S2CCropError as exc:
            job.error = str(exc)
        except Exception as exc:
            job.error = f"cannot crop this image: {type(exc).__name__}: {exc}"
        if job.error:
            job.decoded = None
        return job

    def load_cropper(self):
        """The run's `Cropper`, loaded on first use (`make_cropper`: its warnings become warning lines)."""
        if self.cropper is None:
            s = self.settings
            self.cropper = make_cropper(s.weights, s.device, self.report, s.face_guard)
        return self.cropper

    # -- step 3: write ---------------------------------------------------------------------------
    def write(self, job: Job) -> Job:
        """Write each target's crop (atomically; nothing in a dry run) and draw the preview tile; the
        photo's pixels are freed. A photo's outputs are written as temporary files, then made durable
        together and renamed into place (`io.writers.WriteBatch`: one filesystem sync per photo
        instead of one fsync per file). When one cannot be written, those before it still are."""
        from .io.writers import Cancelled, WriteBatch, preview_tile

        if job.error or not job.crops:
            return job
        s = self.settings
        if s.dry_run:
            job.written.extend([None] * len(job.crops))
        else:
            with WriteBatch() as batch:  # leaving it deletes whatever was not committed
                self._stage_outputs(job, batch)
                if job.error != "interrupted":
                    try:
                        batch.commit()
                    except Cancelled:
                        job.error = "interrupted"
                    except (OSError, ValueError) as exc:
                        failing = job.targets[len(batch.committed)].output
                        job.error = f"cannot write {display(failing)}: {getattr(exc, 'strerror', None) or exc}"
                    job.written.extend(batch.committed)
        if s.preview_path is not None and job.error is None:
            try:
                job.tile = preview_tile(job.decoded.image, job.crops, display(job.item.path), hints=job.hints,
                                        pad_color=s.pad_color)
            except Exception as exc:
                job.notes.append(f"{display(job.item.path)}: left out of the preview ({type(exc).__name__}: {exc})")
        job.decoded = None  # free the pixels as soon as the photo is done
        return job

    def _stage_outputs(self, job: Job, batch) -> None:
        """Render and stage each target's output in `batch`, in order, until one fails (job.error)."""
        from .io.writers import Cancelled, output_size, pad_size, write_crop

        s = self.settings
        for target, crop in zip(job.targets, job.crops):
            ratio = Ratio.parse(target.request.ratio)
            padded = crop.fit == "pad"
            if padded:
                size, clamped = pad_size(crop.box, ratio.value, s.size_spec)
            else:
                size, clamped = output_size((crop.width, crop.height), None if ratio.is_any else ratio.value, s.size_spec)
            if clamped:
                job.notes.append(f"{display(target.output)}: the {'padded fit' if padded else 'crop'} is only "
                                 f"{size[0]}x{size[1]}; written at that size (--upscale enlarges)")
            try:
                with warnings_noted(job.warned):
                    write_crop(target.output, job.decoded.image, crop.box, size, job.fmt, quality=s.quality,
                               icc=job.decoded.icc_profile, cancel=self.cancel_event, pad=padded,
                               pad_color=s.pad_color, batch=batch)
            except Cancelled:
                job.error = "interrupted"
                return
            except (OSError, ValueError) as exc:
                job.error = f"cannot write {display(target.output)}: {getattr(exc, 'strerror', None) or exc}"
                return
            except Exception as exc:  # an encoder bug on one photo must not end the batch with a traceback
                job.error = f"cannot write {display(target.output)}: {type(exc).__name__}: {exc}"
                return

    # -- step 4: report (the process that plans, input order) ------------------------------------
    def finish(self, job: Job) -> None:
        """Report a job: its warnings, then its error line or one result line (or JSON) per crop."""
        self.report.advance()
        self.counts["photos"] += 1
        for note in job.notes:
            self.report.warn(note)
        if job.warned and not self.settings.quiet:
            more = len(job.warned) - 1
            self.report.warn(f"{display(job.item.path)}: {job.warned[0]}"
                             + (f" (and {more} more warning{'s' * (more > 1)})" if more else ""))
        if job.error:
            self.counts["failed"] += 1
            self.report.error(job.item.path, job.error)
            if job.error == _heif_missing():
                self._tell_heif()
            return
        if job.tile is not None and self.sheet is not None:
            self.sheet.add(job.tile)
        for target, crop, written in zip(job.targets, job.crops, job.written):
            self.counts["written"] += written is not None
            self._result_line(job, target, crop, written)

    def _result_line(self, job: Job, target: Target, crop, written: Path | None) -> None:
        if self.settings.json:
            self.report.result(json_line(crop_record(job.item.path, crop, job.image_size, written, job.hints)))
        elif not self.settings.quiet:
            x1, y1, x2, y2 = crop.box
            dest = display(written) if written is not None else f"(dry run) {display(target.output)}"
            fit = "  pad" if crop.fit == "pad" else ""
            self.report.result(f"{display(job.item.path)}  {crop.ratio}  {x1},{y1},{x2},{y2}{fit}  "
                               f"{crop.score:.3f}  -> {dest}")

    def _write_preview(self) -> None:
        if self.sheet is None:
            return
        path = self.settings.preview_path
        if not self.sheet.tiles:
            self.report.warn(f"no photo was cropped, so {display(path)} was not written")
            return
        try:
            self.sheet.save(path)
        except OSError as exc:  # a full disk, a file s2ccrop did not write appeared there meanwhile
            self.counts["failed"] += 1
            self.report.error(path, f"cannot write the contact sheet: {getattr(exc, 'strerror', None) or exc}")
            return
        if self.settings.preview_only and not self.settings.json:
            self.report.result(display(path))

    def _summary(self) -> None:
        if not self.env.stderr_isatty or self.settings.quiet:
            return
        c = self.counts
        took = time.monotonic() - self.started
        verb = "decided" if self.settings.dry_run else "written"
        n_crops = c["written"] if not self.settings.dry_run else "all"
        self.report.note(f"{c['photos']} photos, {n_crops} crops {verb}, {c['failed']} failed, "
                         f"{c['skipped']} skipped in {took:.1f} s")


# ================================================================ records


def crop_record(input_path, crop, image_size: tuple[int, int], written: Path | None,
                hints: Hints | None = None) -> dict:
    """The JSON object of one (photo, ratio): what --json prints and the Ray engine's manifest holds.
    "fit": "crop" (box is the thumbnail) or "pad" (box is the region shown whole, padded to the
    ratio); "focus" / "keep": the hints applied, when any."""
    return {
        "input": os.fspath(input_path), "ratio": crop.ratio, "box": list(crop.box),
        "width": image_size[0], "height": image_size[1], "score": round(float(crop.score), 6),
        "output": os.fspath(written) if written is not None else None,
        "fit": getattr(crop, "fit", "crop"), **(hints.record() if hints else {}),
    }


def _heif_missing() -> str:
    from .io.paths import HEIF_MISSING

    return HEIF_MISSING


def json_line(record: dict) -> str:
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in a file name: escape rather than emit invalid UTF-8
        line = json.dumps(record, ensure_ascii=True)
    return line


def _identity(path: "str | os.PathLike[str]") -> tuple[int, int] | None:
    """(st_dev, st_ino) of an existing file, following links; None for anything else."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if not stat.S_ISDIR(st.st_mode) else None


def _identities(paths: Iterable["str | os.PathLike[str]"]) -> set[tuple[int, int]]:
    return {i for i in map(_identity, paths) if i is not None}


def _same_folder(a: "str | os.PathLike[str]", b: "str | os.PathLike[str]") -> bool:
    try:
        return os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b)
    except OSError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b)


# ================================================================ library warnings


_warning_sink = threading.local()  # .notes: where this thread's warnings go, inside warnings_noted
_warning_hook_lock = threading.Lock()


def _route_warning(message, category, filename, lineno, file=None, line=None) -> None:
    notes = getattr(_warning_sink, "notes", None)
    if notes is not None:
        notes.append(one_line(message))
    else:
        _route_warning.previous(message, category, filename, lineno, file, line)


_route_warning.previous = None


@contextlib.contextmanager
def warnings_noted(notes: list[str]):
    """Warnings issued in this thread during the block (Pillow's about a damaged file) are appended to
    `notes` as one-line texts instead of being printed with their source line; other threads' warnings
    are unaffected (decode and write run on several threads at once, where catch_warnings would mix
    them up)."""
    import warnings

    with _warning_hook_lock:
        if warnings.showwarning is not _route_warning:
            _route_warning.previous = warnings.showwarning
            warnings.showwarning = _route_warning
    outer = getattr(_warning_sink, "notes", None)
    _warning_sink.notes = notes
    try:
        yield notes
    finally:
        _warning_sink.notes = outer


# ================================================================ the model


def make_cropper(weights: str | None, device: str, report: Reporter, face_guard: bool = True):
    """Import torch and load the model once; its warnings become one warning line each. A stop signal
    (Ctrl-C, SIGTERM) waits for both to end (about 2 s from a cold start): raised inside torch's C++
    while it builds tensors, it would come out as a TypeError and be reported as an unreadable weights
    file."""
    import warnings

    with warnings.catch_warnings(record=True) as caught, deferred():
        warnings.simplefilter("always")
        from ._imports import import_torch

        import_torch(freeze=True)  # a batch process: freeze what torch's import made
        from .api import Cropper

        cropper = Cropper(weights=weights, device=device, face_guard=face_guard)
    for w in caught:
        if issubclass(w.category, UserWarning):
            report.warn(str(w.message))
    return cropper


# Stop signals (SIGINT, SIGTERM, SIGHUP) held over a block, then delivered: see interrupts.deferred.
sigint_deferred = deferred


__all__ = ["BatchRun", "EXIT_FAILED", "EXIT_HANGUP", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USAGE",
           "Env", "Job", "OutputLedger",
           "Reporter", "Settings", "Target", "crop_record", "display", "json_line", "make_cropper", "one_line",
           "sigint_deferred", "warnings_noted"]

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

Around the run: `settings` (`Settings`: a run's options, checked when built), `report` (`Env`, the
streams; `Reporter`, the lines on them; JSON records), `ledger` (`OutputLedger`: no input is ever an
output) and `loader` (`make_cropper`: the model, loaded once). Their public names are also this
module's, as before.

Only the standard library and light s2ccrop modules load at import; Pillow and torch load when a run
needs them. A bad photo never ends a run: it gets one error line (`s2ccrop: error: PATH: reason`)
and the run goes on; stdout carries only results.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Iterator

from .errors import ConfigError, S2CCropError, WeightsError
from .hints import Hints, path_key
from .interrupts import deferred
from .io.paths import InputPath, Skipped, WalkError, iter_inputs, output_path, render_name
from .ledger import OutputLedger, identities, identity, same_file, same_folder
from .loader import make_cropper  # looked up here when a run loads its model: tests replace batch.make_cropper
from .presets import RatioRequest
# PROG, DEFAULT_WORKERS, FORMATS, MAX_JOBS, range_phrase: unused here, still importable from here as before.
from .report import PROG, Env, Reporter, crop_record, display, json_line, one_line, warnings_noted  # noqa: F401
from .settings import DEFAULT_WORKERS, FORMATS, MAX_JOBS, Settings, range_phrase  # noqa: F401
from .types import Ratio

# The command line's exit statuses; a run's `execute()` returns one of the first two. A run stopped by
# a signal exits 128 + its number (`interrupts.Interrupted.exit_status`): 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_TERMINATED, EXIT_HANGUP = 143, 129


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
    fmt: object = None  # io.formats.OutputFormat
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
        self.counts = {"photos": 0, "written": 0, "failed": 0, "skipped": 0, "earlier_outputs": 0}
        self.started = time.monotonic()
        # Anything with set() / is_set(): the process engine swaps in one its forked workers share.
        self.cancel_event = threading.Event()
        self._explicit: set[tuple[int, int]] = set()  # files named on the command line (st_dev, st_ino)
        self._preview_id: tuple[int, int] | None = None  # an earlier contact sheet at the --preview path
        self._hinted: set[str] = set()  # --hints lines whose photo this run met (path_key)
        self._passed_over: set[str] = set()  # ... and those met as earlier outputs, not cropped
        self._heif_told = False  # the one line on how to read HEIC photos

    # -- the whole run ---------------------------------------------------------------------------
    def execute(self) -> int:
        """Plan, crop, write and report every photo; EXIT_OK, or EXIT_FAILED when any photo failed.
        Errors that stop the whole run (weights that cannot load) are raised as S2CCropError."""
        from .io.images import batch_pillow

        batch_pillow()
        self.check_outputs()
        if self.settings.preview_path is not None:
            from .io.preview import ContactSheet

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

        No input is ever an output. An output replaces only a file s2ccrop wrote (its Software tag), and
        such a file is an input only when named on the command line: in a folder or a stdin list it is
        an earlier output, passed over (counted), whatever its name or the order of the inputs. Named
        files are known before any work, so an output at one of them makes its photo fail with one line,
        as does a file s2ccrop did not write."""
        from .io.writers import written_by_s2ccrop

        s = self.settings
        self._explicit = identities(p for p in s.paths if p != "-")
        stdin = self.env.stdin if "-" in s.paths else None
        for found in iter_inputs(s.paths, recursive=s.recursive, stdin=stdin, null=s.null,
                                 exclude_dirs=self._excluded_dirs()):
            if isinstance(found, WalkError):  # reported in input order, through the pipeline
                yield Job(InputPath(found.path, PurePosixPath(found.path.name)), error=found.reason)
                continue
            if isinstance(found, Skipped):  # a HEIC in a folder, without pillow-heif
                self._tell_heif()
                continue
            if self._preview_id is not None and identity(found.path) == self._preview_id:
                continue  # an earlier run's contact sheet, about to be replaced: not a photo to crop
            if not found.named and written_by_s2ccrop(found.path):
                self.counts["earlier_outputs"] += 1  # a thumbnail of an earlier run: not cropped again
                if s.hint_file is not None and path_key(found.path) in s.hint_file.table:
                    self._passed_over.add(path_key(found.path))
                continue
            job = self._plan_one(found)
            if job is not None:
                yield job

    def _excluded_dirs(self) -> list[Path]:
        """The output folder is not walked (its files are outputs), unless it is a folder being
        cropped itself (`-o photos` for `photos`): that is writing beside the photos."""
        out = self.settings.out_dir
        if out is None or any(same_folder(out, p) for p in self.settings.paths if p != "-"):
            return []
        return [out]

    def _plan_one(self, item: InputPath) -> Job | None:
        from .io.formats import choose_format

        s = self.settings
        fmt = choose_format(s.format, item.path)
        hints = self._hints_of(item)  # met, whatever becomes of it: skipped, or failed here
        earlier = self.ledger.output_owner(item.path)
        if earlier is not None:
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
            from .io.writers import written_by_s2ccrop

            for t in targets:  # kept as asked; but not an output of an earlier run: say so
                if os.path.lexists(t.output) and not written_by_s2ccrop(t.output):
                    self.report.warn(f"{display(t.output)}: exists and s2ccrop did not write it (a photo, or another "
                                     f"program's file): left alone, so {display(item.path)} has no {t.request.label} "
                                     "output")
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
                where = f"--hints {display(self.settings.hint_file.path)}:{line}"
                self.report.error(written, f"has hints ({where}) but is an output of an earlier s2ccrop run, "
                                           "not cropped again; name it on the command line to crop it"
                                  if key in self._passed_over else
                                  f"has hints ({where}) but is not among the photos of this run")

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
            if same_file(t.output, item.path):
                return f"output {display(t.output)} would overwrite the input; use -o or another --name"
            if s.preview_path is not None and same_file(t.output, s.preview_path):
                return f"output {display(t.output)} is the --preview file"
            if self.ledger.is_input(t.output) or (self._explicit and identity(t.output) in self._explicit):
                return f"output {display(t.output)} would overwrite an input of this run; use -o or another --name"
        for t in targets:  # a dry run tells these too: what the run would say
            earlier = self.ledger.output_owner(t.output)
            if earlier is not None and earlier != item.path and not same_file(earlier, item.path):
                if os.path.abspath(earlier.parent) != os.path.abspath(item.path.parent):
                    advice = ("photos of the same name from different folders: give the folder above both (its "
                              "tree is mirrored under -o), or crop them into different -o folders")
                else:
                    advice = "same name stem; use --format same or a --name with {ext}"
                return f"output {display(t.output)} is also {display(earlier)}'s in this run ({advice})"
            if not s.skip_existing and os.path.lexists(t.output) and not written_by_s2ccrop(t.output):
                return (f"output {display(t.output)} exists and s2ccrop did not write it (a photo, or another "
                        "program's file): it is left alone; use -o, another --name, or move it away")
        for t in targets:
            self.ledger.claim(t.output, item.path)
        return None

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
        self._preview_id = identity(path)
        if self._preview_id in identities(p for p in s.paths if p != "-"):
            raise ConfigError(f"{option} {display(path)}: is also an input; choose another file name")

    # -- step 1: decode --------------------------------------------------------------------------
    def decode(self, job: Job) -> Job:
        """Read the photo upright (EXIF applied); a photo that cannot be read gets its error."""
        from .io.images import MODEL, open_image

        if self.cancel_event.is_set() or job.error:
            return job
        try:
            with warnings_noted(job.warned):  # Pillow on a damaged EXIF block: one line, not its source
                job.decoded = open_image(job.item.path, max_pixels=self.settings.pixel_limit, reduction=MODEL)
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
            job.crops = cropper.crop(job.decoded.rgb(), [t.request.ratio for t in job.targets], job.decoded.size,
                                     focus=hints.focus,
                                     keep=hints.keep, faces=job.decoded.faces, fit=s.fit, scale=hints.scale)
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
        instead of one fsync per file). All or nothing: when one cannot be written, the photo fails
        and none of its outputs is put in place."""
        from .io.preview import preview_tile
        from .io.writers import Cancelled, WriteBatch

        if job.error or not job.crops:
            return job
        s = self.settings
        if s.dry_run:
            job.written.extend([None] * len(job.crops))
        else:
            with WriteBatch() as batch:  # leaving it deletes whatever was not committed
                self._stage_outputs(job, batch)
                if job.error is None:
                    try:
                        batch.commit()
                    except Cancelled:
                        job.error = "interrupted"
                    except (OSError, ValueError) as exc:
                        job.error = f"cannot write {display(batch.failed)}: {getattr(exc, 'strerror', None) or exc}"
                    job.written.extend(batch.committed)
        if s.preview_path is not None and job.error is None:
            try:
                job.tile = preview_tile(job.decoded.image, job.crops, display(job.item.path), hints=job.hints,
                                        pad_color=s.pad_color, size=job.decoded.size)
            except Exception as exc:
                job.notes.append(f"{display(job.item.path)}: left out of the preview ({type(exc).__name__}: {exc})")
        job.decoded = None  # free the pixels as soon as the photo is done
        return job

    def _stage_outputs(self, job: Job, batch) -> None:
        """Render and stage each target's output in `batch`, in order, until one fails (job.error).
        Each is rendered from the coarsest decode of the photo that covers it: the model's (or the finer
        one the model's was averaged from) where it does, else one more decode at the scale it needs
        (each scale decoded once)."""
        from .io.formats import output_size, pad_size
        from .io.images import covering_reduction
        from .io.render import pad_placement

        s = self.settings
        sizes = []
        for target, crop in zip(job.targets, job.crops):
            ratio = Ratio.parse(target.request.ratio)
            padded = crop.fit == "pad"
            try:
                if padded:
                    size, clamped = pad_size(crop.box, ratio.value, s.size_spec)
                else:
                    size, clamped = output_size((crop.width, crop.height), None if ratio.is_any else ratio.value,
                                                s.size_spec)
            except ValueError as exc:
                job.error = f"cannot write {display(target.output)}: {exc}"
                return
            if clamped:
                job.notes.append(f"{display(target.output)}: the {'padded fit' if padded else 'crop'} is only "
                                 f"{size[0]}x{size[1]}; written at that size (--upscale enlarges)")
            sizes.append(size)
        decodes = {d.reduction: d for d in (job.decoded, job.decoded.finer) if d is not None}
        for target, crop, size in zip(job.targets, job.crops, sizes):
            shown = pad_placement((crop.width, crop.height), size)[2:] if crop.fit == "pad" else size
            k = covering_reduction(job.decoded.size, [(crop.box, shown)], upto=job.decoded.reduction)
            if k not in decodes:
                decodes[k] = self._decode_again(job, k)
                if decodes[k] is None:
                    return
            if not self._stage_one(job, batch, target, crop, size, decodes[k]):
                return

    def _decode_again(self, job: Job, k: int):
        """The photo decoded at 1/k for outputs the model's decode does not cover; None, with
        job.error, when it cannot be read again as it was."""
        from .io.images import open_image

        try:
            with warnings_noted(job.warned):
                again = open_image(job.item.path, max_pixels=self.settings.pixel_limit, reduction=k)
        except S2CCropError as exc:
            job.error = f"cannot read it again for its outputs: {exc}"
            return None
        if again.stamp != job.decoded.stamp or again.size != job.decoded.size:
            job.error = "the file changed while it was being cropped; crop it again"
            return None
        return again

    def _stage_one(self, job: Job, batch, target: Target, crop, size: tuple[int, int], source) -> bool:
        """Render one output from `source` (a decode of the photo) and stage it; False with job.error."""
        from .io.writers import Cancelled, write_crop

        s = self.settings
        try:
            with warnings_noted(job.warned):
                write_crop(target.output, source.image, source.box_in_image(crop.box), size, job.fmt,
                           quality=s.quality, icc=source.icc_profile, cancel=self.cancel_event,
                           pad=crop.fit == "pad", pad_color=s.pad_color, region_size=(crop.width, crop.height),
                           batch=batch)
            return True
        except Cancelled:
            job.error = "interrupted"
        except (OSError, ValueError) as exc:
            job.error = f"cannot write {display(target.output)}: {getattr(exc, 'strerror', None) or exc}"
        except MemoryError:
            job.error = f"cannot write {display(target.output)}: not enough memory for {size[0]}x{size[1]} pixels"
        except Exception as exc:  # an encoder bug on one photo must not end the batch with a traceback
            job.error = f"cannot write {display(target.output)}: {type(exc).__name__}: {exc}"
        return False

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
        earlier = f", {c['earlier_outputs']} earlier outputs passed over" if c["earlier_outputs"] else ""
        self.report.note(f"{c['photos']} photos, {n_crops} crops {verb}, {c['failed']} failed, "
                         f"{c['skipped']} skipped{earlier} in {took:.1f} s")


def _heif_missing() -> str:
    from .io.paths import HEIF_MISSING

    return HEIF_MISSING


# Stop signals (SIGINT, SIGTERM, SIGHUP) held over a block, then delivered: see interrupts.deferred.
sigint_deferred = deferred


__all__ = ["BatchRun", "EXIT_FAILED", "EXIT_HANGUP", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_TERMINATED", "EXIT_USAGE",
           "Env", "Job", "OutputLedger",
           "Reporter", "Settings", "Target", "crop_record", "display", "json_line", "make_cropper", "one_line",
           "sigint_deferred", "warnings_noted"]

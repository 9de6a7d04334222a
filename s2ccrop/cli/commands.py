"""The `s2ccrop` Typer app: every command, its options grouped in help panels, and the output of the
info and weights commands.

Parsing and output only. A crop is `batch.Settings` run by an engine (`engines.local_run`, or
`engines.ray_engine.RayRun`); `info`'s data comes from `s2ccrop.info`, the weights commands' from
`s2ccrop.weights`. `train` and `eval` belong to the training package: their arguments go untouched to
its own `main(argv)`, imported only when used.
"""

import importlib
import json
import os
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from typer.core import TyperGroup

from .. import __version__
from ..batch import EXIT_OK, EXIT_USAGE
from ..engines import ENGINES, check_address
from ..errors import ConfigError
from ..hints import FITS
from ..io.paths import DEFAULT_TEMPLATE
from ..presets import preset_table
from ..report import PROG, Env, one_line
from ..settings import DEFAULT_WORKERS, FORMATS, MAX_JOBS, Settings, range_phrase
from .rules import with_default_command

# Owned by the training package: each is `main(argv: list[str]) -> int` with its own argparse.
EXTERNAL = {"train": "s2ccrop.training.train:main", "eval": "s2ccrop.training.run_eval:main"}
PREVIEW_FILE = "s2ccrop-preview.jpg"
COMPLETE_VAR = f"_{PROG.upper()}_COMPLETE"  # set by the completion script when the shell asks
LOCAL_CROP_DONE = "s2ccrop.local_crop_done"  # ctx.meta key
# typer.BadParameter is Click's (vendored by recent Typer): its module holds Click's other errors.
_CLICK_ERRORS = importlib.import_module(typer.BadParameter.__module__)


# ================================================================ running the app


def invoke(argv: list[str], env: Env) -> tuple[int, bool]:
    """Parse `argv` (the subcommand rule applies) and run the command. Returns the exit status, and
    whether it was the local crop command (which leaves no file open: the process may skip its
    teardown). Usage errors become one `s2ccrop: error: ...` line and status 2."""
    command = typer.main.get_command(app)
    if os.environ.get(COMPLETE_VAR):  # the shell asks for completions: Typer answers and exits
        return command.main(argv, prog_name=PROG, complete_var=COMPLETE_VAR), False
    try:
        with command.make_context(PROG, list(argv), obj=env) as ctx:
            result = command.invoke(ctx)
    except typer.Exit as exc:  # --help, --show-completion
        return exc.exit_code, False
    except typer.Abort:
        raise KeyboardInterrupt from None
    except _CLICK_ERRORS.UsageError as exc:
        message = usage_message(exc)
        if message:  # (none when a group without its command has shown its help instead)
            env.stderr.write(f"{PROG}: error: {message}\n")
            env.stderr.flush()
        return EXIT_USAGE, False
    return (EXIT_OK if result is None else int(result)), bool(ctx.meta.get(LOCAL_CROP_DONE))


def usage_message(exc) -> str:
    """One line for a usage error: `argument -j/--jobs: must be between 1 and 256`."""
    param = getattr(exc, "param", None)
    if isinstance(exc, _CLICK_ERRORS.BadParameter) and param is not None:
        names = "/".join(getattr(param, "opts", None) or [param.human_readable_name])
        return one_line(f"argument {names}: {exc.message}")
    return one_line(exc.format_message())



class DefaultCommandGroup(TyperGroup):
    """The command group, with crop as its default command (`rules.with_default_command`). Applied
    while parsing, so shell completion sees the same commands as a run. While completing, a first
    word being typed may still become a subcommand: it is left alone."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args or not ctx.resilient_parsing:
            args = with_default_command(list(args))
        return super().parse_args(ctx, args)


# ================================================================ help texts

CROP_PANEL, MAKE_PANEL, TRAIN_PANEL = "Cropping", "Set up", "Training"
WHAT, OUTPUT, REPORTING, MODEL, ENGINE = "What to crop", "Output", "Reporting", "Model", "Engine"
HINTS = "Hints and fit"

EXAMPLES = """\
examples:
  s2ccrop photo.jpg -r 16:9                    best 16:9 crop -> photo_16x9.jpg beside it
  s2ccrop ~/Pictures -o thumbs -r phone -r desktop --width 1080
  s2ccrop shots/ -r square --size 512x512 --format webp --json > crops.jsonl
  find . -name '*.jpg' -print0 | s2ccrop - -0 -o out --skip-existing
  s2ccrop trip/ --dry-run --preview sheet.jpg  look at the choices, write nothing else
  s2ccrop cat.jpg -r 9:16 --focus 0.7,0.4       the crop keeps that point
  s2ccrop shop/ -r 1:1 --fit auto --hints hints.jsonl   pad where a crop would cut
  s2ccrop weights list; s2ccrop info"""

RULES = """\
commands: crop is the default: 's2ccrop PATH...' is 's2ccrop crop PATH...' (all its options:
's2ccrop crop --help'). A command is recognised only as the first argument; to crop a folder named
like one, write ./NAME or -- NAME."""

INPUTS_OUTPUTS = """\
inputs: files are always tried; in folders only image files (jpg, png, webp, tif, bmp, gif, avif, ...;
heic with pillow-heif) are taken, hidden names and symlinked folders are skipped. '-' reads paths from stdin, one per line
(-0: NUL-separated).

outputs: one file per (photo, ratio) named by --name (default {stem}_{ratio}.{ext}: photo_16x9.jpg,
photo_1.91x1.jpg, photo_any.jpg). Without -o they go beside each photo; with -o the folder tree of each
folder argument is mirrored below OUT (a file argument goes straight into OUT). No input is ever
written: a file at an output's name is replaced only if s2ccrop wrote it (its Software tag says so).
Template fields: {stem} {ratio} {preset} {ext}; '/' makes subfolders."""

STATUS = """\
exit status: 0 all done, 1 some inputs failed, 2 usage/configuration/weights error; stopped by a signal,
128 + its number: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (no worker, temporary file or partial output left).
environment: S2CCROP_CACHE (cache dir), S2CCROP_OFFLINE=1 (never download), S2CCROP_MANIFEST (extra
weights registry), S2CCROP_THREADS (torch threads), S2CCROP_INT8_BACKBONE=0 (float32 backbone),
S2CCROP_DEBUG=1 (the traceback of an internal error)."""


# Typer before 0.28 joins the lines of each epilog paragraph into one.
_KEEPS_LINES = tuple(int(p) for p in typer.__version__.split(".")[:2]) >= (0, 28)


def _epilog(*parts: str) -> str:
    text = "\n\n".join(parts).replace("[", "\\[")  # Rich markup reads [...] as a style: keep brackets literal
    if _KEEPS_LINES:
        return text
    return "\n\n".join(line for line in text.splitlines() if line.strip())  # one paragraph per line


def _flags_show_no_type() -> None:
    """Typer 0.29's help lists a type beside every option, `<bool>` for flags that take no value (ours,
    --help, --install-completion): a flag shows none."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "s2ccrop_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) and not getattr(self, "count", False) else shown(self, ctx)

    display_type_rich.s2ccrop_flags = True  # type: ignore[attr-defined]
    option.display_type_rich = display_type_rich


_flags_show_no_type()


def _presets() -> str:
    return "ratio presets (-r NAME) and groups:\n" + preset_table()


app = typer.Typer(
    name=PROG,
    cls=DefaultCommandGroup,
    help="Crop photos to every aspect ratio you need with a learned model (S2CNet).",
    epilog=_epilog(EXAMPLES, RULES, _presets(), STATUS),
    subcommand_metavar="PATH... | COMMAND [ARGS]...",
    context_settings={"help_option_names": ["-h", "--help"]},
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:  # `cli.main` answers --version before Typer loads; this is for the help listing
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="Show the version and exit.")] = False,
) -> None:
    pass  # the group's own options; the commands do the work


# ================================================================ option types


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high], with the error message users get (`must be between 1 and 100`)."""

    def parse(text) -> int:
        try:
            value = int(str(text).replace("_", ""))
        except ValueError:
            raise typer.BadParameter(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            raise typer.BadParameter(range_phrase(low, high))
        return value

    return parse


def count(*names: str, low: int, high: int | None = None, **kwargs):
    """An integer option with its range: shown in the help, checked when parsed."""
    return typer.Option(*names, min=low, max=high, parser=whole(low, high), **kwargs)


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text) -> str:
        value = str(text).lower()
        if value not in choices:
            raise typer.BadParameter(f"invalid choice: {text!r} (choose from {', '.join(choices)})")
        return value

    return parse


def choice(*names: str, choices: tuple[str, ...], **kwargs):
    """A string option taking one of `choices` (case-insensitive), completed by the shell."""
    return typer.Option(*names, parser=one_of(*choices), metavar="|".join(choices),
                        autocompletion=lambda: list(choices), **kwargs)


def ray_address(text: str) -> str:
    try:
        return check_address(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


# The options shared by crop and preview.
Paths = Annotated[Optional[list[str]], typer.Argument(
    metavar="PATH", help="Photos, folders, or - for paths on stdin.", show_default=False)]
Ratios = Annotated[Optional[list[str]], typer.Option(
    "-r", "--ratio", metavar="RATIO", rich_help_panel=WHAT, show_default=False,
    help="W:H (16:9, 1.91:1), any, a preset or a group; repeatable. Default: the 'default' group.")]
NoRecursive = Annotated[bool, typer.Option(
    "--no-recursive", rich_help_panel=WHAT, help="Do not descend into subfolders.")]
Null = Annotated[bool, typer.Option(
    "-0", "--null", rich_help_panel=WHAT, help="Paths on stdin are NUL-separated (find -print0).")]
MaxPixels = Annotated[Optional[int], count(
    "--max-pixels", low=0, metavar="N", rich_help_panel=WHAT, show_default=False,
    help="Refuse images with more pixels (default 150000000; 0: no limit).")]
Json = Annotated[bool, typer.Option(
    "--json", rich_help_panel=REPORTING, help="One JSON object per (photo, ratio) on stdout.")]
Quiet = Annotated[bool, typer.Option(
    "-q", "--quiet", rich_help_panel=REPORTING, help="No result lines in text mode, no summary.")]
Weights = Annotated[Optional[str], typer.Option(
    "--weights", metavar="NAME|PATH", rich_help_panel=MODEL, show_default=False,
    help="Registry name or checkpoint file (default: the built-in weights).")]
Device = Annotated[str, typer.Option(
    "--device", metavar="auto|cpu|cuda[:N]", rich_help_panel=MODEL, help="Where the model runs.")]
FaceGuard = Annotated[bool, typer.Option(
    " /--no-face-guard", rich_help_panel=MODEL, show_default=False,
    help="Allow crops that cut through a detected face (by default they lose to any crop that does not).")]
Jobs = Annotated[Optional[int], count(
    "-j", "--jobs", low=1, high=MAX_JOBS, metavar="N", rich_help_panel=MODEL, show_default=False,
    help="Processes cropping photos in parallel on CPU, one model thread each "
         "(default: one per core, at most 8; 1: this process only).")]
Workers = Annotated[int, count(
    "--workers", low=0, metavar="N", rich_help_panel=MODEL,
    help="With --jobs 1 or a GPU: threads decoding and writing while the model runs (0: none).")]
Focus = Annotated[Optional[str], typer.Option(
    "--focus", metavar="X,Y", rich_help_panel=HINTS, show_default=False,
    help="A point every crop must keep, as fractions of the upright photo (0.5,0.5: its centre).")]
Keep = Annotated[Optional[str], typer.Option(
    "--keep", metavar="X1,Y1,X2,Y2", rich_help_panel=HINTS, show_default=False,
    help="A region kept whole wherever a crop of the ratio can hold it (fractions: left, top, right, bottom).")]
Scale = Annotated[Optional[str], typer.Option(
    "--scale", metavar="LO,HI", rich_help_panel=HINTS, show_default=False,
    help="How large crops may be, as fractions of the largest crop of each ratio (0.4,0.7: tighter).")]
HintsFileOption = Annotated[Optional[str], typer.Option(
    "--hints", metavar="FILE", rich_help_panel=HINTS, show_default=False,
    help='Hints per photo, JSON lines: {"input": PATH, "focus": \\[x, y], "keep": \\[x1, y1, x2, y2], '
         '"scale": \\[lo, hi]}.')]
Fit = Annotated[str, choice(
    "--fit", choices=FITS, rich_help_panel=HINTS,
    help="crop: cut to the ratio; pad: show the model's framing whole, padded to the ratio; auto: pad only "
         "when every crop of the ratio would cut a face, a hint or the subject.")]
PadColor = Annotated[Optional[str], typer.Option(
    "--pad-color", metavar="COLOUR", rich_help_panel=HINTS, show_default=False,
    help="Padding colour (#rrggbb or a name; default: a blurred copy of the photo).")]


# ================================================================ crop


@app.command(
    "crop", rich_help_panel=CROP_PANEL,
    help="Crop photos to aspect ratios and write the crops (the default command).",
    epilog=_epilog(EXAMPLES, INPUTS_OUTPUTS, _presets(), STATUS),
)
def crop(
    ctx: typer.Context,
    paths: Paths = None,
    ratio: Ratios = None,
    no_recursive: NoRecursive = False,
    null: Null = False,
    max_pixels: MaxPixels = None,
    out: Annotated[Optional[str], typer.Option(
        "-o", "--out", metavar="DIR", rich_help_panel=OUTPUT, show_default=False,
        help="Output folder (mirrors the input tree); default: beside each photo.")] = None,
    name: Annotated[str, typer.Option(
        "--name", metavar="TEMPLATE", rich_help_panel=OUTPUT, help="Output file name.")] = DEFAULT_TEMPLATE,
    size: Annotated[Optional[str], typer.Option(
        "--size", metavar="WxH", rich_help_panel=OUTPUT, show_default=False,
        help="Exact output pixels; sets the ratio when no -r is given.")] = None,
    width: Annotated[Optional[int], count(
        "--width", low=1, metavar="W", rich_help_panel=OUTPUT, show_default=False,
        help="Output width; the height follows the ratio.")] = None,
    height: Annotated[Optional[int], count(
        "--height", low=1, metavar="H", rich_help_panel=OUTPUT, show_default=False,
        help="Output height; the width follows the ratio.")] = None,
    upscale: Annotated[bool, typer.Option(
        "--upscale", rich_help_panel=OUTPUT, help="Enlarge crops smaller than the asked size (default: never).")] = False,
    format_: Annotated[str, choice(
        "--format", choices=FORMATS, rich_help_panel=OUTPUT, help="Output format (same: the input's).")] = "same",
    quality: Annotated[int, count(
        "--quality", low=1, high=100, metavar="Q", rich_help_panel=OUTPUT, help="JPEG/WebP quality.")] = 90,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", rich_help_panel=OUTPUT, help="Leave existing outputs untouched (re-runs are no-ops).")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", rich_help_panel=OUTPUT, help="Decide and report; write nothing.")] = False,
    preview: Annotated[Optional[str], typer.Option(
        "--preview", metavar="FILE", rich_help_panel=OUTPUT, show_default=False,
        help="Also write FILE: every crop drawn over its photo (a contact sheet).")] = None,
    json_: Annotated[bool, typer.Option(
        "--json", rich_help_panel=REPORTING, help="One JSON object per (photo, ratio) on stdout.")] = False,
    quiet: Quiet = False,
    weights: Weights = None,
    device: Device = "auto",
    face_guard: FaceGuard = True,
    jobs: Jobs = None,
    workers: Workers = DEFAULT_WORKERS,
    focus: Focus = None,
    keep: Keep = None,
    scale: Scale = None,
    hints: HintsFileOption = None,
    fit: Fit = "crop",
    pad_color: PadColor = None,
    engine: Annotated[str, choice(
        "--engine", choices=ENGINES, rich_help_panel=ENGINE,
        help="local: this machine; ray: a Ray Data pipeline, one model per actor, sized by the cluster "
             "(--jobs and --workers do not apply; pip install 's2ccrop\\[ray]').")] = "local",
    address: Annotated[Optional[str], typer.Option(
        "--address", metavar="auto|HOST:PORT", parser=ray_address, rich_help_panel=ENGINE, show_default=False,
        help="With --engine ray: the cluster (default $RAY_ADDRESS, else a Ray started for the run).")] = None,
) -> int:
    env: Env = ctx.obj
    if address is not None and engine != "ray":
        raise ConfigError("--address needs --engine ray")
    settings = Settings(
        paths or [], ratios=ratio, output=out, name=name, size=size, width=width, height=height,
        upscale=upscale, format=format_, quality=quality, json=json_, quiet=quiet, dry_run=dry_run,
        skip_existing=skip_existing, recursive=not no_recursive, null=null, max_pixels=max_pixels,
        weights=weights, device=device, face_guard=face_guard, jobs=jobs,
        workers=workers, preview=preview,
        focus=focus, keep=keep, scale=scale, hints=hints, fit=fit, pad_color=pad_color,
    )
    return run_crop(ctx, settings, engine=engine, address=address)


def run_crop(ctx: typer.Context, settings: Settings, *, engine: str = "local", address: str | None = None) -> int:
    if engine == "ray":
        from ..engines.ray_engine import RayRun

        return RayRun(settings, ctx.obj, address=address).execute()
    from ..engines import local_run

    code = local_run(settings, ctx.obj).execute()
    ctx.meta[LOCAL_CROP_DONE] = True  # every output was written and closed
    return code


# ================================================================ preview


@app.command("preview", rich_help_panel=CROP_PANEL,
             help="Draw the chosen crop of every ratio over each photo: several photos make a contact sheet. "
                  f"Writes only FILE (default {PREVIEW_FILE}) and prints its path.")
def preview_command(
    ctx: typer.Context,
    paths: Paths = None,
    out: Annotated[str, typer.Option(
        "-o", "--out", metavar="FILE", rich_help_panel=OUTPUT, help="The contact sheet to write.")] = PREVIEW_FILE,
    ratio: Ratios = None,
    no_recursive: NoRecursive = False,
    null: Null = False,
    max_pixels: MaxPixels = None,
    json_: Json = False,
    quiet: Quiet = False,
    weights: Weights = None,
    device: Device = "auto",
    face_guard: FaceGuard = True,
    jobs: Jobs = None,
    workers: Workers = DEFAULT_WORKERS,
    focus: Focus = None,
    keep: Keep = None,
    scale: Scale = None,
    hints: HintsFileOption = None,
    fit: Fit = "crop",
    pad_color: PadColor = None,
) -> int:
    settings = Settings(
        paths or [], ratios=ratio, recursive=not no_recursive, null=null, max_pixels=max_pixels, json=json_,
        quiet=quiet or not json_,  # the sheet's path is the result line
        weights=weights, device=device, face_guard=face_guard, jobs=jobs,
        workers=workers, preview=Path(out), preview_only=True, focus=focus, keep=keep, scale=scale, hints=hints,
        fit=fit, pad_color=pad_color,
    )
    return run_crop(ctx, settings)


# ================================================================ info


@app.command("info", rich_help_panel=MAKE_PANEL,
             help="Versions, device, compiled ops (and why not), cache folder and default weights.")
def info_command(
    ctx: typer.Context,
    device: Annotated[str, typer.Option("--device", metavar="auto|cpu|cuda[:N]",
                                        help="The device to describe.")] = "auto",
    json_: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> int:
    from ..info import collect_info

    env: Env = ctx.obj
    data = collect_info(device)
    if json_:
        env.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        width = max(len(k) for k in data)
        env.stdout.writelines(f"{key:<{width}}  {value}\n" for key, value in data.items())
    env.stdout.flush()
    return EXIT_OK


# ================================================================ weights

weights_app = typer.Typer(
    name="weights", help="Manage model weights: the registry, the cache, imports and downloads.",
    context_settings={"help_option_names": ["-h", "--help"]}, rich_markup_mode="rich", no_args_is_help=True,
)
app.add_typer(weights_app, name="weights", rich_help_panel=MAKE_PANEL)


@weights_app.command("list", help="Registered and imported weights, with their state (* the default).")
def weights_list(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per weights.")] = False,
    no_check: Annotated[bool, typer.Option("--no-check", help="Do not hash the files (faster).")] = False,
) -> int:
    from .. import weights as reg

    env: Env = ctx.obj
    rows = reg.status(check=not no_check)
    if json_:
        env.stdout.writelines(json.dumps(row.record()) + "\n" for row in rows)
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


@weights_app.command("path", help="The verified file of NAME, or the cache folder without NAME.")
def weights_path(ctx: typer.Context, name: Annotated[Optional[str], typer.Argument(show_default=False)] = None) -> int:
    from .. import weights as reg

    path = reg.weights_cache_dir() if name is None else reg.resolve(name, download=False).path
    ctx.obj.stdout.write(f"{os.fspath(path)}\n")
    return EXIT_OK


@weights_app.command("import", help="Copy a checkpoint (ours, or a reference GAICv1/GAICv2 .pth) into the cache.")
def weights_import(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE")],
    name: Annotated[Optional[str], typer.Option(
        "--name", help="The name to use with --weights (default: the file's stem).", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an import of the same name.")] = False,
) -> int:
    from .. import weights as reg

    got = reg.import_weights(file, name, force=force)
    ctx.obj.stdout.write(f"{got.name}\t{got.sha256}\t{os.fspath(got.path)}\n")
    return EXIT_OK


@weights_app.command("verify", help="Check the sha256 of NAMEs (default: every file present); 2 when one fails.")
def weights_verify(
    ctx: typer.Context, names: Annotated[Optional[list[str]], typer.Argument(metavar="NAME...", show_default=False)] = None,
) -> int:
    from .. import weights as reg

    env: Env = ctx.obj
    bad = 0
    for row in reg.verify(names):
        if row.state == "ok":
            env.stdout.write(f"ok      {row.entry.name}  {row.entry.sha256}\n")
        else:
            bad += 1
            env.stderr.write(f"{PROG}: error: {row.entry.name}: {row.detail or row.state}\n")
    env.stdout.flush()
    return EXIT_USAGE if bad else EXIT_OK


@weights_app.command("download", help="Fetch registered weights into the cache.")
def weights_download(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    force: Annotated[bool, typer.Option("--force", help="Download again even when a verified copy exists.")] = False,
) -> int:
    from .. import weights as reg

    env: Env = ctx.obj
    progress, stop = _download_bar(env, name)
    try:
        path = reg.download(name, force=force, progress=progress)
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


# ================================================================ train, eval (the training package's)

PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _external(name: str, help: str) -> None:
    """Register `name` as a command whose arguments (--help included) go to EXTERNAL[name]'s main."""

    def command(ctx: typer.Context) -> int:
        module, func = EXTERNAL[name].split(":")
        try:
            main = getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"the '{name}' command is not available in this installation ({exc})") from None
        return int(main(list(ctx.args)) or 0)

    app.command(name, help=help, context_settings=PASS_THROUGH, add_help_option=False,
                rich_help_panel=TRAIN_PANEL)(command)


_external("train", "Train S2CNet on FCDB human crops (s2ccrop train --help for its options).")
_external("eval", "Score a model on FCDB / GAICD, or its gene head (s2ccrop eval --help).")

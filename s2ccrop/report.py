"""What a run tells, and where: stdout carries results only; errors, warnings, notes, the summary and
the progress bar go to stderr.

`Env` holds the streams a run talks to (tests swap them); `Reporter` writes one line per message on
them; `display` and `one_line` make a path or a message fit one line; `crop_record` and `json_line`
are one crop's JSON record (what --json prints and the Ray engine's manifest holds);
`warnings_noted` turns the library warnings of one thread into such lines.

Standard library only at import; rich loads when a progress bar is drawn.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .hints import Hints

PROG = "s2ccrop"


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


_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)")  # CSI, OSC, others


def one_line(text: object) -> str:
    """A message as one line: newlines become spaces; terminal escapes (a library's colours) are dropped."""
    return " ".join(_ESCAPES.sub("", str(text)).split("\n")).strip()


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


# ================================================================ records


def crop_record(input_path, crop, image_size: tuple[int, int], written: Path | None,
                hints: Hints | None = None) -> dict:
    """The JSON object of one (photo, ratio): what --json prints and the Ray engine's manifest holds.
    "fit": "crop" (box is the thumbnail) or "pad" (box is the region shown whole, padded to the
    ratio); "focus" / "keep" / "scale": the hints applied, when any; with "scale", "widened": whether
    the crop had to be larger than the range to hold a face or a hint."""
    record = {
        "input": os.fspath(input_path), "ratio": crop.ratio, "box": list(crop.box),
        "width": image_size[0], "height": image_size[1], "score": round(float(crop.score), 6),
        "output": os.fspath(written) if written is not None else None,
        "fit": getattr(crop, "fit", "crop"), **(hints.record() if hints else {}),
    }
    if hints is not None and hints.scale is not None:
        record["widened"] = bool(getattr(crop, "widened", False))
    return record


def json_line(record: dict) -> str:
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes in a file name: escape rather than emit invalid UTF-8
        line = json.dumps(record, ensure_ascii=True)
    return line


# ================================================================ library warnings


def warnings_noted(notes: list[str]):
    """Warnings issued in this thread during the block (Pillow's about a damaged file) are appended to
    `notes` as texts instead of being printed with their source line; other threads' warnings are
    unaffected (`s2ccrop._warnings`)."""
    from ._warnings import noted

    return noted(notes)


__all__ = ["Env", "PROG", "Reporter", "crop_record", "display", "json_line", "one_line", "warnings_noted"]

"""Which files a run reads and writes: the output ledger and file identities.

`OutputLedger` remembers the inputs and the outputs of a run, per folder, for the folders seen most
recently; `identity`, `identities`, `same_file` and `same_folder` tell whether two names are one file.
The batch engine's planning (`BatchRun.plan`) uses them so that no input is ever an output.

Standard library only.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict
from pathlib import Path
from typing import Iterable


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


def identity(path: "str | os.PathLike[str]") -> tuple[int, int] | None:
    """(st_dev, st_ino) of an existing file, following links; None for anything else."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if not stat.S_ISDIR(st.st_mode) else None


def identities(paths: Iterable["str | os.PathLike[str]"]) -> set[tuple[int, int]]:
    return {i for i in map(identity, paths) if i is not None}


def same_folder(a: "str | os.PathLike[str]", b: "str | os.PathLike[str]") -> bool:
    try:
        return os.path.isdir(a) and os.path.isdir(b) and os.path.samefile(a, b)
    except OSError:
        return False


def same_file(a: Path, b: Path) -> bool:
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b)


__all__ = ["OutputLedger", "identities", "identity", "same_file", "same_folder"]

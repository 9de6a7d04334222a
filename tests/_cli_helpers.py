"""Helpers shared by the tests that drive the crop command in-process (test_reliability, test_processes)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

from s2ccrop import cli
from s2ccrop.batch import Env
from s2ccrop.types import Crop, Ratio


def run_in_process(*argv, stdin=None) -> tuple[int, str, str]:
    """`cli.main` with in-memory streams: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([os.fspath(a) for a in argv], Env(stdin if stdin is not None else io.BytesIO(b""), out, err, False))
    return code, out.getvalue(), err.getvalue()


class FastCropper:
    """Stands in for the model: the whole image for every ratio (the pipeline is under test, not scoring);
    the hints and the fit the batch engine passes are recorded in `asked`."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.asked: list[dict] = []

    def crop(self, image, ratios, size=None, **hints):
        self.asked.append(hints)
        w, h = size or image.size
        return [Crop(str(Ratio.parse(r)), (0, 0, w, h), 0.0) for r in ratios]


class CountingLines:
    """A stdin that hands out `n` path lines and counts how many were taken."""

    def __init__(self, path: "str | Path", n: int) -> None:
        self.line = os.fsencode(path) + b"\n"
        self.n = n
        self.taken = 0

    def __iter__(self):
        while self.taken < self.n:
            self.taken += 1
            yield self.line

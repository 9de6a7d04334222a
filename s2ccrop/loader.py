"""The model of a batch run, loaded once: `make_cropper` imports torch and builds the `api.Cropper`,
with its warnings reported as one warning line each and stop signals held until it is done.

Standard library only at import; torch and the model load when `make_cropper` is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .interrupts import deferred

if TYPE_CHECKING:
    from .report import Reporter


def make_cropper(weights: str | None, device: str, report: Reporter, face_guard: bool = True):
    """Import torch and load the model once; its warnings become one warning line each. A stop signal
    (Ctrl-C, SIGTERM) waits for both to end (about 2 s from a cold start): raised inside torch's C++
    while it builds tensors, it would come out as a TypeError and be reported as an unreadable weights
    file."""
    from ._warnings import noted

    # noted, not catch_warnings: decode threads may be noting their photos' warnings meanwhile
    with noted([], UserWarning) as caught, deferred():
        from ._imports import import_torch

        import_torch(freeze=True)  # a batch process: freeze what torch's import made
        from .api import Cropper

        cropper = Cropper(weights=weights, device=device, face_guard=face_guard)
    for message in caught:
        report.warn(message)
    return cropper


__all__ = ["make_cropper"]

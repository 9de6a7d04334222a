"""Importing torch without the garbage collector's overhead (standard library only: the CLI imports this
before torch)."""

from __future__ import annotations

import gc
import sys


def import_torch(freeze: bool = False) -> None:
    """Import numpy and torch with the garbage collector off. The import creates so many objects that
    the collector would run ~400 times during it, and a full collection soon after (~0.3 s of a cold
    start together), freeing nothing. `freeze`: then move everything the process has made so far to
    the permanent generation (gc.freeze), so later collections never walk it again and forked workers
    do not copy its pages by collecting them; for a command-line process only, since a library must
    not freeze its caller's objects."""
    if "torch" in sys.modules:
        return
    was_on = gc.isenabled()
    gc.disable()
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
    finally:
        if freeze:
            gc.freeze()
        if was_on:
            gc.enable()

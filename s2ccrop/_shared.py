"""Locate the read-only ``../shared`` material (datasets, teacher weights, docs).

Nothing from ``../shared`` is ever copied into the project: code that needs it is given its path, either
explicitly, through the ``S2CCROP_SHARED`` environment variable, or by the convention that it lies next
to the checkout (``<checkout>/../shared``). Everything that uses it must cope with its absence.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import envvars
from .errors import ConfigError

ENV_VAR = envvars.SHARED


def shared_dir(explicit: "str | os.PathLike[str] | None" = None) -> Path | None:
    """Return the shared folder, or None when it is not available.

    Order: ``explicit`` (an error if it is not a folder, since the caller asked for exactly that path),
    then ``$S2CCROP_SHARED``, then ``../shared`` beside the checkout. The last two quietly give None when
    missing, so tests and optional features can skip with a reason instead of failing.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise ConfigError(f"shared folder {str(path)!r} does not exist or is not a folder")
        return path
    env = envvars.path(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    path = Path(__file__).resolve().parents[1].parent / "shared"  # <checkout>/s2ccrop/_shared.py -> <checkout>/../shared
    return path if path.is_dir() else None

"""s2ccrop: learned photo cropping for every device aspect ratio (S2CNet, AAAI 2024).

    >>> from s2ccrop import Cropper
    >>> Cropper().crop("photo.jpg", ["16:9", "1:1"])      # doctest: +SKIP
    [Crop(ratio='16:9', box=(0, 96, 1024, 672), score=0.41), ...]

Heavy modules (torch) load on first use, so `import s2ccrop` and `s2ccrop --version` stay fast.
"""

from __future__ import annotations

import signal as _signal
import sys as _sys


def _launched_as_the_command(argv: list[str]) -> bool:
    """Whether this process is the `s2ccrop` command: its console script, or `python -m s2ccrop`."""
    i = 1
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-", "-c", "-m"):
        i += 2 if argv[i] in ("-W", "-X", "--check-hash-based-pycs") else 1
    if argv[i : i + 1] == ["-m"]:
        return argv[i + 1 : i + 2] == ["s2ccrop"]
    name = argv[i].replace("\\", "/").rsplit("/", 1)[-1] if i < len(argv) else ""
    return name in ("s2ccrop", "s2ccrop.exe", "s2ccrop-script.py")


_held_signals: list[int] = []  # stop signals received while the command loads; cli.run delivers them

# The command's stop signals are s2ccrop's from here on, before anything else loads: a Ctrl-C while
# it starts is held, then reported by cli.run as any other (one line, 128 + the signal), never
# Python's traceback. `import s2ccrop` in another program changes nothing.
if _launched_as_the_command(getattr(_sys, "orig_argv", [])):
    for _name in ("SIGINT", "SIGTERM", "SIGHUP"):  # interrupts.STOP_SIGNALS; importing it would come first
        if hasattr(_signal, _name) and _signal.getsignal(getattr(_signal, _name)) != _signal.SIG_IGN:
            _signal.signal(getattr(_signal, _name), lambda signum, frame: _held_signals.append(signum))

from typing import TYPE_CHECKING  # noqa: E402

from .errors import ConfigError, InputError, S2CCropError, WeightsError
from ._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from .api import Cropper
    from .types import Box, Crop, Ratio

__all__ = ["Box", "ConfigError", "Crop", "Cropper", "InputError", "Ratio", "S2CCropError", "WeightsError", "__version__"]


def __getattr__(name: str):
    # Loaded on first use: the command line installs its signal handlers before anything heavier loads.
    if name == "Cropper":
        from .api import Cropper

        return Cropper
    if name in ("Box", "Crop", "Ratio"):
        from . import types

        return getattr(types, name)
    raise AttributeError(f"module 's2ccrop' has no attribute {name!r}")

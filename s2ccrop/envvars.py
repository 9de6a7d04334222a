"""Every environment variable of s2ccrop's own, in one place (standard library only: the command line
reads some before torch loads). The table in docs/ARCHITECTURE.md, *Environment*, lists the same.
Other libraries' variables that s2ccrop honours are read where they apply: RAY_ADDRESS (the Ray
engine's cluster), PILLOW_BLOCKS_MAX (a batch leaves Pillow's setting to it) and Typer's
shell-completion variable.

On/off switches (`switch`): unset or empty is the default; 0, false, no or off is off; anything else
is on. `setup.py` reads its own build variables (FORCE_CUDA, S2CCROP_BUILD_EXT), before s2ccrop exists.
"""

from __future__ import annotations

import os

from .errors import ConfigError

THREADS = "S2CCROP_THREADS"
INT8_BACKBONE = "S2CCROP_INT8_BACKBONE"
NO_EXT = "S2CCROP_NO_EXT"
CACHE = "S2CCROP_CACHE"
OFFLINE = "S2CCROP_OFFLINE"
MANIFEST = "S2CCROP_MANIFEST"
SHARED = "S2CCROP_SHARED"
DEBUG = "S2CCROP_DEBUG"

# name: what it does (docs/ARCHITECTURE.md shows the same table; tests/test_structure.py checks both)
VARIABLES = {
    THREADS: "torch's CPU threads in each process (a whole number; default: torch's own choice). Crops do not depend on it",
    INT8_BACKBONE: "0: run our checkpoints' backbone in float32 instead of int8 on CPU (default on)",
    NO_EXT: "1: use the pure-PyTorch ops even where the compiled ones are built",
    CACHE: "the weights cache folder (default: platformdirs' user cache folder for s2ccrop)",
    OFFLINE: "1: never download weights",
    MANIFEST: "a JSON weights registry read over the shipped one (e.g. a company mirror)",
    SHARED: "the ../shared folder of training data and teachers (training, evaluation, tests)",
    DEBUG: "1: an internal error prints its traceback instead of one line",
}

_OFF = ("0", "false", "no", "off")


def text(name: str) -> str:
    """The variable's value, stripped ("" when unset)."""
    return os.environ.get(name, "").strip()


def switch(name: str, default: bool = False) -> bool:
    """An on/off switch: `default` when unset or empty, False for 0/false/no/off, else True."""
    value = text(name).lower()
    if not value:
        return default
    return value not in _OFF


def path(name: str) -> str | None:
    """A path variable's value, None when unset or empty."""
    return text(name) or None


def threads() -> int | None:
    """$S2CCROP_THREADS as a whole number (None when unset); ConfigError when it is not one."""
    value = text(THREADS)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{THREADS}={value!r} is not a whole number") from None

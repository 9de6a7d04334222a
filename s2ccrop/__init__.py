"""s2ccrop: learned photo cropping for every device aspect ratio (S2CNet, AAAI 2024).

    >>> from s2ccrop import Cropper
    >>> Cropper().crop("photo.jpg", ["16:9", "1:1"])      # doctest: +SKIP
    [Crop(ratio='16:9', box=(0, 96, 1024, 672), score=0.41), ...]

Heavy modules (torch) load on first use, so `import s2ccrop` and `s2ccrop --version` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError, InputError, S2CCropError, WeightsError
from ._version import __version__
from .types import Box, Crop, Ratio

if TYPE_CHECKING:  # pragma: no cover
    from .api import Cropper

__all__ = ["Box", "ConfigError", "Crop", "Cropper", "InputError", "Ratio", "S2CCropError", "WeightsError", "__version__"]


def __getattr__(name: str):
    if name == "Cropper":
        from .api import Cropper

        return Cropper
    raise AttributeError(f"module 's2ccrop' has no attribute {name!r}")

"""Shared fixtures. ``shared_dir``: the read-only ../shared folder, or a skip when this machine lacks it."""

from __future__ import annotations

from pathlib import Path

import pytest

from s2ccrop._shared import shared_dir as _find_shared


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path of ../shared (or $S2CCROP_SHARED); skips the test where it is absent."""
    path = _find_shared()
    if path is None:
        pytest.skip("needs ../shared (set S2CCROP_SHARED)")
    return path

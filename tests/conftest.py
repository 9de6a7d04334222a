"""Shared fixtures. ``shared_dir``: the read-only ../shared folder, or a skip when this machine lacks it."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from s2ccrop._shared import shared_dir as _find_shared

# A test run started in the background by a non-interactive shell (`pytest &`) has SIGINT (and SIGQUIT)
# ignored, and under nohup SIGHUP too; every CLI process the tests start inherits that, and the CLI
# rightly leaves an ignored signal ignored, so the signal tests would see Ctrl-C do nothing. They test
# the CLI's own handling: start them from the defaults a terminal gives.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
for _sig in (signal.SIGHUP, signal.SIGQUIT):
    if signal.getsignal(_sig) is signal.SIG_IGN:
        signal.signal(_sig, signal.SIG_DFL)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path of ../shared (or $S2CCROP_SHARED); skips the test where it is absent."""
    path = _find_shared()
    if path is None:
        pytest.skip("needs ../shared (set S2CCROP_SHARED)")
    return path

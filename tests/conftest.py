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


@pytest.fixture
def own_checkpoint(tmp_path: Path):
    """A factory: `own_checkpoint(node_dim, seed=3, **fields)` saves a random checkpoint of ours (by
    `save_checkpoint`, so it loads as our own) whose graph is `node_dim` wide (MLP 4x), v3's shape
    otherwise (full free-form grid, averaged selection); `fields` override S2CNetConfig fields. Returns
    its path."""
    import torch

    from s2ccrop.model import S2CNet, S2CNetConfig, save_checkpoint

    def make(node_dim: int, seed: int = 3, **fields) -> str:
        shape = dict(align_size=9, num_boxes=4, head="crop", node_dim=node_dim, mlp_dim=4 * node_dim,
                     genes_head=True, graph_uses_head=False, free_form_grid="full", selection="average")
        config = S2CNetConfig(**{**shape, **fields})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = S2CNet(config).eval()
        path = tmp_path / f"own-{node_dim}-{seed}.safetensors"
        save_checkpoint(model, path, half=False)
        return str(path)

    return make

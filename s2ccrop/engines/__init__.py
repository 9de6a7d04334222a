"""Engines that run the crop command somewhere other than this process.

- `ray_engine`: a Ray Data pipeline (decode tasks → one model per actor → write tasks) for a cluster;
  needs the optional extra `pip install 's2ccrop[ray]'`. `s2ccrop PATH... --engine ray` uses it.

The local engine is `s2ccrop.cli.Run` itself; engines reuse its planning, decoding, scoring, writing and
reporting steps so every engine names, writes and reports crops identically.
"""

from __future__ import annotations

ENGINES = ("local", "ray")


def check_address(text: str) -> str:
    """--address: 'auto', HOST:PORT or ray://HOST:PORT (argparse type)."""
    import argparse

    if text == "auto":
        return text
    hostport = text[len("ray://"):] if text.startswith("ray://") else text
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected auto, HOST:PORT or ray://HOST:PORT, not {text!r}")
    return text

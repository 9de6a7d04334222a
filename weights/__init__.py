"""Package data: the weights registry (manifest.json) and the checkpoints shipped with s2ccrop.

Installed as ``s2ccrop._weights`` (see pyproject.toml); read through ``s2ccrop.weights``.
"""

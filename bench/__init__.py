"""Benchmarks (not tests): `python -m bench.run` is the speed harness of issue 6; `bench_ops.py` times the align ops."""

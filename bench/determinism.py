"""Is a crop the same however s2ccrop is run? The command line's `--dry-run --json` boxes of the same
photos under each way of running it, against a plain `-j 1` run:

    .venv/bin/python -m bench.determinism --photos ../shared/data/fcdb-train/images -n 200

Ways: `-j 2`, one model thread ($S2CCROP_THREADS=1, $OMP_NUM_THREADS=1), the photos in reverse order,
`--engine ray` (where Ray is installed), and every library capped at an older instruction set, as a
CPU without AMX or AVX-512 runs: oneDNN at AVX2 and at AVX512_CORE, ATen's kernels at AVX2 and at
their plain C++ ones, fbgemm and MKL at AVX2 (a cap above what this CPU has changes nothing). Prints,
per way, how many boxes differ at all, by more than 1 px, the largest move, and the largest score
difference. Exit status 1 when any box moved by more than 1 px.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

RATIOS = ("16:9", "4:3", "1:1", "9:16", "any")
ROOT = Path(__file__).resolve().parent.parent
CAPS = {
    "oneDNN AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "oneDNN AVX512_CORE": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "ATen AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATen default (no vector ISA)": {"ATEN_CPU_CAPABILITY": "default"},
    "fbgemm + MKL AVX2": {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "all capped at AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                           "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def crops(photos: list[str], args: list[str], env: dict[str, str] | None = None) -> dict[tuple[str, str], dict]:
    """{(photo, ratio): JSON record} of one `s2ccrop --dry-run --json` run."""
    ratios = [a for r in RATIOS for a in ("-r", r)]
    cmd = [sys.executable, "-m", "s2ccrop", *photos, *ratios, "--dry-run", "--json", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **(env or {})), cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} {env or ''}: exit {out.returncode}: {out.stderr.strip()[-500:]}")
    records = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    return {(r["input"], r["ratio"]): r for r in records}


def compare(reference: dict, other: dict) -> tuple[int, int, int, float]:
    """(boxes that differ, by more than 1 px, the largest move in px, the largest score difference)."""
    if set(reference) != set(other):
        raise SystemExit("the runs cropped different photos or ratios")
    differ = over = worst = 0
    score = 0.0
    for key, a in reference.items():
        b = other[key]
        move = max(abs(x - y) for x, y in zip(a["box"], b["box"]))
        differ += move > 0
        over += move > 1
        worst = max(worst, move)
        score = max(score, abs(a["score"] - b["score"]))
    return differ, over, worst, score


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", required=True, type=Path, help="a folder of photos")
    ap.add_argument("-n", type=int, default=200, help="how many of its photos (sorted by name)")
    ap.add_argument("--weights", default=None, help="weights to use (default: the embedded default)")
    ns = ap.parse_args(argv)
    photos = sorted(str(p) for p in ns.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: ns.n]
    base = ["--weights", ns.weights] if ns.weights else []
    reference = crops(photos, ["-j", "1", *base])
    ways: list[tuple[str, dict]] = [
        ("-j 1 again", crops(photos, ["-j", "1", *base])),
        ("-j 2", crops(photos, ["-j", "2", *base])),
        ("S2CCROP_THREADS=1", crops(photos, ["-j", "1", *base], {"S2CCROP_THREADS": "1"})),
        ("OMP_NUM_THREADS=1, -j 2", crops(photos, ["-j", "2", *base], {"OMP_NUM_THREADS": "1"})),
        ("photos in reverse order", crops(photos[::-1], ["-j", "2", *base])),
    ]
    if importlib.util.find_spec("ray") is not None:
        ways.append(("--engine ray", crops(photos, ["--engine", "ray", *base], {"RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"})))
    ways += [(name, crops(photos, ["-j", "1", *base], env)) for name, env in CAPS.items()]
    print(f"{len(photos)} photos x {len(RATIOS)} ratios ({', '.join(RATIOS)}) = {len(reference)} boxes, "
          f"each way against `-j 1`")
    print("| way | boxes that differ | by more than 1 px | largest move | largest score difference |")
    print("|---|---:|---:|---:|---:|")
    failed = False
    for name, got in ways:
        differ, over, worst, score = compare(reference, got)
        failed |= over > 0
        print(f"| {name} | {differ} | {over} | {worst} px | {score:.2g} |")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""GPU throughput of s2ccrop: the library's batched path, its stages, and the CLI end to end (a benchmark, not a test).

    python bench/bench_gpu.py --photos DIR -n 200                 # on a CUDA machine
    python bench/bench_gpu.py --photos DIR -n 8 --device cpu      # smoke run anywhere
    python bench/bench_gpu.py --photos DIR --out table.md         # also write the markdown there
    python bench/bench_gpu.py --photos DIR --parts b --cli-timeout 60   # only the CLI, each run capped

On CUDA, cold runs were measured very slow (suspected: a first-call cost per new input shape; see the GPU
section of bench/RESULTS.md): the warm-up passes of (a) and the cold CLI runs of (b) can take minutes.

(a) model throughput: the first N photos (sorted by name) are decoded once (upright RGB, as the CLI
    decodes), then ``Cropper(device=...).crop_many(images, ratios=RATIOS, batch_size=B)`` is timed
    for each B after a warm-up pass over all photos (its time is reported too); CUDA is synchronised
    before each clock read.
    This includes the per-photo CPU work crop_many does (resize + normalise, candidates, selection).
(b) end to end: ``python -m s2ccrop DIR -r 16:9 -r 4:3 -r 1:1 -r 9:16 -o TMP --device D -q --workers W``
    on the same photos (decode, model, JPEG encode and write), one cold process per run; a 1-photo run
    gives the start-up, and "marginal" = (N - 1) / (wall(N) - wall(1)).
(c) stage split: crop_many's loop re-timed stage by stage (synchronising after each), per batch size:
    preprocess (CPU), backbone (host-to-device copy + MobileNetV2 + fusion, one pass per same-size
    group), candidates (CPU), scoring (align + graph + head per photo, scores back to the host),
    selection. A short torch.profiler pass counts the CUDA kernels launched per photo and the GPU's
    busy time.

Weights: the shipped default (``Cropper()`` with no weights argument) unless --weights is given; speed
does not depend on the values.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATIOS = ("16:9", "4:3", "1:1", "9:16")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
ROOT = Path(__file__).resolve().parent.parent
REFERENCE_FPS = 160  # the reference S2CNet's reported model-only speed on a desktop GPU


def photo_paths(folder: Path, n: int) -> list[Path]:
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise SystemExit(f"no photos in {folder}")
    return paths[:n]


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- (a) model throughput


def time_crop_many(cropper, images, batch_size: int, repeats: int) -> tuple[float, list[float]]:
    """(wall seconds of the warm-up pass, wall seconds of `repeats` timed passes) over `images`. The
    warm-up pass meets every input shape [B, 3, h, w] for the first time: on CUDA that is where
    per-shape start costs show."""
    sync(cropper.device)
    start = time.perf_counter()
    cropper.crop_many(images, ratios=RATIOS, batch_size=batch_size)
    sync(cropper.device)
    warm = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        sync(cropper.device)
        start = time.perf_counter()
        cropper.crop_many(images, ratios=RATIOS, batch_size=batch_size)
        sync(cropper.device)
        times.append(time.perf_counter() - start)
    return warm, times


def backbone_batches(cropper, images, batch_size: int) -> list[int]:
    """Sizes of the backbone passes crop_many makes: chunks of `batch_size` photos, split by model input size."""
    from s2ccrop.preprocess import model_size

    sizes = []
    for start in range(0, len(images), batch_size):
        groups: dict = {}
        for img in images[start : start + batch_size]:
            key = model_size(img.width, img.height)
            groups[key] = groups.get(key, 0) + 1
        sizes += list(groups.values())
    return sizes


# ---------------------------------------------------------------- (c) stage split


def stage_split(cropper, images, batch_size: int) -> dict[str, float]:
    """Milliseconds per photo in each stage of crop_many's loop, synchronising after each stage."""
    import numpy as np

    from s2ccrop.api import _parse_ratios
    from s2ccrop.select import select_crops

    ratios = _parse_ratios(RATIOS)
    dev = cropper.device
    totals = dict.fromkeys(("preprocess", "backbone", "candidates", "scoring", "selection"), 0.0)

    def clock(name: str, fn):
        sync(dev)
        start = time.perf_counter()
        out = fn()
        sync(dev)
        totals[name] += time.perf_counter() - start
        return out

    for start in range(0, len(images), batch_size):
        chunk = [clock("preprocess", lambda img=img: cropper.prepare(img)) for img in images[start : start + batch_size]]
        by_size: dict = {}
        for i, p in enumerate(chunk):
            by_size.setdefault(p.model_size, []).append(i)
        for members in by_size.values():
            fmap = clock("backbone", lambda: cropper.features([chunk[i] for i in members]))
            for b, i in enumerate(members):
                p = chunk[i]
                groups = clock("candidates", lambda: cropper.candidates(p, ratios))
                boxes = np.concatenate(groups, axis=0)
                scores = clock("scoring", lambda: cropper.score_features(fmap, b, p, boxes))
                clock("selection", lambda: select_crops(ratios, groups, scores))
    return {k: v / len(images) * 1e3 for k, v in totals.items()}


def kernel_profile(cropper, images, batch_size: int) -> tuple[float, float, float] | None:
    """(CUDA kernels launched per photo, GPU busy ms per photo, wall ms per photo) of one crop_many
    pass under torch.profiler; None off CUDA or when the profiler cannot see the GPU."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    if cropper.device.type != "cuda":
        return None
    try:
        sync(cropper.device)
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            cropper.crop_many(images, ratios=RATIOS, batch_size=batch_size)
            torch.cuda.synchronize()
        wall = time.perf_counter() - start
        kernels, busy_us = 0, 0.0
        for event in prof.events():
            if str(getattr(event, "device_type", "")).endswith("CUDA"):
                kernels += 1
                busy_us += float(event.time_range.elapsed_us())
    except Exception as exc:  # the profiler is a nice-to-have
        print(f"  (profiler pass failed: {type(exc).__name__}: {exc})", file=sys.stderr)
        return None
    if kernels == 0:
        return None
    n = len(images)
    return kernels / n, busy_us / 1e3 / n, wall / n * 1e3


# ---------------------------------------------------------------- (b) CLI end to end


def run_cli(photos: list[Path], device: str, workers: int, weights: str | None, scratch: Path,
            timeout: float | None = None) -> tuple[float, int, bool]:
    """(wall seconds, crops written, timed out) of one cold `python -m s2ccrop` over `photos`."""
    src = scratch / f"in-{len(photos)}"
    if not src.exists():
        src.mkdir(parents=True)
        for p in photos:
            shutil.copy(p, src / p.name)
    out = scratch / f"out-{len(photos)}-{device}-{workers}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "s2ccrop", str(src), *[a for r in RATIOS for a in ("-r", r)],
           "-o", str(out), "--device", device, "-q", "--workers", str(workers)]
    if weights:
        cmd += ["--weights", weights]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired as exc:
        proc, timed_out = None, True
        tail = (exc.stderr or b"")[-1500:]
        print(f"  CLI timed out after {timeout} s: {tail!r}", file=sys.stderr)
    wall = time.perf_counter() - start
    written = sum(1 for _ in out.rglob("*") if _.is_file()) if out.exists() else 0
    if proc is not None and proc.returncode != 0:
        print(f"  CLI exited {proc.returncode}: {proc.stderr[-1500:]}", file=sys.stderr)
    return wall, written, timed_out


# ---------------------------------------------------------------- report


def describe(device) -> str:
    import torch

    from s2ccrop.ops import extension_status

    loaded, reason = extension_status()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none used"
    return (f"device {device} ({gpu}); torch {torch.__version__}, CUDA {torch.version.cuda}, "
            f"cudnn.benchmark={torch.backends.cudnn.benchmark}, {torch.get_num_threads()} CPU threads, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}; compiled ops: {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "fcdb-train" / "images")
    parser.add_argument("-n", type=int, default=200, help="photos (the first N by name)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size (median reported)")
    parser.add_argument("--weights", default=None, help="default: the shipped weights")
    parser.add_argument("--workers", type=int, nargs="*", default=[2, 8], help="CLI --workers values (none: skip the CLI)")
    parser.add_argument("--cpu-baseline", action="store_true", help="also time crop_many on the CPU of this machine")
    parser.add_argument("--parts", default="abc", help="which parts to run: a (library), b (CLI), c (stages); default abc")
    parser.add_argument("--cli-timeout", type=float, default=600.0, help="seconds per CLI run before it is stopped")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown tables here")
    args = parser.parse_args()

    import torch

    from s2ccrop import Cropper
    from s2ccrop.io.images import open_image

    paths = photo_paths(args.photos, args.n)
    start = time.perf_counter()
    images = [open_image(p).rgb() for p in paths]
    decode_ms = (time.perf_counter() - start) / len(images) * 1e3
    for img in images:
        img.load()
    cropper = Cropper(weights=args.weights, device=args.device)
    n = len(images)
    header = describe(cropper.device)
    print(header, flush=True)
    lines = [f"Photos: {n} from `{args.photos}` (first by name), ratios {', '.join(RATIOS)}; weights: "
             f"{cropper.weights_info.get('weights', cropper.weights_info)}; {header}.", ""]

    t0 = time.perf_counter()

    def stamp(what: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {what}", file=sys.stderr, flush=True)

    if "a" in args.parts:
        stamp("(a) library throughput")
        lines += _part_a(args, cropper, images, decode_ms)
    if "c" in args.parts:
        stamp("(c) stage split")
        lines += _part_c(cropper, images, args.batch_sizes)
    if args.workers and "b" in args.parts:
        stamp("(b) CLI end to end")
        del cropper
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        lines += _part_b(args, paths, n)

    lines += ["", f"Reference S2CNet (authors' report): ~{REFERENCE_FPS} photos/s, model only, one ratio set, desktop GPU."]
    stamp("done")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        args.out.write_text(text)


def _part_a(args, cropper, images, decode_ms: float) -> list[str]:
    import torch

    from s2ccrop import Cropper

    n = len(images)
    lines = ["| (a) library, photos decoded in advance | batch_size | photos/s | ms/photo | mean backbone batch "
             "| warm-up pass s (first sight of each shape) |", "|---|---:|---:|---:|---:|---:|"]
    for b in args.batch_sizes:
        warm, times = time_crop_many(cropper, images, b, args.repeats)
        sec = statistics.median(times)
        sizes = backbone_batches(cropper, images, b)
        lines.append(f"| `crop_many` on {cropper.device.type} | {b} | {n / sec:.1f} | {sec / n * 1e3:.2f} | "
                     f"{statistics.mean(sizes):.1f} ({len(sizes)} passes) | {warm:.1f} |")
        print(lines[-1], flush=True)
    if args.cpu_baseline and cropper.device.type != "cpu":
        cpu = Cropper(weights=args.weights, device="cpu")
        b = 8
        warm, times = time_crop_many(cpu, images, b, 1)
        sec = statistics.median(times)
        lines.append(f"| `crop_many` on cpu ({torch.get_num_threads()} threads), same machine | {b} | {n / sec:.1f} | "
                     f"{sec / n * 1e3:.2f} | | {warm:.1f} |")
        print(lines[-1], flush=True)
        del cpu
    lines.append(f"| (for reference) decode to RGB, once, CPU | | {1e3 / decode_ms:.1f} | {decode_ms:.2f} | | |")
    return lines


def _part_c(cropper, images, batch_sizes) -> list[str]:
    stage_rows = []
    for b in batch_sizes:
        split = stage_split(cropper, images, b)
        stage_rows.append((b, split, kernel_profile(cropper, images[:64], b)))
    names = list(stage_rows[0][1])
    lines = ["", "| (c) stage, ms per photo (synchronised after each stage) | "
             + " | ".join(f"B={b}" for b, _, _ in stage_rows) + " |",
             "|---|" + "---:|" * len(stage_rows)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{s[name]:.2f}" for _, s, _ in stage_rows) + " |")
    lines.append("| **sum** | " + " | ".join(f"**{sum(s.values()):.2f}**" for _, s, _ in stage_rows) + " |")
    if any(p for _, _, p in stage_rows):
        lines.append("| CUDA kernels launched per photo (profiler, first 64 photos) | "
                     + " | ".join(f"{p[0]:.0f}" if p else "" for _, _, p in stage_rows) + " |")
        lines.append("| GPU busy ms per photo / wall ms per photo (under the profiler) | "
                     + " | ".join(f"{p[1]:.2f} / {p[2]:.2f}" if p else "" for _, _, p in stage_rows) + " |")
    print("\n".join(lines), flush=True)
    return lines


def _part_b(args, paths: list[Path], n: int) -> list[str]:
    lines = ["", "| (b) CLI end to end, cold process, crops written | --workers | photos | wall s | photos/s (wall) "
             "| 1-photo run s (start-up) | photos/s (marginal) |", "|---|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory(prefix="s2ccrop-bench-gpu-") as tmp:
        scratch = Path(tmp)
        for w in args.workers:
            one, _, _ = run_cli(paths[:1], args.device, w, args.weights, scratch, args.cli_timeout)
            wall, written, timed_out = run_cli(paths, args.device, w, args.weights, scratch, args.cli_timeout)
            ok = "" if written == len(RATIOS) * n else f" (**{written} of {len(RATIOS) * n} crops written**)"
            if timed_out:
                ok += f" (**stopped at the {args.cli_timeout:.0f} s time-out; rate from the crops written**)"
                done = written / len(RATIOS)
                lines.append(f"| `python -m s2ccrop --device {args.device}`{ok} | {w} | {done:.0f} of {n} | {wall:.2f} | "
                             f"{done / wall:.1f} | {one:.2f} | {(done - 1) / max(wall - one, 1e-9):.1f} |")
            else:
                marginal = (n - 1) / (wall - one) if n > 1 and wall > one else float("nan")
                lines.append(f"| `python -m s2ccrop --device {args.device}`{ok} | {w} | {n} | {wall:.2f} | "
                             f"{n / wall:.1f} | {one:.2f} | {marginal:.1f} |")
            print(lines[-1], flush=True)
    return lines

if __name__ == "__main__":
    main()

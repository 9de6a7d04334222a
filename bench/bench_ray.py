"""Throughput of the crop command on the Ray engine with 1 and 2 model actors (a benchmark, not a test).

    python bench/bench_ray.py [--photos 40] [--size 1024x768] [--actors 1 2] [--cpus 2] [--local]

Generates JPEG photos, starts a one-node Ray cluster on 127.0.0.1 (--cpus CPUs, 200 MB object store),
and crops every photo to the default ratios with each actor count (a fresh run each time, outputs
overwritten). Reports the wall time of the whole run (planning, Ray Data start-up, model load in each
actor, cropping, writing). Results reach the driver in batches, so the marginal rate is estimated from
a second run on one photo: (N - 1) / (wall_N - wall_1), the rate once start-up is paid. `--local` also
times the local engine in this process for comparison.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2ccrop.batch import BatchRun, Env, Settings  # noqa: E402


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        # Smooth blobs plus noise: JPEG-compressible like a photo, different for every file.
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        blob = np.exp(-(((xx - cx) / (w / 4)) ** 2 + ((yy - cy) / (h / 4)) ** 2))
        pixels = np.stack([blob * rng.uniform(80, 255) for _ in range(3)], axis=-1)
        pixels += rng.normal(0, 12, pixels.shape)
        Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(folder / f"photo{i:04d}.jpg", quality=90)


def timed_run(photos: Path, out: Path, weights: str | None, actors: int | None) -> dict:
    settings = Settings([photos], output=out, json=True, weights=weights)
    env = Env(None, io.StringIO(), sys.stderr, False)
    if actors is None:
        run = BatchRun(settings, env)
    else:
        from s2ccrop.engines.ray_engine import RayRun

        run = RayRun(settings, env, actors=actors)
    start = time.perf_counter()
    status = run.execute()
    return {"status": status, "photos": run.counts["photos"], "wall_s": time.perf_counter() - start}


def measure(photos: Path, one: Path, out: Path, weights: str | None, actors: int | None) -> dict:
    full = timed_run(photos, out / "all", weights, actors)
    single = timed_run(one, out / "one", weights, actors)
    n = full["photos"]
    marginal = (n - 1) / (full["wall_s"] - single["wall_s"]) if full["wall_s"] > single["wall_s"] else float("nan")
    return {**full, "photos_per_s": n / full["wall_s"], "startup_s": single["wall_s"], "marginal": marginal}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", type=int, default=40)
    p.add_argument("--size", default="1024x768")
    p.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray cluster started here")
    p.add_argument("--weights", default="random",
                   help="default: random (a seeded untrained model; same network and cost as trained weights)")
    p.add_argument("--local", action="store_true", help="also time the local engine")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    import ray

    os.environ.pop("RAY_ADDRESS", None)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, ray {ray.__version__}, "
          f"{args.photos} photos {args.size}, default ratios, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        photos = Path(tmp) / "photos"
        photos.mkdir()
        make_photos(photos, args.photos, (w, h))
        one = Path(tmp) / "one"
        one.mkdir()
        os.link(photos / "photo0000.jpg", one / "photo0000.jpg")
        rows = []
        if args.local:
            rows.append(("local engine (--workers 2)", measure(photos, one, Path(tmp) / "local", args.weights, None)))
        ray.init(num_cpus=args.cpus, object_store_memory=200 * 1024**2, include_dashboard=False,
                 _node_ip_address="127.0.0.1", logging_level="ERROR")
        try:
            for k in args.actors:
                rows.append((f"ray engine, {k} actor{'s' if k > 1 else ''}",
                             measure(photos, one, Path(tmp) / f"ray{k}", args.weights, k)))
        finally:
            ray.shutdown()
    print("| engine | photos | wall s | photos/s (wall) | 1-photo run s (start-up) | photos/s (marginal) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(f"| {name} | {r['photos']} | {r['wall_s']:.1f} | {r['photos_per_s']:.2f} | {r['startup_s']:.1f} | "
              f"{r['marginal']:.2f} |")
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

"""Phone photos (issue 31): 12-MP photos to thumbnails, s2ccrop against libvips and smartcrop.py at equal cores.

    .venv/bin/python -m bench.phone --photos ../shared/data/fcdb-train/images -n 100

Makes the phone-photo set from the FCDB photos (once, cached in --set): each enlarged to 4032×3024 or
3024×4032, with mild noise, JPEG quality 92, and every fourth stored rotated with EXIF orientation 6 (as
phones store portrait shots). Then, for 16:9, 4:3, 1:1 and 9:16 per photo, whole processes:

- libvips: `pyvips.Image.thumbnail(path, W, height=H, crop="attention")`, JPEG quality 90
  (`bench/vips_batch.py`), as sharp, imgproxy and vipsthumbnail run it;
- smartcrop.py: its CLI's analysis, crops written as s2ccrop writes them (`bench/smartcrop_batch.py`);
- s2ccrop: the command line, `-j N`.

A user with a folder runs the single-process peers as N parallel processes (`xargs -P N`), so they are
run that way here, N = the cores s2ccrop uses, each over its share of the list. Jobs: `--width 640`
and `--width 1080` thumbnails, and full-size crops (s2ccrop and smartcrop.py; libvips' thumbnail has
no such mode). Each tool's wall time is the best of `--rounds`; CPU per photo is its processes' user
+ system time (start-up included) over the photos; s2ccrop's peak memory is the PSS of its process
tree. The table goes to the top of bench/RESULTS.md unless --no-save.

`--warm`: each tool first crops one photo, untimed, just before each of its timed rounds, so its
libraries are in the page cache when the round starts. Without it a round starts as the other tools'
rounds left the cache: on a host that pages out what was not read for a minute (this project's
machines do), s2ccrop's start-up then reads torch back from disk (~2 s of I/O wait), libvips little.

The report says how much other work shared the host meanwhile: the CPU time every core spent busy
(/proc/stat) beyond the bench's own and its tools' (`host_cpu`), and the hypervisor's steal. The
tools race at equal cores, so a run with other work beside it favours none of them reliably.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .run import RESULTS, cli_command, machine, parallel_timed, shares

RATIOS = ("16:9", "4:3", "1:1", "9:16")
LANDSCAPE, PORTRAIT = (4032, 3024), (3024, 4032)
SET_VERSION = "1"  # bump when the way the set is made changes


def make_set(photos: list[Path], folder: Path, seed: int = 0) -> list[Path]:
    """The phone-photo set (see the module docstring), made once: a marker file says which photos and
    which version made it."""
    import numpy as np
    from PIL import Image, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / "made-from.txt"
    wanted = f"{SET_VERSION}\n" + "".join(f"{p.name}\n" for p in photos)
    out = [folder / f"phone{i:03d}.jpg" for i in range(len(photos))]
    if marker.exists() and marker.read_text() == wanted and all(p.exists() for p in out):
        return out
    rng = np.random.default_rng(seed)
    for i, (src, dst) in enumerate(zip(photos, out)):
        phone_jpeg(ImageOps.exif_transpose(Image.open(src)).convert("RGB"), dst, rng, rotated=i % 4 == 3)
    marker.write_text(wanted)
    return out


def phone_jpeg(image, dst: Path, rng, rotated: bool) -> tuple[int, int]:
    """`image` as a phone would store it: enlarged to 4032×3024 (or 3024×4032), mild noise, JPEG q92;
    `rotated`: stored turned, shown upright by EXIF orientation 6. Returns the upright size."""
    import numpy as np
    from PIL import Image

    size = LANDSCAPE if image.width >= image.height else PORTRAIT
    big = np.asarray(image.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    big += rng.normal(0.0, 2.5, big.shape).astype(np.float32)  # mild sensor noise
    upright = Image.fromarray(np.clip(big + 0.5, 0, 255).astype(np.uint8))
    exif = Image.Exif()
    if rotated:
        upright = upright.transpose(Image.Transpose.ROTATE_90)
        exif[0x0112] = 6
    upright.save(dst, "JPEG", quality=92, exif=exif.tobytes())
    return size


def one_round(tool: str, photos: list[Path], out: Path, width: int, cores: int) -> dict:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if tool == "s2ccrop":
        cmd = [*cli_command(), "-", "-o", str(out), "--format", "jpg", "-q", "-j", str(cores)]
        for r in RATIOS:
            cmd += ["-r", r]
        cmd += ["--width", str(width)] if width else []
        result = parallel_timed([(cmd, "".join(f"{p}\n" for p in photos))], tree_of=0)
    else:
        script = {"libvips": "vips_batch.py", "smartcrop.py": "smartcrop_batch.py"}[tool]
        cmd = [sys.executable, str(Path(__file__).with_name(script)), str(out), ",".join(RATIOS)]
        cmd += [str(width)] if width else []
        result = parallel_timed([(cmd, text) for text in shares(photos, cores)])
    result["crops"] = sum(1 for _ in out.rglob("*.jpg"))
    if result["crops"] != len(photos) * len(RATIOS):
        raise SystemExit(f"{tool}: {result['crops']} crops written, {len(photos) * len(RATIOS)} expected")
    return result


def best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["wall_s"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=Path, required=True, help="FCDB photos to make the set from")
    ap.add_argument("-n", type=int, default=100, help="photos in the set (default 100)")
    ap.add_argument("--set", type=Path, default=Path(tempfile.gettempdir()) / "s2ccrop-phone-set")
    ap.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)),
                    help="processes for each tool (default: this process's cores)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-save", action="store_true")
    ap.add_argument("--warm", action="store_true", help="an untimed one-photo run of each tool before its rounds")
    args = ap.parse_args(argv)
    sources = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: args.n]
    t0 = time.perf_counter()
    photos = make_set(sources, args.set)
    print(f"phone set: {len(photos)} photos in {args.set} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    jobs = [("640-px thumbnails", 640, ("libvips", "smartcrop.py", "s2ccrop")),
            ("1080-px thumbnails", 1080, ("libvips", "smartcrop.py", "s2ccrop")),
            ("full-size crops", 0, ("smartcrop.py", "s2ccrop"))]
    results: dict = {}
    before = host_cpu()
    with tempfile.TemporaryDirectory(prefix="s2ccrop-phone-out-") as tmp:
        for name, width, tools in jobs:
            for _ in range(args.rounds):
                for tool in tools:  # interleaved, so load changes touch every tool alike
                    if args.warm:
                        one_round(tool, photos[:1], Path(tmp) / tool, width, 1)
                    run = one_round(tool, photos, Path(tmp) / tool, width, args.cores)
                    results.setdefault((name, tool), []).append(run)
                    print(f"{name}, {tool}: {run['wall_s']:.1f} s", file=sys.stderr)
    after = host_cpu()
    text = report(results, jobs, len(photos), args, {k: after[k] - before[k] for k in after})
    print(text)
    if not args.no_save:
        save(text)
    return 0


def host_cpu() -> dict:
    """CPU seconds so far: `busy`, all cores' user, nice, system, irq and softirq time (/proc/stat);
    `steal`, time the hypervisor gave to other machines; `ours`, the user + system time of this process
    and of its descendants that have been waited for (every tool's processes, once a round is over)."""
    import resource

    with open("/proc/stat", encoding="ascii") as fh:
        busy, steal = proc_stat_seconds(fh.readline(), os.sysconf("SC_CLK_TCK"))
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    ours = sum(u.ru_utime + u.ru_stime for u in usage)
    return {"busy": busy, "steal": steal, "ours": ours}


def proc_stat_seconds(line: str, ticks_per_s: int) -> tuple[float, float]:
    """(busy, steal) seconds of /proc/stat's first line, `cpu  user nice system idle iowait irq softirq
    steal ...` in clock ticks: idle and iowait are not busy; steal is time this machine did not get."""
    name, *fields = line.split()
    if name != "cpu" or len(fields) < 8:
        raise ValueError(f"not /proc/stat's cpu line: {line!r}")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq) / ticks_per_s, steal / ticks_per_s


def other_work(cpu: dict) -> str:
    """One sentence on what else ran on the host during the bench, from `host_cpu` differences."""
    other = max(0.0, cpu["busy"] - cpu["ours"])
    share = other / cpu["busy"] if cpu["busy"] > 0 else 0.0
    return (f"Other work on the host meanwhile: {other:.0f} CPU-s beside the bench's {cpu['ours']:.0f} "
            f"({share:.0%} of the busy time); hypervisor steal {cpu['steal']:.0f} s.")


def report(results: dict, jobs, n: int, args, cpu: dict | None = None) -> str:
    m = machine()
    lines = [f"## Phone photos, {dt.date.today().isoformat()}: {n} photos, 12 MP, 4 ratios, {args.cores} cores each",
             "",
             f"`python -m bench.phone --photos DIR -n {n}`; {m['cpu']} ({m['features']}), {m['cores']} cores; "
             f"best of {args.rounds} rounds; peers run as {args.cores} processes over shares of the list; "
             + ("warm: each tool cropped one photo, untimed, just before each round." if args.warm else
                "cold: no warm-up run (a round starts as the other tools' rounds left the page cache).")
             + (f" {other_work(cpu)}" if cpu else ""),
             "",
             "| job | libvips | smartcrop.py | s2ccrop | s2ccrop ÷ libvips | s2ccrop ÷ smartcrop.py | CPU per photo: libvips / smartcrop.py / s2ccrop |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for name, _, tools in jobs:
        runs = {t: best(results[(name, t)]) for t in tools}
        wall = {t: f"{r['wall_s']:.1f} s" for t, r in runs.items()}
        speed = lambda a, b: f"{runs[b]['wall_s'] / runs[a]['wall_s']:.2f}×" if a in runs and b in runs else "—"  # noqa: E731
        cpu = " / ".join(f"{runs[t]['cpu_s'] * 1000 / n:.0f} ms" if t in runs else "—"
                         for t in ("libvips", "smartcrop.py", "s2ccrop"))
        lines.append(f"| {name} | {wall.get('libvips', '—')} | {wall['smartcrop.py']} | {wall['s2ccrop']} | "
                     f"{speed('s2ccrop', 'libvips')} | {speed('s2ccrop', 'smartcrop.py')} | {cpu} |")
    pss = max(best(results[(name, "s2ccrop")]).get("tree_pss_mb", 0.0) for name, _, _ in jobs)
    lines += ["", f"s2ccrop's peak memory (PSS of its process tree): {pss:.0f} MB. × is how many times faster "
              "s2ccrop finished (wall time)."]
    return "\n".join(lines) + "\n"


def save(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.exists() else ""
    head, sep, rest = old.partition("\n## ")
    RESULTS.write_text(f"{head.rstrip()}\n\n{text}\n{sep.lstrip() if sep else ''}{rest}")


if __name__ == "__main__":
    raise SystemExit(main())

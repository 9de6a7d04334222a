"""The speed harness of issue 6: stage times, CLI vs smartcrop.py throughput, start-up, cold first crop, RSS.

    .venv/bin/python -m bench.run --photos ../shared/data/fcdb-train/images -n 200
    .venv/bin/python -m bench.run --photos DIR -n 20 --quick          # short run, no RESULTS.md update
    .venv/bin/python -m bench.run --photos DIR -n 200 --isa avx2      # + the same runs with AVX2 only

Prints one table and (unless --no-save) puts it, dated and with the machine described, at the top of
bench/RESULTS.md. Everything runs in one invocation so the s2ccrop/smartcrop ratio is measured under
the same load. Without --weights the embedded default weights are used: with a learned gene head, speed
depends on the weights (the boxes it finds become graph nodes), so a random model of the same shape would
not be representative. `--weights random` times a seeded random model of the v1 shape (whole-image genes).

The 3x goal is also shown as a CPU budget: smartcrop.py crops on one core, the CLI on all of them, so
3x its photos/s leaves cores x 1000 / (3 x its photos/s) core-ms per photo; the table sets that against
what one of the CLI's single-threaded workers spends per photo (stages timed on one thread) and against
the user + system CPU time of each whole run (from the kernel's accounting of the process and its
reaped workers).

Each round also writes the crops as `--width 640` thumbnails (`--thumb-width`), both tools, since
thumbnails are what the tool is mostly for. `--isa avx2` repeats the CLI runs, the cold first crop and
the stage times (in a child process) with every AMX/AVX-512-only path off, as a CPU without them runs:
oneDNN, ATen, fbgemm and MKL capped at AVX2 (`ISA_ENVS`).
The machine line lists the CPU's vector features.

"before" rows time the straightforward path that the optimised one replaced, on the same photos in
the same process: the literal graph (every candidate with its own copies of the gene nodes, all nodes
in every layer), the unfused NCHW backbone, and a full-resolution decode where a reduced JPEG decode suffices.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATIOS = ("16:9", "4:3", "1:1", "9:16")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
GOALS = {
    "throughput_ratio": 2.0,  # s2ccrop CLI photos/s ÷ smartcrop.py photos/s (issue 18; issue 6 asked 3)
    "model_ms": 25.0,  # backbone + align + graph per photo, all 4 ratios, steady state
    "version_s": 0.3,
    "first_crop_s": 2.5,
    "peak_rss_mb": 1024.0,
}
# What a CPU without AMX or AVX-512 runs: every library's own cap.
ISA_ENVS = {
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"},
}
VECTOR_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


# ---------------------------------------------------------------- helpers


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3 if values else float("nan")


def run_timed(cmd: list[str], *, stdin: str | None = None, env: dict | None = None, cwd: Path | None = None,
              tree: dict | None = None):
    """(wall seconds, peak RSS MB of that process, exit status, stderr tail) of one child process.
    `tree`: filled with what the whole process tree used (the CLI may fork workers): the memory peaks
    of `TreeMemory`, and "cpu_s", the user + system CPU seconds of the child and of the descendants it
    waited for (the CLI's worker processes are joined before it exits)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, env=env, cwd=cwd or ROOT, text=True,
    )
    sampler = TreeMemory(proc.pid) if tree is not None else None
    # communicate() would reap the child itself; feed stdin, then wait4() for its own rusage.
    if stdin is not None:
        proc.stdin.write(stdin)
        proc.stdin.close()
    err = proc.stderr.read()
    if sampler is not None:
        tree.update(sampler.stop())
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if tree is not None:
        tree["cpu_s"] = usage.ru_utime + usage.ru_stime
    return wall, usage.ru_maxrss / 1024.0, proc.returncode, err[-2000:]


class TreeMemory:
    """Samples a process and all its descendants every `every` s: the peak of their summed RSS (which
    counts pages they share, e.g. torch's libraries, once per process), the peak of their summed PSS
    (shared pages split between the processes that map them: the memory the tree really uses) and the
    most processes seen. Linux /proc only; elsewhere the peaks stay 0."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        import threading

        self.pid, self.every = pid, every
        self.peaks = {"tree_rss_mb": 0.0, "tree_pss_mb": 0.0, "processes": 0}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    todo += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass
        return pids

    def _loop(self) -> None:
        while not self._done.wait(self.every):
            rss = pss = 0.0
            pids = self._tree()
            for pid in pids:
                try:
                    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                        if line.startswith("Rss:"):
                            rss += int(line.split()[1]) / 1024.0
                        elif line.startswith("Pss:"):
                            pss += int(line.split()[1]) / 1024.0
                except (OSError, ValueError, IndexError):
                    pass
            p = self.peaks
            p["tree_rss_mb"], p["tree_pss_mb"] = max(p["tree_rss_mb"], rss), max(p["tree_pss_mb"], pss)
            p["processes"] = max(p["processes"], len(pids))

    def stop(self) -> dict:
        self._done.set()
        self._thread.join()
        return self.peaks


def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("s2ccrop")
    return [str(script)] if script.exists() else [sys.executable, "-m", "s2ccrop"]


def vector_features(cpuinfo: str) -> list[str]:
    """Which of VECTOR_FEATURES the first CPU of a /proc/cpuinfo text has (its `flags` line)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [f for f in VECTOR_FEATURES if f in flags]
    return []


def machine() -> dict:
    cpu, features = "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
        features = vector_features(text)
        for line in text.splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    import torch

    from s2ccrop.api import set_threads
    from s2ccrop.ops import extension_status

    set_threads()  # $S2CCROP_THREADS, as the Cropper and the CLI will apply it

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info = {
        "cpu": cpu, "features": " ".join(features) or "none of " + "/".join(VECTOR_FEATURES), "cores": usable, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "python": platform.python_version(), "compiled_ops": extension_status()[0],
        "load_avg_start": "%.2f %.2f %.2f" % os.getloadavg(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "omp": ", ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "S2CCROP_THREADS")
                         if k in os.environ) or "defaults",
    }
    # `s2ccrop train …` or `python -m s2ccrop.training.train …`
    busy = subprocess.run(["pgrep", "-f", r"s2ccrop(\.training\.| )train"], capture_output=True, text=True).stdout.split()
    info["other_load"] = "training process running (numbers under load)" if busy else "none seen"
    return info


def make_weights(path: Path | None, tmp: Path) -> Path:
    if path is not None and str(path) != "random":
        return path
    if path is None:
        from s2ccrop import weights as registry

        return registry.resolve(None).path
    import torch

    from s2ccrop.model import S2CNet, S2CNetConfig, save_checkpoint

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = S2CNet(S2CNetConfig(align_size=9, num_boxes=4, head="crop")).eval()
    out = tmp / "bench-random-v1shape.safetensors"
    save_checkpoint(model, out, half=False)
    return out


# ---------------------------------------------------------------- stage times (in process)


def stage_times(photos: list[Path], weights: Path, warmup: int = 3, device: str = "cpu") -> dict[str, float]:
    """Median ms per photo of each stage, after `warmup` photos; 'before' variants interleaved."""
    import numpy as np
    import torch

    from s2ccrop.api import Cropper
    from s2ccrop.io.images import MODEL, open_image
    from s2ccrop.io.formats import choose_format
    from s2ccrop.io.writers import write_crop
    from s2ccrop.model.s2cnet import _fused_features
    from s2ccrop.preprocess import scale_boxes
    from s2ccrop.select import select_crops
    from s2ccrop.types import Ratio

    cropper = Cropper(weights=weights, device=device)
    model = cropper.model
    ratios = [Ratio.parse(r) for r in RATIOS]
    times: dict[str, list[float]] = {}
    out = Path(tempfile.mkdtemp(prefix="s2ccrop-bench-enc-"))
    sync = torch.cuda.synchronize if cropper.device.type == "cuda" else (lambda: None)

    def timed(name: str, fn, record: bool):
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        if record:
            times.setdefault(name, []).append(time.perf_counter() - start)
        return result

    n_cand: list[int] = []
    n_genes: list[int] = []
    prepared: list = []  # (prepared photo, candidate groups, faces) for the one-thread pass
    for i, path in enumerate(photos):
        rec = i >= warmup
        decoded = timed("decode (full)", lambda: open_image(path), rec)
        timed("decode (model's scale)", lambda: open_image(path, reduction=MODEL), rec)
        image = decoded.rgb()
        p = timed("preprocess", lambda: cropper.prepare(image), rec)
        groups = timed("candidates", lambda: cropper.candidates(p, ratios), rec)
        boxes = np.concatenate(groups)
        n_cand.append(len(boxes))
        with torch.inference_mode():
            timed("backbone", lambda: model.features_and_genes(p.tensor.to(cropper.device), genes=False), rec)
            fmap = timed("backbone+genes", lambda: cropper.features([p]), rec)
            timed("backbone (before: unfused NCHW)",
                  lambda: _fused_features(model.Feat_ext, model.DimRed, p.tensor.to(cropper.device)), rec)
            crop_boxes = scale_boxes(boxes, p.size, p.model_size).to(cropper.device)
            genes = cropper._gene_boxes(p).to(cropper.device)
            n_genes.append(len(torch.unique(genes, dim=0)))
            timed("align", lambda: (model.embed_boxes(fmap, crop_boxes), model.embed_boxes(fmap, genes)), rec)
            timed("align (before: pooled ops)", lambda: (_embed_pooled(model, fmap, crop_boxes),
                                                         _embed_pooled(model, fmap, genes)), rec)
            timed("align+graph (exact, every candidate)", lambda: cropper.score_features(fmap, 0, p, boxes), rec)
            timed("align+graph (before: literal)",
                  lambda: model._score_literal(fmap, crop_boxes, genes, p.model_size).float().cpu(), rec)
            faces = p.detections.faces if cropper.face_guard and p.detections is not None else None
            scores = timed("align+graph", lambda: cropper.score_features(fmap, 0, p, boxes), rec)
            prepared.append((p, boxes))
        crops = timed("selection", lambda: select_crops(ratios, groups, scores, faces), rec)
        fmt = choose_format("same", path)

        def encode():
            for crop in crops:
                write_crop(out / f"{path.stem}_{crop.ratio.replace(':', 'x')}.jpg", decoded.image, crop.box,
                           (crop.width, crop.height), fmt, quality=90, icc=decoded.icc_profile)

        timed("encode", encode, rec)
    # What one of the CLI's worker processes spends on the model: each runs one thread. A pass of its
    # own, so the thread count changes once, not between stages.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            for i, (p, boxes) in enumerate(prepared):
                fmap = timed("backbone+genes (1 thread)", lambda: cropper.features([p]), i >= warmup)
                timed("align+graph (1 thread)", lambda: cropper.score_features(fmap, 0, p, boxes), i >= warmup)
    finally:
        torch.set_num_threads(threads)
    med = {k: median_ms(v) for k, v in times.items()}
    med["graph"] = med["align+graph"] - med["align"]
    med["graph (before: literal)"] = med["align+graph (before: literal)"] - med["align"]
    # per photo, the two backbone passes differ by the gene head: the median of those differences (a
    # difference of two medians was often 0 or less on this noisy machine)
    paired = [a - b for a, b in zip(times["backbone+genes"], times["backbone"])]
    med["genes"] = max(median_ms(paired), 0.0)
    med["model"] = med["backbone+genes"] + med["align+graph"]
    med["model (1 thread)"] = med["backbone+genes (1 thread)"] + med["align+graph (1 thread)"]
    # what a worker spends per photo besides the model (single-threaded: Pillow, numpy, one torch thread)
    med["model-free part"] = med["decode (full)"] + med["preprocess"] + med["candidates"] + med["selection"] + med["encode"]
    med["pipeline"] = med["model-free part"] + med["model"]
    med["gene boxes per photo"] = float(np.mean(n_genes))
    med["model (before)"] = (med["backbone (before: unfused NCHW)"] + med["align (before: pooled ops)"]
                             + med["graph (before: literal)"])
    med["candidates per photo"] = float(np.mean(n_cand))
    med["graph (exact, every candidate)"] = med["align+graph (exact, every candidate)"] - med["align"]
    return med


def _embed_pooled(model, fmap, boxes):
    """Node embeddings the straightforward way: RoI/RoD align with their 2x2 average pool, then node_emb."""
    import torch

    from s2ccrop.ops import rod_align_avg, roi_align_avg

    rois = torch.cat([boxes.new_zeros(len(boxes), 1), boxes], 1)
    a = model.config.align_size
    nodes = torch.stack([roi_align_avg(fmap, rois, a, 1 / 16), rod_align_avg(fmap, rois, a, 1 / 16)], 2).flatten(1)
    return model.node_emb(nodes)


# ---------------------------------------------------------------- whole programs


def cli_throughput(photos: list[Path], weights: Path, out: Path, extra: list[str], env=None, cmd=None,
                   cwd: Path | None = None) -> dict:
    cmd = (cmd or cli_command()) + ["-", "-o", str(out), "-q", "--weights", str(weights)] + extra
    for r in RATIOS:
        cmd += ["-r", r]
    tree: dict = {}
    wall, rss, code, err = run_timed(cmd, stdin="".join(f"{p}\n" for p in photos), env=env, cwd=cwd or ROOT,
                                     tree=tree)
    if code != 0:
        raise SystemExit(f"s2ccrop CLI failed ({code}): {err}")
    written = sum(1 for _ in out.rglob("*.jpg"))
    return {"wall_s": wall, "photos_per_s": len(photos) / wall, "peak_rss_mb": rss, "crops": written, **tree}


def smartcrop_throughput(photos: list[Path], out: Path, width: int = 0) -> dict:
    cmd = [sys.executable, str(Path(__file__).with_name("smartcrop_batch.py")), str(out), ",".join(RATIOS)]
    cmd += [str(width)] if width else []
    tree: dict = {}
    wall, rss, code, err = run_timed(cmd, stdin="".join(f"{p}\n" for p in photos), tree=tree)
    if code != 0:
        raise SystemExit(f"smartcrop run failed ({code}): {err}")
    return {"wall_s": wall, "photos_per_s": len(photos) / wall, "peak_rss_mb": rss,
            "crops": sum(1 for _ in out.rglob("*.jpg")), **tree}


def parallel_timed(commands: list[tuple[list[str], str]], tree_of: int | None = None) -> dict:
    """Run the commands at once (each with its stdin text); wall seconds until the last ends, the CPU
    seconds of all of them and their reaped children, and, for command `tree_of`, its tree's peaks."""
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              cwd=ROOT, text=True) for cmd, _ in commands]
    sampler = TreeMemory(procs[tree_of].pid) if tree_of is not None else None
    for proc, (_, text) in zip(procs, commands):
        proc.stdin.write(text)
        proc.stdin.close()
    cpu, errors = 0.0, []
    for proc in procs:
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        cpu += usage.ru_utime + usage.ru_stime
        if os.waitstatus_to_exitcode(status) != 0:
            errors.append(err[-1500:])
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"a run failed: {errors[0]}")
    return {"wall_s": wall, "cpu_s": cpu, **(sampler.stop() if sampler is not None else {})}


def shares(paths: list[Path], n: int) -> list[str]:
    return ["".join(f"{p}\n" for p in paths[i::n]) for i in range(n)]


def smartcrop_equal_cores(photos: list[Path], out: Path, processes: int) -> dict:
    """smartcrop.py as a user with a folder runs it on N cores: N processes over shares of the list."""
    cmd = [sys.executable, str(Path(__file__).with_name("smartcrop_batch.py")), str(out), ",".join(RATIOS)]
    run = parallel_timed([(cmd, text) for text in shares(photos, processes)])
    return {**run, "photos_per_s": len(photos) / run["wall_s"], "crops": sum(1 for _ in out.rglob("*.jpg"))}


def startup(repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        wall, _, code, err = run_timed(cli_command() + ["--version"])
        if code != 0:
            raise SystemExit(f"s2ccrop --version failed: {err}")
        times.append(wall)
    return statistics.median(times)


def first_crop(photo: Path, weights: Path, tmp: Path, repeats: int = 3, extra_env: dict | None = None) -> tuple[float, float]:
    """(median wall s, peak RSS MB) of a fresh process cropping one photo to 16:9. One untimed run
    first, with Python allowed to cache bytecode (PYTHONDONTWRITEBYTECODE unset; an editable install
    compiles s2ccrop's modules on its first run, a wheel at install time), as a user's runs after the
    first see it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra_env or {})
    times, rss = [], 0.0
    for i in range(repeats + 1):
        out = tmp / f"first-{i}"
        wall, peak, code, err = run_timed(cli_command() + [str(photo), "-r", "16:9", "-o", str(out), "-q",
                                                           "--weights", str(weights)], env=env)
        if code != 0:
            raise SystemExit(f"first crop failed: {err}")
        if i:
            times.append(wall)
            rss = max(rss, peak)
    return statistics.median(times), rss


# ---------------------------------------------------------------- report


def _ratio(cli: dict, sc: dict) -> float:
    return statistics.median(cli.get("round_ratios") or [cli["photos_per_s"] / sc["photos_per_s"]])


def table(m: dict, st: dict, cli: dict, sc: dict, ver: float, first: tuple[float, float], n: int,
          base: dict | None, one: dict | None = None, thumbs: dict | None = None, capped: dict | None = None) -> str:
    """The result tables. `thumbs`: {"cli", "sc", "width"} of the thumbnail runs; `capped`: per ISA
    cap ("avx2"), {"cli", "thumb" (or None), "first", "st"} of the same runs with that cap."""
    ratio = _ratio(cli, sc)
    k = GOALS["throughput_ratio"]

    def goal(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines = ["| stage, ms per photo (4 ratios, median) | before | now |", "|---|---:|---:|"]
    reduced = st["decode (model's scale)"]
    lines.append(f"| decode (JPEG) | {st['decode (full)']:.2f} full | {reduced:.2f} at the model's scale (whole below 1024 px) |")
    lines.append(f"| preprocess (resize, normalise) | | {st['preprocess']:.2f} |")
    lines.append(f"| candidates ({st['candidates per photo']:.0f} boxes) | | {st['candidates']:.2f} |")
    lines.append(f"| backbone | {st['backbone (before: unfused NCHW)']:.2f} | {st['backbone']:.2f} |")
    lines.append(f"| genes (gene head + decode; {st['gene boxes per photo']:.1f} distinct gene nodes per photo) | | "
                 f"{st['genes']:.2f} ({100 * st['genes'] / st['pipeline']:.1f} % of the {st['pipeline']:.1f} ms pipeline) |")
    lines.append(f"| align (RoI+RoD, node embedding) | {st['align (before: pooled ops)']:.2f} | {st['align']:.2f} |")
    lines.append(f"| graph + head, exact float32 for every candidate | {st['graph (before: literal)']:.2f} | "
                 f"{st['graph (exact, every candidate)']:.2f} |")
    lines.append(f"| **model** (backbone + genes + align + graph) | {st['model (before)']:.2f} | **{st['model']:.2f}** |")
    lines.append(f"| selection | | {st['selection']:.3f} |")
    lines.append(f"| encode (4 JPEG crops written) | | {st['encode']:.2f} |")
    lines += ["", "| whole program | value | goal |", "|---|---:|---|"]
    if base is not None:
        lines.append(f"| s2ccrop CLI before these changes, {n} photos × 4 ratios | {base['photos_per_s']:.2f} photos/s "
                     f"({base['wall_s']:.1f} s, RSS {base['peak_rss_mb']:.0f} MB){_runs(base)} | |")
    if one is not None:
        lines.append(f"| s2ccrop CLI in one process (`-j 1`: 2 model threads, I/O threads), {n} photos × 4 ratios | "
                     f"{one['photos_per_s']:.2f} photos/s ({one['wall_s']:.1f} s, {one['crops']} crops){_runs(one)} | |")
    procs = max(cli.get("processes", 1) - 1, 1)
    how = f"{procs} worker processes + the parent" if procs > 1 else "one process"
    lines.append(f"| s2ccrop CLI as shipped ({how}), {n} photos × 4 ratios, crops written | {cli['photos_per_s']:.2f} photos/s "
                 f"({cli['wall_s']:.1f} s, {cli['crops']} crops){_runs(cli)} | |")
    lines.append(f"| smartcrop.py, same photos and ratios | {sc['photos_per_s']:.2f} photos/s "
                 f"({sc['wall_s']:.1f} s, {sc['crops']} crops){_runs(sc)} | |")
    each = ", ".join(f"{r:.2f}" for r in cli.get("round_ratios", []))
    lines.append(f"| **s2ccrop ÷ smartcrop.py** (median of the rounds: {each}) | **{ratio:.2f}×** | "
                 f"≥ {k:g}× {goal(ratio >= k)} |")
    eq = sc.get("equal_cores")
    if eq is not None:
        each = ", ".join(f"{r:.2f}" for r in eq["round_ratios"])
        lines.append(f"| smartcrop.py at equal cores ({m['cores']} processes over shares of the list) | "
                     f"{eq['photos_per_s']:.2f} photos/s ({eq['wall_s']:.1f} s, {eq['crops']} crops){_runs(eq)} | |")
        lines.append(f"| s2ccrop ÷ smartcrop.py at equal cores (median of the rounds: {each}) | "
                     f"{statistics.median(eq['round_ratios']):.2f}× | |")
    if thumbs is not None:
        w = thumbs["width"]
        tc, ts = thumbs["cli"], thumbs["sc"]
        lines.append(f"| s2ccrop CLI as shipped, thumbnails (`--width {w}`) | {tc['photos_per_s']:.2f} photos/s "
                     f"({tc['wall_s']:.1f} s, {tc['crops']} crops){_runs(tc)} | |")
        lines.append(f"| smartcrop.py, thumbnails {w} px wide | {ts['photos_per_s']:.2f} photos/s "
                     f"({ts['wall_s']:.1f} s, {ts['crops']} crops){_runs(ts)} | |")
        r = _ratio(tc, ts)
        each = ", ".join(f"{x:.2f}" for x in tc.get("round_ratios", []))
        lines.append(f"| **s2ccrop ÷ smartcrop.py, thumbnails** (median of the rounds: {each}) | **{r:.2f}×** | "
                     f"≥ {k:g}× {goal(r >= k)} |")
    lines.append(f"| model time per photo, 4 ratios | {st['model']:.1f} ms | ≤ 25 ms {goal(st['model'] <= GOALS['model_ms'])} |")
    # The 3x goal as a CPU budget: smartcrop.py runs on one core, s2ccrop's CLI on all of them.
    cpu = [r.get("cpu_s", float("nan")) * 1e3 / n for r in (cli, one or {}, sc)]
    lines.append(f"| CPU time per photo, user + system of all processes, start-up included: CLI / CLI `-j 1` / smartcrop.py | "
                 f"{cpu[0]:.0f} / {cpu[1]:.0f} / {cpu[2]:.0f} ms | |")
    cores = m["cores"]
    budget = cores * 1e3 / (k * sc["photos_per_s"])
    lines.append(f"| CPU per photo that {k:g}× smartcrop.py leaves on {cores} cores ({cores} × 1000 ms ÷ ({k:g} × "
                 f"{sc['photos_per_s']:.1f} photos/s)) | {budget:.1f} ms | |")
    lines.append(_worker_row("CPU per photo of one worker", st, budget, k))
    lines.append(f"| `s2ccrop --version` | {ver:.3f} s | ≤ 0.3 s {goal(ver <= GOALS['version_s'])} |")
    lines.append(f"| first crop, one photo, cold process | {first[0]:.2f} s | ≤ 2.5 s {goal(first[0] <= GOALS['first_crop_s'])} |")
    # Worker processes share torch's pages with their parent: summed RSS counts those once per process,
    # PSS splits them, so the CLI run's memory goal is judged by PSS; the cold crop is one process.
    lines.append(f"| peak memory of the CLI run, all its processes: PSS / RSS summed (largest single process RSS) | "
                 f"{cli.get('tree_pss_mb', 0):.0f} / {cli.get('tree_rss_mb', 0):.0f} MB ({cli['peak_rss_mb']:.0f} MB) | "
                 f"≤ 1024 MB by PSS {goal(cli.get('tree_pss_mb', 0) <= GOALS['peak_rss_mb'])} |")
    if one is not None:
        lines.append(f"| peak RSS of the one-process CLI run (`-j 1`) | {one['peak_rss_mb']:.0f} MB | |")
    lines.append(f"| peak RSS of the cold single crop | {first[1]:.0f} MB | ≤ 1024 MB {goal(first[1] <= GOALS['peak_rss_mb'])} |")
    lines.append(f"| smartcrop.py peak RSS | {sc['peak_rss_mb']:.0f} MB | |")
    for isa, run in (capped or {}).items():
        lines += _capped_rows(isa, run, sc, thumbs, budget, k)
    return "\n".join(lines)


def _worker_row(label: str, st: dict, budget: float, k: float) -> str:
    worker = st["model (1 thread)"] + st["model-free part"]
    return (f"| {label}: model on 1 thread {st['model (1 thread)']:.1f} (backbone + genes "
            f"{st['backbone+genes (1 thread)']:.1f}, align + graph {st['align+graph (1 thread)']:.1f}) + decode, "
            f"preprocess, candidates, selection, encode {st['model-free part']:.1f} | {worker:.1f} ms | "
            f"≤ {budget:.1f} ms for {k:g}× |")


def _capped_rows(isa: str, run: dict, sc: dict, thumbs: dict | None, budget: float, k: float) -> list[str]:
    """The rows of the runs repeated with the CPU capped at `isa` (ISA_ENVS), against the same rounds'
    smartcrop.py runs (smartcrop.py uses no AMX/AVX-512 path of ours)."""
    tag = f"**{isa.upper()} only** ({' '.join(f'{a}={b}' for a, b in ISA_ENVS[isa].items())})"
    cli, st = run["cli"], run["st"]
    lines = [f"| {tag}: s2ccrop CLI as shipped, crops written | {cli['photos_per_s']:.2f} photos/s "
             f"({cli['wall_s']:.1f} s, {cli['crops']} crops){_runs(cli)} | |"]
    r = _ratio(cli, sc)
    lines.append(f"| **{isa.upper()} only: s2ccrop ÷ smartcrop.py** (rounds: "
                 f"{', '.join(f'{x:.2f}' for x in cli.get('round_ratios', []))}) | **{r:.2f}×** | "
                 f"≥ {k:g}× {'met' if r >= k else '**missed**'} |")
    thumb = run.get("thumb")
    if thumb is not None and thumbs is not None:
        lines.append(f"| {isa.upper()} only: s2ccrop CLI, thumbnails (`--width {thumbs['width']}`) | "
                     f"{thumb['photos_per_s']:.2f} photos/s ({thumb['wall_s']:.1f} s, {thumb['crops']} crops){_runs(thumb)} | |")
        r = _ratio(thumb, thumbs["sc"])
        lines.append(f"| **{isa.upper()} only: s2ccrop ÷ smartcrop.py, thumbnails** (rounds: "
                     f"{', '.join(f'{x:.2f}' for x in thumb.get('round_ratios', []))}) | **{r:.2f}×** | "
                     f"≥ {k:g}× {'met' if r >= k else '**missed**'} |")
    cpu = cli.get("cpu_s", float("nan")) * 1e3 / max(cli["crops"] // len(RATIOS), 1)
    lines.append(f"| {isa.upper()} only: CPU time per photo of the CLI run, all processes | {cpu:.0f} ms | |")
    lines.append(f"| {isa.upper()} only: model per photo, 4 ratios ({st['candidates per photo']:.0f} candidates) | "
                 f"{st['model']:.1f} ms | |")
    lines.append(_worker_row(f"{isa.upper()} only: CPU per photo of one worker", st, budget, k))
    first = run["first"]
    lines.append(f"| {isa.upper()} only: first crop, one photo, cold process | {first[0]:.2f} s | "
                 f"≤ 2.5 s {'met' if first[0] <= GOALS['first_crop_s'] else '**missed**'} |")
    lines.append(f"| {isa.upper()} only: peak memory of the CLI run, PSS | {cli.get('tree_pss_mb', 0):.0f} MB | "
                 f"≤ 1024 MB {'met' if cli.get('tree_pss_mb', 0) <= GOALS['peak_rss_mb'] else '**missed**'} |")
    return lines


def _runs(run: dict) -> str:
    every = run.get("all_photos_per_s", [])
    return f"; runs: {', '.join(f'{v:.2f}' for v in every)}" if len(every) > 1 else ""


def describe(m: dict, args, weights_note: str) -> str:
    return (f"Machine: {m['cpu']} ({m.get('features', '?')}), {m['cores']} cores usable, GPU: {m['gpu']}; Python {m['python']}, torch {m['torch']} "
            f"({m['threads']} intra-op threads; env: {m['omp']}), compiled ops: {m['compiled_ops']}. Load average at start "
            f"{m['load_avg_start']}, at end {m['load_avg_end']}; other load: {m['other_load']}. "
            f"Photos: {args.n} from `{args.photos}`; weights: {weights_note}.")


def save(text: str) -> None:
    head = (
        "# Benchmark results\n\n"
        "Newest first. Each section is one run of `python -m bench.run --photos DIR -n N` (see its docstring),\n"
        "s2ccrop and smartcrop.py measured side by side on the same photos in the same run. Goals (issue 18,\n"
        "on any x86 CPU: rows capped with `--isa avx2` too): CLI >= 2x smartcrop.py photos/s, crops written at\n"
        "full size and as 640-px thumbnails; `s2ccrop --version` <= 0.3 s; first crop from a cold start\n"
        "<= 2.5 s; peak PSS of the CLI run <= 1 GB. (Issue 6 asked 3x and model <= 25 ms; older sections.)\n"
        "'before' = the straightforward path the optimised one replaced, timed in the same process.\n"
    )
    old = RESULTS.read_text() if RESULTS.exists() else head
    body = old[len(head):] if old.startswith(head) else "\n" + old
    RESULTS.write_text(head + "\n" + text.rstrip() + "\n" + body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", required=True, type=Path, help="folder of photos (JPEG)")
    ap.add_argument("-n", type=int, default=200, help="photos for the CLI and smartcrop runs (default 200)")
    ap.add_argument("--stage-photos", type=int, default=40, help="photos for the in-process stage times")
    ap.add_argument("--weights", type=Path,
                    help="checkpoint, or 'random' (v1 shape, seeded); default: the embedded default weights")
    ap.add_argument("--baseline-src", type=Path,
                    help="another s2ccrop source tree (e.g. `git archive HEAD`) whose CLI runs as the 'before' row")
    ap.add_argument("--workers", type=int, default=None, help="pass --workers N to the CLI")
    ap.add_argument("--rounds", type=int, default=3,
                    help="CLI and smartcrop.py runs, taking turns (default 3; the median is reported)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no RESULTS.md update")
    ap.add_argument("--no-save", action="store_true", help="print only; leave bench/RESULTS.md alone")
    ap.add_argument("--label", default="", help="a note for the RESULTS.md heading")
    ap.add_argument("--thumb-width", type=int, default=640,
                    help="also write the crops as thumbnails this wide, both tools (default 640; 0: skip)")
    ap.add_argument("--isa", action="append", default=[], choices=sorted(ISA_ENVS),
                    help="repeat the CLI runs, first crop and stage times with the CPU capped at this ISA "
                         "(avx2: no AMX, no AVX-512)")
    ap.add_argument("--stages-only", type=Path, metavar="JSON", help=argparse.SUPPRESS)  # the capped stage pass
    args = ap.parse_args(argv)

    photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[: args.n]
    if not photos:
        raise SystemExit(f"no JPEG photos in {args.photos}")
    args.n = len(photos)
    if args.stages_only:
        import json

        weights = make_weights(args.weights, Path(tempfile.mkdtemp(prefix="s2ccrop-bench-")))
        args.stages_only.write_text(json.dumps(stage_times(photos[: args.stage_photos + 3], weights)))
        return 0
    m = machine()
    tmp = Path(tempfile.mkdtemp(prefix="s2ccrop-bench-"))
    weights = make_weights(args.weights, tmp)
    weights_note = (str(args.weights) if args.weights and str(args.weights) != "random"
                    else "random, v1 shape (crop head, align 9, 4 whole-image genes)" if args.weights
                    else f"embedded default ({weights.name})")
    extra = ["--workers", str(args.workers)] if args.workers is not None else []

    print(f"[bench] {m['cpu']} ({m['features']}), {m['cores']} cores, torch {m['torch']}, {m['threads']} threads; {m['other_load']}",
          file=sys.stderr)
    ver = startup(3 if args.quick else 7)
    print(f"[bench] --version {ver:.3f} s", file=sys.stderr)
    first = first_crop(photos[0], weights, tmp, 2 if args.quick else 3)
    print(f"[bench] first crop {first[0]:.2f} s", file=sys.stderr)
    # The figure is a ratio on a noisy machine: s2ccrop and smartcrop.py take turns, `--rounds` times,
    # and each side's median run is reported, with the median of the per-round ratios.
    capped_env = {isa: dict(os.environ, **ISA_ENVS[isa]) for isa in args.isa}
    firsts = {isa: first_crop(photos[0], weights, tmp, 2 if args.quick else 3, ISA_ENVS[isa]) for isa in args.isa}
    for isa, f in firsts.items():
        print(f"[bench] first crop, {isa} only: {f[0]:.2f} s", file=sys.stderr)
    rounds: dict[str, list[dict]] = {"sc": [], "sc_eq": [], "cli": [], "one": [], "base": [], "sc_thumb": [],
                                     "cli_thumb": []}
    for isa in args.isa:
        rounds[f"cli_{isa}"], rounds[f"cli_thumb_{isa}"] = [], []
    thumb = ["--width", str(args.thumb_width)] if args.thumb_width else []
    for r in range(args.rounds):
        rounds["sc"].append(smartcrop_throughput(photos, _fresh(tmp / f"smartcrop-{r}")))
        rounds["sc_eq"].append(smartcrop_equal_cores(photos, _fresh(tmp / f"smartcrop-eq-{r}"), m["cores"]))
        rounds["cli"].append(cli_throughput(photos, weights, _fresh(tmp / f"s2ccrop-{r}"), extra))
        rounds["one"].append(cli_throughput(photos, weights, _fresh(tmp / f"s2ccrop-j1-{r}"), extra + ["-j", "1"]))
        if thumb:
            rounds["sc_thumb"].append(smartcrop_throughput(photos, _fresh(tmp / f"smartcrop-thumb-{r}"), args.thumb_width))
            rounds["cli_thumb"].append(cli_throughput(photos, weights, _fresh(tmp / f"s2ccrop-thumb-{r}"), extra + thumb))
        for isa, env in capped_env.items():
            rounds[f"cli_{isa}"].append(cli_throughput(photos, weights, _fresh(tmp / f"s2ccrop-{isa}-{r}"), extra, env=env))
            if thumb:
                rounds[f"cli_thumb_{isa}"].append(
                    cli_throughput(photos, weights, _fresh(tmp / f"s2ccrop-thumb-{isa}-{r}"), extra + thumb, env=env))
        if args.baseline_src:
            env = dict(os.environ, PYTHONPATH=str(args.baseline_src))
            # run from inside that tree: `python -m` puts the working folder first on sys.path
            rounds["base"].append(cli_throughput(photos, weights, _fresh(tmp / f"baseline-{r}"), extra, env=env,
                                                 cmd=[sys.executable, "-m", "s2ccrop"], cwd=args.baseline_src))
        print(f"[bench] round {r + 1}: " + ", ".join(f"{k} {v[-1]['photos_per_s']:.2f}" for k, v in rounds.items() if v)
              + " photos/s", file=sys.stderr)
    sc, cli, one = (_median_run(rounds[k]) for k in ("sc", "cli", "one"))
    sc["equal_cores"] = _median_run(rounds["sc_eq"])
    sc["equal_cores"]["round_ratios"] = _round_ratios(rounds["cli"], rounds["sc_eq"])
    base = _median_run(rounds["base"]) if rounds["base"] else None
    cli["round_ratios"] = _round_ratios(rounds["cli"], rounds["sc"])
    thumbs = None
    if thumb:
        thumbs = {"cli": _median_run(rounds["cli_thumb"]), "sc": _median_run(rounds["sc_thumb"]), "width": args.thumb_width}
        thumbs["cli"]["round_ratios"] = _round_ratios(rounds["cli_thumb"], rounds["sc_thumb"])
    st = stage_times(photos[: args.stage_photos + 3], weights)
    capped = {}
    for isa, env in capped_env.items():
        run = {"cli": _median_run(rounds[f"cli_{isa}"]), "thumb": None, "first": firsts[isa],
               "st": capped_stage_times(args, weights, env, tmp / f"stages-{isa}.json")}
        run["cli"]["round_ratios"] = _round_ratios(rounds[f"cli_{isa}"], rounds["sc"])
        if thumb:
            run["thumb"] = _median_run(rounds[f"cli_thumb_{isa}"])
            run["thumb"]["round_ratios"] = _round_ratios(rounds[f"cli_thumb_{isa}"], rounds["sc_thumb"])
        capped[isa] = run
    m["load_avg_end"] = "%.2f %.2f %.2f" % os.getloadavg()

    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"## {when}{' — ' + args.label if args.label else ''}\n\n{describe(m, args, weights_note)}\n\n"
            f"{table(m, st, cli, sc, ver, first, args.n, base, one, thumbs, capped)}\n")
    print(text)
    if not (args.quick or args.no_save):
        save(text)
        print(f"[bench] saved to {RESULTS}", file=sys.stderr)
    return 0


def _round_ratios(cli_runs: list[dict], sc_runs: list[dict]) -> list[float]:
    return [c["photos_per_s"] / s["photos_per_s"] for c, s in zip(cli_runs, sc_runs)]


def capped_stage_times(args, weights: Path, env: dict, out: Path) -> dict:
    """`stage_times` in a child process started with `env`: the ISA caps act when oneDNN and ATen load."""
    cmd = [sys.executable, "-m", "bench.run", "--photos", str(args.photos), "-n", str(args.n),
           "--stage-photos", str(args.stage_photos), "--weights", str(weights), "--stages-only", str(out)]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"capped stage times failed ({done.returncode}): {done.stderr[-2000:]}")
    import json

    return json.loads(out.read_text())


def _median_run(runs: list[dict]) -> dict:
    """The run with the median photos/s (the lower middle one of an even count); peaks are the maxima."""
    ranked = sorted(runs, key=lambda r: r["photos_per_s"])
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    for key in ("peak_rss_mb", "tree_rss_mb", "tree_pss_mb"):
        if key in chosen:
            chosen[key] = max(r[key] for r in runs)
    chosen["all_photos_per_s"] = [r["photos_per_s"] for r in runs]
    return chosen


def _fresh(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())

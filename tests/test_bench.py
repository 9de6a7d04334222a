"""The speed harness's own arithmetic (bench/run.py): CPU accounting of a process tree and the 3x budget rows."""

from __future__ import annotations

import sys
import textwrap

import pytest

run = pytest.importorskip("bench.run", reason="bench/ is part of the source tree, not of the installed package")

# Burns ~0.4 s of CPU in a grandchild that the child waits for, then exits.
_TREE = textwrap.dedent(
    """
    import subprocess, sys
    burn = "import time\\nend = time.process_time() + 0.4\\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    """
)


def test_run_timed_counts_the_cpu_of_reaped_descendants():
    tree: dict = {}
    wall, rss, code, err = run.run_timed([sys.executable, "-c", _TREE], tree=tree)
    assert code == 0, err
    # the child itself only waits: without its reaped grandchild's time this would be ~0.05 s
    assert tree["cpu_s"] >= 0.35
    assert tree["cpu_s"] <= wall * 2 + 0.1  # no more than two cores' worth of the wall time
    assert rss > 0


def test_run_timed_reports_a_failing_child():
    wall, rss, code, err = run.run_timed([sys.executable, "-c", "import sys; sys.exit('broken input')"])
    assert code == 1 and "broken input" in err


def _stages(**over) -> dict:
    st = {
        "decode (full)": 3.0, "decode (model's scale)": 2.0, "preprocess": 2.5, "candidates per photo": 663.0, "candidates": 1.0,
        "backbone (before: unfused NCHW)": 37.0, "backbone": 20.0, "genes": 1.0, "gene boxes per photo": 1.0,
        "pipeline": 70.0, "align (before: pooled ops)": 15.0, "align": 7.0, "graph (before: literal)": 74.0,
        "graph (exact, every candidate)": 26.0, "graph": 23.0,
        "model (before)": 126.0, "model": 52.0, "selection": 0.5, "encode": 10.0,
        "backbone+genes (1 thread)": 25.0, "align+graph (1 thread)": 30.0, "model (1 thread)": 55.0,
        "model-free part": 17.0,
    }
    st.update(over)
    return st


def test_table_states_the_cpu_budget_of_the_2x_goal():
    machine = {"cores": 2}
    sc = {"photos_per_s": 25.0, "wall_s": 8.0, "crops": 800, "peak_rss_mb": 500.0, "cpu_s": 8.4}
    cli = {"photos_per_s": 20.0, "wall_s": 10.0, "crops": 800, "peak_rss_mb": 600.0, "cpu_s": 19.0,
           "round_ratios": [0.8], "processes": 3, "tree_pss_mb": 800.0, "tree_rss_mb": 1600.0}
    one = {"photos_per_s": 16.0, "wall_s": 12.5, "crops": 800, "peak_rss_mb": 700.0, "cpu_s": 22.0}
    text = run.table(machine, _stages(), cli, sc, 0.1, (1.8, 600.0), 200, None, one)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("|")}
    # 19 s (CLI), 22 s (-j 1) and 8.4 s (smartcrop.py) of CPU over 200 photos
    assert "| 95 / 110 / 42 ms |" in rows["CPU time per photo, user + system of all processes, start-up included: CLI / CLI `-j 1` / smartcrop.py"]
    # 2 cores x 1000 ms / (2 x 25 photos/s) = 40.0 core-ms per photo
    budget = next(line for key, line in rows.items() if key.startswith("CPU per photo that 2×"))
    assert "(2 × 1000 ms ÷ (2 × 25.0 photos/s)) | 40.0 ms |" in budget
    worker = next(line for key, line in rows.items() if key.startswith("CPU per photo of one worker"))
    assert "model on 1 thread 55.0 (backbone + genes 25.0, align + graph 30.0)" in worker
    assert "| 72.0 ms | ≤ 40.0 ms for 2× |" in worker
    assert "| **0.80×** | ≥ 2× **missed** |" in text


def test_table_without_a_one_process_run_leaves_its_cpu_unknown():
    sc = {"photos_per_s": 30.0, "wall_s": 6.0, "crops": 4, "peak_rss_mb": 500.0, "cpu_s": 6.0}
    cli = {"photos_per_s": 90.0, "wall_s": 2.0, "crops": 4, "peak_rss_mb": 600.0, "cpu_s": 4.0, "round_ratios": [3.0]}
    text = run.table({"cores": 4}, _stages(model=20.0), cli, sc, 0.1, (1.8, 600.0), 200, None, None)
    assert "| 20 / nan / 30 ms |" in text
    assert "(4 × 1000 ms ÷ (2 × 30.0 photos/s)) | 66.7 ms |" in text
    assert "| **3.00×** | ≥ 2× met |" in text and "| 20.0 ms | ≤ 25 ms met |" in text


def test_vector_features_read_the_flags_line():
    cpuinfo = ("processor\t: 0\nmodel name\t: Some CPU\n"
               "flags\t\t: fpu sse2 avx avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert run.vector_features(cpuinfo) == ["avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"]
    assert run.vector_features("flags\t: fpu sse2 avx avx2 fma\n") == ["avx2"]
    assert run.vector_features("model name: no flags line\n") == []


def test_avx2_cap_turns_off_every_amx_and_avx512_path():
    env = run.ISA_ENVS["avx2"]
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX2" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["FBGEMM_ENABLE_INSTRUCTIONS"] == "AVX2" and env["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"


def test_table_has_thumbnail_and_capped_rows_with_their_own_goals():
    sc = {"photos_per_s": 20.0, "wall_s": 10.0, "crops": 800, "peak_rss_mb": 500.0, "cpu_s": 10.0}
    cli = {"photos_per_s": 30.0, "wall_s": 6.7, "crops": 800, "peak_rss_mb": 600.0, "cpu_s": 12.0,
           "round_ratios": [1.5], "tree_pss_mb": 800.0}
    thumbs = {"width": 640, "sc": {**sc, "photos_per_s": 25.0},
              "cli": {**cli, "photos_per_s": 55.0, "round_ratios": [2.1, 2.2, 2.3]}}
    capped = {"avx2": {"cli": {**cli, "round_ratios": [0.5, 0.6, 0.4], "cpu_s": 20.0},
                       "thumb": {**cli, "round_ratios": [1.0]}, "first": (2.9, 600.0),
                       "st": _stages(model=80.0)}}
    text = run.table({"cores": 2}, _stages(), cli, sc, 0.1, (1.8, 600.0), 200, None, None, thumbs, capped)
    assert "| **s2ccrop ÷ smartcrop.py, thumbnails** (median of the rounds: 2.10, 2.20, 2.30) | **2.20×** | ≥ 2× met |" in text
    assert "| **1.50×** | ≥ 2× **missed** |" in text
    assert "**AVX2 only: s2ccrop ÷ smartcrop.py** (rounds: 0.50, 0.60, 0.40) | **0.50×** | ≥ 2× **missed** |" in text
    assert "AVX2 only: s2ccrop ÷ smartcrop.py, thumbnails** (rounds: 1.00) | **1.00×**" in text
    assert "| AVX2 only: first crop, one photo, cold process | 2.90 s | ≤ 2.5 s **missed** |" in text
    assert "| AVX2 only: CPU time per photo of the CLI run, all processes | 100 ms | |" in text
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in text and "FBGEMM_ENABLE_INSTRUCTIONS=AVX2" in text


def test_proc_stat_seconds_counts_busy_ticks_and_steal_apart():
    from bench.phone import proc_stat_seconds

    # user nice system idle iowait irq softirq steal guest guest_nice
    assert proc_stat_seconds("cpu  1000 50 300 9000 400 20 30 70 0 0\n", 100) == (14.0, 0.7)
    with pytest.raises(ValueError):
        proc_stat_seconds("cpu0 1 2 3 4 5 6 7 8", 100)  # one core's line, not the machine's
    with pytest.raises(ValueError):
        proc_stat_seconds("cpu  1 2 3", 100)


def test_host_cpu_counts_a_finished_tool_as_the_benchs_own_work():
    import subprocess

    from bench.phone import host_cpu

    before = host_cpu()
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass"
    subprocess.run([sys.executable, "-c", burn], check=True)
    after = host_cpu()
    assert after["ours"] - before["ours"] >= 0.3
    assert after["busy"] - before["busy"] >= 0.25  # the machine was busy at least that long (ticks round)


def test_other_work_is_the_busy_time_beyond_the_benchs():
    from bench.phone import other_work

    assert other_work({"busy": 200.0, "ours": 150.0, "steal": 3.0}) == (
        "Other work on the host meanwhile: 50 CPU-s beside the bench's 150 (25% of the busy time); "
        "hypervisor steal 3 s.")
    assert other_work({"busy": 100.0, "ours": 100.4, "steal": 0.0}).startswith(
        "Other work on the host meanwhile: 0 CPU-s")  # ticks and rusage round apart: never below 0

"""The command line through its real entry points: `cli.main(argv)` in-process and `python -m s2ccrop`.

The real `Cropper` runs (the shipped default or --weights random); in-process runs share one loaded
instance to keep the suite fast. Every image is generated here, tiny.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from s2ccrop import batch, cli
from s2ccrop.batch import Env
from s2ccrop.cli import commands
from s2ccrop.types import Ratio

from conftest import photo_image

ROOT = Path(__file__).resolve().parent.parent
KEYS = ["input", "ratio", "box", "width", "height", "score", "output", "fit"]


@pytest.fixture(scope="session")
def shared_cropper():
    cache = {}

    def make(weights, device, report, face_guard=True):
        key = (weights, device, face_guard)
        if key not in cache:
            cache[key] = real_make(weights, device, report, face_guard)
        return cache[key]

    real_make = batch.make_cropper
    return make


@pytest.fixture(autouse=True)
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cropper):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("S2CCROP_CACHE", str(tmp_path / ".cache"))
    monkeypatch.delenv("S2CCROP_MANIFEST", raising=False)
    monkeypatch.setattr(batch, "make_cropper", shared_cropper)


def run(*argv: str, stdin: bytes = b"", tty: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([str(a) for a in argv], Env(io.BytesIO(stdin), out, err, tty))
    return code, out.getvalue(), err.getvalue()


def errors_of(err: str) -> list[str]:
    return [l for l in err.splitlines() if "warning:" not in l]


def records(out: str) -> list[dict]:
    return [json.loads(l) for l in out.splitlines()]


def subprocess_env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "S2CCROP_CACHE": str(tmp_path / ".cache")}


# ------------------------------------------------------------------ folders, JSON, names


def test_nested_folders_are_mirrored_and_json_is_exact(tmp_path: Path, make_photo):
    make_photo("in/a.jpg", (60, 40), kind="noise")
    make_photo("in/2023/deep/b.png", (40, 60), seed=1, kind="noise")
    code, out, err = run("in", "-o", "out", "-r", "16:9", "-r", "og", "-r", "any", "--json")
    assert code == 0, err
    recs = records(out)
    assert [(r["input"], r["ratio"]) for r in recs] == [
        ("in/a.jpg", "16:9"), ("in/a.jpg", "1.91:1"), ("in/a.jpg", "any"),
        ("in/2023/deep/b.png", "16:9"), ("in/2023/deep/b.png", "1.91:1"), ("in/2023/deep/b.png", "any"),
    ]
    assert [r["output"] for r in recs[3:]] == [
        "out/2023/deep/b_16x9.png", "out/2023/deep/b_1.91x1.png", "out/2023/deep/b_any.png"]
    for r in recs:
        assert list(r) == KEYS
        assert (r["width"], r["height"]) == ((60, 40) if r["input"].endswith("a.jpg") else (40, 60))
        x1, y1, x2, y2 = r["box"]
        assert all(isinstance(v, int) for v in r["box"]) and isinstance(r["score"], float)
        assert 0 <= x1 < x2 <= r["width"] and 0 <= y1 < y2 <= r["height"]
        with Image.open(r["output"]) as im:
            assert im.size == (x2 - x1, y2 - y1)  # no size option: the crop's own pixels
    assert sorted(p.name for p in (tmp_path / "in").rglob("*") if p.is_file()) == ["a.jpg", "b.png"]


def test_default_outputs_go_beside_inputs_and_a_rerun_does_not_crop_them(make_photo):
    make_photo("p/x.jpg", (48, 32), kind="noise")
    code, out, _ = run("p", "-r", "square", "-r", "phone")
    assert code == 0
    assert out.splitlines()[0].startswith("p/x.jpg  1:1  ") and out.splitlines()[0].endswith("-> p/x_1x1.jpg")
    before = sorted(os.listdir("p"))
    assert before == ["x.jpg", "x_1x1.jpg", "x_9x16.jpg"]
    code, out, _ = run("p", "-r", "square", "-r", "phone", "--json")
    assert code == 0 and {r["input"] for r in records(out)} == {"p/x.jpg"}
    assert sorted(os.listdir("p")) == before


def test_name_template_preset_and_subfolders(make_photo):
    make_photo("x.jpg", (48, 32), kind="noise")
    code, out, err = run("x.jpg", "-r", "phone", "-r", "1:1", "--name", "{preset}/{stem}.{ext}", "--format", "png",
                         "-o", "o", "--json")
    assert code == 0, err
    assert [r["output"] for r in records(out)] == ["o/phone/x.png", "o/1:1/x.png"]
    assert Image.open("o/phone/x.png").format == "PNG"


# ------------------------------------------------------------------ exact sizes


def test_width_gives_exact_sizes_for_many_ratios(make_photo):
    make_photo("big.png", (120, 90), kind="noise")
    ratios = ["16:9", "9:16", "1:1", "4:5", "1.91:1", "21:9", "3:1", "any"]
    code, out, err = run("big.png", *[a for r in ratios for a in ("-r", r)], "--width", 24, "--upscale", "--json",
                         "-o", "o")
    assert code == 0, err
    recs = records(out)
    assert [r["ratio"] for r in recs] == ratios
    for rec in recs:
        x1, y1, x2, y2 = rec["box"]
        shape = (x2 - x1) / (y2 - y1) if rec["ratio"] == "any" else Ratio.parse(rec["ratio"]).value
        with Image.open(rec["output"]) as im:
            assert im.size == (24, int(24 / shape + 0.5)), rec["ratio"]


@pytest.mark.parametrize("size, ratio", [("32x18", "16:9"), ("18x32", "9:16"), ("20x20", "1:1"),
                                         ("1200x628", "300:157")])
def test_size_is_exact_and_never_upscales_without_asking(make_photo, size: str, ratio: str):
    make_photo("p.png", (96, 64), kind="noise")
    w, h = map(int, size.split("x"))
    code, out, err = run("p.png", "--size", size, "--json", "-o", "o")  # ratio follows from --size
    assert code == 0, err
    (rec,) = records(out)
    assert rec["ratio"] == ratio
    bw, bh = rec["box"][2] - rec["box"][0], rec["box"][3] - rec["box"][1]
    expected = (w, h) if (w <= bw and h <= bh) else (bw, bh)
    assert Image.open(rec["output"]).size == expected
    if expected != (w, h):
        assert "--upscale" in err
        code, out, _ = run("p.png", "--size", size, "--upscale", "--json", "-o", "o2")
        assert Image.open(records(out)[0]["output"]).size == (w, h)


def test_size_that_contradicts_a_ratio_is_a_usage_error():
    code, out, err = run("x.jpg", "--size", "100x100", "-r", "16:9")
    assert (code, out) == (2, "") and err == (
        "s2ccrop: error: --size 100x100 does not have the ratio 16:9; give that ratio its own run, "
        "or use --width/--height, which follow each ratio\n")


INVERSE = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
           4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
           7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def test_exif_orientations_1_to_8_give_upright_outputs(tmp_path: Path):
    upright = {}
    for o in range(1, 9):
        up = photo_image((50, 30), seed=o, kind="noise")
        stored = up if INVERSE[o] is None else up.transpose(INVERSE[o])
        exif = Image.Exif()
        exif[0x0112] = o
        stored.save(photo_dir(tmp_path) / f"o{o}.png", exif=exif.tobytes())
        upright[f"exif/o{o}.png"] = up
    code, out, err = run("exif", "-r", "1:1", "--json", "-o", "out")
    assert code == 0, err
    recs = records(out)
    assert sorted(r["input"] for r in recs) == sorted(upright)
    for rec in recs:
        assert (rec["width"], rec["height"]) == (50, 30)
        with Image.open(rec["output"]) as im:
            assert im.getexif().get(0x0112, 1) == 1
            assert np.array_equal(np.asarray(im), np.asarray(upright[rec["input"]].crop(tuple(rec["box"]))))


def photo_dir(tmp_path: Path) -> Path:
    (tmp_path / "exif").mkdir(exist_ok=True)
    return tmp_path / "exif"


def test_format_and_quality(make_photo):
    make_photo("n.png", (64, 64), kind="noise")
    for q in (10, 95):
        assert run("n.png", "-r", "1:1", "--format", "webp", "--quality", q, "--name", f"{{stem}}_q{q}.{{ext}}")[0] == 0
    assert Image.open("n_q10.webp").format == "WEBP"
    assert os.path.getsize("n_q10.webp") < os.path.getsize("n_q95.webp")
    code, _, err = run("n.png", "--quality", "101")
    assert code == 2 and "between 1 and 100" in err


# ------------------------------------------------------------------ stdin


def test_stdin_newline_and_nul(make_photo):
    a = make_photo("a b.jpg", (48, 32), kind="noise")
    b = make_photo("line\nbreak.png", (48, 32), seed=2, kind="noise")
    code, out, err = run("-", "-r", "1:1", "--json", "--dry-run", stdin=f"{a.name}\n\n".encode())
    assert code == 0 and [r["input"] for r in records(out)] == ["a b.jpg"]
    code, out, err = run("-", "-0", "-r", "1:1", "--json", "--dry-run", stdin=f"{b.name}\0{a.name}\0".encode())
    assert code == 0 and [r["input"] for r in records(out)] == ["line\nbreak.png", "a b.jpg"]
    code, out, err = run("-", "-r", "1:1", "--dry-run", stdin=b"line\nbreak.png\n")  # split by newline: no such files
    assert code == 1 and errors_of(err) == ["s2ccrop: error: line: no such file or directory",
                                            "s2ccrop: error: break.png: no such file or directory"]


# ------------------------------------------------------------------ dry run, skip-existing, overwrite rules


def test_dry_run_writes_nothing(make_photo):
    make_photo("d/p.jpg", (48, 32), kind="noise")
    code, out, _ = run("d", "--dry-run", "--json", "-o", "o")
    recs = records(out)
    assert code == 0 and [r["ratio"] for r in recs] == ["any", "1:1", "4:5", "16:9", "9:16"]
    assert all(r["output"] is None for r in recs)
    assert not Path("o").exists() and os.listdir("d") == ["p.jpg"]


def test_skip_existing_makes_a_rerun_a_noop(make_photo, monkeypatch):
    make_photo("s/p.jpg", (48, 32), kind="noise")
    make_photo("s/q.jpg", (48, 32), seed=3, kind="noise")
    assert run("s", "-o", "o", "-r", "1:1", "-r", "16:9")[0] == 0
    stamp = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in Path("o").iterdir()}
    os.remove("o/q_16x9.jpg")

    def no_model(*a, **k):
        raise AssertionError("the model must not load when every output exists")

    code, out, _ = run("s", "-o", "o", "-r", "1:1", "-r", "16:9", "--skip-existing", "--json")
    assert code == 0 and [(r["input"], r["ratio"]) for r in records(out)] == [("s/q.jpg", "16:9")]
    assert all((p.stat().st_mtime_ns, p.read_bytes()) == v for p, v in stamp.items() if p.name != "q_16x9.jpg")
    monkeypatch.setattr(batch, "make_cropper", no_model)
    assert run("s", "-o", "o", "-r", "1:1", "-r", "16:9", "--skip-existing") == (0, "", "")


def test_an_input_is_never_overwritten(make_photo):
    src = make_photo("keep.jpg", (48, 32), kind="noise")
    data = src.read_bytes()
    code, out, err = run("keep.jpg", "-r", "1:1", "--name", "{stem}.{ext}")
    assert code == 1 and out == ""
    assert errors_of(err) == ["s2ccrop: error: keep.jpg: output keep.jpg would overwrite the input; "
                              "use -o or another --name"]
    assert src.read_bytes() == data


def test_same_stem_collision_is_an_error_not_a_silent_overwrite(make_photo):
    make_photo("c/a.jpg", (48, 32), kind="noise")
    make_photo("c/a.png", (48, 32), seed=5, kind="noise")
    code, out, err = run("c", "-r", "1:1", "--format", "jpg", "-o", "o", "--json")
    assert code == 1 and [r["input"] for r in records(out)] == ["c/a.jpg"]
    assert ("c/a.png: output o/a_1x1.jpg is also c/a.jpg's in this run (same name stem; use --format same or a "
            "--name with {ext})") in err


# ------------------------------------------------------------------ errors and exit codes


def test_bad_inputs_get_one_line_each_and_the_batch_goes_on(tmp_path: Path, make_photo):
    make_photo("b/good.jpg", (48, 32), kind="noise")
    (tmp_path / "b" / "empty.jpg").write_bytes(b"")
    (tmp_path / "b" / "text.png").write_text("not a picture")
    code, out, err = run("b", "missing.jpg", "-r", "1:1", "--json", "-o", "o")
    assert code == 1
    assert [r["input"] for r in records(out)] == ["b/good.jpg"]
    assert errors_of(err) == [
        "s2ccrop: error: b/empty.jpg: not an image file (or a format Pillow cannot read)",
        "s2ccrop: error: b/text.png: not an image file (or a format Pillow cannot read)",
        "s2ccrop: error: missing.jpg: no such file or directory",
    ]
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "no input"),
        (["x.jpg", "-r", "0:9"], "invalid ratio"),
        (["x.jpg", "-r", "sixteen"], "preset name"),
        (["x.jpg", "--size", "big"], "invalid size"),
        (["x.jpg", "--name", "{stem}_{bad}.jpg"], "unknown field"),
        (["x.jpg", "--workers=-1"], "must not be negative"),
        (["x.jpg", "--format", "gif"], "invalid choice"),
        (["x.jpg", "--width", "10", "--size", "10x10"], "not allowed with"),
    ],
)
def test_usage_errors_exit_2(argv, message):
    code, out, err = run(*argv)
    assert code == 2 and out == "" and message in err


def test_weights_error_exits_2_before_any_output(make_photo):
    make_photo("p.jpg", (48, 32), kind="noise")
    code, out, err = run("p.jpg", "--weights", "does/not/exist.safetensors")
    assert (code, out) == (2, "") and err == "s2ccrop: error: does/not/exist.safetensors: no such weights file\n"
    assert os.listdir(".") == ["p.jpg"]


def test_interrupt_exits_130_and_leaves_no_partial_file(make_photo, monkeypatch):
    from s2ccrop.io import writers

    make_photo("i.jpg", (48, 32), kind="noise")

    def interrupted_save(fh, *a, **k):
        fh.write(b"half an image")
        raise KeyboardInterrupt

    monkeypatch.setattr(writers, "save_image", interrupted_save)
    code, out, err = run("i.jpg", "-r", "1:1", "-o", "o")
    assert code == 130 and err.endswith("s2ccrop: interrupted\n")
    assert not Path("o").exists() or list(Path("o").rglob("*")) == []


def test_real_sigint_exits_130(tmp_path: Path):
    proc = subprocess.Popen([sys.executable, "-m", "s2ccrop", "-", "-o", "o"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(tmp_path), cwd=tmp_path)
    time.sleep(1.5)  # started and blocked reading paths from stdin
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"Traceback" not in err and err.endswith(b"s2ccrop: interrupted\n")


def test_broken_pipe_is_not_a_crash(tmp_path: Path, make_photo):
    make_photo("bp/0.jpg", (48, 32), kind="noise")
    env = subprocess_env(tmp_path)
    # `true` exits without reading, long before the first result: every write hits a closed pipe.
    cmd = f"{sys.executable} -m s2ccrop bp -r 1:1 --dry-run --json | true"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, env=env, cwd=tmp_path,
                          timeout=300)
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr
    assert proc.returncode == 1  # stopped quietly: not every result reached a reader


# ------------------------------------------------------------------ entry points, help, subcommands


def test_python_m_s2ccrop_runs_the_real_pipeline(tmp_path: Path, make_photo):
    make_photo("m/x.jpg", (64, 48), kind="noise")
    proc = subprocess.run([sys.executable, "-m", "s2ccrop", "m", "-r", "desktop", "--width", "32", "--json",
                           "-o", "out"], capture_output=True, text=True, env=subprocess_env(tmp_path), cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    (rec,) = records(proc.stdout)
    assert rec["output"] == "out/x_16x9.jpg" and Image.open("out/x_16x9.jpg").size == (32, 18)


def test_version_is_fast_and_does_not_import_torch(tmp_path: Path):
    code = ("import sys, time; t = time.perf_counter(); from s2ccrop import cli; rc = cli.main(['--version']); "
            "print(rc, 'torch' in sys.modules, 'PIL.Image' in sys.modules, round(time.perf_counter() - t, 3))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(tmp_path),
                          timeout=60)
    rc, torch_loaded, pil_loaded, seconds = proc.stdout.split("\n")[-2].split()
    assert proc.stdout.startswith("s2ccrop ") and (rc, torch_loaded, pil_loaded) == ("0", "False", "False")
    assert float(seconds) < 0.3


def test_help_shows_examples_presets_and_subcommands():
    code, out, _ = run("--help")
    assert code == 0
    for needle in ("examples:", "s2ccrop photo.jpg -r 16:9", "phone", "9:16", "1.91:1", "default ",
                   "weights", "info", "preview", "exit status"):
        assert needle in out


def test_subcommand_rule_and_dash_dash(make_photo):
    make_photo("info/p.jpg", (48, 32), kind="noise")
    code, out, _ = run("info", "--json")
    assert code == 0 and "compiled_ops" in json.loads(out)
    code, out, _ = run("-r", "1:1", "--dry-run", "--json", "--", "info")
    assert code == 0 and [r["input"] for r in records(out)] == ["info/p.jpg"]
    code, out, _ = run("./info", "-r", "1:1", "--dry-run", "--json")
    assert code == 0 and len(records(out)) == 1


def test_external_subcommands_are_lazy_and_a_missing_one_is_a_usage_error(monkeypatch):
    assert {"train", "eval"} <= set(cli.SUBCOMMANDS)
    monkeypatch.setitem(commands.EXTERNAL, "train", "s2ccrop.no_such_module:main")
    code, out, err = run("train", "--help")
    assert (code, out) == (2, "") and err.startswith("s2ccrop: error: the 'train' command is not available")


def test_face_guard_is_on_by_default_and_can_be_turned_off(make_photo, monkeypatch: pytest.MonkeyPatch):
    seen = []
    real = batch.make_cropper

    def spy(weights, device, report, face_guard=True):
        seen.append(face_guard)
        return real(weights, device, report, face_guard)

    monkeypatch.setattr(batch, "make_cropper", spy)
    p = make_photo("p.jpg", (48, 32), kind="noise")
    assert run(str(p), "-r", "1:1", "--dry-run", "-q")[0] == 0
    assert run(str(p), "-r", "1:1", "--dry-run", "-q", "--no-face-guard")[0] == 0
    assert seen == [True, False]


def test_info_reports_ops_cache_and_default_weights(tmp_path: Path):
    code, out, _ = run("info", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["cache_dir"] == str(tmp_path / ".cache")
    assert isinstance(data["compiled_ops"], bool) and data["compiled_ops_detail"]
    import torch

    assert data["default_weights"] == "s2ccrop-v5"
    assert data["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    assert data["torch"] and data["pillow"]
    code, out, _ = run("info")
    assert code == 0 and any(l.startswith("compiled_ops ") for l in out.splitlines())


# ------------------------------------------------------------------ preview


def test_preview_subcommand_draws_a_contact_sheet(tmp_path: Path):
    for i in range(2):
        Image.new("RGB", (60, 40), (40, 40, 40)).save(tmp_path / f"{i}.png")
    code, out, err = run("preview", "0.png", "1.png", "-r", "1:1", "-r", "16:9", "-o", "sheet.png")
    assert code == 0, err
    assert out == "sheet.png\n"
    assert sorted(p for p in os.listdir(".") if not p.startswith(".")) == ["0.png", "1.png", "sheet.png"]
    with Image.open("sheet.png") as im:
        assert im.size == (2 * 480 + 4, 480 + 18)
        colours = {c for _, c in im.convert("RGB").getcolors(1 << 20)}
    assert (230, 25, 75) in colours and (60, 180, 75) in colours  # the boxes of the two ratios


def test_preview_option_with_a_normal_run(make_photo):
    make_photo("p.jpg", (48, 32), kind="noise")
    code, out, _ = run("p.jpg", "-r", "1:1", "--preview", "look.jpg", "--json", "-o", "o")
    assert code == 0 and records(out)[0]["output"] == "o/p_1x1.jpg"
    assert Image.open("look.jpg").size == (480, 498)


def test_progress_bar_only_on_a_terminal_and_never_on_stdout(make_photo):
    make_photo("t.jpg", (48, 32), kind="noise")
    code, out, err = run("t.jpg", "-r", "1:1", "--json", "--dry-run", tty=True)
    assert code == 0 and len(records(out)) == 1  # stdout stays pure JSON
    assert "1 photos" in err  # the summary (and bar) went to stderr
    code, out, err = run("t.jpg", "-r", "1:1", "--json", "--dry-run", tty=False)
    assert errors_of(err) == []


def test_sigint_deferred_holds_ctrl_c_until_the_block_ends():
    before = signal.getsignal(signal.SIGINT)
    reached_end_of_block = False
    with pytest.raises(KeyboardInterrupt):
        with batch.sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs here; it must only take note
            reached_end_of_block = True
    assert reached_end_of_block and signal.getsignal(signal.SIGINT) is before
    with batch.sigint_deferred():  # no signal: nothing raised
        pass
    assert signal.getsignal(signal.SIGINT) is before


def test_run_skips_the_teardown_only_after_the_crop_command(monkeypatch):
    import atexit

    exits = []
    monkeypatch.setattr(cli.os, "_exit", lambda code: exits.append(code))
    # the real handlers belong to this test session (pytest's, torch's): running them here would break it
    monkeypatch.setattr(atexit, "_run_exitfuncs", lambda: exits.append("atexit handlers"))
    monkeypatch.setattr(cli.sys, "getprofile", lambda: None)  # pytest-cov or a debugger may be active
    monkeypatch.setattr(cli.sys, "gettrace", lambda: None)
    monkeypatch.setitem(cli._FAST_EXIT, "ok", False)
    # The stop signals' handler is the process's for good: not this test session's.
    monkeypatch.setattr(cli, "_handle_stop_signals_for_good", lambda: cli.interrupts.StopHandler())
    monkeypatch.setattr(cli, "main", lambda: 1)  # e.g. `s2ccrop weights verify`: the normal exit
    with pytest.raises(SystemExit) as stop:
        cli.run()
    assert stop.value.code == 1 and exits == []

    def crop_done():
        cli._FAST_EXIT["ok"] = True
        return 1

    monkeypatch.setattr(cli, "main", crop_done)
    cli.run()
    assert exits == ["atexit handlers", 1]


@pytest.mark.parametrize("how, frozen", [("from s2ccrop._imports import import_torch; import_torch(freeze=True)", True),
                                         ("import s2ccrop.api", False)])
def test_torch_is_imported_with_the_collector_back_on_and_frozen_only_for_the_cli(tmp_path: Path, how, frozen):
    code = f"import gc; {how}; import sys; print('torch' in sys.modules, gc.isenabled(), gc.get_freeze_count() > 0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(tmp_path),
                          timeout=120)
    assert proc.stdout.split() == ["True", "True", str(frozen)], proc.stderr


# ------------------------------------------------------------------ Typer: help panels, completion, the rule


def test_top_level_help_groups_the_commands_in_panels():
    code, out, _ = run("--help")
    assert code == 0
    for panel, commands in (("Cropping", ("crop", "preview")), ("Set up", ("info", "weights")),
                            ("Training", ("train", "eval"))):
        block = out.split(f"─ {panel} ─", 1)[1].split("╰", 1)[0]
        names = [line[2:].split()[0] for line in block.splitlines() if line.startswith("│ ") and line[2] != " "]
        # continuation lines of a wrapped description start indented; older Click sorts the names
        assert sorted(names) == sorted(commands), out
    assert "--install-completion" in out and "--show-completion" in out


@pytest.mark.parametrize("argv", [("crop", "--help"), ("photo.jpg", "--help"), ("-r", "1:1", "-h")])
def test_crop_help_groups_its_options(argv):
    code, out, err = run(*argv)
    assert (code, err) == (0, "")
    assert "Usage: s2ccrop crop" in out
    panels = [line.split("─ ", 1)[1].split(" ─", 1)[0] for line in out.splitlines() if line.startswith("╭─ ")]
    assert panels == ["Arguments", "Options", "What to crop", "Output", "Reporting", "Model", "Hints and fit", "Engine"]
    output = out.split("─ Output ─", 1)[1].split("╰", 1)[0]
    assert "--quality" in output and "--size" in output and "--ratio" not in output


def test_preview_help_shows_its_own_options():
    code, out, _ = run("preview", "--help")
    assert code == 0 and "Usage: s2ccrop preview" in out
    assert "s2ccrop-preview.jpg" in out and "The contact sheet to write" in out
    assert "--size" not in out and "--engine" not in out  # crop-only options


def test_train_help_is_the_training_packages_own():
    code, out, err = run("train", "--help")
    assert code == 0 and out.startswith("usage: s2ccrop train") and "--config" in out


def test_every_command_follows_the_subcommand_rule():
    from s2ccrop.cli.rules import SUBCOMMANDS, with_default_command

    names = {c.name for c in commands.app.registered_commands} | {g.name for g in commands.app.registered_groups}
    assert names == set(SUBCOMMANDS)
    assert with_default_command(["photo.jpg", "-r", "1:1"]) == ["crop", "photo.jpg", "-r", "1:1"]
    assert with_default_command(["--", "weights"]) == ["crop", "--", "weights"]
    assert with_default_command(["./weights"]) == ["crop", "./weights"]
    assert with_default_command([]) == ["crop"]
    for first in ("weights", "info", "--help", "-h", "--show-completion=zsh", "--install-completion"):
        assert with_default_command([first, "x"]) == [first, "x"]


def test_an_unknown_option_is_one_usage_line():
    code, out, err = run("x.jpg", "--no-such-option")
    assert (code, out) == (2, "") and err.startswith("s2ccrop: error: No such option: --no-such-option")
    assert len(err.splitlines()) == 1


def test_show_completion_prints_a_script_that_calls_back_into_s2ccrop(monkeypatch):
    # Typer detects the shell from the process tree (--show-completion takes no value); a test run
    # whose ancestors hold no shell (a detached job) would see none, so the detection is pinned.
    import typer.completion

    monkeypatch.setattr(typer.completion, "_get_shell_name", lambda: "bash")
    code, out, err = run("--show-completion")
    assert code == 0 and "_S2CCROP_COMPLETE=complete_bash" in out and "complete -o default -F" in out


@pytest.mark.parametrize("words, cword, expected", [
    ("s2ccrop we", 1, ["weights"]),
    ("s2ccrop photo.jpg --for", 2, ["--format"]),
    ("s2ccrop photo.jpg --format ", 3, ["same", "jpg", "png", "webp"]),
    ("s2ccrop weights ", 2, ["list", "path", "import", "verify", "download"]),
])
def test_shell_completion_knows_the_default_command(tmp_path: Path, words, cword, expected):
    env = {**subprocess_env(tmp_path), "_S2CCROP_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    proc = subprocess.run([sys.executable, "-m", "s2ccrop"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == expected


def test_only_the_local_crop_command_allows_the_fast_exit(make_photo, monkeypatch):
    make_photo("p.jpg", (48, 32), kind="noise")
    monkeypatch.setitem(cli._FAST_EXIT, "ok", False)
    assert run("info", "--json")[0] == 0 and cli._FAST_EXIT["ok"] is False
    assert run("p.jpg", "-r", "1:1", "--dry-run", "-q")[0] == 0 and cli._FAST_EXIT["ok"] is True


@pytest.mark.parametrize("command", [(), ("crop",), ("preview",), ("weights",), ("info",)])
def test_help_shows_no_type_after_a_flag(command):
    """A flag takes no value: its help line shows none (Typer 0.29 would print `<bool>`)."""
    code, out, _ = run(*command, "--help")
    assert code == 0 and "--help" in out and "<bool>" not in out

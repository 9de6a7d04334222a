"""No lost, truncated or overwritten file (issue 16), whatever the disk, the names, -o or --preview say.

The guarantees, each tested here through the real command line:
- every output reported as written is complete: a full disk or a file size limit is an error line,
  never a shorter file (checked by size and by decoding);
- an input of the run is never written, whatever --name, -o or --preview say, and a file s2ccrop did
  not write is never replaced; an earlier run's outputs are replaced as before;
- every mistake is one line naming the file or the option, with its exit status.
Signals have their own file, test_signals.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from s2ccrop import batch

try:
    from ._cli_helpers import FastCropper, run_in_process
except ImportError:
    from _cli_helpers import FastCropper, run_in_process
from conftest import photo_image

ROOT = Path(__file__).resolve().parent.parent
RANDOM = ("--weights", "random", "--device", "cpu")


def subprocess_env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "S2CCROP_CACHE": str(tmp_path / ".cache"),
            "PYTHONDONTWRITEBYTECODE": "1"}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("s2ccrop: error:")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_complete(record: dict) -> None:
    """A reported output exists, decodes to its last byte, and has the box's size."""
    x1, y1, x2, y2 = record["box"]
    with Image.open(record["output"]) as im:
        im.load()
        assert im.size == (x2 - x1, y2 - y1), record


# ------------------------------------------------------------------ a full disk


def file_size_limit(limit: int):
    """preexec_fn: files of the child may not grow past `limit` bytes. With SIGXFSZ ignored, write()
    then writes what fits and returns short, and the next write fails with EFBIG: what a nearly full
    disk does, without needing a mount."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("fmt", ["jpg", "png", "webp"])
def test_a_write_cut_short_is_an_error_never_a_truncated_output(tmp_path: Path, make_photo, monkeypatch, fmt: str):
    """A JPEG of less than Pillow's 64 kB chunk used to be written by one C write() whose short count
    was ignored: 8,192 bytes on disk, reported as written, exit 0."""
    make_photo("p.png", (200, 150), kind="noise")
    argv = ["p.png", "-o", "out", "-r", "1:1", "-j", "1", "--format", fmt, *RANDOM]
    proc = subprocess.run([sys.executable, "-m", "s2ccrop", *argv], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=subprocess_env(tmp_path), preexec_fn=file_size_limit(8192))
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert error_lines(proc.stderr) == [f"s2ccrop: error: p.png: cannot write out/p_1x1.{fmt}: File too large"]
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []  # no output, no temporary file

    # Without the limit the same command writes a complete file, bigger than the limit was.
    monkeypatch.chdir(tmp_path)
    code, out, err = run_in_process(*argv, "--json")
    assert code == 0, err
    record = json.loads(out)
    check_complete(record)
    assert os.path.getsize(record["output"]) > 8192


def test_a_photo_that_fails_on_a_full_disk_leaves_none_of_its_outputs(tmp_path: Path, make_photo):
    """Issue 32: its 1:1 output (4 kB) fitted, its 4:1 one (15 kB) did not; the 1:1 file stayed, with
    no JSON line. A photo's outputs are all or nothing: every output present has its JSON line."""
    make_photo("p.png", (200, 50), kind="noise")
    make_photo("q.png", (40, 10), seed=1, kind="noise")
    argv = ["p.png", "q.png", "-o", "out", "-r", "1:1", "-r", "4:1", "-j", "1", "--format", "png", "--json", *RANDOM]
    proc = subprocess.run([sys.executable, "-m", "s2ccrop", *argv], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path, env=subprocess_env(tmp_path), preexec_fn=file_size_limit(8192))
    assert proc.returncode == 1, proc.stderr
    assert error_lines(proc.stderr) == ["s2ccrop: error: p.png: cannot write out/p_4x1.png: File too large"]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["output"] for r in records] == ["out/q_1x1.png", "out/q_4x1.png"]
    assert sorted(os.listdir(tmp_path / "out")) == ["q_1x1.png", "q_4x1.png"]


def test_a_full_tmpfs_is_an_error_never_a_truncated_output(tmp_path: Path, make_photo):
    """The report's own case, on a real nearly full file system (where this user may mount one)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("mounting a tmpfs needs privileges this user lacks; the RLIMIT_FSIZE test covers it")
    try:
        (mount / "fill").write_bytes(b"\0" * (192 * 1024))  # leaves 8 kB
        make_photo("p.jpg", (200, 150), kind="noise", quality=95)
        proc = subprocess.run([sys.executable, "-m", "s2ccrop", "p.jpg", "-o", str(mount / "full"), "-r", "1:1",
                               "-j", "1", *RANDOM], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                              env=subprocess_env(tmp_path))
        assert proc.returncode == 1 and proc.stdout == "", proc.stderr
        assert error_lines(proc.stderr) == [
            f"s2ccrop: error: p.jpg: cannot write {mount}/full/p_1x1.jpg: No space left on device"]
        assert os.listdir(mount / "full") == []
    finally:
        subprocess.run(["umount", str(mount)], check=False)


# ------------------------------------------------------------------ inputs are never written


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every regular file below root (hidden ones too), by relative path."""
    return {p.relative_to(root).as_posix(): digest(p) for p in sorted(root.rglob("*")) if p.is_file()}


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def here(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("argv", [
    ["a.jpg", "-r", "1:1", "--preview", "a.jpg"],
    ["a.jpg", "-r", "1:1", "--dry-run", "--preview", "a.jpg"],
    ["d", "-r", "1:1", "--dry-run", "--preview", "d/b.png"],  # an input met in the walk
    ["preview", "a.jpg", "-o", "a.jpg"],
    ["a.jpg", "-r", "1:1", "--preview", "other.png"],  # not an input, but not s2ccrop's either
])
def test_preview_never_replaces_a_photo(here: Path, make_photo, argv: list[str]):
    make_photo("a.jpg", (40, 30), kind="noise")
    make_photo("d/b.png", (40, 30), seed=1, kind="noise")
    make_photo("other.png", (40, 30), seed=2, kind="noise")
    before = hashes(here)
    code, out, err = run_in_process(*argv, "-j", "1", *RANDOM)
    assert (code, out) == (2, ""), err
    option = "-o" if argv[0] == "preview" else "--preview"
    assert err.startswith(f"s2ccrop: error: {option} {argv[-1]}: the file exists and s2ccrop did not write it")
    assert len(err.splitlines()) == 1
    assert hashes(here) == before  # nothing written, nothing replaced


def test_preview_pointing_at_a_folder_is_refused_before_any_crop(here: Path, make_photo):
    make_photo("a.jpg", (40, 30), kind="noise")
    (here / "sheets").mkdir()
    code, out, err = run_in_process("a.jpg", "-r", "1:1", "-o", "out", "--preview", "sheets", "-j", "1", *RANDOM)
    assert (code, out) == (2, "")
    assert err == ("s2ccrop: error: --preview sheets: is a folder; give the contact sheet's file name "
                   "(such as sheets/sheet.jpg)\n")
    assert not (here / "out").exists() and os.listdir(here / "sheets") == []


def test_an_earlier_contact_sheet_is_replaced_and_never_cropped(here: Path, make_photo):
    make_photo("trip/a.jpg", (40, 30), kind="noise")
    argv = ["trip", "-r", "1:1", "--dry-run", "--json", "--preview", "trip/sheet.jpg", "-j", "1", *RANDOM]
    assert run_in_process(*argv)[0] == 0
    first = digest(here / "trip" / "sheet.jpg")
    make_photo("trip/b.jpg", (40, 30), seed=1, kind="noise")
    code, out, err = run_in_process(*argv)
    assert code == 0, err
    assert [r["input"] for r in records(out)] == ["trip/a.jpg", "trip/b.jpg"]  # the sheet is not a photo
    assert digest(here / "trip" / "sheet.jpg") != first  # now with two tiles
    with Image.open(here / "trip" / "sheet.jpg") as im:
        assert im.size == (2 * 480 + 4, 498)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_output_named_like_another_input_fails_that_photo_only(here: Path, make_photo, jobs: str):
    make_photo("d/a.jpg", (40, 30), kind="noise")
    make_photo("d/a.png", (40, 30), seed=1, kind="noise")
    make_photo("c.png", (40, 30), seed=2, kind="noise")
    before = hashes(here)
    code, out, err = run_in_process("d", "c.png", "-r", "1:1", "--name", "{stem}.jpg", "--json", "-j", jobs, *RANDOM)
    assert code == 1
    assert error_lines(err) == [
        "s2ccrop: error: d/a.jpg: output d/a.jpg would overwrite the input; use -o or another --name",
        "s2ccrop: error: d/a.png: output d/a.jpg would overwrite an input of this run; use -o or another --name",
    ]
    assert [r["input"] for r in records(out)] == ["c.png"]
    check_complete(records(out)[0])
    assert {k: v for k, v in hashes(here).items() if k != "c.jpg"} == before


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_input_named_on_the_command_line_is_never_an_output(here: Path, make_photo, jobs: str):
    make_photo("a.jpg", (40, 30), kind="noise")
    make_photo("a_1x1.jpg", (40, 30), seed=1, kind="noise")  # a photo that happens to have an output's name
    before = hashes(here)
    code, out, err = run_in_process("a.jpg", "a_1x1.jpg", "-r", "1:1", "--json", "-j", jobs, *RANDOM)
    assert code == 1
    assert error_lines(err) == ["s2ccrop: error: a.jpg: output a_1x1.jpg would overwrite an input of this run; "
                                "use -o or another --name"]
    assert [r["output"] for r in records(out)] == ["a_1x1_1x1.jpg"]
    assert {k: v for k, v in hashes(here).items() if k != "a_1x1_1x1.jpg"} == before

    # Even when it is an earlier run's output (which a run may replace), an input of this run is not.
    (here / "a_1x1.jpg").unlink()
    (here / "a_1x1_1x1.jpg").unlink()
    assert run_in_process("a.jpg", "-r", "1:1", "-j", jobs, *RANDOM)[0] == 0
    ours = digest(here / "a_1x1.jpg")
    code, out, err = run_in_process("a_1x1.jpg", "a.jpg", "-r", "1:1", "--json", "-j", jobs, *RANDOM)
    assert code == 1 and len(error_lines(err)) == 1 and "would overwrite an input of this run" in err
    assert digest(here / "a_1x1.jpg") == ours


def test_a_photo_named_like_an_output_is_an_input_not_an_earlier_output(here: Path, make_photo):
    make_photo("d/a.jpg", (40, 30), kind="noise")
    make_photo("d/a_1x1.jpg", (40, 30), seed=1, kind="noise")
    before = hashes(here)
    code, out, err = run_in_process("d", "-r", "1:1", "--json", "-j", "1", *RANDOM)
    assert code == 1
    assert error_lines(err) == [
        "s2ccrop: error: d/a.jpg: output d/a_1x1.jpg exists and s2ccrop did not write it (a photo, or another "
        "program's file): it is left alone; use -o, another --name, or move it away"]
    assert [r["input"] for r in records(out)] == ["d/a_1x1.jpg"]
    assert {k: v for k, v in hashes(here).items() if k != "d/a_1x1_1x1.jpg"} == before


def test_a_rerun_in_place_replaces_its_own_outputs_and_does_not_crop_them(here: Path, make_photo):
    make_photo("d/a.jpg", (40, 30), kind="noise")
    argv = ["d", "-r", "1:1", "-r", "16:9", "--json", "-j", "1", *RANDOM]
    code, out, err = run_in_process(*argv)
    assert code == 0, err
    first = {r["output"]: os.stat(r["output"]).st_ino for r in records(out)}
    code, out, err = run_in_process(*argv)
    assert code == 0, err
    assert [(r["input"], r["output"]) for r in records(out)] == [("d/a.jpg", "d/a_1x1.jpg"), ("d/a.jpg", "d/a_16x9.jpg")]
    assert all(os.stat(p).st_ino != ino for p, ino in first.items())  # replaced (a new file renamed in)
    assert sorted(os.listdir("d")) == ["a.jpg", "a_16x9.jpg", "a_1x1.jpg"]


def test_a_folder_walk_never_crops_an_earlier_runs_outputs_whatever_their_ratio(here: Path, make_photo):
    make_photo("d/p.jpg", (40, 30), kind="noise")
    assert run_in_process("d", "-r", "16:9", "-j", "1", *RANDOM)[0] == 0
    code, out, err = run_in_process("d", "-r", "1:1", "--json", "-j", "1", *RANDOM)
    assert code == 0, err
    assert [(r["input"], r["output"]) for r in records(out)] == [("d/p.jpg", "d/p_1x1.jpg")]
    code, out, err = run_in_process("d", "-r", "4:3", "-o", "o", "--json", "-j", "1", *RANDOM)
    assert code == 0, err
    assert [(r["input"], r["output"]) for r in records(out)] == [("d/p.jpg", "o/p_4x3.jpg")]
    assert sorted(os.listdir("d")) == ["p.jpg", "p_16x9.jpg", "p_1x1.jpg"] and os.listdir("o") == ["p_4x3.jpg"]
    # Named on the command line, an earlier output is a photo like any other.
    code, out, err = run_in_process("d/p_16x9.jpg", "-r", "1:1", "--json", "-j", "1", *RANDOM)
    assert code == 0 and [r["output"] for r in records(out)] == ["d/p_16x9_1x1.jpg"], err


@pytest.mark.parametrize("order", ["photo first", "output first"])
def test_a_stdin_list_never_has_an_input_overwritten(here: Path, make_photo, order):
    """`x_1x1.jpg` (written by s2ccrop) listed on stdin with `x.jpg`: in either order it is an earlier
    output, passed over, and replaced by x.jpg's new crop; nothing else changes and the exit status is 0."""
    make_photo("x.jpg", (40, 30), kind="noise")
    assert run_in_process("x.jpg", "-r", "1:1", "-j", "1", *RANDOM)[0] == 0
    make_photo("y_1x1.jpg", (40, 30), seed=2, kind="noise")  # a photo named like an output: cropped
    names = ["x.jpg", "x_1x1.jpg", "y_1x1.jpg"] if order == "photo first" else ["x_1x1.jpg", "y_1x1.jpg", "x.jpg"]
    before = hashes(here)
    stdin = io.BytesIO("".join(n + "\n" for n in names).encode())
    code, out, err = run_in_process("-", "-r", "1:1", "--json", "-j", "1", *RANDOM, stdin=stdin)
    assert code == 0, err
    assert sorted((r["input"], r["output"]) for r in records(out)) == [("x.jpg", "x_1x1.jpg"),
                                                                       ("y_1x1.jpg", "y_1x1_1x1.jpg")]
    after = hashes(here)
    assert {k: v for k, v in after.items() if k not in ("x_1x1.jpg", "y_1x1_1x1.jpg")} == \
        {k: v for k, v in before.items() if k != "x_1x1.jpg"}
    # The same files as arguments: x_1x1.jpg is named, so it is an input and x.jpg may not replace it.
    code, out, err = run_in_process("x.jpg", "x_1x1.jpg", "-r", "1:1", "--json", "-j", "1", *RANDOM)
    assert code == 1 and error_lines(err) == [
        "s2ccrop: error: x.jpg: output x_1x1.jpg would overwrite an input of this run; use -o or another --name"]
    assert hashes(here)["x_1x1.jpg"] == after["x_1x1.jpg"]


def test_a_file_s2ccrop_did_not_write_is_never_replaced(here: Path, make_photo):
    make_photo("a.jpg", (40, 30), kind="noise")
    (here / "out").mkdir()
    (here / "out" / "a_1x1.jpg").write_bytes(b"someone else's file")
    code, out, err = run_in_process("a.jpg", "-r", "1:1", "-r", "16:9", "-o", "out", "-j", "1", *RANDOM)
    assert (code, out) == (1, "")
    assert error_lines(err) == [
        "s2ccrop: error: a.jpg: output out/a_1x1.jpg exists and s2ccrop did not write it (a photo, or another "
        "program's file): it is left alone; use -o, another --name, or move it away"]
    assert (here / "out" / "a_1x1.jpg").read_bytes() == b"someone else's file"
    # --skip-existing leaves it alone too, and does the rest.
    code, out, err = run_in_process("a.jpg", "-r", "1:1", "-r", "16:9", "-o", "out", "-j", "1", "--skip-existing",
                                    "--json", *RANDOM)
    assert code == 0, err
    assert [r["output"] for r in records(out)] == ["out/a_16x9.jpg"]
    assert (here / "out" / "a_1x1.jpg").read_bytes() == b"someone else's file"


def test_the_writer_itself_refuses_a_file_that_appeared_after_planning(tmp_path: Path):
    from s2ccrop.io.formats import OutputFormat
    from s2ccrop.io.writers import Occupied, write_crop, written_by_s2ccrop

    out = tmp_path / "a_1x1.png"
    image, other = photo_image((8, 8), kind="noise"), photo_image((8, 8), seed=1, kind="noise")
    write_crop(out, image, (0, 0, 8, 8), (8, 8), OutputFormat("PNG", "png"))
    assert written_by_s2ccrop(out)
    write_crop(out, other, (0, 0, 4, 4), (4, 4), OutputFormat("PNG", "png"))  # ours: replaced
    with Image.open(out) as im:
        assert im.size == (4, 4)
    image.save(out)  # now a photo
    with pytest.raises(Occupied):
        write_crop(out, image, (0, 0, 2, 2), (2, 2), OutputFormat("PNG", "png"))
    with Image.open(out) as im:
        assert im.size == (8, 8)
    assert sorted(os.listdir(tmp_path)) == ["a_1x1.png"]  # no temporary file left


def test_out_equal_to_the_input_folder_writes_beside_the_photos(here: Path, make_photo):
    make_photo("d/a.jpg", (40, 30), kind="noise")
    make_photo("d/sub/b.png", (40, 30), seed=1, kind="noise")
    argv = ["d", "-o", "d", "-r", "1:1", "--json", "-j", "1", *RANDOM]
    code, out, err = run_in_process(*argv)
    assert code == 0, err
    assert [(r["input"], r["output"]) for r in records(out)] == [("d/a.jpg", "d/a_1x1.jpg"),
                                                                 ("d/sub/b.png", "d/sub/b_1x1.png")]
    for r in records(out):
        check_complete(r)
    code, out, err = run_in_process(*argv)  # a re-run does not crop its own outputs
    assert code == 0 and [r["input"] for r in records(out)] == ["d/a.jpg", "d/sub/b.png"], err
    code, out, err = run_in_process("./d", "-o", "d/.", "-r", "1:1", "--json", "-j", "1", *RANDOM)
    assert code == 0 and len(records(out)) == 2, err


# The general guarantee: whatever --name, -o and --preview say, no file that was there before the run
# changes (none of them was written by s2ccrop), and every output reported as written is complete.
# Run twice: the second run may replace the first run's outputs, never anything else.
TEMPLATES = ["{stem}.{ext}", "{stem}.jpg", "{stem}_{ratio}.{ext}", "{stem}_{ratio}.jpg", "{ratio}/{stem}.png",
             "{stem}/../{stem}_1x1.jpg"]
OUTS = [None, "d", "d/sub", "."]
PREVIEWS = [None, "d/a.jpg", "d/a_1x1.jpg", "d/sub/new.jpg"]


@pytest.mark.parametrize("template", TEMPLATES)
def test_no_file_that_was_there_changes_whatever_the_options(here: Path, make_photo, monkeypatch, template: str):
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())  # the files are under test, not the model
    make_photo("d/a.jpg", (40, 30), kind="noise")
    make_photo("d/a.png", (40, 30), seed=1, kind="noise")
    make_photo("d/a_1x1.jpg", (40, 30), seed=2, kind="noise")
    make_photo("d/sub/a.webp", (40, 30), seed=3, kind="noise")
    make_photo("d/sub/c.jpg", (40, 30), seed=4, kind="noise")
    (here / "d" / "notes.txt").write_text("not a photo")
    (here / "d" / "1x1").mkdir()
    make_photo("d/1x1/a.png", (40, 30), seed=5, kind="noise")
    before = hashes(here)
    for out_dir in OUTS:
        for preview in PREVIEWS:
            argv = ["d", "d/a_1x1.jpg", "-r", "1:1", "--name", template, "--json", "-j", "1", *RANDOM]
            argv += ["-o", out_dir] if out_dir else []
            argv += ["--preview", preview] if preview else []
            for _ in range(2):
                code, out, err = run_in_process(*argv)
                assert code in (0, 1, 2) and "Traceback" not in err and "internal error" not in err, (argv, err)
                assert all(line.startswith("s2ccrop: ") for line in err.splitlines()), (argv, err)
                for r in records(out):
                    check_complete(r)
                now = hashes(here)
                assert {k: now.get(k) for k in before} == before, argv
                assert not [k for k in now if os.path.basename(k).startswith(".")], argv  # no temporary file


# ------------------------------------------------------------------ mistakes: one line, the right status


def test_an_empty_path_argument_is_a_usage_error_not_the_current_folder(here: Path, make_photo):
    make_photo("a.jpg", (40, 30), kind="noise")
    code, out, err = run_in_process("", "-r", "1:1", "-j", "1", *RANDOM)
    assert (code, out) == (2, "")
    assert err == ("s2ccrop: error: an empty PATH argument (an unset shell variable?): give a photo or a folder "
                   "(. for the current one)\n")
    assert os.listdir(here) == ["a.jpg"]


def test_a_name_that_leaves_the_output_folder_fails_that_photo_only(here: Path, make_photo):
    make_photo("d/a.jpg", (40, 30), kind="noise")
    make_photo("d/...jpg", (40, 30), seed=1, kind="noise", format="JPEG")  # its stem is "..": {stem}/ climbs out of -o
    code, out, err = run_in_process("d/a.jpg", "d/...jpg", "-r", "1:1", "--name", "{stem}/{ratio}.jpg", "-o", "o",
                                    "--json", "-j", "1", *RANDOM)
    assert code == 1
    assert error_lines(err) == ["s2ccrop: error: d/...jpg: --name template '{stem}/{ratio}.jpg' gives '../1x1.jpg', "
                                "which leaves the output folder"]
    assert [r["output"] for r in records(out)] == ["o/a/1x1.jpg"]
    assert sorted(p.relative_to(here).as_posix() for p in here.rglob("*") if p.is_file()) == [
        "d/...jpg", "d/a.jpg", "o/a/1x1.jpg"]


@pytest.mark.parametrize("template", ["{stem:d}_{ratio}.jpg", "{stem!z}_{ratio}.jpg", "{stem:>{ratio}}.jpg"])
def test_a_bad_format_spec_in_name_is_a_usage_error(here: Path, make_photo, template: str):
    make_photo("a.jpg", (40, 30), kind="noise")
    code, out, err = run_in_process("a.jpg", "--name", template, "-j", "1", *RANDOM)
    assert (code, out) == (2, "")
    assert err.startswith(f"s2ccrop: error: invalid --name template {template!r}: ") and len(err.splitlines()) == 1


def _our_checkpoint(path: Path, config: str) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(path), {"s2ccrop_config": config, "format": "s2ccrop-s2cnet-v1"})


@pytest.mark.parametrize("config", ['{"head": "crop", "bogus"', '{"no_such_field": 1}', '{"head": "nonsense"}', "[]"])
def test_weights_with_malformed_config_metadata_are_a_weights_error(here: Path, make_photo, config: str):
    make_photo("a.jpg", (40, 30), kind="noise")
    _our_checkpoint(here / "bad.safetensors", config)
    code, out, err = run_in_process("a.jpg", "--weights", "bad.safetensors", "-j", "1", "-o", "o")
    assert (code, out) == (2, "")
    assert err.startswith("s2ccrop: error: bad.safetensors: its s2ccrop_config metadata is not a model "
                          "configuration this s2ccrop reads (") and len(err.splitlines()) == 1
    assert not (here / "o").exists()
    code, out, err = run_in_process("weights", "import", "bad.safetensors", "--name", "bad")
    assert (code, out) == (2, "") and "its s2ccrop_config metadata is not a model configuration" in err


def test_weights_import_with_a_file_as_the_cache_is_one_line(here: Path, monkeypatch):
    import torch

    from s2ccrop.model import GAICV1, S2CNet
    from s2ccrop.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint(S2CNet(GAICV1), here / "mine.safetensors")
    (here / "cache").write_text("a file, not a folder")
    monkeypatch.setenv("S2CCROP_CACHE", str(here / "cache"))
    code, out, err = run_in_process("weights", "import", "mine.safetensors", "--name", "mine")
    assert (code, out) == (2, "")
    assert err == (f"s2ccrop: error: cannot use the weights cache {here / 'cache' / 'weights'}: not a directory "
                   "(it is below $S2CCROP_CACHE; set S2CCROP_CACHE to a folder you can write)\n")
    assert (here / "cache").read_text() == "a file, not a folder"


def test_a_contact_sheet_that_cannot_be_written_is_one_error_line(here: Path, make_photo):
    make_photo("a.jpg", (40, 30), kind="noise")
    (here / "notes.txt").write_text("a file where the sheet's folder should be")
    code, out, err = run_in_process("a.jpg", "-r", "1:1", "-o", "out", "--json", "--preview", "notes.txt/sheet.jpg",
                                    "-j", "1", *RANDOM)
    assert code == 1 and "Traceback" not in err
    assert error_lines(err) == ["s2ccrop: error: notes.txt/sheet.jpg: cannot write the contact sheet: Not a directory"]
    check_complete(records(out)[0])  # the crops were written; only the sheet failed
    assert (here / "notes.txt").read_text() == "a file where the sheet's folder should be"


# ------------------------------------------------------------------ library warnings


def jpeg_with_corrupt_exif(path: Path, tag: int, seed: int = 0) -> None:
    """A JPEG whose EXIF block declares `tag` with 100 bytes of data past the block's end: Pillow warns
    'Tag data larger than file. Skipping tag N' when it reads the orientation."""
    import struct

    entry = struct.pack("<HHII", tag, 2, 100, 4000)
    ifd = b"II*\x00" + struct.pack("<IH", 8, 1) + entry + struct.pack("<I", 0)
    photo_image((60, 40), seed=seed, kind="noise").save(path, exif=b"Exif\x00\x00" + ifd)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_library_warnings_are_one_line_per_photo_and_quiet_under_q(tmp_path: Path, jobs: str):
    jpeg_with_corrupt_exif(tmp_path / "a.jpg", 0x010F)
    jpeg_with_corrupt_exif(tmp_path / "b.jpg", 0x0110, seed=1)  # forked workers crop this one with -j 2
    argv = [sys.executable, "-m", "s2ccrop", "a.jpg", "b.jpg", "-r", "1:1", "-o", "out", "-j", jobs, *RANDOM]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path, env=subprocess_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        "s2ccrop: warning: a.jpg: Tag data larger than file. Skipping tag 271",
        "s2ccrop: warning: b.jpg: Tag data larger than file. Skipping tag 272",
    ]
    assert len(proc.stdout.splitlines()) == 2
    proc = subprocess.run([*argv, "-q"], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=subprocess_env(tmp_path))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


# ------------------------------------------------------------------ one sync per photo (issue 18)


def _writer(data: bytes):
    return lambda fh: fh.write(data)


def test_a_write_batch_puts_files_in_place_only_when_committed(tmp_path: Path, monkeypatch):
    from s2ccrop import interrupts
    from s2ccrop.io import writers

    synced, fsynced = [], []
    real_sync = writers._sync_files
    monkeypatch.setattr(writers, "_sync_files", lambda paths: synced.append(list(paths)) or real_sync(paths))
    real_fsync = os.fsync
    monkeypatch.setattr(writers.os, "fsync", lambda fd: fsynced.append(fd) or real_fsync(fd))
    names = [tmp_path / "out" / f"{i}.bin" for i in range(4)]
    with writers.WriteBatch() as batch:
        for i, name in enumerate(names):
            writers.atomic_write(name, _writer(bytes([i]) * 1000), batch=batch)
        assert not any(n.exists() for n in names)  # staged: nothing in place yet
        temps = sorted(p for p in (tmp_path / "out").iterdir())
        assert len(temps) == 4 and all(p.name.endswith(".tmp") for p in temps)
        assert {os.fspath(p) for p in temps} <= set(interrupts._temp_files)  # a stop signal would delete them
        assert batch.commit() == names
    assert [n.read_bytes() for n in names] == [bytes([i]) * 1000 for i in range(4)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i}.bin" for i in range(4)]  # no temp file
    assert len(synced) == 1 and len(synced[0]) == 4  # the four files made durable together
    if writers._syncfs() is not None:
        assert len(fsynced) == 1  # no fsync per file: only the folder's, after the renames
    assert not any(n.endswith(".tmp") for n in interrupts._temp_files)


def test_a_write_batch_is_all_or_nothing_and_leaves_no_temporary_file(tmp_path: Path, monkeypatch):
    from s2ccrop.io import writers

    names = [tmp_path / f"{i}.bin" for i in range(3)]
    names[1].write_bytes(b"someone else's")
    with writers.WriteBatch() as batch:  # a file it may not replace: checked before any rename
        for name in names:
            writers.atomic_write(name, _writer(b"new"), batch=batch, may_replace=lambda p: False)
        with pytest.raises(writers.Occupied):
            batch.commit()
        assert batch.committed == [] and batch.failed == names[1]
    assert names[1].read_bytes() == b"someone else's" and not names[0].exists() and not names[2].exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1.bin"]
    # A rename that fails (the disk, the folder removed): the ones before it are taken back.
    names[1].unlink()
    real_replace = os.replace
    monkeypatch.setattr(writers.os, "replace", lambda a, b: (_ for _ in ()).throw(OSError(5, "I/O error"))
                        if b == names[2] else real_replace(a, b))
    with writers.WriteBatch() as batch:
        for name in names:
            writers.atomic_write(name, _writer(b"new"), batch=batch)
        with pytest.raises(OSError):
            batch.commit()
        assert batch.committed == [] and batch.failed == names[2]
    assert list(tmp_path.iterdir()) == []


def test_a_cancelled_or_abandoned_write_batch_writes_nothing(tmp_path: Path):
    import threading

    from s2ccrop.io import writers

    cancel = threading.Event()
    with writers.WriteBatch() as batch:
        writers.atomic_write(tmp_path / "a.bin", _writer(b"a"), batch=batch, cancel=cancel)
        cancel.set()
        with pytest.raises(writers.Cancelled):
            batch.commit()
    with writers.WriteBatch() as batch:  # left without a commit (an exception, a signal)
        writers.atomic_write(tmp_path / "b.bin", _writer(b"b"), batch=batch)
    assert list(tmp_path.iterdir()) == []


def test_the_cli_syncs_once_per_photo(here: Path, make_photo, monkeypatch):
    from s2ccrop.io import writers

    synced = []
    real_sync = writers._sync_files
    monkeypatch.setattr(writers, "_sync_files", lambda paths: synced.append(len(paths)) or real_sync(paths))
    make_photo("a.jpg", (40, 30), kind="noise")
    make_photo("b.jpg", (40, 30), seed=1, kind="noise")
    code, out, err = run_in_process("a.jpg", "b.jpg", "-o", "o", "-r", "1:1", "-r", "16:9", "-r", "any", "--json",
                                    "-j", "1", *RANDOM)
    assert code == 0, err
    assert synced == [3, 3]
    for record in records(out):
        check_complete(record)


def test_a_journal_lists_the_live_temporary_files_for_whoever_cleans_up(tmp_path: Path, monkeypatch):
    """A Ray write step may be killed outright when s2ccrop stops its local instance: it lists its
    temporary files in a journal, and s2ccrop deletes those left after the shutdown."""
    from s2ccrop import interrupts

    monkeypatch.setattr(interrupts, "_journal", [])
    journals = tmp_path / "journal"
    journals.mkdir()
    interrupts.journal_temp_files(journals / "123")
    left, done = tmp_path / ".a.jpg.0123abcd.tmp", tmp_path / ".b.jpg.0123abcd.tmp"
    with interrupts.temp_file(done):
        done.write_bytes(b"x")  # renamed into place, say: kept
    killed = interrupts.temp_file(left)  # its process is killed in the middle of the block
    killed.__enter__()
    left.write_bytes(b"y")
    assert (journals / "123").read_text().splitlines() == [str(left)]
    keep = tmp_path / "photo.jpg"  # a journal names only temporary files: nothing else is deleted
    keep.write_bytes(b"z")
    (journals / "999").write_text(f"{keep}\n{left}\n")
    assert interrupts.remove_journaled(journals) == 1  # listed in both journals, deleted once
    assert not left.exists() and done.exists() and keep.exists()
    killed.__exit__(None, None, None)
    assert (journals / "123").read_text() == ""


def test_the_summary_counts_earlier_outputs_and_hints_on_one_say_why(here: Path, make_photo):
    """On a terminal the summary line counts the earlier outputs passed over (it raised KeyError when
    there were any); a --hints line for one of them says it is an earlier output, not a missing photo."""
    import io as _io

    from s2ccrop import cli
    from s2ccrop.report import Env

    make_photo("d/p.jpg", (40, 30), kind="noise")
    assert run_in_process("d", "-r", "16:9", "-j", "1", *RANDOM)[0] == 0
    Path("h.jsonl").write_text('{"input": "d/p_16x9.jpg", "focus": [0.5, 0.5]}\n')
    out, err = _io.StringIO(), _io.StringIO()
    code = cli.main(["d", "-r", "1:1", "--hints", "h.jsonl", "-j", "1", *RANDOM], Env(_io.BytesIO(b""), out, err, True))
    lines = [line.strip() for line in err.getvalue().replace("\r", "\n").splitlines() if "s2ccrop:" in line]
    assert code == 1, err.getvalue()
    assert "s2ccrop: error: d/p_16x9.jpg: has hints (--hints h.jsonl:1) but is an output of an earlier s2ccrop " \
           "run, not cropped again; name it on the command line to crop it" in lines
    assert any(line.startswith("s2ccrop: 1 photos, 1 crops written, 1 failed, 0 skipped, 1 earlier outputs passed "
                               "over in ") for line in lines), lines

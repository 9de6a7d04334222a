"""The batch engine from Python: keyword `Settings` (checked when built) and `BatchRun`'s public steps,
the ones the process and Ray engines call. The model is FastCropper (the pipeline is under test)."""

from __future__ import annotations

import dataclasses
import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from s2ccrop import batch
from s2ccrop.batch import BatchRun, Env, Job, Settings
from s2ccrop.errors import ConfigError

try:
    from ._cli_helpers import FastCropper
except ImportError:
    from _cli_helpers import FastCropper


@pytest.fixture
def photos(tmp_path: Path, make_photo, monkeypatch) -> Path:
    """tmp_path (the working folder) with in/a.png (32x24), in/sub/b.jpg (20x30) and in/bad.png."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batch, "make_cropper", lambda *a, **k: FastCropper())
    make_photo("in/a.png", (32, 24), kind="noise")
    make_photo("in/sub/b.jpg", (20, 30), seed=1, kind="noise")
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    return tmp_path


def streams() -> Env:
    return Env(io.BytesIO(), io.StringIO(), io.StringIO(), False)


# ------------------------------------------------------------------ Settings


def test_settings_resolve_their_keywords():
    s = Settings("photo.jpg", ratios=["phone", "16:9"], output="~/thumbs", width=1080, quality=80, max_pixels=0)
    assert s.paths == ["photo.jpg"]
    assert [(r.ratio, r.label, r.slug) for r in s.requests] == [("9:16", "phone", "9x16"), ("16:9", "16:9", "16x9")]
    assert s.out_dir == Path("~/thumbs").expanduser() and (s.size_spec.width, s.size_spec.height) == (1080, None)
    assert s.pixel_limit is None  # 0: no limit
    assert Settings(["x.jpg"]).pixel_limit == 150_000_000 and [r.ratio for r in Settings(["x.jpg"]).requests] == [
        "any", "1:1", "4:5", "16:9", "9:16"]
    sized = Settings(["x.jpg"], size="1200x628")
    assert [r.ratio for r in sized.requests] == ["300:157"] and sized.size_spec.height == 628
    preview = Settings(["x.jpg"], preview="sheet.jpg", preview_only=True)
    assert preview.dry_run and preview.preview_path == Path("sheet.jpg")


@pytest.mark.parametrize("options, message", [
    ({"paths": []}, "no input"),
    ({"ratios": ["0:9"]}, "invalid ratio"),
    ({"ratios": ["sixteen"]}, "preset name"),
    ({"size": "big"}, "invalid size"),
    ({"size": "100x100", "ratios": ["16:9"]}, "does not have the ratio 16:9"),
    ({"width": 10, "size": "10x10"}, "not allowed with"),
    ({"name": "{stem}_{bad}.jpg"}, "unknown field"),
    ({"format": "gif"}, "invalid choice"),
    ({"quality": 101}, "must be between 1 and 100"),
    ({"workers": -1}, "must not be negative"),
    ({"jobs": 0}, "must be between 1 and 256"),
    ({"preview_only": True}, "needs a preview file"),
])
def test_settings_refuse_bad_options(options, message):
    options = {"paths": ["x.jpg"], **options}
    with pytest.raises(ConfigError, match=message):
        Settings(options.pop("paths"), **options)


def test_replace_checks_again():
    s = Settings(["x.jpg"], ratios=["1:1"])
    assert dataclasses.replace(s, device="cpu").device == "cpu"
    with pytest.raises(ConfigError, match="between 1 and 100"):
        dataclasses.replace(s, quality=0)


# ------------------------------------------------------------------ a whole run


def test_execute_from_python(photos: Path):
    env = streams()
    run = BatchRun(Settings(["in"], ratios=["1:1", "any"], output="out", json=True), env)
    assert run.execute() == batch.EXIT_FAILED  # bad.png
    records = [json.loads(line) for line in env.stdout.getvalue().splitlines()]
    assert [(r["input"], r["ratio"], r["output"]) for r in records] == [
        ("in/a.png", "1:1", "out/a_1x1.png"), ("in/a.png", "any", "out/a_any.png"),
        ("in/sub/b.jpg", "1:1", "out/sub/b_1x1.jpg"), ("in/sub/b.jpg", "any", "out/sub/b_any.jpg")]
    assert env.stderr.getvalue() == "s2ccrop: error: in/bad.png: not an image file (or a format Pillow cannot read)\n"
    assert run.counts == {"photos": 3, "written": 4, "failed": 1, "skipped": 0, "earlier_outputs": 0}
    assert Image.open("out/sub/b_any.jpg").size == (20, 30)  # FastCropper's whole-image crop


def test_the_public_steps_one_by_one(photos: Path):
    """What an engine does with a job: plan here, decode / score / write anywhere, finish here."""
    env = streams()
    run = BatchRun(Settings(["in"], ratios=["16:9"], output="out", height=9, upscale=True), env)
    jobs = list(run.plan())
    assert [(j.item.rel.as_posix(), [t.output.as_posix() for t in j.targets]) for j in jobs] == [
        ("a.png", ["out/a_16x9.png"]), ("bad.png", ["out/bad_16x9.png"]), ("sub/b.jpg", ["out/sub/b_16x9.jpg"])]
    good, bad, _ = jobs
    assert run.decode(good).decoded.size == (32, 24) and good.image_size == (32, 24)
    assert run.decode(bad).error.startswith("not an image file")
    assert run.score(bad) is bad and bad.crops == []  # a failed job passes through untouched
    run.score(good)
    assert [c.ratio for c in good.crops] == ["16:9"] and run.cropper is not None
    run.write(good)
    assert good.written == [Path("out/a_16x9.png")] and good.decoded is None  # the pixels are freed
    assert Image.open("out/a_16x9.png").size == (16, 9)
    run.finish(good)
    run.finish(bad)
    assert run.counts == {"photos": 2, "written": 1, "failed": 1, "skipped": 0, "earlier_outputs": 0}
    assert env.stdout.getvalue().startswith("in/a.png  16:9  0,0,32,24  0.000  -> out/a_16x9.png")


def test_every_job_attribute_is_a_declared_field(photos: Path):
    finished: list[Job] = []

    class Keeping(BatchRun):
        def finish(self, job: Job) -> None:
            finished.append(job)
            super().finish(job)

    Keeping(Settings(["in"], ratios=["1:1"], output="out", preview="sheet.jpg", workers=0), streams()).execute()
    assert len(finished) == 3
    for job in finished:
        assert set(vars(job)) == {f.name for f in dataclasses.fields(Job)}


def test_skip_existing_plans_only_what_is_missing(photos: Path):
    assert BatchRun(Settings(["in"], ratios=["1:1"], output="out"), streams()).execute() == 1
    os.remove("out/a_1x1.png")
    run = BatchRun(Settings(["in"], ratios=["1:1"], output="out", skip_existing=True), streams())
    assert [j.item.rel.as_posix() for j in run.plan()] == ["a.png", "bad.png"]
    assert run.counts["skipped"] == 1


def test_cancel_stops_decoding(photos: Path):
    run = BatchRun(Settings(["in/a.png"]), streams())
    (job,) = run.plan()
    run.cancel()
    assert run.decode(job).decoded is None and job.error is None

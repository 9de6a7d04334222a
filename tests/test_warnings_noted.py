"""Warnings noted per thread (`s2ccrop._warnings`): a photo's library warnings stay that photo's while
other threads note, silence or load the model at the same time, and none reaches stderr bare."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import pytest

from _cli_helpers import FastCropper, run_in_process
from s2ccrop._warnings import noted
from test_file_safety import jpeg_with_corrupt_exif


@pytest.fixture
def every_warning_shown():
    """Repeated warnings shown each time (the test's, not the library's choice), Python's hook after."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield


def test_each_thread_notes_its_own_warnings(every_warning_shown, capsys):
    rounds, start = 200, threading.Barrier(3)
    notes: dict[str, list[str]] = {"a": [], "b": []}

    def photo(name: str) -> None:
        start.wait()
        for i in range(rounds):
            with noted(notes[name]):
                warnings.warn(f"{name} {i}", UserWarning)

    threads = [threading.Thread(target=photo, args=(n,)) for n in notes]
    for t in threads:
        t.start()
    start.wait()
    loading: list[str] = []
    for i in range(rounds):  # meanwhile here: blocks that note and silence, as the model's loading has
        with noted(loading, UserWarning), noted([], RuntimeWarning):
            warnings.warn(f"load {i}", UserWarning)
            warnings.warn(f"quiet {i}", RuntimeWarning)
    for t in threads:
        t.join()
    assert notes == {n: [f"{n} {i}" for i in range(rounds)] for n in notes}
    assert loading == [f"load {i}" for i in range(rounds)]
    assert capsys.readouterr().err == ""


def test_a_warning_goes_to_the_innermost_block_of_its_category(every_warning_shown, capsys):
    outer: list[str] = []
    inner: list[str] = []
    with noted(outer, UserWarning):
        with noted(inner, RuntimeWarning):
            warnings.warn("runtime", RuntimeWarning)
            warnings.warn("user", UserWarning)
            warnings.warn("future", FutureWarning)  # taken by no block: dropped
        warnings.warn("after", UserWarning)
    assert (inner, outer) == (["runtime"], ["user", "after"])
    assert capsys.readouterr().err == ""
    with pytest.warns(UserWarning, match="outside"):  # in no block: shown as usual
        warnings.warn("outside", UserWarning)


def test_a_photos_warning_while_the_model_loads_is_its_own_line(tmp_path: Path, monkeypatch):
    """A decode thread is reading b.jpg, its warnings noted, when the model starts loading on the main
    thread; b.jpg's warning comes while the model loads. It is b's line: while the loader caught
    warnings process-wide, it went into the loader's list and came out without the photo's name."""
    import s2ccrop.api
    import s2ccrop.io.images

    jpeg_with_corrupt_exif(tmp_path / "a.jpg", 0x010F)
    jpeg_with_corrupt_exif(tmp_path / "b.jpg", 0x0110, seed=1)
    loading, b_decoded = threading.Event(), threading.Event()
    real_open = s2ccrop.io.images.open_image

    def open_image(path, **kwargs):
        if Path(path).name != "b.jpg":
            return real_open(path, **kwargs)
        assert loading.wait(30), "the model did not start loading"
        try:
            return real_open(path, **kwargs)  # warns: a damaged EXIF block
        finally:
            b_decoded.set()

    def loading_cropper(*args, **kwargs):
        loading.set()
        warnings.warn("a note from the model's loading", UserWarning)
        assert b_decoded.wait(30), "b.jpg was not decoded while the model loaded"
        return FastCropper()

    monkeypatch.setattr(s2ccrop.io.images, "open_image", open_image)
    monkeypatch.setattr(s2ccrop.api, "Cropper", loading_cropper)
    code, out, err = run_in_process(tmp_path / "a.jpg", tmp_path / "b.jpg", "-r", "1:1", "-o", tmp_path / "out",
                                    "-j", "1", "--workers", "2")
    assert code == 0, err
    assert sorted(err.splitlines()) == sorted([
        "s2ccrop: warning: a note from the model's loading",
        f"s2ccrop: warning: {tmp_path / 'a.jpg'}: Tag data larger than file. Skipping tag 271",
        f"s2ccrop: warning: {tmp_path / 'b.jpg'}: Tag data larger than file. Skipping tag 272",
    ])

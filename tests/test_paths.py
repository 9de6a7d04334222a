"""Input discovery, stdin path lists, output names, ratio presets (no model, no images decoded)."""

from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath

import pytest

from s2ccrop.errors import ConfigError
from s2ccrop.io.paths import (
    InputPath,
    WalkError,
    check_distinct,
    check_template,
    iter_inputs,
    output_path,
    read_path_list,
    render_name,
)
from s2ccrop.presets import DEFAULT_RATIOS, GROUPS, PRESETS, resolve_ratios


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for rel in ["b.jpg", "a.PNG", "notes.txt", ".hidden.jpg", "._a.jpg", "2023/x.webp", "2023/deep/y.tif",
                ".thumbs/t.jpg", "folder.jpg/inside.jpg"]:
        touch(root / rel)
    return root


def rels(items) -> list[str]:
    return [str(i.rel) for i in items]


def test_walk_is_sorted_recursive_and_skips_hidden_and_non_images(tree: Path):
    items = list(iter_inputs([str(tree)]))
    assert all(isinstance(i, InputPath) for i in items)
    assert rels(items) == ["a.PNG", "b.jpg", "2023/x.webp", "2023/deep/y.tif", "folder.jpg/inside.jpg"]
    assert items[2].path == tree / "2023" / "x.webp"


def test_no_recursive_stays_in_the_folder(tree: Path):
    assert rels(iter_inputs([str(tree)], recursive=False)) == ["a.PNG", "b.jpg"]


def test_explicit_file_is_always_tried_and_missing_path_is_an_error(tree: Path):
    items = list(iter_inputs([str(tree / "notes.txt"), str(tree / "nope.jpg")]))
    assert items[0] == InputPath(tree / "notes.txt", PurePosixPath("notes.txt"), named=True)
    assert isinstance(items[1], WalkError) and items[1].reason == "no such file or directory"


def test_symlinked_folders_are_not_followed_but_broken_links_are_reported_later(tmp_path: Path):
    root = tmp_path / "r"
    touch(root / "sub" / "p.jpg")
    os.symlink(root, root / "sub" / "loop")  # a loop back to the top
    os.symlink(root / "missing.jpg", root / "dangling.jpg")
    os.symlink("self.jpg", root / "self.jpg")  # a symlink loop named like an image
    assert rels(iter_inputs([str(root)])) == ["dangling.jpg", "self.jpg", "sub/p.jpg"]


def test_excluded_dirs_are_not_entered(tree: Path):
    items = iter_inputs([str(tree)], exclude_dirs=[tree / "2023"])
    assert rels(items) == ["a.PNG", "b.jpg", "folder.jpg/inside.jpg"]


def test_only_command_line_files_are_named(tree: Path):
    stdin = io.BytesIO(f"{tree / 'b.jpg'}\n".encode())
    items = [i for i in iter_inputs([str(tree / "a.PNG"), str(tree / "2023"), "-"], stdin=stdin)
             if isinstance(i, InputPath)]
    assert [(i.rel.as_posix(), i.named) for i in items] == [("a.PNG", True), ("x.webp", False), ("deep/y.tif", False), ("b.jpg", False)]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_folder_is_one_error_and_the_walk_goes_on(tree: Path):
    (tree / "2023").chmod(0)
    try:
        items = list(iter_inputs([str(tree)]))
    finally:
        (tree / "2023").chmod(0o755)
    errors = [i for i in items if isinstance(i, WalkError)]
    assert [e.path for e in errors] == [tree / "2023"]
    assert "folder.jpg/inside.jpg" in rels(i for i in items if isinstance(i, InputPath))


def test_stdin_newline_list_streams_and_strips_crlf():
    stream = io.BytesIO(b"a.jpg\r\n\nsub dir/b c.jpg\n")
    assert list(read_path_list(stream)) == ["a.jpg", "sub dir/b c.jpg"]


def test_stdin_nul_list_keeps_newlines_in_names_across_chunks():
    data = b"one.jpg\0two\nlines.jpg\0\0caf\xc3\xa9.jpg"
    assert list(read_path_list(io.BytesIO(data), null=True, chunk=3)) == ["one.jpg", "two\nlines.jpg", "café.jpg"]


def test_stdin_undecodable_bytes_round_trip_to_the_same_file_name():
    (name,) = read_path_list(io.BytesIO(b"\xff\xfe.jpg\n"))
    assert os.fsencode(name) == b"\xff\xfe.jpg"


def test_dash_splices_stdin_in_order_and_reads_it_once(tmp_path: Path):
    a, b, c = (touch(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg"))
    stdin = io.BytesIO(f"{b}\n".encode())
    items = list(iter_inputs([str(a), "-", str(c), "-"], stdin=stdin))
    assert [i.path for i in items] == [a, b, c]


def test_output_path_mirrors_the_tree_or_stays_beside_the_input(tmp_path: Path):
    item = InputPath(tmp_path / "in" / "2023" / "x.jpg", PurePosixPath("2023/x.jpg"))
    assert output_path(item, tmp_path / "out", "x_16x9.jpg") == tmp_path / "out" / "2023" / "x_16x9.jpg"
    assert output_path(item, None, "x_16x9.jpg") == tmp_path / "in" / "2023" / "x_16x9.jpg"


def test_templates():
    assert render_name("{stem}_{ratio}.{ext}", stem="p", ratio="1.91x1", preset="og", ext="jpg") == "p_1.91x1.jpg"
    assert render_name("{preset}/{stem}.{ext}", stem="p", ratio="9x16", preset="phone", ext="png") == "phone/p.png"
    check_template("{ratio}/{stem}.{ext}")
    for bad in ("{stem}_{nope}.jpg", "{ratio}.jpg", "../{stem}.{ext}", "/{stem}.jpg", "{stem", "{}{stem}"):
        with pytest.raises(ConfigError):
            check_template(bad)
    with pytest.raises(ConfigError, match="same file name"):
        check_distinct("{stem}.{ext}", [("16x9", "desktop"), ("1x1", "square")])
    check_distinct("{stem}_{preset}.{ext}", [("16x9", "desktop"), ("1x1", "square")])


def test_presets_groups_and_default_set():
    assert [r.ratio for r in resolve_ratios(None)] == list(DEFAULT_RATIOS) == ["any", "1:1", "4:5", "16:9", "9:16"]
    reqs = resolve_ratios(["phone", "story", "16:9", "desktop", "1.91:1", "OG", "4x5", "any"])
    assert [(r.ratio, r.label, r.slug) for r in reqs] == [
        ("9:16", "phone", "9x16"), ("16:9", "16:9", "16x9"), ("1.91:1", "1.91:1", "1.91x1"),
        ("4:5", "4:5", "4x5"), ("any", "any", "any"),
    ]
    assert [r.ratio for r in resolve_ratios(["devices"])] == ["9:16", "3:4", "4:3", "16:10", "16:9", "21:9"]
    assert set(GROUPS["social"]) <= set(PRESETS)
    with pytest.raises(ConfigError, match="preset"):
        resolve_ratios(["widescreenish"])

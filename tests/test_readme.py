"""The README's quick start is what CI runs, line for line."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "README quick start has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_three_commands():
    cmds = quick_start_commands()
    assert len(cmds) == 3
    assert "pip install" in cmds[0] and "s2ccrop " in cmds[1] and "pytest" in cmds[2]


def test_ci_runs_the_quick_start_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for cmd in quick_start_commands():
        assert cmd in ci, f"CI does not run the README command: {cmd}"


def test_sample_photo_is_present():
    assert (ROOT / "examples" / "chelsea.png").is_file()


def test_hints_picture_is_small_and_made_by_the_command_shown():
    text = (ROOT / "README.md").read_text()
    section = text.split("### Hints and fitting", 1)[1].split("\n### ", 1)[0]
    assert "](docs/hints-and-fit.jpg)" in section
    command = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    assert command.startswith("s2ccrop preview ") and "-o docs/hints-and-fit.jpg" in command
    assert "--hints examples/hints.jsonl" in command and "--fit auto" in command
    picture = ROOT / "docs" / "hints-and-fit.jpg"
    assert picture.read_bytes()[:3] == b"\xff\xd8\xff" and picture.stat().st_size < 400_000

"""The repository's own documents: every "SPEC §N" that code, tests or benchmarks cite is a section of
docs/SPEC.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITE = re.compile(r"SPEC §(\d+(?:\.\d+)?)(?:\s*[–-]\s*(\d+(?:\.\d+)?))?")


def spec_sections() -> set[str]:
    text = (ROOT / "docs" / "SPEC.md").read_text(encoding="utf-8")
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.M))


def citations() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for folder in ("s2ccrop", "tests", "bench", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".md") or path.name == "SPEC.md":
                continue
            for match in CITE.finditer(path.read_text(encoding="utf-8")):
                for number in filter(None, match.groups()):
                    found.setdefault(number, set()).add(str(path.relative_to(ROOT)))
    return found


def test_spec_has_the_numbered_sections():
    assert {"1", "2", "2.1", "2.4", "2.8", "3", "4", "5"} <= spec_sections()


def test_every_spec_citation_resolves():
    cited = citations()
    assert {"1", "2", "3", "4"} <= set(cited)  # the scan finds the code's citations
    missing = {n: sorted(where) for n, where in cited.items() if n not in spec_sections()}
    assert missing == {}

"""The package's import graph: no cycles, and nothing but `python -m s2ccrop` imports the command line.

The engines drive the batch engine (`s2ccrop.batch`) through its public steps; the command line sits on
top of both. A static pass over every module's imports (those inside functions too) keeps it so.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "s2ccrop"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the s2ccrop modules it imports anywhere in its code (lazy imports included)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:  # `from . import weights` names a module; `from .x import f` does not
                    full = f"{target}.{alias.name}"
                    found.add(full if full in modules else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_known_edges():
    graph = import_graph()
    assert "s2ccrop.batch" in graph["s2ccrop.engines.processes"]
    assert "s2ccrop.engines.processes" in graph["s2ccrop.engines"]  # a lazy import, inside local_run
    assert "s2ccrop.cli" in graph["s2ccrop.__main__"]
    assert "s2ccrop.weights" in graph["s2ccrop.info"]  # `from . import weights as reg`


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_main_imports_the_command_line():
    importers = {m for m, deps in import_graph().items() if any(d == "s2ccrop.cli" or d.startswith("s2ccrop.cli.") for d in deps)}
    assert {m for m in importers if not m.startswith("s2ccrop.cli")} == {"s2ccrop.__main__"}


def test_the_engines_load_without_the_command_line_typer_or_torch():
    code = ("import sys; import s2ccrop.batch, s2ccrop.engines, s2ccrop.engines.processes, s2ccrop.engines.ray_engine, "
            "s2ccrop.info; print(sorted(m for m in ('s2ccrop.cli', 'typer', 'torch', 'ray', 'PIL') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]"]


def test_environment_variables_have_one_home_and_one_table():
    """Only `s2ccrop/envvars.py` names an S2CCROP_ variable in code (messages may mention one through
    its constant), and docs/ARCHITECTURE.md's *Environment* table lists exactly the variables it reads."""
    import re

    from s2ccrop import envvars

    for path in PACKAGE.rglob("*.py"):
        if path.name == "envvars.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not re.fullmatch(r"S2CCROP_[A-Z0-9_]+", node.value), f"{path}: {node.value} belongs in envvars.py"
    documented = set(re.findall(r"^\| `(S2CCROP_[A-Z0-9_]+)", _environment_section(), re.M))
    assert documented == set(envvars.VARIABLES)


def _environment_section() -> str:
    """docs/ARCHITECTURE.md's *Environment* section, up to the next one."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    return text.split("## Environment", 1)[1].split("\n## ", 1)[0]


def test_other_libraries_variables_read_in_code_are_named_in_the_environment_section():
    """A variable of another library that s2ccrop's code reads by name (RAY_ADDRESS, PILLOW_BLOCKS_MAX)
    is named in docs/ARCHITECTURE.md's *Environment* section, as envvars.py's docstring says."""
    import re

    section = _environment_section()
    reads = re.compile(r'os\.(?:environ\.get|getenv)\(\s*"([A-Z][A-Z0-9_]*)"|os\.environ\[\s*"([A-Z][A-Z0-9_]*)"\s*\]'
                       r'|"([A-Z][A-Z0-9_]*)"\s+(?:not\s+)?in\s+os\.environ')
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for groups in reads.findall(path.read_text(encoding="utf-8")):
            found.setdefault(next(g for g in groups if g), path.relative_to(ROOT))
    assert {"RAY_ADDRESS", "PILLOW_BLOCKS_MAX"} <= set(found)  # the pattern still sees how the code reads them
    missing = {name: str(where) for name, where in found.items() if f"`{name}`" not in section}
    assert not missing, f"read in code but not named in ARCHITECTURE.md's Environment section: {missing}"

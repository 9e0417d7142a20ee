"""The package's import structure: no import cycle in ``src/lossbench``; training and report meet
only in ``lossbench.records`` (numpy); the report runs where MMDetection cannot be imported.

The import graph is read here from the source with :mod:`ast`, independently of the package's
own code: every ``import`` / ``from ... import`` statement, at top level or inside a function,
that names a module of ``lossbench``.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
PACKAGE = SRC / "lossbench"


def _module_files() -> dict[str, Path]:
    """module name -> its file, for every ``.py`` under ``src/lossbench`` (packages by their
    ``__init__.py``)."""
    out = {}
    for f in sorted(PACKAGE.rglob("*.py")):
        parts = f.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module of ``lossbench`` that importing ``name`` means (its longest known prefix)."""
    parts = name.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ``lossbench`` it names in an import statement anywhere in its source.
    ``from a.b import c`` is an edge to ``a.b.c`` where that is a module, else to ``a.b``;
    relative imports are resolved against the importing module."""
    modules = _module_files()
    graph: dict[str, set[str]] = {}
    for mod, f in modules.items():
        is_pkg = f.name == "__init__.py"
        edges = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), filename=str(f))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                    base = ".".join(base_parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                r = _resolve(t, modules)
                if r is not None:
                    edges.add(r)
        graph[mod] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component that has one (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for comp in components:  # a path from the component's first module back to it, within it
        members, start = set(comp), comp[0]
        paths = {start: [start]}
        todo = [start]
        found = None
        while todo and found is None:
            v = todo.pop(0)
            for w in sorted(graph[v] & members):
                if w == start:
                    found = paths[v] + [start]
                    break
                if w not in paths:
                    paths[w] = paths[v] + [w]
                    todo.append(w)
        cycles.append(found)
    return cycles


def reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module that importing ``start`` may run: its imports, transitively, and the
    ``__init__`` of every package on the way."""
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        if v in seen:
            continue
        seen.add(v)
        parts = v.split(".")
        todo += [".".join(parts[:n]) for n in range(1, len(parts)) if ".".join(parts[:n]) in graph]
        todo += graph.get(v, ())
    return seen


def test_the_scan_sees_the_package():
    """The scan is not vacuous: it finds the modules and edges that are known to exist."""
    graph = import_graph()
    assert {"lossbench.records", "lossbench.report.collect", "lossbench.training.evaluation",
            "lossbench.models.losses"} <= set(graph)
    assert "lossbench.records" in graph["lossbench.training.evaluation"]
    assert "lossbench.records" in graph["lossbench.report.collect"]  # a function-level import
    assert "lossbench.models.losses.functional" in graph["lossbench.models.losses"]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"a"}, "b": set()}) == [["a", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles in src/lossbench:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_training_and_report_meet_only_in_the_records_module():
    """models and training -> records <- report: records imports nothing of the package, the
    report never reaches training code (nor MMDetection's registry), and training never reaches
    the report."""
    graph = import_graph()
    assert graph["lossbench.records"] == set()
    assert "lossbench.records" in reach(graph, "lossbench.models.registry")
    report = [m for m in graph if m.startswith("lossbench.report.") or m == "lossbench.stages.report"]
    for m in report:
        bad = sorted(x for x in reach(graph, m) if x.startswith(("lossbench.training", "lossbench.models.registry",
                                                                   "lossbench.models.heads",
                                                                   "lossbench.models.losses.modules")))
        assert not bad, f"{m} reaches training / MMDetection code: {bad}"
    for m in [m for m in graph if m.startswith("lossbench.training")]:
        bad = sorted(x for x in reach(graph, m) if x.startswith("lossbench.report"))
        assert not bad, f"{m} reaches the report: {bad}"


def _fabrication():
    """tests/report/conftest.py (the fabricated study) loaded as a plain module."""
    spec = importlib.util.spec_from_file_location("report_fabrication", REPO / "tests" / "report" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.timeout(600)
def test_report_cli_runs_where_mmdet_cannot_be_imported(tmp_path):
    """`lossbench report` on fabricated runs, in a process whose ``import mmdet`` (and mmcv)
    fails and logs who tried: it completes, writes the report, and nothing tried to import them."""
    import yaml

    fab = _fabrication()
    runs = fab.make_study(tmp_path / "runs")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(fab.PARAMS))
    blocked, attempts = tmp_path / "blocked", tmp_path / "attempts.txt"
    for name in ("mmdet", "mmcv"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(
            "import traceback\n"
            f"with open({str(attempts)!r}, 'a') as f:\n"
            f"    f.write('import {name}:\\n' + ''.join(traceback.format_stack()))\n"
            f"raise ImportError('{name} cannot be imported in this test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(blocked), os.environ.get("PYTHONPATH")) if p),
           "MPLBACKEND": "Agg"}
    probe = subprocess.run([sys.executable, "-c", "import mmdet"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "cannot be imported in this test" in probe.stderr  # the block holds
    attempts.unlink()

    out = tmp_path / "report"
    res = subprocess.run([sys.executable, "-m", "lossbench", "report", "--profile", "synth", "--params", str(params),
                          "--runs", str(runs), "--out", str(out)],
                         env=env, capture_output=True, text=True, cwd=tmp_path, timeout=540)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not attempts.exists(), "the report tried to import MMDetection:\n" + attempts.read_text()
    assert "64 runs, 10 comparisons" in res.stdout
    assert (out / "README.md").is_file() and (out / "provenance.json").is_file()
    assert list((out / "figures").glob("*.png"))

"""The package's layering stays true: no import cycles, engines that know nothing of records.

Imports are read from the source (ast), inside functions too, so a cycle cannot hide behind an
import placed in a function body.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datakit", "sft")
# What an engine must not know: everything that reads, builds, filters or writes records.
RECORD_PROCESSING = ("datakit.partition", "datakit.construct", "datakit.record_stages", "datakit.corpus_steps",
                     "datakit.sources", "datakit.datatrove_steps", "datakit.records", "datakit.workfile", "datakit.write")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that `name` imports, anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` the module mod
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:  # `import datakit.engine.dask` -> the deepest known module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions():
    g = graph()
    # decontamination imports the Hub reader only when an evaluation set is on the Hub, in a function body
    source = (ROOT / "datakit/record_stages/decontaminate.py").read_text(encoding="utf-8")
    assert "        from datakit.sources.hub import" in source
    assert "datakit.sources.hub" in g["datakit.record_stages.decontaminate"]
    assert len(g) > 40 and all(name.startswith(PACKAGES) for name in g)


def test_no_import_cycles_in_datakit_or_sft():
    assert cycles(graph()) == []


def test_cycle_finder_finds_a_planted_cycle():
    g = graph()
    g["datakit.hashing"] = g["datakit.hashing"] | {"datakit.build"}  # build imports hashing, indirectly
    assert any("datakit.hashing" in c and "datakit.build" in c for c in cycles(g))


def test_engines_import_no_record_processing():
    g = graph()
    offenders = {(m, t) for m, targets in g.items() if m.startswith("datakit.engine")
                 for t in targets if t.startswith(RECORD_PROCESSING)}
    assert offenders == set()

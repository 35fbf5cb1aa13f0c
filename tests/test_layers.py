"""The import contract: layers point one way, no module cycles, no private names across modules.

    tierroute core  <-  features  <-  models  <-  serving        pipelines on top, the CLI above all

Every import counts, function-level ones included (they hide a dependency, they do not remove it).
The test parses the source; it imports nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> the package it installs as
PACKAGES = {
    "tierroute": "tierroute",
    "features": "tierroute.features",
    "models": "tierroute.models",
    "serving": "tierroute.serving",
    "pipelines": "tierroute.pipelines",
}
#: what each layer may import (besides itself)
ALLOWED = {
    "core": {"core"},
    "features": {"core"},
    "models": {"core", "features"},
    "serving": {"core", "features", "models"},
    "pipelines": {"core", "features", "models", "serving"},
    "cli": {"core", "features", "models", "serving", "pipelines", "cli"},
}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("features", "models", "serving", "pipelines"):
        return parts[1]
    if len(parts) > 1 and parts[1].startswith("cli"):
        return "cli"
    return "core"


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every tierroute module name -> its file."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([package, *parts])] = path
    return out


def imports(module: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int, list[str]]]:
    """(imported tierroute module, line, names imported from it) for every import in the file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("tierroute"):
                    yield alias.name, node.lineno, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, *([base] if base else [])])
            if not base.startswith("tierroute"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in known]
            yield base, node.lineno, [n for n in names if f"{base}.{n}" not in known]
            for sub in submodules:
                yield sub, node.lineno, []


def violations(root: Path = ROOT) -> list[str]:
    known = modules(root)
    found: list[str] = []
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        for target, line, names in imports(module, path, known):
            where = f"{path.relative_to(root)}:{line}"
            if target not in known and not any(k.startswith(target + ".") for k in known):
                continue
            if layer(target) not in ALLOWED[layer(module)] and layer(target) != layer(module):
                found.append(f"{where}: {module} ({layer(module)}) imports {target} ({layer(target)})")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != module:
                found.append(f"{where}: {module} uses private name(s) {private} of {target}")
            if target in known and target != module and not target.startswith(module + ".") and not module.startswith(target + "."):
                graph[module].add(target)
    found += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One example cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_layers_point_one_way_with_no_cycles_and_no_private_names() -> None:
    found = violations()
    assert not found, "import contract broken:\n" + "\n".join(found)


def test_the_contract_test_fails_on_a_forbidden_import(tmp_path: Path) -> None:
    """The check itself works: a copy of the tree with one forbidden import added is refused."""
    for folder in PACKAGES:
        (tmp_path / folder).mkdir()
        for path in (ROOT / folder).rglob("*.py"):
            target = tmp_path / folder / path.relative_to(ROOT / folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert violations(tmp_path) == []
    bad = tmp_path / "models" / "objective.py"
    bad.write_text(
        bad.read_text(encoding="utf-8") + "\n\ndef _late() -> None:\n    from tierroute.serving.router import Router\n", encoding="utf-8"
    )
    found = violations(tmp_path)
    assert any("tierroute.models.objective (models) imports tierroute.serving.router (serving)" in v for v in found), found


@pytest.mark.parametrize(
    ("module", "expected"),
    [("tierroute.request", "core"), ("tierroute.cli.serving", "cli"), ("tierroute.pipelines.training.train", "pipelines")],
)
def test_layers_are_named_by_folder(module: str, expected: str) -> None:
    assert layer(module) == expected

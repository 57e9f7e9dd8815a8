"""The layering DESIGN.md promises, read off the source: ``devices`` knows bytes and GATT,
``processors`` knows numbers, ``streamer`` joins them; neither of the first two imports
``streamer`` or the other. And no package grows a new import cycle.

Every ``import`` statement counts, also those inside functions and under
``TYPE_CHECKING``: a lazy import still ties the two modules together.
"""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("devices", "processors", "streamer")

FORBIDDEN: dict[str, frozenset[str]] = {
    "devices": frozenset({"processors", "streamer"}),
    "processors": frozenset({"devices", "streamer"}),
}
"""Which of our packages each package must not import."""

KNOWN_CYCLES: frozenset[frozenset[str]] = frozenset()
"""Cycles tolerated for now; new ones fail the test (none left: issue 10 removed the
emulated backend ↔ peripheral ↔ world one)."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imports(name: str, path: Path, modules: Collection[str] = ()) -> Iterator[tuple[str, int]]:
    """Every module ``name`` imports (absolute, relative ones resolved), with its line.

    ``from pkg import mod`` counts as importing ``pkg.mod`` when that is one of
    ``modules``, not ``pkg``: Python runs a package's ``__init__`` before any of its
    modules anyway, so that edge would make every package a cycle with its modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names]
            found = [module for module in submodules if module in modules]
            if len(found) < len(submodules):  # some names are not modules
                yield base, node.lineno
            for module in found:
                yield module, node.lineno


def _graph() -> dict[str, set[str]]:
    """Module → the modules of ours it imports (names that are not modules are dropped)."""
    modules = _modules()
    return {
        name: {target for target, _ in _imports(name, path, modules) if target in modules} - {name}
        for name, path in modules.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_devices_and_processors_import_neither_streamer_nor_each_other() -> None:
    modules = _modules()
    offences = [
        f"{path.relative_to(ROOT)}:{line}: imports {target}"
        for name, path in modules.items()
        for target, line in _imports(name, path, modules)
        if target.split(".")[0] in FORBIDDEN.get(name.split(".")[0], frozenset())
    ]
    assert offences == [], "\n".join(offences)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "devices" / "x" / "y.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "def f():\n    from streamer import cli\n\nfrom ..codecs import wire\nfrom . import z\n",
        encoding="utf-8",
    )
    modules = {"streamer.cli", "devices.codecs.wire", "devices.x.z"}
    targets = {target for target, _ in _imports("devices.x.y", source, modules)}
    assert targets == {"streamer.cli", "devices.codecs.wire", "devices.x.z"}


def test_no_new_import_cycles() -> None:
    new = [sorted(cycle) for cycle in _cycles(_graph()) if cycle not in KNOWN_CYCLES]
    assert new == [], f"import cycles: {new}; move the shared types into a small module"


def test_cycle_finder_finds_a_lazy_two_module_cycle() -> None:
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": set()}
    assert _cycles(graph) == [frozenset({"a", "b"})]

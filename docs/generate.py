"""Regenerate the tables in docs/rules.md from the code: ``python3 docs/generate.py``.

The tables between ``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->``
are written from :data:`processors.rules.CATALOGUE`, :class:`processors.rules.RuleThresholds`
and every constant of :mod:`processors.physiology` (with the comment beside it and its
section, whose title names the source). ``tests/test_docs_in_sync.py`` fails when the file
differs from what this script writes, so the documented rules cannot drift from the code.
``python3 docs/generate.py --check`` exits 1 instead of writing.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from processors import physiology  # noqa: E402
from processors.rules import CATALOGUE, RuleThresholds  # noqa: E402

RULES_MD = ROOT / "docs" / "rules.md"
PHYSIOLOGY_PY = ROOT / "processors" / "physiology.py"
RULES_PY = ROOT / "processors" / "rules.py"


def cell(text: object) -> str:
    """``text`` safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def value(v: object) -> str:
    """A default as the tables show it: Python's repr, in code quotes."""
    return f"`{v!r}`"


@dataclasses.dataclass(frozen=True)
class Constant:
    name: str
    value: object
    section: str
    comment: str


def physiology_constants() -> list[Constant]:
    """Every module-level annotated constant of physiology.py, in file order.

    ``comment`` is the constant's inline comment, else the comment block above the group
    of assignments it belongs to; ``section`` is the ``# --- title ---`` it sits under.
    """
    source = PHYSIOLOGY_PY.read_text()
    lines = source.splitlines()
    section_of: dict[int, str] = {}
    block_of: dict[int, str] = {}
    section, block, collecting = "", "", False
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        header = re.match(r"# --- (.*?) -+$", stripped)
        if header:
            section, block, collecting = header.group(1), "", False
        elif stripped.startswith("#"):
            block = (block + " " + stripped.lstrip("# ")) if collecting else stripped.lstrip("# ")
            collecting = True
        else:
            collecting = False
        section_of[number], block_of[number] = section, block
    out = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            line = lines[node.lineno - 1]
            inline = line.split("#", 1)[1].strip() if "#" in line else ""
            out.append(
                Constant(
                    node.target.id,
                    getattr(physiology, node.target.id),
                    section_of[node.lineno],
                    inline or block_of[node.lineno],
                )
            )
    return out


def threshold_constants() -> dict[str, str]:
    """RuleThresholds field → the physiology constant its default comes from."""
    tree = ast.parse(RULES_PY.read_text())
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "RuleThresholds":
            for item in node.body:
                if (
                    isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)
                    and isinstance(item.value, ast.Attribute)
                ):
                    out[item.target.id] = item.value.attr
    return out


def rules_table() -> str:
    rows = ["| rule | severity | what it means | advice | source |", "|---|---|---|---|---|"]
    for spec in CATALOGUE.values():
        rows.append(
            f"| `{spec.rule_id}` | `{spec.severity.value}` | {cell(spec.title)} | "
            f"{cell(spec.advice)} | {cell(spec.source)} |"
        )
    return "\n".join(rows)


def thresholds_table() -> str:
    constants = {c.name: c for c in physiology_constants()}
    sources = threshold_constants()
    rows = ["| threshold (`[rules]` key) | default | from | source section |", "|---|---|---|---|"]
    for field in dataclasses.fields(RuleThresholds):
        default = getattr(RuleThresholds(), field.name)
        constant = sources.get(field.name)
        origin = f"`{constant}`" if constant else "profile (`elite`: `ELITE_PASSIVE_DAY_EVERY`)"
        section = cell(constants[constant].section) if constant in constants else ""
        rows.append(f"| `{field.name}` | {value(default)} | {origin} | {section} |")
    return "\n".join(rows)


def constants_table() -> str:
    rows = ["| constant | value | section (source) | note |", "|---|---|---|---|"]
    for c in physiology_constants():
        rows.append(f"| `{c.name}` | {value(c.value)} | {cell(c.section)} | {cell(c.comment)} |")
    return "\n".join(rows)


TABLES: dict[str, Callable[[], str]] = {
    "rules": rules_table,
    "thresholds": thresholds_table,
    "physiology constants": constants_table,
}


def render(text: str) -> str:
    """``text`` with every generated table replaced by its current content."""
    for name, make in TABLES.items():
        pattern = re.compile(
            rf"(<!-- BEGIN GENERATED: {re.escape(name)} -->\n)(?:.*?\n)?(<!-- END GENERATED: "
            rf"{re.escape(name)} -->)",
            re.DOTALL,
        )
        if pattern.search(text) is None:
            raise ValueError(f"docs/rules.md has no GENERATED block {name!r}")
        match = pattern.search(text)
        assert match is not None
        text = (
            text[: match.start()]
            + match.group(1)
            + make()
            + "\n"
            + match.group(2)
            + text[match.end() :]
        )
    return text


def main(argv: list[str]) -> int:
    current = RULES_MD.read_text()
    fresh = render(current)
    if "--check" in argv:
        if fresh != current:
            print("docs/rules.md is out of date: run python3 docs/generate.py", file=sys.stderr)
            return 1
        return 0
    RULES_MD.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

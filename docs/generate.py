"""Regenerate the tables of docs/ from the code: ``python3 docs/generate.py``.

The tables between ``<!-- BEGIN GENERATED: name -->`` and ``<!-- END GENERATED: name -->``
are written from the code; the prose around them is written by hand:

* docs/rules.md — from :data:`processors.rules.CATALOGUE`,
  :class:`processors.rules.RuleThresholds` and every constant of :mod:`processors.physiology`
  (with the comment beside it and its section, whose title names the source);
* docs/topics.md — one ``payload <kind>`` table per payload type of
  :mod:`streamer.results` (key, JSON type, unit, meaning, from each field's
  :func:`~streamer.results.column` declaration) and the ``alert object``;
* docs/influx-schema.md — one ``measurement <name>`` block per InfluxDB measurement: its
  tags and a table of its fields (type, unit, meaning), derived as
  :mod:`streamer.sinks.influx_schema` derives the schema.

A payload type, measurement or table without its block in the file (or a block that no
longer has one) is an error: add the block where its section's prose is.
``tests/test_docs_in_sync.py`` fails when a file differs from what this script writes, so
the docs cannot drift from the code; ``python3 docs/generate.py --check`` exits 1 instead
of writing.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from processors import physiology  # noqa: E402
from processors.rules import CATALOGUE, RuleThresholds  # noqa: E402
from streamer.results import (  # noqa: E402
    PAYLOAD_TYPES,
    AlertPayload,
    LabLatest,
    Payload,
    payload_constants,
    published_name,
)
from streamer.sinks.influx_schema import MEASUREMENT, derive  # noqa: E402

RULES_MD = ROOT / "docs" / "rules.md"
TOPICS_MD = ROOT / "docs" / "topics.md"
SCHEMA_MD = ROOT / "docs" / "influx-schema.md"
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


#: Thresholds without a default constant, other than the elite profile's: where they come from.
UNSET_ORIGIN = {
    "high_intensity_power_w": "the athlete's own (second threshold / FTP; `[athletes.rules]`)",
    "max_hr_bpm": "the athlete's own (HRmax; `[athletes.rules]`): heart-rate zones",
    "threshold_hr_bpm": "the athlete's own (HR at the second threshold; `[athletes.rules]`)",
}


def thresholds_table() -> str:
    constants = {c.name: c for c in physiology_constants()}
    sources = threshold_constants()
    rows = ["| threshold (`[rules]` key) | default | from | source section |", "|---|---|---|---|"]
    for field in dataclasses.fields(RuleThresholds):
        default = getattr(RuleThresholds(), field.name)
        constant = sources.get(field.name)
        origin = (
            f"`{constant}`"
            if constant
            else UNSET_ORIGIN.get(field.name, "profile (`elite`: `ELITE_PASSIVE_DAY_EVERY`)")
        )
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
"""The generated tables of docs/rules.md."""


# --- docs/topics.md: the payload types ----------------------------------------------------

_JSON_TYPES: Mapping[object, str] = {int: "int", float: "float", bool: "bool", str: "string"}


def json_type(tp: object) -> str:
    """A payload field's annotation as docs/topics.md names its JSON type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"{json_type(inner)} or null"
    if origin is tuple:
        return f"list of {json_type(typing.get_args(tp)[0])}"
    if origin in (Mapping, dict):
        return "object"
    if tp is AlertPayload:
        return "alert"
    if tp is LabLatest:
        return "lab value"
    if tp in _JSON_TYPES:
        return _JSON_TYPES[tp]
    raise TypeError(f"no JSON type name for {tp}: teach docs/generate.py json_type")


def payload_block(cls: type[Payload]) -> str:
    """The block name of a payload type's table: ``payload <kind>[ <scope>]``."""
    return " ".join(["payload", cls.KIND.value, *map(str, payload_constants(cls).values())])


#: Fields whose values are the ids of a table in the code: listed after their meaning.
VALUES_FROM_CODE: Mapping[tuple[type, str], Callable[[], list[str]]] = {
    (AlertPayload, "rule"): lambda: list(CATALOGUE),
}


def fields_table(cls: type[Payload] | type[AlertPayload] | type[LabLatest]) -> str:
    """Key, JSON type, unit and meaning of every field of ``cls``, in publishing order."""
    hints = typing.get_type_hints(cls)
    rows = ["| key | type | unit | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        kind = json_type(hints[f.name])
        if f.metadata.get("omit_if_none"):
            kind = kind.removesuffix(" or null")  # left out when unknown, never null
        meaning = str(f.metadata["doc"])
        values = VALUES_FROM_CODE.get((cls, f.name))
        if values is not None:
            meaning += ": " + ", ".join(f"`{v}`" for v in values())
        rows.append(
            f"| `{published_name(f)}` | {kind} | {cell(f.metadata['unit'])} | {cell(meaning)} |"
        )
    return "\n".join(rows)


def topic_tables() -> dict[str, Callable[[], str]]:
    """The generated tables of docs/topics.md: one per payload type, and the alert object."""
    tables: dict[str, Callable[[], str]] = {
        payload_block(cls): (lambda cls=cls: fields_table(cls))  # type: ignore[misc]
        for cls in PAYLOAD_TYPES
    }
    tables["alert object"] = lambda: fields_table(AlertPayload)
    tables["lab value object"] = lambda: fields_table(LabLatest)
    return tables


# --- docs/influx-schema.md: the measurements ----------------------------------------------

_INFLUX_TYPES: Mapping[type, str] = {float: "float", int: "integer", bool: "boolean", str: "string"}


def measurement_block(
    measurement: str, payload_types: Sequence[type[Payload]] = PAYLOAD_TYPES
) -> str:
    """The Tags line and the field table of one measurement, derived from ``payload_types``
    as :mod:`streamer.sinks.influx_schema` derives the schema it writes."""
    field_types, _, tag_fields, _ = derive(payload_types)
    sources = [cls for cls in payload_types if measurement == cls.MEASUREMENT]
    several = len(sources) > 1  # oxygen_recovery: say which scope a field belongs to
    tags = ["`athlete`"]
    if any(cls.DEVICE for cls in sources):
        tags.append("`device`")
    if any(cls.KIND.is_live for cls in sources):
        tags.append("`gateway` (team mode: the gateway that received the sample)")
    docs: dict[str, tuple[str, str]] = {}  # column → (unit, meaning)
    tag_notes: dict[str, str] = {}
    for cls in sources:
        constants = payload_constants(cls)
        holder: type = cls
        if cls.INFLUX_OBJECT is not None:
            holder = typing.get_type_hints(cls)[cls.INFLUX_OBJECT]
        scope = " ".join(map(str, constants.values()))
        for f in dataclasses.fields(holder):
            name, column = published_name(f), f.metadata["influx"]
            meaning = str(f.metadata.get("influx_doc", f.metadata["doc"]))
            if column == "tag":
                values = [str(payload_constants(c).get(name)) for c in sources]
                if name in constants:
                    tag_notes[name] = " or ".join(f"`{v}`" for v in values)
                elif "influx_doc" in f.metadata:
                    tag_notes[name] = meaning
            elif column is not None:
                docs.setdefault(
                    name, (str(f.metadata["unit"]), f"{scope}: {meaning}" if several else meaning)
                )
        for name, (_kind, meaning) in cls.INFLUX_DERIVED.items():
            docs.setdefault(name, ("", meaning))
    for name in tag_fields.get(measurement, ()):
        note = tag_notes.get(name)
        tags.append(f"`{name}` ({note})" if note else f"`{name}`")
    rows = ["| field | type | unit | meaning |", "|---|---|---|---|"]
    for name, kind in field_types[measurement].items():
        unit, meaning = docs[name]
        rows.append(f"| `{name}` | {_INFLUX_TYPES[kind]} | {cell(unit)} | {cell(meaning)} |")
    return "Tags: " + ", ".join(tags) + ".\n\n" + "\n".join(rows)


def schema_tables() -> dict[str, Callable[[], str]]:
    """The generated blocks of docs/influx-schema.md: one per measurement."""
    return {
        f"measurement {m}": (lambda m=m: measurement_block(m))  # type: ignore[misc]
        for m in dict.fromkeys(MEASUREMENT.values())
    }


DOCS: dict[Path, Callable[[], dict[str, Callable[[], str]]]] = {
    RULES_MD: lambda: TABLES,
    TOPICS_MD: topic_tables,
    SCHEMA_MD: schema_tables,
}
"""Every generated file and its tables."""

_BLOCK = re.compile(r"<!-- BEGIN GENERATED: (.*?) -->")


def render(
    text: str, tables: Mapping[str, Callable[[], str]] = TABLES, name: str = "docs/rules.md"
) -> str:
    """``text`` with every generated table replaced by its current content.

    ``ValueError`` when a table has no block in ``text``, or a block names no table."""
    stale = set(_BLOCK.findall(text)) - set(tables)
    if stale:
        raise ValueError(
            f"{name} has GENERATED blocks {sorted(stale)} that nothing generates: remove them"
        )
    for block, make in tables.items():
        pattern = re.compile(
            rf"(<!-- BEGIN GENERATED: {re.escape(block)} -->\n)(?:.*?\n)?(<!-- END GENERATED: "
            rf"{re.escape(block)} -->)",
            re.DOTALL,
        )
        match = pattern.search(text)
        if match is None:
            raise ValueError(
                f"{name} has no GENERATED block {block!r}: add "
                f"'<!-- BEGIN GENERATED: {block} -->' and its END line where its section is"
            )
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
    stale = []
    for path, tables in DOCS.items():
        current = path.read_text()
        fresh = render(current, tables(), f"docs/{path.name}")
        if fresh == current:
            continue
        if "--check" in argv:
            stale.append(f"docs/{path.name}")
        else:
            path.write_text(fresh)
    if stale:
        print(f"{', '.join(stale)} out of date: run python3 docs/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

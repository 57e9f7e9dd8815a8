"""docs/topics.md, docs/influx-schema.md and docs/rules.md cannot drift from the code.

* All three: their generated tables equal what ``docs/generate.py`` writes now (rules.md
  from processors/rules.py and processors/physiology.py, topics.md and influx-schema.md
  from the payload types of streamer/results.py); a new payload field reaches both docs
  through the generator alone.
* rules.md: every rule is explained.
* influx-schema.md: every measurement, field (with its type) and tag of
  streamer/sinks/influx_schema.py is documented in its measurement's section.
* topics.md: every topic kind with its QoS and retain flag, the payload header.
* Both, on real output: weeks of emulated history go through the real pipeline; every
  topic, payload key, measurement, tag and field the code actually produced must be in
  the docs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest

from processors import physiology
from processors.rules import CATALOGUE, RuleThresholds
from streamer.payloads import build_payload
from streamer.results import (
    LIVE_KINDS,
    PAYLOAD_TYPES,
    RESERVED_KEYS,
    HrvPayload,
    Kind,
    Result,
    column,
)
from streamer.sinks.influx_schema import FIELD_TYPES, TAG_FIELDS, points_for
from streamer.topics import Topics
from tests.emulated_history import CaptureSink, replay

DOCS = Path(__file__).resolve().parents[1] / "docs"
TOPICS_MD = DOCS / "topics.md"
SCHEMA_MD = DOCS / "influx-schema.md"
RULES_MD = DOCS / "rules.md"
INFLUX_TYPE = {float: "float", int: "integer", bool: "boolean", str: "string"}


def sections(path: Path, level: str = "## ") -> dict[str, str]:
    """Heading text → the Markdown under it, up to the next heading of the same level."""
    out: dict[str, str] = {}
    title = ""
    for line in path.read_text().splitlines():
        if line.startswith(level):
            title = line[len(level) :].strip()
            out[title] = ""
        elif title:
            out[title] += line + "\n"
    return out


def row(text: str, first_cell: str) -> list[str] | None:
    """The cells of the table row whose first cell is ``first_cell`` (None if absent)."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.lstrip().startswith("|") and cells and cells[0] == first_cell:
            return cells
    return None


# --- rules.md -----------------------------------------------------------------------------


def test_generated_rule_tables_match_the_code() -> None:
    import docs.generate as generate

    text = RULES_MD.read_text()
    assert generate.render(text) == text, "docs/rules.md is stale: run python3 docs/generate.py"


def test_every_generated_doc_matches_the_code() -> None:
    import docs.generate as generate

    assert set(generate.DOCS) == {RULES_MD, TOPICS_MD, SCHEMA_MD}
    for path, tables in generate.DOCS.items():
        text = path.read_text()
        fresh = generate.render(text, tables(), path.name)
        assert fresh == text, f"docs/{path.name} is stale: run python3 docs/generate.py"
    assert generate.main(["--check"]) == 0


def test_a_new_payload_field_reaches_both_docs_through_the_generator_only() -> None:
    import docs.generate as generate

    @dataclasses.dataclass(frozen=True, slots=True)
    class Extended(HrvPayload):
        sd1_ms: float | None = dataclasses.field(
            default=None, metadata=column("float", "ms", "Poincaré SD1")
        )

    row = "| `sd1_ms` | float or null | ms | Poincaré SD1 |"
    topics = TOPICS_MD.read_text()
    assert row not in topics
    tables = {**generate.topic_tables(), "payload hrv": lambda: generate.fields_table(Extended)}
    fresh = generate.render(topics, tables, "topics.md")
    assert row in fresh
    assert fresh.replace(row + "\n", "") == topics
    # InfluxDB: the field joins the hrv measurement, typed and documented.
    extended = tuple(Extended if cls is HrvPayload else cls for cls in PAYLOAD_TYPES)
    block = generate.measurement_block("hrv", extended)
    assert "| `sd1_ms` | float | ms | Poincaré SD1 |" in block
    assert block.replace("\n| `sd1_ms` | float | ms | Poincaré SD1 |", "") == (
        generate.measurement_block("hrv")
    )


def test_a_payload_type_without_its_block_or_a_block_without_one_is_refused() -> None:
    import docs.generate as generate

    topics = TOPICS_MD.read_text()
    tables = generate.topic_tables()
    with pytest.raises(ValueError, match=r"no GENERATED block 'payload new_kind': add"):
        generate.render(topics, {**tables, "payload new_kind": lambda: ""}, "topics.md")
    del tables["payload status"]
    with pytest.raises(ValueError, match=r"blocks \['payload status'\] that nothing generates"):
        generate.render(topics, tables, "topics.md")


def test_every_rule_is_explained_with_its_severity() -> None:
    text = RULES_MD.read_text()
    for rule_id, spec in CATALOGUE.items():
        assert f"* **`{rule_id}`** ({spec.severity.value})" in text, rule_id
        cells = row(text, f"`{rule_id}`")
        assert cells is not None
        assert cells[1] == f"`{spec.severity.value}`"


def test_every_threshold_and_constant_is_listed_with_its_value() -> None:
    text = RULES_MD.read_text()
    for field in dataclasses.fields(RuleThresholds):
        cells = row(text, f"`{field.name}`")
        assert cells is not None, field.name
        assert cells[1] == f"`{getattr(RuleThresholds(), field.name)!r}`"
    constants = [n for n in vars(physiology) if n.isupper() and not n.startswith("_")]
    assert len(constants) > 40
    for name in constants:
        cells = row(text, f"`{name}`")
        assert cells is not None, name
        assert cells[1] == f"`{getattr(physiology, name)!r}`"


# --- influx-schema.md ---------------------------------------------------------------------

SCHEMA_SECTIONS = sections(SCHEMA_MD)


def _measurement_section(measurement: str) -> str:
    return SCHEMA_SECTIONS.get(f"`{measurement}`", "")


@pytest.mark.parametrize("measurement", sorted(FIELD_TYPES))
def test_every_field_is_documented_with_its_type(measurement: str) -> None:
    section = _measurement_section(measurement)
    assert section, f"no '## `{measurement}`' section in docs/influx-schema.md"
    for field, kind in FIELD_TYPES[measurement].items():
        cells = row(section, f"`{field}`")
        assert cells is not None, f"{measurement}.{field} not documented"
        assert cells[1] == INFLUX_TYPE[kind], f"{measurement}.{field} is {INFLUX_TYPE[kind]}"
    documented = {
        line.strip("|").split("|")[0].strip().strip("`")
        for line in section.splitlines()
        if line.startswith("| `")
    }
    assert documented <= set(FIELD_TYPES[measurement]), "documented fields the code lacks"


@pytest.mark.parametrize("measurement", sorted(FIELD_TYPES))
def test_every_tag_is_documented(measurement: str) -> None:
    tags = {"athlete", *TAG_FIELDS.get(measurement, ())}
    if measurement == "alert":
        tags |= {"rule", "severity"}
    tag_line = next(
        (line for line in _measurement_section(measurement).splitlines() if "Tags:" in line), ""
    )
    for tag in tags:
        assert f"`{tag}`" in _measurement_section(measurement), f"{measurement} tag {tag}"
    assert tag_line, f"{measurement}: no 'Tags:' line"


# --- topics.md ----------------------------------------------------------------------------

TOPIC_SECTIONS = sections(TOPICS_MD)
TOPIC_TREE = TOPIC_SECTIONS["Topic tree"]


def _pattern(topic: str, kind: Kind) -> str:
    """A concrete topic as the docs write it: ``<base>/<athlete>/...``."""
    parts = topic.split("/")
    if kind in LIVE_KINDS:
        return "<base>/<athlete>/<device>/live"
    if kind is Kind.DEVICE:
        return "<base>/<athlete>/<device>/state"
    return "/".join(["<base>", "<athlete>", *parts[2:]])


@pytest.mark.parametrize("kind", [k for k in Kind if k not in LIVE_KINDS])
def test_every_result_topic_is_in_the_tree_with_its_qos_and_retain(kind: Kind) -> None:
    fields = {"event": {"state": "raised"}} if kind is Kind.ALERTS else {}
    result = Result(kind, "ann", 1, fields, "strap" if kind is Kind.DEVICE else None)
    topic = _pattern(Topics().for_result(result), kind)
    cells = row(TOPIC_TREE, f"`{topic}`")
    assert cells is not None, f"{topic} not in the topic tree"
    assert cells[1] == str(result.qos)
    assert cells[2] == ("yes" if result.retain else "no")
    assert f"`{topic}`" in TOPIC_SECTIONS, f"no section for {topic}"


def test_live_topic_and_bridge_state_are_in_the_tree() -> None:
    live = Result(Kind.HEART_RATE, "ann", 1, {"hr_bpm": 60, "rr_ms": []}, "strap")
    cells = row(TOPIC_TREE, "`<base>/<athlete>/<device>/live`")
    assert cells is not None
    assert (cells[1], cells[2]) == (str(live.qos), "yes" if live.retain else "no")
    bridge = Topics().bridge_state.replace("redox", "<base>", 1)
    assert row(TOPIC_TREE, f"`{bridge}`") is not None


def test_every_header_key_is_documented() -> None:
    header = TOPIC_SECTIONS["Payload header"]
    for key in RESERVED_KEYS:
        assert row(header, f"`{key}`") is not None, key


# --- the docs against real output ---------------------------------------------------------


@pytest.fixture(scope="module")
def produced(tmp_path_factory: pytest.TempPathFactory) -> list[Result]:
    """Every result of 24 days of emulated history plus a live day (real pipeline)."""
    sink = CaptureSink()
    asyncio.run(
        replay(tmp_path_factory.mktemp("docs") / "store.sqlite3", [sink], athletes=2, days=24)
    )
    return sink.results


_ESCAPED = re.compile(r"\\(.)")


def _split(text: str, sep: str) -> list[str]:
    """Split line-protocol ``text`` on unescaped ``sep`` outside double quotes."""
    parts, current, quoted, i = [], "", False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current += text[i : i + 2]
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        if c == sep and not quoted:
            parts.append(current)
            current = ""
        else:
            current += c
        i += 1
    parts.append(current)
    return parts


def parse_line(line: str) -> tuple[str, set[str], set[str]]:
    """(measurement, tag keys, field keys) of one line-protocol line."""
    series, fields, _ = _split(line, " ")
    measurement, *tags = _split(series, ",")
    return (
        _ESCAPED.sub(r"\1", measurement),
        {_ESCAPED.sub(r"\1", t.split("=", 1)[0]) for t in tags},
        {_ESCAPED.sub(r"\1", f.split("=", 1)[0]) for f in _split(fields, ",")},
    )


def test_line_protocol_parser_handles_escapes_and_strings() -> None:
    line = r'alert,athlete=a\ b,rule=x state="raised, a b",active=1i 5'
    assert parse_line(line) == ("alert", {"athlete", "rule"}, {"state", "active"})


@pytest.mark.integration
def test_history_produced_every_kind_of_result(produced: list[Result]) -> None:
    # Device state is `run`'s, not the pipeline's (tests/test_status.py checks its keys).
    assert {r.kind for r in produced} == set(Kind) - {Kind.DEVICE}
    rules = {
        r.fields["event"]["rule"]
        for r in produced  # type: ignore[index,call-overload]
        if r.kind is Kind.ALERTS
    }
    assert {"hrv_downtrend", "rhr_creep", "smo2_slow_recovery", "grip_spillover"} <= rules


@pytest.mark.integration
def test_every_point_written_is_documented(produced: list[Result]) -> None:
    missing: set[str] = set()
    for result in produced:
        for point in points_for(result):
            measurement, tags, fields = parse_line(point.to_line_protocol())
            section = _measurement_section(measurement)
            if not section:
                missing.add(measurement)
            missing |= {f"{measurement} tag {t}" for t in tags if f"`{t}`" not in section}
            missing |= {f"{measurement}.{f}" for f in fields if row(section, f"`{f}`") is None}
    assert missing == set()


@pytest.mark.integration
def test_every_topic_and_payload_key_published_is_documented(produced: list[Result]) -> None:
    topics = Topics()
    missing: set[str] = set()
    for result in produced:
        topic = _pattern(topics.for_result(result), result.kind)
        if row(TOPIC_TREE, f"`{topic}`") is None:
            missing.add(topic)
        section = TOPIC_SECTIONS.get(f"`{topic}`", "")
        payload = build_payload(result, 1)
        for key in payload:
            if key not in RESERVED_KEYS and row(section, f"`{key}`") is None:
                missing.add(f"{topic}: {key}")
        if result.kind is Kind.ALERTS:
            active = payload["active"]
            alerts = [payload["event"], *(active if isinstance(active, list) else [])]
            for alert in alerts:
                assert isinstance(alert, dict)
                for key in alert:
                    if row(section, f"`{key}`") is None:
                        missing.add(f"{topic}: alert.{key}")
    assert missing == set()

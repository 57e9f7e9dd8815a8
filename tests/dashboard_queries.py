"""Every InfluxQL query of the shipped Grafana dashboards, and Grafana's substitutions.

:func:`dashboard_queries` walks a dashboard's JSON the way Grafana reads it: panel targets
(panels inside rows included), template-variable queries and annotation queries of the
InfluxDB datasource. :func:`substitute` replaces Grafana's macros and variables the way the
InfluxDB datasource does (``$timeFilter`` → ``time >= now() - 30d and time <= now()``,
``$__interval`` → ``1h``, ``$athlete`` / ``${athlete}`` / ``[[athlete]]`` → the value).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARDS = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "dashboards"
INFLUX_DATASOURCE_UID = "redox-influxdb"


@dataclass(frozen=True)
class Query:
    """One query of a dashboard: where it is (for messages) and its InfluxQL."""

    dashboard: str
    where: str  # "panel 'Heart rate' target A", "variable athlete", "annotation 'Alert raised'"
    kind: str  # "panel", "variable", "annotation"
    text: str
    raw: bool  # a raw InfluxQL query (not the visual query builder)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def shipped_dashboards() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _is_influx(datasource: object) -> bool:
    return isinstance(datasource, dict) and datasource.get("type") == "influxdb"


def dashboard_queries(path: Path) -> list[Query]:
    """All InfluxDB queries of the dashboard at ``path``."""
    dash = load(path)
    name = path.stem
    out: list[Query] = []
    for panel in _panels(dash.get("panels", [])):
        if panel.get("type") == "row":
            continue
        for target in panel.get("targets", []):
            out.append(
                Query(
                    name,
                    f"panel {panel.get('title')!r} target {target.get('refId')}",
                    "panel",
                    str(target.get("query", "")),
                    bool(target.get("rawQuery")),
                )
            )
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query" and _is_influx(var.get("datasource")):
            query = var.get("query")
            text = query.get("query", "") if isinstance(query, dict) else str(query)
            out.append(Query(name, f"variable {var.get('name')}", "variable", text, True))
    for ann in dash.get("annotations", {}).get("list", []):
        if _is_influx(ann.get("datasource")):
            out.append(
                Query(
                    name,
                    f"annotation {ann.get('name')!r}",
                    "annotation",
                    str(ann.get("query", "")),
                    True,
                )
            )
    return out


def panels_without_targets(path: Path) -> list[str]:
    """Titles of non-row panels that have no query at all (they would show nothing)."""
    return [
        str(p.get("title"))
        for p in _panels(load(path).get("panels", []))
        if p.get("type") != "row" and not p.get("targets")
    ]


def datasource_uids(path: Path) -> set[str]:
    """Every datasource uid the dashboard refers to (Grafana's built-in one excluded)."""
    uids: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            ds = node.get("datasource")
            if isinstance(ds, dict) and ds.get("type") not in (None, "grafana"):
                uids.add(str(ds.get("uid")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(load(path))
    return uids


def time_filter(dashboard: Mapping[str, Any]) -> str:
    """``$timeFilter`` for the dashboard's default range, as Grafana renders a relative one."""
    start = str(dashboard["time"]["from"])
    end = str(dashboard["time"]["to"])

    def influx_time(text: str) -> str:
        if text == "now":
            return "now()"
        match = re.fullmatch(r"now-(\d+)([smhdw])", text)
        if match is None:
            raise ValueError(f"unsupported dashboard time {text!r}")
        return f"now() - {match.group(1)}{match.group(2)}"

    return f"time >= {influx_time(start)} and time <= {influx_time(end)}"


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """``text`` with Grafana's ``$name``, ``${name}``, ``${name:fmt}`` and ``[[name]]`` replaced.

    A variable that ``variables`` does not define raises ``KeyError`` naming it: a query
    must not reach the server with a ``$`` Grafana would have filled in.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in variables:
            raise KeyError(f"undefined Grafana variable ${name} in {text!r}")
        return variables[name]

    # Longest names first so "$__interval_ms" is not read as "$__interval" + "_ms".
    return _VARIABLE.sub(replace, text)


_FROM = re.compile(r'\bFROM\s+"(\w+)"', re.IGNORECASE)
_QUOTED = re.compile(r'(\bAS\s+)?"([^"]+)"', re.IGNORECASE)


def identifiers(text: str) -> tuple[set[str], set[str], set[str]]:
    """(measurements after FROM, other double-quoted identifiers, aliases after AS)."""
    measurements = set(_FROM.findall(text))
    names: set[str] = set()
    aliases: set[str] = set()
    for match in _QUOTED.finditer(text):
        (aliases if match.group(1) else names).add(match.group(2))
    return measurements, names - measurements, aliases

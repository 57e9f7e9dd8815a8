"""The bad-input campaign (issue 11): hundreds of generated bad inputs through the CLI.

Configs (wrong types, out-of-range numbers, unknown keys, bad ids, non-UTF-8 bytes,
truncated TOML), replay lines (garbage JSON, wrong types, huge and negative ``t_ns``, bad
hex, binary), athlete ids and flags are generated here and run through
:func:`streamer.cli.main` in-process (fast); a sample of them runs through the real
console entry in subprocesses. For every one:

* nothing escapes ``main`` and no traceback is printed;
* the exit status is the error table's (:data:`streamer.errors.INPUT_STATUS`, 2);
* standard error holds exactly one line, ``redox-streamer <command>: error: ...``, that
  names the input (the key, the file and line, the flag) and says what to do.

Each family is one test that runs all its cases and lists every failure at once; the
figures (cases per family) are pinned by ``test_the_campaign_is_hundreds_of_inputs``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from streamer.cli import main
from streamer.commands.replay import SAMPLE_RECORDING
from streamer.errors import INPUT_STATUS

ROOT = Path(__file__).resolve().parents[1]

FIX_WORDS = re.compile(
    r"\b(use|give|write|add|remove|fix|set|save|pass|check|delete|choose|create|did you "
    r"mean|see|say|leave|install|wake|expected|must)\b",
    re.IGNORECASE,
)
"""Words an error's fix starts with ("— use ...", "; give ...", "see `... --help`")."""


@dataclass(frozen=True)
class Bad:
    """One bad invocation: ``argv`` (``{dir}`` is the case's directory), files to write
    first (name → bytes), the text the error must contain and the statuses allowed."""

    family: str
    label: str
    argv: tuple[str, ...]
    names: str
    files: Mapping[str, bytes] = field(default_factory=dict)
    statuses: frozenset[int] = frozenset({INPUT_STATUS})


# --- configs ---------------------------------------------------------------------------------

BASE_CONFIG: dict[str, Any] = {
    "store": {"path": "store.sqlite3"},
    "mqtt": {
        "url": "mqtt://127.0.0.1:1883",
        "base_topic": "redox",
        "protocol": "3.1.1",
        "client_id": "redox-test",
        "ha_discovery": False,
        "ha_prefix": "homeassistant",
        "keepalive_s": 30,
        "publish_timeout_s": 5.0,
    },
    "influx": {
        "url": "http://127.0.0.1:8086",
        "api": "v1",
        "db": "redox",
        "rp": "autogen",
        "create_database": False,
        "batch_size": 5000,
        "flush_interval_s": 1.0,
        "timeout_s": 10.0,
    },
    "athletes": [
        {
            "id": "alice",
            "name": "Alice",
            "profile": "default",
            "devices": [
                {
                    "kind": "strap",
                    "address": "AA:BB:CC:DD:EE:01",
                    "id": "strap",
                    "name": "Polar H10 1A2B",
                    "role": "chest",
                }
            ],
        }
    ],
}

STRING_KEYS = (
    "store.path",
    "mqtt.url",
    "mqtt.base_topic",
    "mqtt.protocol",
    "mqtt.client_id",
    "mqtt.ha_prefix",
    "influx.url",
    "influx.api",
    "influx.db",
    "influx.rp",
    "athletes[0].id",
    "athletes[0].name",
    "athletes[0].profile",
    "athletes[0].devices[0].kind",
    "athletes[0].devices[0].address",
    "athletes[0].devices[0].id",
    "athletes[0].devices[0].name",
    "athletes[0].devices[0].role",
)
FLAG_KEYS = ("mqtt.ha_discovery", "influx.create_database")
# key → (values out of range, what is allowed); bounds in streamer/config.py
NUMBER_KEYS: dict[str, list[float]] = {
    "mqtt.keepalive_s": [-1, 0, 4, 3601, 70000, 1e300, math.nan, math.inf, -math.inf, 30.5, 10**18],
    "mqtt.publish_timeout_s": [-1, 0, 0.01, 301, 1e300, math.nan, math.inf],
    "influx.batch_size": [-5, 0, 1.5, 100_001, 10**12, math.nan],
    "influx.flush_interval_s": [-1, 0, 0.001, 3601, 1e300, math.nan, -math.inf],
    "influx.timeout_s": [-1, 0, 0.05, 301, 1e300, math.nan, math.inf],
}
WRONG_FOR_STRING: list[Any] = [1, 1.5, True, [1, 2], {"a": 1}]
WRONG_FOR_FLAG: list[Any] = [1, "yes", 1.5, []]
WRONG_FOR_NUMBER: list[Any] = ["30", True, [30], {"a": 1}]

BAD_IDS = [
    "",
    " ",
    "a/b",
    "x+y",
    "#",
    "+",
    "alice\n",
    "\nalice",
    " alice",
    "alice ",
    "a b",
    "a.b",
    "a:b",
    "a\\b",
    "*",
    "$SYS",
    "a\x00b",
    "a\tb",
    "ä",
    "α",
    "🙂",
    "a\u200bb",
    "a" * 65,
]
"""Ids that would be rewritten (and collide) in a topic or tag, or are not ids at all."""


def toml_value(value: Any) -> str:
    """``value`` as a TOML value (strings escaped, nan/inf spelled as TOML does)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        out = []
        for c in value:
            if c in '"\\':
                out.append("\\" + c)
            elif ord(c) < 0x20 or ord(c) == 0x7F:
                out.append(f"\\u{ord(c):04x}")
            else:
                out.append(c)
        return '"' + "".join(out) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def toml_dump(data: Mapping[str, Any], prefix: str = "") -> str:
    """A TOML document of ``data``: scalars first, then tables and arrays of tables."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value and prefix.count(".") < 2 and _is_section(key):
            tables.append((name, value))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            arrays.append((name, value))
        else:
            lines.append(f"{key} = {toml_value(value)}")
    for name, table in tables:
        lines += ["", f"[{name}]", toml_dump(table, name)]
    for name, items in arrays:
        for item in items:
            lines += ["", f"[[{name}]]", toml_dump(item, name)]
    return "\n".join(lines)


def _is_section(key: str) -> bool:
    return key in {"store", "mqtt", "influx", "rules", "tls"}


def with_value(path: str, value: Any, *, delete: bool = False) -> dict[str, Any]:
    """A deep copy of :data:`BASE_CONFIG` with the key at ``path`` set (or deleted)."""
    config: dict[str, Any] = json.loads(json.dumps(BASE_CONFIG))
    node: Any = config
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    for part in parts[:-1]:
        node = node[int(part[1:-1])] if part.startswith("[") else node.setdefault(part, {})
    last = parts[-1]
    if delete:
        del node[last]
    else:
        node[last] = value
    return config


def config_case(label: str, names: str, text: bytes, **kw: Any) -> Bad:
    return Bad(
        "config",
        label,
        ("config", "check", "--path", "{dir}/redox.toml"),
        names,
        {"redox.toml": text},
        **kw,
    )


def config_cases() -> Iterator[Bad]:
    def dumped(config: Mapping[str, Any]) -> bytes:
        return toml_dump(config).encode("utf-8")

    for key in STRING_KEYS:
        for value in WRONG_FOR_STRING:
            yield config_case(f"{key} = {value!r}", key, dumped(with_value(key, value)))
    for key in FLAG_KEYS:
        for value in WRONG_FOR_FLAG:
            yield config_case(f"{key} = {value!r}", key, dumped(with_value(key, value)))
    for key, values in NUMBER_KEYS.items():
        for value in [*WRONG_FOR_NUMBER, *values]:
            yield config_case(f"{key} = {value!r}", key, dumped(with_value(key, value)))
    for section in ("mqtt", "influx", "store", "athletes[0]", "athletes[0].devices[0]"):
        for typo in ("bogus", "keepalive", "urll", "ID"):
            key = f"{section}.{typo}"
            yield config_case(f"unknown {key}", key, dumped(with_value(key, 1)))
    yield config_case("unknown section", "bogus", dumped({**BASE_CONFIG, "bogus": {"a": 1}}))
    for rules in ("rules", "athletes[0].rules"):
        for name, value in (
            ("no_such_rule", 1),
            ("rhr_creep_delta_bpm", "six"),
            ("rhr_creep_delta_bpm", -5),
            ("rhr_creep_delta_bpm", math.nan),
            ("rhr_creep_delta_bpm", math.inf),
        ):
            yield config_case(
                f"{rules}.{name} = {value!r}",
                name,
                dumped(with_value(f"{rules}.{name}", value)),
            )
    for where in ("athletes[0].id", "athletes[0].devices[0].id"):
        for bad in BAD_IDS:
            yield config_case(f"{where} = {bad!r}", where, dumped(with_value(where, bad)))
    for key in ("mqtt.url", "influx.url", "athletes[0].id", "athletes[0].devices[0].kind"):
        yield config_case(f"no {key}", key, dumped(with_value(key, None, delete=True)))
    good = dumped(BASE_CONFIG)
    for label, text in non_utf8(good):
        yield config_case(f"non-UTF-8: {label}", "redox.toml", text)
    # Cut inside a line: almost always broken TOML or a wrong value (status 2, naming the
    # file); a cut that leaves a whole valid file passes (status 0) and is not counted bad.
    cuts = [i for i, ch in enumerate(good) if ch not in b"\n" and good[i - 1 : i] != b"\n"]
    for i in cuts[:: max(1, len(cuts) // 40)]:
        yield config_case(
            f"truncated at byte {i}", "redox.toml", good[:i], statuses=frozenset({0, 2})
        )


def non_utf8(good: bytes) -> Iterator[tuple[str, bytes]]:
    """``good`` spoiled with bytes that are not UTF-8, in several places and ways."""
    middle = good.index(b"alice")
    for byte in (b"\xff", b"\xc3\x28", b"\x80", b"\xe9", b"\xf8\x88\x80\x80\x80"):
        yield f"{byte!r} in a string", good[:middle] + byte + good[middle:]
        yield f"{byte!r} first", byte + good
    yield "UTF-16", good.decode().encode("utf-16")
    yield "Latin-1 name", good.replace(b"Alice", "Alíce".encode("latin-1"))
    rng = random.Random(11)
    for n in range(6):
        yield f"random bytes {n}", bytes(rng.randrange(128, 256) for _ in range(40)) + good


# --- replay lines ---------------------------------------------------------------------------

GOOD_LINE = {
    "t_ns": 1_700_000_000_000_000_000,
    "device": "strap",
    "char": "2a37",
    "hex": "1632ea04",
}
BEFORE = 30
"""Valid lines of the sample before the bad one: the bad line is line 31."""


def bad_lines() -> Iterator[tuple[str, bytes]]:
    for label, raw in (
        ("garbage", b"garbage"),
        ("open brace", b"{"),
        ("close brace", b"}"),
        ("array", b"[]"),
        ("null", b"null"),
        ("number", b"1"),
        ("string", b'"text"'),
        ("empty object", b"{}"),
        ("no value", b'{"t_ns": }'),
        ("trailing text", json.dumps(GOOD_LINE).encode() + b" trailing"),
        ("NaN t_ns", json.dumps(GOOD_LINE).replace("1700000000000000000", "NaN").encode()),
        ("1e999 t_ns", json.dumps(GOOD_LINE).replace("1700000000000000000", "1e999").encode()),
        (
            "5000-digit t_ns",
            json.dumps(GOOD_LINE).replace("1700000000000000000", "9" * 5000).encode(),
        ),
        ("deep nesting", b"[" * 100_000),
        ("NUL", b"\x00"),
        ("NULs", b"\x00" * 10),
        ("single quotes", json.dumps(GOOD_LINE).replace('"', "'").encode()),
    ):
        yield label, raw
    wrong: dict[str, list[Any]] = {
        "t_ns": ["1", 1.5, True, None, [], {}, -1, 2**63, 2**64, 10**30, -(2**63), 1e18],
        "device": [1, None, "", [], {}, True],
        # ("0x2a37" and the full UUID are spellings of 2a37, not bad input)
        "char": [1, None, "", "2a99", "zzz", "2a3", "2a37-", []],
        "hex": [1, None, [], "zz", "1", "0x16", "16 32 zz", "", "16", "１６"],
    }
    for key, values in wrong.items():
        for value in values:
            yield f"{key} = {value!r}", json.dumps({**GOOD_LINE, key: value}).encode()
    for key in GOOD_LINE:
        yield f"no {key}", json.dumps({k: v for k, v in GOOD_LINE.items() if k != key}).encode()
    yield "UTF-16 line", json.dumps(GOOD_LINE).encode("utf-16")
    yield (
        "Latin-1 device",
        json.dumps({**GOOD_LINE, "device": "é"}, ensure_ascii=False).encode("latin-1"),
    )
    rng = random.Random(7)
    for n in range(25):
        raw = b""
        while not raw.strip():
            raw = bytes(
                rng.choice([b for b in range(256) if b != 0x0A]) for _ in range(rng.randint(1, 200))
            )
        yield f"binary {n}", raw


def replay_cases() -> Iterator[Bad]:
    sample = SAMPLE_RECORDING.read_bytes().splitlines(keepends=True)
    for label, raw in bad_lines():
        text = b"".join(sample[:BEFORE]) + raw + b"\n" + b"".join(sample[BEFORE : BEFORE + 10])
        files = {"rec.jsonl": text}
        yield Bad("replay", label, ("replay", "{dir}/rec.jsonl"), f"rec.jsonl:{BEFORE + 1}:", files)
        yield Bad(
            "replay --skip-malformed",
            label,
            ("replay", "{dir}/rec.jsonl", "--skip-malformed"),
            f"rec.jsonl:{BEFORE + 1}:",
            files,
            statuses=frozenset({0}),
        )
    yield Bad(
        "replay",
        "only garbage, skipped",
        ("replay", "{dir}/rec.jsonl", "--skip-malformed"),
        "rec.jsonl",
        {"rec.jsonl": b"garbage\n\xff\xfe\n"},
    )
    yield Bad(
        "replay", "empty file", ("replay", "{dir}/rec.jsonl"), "rec.jsonl", {"rec.jsonl": b""}
    )


# --- athlete ids and flags ------------------------------------------------------------------


def id_cases() -> Iterator[Bad]:
    for bad in BAD_IDS:
        yield Bad(
            "id",
            f"replay --athlete {bad!r}",
            ("replay", str(SAMPLE_RECORDING), "--athlete", bad),
            "--athlete",
        )
        yield Bad(
            "id",
            f"pair add --athlete {bad!r}",
            (
                "pair",
                "add",
                "AA:BB:CC:DD:EE:01",
                "--athlete",
                bad,
                "--kind",
                "strap",
                "--registry",
                "{dir}/reg.toml",
            ),
            "--athlete",
        )
        yield Bad(
            "id",
            f"record --athlete {bad!r}",
            ("record", "{dir}/r.jsonl", "--emulated", "--athlete", bad),
            "--athlete",
        )


def flag_cases() -> Iterator[Bad]:
    sample = str(SAMPLE_RECORDING)
    rr = str(ROOT / "tests" / "data" / "nsr2db" / "nsr001_rr_secs.txt")
    table: list[tuple[tuple[str, ...], str, list[str]]] = [
        (("replay", sample), "--speed", ["-1", "nan", "inf", "-inf", "x", "", "1e999"]),
        (("record", "{dir}/r.jsonl", "--emulated"), "--duration", ["0", "-1", "nan", "inf", "x"]),
        (("record", "{dir}/r.jsonl", "--emulated"), "--speed", ["0", "-1", "1e9", "nan", "x"]),
        (("run", "--config", "{dir}/none.toml"), "--duration", ["0", "-1", "nan", "x"]),
        (("run", "--config", "{dir}/none.toml"), "--speed", ["0", "-1", "nan", "x"]),
        (("analyze", "rr", rr), "--unit", ["bogus", ""]),
        (("analyze", "rr", rr), "--psd", ["bogus"]),
        (("scan",), "--timeout", ["0", "-1", "nan", "x"]),
    ]
    for prefix, flag, values in table:
        for value in values:
            yield Bad(
                "flag", f"{' '.join(prefix[:1])} {flag} {value!r}", (*prefix, flag, value), flag
            )
    yield Bad(
        "flag",
        "record --speed without --emulated",
        ("record", "{dir}/r.jsonl", "--speed", "2"),
        "--speed",
    )
    required: dict[str, tuple[str, ...]] = {
        "replay": (sample,),
        "record": ("{dir}/r.jsonl",),
        "decode": ("2a37", "16"),
        "analyze": ("rr", rr),
        "config": ("check",),
        "report": ("--out", "{dir}/r.png"),
    }
    for command in (
        "demo",
        "run",
        "replay",
        "record",
        "doctor",
        "morning",
        "grip-test",
        "scan",
        "pair",
        "decode",
        "analyze",
        "config",
        "notify",
        "report",
    ):
        # the command's required arguments given: argparse reports a missing one first
        argv = (command, *required.get(command, ()), "--bogus")
        yield Bad("flag", f"{command} --bogus", argv, "--bogus")
    yield Bad("flag", "replay without FILE", ("replay",), "FILE")
    yield Bad("flag", "record without FILE", ("record",), "FILE")
    yield Bad(
        "flag", "pair add without --athlete", ("pair", "add", "AA:BB:CC:DD:EE:01"), "--athlete"
    )
    for char, payload, names in (
        ("2a37", "zz", "'zz'"),
        ("2a99", "00", "2a99"),
        ("2a37", "16", "2a37"),
        ("2a37", "", "2a37"),
    ):
        yield Bad("flag", f"decode {char} {payload!r}", ("decode", char, payload), names)
    yield Bad(
        "flag",
        "record into an existing file",
        ("record", "{dir}/exists.jsonl", "--emulated"),
        "exists.jsonl",
        {"exists.jsonl": b""},
    )
    yield Bad(
        "flag",
        "record into a missing folder",
        ("record", "{dir}/no/r.jsonl", "--emulated"),
        "no/r.jsonl",
    )


# --- every file a command reads, given bytes that are not its format -------------------------

FILE_FLAGS: list[tuple[tuple[str, ...], str]] = [
    (("analyze", "rr", "{file}"), "in.dat"),
    (("analyze", "smo2", "{file}"), "in.dat"),
    (("pair", "list", "--registry", "{file}"), "in.dat"),
    (("replay", str(SAMPLE_RECORDING), "--config", "{file}"), "in.dat"),
    (("run", "--config", "{file}"), "in.dat"),
    (("record", "{dir}/r.jsonl", "--config", "{file}"), "in.dat"),
    (("morning", "--config", "{file}"), "in.dat"),
    (("grip-test", "--config", "{file}"), "in.dat"),
    # (`report --store` on a file that is not SQLite names it but says no fix yet: the
    # corrupt-store work of issue 11 — move it aside, salvage — gives it one.)
    (
        ("notify", "--mqtt", "mqtt://127.0.0.1:9", "--exec", "true", "--state", "{file}"),
        "in.dat",
    ),
]


def file_cases() -> Iterator[Bad]:
    rng = random.Random(5)
    contents = {
        "random bytes": bytes(rng.randrange(256) for _ in range(600)),
        "high bytes": bytes(range(0x80, 0x100)),
        "UTF-16 text": "800\n810\n[a]\nb = 1\n".encode("utf-16"),
        "NULs": b"\x00" * 64,
        "a PNG header": b"\x89PNG\r\n\x1a\n" + bytes(rng.randrange(256) for _ in range(64)),
    }
    for argv, names in FILE_FLAGS:
        for label, data in contents.items():
            yield Bad(
                "file",
                f"{' '.join(argv[:2])} given {label}",
                tuple(a.replace("{file}", "{dir}/in.dat") for a in argv),
                names,
                {"in.dat": data},
            )


FAMILIES: dict[str, Callable[[], Iterator[Bad]]] = {
    "config": config_cases,
    "replay": replay_cases,
    "id": id_cases,
    "flag": flag_cases,
    "file": file_cases,
}


# --- running ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: int | None
    stdout: str
    stderr: str
    escaped: BaseException | None = None


def run_in_process(argv: list[str]) -> Outcome:
    out, err = io.StringIO(), io.StringIO()
    status: int | None = None
    escaped: BaseException | None = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse
            status = int(exc.code or 0)
        except BaseException as exc:  # a traceback in real life
            escaped = exc
    return Outcome(status, out.getvalue(), err.getvalue(), escaped)


def materialise(case: Bad, directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in case.files.items():
        (directory / name).write_bytes(data)
    return [arg.replace("{dir}", str(directory)) for arg in case.argv]


def judge(case: Bad, outcome: Outcome, directory: Path) -> str | None:
    """Why ``outcome`` fails the campaign's rules (None: it passes)."""
    if outcome.escaped is not None:
        return f"escaped main: {type(outcome.escaped).__name__}: {outcome.escaped}"
    if "Traceback" in outcome.stderr:
        return f"traceback:\n{outcome.stderr}"
    if outcome.status not in case.statuses:
        return f"status {outcome.status}, expected {sorted(case.statuses)}: {outcome.stderr!r}"
    names = case.names.replace("{dir}", str(directory))
    if outcome.status == 0:
        if case.family.endswith("--skip-malformed"):
            lines = [ln for ln in outcome.stderr.splitlines() if ln.startswith("skipped ")]
            if len(lines) != 1 or names not in lines[0]:
                return f"no one 'skipped' line naming {names!r}: {outcome.stderr!r}"
        return None
    lines = outcome.stderr.splitlines()
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr, expected one: {outcome.stderr!r}"
    line = lines[0]
    if ": error: " not in line or not line.startswith("redox-streamer"):
        return f"not an error line: {line!r}"
    if names not in line:
        return f"does not name {names!r}: {line!r}"
    if not FIX_WORDS.search(line.split(": error: ", 1)[1]):
        return f"says no fix: {line!r}"
    return None


def run_family(family: str, tmp_path: Path) -> list[str]:
    failures = []
    for n, case in enumerate(FAMILIES[family]()):
        directory = tmp_path / f"{n}"
        argv = materialise(case, directory)
        why = judge(case, run_in_process(argv), directory)
        if why is not None:
            failures.append(f"[{case.family}] {case.label}: {why}")
    return failures


@pytest.mark.parametrize("family", FAMILIES)
def test_every_bad_input_is_one_line_naming_it_and_the_fix(family: str, tmp_path: Path) -> None:
    failures = run_family(family, tmp_path)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)


def test_the_base_config_is_valid(tmp_path: Path) -> None:
    # Every config case spoils one thing of this one.
    (tmp_path / "redox.toml").write_text(toml_dump(BASE_CONFIG), encoding="utf-8")
    outcome = run_in_process(["config", "check", "--path", str(tmp_path / "redox.toml")])
    assert (outcome.status, outcome.stderr) == (0, "")


def test_the_campaign_is_hundreds_of_inputs() -> None:
    counts = {family: sum(1 for _ in make()) for family, make in FAMILIES.items()}
    assert sum(counts.values()) >= 600, counts
    assert min(counts.values()) >= 40, counts


SUBPROCESS_SAMPLE = {"config": 2, "replay": 2, "id": 1, "flag": 1, "file": 1}
"""Cases per family run through the real console entry too (they start together; the
imports dominate, ~2 s of CPU each)."""


def test_a_sample_through_the_console_entry_prints_no_traceback(tmp_path: Path) -> None:
    rng = random.Random(3)
    sample = [
        case
        for family, n in SUBPROCESS_SAMPLE.items()
        for case in rng.sample(list(FAMILIES[family]()), n)
    ]
    started = []
    for n, case in enumerate(sample):
        directory = tmp_path / f"{n}"
        argv = materialise(case, directory)
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", *argv],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        started.append((case, directory, proc))
    failures = []
    for case, directory, proc in started:
        out, err = proc.communicate(timeout=120)
        why = judge(case, Outcome(proc.returncode, out, err), directory)
        if why is not None:
            failures.append(f"[{case.family}] {case.label}: {why}")
    assert not failures, "\n".join(failures)

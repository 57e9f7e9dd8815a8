"""`replay` and `record` on the inputs issue 11 found broken, one test each, and the
validation holes around them (athlete ids, numeric settings, non-UTF-8 files, NUL in
alerts).

In-process through :func:`streamer.cli.main`; the pipe and signal cases, which need a real
process, are in ``test_cli_pipes_and_signals.py``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from devices.recording import read_recording
from streamer.cli import main
from streamer.commands.replay import SAMPLE_RECORDING
from streamer.config import ConfigError, load_config
from streamer.notify.channels import CommandChannel
from streamer.notify.notifier import Notifier, SeenStore, alerts_in_message
from tests.test_cli_errors import run_main, the_error
from tests.test_notify import alerts_payload, make_alert

GOOD = {"t_ns": 1_700_000_000_000_000_000, "device": "strap", "char": "2a37", "hex": "1632ea04"}


def _recording(tmp_path: Path, *lines: bytes, name: str = "rec.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def _sample_lines(n: int) -> list[bytes]:
    return SAMPLE_RECORDING.read_bytes().splitlines()[:n]


# --- the shipped sample and `record` ---------------------------------------------------------


def test_the_shipped_sample_replays_to_hrv_and_smo2_results(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["replay", str(SAMPLE_RECORDING), "--session", "--json"]) == 0
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = {r["kind"] for r in results}
    assert "hrv" in kinds
    assert "oxygenation" in kinds
    assert any(r.get("scope") == "session" for r in results)


def test_replay_help_names_the_shipped_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(["replay", "--help"]) == 0
    out = capsys.readouterr().out
    assert str(SAMPLE_RECORDING) in out
    assert "redox-streamer record" in out
    assert SAMPLE_RECORDING.is_file()


def test_record_emulated_writes_what_replay_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "rec.jsonl"
    argv = ["record", str(out), "--emulated", "--duration", "3", "--speed", "20"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("recorded ")
    notifications = list(read_recording(out))
    assert {n.device for n in notifications} <= {"strap", "smo2"}
    assert {n.char for n in notifications} <= {"2a37", "2a19", "moxy"}
    assert sum(n.char == "2a37" for n in notifications) >= 5
    times = [n.t_ns for n in notifications]
    assert max(times) - min(times) > 10e9  # the emulated clock: 20x faster than the 3 s
    assert main(["replay", str(out), "--live", "--json"]) == 0
    assert '"kind": "heart_rate"' in capsys.readouterr().out


def test_record_refuses_to_write_over_a_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _recording(tmp_path, json.dumps(GOOD).encode())
    assert main(["record", str(out), "--emulated"]) == 2
    assert "already exists" in the_error(capsys.readouterr().err)
    assert len(out.read_bytes().splitlines()) == 1


# --- replay's bad lines ----------------------------------------------------------------------


def test_a_t_ns_beyond_64_bits_is_refused_naming_the_line_not_waited_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # At the recorded pace this line meant a wait of centuries.
    huge = json.dumps({**GOOD, "t_ns": 2**63}).encode()
    path = _recording(tmp_path, *_sample_lines(3), huge)
    assert main(["replay", str(path), "--speed", "1"]) == 2
    error = the_error(capsys.readouterr().err)
    assert "rec.jsonl:4: t_ns 9223372036854775808" in error
    assert "2^63-1" in error


def test_skip_malformed_skips_a_garbage_line_and_says_how_many(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _sample_lines(200)
    path = _recording(tmp_path, *lines[:50], b"garbage", b"\xff\xfe\x00", *lines[50:])
    assert main(["replay", str(path)]) == 2
    assert "rec.jsonl:51: not JSON" in the_error(capsys.readouterr().err)
    assert main(["replay", str(path), "--skip-malformed", "--json"]) == 0
    captured = capsys.readouterr()
    assert '"kind": "hrv"' in captured.out  # the lines after the garbage were replayed
    assert captured.err.startswith("skipped 2 malformed line(s)")
    assert "rec.jsonl:51: not JSON" in captured.err


def test_binary_garbage_is_one_line_naming_the_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_bytes(b'{"t_ns": ' + bytes(range(0x80, 0x100)) * 4)
    assert main(["replay", str(path)]) == 2
    error = the_error(capsys.readouterr().err)
    assert "rec.jsonl:1: not UTF-8 text (byte 0x80 at column 10)" in error


@pytest.mark.parametrize("athlete", ["", "a/b", "x+y", "#", "alice\n", "a b"])
def test_replay_refuses_an_athlete_id_it_would_have_to_rewrite(
    athlete: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `a/b`, `x+y` and `#` became colliding topic levels; '' printed 401 tracebacks.
    assert run_main(["replay", str(SAMPLE_RECORDING), "--athlete", athlete]) == 2
    error = the_error(capsys.readouterr().err)
    assert f"argument --athlete: {athlete!r} is not a topic-safe id" in error


# --- one athlete-id check everywhere ---------------------------------------------------------


def test_pair_add_refuses_an_athlete_id_the_config_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "devices.toml"
    argv = ["pair", "add", "AA:BB:CC:DD:EE:01", "--athlete", "a/b", "--kind", "strap"]
    assert run_main([*argv, "--registry", str(registry)]) == 2
    assert "'a/b' is not a topic-safe id" in the_error(capsys.readouterr().err)
    assert not registry.exists()


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "redox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_an_athlete_id_with_a_trailing_newline_is_not_alice(tmp_path: Path) -> None:
    # "alice\n" passed the old check ($ matches before a final newline) and shared
    # redox/alice/* with alice.
    path = _config(tmp_path, '[[athletes]]\nid = "alice\\n"\n')
    with pytest.raises(ConfigError, match=r"athletes\[0\]\.id: 'alice\\n' is not a topic-safe"):
        load_config(path)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("mqtt", "keepalive_s", "70000"),
        ("mqtt", "publish_timeout_s", "1e300"),
        ("influx", "timeout_s", "1e300"),
        ("influx", "batch_size", "10000000"),
        ("influx", "flush_interval_s", "86400"),
    ],
)
def test_a_number_far_out_of_range_fails_config_check_naming_its_range(
    section: str, key: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = (
        'url = "mqtt://127.0.0.1:1883"'
        if section == "mqtt"
        else ('url = "http://127.0.0.1:8086"\ndb = "redox"')
    )
    path = _config(tmp_path, f"[{section}]\n{server}\n{key} = {value}\n")
    assert main(["config", "check", "--path", str(path)]) == 2
    error = the_error(capsys.readouterr().err)
    assert len(error.splitlines()) == 1
    assert f"{section}.{key}: expected" in error
    assert " to " in error  # the allowed range
    assert f"write e.g. {key} = " in error


def test_a_config_that_is_not_utf8_names_the_line_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "redox.toml"
    path.write_bytes(b'[[athletes]]\nid = "alice"\nname = "Al\xefce"\n')
    assert main(["config", "check", "--path", str(path)]) == 2
    error = the_error(capsys.readouterr().err)
    assert "redox.toml: line 3: not UTF-8 text (byte 0xef)" in error
    assert "save it as UTF-8" in error


def test_a_config_with_a_utf8_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "redox.toml"
    path.write_bytes(b'\xef\xbb\xbf[[athletes]]\nid = "alice"\n')
    assert [a.id for a in load_config(path).athletes] == ["alice"]


# --- notify and NUL ---------------------------------------------------------------------------


def test_an_alert_with_nul_is_notified_not_a_crash(tmp_path: Path) -> None:
    # A NUL cannot go into an argument or the environment of a command: the notifier
    # crashed on it, and on a retained alert at every start.
    alert = make_alert()
    spoiled = alerts_payload(alert, [alert], 1).replace(b"resting HR", b"resting\\u0000HR")
    assert b"\\u0000" in spoiled
    out = tmp_path / "delivered"
    notifier = Notifier(
        [CommandChannel(f'printf "%s" "$REDOX_MESSAGE" > "{out}"')],
        SeenStore(tmp_path / "state.json"),
    )
    delivered = asyncio.run(notifier.handle("redox/ann/alerts", spoiled))
    assert len(delivered) == 1
    assert "resting\N{REPLACEMENT CHARACTER}HR" in out.read_text(encoding="utf-8")
    (notice,) = alerts_in_message("redox/ann/alerts", spoiled)
    assert "\0" not in notice.message

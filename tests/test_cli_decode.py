"""``redox-streamer decode CHAR HEX [--json]``: human and JSON output, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import main

REPO = Path(__file__).resolve().parents[1]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["decode", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_moxy_spec_vector_in_human_form(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "moxy", "CB 06 15 02 16 02 C0 04 00")
    assert status == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "Moxy SmO2 sensor data, 9 bytes"
    assert lines[1].split() == ["smo2_pct", "53.3"]
    assert lines[2].split() == ["thb_gdl", "12.16"]
    assert "count              1739" in out


def test_unquoted_bytes_and_colons_are_the_same_payload(capsys: pytest.CaptureFixture[str]) -> None:
    spaced = _run(capsys, "2a37", "16", "48", "00", "04", "20", "03")
    colons = _run(capsys, "2a37", "16:48:00:04:20:03")
    assert spaced == colons
    assert "rr_ms    1000, 781.25" in spaced[1]


@pytest.mark.parametrize(
    ("char", "hex_text", "expected"),
    [
        (
            "2a37",
            "1F 2C 01 E8 03 00 04 00 02",
            {"hr_bpm": 300, "rr_ms": [1000.0, 500.0], "contact": "detected", "energy_kj": 1000},
        ),
        ("2a19", "55", {"battery_pct": 85}),
        ("2a5f", "00 FF 07 3C 00", {"spo2_pct": None, "pulse_bpm": 60.0}),
        (
            "2a63",
            "20 00 FA 00 0A 00 00 04",
            {"power_w": 250, "flags": 32, "crank_revolutions": 10, "crank_event_time_s": 1.0},
        ),
        (
            "tindeq",
            "01 08 00 00 20 41 10 27 00 00",
            {"response": "weight", "samples": [{"force_kg": 10.0, "t_us": 10000}]},
        ),
        (
            "tindeq",
            "00 04 D2 0F 00 00",
            {"response": "command_response", "payload_hex": "d20f0000", "battery_mv": 4050},
        ),
        (
            "00002A37-0000-1000-8000-00805F9B34FB",
            "00 3C",
            {"hr_bpm": 60, "rr_ms": [], "contact": "not_supported"},
        ),
    ],
)
def test_json_output_has_unit_named_fields(
    capsys: pytest.CaptureFixture[str], char: str, hex_text: str, expected: dict[str, object]
) -> None:
    status, out, _ = _run(capsys, char, hex_text, "--json")
    assert status == 0
    decoded = json.loads(out)
    assert decoded.pop("char") in (char, "2a37")
    assert decoded == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("2a63", "20 00 FA 00 0A 00"), "2a63: last crank event time at offset 6 needs 2 bytes"),
        (("moxy", "CB 06 15"), "moxy: SmO2 at offset 2 needs 2 bytes, the packet has 3"),
        (("2a19", "FF"), "battery level 255 % is above 100 %"),
        (("2a37", "1G"), "'G' (hex digit 2) is not a hex digit"),
        (("2a37", "104"), "3 hex digits"),
        (("2a99", "00"), "unknown characteristic '2a99'; use one of 2a37"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem_with_status_2(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    status, out, err = _run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("redox-streamer decode: error: ")
    assert message in err


def test_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["decode", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out
    assert "redox-streamer decode moxy CB 06 15 02 16 02 C0 04 00" in out


def test_console_entry_point_exit_status() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "decode", "2a19", "55", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0
    assert json.loads(ok.stdout) == {"char": "2a19", "battery_pct": 85}
    bad = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "decode", "2a19", "65"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "101 % is above 100 %" in bad.stderr

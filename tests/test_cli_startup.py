"""``redox-streamer --help`` answers without importing the commands (issue 10: it took
1.3 s and 146 MB when every command, and Bumble behind ``demo``, was imported first).

bench/startup.py measures the time and memory; these tests pin what makes them small.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("bumble", "bleak", "numpy", "scipy", "matplotlib", "aiomqtt", "rich")
"""Third-party packages a command may need; none is needed to print the help."""


def _modules_after(*argv: str) -> list[str]:
    """The modules a fresh interpreter holds after ``main(argv)`` (its exit ignored)."""
    code = (
        "import contextlib, io, json, sys\n"
        "from streamer.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main({list(argv)!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    modules: list[str] = json.loads(result.stdout)
    return modules


def _subcommand_helps(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {action.dest: action.help for action in sub._choices_actions}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_no_command_and_no_heavy_package(flag: str) -> None:
    modules = _modules_after(flag)
    commands = [m for m in modules if m.startswith("streamer.commands.")]
    heavy = [m for m in modules if m.split(".")[0] in HEAVY]
    assert (commands, heavy) == ([], [])


def test_a_commands_help_imports_that_command_only() -> None:
    modules = _modules_after("decode", "--help")
    commands = {m for m in modules if m.startswith("streamer.commands.")}
    assert commands == {"streamer.commands.decode"}


def test_help_lists_every_command_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps long summaries
    for command in COMMANDS:
        assert f"{command.name} {command.summary}" in text


def test_each_command_module_registers_the_summary_the_table_lists() -> None:
    registered = _subcommand_helps(build_parser())  # every module imported
    assert registered == {command.name: command.summary for command in COMMANDS}


def test_the_stubs_list_the_commands_in_the_same_order() -> None:
    assert list(_subcommand_helps(build_parser(()))) == list(_subcommand_helps(build_parser()))


def test_a_command_runs_after_the_stub_parse_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "2a19", "55", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"char": "2a19", "battery_pct": 85}


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bogus"])
    assert exited.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err

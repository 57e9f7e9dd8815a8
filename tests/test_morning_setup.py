"""`morning` keeps its reading where its help says — the config's store, or with
``--emulated`` and no config the emulated store in the user data dir — says where once
it is kept, and finds the athlete's strap in the paired registry (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.app.guided import EMULATED_STORE_FILENAME
from streamer.cli import main
from streamer.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("REDOX_CONFIG", raising=False)
    return tmp_path / "data" / "redox-streamer"


def test_emulated_morning_without_config_is_kept_in_the_emulated_store_and_says_so(
    data_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["morning", "--emulated", "--speed", "60", "--athlete", "ann", "--span", "60"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    store = data_home / EMULATED_STORE_FILENAME
    assert "reading accepted" in out
    assert f"the reading kept in {store}" in out
    assert not (data_home / "redox.sqlite3").exists()  # apart from real readings
    with Store(store) as s:
        (row,) = s.morning_history("ann")
    assert row.data["accepted"] is True
    help_text = _help("morning", capsys)
    assert EMULATED_STORE_FILENAME in help_text


def test_morning_uses_the_athletes_paired_strap_and_the_configs_store(
    data_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "redox.toml"
    store = tmp_path / "mine.sqlite3"
    config.write_text(f'[store]\npath = "{store}"\n[[athletes]]\nid = "ann"\n')
    registry = tmp_path / "devices.toml"
    assert (
        main(
            [
                "pair",
                "add",
                "C0:00:00:00:77:01",
                "--athlete",
                "ann",
                "--kind",
                "strap",
                "--registry",
                str(registry),
            ]
        )
        == 0
    )
    capsys.readouterr()
    argv = [
        "morning",
        "--config",
        str(config),
        "--registry",
        str(registry),
        "--emulated",
        "--speed",
        "60",
        "--span",
        "60",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "connecting to the strap C0:00:00:00:77:01" in out  # the paired address
    assert f"the reading kept in {store}" in out
    with Store(store) as s:
        assert len(s.morning_history("ann")) == 1


def test_morning_without_a_strap_says_how_to_pair_one(
    data_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "redox.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "s.sqlite3"}"\n[[athletes]]\nid = "ann"\n')
    argv = ["morning", "--config", str(config), "--registry", str(tmp_path / "none.toml")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "redox-streamer pair add --athlete ann --kind strap" in err
    assert err.count("\n") == 1


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return capsys.readouterr().out

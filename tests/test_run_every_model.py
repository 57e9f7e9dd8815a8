"""Every device model end to end: ``config check`` accepts exactly what ``run`` can stream,
and ``run --emulated`` streams each model's records to a real mosquitto on the topics
docs/topics.md documents."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

import aiomqtt
import pytest

from devices.drivers import driver_for
from devices.emulated import emulator_class
from devices.kinds import DeviceKind
from devices.models import MODELS, STREAMABLE_KINDS
from devices.records import ForceSample, HeartRateSample, PowerSample, SmO2Sample, SpO2Sample
from streamer.cli import main
from streamer.config import load_config
from streamer.errors import TERMINATED_STATUS
from streamer.results import RESERVED_KEYS
from tests.servers import Mosquitto
from tests.test_docs_in_sync import TOPIC_SECTIONS, TOPIC_TREE, row, sections

ROOT = Path(__file__).resolve().parents[1]

LIVE_KIND = {
    HeartRateSample: "heart_rate",
    SmO2Sample: "smo2",
    ForceSample: "force",
    PowerSample: "power",
    SpO2Sample: "spo2",
}
"""The ``kind`` of a live payload per record type, as docs/topics.md lists them."""


def _config(tmp_path: Path, devices: str, mqtt_url: str | None = None) -> Path:
    path = tmp_path / "redox.toml"
    mqtt = f'[mqtt]\nurl = "{mqtt_url}"\n' if mqtt_url else ""
    path.write_text(
        f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n{mqtt}\n'
        f'[[athletes]]\nid = "ann"\nname = "Ann"\n{devices}'
    )
    return path


@pytest.mark.parametrize("kind", list(DeviceKind), ids=lambda k: k.value)
def test_config_check_accepts_a_device_kind_iff_run_can_drive_and_emulate_it(
    kind: DeviceKind, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(
        tmp_path, f'[[athletes.devices]]\nkind = "{kind.value}"\naddress = "C0:00:00:00:40:01"\n'
    )
    accepted = main(["config", "check", "--path", str(path)]) == 0
    assert accepted == (kind in STREAMABLE_KINDS)
    if not accepted:
        err = capsys.readouterr().err
        assert "kind" in err
        assert all(k.value in err for k in STREAMABLE_KINDS)  # it names the choices
        return
    device = load_config(path).athletes[0].devices[0]
    assert device.address is not None
    for model in device.device_models:  # several: the device tells which at connect
        assert model.kind is kind
        assert driver_for(model, device.address).model is model  # what run builds
        assert emulator_class(model).kind == kind.value  # what run --emulated starts
    assert driver_for(device.device_models, device.address).kind is kind


def test_config_check_rejects_a_model_of_another_kind_and_names_the_right_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(
        tmp_path,
        '[[athletes.devices]]\nkind = "grip"\nmodel = "moxy"\naddress = "C0:00:00:00:40:01"\n',
    )
    assert main(["config", "check", "--path", str(path)]) != 0
    err = capsys.readouterr().err
    assert "model" in err
    assert "tindeq, activ5" in err


def test_an_activ5_in_the_config_is_driven_as_an_activ5_by_model_or_by_name(
    tmp_path: Path,
) -> None:
    path = _config(
        tmp_path,
        '[[athletes.devices]]\nkind = "grip"\nmodel = "activ5"\naddress = "C0:00:00:00:40:01"\n'
        '[[athletes.devices]]\nkind = "grip"\nname = "ACTIV5-12AB"\n'
        '[[athletes.devices]]\nkind = "grip"\nname = "Progressor_7"\n',
    )
    models = [getattr(d.device_model, "name", None) for d in load_config(path).athletes[0].devices]
    assert models == ["activ5", "activ5", "tindeq"]


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_run_emulated_streams_every_device_model_to_mqtt_on_its_documented_topic(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    devices = "".join(
        f'[[athletes.devices]]\nid = "{m.name}"\nkind = "{m.kind.value}"\nmodel = "{m.name}"\n'
        f'address = "C0:00:00:00:30:{n:02X}"\n'
        for n, m in enumerate(MODELS, start=1)
    )
    config = _config(tmp_path, devices, mosquitto.url)
    expected = {f"redox/ann/{m.name}/live": LIVE_KIND[m.records[0]] for m in MODELS}
    got: dict[str, dict[str, object]] = {}
    subscribed, all_arrived = asyncio.Event(), asyncio.Event()

    async def listen() -> None:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe("redox/#")
            subscribed.set()
            async for message in client.messages:
                topic = str(message.topic)
                if topic in expected and topic not in got:
                    assert isinstance(message.payload, bytes)
                    got[topic] = json.loads(message.payload)
                    if got.keys() == expected.keys():
                        all_arrived.set()

    listener = asyncio.create_task(listen())
    async with asyncio.timeout(10):
        await subscribed.wait()
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer.cli",
        "run",
        "--config",
        str(config),
        "--emulated",
        "--speed",
        "5",
        "--duration",
        "90",  # a bound only: the test stops it as soon as every topic has spoken
        "--plain",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stopped = False
    try:
        arrived = asyncio.create_task(all_arrived.wait())
        exited = asyncio.create_task(run.wait())
        await asyncio.wait({arrived, exited}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        arrived.cancel()
        exited.cancel()
    finally:
        if run.returncode is None:
            run.send_signal(signal.SIGTERM)  # what Ctrl-C does: flush and stop
            stopped = True
        stdout, stderr = await run.communicate()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    # Stopped by SIGTERM: 128 + 15, as every long-running command reports it (issue 11).
    assert run.returncode == (TERMINATED_STATUS if stopped else 0), stderr.decode()[-3000:]
    assert "stopped:" in stdout.decode()
    assert got.keys() == expected.keys(), f"silent: {sorted(expected.keys() - got.keys())}"
    assert row(TOPIC_TREE, "`<base>/<athlete>/<device>/live`") is not None
    live = sections(ROOT / "docs" / "topics.md", "### ")
    assert TOPIC_SECTIONS["`<base>/<athlete>/<device>/live`"]
    for topic, payload in got.items():
        kind = expected[topic]
        assert payload["kind"] == kind
        assert payload["device"] == topic.split("/")[2]
        documented = next(text for title, text in live.items() if title.startswith(f"{kind} ("))
        for key in payload.keys() - RESERVED_KEYS:
            assert row(documented, f"`{key}`") is not None, f"{kind}.{key} not in docs/topics.md"

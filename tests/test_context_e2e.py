"""Context entry end to end, against a real mosquitto started from the SHIPPED config and ACL:
``run --emulated`` (a Moxy and a power meter) plus ``redox-streamer session|rpe`` drive the
session rules to alerts — ``smo2_slow_recovery``, ``rpe_power_mismatch`` (an RPE given after
the session ended), ``hi_spacing`` — with no synthetic history; the morning rules
(``hrv_downtrend``, ``rhr_creep``) from an imported HRV4Training history and one live
morning reading framed by ``set/morning`` commands; then ``rpe`` offline, and the ACL: who
may command."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest

from streamer import cli
from streamer.store import Store
from tests.shipped_mosquitto import ShippedBroker

ROOT = Path(__file__).resolve().parents[1]
SPEED = 20  # emulated seconds per real second: an effort cycle (3 min) takes 9 s


@dataclass
class Listener:
    """Every message on ``redox/#`` as user ``homeassistant`` (reads everything)."""

    broker: ShippedBroker
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    _new: asyncio.Event = field(default_factory=asyncio.Event)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            username="homeassistant",
            password=self.broker.password("homeassistant"),
        ) as client:
            await client.subscribe("redox/#", qos=1)
            self._ready.set()
            async for m in client.messages:
                payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                self.messages.append((str(m.topic), payload, m.retain))
                self._new.set()

    def json_on(self, topic: str, since: int = 0) -> list[dict[str, object]]:
        return [json.loads(p) for t, p, _ in self.messages[since:] if t == topic and p]

    async def until(self, what: str, ok: Callable[[], bool], timeout_s: float = 90) -> None:
        """Wait (woken by each message, never polling) until ``ok()``."""
        try:
            async with asyncio.timeout(timeout_s):
                while not ok():
                    self._new.clear()
                    await self._new.wait()
        except TimeoutError:
            topics = sorted({t for t, _, _ in self.messages})
            raise AssertionError(f"timed out waiting for {what}; topics seen: {topics}") from None


SESSION_DEVICES = (
    # The emulated Moxy recovers with τ = 30 s (T95 ≈ 90 s), a healthy athlete: this
    # athlete's slow-recovery threshold is set below that so that the rule's decision,
    # not the emulator's physiology, is what the test drives.
    "[athletes.rules]\nsmo2_slow_recovery_s = 30\n"
    '[[athletes.devices]]\nid = "moxy"\nkind = "smo2"\naddress = "C0:00:00:00:41:01"\n'
    '[[athletes.devices]]\nid = "power"\nkind = "power"\naddress = "C0:00:00:00:41:02"\n'
)
STRAP = '[[athletes.devices]]\nid = "strap"\nkind = "strap"\naddress = "C0:00:00:00:41:03"\n'


def _config(tmp_path: Path, broker: ShippedBroker, devices: str = SESSION_DEVICES) -> Path:
    path = tmp_path / "redox.toml"
    path.write_text(
        f'[store]\npath = "{tmp_path / "store.sqlite3"}"\n'
        f'[mqtt]\nurl = "{broker.url("redox-streamer")}"\n'
        # session, rpe: their own account (the shipped broker lets one connection per
        # account stand, and `run` holds redox-streamer's).
        f'[mqtt.cli]\nusername = "redox-cli"\npassword = "{broker.password("redox-cli")}"\n'
        '[[athletes]]\nid = "ann"\nname = "Ann"\n' + devices
    )
    return path


async def _start_run(config: Path, speed: float = SPEED) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streamer.cli",
        "run",
        "--config",
        str(config),
        "--emulated",
        "--speed",
        str(speed),
        "--duration",
        "600",  # a bound only: the test stops it when done
        "--plain",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _commands_online(listener: Listener) -> bool:
    states = [p for t, p, _ in listener.messages if t == "redox/bridge/commands"]
    return bool(states) and states[-1] == b"online"


async def _cli(*argv: str) -> int:
    """``redox-streamer ARGV`` in this process (the console script's code path)."""
    return await asyncio.to_thread(cli.main, list(argv))


def _scope(payload: dict[str, object]) -> object:
    return payload.get("scope")


def _raised(listener: Listener, rule: str) -> bool:
    for alert in listener.json_on("redox/ann/alerts"):
        event = alert.get("event")
        if isinstance(event, dict) and event.get("rule") == rule and event.get("state") == "raised":
            return True
    return False


async def test_session_rules_fire_from_run_emulated_and_session_rpe_commands(
    tmp_path: Path, shipped_mosquitto: ShippedBroker
) -> None:
    config = _config(tmp_path, shipped_mosquitto)
    common = ("--athlete", "ann", "--config", str(config))
    listener = Listener(shipped_mosquitto)
    listening = asyncio.create_task(listener.run())
    async with asyncio.timeout(10):
        await listener._ready.wait()
    # No `run` yet: a session cannot start (nothing to frame), and says so.
    assert await _cli("session", "start", *common) == 1

    run = await _start_run(config)
    oxygenation = "redox/ann/oxygenation"
    try:
        await listener.until("run listening for commands", lambda: _commands_online(listener))

        # Sessions 1–3: each frames one SmO2 effort, RPE 5 at the end.
        for n in range(1, 4):
            mark = len(listener.messages)
            assert await _cli("session", "start", *common, "--tag", "intervals") == 0
            await listener.until(
                f"an effort in session {n}",
                lambda mark=mark: any(
                    _scope(p) == "effort" for p in listener.json_on(oxygenation, mark)
                ),
            )
            assert await _cli("session", "end", *common, "--rpe", "5") == 0
            await listener.until(
                f"session {n}'s summary",
                lambda mark=mark: any(
                    _scope(p) == "session" for p in listener.json_on(oxygenation, mark)
                ),
            )
        await listener.until("smo2_slow_recovery", lambda: _raised(listener, "smo2_slow_recovery"))
        sessions = [p for p in listener.json_on(oxygenation) if _scope(p) == "session"]
        assert [s["rpe"] for s in sessions] == [5, 5, 5]
        assert all(s["tags"] == ["intervals"] for s in sessions)
        assert all(float(s["recovery_s"]) > 30 for s in sessions)  # type: ignore[arg-type]

        # Session 4: inside a rest (easy spinning), ended without an RPE …
        power = "redox/ann/power/live"
        mark = len(listener.messages)

        def rest_began() -> bool:
            watts = [float(p["power_w"]) for p in listener.json_on(power, mark)]  # type: ignore[arg-type]
            return any(a > 250 > b for a, b in itertools.pairwise(watts))

        await listener.until("the end of an effort", rest_began)
        assert await _cli("session", "start", *common) == 0
        mark = len(listener.messages)
        await listener.until("20 s of rest", lambda: len(listener.json_on(power, mark)) >= 20)
        assert await _cli("session", "end", *common) == 0
        await listener.until(
            "session 4's summary",
            lambda: any(_scope(p) == "session" for p in listener.json_on(oxygenation, mark)),
        )
        (fourth,) = [p for p in listener.json_on(oxygenation, mark) if _scope(p) == "session"]
        assert fourth["rpe"] is None
        assert not _raised(listener, "rpe_power_mismatch")
        # … and its RPE given after it ended: harder for less power.
        mark = len(listener.messages)
        assert await _cli("rpe", "8", *common) == 0
        await listener.until("rpe_power_mismatch", lambda: _raised(listener, "rpe_power_mismatch"))
        (amended,) = [p for p in listener.json_on(oxygenation, mark) if _scope(p) == "session"]
        assert (amended["rpe"], amended["high_intensity"]) == (8, True)
        assert amended["ts_ns"] == fourth["ts_ns"]  # the same session, amended
        reference_w = sum(float(s["mean_power_w"]) for s in sessions) / 3  # type: ignore[arg-type]
        assert float(amended["mean_power_w"]) <= 0.9 * reference_w  # type: ignore[arg-type]

        # Session 5, hard again minutes later: too close to session 4 (48 h).
        assert not _raised(listener, "hi_spacing")
        assert await _cli("session", "start", *common) == 0
        assert await _cli("session", "end", *common, "--rpe", "7") == 0
        await listener.until("hi_spacing", lambda: _raised(listener, "hi_spacing"))
    finally:
        if run.returncode is None:
            run.send_signal(signal.SIGTERM)
        _, stderr = await run.communicate()
    assert run.returncode == 128 + signal.SIGTERM, stderr.decode()[-3000:]  # a clean stop
    assert "command dropped" not in stderr.decode()

    # Offline (no `run`: it said so on leaving): the RPE amends the stored last session.
    await listener.until(
        "run's commands offline",
        lambda: (
            [p for t, p, _ in listener.messages if t == "redox/bridge/commands"][-1] == b"offline"
        ),
    )
    mark = len(listener.messages)
    assert await _cli("rpe", "6", *common) == 0
    with Store(tmp_path / "store.sqlite3", read_only=True) as store:
        rows = store.sessions("ann")
    assert len(rows) == 5  # amendments replaced their rows
    assert [r.payload.rpe for r in rows] == [5, 5, 5, 8, 6]
    await listener.until(
        "the offline amendment on MQTT",
        lambda: any(p.get("rpe") == 6 for p in listener.json_on(oxygenation, mark)),
    )
    listening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listening


@pytest.mark.parametrize("user", ["homeassistant", "redox-cli"])
async def test_only_permitted_users_can_command(
    shipped_mosquitto: ShippedBroker, user: str
) -> None:
    broker = shipped_mosquitto

    def client(name: str) -> aiomqtt.Client:
        return aiomqtt.Client(
            broker.host, broker.port, username=name, password=broker.password(name)
        )

    async with client("redox-streamer") as streamer:
        await streamer.subscribe("redox/+/set/#", qos=1)
        # The notifier may read alerts but not command: its publish is dropped (MQTT 3.1.1
        # still acknowledges it), so it arrives before the permitted one or never.
        async with client("redox-notify") as notify:
            await notify.publish("redox/ann/set/session", b"start", qos=1)
            await notify.publish("redox/ann/set/rpe", b"9", qos=1)
        async with client(user) as permitted:
            await permitted.publish("redox/ann/set/rpe", b"7", qos=1)
        got = []
        async with asyncio.timeout(10):
            async for m in streamer.messages:
                got.append((str(m.topic), m.payload))
                break
    assert got == [("redox/ann/set/rpe", b"7")]


async def test_morning_rules_fire_from_imported_history_and_a_live_morning_in_run(
    tmp_path: Path, shipped_mosquitto: ShippedBroker
) -> None:
    config = _config(tmp_path, shipped_mosquitto, STRAP)
    today = datetime.datetime.now(datetime.UTC).date()
    # 27 days of HRV4Training mornings before today: a steady baseline (RMSSD 80/90 ms,
    # resting HR 50/51 bpm), then RMSSD falling over the last 4 days and resting HR 56 bpm
    # over the last 5: neither rule is met yet (yesterday's last five mornings include
    # one in the band; the week's rise is 4.4 bpm). The live reading today (the emulated
    # strap: 60 bpm, RMSSD ~40 ms) completes both.
    rows = ["date,HR,rMSSD"]
    for back in range(27, 0, -1):
        day = today - datetime.timedelta(days=back)
        rmssd = {5: 90, 4: 66, 3: 60, 2: 54, 1: 48}.get(back, 80 if back % 2 else 90)
        hr = 56 if back <= 5 else (50 if back % 2 else 51)
        rows.append(f"{day.isoformat()},{hr},{rmssd}")
    export = tmp_path / "hrv4training.csv"
    export.write_text("\n".join(rows) + "\n")
    common = ("--athlete", "ann", "--config", str(config))
    assert await _cli("import", "csv", "--format", "hrv4training", str(export), *common) == 0

    listener = Listener(shipped_mosquitto)
    listening = asyncio.create_task(listener.run())
    async with asyncio.timeout(10):
        await listener._ready.wait()
    run = await _start_run(config)
    morning, live = "redox/ann/morning", "redox/ann/strap/live"
    try:
        await listener.until("run listening for commands", lambda: _commands_online(listener))
        await listener.until("the strap streaming", lambda: bool(listener.json_on(live)))
        assert not _raised(listener, "hrv_downtrend")
        assert not _raised(listener, "rhr_creep")
        assert not [a for a in listener.json_on("redox/ann/alerts") if a.get("active")]
        # Home Assistant's "Morning reading start/end" buttons publish what this does;
        # here as redox-cli, because the listener holds homeassistant's one connection
        # (the shipped broker ties client ids to accounts).
        async with aiomqtt.Client(
            shipped_mosquitto.host,
            shipped_mosquitto.port,
            username="redox-cli",
            password=shipped_mosquitto.password("redox-cli"),
        ) as ha:
            mark = len(listener.messages)
            await ha.publish("redox/ann/set/morning", b"start", qos=1)

            # 60 s of stabilisation + 300 s analysed, in the strap's time (emulated): wait
            # for a sample 380 s after the first one after `start`.
            def stamps() -> list[int]:
                return [int(p["ts_ns"]) for p in listener.json_on(live, mark)]  # type: ignore[call-overload]

            await listener.until(
                "six minutes of beats",
                lambda: len(t := stamps()) > 1 and t[-1] - t[0] >= 380 * 10**9,
            )
            await ha.publish("redox/ann/set/morning", b"end", qos=1)
        await listener.until("today's morning", lambda: bool(listener.json_on(morning, mark)))
        (reading,) = listener.json_on(morning, mark)
        assert reading["date"] == today.isoformat()
        assert reading["accepted"] is True, reading
        await listener.until("hrv_downtrend", lambda: _raised(listener, "hrv_downtrend"))
        await listener.until("rhr_creep", lambda: _raised(listener, "rhr_creep"))
    finally:
        if run.returncode is None:
            run.send_signal(signal.SIGTERM)
        _, stderr = await run.communicate()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    assert run.returncode == 128 + signal.SIGTERM, stderr.decode()[-3000:]  # a clean stop


async def test_grip_commands_measure_a_grip_test_on_the_dynamometer_run_holds(
    tmp_path: Path, shipped_mosquitto: ShippedBroker
) -> None:
    # The emulated Progressor squeezes at a constant peak (no post-session drop: that is
    # injected only by `grip-test --emulated`), so this shows the path — commands to a
    # classified test and the grip rules evaluated — not an alert.
    config = _config(
        tmp_path,
        shipped_mosquitto,
        '[[athletes.devices]]\nid = "tindeq"\nkind = "grip"\naddress = "C0:00:00:00:41:04"\n',
    )
    listener = Listener(shipped_mosquitto)
    listening = asyncio.create_task(listener.run())
    async with asyncio.timeout(10):
        await listener._ready.wait()
    # 80 Hz of force: at 5x that is 400 samples a second through run and the broker, which
    # a loaded 2-core machine carries; 20x is not needed for a few squeezes a phase.
    run = await _start_run(config, speed=5)
    live = "redox/ann/tindeq/live"
    try:
        await listener.until("run listening for commands", lambda: _commands_online(listener))
        await listener.until("the dynamometer streaming", lambda: bool(listener.json_on(live)))
        async with aiomqtt.Client(  # redox-cli: the listener holds homeassistant's login
            shipped_mosquitto.host,
            shipped_mosquitto.port,
            username="redox-cli",
            password=shipped_mosquitto.password("redox-cli"),
        ) as ha:
            for phase in (b"pre", b"post 0", b"post 15", b"post 30"):
                mark = len(listener.messages)
                await ha.publish("redox/ann/set/grip", phase, qos=1)

                def squeezes(mark: int = mark) -> int:
                    kg = [float(p["force_kg"]) for p in listener.json_on(live, mark)]  # type: ignore[arg-type]
                    return sum(1 for a, b in itertools.pairwise(kg) if a < 20 <= b)

                await listener.until(f"three squeezes after {phase!r}", lambda: squeezes() >= 3)
            mark = len(listener.messages)
            await ha.publish("redox/ann/set/grip", b"end", qos=1)
        await listener.until(
            "the grip test", lambda: bool(listener.json_on("redox/ann/grip", mark))
        )
        (test,) = listener.json_on("redox/ann/grip", mark)
        assert float(test["mvc_kg"]) > 30  # type: ignore[arg-type]
        assert float(test["drop_pct"]) < 10  # type: ignore[arg-type]
        assert test["class"] == "normal", test  # no drop: neither grip rule is met
    finally:
        if run.returncode is None:
            run.send_signal(signal.SIGTERM)
        _, stderr = await run.communicate()
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    assert run.returncode == 128 + signal.SIGTERM, stderr.decode()[-3000:]  # a clean stop

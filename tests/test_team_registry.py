"""The club's central registry (issue 13, Identity) against a real nats-server: pushed from a
club file and shown back, paired and unpaired one device at a time; a gateway whose own
file names no athletes follows it — a device added is connected and forwarded, one removed
has its lease released, a bad entry is one line naming its key while the other athletes go
on — and a worker's athletes take its thresholds without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devices.kinds import DeviceKind
from devices.registry import DeviceRegistry, PairedDevice
from processors.labs import LabMarker, LabTiming
from processors.profiles import thresholds_for
from streamer.athlete.events import LabEntry, SessionEnd, SessionStart
from streamer.cli import main
from streamer.commands.run import paired_devices
from streamer.config import Config, athlete_data, load_config, parse_athlete
from streamer.errors import INPUT_STATUS
from streamer.team import wire
from streamer.team.registry import (
    REGISTRY_BUCKET,
    CentralRegistryError,
    RegistryEntryError,
    athlete_key,
    decode_athlete,
    follow,
    open_registry,
    read_entries,
    read_view,
)
from streamer.team.stream import LEASE_BUCKET, ensure_stream
from tests.servers import NatsServer, PostgreSQL
from tests.team_helpers import ROOT, GatewayProc, notifications, stream_messages, wait_until
from tests.test_team_gateway import HEAVY

nats = pytest.importorskip("nats")

STOPPED = 128 + signal.SIGTERM

CLUB = """\
[rules]
rhr_creep_delta_bpm = 6

[[athletes]]
id = "ann"
name = "Ann"
[athletes.rules]
hi_spacing_h = 60
[[athletes.devices]]
kind = "strap"
address = "EE:00:00:00:01:01"

[[athletes]]
id = "bob"
profile = "older"
[[athletes.devices]]
kind = "strap"
address = "EE:00:00:00:02:01"
"""


def _club(tmp_path: Path, text: str = CLUB) -> Path:
    path = tmp_path / "club.toml"
    path.write_text(text)
    return path


def _registry(args: list[str], nats_url: str) -> int:
    return main(["registry", *args, "--nats", nats_url])


async def _kv(url: str, work: Any, *, create: bool = False) -> Any:
    nc = await nats.connect(url)
    try:
        kv = await open_registry(nc.jetstream(), create=create)
        assert kv is not None, f"no bucket {REGISTRY_BUCKET}"
        return await work(kv)
    finally:
        await nc.close()


def _put(url: str, key: str, value: bytes) -> None:
    asyncio.run(_kv(url, lambda kv: kv.put(key, value)))


# --- push, show, pair, unpair ----------------------------------------------------------------


def test_push_writes_what_the_file_validates_and_show_reads_it_back(
    tmp_path: Path, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nats_server.url
    club = _club(tmp_path)
    assert _registry(["push", "--config", str(club)], url) == 0
    assert "2 athletes written (ann, bob), 0 unchanged, club [rules] written" in (
        capsys.readouterr().out
    )
    assert _registry(["push", "--config", str(club)], url) == 0  # nothing changed
    assert "0 athletes written, 2 unchanged" in capsys.readouterr().out

    assert _registry(["show", "--json"], url) == 0
    shown = json.loads(capsys.readouterr().out)
    config = load_config(club)
    assert shown["athletes"] == [athlete_data(a) for a in config.athletes]
    assert shown["rules"] == {"rhr_creep_delta_bpm": 6}
    assert shown["problems"] == []
    # What a gateway or worker builds from it is the file's own config.
    view = asyncio.run(_kv(url, read_view))
    assert view.config(Config()).athletes == config.athletes
    assert view.config(Config()).thresholds_for("ann") == config.thresholds_for("ann")

    # bob leaves the club file: kept until --prune.
    without_bob = _club(tmp_path, CLUB[: CLUB.index('[[athletes]]\nid = "bob"')])
    assert _registry(["push", "--config", str(without_bob)], url) == 0
    assert "are not in" in capsys.readouterr().err
    assert _registry(["push", "--config", str(without_bob), "--prune"], url) == 0
    assert "1 removed (bob)" in capsys.readouterr().out
    assert _registry(["show"], url) == 0
    out = capsys.readouterr().out
    assert "1 athletes" in out
    assert "athlete ann (Ann), profile default, overrides {'hi_spacing_h': 60}: strap" in out


def test_push_takes_the_devices_paired_on_this_machine_for_the_files_athletes(
    tmp_path: Path, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A club admin who paired devices with `redox-streamer pair` on the central box (as
    for `run`) gets them in the registry by pushing the club file: the devices `run` would
    stream there, no more — a pairing of an athlete the file does not name is one note
    naming it and the command that would push it."""
    url = nats_server.url
    pairing = DeviceRegistry.load(tmp_path / "devices.toml")
    pairing.add(PairedDevice("C4:7F:51:00:11:22", "ann", DeviceKind.SMO2, role="left vl"))
    pairing.add(PairedDevice("EE:00:00:00:01:01", "ann", DeviceKind.STRAP))  # configured
    pairing.add(PairedDevice("EE:00:00:00:09:01", "zed", DeviceKind.STRAP))  # not in the file
    pairing.save()
    club = _club(tmp_path)
    push = ["push", "--config", str(club), "--pairing", str(pairing.path)]
    assert _registry(push, url) == 0
    captured = capsys.readouterr()
    assert "pushed with the file: ann: smo2 (smo2 C4:7F:51:00:11:22)" in captured.out
    assert "2 athletes written (ann, bob)" in captured.out
    (note,) = captured.err.splitlines()
    assert "zed (strap EE:00:00:00:09:01)" in note
    assert "redox-streamer registry pair ADDRESS --athlete ID --kind KIND" in note

    view = asyncio.run(_kv(url, read_view))
    (ann,) = [a for a in view.athletes if a.id == "ann"]
    assert [(d.id, d.kind.value, d.address, d.role) for d in ann.devices] == [
        ("strap", "strap", "EE:00:00:00:01:01", None),
        ("smo2", "smo2", "C4:7F:51:00:11:22", "left vl"),
    ]
    # What a gateway follows is what `run` streams on this machine.
    assert {a.id: list(a.devices) for a in view.athletes} == paired_devices(
        load_config(club), pairing
    )
    assert _registry(push, url) == 0  # pushed again: nothing changed
    assert "0 athletes written, 2 unchanged" in capsys.readouterr().out


def test_pair_and_unpair_change_one_device_and_refuse_in_one_line(
    tmp_path: Path, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nats_server.url
    assert _registry(["push", "--config", str(_club(tmp_path))], url) == 0
    capsys.readouterr()
    pair = ["pair", "ee:00:00:00:01:09", "--athlete", "ann", "--kind", "strap", "--role", "spare"]
    assert _registry(pair, url) == 0
    assert "paired EE:00:00:00:01:09 to ann as strap2 (strap)" in capsys.readouterr().out
    view = asyncio.run(_kv(url, read_view))
    (ann,) = [a for a in view.athletes if a.id == "ann"]
    assert [(d.id, d.address, d.role) for d in ann.devices] == [
        ("strap", "EE:00:00:00:01:01", None),
        ("strap2", "EE:00:00:00:01:09", "spare"),
    ]

    refusals = [
        (["pair", "EE:00:00:00:01:09", "--athlete", "bob", "--kind", "strap"], "ann.strap2"),
        (["pair", "EE:00:00:00:03:01", "--athlete", "cat", "--kind", "strap"], "registry push"),
        (["pair", "EE:00:00:00:03:01", "--athlete", "bob", "--kind", "oven"], "'oven'"),
        (["unpair", "smo2", "--athlete", "ann"], "strap2 (EE:00:00:00:01:09)"),
    ]
    for argv, named in refusals:
        assert _registry(argv, url) == INPUT_STATUS, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith("redox-streamer registry: error: "), err
        assert named in err[0], err

    assert _registry(["unpair", "EE:00:00:00:01:09", "--athlete", "ann"], url) == 0
    assert "unpaired strap2" in capsys.readouterr().out
    view = asyncio.run(_kv(url, read_view))
    (ann,) = [a for a in view.athletes if a.id == "ann"]
    assert [d.id for d in ann.devices] == ["strap"]


def test_a_bad_entry_is_one_line_naming_its_key_and_the_others_stand(
    tmp_path: Path, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nats_server.url
    assert _registry(["push", "--config", str(_club(tmp_path))], url) == 0
    # Written by hand (`nats kv put`) or by another version: the readers judge them.
    _put(url, athlete_key("cat"), b'{"id": "cat", "profile": "pro"}')
    _put(url, athlete_key("dan"), b"{not json")
    _put(url, athlete_key("eve"), b'{"id": "bob"}')
    capsys.readouterr()
    assert _registry(["show"], url) == INPUT_STATUS
    out, err = capsys.readouterr()
    assert "2 athletes" in out
    assert "athlete ann" in out
    assert "athlete bob" in out
    lines = err.strip().splitlines()
    assert len(lines) == 3, lines
    cat, dan, eve = lines
    assert cat.startswith("redox-streamer registry show: error: central registry 'athlete.cat': ")
    assert "unknown profile 'pro' — use one of default, elite, older" in cat
    assert "athlete.dan': not JSON" in dan
    assert "athlete.eve': holds athlete 'bob', not 'eve'" in eve
    assert all(line.endswith("`redox-streamer registry push` it") for line in lines)

    with pytest.raises(RegistryEntryError, match=r"^central registry 'athlete.cat': "):
        decode_athlete("athlete.cat", b'{"id": "cat", "profile": "pro"}')


def test_an_entry_round_trips_through_the_files_own_validation() -> None:
    config = load_config_text(CLUB)
    for athlete in config.athletes:
        assert parse_athlete(athlete_data(athlete), rules=config.rules) == athlete


def load_config_text(text: str) -> Config:
    from streamer.config import parse_config

    return parse_config(text)


def test_a_file_with_athletes_keeps_them_unless_it_says_registry() -> None:
    assert load_config_text('[store]\npath = "x"\n').uses_registry
    assert not load_config_text(CLUB).uses_registry
    assert load_config_text(CLUB + "\n[team]\nregistry = true\n").uses_registry
    assert not load_config_text("[rules]\nhi_spacing_h = 60\n").uses_registry
    with pytest.raises(Exception, match=r"team.registry: expected true or false"):
        load_config_text('[team]\nregistry = "yes"\n')


# --- a gateway follows it -------------------------------------------------------------------------


def _devices_seen(url: str) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for m in notifications(stream_messages([url])):
        key = (m.athlete, m.message.device)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _lease_holder(url: str, key: str) -> str | None:
    async def get() -> str | None:
        nc = await nats.connect(url)
        try:
            kv = await nc.jetstream().key_value(LEASE_BUCKET)
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return str(json.loads(entry.value or b"{}").get("gateway"))
        finally:
            await nc.close()

    return asyncio.run(get())


def test_a_gateway_follows_the_registry_without_a_restart(
    tmp_path: Path, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nats_server.url

    async def make_stream() -> None:
        # Leases live long here, so one gone within the test was released, not expired.
        nc = await nats.connect(url)
        try:
            await ensure_stream(nc.jetstream(), 1, lease_ttl_s=600.0)
        finally:
            await nc.close()

    asyncio.run(make_stream())
    # The Pi's own file: its store, no athletes.
    pi = tmp_path / "pi"
    pi.mkdir()
    own = pi / "redox.toml"
    own.write_text(f'[store]\npath = "{pi / "store.sqlite"}"\n')
    gateway = GatewayProc(pi, "gw1", [url], own)
    gateway.start()
    try:
        wait_until(lambda: "no central registry" in gateway.output(), 90, "gw1 waiting")
        ann_only = CLUB[: CLUB.index('[[athletes]]\nid = "bob"')]
        assert _registry(["push", "--config", str(_club(tmp_path, ann_only))], url) == 0
        wait_until(lambda: _devices_seen(url).get(("ann", "strap"), 0) >= 10, 90, "ann's strap")
        assert ("bob", "strap") not in _devices_seen(url)

        # bob and his strap pushed: connected and forwarded.
        assert _registry(["push", "--config", str(_club(tmp_path))], url) == 0
        wait_until(lambda: _devices_seen(url).get(("bob", "strap"), 0) >= 10, 90, "bob's strap")
        assert _lease_holder(url, "bob.strap") == "gw1"

        # ann's strap unpaired: stopped, and its lease released at once (not expired).
        assert _lease_holder(url, "ann.strap") == "gw1"
        assert _registry(["unpair", "strap", "--athlete", "ann"], url) == 0
        wait_until(lambda: _lease_holder(url, "ann.strap") is None, 60, "ann.strap released")

        # A bad entry: one line in the gateway's log naming it; bob streams on.
        _put(url, athlete_key("cat"), b'{"id": "cat", "devices": [{"kind": "oven"}]}')
        wait_until(lambda: "'athlete.cat'" in gateway.output(), 60, "the bad entry reported")
        (line,) = [ln for ln in gateway.output().splitlines() if "'athlete.cat'" in ln]
        assert "athletes.devices[0].kind: unknown device kind 'oven'" in line
        assert line.endswith("`redox-streamer registry push` it")
        before = _devices_seen(url)[("bob", "strap")]
        wait_until(
            lambda: _devices_seen(url)[("bob", "strap")] >= before + 10, 90, "bob streaming on"
        )
        assert gateway.stop() == STOPPED
    finally:
        gateway.ensure_dead()
    # One grant per device paired; none for cat's entry, which never validated.
    grants = {
        (m.athlete, m.message.device, m.message.gateway)
        for m in stream_messages([url])
        if isinstance(m.message, wire.LeaseGranted)
    }
    assert grants == {
        ("ann", "strap", "gw1"),
        ("bob", "strap", "gw1"),
    }


# --- a worker's thresholds ---------------------------------------------------------------------


def test_a_workers_athletes_take_the_registrys_thresholds_between_protocols(
    tmp_path: Path, nats_server: NatsServer, postgres: PostgreSQL
) -> None:
    from streamer.team.worker import Partition, Worker, WorkerOptions
    from tests.mqtt_helpers import eventually

    url = nats_server.url

    def club(delta: float) -> Path:
        return _club(
            tmp_path, CLUB.replace("rhr_creep_delta_bpm = 6", f"rhr_creep_delta_bpm = {delta}")
        )

    def expected(delta: float) -> Any:
        return thresholds_for("default", {"rhr_creep_delta_bpm": delta, "hi_spacing_h": 60})

    assert _registry(["push", "--config", str(club(7))], url) == 0
    t_ns = 1_764_000_000_000_000_000
    seq = iter(range(1, 1000))

    async def scenario() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        await ensure_stream(js, 1)

        async def send(message: wire.WireMessage) -> None:
            n = next(seq)
            headers = {wire.GATEWAY_HEADER: "gw1", wire.MSG_ID_HEADER: f"gw1:1:{n}"}
            await js.publish(wire.raw_subject("ann"), wire.encode(message), headers=headers)

        worker = Worker("a", nats_url=url, dsn=postgres.dsn, config=Config(), registry=True,
                        options=WorkerOptions(live=False))  # fmt: skip
        task = asyncio.create_task(worker.run())

        def part() -> Partition | None:
            return next((p for p in worker.owned.values() if "ann" in p.tracks), None)

        def handled(n: int) -> bool:
            p = part()
            return p is not None and p.counters.messages >= n

        try:
            await send(LabEntry(t_ns, LabMarker.DROMS, 310.0, LabTiming.FASTED))
            await eventually(lambda: handled(1), 90, "ann's first message handled")
            state = part().tracks["ann"].state  # type: ignore[union-attr]
            assert state.thresholds == expected(7)  # from the registry, not the (empty) file

            # Between protocols: at once.
            await asyncio.to_thread(_registry, ["push", "--config", str(club(8))], url)
            await eventually(lambda: state.thresholds == expected(8), 60, "thresholds at once")

            # During a session: the session is judged by the ones it started with.
            await send(SessionStart(t_ns + 10**9, ("gym",)))
            await eventually(lambda: handled(2), 60, "the session start handled")
            await asyncio.to_thread(_registry, ["push", "--config", str(club(9))], url)
            await eventually(
                lambda: part().tracks["ann"].retuned == expected(9),  # type: ignore[union-attr]
                60,
                "the change held for the session's end",
            )
            assert state.thresholds == expected(8)
            await send(SessionEnd(t_ns + 600 * 10**9, 6.0))
            await eventually(lambda: handled(3), 60, "the session end handled")
            assert state.thresholds == expected(8)
            await send(LabEntry(t_ns + 700 * 10**9, LabMarker.DROMS, 300.0, LabTiming.FASTED))
            await eventually(lambda: handled(4), 60, "the next message handled")
            assert state.thresholds == expected(9)
        finally:
            worker.stop()
            await task
            await nc.close()

    asyncio.run(scenario())


def test_no_registry_and_no_server_are_one_line_each(
    nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for url, named in [
        (nats_server.url, "no central registry (bucket redox_registry)"),
        ("nats://127.0.0.1:1", "cannot reach NATS"),
    ]:
        assert _registry(["show"], url) == INPUT_STATUS
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith("redox-streamer registry: error: "), err
        assert named in err[0], err


def test_a_registry_whose_last_revision_was_purged_is_read_to_its_end(
    nats_server: NatsServer,
) -> None:
    """bob deleted, then the delete markers purged (``purge_deletes``, a compaction): the
    bucket's last sequence names a message no longer there. ``show`` and a gateway's or
    worker's first view still end, with ann alone (they waited for that revision for
    ever)."""

    async def check(kv: Any) -> None:
        await kv.put(athlete_key("ann"), json.dumps({"id": "ann"}).encode())
        await kv.put(athlete_key("bob"), json.dumps({"id": "bob"}).encode())
        await kv.delete(athlete_key("bob"))
        await kv.purge_deletes(olderthan=-1)
        state = (await kv.status()).stream_info.state
        assert (state.messages, state.last_seq) == (1, 3)  # the message at 3 is gone
        view = await asyncio.wait_for(read_view(kv), 30)
        assert [a.id for a in view.athletes] == ["ann"]
        nc = await nats.connect(nats_server.url)
        views = follow(nc.jetstream())
        try:
            first = await asyncio.wait_for(anext(views), 30)
            assert [a.id for a in first.athletes] == ["ann"]
        finally:
            await views.aclose()
            await nc.close()

    asyncio.run(_kv(nats_server.url, check, create=True))


def test_a_registry_read_from_a_server_that_stopped_answering_ends_in_one_line(
    nats_server: NatsServer,
) -> None:
    """nats-server SIGSTOPped under a connected reader: ``read_entries`` gives up after
    its bound with one line naming the bucket and what to check, not waiting for ever."""

    async def check(kv: Any) -> None:
        await kv.put(athlete_key("ann"), json.dumps({"id": "ann"}).encode())
        assert nats_server.proc is not None
        os.kill(nats_server.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(CentralRegistryError) as raised:
                await asyncio.wait_for(read_entries(kv, within_s=1.0), 30)
        finally:
            os.kill(nats_server.proc.pid, signal.SIGCONT)
        assert str(raised.value) == (
            f"central registry {REGISTRY_BUCKET}: not read within 1 s (up to revision 0); "
            "check that NATS answers (each node's /healthz) and try again"
        )

    asyncio.run(_kv(nats_server.url, check, create=True))


def test_a_gateway_following_the_registry_stays_thin(tmp_path: Path) -> None:
    code = (
        "import sys, streamer.team.registry, streamer.team.gateway\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_an_athlete_added_to_the_registry_is_announced_to_home_assistant_at_once(
    tmp_path: Path, nats_server: NatsServer, postgres: PostgreSQL, mosquitto: Any
) -> None:
    """A worker already holding its partitions announces an athlete pushed later (their
    Home Assistant entities appear without a worker restart or a partition move), with the
    partition's availability."""
    from streamer.config import MqttConfig
    from streamer.team.worker import Worker, WorkerOptions
    from tests.mqtt_helpers import Subscriber, eventually

    url = nats_server.url
    assert _registry(["push", "--config", str(_club(tmp_path))], url) == 0
    carl = CLUB + '\n[[athletes]]\nid = "carl"\nname = "Carl"\n'

    def announced(sub: Subscriber, athlete: str) -> list[dict[str, Any]]:
        return [
            json.loads(m.payload)
            for m in sub.received
            if m.payload and f"/redox_{athlete}/" in m.topic
        ]

    async def scenario() -> None:
        nc = await nats.connect(url)
        await ensure_stream(nc.jetstream(), 1)
        sub = await Subscriber("127.0.0.1", mosquitto.port, topic="homeassistant/#").start()
        config = Config(mqtt=MqttConfig.from_url(mosquitto.url, ha_discovery=True))
        worker = Worker("a", nats_url=url, dsn=postgres.dsn, config=config, registry=True,
                        options=WorkerOptions(live=False))  # fmt: skip
        task = asyncio.create_task(worker.run())
        try:
            await eventually(lambda: bool(announced(sub, "ann")), 90, "ann announced")
            assert not announced(sub, "carl")
            await asyncio.to_thread(
                _registry, ["push", "--config", str(_club(tmp_path, carl))], url
            )
            await eventually(lambda: bool(announced(sub, "carl")), 60, "carl announced")
            topic = f"redox/partition/{wire.partition_of('carl')}/state"
            for config_ in announced(sub, "carl"):
                assert [a["topic"] for a in config_["availability"]] == [topic]
        finally:
            worker.stop()
            await task
            await sub.stop()
            await nc.close()

    asyncio.run(scenario())


async def test_a_registry_watch_stopped_as_nats_answers_ends() -> None:
    """A watch of the registry (gateways and workers follow it) stopped just as NATS answers
    its status request ends: nats-py waits with ``asyncio.wait_for``, which on Python 3.11
    returns the answer and drops the stop; the watch then waited for the registry's next
    change, and the process's stop with it. The bucket is a stand-in answering the way
    nats-py does; the race is the point."""
    from types import SimpleNamespace

    from streamer.team.registry import _watch

    loop = asyncio.get_running_loop()
    answer: asyncio.Future[object] = loop.create_future()
    asked = asyncio.Event()
    watched = asyncio.Event()

    class Bucket:
        async def status(self) -> object:
            asked.set()
            return await asyncio.wait_for(answer, 10)  # as nats-py waits for a reply

        async def watchall(self) -> object:
            watched.set()
            await asyncio.Event().wait()  # no change ever comes
            raise AssertionError("unreachable")

    async def watch() -> None:
        async with contextlib.aclosing(_watch(Bucket())) as changes:  # type: ignore[arg-type]
            async for _ in changes:
                pass

    task = asyncio.create_task(watch())
    await asked.wait()
    await asyncio.sleep(0)  # the task now waits inside wait_for
    state = SimpleNamespace(last_seq=3, messages=3)
    answer.set_result(SimpleNamespace(stream_info=SimpleNamespace(state=state)))
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=10)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=10)
    assert done, "the watch went on to wait for a change"
    assert task.cancelled()
    assert not watched.is_set()

"""``registry push`` merges per device, against a real nats-server: two machines pushing
the same club file with different local pairings both keep their devices — one after the
other, and with one push's write landing between the other's read and write (the
revision-conditional write refuses it; it reads, merges and writes again)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from devices.kinds import DeviceKind
from devices.registry import DeviceRegistry, PairedDevice
from streamer.cli import main
from streamer.commands.registry import local_pairing
from streamer.commands.run import paired_devices
from streamer.config import DeviceConfig, load_config
from streamer.team.registry import merge_devices, open_registry, push, read_view
from tests.servers import NatsServer

nats = pytest.importorskip("nats")

CLUB = """\
[[athletes]]
id = "ann"
name = "Ann"
[[athletes.devices]]
kind = "strap"
address = "EE:00:00:00:01:01"
"""

HOME_SMO2 = "C4:7F:51:00:11:22"
GYM_SMO2 = "C4:7F:51:00:33:44"
GYM_GRIP = "D0:00:00:00:55:66"


def _pairing(path: Path, *devices: PairedDevice) -> DeviceRegistry:
    pairing = DeviceRegistry.load(path)
    for device in devices:
        pairing.add(device)
    pairing.save()
    return pairing


def _devices(url: str, athlete: str = "ann") -> list[tuple[str, str, str | None]]:
    async def read() -> list[tuple[str, str, str | None]]:
        nc = await nats.connect(url)
        try:
            kv = await open_registry(nc.jetstream())
            assert kv is not None
            view = await read_view(kv)
        finally:
            await nc.close()
        (found,) = [a for a in view.athletes if a.id == athlete]
        return [(d.id, d.kind.value, d.address) for d in found.devices]

    return asyncio.run(read())


def test_two_machines_pushing_different_local_pairings_both_keep_their_devices(
    tmp_path: Path, nats_server: NatsServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = nats_server.url
    club = tmp_path / "club.toml"
    club.write_text(CLUB)
    home = _pairing(
        tmp_path / "home.toml", PairedDevice(HOME_SMO2, "ann", DeviceKind.SMO2, role="left vl")
    )
    gym = _pairing(
        tmp_path / "gym.toml",
        PairedDevice(GYM_SMO2, "ann", DeviceKind.SMO2, role="right vl"),
        PairedDevice(GYM_GRIP, "ann", DeviceKind.GRIP),
    )

    def push_from(pairing: DeviceRegistry, *extra: str) -> int:
        return main(
            [
                "registry",
                "push",
                "--config",
                str(club),
                "--pairing",
                str(pairing.path),
                *extra,
                "--nats",
                url,
            ]
        )

    assert push_from(home) == 0
    assert push_from(gym) == 0
    out, err = capsys.readouterr()
    assert "1 athletes written (ann)" in out.splitlines()[-1]
    assert "1 devices in the registry are neither in" in err
    assert "(ann.smo2)" in err
    # Both machines' devices: the file's strap, home's SmO2 as it was stored, the gym's
    # SmO2 under an id of its own (as `run` names a second device of a kind), its grip.
    assert _devices(url) == [
        ("strap", "strap", "EE:00:00:00:01:01"),
        ("smo2", "smo2", HOME_SMO2),
        ("smo2-3344", "smo2", GYM_SMO2),
        ("grip", "grip", GYM_GRIP),
    ]
    # Pushed again from either machine: nothing changes, nothing is renamed again.
    assert push_from(home) == 0
    assert push_from(gym) == 0
    assert capsys.readouterr().out.count("0 athletes written, 1 unchanged") == 2
    assert len(_devices(url)) == 4

    # --prune from home: the file and home's pairing are the truth; the gym's devices go.
    assert push_from(home, "--prune") == 0
    out = capsys.readouterr().out
    assert "2 devices removed (ann.smo2-3344, ann.grip)" in out
    assert _devices(url) == [
        ("strap", "strap", "EE:00:00:00:01:01"),
        ("smo2", "smo2", HOME_SMO2),
    ]


class _WriteBetween:
    """The real bucket, except that just before this push's first write of an athlete the
    other machine's whole push runs: the write then meets a newer revision than it read."""

    def __init__(self, kv: Any, other: Any) -> None:
        self._kv = kv
        self._other = other
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    async def _first(self) -> None:
        if self._other is not None:
            other, self._other = self._other, None
            await other()

    async def update(self, key: str, value: bytes, last: int) -> int:
        await self._first()
        try:
            return int(await self._kv.update(key, value, last=last))
        except Exception:
            self.refused += 1
            raise

    async def create(self, key: str, value: bytes) -> int:
        await self._first()
        try:
            return int(await self._kv.create(key, value))
        except Exception:
            self.refused += 1
            raise


async def test_a_push_written_between_anothers_read_and_write_is_merged_not_replaced(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    club = tmp_path / "club.toml"
    club.write_text(CLUB)
    config = load_config(club)
    home, _ = local_pairing(
        config, _pairing(tmp_path / "home.toml", PairedDevice(HOME_SMO2, "ann", DeviceKind.SMO2))
    )
    gym, _ = local_pairing(
        config, _pairing(tmp_path / "gym.toml", PairedDevice(GYM_GRIP, "ann", DeviceKind.GRIP))
    )
    nc_home = await nats.connect(nats_server.url)
    nc_gym = await nats.connect(nats_server.url)
    try:
        kv_home = await open_registry(nc_home.jetstream(), create=True)
        kv_gym = await open_registry(nc_gym.jetstream())
        assert kv_home is not None
        assert kv_gym is not None

        async def gym_push() -> None:
            report = await push(kv_gym, config, paired=gym)
            assert report.written == ["ann"]

        racing = _WriteBetween(kv_home, gym_push)
        report = await push(racing, config, paired=home)  # type: ignore[arg-type]
        assert racing.refused == 1, "the home push's first write met the gym's revision"
        assert report.written == ["ann"]
        assert report.devices_kept == ["ann.grip"]
        view = await read_view(kv_home)
    finally:
        await nc_home.close()
        await nc_gym.close()
    (ann,) = view.athletes
    assert [(d.id, d.address) for d in ann.devices] == [
        ("strap", "EE:00:00:00:01:01"),
        ("grip", GYM_GRIP),
        ("smo2", HOME_SMO2),
    ]


def test_the_club_files_device_wins_on_its_id_and_address() -> None:
    """The file is the club's word on the devices it lists: a stored device with the same
    address is the file's now, and one whose id the file gives to another address is
    replaced (said, so that a coach can give it an id of its own)."""
    strap = DeviceConfig("strap", DeviceKind.STRAP, "EE:00:00:00:01:01", role="chest")
    old_strap = DeviceConfig("strap", DeviceKind.STRAP, "EE:00:00:00:01:01")
    other_strap = DeviceConfig("strap", DeviceKind.STRAP, "EE:00:00:00:09:09")
    smo2 = DeviceConfig("smo2", DeviceKind.SMO2, HOME_SMO2)
    merged = merge_devices([strap], [], [old_strap, smo2])
    assert merged.devices == (strap, smo2)
    assert merged.kept == (smo2,)
    assert merged.replaced == ()
    merged = merge_devices([strap], [], [other_strap, smo2])
    assert merged.devices == (strap, smo2)
    assert merged.replaced == (other_strap,)


def test_a_stored_device_whose_id_the_file_takes_but_paired_here_is_renamed_not_replaced() -> None:
    """The registry's ``smo2`` is the home SmO2; the club file gives ``smo2`` to another
    address, and this machine's pairing names the home SmO2 too: it stays, under the id
    ``run`` gives a second SmO2 — reported as renamed (old → new), not as replaced."""
    filed = DeviceConfig("smo2", DeviceKind.SMO2, GYM_SMO2)
    stored = DeviceConfig("smo2", DeviceKind.SMO2, HOME_SMO2)
    paired_here = DeviceConfig("smo2", DeviceKind.SMO2, HOME_SMO2)
    merged = merge_devices([filed], [paired_here], [stored])
    assert [(d.id, d.address) for d in merged.devices] == [
        ("smo2", GYM_SMO2),
        ("smo2-1122", HOME_SMO2),
    ]
    assert merged.replaced == ()
    assert [(old.id, new.id) for old, new in merged.renamed] == [("smo2", "smo2-1122")]


def test_run_and_push_name_a_third_device_of_a_kind_alike(tmp_path: Path) -> None:
    """Two more straps paired to ann whose addresses end alike: ``run`` names them as
    ``registry push`` does — ``strap-0101``, then ``strap-0101-2`` — one id each (``run``
    once gave both the same)."""
    club = tmp_path / "club.toml"
    club.write_text(CLUB)
    config = load_config(club)
    pairing = _pairing(
        tmp_path / "pairing.toml",
        PairedDevice("AA:00:00:00:01:01", "ann", DeviceKind.STRAP),
        PairedDevice("BB:00:00:00:01:01", "ann", DeviceKind.STRAP),
    )
    streamed = paired_devices(config, pairing)["ann"]
    assert [d.id for d in streamed] == ["strap", "strap-0101", "strap-0101-2"]
    (ann,) = config.athletes
    as_stored = [replace(d, id="strap") for d in streamed[1:]]  # each paired elsewhere alone
    merged = merge_devices(ann.devices, as_stored, [])
    assert [d.id for d in merged.devices] == [d.id for d in streamed]

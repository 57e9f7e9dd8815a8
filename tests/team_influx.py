"""InfluxDB in the team simulation (:mod:`tests.team_sim`): a counting relay in front of
the server, the single-box oracle's points written beside the workers', and the comparison.

The workers write to a real InfluxDB 1.6 through :class:`CountingRelay`, which forwards
every request unchanged and counts each durable point the server accepted (2xx), so a point
written twice — an overwrite in InfluxDB, invisible in the data — is still seen. The relay
runs in a process of its own (:class:`RelayProcess`, ``python -m tests.team_influx``), so
its threads do not take the simulation process's interpreter from the MQTT subscriber that
times the live samples. The oracle's
durable results are encoded by the sink's own encoder (:func:`lines_for`) and written to a
second database on the same server; both databases are then read back the same way (every
durable measurement, ``GROUP BY *``), so the comparison is on content — measurement, tags,
time and fields — after the same server's parsing on both sides.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from streamer.results import LIVE_KINDS, Result
from streamer.sinks.influx_schema import MEASUREMENT, lines_for

LIVE_MEASUREMENTS: Final = frozenset(MEASUREMENT[k] for k in LIVE_KINDS if k in MEASUREMENT)
"""Measurements of live samples (written by ``send_live``, tagged with their gateway)."""
_MEASUREMENT_OF: Final = re.compile(r"^((?:[^, \\]|\\.)+)")
_HOP_BY_HOP: Final = frozenset({"connection", "transfer-encoding", "content-length", "server",
                                "date", "keep-alive"})  # fmt: skip

Point = tuple[str, tuple[tuple[str, str], ...], int, tuple[tuple[str, object], ...]]
"""(measurement, sorted tags, time (ns), sorted non-null fields) as the server returns it."""


class CountingRelay:
    """An HTTP relay on loopback ``port`` (0: any free one) in front of ``upstream``
    (InfluxDB's URL).

    Every request is forwarded as it came; while the server is away the relay answers 503
    (the writer's retry case). For each ``/write`` the server accepted, each durable point's
    line is counted in :attr:`accepted`; :attr:`last_accepted` is the wall time (s) of the
    latest accepted write. ``GET /relay/stats`` answers both as JSON (``rewrites``,
    ``last_accepted``) instead of forwarding."""

    def __init__(self, upstream: str, port: int = 0) -> None:
        self.upstream = upstream.rstrip("/")
        self.accepted: Counter[str] = Counter()
        self.last_accepted = 0.0
        self._lock = threading.Lock()
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == STATS_PATH:
                    relay._stats(self)
                else:
                    relay._forward(self, "GET")

            def do_POST(self) -> None:
                relay._forward(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per write would flood the simulation's output

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        request = urllib.request.Request(
            self.upstream + handler.path, data=body, headers=headers, method=method
        )
        answer_headers: list[tuple[str, str]] = []
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, text = int(response.status), response.read()
                answer_headers = list(response.headers.items())
        except urllib.error.HTTPError as exc:
            status, text = int(exc.code), exc.read()
            answer_headers = list(exc.headers.items())
        except (urllib.error.URLError, OSError) as exc:  # the server is away: retry later
            status, text = 503, f"relay: InfluxDB unreachable ({exc})".encode()
        if 200 <= status < 300 and handler.path.startswith("/write") and body:
            self._count(body)
        handler.send_response(status)
        for key, value in answer_headers:
            if key.lower() not in _HOP_BY_HOP:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(text)))
        handler.end_headers()
        handler.wfile.write(text)

    def _stats(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            last = self.last_accepted
        text = json.dumps({"rewrites": self.rewrites(), "last_accepted": last}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(text)))
        handler.end_headers()
        handler.wfile.write(text)

    def _count(self, body: bytes) -> None:
        durable = [
            line
            for line in body.decode("utf-8", "replace").splitlines()
            if line and (m := _MEASUREMENT_OF.match(line)) and m[1] not in LIVE_MEASUREMENTS
        ]
        with self._lock:
            self.accepted.update(durable)
            self.last_accepted = time.time()

    def rewrites(self) -> int:
        """Durable points the server accepted more than once (an overwrite, same content)."""
        with self._lock:
            return sum(n - 1 for n in self.accepted.values() if n > 1)


STATS_PATH: Final = "/relay/stats"


class RelayProcess:
    """:class:`CountingRelay` in its own process, on a free loopback port; its log in
    ``workdir``."""

    def __init__(self, upstream: str, workdir: Path) -> None:
        from tests.servers import free_port

        self.upstream = upstream
        self.port = free_port()
        self.log = workdir / "influx-relay.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from tests.servers import _wait_until

        root = Path(__file__).resolve().parents[1]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.team_influx", self.upstream, str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=root,
                env={**os.environ, "PYTHONPATH": str(root)},
            )
        _wait_until(lambda: self._get() is not None, "influx relay", self.proc, self.log, 60.0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(15)

    def _get(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.url + STATS_PATH, timeout=10) as resp:
                stats: dict[str, Any] = json.loads(resp.read())
                return stats
        except (urllib.error.URLError, OSError):
            return None

    def stats(self) -> dict[str, Any]:
        stats = self._get()
        if stats is None:
            raise RuntimeError(f"the InfluxDB relay does not answer; see {self.log}")
        return stats

    def rewrites(self) -> int:
        """Durable points the server accepted more than once."""
        return int(self.stats()["rewrites"])

    @property
    def last_accepted(self) -> float:
        """Wall time (s) of the latest write the server accepted (0: none yet)."""
        return float(self.stats()["last_accepted"])


def query(url: str, q: str, db: str | None = None) -> list[dict[str, Any]]:
    """The series of one InfluxQL statement (``epoch=ns``); [] for none."""
    params = {"q": q, "epoch": "ns", **({"db": db} if db else {})}
    data = urllib.parse.urlencode(params).encode()
    with urllib.request.urlopen(f"{url}/query", data=data, timeout=60) as resp:
        answer = json.loads(resp.read())
    result = answer["results"][0]
    if "error" in result:
        raise RuntimeError(f"InfluxDB refused {q!r}: {result['error']}")
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def write_oracle(url: str, db: str, results: Iterable[Result], batch: int = 5000) -> int:
    """The oracle's durable results as its InfluxDB sink encodes them, written to ``db``
    (created); returns how many points."""
    query(url, f'CREATE DATABASE "{db}"')
    lines = [line for r in results if not r.kind.is_live for line in lines_for(r)]
    target = f"{url}/write?" + urllib.parse.urlencode({"db": db, "precision": "ns"})
    for i in range(0, len(lines), batch):
        body = "\n".join(lines[i : i + batch]).encode()
        with urllib.request.urlopen(urllib.request.Request(target, data=body), timeout=60):
            pass
    return len(lines)


def durable_points(url: str, db: str) -> set[Point]:
    """Every point of ``db``'s durable measurements, as the server returns it."""
    points: set[Point] = set()
    for s in query(url, "SHOW MEASUREMENTS", db):
        for (name,) in s["values"]:
            if name in LIVE_MEASUREMENTS:
                continue
            for series in query(url, f'SELECT * FROM "{name}" GROUP BY *', db):
                tags = tuple(sorted((series.get("tags") or {}).items()))
                columns = series["columns"]
                for row in series["values"]:
                    values = dict(zip(columns, row, strict=True))
                    t = int(values.pop("time"))
                    fields = tuple(sorted((k, v) for k, v in values.items() if v is not None))
                    points.add((name, tags, t, fields))
    return points


def live_tagging(url: str, db: str) -> tuple[int, int]:
    """(live points with a ``gateway`` tag, live points without one) in ``db``."""
    tagged = untagged = 0
    for s in query(url, "SHOW MEASUREMENTS", db):
        for (name,) in s["values"]:
            if name not in LIVE_MEASUREMENTS:
                continue
            for where, bucket in (("!= ''", "tagged"), ("= ''", "untagged")):
                rows = query(url, f'SELECT count(*) FROM "{name}" WHERE "gateway" {where}', db)
                # count(*) gives one count per field; the point count is the largest
                n = max((int(v) for r in rows for v in r["values"][0][1:] if v), default=0)
                if bucket == "tagged":
                    tagged += n
                else:
                    untagged += n
    return tagged, untagged


@dataclass
class InfluxFacts:
    """The workers' InfluxDB against the oracle's."""

    expected: int = 0
    """Durable points of the oracle (distinct: one per measurement, tags and time)."""
    missing: int = 0
    extra: int = 0
    """Durable points in the workers' database the oracle has not (e.g. a duplicate under
    another time or tag)."""
    rewrites: int = 0
    """Durable points the server accepted more than once (an identical overwrite: a batch
    resent after its answer was lost)."""
    live_tagged: int = 0
    live_untagged: int = 0
    diff: tuple[list[Point], list[Point]] = field(default_factory=lambda: ([], []))

    @property
    def identical(self) -> bool:
        return self.expected > 0 and self.missing == self.extra == 0


def compare(url: str, db: str, oracle_db: str) -> InfluxFacts:
    """The durable points of ``db`` against ``oracle_db``, and ``db``'s live tagging."""
    want, have = durable_points(url, oracle_db), durable_points(url, db)
    tagged, untagged = live_tagging(url, db)
    missing, extra = sorted(want - have), sorted(have - want)
    return InfluxFacts(len(want), len(missing), len(extra), 0, tagged, untagged,
                       (missing[:5], extra[:5]))  # fmt: skip


def worker_config(relay_url: str, db: str) -> str:
    """A worker's config (TOML): its InfluxDB sink through the relay."""
    return (
        f'[influx]\nurl = "{relay_url}"\napi = "v1"\ndb = "{db}"\ncreate_database = true\n'
        "flush_interval_s = 0.5\n"
    )


def main(argv: list[str]) -> None:
    """``python -m tests.team_influx UPSTREAM PORT``: the relay, until SIGTERM."""
    import signal

    relay = CountingRelay(argv[0], int(argv[1]))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    relay._server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])

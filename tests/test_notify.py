"""``redox-streamer notify``: alerts on a real mosquitto become notifications, once each.

Alert messages are produced by the real chain — processors' ``AlertBook`` → ``Alert`` →
``streamer.results.alert_result`` → ``streamer.payloads.encode_payload`` — and published as
the streamer user on mosquitto started from the shipped config and ACL; the notifier logs
in as ``redox-notify``. Webhooks go to a local ``http.server``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aiomqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.alerts import Alert, AlertState, Severity
from processors.rules import CATALOGUE
from streamer.config import MqttConfig
from streamer.notify.channels import (
    CommandChannel,
    DeliveryError,
    WebhookChannel,
    priority,
)
from streamer.notify.notifier import (
    AlertNotice,
    Notifier,
    NotifyError,
    SeenStore,
    alerts_in_message,
    run_notifier,
)
from streamer.payloads import encode_payload
from streamer.results import alert_result
from tests.shipped_mosquitto import ShippedBroker

REPO = Path(__file__).resolve().parents[1]
T0 = 1_714_550_400_000_000_000  # 2024-05-01T08:00Z


# --- producing alert messages the way the streamer does ------------------------------------


def make_alert(
    athlete: str = "ann",
    rule: str = "rhr_creep",
    *,
    raised_ns: int = T0,
    cleared_ns: int | None = None,
) -> Alert:
    spec = CATALOGUE[rule]
    return Alert(
        rule_id=rule,
        severity=spec.severity,
        athlete=athlete,
        message=f"{spec.title}: resting HR 6.1 bpm above baseline",
        evidence={"delta_bpm": 6.1},
        advice=spec.advice,
        source=spec.source,
        raised_at_ns=raised_ns,
        state=AlertState.CLEARED if cleared_ns is not None else AlertState.RAISED,
        cleared_at_ns=cleared_ns,
    )


def alerts_payload(event: Alert, active: list[Alert], seq: int) -> bytes:
    return encode_payload(alert_result(event.athlete, event, active), seq)


def raised_payload(
    athlete: str = "ann", rule: str = "rhr_creep", seq: int = 1, raised_ns: int = T0
) -> bytes:
    alert = make_alert(athlete, rule, raised_ns=raised_ns)
    return alerts_payload(alert, [alert], seq)


def cleared_payload(athlete: str = "ann", rule: str = "rhr_creep", seq: int = 3) -> bytes:
    return alerts_payload(make_alert(athlete, rule, cleared_ns=T0 + 86_400 * 10**9), [], seq)


# --- a local webhook receiver --------------------------------------------------------------


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: str


@dataclass
class Webhook:
    url: str
    posts: list[Post] = field(default_factory=list)
    status: list[int] = field(default_factory=lambda: [200])  # next statuses, last repeats
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, n: int, timeout_s: float = 20.0) -> list[Post]:
        with self.arrived:
            ok = self.arrived.wait_for(lambda: len(self.posts) >= n, timeout_s)
        assert ok, f"{len(self.posts)} webhook POSTs after {timeout_s} s, expected {n}"
        return list(self.posts)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            code = hook.status.pop(0) if len(hook.status) > 1 else hook.status[0]
            if code == 200:
                with hook.arrived:
                    hook.posts.append(Post(self.path, dict(self.headers.items()), body))
                    hook.arrived.notify_all()
            self.send_response(code)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/redox-alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield hook
    server.shutdown()
    server.server_close()


# --- the notifier as a real process ---------------------------------------------------------


class NotifyProcess:
    """``python -m streamer.cli notify ...`` with its log lines readable as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer.cli", "notify", *args],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_line(self, text: str, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.log.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in the notifier's output:\n{''.join(self.log)}")

    def stop(self) -> int:
        """SIGTERM, then the exit status: 143 (128 + 15) for a clean stop, as `run`'s."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(15)


def notify_cmd(broker: ShippedBroker, state: Path, *extra: str) -> NotifyProcess:
    return NotifyProcess(
        [
            "--mqtt",
            f"mqtt://redox-notify@{broker.host}:{broker.port}",
            "--state",
            str(state),
            *extra,
        ],
        {"REDOX_MQTT_PASSWORD": broker.password("redox-notify")},
    )


async def publish(broker: ShippedBroker, *messages: tuple[str, bytes]) -> None:
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username="redox-streamer",
        password=broker.password("redox-streamer"),
        timeout=5,
    ) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=True)


@pytest.mark.integration
async def test_raised_alert_published_twice_then_cleared_gives_one_post_with_the_advice(
    shipped_mosquitto: ShippedBroker,
    webhook: Webhook,
    tmp_path: Path,
) -> None:
    out = tmp_path / "exec"
    out.mkdir()
    proc = notify_cmd(
        shipped_mosquitto,
        tmp_path / "state.json",
        "--webhook",
        webhook.url,
        "--exec",
        f'cat > "{out}/$REDOX_ATHLETE-$REDOX_RULE-$REDOX_STATE.json"',
    )
    try:
        proc.wait_line("subscribed to redox/+/alerts")
        await publish(
            shipped_mosquitto,
            ("redox/ann/alerts", raised_payload(seq=1)),
            ("redox/ann/alerts", raised_payload(seq=2)),  # the same alert again
            ("redox/ann/alerts", cleared_payload(seq=3)),
            # A later alert for someone else: once it is notified, ann's three were handled.
            ("redox/bob/alerts", raised_payload("bob", "smo2_slow_recovery")),
        )
        posts = webhook.wait_for(2)
        proc.wait_line("exec: notified bob")
        await asyncio.sleep(0.3)  # room for a wrong extra POST to show up
    finally:
        assert proc.stop() == 143  # stopped by SIGTERM, cleanly
    assert [p.headers["Title"] for p in webhook.posts] == [
        "ann: rhr_creep (pull back)",
        "bob: smo2_slow_recovery (pull back)",
    ]
    ann = posts[0]
    assert CATALOGUE["rhr_creep"].advice in ann.body
    assert "resting HR 6.1 bpm above baseline" in ann.body
    assert ann.path == "/redox-alerts"
    assert ann.headers["Priority"] == "4"
    assert ann.headers["Tags"] == "rotating_light,rhr_creep,ann"
    # --exec: one run per notification, the alert as JSON on stdin.
    assert sorted(p.name for p in out.iterdir()) == [
        "ann-rhr_creep-raised.json",
        "bob-smo2_slow_recovery-raised.json",
    ]
    sent = json.loads((out / "ann-rhr_creep-raised.json").read_text())
    assert sent["rule"] == "rhr_creep"
    assert sent["advice"] == CATALOGUE["rhr_creep"].advice
    assert sent["evidence"] == {"delta_bpm": 6.1}
    assert sent["raised_ts_ns"] == T0


@pytest.mark.integration
async def test_restarted_notifier_does_not_notify_the_retained_alert_again(
    shipped_mosquitto: ShippedBroker,
    webhook: Webhook,
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.json"
    await publish(shipped_mosquitto, ("redox/ann/alerts", raised_payload()))
    first = notify_cmd(shipped_mosquitto, state, "--webhook", webhook.url)
    try:
        first.wait_line("webhook: notified ann")
    finally:
        assert first.stop() == 143
    # The retained message still says ann's alert is open: it arrives again on subscribe.
    second = notify_cmd(shipped_mosquitto, state, "--webhook", webhook.url)
    try:
        second.wait_line("subscribed to")
        await publish(shipped_mosquitto, ("redox/bob/alerts", raised_payload("bob")))
        second.wait_line("webhook: notified bob")
    finally:
        assert second.stop() == 143
    assert [p.headers["Title"] for p in webhook.wait_for(2)] == [
        "ann: rhr_creep (pull back)",
        "bob: rhr_creep (pull back)",
    ]


@pytest.mark.integration
async def test_alert_raised_while_the_notifier_was_away_is_notified_on_return(
    shipped_mosquitto: ShippedBroker,
    webhook: Webhook,
    tmp_path: Path,
) -> None:
    state = tmp_path / "state.json"
    first = notify_cmd(
        shipped_mosquitto, state, "--webhook", webhook.url, "--client-id", "notify-away"
    )
    first.wait_line("subscribed to")
    assert first.stop() == 143
    # Not retained: only the persistent session's queue can bring it back.
    async with aiomqtt.Client(
        shipped_mosquitto.host,
        shipped_mosquitto.port,
        username="redox-streamer",
        password=shipped_mosquitto.password("redox-streamer"),
    ) as c:
        await c.publish("redox/ann/alerts", raised_payload(), qos=1)
    second = notify_cmd(
        shipped_mosquitto, state, "--webhook", webhook.url, "--client-id", "notify-away"
    )
    try:
        posts = webhook.wait_for(1)
    finally:
        assert second.stop() == 143
    assert posts[0].headers["Title"] == "ann: rhr_creep (pull back)"


@pytest.mark.integration
def test_wrong_password_is_a_one_line_error_with_the_fix(
    shipped_mosquitto: ShippedBroker,
    tmp_path: Path,
) -> None:
    proc = NotifyProcess(
        [
            "--mqtt",
            f"mqtt://redox-notify:wrong@{shipped_mosquitto.host}:{shipped_mosquitto.port}",
            "--desktop",
            "--state",
            str(tmp_path / "s"),
        ],
        {},
    )
    assert proc.proc.wait(20) == 2
    line = proc.wait_line("error:")
    assert "refused the login" in line
    assert "REDOX_MQTT_PASSWORD" in line
    assert "wrong" not in line  # the password is never printed


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "say where notifications go"),
        (["--webhook", "ftp://x"], "is not an http(s):// URL"),
        (["--desktop", "--webhook-header", "Auth"], "--webhook-header needs --webhook"),
        (["--webhook", "http://x", "--webhook-header", "Auth"], "is not 'Name: value'"),
    ],
)
def test_cli_refuses_bad_options_naming_them(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from streamer.cli import main

    assert main(["notify", "--mqtt", "mqtt://127.0.0.1:1", *args]) == 2
    assert expected in capsys.readouterr().err


# --- the notifier in-process, against the same real broker -----------------------------------


async def _notified(
    broker: ShippedBroker,
    notifier: Notifier,
    messages: list[tuple[str, bytes]],
    timeout_s: float = 10.0,
) -> None:
    """Run the notifier until it has handled ``messages``."""
    mqtt = MqttConfig.from_url(broker.url("redox-notify"))
    subscribed = asyncio.Event()
    task = asyncio.create_task(
        run_notifier(mqtt, notifier, client_id="inproc", subscribed=subscribed)
    )
    try:
        async with asyncio.timeout(timeout_s):
            await subscribed.wait()
        await publish(broker, *messages)
        async with asyncio.timeout(timeout_s):
            # The notifier runs in another task and exposes counters, not events.
            while notifier.stats.messages < len(messages):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        task.cancel()


@pytest.mark.integration
async def test_failed_webhook_delivery_is_retried_when_the_alert_is_seen_again(
    shipped_mosquitto: ShippedBroker,
    webhook: Webhook,
    tmp_path: Path,
) -> None:
    webhook.status = [503, 200]
    notifier = Notifier([WebhookChannel(webhook.url)], SeenStore(tmp_path / "s.json"))
    # The second message carries the same open alert (a new event for another rule).
    ann = make_alert()
    other = make_alert(rule="hrv_downtrend", raised_ns=T0 + 1)
    await _notified(
        shipped_mosquitto,
        notifier,
        [
            ("redox/ann/alerts", alerts_payload(ann, [ann], 1)),
            ("redox/ann/alerts", alerts_payload(other, [other, ann], 2)),
        ],
    )
    titles = [p.headers["Title"] for p in webhook.wait_for(2)]
    assert sorted(titles) == ["ann: hrv_downtrend (warning)", "ann: rhr_creep (pull back)"]
    assert notifier.stats.failed == 1


# --- parsing, state, channels ----------------------------------------------------------------


def test_notices_are_read_from_the_streamers_own_payload() -> None:
    notices = alerts_in_message("redox/ann/alerts", raised_payload())
    assert len(notices) == 1  # the event and its open copy are one alert
    n = notices[0]
    assert (n.athlete, n.rule, n.severity, n.state, n.raised_ts_ns) == (
        "ann",
        "rhr_creep",
        "pull_back",
        "raised",
        T0,
    )
    assert n.advice == CATALOGUE["rhr_creep"].advice
    assert n.body.endswith(CATALOGUE["rhr_creep"].advice)


def test_a_payload_that_is_not_a_redox_alert_is_ignored_and_counted(tmp_path: Path) -> None:
    notifier = Notifier([CommandChannel("true")], SeenStore(tmp_path / "s.json"))
    delivered = asyncio.run(notifier.handle("redox/ann/alerts", b'{"hello": 1}'))
    assert delivered == []
    assert notifier.stats.malformed == 1
    with pytest.raises(ValueError, match="schema-1"):
        alerts_in_message("redox/ann/alerts", b"[1]")
    assert asyncio.run(notifier.handle("redox/ann/alerts", b"\xff offline")) == []
    assert notifier.stats.malformed == 2


def test_state_survives_a_new_notifier_and_a_fresh_file_notifies_again(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    channel = CommandChannel(f'cat >> "{out}"')
    payload = raised_payload()
    for _ in range(2):
        notifier = Notifier([channel], SeenStore(tmp_path / "state.json"))
        asyncio.run(notifier.handle("redox/ann/alerts", payload))
    assert len(out.read_text().splitlines()) == 1
    fresh = Notifier([channel], SeenStore(tmp_path / "other.json"))
    asyncio.run(fresh.handle("redox/ann/alerts", payload))
    assert len(out.read_text().splitlines()) == 2


def test_corrupt_state_file_names_the_file_and_the_fix(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with pytest.raises(NotifyError, match=r"state\.json is unreadable.*delete it"):
        SeenStore(state)


def test_cleared_alerts_are_notified_only_when_asked(tmp_path: Path) -> None:
    out = tmp_path / "runs"
    for include, expected in ((False, 0), (True, 1)):
        notifier = Notifier(
            [CommandChannel(f'echo "$REDOX_TITLE" >> "{out}"')],
            SeenStore(tmp_path / f"s{include}.json"),
            include_cleared=include,
        )
        asyncio.run(notifier.handle("redox/ann/alerts", cleared_payload()))
        lines = out.read_text().splitlines() if out.exists() else []
        assert len(lines) == expected
    assert lines == ["ann: rhr_creep cleared"]


def test_failing_command_is_a_delivery_error_with_its_exit_status() -> None:
    notice = alerts_in_message("redox/ann/alerts", raised_payload())[0]
    with pytest.raises(DeliveryError, match="exited 3"):
        asyncio.run(CommandChannel("exit 3").send(notice))


def test_webhook_headers_follow_ntfy_and_survive_non_latin1_names() -> None:
    notice = alerts_in_message("redox/Аня/alerts", raised_payload("Аня", "grip_signal"))[0]
    request = WebhookChannel("http://127.0.0.1:9/x").request(notice)
    headers = {k.lower(): v for k, v in request.header_items()}
    assert headers["title"].startswith("=?UTF-8?B?")
    assert headers["priority"] == "2"  # grip_signal is informational
    assert headers["tags"].startswith("=?UTF-8?B?")
    encoded = headers["title"].removeprefix("=?UTF-8?B?").removesuffix("?=")
    assert base64.b64decode(encoded).decode() == "Аня: grip_signal (info)"


@pytest.mark.parametrize(
    ("severity", "state", "expected"),
    [
        (Severity.PULL_BACK, "raised", 4),
        (Severity.WARNING, "raised", 3),
        (Severity.INFO, "raised", 2),
        (Severity.PULL_BACK, "cleared", 2),
    ],
)
def test_priority_follows_severity_and_state(severity: Severity, state: str, expected: int) -> None:
    notice = AlertNotice("ann", "r", severity.value, state, "m", "a", "s", T0, None)
    assert priority(notice) == expected


class ListChannel:
    """A channel that keeps what it is given (the Channel protocol, no I/O)."""

    name = "list"

    def __init__(self) -> None:
        self.got: list[AlertNotice] = []

    async def send(self, notice: AlertNotice) -> None:
        self.got.append(notice)


_alert_ids = st.tuples(
    st.sampled_from(["ann", "bob"]),
    st.sampled_from(["rhr_creep", "hrv_downtrend", "grip_spillover"]),
    st.integers(0, 3),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_alert_ids, min_size=1, max_size=25))
def test_each_raised_alert_is_delivered_exactly_once_whatever_the_redeliveries(
    tmp_path_factory: pytest.TempPathFactory,
    messages: list[tuple[str, str, int]],
) -> None:
    channel = ListChannel()
    notifier = Notifier([channel], SeenStore(tmp_path_factory.mktemp("s") / "s.json"))
    for seq, (athlete, rule, day) in enumerate(messages, 1):
        payload = raised_payload(athlete, rule, seq, raised_ns=T0 + day * 86_400 * 10**9)
        asyncio.run(notifier.handle(f"redox/{athlete}/alerts", payload))
    keys = [n.key for n in channel.got]
    assert len(keys) == len(set(keys))
    assert {(n.athlete, n.rule, n.raised_ts_ns) for n in channel.got} == {
        (a, r, T0 + d * 86_400 * 10**9) for a, r, d in messages
    }


@pytest.mark.integration
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ((), ["cat: hrv_downtrend (warning)", "bob: rhr_creep (pull back)"]),
        (("--min-severity", "pull_back"), ["bob: rhr_creep (pull back)"]),
        (
            ("--min-severity", "info"),
            [
                "ann: grip_signal (info)",
                "cat: hrv_downtrend (warning)",
                "bob: rhr_creep (pull back)",
            ],
        ),
    ],
)
async def test_min_severity_keeps_info_findings_off_phones_by_default(
    shipped_mosquitto: ShippedBroker,
    webhook: Webhook,
    tmp_path: Path,
    flags: tuple[str, ...],
    expected: list[str],
) -> None:
    proc = notify_cmd(shipped_mosquitto, tmp_path / "state.json", "--webhook", webhook.url, *flags)
    try:
        proc.wait_line("subscribed to")
        # An info alert as a streamer before this change raised it, then a warning, then a
        # pull-back: the notifier handles messages in order, so once bob's is notified the
        # two before it were decided.
        await publish(
            shipped_mosquitto,
            ("redox/ann/alerts", raised_payload("ann", "grip_signal")),
            ("redox/cat/alerts", raised_payload("cat", "hrv_downtrend")),
            ("redox/bob/alerts", raised_payload("bob", "rhr_creep")),
        )
        proc.wait_line("webhook: notified bob")
    finally:
        assert proc.stop() == 143  # stopped by SIGTERM, cleanly
    assert [p.headers["Title"] for p in webhook.posts] == expected


def test_a_severity_this_version_does_not_know_is_notified_as_a_warning() -> None:
    notice = AlertNotice("ann", "new_rule", "catastrophic", "raised", "m", "a", "s", T0, None)
    assert notice.rank == AlertNotice("ann", "r", "warning", "raised", "m", "a", "s", T0, None).rank
    with pytest.raises(ValueError, match="min_severity"):
        Notifier(
            [CommandChannel("true")],
            SeenStore(Path("/nonexistent/state.json")),
            min_severity="high",
        )

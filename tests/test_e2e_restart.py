"""The streamer SIGKILLed while the broker is away, then restarted on the same store:
baselines and alert state are intact, and what was waiting in the outbox is delivered."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streamer.sinks.mqtt import MqttOutbox
from streamer.store import Store
from tests.mqtt_helpers import ThreadSubscriber
from tests.servers import Mosquitto

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def demo(store: Path, url: str, duration: float) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streamer.cli",
        "demo",
        "--athletes",
        "1",
        "--days",
        "28",
        "--speed",
        "20",
        "--plain",
        "--mqtt",
        url,
        "--store",
        str(store),
        "--duration",
        str(duration),
    ]


def _open_rules(book: object) -> list[str]:
    assert isinstance(book, dict)
    open_alerts = book["open"]
    assert isinstance(open_alerts, list)
    return [str(a["rule"]) for a in open_alerts]


def _outbox_depth(store_path: Path) -> int:
    with Store(store_path) as store:
        return MqttOutbox(store).depth()


def _wait_until(condition: Callable[[], bool], what: str, timeout_s: float) -> None:
    """Check ``condition`` every 50 ms until it holds; AssertionError after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)


def _wait_for_line(proc: subprocess.Popen[str], text: str, timeout_s: float) -> list[str]:
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} not printed:\n{''.join(seen)[-3000:]}")


def test_sigkilled_streamer_restarts_with_its_state_and_delivers_its_outbox(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    store_path = tmp_path / "store.sqlite3"
    sub = ThreadSubscriber(mosquitto.port, client_id="restart-test")
    sub.sync()  # subscribed before the streamer publishes
    first = subprocess.Popen(
        demo(store_path, mosquitto.url, 120),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_for_line(first, "live session", 90)
        sub.wait_for(lambda: bool(sub.seqs("redox/athlete1/hrv")), "a first live HRV", 90)
        mosquitto.stop()  # the broker goes away: results pile up in the outbox
        _wait_until(lambda: _outbox_depth(store_path) > 0, "results in the outbox", 90)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    with Store(store_path) as store:
        pending = MqttOutbox(store).depth()
        book_before = store.load_alert_book("athlete1")
        baselines_before = store.baselines("athlete1")
        raised_before = [(a.rule, a.ts_ns) for a in store.alerts("athlete1") if a.state == "raised"]
    assert pending > 0, "nothing waited in the outbox: the test did not test delivery"
    assert book_before is not None
    assert {"ln_rmssd", "resting_hr_bpm"} <= set(baselines_before)

    mosquitto.start()
    sub.sync()  # the persistent subscriber reconnected on its own
    second = subprocess.run(
        demo(store_path, mosquitto.url, 4), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert second.returncode == 0, second.stderr[-3000:]
    sub.sync()  # everything the second run published has arrived
    sub.close()

    with Store(store_path) as store:
        assert MqttOutbox(store).depth() == 0
        book_after = store.load_alert_book("athlete1")
        raised_after = [(a.rule, a.ts_ns) for a in store.alerts("athlete1") if a.state == "raised"]
        baselines_after = store.baselines("athlete1")
        mornings = store.morning_history("athlete1")
    # The history was not replayed again (28 mornings, not 56) and nothing was re-raised.
    assert len(mornings) == 28
    assert raised_after == raised_before
    assert _open_rules(book_after) == _open_rules(book_before)
    assert "rhr_creep" in _open_rules(book_after)
    assert baselines_after == baselines_before
    # Every HRV result numbered before the kill reached the subscriber: no hole in seq.
    seqs = sorted(set(sub.seqs("redox/athlete1/hrv")))
    assert seqs, "no hrv message seen"
    assert seqs == list(range(seqs[0], seqs[-1] + 1))

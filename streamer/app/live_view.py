"""The live terminal view: athletes, devices, alerts, sinks and replay progress.

On a terminal it is a ``rich.live.Live`` table refreshed a few times a second. When stdout
is not a terminal (CI, a pipe, a log file) it prints one plain line per athlete and one for
the sinks every few seconds instead, so logs stay readable and grep-able.

The view only reads: the pipeline's :meth:`~streamer.pipeline.Pipeline.status`, each
athlete's :class:`~streamer.athlete.AthleteSnapshot`, each device's driver status, and the
history replay's :class:`~streamer.history.HistoryProgress`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from rich.columns import Columns
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streamer.app.pipeline import PipelineStatus
from streamer.athlete import AthleteSnapshot
from streamer.demo.history import HistoryProgress

DEFAULT_REFRESH_S = 0.5
DEFAULT_PLAIN_EVERY_S = 2.0


class DeviceStatusLike(Protocol):
    """What the view reads of :class:`devices.drivers.base.DriverStatus`."""

    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...

    @property
    def gaps(self) -> int: ...


class DeviceLike(Protocol):
    """A device reader the view can show (a driver)."""

    @property
    def name(self) -> str: ...

    @property
    def status(self) -> DeviceStatusLike: ...


@dataclass
class ViewModel:
    """Everything the view shows; the demo/run commands fill it and keep it current."""

    title: str
    pipeline_status: Callable[[], PipelineStatus]
    snapshots: Mapping[str, AthleteSnapshot]
    devices: Mapping[str, Sequence[tuple[str, DeviceLike]]] = field(default_factory=dict)
    history: HistoryProgress | None = None
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    phase: str = "starting"


def _fmt(value: float | int | None, spec: str = ".0f", unit: str = "") -> str:
    if value is None:
        return "–"
    return f"{value:{spec}}{unit}"


def _signals(snap: AthleteSnapshot) -> list[str]:
    """The athlete's latest values that exist, each a short unbreakable item."""
    items = (
        ("HR", snap.hr_bpm, ".0f", ""),
        ("RR", snap.rr_ms, ".0f", " ms"),
        ("lnRMSSD", snap.ln_rmssd, ".2f", ""),
        ("SmO2", snap.smo2_pct, ".1f", "%"),
        ("power", snap.power_w, ".0f", " W"),
        ("force", snap.force_kg, ".1f", " kg"),
        ("SpO2", snap.spo2_pct, ".0f", "%"),
    )
    return [f"{label} {v:{spec}}{unit}" for label, v, spec, unit in items if v is not None]


def _signals_text(snap: AthleteSnapshot) -> RenderableType:
    items = _signals(snap)
    if not items:
        return Text("no data yet", style="dim")
    # Each value its own item: a narrow cell puts values on more lines, never cuts one.
    return Columns([Text(item, no_wrap=True) for item in items], padding=(0, 2))


def _adapter_problem(model: ViewModel) -> str | None:
    """The Bluetooth adapter's problem as the drivers last met it, if any."""
    for devices in model.devices.values():
        for _device_id, device in devices:
            problem = getattr(device.status, "adapter_error", None)
            if problem:
                return str(problem)
    return None


def _has_data(model: ViewModel, athlete: str, snap: AthleteSnapshot) -> bool:
    devices = model.devices.get(athlete, ())
    return bool(_signals(snap)) or any(d.status.connected for _, d in devices)


def _devices_text(model: ViewModel, athlete: str) -> RenderableType:
    items = []
    for device_id, device in model.devices.get(athlete, ()):
        status = device.status
        text = Text(device_id, style="green" if status.connected else "red", no_wrap=True)
        extra = [] if status.connected else ["down"]
        if status.reconnects:
            extra.append(f"r{status.reconnects}")
        if status.gaps:
            extra.append(f"g{status.gaps}")
        if extra:
            text.append(f"({','.join(extra)})", style="dim")
        items.append(text)
    return Columns(items, padding=(0, 2))


def _alerts_text(snapshot: AthleteSnapshot, has_data: bool) -> Text:
    if not snapshot.open_alerts:
        # "ok" only means something once data flows: no data is not a green light.
        return Text("ok", style="green") if has_data else Text("–", style="dim")
    text = Text()
    for rule in snapshot.open_alerts:
        if text:
            text.append(" ")
        text.append(rule, style="yellow" if rule == "grip_signal" else "bold red")
    return text


def sink_problem(status: Mapping[str, Any]) -> str | None:
    """What is wrong with a sink now (disconnected, refusing writes), or None."""
    if "connected" in status:  # MQTT
        if status["connected"]:
            return None
        error = status.get("last_error")
        if error:
            return f"DISCONNECTED ({error})"
        return None if not status.get("connects") else "DISCONNECTED"
    if status.get("healthy") is False:  # InfluxDB: the last write failed
        word = "REFUSED" if status.get("refused") else "UNREACHABLE"
        return f"{word}: {status.get('last_error') or 'write failed'}"
    if status.get("error"):
        return f"status unavailable: {status['error']}"
    return None


def _sink_line(name: str, status: Mapping[str, Any], shed: int) -> str:
    """``name delivered N waiting M shed S`` and, when something is wrong, what."""
    parts = [name]
    if status.get("connected"):
        parts.append("connected")
    elif "connected" in status and not status.get("connects") and not status.get("last_error"):
        parts.append("connecting")
    delivered = status.get("published", status.get("written"))
    if delivered is not None:
        unit = "messages" if "published" in status else "points"
        parts.append(f"delivered {delivered} {unit}")
    if "outbox_depth" in status:
        waiting = int(status["outbox_depth"]) + int(status.get("buffered", 0))
        parts.append(f"waiting {waiting}")
    if "live_published" in status:
        parts.append(f"live {status['live_published']}")
    parts.append(f"shed {shed}")
    problem = sink_problem(status)
    if problem is not None:
        parts.append(f"— {problem}")
    return " ".join(str(p) for p in parts)


def render(model: ViewModel) -> RenderableType:
    """The rich renderable of the current state: readable from 80 columns up (the latest
    values share one cell that wraps between values, so no column is cut to "…")."""
    status = model.pipeline_status()
    table = Table(title=model.title, expand=True, title_justify="left")
    table.add_column("athlete", overflow="fold", max_width=16)
    table.add_column("latest", ratio=3)
    table.add_column("devices", ratio=2)
    table.add_column("alerts", ratio=1, min_width=6)
    inboxes = []
    for athlete, snap in model.snapshots.items():
        inbox = status.athletes.get(athlete)
        if inbox is not None:
            inboxes.append(f"{athlete} {inbox.received}/{inbox.shed}")
        label = Text(athlete, style="bold", overflow="fold")
        if snap.phase and snap.phase != "idle":
            label.append(f"\n{snap.phase}", style="dim")
        table.add_row(
            label,
            _signals_text(snap),
            _devices_text(model, athlete),
            _alerts_text(snap, _has_data(model, athlete, snap)),
        )
    lines = [Text(f"{model.phase}  ·  {time.monotonic() - model.started:.0f} s", style="bold")]
    adapter = _adapter_problem(model)
    if adapter is not None:
        lines.append(Text(f"{adapter}; retrying", style="bold red"))
    if model.history is not None:
        h = model.history
        bar = "█" * round(20 * h.fraction) + "·" * (20 - round(20 * h.fraction))
        lines.append(
            Text(
                f"history {bar} {h.days_done}/{h.total_days} athlete-days, "
                f"{h.records} records{' (done)' if h.finished else ''}"
            )
        )
    for name, sink in status.sinks.items():
        sink_status = status.sink_status.get(name, {})
        lines.append(
            Text(
                _sink_line(name, sink_status, sink.live_shed + sink.live_failed),
                style="bold red" if sink_problem(sink_status) else "",
            )
        )
    lines.append(
        Text(
            f"results stored {status.durable}"
            + (f", FAILED {status.durable_errors}" if status.durable_errors else "")
            + (f"  ·  samples in/shed: {', '.join(inboxes)}" if inboxes else "")
        )
    )
    if status.store_line:
        lines.append(Text(f"STORE: {status.store_line}", style="bold red"))
    lines.extend(Text(note, style="dim") for note in model.notes)
    return Group(table, *lines)


def plain_lines(model: ViewModel) -> list[str]:
    """The same state as a few plain lines (non-terminal output)."""
    status = model.pipeline_status()
    elapsed = time.monotonic() - model.started
    out = []
    head = f"[{elapsed:6.1f} s] {model.phase}"
    if model.history is not None and not model.history.finished:
        h = model.history
        head += f" — history {h.days_done}/{h.total_days} athlete-days, {h.records} records"
    out.append(head)
    adapter = _adapter_problem(model)
    if adapter is not None:
        out.append(f"  {adapter}; retrying")
    for athlete, snap in model.snapshots.items():
        devices = " ".join(
            f"{d}:{'up' if dev.status.connected else 'down'}"
            f"{f'/r{dev.status.reconnects}' if dev.status.reconnects else ''}"
            for d, dev in model.devices.get(athlete, ())
        )
        out.append(
            f"  {athlete}: HR {_fmt(snap.hr_bpm)} RR {_fmt(snap.rr_ms)} "
            f"lnRMSSD {_fmt(snap.ln_rmssd, '.2f')} SmO2 {_fmt(snap.smo2_pct, '.1f')} "
            f"power {_fmt(snap.power_w)} SpO2 {_fmt(snap.spo2_pct)} {devices} alerts: "
            f"{','.join(snap.open_alerts) or ('none' if _has_data(model, athlete, snap) else '–')}"
        )
    for name, counters in status.sinks.items():
        out.append(
            "  sink "
            + _sink_line(
                name, status.sink_status.get(name, {}), counters.live_shed + counters.live_failed
            )
        )
    if status.store_line:
        out.append(f"  STORE: {status.store_line}")
    return out


class LiveView:
    """Shows a :class:`ViewModel` until cancelled (rich on a terminal, plain lines otherwise).

    Args:
        model: what to show.
        console: where (default: stdout).
        refresh_s: terminal refresh period.
        plain_every_s: period of the plain lines when not on a terminal.
        force_plain: plain lines even on a terminal.
    """

    def __init__(
        self,
        model: ViewModel,
        *,
        console: Console | None = None,
        refresh_s: float = DEFAULT_REFRESH_S,
        plain_every_s: float = DEFAULT_PLAIN_EVERY_S,
        force_plain: bool = False,
        file: TextIO | None = None,
    ) -> None:
        self.model = model
        self.console = console or Console(file=file)
        self.refresh_s = refresh_s
        self.plain_every_s = plain_every_s
        self.plain = force_plain or not self.console.is_terminal

    def say(self, line: str) -> None:
        """Print a line above the live table (or as a plain line)."""
        if self.plain:
            self.console.file.write(line + "\n")
            self.console.file.flush()
        else:
            self.console.print(line)

    async def run(self) -> None:
        """Refresh until cancelled; prints the final state once more on the way out."""
        if self.plain:
            await self._run_plain()
        else:
            await self._run_live()

    async def _run_plain(self) -> None:
        try:
            while True:
                self._print_plain()
                await asyncio.sleep(self.plain_every_s)
        finally:
            with contextlib.suppress(Exception):
                self._print_plain()

    async def _run_live(self) -> None:
        with Live(
            render(self.model), console=self.console, refresh_per_second=4, transient=False
        ) as live:
            try:
                while True:
                    await asyncio.sleep(self.refresh_s)
                    live.update(render(self.model))
            finally:
                with contextlib.suppress(Exception):
                    live.update(render(self.model))

    def _print_plain(self) -> None:
        self.console.file.write("\n".join(plain_lines(self.model)) + "\n")
        self.console.file.flush()

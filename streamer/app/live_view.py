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


def _devices_text(model: ViewModel, athlete: str) -> Text:
    text = Text()
    for device_id, device in model.devices.get(athlete, ()):
        status = device.status
        style = "green" if status.connected else "red"
        if text:
            text.append("  ")
        text.append(device_id, style=style)
        extra = []
        if status.reconnects:
            extra.append(f"r{status.reconnects}")
        if status.gaps:
            extra.append(f"g{status.gaps}")
        if extra:
            text.append(f"({','.join(extra)})", style="dim")
    return text


def _alerts_text(snapshot: AthleteSnapshot) -> Text:
    if not snapshot.open_alerts:
        return Text("ok", style="green")
    text = Text()
    for rule in snapshot.open_alerts:
        if text:
            text.append(" ")
        text.append(rule, style="yellow" if rule == "grip_signal" else "bold red")
    return text


def _sink_line(name: str, status: Mapping[str, Any], shed: int) -> str:
    parts = [name]
    if "connected" in status:
        parts.append("connected" if status["connected"] else "DISCONNECTED")
    for key, label in (
        ("outbox_depth", "outbox"),
        ("published", "sent"),
        ("live_published", "live"),
        ("points_written", "points"),
    ):
        if key in status:
            parts.append(f"{label} {status[key]}")
    parts.append(f"shed {shed}")
    if status.get("last_error") and not status.get("connected", True):
        parts.append(f"({status['last_error']})")
    return " ".join(str(p) for p in parts)


def render(model: ViewModel) -> RenderableType:
    """The rich renderable of the current state."""
    status = model.pipeline_status()
    table = Table(title=model.title, expand=True, title_justify="left")
    for column, justify in (
        ("athlete", "left"),
        ("phase", "left"),
        ("HR", "right"),
        ("RR ms", "right"),
        ("lnRMSSD", "right"),
        ("SmO2 %", "right"),
        ("power W", "right"),
        ("force kg", "right"),
        ("SpO2 %", "right"),
        ("devices", "left"),
        ("alerts", "left"),
        ("in/shed", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for athlete, snap in model.snapshots.items():
        inbox = status.athletes.get(athlete)
        table.add_row(
            athlete,
            snap.phase,
            _fmt(snap.hr_bpm),
            _fmt(snap.rr_ms),
            _fmt(snap.ln_rmssd, ".2f"),
            _fmt(snap.smo2_pct, ".1f"),
            _fmt(snap.power_w),
            _fmt(snap.force_kg, ".1f"),
            _fmt(snap.spo2_pct),
            _devices_text(model, athlete),
            _alerts_text(snap),
            f"{inbox.received}/{inbox.shed}" if inbox else "–",
        )
    lines = [Text(f"{model.phase}  ·  {time.monotonic() - model.started:.0f} s", style="bold")]
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
        lines.append(
            Text(
                _sink_line(
                    name, status.sink_status.get(name, {}), sink.live_shed + sink.live_failed
                )
            )
        )
    lines.append(
        Text(
            f"results stored {status.durable}"
            + (f", FAILED {status.durable_errors}" if status.durable_errors else "")
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
            f"{','.join(snap.open_alerts) or 'none'}"
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

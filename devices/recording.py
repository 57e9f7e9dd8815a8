"""Record raw notifications to JSON Lines and replay them through the same codecs.

One line per notification, exactly as it arrived::

    {"t_ns": 1732212345000000000, "device": "strap-1", "char": "2a37", "hex": "10480004"}

``t_ns`` is the receipt time (``time.time_ns()``), ``device`` the name the driver gave the
device, ``char`` the characteristic's short name (see :data:`devices.codecs.CODECS`) and
``hex`` the payload bytes. Replaying decodes each payload with ``t_ns`` as receipt time, so
a replay yields the very records the live session produced — and the same bugs, on demand.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Final

from devices import gatt
from devices.codecs import CODECS, CodecError, parse_hex
from devices.errors import DeviceError
from devices.records import DeviceRecord

PathLike = str | os.PathLike[str]


class RecordingError(DeviceError, ValueError):
    """A recording line (or a notification to record) is malformed.

    The message starts with ``<file>:<line>:`` and says what is wrong with that line.
    """


@dataclass(frozen=True, slots=True)
class RecordedNotification:
    """One raw notification from a recording; ``line`` is its 1-based line number."""

    t_ns: int
    device: str
    char: str
    data: bytes
    line: int = 0


def _short_name(char: str) -> str:
    """The short name for ``char`` given as a short name or as a UUID in any spelling."""
    if char in CODECS:
        return char
    known = gatt.characteristic_for_uuid(char)
    if known is None or known.name not in CODECS:
        names = ", ".join(CODECS)
        raise RecordingError(
            f"characteristic {char!r} has no codec; use one of {names} or its UUID"
        )
    return known.name


class NotificationRecorder:
    """Appends raw notifications to a JSON Lines file.

    :meth:`record` is synchronous and cheap (one short write), so it can be called directly
    from a bleak notification callback, sync or async. Lines are flushed every
    ``flush_every`` notifications (default: each one, so a crash loses nothing); closing
    flushes the rest. Use as a context manager. Appends to an existing file.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        flush_every: int = 1,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be at least 1, got {flush_every}")
        self.path = Path(path)
        self._file: IO[str] | None = self.path.open("a", encoding="utf-8")
        self._flush_every = flush_every
        self._clock = clock
        self._unflushed = 0
        self.count = 0
        """Notifications recorded so far."""

    def record(
        self, device: str, char: str, data: bytes | bytearray, *, t_ns: int | None = None
    ) -> None:
        """Append one notification; ``t_ns`` defaults to now (``time.time_ns()``).

        ``char`` is a short name (``"2a37"``) or the characteristic's UUID.
        """
        if self._file is None:
            raise RecordingError(f"{self.path}: the recorder is closed")
        line = {
            "t_ns": self._clock() if t_ns is None else t_ns,
            "device": device,
            "char": _short_name(char),
            "hex": bytes(data).hex(),
        }
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.count += 1
        self._unflushed += 1
        if self._unflushed >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Push buffered lines to the file."""
        if self._file is not None:
            self._file.flush()
            self._unflushed = 0

    def close(self) -> None:
        """Flush and close; further :meth:`record` calls raise."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> NotificationRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


MAX_T_NS: Final = 2**63 - 1
"""The latest receipt time a line may carry (ns since 1970, year 2262): what a signed 64-bit
integer holds, as SQLite, InfluxDB and every clock here do."""


def parse_line(raw: bytes, where: str, line: int) -> RecordedNotification:
    """One recording line (bytes of a JSON object) as a notification; :class:`RecordingError`
    starts with ``<where>:<line>:``. Also the body of a raw message on NATS (team mode)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordingError(
            f"{where}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column "
            f"{exc.start + 1}); a recording is JSON Lines"
        ) from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordingError(
            f"{where}:{line}: not JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, [[[[...]]]] nesting
        raise RecordingError(f"{where}:{line}: not a recording line ({exc})") from None
    if not isinstance(obj, dict):
        raise RecordingError(f"{where}:{line}: expected a JSON object, got {type(obj).__name__}")
    missing = [key for key in ("t_ns", "device", "char", "hex") if key not in obj]
    if missing:
        raise RecordingError(f"{where}:{line}: missing {', '.join(missing)}")
    t_ns, device, char, hex_text = obj["t_ns"], obj["device"], obj["char"], obj["hex"]
    if isinstance(t_ns, bool) or not isinstance(t_ns, int) or not 0 <= t_ns <= MAX_T_NS:
        raise RecordingError(
            f"{where}:{line}: t_ns {t_ns!r} is not a receipt time — give whole nanoseconds "
            "since 1970 (time.time_ns()), from 0 to 2^63-1"
        )
    if not isinstance(device, str) or not device:
        raise RecordingError(f"{where}:{line}: device {device!r} is not a non-empty string")
    if not isinstance(char, str):
        raise RecordingError(f"{where}:{line}: char {char!r} is not a string")
    if not isinstance(hex_text, str):
        raise RecordingError(f"{where}:{line}: hex {hex_text!r} is not a string")
    try:
        name = _short_name(char)
        data = parse_hex(hex_text)
    except (RecordingError, CodecError) as exc:
        raise RecordingError(f"{where}:{line}: {exc}") from None
    return RecordedNotification(t_ns=t_ns, device=device, char=name, data=data, line=line)


def read_recording(path: PathLike) -> Iterator[RecordedNotification]:
    """The notifications in a recording, in file order; blank lines are skipped.

    Raises :class:`RecordingError` naming the file and line of the first malformed line.
    """
    yield from _read_lines(path, None)


def _read_lines(
    path: PathLike, on_skip: Callable[[RecordingError], None] | None
) -> Iterator[RecordedNotification]:
    """The notifications of ``path``; a malformed line raises, or with ``on_skip`` is
    handed to it and skipped. Read as bytes: one line that is not UTF-8 is one bad line."""
    where = os.fspath(path)
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                notification = parse_line(raw, where, number)
            except RecordingError as exc:
                if on_skip is None:
                    raise
                on_skip(exc)
                continue
            yield notification


def decode_notification(
    notification: RecordedNotification, *, where: str = "recording"
) -> DeviceRecord:
    """Decode one recorded notification with its characteristic's codec at its ``t_ns``.

    A malformed payload raises :class:`RecordingError` naming the line and the codec's reason.
    """
    try:
        return CODECS[notification.char].decode(notification.data, t_ns=notification.t_ns)
    except CodecError as exc:
        raise RecordingError(f"{where}:{notification.line}: {exc}") from None


def iter_records(
    path: PathLike,
    *,
    skip_malformed: bool = False,
    on_skip: Callable[[RecordingError], None] | None = None,
) -> Iterator[tuple[str, DeviceRecord]]:
    """``(device, record)`` for every notification of a recording, without pacing.

    With ``skip_malformed`` malformed lines (not JSON, not UTF-8, missing or wrong fields)
    and payloads the codec rejects are skipped, each handed to ``on_skip`` if given;
    otherwise the first raises :class:`RecordingError`.
    """
    where = os.fspath(path)

    def skipped(exc: RecordingError) -> None:
        if on_skip is not None:
            on_skip(exc)

    for notification in _read_lines(path, skipped if skip_malformed else None):
        try:
            record = decode_notification(notification, where=where)
        except RecordingError as exc:
            if not skip_malformed:
                raise
            skipped(exc)
            continue
        yield notification.device, record


async def replay(
    path: PathLike,
    *,
    speed: float = 1.0,
    skip_malformed: bool = False,
    on_skip: Callable[[RecordingError], None] | None = None,
) -> AsyncIterator[tuple[str, DeviceRecord]]:
    """Replay a recording as ``(device, record)`` pairs, paced like the original session.

    ``speed`` 1 is real time, 10 ten times faster, 0 as fast as possible. Records keep
    their recorded ``t_ns``. Pacing follows the recorded receipt times from the first
    notification, against the event loop's clock, so delays do not accumulate; a time
    that goes backwards is replayed at once.
    """
    if not speed >= 0 or speed == float("inf"):
        raise ValueError(
            f"speed must be a finite number >= 0 (0 = as fast as possible), got {speed}"
        )
    loop = asyncio.get_running_loop()
    first_t_ns: int | None = None
    start = 0.0
    for device, record in iter_records(path, skip_malformed=skip_malformed, on_skip=on_skip):
        if speed > 0:
            if first_t_ns is None:
                first_t_ns, start = record.t_ns, loop.time()
            due = start + (record.t_ns - first_t_ns) / 1e9 / speed
            delay = due - loop.time()
            await asyncio.sleep(delay if delay > 0 else 0)
        else:
            await asyncio.sleep(0)  # let other tasks run between records
        yield device, record

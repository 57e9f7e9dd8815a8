"""FIT activity files → :class:`FitActivity`: the samples a live session would have had.

Decoded with Garmin's own FIT SDK (PyPI ``garmin-fit-sdk``): it is the maintained reference
decoder (released with each profile update), decodes developer fields by their
descriptions, checks the file's CRC, and also encodes, which the tests use to write files.
``fitdecode`` is faster per message but was last released in 2025 and cannot write;
``bench/import.py`` times both on the same files.

What is taken:

* ``hrv`` messages: the RR intervals (s, five per message, invalid ones absent), as
  recorded by Garmin watches with a chest strap and by "HRV status"/stress-test activities.
  They carry no clock: the beats are laid from the activity's start, summing intervals.
* ``record`` messages: ``heart_rate`` (bpm), ``power`` (W); SmO2 and THb from developer
  fields (Moxy's Connect IQ fields: a field named like ``SmO2`` in %, ``THb`` in g/dL).
* ``session`` messages: start time, elapsed time and sport.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import re
from pathlib import Path
from typing import Any, Final

from devices.records import HeartRateSample, PowerSample, SmO2Sample
from streamer.importing.model import ActivitySample, FitActivity, ImportFileError

_SMO2_FIELD: Final = re.compile(r"smo2|muscle.?o(xygen|2)|saturat", re.IGNORECASE)
_THB_FIELD: Final = re.compile(r"thb|ha?emoglobin", re.IGNORECASE)


def _ns(value: object) -> int | None:
    if isinstance(value, dt.datetime):
        return round(value.timestamp() * 1e9)
    return None


def _decode(path: Path) -> dict[str, list[dict[Any, Any]]]:
    from garmin_fit_sdk import Decoder, Stream  # only `import fit` pays for it

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    decoder = Decoder(Stream.from_byte_array(bytearray(data)))
    if not decoder.is_fit():
        raise ImportFileError(f"{path}: not a FIT file (no FIT header); expected a .fit activity")
    messages, errors = decoder.read()
    decoded: dict[str, list[dict[Any, Any]]] = {
        str(k): v for k, v in messages.items() if isinstance(v, list)
    }
    if errors:
        raise ImportFileError(
            f"{path}: the FIT file is damaged ({errors[0]}); nothing of it was imported — "
            "export the activity again"
        )
    return decoded


def read_fit_activity(path: Path) -> FitActivity:
    """The activity of the FIT file ``path``.

    Raises :class:`ImportFileError` naming the file when it is not a FIT file, is damaged
    (CRC, truncated) or holds no activity (no session, record or hrv message).
    """
    messages = _decode(path)
    records = messages.get("record_mesgs", [])
    sessions = messages.get("session_mesgs", [])
    rr_ms = tuple(
        1000.0 * float(t)
        for mesg in messages.get("hrv_mesgs", [])
        for t in (mesg.get("time") or [])
        if t is not None and math.isfinite(t) and t > 0
    )
    times = [t for t in (_ns(r.get("timestamp")) for r in records) if t is not None]
    session = sessions[0] if sessions else {}
    start = _ns(session.get("start_time")) or (min(times) if times else None)
    if start is None:
        file_ids = messages.get("file_id_mesgs", [])
        start = _ns(file_ids[0].get("time_created")) if file_ids else None
    if start is None or not (records or rr_ms):
        raise ImportFileError(
            f"{path}: no activity in this FIT file (no session start, record or hrv "
            "message); export an activity, not settings or a workout plan"
        )
    samples: list[ActivitySample] = []
    hr_times, hr_values = _heart_rates(records)
    samples.extend(_beats(start, rr_ms, hr_times, hr_values))
    smo2_key, thb_key = _developer_keys(messages)
    for record in records:
        t = _ns(record.get("timestamp"))
        if t is None:
            continue
        if not rr_ms and isinstance(record.get("heart_rate"), int):
            samples.append(HeartRateSample(t, int(record["heart_rate"])))
        power = record.get("power")
        if isinstance(power, int | float) and math.isfinite(power):
            samples.append(PowerSample(t, round(power)))
        dev = record.get("developer_fields") or {}
        smo2 = dev.get(smo2_key) if smo2_key is not None else None
        if isinstance(smo2, int | float) and 0 <= smo2 <= 100:
            thb = dev.get(thb_key) if thb_key is not None else None
            thb_gdl = float(thb) if isinstance(thb, int | float) else math.nan
            samples.append(SmO2Sample(t, float(smo2), thb_gdl))
    samples.sort(key=lambda s: s.t_ns)
    elapsed = session.get("total_elapsed_time")
    end = start + round(float(elapsed) * 1e9) if isinstance(elapsed, int | float) else start
    end = max([end, *(s.t_ns for s in samples[-1:])])
    sport = session.get("sport")
    return FitActivity(
        source=path,
        start_ns=start,
        end_ns=end,
        samples=tuple(samples),
        rr_ms=rr_ms,
        sport=sport if isinstance(sport, str) else None,
    )


def _heart_rates(records: list[dict[Any, Any]]) -> tuple[list[int], list[int]]:
    times: list[int] = []
    values: list[int] = []
    for record in records:
        t, hr = _ns(record.get("timestamp")), record.get("heart_rate")
        if t is not None and isinstance(hr, int) and hr > 0:
            times.append(t)
            values.append(hr)
    return times, values


def _beats(
    start_ns: int, rr_ms: tuple[float, ...], hr_times: list[int], hr_values: list[int]
) -> list[HeartRateSample]:
    """One heart-rate sample per beat, as a strap notifies, carrying its interval; its rate
    is the watch's recorded rate at that time (the interval's own rate when none)."""
    out: list[HeartRateSample] = []
    t = float(start_ns)
    for rr in rr_ms:
        t += rr * 1e6
        i = bisect.bisect_right(hr_times, int(t)) - 1
        hr = hr_values[i] if i >= 0 else round(60_000.0 / rr)
        out.append(HeartRateSample(round(t), max(1, min(hr, 255)), (rr,)))
    return out


def _developer_keys(messages: dict[str, list[dict[Any, Any]]]) -> tuple[Any, Any]:
    """The developer-field keys of SmO2 and THb in record messages, by their names."""
    smo2 = thb = None
    for desc in messages.get("field_description_mesgs", []):
        name = str(desc.get("field_name") or "")
        key = desc.get("key")  # the SDK keys developer values by their description
        if smo2 is None and _SMO2_FIELD.search(name):
            smo2 = key
        elif thb is None and _THB_FIELD.search(name):
            thb = key
    return smo2, thb

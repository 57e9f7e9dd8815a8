"""FIT activity files written with Garmin's own encoder (garmin-fit-sdk), for import tests.

Real FIT files with RR long enough for a morning reading, or with Moxy's developer fields,
are not in any package's test data; these are written by the maintained encoder instead.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from garmin_fit_sdk import Encoder, Profile

MESG = Profile["mesg_num"]


def write_activity(
    path: Path,
    start: dt.datetime,
    *,
    rr_s: Sequence[float] = (),
    records: Sequence[dict[str, object]] = (),
    smo2: Sequence[tuple[float, float]] = (),
    elapsed_s: float | None = None,
    sport: str = "cycling",
) -> Path:
    """Write a FIT activity starting at ``start`` (aware datetime).

    Args:
        rr_s: RR intervals (s), five per ``hrv`` message as Garmin writes them.
        records: ``record`` messages: ``{"t_s": offset, "heart_rate": bpm, "power": W}``.
        smo2: (SmO2 %, THb g/dL) per record, as Moxy's Connect IQ developer fields.
        elapsed_s: the session's elapsed time (default: the last record's or RR's end).
    """
    enc = Encoder()
    enc.write_mesg(
        {
            "mesg_num": MESG["FILE_ID"],
            "type": "activity",
            "manufacturer": "development",
            "product": 0,
            "serial_number": 1,
            "time_created": start,
        }
    )
    if smo2:
        dev_id = {
            "mesg_num": MESG["DEVELOPER_DATA_ID"],
            "developer_data_index": 0,
            "application_id": [0] * 16,
        }
        fields = [
            (0, "SmO2", "%"),
            (1, "THb", "g/dl"),
        ]
        enc.write_mesg(dev_id)
        for key, name, units in fields:
            desc = {
                "mesg_num": MESG["FIELD_DESCRIPTION"],
                "developer_data_index": 0,
                "field_definition_number": key,
                "fit_base_type_id": 136,  # float32
                "field_name": name,
                "units": units,
                "native_mesg_num": MESG["RECORD"],
            }
            enc.write_mesg(desc)
            enc.add_developer_field(key, dev_id, desc)
    last_s = 0.0
    for i, record in enumerate(records):
        t_s = float(record["t_s"])  # type: ignore[arg-type]
        last_s = max(last_s, t_s)
        mesg: dict[str, object] = {
            "mesg_num": MESG["RECORD"],
            "timestamp": start + dt.timedelta(seconds=t_s),
            **{k: v for k, v in record.items() if k != "t_s"},
        }
        if smo2:
            mesg["developer_fields"] = {0: smo2[i][0], 1: smo2[i][1]}
        enc.write_mesg(mesg)
    for i in range(0, len(rr_s), 5):
        chunk = list(rr_s[i : i + 5])
        enc.write_mesg({"mesg_num": MESG["HRV"], "time": chunk})
    elapsed = elapsed_s if elapsed_s is not None else max(last_s, sum(rr_s))
    enc.write_mesg(
        {
            "mesg_num": MESG["SESSION"],
            "timestamp": start + dt.timedelta(seconds=elapsed),
            "start_time": start,
            "total_elapsed_time": elapsed,
            "total_timer_time": elapsed,
            "sport": sport,
        }
    )
    path.write_bytes(enc.close())
    return path

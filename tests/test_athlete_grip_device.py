"""A grip result names the device whose force samples were measured, not a guess among
the other devices the athlete has been seen with."""

from __future__ import annotations

from devices.records import PowerSample
from streamer.athlete import AthleteState
from streamer.demo.history import GRIP, day_records, history_dates, scenarios


def _grip_devices(first: tuple[str, object] | None) -> list[str | None]:
    scenario = scenarios(1, 1)[0]
    (plan,) = scenario.days
    (day,) = history_dates(1)
    state = AthleteState(scenario.athlete, live=False, hrv_every_s=60.0)
    records = list(day_records(scenario, plan, day))
    out = []
    if first is not None:
        out.extend(state.process(*first))
    for device, record in records:
        out.extend(state.process(device, record))
    return [r.device for r in out if r.kind.value == "grip"]


def test_grip_result_names_the_dynamometer_it_was_measured_on() -> None:
    assert _grip_devices(None) == [GRIP]


def test_grip_result_ignores_a_power_meter_seen_before_the_dynamometer() -> None:
    assert _grip_devices(("bike", PowerSample(1, 150))) == [GRIP]

"""Force → sample times on one clock: the dynamometer's µs clock anchored to receipt time."""

from __future__ import annotations

from devices.records import ForceSample


class ForceClock:
    """Per grip device, its µs clock anchored to the receipt clock.

    A Progressor packs several samples, stamped with one receipt time, into a
    notification; its own clock (``t_us``) orders them. The anchor is reset when that
    clock starts again (a new measurement) or wraps.
    """

    def __init__(self) -> None:
        self._anchor: dict[str, tuple[int, int]] = {}  # device -> (anchor ns, last µs)

    def time_ns(self, device: str, sample: ForceSample) -> int:
        """``sample``'s time (ns since the epoch)."""
        if sample.t_us is None:
            return sample.t_ns
        anchor = self._anchor.get(device)
        if anchor is None or sample.t_us < anchor[1]:
            anchor = (sample.t_ns - sample.t_us * 1000, sample.t_us)
        self._anchor[device] = (anchor[0], sample.t_us)
        return anchor[0] + sample.t_us * 1000

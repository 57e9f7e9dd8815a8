"""The numeric side of redox-streamer: pure, typed functions and trackers over numpy.

No I/O and no asyncio here. Inputs are numbers and arrays; outputs are frozen records.
This package never imports :mod:`devices` or :mod:`streamer`.
"""

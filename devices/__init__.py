"""The Bluetooth side of redox-streamer: GATT codecs, bleak drivers, emulated peripherals.

This package knows bytes and GATT. It never imports :mod:`processors` or :mod:`streamer`;
what it produces are the frozen records in :mod:`devices.records`.
"""

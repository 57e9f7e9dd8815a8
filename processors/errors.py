"""The base of the errors :mod:`processors` raises on purpose.

Such an error means the numbers handed in cannot give a measurement (too few, out of
range, inconsistent); its message names the input and the fault. The command line turns
any :class:`InputError` into one line and an exit status (:mod:`streamer.errors`).
"""

from __future__ import annotations


class InputError(Exception):
    """An input — a series of numbers, or a file holding one — cannot be analysed.

    Subclasses also derive from ``ValueError``, which they were before this base
    existed, so callers catching ``ValueError`` still catch them.
    """

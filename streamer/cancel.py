"""Stops that a library swallowed, kept.

On Python 3.11 ``asyncio.wait_for`` returns the awaited result instead of raising
``CancelledError`` when a cancellation arrives just as that result does (fixed in 3.12,
which Debian bookworm and Raspberry Pi OS do not ship). aiomqtt waits for CONNACK, PUBACK
and SUBACK that way and nats-py for every request's reply (a JetStream publish's ack, a
key-value read), so a task stopped at that moment runs on as if never asked: a listener
that listens until the next stop, a loop that never ends, a shutdown that hangs. A task's
``cancelling()`` count still records the request, which is what both guards here read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def cancellation_kept() -> Iterator[None]:
    """Re-raise a cancellation that an aiomqtt call inside the block swallowed.

    aiomqtt waits for CONNACK, PUBACK and SUBACK with ``asyncio.wait_for``, which on Python
    3.11 returns the result instead of raising ``CancelledError`` when the cancellation
    arrives just as the awaited answer does; the task then runs on as if never cancelled
    (a publisher that never stops, a shutdown that hangs). A task's ``cancelling()``
    count still records the request, so a block that ends normally while that count
    rose was cancelled: raise it. (On Python ≥ 3.12 ``wait_for`` raises by itself and
    this never fires.) Use it around each aiomqtt call a task awaits directly; calls in
    child tasks gathered with ``asyncio.gather`` need none, because the gathering future
    re-raises the cancellation it was asked for. A block that fails with a broker or
    network error after swallowing one (at the disconnect that followed) ends cancelled
    too: a loop that reconnects on such errors must not take a stop for one. Any other
    exception (a bug) goes on as it is.
    """
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if task is not None and task.cancelling() > before and _from_a_broker(exc):
            raise asyncio.CancelledError from exc
        raise
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


def _from_a_broker(exc: Exception) -> bool:
    """Whether ``exc`` is a broker's or the network's (MQTT, NATS, a socket, a timeout)."""
    import aiomqtt

    if isinstance(exc, aiomqtt.MqttError | OSError | TimeoutError):
        return True
    try:
        from nats.errors import Error as NatsError
    except ImportError:  # the team extra is not installed: no NATS calls to guard
        return False
    return isinstance(exc, NatsError)


def raise_if_cancelled() -> None:
    """At each turn of a loop that runs until its task is cancelled: raise the
    cancellation a call in the last turn swallowed (see the module).

    Only in such loops, never in clean-up code that runs while a cancellation is being
    handled (the count is raised there, legitimately).
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError

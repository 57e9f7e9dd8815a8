"""The Bumble host every emulated controller (the central's and each peripheral's) runs.

Bumble 0.0.236's host keeps one pending HCI command and sets its reply's future from the
controller's callback. When the task that sent the command is cancelled (a SIGTERM while a
scan starts or stops), the future is cancelled at once, but the host clears it only when
that task runs its ``finally`` — and the virtual controller's reply may already be queued
before it. The reply then met a cancelled future: ``InvalidStateError`` went to the event
loop's handler and was printed under the CLI's one-line stop message (CI, stop 23); a reply
arriving after the ``finally`` was logged as a warning, printed there too.
"""

from __future__ import annotations

from typing import Any

from bumble import hci
from bumble.host import Host


class EmulatedHost(Host):
    """A Bumble host that drops the reply to a command whose sender was cancelled."""

    def on_command_processed(
        self, event: hci.HCI_Command_Complete_Event[Any] | hci.HCI_Command_Status_Event
    ) -> None:
        """Hand a command's reply to its sender, or drop it when nobody waits any more."""
        pending = self.pending_response
        if pending is not None and not pending.done():
            super().on_command_processed(event)
            return
        # Nobody waits: the cancelled sender's ``finally`` frees the command slot if it has
        # not run yet; if it has, the slot is freed here, as Bumble does.
        if pending is None and event.num_hci_command_packets and self.command_semaphore.locked():
            self.command_semaphore.release()

"""Where a notification goes: the desktop, a command, or an HTTP webhook (ntfy-style).

Each channel has a ``name`` and ``async send(notice)``; a failed delivery raises
:class:`DeliveryError` (naming the channel and the cause) so that the notifier leaves the
alert undelivered on that channel and tries again the next time it sees it.

Webhook format (ntfy's publish API, also fine for most chat/automation webhooks): an HTTP
``POST`` of a plain-text UTF-8 body — the alert message, a blank line, the advice — with
headers

``Title``     ``<athlete>: <rule> raised`` (or ``cleared``)
``Priority``  ntfy priority 1–5: 4 (high) for a raised ``pull_back``, 3 for ``warning``,
              2 for ``info`` and for any cleared alert
``Tags``      comma-separated: an emoji short code (``rotating_light``, ``warning``,
              ``information_source``, ``white_check_mark``), the rule id, the athlete
``X-Redox-Rule``, ``X-Redox-State``, ``X-Redox-Athlete``, ``X-Redox-Raised-Ts-Ns``
              the same facts for machines

Header values outside Latin-1 (an athlete's name in Cyrillic) are sent RFC 2047-encoded,
which ntfy decodes. A 2xx status is success; anything else is a failed delivery.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from streamer.notify.model import AlertNotice
from streamer.notify.model import Channel as Channel
from streamer.notify.model import DeliveryError as DeliveryError

COMMAND_TIMEOUT_S: Final = 30.0
"""A ``--exec`` command still running after this is killed and counted as failed."""
WEBHOOK_TIMEOUT_S: Final = 10.0
"""HTTP timeout of one webhook POST (connect + response)."""

_PRIORITY: Final = {"pull_back": 4, "warning": 3, "info": 2}
_EMOJI: Final = {"pull_back": "rotating_light", "warning": "warning", "info": "information_source"}


def priority(notice: AlertNotice) -> int:
    """ntfy priority 1–5 of ``notice`` (see the module docstring)."""
    if notice.state != "raised":
        return 2
    return _PRIORITY.get(notice.severity, 3)


def tags(notice: AlertNotice) -> list[str]:
    """ntfy tags: an emoji short code, the rule id and the athlete."""
    emoji = (
        "white_check_mark" if notice.state != "raised" else _EMOJI.get(notice.severity, "warning")
    )
    return [emoji, notice.rule, notice.athlete]


def _header_value(text: str) -> str:
    """``text`` as an HTTP header value: Latin-1 as is, else RFC 2047 base64 UTF-8."""
    clean = " ".join(text.split())  # no CR/LF can reach a header
    try:
        clean.encode("latin-1")
    except UnicodeEncodeError:
        return "=?UTF-8?B?" + base64.b64encode(clean.encode()).decode("ascii") + "?="
    return clean


def notice_env(notice: AlertNotice) -> dict[str, str]:
    """Environment variables describing ``notice`` for a ``--exec`` command."""
    return {
        "REDOX_ATHLETE": notice.athlete,
        "REDOX_RULE": notice.rule,
        "REDOX_SEVERITY": notice.severity,
        "REDOX_STATE": notice.state,
        "REDOX_TITLE": notice.title,
        "REDOX_MESSAGE": notice.message,
        "REDOX_ADVICE": notice.advice,
        "REDOX_SOURCE": notice.source,
        "REDOX_RAISED_TS_NS": "" if notice.raised_ts_ns is None else str(notice.raised_ts_ns),
        "REDOX_CLEARED_TS_NS": "" if notice.cleared_ts_ns is None else str(notice.cleared_ts_ns),
        "REDOX_VOLUME_CUT_UNTIL": notice.volume_cut_until,
        "REDOX_CLEAR_REASON": notice.clear_reason,
        "REDOX_TOPIC": notice.topic,
    }


@dataclass
class DesktopChannel:
    """A desktop notification through ``notify-send`` (libnotify), else a line on stdout.

    Without ``notify-send`` (a headless Pi, a server) the alert is printed to standard
    output with a one-time hint, so it still lands in the journal or the terminal.
    """

    name: str = "desktop"
    notify_send: str | None = None

    def __post_init__(self) -> None:
        if self.notify_send is None:
            self.notify_send = shutil.which("notify-send")
        self._hinted = False

    async def send(self, notice: AlertNotice) -> None:
        if self.notify_send is None:
            if not self._hinted:
                print(
                    "notify: notify-send not found (install 'libnotify-bin' for desktop "
                    "pop-ups); printing alerts here instead",
                    file=sys.stderr,
                    flush=True,
                )
                self._hinted = True
            print(
                f"[{notice.severity.upper()}] {notice.title}\n  {notice.message}\n"
                f"  Advice: {notice.advice}",
                flush=True,
            )
            return
        urgency = "critical" if priority(notice) >= 4 else "normal"
        proc = await asyncio.create_subprocess_exec(
            self.notify_send,
            "--app-name=redox-streamer",
            f"--urgency={urgency}",
            notice.title,
            f"{notice.message}\n{notice.advice}",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise DeliveryError(
                f"notify-send exited {proc.returncode}: {err.decode(errors='replace').strip()}"
            )


@dataclass
class CommandChannel:
    """Run a shell command per notification: the alert JSON on stdin, facts in ``REDOX_*``.

    The command runs with ``/bin/sh -c`` (it is the operator's own command line); a
    non-zero exit status or a run longer than :data:`COMMAND_TIMEOUT_S` is a failed
    delivery.
    """

    command: str
    name: str = "exec"
    timeout_s: float = COMMAND_TIMEOUT_S

    async def send(self, notice: AlertNotice) -> None:
        proc = await asyncio.create_subprocess_shell(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **notice_env(notice)},
        )
        data = json.dumps(notice.as_json(), ensure_ascii=False).encode() + b"\n"
        try:
            async with asyncio.timeout(self.timeout_s):
                _, err = await proc.communicate(data)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise DeliveryError(
                f"command {self.command!r} still running after {self.timeout_s:g} s: killed"
            ) from None
        if proc.returncode != 0:
            raise DeliveryError(
                f"command {self.command!r} exited {proc.returncode}: "
                f"{err.decode(errors='replace').strip()[:200]}"
            )


@dataclass
class WebhookChannel:
    """POST each notification to ``url`` in ntfy's format (see the module docstring)."""

    url: str
    extra_headers: Mapping[str, str] | None = None
    name: str = "webhook"
    timeout_s: float = WEBHOOK_TIMEOUT_S

    def request(self, notice: AlertNotice) -> urllib.request.Request:
        """The HTTP request that delivers ``notice``."""
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "Title": _header_value(notice.title),
            "Priority": str(priority(notice)),
            "Tags": _header_value(",".join(tags(notice))),
            "X-Redox-Rule": _header_value(notice.rule),
            "X-Redox-State": notice.state,
            "X-Redox-Athlete": _header_value(notice.athlete),
            "X-Redox-Raised-Ts-Ns": str(notice.raised_ts_ns or ""),
            **(self.extra_headers or {}),
        }
        return urllib.request.Request(
            self.url, data=notice.body.encode(), headers=headers, method="POST"
        )

    def _post(self, request: urllib.request.Request) -> None:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as resp:
                status = int(resp.status)
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"webhook {self.url} answered HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"webhook {self.url} unreachable: {exc}") from exc
        if not 200 <= status < 300:
            raise DeliveryError(f"webhook {self.url} answered HTTP {status}")

    async def send(self, notice: AlertNotice) -> None:
        # urllib blocks: a slow webhook must not stop the MQTT loop from acknowledging.
        await asyncio.to_thread(self._post, self.request(notice))


def parse_headers(items: Sequence[str]) -> dict[str, str]:
    """``["Name: value", ...]`` as a dict; ``ValueError`` naming an item without a colon."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"header {item!r} is not 'Name: value'")
        out[name.strip()] = value.strip()
    return out

"""Network namespaces for the team simulation: each gateway on its own "Pi".

A bridge in the root namespace with the servers' address, and per gateway a namespace
joined to it by a veth pair; cutting a gateway's link is ``ip link set <veth> down`` on
the root side. Needs root (``CAP_NET_ADMIN``); :meth:`Namespaces.create` raises
:class:`NamespacesUnavailable` naming why when they cannot be made, and the simulation
then stays on loopback and says so. Every address is inside this machine: the bridge's
subnet exists only between the namespaces made here and is removed at :meth:`close`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field


class NamespacesUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``, a sandbox)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise NamespacesUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class Namespaces:
    """The bridge, one namespace and veth pair per gateway; the servers' address."""

    tag: str
    subnet: str
    gateways: dict[str, tuple[str, str]] = field(default_factory=dict)
    """gateway id → (namespace, root-side veth)."""
    made: list[str] = field(default_factory=list)

    @property
    def bridge(self) -> str:
        return f"rsbr{self.tag}"

    @property
    def host(self) -> str:
        """The servers' address on the bridge (the root namespace's)."""
        return f"{self.subnet}.1"

    @classmethod
    def create(cls, gateway_ids: Sequence[str]) -> Namespaces:
        """The bridge and a namespace per gateway; :class:`NamespacesUnavailable` if not."""
        if shutil.which("ip") is None:
            raise NamespacesUnavailable("no `ip` command (apt-get install iproute2)")
        if os.geteuid() != 0:
            raise NamespacesUnavailable("not root: `ip netns add` needs CAP_NET_ADMIN")
        tag = str(os.getpid() % 10000)
        net = cls(tag, f"10.213.{os.getpid() % 250}")
        try:
            _ip("link", "add", net.bridge, "type", "bridge")
            net.made.append(f"link:{net.bridge}")
            _ip("addr", "add", f"{net.host}/24", "dev", net.bridge)
            _ip("link", "set", net.bridge, "up")
            for n, gid in enumerate(gateway_ids):
                ns, outer, inner = f"rs{tag}{gid}", f"rv{tag}{gid}", f"ri{tag}{gid}"
                _ip("netns", "add", ns)
                net.made.append(f"netns:{ns}")
                _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
                net.made.append(f"link:{outer}")
                _ip("link", "set", inner, "netns", ns)
                _ip("link", "set", outer, "master", net.bridge)
                _ip("link", "set", outer, "up")
                _ip("-n", ns, "addr", "add", f"{net.subnet}.{n + 10}/24", "dev", inner)
                _ip("-n", ns, "link", "set", inner, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
                net.gateways[gid] = (ns, outer)
        except NamespacesUnavailable:
            net.close()
            raise
        return net

    def url(self, port: int) -> str:
        return f"nats://{self.host}:{port}"

    def prefix(self, gateway_id: str) -> list[str]:
        """The command prefix that runs a process in ``gateway_id``'s namespace."""
        return ["ip", "netns", "exec", self.gateways[gateway_id][0]]

    def link(self, gateway_id: str, *, up: bool) -> None:
        """Cut (or restore) ``gateway_id``'s link to the bridge."""
        _ip("link", "set", self.gateways[gateway_id][1], "up" if up else "down")

    def describe(self) -> str:
        return (
            f"network namespaces: {len(self.gateways)} gateways, each in its own namespace "
            f"with a veth pair to bridge {self.bridge} ({self.subnet}.0/24; servers at "
            f"{self.host})"
        )

    def close(self) -> None:
        """Remove what was made (veths go with their namespace or by name)."""
        for item in reversed(self.made):
            kind, name = item.split(":", 1)
            args = ["netns", "del", name] if kind == "netns" else ["link", "del", name]
            subprocess.run(["ip", *args], capture_output=True, timeout=30)
        self.made.clear()

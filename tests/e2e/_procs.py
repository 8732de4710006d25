"""Helpers of the multi-process e2e tests (not a test module): real earthkeep processes and network namespaces.

:class:`Process` is an earthkeep command in its own session (SIGKILL of the group takes its
children too), optionally run inside a network namespace with ``ip netns exec``.

:class:`Hosts` gives each role process "its own host": where ``ip netns add`` works (root with
iproute2 and socat), every slot is a network namespace joined to the host by a veth pair on a
private /30 that the test creates (host side ``10.B.k.1``, namespace side ``10.B.k.2``). The
namespaces have no default route, only a /32 route to the hub address ``10.B.0.1`` on the host, where
socat forwards each server port (PostgreSQL, S3, NATS, Redis) to its 127.0.0.1 listener; so no packet
can leave the host. Elsewhere every slot is plain 127.0.0.1 and nothing is forwarded. ``Hosts.mode``
says which ran ("netns" or "plain").
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from earthkeep.testbed.servers import free_port

EARTHKEEP = [sys.executable, "-m", "earthkeep.cli.main"]


class Process:
    """A real earthkeep process in its own session, inside ``netns`` when given."""

    def __init__(self, args: Sequence[str], env: dict[str, str], log: Path, netns: str | None = None) -> None:
        self.args, self.env, self.log, self.netns = list(args), env, log, netns
        self.logf = log.open("ab")
        prefix = ["ip", "netns", "exec", netns] if netns else []
        self.proc = subprocess.Popen([*prefix, *EARTHKEEP, *self.args], env=env, stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.logf.close()

    def restart(self) -> Process:
        """The same command again (after :meth:`kill9`), appending to the same log."""
        return Process(self.args, self.env, self.log, self.netns)

    def stop(self) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill9()
            return -9
        finally:
            self.logf.close()


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def netns_available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    missing = [b for b in ("ip", "socat") if shutil.which(b) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    probe = f"ekprobe{os.getpid() % 100000}"
    try:
        _run("ip", "netns", "add", probe)
    except (subprocess.SubprocessError, OSError) as exc:
        return f"ip netns add failed: {exc}"
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        _run("ip", "netns", "del", probe)
    return None


def _free_block() -> int:
    """A second octet B such that no address on this host is in 10.B.0.0/16."""
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    used = {ipaddress.ip_interface(w).network for line in out.splitlines() for w in line.split() if "/" in w}
    for b in [*range(200 + os.getpid() % 50, 250), *range(200, 250)]:
        block = ipaddress.ip_network(f"10.{b}.0.0/16")
        if not any(n.overlaps(block) for n in used):
            return b
    raise RuntimeError("no free 10.x.0.0/16 block for the test's namespaces")


@dataclass
class Hosts:
    """Slots a process can run on: namespaces with their own address, or 127.0.0.1 (see the module doc)."""

    mode: str
    hub: str = "127.0.0.1"
    why_plain: str = ""
    tag: str = ""
    block: int = 0
    slots: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # name -> (netns, address)
    _forwards: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _namespaces: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, want_netns: bool = True) -> Hosts:
        why = netns_available() if want_netns else "EARTHKEEP_CLUSTER_NETNS=0"
        if why is not None:
            return cls("plain", why_plain=why)
        hosts = cls("netns", tag=f"{os.getpid() % 100000:05d}", block=_free_block())
        try:
            hosts._pair(0, "hub")  # the hub address 10.B.0.1 lives on this pair's host side
            hosts.hub = f"10.{hosts.block}.0.1"
        except Exception:
            hosts.close()
            raise
        return hosts

    def _pair(self, k: int, name: str) -> tuple[str, str]:
        """Namespace ``k`` joined to the host by a veth pair on 10.B.k.0/30; (namespace, its address)."""
        ns, host_if, ns_if = f"ek{self.tag}-{name}", f"ekh{self.tag}{k:02d}", f"ekn{self.tag}{k:02d}"
        host_ip, ns_ip = f"10.{self.block}.{k}.1", f"10.{self.block}.{k}.2"
        _run("ip", "netns", "add", ns)
        self._namespaces.append(ns)
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", ns)
        _run("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "-n", ns, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        _run("ip", "-n", ns, "link", "set", ns_if, "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        if k:  # only the hub is reachable beyond the /30: no default route, nothing leaves the host
            _run("ip", "-n", ns, "route", "add", f"10.{self.block}.0.1/32", "via", host_ip)
        return ns, ns_ip

    def slot(self, name: str) -> tuple[str | None, str]:
        """(netns or None, address) of a new slot called ``name``."""
        if self.mode == "plain":
            self.slots[name] = (None, "127.0.0.1")
        else:
            self.slots[name] = self._pair(len(self.slots) + 1, name)
        return self.slots[name]

    def forward(self, port: int, listen: str | None = None, target: str = "127.0.0.1", to_port: int | None = None
                ) -> tuple[str, int]:
        """Make ``target:to_port`` reachable on ``listen`` (the hub by default); (address, port) to use."""
        if self.mode == "plain" and listen is None and target == "127.0.0.1":
            return "127.0.0.1", port
        listen = listen or self.hub
        lport = port if listen == self.hub else free_port()
        proc = subprocess.Popen(["socat", f"TCP-LISTEN:{lport},bind={listen},fork,reuseaddr",
                                 f"TCP:{target}:{to_port or port}"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        self._forwards.append(proc)
        _wait_listening(listen, lport, proc)
        return listen, lport

    def close(self) -> None:
        for proc in self._forwards:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.SubprocessError):
                proc.wait(5)
        self._forwards.clear()
        for ns in reversed(self._namespaces):
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:  # only processes this test started can be in its namespaces
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)
        self._namespaces.clear()


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while True:
        out = subprocess.run(["ss", "-Hltn", f"src {host}:{port}"], capture_output=True, text=True).stdout
        if out.strip():
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"socat did not listen on {host}:{port}")
        time.sleep(0.02)

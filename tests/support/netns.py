"""A network namespace that tests make and remove themselves: real packet loss and a real rate
limit on a real link, for processes put on the far side of it.

Recipe (what :func:`network_namespace` runs; ``N`` picks a free /30 in 10.213.0.0/16):

    ip netns add ossm-PID-K
    ip link add ossmNh type veth peer name ossmNn netns ossm-PID-K
    ip addr add 10.213.A.B+1/30 dev ossmNh && ip link set ossmNh up
    ip netns exec ossm-PID-K ip addr add 10.213.A.B+2/30 dev ossmNn
    ip netns exec ossm-PID-K ip link set ossmNn up && ip netns exec ossm-PID-K ip link set lo up
    # one TCP segment per packet (a veth hands on 64 KiB GSO packets, so "5 % of packets" would
    # drop a few huge ones instead of one segment in twenty):
    ip link set dev ossmNh gso_max_segs 1 && ip netns exec ossm-PID-K ip link set dev ossmNn gso_max_segs 1
    # loss, both directions, only on the veth (the namespace's loopback stays clean):
    ip netns exec ossm-PID-K iptables -A INPUT -i ossmNn -m statistic --mode random --probability 0.05 -j DROP
    ip netns exec ossm-PID-K iptables -A OUTPUT -o ossmNn -m statistic --mode random --probability 0.05 -j DROP
    # a 10 Mbit/s link, each direction (token bucket on each end's egress):
    tc qdisc replace dev ossmNh root tbf rate 10mbit burst 32kb latency 400ms
    ip netns exec ossm-PID-K tc qdisc replace dev ossmNn root tbf rate 10mbit burst 32kb latency 400ms
    # a real black-hole (every packet dropped; TCP retransmits with its own back-off):
    ip netns exec ossm-PID-K iptables -I INPUT -i ossmNn -j DROP   (and -I OUTPUT -o ossmNn -j DROP)
    # clean-up: removing the namespace removes its end of the veth pair, and with it the other end
    ip netns del ossm-PID-K

This kernel has no ``netem``, so delay and jitter come from the fault proxy
(tests/support/faultproxy.py) instead. Needs root, iproute2 and iptables
(scripts/install-system-deps installs them); :func:`unavailable` says why not, for
``tests.conftest.require``.

``python -m tests.support.netns checksum-server`` (run inside a namespace) serves the checked
transfers of tests/e2e/forwarding.py on every address and prints its port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence

PREFIX = "ossm-"
_counter = itertools.count()


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def unavailable() -> str | None:
    """Why a namespace cannot be made here, or None if it can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "iptables", "tc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-deps installs it)"
    try:
        with network_namespace():
            return None
    except (RuntimeError, OSError) as exc:
        return f"cannot make a network namespace: {exc}"


@dataclasses.dataclass(frozen=True)
class Namespace:
    name: str
    host_if: str  # the host's end of the veth pair
    ns_if: str  # the namespace's end
    host_address: str  # reachable from inside the namespace
    ns_address: str  # reachable from the host

    def argv(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.argv(*argv), check=check)

    def set_loss(self, probability: float) -> None:
        """Drop each packet crossing the veth with ``probability``, both ways (0: no loss)."""
        self._replace_rules("OPENSSM-LOSS", probability)

    def set_blackhole(self, on: bool, port: int | None = None) -> None:
        """Drop every packet crossing the veth (a dead link), or only TCP to and from ``port`` on
        the host's side; or, with ``on`` False, none."""
        match = ("-p", "tcp", "--sport", str(port)) if port else ()
        self._replace_rules("OPENSSM-BLACKHOLE", 1.0 if on else 0.0, match)
        if on and port:
            self.run("iptables", "-A", "OPENSSM-BLACKHOLE", "-p", "tcp", "--dport", str(port), "-j", "DROP")

    def _replace_rules(self, chain: str, probability: float, match: Sequence[str] = ()) -> None:
        """Our rules live in a chain of their own, jumped to for traffic on the veth only."""
        if self.run("iptables", "-n", "-L", chain, check=False).returncode != 0:
            self.run("iptables", "-N", chain)
            self.run("iptables", "-I", "INPUT", "-i", self.ns_if, "-j", chain)
            self.run("iptables", "-I", "OUTPUT", "-o", self.ns_if, "-j", chain)
        self.run("iptables", "-F", chain)
        if probability >= 1.0:
            self.run("iptables", "-A", chain, *match, "-j", "DROP")
        elif probability > 0:
            self.run(
                "iptables", "-A", chain, *match, "-m", "statistic", "--mode", "random",
                "--probability", f"{probability:.4f}", "-j", "DROP",
            )  # fmt: skip

    def set_rate(self, mbit: float | None) -> None:
        """Limit each direction of the link to ``mbit`` Mbit/s (token bucket), or lift the limit."""
        for prefix, interface in (([], self.host_if), (self.argv(), self.ns_if)):
            if mbit is None:
                _run([*prefix, "tc", "qdisc", "del", "dev", interface, "root"], check=False)
            else:
                _run(
                    [*prefix, "tc", "qdisc", "replace", "dev", interface, "root", "tbf",
                     "rate", f"{mbit}mbit", "burst", "32kb", "latency", "400ms"]
                )  # fmt: skip

    def stats(self) -> str:
        """The drop counters and the qdisc statistics, for a test's printout."""
        rules = self.run("iptables", "-v", "-n", "-x", "-L", "OPENSSM-LOSS", check=False).stdout
        qdisc = _run(["tc", "-s", "qdisc", "show", "dev", self.host_if], check=False).stdout
        return f"{rules.strip()}\n{qdisc.strip()}"

    @contextlib.contextmanager
    def checksum_server(self) -> Iterator[int]:
        """A checksum destination (tests/e2e/forwarding.py) inside the namespace; yields its port,
        open on the namespace's loopback and on ``ns_address``."""
        repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        proc = subprocess.Popen(
            self.argv(sys.executable, "-m", "tests.support.netns", "checksum-server"),
            cwd=repo,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if not line.isdigit():
                raise RuntimeError(f"checksum server in {self.name} did not start: {line!r}")
            yield int(line)
        finally:
            proc.terminate()
            proc.wait(10)


def _remove_stale() -> None:
    """Namespaces left by test processes that died without cleaning up (their pid is gone)."""
    listing = _run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        parts = name.split("-")
        if name.startswith(PREFIX) and len(parts) == 3 and parts[1].isdigit():
            if not os.path.exists(f"/proc/{parts[1]}"):
                _run(["ip", "netns", "del", name], check=False)


@contextlib.contextmanager
def network_namespace() -> Iterator[Namespace]:
    """A fresh namespace joined to the host by a veth pair with a /30 of its own; removed on exit,
    whatever happened."""
    _remove_stale()
    index = next(_counter)
    slot = (os.getpid() * 8 + index) % 16384
    name = f"{PREFIX}{os.getpid()}-{index}"
    host_if, ns_if = f"ossm{slot}h", f"ossm{slot}n"
    third, fourth = divmod(slot, 64)
    host_address, ns_address = f"10.213.{third}.{fourth * 4 + 1}", f"10.213.{third}.{fourth * 4 + 2}"
    namespace = Namespace(name, host_if, ns_if, host_address, ns_address)
    try:
        _run(["ip", "netns", "add", name])
        _run(["ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", name])
        _run(["ip", "addr", "add", f"{host_address}/30", "dev", host_if])
        _run(["ip", "link", "set", host_if, "up"])
        namespace.run("ip", "addr", "add", f"{ns_address}/30", "dev", ns_if)
        namespace.run("ip", "link", "set", ns_if, "up")
        namespace.run("ip", "link", "set", "lo", "up")
        _run(["ip", "link", "set", "dev", host_if, "gso_max_segs", "1"])
        namespace.run("ip", "link", "set", "dev", ns_if, "gso_max_segs", "1")
        yield namespace
    finally:
        _run(["ip", "netns", "del", name], check=False)
        _run(["ip", "link", "del", host_if], check=False)  # gone with the namespace, unless half-made


def _serve_checksums() -> None:
    import signal
    import threading

    from tests.e2e.forwarding import ChecksumServer

    with ChecksumServer(host="0.0.0.0") as server:
        print(server.port, flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["checksum-server"]:
        _serve_checksums()
    else:
        sys.exit("usage: python -m tests.support.netns checksum-server")

"""How fast a session moves data again after a network fault, and how fast it moves over a bad network.

Real `openssm server`, `openssm agent` and `openssm start-session` processes, as in the tests
(tests/e2e/harness.py). The agent runs in a network namespace of its own (tests/support/netns.py,
needs root; without it the agent runs on loopback and the namespace's parts are skipped), reaching
the server through a fault proxy on the host's end of the veth (tests/support/faultproxy.py); the
client's data channel runs through another fault proxy (the server's public URL).

**Recovery.** One port session carries a paced stream each way (a 16-byte record every
millisecond, stamped with its send time: small enough that no buffer holds a backlog while the
path is healthy). For each kind of fault, ``--faults`` times: inject it, take T = the moment the
network is back (the RST itself; the end of a black-hole), and time the arrival of the first
record sent once the fault was in force (so one that crossed the path after it) at each end
(download: agent → client, upload: client → agent), from T. Kinds:

- RST of the client's data channel; RST of the agent's (the proxy resets both ends);
- black-hole of the client's or the agent's data-channel path in the proxy (forwarding paused for
  ``--blackhole-seconds``, nothing closed: TCP itself waits, so data moves the moment it ends);
- black-hole of the agent's link in the namespace (every packet to and from the proxy dropped by
  iptables for ``--blackhole-seconds``: TCP retransmits with its own exponential back-off, so the
  first byte comes when the next retransmission finds the link up).
- server restart: `openssm server` stopped with SIGTERM, or SIGKILL, and started again at once on
  the same data directory and port (T = the server listening again): the client and the agent
  re-dial, and the new server picks the session up.

**Throughput on a bad network**: SIZE bytes each way at once through a port session, and through
a direct TCP connection across the same link, with 5 % random loss on the veth, with 100 ms ± 50 ms
delay each way (proxy), and with a 10 Mbit/s token bucket plus that delay. Printed as MiB/s and as a
ratio to direct TCP. Every transfer is SHA-256-checked at both ends.

The machine is shared and noisy: compare, don't trust absolute times.

Run: `.venv/bin/python bench/bench_resume.py [--faults 50] [--blackhole-seconds 1] [--size-mib 16]
[--kinds restart]` (`--faults 5 --size-mib 4` for a quick look).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import pathlib
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.e2e.forwarding import PacedDestination, PacedEnd, SessionProcess, TransferReport, reported_transfer
from tests.e2e.harness import Agent, Server, openssm_argv, wait_until
from tests.support import netns
from tests.support.faultproxy import ProxyThread
from tests.support.stats import percentile

MIB = 1 << 20
DATA = "/v1/data-channel/"


@dataclasses.dataclass
class Rig:
    server: Server
    agent: Agent
    client_path: ProxyThread
    agent_path: ProxyThread
    namespace: netns.Namespace | None
    work: pathlib.Path

    def session(self, host: str, port: int) -> SessionProcess:
        assert self.agent.instance_id
        return SessionProcess(
            openssm_argv(
                "start-session",
                "--target",
                self.agent.instance_id,
                "--endpoint-url",
                self.server.endpoint,
                "--document-name",
                "AWS-StartPortForwardingSessionToRemoteHost",
                "--parameters",
                f"host={host},portNumber={port},localPortNumber=0",
            ),
            self.server.aws_env(),
        )


@contextlib.contextmanager
def rig(work: pathlib.Path) -> Iterator[Rig]:
    reason = netns.unavailable()
    if reason:
        print(f"(no network namespace: {reason}; the agent runs on loopback, namespace parts skipped)")
    with contextlib.ExitStack() as stack:
        namespace = stack.enter_context(netns.network_namespace()) if reason is None else None
        server = Server(work / "server")
        client_path = stack.enter_context(ProxyThread("127.0.0.1", server.port))
        agent_host = namespace.host_address if namespace else "127.0.0.1"
        agent_path = stack.enter_context(ProxyThread("127.0.0.1", server.port, listen_host=agent_host))
        server.public_url = client_path.url
        server.start()
        stack.callback(server.stop)
        agent = Agent(
            server,
            work / "agent",
            endpoint=agent_path.url,
            mgs_endpoint=agent_path.url,
            netns=namespace.name if namespace else None,
        )
        agent.register("bench-node")
        agent.start()
        stack.callback(agent.stop)
        yield Rig(server, agent, client_path, agent_path, namespace, work)


# -- recovery ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class FaultKind:
    name: str
    # Injects one fault and returns (F, T): the time.monotonic() at which the fault was in force
    # (records sent from F on had to cross the path after it) and the one at which it was over.
    inject: Callable[[Rig, float], tuple[float, float]]
    needs_namespace: bool = False


def proxy_reset(path: str) -> Callable[[Rig, float], tuple[float, float]]:
    def inject(rig: Rig, _: float) -> tuple[float, float]:
        proxy = rig.client_path if path == "client" else rig.agent_path
        proxy.wait_link(DATA, timeout=30)  # (a data channel may be between two connections)
        fault = time.monotonic()
        if proxy.reset(DATA) < 1:
            raise RuntimeError(f"no {path} data channel to reset")
        return fault, time.monotonic()

    return inject


def proxy_blackhole(path: str) -> Callable[[Rig, float], tuple[float, float]]:
    def inject(rig: Rig, seconds: float) -> tuple[float, float]:
        proxy = rig.client_path if path == "client" else rig.agent_path
        fault = time.monotonic()
        proxy.blackhole(seconds, DATA)
        return fault, proxy.wait_restored(seconds + 30)

    return inject


def link_blackhole(rig: Rig, seconds: float) -> tuple[float, float]:
    assert rig.namespace is not None
    # In force once the iptables rules are in (a few `ip netns exec` runs, slow on a busy machine:
    # records sent before that may still have crossed).
    rig.namespace.set_blackhole(True, rig.agent_path.port)
    fault = time.monotonic()
    time.sleep(seconds)  # the outage itself
    rig.namespace.set_blackhole(False)
    return fault, time.monotonic()


def server_restart(sig: signal.Signals) -> Callable[[Rig, float], tuple[float, float]]:
    def inject(rig: Rig, _: float) -> tuple[float, float]:
        assert rig.server.process is not None
        fault = time.monotonic()
        rig.server.process.stop(sig, timeout=30)
        rig.server.start()  # returns once it listens
        # The agent's control channel comes back on a backoff of its own, which grows when restarts
        # come less than 30 s apart; the session does not need it (a new session waits for it).
        return fault, time.monotonic()

    return inject


FAULT_KINDS = [
    FaultKind("RST, client data channel", proxy_reset("client")),
    FaultKind("RST, agent data channel", proxy_reset("agent")),
    FaultKind("black-hole (proxy), client data channel", proxy_blackhole("client")),
    FaultKind("black-hole (proxy), agent data channel", proxy_blackhole("agent")),
    FaultKind("black-hole (iptables), agent's link", link_blackhole, needs_namespace=True),
    FaultKind("server restart (SIGTERM)", server_restart(signal.SIGTERM)),
    FaultKind("server restart (SIGKILL)", server_restart(signal.SIGKILL)),
]


@dataclasses.dataclass
class Recovery:
    kind: str
    down: list[float]  # seconds to the first byte agent → client
    up: list[float]  # seconds to the first byte client → agent
    stuck: int = 0  # faults after which no byte came within --give-up seconds (the session is replaced)


class PacedSession:
    """A port session carrying a paced stream each way, to the bench's own destination."""

    def __init__(self, rig: Rig) -> None:
        rig.agent.wait_online(90)  # (after a server restart its control channel may still be away)
        self.destination = PacedDestination(rig.namespace.host_address if rig.namespace else "127.0.0.1")
        self.session = rig.session(self.destination.host, self.destination.port)
        try:
            (local,) = self.session.local_ports()
            self.client_end = PacedEnd(socket.create_connection(("127.0.0.1", local)))
            wait_until(lambda: len(self.destination.ends) == 1, "the paced stream to reach the destination")
            self.agent_end = self.destination.ends[0]
        except BaseException:
            self.close()
            raise

    def healthy(self) -> bool:
        return self.client_end.fresh() and self.agent_end.fresh()

    def close(self) -> None:
        if hasattr(self, "client_end"):
            self.client_end.close()
        self.session.stop()
        self.destination.close()


def measure_recovery(
    rig: Rig, kinds: list[FaultKind], faults: int, blackhole_seconds: float, give_up: float
) -> list[Recovery]:
    results: list[Recovery] = []
    for kind in kinds:
        result = Recovery(kind.name, [], [])
        stream = PacedSession(rig)  # a fresh session for each kind: no kind inherits another's state
        try:
            for _ in range(faults):
                wait_until(stream.healthy, "the stream to flow both ways", timeout=60, interval=0.01)
                fault, back = kind.inject(rig, blackhole_seconds)
                try:
                    down = stream.client_end.first_after(back, fault, timeout=give_up)
                    up = stream.agent_end.first_after(back, fault, timeout=give_up)
                except TimeoutError:
                    result.stuck += 1
                    stream.close()
                    stream = PacedSession(rig)
                    continue
                result.down.append(down)
                result.up.append(up)
        finally:
            stream.close()
        results.append(result)
        print(f"  {kind.name}: {faults} faults done", flush=True)
    return results


# -- throughput on a bad network ------------------------------------------------------------------


@dataclasses.dataclass
class Throughput:
    condition: str
    direct: TransferReport
    openssm: TransferReport


def rate(report: TransferReport) -> float:
    return (report.uploaded + report.downloaded) / MIB / report.seconds


def measure_throughput(rig: Rig, size: int) -> list[Throughput]:
    namespace = rig.namespace
    if namespace is None:
        return []
    results = []
    conditions: list[tuple[str, float | None, float | None, float]] = [
        ("5 % random loss", 0.05, None, 0.0),
        ("100 ms ± 50 ms delay", None, None, 0.1),
        ("10 Mbit/s + 100 ms ± 50 ms", None, 10.0, 0.1),
    ]
    rig.agent.wait_online(90)
    with namespace.checksum_server() as destination:
        session = rig.session("127.0.0.1", destination)  # the agent's own loopback, in the namespace
        try:
            (local,) = session.local_ports()
            for name, loss, mbit, delay in conditions:
                namespace.set_loss(loss or 0.0)
                namespace.set_rate(mbit)
                rig.agent_path.shape(delay=delay, jitter=delay / 2)
                share = size if mbit is None else min(size, 4 * MIB)  # 10 Mbit/s is slow
                try:
                    with ProxyThread(namespace.ns_address, destination) as direct_path:
                        direct_path.shape(delay=delay, jitter=delay / 2)
                        direct = reported_transfer(
                            direct_path.port, upload=share, download=share, timeout=300
                        )
                    openssm = reported_transfer(local, upload=share, download=share, timeout=300)
                finally:
                    namespace.set_loss(0.0)
                    namespace.set_rate(None)
                    rig.agent_path.shape()
                results.append(Throughput(name, direct, openssm))
                print(f"  {name}: done", flush=True)
        finally:
            session.stop()
    return results


# -- report ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--faults", type=int, default=50, help="faults of each kind (default 50)")
    parser.add_argument(
        "--blackhole-seconds", type=float, default=1.0, help="how long each black-hole lasts (default 1)"
    )
    parser.add_argument("--size-mib", type=int, default=16, help="each way, per bad-network transfer")
    parser.add_argument(
        "--give-up", type=float, default=20.0, help="seconds to wait for a byte after a fault (default 20)"
    )
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument(
        "--kinds", default="", help="only the fault kinds whose name holds this text (e.g. 'restart')"
    )
    parser.add_argument("--work-dir", type=pathlib.Path, help="keep the processes' logs here")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = args.work_dir or pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory()))
        running = stack.enter_context(rig(work))
        kinds = [
            kind
            for kind in FAULT_KINDS
            if (running.namespace or not kind.needs_namespace) and args.kinds in kind.name
        ]
        print(f"recovery: {args.faults} faults of each of {len(kinds)} kinds", flush=True)
        recoveries = measure_recovery(running, kinds, args.faults, args.blackhole_seconds, args.give_up)
        throughputs = [] if args.no_throughput else measure_throughput(running, args.size_mib * MIB)

    print(
        f"\nseconds from the network coming back to the first byte flowing again"
        f" ({args.faults} faults per kind; black-holes {args.blackhole_seconds:g} s; shared machine)\n"
    )
    print(
        f"{'fault':<42} {'direction':<16} {'p50':>7} {'p99':>7} {'max':>7}  no byte within {args.give_up:g} s"
    )
    for result in recoveries:
        for direction, values in (("agent → client", result.down), ("client → agent", result.up)):
            figures = (
                f"{statistics.median(values):7.3f} {percentile(values, 0.99):7.3f} {max(values):7.3f}"
                if values
                else f"{'-':>7} {'-':>7} {'-':>7}"
            )
            print(f"{result.kind:<42} {direction:<16} {figures}  {result.stuck} of {args.faults}")
    if throughputs:
        print(f"\nthroughput, {args.size_mib} MiB each way at once (4 MiB at 10 Mbit/s), SHA-256 verified\n")
        print(f"{'condition':<30} {'direct MiB/s':>13} {'OpenSSM MiB/s':>14} {'vs direct':>10}")
        for item in throughputs:
            print(
                f"{item.condition:<30} {rate(item.direct):13.2f} {rate(item.openssm):14.2f}"
                f" {rate(item.openssm) / rate(item.direct):9.0%}"
            )


if __name__ == "__main__":
    main()

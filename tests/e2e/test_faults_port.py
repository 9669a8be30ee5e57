"""Port sessions through real network faults: a fault proxy on the client's data channel (the
server's public URL) or on the agent's (its message gateway endpoint), with real `openssm server`,
`openssm agent` and `openssm start-session` processes and a checksum destination.

Every transfer is checked by SHA-256 at both ends (tests/e2e/forwarding.py) and printed; every
fault must leave the bytes exact, and data must move again after it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from typing import Literal

import pytest

from tests.e2e.forwarding import (
    ChecksumServer,
    PacedDestination,
    PacedEnd,
    SessionProcess,
    TransferReport,
    reported_transfer,
    session_process,
)
from tests.e2e.harness import ProxiedSystem, port_forwarding_argv, proxied_system, wait_until
from tests.support.faultproxy import ProxyThread

pytestmark = pytest.mark.slow

MIB = 1 << 20
DATA = "/v1/data-channel/"
RECOVERY_TIMEOUT = 30.0  # far above what a recovery takes; a hang fails here, not at pytest's timeout
Path = Literal["client", "agent"]
PATHS: tuple[Path, ...] = ("client", "agent")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxiedSystem, ChecksumServer]]:
    with proxied_system(tmp_path_factory.mktemp("faults-port")) as running, ChecksumServer() as destination:
        yield running, destination


@pytest.fixture
def system(rig: tuple[ProxiedSystem, ChecksumServer]) -> ProxiedSystem:
    return rig[0]


@pytest.fixture
def destination(rig: tuple[ProxiedSystem, ChecksumServer]) -> ChecksumServer:
    return rig[1]


@pytest.fixture(autouse=True)
def healthy_proxies(system: ProxiedSystem) -> Iterator[None]:
    """Each test starts and ends with both paths clean, whatever it left behind."""
    yield
    for proxy in (system.client_path, system.agent_path):
        proxy.shape()
        proxy.restore()


def path_proxy(system: ProxiedSystem, path: Path) -> ProxyThread:
    return system.client_path if path == "client" else system.agent_path


@contextlib.contextmanager
def port_session(system: ProxiedSystem, destination: ChecksumServer) -> Iterator[tuple[SessionProcess, int]]:
    assert system.agent.instance_id
    argv = port_forwarding_argv(system.server, system.agent.instance_id, destination.port)
    with session_process(argv, system.server.aws_env()) as session:
        (local,) = session.local_ports()
        session.wait_for(r"Waiting for connections\.\.\.")
        yield session, local


def print_reports(label: str, reports: list[TransferReport]) -> None:
    for index, report in enumerate(reports, 1):
        print(report.describe(f"{label}, connection {index}"))
        assert report.client_sent == report.server_received
        assert report.server_sent == report.client_received


def session_is_still_connected(system: ProxiedSystem, session: SessionProcess) -> None:
    """The same session carried everything: it is still the one active session, Connected."""
    (session_id,) = session.session_ids()
    active = system.server.client("ssm").describe_sessions(State="Active")["Sessions"]
    assert [(s["SessionId"], s["Status"]) for s in active] == [(session_id, "Connected")], active


class Faults:
    """Fires faults while transfers run, checking that each lands mid-transfer and timing how
    long data takes to move again afterwards."""

    def __init__(self, proxy: ProxyThread, jobs: list[concurrent.futures.Future[TransferReport]]) -> None:
        self.proxy = proxy
        self.jobs = jobs
        self.recoveries: list[tuple[str, float]] = []

    def running(self) -> None:
        done = [job for job in self.jobs if job.done()]
        for job in done:
            job.result()  # a failed transfer fails the test with its own error
        assert not done, "a transfer finished before the fault: the fault would prove nothing"

    def recovered(self, what: str, since: float, count: int = 256 * 1024, *, after: int = 0) -> float:
        """Seconds from ``since`` until ``count`` more bytes crossed the data channel (on a link
        opened after link ``after``: a new connection, when the fault ended the old one)."""
        self.proxy.wait_moved(count, timeout=RECOVERY_TIMEOUT, match=DATA, after=after)
        seconds = time.monotonic() - since
        self.recoveries.append((what, seconds))
        return seconds

    def reset(self, what: str, count: int = 256 * 1024) -> None:
        self.running()
        newest = self.proxy.last_link_id()
        assert self.proxy.reset(DATA) >= 1
        self.recovered(what, time.monotonic(), count, after=newest)

    def blackhole(self, what: str, seconds: float, match: str | None) -> None:
        self.running()
        assert self.proxy.blackhole(seconds, match) >= 1
        restored_at = self.proxy.wait_restored(seconds + 30)
        self.recovered(what, restored_at)

    def print(self, label: str) -> None:
        for what, seconds in self.recoveries:
            print(f"{label}: data moved again {seconds:.2f} s after {what}")


def run_with_faults(
    system: ProxiedSystem,
    destination: ChecksumServer,
    path: Path,
    *,
    connections: int,
    size: int,
    inject: Callable[[Faults], None],
    timeout: float = 180.0,
) -> tuple[list[TransferReport], Faults]:
    proxy = path_proxy(system, path)
    with (
        port_session(system, destination) as (session, local),
        concurrent.futures.ThreadPoolExecutor(connections) as pool,
    ):
        jobs = [
            pool.submit(reported_transfer, local, upload=size, download=size, timeout=timeout)
            for _ in range(connections)
        ]
        faults = Faults(proxy, jobs)
        try:
            inject(faults)
        finally:
            proxy.shape()
            proxy.restore()
        reports = [job.result(timeout) for job in jobs]
        session_is_still_connected(system, session)
    return reports, faults


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", PATHS)
def test_two_resets_and_a_blackhole_during_2x64_mib_each_way(
    system: ProxiedSystem, destination: ChecksumServer, path: Path
) -> None:
    """Two RSTs and a 10 s black-hole of one data path while two connections each move 64 MiB up
    and 64 MiB down through one port session: nothing lost, duplicated or reordered.

    The client path carries only the client's data channel; on the agent path the black-hole takes
    the agent's control channel down with its data channel (the node's network is gone)."""
    proxy = path_proxy(system, path)

    def inject(faults: Faults) -> None:
        proxy.wait_moved(16 * MIB, match=DATA)
        faults.reset("RST 1")
        proxy.wait_moved(8 * MIB, match=DATA)
        faults.reset("RST 2")
        proxy.wait_moved(8 * MIB, match=DATA)
        faults.blackhole("a 10 s black-hole", 10.0, DATA if path == "client" else None)

    reports, faults = run_with_faults(system, destination, path, connections=2, size=64 * MIB, inject=inject)
    faults.print(f"{path} path")
    print_reports(f"{path} path, 2 RSTs + 10 s black-hole", reports)


Fault = Literal["half-close towards server", "half-close towards client", "throttle", "one-byte", "delay"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    "fault",
    ["half-close towards server", "half-close towards client", "throttle", "one-byte", "delay"],
)
def test_fault_during_transfer(
    system: ProxiedSystem, destination: ChecksumServer, path: Path, fault: Fault
) -> None:
    proxy = path_proxy(system, path)
    size = 32 * MIB if fault.startswith("half-close") else 4 * MIB

    def inject(faults: Faults) -> None:
        if fault.startswith("half-close"):
            proxy.wait_moved(MIB, match=DATA)
            faults.running()
            towards: Literal["server", "client"] = "server" if fault.endswith("server") else "client"
            newest = proxy.last_link_id()
            assert proxy.half_close(towards, DATA) >= 1
            faults.recovered(fault, time.monotonic(), after=newest)
        elif fault == "throttle":
            proxy.shape(rate=1.5 * MIB)
            started = time.monotonic()
            for job in faults.jobs:
                job.result(120)
            # 4 MiB each way at 1.5 MiB/s each way: the throttle held it back.
            assert time.monotonic() - started >= 2.0
        elif fault == "one-byte":
            # One byte per write and per segment, through a reconnection too (its HTTP upgrade and
            # open frame arrive a byte at a time), then back to normal.
            proxy.shape(one_byte=True)
            proxy.wait_moved(16 * 1024, match=DATA)
            faults.reset("RST during one-byte writes", count=16 * 1024)
            proxy.wait_moved(16 * 1024, match=DATA)
        else:
            proxy.shape(delay=0.1, jitter=0.05)
            for job in faults.jobs:
                job.result(120)

    reports, faults = run_with_faults(system, destination, path, connections=1, size=size, inject=inject)
    faults.print(f"{path} path, {fault}")
    print_reports(f"{path} path, {fault}", reports)


def test_proxies_carry_what_they_should(system: ProxiedSystem, destination: ChecksumServer) -> None:
    """During a session the client path carries the client's data channel and nothing else; the
    agent path its control channel and its data channel (so a fault there hits the agent's)."""
    with port_session(system, destination):
        client_links = system.client_path.links()
        agent_links = {link.path.split("/")[2] for link in system.agent_path.links()}
    assert client_links and all(link.path.startswith(DATA) for link in client_links)
    assert agent_links == {"control-channel", "data-channel"}


@pytest.mark.timeout(240)
def test_small_messages_recover_after_agent_channel_resets(system: ProxiedSystem) -> None:
    """Up to 30 RSTs of the agent's data channel under a paced stream of small messages each way:
    after each, a byte sent after the fault must get through within 5 s, both ways."""
    assert system.agent.instance_id
    destination = PacedDestination("127.0.0.1")
    argv = port_forwarding_argv(system.server, system.agent.instance_id, destination.port)
    try:
        with session_process(argv, system.server.aws_env()) as session:
            (local,) = session.local_ports()
            client_end = PacedEnd(socket.create_connection(("127.0.0.1", local)))
            wait_until(lambda: len(destination.ends) == 1, "the paced stream to reach the destination")
            agent_end = destination.ends[0]
            try:
                for index in range(1, 31):
                    wait_until(
                        lambda: client_end.fresh() and agent_end.fresh(), "both ways to flow", timeout=30
                    )
                    fault = time.monotonic()
                    assert system.agent_path.reset(DATA) >= 1
                    back = time.monotonic()
                    down = client_end.first_after(back, fault, timeout=5)
                    up = agent_end.first_after(back, fault, timeout=5)
                    print(
                        f"RST {index} of the agent's data channel: a byte got through in {down:.3f} s"
                        f" agent->client, {up:.3f} s client->agent"
                    )
            finally:
                client_end.close()
    finally:
        destination.close()

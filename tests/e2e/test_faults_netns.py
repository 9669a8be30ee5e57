"""Port forwarding over a bad network made for real: the agent and its destination live in a
network namespace (tests/support/netns.py) behind a veth link with 5 % random packet loss, or
with a 10 Mbit/s token-bucket limit plus 100 ms ± 50 ms of delay each way (the fault proxy: this
kernel has no netem). Real `openssm server`, `openssm agent` (inside the namespace) and `openssm
start-session` processes; every transfer is SHA-256-checked at both ends, and printed next to a
direct TCP transfer across the same link."""

from __future__ import annotations

import contextlib
import pathlib
from collections.abc import Iterator

import pytest

from tests.conftest import require
from tests.e2e.forwarding import TransferReport, reported_transfer, session_process
from tests.e2e.harness import Agent, Server, port_forwarding_argv
from tests.support import netns
from tests.support.faultproxy import ProxyThread

pytestmark = pytest.mark.slow

MIB = 1 << 20


@pytest.fixture(scope="module")
def namespace() -> Iterator[netns.Namespace]:
    reason = netns.unavailable()
    require(reason is None, reason or "")
    with netns.network_namespace() as made:
        yield made


@contextlib.contextmanager
def agent_in_namespace(
    tmp_path: pathlib.Path, ns: netns.Namespace
) -> Iterator[tuple[Server, Agent, ProxyThread]]:
    """A server on the host's loopback, reached from the namespace through a fault proxy on the
    host's end of the veth (API, control and data channels alike); the agent inside."""
    server = Server(tmp_path / "server").start()
    try:
        with ProxyThread("127.0.0.1", server.port, listen_host=ns.host_address) as proxy:
            agent = Agent(
                server, tmp_path / "agent", endpoint=proxy.url, mgs_endpoint=proxy.url, netns=ns.name
            )
            try:
                agent.register()
                agent.start()
                yield server, agent, proxy
            finally:
                agent.stop()
    finally:
        server.stop()


def compare(label: str, direct: TransferReport, openssm: TransferReport) -> None:
    for name, report in (("direct TCP", direct), ("OpenSSM", openssm)):
        print(report.describe(f"{label}, {name}"))
    rate_direct = (direct.uploaded + direct.downloaded) / MIB / direct.seconds
    rate_openssm = (openssm.uploaded + openssm.downloaded) / MIB / openssm.seconds
    print(
        f"{label}: direct TCP {rate_direct:.2f} MiB/s, OpenSSM {rate_openssm:.2f} MiB/s"
        f" ({rate_openssm / rate_direct:.0%} of direct; both directions at once; shared 2-core machine)"
    )


def forward_through_openssm(
    tmp_path: pathlib.Path, ns: netns.Namespace, destination: int, size: int, delay: float = 0.0
) -> TransferReport:
    with agent_in_namespace(tmp_path, ns) as (server, agent, proxy):
        assert agent.instance_id
        proxy.shape(delay=delay, jitter=delay / 2)
        with session_process(
            port_forwarding_argv(server, agent.instance_id, destination), server.aws_env()
        ) as session:
            (local,) = session.local_ports()
            return reported_transfer(local, upload=size, download=size, timeout=120)


@pytest.mark.timeout(240)
def test_port_transfer_behind_5_percent_loss(namespace: netns.Namespace, tmp_path: pathlib.Path) -> None:
    size = 16 * MIB
    namespace.set_loss(0.05)
    try:
        with namespace.checksum_server() as destination:
            direct = reported_transfer(destination, host=namespace.ns_address, upload=size, download=size)
            openssm = forward_through_openssm(tmp_path, namespace, destination, size)
        print(namespace.stats())
    finally:
        namespace.set_loss(0)
    compare("5 % loss each way", direct, openssm)


@pytest.mark.timeout(240)
def test_port_transfer_over_10_mbit_with_delay_and_jitter(
    namespace: netns.Namespace, tmp_path: pathlib.Path
) -> None:
    size = 4 * MIB
    namespace.set_rate(10)
    try:
        with (
            namespace.checksum_server() as destination,
            ProxyThread(namespace.ns_address, destination) as delayed,
        ):
            delayed.shape(delay=0.1, jitter=0.05)
            direct = reported_transfer(delayed.port, upload=size, download=size, timeout=120)
            openssm = forward_through_openssm(tmp_path, namespace, destination, size, delay=0.1)
        print(namespace.stats())
    finally:
        namespace.set_rate(None)
    compare("10 Mbit/s, 100 ± 50 ms each way", direct, openssm)

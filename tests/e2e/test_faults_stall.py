"""A reader that stops (Ctrl-S, `ssh … | less`) while the other end keeps sending: real `openssm
server`, `openssm agent` and `openssm start-session` processes and a port session. Both readers stop
at once (the local client's and the destination's), for STALL seconds, while each side pushes SIZE
bytes at the other; then they read on. Nothing may be dropped (SHA-256 at both ends, printed) and no
process may buffer the backlog: each process group's memory (RSS, sampled throughout) stays within
64 MiB of what it was before the transfer, because back-pressure reaches the sender.

CI runs a 30 s stall with 256 MiB; `bench/bench_reader_stall.py` runs the issue's 10 minutes with 1 GiB.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import pathlib
import threading
from collections.abc import Iterator

import pytest

from tests.e2e.forwarding import ChecksumServer, TransferReport, reported_transfer, session_process
from tests.e2e.harness import Agent, Server, port_forwarding_argv, running_system

pytestmark = pytest.mark.slow

MIB = 1 << 20
RSS_BOUND = 64 * MIB  # above idle, per process group


def group_rss(pgid: int) -> int:
    """Resident bytes of every process in process group ``pgid`` (a server, agent or client and
    whatever it started)."""
    total = 0
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:  # state, ppid, pgrp
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


class RssWatch:
    """Samples the RSS of named process groups every ``interval`` seconds; the peak above the
    first sample (idle) is what a backlog would show."""

    def __init__(self, groups: dict[str, int], interval: float = 0.25) -> None:
        self.groups = groups
        self.idle = {name: group_rss(pgid) for name, pgid in groups.items()}
        self.peak = dict(self.idle)
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            for name, pgid in self.groups.items():
                self.peak[name] = max(self.peak[name], group_rss(pgid))

    def stop(self) -> dict[str, int]:
        """Each group's peak growth over idle, in bytes."""
        self._stop.set()
        self._thread.join()
        return {name: self.peak[name] - self.idle[name] for name in self.groups}


@dataclasses.dataclass
class StallResult:
    report: TransferReport
    growth: dict[str, int]  # bytes above idle at the peak, per process group


def stalled_transfer(
    server: Server, agent: Agent, destination: ChecksumServer, size: int, stall: float
) -> StallResult:
    """One port session moving ``size`` bytes each way while both readers stop for ``stall`` s."""
    assert agent.instance_id and server.process and agent.process
    argv = port_forwarding_argv(server, agent.instance_id, destination.port)
    with session_process(argv, server.aws_env()) as session, concurrent.futures.ThreadPoolExecutor(1) as pool:
        (local,) = session.local_ports()
        session.wait_for(r"Waiting for connections\.\.\.")
        watch = RssWatch(
            {
                "server": os.getpgid(server.process.proc.pid),
                "agent": os.getpgid(agent.process.proc.pid),
                "client": os.getpgid(session.proc.pid),
            }
        )
        try:
            transfer = pool.submit(
                reported_transfer,
                local,
                upload=size,
                download=size,
                server_delay=stall,
                client_delay=stall,
                timeout=stall + 600,
            )
            report = transfer.result(stall + 900)
        finally:
            growth = watch.stop()
    return StallResult(report, growth)


def describe(result: StallResult, stall: float, size: int) -> str:
    rss = ", ".join(f"{name} +{grown / MIB:.1f} MiB" for name, grown in result.growth.items())
    return (
        f"{result.report.describe(f'{size // MIB} MiB each way, both readers stopped {stall:g} s')}\n"
        f"peak RSS above idle: {rss} (bound {RSS_BOUND // MIB} MiB)"
    )


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Agent, ChecksumServer]]:
    with running_system(tmp_path_factory.mktemp("faults-stall")) as (server, agent), ChecksumServer() as dest:
        yield server, agent, dest


@pytest.mark.timeout(600)
def test_stopped_readers_lose_nothing_and_buffer_nothing(
    system: tuple[Server, Agent, ChecksumServer],
) -> None:
    server, agent, destination = system
    stall, size = 30.0, 256 * MIB
    result = stalled_transfer(server, agent, destination, size, stall)
    print(describe(result, stall, size))
    report = result.report
    assert report.client_sent == report.server_received and report.server_sent == report.client_received
    assert report.seconds >= stall
    for name, grown in result.growth.items():
        assert grown <= RSS_BOUND, f"{name} grew by {grown / MIB:.1f} MiB while a reader was stopped"

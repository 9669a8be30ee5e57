"""Fleets of simulated agents (tests/support/fleet.py: the agent's exact protocol) against real
servers: a thousand on one SQLite server all Online, and a server with few open files that
throttles the agents it has no room for instead of failing them."""

from __future__ import annotations

import asyncio
import pathlib
import resource
import time
from collections.abc import Callable

import pytest

from tests.e2e.harness import Server
from tests.support import fleet as sim

pytestmark = pytest.mark.slow

FLEET = 1000
LOW_OPEN_FILES = 200
OVER_LIMIT_FLEET = 160


def _server_log_is_clean(server: Server) -> None:
    assert server.process is not None
    log = server.process.log()
    for bad in ("Traceback", "unable to open database file", "Too many open files", " ERROR "):
        assert bad not in log, f"{bad!r} in the server log:\n{log[-4000:]}"


async def _until(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


@pytest.mark.timeout(1200)
def test_a_thousand_agents_go_online_on_one_sqlite_server(tmp_path: pathlib.Path) -> None:
    server = Server(tmp_path / "server").start()
    try:
        ssm = server.client("ssm")
        activations = sim.create_activations(ssm, FLEET)
        assert len(activations) == 1  # RegistrationLimit 1,000: one activation holds them all

        async def run() -> None:
            async with sim.Fleet([server.endpoint], region=server.region, compress_time=10) as fleet:
                await fleet.register(FLEET, activations)
                assert fleet.stats.registered == FLEET
                fleet.start()
                await fleet.wait_online(900)
                wanted = {agent.instance_id for agent in fleet.agents}
                listed: set[str] = set()

                def all_listed() -> bool:
                    listed.clear()
                    listed.update(sim.online_from_api(ssm)[0])
                    return listed >= wanted

                await _until(all_listed, "every agent listed Online", 120)
                assert not fleet.stats.server_errors, fleet.stats.server_errors
                assert fleet.online_count() == FLEET

        asyncio.run(run())
        _server_log_is_clean(server)
    finally:
        server.stop()


def _low_open_files() -> None:
    """In the server's process before exec: a soft and hard limit it cannot raise past."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (LOW_OPEN_FILES, LOW_OPEN_FILES))


@pytest.mark.timeout(900)
def test_a_server_out_of_open_files_throttles_agents_instead_of_failing(tmp_path: pathlib.Path) -> None:
    server = Server(tmp_path / "server", preexec=_low_open_files).start()
    try:
        assert server.process is not None
        assert "room for about" in server.process.log()  # it says how many agents it can hold
        activations = sim.create_activations(server.client("ssm"), OVER_LIMIT_FLEET)

        async def run() -> sim.FleetStats:
            async with sim.Fleet(
                [server.endpoint], region=server.region, compress_time=10, retry_max=5.0
            ) as fleet:
                await fleet.register(OVER_LIMIT_FLEET, activations)
                fleet.start()
                # Agents fill the node up to its limit; the rest are told to slow down, again and again.
                await _until(lambda: fleet.online_count() >= 30, "agents online up to the limit", 300)
                await _until(lambda: fleet.stats.throttled >= OVER_LIMIT_FLEET, "throttling answers", 300)
                assert fleet.online_count() < OVER_LIMIT_FLEET
                return fleet.stats

        stats = asyncio.run(run())
        assert not stats.server_errors, stats.server_errors  # no HTTP 500, no database error
        assert server.process.alive()
        _server_log_is_clean(server)
        assert "refused" in server.process.log() and "ThrottlingException" in server.process.log()
    finally:
        server.stop()

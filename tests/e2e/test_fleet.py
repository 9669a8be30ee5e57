"""Fleets of simulated agents (tests/support/fleet.py: the agent's exact protocol) against real
servers: a thousand on one SQLite server all Online, a server with few open files that throttles
the agents it has no room for instead of failing them, and a 3-node cluster that loses a node."""

from __future__ import annotations

import asyncio
import collections
import pathlib
import resource
import time
from collections.abc import Callable

import aiohttp
import pytest

from tests.e2e.cluster import running_cluster
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
            # The real schedule (heartbeats every 5 minutes, pings every 54 s): the test is about
            # a thousand agents coming online and staying there, not about heartbeat load.
            async with sim.Fleet([server.endpoint], region=server.region) as fleet:
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


CLUSTER_FLEET = 150
REHOME_SECONDS = 30.0


@pytest.mark.timeout(900)
def test_a_killed_nodes_agents_are_online_on_the_others_within_30_s(tmp_path: pathlib.Path) -> None:
    """Three nodes on PostgreSQL + Redis, a fleet spread over them (each agent shuffles the nodes),
    one node SIGKILLed: its agents are Online on the others within 30 s, and a session carried by a
    survivor goes on untouched."""
    with running_cluster(tmp_path, size=3) as nodes:
        endpoints = [node.endpoint for node in nodes]
        survivor = nodes[0]
        ssm = survivor.client("ssm")
        activations = sim.create_activations(ssm, CLUSTER_FLEET)

        async def run() -> None:
            async with sim.Fleet(endpoints, region=survivor.region, compress_time=10) as fleet:
                await fleet.register(CLUSTER_FLEET, activations)
                fleet.start()
                await fleet.wait_online(600)
                by_node = collections.Counter(agent.control_node for agent in fleet.agents)
                assert set(by_node) == set(endpoints), by_node  # spread over every node
                victim = nodes[2]
                doomed = [agent for agent in fleet.agents if agent.control_node == victim.endpoint]
                kept = next(agent for agent in fleet.agents if agent.control_node == survivor.endpoint)

                # A live session on the survivor: it must not notice the other node's death.
                started = await asyncio.to_thread(ssm.start_session, Target=kept.instance_id)
                async with aiohttp.ClientSession() as http:
                    shell = await sim.ShellClient.open(http, started)
                    await shell.expect(sim.PROMPT)

                    victim.kill()
                    killed = time.monotonic()
                    wanted = {agent.instance_id for agent in fleet.agents}

                    def all_online_again() -> bool:
                        moved = all(
                            agent.online.is_set() and agent.control_node != victim.endpoint
                            for agent in doomed
                        )
                        return moved and sim.online_from_api(ssm)[0] >= wanted

                    await _until_threaded(
                        all_online_again, "the dead node's agents Online elsewhere", REHOME_SECONDS
                    )
                    rehomed = time.monotonic() - killed
                    await shell.send(b"still-here")
                    await shell.expect(b"still-here", timeout=10)
                    await shell.close()
                assert rehomed <= REHOME_SECONDS
                assert not fleet.stats.server_errors, fleet.stats.server_errors
                print(f"{len(doomed)} agents of the killed node Online elsewhere after {rehomed:.1f} s")

        asyncio.run(run())


async def _until_threaded(predicate: Callable[[], bool], what: str, timeout: float) -> None:
    """``_until`` for a predicate that blocks (boto3 calls): run it in a thread each time."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


ECHO_SHELLS = 4
KEYSTROKES = b"0123456789abcdefghij"


@pytest.mark.timeout(300)
def test_every_keystroke_on_a_few_shells_comes_back_once_in_order(tmp_path: pathlib.Path) -> None:
    """The path ``bench_fleet.py --shells`` measures: StartSession through the API, the data channel,
    a simulated agent echoing each input byte; keystrokes interleaved over the shells, one at a time."""
    server = Server(tmp_path / "server").start()
    try:
        ssm = server.client("ssm")
        activations = sim.create_activations(ssm, ECHO_SHELLS)

        async def run() -> None:
            async with sim.Fleet([server.endpoint], region=server.region) as fleet:
                await fleet.register(ECHO_SHELLS, activations)
                fleet.start()
                await fleet.wait_online(120)
                wanted = {agent.instance_id for agent in fleet.agents}
                await _until_threaded(lambda: sim.online_from_api(ssm)[0] >= wanted, "all Online", 60)
                async with aiohttp.ClientSession() as http:
                    shells: list[tuple[sim.ShellClient, list[bytes]]] = []
                    for agent in fleet.agents:
                        started = await asyncio.to_thread(ssm.start_session, Target=agent.instance_id)
                        shell = await sim.ShellClient.open(http, started)
                        await shell.expect(sim.PROMPT)
                        echoed: list[bytes] = []
                        shell.on_output = echoed.append
                        shells.append((shell, echoed))
                    for key in KEYSTROKES:
                        for shell, _ in shells:
                            await shell.send(bytes([key]))
                    for shell, echoed in shells:
                        await shell.expect(sim.PROMPT + KEYSTROKES, timeout=30)
                        assert b"".join(echoed) == KEYSTROKES  # each once, in order, nothing else
                        await shell.close()
                assert fleet.stats.sessions == ECHO_SHELLS
                assert not fleet.stats.server_errors, fleet.stats.server_errors

        asyncio.run(run())
        _server_log_is_clean(server)
    finally:
        server.stop()

"""A fleet of idle agents against one server: what each costs, and what the server still does well.

N simulated agents (``tests/support/fleet.py``: one asyncio process speaking exactly the agent's
protocol — activations of at most 1,000 registrations, RequestManagedInstanceRoleToken, SigV4
UpdateInstanceInformation on the agent's schedule, CreateControlChannel and its WebSocket with
pings, a data channel on ``interactive_shell``) register with a fresh ``openssm server`` (SQLite),
go Online and idle. Printed beside the issue's targets:

- registered / control channel open / listed Online by ``DescribeInstanceInformation``;
- server memory per idle agent (RSS growth ÷ N), over plain HTTP and over TLS (a second server);
- server CPU with the fleet idle: measured with the schedule sped up ``--compress-time`` times,
  then scaled back to the real schedule (heartbeats every 5 min, pings every 54 s);
- ``describe-instance-information`` at 50 a page: p50/p99 per page and the full listing;
- registrations per second (and server CPU per registration);
- StartSession → first byte with one agent registered (idle) and with the whole fleet (loaded);
- with ``--open-files N``: a server whose soft open-files limit is N, and a fleet past it: how many
  answers were throttling (agents back off) and how many were server errors (there must be none);
- with ``--tracemalloc``: where the server's memory per idle agent goes, by allocation site;
- with ``--shells N`` (instead of the table): N agents with an active shell each (StartSession
  through the API, the data channel with its token and acks, an agent that echoes every input byte),
  one keystroke a second per shell, staggered: keystroke → echo p50/p99/max, server CPU (and per
  keystroke), the bench's own CPU and event-loop lag (a lagging bench, not the server, would explain
  slow echoes), beside one shell typed on alone in the same run, and p99 ÷ the 50 ms target. With
  ``--compare-src`` both servers get their fleets and shells first, then are typed on in turns for
  ``--repeat`` rounds: medians, ranges and this tree ÷ the other;
- with ``--keep DIR``: everything (each server's data directory and ``server.log``) stays in DIR.
- with ``--registrations`` (instead of the table): registration waves only. ``--agents`` agents
  register at once (64 at a time, as the table's run does: RegisterManagedInstance) and then come
  Online (their first RequestManagedInstanceRoleToken, UpdateInstanceInformation and
  CreateControlChannel with its WebSocket, all at once): registrations per second, agents Online per
  second over the whole wave, and the server's CPU per agent; with ``--compare-src`` alternating with
  that tree's server (``--repeat`` rounds), with ``--postgres`` on a fresh PostgreSQL database
  (``tests/support/postgres.py``: ``OPENSSM_TEST_POSTGRES_URL``) instead of SQLite.
- with ``--cluster N`` (instead of the table): N ``openssm server`` nodes on a fresh PostgreSQL
  database and Redis (``tests/e2e/cluster.py``), ``--agents`` agents spread over them (each shuffles
  the nodes) on the real schedule, ``--cluster-sessions`` shells opened through the survivors (both
  ends on them) and typed on, a keystroke every 0.2 s each, then the last node SIGKILLed: seconds
  until each of its agents is Online on another node (p50/p99/max, and all: by the agents, then by
  the database, none left on the dead node), whether the survivors' shells and control channels
  noticed (echoes before and after the kill, sessions ended, channels re-opened), each node's
  sockets (at most, sampled every 2 s) against the admission limit it logged, and the throttled and
  5xx answers agents saw before and after the kill.

Run: ``.venv/bin/python bench/bench_fleet.py --agents 1000`` (quick), ``--agents 10000`` (the target);
``--cluster 3 --agents 10000`` (the cluster's target).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import json
import math
import os
import pathlib
import random
import re
import resource
import signal
import ssl
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import aiohttp
import boto3

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.e2e.cluster import Node, running_cluster
from tests.e2e.harness import Server
from tests.support import fleet as sim
from tests.support.postgres import fetch_value, fresh_postgres_database
from tests.support.stats import percentile
from tests.support.tls import self_signed
from tests.support.wait import wait_until

from openssm.server.process import KEEPALIVE_SECONDS

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_bytes(pid: int) -> int:
    return int(pathlib.Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def open_sockets(pid: int) -> int:
    """The sockets a process holds (its listeners, control channels, and the HTTP keep-alive
    connections of the fleet's API client the server has not yet closed as idle)."""
    count = 0
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed since the listing was read
            count += os.readlink(fd).startswith("socket:")
    return count


# Imported by the server's interpreter at start (PYTHONPATH): traces allocations, and writes a
# tracemalloc snapshot into $BENCH_TRACEMALLOC_DIR at each SIGUSR1.
SITECUSTOMIZE = """
import os, signal, tracemalloc
if os.environ.get("BENCH_TRACEMALLOC_DIR"):
    tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1")))
    def _dump(signum, frame):
        directory = os.environ["BENCH_TRACEMALLOC_DIR"]
        path = os.path.join(directory, "snapshot-%d" % len(os.listdir(directory)))
        tracemalloc.take_snapshot().dump(path + ".tmp")
        os.rename(path + ".tmp", path)
    signal.signal(signal.SIGUSR1, _dump)
"""


async def snapshot(pid: int, directory: pathlib.Path) -> tracemalloc.Snapshot:
    """Ask the server for a tracemalloc snapshot and load it."""
    before = set(directory.glob("snapshot-*"))
    os.kill(pid, signal.SIGUSR1)
    async with asyncio.timeout(120):
        # Not the ".tmp" the server is still writing: it renames it when done.
        while not (new := {p for p in directory.glob("snapshot-*") if p.suffix != ".tmp"} - before):
            await asyncio.sleep(0.2)
    return tracemalloc.Snapshot.load(str(new.pop()))


TRACE_FRAMES = 12  # frames kept per allocation: enough to reach the OpenSSM (or aiohttp) caller


def _where(frame: tracemalloc.Frame) -> str:
    return f"{frame.filename.split('site-packages/')[-1].split('/src/')[-1]}:{frame.lineno}"


def _caller(traceback: tracemalloc.Traceback) -> str:
    """The innermost OpenSSM or aiohttp frame above the allocating line, within the task or callback
    the event loop ran (not the frames that started the loop): who asked for the memory, where the
    allocating line is a library's. The allocating line itself if there is none."""
    frames = list(traceback)  # from the oldest call to the allocation
    loop_entries = [
        i for i, f in enumerate(frames) if f.filename.endswith(("asyncio/runners.py", "uvloop/__init__.py"))
    ]
    for frame in reversed(frames[(loop_entries[-1] + 1 if loop_entries else 0) : -1]):
        if "openssm/" in frame.filename or "aiohttp/" in frame.filename:
            return _where(frame)
    return _where(frames[-1])


def allocation_report(base: tracemalloc.Snapshot, idle: tracemalloc.Snapshot, agents: int) -> list[str]:
    """Where the server's memory per idle agent goes: the biggest growths per agent, grouped by the
    whole traceback, each shown as the allocating line and the OpenSSM (or aiohttp) line above it."""
    lines = []
    for stat in idle.compare_to(base, "traceback")[:25]:
        allocated, caller = _where(stat.traceback[-1]), _caller(stat.traceback)
        lines.append(
            f"    {stat.size_diff / agents:8.0f} B/agent  {stat.count_diff / agents:6.1f} blocks/agent  "
            f"{allocated}" + (f"  <- {caller}" if caller != allocated else "")
        )
    total = sum(stat.size_diff for stat in idle.compare_to(base, "filename"))
    lines.append(f"    {total / agents:8.0f} B/agent  in all (what Python allocated and still holds)")
    return lines


def server_pid(server: Server) -> int:
    assert server.process is not None
    return server.process.proc.pid


def server_env(server_src: str | None) -> dict[str, str] | None:
    """The server's environment: this one's, or with ``server_src`` (another checkout's ``src``)
    first on its path, so that tree's server runs."""
    if server_src is None:
        return None
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [server_src, env.get("PYTHONPATH")]))
    return env


async def start_in_batches(
    fleet: sim.Fleet, batch: int, timeout: float, agents: list[sim.SimAgent] | None = None
) -> float:
    """Start the registered ``agents`` (all but the first, already online, by default) ``batch`` at
    a time, each batch once the one before is Online: seconds until all are. A whole fleet started at one
    instant is a registration wave (``--registrations`` measures those); for the idle figures the
    fleet only has to get there, and ten thousand agents retrying together on one 2-core machine
    mostly measure the simulator's own signing."""
    began = time.monotonic()
    agents = fleet.agents[1:] if agents is None else agents
    step = batch or max(1, len(agents))
    for start in range(0, len(agents), step):
        chosen = agents[start : start + step]
        fleet.start(chosen)
        await fleet.wait_online(max(1.0, timeout - (time.monotonic() - began)), chosen)
    return time.monotonic() - began


async def settle(pid: int, seconds: float = 3.0) -> int:
    """RSS after the server has been quiet for a moment."""
    await asyncio.sleep(seconds)
    return rss_bytes(pid)


async def first_byte(ssm: Any, instance_id: str, ssl_context: ssl.SSLContext | None) -> float:
    """StartSession → the first output byte of the (simulated) shell, through a data-channel client."""
    # The simulated agent is Online once it has sent its open frame; the server takes it a moment more.
    await asyncio.to_thread(
        wait_until,
        lambda: ssm.get_connection_status(Target=instance_id)["Status"] == "connected",
        f"{instance_id} connected",
        60,
    )
    began = time.perf_counter()
    response = await asyncio.to_thread(ssm.start_session, Target=instance_id)
    connector = aiohttp.TCPConnector(ssl=ssl_context if ssl_context else True)
    async with aiohttp.ClientSession(connector=connector) as http:
        shell = await sim.ShellClient.open(http, response)
        await shell.expect(sim.PROMPT)
        elapsed = time.perf_counter() - began
        await shell.close()
    await asyncio.to_thread(ssm.terminate_session, SessionId=response["SessionId"])
    return elapsed


async def first_bytes(
    ssm: Any, fleet: sim.Fleet, count: int, ssl_context: ssl.SSLContext | None
) -> list[float]:
    online = [agent for agent in fleet.agents if agent.online.is_set()]
    return [await first_byte(ssm, random.choice(online).instance_id, ssl_context) for _ in range(count)]


def describe_pages(ssm: Any, runs: int) -> tuple[list[float], list[float], int]:
    """Every page (50 a page) of the unfiltered listing, ``runs`` times: page times, listing times."""
    pages: list[float] = []
    listings: list[float] = []
    count = 0
    for _ in range(runs):
        began = time.perf_counter()
        token: str | None = None
        count = 0
        while True:
            kwargs: dict[str, Any] = {"MaxResults": 50, **({"NextToken": token} if token else {})}
            t0 = time.perf_counter()
            page = ssm.describe_instance_information(**kwargs)
            pages.append(time.perf_counter() - t0)
            count += len(page["InstanceInformationList"])
            token = page.get("NextToken")
            if not token:
                break
        listings.append(time.perf_counter() - began)
    return pages, listings, count


async def run_fleet(
    args: argparse.Namespace, root: pathlib.Path, tls: bool, server_src: str | None = None
) -> dict[str, Any]:
    """One server, one fleet: everything the table needs from this transport. ``server_src``: run
    the server from that source tree (``src`` of another checkout) instead of this one."""
    extra: tuple[str, ...] = ()
    ssl_context: ssl.SSLContext | None = None
    env = server_env(server_src) or dict(os.environ)
    if server_src is not None:
        root = root / "compared"
        root.mkdir(exist_ok=True)
    if tls:
        cert, key = self_signed(root)
        extra = ("--tls-cert", str(cert), "--tls-key", str(key))
        ssl_context = ssl.create_default_context(cafile=str(cert))
        env["AWS_CA_BUNDLE"] = str(cert)
    traces = root / "tracemalloc" if args.tracemalloc and not tls else None
    if traces is not None:
        traces.mkdir()
        (root / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
        env["BENCH_TRACEMALLOC_DIR"] = str(traces)
        env["BENCH_TRACEMALLOC_FRAMES"] = str(TRACE_FRAMES)
    server = Server(root / ("server-tls" if tls else "server"), extra_args=extra, env=env)
    if traces is not None:
        server.start_timeout = 600.0  # tracing every allocation slows the imports several times
    if tls:
        server.endpoint = server.endpoint.replace("http://", "https://")
    server.start()
    result: dict[str, Any] = {}
    try:
        pid = server_pid(server)
        ssm = server.client("ssm")
        if tls:
            ssm = boto3.client(
                "ssm",
                endpoint_url=server.endpoint,
                region_name=server.region,
                aws_access_key_id=server.admin_credentials[0],
                aws_secret_access_key=server.admin_credentials[1],
                verify=str(cert),
            )
        activations = sim.create_activations(ssm, args.agents)
        async with sim.Fleet(
            [server.endpoint], region=server.region, compress_time=args.compress_time, ssl_context=ssl_context
        ) as fleet:
            # Idle: one agent, online, then StartSession → first byte before the fleet arrives.
            await fleet.register(1, activations)
            fleet.start()
            await fleet.wait_online(60)
            if not tls and not args.compare_src:  # --compare-src measures memory alone
                result["first_byte_idle"] = await first_bytes(ssm, fleet, args.sessions, None)
            base_rss = await settle(pid)
            base_snapshot = await snapshot(pid, traces) if traces is not None else None
            cpu0 = cpu_seconds(pid)
            seconds = await fleet.register(args.agents - 1, activations)
            result["registration_seconds"] = seconds
            result["registration_cpu"] = cpu_seconds(pid) - cpu0
            try:
                result["online_seconds"] = await start_in_batches(
                    fleet, args.start_batch, args.online_timeout
                )
            except TimeoutError:
                result["online_seconds"] = None
            # Idle: every agent heartbeating and pinging on the (compressed) schedule, and the
            # server's keep-alive past, so the API connections the simulator pooled during the
            # wave are closed (a real agent's one connection, idle between heartbeats 5 min
            # apart, is closed then too): what stays is what idle agents hold.
            await asyncio.sleep(max(5.0, fleet.heartbeat_seconds / 4, KEEPALIVE_SECONDS + 2.0))
            rss = await settle(pid)
            result["sockets"] = open_sockets(pid)
            if traces is not None and base_snapshot is not None:
                idle_snapshot = await snapshot(pid, traces)
                result["allocations"] = allocation_report(base_snapshot, idle_snapshot, args.agents - 1)
            cpu1, t1 = cpu_seconds(pid), time.monotonic()
            await asyncio.sleep(args.idle_seconds)
            result["idle_cpu_fraction"] = (cpu_seconds(pid) - cpu1) / (time.monotonic() - t1)
            result["heartbeats"] = fleet.stats.heartbeats
            result["per_agent_bytes"] = (rss - base_rss) / max(1, args.agents - 1)
            result["rss"] = rss
            online, _ = await asyncio.to_thread(sim.online_from_api, ssm)
            result["online_api"] = len(online)
            result["registered"] = fleet.stats.registered
            result["control_open"] = fleet.stats.control_open
            if not tls and not args.compare_src:  # --compare-src measures memory alone
                pages, listings, count = await asyncio.to_thread(describe_pages, ssm, args.listings)
                result.update(pages=pages, listings=listings, listed=count)
                result["first_byte_loaded"] = await first_bytes(ssm, fleet, args.sessions, None)
            result["stats"] = json.loads(sim.dump(fleet.stats))
    finally:
        server.stop()
    return result


async def open_files_check(args: argparse.Namespace, root: pathlib.Path) -> dict[str, Any]:
    """A server with a soft open-files limit of ``--open-files`` and a fleet bigger than that."""
    limit = args.open_files

    def lower_limit() -> None:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))  # no raising past it either

    server = Server(root / "server-nofile", preexec=lower_limit)
    server.start()
    try:
        ssm = server.client("ssm")
        agents = int(limit * 1.5)
        activations = sim.create_activations(ssm, agents)
        async with sim.Fleet(
            [server.endpoint], region=server.region, compress_time=args.compress_time
        ) as fleet:
            await fleet.register(agents, activations)
            fleet.start()
            await asyncio.sleep(args.idle_seconds)
            return {"agents": agents, "online": fleet.online_count(), **json.loads(sim.dump(fleet.stats))}
    finally:
        server.stop()


def table(plain: dict[str, Any], tls: dict[str, Any] | None, args: argparse.Namespace) -> None:
    n = args.agents
    c = args.compress_time
    rows: list[tuple[str, str, str]] = []
    rows.append(
        (
            "registered / control channel open / Online (API)",
            f"{plain['registered']} / {plain['control_open']} / {plain['online_api']} of {n}"
            + (
                (
                    f" (all open in {plain['online_seconds']:.1f} s"
                    + (f", started {args.start_batch} at a time)" if args.start_batch else ")")
                )
                if plain["online_seconds"]
                else " (NOT all)"
            ),
            "all",
        )
    )
    rows.append(
        ("server memory per idle agent, plain HTTP", f"{plain['per_agent_bytes'] / 1024:.1f} KiB", "≤ 20 KiB")
    )
    if tls:
        rows.append(("the same over TLS", f"{tls['per_agent_bytes'] / 1024:.1f} KiB", "≤ 40 KiB"))
    # Besides each agent's control channel, the fleet's pooled API connections still open: at a
    # compressed schedule there are more of them than real agents would keep.
    rows.append(
        (
            "server sockets per agent, at that measurement",
            f"{plain['sockets'] / n:.2f}" + (f" (TLS: {tls['sockets'] / n:.2f})" if tls else ""),
            "",
        )
    )
    cpu = plain["idle_cpu_fraction"]
    rows.append(
        (
            "server CPU, idle fleet, real schedule",
            f"{cpu / c * 100:.1f} % of a core ({cpu * 100:.0f} % at {c:g}x speed)",
            "≤ 10 % at 10,000",
        )
    )
    pages, listings = plain["pages"], plain["listings"]
    rows.append(
        (
            "describe-instance-information, 50 a page",
            f"p50 {statistics.median(pages) * 1000:.0f} ms, p99 {percentile(pages, 0.99) * 1000:.0f} ms; "
            f"full listing ({plain['listed']}) {statistics.median(listings):.2f} s",
            "p99 ≤ 100 ms; listing ≤ 10 s",
        )
    )
    rate = (n - 1) / plain["registration_seconds"]
    rows.append(
        (
            "registrations per second",
            f"{rate:.0f} ({plain['registration_cpu'] / (n - 1) * 1000:.1f} ms server CPU each)",
            "≥ 100",
        )
    )
    idle, loaded = plain["first_byte_idle"], plain["first_byte_loaded"]
    rows.append(
        (
            "StartSession → first byte, loaded ÷ idle",
            f"{statistics.median(loaded) / statistics.median(idle):.2f}x "
            f"({statistics.median(loaded) * 1000:.0f} ms ÷ {statistics.median(idle) * 1000:.0f} ms)",
            "≈ 1x",
        )
    )
    errors = sum(plain["stats"]["server_errors"].values())
    rows.append(
        (
            "server errors (5xx) seen by agents / throttled answers",
            f"{errors} / {plain['stats']['throttled']}",
            "0 / any",
        )
    )
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"\nFleet of {n} simulated agents, one server on SQLite (schedule x{c:g} while measuring)")
    print(f"  {'figure':<{width}}  {'measured':<{vwidth}}  target")
    for name, value, target in rows:
        print(f"  {name:<{width}}  {value:<{vwidth}}  {target}")
    if plain.get("allocations"):
        print(
            "\n  server memory per idle agent by allocation site (tracemalloc; its own overhead inflates RSS):"
        )
        print("\n".join(plain["allocations"]))
    if plain["stats"]["server_errors"]:
        print("  server errors:", plain["stats"]["server_errors"])


async def compare(args: argparse.Namespace, root: pathlib.Path) -> None:
    """Server memory per idle agent, this tree's server against ``--compare-src``'s, in alternating
    rounds (plain HTTP, then TLS unless ``--no-tls``): medians, ranges and the ratio."""
    transports = [False] if args.no_tls else [False, True]
    figures: dict[tuple[str, bool], list[float]] = {}
    for index in range(args.repeat):
        for tls in transports:
            for name, src in (("compared", args.compare_src), ("this", None)):
                run_root = root / f"{name}-{'tls' if tls else 'plain'}-{index}"
                run_root.mkdir()
                result = await run_fleet(args, run_root, tls=tls, server_src=src)
                figures.setdefault((name, tls), []).append(result["per_agent_bytes"] / 1024)
                print(
                    f"  round {index + 1}: {name} server, {'TLS' if tls else 'plain'}: "
                    f"{figures[name, tls][-1]:.1f} KiB per idle agent",
                    flush=True,
                )
                if result.get("allocations"):  # --tracemalloc: where it goes, by allocation site
                    print("\n".join(result["allocations"]), flush=True)
    print(f"\nServer memory per idle agent, {args.agents} agents, {args.repeat} rounds (median, range)")
    for tls in transports:
        before, after = figures["compared", tls], figures["this", tls]
        print(
            f"  {'TLS  ' if tls else 'plain'}  {args.compare_src}: {statistics.median(before):.1f} KiB "
            f"({min(before):.1f} to {max(before):.1f});  this tree: {statistics.median(after):.1f} KiB "
            f"({min(after):.1f} to {max(after):.1f});  ratio {statistics.median(after) / statistics.median(before):.2f}x"
        )


ECHO_TARGET_SECONDS = 0.050  # issue 16: echo p99 ≤ 50 ms with 1,000 active shells


class EchoProbe:
    """Keystroke → echo times of one shell: each keystroke's byte and send time, matched in order
    against the echoed bytes (a byte out of order or never sent counts as wrong)."""

    def __init__(self) -> None:
        self.pending: collections.deque[tuple[int, float]] = collections.deque()
        self.latencies: list[float] = []
        self.wrong = 0
        self.closed = False  # its session ended while being typed on

    def sent(self, key: int) -> None:
        self.pending.append((key, time.perf_counter()))

    def on_output(self, data: bytes) -> None:
        now = time.perf_counter()
        for byte in data:
            if self.pending and self.pending[0][0] == byte:
                self.latencies.append(now - self.pending.popleft()[1])
            else:
                self.wrong += 1


async def open_shell(
    ssm: Any,
    http: aiohttp.ClientSession,
    instance_id: str,
    gate: asyncio.Semaphore,
    retries: collections.Counter[str],
) -> tuple[sim.ShellClient, EchoProbe]:
    """StartSession (boto3: SigV4, as the CLI) and the data channel, up to its prompt; again, with
    a new session, if the agent was not connected or the session ended before its prompt (a
    server on a loaded machine may say so: counted by reason in ``retries``)."""
    async with gate:
        for attempt in range(60):
            try:
                started = await asyncio.to_thread(ssm.start_session, Target=instance_id)
                shell = await sim.ShellClient.open(http, started)
            except ssm.exceptions.TargetNotConnected:
                retries["TargetNotConnected"] += 1
                if attempt == 59:
                    raise
                await asyncio.sleep(2)  # its control channel dropped: it re-dials
                continue
            try:
                await shell.expect(sim.PROMPT, timeout=120)
                break
            except (ConnectionError, TimeoutError) as exc:
                retries[type(exc).__name__] += 1
                await shell.close()
                if attempt == 59:
                    raise
    probe = EchoProbe()
    shell.on_output = probe.on_output
    return shell, probe


async def type_keys(
    shells: list[tuple[sim.ShellClient, EchoProbe]], seconds: float, interval: float = 1.0
) -> float:
    """One keystroke every ``interval`` seconds on every shell, staggered evenly over the interval,
    for ``seconds``; then until every echo is back (or 10 s: those still out are counted "late").
    Returns the seconds of typing."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    keys = b"abcdefghijklmnopqrstuvwxyz"

    async def typist(index: int, shell: sim.ShellClient, probe: EchoProbe) -> None:
        offset = index / len(shells)
        for n in range(int(seconds / interval)):
            await asyncio.sleep(max(0.0, began + (offset + n) * interval - loop.time()))
            key = keys[(index + n) % len(keys)]
            probe.sent(key)
            try:
                await shell.send(bytes([key]))
            except (ConnectionError, aiohttp.ClientError):
                probe.pending.pop()
                probe.closed = True  # the session ended under it (counted, not timed)
                return

    await asyncio.gather(*(typist(i, shell, probe) for i, (shell, probe) in enumerate(shells)))
    typed = loop.time() - began
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(10):
            while any(probe.pending for _, probe in shells):
                await asyncio.sleep(0.05)
    return typed


def echo_figures(shells: list[tuple[sim.ShellClient, EchoProbe]]) -> dict[str, Any]:
    latencies = [value for _, probe in shells for value in probe.latencies]
    return {
        "shells": len(shells),
        "echoes": len(latencies),
        "late": sum(len(probe.pending) for _, probe in shells),
        "wrong": sum(probe.wrong for _, probe in shells),
        "closed": sum(probe.closed for _, probe in shells),
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": percentile(latencies, 0.99) if latencies else float("nan"),
        "max": max(latencies, default=float("nan")),
    }


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Shell = tuple[sim.ShellClient, EchoProbe]


@dataclasses.dataclass
class ShellServer:
    """One server with its fleet: every agent with an open shell, the first one typed on alone."""

    name: str
    pid: int
    fleet: sim.Fleet
    shells: list[Shell]
    open_seconds: float
    retries: collections.Counter[str]  # StartSession tried again, by reason


async def open_shell_server(
    args: argparse.Namespace, root: pathlib.Path, stack: contextlib.AsyncExitStack, name: str, src: str | None
) -> ShellServer:
    """A fresh server (this tree's, or ``src``'s), N agents on it (the real schedule), Online, and
    an open shell on each."""
    server = Server(root / f"server-shells-{name}", env=server_env(src))
    server.start()
    stack.callback(server.stop)
    ssm = server.client("ssm")
    activations = sim.create_activations(ssm, args.shells)
    fleet = await stack.enter_async_context(sim.Fleet([server.endpoint], region=server.region))
    await fleet.register(args.shells, activations)
    fleet.start()
    await fleet.wait_online(args.online_timeout)
    await asyncio.to_thread(
        wait_until, lambda: len(sim.online_from_api(ssm)[0]) >= args.shells, "every agent Online", 120
    )
    http = await stack.enter_async_context(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
    gate = asyncio.Semaphore(8)
    began = time.monotonic()
    retries: collections.Counter[str] = collections.Counter()
    shells = list(
        await asyncio.gather(*(open_shell(ssm, http, a.instance_id, gate, retries) for a in fleet.agents))
    )
    opened = time.monotonic() - began
    stack.push_async_callback(
        lambda: asyncio.gather(*(shell.close() for shell, _ in shells), return_exceptions=True)
    )
    return ShellServer(name, server_pid(server), fleet, shells, opened, retries)


async def loop_lags(lags: list[float], period: float = 0.01) -> None:
    """How late this process's event loop wakes (its own load, not the server's), until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + period
        await asyncio.sleep(period)
        lags.append(loop.time() - due)


async def typing_round(setup: ShellServer, shells: list[Shell], seconds: float) -> dict[str, Any]:
    """Type on ``shells`` (the others stay open and quiet) and measure echo, CPU and the bench's lag."""
    for _, probe in setup.shells:
        probe.latencies.clear()
    print(
        f"typing on {len(shells)} shells for {seconds:g} s (server pid {setup.pid})",
        file=sys.stderr,
        flush=True,
    )
    lags: list[float] = []
    monitor = asyncio.create_task(loop_lags(lags))
    cpu0, own0, t0 = cpu_seconds(setup.pid), own_cpu_seconds(), time.monotonic()
    typed = await type_keys(shells, seconds)
    elapsed = time.monotonic() - t0
    monitor.cancel()
    return {
        **echo_figures(shells),
        "server_cpu": (cpu_seconds(setup.pid) - cpu0) / elapsed,
        "bench_cpu": (own_cpu_seconds() - own0) / elapsed,
        "bench_lag_p99": percentile(lags, 0.99) if lags else float("nan"),
        "keystrokes_per_second": len(shells) * int(seconds) / typed,
    }


async def shells_run(args: argparse.Namespace, root: pathlib.Path) -> None:
    """``--shells N``: N agents, one active shell each, one keystroke a second per shell; and one
    shell typed on alone (the others open and quiet), on the same server in the same run. With
    ``--compare-src``, a second server from that tree with its own N agents and shells, both set
    up first, then typed on in alternating rounds (``--repeat``) so that both see the same load."""
    sources = [("this", None)] if not args.compare_src else [("compared", args.compare_src), ("this", None)]
    rounds: dict[str, list[dict[str, dict[str, Any]]]] = {name: [] for name, _ in sources}
    async with contextlib.AsyncExitStack() as stack:
        setups = [await open_shell_server(args, root, stack, name, src) for name, src in sources]
        for index in range(args.repeat):
            for setup in setups:
                figures = {
                    "idle": await typing_round(setup, setup.shells[:1], min(args.shell_seconds, 10.0)),
                    "loaded": await typing_round(setup, setup.shells, args.shell_seconds),
                }
                rounds[setup.name].append(figures)
                shells_table(setup, figures, args, f"round {index + 1}, {setup.name} server")
    if args.compare_src:
        compare_shells(rounds, args)


def shells_table(setup: ShellServer, figures: dict[str, Any], args: argparse.Namespace, title: str) -> None:
    print(
        f"\n{title}: echo, one keystroke a second per shell for {args.shell_seconds:g} s, one server on "
        f"SQLite (plain HTTP); {len(setup.shells)} shells opened in {setup.open_seconds:.1f} s; "
        f"server errors: {dict(setup.fleet.stats.server_errors) or 0}; shells ended while typed on: "
        f"{figures['loaded']['closed']}; shells opened again: "
        f"{dict(setup.retries) or 0}"
    )
    print(
        f"  {'shells':>6}  {'echoes':>7}  {'late':>4}  {'wrong':>5}  {'p50':>8}  {'p99':>8}  {'max':>8}"
        f"  {'server CPU':>10}  {'bench CPU':>9}  {'bench lag p99':>13}  p99 ÷ 50 ms"
    )
    for name in ("idle", "loaded"):
        f = figures[name]
        print(
            f"  {f['shells']:>6}  {f['echoes']:>7}  {f['late']:>4}  {f['wrong']:>5}"
            f"  {f['p50'] * 1000:>5.1f} ms  {f['p99'] * 1000:>5.1f} ms  {f['max'] * 1000:>5.1f} ms"
            f"  {f['server_cpu'] * 100:>8.0f} %  {f['bench_cpu'] * 100:>7.0f} %"
            f"  {f['bench_lag_p99'] * 1000:>10.1f} ms  {f['p99'] / ECHO_TARGET_SECONDS:.2f}x",
            flush=True,
        )
    idle, loaded = figures["idle"], figures["loaded"]
    print(
        f"  loaded ÷ idle: p50 {loaded['p50'] / idle['p50']:.2f}x, p99 {loaded['p99'] / idle['p99']:.2f}x;"
        f"  server CPU per keystroke {cpu_per_key(figures) * 1000:.2f} ms; target p99 ≤ 50 ms at 1,000 shells",
        flush=True,
    )


def cpu_per_key(figures: dict[str, Any]) -> float:
    """Server CPU seconds per keystroke (its echo and both acks), beyond the server's background
    work: loaded CPU minus the one-shell round's, over the keystrokes the loaded round added."""
    loaded, idle = figures["loaded"], figures["idle"]
    added = loaded["keystrokes_per_second"] - idle["keystrokes_per_second"]
    return float((loaded["server_cpu"] - idle["server_cpu"]) / added) if added > 0 else float("nan")


def compare_shells(rounds: dict[str, list[dict[str, dict[str, Any]]]], args: argparse.Namespace) -> None:
    """Medians and ranges over the rounds, loaded, and this tree ÷ ``--compare-src``."""
    print(f"\nLoaded, {args.shells} shells, {args.repeat} rounds each (median, range)")
    measures: tuple[tuple[str, Callable[[dict[str, Any]], float], str], ...] = (
        ("echo p50", lambda f: f["p50"] * 1000, "ms"),
        ("echo p99", lambda f: f["p99"] * 1000, "ms"),
        ("server CPU", lambda f: f["server_cpu"] * 100, "%"),
    )
    for label, measure, unit in measures:
        values = {name: [measure(r["loaded"]) for r in rounds[name]] for name in rounds}
        summary(label, values, unit, args)
    per_key = {name: [cpu_per_key(r) * 1000 for r in rounds[name]] for name in rounds}
    summary("server CPU per keystroke (above the one-shell round)", per_key, "ms", args)


def summary(label: str, values: dict[str, list[float]], unit: str, args: argparse.Namespace) -> None:
    """One line: both trees' median and range, and this tree ÷ the other."""
    before, after = values["compared"], values["this"]
    print(
        f"  {label}: {args.compare_src} {statistics.median(before):.2f} {unit} ({min(before):.2f} to "
        f"{max(before):.2f}); this tree {statistics.median(after):.2f} {unit} ({min(after):.2f} to "
        f"{max(after):.2f}); ratio {statistics.median(after) / statistics.median(before):.2f}x"
    )


async def registration_wave(
    args: argparse.Namespace, root: pathlib.Path, server_src: str | None, database_url: str | None
) -> dict[str, float]:
    """One fresh server, ``--agents`` agents registering at once and then coming Online."""
    env = dict(os.environ)
    if server_src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [server_src, env.get("PYTHONPATH")]))
    extra = ("--database-url", database_url) if database_url else ()
    server = Server(root, extra_args=extra, env=env)
    server.start()
    try:
        pid = server_pid(server)
        activations = sim.create_activations(server.client("ssm"), args.agents)
        # The real schedule: the wave's heartbeats start minutes later, out of the measurement.
        async with sim.Fleet([server.endpoint], region=server.region) as fleet:
            cpu0 = cpu_seconds(pid)
            registering = await fleet.register(args.agents, activations)
            cpu1 = cpu_seconds(pid)
            fleet.start()
            try:
                online = await fleet.wait_online(args.online_timeout)
            except TimeoutError:  # counted as not Online: the figure says how many made it
                online = math.inf
            cpu2 = cpu_seconds(pid)
            errors = sum(fleet.stats.server_errors.values())
            throttled = fleet.stats.throttled
            made_it = fleet.online_count()
    finally:
        server.stop()
    n = args.agents
    return {
        "registrations_per_second": n / registering,
        "register_cpu_ms": (cpu1 - cpu0) / n * 1000,
        "online_per_second": n / (registering + online),
        "agent_cpu_ms": (cpu2 - cpu0) / n * 1000,
        "server_errors": errors,
        "throttled": throttled,
        "online": made_it,
    }


async def registrations(args: argparse.Namespace, root: pathlib.Path) -> None:
    """``--registrations``: waves on this tree's server (and ``--compare-src``'s, alternating)."""
    trees = [("this", None)] if not args.compare_src else [("compared", args.compare_src), ("this", None)]
    figures: dict[str, list[dict[str, float]]] = {}
    for index in range(args.repeat):
        for name, src in trees:
            run_root = root / f"{name}-{index}"
            with contextlib.ExitStack() as stack:
                url = stack.enter_context(fresh_postgres_database()) if args.postgres else None
                result = await registration_wave(args, run_root, src, url)
            figures.setdefault(name, []).append(result)
            print(
                f"  round {index + 1}: {name} server: {result['registrations_per_second']:.0f} registrations/s "
                f"({result['register_cpu_ms']:.1f} ms server CPU each); all Online at "
                f"{result['online_per_second']:.0f} agents/s ({result['agent_cpu_ms']:.1f} ms server CPU "
                f"each, registration included; {result['online']:.0f} of {args.agents} Online within "
                f"--online-timeout); server errors {result['server_errors']:.0f}, throttled answers "
                f"{result['throttled']:.0f}",
                flush=True,
            )
    database = "PostgreSQL" if args.postgres else "SQLite"
    print(f"\n{args.agents} agents a wave, {database}, {args.repeat} rounds (median, range)")
    for key, what in (
        ("registrations_per_second", "registrations/s"),
        ("online_per_second", "agents Online/s (the whole wave)"),
        ("agent_cpu_ms", "server CPU ms per agent (whole wave)"),
    ):
        cells = []
        for name, _ in trees:
            values = [r[key] for r in figures[name]]
            cells.append(f"{name}: {statistics.median(values):.1f} ({min(values):.1f} to {max(values):.1f})")
        if len(trees) == 2:
            before = statistics.median(r[key] for r in figures["compared"])
            after = statistics.median(r[key] for r in figures["this"])
            cells.append(f"ratio {after / before:.2f}x" if before else "ratio: none (compared: 0)")
        print(f"  {what:40s} " + ";  ".join(cells))


ROOM_FOR = re.compile(r"room for about (\d+) agents")
REHOME_TARGET_SECONDS = 30.0  # issue 16: a killed node's agents Online on the others within 30 s
KEY_SECONDS = 0.2  # one keystroke every 0.2 s on each survivor's shell while the node dies


@dataclasses.dataclass
class NodeLoad:
    """One node's figures, sampled through the run: sockets held (at most), its admission limit."""

    node: Node
    limit: int
    sockets_max: int = 0
    sockets_now: int = 0
    rss: int = 0
    cpu: float = 0.0  # CPU seconds, at the last sample
    cpu_at_kill: float = 0.0
    cpu_rehome: float = 0.0  # CPU seconds from the kill until every agent was back

    def sample(self) -> None:
        if self.node.process is None or not self.node.process.alive():
            return
        with contextlib.suppress(OSError):  # a node killed between the check and the read
            pid = server_pid(self.node)
            self.sockets_now = open_sockets(pid)
            self.sockets_max = max(self.sockets_max, self.sockets_now)
            self.rss = rss_bytes(pid)
            self.cpu = cpu_seconds(pid)


def admission_limit(node: Node) -> int:
    """The connections a node admits new agents up to, as it says at start (``server.admission``)."""
    assert node.process is not None
    found = ROOM_FOR.search(node.process.log())
    assert found, f"{node.node_id} did not say its admission limit"
    return int(found.group(1))


async def sample_nodes(loads: list[NodeLoad], period: float = 2.0) -> None:
    while True:
        for load in loads:
            await asyncio.to_thread(load.sample)
        await asyncio.sleep(period)


def control_rows(node: Node, node_id: str) -> int:
    """Registered instances whose control channel the database has on ``node_id``."""
    value = fetch_value(
        node.database_url,
        "SELECT count(*) FROM instances WHERE control_node_id = $1 AND NOT deregistered",
        node_id,
    )
    assert isinstance(value, int)
    return value


def spread(fleet: sim.Fleet, nodes: list[Node]) -> dict[str, int]:
    """Agents Online per node (their control channel's node), by node id."""
    by_endpoint = collections.Counter(a.control_node for a in fleet.agents if a.online.is_set())
    return {node.node_id: by_endpoint[node.endpoint] for node in nodes}


async def survivor_shells(
    nodes: list[Node], fleet: sim.Fleet, count: int, http: aiohttp.ClientSession
) -> list[Shell]:
    """``count`` shells on agents whose control channel is on a survivor, each started through that
    survivor's API (its data channel is on that node too): both ends on nodes that live on."""
    shells: list[Shell] = []
    gate = asyncio.Semaphore(8)
    retries: collections.Counter[str] = collections.Counter()
    for index in range(count):
        node = nodes[index % len(nodes)]
        # Not an agent whose API calls have moved to another node while its control channel stayed
        # (as the real agent's do after an unanswered call): its data channel would go to that node,
        # which refuses it ("served by another node"), a failure unrelated to the killed node.
        agent = next(
            a
            for a in fleet.agents[index:]
            if a.online.is_set() and a.control_node == a.endpoint == node.endpoint and not a.sessions
        )
        shells.append(await open_shell(node.client("ssm"), http, agent.instance_id, gate, retries))
    return shells


@dataclasses.dataclass
class Rehome:
    """The killed node's agents after the kill: seconds until each was Online on another node."""

    doomed: int
    seconds: list[float]  # per agent, for those back
    all_agents: float | None  # until every one was back (agent side)
    database: float | None  # until the database had none on the killed node, and every agent back
    kept_reconnected: int  # survivors' agents whose control channel was opened again after the kill
    stuck: list[str]  # the killed node's agents not back: what each one's control channel looks like


async def watch_rehome(
    fleet: sim.Fleet, victim: Node, survivor: Node, killed: float, timeout: float
) -> Rehome:
    doomed = [a for a in fleet.agents if a.control_node == victim.endpoint]
    kept = [a for a in fleet.agents if a.control_node != victim.endpoint]
    kept_since = {a.index: a.online_at for a in kept}

    def back(agent: sim.SimAgent) -> bool:
        return agent.online.is_set() and agent.control_node != victim.endpoint and agent.online_at > killed

    all_agents: float | None = None
    database: float | None = None
    deadline = killed + timeout
    while time.monotonic() < deadline:
        if all_agents is None and all(back(a) for a in doomed):
            all_agents = max((a.online_at for a in doomed), default=killed) - killed
        if all_agents is not None:
            left = await asyncio.to_thread(control_rows, survivor, victim.node_id)
            online = fleet.online_count() == len(fleet.agents)
            if left == 0 and online:
                database = time.monotonic() - killed
                break
        await asyncio.sleep(0.2)
    return Rehome(
        doomed=len(doomed),
        seconds=sorted(a.online_at - killed for a in doomed if back(a)),
        all_agents=all_agents,
        database=database,
        kept_reconnected=sum(1 for a in kept if a.online_at != kept_since[a.index]),
        stuck=[stuck_state(a, killed) for a in doomed if not back(a)],
    )


def stuck_state(agent: sim.SimAgent, killed: float) -> str:
    """An agent of the killed node that is not back: where its control channel stands."""
    ws = agent.ws
    channel = "none" if ws is None else f"closed={ws.closed} exception={ws.exception()!r}"
    return (
        f"{agent.instance_id}: online={agent.online.is_set()} on {agent.control_node} since "
        f"{agent.online_at - killed:+.1f} s; its WebSocket {channel}"
    )


def typed_before(shells: list[Shell]) -> list[int]:
    return [len(probe.latencies) for _, probe in shells]


async def cluster_run(args: argparse.Namespace, root: pathlib.Path) -> None:
    """``--cluster N``: N nodes on a fresh PostgreSQL database and Redis, ``--agents`` agents spread
    over them, shells typed on through the survivors, one node SIGKILLed: see ``cluster_table``."""
    with running_cluster(root, size=args.cluster) as nodes:
        victim, survivors = nodes[-1], nodes[:-1]
        loads = [NodeLoad(node, admission_limit(node)) for node in nodes]
        ssm = survivors[0].client("ssm")
        activations = sim.create_activations(ssm, args.agents)
        sampler = asyncio.create_task(sample_nodes(loads))
        # The real schedule (heartbeats every 5 min): a failover, not a heartbeat storm.
        async with sim.Fleet([node.endpoint for node in nodes], region=victim.region) as fleet:
            began = time.monotonic()
            await fleet.register(args.agents, activations)
            registered = time.monotonic() - began
            try:
                online_seconds: float | None = await start_in_batches(
                    fleet, args.start_batch, args.online_timeout, fleet.agents
                )
            except TimeoutError:
                online_seconds = None
            before = spread(fleet, nodes)
            print(f"registered in {registered:.0f} s, Online in {online_seconds} s: {before}", flush=True)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
                shells = await survivor_shells(survivors, fleet, args.cluster_sessions, http)
                typing = asyncio.create_task(
                    type_keys(shells, args.cluster_typing + REHOME_TARGET_SECONDS + 10, KEY_SECONDS)
                )
                await asyncio.sleep(args.cluster_typing)
                errors_before = sum(fleet.stats.server_errors.values())
                throttled_before = fleet.stats.throttled
                echoed_before = typed_before(shells)
                for load in loads:
                    load.sample()
                    load.cpu_at_kill = load.cpu
                victim.kill()
                killed = time.monotonic()
                print(f"killed {victim.node_id} ({before[victim.node_id]} agents)", flush=True)
                rehome = await watch_rehome(fleet, victim, survivors[0], killed, args.rehome_timeout)
                for load in loads:
                    load.sample()
                    load.cpu_rehome = load.cpu - load.cpu_at_kill
                await typing  # to its end, and the last keystrokes' echoes
                after = spread(fleet, nodes)
                sampler.cancel()
                cluster_table(
                    args,
                    ClusterFigures(
                        nodes=nodes,
                        victim=victim,
                        loads=loads,
                        before=before,
                        after=after,
                        rehome=rehome,
                        shells=shells,
                        echoed_before=echoed_before,
                        errors=(errors_before, sum(fleet.stats.server_errors.values())),
                        throttled=(throttled_before, fleet.stats.throttled),
                        stats=fleet.stats,
                        registered=registered,
                        online=online_seconds,
                    ),
                )
                for shell, _ in shells:
                    await shell.close()


@dataclasses.dataclass
class ClusterFigures:
    nodes: list[Node]
    victim: Node
    loads: list[NodeLoad]
    before: dict[str, int]  # agents Online per node before the kill
    after: dict[str, int]  # and after
    rehome: Rehome
    shells: list[Shell]
    echoed_before: list[int]  # echoes each shell had back when the node was killed
    errors: tuple[int, int]  # 5xx answers seen by agents: at the kill, at the end
    throttled: tuple[int, int]  # throttling answers: at the kill, at the end
    stats: sim.FleetStats
    registered: float
    online: float | None


def seconds_text(value: float | None) -> str:
    return "NOT within --rehome-timeout" if value is None else f"{value:.1f} s"


def cluster_table(args: argparse.Namespace, f: ClusterFigures) -> None:
    load = os.getloadavg()
    print(
        f"\n{args.cluster}-node cluster (PostgreSQL + Redis), {args.agents} simulated agents (real schedule), "
        f"{f.victim.node_id} SIGKILLed; registered in {f.registered:.0f} s, all Online in "
        f"{seconds_text(f.online)}; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min)"
    )
    print(
        f"  {'node':<16}  {'agents before':>13}  {'after':>6}  {'sockets max / admission limit':>30}  {'RSS':>8}"
    )
    for node_load in f.loads:
        node = node_load.node
        past = " PAST IT" if node_load.sockets_max > node_load.limit else ""
        dead = " (killed)" if node is f.victim else ""
        print(
            f"  {node.node_id:<16}  {f.before[node.node_id]:>13}  {f.after[node.node_id]:>6}  "
            f"{node_load.sockets_max:>14} / {node_load.limit:<13}{past}  "
            f"{node_load.rss / 2**20:>5.0f} MiB{dead}"
        )
    r = f.rehome
    times = r.seconds
    per_agent = (
        f"p50 {statistics.median(times):.1f} s, p99 {percentile(times, 0.99):.1f} s, max {max(times):.1f} s"
        if times
        else "none back"
    )
    ok = r.database is not None and r.database <= REHOME_TARGET_SECONDS
    print(
        f"  killed node's agents Online on the others: {len(times)} of {r.doomed}; per agent {per_agent}; "
        f"all (agent side) {seconds_text(r.all_agents)}; all (database: none left on the killed node, "
        f"every agent Online) {seconds_text(r.database)}; target ≤ {REHOME_TARGET_SECONDS:.0f} s: "
        f"{'met' if ok else 'MISSED'}"
    )
    for state in r.stuck[:5]:
        print(f"  not back: {state}")
    print(f"  survivors' agents whose control channel was opened again after the kill: {r.kept_reconnected}")
    rehome_cpu = sum(load.cpu_rehome for load in f.loads if load.node is not f.victim)
    print(
        f"  survivors' CPU from the kill until every agent was back: {rehome_cpu:.1f} s "
        f"({rehome_cpu / max(1, r.doomed) * 1000:.0f} ms per re-homed agent, shells and heartbeats included)"
    )
    echoed = [len(probe.latencies) for _, probe in f.shells]
    after_kill = [
        latency
        for (_, probe), n in zip(f.shells, f.echoed_before, strict=True)
        for latency in probe.latencies[n:]
    ]
    figures = echo_figures(f.shells)
    print(
        f"  sessions on the survivors: {len(f.shells)} shells, a keystroke every {KEY_SECONDS:g} s each: "
        f"echoes before the kill {sum(f.echoed_before)}, after {sum(echoed) - sum(f.echoed_before)}; "
        f"not echoed {figures['late']}, wrong {figures['wrong']}, sessions ended {figures['closed']}; "
        f"echo after the kill p50 {statistics.median(after_kill) * 1000 if after_kill else float('nan'):.0f} ms, "
        f"max {max(after_kill, default=float('nan')) * 1000:.0f} ms"
    )
    print(
        f"  seen by agents, before the kill / after: throttled answers {f.throttled[0]} / "
        f"{f.throttled[1] - f.throttled[0]}; 5xx {f.errors[0]} / {f.errors[1] - f.errors[0]}"
        + (f" {dict(f.stats.server_errors)}" if f.errors[1] else "")
    )
    print(f"  unreachable (by cause): {dict(f.stats.unreachable)}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument(
        "--compress-time", type=float, default=10.0, help="run the agents' schedule this many times faster"
    )
    parser.add_argument("--idle-seconds", type=float, default=30.0, help="how long to measure the idle fleet")
    parser.add_argument("--sessions", type=int, default=5, help="StartSession samples, idle and loaded")
    parser.add_argument("--listings", type=int, default=3, help="full describe-instance-information listings")
    parser.add_argument("--online-timeout", type=float, default=600.0)
    parser.add_argument(
        "--start-batch",
        type=int,
        default=1000,
        help="for the table: start the registered agents this many at a time, each batch once the one "
        "before is Online (0: all at once)",
    )
    parser.add_argument("--no-tls", action="store_true", help="skip the TLS run")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="trace the plain server's allocations (slows it down)"
    )
    parser.add_argument(
        "--open-files", type=int, default=0, help="also run a server with this soft open-files limit"
    )
    parser.add_argument(
        "--compare-src",
        help="the src directory of another checkout (e.g. main's, from `git archive`): its server's "
        "memory per idle agent is measured too, alternating with this one's, and compared (with "
        "--shells: its echo and CPU per keystroke, both servers up at once, typed on in turns; with "
        "--registrations: its registration waves)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of both servers with --compare-src (with --shells: of typing)",
    )
    parser.add_argument(
        "--shells",
        type=int,
        default=0,
        help="instead of the table: N agents with an active shell each, one keystroke a second per "
        "shell; echo p50/p99/max and server CPU, beside one shell alone (target p99 ≤ 50 ms at 1,000)",
    )
    parser.add_argument("--shell-seconds", type=float, default=30.0, help="with --shells: seconds of typing")
    parser.add_argument(
        "--keep",
        type=pathlib.Path,
        help="run in this (new) directory and keep it: each server's data directory and server.log",
    )
    parser.add_argument(
        "--registrations",
        action="store_true",
        help="instead of the table: registration waves of --agents agents (registrations/s, Online/s, "
        "server CPU per agent); with --compare-src alternating with that tree's server, --repeat rounds",
    )
    parser.add_argument(
        "--postgres", action="store_true", help="with --registrations: a fresh PostgreSQL database a server"
    )
    parser.add_argument(
        "--cluster",
        type=int,
        default=0,
        help="instead of the table: this many nodes on a fresh PostgreSQL database and Redis, --agents "
        "agents spread over them, shells typed on through the survivors, the last node SIGKILLed: "
        "seconds until its agents are Online on the others, the survivors' sessions, each node's "
        "sockets against its admission limit, throttled and 5xx answers",
    )
    parser.add_argument(
        "--cluster-sessions", type=int, default=20, help="with --cluster: shells on the survivors"
    )
    parser.add_argument(
        "--cluster-typing", type=float, default=5.0, help="with --cluster: seconds typed before the kill"
    )
    parser.add_argument(
        "--rehome-timeout",
        type=float,
        default=120.0,
        help="with --cluster: how long to wait for the killed node's agents",
    )
    args = parser.parse_args()
    sim.raise_open_files_limit()
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True)
            root = args.keep
        else:
            root = pathlib.Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-fleet-")))
        if args.cluster:
            await cluster_run(args, root)
            return
        if args.shells:
            await shells_run(args, root)
            return
        if args.registrations:
            await registrations(args, root)
            return
        if args.compare_src:
            await compare(args, root)
            return
        plain = await run_fleet(args, root, tls=False)
        tls = None if args.no_tls else await run_fleet(args, root, tls=True)
        table(plain, tls, args)
        if args.open_files:
            outcome = await open_files_check(args, root)
            print(f"\nServer with a soft open-files limit of {args.open_files}: {json.dumps(outcome)}")


if __name__ == "__main__":
    asyncio.run(main())

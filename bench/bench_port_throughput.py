"""Port-forwarding throughput, measured side by side in one run.

Paths, all ending at the same checksum server (tests/e2e/forwarding.py) with the same client code:

1. direct loopback TCP (the baseline);
2. OpenSSM: `openssm start-session` port forward → gateway (server process) → OpenSSM agent → destination;
3. `ssh -L` through a throw-away local sshd (when OpenSSH is installed);
4. three bare Python relays in a row (`bench/bare_relay.py`): the yardstick. They copy bytes and
   nothing else, on the same event loops, so they show what any three-process Python design
   (client → gateway → agent) could reach here at best;
5. three framed relays in a row (`bench/framed_relay.py`, in the client, gateway and agent roles):
   the bare relays plus exactly the framing OpenSSM's wire makes each hop do (WebSocket frames
   masked by the client and the agent, the SSM message header, smux frame headers, messages of up
   to 960 KiB), with OpenSSM's own codecs, and nothing else (no acks, sessions, smux state,
   recording). The floor for any Python design keeping AWS's framing (`--no-framed` leaves it out);
6. three `socat -b 1048576` relays in a row (the same three hops in C, doing nothing else): the
   stricter yardstick of issue 17, whose target is OpenSSM at 75 % of it or better (when socat is
   installed).

For each: one stream of SIZE bytes uploaded (client → destination) and one downloaded
(destination → client), then SIZE bytes split over N parallel connections, uploaded, then
downloaded. Every transfer is verified by SHA-256 at both ends. Ratios are against the direct
transfer, and OpenSSM's against the three socat relays.

For the record, the machine's loopback without the checksum ends: one blocking socket each way
with 1 MiB reads and writes and nothing else (`direct, raw`: no hashing, so not a path the others
can reach; it shows how much of each figure the checksum ends take).

The machine is noisy, so the paths take turns: each round runs every case on every path, one
after the other, and the best of `--repeat` rounds counts for each path and case.

For the OpenSSM, bare-relay, framed-relay and socat single-stream runs it also prints each process's CPU time
per GiB moved (user and system, from /proc; a socat relay's with the connection processes it
forked), which shows where the time goes without a profiler: on a 2-core machine the busy
processes (the checksum ends and the three in between) share the cores, so throughput is about 2
cores divided by their summed CPU time per GiB. The three socat relays' CPU per GiB over
OpenSSM's three is printed beside the throughput ratio: when the machine is loaded (or the checksum
ends are the bottleneck) the throughputs come close whatever the relays cost, and the CPU ratio
still shows it.

`--profile DIR` samples the client, server and agent processes with py-spy (pip install py-spy;
it is in the test extras) during the first round's OpenSSM single-stream runs: collapsed stacks
per process and direction in DIR, and the top functions by self time printed at the end (idle
waits included, labelled by where they wait: select, queue get).

A failed transfer (a checksum mismatch, a connection closed early) stops the bench with the path,
the case and the time it started, after the last lines of the OpenSSM processes' output.

`--tls` adds two more OpenSSM paths whose server terminates TLS (a self-signed certificate the
agent and the client trust): `OpenSSM TLS`, the server's own listener
(`openssm.transport.tls_listener`: the standard library's TLS protocol, one shared read buffer), and
`OpenSSM TLS uvloop`, the same tree's server with uvloop's TLS instead (what it used before; the
listener swapped back in by a `sitecustomize` on the server's path, nothing else changed). The
server's CPU per GiB over each is printed side by side: the cost of the listener's Python TLS on
bulk data.

`--json FILE` also writes the results (and the CPU figures) as JSON, for
`bench/compare_port_throughput.py`, which runs this bench against another git revision.

Run: `.venv/bin/python bench/bench_port_throughput.py [--size-mib 256] [--parallel 20] [--profile DIR]`
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import json
import os
import pathlib
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.e2e.forwarding import ChecksumServer, SessionProcess, checked_transfer, free_port
from tests.e2e.harness import Agent, Server, openssm_argv, wait_until
from tests.support.sshd import run_sshd, sshd_available
from tests.support.tls import self_signed

MIB = 1024 * 1024
SOCAT = "3 socat relays"
FRAMED = "3 framed relays"
RAW = "direct, raw"
TLS = "OpenSSM TLS"
TLS_UVLOOP = "OpenSSM TLS uvloop"
# On the server's path for TLS_UVLOOP: the server's TLS listener back to aiohttp's own (the event
# loop's TLS, uvloop's), which is what openssm server used before tls_listener.
UVLOOP_TLS_SITE = """
from aiohttp import web
from openssm.transport import tls_listener

tls_listener.SharedBufferTLSSite = web.TCPSite
"""


@dataclass
class Path:
    name: str
    port: int
    pids: dict[str, int]  # processes whose CPU time is reported (empty: none)
    raw: bool = False  # the raw baseline's destination, not the checksum server


@dataclass
class Result:
    path: str
    case: str
    size: int
    seconds: float
    cpu: dict[str, tuple[float, float]] | None = None  # process → (user, system) seconds per GiB

    @property
    def mib_per_s(self) -> float:
        return self.size / MIB / self.seconds


RAW_HEADER = struct.Struct("!QQ")  # upload, download bytes
RAW_BLOCK = MIB  # each read and write of the raw transfer


def _raw_receive(sock: socket.socket, count: int) -> None:
    buffer = memoryview(bytearray(RAW_BLOCK))
    while count:
        got = sock.recv_into(buffer, min(RAW_BLOCK, count))
        if not got:
            raise ConnectionError(f"connection closed with {count} bytes to come")
        count -= got


def _raw_send(sock: socket.socket, count: int) -> None:
    block = memoryview(bytes(RAW_BLOCK))
    while count:
        step = min(RAW_BLOCK, count)
        sock.sendall(block[:step])
        count -= step


class RawHandler(socketserver.BaseRequestHandler):
    """The raw baseline's destination: blocking sockets, 1 MiB reads and writes, nothing checked."""

    def handle(self) -> None:
        conn: socket.socket = self.request
        with contextlib.suppress(OSError):
            upload, download = RAW_HEADER.unpack(conn.recv(RAW_HEADER.size, socket.MSG_WAITALL))
            _raw_receive(conn, upload)
            _raw_send(conn, download)
            conn.sendall(b"k")  # done: the client's clock stops here


class RawServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    request_queue_size = 256


def raw_transfer(port: int, *, upload: int, download: int) -> float:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        sock.sendall(RAW_HEADER.pack(upload, download))
        _raw_send(sock, upload)
        _raw_receive(sock, download + 1)
    return time.perf_counter() - started


def transfer(path: Path, *, upload: int, download: int) -> float:
    if path.raw:
        return raw_transfer(path.port, upload=upload, download=download)
    return checked_transfer(path.port, upload=upload, download=download, timeout=600)


def single(path: Path, size: int, direction: str) -> float:
    if direction == "upload":
        return transfer(path, upload=size, download=0)
    return transfer(path, upload=0, download=size)


def parallel(path: Path, size: int, connections: int, direction: str) -> float:
    share = size // connections
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        jobs = [pool.submit(single, path, share, direction) for _ in range(connections)]
        for job in jobs:
            job.result()
    return time.perf_counter() - started


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process so far, with its children that have ended and been
    waited for (a socat relay forks one per connection) (Linux /proc)."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[13])) / ticks, (int(fields[12]) + int(fields[14])) / ticks


def relays_cpu(cpu: dict[str, tuple[float, float]]) -> float:
    """CPU seconds per GiB of the processes in between (all but the checksum ends)."""
    return sum(user + system for name, (user, system) in cpu.items() if name != "checksum ends")


def children_gone(pid: int) -> bool:
    return not pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().strip()


def run_single(path: Path, size: int, direction: str) -> Result:
    watched = {**path.pids, "checksum ends": os.getpid()} if path.pids else {}
    before = {name: cpu_times(pid) for name, pid in watched.items()}
    seconds = single(path, size, direction)
    if path.name == SOCAT:  # a connection's process counts once it has ended and been reaped
        for pid in path.pids.values():
            wait_until(functools.partial(children_gone, pid), "socat's connection to end", timeout=30)
    gib = size / (1024 * MIB)
    cpu = {
        name: ((cpu_times(pid)[0] - before[name][0]) / gib, (cpu_times(pid)[1] - before[name][1]) / gib)
        for name, pid in watched.items()
    }
    return Result(path.name, f"1 stream {direction}", size, seconds, cpu or None)


def run_parallel(path: Path, size: int, connections: int, direction: str) -> Result:
    moved = size // connections * connections
    seconds = parallel(path, size, connections, direction)
    return Result(path.name, f"{connections} streams {direction}", moved, seconds)


def measure(
    paths: list[Path], size: int, connections: int, repeat: int, profiler: Profiler | None
) -> list[Result]:
    """Rounds in which every path runs every case in turn; the fastest run per path and case counts
    (the machine is shared, so the fastest run is the cleanest, and taking turns keeps a slow
    spell from landing on one path only)."""
    for path in paths:
        single(path, 4 * MIB, "upload")  # warm up: first connection, buffers, caches
    best: dict[tuple[str, str], Result] = {}

    def keep(result: Result) -> None:
        key = (result.path, result.case)
        if key not in best or result.seconds < best[key].seconds:
            best[key] = result

    for round_number in range(repeat):
        for direction in ("upload", "download"):
            for path in paths:
                profiling = profiler is not None and round_number == 0 and path.name == "OpenSSM"
                if profiling:
                    assert profiler is not None
                    profiler.start(direction)
                with naming_failures(path.name, f"1 stream {direction}"):
                    keep(run_single(path, size, direction))
                if profiling:
                    assert profiler is not None
                    profiler.stop()
        for direction in ("upload", "download"):
            for path in paths:
                with naming_failures(path.name, f"{connections} streams {direction}"):
                    keep(run_parallel(path, size, connections, direction))
    return [best[(path.name, case)] for path in paths for case in cases(connections)]


@contextlib.contextmanager
def naming_failures(path: str, case: str) -> Iterator[None]:
    """A failed transfer says which path and case it was, and when (to match with logs)."""
    started = time.strftime("%H:%M:%S")
    try:
        yield
    except Exception as exc:
        raise RuntimeError(f"{path}, {case} (started {started}): {exc}") from exc


def cases(connections: int) -> list[str]:
    return [
        "1 stream upload",
        "1 stream download",
        f"{connections} streams upload",
        f"{connections} streams download",
    ]


@contextlib.contextmanager
def openssm_forward(
    workdir: pathlib.Path,
    destination_port: int,
    tls: tuple[pathlib.Path, pathlib.Path] | None = None,
    uvloop_tls: bool = False,
) -> Iterator[tuple[int, dict[str, int]]]:
    """The OpenSSM path; over TLS with ``tls`` (certificate, key; the agent and the client trust it
    through SSL_CERT_FILE), with uvloop's TLS instead of the server's listener if ``uvloop_tls``."""
    extra: tuple[str, ...] = ()
    env: dict[str, str] | None = None
    if tls is not None:
        extra = ("--tls-cert", str(tls[0]), "--tls-key", str(tls[1]))
    if uvloop_tls:
        site = workdir / "site"
        site.mkdir(parents=True)
        (site / "sitecustomize.py").write_text(UVLOOP_TLS_SITE)
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
        )
    server = Server(workdir / "server", extra_args=extra, env=env)
    if tls is not None:
        server.endpoint = server.endpoint.replace("http://", "https://")
    server.start()
    agent = Agent(server, workdir / "agent")
    session: SessionProcess | None = None
    try:
        agent.register("bench-node")
        agent.start()
        assert agent.instance_id
        session = SessionProcess(
            openssm_argv(
                "start-session",
                "--target",
                agent.instance_id,
                "--endpoint-url",
                server.endpoint,
                "--document-name",
                "AWS-StartPortForwardingSession",
                "--parameters",
                f"portNumber={destination_port}",
            ),
            {**server.aws_env(), **({"AWS_CA_BUNDLE": str(tls[0])} if tls else {})},
        )
        (local,) = session.local_ports()
        assert server.process and agent.process
        pids = {
            "client": session.proc.pid,
            "server": server.process.proc.pid,
            "agent": agent.process.proc.pid,
        }
        yield local, pids
    except BaseException:
        # The processes' own words are the first thing to read about a failed transfer.
        for name, text in (
            ("client", session.output if session is not None else ""),
            ("agent", agent.process.log() if agent.process else ""),
            ("server", server.process.log() if server.process else ""),
        ):
            tail = "\n".join(text.splitlines()[-40:])
            print(f"--- last lines of the {name}'s output ---\n{tail}", file=sys.stderr)
        raise
    finally:
        if session is not None:
            session.stop()
        agent.stop()
        server.stop()


@contextlib.contextmanager
def bare_relays(destination_port: int, count: int) -> Iterator[tuple[int, dict[str, int]]]:
    """``count`` bare relays in a row in front of the destination; yields the first one's port."""
    script = pathlib.Path(__file__).resolve().parent / "bare_relay.py"
    procs: list[subprocess.Popen[str]] = []
    target = destination_port
    try:
        for _ in range(count):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, str(script), str(port), str(target)], stdout=subprocess.PIPE, text=True
            )
            procs.append(proc)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("bare relay did not start")
            target = port
        # Named in the order the bytes pass them on upload, like client, server, agent.
        yield target, {f"relay {n + 1}": proc.pid for n, proc in enumerate(reversed(procs))}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


@contextlib.contextmanager
def framed_relays(destination_port: int) -> Iterator[tuple[int, dict[str, int]]]:
    """``bench/framed_relay.py`` as agent, gateway and client in front of the destination; yields
    the client's port and the three relays' process ids."""
    script = pathlib.Path(__file__).resolve().parent / "framed_relay.py"
    procs: dict[str, subprocess.Popen[str]] = {}
    target = destination_port
    try:
        for role in ("agent", "gateway", "client"):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, str(script), role, str(port), str(target)], stdout=subprocess.PIPE, text=True
            )
            procs[role] = proc
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"framed relay ({role}) did not start")
            target = port
        yield target, {role: procs[role].pid for role in ("client", "gateway", "agent")}
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(10)


@contextlib.contextmanager
def socat_relays(destination_port: int, count: int) -> Iterator[tuple[int, dict[str, int]]]:
    """``count`` socat relays in a row (1 MiB buffers, a process per connection, as each OpenSSM
    hop serves many); yields the first one's port and the relays' process ids."""
    procs: list[subprocess.Popen[bytes]] = []
    target = destination_port
    try:
        for _ in range(count):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        "socat",
                        "-b",
                        str(MIB),
                        f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=256",
                        f"TCP:127.0.0.1:{target}",
                    ],
                    stdin=subprocess.DEVNULL,
                )
            )
            wait_until(functools.partial(listening, port), "socat to listen", timeout=30)
            target = port
        # The last one started is the first on the way (relay 1, where the client connects).
        yield target, {f"relay {number}": proc.pid for number, proc in enumerate(reversed(procs), 1)}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (asked of the kernel: a test connection
    would start a relay of its own)."""
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()  # local address as HEX_IP:HEX_PORT; state 0A is LISTEN
        if fields[1].rpartition(":")[2] == f"{port:04X}" and fields[3] == "0A":
            return True
    return False


@contextlib.contextmanager
def ssh_forward(workdir: pathlib.Path, destination_port: int) -> Iterator[int]:
    with run_sshd(workdir / "sshd") as sshd:
        local = free_port()
        proc = subprocess.Popen(
            sshd.ssh_argv(
                "-N",
                "-o",
                "ExitOnForwardFailure=yes",
                "-L",
                f"127.0.0.1:{local}:127.0.0.1:{destination_port}",
                f"{sshd.user}@127.0.0.1",
            ),
            stdin=subprocess.DEVNULL,
        )
        try:

            def listening() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError("ssh -L exited")
                with socket.create_connection(("127.0.0.1", local), timeout=1):
                    return True

            wait_until(listening, "ssh -L to listen", timeout=30)
            yield local
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)


class Profiler:
    """py-spy record on the OpenSSM processes, one run at a time."""

    def __init__(self, out_dir: pathlib.Path, pids: dict[str, int]) -> None:
        self.out_dir = out_dir
        self.pids = pids
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, label: str) -> None:
        self.stop()
        for name, pid in self.pids.items():
            self.running.append(
                subprocess.Popen(
                    [
                        str(pathlib.Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--pid",
                        str(pid),
                        "--subprocesses",
                        "--nonblocking",  # sample without pausing the process: keeps timings honest
                        "--rate",
                        "250",
                        "--format",
                        "raw",  # collapsed stacks: feed to any flame-graph tool
                        "--output",
                        str(self.out_dir / f"{label}-{name}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for proc in self.running:
            proc.send_signal(signal.SIGINT)
        for proc in self.running:
            proc.wait(30)
        self.running = []


IDLE_MARKERS = (
    "select (selectors.py",
    "(concurrent/futures/thread.py",
    "aiosqlite/core.py",
    "wait (threading.py",
)
PLUMBING = (
    "_run_once",
    "_run (",
    "run_forever",
    "run_until_complete",
    "<module>",
    "_run_module",
    "__call__",
    "invoke",
)


@dataclass
class ProfileSummary:
    busy_share: float  # of all samples: not waiting in select/queues
    self_time: list[tuple[float, str]]  # share of busy samples, leaf functions
    inclusive: list[tuple[float, str]]  # share of busy samples, any frame on the stack


def summarise(raw: pathlib.Path, limit: int = 10) -> ProfileSummary:
    """py-spy collapsed stacks → where the busy time went, leaf and inclusive."""
    leaf_counts: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    busy = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(marker in frames[-1] for marker in IDLE_MARKERS):
            idle += count
            continue
        busy += count
        leaf_counts[frames[-1]] = leaf_counts.get(frames[-1], 0) + count
        for name in {frame.split(" (")[0] for frame in frames}:
            inclusive[name] = inclusive.get(name, 0) + count
    total = max(busy, 1)
    ranked_self = sorted(leaf_counts.items(), key=lambda item: -item[1])[:limit]
    ranked_inclusive = [
        (name, count)
        for name, count in sorted(inclusive.items(), key=lambda item: -item[1])
        if count < 0.7 * busy and not any(word in name for word in PLUMBING)  # skip the roots
    ][: limit * 2]
    return ProfileSummary(
        busy_share=busy / max(busy + idle, 1),
        self_time=[(count / total, name) for name, count in ranked_self],
        inclusive=[(count / total, name) for name, count in ranked_inclusive],
    )


def results_json(result: Result, direct: Result) -> dict[str, object]:
    return {
        "path": result.path,
        "case": result.case,
        "mib_per_s": result.mib_per_s,
        "vs_direct": result.mib_per_s / direct.mib_per_s,
        "cpu_per_gib": {name: user + system for name, (user, system) in (result.cpu or {}).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--profile", type=pathlib.Path, help="directory for py-spy output")
    parser.add_argument("--repeat", type=int, default=2, help="runs per case; the best one counts")
    parser.add_argument("--no-ssh", action="store_true")
    parser.add_argument("--no-socat", action="store_true")
    parser.add_argument("--no-framed", action="store_true", help="leave out the three framed relays")
    parser.add_argument("--json", type=pathlib.Path, help="also write the results to this file")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="also OpenSSM with the server over TLS: its own listener, and uvloop's TLS (server CPU per GiB compared)",
    )
    args = parser.parse_args()
    size = args.size_mib * MIB
    with (
        tempfile.TemporaryDirectory() as tmp,
        ChecksumServer() as destination,
        contextlib.ExitStack() as stack,
    ):
        work = pathlib.Path(tmp)
        paths = [Path("direct TCP", destination.port, {})]
        local, pids = stack.enter_context(openssm_forward(work / "openssm", destination.port))
        paths.append(Path("OpenSSM", local, pids))
        if args.tls:
            certificate = self_signed(work)
            os.environ["SSL_CERT_FILE"] = str(certificate[0])  # the agent's and the client's trust
            os.environ["AWS_CA_BUNDLE"] = str(certificate[0])  # botocore (activations)
            for name, uvloop_tls in ((TLS, False), (TLS_UVLOOP, True)):
                forward = openssm_forward(
                    work / name.replace(" ", "-"), destination.port, certificate, uvloop_tls
                )
                paths.append(Path(name, *stack.enter_context(forward)))
        if not args.no_ssh and sshd_available() and shutil.which("ssh"):
            paths.append(Path("ssh -L", stack.enter_context(ssh_forward(work, destination.port)), {}))
        else:
            print("ssh -L: skipped (--no-ssh, or OpenSSH not installed)")
        local, pids = stack.enter_context(bare_relays(destination.port, 3))
        paths.append(Path("3 bare relays", local, pids))
        if not args.no_framed:
            paths.append(Path(FRAMED, *stack.enter_context(framed_relays(destination.port))))
        if not args.no_socat and shutil.which("socat"):
            paths.append(Path(SOCAT, *stack.enter_context(socat_relays(destination.port, 3))))
        else:
            print("3 socat relays: skipped (--no-socat, or socat not installed)")
        raw = stack.enter_context(RawServer(("127.0.0.1", 0), RawHandler))
        threading.Thread(target=raw.serve_forever, daemon=True).start()
        stack.callback(raw.shutdown)
        paths.append(Path(RAW, raw.server_address[1], {}, raw=True))
        profiler = None
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            profiler = Profiler(args.profile, paths[1].pids)
        results = measure(paths, size, args.parallel, args.repeat, profiler)
        if profiler:
            profiler.stop()

    direct = {r.case: r for r in results if r.path == "direct TCP"}
    print(
        f"\nport forwarding throughput, {args.size_mib} MiB per case, best of {args.repeat},"
        " SHA-256 verified both ways\n"
    )
    print(f"{'path':<16} {'case':<22} {'MiB/s':>10} {'vs direct':>10}")
    for r in results:
        ratio = r.mib_per_s / direct[r.case].mib_per_s
        print(f"{r.path:<16} {r.case:<22} {r.mib_per_s:>10.1f} {ratio:>9.1%}")
    socat = {r.case: r for r in results if r.path == SOCAT}
    if socat:
        print(f"\nOpenSSM ÷ {SOCAT} (issue 17's target: 75 % or more in every case)")
        for r in results:
            if r.path == "OpenSSM":
                print(f"  {r.case:<22} {r.mib_per_s / socat[r.case].mib_per_s:>7.1%}")
        print(f"\nCPU per GiB of the three in between, {SOCAT} ÷ OpenSSM (the checksum ends left out: what")
        print("the ratio above tends to on an idle machine whose cores all processes share, as the ends'")
        print("share of the CPU shrinks; with a core for every process the busiest one sets the pace)")
        for r in results:
            mine, theirs = r.cpu, socat[r.case].cpu if r.case in socat else None
            if r.path == "OpenSSM" and mine and theirs:
                print(f"  {r.case:<22} {relays_cpu(theirs) / relays_cpu(mine):>7.1%}")
        framed = [r for r in results if r.path == FRAMED]
        if framed:
            mine_by_case = {r.case: r for r in results if r.path == "OpenSSM"}
            print(f"\n{FRAMED}: the same wire framing and nothing else, in Python (the floor for any")
            print("design keeping AWS's framing). Throughput ÷ socat's; CPU per GiB of the three in")
            print("between, socat's ÷ theirs; and theirs ÷ OpenSSM's (how far OpenSSM is above the floor)")
            for r in framed:
                line = f"  {r.case:<22} {r.mib_per_s / socat[r.case].mib_per_s:>7.1%}"
                theirs, mine = socat[r.case].cpu, mine_by_case[r.case].cpu
                if r.cpu and theirs and mine:
                    line += f" {relays_cpu(theirs) / relays_cpu(r.cpu):>7.1%} {relays_cpu(r.cpu) / relays_cpu(mine):>7.1%}"
                print(line)
    by_path = {(r.path, r.case): r for r in results}
    if args.tls:
        print(f"\nServer CPU seconds per GiB over TLS: its listener ({TLS}) ÷ uvloop's TLS ({TLS_UVLOOP}),")
        print("and each over TLS ÷ plain (OpenSSM)")
        for case in cases(args.parallel)[:2]:
            plain, mine, theirs = (by_path[name, case].cpu for name in ("OpenSSM", TLS, TLS_UVLOOP))
            if plain and mine and theirs:
                server = {
                    name: sum(cpu["server"])
                    for name, cpu in (("plain", plain), (TLS, mine), (TLS_UVLOOP, theirs))
                }
                print(
                    f"  {case:<22} {server[TLS]:5.2f} ÷ {server[TLS_UVLOOP]:5.2f} = {server[TLS] / server[TLS_UVLOOP]:.2f}"
                    f"   ({server[TLS] / server['plain']:.2f} and {server[TLS_UVLOOP] / server['plain']:.2f} x plain's {server['plain']:.2f})"
                )
    for r in results:
        if r.cpu:
            total = sum(user + system for user, system in r.cpu.values())
            print(f"\nCPU seconds per GiB, {r.path} {r.case} (user + system; {total:.2f} in all):")
            for name, (user, system) in r.cpu.items():
                print(f"  {name:<14} {user:5.2f} + {system:4.2f}")
    if args.json:
        args.json.write_text(json.dumps([results_json(r, direct[r.case]) for r in results], indent=1))
    if args.profile:
        for raw in sorted(args.profile.glob("*-*.txt")):
            summary = summarise(raw)
            direction, process = raw.stem.split("-", 1)
            print(f"\n{process} ({direction}): busy {summary.busy_share:.0%} of samples")
            print("  self time (share of busy):")
            for share, name in summary.self_time:
                print(f"    {share:6.1%}  {name}")
            print("  inclusive:")
            for share, name in summary.inclusive:
                print(f"    {share:6.1%}  {name}")


if __name__ == "__main__":
    main()

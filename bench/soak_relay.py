"""Soak OpenSSM's own processes with the load that aborts a bare uvloop relay, watching for crashes.

`bench/uvloop_repro.py` shows uvloop 0.23.0 aborting ("double free or corruption") in a relay that
half-closes sockets under ~20 parallel connections. OpenSSM's server, agent and client run on
uvloop and half-close forwarded connections too. This runs a real `openssm server`, `openssm
agent` and two `openssm start-session` port forwards (tests/e2e/harness.py), and repeats, N times:

- the port bench's 20-stream transfer (tests/e2e/forwarding.py: 20 connections at once, each
  moving SIZE/40 each way, SHA-256-checked at both ends), and at the same time
- 20 half-close exchanges (send, half-close, read the digest back until EOF), which make the
  client and the agent call ``write_eof`` on their local sockets.

A crash detector watches every process throughout: a process that exits (its exit status, or the
signal that killed it: SIGABRT, SIGSEGV…) or that writes "double free", "corrupted", "Fatal Python
error", "Segmentation fault" or "Aborted" in its output. The soak stops at the first crash and
says which process, in which repetition, with its last lines; or, at the end, that none crashed.
``--loop asyncio`` runs every process on the standard loop instead (OPENSSM_EVENT_LOOP).

Run: `.venv/bin/python bench/soak_relay.py [--repetitions 500] [--size-mib 64] [--loop uvloop]`
(the machine is shared: a few dozen repetitions at a time unless it is quiet).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import os
import pathlib
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from tests.e2e.forwarding import (
    ChecksumServer,
    DigestOnEofServer,
    SessionProcess,
    checked_transfer,
    half_close_exchange,
)
from tests.e2e.harness import Agent, Server, port_forwarding_argv

MIB = 1 << 20
STREAMS = 20
CRASH_WORDS = re.compile(r"double free|corrupted|Fatal Python error|Segmentation fault|Aborted|malloc\(\)")


@dataclasses.dataclass
class Watched:
    name: str
    pid: int
    returncode: Callable[[], int | None]  # None while it runs
    output: Callable[[], str]


@dataclasses.dataclass
class Crash:
    process: str
    what: str
    tail: str


def crash_of(process: Watched) -> Crash | None:
    code = process.returncode()
    text = process.output()
    found = CRASH_WORDS.search(text)
    if code is None and found is None:
        return None
    if code is not None and code < 0:
        what = f"killed by {signal.Signals(-code).name}"
    elif code is not None:
        what = f"exited with status {code}"
    else:
        what = "still running"
    if found:
        what += f"; its output says {found.group(0)!r}"
    return Crash(process.name, what, "\n".join(text.splitlines()[-15:]))


class Detector:
    """Polls every watched process; the first crash it sees is kept."""

    def __init__(self, processes: list[Watched]) -> None:
        self.processes = processes
        self.crash: Crash | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            self.check()

    def check(self) -> Crash | None:
        if self.crash is None:
            for process in self.processes:
                if (crash := crash_of(process)) is not None:
                    self.crash = crash
                    break
        return self.crash

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def output_of(session: SessionProcess) -> Callable[[], str]:
    return lambda: session.output


@contextlib.contextmanager
def openssm(
    work: pathlib.Path, checksum_port: int, digest_port: int
) -> Iterator[tuple[int, int, list[Watched]]]:
    server = Server(work / "server").start()
    agent = Agent(server, work / "agent")
    sessions: list[SessionProcess] = []
    try:
        agent.register("soak-node")
        agent.start()
        assert agent.instance_id and agent.process and server.process
        for port in (checksum_port, digest_port):
            sessions.append(
                SessionProcess(port_forwarding_argv(server, agent.instance_id, port), server.aws_env())
            )
        (transfer_port,) = sessions[0].local_ports()
        (half_close_port,) = sessions[1].local_ports()
        server_proc, agent_proc = server.process, agent.process
        watched = [
            Watched("server", server_proc.proc.pid, server_proc.proc.poll, server_proc.log),
            Watched("agent", agent_proc.proc.pid, agent_proc.proc.poll, agent_proc.log),
            *(
                Watched(f"client {index} ({role})", session.proc.pid, session.proc.poll, output_of(session))
                for index, (session, role) in enumerate(
                    zip(sessions, ("transfers", "half-closes"), strict=True), 1
                )
            ),
        ]
        yield transfer_port, half_close_port, watched
    finally:
        for session in sessions:
            session.stop()
        agent.stop()
        server.stop()


def repetition(transfer_port: int, half_close_port: int, size: int) -> None:
    share = size // STREAMS // 2
    with concurrent.futures.ThreadPoolExecutor(2 * STREAMS) as pool:
        transfers = [
            pool.submit(checked_transfer, transfer_port, upload=share, download=share, timeout=120)
            for _ in range(STREAMS)
        ]
        half_closes = [
            pool.submit(half_close_exchange, half_close_port, 256 * 1024, 120) for _ in range(STREAMS)
        ]
        for transfer in transfers:
            transfer.result()
        for half_close in half_closes:
            half_close.result()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repetitions", type=int, default=500)
    parser.add_argument(
        "--size-mib", type=int, default=64, help="moved by the 20 streams together, per repetition"
    )
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--self-test",
        choices=["server", "agent", "client"],
        help="send SIGABRT to that process during repetition 2, to see the detector catch it",
    )
    args = parser.parse_args()
    os.environ["OPENSSM_EVENT_LOOP"] = args.loop  # inherited by every process started below
    started = time.monotonic()
    crash: Crash | None = None
    failure: BaseException | None = None
    done = 0
    with (
        tempfile.TemporaryDirectory() as tmp,
        ChecksumServer() as checksums,
        DigestOnEofServer() as digests,
        openssm(pathlib.Path(tmp), checksums.port, digests.port) as (transfer_port, half_close_port, watched),
    ):
        detector = Detector(watched)
        try:
            for number in range(1, args.repetitions + 1):
                if args.self_test and number == 2:
                    victim = next(item for item in watched if item.name.startswith(args.self_test))
                    threading.Timer(1.0, os.kill, (victim.pid, signal.SIGABRT)).start()
                try:
                    repetition(transfer_port, half_close_port, args.size_mib * MIB)
                except Exception as exc:
                    failure = exc
                time.sleep(0.3)  # let a process that is going down finish going down before we look
                crash = detector.check()
                if crash or failure:
                    done = number
                    break
                done = number
                if number % 10 == 0:
                    print(
                        f"  {number} repetitions, no crash ({time.monotonic() - started:.0f} s)", flush=True
                    )
        finally:
            detector.stop()
    elapsed = time.monotonic() - started
    load = f"{STREAMS} streams x {args.size_mib / STREAMS / 2:.1f} MiB each way + {STREAMS} half-closes"
    if crash:
        print(
            f"CRASHED: the {crash.process} ({args.loop}) in repetition {done} after {elapsed:.0f} s: {crash.what}"
        )
        print(f"--- its last lines ---\n{crash.tail}")
        sys.exit(1)
    if failure:
        print(f"FAILED (no process crashed): repetition {done} after {elapsed:.0f} s: {failure!r}")
        sys.exit(1)
    print(
        f"no crash: {done} repetitions of {load} on {args.loop}, every transfer SHA-256-exact, server,"
        f" agent and both clients alive, in {elapsed:.0f} s"
    )


if __name__ == "__main__":
    main()

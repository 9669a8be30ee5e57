"""Cost of server-side session recording, measured side by side in one run.

Two OpenSSM servers run at once, one recording sessions (asciicast + transcript + events, the
default) and one with recording off, each with its own agent. The same client work alternates
between them:
1. keystroke echo round trip (p50/p99) through client → gateway → agent PTY and back;
2. shell output throughput: `cat` of a large text file through the PTY, until an end marker.
It also checks the recording is complete (every line of the file is in the transcript), and
measures the recorder's own CPU cost in-process, which does not depend on the machine's load.

Run: `.venv/bin/python bench/bench_recording.py [--keys N] [--megabytes M] [--rounds R]`
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import pathlib
import statistics
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from bench_session_latency import ShellOutput, echo_rtts_shell
from tests.e2e.harness import Agent, Server
from tests.support.fleet import ShellClient
from tests.support.stats import percentile

from openssm.bus.inprocess import InProcessBus
from openssm.logs.recorder import SessionRecorder
from openssm.protocol.frames import PayloadType
from openssm.services import ServerConfig, Services
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.secrets import SecretCipher


async def cat_throughput(client: ShellClient, output: ShellOutput, path: pathlib.Path) -> float:
    """Seconds to stream the file's text through the remote shell's PTY (cat's exit status is
    checked: a cat that failed at once would measure nothing)."""
    marker = f"END-{time.monotonic_ns()}"
    command = f"stty -echo; cat {path}; echo {marker[:4]}''{marker[4:]} $?; stty echo\r"
    start = time.perf_counter()
    await client.send(command.encode())
    await output.until(marker.encode(), timeout=300)
    elapsed = time.perf_counter() - start
    status = (await output.until(b"\n")).strip()
    if status != b"0":
        raise SystemExit(f"cat {path} failed in the session's shell (exit status {status.decode()!r})")
    await asyncio.sleep(0.3)
    output.discard()
    return elapsed


async def shell_session(
    server: Server, instance_id: str, http: aiohttp.ClientSession
) -> tuple[ShellClient, ShellOutput]:
    """StartSession and the data channel, up to the first prompt byte; the shell's output queued."""
    response = await asyncio.to_thread(server.client("ssm").start_session, Target=instance_id)
    client = await ShellClient.open(http, response)
    output = ShellOutput()
    client.on_output = output.feed
    await output.any()
    await client.send(b'{"cols":80,"rows":24}', PayloadType.SIZE)
    return client, output


def make_text_file(path: pathlib.Path, megabytes: int) -> tuple[int, int]:
    """Printable lines (base64 of random bytes), numbered so completeness can be checked."""
    lines = 0
    with path.open("w") as file:
        while file.tell() < megabytes * 1024 * 1024:
            lines += 1
            file.write(f"{lines:08d} {base64.b64encode(os.urandom(54)).decode()}\n")
    return path.stat().st_size, lines


def transcript_lines(server: Server) -> int:
    total = 0
    for log in (server.data_dir / "sessions").glob("*.log"):
        with log.open(errors="replace") as file:
            total += sum(1 for line in file if line[:8].isdigit() and line[8:9] == " ")
    return total


async def recorder_cpu_cost(root: pathlib.Path, text: bytes) -> tuple[float, float]:
    """The recorder alone, in this process (no network, no other load): microseconds per echoed
    keystroke (one input and one output message) and MiB/s of shell output in 1 KiB messages."""
    services = Services(
        config=ServerConfig(data_dir=root),
        engine=make_engine(database_url_for(root)),
        bus=InProcessBus(),
        cipher=SecretCipher.generate(),
    )
    await migrate(services.engine)
    session = {
        "session_id": "bench-0",
        "session_type": "Standard_Stream",
        "document_content": {},
        "target": "mi-0",
    }
    recorder = SessionRecorder(services, None, session)
    await recorder.on_start(session)
    keys = 20_000
    start = time.perf_counter()
    for i in range(keys):
        await recorder.on_input(b"k", 1, i * 1e-3)
        await recorder.on_output(b"k", 1, i * 1e-3)
    per_key = (time.perf_counter() - start) / keys * 1e6
    start = time.perf_counter()
    for i in range(0, len(text), 1024):
        await recorder.on_output(text[i : i + 1024], 1, 30 + i * 1e-7)
    mib_per_second = len(text) / 1024 / 1024 / (time.perf_counter() - start)
    await recorder.on_end("Terminated", "bench", 60)
    await services.engine.dispose()
    return per_key, mib_per_second


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        big = root / "big.txt"
        size, lines = make_text_file(big, args.megabytes)
        # The session's shell runs as the agent's session user (ssm-user), not as this process:
        # it must be able to read the file (TemporaryDirectory makes its folder 0700).
        root.chmod(0o711)
        big.chmod(0o644)
        (root / "cpu").mkdir()
        per_key, recorder_rate = await recorder_cpu_cost(
            root / "cpu", big.read_bytes().replace(b"\n", b"\r\n")
        )
        systems: dict[str, tuple[Server, Agent]] = {}
        try:
            for name, record in (("recording", True), ("no recording", False)):
                options = () if record else ("--no-session-recording",)
                server = Server(root / name.replace(" ", "-"), extra_args=options).start()
                agent = Agent(server, root / f"agent-{name.replace(' ', '-')}")
                agent.register(name.replace(" ", "-"))
                agent.start()
                systems[name] = (server, agent)
            rtts: dict[str, list[float]] = {name: [] for name in systems}
            seconds: dict[str, list[float]] = {name: [] for name in systems}
            for round_number in range(args.rounds):
                order = list(systems.items())
                if round_number % 2:  # alternate which goes first: no order effect in the ratio
                    order.reverse()
                for name, (server, agent) in order:
                    assert agent.instance_id
                    async with aiohttp.ClientSession() as http:
                        client, output = await shell_session(server, agent.instance_id, http)
                        await asyncio.sleep(0.5)
                        rtts[name] += await echo_rtts_shell(client, output, args.keys)
                        await asyncio.sleep(0.3)
                        seconds[name].append(await cat_throughput(client, output, big))
                        await client.send(b"exit\r")
                        await client.wait_closed(30)
            await asyncio.sleep(2)  # let the recorder finish its files
            recorded = transcript_lines(systems["recording"][0])
            tap_warnings = "dropping events" in (systems["recording"][0].data_dir / "server.log").read_text()
        finally:
            for server, agent in systems.values():
                agent.stop()
                server.stop()

    mb = size / 1024 / 1024
    print(f"Keystroke echo round trip ({args.keys} keys x {args.rounds} sessions each)")
    for name in systems:
        print(
            f"  {name:13} p50 {percentile(rtts[name], 0.5) * 1000:7.2f} ms   p99 {percentile(rtts[name], 0.99) * 1000:7.2f} ms"
        )
    on, off = rtts["recording"], rtts["no recording"]
    print(
        f"  ratio         p50 {percentile(on, 0.5) / percentile(off, 0.5):7.2f}x   p99 {percentile(on, 0.99) / percentile(off, 0.99):7.2f}x"
    )
    print(f"Shell output throughput: cat of a {mb:.1f} MiB text file (median of {args.rounds})")
    for name in systems:
        median = statistics.median(seconds[name])
        print(f"  {name:13} {median:7.2f} s   {mb / median:7.1f} MiB/s")
    ratio = statistics.median(seconds["recording"]) / statistics.median(seconds["no recording"])
    print(f"  ratio (time with / without recording) {ratio:5.2f}x")
    print(
        f"Recorder CPU alone (in-process): {per_key:.1f} us per echoed keystroke, "
        f"{recorder_rate:.0f} MiB/s of shell output"
    )
    print(
        f"Recording complete: {recorded} of {lines * args.rounds} file lines in the transcripts"
        + ("; WARNING: the tap dropped events" if tap_warnings else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--megabytes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()

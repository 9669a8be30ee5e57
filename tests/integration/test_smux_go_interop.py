"""OpenSSM's smux against xtaci/smux itself (the library AWS's plugin and agent embed).

A tiny Go program (tests/interop/go_smux_peer) built from Debian's golang-go and
golang-github-xtaci-smux-dev talks smux over its stdin/stdout. Python opens streams to Go and Go to
Python, v1 and v2, echoing checksummed data of many sizes over 20+ concurrent streams; the pipe is
read and written in random splits so frames cross every boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import random
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest
from tests.conftest import require
from tests.interop import smux_echo
from tests.support.wait import wait_for

from openssm.protocol.smux import Command, FrameParser
from openssm.transport.mux import MuxSession, joined

pytestmark = pytest.mark.slow

PEER_SOURCE = pathlib.Path(__file__).resolve().parent.parent / "interop" / "go_smux_peer" / "main.go"
GOPATH = pathlib.Path(os.environ.get("OPENSSM_SMUX_GOPATH", "/usr/share/gocode"))
SMUX_SOURCE = GOPATH / "src" / "github.com" / "xtaci" / "smux"
SIZES = [0, 1, 1000, 32767, 32768, 32769, 65536, 100_000, 262_145, 1 << 20]
STREAMS = 24


@pytest.fixture(scope="module")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    go = shutil.which("go")
    require(go is not None, "Go toolchain not installed (Debian package golang-go)")
    require(
        (SMUX_SOURCE / "session.go").is_file(),
        f"xtaci/smux source not found in {SMUX_SOURCE} (Debian package golang-github-xtaci-smux-dev)",
    )
    assert go is not None
    build = tmp_path_factory.mktemp("go_smux_peer")
    binary = build / "go_smux_peer"
    # GOPATH mode against Debian's source tree: no module download, no network.
    env = {
        **os.environ,
        "GOPATH": str(GOPATH),
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(build / "cache"),
        "CGO_ENABLED": "0",
    }
    result = subprocess.run(
        [go, "build", "-o", str(binary), str(PEER_SOURCE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"building the Go smux peer failed:\n{result.stderr}"
    return binary


class GoPeer:
    """The Go program on the other end of one Python MuxSession, with taps on both directions."""

    def __init__(self, process: asyncio.subprocess.Process, session: MuxSession, rng: random.Random):
        self.process = process
        self.session = session
        self.rng = rng
        self.sent: list[Command] = []
        self.received: list[Command] = []
        self._sent_parser = FrameParser(session.version)
        self._received_parser = FrameParser(session.version)

    async def send(self, data: bytes) -> None:
        self.sent.extend(frame.command for frame in self._sent_parser.feed(data))
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    async def pump(self) -> None:
        """Feed Go's output to the session in random-sized pieces."""
        assert self.process.stdout is not None
        while chunk := await self.process.stdout.read(self.rng.choice([1, 7, 8, 9, 100, 1024, 40000, 70000])):
            self.received.extend(frame.command for frame in self._received_parser.feed(chunk))
            await self.session.wait_receive_capacity()
            self.session.feed(chunk)

    async def finish(self) -> tuple[int, str]:
        """Close our side, wait for Go to exit; returns (exit code, stderr)."""
        self.session.close()
        await asyncio.wait_for(self.session.wait_closed(), 10)
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.stderr is not None
        stderr = (await asyncio.wait_for(self.process.stderr.read(), 30)).decode(errors="replace")
        return await asyncio.wait_for(self.process.wait(), 30), stderr


@contextlib.asynccontextmanager
async def go_session(
    binary: pathlib.Path, *args: str, is_client: bool, version: int
) -> AsyncIterator[GoPeer]:
    process = await asyncio.create_subprocess_exec(
        str(binary),
        *args,
        f"-version={version}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    rng = random.Random(version * 1000 + is_client)
    peer: GoPeer | None = None

    async def send(data: bytes) -> None:
        assert peer is not None
        await peer.send(data)

    # Small, uneven message sizes, like data-channel Output payloads.
    session = MuxSession(
        joined(send), is_client=is_client, version=version, max_send_size=rng.choice([1000, 1024, 4099])
    )
    peer = GoPeer(process, session, rng)
    pump = asyncio.create_task(peer.pump())
    try:
        yield peer
    finally:
        if process.stdin is not None and not process.stdin.is_closing():
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pump


def _no_keepalive_and_windows(peer: GoPeer, version: int) -> None:
    assert Command.NOP not in peer.sent, "keepalive is off by default: Python must never send NOP"
    if version == 1:
        assert Command.UPD not in peer.sent, "smux v1 has no UPD"
    else:
        assert Command.UPD in peer.sent, "a v2 reader must report consumption with UPD"


@pytest.mark.parametrize("version", [1, 2])
async def test_python_opens_streams_to_go(go_peer: pathlib.Path, version: int) -> None:
    async with (
        asyncio.timeout(90),
        go_session(go_peer, "-mode=server", is_client=True, version=version) as peer,
    ):
        modes = [smux_echo.ECHO] * STREAMS
        if version == 1:  # xtaci/smux v2 refuses writes after the peer's FIN, so no half-close there
            modes += [smux_echo.HALF_CLOSE] * 6
        exchanges = [
            smux_echo.drive(peer.session, mode, smux_echo.payload(SIZES[i % len(SIZES)], i))
            for i, mode in enumerate(modes)
        ]
        # Our reset (a second FIN) means nothing to xtaci/smux: the stream just ends.
        (await peer.session.open_stream()).abort()
        stream_ids = await asyncio.gather(*exchanges)
        assert sorted(stream_ids) == list(range(5, 5 + 2 * len(modes), 2)), "client ids are odd from 3"
        assert peer.session.stream_count == 0, "streams closed both ways are forgotten"
        code, stderr = await peer.finish()
    assert code == 0, stderr
    assert f"served {len(modes) + 1} streams, 0 failed, 1 aborted" in stderr, stderr
    _no_keepalive_and_windows(peer, version)


@pytest.mark.parametrize("version", [1, 2])
async def test_go_opens_streams_to_python(go_peer: pathlib.Path, version: int) -> None:
    sizes = ",".join(str(size) for size in SIZES)
    served: list[int] = []
    async with (
        asyncio.timeout(90),
        go_session(
            go_peer,
            "-mode=client",
            f"-streams={STREAMS}",
            f"-sizes={sizes}",
            is_client=False,
            version=version,
        ) as peer,
    ):
        server = asyncio.create_task(smux_echo.serve_forever(peer.session, served))
        assert peer.process.stderr is not None
        stderr = (await peer.process.stderr.read()).decode(errors="replace")
        code = await peer.process.wait()
        assert code == 0, stderr
        assert f"drove {STREAMS} streams, 0 failed" in stderr, stderr
        peer.session.close()
        with contextlib.suppress(BaseExceptionGroup):
            await server
    assert sorted(served) == sorted(SIZES[i % len(SIZES)] for i in range(STREAMS))
    _no_keepalive_and_windows(peer, version)


async def test_go_keepalive_nops_are_tolerated(go_peer: pathlib.Path) -> None:
    """A peer with keepalive on sends NOPs between and among data frames; they change nothing."""
    async with (
        asyncio.timeout(60),
        go_session(go_peer, "-mode=server", "-keepalive-ms=5", is_client=True, version=1) as peer,
    ):
        await wait_for(lambda: Command.NOP in peer.received, 10, "the Go peer's keepalive")
        await smux_echo.drive(peer.session, smux_echo.ECHO, smux_echo.payload(300_000, 7))
        code, stderr = await peer.finish()
    assert code == 0, stderr
    assert Command.NOP in peer.received
    assert Command.NOP not in peer.sent

"""The asyncio MuxSession: two sessions back to back, and pipe() over real loopback TCP."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.interop import smux_echo
from tests.support.wait import wait_for

from openssm.protocol.smux import (
    Command,
    FrameParser,
    SmuxConfig,
    SmuxFrame,
    SmuxProtocolError,
    encode_frame,
)
from openssm.transport import tcp_connection
from openssm.transport.mux import (
    BULK_MESSAGE,
    COALESCE_TURNS,
    FAST_PATH_PAYLOAD,
    MuxClosedError,
    MuxSession,
    MuxStreamResetError,
    fast_mux_config,
    joined,
    pipe,
)
from openssm.transport.tcp_connection import TcpConnection


class Wire:
    """One direction between two sessions: random splits, receiver back-pressure, frame tap."""

    def __init__(self, version: int, seed: int) -> None:
        self.target: MuxSession | None = None
        self.rng = random.Random(seed)
        self.tap = FrameParser(version)
        self.commands: set[Command] = set()
        self.max_buffered = 0

    async def send(self, data: bytes) -> None:
        assert self.target is not None
        self.commands.update(frame.command for frame in self.tap.feed(data))
        while data:
            cut = self.rng.choice([1, 5, 8, 100, 1024, 70000])
            await self.target.wait_receive_capacity()
            self.target.feed(data[:cut])
            data = data[cut:]
            self.max_buffered = max(self.max_buffered, self.target.receive_buffered)


def back_to_back(version: int, config: SmuxConfig | None = None) -> tuple[MuxSession, MuxSession, Wire, Wire]:
    to_server, to_client = Wire(version, 1), Wire(version, 2)
    client = MuxSession(
        joined(to_server.send), is_client=True, version=version, config=config, max_send_size=1500
    )
    server = MuxSession(
        joined(to_client.send), is_client=False, version=version, config=config, max_send_size=4096
    )
    to_server.target, to_client.target = server, client
    return client, server, to_server, to_client


@pytest.mark.parametrize("version", [1, 2])
async def test_many_concurrent_streams_both_ways(version: int) -> None:
    client, server, to_server, to_client = back_to_back(version)
    rng = random.Random(version)
    served_by_server: list[int] = []
    served_by_client: list[int] = []
    async with asyncio.timeout(60):
        serving = [
            asyncio.create_task(smux_echo.serve_forever(server, served_by_server)),
            asyncio.create_task(smux_echo.serve_forever(client, served_by_client)),
        ]
        exchanges = []
        for i in range(40):
            opener = client if i % 4 else server
            mode = smux_echo.HALF_CLOSE if i % 3 == 0 else smux_echo.ECHO
            size = rng.choice([0, 1, 7, 4096, 32768, 32769, 100_000, 300_000, 700_000])
            exchanges.append(smux_echo.drive(opener, mode, smux_echo.payload(size, i)))
        stream_ids = await asyncio.gather(*exchanges)
        client.close()
        server.close()
        for task in serving:
            await task
    assert sorted(i for i in stream_ids if i % 2) == list(range(3, 3 + 2 * 30, 2))
    assert sorted(i for i in stream_ids if not i % 2) == list(range(2, 2 + 2 * 10, 2))
    assert len(served_by_server) == 30 and len(served_by_client) == 10
    for wire in (to_server, to_client):
        assert Command.NOP not in wire.commands
        assert (Command.UPD in wire.commands) == (version == 2), "UPD exists only in v2"
        assert wire.max_buffered <= SmuxConfig().max_receive_buffer + 70000


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from([1, 2]),
    st.lists(st.tuples(st.booleans(), st.integers(0, 200_000)), min_size=1, max_size=12),
    st.integers(0, 2**32),
)
def test_random_streams_arrive_intact(version: int, exchanges: list[tuple[bool, int]], seed: int) -> None:
    async def run() -> None:
        client, server, _, _ = back_to_back(version)
        client_served: list[int] = []
        server_served: list[int] = []
        async with asyncio.timeout(30):
            serving = [
                asyncio.create_task(smux_echo.serve_forever(server, server_served)),
                asyncio.create_task(smux_echo.serve_forever(client, client_served)),
            ]
            await asyncio.gather(
                *(
                    smux_echo.drive(
                        client if from_client else server,
                        smux_echo.HALF_CLOSE if size % 2 else smux_echo.ECHO,
                        smux_echo.payload(size, seed + index),
                    )
                    for index, (from_client, size) in enumerate(exchanges)
                )
            )
            client.close()
            server.close()
            await asyncio.gather(*serving)
        assert sorted(server_served + client_served) == sorted(size for _, size in exchanges)

    asyncio.run(run())


async def _fill(write: Callable[[bytes], Awaitable[None]], total: int) -> None:
    for _ in range(total // 65536):
        await write(bytes(65536))


@pytest.mark.parametrize("max_send_size", [65536, FAST_PATH_PAYLOAD])  # small and large write steps
async def test_writes_fill_whole_frames(max_send_size: int) -> None:
    """A large write goes out in full frames: no runt after each one (a write step that was one
    frame and 8 bytes long on the fast path once doubled the frames, and every per-frame cost)."""
    config = fast_mux_config()
    size = 200 * 1024
    frames: list[SmuxFrame] = []
    parser = FrameParser(config.version)

    async def send(data: bytes) -> None:
        frames.extend(parser.feed(data))

    session = MuxSession(
        joined(send), is_client=True, version=config.version, config=config, max_send_size=max_send_size
    )
    async with asyncio.timeout(10):
        stream = await session.open_stream()
        await stream.write(bytes(size))  # within the peer's initial window
        session.close()
        await session.wait_closed()
    sizes = [len(frame.data) for frame in frames if frame.command == Command.PSH]
    assert sum(sizes) == size
    assert sizes[:-1] == [config.max_frame_size] * (len(sizes) - 1)


async def _turns(count: int) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def _recording_session(sizes: list[int]) -> MuxSession:
    async def send(parts: list[bytes | memoryview]) -> None:
        sizes.append(sum(map(len, parts)))

    return MuxSession(send, is_client=True, version=1, max_send_size=FAST_PATH_PAYLOAD)


async def test_after_a_bulk_message_the_next_write_joins_a_short_one() -> None:
    sizes: list[int] = []
    session = _recording_session(sizes)
    stream = await session.open_stream()
    await stream.write(bytes(BULK_MESSAGE))
    await _turns(3)
    assert len(sizes) == 1 and sizes[0] >= BULK_MESSAGE
    await stream.write(bytes(1000))
    await _turns(1)  # the sender is awake and lets the loop turn before sending
    await stream.write(bytes(1000))
    await _turns(COALESCE_TURNS + 2)
    assert sizes[1:] == [2 * (8 + 1000)], "both writes went out in one message"


async def test_short_messages_are_not_held_back() -> None:
    sizes: list[int] = []
    session = _recording_session(sizes)
    stream = await session.open_stream()
    await stream.write(bytes(1000))
    await _turns(1)
    assert sizes == [8 + 8 + 1000], "SYN and data went out at once"
    await stream.write(bytes(1000))
    await _turns(1)
    assert sizes[1:] == [8 + 1000]


async def test_v2_a_stalled_reader_does_not_stop_other_streams() -> None:
    client, server, _, _ = back_to_back(2)
    async with asyncio.timeout(30):
        stalled = await client.open_stream()
        stalled_peer = await server.accept_stream()
        stalled_writer = asyncio.create_task(_fill(stalled.write, 2 << 20))

        moving = [await client.open_stream() for _ in range(5)]
        moving_peers = [await server.accept_stream() for _ in moving]

        async def send(index: int) -> None:
            await _fill(moving[index].write, 1 << 20)
            await moving[index].close()

        async def transfer(index: int) -> int:
            sending = asyncio.create_task(send(index))
            total = 0
            while chunk := await moving_peers[index].read():
                total += len(chunk)
            await sending
            return total

        # 5 MiB move on other streams while nobody reads the stalled one.
        assert await asyncio.gather(*(transfer(i) for i in range(5))) == [1 << 20] * 5
        assert not stalled_writer.done(), "the stalled stream waits for its window"
        assert 0 < server.receive_buffered <= 262144, "only the stalled stream's window is buffered"

        received = 0
        while received < 2 << 20:
            received += len(await stalled_peer.read())
        await stalled_writer


async def test_v1_a_stalled_reader_blocks_the_session_but_memory_stays_bounded() -> None:
    """v1 has no per-stream windows (the reason v2 exists): the session buffer fills, then waits."""
    config = SmuxConfig(max_receive_buffer=256 * 1024, receive_hard_limit=512 * 1024)
    client, server, to_server, _ = back_to_back(1, config)
    async with asyncio.timeout(30):
        stalled = await client.open_stream()
        stalled_peer = await server.accept_stream()
        stalled_writer = asyncio.create_task(_fill(stalled.write, 2 << 20))
        other = await client.open_stream()
        other_peer = await server.accept_stream()
        while server.receive_buffered < 256 * 1024:  # the stalled stream has filled the session
            await asyncio.sleep(0.01)
        other_writer = asyncio.create_task(other.write(b"late"))
        await asyncio.sleep(0.2)
        assert other_peer._session._core.buffered(other_peer.stream_id) == 0, "queued behind the stall"
        assert server.receive_buffered <= 256 * 1024 + 70000
        received = 0
        while received < 2 << 20:
            received += len(await stalled_peer.read())
        await stalled_writer
        await other_writer
        assert await other_peer.read() == b"late"
    assert to_server.max_buffered <= 256 * 1024 + 70000


async def test_a_peer_exceeding_the_receive_limit_gets_an_error() -> None:
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    config = SmuxConfig(max_receive_buffer=100_000, receive_hard_limit=200_000)
    server = MuxSession(joined(send), is_client=False, config=config)
    server.feed(encode_frame(1, Command.SYN, 3))
    stream = await server.accept_stream()
    flood = encode_frame(1, Command.PSH, 3, bytes(60_000))
    for _ in range(3):
        server.feed(flood)  # a caller ignoring wait_receive_capacity, a peer ignoring everything
    with pytest.raises(SmuxProtocolError, match="receive buffer limit"):
        server.feed(flood)
    assert server.closed and server.receive_buffered == 0
    with pytest.raises(MuxClosedError):
        await stream.read()
    with pytest.raises(MuxClosedError):
        await server.accept_stream()
    server.feed(flood)  # ignored after the failure, nothing grows
    assert server.receive_buffered == 0


async def test_protocol_error_wakes_blocked_readers_and_acceptors() -> None:
    async def send(data: bytes) -> None:
        pass

    server = MuxSession(joined(send), is_client=False)
    server.feed(encode_frame(1, Command.SYN, 3))
    stream = await server.accept_stream()
    reader = asyncio.create_task(stream.read())
    acceptor = asyncio.create_task(server.accept_stream())
    await asyncio.sleep(0)
    with pytest.raises(SmuxProtocolError):
        server.feed(b"\x09" + bytes(7))
    for task in (reader, acceptor):
        with pytest.raises(MuxClosedError):
            await task


async def test_send_failure_ends_the_session() -> None:
    async def send(data: bytes) -> None:
        raise ConnectionResetError("data channel gone")

    client = MuxSession(joined(send), is_client=True)
    stream = await client.open_stream()
    await asyncio.sleep(0)
    with pytest.raises(MuxClosedError, match="data channel gone"):
        await stream.write(b"x")
    assert isinstance(client.error, ConnectionResetError)


async def test_close_sends_fin_for_open_streams_and_fails_pending_reads() -> None:
    client, server, _, _ = back_to_back(1)
    stream = await client.open_stream()
    peer = await server.accept_stream()
    pending = asyncio.create_task(stream.read())
    await asyncio.sleep(0)
    client.close()
    await client.wait_closed()
    with pytest.raises(MuxClosedError):
        await pending
    assert await peer.read() == b"", "the peer sees EOF"
    with pytest.raises(MuxClosedError):
        await client.open_stream()


async def test_aborted_stream_reads_as_ended_and_peer_sees_fin() -> None:
    client, server, _, _ = back_to_back(2)
    async with client, server:
        stream = await client.open_stream()
        peer = await server.accept_stream()
        await peer.write(b"unread")
        await asyncio.sleep(0.01)
        stream.abort()
        assert await stream.read() == b""
        assert client.receive_buffered == 0
        assert await peer.read() == b""


@pytest.mark.parametrize("version", [1, 2])
async def test_a_writer_learns_that_the_peer_dropped_the_stream(version: int) -> None:
    """Without the reset a v2 writer would wait forever for a window the dropped stream never opens."""
    client, server, _, _ = back_to_back(version)
    async with asyncio.timeout(10), client, server:
        stream = await client.open_stream()
        peer = await server.accept_stream()
        writer = asyncio.create_task(_fill(peer.write, 64 << 20))
        assert await stream.read()
        stream.abort()
        with pytest.raises(MuxStreamResetError):
            await writer
        assert server.stream_count == 0 and client.stream_count == 0


async def test_keepalive_only_when_configured_and_times_out_a_silent_peer() -> None:
    sent: list[bytes] = []

    async def send(data: bytes) -> None:
        sent.append(data)

    config = SmuxConfig(keepalive_interval=0.02, keepalive_timeout=0.05)
    client = MuxSession(joined(send), is_client=True, config=config)
    await client.open_stream()
    async with asyncio.timeout(10):
        while not client.closed:
            await asyncio.sleep(0.01)
    commands = [frame.command for frame in FrameParser(1).feed(b"".join(sent))]
    assert Command.NOP in commands
    assert client.closed and "no smux frame" in str(client.error)

    quiet: list[bytes] = []

    async def send_quiet(data: bytes) -> None:
        quiet.append(data)

    default = MuxSession(joined(send_quiet), is_client=True)
    await default.open_stream()
    await asyncio.sleep(0.1)
    assert b"".join(quiet) == encode_frame(1, Command.SYN, 3)
    assert not default.closed


async def _answer_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Destination service: reads to EOF, then replies with the length and SHA-256 of all it got."""
    digest = hashlib.sha256()
    total = 0
    while chunk := await reader.read(65536):
        digest.update(chunk)
        total += len(chunk)
    writer.write(total.to_bytes(8, "big") + digest.digest())
    await writer.drain()
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize("version", [1, 2])
async def test_pipe_bridges_tcp_with_half_close(version: int) -> None:
    """client TCP -> listener -> mux -> destination TCP; the reply comes after the client's EOF."""
    client_mux, agent_mux, _, _ = back_to_back(version)
    destination = await asyncio.start_server(_answer_after_eof, "127.0.0.1", 0)
    destination_port = destination.sockets[0].getsockname()[1]
    bridges: set[asyncio.Task[None]] = set()
    local_bridges: set[asyncio.Task[None]] = set()

    async def on_local_connection(connection: TcpConnection) -> None:
        await pipe(await client_mux.open_stream(), connection)

    def accepted(connection: TcpConnection) -> None:
        task = asyncio.create_task(on_local_connection(connection))
        local_bridges.add(task)
        task.add_done_callback(local_bridges.discard)

    async def agent() -> None:
        async with asyncio.TaskGroup() as group:
            while True:
                try:
                    stream = await agent_mux.accept_stream()
                except MuxClosedError:
                    return
                connection = await tcp_connection.open_connection("127.0.0.1", destination_port)
                bridges.add(group.create_task(pipe(stream, connection)))

    listener = await tcp_connection.start_server(accepted, "127.0.0.1", 0)
    listen_port = listener.sockets[0].getsockname()[1]
    agent_task = asyncio.create_task(agent())

    async def connection(size: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", listen_port)
        data = smux_echo.payload(size, size)
        writer.write(data)
        writer.write_eof()
        reply = await reader.read()
        assert reply == size.to_bytes(8, "big") + hashlib.sha256(data).digest()
        writer.close()
        await writer.wait_closed()

    async with asyncio.timeout(30), listener, destination:
        await asyncio.gather(*(connection(size) for size in [0, 1, 5000, 100_000, 1 << 20] * 4))
        await wait_for(
            lambda: client_mux.stream_count == 0 and agent_mux.stream_count == 0, 5, "every stream released"
        )
        client_mux.close()
        agent_mux.close()
        await agent_task
    assert len(bridges) == 20


@pytest.mark.parametrize("version", [1, 2])
async def test_pipe_releases_the_destination_when_the_local_client_leaves(version: int) -> None:
    """A client that disconnects mid-download resets the stream; the far side stops and closes."""
    client_mux, agent_mux, _, _ = back_to_back(version)
    destination_closed = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                writer.write(bytes(65536))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            destination_closed.set()
            writer.close()

    destination = await asyncio.start_server(endless, "127.0.0.1", 0)
    destination_port = destination.sockets[0].getsockname()[1]
    local_bridges: set[asyncio.Task[None]] = set()

    async def on_local_connection(connection: TcpConnection) -> None:
        await pipe(await client_mux.open_stream(), connection)

    def accepted(connection: TcpConnection) -> None:
        local_bridges.add(asyncio.create_task(on_local_connection(connection)))

    async def agent() -> None:
        stream = await agent_mux.accept_stream()
        await pipe(stream, await tcp_connection.open_connection("127.0.0.1", destination_port))

    listener = await tcp_connection.start_server(accepted, "127.0.0.1", 0)
    async with asyncio.timeout(20), listener, destination:
        agent_task = asyncio.create_task(agent())
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        assert len(await reader.readexactly(200_000)) == 200_000
        writer.transport.abort()  # gone without a goodbye
        await destination_closed.wait()
        await agent_task
        assert client_mux.stream_count == 0 and agent_mux.stream_count == 0
        client_mux.close()
        agent_mux.close()

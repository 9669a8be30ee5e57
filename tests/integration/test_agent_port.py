"""Port sessions against local TCP servers: basic mode, stdio (SSH) mode, smux mode, refusals."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest
from tests.support.wait import wait_for
from tests.unit.agent.fake_mgs import (
    FakeClient,
    agent_session,
    client_handshake,
    session_content,
    task_result,
)

from openssm.protocol.frames import MessageType, PayloadFlag, PayloadType, flag_payload
from openssm.transport.mux import FAST_PATH_PROPERTY, FAST_PATH_VERSION, MuxSession, joined

SID = "tester-0123456789abcdef1"


class TcpServer:
    """Echo server (``echo:`` + bytes), or a banner sender that hangs up (like a closing sshd)."""

    def __init__(self, banner: bytes | None = None) -> None:
        self.banner = banner
        self.accepted = 0
        self.closed_by_peer = 0

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.banner is not None:
            writer.write(self.banner)
            await writer.drain()
            writer.close()
            return
        while data := await reader.read(1024):
            writer.write(b"echo:" + data)
            await writer.drain()
        self.closed_by_peer += 1
        writer.close()

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_properties(port: int, *, forwarding: bool = True, host: str | None = None) -> dict[str, str]:
    properties = {"portNumber": str(port), "localPortNumber": "0"}
    if forwarding:
        properties["type"] = "LocalPortForwarding"
    if host is not None:
        properties["host"] = host
    return properties


def port_content(properties: dict[str, str]) -> dict[str, object]:
    return session_content(SID, "Port", properties)


def outputs_after_handshake(client: FakeClient) -> bytes:
    return b"".join(f.payload for f in client.outputs_of(PayloadType.OUTPUT))


async def test_basic_mode_redials_after_disconnect_to_port() -> None:
    server = TcpServer()
    port = await server.start()
    try:
        async with agent_session(port_content(port_properties(port))) as (fake, client):
            request = await client_handshake(client, client_version="1.1.69.0")  # too old for smux
            assert request["AgentVersion"] == "3.3.987.0"
            properties = request["RequestedClientActions"][0]["ActionParameters"]["Properties"]
            assert list(properties) == sorted(properties)
            await client.send_input(PayloadType.OUTPUT, b"first")
            await client.wait_for(lambda: outputs_after_handshake(client) == b"echo:first", "first echo")
            await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.DISCONNECT_TO_PORT))
            await asyncio.wait_for(_until(lambda: server.closed_by_peer == 1), 5)
            await client.send_input(PayloadType.OUTPUT, b"second")
            await client.wait_for(lambda: outputs_after_handshake(client).endswith(b"echo:second"), "re-dial")
            assert server.accepted == 2
            await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
            result = await task_result(fake)
    finally:
        await server.close()
    assert result["FinalTaskStatus"] == "Success"
    assert outputs_after_handshake(client) == b"echo:firstecho:second"


async def _until(predicate: Callable[[], bool]) -> None:
    await wait_for(predicate, 20, "the condition never held")


async def test_ssh_style_session_ends_when_destination_closes() -> None:
    server = TcpServer(banner=b"SSH-2.0-OpenSSM_test\r\n")
    port = await server.start()
    try:
        async with agent_session(port_content({"portNumber": str(port)})) as (fake, client):
            request = await client_handshake(client)
            result = await task_result(fake)
            await asyncio.wait_for(client.closed.wait(), 5)
    finally:
        await server.close()
    # The document's properties, plus the fast-path offer AWS's plugin ignores (openssm.transport.mux).
    assert request["RequestedClientActions"][0]["ActionParameters"]["Properties"] == {
        "portNumber": str(port),
        FAST_PATH_PROPERTY: FAST_PATH_VERSION,
    }
    assert result["FinalTaskStatus"] == "Success"
    assert outputs_after_handshake(client) == b"SSH-2.0-OpenSSM_test\r\n"
    last = client.frames[-1]
    assert last.message_type == MessageType.AGENT_SESSION_STATE and b"Terminating" in last.payload


async def test_mux_mode_serves_concurrent_streams_to_a_remote_host() -> None:
    server = TcpServer()
    port = await server.start()
    try:
        async with agent_session(port_content(port_properties(port, host="127.0.0.1"))) as (fake, client):

            async def send_to_agent(data: bytes) -> None:
                await client.send_input(PayloadType.OUTPUT, data)

            mux = MuxSession(joined(send_to_agent), is_client=True)
            client.output_listener = lambda f: (
                mux.feed(f.payload) if f.payload_type == PayloadType.OUTPUT else None
            )
            await client_handshake(client)
            streams = [await mux.open_stream() for _ in range(3)]
            for index, stream in enumerate(streams):
                await stream.write(f"hello {index}".encode())
            replies = [await asyncio.wait_for(stream.read(1024), 5) for stream in streams]
            assert replies == [f"echo:hello {i}".encode() for i in range(3)]
            for stream in streams:
                await stream.close()
                assert await asyncio.wait_for(stream.read(1024), 5) == b""  # the agent's FIN
            await asyncio.wait_for(_until(lambda: server.closed_by_peer == 3), 5)
            await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
            result = await task_result(fake)
    finally:
        await server.close()
    assert result["FinalTaskStatus"] == "Success"
    assert server.accepted == 3


async def test_mux_mode_reports_a_failed_dial_with_connect_to_port_error() -> None:
    async with agent_session(port_content(port_properties(free_closed_port()))) as (fake, client):

        async def send_to_agent(data: bytes) -> None:
            await client.send_input(PayloadType.OUTPUT, data)

        mux = MuxSession(joined(send_to_agent), is_client=True)
        client.output_listener = lambda f: (
            mux.feed(f.payload) if f.payload_type == PayloadType.OUTPUT else None
        )
        await client_handshake(client)
        stream = await mux.open_stream()
        await client.wait_for(lambda: bool(client.outputs_of(PayloadType.FLAG)), "ConnectToPortError")
        assert await asyncio.wait_for(stream.read(1024), 5) == b""
        await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
        await task_result(fake)
    (flag,) = client.outputs_of(PayloadType.FLAG)
    assert flag.payload == b"\x00\x00\x00\x03"


@pytest.mark.parametrize("host", ["169.254.169.254", "fd00:ec2::254"])
async def test_denied_destination_fails_the_session_before_the_handshake(host: str) -> None:
    async with agent_session(port_content(port_properties(80, host=host))) as (fake, client):
        result = await task_result(fake)
        await asyncio.wait_for(client.closed.wait(), 5)
    assert result["FinalTaskStatus"] == "Failed"
    assert "not allowed" in result["Output"] and host in result["Output"]
    assert not client.outputs_of(PayloadType.HANDSHAKE_REQUEST)

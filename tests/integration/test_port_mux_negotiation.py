"""smux version choice on Port sessions: v2 + large payloads between OpenSSM ends, v1 + 1024-byte
messages with AWS's programs; and the fast path (payloads near 1 MiB without digests) on top of v2.

The agent offers v2 in the handshake Properties (``openssm.transport.mux.FAST_MUX_PROPERTY``) and then speaks
whatever version the client's first smux frame uses; our client opens with v2 only when offered.
The fast path is offered the same way (``FAST_PATH_PROPERTY``) and taken only when the client's
HandshakeResponse accepts it (``FAST_PATH_ACCEPTED``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os

from tests.unit.agent.fake_mgs import (
    FakeClient,
    agent_session,
    client_handshake,
    session_content,
    task_result,
)

from openssm.client.datachannel import DataChannel
from openssm.client.output import Console
from openssm.client.port import PortSession
from openssm.protocol.datachannel import Dropped, StreamData
from openssm.protocol.frames import (
    Frame,
    MessageType,
    PayloadFlag,
    PayloadType,
    flag_payload,
)
from openssm.protocol.messages import handshake_request
from openssm.protocol.smux import HEADER
from openssm.transport.mux import (
    FAST_MUX_PAYLOAD,
    FAST_MUX_PROPERTY,
    FAST_MUX_VERSION,
    FAST_PATH_ACCEPTED,
    FAST_PATH_PAYLOAD,
    FAST_PATH_PROPERTY,
    FAST_PATH_VERSION,
    MuxSession,
    fast_mux_config,
    joined,
)

SID = "tester-0123456789abcdef2"
AWS_OUTPUT_LIMIT = 1024


class EchoServer:
    """Plain echo; after the client's EOF it answers with the SHA-256 of everything it read."""

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        digest = hashlib.sha256()
        while data := await reader.read(65536):
            digest.update(data)
            writer.write(data)
            await writer.drain()
        writer.write(b"sha256:" + digest.digest())
        await writer.drain()
        writer.close()

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def forwarding_content(port: int) -> dict[str, object]:
    properties = {"portNumber": str(port), "localPortNumber": "0", "type": "LocalPortForwarding"}
    return session_content(SID, "Port", properties)


def attach_mux(client: FakeClient, version: int, max_send_size: int = 65536) -> MuxSession:
    async def send_to_agent(data: bytes) -> None:
        await client.send_input(PayloadType.OUTPUT, data)

    config = fast_mux_config() if version == FAST_MUX_VERSION else None
    mux = MuxSession(
        joined(send_to_agent), is_client=True, version=version, config=config, max_send_size=max_send_size
    )
    client.output_listener = lambda f: mux.feed(f.payload) if f.payload_type == PayloadType.OUTPUT else None
    return mux


async def read_all(stream, limit: float = 10.0) -> bytes:  # type: ignore[no-untyped-def]
    parts = []
    async with asyncio.timeout(limit):
        while data := await stream.read(65536):
            parts.append(data)
    return b"".join(parts)


async def exchange(
    client: FakeClient, version: int, port: int, size: int, max_send_size: int = 65536
) -> tuple[bytes, bytes]:
    """One stream: write ``size`` bytes, half-close, read everything back."""
    mux = attach_mux(client, version, max_send_size)
    payload = os.urandom(size)
    stream = await mux.open_stream()
    await stream.write(payload)
    await stream.close()
    return payload, await read_all(stream)


def agent_outputs(client: FakeClient) -> list[bytes]:
    return [bytes(frame.payload) for frame in client.outputs_of(PayloadType.OUTPUT)]


async def test_agent_offers_v2_and_an_openssm_client_gets_it_with_large_payloads() -> None:
    server = EchoServer()
    port = await server.start()
    try:
        async with agent_session(forwarding_content(port)) as (fake, client):
            request = await client_handshake(client)
            properties = request["RequestedClientActions"][0]["ActionParameters"]["Properties"]
            assert properties[FAST_MUX_PROPERTY] == str(FAST_MUX_VERSION)
            payload, echoed = await exchange(client, FAST_MUX_VERSION, port, 512 * 1024)
            await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
            await task_result(fake)
    finally:
        await server.close()
    # Half-close: the destination saw EOF and still answered (v2 only; AWS closes instead).
    assert echoed == payload + b"sha256:" + hashlib.sha256(payload).digest()
    outputs = agent_outputs(client)
    assert outputs[0][0] == FAST_MUX_VERSION
    assert AWS_OUTPUT_LIMIT < max(len(o) for o in outputs) <= FAST_MUX_PAYLOAD
    # The fast path was offered but not accepted: every message keeps its digest.
    assert properties[FAST_PATH_PROPERTY] == FAST_PATH_VERSION
    assert not client.digestless_outputs


async def test_fast_path_once_accepted_large_payloads_without_digests_both_ways() -> None:
    server = EchoServer()
    port = await server.start()
    accept = {FAST_PATH_ACCEPTED: FAST_PATH_VERSION}
    try:
        async with agent_session(forwarding_content(port)) as (fake, client):
            await client_handshake(client, extensions=accept)
            handshake_seqs = set(client.outputs)
            # Our sends: FakeClient keeps digests; the agent takes fast-path-sized payloads either way.
            payload, echoed = await exchange(client, FAST_MUX_VERSION, port, 2 << 20, FAST_PATH_PAYLOAD)
            await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
            await task_result(fake)
    finally:
        await server.close()
    assert echoed == payload + b"sha256:" + hashlib.sha256(payload).digest()
    data_seqs = {
        seq for seq, f in client.outputs.items() if f.payload_type == PayloadType.OUTPUT and f.payload
    }
    assert data_seqs and data_seqs <= client.digestless_outputs
    assert not handshake_seqs & client.digestless_outputs  # the request went before the answer
    assert FAST_MUX_PAYLOAD < max(len(o) for o in agent_outputs(client)) <= FAST_PATH_PAYLOAD


async def test_agent_refuses_input_beyond_the_fast_path_limit() -> None:
    async with agent_session(forwarding_content(9)) as (fake, client):
        await client_handshake(client, extensions={FAST_PATH_ACCEPTED: FAST_PATH_VERSION})
        too_big = await client.send_input(PayloadType.OUTPUT, b"\x02" * (FAST_PATH_PAYLOAD + 1))
        fits = await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
        await client.wait_for(lambda: fits.sequence_number in client.acked_inputs, "the Terminate acked")
        # Dropped unacked (a client resends; ours never sends more than the limit), so the
        # Terminate behind it is held (acked, out of order) and not acted on.
        assert too_big.sequence_number not in client.acked_inputs
        assert fits.sequence_number in client.acked_inputs
        assert not fake.task_complete_received.is_set()


def receive_offer(channel: DataChannel, properties: dict[str, str]) -> None:
    """The agent's HandshakeRequest (seq 0), as the client's data channel core reads it."""
    core = channel.core
    core.ready = lambda frame: True
    core.connected(0.0)
    request = handshake_request("Port", properties).encode()
    core.receive_frame(
        Frame(MessageType.OUTPUT_STREAM_DATA, 0, 1, PayloadType.HANDSHAKE_REQUEST, request), 0.0
    )


def test_client_checks_digests_until_it_accepted_the_fast_path() -> None:
    channel = DataChannel("ws://127.0.0.1:9/v1/data-channel/x", "token")

    def output(seq: int, payload: bytes, *, digest: bool = True) -> bytearray:
        frame = Frame(MessageType.OUTPUT_STREAM_DATA, seq, 0, PayloadType.OUTPUT, payload)
        return bytearray(frame.encode(digest=digest))

    receive_offer(channel, {"portNumber": "22", FAST_PATH_PROPERTY: FAST_PATH_VERSION})
    (refused,) = channel.core.receive_data(output(1, b"x" * 100, digest=False), 0.0)
    assert isinstance(refused, Dropped)
    assert channel.accept_fast_path() == ((FAST_PATH_ACCEPTED, FAST_PATH_VERSION),)
    (taken,) = channel.core.receive_data(output(1, b"x" * 100, digest=False), 0.0)
    assert isinstance(taken, StreamData) and taken.frame.payload == b"x" * 100
    # A real digest is still checked after the switch.
    tampered = output(2, b"y" * 100)
    tampered[-1] ^= 1
    (refused,) = channel.core.receive_data(tampered, 0.0)
    assert isinstance(refused, Dropped)
    channel.core.data_to_send()
    channel.core.send(PayloadType.OUTPUT, b"z", 0.0)
    channel.core.send(PayloadType.FLAG, b"\x00\x00\x00\x01", 0.0)
    unsigned, signed = (b"".join(parts) for parts in channel.core.data_to_send())
    assert unsigned[80:112] == bytes(32)
    assert signed[80:112] != bytes(32)


async def test_a_v1_client_like_the_aws_plugin_gets_v1_and_1024_byte_messages() -> None:
    server = EchoServer()
    port = await server.start()
    try:
        async with agent_session(forwarding_content(port)) as (fake, client):
            await client_handshake(client)
            mux = attach_mux(client, 1)
            stream = await mux.open_stream()
            payload = os.urandom(64 * 1024)
            await stream.write(payload)
            async with asyncio.timeout(10):
                echoed = b""
                while len(echoed) < len(payload):
                    echoed += await stream.read(65536)
            await stream.close()
            assert await read_all(stream) == b""  # as the AWS agent: our FIN closes the destination
            await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
            await task_result(fake)
    finally:
        await server.close()
    assert echoed == payload
    outputs = agent_outputs(client)
    assert all(len(o) <= AWS_OUTPUT_LIMIT for o in outputs)
    first_header = HEADER.unpack_from(b"".join(outputs), 0)
    assert first_header[0] == 1


async def test_ssh_sessions_offer_the_fast_path_but_no_mux() -> None:
    async with agent_session(session_content(SID, "Port", {"portNumber": "22"})) as (fake, client):
        request = await client_handshake(client)
        await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
        await task_result(fake)
    properties = request["RequestedClientActions"][0]["ActionParameters"]["Properties"]
    assert FAST_MUX_PROPERTY not in properties
    assert properties[FAST_PATH_PROPERTY] == FAST_PATH_VERSION


async def test_ssh_stream_in_large_digestless_messages_once_accepted() -> None:
    """AWS-StartSSHSession (stdio): with the fast path the destination's bytes come back in
    messages far above AWS's 1 KiB, without digests."""
    server = EchoServer()
    port = await server.start()
    payload = os.urandom(2 << 20)
    content = session_content(SID, "Port", {"portNumber": str(port)})
    try:
        async with agent_session(content) as (fake, client):
            await client_handshake(client, extensions={FAST_PATH_ACCEPTED: FAST_PATH_VERSION})
            for start in range(0, len(payload), FAST_PATH_PAYLOAD):
                await client.send_input(PayloadType.OUTPUT, payload[start : start + FAST_PATH_PAYLOAD])
            await client.wait_for(lambda: len(client.output_bytes) >= len(payload), "the echo")
            await client.send_input(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
            await task_result(fake)
    finally:
        await server.close()
    assert client.output_bytes[: len(payload)] == payload
    data_seqs = {s for s, f in client.outputs.items() if f.payload_type == PayloadType.OUTPUT and f.payload}
    assert data_seqs and data_seqs <= client.digestless_outputs
    assert max(len(o) for o in agent_outputs(client)) > 64 * 1024


def unconnected_session(
    properties: dict[str, str], agent_version: str = "3.3.987.0"
) -> tuple[PortSession, DataChannel]:
    """A client PortSession as the handshake leaves it, on a channel that is never dialled."""
    channel = DataChannel("ws://127.0.0.1:9/v1/data-channel/x", "token")
    receive_offer(channel, properties)
    return PortSession(
        channel,
        Console(),
        session_id=SID,
        properties=properties,
        agent_version=agent_version,
        handle_signals=False,
        fast_path_offered=channel.fast_path_offered,
    ), channel


async def test_client_speaks_v2_only_when_offered() -> None:
    base = {"portNumber": "80", "localPortNumber": "0", "type": "LocalPortForwarding"}
    sessions = []
    for properties in (
        base,
        {**base, FAST_MUX_PROPERTY: str(FAST_MUX_VERSION)},
        {**base, FAST_MUX_PROPERTY: "9"},
    ):
        sessions.append(unconnected_session(properties)[0])
    assert [session.fast_mux for session in sessions] == [False, True, False]
    for session in sessions:
        await session.close()


async def test_client_accepts_the_fast_path_in_stdio_mode_and_with_v2_in_mux_mode() -> None:
    base = {"portNumber": "80", "localPortNumber": "0", "type": "LocalPortForwarding"}
    fast = {FAST_MUX_PROPERTY: str(FAST_MUX_VERSION), FAST_PATH_PROPERTY: FAST_PATH_VERSION}
    accepted = ((FAST_PATH_ACCEPTED, FAST_PATH_VERSION),)
    cases = [
        (base, "3.3.987.0", ()),
        ({**base, FAST_PATH_PROPERTY: FAST_PATH_VERSION}, "3.3.987.0", ()),  # no v2: no fast path
        ({**base, **fast}, "3.3.987.0", accepted),
        ({**base, **fast, FAST_PATH_PROPERTY: "7"}, "3.3.987.0", ()),
        ({**base, **fast}, "3.0.100.0", ()),  # an agent too old for mux: basic mode
        ({"portNumber": "22", FAST_PATH_PROPERTY: FAST_PATH_VERSION}, "3.3.987.0", accepted),  # SSH
        ({"portNumber": "22"}, "3.3.987.0", ()),  # SSH with an agent that offers nothing
    ]
    for properties, agent_version, expected in cases:
        session, channel = unconnected_session(properties, agent_version)
        assert session.fast_path is bool(expected), properties
        if session.fast_path:
            assert channel.accept_fast_path() == expected
        assert channel.core.stream.digest_output is (not expected)
        await session.close()

"""Replay the gateway side of the real agent's captures against our agent.

A fake MGS sends the captured ``interactive_shell`` and, acting as the client, the captured
client frames (byte for byte), each released at the point the capture shows it: after the agent
acked the earlier input and sent the output that preceded it. Our agent must answer with the
real agent's frames: the same acks (identical payload bytes, since they ack the captured
messages), the same session-state and task-complete payloads, output with the same bytes, the
same handshake, and the same REST calls and signatures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Callable
from typing import Any

import pytest
from tests.unit.agent.fake_mgs import CONTROL_TOKEN, DATA_TOKEN, FakeClient, FakeMgs, running_agent

from openssm.agent.config import AGENT_VERSION
from openssm.protocol.frames import FLAG_ACK, Frame, MessageType, PayloadType, decode
from openssm.protocol.smux import decode_frames

Event = dict[str, Any]
INSTANCE_ID = "i-0123456789abcdef0"
SESSION_ID = "tester-0a1b2c3d4e5f60718"
CAPTURED_AGENT_VERSION = "3.3.0.0"


def _frame(event: Event) -> Frame:
    return decode(bytes.fromhex(event["hex"]))


@dataclasses.dataclass
class Step:
    """One captured client frame and what must have happened before the capture sent it."""

    data: bytes
    inputs_before: int  # client inputs sent earlier (all must be acked)
    output_bytes_before: int  # Output-type payload bytes the agent had sent
    other_outputs_before: int  # non-Output stream messages (handshake) the agent had sent


def client_steps(events: list[Event]) -> list[Step]:
    steps: list[Step] = []
    output_bytes = other_outputs = 0
    for event in events:
        if event["kind"] != "ws-binary" or event["channel"] != "ws-data":
            continue
        frame = _frame(event)
        if event["from"] == "agent" and frame.message_type == MessageType.OUTPUT_STREAM_DATA:
            if frame.payload_type == PayloadType.OUTPUT:
                output_bytes += len(frame.payload)
            else:
                other_outputs += 1
        elif event["from"] == "gateway" and frame.message_type == MessageType.INPUT_STREAM_DATA:
            steps.append(Step(bytes.fromhex(event["hex"]), len(steps), output_bytes, other_outputs))
    return steps


async def play_client(client: FakeClient, steps: list[Step]) -> None:
    for step in steps:
        await client.wait_for(
            lambda step=step: (  # type: ignore[misc]
                len(client.output_bytes) >= step.output_bytes_before
                and sum(1 for f in client.outputs.values() if f.payload_type != PayloadType.OUTPUT)
                >= step.other_outputs_before
                and all(seq in client.acked_inputs for seq in range(step.inputs_before))
            ),
            f"the agent's state before client input #{step.inputs_before}",
        )
        await client.send_raw(step.data)
    await client.wait_for(lambda: len(client.acked_inputs) == len(steps), "acks for every client input")


def captured_agent_frames(events: list[Event], channel: str) -> list[Frame]:
    return [
        _frame(e)
        for e in events
        if e["kind"] == "ws-binary" and e["channel"] == channel and e["from"] == "agent"
    ]


def captured_request(events: list[Event], path_prefix: str, method: str = "POST") -> list[Event]:
    return [
        e
        for e in events
        if e["kind"] == "http-request" and e["path"].startswith(path_prefix) and e["method"] == method
    ]


def signed_headers_of(event: Event) -> str:
    return str(event["decoded"]["authorization"]["SignedHeaders"])


def interactive_shell_of(events: list[Event], edit: Callable[[dict[str, Any]], None] | None = None) -> bytes:
    event = next(e for e in events if e["channel"] == "ws-control" and e["from"] == "gateway")
    frame = _frame(event)
    assert frame.message_type == MessageType.INTERACTIVE_SHELL
    if edit is None:
        return bytes.fromhex(event["hex"])
    outer = frame.json()
    content = json.loads(outer["Content"])
    edit(content)
    outer["Content"] = json.dumps(content, separators=(",", ":"))
    return Frame(MessageType.INTERACTIVE_SHELL, payload=json.dumps(outer).encode()).encode()


async def replay(events: list[Event], shell_frame: bytes) -> tuple[FakeMgs, FakeClient]:
    fake = FakeMgs()
    await fake.start()
    try:
        async with running_agent(fake):
            await fake.send_control(shell_frame)
            client = await fake.next_client()
            await play_client(client, client_steps(events))
            await asyncio.wait_for(fake.task_complete_received.wait(), 15)
            await asyncio.wait_for(client.closed.wait(), 5)
    finally:
        await fake.close()
    return fake, client


def assert_common(fake: FakeMgs, client: FakeClient, events: list[Event]) -> None:
    # Health pings: short then full, same members and signed headers as the real agent.
    captured_pings = [e for e in captured_request(events, "/") if e["path"] == "/"]
    captured_pings = [
        e for e in captured_pings if "UpdateInstanceInformation" in e["headers"]["X-Amz-Target"]
    ]
    ours = fake.requests_to("/", "AmazonSSM.UpdateInstanceInformation")
    assert len(ours) >= 2
    for mine, theirs in zip(ours[:2], captured_pings[:2], strict=True):
        assert list(mine.json()) == list(theirs["decoded"]["json"])
        assert mine.signed_headers() == signed_headers_of(theirs)
        assert mine.verify().service == "ssm"
    assert ours[0].json()["AgentVersion"] == AGENT_VERSION

    # MGS REST calls and WebSocket upgrades: bodies, signed headers, service, valid signatures.
    for prefix in ("/v1/control-channel/", "/v1/data-channel/"):
        for method in ("POST", "GET"):
            (theirs,) = captured_request(events, prefix, method)
            (mine,) = [r for r in fake.requests_to(prefix) if r.method == method]
            assert mine.path == theirs["path"].split("?")[0]
            assert mine.query == theirs["path"].partition("?")[2]
            assert mine.signed_headers() == signed_headers_of(theirs)
            parsed = mine.verify()
            assert parsed.service == "ssmmessages"
            if method == "POST":
                assert list(mine.json()) == list(theirs["decoded"]["json"])
                assert mine.header("Content-Type") == "application/json"

    # Open frames: same members in the same order; tokens from our fake.
    control_open = json.loads(
        next(e for e in events if e["channel"] == "ws-control" and e["kind"] == "ws-text")["text"]
    )
    assert fake.control_open is not None
    assert list(fake.control_open) == list(control_open)
    assert fake.control_open["TokenValue"] == CONTROL_TOKEN
    assert fake.control_open["AgentVersion"] == AGENT_VERSION
    assert {
        k: v for k, v in fake.control_open.items() if k not in {"RequestId", "TokenValue", "AgentVersion"}
    } == {k: v for k, v in control_open.items() if k not in {"RequestId", "TokenValue", "AgentVersion"}}
    data_open = json.loads(
        next(e for e in events if e["channel"] == "ws-data" and e["kind"] == "ws-text")["text"]
    )
    assert fake.data_open is not None
    assert list(fake.data_open) == list(data_open)
    assert fake.data_open["TokenValue"] == DATA_TOKEN
    assert fake.data_open["ClientInstanceId"] == data_open["ClientInstanceId"] == INSTANCE_ID

    # agent_task_complete: byte-identical payload, acknowledged once.
    (captured_complete,) = captured_agent_frames(events, "ws-control")
    assert [f.payload for f in fake.task_completes] == [captured_complete.payload]
    (complete,) = fake.task_completes
    assert (complete.sequence_number, complete.flags, complete.payload_type) == (0, 0, 0)


def assert_data_frames(client: FakeClient, events: list[Event], *, terminating: bool) -> list[Frame]:
    """Session states and acks exactly as captured; returns our output frames for more checks."""
    captured = captured_agent_frames(events, "ws-data")
    states = [f for f in client.frames if f.message_type == MessageType.AGENT_SESSION_STATE]
    captured_states = [f for f in captured if f.message_type == MessageType.AGENT_SESSION_STATE]
    assert [f.payload for f in states] == [f.payload for f in captured_states]
    assert all((f.sequence_number, f.flags, f.payload_type) == (0, FLAG_ACK, 0) for f in states)
    assert client.frames[0].message_type == MessageType.AGENT_SESSION_STATE  # Connected first
    if terminating:
        assert client.frames[-1].payload == captured_states[-1].payload  # Terminating last
        assert b'"Terminating"' in captured_states[-1].payload
    else:
        assert all(b"Terminating" not in f.payload for f in states)

    acks = [f for f in client.frames if f.message_type == MessageType.ACKNOWLEDGE]
    captured_acks = [f for f in captured if f.message_type == MessageType.ACKNOWLEDGE]
    assert [f.payload for f in acks] == [f.payload for f in captured_acks]
    assert all((f.sequence_number, f.flags, f.payload_type) == (0, FLAG_ACK, 0) for f in acks)

    outputs = [f for f in client.frames if f.message_type == MessageType.OUTPUT_STREAM_DATA]
    assert [f.sequence_number for f in outputs] == list(range(len(outputs)))
    assert [f.flags for f in outputs] == [1] + [0] * (len(outputs) - 1)
    assert all(0 < len(f.payload) <= 1024 for f in outputs)
    return outputs


def captured_output_text(events: list[Event]) -> bytes:
    return b"".join(
        f.payload
        for f in captured_agent_frames(events, "ws-data")
        if f.message_type == MessageType.OUTPUT_STREAM_DATA and f.payload_type == PayloadType.OUTPUT
    )


async def test_interactive_command_echo_hello(load_capture: Callable[[str], list[Event]]) -> None:
    events = load_capture("agent-session")
    fake, client = await replay(events, interactive_shell_of(events))
    assert_common(fake, client, events)
    outputs = assert_data_frames(client, events, terminating=True)
    assert all(f.payload_type == PayloadType.OUTPUT for f in outputs)
    assert client.output_bytes == captured_output_text(events) == b"hello\r\n"


async def test_interactive_sh_with_typed_input(
    load_capture: Callable[[str], list[Event]], monkeypatch: pytest.MonkeyPatch
) -> None:
    events = load_capture("agent-shell-input")
    monkeypatch.setenv("PS1", "# ")  # the capture ran as root; the prompt must not depend on our uid
    fake, client = await replay(events, interactive_shell_of(events))
    assert_common(fake, client, events)
    outputs = assert_data_frames(client, events, terminating=True)
    assert all(f.payload_type == PayloadType.OUTPUT for f in outputs)
    assert client.output_bytes == captured_output_text(events)


class EchoServer:
    """The capture's destination: answers every read with ``echo:`` + the bytes."""

    def __init__(self) -> None:
        self.accepted = 0
        self.received: list[bytes] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        sock: socket.socket = self.server.sockets[0]
        return int(sock.getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        while data := await reader.read(1024):
            self.received.append(data)
            writer.write(b"echo:" + data)
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def smux_frames(payloads: list[bytes]) -> list[tuple[int, int, bytes]]:
    frames = decode_frames(b"".join(payloads))
    return [(int(f.command), f.stream_id, bytes(f.data)) for f in frames]


async def test_port_forwarding_over_smux(load_capture: Callable[[str], list[Event]]) -> None:
    events = load_capture("agent-port")
    echo = EchoServer()
    port = await echo.start()
    captured_port = "19470"  # the capture's destination port (Parameters.portNumber)

    def use_local_port(content: dict[str, Any]) -> None:
        assert content["Parameters"]["portNumber"] == captured_port
        content["Parameters"]["portNumber"] = str(port)

    try:
        fake, client = await replay(events, interactive_shell_of(events, use_local_port))
    finally:
        await echo.close()
    assert_common(fake, client, events)
    outputs = assert_data_frames(client, events, terminating=False)
    captured_outputs = [
        f
        for f in captured_agent_frames(events, "ws-data")
        if f.message_type == MessageType.OUTPUT_STREAM_DATA
    ]

    # Handshake: the request is the real agent's, byte for byte, but for version, port and the
    # offers to OpenSSM clients (smux v2 and the fast path: extra Properties keys AWS's plugin
    # ignores; openssm.transport.mux).
    request, complete = outputs[0], outputs[1]
    assert request.payload_type == PayloadType.HANDSHAKE_REQUEST
    expected = bytes(captured_outputs[0].payload).replace(
        CAPTURED_AGENT_VERSION.encode(), AGENT_VERSION.encode()
    )
    offers = (b'"openssmFastPath":"1",', b'"openssmMuxVersion":"2",')
    stripped = bytes(request.payload)
    for offer in offers:
        assert offer in stripped
        stripped = stripped.replace(offer, b"")
    assert stripped == expected.replace(captured_port.encode(), str(port).encode())
    assert complete.payload_type == PayloadType.HANDSHAKE_COMPLETE
    body = complete.json()
    assert list(body) == list(captured_outputs[1].json())
    assert isinstance(body["HandshakeTimeToComplete"], int) and body["CustomerMessage"] == ""

    # Streams: the destination was dialled once per SYN; the smux frames match per stream.
    assert echo.accepted == 2
    ours = smux_frames([bytes(f.payload) for f in outputs[2:]])
    theirs = smux_frames([bytes(f.payload) for f in captured_outputs[2:]])
    for stream_id in (3, 5):
        assert [f for f in ours if f[1] == stream_id] == [f for f in theirs if f[1] == stream_id]
    assert sorted(ours) == sorted(theirs)
    assert all(f.payload_type == PayloadType.OUTPUT for f in outputs[2:])

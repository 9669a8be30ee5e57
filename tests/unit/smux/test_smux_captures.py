"""Real smux bytes from AWS's plugin and agent (captures/*.jsonl, ``decoded.Smux``).

Each direction's Output payloads are one byte stream; for every message, the frames it completes
must be exactly the ones listed. Then our session state machine, given the same inputs, must
produce the captured bytes itself.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from openssm.protocol import frames
from openssm.protocol.smux import (
    Command,
    DataReceived,
    FrameParser,
    SmuxFrame,
    SmuxSession,
    StreamEnded,
    StreamOpened,
)

CAPTURES = ["plugin-port-mux.jsonl", "agent-port.jsonl"]


def smux_messages(path: pathlib.Path) -> list[dict[str, Any]]:
    """Output-payload messages of the data channel, in order."""
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        event
        for event in events
        if event.get("kind") == "ws-binary"
        and event["channel"] == "ws-data"
        and event["decoded"]["PayloadType"] == frames.PayloadType.OUTPUT
    ]


def listed(frame: dict[str, Any]) -> SmuxFrame:
    if "dataText" in frame:
        data = frame["dataText"].encode()
    else:
        data = bytes.fromhex(frame.get("dataHex", ""))
    assert len(data) == frame["length"]
    assert Command(frame["cmd"]).name == frame["cmdName"]
    return SmuxFrame(frame["ver"], Command(frame["cmd"]), frame["streamId"], data)


@pytest.mark.parametrize("name", CAPTURES)
def test_captured_bytes_decode_to_the_listed_frames(captures: pathlib.Path, name: str) -> None:
    parsers: dict[tuple[str, str], FrameParser] = {}
    wire: dict[tuple[str, str], bytes] = {}
    reencoded: dict[tuple[str, str], bytes] = {}
    for event in smux_messages(captures / name):
        direction = (event["from"], event["to"])
        payload = bytes(frames.decode(bytes.fromhex(event["hex"])).payload)
        decoded = parsers.setdefault(direction, FrameParser(1)).feed(payload)
        assert decoded == [listed(frame) for frame in event["decoded"].get("Smux", [])], (
            f"event #{event['n']}"
        )
        wire[direction] = wire.get(direction, b"") + payload
        reencoded[direction] = reencoded.get(direction, b"") + b"".join(frame.encode() for frame in decoded)
    assert len(wire) == 2, "both directions carry smux"
    assert reencoded == wire
    assert all(parser.pending == 0 for parser in parsers.values())


def _payloads(captures: pathlib.Path, name: str, sender: str) -> list[bytes]:
    return [
        bytes(frames.decode(bytes.fromhex(event["hex"])).payload)
        for event in smux_messages(captures / name)
        if event["from"] == sender
    ]


def test_our_client_reproduces_the_plugin(captures: pathlib.Path) -> None:
    """The plugin's side of plugin-port-mux.jsonl, produced by our client session."""
    plugin = _payloads(captures, "plugin-port-mux.jsonl", "plugin")
    gateway = _payloads(captures, "plugin-port-mux.jsonl", "gateway")
    client = SmuxSession(is_client=True)

    first, second = client.open_stream(), client.open_stream()
    assert (first, second) == (3, 5)
    assert client.data_to_send(8) == plugin[0]
    assert client.data_to_send() == plugin[1]
    client.write(3, b"hello from client 1")
    assert client.data_to_send() == plugin[2]
    assert client.receive(gateway[0]) == [DataReceived(3, 24)]
    assert client.read(3, 100) == b"pong:hello from client 1"
    client.write(5, b"hello from client 2")
    assert client.data_to_send() == plugin[3]
    assert client.receive(gateway[1]) == [DataReceived(5, 24)]
    client.close_stream(3)
    assert client.data_to_send() == plugin[4]
    assert client.receive(gateway[2]) == [StreamEnded(3)]
    client.close_stream(5)
    assert client.data_to_send() == plugin[5]
    client.receive(gateway[3])
    assert client.read(5, 100) == b"pong:hello from client 2"
    assert client.stream_count == 0, "streams closed both ways and drained are forgotten"
    assert len(plugin) == 6 and len(gateway) == 4


def test_our_server_reproduces_the_agent(captures: pathlib.Path) -> None:
    """The agent's side of agent-port.jsonl, including FIN 5 + FIN 3 in one message."""
    agent = _payloads(captures, "agent-port.jsonl", "agent")
    gateway = _payloads(captures, "agent-port.jsonl", "gateway")
    server = SmuxSession(is_client=False)

    events = [event for payload in gateway[:4] for event in server.receive(payload)]
    assert events == [StreamOpened(3), StreamOpened(5), DataReceived(3, 19), DataReceived(5, 19)]
    assert server.pending_send == 0, "the smux server sends nothing in reply to SYN"
    assert (server.accept(), server.accept(), server.accept()) == (3, 5, None)
    for stream_id, message in ((5, agent[0]), (3, agent[1])):
        received = server.read(stream_id, 1000)
        server.write(stream_id, b"echo:" + received)
        assert server.data_to_send() == message
    assert [event for payload in gateway[4:] for event in server.receive(payload)] == [
        StreamEnded(3),
        StreamEnded(5),
    ]
    server.close_stream(5)
    server.close_stream(3)
    assert server.data_to_send() == agent[2]
    assert server.stream_count == 0
    assert len(agent) == 3 and len(gateway) == 6

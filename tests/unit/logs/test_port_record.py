"""Port session records: smux (mux mode) and raw byte streams (basic/SSH mode)."""

from __future__ import annotations

import struct

from openssm.logs.port_record import PortRecorder, describe, destination_of, is_local_port_forwarding
from openssm.protocol.documents import builtin_documents
from openssm.protocol.smux import Command, encode_frame

OUTPUT, FLAG = 1, 10


def _flag(value: int) -> bytes:
    return struct.pack(">I", value)


def _kinds(events: list[dict[str, object]]) -> list[object]:
    return [event["event"] for event in events]


def test_destination_comes_from_the_document_and_parameters() -> None:
    remote = {
        "document_content": builtin_documents()["AWS-StartPortForwardingSessionToRemoteHost"],
        "parameters": {"host": ["db.internal"], "portNumber": ["5432"], "localPortNumber": ["0"]},
    }
    assert destination_of(remote) == "db.internal:5432"
    assert is_local_port_forwarding(remote)
    ssh = {"document_content": builtin_documents()["AWS-StartSSHSession"], "parameters": {}}
    assert destination_of(ssh) == "localhost:22" and not is_local_port_forwarding(ssh)


def test_mux_connections_bytes_and_timings() -> None:
    recorder = PortRecorder("localhost:80", mux_possible=True)
    events = recorder.input(OUTPUT, encode_frame(1, Command.SYN, 3), 1.0)
    assert _kinds(events) == ["connection_opened"] and events[0]["connection"] == 3
    # Frames split across messages and several frames in one message.
    request = encode_frame(1, Command.PSH, 3, b"GET / HTTP/1.0\r\n\r\n")
    assert recorder.input(OUTPUT, request[:5], 1.1) == []
    assert recorder.input(OUTPUT, request[5:] + encode_frame(1, Command.SYN, 5), 1.2)[0]["connection"] == 5
    reply = encode_frame(1, Command.PSH, 3, b"x" * 1000) + encode_frame(1, Command.PSH, 5, b"y" * 10)
    assert recorder.output(OUTPUT, reply, 1.5) == []
    assert recorder.input(OUTPUT, encode_frame(1, Command.FIN, 3), 2.0) == []
    closed = recorder.output(OUTPUT, encode_frame(1, Command.FIN, 3), 2.5)
    assert closed == [
        {
            "t": 2.5,
            "event": "connection_closed",
            "connection": 3,
            "how": "closed",
            "bytes_to_destination": len(b"GET / HTTP/1.0\r\n\r\n"),
            "bytes_from_destination": 1000,
            "duration": 1.5,
        }
    ]
    assert _kinds(recorder.output(FLAG, _flag(3), 2.6)) == ["connect_failed"]
    final = recorder.finish(3.0)
    assert _kinds(final) == ["connection_closed", "summary"]
    assert final[0]["connection"] == 5 and final[0]["how"] == "session_ended"
    summary = final[1]
    assert summary["mode"] == "mux" and summary["connections"] == 2 and summary["failed_connections"] == 1
    assert "2 connections to localhost:80" in describe(summary)
    assert "connection 3 closed after 1.500s" in describe(closed[0])


def test_basic_mode_counts_bytes_per_connection_until_disconnect() -> None:
    recorder = PortRecorder("localhost:22", mux_possible=False)
    opened = recorder.output(OUTPUT, b"SSH-2.0-OpenSSH_9.6\r\n", 0.5)  # server speaks first
    assert _kinds(opened) == ["connection_opened"] and opened[0]["connection"] == 1
    assert recorder.input(OUTPUT, b"SSH-2.0-client\r\n", 0.6) == []
    closed = recorder.input(FLAG, _flag(1), 1.0)
    assert closed[0]["bytes_to_destination"] == 16 and closed[0]["bytes_from_destination"] == 21
    assert recorder.input(OUTPUT, b"again", 2.0)[0]["connection"] == 2
    summary = recorder.finish(3.0)[-1]
    assert summary["mode"] == "basic" and summary["connections"] == 2
    assert summary["bytes_to_destination"] == 21


def test_mux_possible_but_not_smux_falls_back_to_basic() -> None:
    recorder = PortRecorder("localhost:80", mux_possible=True)
    assert _kinds(recorder.input(OUTPUT, b"GET / HTTP/1.1\r\n", 0.1)) == ["connection_opened"]
    assert recorder.mode == "basic"


def test_a_broken_smux_stream_is_reported_and_counted_from_there() -> None:
    recorder = PortRecorder("localhost:80", mux_possible=True)
    recorder.input(OUTPUT, encode_frame(1, Command.SYN, 3), 0.1)
    events = recorder.input(OUTPUT, b"\x09\x09garbage!", 0.2)
    assert _kinds(events) == ["unreadable_mux_stream"]
    assert recorder.finish(1.0)[-1]["bytes_to_destination"] == 8 + 10


def test_a_bad_header_split_across_payloads_is_reported_too() -> None:
    recorder = PortRecorder("localhost:80", mux_possible=True)
    recorder.input(OUTPUT, encode_frame(1, Command.SYN, 3), 0.1)
    assert recorder.input(OUTPUT, b"\x01\x09", 0.2) == []
    assert _kinds(recorder.input(OUTPUT, b"garbage", 0.3)) == ["unreadable_mux_stream"]
    assert recorder.mode == "basic"


def test_payloads_may_be_memoryviews_of_the_relayed_frames() -> None:
    recorder = PortRecorder("localhost:80", mux_possible=True)
    frame = b"header" + encode_frame(1, Command.SYN, 3) + encode_frame(1, Command.PSH, 3, b"x" * 5000)
    assert _kinds(recorder.input(OUTPUT, memoryview(frame)[6:], 0.1)) == ["connection_opened"]
    recorder.output(OUTPUT, memoryview(encode_frame(1, Command.PSH, 3, b"y" * 7)), 0.2)
    recorder.input(OUTPUT, memoryview(encode_frame(1, Command.FIN, 3)), 0.3)
    closed = recorder.output(OUTPUT, memoryview(encode_frame(1, Command.FIN, 3)), 0.4)
    assert closed[0]["bytes_to_destination"] == 5000 and closed[0]["bytes_from_destination"] == 7
    assert recorder.input(FLAG, memoryview(_flag(2)), 0.5)[0]["event"] == "client_terminated_session"

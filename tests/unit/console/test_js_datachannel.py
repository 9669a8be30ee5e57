"""The browser's data channel code (static/js/frames.js, datachannel.js) run under Node and checked
against OpenSSM's Python codec: byte layout, UUID half-swap, digests, acks, in-order delivery,
retransmission, Size after start, 1 KiB input chunks and the channel_closed reason."""

from __future__ import annotations

import json
import pathlib
import random
import shutil
import subprocess
import uuid
from typing import Any

import pytest
from tests.conftest import REPO_ROOT, require

from openssm.client.datachannel import DEFAULT_RESUME_WINDOW, RECONNECTED, RECONNECTING
from openssm.protocol.backoff import Backoff
from openssm.protocol.frames import Frame, MessageType, PayloadType, ack_for, decode, go_json

JS_DIR = REPO_ROOT / "src" / "openssm" / "console" / "static" / "js"


def run_node(tmp_path: pathlib.Path, body: str) -> Any:
    node = shutil.which("node")
    require(node is not None, "node is not installed (needed to run the console's JS)")
    assert node is not None
    script = tmp_path / "run.mjs"
    script.write_text(
        f'import * as frames from "{(JS_DIR / "frames.js").as_uri()}";\n'
        f'import * as dc from "{(JS_DIR / "datachannel.js").as_uri()}";\n'
        "const hex = (b) => Buffer.from(b).toString('hex');\n"
        "const unhex = (h) => new Uint8Array(Buffer.from(h, 'hex'));\n"
        # One turn of Node's loop: every timer already set for 0 ms has run (timers are FIFO).
        "const turn = () => new Promise((r) => setTimeout(r, 0));\n"
        # Until `done()` holds, turn by turn (a deadline of 2000 turns, not a time).
        "const until = async (done) => { for (let i = 0; i < 2000 && !done(); i++) await turn(); };\n"
        # Until a client has handled every frame and written everything it queued.
        "const settle = async (client) => { for (let i = 0; i < 100; i++) {\n"
        "  const [a, b] = [client.incoming, client.outgoing]; await a; await b; await turn();\n"
        "  if (a === client.incoming && b === client.outgoing) return; } };\n"
        "const out = {};\n" + body + "\nprocess.stdout.write(JSON.stringify(out));\n"
    )
    result = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_js_encoding_is_what_python_decodes(tmp_path: pathlib.Path) -> None:
    out = run_node(
        tmp_path,
        """
        out.frame = hex(await frames.encodeFrame({messageType: "input_stream_data", sequenceNumber: 7,
            flags: 0, payloadType: 3, payload: new TextEncoder().encode('{"cols":80,"rows":24}'),
            messageId: "01234567-89ab-cdef-0011-223344556677", createdDate: 1700000000123}));
        out.empty = hex(await frames.encodeFrame({messageType: "acknowledge", flags: 3}));
        out.wire = hex(frames.uuidToWire("01234567-89ab-cdef-0011-223344556677"));
        """,
    )
    frame = decode(bytes.fromhex(out["frame"]), verify_digest=True)
    assert frame == Frame(
        "input_stream_data",
        7,
        0,
        3,
        b'{"cols":80,"rows":24}',
        uuid.UUID("01234567-89ab-cdef-0011-223344556677"),
        1700000000123,
    )
    assert bytes.fromhex(out["frame"]) == frame.encode()  # byte for byte, spaces padding included
    assert out["wire"] == "00112233445566770123456789abcdef"
    empty = bytes.fromhex(out["empty"])
    assert len(empty) == 120 and decode(empty).message_type == "acknowledge"


def test_js_decodes_python_frames_and_checks_digests(tmp_path: pathlib.Path) -> None:
    frame = Frame(MessageType.OUTPUT_STREAM_DATA, 42, 1, PayloadType.OUTPUT, b"hello \xe2\x9c\x93")
    good = frame.encode()
    bad = good[:-1] + b"X"
    out = run_node(
        tmp_path,
        f"""
        const good = await frames.decodeFrame(unhex("{good.hex()}"));
        const bad = await frames.decodeFrame(unhex("{bad.hex()}"));
        out.good = {{...good, payload: hex(good.payload)}};
        out.badDigest = bad.digestOk;
        try {{ await frames.decodeFrame(new Uint8Array(50)); }} catch (e) {{ out.short = e.message; }}
        out.ack = hex(await frames.ackFor(good));
        """,
    )
    assert out["good"]["messageType"] == "output_stream_data"
    assert out["good"]["sequenceNumber"] == 42 and out["good"]["flags"] == 1
    assert out["good"]["messageId"] == str(frame.message_id)
    assert bytes.fromhex(out["good"]["payload"]) == frame.payload and out["good"]["digestOk"] is True
    assert out["badDigest"] is False
    assert "shorter than the header" in out["short"]
    ack = decode(bytes.fromhex(out["ack"]), verify_digest=True)
    assert ack.payload == ack_for(frame).payload  # the same JSON bytes the real peers send
    assert (ack.message_type, ack.flags, ack.sequence_number) == ("acknowledge", 3, 0)


def output(seq: int, data: bytes, payload_type: int = PayloadType.OUTPUT) -> str:
    return Frame(MessageType.OUTPUT_STREAM_DATA, seq, 1 if seq == 0 else 0, payload_type, data).encode().hex()


def test_channel_orders_acks_retransmits_and_reports_the_end(tmp_path: pathlib.Path) -> None:
    corrupt = bytearray(bytes.fromhex(output(2, b"C")))
    corrupt[-1] ^= 0xFF
    closed = Frame(
        MessageType.CHANNEL_CLOSED,
        0,
        3,
        0,
        go_json({"SessionId": "s-1", "MessageType": "channel_closed", "Output": "Session idle timeout"}),
    ).encode()
    incoming = [output(1, b"B"), output(0, b"A"), output(0, b"A"), corrupt.hex(), output(2, b"C")]
    out = run_node(
        tmp_path,
        f"""
        class FakeSocket {{
          constructor(url) {{ this.url = url; this.sent = []; this.readyState = 1; FakeSocket.last = this;
            setTimeout(() => this.onopen(), 0); }}
          send(data) {{ this.sent.push(typeof data === "string" ? data : hex(data)); }}
          close() {{ this.readyState = 3; }}
        }}
        const outputs = [];
        let closed = null;
        let clock = 0;  // the client's clock: its resends follow it, not the wall's
        const client = new dc.DataChannelClient({{streamUrl: "ws://gw/v1/data-channel/s-1", tokenValue: "TOKEN",
          sessionId: "s-1", WebSocketImpl: FakeSocket, onOutput: (b) => outputs.push(new TextDecoder().decode(b)),
          onClosed: (end) => {{ closed = end; }}, now: () => clock}});
        client.sendSize(80, 24);
        client.start();
        await settle(client);
        const ws = FakeSocket.last;
        for (const h of {json.dumps(incoming)}) ws.onmessage({{data: unhex(h).buffer}});
        await settle(client);
        client.sendInput(new Uint8Array(3000).fill(120));
        await settle(client);
        // Ack the Size message (input seq 0) only: seq 1 must be sent again until acked.
        const sizeFrame = await frames.decodeFrame(unhex(ws.sent.find((s, i) => i > 0 && s.length > 240 &&
            s.slice(8, 72).startsWith(Buffer.from("input_stream_data").toString("hex")))));
        ws.onmessage({{data: (await frames.ackFor(sizeFrame)).buffer}});
        await settle(client);
        for (let i = 0; i < 9; i++) {{  // 900 ms of the client's time, a timer tick each 100 ms
          clock += dc.RESEND_INTERVAL_MS;
          client.tick();
          await settle(client);
        }}
        ws.onmessage({{data: unhex("{closed.hex()}").buffer}});
        await settle(client);
        out.sent = ws.sent;
        out.outputs = outputs;
        out.closed = closed;
        out.url = ws.url;
        """,
    )
    assert out["url"] == "ws://gw/v1/data-channel/s-1"
    opening = json.loads(out["sent"][0])
    assert opening["TokenValue"] == "TOKEN" and opening["MessageSchemaVersion"] == "1.0"
    assert set(opening) == {"MessageSchemaVersion", "RequestId", "TokenValue", "ClientId", "ClientVersion"}
    assert out["outputs"] == ["A", "B", "C"]  # in order, each once, the corrupt copy dropped
    sent = [decode(bytes.fromhex(h), verify_digest=True) for h in out["sent"][1:]]
    acks = [
        json.loads(bytes(f.payload))["AcknowledgedMessageSequenceNumber"]
        for f in sent
        if f.message_type == "acknowledge"
    ]
    assert acks[:4] == [1, 0, 0, 2]  # out-of-order acked at once, duplicate re-acked, corrupt not acked
    inputs = [f for f in sent if f.message_type == "input_stream_data"]
    first_send: dict[int, Frame] = {}
    for f in inputs:
        first_send.setdefault(f.sequence_number, f)
    assert first_send[0].payload_type == PayloadType.SIZE and json.loads(bytes(first_send[0].payload)) == {
        "cols": 80,
        "rows": 24,
    }
    assert [len(first_send[s].payload) for s in (1, 2, 3)] == [1024, 1024, 952]
    assert all(first_send[s].payload_type == PayloadType.OUTPUT for s in (1, 2, 3))
    assert all(f.flags == 0 for f in inputs)
    resends = [f.sequence_number for f in inputs].count(1)
    assert resends >= 2  # unacked head retransmitted on the RTO
    assert [f.sequence_number for f in inputs].count(0) == 1  # acked: never resent
    assert out["closed"]["kind"] == "idle" and "idle timeout" in out["closed"]["title"]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("", "exited"),
        ("Session idle timeout", "idle"),
        ("Session reached maximum duration", "max-duration"),
        ("Terminated by arn:aws:iam::000000000000:user/admin", "terminated"),
        ("Agent closed the data channel", "agent-gone"),
    ],
)
def test_end_reasons_from_the_gateway_are_classified(tmp_path: pathlib.Path, text: str, kind: str) -> None:
    out = run_node(tmp_path, f"out.end = dc.classifyEnd({json.dumps(text)});")
    assert out["end"]["kind"] == kind


def test_handshake_is_answered_and_size_follows_completion(tmp_path: pathlib.Path) -> None:
    request = {
        "AgentVersion": "3.3.0.0",
        "RequestedClientActions": [
            {
                "ActionType": "SessionType",
                "ActionParameters": {"SessionType": "InteractiveCommands", "Properties": None},
            }
        ],
    }
    complete = {"HandshakeTimeToComplete": 1000, "CustomerMessage": "Welcome"}
    incoming = [
        output(0, go_json(request), PayloadType.HANDSHAKE_REQUEST),
        output(1, go_json(complete), PayloadType.HANDSHAKE_COMPLETE),
    ]
    out = run_node(
        tmp_path,
        f"""
        class FakeSocket {{
          constructor() {{ this.sent = []; this.readyState = 1; FakeSocket.last = this; setTimeout(() => this.onopen(), 0); }}
          send(data) {{ this.sent.push(typeof data === "string" ? data : hex(data)); }}
          close() {{ this.readyState = 3; }}
        }}
        const notices = [];
        const client = new dc.DataChannelClient({{streamUrl: "ws://gw/x", tokenValue: "T", sessionId: "s",
          WebSocketImpl: FakeSocket, onNotice: (t) => notices.push(t)}});
        client.sendSize(100, 30);
        client.start();
        await settle(client);
        for (const h of {json.dumps(incoming)}) FakeSocket.last.onmessage({{data: unhex(h).buffer}});
        await settle(client);
        out.sent = FakeSocket.last.sent.slice(1);
        out.notices = notices;
        client.close();
        """,
    )
    sent = [decode(bytes.fromhex(h), verify_digest=True) for h in out["sent"]]
    inputs = [f for f in sent if f.message_type == "input_stream_data"]
    assert [f.payload_type for f in inputs] == [PayloadType.HANDSHAKE_RESPONSE, PayloadType.SIZE]
    response = json.loads(bytes(inputs[0].payload))
    assert response["ProcessedClientActions"] == [
        {"ActionType": "SessionType", "ActionStatus": 1, "ActionResult": None, "Error": ""}
    ]
    assert json.loads(bytes(inputs[1].payload)) == {"cols": 100, "rows": 30}
    assert out["notices"] == ["Welcome"]


def test_dropped_socket_resumes_with_a_new_token_and_resends_unacked(tmp_path: pathlib.Path) -> None:
    out = run_node(
        tmp_path,
        f"""
        class FakeSocket {{
          constructor(url) {{ this.url = url; this.sent = []; this.readyState = 1; FakeSocket.all.push(this);
            setTimeout(() => this.onopen(), 0); }}
          send(data) {{ this.sent.push(typeof data === "string" ? data : hex(data)); }}
          close() {{ this.readyState = 3; }}
        }}
        FakeSocket.all = [];
        let resumes = 0;
        let closed = null;
        const client = new dc.DataChannelClient({{streamUrl: "ws://gw/x", tokenValue: "T1", sessionId: "s",
          WebSocketImpl: FakeSocket, resume: async () => {{ resumes++; return "T2"; }},
          onClosed: (end) => {{ closed = end; }}}});
        client.start();
        await settle(client);
        FakeSocket.all[0].onmessage({{data: unhex("{output(0, b"prompt")}").buffer}});
        client.sendInput(new TextEncoder().encode("ls\\r"));
        await settle(client);
        FakeSocket.all[0].readyState = 3;
        FakeSocket.all[0].onclose();  // the network dropped, no channel_closed
        await until(() => FakeSocket.all.length === 2 && client.resuming === false);
        await settle(client);
        out.sockets = FakeSocket.all.map((s) => s.sent);
        out.resumes = resumes;
        out.closed = closed;
        client.close();
        """,
    )
    assert out["resumes"] == 1 and out["closed"] is None
    first, second = out["sockets"]
    open1, open2 = json.loads(first[0]), json.loads(second[0])
    assert (open1["TokenValue"], open2["TokenValue"]) == ("T1", "T2")
    assert open1["ClientId"] == open2["ClientId"]
    resent = [decode(bytes.fromhex(h)) for h in second[1:]]
    assert [f.payload for f in resent if f.message_type == "input_stream_data"][:1] == [b"ls\r"]


def test_socket_drop_without_resume_token_ends_the_session(tmp_path: pathlib.Path) -> None:
    out = run_node(
        tmp_path,
        """
        class FakeSocket {
          constructor() { this.sent = []; this.readyState = 1; FakeSocket.last = this; setTimeout(() => this.onopen(), 0); }
          send(data) { this.sent.push(data); }
          close() { this.readyState = 3; }
        }
        let closed = null;
        const client = new dc.DataChannelClient({streamUrl: "ws://gw/x", tokenValue: "T1", sessionId: "s",
          WebSocketImpl: FakeSocket, resume: async () => null, onClosed: (end) => { closed = end; }});
        client.start();
        await settle(client);
        FakeSocket.last.onclose();
        await until(() => closed !== null);
        out.closed = closed;
        """,
    )
    assert out["closed"]["kind"] == "lost"


class _Draw(random.Random):
    """A Random whose uniform() uses one given draw, as datachannel.js's ``random`` option does."""

    def __init__(self, draw: float) -> None:
        super().__init__()
        self.draw = draw

    def random(self) -> float:
        return self.draw


RESUMING_CLIENT = """
class FakeSocket {
  constructor(url) { this.sent = []; this.readyState = 0; FakeSocket.all.push(this);
    setTimeout(() => { if (FakeSocket.up) { this.readyState = 1; this.onopen(); }
                       else { this.readyState = 3; this.onclose(); } }, 0); }
  send(data) { this.sent.push(data); }
  close() { this.readyState = 3; }
}
FakeSocket.all = [];
FakeSocket.up = true;
let clock = 0;
const waits = [];
const notices = [];
let closed = null;
let resumes = 0;
const client = new dc.DataChannelClient({streamUrl: "ws://gw/x", tokenValue: "T1", sessionId: "s",
  WebSocketImpl: FakeSocket, now: () => clock, random: () => %(draw)s, resumeWindowMs: %(window_ms)s,
  wait: async (ms) => { waits.push(ms); clock += ms; await turn(); },
  resume: async () => { resumes++; if (resumes > %(failures)s) { FakeSocket.up = true; return "T2"; }
                        throw new Error("the server is restarting"); },
  onNotice: (text) => notices.push(text), onClosed: (end) => { closed = end; }});
client.start();
await settle(client);
FakeSocket.up = false;
FakeSocket.all[0].readyState = 3;
FakeSocket.all[0].onclose();  // the network dropped, no channel_closed
// Until the channel is back or the session ended (each wait above moves the fake clock only).
await until(() => closed !== null || (!client.resuming && resumes > 0));
out.waits = waits;
out.notices = notices;
out.closed = closed;
out.resumes = resumes;
out.reconnecting = dc.RECONNECTING_NOTICE;
out.window = dc.RESUME_WINDOW_MS;
client.close();
"""


def test_a_lost_channel_is_resumed_within_the_window_with_awss_backoff(tmp_path: pathlib.Path) -> None:
    # The server is away for 20 ResumeSession calls (a restart), then answers: the console kept
    # trying with the CLI's delays and says in the terminal that it waits, and that it is back.
    draw = 0.25
    out = run_node(tmp_path, RESUMING_CLIENT % {"draw": draw, "window_ms": 90_000, "failures": 20})
    assert out["closed"] is None and out["resumes"] == 21
    expected = [0.0, *Backoff(window=DEFAULT_RESUME_WINDOW).delays(_Draw(draw))][:21]
    assert out["waits"] == pytest.approx([delay * 1000 for delay in expected])
    assert out["notices"] == [f"[openssm] {RECONNECTING}", f"[openssm] {RECONNECTED}"]
    assert out["window"] == DEFAULT_RESUME_WINDOW * 1000  # the CLI's window


def test_a_channel_lost_for_the_whole_window_ends_the_session(tmp_path: pathlib.Path) -> None:
    draw = 0.9
    out = run_node(tmp_path, RESUMING_CLIENT % {"draw": draw, "window_ms": 30_000, "failures": 10_000})
    expected = [0.0, *Backoff(window=30.0).delays(_Draw(draw))]
    assert out["waits"] == pytest.approx([delay * 1000 for delay in expected])
    assert sum(out["waits"]) == pytest.approx(30_000)  # it waited the whole window, no less
    assert out["resumes"] == len(expected)
    assert out["notices"] == [f"[openssm] {RECONNECTING}"]
    assert out["closed"]["kind"] == "lost" and "30 s" in out["closed"]["detail"]


def test_on_open_is_called_once_the_open_frame_is_sent(tmp_path: pathlib.Path) -> None:
    # The shell page sets its terminal up when this fires (the gateway pairs the channel and the
    # agent starts the shell meanwhile): it must come after the open frame, not before the socket opens.
    out = run_node(
        tmp_path,
        """
        class FakeSocket {
          constructor(url) { this.sent = []; FakeSocket.last = this; setTimeout(() => this.onopen(), 0); }
          send(data) { this.sent.push(typeof data === "string" ? data : hex(data)); }
          close() {}
        }
        const seen = [];
        const client = new dc.DataChannelClient({streamUrl: "ws://gw/v1/data-channel/s-1", tokenValue: "TOKEN",
          sessionId: "s-1", WebSocketImpl: FakeSocket,
          onOpen: () => seen.push(FakeSocket.last.sent.map((m) => JSON.parse(m).TokenValue))});
        client.start();
        out.before = seen.length;
        await until(() => seen.length > 0);
        client.close();
        out.seen = seen;
        """,
    )
    assert out == {"before": 0, "seen": [["TOKEN"]]}

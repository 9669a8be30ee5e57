"""The browser's data-channel core (static/js/channelcore.js) against OpenSSM's Python core
(openssm.protocol.datachannel, client role): the same traces of dials, sends, received frames
(out of order, duplicated, corrupt, acks, pause/start, channel_closed) and timer ticks, run under
Node and in Python, must give the same states, the same messages to send and the same events."""

from __future__ import annotations

import json
import pathlib
import random
from typing import Any

import pytest
from tests.unit.console.test_js_datachannel import JS_DIR, _Draw, run_node

from openssm.protocol.backoff import AWS_RETRIES, Backoff
from openssm.protocol.datachannel import (
    Acked,
    ChannelClosed,
    DataChannelCore,
    Dropped,
    Event,
    HandshakeStep,
    PublicationPaused,
    PublicationStarted,
    Role,
    StreamData,
)
from openssm.protocol.frames import Frame, MessageType, PayloadType, ack_for, decode, go_json
from openssm.protocol.messages import ChannelClosed as ChannelClosedMessage
from openssm.protocol.messages import pause_publication, start_publication

Op = list[Any]  # ["connect", ms] | ["lost"] | ["send", ms, type, hex] | ["recv", ms, hex] | ["tick", ms]


def agent_output(seq: int, payload: bytes, payload_type: int = PayloadType.OUTPUT) -> bytes:
    return Frame(MessageType.OUTPUT_STREAM_DATA, seq, 1 if seq == 0 else 0, payload_type, payload).encode()


def ack_of_input(seq: int) -> bytes:
    return ack_for(Frame(MessageType.INPUT_STREAM_DATA, seq, 0, PayloadType.OUTPUT, b"")).encode()


def random_trace(seed: int) -> list[Op]:
    rng = random.Random(seed)
    now = 1000.0
    sent = 0
    agent_seq = 0
    ops: list[Op] = [["connect", now]]
    handshake = [
        go_json({"AgentVersion": "3.3.0.0", "RequestedClientActions": []}),
        go_json({"HandshakeTimeToComplete": 1, "CustomerMessage": ""}),
    ]
    for _ in range(rng.randint(10, 60)):
        now += rng.choice([3, 57, 130, 260, 1100]) + 0.37
        roll = rng.random()
        if roll < 0.25:
            ops.append(["send", now, PayloadType.OUTPUT, bytes([rng.randrange(256)]).hex()])
            sent += 1
        elif roll < 0.5:
            seq = max(0, agent_seq + rng.randint(-2, 2))
            agent_seq = max(agent_seq, seq + 1)
            kind = PayloadType.OUTPUT
            if seq == 0:
                kind = PayloadType.HANDSHAKE_REQUEST
            data = agent_output(seq, handshake[0] if seq == 0 else b"out %d" % seq, kind)
            if rng.random() < 0.1:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])  # corrupt: digest mismatch
            ops.append(["recv", now, data.hex()])
        elif roll < 0.7 and sent:
            ops.append(["recv", now, ack_of_input(rng.randrange(sent)).hex()])
        elif roll < 0.75:
            ops.append(["recv", now, pause_publication("s").to_frame().encode().hex()])
        elif roll < 0.8:
            ops.append(["recv", now, start_publication("s").to_frame().encode().hex()])
        elif roll < 0.84:
            ops.append(["lost"])
            now += 500
            ops.append(["connect", now])
        elif roll < 0.86:
            ops.append(
                ["recv", now, agent_output(agent_seq, handshake[1], PayloadType.HANDSHAKE_COMPLETE).hex()]
            )
            agent_seq += 1
        else:
            ops.append(["tick", now])
    if rng.random() < 0.5:
        closed = ChannelClosedMessage("s", "i-1", output="Session idle timeout").to_frame()
        ops.append(["recv", now + 1, closed.encode().hex()])
    return ops


def python_event(event: Event) -> list[Any]:
    if isinstance(event, HandshakeStep):
        return ["handshake", event.frame.sequence_number, event.handshake.value]
    if isinstance(event, StreamData):
        return ["stream", event.frame.sequence_number]
    if isinstance(event, Acked):
        return ["acked", event.sequence]
    if isinstance(event, PublicationPaused):
        return ["paused"]
    if isinstance(event, PublicationStarted):
        return ["started"]
    if isinstance(event, ChannelClosed):
        return ["closed", event.reason.name.lower(), event.output]
    assert isinstance(event, Dropped)
    return ["dropped"]


def run_python(trace: list[Op]) -> list[dict[str, Any]]:
    core = DataChannelCore(Role.CLIENT, now=trace[0][1] / 1000, verify_digest=True, require_dates=True)
    core.ready = lambda frame: True
    results = []
    for op in trace:
        events: list[Event] = []
        if op[0] == "connect":
            core.connected(op[1] / 1000)
        elif op[0] == "lost":
            core.connection_lost()
        elif op[0] == "send":
            if core.can_send:  # else refused: a driver waits for room (or for start_publication)
                core.send(op[2], bytes.fromhex(op[3]), op[1] / 1000)
        elif op[0] == "recv":
            events = core.receive_data(bytearray.fromhex(op[2]), op[1] / 1000)
        else:
            events = core.tick(op[1] / 1000)
        sent = []
        for parts in core.data_to_send():
            frame = decode(b"".join(parts))
            if frame.message_type == MessageType.ACKNOWLEDGE:
                sent.append(["ack", json.loads(bytes(frame.payload))["AcknowledgedMessageSequenceNumber"]])
            else:
                sent.append(["msg", frame.sequence_number])
        results.append(
            {
                "state": core.state.value,
                "handshake": core.handshake.value,
                "sent": sent,
                "events": [python_event(e) for e in events],
            }
        )
    return results


JS_RUNNER = """
import * as cc from "{core}";
const traces = {traces};
out.results = [];
for (const trace of traces) {{
  const core = new cc.DataChannelCore({{ now: trace[0][1] }});
  const results = [];
  for (const op of trace) {{
    let events = [];
    if (op[0] === "connect") core.connected(op[1]);
    else if (op[0] === "lost") core.connectionLost();
    else if (op[0] === "send") {{ if (core.canSend) core.send(op[2], unhex(op[3]), op[1]); }}
    else if (op[0] === "recv") {{
      let frame = null;
      try {{ frame = await frames.decodeFrame(unhex(op[2])); }} catch (e) {{ events = [{{ type: "dropped" }}]; }}
      if (frame) events = core.receiveFrame(frame, op[1]);
    }} else events = core.tick(op[1]);
    const sent = core.dataToSend().map((item) =>
      item.kind === "ack" ? ["ack", item.frame.sequenceNumber] : ["msg", item.entry.seq]);
    results.push({{
      state: core.state,
      handshake: core.handshake,
      sent,
      events: events.map((e) => {{
        if (e.type === "stream") return ["stream", e.frame.sequenceNumber];
        if (e.type === "handshake") return ["handshake", e.frame.sequenceNumber, e.handshake];
        if (e.type === "acked") return ["acked", e.sequence];
        if (e.type === "closed") return ["closed", e.reason, e.output];
        return [e.type];
      }}),
    }});
  }}
  out.results.push(results);
}}
"""


@pytest.mark.parametrize("batch", range(3))
def test_js_core_matches_the_python_core(tmp_path: pathlib.Path, batch: int) -> None:
    traces = [random_trace(batch * 100 + index) for index in range(40)]
    core_js = (
        pathlib.Path(__file__).resolve().parents[3] / "src/openssm/console/static/js/channelcore.js"
    ).as_uri()
    out = run_node(tmp_path, JS_RUNNER.format(core=core_js, traces=json.dumps(traces)))
    for index, (trace, js_results) in enumerate(zip(traces, out["results"], strict=True)):
        python_results = run_python(trace)
        for step, (op, expected, got) in enumerate(zip(trace, python_results, js_results, strict=True)):
            assert got == expected, f"random_trace({batch * 100 + index}), step {step}: {op[:2]}"


def test_traces_cover_every_kind_of_step() -> None:
    """The traces the comparison runs are not trivial: they resend, reorder, drop, pause and close."""
    seen: set[str] = set()
    for seed in range(120):
        for result in run_python(random_trace(seed)):
            seen.update(event[0] for event in result["events"])
            seen.update("resent" for item in result["sent"] if item[0] == "msg" and result["events"] == [])
    assert {"stream", "handshake", "acked", "paused", "started", "closed", "dropped", "resent"} <= seen


def test_js_backoff_matches_the_python_backoff(tmp_path: pathlib.Path) -> None:
    """The browser waits for a lost channel as the CLI does: the same delays, the same window."""
    cases = [(window, draw) for window in (0.0, 0.05, 1.0, 12.5, 90.0) for draw in (0.0, 0.37, 0.999)]
    backoff_js = (JS_DIR / "backoff.js").as_uri()
    out = run_node(
        tmp_path,
        f"""
        const {{ backoffDelays }} = await import("{backoff_js}");
        out.delays = {json.dumps(cases)}.map(([w, d]) =>
            [...backoffDelays({{ windowMs: w * 1000, random: () => d }})]);
        out.counted = [...backoffDelays({{ attempts: 4, random: () => 0.5 }})];
        """,
    )
    for (window, draw), got in zip(cases, out["delays"], strict=True):
        expected = list(Backoff(window=window).delays(_Draw(draw)))
        assert got == pytest.approx([delay * 1000 for delay in expected]), (window, draw)
        assert sum(got) == pytest.approx(window * 1000)  # every window is used to its end
    assert out["counted"] == pytest.approx([d * 1000 for d in AWS_RETRIES.delays(_Draw(0.5))])

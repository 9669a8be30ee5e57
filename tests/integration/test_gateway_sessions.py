"""Session life on the gateway: TerminateSession over the bus, idle timeout and maximum duration
(second-level overrides), resume after the client reconnects, failures, tokens, taps and the
node's own bookkeeping. Agents authenticate with SigV4 (sign_hmac) against keys in the store."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import pathlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest
from tests.support.gateway import (
    NODE_ID,
    Gateway,
    assert_closed,
    drop,
    next_frame,
    running_gateway,
    wait_for,
)

from openssm.clock import ManualClock
from openssm.gateway.extension import NodeExtension
from openssm.gateway.settings import GatewaySettings
from openssm.gateway.tap import Payload
from openssm.protocol.frames import FLAG_SYN, Frame, MessageType, PayloadType, ack_for
from openssm.protocol.messages import (
    AgentDataOpen,
    AgentSessionState,
    AgentTaskComplete,
    ClientOpen,
    ControlOpen,
    parse_interactive_shell,
)
from openssm.protocol.session_status import SessionStatus
from openssm.store import channel_tokens, gateway_nodes, instances
from openssm.store import sessions as session_store
from openssm.store.secrets import hash_token

IID = "i-0123456789abcdef0"
SID = "tester-00000000000000001"
FAST = GatewaySettings(
    resume_window=1.0, agent_reconnect_grace=1.0, agent_end_grace=0.5, watchdog_interval=0.1, control_wait=0.5
)


@dataclasses.dataclass
class Session:
    control: aiohttp.ClientWebSocketResponse
    agent: aiohttp.ClientWebSocketResponse
    client: aiohttp.ClientWebSocketResponse


async def open_control(gw: Gateway, instance_id: str = IID) -> aiohttp.ClientWebSocketResponse:
    token = await gw.channel_token(f"/v1/control-channel/{instance_id}")
    ws = await gw.agent_socket(f"/v1/control-channel/{instance_id}?role=subscribe&stream=input")
    await ws.send_str(ControlOpen(token_value=token).to_text())
    await wait_for(lambda: instance_id in gw.node.controls, 5, "control channel never registered")
    return ws


async def open_client(gw: Gateway, session_id: str = SID) -> aiohttp.ClientWebSocketResponse:
    token = await gw.add_token("client", session_id)
    ws = await gw.client_socket(session_id)
    await ws.send_str(ClientOpen(token_value=token).to_text())
    return ws


async def open_agent_data(gw: Gateway, session_id: str = SID) -> aiohttp.ClientWebSocketResponse:
    token = await gw.channel_token(f"/v1/data-channel/{session_id}")
    ws = await gw.agent_socket(f"/v1/data-channel/{session_id}?role=publish_subscribe")
    await ws.send_str(AgentDataOpen(token_value=token, client_instance_id=IID).to_text())
    await ws.send_bytes(AgentSessionState(session_id, "Connected").to_frame().encode())
    return ws


async def start(gw: Gateway, session_id: str = SID, **session: Any) -> Session:
    await gw.add_session(session_id, IID, **session)
    control = await open_control(gw)
    client = await open_client(gw, session_id)
    shell = await next_frame(control)
    assert shell.message_type == MessageType.INTERACTIVE_SHELL
    assert parse_interactive_shell(shell.payload).content.session_id == session_id
    agent = await open_agent_data(gw, session_id)
    await gw.wait_status(session_id, "Connected")
    return Session(control, agent, client)


def output(seq: int, data: bytes) -> Frame:
    return Frame(MessageType.OUTPUT_STREAM_DATA, seq, FLAG_SYN if seq == 0 else 0, PayloadType.OUTPUT, data)


def keystroke(seq: int, data: bytes) -> Frame:
    return Frame(MessageType.INPUT_STREAM_DATA, seq, 0, PayloadType.OUTPUT, data)


async def expect_closed(
    ws: aiohttp.ClientWebSocketResponse, output_text: str | None = None
) -> Mapping[str, Any]:
    frame = await next_frame(ws)
    assert frame.message_type == MessageType.CHANNEL_CLOSED, frame
    body: Mapping[str, Any] = frame.json()
    if output_text is not None:
        assert body["Output"] == output_text
    return body


@pytest.fixture
async def gw(tmp_path: pathlib.Path) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path, settings=FAST) as gateway:
        await gateway.add_instance(IID)
        await gateway.add_agent_user()
        yield gateway


async def test_terminate_session_over_the_bus(gw: Gateway) -> None:
    s = await start(gw)
    reason = "Terminated by arn:aws:iam::123456789012:user/admin"
    await gw.services.bus.publish(
        f"node.{NODE_ID}", {"type": "terminate", "session_id": SID, "reason": reason}
    )
    await expect_closed(s.client, reason)
    agent_closed = await expect_closed(s.agent)
    assert agent_closed["SessionId"] == SID
    control_closed = await expect_closed(s.control)
    assert control_closed["SessionId"] == SID
    row = await gw.wait_status(SID, "Terminated")
    assert row.termination_reason == reason
    assert row.end_date is not None
    await assert_closed(s.client)
    await assert_closed(s.agent)


async def test_terminate_wins_over_the_agents_answer_to_it(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent answers channel_closed with a task completion (Failed: its shell was killed) at
    once; the session still ends as the terminate said, even when recording that end is slow."""
    s = await start(gw)
    reason = "Terminated by arn:aws:iam::123456789012:user/admin"
    record_end = session_store.finish

    async def slow_for_the_terminate(*args: Any, **kwargs: Any) -> bool:
        if kwargs.get("reason") == reason:
            await asyncio.sleep(0.5)  # deliberate: a loaded database (the delay is the fault under test)
        return await record_end(*args, **kwargs)

    monkeypatch.setattr(session_store, "finish", slow_for_the_terminate)
    await gw.services.bus.publish(
        f"node.{NODE_ID}", {"type": "terminate", "session_id": SID, "reason": reason}
    )
    assert (await expect_closed(s.control))["SessionId"] == SID
    killed = AgentTaskComplete(task_id=SID, final_task_status="Failed", instance_id=IID, output="killed")
    await s.control.send_bytes(killed.to_frame().encode())
    row = await gw.wait_status(SID, "Terminated")
    assert row.termination_reason == reason


async def test_terminate_before_the_client_arrives(gw: Gateway) -> None:
    await gw.add_session(SID, IID)
    control = await open_control(gw)
    await gw.services.bus.publish(
        f"node.{NODE_ID}", {"type": "terminate", "session_id": SID, "reason": "bye"}
    )
    assert (await expect_closed(control))["SessionId"] == SID
    await gw.wait_status(SID, "Terminated")


async def test_idle_timeout_closes_both_sides(tmp_path: pathlib.Path) -> None:
    clock = ManualClock(dt.datetime.now(dt.UTC))  # the relay's watchdog reads it; nothing sleeps
    async with running_gateway(tmp_path, settings=FAST, clock=clock, idle_timeout_override=0.6) as gateway:
        await gateway.add_instance(IID)
        await gateway.add_agent_user()
        s = await start(gateway, idle_minutes=20)
        # Activity keeps the session alive past the idle limit: 1.6 s in all, never 0.6 s idle.
        for seq in range(4):
            clock.advance(0.4)
            await s.agent.send_bytes(output(seq, b"tick").encode())
            assert (await next_frame(s.client)).sequence_number == seq
        await gateway.wait_status(SID, "Connected")  # written beside the relay, not before it
        clock.advance(0.6)
        await expect_closed(s.client, "Session idle timeout")
        await expect_closed(s.agent)
        await expect_closed(s.control)
        row = await gateway.wait_status(SID, "Terminated")
        assert row.termination_reason == "Session idle timeout"


async def test_max_duration_closes_both_sides_despite_activity(tmp_path: pathlib.Path) -> None:
    clock = ManualClock(dt.datetime.now(dt.UTC))  # the relay's watchdog reads it; nothing sleeps
    async with running_gateway(tmp_path, settings=FAST, clock=clock, max_duration_override=1.0) as gateway:
        await gateway.add_instance(IID)
        await gateway.add_agent_user()
        s = await start(gateway)
        # Busy all along, and open until its maximum duration (0.9 s by the clock: not yet).
        for seq in range(3):
            clock.advance(0.3)
            await s.agent.send_bytes(output(seq, b"busy").encode())
            assert (await next_frame(s.client)).sequence_number == seq
        clock.advance(0.2)  # 1.1 s
        await s.agent.send_bytes(output(3, b"busy").encode())  # activity does not save it now
        frame = await next_frame(s.client)
        if frame.message_type != MessageType.CHANNEL_CLOSED:  # the watchdog may come after the output
            assert frame.sequence_number == 3
            frame = await next_frame(s.client)
        assert frame.message_type == MessageType.CHANNEL_CLOSED, frame
        assert frame.json()["Output"] == "Session reached maximum duration"
        row = await gateway.wait_status(SID, "Terminated")
        assert row.termination_reason == "Session reached maximum duration"


def test_limits_come_from_the_session_row_without_overrides() -> None:
    from openssm.gateway.session import limit_seconds

    assert limit_seconds(None, 20, 20) == 1200
    assert limit_seconds(None, None, 20) == 1200
    assert limit_seconds(None, None, None) is None
    assert limit_seconds(2.5, 20, 20) == 2.5


async def test_resume_after_client_reconnect(gw: Gateway) -> None:
    s = await start(gw)
    drop(s.client)
    pause = await next_frame(s.agent)
    assert pause.message_type == MessageType.PAUSE_PUBLICATION
    await gw.wait_status(SID, "Disconnected")

    # Output produced while the client is away waits for it (the agent would also resend it).
    await s.agent.send_bytes(output(0, b"while you were away").encode())
    client = await open_client(gw)  # ResumeSession gave a fresh token
    assert (await next_frame(s.agent)).message_type == MessageType.START_PUBLICATION
    held = await next_frame(client)
    assert held.payload == b"while you were away"
    await gw.wait_status(SID, "Connected")

    await client.send_bytes(ack_for(held).encode())
    assert (await next_frame(s.agent)).message_type == MessageType.ACKNOWLEDGE
    await client.send_bytes(keystroke(0, b"x").encode())
    assert (await next_frame(s.agent)).payload == b"x"


async def test_session_ends_when_the_resume_window_passes(gw: Gateway) -> None:
    s = await start(gw)
    drop(s.client)
    assert (await next_frame(s.agent)).message_type == MessageType.PAUSE_PUBLICATION
    body = await expect_closed(s.agent)
    assert body["SessionId"] == SID
    row = await gw.wait_status(SID, "Terminated")
    assert row.termination_reason == "Session resume window expired"


async def test_client_token_reuse_is_refused(gw: Gateway) -> None:
    s = await start(gw)
    token = await gw.add_token("client", SID)
    second = await gw.client_socket(SID)
    await second.send_str(ClientOpen(token_value=token).to_text())

    # The two sockets would otherwise race for the token: let the legitimate one spend it first.
    async def spent() -> bool:
        tokens = await channel_tokens.for_channel(gw.engine, SID)
        return any(t.token_hash == hash_token(token) and t.used_at is not None for t in tokens)

    await wait_for(spent, 5, "the reconnect never spent its token")
    replay = await gw.client_socket(SID)
    await replay.send_str(ClientOpen(token_value=token).to_text())
    body = await expect_closed(replay)
    assert "token" in body["Output"]
    await assert_closed(replay)
    # The legitimate reconnect took the session over; the old socket is hung up.
    await s.agent.send_bytes(output(0, b"to the new client").encode())
    assert (await next_frame(second)).payload == b"to the new client"


async def test_expired_client_token_is_refused(gw: Gateway) -> None:
    await gw.add_session(SID, IID)
    await open_control(gw)
    token = await gw.add_token("client", SID, ttl=-1)
    ws = await gw.client_socket(SID)
    await ws.send_str(ClientOpen(token_value=token).to_text())
    assert "token" in (await expect_closed(ws))["Output"]
    assert (await gw.session_row(SID)).status == "Connecting"


async def test_token_of_another_session_is_refused(gw: Gateway) -> None:
    await gw.add_session(SID, IID)
    await gw.add_session("tester-00000000000000002", IID)
    token = await gw.add_token("client", "tester-00000000000000002")
    ws = await gw.client_socket(SID)
    await ws.send_str(ClientOpen(token_value=token).to_text())
    assert "token" in (await expect_closed(ws))["Output"]


async def test_client_token_expires_by_the_nodes_clock(tmp_path: pathlib.Path) -> None:
    """StartSession's token is good for 60 s by the server's one clock, and not a moment longer.
    (Reuse and another session's token: the tests above.)"""
    settings = dataclasses.replace(FAST, heartbeat_interval=0.05)
    clock = ManualClock(dt.datetime.now(dt.UTC))
    async with running_gateway(tmp_path, settings=settings, clock=clock, token_ttl_seconds=60) as gateway:
        await gateway.add_instance(IID)
        await gateway.add_agent_user()
        await gateway.add_session(SID, IID)
        control = await open_control(gateway)
        timely, late = await gateway.add_token("client", SID), await gateway.add_token("client", SID)

        async def advance(seconds: float) -> None:
            """Move the clock in steps the node's heartbeat follows (its sweeper must not find the
            node itself silent)."""
            while seconds > 0:
                step = min(seconds, 9)  # under the 10 s liveness window
                clock.advance(step)
                seconds -= step

                async def seen() -> bool:
                    node = await gateway_nodes.get(gateway.engine, NODE_ID)
                    return node is not None and node.last_seen_at == clock.now()

                await wait_for(seen, 5, "the node's heartbeat never ran")

        await advance(59.9)
        client = await gateway.client_socket(SID)
        await client.send_str(ClientOpen(token_value=timely).to_text())
        assert (await next_frame(control)).message_type == MessageType.INTERACTIVE_SHELL  # accepted
        await advance(0.1)  # 60 s after issue
        refused = await gateway.client_socket(SID)
        await refused.send_str(ClientOpen(token_value=late).to_text())
        assert "token" in (await expect_closed(refused))["Output"]
        [spent] = [t for t in await channel_tokens.for_channel(gateway.engine, SID) if t.used_at]
        assert spent.token_hash == hash_token(timely)  # the late one was not used up either


async def test_token_presented_after_its_session_ended_is_refused(gw: Gateway) -> None:
    """A token issued while the session lived (ResumeSession's, say) opens nothing once it ended."""
    s = await start(gw)
    token = await gw.add_token("client", SID)
    await gw.services.bus.publish(
        f"node.{NODE_ID}", {"type": "terminate", "session_id": SID, "reason": "done"}
    )
    await expect_closed(s.client, "done")
    await gw.wait_status(SID, "Terminated")
    await wait_for(lambda: SID not in gw.node.relays, 5, "the relay never let the session go")
    late = await gw.client_socket(SID)
    await late.send_str(ClientOpen(token_value=token).to_text())
    assert "already terminated" in (await expect_closed(late))["Output"]
    await assert_closed(late)
    assert (await gw.session_row(SID)).status == "Terminated"


async def test_token_for_a_session_ended_before_any_client_came_is_refused(gw: Gateway) -> None:
    await gw.add_session(SID, IID)
    await open_control(gw)
    token = await gw.add_token("client", SID)
    await session_store.finish(
        gw.engine, SID, status=SessionStatus.TERMINATED, reason="ended", now=gw.services.clock.now()
    )
    client = await gw.client_socket(SID)
    await client.send_str(ClientOpen(token_value=token).to_text())
    assert "already terminated" in (await expect_closed(client))["Output"]


async def test_client_of_an_unconnected_target_is_told_so(gw: Gateway) -> None:
    await gw.add_session(SID, IID)
    client = await open_client(gw)
    assert "not connected" in (await expect_closed(client))["Output"]
    row = await gw.wait_status(SID, "Failed")
    assert row.end_date is not None


async def test_client_that_beats_the_control_channel_waits_for_it(gw: Gateway) -> None:
    await gw.add_session(SID, IID)
    client = await open_client(gw)
    await wait_for(
        lambda: SID in gw.node.relays and gw.node.relays[SID].shell_dispatched,
        5,
        "the client never started waiting for the control channel",
    )
    control = await open_control(gw)
    assert (await next_frame(control)).message_type == MessageType.INTERACTIVE_SHELL
    agent = await open_agent_data(gw)
    await gw.wait_status(SID, "Connected")
    await agent.send_bytes(output(0, b"$ ").encode())
    assert (await next_frame(client)).payload == b"$ "


async def test_agent_failure_reaches_the_client(gw: Gateway) -> None:
    s = await start(gw)
    error = "\n----------ERROR-------\nUnable to start command: invalid uid and gid\n"
    failed = AgentTaskComplete(task_id=SID, final_task_status="Failed", instance_id=IID, output=error)
    sent = failed.to_frame()
    await s.control.send_bytes(sent.encode())
    ack = await next_frame(s.control)
    assert ack.json()["MessageId"] == str(sent.message_id)
    await expect_closed(s.client, error)
    row = await gw.wait_status(SID, "Failed")
    assert row.termination_reason == error


async def test_an_instance_cannot_complete_another_instances_session(gw: Gateway) -> None:
    s = await start(gw)
    other = "i-0fedcba9876543210"
    await gw.add_instance(other)
    other_control = await open_control(gw, other)
    await other_control.send_bytes(AgentTaskComplete(task_id=SID, instance_id=other).to_frame().encode())
    assert (await next_frame(other_control)).message_type == MessageType.AGENT_TASK_ACKNOWLEDGE
    await s.agent.send_bytes(output(0, b"still here").encode())
    assert (await next_frame(s.client)).payload == b"still here"


async def test_agent_data_reconnect_keeps_the_session(gw: Gateway) -> None:
    s = await start(gw)
    drop(s.agent)
    await wait_for(lambda: gw.node.relays[SID].agent is None, 5, "the gateway never saw the agent go")
    await s.client.send_bytes(keystroke(0, b"q").encode())  # queued while the agent is away
    agent = await open_agent_data(gw)
    assert (await next_frame(agent)).payload == b"q"
    await gw.wait_status(SID, "Connected")


async def test_agent_gone_for_good_ends_the_session(gw: Gateway) -> None:
    s = await start(gw)
    drop(s.agent)
    body = await expect_closed(s.client)
    assert body["Output"] == "Agent closed the data channel"
    await gw.wait_status(SID, "Terminated")


class RecordingTap:
    def __init__(self, events: list[tuple[str, Any]]) -> None:
        self.events = events

    async def on_start(self, session: Mapping[str, Any]) -> None:
        self.events.append(("start", session["session_id"]))

    async def on_output(self, payload: Payload, payload_type: int, t: float) -> None:
        self.events.append(("output", payload))

    async def on_input(self, payload: Payload, payload_type: int, t: float) -> None:
        self.events.append(("input", payload))

    async def on_end(self, status: str, reason: str, t: float) -> None:
        self.events.append(("end", status))


class Taps(NodeExtension):
    def __init__(self, events: list[tuple[str, Any]]) -> None:
        self.events = events

    def session_tap(self, session: Mapping[str, Any]) -> RecordingTap:
        return RecordingTap(self.events)


async def test_taps_see_stream_data_in_order(tmp_path: pathlib.Path) -> None:
    events: list[tuple[str, Any]] = []
    async with running_gateway(tmp_path, settings=FAST, extensions=lambda services: [Taps(events)]) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user()
        s = await start(gw)
        await s.agent.send_bytes(output(0, b"# ").encode())
        await next_frame(s.client)
        await s.client.send_bytes(keystroke(0, b"l").encode())
        await next_frame(s.agent)
        await s.agent.send_bytes(output(1, b"l").encode())
        await next_frame(s.client)
        await s.control.send_bytes(AgentTaskComplete(task_id=SID, instance_id=IID).to_frame().encode())
        await gw.wait_status(SID, "Terminated")
        await wait_for(lambda: events and events[-1][0] == "end", 5, "tap never saw the end")
        assert events == [
            ("start", SID),
            ("output", b"# "),
            ("input", b"l"),
            ("output", b"l"),
            ("end", "Terminated"),
        ]
        # Views into the relayed frames: the relay copies no payload for its taps.
        assert all(isinstance(payload, memoryview) for kind, payload in events if kind in ("output", "input"))


@pytest.mark.slow
async def test_node_heartbeat_and_shutdown_cleanup(tmp_path: pathlib.Path) -> None:
    settings = dataclasses.replace(FAST, heartbeat_interval=0.2)
    async with running_gateway(tmp_path, settings=settings) as gateway:
        await gateway.add_instance(IID)
        await gateway.add_agent_user()
        first = await gateway_nodes.get(gateway.engine, NODE_ID)
        assert first is not None

        async def heard_again() -> bool:
            later = await gateway_nodes.get(gateway.engine, NODE_ID)
            return later is not None and later.last_seen_at > first.last_seen_at

        await wait_for(heard_again, 5, "the node's heartbeat never refreshed last_seen_at")
        s = await start(gateway)
        await gateway.server.close()  # runs the app's shutdown and cleanup
        # The session is not ended: both ends are let go without channel_closed (they re-dial).
        for ws in (s.client, s.agent):
            message = await ws.receive(timeout=5)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
        row = await gateway.session_row(SID)
        assert (row.status, row.termination_reason) == ("Disconnected", None)
        instance = await instances.get(gateway.engine, IID)
        assert instance is not None and instance.control_node_id is None


class ControlListener(NodeExtension):
    """Takes agent_job_ack, as Run Command does, and notes control channels opening."""

    control_messages = frozenset({MessageType.AGENT_JOB_ACK})

    def __init__(self) -> None:
        self.received: list[tuple[str, Frame]] = []
        self.opened: list[str] = []

    async def on_control_opened(self, instance_id: str) -> None:
        self.opened.append(instance_id)

    async def on_control_message(self, instance_id: str, frame: Frame) -> None:
        self.received.append((instance_id, frame))


async def test_control_messages_reach_the_extension_that_takes_them(tmp_path: pathlib.Path) -> None:
    from openssm.protocol.frames import decode

    listener = ControlListener()
    async with running_gateway(tmp_path, settings=FAST, extensions=lambda services: [listener]) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user()
        control = await open_control(gw)
        await wait_for(lambda: listener.opened, 5, "the extension never heard of the control channel")
        assert listener.opened == [IID]
        job_ack = Frame(
            MessageType.AGENT_JOB_ACK,
            payload=b'{"jobId":"j-1","acknowledgedMessageId":"m","statusCode":"200"}',
        )
        telemetry = Frame(MessageType.AGENT_TELEMETRY, payload=b"{}")  # nobody takes it: ignored
        await control.send_bytes(telemetry.encode())
        await control.send_bytes(job_ack.encode())
        await wait_for(lambda: listener.received, 5, "the extension never got agent_job_ack")
        assert listener.received == [(IID, decode(job_ack.encode()))]


async def test_sessions_no_client_ever_opened_are_ended(tmp_path: pathlib.Path) -> None:
    """Once its tokens have expired and the resume window has passed (by the node's clock), a
    session no client ever opened is ended by the node's heartbeat, and not before."""
    settings = dataclasses.replace(FAST, heartbeat_interval=0.05, resume_window=30)
    clock = ManualClock(dt.datetime.now(dt.UTC))
    async with running_gateway(tmp_path, settings=settings, clock=clock, token_ttl_seconds=60) as gateway:
        await gateway.add_session(SID, IID)

        async def heartbeat_after(moment: dt.datetime) -> None:
            async def seen() -> bool:
                node = await gateway_nodes.get(gateway.engine, NODE_ID)
                return node is not None and node.last_seen_at == moment

            await wait_for(seen, 5, "the node's heartbeat never ran")

        # 60 s token + 30 s resume window, less one second; in steps the node's heartbeat follows, so
        # that its own sweeper never finds it silent for the 10 s liveness window.
        for step in (9, 9, 9, 9, 9, 9, 9, 9, 9, 8):
            clock.advance(step)
            await heartbeat_after(clock.now())
        clock.advance(0.5)
        await heartbeat_after(clock.now())  # so the previous round's check (at 89 s) has finished
        assert (await gateway.session_row(SID)).status == "Connecting"
        clock.advance(1)
        row = await gateway.wait_status(SID, "Terminated")
        assert row.termination_reason == "No client connected to the session"
        assert row.end_date == clock.now()


@contextlib.asynccontextmanager
async def session_with_heartbeat(
    tmp_path: pathlib.Path, ws_heartbeat: float
) -> AsyncIterator[tuple[Gateway, aiohttp.ClientWebSocketResponse, str]]:
    """A gateway pinging its peers every ``ws_heartbeat`` s, one session waiting for its client,
    the agent's control channel, and the client's token."""
    settings = dataclasses.replace(FAST, ws_heartbeat=ws_heartbeat, resume_window=30)
    async with running_gateway(tmp_path, settings=settings) as gateway:
        await gateway.add_instance(IID)
        await gateway.add_agent_user()
        await gateway.add_session(SID, IID)
        control = await open_control(gateway)
        yield gateway, control, await gateway.add_token("client", SID)


async def test_a_client_that_stops_answering_pings_is_taken_for_gone(tmp_path: pathlib.Path) -> None:
    async with session_with_heartbeat(tmp_path, 0.4) as (gateway, control, token):
        # A peer that vanished without FIN: it never answers our pings.
        silent = await gateway.http.ws_connect(
            gateway.url(f"/v1/data-channel/{SID}?role=publish_subscribe"), autoping=False
        )
        await silent.send_str(ClientOpen(token_value=token).to_text())
        assert (await next_frame(control)).message_type == MessageType.INTERACTIVE_SHELL
        await gateway.wait_status(SID, "Disconnected", timeout=5)


async def test_the_gateway_pings_only_a_control_channel_gone_silent(tmp_path: pathlib.Path) -> None:
    """An agent pings its control channel after 54 s without a byte from the gateway; the gateway's
    own pings come only after ``control_heartbeat`` of silence, so a live agent's pings carry the
    keepalive alone (an idle fleet's frames halved) and a vanished one is still found."""
    settings = dataclasses.replace(FAST, control_heartbeat=0.6)
    async with running_gateway(tmp_path, settings=settings) as gw:
        await gw.add_instance(IID)
        await gw.add_agent_user()
        token = await gw.channel_token(f"/v1/control-channel/{IID}")
        ws = await gw.agent_socket(f"/v1/control-channel/{IID}?role=subscribe&stream=input", autoping=False)
        await ws.send_str(ControlOpen(token_value=token).to_text())
        await wait_for(lambda: IID in gw.node.controls, 5, "control channel never registered")
        # Pinging more often than the heartbeat: answered, and never pinged back.
        for _ in range(12):
            await ws.ping()
            assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.PONG
            await asyncio.sleep(0.15)
        # Silent (and deaf: no pongs): pinged once, then dropped.
        assert (await ws.receive(timeout=5)).type is aiohttp.WSMsgType.PING
        assert (await ws.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await wait_for(lambda: IID not in gw.node.controls, 5, "control channel never unregistered")

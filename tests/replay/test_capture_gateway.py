"""Drive the gateway with the real programs' captured bytes.

A fake agent sends exactly what the real amazon-ssm-agent sent (REST calls with their original
SigV4 signatures, upgrade requests, open frames, data and control frames) and a fake client sends
exactly what the real session-manager-plugin sent. The gateway must relay stream frames and acks
byte for byte, invent no acks, swallow agent_session_state, acknowledge agent_task_complete with
its MessageId and close the client with the captured channel_closed shape.

The tokens in the captured open frames are made valid by storing their hashes, and the captured
signatures verify because the agent's key is stored with the documentation secret they were made
with and the clock-skew limit is off (``clock_skew_seconds=0``): the captures are hours old.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from tests.support.gateway import (
    ACCOUNT,
    AGENT_USER,
    Gateway,
    assert_closed,
    assert_silent,
    drop,
    next_frame,
    next_raw,
    running_gateway,
    wait_for,
)

from openssm.gateway.messages import agent_document
from openssm.protocol.frames import MessageType, decode
from openssm.protocol.messages import parse_interactive_shell

Event = dict[str, Any]
SESSION = "tester-0a1b2c3d4e5f60718"
INSTANCE = "i-0123456789abcdef0"
AGENT_ARN = f"arn:aws:iam::{ACCOUNT}:user/{AGENT_USER}"


def raw(event: Event) -> bytes:
    return bytes.fromhex(event["hex"])


def message_type(event: Event) -> str:
    return str(event["decoded"]["MessageType"])


def numbered(events: list[Event]) -> dict[int, Event]:
    return {event["n"]: event for event in events}


def binary(events: list[Event], sender: str, channel: str = "ws-data") -> list[Event]:
    return [e for e in events if e["kind"] == "ws-binary" and e["from"] == sender and e["channel"] == channel]


def first_text(events: list[Event], sender: str, channel: str) -> str:
    return next(
        str(e["text"])
        for e in events
        if e["kind"] == "ws-text" and e["from"] == sender and e["channel"] == channel
    )


def token_in(text: str) -> str:
    return str(json.loads(text)["TokenValue"])


def request_of(events: list[Event], path_prefix: str, method: str) -> Event:
    return next(
        e
        for e in events
        if e["kind"] == "http-request" and e["method"] == method and e["path"].startswith(path_prefix)
    )


async def replay_request(gateway: Gateway, event: Event) -> tuple[int, str]:
    """Send a captured HTTP request with its own headers (Host and signature included) and body."""
    headers = {k: v for k, v in event["headers"].items() if k.lower() != "content-length"}
    async with gateway.http.request(
        event["method"], gateway.url(event["path"]), headers=headers, data=event["text"].encode()
    ) as response:
        return response.status, await response.text()


async def replay_upgrade(gateway: Gateway, event: Event) -> aiohttp.ClientWebSocketResponse:
    """A captured signed WebSocket upgrade (aiohttp adds its own key; the signed headers are kept)."""
    keep = {"host", "authorization", "x-amz-date", "x-amz-security-token", "user-agent"}
    headers = {k: v for k, v in event["headers"].items() if k.lower() in keep}
    return await gateway.http.ws_connect(gateway.url(event["path"]), headers=headers)


@pytest.fixture
async def gateway(tmp_path: pathlib.Path) -> AsyncIterator[Gateway]:
    async with running_gateway(tmp_path, clock_skew_seconds=0) as gw:
        await gw.add_instance(INSTANCE)
        await gw.add_agent_user()
        yield gw


async def start_session(
    gateway: Gateway, agent_events: list[Event], plugin_events: list[Event]
) -> tuple[aiohttp.ClientWebSocketResponse, aiohttp.ClientWebSocketResponse, aiohttp.ClientWebSocketResponse]:
    """Control channel up, client open frame in, interactive_shell out, agent data channel up.

    Returns (control, agent data, client) sockets.
    """
    shell_event = next(e for e in binary(agent_events, "gateway", "ws-control"))
    content = json.loads(shell_event["decoded"]["PayloadJSON"]["Content"])
    await gateway.add_session(
        SESSION,
        INSTANCE,
        document=content["DocumentContent"],
        document_name=content["DocumentName"],
        parameters={name: [value] for name, value in content["Parameters"].items()},
    )
    control_open = first_text(agent_events, "agent", "ws-control")
    data_open = first_text(agent_events, "agent", "ws-data")
    client_open = first_text(plugin_events, "plugin", "ws-data")
    await gateway.add_token("agent-control", INSTANCE, token=token_in(control_open), principal_arn=AGENT_ARN)
    await gateway.add_token("agent-data", SESSION, token=token_in(data_open), principal_arn=AGENT_ARN)
    await gateway.add_token("client", SESSION, token=token_in(client_open))

    control = await replay_upgrade(gateway, request_of(agent_events, "/v1/control-channel/", "GET"))
    await control.send_str(control_open)

    async def control_registered() -> bool:
        row = await gateway.session_row(SESSION)
        return bool(row) and INSTANCE in gateway.node.controls

    await wait_for(control_registered, 5, "control channel never registered")
    client = await gateway.client_socket(SESSION)
    await client.send_str(client_open)

    # interactive_shell is built from the sessions row: what the real agent accepted, except that the
    # logging preferences stay on the server (recording is server-side).
    shell = await next_frame(control)
    assert shell.message_type == MessageType.INTERACTIVE_SHELL
    assert (shell.sequence_number, shell.flags, shell.payload_type) == (0, 0, 0)
    sent, captured = (
        parse_interactive_shell(shell.payload),
        parse_interactive_shell(decode(raw(shell_event)).payload),
    )
    assert sent.content.document_content == agent_document(captured.content.document_content)
    assert dataclasses.replace(sent.content, document_content={}) == dataclasses.replace(
        captured.content, document_content={}
    )
    assert (sent.task_id, sent.topic, sent.schema_version) == (captured.task_id, captured.topic, 1)
    assert list(json.loads(bytes(shell.payload))) == list(json.loads(bytes(decode(raw(shell_event)).payload)))

    agent = await replay_upgrade(gateway, request_of(agent_events, "/v1/data-channel/", "GET"))
    await agent.send_str(data_open)
    connected = next(e for e in binary(agent_events, "agent") if message_type(e) == "agent_session_state")
    await agent.send_bytes(raw(connected))
    await gateway.wait_status(SESSION, "Connected")
    return control, agent, client


async def test_captured_rest_calls_get_201_xml(
    gateway: Gateway, load_capture: Callable[[str], list[Event]]
) -> None:
    events = load_capture("agent-session")
    status, text = await replay_request(gateway, request_of(events, "/v1/control-channel/", "POST"))
    assert status == 201, text
    assert text.startswith("<CreateControlChannelOutput><MessageSchemaVersion>1.0</MessageSchemaVersion>")
    await gateway.add_session(SESSION, INSTANCE)
    status, text = await replay_request(gateway, request_of(events, "/v1/data-channel/", "POST"))
    assert status == 201, text
    assert text.startswith("<CreateDataChannelOutput><MessageSchemaVersion>1.0</MessageSchemaVersion>")


async def test_captured_rest_call_with_altered_body_is_refused(
    gateway: Gateway, load_capture: Callable[[str], list[Event]]
) -> None:
    event = dict(request_of(load_capture("agent-session"), "/v1/control-channel/", "POST"))
    event["text"] = event["text"].replace("1.0", "2.0")
    status, _ = await replay_request(gateway, event)
    assert status in (400, 403)


async def test_shell_session_relays_real_frames_verbatim(
    gateway: Gateway, load_capture: Callable[[str], list[Event]]
) -> None:
    agent_events = load_capture("agent-shell-input")
    plugin_events = load_capture("plugin-shell")
    control, agent, client = await start_session(gateway, agent_events, plugin_events)

    # Client -> agent: every plugin frame arrives unchanged, and the client gets no ack we made up.
    plugin_frames = binary(plugin_events, "plugin")
    for event in plugin_frames:
        await client.send_bytes(raw(event))
        assert await next_raw(agent) == raw(event), f"plugin-shell#{event['n']} altered"
    await assert_silent(client, 0.2)

    # Agent -> client: everything but agent_session_state arrives unchanged and in order.
    agent_frames = binary(agent_events, "agent")
    terminating = next(
        e for e in agent_frames if "Terminating" in json.dumps(e["decoded"].get("PayloadJSON"))
    )
    for event in agent_frames:
        if message_type(event) == "agent_session_state":
            continue
        await agent.send_bytes(raw(event))
        assert await next_raw(client) == raw(event), f"agent-shell-input#{event['n']} altered"
    await assert_silent(agent, 0.2)

    # End as captured: Terminating, agent_task_complete, then the data socket drops.
    await agent.send_bytes(raw(terminating))
    task_complete = binary(agent_events, "agent", "ws-control")[0]
    await control.send_bytes(raw(task_complete))
    ack = await next_frame(control)
    captured_ack = binary(agent_events, "gateway", "ws-control")[1]
    assert ack.message_type == MessageType.AGENT_TASK_ACKNOWLEDGE
    assert ack.payload == decode(raw(captured_ack)).payload  # carries the task_complete's MessageId

    closed = await next_frame(client)  # not the Terminating state: it was consumed
    captured_closed = decode(raw(numbered(plugin_events)[86]))
    assert closed.message_type == MessageType.CHANNEL_CLOSED
    assert (closed.sequence_number, closed.flags, closed.payload_type) == (0, 0, 0)
    body, captured_body = closed.json(), captured_closed.json()
    assert list(body) == list(captured_body)
    assert {k: body[k] for k in ("DestinationId", "SessionId", "MessageType", "SchemaVersion", "Output")} == {
        k: captured_body[k] for k in ("DestinationId", "SessionId", "MessageType", "SchemaVersion", "Output")
    }
    drop(agent)
    drop(client)

    row = await gateway.wait_status(SESSION, "Terminated")
    assert row.end_date is not None
    sent_in = [raw(e) for e in plugin_frames if message_type(e) == "input_stream_data"]
    sent_out = [raw(e) for e in agent_frames if message_type(e) == "output_stream_data"]
    assert row.bytes_in == sum(len(frame) - 120 for frame in sent_in)
    assert row.bytes_out == sum(len(frame) - 120 for frame in sent_out)


async def test_session_ends_without_terminating_state(
    gateway: Gateway, load_capture: Callable[[str], list[Event]]
) -> None:
    """agent-port: the agent drops the data socket with no Terminating, then agent_task_complete."""
    agent_events = load_capture("agent-port")
    plugin_events = load_capture("plugin-port-mux")
    control, agent, client = await start_session(gateway, agent_events, plugin_events)
    drop(agent)
    await assert_silent(client, 0.3)  # a bare drop may be a reconnect: the session waits
    assert (await gateway.session_row(SESSION)).status == "Connected"

    await control.send_bytes(raw(binary(agent_events, "agent", "ws-control")[0]))
    ack = await next_frame(control)
    assert ack.payload == decode(raw(binary(agent_events, "gateway", "ws-control")[1])).payload
    closed = await next_frame(client)
    assert closed.message_type == MessageType.CHANNEL_CLOSED
    assert closed.json()["Output"] == ""
    await gateway.wait_status(SESSION, "Terminated")
    await assert_closed(client, 5)


async def test_task_complete_before_data_socket_close(
    gateway: Gateway, load_capture: Callable[[str], list[Event]]
) -> None:
    """agent-shell-input order: Terminating, agent_task_complete, and only then the socket drops."""
    agent_events = load_capture("agent-shell-input")
    control, agent, client = await start_session(gateway, agent_events, load_capture("plugin-shell"))
    agent_frames = binary(agent_events, "agent")
    await agent.send_bytes(raw(agent_frames[-1]))  # Terminating
    await control.send_bytes(raw(binary(agent_events, "agent", "ws-control")[0]))
    assert (await next_frame(control)).message_type == MessageType.AGENT_TASK_ACKNOWLEDGE
    assert (await next_frame(client)).message_type == MessageType.CHANNEL_CLOSED
    await gateway.wait_status(SESSION, "Terminated")
    await assert_closed(agent, 5)  # the gateway hangs up the finished agent's data socket


async def test_agent_session_state_never_reaches_the_client(
    gateway: Gateway, load_capture: Callable[[str], list[Event]]
) -> None:
    agent_events = load_capture("agent-session")
    _, agent, client = await start_session(gateway, agent_events, load_capture("plugin-shell"))
    for event in binary(agent_events, "agent"):
        if message_type(event) == "agent_session_state":
            await agent.send_bytes(raw(event))
    await assert_silent(client, 0.3)
    output = next(e for e in binary(agent_events, "agent") if message_type(e) == "output_stream_data")
    await agent.send_bytes(raw(output))
    assert await next_raw(client) == raw(output)

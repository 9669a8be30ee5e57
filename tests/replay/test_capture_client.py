"""Replay the gateway's side of the real plugin's captures against OpenSSM's client.

A fake gateway in this file sends the captured gateway frames (bytes as recorded) and checks that
our ``session-manager-plugin`` answers with the real plugin's frames: same types, sequence numbers,
flags, payload types and payloads (apart from random ids and dates), and prints the same lines.
The user's side (keystrokes, resizes, Ctrl-C, local TCP clients) is re-enacted from the capture.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pexpect
import pytest
from aiohttp import WSMsgType, web
from tests.support.net import free_port

from openssm.client.plugin_session import parse_invocation
from openssm.protocol.frames import Frame, MessageType, PayloadType, decode
from openssm.protocol.versions import cli_uses_env_handoff

Event = dict[str, Any]
SESSION_ID = "tester-0a1b2c3d4e5f60718"
FRAME_TIMEOUT = 10.0

pytestmark = pytest.mark.slow


class FakeGateway:
    """Accepts one client data channel and queues what the client sends."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.ws: web.WebSocketResponse | None = None
        self.paths: list[str] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/data-channel/{session_id}", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stream_url(self, session_id: str = SESSION_ID) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/data-channel/{session_id}?role=publish_subscribe"

    async def _serve(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.paths.append(request.path_qs)
        self.ws = ws
        self.connected.set()
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await self.received.put(("text", message.data))
            elif message.type == WSMsgType.BINARY:
                await self.received.put(("binary", message.data))
        await self.received.put(("closed", None))
        return ws

    async def send(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(data)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclasses.dataclass
class Expectation:
    """What the real plugin sent at one point of the capture."""

    event: Event
    frame: Frame


def frame_key(frame: Frame) -> tuple[str, int]:
    """Frames are matched by what they are about: acks by the sequence they ack, data by its own."""
    if frame.message_type == MessageType.ACKNOWLEDGE:
        return ("ack", json.loads(bytes(frame.payload))["AcknowledgedMessageSequenceNumber"])
    return (frame.message_type, frame.sequence_number)


def assert_same_frame(expected: Frame, got: Frame, where: str) -> None:
    for field in ("message_type", "sequence_number", "flags", "payload_type", "schema_version"):
        assert getattr(got, field) == getattr(expected, field), f"{where}: {field} differs"
    # Acks refer to the captured gateway frames' ids, so even they must match byte for byte.
    assert got.payload == expected.payload, f"{where}: payload {got.payload!r} != {expected.payload!r}"
    assert got.created_date > 0


class Replay:
    """Walks a capture: sends gateway frames, waits for and checks the client's frames."""

    def __init__(self, gateway: FakeGateway, rewrite: Callable[[bytes], bytes] = lambda data: data) -> None:
        self.gateway = gateway
        self.rewrite = rewrite
        self.unmatched: dict[tuple[str, int], Frame] = {}
        self.order: list[Frame] = []
        self.texts: list[str] = []
        self.closed = False

    async def _next_item(self) -> tuple[str, Any]:
        return await asyncio.wait_for(self.gateway.received.get(), FRAME_TIMEOUT)

    async def expect_frame(self, event: Event) -> None:
        expected = decode(bytes.fromhex(event["hex"]))
        key = frame_key(expected)
        while key not in self.unmatched:
            kind, data = await self._next_item()
            assert kind == "binary", f"#{event['n']}: expected a binary frame, got {kind}"
            got = decode(data, verify_digest=True)
            assert frame_key(got) not in self.unmatched, f"#{event['n']}: duplicate {frame_key(got)}"
            self.unmatched[frame_key(got)] = got
            self.order.append(got)
        assert_same_frame(expected, self.unmatched.pop(key), f"#{event['n']}")

    async def expect_text(self, event: Event) -> None:
        kind, data = await self._next_item()
        assert kind == "text", f"#{event['n']}: expected the open frame, got {kind}"
        self.texts.append(data)
        got, expected = json.loads(data), json.loads(event["text"])
        assert list(got) == list(expected)  # same keys, same order
        assert got["TokenValue"] == expected["TokenValue"]
        assert got["ClientVersion"] == expected["ClientVersion"]
        assert got["MessageSchemaVersion"] == "1.0"
        assert uuid.UUID(got["RequestId"]).version == 4
        assert uuid.UUID(got["ClientId"]).version == 4

    async def expect_close(self) -> None:
        while True:
            kind, _data = await self._next_item()
            if kind == "closed":
                self.closed = True
                return
            assert kind != "binary" or not self.unmatched, "unexpected frame before close"

    async def ws_event(self, event: Event) -> bool:
        """Play or check one data-channel event; False if the event is not about the data channel."""
        kind, source = event["kind"], event["from"]
        if kind == "ws-binary" and source == "gateway":
            await self.gateway.send(self.rewrite(bytes.fromhex(event["hex"])))
        elif kind == "ws-binary" and source == "plugin":
            await self.expect_frame(event)
        elif kind == "ws-text":
            await self.expect_text(event)
        elif kind == "ws-close":
            await self.expect_close()
        else:
            return False
        return True

    def finish(self) -> None:
        assert not self.unmatched, f"client sent frames the plugin did not: {sorted(self.unmatched)}"


def plugin_argv(capture: list[Event]) -> list[str]:
    start = capture[0]
    assert start["kind"] == "process-start"
    argv: list[str] = list(start["argv"])
    return [sys.executable, "-m", "openssm.client.plugin", *argv[1:]]


def plugin_env(capture: list[Event], stream_url: str, tmp_path: Any) -> dict[str, str]:
    captured_env = capture[0]["env"]
    response = json.loads(captured_env["AWS_SSM_START_SESSION_RESPONSE"])
    response["StreamUrl"] = stream_url
    env = dict(os.environ)
    env.update(
        AWS_SSM_START_SESSION_RESPONSE=json.dumps(response),
        AWS_ACCESS_KEY_ID=captured_env["AWS_ACCESS_KEY_ID"],
        AWS_SECRET_ACCESS_KEY=captured_env["AWS_SECRET_ACCESS_KEY"],
        AWS_CONFIG_FILE=str(tmp_path / "config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
        HOME=str(tmp_path),
    )
    return env


def printed(capture: list[Event], channel: str) -> str:
    return "".join(e["text"] for e in capture if e["from"] == "plugin" and e["channel"] == channel)


# -- shell --------------------------------------------------------------------------------------------


async def test_shell_session_matches_the_plugin(
    load_capture: Callable[[str], list[Event]], tmp_path: Any
) -> None:
    capture = load_capture("plugin-shell")
    gateway = FakeGateway()
    await gateway.start()
    child = pexpect.spawn(
        plugin_argv(capture)[0],
        plugin_argv(capture)[1:],
        env=plugin_env(capture, gateway.stream_url(), tmp_path),
        dimensions=(24, 80),
        timeout=FRAME_TIMEOUT,
    )
    replay = Replay(gateway)
    try:
        for event in capture:
            await run_shell_event(event, replay, child)
        replay.finish()
        # The plugin's first two frames: ack of the first Output, then the Size.
        first, second = replay.order[0], replay.order[1]
        assert first.message_type == MessageType.ACKNOWLEDGE
        assert (second.sequence_number, second.payload_type) == (0, PayloadType.SIZE)
        await asyncio.to_thread(child.expect, pexpect.EOF)
        transcript = child.before.decode()
        assert transcript == printed(capture, "tty")
        child.wait()
        assert child.exitstatus == 0
    finally:
        child.close(force=True)
        await gateway.stop()


async def run_shell_event(event: Event, replay: Replay, child: pexpect.spawn) -> None:
    kind = event["kind"]
    if await replay.ws_event(event):
        return
    if kind == "tty-input":
        child.send(event["text"])
    elif kind == "tty-resize":
        child.setwinsize(event["rows"], event["cols"])


# -- port forwarding ----------------------------------------------------------------------------------


def with_local_port(captured_port: str | None, port: int) -> Callable[[bytes], bytes]:
    """Rewrites the handshake's localPortNumber (a fixed port in the capture) to a free one."""

    def rewrite(data: bytes) -> bytes:
        frame = decode(data)
        if captured_port is None or frame.payload_type != PayloadType.HANDSHAKE_REQUEST:
            return data
        payload = bytes(frame.payload).replace(f'"{captured_port}"'.encode(), f'"{port}"'.encode())
        return frame.with_payload(payload).encode()

    return rewrite


class LocalClients:
    def __init__(self, port: int) -> None:
        self.port = port
        self.connections: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    async def act(self, event: Event) -> None:
        kind = event["kind"]
        name = event["to"] if kind in ("tcp-recv", "tcp-eof") else event["from"]
        if kind == "tcp-connect":
            self.connections[name] = await asyncio.open_connection("127.0.0.1", self.port)
        elif kind == "tcp-send":
            writer = self.connections[name][1]
            writer.write(event["text"].encode())
            await writer.drain()
        elif kind == "tcp-recv":
            expected = event["text"].encode()
            got = await asyncio.wait_for(self.connections[name][0].readexactly(len(expected)), FRAME_TIMEOUT)
            assert got == expected
        elif kind == "tcp-eof":
            assert await asyncio.wait_for(self.connections[name][0].read(), FRAME_TIMEOUT) == b""
        elif kind == "tcp-close":
            self.connections[name][1].close()


async def replay_port_capture(
    capture: list[Event],
    captured_port: str | None,
    tmp_path: Any,
    *,
    start: Event | None = None,
    stdout_text: str | None = None,
) -> None:
    gateway = FakeGateway()
    await gateway.start()
    port = free_port()
    replay = Replay(gateway, with_local_port(captured_port, port))

    def localised(text: str) -> str:
        return text if captured_port is None else text.replace(captured_port, str(port))

    clients = LocalClients(port)
    start = start or capture[0]
    process = await asyncio.create_subprocess_exec(
        *plugin_argv([start]),
        env=plugin_env([start], gateway.stream_url(), tmp_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    stdout = bytearray()
    try:
        for event in capture:
            kind = event["kind"]
            if await replay.ws_event(event):
                continue
            if kind == "stdout":
                expected = localised(event["text"]).encode()
                while not stdout.endswith(expected):
                    chunk = await asyncio.wait_for(process.stdout.read(4096), FRAME_TIMEOUT)
                    assert chunk, f"#{event['n']}: stdout ended before {expected!r}; got {bytes(stdout)!r}"
                    stdout += chunk
            elif kind.startswith("tcp-"):
                await clients.act(event)
            elif kind == "signal":
                process.send_signal(getattr(signal, event["signal"]))
            elif kind == "process-exit":
                assert await asyncio.wait_for(process.wait(), FRAME_TIMEOUT) == event["exitCode"]
        replay.finish()
        stdout += await process.stdout.read()
        expected_stdout = printed(capture, "stdout") if stdout_text is None else stdout_text
        assert bytes(stdout).decode() == localised(expected_stdout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await gateway.stop()


def move_before(capture: list[Event], n: int, before: int) -> None:
    event = next(e for e in capture if e["n"] == n)
    capture.remove(event)
    capture.insert(next(i for i, e in enumerate(capture) if e["n"] == before), event)


def local_port_in(capture: list[Event]) -> str:
    request = json.loads(capture[0]["argv"][5])
    port: str = request["Parameters"]["localPortNumber"][0]
    return port


async def test_port_basic_session_matches_the_plugin(
    load_capture: Callable[[str], list[Event]], tmp_path: Any
) -> None:
    capture = load_capture("plugin-port-basic")
    await replay_port_capture(capture, local_port_in(capture), tmp_path)


async def test_port_mux_session_matches_the_plugin(
    load_capture: Callable[[str], list[Event]], tmp_path: Any
) -> None:
    capture = load_capture("plugin-port-mux")
    # The capture logged client 2's connect (#19) after the SYN it caused (#17): re-enact it first.
    move_before(capture, 19, 17)
    # Clients 1 and 2 sent 1 ms apart (#20, #21) and the plugin happened to send one PSH per
    # message; smux bytes are one stream, so a client may coalesce them. Send client 2's data after
    # client 1's PSH to compare messages one to one.
    move_before(capture, 21, 26)
    await replay_port_capture(capture, local_port_in(capture), tmp_path)


# -- the AWS CLI hand-off -------------------------------------------------------------------------------


def test_cli_hand_off_argv_and_env_are_understood(load_capture: Callable[[str], list[Event]]) -> None:
    """#2/#3 are the CLI's StartSession call and answer; #5 is how it execs the plugin."""
    capture = load_capture("cli-start-session")
    request, response, launch = (next(e for e in capture if e["n"] == n) for n in (2, 3, 5))
    environ = dict(launch["env"])
    invocation = parse_invocation(launch["argv"], environ)
    answer = json.loads(response["text"])
    started = invocation.started
    assert (started.session_id, started.token_value, started.stream_url) == (
        answer["SessionId"],
        answer["TokenValue"],
        answer["StreamUrl"],
    )
    assert "AWS_SSM_START_SESSION_RESPONSE" not in environ  # removed, like the plugin's Unsetenv
    assert invocation.target == json.loads(request["text"])["Target"]
    assert (invocation.region, invocation.operation, invocation.profile) == ("us-east-1", "StartSession", "")
    assert invocation.endpoint_url == launch["argv"][6]


def test_cli_version_probe_gets_an_env_hand_off_version(load_capture: Callable[[str], list[Event]]) -> None:
    capture = load_capture("cli-start-session")
    probe = next(e for e in capture if e["n"] == 4)
    assert probe["argv"] == ["session-manager-plugin", "--version"]
    result = subprocess.run([*plugin_argv([probe])], capture_output=True, text=True, check=True, timeout=30)
    assert cli_uses_env_handoff(result.stdout)


async def test_cli_launched_session_matches_the_plugin(
    load_capture: Callable[[str], list[Event]], tmp_path: Any
) -> None:
    """#6-#14: the plugin's session after the hand-off; #15 holds everything it printed."""
    capture = load_capture("cli-start-session")
    launch = next(e for e in capture if e["n"] == 5)
    session = [e for e in capture if e["n"] >= 6 and e["channel"] != "http" and e["kind"] != "process-exit"]
    await replay_port_capture(session, "\0", tmp_path, start=launch, stdout_text=capture[-1]["stdout"])

"""Port sessions (``session-manager-protocol.md`` §3.4): basic, smux-multiplexed and stdio modes.

The mode comes from the agent's HandshakeRequest, not from the command line:
``type: LocalPortForwarding`` + AgentVersion > 3.0.196.0 → mux; older agents → basic (one TCP
connection at a time, raw bytes); no ``type`` (AWS-StartSSHSession) → stdio for ssh ProxyCommand.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from openssm.client.datachannel import DataChannel
from openssm.client.output import DEFAULT_LISTEN_ADDRESS, Console, exiting_message
from openssm.client.pipes import PIPE_SIZE, grow_pipe
from openssm.client.scope import Scope
from openssm.client.terminal import READ_CHUNK, read_chunks
from openssm.protocol.frames import Frame, Payload, PayloadFlag, PayloadType, flag_of, flag_payload
from openssm.protocol.smux import SmuxConfig, SmuxError
from openssm.protocol.versions import terminate_flag_supported, uses_mux
from openssm.transport import tcp_connection
from openssm.transport.mux import (
    FAST_PATH_PAYLOAD,
    MuxClosedError,
    MuxSession,
    fast_mux_offered,
    joined,
    pipe,
)
from openssm.transport.tcp_connection import TcpConnection

log = logging.getLogger(__name__)

LOCAL_PORT_FORWARDING: Final = "LocalPortForwarding"
PORT_FAILED_MESSAGE: Final = "\nConnection to destination port failed, check SSM Agent logs.\n"
TERMINATE_MESSAGE: Final = "Terminate signal received, exiting.\n"
# smux v1 has no per-stream flow control: one local client that stops reading holds its data in
# this shared buffer, and when it is full every stream waits. xtaci's 4 MiB stalls the others
# early; 64 MiB (bounded, hard limit twice that) lets a slow reader lag far behind without that.
MUX_CONFIG: Final = SmuxConfig(version=1, max_receive_buffer=64 << 20, receive_hard_limit=128 << 20)
TERMINATE_ACK_TIMEOUT: Final = 2.0


class PortMode(enum.StrEnum):
    BASIC = "basic"
    MUX = "mux"
    STDIO = "stdio"


def choose_port_mode(properties: Mapping[str, Any] | None, agent_version: str) -> PortMode:
    props = properties or {}
    if "type" not in props or props.get("type") in (None, ""):
        return PortMode.STDIO
    if props.get("type") == LOCAL_PORT_FORWARDING and uses_mux(agent_version):
        return PortMode.MUX
    return PortMode.BASIC


def local_port_of(properties: Mapping[str, Any] | None) -> int:
    """``localPortNumber`` from the handshake Properties; missing/empty/invalid → 0 (ephemeral)."""
    value = (properties or {}).get("localPortNumber")
    try:
        port = int(str(value).strip()) if value not in (None, "") else 0
    except ValueError:
        return 0
    return port if 0 <= port <= 65535 else 0


def bind_host(listen_address: str) -> str:
    # Go's net.Listen("tcp", "localhost:p") binds the IPv4 loopback only; so do we, which also
    # keeps an ephemeral port single-valued.
    return "127.0.0.1" if listen_address == "localhost" else listen_address


class PortSession:
    """Runs after HandshakeComplete for a Port session."""

    def __init__(
        self,
        channel: DataChannel,
        console: Console,
        *,
        session_id: str,
        properties: Mapping[str, Any] | None,
        agent_version: str,
        listen_address: str = DEFAULT_LISTEN_ADDRESS,
        stdin_fd: int = 0,
        terminate_api: Callable[[], Awaitable[None]] | None = None,
        handle_signals: bool = True,
        max_chunk: int = READ_CHUNK,
        fast_path_offered: bool = False,
    ) -> None:
        self._channel = channel
        self._console = console
        self.session_id = session_id
        self.properties = dict(properties or {})
        self.agent_version = agent_version
        self.mode = choose_port_mode(self.properties, agent_version)
        self._listen_address = listen_address
        self._stdin_fd = stdin_fd
        self._terminate_api = terminate_api
        self._handle_signals = handle_signals
        self._chunk = max_chunk  # largest Output payload we send
        self._server: asyncio.Server | None = None
        self._mux: MuxSession | None = None
        self._basic_lock = asyncio.Lock()
        self._basic_writer: asyncio.StreamWriter | None = None
        self._had_connection = False
        self._scope = Scope()
        self._unix_path: str | None = None
        self._terminating = False
        self.local_port: int | None = None
        self.finished: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        # The agent offered the fast path (the data channel read the offer) and it suits this mode:
        # the dispatcher accepts it in the HandshakeResponse.
        self.fast_path = fast_path_offered and self.wants_fast_path
        if self.fast_path and self.mode is PortMode.STDIO:
            self._chunk = FAST_PATH_PAYLOAD
        if self.mode is PortMode.MUX:
            self._mux = self._new_mux()

    @property
    def fast_mux(self) -> bool:
        """The agent is OpenSSM's and offers smux v2 with large payloads (see ``openssm.transport.mux``)."""
        return fast_mux_offered(self.properties)

    @property
    def wants_fast_path(self) -> bool:
        """Large Output payloads without digests (see ``openssm.transport.mux``) suit this session: in
        stdio (SSH) mode, and in mux mode together with smux v2. Whether the agent offered it is the
        data channel's to know (``DataChannel.accept_fast_path``)."""
        return self.mode is PortMode.STDIO or (self.mode is PortMode.MUX and self.fast_mux)

    def _new_mux(self) -> MuxSession:
        if not self.fast_mux:
            return MuxSession(joined(self._send_mux_bytes), is_client=True, config=MUX_CONFIG)
        mux = MuxSession.fast(self._send_mux_parts, is_client=True, fast_path=self.fast_path)
        self._chunk = mux.max_send_size
        return mux

    async def _send_mux_parts(self, parts: list[bytes | memoryview]) -> None:
        await self._channel.send(PayloadType.OUTPUT, parts)  # max_send_size: one payload's worth

    async def _send_mux_bytes(self, data: bytes) -> None:
        for start in range(0, len(data), self._chunk):
            await self._channel.send(PayloadType.OUTPUT, data[start : start + self._chunk])

    # -- what the session dispatcher hands on (see SessionDispatcher.ready/on_event) ----------------

    def ready(self, frame: Frame) -> bool:
        if self.mode is PortMode.BASIC:
            # Like the plugin: agent data waits (unacked, resent) until a local client exists.
            return self._had_connection
        if self._mux is not None:
            # smux stops reading when its buffer is full; unacked data is resent by the agent.
            return self._mux.receive_buffered < self._mux.max_receive_buffer
        return True

    async def handle(self, frame: Frame) -> None:
        if frame.payload_type == PayloadType.FLAG:
            self._on_flag(frame)
        elif frame.payload_type == PayloadType.OUTPUT:
            await self._on_output(frame.payload)

    async def after_ack(self) -> None:
        return None

    def _on_flag(self, frame: Frame) -> None:
        if flag_of(frame) == PayloadFlag.CONNECT_TO_PORT_ERROR:
            self._console.print(PORT_FAILED_MESSAGE)

    async def _on_output(self, data: Payload) -> None:
        if self._mux is not None:
            try:
                self._mux.feed(data)
            except SmuxError as exc:
                self._console.print(f"\nPort forwarding stopped: {exc}\n")
                self._finish(1)
        elif self.mode is PortMode.STDIO:
            self._console.write(data)
            # ssh stopped reading: hold the channel's reader (TCP back-pressure reaches the agent).
            await self._console.wait_writable()
        elif self._basic_writer is not None:
            writer = self._basic_writer
            try:
                writer.write(data)
                await writer.drain()
            except (ConnectionError, OSError) as exc:
                log.debug("local connection write failed: %s", exc)
        # Between connections (after the first) the plugin writes to a closed socket: data is lost.

    # -- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM) if self._handle_signals else ():
            self._scope.on_signal(signum, self._on_terminate_signal)
        if self.mode is PortMode.STDIO:
            if self.fast_path:
                # ssh's pipes hold 64 KiB by default, which caps every message at that size.
                for fd in (self._stdin_fd, self._console.fd):
                    grow_pipe(fd, PIPE_SIZE)
            self._scope.spawn(self._pump_stdin())
            return
        await self._listen()

    async def _listen(self) -> None:
        socket_path = self.properties.get("localUnixSocket")
        unix = (
            self.properties.get("localConnectionType") == "unix"
            and isinstance(socket_path, str)
            and socket_path
        )
        if self.mode is PortMode.MUX:
            # Mux connections are relayed in received chunks (openssm.transport.tcp_connection).
            def accepted(connection: TcpConnection) -> None:
                self._scope.spawn(self._serve_mux(connection))

            if unix:
                self._server = await tcp_connection.start_unix_server(accepted, str(socket_path))
            else:
                self._server = await tcp_connection.start_server(
                    accepted, bind_host(self._listen_address), local_port_of(self.properties)
                )
        elif unix:
            self._server = await asyncio.start_unix_server(self._serve_basic, path=str(socket_path))
        else:
            self._server = await asyncio.start_server(
                self._serve_basic,
                host=bind_host(self._listen_address),
                port=local_port_of(self.properties),
                reuse_address=True,
            )
        if unix:
            self._unix_path = str(socket_path)
            opened = f"Unix socket {socket_path} opened for sessionId {self.session_id}.\n"
        else:
            self.local_port = int(self._server.sockets[0].getsockname()[1])
            opened = f"Port {self.local_port} opened for sessionId {self.session_id}.\n"
        if self.mode is PortMode.MUX:
            opened += "Waiting for connections...\n"
        self._console.print(opened)

    async def _pump_stdin(self) -> None:
        async for chunk in read_chunks(self._stdin_fd, self._chunk):
            await self._channel.send(PayloadType.OUTPUT, chunk)
        # stdin EOF (ssh has gone): end the agent side promptly instead of leaving it dangling.
        await self._channel.send(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
        await self._channel.wait_all_acked(TERMINATE_ACK_TIMEOUT)
        self._finish(0)

    def _finish(self, code: int) -> None:
        if not self.finished.done():
            self.finished.set_result(code)

    def _on_terminate_signal(self) -> None:
        if not self._terminating:
            self._terminating = True
            self._scope.spawn(self.terminate())

    async def terminate(self) -> None:
        """Ctrl-C: tell the agent to end the session (Flag 2), then leave without waiting for it."""
        if self.finished.done():
            return
        self._console.print(TERMINATE_MESSAGE)
        use_api = self.mode is PortMode.BASIC and not terminate_flag_supported(self.agent_version)
        if use_api and self._terminate_api is not None:
            with contextlib.suppress(Exception):
                await self._terminate_api()
        else:
            await self._channel.send(PayloadType.FLAG, flag_payload(PayloadFlag.TERMINATE_SESSION))
            await self._channel.wait_all_acked(TERMINATE_ACK_TIMEOUT)
        self._console.print(exiting_message(self.session_id))
        self._finish(0)

    async def close(self) -> None:
        self._scope.close()
        if self._server is not None:
            self._server.close()
        if self._unix_path is not None:
            # Python 3.11 servers leave the socket file behind.
            with contextlib.suppress(OSError):
                os.unlink(self._unix_path)
        if self._mux is not None:
            self._mux.close()

    # -- local connections ---------------------------------------------------------------------------

    async def _serve_basic(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._basic_lock:  # one local connection at a time, as the plugin does
            self._basic_writer = writer
            self._had_connection = True
            self._console.print(f"Connection accepted for session {self.session_id}.\n")
            try:
                while data := await reader.read(self._chunk):
                    await self._channel.send(PayloadType.OUTPUT, data)
            except (ConnectionError, OSError) as exc:
                log.debug("local connection read failed: %s", exc)
            finally:
                self._basic_writer = None
                writer.close()
            await self._channel.send(PayloadType.FLAG, flag_payload(PayloadFlag.DISCONNECT_TO_PORT))

    async def _serve_mux(self, connection: TcpConnection) -> None:
        assert self._mux is not None
        if not self._had_connection:  # the plugin announces only the first connection in mux mode
            self._had_connection = True
            self._console.print(f"\nConnection accepted for session [{self.session_id}]\n")
        try:
            stream = await self._mux.open_stream()
        except MuxClosedError as exc:
            log.warning("cannot open a stream: %s", exc)
            connection.close()
            return
        await pipe(stream, connection, chunk_size=self._chunk)

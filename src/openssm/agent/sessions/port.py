"""Port sessions (§3.4): basic mode (one destination connection) and mux mode (smux server).

Documents: ``AWS-StartPortForwardingSession`` (``type: LocalPortForwarding``),
``…ToRemoteHost`` (adds ``host``) and ``AWS-StartSSHSession`` (no ``type``: the client is in
stdio mode and the session ends when the destination closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

from openssm.agent.data_channel import MAX_CHUNK
from openssm.agent.sessions.base import Outcome, SessionFailure, SessionHandler
from openssm.protocol.frames import Frame, Payload, PayloadFlag, PayloadType, flag_of, flag_payload
from openssm.protocol.versions import agent_uses_mux
from openssm.transport import tcp_connection
from openssm.transport.mux import (
    FAST_MUX_PROPERTY,
    FAST_MUX_VERSION,
    FAST_PATH_PAYLOAD,
    FAST_PATH_PROPERTY,
    FAST_PATH_VERSION,
    MuxSession,
    MuxStream,
    joined,
    pipe,
)
from openssm.transport.tcp_connection import TcpConnection

log = logging.getLogger(__name__)

LOCAL_PORT_FORWARDING: Final = "LocalPortForwarding"
READ_SIZE: Final = 1024
MUX_READ_SIZE: Final = 32 * 1024
DIAL_TIMEOUT_SECONDS: Final = 10.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


def parse_port(value: Any) -> int:
    text = str(value).strip() if value is not None else ""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SessionFailure(f"invalid portNumber {value!r}")
    return int(text)


def denied_network(address: str, denied: Iterable[Network]) -> Network | None:
    """The deny-list entry covering ``address`` (IPv4-mapped IPv6 checked as IPv4), if any."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        candidates.append(ip.ipv4_mapped)
    for network in denied:
        if any(candidate.version == network.version and candidate in network for candidate in candidates):
            return network
    return None


async def resolve_destination(host: str, port: int, denied: Sequence[Network]) -> list[str]:
    """Resolved addresses of an allowed destination; refuses any name reaching a denied network."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SessionFailure(f"Unable to resolve destination host {host!r}: {exc.strerror}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    for address in addresses:
        network = denied_network(address, denied)
        if network is not None:
            raise SessionFailure(
                f"Port forwarding to {host}:{port} is not allowed: {address} is in the denied network {network}."
            )
    if not addresses:
        raise SessionFailure(f"Unable to resolve destination host {host!r}")
    return addresses


class PortHandler(SessionHandler):
    async def run(self) -> Outcome:
        properties = self.request.properties
        if not isinstance(properties, dict):
            raise SessionFailure("Port session document has no properties")
        self.port = parse_port(properties.get("portNumber"))
        host = properties.get("host")
        self.host = host.strip() if isinstance(host, str) and host.strip() else "localhost"
        self.addresses = await resolve_destination(self.host, self.port, self.settings.denied_networks)
        forwarding_type = properties.get("type")
        # Client data arriving before the destination (or the mux) is set up waits here, so it is
        # neither lost nor dialled twice.
        self._setup = asyncio.Lock()
        await self._setup.acquire()
        self._mux_mode = False
        self.mux: MuxSession | None = None
        # Offers to OpenSSM clients (see openssm.transport.mux): smux v2 for forwarding, the fast path for
        # every Port session (SSH's stdio stream too). AWS's plugin ignores both keys.
        offered = dict(properties)
        self._fast_path = False
        if forwarding_type == LOCAL_PORT_FORWARDING:
            offered[FAST_MUX_PROPERTY] = str(FAST_MUX_VERSION)
        offered[FAST_PATH_PROPERTY] = FAST_PATH_VERSION
        # Before the request goes out: large messages may follow the response without a pause.
        self.channel.offer_fast_path()
        try:
            result = await self.handshake("Port", offered)
            self._fast_path = self.channel.fast_path  # the core saw the client accept it
            if forwarding_type == LOCAL_PORT_FORWARDING and agent_uses_mux(result.client_version):
                await self._run_mux()
            else:
                await self._run_basic(reconnectable=forwarding_type == LOCAL_PORT_FORWARDING)
        finally:
            if self._setup.locked():
                self._setup.release()
        return Outcome()

    async def _connect(self) -> TcpConnection:
        """A chunk-relaying connection to the destination (openssm.transport.tcp_connection)."""
        return await self._first_address(tcp_connection.open_connection)

    async def _first_address(self, connect: Callable[[str, int], Awaitable[T]]) -> T:
        last_error: OSError | None = None
        for address in self.addresses:
            try:
                async with asyncio.timeout(DIAL_TIMEOUT_SECONDS):
                    return await connect(address, self.port)
            except (OSError, TimeoutError) as exc:
                last_error = (
                    exc if isinstance(exc, OSError) else OSError(f"timed out after {DIAL_TIMEOUT_SECONDS}s")
                )
        reason = last_error.strerror or str(last_error) if last_error else "no address"
        raise OSError(f"Unable to connect to {self.host}:{self.port}: {reason}")

    # -- basic mode ----------------------------------------------------------------------------

    async def _run_basic(self, *, reconnectable: bool) -> None:
        self._reconnectable = reconnectable
        self._destination: TcpConnection | None = None
        self._connected = asyncio.Event()
        self._fatal: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            await self._connect_basic()
        except OSError as exc:
            raise SessionFailure(str(exc)) from exc
        self._setup.release()
        pump = asyncio.create_task(self._pump_basic())
        try:
            done, _ = await asyncio.wait({pump, self._fatal}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a dial failure after DisconnectToPort ends the session
        finally:
            pump.cancel()
            self._disconnect_basic()

    async def _connect_basic(self) -> None:
        self._destination = await self._connect()
        self._connected.set()

    def _disconnect_basic(self) -> None:
        if self._destination is not None:
            self._destination.close()
        self._destination = None
        self._connected.clear()

    async def _pump_basic(self) -> None:
        """Destination bytes → Output. EOF ends stdio/SSH sessions; forwarding waits for a re-dial."""
        while True:
            await self._connected.wait()
            destination = self._destination
            assert destination is not None
            try:
                # Chunks as received (views, uncopied) make up the message on the fast path.
                parts = await destination.read_parts(FAST_PATH_PAYLOAD if self._fast_path else READ_SIZE)
            except OSError:
                parts = []
            if parts:
                if self._fast_path:
                    await self.channel.send(PayloadType.OUTPUT, parts)
                else:
                    await self.channel.send_output(b"".join(parts))  # AWS's 1 KiB messages
                continue
            if destination is self._destination:
                self._disconnect_basic()
                if not self._reconnectable:
                    return

    async def _handle_basic(self, frame: Frame) -> None:
        if frame.payload_type == PayloadType.FLAG:
            if flag_of(frame) == PayloadFlag.DISCONNECT_TO_PORT:
                log.debug("session %s: client disconnected; closing destination", self.request.session_id)
                self._disconnect_basic()
            return
        if frame.payload_type != PayloadType.OUTPUT:
            return
        if self._destination is None:
            if not self._reconnectable:
                return
            try:
                await self._connect_basic()
            except OSError as exc:
                if not self._fatal.done():
                    self._fatal.set_exception(SessionFailure(str(exc)))
                return
        destination = self._destination
        assert destination is not None
        try:
            destination.write(frame.payload)
            await destination.drain()
        except OSError:
            self._disconnect_basic()

    # -- mux mode ------------------------------------------------------------------------------

    async def _run_mux(self) -> None:
        self._mux_mode = True
        self._mux_started = asyncio.Event()
        self._streams: set[asyncio.Task[None]] = set()
        self._setup.release()
        await self._mux_started.wait()
        assert self.mux is not None
        try:
            while True:
                stream = await self.mux.accept_stream()
                task = asyncio.create_task(self._serve_stream(stream))
                self._streams.add(task)
                task.add_done_callback(self._streams.discard)
        finally:
            for task in list(self._streams):
                task.cancel()
            self.mux.close()

    def _start_mux(self, first: Payload) -> MuxSession:
        """The smux version is the one the client's first frame speaks (see ``openssm.transport.mux``)."""
        if first[:1] == bytes([FAST_MUX_VERSION]):
            self.mux = MuxSession.fast(self._send_parts, is_client=False, fast_path=self._fast_path)
        else:
            self.mux = MuxSession(joined(self.channel.send_output), is_client=False, max_send_size=MAX_CHUNK)
        log.debug("session %s: smux v%d", self.request.session_id, self.mux.version)
        self._mux_started.set()
        return self.mux

    async def _send_parts(self, parts: list[bytes | memoryview]) -> None:
        await self.channel.send(PayloadType.OUTPUT, parts)

    async def _serve_stream(self, stream: MuxStream) -> None:
        """One client connection: dial at SYN time, copy both ways, FIN when either side ends."""
        try:
            connection = await self._connect()
        except OSError as exc:
            log.warning("session %s: stream %s: %s", self.request.session_id, stream.stream_id, exc)
            with contextlib.suppress(Exception):
                await self.channel.send(PayloadType.FLAG, flag_payload(PayloadFlag.CONNECT_TO_PORT_ERROR))
            with contextlib.suppress(Exception):
                await stream.close()
            return
        if self.mux is not None and self.mux.version == FAST_MUX_VERSION:
            # OpenSSM client: true half-close both ways, so a reply after the client's FIN arrives.
            await pipe(stream, connection, chunk_size=self.mux.max_send_size)
            return

        # AWS plugin: as the AWS agent does, the client's FIN closes the destination connection.
        async def client_to_destination() -> None:
            while data := await stream.read(MUX_READ_SIZE):
                connection.write(data)
                await connection.drain()

        async def destination_to_client() -> None:
            while data := await connection.read(MUX_READ_SIZE):
                await stream.write(data)

        pumps = [asyncio.create_task(client_to_destination()), asyncio.create_task(destination_to_client())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connection.close()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            with contextlib.suppress(Exception):
                await stream.close()

    async def handle_input(self, frame: Frame) -> None:
        if self._setup.locked():
            async with self._setup:
                pass
        if self._mux_mode:
            if frame.payload_type == PayloadType.OUTPUT and frame.payload:
                mux = self.mux or self._start_mux(frame.payload)
                mux.feed(frame.payload)
                # Full receive buffer: hold this ack back so the client slows down.
                await mux.wait_receive_capacity()
            return
        await self._handle_basic(frame)

"""One client session end to end: dial, pick the session kind (first Output or handshake), run it,
and finish the way the plugin does (printed lines, tty restored, exit code)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from openssm.client.api import ApiError, ApiTarget, SessionApi, StartedSession
from openssm.client.datachannel import (
    CANNOT_RESUME,
    ChannelError,
    ChannelStalled,
    DataChannel,
    SessionTimedOut,
)
from openssm.client.encryption import ENCRYPTED_FROM_AGENT, EncryptionError, SessionCipher, generate_data_key
from openssm.client.output import DEFAULT_LISTEN_ADDRESS, Console, exiting_message
from openssm.client.scope import Scope
from openssm.client.shell import JoinStyle, ShellSession
from openssm.client.terminal import READ_CHUNK
from openssm.protocol.datachannel import StreamData
from openssm.protocol.frames import Frame, PayloadType
from openssm.protocol.messages import (
    ActionStatus,
    ActionType,
    EncryptionChallenge,
    HandshakeRequest,
    MessageError,
    ProcessedAction,
    SessionType,
    handshake_response,
    parse_encryption_challenge,
    parse_handshake_complete,
    parse_handshake_request,
)
from openssm.transport.datachannel import Delivered

if TYPE_CHECKING:  # imported when a port session starts: smux and the mux are most of the client's imports
    from openssm.client.port import PortSession

log = logging.getLogger(__name__)
_Message = TypeVar("_Message")

# A joiner's channel lost (its server restarted, its network went): it does not resume, it says so.
JOINER_LOST: Final = (
    "[openssm] lost the connection to the joined session (did its server restart?); the session"
    " goes on: run `openssm join-session` again to rejoin"
)

SHELL_SESSION_TYPES = frozenset(
    {SessionType.STANDARD_STREAM, SessionType.INTERACTIVE_COMMANDS, SessionType.NON_INTERACTIVE_COMMANDS}
)
HANDSHAKE_TYPES = frozenset(
    {PayloadType.HANDSHAKE_REQUEST, PayloadType.HANDSHAKE_COMPLETE, PayloadType.ENC_CHALLENGE_REQUEST}
)
KMS_NEEDS_API = "KMS encryption needs AWS credentials and a region"

SessionHandler: TypeAlias = "ShellSession | PortSession"
CHUNK_ENV = "OPENSSM_CLIENT_CHUNK_BYTES"
MAX_CHUNK = 64 * 1024
FAST_CHUNK = 16 * 1024  # what ``openssm start-session`` uses by default


@dataclasses.dataclass
class ClientOptions:
    """How this process talks to its user."""

    console: Console = dataclasses.field(default_factory=Console)
    stdin_fd: int = 0
    listen_address: str = DEFAULT_LISTEN_ADDRESS
    api: ApiTarget | None = None  # None: ResumeSession/TerminateSession are not available
    handle_signals: bool = True  # False when several sessions share one process and its signals
    stop: asyncio.Event | None = None  # set → end the session as Ctrl-C would
    target: str = ""  # the StartSession Target (part of the KMS encryption context)
    # Largest Output payload for port data. AWS's plugin never sends more than 1 KiB; OpenSSM's
    # gateway and agent take up to 64 KiB, which moves bulk data about ten times faster.
    max_chunk: int = READ_CHUNK
    joining: JoinStyle | None = None  # set by `openssm join-session`: someone else's session


def chunk_size_from_env(default: int) -> int:
    """``OPENSSM_CLIENT_CHUNK_BYTES`` if set (clamped to 1 KiB..64 KiB), else ``default``."""
    raw = os.environ.get(CHUNK_ENV, "").strip()
    if not raw.isdigit():
        return default
    return max(READ_CHUNK, min(MAX_CHUNK, int(raw)))


def starting_message(session_id: str) -> str:
    return f"\nStarting session with SessionId: {session_id}\n"


def closed_message(session_id: str, output: str) -> str:
    if output:
        return f"\n\nSessionId: {session_id} : {output}\n\n"
    return exiting_message(session_id)


class SessionDispatcher:
    """Receives every in-order agent message; decides the session kind and hands over to it."""

    def __init__(self, channel: DataChannel, session_id: str, options: ClientOptions) -> None:
        self._channel = channel
        self.session_id = session_id
        self._options = options
        self._console = options.console
        self._terminate_api: Callable[[], Awaitable[None]] | None = None
        if options.api is not None:
            self._terminate_api = SessionApi(options.api, session_id).terminate
        self._cipher: SessionCipher | None = None
        self.prepared: SessionHandler | None = None  # chosen by the handshake, not yet running
        self.active: SessionHandler | None = None
        self._start_after_ack = False
        loop = asyncio.get_running_loop()
        self.finished: asyncio.Future[int] = loop.create_future()

    # -- the data channel's handler (transport.datachannel.ChannelHandler) ----------------------------

    def ready(self, frame: Frame) -> bool:
        return self.active.ready(frame) if self.active is not None else True

    async def on_event(self, event: StreamData | Delivered) -> None:
        if isinstance(event, StreamData):
            await self.handle(event.frame)
        else:
            await self.after_ack()

    async def handle(self, frame: Frame) -> None:
        if self.active is not None and frame.payload_type not in HANDSHAKE_TYPES:
            plain = self._decrypted(frame)
            if plain is not None:
                await self.active.handle(plain)
            return
        if frame.payload_type == PayloadType.HANDSHAKE_REQUEST:
            await self._on_handshake_request(frame)
        elif frame.payload_type == PayloadType.HANDSHAKE_COMPLETE:
            await self._on_handshake_complete(frame)
        elif frame.payload_type == PayloadType.OUTPUT and self.prepared is None:
            # No handshake and the agent talks: a shell session (the plugin's rule).
            self.prepared = self._shell()
            await self.prepared.handle(frame)
            self._start_after_ack = True
        elif frame.payload_type == PayloadType.ENC_CHALLENGE_REQUEST:
            await self._on_challenge(frame)
        else:
            log.debug("ignoring payload type %d before the session started", frame.payload_type)

    async def after_ack(self) -> None:
        if self._start_after_ack:
            self._start_after_ack = False
            await self._activate()

    # -- handshake -------------------------------------------------------------------------------------

    async def _on_handshake_request(self, frame: Frame) -> None:
        request = _parsed(parse_handshake_request, frame, "HandshakeRequest")
        if request is None:
            return
        processed = tuple(
            [await self._process_action(request, action.action_type) for action in request.actions]
        )
        extensions: tuple[tuple[str, str], ...] = ()
        port = self._port_session()
        if port is not None and port.fast_path:
            extensions = self._channel.accept_fast_path()
        response = handshake_response(processed, extensions=extensions)
        await self._channel.send(PayloadType.HANDSHAKE_RESPONSE, response.encode())

    async def _process_action(self, request: HandshakeRequest, action_type: str) -> ProcessedAction:
        if action_type == ActionType.SESSION_TYPE:
            session_type = request.session_type or ""
            if session_type in SHELL_SESSION_TYPES:
                self.prepared = self._shell()
            elif session_type == SessionType.PORT:
                from openssm.client.port import PortSession

                self.prepared = PortSession(
                    self._channel,
                    self._console,
                    session_id=self.session_id,
                    properties=request.properties,
                    agent_version=request.agent_version,
                    listen_address=self._options.listen_address,
                    stdin_fd=self._options.stdin_fd,
                    terminate_api=self._terminate_api,
                    max_chunk=self._options.max_chunk,
                    handle_signals=self._options.handle_signals,
                    fast_path_offered=self._channel.fast_path_offered,
                )
            else:
                return ProcessedAction(
                    action_type, ActionStatus.FAILED, None, f"Unknown session type {session_type}"
                )
            return ProcessedAction(action_type, ActionStatus.SUCCESS)
        if action_type == ActionType.KMS_ENCRYPTION:
            return await self._start_encryption(action_type, request.kms_key_id or "")
        return ProcessedAction(
            action_type, ActionStatus.UNSUPPORTED, None, f"Unsupported action {action_type}"
        )

    async def _start_encryption(self, action_type: str, key_id: str) -> ProcessedAction:
        if self._options.api is None:
            return ProcessedAction(action_type, ActionStatus.FAILED, None, KMS_NEEDS_API)
        try:
            kms = self._options.api.kms()
            blob, cipher = await generate_data_key(kms, key_id, self.session_id, self._options.target)
        except (ApiError, EncryptionError, KeyError, TypeError) as exc:
            log.warning("KMS GenerateDataKey failed: %s", exc)
            return ProcessedAction(
                action_type, ActionStatus.FAILED, None, f"KMS GenerateDataKey failed: {exc}"
            )
        self._cipher = cipher
        self._channel.encrypt = cipher.encrypt
        result = {"KMSCipherTextKey": base64.b64encode(blob).decode("ascii"), "KMSCipherTextHash": None}
        return ProcessedAction(action_type, ActionStatus.SUCCESS, result)

    async def _on_challenge(self, frame: Frame) -> None:
        if self._cipher is None:
            log.warning("encryption challenge without a session key")
            return
        try:
            challenge = parse_encryption_challenge(frame.payload).challenge
            answer = self._cipher.answer_challenge(challenge)
        except (MessageError, EncryptionError) as exc:
            log.warning("bad encryption challenge: %s", exc)
            return
        await self._channel.send(PayloadType.ENC_CHALLENGE_RESPONSE, EncryptionChallenge(answer).encode())

    def _decrypted(self, frame: Frame) -> Frame | None:
        if self._cipher is None or frame.payload_type not in ENCRYPTED_FROM_AGENT:
            return frame
        try:
            return frame.with_payload(self._cipher.decrypt(frame.payload))
        except EncryptionError as exc:
            log.warning("dropping undecryptable payload: %s", exc)
            return None

    async def _on_handshake_complete(self, frame: Frame) -> None:
        complete = _parsed(parse_handshake_complete, frame, "HandshakeComplete")
        if complete is None:
            return
        if complete.customer_message:
            self._console.print(complete.customer_message + "\n")
        if self.prepared is not None:
            await self._activate()

    def _port_session(self, handler: SessionHandler | None = None) -> PortSession | None:
        """``handler`` (by default the prepared one) if it is a port session. Tells them apart
        without importing the port module, which a shell session never needs."""
        if handler is None:
            handler = self.prepared
        return None if handler is None or isinstance(handler, ShellSession) else handler

    def _shell(self) -> ShellSession:
        return ShellSession(
            self._channel,
            self._console,
            stdin_fd=self._options.stdin_fd,
            joining=self._options.joining,
        )

    async def _activate(self) -> None:
        handler = self.prepared
        if handler is None or self.active is not None:
            return
        self.active = handler
        handler.finished.add_done_callback(self._handler_finished)
        try:
            await handler.start()
        except OSError as exc:  # e.g. the local port is taken
            print(f"Cannot start the session: {exc}", file=sys.stderr)
            if not self.finished.done():
                self.finished.set_result(1)

    def _handler_finished(self, future: asyncio.Future[int]) -> None:
        if not self.finished.done():
            self.finished.set_result(0 if future.cancelled() else future.result())

    async def stop(self) -> None:
        """End the session on the user's behalf (Ctrl-C for port sessions)."""
        port = self._port_session(self.active)
        if port is not None:
            await port.terminate()
        elif not self.finished.done():
            self.finished.set_result(0)

    async def close(self) -> None:
        if self.active is not None:
            await self.active.close()


def _parsed(parse: Callable[[bytes | memoryview], _Message], frame: Frame, name: str) -> _Message | None:
    """The agent's handshake message ``name`` in ``frame``, or None when it is malformed: logged and
    dropped, as the session goes on without it."""
    try:
        return parse(frame.payload)
    except MessageError as exc:
        log.warning("bad %s: %s", name, exc)
        return None


def _resuming(api: SessionApi, use_url: Callable[[str], None]) -> Callable[[], Awaitable[str | None]]:
    """ResumeSession for the data channel, which then dials the StreamUrl it names: the same as
    before, or another server node's when the session's node died."""

    async def resume() -> str | None:
        token = await api.resume()
        if api.stream_url:
            use_url(api.stream_url)
        return token

    return resume


async def run_session(started: StartedSession, options: ClientOptions) -> int:
    """Run one session from a StartSession response; returns the process exit code."""
    console = options.console
    console.print(starting_message(started.session_id))
    api = SessionApi(options.api, started.session_id) if options.api is not None else None
    channel: DataChannel

    def use_url(url: str) -> None:
        channel.stream_url = url

    channel = DataChannel(
        started.stream_url,
        started.token_value,
        resume=_resuming(api, use_url) if api else None,
        client_id=started.client_id,
        opened=started.opened,
        lost=JOINER_LOST if options.joining else CANNOT_RESUME,
    )
    dispatcher = SessionDispatcher(channel, started.session_id, options)
    scope = Scope()
    scope.spawn(_stop_when_set(options.stop, dispatcher))
    for signum in (signal.SIGHUP, signal.SIGTERM) if options.handle_signals else ():
        scope.on_signal(signum, _finish, dispatcher.finished, 0)
    reader: asyncio.Task[str] | None = None
    cancelled = False
    try:
        await channel.connect()
        reader = asyncio.create_task(channel.run(dispatcher))
        waiters: list[asyncio.Future[Any]] = [reader, dispatcher.finished]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if dispatcher.finished.done():
            return dispatcher.finished.result()
        output = reader.result()
        console.print(closed_message(started.session_id, output))
        return 0
    except SessionTimedOut:
        console.print(f"Session: {started.session_id} timed out.\n")
        return 0
    except ChannelStalled as exc:
        print(f"\n{exc}; terminating the session.", file=sys.stderr)
        if api is not None:
            with contextlib.suppress(ApiError):
                await api.terminate()  # as the plugin does, so the agent side ends too
        return 1
    except ChannelError as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 1
    except asyncio.CancelledError:
        cancelled = True
        raise
    finally:
        scope.close()
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, ChannelError):
                await reader
        await dispatcher.close()
        await channel.close()
        if not cancelled:  # a cancelled caller must not wait for a reader that may never read
            await console.drain()  # the last output and our closing lines, before the process exits


def _finish(future: asyncio.Future[int], code: int) -> None:
    if not future.done():
        future.set_result(code)


async def _stop_when_set(stop: asyncio.Event | None, dispatcher: SessionDispatcher) -> None:
    if stop is not None:
        await stop.wait()
        await dispatcher.stop()

"""The agent's end of one session's data channel (§2, §4.2): a thin driver over
:class:`openssm.protocol.datachannel.DataChannelCore` (through ``transport.datachannel``).

What is the agent's own: opening the channel (token, WebSocket, open frame, ``Connected``), re-opening
it with a new token when it drops (AWS's five attempts), the ``Terminating`` state on a normal end,
and the ways a session is ended from outside (client TerminateSession flag, ``channel_closed``, a
lost connection, the agent stopping).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import uuid
from collections.abc import Callable
from typing import Final

from openssm.agent.mgs import MgsClient, MgsError
from openssm.clock import SYSTEM_CLOCK
from openssm.protocol.backoff import Backoff
from openssm.protocol.datachannel import ChannelClosed, CloseReason, DataChannelCore, Role
from openssm.protocol.frames import FLAG_ACK, Frame, MessageType, PayloadParts, PayloadType, go_json
from openssm.transport.datachannel import ChannelDriver, ChannelEnded, ChannelHandler, ChannelSocket

__all__ = ["MAX_CHUNK", "MAX_INPUT_PAYLOAD", "ChannelEnded", "DataChannel", "EndReason"]

log = logging.getLogger(__name__)

MAX_CHUNK: Final = 1024  # the real agent's largest stream payload for PTY/port bytes
# Bounds on what a client can make the agent hold: real clients send <= 1024-byte chunks and
# small JSON, and resend anything dropped, so larger or far-ahead messages are refused.
MAX_INPUT_PAYLOAD: Final = 64 * 1024
MAX_REORDER: Final = 1024
# About 60 s of tries (AWS's backoff, the last ones 5 s apart): long enough for the server to restart.
RECONNECT_ATTEMPTS: Final = 16


class EndReason(enum.Enum):
    CLIENT_TERMINATED = "client sent TerminateSession"
    CHANNEL_CLOSED = "channel closed by the service"
    CONNECTION_LOST = "data channel connection lost"
    AGENT_STOPPING = "agent is stopping"


_FROM_CORE: Final = {
    CloseReason.TERMINATED: EndReason.CLIENT_TERMINATED,
    CloseReason.CHANNEL_CLOSED: EndReason.CHANNEL_CLOSED,
}


class DataChannel:
    def __init__(
        self,
        mgs: MgsClient,
        *,
        session_id: str,
        instance_id: str,
        reconnect_attempts: int = RECONNECT_ATTEMPTS,
    ) -> None:
        self._mgs = mgs
        self.session_id = session_id
        self.instance_id = instance_id
        self._reconnect_attempts = reconnect_attempts
        core = DataChannelCore(
            Role.AGENT, now=SYSTEM_CLOCK.monotonic(), reorder_limit=MAX_REORDER, max_payload=MAX_INPUT_PAYLOAD
        )
        self.driver = ChannelDriver(core, peer=f"the gateway (session {session_id})", clock=SYSTEM_CLOCK)
        self.core = core
        # OPENSSM-KMS: set once a KMS-encrypted session agreed its key: (payload type, payload) → payload.
        self.encrypt: Callable[[int, bytes], bytes] | None = None
        self.ended = asyncio.Event()
        self.end_reason: EndReason | None = None
        self.close_output = ""
        self._server: asyncio.Task[None] | None = None
        self._closing = False

    # -- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        """Token, WebSocket, open frame, then ``agent_session_state Connected``."""
        await self.driver.attach(await self._connect())
        await self._send_state("Connected")
        self._server = asyncio.create_task(self._serve(), name=f"data-channel-{self.session_id}")

    async def _connect(self) -> ChannelSocket:
        endpoint = self._mgs.session_endpoint()  # the node serving the session
        token = await self._mgs.create_data_channel(self.session_id, endpoint)
        ws = await self._mgs.connect_data(self.session_id, endpoint)
        opening = {
            "MessageSchemaVersion": "1.0",
            "RequestId": str(uuid.uuid4()),
            "TokenValue": token,
            "ClientInstanceId": self.instance_id,
            "ClientId": "",
        }
        await ws.send_str(go_json(opening).decode())
        return ws

    async def close(self, *, send_terminating: bool) -> None:
        """``Terminating`` (on a normal end) and then drop the socket, as the real agent does."""
        self._closing = True
        self.driver.set_handler(None)
        if send_terminating and not self.ended.is_set():
            await self._send_state("Terminating")
        self.driver.close()
        if self._server is not None:
            self._server.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._server
        ws = self.driver.ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    def end(self, reason: EndReason, output: str = "") -> None:
        """Mark the session as ended from outside (idempotent: the first reason wins)."""
        if self.ended.is_set():
            return
        self.end_reason = reason
        self.close_output = output
        self.driver.set_handler(None)
        self.ended.set()
        self.driver.close()

    # -- the handler's side --------------------------------------------------------------------

    def accept_input(self, handler: ChannelHandler) -> None:
        """From now on client stream messages the handler is ready for are acked and delivered.
        Before this call they are dropped unacked ("not ready"), so the client keeps resending them."""
        self.driver.set_handler(handler)

    def offer_fast_path(self) -> None:
        """The HandshakeRequest about to go out offers the fast path: take the client's large
        messages from now on (the core switches to digest-less Output if the client accepts)."""
        self.core.offer_fast_path()

    @property
    def fast_path(self) -> bool:
        """Both ends agreed to the fast path (known once the HandshakeResponse has arrived)."""
        return self.core.fast_path

    async def send(self, payload_type: int, payload: bytes | PayloadParts) -> None:
        """Send one stream message, waiting while publication is paused or the window is full."""
        if self.ended.is_set() or self._closing:
            raise ChannelEnded(self.end_reason.value if self.end_reason else "closed")
        if self.encrypt is not None:  # OPENSSM-KMS: session encryption (agent/sessions/base.py)
            payload = self.encrypt(
                payload_type, b"".join(payload) if not isinstance(payload, bytes) else payload
            )
        await self.driver.send(payload_type, payload)

    def expect_reply(self) -> None:
        """The message just handled will be answered at once: see ``ChannelDriver.expect_reply``."""
        self.driver.expect_reply()

    async def send_output(self, data: bytes, payload_type: int = PayloadType.OUTPUT) -> None:
        for start in range(0, len(data), MAX_CHUNK):
            await self.send(payload_type, data[start : start + MAX_CHUNK])

    async def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` until the client acked everything. True if it did."""
        if self.ended.is_set():
            return self.core.unacked_count == 0
        return await self.driver.wait_acked(timeout, until_closed=True)

    # -- internals -----------------------------------------------------------------------------

    async def _send_state(self, state: str) -> None:
        body = {"SchemaVersion": 1, "SessionState": state, "SessionId": self.session_id}
        await self.driver.send_unsequenced(
            Frame(MessageType.AGENT_SESSION_STATE, 0, FLAG_ACK, PayloadType.NONE, go_json(body))
        )

    async def _serve(self) -> None:
        try:
            closed: ChannelClosed = await self.driver.serve(self._reconnect)
        except ChannelEnded:
            self.end(EndReason.CONNECTION_LOST, "data channel connection lost")
            return
        except Exception:
            log.exception("session %s: the data channel failed", self.session_id)
            self.end(EndReason.CONNECTION_LOST, "data channel connection lost")
            return
        reason = _FROM_CORE.get(closed.reason)
        if reason is not None:
            self.end(reason, closed.output)

    async def _reconnect(self) -> ChannelSocket:
        if self._closing or self.ended.is_set():
            raise ChannelEnded("closed")
        log.warning("session %s: data channel connection lost; reconnecting", self.session_id)
        delays = Backoff(attempts=self._reconnect_attempts).delays()
        for attempt in range(1, self._reconnect_attempts + 1):
            try:
                return await self._connect()
            except MgsError as exc:
                log.warning("session %s: reconnect %d failed: %s", self.session_id, attempt, exc)
                if exc.session_gone:
                    break
            except (OSError, TimeoutError) as exc:
                log.warning("session %s: reconnect %d failed: %s", self.session_id, attempt, exc)
            await asyncio.sleep(next(delays, 0.0))
        raise ChannelEnded("data channel connection lost")

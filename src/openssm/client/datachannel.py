"""The client end of a Session Manager data channel (``session-manager-protocol.md`` §2).

Dials the StreamUrl, sends the JSON open frame, numbers and resends ``input_stream_data``,
acks and orders ``output_stream_data``, and survives a dropped socket by ResumeSession +
re-dial of the original StreamUrl (§2.9), within a resume window that outlasts a server restart.
The protocol itself is :mod:`openssm.protocol.datachannel`'s, run by ``transport.datachannel``;
what the stream bytes mean is the :class:`~openssm.transport.datachannel.ChannelHandler`'s business.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from openssm.client.dial import open_channel
from openssm.client.trace import mark
from openssm.clock import SYSTEM_CLOCK
from openssm.errors import OpenSSMError
from openssm.protocol.backoff import AWS_RETRIES, Backoff
from openssm.protocol.datachannel import STALL_LIMIT_SECONDS, CloseReason, DataChannelCore, Role
from openssm.protocol.frames import PayloadParts, PayloadType
from openssm.transport.datachannel import ChannelDriver, ChannelEnded, ChannelHandler
from openssm.transport.websocket_connection import ClientWebSocket

log = logging.getLogger(__name__)

# How long a lost channel is given to come back (ResumeSession + re-dial, AWS's backoff shape):
# long enough for a server restart. ``OPENSSM_RESUME_WINDOW_SECONDS`` changes it.
DEFAULT_RESUME_WINDOW: Final = 90.0
RESUME_WINDOW_ENV: Final = "OPENSSM_RESUME_WINDOW_SECONDS"
PING_INTERVAL: Final = 300.0  # the plugin's keepalive ping period
# What the user is told while a lost channel is being resumed, and when it is back (the browser
# console's datachannel.js shows the same lines).
RECONNECTING: Final = "connection lost, reconnecting\u2026"
RECONNECTED: Final = "connection back; the session goes on"
CANNOT_RESUME: Final = "the data channel was lost and this client cannot resume sessions"


class ChannelError(OpenSSMError):
    """The data channel cannot be used any more (dial failed, resume refused, stalled)."""


class ChannelStalled(ChannelError):
    """Our messages went unacknowledged for minutes: the session is given up (and terminated)."""


class SessionTimedOut(ChannelError):
    """ResumeSession answered without a token: the service has already ended the session."""


class ResumeFailed(ChannelError):
    """One ResumeSession call failed; ``final`` when retrying cannot help (the session is gone,
    access denied)."""

    def __init__(self, text: str, *, final: bool) -> None:
        super().__init__(text)
        self.final = final


class ResumeWindowExpired(ChannelError):
    """The channel stayed lost for the whole resume window."""


def resume_window_from_env(default: float = DEFAULT_RESUME_WINDOW) -> float:
    """``OPENSSM_RESUME_WINDOW_SECONDS`` if set to a number >= 0, else ``default``."""
    raw = os.environ.get(RESUME_WINDOW_ENV, "").strip()
    try:
        value = float(raw)
    except ValueError:
        return default
    return value if value >= 0 else default


def notice(text: str) -> None:
    """A line for the user on stderr (the terminal may be in cbreak mode: no raw mode, so \\n works)."""
    print(f"\r\n[openssm] {text}", file=sys.stderr, flush=True)


# Returns the new TokenValue, or None/"" if the session is gone.
ResumeCallback = Callable[[], Awaitable[str | None]]


class DataChannel:
    """One client data channel, a thin driver over the shared core: use :meth:`connect`, then
    :meth:`run` with a handler."""

    def __init__(
        self,
        stream_url: str,
        token: str,
        *,
        resume: ResumeCallback | None = None,
        client_id: str | None = None,
        opened: ClientWebSocket | None = None,
        resume_window: float | None = None,
        lost: str = CANNOT_RESUME,
    ) -> None:
        """``lost``: what to say when the channel is lost and there is no ``resume``."""
        self.stream_url = stream_url
        self._lost = lost
        self._opened = opened  # already dialled, its open frame sent (with ``client_id``)
        self._token = token
        self._resume = resume
        self.resume_window = resume_window_from_env() if resume_window is None else resume_window
        self.client_id = client_id or str(uuid.uuid4())
        self.core = DataChannelCore(
            Role.CLIENT,
            now=SYSTEM_CLOCK.monotonic(),
            verify_digest=True,
            require_dates=True,
            stall_limit=STALL_LIMIT_SECONDS,
            keepalive_interval=PING_INTERVAL,
        )
        self.driver = ChannelDriver(self.core, peer="the service")
        self._closing = False
        # Set once KMS encryption is agreed: applied to outgoing Output payloads only.
        self.encrypt: Callable[[bytes], bytes] | None = None

    @property
    def acks_received(self) -> int:
        return self.core.acks_received

    # -- connection ------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Dial (with retries, same token) and send the open frame."""
        last_error: Exception | None = None
        for delay in [0.0, *AWS_RETRIES.delays()]:
            await asyncio.sleep(delay)
            try:
                await self.driver.attach(await self._dial())
                return
            except (TimeoutError, OSError) as exc:
                last_error = exc
                log.debug("data channel dial failed: %s", exc)
        raise ChannelError(f"cannot open the data channel {self.stream_url}: {last_error}")

    async def _dial(self) -> ClientWebSocket:
        if self._opened is not None:  # opened at start-up, while the client was being imported
            ws, self._opened = self._opened, None
            return ws
        ws = await open_channel(self.stream_url, self._token, self.client_id)
        mark("dial")
        return ws

    async def close(self) -> None:
        """Drop the connection (the real plugin never sends a close frame either) and free it."""
        self._closing = True
        self.driver.close()
        ws, self.driver.ws = self.driver.ws, None
        if ws is not None and not ws.closed:
            try:
                await asyncio.wait_for(ws.close(), 2.0)
            except (TimeoutError, OSError):
                pass

    def accept_fast_path(self) -> tuple[tuple[str, str], ...]:
        """Take the agent's fast-path offer: the HandshakeResponse extensions that say so (the
        core then sends, and takes, Output without digests)."""
        return self.core.accept_fast_path()

    @property
    def fast_path_offered(self) -> bool:
        return self.core.fast_path_offered

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, payload_type: int, payload: bytes | PayloadParts) -> None:
        """Send one input_stream_data message; it is kept until acked and resent as needed."""
        if self.encrypt is not None and payload_type == PayloadType.OUTPUT:
            payload = self.encrypt(payload if isinstance(payload, bytes) else b"".join(payload))
        await self.driver.send(payload_type, payload)

    async def wait_all_acked(self, timeout: float) -> bool:
        """Wait until the agent has acked everything we sent (used before exiting)."""
        return await self.driver.wait_acked(timeout)

    # -- receiving -------------------------------------------------------------------------------

    async def run(self, handler: ChannelHandler) -> str:
        """Serve the channel until ``channel_closed``; returns its Output text.

        Raises :class:`ChannelError` when the socket is lost and cannot be resumed.
        """
        self.driver.set_handler(handler)
        try:
            closed = await self.driver.serve(self._reconnect)
        except ChannelEnded as exc:
            raise ChannelError(str(exc)) from exc
        if closed.reason is CloseReason.STALLED:
            raise ChannelStalled(f"the agent acknowledged nothing for {STALL_LIMIT_SECONDS:.0f} s")
        if closed.reason is CloseReason.LOCAL:
            raise ChannelError("data channel closed")
        return closed.output

    async def _reconnect(self) -> ClientWebSocket:
        """ResumeSession, then re-dial the original StreamUrl with the new token (§2.9), retried
        with AWS's backoff until the resume window ends (long enough for a server restart)."""
        if self._closing:
            raise ChannelError("data channel closed")
        if self._resume is None:
            raise ChannelError(self._lost)
        window = self.resume_window
        notice(RECONNECTING)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + window
        last_error: Exception | None = None
        for delay in [0.0, *Backoff(window=window).delays()]:
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    token = await self._resume()
                    if not token:
                        raise SessionTimedOut("session timed out")
                    self._token = token
                    ws = await self._dial()
            except ResumeFailed as exc:
                if exc.final:
                    raise
                last_error = exc
            except (TimeoutError, OSError) as exc:
                last_error = exc
                log.debug("reconnect failed: %s", exc)
            else:
                notice(RECONNECTED)
                return ws  # the driver replays what the agent has not acked yet
        raise ResumeWindowExpired(
            f"[openssm] no connection for {window:.0f} s; giving up on the session ({last_error or 'no answer'})"
        )

"""The WebSocket endpoints: an agent's control channel, and the data channel shared by the client
(authenticated by the TokenValue in its first frame) and the agent (SigV4-signed upgrade, then its
token; told apart by ``ClientInstanceId`` in the first frame)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Final

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy.ext.asyncio import AsyncConnection

from openssm import security
from openssm.gateway import messages
from openssm.gateway.agent_auth import (
    authenticate_agent,
    authorize_agent,
    claimed_key,
    instance_arn,
    is_signed,
    own_instance,
)
from openssm.gateway.control import ControlChannel
from openssm.gateway.extension import ExtensionChannel
from openssm.gateway.node import GatewayNode, NodeStopping, SessionRefused
from openssm.gateway.peer import CLOSE_TIMEOUT, LINGER, Peer, Socket, make_websocket
from openssm.gateway.rest import KIND_CONTROL, KIND_DATA, error_response
from openssm.gateway.session import SessionRelay
from openssm.iam.arn import session_arn
from openssm.ops.refusals import refused, unauthenticated
from openssm.store import channel_tokens, instances, trace
from openssm.store.channel_tokens import ChannelTokenRow, TokenKind
from openssm.store.db import DatabaseBusy
from openssm.store.rows import Db, queued_write
from openssm.transport import websocket_connection

log = logging.getLogger(__name__)

KIND_CLIENT: Final = TokenKind.CLIENT
BAD_TOKEN: Final = "The session token is invalid, expired or already used"
OPEN_CONTROL: Final = "ssmmessages:OpenControlChannel"
OPEN_DATA: Final = "ssmmessages:OpenDataChannel"

# Logs a channel refusal: (code, reason).
Refusal = Callable[[str, str], None]


async def read_open_frame(ws: Socket, timeout: float, refuse: Refusal) -> messages.OpenFrame | None:
    """The first frame must be a JSON text frame with a TokenValue; otherwise close and None
    (``refuse`` logs why, unless the peer just went away)."""
    try:
        msg = await ws.receive(timeout=timeout)
    except TimeoutError:
        refuse("InvalidOpenFrame", f"no open frame within {timeout:g}s")
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"no open frame")
        return None
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return None
    if msg.type is not WSMsgType.TEXT:
        refuse("InvalidOpenFrame", "first frame must be a text open frame")
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"first frame must be a text open frame")
        return None
    try:
        return messages.parse_open_frame(msg.data)
    except messages.MessageError as exc:
        refuse("InvalidOpenFrame", str(exc))
        await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=str(exc).encode()[:120])
        return None


async def binary_frames(ws: Socket) -> AsyncIterator[bytes]:
    """Binary messages until the socket ends; EOF without a close frame is a normal end."""
    while True:
        msg = await ws.receive()
        if msg.type is WSMsgType.BINARY:
            yield msg.data
        elif msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
            return


async def refuse_agent(peer: Peer, session_id: str, code: str, reason: str, refuse: Refusal) -> None:
    refuse(code, reason)
    await peer.send(messages.channel_closed(session_id, "", reason))
    await peer.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=reason.encode()[:120])


async def try_again_later(peer: Peer, refuse: Refusal) -> None:
    """No database connection to open the channel with (a wave): closed with 1013 and no
    ``channel_closed``, so the end dials again as after a network cut instead of giving up."""
    refuse("ThrottlingException", "Rate exceeded")
    await peer.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"Rate exceeded")


async def refuse_client(peer: Peer, session_id: str, code: str, reason: str, refuse: Refusal) -> None:
    """Tell the plugin why (it prints Output and exits) rather than letting it retry blindly."""
    refuse(code, reason)
    await peer.send(messages.channel_closed(session_id, "", reason))
    await peer.close_after(LINGER)


async def _served(
    ws: websocket_connection.WebSocketConnection, name: str, serve: Callable[[Peer], Awaitable[None]]
) -> web.StreamResponse:
    """Run ``serve`` on the accepted socket as the Peer ``name``; however it ends, the peer is gone
    and the socket closed after it. The upgrade's response, for aiohttp."""
    peer = Peer(ws, name)
    try:
        await serve(peer)
    finally:
        peer.set_gone()
        await ws.close()
    assert ws.response is not None
    return ws.response


def _refusal(surface: str, action: str, resource: str, principal: Callable[[], str | None]) -> Refusal:
    """A :data:`Refusal` for one channel; ``principal()`` says who it is as far as known then."""

    def log_refusal(code: str, reason: str) -> None:
        refused(surface, principal=principal(), action=action, resource=resource, code=code, reason=reason)

    return log_refusal


class SocketHandlers:
    def __init__(self, node: GatewayNode) -> None:
        self.node = node
        self.services = node.services
        self.settings = node.settings

    async def control(self, request: web.Request) -> web.StreamResponse:
        response, control = await self._accept_control(request)
        if control is None:
            return response
        # Served from here, a frame that holds only the channel: what let it in (the request's
        # refusal logger, the identity, the audit batch and its context manager) is let go of
        # for the channel's life, which is most of a fleet's connections' whole life.
        instance_id = control.instance_id
        try:
            await self.node.register_control(control)
            try:
                await control.serve(self.node)
            finally:
                await self.node.run_detached(
                    self.node.unregister_control(control), f"unregister-{instance_id}"
                )
                log.info("control channel closed: %s", instance_id)
        finally:
            control.peer.set_gone()
        return response

    async def _accept_control(self, request: web.Request) -> tuple[web.StreamResponse, ControlChannel | None]:
        """Authenticate and authorise the agent, upgrade, and take its open frame and token: the
        response for aiohttp, and the channel to serve (None if it was refused or went away)."""
        instance_id = request.match_info["instance_id"]
        who: list[str] = []  # the principal, once authenticated
        refuse = _refusal(
            "control-channel",
            OPEN_CONTROL,
            instance_arn(self.services.config, instance_id),
            lambda: who[0] if who else unauthenticated(claimed_key(request)),
        )
        if not is_signed(request):
            refuse("MissingAuthenticationTokenException", "Missing Authentication Token")
            return error_response(
                "MissingAuthenticationTokenException", "Missing Authentication Token", 403
            ), None
        try:
            identity = await authenticate_agent(self.services, request, b"")
        except security.AuthError as exc:
            refuse(exc.code, exc.message)
            return error_response(exc.code, exc.message, exc.status), None
        who.append(identity.principal.arn)
        resource = instance_arn(self.services.config, instance_id)
        # The decision to let the agent in is written with the use of its token (and the node's
        # control channel): one group-committed transaction per agent, where a fleet's upgrades
        # each committed an audit row of their own, contending for SQLite's one writer.
        async with security.audited(self.services) as batch:
            try:
                await authorize_agent(
                    self.services, request, identity, OPEN_CONTROL, instance_id, [resource], batch
                )
            except security.AccessDenied as exc:
                refuse(exc.code, exc.message)
                return error_response(exc.code, exc.message, 403), None
            # aiohttp's own WebSocketResponse: a fleet's idle control channels are most of a server's
            # connections, and it holds one in less memory than websocket_connection (DESIGN.md, "Fleets").
            ws = make_websocket(self.settings)
            try:
                await ws.prepare(request)
            except ConnectionResetError:
                # The agent went away during its upgrade (a fleet reconnecting at once, an agent
                # throttled and backing off): nothing to serve. aiohttp finds the response unsent and
                # the connection lost, and drops it quietly (no 500, no traceback in the log).
                log.debug("control channel of %s: the agent left during the upgrade", instance_id)
                return ws, None
            peer = Peer(ws, f"control {instance_id}")
            control: ControlChannel | None = None
            try:
                control = await self._opened_control(instance_id, identity, peer, refuse, batch)
            finally:
                if control is None:
                    peer.set_gone()
        return ws, control

    async def _opened_control(
        self,
        instance_id: str,
        identity: security.Identity,
        peer: Peer,
        refuse: Refusal,
        batch: security.AuditBatch,
    ) -> ControlChannel | None:
        """The agent's open frame read and its token used up: the channel, or None (refused)."""
        ws = peer.ws
        opened = await read_open_frame(ws, self.settings.open_frame_timeout, refuse)
        if opened is None:
            return None
        if not isinstance(opened, messages.ControlOpen):
            refuse("InvalidOpenFrame", "not a control channel open frame")
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"not a control channel open frame")
            return None
        now = self.services.clock.now()
        try:
            token = await self._open_control(
                opened.token_value, instance_id, identity.principal.arn, batch, now=now
            )
        except DatabaseBusy:  # a wave of agents: this one reconnects later, as when throttled
            await try_again_later(peer, refuse)
            return None
        if token is None or token.principal_arn != identity.principal.arn:
            refuse("InvalidToken", BAD_TOKEN)
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=BAD_TOKEN.encode())
            return None
        log.info("control channel open: %s (agent %s)", instance_id, opened.agent_version)
        return ControlChannel(instance_id, peer, opened, connected_at=now)

    async def data(self, request: web.Request) -> web.StreamResponse:
        session_id = request.match_info["session_id"]
        config = self.services.config
        identity: security.Identity | None = None
        who: list[str] = []  # the principal, once known (the agent's signature or the client's token)
        refuse = _refusal(
            "data-channel",
            OPEN_DATA,
            session_arn(config.region, config.account_id, session_id),
            lambda: who[-1] if who else unauthenticated(claimed_key(request)),
        )
        if is_signed(request):
            try:
                with trace.step("data-channel", "agent-authenticate", session_id):
                    identity = await authenticate_agent(self.services, request, b"")
            except security.AuthError as exc:
                refuse(exc.code, exc.message)
                return error_response(exc.code, exc.message, exc.status)
            who.append(identity.principal.arn)
        # Data channels carry the bulk bytes: framed by websocket_connection, not aiohttp (DESIGN.md).
        ws = await websocket_connection.accept(
            request,
            max_message=self.settings.max_message_bytes,
            heartbeat=self.settings.ws_heartbeat,
            close_timeout=CLOSE_TIMEOUT,
        )
        if not isinstance(ws, websocket_connection.WebSocketConnection):
            return ws  # not a valid upgrade: aiohttp's error response

        async def serve(peer: Peer) -> None:
            opened = await read_open_frame(peer.ws, self.settings.open_frame_timeout, refuse)
            if isinstance(opened, messages.AgentDataOpen):
                await self._serve_agent(request, session_id, identity, opened, peer, refuse)
            elif isinstance(opened, messages.ClientOpen):
                await self._serve_client(session_id, opened, peer, refuse, who, request.query)
            elif opened is not None:
                refuse("InvalidOpenFrame", "not a data channel open frame")
                await peer.ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=b"not a data channel open frame"
                )

        return await _served(ws, f"data {session_id}", serve)

    async def _serve_client(
        self,
        session_id: str,
        opened: messages.ClientOpen,
        peer: Peer,
        refuse: Refusal,
        who: list[str],
        query: Mapping[str, str],
    ) -> None:
        kinds = [TokenKind(kind) for kind in self.node.channel_kinds]
        try:
            with trace.step("data-channel", "client-open", session_id):
                token = await self._consume_token(opened.token_value, kinds, session_id)
        except DatabaseBusy:
            await try_again_later(peer, refuse)
            return
        if token is None:
            await refuse_client(peer, session_id, "InvalidToken", BAD_TOKEN, refuse)
            return
        who.append(token.principal_arn)
        if token.kind != KIND_CLIENT:  # a channel an extension serves (a live-session joiner)
            channel = ExtensionChannel(
                session_id, token.kind, token.principal_arn, dict(query), peer, binary_frames(peer.ws)
            )
            try:
                await self.node.serve_channel(channel)
            except SessionRefused as exc:
                await refuse_client(peer, session_id, "SessionRefused", str(exc), refuse)
            return
        await self._relay(
            peer, session_id, refuse, lambda: self.node.join_client(session_id, peer), client=True
        )

    async def _serve_agent(
        self,
        request: web.Request,
        session_id: str,
        identity: security.Identity | None,
        opened: messages.AgentDataOpen,
        peer: Peer,
        refuse: Refusal,
    ) -> None:
        instance_id = opened.client_instance_id
        if identity is None:
            await refuse_agent(
                peer,
                session_id,
                "MissingAuthenticationTokenException",
                "An agent data channel must be signed",
                refuse,
            )
            return
        own = own_instance(identity.principal)
        if own is not None and own != instance_id:
            await refuse_agent(
                peer,
                session_id,
                "AccessDeniedException",
                f"{identity.principal.arn} is not {instance_id}",
                refuse,
            )
            return
        config = self.services.config
        resource = session_arn(config.region, config.account_id, session_id)
        try:
            with trace.step("data-channel", "agent-open", session_id):
                async with security.audited(self.services) as batch:
                    await authorize_agent(
                        self.services, request, identity, OPEN_DATA, instance_id, [resource], batch
                    )
                    # The token is used up in the transaction that audits the decision to let it in.
                    async with batch.transaction(self.services) as conn:
                        token = await self._consume_token(opened.token_value, KIND_DATA, session_id, conn)
        except security.AccessDenied as exc:
            await refuse_agent(peer, session_id, exc.code, exc.message, refuse)
            return
        except DatabaseBusy:
            await try_again_later(peer, refuse)
            return
        if token is None or token.principal_arn != identity.principal.arn:
            await refuse_agent(peer, session_id, "InvalidToken", BAD_TOKEN, refuse)
            return
        await self._relay(
            peer,
            session_id,
            refuse,
            lambda: self.node.join_agent(session_id, instance_id, peer),
            client=False,
        )

    async def _relay(
        self,
        peer: Peer,
        session_id: str,
        refuse: Refusal,
        join: Callable[[], Awaitable[SessionRelay]],
        *,
        client: bool,
    ) -> None:
        """Pair ``peer`` (one end, whose open frame was accepted) with its session and pass on its
        frames until it goes."""
        side = "client" if client else "agent"
        try:
            with trace.step("data-channel", f"{side}-join", session_id):
                relay = await join()
            forward = relay.from_client if client else relay.from_agent
            async for data in binary_frames(peer.ws):
                await forward(data)
        except NodeStopping as exc:
            refuse("SessionRefused", str(exc))  # no channel_closed: the end re-dials
        except SessionRefused as exc:
            await (refuse_client if client else refuse_agent)(
                peer, session_id, "SessionRefused", str(exc), refuse
            )
        finally:
            await self._left(session_id, peer, client=client)

    async def _consume_token(
        self, token_value: str, kind: TokenKind | list[TokenKind], channel_id: str, db: Db | None = None
    ) -> ChannelTokenRow | None:
        """The single-use token's row, if it is valid for this channel (it is used up either way);
        in ``db``'s transaction when given, else group-committed (a fleet opens its channels at once)."""
        now = self.services.clock.now()
        if db is not None:
            return await channel_tokens.consume(db, token_value, kind=kind, channel_id=channel_id, now=now)
        return await queued_write(
            self.services.engine,
            lambda conn: channel_tokens.consume(conn, token_value, kind=kind, channel_id=channel_id, now=now),
        )

    async def _open_control(
        self,
        token_value: str,
        instance_id: str,
        principal_arn: str,
        batch: security.AuditBatch,
        *,
        now: dt.datetime,
    ) -> ChannelTokenRow | None:
        """The control channel's single-use token used up (its row, if it was valid for this
        instance), and, if it was the agent's own, the instance's control channel set to this node
        as opened ``now``: one group-committed transaction with the held decisions (a fleet opens
        its channels at once)."""
        node_id = self.node.node_id

        async def open_channel(conn: AsyncConnection) -> ChannelTokenRow | None:
            token = await channel_tokens.consume(
                conn, token_value, kind=KIND_CONTROL, channel_id=instance_id, now=now
            )
            if token is not None and token.principal_arn == principal_arn:
                await instances.set_control_node(conn, instance_id, node_id, now=now)
            return token

        return await batch.queued_write(self.services, open_channel)

    async def _left(self, session_id: str, peer: Peer, *, client: bool) -> None:
        """A socket ended, possibly with its handler cancelled half-way through joining: whatever
        relay holds the peer now lets go of it (a relay that does not hold it ignores the call)."""
        relay = self.node.relays.get(session_id)
        if relay is None:
            return
        gone = relay.client_gone(peer) if client else relay.agent_gone(peer)
        await self.node.run_detached(gone, f"{'client' if client else 'agent'}-gone-{session_id}")

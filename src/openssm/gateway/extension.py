"""How features plug into a gateway node: one typed interface, registered by the server's composition.

A feature that needs more than the relay itself (Run Command's jobs, the session recorder; next,
live-session join and metrics) subclasses :class:`NodeExtension`, overrides the hooks it uses and
declares which messages it takes. The composition (``openssm.server.composition``) hands the node
its extensions when it builds it; nothing registers itself at run time, so what runs on a node is
what the composition's imports say.

What an extension may receive:
- ``bus_messages``: bus message types on ``node.<node_id>`` (``openssm.bus.node_channel``) it
  handles, e.g. ``agent_job``. One extension per type; ``terminate`` is the node's own.
- ``control_messages``: agent control-channel message types it handles, e.g. ``agent_job_reply``.
  One extension per type; ``agent_task_complete`` is the node's own, and a type nobody claims is
  ignored (``agent_telemetry`` today).
- :meth:`NodeExtension.on_control_opened` / :meth:`NodeExtension.on_control_closed`: an agent's
  control channel opened on this node / the channel this node held for it closed (a channel
  replaced by the agent's newer one is not "closed": the instance stays connected). Both run as
  node tasks, in the order the events happened.
- :meth:`NodeExtension.on_session_opened` / :meth:`NodeExtension.on_session_closed`: a session
  started / stopped being relayed by this node, with its live :class:`SessionCounters`. Called
  synchronously where it happens (not on the relay's per-message path): cheap bookkeeping only.
- :meth:`NodeExtension.session_tap`: a per-session observer of the relayed stream data, or None
  (``openssm.gateway.tap``: in order, once each, off the relay's path).
- ``channel_kinds`` + :meth:`NodeExtension.serve_channel`: a data channel opened on a session's
  StreamUrl with a token of a claimed kind (``openssm.store.channel_tokens.TokenKind``, e.g. a
  live-session joiner's) is handed over whole (:class:`ExtensionChannel`) once its token is used
  up; the extension serves it until it ends. One extension per kind; ``client`` is the node's own.
- :meth:`ExtensionHost.live_session`: a session this node relays, as a :class:`LiveSession` that
  can take messages of the gateway's own (``openssm.gateway.injection``).
- :meth:`NodeExtension.start` / :meth:`NodeExtension.stop`: with the node (``start`` gets the
  :class:`ExtensionHost` to act through); ``stop`` runs after the node's sessions have ended.

A failing hook is logged and does not affect the node or the other extensions.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from openssm.bus.node_channel import TERMINATE
from openssm.errors import OpenSSMError
from openssm.gateway.peer import Peer
from openssm.gateway.tap import SessionTap
from openssm.protocol.frames import Frame, MessageType
from openssm.store.channel_tokens import TokenKind

# Control-channel messages the node handles itself.
NODE_CONTROL_MESSAGES: frozenset[str] = frozenset({MessageType.AGENT_TASK_COMPLETE})
# Bus messages the node handles itself.
NODE_BUS_MESSAGES: frozenset[str] = frozenset({TERMINATE})
# Data-channel token kinds the node serves itself (the session's own client).
NODE_CHANNEL_KINDS: frozenset[str] = frozenset({TokenKind.CLIENT})


class ExtensionConflict(OpenSSMError):
    """Two extensions (or an extension and the node) claim the same message type."""


class LiveSession(Protocol):
    """A session this node relays, as an extension may act on it (``openssm.gateway.session``)."""

    @property
    def session_id(self) -> str: ...

    @property
    def row(self) -> Mapping[str, Any]: ...

    @property
    def takes_joins(self) -> bool:
        """False when the gateway cannot put messages of its own into this session at all."""
        ...

    def can_inject(self) -> bool:
        """True when the session takes the gateway's own messages now (a shell that has started)."""
        ...

    async def inject_output(self, payload: bytes) -> bool:
        """Show ``payload`` on the owner's terminal and to the taps; False if it cannot now."""
        ...

    async def inject_input(self, payload: bytes) -> bool:
        """Type ``payload`` into the session, in order with the owner's input; False if it cannot."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class ExtensionChannel:
    """A data channel handed to the extension that claims its token's kind."""

    session_id: str
    kind: str  # the token's kind
    principal_arn: str  # whom the token was issued to
    options: Mapping[str, str]  # the StreamUrl's query parameters
    peer: Peer
    frames: AsyncIterator[bytes]  # its binary messages, until the socket ends


class ExtensionHost(Protocol):
    """What an extension may use of its node."""

    @property
    def node_id(self) -> str: ...

    def live_session(self, session_id: str) -> LiveSession | None:
        """The session if this node relays it now."""
        ...

    async def send_control(self, instance_id: str, data: bytes) -> bool:
        """Send a binary frame on ``instance_id``'s control channel, if this node holds it."""
        ...

    def background(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``coroutine`` as one of the node's tasks (cancelled when the node stops)."""
        ...


class SessionCounters(Protocol):
    """A session this node relays, as an extension may see it: its ``sessions`` row and the stream
    payload bytes relayed so far (counted by the relay itself; read them, never write them)."""

    @property
    def session_id(self) -> str: ...

    @property
    def row(self) -> Mapping[str, Any]: ...

    @property
    def bytes_in(self) -> int:
        """Client to agent."""
        ...

    @property
    def bytes_out(self) -> int:
        """Agent to client."""
        ...


class NodeExtension:
    """Base class of a gateway node extension: every hook does nothing until overridden."""

    bus_messages: frozenset[str] = frozenset()
    control_messages: frozenset[str] = frozenset()  # MessageType values
    channel_kinds: frozenset[str] = frozenset()  # TokenKind values

    async def start(self, node: ExtensionHost) -> None:
        """The node has started (its registry is clean, its bus listener not yet running)."""

    async def stop(self) -> None:
        """The node has ended its sessions and control channels and cancelled its tasks."""

    async def on_bus_message(self, message: Mapping[str, Any]) -> None:
        """A bus message whose ``type`` is in :attr:`bus_messages`."""

    async def on_control_opened(self, instance_id: str) -> None:
        """``instance_id``'s agent opened its control channel on this node (run as a node task)."""

    async def on_control_closed(self, instance_id: str) -> None:
        """The control channel this node held for ``instance_id`` closed (run as a node task)."""

    def on_session_opened(self, session: SessionCounters) -> None:
        """This node started relaying ``session`` (synchronous: keep it cheap)."""

    def on_session_closed(self, session: SessionCounters) -> None:
        """This node stopped relaying ``session``; its counters are final (synchronous)."""

    async def on_control_message(self, instance_id: str, frame: Frame) -> None:
        """A control-channel frame from ``instance_id`` whose type is in :attr:`control_messages`."""

    async def serve_channel(self, channel: ExtensionChannel) -> None:
        """Serve a data channel whose token kind is in :attr:`channel_kinds`, until it ends."""

    def session_tap(self, session: Mapping[str, Any]) -> SessionTap | None:
        """An observer for this session (its ``sessions`` row), or None."""
        return None


K = TypeVar("K", bound=Hashable)


def routes(
    extensions: Iterable[NodeExtension],
    claims: Callable[[NodeExtension], frozenset[K]],
    reserved: frozenset[K],
) -> dict[K, NodeExtension]:
    """Message type → the one extension that takes it; a type claimed twice (or reserved for the
    node) is a wiring error, found when the node is built."""
    table: dict[K, NodeExtension] = {}
    for extension in extensions:
        for kind in claims(extension):
            if kind in reserved:
                raise ExtensionConflict(f"{type(extension).__name__} claims {kind!r}, which the node handles")
            if kind in table:
                raise ExtensionConflict(
                    f"{type(extension).__name__} and {type(table[kind]).__name__} both claim {kind!r}"
                )
            table[kind] = extension
    return table

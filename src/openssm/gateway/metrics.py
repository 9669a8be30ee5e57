"""The gateway's Prometheus figures, as a node extension (``openssm.gateway.extension``).

It keeps the set of instances whose control channel this node holds and the sessions it relays,
and answers :class:`openssm.ops.metrics.GatewayFigures` when the metrics are scraped. Relayed
bytes are the relay's own per-session counters (``SessionRelay.bytes_in``/``bytes_out``, kept
for the sessions table anyway), summed at scrape time over the live sessions plus the totals of
the ended ones: the relay does no extra work per message for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from openssm.gateway.extension import ExtensionHost, NodeExtension, SessionCounters
from openssm.ops.metrics import Metrics
from openssm.protocol.messages import SessionType

# sessions.session_type → the metric's ``type`` label
SESSION_KINDS: Final[Mapping[str, str]] = {
    SessionType.STANDARD_STREAM: "shell",
    SessionType.PORT: "port",
    SessionType.INTERACTIVE_COMMANDS: "command",
    SessionType.NON_INTERACTIVE_COMMANDS: "command",
}


def session_kind(session_type: object) -> str:
    return SESSION_KINDS.get(str(session_type), "command")


class GatewayMetrics(NodeExtension):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._agents: set[str] = set()
        self._live: dict[str, SessionCounters] = {}
        self._ended_in = 0
        self._ended_out = 0

    async def start(self, node: ExtensionHost) -> None:
        self.metrics.add_gateway(self)

    async def stop(self) -> None:
        self.metrics.remove_gateway(self)

    async def on_control_opened(self, instance_id: str) -> None:
        self._agents.add(instance_id)

    async def on_control_closed(self, instance_id: str) -> None:
        self._agents.discard(instance_id)

    def on_session_opened(self, session: SessionCounters) -> None:
        self._live[session.session_id] = session

    def on_session_closed(self, session: SessionCounters) -> None:
        if self._live.get(session.session_id) is session:
            del self._live[session.session_id]
            self._ended_in += session.bytes_in
            self._ended_out += session.bytes_out

    # -- GatewayFigures -----------------------------------------------------------------------------

    def agents_connected(self) -> int:
        return len(self._agents)

    def sessions_active(self) -> Mapping[str, int]:
        counts: dict[str, int] = {}
        for session in self._live.values():
            kind = session_kind(session.row.get("session_type"))
            counts[kind] = counts.get(kind, 0) + 1
        return counts

    def relayed_bytes(self) -> Mapping[str, int]:
        live = list(self._live.values())
        return {
            "client_to_agent": self._ended_in + sum(session.bytes_in for session in live),
            "agent_to_client": self._ended_out + sum(session.bytes_out for session in live),
        }

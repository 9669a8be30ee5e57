"""Record of a port or SSH session, without I/O: connections, destination, byte counts and timings.

The relayed Output payloads of a port session are either one raw byte stream (basic mode: one TCP
connection at a time, ended by the client's DisconnectToPort flag; SSH's stdio mode) or a
continuous smux v1 byte stream carrying many connections (mux mode, §3.4). The mode shows in the
client's first Output: a mux client opens with an smux SYN frame. Events are plain dicts for the
caller to write as JSON lines; a human-readable line for each comes from :func:`describe`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from openssm.protocol.documents import resolve
from openssm.protocol.frames import PayloadFlag, PayloadType, parse_flag
from openssm.protocol.smux import HEADER, Command, SmuxError
from openssm.protocol.smux_scan import SmuxScanner

MAX_TRACKED_CONNECTIONS: Final = 10_000

Event = dict[str, Any]


def destination_of(session: Mapping[str, Any]) -> str:
    """``host:port`` the agent dials, from the session's document and parameters."""
    document = session.get("document_content") or {}
    parameters = session.get("parameters") or {}
    scalars = {
        name: ",".join(value) if isinstance(value, list) else str(value) for name, value in parameters.items()
    }
    try:
        properties = resolve(document, scalars).get("properties") or {}
    except (TypeError, ValueError, AttributeError):
        properties = {}
    host = properties.get("host") if isinstance(properties, dict) else None
    port = properties.get("portNumber") if isinstance(properties, dict) else None
    return f"{host or 'localhost'}:{port or '?'}"


def is_local_port_forwarding(session: Mapping[str, Any]) -> bool:
    properties = (session.get("document_content") or {}).get("properties") or {}
    return isinstance(properties, dict) and properties.get("type") == "LocalPortForwarding"


def _flag_value(payload: bytes | memoryview) -> int | None:
    return parse_flag(payload) if len(payload) == 4 else None


def _looks_like_smux_syn(payload: bytes | memoryview) -> bool:
    if len(payload) < HEADER.size:
        return False
    version, command, length, stream_id = HEADER.unpack_from(payload, 0)
    return version in (1, 2) and command == Command.SYN and length == 0 and stream_id % 2 == 1


@dataclasses.dataclass(slots=True)
class Connection:
    number: int  # smux stream id, or 1, 2, 3 … in basic mode
    opened_at: float
    to_destination: int = 0
    from_destination: int = 0
    client_closed: bool = False
    agent_closed: bool = False

    def closed_event(self, t: float, how: str) -> Event:
        return {
            "t": round(t, 6),
            "event": "connection_closed",
            "connection": self.number,
            "how": how,
            "bytes_to_destination": self.to_destination,
            "bytes_from_destination": self.from_destination,
            "duration": round(max(t - self.opened_at, 0.0), 6),
        }


class PortRecorder:
    def __init__(self, destination: str, *, mux_possible: bool) -> None:
        self.destination = destination
        self.mux_possible = mux_possible
        self.mode: str | None = None  # "mux" | "basic", decided by the first data
        self.open: dict[int, Connection] = {}
        self.connections = 0
        self.failed = 0
        self.bytes_to_destination = 0
        self.bytes_from_destination = 0
        # Headers only: the record needs commands, stream ids and lengths, never the data.
        self._client_parser: SmuxScanner | None = None
        self._agent_parser: SmuxScanner | None = None
        self._basic_number = 0

    # -- directions ------------------------------------------------------------------------------

    def input(self, payload_type: int, payload: bytes | memoryview, t: float) -> list[Event]:
        """A stream message from the client (towards the destination)."""
        if payload_type == PayloadType.FLAG:
            return self._client_flag(_flag_value(payload), t)
        if payload_type != PayloadType.OUTPUT or not payload:
            return []
        self.bytes_to_destination += len(payload)
        return self._data(payload, t, from_client=True)

    def output(self, payload_type: int, payload: bytes | memoryview, t: float) -> list[Event]:
        """A stream message from the agent (from the destination)."""
        if payload_type == PayloadType.FLAG:
            if _flag_value(payload) == PayloadFlag.CONNECT_TO_PORT_ERROR:
                self.failed += 1
                return [{"t": round(t, 6), "event": "connect_failed", "destination": self.destination}]
            return []
        if payload_type != PayloadType.OUTPUT or not payload:
            return []
        self.bytes_from_destination += len(payload)
        return self._data(payload, t, from_client=False)

    def _data(self, payload: bytes | memoryview, t: float, *, from_client: bool) -> list[Event]:
        """Output bytes one way: the mode is the client's first message's (a mux client opens with
        an smux SYN), then they go to the smux scanner or count for the one basic connection."""
        if self.mode is None:
            self._choose_mode(client_first=payload if from_client else None)
        if self.mode == "mux":
            return self._mux(payload, t, from_client=from_client)
        if from_client:
            return self._basic(t, to_destination=len(payload))
        return self._basic(t, from_destination=len(payload))

    def finish(self, t: float) -> list[Event]:
        events = [conn.closed_event(t, "session_ended") for conn in self.open.values()]
        self.open.clear()
        events.append(
            {
                "t": round(t, 6),
                "event": "summary",
                "mode": self.mode or "none",
                "destination": self.destination,
                "connections": self.connections,
                "failed_connections": self.failed,
                "bytes_to_destination": self.bytes_to_destination,
                "bytes_from_destination": self.bytes_from_destination,
            }
        )
        return events

    # -- modes -----------------------------------------------------------------------------------

    def _choose_mode(self, client_first: bytes | memoryview | None) -> None:
        if self.mux_possible and client_first is not None and _looks_like_smux_syn(client_first):
            self.mode = "mux"
            version = client_first[0]
            self._client_parser = SmuxScanner(version)
            self._agent_parser = SmuxScanner(version)
        else:
            self.mode = "basic"

    def _opened(self, number: int, t: float) -> Event:
        self.connections += 1
        if len(self.open) < MAX_TRACKED_CONNECTIONS:
            self.open[number] = Connection(number, t)
        return {
            "t": round(t, 6),
            "event": "connection_opened",
            "connection": number,
            "destination": self.destination,
        }

    def _basic(self, t: float, *, to_destination: int = 0, from_destination: int = 0) -> list[Event]:
        events: list[Event] = []
        if not self.open:
            self._basic_number += 1
            events.append(self._opened(self._basic_number, t))
        for conn in self.open.values():
            conn.to_destination += to_destination
            conn.from_destination += from_destination
        return events

    def _client_flag(self, flag: int | None, t: float) -> list[Event]:
        if flag == PayloadFlag.DISCONNECT_TO_PORT and self.mode == "basic":
            events = [conn.closed_event(t, "client_disconnected") for conn in self.open.values()]
            self.open.clear()
            return events
        if flag == PayloadFlag.TERMINATE_SESSION:
            return [{"t": round(t, 6), "event": "client_terminated_session"}]
        return []

    def _mux(self, payload: bytes | memoryview, t: float, *, from_client: bool) -> list[Event]:
        parser = self._client_parser if from_client else self._agent_parser
        assert parser is not None
        try:
            frames = parser.feed(payload)
        except SmuxError as exc:
            # No resynchronisation point in a broken smux stream: count bytes from here on.
            self.mode = "basic"
            return [{"t": round(t, 6), "event": "unreadable_mux_stream", "error": str(exc)}]
        events: list[Event] = []
        for frame in frames:
            conn = self.open.get(frame.stream_id)
            if frame.command == Command.SYN and from_client:
                events.append(self._opened(frame.stream_id, t))
            elif frame.command == Command.PSH and conn is not None:
                if from_client:
                    conn.to_destination += frame.length
                else:
                    conn.from_destination += frame.length
            elif frame.command == Command.FIN and conn is not None:
                if from_client:
                    conn.client_closed = True
                else:
                    conn.agent_closed = True
                if conn.client_closed and conn.agent_closed:
                    events.append(conn.closed_event(t, "closed"))
                    del self.open[frame.stream_id]
        return events


def describe(event: Mapping[str, Any]) -> str:
    """One line of the human-readable port session log."""
    kind = event.get("event")
    t = f"[{float(event.get('t', 0.0)):10.3f}s]"
    if kind == "connection_opened":
        return f"{t} connection {event['connection']} opened to {event['destination']}"
    if kind == "connection_closed":
        return (
            f"{t} connection {event['connection']} {event['how'].replace('_', ' ')} after "
            f"{event['duration']:.3f}s: {event['bytes_to_destination']} bytes to destination, "
            f"{event['bytes_from_destination']} bytes back"
        )
    if kind == "connect_failed":
        return f"{t} connection to {event['destination']} failed on the node"
    if kind == "summary":
        return (
            f"{t} session summary ({event['mode']} mode): {event['connections']} connections to "
            f"{event['destination']}, {event['failed_connections']} failed, "
            f"{event['bytes_to_destination']} bytes to destination, {event['bytes_from_destination']} bytes back"
        )
    return f"{t} {kind}"

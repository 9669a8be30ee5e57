"""Messages of the gateway's own inside a relayed shell session: a joiner's keystrokes toward the
agent, ``[openssm] … joined`` lines toward the owner's client.

Each direction of a joinable session runs through a :class:`SplicedStream`, which renumbers it with
``openssm.protocol.splice`` once the gateway has put a message in, keeps the gateway's own messages
until the receiver acknowledges them (and resends them, as every sender must: §2.3), and maps the
receiver's acks back to the sender's numbers. Until the first injection everything passes through
unchanged. No I/O here: the relay sends what these return.

:meth:`Injector.state` is what the relay keeps in the store (``openssm.store.session_joins``) so
that the session goes on, renumbered the same way, after its gateway restarts
(:meth:`Injector.restored`): both splices and the gateway's own messages not yet acknowledged. The
relay writes it before anything it describes goes out (an injection, a sender's message past the
stored frontier, a receiver's ack that is news), so a stored state never lags what a receiver holds
or what a sender was told.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Mapping
from typing import Any, Final

from openssm.protocol import frames
from openssm.protocol.frames import FLAG_DATA, FRAME_OVERHEAD, Frame, MessageType
from openssm.protocol.splice import Splice, SpliceState

_SEQUENCE = struct.Struct(">q")
# The acked number in an acknowledge payload (Go's compact JSON; whitespace allowed): read without
# parsing the JSON, since the relay does it for every ack of a shell session.
_ACKED_NUMBER = re.compile(rb'"AcknowledgedMessageSequenceNumber"\s*:\s*(\d{1,18})\b')
_SEQUENCE_AT: Final = 48
_HEADER_LENGTH = struct.Struct(">I")  # also the payload length's format
_DIGEST_AT: Final = 80
_PAYLOAD_LENGTH_AT: Final = 116


def _renumbered(data: bytes, sequence: int) -> bytes:
    """The frame with another SequenceNumber (the payload digest does not cover the header)."""
    out = bytearray(data)
    _SEQUENCE.pack_into(out, _SEQUENCE_AT, sequence)
    return bytes(out)


class SplicedStream:
    """One direction (``message_type``: input toward the agent, output toward the client)."""

    def __init__(self, message_type: MessageType, splice: Splice | None = None) -> None:
        self.message_type = message_type
        self.splice = splice or Splice()
        self._own: dict[int, bytes] = {}  # the gateway's messages not yet acknowledged, by number
        self.changed = False  # the state moved on since the caller last cleared this

    def state(self) -> dict[str, Any]:
        """This direction's state as JSON-ready data (see the module docstring)."""
        state = self.splice.state()
        return {
            "frontier": state.frontier,
            "base": state.base,
            "injected": list(state.injected),
            "forgotten_upstream": state.forgotten_upstream,
            "forgotten_downstream": state.forgotten_downstream,
            "acked_floor": state.acked_floor,
            "acked_ahead": list(state.acked_ahead),
            "own": {str(number): base64.b64encode(data).decode() for number, data in self._own.items()},
        }

    @classmethod
    def restored(cls, message_type: MessageType, state: Mapping[str, Any]) -> SplicedStream:
        """The direction going on from :meth:`state`'s data (ValueError, KeyError if it is not)."""
        splice = Splice.restored(
            SpliceState(
                int(state["frontier"]),
                int(state["base"]),
                tuple(int(number) for number in state["injected"]),
                int(state["forgotten_upstream"]),
                int(state["forgotten_downstream"]),
                int(state["acked_floor"]),
                tuple(int(number) for number in state.get("acked_ahead", ())),
            )
        )
        stream = cls(message_type, splice)
        stream._own = {int(number): base64.b64decode(data) for number, data in state["own"].items()}
        return stream

    @property
    def unacknowledged(self) -> list[bytes]:
        return list(self._own.values())

    def from_sender(self, data: bytes) -> tuple[bytes | None, bytes | None]:
        """A stream frame from the sender: (the frame to pass on, an ack to answer the sender with)."""
        sequence = int(_SEQUENCE.unpack_from(data, _SEQUENCE_AT)[0])
        forward = self.splice.forward(sequence)
        self.changed |= forward.moved and self.splice.active
        if forward.acked:  # the receiver has it (acknowledged long ago): answer for it
            return None, frames.ack_for(frames.decode(data)).encode()
        if forward.sequence == sequence:
            return data, None
        return _renumbered(data, forward.sequence), None

    def from_receiver(self, data: bytes) -> bytes | None:
        """The receiver's acknowledge frame, for the sender (renumbered), or None: it was ours."""
        found = _ACKED_NUMBER.search(data, FRAME_OVERHEAD)
        if found is None or _ACKED_NUMBER.search(data, found.end()) is not None:
            return data  # not an ack we can read (or an odd one): the sender's own parser decides
        downstream = int(found.group(1))
        ack = self.splice.acknowledged(downstream)
        self.changed |= ack.moved and self.splice.active
        if ack.upstream is None:
            self.changed |= self._own.pop(downstream, None) is not None
            return None
        if ack.upstream == downstream:
            return data
        if _HEADER_LENGTH.unpack_from(data)[0] + 4 != FRAME_OVERHEAD:
            return data  # an unusual header: leave it to the sender (it resends; rare and harmless)
        start, end = found.span(1)
        payload = data[FRAME_OVERHEAD:start] + str(ack.upstream).encode() + data[end:]
        header = bytearray(data[:FRAME_OVERHEAD])  # the same ack, with its digest and length redone
        header[_DIGEST_AT : _DIGEST_AT + 32] = hashlib.sha256(payload).digest()
        _HEADER_LENGTH.pack_into(header, _PAYLOAD_LENGTH_AT, len(payload))
        return bytes(header) + payload

    def inject(self, payload_type: int, payload: bytes) -> bytes:
        """A message of the gateway's, numbered after everything the sender sent so far (raises
        ``SpliceFull`` when the receiver has stopped acknowledging)."""
        sequence = self.splice.inject()
        data = Frame(self.message_type, sequence, FLAG_DATA, payload_type, payload).encode()
        self._own[sequence] = data
        self.changed = True
        return data


class Injector:
    """Both directions of one joinable session."""

    def __init__(self, to_agent: SplicedStream | None = None, to_client: SplicedStream | None = None) -> None:
        self.to_agent = to_agent or SplicedStream(MessageType.INPUT_STREAM_DATA)
        self.to_client = to_client or SplicedStream(MessageType.OUTPUT_STREAM_DATA)

    @property
    def active(self) -> bool:
        """The gateway put a message of its own in: the numbering is no longer the ends' alone."""
        return self.to_agent.splice.active or self.to_client.splice.active

    def take_changed(self) -> bool:
        """Whether the state moved on since the last call (and a stored copy is stale)."""
        changed = self.to_agent.changed or self.to_client.changed
        self.to_agent.changed = self.to_client.changed = False
        return changed

    def state(self) -> dict[str, Any]:
        return {"to_agent": self.to_agent.state(), "to_client": self.to_client.state()}

    @classmethod
    def restored(cls, state: Mapping[str, Any]) -> Injector:
        """Both directions from :meth:`state`'s data (ValueError, KeyError, TypeError if not)."""
        return cls(
            SplicedStream.restored(MessageType.INPUT_STREAM_DATA, state["to_agent"]),
            SplicedStream.restored(MessageType.OUTPUT_STREAM_DATA, state["to_client"]),
        )

"""What the API tells a gateway node over the bus: one channel per node, ``node.<node_id>``.

The API publishes, the node holding the session or control channel acts (``openssm.gateway.node``
for ``terminate``; Run Command's node extension, ``openssm.gateway.jobs``, for the job messages).
Every message is a small JSON object with a ``type``; the store stays the record, so a message
lost with a node costs nothing that the next node or reconnect does not redo.
"""

from __future__ import annotations

from typing import Final

from openssm.bus.base import Message

TERMINATE: Final = "terminate"  # end a session: session_id, reason
AGENT_JOB: Final = "agent_job"  # send a Run Command invocation to its agent: command_id, instance_id
CANCEL_COMMAND: Final = "cancel_command"  # cancel it on the agent: command_id, instance_id
RUN_COMMAND: Final = "run_command"  # take the next step of a command's rollout: command_id, cancel
JOINS_REFUSED: Final = "joins_refused"  # the owner refuses joins: end the joiners of session_id


def node_channel(node_id: str) -> str:
    return f"node.{node_id}"


def terminate(session_id: str, reason: str) -> Message:
    return {"type": TERMINATE, "session_id": session_id, "reason": reason}


def joins_refused(session_id: str) -> Message:
    return {"type": JOINS_REFUSED, "session_id": session_id}


def run_command(command_id: str, *, cancel: bool = False) -> Message:
    """Any node may take a command's next rollout step; ``cancel``: also send its cancels."""
    return {"type": RUN_COMMAND, "command_id": command_id, "cancel": cancel}


def command(kind: str, command_id: str, instance_id: str) -> Message:
    """``agent_job`` or ``cancel_command`` for one invocation."""
    return {"type": kind, "command_id": command_id, "instance_id": instance_id}

"""A session's ``Status`` in the SSM API's own words (``DescribeSessions``, ``StartSession``'s life).

AWS's values: Connected | Connecting | Disconnected | Terminated | Terminating | Failed. The store
keeps them as they are, the API returns them as they are, and the gateway moves a session between
them. (``protocol.messages.SessionState`` is another vocabulary: the ``agent_session_state`` an agent
reports on its data channel.)

    Connecting ──client and agent paired──▶ Connected ◀──resumed──▶ Disconnected
        │                                      │                        │
        └──────────────TerminateSession────────┴──▶ Terminating ──▶ Terminated
                        (or any end: timeout, agent gone, node gone)    Failed
"""

from __future__ import annotations

import enum
from typing import Final


class SessionStatus(enum.StrEnum):
    CONNECTED = "Connected"
    CONNECTING = "Connecting"
    DISCONNECTED = "Disconnected"
    TERMINATED = "Terminated"
    TERMINATING = "Terminating"
    FAILED = "Failed"


# What TerminateSession may still move to Terminating (and ResumeSession may still resume).
TERMINABLE_STATUSES: Final = (SessionStatus.CONNECTING, SessionStatus.CONNECTED, SessionStatus.DISCONNECTED)
# Active sessions (DescribeSessions State=Active).
ACTIVE_STATUSES: Final = (*TERMINABLE_STATUSES, SessionStatus.TERMINATING)
# After these a session never changes again (DescribeSessions State=History).
FINAL_STATUSES: Final = (SessionStatus.TERMINATED, SessionStatus.FAILED)

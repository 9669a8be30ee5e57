"""Gateway tuning knobs. Defaults suit production; tests give the gateway a modified copy
(``openssm.gateway.app.install(settings=...)``)."""

from __future__ import annotations

import dataclasses
from typing import Final

from openssm.protocol.frames import MAX_FRAME_SIZE

DEFAULT_IDLE_MINUTES: Final = 20  # the SSM-SessionManagerRunShell default


@dataclasses.dataclass(frozen=True, slots=True)
class GatewaySettings:
    resume_window: float = 120.0  # how long a session waits for its client to come back
    # An agent data socket that drops without Terminating may be reconnecting (5 tries, ≤ ~10 s).
    agent_reconnect_grace: float = 15.0
    # After Terminating + close, agent_task_complete normally follows within milliseconds.
    agent_end_grace: float = 2.0
    control_wait: float = 5.0  # a client may arrive while the agent re-dials its control channel
    open_frame_timeout: float = 30.0  # wait for the first text frame after the upgrade
    ws_heartbeat: float = 30.0  # ping interval; no pong within half of it = dead peer
    # Control channels: longer than the agent's own 54 s pings (sent after 54 s without a byte from
    # us), so a live agent's pings keep its channel alive and we ping only an agent gone silent. At
    # 30 s we pinged every idle agent ourselves and its pings never came: 10,000 agents cost 333
    # round trips a second, each a task and two timers here, where their own pings cost 185 with
    # none. A peer that vanished without FIN is found within 60 + 30 s (45 s at 30).
    control_heartbeat: float = 60.0
    max_message_bytes: int = MAX_FRAME_SIZE
    # Per direction, while the other side is away. Room for a whole send window of messages (10,000,
    # protocol.channel) and their acks: what does not fit is dropped oldest first, and an end resends
    # those one per interval, so a backlog of small messages after a restart would crawl.
    pending_frames: int = 20_000
    pending_bytes: int = 16 * 1024 * 1024
    heartbeat_interval: float = 3.0  # gateway_nodes.last_seen_at refresh (well inside NODE_ALIVE_WINDOW)
    watchdog_interval: float = 1.0  # idle/max-duration checks

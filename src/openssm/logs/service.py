"""Session logging on a gateway node: the recorder as a session tap, and the upload shipper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openssm.gateway.extension import ExtensionHost, NodeExtension
from openssm.logs.recorder import SessionRecorder
from openssm.logs.shipper import LogShipper
from openssm.services import Services


class SessionLogging(NodeExtension):
    """A gateway node extension: every session recorded (unless ``record_sessions`` is off), and
    the records shipped to the sinks its preferences name while the node runs."""

    def __init__(self, services: Services, shipper: LogShipper | None = None) -> None:
        self.services = services
        self.shipper = shipper or LogShipper(services)

    async def start(self, node: ExtensionHost) -> None:
        self.shipper.start()

    async def stop(self) -> None:
        await self.shipper.stop()

    def session_tap(self, session: Mapping[str, Any]) -> SessionRecorder | None:
        if not self.services.config.record_sessions:
            return None
        return SessionRecorder(self.services, self.shipper, session)

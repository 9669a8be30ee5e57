"""The ``interactive_shell`` control message: what session to start, with which document."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from openssm.errors import OpenSSMError
from openssm.protocol import documents, messages
from openssm.protocol.frames import Frame


class BadSessionRequest(OpenSSMError, ValueError):
    """An ``interactive_shell`` message the agent cannot act on (the text says why)."""


SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9._@:+=,\-]{1,96}$")


@dataclasses.dataclass(frozen=True)
class SessionRequest:
    task_id: str
    session_id: str
    document_name: str
    session_type: str
    inputs: Mapping[str, Any]  # resolved document ``inputs`` (preferences)
    properties: Any  # resolved document ``properties``
    parameters: Mapping[str, str]
    run_as_user: str
    session_owner: str


def parse_session_request(frame: Frame) -> SessionRequest:
    """Parse an ``interactive_shell`` frame; raises ``BadSessionRequest`` with the reason."""
    try:
        shell = messages.parse_interactive_shell(frame.payload)
    except messages.MessageError as exc:
        raise BadSessionRequest(str(exc)) from exc
    content = shell.content
    if not SESSION_ID_PATTERN.match(content.session_id):
        raise BadSessionRequest(f"invalid SessionId {content.session_id!r}")
    document = content.document_content
    if str(document.get("schemaVersion", "")) != "1.0":
        raise BadSessionRequest(f"unsupported document schemaVersion {document.get('schemaVersion')!r}")
    resolved = documents.resolve(document, content.parameters)
    inputs = resolved.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise BadSessionRequest("document inputs must be an object")
    session_type = resolved.get("sessionType")
    if not isinstance(session_type, str) or not session_type:
        raise BadSessionRequest("document has no sessionType")
    return SessionRequest(
        task_id=shell.task_id or content.session_id,
        session_id=content.session_id,
        document_name=content.document_name,
        session_type=session_type,
        inputs=inputs,
        properties=resolved.get("properties"),
        parameters=content.parameters,
        run_as_user=content.run_as_user,
        session_owner=content.session_owner,
    )


def truthy(value: Any) -> bool:
    """Document booleans may arrive as strings ("true")."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)

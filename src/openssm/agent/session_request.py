"""The ``interactive_shell`` control message: what session to start, with which document."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any

from openssm.errors import OpenSSMError
from openssm.protocol import documents
from openssm.protocol.frames import Frame, FrameError


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


def _get_ci(mapping: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """Keys of the inner content are matched case-insensitively, as the real agent does."""
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for name, value in mapping.items():
        if isinstance(name, str) and name.lower() == lowered:
            return value
    return default


def _scalar_parameters(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise BadSessionRequest("Parameters must be an object")
    params: dict[str, str] = {}
    for name, value in raw.items():
        if isinstance(value, list):  # the API's list form; sessions use one value per name
            value = value[0] if len(value) == 1 else ",".join(str(item) for item in value)
        if isinstance(value, bool):
            value = "true" if value else "false"
        params[str(name)] = value if isinstance(value, str) else json.dumps(value)
    return params


def parse_session_request(frame: Frame) -> SessionRequest:
    """Parse an ``interactive_shell`` frame; raises ``BadSessionRequest`` with the reason."""
    try:
        outer = frame.json()
    except FrameError as exc:
        raise BadSessionRequest(str(exc)) from exc
    if not isinstance(outer, dict):
        raise BadSessionRequest("interactive_shell payload is not an object")
    task_id = outer.get("TaskId")
    content = outer.get("Content")
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise BadSessionRequest(f"Content is not JSON: {exc}") from exc
    if not isinstance(content, dict):
        raise BadSessionRequest("Content is not a JSON object")
    session_id = _get_ci(content, "SessionId") or task_id
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.match(session_id):
        raise BadSessionRequest(f"invalid SessionId {session_id!r}")
    document = _get_ci(content, "DocumentContent")
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise BadSessionRequest(f"DocumentContent is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise BadSessionRequest("DocumentContent is missing")
    if str(document.get("schemaVersion", "")) != "1.0":
        raise BadSessionRequest(f"unsupported document schemaVersion {document.get('schemaVersion')!r}")
    parameters = _scalar_parameters(_get_ci(content, "Parameters"))
    resolved = documents.resolve(document, parameters)
    inputs = resolved.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise BadSessionRequest("document inputs must be an object")
    session_type = resolved.get("sessionType")
    if not isinstance(session_type, str) or not session_type:
        raise BadSessionRequest("document has no sessionType")
    return SessionRequest(
        task_id=task_id if isinstance(task_id, str) and task_id else session_id,
        session_id=session_id,
        document_name=str(_get_ci(content, "DocumentName") or ""),
        session_type=session_type,
        inputs=inputs,
        properties=resolved.get("properties"),
        parameters=parameters,
        run_as_user=str(_get_ci(content, "RunAsUser") or ""),
        session_owner=str(_get_ci(content, "SessionOwner") or ""),
    )


def truthy(value: Any) -> bool:
    """Document booleans may arrive as strings ("true")."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)

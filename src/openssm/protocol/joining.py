"""Live-session join, the words every side shares: which sessions can be joined, the modes, the
lines every party sees, and the StreamUrl option that asks for the last screenful (no I/O)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

# Session types whose stream is a terminal (no smux inside): the only ones anyone may join.
JOINABLE_TYPES: Final = frozenset({"Standard_Stream", "InteractiveCommands"})
LAST_SCREEN_OPTION: Final = "openssmLastScreen"  # StreamUrl query parameter: "1" sends the tail first


class JoinMode(enum.StrEnum):
    """The value of the condition key ``openssm:JoinMode``."""

    READ_ONLY = "ReadOnly"
    READ_WRITE = "ReadWrite"


def joinable(session: Mapping[str, Any]) -> str | None:
    """Why this session (its ``sessions`` row as a mapping) cannot be joined, or None if it can."""
    if session.get("session_type") not in JOINABLE_TYPES:
        return "Only shell sessions can be joined"
    content = session.get("document_content")
    inputs = content.get("inputs") if isinstance(content, Mapping) else None
    if isinstance(inputs, Mapping) and inputs.get("kmsKeyId"):
        return "A session encrypted end to end with KMS cannot be joined"
    return None


def _mode_text(mode: JoinMode) -> str:
    return "read-only" if mode is JoinMode.READ_ONLY else "read-write"


def joined_line(name: str, mode: JoinMode) -> bytes:
    """What every party's terminal shows when someone joins (and what the recording keeps)."""
    return f"\r\n[openssm] {name} joined ({_mode_text(mode)})\r\n".encode()


def left_line(name: str) -> bytes:
    return f"\r\n[openssm] {name} left\r\n".encode()


def principal_name(principal_arn: str) -> str:
    """The name a joiner is shown by: a user's name, or a role session's name."""
    return principal_arn.rsplit("/", 1)[-1] or principal_arn

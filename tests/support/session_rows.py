"""Rows of the ``sessions`` table as a test inserts them directly (a node's sessions, in any status)."""

from __future__ import annotations

import datetime as dt

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def session_row(session_id: str, node_id: str | None, status: str = "Connected") -> dict[str, object]:
    return {
        "session_id": session_id,
        "target": "mi-0123456789abcdef0",
        "document_name": "SSM-SessionManagerRunShell",
        "session_type": "Standard_Stream",
        "owner_arn": "arn:aws:iam::000000000000:user/admin",
        "owner_name": "admin",
        "status": status,
        "parameters": {},
        "document_content": {},
        "node_id": node_id,
        "start_date": NOW - dt.timedelta(minutes=5),
    }

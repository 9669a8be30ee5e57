"""Typed rows: a result row becomes the entity's frozen dataclass, its marked columns converted."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from openssm.protocol.session_status import SessionStatus
from openssm.store.access_keys import AccessKeyRow
from openssm.store.rows import row_of
from openssm.store.sessions import SessionRow

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def session_columns(**changes: Any) -> dict[str, Any]:
    columns: dict[str, Any] = {
        "session_id": "admin-0123456789abcdef0",
        "target": "mi-0123456789abcdef0",
        "document_name": "SSM-SessionManagerRunShell",
        "session_type": "Standard_Stream",
        "owner_arn": "arn:aws:iam::123456789012:user/admin",
        "owner_name": "admin",
        "status": "Connected",
        "reason": None,
        "details": None,
        "parameters": None,
        "document_content": {"sessionType": "Standard_Stream"},
        "run_as_user": None,
        "node_id": "node-1",
        "start_date": NOW,
        "end_date": None,
        "termination_reason": None,
        "max_session_duration": None,
        "idle_session_timeout": 20,
        "output_s3_url": None,
        "output_cloudwatch_url": None,
        "recording_path": None,
        "bytes_in": 0,
        "bytes_out": 0,
    }
    return {**columns, **changes}


def test_marked_columns_are_converted() -> None:
    row = row_of(SessionRow, session_columns())
    assert row.status is SessionStatus.CONNECTED  # the enum itself, not a look-alike string
    assert row.parameters == {}  # a JSON column stored as NULL reads as an empty object
    assert row.document_content == {"sessionType": "Standard_Stream"}
    assert row.as_mapping()["idle_session_timeout"] == 20


def test_a_status_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="Sleeping"):
        row_of(SessionRow, session_columns(status="Sleeping"))


def test_columns_the_row_does_not_name_are_left_out_and_missing_ones_are_an_error() -> None:
    key = {
        "access_key_id": "AKIAEXAMPLE",
        "secret_encrypted": b"x",
        "status": "Active",
        "principal_type": "user",
        "principal_name": "admin",
        "role_name": None,
        "session_token_hash": None,
        "created_at": NOW,
        "expires_at": None,
        "last_used_at": None,
        "last_used_service": "ssm",  # a column the row type does not carry
    }
    row = row_of(AccessKeyRow, key)
    assert not row.temporary and "last_used_service" not in {f.name for f in dataclasses.fields(row)}
    del key["status"]
    with pytest.raises(KeyError):
        row_of(AccessKeyRow, key)


def test_rows_are_frozen() -> None:
    row = row_of(SessionRow, session_columns())
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.status = SessionStatus.FAILED  # type: ignore[misc]

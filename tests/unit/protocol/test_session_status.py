"""The session-status vocabulary: AWS's six values, split once into active and final."""

from __future__ import annotations

from openssm.protocol.session_status import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    TERMINABLE_STATUSES,
    SessionStatus,
)


def test_the_values_are_aws_describe_sessions_status() -> None:
    assert sorted(SessionStatus) == sorted(
        ["Connected", "Connecting", "Disconnected", "Terminated", "Terminating", "Failed"]
    )


def test_every_status_is_either_active_or_final() -> None:
    assert set(ACTIVE_STATUSES) | set(FINAL_STATUSES) == set(SessionStatus)
    assert not set(ACTIVE_STATUSES) & set(FINAL_STATUSES)
    assert set(FINAL_STATUSES) == {SessionStatus.TERMINATED, SessionStatus.FAILED}


def test_a_terminating_session_can_no_longer_be_terminated_or_resumed() -> None:
    assert set(TERMINABLE_STATUSES) == set(ACTIVE_STATUSES) - {SessionStatus.TERMINATING}

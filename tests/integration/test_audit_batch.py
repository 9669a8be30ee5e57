"""Allowed decisions are written in the transaction of what they allowed (StartSession's session, an
agent's data-channel token), yet every decision still reaches the audit trail: when the call fails
after the decision, when its transaction rolls back, and with a denial that follows an allowed check."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import sqlalchemy as sa
from tests.support.inprocess_api import ACCOUNT, Api, running_api

from openssm.iam.principal import Principal
from openssm.security import AccessDenied, AuditBatch, Identity, RequestFacts, audited, authorize
from openssm.store import audit_log
from openssm.store.audit_log import AuditQuery
from openssm.store.tables import channel_tokens

TARGET = "mi-0123456789abcdef0"


def allow(action: str, resource: str = "*") -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}],
    }


async def trail(api: Api, action: str) -> list[tuple[str, str]]:
    rows = await audit_log.lookup(api.services.engine, AuditQuery(limit=100))
    return [(row.resource, row.decision) for row in reversed(rows) if row.action == action]


async def test_an_allowed_start_session_that_fails_later_is_still_audited(tmp_path: pathlib.Path) -> None:
    async with running_api(tmp_path) as api:
        user = await api.user("alice", allow("ssm:StartSession"))
        reply = await api.ssm("StartSession", {"Target": TARGET}, user)
        assert reply.code == "TargetNotConnected"  # after the decision: no session, no transaction
        target_arn = f"arn:aws:ssm:us-east-1:{ACCOUNT}:managed-instance/{TARGET}"
        assert await trail(api, "ssm:StartSession") == [(target_arn, "allowed")]


async def test_a_denial_after_an_allowed_check_writes_both(tmp_path: pathlib.Path) -> None:
    async with running_api(tmp_path) as api:
        target_only = allow("ssm:StartSession", f"arn:aws:ssm:*:*:managed-instance/{TARGET}")
        user = await api.user("bob", target_only)
        reply = await api.ssm(
            "StartSession", {"Target": TARGET, "DocumentName": "AWS-StartPortForwardingSession"}, user
        )
        assert reply.code == "AccessDeniedException"
        decisions = await trail(api, "ssm:StartSession")
        assert [decision for _, decision in decisions] == ["allowed", "implicitDeny"]
        assert decisions[1][0].endswith(":document/AWS-StartPortForwardingSession")


def caller(principal_name: str) -> tuple[Identity, RequestFacts]:
    principal = Principal(
        arn=f"arn:aws:iam::{ACCOUNT}:user/{principal_name}",
        account=ACCOUNT,
        type="User",
        user_id="AIDAEXAMPLE",
        username=principal_name,
    )
    identity = Identity(principal, "AKIAEXAMPLE", False, "us-east-1", "ssm")
    return identity, RequestFacts(
        source_ip="127.0.0.1", secure_transport=False, user_agent=None, requested_region="us-east-1"
    )


async def test_held_decisions_are_written_once_with_their_transaction_or_after_its_rollback(
    tmp_path: pathlib.Path,
) -> None:
    async with running_api(tmp_path) as api:
        await api.user("carol", allow("ssm:GetDocument"))
        identity, facts = caller("carol")
        services = api.services
        # Committed: the decision and the row it allowed, once each.
        async with audited(services) as batch:
            await authorize(services, identity, "ssm:GetDocument", ["one"], facts, batch=batch)
            assert await trail(api, "ssm:GetDocument") == []  # held until the transaction
            async with batch.transaction(services) as conn:
                await conn.execute(sa.delete(channel_tokens))
        assert await trail(api, "ssm:GetDocument") == [("one", "allowed")]
        # Rolled back: written after all, by audited().
        with pytest.raises(RuntimeError):
            async with audited(services) as batch:
                await authorize(services, identity, "ssm:GetDocument", ["two"], facts, batch=batch)
                async with batch.transaction(services):
                    raise RuntimeError("the effect failed")
        assert await trail(api, "ssm:GetDocument") == [("one", "allowed"), ("two", "allowed")]
        # A denial is written at once, with what was held before it.
        held = AuditBatch()
        await authorize(services, identity, "ssm:GetDocument", ["three"], facts, batch=held)
        with pytest.raises(AccessDenied):
            await authorize(services, identity, "ssm:DeleteDocument", ["four"], facts, batch=held)
        assert held.rows == []
        assert (await trail(api, "ssm:GetDocument"))[-1] == ("three", "allowed")
        assert await trail(api, "ssm:DeleteDocument") == [("four", "implicitDeny")]

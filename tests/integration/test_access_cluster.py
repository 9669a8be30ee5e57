"""Two server nodes on one database run the access tasks side by side (SQLite, and PostgreSQL as in a
scale-out cluster): when a grant's time is up by the one clock, exactly one node expires it, deletes
the grant and ends the requester's session, and each webhook delivery is sent by one node at a time,
retried after the receiver refused it, signed so the receiver can check it. Time is a ManualClock."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import json
import pathlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.support.gateway import wait_for

from openssm.api.access import lifecycle
from openssm.api.access.tasks import AccessTasks
from openssm.api.access.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from openssm.api.errors import ApiError
from openssm.bus.inprocess import InProcessBus
from openssm.clock import ManualClock
from openssm.iam.principal import Principal
from openssm.security.principals import user_principal
from openssm.services import AccessSettings, ServerConfig, Services
from openssm.store import access_requests, access_webhooks, audit_log, sessions
from openssm.store.access_requests import AccessStatus
from openssm.store.audit_log import AuditQuery
from openssm.store.db import make_engine, migrate
from openssm.store.iam import holder_policies, users
from openssm.store.secrets import SecretCipher
from openssm.store.tables import sessions as sessions_table

ACCOUNT = "123456789012"
TARGET = "mi-0123456789abcdef0"
SECRET = b"a-webhook-secret-of-enough-bytes"
START = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
APPROVER = Principal(
    arn=f"arn:aws:iam::{ACCOUNT}:user/bob", account=ACCOUNT, type="User", user_id="AIDABOB", username="bob"
)


class Receiver:
    """A webhook receiver that refuses each delivery's first attempt (503) and accepts the next."""

    def __init__(self) -> None:
        self.attempts: collections.Counter[str] = collections.Counter()
        self.accepted: dict[str, dict[str, Any]] = {}
        self.bad_signatures = 0
        self.clock: ManualClock | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        delivery = request.headers[DELIVERY_HEADER]
        assert self.clock is not None
        if not verify(SECRET, body, request.headers[SIGNATURE_HEADER], now=int(self.clock.now().timestamp())):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.attempts[delivery] += 1
        if self.attempts[delivery] == 1:
            return web.Response(status=503)
        if delivery in self.accepted:
            raise AssertionError(f"delivery {delivery} accepted twice")
        self.accepted[delivery] = json.loads(body)
        return web.Response(status=204)


@contextlib.asynccontextmanager
async def cluster(
    url: str, tmp_path: pathlib.Path, clock: ManualClock, webhook_url: str | None
) -> AsyncIterator[list[Services]]:
    """Two nodes' services (each its own engine, one bus between them, as Redis would be)."""
    bus, cipher = InProcessBus(), SecretCipher.generate()
    settings = AccessSettings(
        webhook_url=webhook_url, webhook_secret=SECRET, webhook_retry_seconds=1.0, poll_seconds=0.05
    )
    nodes = []
    for node_id in ("node-a", "node-b"):
        engine = make_engine(url)
        await migrate(engine)
        config = ServerConfig(data_dir=tmp_path, account_id=ACCOUNT, node_id=node_id, access=settings)
        nodes.append(Services(config=config, engine=engine, bus=bus, cipher=cipher, clock=clock))
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.engine.dispose()


async def alice(services: Services) -> Principal:
    await users.create(services.engine, ACCOUNT, "alice", "/", {}, START)
    principal = await user_principal(services.engine, ACCOUNT, "alice")
    assert principal is not None
    return principal


async def events(services: Services, name: str) -> list[audit_log.AuditRow]:
    return await audit_log.lookup(services.engine, AuditQuery(event_name=name, limit=50))


async def test_one_node_expires_each_grant_and_each_delivery_is_sent_by_one_node(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    clock = ManualClock(START)
    receiver = Receiver()
    receiver.clock = clock
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    hook = TestServer(app, host="127.0.0.1", port=0)
    await hook.start_server()
    try:
        async with cluster(database_url, tmp_path, clock, str(hook.make_url("/hook"))) as (a, b):
            requester = await alice(a)
            row = await lifecycle.create(
                a, "ar-0000000000000000a", requester, target=TARGET, document_name="SSM-SessionManagerRunShell",
                duration=dt.timedelta(minutes=1), reason="patch", now=clock.now(),
            )  # fmt: skip
            await lifecycle.decide(b, row, AccessStatus.APPROVED, APPROVER, reason=None, now=clock.now())
            assert await holder_policies.inline_names(a.engine, "user", "alice") == [
                "openssm-access-" + row.request_id
            ]
            async with a.engine.begin() as conn:  # her session, carried by a node that is gone
                await conn.execute(
                    sa.insert(sessions_table).values(
                        session_id="alice-00000000000000001", target=TARGET,
                        document_name="SSM-SessionManagerRunShell", session_type="Standard_Stream",
                        owner_arn=requester.arn, owner_name="alice", status="Connected", parameters={},
                        document_content={}, node_id="node-gone", start_date=clock.now(),
                    )
                )  # fmt: skip

            tasks = [AccessTasks(a), AccessTasks(b)]
            for task in tasks:
                task.start()
            try:
                # Each delivery (requested, approved) was refused once; it is retried after its delay.
                await wait_for(
                    lambda: _refused_once(a, row.request_id, 2, 2), 10, "the first attempts never came"
                )
                clock.advance(1.5)
                await wait_for(lambda: len(receiver.accepted) == 2, 10, "the retries never came")

                clock.advance(60)  # past the grant's end
                await wait_for(
                    lambda: _status(a, row.request_id, AccessStatus.EXPIRED), 10, "the grant never expired"
                )
                await wait_for(lambda: _refused_once(a, row.request_id, 3, 1), 10, "the expiry was not sent")
                clock.advance(1.5)
                await wait_for(lambda: len(receiver.accepted) == 3, 10, "the expiry was not retried")
                await asyncio.sleep(0.5)  # both nodes keep passing: nothing happens twice
            finally:
                for task in tasks:
                    await task.stop()

            (expired,) = await events(a, "ExpireAccessRequest")
            assert expired.detail["node"] in ("node-a", "node-b")
            assert len(await events(a, "DeleteUserPolicy")) == 1
            (ended,) = await events(a, "TerminateSession")
            assert ended.resource.endswith("session/alice-00000000000000001")
            session = await sessions.get(a.engine, "alice-00000000000000001")
            assert session is not None and session.status == "Terminated"
            assert await holder_policies.inline_names(a.engine, "user", "alice") == []

            assert receiver.bad_signatures == 0
            assert sorted(body["event"] for body in receiver.accepted.values()) == [
                "approved",
                "expired",
                "requested",
            ]
            assert set(receiver.attempts.values()) == {2}
            approved = next(body for body in receiver.accepted.values() if body["event"] == "approved")
            assert approved | {"deliveryId": None, "time": None} == {
                "event": "approved", "deliveryId": None, "time": None, "requestId": row.request_id,
                "requester": "alice", "requesterArn": requester.arn, "target": TARGET,
                "documentName": "SSM-SessionManagerRunShell", "durationSeconds": 60, "reason": "patch",
                "status": "Approved", "decision": "Approved", "decider": "bob", "deciderArn": APPROVER.arn,
                "decisionReason": None, "expiresAt": "2026-12-01T09:01:00Z",
            }  # fmt: skip
            outbox = await access_webhooks.for_request(a.engine, row.request_id)
            assert [(d.status, d.attempts) for d in outbox] == [("delivered", 2)] * 3
    finally:
        await hook.close()


async def _refused_once(services: Services, request_id: str, total: int, waiting: int) -> bool:
    """``total`` deliveries queued, ``waiting`` of them tried once, refused and waiting for their retry
    (no node holds them any more: their retry time is set)."""
    outbox = await access_webhooks.for_request(services.engine, request_id)
    refused = [d for d in outbox if d.attempts == 1 and d.status == "pending" and d.claimed_by is None]
    return len(outbox) == total and len(refused) == waiting


async def _status(services: Services, request_id: str, status: AccessStatus) -> bool:
    row = await access_requests.get(services.engine, request_id)
    return row is not None and row.status == status


async def test_a_request_nobody_decides_expires_after_a_day(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    clock = ManualClock(START)
    async with cluster(database_url, tmp_path, clock, None) as (a, b):
        row = await lifecycle.create(
            a, "ar-0000000000000000b", await alice(a), target=TARGET, document_name="AWS-StartSSHSession",
            duration=dt.timedelta(hours=1), reason="later", now=clock.now(),
        )  # fmt: skip
        clock.advance(24 * 3600 - 1)
        assert await lifecycle.expire_due(a) == 0
        clock.advance(1)
        with pytest.raises(ApiError) as refused:  # too late to approve, though not expired yet
            await lifecycle.decide(a, row, AccessStatus.APPROVED, APPROVER, reason=None, now=clock.now())
        assert refused.value.code == "ConflictException"
        assert list(await asyncio.gather(lifecycle.expire_due(a), lifecycle.expire_due(b))) in (
            [1, 0],
            [0, 1],
        )
        expired = await access_requests.get(a.engine, row.request_id)
        assert expired is not None and expired.status == AccessStatus.EXPIRED
        assert expired.end_reason == "Expired: nobody decided it in time" and not expired.was_granted
        assert await events(a, "DeleteUserPolicy") == []
        assert await access_webhooks.for_request(a.engine, row.request_id) == []  # no webhook configured

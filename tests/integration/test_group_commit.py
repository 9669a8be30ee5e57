"""``store.rows.queued_write``: many callers at once, each answered only once its work is committed;
on SQLite their work shares commits (group commit), and a failing piece fails no other caller."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from openssm.errors import OpenSSMError
from openssm.store import activations, ids, instances
from openssm.store.activations import Claim
from openssm.store.db import make_engine, migrate
from openssm.store.rows import queued_write

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CALLERS = 40


class Refused(OpenSSMError):
    """What the failing piece of work raises."""


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    await migrate(engine)
    yield engine
    await engine.dispose()


def count_commits(engine: AsyncEngine) -> list[int]:
    commits = [0]

    @event.listens_for(engine.sync_engine, "commit")
    def committed(_conn: Any) -> None:
        commits[0] += 1

    return commits


async def activation(engine: AsyncEngine, limit: int) -> tuple[str, str]:
    activation_id, code = ids.activation_id(), ids.activation_code()
    await activations.create(
        engine,
        code=code,
        tags={},
        now=NOW,
        activation_id=activation_id,
        iam_role="NodeRole",
        description=None,
        default_instance_name=None,
        registration_limit=limit,
        expiration_date=NOW + dt.timedelta(days=1),
    )
    return activation_id, code


def registering(activation_id: str, code: str) -> tuple[str, Any]:
    """What RegisterManagedInstance queues: the claim, and the node if the claim was granted."""
    instance_id = ids.managed_instance_id()

    async def work(conn: AsyncConnection) -> Claim:
        claim, _ = await activations.claim_registration(conn, activation_id, code, now=NOW)
        if claim is Claim.OK:
            await instances.register(
                conn,
                instance_id=instance_id,
                activation_id=activation_id,
                iam_role="NodeRole",
                name=None,
                public_key="key",
                fingerprint=instance_id,
                tags={},
                now=NOW,
            )
        return claim

    return instance_id, work


async def test_concurrent_registrations_share_commits_and_never_pass_the_limit(engine: AsyncEngine) -> None:
    limit = CALLERS - 10
    activation_id, code = await activation(engine, limit)
    commits = count_commits(engine)
    works = [registering(activation_id, code) for _ in range(CALLERS)]

    claims = await asyncio.gather(*(queued_write(engine, work) for _, work in works))

    assert claims.count(Claim.OK) == limit
    assert claims.count(Claim.LIMIT) == CALLERS - limit
    registered = {
        instance_id for (instance_id, _), claim in zip(works, claims, strict=True) if claim is Claim.OK
    }
    assert {row.instance_id for row in await instances.list_all(engine)} == registered
    stored = await activations.get(engine, activation_id)
    assert stored is not None and stored.registrations_count == limit
    if engine.dialect.name == "sqlite":  # group-committed: fewer commits than callers
        assert commits[0] < CALLERS
    else:  # PostgreSQL takes concurrent writers: a transaction each
        assert commits[0] == CALLERS


async def test_a_failing_piece_fails_only_its_own_caller(engine: AsyncEngine) -> None:
    activation_id, code = await activation(engine, CALLERS)
    works = [registering(activation_id, code) for _ in range(CALLERS)]
    doomed_id, doomed_work = works[CALLERS // 2]

    async def fails_after_writing(conn: AsyncConnection) -> Claim:
        await doomed_work(conn)  # its claim and its node are rolled back with it
        raise Refused("this one fails")

    works[CALLERS // 2] = (doomed_id, fails_after_writing)

    outcomes = await asyncio.gather(
        *(queued_write(engine, work) for _, work in works), return_exceptions=True
    )

    assert isinstance(outcomes[CALLERS // 2], Refused)
    assert [outcome for index, outcome in enumerate(outcomes) if index != CALLERS // 2] == [Claim.OK] * (
        CALLERS - 1
    )
    stored_ids = {row.instance_id for row in await instances.list_all(engine)}
    assert stored_ids == {instance_id for instance_id, _ in works} - {doomed_id}
    stored = await activations.get(engine, activation_id)
    assert stored is not None and stored.registrations_count == CALLERS - 1

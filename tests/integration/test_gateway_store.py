"""The gateway's store entities on a real (SQLite) database: channel tokens, gateway nodes, and the
sessions a node carries."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib

import pytest
import sqlalchemy as sa
from tests.support.session_rows import session_row

from openssm.store import channel_tokens, gateway_nodes, sessions
from openssm.store.channel_tokens import TokenKind
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.tables import gateway_nodes as gateway_nodes_table
from openssm.store.tables import sessions as sessions_table

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TTL = dt.timedelta(seconds=60)


@pytest.mark.parametrize("returning", [True, False], ids=["update-returning", "sqlite-before-3.35"])
async def test_token_is_consumed_once_even_under_concurrency(tmp_path: pathlib.Path, returning: bool) -> None:
    engine = make_engine(database_url_for(tmp_path))
    # SQLite before 3.35 has no UPDATE … RETURNING: SQLAlchemy's dialect says so, and consume falls
    # back to an update and a select in one transaction.
    engine.dialect.update_returning = engine.dialect.update_returning and returning
    await migrate(engine)
    try:
        await channel_tokens.issue(
            engine, "t1", kind=TokenKind.CLIENT, channel_id="s-1", principal_arn="arn:p", now=NOW, ttl=TTL
        )
        results = await asyncio.gather(
            *(
                channel_tokens.consume(engine, "t1", kind=TokenKind.CLIENT, channel_id="s-1", now=NOW)
                for _ in range(8)
            )
        )
        assert sum(result is not None for result in results) == 1
        winner = next(result for result in results if result is not None)
        assert winner.principal_arn == "arn:p" and winner.used_at == NOW
        assert winner.token_hash != "t1"  # only the token's hash is stored
    finally:
        await engine.dispose()


async def test_token_is_bound_to_kind_channel_and_time(tmp_path: pathlib.Path) -> None:
    engine = make_engine(database_url_for(tmp_path))
    await migrate(engine)
    try:
        data = TokenKind.AGENT_DATA
        await channel_tokens.issue(
            engine, "t2", kind=data, channel_id="s-1", principal_arn="arn:p", now=NOW, ttl=TTL
        )
        assert (
            await channel_tokens.consume(engine, "t2", kind=TokenKind.CLIENT, channel_id="s-1", now=NOW)
            is None
        )
        assert await channel_tokens.consume(engine, "t2", kind=data, channel_id="s-2", now=NOW) is None
        later = NOW + dt.timedelta(seconds=61)
        assert await channel_tokens.consume(engine, "t2", kind=data, channel_id="s-1", now=later) is None
        assert await channel_tokens.consume(engine, "t2", kind=data, channel_id="s-1", now=NOW) is not None
        assert await channel_tokens.purge_expired(engine, older_than=later) == 1
    finally:
        await engine.dispose()


async def test_gateway_node_announce_and_heartbeat(tmp_path: pathlib.Path) -> None:
    engine = make_engine(database_url_for(tmp_path))
    await migrate(engine)
    try:
        start = NOW
        await gateway_nodes.announce(engine, "n1", "http://a", now=start)
        await gateway_nodes.announce(engine, "n1", "http://b", now=start + dt.timedelta(seconds=1))
        await gateway_nodes.heartbeat(engine, "n1", "http://b", start, now=start + dt.timedelta(seconds=11))
        row = await gateway_nodes.get(engine, "n1")
        assert row is not None
        assert row.public_url == "http://b"
        assert row.started_at == start + dt.timedelta(seconds=1)
        assert row.last_seen_at == start + dt.timedelta(seconds=11)
        # Alive while its last heartbeat is under NODE_ALIVE_WINDOW (10 s) old.
        at = start + dt.timedelta(seconds=20)
        assert await gateway_nodes.alive(engine, now=at, own_node="n2") == {"n1": "http://b"}
        assert await gateway_nodes.alive(engine, now=at + dt.timedelta(seconds=1), own_node="n2") == {}
        # A row removed behind the node's back comes back with the next heartbeat.
        async with engine.begin() as conn:
            await conn.execute(gateway_nodes_table.delete())
        await gateway_nodes.heartbeat(engine, "n1", "http://b", start, now=start + dt.timedelta(seconds=21))
        row = await gateway_nodes.get(engine, "n1")
        assert row is not None and row.last_seen_at == start + dt.timedelta(seconds=21)
    finally:
        await engine.dispose()


async def test_a_session_moves_to_one_surviving_node_and_is_suspended_unfinished(
    tmp_path: pathlib.Path,
) -> None:
    """Two survivors race to carry on a dead node's session: exactly one moves it. A suspended
    session is Disconnected with its byte counts; an ended one is neither moved nor suspended."""
    engine = make_engine(database_url_for(tmp_path))
    await migrate(engine)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(sessions_table),
                [session_row("admin-1", "dead"), session_row("admin-2", "dead", status="Terminated")],
            )
        moved = await asyncio.gather(
            *(
                sessions.move_to_node(engine, "admin-1", from_node="dead", to_node=node)
                for node in ("node-b", "node-c")
            )
        )
        assert sorted(moved) == [False, True]
        row = await sessions.get(engine, "admin-1")
        assert row is not None and row.node_id == ("node-b" if moved[0] else "node-c")
        assert not await sessions.move_to_node(engine, "admin-2", from_node="dead", to_node="node-b")
        assert [r.session_id for r in await sessions.of_node(engine, row.node_id)] == ["admin-1"]

        assert await sessions.suspend(engine, "admin-1", bytes_in=5, bytes_out=7)
        row = await sessions.get(engine, "admin-1")
        assert row is not None and (row.status, row.bytes_in, row.bytes_out) == ("Disconnected", 5, 7)
        assert not await sessions.suspend(engine, "admin-2", bytes_in=1, bytes_out=1)
    finally:
        await engine.dispose()


async def test_an_old_control_channels_end_keeps_the_new_ones_row(database_url: str) -> None:
    """An agent reconnecting to the same node: its new channel's row is written before the old
    channel's end clears it, which must clear only what the old channel wrote (its open time)."""
    from openssm.store import instances

    engine = make_engine(database_url)
    await migrate(engine)
    try:
        assert await instances.join(engine, "mi-0123456789abcdef0", iam_role=None, now=NOW)
        old_opened, new_opened = NOW, NOW + dt.timedelta(microseconds=1500)
        await instances.set_control_node(engine, "mi-0123456789abcdef0", "node-1", now=old_opened)
        await instances.set_control_node(engine, "mi-0123456789abcdef0", "node-1", now=new_opened)
        await instances.clear_control_node(engine, "mi-0123456789abcdef0", "node-1", connected_at=old_opened)
        row = await instances.get(engine, "mi-0123456789abcdef0")
        assert row is not None and row.control_node_id == "node-1"  # the new channel's, kept
        await instances.clear_control_node(engine, "mi-0123456789abcdef0", "node-1", connected_at=new_opened)
        row = await instances.get(engine, "mi-0123456789abcdef0")
        assert row is not None and row.control_node_id is None  # its own end clears it
    finally:
        await engine.dispose()

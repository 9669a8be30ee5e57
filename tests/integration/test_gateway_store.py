"""The gateway's store queries on a real (SQLite) database."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib

from openssm.store import channels as store
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.tables import gateway_nodes


async def test_token_is_consumed_once_even_under_concurrency(tmp_path: pathlib.Path) -> None:
    engine = make_engine(database_url_for(tmp_path))
    await migrate(engine)
    try:
        await store.insert_token(
            engine, token_hash="h1", kind="client", channel_id="s-1", principal_arn="arn:p", ttl_seconds=60
        )
        results = await asyncio.gather(
            *(store.consume_token(engine, token_hash="h1", kind="client", channel_id="s-1") for _ in range(8))
        )
        assert sum(result is not None for result in results) == 1
        winner = next(result for result in results if result is not None)
        assert winner["principal_arn"] == "arn:p" and winner["used_at"] is not None
    finally:
        await engine.dispose()


async def test_token_is_bound_to_kind_channel_and_time(tmp_path: pathlib.Path) -> None:
    engine = make_engine(database_url_for(tmp_path))
    await migrate(engine)
    try:
        await store.insert_token(
            engine,
            token_hash="h2",
            kind="agent-data",
            channel_id="s-1",
            principal_arn="arn:p",
            ttl_seconds=60,
        )
        assert await store.consume_token(engine, token_hash="h2", kind="client", channel_id="s-1") is None
        assert await store.consume_token(engine, token_hash="h2", kind="agent-data", channel_id="s-2") is None
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=61)
        assert (
            await store.consume_token(engine, token_hash="h2", kind="agent-data", channel_id="s-1", now=later)
            is None
        )
        assert (
            await store.consume_token(engine, token_hash="h2", kind="agent-data", channel_id="s-1")
            is not None
        )
        assert await store.purge_expired_tokens(engine, older_than=later) == 1
    finally:
        await engine.dispose()


async def test_gateway_node_upsert_and_touch(tmp_path: pathlib.Path) -> None:
    engine = make_engine(database_url_for(tmp_path))
    await migrate(engine)
    try:
        start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        await store.upsert_gateway_node(engine, "n1", "http://a", now=start)
        await store.upsert_gateway_node(engine, "n1", "http://b", now=start + dt.timedelta(seconds=1))
        await store.touch_gateway_node(engine, "n1", "http://b", start, now=start + dt.timedelta(seconds=11))
        row = await store.get_gateway_node(engine, "n1")
        assert row is not None
        assert row["public_url"] == "http://b"
        assert row["started_at"] == start + dt.timedelta(seconds=1)
        assert row["last_seen_at"] == start + dt.timedelta(seconds=11)
        # A row removed behind the node's back comes back with the next heartbeat.
        async with engine.begin() as conn:
            await conn.execute(gateway_nodes.delete())
        await store.touch_gateway_node(engine, "n1", "http://b", start, now=start + dt.timedelta(seconds=21))
        row = await store.get_gateway_node(engine, "n1")
        assert row is not None and row["last_seen_at"] == start + dt.timedelta(seconds=21)
    finally:
        await engine.dispose()

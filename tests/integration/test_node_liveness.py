"""Node liveness on the database's time: nodes whose clocks disagree still agree on who is alive,
and a silent node is dead within the blind spot (NODE_ALIVE_WINDOW)."""

from __future__ import annotations

import datetime as dt
import pathlib

from openssm.store import gateway_nodes
from openssm.store.db import database_url_for, make_engine, migrate


async def test_a_node_with_a_wrong_clock_is_alive_on_the_shared_database(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        await migrate(engine)
        now = dt.datetime.now(dt.UTC)
        await gateway_nodes.announce(engine, "right", "http://right", now=now)
        # Its heartbeat is stamped with the database's time, not its own (an hour behind).
        await gateway_nodes.heartbeat(engine, "wrong", "http://wrong", now, now=now - dt.timedelta(hours=1))
        assert set(await gateway_nodes.alive(engine, now=now)) == {"right", "wrong"}
        # Judged on the database's time too: a reader whose clock runs ahead sees them alive.
        ahead = now + dt.timedelta(minutes=5)
        assert set(await gateway_nodes.alive(engine, now=ahead)) == {"right", "wrong"}
        row = await gateway_nodes.get(engine, "wrong")
        assert row is not None and abs(row.last_seen_at - now) < dt.timedelta(minutes=1)
    finally:
        await engine.dispose()


async def test_a_silent_node_is_dead_within_the_blind_spot(tmp_path: pathlib.Path) -> None:
    assert gateway_nodes.NODE_ALIVE_WINDOW <= dt.timedelta(seconds=10)
    engine = make_engine(database_url_for(tmp_path))  # SQLite: one process, the server's clock
    try:
        await migrate(engine)
        now = dt.datetime.now(dt.UTC)
        await gateway_nodes.announce(engine, "node", "http://node", now=now)
        assert "node" in await gateway_nodes.alive(engine, now=now + dt.timedelta(seconds=9))
        assert "node" not in await gateway_nodes.alive(engine, now=now + gateway_nodes.NODE_ALIVE_WINDOW)
    finally:
        await engine.dispose()

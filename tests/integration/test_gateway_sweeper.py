"""The dead-node sweeper on a real database (SQLite; PostgreSQL where its clock matters): only sessions
of silent nodes end, once, and never those of the node sweeping."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from tests.support.gateway import running_gateway, wait_for
from tests.support.session_rows import NOW, session_row

from openssm.clock import ManualClock
from openssm.gateway.settings import GatewaySettings
from openssm.gateway.sweeper import dead_node_reason, dead_nodes_with_sessions, sweep_dead_nodes
from openssm.protocol.session_status import SessionStatus
from openssm.store import gateway_nodes
from openssm.store import sessions as session_store
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.tables import gateway_nodes as gateway_nodes_table
from openssm.store.tables import sessions


async def test_sessions_of_silent_nodes_are_terminated_once(tmp_path: pathlib.Path) -> None:
    engine = make_engine(database_url_for(tmp_path))
    await migrate(engine)
    try:
        await gateway_nodes.announce(engine, "alive", "http://a", now=NOW - dt.timedelta(seconds=5))
        await gateway_nodes.announce(engine, "dead", "http://d", now=NOW - dt.timedelta(seconds=31))
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(sessions),
                [
                    session_row("admin-1", "alive"),
                    session_row("admin-2", "dead"),
                    session_row("admin-3", "dead", status="Connecting"),
                    session_row("admin-4", "dead", status="Failed"),
                    session_row("admin-5", "vanished"),  # its node row is gone altogether
                ],
            )
        assert sorted(await dead_nodes_with_sessions(engine, now=NOW, own_node="alive")) == [
            "dead",
            "vanished",
        ]

        assert await sweep_dead_nodes(engine, now=NOW, own_node="alive") == 3
        # A second sweeper (a node with no row of its own yet) finds nothing left.
        assert await sweep_dead_nodes(engine, now=NOW, own_node="another") == 0

        rows = {
            row.session_id: row
            for row in [await session_store.get(engine, f"admin-{n}") for n in range(1, 6)]
            if row
        }
        assert rows["admin-1"].status == SessionStatus.CONNECTED
        for sid, node in (("admin-2", "dead"), ("admin-3", "dead"), ("admin-5", "vanished")):
            assert rows[sid].status == SessionStatus.TERMINATED
            assert rows[sid].termination_reason == dead_node_reason(node)
            assert rows[sid].end_date == NOW
        assert rows["admin-4"].status == SessionStatus.FAILED and rows["admin-4"].termination_reason is None
    finally:
        await engine.dispose()


async def test_a_node_whose_own_heartbeat_is_late_does_not_sweep_itself(database_url: str) -> None:
    """On a machine loaded enough that a node's heartbeat write comes late, its own sweeper ended
    the sessions it was opening; it is alive (it is sweeping), so only other nodes may sweep it.
    The liveness query itself counts the asking node alive, on the database's clock too."""
    engine = make_engine(database_url)
    await migrate(engine)
    try:
        await gateway_nodes.announce(engine, "me", "http://m", now=NOW)
        await gateway_nodes.announce(engine, "late", "http://l", now=NOW)
        async with engine.begin() as conn:
            # 31 s silent on SQLite's clock (NOW), months on PostgreSQL's (the real time).
            await conn.execute(
                sa.update(gateway_nodes_table).values(last_seen_at=NOW - dt.timedelta(seconds=31))
            )
            await conn.execute(
                sa.insert(sessions),
                [session_row("admin-1", "me", status="Connecting"), session_row("admin-2", "late")],
            )
        assert await dead_nodes_with_sessions(engine, now=NOW, own_node="me") == ["late"]
        assert await dead_nodes_with_sessions(engine, now=NOW, own_node="late") == ["me"]
        assert await sweep_dead_nodes(engine, now=NOW, own_node="me") == 1
        mine = await session_store.get(engine, "admin-1")
        assert mine is not None and mine.status == SessionStatus.CONNECTING
        theirs = await session_store.get(engine, "admin-2")
        assert theirs is not None and theirs.status == SessionStatus.TERMINATED
        assert await sweep_dead_nodes(engine, now=NOW, own_node="another") == 1  # others still do
        mine = await session_store.get(engine, "admin-1")
        assert mine is not None and mine.termination_reason == dead_node_reason("me")
    finally:
        await engine.dispose()


async def test_running_sessions_of_a_dead_node_get_the_resume_window(tmp_path: pathlib.Path) -> None:
    """Sessions whose ends may re-dial to a survivor are left for the resume window; sessions never
    opened, or being terminated, end as soon as their node is found dead."""
    engine = make_engine(database_url_for(tmp_path))
    await migrate(engine)
    window = dt.timedelta(seconds=60)
    try:
        await gateway_nodes.announce(engine, "dead", "http://d", now=NOW - dt.timedelta(seconds=40))
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(sessions),
                [
                    session_row("admin-1", "dead"),
                    session_row("admin-2", "dead", status="Disconnected"),
                    session_row("admin-3", "dead", status="Connecting"),
                    session_row("admin-4", "dead", status="Terminating"),
                ],
            )
        assert await sweep_dead_nodes(engine, now=NOW, own_node="survivor", resume_window=window) == 2
        rows = [await session_store.get(engine, f"admin-{n}") for n in range(1, 5)]
        assert [row.status if row else None for row in rows] == [
            SessionStatus.CONNECTED,
            SessionStatus.DISCONNECTED,
            SessionStatus.TERMINATED,
            SessionStatus.TERMINATED,
        ]
        # Dead for longer than the liveness window and the resume window together: they end too.
        later = NOW + window
        assert await sweep_dead_nodes(engine, now=later, own_node="survivor", resume_window=window) == 2
        for n in (1, 2):
            row = await session_store.get(engine, f"admin-{n}")
            assert row is not None and row.status == SessionStatus.TERMINATED
            assert row.termination_reason == dead_node_reason("dead")
    finally:
        await engine.dispose()


async def test_a_running_node_sweeps_by_its_clock(tmp_path: pathlib.Path) -> None:
    """A live node's sweeper ends a silent node's sessions once the node's own clock has passed the
    liveness window (10 s), and not before."""
    clock = ManualClock(NOW)
    async with running_gateway(
        # No resume window: running sessions end as soon as their node is found dead.
        tmp_path,
        settings=GatewaySettings(heartbeat_interval=0.05, resume_window=0.0),
        clock=clock,
    ) as gw:
        await gateway_nodes.announce(gw.engine, "silent", "http://s", now=NOW)
        await gateway_nodes.announce(gw.engine, "gone", "http://g", now=NOW - dt.timedelta(seconds=2))
        await gw.add_session("admin-1", "mi-0123456789abcdef0", node_id="silent", status="Connected")
        await gw.add_session("admin-2", "mi-0123456789abcdef0", node_id="gone", status="Connected")

        def ended(session_id: str) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                row = await session_store.get(gw.engine, session_id)
                return row is not None and row.status == SessionStatus.TERMINATED

            return check

        clock.advance(9)  # "gone" is 11 s silent, "silent" 9 s
        await wait_for(ended("admin-2"), 5, "the sweeper never ran")
        assert not await ended("admin-1")()  # that sweep judged it alive
        clock.advance(1)
        await wait_for(ended("admin-1"), 5, "the silent node's session was never swept")
        row = await session_store.get(gw.engine, "admin-1")
        assert row is not None and row.termination_reason == dead_node_reason("silent")
        assert row.end_date == clock.now()


async def test_the_resume_window_holds_on_the_databases_time(postgres_url: str) -> None:
    """On PostgreSQL a node's liveness is judged on the database's clock, so the resume window is a
    duration added to the liveness window: a sweep must not end a dead node's running sessions the
    moment the node is found dead (as it once did: the grace was an earlier ``now``, which the
    database's clock ignored, and a survivor ended sessions whose ends were re-dialling to it). The
    survivor's own heartbeat is as late, and it sweeps none of its own sessions."""
    window = dt.timedelta(seconds=60)
    engine = make_engine(postgres_url)
    try:
        await migrate(engine)
        now = dt.datetime.now(dt.UTC)
        await gateway_nodes.announce(engine, "dead", "http://d", now=now)
        await gateway_nodes.announce(engine, "survivor", "http://s", now=now)

        async def silent_for(seconds: int) -> None:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.update(gateway_nodes_table).values(
                        last_seen_at=sa.text(f"clock_timestamp() - interval '{seconds} seconds'")
                    )
                )

        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(sessions),
                [
                    session_row("admin-1", "dead"),
                    session_row("admin-2", "dead", status="Connecting"),
                    session_row("admin-3", "survivor", status="Connecting"),
                ],
            )
        await silent_for(40)  # dead (past the liveness window), not yet for the resume window
        assert await sweep_dead_nodes(engine, now=now, own_node="survivor", resume_window=window) == 1
        running = await session_store.get(engine, "admin-1")
        assert running is not None and running.status == SessionStatus.CONNECTED
        await silent_for(75)  # past the liveness window and the resume window together
        assert await sweep_dead_nodes(engine, now=now, own_node="survivor", resume_window=window) == 1
        running = await session_store.get(engine, "admin-1")
        assert running is not None and running.status == SessionStatus.TERMINATED
        own = await session_store.get(engine, "admin-3")
        assert own is not None and own.status == SessionStatus.CONNECTING
    finally:
        await engine.dispose()

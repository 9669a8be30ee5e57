"""The dead-node sweeper on a real (SQLite) database: only sessions of silent nodes end, once."""

from __future__ import annotations

import datetime as dt
import pathlib

import sqlalchemy as sa

from openssm.gateway.sweeper import dead_node_reason, dead_nodes_with_sessions, sweep_dead_nodes
from openssm.protocol.session_status import SessionStatus
from openssm.store import gateway_nodes
from openssm.store import sessions as session_store
from openssm.store.db import database_url_for, make_engine, migrate
from openssm.store.tables import sessions

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
        assert sorted(await dead_nodes_with_sessions(engine, now=NOW)) == ["dead", "vanished"]

        assert await sweep_dead_nodes(engine, now=NOW) == 3
        assert await sweep_dead_nodes(engine, now=NOW) == 0  # a second sweeper finds nothing left

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

"""Store queries the message gateway needs: channel tokens, control-channel ownership of instances,
session status, and the gateway node heartbeat.

Every function takes the async engine and runs in its own short transaction; nothing here holds a
connection across network I/O.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.protocol.session_status import FINAL_STATUSES, SessionStatus
from openssm.store.tables import channel_tokens, gateway_nodes, instances, sessions

Row = dict[str, Any]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- channel tokens --------------------------------------------------------------------------------


async def insert_token(
    engine: AsyncEngine,
    *,
    token_hash: str,
    kind: str,
    channel_id: str,
    principal_arn: str,
    ttl_seconds: float,
    now: dt.datetime | None = None,
) -> None:
    created = now or utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            insert(channel_tokens).values(
                token_hash=token_hash,
                kind=kind,
                channel_id=channel_id,
                principal_arn=principal_arn,
                created_at=created,
                expires_at=created + dt.timedelta(seconds=ttl_seconds),
            )
        )


async def consume_token(
    engine: AsyncEngine,
    *,
    token_hash: str,
    kind: str,
    channel_id: str,
    now: dt.datetime | None = None,
) -> Row | None:
    """Mark a token used, atomically; the row if it was valid (right kind and channel, unused,
    unexpired), else None. A second call with the same token always returns None."""
    used = now or utcnow()
    condition = and_(
        channel_tokens.c.token_hash == token_hash,
        channel_tokens.c.kind == kind,
        channel_tokens.c.channel_id == channel_id,
        channel_tokens.c.used_at.is_(None),
        channel_tokens.c.expires_at > used,
    )
    async with engine.begin() as conn:
        result = await conn.execute(update(channel_tokens).where(condition).values(used_at=used))
        if result.rowcount != 1:
            return None
        row = (
            await conn.execute(select(channel_tokens).where(channel_tokens.c.token_hash == token_hash))
        ).one()
        return dict(row._mapping)


async def purge_expired_tokens(engine: AsyncEngine, *, older_than: dt.datetime) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(delete(channel_tokens).where(channel_tokens.c.expires_at < older_than))
        return int(result.rowcount)


# -- instances -------------------------------------------------------------------------------------


async def get_instance(engine: AsyncEngine, instance_id: str) -> Row | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(instances).where(instances.c.instance_id == instance_id))).first()
        return dict(row._mapping) if row is not None else None


async def set_control_node(
    engine: AsyncEngine, instance_id: str, node_id: str, *, now: dt.datetime | None = None
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(instances)
            .where(instances.c.instance_id == instance_id)
            .values(control_node_id=node_id, control_connected_at=now or utcnow())
        )


async def clear_control_node(engine: AsyncEngine, instance_id: str, node_id: str) -> None:
    """Forget the control channel, unless another node has taken the instance over meanwhile."""
    async with engine.begin() as conn:
        await conn.execute(
            update(instances)
            .where(instances.c.instance_id == instance_id, instances.c.control_node_id == node_id)
            .values(control_node_id=None)
        )


async def clear_node_control_channels(engine: AsyncEngine, node_id: str) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            update(instances).where(instances.c.control_node_id == node_id).values(control_node_id=None)
        )
        return int(result.rowcount)


# -- sessions --------------------------------------------------------------------------------------


async def get_session(engine: AsyncEngine, session_id: str) -> Row | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(sessions).where(sessions.c.session_id == session_id))).first()
        return dict(row._mapping) if row is not None else None


async def set_session_status(engine: AsyncEngine, session_id: str, status: SessionStatus) -> bool:
    """Change the status of an active session; False if it had already ended."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(sessions)
            .where(sessions.c.session_id == session_id, sessions.c.status.not_in(FINAL_STATUSES))
            .values(status=status)
        )
        return result.rowcount == 1


async def finish_session(
    engine: AsyncEngine,
    session_id: str,
    *,
    status: SessionStatus,
    reason: str,
    bytes_in: int | None = None,
    bytes_out: int | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """Record the end of a session once; False if it had already ended."""
    values: dict[str, Any] = {
        "status": status,
        "end_date": now or utcnow(),
        "termination_reason": reason[:256],
    }
    if bytes_in is not None:
        values["bytes_in"] = bytes_in
    if bytes_out is not None:
        values["bytes_out"] = bytes_out
    async with engine.begin() as conn:
        result = await conn.execute(
            update(sessions)
            .where(sessions.c.session_id == session_id, sessions.c.status.not_in(FINAL_STATUSES))
            .values(**values)
        )
        return result.rowcount == 1


async def unclaimed_sessions(engine: AsyncEngine, node_id: str, *, started_before: dt.datetime) -> list[str]:
    """Sessions of a node still "Connecting" (no client ever joined) that started before a time."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(sessions.c.session_id).where(
                sessions.c.node_id == node_id,
                sessions.c.status == SessionStatus.CONNECTING,
                sessions.c.start_date < started_before,
            )
        )
        return [row.session_id for row in rows]


async def finish_node_sessions(
    engine: AsyncEngine, node_id: str, *, reason: str, now: dt.datetime | None = None
) -> int:
    """End every still-active session a node carries (the node is going away)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            update(sessions)
            .where(sessions.c.node_id == node_id, sessions.c.status.not_in(FINAL_STATUSES))
            .values(
                status=SessionStatus.TERMINATED, end_date=now or utcnow(), termination_reason=reason[:256]
            )
        )
        return int(result.rowcount)


# -- gateway nodes ---------------------------------------------------------------------------------


async def upsert_gateway_node(
    engine: AsyncEngine, node_id: str, public_url: str, *, now: dt.datetime | None = None
) -> dt.datetime:
    """Announce a node that has just started (started_at and last_seen_at = now); returns now."""
    moment = now or utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(
            update(gateway_nodes)
            .where(gateway_nodes.c.node_id == node_id)
            .values(public_url=public_url, started_at=moment, last_seen_at=moment)
        )
        if result.rowcount == 0:
            await conn.execute(
                insert(gateway_nodes).values(
                    node_id=node_id, public_url=public_url, started_at=moment, last_seen_at=moment
                )
            )
    return moment


async def touch_gateway_node(
    engine: AsyncEngine,
    node_id: str,
    public_url: str,
    started_at: dt.datetime,
    *,
    now: dt.datetime | None = None,
) -> None:
    """Refresh last_seen_at; re-create the row if someone removed it meanwhile."""
    moment = now or utcnow()
    async with engine.begin() as conn:
        result = await conn.execute(
            update(gateway_nodes).where(gateway_nodes.c.node_id == node_id).values(last_seen_at=moment)
        )
        if result.rowcount == 0:
            await conn.execute(
                insert(gateway_nodes).values(
                    node_id=node_id, public_url=public_url, started_at=started_at, last_seen_at=moment
                )
            )


async def get_gateway_node(engine: AsyncEngine, node_id: str) -> Row | None:
    async with engine.connect() as conn:
        row = (await conn.execute(select(gateway_nodes).where(gateway_nodes.c.node_id == node_id))).first()
        return dict(row._mapping) if row is not None else None

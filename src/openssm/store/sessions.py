"""Sessions (the ``sessions`` table): started by the API, moved along and ended by the gateway, read
by the API, the console and the log shipper. Statuses are :class:`SessionStatus`; a session in a
final status never changes again, so two nodes (or a node and its sweeper) may race to end one and
only the first wins.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any, Literal

import sqlalchemy as sa

from openssm.protocol.session_status import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    TERMINABLE_STATUSES,
    SessionStatus,
)
from openssm.store import channel_tokens
from openssm.store.rows import JSON_OBJECT, Convert, Db, JsonObject, every, execute, first, scalars, writing
from openssm.store.tables import sessions

REASON_CHARS = 256  # the column's width


@dataclasses.dataclass(frozen=True, slots=True)
class NewSession:
    """What StartSession decides; the session begins ``Connecting`` at ``start_date``."""

    session_id: str
    target: str
    document_name: str
    session_type: str
    owner_arn: str
    owner_name: str
    reason: str | None
    parameters: Annotated[dict[str, list[str]], JSON_OBJECT]  # as the API took them
    document_content: JsonObject  # resolved, as sent to the agent
    run_as_user: str | None
    node_id: str | None  # the gateway node that carries it
    start_date: dt.datetime
    max_session_duration: int | None  # minutes
    idle_session_timeout: int | None  # minutes


@dataclasses.dataclass(frozen=True, slots=True)
class SessionRow(NewSession):
    """A session as it is now: what StartSession decided, and what happened since."""

    status: Annotated[SessionStatus, Convert(SessionStatus)]
    details: str | None
    end_date: dt.datetime | None
    termination_reason: str | None
    output_s3_url: str | None
    output_cloudwatch_url: str | None
    recording_path: str | None
    bytes_in: int
    bytes_out: int

    def as_mapping(self) -> dict[str, Any]:
        """The row as the column → value mapping session taps and agent messages are built from."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


async def create(db: Db, session: NewSession, *, token: str, token_ttl: dt.timedelta) -> None:
    """The session row and the client token that opens its data channel, in one transaction."""
    async with writing(db) as conn:
        await conn.execute(
            sa.insert(sessions).values(**dataclasses.asdict(session), status=SessionStatus.CONNECTING)
        )
        await channel_tokens.issue(
            conn,
            token,
            kind=channel_tokens.TokenKind.CLIENT,
            channel_id=session.session_id,
            principal_arn=session.owner_arn,
            now=session.start_date,
            ttl=token_ttl,
        )


async def get(db: Db, session_id: str) -> SessionRow | None:
    return await first(db, sa.select(sessions).where(sessions.c.session_id == session_id), SessionRow)


async def list_by_state(db: Db, *, active: bool) -> list[SessionRow]:
    """DescribeSessions' ``Active`` or ``History`` sessions, newest first."""
    query = (
        sa.select(sessions)
        .where(sessions.c.status.in_(ACTIVE_STATUSES if active else FINAL_STATUSES))
        .order_by(sessions.c.start_date.desc(), sessions.c.session_id)
    )
    return await every(db, query, SessionRow)


async def terminable_of(db: Db, owner_arn: str, target: str) -> list[SessionRow]:
    """An owner's sessions on a target that are running and not yet being ended, oldest first."""
    query = (
        sa.select(sessions)
        .where(
            sessions.c.owner_arn == owner_arn,
            sessions.c.target == target,
            sessions.c.status.in_(TERMINABLE_STATUSES),
        )
        .order_by(sessions.c.start_date, sessions.c.session_id)
    )
    return await every(db, query, SessionRow)


def _unfinished(session_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(sessions.c.session_id == session_id, sessions.c.status.not_in(FINAL_STATUSES))


async def mark_terminating(db: Db, session_id: str) -> bool:
    """Connecting/Connected/Disconnected → Terminating; False if it was already ending or ended."""
    statement = (
        sa.update(sessions)
        .where(sessions.c.session_id == session_id, sessions.c.status.in_(TERMINABLE_STATUSES))
        .values(status=SessionStatus.TERMINATING)
    )
    return await execute(db, statement) == 1


async def set_status(db: Db, session_id: str, status: SessionStatus) -> bool:
    """Change the status of a session that has not ended; False if it had."""
    return await execute(db, sa.update(sessions).where(_unfinished(session_id)).values(status=status)) == 1


async def suspend(db: Db, session_id: str, *, bytes_in: int, bytes_out: int) -> bool:
    """The node carrying an unfinished session stops without ending it: Disconnected until its ends
    re-dial, with the bytes relayed so far (the next relay counts on from them)."""
    statement = (
        sa.update(sessions)
        .where(_unfinished(session_id))
        .values(status=SessionStatus.DISCONNECTED, bytes_in=bytes_in, bytes_out=bytes_out)
    )
    return await execute(db, statement) == 1


async def move_to_node(db: Db, session_id: str, *, from_node: str | None, to_node: str) -> bool:
    """An unfinished session carried by a node that died goes on at another (True: moved by this
    call; two nodes that race for it, only one moves it)."""
    statement = (
        sa.update(sessions)
        .where(_unfinished(session_id), sessions.c.node_id == from_node)
        .values(node_id=to_node)
    )
    return await execute(db, statement) == 1


async def of_node(db: Db, node_id: str) -> list[SessionRow]:
    """The unfinished sessions a gateway node carries."""
    query = sa.select(sessions).where(sessions.c.node_id == node_id, sessions.c.status.not_in(FINAL_STATUSES))
    return await every(db, query, SessionRow)


def _ending(status: SessionStatus, reason: str, now: dt.datetime) -> dict[str, Any]:
    return {"status": status, "end_date": now, "termination_reason": reason[:REASON_CHARS]}


async def finish(
    db: Db,
    session_id: str,
    *,
    status: SessionStatus,
    reason: str,
    now: dt.datetime,
    bytes_in: int | None = None,
    bytes_out: int | None = None,
) -> bool:
    """Record the end of a session once; False if it had already ended."""
    values = _ending(status, reason, now)
    if bytes_in is not None:
        values["bytes_in"] = bytes_in
    if bytes_out is not None:
        values["bytes_out"] = bytes_out
    return await execute(db, sa.update(sessions).where(_unfinished(session_id)).values(**values)) == 1


async def finish_node_sessions(
    db: Db,
    node_id: str,
    *,
    reason: str,
    now: dt.datetime,
    statuses: tuple[SessionStatus, ...] = ACTIVE_STATUSES,
) -> int:
    """End the sessions in ``statuses`` (default: every unfinished one) a gateway node still
    carries (the node is going, or has gone, away)."""
    statement = (
        sa.update(sessions)
        .where(
            sessions.c.node_id == node_id,
            sessions.c.status.not_in(FINAL_STATUSES),
            sessions.c.status.in_(statuses),
        )
        .values(**_ending(SessionStatus.TERMINATED, reason, now))
    )
    return await execute(db, statement)


async def unclaimed(db: Db, node_id: str, *, started_before: dt.datetime) -> list[str]:
    """Sessions of a node still ``Connecting`` (no client ever joined) that started before a time."""
    query = sa.select(sessions.c.session_id).where(
        sessions.c.node_id == node_id,
        sessions.c.status == SessionStatus.CONNECTING,
        sessions.c.start_date < started_before,
    )
    return [str(session_id) for session_id in await scalars(db, query)]


async def nodes_with_active_sessions(
    db: Db, *, except_nodes: sa.Select[Any], statuses: tuple[SessionStatus, ...] = ACTIVE_STATUSES
) -> list[str]:
    """Gateway nodes, other than those ``except_nodes`` selects, that carry sessions in ``statuses``
    (default: every unfinished one)."""
    query = (
        sa.select(sessions.c.node_id)
        .where(
            sessions.c.node_id.is_not(None),
            sessions.c.status.not_in(FINAL_STATUSES),
            sessions.c.status.in_(statuses),
            sessions.c.node_id.not_in(except_nodes),
        )
        .distinct()
    )
    return [str(node_id) for node_id in await scalars(db, query)]


async def set_recording_path(db: Db, session_id: str, path: str) -> None:
    await execute(
        db, sa.update(sessions).where(sessions.c.session_id == session_id).values(recording_path=path)
    )


OUTPUT_COLUMNS: dict[str, str] = {"s3": "output_s3_url", "cloudwatch": "output_cloudwatch_url"}


async def set_output_url(db: Db, session_id: str, sink: Literal["s3", "cloudwatch"], url: str) -> None:
    """Where the session's log now is (DescribeSessions' ``OutputUrl``)."""
    statement = (
        sa.update(sessions).where(sessions.c.session_id == session_id).values({OUTPUT_COLUMNS[sink]: url})
    )
    await execute(db, statement)

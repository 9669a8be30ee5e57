"""Single-use channel tokens (``channel_tokens``): what opens a client's or an agent's WebSocket.

Only the SHA-256 of a token is stored. A token is bound to its kind, its channel (session id, or
instance id for a control channel) and the principal it was issued to, expires unused after its
time to live, and is used up by the first :func:`consume` (one atomic ``UPDATE … WHERE used_at IS
NULL``, so two sockets presenting the same token cannot both get in).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Collection

import sqlalchemy as sa

from openssm.store.rows import Db, every, execute, first, row_of, writing
from openssm.store.secrets import hash_token
from openssm.store.tables import channel_tokens


class TokenKind(enum.StrEnum):
    CLIENT = "client"  # StreamUrl open frame (StartSession, ResumeSession)
    AGENT_DATA = "agent-data"  # CreateDataChannel
    AGENT_CONTROL = "agent-control"  # CreateControlChannel
    JOIN_READ_ONLY = "join-read"  # JoinSession: watch a live session (same StreamUrl as CLIENT)
    JOIN_READ_WRITE = "join-write"  # JoinSession: type into it too


@dataclasses.dataclass(frozen=True, slots=True)
class ChannelTokenRow:
    token_hash: str
    kind: str
    channel_id: str
    principal_arn: str
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None


async def issue(
    db: Db,
    token: str,
    *,
    kind: TokenKind,
    channel_id: str,
    principal_arn: str,
    now: dt.datetime,
    ttl: dt.timedelta,
) -> None:
    await execute(
        db,
        sa.insert(channel_tokens).values(
            token_hash=hash_token(token),
            kind=kind,
            channel_id=channel_id,
            principal_arn=principal_arn,
            created_at=now,
            expires_at=now + ttl,
        ),
    )


async def consume(
    db: Db, token: str, *, kind: TokenKind | Collection[TokenKind], channel_id: str, now: dt.datetime
) -> ChannelTokenRow | None:
    """Use a token up, atomically: its row if it was valid (right kind, or one of the kinds given,
    and channel, unused, unexpired), else None. A second call with the same token always returns None."""
    token_hash = hash_token(token)
    kinds = [kind] if isinstance(kind, TokenKind) else list(kind)
    condition = sa.and_(
        channel_tokens.c.token_hash == token_hash,
        channel_tokens.c.kind.in_(kinds),
        channel_tokens.c.channel_id == channel_id,
        channel_tokens.c.used_at.is_(None),
        channel_tokens.c.expires_at > now,
    )
    use = sa.update(channel_tokens).where(condition).values(used_at=now)
    async with writing(db) as conn:
        if not conn.dialect.update_returning:  # SQLite before 3.35 (RHEL 9's Python has 3.34)
            if await execute(conn, use) != 1:
                return None
            mine = sa.select(channel_tokens).where(channel_tokens.c.token_hash == token_hash)
            return await first(conn, mine, ChannelTokenRow)
        # One statement: the row comes back with the update.
        row = (await conn.execute(use.returning(*channel_tokens.c))).mappings().first()
    return None if row is None else row_of(ChannelTokenRow, row)


async def for_channel(db: Db, channel_id: str) -> list[ChannelTokenRow]:
    """The tokens issued for a channel, oldest first."""
    query = sa.select(channel_tokens).where(channel_tokens.c.channel_id == channel_id)
    return await every(db, query.order_by(channel_tokens.c.created_at), ChannelTokenRow)


async def purge_expired(db: Db, *, older_than: dt.datetime) -> int:
    """Drop tokens that expired before ``older_than`` (used or not: only history by then)."""
    return await execute(db, sa.delete(channel_tokens).where(channel_tokens.c.expires_at < older_than))

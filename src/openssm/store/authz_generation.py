"""The authorisation generation: one counter in the database (``authz_generation``, a single row)
that every change able to alter an authorisation decision bumps in its own transaction, so that a
node may keep what it derived from those rows (credentials, principals, policies) for as long as the
counter stays the same.

The bumps are database triggers (migration 0011, from :data:`WATCHED`), so no writer can forget
one: the API, the console, tests writing through the store, another node, ``psql``. Watched:

- every insert, update and delete of the IAM tables (users, groups and their members, roles,
  managed policies and their versions, attachments, inline policies);
- an access key's ``status`` changing, and a key deleted, except temporary keys already expired
  (:func:`openssm.store.access_keys.create_temporary` sweeps those, marked ``Expired`` first, each
  time an instance fetches new role credentials: no cache holds anything they could change);
- a managed node deregistered (``instances.deregistered``) or deleted.

Reading the counter is one single-row SELECT; :class:`Generation` reads it at most once every
``poll_seconds`` (1 s), and at once after this process committed a write to a watched table (seen
by the SQLAlchemy hooks below, on every engine of the process). So a change takes effect at once
on the node that made it and within ``poll_seconds`` on the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Hashable
from typing import Any, Final, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import Pool

from openssm.iam import PolicySource
from openssm.iam.principal import Principal
from openssm.store.access_keys import EXPIRED, AccessKeyRow
from openssm.store.iam.roles import RoleRow
from openssm.store.instances import InstanceInfo
from openssm.store.rows import Db, reading
from openssm.store.tables import authz_generation

POLL_SECONDS: Final = 1.0
# Entries kept at most (the oldest go first): a credential is about 2 KiB, a node's report 0.5 KiB.
CREDENTIAL_LIMIT: Final = 50_000
POLICY_LIMIT: Final = 10_000
ROLE_LIMIT: Final = 10_000
INSTANCE_LIMIT: Final = 50_000


@dataclasses.dataclass(frozen=True, slots=True)
class Watched:
    """A table whose changes bump the generation: all of them, or only updates of ``columns`` and
    deletions, of rows that do not meet ``unless`` (a condition on the row, new or deleted)."""

    table: str
    columns: tuple[str, ...] | None = None  # None: every insert, update and delete
    unless: str | None = None


WATCHED: Final = (
    *(
        Watched(table)
        for table in (
            "iam_users",
            "iam_groups",
            "iam_group_members",
            "iam_roles",
            "iam_policies",
            "iam_policy_versions",
            "iam_attachments",
            "iam_inline_policies",
        )
    ),
    Watched("access_keys", columns=("status",), unless=f"status = '{EXPIRED}'"),
    Watched("instances", columns=("deregistered",)),
)
_BY_TABLE: Final = {watched.table: watched for watched in WATCHED}
_BUMP: Final = "UPDATE authz_generation SET value = value + 1 WHERE id = 1"


@dataclasses.dataclass(frozen=True, slots=True)
class TriggerDdl:
    create: tuple[str, ...]
    drop: tuple[str, ...]


def trigger_ddl(dialect: str) -> TriggerDdl:
    """The statements creating (and dropping) the triggers of :data:`WATCHED` on ``dialect``."""
    create: list[str] = []
    drop: list[str] = []
    postgres = dialect == "postgresql"
    if postgres:
        create.append(
            "CREATE FUNCTION authz_generation_bump() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN {_BUMP}; RETURN NULL; END $$"
        )
    for watched in WATCHED:
        events: list[tuple[str, str, str | None]]  # (name suffix, event, condition on the row)
        if watched.columns is None and postgres:
            events = [("change", "INSERT OR UPDATE OR DELETE", None)]
        elif watched.columns is None:  # SQLite: one event a trigger
            events = [("insert", "INSERT", None), ("update", "UPDATE", None), ("delete", "DELETE", None)]
        else:
            unless = watched.unless
            events = [
                ("update", f"UPDATE OF {', '.join(watched.columns)}", unless and f"NOT (NEW.{unless})"),
                ("delete", "DELETE", unless and f"NOT (OLD.{unless})"),
            ]
        for suffix, what, condition in events:
            name = f"authz_generation_{watched.table}_{suffix}"
            if postgres:
                each = "ROW" if condition is not None else "STATEMENT"
                when = f" WHEN ({condition})" if condition is not None else ""
                create.append(
                    f"CREATE TRIGGER {name} AFTER {what} ON {watched.table} FOR EACH {each}{when} "
                    "EXECUTE FUNCTION authz_generation_bump()"
                )
                drop.append(f"DROP TRIGGER IF EXISTS {name} ON {watched.table}")
            else:
                when = f" WHEN {condition}" if condition is not None else ""
                create.append(
                    f"CREATE TRIGGER {name} AFTER {what} ON {watched.table}{when} BEGIN {_BUMP}; END"
                )
                drop.append(f"DROP TRIGGER IF EXISTS {name}")
    if postgres:
        drop.append("DROP FUNCTION IF EXISTS authz_generation_bump()")
    return TriggerDdl(tuple(create), tuple(drop))


async def read(db: Db) -> int:
    """The counter as the database has it now."""
    async with reading(db) as conn:
        value = (
            await conn.execute(sa.select(authz_generation.c.value).where(authz_generation.c.id == 1))
        ).scalar_one()
    return int(value)


# -- this process's own writes: seen as they commit, so its caches never lag behind them ----------
_WRITE: Final = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)\"?", re.IGNORECASE)
_SET: Final = re.compile(r"\sSET\s(.*?)(?:\sWHERE\s|\sRETURNING\s|$)", re.IGNORECASE | re.DOTALL)
_PENDING: Final = "openssm.authz_write"
_committed_writes = 0


def _touches_watched(statement: str) -> bool:
    match = _WRITE.match(statement)
    if match is None:
        return False
    watched = _BY_TABLE.get(match.group(1).lower())
    if watched is None:
        return False
    if watched.columns is None:
        return True
    verb = statement.lstrip()[:6].upper()
    if verb != "UPDATE":
        return verb == "DELETE"  # (even one the triggers exempt); a new row changes no decision
    assignments = _SET.search(statement)
    if assignments is None:
        return True
    return any(re.search(rf"\b{column}\s*=", assignments.group(1)) for column in watched.columns)


def _after_cursor_execute(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
    if statement[:1] in "IUDiud " and cursor.rowcount != 0 and _touches_watched(statement):
        conn.info[_PENDING] = True  # (a statement that changed no row changed no decision)


def _checkin(_dbapi_connection: Any, record: Any) -> None:
    """The connection is back in the pool: its transaction has ended (committed or not)."""
    global _committed_writes
    if record is not None and record.info.pop(_PENDING, False):
        _committed_writes += 1


def committed_writes() -> int:
    """How many times a connection of this process came back from a write to a watched table."""
    return _committed_writes


event.listen(Engine, "after_cursor_execute", _after_cursor_execute)
event.listen(Pool, "checkin", _checkin)


class Generation:
    """The counter as this node last read it: read again when ``poll_seconds`` have passed, or when
    this process has committed a write to a watched table since. Callers that find it stale while a
    read is under way (and no write of this process committed since it began) wait for that read:
    a wave of requests each reading it themselves was a tenth of a node's CPU while a killed node's
    agents came over (py-spy, ``bench_fleet.py --cluster``)."""

    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self._value: int | None = None
        self._read_at = 0.0
        self._writes_seen = -1
        self._reading: tuple[int, asyncio.Task[int]] | None = None  # (writes seen, the read)

    async def current(self, db: Db, monotonic: float) -> int:
        """The generation to compare cached entries with (and to store new ones under: read before
        what they are made of, so an entry is never newer than its stamp says). ``monotonic``: the
        time now, on the server's monotonic clock."""
        writes = committed_writes()
        value = self._value
        if (
            value is not None
            and writes == self._writes_seen
            and monotonic - self._read_at < self.poll_seconds
        ):
            return value
        reading = self._reading
        if reading is None or reading[0] != writes or reading[1].get_loop() is not asyncio.get_running_loop():
            # Read before what each caller then reads, whether it started the read or joined it.
            reading = self._reading = (writes, asyncio.create_task(self._read(db, monotonic, writes)))
        return await asyncio.shield(reading[1])

    async def _read(self, db: Db, monotonic: float, writes: int) -> int:
        try:
            value = await read(db)
        finally:
            if self._reading is not None and self._reading[1] is asyncio.current_task():
                self._reading = None
        self._value, self._read_at, self._writes_seen = value, monotonic, writes
        return value


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class VersionedCache(Generic[K, V]):
    """Values stamped with the generation they were read under; one stamped with another is gone.
    At most ``limit`` entries: the oldest goes first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: dict[K, tuple[int, V]] = {}

    def get(self, key: K, generation: int) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] != generation:
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, generation: int, value: V) -> None:
        entries = self._entries
        entries.pop(key, None)
        while len(entries) >= self.limit:
            del entries[next(iter(entries))]
        entries[key] = (generation, value)

    def __len__(self) -> int:
        return len(self._entries)


@dataclasses.dataclass(slots=True)
class Credential:
    """An access key as verified once: its row, its secret in clear, whom it stands for."""

    key: AccessKeyRow
    secret: str
    principal: Principal | None  # None: the user, role or managed node is gone
    last_used_at: dt.datetime | None  # as this node last recorded it (GetAccessKeyLastUsed)


def _cache(limit: int) -> Callable[[], VersionedCache[Any, Any]]:
    return lambda: VersionedCache(limit)


@dataclasses.dataclass(slots=True)
class AuthzCaches:
    """What a node keeps between requests to authenticate and authorise them without reading the
    rows each time, all valid for one :class:`Generation`: credentials by access key id, the
    policy documents (parsed) that apply to a holder (``("user", name)`` or ``("role", name)``),
    roles by name (whom a fleet's role sessions stand for: one read a generation, not one a node),
    and what registered nodes last reported (``UpdateInstanceInformation``'s steady heartbeat;
    an entry also says the node is registered and not deregistered)."""

    generation: Generation = dataclasses.field(default_factory=Generation)
    credentials: VersionedCache[str, Credential] = dataclasses.field(default_factory=_cache(CREDENTIAL_LIMIT))
    policies: VersionedCache[tuple[str, str], tuple[PolicySource, ...]] = dataclasses.field(
        default_factory=_cache(POLICY_LIMIT)
    )
    roles: VersionedCache[str, RoleRow] = dataclasses.field(default_factory=_cache(ROLE_LIMIT))
    instances: VersionedCache[str, InstanceInfo] = dataclasses.field(default_factory=_cache(INSTANCE_LIMIT))

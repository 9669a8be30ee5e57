"""The signed digests of the audit trail (``audit_digests``): written by the sealer
(``openssm.logs.integrity``), read by ``openssm audit verify``. A digest is kept exactly as it was
signed (its canonical JSON text and the signature); this module neither builds nor checks them."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa

from openssm.store.rows import Db, every, execute, first
from openssm.store.tables import audit_digests


@dataclasses.dataclass(frozen=True, slots=True)
class DigestRow:
    sequence: int
    created_at: dt.datetime
    first_id: int
    last_id: int
    body: str
    signature: str


async def latest(db: Db) -> DigestRow | None:
    return await first(
        db, sa.select(audit_digests).order_by(audit_digests.c.sequence.desc()).limit(1), DigestRow
    )


async def add(db: Db, row: DigestRow) -> bool:
    """Store a digest; False when another node stored this sequence number first."""
    try:
        await execute(db, sa.insert(audit_digests).values(**dataclasses.asdict(row)))
    except sa.exc.IntegrityError:
        return False
    return True


async def every_digest(db: Db) -> list[DigestRow]:
    """All digests, in sequence order (a verifier checks their chain from the first)."""
    return await every(db, sa.select(audit_digests).order_by(audit_digests.c.sequence), DigestRow)

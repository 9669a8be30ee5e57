"""Access-key rows: look-up for SigV4 verification, issuing temporary credentials, last-used stamps."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.store import ids
from openssm.store.secrets import SecretCipher, hash_token
from openssm.store.tables import access_keys


@dataclasses.dataclass(frozen=True, slots=True)
class AccessKeyRow:
    access_key_id: str
    secret_encrypted: bytes
    status: str
    principal_type: str  # user | managed-instance | console
    principal_name: str
    role_name: str | None
    session_token_hash: str | None
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None

    @property
    def temporary(self) -> bool:
        return self.session_token_hash is not None


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    expires_at: dt.datetime | None


async def find(engine: AsyncEngine, access_key_id: str) -> AccessKeyRow | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(access_keys).where(access_keys.c.access_key_id == access_key_id)))
            .mappings()
            .first()
        )
    if row is None:
        return None
    return AccessKeyRow(
        access_key_id=row["access_key_id"],
        secret_encrypted=row["secret_encrypted"],
        status=row["status"],
        principal_type=row["principal_type"],
        principal_name=row["principal_name"],
        role_name=row["role_name"],
        session_token_hash=row["session_token_hash"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
    )


async def touch(engine: AsyncEngine, access_key_id: str, service: str, now: dt.datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.update(access_keys)
            .where(access_keys.c.access_key_id == access_key_id)
            .values(last_used_at=now, last_used_service=service)
        )


async def create_long_term(
    engine: AsyncEngine, cipher: SecretCipher, *, principal_type: str, principal_name: str, now: dt.datetime
) -> IssuedCredentials:
    key_id, secret = ids.access_key_id(temporary=False), ids.secret_access_key()
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(access_keys).values(
                access_key_id=key_id,
                secret_encrypted=cipher.encrypt(secret.encode()),
                status="Active",
                principal_type=principal_type,
                principal_name=principal_name,
                created_at=now,
            )
        )
    return IssuedCredentials(key_id, secret, None, None)


async def create_temporary(
    engine: AsyncEngine,
    cipher: SecretCipher,
    *,
    principal_type: str,
    principal_name: str,
    role_name: str | None,
    now: dt.datetime,
    lifetime: dt.timedelta,
) -> IssuedCredentials:
    """ASIA… credentials; the session token is stored only as its hash."""
    key_id, secret, token = ids.access_key_id(temporary=True), ids.secret_access_key(), ids.session_token()
    expires = now + lifetime
    async with engine.begin() as conn:
        # Expired temporary keys of this principal are dead weight; drop them as we mint a new one.
        await conn.execute(
            sa.delete(access_keys).where(
                access_keys.c.principal_type == principal_type,
                access_keys.c.principal_name == principal_name,
                access_keys.c.expires_at.is_not(None),
                access_keys.c.expires_at < now,
            )
        )
        await conn.execute(
            sa.insert(access_keys).values(
                access_key_id=key_id,
                secret_encrypted=cipher.encrypt(secret.encode()),
                status="Active",
                principal_type=principal_type,
                principal_name=principal_name,
                role_name=role_name,
                session_token_hash=hash_token(token),
                created_at=now,
                expires_at=expires,
            )
        )
    return IssuedCredentials(key_id, secret, token, expires)


async def delete_for_principal(engine: AsyncEngine, principal_type: str, principal_name: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.delete(access_keys).where(
                access_keys.c.principal_type == principal_type,
                access_keys.c.principal_name == principal_name,
            )
        )

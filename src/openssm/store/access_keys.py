"""Access keys (``access_keys``): users' long-term keys (AKIA…), and temporary credentials (ASIA…):
managed instances' for their role, users' from GetSessionToken, and role sessions from
AssumeRoleWithWebIdentity. Looked up to verify SigV4, so the secret is stored encrypted under the
master key, not hashed; a session token is stored only as its hash."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Final

import sqlalchemy as sa

from openssm.store import ids
from openssm.store.errors import LimitExceeded, NoSuchEntity
from openssm.store.iam import holders
from openssm.store.rows import Db, count, every, execute, first, writing
from openssm.store.secrets import SecretCipher, hash_token
from openssm.store.tables import access_keys

MAX_ACCESS_KEYS_PER_USER: Final = 2
# The status a swept temporary key is given before it is deleted (openssm.store.authz_generation).
EXPIRED: Final = "Expired"


@dataclasses.dataclass(frozen=True, slots=True)
class AccessKeyRow:
    access_key_id: str
    secret_encrypted: bytes
    status: str  # Active | Inactive (| Expired: being swept, see create_temporary)
    principal_type: str  # user | managed-instance | assumed-role
    principal_name: str  # user name, mi-… id, or role session name
    role_name: str | None  # the role temporary credentials act as
    session_token_hash: str | None  # temporary credentials only
    created_at: dt.datetime
    expires_at: dt.datetime | None  # temporary credentials only
    last_used_at: dt.datetime | None
    mfa_authenticated_at: dt.datetime | None  # GetSessionToken with an MFA code
    federated_provider: str | None  # AssumeRoleWithWebIdentity: the OIDC provider's ARN

    @property
    def temporary(self) -> bool:
        return self.session_token_hash is not None


@dataclasses.dataclass(frozen=True, slots=True)
class IssuedCredentials:
    access_key_id: str
    secret_access_key: str  # shown once, to whoever asked for the key
    session_token: str | None
    expires_at: dt.datetime | None
    # The key's row as inserted (temporary keys: a node may keep it as verified, see
    # RequestManagedInstanceRoleToken), None for long-term keys.
    row: AccessKeyRow | None = None


async def find(db: Db, access_key_id: str) -> AccessKeyRow | None:
    return await first(
        db, sa.select(access_keys).where(access_keys.c.access_key_id == access_key_id), AccessKeyRow
    )


async def touch(db: Db, access_key_id: str, service: str, now: dt.datetime) -> None:
    """Record the key's last use (IAM's ``GetAccessKeyLastUsed``)."""
    statement = (
        sa.update(access_keys)
        .where(access_keys.c.access_key_id == access_key_id)
        .values(last_used_at=now, last_used_service=service)
    )
    await execute(db, statement)


def _new_row(
    cipher: SecretCipher, key_id: str, secret: str, principal_type: str, principal_name: str, now: dt.datetime
) -> AccessKeyRow:
    """An Active key's row (temporary keys add their token hash, role and expiry)."""
    return AccessKeyRow(
        access_key_id=key_id,
        secret_encrypted=cipher.encrypt(secret.encode()),
        status="Active",
        principal_type=principal_type,
        principal_name=principal_name,
        role_name=None,
        session_token_hash=None,
        created_at=now,
        expires_at=None,
        last_used_at=None,
        mfa_authenticated_at=None,
        federated_provider=None,
    )


def _insert(row: AccessKeyRow) -> sa.Insert:
    return sa.insert(access_keys).values(
        {field.name: getattr(row, field.name) for field in dataclasses.fields(row)}
    )


async def create_long_term(
    db: Db, cipher: SecretCipher, *, principal_type: str, principal_name: str, now: dt.datetime
) -> IssuedCredentials:
    key_id, secret = ids.access_key_id(temporary=False), ids.secret_access_key()
    await execute(db, _insert(_new_row(cipher, key_id, secret, principal_type, principal_name, now)))
    return IssuedCredentials(key_id, secret, None, None)


async def create_temporary(
    db: Db,
    cipher: SecretCipher,
    *,
    principal_type: str,
    principal_name: str,
    role_name: str | None,
    now: dt.datetime,
    lifetime: dt.timedelta,
    mfa_authenticated_at: dt.datetime | None = None,
    federated_provider: str | None = None,
) -> IssuedCredentials:
    """ASIA… credentials of ``principal_name`` (acting as ``role_name`` if given); the session token
    is stored only as its hash."""
    key_id, secret, token = ids.access_key_id(temporary=True), ids.secret_access_key(), ids.session_token()
    expires = now + lifetime
    row = dataclasses.replace(
        _new_row(cipher, key_id, secret, principal_type, principal_name, now),
        role_name=role_name,
        session_token_hash=hash_token(token),
        expires_at=expires,
        mfa_authenticated_at=mfa_authenticated_at,
        federated_provider=federated_provider,
    )
    async with writing(db) as conn:
        # Expired temporary keys of this principal are dead weight; drop them as we mint a new one.
        # Marked first: deleting a key bumps the authorisation generation (every node's caches
        # start over), unless it is marked expired (no cache holds anything it could change).
        mine = _of(principal_type, principal_name)
        expired = sa.and_(mine, access_keys.c.expires_at.is_not(None), access_keys.c.expires_at < now)
        if await execute(conn, sa.update(access_keys).where(expired).values(status=EXPIRED)):
            await conn.execute(sa.delete(access_keys).where(mine, access_keys.c.status == EXPIRED))
        await conn.execute(_insert(row))
    return IssuedCredentials(key_id, secret, token, expires, row)


def _of(principal_type: str, principal_name: str) -> sa.ColumnElement[bool]:
    return sa.and_(
        access_keys.c.principal_type == principal_type, access_keys.c.principal_name == principal_name
    )


async def count_for_principal(db: Db, principal_type: str, principal_name: str) -> int:
    return await count(db, sa.select(access_keys).where(_of(principal_type, principal_name)))


async def count_long_term_for_user(db: Db, user_name: str) -> int:
    """The user's own keys (what DeleteUser refuses over; session credentials are not counted)."""
    return await count(db, sa.select(access_keys).where(_users_long_term(user_name)))


async def delete_temporary_for_user(db: Db, user_name: str) -> None:
    """The user's session credentials (GetSessionToken) stop working: the user is being deleted."""
    where = sa.and_(_of("user", user_name), access_keys.c.session_token_hash.is_not(None))
    await execute(db, sa.delete(access_keys).where(where))


async def delete_for_principal(db: Db, principal_type: str, principal_name: str) -> None:
    """Every key of the principal stops working at once (a deregistered managed instance)."""
    await execute(db, sa.delete(access_keys).where(_of(principal_type, principal_name)))


# -- users' own keys (IAM CreateAccessKey, ListAccessKeys, UpdateAccessKey, DeleteAccessKey) ---------
def _users_long_term(user_name: str) -> sa.ColumnElement[bool]:
    return sa.and_(_of("user", user_name), access_keys.c.session_token_hash.is_(None))


async def list_for_user(db: Db, user_name: str) -> list[AccessKeyRow]:
    """The user's long-term keys, oldest first; NoSuchEntity if there is no such user."""
    await holders.require(db, "user", user_name)
    query = sa.select(access_keys).where(_users_long_term(user_name)).order_by(access_keys.c.created_at)
    return await every(db, query, AccessKeyRow)


async def create_for_user(
    db: Db, cipher: SecretCipher, user_name: str, now: dt.datetime
) -> IssuedCredentials:
    """A new long-term key, within the per-user quota (LimitExceeded beyond it)."""
    async with writing(db) as conn:
        if len(await list_for_user(conn, user_name)) >= MAX_ACCESS_KEYS_PER_USER:
            raise LimitExceeded(f"Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS_PER_USER}")
        return await create_long_term(conn, cipher, principal_type="user", principal_name=user_name, now=now)


def _no_key(key_id: str) -> NoSuchEntity:
    return NoSuchEntity(f"The Access Key with id {key_id} cannot be found.")


async def set_user_key_status(db: Db, user_name: str, key_id: str, status: str) -> None:
    async with writing(db) as conn:
        await holders.require(conn, "user", user_name)
        where = sa.and_(_users_long_term(user_name), access_keys.c.access_key_id == key_id)
        if not await execute(conn, sa.update(access_keys).where(where).values(status=status)):
            raise _no_key(key_id)


async def delete_user_key(db: Db, user_name: str, key_id: str) -> None:
    async with writing(db) as conn:
        await holders.require(conn, "user", user_name)
        where = sa.and_(_users_long_term(user_name), access_keys.c.access_key_id == key_id)
        if not await execute(conn, sa.delete(access_keys).where(where)):
            raise _no_key(key_id)

"""IAM users (``iam_users``), with what the browser console checks at sign-in: the login profile
(``password_hash``, scrypt) and the TOTP seed of an enabled MFA device (under the master key)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence

import sqlalchemy as sa

from openssm.iam.arn import user_arn
from openssm.store import access_keys, ids
from openssm.store.errors import DeleteConflict, EntityAlreadyExists, NoSuchEntity
from openssm.store.iam import groups, holder_policies, holders
from openssm.store.rows import Db, Tags, execute, first, reading, writing
from openssm.store.tables import iam_users


@dataclasses.dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    user_id: str  # AIDA…
    arn: str
    path: str
    created_at: dt.datetime
    tags: Tags


@dataclasses.dataclass(frozen=True, slots=True)
class LoginSecrets:
    """What signing in to the console as this user takes besides its access key."""

    name: str
    password_hash: str | None
    mfa_secret_encrypted: bytes | None


async def create(
    db: Db,
    account: str,
    name: str,
    path: str,
    tags: Mapping[str, str],
    now: dt.datetime,
    *,
    admin_bootstrap: bool = False,
) -> UserRow:
    row = UserRow(name, ids.unique_id("AIDA"), user_arn(account, name, path), path, now, dict(tags))
    return await _rows.insert(db, row, is_admin_bootstrap=admin_bootstrap)


_rows = holders.Rows("user", UserRow)
get = _rows.get
list_by_path = _rows.list_by_path
in_group = _rows.by_membership  # the users in a group, by name


async def delete(db: Db, name: str) -> None:
    """As AWS: refuse while the user still has access keys, policies or group memberships."""
    async with writing(db) as conn:
        await holders.require(conn, "user", name)
        if await access_keys.count_for_principal(conn, "user", name):
            raise DeleteConflict("Cannot delete entity, must delete access keys first.")
        await holder_policies.refuse_while_any(conn, "user", name)
        if await groups.of_user(conn, name):
            raise DeleteConflict("Cannot delete entity, must remove user from all groups first.")
        await conn.execute(sa.delete(iam_users).where(iam_users.c.name == name))


async def tag(db: Db, name: str, tags: Mapping[str, str]) -> None:
    await holders.update_tags(db, "user", name, tags, ())


async def untag(db: Db, name: str, keys: Sequence[str]) -> None:
    await holders.update_tags(db, "user", name, {}, keys)


# -- console sign-in --------------------------------------------------------------------------------
async def login_secrets(db: Db, name: str) -> LoginSecrets | None:
    return await first(db, sa.select(iam_users).where(iam_users.c.name == name), LoginSecrets)


def _no_login_profile(name: str) -> NoSuchEntity:
    return NoSuchEntity(f"Login Profile for User {name} cannot be found.")


async def _password_hash(db: Db, name: str) -> str | None:
    async with reading(db) as conn:
        query = sa.select(iam_users.c.password_hash).where(iam_users.c.name == name)
        value = (await conn.execute(query)).scalar_one_or_none()
    return None if value is None else str(value)


async def _set_password_hash(db: Db, name: str, password_hash: str | None) -> None:
    await execute(
        db, sa.update(iam_users).where(iam_users.c.name == name).values(password_hash=password_hash)
    )


async def create_login_profile(db: Db, name: str, password_hash: str) -> None:
    async with writing(db) as conn:
        await holders.require(conn, "user", name)
        if await _password_hash(conn, name):
            raise EntityAlreadyExists(f"Login Profile for user {name} already exists.")
        await _set_password_hash(conn, name, password_hash)


async def require_login_profile(db: Db, name: str) -> None:
    """NoSuchEntity unless the user signs in with a password."""
    if not await _password_hash(db, name):
        raise _no_login_profile(name)


async def update_login_profile(db: Db, name: str, password_hash: str | None) -> None:
    """A new password (None: keep the current one); NoSuchEntity if the user has no login profile."""
    async with writing(db) as conn:
        await require_login_profile(conn, name)
        if password_hash is not None:
            await _set_password_hash(conn, name, password_hash)


async def delete_login_profile(db: Db, name: str) -> None:
    async with writing(db) as conn:
        await require_login_profile(conn, name)
        await _set_password_hash(conn, name, None)


async def set_mfa_secret(db: Db, name: str, encrypted_seed: bytes | None) -> None:
    """The TOTP seed of the user's enabled MFA device (None: no device)."""
    statement = (
        sa.update(iam_users).where(iam_users.c.name == name).values(mfa_secret_encrypted=encrypted_seed)
    )
    await execute(db, statement)

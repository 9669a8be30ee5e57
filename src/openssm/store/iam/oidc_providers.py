"""IAM OpenID Connect providers (``iam_oidc_providers``): the issuers whose ID tokens
AssumeRoleWithWebIdentity accepts, with their client ids (audiences) and certificate thumbprints.

A provider is named by its ARN, ``arn:aws:iam::<account>:oidc-provider/<url>``, where ``url`` is the
issuer URL without its scheme (``idp.example.internal:8443/realms/ops``), as IAM writes it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Annotated, Final

import sqlalchemy as sa

from openssm.store.errors import EntityAlreadyExists, LimitExceeded, NoSuchEntity
from openssm.store.rows import JSON_LIST, Db, Tags, every, execute, first, writing
from openssm.store.tables import iam_oidc_providers

MAX_CLIENT_IDS: Final = 100  # IAM's quota of client ids per provider
MAX_THUMBPRINTS: Final = 5  # IAM's quota of thumbprints per provider


@dataclasses.dataclass(frozen=True, slots=True)
class OidcProviderRow:
    arn: str
    url: str  # the issuer without its scheme
    scheme: str  # https, or http for a loopback issuer
    client_ids: Annotated[list[str], JSON_LIST]
    thumbprints: Annotated[list[str], JSON_LIST]
    tags: Tags
    created_at: dt.datetime

    @property
    def issuer(self) -> str:
        """The ``iss`` its ID tokens carry."""
        return f"{self.scheme}://{self.url}"


def provider_arn(account: str, url: str) -> str:
    return f"arn:aws:iam::{account}:oidc-provider/{url}"


def not_found(arn: str) -> NoSuchEntity:
    return NoSuchEntity(f"OpenIDConnect Provider not found for arn {arn}")


async def create(
    db: Db,
    account: str,
    *,
    url: str,
    scheme: str,
    client_ids: Sequence[str],
    thumbprints: Sequence[str],
    tags: Mapping[str, str],
    now: dt.datetime,
) -> OidcProviderRow:
    row = OidcProviderRow(
        provider_arn(account, url), url, scheme, _unique(client_ids), list(thumbprints), dict(tags), now
    )
    async with writing(db) as conn:
        if await first(conn, _by_url(url), OidcProviderRow) is not None:
            raise EntityAlreadyExists(f"Provider with url {scheme}://{url} already exists.")
        await conn.execute(sa.insert(iam_oidc_providers).values(**dataclasses.asdict(row)))
    return row


def _by_url(url: str) -> sa.Select[tuple[object, ...]]:
    return sa.select(iam_oidc_providers).where(sa.func.lower(iam_oidc_providers.c.url) == url.lower())


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


async def get(db: Db, arn: str) -> OidcProviderRow | None:
    return await first(
        db, sa.select(iam_oidc_providers).where(iam_oidc_providers.c.arn == arn), OidcProviderRow
    )


async def require(db: Db, arn: str) -> OidcProviderRow:
    found = await get(db, arn)
    if found is None:
        raise not_found(arn)
    return found


async def find_by_url(db: Db, url: str) -> OidcProviderRow | None:
    """The provider registered for an issuer (scheme left off; host compared case-insensitively)."""
    return await first(db, _by_url(url), OidcProviderRow)


async def every_provider(db: Db) -> list[OidcProviderRow]:
    return await every(db, sa.select(iam_oidc_providers).order_by(iam_oidc_providers.c.arn), OidcProviderRow)


async def delete(db: Db, arn: str) -> None:
    if not await execute(db, sa.delete(iam_oidc_providers).where(iam_oidc_providers.c.arn == arn)):
        raise not_found(arn)


async def _update(db: Db, arn: str, **values: object) -> None:
    await execute(db, sa.update(iam_oidc_providers).where(iam_oidc_providers.c.arn == arn).values(**values))


async def add_client_id(db: Db, arn: str, client_id: str) -> None:
    """Idempotent, as IAM's: adding a client id the provider has already changes nothing."""
    async with writing(db) as conn:
        row = await require(conn, arn)
        if client_id in row.client_ids:
            return
        if len(row.client_ids) >= MAX_CLIENT_IDS:
            raise LimitExceeded(
                f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: {MAX_CLIENT_IDS}"
            )
        await _update(conn, arn, client_ids=[*row.client_ids, client_id])


async def remove_client_id(db: Db, arn: str, client_id: str) -> None:
    """Idempotent: removing a client id the provider does not have changes nothing."""
    async with writing(db) as conn:
        row = await require(conn, arn)
        await _update(conn, arn, client_ids=[value for value in row.client_ids if value != client_id])


async def set_thumbprints(db: Db, arn: str, thumbprints: Sequence[str]) -> None:
    async with writing(db) as conn:
        await require(conn, arn)
        await _update(conn, arn, thumbprints=list(thumbprints))

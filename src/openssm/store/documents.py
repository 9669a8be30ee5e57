"""Stored (account-owned) documents and their versions, and the look-ups StartSession needs.

AWS's built-in session documents are not stored: they are served from
``openssm.protocol.documents.builtin_documents()`` as read-only AWS-owned documents, so they are
there from the first start and always match this release. ``SSM-SessionManagerRunShell`` is the
account's own preferences document: its built-in content is the default until the account saves one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from typing import Any

import sqlalchemy as sa

from openssm.protocol.documents import (
    DEFAULT_SESSION_DOCUMENT,
    DocumentError,
    Preferences,
    builtin_documents,
    parse_document,
    preferences_from_document,
)
from openssm.store.rows import Db, Tags, every, execute, first, writing
from openssm.store.tables import document_versions, documents

log = logging.getLogger(__name__)

PREFERENCES_DOCUMENT = DEFAULT_SESSION_DOCUMENT


@dataclasses.dataclass(frozen=True, slots=True)
class StoredVersion:
    name: str
    version: str
    content: str
    document_format: str
    content_hash: str
    created_at: dt.datetime
    version_name: str | None


@dataclasses.dataclass(frozen=True, slots=True)
class StoredDocument:
    name: str
    document_type: str  # Session | Command
    owner: str
    default_version: str
    latest_version: str
    created_at: dt.datetime
    tags: Tags


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


async def get_document(conn: Db, name: str) -> StoredDocument | None:
    return await first(conn, sa.select(documents).where(documents.c.name == name), StoredDocument)


async def get_version(
    conn: Db, name: str, version: str | None = None, version_name: str | None = None
) -> StoredVersion | None:
    """One version: by number, by name, else the default version."""
    query = sa.select(document_versions).where(document_versions.c.name == name)
    if version is not None:
        query = query.where(document_versions.c.version == version)
    elif version_name is not None:
        query = query.where(document_versions.c.version_name == version_name)
    else:
        default = sa.select(documents.c.default_version).where(documents.c.name == name).scalar_subquery()
        query = query.where(document_versions.c.version == default)
    return await first(conn, query, StoredVersion)


async def list_versions(conn: Db, name: str) -> list[StoredVersion]:
    versions = await every(
        conn, sa.select(document_versions).where(document_versions.c.name == name), StoredVersion
    )
    return sorted(versions, key=lambda v: int(v.version))


async def list_documents(conn: Db) -> list[StoredDocument]:
    return await every(conn, sa.select(documents).order_by(documents.c.name), StoredDocument)


async def insert_document(
    db: Db,
    *,
    name: str,
    document_type: str,
    owner: str,
    content: str,
    document_format: str,
    version_name: str | None,
    tags: dict[str, str],
    now: dt.datetime,
) -> None:
    """A new document whose version 1 is ``content``."""
    async with writing(db) as conn:
        await conn.execute(
            sa.insert(documents).values(
                name=name,
                document_type=document_type,
                owner=owner,
                default_version="1",
                latest_version="1",
                created_at=now,
                tags=tags,
            )
        )
        await _insert_version(conn, name, "1", content, document_format, version_name, now)


async def _insert_version(
    db: Db,
    name: str,
    version: str,
    content: str,
    document_format: str,
    version_name: str | None,
    now: dt.datetime,
) -> None:
    row = StoredVersion(name, version, content, document_format, content_hash(content), now, version_name)
    await execute(db, sa.insert(document_versions).values(**dataclasses.asdict(row)))


async def add_version(
    db: Db,
    document: StoredDocument,
    *,
    content: str,
    document_format: str,
    version_name: str | None,
    make_default: bool,
    now: dt.datetime,
) -> str:
    """The document's next version; returns its number."""
    version = str(int(document.latest_version) + 1)
    values: dict[str, str] = {"latest_version": version}
    if make_default:
        values["default_version"] = version
    async with writing(db) as conn:
        await _insert_version(conn, document.name, version, content, document_format, version_name, now)
        await conn.execute(sa.update(documents).where(documents.c.name == document.name).values(**values))
    return version


async def set_default_version(db: Db, name: str, version: str) -> None:
    await execute(db, sa.update(documents).where(documents.c.name == name).values(default_version=version))


async def delete_document(db: Db, name: str) -> None:
    async with writing(db) as conn:
        await conn.execute(sa.delete(document_versions).where(document_versions.c.name == name))
        await conn.execute(sa.delete(documents).where(documents.c.name == name))


async def delete_version(db: Db, name: str, version: str) -> None:
    await execute(
        db,
        sa.delete(document_versions).where(
            document_versions.c.name == name, document_versions.c.version == version
        ),
    )


# -- what StartSession needs ----------------------------------------------------------------------


async def get_session_document(conn: Db, name: str) -> dict[str, Any] | None:
    """The default version of the account's ``Session`` document ``name``, else the built-in one."""
    document = await get_document(conn, name)
    if document is not None:
        if document.document_type != "Session":
            return None
        version = await get_version(conn, name)
        if version is not None:
            try:
                return parse_document(version.content, version.document_format)
            except DocumentError as exc:
                log.error("stored document %s does not parse: %s", name, exc)
                return None
    return builtin_documents().get(name)


async def get_preferences(conn: Db) -> tuple[dict[str, Any], Preferences]:
    """The account's Session Manager preferences: the ``inputs`` of ``SSM-SessionManagerRunShell``
    and their parsed form (nothing and the defaults when unset or unreadable)."""
    return preferences_in(await get_session_document(conn, PREFERENCES_DOCUMENT))


def preferences_in(document: dict[str, Any] | None) -> tuple[dict[str, Any], Preferences]:
    """:func:`get_preferences` from ``SSM-SessionManagerRunShell`` as already read."""
    if document is None:
        return {}, Preferences()
    inputs = document.get("inputs")
    try:
        return (dict(inputs) if isinstance(inputs, dict) else {}), preferences_from_document(document)
    except DocumentError as exc:
        # Preferences are validated when saved; a bad stored copy must not block every session.
        log.error("session preferences are invalid (%s); using defaults", exc)
        return {}, Preferences()

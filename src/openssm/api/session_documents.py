"""Session documents for StartSession: look-up (account documents, then built-ins), parameter checks,
and the account's Session Manager preferences (``SSM-SessionManagerRunShell`` inputs)."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from openssm.api.errors import ApiError, validation_error
from openssm.iam.arn import document_arn
from openssm.protocol.documents import (
    DEFAULT_SESSION_DOCUMENT,
    DocumentError,
    Preferences,
    builtin_documents,
    parse_document,
    preferences_from_document,
    validate_parameters,
)
from openssm.store.tables import document_versions, documents

log = logging.getLogger(__name__)
PREFERENCES_DOCUMENT = DEFAULT_SESSION_DOCUMENT


@dataclasses.dataclass(frozen=True, slots=True)
class SessionDocument:
    name: str
    content: dict[str, Any]
    owner_account: str  # "" for AWS-owned documents (their ARNs have an empty account)

    def arn(self, region: str) -> str:
        return document_arn(region, self.owner_account, self.name)

    @property
    def session_type(self) -> str:
        return str(self.content.get("sessionType", ""))


def _parse_content(text: str, document_format: str) -> dict[str, Any] | None:
    try:
        return parse_document(text, document_format.upper())
    except DocumentError as exc:
        log.error("stored document does not parse: %s", exc)
        return None


async def _stored_document(engine: AsyncEngine, name: str) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(
                    document_versions.c.content,
                    document_versions.c.document_format,
                    documents.c.document_type,
                )
                .select_from(
                    documents.join(
                        document_versions,
                        sa.and_(
                            document_versions.c.name == documents.c.name,
                            document_versions.c.version == documents.c.default_version,
                        ),
                    )
                )
                .where(documents.c.name == name)
            )
        ).first()
    if row is None or row.document_type != "Session":
        return None
    return _parse_content(row.content, row.document_format)


async def find(engine: AsyncEngine, name: str, account: str) -> SessionDocument | None:
    """The account's own document of that name, else the built-in one."""
    stored = await _stored_document(engine, name)
    if stored is not None:
        return SessionDocument(name, stored, account)
    builtin = builtin_documents().get(name)
    if builtin is None:
        return None
    # The preferences document lives in each account; the other built-ins are AWS-owned.
    owner = account if name == PREFERENCES_DOCUMENT else ""
    return SessionDocument(name, builtin, owner)


async def find_or_fail(engine: AsyncEngine, name: str, account: str) -> SessionDocument:
    document = await find(engine, name, account)
    if document is None or "sessionType" not in document.content:
        raise ApiError("InvalidDocument", f"Document with name {name} does not exist.")
    return document


def checked_parameters(document: SessionDocument, given: dict[str, list[str]]) -> dict[str, list[str]]:
    """The API's parameters checked against the document's declarations, with defaults filled in."""
    try:
        return validate_parameters(document.content, given)
    except DocumentError as exc:
        raise validation_error(f"Parameter '{exc.field}' of document {document.name}: {exc.message}") from exc


async def preferences(engine: AsyncEngine, account: str) -> tuple[dict[str, Any], Preferences]:
    """The account's Session Manager preferences: the inputs of ``SSM-SessionManagerRunShell``."""
    document = await find(engine, PREFERENCES_DOCUMENT, account)
    if document is None:
        return {}, Preferences()
    inputs = document.content.get("inputs")
    try:
        return (dict(inputs) if isinstance(inputs, dict) else {}), preferences_from_document(document.content)
    except DocumentError as exc:
        # Preferences are validated when saved; a bad stored copy must not block every session.
        log.error("session preferences are invalid (%s); using defaults", exc)
        return {}, Preferences()

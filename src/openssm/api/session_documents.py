"""Session documents for StartSession: look-up (account documents, then built-ins), parameter checks,
and the account's Session Manager preferences (``SSM-SessionManagerRunShell`` inputs)."""

from __future__ import annotations

import dataclasses
from typing import Any

from openssm.api.errors import ApiError, validation_error
from openssm.iam.arn import document_arn
from openssm.protocol.documents import (
    DocumentError,
    Preferences,
    validate_parameters,
)
from openssm.store import documents as stored_documents
from openssm.store.rows import Db, reading

PREFERENCES_DOCUMENT = stored_documents.PREFERENCES_DOCUMENT


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


async def find(db: Db, name: str, account: str) -> SessionDocument | None:
    """The account's own Session document of that name, else the built-in one."""
    async with reading(db) as conn:
        content = await stored_documents.get_session_document(conn, name)
    if content is None:
        return None
    # AWS reserves the "AWS-" prefix for its own documents, whose ARNs have an empty account.
    return SessionDocument(name, content, "" if name.startswith("AWS-") else account)


async def find_or_fail(db: Db, name: str, account: str) -> SessionDocument:
    document = await find(db, name, account)
    if document is None or "sessionType" not in document.content:
        raise ApiError("InvalidDocument", f"Document with name {name} does not exist.")
    return document


def checked_parameters(document: SessionDocument, given: dict[str, list[str]]) -> dict[str, list[str]]:
    """The API's parameters checked against the document's declarations, with defaults filled in."""
    try:
        return validate_parameters(document.content, given)
    except DocumentError as exc:
        raise validation_error(f"Parameter '{exc.field}' of document {document.name}: {exc.message}") from exc


async def preferences(db: Db, document: SessionDocument) -> tuple[dict[str, Any], Preferences]:
    """The account's Session Manager preferences: the inputs of ``SSM-SessionManagerRunShell``
    (``document`` when it is that one: a session of the default document reads it once)."""
    if document.name == PREFERENCES_DOCUMENT:
        return stored_documents.preferences_in(document.content)
    async with reading(db) as conn:
        return await stored_documents.get_preferences(conn)

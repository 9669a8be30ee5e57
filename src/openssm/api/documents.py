"""SSM Documents API for ``Session`` documents: create, update, read, list, delete, default version.

AWS's built-in session documents are served read-only as AWS-owned (Owner "Amazon"); the account's
``SSM-SessionManagerRunShell`` (the Session Manager preferences) exists from the first start with
AWS's default content and becomes a stored document on its first CreateDocument/UpdateDocument.
Preferences are validated when saved, with a message naming the bad field. Saving the preferences
document also makes the new version the default, as the console does, so
``aws ssm update-document --name SSM-SessionManagerRunShell --document-version '$LATEST'`` takes effect.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, Final

import yaml

from openssm.api.errors import ApiError, validation_error
from openssm.api.pagination import page
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.validation import epoch, object_list, paging, required_string, string, tags
from openssm.iam.arn import document_arn
from openssm.protocol.documents import (
    MAX_DOCUMENT_BYTES,
    DocumentError,
    builtin_documents,
    parse_document,
    preferences_from_document,
)
from openssm.protocol.run_command import builtin_command_documents
from openssm.store import documents as store
from openssm.store.rows import Db

SSM: Final = "AmazonSSM"
NAME_PATTERN: Final = r"^[a-zA-Z0-9_\-.]{3,128}$"
READ_NAME_PATTERN: Final = r"^[a-zA-Z0-9_\-.:/]{3,128}$"  # reads also take ARNs' last part forms
VERSION_PATTERN: Final = r"^([$]LATEST|[$]DEFAULT|[1-9][0-9]*)$"
VERSION_NAME_PATTERN: Final = r"^[a-zA-Z0-9_\-.]{1,128}$"
RESERVED_PREFIXES: Final = ("aws", "amazon", "amzn")
FORMATS: Final = ("JSON", "YAML")
PLATFORM_TYPES: Final = ["Windows", "Linux", "MacOS"]
AMAZON: Final = "Amazon"
BUILTIN_CREATED: Final = dt.datetime(2018, 9, 11, tzinfo=dt.UTC)  # Session Manager's launch
PREFERENCES: Final = store.PREFERENCES_DOCUMENT


@dataclasses.dataclass(frozen=True, slots=True)
class DocumentView:
    """One version of a document as the API shows it, stored or built in."""

    name: str
    owner: str  # account id, or "Amazon"
    created_at: dt.datetime
    default_version: str
    latest_version: str
    version: str
    version_name: str | None
    content: str
    document_format: str
    content_hash: str
    parsed: dict[str, Any]
    tags: dict[str, str]
    stored: bool

    @property
    def aws_owned(self) -> bool:
        return self.owner == AMAZON

    @property
    def document_type(self) -> str:
        # The built-in Run Command documents are the only ones that are not Session documents.
        return "Command" if not self.stored and self.name in builtin_command_documents() else "Session"


def _builtin_view(name: str, account: str) -> DocumentView | None:
    document = builtin_documents().get(name) or builtin_command_documents().get(name)
    if document is None:
        return None
    content = json.dumps(document, indent=2)
    return DocumentView(
        name=name,
        owner=account if name == PREFERENCES else AMAZON,
        created_at=BUILTIN_CREATED,
        default_version="1",
        latest_version="1",
        version="1",
        version_name=None,
        content=content,
        document_format="JSON",
        content_hash=store.content_hash(content),
        parsed=document,
        tags={},
        stored=False,
    )


def _not_found(name: str) -> ApiError:
    return ApiError("InvalidDocument", f"Document with name {name} does not exist.")


def _bad_version(name: str, version: str) -> ApiError:
    return ApiError("InvalidDocumentVersion", f"Document {name} has no version {version}.")


async def _view(
    request: ApiRequest, name: str, version: str | None = None, version_name: str | None = None
) -> DocumentView:
    async with request.services.engine.connect() as conn:
        document = await store.get_document(conn, name)
        if document is None:
            builtin = _builtin_view(name, request.account)
            if builtin is None:
                raise _not_found(name)
            if version not in (None, "1", "$LATEST", "$DEFAULT") or version_name is not None:
                raise _bad_version(name, version or version_name or "")
            return builtin
        if version == "$LATEST":
            version = document.latest_version
        elif version == "$DEFAULT":
            version = None
        stored = await store.get_version(conn, name, version, version_name)
    if stored is None:
        raise _bad_version(name, version or version_name or "")
    try:
        parsed = parse_document(stored.content, stored.document_format)
    except DocumentError:
        parsed = {}
    return DocumentView(
        name=name,
        owner=document.owner,
        created_at=stored.created_at,
        default_version=document.default_version,
        latest_version=document.latest_version,
        version=stored.version,
        version_name=stored.version_name,
        content=stored.content,
        document_format=stored.document_format,
        content_hash=stored.content_hash,
        parsed=parsed,
        tags=document.tags,
        stored=True,
    )


def _arn(request: ApiRequest, name: str) -> str:
    owner = "" if name in builtin_documents() and name != PREFERENCES else request.account
    return document_arn(request.region, owner, name)


def _parameters(parsed: dict[str, Any]) -> list[dict[str, Any]]:
    result = []
    for name, definition in (parsed.get("parameters") or {}).items():
        if not isinstance(definition, dict):
            continue
        item: dict[str, Any] = {"Name": name, "Type": definition.get("type", "String")}
        if definition.get("description"):
            item["Description"] = definition["description"]
        if "default" in definition:
            default = definition["default"]
            item["DefaultValue"] = default if isinstance(default, str) else json.dumps(default)
        result.append(item)
    return result


def _tag_list(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(values.items())]


def _description(view: DocumentView) -> dict[str, Any]:
    return {
        "Hash": view.content_hash,
        "HashType": "Sha256",
        "Name": view.name,
        "VersionName": view.version_name,
        "Owner": view.owner,
        "CreatedDate": epoch(view.created_at),
        "Status": "Active",
        "DocumentVersion": view.version,
        "Description": view.parsed.get("description") or None,
        "Parameters": _parameters(view.parsed),
        "PlatformTypes": PLATFORM_TYPES,
        "DocumentType": view.document_type,
        "SchemaVersion": view.parsed.get("schemaVersion", "1.0"),
        "LatestVersion": view.latest_version,
        "DefaultVersion": view.default_version,
        "DocumentFormat": view.document_format,
        "Tags": _tag_list(view.tags),
    }


def _identifier(view: DocumentView) -> dict[str, Any]:
    return {
        "Name": view.name,
        "CreatedDate": epoch(view.created_at),
        "Owner": view.owner,
        "VersionName": view.version_name,
        "PlatformTypes": PLATFORM_TYPES,
        "DocumentVersion": view.version,
        "DocumentType": view.document_type,
        "SchemaVersion": view.parsed.get("schemaVersion", "1.0"),
        "DocumentFormat": view.document_format,
        "Tags": _tag_list(view.tags),
    }


# -- content checks ---------------------------------------------------------------------------------


def _format(body: dict[str, Any]) -> str:
    return string(body, "DocumentFormat", allowed=(*FORMATS, "TEXT")) or "JSON"


def _checked_content(name: str, content: str, document_format: str) -> dict[str, Any]:
    if document_format == "TEXT":
        raise ApiError("InvalidDocumentContent", "Session documents are JSON or YAML, not TEXT.")
    if len(content.encode("utf-8")) > MAX_DOCUMENT_BYTES:
        raise ApiError("MaxDocumentSizeExceeded", f"The document exceeds {MAX_DOCUMENT_BYTES} bytes.")
    try:
        parsed = parse_document(content, document_format)
        if name == PREFERENCES:
            if parsed.get("sessionType") != "Standard_Stream":
                raise DocumentError(
                    "sessionType", "the preferences document's sessionType is Standard_Stream"
                )
            preferences_from_document(parsed)
    except DocumentError as exc:
        raise ApiError(
            "InvalidDocumentContent", f"Invalid document content: {exc.field}: {exc.message}"
        ) from exc
    return parsed


def _check_document_type(body: dict[str, Any]) -> None:
    kind = string(body, "DocumentType")
    if kind not in (None, "Session"):
        raise validation_error(
            f"DocumentType {kind} is not supported: OpenSSM stores Session documents (DocumentType Session)."
        )


def _check_new_name(name: str) -> None:
    if name != PREFERENCES and name.lower().startswith(RESERVED_PREFIXES):
        raise validation_error(f"Document names cannot start with aws, amazon or amzn: {name}")


def _writable(view: DocumentView) -> None:
    if view.aws_owned:
        raise ApiError("InvalidDocumentOperation", f"{view.name} is owned by Amazon and cannot be changed.")


# -- operations --------------------------------------------------------------------------------------


@json_action(SSM, "CreateDocument")
async def create_document(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    content = required_string(body, "Content", min_len=1)
    name = required_string(body, "Name", pattern=NAME_PATTERN)
    version_name = string(body, "VersionName", pattern=VERSION_NAME_PATTERN)
    document_format = _format(body)
    document_tags = tags(body)
    _check_document_type(body)
    await request.authorize("ssm:CreateDocument", [_arn(request, name)])
    _check_new_name(name)
    if name in builtin_documents() and name != PREFERENCES:
        raise ApiError("DocumentAlreadyExists", "The specified document already exists.")
    _checked_content(name, content, document_format)
    async with request.services.engine.begin() as conn:
        if await store.get_document(conn, name) is not None:
            raise ApiError("DocumentAlreadyExists", "The specified document already exists.")
        await _insert(request, conn, name, content, document_format, version_name, document_tags)
    return {"DocumentDescription": _description(await _view(request, name))}


async def _insert(
    request: ApiRequest,
    db: Db,
    name: str,
    content: str,
    document_format: str,
    version_name: str | None,
    document_tags: dict[str, str],
) -> None:
    """A new Session document of the account's."""
    await store.insert_document(
        db,
        name=name,
        document_type="Session",
        owner=request.account,
        content=content,
        document_format=document_format,
        version_name=version_name,
        tags=document_tags,
        now=request.now(),
    )


@json_action(SSM, "UpdateDocument")
async def update_document(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    content = required_string(body, "Content", min_len=1)
    name = required_string(body, "Name", pattern=NAME_PATTERN)
    version_name = string(body, "VersionName", pattern=VERSION_NAME_PATTERN)
    version = string(body, "DocumentVersion", pattern=VERSION_PATTERN)
    document_format = _format(body)
    await request.authorize("ssm:UpdateDocument", [_arn(request, name)])
    current = await _view(request, name)
    _writable(current)
    if version not in (None, "$LATEST", current.latest_version):
        raise ApiError(
            "InvalidDocumentVersion",
            f"Only the latest version ({current.latest_version}) of {name} can be updated.",
        )
    _checked_content(name, content, document_format)
    now = request.now()
    async with request.services.engine.begin() as conn:
        document = await store.get_document(conn, name)
        if document is None:  # the built-in preferences, saved for the first time
            await _insert(request, conn, name, content, document_format, version_name, {})
        else:
            versions = await store.list_versions(conn, name)
            if any(v.content_hash == store.content_hash(content) for v in versions[-1:]):
                raise ApiError(
                    "DuplicateDocumentContent", "The content of the document matches its latest version."
                )
            if version_name is not None and any(v.version_name == version_name for v in versions):
                raise ApiError(
                    "DuplicateDocumentVersionName", f"Version name {version_name} is already used."
                )
            await store.add_version(
                conn,
                document,
                content=content,
                document_format=document_format,
                version_name=version_name,
                make_default=name == PREFERENCES,
                now=now,
            )
    return {"DocumentDescription": _description(await _view(request, name, "$LATEST"))}


def _read_args(body: dict[str, Any]) -> tuple[str, str | None, str | None]:
    name = required_string(body, "Name", pattern=READ_NAME_PATTERN)
    version = string(body, "DocumentVersion", pattern=VERSION_PATTERN)
    version_name = string(body, "VersionName", pattern=VERSION_NAME_PATTERN)
    return name.rsplit("/", 1)[-1], version, version_name


@json_action(SSM, "DescribeDocument")
async def describe_document(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    name, version, version_name = _read_args(body)
    await request.authorize("ssm:DescribeDocument", [_arn(request, name)])
    return {"Document": _description(await _view(request, name, version, version_name))}


def _converted(view: DocumentView, wanted: str | None) -> tuple[str, str]:
    if wanted is None or wanted == view.document_format:
        return view.content, view.document_format
    if wanted == "YAML":
        return yaml.safe_dump(view.parsed, sort_keys=False), "YAML"
    if wanted == "JSON":
        return json.dumps(view.parsed, indent=2), "JSON"
    raise validation_error("Session documents are available as JSON or YAML.")


@json_action(SSM, "GetDocument")
async def get_document(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    name, version, version_name = _read_args(body)
    wanted = string(body, "DocumentFormat", allowed=(*FORMATS, "TEXT"))
    await request.authorize("ssm:GetDocument", [_arn(request, name)])
    view = await _view(request, name, version, version_name)
    content, document_format = _converted(view, wanted)
    return {
        "Name": view.name,
        "CreatedDate": epoch(view.created_at),
        "VersionName": view.version_name,
        "DocumentVersion": view.version,
        "Status": "Active",
        "Content": content,
        "DocumentType": view.document_type,
        "DocumentFormat": document_format,
    }


_OWNER_SELF: Final = ("Self", "Private")


def _filters(body: dict[str, Any]) -> list[tuple[str, list[str]]]:
    result: list[tuple[str, list[str]]] = []
    for index, item in enumerate(object_list(body, "DocumentFilterList", max_items=20)):
        key = required_string(item, "key", path=f"DocumentFilterList.{index + 1}.member.key")
        value = required_string(item, "value", path=f"DocumentFilterList.{index + 1}.member.value")
        result.append((key[0].upper() + key[1:], [value]))
    for index, item in enumerate(object_list(body, "Filters", max_items=20)):
        key = required_string(item, "Key", path=f"Filters.{index + 1}.member.Key")
        values = item.get("Values") or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise validation_error(f"Filters.{index + 1}.member.Values must be a list of strings")
        result.append((key, values))
    for key, _values in result:
        if key not in (
            "Name",
            "Owner",
            "DocumentType",
            "PlatformTypes",
            "SearchKeyword",
        ) and not key.startswith("tag:"):
            raise ApiError("InvalidFilterKey", f"The filter key {key} is not valid.")
    return result


def _matches(view: DocumentView, key: str, values: list[str]) -> bool:
    if not values:
        return True
    if key == "Name":
        return any(view.name.startswith(value) for value in values)
    if key == "Owner":
        return any(
            value == "All"
            or (value in _OWNER_SELF and not view.aws_owned)
            or (value in ("Amazon", "Public") and view.aws_owned)
            or value == view.owner
            for value in values
        )
    if key == "DocumentType":
        return view.document_type in values
    if key == "PlatformTypes":
        return any(value in PLATFORM_TYPES for value in values)
    if key == "SearchKeyword":
        return any(value.lower() in view.name.lower() for value in values)
    tag = key.removeprefix("tag:")
    return view.tags.get(tag) in values


@json_action(SSM, "ListDocuments")
async def list_documents(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    max_results, next_token = paging(body)
    filters = _filters(body)
    await request.authorize("ssm:ListDocuments", ["*"])
    async with request.services.engine.connect() as conn:
        stored = await store.list_documents(conn)
    views = [
        await _view(request, document.name) for document in stored if document.document_type == "Session"
    ]
    stored_names = {view.name for view in views}
    for name in [*builtin_documents(), *builtin_command_documents()]:
        builtin = _builtin_view(name, request.account)
        if builtin is not None and name not in stored_names:
            views.append(builtin)
    views.sort(key=lambda view: view.name)
    matching = [view for view in views if all(_matches(view, key, values) for key, values in filters)]
    chunk, token = page(matching, next_token, max_results, "documents")
    return {"DocumentIdentifiers": [_identifier(view) for view in chunk], "NextToken": token}


@json_action(SSM, "DeleteDocument")
async def delete_document(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    name = required_string(body, "Name", pattern=NAME_PATTERN)
    version = string(body, "DocumentVersion", pattern=r"^[1-9][0-9]*$")
    version_name = string(body, "VersionName", pattern=VERSION_NAME_PATTERN)
    await request.authorize("ssm:DeleteDocument", [_arn(request, name)])
    view = await _view(request, name)
    _writable(view)
    if not view.stored:
        return {}  # the default preferences: nothing saved to delete
    async with request.services.engine.begin() as conn:
        if version is None and version_name is None:
            await store.delete_document(conn, name)
            return {}
        target = await store.get_version(conn, name, version, version_name)
        if target is None:
            raise _bad_version(name, version or version_name or "")
        if target.version == view.default_version:
            raise ApiError(
                "InvalidDocumentOperation", f"Version {target.version} is the default version of {name}."
            )
        await store.delete_version(conn, name, target.version)
    return {}


@json_action(SSM, "UpdateDocumentDefaultVersion")
async def update_default_version(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    name = required_string(body, "Name", pattern=NAME_PATTERN)
    version = required_string(body, "DocumentVersion", pattern=VERSION_PATTERN)
    await request.authorize("ssm:UpdateDocumentDefaultVersion", [_arn(request, name)])
    current = await _view(request, name)
    _writable(current)
    target = await _view(request, name, version)
    if target.stored:
        async with request.services.engine.begin() as conn:
            await store.set_default_version(conn, name, target.version)
    return {
        "Description": {
            "Name": name,
            "DefaultVersion": target.version,
            "DefaultVersionName": target.version_name,
        }
    }


@json_action(SSM, "ListDocumentVersions")
async def list_document_versions(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    name = required_string(body, "Name", pattern=READ_NAME_PATTERN).rsplit("/", 1)[-1]
    max_results, next_token = paging(body)
    await request.authorize("ssm:ListDocumentVersions", [_arn(request, name)])
    current = await _view(request, name)
    if current.stored:
        async with request.services.engine.connect() as conn:
            stored = await store.list_versions(conn, name)
        versions = [
            {
                "Name": name,
                "DocumentVersion": version.version,
                "VersionName": version.version_name,
                "CreatedDate": epoch(version.created_at),
                "IsDefaultVersion": version.version == current.default_version,
                "DocumentFormat": version.document_format,
                "Status": "Active",
            }
            for version in stored
        ]
    else:
        versions = [
            {
                "Name": name,
                "DocumentVersion": "1",
                "CreatedDate": epoch(current.created_at),
                "IsDefaultVersion": True,
                "DocumentFormat": current.document_format,
                "Status": "Active",
            }
        ]
    chunk, token = page(versions, next_token, max_results, f"document-versions-{name}")
    return {"DocumentVersions": chunk, "NextToken": token}

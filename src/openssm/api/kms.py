"""The subset of AWS KMS (JSON 1.1, ``TrentService``, SigV4 service ``kms``) that Session Manager's
KMS encryption needs: keys and their aliases, ``GenerateDataKey``, ``Decrypt`` and ``Encrypt``.

Keys are symmetric (``SYMMETRIC_DEFAULT``, AES-256-GCM); their material is kept encrypted under the
server's master key (:mod:`openssm.store.kms_keys`). Ciphertext blobs name their key and are bound
to the encryption context (:mod:`openssm.protocol.kms_blob`): ``Decrypt`` with any other context is
``InvalidCiphertextException``. There are no key policies: every call is authorised by the caller's
IAM policies on the key's ARN ``arn:aws:kms:<region>:<account>:key/<id>`` (``kms:EncryptionContext:<k>``
condition keys included) and written to the audit log, with the encryption context.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import uuid
from typing import Any, Final

from openssm.api.errors import ApiError, validation_error
from openssm.api.pagination import page
from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.api.validation import integer, required_string, string
from openssm.protocol import kms_blob
from openssm.store import kms_keys
from openssm.store.errors import EntityAlreadyExists
from openssm.store.kms_keys import KeyRow

KMS: Final = "TrentService"
ALIAS_PATTERN: Final = r"alias/[a-zA-Z0-9/_-]+"
MAX_CONTEXT_PAIRS: Final = 64
MAX_CONTEXT_TEXT: Final = 8192
DATA_KEY_SPECS: Final = {"AES_256": 32, "AES_128": 16}


def key_arn(request: ApiRequest, key_id: str) -> str:
    return f"arn:aws:kms:{request.region}:{request.account}:key/{key_id}"


def _alias_arn(request: ApiRequest, alias_name: str) -> str:
    return f"arn:aws:kms:{request.region}:{request.account}:{alias_name}"


def _not_found(message: str) -> ApiError:
    return ApiError("NotFoundException", message)


async def _resolve(request: ApiRequest, given: str, *, aliases: bool = True) -> KeyRow:
    """The key a ``KeyId`` member names: key id, key ARN, alias name or alias ARN."""
    prefix = f"arn:aws:kms:{request.region}:{request.account}:"
    name = given.removeprefix(prefix) if given.startswith("arn:") else given
    if name.startswith("alias/"):
        if not aliases:
            raise validation_error(f"{given} is an alias; this operation needs a key id or key ARN")
        alias = await kms_keys.alias(request.services.engine, name)
        if alias is None:
            raise _not_found(f"Alias {_alias_arn(request, name)} is not found.")
        name = alias.target_key_id
    elif name.startswith("key/"):
        name = name.removeprefix("key/")
    elif given.startswith("arn:"):
        raise _not_found(f"Invalid arn {given}")
    row = await kms_keys.get(request.services.engine, name)
    if row is None:
        raise _not_found(f"Key '{key_arn(request, name)}' does not exist")
    return row


def _metadata(request: ApiRequest, row: KeyRow) -> dict[str, Any]:
    return {
        "AWSAccountId": request.account,
        "KeyId": row.key_id,
        "Arn": key_arn(request, row.key_id),
        "CreationDate": round(row.created_at.timestamp(), 3),
        "Enabled": row.key_state == "Enabled",
        "Description": row.description,
        "KeyUsage": "ENCRYPT_DECRYPT",
        "KeyState": row.key_state,
        "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "KeySpec": "SYMMETRIC_DEFAULT",
        "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
        "MultiRegion": False,
    }


def _blob(body: dict[str, Any], member: str, *, max_bytes: int) -> bytes:
    """A blob member (base64 on the wire), 1..``max_bytes`` bytes."""
    value = body.get(member)
    if value is None:
        raise validation_error(
            f"1 validation error detected: Value null at '{member}' failed to satisfy constraint: "
            "Member must not be null"
        )
    if not isinstance(value, str) or len(value) > (max_bytes + 2) // 3 * 4:
        raise validation_error(f"{member} must be base64 of at most {max_bytes} bytes")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError("SerializationException", f"{member} is not valid base64") from exc
    if not 1 <= len(decoded) <= max_bytes:
        raise validation_error(
            f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
            f"Member must have length between 1 and {max_bytes}"
        )
    return decoded


def _context(body: dict[str, Any]) -> dict[str, str]:
    value = body.get("EncryptionContext")
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    ):
        raise validation_error("EncryptionContext must be a map of strings to strings")
    if len(value) > MAX_CONTEXT_PAIRS or sum(len(k) + len(v) for k, v in value.items()) > MAX_CONTEXT_TEXT:
        raise validation_error("EncryptionContext is too large")
    return dict(value)


def _condition_keys(context: dict[str, str]) -> dict[str, list[str]]:
    """``kms:EncryptionContext:<key>`` and ``kms:EncryptionContextKeys``, for IAM conditions."""
    keys: dict[str, list[str]] = {f"kms:EncryptionContext:{k}": [v] for k, v in context.items()}
    if context:
        keys["kms:EncryptionContextKeys"] = sorted(context)
    return keys


async def _authorize_use(request: ApiRequest, action: str, row: KeyRow, context: dict[str, str]) -> str:
    arn = key_arn(request, row.key_id)
    await request.authorize(
        action,
        [arn],
        _condition_keys(context),
        detail={"keyId": arn, "encryptionContext": context} if context else {"keyId": arn},
    )
    if row.key_state != "Enabled":
        raise ApiError("DisabledException", f"{arn} is disabled.")
    return arn


async def _material(request: ApiRequest, row: KeyRow) -> bytes:
    material = await kms_keys.material(request.services.engine, request.services.cipher, row.key_id)
    if material is None:
        raise _not_found(f"Key '{key_arn(request, row.key_id)}' does not exist")
    return material


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# -- keys and aliases ------------------------------------------------------------------------------


@json_action(KMS, "CreateKey")
async def create_key(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    description = string(body, "Description", max_len=8192) or ""
    string(body, "KeyUsage", allowed=("ENCRYPT_DECRYPT",))
    string(body, "KeySpec", allowed=("SYMMETRIC_DEFAULT",))
    string(body, "CustomerMasterKeySpec", allowed=("SYMMETRIC_DEFAULT",))
    string(body, "Origin", allowed=("AWS_KMS",))
    if body.get("Policy") is not None:
        raise ApiError(
            "UnsupportedOperationException",
            "OpenSSM has no key policies: grant kms:* actions on the key's ARN with IAM policies.",
        )
    await request.authorize("kms:CreateKey", ["*"], detail={"description": description})
    row = await kms_keys.create(
        request.services.engine,
        request.services.cipher,
        key_id=str(uuid.uuid4()),
        material=os.urandom(kms_blob.KEY_BYTES),
        description=description,
        created_by=request.require_identity().principal.arn,
        now=request.now(),
    )
    return {"KeyMetadata": _metadata(request, row)}


@json_action(KMS, "DescribeKey")
async def describe_key(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    row = await _resolve(request, required_string(body, "KeyId", min_len=1, max_len=2048))
    await request.authorize("kms:DescribeKey", [key_arn(request, row.key_id)])
    return {"KeyMetadata": _metadata(request, row)}


def _listing(body: dict[str, Any]) -> tuple[int, str | None]:
    limit = integer(body, "Limit", minimum=1, maximum=1000) or 100
    return limit, string(body, "Marker", min_len=1, max_len=1024)


def _truncated(marker: str | None) -> dict[str, Any]:
    """KMS's paging: ``Truncated``, and ``NextMarker`` when there is more."""
    return {"Truncated": marker is not None, "NextMarker": marker}


@json_action(KMS, "ListKeys")
async def list_keys(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    limit, marker = _listing(body)
    await request.authorize("kms:ListKeys", ["*"])
    rows, next_marker = page(await kms_keys.every_key(request.services.engine), marker, limit, "kms-keys")
    keys = [{"KeyId": row.key_id, "KeyArn": key_arn(request, row.key_id)} for row in rows]
    return {"Keys": keys, **_truncated(next_marker)}


@json_action(KMS, "CreateAlias")
async def create_alias(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    alias_name = required_string(body, "AliasName", min_len=1, max_len=256, pattern=ALIAS_PATTERN)
    if alias_name.startswith("alias/aws/"):
        raise ApiError("NotAuthorizedException", "Alias names starting with alias/aws/ are reserved for AWS.")
    row = await _resolve(
        request, required_string(body, "TargetKeyId", min_len=1, max_len=2048), aliases=False
    )
    await request.authorize(
        "kms:CreateAlias", [_alias_arn(request, alias_name), key_arn(request, row.key_id)]
    )
    try:
        await kms_keys.create_alias(request.services.engine, alias_name, row.key_id, request.now())
    except EntityAlreadyExists as exc:
        raise ApiError(
            "AlreadyExistsException",
            f"An alias with the name {_alias_arn(request, alias_name)} already exists",
        ) from exc
    return {}


@json_action(KMS, "ListAliases")
async def list_aliases(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    limit, marker = _listing(body)
    key_id = string(body, "KeyId", min_len=1, max_len=2048)
    target = None if key_id is None else (await _resolve(request, key_id, aliases=False)).key_id
    await request.authorize("kms:ListAliases", ["*"])
    rows, next_marker = page(
        await kms_keys.aliases(request.services.engine, target), marker, limit, "kms-aliases"
    )
    entries = [
        {
            "AliasName": row.alias_name,
            "AliasArn": _alias_arn(request, row.alias_name),
            "TargetKeyId": row.target_key_id,
            "CreationDate": round(row.created_at.timestamp(), 3),
        }
        for row in rows
    ]
    return {"Aliases": entries, **_truncated(next_marker)}


# -- cryptographic operations ----------------------------------------------------------------------


@json_action(KMS, "GenerateDataKey")
async def generate_data_key(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    given = required_string(body, "KeyId", min_len=1, max_len=2048)
    number = integer(body, "NumberOfBytes", minimum=1, maximum=1024)
    spec = string(body, "KeySpec", allowed=tuple(DATA_KEY_SPECS))
    if (number is None) == (spec is None):
        raise validation_error("Exactly one of KeySpec or NumberOfBytes must be specified.")
    size = DATA_KEY_SPECS[spec] if spec is not None else number
    assert size is not None
    context = _context(body)
    row = await _resolve(request, given)
    arn = await _authorize_use(request, "kms:GenerateDataKey", row, context)
    plaintext = os.urandom(size)
    blob = kms_blob.seal(row.key_id, await _material(request, row), plaintext, context)
    return {"KeyId": arn, "CiphertextBlob": _b64(blob), "Plaintext": _b64(plaintext)}


@json_action(KMS, "Encrypt")
async def encrypt(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    row = await _resolve(request, required_string(body, "KeyId", min_len=1, max_len=2048))
    plaintext = _blob(body, "Plaintext", max_bytes=kms_blob.MAX_PLAINTEXT_BYTES)
    string(body, "EncryptionAlgorithm", allowed=("SYMMETRIC_DEFAULT",))
    context = _context(body)
    arn = await _authorize_use(request, "kms:Encrypt", row, context)
    blob = kms_blob.seal(row.key_id, await _material(request, row), plaintext, context)
    return {"KeyId": arn, "CiphertextBlob": _b64(blob), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}


@json_action(KMS, "Decrypt")
async def decrypt(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    blob = _blob(body, "CiphertextBlob", max_bytes=kms_blob.MAX_BLOB_BYTES)
    given = string(body, "KeyId", min_len=1, max_len=2048)
    string(body, "EncryptionAlgorithm", allowed=("SYMMETRIC_DEFAULT",))
    context = _context(body)
    try:
        header = kms_blob.parse(blob)
    except kms_blob.InvalidCiphertext as exc:
        raise ApiError("InvalidCiphertextException", str(exc)) from exc
    if not re.fullmatch(r"[0-9a-f-]{36}", header.key_id):
        raise ApiError("InvalidCiphertextException", "the ciphertext names no key of this server")
    row = await kms_keys.get(request.services.engine, header.key_id)
    if row is None:
        raise ApiError("InvalidCiphertextException", "the key of this ciphertext does not exist")
    if given is not None and (await _resolve(request, given)).key_id != row.key_id:
        raise ApiError(
            "IncorrectKeyException",
            "The key ID in the request does not identify a CMK that can perform this operation.",
        )
    arn = await _authorize_use(request, "kms:Decrypt", row, context)
    try:
        plaintext = kms_blob.open_blob(header, await _material(request, row), context)
    except kms_blob.InvalidCiphertext as exc:
        raise ApiError("InvalidCiphertextException", str(exc)) from exc
    return {"KeyId": arn, "Plaintext": _b64(plaintext), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}

"""OpenSSM's KMS ciphertext blobs: self-describing, bound to their encryption context.

AWS's ``CiphertextBlob`` is opaque to callers but names its key (``Decrypt`` needs no ``KeyId`` for a
symmetric key). Ours is ``version (1) || key-id length (1) || key id (ASCII) || nonce (12) ||
AES-256-GCM(ciphertext || tag)``; the associated data is the header (version and key id) followed by
the encryption context in a canonical JSON form (keys sorted), so a blob decrypts only under its key
and with exactly the context it was made with — any other context is an
:class:`InvalidCiphertext`, as KMS's ``InvalidCiphertextException``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openssm.errors import OpenSSMError

VERSION: Final = 1
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
KEY_BYTES: Final = 32
MAX_KEY_ID: Final = 128
MAX_BLOB_BYTES: Final = 6144  # KMS's CiphertextBlob limit
MAX_PLAINTEXT_BYTES: Final = 4096  # KMS's Encrypt limit


class InvalidCiphertext(OpenSSMError, ValueError):
    """Not one of our blobs, or it does not decrypt (wrong key, wrong context, altered bytes)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Header:
    key_id: str
    nonce: bytes
    body: bytes  # ciphertext || tag
    prefix: bytes  # the header bytes, part of the associated data


def canonical_context(context: Mapping[str, str]) -> bytes:
    """The encryption context as bytes that do not depend on the order it was given in."""
    return json.dumps(dict(sorted(context.items())), separators=(",", ":"), ensure_ascii=False).encode()


def _prefix(key_id: str) -> bytes:
    encoded = key_id.encode("ascii")
    if not 0 < len(encoded) <= MAX_KEY_ID:
        raise ValueError(f"key id must be 1-{MAX_KEY_ID} ASCII characters")
    return bytes([VERSION, len(encoded)]) + encoded


def seal(
    key_id: str, material: bytes, plaintext: bytes, context: Mapping[str, str], nonce: bytes | None = None
) -> bytes:
    """The blob of ``plaintext`` under ``material`` (32 bytes), bound to ``key_id`` and ``context``."""
    if len(material) != KEY_BYTES:
        raise ValueError(f"key material must be {KEY_BYTES} bytes")
    prefix = _prefix(key_id)
    nonce = os.urandom(NONCE_BYTES) if nonce is None else nonce
    return prefix + nonce + AESGCM(material).encrypt(nonce, plaintext, prefix + canonical_context(context))


def parse(blob: bytes) -> Header:
    """The blob's key id and parts, without decrypting it (to find the key)."""
    if len(blob) > MAX_BLOB_BYTES or len(blob) < 2 or blob[0] != VERSION:
        raise InvalidCiphertext("the ciphertext is not a KMS ciphertext blob of this server")
    length = blob[1]
    end = 2 + length
    if not 0 < length <= MAX_KEY_ID or len(blob) < end + NONCE_BYTES + TAG_BYTES:
        raise InvalidCiphertext("the ciphertext is truncated")
    try:
        key_id = blob[2:end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise InvalidCiphertext("the ciphertext names no key") from exc
    return Header(key_id, blob[end : end + NONCE_BYTES], blob[end + NONCE_BYTES :], blob[:end])


def open_blob(header: Header, material: bytes, context: Mapping[str, str]) -> bytes:
    """The plaintext of a parsed blob; :class:`InvalidCiphertext` unless key and context are its own."""
    try:
        return AESGCM(material).decrypt(header.nonce, header.body, header.prefix + canonical_context(context))
    except InvalidTag as exc:
        raise InvalidCiphertext(
            "the ciphertext does not decrypt with this key and encryption context"
        ) from exc

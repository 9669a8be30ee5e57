"""Secrets at rest: AES-GCM under the server's master key, and SHA-256 hashes of bearer tokens.

SigV4 needs access-key secrets in clear to verify signatures, so they are encrypted (not hashed);
tokens that are only ever compared (activation codes, session tokens, channel tokens) are hashed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import pathlib
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from openssm.errors import OpenSSMError

KEY_BYTES = 32
NONCE_BYTES = 12
MASTER_KEY_FILE = "master.key"
MASTER_KEY_ENV = "OPENSSM_MASTER_KEY"
# Format version byte, so the scheme can change later without guessing.
_FORMAT_V1 = b"\x01"


class SecretCipherError(OpenSSMError):
    """The master key is unusable, or a ciphertext does not decrypt under it."""


def hash_token(token: str) -> str:
    """SHA-256 hex of a bearer token: what the store keeps instead of the token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SecretCipher:
    """AES-256-GCM with a random 96-bit nonce per message: ``version || nonce || ciphertext+tag``."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SecretCipherError(f"master key must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return _FORMAT_V1 + nonce + self._aead.encrypt(nonce, plaintext, _FORMAT_V1)

    def decrypt(self, blob: bytes) -> bytes:
        if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != _FORMAT_V1:
            raise SecretCipherError("not an OpenSSM ciphertext")
        nonce = blob[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + NONCE_BYTES :], _FORMAT_V1)
        except InvalidTag as exc:
            raise SecretCipherError("ciphertext does not decrypt under this master key") from exc

    @classmethod
    def generate(cls) -> SecretCipher:
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def for_data_dir(cls, data_dir: pathlib.Path, environ: dict[str, str] | None = None) -> SecretCipher:
        """The key from ``$OPENSSM_MASTER_KEY`` (base64), else ``<data_dir>/master.key`` (made on first use)."""
        env = os.environ if environ is None else environ
        encoded = env.get(MASTER_KEY_ENV)
        if encoded:
            try:
                return cls(base64.b64decode(encoded, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise SecretCipherError(f"{MASTER_KEY_ENV} is not base64 of {KEY_BYTES} bytes") from exc
        return cls(_load_or_create_key_file(data_dir / MASTER_KEY_FILE))


def _load_or_create_key_file(path: pathlib.Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) != KEY_BYTES:
            raise SecretCipherError(f"{path} must hold exactly {KEY_BYTES} bytes") from None
        return key
    key = secrets.token_bytes(KEY_BYTES)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key

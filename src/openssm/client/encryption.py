"""KMS session encryption, client side (``session-manager-protocol.md`` §2.5).

The client asks KMS for a 64-byte data key bound to the session and target; the agent decrypts the
same key from the ciphertext. Bytes 0-31 protect agent→client traffic, 32-63 client→agent; each
payload is a 12-byte nonce followed by AES-256-GCM ciphertext and tag, without associated data.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any, Final

from openssm.errors import OpenSSMError
from openssm.protocol.frames import PayloadType

DATA_KEY_BYTES: Final = 64
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
# Only these payload types are encrypted; Size, Flag and the handshake never are.
ENCRYPTED_FROM_AGENT: Final = frozenset({PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.EXIT_CODE})
ENCRYPTED_TO_AGENT: Final = frozenset({PayloadType.OUTPUT})


class EncryptionError(OpenSSMError, ValueError):
    """A payload that does not decrypt with the session key."""


@dataclasses.dataclass(frozen=True)
class SessionCipher:
    agent_key: bytes  # decrypts what the agent sends
    client_key: bytes  # encrypts what we send

    @classmethod
    def from_data_key(cls, plaintext: bytes) -> SessionCipher:
        if len(plaintext) != DATA_KEY_BYTES:
            raise EncryptionError(f"KMS data key has {len(plaintext)} bytes, expected {DATA_KEY_BYTES}")
        return cls(agent_key=plaintext[:32], client_key=plaintext[32:])

    def encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # only KMS sessions pay for it

        return nonce + AESGCM(self.client_key).encrypt(nonce, data, None)

    def decrypt(self, data: bytes | memoryview) -> bytes:
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise EncryptionError("encrypted payload is too short")
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self.agent_key).decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], None)
        except InvalidTag as exc:
            raise EncryptionError("payload does not decrypt with the session key") from exc

    def answer_challenge(self, challenge: bytes) -> bytes:
        """Prove we hold the key: decrypt the agent's random bytes, re-encrypt them with ours."""
        return self.encrypt(self.decrypt(challenge))


async def generate_data_key(
    kms: Any, key_id: str, session_id: str, target: str
) -> tuple[bytes, SessionCipher]:
    """``kms:GenerateDataKey`` with the session's encryption context → (CiphertextBlob, cipher)."""
    context = {"aws:ssm:SessionId": session_id, "aws:ssm:TargetId": target}

    def call() -> dict[str, Any]:
        result: dict[str, Any] = kms.generate_data_key(
            KeyId=key_id, NumberOfBytes=DATA_KEY_BYTES, EncryptionContext=context
        )
        return result

    response = await asyncio.to_thread(call)
    return bytes(response["CiphertextBlob"]), SessionCipher.from_data_key(bytes(response["Plaintext"]))

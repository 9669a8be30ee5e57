"""KMS session encryption, client side (``session-manager-protocol.md`` §2.5): the data key from
``kms:GenerateDataKey``; the cipher itself is shared with the agent (:mod:`openssm.protocol.session_cipher`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from openssm.protocol.session_cipher import (
    DATA_KEY_BYTES,
    ENCRYPTED_FROM_AGENT,
    ENCRYPTED_TO_AGENT,
    EncryptionError,
    SessionCipher,
    encryption_context,
)

__all__ = [
    "ENCRYPTED_FROM_AGENT",
    "ENCRYPTED_TO_AGENT",
    "EncryptionError",
    "SessionCipher",
    "generate_data_key",
]


async def generate_data_key(
    kms: Any, key_id: str, session_id: str, target: str
) -> tuple[bytes, SessionCipher]:
    """``kms:GenerateDataKey`` with the session's encryption context → (CiphertextBlob, cipher)."""
    context = encryption_context(session_id, target)

    def call() -> dict[str, Any]:
        result: dict[str, Any] = kms.generate_data_key(
            KeyId=key_id, NumberOfBytes=DATA_KEY_BYTES, EncryptionContext=context
        )
        return result

    response = await asyncio.to_thread(call)
    return bytes(response["CiphertextBlob"]), SessionCipher.from_data_key(bytes(response["Plaintext"]))

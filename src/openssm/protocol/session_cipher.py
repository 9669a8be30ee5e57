"""KMS session encryption between client and agent (``session-manager-protocol.md`` §2.5), both ends.

The client asks KMS for a 64-byte data key bound to the session and target; the agent decrypts the
same key from the ciphertext. Bytes 0-31 protect agent→client traffic, 32-63 client→agent; each
payload is a 12-byte nonce followed by AES-256-GCM ciphertext and tag, without associated data. The
agent proves the key is shared with a challenge: 64 random bytes under its key, which the client
decrypts and re-encrypts under its own.
"""

from __future__ import annotations

import os
from typing import Final

from openssm.errors import OpenSSMError
from openssm.protocol.frames import PayloadType
from openssm.protocol.values import Value

DATA_KEY_BYTES: Final = 64
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
CHALLENGE_BYTES: Final = 64
# Only these payload types are encrypted; Size, Flag and the handshake never are.
ENCRYPTED_FROM_AGENT: Final = frozenset({PayloadType.OUTPUT, PayloadType.STDERR, PayloadType.EXIT_CODE})
ENCRYPTED_TO_AGENT: Final = frozenset({PayloadType.OUTPUT})
CUSTOMER_MESSAGE: Final = "This session is encrypted using AWS KMS."


class EncryptionError(OpenSSMError, ValueError):
    """A payload that does not decrypt with the session key."""


def encryption_context(session_id: str, target: str) -> dict[str, str]:
    """What the data key is bound to: KMS refuses to decrypt it for any other session or target."""
    return {"aws:ssm:SessionId": session_id, "aws:ssm:TargetId": target}


class SessionCipher(Value):
    """One end's keys: ``send_key`` encrypts what it sends, ``receive_key`` decrypts what it gets."""

    __slots__ = ("receive_key", "send_key")
    send_key: bytes
    receive_key: bytes

    def __init__(self, send_key: bytes, receive_key: bytes) -> None:
        object.__setattr__(self, "send_key", send_key)
        object.__setattr__(self, "receive_key", receive_key)

    @classmethod
    def from_data_key(cls, plaintext: bytes, *, agent: bool = False) -> SessionCipher:
        """The client's cipher (or, with ``agent=True``, the agent's) from KMS's 64-byte data key."""
        if len(plaintext) != DATA_KEY_BYTES:
            raise EncryptionError(f"KMS data key has {len(plaintext)} bytes, expected {DATA_KEY_BYTES}")
        agent_key, client_key = plaintext[:32], plaintext[32:]
        return cls(agent_key, client_key) if agent else cls(client_key, agent_key)

    def encrypt(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # only KMS sessions pay for it

        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(self.send_key).encrypt(nonce, data, None)

    def decrypt(self, data: bytes | memoryview) -> bytes:
        if len(data) < NONCE_BYTES + TAG_BYTES:
            raise EncryptionError("encrypted payload is too short")
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self.receive_key).decrypt(
                bytes(data[:NONCE_BYTES]), bytes(data[NONCE_BYTES:]), None
            )
        except InvalidTag as exc:
            raise EncryptionError("payload does not decrypt with the session key") from exc

    def answer_challenge(self, challenge: bytes) -> bytes:
        """Client: prove we hold the key: decrypt the agent's random bytes, re-encrypt them with ours."""
        return self.encrypt(self.decrypt(challenge))

    def challenge(self) -> tuple[bytes, bytes]:
        """Agent: (random bytes, the challenge to send: those bytes under the agent's key)."""
        secret = os.urandom(CHALLENGE_BYTES)
        return secret, self.encrypt(secret)

    def check_answer(self, secret: bytes, answer: bytes) -> bool:
        """Agent: the client's answer holds ``secret`` under the client's key."""
        try:
            return self.decrypt(answer) == secret
        except EncryptionError:
            return False

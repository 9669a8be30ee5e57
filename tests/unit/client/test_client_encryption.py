"""KMS session cipher: key split, nonce-prefixed AES-GCM, challenge answer."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from openssm.client.encryption import EncryptionError, SessionCipher

DATA_KEY = bytes(range(64))


def agent_side(data: bytes) -> bytes:
    """What the agent would send: encrypted with bytes 0-31 of the data key."""
    nonce = os.urandom(12)
    return nonce + AESGCM(DATA_KEY[:32]).encrypt(nonce, data, None)


@given(st.binary(max_size=2048))
def test_decrypts_the_agents_payloads_and_encrypts_for_the_agent(data: bytes) -> None:
    cipher = SessionCipher.from_data_key(DATA_KEY)
    assert cipher.decrypt(agent_side(data)) == data
    sealed = cipher.encrypt(data)
    assert len(sealed) == 12 + len(data) + 16
    assert AESGCM(DATA_KEY[32:]).decrypt(sealed[:12], sealed[12:], None) == data


def test_challenge_is_reencrypted_with_the_client_key() -> None:
    cipher = SessionCipher.from_data_key(DATA_KEY)
    secret = os.urandom(64)
    answer = cipher.answer_challenge(agent_side(secret))
    assert AESGCM(DATA_KEY[32:]).decrypt(answer[:12], answer[12:], None) == secret


@pytest.mark.parametrize("bad", [b"", b"short", b"\x00" * 40])
def test_tampered_or_short_payloads_are_rejected(bad: bytes) -> None:
    with pytest.raises(EncryptionError):
        SessionCipher.from_data_key(DATA_KEY).decrypt(bad)


def test_flipped_bit_is_rejected() -> None:
    sealed = bytearray(agent_side(b"hello"))
    sealed[-1] ^= 1
    with pytest.raises(EncryptionError):
        SessionCipher.from_data_key(DATA_KEY).decrypt(bytes(sealed))


def test_data_key_must_be_64_bytes() -> None:
    with pytest.raises(EncryptionError):
        SessionCipher.from_data_key(b"\x00" * 32)

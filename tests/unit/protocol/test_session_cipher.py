"""The session cipher both ends share: what the agent encrypts only the client decrypts and the reverse,
the challenge proves both hold the same data key, and a different data key fails every check."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from openssm.protocol.session_cipher import EncryptionError, SessionCipher

keys = st.binary(min_size=64, max_size=64)


@given(data_key=keys, other=keys, payload=st.binary(max_size=2048))
def test_each_direction_has_its_own_key(data_key: bytes, other: bytes, payload: bytes) -> None:
    assume(data_key[:32] != data_key[32:])  # KMS's random bytes: the halves differ
    agent = SessionCipher.from_data_key(data_key, agent=True)
    client = SessionCipher.from_data_key(data_key)
    assert client.decrypt(agent.encrypt(payload)) == payload
    assert agent.decrypt(client.encrypt(payload)) == payload
    with pytest.raises(EncryptionError):  # a message cannot be reflected back to its sender
        agent.decrypt(agent.encrypt(payload))
    secret, challenge = agent.challenge()
    assert agent.check_answer(secret, client.answer_challenge(challenge))
    if other[:32] != data_key[:32]:
        stranger = SessionCipher.from_data_key(other)
        with pytest.raises(EncryptionError):
            stranger.answer_challenge(challenge)
    assert not agent.check_answer(secret, agent.encrypt(secret))

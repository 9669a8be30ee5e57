from __future__ import annotations

import base64
import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.store.secrets import SecretCipher, SecretCipherError, hash_token

CIPHER = SecretCipher.generate()


@given(st.binary(max_size=512))
def test_round_trip(plaintext: bytes) -> None:
    assert CIPHER.decrypt(CIPHER.encrypt(plaintext)) == plaintext


def test_nonces_differ_and_tampering_is_detected() -> None:
    first, second = CIPHER.encrypt(b"secret"), CIPHER.encrypt(b"secret")
    assert first != second and b"secret" not in first
    for index in range(len(first)):
        tampered = bytearray(first)
        tampered[index] ^= 0x01
        with pytest.raises(SecretCipherError):
            CIPHER.decrypt(bytes(tampered))
    with pytest.raises(SecretCipherError):
        SecretCipher.generate().decrypt(first)


def test_key_file_is_created_private_and_reused(tmp_path: pathlib.Path) -> None:
    cipher = SecretCipher.for_data_dir(tmp_path / "d", environ={})
    key_file = tmp_path / "d" / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600 and len(key_file.read_bytes()) == 32
    again = SecretCipher.for_data_dir(tmp_path / "d", environ={})
    assert again.decrypt(cipher.encrypt(b"x")) == b"x"


def test_key_from_environment(tmp_path: pathlib.Path) -> None:
    key = base64.b64encode(bytes(range(32))).decode()
    one = SecretCipher.for_data_dir(tmp_path, environ={"OPENSSM_MASTER_KEY": key})
    two = SecretCipher(bytes(range(32)))
    assert two.decrypt(one.encrypt(b"y")) == b"y"
    assert not (tmp_path / "master.key").exists()
    with pytest.raises(SecretCipherError):
        SecretCipher.for_data_dir(tmp_path, environ={"OPENSSM_MASTER_KEY": "not base64!"})
    with pytest.raises(SecretCipherError):
        SecretCipher.for_data_dir(
            tmp_path, environ={"OPENSSM_MASTER_KEY": base64.b64encode(b"short").decode()}
        )


def test_bad_key_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "master.key").write_bytes(b"short")
    with pytest.raises(SecretCipherError):
        SecretCipher.for_data_dir(tmp_path, environ={})


def test_hash_token() -> None:
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

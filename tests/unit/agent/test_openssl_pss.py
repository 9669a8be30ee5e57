"""The agent's RSA-PSS signatures by the system's libcrypto verify with cryptography (the server's
check), from PKCS#1 and PKCS#8 keys read from PEM without cryptography."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from openssm.agent import openssl_pss
from openssm.agent.credentials import pem_der
from openssm.auth import rsa_identity

MESSAGE = b"AWS4-HMAC-SHA256\n20260101T000000Z\n20260101/us-east-1/ssm/aws4_request\n" + b"ab" * 32


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, form: serialization.PrivateFormat) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption())


def require_libcrypto() -> None:
    if openssl_pss.libcrypto() is None:
        pytest.skip("the ssl module's libcrypto (OpenSSL 3) is not loaded as a shared library here")


@pytest.mark.parametrize(
    "form", [serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL]
)
def test_signatures_verify_with_cryptography(
    key: rsa.RSAPrivateKey, form: serialization.PrivateFormat
) -> None:
    require_libcrypto()
    der = pem_der(pem(key, form))
    sign = openssl_pss.signer(der)
    assert sign is not None
    first, second = sign(MESSAGE), sign(MESSAGE)
    assert first != second  # PSS is salted: a fresh salt each time
    public = rsa_identity.load_public_key(rsa_identity.public_key_der(key))
    assert rsa_identity.pss_verify(public, first, MESSAGE)
    assert rsa_identity.pss_verify(public, second, MESSAGE)
    assert not rsa_identity.pss_verify(public, first, MESSAGE + b"x")


def test_keys_it_cannot_use_are_refused() -> None:
    require_libcrypto()
    with pytest.raises(openssl_pss.PssError):
        openssl_pss.signer(b"\x30\x03\x02\x01\x00")  # DER, but no key
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(openssl_pss.PssError, match="not an RSA key"):
        openssl_pss.signer(pem_der(pem(ec_key, serialization.PrivateFormat.PKCS8)))
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(openssl_pss.PssError, match="shorter"):
        openssl_pss.signer(pem_der(pem(short, serialization.PrivateFormat.PKCS8)))


def test_pem_reading_refuses_encrypted_and_foreign_pem(key: rsa.RSAPrivateKey) -> None:
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    legacy = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"secret"),
    )
    for text in (encrypted, legacy, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b""):
        with pytest.raises(ValueError):
            pem_der(text)
    assert pem_der(pem(key, serialization.PrivateFormat.PKCS8)) == key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )

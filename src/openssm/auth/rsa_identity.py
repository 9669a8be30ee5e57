"""RSA keys of managed instances (``mi-…``) and the RSA-PSS signatures their SigV4 variant uses.

The agent registers the DER SubjectPublicKeyInfo of an RSA-2048 key (``PublicKey`` is its base64)
and later signs the ordinary SigV4 string-to-sign with RSASSA-PSS, SHA-256, MGF1-SHA-256, salt 32.
"""

from __future__ import annotations

import functools

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from openssm.errors import OpenSSMError

MIN_KEY_BITS = 2048
MAX_KEY_BITS = 8192  # bounds verification cost for keys a client supplied
PSS_SALT_LENGTH = 32


class RsaKeyError(OpenSSMError, ValueError):
    """Key bytes are not an acceptable RSA key."""


def _pss() -> padding.PSS:
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=PSS_SALT_LENGTH)


def _check_size(bits: int) -> None:
    if not MIN_KEY_BITS <= bits <= MAX_KEY_BITS:
        raise RsaKeyError(f"RSA key size {bits} is outside {MIN_KEY_BITS}..{MAX_KEY_BITS} bits")


@functools.lru_cache(maxsize=1024)
def load_public_key(der: bytes) -> rsa.RSAPublicKey:
    """Parse a DER SubjectPublicKeyInfo (cached: public keys are not secret, parsing is costly)."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise RsaKeyError("public key is not a DER SubjectPublicKeyInfo") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise RsaKeyError("public key is not an RSA key")
    _check_size(key.key_size)
    return key


@functools.lru_cache(maxsize=8)
def load_private_key(der: bytes) -> rsa.RSAPrivateKey:
    """Parse a DER RSA private key, PKCS#1 (what the agent stores) or PKCS#8. Cached: loading checks
    the key (~170 ms of CPU for RSA-2048) and a node signs with the same key at every credential
    refresh; its caller holds the same key bytes anyway."""
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise RsaKeyError("private key is not an unencrypted DER RSA key") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise RsaKeyError("private key is not an RSA key")
    _check_size(key.key_size)
    return key


def pss_sign(private_key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    return private_key.sign(message, _pss(), hashes.SHA256())


def pss_verify(public_key: rsa.RSAPublicKey, signature: bytes, message: bytes) -> bool:
    if len(signature) != (public_key.key_size + 7) // 8:
        return False
    try:
        public_key.verify(signature, message, _pss(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def generate_key_pair(bits: int = MIN_KEY_BITS) -> tuple[bytes, bytes]:
    """A new registration key: ``(private PKCS#1 DER, public SubjectPublicKeyInfo DER)``."""
    _check_size(bits)
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_der = private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return private_der, public_key_der(private_key)


def public_key_der(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )

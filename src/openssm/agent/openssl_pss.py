"""The agent's RSASSA-PSS signature (SHA-256, MGF1-SHA-256, salt 32) by the OpenSSL that Python's
``ssl`` module already loaded, so that an idle agent never imports ``cryptography``.

An activated node signs RequestManagedInstanceRoleToken with its registration key about once an
hour. ``cryptography`` is about 10 MB of an idle agent's resident memory (its Rust extension
carries a whole OpenSSL of its own), a third of the agent's target (``bench/bench_agent_memory.py``),
while the process already holds the system's libcrypto for TLS. This calls that libcrypto's EVP
interface (OpenSSL 3: ``EVP_DigestSign`` with the key's PSS parameters set on its context) through
ctypes: OpenSSL's own constant-time RSA, no cryptography code of ours.

:func:`signer` returns None where that libcrypto cannot be found or is older than OpenSSL 3
(an ``ssl`` module linked statically, another platform): the caller then signs with
``cryptography`` (:mod:`openssm.auth.rsa_identity`), as before.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from collections.abc import Callable
from typing import Final

from openssm.errors import OpenSSMError

RSA_PKCS1_PSS_PADDING: Final = 6
EVP_PKEY_RSA: Final = 6
PSS_SALT_LENGTH: Final = 32
MIN_KEY_BITS: Final = 2048
OPENSSL_3: Final = 0x30000000

_lib: ctypes.CDLL | None = None
_searched = False


class PssError(OpenSSMError):
    """The key cannot be used, or OpenSSL refused to sign."""


def _find_libcrypto() -> ctypes.CDLL | None:
    """The libcrypto the ``ssl`` module is linked with, found among this process's mappings."""
    import _ssl  # noqa: F401  # loads libcrypto (a no-op: asyncio has imported it)

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if line.rstrip().endswith(".so.3")}
    except OSError:
        return None
    for path in sorted(paths):
        if os.path.basename(path).startswith("libcrypto.so"):
            try:
                lib = ctypes.CDLL(path)
                lib.OpenSSL_version_num.restype = ctypes.c_ulong
                if lib.OpenSSL_version_num() < OPENSSL_3:
                    return None
                _declare(lib)
            except (OSError, AttributeError):
                return None
            return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    p, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    signatures: dict[str, tuple[list[object], object]] = {
        "d2i_AutoPrivateKey": ([p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_long], p),
        "EVP_PKEY_free": ([p], None),
        "EVP_PKEY_get_base_id": ([p], i),
        "EVP_PKEY_get_bits": ([p], i),
        "EVP_sha256": ([], p),
        "EVP_MD_CTX_new": ([], p),
        "EVP_MD_CTX_free": ([p], None),
        "EVP_DigestSignInit": ([p, ctypes.POINTER(p), p, p, p], i),
        "EVP_PKEY_CTX_set_rsa_padding": ([p, i], i),
        "EVP_PKEY_CTX_set_rsa_pss_saltlen": ([p, i], i),
        "EVP_PKEY_CTX_set_rsa_mgf1_md": ([p, p], i),
        "EVP_DigestSign": ([p, ctypes.c_char_p, ctypes.POINTER(sz), ctypes.c_char_p, sz], i),
    }
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = restype


def libcrypto() -> ctypes.CDLL | None:
    global _lib, _searched
    if not _searched:
        _searched = True
        _lib = _find_libcrypto()
    return _lib


class _Key:
    """An ``EVP_PKEY`` made from DER (PKCS#1 or PKCS#8), freed with this object."""

    def __init__(self, lib: ctypes.CDLL, der: bytes) -> None:
        data = ctypes.c_char_p(der)
        handle = lib.d2i_AutoPrivateKey(None, ctypes.byref(data), len(der))
        if not handle:
            raise PssError("the private key is not an unencrypted DER RSA key")
        self.handle: int = handle
        weakref.finalize(self, lib.EVP_PKEY_free, handle)
        if lib.EVP_PKEY_get_base_id(handle) != EVP_PKEY_RSA:
            raise PssError("the private key is not an RSA key")
        if lib.EVP_PKEY_get_bits(handle) < MIN_KEY_BITS:
            raise PssError(f"the RSA key is shorter than {MIN_KEY_BITS} bits")


def _sign(lib: ctypes.CDLL, key: _Key, message: bytes) -> bytes:
    context = lib.EVP_MD_CTX_new()
    if not context:
        raise PssError("EVP_MD_CTX_new failed")
    try:
        key_context = ctypes.c_void_p()
        sha256 = lib.EVP_sha256()
        if (
            lib.EVP_DigestSignInit(context, ctypes.byref(key_context), sha256, None, key.handle) != 1
            or lib.EVP_PKEY_CTX_set_rsa_padding(key_context, RSA_PKCS1_PSS_PADDING) <= 0
            or lib.EVP_PKEY_CTX_set_rsa_pss_saltlen(key_context, PSS_SALT_LENGTH) <= 0
            or lib.EVP_PKEY_CTX_set_rsa_mgf1_md(key_context, sha256) <= 0
        ):
            raise PssError("OpenSSL refused the RSA-PSS parameters")
        size = ctypes.c_size_t(0)
        if lib.EVP_DigestSign(context, None, ctypes.byref(size), message, len(message)) != 1:
            raise PssError("OpenSSL could not size the signature")
        signature = ctypes.create_string_buffer(size.value)
        if lib.EVP_DigestSign(context, signature, ctypes.byref(size), message, len(message)) != 1:
            raise PssError("OpenSSL could not sign")
        return signature.raw[: size.value]
    finally:
        lib.EVP_MD_CTX_free(context)


def signer(private_key_der: bytes) -> Callable[[bytes], bytes] | None:
    """``sign(message) -> signature`` with the key, or None where the system's libcrypto is not at
    hand (sign with ``cryptography`` then). Raises :class:`PssError` for an unusable key."""
    lib = libcrypto()
    if lib is None:
        return None
    key = _Key(lib, private_key_der)

    def sign(message: bytes) -> bytes:
        return _sign(lib, key, message)

    return sign

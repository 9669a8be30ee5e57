"""Console sign-in secrets: scrypt password hashes and TOTP codes (RFC 6238, RFC 4226).

Pure standard library, shared by the IAM login-profile/MFA API and the browser console.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from typing import Final

# scrypt cost: ~16 MiB and tens of milliseconds per check, enough to make offline guessing slow.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_BYTES: Final = 16
HASH_BYTES: Final = 32
MAX_PASSWORD_CHARS: Final = 128  # IAM's limit; also bounds the work an attacker can ask for

TOTP_STEP_SECONDS: Final = 30
TOTP_DIGITS: Final = 6
TOTP_SEED_BYTES: Final = 20  # 160-bit seed, as authenticator apps expect for SHA-1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$<salt b64>$<hash b64>``: self-describing, so the cost can change later."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    encoded_salt = base64.b64encode(salt).decode()
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encoded_salt}${base64.b64encode(digest).decode()}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=128 * r * n * p * 2, dklen=HASH_BYTES
    )


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a :func:`hash_password` string."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return False
    if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16):  # a stored hash cannot ask for unbounded work
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def new_totp_seed() -> bytes:
    return secrets.token_bytes(TOTP_SEED_BYTES)


def base32_seed(seed: bytes) -> str:
    """The seed as authenticator apps take it (RFC 4648 base32, no padding)."""
    return base64.b32encode(seed).decode().rstrip("=")


def hotp(seed: bytes, counter: int, digits: int = TOTP_DIGITS) -> str:
    """RFC 4226: HMAC-SHA-1 of the big-endian counter, dynamically truncated."""
    mac = hmac.new(seed, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**digits).zfill(digits)


def totp(seed: bytes, unix_time: float, step: int = TOTP_STEP_SECONDS) -> str:
    """RFC 6238 with SHA-1, 30-second steps, 6 digits (what IAM virtual MFA devices use)."""
    return hotp(seed, int(unix_time // step))


def totp_step(seed: bytes, code: str, unix_time: float, *, window: int = 1) -> int | None:
    """The time step ``code`` is valid for (current ± ``window`` steps for clock drift), else None.

    Callers remember the last accepted step per device so one code cannot be used twice.
    """
    code = code.strip()
    if len(code) != TOTP_DIGITS or not (code.isascii() and code.isdigit()):  # not "١٢٣٤٥٦"
        return None
    current = int(unix_time // TOTP_STEP_SECONDS)
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(hotp(seed, step), code):
            return step
    return None

"""AWS-format identifiers and random secrets (ids follow AWS shapes so clients' validators accept them)."""

from __future__ import annotations

import base64
import secrets
import uuid

_KEY_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def unique_id(prefix: str) -> str:
    """IAM unique ids: ``AIDA``/``AROA``/``AGPA``/``ANPA`` + 17 upper-case base32 characters."""
    return prefix + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(17))


def access_key_id(temporary: bool) -> str:
    """``AKIA…`` (long-term) or ``ASIA…`` (temporary), 20 characters like AWS's."""
    return ("ASIA" if temporary else "AKIA") + "".join(secrets.choice(_KEY_ID_ALPHABET) for _ in range(16))


def secret_access_key() -> str:
    """40 characters of base64, the shape of AWS secret keys."""
    return base64.b64encode(secrets.token_bytes(30)).decode("ascii")


def session_token() -> str:
    return base64.b64encode(secrets.token_bytes(96)).decode("ascii")


def bearer_token() -> str:
    """A random 256-bit url-safe token (channel tokens)."""
    return secrets.token_urlsafe(32)


def hex17() -> str:
    return secrets.token_hex(9)[:17]


def managed_instance_id() -> str:
    return "mi-" + hex17()


def activation_id() -> str:
    return str(uuid.uuid4())


def activation_code() -> str:
    """20 characters (AWS's minimum length) from an unambiguous alphabet; ~119 bits."""
    return "".join(secrets.choice(_KEY_ID_ALPHABET + "abcdefghijkmnopqrstuvwxyz") for _ in range(20))

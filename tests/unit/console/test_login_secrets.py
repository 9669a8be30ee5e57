"""Password hashes and TOTP codes used for console sign-in (RFC 4226 / RFC 6238 vectors)."""

from __future__ import annotations

import base64

import pytest

from openssm.security.login_secrets import (
    base32_seed,
    hash_password,
    hotp,
    new_totp_seed,
    totp,
    totp_step,
    verify_password,
)

RFC_SEED = b"12345678901234567890"


@pytest.mark.parametrize(
    ("counter", "code"),
    [(0, "755224"), (1, "287082"), (2, "359152"), (3, "969429"), (9, "520489")],
)
def test_hotp_matches_rfc4226_appendix_d(counter: int, code: str) -> None:
    assert hotp(RFC_SEED, counter) == code


@pytest.mark.parametrize(
    ("unix_time", "code8"),
    [(59, "94287082"), (1111111109, "07081804"), (1234567890, "89005924"), (2000000000, "69279037")],
)
def test_totp_matches_rfc6238_sha1_vectors(unix_time: int, code8: str) -> None:
    assert hotp(RFC_SEED, unix_time // 30, digits=8) == code8
    assert totp(RFC_SEED, unix_time) == code8[-6:]


def test_totp_step_accepts_one_step_of_drift_only() -> None:
    now = 1_700_000_000.0
    current = int(now // 30)
    assert totp_step(RFC_SEED, totp(RFC_SEED, now), now) == current
    assert totp_step(RFC_SEED, totp(RFC_SEED, now - 30), now) == current - 1
    assert totp_step(RFC_SEED, totp(RFC_SEED, now + 30), now) == current + 1
    assert totp_step(RFC_SEED, totp(RFC_SEED, now - 90), now) is None
    assert totp_step(RFC_SEED, "12345", now) is None
    assert totp_step(RFC_SEED, "abcdef", now) is None


def test_base32_seed_round_trips() -> None:
    seed = new_totp_seed()
    text = base32_seed(seed)
    assert "=" not in text
    assert base64.b32decode(text + "=" * (-len(text) % 8)) == seed


def test_password_hash_verifies_and_is_salted() -> None:
    first = hash_password("correct horse battery")
    second = hash_password("correct horse battery")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("correct horse battery", first)
    assert not verify_password("correct horse batterz", first)
    assert not verify_password("x" * 500, first)


@pytest.mark.parametrize(
    "stored",
    ["", "md5$abc", "scrypt$1$8$1$AAAA$AAAA", "scrypt$16384$8$1$!!$AAAA", "scrypt$4194304$8$1$AAAA$AAAA"],
)
def test_malformed_or_costly_stored_hashes_are_refused(stored: str) -> None:
    assert not verify_password("anything", stored)

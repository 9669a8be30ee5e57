"""Checking a TOTP code from a user's MFA device: right for now (give or take one 30 s step for
clock drift), and never accepted twice. Shared by console sign-in and STS GetSessionToken; the
replay guard is in the store (``mfa_steps``), so it holds across server nodes and restarts."""

from __future__ import annotations

import datetime as dt

from openssm.security.login_secrets import totp_step
from openssm.store.iam import mfa_steps
from openssm.store.rows import Db
from openssm.store.secrets import SecretCipher, SecretCipherError


async def accept_code(
    db: Db, cipher: SecretCipher, user_name: str, seed_encrypted: bytes, code: str, now: dt.datetime
) -> bool:
    """True if ``code`` is the device's code for now and no code of this step or later was used."""
    try:
        seed = cipher.decrypt(seed_encrypted)
    except SecretCipherError:
        return False
    step = totp_step(seed, code, now.timestamp())
    return step is not None and await mfa_steps.accept(db, user_name, step)

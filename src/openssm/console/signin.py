"""Checking a console sign-in: access key id + secret, then the user's password and TOTP code when
the user has them. (Sign-in through an identity provider is :mod:`openssm.console.oidc_signin`.)"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hmac

from openssm.errors import OpenSSMError
from openssm.security.login_secrets import verify_password
from openssm.security.mfa import accept_code
from openssm.services import Services
from openssm.store import access_keys
from openssm.store.iam import users
from openssm.store.secrets import SecretCipherError

MAX_FIELD_CHARS = 256
BAD_CREDENTIALS = "The access key ID, secret access key, password or MFA code is not correct."


class SignInError(OpenSSMError):
    """A refused sign-in. ``needs`` names the factor the form must ask for next (password, mfa)."""

    def __init__(self, message: str, *, needs: str | None = None, counts_as_failure: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.needs = needs
        self.counts_as_failure = counts_as_failure


@dataclasses.dataclass(frozen=True, slots=True)
class SignInForm:
    access_key_id: str
    secret_access_key: str
    password: str | None = None
    mfa_code: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class SignedIn:
    user_name: str
    mfa_authenticated_at: dt.datetime | None  # when the TOTP code was checked, if one was asked for


async def verify_sign_in(services: Services, form: SignInForm) -> SignedIn:
    """Who is signing in (and whether with MFA), or :class:`SignInError`. A TOTP code is good once
    (the replay guard is in the store, shared by every server node)."""
    for value in (form.access_key_id, form.secret_access_key, form.password or "", form.mfa_code or ""):
        if len(value) > MAX_FIELD_CHARS:
            raise SignInError(BAD_CREDENTIALS)
    key = await access_keys.find(services.engine, form.access_key_id.strip())
    if key is None or key.status != "Active" or key.temporary or key.principal_type != "user":
        raise SignInError(BAD_CREDENTIALS)
    try:
        secret = services.cipher.decrypt(key.secret_encrypted).decode("utf-8")
    except (SecretCipherError, UnicodeDecodeError) as exc:
        raise SignInError(BAD_CREDENTIALS) from exc
    if not hmac.compare_digest(secret.encode(), form.secret_access_key.strip().encode()):
        raise SignInError(BAD_CREDENTIALS)
    user = await users.login_secrets(services.engine, key.principal_name)
    if user is None:
        raise SignInError(BAD_CREDENTIALS)
    if user.password_hash:
        if not form.password:
            raise SignInError(
                "This user signs in with a password too.", needs="password", counts_as_failure=False
            )
        # scrypt is deliberately slow: keep it off the event loop.
        if not await asyncio.to_thread(verify_password, form.password, user.password_hash):
            raise SignInError(BAD_CREDENTIALS)
    if not user.mfa_secret_encrypted:
        return SignedIn(user.name, None)
    if not form.mfa_code:
        raise SignInError("Enter the code from your MFA device.", needs="mfa", counts_as_failure=False)
    now = services.clock.now()
    if not await accept_code(
        services.engine, services.cipher, user.name, user.mfa_secret_encrypted, form.mfa_code, now
    ):
        raise SignInError(BAD_CREDENTIALS, needs="mfa")
    return SignedIn(user.name, now)

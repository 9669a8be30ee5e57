"""Checking a console sign-in: access key id + secret, then the user's password and TOTP code when
the user has them."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac

from openssm.errors import OpenSSMError
from openssm.security.login_secrets import totp_step, verify_password
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


class MfaReplayGuard:
    """Remembers the last accepted TOTP step per user so a code cannot be used twice (per node)."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def accept(self, user_name: str, step: int) -> bool:
        if self._last.get(user_name, -1) >= step:
            return False
        self._last[user_name] = step
        return True


async def verify_sign_in(services: Services, form: SignInForm, guard: MfaReplayGuard) -> str:
    """Return the IAM user name signing in, or raise :class:`SignInError`."""
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
    if user.mfa_secret_encrypted:
        if not form.mfa_code:
            raise SignInError("Enter the code from your MFA device.", needs="mfa", counts_as_failure=False)
        try:
            seed = services.cipher.decrypt(user.mfa_secret_encrypted)
        except SecretCipherError as exc:
            raise SignInError(BAD_CREDENTIALS) from exc
        step = totp_step(seed, form.mfa_code, services.clock.now().timestamp())
        if step is None or not guard.accept(user.name, step):
            raise SignInError(BAD_CREDENTIALS, needs="mfa")
    return user.name

"""Temporary credentials for a registered node: RSA-signed RequestManagedInstanceRoleToken (§5.3).
(A node that joined with IAM credentials signs with the AWS credential chain instead:
``openssm.agent.chain_credentials``.)"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime
import logging
import pathlib
import re
from collections.abc import Callable
from typing import Any, Final

from openssm.agent import openssl_pss
from openssm.agent.cancellation import reraise_if_cancelled
from openssm.agent.config import AgentSettings, Registration, save_registration
from openssm.agent.registration import generate_private_key, private_key_pem, public_key_base64
from openssm.agent.signing import CredentialsError, host_header
from openssm.agent.ssm_api import USER_AGENT, SsmApiError, api_url, json_request_headers, post_json
from openssm.auth import sigv4
from openssm.auth.credentials_file import Credentials
from openssm.clock import SYSTEM_CLOCK, Clock
from openssm.protocol.frames import go_json
from openssm.transport.http_exchange import HttpClient

log = logging.getLogger(__name__)

# current() fetches new credentials itself when these are this close to expiry (or expired):
# the background refresh, at a fraction of the lifetime, normally comes first.
EXPIRY_MARGIN_FRACTION: Final = 0.05
RETRY_INITIAL_SECONDS: Final = 2.0
RETRY_MAX_SECONDS: Final = 60.0


PssSigner = Callable[[bytes], bytes]


def pem_der(pem: bytes) -> bytes:
    """The DER inside an unencrypted PEM private key (``PRIVATE KEY``: PKCS#8, or ``RSA PRIVATE
    KEY``: PKCS#1), read without ``cryptography``; ValueError for anything else."""
    text = pem.decode("ascii", "replace")
    begin = re.search(r"-----BEGIN ((?:RSA )?PRIVATE KEY)-----", text)
    if begin is None:
        raise ValueError("not an unencrypted PEM private key")
    end = text.find(f"-----END {begin.group(1)}-----", begin.end())
    body = text[begin.end() : end]
    if end < 0 or ":" in body:  # RFC 1421 headers (Proc-Type: 4,ENCRYPTED...)
        raise ValueError("not an unencrypted PEM private key")
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except binascii.Error as exc:
        raise ValueError("the PEM body is not base64") from exc


def _load_key(pem: bytes) -> tuple[bytes, PssSigner | None]:
    """The key's DER and, where the system's libcrypto serves, its OpenSSL signer (None: sign with
    ``cryptography``, which then checks the key here)."""
    try:
        der = pem_der(pem)
        sign = openssl_pss.signer(der)
        if sign is None:
            from openssm.auth import rsa_identity  # cryptography: only without the system's libcrypto

            rsa_identity.load_private_key(der)
    except (ValueError, openssl_pss.PssError) as exc:  # RsaKeyError is a ValueError
        raise CredentialsError("the registration private key cannot be read; register again") from exc
    return der, sign


def _expiration(value: Any) -> datetime.datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.datetime.fromtimestamp(float(value), datetime.UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    raise CredentialsError(f"TokenExpirationDate is not a time: {value!r}")


def rsa_signed_headers(
    url: str,
    operation: str,
    body: bytes,
    instance_id: str,
    private_key_der: bytes,
    region: str,
    pss_sign: PssSigner | None = None,
) -> dict[str, str]:
    """The headers of an identity call (RequestManagedInstanceRoleToken…) signed with the
    registration key, as the real agent signs them (by ``pss_sign`` when given)."""
    headers = {"Host": host_header(url), **json_request_headers(operation)}
    headers.update(
        sigv4.sign_rsa(
            "POST",
            url,
            headers,
            body,
            instance_id=instance_id,
            private_key_der=private_key_der,
            region=region,
            service="ssm",
            signed_header_names=["content-type", "host", "x-amz-date", "x-amz-target"],
            pss_sign=pss_sign,
        )
    )
    headers["User-Agent"] = USER_AGENT
    return headers


class RoleCredentials:
    """Fetches, caches and refreshes the node's role credentials."""

    def __init__(
        self,
        http: HttpClient,
        registration: Registration,
        private_key_pem: bytes,
        settings: AgentSettings,
        *,
        state_dir: pathlib.Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.http = http
        self.clock = clock  # when to refresh, by the one clock (tests: a ManualClock, then wake())
        self._wake = asyncio.Event()
        self.registration = registration
        self.state_dir = state_dir  # where a rotated key is saved; None: never rotate
        self.endpoint = registration.endpoint  # the agent points this elsewhere when it fails over
        self._key_der, self._pss_sign = _load_key(private_key_pem)
        self.settings = settings
        self._credentials: Credentials | None = None
        self._refresh_at: datetime.datetime | None = None
        self._stale_at: datetime.datetime | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def current(self) -> Credentials:
        credentials = self._credentials
        if credentials is not None and not self._stale():
            return credentials
        async with self._lock:
            credentials = self._credentials
            if credentials is None or self._stale():
                credentials = await self.refresh()
            return credentials

    def _stale(self) -> bool:
        return self._stale_at is not None and self.clock.now() >= self._stale_at

    async def _rsa_call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """A call signed with the registration key, as the real agent signs its identity calls."""
        url = api_url(self.endpoint)
        body = go_json(request)
        headers = rsa_signed_headers(
            url,
            operation,
            body,
            self.registration.instance_id,
            self._key_der,
            self.registration.region,
            self._pss_sign,
        )
        return await post_json(self.http, url, headers, body)

    async def rotate_key(self) -> None:
        """UpdateManagedInstancePublicKey (signed with the old key), then keep the new key."""
        if self.state_dir is None:
            return
        key = generate_private_key()
        await self._rsa_call(
            "UpdateManagedInstancePublicKey",
            {"NewPublicKey": public_key_base64(key), "NewPublicKeyType": "Rsa"},
        )
        pem = private_key_pem(key)
        save_registration(self.state_dir, self.registration, pem)
        self._key_der, self._pss_sign = _load_key(pem)
        log.info("registration key rotated")

    async def refresh(self) -> Credentials:
        answer = await self._rsa_call(
            "RequestManagedInstanceRoleToken", {"Fingerprint": self.registration.fingerprint}
        )
        try:
            credentials = Credentials(
                access_key_id=str(answer["AccessKeyId"]),
                secret_access_key=str(answer["SecretAccessKey"]),
                session_token=str(answer["SessionToken"]),
                expiration=_expiration(answer.get("TokenExpirationDate")),
            )
        except KeyError as exc:
            raise CredentialsError(f"RequestManagedInstanceRoleToken answer lacks {exc.args[0]}") from exc
        if answer.get("UpdateKeyPair") is True:
            try:
                await self.rotate_key()
            except (SsmApiError, OSError, TimeoutError) as exc:
                reraise_if_cancelled()
                log.warning("the service asked for a new key pair; rotation failed: %s", exc)
        issued = self.clock.now()
        self._credentials = credentials
        self.fetches += 1
        if credentials.expiration is not None:
            lifetime = max(0.0, (credentials.expiration - issued).total_seconds())
            fraction = min(self.settings.credentials_refresh_fraction, 1 - EXPIRY_MARGIN_FRACTION)
            self._refresh_at = issued + datetime.timedelta(seconds=lifetime * fraction)
            self._stale_at = credentials.expiration - datetime.timedelta(
                seconds=lifetime * EXPIRY_MARGIN_FRACTION
            )
        log.info("role credentials obtained (expire %s)", credentials.expiration)
        return credentials

    def seconds_until_refresh(self) -> float:
        """0 when there are no credentials yet; forever-ish for credentials that never expire."""
        if self._credentials is None:
            return 0.0
        if self._refresh_at is None:
            return float(RETRY_MAX_SECONDS)
        return max(0.0, (self._refresh_at - self.clock.now()).total_seconds())

    def wake(self) -> None:
        """The refresh loop looks at the clock again now (it moved: a ManualClock, a resume)."""
        self._wake.set()

    async def run_refresh_loop(self) -> None:
        """Refresh at the configured fraction of each credential lifetime; retry with backoff."""
        delay = RETRY_INITIAL_SECONDS
        while True:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), self.seconds_until_refresh())
            except TimeoutError:
                pass
            try:
                async with self._lock:  # current() may have refreshed meanwhile
                    if self.seconds_until_refresh() <= 0:
                        await self.refresh()
                delay = RETRY_INITIAL_SECONDS
            except (SsmApiError, CredentialsError, OSError, TimeoutError) as exc:
                reraise_if_cancelled()
                log.warning("refreshing role credentials failed: %s (retry in %.0f s)", exc, delay)
                await asyncio.sleep(delay)
                delay = min(RETRY_MAX_SECONDS, delay * 2)

"""Authentication: SigV4 (HMAC with stored keys) and the RSA-signed variant managed instances use."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import hmac
import logging

from openssm.auth.sigv4 import (
    HttpRequest,
    ParsedSignature,
    SigV4Error,
    parse_request,
    verify_hmac,
    verify_rsa,
)
from openssm.bus.failures import FailureLogUnavailable
from openssm.iam.principal import Principal
from openssm.security.errors import AuthError
from openssm.security.principals import role_session_principal, user_principal
from openssm.services import Services
from openssm.store import access_keys, instances
from openssm.store.authz_generation import Credential
from openssm.store.iam import roles
from openssm.store.instances import InstanceRow
from openssm.store.rows import queued_write
from openssm.store.secrets import SecretCipherError, hash_token

log = logging.getLogger(__name__)

# Services whose errors are rendered in the Query (XML) protocol use IAM's spellings of the codes.
QUERY_SERVICES = frozenset({"iam", "sts"})
# Global services are signed for us-east-1 whatever region the server serves.
GLOBAL_SERVICES = frozenset({"iam", "sts"})
# "Last used" is kept to the minute: agents call every few seconds, and each stamp is a database write.
# Only long-term keys are stamped: AWS tracks last use for IAM users' access keys
# (GetAccessKeyLastUsed), not for temporary credentials, and a fleet's role credentials stamped on
# every heartbeat were a write per agent every 5 minutes (the largest single piece of an idle
# 10,000-agent server's work); their use is in the audit log like every other call.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
# The replay guard of RSA-signed requests (bus namespace), and how long it remembers a signature
# when the server checks no clock skew (then a request's date never stops it).
RSA_SIGNATURES = "rsa-signature"
REPLAY_MEMORY_WITHOUT_SKEW = 24 * 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    principal: Principal
    access_key_id: str
    temporary: bool
    region: str
    service: str
    # Temporary credentials: when they were issued (aws:TokenIssueTime), when an MFA code was checked
    # for them (aws:MultiFactorAuthPresent / aws:MultiFactorAuthAge), and the OIDC provider of a web
    # identity session (aws:FederatedProvider).
    token_issued_at: dt.datetime | None = None
    mfa_authenticated_at: dt.datetime | None = None
    federated_provider: str | None = None


def _invalid_token(service: str) -> AuthError:
    if service in QUERY_SERVICES:
        return AuthError(
            "InvalidClientTokenId", "The security token included in the request is invalid.", 403
        )
    return AuthError("UnrecognizedClientException", "The security token included in the request is invalid.")


def _expired_token(service: str) -> AuthError:
    code = "ExpiredToken" if service in QUERY_SERVICES else "ExpiredTokenException"
    return AuthError(
        code,
        "The security token included in the request is expired",
        403 if service in QUERY_SERVICES else 400,
    )


def _max_skew(services: Services) -> dt.timedelta | None:
    seconds = services.config.clock_skew_seconds
    return dt.timedelta(seconds=seconds) if seconds > 0 else None


def _service_of(req: HttpRequest) -> str:
    """The signing name from the credential scope, read leniently (only to pick an error spelling)."""
    for name, value in req.headers:
        if name.lower() == "authorization" and "Credential=" in value:
            scope = value.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            return scope[3] if len(scope) > 3 else ""
    return ""


def _from_sigv4(exc: SigV4Error, service: str) -> AuthError:
    if exc.diagnostics:
        log.debug("SigV4 verification failed: %s\n%s", exc.message, exc.diagnostics)
    if service in QUERY_SERVICES:
        return AuthError(exc.query_code, exc.message, exc.query_status)
    return AuthError(exc.code, exc.message, exc.status)


def _parse(req: HttpRequest) -> ParsedSignature:
    try:
        return parse_request(req)
    except SigV4Error as exc:
        raise _from_sigv4(exc, _service_of(req)) from exc


def _check_region(services: Services, parsed: ParsedSignature) -> None:
    if parsed.service in GLOBAL_SERVICES or parsed.region == services.config.region:
        return
    raise AuthError(
        "InvalidSignatureException",
        f"Credential should be scoped to a valid region, not '{parsed.region}'. "
        f"This server serves '{services.config.region}'.",
    )


def _anonymous(services: Services) -> Identity:
    account = services.config.account_id
    principal = Principal(
        arn="anonymous", account=account, type="Account", user_id="anonymous", username=None
    )
    return Identity(principal, "", False, services.config.region, "")


def has_signature(req: HttpRequest) -> bool:
    """Whether the request carries a SigV4 signature (header or presigned query)."""
    names = {name.lower() for name, _ in req.headers}
    return "authorization" in names or "X-Amz-Signature=" in req.query


async def authenticate(
    services: Services, req: HttpRequest, *, peer_ip: str, anonymous_ok: bool = False
) -> Identity:
    """Verify a SigV4 (HMAC) request against the stored key and return who sent it.

    ``anonymous_ok``: an unsigned request yields an anonymous identity instead of an error.
    """
    if anonymous_ok and not has_signature(req):
        return _anonymous(services)
    parsed = _parse(req)
    _check_region(services, parsed)
    now = services.clock.now()
    credential = await _credential(services, parsed)
    key = credential.key
    if key.status != "Active":
        log.debug("refused key %s from %s: inactive", parsed.access_key_id, peer_ip)
        raise _invalid_token(parsed.service)
    if key.temporary:
        presented = parsed.security_token
        if (
            presented is None
            or key.session_token_hash is None
            or not hmac.compare_digest(hash_token(presented), key.session_token_hash)
        ):
            raise _invalid_token(parsed.service)
        if key.expires_at is not None and key.expires_at <= now:
            raise _expired_token(parsed.service)
        if parsed.service == "iam" and key.principal_type == "user" and key.mfa_authenticated_at is None:
            # AWS: GetSessionToken credentials call no IAM API unless they were issued with MFA.
            log.info("refused IAM call with session credentials %s issued without MFA", key.access_key_id)
            raise _invalid_token(parsed.service)
    elif parsed.security_token is not None:
        raise _invalid_token(parsed.service)
    try:
        verify_hmac(req, parsed, credential.secret, max_skew=_max_skew(services), now=now)
    except SigV4Error as exc:
        raise _from_sigv4(exc, parsed.service) from exc
    principal = credential.principal
    if principal is None:
        raise _invalid_token(parsed.service)
    last_used = credential.last_used_at
    if not key.temporary and (last_used is None or now - last_used > LAST_USED_RESOLUTION):
        # Group-committed: a new fleet's credentials are all used for the first time at once.
        await queued_write(
            services.engine, lambda conn: access_keys.touch(conn, key.access_key_id, parsed.service, now)
        )
        credential.last_used_at = now
    return identity_for_key(key, principal, parsed.region, parsed.service)


async def _credential(services: Services, parsed: ParsedSignature) -> Credential:
    """The key the request names, its secret and its owner: from this node's cache while the
    authorisation generation holds (a key's status or deletion, its owner's, bump it), else read."""
    caches = services.authz
    generation = await services.authz_generation()
    credential = caches.credentials.get(parsed.access_key_id, generation)
    if credential is not None:
        return credential
    key = await access_keys.find(services.engine, parsed.access_key_id)
    if key is None:
        log.debug("refused key %s: unknown", parsed.access_key_id)
        raise _invalid_token(parsed.service)
    try:
        secret = services.cipher.decrypt(key.secret_encrypted).decode("utf-8")
    except (SecretCipherError, UnicodeDecodeError) as exc:
        log.error("access key %s does not decrypt under the master key", key.access_key_id)
        raise _invalid_token(parsed.service) from exc
    principal = await principal_for_key(services, key)
    credential = Credential(key, secret, principal, key.last_used_at)
    caches.credentials.put(key.access_key_id, generation, credential)
    return credential


def identity_for_key(
    key: access_keys.AccessKeyRow, principal: Principal, region: str, service: str
) -> Identity:
    return Identity(
        principal,
        key.access_key_id,
        key.temporary,
        region,
        service,
        token_issued_at=key.created_at if key.temporary else None,
        mfa_authenticated_at=key.mfa_authenticated_at,
        federated_provider=key.federated_provider,
    )


async def principal_for_key(services: Services, key: access_keys.AccessKeyRow) -> Principal | None:
    """Who the key belongs to now: None if that user, role or managed node is gone."""
    account = services.config.account_id
    if key.principal_type == "managed-instance":
        if key.role_name is None:
            return None
        instance = await instances.get(services.engine, key.principal_name)
        if instance is None or instance.deregistered:
            return None
        return await role_session(services, key.role_name, key.principal_name)
    if key.principal_type == "assumed-role":
        if key.role_name is None:
            return None
        return await role_session(services, key.role_name, key.principal_name)
    return await user_principal(services.engine, account, key.principal_name)


async def role_session(services: Services, role_name: str, session_name: str) -> Principal | None:
    """The principal of a session of the role (None if there is no such role): the role from this
    node's cache while the authorisation generation holds (every change to a role bumps it), else
    read. A fleet's nodes act as one role: one read a generation instead of one a request."""
    caches = services.authz
    generation = await services.authz_generation()
    role = caches.roles.get(role_name, generation)
    if role is None:
        role = await roles.get(services.engine, role_name)
        if role is None:
            return None
        caches.roles.put(role_name, generation, role)
    return role_session_principal(services.config.account_id, role, session_name)


async def _refuse_replay(services: Services, parsed: ParsedSignature, now: dt.datetime) -> None:
    """An RSA-PSS signature is salted, so the agent never makes the same one twice: a signature seen
    before is a captured request sent again (within the clock skew its date still passes), refused
    on every node. It is remembered for as long as its date could pass: twice the allowed skew."""
    skew = services.config.clock_skew_seconds
    ttl = 2 * skew + 1 if skew > 0 else REPLAY_MEMORY_WITHOUT_SKEW
    digest = hashlib.sha256(parsed.signature.encode("ascii", "replace")).hexdigest()
    try:
        first = await services.bus.first_use(RSA_SIGNATURES, digest, now=now.timestamp(), ttl=ttl)
    except FailureLogUnavailable as exc:
        log.warning("RSA-signed request refused: %s", exc)
        raise AuthError("ServiceUnavailable", "The service cannot check this request now.", 503) from exc
    if not first:
        log.info("refused a replayed RSA-signed request from %s", parsed.access_key_id)
        raise AuthError("InvalidSignatureException", "Signature has already been used.", 400)


@dataclasses.dataclass(frozen=True, slots=True)
class InstanceAuth:
    """An RSA-signed request's sender: the instance acting as its role, the instance's row as
    read to check the signature, and the authorisation generation read before that row."""

    identity: Identity
    instance: InstanceRow
    generation: int


async def authenticate_managed_instance(services: Services, req: HttpRequest) -> InstanceAuth:
    """Verify an RSA-signed request (credential = the ``mi-`` id) with the instance's registered key."""
    parsed = _parse(req)
    _check_region(services, parsed)
    # Read first: what is derived from the rows read below may be kept under it.
    generation = await services.authz_generation()
    instance = await instances.get(services.engine, parsed.access_key_id)
    if instance is None or instance.deregistered:
        raise _invalid_token(parsed.service)
    try:
        public_key_der = base64.b64decode(instance.public_key, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _invalid_token(parsed.service) from exc
    now = services.clock.now()
    try:
        verify_rsa(req, parsed, public_key_der, max_skew=_max_skew(services), now=now)
    except SigV4Error as exc:
        raise _from_sigv4(exc, parsed.service) from exc
    await _refuse_replay(services, parsed, now)
    role, instance_id = instance.iam_role, instance.instance_id
    principal = await role_session(services, role, instance_id) if role else None
    if principal is None:
        raise AuthError("AccessDeniedException", f"The role of {instance_id} no longer exists.")
    identity = Identity(principal, instance_id, False, parsed.region, parsed.service)
    return InstanceAuth(identity, instance, generation)

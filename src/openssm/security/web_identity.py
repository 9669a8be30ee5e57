"""AssumeRoleWithWebIdentity, the AWS way: an ID token from an IAM OIDC provider's issuer, checked
against the keys the issuer publishes, then the role's trust policy, then temporary credentials.

Refusals carry AWS's codes (the STS API reference): no IAM provider for the token's issuer, a bad
signature, an audience that is not one of the provider's client ids, a malformed token:
``InvalidIdentityToken``; a token past its ``exp``: ``ExpiredTokenException``; a token not yet
valid, or without ``sub``/``iat``: ``IDPRejectedClaim``; the issuer's keys out of reach:
``IDPCommunicationError``; a role that does not trust the token (or does not exist): ``AccessDenied``.
Used by the STS API and by the console's "Sign in with …", so both decide alike; each decision is
written to the audit log.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
from typing import Final

from openssm.iam import MalformedPolicyDocument, parse_policy
from openssm.iam.trust import trust_decision, web_identity_context
from openssm.oidc.issuer import IssuerError, parse_issuer
from openssm.oidc.tokens import TokenError, VerifiedToken, describe, unverified_claims, verify
from openssm.security.errors import SecurityError
from openssm.security.facts import RequestFacts
from openssm.security.issuer_keys import ISSUER_KEYS, IssuerUnreachable
from openssm.services import Services
from openssm.store import access_keys, audit_log
from openssm.store.access_keys import IssuedCredentials
from openssm.store.iam import oidc_providers, roles
from openssm.store.iam.oidc_providers import OidcProviderRow
from openssm.store.iam.roles import RoleRow

log = logging.getLogger(__name__)

ACTION: Final = "sts:AssumeRoleWithWebIdentity"
MIN_DURATION: Final = 900
DEFAULT_DURATION: Final = 3600
ROLE_MAX_SESSION_DURATION: Final = 3600  # every role's MaxSessionDuration (GetRole says so too)
SESSION_NAME: Final = re.compile(r"[\w+=,.@-]{2,64}")
ROLE_ARN: Final = re.compile(
    r"arn:aws:iam::(?P<account>[0-9]{12}):role/(?:[\x21-\x7e]*/)?(?P<name>[\w+=,.@-]{1,64})"
)


class WebIdentityError(SecurityError):
    """A refused AssumeRoleWithWebIdentity, in STS's words (Query API status codes)."""


def _invalid(message: str) -> WebIdentityError:
    return WebIdentityError("InvalidIdentityToken", message, 400)


def _denied() -> WebIdentityError:
    return WebIdentityError("AccessDenied", f"Not authorized to perform {ACTION}", 403)


@dataclasses.dataclass(frozen=True, slots=True)
class AssumedRole:
    credentials: IssuedCredentials
    role: RoleRow
    session_name: str
    provider: OidcProviderRow
    token: VerifiedToken

    @property
    def assumed_role_id(self) -> str:
        return f"{self.role.role_id}:{self.session_name}"


def _from_token_error(exc: TokenError) -> WebIdentityError:
    if exc.kind == "expired":
        return WebIdentityError("ExpiredTokenException", exc.message, 400)
    if exc.kind in ("not_yet_valid", "missing_claim"):
        return WebIdentityError("IDPRejectedClaim", exc.message, 403)
    return _invalid(exc.message)


async def _provider_for(services: Services, token: str) -> OidcProviderRow:
    try:
        issuer_claim = unverified_claims(token).get("iss")
    except TokenError as exc:
        raise _from_token_error(exc) from None
    if not isinstance(issuer_claim, str):
        raise _invalid("The ID token has no issuer (iss)")
    try:
        issuer = parse_issuer(issuer_claim)
    except IssuerError:
        raise _invalid(f"No OpenIDConnect provider found in your account for {issuer_claim[:256]}") from None
    provider = await oidc_providers.find_by_url(services.engine, issuer.iam_url)
    if provider is None or provider.scheme != issuer.scheme:
        raise _invalid(f"No OpenIDConnect provider found in your account for {issuer.url}")
    return provider


async def verify_token(
    services: Services, provider: OidcProviderRow, token: str, *, nonce: str | None = None
) -> VerifiedToken:
    """The token, verified against the provider's issuer's keys (fetched again once for a new kid)."""
    ca_bundle = services.config.web_identity.ca_bundle
    now = services.clock.now()
    for refresh in (False, True):
        try:
            keys = await ISSUER_KEYS.keys(provider.issuer, services.clock, ca_bundle, refresh=refresh)
        except IssuerUnreachable as exc:
            raise WebIdentityError(
                "IDPCommunicationError",
                f"Couldn't retrieve verification key from your identity provider: {exc}",
                400,
            ) from None
        try:
            return verify(
                token, keys.jwks, issuer=provider.issuer, audiences=provider.client_ids, now=now, nonce=nonce
            )
        except TokenError as exc:
            if exc.kind == "unknown_key" and not refresh:
                continue
            raise _from_token_error(exc) from None
    raise AssertionError("unreachable")


async def _role(services: Services, role_arn: str) -> RoleRow:
    match = ROLE_ARN.fullmatch(role_arn)
    if match is None or match["account"] != services.config.account_id:
        raise _denied()
    role = await roles.get(services.engine, match["name"])
    if role is None or role.arn != role_arn:
        raise _denied()
    return role


def _trust_allows(
    role: RoleRow,
    provider: OidcProviderRow,
    token: VerifiedToken,
    session_name: str,
    facts: RequestFacts,
    now: dt.datetime,
) -> tuple[bool, str | None]:
    try:
        policy = parse_policy(role.assume_role_policy, kind="trust")
    except MalformedPolicyDocument:
        return False, None
    context = web_identity_context(provider.url, token.claims, token.audience, session_name, provider.arn)
    context.update(
        {
            "aws:sourceip": [facts.source_ip],
            "aws:securetransport": ["true" if facts.secure_transport else "false"],
            "aws:currenttime": [now.strftime("%Y-%m-%dT%H:%M:%SZ")],
            "aws:epochtime": [str(int(now.timestamp()))],
            "aws:requestedregion": [facts.requested_region],
        }
    )
    if facts.user_agent is not None:
        context["aws:useragent"] = [facts.user_agent]
    result = trust_decision(policy, provider.arn, context, label=f"{role.arn} trust policy")
    matched = "; ".join(f"{m.effect} {m.source} statement {m.index}" for m in result.matched) or None
    return result.allowed, matched


async def assume_role_with_web_identity(
    services: Services,
    *,
    role_arn: str,
    session_name: str,
    token: str,
    duration_seconds: int | None,
    facts: RequestFacts,
    nonce: str | None = None,
) -> AssumedRole:
    """Check the token and the role's trust, then mint the role session's credentials."""
    if not SESSION_NAME.fullmatch(session_name):
        raise WebIdentityError(
            "ValidationError",
            f"1 validation error detected: Value '{session_name[:64]}' at 'roleSessionName' failed to satisfy "
            r"constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*",
        )
    duration = DEFAULT_DURATION if duration_seconds is None else duration_seconds
    if duration > ROLE_MAX_SESSION_DURATION and duration <= 43200:
        raise WebIdentityError(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )
    if not MIN_DURATION <= duration <= 43200:
        raise WebIdentityError(
            "ValidationError",
            f"1 validation error detected: Value '{duration}' at 'durationSeconds' failed to satisfy constraint: "
            "Member must have value between 900 and 43200",
        )
    provider = await _provider_for(services, token)
    verified = await verify_token(services, provider, token, nonce=nonce)
    now = services.clock.now()
    try:
        role = await _role(services, role_arn)
        allowed, matched = _trust_allows(role, provider, verified, session_name, facts, now)
    except WebIdentityError:
        allowed, matched = False, None
    await audit_log.record(
        services.engine,
        principal_arn=f"{provider.arn}:{verified.subject}"[:2048],
        action=ACTION,
        resource=role_arn[:2048],
        decision="allowed" if allowed else "implicitDeny",
        matched_statement=matched,
        source_ip=facts.source_ip,
        now=now,
    )
    if not allowed:
        log.info("web identity refused for role %s: %s", role_arn[:200], describe(verified.claims))
        raise _denied()
    credentials = await access_keys.create_temporary(
        services.engine,
        services.cipher,
        principal_type="assumed-role",
        principal_name=session_name,
        role_name=role.name,
        now=now,
        lifetime=dt.timedelta(seconds=duration),
        federated_provider=provider.arn,
    )
    log.info("web identity: %s assumed %s as %s", describe(verified.claims), role.arn, session_name)
    return AssumedRole(credentials, role, session_name, provider, verified)

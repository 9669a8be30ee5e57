"""STS Query API: GetCallerIdentity (who am I), GetSessionToken (a user's temporary credentials, with
an MFA code when policies ask for MFA) and AssumeRoleWithWebIdentity (a role session for the holder
of an ID token from an IAM OIDC provider's issuer: ``openssm.security.web_identity``).

GetSessionToken follows AWS: no permission is needed (it only authenticates), it must be called with
a user's long-term key, and the credentials it returns act as the user; signed with them, requests
carry ``aws:MultiFactorAuthPresent`` (and, after an MFA code, ``aws:MultiFactorAuthAge``). Without
MFA they call no IAM API (``openssm.security.identity``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from openssm.api.errors import ApiError
from openssm.api.iam.params import param, required, validation
from openssm.api.registry import query_action
from openssm.api.request import ApiRequest
from openssm.iam.arn import assumed_role_arn
from openssm.security.mfa import accept_code
from openssm.security.web_identity import assume_role_with_web_identity
from openssm.store import access_keys, audit_log
from openssm.store.iam import mfa_devices, users

STS_XMLNS: Final = "https://sts.amazonaws.com/doc/2011-06-15/"
SESSION_TOKEN_DURATION: Final = (900, 129600, 43200)  # min, max, default (seconds), for IAM users
BAD_SERIAL: Final = (
    "MultiFactorAuthentication failed, unable to validate MFA code. "
    "Please verify your MFA serial number is valid and associated with this user."
)
BAD_CODE: Final = "MultiFactorAuthentication failed with invalid MFA one time pass code. "


@query_action("sts", "GetCallerIdentity", xmlns=STS_XMLNS)
async def get_caller_identity(request: ApiRequest, form: Mapping[str, str]) -> Any:
    # No permission is needed: AWS answers even when a policy explicitly denies it.
    principal = request.require_identity().principal
    return {"UserId": principal.user_id, "Account": principal.account, "Arn": principal.arn}


def _duration(form: Mapping[str, str], low: int, high: int, default: int) -> int:
    text = param(form, "DurationSeconds", pattern=r"[0-9]{1,9}")
    if text is None:
        return default
    value = int(text)
    if value < low:
        raise validation("DurationSeconds", text, f"Member must have value greater than or equal to {low}")
    if value > high:
        raise validation("DurationSeconds", text, f"Member must have value less than or equal to {high}")
    return value


def _credentials(issued: access_keys.IssuedCredentials) -> dict[str, Any]:
    return {
        "AccessKeyId": issued.access_key_id,
        "SecretAccessKey": issued.secret_access_key,
        "SessionToken": issued.session_token,
        "Expiration": issued.expires_at,
    }


async def _mfa_checked(request: ApiRequest, user_name: str, serial: str, code: str, now: dt.datetime) -> None:
    """AccessDenied unless ``serial`` is the user's enabled device and ``code`` its fresh code."""
    prefix = f"arn:aws:iam::{request.account}:mfa/"
    engine = request.services.engine
    device = await mfa_devices.get(engine, serial[len(prefix) :]) if serial.startswith(prefix) else None
    secrets = await users.login_secrets(engine, user_name)
    if device is None or device.user_name != user_name or secrets is None or not secrets.mfa_secret_encrypted:
        raise ApiError("AccessDenied", BAD_SERIAL, 403)
    if not await accept_code(
        engine, request.services.cipher, user_name, secrets.mfa_secret_encrypted, code, now
    ):
        raise ApiError("AccessDenied", BAD_CODE, 403)


@query_action("sts", "GetSessionToken", xmlns=STS_XMLNS)
async def get_session_token(request: ApiRequest, form: Mapping[str, str]) -> Any:
    identity = request.require_identity()
    principal = identity.principal
    low, high, default = SESSION_TOKEN_DURATION
    duration = _duration(form, low, high, default)
    serial = param(form, "SerialNumber", min_len=9, max_len=256, pattern=r"[\w+=/:,.@-]+")
    code = param(form, "TokenCode", min_len=6, max_len=6, pattern=r"[0-9]+")
    if identity.temporary or principal.type != "User" or not principal.username:
        raise ApiError("AccessDenied", "Cannot call GetSessionToken with session credentials", 403)
    if (serial is None) != (code is None):
        raise ApiError("AccessDenied", BAD_SERIAL if serial is None else BAD_CODE, 403)
    now = request.now()
    user_arn = principal.arn
    mfa_at: dt.datetime | None = None
    if serial is not None and code is not None:
        try:
            await _mfa_checked(request, principal.username, serial, code, now)
        except ApiError:
            await _audit(request, user_arn, "implicitDeny", "MFA code refused", now)
            raise
        mfa_at = now
    issued = await access_keys.create_temporary(
        request.services.engine,
        request.services.cipher,
        principal_type="user",
        principal_name=principal.username,
        role_name=None,
        now=now,
        lifetime=dt.timedelta(seconds=duration),
        mfa_authenticated_at=mfa_at,
    )
    await _audit(request, user_arn, "allowed", "with MFA" if mfa_at else "without MFA", now)
    return {"Credentials": _credentials(issued)}


async def _audit(
    request: ApiRequest, principal_arn: str, decision: str, detail: str, now: dt.datetime
) -> None:
    await audit_log.record(
        request.services.engine,
        principal_arn=principal_arn,
        action="sts:GetSessionToken",
        resource=principal_arn,
        decision=decision,
        matched_statement=detail,
        source_ip=request.facts.source_ip,
        now=now,
    )


@query_action("sts", "AssumeRoleWithWebIdentity", xmlns=STS_XMLNS, auth="anonymous")
async def assume_role_with_web_identity_action(request: ApiRequest, form: Mapping[str, str]) -> Any:
    role_arn = required(form, "RoleArn", min_len=20, max_len=2048)
    session_name = required(form, "RoleSessionName", min_len=2, max_len=64, pattern=r"[\w+=,.@-]+")
    token = required(form, "WebIdentityToken", min_len=4, max_len=20000)
    if param(form, "ProviderId", min_len=4, max_len=2048) is not None:
        raise ApiError(
            "ValidationError",
            "ProviderId is for OAuth 2.0 access tokens; OpenSSM accepts OpenID Connect ID tokens only",
        )
    if form.get("Policy") is not None or any(key.startswith("PolicyArns.") for key in form):
        # Ignoring a session policy would grant more than the caller asked for: refuse instead.
        raise ApiError(
            "ValidationError", "Session policies (Policy, PolicyArns) are not supported by OpenSSM"
        )
    duration = _duration(form, 900, 43200, 3600)
    assumed = await assume_role_with_web_identity(
        request.services,
        role_arn=role_arn,
        session_name=session_name,
        token=token,
        duration_seconds=duration,
        facts=request.facts,
    )
    return {
        "Credentials": _credentials(assumed.credentials),
        "SubjectFromWebIdentityToken": assumed.token.subject,
        "AssumedRoleUser": {
            "AssumedRoleId": assumed.assumed_role_id,
            "Arn": assumed_role_arn(request.account, assumed.role.name, session_name),
        },
        "Provider": assumed.provider.issuer,
        "Audience": assumed.token.audience,
    }

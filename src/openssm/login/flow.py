"""The sign-in itself: the authorization code flow with PKCE through a loopback redirect (RFC 8252:
the provider sends the browser back to ``http://127.0.0.1:<port>/callback``, a listener of ours
that lives for this one sign-in), the ID token checked against the issuer's keys, then
AssumeRoleWithWebIdentity at the OpenSSM endpoint (unsigned, as the AWS CLI calls it)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import pathlib
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from openssm.clock import SYSTEM_CLOCK
from openssm.errors import OpenSSMError
from openssm.login.profile import LoginSettings
from openssm.oidc.authorize import FlowError, PendingSignIn, id_token_of
from openssm.oidc.issuer import MAX_DOCUMENT_BYTES, Discovery, IssuerError, parse_discovery, parse_issuer
from openssm.oidc.settings import session_name_for
from openssm.oidc.tokens import TokenError, VerifiedToken, verify
from openssm.transport.json_fetch import FetchError, fetch_json

CALLBACK_PATH: Final = "/callback"
DONE_PAGE: Final = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>OpenSSM login</title></head>"
    "<body><h1>Signed in</h1><p>You can close this window and return to the terminal.</p></body></html>"
)
FAILED_PAGE: Final = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>OpenSSM login</title></head>"
    "<body><h1>Sign-in failed</h1><p>See the terminal for why.</p></body></html>"
)


class LoginError(OpenSSMError):
    """The sign-in did not succeed; the message says why, for the terminal."""


@dataclasses.dataclass(frozen=True, slots=True)
class RoleCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: dt.datetime
    assumed_role_arn: str


async def _discovery(settings: LoginSettings) -> Discovery:
    ca_bundle = pathlib.Path(settings.ca_bundle) if settings.ca_bundle else None
    try:
        issuer = parse_issuer(settings.issuer)
        document = await fetch_json(issuer.discovery_url, ca_bundle=ca_bundle, limit=MAX_DOCUMENT_BYTES)
        return parse_discovery(issuer, document)
    except (IssuerError, FetchError) as exc:
        raise LoginError(f"The identity provider cannot be used: {exc}") from None


async def _redirect_back(
    port: int, announce: Callable[[str], None], timeout: float, make_url: Callable[[str], str]
) -> dict[str, str]:
    """Listen on loopback, hand the authorization URL (which needs our address) to ``announce``,
    and return the query of the provider's redirect back."""
    arrived: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def callback(request: web.Request) -> web.StreamResponse:
        query = {key: request.query[key] for key in request.query}
        if not arrived.done():
            arrived.set_result(query)
        page = FAILED_PAGE if "error" in query or "code" not in query else DONE_PAGE
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get(CALLBACK_PATH, callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = port or int(runner.addresses[0][1])  # the port the OS chose for port 0
        announce(make_url(f"http://127.0.0.1:{bound}{CALLBACK_PATH}"))
        try:
            return await asyncio.wait_for(arrived, timeout)
        except TimeoutError:
            raise LoginError(f"No sign-in came back within {int(timeout)} seconds") from None
    finally:
        await runner.cleanup()


async def sign_in(
    settings: LoginSettings,
    *,
    announce: Callable[[str], None],
    port: int = 0,
    timeout: float = 300.0,
) -> tuple[str, VerifiedToken]:
    """The user's ID token (as sent, and its checked claims: keys, issuer, audience, nonce), after
    their sign-in at the provider."""
    discovery = await _discovery(settings)
    if discovery.authorization_endpoint is None or discovery.token_endpoint is None:
        raise LoginError("The identity provider offers no authorization code flow")
    ca_bundle = pathlib.Path(settings.ca_bundle) if settings.ca_bundle else None
    pending: list[PendingSignIn] = []

    def make_url(redirect_uri: str) -> str:
        pending.append(PendingSignIn.new(redirect_uri))
        assert discovery.authorization_endpoint is not None
        return pending[0].authorization_url(discovery.authorization_endpoint, settings.client_id)

    query = await _redirect_back(port, announce, timeout, make_url)
    flow = pending[0]
    try:
        code = flow.code_from(query)
        answer = await fetch_json(
            discovery.token_endpoint, form=flow.token_form(code, settings.client_id), ca_bundle=ca_bundle
        )
        token = id_token_of(answer)
        keys = await fetch_json(discovery.jwks_uri, ca_bundle=ca_bundle, limit=MAX_DOCUMENT_BYTES)
        if not isinstance(keys, dict):
            raise LoginError(f"{discovery.jwks_uri} is not a JSON Web Key Set")
        verified = verify(
            token,
            keys,
            issuer=discovery.issuer,
            audiences=[settings.client_id],
            now=SYSTEM_CLOCK.now(),
            nonce=flow.nonce,
        )
        return token, verified
    except (FlowError, FetchError, TokenError) as exc:
        raise LoginError(str(exc)) from None


def assume_role(settings: LoginSettings, token: VerifiedToken, raw_token: str) -> RoleCredentials:
    """AssumeRoleWithWebIdentity at the OpenSSM endpoint (botocore sends it unsigned, as AWS does)."""
    import boto3
    import botocore.config
    import botocore.exceptions

    session_name = session_name_for(token.claims)
    if session_name is None:
        raise LoginError("The ID token names no user (preferred_username, email or sub)")
    client = boto3.session.Session().client(
        "sts",
        region_name=settings.region,
        endpoint_url=settings.endpoint_url,
        config=botocore.config.Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 2}),
    )
    arguments: dict[str, Any] = {
        "RoleArn": settings.role_arn,
        "RoleSessionName": session_name,
        "WebIdentityToken": raw_token,
    }
    if settings.duration_seconds:
        arguments["DurationSeconds"] = settings.duration_seconds
    try:
        answer = client.assume_role_with_web_identity(**arguments)
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        raise LoginError(f"{error.get('Code', 'Error')}: {error.get('Message', exc)}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise LoginError(f"OpenSSM at {settings.endpoint_url} could not be reached: {exc}") from None
    credentials = answer["Credentials"]
    return RoleCredentials(
        credentials["AccessKeyId"],
        credentials["SecretAccessKey"],
        credentials["SessionToken"],
        credentials["Expiration"],
        answer["AssumedRoleUser"]["Arn"],
    )

"""``openssm login --oidc PROFILE``: sign in through an OpenID Connect provider in the browser and
put short-lived credentials for an OpenSSM role into an AWS profile (see :mod:`openssm.login.profile`
for where, and why there)."""

from __future__ import annotations

import asyncio
import sys
import webbrowser

import click

from openssm.click_options import seconds_option
from openssm.login.flow import LoginError, assume_role, sign_in
from openssm.login.profile import SETTING_PREFIX, LoginSettings, credentials_path, save, stored_settings


def _settings(profile: str, options: dict[str, object]) -> LoginSettings:
    """Options given now win; the rest come from what the last login stored in the profile."""
    stored = stored_settings(profile)

    def pick(option: str, setting: str) -> str | None:
        value = options.get(option)
        return str(value) if value else stored.get(setting)

    values = {
        "issuer": pick("issuer", f"{SETTING_PREFIX}issuer"),
        "client_id": pick("client_id", f"{SETTING_PREFIX}client_id"),
        "role_arn": pick("role_arn", f"{SETTING_PREFIX}role_arn"),
        "endpoint_url": pick("endpoint_url", "endpoint_url"),
        "region": pick("region", "region") or "us-east-1",
    }
    missing = [f"--{name.replace('_', '-')}" for name, value in values.items() if not value]
    if missing:
        raise click.UsageError(f"profile {profile!r} has no login settings yet: give {', '.join(missing)}")
    duration = pick("duration_seconds", f"{SETTING_PREFIX}duration_seconds")
    return LoginSettings(
        issuer=str(values["issuer"]),
        client_id=str(values["client_id"]),
        role_arn=str(values["role_arn"]),
        endpoint_url=str(values["endpoint_url"]),
        region=str(values["region"]),
        ca_bundle=pick("ca_bundle", f"{SETTING_PREFIX}ca_bundle"),
        duration_seconds=int(duration) if duration else None,
    )


@click.command(
    "login", short_help="Sign in through your identity provider; credentials go to an AWS profile."
)
@click.option(
    "--oidc",
    "profile",
    required=True,
    metavar="PROFILE",
    help="The AWS profile to write (and read settings from).",
)
@click.option("--issuer", default=None, help="The identity provider's issuer URL.")
@click.option("--client-id", default=None, help="This client's id at the provider (a public client: PKCE).")
@click.option("--role-arn", default=None, help="The OpenSSM role to assume (AssumeRoleWithWebIdentity).")
@click.option("--endpoint-url", default=None, help="The OpenSSM server's URL.")
@click.option("--region", default=None, help="Region of the profile (default: us-east-1).")
@click.option(
    "--duration-seconds", type=click.IntRange(900, 43200), default=None, help="Lifetime of the credentials."
)
@click.option(
    "--ca-bundle",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM CAs for the provider's TLS.",
)
@click.option("--no-browser", is_flag=True, help="Print the sign-in URL instead of opening a browser.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, help="Loopback port for the redirect (default: any)."
)
@seconds_option("--timeout", minimum=1, default=300.0, help="Seconds to wait for the sign-in.")
def login_command(profile: str, no_browser: bool, port: int, timeout: float, **options: object) -> None:
    """Sign in through an OpenID Connect provider (authorization code flow with PKCE, redirected to
    a loopback address) and write short-lived credentials for an OpenSSM role to the AWS profile
    PROFILE. The AWS CLI, boto3 and `openssm start-session` then use them with `--profile PROFILE`.
    The settings are kept in the profile: the next time, `openssm login --oidc PROFILE` is enough."""
    settings = _settings(profile, options)

    def announce(url: str) -> None:
        click.echo(f"Sign in at:\n{url}", err=True)
        if not no_browser:
            webbrowser.open(url)

    try:
        raw, verified = asyncio.run(sign_in(settings, announce=announce, port=port, timeout=timeout))
        credentials = assume_role(settings, verified, raw)
    except LoginError as exc:
        raise click.ClickException(str(exc)) from None
    save(
        profile,
        settings,
        credentials.access_key_id,
        credentials.secret_access_key,
        credentials.session_token,
        credentials.expiration,
    )
    expires = credentials.expiration.strftime("%Y-%m-%d %H:%M:%S %Z")
    click.echo(
        f"Signed in as {credentials.assumed_role_arn}; credentials for profile {profile!r} "
        f"in {credentials_path()} until {expires}.",
        err=True,
    )
    sys.stdout.flush()

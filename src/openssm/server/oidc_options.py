"""``openssm server`` options for OpenID Connect (``--oidc-…``), kept here so the server command only
applies them: the CA bundle trusted for identity providers (AssumeRoleWithWebIdentity and the
console), and the console's "Sign in with <provider>"."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import Any, Final

import click

from openssm.click_options import file_option, option_group, read_secret
from openssm.oidc.issuer import IssuerError, parse_issuer
from openssm.oidc.settings import ConsoleSignIn, WebIdentitySettings

SECRET_ENV: Final = "OPENSSM_OIDC_CLIENT_SECRET"


# The ``--oidc-…`` options of a click command (they arrive as keyword arguments).
oidc_options = option_group(
    click.option(
        "--oidc-issuer",
        default=None,
        metavar="URL",
        help="Console sign-in: the identity provider's issuer (https://, a port and path allowed; "
        "http:// only on loopback). Register it with `aws iam create-open-id-connect-provider` too.",
    ),
    click.option("--oidc-client-id", default=None, help="Console sign-in: the console's client id there."),
    file_option(
        "--oidc-client-secret-file",
        help=f"Console sign-in: a file holding the client secret (or set ${SECRET_ENV}; "
        "none: a public client, PKCE only). Never pass the secret itself on the command line.",
    ),
    click.option(
        "--oidc-role-arn",
        default=None,
        metavar="ARN",
        help="Console sign-in: the role users get (its trust policy must allow "
        "sts:AssumeRoleWithWebIdentity for the provider).",
    ),
    click.option(
        "--oidc-name",
        default=None,
        help="Console sign-in: the provider's name on the button (default: its host).",
    ),
    file_option(
        "--oidc-ca-bundle",
        help="PEM CA certificates to trust for identity providers' TLS (default: the system's).",
    ),
)


def _client_secret(path: pathlib.Path | None) -> str | None:
    secret = read_secret(path, env=SECRET_ENV, option="--oidc-client-secret-file")
    if secret is None:
        return None
    try:
        return secret.decode("utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(
            "the client secret is not UTF-8 text", param_hint="--oidc-client-secret-file"
        ) from None


def oidc_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ServerConfig field for the options :func:`oidc_options` added."""
    issuer, client_id, role_arn = (
        values.get("oidc_issuer"),
        values.get("oidc_client_id"),
        values.get("oidc_role_arn"),
    )
    console = None
    if issuer or client_id or role_arn:
        if not (issuer and client_id and role_arn):
            raise click.UsageError("--oidc-issuer, --oidc-client-id and --oidc-role-arn go together")
        try:
            parsed = parse_issuer(issuer)
        except IssuerError as exc:
            raise click.BadParameter(str(exc), param_hint="--oidc-issuer") from None
        console = ConsoleSignIn(
            issuer=issuer,
            client_id=client_id,
            client_secret=_client_secret(values.get("oidc_client_secret_file")),
            role_arn=role_arn,
            display_name=values.get("oidc_name") or parsed.host,
        )
    return {"web_identity": WebIdentitySettings(ca_bundle=values.get("oidc_ca_bundle"), console=console)}

"""``openssm server`` options for just-in-time access: the webhook told of each access request and
decision, and the HMAC secret its deliveries are signed with (also ``--config`` keys)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import click

from openssm.click_options import file_option, option_group, read_secret
from openssm.services import AccessSettings

SECRET_ENV: Final = "OPENSSM_ACCESS_WEBHOOK_SECRET"
MIN_SECRET_BYTES: Final = 16


# The access options of a click command (they arrive as keyword arguments).
access_options = option_group(
    click.option(
        "--access-webhook",
        default=None,
        metavar="URL",
        help="http(s) URL POSTed a signed JSON event for each access request and decision "
        "(retried with backoff until it answers 2xx; never holds up the API call).",
    ),
    file_option(
        "--access-webhook-secret-file",
        help=f"File holding the HMAC-SHA256 secret that signs webhook deliveries (X-OpenSSM-Signature); "
        f"or set ${SECRET_ENV}. Required with --access-webhook.",
    ),
)


def _url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(
            f"{value!r} is not an http:// or https:// URL", param_hint="--access-webhook"
        )
    return value


def access_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ServerConfig field for the options :func:`access_options` added."""
    url = values.get("access_webhook")
    secret = read_secret(
        values.get("access_webhook_secret_file"),
        env=SECRET_ENV,
        option="--access-webhook-secret-file",
        min_bytes=MIN_SECRET_BYTES,
    )
    if url is None:
        return {"access": AccessSettings()}
    if secret is None:
        raise click.UsageError(
            f"--access-webhook needs a secret: --access-webhook-secret-file FILE or ${SECRET_ENV}"
        )
    return {"access": AccessSettings(webhook_url=_url(url), webhook_secret=secret)}

"""``openssm server`` options for just-in-time access: the webhook told of each access request and
decision, and the HMAC secret its deliveries are signed with (also ``--config`` keys)."""

from __future__ import annotations

import os
import pathlib
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

import click

from openssm.click_options import file_option, option_group
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


def _secret(path: pathlib.Path | None) -> bytes | None:
    if path is not None:
        try:
            secret = path.read_bytes().strip()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {path}: {exc.strerror or exc}", param_hint="--access-webhook-secret-file"
            ) from exc
    else:
        secret = os.environ.get(SECRET_ENV, "").strip().encode()
    if not secret:
        return None
    if len(secret) < MIN_SECRET_BYTES:
        raise click.BadParameter(
            f"the webhook secret must be at least {MIN_SECRET_BYTES} bytes",
            param_hint="--access-webhook-secret-file",
        )
    return secret


def access_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The ServerConfig field for the options :func:`access_options` added."""
    url = values.get("access_webhook")
    secret = _secret(values.get("access_webhook_secret_file"))
    if url is None:
        return {"access": AccessSettings()}
    if secret is None:
        raise click.UsageError(
            f"--access-webhook needs a secret: --access-webhook-secret-file FILE or ${SECRET_ENV}"
        )
    return {"access": AccessSettings(webhook_url=_url(url), webhook_secret=secret)}

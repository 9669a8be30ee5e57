"""Small JSON exchanges over HTTP(S) with bounds: an OpenID provider's discovery document and keys,
and its token endpoint. Shared by the server (verifying ID tokens, the console's sign-in) and by
``openssm login``. Every body is read with a size limit, every exchange has a time limit, and TLS
is checked against the system's CAs or a given CA bundle; redirects are not followed."""

from __future__ import annotations

import json
import pathlib
import ssl
from collections.abc import Mapping
from typing import Any, Final

import aiohttp

from openssm.errors import OpenSSMError
from openssm.transport.bounded_read import BodyTooLarge, read_bounded

DEFAULT_LIMIT: Final = 256 * 1024
DEFAULT_TIMEOUT: Final = 10.0


class FetchError(OpenSSMError):
    """The exchange failed: unreachable, TLS refused, not 2xx/4xx JSON, too large, too slow."""


def ssl_context(ca_bundle: pathlib.Path | None) -> ssl.SSLContext:
    """The system's CAs, or only those of ``ca_bundle`` (a PEM file) when given."""
    context = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
    return context


async def _json_of(response: aiohttp.ClientResponse, url: str, limit: int, accept_errors: bool) -> Any:
    if response.status >= 300 and not (accept_errors and 400 <= response.status < 500):
        raise FetchError(f"{url} answered HTTP {response.status}")
    try:
        body = await read_bounded(response.content, limit)
    except BodyTooLarge as exc:
        raise FetchError(f"{url} answered more than {limit} bytes") from exc
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FetchError(f"{url} did not answer JSON") from exc


async def fetch_json(
    url: str,
    *,
    form: Mapping[str, str] | None = None,
    basic_auth: tuple[str, str] | None = None,
    ca_bundle: pathlib.Path | None = None,
    limit: int = DEFAULT_LIMIT,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """GET ``url``, or POST ``form`` to it (urlencoded) when given: the JSON answer, which for a POST
    includes an OAuth error object (HTTP 4xx)."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.request(
                "GET" if form is None else "POST",
                url,
                data=dict(form) if form is not None else None,
                auth=aiohttp.BasicAuth(*basic_auth) if basic_auth else None,
                ssl=ssl_context(ca_bundle) if url.startswith("https:") else False,
                allow_redirects=False,
                headers={"Accept": "application/json"},
            ) as response,
        ):
            return await _json_of(response, url, limit, accept_errors=form is not None)
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
        raise FetchError(f"{url} could not be reached: {exc}") from exc

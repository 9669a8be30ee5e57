"""Opening a client data channel: the dial (TLS trust and proxy as Go's dialer, so as AWS's plugin,
decides them), the upgrade, and the open frame with the session's token.

Light to import on purpose (asyncio and the framing, not the data-channel machinery): at start-up
the channel is opened while the rest of the client is still being imported (``client.startup``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import ssl
import urllib.parse
from collections.abc import Mapping
from typing import Final

from openssm.protocol.frames import MAX_FRAME_SIZE
from openssm.protocol.versions import CLIENT_VERSION
from openssm.transport import websocket_connection
from openssm.transport.websocket_connection import ClientWebSocket

DIAL_TIMEOUT: Final = 30.0  # the dial only: an open data channel may stay quiet as long as the user likes
USER_AGENT: Final = f"openssm-session-manager-plugin/{CLIENT_VERSION}"


def ssl_context_from_env() -> ssl.SSLContext:
    """System roots, or the bundle named by SSL_CERT_FILE (as Go's default dialer honours it)."""
    cafile = os.environ.get("SSL_CERT_FILE") or None
    capath = os.environ.get("SSL_CERT_DIR") or None
    return ssl.create_default_context(cafile=cafile, capath=capath)


def proxy_for(stream_url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy Go's dialer would use: HTTPS_PROXY for wss, HTTP_PROXY for ws, NO_PROXY honoured,
    loopback never proxied."""
    url = urllib.parse.urlsplit(stream_url)
    scheme = {"wss": "https", "ws": "http"}.get(url.scheme)
    host = url.hostname or ""
    if scheme is None or host == "localhost" or _is_loopback(host):
        return None
    env = os.environ if environ is None else environ
    proxy = env.get(f"{scheme}_proxy".upper()) or env.get(f"{scheme}_proxy")
    if not proxy:
        return None
    no_proxy = env.get("NO_PROXY") or env.get("no_proxy") or ""
    for entry in (item.strip().lower() for item in no_proxy.split(",")):
        # Go: "*" matches all; ".y.com" matches subdomains only; "y.com" matches it and subdomains.
        if entry == "*" or (entry.startswith(".") and host.endswith(entry)):
            return None
        if entry and not entry.startswith(".") and (host == entry or host.endswith("." + entry)):
            return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def open_channel(stream_url: str, token: str, client_id: str) -> ClientWebSocket:
    """Dial ``stream_url`` and send the open frame; raises OSError/TimeoutError when it cannot."""
    # Imported here: at start-up another thread is importing it meanwhile (see client.startup).
    from openssm.protocol.messages import ClientOpen

    ws = await asyncio.wait_for(
        websocket_connection.dial(
            stream_url,
            max_message=MAX_FRAME_SIZE,
            close_timeout=2.0,
            tls=ssl_context_from_env() if stream_url.startswith(("wss:", "https:")) else None,
            proxy=proxy_for(stream_url),
            headers=[("User-Agent", USER_AGENT)],
        ),
        DIAL_TIMEOUT,
    )
    try:
        await ws.send_str(ClientOpen(token, client_id=client_id).to_text())
    except BaseException:
        await ws.close()
        raise
    return ws

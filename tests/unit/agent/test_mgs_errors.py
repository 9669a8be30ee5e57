"""A refused WebSocket upgrade never carries the agent's signed request headers into a log."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from openssm.agent.mgs import MgsClient
from openssm.agent.signing import StaticCredentials
from openssm.auth.credentials_file import Credentials
from openssm.transport.http_exchange import HttpClient
from openssm.transport.websocket_connection import DialError

SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN"


async def test_refusal_names_the_status_but_not_the_request_headers() -> None:
    seen: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=403, text="forbidden")

    app = web.Application()
    app.router.add_get("/v1/control-channel/{instance}", refuse)
    credentials = StaticCredentials(Credentials("ASIAEXAMPLE", SECRET_KEY, SESSION_TOKEN))
    async with TestServer(app, host="127.0.0.1") as server:
        mgs = MgsClient(HttpClient(timeout=10.0), f"http://127.0.0.1:{server.port}", "us-east-1", credentials)
        with pytest.raises(DialError) as refused:
            await mgs.connect_control("mi-0123456789abcdef0")
    assert refused.value.status == 403
    assert seen and "Signature=" in seen[0]  # the upgrade was signed: there was something to leak
    for text in (repr(refused.value), str(refused.value)):
        assert "403" in str(refused.value)
        assert "Signature=" not in text and "SESSIONTOKEN" not in text and "Authorization" not in text

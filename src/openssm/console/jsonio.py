"""Small JSON request/response helpers for the console endpoints."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from openssm.transport.bounded_read import read_request_body

MAX_JSON_BYTES: Final = 64 * 1024


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="expected application/json")
    raw = await read_request_body(request, MAX_JSON_BYTES)
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text="request body is not JSON") from exc
    except RecursionError as exc:  # deeply nested: refuse, do not crash
        raise web.HTTPBadRequest(text="request body is nested too deeply") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="request body must be a JSON object")
    return body


def text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else ""

"""One id per HTTP request: in the ``x-amzn-RequestId`` response header (as AWS sends it, and the
API's bodies carry it too), and in a context variable that the log formatter reads, so a client's
request id finds its log lines. Tasks started while a request is handled inherit its id."""

from __future__ import annotations

import contextvars
import uuid
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

HEADER: Final = "x-amzn-RequestId"

current: contextvars.ContextVar[str | None] = contextvars.ContextVar("openssm_request_id", default=None)


def new_id() -> str:
    return str(uuid.uuid4())


def of(request: web.Request) -> str:
    """The id of the request being handled: given by :func:`middleware`, or made now (in an
    application without it)."""
    request_id = current.get()
    if request_id is None:
        request_id = new_id()
        current.set(request_id)
    return request_id


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = new_id()
    token = current.set(request_id)
    try:
        response = await handler(request)
    finally:
        current.reset(token)
    if not response.prepared and HEADER not in response.headers:
        response.headers[HEADER] = request_id
    return response


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    """A response prepared by the handler itself (a WebSocket upgrade, a file) gets its header here."""
    request_id = current.get()
    if request_id is not None and HEADER not in response.headers:
        response.headers[HEADER] = request_id


def install(app: web.Application) -> None:
    """Give every request of ``app`` an id, and every response (WebSocket upgrades too) its header."""
    app.middlewares.append(middleware)
    app.on_response_prepare.append(_stamp)

"""The console's static files: HTML pages, our JS/CSS, and the vendored xterm.js build output."""

from __future__ import annotations

import pathlib
from typing import Final

from aiohttp import web

STATIC_DIR: Final = pathlib.Path(__file__).resolve().parent / "static"
SIGNED_IN_PAGES: Final = frozenset({"nodes", "shell", "sessions", "replay", "activations", "access"})
TERMINAL_PAGES: Final = frozenset({"shell", "replay"})  # these need xterm.js from vendor/
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".map": "application/json",
}


def vendor_built() -> bool:
    return (STATIC_DIR / "vendor" / "xterm.mjs").is_file()


def html_response(name: str) -> web.Response:
    path = STATIC_DIR / f"{name}.html"
    return web.Response(body=path.read_bytes(), content_type="text/html", charset="utf-8")


async def static_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    path = (STATIC_DIR / relative).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise web.HTTPNotFound()
    content_type = CONTENT_TYPES.get(path.suffix)
    if content_type is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})

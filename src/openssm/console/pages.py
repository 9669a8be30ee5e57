"""The console's static files: HTML pages, our JS/CSS, and the vendored xterm.js build output.

A page's file (``static/<name>.html``) holds what its ``<main>`` shows; the document around it (head,
stylesheets, the page's own script ``js/<name>.js``) is the same for every page and written here."""

from __future__ import annotations

import pathlib
from typing import Final

from aiohttp import web

STATIC_DIR: Final = pathlib.Path(__file__).resolve().parent / "static"
TITLES: Final = {
    "nodes": "Managed nodes",
    "shell": "Shell",
    "sessions": "Sessions",
    "replay": "Replay",
    "activations": "Activations",
    "access": "Access requests",
    "signin": "Sign in",
}
SIGNED_IN_PAGES: Final = frozenset(TITLES) - {"signin"}
TERMINAL_PAGES: Final = frozenset({"shell", "replay"})  # these need xterm.js from vendor/
_DOCUMENT: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>{title} · OpenSSM</title>
{terminal_css}<link rel="stylesheet" href="/console/static/css/console.css">
<script type="module" src="/console/static/js/{name}.js"></script>
</head>
<body class="{body_class}">
<main>
{main}</main>
</body>
</html>
"""
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


def page_html(name: str) -> str:
    """The whole document of the page ``name`` (one of TITLES)."""
    terminal = name in TERMINAL_PAGES
    return _DOCUMENT.format(
        title=TITLES[name],
        terminal_css='<link rel="stylesheet" href="/console/static/vendor/xterm.css">\n' if terminal else "",
        name=name,
        body_class="terminal-page" if terminal else "",
        main=(STATIC_DIR / f"{name}.html").read_text(encoding="utf-8"),
    )


def html_response(name: str) -> web.Response:
    return web.Response(text=page_html(name), content_type="text/html", charset="utf-8")


async def static_file(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    path = (STATIC_DIR / relative).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise web.HTTPNotFound()
    content_type = CONTENT_TYPES.get(path.suffix)
    if content_type is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})

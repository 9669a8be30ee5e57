"""The console's static files: HTML pages, our JS/CSS, and the vendored xterm.js build output.

A page's file (``static/<name>.html``) holds what its ``<main>`` shows; the document around it (head,
stylesheets, the page's own script ``js/<name>.js``) is the same for every page and written here.

Pages load their scripts and stylesheets from ``/console/assets/<version>/…``, where ``<version>``
is a digest of every static file: a browser keeps them for a year without asking again (``immutable``),
and any change to any file gives every asset a new address. The scripts import one another by
relative paths, so a module's imports carry the version of the module that imports them. The same
files stay at ``/console/static/…`` (asked again on each use, answered 304 while unchanged)."""

from __future__ import annotations

import hashlib
import html
import pathlib
import threading
from typing import Final

from aiohttp import web

from openssm.clock import SYSTEM_CLOCK, Clock

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
{meta}{terminal_css}<link rel="stylesheet" href="{assets}/css/console.css">
<script type="module" src="{assets}/js/{name}.js"></script>
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


ASSETS_PREFIX: Final = "/console/assets"
IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"


def vendor_built() -> bool:
    return (STATIC_DIR / "vendor" / "xterm.mjs").is_file()


class AssetVersion:
    """The digest of every file under ``static/`` that the server serves.

    The files are looked at again (a stat of each, not a read) at most every ``recheck`` seconds,
    and hashed again only when a file's size or modification time changed, so a server whose files
    are rebuilt under it (``make console-assets``) hands out new addresses within a second. The
    digest is of the contents: nodes of one release behind a load balancer agree on it."""

    def __init__(self, root: pathlib.Path, clock: Clock, recheck: float = 1.0) -> None:
        self.root = root
        self.clock = clock
        self.recheck = recheck
        self._lock = threading.Lock()
        self._checked_at: float | None = None
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._version = ""

    def current(self) -> str:
        now = self.clock.monotonic()
        with self._lock:
            if self._checked_at is not None and now - self._checked_at < self.recheck:
                return self._version
            self._checked_at = now
            files = sorted(
                path for path in self.root.rglob("*") if path.suffix in CONTENT_TYPES and path.is_file()
            )
            seen = tuple((str(path), (stat := path.stat()).st_size, stat.st_mtime_ns) for path in files)
            if seen != self._seen:
                digest = hashlib.sha256()
                for path in files:
                    digest.update(str(path.relative_to(self.root)).encode() + b"\0")
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
                self._seen, self._version = seen, digest.hexdigest()[:16]
            return self._version


ASSET_VERSION: Final = AssetVersion(STATIC_DIR, SYSTEM_CLOCK)


def page_html(name: str, meta: dict[str, str] | None = None) -> str:
    """The whole document of the page ``name`` (one of TITLES), with ``<meta name=… content=…>`` for
    each item of ``meta`` (what the page's script needs from the server before its first request)."""
    terminal = name in TERMINAL_PAGES
    assets = f"{ASSETS_PREFIX}/{ASSET_VERSION.current()}"
    return _DOCUMENT.format(
        title=TITLES[name],
        meta="".join(
            f'<meta name="{html.escape(key)}" content="{html.escape(value)}">\n'
            for key, value in (meta or {}).items()
        ),
        assets=assets,
        terminal_css=f'<link rel="stylesheet" href="{assets}/vendor/xterm.css">\n' if terminal else "",
        name=name,
        body_class="terminal-page" if terminal else "",
        main=(STATIC_DIR / f"{name}.html").read_text(encoding="utf-8"),
    )


def html_response(name: str, meta: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=page_html(name, meta), content_type="text/html", charset="utf-8")


def _file_response(relative: str, cache_control: str) -> web.StreamResponse:
    path = (STATIC_DIR / relative).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file():
        raise web.HTTPNotFound()
    content_type = CONTENT_TYPES.get(path.suffix)
    if content_type is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path, headers={"Content-Type": content_type, "Cache-Control": cache_control})


async def static_file(request: web.Request) -> web.StreamResponse:
    """``/console/static/<path>``: asked again on each use (the ETag makes that a 304)."""
    return _file_response(request.match_info["path"], REVALIDATE)


async def versioned_file(request: web.Request) -> web.StreamResponse:
    """``/console/assets/<version>/<path>``: kept for good when ``<version>`` is this server's. Another
    version (a page from another release, during a rolling upgrade) gets this server's file, asked
    again on each use, so the browser never keeps it under the other release's address."""
    current = request.match_info["version"] == ASSET_VERSION.current()
    return _file_response(request.match_info["path"], IMMUTABLE if current else REVALIDATE)

"""The console's pages: one document skeleton around each page's own ``<main>`` content."""

from __future__ import annotations

import re

import pytest

from openssm.console import pages


@pytest.mark.parametrize("name", sorted(pages.TITLES))
def test_every_page_is_a_whole_document_with_its_own_script(name: str) -> None:
    html = pages.page_html(name)
    assert html.startswith('<!doctype html>\n<html lang="en">\n<head>\n') and html.endswith(
        "</body>\n</html>\n"
    )
    assert f"<title>{pages.TITLES[name]} · OpenSSM</title>" in html
    assert re.findall(r'<script type="module" src="([^"]+)"></script>', html) == [
        f"/console/static/js/{name}.js"
    ]
    assert (pages.STATIC_DIR / "js" / f"{name}.js").is_file()
    terminal = name in pages.TERMINAL_PAGES
    assert ("vendor/xterm.css" in html) is terminal
    assert (f'<body class="{"terminal-page" if terminal else ""}">') in html
    main = html.split("<main>\n", 1)[1].rsplit("</main>", 1)[0]
    assert main == (pages.STATIC_DIR / f"{name}.html").read_text(encoding="utf-8")
    assert "<h1" in main and "<head" not in main  # a page file holds its content only


def test_the_signed_in_pages_are_all_but_sign_in() -> None:
    assert pages.SIGNED_IN_PAGES == {"nodes", "shell", "sessions", "replay", "activations", "access"}

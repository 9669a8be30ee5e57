"""The console's pages: one document skeleton around each page's own ``<main>`` content."""

from __future__ import annotations

import pathlib
import re

import pytest

from openssm.clock import ManualClock
from openssm.console import pages


@pytest.mark.parametrize("name", sorted(pages.TITLES))
def test_every_page_is_a_whole_document_with_its_own_script(name: str) -> None:
    html = pages.page_html(name)
    assert html.startswith('<!doctype html>\n<html lang="en">\n<head>\n') and html.endswith(
        "</body>\n</html>\n"
    )
    assert f"<title>{pages.TITLES[name]} · OpenSSM</title>" in html
    assets = f"/console/assets/{pages.ASSET_VERSION.current()}"
    assert re.findall(r'<script type="module" src="([^"]+)"></script>', html) == [f"{assets}/js/{name}.js"]
    assert f'<link rel="stylesheet" href="{assets}/css/console.css">' in html
    assert (pages.STATIC_DIR / "js" / f"{name}.js").is_file()
    terminal = name in pages.TERMINAL_PAGES
    assert (f"{assets}/vendor/xterm.css" in html) is terminal
    assert (f'<body class="{"terminal-page" if terminal else ""}">') in html
    main = html.split("<main>\n", 1)[1].rsplit("</main>", 1)[0]
    assert main == (pages.STATIC_DIR / f"{name}.html").read_text(encoding="utf-8")
    assert "<h1" in main and "<head" not in main  # a page file holds its content only


def test_the_signed_in_pages_are_all_but_sign_in() -> None:
    assert pages.SIGNED_IN_PAGES == {"nodes", "shell", "sessions", "replay", "activations", "access"}


def test_the_asset_version_is_a_digest_of_the_files_and_follows_their_changes(tmp_path: pathlib.Path) -> None:
    (tmp_path / "js").mkdir()
    script = tmp_path / "js" / "a.js"
    script.write_text("export const a = 1;\n")
    (tmp_path / "notes.txt").write_text("not served, not counted")
    clock = ManualClock()
    version = pages.AssetVersion(tmp_path, clock, recheck=1.0)
    first = version.current()
    assert re.fullmatch(r"[0-9a-f]{16}", first) and version.current() == first
    assert pages.AssetVersion(tmp_path, ManualClock()).current() == first  # the contents decide: nodes agree
    (tmp_path / "notes.txt").write_text("still not served")
    clock.advance(1.0)
    assert version.current() == first
    script.write_text("export const a = 2;\n")  # same size, new contents (and time)
    clock.advance(0.5)
    assert version.current() == first  # looked at again once a second, not on every request
    clock.advance(0.5)
    second = version.current()
    assert second != first
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "b.css").write_text("body {}\n")  # a new file
    clock.advance(1.0)
    assert version.current() not in (first, second)


def test_scripts_import_each_other_by_relative_paths() -> None:
    """A module's imports resolve against its own versioned address only if they are relative."""
    for script in (pages.STATIC_DIR / "js").glob("*.js"):
        text = script.read_text(encoding="utf-8")
        imported = re.findall(r'(?:from|import)\s*\(?\s*"([^"]+)"', text)
        assert all(path.startswith(("./", "../")) for path in imported), (script.name, imported)

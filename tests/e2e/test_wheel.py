"""The packages `make dist` makes carry the console's built assets: the wheel, built from the sdist,
installed into a fresh virtualenv with no npm anywhere, runs a server whose console works.

Cost: the wheel is built without an isolated build environment (the test extras hold the build
backend), and the fresh virtualenv gets OpenSSM from the wheel alone (``--no-deps --no-index``),
its dependencies through a ``.pth`` line naming this virtualenv's site-packages, which is what
`pip install openssm-*.whl` would have fetched. That line adds the directory only: the editable
install of the working tree there is a ``.pth`` file of its own, which is not read, so the test
asserts that ``openssm`` is imported from the fresh virtualenv.
"""

from __future__ import annotations

import configparser
import pathlib
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

from tests.conftest import REPO_ROOT, require
from tests.e2e.harness import Process, free_port, wait_until
from tests.integration.test_console_http import Browserish

pytestmark = pytest.mark.slow

ASSETS = ("vendor/xterm.mjs", "vendor/xterm.css", "vendor/addon-fit.mjs", "js/shell.js")
VENDOR = REPO_ROOT / "src" / "openssm" / "console" / "static" / "vendor"


def build(out: pathlib.Path) -> pathlib.Path:
    """sdist, then the wheel from the unpacked sdist (python -m build's default): so the wheel also
    shows that the sdist had everything."""
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [wheel] = out.glob("openssm-*.whl")
    return wheel


def test_the_wheel_in_a_fresh_virtualenv_serves_the_console_without_npm(tmp_path: pathlib.Path) -> None:
    require((VENDOR / "xterm.mjs").is_file(), "console assets not built: run `make console-assets`")
    wheel = build(tmp_path / "dist")
    checked = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "check-dist"), str(tmp_path / "dist")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr  # what `make dist` checks: both carry the assets

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (pathlib.Path(site) / "openssm-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {"PATH": str(venv / "bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    assert shutil.which("npm", path=env["PATH"]) is None and shutil.which("node", path=env["PATH"]) is None
    where = subprocess.run(
        [str(python), "-c", "import openssm; print(openssm.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), where

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    server = Process(
        [str(venv / "bin" / "openssm"), "server", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}"],
        tmp_path / "server.log",
        env=env,
    )
    try:
        wait_until(
            lambda: (data / "credentials").exists() and "listening" in server.log(), "server", timeout=60
        )
        assert f"Browser console: {endpoint}/console/" in server.log()
        browser = Browserish(_At(endpoint, port))  # type: ignore[arg-type]
        for asset in ASSETS:
            status, _, body = browser.request("GET", f"/console/static/{asset}")
            assert status == 200, asset
            assert body == (REPO_ROOT / "src" / "openssm" / "console" / "static" / asset).read_bytes()
        key, secret = _admin_key(data)
        status, _, _ = browser.sign_in(key, secret)
        assert status == 200
        status, _, page = browser.request("GET", "/console/shell?target=mi-0123456789abcdef0")
        # the terminal page, not "not built", and its assets at their versioned addresses
        assets = re.search(rb'href="(/console/assets/[0-9a-f]{16})/vendor/xterm.css"', page)
        assert status == 200 and assets is not None
        for asset in ASSETS:
            status, _, body = browser.request("GET", f"{assets.group(1).decode()}/{asset}")
            assert (
                status == 200
                and body == (REPO_ROOT / "src" / "openssm" / "console" / "static" / asset).read_bytes()
            )
    finally:
        server.stop()


class _At:
    """Where the server from the wheel listens (what Browserish asks of a server)."""

    def __init__(self, endpoint: str, port: int) -> None:
        self.endpoint = endpoint
        self.port = port


def _admin_key(data: pathlib.Path) -> tuple[str, str]:
    parser = configparser.ConfigParser()
    parser.read(data / "credentials")
    return parser["openssm"]["aws_access_key_id"], parser["openssm"]["aws_secret_access_key"]

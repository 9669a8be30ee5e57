"""``openssm server --access-webhook URL`` and its HMAC secret (a file, or the environment), also as
``--config`` keys; a webhook without a secret, a short secret or a URL that is not http(s) is refused."""

from __future__ import annotations

import pathlib

import click
import pytest
from click.testing import CliRunner

from openssm.cli import main
from openssm.click_options import MAX_SECRET_BYTES, read_secret
from openssm.server import process as server_process
from openssm.server.access_options import SECRET_ENV
from openssm.services import AccessSettings, ServerConfig

SECRET = b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    """The configs `openssm server` would run with (the server itself is not started)."""
    configs: list[ServerConfig] = []
    monkeypatch.setattr(server_process, "run", configs.append)
    monkeypatch.setattr("openssm.server.cli.configure", lambda *_: None)
    monkeypatch.delenv(SECRET_ENV, raising=False)
    return configs


def run_server(tmp_path: pathlib.Path, *args: str) -> click.testing.Result:
    return CliRunner().invoke(main, ["server", "--data-dir", str(tmp_path / "data"), *args])


def test_no_webhook_by_default(tmp_path: pathlib.Path, started: list[ServerConfig]) -> None:
    assert run_server(tmp_path).exit_code == 0
    assert started[0].access == AccessSettings()


def test_the_webhook_from_the_config_file_with_a_secret_file_beside_it(
    tmp_path: pathlib.Path, started: list[ServerConfig]
) -> None:
    (tmp_path / "webhook.secret").write_bytes(SECRET + b"\n")
    config = tmp_path / "server.toml"
    config.write_text(
        'access-webhook = "https://hooks.example.internal/openssm"\naccess-webhook-secret-file = "webhook.secret"\n'
    )
    result = run_server(tmp_path, "--config", str(config))
    assert result.exit_code == 0, result.output
    access = started[0].access
    assert access.webhook_url == "https://hooks.example.internal/openssm" and access.webhook_secret == SECRET
    assert SECRET.decode() not in repr(started[0])  # the secret never shows in a printed config


def test_the_secret_from_the_environment(
    tmp_path: pathlib.Path, started: list[ServerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET.decode())
    assert run_server(tmp_path, "--access-webhook", "http://127.0.0.1:9000/hook").exit_code == 0
    assert started[0].access.webhook_secret == SECRET


@pytest.mark.parametrize(
    ("args", "secret", "says"),
    [
        (["--access-webhook", "http://127.0.0.1:9000/hook"], None, "needs a secret"),
        (["--access-webhook", "http://127.0.0.1:9000/hook"], b"short", "at least 16 bytes"),
        (["--access-webhook", "ftp://127.0.0.1/hook"], SECRET, "is not an http:// or https:// URL"),
        # A secret file is read no further than a secret's size (a wrong path to a large file).
        (["--access-webhook", "http://127.0.0.1:9000/hook"], SECRET * 200, "is larger than a secret"),
    ],
)
def test_refused(
    tmp_path: pathlib.Path, started: list[ServerConfig], args: list[str], secret: bytes | None, says: str
) -> None:
    if secret is not None:
        (tmp_path / "secret").write_bytes(secret)
        args = [*args, "--access-webhook-secret-file", str(tmp_path / "secret")]
    result = run_server(tmp_path, *args)
    assert result.exit_code == 2 and says in result.output and not started


def test_secret_files_are_read_by_one_bounded_reader(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The webhook's secret and the console's OIDC client secret: a file that cannot be read is
    click's error naming the option (the OIDC one was a traceback), a large one is not read whole."""
    option = "--oidc-client-secret-file"
    with pytest.raises(click.BadParameter, match="cannot read") as unreadable:
        read_secret(tmp_path, env="UNSET_SECRET_ENV", option=option)  # a directory
    assert unreadable.value.param_hint == option
    large = tmp_path / "large"
    large.write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    with pytest.raises(click.BadParameter, match="larger than a secret"):
        read_secret(large, env="UNSET_SECRET_ENV", option=option)
    monkeypatch.setenv("SOME_SECRET_ENV", "  from-env\n")
    assert read_secret(None, env="SOME_SECRET_ENV", option=option) == b"from-env"
    assert read_secret(None, env="UNSET_SECRET_ENV", option=option) is None

"""``openssm server --config FILE``: every option has a key, the command line wins over the file,
and a key the server does not know is an error naming it."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import click
import pytest
from click.testing import CliRunner
from tests.conftest import REPO_ROOT

from openssm.cli import main
from openssm.server import config_file
from openssm.server import process as server_process
from openssm.server.cli import server_command
from openssm.services import ServerConfig


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[ServerConfig]:
    """The configs `openssm server` would run with (the server itself is not started)."""
    configs: list[ServerConfig] = []
    monkeypatch.setattr(server_process, "run", configs.append)
    monkeypatch.setattr("openssm.server.cli.configure", lambda *_: None)  # leave the test's logging be
    return configs


def run_server(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, ["server", *args], catch_exceptions=False)


def test_every_option_of_the_server_has_a_key() -> None:
    options = [p for p in server_command.params if isinstance(p, click.Option) and p.name != "config"]
    keys = config_file.keys(server_command)
    assert len(keys) == len(options)
    assert {
        "listen",
        "tls-cert",
        "trusted-proxy",
        "metrics-listen",
        "log-format",
        "session-recording",
    } <= set(keys)


def test_the_file_sets_options_and_the_command_line_wins(
    tmp_path: pathlib.Path, started: list[ServerConfig]
) -> None:
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "cert.pem").write_text("cert")
    (tmp_path / "tls" / "key.pem").write_text("key")
    config = tmp_path / "server.toml"
    config.write_text(
        f'data-dir = "{tmp_path / "data"}"\n'
        'listen = "127.0.0.1:8443"\n'
        'region = "eu-west-1"\n'
        'tls-cert = "tls/cert.pem"\n'  # relative to the file
        'tls-key = "tls/key.pem"\n'
        'trusted-proxy = ["10.0.0.0/8", "192.0.2.1"]\n'
        'metrics-listen = "127.0.0.1:9102"\n'
        "session-recording = false\n"
    )
    result = run_server("--config", str(config), "--region", "us-west-2")
    assert result.exit_code == 0, result.output
    [chosen] = started
    assert chosen.region == "us-west-2"  # the flag wins
    assert (chosen.listen_host, chosen.listen_port) == ("127.0.0.1", 8443)
    assert chosen.tls_cert == tmp_path / "tls" / "cert.pem"
    assert chosen.trusted_proxies == ("10.0.0.0/8", "192.0.2.1/32")
    assert chosen.metrics_listen == ("127.0.0.1", 9102)
    assert chosen.record_sessions is False
    assert chosen.public_url == "https://127.0.0.1:8443"


def test_an_unknown_key_is_an_error_naming_it(tmp_path: pathlib.Path, started: list[ServerConfig]) -> None:
    config = tmp_path / "server.toml"
    config.write_text('listen = "127.0.0.1:8443"\nlisten_port = 9\n')
    result = run_server("--config", str(config))
    assert result.exit_code == 2
    assert "unknown key 'listen_port'" in result.output
    assert not started


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("listen = [", "is not valid TOML"),
        ('trusted-proxy = "not-an-address"', "is not an IP address or CIDR"),
        ('log-format = "xml"', "'xml' is not one of"),
        ('region = ["a", "b"]', "takes one value, not a list"),
    ],
)
def test_bad_values_are_reported(
    tmp_path: pathlib.Path, started: list[ServerConfig], text: str, message: str
) -> None:
    config = tmp_path / "server.toml"
    config.write_text(text + "\n")
    result = run_server("--config", str(config))
    assert result.exit_code != 0
    assert message in result.output
    assert not started


def test_the_readme_example_is_a_valid_file(tmp_path: pathlib.Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    [example] = re.findall(r"```toml\n(.*?)```", readme, flags=re.S)
    config = tmp_path / "server.toml"
    config.write_text(example)
    settings: dict[str, Any] = config_file.default_map(server_command, config)
    assert settings["listen"] and settings["data_dir"]


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080", "10.1.2.3:8080", "ssm.example.internal:80"])
def test_plain_http_off_loopback_is_refused_naming_the_way_out(
    listen: str, tmp_path: pathlib.Path, started: list[ServerConfig]
) -> None:
    result = run_server("--data-dir", str(tmp_path), "--listen", listen)
    assert result.exit_code == 2 and not started
    assert "plain HTTP" in result.output
    for name in ("--insecure-http", "--tls-cert", "--tls-key", "insecure-http = true"):
        assert name in result.output


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:8080", "127.8.9.10:8080", "[::1]:8080", "localhost:8080", ":8080"]
)
def test_plain_http_on_loopback_needs_no_flag(
    listen: str, tmp_path: pathlib.Path, started: list[ServerConfig]
) -> None:
    assert run_server("--data-dir", str(tmp_path), "--listen", listen).exit_code == 0
    assert started[0].public_url.startswith("http://")


def test_insecure_http_from_the_flag_or_the_file_lets_it_listen_anywhere(
    tmp_path: pathlib.Path, started: list[ServerConfig]
) -> None:
    assert (
        run_server("--data-dir", str(tmp_path), "--listen", "0.0.0.0:8080", "--insecure-http").exit_code == 0
    )
    config = tmp_path / "server.toml"
    config.write_text('listen = "0.0.0.0:8080"\ninsecure-http = true\n')
    result = run_server("--config", str(config), "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert [c.listen_host for c in started] == ["0.0.0.0", "0.0.0.0"]


def test_tls_serves_any_address_without_the_flag(tmp_path: pathlib.Path, started: list[ServerConfig]) -> None:
    (tmp_path / "cert.pem").write_text("cert")
    (tmp_path / "key.pem").write_text("key")
    tls = ("--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"))
    assert run_server("--data-dir", str(tmp_path), "--listen", "0.0.0.0:8443", *tls).exit_code == 0
    assert started[0].public_url.startswith("https://")

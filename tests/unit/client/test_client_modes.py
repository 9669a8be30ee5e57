"""Pure decisions of the client: port mode from the handshake, stdin translation, start-session options."""

from __future__ import annotations

import click
import pytest

from openssm.client.cli import OPTIONS, Forward, OptionError, build_request
from openssm.client.dial import proxy_for
from openssm.client.port import PortMode, bind_host, choose_port_mode, local_port_of
from openssm.client.session import CHUNK_ENV, chunk_size_from_env, closed_message
from openssm.client.shell import input_payload, size_payload
from openssm.client.start_command import start_session_command
from openssm.plain_options import parse_plain

LPF = {"type": "LocalPortForwarding", "portNumber": "80", "localPortNumber": "0"}


@pytest.mark.parametrize(
    ("properties", "agent_version", "mode"),
    [
        (LPF, "3.3.987.0", PortMode.MUX),
        (LPF, "3.0.196.1", PortMode.MUX),
        (LPF, "3.0.196.0", PortMode.BASIC),
        (LPF, "3.0.100.0", PortMode.BASIC),
        (LPF, "3.3.987", PortMode.BASIC),  # different part counts are "not greater", as in the plugin
        ({"portNumber": "22"}, "3.3.987.0", PortMode.STDIO),
        (None, "3.3.987.0", PortMode.STDIO),
        ({"type": "Other"}, "3.3.987.0", PortMode.BASIC),
    ],
)
def test_port_mode(properties: dict[str, str] | None, agent_version: str, mode: PortMode) -> None:
    assert choose_port_mode(properties, agent_version) is mode


@pytest.mark.parametrize(
    ("properties", "port"),
    [({"localPortNumber": "8080"}, 8080), ({"localPortNumber": ""}, 0), ({}, 0), ({"localPortNumber": "x"}, 0),
     ({"localPortNumber": "70000"}, 0), (None, 0)],
)  # fmt: skip
def test_local_port(properties: dict[str, str] | None, port: int) -> None:
    assert local_port_of(properties) == port


def test_localhost_binds_the_ipv4_loopback_like_go() -> None:
    assert bind_host("localhost") == "127.0.0.1"
    assert bind_host("0.0.0.0") == "0.0.0.0"


def test_stdin_translation() -> None:
    assert input_payload(b"\n") == b"\r"
    assert input_payload(b"ls\n") == b"ls\n"
    assert size_payload(80, 24) == b'{"cols":80,"rows":24}'


def test_closed_messages() -> None:
    assert closed_message("s-1", "") == "\n\nExiting session with sessionId: s-1.\n\n"
    assert closed_message("s-1", "Idle timeout") == "\n\nSessionId: s-1 : Idle timeout\n\n"


def test_forward_specs() -> None:
    plain = Forward("8080:80").request("i-1", None)
    assert plain["DocumentName"] == "AWS-StartPortForwardingSession"
    assert plain["Parameters"] == {"portNumber": ["80"], "localPortNumber": ["8080"]}
    remote = Forward("15432:db.internal:5432").request("i-1", "maintenance")
    assert remote["DocumentName"] == "AWS-StartPortForwardingSessionToRemoteHost"
    assert remote["Parameters"]["host"] == ["db.internal"]
    assert remote["Reason"] == "maintenance"
    assert Forward("80").request("i-1", None)["Parameters"]["localPortNumber"] == ["0"]
    for bad in ("", "a:b:c:d", "x:y", "1::2"):
        with pytest.raises(OptionError):
            Forward(bad)


def test_start_session_request_from_shorthand() -> None:
    request = build_request(
        "i-1", "AWS-StartPortForwardingSession", "portNumber=3389, localPortNumber=13389", "r"
    )
    assert request == {
        "Target": "i-1",
        "DocumentName": "AWS-StartPortForwardingSession",
        "Parameters": {"portNumber": ["3389"], "localPortNumber": ["13389"]},
        "Reason": "r",
    }
    with pytest.raises(OptionError):
        build_request("i-1", None, "a=[", None)
    # The command says it in click's words (what `aws ssm start-session` users see as well).
    with pytest.raises(click.BadParameter, match="a=\\[") as raised:
        start_session_command.main(["--target", "i-1", "--parameters", "a=["], standalone_mode=False)
    assert raised.value.param_hint == "--parameters"
    with pytest.raises(click.UsageError, match="--forward chooses"):
        start_session_command.main(
            ["--target", "i-1", "--forward", "80", "--document-name", "D"], standalone_mode=False
        )


@pytest.mark.parametrize(
    ("url", "environ", "proxy"),
    [
        ("wss://gw.example/x", {"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ("wss://gw.example/x", {"https_proxy": "proxy:3128"}, "http://proxy:3128"),
        ("wss://gw.example/x", {"HTTP_PROXY": "http://proxy:3128"}, None),
        ("ws://gw.example/x", {"HTTP_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ("wss://gw.example/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example"}, None),
        ("wss://gw.example/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.example"}, "http://p:1"),
        ("wss://example/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example"}, "http://p:1"),
        ("wss://gw.example/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".example"}, None),
        ("wss://gw.example/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "gw.example"}, None),
        ("wss://gw.example/x", {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, None),
        ("wss://127.0.0.1:8443/x", {"HTTPS_PROXY": "http://p:1"}, None),  # Go never proxies loopback
        ("wss://localhost:8443/x", {"HTTPS_PROXY": "http://p:1"}, None),
    ],
)
def test_proxy_selection_follows_go(url: str, environ: dict[str, str], proxy: str | None) -> None:
    assert proxy_for(url, environ) == proxy


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 4096),
        ("", 4096),
        ("abc", 4096),
        ("-5", 4096),
        ("10", 1024),
        ("32768", 32768),
        ("999999", 65536),
    ],
)
def test_chunk_size_from_env(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int) -> None:
    if value is None:
        monkeypatch.delenv(CHUNK_ENV, raising=False)
    else:
        monkeypatch.setenv(CHUNK_ENV, value)
    assert chunk_size_from_env(4096) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--target", "i-1"],
        ["--target=i-1", "--endpoint-url", "http://127.0.0.1:8080"],
        ["--target", "i-1", "--target", "i-2"],  # the last counts
        [
            "--forward",
            "8080:80",
            "--target",
            "mi-1",
            "--forward=15432:db:5432",
            "--listen-address",
            "0.0.0.0",
        ],
        ["--target", "i-1", "--document-name", "AWS-StartSSHSession", "--parameters", "portNumber=22"],
        ["--target", "i-1", "--reason", "x=y", "--profile", "dev", "--region", "eu-west-1"],
        ["--target", "i-1", "--parameters", '{"portNumber":["80"]}'],
    ],
)
def test_the_fast_parser_reads_a_plain_command_line_as_click_does(args: list[str]) -> None:
    with start_session_command.make_context("start-session", list(args)) as ctx:
        assert parse_plain(OPTIONS, args) == ctx.params


@pytest.mark.parametrize(
    "args",
    [
        [],  # --target is required
        ["--help"],
        ["-h", "--target", "i-1"],
        ["--target"],  # no value
        ["--target", "i-1", "extra"],
        ["--target", "i-1", "--bogus", "1"],
        ["--target", "i-1", "--reason", "-r"],  # a value that looks like an option
        ["--target", "i-1", "--", "--reason"],
        ["--targ", "i-1"],
    ],
)
def test_the_fast_parser_leaves_anything_else_to_click(args: list[str]) -> None:
    assert parse_plain(OPTIONS, args) is None

"""The plugin's argv/env contract with the AWS CLI (``session-manager-protocol.md`` §1.3)."""

from __future__ import annotations

import json

import pytest

from openssm.client import plugin
from openssm.client.plugin_session import parse_invocation
from openssm.client.plugin_usage import UsageError
from openssm.protocol.versions import PLUGIN_REPORTED_VERSION, cli_uses_env_handoff

RESPONSE = {
    "SessionId": "s-1",
    "TokenValue": "tok",
    "StreamUrl": "wss://gw.example/v1/data-channel/s-1?role=x",
}


def test_version_is_four_parts_and_makes_the_cli_use_the_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugin.run(["session-manager-plugin", "--version"]) == 0
    printed = capsys.readouterr().out
    assert printed == f"{PLUGIN_REPORTED_VERSION}\n"
    assert len(printed.strip().split(".")) == 4
    assert cli_uses_env_handoff(printed)


def test_the_aws_cli_does_not_call_our_plugin_outdated() -> None:
    from awscli.customizations.sessionmanager import (  # type: ignore[import-untyped]
        StartSessionCaller,
        VersionRequirement,
    )

    requirement = VersionRequirement(min_version=StartSessionCaller.RECOMMENDED_MINIMUM_PLUGIN_VERSION)
    assert requirement.meets_requirement(PLUGIN_REPORTED_VERSION, inclusive=True)


def test_no_arguments_prints_the_install_banner(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugin.run(["session-manager-plugin"]) == 0
    assert "installed successfully" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_says_what_the_plugin_is_and_how_it_is_called(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert plugin.run(["session-manager-plugin", flag]) == 0
    printed = capsys.readouterr().out
    assert "aws ssm start-session" in printed and "--version" in printed and plugin.LOG_LEVEL_ENV in printed


@pytest.mark.parametrize("argv", [["p", "StartSession"], ["p", "a", "b"]])
def test_two_or_three_arguments_are_an_unknown_operation(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert plugin.run(argv) == 0
    assert capsys.readouterr().out == plugin.unknown_operation(argv[1])


def test_env_var_handoff_is_read_then_removed() -> None:
    environ = {"AWS_SSM_START_SESSION_RESPONSE": json.dumps(RESPONSE), "OTHER": "1"}
    argv = [
        "p",
        "AWS_SSM_START_SESSION_RESPONSE",
        "eu-west-1",
        "StartSession",
        "dev",
        '{"Target": "i-1"}',
        "https://x",
    ]
    invocation = parse_invocation(argv, environ)
    assert "AWS_SSM_START_SESSION_RESPONSE" not in environ
    assert invocation.started.token_value == "tok"
    assert (invocation.region, invocation.profile, invocation.target, invocation.endpoint_url) == (
        "eu-west-1",
        "dev",
        "i-1",
        "https://x",
    )
    assert not invocation.named_document  # a shell: the port machinery is not imported


def test_a_named_document_may_be_a_port_session() -> None:
    request = '{"Target": "i-1", "DocumentName": "AWS-StartPortForwardingSession"}'
    argv = ["p", json.dumps(RESPONSE), "eu-west-1", "StartSession", "dev", request, "https://x"]
    assert parse_invocation(argv, {}).named_document


def test_legacy_four_arguments_carry_the_json_itself() -> None:
    invocation = parse_invocation(["p", json.dumps(RESPONSE), "us-east-1", "StartSession"], {})
    assert invocation.started.session_id == "s-1"
    assert (invocation.profile, invocation.target, invocation.endpoint_url) == ("", "", "")
    assert invocation.named_document  # not told: the port machinery comes along


@pytest.mark.parametrize(
    ("response", "request_json"),
    [
        ("not json", '{"Target": "i-1"}'),
        (json.dumps({"SessionId": "s"}), '{"Target": "i-1"}'),
        (json.dumps(RESPONSE | {"StreamUrl": "http://x"}), '{"Target": "i-1"}'),
        (json.dumps(RESPONSE), '{"Target": 5}'),
        (json.dumps(RESPONSE), "nope"),
    ],
)
def test_bad_input_is_a_clear_error(response: str, request_json: str) -> None:
    with pytest.raises(UsageError):
        parse_invocation(["p", response, "r", "StartSession", "", request_json, ""], {})


def test_bad_input_exits_1_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert plugin.run(["p", "{}", "r", "StartSession", "", "{}", ""], {}) == 1
    assert "Cannot perform start session" in capsys.readouterr().err

"""State files, settings and the interactive_shell parser."""

from __future__ import annotations

import json
import os
import pathlib
import stat

import pytest

from openssm.agent.chain_credentials import ChainCredentials
from openssm.agent.config import (
    IAM,
    AgentSettings,
    Registration,
    StateError,
    load_fingerprint,
    load_registration,
    save_registration,
)
from openssm.agent.session_request import BadSessionRequest, parse_session_request
from openssm.agent.sessions.base import SessionFailure
from openssm.agent.sessions.identity import RunAs, requested_user, resolve_run_as, session_environment
from openssm.agent.signing import CredentialsError
from openssm.protocol.frames import Frame, MessageType, go_json


def test_registration_round_trip_with_private_permissions(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "state"
    registration = Registration("mi-0123456789abcdef0", "us-east-1", "http://h:1", "fp-uuid")
    save_registration(state, registration, b"-----PEM-----\n")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_registration(state) == (registration, b"-----PEM-----\n")
    assert registration.gateway_endpoint == "http://h:1"


def test_an_iam_node_keeps_no_key_and_names_its_profile(tmp_path: pathlib.Path) -> None:
    """Re-registering with IAM credentials drops the key an activation left; loading gives no key."""
    activation = Registration("mi-0123456789abcdef0", "us-east-1", "http://h:1", "fp-uuid")
    save_registration(tmp_path, activation, b"-----PEM-----\n")
    iam = Registration("i-0123456789abcdef0", "us-east-1", "http://h:1", "", identity=IAM, profile="node")
    save_registration(tmp_path, iam, None)
    assert not (tmp_path / "private-key.pem").exists()
    assert load_registration(tmp_path) == (iam, b"")
    assert load_fingerprint(tmp_path) is None  # a later activation gets a fingerprint of its own
    raw = json.loads((tmp_path / "registration.json").read_text())
    (tmp_path / "registration.json").write_text(json.dumps({**raw, "identity": "psychic"}))
    with pytest.raises(StateError, match="unknown identity"):
        load_registration(tmp_path)


async def test_chain_credentials_come_from_the_named_profile(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    credentials_file = tmp_path / "credentials"
    credentials_file.write_text("[node]\naws_access_key_id = AKIANODE\naws_secret_access_key = node-secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials_file))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    found = await ChainCredentials("node").current()
    assert (found.access_key_id, found.secret_access_key, found.session_token) == (
        "AKIANODE",
        "node-secret",
        None,
    )
    with pytest.raises(CredentialsError, match="profile"):
        await ChainCredentials("missing").current()


def test_missing_or_broken_state_is_a_clear_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(StateError, match="register first"):
        load_registration(tmp_path)
    (tmp_path / "registration.json").write_text("{")
    with pytest.raises(StateError, match="not valid JSON"):
        load_registration(tmp_path)
    (tmp_path / "registration.json").write_text(json.dumps({"instance_id": "mi-x"}))
    with pytest.raises(StateError, match="lacks 'region'"):
        load_registration(tmp_path)


def test_settings_from_file_and_environment(tmp_path: pathlib.Path) -> None:
    (tmp_path / "agent.json").write_text(
        json.dumps({"heartbeat_seconds": 60, "denied_networks": ["10.0.0.0/8"]})
    )
    settings = AgentSettings.load(tmp_path, env={"OPENSSM_AGENT_HEARTBEAT_SECONDS": "5"})
    assert settings.heartbeat_seconds == 5.0
    assert [str(n) for n in settings.denied_networks] == ["10.0.0.0/8"]
    assert str(AgentSettings().denied_networks[0]) == "169.254.0.0/16"
    with pytest.raises(StateError, match="unknown agent setting"):
        AgentSettings.from_mapping({"nope": 1})
    with pytest.raises(StateError, match="must be positive"):
        AgentSettings.from_mapping({"heartbeat_seconds": "-1"})
    with pytest.raises(StateError, match="invalid value"):
        AgentSettings.from_mapping({"denied_networks": "not-a-network"})


def shell_frame(content: object, task_id: str = "s-1") -> Frame:
    outer = {
        "Content": json.dumps(content) if not isinstance(content, str) else content,
        "TaskId": task_id,
        "Topic": "aws.ssm.startSession",
        "SchemaVersion": 1,
    }
    return Frame(MessageType.INTERACTIVE_SHELL, payload=go_json(outer))


def document(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "schemaVersion": "1.0",
        "sessionType": "Port",
        "parameters": {"portNumber": {"type": "String", "default": "80"}, "host": {"type": "String"}},
        "inputs": {},
        "properties": {"portNumber": "{{ portNumber }}", "host": "{{host}}", "type": "LocalPortForwarding"},
    }
    doc.update(overrides)
    return doc


def test_parse_resolves_placeholders_with_case_insensitive_keys() -> None:
    content = {
        "sessionid": "s-1",
        "documentname": "AWS-StartPortForwardingSessionToRemoteHost",
        "documentcontent": document(),
        "parameters": {"host": ["db.internal"]},
        "runasuser": "alice",
    }
    request = parse_session_request(shell_frame(content))
    assert request.session_id == "s-1" and request.session_type == "Port"
    assert request.properties == {"portNumber": "80", "host": "db.internal", "type": "LocalPortForwarding"}
    assert request.run_as_user == "alice"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "Content: not valid JSON"),
        ({"SessionId": "s-1"}, "DocumentContent is missing"),
        ({"SessionId": "s-1", "DocumentContent": document(schemaVersion="2.2")}, "schemaVersion"),
        ({"SessionId": "bad id!", "DocumentContent": document()}, "invalid SessionId"),
        ({"SessionId": "s-1", "DocumentContent": document(sessionType=None)}, "no sessionType"),
        ({"SessionId": "s-1", "DocumentContent": document(), "Parameters": "x"}, "Parameters"),
    ],
)
def test_parse_rejects_bad_requests(content: object, message: str) -> None:
    with pytest.raises(BadSessionRequest, match=message):
        parse_session_request(shell_frame(content))


def test_run_as_user_choice() -> None:
    def request(run_as: str, inputs: dict[str, object]) -> object:
        content = {
            "SessionId": "s-1",
            "DocumentContent": document(sessionType="Standard_Stream", inputs=inputs),
            "RunAsUser": run_as,
        }
        return parse_session_request(shell_frame(content))

    assert requested_user(request("bob", {"runAsEnabled": True, "runAsDefaultUser": "x"})) == "bob"  # type: ignore[arg-type]
    assert requested_user(request("", {"runAsEnabled": "true", "runAsDefaultUser": "carol"})) == "carol"  # type: ignore[arg-type]
    assert requested_user(request("", {"runAsEnabled": False, "runAsDefaultUser": "carol"})) == ""  # type: ignore[arg-type]
    with pytest.raises(Exception, match="no RunAs user"):
        requested_user(request("", {"runAsEnabled": True}))  # type: ignore[arg-type]


@pytest.mark.requires(os.geteuid() == 0, "RunAs is looked up only by a root agent")
def test_run_as_user_with_a_nul_byte_is_a_session_failure() -> None:
    content = {
        "SessionId": "s-1",
        "DocumentContent": document(sessionType="Standard_Stream"),
        "RunAsUser": "a\x00b",
    }
    with pytest.raises(SessionFailure, match="does not exist"):
        resolve_run_as(parse_session_request(shell_frame(content)))


def test_session_environment_hides_agent_secrets() -> None:
    me = RunAs("me", 1000, 1000, "/home/me", "/bin/bash", switch=False)
    parent = {"AWS_SECRET_ACCESS_KEY": "s", "OPENSSM_MASTER_KEY": "k", "FOO": "1", "LANG": "de_DE.UTF-8"}
    env = session_environment(me, parent)
    assert (
        "AWS_SECRET_ACCESS_KEY" not in env
        and "OPENSSM_MASTER_KEY" not in env
        and env["FOO"] == "1"
        and env["LANG"] == "de_DE.UTF-8"
    )
    assert env["TERM"] == "xterm-256color" and env["USER"] == "me" and env["HOME"] == "/home/me"
    other = RunAs("alice", 1001, 1001, "/home/alice", "/usr/sbin/nologin", switch=True)
    env = session_environment(other, {"FOO": "1"})
    assert "FOO" not in env and env["LANG"] == "C.UTF-8" and env["SHELL"] == "/bin/sh"

"""KMS session encryption end to end, with real processes: an `openssm server` serving KMS, an
`openssm agent`, and `openssm start-session` (whose KMS calls go to the server through
AWS_ENDPOINT_URL_KMS, the SDK's own setting).

With a kmsKeyId preference the shell works and says it is encrypted; the gateway relays ciphertext
only, so the session's recording holds its events and ciphertext byte counts, never what was typed
or printed; a user without kms:GenerateDataKey on the key, and a node without kms:Decrypt, cannot
start an encrypted session."""

from __future__ import annotations

import json
import pathlib

import pexpect
import pytest

from tests.e2e.harness import Server, running_system, wait_until
from tests.e2e.test_session_join import User, _user

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ENCRYPTED = "This session is encrypted using AWS KMS."

# Start shells, nothing of KMS.
SHELL_ONLY: dict[str, object] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["ssm:StartSession", "ssm:TerminateSession"], "Resource": "*"},
    ],
}


def _preferences(server: Server, key: str) -> None:
    """The account's session preferences (SSM-SessionManagerRunShell) with ``kmsKeyId``."""
    content = {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": {"kmsKeyId": key}}
    server.client("ssm").update_document(
        Name="SSM-SessionManagerRunShell", Content=json.dumps(content), DocumentVersion="$LATEST"
    )


def _kms_user(user: User, server: Server) -> User:
    user.env["AWS_ENDPOINT_URL_KMS"] = server.endpoint
    return user


def _refused(child: pexpect.spawn) -> str:
    child.expect(pexpect.EOF)
    child.close()
    return str(child.before)


def test_an_encrypted_shell_whose_recording_holds_no_content(tmp_path: pathlib.Path) -> None:
    with running_system(tmp_path) as (server, agent):
        target = str(agent.instance_id)
        kms = server.client("kms")
        sessions_key = kms.create_key(Description="sessions")["KeyMetadata"]
        kms.create_alias(AliasName="alias/ssm-sessions", TargetKeyId=sessions_key["KeyId"])
        other_key = kms.create_key(Description="not for nodes")["KeyMetadata"]
        node_policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "kms:Decrypt", "Resource": sessions_key["Arn"]}],
        }
        server.client("iam").put_role_policy(
            RoleName="OpenSSMNodeRole", PolicyName="session-kms", PolicyDocument=json.dumps(node_policy)
        )
        _preferences(server, "alias/ssm-sessions")
        key, secret = server.admin_credentials
        admin = _kms_user(User(server, {"AccessKeyId": key, "SecretAccessKey": secret}, tmp_path), server)

        shell = admin.spawn("start-session", "--target", target)
        shell.expect(r"Starting session with SessionId: (\S+)")
        session_id = shell.match.group(1).strip().rstrip(".")
        shell.expect(ENCRYPTED)
        shell.sendline("echo secret-$((6*7))")
        shell.expect("secret-42")
        shell.sendline("exit")
        shell.expect(pexpect.EOF)

        directory = server.data_dir / "sessions"
        events = directory / f"{session_id}.jsonl"
        wait_until(lambda: events.exists() and "session_ended" in events.read_text(), "the recording")
        recorded = [json.loads(line) for line in events.read_text().splitlines()]
        counts = next(event["ciphertext_bytes"] for event in recorded if event["event"] == "kms_encrypted")
        assert counts["output"] > 0 and counts["input"] > 0
        for path in directory.glob(f"{session_id}.*"):
            assert "secret" not in path.read_text(errors="replace"), path
        assert "relayed ciphertext only" in (directory / f"{session_id}.log").read_text()

        # A user who may start shells but not use the key: GenerateDataKey is refused, so is the session.
        plain = _kms_user(_user(server, "no-kms", SHELL_ONLY, tmp_path), server)
        output = _refused(plain.spawn("start-session", "--target", target))
        assert "AccessDeniedException" in output and "secret" not in output, output

        # The node may decrypt data keys of its key only: a session under another key ends.
        _preferences(server, other_key["KeyId"])
        output = _refused(admin.spawn("start-session", "--target", target))
        assert ENCRYPTED not in output and "KMS Decrypt failed" in output, output

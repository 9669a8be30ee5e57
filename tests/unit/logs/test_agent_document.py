"""The agent never gets the server-side logging preferences (OpenSSM records on the server)."""

from __future__ import annotations

from openssm.gateway.messages import agent_document, interactive_shell
from openssm.protocol.frames import decode

INPUTS = {
    "s3BucketName": "audit",
    "s3KeyPrefix": "p",
    "s3EncryptionEnabled": True,
    "cloudWatchLogGroupName": "/g",
    "cloudWatchEncryptionEnabled": True,
    "cloudWatchStreamingEnabled": True,
    "kmsKeyId": "",
    "runAsEnabled": True,
    "runAsDefaultUser": "nobody",
    "idleSessionTimeout": "20",
    "shellProfile": {"linux": "cd /tmp", "windows": ""},
}
DOCUMENT = {"schemaVersion": "1.0", "sessionType": "Standard_Stream", "inputs": INPUTS}


def test_logging_inputs_are_removed_and_the_rest_kept() -> None:
    sent = agent_document(DOCUMENT)
    assert sent["inputs"] == {
        "kmsKeyId": "",
        "runAsEnabled": True,
        "runAsDefaultUser": "nobody",
        "idleSessionTimeout": "20",
        "shellProfile": {"linux": "cd /tmp", "windows": ""},
    }
    assert DOCUMENT["inputs"] is INPUTS and "s3BucketName" in INPUTS  # the session row is not changed
    assert agent_document({"schemaVersion": "1.0", "sessionType": "Port"}) == {
        "schemaVersion": "1.0",
        "sessionType": "Port",
    }


def test_interactive_shell_carries_the_agent_document() -> None:
    session = {
        "session_id": "admin-0123456789abcdef0",
        "document_name": "SSM-SessionManagerRunShell",
        "document_content": DOCUMENT,
        "parameters": {},
        "run_as_user": "nobody",
        "owner_arn": "arn:aws:iam::000000000000:user/admin",
    }
    payload = decode(interactive_shell(session)).payload
    assert b"shellProfile" in payload and b"cd /tmp" in payload
    assert b"s3BucketName" not in payload and b"cloudWatchLogGroupName" not in payload

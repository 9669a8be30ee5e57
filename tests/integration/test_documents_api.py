"""Documents API for Session documents, and StartSession using the stored preferences and documents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
import sqlalchemy as sa
import yaml
from tests.integration.api_harness import ApiServer, connect_instance, make_user, register_node

from openssm.store.tables import sessions

PREFERENCES = "SSM-SessionManagerRunShell"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str]]:
    server = ApiServer(tmp_path_factory.mktemp("documents") / "data").start()
    try:
        activation = server.client().create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=1)
        node = register_node(server, activation["ActivationCode"], activation["ActivationId"])
        connect_instance(server, node.instance_id)
        yield server, node.instance_id
    finally:
        server.stop()


def _row(server: ApiServer, session_id: str) -> dict[str, Any]:
    async def work(engine: Any) -> dict[str, Any]:
        async with engine.connect() as conn:
            result = await conn.execute(sa.select(sessions).where(sessions.c.session_id == session_id))
            return dict(result.mappings().one())

    return server.db(work)


def _error(excinfo: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def _preferences(**inputs: Any) -> str:
    return json.dumps(
        {
            "schemaVersion": "1.0",
            "description": "Session Manager preferences",
            "sessionType": "Standard_Stream",
            "inputs": inputs,
        }
    )


def test_builtin_documents_are_there_from_the_first_start(system: tuple[ApiServer, str]) -> None:
    server, _ = system
    ssm = server.client()
    names = {d["Name"]: d for d in ssm.list_documents()["DocumentIdentifiers"]}
    for name in (
        "AWS-StartSSHSession",
        "AWS-StartPortForwardingSession",
        "AWS-StartInteractiveCommand",
        PREFERENCES,
    ):
        assert name in names, name
        assert names[name]["DocumentType"] == "Session"
    assert names["AWS-StartSSHSession"]["Owner"] == "Amazon"
    assert names[PREFERENCES]["Owner"] == "123456789012"

    amazon = ssm.list_documents(Filters=[{"Key": "Owner", "Values": ["Amazon"]}])["DocumentIdentifiers"]
    assert PREFERENCES not in {d["Name"] for d in amazon} and "AWS-StartSSHSession" in {
        d["Name"] for d in amazon
    }

    document = ssm.get_document(Name="AWS-StartSSHSession")
    content = json.loads(document["Content"])
    assert content["sessionType"] == "Port" and content["parameters"]["portNumber"]["default"] == "22"
    described = ssm.describe_document(Name="AWS-StartPortForwardingSession")["Document"]
    assert {p["Name"] for p in described["Parameters"]} == {"portNumber", "localPortNumber"}
    assert described["HashType"] == "Sha256" and described["DefaultVersion"] == "1"

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.update_document(
            Name="AWS-StartSSHSession", Content=content and json.dumps(content), DocumentVersion="$LATEST"
        )
    assert _error(excinfo)[0] == "InvalidDocumentOperation"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.delete_document(Name="AWS-StartSSHSession")
    assert _error(excinfo)[0] == "InvalidDocumentOperation"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.get_document(Name="No-Such-Document")
    assert _error(excinfo)[0] == "InvalidDocument"


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"idleSessionTimeout": "90"}, "idleSessionTimeout"),
        ({"maxSessionDuration": "0"}, "maxSessionDuration"),
        ({"runAsEnabled": "maybe"}, "runAsEnabled"),
        ({"cloudWatchStreamingEnabled": 3}, "cloudWatchStreamingEnabled"),
        ({"s3BucketName": ["a"]}, "s3BucketName"),
        ({"shellProfile": "echo hi"}, "shellProfile"),
    ],
)
def test_bad_preferences_are_rejected_naming_the_field(
    system: tuple[ApiServer, str], inputs: dict[str, Any], field: str
) -> None:
    server, _ = system
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client().update_document(
            Name=PREFERENCES, Content=_preferences(**inputs), DocumentVersion="$LATEST", DocumentFormat="JSON"
        )
    code, message = _error(excinfo)
    assert code == "InvalidDocumentContent"
    assert field in message


def test_preferences_apply_to_new_sessions(system: tuple[ApiServer, str]) -> None:
    server, instance = system
    ssm = server.client()
    content = _preferences(
        idleSessionTimeout="7",
        maxSessionDuration="90",
        s3BucketName="audit",
        s3KeyPrefix="sessions",
        cloudWatchLogGroupName="/openssm/sessions",
        cloudWatchStreamingEnabled=True,
        runAsEnabled=True,
        runAsDefaultUser="operator",
        shellProfile={"linux": "cd /tmp", "windows": ""},
    )
    saved = ssm.update_document(Name=PREFERENCES, Content=content, DocumentVersion="$LATEST")[
        "DocumentDescription"
    ]
    assert saved["DefaultVersion"] == saved["DocumentVersion"]
    again = json.loads(ssm.get_document(Name=PREFERENCES)["Content"])
    assert again["inputs"]["idleSessionTimeout"] == "7"

    session_id = ssm.start_session(Target=instance)["SessionId"]
    row = _row(server, session_id)
    assert row["idle_session_timeout"] == 7 and row["max_session_duration"] == 90
    assert row["run_as_user"] == "operator"
    assert row["document_content"]["inputs"]["s3BucketName"] == "audit"
    assert row["document_content"]["inputs"]["shellProfile"]["linux"] == "cd /tmp"
    described = ssm.describe_sessions(State="Active", Filters=[{"key": "SessionId", "value": session_id}])
    assert described["Sessions"][0]["MaxSessionDuration"] == "90"

    # The SSMSessionRunAs tag on the IAM user overrides runAsDefaultUser.
    allow_all = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}],
    }
    tagged = make_user(server, "tagged-user", allow_all, tags={"SSMSessionRunAs": "deploy"})
    tagged_session = server.client(credentials=tagged).start_session(Target=instance)["SessionId"]
    assert _row(server, tagged_session)["run_as_user"] == "deploy"

    # Duplicate content is refused; a later version can be made default explicitly.
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.update_document(Name=PREFERENCES, Content=content, DocumentVersion="$LATEST")
    assert _error(excinfo)[0] == "DuplicateDocumentContent"
    relaxed = ssm.update_document(
        Name=PREFERENCES, Content=_preferences(idleSessionTimeout="3"), DocumentVersion="$LATEST"
    )["DocumentDescription"]
    assert _row(server, ssm.start_session(Target=instance)["SessionId"])["idle_session_timeout"] == 3
    ssm.update_document_default_version(Name=PREFERENCES, DocumentVersion=saved["DocumentVersion"])
    assert _row(server, ssm.start_session(Target=instance)["SessionId"])["idle_session_timeout"] == 7
    ssm.update_document_default_version(Name=PREFERENCES, DocumentVersion=relaxed["DocumentVersion"])


def test_custom_session_document_in_yaml(system: tuple[ApiServer, str]) -> None:
    server, instance = system
    ssm = server.client()
    document: dict[str, Any] = {
        "schemaVersion": "1.0",
        "description": "Tail a log file",
        "sessionType": "InteractiveCommands",
        "parameters": {
            "logfile": {"type": "String", "default": "/var/log/syslog", "allowedPattern": "^/[a-z/]+$"}
        },
        "properties": {"linux": {"commands": "tail -f {{ logfile }}", "runAsElevated": False}},
    }
    created = ssm.create_document(
        Name="Ops-TailLog", Content=yaml.safe_dump(document), DocumentType="Session", DocumentFormat="YAML"
    )["DocumentDescription"]
    assert created["DocumentFormat"] == "YAML" and created["Owner"] == "123456789012"
    assert created["Parameters"] == [{"Name": "logfile", "Type": "String", "DefaultValue": "/var/log/syslog"}]
    as_json = ssm.get_document(Name="Ops-TailLog", DocumentFormat="JSON")
    assert json.loads(as_json["Content"])["properties"]["linux"]["commands"] == "tail -f {{ logfile }}"

    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.create_document(
            Name="Ops-TailLog",
            Content=yaml.safe_dump(document),
            DocumentType="Session",
            DocumentFormat="YAML",
        )
    assert _error(excinfo)[0] == "DocumentAlreadyExists"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.create_document(
            Name="Ops-Bad", Content='{"schemaVersion": "1.0", "sessionType": "Nope"}', DocumentType="Session"
        )
    code, message = _error(excinfo)
    assert code == "InvalidDocumentContent" and "sessionType" in message
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.create_document(Name="AWS-Mine", Content=json.dumps(document), DocumentType="Session")
    assert _error(excinfo)[0] == "ValidationException"

    session_id = ssm.start_session(
        Target=instance, DocumentName="Ops-TailLog", Parameters={"logfile": ["/var/log/messages"]}
    )["SessionId"]
    row = _row(server, session_id)
    assert row["session_type"] == "InteractiveCommands"
    assert row["document_content"]["properties"]["linux"]["commands"] == "tail -f {{ logfile }}"
    assert row["parameters"] == {"logfile": ["/var/log/messages"]}

    document["properties"]["linux"]["commands"] = "less {{ logfile }}"
    updated = ssm.update_document(
        Name="Ops-TailLog",
        Content=json.dumps(document),
        DocumentVersion="1",
        DocumentFormat="JSON",
        VersionName="less",
    )["DocumentDescription"]
    assert updated["DocumentVersion"] == "2" and updated["DefaultVersion"] == "1"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.update_document(Name="Ops-TailLog", Content=json.dumps(document) + " ", DocumentVersion="1")
    assert _error(excinfo)[0] == "InvalidDocumentVersion"
    assert ssm.get_document(Name="Ops-TailLog", VersionName="less")["DocumentVersion"] == "2"
    ssm.update_document_default_version(Name="Ops-TailLog", DocumentVersion="2")
    assert (
        "less"
        in _row(server, ssm.start_session(Target=instance, DocumentName="Ops-TailLog")["SessionId"])[
            "document_content"
        ]["properties"]["linux"]["commands"]
    )

    versions = ssm.list_document_versions(Name="Ops-TailLog")["DocumentVersions"]
    assert [(v["DocumentVersion"], v["IsDefaultVersion"], v.get("VersionName")) for v in versions] == [
        ("1", False, None),
        ("2", True, "less"),
    ]
    assert [v["DocumentFormat"] for v in versions] == ["YAML", "JSON"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.delete_document(Name="Ops-TailLog", DocumentVersion="2")
    assert _error(excinfo)[0] == "InvalidDocumentOperation"
    ssm.delete_document(Name="Ops-TailLog", DocumentVersion="1")
    mine = ssm.list_documents(Filters=[{"Key": "Owner", "Values": ["Self"]}])["DocumentIdentifiers"]
    assert "Ops-TailLog" in {d["Name"] for d in mine}
    ssm.delete_document(Name="Ops-TailLog")
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.describe_document(Name="Ops-TailLog")
    assert _error(excinfo)[0] == "InvalidDocument"


def test_document_calls_are_authorised(system: tuple[ApiServer, str]) -> None:
    server, _ = system
    read_only = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ssm:GetDocument", "ssm:ListDocuments"], "Resource": "*"}
        ],
    }
    reader = server.client(credentials=make_user(server, "doc-reader", read_only))
    assert reader.get_document(Name="AWS-StartSSHSession")["Name"] == "AWS-StartSSHSession"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        reader.update_document(
            Name=PREFERENCES, Content=_preferences(idleSessionTimeout="5"), DocumentVersion="$LATEST"
        )
    assert _error(excinfo)[0] == "AccessDeniedException"

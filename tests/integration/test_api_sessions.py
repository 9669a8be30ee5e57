"""StartSession / ResumeSession / TerminateSession / DescribeSessions against a real server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
import sqlalchemy as sa
from tests.integration.api_harness import ApiServer, connect_instance, make_user, register_node
from tests.support.wait import wait_until

from openssm.store import sessions as session_store
from openssm.store.secrets import hash_token
from openssm.store.sessions import SessionRow
from openssm.store.tables import audit_log, channel_tokens

ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ApiServer, str, str]]:
    server = ApiServer(tmp_path_factory.mktemp("sessions") / "data").start()
    try:
        ssm = server.client()
        activation = ssm.create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=2)
        online = register_node(server, activation["ActivationCode"], activation["ActivationId"], "f1")
        offline = register_node(server, activation["ActivationCode"], activation["ActivationId"], "f2")
        connect_instance(server, online.instance_id)
        yield server, online.instance_id, offline.instance_id
    finally:
        server.stop()


def _session_row(server: ApiServer, session_id: str) -> SessionRow:
    async def work(engine: Any) -> SessionRow:
        row = await session_store.get(engine, session_id)
        assert row is not None
        return row

    return server.db(work)


def _token_row(server: ApiServer, token: str) -> dict[str, Any] | None:
    async def work(engine: Any) -> dict[str, Any] | None:
        async with engine.connect() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(channel_tokens).where(channel_tokens.c.token_hash == hash_token(token))
                    )
                )
                .mappings()
                .first()
            )
            return dict(row) if row else None

    return server.db(work)


def _code(exc: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_start_describe_resume_terminate(system: tuple[ApiServer, str, str]) -> None:
    server, online, _ = system
    ssm = server.client()
    started = ssm.start_session(Target=online, Reason="maintenance")
    assert set(started) - {"ResponseMetadata"} == {"SessionId", "TokenValue", "StreamUrl"}
    session_id = started["SessionId"]
    assert re.fullmatch(r"admin-[0-9a-f]{17}", session_id)
    assert (
        started["StreamUrl"]
        == f"ws://127.0.0.1:{server.port}/v1/data-channel/{session_id}?role=publish_subscribe"
    )
    row = _session_row(server, session_id)
    assert row.status == "Connecting" and row.node_id == server.config.node_id
    assert row.document_name == "SSM-SessionManagerRunShell" and row.session_type == "Standard_Stream"
    assert row.owner_arn == f"arn:aws:iam::{ACCOUNT}:user/admin" and row.idle_session_timeout == 20
    assert row.document_content["sessionType"] == "Standard_Stream" and "inputs" in row.document_content
    token = _token_row(server, started["TokenValue"])
    assert token is not None and token["kind"] == "client" and token["channel_id"] == session_id

    active = ssm.describe_sessions(State="Active", Filters=[{"key": "Target", "value": online}])["Sessions"]
    assert [s["SessionId"] for s in active] == [session_id]
    assert active[0]["Owner"] == f"arn:aws:iam::{ACCOUNT}:user/admin" and active[0]["Reason"] == "maintenance"
    assert ssm.describe_sessions(State="Active", Filters=[{"key": "Owner", "value": "x"}])["Sessions"] == []

    resumed = ssm.resume_session(SessionId=session_id)
    assert resumed["SessionId"] == session_id and resumed["StreamUrl"] == started["StreamUrl"]
    assert resumed["TokenValue"] != started["TokenValue"]

    assert ssm.terminate_session(SessionId=session_id)["SessionId"] == session_id
    wait_until(lambda: _session_row(server, session_id).status == "Terminated", "the session ended", 10)
    ended = _session_row(server, session_id)
    assert ended.status == "Terminated"  # the gateway node ends it and records why
    assert ended.termination_reason == f"Terminated by arn:aws:iam::{ACCOUNT}:user/admin"
    history = ssm.describe_sessions(State="History", Filters=[{"key": "SessionId", "value": session_id}])
    (record,) = history["Sessions"]
    assert record["Status"] == "Terminated" and "EndDate" in record
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.resume_session(SessionId=session_id)
    assert _code(excinfo) == "DoesNotExistException"


def test_port_forwarding_parameters(system: tuple[ApiServer, str, str]) -> None:
    server, online, _ = system
    ssm = server.client()
    started = ssm.start_session(
        Target=online,
        DocumentName="AWS-StartPortForwardingSession",
        Parameters={"portNumber": ["3389"], "localPortNumber": ["13389"]},
    )
    row = _session_row(server, started["SessionId"])
    assert row.session_type == "Port"
    assert row.parameters == {"portNumber": ["3389"], "localPortNumber": ["13389"]}
    assert "{{" in str(row.document_content["properties"])  # placeholders reach the agent unresolved
    defaults = ssm.start_session(Target=online, DocumentName="AWS-StartPortForwardingSession")
    assert _session_row(server, defaults["SessionId"]).parameters["portNumber"] == ["80"]
    for parameters, named in (({"portNumber": ["http"]}, "portNumber"), ({"nope": ["1"]}, "nope")):
        with pytest.raises(botocore.exceptions.ClientError) as excinfo:
            ssm.start_session(
                Target=online, DocumentName="AWS-StartPortForwardingSession", Parameters=parameters
            )
        assert _code(excinfo) == "ValidationException"
        assert named in excinfo.value.response["Error"]["Message"]


def test_start_session_refusals(system: tuple[ApiServer, str, str]) -> None:
    server, online, offline = system
    ssm = server.client()
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.start_session(Target=offline)
    assert _code(excinfo) == "TargetNotConnected"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.start_session(Target="mi-00000000000000000")
    assert _code(excinfo) == "TargetNotConnected"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.start_session(Target=online, DocumentName="No-Such-Document")
    assert _code(excinfo) == "InvalidDocument"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.terminate_session(SessionId="admin-00000000000000000")
    assert _code(excinfo) == "DoesNotExistException"


def test_document_access_check_and_own_sessions(system: tuple[ApiServer, str, str]) -> None:
    server, online, _ = system
    region = server.config.region
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": [
                    f"arn:aws:ssm:{region}:{ACCOUNT}:managed-instance/*",
                    f"arn:aws:ssm:{region}::document/AWS-StartPortForwardingSession",
                ],
                "Condition": {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}},
            },
            {"Effect": "Allow", "Action": "ssm:DescribeSessions", "Resource": "*"},
            {
                "Effect": "Allow",
                "Action": ["ssm:TerminateSession", "ssm:ResumeSession"],
                "Resource": f"arn:aws:ssm:{region}:{ACCOUNT}:session/${{aws:username}}-*",
            },
        ],
    }
    carol = server.client("ssm", make_user(server, "carol", policy))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        carol.start_session(Target=online)  # no document named: the check demands one
    assert _code(excinfo) == "AccessDeniedException"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        carol.start_session(Target=online, DocumentName="AWS-StartSSHSession")
    assert _code(excinfo) == "AccessDeniedException"
    assert "document/AWS-StartSSHSession" in excinfo.value.response["Error"]["Message"]
    mine = carol.start_session(Target=online, DocumentName="AWS-StartPortForwardingSession")
    assert mine["SessionId"].startswith("carol-")
    theirs = server.client().start_session(Target=online)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        carol.terminate_session(SessionId=theirs["SessionId"])
    assert _code(excinfo) == "AccessDeniedException"
    assert carol.terminate_session(SessionId=mine["SessionId"])["SessionId"] == mine["SessionId"]


def test_only_the_sessions_owner_may_resume_it(system: tuple[ApiServer, str, str]) -> None:
    """Resuming takes the shell over, so another principal is refused however broad its policy (it
    may still terminate the session); the refusal is an explicit deny in the audit trail."""
    server, online, _ = system
    everything = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}],
    }
    erin = server.client("ssm", make_user(server, "erin", everything))
    theirs = server.client().start_session(Target=online)["SessionId"]
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        erin.resume_session(SessionId=theirs)
    assert _code(excinfo) == "AccessDeniedException"
    message = excinfo.value.response["Error"]["Message"]
    assert "user/erin is not authorized to perform: ssm:ResumeSession on resource: arn:aws:ssm:" in message
    assert f"belongs to arn:aws:iam::{ACCOUNT}:user/admin" in message

    async def decisions(engine: Any) -> list[tuple[str, str | None]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(audit_log.c.decision, audit_log.c.matched_statement).where(
                    audit_log.c.action == "ssm:ResumeSession", audit_log.c.resource.endswith(theirs)
                )
            )
            return [(row.decision, row.matched_statement) for row in rows]

    [(decision, rule)] = server.db(decisions)
    assert decision == "explicitDeny" and rule is not None and "only the principal that started" in rule
    mine = erin.start_session(Target=online)["SessionId"]
    assert erin.resume_session(SessionId=mine)["SessionId"] == mine
    assert erin.terminate_session(SessionId=theirs)["SessionId"] == theirs  # terminating is the policy's call


def test_describe_sessions_pages_and_filters(system: tuple[ApiServer, str, str]) -> None:
    server, online, _ = system
    ssm = server.client()
    ids = {ssm.start_session(Target=online)["SessionId"] for _ in range(3)}
    seen: set[str] = set()
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"State": "Active", "MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        answer = ssm.describe_sessions(**kwargs)
        assert len(answer["Sessions"]) <= 2
        seen.update(s["SessionId"] for s in answer["Sessions"])
        token = answer.get("NextToken")
        if not token:
            break
    assert ids <= seen
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ssm.describe_sessions(State="Active", Filters=[{"key": "Bogus", "value": "x"}])
    assert _code(excinfo) in ("InvalidFilterKey", "ValidationException")
    after = ssm.describe_sessions(
        State="Active", Filters=[{"key": "InvokedAfter", "value": "2000-01-01T00:00:00Z"}]
    )
    assert ids <= {s["SessionId"] for s in after["Sessions"]}


def test_tag_based_access(system: tuple[ApiServer, str, str]) -> None:
    """AWS's "restrict access based on tags" example, with a Deny on production layered on top."""
    server, online, _ = system
    ssm = server.client()
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": "*",
                "Condition": {"StringLike": {"ssm:resourceTag/Finance": ["Web*"]}},
            },
            {
                "Effect": "Deny",
                "Action": "ssm:StartSession",
                "Resource": "*",
                "Condition": {"StringEquals": {"ssm:resourceTag/Environment": "Prod"}},
            },
        ],
    }
    dave = server.client("ssm", make_user(server, "dave", policy))
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        dave.start_session(Target=online)  # untagged
    assert _code(excinfo) == "AccessDeniedException"
    ssm.add_tags_to_resource(
        ResourceType="ManagedInstance", ResourceId=online, Tags=[{"Key": "Finance", "Value": "WebServers"}]
    )
    assert ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=online)["TagList"] == [
        {"Key": "Finance", "Value": "WebServers"}
    ]
    assert dave.start_session(Target=online)["SessionId"].startswith("dave-")
    ssm.add_tags_to_resource(
        ResourceType="ManagedInstance", ResourceId=online, Tags=[{"Key": "Environment", "Value": "Prod"}]
    )
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        dave.start_session(Target=online)
    assert "explicit deny" in excinfo.value.response["Error"]["Message"]
    ssm.remove_tags_from_resource(
        ResourceType="ManagedInstance", ResourceId=online, TagKeys=["Environment", "Finance"]
    )
    assert ssm.list_tags_for_resource(ResourceType="ManagedInstance", ResourceId=online)["TagList"] == []

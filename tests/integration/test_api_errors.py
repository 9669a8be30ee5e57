"""Error behaviour of the API endpoint against a real server: shapes, codes, and messages."""

from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
import sqlalchemy as sa
from botocore.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine
from tests.integration.api_harness import ApiServer, make_user

from openssm.api.registry import json_action
from openssm.api.request import ApiRequest
from openssm.store.tables import audit_log


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = ApiServer(tmp_path_factory.mktemp("errors") / "data").start()
    try:
        yield running
    finally:
        running.stop()


def test_unknown_operation(server: ApiServer) -> None:
    result = server.call_json("AmazonSSM.NoSuchOperation", {})
    assert result.status == 400
    assert result.json()["__type"] == "UnknownOperationException"
    assert result.headers["x-amzn-ErrorType"] == "UnknownOperationException"


@pytest.mark.parametrize(
    ("body", "member"),
    [
        (b"{not json", "JSON"),
        (b"[1, 2]", "JSON object"),
        (b"[" * 200_000 + b"]" * 200_000, "nested"),
        (b'{"Target": 5}', "Target"),
        (b"{}", "Target"),
        (b'{"Target": "mi-0123456789abcdef0", "Parameters": {"command": "ls"}}', "Parameters.command"),
        (b'{"Target": "mi-0123456789abcdef0", "DocumentName": "x"}', "DocumentName"),
    ],
)
def test_validation_errors_name_the_member(server: ApiServer, body: bytes, member: str) -> None:
    result = server.call_json("AmazonSSM.StartSession", body)
    assert result.status == 400
    answer = result.json()
    assert answer["__type"] == "ValidationException"
    assert member in answer["message"]


def test_max_results_range(server: ApiServer) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client().describe_instance_information(MaxResults=51)
    assert excinfo.value.response["Error"]["Code"] == "ValidationException"
    assert "MaxResults" in excinfo.value.response["Error"]["Message"]
    bad = server.call_json("AmazonSSM.DescribeInstanceInformation", {"MaxResults": 3})
    assert bad.json()["__type"] == "ValidationException"
    token = server.call_json("AmazonSSM.DescribeInstanceInformation", {"NextToken": "garbage"})
    assert token.json()["__type"] == "InvalidNextToken"


def test_unsigned_request_is_refused(server: ApiServer) -> None:
    result = server.call_json("AmazonSSM.DescribeSessions", {"State": "Active"}, signed=False)
    assert result.status in (400, 403)
    assert result.json()["__type"].startswith("MissingAuthenticationToken")


def test_wrong_secret_and_unknown_key(server: ApiServer) -> None:
    key, _ = server.admin_credentials
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client("ssm", (key, "not-the-secret")).describe_sessions(State="Active")
    assert excinfo.value.response["Error"]["Code"] == "InvalidSignatureException"
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client("ssm", ("AKIAUNKNOWNUNKNOWN00", "x")).describe_sessions(State="Active")
    assert excinfo.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_clock_skew_is_refused(server: ApiServer) -> None:
    late = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    result = server.call_json("AmazonSSM.DescribeSessions", {"State": "Active"}, now=late)
    assert result.status in (400, 403)
    assert result.json()["__type"] == "InvalidSignatureException"
    assert "expired" in result.json()["message"].lower()


def test_wrong_signing_service(server: ApiServer) -> None:
    result = server.call_json("AmazonSSM.DescribeSessions", {"State": "Active"}, service="ec2messages")
    assert result.json()["__type"] == "InvalidSignatureException"
    assert "'ssm'" in result.json()["message"]


def test_body_size_is_bounded(server: ApiServer) -> None:
    result = server.call_json("AmazonSSM.DescribeSessions", b'{"State": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert result.status == 413


def test_access_denied_in_aws_words_and_audited(server: ApiServer) -> None:
    nobody = make_user(server, "nobody", None)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client("ssm", nobody).describe_sessions(State="Active")
    error = excinfo.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    assert error["Message"] == (
        "User: arn:aws:iam::123456789012:user/nobody is not authorized to perform: ssm:DescribeSessions "
        "on resource: * because no identity-based policy allows the ssm:DescribeSessions action"
    )
    denied = make_user(
        server,
        "denied",
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "ssm:*", "Resource": "*"},
                {"Sid": "NoSessions", "Effect": "Deny", "Action": "ssm:DescribeSessions", "Resource": "*"},
            ],
        },
    )
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client("ssm", denied).describe_sessions(State="Active")
    assert excinfo.value.response["Error"]["Message"].endswith(
        "ssm:DescribeSessions on resource: * with an explicit deny in an identity-based policy"
    )
    server.client("ssm", denied).describe_instance_information()

    async def audit_rows(engine: AsyncEngine) -> list[tuple[str, str, str | None]]:
        async with engine.connect() as conn:
            result = await conn.execute(
                sa.select(audit_log.c.decision, audit_log.c.action, audit_log.c.matched_statement)
                .where(audit_log.c.principal_arn == "arn:aws:iam::123456789012:user/denied")
                .order_by(audit_log.c.id)
            )
            return [(row[0], row[1], row[2]) for row in result.all()]

    rows = server.db(audit_rows)
    assert [(row[0], row[1]) for row in rows] == [
        ("explicitDeny", "ssm:DescribeSessions"),
        ("allowed", "ssm:DescribeInstanceInformation"),
    ]
    assert rows[0][2] is not None and "NoSessions" in rows[0][2]


def test_query_protocol_unknown_action(server: ApiServer) -> None:
    result = server.call_query("iam", b"Action=NoSuchAction&Version=2010-05-08")
    assert result.status == 400
    text = result.body.decode()
    assert "<Code>InvalidAction</Code>" in text and "<Type>Sender</Type>" in text and "<RequestId>" in text


def test_region_outside_the_server_is_refused(server: ApiServer) -> None:
    key, secret = server.admin_credentials
    client = boto3.client(
        "ssm",
        endpoint_url=server.endpoint,
        region_name="eu-west-3",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        client.describe_sessions(State="Active")
    assert "eu-west-3" in excinfo.value.response["Error"]["Message"]


def test_data_dir_files_are_private(server: ApiServer) -> None:
    for name in ("credentials", "config", "master.key"):
        assert (server.config.data_dir / name).stat().st_mode & 0o077 == 0, name
    assert pathlib.Path(server.config.data_dir).stat().st_mode & 0o077 == 0


@json_action("OpenSSMTest", "Explode")
async def _explode(request: ApiRequest, body: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("secret internal detail")


def test_internal_errors_hide_details(server: ApiServer) -> None:
    result = server.call_json("OpenSSMTest.Explode", {})
    assert result.status == 500
    assert result.json() == {"__type": "InternalServerError", "message": "An internal error occurred."}
    assert b"secret internal detail" not in result.body


def test_last_used_is_recorded(server: ApiServer) -> None:
    from openssm.store import access_keys

    key, secret = make_user(
        server,
        "stamped",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:DescribeSessions", "Resource": "*"}],
        },
    )
    assert server.db(lambda engine: access_keys.find(engine, key)).last_used_at is None  # type: ignore[union-attr]
    server.client("ssm", (key, secret)).describe_sessions(State="Active")
    row = server.db(lambda engine: access_keys.find(engine, key))
    assert row is not None and row.last_used_at is not None


def _temporary_credentials(server: ApiServer, user: str, *, issued_ago: dt.timedelta) -> Any:
    """An hour's session credentials of ``user``, issued ``issued_ago``."""
    from openssm.store import access_keys
    from openssm.store.secrets import SecretCipher

    async def issue(engine: AsyncEngine) -> access_keys.IssuedCredentials:
        return await access_keys.create_temporary(
            engine,
            SecretCipher.for_data_dir(server.config.data_dir),
            principal_type="user",
            principal_name=user,
            role_name=None,
            now=dt.datetime.now(dt.UTC) - issued_ago,
            lifetime=dt.timedelta(hours=1),
        )

    return server.db(issue)


def test_temporary_credentials_use_is_not_stamped(server: ApiServer) -> None:
    """AWS tracks last use for users' access keys only; a fleet's role credentials would otherwise
    be a database write per agent heartbeat."""

    from openssm.store import access_keys

    make_user(
        server,
        "temporary",
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:DescribeSessions", "Resource": "*"}],
        },
    )

    issued = _temporary_credentials(server, "temporary", issued_ago=dt.timedelta(0))
    assert issued.session_token is not None
    client = server.client("ssm", (issued.access_key_id, issued.secret_access_key, issued.session_token))
    client.describe_sessions(State="Active")  # authenticated and served
    row = server.db(lambda engine: access_keys.find(engine, issued.access_key_id))
    assert row is not None and row.temporary and row.last_used_at is None


def test_group_inline_and_attached_policies_apply(server: ApiServer) -> None:
    import datetime as dt
    import json

    from openssm.store.tables import (
        iam_attachments,
        iam_group_members,
        iam_groups,
        iam_inline_policies,
        iam_policies,
        iam_policy_versions,
    )

    member = make_user(server, "grouped", None)
    client = server.client("ssm", member)
    with pytest.raises(botocore.exceptions.ClientError):
        client.describe_sessions(State="Active")

    def allow(action: str) -> str:
        return json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}
        )

    async def setup(engine: AsyncEngine) -> None:
        now = dt.datetime.now(dt.UTC)
        arn = "arn:aws:iam::123456789012:policy/ListNodes"
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(iam_groups).values(
                    name="ops",
                    group_id="AGPAEXAMPLE0000000001",
                    arn="arn:aws:iam::123456789012:group/ops",
                    path="/",
                    created_at=now,
                )
            )
            await conn.execute(sa.insert(iam_group_members).values(group_name="ops", user_name="grouped"))
            await conn.execute(
                sa.insert(iam_inline_policies).values(
                    principal_type="group",
                    principal_name="ops",
                    policy_name="sessions",
                    document=allow("ssm:DescribeSessions"),
                )
            )
            await conn.execute(
                sa.insert(iam_policies).values(
                    arn=arn,
                    name="ListNodes",
                    policy_id="ANPAEXAMPLE0000000001",
                    path="/",
                    default_version_id="v2",
                    aws_managed=False,
                    created_at=now,
                    updated_at=now,
                )
            )
            await conn.execute(
                sa.insert(iam_policy_versions).values(
                    policy_arn=arn, version_id="v1", document=allow("ssm:DescribeActivations"), created_at=now
                )
            )
            await conn.execute(
                sa.insert(iam_policy_versions).values(
                    policy_arn=arn,
                    version_id="v2",
                    document=allow("ssm:DescribeInstanceInformation"),
                    created_at=now,
                )
            )
            await conn.execute(
                sa.insert(iam_attachments).values(
                    principal_type="group", principal_name="ops", policy_arn=arn
                )
            )

    server.db(setup)
    client.describe_sessions(State="Active")  # group inline policy
    client.describe_instance_information()  # attached policy, default version
    with pytest.raises(botocore.exceptions.ClientError):
        client.describe_activations()  # only in a non-default version


def test_inactive_and_expired_keys_are_refused(server: ApiServer) -> None:
    import datetime as dt

    from openssm.store.tables import access_keys as access_keys_table

    allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]}
    key, secret = make_user(server, "paused", allow)
    server.client("ssm", (key, secret)).describe_sessions(State="Active")

    async def deactivate(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                sa.update(access_keys_table)
                .where(access_keys_table.c.access_key_id == key)
                .values(status="Inactive")
            )

    server.db(deactivate)
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client("ssm", (key, secret)).describe_sessions(State="Active")
    assert excinfo.value.response["Error"]["Code"] == "UnrecognizedClientException"

    issued = _temporary_credentials(server, "paused", issued_ago=dt.timedelta(hours=2))
    assert issued.session_token is not None
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        server.client(
            "ssm", (issued.access_key_id, issued.secret_access_key, issued.session_token)
        ).describe_sessions(State="Active")
    assert excinfo.value.response["Error"]["Code"] == "ExpiredTokenException"

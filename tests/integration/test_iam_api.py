"""IAM and STS Query APIs against a real ``openssm server`` process, driven by boto3 and the AWS CLI.

The operator workflow (operator-workflow.md, "IAM" step) runs verbatim with the real ``aws`` CLI:
create the policy, the group, attach, create the user, add it to the group, create an access key,
configure a profile and call ``sts get-caller-identity`` as that user.
"""

from __future__ import annotations

import configparser
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from tests.support import postgres
from tests.support.net import free_port

pytestmark = pytest.mark.slow

ACCOUNT = "123456789012"
REGION = "ap-northeast-1"
VENV_BIN = pathlib.Path(sys.executable).parent
OPERATOR_POLICIES = pathlib.Path(__file__).parents[1] / "unit" / "iam" / "operator_policies.md"


def operator_policy(number: int) -> str:
    blocks = re.findall(r"```json\n(.*?)```", OPERATOR_POLICIES.read_text(), re.S)
    return str(blocks[number - 1])


class Server:
    def __init__(self, data_dir: pathlib.Path) -> None:
        self.data_dir = data_dir
        # OPENSSM_TEST_DATABASE=postgresql: the scale-out store, in a database of its own.
        self.postgres_database: str | None = None
        database: list[str] = []
        if os.environ.get("OPENSSM_TEST_DATABASE") == "postgresql":
            postgres.require_postgres()
            self.postgres_database, url = postgres.create_database()
            database = ["--database-url", url]
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(data_dir.parent / "server.log", "wb")
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "openssm"),
                "server",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--region",
                REGION,
                "--account-id",
                ACCOUNT,
                "--log-level",
                "WARNING",
                *database,
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(data_dir.parent / 'server.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    if (data_dir / "credentials").exists():
                        return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        if self.postgres_database is not None:
            postgres.drop_database(self.postgres_database)

    def credentials(self, profile: str = "openssm") -> tuple[str, str]:
        parser = configparser.ConfigParser()
        parser.read(self.data_dir / "credentials")
        return parser[profile]["aws_access_key_id"], parser[profile]["aws_secret_access_key"]

    def client(self, service: str, credentials: tuple[str, str] | None = None) -> Any:
        key, secret = credentials or self.credentials()
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"max_attempts": 1}),
        )

    def aws(
        self, *args: str, profile: str = "openssm", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "AWS_SHARED_CREDENTIALS_FILE": str(self.data_dir / "credentials"),
            "AWS_CONFIG_FILE": str(self.data_dir / "config"),
            "AWS_DEFAULT_REGION": REGION,
        }
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
            env.pop(name, None)
        command = [
            str(VENV_BIN / "aws"),
            "--profile",
            profile,
            "--endpoint-url",
            self.endpoint,
            "--output",
            "json",
            *args,
        ]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed: {result.stderr}")
        return result


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("iam") / "data")
    try:
        yield running
    finally:
        running.stop()


def error_code(info: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    response = info.value.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


def test_operator_workflow_with_the_aws_cli(server: Server, tmp_path: pathlib.Path) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(operator_policy(1))
    created = json.loads(
        server.aws(
            "iam",
            "create-policy",
            "--policy-name",
            "SessionUsers",
            "--policy-document",
            f"file://{policy_file}",
        ).stdout
    )
    policy_arn = created["Policy"]["Arn"]
    assert policy_arn == f"arn:aws:iam::{ACCOUNT}:policy/SessionUsers"
    assert created["Policy"]["DefaultVersionId"] == "v1"

    group = json.loads(server.aws("iam", "create-group", "--group-name", "operators").stdout)
    assert group["Group"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/operators"
    server.aws("iam", "attach-group-policy", "--group-name", "operators", "--policy-arn", policy_arn)
    user = json.loads(server.aws("iam", "create-user", "--user-name", "ayumi").stdout)
    assert user["User"]["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/ayumi"
    assert user["User"]["UserId"].startswith("AIDA")
    server.aws("iam", "add-user-to-group", "--group-name", "operators", "--user-name", "ayumi")
    key = json.loads(server.aws("iam", "create-access-key", "--user-name", "ayumi").stdout)["AccessKey"]
    assert key["Status"] == "Active" and key["AccessKeyId"].startswith("AKIA")

    # `aws configure --profile profilename`, non-interactively.
    server.aws("configure", "set", "aws_access_key_id", key["AccessKeyId"], profile="profilename")
    server.aws("configure", "set", "aws_secret_access_key", key["SecretAccessKey"], profile="profilename")
    server.aws("configure", "set", "region", REGION, profile="profilename")
    identity = json.loads(server.aws("sts", "get-caller-identity", profile="profilename").stdout)
    assert identity == {"UserId": user["User"]["UserId"], "Account": ACCOUNT, "Arn": user["User"]["Arn"]}

    # Membership and attachment are visible, and the policy grants no IAM rights to the new user.
    groups = json.loads(server.aws("iam", "list-groups-for-user", "--user-name", "ayumi").stdout)["Groups"]
    assert [g["GroupName"] for g in groups] == ["operators"]
    attached = json.loads(
        server.aws("iam", "list-attached-group-policies", "--group-name", "operators").stdout
    )
    assert attached["AttachedPolicies"] == [{"PolicyName": "SessionUsers", "PolicyArn": policy_arn}]
    denied = server.aws("iam", "list-users", profile="profilename", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr

    # The secret is shown once only and is not stored in clear.
    listed = json.loads(server.aws("iam", "list-access-keys", "--user-name", "ayumi").stdout)[
        "AccessKeyMetadata"
    ]
    assert [k["AccessKeyId"] for k in listed] == [key["AccessKeyId"]]
    assert "SecretAccessKey" not in listed[0]
    if server.postgres_database is None:  # the SQLite file holds no secret in clear
        assert key["SecretAccessKey"].encode() not in (server.data_dir / "openssm.db").read_bytes()

    # The simulator explains the operator's policy for this user.
    simulated = json.loads(
        server.aws(
            "iam",
            "simulate-principal-policy",
            "--policy-source-arn",
            user["User"]["Arn"],
            "--action-names",
            "ssm:TerminateSession",
            "--resource-arns",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/ayumi-0123456789abcdef0",
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/bob-0123456789abcdef0",
        ).stdout
    )["EvaluationResults"]
    assert [r["EvalDecision"] for r in simulated] == ["allowed", "implicitDeny"]
    assert simulated[0]["MatchedStatements"][0]["SourcePolicyId"] == policy_arn


def test_get_user_without_name_is_the_caller(server: Server) -> None:
    me = server.client("iam").get_user()["User"]
    assert me["UserName"] == "admin" and me["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin"
    assert server.client("sts").get_caller_identity()["Arn"] == me["Arn"]


def test_user_lifecycle_and_errors(server: Server) -> None:
    iam = server.client("iam")
    created = iam.create_user(UserName="kenji", Path="/eng/", Tags=[{"Key": "team", "Value": "db"}])["User"]
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/eng/kenji"
    assert iam.get_user(UserName="kenji")["User"]["Tags"] == [{"Key": "team", "Value": "db"}]
    with pytest.raises(ClientError) as info:
        iam.create_user(UserName="Kenji")  # names are unique regardless of case
    assert error_code(info)[:2] == ("EntityAlreadyExists", 409)
    with pytest.raises(ClientError) as info:
        iam.get_user(UserName="nobody")
    assert error_code(info)[:2] == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as info:
        iam.create_user(UserName="bad name")
    assert error_code(info)[:2] == ("ValidationError", 400)

    assert [u["UserName"] for u in iam.list_users(PathPrefix="/eng/")["Users"]] == ["kenji"]
    iam.tag_user(UserName="kenji", Tags=[{"Key": "cost", "Value": "42"}])
    iam.untag_user(UserName="kenji", TagKeys=["team"])
    assert iam.list_user_tags(UserName="kenji")["Tags"] == [{"Key": "cost", "Value": "42"}]

    iam.create_group(GroupName="dbas")
    iam.add_user_to_group(GroupName="dbas", UserName="kenji")
    assert [u["UserName"] for u in iam.get_group(GroupName="dbas")["Users"]] == ["kenji"]
    key_id = iam.create_access_key(UserName="kenji")["AccessKey"]["AccessKeyId"]
    iam.put_user_policy(UserName="kenji", PolicyName="inline", PolicyDocument=operator_policy(2))
    assert iam.get_user_policy(UserName="kenji", PolicyName="inline")["PolicyDocument"] == json.loads(
        operator_policy(2)
    )
    assert iam.list_user_policies(UserName="kenji")["PolicyNames"] == ["inline"]

    for expected in ("access keys", "policies", "groups"):
        with pytest.raises(ClientError) as info:
            iam.delete_user(UserName="kenji")
        code, status, message = error_code(info)
        assert (code, status) == ("DeleteConflict", 409) and expected in message
        if expected == "access keys":
            iam.delete_access_key(UserName="kenji", AccessKeyId=key_id)
        elif expected == "policies":
            iam.delete_user_policy(UserName="kenji", PolicyName="inline")
        else:
            with pytest.raises(ClientError) as group_info:
                iam.delete_group(GroupName="dbas")
            assert error_code(group_info)[:2] == ("DeleteConflict", 409)
            iam.remove_user_from_group(GroupName="dbas", UserName="kenji")
    iam.delete_user(UserName="kenji")
    iam.delete_group(GroupName="dbas")
    assert "kenji" not in [u["UserName"] for u in iam.list_users()["Users"]]


def test_policy_versions_and_attachments(server: Server) -> None:
    iam = server.client("iam")
    document = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "ssm:Describe*", "Resource": "*"}],
        }
    )
    arn = iam.create_policy(PolicyName="Readers", PolicyDocument=document, Description="read only")["Policy"][
        "Arn"
    ]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["Description"] == "read only"
    for number in range(2, 6):
        version = iam.create_policy_version(PolicyArn=arn, PolicyDocument=document, SetAsDefault=number == 3)
        assert version["PolicyVersion"]["VersionId"] == f"v{number}"
    with pytest.raises(ClientError) as info:
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=document)
    assert error_code(info)[:2] == ("LimitExceeded", 409)
    assert iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"] == "v3"
    fetched = iam.get_policy_version(PolicyArn=arn, VersionId="v3")["PolicyVersion"]
    assert fetched["Document"] == json.loads(document) and fetched["IsDefaultVersion"] is True

    iam.create_user(UserName="reader")
    iam.attach_user_policy(UserName="reader", PolicyArn=arn)
    assert iam.list_attached_user_policies(UserName="reader")["AttachedPolicies"] == [
        {"PolicyName": "Readers", "PolicyArn": arn}
    ]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    assert arn in [p["Arn"] for p in iam.list_policies(Scope="Local", OnlyAttached=True)["Policies"]]
    with pytest.raises(ClientError) as info:
        iam.delete_policy(PolicyArn=arn)
    assert error_code(info)[:2] == ("DeleteConflict", 409)
    iam.detach_user_policy(UserName="reader", PolicyArn=arn)
    with pytest.raises(ClientError) as info:
        iam.detach_user_policy(UserName="reader", PolicyArn=arn)
    assert error_code(info)[:2] == ("NoSuchEntity", 404)
    with pytest.raises(ClientError) as info:
        iam.delete_policy(PolicyArn=arn)  # AWS wants non-default versions deleted first
    assert error_code(info)[:2] == ("DeleteConflict", 409)
    for version in ("v1", "v2", "v4", "v5"):
        iam.delete_policy_version(PolicyArn=arn, VersionId=version)
    iam.delete_policy(PolicyArn=arn)
    with pytest.raises(ClientError) as info:
        iam.get_policy(PolicyArn=arn)
    assert error_code(info)[:2] == ("NoSuchEntity", 404)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        (
            '{"Version": "2012-10-17", "Statement": [{"Action": "*", "Resource": "*"}]}',
            "Missing required field Effect",
        ),
        (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "NotAction": "x:y", "Resource": "*"}]}',
            "both Action and NotAction",
        ),
        (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*"}]}',
            "should not specify a principal",
        ),
        (
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringEqualz": {"aws:username": "a"}}}]}',
            "Unknown condition operator",
        ),
        ("{not json", "Syntax errors in policy"),
    ],
)
def test_malformed_policy_documents(server: Server, document: str, fragment: str) -> None:
    with pytest.raises(ClientError) as info:
        server.client("iam").create_policy(PolicyName="Broken", PolicyDocument=document)
    code, status, message = error_code(info)
    assert (code, status) == ("MalformedPolicyDocument", 400) and fragment in message


def test_managed_policy_size_quota(server: Server) -> None:
    actions = [f"ssm:Describe{'X' * 40}{i}" for i in range(200)]
    document = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
    )
    with pytest.raises(ClientError) as info:
        server.client("iam").create_policy(PolicyName="Huge", PolicyDocument=document)
    assert error_code(info)[:2] == ("LimitExceeded", 409)


def test_access_keys_can_be_deactivated_and_are_limited_to_two(server: Server) -> None:
    iam = server.client("iam")
    iam.create_user(UserName="keyholder")
    iam.put_user_policy(
        UserName="keyholder",
        PolicyName="self",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "iam:GetUser",
                        "Resource": "arn:aws:iam::*:user/${aws:username}",
                    }
                ],
            }
        ),
    )
    first = iam.create_access_key(UserName="keyholder")["AccessKey"]
    iam.create_access_key(UserName="keyholder")
    with pytest.raises(ClientError) as info:
        iam.create_access_key(UserName="keyholder")
    assert error_code(info)[:2] == ("LimitExceeded", 409)

    as_user = server.client("iam", (first["AccessKeyId"], first["SecretAccessKey"]))
    assert as_user.get_user()["User"]["UserName"] == "keyholder"
    with pytest.raises(ClientError) as info:
        as_user.get_user(UserName="admin")
    assert error_code(info)[:2] == ("AccessDenied", 403)
    iam.update_access_key(UserName="keyholder", AccessKeyId=first["AccessKeyId"], Status="Inactive")
    assert {
        k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName="keyholder")["AccessKeyMetadata"]
    }[first["AccessKeyId"]] == "Inactive"
    with pytest.raises(ClientError) as info:
        as_user.get_user()
    assert error_code(info)[0] == "InvalidClientTokenId"
    iam.delete_access_key(UserName="keyholder", AccessKeyId=first["AccessKeyId"])
    with pytest.raises(ClientError) as info:
        iam.delete_access_key(UserName="keyholder", AccessKeyId=first["AccessKeyId"])
    assert error_code(info)[:2] == ("NoSuchEntity", 404)


def test_roles_and_role_policies(server: Server) -> None:
    iam = server.client("iam")
    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
    )
    role = iam.create_role(RoleName="NodeRole2", AssumeRolePolicyDocument=trust, Description="nodes")["Role"]
    assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/NodeRole2"
    assert iam.get_role(RoleName="NodeRole2")["Role"]["AssumeRolePolicyDocument"] == json.loads(trust)
    iam.put_role_policy(
        RoleName="NodeRole2",
        PolicyName="ping",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "ssm:UpdateInstanceInformation", "Resource": "*"}
                ],
            }
        ),
    )
    core = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    iam.attach_role_policy(RoleName="NodeRole2", PolicyArn=core)
    assert [
        p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName="NodeRole2")["AttachedPolicies"]
    ] == [core]
    result = iam.simulate_principal_policy(
        PolicySourceArn=role["Arn"], ActionNames=["ssmmessages:OpenControlChannel", "ssm:StartSession"]
    )["EvaluationResults"]
    assert [r["EvalDecision"] for r in result] == ["allowed", "implicitDeny"]
    with pytest.raises(ClientError) as info:
        iam.create_role(
            RoleName="Bad",
            AssumeRolePolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}
            ),
        )
    assert error_code(info)[0] == "MalformedPolicyDocument"
    with pytest.raises(ClientError) as info:
        iam.delete_role(RoleName="NodeRole2")
    assert error_code(info)[:2] == ("DeleteConflict", 409)
    iam.detach_role_policy(RoleName="NodeRole2", PolicyArn=core)
    iam.delete_role_policy(RoleName="NodeRole2", PolicyName="ping")
    iam.delete_role(RoleName="NodeRole2")
    with pytest.raises(ClientError) as info:
        iam.get_role(RoleName="NodeRole2")
    assert error_code(info)[:2] == ("NoSuchEntity", 404)


def test_simulate_custom_policy_with_context(server: Server) -> None:
    iam = server.client("iam")
    policy_1, policy_2 = operator_policy(1), operator_policy(2)
    instance = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0123456789abcdef0"

    def decide(action: str, resource: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        results = iam.simulate_custom_policy(
            PolicyInputList=[policy_1, policy_2],
            ActionNames=[action],
            ResourceArns=[resource],
            ContextEntries=entries,
        )["EvaluationResults"]
        assert len(results) == 1
        return dict(results[0])

    inside = {"ContextKeyName": "aws:SourceIp", "ContextKeyValues": ["203.0.113.10"], "ContextKeyType": "ip"}
    outside = {"ContextKeyName": "aws:SourceIp", "ContextKeyValues": ["192.0.2.1"], "ContextKeyType": "ip"}
    no_document = {
        "ContextKeyName": "ssm:SessionDocumentAccessCheck",
        "ContextKeyValues": ["false"],
        "ContextKeyType": "boolean",
    }
    allowed = decide("ssm:StartSession", instance, [inside])
    assert allowed["EvalDecision"] == "allowed"
    statement = allowed["MatchedStatements"][0]
    assert statement["SourcePolicyId"] == "PolicyInputList.1"
    assert statement["StartPosition"]["Line"] == 4  # the first statement of the operator's policy
    assert decide("ssm:StartSession", instance, [inside, no_document])["EvalDecision"] == "implicitDeny"
    denied = decide("ssm:StartSession", instance, [outside])
    assert denied["EvalDecision"] == "explicitDeny"
    assert denied["MatchedStatements"][0]["SourcePolicyId"] == "PolicyInputList.2"
    username = {"ContextKeyName": "aws:username", "ContextKeyValues": ["ayumi"], "ContextKeyType": "string"}
    own = f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/ayumi-0123456789abcdef0"
    assert decide("ssm:TerminateSession", own, [inside, username])["EvalDecision"] == "allowed"
    unknown_user = decide("ssm:TerminateSession", own, [inside])
    assert unknown_user["EvalDecision"] == "implicitDeny"
    missing = decide("ssm:DescribeSessions", "*", [])
    assert missing["EvalDecision"] == "explicitDeny" and "aws:sourceip" in missing["MissingContextValues"]


def test_source_ip_deny_from_the_operator_policy(server: Server) -> None:
    iam = server.client("iam")
    iam.create_user(UserName="remote")
    self_read = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iam:GetUser", "Resource": "arn:aws:iam::*:user/${aws:username}"}
        ],
    }
    iam.put_user_policy(UserName="remote", PolicyName="self", PolicyDocument=json.dumps(self_read))
    iam.put_user_policy(UserName="remote", PolicyName="ip", PolicyDocument=operator_policy(2))
    key = iam.create_access_key(UserName="remote")["AccessKey"]
    credentials = (key["AccessKeyId"], key["SecretAccessKey"])
    with pytest.raises(ClientError) as info:
        server.client("iam", credentials).get_user()  # we call from 127.0.0.1, not a listed address
    code, status, message = error_code(info)
    assert (code, status) == ("AccessDenied", 403) and "explicit deny" in message
    # GetCallerIdentity needs no permission, as in AWS.
    assert server.client("sts", credentials).get_caller_identity()["Arn"].endswith(":user/remote")
    # Narrowing the deny to the addresses to allow: add loopback.
    narrowed = json.loads(operator_policy(2))
    narrowed["Statement"][0]["Condition"]["NotIpAddress"]["aws:SourceIp"].append("127.0.0.1/32")
    iam.put_user_policy(UserName="remote", PolicyName="ip", PolicyDocument=json.dumps(narrowed))
    assert server.client("iam", credentials).get_user()["User"]["UserName"] == "remote"


def test_list_users_pages_with_marker(server: Server) -> None:
    iam = server.client("iam")
    for name in ("page-a", "page-b", "page-c"):
        iam.create_user(UserName=name, Path="/paging/")
    first = iam.list_users(PathPrefix="/paging/", MaxItems=2)
    assert [u["UserName"] for u in first["Users"]] == ["page-a", "page-b"] and first["IsTruncated"]
    rest = iam.list_users(PathPrefix="/paging/", MaxItems=2, Marker=first["Marker"])
    assert [u["UserName"] for u in rest["Users"]] == ["page-c"] and not rest["IsTruncated"]
    paginator = iam.get_paginator("list_users")
    names = [
        u["UserName"]
        for p in paginator.paginate(PathPrefix="/paging/", PaginationConfig={"PageSize": 1})
        for u in p["Users"]
    ]
    assert names == ["page-a", "page-b", "page-c"]

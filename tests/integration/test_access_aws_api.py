"""AWS's just-in-time node access API (SSM StartAccessRequest, GetAccessToken) against a real server,
through the real AWS CLI and boto3 with their own models: a request of AWS's id shape that OpenSSM's
approvers decide, the status in AWS's words, credentials of the requester that start the granted
session and expire with the grant, refusals in AWS's error shapes, and the calls in CloudTrail."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
from tests.integration.api_harness import (
    ACCOUNT,
    REGION,
    ApiServer,
    connect_instance,
    make_user,
    register_node,
)
from tests.support.access_policies import APPROVER

AWS_REQUESTER = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["ssm:StartAccessRequest", "ssm:GetAccessToken"], "Resource": "*"}
    ],
}
TOKEN_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "ssm:GetAccessToken", "Resource": "*"}],
}
AWS_ID = re.compile(r"^oi-[0-9a-f]{12}$")  # AWS's AccessRequestId pattern


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server = ApiServer(tmp_path_factory.mktemp("access-aws") / "data").start()
    try:
        activation = server.client().create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=1)
        node = register_node(server, activation["ActivationCode"], activation["ActivationId"], "f1")
        connect_instance(server, node.instance_id)
        yield {
            "server": server,
            "node": node.instance_id,
            "alice": make_user(server, "alice", AWS_REQUESTER),
            "bob": make_user(server, "bob", APPROVER),
            "mallory": make_user(server, "mallory", TOKEN_ONLY),
        }
    finally:
        server.stop()


def _decide(
    server: ApiServer, credentials: tuple[str, str], operation: str, request_id: str
) -> dict[str, Any]:
    result = server.call_json(
        f"OpenSSM_20261201.{operation}",
        {"AccessRequestId": request_id},
        credentials=credentials,
        service="openssm",
    )
    assert result.status == 200, result.body
    answer: dict[str, Any] = result.json()["AccessRequest"]
    return answer


def _error(call: Any) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    error = info.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def _start(server: ApiServer, credentials: tuple[str, ...], target: str) -> str:
    """StartSession: the session id, or the refusal's code."""
    try:
        return str(server.client("ssm", credentials).start_session(Target=target)["SessionId"])
    except botocore.exceptions.ClientError as exc:
        return str(exc.response["Error"]["Code"])


def test_the_aws_cli_asks_for_access_and_gets_credentials_once_approved(system: dict[str, Any]) -> None:
    server, node, alice, bob = system["server"], system["node"], system["alice"], system["bob"]
    assert _start(server, alice, node) == "AccessDeniedException"  # no standing access

    started = server.aws(
        "ssm",
        "start-access-request",
        "--reason",
        "rotate the logs",
        "--targets",
        f"Key=InstanceIds,Values={node}",
        credentials=alice,
    )
    request_id = started["AccessRequestId"]
    assert AWS_ID.match(request_id), request_id
    pending = server.aws("ssm", "get-access-token", "--access-request-id", request_id, credentials=alice)
    assert pending == {"AccessRequestStatus": "Pending"}

    # OpenSSM's approvers see and decide it as any request: the default shell for an hour.
    approved = _decide(server, bob, "ApproveAccessRequest", request_id)
    assert approved["Requester"] == "alice" and approved["Target"] == node
    assert approved["Reason"] == "rotate the logs" and approved["DurationSeconds"] == 3600
    assert approved["DocumentName"] == "SSM-SessionManagerRunShell"

    token = server.aws("ssm", "get-access-token", "--access-request-id", request_id, credentials=alice)
    assert token["AccessRequestStatus"] == "Approved"
    credentials = token["Credentials"]
    assert credentials["AccessKeyId"].startswith("ASIA") and credentials["SessionToken"]
    expires = float(credentials["ExpirationTime"])  # AWS CLI v1 prints JSON 1.1 timestamps as they come
    assert abs(expires - approved["ExpirationDate"]) < 2  # they end with the grant
    temporary = (credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"])

    # The credentials are alice's, and start what the grant allows.
    identity = server.client("sts", temporary).get_caller_identity()
    assert identity["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    session_id = _start(server, temporary, node)
    assert session_id.startswith("alice-"), session_id

    # Revoked: the status says so, and no credentials come any more.
    _decide(server, bob, "RevokeAccessRequest", request_id)
    revoked = server.client("ssm", alice).get_access_token(AccessRequestId=request_id)
    assert revoked["AccessRequestStatus"] == "Revoked" and "Credentials" not in revoked
    assert _start(server, temporary, node) == "AccessDeniedException"


def test_a_denied_request_is_rejected_in_aws_words(system: dict[str, Any]) -> None:
    server, node, alice, bob = system["server"], system["node"], system["alice"], system["bob"]
    ssm = server.client("ssm", alice)
    request_id = ssm.start_access_request(
        Reason="curious", Targets=[{"Key": "InstanceIds", "Values": [node]}]
    )["AccessRequestId"]
    _decide(server, bob, "DenyAccessRequest", request_id)
    answer = ssm.get_access_token(AccessRequestId=request_id)
    assert answer["AccessRequestStatus"] == "Rejected" and "Credentials" not in answer


def test_only_the_requester_gets_the_credentials(system: dict[str, Any]) -> None:
    server, node, alice, bob = system["server"], system["node"], system["alice"], system["bob"]
    request_id = server.client("ssm", alice).start_access_request(
        Reason="deploy", Targets=[{"Key": "InstanceIds", "Values": [node]}]
    )["AccessRequestId"]
    _decide(server, bob, "ApproveAccessRequest", request_id)
    # mallory may call GetAccessToken, but the credentials would be alice's: refused, audited.
    code, message = _error(
        lambda: server.client("ssm", system["mallory"]).get_access_token(AccessRequestId=request_id)
    )
    assert code == "AccessDeniedException" and "only the requester" in message
    # bob, an approver, has no ssm:GetAccessToken at all.
    code, message = _error(lambda: server.client("ssm", bob).get_access_token(AccessRequestId=request_id))
    assert code == "AccessDeniedException" and "ssm:GetAccessToken" in message
    events = server.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": "GetAccessToken"}]
    )["Events"]
    refused = [json.loads(event["CloudTrailEvent"]) for event in events if event.get("Username") == "mallory"]
    assert refused and refused[0].get("errorCode") == "AccessDenied", refused
    _decide(server, bob, "RevokeAccessRequest", request_id)


@pytest.mark.parametrize(
    ("body", "code", "fragment"),
    [
        ({"Reason": "x", "Targets": []}, "ValidationException", "one node"),
        ({"Reason": "x"}, "ValidationException", "targets"),
        (
            {"Reason": "x", "Targets": [{"Key": "tag:Env", "Values": ["prod"]}]},
            "ValidationException",
            "one node",
        ),
        (
            {"Reason": "x", "Targets": [{"Key": "InstanceIds", "Values": ["mi-1", "mi-2"]}]},
            "ValidationException",
            "",
        ),
        (
            {"Reason": "x", "Targets": [{"Key": "InstanceIds", "Values": ["bogus"]}]},
            "ValidationException",
            "",
        ),
        (
            {"Reason": "", "Targets": [{"Key": "InstanceIds", "Values": ["mi-0123456789abcdef0"]}]},
            "ValidationException",
            "Reason",
        ),
        (
            {"Reason": "x" * 257, "Targets": [{"Key": "InstanceIds", "Values": ["mi-0123456789abcdef0"]}]},
            "ValidationException",
            "Reason",
        ),
        (
            {
                "Reason": "x",
                "Targets": [{"Key": "InstanceIds", "Values": ["mi-0123456789abcdef0"]}],
                "Tags": [{"Key": "team", "Value": "ops"}],
            },
            "ValidationException",
            "tags",
        ),
        (
            {"Reason": "x", "Targets": [{"Key": "InstanceIds", "Values": ["mi-0123456789abcdef0"]}]},
            "InvalidInstanceId",
            "",
        ),
    ],
)
def test_start_access_request_refusals(
    system: dict[str, Any], body: dict[str, Any], code: str, fragment: str
) -> None:
    result = system["server"].call_json("AmazonSSM.StartAccessRequest", body, credentials=system["alice"])
    assert result.status == 400, result.body
    answer = result.json()
    assert answer["__type"] == code and fragment in answer["message"], answer


def test_get_access_token_refusals_and_permissions(system: dict[str, Any]) -> None:
    server, node = system["server"], system["node"]
    ssm = server.client("ssm", system["alice"])
    assert (
        _error(lambda: ssm.get_access_token(AccessRequestId="oi-000000000000"))[0]
        == "ResourceNotFoundException"
    )
    assert _error(lambda: ssm.get_access_token(AccessRequestId="oi-xyz"))[0] == "ValidationException"
    # Without ssm:StartAccessRequest (bob approves, never asks).
    code, message = _error(
        lambda: server.client("ssm", system["bob"]).start_access_request(
            Reason="x", Targets=[{"Key": "InstanceIds", "Values": [node]}]
        )
    )
    assert code == "AccessDeniedException" and "ssm:StartAccessRequest" in message


def test_the_aws_cli_error_output_for_a_refusal(system: dict[str, Any]) -> None:
    """A refusal reaches the AWS CLI as AWS's error shape: its usual message and exit status."""
    server = system["server"]
    key, secret = system["bob"]
    env = {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }
    argv = [str(pathlib.Path(sys.executable).parent / "aws"), "ssm", "get-access-token"]
    argv += ["--access-request-id", "oi-0123456789ab", "--endpoint-url", server.endpoint]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 254 or done.returncode == 255, done
    assert (
        "An error occurred (ResourceNotFoundException) when calling the GetAccessToken operation"
        in done.stderr
    )

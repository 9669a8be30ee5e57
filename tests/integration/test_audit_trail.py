"""The audit trail is listable: every authorisation decision, as CloudTrail LookupEvents returns it."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import botocore.exceptions
import pytest
from tests.integration.api_harness import ApiServer, make_user


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = ApiServer(tmp_path_factory.mktemp("audit") / "data").start()
    try:
        yield running
    finally:
        running.stop()


def test_allowed_and_denied_decisions_are_listed_with_the_deciding_statement(server: ApiServer) -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ReadNodes",
                "Effect": "Allow",
                "Action": "ssm:DescribeInstanceInformation",
                "Resource": "*",
            },
            {"Sid": "NoActivations", "Effect": "Deny", "Action": "ssm:CreateActivation", "Resource": "*"},
        ],
    }
    auditor = make_user(server, "auditor", policy)
    ssm = server.client("ssm", auditor)
    ssm.describe_instance_information()
    with pytest.raises(botocore.exceptions.ClientError):
        ssm.create_activation(IamRole="OpenSSMNodeRole")

    trail = server.client("cloudtrail")
    events = trail.lookup_events(
        LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "auditor"}]
    )["Events"]
    by_name = {e["EventName"]: e for e in events}
    allowed = json.loads(by_name["DescribeInstanceInformation"]["CloudTrailEvent"])
    denied = json.loads(by_name["CreateActivation"]["CloudTrailEvent"])
    assert allowed["openssmAuthorization"]["decision"] == "allowed"
    assert "ReadNodes" in allowed["openssmAuthorization"]["decidedBy"]
    assert by_name["DescribeInstanceInformation"]["ReadOnly"] == "true"
    assert denied["openssmAuthorization"]["decision"] == "explicitDeny"
    assert "NoActivations" in denied["openssmAuthorization"]["decidedBy"]
    assert denied["errorCode"] == "AccessDenied"
    assert denied["userIdentity"]["arn"].endswith(":user/auditor")
    assert by_name["CreateActivation"]["EventSource"] == "ssm.amazonaws.com"
    # Newest first, like CloudTrail.
    times = [e["EventTime"] for e in events]
    assert times == sorted(times, reverse=True)


def test_filters_paging_and_errors(server: ApiServer) -> None:
    ssm = server.client("ssm")
    for _ in range(3):
        ssm.get_connection_status(Target="mi-0123456789abcdef0")
    trail = server.client("cloudtrail")
    named = [{"AttributeKey": "EventName", "AttributeValue": "GetConnectionStatus"}]
    first = trail.lookup_events(LookupAttributes=named, MaxResults=2)
    assert [e["EventName"] for e in first["Events"]] == ["GetConnectionStatus"] * 2
    rest = trail.lookup_events(LookupAttributes=named, MaxResults=2, NextToken=first["NextToken"])
    assert len(rest["Events"]) >= 1 and all(e["EventName"] == "GetConnectionStatus" for e in rest["Events"])
    ids = {e["EventId"] for e in first["Events"]} | {e["EventId"] for e in rest["Events"]}
    assert len(ids) == len(first["Events"]) + len(rest["Events"])  # no event twice across pages

    one = first["Events"][0]["EventId"]
    by_id = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventId", "AttributeValue": one}])
    assert [e["EventId"] for e in by_id["Events"]] == [one]
    read_only = trail.lookup_events(
        LookupAttributes=[{"AttributeKey": "ReadOnly", "AttributeValue": "false"}]
    )
    assert all(e["ReadOnly"] == "false" for e in read_only["Events"])

    for bad, code in (
        ({"LookupAttributes": named * 2}, "InvalidLookupAttributesException"),
        ({"NextToken": "not-a-token"}, "InvalidNextTokenException"),
        ({"StartTime": 2_000_000_000, "EndTime": 1_000_000_000}, "InvalidTimeRangeException"),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            trail.lookup_events(**bad)
        assert raised.value.response["Error"]["Code"] == code


def test_lookup_needs_permission(server: ApiServer) -> None:
    nobody = make_user(server, "nobody", None)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        server.client("cloudtrail", nobody).lookup_events()
    assert raised.value.response["Error"]["Code"] == "AccessDeniedException"


@pytest.mark.slow
def test_aws_cli_lookup_events(server: ApiServer, tmp_path: pathlib.Path) -> None:
    key, secret = server.admin_credentials
    env = {
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "PATH": f"{pathlib.Path(sys.executable).parent}",
    }
    out = subprocess.run(
        [
            str(pathlib.Path(sys.executable).parent / "aws"),
            "cloudtrail",
            "lookup-events",
            "--max-results",
            "5",
            "--endpoint-url",
            server.endpoint,
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert 1 <= len(json.loads(out.stdout)["Events"]) <= 5

"""Per-principal API rate limits: AWS's ThrottlingException (HTTP 400, "Rate exceeded") past the
limit of a (principal, action family), which boto3 retries with backoff until the call goes through."""

from __future__ import annotations

import pathlib

import boto3
import botocore.exceptions
from botocore.config import Config
from tests.integration.api_harness import REGION, ApiServer, make_user

ALLOW_ALL = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def test_throttled_past_the_burst_per_principal_and_family(tmp_path: pathlib.Path) -> None:
    server = ApiServer(tmp_path / "data", api_rate_limit=0.01, api_rate_burst=2).start()  # 1 call / 100 s
    try:
        for _ in range(2):
            assert server.call_json("AmazonSSM.DescribeSessions", {"State": "Active"}).status == 200
        throttled = server.call_json("AmazonSSM.DescribeSessions", {"State": "Active"})
        assert throttled.status == 400
        assert throttled.json() == {"__type": "ThrottlingException", "message": "Rate exceeded"}
        with_boto = server.client()  # max_attempts 1: no retry
        try:
            with_boto.describe_instance_information()
            raise AssertionError("not throttled")
        except botocore.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "ThrottlingException"
        # another family of the same principal, and another principal, have buckets of their own
        write = server.call_json("AmazonSSM.TerminateSession", {"SessionId": "nobody-0123456789abcdef0"})
        assert write.json().get("__type") != "ThrottlingException" and write.status < 500
        other = make_user(server, "other", ALLOW_ALL)
        assert server.client(credentials=other).describe_sessions(State="Active")["Sessions"] == []
    finally:
        server.stop()


def test_boto3_retries_a_throttled_call_until_it_goes_through(tmp_path: pathlib.Path) -> None:
    server = ApiServer(tmp_path / "data", api_rate_limit=0.2, api_rate_burst=1).start()  # 1 call / 5 s
    try:
        key, secret = server.admin_credentials
        client = boto3.client(
            "ssm",
            endpoint_url=server.endpoint,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            config=Config(retries={"mode": "standard", "max_attempts": 10}),
        )
        retries = 0
        for _ in range(3):
            answer = client.describe_sessions(State="Active")
            assert answer["Sessions"] == []
            retries += answer["ResponseMetadata"]["RetryAttempts"]
        assert retries >= 1  # back-to-back calls cannot all pass at 1 per 5 s
    finally:
        server.stop()

"""Seed policies for the IAM targets: the operator's policies, OpenSSM's bootstrap policies, AWS's
Session Manager examples, and one statement per condition operator family, variable form and
Not* element, so the fuzzer starts from every corner of the language."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from tests.conftest import REPO_ROOT

R = "arn:aws:ssm:us-east-1:123456789012"


def _policy(*statements: dict[str, Any], version: str | None = "2012-10-17") -> str:
    document: dict[str, Any] = {"Statement": list(statements)}
    if version:
        document["Version"] = version
    return json.dumps(document)


def _allow(action: Any = "ssm:StartSession", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


CONDITIONS: list[dict[str, Any]] = [
    {"StringEquals": {"aws:username": "alice"}},
    {"StringNotEqualsIgnoreCase": {"aws:PrincipalTag/team": ["Ops", "dev"]}},
    {"StringLike": {"ssm:resourceTag/Finance": ["Web*", "db-?"]}},
    {"ForAnyValue:StringLike": {"aws:TagKeys": ["env*"]}},
    {"ForAllValues:StringEquals": {"aws:TagKeys": ["env", "team"]}},
    {"NumericLessThanEquals": {"aws:MultiFactorAuthAge": "3600"}},
    {"NumericGreaterThan": {"aws:EpochTime": 1.5e9}},
    {"DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}},
    {"DateLessThan": {"aws:CurrentTime": "2030-01-01"}},
    {"Bool": {"aws:SecureTransport": True}},
    {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}},
    {"BinaryEquals": {"aws:Foo": "QmluYXJ5"}},
    {"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}},
    {"NotIpAddress": {"aws:SourceIp": "203.0.113.10"}},
    {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/a*"}},
    {"ArnNotEquals": {"aws:SourceArn": f"{R}:document/x"}},
    {"Null": {"aws:TokenIssueTime": "true"}},
    {"StringEqualsIfExists": {"aws:RequestedRegion": "us-east-1"}},
    {"StringEquals": {"aws:PrincipalTag/team": "${aws:PrincipalTag/team, 'none'}"}},
]

RESOURCES = [
    f"{R}:session/${{aws:username}}-*",
    f"{R}:session/${{aws:userid}}-*",
    f"{R}:session/${{aws:username, 'it''s'}}-*",
    f"{R}:document/${{*}}${{?}}${{$}}",
    "arn:aws:ec2:*:*:instance/i-0123456789abcdef0",
    "arn:aws:ssm:*:*:managed-instance/mi-*",
    "arn:aws:ssm:*::document/AWS-StartPortForwardingSession",
]

REQUESTS: list[dict[str, Any]] = [
    {
        "Action": "ssm:StartSession",
        "Resource": "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123456789abcdef0",
    },
    {
        "Action": "ssm:TerminateSession",
        "Resource": f"{R}:session/alice-0a1b2c3d4e5f60718",
        "Principal": "role",
    },
    {
        "Action": "ssm:StartSession",
        "Resource": "arn:aws:ssm:us-east-1::document/AWS-StartSSHSession",
        "Context": {
            "aws:SourceIp": ["10.1.2.3"],
            "aws:SecureTransport": ["true"],
            "aws:TagKeys": ["env", "team"],
        },
        "Tags": {"team": "ops"},
    },
]


def _markdown_policies() -> Iterator[str]:
    text = (REPO_ROOT / "tests" / "unit" / "iam" / "operator_policies.md").read_text()
    yield from re.findall(r"```json\n(.*?)```", text, re.S)


def policies() -> Iterator[str]:
    yield from _markdown_policies()
    yield _policy({"Effect": "Allow", "Action": "*", "Resource": "*"})
    for condition in CONDITIONS:
        yield _policy(_allow(Condition=condition))
    yield _policy(_allow(["ssm:Terminate*", "ssm:ResumeSession"], RESOURCES))
    yield _policy(
        {"Sid": "NotOnes", "Effect": "Deny", "NotAction": "ssm:Describe?*", "NotResource": RESOURCES[:2]}
    )
    yield _policy(_allow(resource=RESOURCES[0]), version="2008-10-17")
    yield _policy(_allow(resource=RESOURCES[0]), version=None)

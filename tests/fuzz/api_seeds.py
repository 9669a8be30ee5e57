"""Seed requests for the API targets, as real clients send them.

For every registered operation that botocore models, a request is built from the operation's input
shape (every member down to a small depth, with values that name the fixtures the API target
creates) and serialised by botocore's own serializer: the bytes boto3 and the AWS CLI would send.
The captured requests of the real CLI and agent are added as they were sent. ``fill`` puts the
managed node the target registered in place of the captures' ``mi-0123456789abcdef0``.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import botocore.model
import botocore.serialize
import botocore.session

from tests.fuzz import captures

CAPTURED_INSTANCE = b"mi-0123456789abcdef0"
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["ssm:StartSession", "ssm:TerminateSession"],
                "Resource": "arn:aws:ssm:*:*:session/${aws:username}-*",
                "Condition": {"BoolIfExists": {"ssm:SessionDocumentAccessCheck": "true"}},
            }
        ],
    }
)
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
DOCUMENT = json.dumps(
    {
        "schemaVersion": "1.0",
        "description": "fuzz",
        "sessionType": "Port",
        "parameters": {"portNumber": {"type": "String", "allowedPattern": "^[0-9]+$", "default": "22"}},
        "properties": {"portNumber": "{{ portNumber }}"},
    }
)
# Member name → value: the fixtures the API target creates, and well-formed values elsewhere.
FIXTURE_VALUES: dict[str, Any] = {
    "UserName": "alice",
    "GroupName": "ops",
    "RoleName": "OpenSSMNodeRole",
    "IamRole": "OpenSSMNodeRole",
    "PolicyName": "inline",
    "PolicyArn": "arn:aws:iam::123456789012:policy/fuzz",
    "PolicyDocument": POLICY,
    "PolicyInputList": [POLICY],
    "AssumeRolePolicyDocument": TRUST,
    "PolicySourceArn": "arn:aws:iam::123456789012:user/alice",
    "ActionNames": ["ssm:StartSession"],
    "ResourceArns": ["arn:aws:ssm:us-east-1:123456789012:session/alice-0a1b2c3d4e5f60718"],
    "VersionId": "v1",
    "Password": "Fuzz-Passw0rd-1234",
    "VirtualMFADeviceName": "alice",
    "SerialNumber": "arn:aws:iam::123456789012:mfa/alice",
    "AuthenticationCode1": "123456",
    "AuthenticationCode2": "654321",
    "InstanceId": CAPTURED_INSTANCE.decode(),
    "InstanceIds": [CAPTURED_INSTANCE.decode()],
    "Target": CAPTURED_INSTANCE.decode(),
    "ResourceId": CAPTURED_INSTANCE.decode(),
    "ResourceType": "ManagedInstance",
    "Name": "fuzz-document",
    "DocumentName": "AWS-StartPortForwardingSession",
    "Content": DOCUMENT,
    "DocumentFormat": "JSON",
    "DocumentType": "Session",
    "DocumentVersion": "1",
    "SessionId": "admin-0a1b2c3d4e5f60718",
    "State": "Active",
    "Parameters": {"portNumber": ["22"], "localPortNumber": ["0"]},
    "Key": "Name",
    "Values": ["x"],
    "NextToken": "",
    "MaxResults": 5,
    "MaxItems": 5,
    "CommandId": "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0",
    "Comment": "fuzz",
}
MAX_DEPTH = 4


def _value(name: str, shape: botocore.model.Shape, depth: int) -> Any:
    if name in FIXTURE_VALUES:
        return FIXTURE_VALUES[name]
    kind = shape.type_name
    if kind == "structure":
        return _structure(shape, depth + 1)
    if kind == "list":
        return [] if depth >= MAX_DEPTH else [_value(name, shape.member, depth + 1)]
    if kind == "map":
        if depth >= MAX_DEPTH:
            return {}
        return {"Key": _value("Value", shape.value, depth + 1)}
    if kind == "string":
        enum = shape.enum
        return enum[0] if enum else "fuzz"
    if kind in ("integer", "long"):
        return int(shape.metadata.get("min", 1))
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    if kind == "blob":
        return b"fuzz"
    return None


def _structure(shape: botocore.model.StructureShape, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        return {}
    return {
        name: _value(name, member, depth)
        for name, member in shape.members.items()
        if depth < 2 or name in shape.required_members
    }


def _serialised(service: str, operation: str) -> bytes | None:
    model = botocore.session.get_session().get_service_model(service)
    if operation not in model.operation_names:
        return None
    operation_model = model.operation_model(operation)
    params = _structure(operation_model.input_shape, 0) if operation_model.input_shape else {}
    serializer = botocore.serialize.create_serializer(model.metadata["protocol"], include_validation=False)
    body = serializer.serialize_to_request(params, operation_model)["body"]
    if isinstance(body, dict):  # Query: form fields, which botocore encodes when it sends them
        return urllib.parse.urlencode(body).encode()
    return body if isinstance(body, bytes) else str(body).encode()


_SERVICES = {"AmazonSSM": "ssm", "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101": "cloudtrail"}


def json_seeds(targets: list[str]) -> Iterator[bytes]:
    for target in targets:
        prefix, _, operation = target.rpartition(".")
        service = _SERVICES.get(prefix)
        body = _serialised(service, operation) if service else None
        yield target.encode() + b"\n" + (body if body is not None else b"{}")
    for event in captures.events("http-request"):
        target = event["headers"].get("X-Amz-Target")
        if target:
            yield target.encode() + b"\n" + captures.http_request_text(event).partition(b"\r\n\r\n")[2]


def query_seeds(operations: list[tuple[str, str]]) -> Iterator[bytes]:
    for service, action in operations:
        body = _serialised(service, action)
        if body is not None:
            yield service.encode() + b"\n" + body


def fill(body: bytes, instance_id: str) -> bytes:
    return body.replace(CAPTURED_INSTANCE, instance_id.encode())

"""Fuzz target ``iam_evaluate``: policies and a request, both from the input, through ``evaluate``.

Input: policy texts separated by ``\\x01``, then ``\\x00``, then the request as JSON
(``{"Action", "Resource", "Context": {key: [values]}, "Principal": "user"|"role", "Tags"}``; any
part missing or malformed gets a default, so every input evaluates something).

Checks, beyond "no exception": the decision agrees with the statements reported; policy order does
not change the decision; adding a Deny of everything gives explicitDeny; adding an Allow of
everything turns an implicit deny into an allow and leaves an explicit deny alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from openssm.iam import (
    AuthzRequest,
    MalformedPolicyDocument,
    PolicySource,
    Principal,
    evaluate,
    parse_policy,
)
from tests.fuzz import iam_seeds

ACCOUNT = "123456789012"
_DENY_ALL = PolicySource(
    "deny-all",
    parse_policy('{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}'),
)
_ALLOW_ALL = PolicySource(
    "allow-all",
    parse_policy('{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}'),
)


def _strings(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    return [item if isinstance(item, str) else json.dumps(item) for item in items]


def build_request(spec: Any) -> AuthzRequest:
    spec = spec if isinstance(spec, dict) else {}
    tags = spec.get("Tags")
    tags = {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}
    if spec.get("Principal") == "role":
        principal = Principal(
            arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/carol",
            account=ACCOUNT,
            type="AssumedRole",
            user_id="AROAEXAMPLE:carol",
            username=None,
            session_name="carol",
            role_name="ops",
            tags=tags,
        )
    else:
        principal = Principal(
            arn=f"arn:aws:iam::{ACCOUNT}:user/alice",
            account=ACCOUNT,
            type="User",
            user_id="AIDAEXAMPLEALICE",
            username=str(spec.get("UserName", "alice")),
            tags=tags,
        )
    context = spec.get("Context")
    context = {str(k): _strings(v) for k, v in context.items()} if isinstance(context, dict) else {}
    return AuthzRequest(
        principal,
        str(spec.get("Action", "ssm:StartSession")),
        str(spec.get("Resource", "*")),
        context,
    )


def one_input(data: bytes) -> None:
    policy_part, _, request_part = data.partition(b"\x00")
    sources: list[PolicySource] = []
    for index, text in enumerate(policy_part.split(b"\x01")):
        try:
            sources.append(PolicySource(f"p{index}", parse_policy(text.decode("utf-8", "surrogateescape"))))
        except MalformedPolicyDocument:
            continue
    try:
        spec = json.loads(request_part.decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        spec = {}
    request = build_request(spec)
    result = evaluate(sources, request)
    effects = {matched.effect for matched in result.matched}
    if result.decision == "explicitDeny":
        assert effects == {"Deny"}, result
    elif result.decision == "allowed":
        assert effects == {"Allow"}, result
    else:
        assert not result.matched, result
    assert evaluate(sources[::-1], request).decision == result.decision
    assert evaluate([*sources, _DENY_ALL], request).decision == "explicitDeny"
    widened = evaluate([*sources, _ALLOW_ALL], request).decision
    assert widened == ("explicitDeny" if result.decision == "explicitDeny" else "allowed"), widened


def setup() -> Callable[[bytes], None]:
    return one_input


def seeds() -> Iterator[bytes]:
    policies = [text.encode() for text in iam_seeds.policies()]
    for index, text in enumerate(policies):
        request = iam_seeds.REQUESTS[index % len(iam_seeds.REQUESTS)]
        yield text + b"\x00" + json.dumps(request).encode()
    yield b"\x01".join(policies[:3]) + b"\x00" + json.dumps(iam_seeds.REQUESTS[2]).encode()

"""Shared builders for the IAM unit tests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from openssm.iam import AuthzRequest, EvaluationResult, PolicySource, evaluate, parse_policy
from openssm.iam.principal import Principal

ACCOUNT = "123456789012"


def user(name: str = "alice", **tags: str) -> Principal:
    return Principal(
        arn=f"arn:aws:iam::{ACCOUNT}:user/{name}",
        account=ACCOUNT,
        type="User",
        user_id="AIDAEXAMPLE" + name.upper()[:6],
        username=name,
        tags=tags,
    )


def role_session(role: str = "ops", session: str = "carol") -> Principal:
    return Principal(
        arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}",
        account=ACCOUNT,
        type="AssumedRole",
        user_id=f"AROAEXAMPLE:{session}",
        username=None,
        session_name=session,
        role_name=role,
    )


def policy_text(*statements: Mapping[str, Any], version: str | None = "2012-10-17") -> str:
    document: dict[str, Any] = {"Statement": list(statements)}
    if version is not None:
        document["Version"] = version
    return json.dumps(document)


def decide(
    policies: Sequence[str] | str,
    action: str,
    resource: str = "*",
    context: Mapping[str, Sequence[str]] | None = None,
    principal: Principal | None = None,
) -> EvaluationResult:
    texts = [policies] if isinstance(policies, str) else list(policies)
    sources = [PolicySource(f"policy{i}", parse_policy(text)) for i, text in enumerate(texts)]
    request = AuthzRequest(principal or user(), action, resource, context or {})
    return evaluate(sources, request)


def allow(action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = "*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}

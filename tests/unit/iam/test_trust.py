"""Trust policies for AssumeRoleWithWebIdentity (``openssm.iam.trust``): the provider as the
Federated principal, its ``:aud``/``:sub`` keys as AWS names them, Deny over Allow."""

from __future__ import annotations

import json
from typing import Any

from openssm.iam import parse_policy
from openssm.iam.trust import trust_decision, web_identity_context

URL = "idp.example.internal:8443/realms/ops"
ARN = f"arn:aws:iam::123456789012:oidc-provider/{URL}"


def decide(statements: list[dict[str, Any]], claims: dict[str, Any], audience: str = "openssm") -> str:
    policy = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": statements}), kind="trust")
    return trust_decision(policy, ARN, web_identity_context(URL, claims, audience, "alice", ARN)).decision


def statement(effect: str = "Allow", principal: Any = None, **condition: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "Effect": effect,
        "Principal": principal if principal is not None else {"Federated": ARN},
        "Action": "sts:AssumeRoleWithWebIdentity",
    }
    if condition:
        found["Condition"] = condition
    return found


ALICE = {"sub": "alice", "aud": "openssm"}


def test_provider_audience_and_subject() -> None:
    on_alice = statement(StringEquals={f"{URL}:aud": "openssm", f"{URL}:sub": "alice"})
    assert decide([on_alice], ALICE) == "allowed"
    assert decide([on_alice], {"sub": "bob", "aud": "openssm"}) == "implicitDeny"
    assert decide([on_alice], ALICE, audience="other") == "implicitDeny"
    assert decide([statement(StringLike={f"{URL}:sub": "ali*"})], ALICE) == "allowed"
    # Keys compare without regard to case, as every condition key does.
    assert decide([statement(StringEquals={f"{URL.upper()}:SUB": "alice"})], ALICE) == "allowed"


def test_principal_action_and_deny() -> None:
    other_provider = {"Federated": "arn:aws:iam::123456789012:oidc-provider/elsewhere.example"}
    assert decide([statement(principal=other_provider)], ALICE) == "implicitDeny"
    assert decide([statement(principal={"Federated": [ARN, "x"]})], ALICE) == "allowed"
    assert decide([statement(principal="*")], ALICE) == "allowed"
    assert decide([statement(principal={"AWS": "arn:aws:iam::123456789012:root"})], ALICE) == "implicitDeny"
    assert decide([{**statement(), "Action": "sts:AssumeRole"}], ALICE) == "implicitDeny"
    not_others = {
        "Effect": "Allow",
        "NotPrincipal": other_provider,
        "Action": "sts:AssumeRoleWithWebIdentity",
    }
    assert decide([not_others], ALICE) == "allowed"
    deny_bob = statement("Deny", StringEquals={f"{URL}:sub": "bob"})
    assert decide([statement(), deny_bob], {"sub": "bob", "aud": "openssm"}) == "explicitDeny"
    assert decide([statement(), deny_bob], ALICE) == "allowed"


def test_context_keys() -> None:
    context = web_identity_context(
        URL,
        {"sub": "alice", "aud": ["openssm", "cli"], "azp": "cli", "amr": ["pwd", "otp"]},
        "cli",
        "alice",
        ARN,
    )
    assert context[f"{URL.lower()}:aud"] == ["cli"]
    assert context[f"{URL.lower()}:oaud"] == ["openssm", "cli"]
    assert context[f"{URL.lower()}:amr"] == ["pwd", "otp"]
    assert context["aws:federatedprovider"] == [ARN] and context["sts:rolesessionname"] == ["alice"]
    assert (
        decide(
            [statement(**dict[str, Any]({"ForAnyValue:StringEquals": {f"{URL}:amr": "otp"}}))],
            {**ALICE, "amr": ["otp"]},
        )
        == "allowed"
    )

"""A stored policy that no longer parses fails closed: it may have held a Deny, so every request of
its holders is denied (and said once in the log, naming the policy), rather than the policy being
skipped. Through the API, an invalid policy never gets stored: MalformedPolicyDocument, as AWS."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
from tests.integration.api_harness import ApiServer, make_user

from openssm.store.iam import holder_policies

ALLOW_SSM = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}]}
DENY_SESSIONS = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Deny", "Action": "ssm:DescribeSessions", "Resource": "*"}],
}
BROKEN = '{"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "ssm:DescribeSessions"'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    running = ApiServer(tmp_path_factory.mktemp("fail-closed") / "data").start()
    try:
        yield running
    finally:
        running.stop()


def _store_inline(server: ApiServer, user: str, name: str, document: str) -> None:
    """Write straight to the store, as a changed database (or a stricter parser) would leave it."""

    async def work(engine: Any) -> None:
        await holder_policies.put_inline(engine, "user", user, name, document)

    server.db(work)


def _denied(call: Any) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    error = info.value.response["Error"]
    assert error["Code"] == "AccessDeniedException"
    return str(error["Message"])


def test_an_unparseable_stored_policy_denies_every_request_of_its_holder(
    server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = make_user(server, "broken-deny", ALLOW_SSM)
    _store_inline(server, "broken-deny", "deny-sessions", json.dumps(DENY_SESSIONS))
    ssm = server.client("ssm", credentials)
    ssm.describe_instance_information()  # the Deny, intact, forbids sessions only
    _denied(lambda: ssm.describe_sessions(State="Active"))

    _store_inline(server, "broken-deny", "deny-sessions", BROKEN)
    with caplog.at_level(logging.ERROR, logger="openssm.security.policies"):
        # Skipping the broken policy would allow both: its Deny is gone, the Allow is intact.
        assert "explicit deny" in _denied(lambda: ssm.describe_sessions(State="Active"))
        assert "explicit deny" in _denied(lambda: ssm.describe_instance_information())
        assert "explicit deny" in _denied(lambda: ssm.describe_instance_information())
    said = [r.getMessage() for r in caplog.records if r.name == "openssm.security.policies"]
    assert len(said) == 1, said  # once per policy text, not per request
    assert "user/broken-deny/inline/deny-sessions" in said[0] and "does not parse" in said[0]

    # The policy simulator answers as the authoriser decides.
    simulated = server.client("iam").simulate_principal_policy(
        PolicySourceArn="arn:aws:iam::123456789012:user/broken-deny", ActionNames=["ssm:GetDocument"]
    )["EvaluationResults"]
    assert [result["EvalDecision"] for result in simulated] == ["explicitDeny"]

    # The other users, and the administrator, are not affected.
    server.client("ssm", make_user(server, "bystander", ALLOW_SSM)).describe_instance_information()
    server.client("ssm").describe_instance_information()

    # Putting it right through the API (validated on the way in) ends the refusal.
    server.client("iam").put_user_policy(
        UserName="broken-deny", PolicyName="deny-sessions", PolicyDocument=json.dumps(DENY_SESSIONS)
    )
    ssm.describe_instance_information()


def test_the_audit_log_names_the_broken_policy_as_what_denied(server: ApiServer) -> None:
    credentials = make_user(server, "broken-audit", ALLOW_SSM)
    _store_inline(server, "broken-audit", "garbled", "{not json")
    _denied(lambda: server.client("ssm", credentials).describe_instance_information())
    events = server.client("cloudtrail").lookup_events(
        LookupAttributes=[{"AttributeKey": "Username", "AttributeValue": "broken-audit"}]
    )["Events"]
    assert events, "the denial is audited"
    assert any("user/broken-audit/inline/garbled" in json.dumps(event, default=str) for event in events)


@pytest.mark.parametrize(
    "put",
    [
        lambda iam, doc: iam.put_user_policy(UserName="author", PolicyName="p", PolicyDocument=doc),
        lambda iam, doc: iam.put_group_policy(GroupName="authors", PolicyName="p", PolicyDocument=doc),
        lambda iam, doc: iam.put_role_policy(RoleName="Author", PolicyName="p", PolicyDocument=doc),
        lambda iam, doc: iam.create_policy(PolicyName="Authored", PolicyDocument=doc),
        lambda iam, doc: iam.create_policy_version(
            PolicyArn="arn:aws:iam::123456789012:policy/Versioned", PolicyDocument=doc
        ),
    ],
    ids=["PutUserPolicy", "PutGroupPolicy", "PutRolePolicy", "CreatePolicy", "CreatePolicyVersion"],
)
def test_an_invalid_policy_is_refused_on_the_way_in(server: ApiServer, put: Any) -> None:
    iam = server.client("iam")
    _ensure_holders(iam)
    for document in (BROKEN, '{"Version": "2012-10-17", "Statement": [{"Action": "*", "Resource": "*"}]}'):
        with pytest.raises(botocore.exceptions.ClientError) as info:
            put(iam, document)
        assert info.value.response["Error"]["Code"] == "MalformedPolicyDocument"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def _ensure_holders(iam: Any) -> None:
    names = {user["UserName"] for user in iam.list_users()["Users"]}
    if "author" in names:
        return
    iam.create_user(UserName="author")
    iam.create_group(GroupName="authors")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    iam.create_role(RoleName="Author", AssumeRolePolicyDocument=json.dumps(trust))
    iam.create_policy(PolicyName="Versioned", PolicyDocument=json.dumps(ALLOW_SSM))

"""Just-in-time access through the API of a real server: requests, who may decide them (IAM policies on
the target, never the requester), the grant as an inline policy that allows exactly the session asked
for (StartSession's target and document checks, the IAM simulator), deny, revoke ending the
requester's session, listing one's own requests, and every step in CloudTrail's LookupEvents."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import pytest
from tests.integration.api_harness import (
    ACCOUNT,
    REGION,
    ApiServer,
    HttpResult,
    connect_instance,
    make_user,
    register_node,
)
from tests.support.access_policies import APPROVER, REQUESTER

from openssm.store import sessions as session_store

REQUESTER_POLICY, APPROVER_POLICY = REQUESTER, APPROVER
LOOKER_POLICY = {  # may list every request, decide none
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "openssm:ListAccessRequests", "Resource": "*"}],
}


class Access:
    """OpenSSM_20261201.* calls as one user (SigV4, signing name openssm)."""

    def __init__(self, server: ApiServer, credentials: tuple[str, str]) -> None:
        self.server = server
        self.credentials = credentials

    def raw(self, operation: str, body: dict[str, Any]) -> HttpResult:
        return self.server.call_json(
            f"OpenSSM_20261201.{operation}", body, credentials=self.credentials, service="openssm"
        )

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        result = self.raw(operation, body)
        assert result.status == 200, result.body
        answer: dict[str, Any] = result.json()
        return answer

    def refused(self, operation: str, body: dict[str, Any], code: str) -> str:
        result = self.raw(operation, body)
        assert result.status == 400, result.body
        assert result.json()["__type"] == code, result.body
        assert result.headers["x-amzn-ErrorType"] == code
        message: str = result.json()["message"]
        return message

    def request(self, target: str, duration: int = 600, **more: Any) -> dict[str, Any]:
        body = {"Target": target, "DurationSeconds": duration, "Reason": "fix the disk", **more}
        request: dict[str, Any] = self.call("RequestAccess", body)["AccessRequest"]
        return request


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server = ApiServer(tmp_path_factory.mktemp("access") / "data").start()
    try:
        ssm = server.client()
        activation = ssm.create_activation(IamRole="OpenSSMNodeRole", RegistrationLimit=2)
        node = register_node(server, activation["ActivationCode"], activation["ActivationId"], "f1")
        other = register_node(server, activation["ActivationCode"], activation["ActivationId"], "f2")
        connect_instance(server, node.instance_id)
        connect_instance(server, other.instance_id)
        yield {
            "server": server,
            "node": node.instance_id,
            "other": other.instance_id,
            "alice": Access(server, make_user(server, "alice", REQUESTER_POLICY)),
            "bob": Access(server, make_user(server, "bob", APPROVER_POLICY)),
            "carol": Access(server, make_user(server, "carol", LOOKER_POLICY)),
            "admin": Access(server, server.admin_credentials),
        }
    finally:
        server.stop()


def alice_key(system: dict[str, Any]) -> tuple[str, str]:
    credentials: tuple[str, str] = system["alice"].credentials
    return credentials


def _start(server: ApiServer, credentials: tuple[str, str], **request: Any) -> str:
    """StartSession: the session id, or the refusal's code. TargetNotConnected would mean authorised."""
    try:
        return str(server.client("ssm", credentials).start_session(**request)["SessionId"])
    except botocore.exceptions.ClientError as exc:
        return str(exc.response["Error"]["Code"])


def test_a_request_waits_for_an_approver_and_the_grant_allows_exactly_that_session(
    system: dict[str, Any],
) -> None:
    server, node, other = system["server"], system["node"], system["other"]
    alice, bob = system["alice"], system["bob"]
    assert _start(server, alice_key(system), Target=node) == "AccessDeniedException"  # no standing access

    request = alice.request(node, 600, DocumentName="AWS-StartSSHSession")
    request_id = request["AccessRequestId"]
    assert request["Status"] == "Pending" and request["Requester"] == "alice"
    assert request["RequesterArn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert request["Arn"] == f"arn:aws:openssm:{REGION}:{ACCOUNT}:access-request/{request_id}"
    assert request["DocumentName"] == "AWS-StartSSHSession" and request["DurationSeconds"] == 600
    assert _start(server, alice_key(system), Target=node, DocumentName="AWS-StartSSHSession") == (
        "AccessDeniedException"
    )

    approved = bob.call("ApproveAccessRequest", {"AccessRequestId": request_id, "Reason": "go ahead"})[
        "AccessRequest"
    ]
    assert approved["Status"] == "Approved" and approved["Decider"] == "bob"
    assert approved["ExpirationDate"] == pytest.approx(approved["DecidedDate"] + 600, abs=0.01)
    assert approved["GrantPolicyName"] == f"openssm-access-{request_id}"

    # The grant, as IAM shows it: an inline policy of alice's, time-boxed.
    iam = server.client("iam")
    assert f"openssm-access-{request_id}" in iam.list_user_policies(UserName="alice")["PolicyNames"]
    document = iam.get_user_policy(UserName="alice", PolicyName=f"openssm-access-{request_id}")[
        "PolicyDocument"
    ]
    statements = {statement["Sid"]: statement for statement in document["Statement"]}
    target = statements["TargetWithTheRequestedDocument"]
    assert target["Resource"] == f"arn:aws:ssm:{REGION}:{ACCOUNT}:managed-instance/{node}"
    assert target["Condition"]["StringEquals"] == {"openssm:DocumentName": "AWS-StartSSHSession"}
    assert "aws:CurrentTime" in target["Condition"]["DateLessThan"]
    assert statements["RequestedDocumentOnTheTarget"]["Resource"] == (
        f"arn:aws:ssm:{REGION}::document/AWS-StartSSHSession"
    )

    # Exactly the session asked for: that document on that target, and nothing else.
    ssh = {"Target": node, "DocumentName": "AWS-StartSSHSession", "Parameters": {"portNumber": ["22"]}}
    session_id = _start(server, alice_key(system), **ssh)
    assert session_id.startswith("alice-"), session_id
    assert _start(server, alice_key(system), Target=node) == "AccessDeniedException"  # the default shell
    port = {"Target": node, "DocumentName": "AWS-StartPortForwardingSession"}
    assert _start(server, alice_key(system), **port) == "AccessDeniedException"
    assert _start(server, alice_key(system), **{**ssh, "Target": other}) == "AccessDeniedException"
    # Her own session she may end.
    server.client("ssm", alice_key(system)).terminate_session(SessionId=session_id)

    # The simulator reads the same policy: allowed before the grant's end, not after.
    def simulate(when: str) -> str:
        result = iam.simulate_principal_policy(
            PolicySourceArn=f"arn:aws:iam::{ACCOUNT}:user/alice",
            ActionNames=["ssm:StartSession"],
            ResourceArns=[f"arn:aws:ssm:{REGION}:{ACCOUNT}:managed-instance/{node}"],
            ContextEntries=[
                {"ContextKeyName": "aws:CurrentTime", "ContextKeyValues": [when], "ContextKeyType": "date"},
                {
                    "ContextKeyName": "openssm:DocumentName",
                    "ContextKeyValues": ["AWS-StartSSHSession"],
                    "ContextKeyType": "string",
                },
            ],
        )
        return str(result["EvaluationResults"][0]["EvalDecision"])

    assert simulate("2020-01-01T00:00:00Z") == "allowed"
    assert simulate("2100-01-01T00:00:00Z") == "implicitDeny"

    # A decided request cannot be decided again.
    bob.refused("DenyAccessRequest", {"AccessRequestId": request_id}, "ConflictException")
    bob.call("RevokeAccessRequest", {"AccessRequestId": request_id})


def test_who_may_decide(system: dict[str, Any]) -> None:
    node, alice, bob, carol, admin = (system[k] for k in ("node", "alice", "bob", "carol", "admin"))
    request_id = alice.request(node)["AccessRequestId"]
    # No policy allows carol to approve: AccessDeniedException naming the action and the target.
    message = carol.refused("ApproveAccessRequest", {"AccessRequestId": request_id}, "AccessDeniedException")
    assert "openssm:ApproveAccessRequest" in message and f"managed-instance/{node}" in message
    # A requester never approves their own request, not even with a policy that allows it.
    server = system["server"]
    iam = server.client("iam")
    iam.put_user_policy(UserName="alice", PolicyName="too-much", PolicyDocument=json.dumps(APPROVER_POLICY))
    try:
        message = alice.refused(
            "ApproveAccessRequest", {"AccessRequestId": request_id}, "AccessDeniedException"
        )
        assert "their own access request" in message
        alice.refused("DenyAccessRequest", {"AccessRequestId": request_id}, "AccessDeniedException")
    finally:
        iam.delete_user_policy(UserName="alice", PolicyName="too-much")
    # The approver's policy caps durations at an hour: a longer request is not theirs to approve.
    long_id = alice.request(node, 7200)["AccessRequestId"]
    bob.refused("ApproveAccessRequest", {"AccessRequestId": long_id}, "AccessDeniedException")
    admin.call("DenyAccessRequest", {"AccessRequestId": long_id, "Reason": "too long"})
    # Requesting needs its own permission.
    carol.refused(
        "RequestAccess", {"Target": node, "DurationSeconds": 60, "Reason": "x"}, "AccessDeniedException"
    )
    bob.call("DenyAccessRequest", {"AccessRequestId": request_id})


def test_bad_requests_get_aws_shaped_errors(system: dict[str, Any]) -> None:
    node, alice = system["node"], system["alice"]
    for body, code in (
        ({"Target": node, "DurationSeconds": 0, "Reason": "x"}, "ValidationException"),
        ({"Target": node, "DurationSeconds": 43201, "Reason": "x"}, "ValidationException"),
        ({"Target": node, "Reason": "x"}, "ValidationException"),
        ({"Target": node, "DurationSeconds": 60}, "ValidationException"),
        ({"Target": "not-a-node", "DurationSeconds": 60, "Reason": "x"}, "ValidationException"),
        ({"Target": "mi-00000000000000000", "DurationSeconds": 60, "Reason": "x"}, "InvalidInstanceId"),
        (
            {"Target": node, "DurationSeconds": 60, "Reason": "x", "DocumentName": "NoSuchDoc"},
            "InvalidDocument",
        ),
    ):
        alice.refused("RequestAccess", body, code)
    system["bob"].refused(
        "ApproveAccessRequest", {"AccessRequestId": "ar-0123456789abcdef0"}, "ResourceNotFoundException"
    )
    system["bob"].refused("ApproveAccessRequest", {"AccessRequestId": "../etc"}, "ValidationException")
    system["carol"].refused("ListAccessRequests", {"NextToken": "garbage"}, "InvalidNextToken")
    system["carol"].refused(
        "ListAccessRequests", {"Filters": [{"key": "Nope", "value": "x"}]}, "InvalidFilterKey"
    )


def test_deny_and_revoke(system: dict[str, Any]) -> None:
    server, node, alice, bob = system["server"], system["node"], system["alice"], system["bob"]
    denied_id = alice.request(node)["AccessRequestId"]
    denied = bob.call("DenyAccessRequest", {"AccessRequestId": denied_id, "Reason": "not today"})[
        "AccessRequest"
    ]
    assert denied["Status"] == "Denied" and denied["DecisionReason"] == "not today"
    bob.refused("ApproveAccessRequest", {"AccessRequestId": denied_id}, "ConflictException")
    assert _start(server, alice_key(system), Target=node) == "AccessDeniedException"

    granted_id = alice.request(node)["AccessRequestId"]
    bob.call("ApproveAccessRequest", {"AccessRequestId": granted_id})
    session_id = _start(server, alice_key(system), Target=node)
    assert session_id.startswith("alice-"), session_id
    revoked = bob.call("RevokeAccessRequest", {"AccessRequestId": granted_id, "Reason": "done"})[
        "AccessRequest"
    ]
    assert revoked["Status"] == "Revoked" and revoked["EndedBy"].endswith(":user/bob")
    # The grant is gone and her session on the node was ended, through TerminateSession's path.
    names = server.client("iam").list_user_policies(UserName="alice")["PolicyNames"]
    assert f"openssm-access-{granted_id}" not in names

    async def status(engine: Any) -> tuple[str, str | None]:
        row = await session_store.get(engine, session_id)
        assert row is not None
        return row.status, row.termination_reason

    assert server.db(status) == ("Terminated", f"Access request {granted_id} was revoked")
    assert _start(server, alice_key(system), Target=node) == "AccessDeniedException"
    # A requester may withdraw their own pending request (her policy allows revoking her own).
    pending_id = alice.request(node)["AccessRequestId"]
    assert (
        alice.call("RevokeAccessRequest", {"AccessRequestId": pending_id})["AccessRequest"]["Status"]
        == "Revoked"
    )
    alice.refused("RevokeAccessRequest", {"AccessRequestId": pending_id}, "ConflictException")


def test_listing_own_requests_and_everyone_s(system: dict[str, Any]) -> None:
    node, alice, carol = system["node"], system["alice"], system["carol"]
    mine = alice.request(node)["AccessRequestId"]
    # Her policy allows listing only with a filter on her own name.
    alice.refused("ListAccessRequests", {}, "AccessDeniedException")
    alice.refused(
        "ListAccessRequests", {"Filters": [{"key": "Requester", "value": "bob"}]}, "AccessDeniedException"
    )
    own = alice.call("ListAccessRequests", {"Filters": [{"key": "Requester", "value": "alice"}]})[
        "AccessRequests"
    ]
    assert own and {r["Requester"] for r in own} == {"alice"} and own[0]["AccessRequestId"] == mine
    # Everyone's, page by page, newest first and no request twice.
    seen: list[str] = []
    token: str | None = None
    while True:
        body: dict[str, Any] = {"MaxResults": 2, **({"NextToken": token} if token else {})}
        page = carol.call("ListAccessRequests", body)
        seen += [r["AccessRequestId"] for r in page["AccessRequests"]]
        token = page.get("NextToken")
        if not token:
            break
    assert seen[0] == mine and len(seen) == len(set(seen)) >= 3
    pending = carol.call("ListAccessRequests", {"Filters": [{"key": "Status", "value": "Pending"}]})
    assert mine in [r["AccessRequestId"] for r in pending["AccessRequests"]]
    system["admin"].call("RevokeAccessRequest", {"AccessRequestId": mine})


def test_every_step_is_in_cloudtrail(system: dict[str, Any]) -> None:
    server, node, alice, bob = system["server"], system["node"], system["alice"], system["bob"]
    request_id = alice.request(node, 300)["AccessRequestId"]
    alice.refused("ApproveAccessRequest", {"AccessRequestId": request_id}, "AccessDeniedException")
    bob.call("ApproveAccessRequest", {"AccessRequestId": request_id})
    session_id = _start(server, alice_key(system), Target=node)
    bob.call("RevokeAccessRequest", {"AccessRequestId": request_id})

    events = server.client("cloudtrail").lookup_events(MaxResults=50)["Events"]
    trail = [json.loads(e["CloudTrailEvent"]) for e in events]

    def about(event: dict[str, Any]) -> bool:
        details = event.get("requestParameters") or event.get("serviceEventDetails") or {}
        return bool(details.get("accessRequestId") == request_id)

    steps = [(e["eventName"], e.get("userIdentity", {}).get("userName") or e["userIdentity"].get("invokedBy"))
             for e in reversed(trail) if about(e)]  # fmt: skip
    assert steps == [
        ("RequestAccess", "alice"),
        ("ApproveAccessRequest", "alice"),  # refused: her own
        ("ApproveAccessRequest", "bob"),
        ("PutUserPolicy", "openssm.amazonaws.com"),
        ("RevokeAccessRequest", "bob"),
        ("DeleteUserPolicy", "openssm.amazonaws.com"),
        ("TerminateSession", "openssm.amazonaws.com"),
    ]
    by_name = {(e["eventName"], e["userIdentity"].get("userName")): e for e in trail if about(e)}
    own = by_name[("ApproveAccessRequest", "alice")]
    assert own["errorCode"] == "AccessDenied" and "their own" in own["openssmAuthorization"]["decidedBy"]
    put = next(e for e in trail if about(e) and e["eventName"] == "PutUserPolicy")
    assert put["eventType"] == "AwsServiceEvent" and put["eventSource"] == "iam.amazonaws.com"
    assert put["resources"] == [{"ARN": f"arn:aws:iam::{ACCOUNT}:user/alice"}]
    assert put["serviceEventDetails"]["policyName"] == f"openssm-access-{request_id}"
    ended = next(e for e in trail if about(e) and e["eventName"] == "TerminateSession")
    assert ended["resources"] == [{"ARN": f"arn:aws:ssm:{REGION}:{ACCOUNT}:session/{session_id}"}]
    requested = next(e for e in trail if about(e) and e["eventName"] == "RequestAccess")
    assert requested["eventSource"] == "openssm.amazonaws.com"
    assert requested["requestParameters"]["reason"] == "fix the disk"

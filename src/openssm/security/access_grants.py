"""Just-in-time grants as IAM sees them: an approved access request becomes an inline policy on the
requester (``openssm-access-<request id>``) that allows exactly the sessions asked for, and only until
the grant's end (a ``DateLessThan aws:CurrentTime`` condition, so the policy is dead at that moment even
if the server were late to delete it). ``aws iam list-user-policies`` / ``get-user-policy`` show it,
and ``simulate-principal-policy`` evaluates it like any other policy.

A session is a pair (target, document) checked as two resources; two condition keys OpenSSM adds to
StartSession's checks tie the pair together, so a grant for one document on a target allows no other
document there, and lends the document to no other target:

- ``openssm:DocumentName`` (on the target check): the session document, named or the default one;
- ``openssm:Target`` (on the document check): the target id.

A requester may never decide their own request (``security.refuse_by_rule`` with
:data:`OWN_DECISION`), whatever policies say.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, Final

from openssm.iam.arn import session_arn
from openssm.store.errors import NoSuchEntity
from openssm.store.iam import holder_policies
from openssm.store.iam.holders import HolderType
from openssm.store.rows import Db

DOCUMENT_NAME_KEY: Final = "openssm:DocumentName"
TARGET_KEY: Final = "openssm:Target"
POLICY_PREFIX: Final = "openssm-access-"
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"
OWN_DECISION: Final = "OpenSSM: a requester may not decide their own access request"


@dataclasses.dataclass(frozen=True, slots=True)
class Grant:
    """What an approved request allows: sessions on one target with one document, until ``expires_at``."""

    request_id: str
    holder_type: HolderType  # user, or the role of an assumed-role requester
    holder_name: str
    requester_name: str  # the name the requester's session ids start with
    requester_user_id: str  # aws:userid: narrows a role's grant to the one role session that asked
    region: str
    account: str
    target: str
    target_arn: str
    document_name: str
    document_arn: str
    expires_at: dt.datetime

    @property
    def policy_name(self) -> str:
        return policy_name(self.request_id)


def policy_name(request_id: str) -> str:
    return f"{POLICY_PREFIX}{request_id}"


def grant_policy(grant: Grant) -> dict[str, Any]:
    """The grant's policy document."""

    def until(strings: dict[str, str]) -> dict[str, Any]:
        if grant.holder_type == "role":  # the role's other sessions get nothing from it
            strings = {**strings, "aws:userid": grant.requester_user_id}
        return {
            "StringEquals": strings,
            "DateLessThan": {"aws:CurrentTime": grant.expires_at.strftime(TIME_FORMAT)},
        }

    own_sessions = session_arn(grant.region, grant.account, f"{grant.requester_name}-*")
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "TargetWithTheRequestedDocument",
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": grant.target_arn,
                "Condition": until({DOCUMENT_NAME_KEY: grant.document_name}),
            },
            {
                "Sid": "RequestedDocumentOnTheTarget",
                "Effect": "Allow",
                "Action": "ssm:StartSession",
                "Resource": grant.document_arn,
                "Condition": until({TARGET_KEY: grant.target}),
            },
            {
                "Sid": "OwnSessionsOnTheTarget",
                "Effect": "Allow",
                "Action": ["ssm:ResumeSession", "ssm:TerminateSession"],
                "Resource": own_sessions,
                "Condition": until({"ssm:resourceTag/aws:ssmmessages:target-id": grant.target}),
            },
        ],
    }


async def attach(db: Db, grant: Grant) -> None:
    """Put the grant's policy on its holder (NoSuchEntity if the holder no longer exists)."""
    document = json.dumps(grant_policy(grant), separators=(",", ":"))
    await holder_policies.put_inline(db, grant.holder_type, grant.holder_name, grant.policy_name, document)


async def detach(db: Db, holder_type: HolderType, holder_name: str, request_id: str) -> bool:
    """Delete the grant's policy; False if it was gone already (deleted by hand, or its holder)."""
    try:
        await holder_policies.delete_inline(db, holder_type, holder_name, policy_name(request_id))
    except NoSuchEntity:
        return False
    return True

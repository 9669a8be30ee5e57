"""The example policies of the README's "Just-in-time access" section, as the tests use them."""

from __future__ import annotations

from typing import Any

# Anyone may ask for access to any node, and list or withdraw their own requests.
REQUESTER: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "openssm:RequestAccess", "Resource": "*"},
        {
            "Sid": "OwnRequests",
            "Effect": "Allow",
            "Action": ["openssm:ListAccessRequests", "openssm:RevokeAccessRequest"],
            "Resource": "*",
            "Condition": {"StringEquals": {"openssm:Requester": "${aws:username}"}},
        },
    ],
}

# Approvers decide on requests of up to an hour for managed nodes, and see every request.
APPROVER: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "DecideOnManagedNodes",
            "Effect": "Allow",
            "Action": [
                "openssm:ApproveAccessRequest",
                "openssm:DenyAccessRequest",
                "openssm:RevokeAccessRequest",
            ],
            "Resource": "arn:aws:ssm:*:*:managed-instance/*",
            "Condition": {"NumericLessThanEquals": {"openssm:DurationSeconds": "3600"}},
        },
        {"Effect": "Allow", "Action": "openssm:ListAccessRequests", "Resource": "*"},
    ],
}


def with_statement(policy: dict[str, Any], statement: dict[str, Any]) -> dict[str, Any]:
    """``policy`` and one more statement."""
    return {**policy, "Statement": [*policy["Statement"], statement]}

"""The IAM policy the README gives a node that joins with IAM credentials (shared by its tests)."""

from __future__ import annotations

from typing import Any


def iam_node_policy(region: str, account: str, *instance_ids: str) -> dict[str, Any]:
    """Report as these instances (their EC2 ARNs), and open their control and data channels."""
    arns = [f"arn:aws:ec2:{region}:{account}:instance/{instance_id}" for instance_id in instance_ids]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "ssm:UpdateInstanceInformation",
                    "ssm:ListInstanceAssociations",
                    "ec2messages:GetMessages",  # AWS's agent polls it; OpenSSM's does not
                ],
                "Resource": arns,
            },
            {
                "Effect": "Allow",
                "Action": [
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                ],
                "Resource": "*",
            },
        ],
    }

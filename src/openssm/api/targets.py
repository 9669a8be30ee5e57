"""Resource ARNs and tag condition keys for SSM targets (managed nodes ``mi-…``, EC2 ``i-…``)."""

from __future__ import annotations

from typing import Any

from openssm.iam.arn import ec2_instance_arn, managed_instance_arn

TARGET_PATTERN = r"^(mi-[0-9a-f]{17}|i-(\w{8}|\w{17}))$"


def target_arn(region: str, account: str, target: str) -> str:
    if target.startswith("mi-"):
        return managed_instance_arn(region, account, target)
    return ec2_instance_arn(region, account, target)


def resource_tag_context(tags: dict[str, Any] | None) -> dict[str, list[str]]:
    """``ssm:resourceTag/<k>`` and ``aws:ResourceTag/<k>`` for the target's tags."""
    context: dict[str, list[str]] = {}
    for key, value in (tags or {}).items():
        context[f"ssm:resourceTag/{key}"] = [str(value)]
        context[f"aws:ResourceTag/{key}"] = [str(value)]
    return context

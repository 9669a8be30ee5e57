"""ARN builders and ARN pattern matching.

Matching rule (IAM ``Resource``/``NotResource`` and the ``Arn*`` condition operators): an ARN has
six colon-separated components, split on the first five colons. The partition, service, region
and account are matched component by component, so a wildcard there cannot cross a ``:``; in the
resource part (``session/alice-*``, ``log-group:x:*``) a ``*`` may cross ``/`` and ``:``. An empty
component (the account of an AWS-owned document) is matched by ``*``.
"""

from __future__ import annotations

from collections.abc import Sequence

from openssm.iam.glob import Chunk, chunks_to_regex, compile_regex

PARTITION = "aws"
ARN_COMPONENTS = 6


def _with_path(path: str) -> str:
    if not path.startswith("/") or not path.endswith("/"):
        raise ValueError(f"IAM path must begin and end with '/': {path!r}")
    return path


def user_arn(account: str, name: str, path: str = "/") -> str:
    return f"arn:{PARTITION}:iam::{account}:user{_with_path(path)}{name}"


def group_arn(account: str, name: str, path: str = "/") -> str:
    return f"arn:{PARTITION}:iam::{account}:group{_with_path(path)}{name}"


def role_arn(account: str, name: str, path: str = "/") -> str:
    return f"arn:{PARTITION}:iam::{account}:role{_with_path(path)}{name}"


def policy_arn(account: str, name: str, path: str = "/") -> str:
    return f"arn:{PARTITION}:iam::{account}:policy{_with_path(path)}{name}"


def aws_managed_policy_arn(name: str, path: str = "/") -> str:
    return f"arn:{PARTITION}:iam::aws:policy{_with_path(path)}{name}"


def assumed_role_arn(account: str, role_name: str, session_name: str) -> str:
    return f"arn:{PARTITION}:sts::{account}:assumed-role/{role_name}/{session_name}"


def root_arn(account: str) -> str:
    return f"arn:{PARTITION}:iam::{account}:root"


def managed_instance_arn(region: str, account: str, instance_id: str) -> str:
    return f"arn:{PARTITION}:ssm:{region}:{account}:managed-instance/{instance_id}"


def ec2_instance_arn(region: str, account: str, instance_id: str) -> str:
    return f"arn:{PARTITION}:ec2:{region}:{account}:instance/{instance_id}"


def document_arn(region: str, account_or_empty: str, name: str) -> str:
    """AWS-owned documents (``AWS-…``) have an empty account component."""
    return f"arn:{PARTITION}:ssm:{region}:{account_or_empty}:document/{name}"


def session_arn(region: str, account: str, session_id: str) -> str:
    return f"arn:{PARTITION}:ssm:{region}:{account}:session/{session_id}"


def split_arn(arn: str) -> tuple[str, str, str, str, str, str] | None:
    """``(arn, partition, service, region, account, resource)`` or ``None`` if not an ARN."""
    parts = arn.split(":", ARN_COMPONENTS - 1)
    if len(parts) != ARN_COMPONENTS or parts[0] != "arn":
        return None
    return parts[0], parts[1], parts[2], parts[3], parts[4], parts[5]


def _split_chunks_on_colons(chunks: Sequence[Chunk]) -> list[list[Chunk]]:
    """Split on the first five colons written by the policy author (not inside substituted text)."""
    components: list[list[Chunk]] = [[]]
    for text, wild in chunks:
        if not wild and len(components) < ARN_COMPONENTS:
            components[-1].append((text, wild))
            continue
        piece = text
        while len(components) < ARN_COMPONENTS and ":" in piece:
            head, _, piece = piece.partition(":")
            components[-1].append((head, wild))
            components.append([])
        components[-1].append((piece, wild))
    return components


def arn_pattern_regex(chunks: Sequence[Chunk]) -> str:
    """Regex source for an ARN pattern (to be full-matched against a request ARN).

    A pattern without a colon (``*``) is a plain whole-string glob. A pattern with fewer than six
    components keeps its wildcards inside components, so it never matches a full ARN.
    """
    components = _split_chunks_on_colons(chunks)
    if len(components) == 1:
        return chunks_to_regex(chunks)
    if len(components) != ARN_COMPONENTS:
        return chunks_to_regex(chunks, star="[^:]*", qmark="[^:]")
    prefix = [chunks_to_regex(component, star="[^:]*", qmark="[^:]") for component in components[:-1]]
    return ":".join([*prefix, chunks_to_regex(components[-1])])


def arn_pattern_component_count(chunks: Sequence[Chunk]) -> int:
    return len(_split_chunks_on_colons(chunks))


def arn_matches(pattern: str, arn: str) -> bool:
    """Match one ARN against one pattern written with wildcards (no variables)."""
    if pattern == "*":
        return True
    return compile_regex(arn_pattern_regex([(pattern, True)])).fullmatch(arn) is not None

"""Fuzz target ``iam_policy``: policy text into ``parse_policy`` (identity, or trust with a leading
``T``), ``statement_positions``, and evaluation of whatever parses against a few fixed requests.

Checks: only MalformedPolicyDocument for bad text; a parsed policy evaluates without error to one
of the three decisions; positions are reported for exactly the parsed statements when found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

from openssm.iam import (
    AuthzRequest,
    MalformedPolicyDocument,
    PolicySource,
    evaluate,
    parse_policy,
    statement_positions,
)
from tests.fuzz import iam_seeds
from tests.fuzz.target_iam_evaluate import build_request


def setup() -> Callable[[bytes], None]:
    requests: list[AuthzRequest] = [build_request(spec) for spec in iam_seeds.REQUESTS]

    def one_input(data: bytes) -> None:
        kind: Literal["identity", "trust"] = "trust" if data[:1] == b"T" else "identity"
        text = (data[1:] if kind == "trust" else data).decode("utf-8", "surrogateescape")
        try:
            policy = parse_policy(text, kind=kind)
        except MalformedPolicyDocument:
            return
        positions = statement_positions(text)
        assert positions == [] or len(positions) == len(policy.statements), (positions, policy)
        if kind == "trust":
            return
        source = [PolicySource("fuzz", policy)]
        for request in requests:
            result = evaluate(source, request)
            assert result.decision in ("allowed", "explicitDeny", "implicitDeny")

    return one_input


def seeds() -> Iterator[bytes]:
    for text in iam_seeds.policies():
        yield text.encode()
    yield b'T{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ssm.amazonaws.com"},"Action":"sts:AssumeRole"}]}'

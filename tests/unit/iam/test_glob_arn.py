"""Wildcards in Action and Resource: checked against an independent dynamic-programming matcher."""

from __future__ import annotations

import functools

from hypothesis import given
from hypothesis import strategies as st

from openssm.iam.arn import (
    arn_matches,
    document_arn,
    ec2_instance_arn,
    group_arn,
    managed_instance_arn,
    policy_arn,
    role_arn,
    session_arn,
    split_arn,
    user_arn,
)
from openssm.iam.glob import glob_match

from .helpers import allow, decide, policy_text

# Characters that are special to regexes or to ARNs, to catch escaping mistakes.
ALPHABET = "ab.:/-*?+()[]$^\\|{}"
texts = st.text(alphabet="ab.:/-+()[]$^\\|{}", max_size=8)
patterns = st.text(alphabet=ALPHABET, max_size=8)


def oracle(pattern: str, text: str, *, stop: str = "") -> bool:
    """Wildcard match by recursion over both strings; ``stop`` chars cannot be covered by wildcards."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(text)
        char = pattern[i]
        if char == "*":
            if match(i + 1, j):
                return True
            return j < len(text) and text[j] not in stop and match(i, j + 1)
        if j == len(text):
            return False
        if char == "?":
            return text[j] not in stop and match(i + 1, j + 1)
        return char == text[j] and match(i + 1, j + 1)

    return match(0, 0)


@given(patterns, texts)
def test_glob_agrees_with_oracle(pattern: str, text: str) -> None:
    assert glob_match(pattern, text) == oracle(pattern, text)


@given(patterns)
def test_pattern_without_wildcards_matches_only_itself(pattern: str) -> None:
    literal = pattern.replace("*", "x").replace("?", "y")
    assert glob_match(literal, literal)
    assert not glob_match(literal, literal + "z")


def test_regex_metacharacters_are_literal() -> None:
    assert glob_match("a.b", "a.b")
    assert not glob_match("a.b", "aXb")
    assert not glob_match("ab?", "a")  # '?' is one character, not "optional"
    assert glob_match("ab?", "abc")
    assert not glob_match("a+", "aa")
    assert glob_match("*", "")


@given(st.sampled_from(["ssm:StartSession", "SSM:startsession", "ssm:STARTSESSION"]))
def test_action_match_is_case_insensitive(action: str) -> None:
    assert decide(policy_text(allow("ssm:startSession")), action).allowed
    assert decide(policy_text(allow("SSM:Start*")), action).allowed
    assert not decide(policy_text(allow("ssm:Start")), action).allowed


def test_action_wildcards() -> None:
    text = policy_text(allow(["ssm:Describe*", "ec2:DescribeInstance?"]))
    assert decide(text, "ssm:DescribeSessions").allowed
    assert decide(text, "ec2:DescribeInstances").allowed
    assert not decide(text, "ec2:DescribeInstance").allowed
    assert not decide(text, "ssm:StartSession").allowed
    assert not decide(text, "ssmx:DescribeSessions").allowed


segment = st.text(alphabet="abc-1", max_size=4)
resource_part = st.text(alphabet="abc/:-*.", max_size=10)


@given(
    st.tuples(segment, segment, segment, segment, resource_part),
    st.tuples(segment, segment, segment, segment, resource_part),
)
def test_arn_matching_is_per_component(pattern_parts: tuple[str, ...], arn_parts: tuple[str, ...]) -> None:
    pattern = "arn:" + ":".join(pattern_parts)
    arn = "arn:" + ":".join(arn_parts)
    expected = all(
        oracle(p, a, stop=":") for p, a in zip(pattern_parts[:4], arn_parts[:4], strict=True)
    ) and oracle(pattern_parts[4], arn_parts[4])
    assert arn_matches(pattern, arn) == expected


@given(segment, segment)
def test_wildcard_cannot_span_a_colon_before_the_resource(region: str, account: str) -> None:
    arn = f"arn:aws:ssm:{region}:{account}:session/x"
    assert arn_matches("arn:aws:ssm:*:*:session/x", arn)
    assert not arn_matches("arn:aws:*:session/x", arn)


def test_resource_part_wildcard_crosses_slash_and_colon() -> None:
    assert arn_matches("arn:aws:logs:*:*:log-group:x:*", "arn:aws:logs:r:1:log-group:x:log-stream:y/z")
    assert arn_matches("arn:aws:ssm:*:*:session/alice-*", "arn:aws:ssm:r:1:session/alice-a/b:c")


def test_empty_account_of_aws_owned_document_is_matched_by_star() -> None:
    arn = document_arn("ap-northeast-1", "", "AWS-StartSSHSession")
    assert arn == "arn:aws:ssm:ap-northeast-1::document/AWS-StartSSHSession"
    assert arn_matches("arn:aws:ssm:*:*:document/AWS-StartSSHSession", arn)
    assert arn_matches("arn:aws:ssm:ap-northeast-1::document/AWS-StartSSHSession", arn)
    assert not arn_matches("arn:aws:ssm:ap-northeast-1:?:document/AWS-StartSSHSession", arn)


def test_resource_part_is_case_sensitive() -> None:
    assert not arn_matches("arn:aws:ssm:*:*:session/Alice-*", "arn:aws:ssm:r:1:session/alice-1")


def test_star_resource_matches_non_arn_request_resource() -> None:
    assert arn_matches("*", "*")
    assert not arn_matches("arn:aws:ssm:*:*:*", "*")


def test_builders() -> None:
    assert user_arn("1", "bob") == "arn:aws:iam::1:user/bob"
    assert user_arn("1", "bob", "/eng/") == "arn:aws:iam::1:user/eng/bob"
    assert group_arn("1", "ops") == "arn:aws:iam::1:group/ops"
    assert role_arn("1", "node") == "arn:aws:iam::1:role/node"
    assert policy_arn("1", "p") == "arn:aws:iam::1:policy/p"
    assert managed_instance_arn("r", "1", "mi-1") == "arn:aws:ssm:r:1:managed-instance/mi-1"
    assert ec2_instance_arn("r", "1", "i-1") == "arn:aws:ec2:r:1:instance/i-1"
    assert session_arn("r", "1", "bob-1") == "arn:aws:ssm:r:1:session/bob-1"
    assert split_arn("arn:aws:ssm:r::document/a:b") == ("arn", "aws", "ssm", "r", "", "document/a:b")
    assert split_arn("*") is None

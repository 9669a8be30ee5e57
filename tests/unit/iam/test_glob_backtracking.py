"""Wildcards never backtrack catastrophically, and still mean what they meant.

Found by fuzzing (tests/fuzz, target iam_policy): an Action of ``ssm:Start`` followed by 97 ``*``
and ``Session`` took minutes to test against ``ssm:StartSession``, because ``.*`` per star let
the regex engine try every way of splitting the text among the stars. A policy author (anyone
with iam:CreatePolicy) could so stall every authorisation that reads the policy.
"""

from __future__ import annotations

import functools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from openssm.iam.arn import arn_matches
from openssm.iam.glob import chunks_to_regex, compile_regex, glob_match

from .helpers import allow, decide, policy_text

# Generous bounds that only a hang reaches: each case takes milliseconds now, minutes before.
pytestmark = pytest.mark.timeout(30)


def reference_match(pattern: str, text: str, *, star_crosses_colon: bool = True) -> bool:
    """Textbook dynamic programming over (pattern position, text position)."""

    @functools.cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(text)
        char = pattern[i]
        if char == "*":
            if match(i + 1, j):
                return True
            return j < len(text) and (star_crosses_colon or text[j] != ":") and match(i, j + 1)
        if j == len(text):
            return False
        if char == "?":
            return (star_crosses_colon or text[j] != ":") and match(i + 1, j + 1)
        return char == text[j] and match(i + 1, j + 1)

    return match(0, 0)


def test_the_fuzzers_action_with_many_stars_is_decided_at_once() -> None:
    action = "ssm:Start" + "*" * 97 + "Session"
    text = policy_text(allow(action))
    assert decide(text, "ssm:StartSession").allowed
    assert not decide(text, "ssm:StartSessio").allowed
    assert not decide(text, "ssm:TerminateSession").allowed


@pytest.mark.parametrize("count", [10, 30, 60])
def test_alternating_stars_and_letters_do_not_backtrack(count: int) -> None:
    pattern = "a*" * count + "b"
    assert not glob_match(pattern, "a" * 200)
    assert glob_match(pattern, "a" * 200 + "b")
    resource = "arn:aws:ssm:" + "*x" * count + ":1:document/" + "*a" * count + "*b"
    assert not arn_matches(resource, "arn:aws:ssm:" + "x" * 100 + ":1:document/" + "a" * 200)
    assert arn_matches(resource, "arn:aws:ssm:" + "x" * 100 + ":1:document/" + "a" * 200 + "b")


def test_string_like_conditions_with_many_stars_are_decided_at_once() -> None:
    text = policy_text(allow(Condition={"StringLike": {"aws:UserAgent": "*a" * 40 + "*b"}}))
    assert not decide(text, "ssm:StartSession", context={"aws:UserAgent": ["a" * 300]}).allowed


patterns = st.text(alphabet="ab:*?", max_size=12)
texts = st.text(alphabet="ab:", max_size=12)


@given(pattern=patterns, text=texts)
def test_globs_match_exactly_what_the_textbook_definition_matches(pattern: str, text: str) -> None:
    assert glob_match(pattern, text) == reference_match(pattern, text)


@given(pattern=patterns, text=texts)
def test_component_globs_never_cross_a_colon(pattern: str, text: str) -> None:
    source = chunks_to_regex([(pattern, True)], star="[^:]*", qmark="[^:]")
    matched = compile_regex(source).fullmatch(text) is not None
    assert matched == reference_match(pattern, text, star_crosses_colon=False)


@given(
    pieces=st.lists(st.tuples(st.text(alphabet="ab*?", max_size=4), st.booleans()), max_size=5),
    text=st.text(alphabet="ab*?", max_size=10),
)
def test_literal_chunks_stay_literal_between_wildcards(pieces: list[tuple[str, bool]], text: str) -> None:
    """Substituted text (wild=False) matches itself only, also between stars of author text."""
    regex = compile_regex(chunks_to_regex(pieces))
    # Reference: author text as a glob, substituted text with its * and ? escaped as literals.
    expected_source = "".join(
        re.escape(t).replace("\\*", ".*").replace("\\?", ".") if wild else re.escape(t) for t, wild in pieces
    )
    assert (regex.fullmatch(text) is not None) == (re.fullmatch(expected_source, text, re.DOTALL) is not None)
